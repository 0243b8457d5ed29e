//! The store's two halves behind one [`KvStore`]: the record log in the
//! storage engine, the derived state in memory.
//!
//! A write is acknowledged once its raw records (families `R`, `I`, `P`, `M`,
//! `T`, `C`) are durable in the engine. What is derived from them
//! (aggregates `A`, derived indexes `X`) is never written to the engine: it
//! lives in a persistent ordered map whose entries are packed into chunks
//! ([`PackedMap`](super::packed::PackedMap)), saved now and then as a
//! snapshot file ([`snapshots`]). A chunk stays a block of the last
//! snapshot until it is read (then a bounded cache keeps it) or changed
//! (then memory holds it until the next snapshot has written it), so memory
//! holds what changed since that snapshot and what is read often, not the
//! whole state. Group contributions (`G`)
//! are not kept at all: a write retracts what a ticket or customer
//! contributed before it by recomputing that from the records as they were
//! before its commit ([`Retract::AsCommitted`](super::groups::Retract::AsCommitted)).
//!
//! Every durable commit that changes records a replay reads (`R`, `I`, `P`,
//! `C`) or derived state also writes one journal entry `J sequence` in the
//! same engine batch: the groups (tickets, customers) whose contribution it
//! changed, or "every group" (a rebuild), and the value each record key it
//! changed had before it. A snapshot records the first sequence it does not
//! cover; once it is durable, the journal entries before it are deleted. At
//! open, [`DerivedState::recover`] loads the snapshot and, for each group the
//! journal names after it, retracts its contribution computed from the
//! records as the snapshot saw them (today's records with the journal's
//! earliest earlier values put back) and applies the one computed from the
//! records now, exactly as the writer had; without a usable snapshot it
//! recomputes every group. Nothing derived is ever read from a snapshot that
//! fails its checksum.
//!
//! Readers never wait for the writer: each commit publishes a new version of
//! the map (a clone of a persistent map is a pointer copy), and a reader
//! reads the version that was current when it started
//! ([`KvStore::read_consistently`]). Snapshots are written on their own thread
//! from such a version while commits go on.
//!
//! [`snapshots`]: super::snapshots

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

use super::groups;
use super::journal;
use super::keys::{self, Group};
use super::kv::{AggregateDelta, Change, Entry, KvStore};
use super::snapshots::{self, StoreId};

mod recompute;

/// The derived state: every `A` and `X` key with its stored value (and
/// `G`, in a background check's scratch state).
pub type DerivedMap = super::packed::PackedMap;

/// When the derived state is saved as a snapshot while the store is open
/// (it always is at a clean close).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Once this many groups have been journaled since the last snapshot
    /// (what a recovery after a crash would recompute)...
    pub after_groups: u64,
    /// ...or once the last snapshot is this old and something has changed.
    pub interval: Duration,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy {
            after_groups: 100_000,
            interval: Duration::from_secs(300),
        }
    }
}

/// Whether a key belongs to the derived state (kept in memory).
pub fn is_derived(key: &[u8]) -> bool {
    matches!(
        key.first(),
        Some(&keys::GROUP) | Some(&keys::AGGREGATE) | Some(&keys::DERIVED_INDEX)
    )
}

/// Takes every `G` key out of `map`.
pub fn without_contributions(mut map: DerivedMap) -> Result<DerivedMap> {
    let contributions: Vec<Change> = map
        .range(&[keys::GROUP], Some(&[keys::GROUP + 1]))?
        .into_iter()
        .map(|(key, _)| (key, None))
        .collect();
    map.apply(contributions)?;
    Ok(map)
}

/// A published version of the derived state.
#[derive(Debug, Clone, Default)]
pub struct Version {
    pub map: DerivedMap,
    /// The sequence of the first journal entry this version does not include.
    pub next_journal: u64,
}

thread_local! {
    /// The version a consistent read on this thread started with, by store.
    static PINNED: RefCell<Vec<(usize, Arc<Version>)>> = const { RefCell::new(Vec::new()) };
}

/// The writer's side: the map it changes and what it knows of snapshots.
#[derive(Debug)]
struct Writer {
    master: Version,
    /// Groups journaled since the last snapshot started.
    groups_since_snapshot: u64,
    last_snapshot: Instant,
    in_flight: Option<JoinHandle<Result<(u64, snapshots::Written)>>>,
    /// Journal entries before this are covered by a durable snapshot and
    /// not yet deleted.
    covered: Option<u64>,
    /// Journal entries from this on are kept for a background check.
    journal_hold: Option<u64>,
}

