//! The Prometheus endpoint over HTTP: every series of the operations guide,
//! parsed from a real scrape and checked against what the test did; and the
//! shipped dashboard and alert rules, which may use only series the service
//! exports.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use support_metrics::proto::v1 as pb;

use crate::helpers::*;

/// The name of a `grpc_server_*` series of one method, labels in the order
/// the exposition writes them.
fn grpc(name: &str, kind: &str, service: &str, method: &str, code: Option<&str>) -> String {
    let code = code.map_or(String::new(), |code| format!("grpc_code=\"{code}\","));
    format!(
        "{name}{{{code}grpc_method=\"{method}\",grpc_service=\"supportmetrics.v1.{service}\",grpc_type=\"{kind}\"}}"
    )
}

#[tokio::test]
async fn a_scrape_shows_requests_records_commits_store_and_pending() {
    let mut app = spawn_app().await;
    let example = worked_example();
    let count = |kind: fn(&pb::record::Record) -> bool| {
        example
            .iter()
            .filter(|r| r.record.as_ref().is_some_and(kind))
            .count() as f64
    };
    let interactions = count(|r| matches!(r, pb::record::Record::Interaction(_)));
    let surveys = count(|r| matches!(r, pb::record::Record::SurveyResponse(_)));
    let records = example.len() as f64;
    app.record_all(example.clone()).await;
    let keys_written = |series: &std::collections::HashMap<String, f64>| {
        value(series, "support_metrics_store_keys_written_total")
    };
    let after_first = keys_written(&scrape(&app).await);
    // Each new record writes at least its own key, durably, at once.
    assert!(
        after_first >= records,
        "{after_first} keys for {records} records"
    );
    app.record_all(example).await; // every one a duplicate now
    assert_eq!(
        keys_written(&scrape(&app).await),
        after_first,
        "a batch of duplicates writes nothing"
    );
    app.record_all(vec![record_from_json(
        r#"{"survey_response": {"response_id": "early", "revision": 1, "interaction_id": "not-yet", "kind": "CSAT", "score": 5, "submitted_at": "2026-03-02T10:00:00Z"}}"#,
    )])
    .await;
    let bad = app
        .scorecards
        .get_scorecard(pb::GetScorecardRequest::default())
        .await
        .expect_err("no scope, no window");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    let (status, body) = http_get(&app, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    let series = parse(&body);
    let batch = |name: &str, code: Option<&str>| {
        value(
            &series,
            &grpc(name, "unary", "IngestService", "RecordBatch", code),
        )
    };
    assert_eq!(batch("grpc_server_started_total", None), 3.0);
    assert_eq!(batch("grpc_server_handled_total", Some("OK")), 3.0);
    assert_eq!(batch("grpc_server_handling_seconds_count", None), 3.0);
    assert_eq!(
        value(
            &series,
            &grpc(
                "grpc_server_handled_total",
                "unary",
                "ScorecardService",
                "GetScorecard",
                Some("InvalidArgument")
            )
        ),
        1.0
    );
    // Every offered method starts at zero, so rates exist before any call.
    assert_eq!(
        value(
            &series,
            &grpc(
                "grpc_server_started_total",
                "server_stream",
                "ScorecardService",
                "WatchScorecard",
                None
            )
        ),
        0.0
    );
    let written = |kind: &str, outcome: &str| {
        value(
            &series,
            &format!(
                r#"support_metrics_records_written_total{{kind="{kind}",outcome="{outcome}"}}"#
            ),
        )
    };
    assert_eq!(written("interaction", "created"), interactions);
    assert_eq!(written("interaction", "duplicate"), interactions);
    assert_eq!(written("survey_response", "created"), surveys + 1.0);
    // The all-duplicate batch changed nothing, so it committed nothing.
    assert_eq!(
        value(&series, "support_metrics_commit_group_records_count"),
        2.0
    );
    assert_eq!(
        value(&series, "support_metrics_commit_group_records_sum"),
        records + 1.0
    );
    assert_eq!(
        value(&series, "support_metrics_commit_durable_seconds_count"),
        2.0
    );
    assert!(value(&series, "support_metrics_store_size_bytes") > 0.0);
    assert_eq!(
        value(
            &series,
            r#"support_metrics_pending_records{kind="survey_response"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &series,
            r#"support_metrics_pending_records{kind="quality_review"}"#
        ),
        0.0
    );

    let (status, _) = http_get(&app, "/other").await;
    assert!(status.contains("404"), "{status}");
}

#[tokio::test]
async fn a_stream_is_timed_until_it_ends_and_counted_with_its_last_code() {
    let app = spawn_app().await;
    let watch = |name: &str, code: Option<&str>| {
        grpc(
            name,
            "server_stream",
            "ScorecardService",
            "WatchScorecard",
            code,
        )
    };
    let mut stream = app
        .scorecards
        .clone()
        .watch_scorecard(pb::WatchScorecardRequest {
            scope: Some(org()),
            moving_window: Some(pb::watch_scorecard_request::MovingWindow::Trailing(
                prost_types::Duration {
                    seconds: 86_400,
                    nanos: 0,
                },
            )),
            min_interval: None,
            min_sample: 0,
        })
        .await
        .expect("watch opens")
        .into_inner();
    stream.message().await.expect("a first scorecard");
    let held = Duration::from_millis(400);
    tokio::time::sleep(held).await;
    let open = scrape(&app).await;
    assert_eq!(value(&open, &watch("grpc_server_started_total", None)), 1.0);
    assert!(
        !open.contains_key(&watch("grpc_server_handled_total", Some("OK"))),
        "an open stream is not handled yet"
    );
    assert_eq!(value(&open, "support_metrics_grpc_calls_open"), 1.0);

    drop(stream); // the client goes away
    let mut ended = HashMap::new();
    for _ in 0..100 {
        ended = scrape(&app).await;
        if ended.contains_key(&watch("grpc_server_handled_total", Some("Canceled"))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        value(
            &ended,
            &watch("grpc_server_handled_total", Some("Canceled"))
        ),
        1.0
    );
    let seconds = value(&ended, &watch("grpc_server_handling_seconds_sum", None));
    assert!(
        seconds >= held.as_secs_f64(),
        "the stream was open {held:?}, timed {seconds} s"
    );
    assert_eq!(value(&ended, "support_metrics_grpc_calls_open"), 0.0);

    // A stream that runs to its end is counted with its trailers' code.
    let mut export = app
        .admin
        .clone()
        .export(pb::ExportRequest::default())
        .await
        .expect("export starts")
        .into_inner();
    while export.message().await.expect("export goes on").is_some() {}
    let exported = scrape(&app).await;
    assert_eq!(
        value(
            &exported,
            &grpc(
                "grpc_server_handled_total",
                "server_stream",
                "AdminService",
                "Export",
                Some("OK")
            )
        ),
        1.0
    );
}

#[tokio::test]
async fn process_build_and_saturation_series_are_exported() {
    let mut app = spawn_app().await;
    app.record_all(worked_example()).await;
    let dir = app.stop().await.expect("its temp dir");
    // A clean stop writes the snapshot, so its age is known after a restart.
    let mut app = spawn_app_at(dir.path().join("data")).await;
    let series = scrape(&app).await;
    // Loaded from the snapshot: every chunk is in the file, none in memory
    // until a write changes one.
    let chunks = |series: &HashMap<String, f64>, location: &str| {
        value(
            series,
            &format!("support_metrics_derived_state_chunks{{location=\"{location}\"}}"),
        )
    };
    assert!(chunks(&series, "snapshot") >= 1.0);
    assert_eq!(chunks(&series, "memory"), 0.0);
    let mut late = worked_example().remove(0);
    if let Some(pb::record::Record::Interaction(interaction)) = &mut late.record {
        interaction.interaction_id = "i-late".into();
        interaction.ticket_id = "T-late".into();
    }
    app.record_all(vec![late]).await;
    assert!(chunks(&scrape(&app).await, "memory") >= 1.0);
    let resident = value(&series, "process_resident_memory_bytes");
    assert!(resident > 1e6, "{resident} bytes resident");
    assert!(value(&series, "process_virtual_memory_bytes") >= resident);
    assert!(value(&series, "process_open_fds") >= 3.0);
    assert!(value(&series, "process_max_fds") >= value(&series, "process_open_fds"));
    assert!(value(&series, "process_cpu_seconds_total") > 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = value(&series, "process_start_time_seconds");
    assert!(started <= now && started > now - 86_400.0, "{started}");
    assert_eq!(
        value(
            &series,
            &format!(
                "support_metrics_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );
    assert_eq!(value(&series, "support_metrics_writer_queue_depth"), 0.0);
    assert_eq!(
        value(&series, "support_metrics_writer_queue_capacity"),
        1024.0
    );
    assert_eq!(value(&series, "support_metrics_requests_in_flight"), 0.0);
    assert_eq!(value(&series, "support_metrics_max_in_flight"), 512.0);
    let age = value(&series, "support_metrics_snapshot_age_seconds");
    assert!((0.0..60.0).contains(&age), "snapshot written {age} s ago");
    let available = value(&series, "support_metrics_disk_available_bytes");
    assert!(available > 0.0 && available <= value(&series, "support_metrics_disk_capacity_bytes"));
    drop(dir);
}

#[tokio::test]
async fn a_fresh_store_has_no_snapshot_age() {
    let app = spawn_app().await;
    let series = scrape(&app).await;
    assert!(
        !series.contains_key("support_metrics_snapshot_age_seconds"),
        "no snapshot yet: no age rather than a made-up one"
    );
}

/// Metric names in a PromQL expression: identifiers outside label matchers,
/// ranges and strings that are not functions, keywords or the label lists
/// of `by (...)` and its kin.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 6] = ["and", "or", "unless", "bool", "offset", "inf"];
    // Aggregations may put `by (...)` between their name and their argument.
    const AGGREGATIONS: [&str; 12] = [
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
    ];
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' || c == '[' || c == '"' {
            let close = match c {
                '{' => '}',
                '[' => ']',
                _ => '"',
            };
            i += chars[i + 1..]
                .iter()
                .position(|&d| d == close)
                .expect("closed")
                + 2;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if LABEL_LISTS.contains(&word.as_str()) {
                if next == Some(&'(') {
                    i += chars[i..].iter().position(|&d| d == ')').expect("closed") + 1;
                }
            } else if next != Some(&'(')
                && !KEYWORDS.contains(&word.to_lowercase().as_str())
                && !AGGREGATIONS.contains(&word.as_str())
            {
                names.insert(word);
            }
        } else if c.is_ascii_digit() {
            // A number or a duration (5m, 1e6).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn metric_names_are_told_from_functions_labels_and_ranges() {
    let names = metric_names(
        r#"sum by (job, le) (rate(a_total{job="x", code=~"A|B"}[5m])) / on (job) b_bytes > 1e6 and absent(up)"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["a_total", "b_bytes", "up"]
    );
}

/// Every series family a server exports after some calls, and the series
/// that are absent only where the platform does not tell (no cgroup memory
/// limit on this machine).
async fn exported_families() -> BTreeSet<String> {
    let app = spawn_app().await;
    // A clean stop writes the snapshot; the restarted server has it.
    let dir = app.stop().await.expect("its temp dir");
    let mut app = spawn_app_at(dir.path().join("data")).await;
    app.record_all(worked_example()).await;
    let _ = app
        .scorecards
        .clone()
        .get_scorecard(pb::GetScorecardRequest::default())
        .await;
    let (_, body) = http_get(&app, "/metrics").await;
    let mut families: BTreeSet<String> = body
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .flat_map(|line| {
            let (name, kind) = line.split_once(' ').unwrap();
            let mut names = vec![name.to_owned()];
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.push(format!("{name}{suffix}"));
                }
            }
            names
        })
        .collect();
    families.insert("support_metrics_memory_limit_bytes".into());
    // Prometheus's own series of every target.
    families.insert("up".into());
    families
}

#[tokio::test]
async fn the_dashboard_and_the_alert_rules_use_only_exported_series() {
    let exported = exported_families().await;
    let root = env!("CARGO_MANIFEST_DIR");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/deploy/grafana/support-metrics.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut expressions = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            expressions.push(target["expr"].as_str().expect("an expr").to_owned());
        }
    }
    assert!(expressions.len() >= 20, "{} queries", expressions.len());
    let rules: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!("{root}/deploy/prometheus/alerts.yaml")).unwrap(),
    )
    .expect("the rules are YAML");
    let mut alerts = Vec::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            alerts.push(rule["alert"].as_str().unwrap().to_owned());
            expressions.push(rule["expr"].as_str().unwrap().to_owned());
        }
    }
    let mut used = BTreeSet::new();
    for expr in &expressions {
        for name in metric_names(&expr.replace("$__rate_interval", "5m")) {
            assert!(
                exported.contains(&name),
                "{name} (in `{expr}`) is not a series the service exports"
            );
            used.insert(name);
        }
    }
    // The dashboard shows health, saturation and the store's own series.
    for name in [
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket",
        "process_resident_memory_bytes",
        "support_metrics_writer_queue_depth",
        "support_metrics_records_written_total",
        "support_metrics_pending_records",
    ] {
        assert!(used.contains(name), "nothing shows {name}");
    }
    for alert in [
        "SupportMetricsNotServing",
        "SupportMetricsErrorRatio",
        "SupportMetricsWriterSaturated",
        "SupportMetricsMemoryNearLimit",
        "SupportMetricsDiskNearFull",
        "SupportMetricsSnapshotTooOld",
    ] {
        assert!(alerts.iter().any(|a| a == alert), "no alert {alert}");
    }
}
