//! Spawning the app and typed helpers shared by every test module.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use prost_types::{Duration, Timestamp};
use serde_json::Value;
use support_metrics::app::Application;
use support_metrics::config::{Config, LogFormat};
use support_metrics::proto::v1 as pb;
use support_metrics::proto::v1::admin_service_client::AdminServiceClient;
use support_metrics::proto::v1::ingest_service_client::IngestServiceClient;
use support_metrics::proto::v1::scorecard_service_client::ScorecardServiceClient;
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// A running server; stops when dropped.
pub struct TestApp {
    pub addr: SocketAddr,
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

pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("data");
    let mut app = spawn_app_at(path).await;
    app._dir = Some(dir);
    app
}

/// Starts a server on an existing data directory (to test restarts).
pub async fn spawn_app_at(data_dir: PathBuf) -> TestApp {
    init_logs();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.clone(),
        cache_mb: 16,
        log_format: LogFormat::Text,
        log: String::new(),
        max_message_mb: 16,
    };
    let app = Application::build(&config).await.expect("app builds");
    let addr = app.local_addr().unwrap();
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
            })
            .await
            .expect("scorecard")
            .into_inner()
            .scorecard
            .expect("scorecard present")
    }

    pub async fn verify(&mut self) -> pb::VerifyAggregatesResponse {
        self.admin
            .verify_aggregates(pb::VerifyAggregatesRequest {})
            .await
            .expect("verify")
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

fn str_field(value: &Value, name: &str) -> String {
    value
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn time_field(value: &Value, name: &str) -> Option<Timestamp> {
    value.get(name).and_then(Value::as_str).map(ts)
}

fn enum_field(value: &Value, name: &str, parse: fn(&str) -> Option<i32>) -> i32 {
    value
        .get(name)
        .and_then(Value::as_str)
        .map(|s| parse(s).unwrap_or_else(|| panic!("unknown {name} {s}")))
        .unwrap_or(0)
}

/// Parses one NDJSON line of the record format (protobuf JSON of `Record`).
pub fn record_from_json(line: &str) -> pb::Record {
    let value: Value = serde_json::from_str(line).expect("JSON line");
    let record = if let Some(i) = value.get("interaction") {
        pb::record::Record::Interaction(pb::Interaction {
            interaction_id: str_field(i, "interaction_id"),
            revision: i["revision"].as_u64().unwrap_or(0),
            ticket_id: str_field(i, "ticket_id"),
            team_id: str_field(i, "team_id"),
            agent_id: str_field(i, "agent_id"),
            customer_id: str_field(i, "customer_id"),
            channel: enum_field(i, "channel", |s| {
                pb::Channel::from_str_name(s).map(|c| c as i32)
            }),
            priority: enum_field(i, "priority", |s| {
                pb::Priority::from_str_name(s).map(|c| c as i32)
            }),
            opened_at: time_field(i, "opened_at"),
            first_response_at: time_field(i, "first_response_at"),
            closed_at: time_field(i, "closed_at"),
            handle_time: i
                .get("handle_time")
                .and_then(Value::as_str)
                .map(|d| Duration {
                    seconds: d.trim_end_matches('s').parse::<f64>().expect("duration") as i64,
                    nanos: 0,
                }),
            resolved: i.get("resolved").and_then(Value::as_bool).unwrap_or(false),
            tags: i
                .get("tags")
                .and_then(Value::as_array)
                .map(|tags| {
                    tags.iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            social: i.get("social").map(|s| pb::SocialFacts {
                kind: enum_field(s, "kind", |k| {
                    pb::SocialKind::from_str_name(k).map(|c| c as i32)
                }),
                sentiment: s.get("sentiment").and_then(Value::as_f64).unwrap_or(0.0),
            }),
        })
    } else if let Some(s) = value.get("survey_response") {
        pb::record::Record::SurveyResponse(pb::SurveyResponse {
            response_id: str_field(s, "response_id"),
            revision: s["revision"].as_u64().unwrap_or(0),
            interaction_id: str_field(s, "interaction_id"),
            kind: enum_field(s, "kind", |k| {
                pb::SurveyKind::from_str_name(k).map(|c| c as i32)
            }),
            score: s["score"].as_u64().unwrap_or(0) as u32,
            submitted_at: time_field(s, "submitted_at"),
            comment: str_field(s, "comment"),
        })
    } else if let Some(r) = value.get("quality_review") {
        pb::record::Record::QualityReview(pb::QualityReview {
            review_id: str_field(r, "review_id"),
            revision: r["revision"].as_u64().unwrap_or(0),
            interaction_id: str_field(r, "interaction_id"),
            reviewer_id: str_field(r, "reviewer_id"),
            score: r["score"].as_u64().unwrap_or(0) as u32,
            reviewed_at: time_field(r, "reviewed_at"),
        })
    } else if let Some(e) = value.get("customer_event") {
        pb::record::Record::CustomerEvent(pb::CustomerEvent {
            event_id: str_field(e, "event_id"),
            revision: e["revision"].as_u64().unwrap_or(0),
            customer_id: str_field(e, "customer_id"),
            kind: enum_field(e, "kind", |k| {
                pb::CustomerEventKind::from_str_name(k).map(|c| c as i32)
            }),
            occurred_at: time_field(e, "occurred_at"),
        })
    } else {
        panic!("unknown record line {line}");
    };
    pb::Record {
        record: Some(record),
    }
}

/// The worked example of `shared/examples/`, kept as a fixture in the repository.
pub fn worked_example() -> Vec<pb::Record> {
    include_str!("../fixtures/worked-example.ndjson")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(record_from_json)
        .collect()
}