impl Writer {
    /// The journal entries before this may be deleted now, if any.
    fn deletable(&mut self) -> Option<u64> {
        let covers = self.covered.take()?;
        Some(match self.journal_hold {
            Some(hold) => covers.min(hold),
            None => covers,
        })
    }
}

/// The engine (raw records, journal) and the derived state in memory.
pub struct DerivedState {
    /// Tells this store's pinned versions from another's on the same thread.
    id: usize,
    engine: Arc<dyn KvStore>,
    /// `None` for a scratch state, which is never saved.
    snapshot_path: Option<PathBuf>,
    /// The store's id, which its snapshots carry (zeros in a scratch state).
    store_id: StoreId,
    /// Whether group contributions are kept (`G`): only in a scratch state,
    /// whose recomputations retract what it stored.
    keeps_contributions: bool,
    policy: SnapshotPolicy,
    published: RwLock<Arc<Version>>,
    writer: Mutex<Writer>,
    /// Set once a durable commit could not be applied (see `usable`).
    failure: std::sync::OnceLock<String>,
}

impl std::fmt::Debug for DerivedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerivedState")
            .field("snapshot_path", &self.snapshot_path)
            .finish_non_exhaustive()
    }
}

fn poisoned<T>(_: T) -> Error {
    Error::Internal("derived state lock poisoned".into())
}

impl DerivedState {
    /// Opens the derived state of the store in `engine`: the snapshot in
    /// `dir` and the journal after it (see [`DerivedState::recover`]).
    pub fn open(
        engine: Arc<dyn KvStore>,
        dir: &Path,
        policy: SnapshotPolicy,
    ) -> Result<DerivedState> {
        let store_id = snapshots::store_id(engine.as_ref())?;
        let state = DerivedState::new(
            engine,
            Some((snapshots::path_in(dir), store_id)),
            policy,
            Version::default(),
        );
        state.recover()?;
        Ok(state)
    }

    /// `snapshots`: where its snapshots go and the store's id, `None` for a
    /// scratch state.
    fn new(
        engine: Arc<dyn KvStore>,
        snapshots: Option<(PathBuf, StoreId)>,
        policy: SnapshotPolicy,
        version: Version,
    ) -> DerivedState {
        static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
        let (snapshot_path, store_id) = match snapshots {
            Some((path, store_id)) => (Some(path), store_id),
            None => (None, StoreId::default()),
        };
        DerivedState {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            engine,
            keeps_contributions: snapshot_path.is_none(),
            snapshot_path,
            store_id,
            policy,
            published: RwLock::new(Arc::new(version.clone())),
            writer: Mutex::new(Writer {
                master: version,
                groups_since_snapshot: 0,
                last_snapshot: Instant::now(),
                in_flight: None,
                covered: None,
                journal_hold: None,
            }),
            failure: std::sync::OnceLock::new(),
        }
    }

    /// The storage engine under the derived state.
    pub fn engine(&self) -> Arc<dyn KvStore> {
        Arc::clone(&self.engine)
    }

    /// A state that only a background check changes, reading raw records
    /// from `engine`: it starts as `map` (with the contributions it retracts
    /// as `G` keys), journals nothing and is never saved.
    pub fn scratch_over(&self, engine: Arc<dyn KvStore>, map: DerivedMap) -> DerivedState {
        DerivedState::new(
            engine,
            None,
            self.policy,
            Version {
                map,
                next_journal: 0,
            },
        )
    }

    /// The map a scratch state ended with.
    pub fn into_map(self) -> Result<DerivedMap> {
        Ok(self.writer.lock().map_err(poisoned)?.master.map.clone())
    }

    /// Keeps the journal entries from `sequence` on, even once a snapshot
    /// covers them, until [`DerivedState::release_journal`]: a background
    /// check reads them to catch up with the writes made while it ran.
    /// Returns `sequence`: the next entry to be written.
    pub fn hold_journal(&self) -> Result<u64> {
        let mut writer = self.writer.lock().map_err(poisoned)?;
        let next = writer.master.next_journal;
        writer.journal_hold = Some(next);
        Ok(next)
    }

    pub fn release_journal(&self) -> Result<()> {
        self.writer.lock().map_err(poisoned)?.journal_hold = None;
        Ok(())
    }

