//! Prometheus metrics: gRPC requests and latencies, records written, group
//! commits and their durable-commit latency, store size and pending records,
//! served as text on a separate HTTP port at `/metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::Full;
use hyper::body::Bytes;
use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;

use crate::gate::Admission;

/// Services whose methods become labels; any other path is labelled `other`,
/// so a client cannot grow the label set.
const KNOWN_SERVICES: [&str; 6] = [
    "supportmetrics.v1.IngestService",
    "supportmetrics.v1.ScorecardService",
    "supportmetrics.v1.AdminService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Every series the service exports, in one registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    records_written: IntCounterVec,
    commit_group_records: Histogram,
    commit_seconds: Histogram,
    store_size_bytes: IntGauge,
    store_keys_written: IntCounter,
    pending_records: IntGaugeVec,
    live_watchers: IntGauge,
    live_feeds: IntGauge,
    /// One render at a time: a render reads and then advances counters that
    /// catch up to the store's own totals.
    rendering: Arc<Mutex<()>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("support_metrics".into()), None)
            .expect("a valid registry prefix");
        let requests = IntCounterVec::new(
            Opts::new(
                "grpc_requests_total",
                "gRPC requests by service, method and status code",
            ),
            &["service", "method", "code"],
        )
        .expect("valid metric");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "grpc_request_duration_seconds",
                "Time to the response headers of a gRPC request",
            )
            .buckets(exponential_buckets(0.000_25, 2.0, 16).expect("valid buckets")),
            &["service", "method"],
        )
        .expect("valid metric");
        let records_written = IntCounterVec::new(
            Opts::new(
                "records_written_total",
                "Records by kind and outcome (created, updated, duplicate, stale, already_exists)",
            ),
            &["kind", "outcome"],
        )
        .expect("valid metric");
        let commit_group_records = Histogram::with_opts(
            HistogramOpts::new(
                "commit_group_records",
                "Records per group commit (one durable commit for many writes)",
            )
            .buckets(exponential_buckets(1.0, 2.0, 13).expect("valid buckets")),
        )
        .expect("valid metric");
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "commit_durable_seconds",
                "Time of one durable commit: sled batch, flush and fsync",
            )
            .buckets(exponential_buckets(0.000_1, 2.0, 16).expect("valid buckets")),
        )
        .expect("valid metric");
        let store_size_bytes =
            IntGauge::new("store_size_bytes", "Bytes the store occupies on disk").expect("valid");
        let store_keys_written = IntCounter::new(
            "store_keys_written_total",
            "Keys written to the storage engine (puts and deletes): raw records, their \
             indexes, counters and one journal entry per commit; derived state is never \
             written there",
        )
        .expect("valid metric");
        let pending_records = IntGaugeVec::new(
            Opts::new(
                "pending_records",
                "Surveys and reviews stored but not counted: their interaction is not known yet",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let live_watchers =
            IntGauge::new("live_watchers", "Open WatchScorecard streams").expect("valid metric");
        let live_feeds = IntGauge::new(
            "live_feeds",
            "Live scorecards being kept current (one per distinct scope, window and \
             minimum sample, shared by its watchers)",
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_seconds.clone()),
            Box::new(records_written.clone()),
            Box::new(commit_group_records.clone()),
            Box::new(commit_seconds.clone()),
            Box::new(store_size_bytes.clone()),
            Box::new(store_keys_written.clone()),
            Box::new(pending_records.clone()),
            Box::new(live_watchers.clone()),
            Box::new(live_feeds.clone()),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        Metrics {
            registry,
            requests,
            request_seconds,
            records_written,
            commit_group_records,
            commit_seconds,
            store_size_bytes,
            store_keys_written,
            pending_records,
            live_watchers,
            live_feeds,
            rendering: Arc::new(Mutex::new(())),
        }
    }

    /// Counts an open (+1) or closed (-1) WatchScorecard stream.
    pub fn live_watchers(&self, delta: i64) {
        self.live_watchers.add(delta);
    }

    /// Counts a started (+1) or stopped (-1) shared live scorecard.
    pub fn live_feeds(&self, delta: i64) {
        self.live_feeds.add(delta);
    }

    pub fn record_written(&self, kind: &str, outcome: &str) {
        self.records_written
            .with_label_values(&[kind, outcome])
            .inc();
    }

    pub fn commit(&self, records: usize, seconds: f64) {
        self.commit_group_records.observe(records as f64);
        self.commit_seconds.observe(seconds);
    }

    /// The exposition text, with the store's series set to its current values.
    pub fn render(&self, store: StoreReading) -> String {
        let _rendering = self
            .rendering
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.store_size_bytes
            .set(i64::try_from(store.size_bytes).unwrap_or(i64::MAX));
        // The store keeps the running total; the counter catches up to it.
        let counted = self.store_keys_written.get();
        if store.keys_written > counted {
            self.store_keys_written.inc_by(store.keys_written - counted);
        }
        self.pending_records
            .with_label_values(&["survey_response"])
            .set(store.pending_surveys);
        self.pending_records
            .with_label_values(&["quality_review"])
            .set(store.pending_reviews);
        let mut text = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            tracing::error!(%error, "encoding metrics");
        }
        String::from_utf8(text).unwrap_or_default()
    }
}

