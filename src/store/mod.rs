//! The store: the record log (raw records, their indexes, a journal) in a
//! storage engine behind [`KvStore`], the derived state (contributions,
//! aggregates, indexes) in memory with its snapshots ([`state`]), one writer
//! thread with group commit, and the reads scorecards are served from.

mod background;
pub mod backup;
pub mod buckets;
mod bulk;
pub mod codec;
pub mod compact;
pub mod groups;
mod journal;
pub mod keys;
pub mod kv;
pub mod listings;
mod packed;
pub mod reads;
pub mod resident;
mod snapshots;
mod state;
pub mod txn;
pub mod verify;
pub mod writes;

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot, watch};

use crate::domain::calendar::Calendar;
use crate::domain::records::{Id, Record};
use crate::domain::scorecard::Targets;
use crate::domain::sla::{SlaPolicy, TeamTerms, TermsRecord};
use crate::error::{Error, Result};
use crate::metrics::Metrics;

pub use backup::{BackupItem, Snapshot};
pub use bulk::BulkLoad;
pub use compact::Compaction;
pub use journal::{entry as journal_entry, JournalEntry};
pub use kv::{refresh_snapshot, KvStore, SledOptions, SledStore};
pub use state::{DerivedState, SnapshotPolicy};
pub use verify::{RebuildReport, VerifyReport};
pub use writes::{Counters, Outcome};

use resident::ResidentKv;
use txn::{Reader, Txn};

/// Writes waiting for the writer beyond this are refused with RESOURCE_EXHAUSTED.
const WRITE_QUEUE_DEPTH: usize = 1024;
/// A commit group holds at most this many records.
const MAX_RECORDS_PER_COMMIT: usize = 4096;

/// What the writer thread is asked to do.
enum Command {
    Records(Vec<Record>),
    SetTargets(Option<Id>, Targets),
    /// A new version of a team's terms, effective a day from now.
    SetTerms(Id, TermsChange),
    /// A version of a team's terms from a backup, at the moment it had.
    RestoreTerms(Id, TeamTerms, i64),
    /// The end of a verify or rebuild whose long part ran off this thread.
    FinishVerify(Box<background::Prepared>),
    FinishRebuild(Box<background::Prepared>),
    Snapshot,
}

impl Command {
    /// Verify, rebuild and snapshot see the whole store and run alone.
    fn is_exclusive(&self) -> bool {
        matches!(
            self,
            Command::FinishVerify(_) | Command::FinishRebuild(_) | Command::Snapshot
        )
    }

    fn record_count(&self) -> usize {
        match self {
            Command::Records(records) => records.len(),
            _ => 1,
        }
    }
}

/// What a new version of a team's terms changes; the rest is kept from the
/// team's latest version.
enum TermsChange {
    /// The business calendar (`None`: no calendar).
    Calendar(Option<Calendar>),
    /// The SLA policy (empty: no targets).
    Sla(SlaPolicy),
}

enum Reply {
    Records(Vec<Result<Outcome>>),
    Done,
    /// A version of a team's terms takes effect at this moment (UTC seconds).
    Effective(i64),
    Verify(VerifyReport),
    Rebuild(RebuildReport),
    Snapshot(Snapshot),
}

struct Job {
    command: Command,
    reply: oneshot::Sender<Result<Reply>>,
}

/// The store handle shared by every service. Cloning is cheap.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// When the derived-state snapshot in `dir` was last written, if there is one
/// (for the metrics endpoint).
pub fn snapshot_written_at(dir: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(snapshots::path_in(dir))
        .and_then(|metadata| metadata.modified())
        .ok()
}

/// A store handle that does not keep the store open (for observers such as the
/// metrics endpoint).
#[derive(Clone)]
pub struct WeakStore(std::sync::Weak<Inner>);

impl std::fmt::Debug for WeakStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakStore").finish_non_exhaustive()
    }
}