    /// The groups the journal names from `sequence` on; `None` if an entry
    /// says every group may have changed, or cannot be read.
    pub fn journaled_since(&self, sequence: u64) -> Result<Option<BTreeSet<Group>>> {
        journal::groups_since(self.engine.as_ref(), sequence)
    }

    /// The version reads on this thread see: the pinned one inside a
    /// consistent read, else the current one.
    fn view(&self) -> Arc<Version> {
        let id = self.id;
        PINNED
            .with(|pinned| {
                pinned
                    .borrow()
                    .iter()
                    .find(|(owner, _)| *owner == id)
                    .map(|(_, version)| Arc::clone(version))
            })
            .unwrap_or_else(|| self.current())
    }

    /// The latest published version.
    pub fn current(&self) -> Arc<Version> {
        Arc::clone(
            &self
                .published
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    fn publish(&self, version: Version) {
        *self
            .published
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(version);
    }

    fn derived_range(&self, start: &[u8], end: Option<&[u8]>) -> Result<Vec<Entry>> {
        self.usable()?;
        self.view().map.range(start, end)
    }

    /// Fails once a commit that is durable could not be applied to the
    /// derived state (a snapshot block that could not be read): nothing
    /// derived is served from then on, and a restart recovers it from the
    /// snapshot and the journal.
    fn usable(&self) -> Result<()> {
        match self.failure.get() {
            None => Ok(()),
            Some(why) => Err(Error::DataLoss(format!(
                "the derived state stopped at a commit it could not apply ({why}); restart \
                 the service to recover it"
            ))),
        }
    }

    /// Loads the snapshot, then recomputes what the journal says changed
    /// after it; with no usable snapshot, or a journal entry that cannot be
    /// read or names every group, recomputes every group. Journal entries
    /// the snapshot covers are deleted.
    fn recover(&self) -> Result<()> {
        let started = Instant::now();
        let Some(path) = &self.snapshot_path else {
            return Ok(());
        };
        let snapshot = load_snapshot(path, &self.store_id)?;
        let loaded = snapshot.is_some();
        let mut version = snapshot.unwrap_or_default();
        let journal = journal::scan(self.engine.as_ref(), loaded.then_some(version.next_journal))?;
        version.next_journal = version.next_journal.max(journal.next);
        let everything = journal.everything || (!loaded && has_raw_records(self.engine.as_ref())?);
        let (groups, as_at_snapshot) = if everything {
            version.map = DerivedMap::new();
            (
                groups::every_group_in_replay_order(self.engine.as_ref())?,
                None,
            )
        } else {
            let as_at_snapshot = journal::AsAtSnapshot {
                engine: self.engine.as_ref(),
                map: version.map.clone(),
                before: journal.before,
            };
            (journal.groups.into_iter().collect(), Some(as_at_snapshot))
        };
        let recomputed = groups.len();
        self.publish(version.clone());
        self.writer.lock().map_err(poisoned)?.master = version;
        match &as_at_snapshot {
            None => self.replay_from_empty(groups)?,
            Some(view) => self.recompute_groups_since(groups, Some(view))?,
        }
        drop(as_at_snapshot);
        if !journal.covered.is_empty() {
            self.engine.commit(journal.covered)?;
        }
        let mut writer = self.writer.lock().map_err(poisoned)?;
        if recomputed > 0 {
            // Saved at once, so that another crash does not recompute it all again.
            self.start_snapshot(&mut writer);
        }
        let derived_keys = writer.master.map.len();
        drop(writer);
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match (recomputed, loaded) {
            (0, _) => tracing::info!(derived_keys, elapsed_ms, "derived state loaded from its snapshot"),
            (groups, true) => tracing::warn!(
                groups,
                derived_keys,
                elapsed_ms,
                "recovered derived state after an unclean stop: the snapshot and the journal after it"
            ),
            (groups, false) => tracing::warn!(
                groups,
                derived_keys,
                elapsed_ms,
                "recovered derived state: recomputed from the raw records (no usable snapshot)"
            ),
        }
        Ok(())
    }

    /// Collects a finished snapshot: the journal entries it covers can go.
    fn land_snapshot(&self, writer: &mut Writer, wait: bool) {
        let finished = writer
            .in_flight
            .as_ref()
            .is_some_and(|handle| wait || handle.is_finished());
        if !finished {
            return;
        }
        let Some(handle) = writer.in_flight.take() else {
            return;
        };
        match handle.join() {
            Ok(Ok((covers, written))) => self.installed(writer, covers, &written),
            Ok(Err(error)) => {
                tracing::error!(%error, "writing the derived-state snapshot failed; retried later");
            }
            Err(_) => tracing::error!("the snapshot thread panicked; retried later"),
        }
    }

    /// A snapshot is durable: the journal before `covers` may go, and the
    /// chunks it holds unchanged are read from it from now on.
    fn installed(&self, writer: &mut Writer, covers: u64, written: &snapshots::Written) {
        writer.covered = Some(covers);
        writer.master.map.adopt(&written.laid_out, &written.file);
        self.publish(writer.master.clone());
    }

    /// Starts a snapshot of the writer's current version on its own thread.
    fn start_snapshot(&self, writer: &mut Writer) {
        let Some(path) = self.snapshot_path.clone() else {
            return;
        };
        let version = writer.master.clone();
        let engine = Arc::clone(&self.engine);
        let store_id = self.store_id;
        writer.groups_since_snapshot = 0;
        writer.last_snapshot = Instant::now();
        let spawned = std::thread::Builder::new()
            .name("state-snapshot".into())
            .spawn(move || write_snapshot(engine.as_ref(), &path, &store_id, &version));
        match spawned {
            Ok(handle) => writer.in_flight = Some(handle),
            Err(error) => tracing::error!(%error, "could not start the snapshot thread"),
        }
    }

    /// Between writes: collects a finished snapshot (and deletes the journal
    /// it covers), and starts one if something changed since the last and
    /// that is older than the policy's interval.
    pub fn snapshot_if_due(&self) {
        let Ok(mut writer) = self.writer.lock() else {
            return;
        };
        self.land_snapshot(&mut writer, false);
        if let Some(before) = writer.deletable() {
            let deleted = journal::deletes(self.engine.as_ref(), before)
                .and_then(|deletes| self.engine.commit(deletes));
            if let Err(error) = deleted {
                tracing::error!(%error, "deleting the journal a snapshot covers failed");
                writer.covered = Some(before);
            }
        }
        let due = writer.groups_since_snapshot > 0
            && writer.last_snapshot.elapsed() >= self.policy.interval;
        if due && writer.in_flight.is_none() {
            self.start_snapshot(&mut writer);
        }
    }

    /// Writes a snapshot of everything committed so far, on this thread, and
    /// deletes the journal it covers: a clean close, or an operator's request.
    pub fn snapshot_now(&self) -> Result<()> {
        let Some(path) = &self.snapshot_path else {
            return Ok(());
        };
        let mut writer = self.writer.lock().map_err(poisoned)?;
        self.land_snapshot(&mut writer, true);
        let journal_empty = self.engine.scan_prefix(&[keys::JOURNAL]).next().is_none();
        if journal_empty && path.exists() {
            return Ok(());
        }
        let (covers, written) =
            write_snapshot(self.engine.as_ref(), path, &self.store_id, &writer.master)?;
        self.installed(&mut writer, covers, &written);
        writer.groups_since_snapshot = 0;
        writer.last_snapshot = Instant::now();
        if let Some(before) = writer.deletable() {
            let deletes = journal::deletes(self.engine.as_ref(), before)?;
            if !deletes.is_empty() {
                self.engine.commit(deletes)?;
            }
        }
        self.engine.flush()
    }
}

/// The snapshot at `path`, if there is a usable one: one cut short by a
/// crash is removed, a damaged one set aside (never loaded).
fn load_snapshot(path: &Path, store_id: &StoreId) -> Result<Option<Version>> {
    snapshots::remove_unfinished(path)?;
    match snapshots::load(path, store_id) {
        Ok(snapshot) => Ok(snapshot),
        Err(error) => {
            let aside = snapshots::set_aside(path);
            tracing::error!(
                path = %path.display(),
                moved_to = %aside.display(),
                %error,
                "the derived-state snapshot is damaged; it is set aside and the state \
                 is recomputed from the raw records"
            );
            Ok(None)
        }
    }
}

/// Writes `version` as the snapshot, installing it only once every journal
/// entry it covers is durable in the engine (a relaxed commit may not be
/// yet). Returns the first sequence it does not cover, and the snapshot.
fn write_snapshot(
    engine: &dyn KvStore,
    path: &Path,
    store_id: &StoreId,
    version: &Version,
) -> Result<(u64, snapshots::Written)> {
    let started = Instant::now();
    let written = snapshots::write(path, store_id, version, || engine.flush())?;
    let (chunks, in_memory) = version.map.chunk_counts();
    tracing::info!(
        keys = version.map.len(),
        bytes = written.size,
        chunks,
        chunks_written_from_memory = in_memory,
        covers = version.next_journal,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "derived-state snapshot written"
    );
    Ok((version.next_journal, written))
}

/// What turns `served` into `fresh`: puts of what is new or different,
/// deletions of what is gone.
pub fn difference(served: &DerivedMap, fresh: &DerivedMap) -> Result<Vec<Change>> {
    use super::packed::Difference;
    let mut changes = Vec::new();
    served.diff(fresh, &mut |item| {
        changes.push(match item {
            Difference::Added(key, value)
            | Difference::Changed {
                key, new: value, ..
            } => (key.to_vec(), Some(value.to_vec())),
            Difference::Removed(key, _) => (key.to_vec(), None),
        });
        Ok(())
    })?;
    Ok(changes)
}

/// Whether the engine holds any raw record.
pub(super) fn has_raw_records(engine: &dyn KvStore) -> Result<bool> {
    Ok(engine
        .scan_prefix(&[keys::RAW])
        .next()
        .transpose()?
        .is_some())
}

impl KvStore for DerivedState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if is_derived(key) {
            self.usable()?;
            return self.view().map.get(key);
        }
        self.engine.get(key)
    }

