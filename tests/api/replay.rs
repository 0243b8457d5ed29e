//! The derived state a store restores after a crash (its last snapshot, then
//! the journal replayed from the raw records) equals the state its live
//! writes built, byte for byte (days' and months' pending changes folded),
//! for random write sequences (late records, updates, stale revisions) with
//! snapshots every few groups and crashes at random points.
//!
//! A crash is taken in process: between two writes the store is flushed (as
//! every durable commit is) and its directory copied, files as a killed
//! process leaves them, a snapshot write in flight included. The copy is
//! opened as a store of its own and compared with the live one.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use support_metrics::domain::time::Instant;
use support_metrics::store::keys;
use support_metrics::store::{SledOptions, Store};
use support_metrics::workload::{self, WorkloadConfig};

use crate::helpers::{copy_dir, derived_state, store_options};

fn options(path: &Path, after_groups: u64) -> SledOptions {
    store_options(path, true, after_groups)
}

#[derive(Debug, Clone)]
struct Case {
    seed: u64,
    batch: usize,
    crashes: Vec<usize>,
    after_groups: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<u64>(),
        1usize..40,
        prop::collection::vec(0usize..1_000, 1..4),
        1u64..200,
    )
        .prop_map(|(seed, batch, crashes, after_groups)| Case {
            seed,
            batch,
            crashes,
            after_groups,
        })
}

fn run(case: &Case, runtime: &tokio::runtime::Runtime) -> Result<(), TestCaseError> {
    let config = WorkloadConfig::new(case.seed, 400, 20, Instant::from_seconds(1_767_225_600));
    let records = workload::generate(&config);
    let dir = tempfile::tempdir().expect("temp dir");
    let live_path = dir.path().join("live");
    let store = Store::open(&options(&live_path, case.after_groups)).expect("open");
    let batches: Vec<_> = records.chunks(case.batch).collect();
    let mut crashes: Vec<usize> = case.crashes.iter().map(|c| c % batches.len()).collect();
    crashes.sort_unstable();
    for (index, batch) in batches.iter().enumerate() {
        runtime
            .block_on(store.record(batch.to_vec()))
            .expect("recorded");
        for _ in crashes.iter().filter(|&&c| c == index) {
            store.kv().flush().expect("flush");
            let copy_path = dir.path().join(format!("crash-{index}"));
            copy_dir(&live_path, &copy_path);
            let recovered = Store::open(&options(&copy_path, case.after_groups))
                .map_err(|e| TestCaseError::fail(format!("reopen after a crash: {e}")))?;
            let (live, replayed) = (derived_state(&store), derived_state(&recovered));
            prop_assert!(!live.is_empty());
            if live != replayed {
                let first = live
                    .iter()
                    .zip(&replayed)
                    .find(|(a, b)| a != b)
                    .map(|(a, _)| keys::describe_key(&a.0));
                return Err(TestCaseError::fail(format!(
                    "after batch {index}: {} live entries, {} replayed; first difference at {first:?}",
                    live.len(),
                    replayed.len()
                )));
            }
            drop(recovered);
            std::fs::remove_dir_all(&copy_path).expect("remove the copy");
        }
    }
    Ok(())
}

#[test]
fn the_state_restored_after_a_crash_equals_the_state_live_writes_built() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cases = std::env::var("REPLAY_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(8);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case(), |case| run(&case, &runtime))
        .expect("replay equals live");
}
