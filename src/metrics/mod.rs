//! Prometheus metrics, served as text on a separate HTTP port at `/metrics`:
//! the gRPC ecosystem's `grpc_server_*` series ([`grpc`]), the standard
//! `process_*` series ([`process`]), and the service's own
//! `support_metrics_*` series: records written, group commits and their
//! durable-commit latency, store size, pending records, live scorecards, build
//! information, and saturation (requests in flight, the writer's queue, the
//! snapshot's age, memory limit and disk space). docs/operations.md lists them.

mod grpc;
mod process;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::Bytes;
use prometheus::{
    exponential_buckets, Counter, Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;

use crate::gate::Admission;

pub use grpc::{Call, HANDLING_BUCKETS};
pub use process::{disk_space, ProcessReading};

/// The service's own series.
#[derive(Debug, Clone)]
struct ServiceSeries {
    records_written: IntCounterVec,
    commit_group_records: Histogram,
    commit_seconds: Histogram,
    store_size_bytes: IntGauge,
    store_keys_written: IntCounter,
    pending_records: IntGaugeVec,
    live_watchers: IntGauge,
    live_feeds: IntGauge,
    requests_in_flight: IntGauge,
    max_in_flight: IntGauge,
    writer_queue_depth: IntGauge,
    writer_queue_capacity: IntGauge,
    /// The derived state's chunks, by where they are.
    derived_chunks: IntGaugeVec,
    /// Series that are absent while their value is unknown (no snapshot yet,
    /// no memory limit): gauges of no label, reset to be absent.
    snapshot_age_seconds: GaugeVec,
    memory_limit_bytes: GaugeVec,
    disk_available_bytes: GaugeVec,
    disk_capacity_bytes: GaugeVec,
}

/// The standard process series.
#[derive(Debug, Clone)]
struct ProcessSeries {
    resident_memory_bytes: GaugeVec,
    virtual_memory_bytes: GaugeVec,
    cpu_seconds: Counter,
    open_fds: GaugeVec,
    max_fds: GaugeVec,
    start_time_seconds: GaugeVec,
}

/// Every series the service exports, in one registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    grpc: Arc<grpc::GrpcSeries>,
    service: ServiceSeries,
    process: ProcessSeries,
    /// One render at a time: a render reads and then advances counters that
    /// catch up to the store's own totals.
    rendering: Arc<Mutex<()>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Registers a collector, returning it.
fn registered<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("unique metric names");
    collector
}

fn int_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    registered(registry, IntGauge::new(name, help).expect("valid metric"))
}

/// A gauge that is absent until set (see [`set_optional`]).
fn optional_gauge(registry: &Registry, name: &str, help: &str) -> GaugeVec {
    registered(
        registry,
        GaugeVec::new(Opts::new(name, help), &[]).expect("valid metric"),
    )
}

fn set_optional(gauge: &GaugeVec, value: Option<f64>) {
    match value {
        Some(value) => gauge.with_label_values::<&str>(&[]).set(value),
        None => gauge.reset(),
    }
}

