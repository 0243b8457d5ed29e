//! Damaged stored values: every one is detected by its checksum, reported by the
//! scrub (offline `verify` and the `VerifyAggregates` RPC) naming its key, and
//! answered with DATA_LOSS, never with a wrong number.

use std::path::Path;

use support_metrics::domain::records::Id;
use support_metrics::proto::v1 as pb;
use support_metrics::store::keys::{self, RecordKind};
use support_metrics::store::{KvStore, SledOptions, SledStore, Store};
use support_metrics::tools;
use tonic::Code;

use crate::helpers::*;

const MARCH: (&str, &str) = ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z");

/// Flips one bit in the middle of the value of each key; returns how many.
fn flip_bytes(data_dir: &Path, damaged_keys: &[Vec<u8>]) -> usize {
    let kv = SledStore::open(&SledOptions {
        path: data_dir.to_owned(),
        cache_capacity_bytes: 8 << 20,
        durable_acks: true,
        snapshots: Default::default(),
    })
    .expect("open");
    let mut changes = Vec::new();
    for key in damaged_keys {
        let mut value = kv.get(key).expect("read").expect("the key exists");
        let middle = value.len() / 2;
        value[middle] ^= 0x10;
        changes.push((key.clone(), Some(value)));
    }
    kv.commit(changes).expect("write the damage");
    damaged_keys.len()
}

/// Damages, in a stopped store, the derived values it holds in memory: flips
/// one bit in the middle of every aggregate, written through the store as a
/// commit would (so the snapshot saved at the stop keeps the damage). What a
/// bad memory module or a bug could do; the checksums must catch it.
fn damage_every_aggregate(data_dir: &Path) -> usize {
    let store = Store::open(&SledOptions {
        path: data_dir.to_owned(),
        cache_capacity_bytes: 8 << 20,
        durable_acks: true,
        snapshots: Default::default(),
    })
    .expect("open");
    let changes: Vec<(Vec<u8>, Option<Vec<u8>>)> = store
        .kv()
        .scan_prefix(&[keys::AGGREGATE])
        .map(|entry| {
            let (key, mut value) = entry.expect("scan");
            let middle = value.len() / 2;
            value[middle] ^= 0x10;
            (key, Some(value))
        })
        .collect();
    let damaged = changes.len();
    store.kv().commit(changes).expect("write the damage");
    drop(store);
    damaged
}

async fn org_scorecard(app: &mut TestApp) -> Result<pb::Scorecard, tonic::Status> {
    app.scorecards
        .get_scorecard(pb::GetScorecardRequest {
            scope: Some(org()),
            window: Some(window(MARCH.0, MARCH.1)),
            backlog_as_of: Some(ts("2026-03-15T00:00:00Z")),
            ..Default::default()
        })
        .await
        .map(|response| response.into_inner().scorecard.expect("scorecard"))
}

/// A stopped store holding the worked example and an organisation target.
async fn example_store() -> (tempfile::TempDir, std::path::PathBuf) {
    let mut app = spawn_app().await;
    app.record_all(worked_example()).await;
    app.scorecards
        .set_targets(pb::SetTargetsRequest {
            team_id: String::new(),
            targets: vec![pb::Target {
                metric: pb::Metric::CsatPercent as i32,
                value: 75.0,
            }],
        })
        .await
        .expect("targets");
    let data_dir = app.data_dir.clone();
    let dir = app.stop().await.expect("temp dir");
    (dir, data_dir)
}