impl WeakStore {
    /// The store, while it is open.
    pub fn upgrade(&self) -> Option<Store> {
        self.0.upgrade().map(|inner| Store { inner })
    }
}

struct Inner {
    kv: Arc<dyn KvStore>,
    /// The derived state under `kv`, for background checks.
    state: Arc<DerivedState>,
    /// Background checks run one at a time (they hold the journal).
    checks: tokio::sync::Mutex<()>,
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    metrics: Arc<Metrics>,
    /// The number of commits that changed the store, for live readers.
    changes: watch::Receiver<u64>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue stops the writer once it has committed what it holds.
        self.jobs.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Store {
    /// Opens the sled store at `options.path` and starts the writer.
    pub fn open(options: &SledOptions) -> Result<Store> {
        let kv = Arc::new(SledStore::open(options)?);
        Store::with_kv(kv, options.path.clone(), options.snapshots)
    }

    /// Starts the writer over a storage engine holding the record log, with
    /// the derived state in memory, restored from its snapshot in `dir` and
    /// the journal (see [`state`]), and the open-ticket index held decoded by
    /// scope too (see [`resident`]); backups spool in `dir`.
    pub fn with_kv(
        engine: Arc<dyn KvStore>,
        dir: PathBuf,
        snapshots: SnapshotPolicy,
    ) -> Result<Store> {
        refuse_an_emptied_store(engine.as_ref(), &dir)?;
        check_format(engine.as_ref(), &dir)?;
        let state = Arc::new(DerivedState::open(engine, &dir, snapshots)?);
        let kv: Arc<dyn KvStore> = Arc::new(ResidentKv::load(state.clone())?);
        let (jobs, receiver) = mpsc::channel(WRITE_QUEUE_DEPTH);
        let writer_kv = Arc::clone(&kv);
        let writer_state = Arc::clone(&state);
        // Backups spool in the data directory.
        let writer_spool_dir = dir;
        let metrics = Arc::new(Metrics::new());
        let writer_metrics = Arc::clone(&metrics);
        let (changed, changes) = watch::channel(0u64);
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                run_writer(
                    writer_kv.as_ref(),
                    &writer_state,
                    &writer_spool_dir,
                    &writer_metrics,
                    &changed,
                    receiver,
                )
            })
            .expect("spawning the writer thread");
        Ok(Store {
            inner: Arc::new(Inner {
                kv,
                state,
                checks: tokio::sync::Mutex::new(()),
                jobs: Some(jobs),
                writer: Some(writer),
                metrics,
                changes,
            }),
        })
    }

    /// Changes whenever a commit has changed the store (its value counts them):
    /// a reader waiting on it sees every acknowledged write. Never blocks the writer.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.clone()
    }

    /// A handle that does not keep the store open.
    pub fn downgrade(&self) -> WeakStore {
        WeakStore(Arc::downgrade(&self.inner))
    }

    /// The service's metrics; the writer records commits and outcomes in them.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.inner.metrics)
    }

    /// Writes waiting for the writer, and how many may wait (for the metrics
    /// endpoint).
    pub fn writer_queue(&self) -> (usize, usize) {
        self.inner
            .jobs
            .as_ref()
            .map_or((0, WRITE_QUEUE_DEPTH), |jobs| {
                (jobs.max_capacity() - jobs.capacity(), jobs.max_capacity())
            })
    }

    /// The key-value store, for reads.
    /// The derived state's chunks, and how many of them are in memory (the
    /// rest are blocks of the snapshot file).
    pub fn derived_chunks(&self) -> (usize, usize) {
        self.inner.state.current().map.chunk_counts()
    }

    pub fn kv(&self) -> &dyn KvStore {
        self.inner.kv.as_ref()
    }

    async fn submit(&self, command: Command) -> Result<Reply> {
        let (reply, answer) = oneshot::channel();
        let jobs = self
            .inner
            .jobs
            .as_ref()
            .ok_or_else(|| Error::Unavailable("the store is closing".into()))?;
        jobs.try_send(Job { command, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                Error::ResourceExhausted("too many writes are waiting; retry with backoff".into())
            }
            mpsc::error::TrySendError::Closed(_) => {
                Error::Unavailable("the store writer has stopped".into())
            }
        })?;
        answer
            .await
            .map_err(|_| Error::Unavailable("the store writer has stopped".into()))?
    }

    /// Records a batch of validated records; one outcome per record, in order.
    /// Returns once every change is durable.
    pub async fn record(&self, records: Vec<Record>) -> Result<Vec<Result<Outcome>>> {
        match self.submit(Command::Records(records)).await? {
            Reply::Records(outcomes) => Ok(outcomes),
            _ => Err(Error::Internal("writer answered the wrong command".into())),
        }
    }

    /// Replaces the targets of a team (`None`: the organisation default).
    pub async fn set_targets(&self, team: Option<Id>, targets: Targets) -> Result<()> {
        self.submit(Command::SetTargets(team, targets))
            .await
            .map(|_| ())
    }

    /// Sets a team's business calendar (`None` removes it) for tickets created
    /// a day from now on; returns the moment it takes effect (UTC seconds).
    pub async fn set_calendar(&self, team: Id, calendar: Option<Calendar>) -> Result<i64> {
        self.set_terms(team, TermsChange::Calendar(calendar)).await
    }

    /// Sets a team's SLA policy (empty removes it) for tickets created a day
    /// from now on; returns the moment it takes effect (UTC seconds).
    pub async fn set_sla_policy(&self, team: Id, policy: SlaPolicy) -> Result<i64> {
        self.set_terms(team, TermsChange::Sla(policy)).await
    }

    async fn set_terms(&self, team: Id, change: TermsChange) -> Result<i64> {
        match self.submit(Command::SetTerms(team, change)).await? {
            Reply::Effective(seconds) => Ok(seconds),
            _ => Err(Error::Internal("writer answered the wrong command".into())),
        }
    }

    /// Restores a version of a team's terms from a backup, effective from the
    /// moment it had. Only into a store without interactions: no stored ticket
    /// may change.
    pub async fn restore_terms(
        &self,
        team: Id,
        effective_from: i64,
        terms: TeamTerms,
    ) -> Result<()> {
        self.submit(Command::RestoreTerms(team, terms, effective_from))
            .await
            .map(|_| ())
    }

    /// Recomputes every derived value from the raw records and compares,
    /// while writes go on (see [`background`]).
    pub async fn verify(&self) -> Result<VerifyReport> {
        match self.background_check(false).await? {
            Reply::Verify(report) => Ok(report),
            _ => Err(Error::Internal("writer answered the wrong command".into())),
        }
    }

    /// Recomputes every derived value from the raw records and commits what
    /// differs, while writes go on (see [`background`]).
    pub async fn rebuild(&self) -> Result<RebuildReport> {
        match self.background_check(true).await? {
            Reply::Rebuild(report) => Ok(report),
            _ => Err(Error::Internal("writer answered the wrong command".into())),
        }
    }

    async fn background_check(&self, rebuild: bool) -> Result<Reply> {
        let _one_at_a_time = self.inner.checks.lock().await;
        let kv = Arc::clone(&self.inner.kv);
        let state = Arc::clone(&self.inner.state);
        let prepared =
            tokio::task::spawn_blocking(move || background::prepare(kv.as_ref(), &state, rebuild))
                .await
                .map_err(|e| Error::Internal(format!("background check: {e}")))??;
        let prepared = Box::new(prepared);
        let command = if rebuild {
            Command::FinishRebuild(prepared)
        } else {
            Command::FinishVerify(prepared)
        };
        let reply = self.submit(command).await;
        if reply.is_err() {
            // The writer never took it: nothing else releases the journal.
            self.inner.state.release_journal()?;
        }
        reply
    }

    /// A consistent snapshot of every raw record and every team's targets:
    /// exactly the writes acknowledged before it was taken. Writes wait while
    /// it is copied to a spool file; reading it out does not hold them up.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        match self.submit(Command::Snapshot).await? {
            Reply::Snapshot(snapshot) => Ok(snapshot),
            _ => Err(Error::Internal("writer answered the wrong command".into())),
        }
    }
}

