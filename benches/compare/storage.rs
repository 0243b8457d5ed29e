//! The storage ceiling: sled alone, through the service's own `SledStore`
//! (durable as the service uses it: flush and fdatasync per commit), looking
//! each record up by its raw key (the least an idempotent write by id does,
//! SPEC §4) and storing it there, nothing else, in group commits of the
//! size the service formed at the same concurrency, one commit in flight. It is
//! the most a store keeping each record by id in sled does on this core in
//! that shape; with the transport ceiling (Echo) its CPU per record bounds a
//! durable ingest RPC here.
//!
//! It runs in a child process (this same binary, re-executed) so that it can be
//! pinned to the server core like every other system.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use support_metrics::domain::records::Record;
use support_metrics::store::codec::encode;
use support_metrics::store::keys::{self, RecordKind};
use support_metrics::store::kv::Change;
use support_metrics::store::{KvStore, SledOptions, SledStore};

use crate::load::Measured;

/// The first argument that makes the harness the ceiling's child process.
pub const CHILD_FLAG: &str = "--storage-ceiling-child";

/// What the child is asked to write.
#[derive(Debug)]
pub struct Job {
    pub dir: PathBuf,
    /// The workload seed, total and slice of records to write (the child
    /// regenerates them: deterministic from the seed).
    pub seed: u64,
    pub total: usize,
    pub skip: usize,
    pub count: usize,
    pub group: usize,
    pub limit: Duration,
}

/// The ceiling's result: throughput and latency, and the CPU each record cost
/// (the writes alone; fsync waits are not CPU).
#[derive(Debug, Serialize, Deserialize)]
pub struct Ceiling {
    pub measured: Measured,
    pub cpu_us_per_record: f64,
}

/// Runs the job in a child process pinned to `cpu`.
pub fn run(job: &Job, cpu: Option<usize>) -> anyhow::Result<Ceiling> {
    let output = crate::service::pinned(cpu, &std::env::current_exe()?)
        .arg(CHILD_FLAG)
        .arg(&job.dir)
        .args(
            [
                job.seed,
                job.total as u64,
                job.skip as u64,
                job.count as u64,
                job.group as u64,
                job.limit.as_secs(),
            ]
            .map(|n| n.to_string()),
        )
        .stderr(Stdio::inherit())
        .output()
        .context("starting the storage ceiling's child")?;
    if !output.status.success() {
        bail!("the storage ceiling's child exited with {}", output.status);
    }
    serde_json::from_slice(&output.stdout).context("reading the storage ceiling's result")
}

/// The child's side: `args` after [`CHILD_FLAG`]. Prints its result as JSON.
pub fn child(args: &[OsString]) -> anyhow::Result<()> {
    let [dir, numbers @ ..] = args else {
        bail!("usage: {CHILD_FLAG} DIR SEED TOTAL SKIP COUNT GROUP LIMIT_SECONDS");
    };
    let numbers = numbers
        .iter()
        .map(|n| {
            n.to_str()
                .and_then(|n| n.parse::<u64>().ok())
                .with_context(|| format!("not a number: {n:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let [seed, total, skip, count, group, limit] = numbers[..] else {
        bail!("usage: {CHILD_FLAG} DIR SEED TOTAL SKIP COUNT GROUP LIMIT_SECONDS");
    };
    let records: Vec<Record> = crate::ingest_workload(seed, total as usize)
        .into_iter()
        .skip(skip as usize)
        .take(count as usize)
        .collect();
    let cpu_before = crate::load::cpu_seconds(None)?;
    let measured = write_all(
        Path::new(dir),
        &records,
        (group as usize).max(1),
        Duration::from_secs(limit),
    )?;
    let cpu = crate::load::cpu_seconds(None)? - cpu_before;
    if measured.operations == 0 {
        bail!("the storage ceiling wrote no record within its time limit");
    }
    println!(
        "{}",
        serde_json::to_string(&Ceiling {
            cpu_us_per_record: cpu * 1e6 / measured.operations as f64,
            measured,
        })?
    );
    Ok(())
}

/// Each record looked up and stored under its raw key, `group` records per
/// durable commit; latency is that of each group (what each of its records
/// waits for).
fn write_all(
    dir: &Path,
    records: &[Record],
    group: usize,
    limit: Duration,
) -> anyhow::Result<Measured> {
    let store = SledStore::open(&SledOptions {
        path: dir.to_path_buf(),
        cache_capacity_bytes: 64 * 1024 * 1024,
        durable_acks: true,
        snapshots: Default::default(),
    })?;
    let began = Instant::now();
    let mut latencies = Vec::new();
    let mut written = 0;
    for chunk in records.chunks(group) {
        if began.elapsed() > limit {
            break;
        }
        let started = Instant::now();
        let mut batch = Vec::with_capacity(chunk.len());
        for record in chunk {
            let (key, value) = stored(record)?;
            if store.get(&key)?.is_none() {
                batch.push((key, value));
            }
        }
        store.commit(batch)?;
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        latencies.extend(std::iter::repeat_n(elapsed, chunk.len()));
        written += chunk.len();
    }
    let seconds = began.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    Ok(Measured {
        operations: written,
        seconds,
        per_second: written as f64 / seconds,
        p50_ms: crate::load::percentile(&latencies, 0.50),
        p99_ms: crate::load::percentile(&latencies, 0.99),
    })
}

/// The record's raw key and stored value, as the service writes them.
fn stored(record: &Record) -> support_metrics::error::Result<Change> {
    Ok(match record {
        Record::Interaction(r) => (
            keys::raw(RecordKind::Interaction, &r.interaction_id),
            Some(encode(r)?),
        ),
        Record::SurveyResponse(r) => (
            keys::raw(RecordKind::Survey, &r.response_id),
            Some(encode(r)?),
        ),
        Record::QualityReview(r) => (
            keys::raw(RecordKind::Review, &r.review_id),
            Some(encode(r)?),
        ),
        Record::CustomerEvent(r) => (keys::raw(RecordKind::Event, &r.event_id), Some(encode(r)?)),
    })
}
