//! gRPC server series under the names the gRPC ecosystem uses
//! (go-grpc-prometheus, grpc-ecosystem/java-grpc-prometheus), so stock
//! dashboards and alerts fit: `grpc_server_started_total`,
//! `grpc_server_handled_total` and the `grpc_server_handling_seconds`
//! histogram, labelled `grpc_type`, `grpc_service`, `grpc_method` (and
//! `grpc_code` once handled).
//!
//! A call is timed from its arrival until its response body ends, so a stream
//! (`WatchScorecard`, `Export`) counts until its last message and status, and
//! its code is the one in its trailers, not the headers' provisional OK.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use hyper::body::{Bytes, Frame, SizeHint};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use prost_reflect::DescriptorPool;
use tonic::body::Body;

/// Handling-time buckets, seconds: a cached scorecard read takes well under a
/// millisecond, `VerifyAggregates` and `RebuildAggregates` minutes on a large
/// store (docs/operations.md); longer streams fall in `+Inf`.
pub const HANDLING_BUCKETS: [f64; 20] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0, 1800.0,
];

/// The labels of one method.
#[derive(Debug)]
struct Method {
    service: String,
    method: String,
    /// `unary`, `client_stream`, `server_stream` or `bidi_stream`.
    kind: &'static str,
}

/// The series, and the methods that may become labels.
#[derive(Debug)]
pub struct GrpcSeries {
    started: IntCounterVec,
    handled: IntCounterVec,
    handling: HistogramVec,
    in_flight: IntGauge,
    /// By path (`/package.Service/Method`): only methods the server offers
    /// become labels, so a client cannot grow the label set.
    methods: HashMap<String, Arc<Method>>,
    other: Arc<Method>,
}

/// The descriptor sets of every service the server offers.
fn descriptor_sets() -> [&'static [u8]; 4] {
    [
        crate::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ]
}

/// Every method of every offered service, by path.
fn known_methods() -> HashMap<String, Arc<Method>> {
    let mut methods = HashMap::new();
    for set in descriptor_sets() {
        let pool = DescriptorPool::decode(set).expect("the embedded descriptor sets decode");
        for service in pool.services() {
            for method in service.methods() {
                let kind = match (method.is_client_streaming(), method.is_server_streaming()) {
                    (false, false) => "unary",
                    (true, false) => "client_stream",
                    (false, true) => "server_stream",
                    (true, true) => "bidi_stream",
                };
                methods.insert(
                    format!("/{}/{}", service.full_name(), method.name()),
                    Arc::new(Method {
                        service: service.full_name().to_owned(),
                        method: method.name().to_owned(),
                        kind,
                    }),
                );
            }
        }
    }
    methods
}

