//! Loads tokens and TLS, binds the gRPC and metrics listeners, wires the
//! services (with auth, the in-flight bound and request metrics around them),
//! health and reflection, and serves until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;

use crate::api::{AdminApi, IngestApi, ScorecardApi};
use crate::auth::{self, LiveTokens, TokenSources, Tokens, WatchStart};
use crate::config::Config;
use crate::gate::GateLayer;
use crate::limit::InFlightLimit;
use crate::live::LiveScorecards;
use crate::metrics::{self, ServerReading, StoreReading};
use crate::proto::v1::admin_service_server::AdminServiceServer;
use crate::proto::v1::ingest_service_server::IngestServiceServer;
use crate::proto::v1::scorecard_service_server::ScorecardServiceServer;
use crate::proto::FILE_DESCRIPTOR_SET;
use crate::store::{reads, Store};

/// Requests handled at once on one connection; more wait in line.
const CONCURRENCY_PER_CONNECTION: usize = 256;
/// How long in-flight requests may run on after shutdown starts: well inside
/// Kubernetes' default 30 s grace period, leaving time to close the store.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// A bound, not yet serving application.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    metrics_listener: TcpListener,
    store: Store,
    data_dir: std::path::PathBuf,
    max_message_bytes: usize,
    max_in_flight: usize,
    tokens: Arc<LiveTokens>,
    token_sources: TokenSources,
    token_watch_start: WatchStart,
    reflection: bool,
    tls: Option<ServerTlsConfig>,
}

/// The TLS settings, with the files read; `None` serves plaintext.
fn load_tls(config: &Config) -> anyhow::Result<Option<ServerTlsConfig>> {
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("reading the {what} {}: {e}", path.display()))
    };
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        if config.tls_cert.is_some() || config.tls_key.is_some() || config.tls_client_ca.is_some() {
            anyhow::bail!("TLS needs both --tls-cert and --tls-key");
        }
        return Ok(None);
    };
    let identity = Identity::from_pem(read(cert, "TLS certificate")?, read(key, "TLS key")?);
    let mut tls = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &config.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca, "client CA")?));
        tracing::info!("mutual TLS: clients must present a certificate from the client CA");
    }
    // Fail at start, naming the problem, rather than when serving begins.
    Server::builder()
        .tls_config(tls.clone())
        .map_err(|e| anyhow::anyhow!("the TLS certificate or key is not usable: {e}"))?;
    Ok(Some(tls))
}

/// The configured tokens, and the refusal to serve a network unauthenticated
/// unless told to.
fn load_tokens(config: &Config) -> anyhow::Result<(Tokens, TokenSources, WatchStart)> {
    let sources = TokenSources {
        file: config.tokens_file.clone(),
        inline: config.tokens.clone(),
    };
    let (tokens, watch_start) = sources.load_for_watching().map_err(anyhow::Error::msg)?;
    if tokens.is_empty() {
        if !config.listen.ip().is_loopback() && !config.insecure {
            anyhow::bail!(
                "refusing to serve {} without authentication: configure tokens \
                 (--tokens-file or SUPPORT_METRICS_TOKENS) or pass --insecure",
                config.listen
            );
        }
        tracing::warn!(
            listen = %config.listen,
            "AUTHENTICATION IS OFF: no tokens are configured, every caller may read and write"
        );
    } else {
        tracing::info!(tokens = tokens.len(), "bearer-token authentication on");
    }
    Ok((tokens, sources, watch_start))
}

/// What a scrape of `/metrics` renders: the store's figures while it is open.
fn scrape(
    store: &Store,
    data_dir: std::path::PathBuf,
    in_flight: Arc<InFlightLimit>,
) -> Arc<dyn Fn() -> String + Send + Sync> {
    let scraped = store.downgrade();
    let metrics = store.metrics();
    Arc::new(move || {
        let server = ServerReading {
            requests_in_flight: in_flight.in_flight(),
            max_in_flight: in_flight.limit(),
        };
        let Some(store) = scraped.upgrade() else {
            return metrics.render(StoreReading::default(), server);
        };
        let counters = reads::counters(store.kv()).unwrap_or_default();
        let snapshot_age_seconds = crate::store::snapshot_written_at(&data_dir)
            .map(|written| written.elapsed().unwrap_or_default().as_secs_f64());
        let reading = StoreReading {
            size_bytes: store.kv().size_on_disk().unwrap_or(0),
            keys_written: store.kv().keys_written(),
            pending_surveys: counters.pending_survey_responses,
            pending_reviews: counters.pending_quality_reviews,
            writer_queue: store.writer_queue(),
            derived_chunks: store.derived_chunks(),
            snapshot_age_seconds,
            disk: metrics::disk_space(&data_dir),
        };
        metrics.render(reading, server)
    })
}