#[tokio::test]
async fn a_damaged_record_and_targets_are_reported_and_refused_never_served() {
    let (_dir, data_dir) = example_store().await;
    let raw_i1 = keys::raw(RecordKind::Interaction, &Id::parse("i1").unwrap());
    let org_targets = keys::targets(None);
    let injected = flip_bytes(&data_dir, &[raw_i1, org_targets]);
    println!("damaged source values injected: {injected}");

    // Offline scrub: non-zero, naming both keys.
    let mut report = Vec::new();
    let clean = tools::verify(&store_config(data_dir.clone()), &mut report)
        .await
        .expect("scrub runs");
    let report = String::from_utf8(report).unwrap();
    assert!(!clean, "{report}");
    assert!(
        report.contains(&format!("damaged values: {injected}")),
        "{report}"
    );
    assert!(report.contains("Rii1: damaged"), "{report}");
    assert!(report.contains("T: damaged"), "{report}");
    assert!(report.contains("restore them from a backup"), "{report}");

    // A backup refuses to skip them; a salvage writes everything else and
    // names what it left out.
    let export_to = data_dir.with_extension("ndjson");
    let refused = tools::export(&store_config(data_dir.clone()), Some(&export_to), false)
        .expect_err("a backup never skips a record");
    assert!(format!("{refused:#}").contains("Rii1"), "{refused:#}");
    let salvaged = tools::export(&store_config(data_dir.clone()), Some(&export_to), true)
        .expect("a salvage goes on past damage");
    assert_eq!(salvaged.skipped.len(), injected);
    assert!(salvaged.skipped.iter().any(|why| why.contains("Rii1")));
    assert!(salvaged.skipped.iter().any(|why| why.contains("key T ")));
    let written = std::fs::read_to_string(&export_to).expect("salvage file");
    assert_eq!(written.lines().count() as u64, salvaged.items);
    assert_eq!(
        salvaged.items + injected as u64,
        worked_example().len() as u64 + 1,
        "every other record and the targets' line... less the damaged targets"
    );

    // Online: the same report, and DATA_LOSS wherever the damage would be read.
    let mut app = spawn_app_at(data_dir).await;
    let verify = app.verify().await;
    assert_eq!(verify.damaged_values, injected as u64);
    assert!(verify.mismatches.iter().any(|m| m.key == "Rii1"));
    let status = app
        .scorecards
        .get_targets(pb::GetTargetsRequest::default())
        .await
        .expect_err("damaged targets are not served");
    assert_eq!(status.code(), Code::DataLoss);
    assert!(status.message().contains("key T"), "{}", status.message());
    let status = app
        .export_lines()
        .await
        .expect_err("a backup never skips a record");
    assert_eq!(status.code(), Code::DataLoss);
    let status = app
        .admin
        .rebuild_aggregates(pb::RebuildAggregatesRequest {})
        .await
        .expect_err("a rebuild would drop the damaged record");
    assert_eq!(status.code(), Code::DataLoss);
    // A write to the damaged record's ticket reads it, so it is refused too.
    let Some(pb::record::Record::Interaction(mut i1)) = worked_example().remove(0).record else {
        panic!("the example starts with i1");
    };
    i1.revision = 2;
    let status = app
        .ingest
        .record_interaction(pb::RecordInteractionRequest {
            interaction: Some(i1),
        })
        .await
        .expect_err("the damaged record is not overwritten blindly");
    assert_eq!(status.code(), Code::DataLoss);
    assert!(status.message().contains("Rii1"), "{}", status.message());
}

#[tokio::test]
async fn a_store_whose_sled_files_are_damaged_is_refused_naming_the_way_out() {
    let (_dir, data_dir) = example_store().await;
    let db = data_dir.join("db");
    let mut bytes = std::fs::read(&db).expect("read sled's log");
    // Damage all of it: sled cannot read its log.
    for byte in bytes.iter_mut() {
        *byte ^= 0xa5;
    }
    std::fs::write(&db, &bytes).expect("damage sled's log");
    for opened in [
        Store::open(&SledOptions {
            path: data_dir.clone(),
            cache_capacity_bytes: 8 << 20,
            durable_acks: true,
            snapshots: Default::default(),
        })
        .map(drop)
        .map_err(|e| e.to_string()),
        tools::export(&store_config(data_dir.clone()), None, true)
            .map(drop)
            .map_err(|e| format!("{e:#}")),
    ] {
        let message = opened.expect_err("a damaged store is refused, not served");
        assert!(message.contains("damaged"), "{message}");
        assert!(message.contains("restore the last backup"), "{message}");
        assert!(
            message.contains(&data_dir.display().to_string()),
            "{message}"
        );
    }
}

#[tokio::test]
async fn damaged_aggregates_are_refused_and_a_rebuild_repairs_them() {
    let (_dir, data_dir) = example_store().await;
    let before = {
        let mut app = spawn_app_at(data_dir.clone()).await;
        let card = org_scorecard(&mut app).await.expect("scorecard");
        app.stop().await;
        card
    };
    let injected = damage_every_aggregate(&data_dir);
    assert!(injected > 50, "the example fills many buckets");
    println!("damaged aggregates injected: {injected}");

    let mut report = Vec::new();
    assert!(!tools::verify(&store_config(data_dir.clone()), &mut report)
        .await
        .unwrap());
    let report = String::from_utf8(report).unwrap();
    assert!(
        report.contains("damaged values: 0"),
        "raw records intact: {report}"
    );
    assert!(
        report.contains(&format!("mismatches: {injected}")),
        "{report}"
    );
    assert!(report.contains("RebuildAggregates"), "{report}");

    let mut app = spawn_app_at(data_dir).await;
    let status = org_scorecard(&mut app)
        .await
        .expect_err("never a wrong number");
    assert_eq!(status.code(), Code::DataLoss);
    assert!(
        status.message().contains("fails its checksum"),
        "{}",
        status.message()
    );
    let verify = app.verify().await;
    assert_eq!(verify.mismatch_count, injected as u64);
    assert!(verify
        .mismatches
        .iter()
        .all(|m| m.description.starts_with("damaged")));

    app.rebuild().await;
    assert_eq!(app.verify().await.mismatch_count, 0);
    assert_eq!(org_scorecard(&mut app).await.expect("repaired"), before);
}
