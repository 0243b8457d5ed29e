//! The derived state lives in memory and in a snapshot file; the raw records
//! and the journal live in the store. Whatever of the snapshot is missing,
//! stale or damaged, the store opens serving exactly what its raw records
//! imply (the crash harness in tests/process does the same with real kills).

use std::path::{Path, PathBuf};

use support_metrics::proto::v1 as pb;
use support_metrics::store::keys;
use support_metrics::store::{
    journal_entry, KvStore, SledOptions, SledStore, SnapshotPolicy, Store,
};

use crate::helpers::*;

fn options(data_dir: &Path) -> SledOptions {
    SledOptions {
        path: data_dir.to_owned(),
        cache_capacity_bytes: 8 << 20,
        durable_acks: true,
        snapshots: Default::default(),
    }
}

fn open_raw(data_dir: &Path) -> SledStore {
    SledStore::open(&options(data_dir)).expect("open")
}

fn family_count(kv: &SledStore, family: u8) -> usize {
    kv.scan_prefix(&[family]).count()
}

fn snapshot_file(data_dir: &Path) -> PathBuf {
    data_dir.join("derived-state.snapshot")
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

fn example_records() -> Vec<pb::Record> {
    include_str!("../fixtures/worked-example.ndjson")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(record_from_json)
        .collect()
}

/// A stopped store holding the worked example, and the scorecards it served.
async fn example_store() -> (tempfile::TempDir, PathBuf, Vec<pb::Scorecard>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut app = spawn_app_at(data.clone()).await;
    app.record_all(example_records()).await;
    let before = cards(&mut app).await;
    assert!(before[0].metrics.as_ref().expect("metrics").tickets_created > 0);
    app.stop().await;
    (dir, data, before)
}

/// Opens the store, checks it serves `expected` and verifies clean, stops it.
async fn serves_what_it_served(data: &Path, expected: &[pb::Scorecard]) {
    let mut app = spawn_app_at(data.to_owned()).await;
    assert_eq!(app.verify().await.mismatch_count, 0);
    assert_eq!(cards(&mut app).await, expected);
    app.stop().await;
}

#[tokio::test]
async fn a_clean_stop_leaves_a_snapshot_and_no_journal_and_no_derived_keys_in_the_store() {
    let (_dir, data, before) = example_store().await;
    assert!(snapshot_file(&data).exists());
    {
        let kv = open_raw(&data);
        assert_eq!(
            family_count(&kv, keys::JOURNAL),
            0,
            "a clean stop covers it"
        );
        for family in [keys::GROUP, keys::AGGREGATE, keys::DERIVED_INDEX] {
            assert_eq!(
                family_count(&kv, family),
                0,
                "derived state stays in memory"
            );
        }
        assert!(family_count(&kv, keys::RAW) > 10);
    }
    serves_what_it_served(&data, &before).await;
}

#[tokio::test]
async fn without_a_snapshot_every_group_is_recomputed_from_the_raw_records() {
    let (_dir, data, before) = example_store().await;
    std::fs::remove_file(snapshot_file(&data)).expect("remove the snapshot");
    serves_what_it_served(&data, &before).await;
    assert!(snapshot_file(&data).exists(), "the stop saved a new one");
}

#[tokio::test]
async fn a_damaged_snapshot_is_set_aside_recomputed_and_never_served() {
    let (_dir, data, before) = example_store().await;
    let path = snapshot_file(&data);
    let mut bytes = std::fs::read(&path).expect("read the snapshot");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&path, &bytes).expect("damage the snapshot");
    serves_what_it_served(&data, &before).await;
    let aside = data.join("derived-state.snapshot.damaged");
    assert_eq!(std::fs::read(aside).expect("kept for a post-mortem"), bytes);
}

#[tokio::test]
async fn a_snapshot_write_cut_short_is_removed_and_the_last_whole_one_loaded() {
    let (_dir, data, before) = example_store().await;
    let unfinished = data.join("derived-state.snapshot.tmp");
    std::fs::write(&unfinished, b"SMSTATE1 cut short by a kill").expect("write");
    serves_what_it_served(&data, &before).await;
    assert!(!unfinished.exists());
}

/// A snapshot copied in from another store (here one holding half the
/// example) checksums and parses, yet must never be served: it is set aside
/// and the state recomputed from this store's records.
#[tokio::test]
async fn a_snapshot_of_another_store_is_set_aside_and_never_served() {
    let (_dir, data, before) = example_store().await;
    let other = tempfile::tempdir().expect("temp dir");
    let other_data = other.path().join("data");
    let mut app = spawn_app_at(other_data.clone()).await;
    let mut records = example_records();
    records.truncate(records.len() / 2);
    app.record_all(records).await;
    app.stop().await;
    let foreign = std::fs::read(snapshot_file(&other_data)).expect("the other's snapshot");
    std::fs::write(snapshot_file(&data), &foreign).expect("copy it in");
    serves_what_it_served(&data, &before).await;
    let aside = data.join("derived-state.snapshot.damaged");
    assert_eq!(
        std::fs::read(aside).expect("kept for a post-mortem"),
        foreign
    );
}