impl GrpcSeries {
    /// Creates the series in `registry`, with every known method's
    /// `grpc_server_started_total` at zero so that rates exist from the start.
    pub fn register(registry: &Registry) -> GrpcSeries {
        let labels = ["grpc_type", "grpc_service", "grpc_method"];
        let started = IntCounterVec::new(
            Opts::new(
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
            ),
            &labels,
        )
        .expect("valid metric");
        let handled = IntCounterVec::new(
            Opts::new(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
            ),
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        )
        .expect("valid metric");
        let handling = HistogramVec::new(
            HistogramOpts::new(
                "grpc_server_handling_seconds",
                "Histogram of response latency (seconds) of gRPC that had been application-level \
                 handled by the server, streams until their end.",
            )
            .buckets(HANDLING_BUCKETS.to_vec()),
            &labels,
        )
        .expect("valid metric");
        let in_flight = IntGauge::new(
            "support_metrics_grpc_calls_open",
            "gRPC calls started and not yet ended, open streams included",
        )
        .expect("valid metric");
        for collector in [
            Box::new(started.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(handled.clone()),
            Box::new(handling.clone()),
            Box::new(in_flight.clone()),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        let methods = known_methods();
        for method in methods.values() {
            started.with_label_values(&[method.kind, &method.service, &method.method]);
        }
        GrpcSeries {
            started,
            handled,
            handling,
            in_flight,
            methods,
            other: Arc::new(Method {
                service: "other".into(),
                method: "other".into(),
                kind: "unknown",
            }),
        }
    }

    /// Counts a call to `path` as started; the returned [`Call`] counts it as
    /// handled when dropped.
    pub fn start(self: &Arc<Self>, path: &str) -> Call {
        let method = Arc::clone(self.methods.get(path).unwrap_or(&self.other));
        self.started
            .with_label_values(&[method.kind, &method.service, &method.method])
            .inc();
        self.in_flight.inc();
        Call {
            series: Arc::clone(self),
            method,
            started: Instant::now(),
            code: tonic::Code::Unknown,
        }
    }
}

/// A call under way: when dropped, it is counted handled with its code and
/// timed.
#[derive(Debug)]
pub struct Call {
    series: Arc<GrpcSeries>,
    method: Arc<Method>,
    started: Instant,
    /// The code it ends with unless its trailers say otherwise.
    code: tonic::Code,
}

impl Drop for Call {
    fn drop(&mut self) {
        let series = &self.series;
        let method = &self.method;
        series
            .handling
            .with_label_values(&[method.kind, &method.service, &method.method])
            .observe(self.started.elapsed().as_secs_f64());
        series
            .handled
            .with_label_values(&[
                method.kind,
                &method.service,
                &method.method,
                code_name(self.code),
            ])
            .inc();
        series.in_flight.dec();
    }
}

impl Call {
    /// Follows the response to its end: the call is handled when the body
    /// ends (its trailers) or is dropped, whichever comes first.
    pub fn follow(mut self, response: http::Response<Body>) -> http::Response<Body> {
        // A call that failed before any message has its status in the headers
        // (trailers-only); otherwise it is still going, and a body dropped
        // before its trailers means the client went away.
        self.code = code_in(response.headers()).unwrap_or(tonic::Code::Cancelled);
        response.map(|body| {
            Body::new(Followed {
                inner: body,
                call: Some(self),
            })
        })
    }
}

/// A response body that ends its call when it ends.
struct Followed {
    inner: Body,
    call: Option<Call>,
}

impl hyper::body::Body for Followed {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame.trailers_ref().map(code_in),
            Poll::Ready(Some(Err(status))) => Some(Some(status.code())),
            Poll::Ready(None) => Some(None),
            Poll::Pending => None,
        };
        if let Some(code) = ended {
            if let Some(mut call) = self.call.take() {
                call.code = code.unwrap_or(call.code);
                drop(call);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The `grpc-status` in headers or trailers.
fn code_in(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
}

/// The code's name as gRPC's own libraries spell it in `grpc_code`.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offered_method_is_known_with_its_type() {
        let methods = known_methods();
        let kind = |path: &str| methods.get(path).map(|m| m.kind);
        assert_eq!(
            kind("/supportmetrics.v1.IngestService/RecordBatch"),
            Some("unary")
        );
        assert_eq!(
            kind("/supportmetrics.v1.ScorecardService/WatchScorecard"),
            Some("server_stream")
        );
        assert_eq!(
            kind("/supportmetrics.v1.AdminService/Export"),
            Some("server_stream")
        );
        assert_eq!(kind("/grpc.health.v1.Health/Check"), Some("unary"));
        assert_eq!(kind("/grpc.health.v1.Health/Watch"), Some("server_stream"));
        assert_eq!(
            kind("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Some("bidi_stream")
        );
        assert_eq!(kind("/evil.Service/x"), None);
    }

    #[test]
    fn unknown_paths_share_one_label_set() {
        let registry = Registry::new();
        let series = Arc::new(GrpcSeries::register(&registry));
        drop(series.start("/evil.Service/x"));
        drop(series.start("/evil.Service/y"));
        assert_eq!(
            series
                .started
                .with_label_values(&["unknown", "other", "other"])
                .get(),
            2
        );
        assert_eq!(
            series
                .handled
                .with_label_values(&["unknown", "other", "other", "Unknown"])
                .get(),
            2
        );
        assert_eq!(series.in_flight.get(), 0);
    }
}
