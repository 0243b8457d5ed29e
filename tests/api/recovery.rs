//! Derived state that had not reached a checkpoint when the process died is
//! recomputed at the next open from the groups the journal names (the crash
//! harness in tests/process exercises the same path with real kills).

use std::path::Path;

use support_metrics::proto::v1 as pb;
use support_metrics::store::deferred::journal_entry;
use support_metrics::store::keys;
use support_metrics::store::{KvStore, SledOptions, SledStore};

use crate::helpers::*;

fn open_raw(data_dir: &Path) -> SledStore {
    SledStore::open(&SledOptions {
        path: data_dir.to_owned(),
        cache_capacity_bytes: 8 << 20,
        durable_acks: true,
    })
    .expect("open")
}

fn family_count(kv: &SledStore, family: u8) -> usize {
    kv.scan_prefix(&[family]).count()
}

async fn cards(app: &mut TestApp) -> Vec<pb::Scorecard> {
    let mut cards = Vec::new();
    for scope in [org(), team("billing"), team("tech"), agent("ana")] {
        let march = window("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z");
        let card = app
            .scorecard(scope, march, Some(ts("2026-03-05T00:00:00Z")))
            .await;
        cards.push(card);
    }
    cards
}

/// Records the worked example, stops cleanly, then leaves what a crash
/// before the first checkpoint would: the raw records, no derived state, and
/// the journal `journal` writes given every group the writes changed (by
/// `G` key). The store then opens and must serve what it served before.
async fn recovered_after_a_crash(
    journal: impl FnOnce(Vec<Vec<u8>>) -> Vec<(Vec<u8>, Option<Vec<u8>>)>,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut app = spawn_app_at(data.clone()).await;
    let records = include_str!("../fixtures/worked-example.ndjson")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(record_from_json)
        .collect();
    app.record_all(records).await;
    let before = cards(&mut app).await;
    assert!(before[0].metrics.as_ref().expect("metrics").tickets_created > 0);
    app.stop().await;

    {
        let kv = open_raw(&data);
        assert_eq!(
            family_count(&kv, keys::JOURNAL),
            0,
            "a clean stop checkpoints"
        );
        let mut changes = Vec::new();
        let mut groups = Vec::new();
        for family in [keys::GROUP, keys::AGGREGATE, keys::DERIVED_INDEX] {
            for entry in kv.scan_prefix(&[family]) {
                let (key, _) = entry.expect("scan");
                if family == keys::GROUP {
                    groups.push(key.clone());
                }
                changes.push((key, None));
            }
        }
        assert!(changes.len() > 20, "the example derives many keys");
        assert!(groups.len() > 2, "the example changes several groups");
        changes.extend(journal(groups));
        kv.commit(changes).expect("simulate the crash");
        assert_eq!(family_count(&kv, keys::AGGREGATE), 0);
    }

    let mut app = spawn_app_at(data.clone()).await;
    assert_eq!(app.verify().await.mismatch_count, 0);
    assert_eq!(cards(&mut app).await, before);
    app.stop().await;
    let kv = open_raw(&data);
    assert_eq!(
        family_count(&kv, keys::JOURNAL),
        0,
        "recovery clears the journal"
    );
    assert!(family_count(&kv, keys::AGGREGATE) > 0);
}

#[tokio::test]
async fn groups_named_by_the_journal_are_recomputed_when_the_store_opens() {
    // As commits journal them: neither entry names every group, and one
    // group is in both.
    recovered_after_a_crash(|groups| {
        let (first, second) = groups.split_at(groups.len() / 2);
        let mut first = first.to_vec();
        first.push(second[0].clone());
        [(7, first), (8, second.to_vec())]
            .into_iter()
            .map(|(sequence, groups)| journal_entry(sequence, groups).expect("journal entry"))
            .collect()
    })
    .await;
}

#[tokio::test]
async fn a_damaged_journal_entry_recomputes_every_group() {
    // One entry names nothing it can be trusted for; the other names one group.
    recovered_after_a_crash(|groups| {
        vec![
            journal_entry(3, vec![groups[0].clone()]).expect("journal entry"),
            (keys::journal(4), Some(b"damaged".to_vec())),
        ]
    })
    .await;
}

#[tokio::test]
async fn a_store_of_another_format_is_refused_with_the_way_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let app = spawn_app_at(data.clone()).await;
    app.stop().await;
    // An older build wrote no format key; a store with keys and none is refused.
    {
        let kv = open_raw(&data);
        kv.commit(vec![
            (keys::format(), None),
            (keys::stats(), Some(vec![0; 8])),
        ])
        .expect("write");
    }
    let error = support_metrics::store::Store::open(&SledOptions {
        path: data.clone(),
        cache_capacity_bytes: 8 << 20,
        durable_acks: true,
    })
    .expect_err("an unmarked store with data is refused");
    let message = error.to_string();
    assert!(message.contains("earlier build"), "{message}");
    assert!(message.contains("export"), "{message}");
}