/// The example's first records are recorded and the store stopped (a
/// snapshot). The rest is recorded, and the store crashes: its directory is
/// copied as the acknowledged commits left it, the journal after the
/// snapshot included, which `change` may then alter. The copy must serve
/// what the store served.
async fn recovered_from_a_snapshot_and_the_journal_after_it(change: impl FnOnce(&SledStore)) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut records = example_records();
    let rest = records.split_off(records.len() / 2);
    let mut app = spawn_app_at(data.clone()).await;
    app.record_all(records).await;
    app.stop().await;
    let mut app = spawn_app_at(data.clone()).await;
    for record in rest {
        app.record_all(vec![record]).await;
    }
    let before = cards(&mut app).await;
    let crashed = dir.path().join("crashed");
    copy_dir(&data, &crashed);
    app.stop().await;
    {
        let kv = open_raw(&crashed);
        assert!(
            family_count(&kv, keys::JOURNAL) > 2,
            "the commits after the snapshot are journaled"
        );
        change(&kv);
    }
    serves_what_it_served(&crashed, &before).await;
    assert_eq!(
        family_count(&open_raw(&crashed), keys::JOURNAL),
        0,
        "the next snapshot covers the journal"
    );
}

#[tokio::test]
async fn groups_the_journal_names_after_the_snapshot_are_recomputed_when_the_store_opens() {
    // Retracting what each contributed as the snapshot saw it: updates and
    // late records among the example's second half.
    recovered_from_a_snapshot_and_the_journal_after_it(|_| {}).await;
}

#[tokio::test]
async fn a_damaged_journal_entry_recomputes_every_group() {
    recovered_from_a_snapshot_and_the_journal_after_it(|kv| {
        let (last, _) = kv
            .scan_prefix(&[keys::JOURNAL])
            .last()
            .expect("an entry")
            .expect("scan");
        kv.commit(vec![(last, Some(b"damaged".to_vec()))])
            .expect("damage it");
    })
    .await;
}

/// A format 10 to 13 store left by a crash: its snapshot (of the example's
/// first half) holds state this build does not read (histograms before 12,
/// all-time aggregates before 13, hour aggregates before 14), and its journal is
/// dropped here, so that loading the snapshot would serve the first half
/// alone. It must be removed and the state recomputed from the records.
async fn an_earlier_format_store_recomputes_its_state(version: u8) {
    recovered_from_a_snapshot_and_the_journal_after_it(|kv| {
        let mut changes = vec![(keys::format(), Some(encoded_u32(version)))];
        for entry in kv.scan_prefix(&[keys::JOURNAL]) {
            changes.push((entry.expect("scan").0, None));
        }
        kv.commit(changes).expect("write an earlier format's store");
    })
    .await;
}

#[tokio::test]
async fn a_format_13_store_is_migrated_its_snapshot_removed_and_recomputed() {
    an_earlier_format_store_recomputes_its_state(13).await;
}

#[tokio::test]
async fn a_format_12_store_is_migrated_its_snapshot_removed_and_recomputed() {
    an_earlier_format_store_recomputes_its_state(12).await;
}

#[tokio::test]
async fn a_format_11_store_is_migrated_its_snapshot_removed_and_recomputed() {
    an_earlier_format_store_recomputes_its_state(11).await;
}

#[tokio::test]
async fn a_format_10_store_is_migrated_its_snapshot_removed_and_recomputed() {
    an_earlier_format_store_recomputes_its_state(10).await;
}

#[tokio::test]
async fn a_journal_entry_the_snapshot_covers_is_deleted_at_open() {
    let (_dir, data, before) = example_store().await;
    // Sequence 0 is before the snapshot's next entry: covered.
    open_raw(&data)
        .commit(vec![
            journal_entry(0, vec![b"Gt\xff".to_vec()], Vec::new()).expect("entry")
        ])
        .expect("write the journal");
    serves_what_it_served(&data, &before).await;
    assert_eq!(family_count(&open_raw(&data), keys::JOURNAL), 0);
}

#[tokio::test]
async fn a_format_9_store_is_migrated_its_derived_keys_deleted_and_recomputed() {
    let (_dir, data, before) = example_store().await;
    std::fs::remove_file(snapshot_file(&data)).expect("format 9 had no snapshot");
    {
        let kv = open_raw(&data);
        kv.commit(vec![
            (keys::format(), Some(encoded_u32(9))),
            (b"Gtold".to_vec(), Some(b"stale contribution".to_vec())),
            (b"Ad-old".to_vec(), Some(b"stale aggregate".to_vec())),
            (b"Xo-old".to_vec(), Some(b"stale index".to_vec())),
            (keys::journal(3), Some(b"old journal".to_vec())),
        ])
        .expect("write what format 9 kept");
    }
    serves_what_it_served(&data, &before).await;
    let kv = open_raw(&data);
    for family in [
        keys::GROUP,
        keys::AGGREGATE,
        keys::DERIVED_INDEX,
        keys::JOURNAL,
    ] {
        assert_eq!(family_count(&kv, family), 0);
    }
    assert_eq!(kv.get(&keys::format()).unwrap(), Some(encoded_u32(14)));
}

