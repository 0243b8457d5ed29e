//! `support-metrics demo` fills a store that a server then serves, and the echo
//! RPC the benchmarks use as their transport ceiling.

use support_metrics::proto::v1 as pb;
use support_metrics::tools::{self, DemoOptions};

use crate::helpers::*;

#[tokio::test]
async fn demo_fills_a_consistent_store_with_recent_scorecards_and_targets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let options = DemoOptions {
        seed: 5,
        interactions: 2_000,
        days: 30,
    };
    let (summary, end) = tools::demo(&store_config(data.clone()), &options)
        .await
        .expect("demo runs");
    assert!(summary.created >= 2_000, "{summary:?}");
    assert!(summary.conflicts.is_empty());

    let mut app = spawn_app_at(data).await;
    let stats = app.stats().await;
    assert_eq!(stats.interactions, 2_000);
    assert!(stats.survey_responses > 0 && stats.quality_reviews > 0);
    assert!(stats.customer_events > 0);
    assert_eq!(app.verify().await.mismatch_count, 0);

    // The data ends at `end` (the current hour): the last week has tickets, and
    // the organisation's demo targets are judged.
    let week = days_before(end, 7);
    let card = app.scorecard(team("billing"), week, None).await;
    let metrics = card.metrics.expect("metrics");
    assert!(metrics.tickets_created > 0);
    assert!(metrics.csat.clone().expect("csat").responses > 0);
    assert!(card
        .targets
        .iter()
        .any(|t| t.metric == pb::Metric::CsatPercent as i32));
    // Every demo team has an SLA policy: both outcomes show up.
    let frt = metrics.first_response_sla.expect("FRT SLA");
    assert!(frt.achieved > 0 && frt.breached > 0, "{frt:?}");
    assert!(metrics.resolution_sla.expect("resolution SLA").achieved > 0);
    app.stop().await;
}

#[tokio::test]
async fn echo_returns_its_payload_and_touches_no_store() {
    let mut app = spawn_app().await;
    let payload: Vec<u8> = (0..=255).cycle().take(4_000).collect();
    let reply = app
        .admin
        .echo(pb::EchoRequest {
            payload: payload.clone(),
        })
        .await
        .expect("echo")
        .into_inner();
    assert_eq!(reply.payload, payload);
    assert_eq!(app.stats().await.interactions, 0);
}

#[tokio::test]
async fn demo_ids_never_clash_with_the_worked_example() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let options = DemoOptions {
        seed: 1,
        interactions: 300,
        days: 30,
    };
    tools::demo(&store_config(data.clone()), &options)
        .await
        .expect("demo runs");
    let mut app = spawn_app_at(data).await;
    // The README's records go into a demo store as they do into a fresh one.
    for result in app.record_all(worked_example()).await {
        assert_eq!(
            result.result,
            Some(pb::item_result::Result::Outcome(
                pb::Outcome::Created as i32
            )),
            "{result:?}"
        );
    }
    app.stop().await;
}