impl Application {
    /// Opens the store and binds the listener (port 0 picks a free port).
    pub async fn build(config: &Config) -> anyhow::Result<Application> {
        let options = config.sled_options(!config.unsafe_ack_before_durable);
        if config.unsafe_ack_before_durable {
            tracing::warn!(
                "--unsafe-ack-before-durable: writes are acknowledged before they are on disk; \
                 a crash loses the most recent ones"
            );
        }
        let (tokens, token_sources, token_watch_start) = load_tokens(config)?;
        let tls = load_tls(config)?;
        let store = tokio::task::spawn_blocking(move || Store::open(&options)).await??;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the gRPC address {}", config.listen))?;
        let metrics_listener = metrics::bind(config.metrics_listen).await.map_err(|e| {
            anyhow::anyhow!("binding the metrics address {}: {e}", config.metrics_listen)
        })?;
        Ok(Application {
            listener,
            metrics_listener,
            store,
            data_dir: config.store.data_dir.clone(),
            max_message_bytes: config.max_message_mb * 1024 * 1024,
            max_in_flight: config.max_in_flight.max(1),
            tokens: Arc::new(LiveTokens::new(tokens)),
            token_sources,
            token_watch_start,
            reflection: !config.disable_reflection,
            tls,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where `GET /metrics` is served.
    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.metrics_listener.local_addr()
    }

    /// Serves until `shutdown` completes, then turns health to NOT_SERVING, lets
    /// in-flight requests finish and closes the store (committing what it holds).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<IngestServiceServer<IngestApi>>().await;
        health
            .set_serving::<ScorecardServiceServer<ScorecardApi>>()
            .await;
        health.set_serving::<AdminServiceServer<AdminApi>>().await;
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // google.rpc.BadRequest and friends, so that grpcurl can print
            // the error details of a refusal instead of base64.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;
        let (reflection_v1, reflection_v1alpha) = if self.reflection {
            (Some(reflection_v1), Some(reflection_v1alpha))
        } else {
            (None, None)
        };

        let limit = self.max_message_bytes;
        let addr = self.local_addr()?;
        let metrics_addr = self.metrics_addr()?;
        tracing::info!(%addr, %metrics_addr, "serving gRPC, and metrics at /metrics");
        let store = self.store;
        let metrics = store.metrics();
        let in_flight = Arc::new(InFlightLimit::new(self.max_in_flight));
        let render = scrape(&store, self.data_dir.clone(), Arc::clone(&in_flight));
        let metrics_server = tokio::spawn(metrics::serve(self.metrics_listener, render));
        let token_watcher = tokio::spawn(Arc::clone(&self.tokens).watch(
            self.token_sources,
            self.token_watch_start,
            auth::RELOAD_CHECK_INTERVAL,
        ));
        let live = Arc::new(LiveScorecards::new(&store));
        let stopping_live = Arc::clone(&live);
        let stopping_health = health.clone();
        let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
        let drain = async move {
            shutdown.await;
            let _ = stopping.send(());
            tracing::info!("shutting down: health NOT_SERVING, draining requests");
            // Live scorecard streams end with UNAVAILABLE rather than hold the drain.
            stopping_live.stop();
            stopping_health
                .set_service_status("", ServingStatus::NotServing)
                .await;
            stopping_health
                .set_not_serving::<IngestServiceServer<IngestApi>>()
                .await;
            stopping_health
                .set_not_serving::<ScorecardServiceServer<ScorecardApi>>()
                .await;
            stopping_health
                .set_not_serving::<AdminServiceServer<AdminApi>>()
                .await;
        };
        let mut server = Server::builder();
        if let Some(tls) = self.tls {
            server = server
                .tls_config(tls)
                .map_err(|e| anyhow::anyhow!("the TLS certificate or key is not usable: {e}"))?;
        }
        let serve = server
            .concurrency_limit_per_connection(CONCURRENCY_PER_CONNECTION)
            // Outermost first: metrics see every answer, auth refusals cost
            // no in-flight permit.
            .layer(GateLayer::new(metrics))
            .layer(GateLayer::new(self.tokens))
            .layer(GateLayer::new(in_flight))
            .add_service(health_service)
            .add_optional_service(reflection_v1)
            .add_optional_service(reflection_v1alpha)
            .add_service(
                IngestServiceServer::new(IngestApi::new(store.clone()))
                    .max_decoding_message_size(limit),
            )
            .add_service(
                ScorecardServiceServer::new(ScorecardApi::new(store.clone(), live))
                    .max_decoding_message_size(limit),
            )
            .add_service(
                AdminServiceServer::new(AdminApi::new(store.clone()))
                    .max_decoding_message_size(limit),
            )
            .serve_with_incoming_shutdown(
                // Without TCP_NODELAY a reply written in two segments waits for
                // the client's delayed ACK: 40 ms on a scorecard read. (The
                // builder's tcp_nodelay applies only to listeners it binds.)
                TcpIncoming::from(self.listener).with_nodelay(Some(true)),
                drain,
            );
        // Requests get DRAIN_TIMEOUT to finish once shutdown starts; a client that
        // holds a stream open longer does not keep the pod from stopping.
        let drain_deadline = async move {
            match stopped.await {
                Ok(()) => tokio::time::sleep(DRAIN_TIMEOUT).await,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            served = serve => served?,
            () = drain_deadline => tracing::warn!(
                seconds = DRAIN_TIMEOUT.as_secs(),
                "requests still in flight after the drain timeout; closing them"
            ),
        }
        metrics_server.abort();
        token_watcher.abort();
        // The last handle closes the writer after it has committed what it holds.
        tokio::task::spawn_blocking(move || drop(store)).await?;
        tracing::info!("stopped");
        Ok(())
    }
}