    fn scan_prefix<'a>(
        &'a self,
        prefix: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a> {
        match prefix.first() {
            Some(_) if is_derived(prefix) => {
                let end = keys::prefix_end(prefix);
                match self.derived_range(prefix, end.as_deref()) {
                    Ok(entries) => Box::new(entries.into_iter().map(Ok)),
                    Err(error) => Box::new(std::iter::once(Err(error))),
                }
            }
            Some(_) => self.engine.scan_prefix(prefix),
            None => self.range(&[], &[u8::MAX; 2]),
        }
    }

    fn range<'a>(
        &'a self,
        start: &[u8],
        end: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a> {
        let one_family = !start.is_empty() && start.first() == end.first();
        if one_family && is_derived(start) {
            return match self.derived_range(start, Some(end)) {
                Ok(entries) => Box::new(entries.into_iter().map(Ok)),
                Err(error) => Box::new(std::iter::once(Err(error))),
            };
        }
        if one_family {
            return self.engine.range(start, end);
        }
        // Across families (rare: a whole-store scan): both sides, merged.
        let derived = self.derived_range(start, Some(end));
        let engine: Result<Vec<Entry>> = self.engine.range(start, end).collect();
        match engine.and_then(|engine| Ok((engine, derived?))) {
            Ok((engine, derived)) => {
                let mut all: Vec<Entry> = engine.into_iter().chain(derived).collect();
                all.sort_by(|a, b| a.0.cmp(&b.0));
                Box::new(all.into_iter().map(Ok))
            }
            Err(error) => Box::new(std::iter::once(Err(error))),
        }
    }