/// A `u32` as the store encodes values (a CRC-32 of the payload, then the
/// payload: a postcard varint, one byte below 128).
fn encoded_u32(value: u8) -> Vec<u8> {
    assert!(value < 128);
    let mut bytes = crc32fast::hash(&[value]).to_le_bytes().to_vec();
    bytes.push(value);
    bytes
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
    let error = Store::open(&options(&data)).expect_err("an unmarked store with data is refused");
    let message = error.to_string();
    assert!(message.contains("earlier build"), "{message}");
    assert!(message.contains("export"), "{message}");
}

#[tokio::test]
async fn an_idle_store_saves_its_last_changes_as_a_snapshot_once_one_is_due() {
    use support_metrics::workload::{self, WorkloadConfig};
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let store = Store::open(&SledOptions {
        snapshots: SnapshotPolicy {
            after_groups: 1_000_000,
            interval: std::time::Duration::from_secs(1),
        },
        ..options(&data)
    })
    .expect("open");
    let config = WorkloadConfig::new(
        7,
        200,
        5,
        support_metrics::domain::time::Instant::from_seconds(1_767_225_600),
    );
    store
        .record(workload::generate(&config))
        .await
        .expect("recorded");
    // No write follows: the writer, idle, must save the state within a few
    // seconds and delete the journal the snapshot covers.
    let crashed = dir.path().join("crashed");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        copy_dir(&data, &crashed);
        let saved = snapshot_file(&crashed).exists()
            && family_count(&open_raw(&crashed), keys::JOURNAL) == 0;
        if saved {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "an idle store left its changes to the journal"
        );
        std::fs::remove_dir_all(&crashed).expect("remove the copy");
    }
    let recovered = Store::open(&options(&crashed)).expect("open the copy");
    for family in [keys::AGGREGATE, keys::DERIVED_INDEX] {
        let served: Vec<_> = store
            .kv()
            .scan_prefix(&[family])
            .map(|e| e.expect("scan"))
            .collect();
        let restored: Vec<_> = recovered
            .kv()
            .scan_prefix(&[family])
            .map(|e| e.expect("scan"))
            .collect();
        assert!(!served.is_empty());
        assert_eq!(served, restored, "the snapshot holds the last writes");
    }
}

/// The snapshot is read in place, its blocks checked whenever they are read:
/// blocks damaged while the server runs are found by the write that needs
/// them, which is refused as DATA_LOSS before its record is durable; the
/// restart finds the damage at load, sets the file aside, recomputes, and
/// serves exactly what it served before, without the refused record.
#[tokio::test]
async fn blocks_damaged_while_serving_refuse_the_write_that_needs_them_and_a_restart_recovers() {
    use std::io::Write;
    // A store of many chunks, so that the write's are not among the few a
    // start reads (and caches) before the damage.
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut app = spawn_app_at(data.clone()).await;
    app.record_all(example_records()).await;
    app.record_all(generated_records(7, 3_000)).await;
    let before = cards(&mut app).await;
    app.stop().await;
    let mut app = spawn_app_at(data.clone()).await;
    let path = snapshot_file(&data);
    let mut bytes = std::fs::read(&path).expect("read the snapshot");
    let footer = bytes.len() - 20;
    let index_at = u64::from_le_bytes(bytes[footer..footer + 8].try_into().unwrap()) as usize;
    for byte in &mut bytes[8..index_at] {
        *byte ^= 0x5a;
    }
    // In place: the server reads the file it opened.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut file| file.write_all(&bytes))
        .expect("damage every block");
    let Some(pb::record::Record::Interaction(mut new)) = example_records().remove(0).record else {
        panic!("the example starts with an interaction");
    };
    new.interaction_id = "i-after-damage".into();
    new.ticket_id = "T-after-damage".into();
    let status = app
        .ingest
        .record_interaction(pb::RecordInteractionRequest {
            interaction: Some(new),
        })
        .await
        .expect_err("a write needing a damaged block is refused");
    assert_eq!(status.code(), tonic::Code::DataLoss, "{status:?}");
    assert!(
        status.message().contains("snapshot"),
        "{}",
        status.message()
    );
    app.stop().await;
    let raw = open_raw(&data);
    assert!(
        raw.get(&keys::raw(
            keys::RecordKind::Interaction,
            &support_metrics::domain::records::Id::parse("i-after-damage").unwrap()
        ))
        .expect("read")
        .is_none(),
        "the refused record is not durable"
    );
    drop(raw);
    serves_what_it_served(&data, &before).await;
    assert!(data.join("derived-state.snapshot.damaged").exists());
}