/// The layout of stored values. 2: dense duration histograms (aggregates of
/// version 1 stores do not decode as version 2). 3: drill-down ticket rows,
/// tag scopes and business-time histograms (a version 2 store lacks them).
/// 4: SLA counts in aggregates, SLA moments in the open-ticket index and ticket
/// rows, team terms (calendar and SLA policy) in place of bare calendars.
/// 5: a scope's hour aggregate and its quarters' in one value (`buckets`).
/// 6: aggregates stored as a presence mask and their fields that are not zero,
/// histogram buckets with each run of zeros as its length. 7: those runs as
/// one byte string of varints, not a sequence of numbers. 8: drill-down
/// listings packed per scope and day (`listings`), not a key per ticket.
/// 9: one open-ticket index entry per ticket naming its scopes, not one per
/// scope (`resident`); one journal entry per durable commit naming its
/// groups, not one per group (`deferred`). 10: derived state (`G`, `A`, `X`)
/// no longer in the store but in memory and in a snapshot file (`state`);
/// journal entries may say "every group". A version 9 store is migrated on
/// open: its derived keys and journal are deleted and the state recomputed.
/// 11: no group contributions kept; journal entries hold the earlier values
/// of the records a commit changed (a version 10 journal, which names groups
/// only, is still read: it makes a replay recompute every group). 12: duration histograms with buckets on round values and
/// each bucket's offset sum (`domain::sketch`); the derived state of a
/// version 10 or 11 store cannot be read, so its snapshot is removed on open
/// and the state recomputed from the records. 13: no all-time aggregates; a
/// registry of known scopes counts each scope's facts instead (`A t scope`);
/// a version 10 to 12 snapshot is removed and recomputed the same way.
/// 14: no hour aggregates; an hour's parts hold its quarters alone, which a
/// read of the hour sums (`buckets`); a version 10 to 13 snapshot is
/// removed and recomputed.
const FORMAT_VERSION: u32 = 14;

