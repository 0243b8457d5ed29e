//! Spawning the app and typed helpers shared by every test module.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use prost_types::{Duration, Timestamp};
use support_metrics::app::Application;
use support_metrics::config::{Config, LogFormat, StoreConfig};
use support_metrics::proto::v1 as pb;
use support_metrics::proto::v1::admin_service_client::AdminServiceClient;
use support_metrics::proto::v1::ingest_service_client::IngestServiceClient;
use support_metrics::proto::v1::scorecard_service_client::ScorecardServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// A running server; stops when dropped.
pub struct TestApp {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub ingest: IngestServiceClient<Channel>,
    pub scorecards: ScorecardServiceClient<Channel>,
    pub admin: AdminServiceClient<Channel>,
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        support_metrics::telemetry::init(
            "debug,h2=warn,tower=warn,sled=warn",
            LogFormat::Text,
            std::io::stderr,
        );
    }
}

/// The settings the offline tools (`verify`, `export`, `import`) get for a directory.
pub fn tool_config(data_dir: PathBuf) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        max_message_mb: 16,
        max_in_flight: 512,
        tokens_file: None,
        tokens: None,
        tls_cert: None,
        tls_key: None,
        tls_client_ca: None,
        insecure: false,
        disable_reflection: false,
        unsafe_ack_before_durable: false,
        store: store_config(data_dir),
    }
}

/// The store settings of the offline tools for a directory.
pub fn store_config(data_dir: PathBuf) -> StoreConfig {
    StoreConfig {
        data_dir,
        cache_mb: 16,
        snapshot_after_groups: 100_000,
        snapshot_interval_secs: 300,
    }
}

/// A server holding `records`, each of which it accepted.
pub async fn spawn_app_holding(records: Vec<pb::Record>) -> TestApp {
    let mut app = spawn_app().await;
    for result in app.record_all(records).await {
        assert!(
            matches!(result.result, Some(pb::item_result::Result::Outcome(_))),
            "{result:?}"
        );
    }
    app
}

pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("data");
    let mut app = spawn_app_at(path).await;
    app._dir = Some(dir);
    app
}

/// Starts a server on an existing data directory (to test restarts).
pub async fn spawn_app_at(data_dir: PathBuf) -> TestApp {
    spawn_app_with(tool_config(data_dir)).await
}

/// Starts a server with the given settings (its `listen` is replaced by port 0).
pub async fn spawn_app_with(mut config: Config) -> TestApp {
    init_logs();
    config.listen = "127.0.0.1:0".parse().unwrap();
    let data_dir = config.store.data_dir.clone();
    let app = Application::build(&config).await.expect("app builds");
    let addr = app.local_addr().unwrap();
    let metrics_addr = app.metrics_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connects");
    TestApp {
        addr,
        metrics_addr,
        data_dir,
        ingest: IngestServiceClient::new(channel.clone()),
        scorecards: ScorecardServiceClient::new(channel.clone()),
        admin: AdminServiceClient::new(channel.clone()),
        channel,
        stop: Some(stop),
        server: Some(server),
        _dir: None,
    }
}

