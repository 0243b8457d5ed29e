//! `support-metrics compact` copies a stopped store into a new directory: the
//! copy serves exactly what the store served (the space it saves is tested
//! in `store::compact`: a store this small has little to reclaim).

use support_metrics::proto::v1 as pb;
use support_metrics::tools::{self, DemoOptions};

use crate::helpers::*;

/// What the comparison asks of a store: its counts (not its size on disk,
/// which compaction changes), every record, and scorecards of three scopes.
async fn served(
    app: &mut TestApp,
    month: &pb::Window,
) -> (pb::GetStatsResponse, Vec<String>, Vec<pb::Scorecard>) {
    let stats = pb::GetStatsResponse {
        store_size_bytes: 0,
        ..app.stats().await
    };
    let lines = app.export_lines().await.expect("export");
    let mut cards = Vec::new();
    for scope in [org(), team("billing"), agent("billing-agent-1")] {
        cards.push(app.scorecard(scope, *month, month.to).await);
    }
    (stats, lines, cards)
}

#[tokio::test]
async fn a_compacted_store_serves_what_the_store_served() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let copy = dir.path().join("compacted");
    let options = DemoOptions {
        seed: 11,
        interactions: 2_000,
        days: 30,
    };
    let (_, end) = tools::demo(&store_config(data.clone()), &options)
        .await
        .expect("demo runs");
    let compaction = tools::compact(&store_config(data.clone()), &copy).expect("compacts");
    assert!(compaction.keys > 2_000, "{compaction:?}");
    // The derived state's snapshot comes along, byte for byte.
    let snapshot = |dir: &std::path::Path| {
        std::fs::read(dir.join("derived-state.snapshot")).expect("a snapshot")
    };
    assert_eq!(snapshot(&data), snapshot(&copy));

    let month = days_before(end, 30);
    let mut original = spawn_app_at(data.clone()).await;
    let before = served(&mut original, &month).await;
    original.stop().await;
    let mut compacted = spawn_app_at(copy.clone()).await;
    let after = served(&mut compacted, &month).await;
    assert_eq!(compacted.verify().await.mismatch_count, 0);
    compacted.stop().await;

    assert!(before.0.interactions == 2_000 && before.1.len() > 2_000);
    assert!(before
        .2
        .iter()
        .all(|card| card.metrics.as_ref().is_some_and(|m| m.tickets_created > 0)));
    assert_eq!(before.0, after.0);
    assert!(before.1 == after.1, "the exports differ");
    for (card_before, card_after) in before.2.iter().zip(&after.2) {
        assert_eq!(card_before, card_after);
    }

    // Only into an empty place: the copy, now a store, is refused and kept.
    let error = tools::compact(&store_config(data), &copy).unwrap_err();
    assert!(format!("{error:#}").contains("not empty"), "{error:#}");
    let mut kept = spawn_app_at(copy).await;
    assert_eq!(kept.stats().await.interactions, after.0.interactions);
    kept.stop().await;
}