/// Keys deleted per batch when a version 9 store is migrated.
const MIGRATION_BATCH_KEYS: usize = 10_000;

/// Deletes what a version 9 store kept of its derived state (and its
/// journal, which named groups of that state), then marks it current.
/// A crash part-way leaves it version 9, to be migrated again.
fn migrate_from_version_9(kv: &dyn KvStore) -> Result<()> {
    let started = std::time::Instant::now();
    let mut deleted = 0u64;
    for family in [
        keys::GROUP,
        keys::AGGREGATE,
        keys::DERIVED_INDEX,
        keys::JOURNAL,
    ] {
        loop {
            let batch: Vec<kv::Change> = kv
                .scan_prefix(&[family])
                .take(MIGRATION_BATCH_KEYS)
                .map(|entry| Ok((entry?.0, None)))
                .collect::<Result<_>>()?;
            if batch.is_empty() {
                break;
            }
            deleted += batch.len() as u64;
            kv.commit(batch)?;
        }
    }
    mark_current(kv)?;
    tracing::warn!(
        deleted_keys = deleted,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "store migrated from format 9: derived state is now kept in memory and recomputed"
    );
    Ok(())
}

/// A store that sled opens as empty while a snapshot of its derived state
/// lies beside it has lost its files (damaged beyond sled's reading, or
/// replaced): serving the snapshot would show numbers no record backs.
fn refuse_an_emptied_store(engine: &dyn KvStore, dir: &std::path::Path) -> Result<()> {
    let empty = engine.scan_prefix(&[]).next().transpose()?.is_none();
    if empty && snapshots::path_in(dir).exists() {
        return Err(Error::DataLoss(format!(
            "the store in {} holds no records, yet its derived-state snapshot is there: \
             sled's files are damaged or were replaced. Keep the directory for a post-mortem \
             and restore the last backup into an empty one (`support-metrics import`; \
             docs/operations.md, \"When the store is damaged\")",
            dir.display()
        )));
    }
    Ok(())
}