impl TestApp {
    /// Stops the server gracefully and waits until the store is closed.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stops cleanly");
        }
        self._dir.take()
    }

    pub async fn record_all(&mut self, records: Vec<pb::Record>) -> Vec<pb::ItemResult> {
        let mut results = Vec::new();
        for chunk in records.chunks(1000) {
            let response = self
                .ingest
                .record_batch(pb::RecordBatchRequest {
                    records: chunk.to_vec(),
                })
                .await
                .expect("batch accepted")
                .into_inner();
            results.extend(response.results);
        }
        results
    }

    pub async fn scorecard(
        &mut self,
        scope: pb::Scope,
        window: pb::Window,
        as_of: Option<Timestamp>,
    ) -> pb::Scorecard {
        self.scorecards
            .get_scorecard(pb::GetScorecardRequest {
                scope: Some(scope),
                window: Some(window),
                compare_previous: false,
                include_organization: false,
                backlog_as_of: as_of,
                min_sample: 0,
            })
            .await
            .expect("scorecard")
            .into_inner()
            .scorecard
            .expect("scorecard present")
    }

    /// Every item of an Export, as NDJSON lines.
    pub async fn export_lines(&mut self) -> Result<Vec<String>, tonic::Status> {
        let mut stream = self.admin.export(pb::ExportRequest {}).await?.into_inner();
        let mut lines = Vec::new();
        while let Some(chunk) = stream.message().await? {
            lines.extend(chunk.items.iter().map(support_metrics::ndjson::to_line));
        }
        Ok(lines)
    }

    pub async fn stats(&mut self) -> pb::GetStatsResponse {
        self.admin
            .get_stats(pb::GetStatsRequest {})
            .await
            .expect("stats")
            .into_inner()
    }

    pub async fn verify(&mut self) -> pb::VerifyAggregatesResponse {
        self.admin
            .verify_aggregates(pb::VerifyAggregatesRequest {})
            .await
            .expect("verify")
            .into_inner()
    }

    pub async fn rebuild(&mut self) -> pb::RebuildAggregatesResponse {
        self.admin
            .rebuild_aggregates(pb::RebuildAggregatesRequest {})
            .await
            .expect("rebuild")
            .into_inner()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn ts(rfc3339: &str) -> Timestamp {
    let parsed = chrono::DateTime::parse_from_rfc3339(rfc3339).expect("RFC 3339 time");
    Timestamp {
        seconds: parsed.timestamp(),
        nanos: parsed.timestamp_subsec_nanos() as i32,
    }
}

pub fn window(from: &str, to: &str) -> pb::Window {
    pb::Window {
        from: Some(ts(from)),
        to: Some(ts(to)),
    }
}

/// The `days` whole days up to `end` (in nanoseconds, whole seconds kept).
pub fn days_before(end: support_metrics::domain::time::Instant, days: i64) -> pb::Window {
    let end_seconds = end.0 / 1_000_000_000;
    let at = |seconds| Timestamp { seconds, nanos: 0 };
    pb::Window {
        from: Some(at(end_seconds - days * 86_400)),
        to: Some(at(end_seconds)),
    }
}

pub fn org() -> pb::Scope {
    pb::Scope {
        kind: pb::ScopeKind::Organization as i32,
        ..Default::default()
    }
}

pub fn team(id: &str) -> pb::Scope {
    pb::Scope {
        kind: pb::ScopeKind::Team as i32,
        team_id: id.into(),
        ..Default::default()
    }
}

pub fn agent(id: &str) -> pb::Scope {
    pb::Scope {
        kind: pb::ScopeKind::Agent as i32,
        agent_id: id.into(),
        ..Default::default()
    }
}

pub fn channel(channel: pb::Channel) -> pb::Scope {
    pb::Scope {
        kind: pb::ScopeKind::Channel as i32,
        channel: channel as i32,
        ..Default::default()
    }
}

pub fn team_channel(id: &str, channel: pb::Channel) -> pb::Scope {
    pb::Scope {
        kind: pb::ScopeKind::TeamChannel as i32,
        team_id: id.into(),
        channel: channel as i32,
        ..Default::default()
    }
}

/// The field paths named by an INVALID_ARGUMENT status's BadRequest details.
pub fn bad_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// Parses one NDJSON line of the record format (protobuf JSON of `Record`).
pub fn record_from_json(line: &str) -> pb::Record {
    support_metrics::ndjson::record_from_line(line)
        .unwrap_or_else(|e| panic!("bad record line {line}: {e}"))
}

/// A small deterministic generator (xorshift64*), so tests need no seed crate.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// `count` interactions over March 2026 (3 teams, 6 agents, 4 channels, tickets
/// of one to three contacts) with surveys, reviews and churn events: valid
/// records of every kind, for tests that need a realistic store.
pub fn generated_records(seed: u64, count: usize) -> Vec<pb::Record> {
    const MARCH_2026: i64 = 1_772_323_200;
    let channels = [
        pb::Channel::Email,
        pb::Channel::Chat,
        pb::Channel::Phone,
        pb::Channel::Social,
    ];
    let mut rng = Rng::new(seed);
    let mut records = Vec::new();
    let mut ticket = 0;
    let mut contacts_left = 0;
    for n in 0..count {
        if contacts_left == 0 {
            ticket += 1;
            contacts_left = 1 + rng.below(3);
        }
        contacts_left -= 1;
        let opened = MARCH_2026 + rng.below(28 * 86_400) as i64;
        let first_response = opened + rng.below(7_200) as i64;
        let closed = first_response + rng.below(86_400) as i64;
        let channel = channels[rng.below(4) as usize];
        let customer = format!("gen-c{}", ticket % 40);
        let interaction_id = format!("gen-i{n}");
        records.push(pb::Record {
            record: Some(pb::record::Record::Interaction(pb::Interaction {
                interaction_id: interaction_id.clone(),
                revision: 1 + rng.below(3),
                ticket_id: format!("gen-T{ticket}"),
                team_id: format!("team-{}", rng.below(3)),
                agent_id: format!("agent-{}", rng.below(6)),
                customer_id: customer.clone(),
                channel: channel as i32,
                priority: 1 + rng.below(4) as i32,
                opened_at: Some(Timestamp {
                    seconds: opened,
                    nanos: 0,
                }),
                first_response_at: rng.chance(90).then_some(Timestamp {
                    seconds: first_response,
                    nanos: 0,
                }),
                closed_at: Some(Timestamp {
                    seconds: closed,
                    nanos: 0,
                }),
                handle_time: Some(Duration {
                    seconds: 60 + rng.below(3_600) as i64,
                    nanos: 0,
                }),
                resolved: rng.chance(70),
                tags: if rng.chance(30) {
                    vec!["refund".into()]
                } else {
                    vec![]
                },
                social: (channel == pb::Channel::Social).then(|| pb::SocialFacts {
                    kind: 1 + rng.below(5) as i32,
                    sentiment: rng.below(201) as f64 / 100.0 - 1.0,
                }),
            })),
        });
        if rng.chance(40) {
            let kind = 1 + rng.below(3) as i32;
            let score = match kind {
                1 => 1 + rng.below(5),
                2 => 1 + rng.below(7),
                _ => rng.below(11),
            } as u32;
            records.push(pb::Record {
                record: Some(pb::record::Record::SurveyResponse(pb::SurveyResponse {
                    response_id: format!("gen-s{n}"),
                    revision: 1,
                    interaction_id: interaction_id.clone(),
                    kind,
                    score,
                    submitted_at: Some(Timestamp {
                        seconds: closed + 600,
                        nanos: 0,
                    }),
                    comment: String::new(),
                })),
            });
        }
        if rng.chance(20) {
            records.push(pb::Record {
                record: Some(pb::record::Record::QualityReview(pb::QualityReview {
                    review_id: format!("gen-q{n}"),
                    revision: 1,
                    interaction_id,
                    reviewer_id: "qa-1".into(),
                    score: rng.below(101) as u32,
                    reviewed_at: Some(Timestamp {
                        seconds: closed + 3_600,
                        nanos: 0,
                    }),
                })),
            });
        }
        if rng.chance(3) {
            records.push(pb::Record {
                record: Some(pb::record::Record::CustomerEvent(pb::CustomerEvent {
                    event_id: format!("gen-e{n}"),
                    revision: 1,
                    customer_id: customer,
                    kind: pb::CustomerEventKind::Churned as i32,
                    occurred_at: Some(Timestamp {
                        seconds: closed + rng.below(20 * 86_400) as i64,
                        nanos: 0,
                    }),
                })),
            });
        }
    }
    records
}

/// The worked example of `shared/examples/`, kept as a fixture in the repository.
pub fn worked_example() -> Vec<pb::Record> {
    include_str!("../fixtures/worked-example.ndjson")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(record_from_json)
        .collect()
}

/// `GET path` over plain HTTP/1.1: the status line and the body.
pub async fn http_get(app: &TestApp, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(app.metrics_addr)
        .await
        .expect("metrics port");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// Series name with sorted labels → value, from the text exposition format.
pub fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

pub fn value(series: &HashMap<String, f64>, name: &str) -> f64 {
    *series.get(name).unwrap_or_else(|| {
        panic!(
            "no series {name} in {:#?}",
            series.keys().collect::<Vec<_>>()
        )
    })
}

/// The current value of every series on the metrics endpoint.
pub async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let (status, body) = http_get(app, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    parse(&body)
}

/// Options of a store a test opens itself: a small cache, and a snapshot
/// once `after_groups` groups changed (never for time alone).
pub fn store_options(
    path: &Path,
    durable_acks: bool,
    after_groups: u64,
) -> support_metrics::store::SledOptions {
    support_metrics::store::SledOptions {
        path: path.to_owned(),
        cache_capacity_bytes: 4 << 20,
        durable_acks,
        snapshots: support_metrics::store::SnapshotPolicy {
            after_groups,
            interval: std::time::Duration::from_secs(3600),
        },
    }
}

/// Every derived entry and the counters, as the store serves them, days'
/// and months' pending changes folded into their buckets (where a commit
/// splits them depends on the commits, what they add up to does not).
pub fn derived_state(store: &support_metrics::store::Store) -> Vec<(Vec<u8>, Vec<u8>)> {
    use support_metrics::store::{buckets, keys};
    let entries = [
        keys::GROUP,
        keys::AGGREGATE,
        keys::DERIVED_INDEX,
        keys::META,
    ]
    .into_iter()
    .flat_map(|family| store.kv().scan_prefix(&[family]).collect::<Vec<_>>())
    .map(|entry| entry.expect("scan"));
    buckets::folded(entries).expect("pending changes decode")
}

/// Copies a store's directory as a killed process leaves it (call it after
/// the writes to keep were acknowledged, or the store flushed): a crash,
/// taken in process.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the store's directory") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            // A snapshot thread may rename its file away meanwhile.
            let _ = std::fs::copy(entry.path(), &target);
        }
    }
}

/// Sends raw bytes as a request body, and reads the answer's bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

#[derive(Debug, Clone, Copy, Default)]
pub struct RawBytes;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }

    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

impl tonic::codec::Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let length = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, length).to_vec()))
    }
}