/// What a scrape reads from the store.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreReading {
    pub size_bytes: u64,
    pub keys_written: u64,
    pub pending_surveys: i64,
    pub pending_reviews: i64,
}

/// The service and method labels of a gRPC path.
fn labels(path: &str) -> (&str, &str) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    match (parts.next(), parts.next()) {
        (Some(service), Some(method)) if KNOWN_SERVICES.contains(&service) => (service, method),
        _ => ("other", "other"),
    }
}

/// The status code name of a response: from its headers when the call failed
/// before any message (trailers-only), else OK.
fn code_of(response: &http::Response<tonic::body::Body>) -> &'static str {
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32);
    code_name(code)
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Counts and times every gRPC request, refusals included (the gate of the
/// metrics is outermost).
impl Admission for Metrics {
    /// The service and method labels, and when the request arrived.
    type Ticket = (String, String, Instant);

    fn admit<B>(&self, request: &http::Request<B>) -> Result<Self::Ticket, tonic::Status> {
        let (service, method) = labels(request.uri().path());
        Ok((service.to_owned(), method.to_owned(), Instant::now()))
    }

    fn finish(
        &self,
        (service, method, started): Self::Ticket,
        response: Option<&http::Response<tonic::body::Body>>,
    ) {
        let code = response.map_or("UNKNOWN", code_of);
        self.request_seconds
            .with_label_values(&[&service, &method])
            .observe(started.elapsed().as_secs_f64());
        self.requests
            .with_label_values(&[&service, &method, code])
            .inc();
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped; `render`
/// produces the text at each scrape.
pub async fn serve(
    listener: TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let render = Arc::clone(&render);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                let render = Arc::clone(&render);
                async move {
                    let response = if request.uri().path() == "/metrics" {
                        let text = tokio::task::spawn_blocking(move || render())
                            .await
                            .unwrap_or_default();
                        hyper::Response::builder()
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(text)))
                    } else {
                        hyper::Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::from_static(b"only /metrics is here\n")))
                    };
                    Ok::<_, Infallible>(response.unwrap_or_default())
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(%error, "metrics connection ended");
            }
        });
    }
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_services_become_labels() {
        assert_eq!(
            labels("/supportmetrics.v1.IngestService/RecordBatch"),
            ("supportmetrics.v1.IngestService", "RecordBatch")
        );
        assert_eq!(labels("/evil.Service/x"), ("other", "other"));
        assert_eq!(labels("/"), ("other", "other"));
    }
}