/// Opens only the record log of a stopped store (no derived state is
/// restored), for reading its raw records: a backup or a salvage. Format 9
/// stores hold the same raw records and are read as they are.
pub fn open_record_log(options: &SledOptions) -> Result<SledStore> {
    let engine = SledStore::open(options)?;
    refuse_an_emptied_store(&engine, &options.path)?;
    let key = keys::format();
    let version: Option<u32> = engine
        .get(&key)?
        .map(|bytes| codec::decode(&key, &bytes))
        .transpose()?;
    match version {
        Some(9..=FORMAT_VERSION) => Ok(engine),
        Some(other) => Err(Error::Unavailable(format!(
            "the store has format {other}, this build reads formats 9 to {FORMAT_VERSION}: \
             export it with the build that wrote it"
        ))),
        None => Err(Error::Unavailable(
            "the store was written by an earlier build (format 1): export it with that build"
                .into(),
        )),
    }
}

/// Marks a migrated store with this build's format, durably.
fn mark_current(kv: &dyn KvStore) -> Result<()> {
    kv.commit(vec![(
        keys::format(),
        Some(codec::encode(&FORMAT_VERSION)?),
    )])?;
    kv.flush()
}

/// Removes the snapshot of a version 10 to 12 store, whose derived state
/// this build does not read (histograms before 12, all-time aggregates
/// before 13), then marks it current: the derived
/// state is recomputed from the records as it opens. The removal is durable
/// before the mark, so a crash between them leaves a store to migrate again.
fn migrate_derived_state_from(kv: &dyn KvStore, dir: &std::path::Path, version: u32) -> Result<()> {
    snapshots::remove(&snapshots::path_in(dir))?;
    mark_current(kv)?;
    tracing::warn!(
        from = version,
        "store migrated to format {FORMAT_VERSION}: its derived-state snapshot was removed \
         and the state is recomputed from the records (once; minutes for a million)"
    );
    Ok(())
}

/// Marks a new store with the format version, migrates an earlier one it
/// can, and refuses any other.
fn check_format(kv: &dyn KvStore, dir: &std::path::Path) -> Result<()> {
    let key = keys::format();
    match kv.get(&key)? {
        Some(bytes) => {
            let version: u32 = codec::decode(&key, &bytes)?;
            if version == 9 {
                return migrate_from_version_9(kv);
            }
            if (10..FORMAT_VERSION).contains(&version) {
                return migrate_derived_state_from(kv, dir, version);
            }
            if version != FORMAT_VERSION {
                return Err(Error::Unavailable(format!(
                    "the store has format {version}, this build reads format {FORMAT_VERSION}: \
                     export it with the build that wrote it and import the file into an \
                     empty data directory"
                )));
            }
            Ok(())
        }
        None if kv.scan_prefix(&[]).next().is_some() => Err(Error::Unavailable(format!(
            "the store was written by an earlier build (format 1; this build reads format \
             {FORMAT_VERSION}): export it with that build and import the file into an empty \
             data directory"
        ))),
        None => kv.commit(vec![(key, Some(codec::encode(&FORMAT_VERSION)?))]),
    }
}