    fn read_consistently(&self, read: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        let id = self.id;
        let pinned_already =
            PINNED.with(|pinned| pinned.borrow().iter().any(|(owner, _)| *owner == id));
        if pinned_already {
            return read();
        }
        let version = self.current();
        PINNED.with(|pinned| pinned.borrow_mut().push((id, version)));
        let result = read();
        PINNED.with(|pinned| pinned.borrow_mut().retain(|(owner, _)| *owner != id));
        result
    }

    fn commit(&self, changes: Vec<Change>) -> Result<()> {
        self.commit_with_aggregates(changes, Vec::new())
    }

    /// Raw changes and the journal entry durably in the engine, then the
    /// derived changes into memory, published as one new version. Aggregate
    /// additions are checked before anything is committed, so a change that
    /// would make a bucket negative fails the commit whole.
    fn commit_with_aggregates(
        &self,
        changes: Vec<Change>,
        deltas: Vec<AggregateDelta>,
    ) -> Result<()> {
        let mut writer = self.writer.lock().map_err(poisoned)?;
        self.land_snapshot(&mut writer, false);
        let (derived, mut durable): (Vec<Change>, Vec<Change>) =
            changes.into_iter().partition(|(key, _)| is_derived(key));
        let group_keys: Vec<Vec<u8>> = derived
            .iter()
            .filter(|(key, _)| key.first() == Some(&keys::GROUP))
            .map(|(key, _)| key.clone())
            .collect();
        self.usable()?;
        let stored = self.stored_aggregates(&writer.master, &derived, deltas)?;
        let derived = self.kept(derived);
        let touched = derived.iter().chain(&stored).map(|(key, _)| key.as_slice());
        writer.master.map.read_ahead(touched)?;
        let before = if journal::changes_every_group(&group_keys) {
            Vec::new()
        } else {
            journal::earlier_values(self.engine.as_ref(), &durable)?
        };
        let changes_replayed = !derived.is_empty() || !stored.is_empty() || !before.is_empty();
        let journaled = if changes_replayed || !group_keys.is_empty() {
            let sequence = writer.master.next_journal;
            let groups = group_keys.len().max(1) as u64;
            durable.push(journal::entry(sequence, group_keys, before)?);
            Some((sequence, groups))
        } else {
            None
        };
        if let Some(before) = writer.deletable() {
            durable.extend(journal::deletes(self.engine.as_ref(), before)?);
        }
        if !durable.is_empty() {
            self.engine.commit(durable)?;
        }
        let Some((sequence, groups)) = journaled else {
            return Ok(());
        };
        if let Err(error) = writer.master.map.apply(derived.into_iter().chain(stored)) {
            tracing::error!(%error, "a durable commit could not be applied to the derived state");
            let _ = self.failure.set(error.to_string());
            return Err(error);
        }
        writer.master.next_journal = sequence + 1;
        writer.groups_since_snapshot += groups;
        self.publish(writer.master.clone());
        let due = writer.groups_since_snapshot >= self.policy.after_groups
            || writer.last_snapshot.elapsed() >= self.policy.interval;
        if due && writer.in_flight.is_none() {
            self.start_snapshot(&mut writer);
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.engine.flush()
    }

    fn size_on_disk(&self) -> Result<u64> {
        let snapshot = self
            .snapshot_path
            .as_ref()
            .and_then(|path| std::fs::metadata(path).ok())
            .map_or(0, |m| m.len());
        Ok(self.engine.size_on_disk()? + snapshot)
    }

    fn keys_written(&self) -> u64 {
        self.engine.keys_written()
    }
}

impl Drop for DerivedState {
    /// A clean close writes a snapshot of everything, so the next open
    /// recomputes nothing.
    fn drop(&mut self) {
        if let Err(error) = self.snapshot_now() {
            tracing::error!(%error, "writing the derived-state snapshot on close failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::kv::{SledOptions, SledStore};

    fn open(dir: &Path) -> DerivedState {
        let engine: Arc<dyn KvStore> =
            Arc::new(SledStore::open(&SledOptions::for_tests(&dir.join("sled"))).unwrap());
        DerivedState::open(engine, dir, SnapshotPolicy::default()).unwrap()
    }

    fn derived_key(i: u32) -> Vec<u8> {
        [&[keys::DERIVED_INDEX, b'r'][..], &i.to_be_bytes()].concat()
    }

    /// A commit whose derived changes fall in a snapshot block that no longer
    /// reads is refused before its raw changes are durable: the state never
    /// misses a write the engine holds.
    #[test]
    fn a_commit_needing_a_damaged_block_is_refused_before_anything_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let state = open(dir.path());
        let rows: Vec<Change> = (0..3_000)
            .map(|i| (derived_key(i), Some(vec![7; 40])))
            .collect();
        state.commit(rows).unwrap();
        drop(state);
        // Reopened: every chunk is a block of the snapshot, none read yet.
        let state = open(dir.path());
        let path = snapshots::path_in(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        let index_at = snapshots::index_offset(&bytes);
        for byte in &mut bytes[8..index_at] {
            *byte ^= 0x5a;
        }
        std::io::Write::write_all(
            &mut std::fs::OpenOptions::new().write(true).open(&path).unwrap(),
            &bytes,
        )
        .unwrap();
        let raw = b"Rrecord".to_vec();
        let refused = state.commit(vec![
            (raw.clone(), Some(b"value".to_vec())),
            (derived_key(1_500), Some(vec![8; 40])),
        ]);
        assert!(matches!(refused, Err(Error::DataLoss(_))), "{refused:?}");
        assert_eq!(state.engine().get(&raw).unwrap(), None, "nothing durable");
        // The state was not stopped: a commit that needs no block goes on.
        state
            .commit(vec![(raw.clone(), Some(b"value".to_vec()))])
            .unwrap();
        assert!(state.engine().get(&raw).unwrap().is_some());
    }
}
