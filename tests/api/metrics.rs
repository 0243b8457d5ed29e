//! The Prometheus endpoint over HTTP: every series of the operations guide,
//! parsed from a real scrape and checked against what the test did.

use support_metrics::proto::v1 as pb;

use crate::helpers::*;

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
    let ingest = r#"service="supportmetrics.v1.IngestService""#;
    assert_eq!(
        value(
            &series,
            &format!(
                r#"support_metrics_grpc_requests_total{{code="OK",method="RecordBatch",{ingest}}}"#
            )
        ),
        3.0
    );
    assert_eq!(
        value(
            &series,
            r#"support_metrics_grpc_requests_total{code="INVALID_ARGUMENT",method="GetScorecard",service="supportmetrics.v1.ScorecardService"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &series,
            &format!(
                r#"support_metrics_grpc_request_duration_seconds_count{{method="RecordBatch",{ingest}}}"#
            )
        ),
        3.0
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