impl ServiceSeries {
    fn register(registry: &Registry) -> ServiceSeries {
        let records_written = IntCounterVec::new(
            Opts::new(
                "support_metrics_records_written_total",
                "Records by kind and outcome (created, updated, duplicate, stale, already_exists)",
            ),
            &["kind", "outcome"],
        )
        .expect("valid metric");
        let commit_group_records = Histogram::with_opts(
            HistogramOpts::new(
                "support_metrics_commit_group_records",
                "Records per group commit (one durable commit for many writes)",
            )
            .buckets(exponential_buckets(1.0, 2.0, 13).expect("valid buckets")),
        )
        .expect("valid metric");
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "support_metrics_commit_durable_seconds",
                "Time of one durable commit: sled batch, flush and fsync",
            )
            .buckets(exponential_buckets(0.000_1, 2.0, 16).expect("valid buckets")),
        )
        .expect("valid metric");
        let store_keys_written = IntCounter::new(
            "support_metrics_store_keys_written_total",
            "Keys written to the storage engine (puts and deletes): raw records, their \
             indexes, counters and one journal entry per commit; derived state is never \
             written there",
        )
        .expect("valid metric");
        let pending_records = IntGaugeVec::new(
            Opts::new(
                "support_metrics_pending_records",
                "Surveys and reviews stored but not counted: their interaction is not known yet",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let r = registry;
        ServiceSeries {
            records_written: registered(r, records_written),
            commit_group_records: registered(r, commit_group_records),
            commit_seconds: registered(r, commit_seconds),
            store_size_bytes: int_gauge(
                r,
                "support_metrics_store_size_bytes",
                "Bytes the store occupies on disk",
            ),
            store_keys_written: registered(r, store_keys_written),
            pending_records: registered(r, pending_records),
            live_watchers: int_gauge(
                r,
                "support_metrics_live_watchers",
                "Open WatchScorecard streams",
            ),
            live_feeds: int_gauge(
                r,
                "support_metrics_live_feeds",
                "Live scorecards being kept current (one per distinct scope, window and \
                 minimum sample, shared by its watchers)",
            ),
            requests_in_flight: int_gauge(
                r,
                "support_metrics_requests_in_flight",
                "Requests holding a place under --max-in-flight (health checks exempt; a \
                 stream holds it until its response headers)",
            ),
            max_in_flight: int_gauge(
                r,
                "support_metrics_max_in_flight",
                "The --max-in-flight bound: beyond it requests get RESOURCE_EXHAUSTED",
            ),
            writer_queue_depth: int_gauge(
                r,
                "support_metrics_writer_queue_depth",
                "Writes waiting for the writer thread",
            ),
            writer_queue_capacity: int_gauge(
                r,
                "support_metrics_writer_queue_capacity",
                "Writes that may wait for the writer; beyond it writes get RESOURCE_EXHAUSTED",
            ),
            derived_chunks: registered(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "support_metrics_derived_state_chunks",
                        "Chunks of the derived state: in the snapshot file (read when needed) \
                         or in memory (changed since the last snapshot)",
                    ),
                    &["location"],
                )
                .expect("valid metric"),
            ),
            snapshot_age_seconds: optional_gauge(
                r,
                "support_metrics_snapshot_age_seconds",
                "Seconds since the derived-state snapshot was written (absent before the \
                 first); a crash recomputes what changed since",
            ),
            memory_limit_bytes: optional_gauge(
                r,
                "support_metrics_memory_limit_bytes",
                "Memory limit of the process's cgroup (absent when unlimited)",
            ),
            disk_available_bytes: optional_gauge(
                r,
                "support_metrics_disk_available_bytes",
                "Bytes available to the service on the data directory's filesystem",
            ),
            disk_capacity_bytes: optional_gauge(
                r,
                "support_metrics_disk_capacity_bytes",
                "Size in bytes of the data directory's filesystem",
            ),
        }
    }
}

impl ProcessSeries {
    fn register(r: &Registry) -> ProcessSeries {
        ProcessSeries {
            resident_memory_bytes: optional_gauge(
                r,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            virtual_memory_bytes: optional_gauge(
                r,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            ),
            cpu_seconds: registered(
                r,
                Counter::new(
                    "process_cpu_seconds_total",
                    "Total user and system CPU time spent in seconds.",
                )
                .expect("valid metric"),
            ),
            open_fds: optional_gauge(r, "process_open_fds", "Number of open file descriptors."),
            max_fds: optional_gauge(
                r,
                "process_max_fds",
                "Maximum number of open file descriptors.",
            ),
            start_time_seconds: optional_gauge(
                r,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            ),
        }
    }

    fn set(&self, reading: &ProcessReading) {
        let float = |value: Option<u64>| value.map(|v| v as f64);
        set_optional(
            &self.resident_memory_bytes,
            float(reading.resident_memory_bytes),
        );
        set_optional(
            &self.virtual_memory_bytes,
            float(reading.virtual_memory_bytes),
        );
        set_optional(&self.open_fds, float(reading.open_fds));
        set_optional(&self.max_fds, float(reading.max_fds));
        set_optional(&self.start_time_seconds, reading.start_time_seconds);
        // The kernel keeps the total; the counter catches up to it.
        if let Some(cpu) = reading.cpu_seconds {
            let counted = self.cpu_seconds.get();
            if cpu > counted {
                self.cpu_seconds.inc_by(cpu - counted);
            }
        }
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let grpc = Arc::new(grpc::GrpcSeries::register(&registry));
        let service = ServiceSeries::register(&registry);
        let process = ProcessSeries::register(&registry);
        let build_info = registered(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "support_metrics_build_info",
                    "Always 1; its labels say which build is running",
                ),
                &["version"],
            )
            .expect("valid metric"),
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Metrics {
            registry,
            grpc,
            service,
            process,
            rendering: Arc::new(Mutex::new(())),
        }
    }

