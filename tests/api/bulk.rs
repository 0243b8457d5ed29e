//! A bulk load (what `import` and `demo` do into a store without records)
//! writes the records without recomputing, then computes the derived state
//! once. It must give each record the outcome the writer gives it, and end
//! with the derived state live writes of the same records build; cut short,
//! it must leave no snapshot behind, so that the next open computes the
//! state from the records that landed.

use std::path::Path;

use support_metrics::domain::records::Record;
use support_metrics::domain::scorecard::{Metric, Targets};
use support_metrics::domain::time::Instant;
use support_metrics::store::{snapshot_written_at, BulkLoad, Outcome, SledOptions, Store};
use support_metrics::workload::{self, WorkloadConfig};

use crate::helpers::{derived_state, store_options, Rng};

/// Relaxed commits, as `import` opens a store; snapshots every 50 groups.
fn options(path: &Path) -> SledOptions {
    store_options(path, false, 50)
}

/// A generated history, then some of its records sent again: as they were
/// (duplicates) and, for a few interactions, changed at the same revision
/// (conflicts, refused as ALREADY_EXISTS).
fn records(seed: u64) -> Vec<Record> {
    let config = WorkloadConfig::new(seed, 300, 20, Instant::from_seconds(1_767_225_600));
    let mut records = workload::generate(&config);
    let mut rng = Rng::new(seed);
    let mut again = Vec::new();
    for record in &records {
        if !rng.chance(5) {
            continue;
        }
        match record.clone() {
            Record::Interaction(mut interaction) if rng.chance(50) => {
                interaction.tags.push("changed".into());
                again.push(Record::Interaction(interaction));
            }
            same => again.push(same),
        }
    }
    records.extend(again);
    records
}

/// Batches of random sizes, as an import file's lines and its targets split them.
fn batches(records: &[Record], rng: &mut Rng) -> Vec<Vec<Record>> {
    let mut batches = Vec::new();
    let mut rest = records;
    while !rest.is_empty() {
        let size = (1 + rng.below(700) as usize).min(rest.len());
        let (batch, after) = rest.split_at(size);
        batches.push(batch.to_vec());
        rest = after;
    }
    batches
}

fn recorded_live(
    path: &Path,
    batches: &[Vec<Record>],
    runtime: &tokio::runtime::Runtime,
) -> (Store, Vec<Result<Outcome, String>>) {
    let store = Store::open(&options(path)).expect("open");
    let mut outcomes = Vec::new();
    for batch in batches {
        let replies = runtime
            .block_on(store.record(batch.clone()))
            .expect("recorded");
        outcomes.extend(
            replies
                .into_iter()
                .map(|reply| reply.map_err(|e| e.to_string())),
        );
    }
    (store, outcomes)
}

fn recorded_in_bulk(bulk: &mut BulkLoad, batches: &[Vec<Record>]) -> Vec<Result<Outcome, String>> {
    batches
        .iter()
        .flat_map(|batch| bulk.record(batch.clone()).expect("recorded"))
        .map(|reply| reply.map_err(|e| e.to_string()))
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_bulk_load_gives_each_record_the_writers_outcome_and_the_state_live_writes_build() {
    let runtime = runtime();
    for seed in [1, 2, 3] {
        let records = records(seed);
        let batches = batches(&records, &mut Rng::new(seed));
        let dir = tempfile::tempdir().expect("temp dir");
        let (live, live_outcomes) = recorded_live(&dir.path().join("live"), &batches, &runtime);

        let bulk_path = dir.path().join("bulk");
        let mut bulk = BulkLoad::begin(&options(&bulk_path))
            .expect("begin")
            .expect("an empty store is loaded in bulk");
        let bulk_outcomes = recorded_in_bulk(&mut bulk, &batches);
        let loaded = bulk.finish().expect("finish");

        assert_eq!(bulk_outcomes, live_outcomes, "seed {seed}");
        for outcome in [Outcome::Created, Outcome::Updated, Outcome::Duplicate] {
            assert!(
                bulk_outcomes.contains(&Ok(outcome)),
                "seed {seed}: no {outcome:?}"
            );
        }
        assert!(
            bulk_outcomes.iter().any(Result::is_err),
            "seed {seed}: no conflict"
        );
        let state = derived_state(&loaded);
        assert!(state.len() > 1_000, "seed {seed}: {} entries", state.len());
        assert!(
            state == derived_state(&live),
            "seed {seed}: the states differ"
        );
        drop(loaded);
        assert!(
            snapshot_written_at(&bulk_path).is_some(),
            "seed {seed}: the load ends with a snapshot"
        );
    }
}

#[test]
fn a_store_that_holds_records_is_not_loaded_in_bulk() {
    let runtime = runtime();
    let records = records(4);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    let (store, _) = recorded_live(&path, &[records[..10].to_vec()], &runtime);
    drop(store);
    assert!(BulkLoad::begin(&options(&path)).expect("begin").is_none());
}

#[test]
fn a_bulk_load_cut_short_leaves_no_snapshot_and_the_next_open_computes_what_landed() {
    let runtime = runtime();
    let records = records(5);
    let batches = batches(&records, &mut Rng::new(5));
    let landed = &batches[..batches.len() / 2];
    let dir = tempfile::tempdir().expect("temp dir");
    let (live, _) = recorded_live(&dir.path().join("live"), landed, &runtime);

    // A store with targets and no records, closed cleanly: it has a snapshot.
    let path = dir.path().join("cut");
    let store = Store::open(&options(&path)).expect("open");
    runtime
        .block_on(store.set_targets(None, Targets::from([(Metric::CsatPercent, 85.0)])))
        .expect("targets");
    drop(store);
    let snapshot = || snapshot_written_at(&path).is_some();
    assert!(snapshot(), "a clean close writes a snapshot");

    let mut bulk = BulkLoad::begin(&options(&path))
        .expect("begin")
        .expect("a store without records is loaded in bulk");
    assert!(!snapshot(), "the load removes the snapshot first");
    recorded_in_bulk(&mut bulk, landed);
    drop(bulk);
    assert!(!snapshot(), "a load cut short leaves no snapshot");

    let reopened = Store::open(&options(&path)).expect("reopen");
    let state = derived_state(&reopened);
    assert!(state.len() > 100, "{} entries", state.len());
    assert!(
        state == derived_state(&live),
        "the reopened state differs from live writes'"
    );
}
