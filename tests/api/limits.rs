//! Overload and limits over the wire: a bounded number of requests in flight,
//! client deadlines honoured, oversized messages refused with a clear status.

use std::time::Duration;

use support_metrics::proto::v1 as pb;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::helpers::*;

fn created(results: &[pb::ItemResult]) -> u64 {
    let created = Some(pb::item_result::Result::Outcome(
        pb::Outcome::Created as i32,
    ));
    results.iter().filter(|r| r.result == created).count() as u64
}

#[tokio::test]
async fn beyond_the_in_flight_bound_requests_are_refused_not_queued() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tool_config(dir.path().join("data"));
    config.max_in_flight = 2;
    let mut app = spawn_app_with(config).await;
    let records = generated_records(3, 6_000);
    let interactions_sent: Vec<u64> = records
        .chunks(200)
        .map(|chunk| {
            chunk
                .iter()
                .filter(|r| matches!(r.record, Some(pb::record::Record::Interaction(_))))
                .count() as u64
        })
        .collect();

    // Many clients at once, each on its own connection.
    let mut calls = Vec::new();
    for chunk in records.chunks(200) {
        let addr = app.addr;
        let chunk = chunk.to_vec();
        calls.push(tokio::spawn(async move {
            let mut client =
                support_metrics::proto::v1::ingest_service_client::IngestServiceClient::connect(
                    format!("http://{addr}"),
                )
                .await
                .expect("connects");
            client
                .record_batch(pb::RecordBatchRequest { records: chunk })
                .await
                .map(|response| response.into_inner().results)
        }));
    }
    // Health is exempt: it answers while the bound is reached.
    let mut health = HealthClient::new(app.channel.clone());
    let serving = health
        .check(HealthCheckRequest::default())
        .await
        .expect("health answers under load")
        .into_inner();
    assert_eq!(serving.status, ServingStatus::Serving as i32);

    let mut refused = 0;
    let mut interactions_expected = 0;
    for (call, interactions) in calls.into_iter().zip(interactions_sent) {
        match call.await.unwrap() {
            Ok(results) => {
                assert_eq!(created(&results), results.len() as u64);
                interactions_expected += interactions;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("retry"), "{}", status.message());
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "30 concurrent batches against a bound of 2");
    assert!(interactions_expected > 0, "some batches got through");
    // A refused batch left nothing behind.
    assert_eq!(app.stats().await.interactions, interactions_expected);
    assert_eq!(app.verify().await.mismatch_count, 0);
}

#[tokio::test]
async fn a_client_deadline_is_honoured() {
    let mut app = spawn_app().await;
    app.record_all(generated_records(9, 3_000)).await;
    let mut request = tonic::Request::new(pb::VerifyAggregatesRequest {});
    request.set_timeout(Duration::from_micros(1));
    let status = app
        .admin
        .verify_aggregates(request)
        .await
        .expect_err("a recomputation of 3,000 records takes longer than 1 µs");
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    // The server is fine afterwards.
    assert_eq!(app.verify().await.mismatch_count, 0);
}

#[tokio::test]
async fn an_oversized_message_is_refused_with_a_clear_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tool_config(dir.path().join("data"));
    config.max_message_mb = 1;
    let mut app = spawn_app_with(config).await;
    let comment = "x".repeat(4_000);
    let records: Vec<pb::Record> = (0..400)
        .map(|n| pb::Record {
            record: Some(pb::record::Record::SurveyResponse(pb::SurveyResponse {
                response_id: format!("s{n}"),
                revision: 1,
                interaction_id: format!("i{n}"),
                kind: pb::SurveyKind::Csat as i32,
                score: 4,
                submitted_at: Some(ts("2026-03-02T10:00:00Z")),
                comment: comment.clone(),
            })),
        })
        .collect();
    let status = app
        .ingest
        .record_batch(pb::RecordBatchRequest { records })
        .await
        .expect_err("1.6 MB is over the 1 MiB limit");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );
    assert_eq!(app.stats().await.survey_responses, 0);
}