    /// Counts an open (+1) or closed (-1) WatchScorecard stream.
    pub fn live_watchers(&self, delta: i64) {
        self.service.live_watchers.add(delta);
    }

    /// Counts a started (+1) or stopped (-1) shared live scorecard.
    pub fn live_feeds(&self, delta: i64) {
        self.service.live_feeds.add(delta);
    }

    pub fn record_written(&self, kind: &str, outcome: &str) {
        self.service
            .records_written
            .with_label_values(&[kind, outcome])
            .inc();
    }

    pub fn commit(&self, records: usize, seconds: f64) {
        self.service.commit_group_records.observe(records as f64);
        self.service.commit_seconds.observe(seconds);
    }

    /// The exposition text, with the store's, the server's and the process's
    /// series set to their current values.
    pub fn render(&self, store: StoreReading, server: ServerReading) -> String {
        let _rendering = self
            .rendering
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.set_store(&store);
        let service = &self.service;
        service
            .requests_in_flight
            .set(i64::try_from(server.requests_in_flight).unwrap_or(i64::MAX));
        service
            .max_in_flight
            .set(i64::try_from(server.max_in_flight).unwrap_or(i64::MAX));
        let process = process::read();
        self.process.set(&process);
        set_optional(
            &service.memory_limit_bytes,
            process.memory_limit_bytes.map(|v| v as f64),
        );
        let mut text = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            tracing::error!(%error, "encoding metrics");
        }
        String::from_utf8(text).unwrap_or_default()
    }

    fn set_store(&self, store: &StoreReading) {
        let service = &self.service;
        let int = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        service.store_size_bytes.set(int(store.size_bytes));
        // The store keeps the running total; the counter catches up to it.
        let counted = service.store_keys_written.get();
        if store.keys_written > counted {
            service
                .store_keys_written
                .inc_by(store.keys_written - counted);
        }
        service
            .pending_records
            .with_label_values(&["survey_response"])
            .set(store.pending_surveys);
        service
            .pending_records
            .with_label_values(&["quality_review"])
            .set(store.pending_reviews);
        let (depth, capacity) = store.writer_queue;
        service.writer_queue_depth.set(int(depth as u64));
        service.writer_queue_capacity.set(int(capacity as u64));
        let (chunks, in_memory) = store.derived_chunks;
        service
            .derived_chunks
            .with_label_values(&["snapshot"])
            .set(int((chunks - in_memory) as u64));
        service
            .derived_chunks
            .with_label_values(&["memory"])
            .set(int(in_memory as u64));
        set_optional(&service.snapshot_age_seconds, store.snapshot_age_seconds);
        set_optional(
            &service.disk_available_bytes,
            store.disk.map(|(available, _)| available as f64),
        );
        set_optional(
            &service.disk_capacity_bytes,
            store.disk.map(|(_, capacity)| capacity as f64),
        );
    }
}

/// What a scrape reads from the store.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreReading {
    pub size_bytes: u64,
    pub keys_written: u64,
    pub pending_surveys: i64,
    pub pending_reviews: i64,
    /// Writes waiting for the writer thread, and how many may wait.
    pub writer_queue: (usize, usize),
    /// The derived state's chunks, and how many of them are in memory.
    pub derived_chunks: (usize, usize),
    /// Seconds since the derived-state snapshot was written; `None` before
    /// the first.
    pub snapshot_age_seconds: Option<f64>,
    /// Available and total bytes of the data directory's filesystem.
    pub disk: Option<(u64, u64)>,
}

/// What a scrape reads from the server.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerReading {
    /// Requests holding a place under `--max-in-flight`.
    pub requests_in_flight: usize,
    pub max_in_flight: usize,
}

/// Counts and times every gRPC call, refusals included (the gate of the
/// metrics is outermost), until its response body ends.
impl Admission for Metrics {
    type Ticket = Call;

    fn admit<B>(&self, request: &http::Request<B>) -> Result<Call, tonic::Status> {
        Ok(self.grpc.start(request.uri().path()))
    }

    fn respond(
        &self,
        call: Call,
        response: http::Response<tonic::body::Body>,
    ) -> http::Response<tonic::body::Body> {
        call.follow(response)
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