fn run_writer(
    kv: &dyn KvStore,
    state: &DerivedState,
    spool_dir: &std::path::Path,
    metrics: &Metrics,
    changed: &watch::Sender<u64>,
    mut receiver: mpsc::Receiver<Job>,
) {
    let bump = || changed.send_modify(|commits| *commits += 1);
    let mut held_back: Option<Job> = None;
    let idle = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(idle) => Some(idle),
        Err(error) => {
            tracing::error!(%error, "no timer for the writer: snapshots wait for writes");
            None
        }
    };
    loop {
        let Some(first) = held_back
            .take()
            .or_else(|| next_job(idle.as_ref(), state, &mut receiver))
        else {
            break;
        };
        if first.command.is_exclusive() {
            let result = match first.command {
                Command::FinishVerify(prepared) => {
                    background::finish_verify(kv, state, *prepared).map(Reply::Verify)
                }
                Command::FinishRebuild(prepared) => {
                    background::finish_rebuild(kv, state, *prepared).map(Reply::Rebuild)
                }
                _ => Snapshot::take(kv, spool_dir).map(Reply::Snapshot),
            };
            if matches!(result, Ok(Reply::Rebuild(_))) {
                bump();
            }
            let _ = first.reply.send(result);
            continue;
        }
        let mut group = vec![first];
        let mut records = group[0].command.record_count();
        while records < MAX_RECORDS_PER_COMMIT {
            match receiver.try_recv() {
                Ok(job) if job.command.is_exclusive() => {
                    held_back = Some(job);
                    break;
                }
                Ok(job) => {
                    records += job.command.record_count();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        if commit_group(kv, metrics, group) {
            bump();
        }
    }
}

/// How often an idle writer looks whether a snapshot is due.
const IDLE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The next job (`None` once the queue is closed and empty). While none
/// comes, the writer saves the changes of its last writes as a snapshot once
/// one is due ([`DerivedState::snapshot_if_due`]), so that an idle server
/// does not leave them to its journal.
fn next_job(
    idle: Option<&tokio::runtime::Runtime>,
    state: &DerivedState,
    receiver: &mut mpsc::Receiver<Job>,
) -> Option<Job> {
    let Some(idle) = idle else {
        return receiver.blocking_recv();
    };
    loop {
        let waited =
            idle.block_on(async { tokio::time::timeout(IDLE_CHECK, receiver.recv()).await });
        match waited {
            Ok(job) => return job,
            Err(_) => state.snapshot_if_due(),
        }
    }
}

/// Applies a group of jobs in one transaction and one durable commit (group
/// commit). If a job fails mid-way, the group is retried one job at a time so
/// that only the failing job sees the error. True if anything was committed.
fn commit_group(kv: &dyn KvStore, metrics: &Metrics, group: Vec<Job>) -> bool {
    let started = std::time::Instant::now();
    let committed = std::cell::Cell::new(false);
    let attempt = |jobs: &[&Job]| -> Result<Vec<Reply>> {
        let mut txn = Txn::new(kv);
        let mut counters: Counters = txn.get_decoded(&keys::stats())?.unwrap_or_default();
        let before = counters.clone();
        let replies = jobs
            .iter()
            .map(|job| apply_command(&mut txn, &mut counters, &job.command))
            .collect::<Result<Vec<_>>>()?;
        writes::recompute_touched(&mut txn)?;
        if counters != before {
            txn.put(keys::stats(), &counters)?;
        }
        if !txn.is_empty() {
            let (changes, deltas) = txn.into_parts()?;
            let committing = std::time::Instant::now();
            kv.commit_with_aggregates(changes, deltas)?;
            committed.set(true);
            let records = jobs.iter().map(|job| job.command.record_count()).sum();
            metrics.commit(records, committing.elapsed().as_secs_f64());
        }
        for (job, reply) in jobs.iter().zip(&replies) {
            count_outcomes(metrics, &job.command, reply);
        }
        Ok(replies)
    };
    let all: Vec<&Job> = group.iter().collect();
    match attempt(&all) {
        Ok(replies) => {
            tracing::debug!(
                jobs = group.len(),
                elapsed_us = started.elapsed().as_micros() as u64,
                "group committed"
            );
            for (job, reply) in group.into_iter().zip(replies) {
                let _ = job.reply.send(Ok(reply));
            }
        }
        Err(error) if group.len() == 1 => {
            tracing::error!(%error, "write failed");
            if let Some(job) = group.into_iter().next() {
                let _ = job.reply.send(Err(error));
            }
        }
        Err(_) => {
            for job in group {
                let result = attempt(&[&job]).map(|mut replies| replies.remove(0));
                if let Err(error) = &result {
                    tracing::error!(%error, "write failed");
                }
                let _ = job.reply.send(result);
            }
        }
    }
    committed.get()
}

/// Counts each record of a committed job by kind and outcome.
fn count_outcomes(metrics: &Metrics, command: &Command, reply: &Reply) {
    let (Command::Records(records), Reply::Records(outcomes)) = (command, reply) else {
        return;
    };
    for (record, outcome) in records.iter().zip(outcomes) {
        let kind = match record {
            Record::Interaction(_) => "interaction",
            Record::SurveyResponse(_) => "survey_response",
            Record::QualityReview(_) => "quality_review",
            Record::CustomerEvent(_) => "customer_event",
        };
        let outcome = match outcome {
            Ok(Outcome::Created) => "created",
            Ok(Outcome::Updated) => "updated",
            Ok(Outcome::Duplicate) => "duplicate",
            Ok(Outcome::Stale) => "stale",
            Err(_) => "already_exists",
        };
        metrics.record_written(kind, outcome);
    }
}

fn apply_command(txn: &mut Txn<'_>, counters: &mut Counters, command: &Command) -> Result<Reply> {
    match command {
        Command::Records(records) => {
            let mut outcomes = Vec::with_capacity(records.len());
            for record in records {
                match writes::apply_record(txn, counters, record) {
                    Ok(outcome) => outcomes.push(Ok(outcome)),
                    Err(Error::AlreadyExists(message)) => {
                        outcomes.push(Err(Error::AlreadyExists(message)))
                    }
                    Err(other) => return Err(other),
                }
            }
            Ok(Reply::Records(outcomes))
        }
        Command::SetTargets(team, targets) => {
            writes::apply_targets(txn, team.as_ref(), targets)?;
            Ok(Reply::Done)
        }
        Command::SetTerms(team, change) => {
            // Tickets already written may have been created up to 24 hours
            // ahead; starting after all of them keeps every stored contribution
            // equal to its recomputation (RebuildAggregates applies it at once).
            // After the team's latest version too, so that versions keep the
            // order in which they were set whatever the clock does.
            let latest = groups::terms_version_at(txn, team, i64::MAX)?;
            let tomorrow = crate::domain::time::Instant::now().seconds()
                + crate::domain::time::MAX_FUTURE_SECONDS
                + 1;
            let effective_from = latest.as_ref().map_or(tomorrow, |(latest, _)| {
                tomorrow.max(latest.saturating_add(1))
            });
            let mut terms = latest.map(|(_, terms)| terms).unwrap_or_default();
            match change {
                TermsChange::Calendar(calendar) => terms.calendar = calendar.clone(),
                TermsChange::Sla(policy) => terms.sla = policy.clone(),
            }
            writes::put_terms(txn, team, &terms, effective_from)?;
            Ok(Reply::Effective(effective_from))
        }
        Command::RestoreTerms(team, terms, effective_from) => {
            let key = keys::terms(team, *effective_from);
            if txn.get_decoded::<TermsRecord>(&key)? == Some(terms.record()) {
                // Restoring the same backup again: already there.
                return Ok(Reply::Effective(*effective_from));
            }
            if counters.interactions > 0 {
                return Err(Error::FailedPrecondition(
                    "a version of a team's terms (calendar, SLA policy) can only be restored \
                     into a store without interactions (export lists them first)"
                        .into(),
                ));
            }
            writes::put_terms(txn, team, terms, *effective_from)?;
            Ok(Reply::Effective(*effective_from))
        }
        Command::FinishVerify(_) | Command::FinishRebuild(_) | Command::Snapshot => {
            Err(Error::Internal("exclusive command in a group".into()))
        }
    }
}
