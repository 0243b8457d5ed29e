//! Write-back of derived state. Raw records, their indexes, counters and targets
//! are committed durably with every write, as before; what is derived from them
//! (group contributions `G`, aggregates `A`, derived indexes `X`) is kept in an
//! in-memory overlay and written to the store at a checkpoint, at most about a
//! second later, in one atomic batch. A busy bucket (the organisation's day,
//! a team's month) is then written once per checkpoint instead of once per
//! write: ingest stops being dominated by the storage engine.
//!
//! Nothing acknowledged can be lost by this: each durable commit also writes a
//! journal entry `J <sequence>` listing the groups whose derived state it
//! changed (one key per commit, not per group). The
//! derived state on disk is always that of the last checkpoint (checkpoints are
//! atomic and delete the journal entries of the commits they cover), so after
//! a crash, [`recover`] recomputes the journaled groups from the raw records,
//! exactly as the writer had, and checkpoints. Readers see the overlay merged
//! over the store, so they never notice when a checkpoint happens.
//!
//! The checkpoints that fall due while commits come run on their own thread,
//! so that commits do not wait while one encodes and writes (a quarter of
//! the server's CPU, once a second: the commits behind it were the ingest's
//! slowest). sled still lets no other batch through while the checkpoint's
//! is applied (a process-wide lock), so commits then wait for that part. The overlay is frozen as it is and a new one started; the frozen
//! one is read between the new overlay and the store until its checkpoint
//! lands, which the writer notices at its next commit. One checkpoint is in
//! flight at a time, deleting the journal entries numbered below the first
//! commit after it; an overlay that fills meanwhile waits for it. One that
//! fails puts what it was writing back into the overlay for the next. A
//! flush, a commit too large for the overlay and the last checkpoint at
//! close write on the writer's thread, after the one in flight.
//!
//! Aggregates wait in the overlay decoded: the writer, which adds to the same
//! buckets over and over, neither decodes nor encodes them between
//! checkpoints; a checkpoint encodes each once. The writer's transaction only
//! sums its changes to each bucket; a commit checks each sum against the
//! bucket (only the counts it changes) and adds it in place, so a busy
//! bucket, whose histograms hold hundreds of counts, is neither copied nor
//! scanned whole at every commit. The price is memory: a decoded
//! aggregate takes ~0.7 KB plus its histograms' dense buckets (up to a few
//! KB) where its encoding takes a few hundred bytes, so the overlay is
//! bounded by what it takes in memory ([`MAX_OVERLAY_BYTES`]), not by its
//! entries. An hour's bucket and its quarters' ([`buckets`]) wait as one
//! decoded value, changed in place.
//!
//! A checkpoint keeps the aggregates it wrote decoded for the writer (not for
//! readers: they equal the store) until the next checkpoint: a busy bucket,
//! changed again in the next interval, is then taken back into the overlay
//! instead of read from the store and decoded again; one the interval did not
//! change is dropped by the next checkpoint that writes anything; a bucket
//! the writer changes while the checkpoint in flight writes it is copied into
//! the new overlay. This at most triples the memory above. A commit too large
//! for the overlay, and a recovery, write the store directly and drop them
//! all.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::iter::Peekable;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::domain::aggregate::Aggregate;
use crate::domain::records::Id;
use crate::error::{Error, Result};

use super::buckets::{self, HourParts, Part, Placement};
use super::codec::{decode, encode};
use super::groups::{id_from_bytes, recompute};
use super::keys::{self, Group};
use super::kv::{AggregateDelta, Change, Entry, KvStore};
use super::txn::Txn;

/// Checkpoint when what the overlay holds takes this many bytes in memory
/// ([`entry_bytes`]; a decoded aggregate takes one to a few KB, most of it
/// its histograms; an hour's parts take their aggregates')...
const MAX_OVERLAY_BYTES: usize = 64 << 20;
/// A commit changing more derived keys than this goes straight to the store.
const MAX_COMMIT_ENTRIES: usize = 50_000;
/// ...or when the last checkpoint is this old (checked at each commit).
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// A consistent read is tried this often while commits come, then run with
/// commits held off.
const OPTIMISTIC_READS: usize = 4;

/// While it lives, a commit is changing derived values readers see: it holds
/// the change gate for writing and makes the count of changes odd; dropped
/// (on an error too), the count is even again and the gate open.
struct ChangeCount<'a> {
    changes: &'a AtomicU64,
    _gate: RwLockWriteGuard<'a, ()>,
}

impl<'a> ChangeCount<'a> {
    fn begin(changes: &'a AtomicU64, gate: &'a RwLock<()>) -> ChangeCount<'a> {
        let gate = gate.write().unwrap_or_else(PoisonError::into_inner);
        changes.fetch_add(1, Ordering::SeqCst);
        ChangeCount {
            changes,
            _gate: gate,
        }
    }
}

impl Drop for ChangeCount<'_> {
    fn drop(&mut self) {
        // Before the gate opens (fields drop after this).
        self.changes.fetch_add(1, Ordering::SeqCst);
    }
}

fn is_derived(key: &[u8]) -> bool {
    matches!(
        key.first(),
        Some(&keys::GROUP) | Some(&keys::AGGREGATE) | Some(&keys::DERIVED_INDEX)
    )
}

/// A journal entry's value: the groups one durable commit changed, by group
/// key.
type JournalEntry = Vec<serde_bytes::ByteBuf>;

/// The journal entry of the durable commit numbered `sequence`, naming the
/// groups (by `G` key) whose derived state it changed.
pub fn journal_entry(sequence: u64, group_keys: Vec<Vec<u8>>) -> Result<Change> {
    let entry: JournalEntry = group_keys
        .into_iter()
        .map(serde_bytes::ByteBuf::from)
        .collect();
    Ok((keys::journal(sequence), Some(encode(&entry)?)))
}

/// The number after that of the last journal entry in `kv` (0 without one).
fn next_journal_sequence(kv: &dyn KvStore) -> Result<u64> {
    let Some(last) = kv.scan_prefix(&[keys::JOURNAL]).last() else {
        return Ok(0);
    };
    let (key, _) = last?;
    keys::journal_sequence(&key)
        .and_then(|sequence| sequence.checked_add(1))
        .ok_or_else(|| Error::DataLoss(format!("bad journal key {}", keys::describe_key(&key))))
}

/// Deletions of the journal entries in `kv` numbered below `before`, or of
/// every entry.
fn journal_deletes(kv: &dyn KvStore, before: Option<u64>) -> Result<Vec<Change>> {
    let entries = match before {
        Some(before) => kv.range(&[keys::JOURNAL], &keys::journal(before)),
        None => kv.scan_prefix(&[keys::JOURNAL]),
    };
    entries.map(|entry| Ok((entry?.0, None))).collect()
}

/// What a checkpoint commits: `overlay` as stored and the deletion of the
/// journal entries it covers (see [`journal_deletes`]), in one atomic batch.
fn write_checkpoint(
    inner: &dyn KvStore,
    overlay: &Overlay,
    journal_before: Option<u64>,
) -> Result<()> {
    let started = Instant::now();
    let mut batch: Vec<Change> = overlay
        .iter()
        .map(|(key, pending)| Ok((key.clone(), pending.stored()?)))
        .collect::<Result<_>>()?;
    batch.extend(journal_deletes(inner, journal_before)?);
    let keys = batch.len();
    inner.commit(batch)?;
    tracing::trace!(keys, elapsed = ?started.elapsed(), "checkpoint");
    Ok(())
}

/// The groups a journal entry names, or `None` if the entry is damaged.
fn journaled_groups(key: &[u8], value: &[u8]) -> Option<Vec<Group>> {
    let entry: JournalEntry = decode(key, value).ok()?;
    entry
        .iter()
        .map(|group_key| keys::group_from_key(group_key))
        .collect()
}

/// A group of an id.
type GroupOf = fn(Id) -> Group;

/// Every ticket and customer the raw indexes name (`I t ticket 0 …`,
/// `I e customer 0 …`): what a recovery recomputes when a damaged journal
/// entry cannot say which groups changed.
fn every_group(kv: &dyn KvStore) -> Result<BTreeSet<Group>> {
    let mut groups = BTreeSet::new();
    for (family, group) in [(b't', Group::Ticket as GroupOf), (b'e', Group::Customer)] {
        for entry in kv.scan_prefix(&[keys::RAW_INDEX, family]) {
            let (key, _) = entry?;
            let id = key[2..].split(|&b| b == 0).next().unwrap_or_default();
            groups.insert(group(id_from_bytes(id)?));
        }
    }
    Ok(groups)
}

/// A change waiting for the checkpoint.
#[derive(Debug, Clone, PartialEq)]
enum Pending {
    Put(Vec<u8>),
    Aggregate(Box<Aggregate>),
    HourParts(Box<HourParts>),
    Delete,
}

impl Pending {
    fn of_value(value: Option<Vec<u8>>) -> Pending {
        value.map_or(Pending::Delete, Pending::Put)
    }

    fn of_aggregate(aggregate: Aggregate) -> Pending {
        if aggregate.is_zero() {
            Pending::Delete
        } else {
            Pending::Aggregate(Box::new(aggregate))
        }
    }

    /// The value as stored: `None` for a delete.
    fn stored(&self) -> Result<Option<Vec<u8>>> {
        match self {
            Pending::Put(bytes) => Ok(Some(bytes.clone())),
            Pending::Aggregate(aggregate) => Ok(Some(encode(aggregate.as_ref())?)),
            Pending::HourParts(parts) => Ok(Some(encode(parts.as_ref())?)),
            Pending::Delete => Ok(None),
        }
    }

    /// Adds a change to the aggregate waiting decoded here; one that adds up
    /// to zero becomes a delete.
    fn add_in_place(&mut self, key: &[u8], change: InPlace) -> Result<()> {
        match (&mut *self, change) {
            (Pending::Aggregate(aggregate), InPlace::Own(delta)) => {
                aggregate.merge(&delta, 1);
                if aggregate.is_zero() {
                    *self = Pending::Delete;
                }
            }
            (Pending::HourParts(parts), InPlace::Part(part, delta)) => {
                parts.add(part, &delta);
                if parts.is_empty() {
                    *self = Pending::Delete;
                }
            }
            _ => {
                return Err(Error::Internal(format!(
                    "{} no longer waits decoded as a commit planned",
                    keys::describe_key(key)
                )))
            }
        }
        Ok(())
    }

    /// An aggregate or an hour's parts, waiting decoded.
    fn is_decoded(&self) -> bool {
        matches!(self, Pending::Aggregate(_) | Pending::HourParts(_))
    }

    /// The bytes it takes in memory, its key not included.
    fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Pending>()
            + match self {
                Pending::Put(bytes) => bytes.capacity(),
                Pending::Aggregate(aggregate) => aggregate.memory_bytes(),
                Pending::HourParts(parts) => parts.memory_bytes(),
                Pending::Delete => 0,
            }
    }
}

/// A change to an aggregate that waits decoded in the overlay, among what
/// the last checkpoint wrote, or among what the checkpoint in flight writes.
#[derive(Debug)]
enum InPlace {
    /// To a bucket under its own key.
    Own(Aggregate),
    /// To a part of an hour's parts.
    Part(Part, Aggregate),
}

/// How a commit changes an aggregate's key in the overlay.
// The large variant is the common one: boxing it would allocate per change.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Addition {
    /// Adds to what waits decoded there (taken back into the overlay from
    /// what the last checkpoint wrote if it is not in the overlay).
    InPlace(InPlace),
    /// Puts the sum, decoded from the store, the overlay's bytes or the
    /// commit's own.
    Replace(Pending),
}

/// The writer's side of the overlay, held while it commits or checkpoints.
#[derive(Debug)]
struct Writing {
    last_checkpoint: Instant,
    /// The overlay's total [`entry_bytes`].
    bytes: usize,
    /// The aggregates and hour parts the last checkpoint wrote, still decoded
    /// and equal to what the store holds; never a key the overlay holds (the
    /// overlay takes back those the writer changes again).
    checkpointed: HashMap<Vec<u8>, Pending>,
    /// The number of the next journal entry; read from the store at the
    /// first commit that writes one.
    next_journal: Option<u64>,
    /// The checkpoint writing [`DeferredKv::frozen`] on its own thread, if
    /// one is; the writer lands it ([`DeferredKv::land`]).
    in_flight: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Writing {
    /// Puts `pending` at `key`, keeping the count of bytes; what the last
    /// checkpoint kept there is now stale.
    fn insert(&mut self, overlay: &mut Overlay, key: Vec<u8>, pending: Pending) {
        self.checkpointed.remove(&key);
        self.bytes += entry_bytes(&key, &pending);
        let key_bytes = key.len();
        if let Some(old) = overlay.insert(key, pending) {
            self.bytes -= key_bytes + old.memory_bytes();
        }
    }
}

type Overlay = BTreeMap<Vec<u8>, Pending>;

/// What an overlay entry takes in memory: its key and its value.
fn entry_bytes(key: &[u8], pending: &Pending) -> usize {
    key.len() + pending.memory_bytes()
}

/// How much the overlay may hold.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Checkpoint once the overlay takes this many bytes in memory.
    overlay_bytes: usize,
    /// A commit changing more derived keys than this goes straight to the
    /// store (a rebuild).
    commit_entries: usize,
}

impl Limits {
    const SERVER: Limits = Limits {
        overlay_bytes: MAX_OVERLAY_BYTES,
        commit_entries: MAX_COMMIT_ENTRIES,
    };
}

/// `overlay`'s entries from `start` while `within(key)` holds, as stored.
fn stored_range<C: FromIterator<Change>>(
    overlay: &Overlay,
    start: &[u8],
    within: &impl Fn(&[u8]) -> bool,
) -> Result<C> {
    overlay
        .range::<[u8], _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded))
        .take_while(|(key, _)| within(key))
        .map(|(key, pending)| Ok((key.clone(), pending.stored()?)))
        .collect()
}

/// A [`KvStore`] that defers derived keys to checkpoints.
pub struct DeferredKv {
    inner: Arc<dyn KvStore>,
    /// What commits changed since the last checkpoint began.
    overlay: RwLock<Overlay>,
    /// What the checkpoint in flight is writing (empty when none is): read
    /// under the overlay and over the store until the writer lands it.
    frozen: RwLock<Arc<Overlay>>,
    /// Serialises commits and checkpoints.
    writing: Mutex<Writing>,
    /// Counts the changes to derived values readers can see: odd while a
    /// commit is making one ([`KvStore::read_consistently`]). A checkpoint
    /// changes no value a reader sees, so it does not count.
    changes: AtomicU64,
    /// Held for writing while a commit makes such a change, and for reading
    /// by a consistent read that had to hold those changes off. It guards
    /// no data: a panic that poisoned it leaves it usable.
    change_gate: RwLock<()>,
    /// Consistent reads that had to hold changes off (for tests and
    /// diagnostics).
    held_off_reads: AtomicU64,
    /// [`Limits::SERVER`], smaller in tests.
    limits: Limits,
}

impl std::fmt::Debug for DeferredKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeferredKv").finish_non_exhaustive()
    }
}

fn poisoned<T>(_: T) -> Error {
    Error::Internal("a store lock was poisoned by a panic".into())
}

impl DeferredKv {
    pub fn new(inner: Arc<dyn KvStore>) -> DeferredKv {
        DeferredKv::with_limits(inner, Limits::SERVER)
    }

    fn with_limits(inner: Arc<dyn KvStore>, limits: Limits) -> DeferredKv {
        DeferredKv {
            limits,
            inner,
            overlay: RwLock::new(BTreeMap::new()),
            frozen: RwLock::new(Arc::new(BTreeMap::new())),
            changes: AtomicU64::new(0),
            change_gate: RwLock::new(()),
            held_off_reads: AtomicU64::new(0),
            writing: Mutex::new(Writing {
                last_checkpoint: Instant::now(),
                bytes: 0,
                checkpointed: HashMap::new(),
                next_journal: None,
                in_flight: None,
            }),
        }
    }

    /// What the checkpoint in flight writes (empty when none is), for the
    /// writer; readers read it under the lock, so that the writer takes it
    /// back whole when the checkpoint lands.
    fn frozen(&self) -> Result<Arc<Overlay>> {
        Ok(Arc::clone(&*self.frozen.read().map_err(poisoned)?))
    }

    /// The entries from `start` while `within(key)` holds of the overlay
    /// over those of the checkpoint in flight, as stored. The overlay is read
    /// first: entries move down, from the overlay to the frozen checkpoint to
    /// the store, so one moving meanwhile is read again below (a failed
    /// checkpoint's entries are copied back up and stay frozen below their
    /// copies until the next checkpoint).
    fn overlay_range(&self, start: &[u8], within: impl Fn(&[u8]) -> bool) -> Result<Vec<Change>> {
        let upper: Vec<Change> =
            stored_range(&*self.overlay.read().map_err(poisoned)?, start, &within)?;
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> =
            stored_range(&**self.frozen.read().map_err(poisoned)?, start, &within)?;
        if merged.is_empty() {
            return Ok(upper);
        }
        merged.extend(upper);
        Ok(merged.into_iter().collect())
    }

    fn merged<'a>(
        &'a self,
        stored: Box<dyn Iterator<Item = Result<Entry>> + Send + 'a>,
        pending: Result<Vec<Change>>,
    ) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a> {
        match pending {
            Ok(pending) if pending.is_empty() => stored,
            Ok(pending) => Box::new(Merge {
                stored: stored.peekable(),
                pending: pending.into_iter().peekable(),
            }),
            Err(error) => Box::new(std::iter::once(Err(error))),
        }
    }

    /// Writes the overlay and deletes the journal, in one atomic commit, on
    /// this thread, after the checkpoint in flight (if one failed, what it
    /// was writing is written now).
    fn checkpoint_locked(&self, writing: &mut Writing) -> Result<()> {
        if let Err(error) = self.land(writing) {
            tracing::error!(%error, "checkpoint failed; written again now");
        }
        writing.last_checkpoint = Instant::now();
        {
            let overlay = self.overlay.read().map_err(poisoned)?;
            if overlay.is_empty() {
                return Ok(());
            }
            write_checkpoint(self.inner.as_ref(), &overlay, None)?;
        }
        // What a failed checkpoint left frozen: the overlay held all of it.
        *self.frozen.write().map_err(poisoned)? = Arc::new(BTreeMap::new());
        // Only the writer changes the overlay, and it is held off by `writing`.
        let overlay = std::mem::take(&mut *self.overlay.write().map_err(poisoned)?);
        writing.bytes = 0;
        writing.checkpointed = overlay
            .into_iter()
            .filter(|(_, pending)| pending.is_decoded())
            .collect();
        Ok(())
    }

    /// Starts a checkpoint on its own thread, so that commits go on while it
    /// writes: the overlay becomes what it writes (still read between the
    /// new overlay and the store), with the journal entries numbered below
    /// the next one. One checkpoint is in flight at a time; while one is,
    /// this does nothing unless the overlay is full, when it waits for it.
    fn start_checkpoint(&self, writing: &mut Writing) -> Result<()> {
        if let Some(in_flight) = &writing.in_flight {
            if !in_flight.is_finished() && writing.bytes <= self.limits.overlay_bytes {
                return Ok(());
            }
            self.land(writing)?;
        }
        writing.last_checkpoint = Instant::now();
        let journal_before = match writing.next_journal {
            Some(sequence) => sequence,
            None => next_journal_sequence(self.inner.as_ref())?,
        };
        writing.next_journal = Some(journal_before);
        let frozen = {
            let mut overlay = self.overlay.write().map_err(poisoned)?;
            if overlay.is_empty() {
                return Ok(());
            }
            let mut frozen = self.frozen.write().map_err(poisoned)?;
            *frozen = Arc::new(std::mem::take(&mut *overlay));
            Arc::clone(&*frozen)
        };
        writing.bytes = 0;
        let inner = Arc::clone(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || write_checkpoint(inner.as_ref(), &frozen, Some(journal_before)));
        match spawned {
            Ok(handle) => {
                writing.in_flight = Some(handle);
                Ok(())
            }
            Err(error) => {
                self.restore_frozen(writing);
                Err(Error::Internal(format!(
                    "cannot start a checkpoint thread: {error}"
                )))
            }
        }
    }

    /// Waits for the checkpoint in flight, if one is. Written, what it wrote
    /// is no longer read above the store, and its aggregates are kept
    /// decoded for the writer as a checkpoint's are; failed, it is copied
    /// back into the overlay ([`DeferredKv::restore_frozen`]), to be written
    /// by a later checkpoint, and the error is returned.
    fn land(&self, writing: &mut Writing) -> Result<()> {
        let Some(in_flight) = writing.in_flight.take() else {
            return Ok(());
        };
        let written = in_flight
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("the checkpoint thread panicked".into())));
        if let Err(error) = written {
            self.restore_frozen(writing);
            return Err(error);
        }
        let frozen = std::mem::take(&mut *self.frozen.write().map_err(poisoned)?);
        // Readers read it under the lock and the thread has ended, so this
        // is the last reference; were it not, nothing would be kept.
        let Ok(frozen) = Arc::try_unwrap(frozen) else {
            writing.checkpointed.clear();
            return Ok(());
        };
        let overlay = self.overlay.read().map_err(poisoned)?;
        writing.checkpointed = frozen
            .into_iter()
            .filter(|(key, pending)| pending.is_decoded() && !overlay.contains_key(key))
            .collect();
        Ok(())
    }

    /// Copies what a failed checkpoint was writing back into the overlay
    /// where the overlay holds nothing newer. The frozen entries stay where
    /// readers find them, below their copies, until the next checkpoint
    /// replaces them: no read misses them meanwhile. Never fails, not even on
    /// a lock a panic poisoned: the entries must not be lost.
    fn restore_frozen(&self, writing: &mut Writing) {
        let mut overlay = self.overlay.write().unwrap_or_else(PoisonError::into_inner);
        let frozen = self.frozen.read().unwrap_or_else(PoisonError::into_inner);
        for (key, pending) in frozen.iter() {
            if !overlay.contains_key(key) {
                // Counted as copied: a copy holds no spare capacity.
                let copy = pending.clone();
                writing.bytes += entry_bytes(key, &copy);
                overlay.insert(key.clone(), copy);
            }
        }
    }

    /// How each of a commit's aggregate changes is to be made, checked
    /// against what it adds to: the commit's own byte changes to the key, or
    /// else the overlay, or else what the last checkpoint wrote, or else what
    /// the checkpoint in flight writes, or else the store (the commit takes
    /// the same first; the last two never share a key).
    fn plan_additions(
        &self,
        derived: &[(Vec<u8>, Pending)],
        deltas: Vec<AggregateDelta>,
        checkpointed: &HashMap<Vec<u8>, Pending>,
    ) -> Result<Vec<(Vec<u8>, Addition)>> {
        if deltas.is_empty() {
            return Ok(Vec::new());
        }
        // The commit's own bytes for the same keys (a rebuild's, a recovery's).
        let written: HashMap<&[u8], &Pending> = derived
            .iter()
            .map(|(key, pending)| (key.as_slice(), pending))
            .collect();
        let overlay = self.overlay.read().map_err(poisoned)?;
        let frozen = self.frozen()?;
        let earlier = |key: &[u8]| {
            written
                .get(key)
                .copied()
                .or_else(|| overlay.get(key))
                .or_else(|| checkpointed.get(key))
                .or_else(|| frozen.get(key))
        };
        let stored = |key: &[u8], earlier: Option<&Pending>| -> Result<Option<Vec<u8>>> {
            match earlier {
                Some(pending) => pending.stored(),
                None => self.inner.get(key),
            }
        };
        let mut additions = Vec::with_capacity(deltas.len());
        // Buckets that do not wait decoded, decoded for this commit.
        let mut not_decoded = Vec::new();
        for (bucket, delta) in deltas {
            match buckets::placement(&bucket) {
                Placement::Own => {
                    if let Some(Pending::Aggregate(aggregate)) = earlier(&bucket) {
                        buckets::ensure_stays_non_negative(aggregate, &delta, &bucket)?;
                        additions.push((bucket, Addition::InPlace(InPlace::Own(delta))));
                        continue;
                    }
                }
                Placement::InHour { key, part } => {
                    if let Some(Pending::HourParts(parts)) = earlier(&key) {
                        parts.ensure_stays_non_negative(part, &delta, &bucket)?;
                        additions.push((key, Addition::InPlace(InPlace::Part(part, delta))));
                        continue;
                    }
                }
            }
            not_decoded.push((bucket, delta));
        }
        let added = buckets::added(not_decoded, |key| stored(key, earlier(key)))?;
        for (key, aggregate) in added.own {
            additions.push((key, Addition::Replace(Pending::of_aggregate(aggregate))));
        }
        for (key, parts) in added.hours {
            let pending = if parts.is_empty() {
                Pending::Delete
            } else {
                Pending::HourParts(Box::new(parts))
            };
            additions.push((key, Addition::Replace(pending)));
        }
        Ok(additions)
    }

    /// How many consistent reads had to hold changes off (after
    /// `OPTIMISTIC_READS` tries saw commits land).
    pub fn held_off_reads(&self) -> u64 {
        self.held_off_reads.load(Ordering::Relaxed)
    }

    /// Writes every deferred change now.
    pub fn checkpoint(&self) -> Result<()> {
        let mut writing = self.writing.lock().map_err(poisoned)?;
        self.checkpoint_locked(&mut writing)
    }
}

impl Drop for DeferredKv {
    fn drop(&mut self) {
        if let Err(error) = self.checkpoint().and_then(|()| self.inner.flush()) {
            // The journal lets the next open recover what this could not write.
            tracing::error!(%error, "final checkpoint failed; the next start recovers");
        }
    }
}

/// Merges the overlay (newer) over the store's entries, both in key order.
struct Merge<'a> {
    stored: Peekable<Box<dyn Iterator<Item = Result<Entry>> + Send + 'a>>,
    pending: Peekable<std::vec::IntoIter<Change>>,
}

impl Iterator for Merge<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        loop {
            let stored_key = match self.stored.peek() {
                Some(Ok((key, _))) => Some(key.as_slice()),
                Some(Err(_)) => return self.stored.next(),
                None => None,
            };
            let take_pending = match (stored_key, self.pending.peek()) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(stored), Some((pending, _))) => pending.as_slice() <= stored,
            };
            if !take_pending {
                return self.stored.next();
            }
            let (key, value) = self.pending.next()?;
            if let Some(Ok((stored, _))) = self.stored.peek() {
                if *stored == key {
                    self.stored.next();
                }
            }
            if let Some(value) = value {
                return Some(Ok((key, value)));
            }
            // A deferred delete hides the stored entry; go on.
        }
    }
}

impl KvStore for DeferredKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if is_derived(key) {
            // Top down: an entry moving meanwhile is found further down.
            if let Some(pending) = self.overlay.read().map_err(poisoned)?.get(key) {
                return pending.stored();
            }
            if let Some(pending) = self.frozen.read().map_err(poisoned)?.get(key) {
                return pending.stored();
            }
        }
        self.inner.get(key)
    }

    fn scan_prefix<'a>(
        &'a self,
        prefix: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a> {
        if !prefix.is_empty() && !is_derived(prefix) {
            return self.inner.scan_prefix(prefix);
        }
        // Memory before the store: a checkpoint between the two reads is then
        // seen in the store (it commits before it stops being read from
        // memory).
        let pending = self.overlay_range(prefix, |key| key.starts_with(prefix));
        self.merged(self.inner.scan_prefix(prefix), pending)
    }

    fn range<'a>(
        &'a self,
        start: &[u8],
        end: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a> {
        let pending = self.overlay_range(start, |key| key < end);
        self.merged(self.inner.range(start, end), pending)
    }

    /// Runs `read` and keeps what it gave (a value or an error) if no commit
    /// changed a derived value meanwhile: the count of changes is even and
    /// the same before and after. After `OPTIMISTIC_READS` tries, runs it
    /// with those changes held off (the change gate held for reading; commits
    /// wait only where they change what readers see). A window read is a few
    /// ranges read one after another; a commit between two would leave it
    /// with part of that commit (a fact added by one range and not taken away
    /// by the next).
    fn read_consistently(&self, read: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        for _ in 0..OPTIMISTIC_READS {
            let before = self.changes.load(Ordering::SeqCst);
            // Even: no commit is being applied.
            if before.is_multiple_of(2) {
                let result = read();
                fence(Ordering::SeqCst);
                if self.changes.load(Ordering::SeqCst) == before {
                    return result;
                }
            }
            std::thread::yield_now();
        }
        let _held_off = self
            .change_gate
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        self.held_off_reads.fetch_add(1, Ordering::Relaxed);
        read()
    }

    fn commit(&self, changes: Vec<Change>) -> Result<()> {
        self.commit_with_aggregates(changes, Vec::new())
    }

    /// Raw changes (and the journal) durably now; derived changes into the
    /// overlay, aggregate changes added to the overlay's decoded aggregates
    /// in place (or to those the last checkpoint kept decoded, those the
    /// checkpoint in flight writes, or the stored ones decoded, each taken
    /// into the overlay). Every
    /// addition is checked before anything is committed, so a change that would
    /// make a bucket negative fails the commit whole. A commit too large for
    /// the overlay (a rebuild) goes straight through, after a checkpoint that
    /// keeps the order of changes.
    fn commit_with_aggregates(
        &self,
        mut changes: Vec<Change>,
        deltas: Vec<AggregateDelta>,
    ) -> Result<()> {
        let mut writing = self.writing.lock().map_err(poisoned)?;
        if writing.in_flight.as_ref().is_some_and(|t| t.is_finished()) {
            if let Err(error) = self.land(&mut writing) {
                tracing::error!(%error, "checkpoint failed; retried after the next commits");
            }
        }
        let (deltas, stray): (Vec<_>, Vec<_>) = buckets::summed_by_bucket(deltas)
            .into_iter()
            .partition(|(key, _)| is_derived(key));
        // Keys of other families are never in the overlay.
        let stray = buckets::aggregate_changes(&changes, stray, |key| self.inner.get(key))?;
        changes.extend(stray);
        let derived_count =
            changes.iter().filter(|(key, _)| is_derived(key)).count() + deltas.len();
        if derived_count > self.limits.commit_entries {
            self.checkpoint_locked(&mut writing)?;
            // Straight into the store: what the checkpoint kept decoded may
            // no longer be what the store holds.
            writing.checkpointed.clear();
            let stored = buckets::aggregate_changes(&changes, deltas, |key| self.inner.get(key))?;
            changes.extend(stored);
            let _visible = ChangeCount::begin(&self.changes, &self.change_gate);
            return self.inner.commit(changes);
        }
        let mut durable = Vec::with_capacity(changes.len() + deltas.len() + 1 - derived_count);
        let mut derived = Vec::with_capacity(derived_count);
        let mut journal = Vec::new();
        for (key, value) in changes {
            if is_derived(&key) {
                if key.first() == Some(&keys::GROUP) {
                    journal.push(key.clone());
                }
                derived.push((key, Pending::of_value(value)));
            } else {
                durable.push((key, value));
            }
        }
        if !journal.is_empty() {
            let sequence = match writing.next_journal {
                Some(sequence) => sequence,
                None => next_journal_sequence(self.inner.as_ref())?,
            };
            durable.push(journal_entry(sequence, journal)?);
            writing.next_journal = Some(sequence.wrapping_add(1));
        }
        let additions = self.plan_additions(&derived, deltas, &writing.checkpointed)?;
        if !durable.is_empty() {
            self.inner.commit(durable)?;
        }
        let bytes = {
            // The gate before the overlay: a reader holding the gate reads
            // the overlay.
            let _visible = (!derived.is_empty() || !additions.is_empty())
                .then(|| ChangeCount::begin(&self.changes, &self.change_gate));
            let mut overlay = self.overlay.write().map_err(poisoned)?;
            let frozen = self.frozen()?;
            for (key, pending) in derived {
                writing.insert(&mut overlay, key, pending);
            }
            // After the byte changes: a bucket given both ways ends with the
            // addition, which started from those bytes.
            for (key, addition) in additions {
                match addition {
                    Addition::Replace(pending) => writing.insert(&mut overlay, key, pending),
                    Addition::InPlace(change) => {
                        // Found decoded in the overlay, or else among what
                        // the last checkpoint wrote, which the overlay then
                        // takes back, or else among what the checkpoint in
                        // flight writes, which the overlay then copies (the
                        // order `plan_additions` looked in); only this
                        // writer, holding `writing`, changes any of them.
                        if !overlay.contains_key(&key) {
                            if let Some((kept, pending)) = writing.checkpointed.remove_entry(&key) {
                                writing.insert(&mut overlay, kept, pending);
                            } else if let Some(pending) = frozen.get(&key) {
                                writing.insert(&mut overlay, key.clone(), pending.clone());
                            }
                        }
                        let Some(pending) = overlay.get_mut(&key) else {
                            return Err(Error::Internal(format!(
                                "{} left the overlay while a commit added to it",
                                keys::describe_key(&key)
                            )));
                        };
                        let before = pending.memory_bytes();
                        pending.add_in_place(&key, change)?;
                        writing.bytes = writing.bytes + pending.memory_bytes() - before;
                    }
                }
            }
            writing.bytes
        };
        if bytes > self.limits.overlay_bytes
            || writing.last_checkpoint.elapsed() > CHECKPOINT_INTERVAL
        {
            // The write itself is durable (and journaled) by now: a failed
            // checkpoint must not be reported as a failed write. It is retried
            // at a later commit; until then the overlay serves the reads.
            if let Err(error) = self.start_checkpoint(&mut writing) {
                tracing::error!(%error, "checkpoint failed; retried after the next commits");
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.checkpoint()?;
        self.inner.flush()
    }

    fn size_on_disk(&self) -> Result<u64> {
        self.inner.size_on_disk()
    }

    fn keys_written(&self) -> u64 {
        self.inner.keys_written()
    }
}

/// After a crash: recomputes the groups journaled since the last checkpoint
/// (tickets first: customers read the index tickets maintain) and checkpoints.
/// A damaged journal entry cannot say which groups it journaled: then every
/// ticket and customer is recomputed (slower, as exact). Returns how many
/// groups were recomputed. Runs before any commit, so that the journal's
/// entries are never overwritten before they are recovered.
pub fn recover(kv: &DeferredKv) -> Result<usize> {
    let mut groups = BTreeSet::new();
    let mut damaged = None;
    let mut journal = Vec::new();
    for entry in kv.inner.scan_prefix(&[keys::JOURNAL]) {
        let (key, value) = entry?;
        match journaled_groups(&key, &value) {
            Some(journaled) => groups.extend(journaled),
            None => damaged = Some(key.clone()),
        }
        journal.push((key, None));
    }
    if let Some(key) = damaged {
        tracing::error!(
            key = %keys::describe_key(&key),
            "a journal entry is damaged; recomputing every ticket and customer"
        );
        groups.extend(every_group(kv.inner.as_ref())?);
    }
    if groups.is_empty() {
        return Ok(0);
    }
    // Tickets sort before customers in `Group`'s order. The overlay is empty
    // at open, so the recomputation reads the last checkpoint's state.
    let mut txn = Txn::new(kv);
    for group in &groups {
        recompute(&mut txn, group)?;
    }
    let (mut changes, deltas) = txn.into_parts()?;
    let stored = buckets::aggregate_changes(&changes, deltas, |key| kv.inner.get(key))?;
    changes.extend(stored);
    changes.extend(journal);
    kv.inner.commit(changes)?;
    // Straight into the store, as a commit too large for the overlay.
    kv.writing.lock().map_err(poisoned)?.checkpointed.clear();
    kv.inner.flush()?;
    tracing::warn!(
        groups = groups.len(),
        "recovered derived state after an unclean stop"
    );
    Ok(groups.len())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;
    use crate::domain::aggregate::Scope;
    use crate::domain::records::Channel;
    use crate::domain::time::Level;
    use crate::store::codec::decode;

    fn merge(
        stored: &BTreeMap<Vec<u8>, Vec<u8>>,
        pending: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ) -> Vec<Entry> {
        let stored: Box<dyn Iterator<Item = Result<Entry>> + Send> = Box::new(
            stored
                .clone()
                .into_iter()
                .map(Ok)
                .collect::<Vec<_>>()
                .into_iter(),
        );
        let pending: Vec<Change> = pending.clone().into_iter().collect();
        Merge {
            stored: stored.peekable(),
            pending: pending.into_iter().peekable(),
        }
        .collect::<Result<_>>()
        .expect("no errors")
    }

    proptest! {
        /// The merge is the store with the overlay applied on top, in key order.
        #[test]
        fn the_overlay_wins_and_its_deletes_hide_stored_entries(
            stored in prop::collection::btree_map(prop::collection::vec(0u8..4, 1..4), prop::collection::vec(any::<u8>(), 0..3), 0..20),
            pending in prop::collection::btree_map(prop::collection::vec(0u8..4, 1..4), prop::option::of(prop::collection::vec(any::<u8>(), 0..3)), 0..20),
        ) {
            let mut model = stored.clone();
            for (key, value) in &pending {
                match value {
                    Some(value) => model.insert(key.clone(), value.clone()),
                    None => model.remove(key),
                };
            }
            let expected: Vec<Entry> = model.into_iter().collect();
            prop_assert_eq!(merge(&stored, &pending), expected);
        }
    }

    /// One step of a writer: a commit of byte changes and of changes to
    /// aggregates (in the order given, aggregates last), a checkpoint, a
    /// checkpoint started on its own thread, or that checkpoint landed.
    #[derive(Debug, Clone)]
    enum Step {
        Commit(Vec<Change>, Vec<AggregateDelta>),
        Checkpoint,
        Background,
        Land,
    }

    /// Keys over a small alphabet in an aggregate family (`A`), another
    /// derived family (`X`) and a raw one (`R`), so that steps overwrite and
    /// delete each other's keys; and quarter and hour bucket keys of two
    /// scopes over a few hours, so that they share and empty each other's hour parts.
    fn step_key() -> impl Strategy<Value = Vec<u8>> {
        let small = (
            prop::sample::select(vec![keys::AGGREGATE, keys::DERIVED_INDEX, keys::RAW]),
            prop::collection::vec(prop::sample::select(b"ab".to_vec()), 1..3),
        )
            .prop_map(|(family, rest)| [vec![family], rest].concat());
        let in_hour = (
            prop::sample::select(vec![Level::Quarter, Level::Hour]),
            prop::sample::select(vec![Scope::Organization, Scope::Channel(Channel::Email)]),
            prop::sample::select(vec![0, 900, 2700, 3600, 86_400 + 900]),
        )
            .prop_map(|(level, scope, offset)| {
                keys::aggregate(level, &scope, 20_000 * 86_400 + offset)
            });
        prop_oneof![small, in_hour]
    }

    /// An aggregate with a few fields set; all zero sometimes (a delete).
    fn aggregate() -> impl Strategy<Value = Aggregate> {
        (0i64..3, 0i64..2, prop::option::of(1i64..1_000_000)).prop_map(
            |(interactions, reopened, handle)| {
                let mut aggregate = Aggregate {
                    interactions,
                    reopened,
                    ..Aggregate::default()
                };
                if let Some(nanos) = handle {
                    aggregate.handle.record(nanos, 1);
                }
                aggregate
            },
        )
    }

    /// A byte change: aggregate keys get an encoded aggregate, quarter and
    /// hour keys their hour's parts holding one (as a rebuild or a recovery
    /// commits them), other keys any bytes.
    fn byte_change() -> impl Strategy<Value = Change> {
        (
            step_key(),
            prop::option::of((aggregate(), prop::collection::vec(any::<u8>(), 0..3))),
        )
            .prop_map(|(key, value)| match buckets::placement(&key) {
                Placement::InHour { key, part } => {
                    let value = value.map(|(aggregate, _)| {
                        let mut parts = HourParts::default();
                        parts.set(part, aggregate);
                        encode(&parts).expect("encodes")
                    });
                    (key, value)
                }
                Placement::Own => {
                    let value = value.map(|(aggregate, bytes)| {
                        if key[0] == keys::AGGREGATE {
                            encode(&aggregate).expect("encodes")
                        } else {
                            bytes
                        }
                    });
                    (key, value)
                }
            })
    }

    /// A change to an aggregate: mostly an addition, sometimes a retraction
    /// (which fails when there is less to retract).
    fn delta() -> impl Strategy<Value = Aggregate> {
        (aggregate(), prop::bool::weighted(0.3)).prop_map(|(aggregate, retract)| {
            let mut delta = Aggregate::default();
            delta.merge(&aggregate, if retract { -1 } else { 1 });
            delta
        })
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (
                prop::collection::vec(byte_change(), 0..4),
                prop::collection::vec((step_key(), delta()), 0..4),
            )
                .prop_map(|(changes, aggregates)| Step::Commit(changes, aggregates)),
            1 => Just(Step::Checkpoint),
            1 => Just(Step::Background),
            1 => Just(Step::Land),
        ]
    }

    fn apply(model: &mut BTreeMap<Vec<u8>, Vec<u8>>, changes: Vec<Change>) {
        for (key, value) in changes {
            match value {
                Some(value) => model.insert(key, value),
                None => model.remove(&key),
            };
        }
    }

    /// The model's stored bytes after adding `deltas` to their buckets (a
    /// bucket's changes summed first), reading and writing each bucket whole
    /// where [`buckets::placement`] says it is stored; `None` if a bucket does
    /// not decode or would go negative (the commit must then fail and change
    /// nothing).
    fn added(
        model: &BTreeMap<Vec<u8>, Vec<u8>>,
        deltas: &[AggregateDelta],
    ) -> Option<BTreeMap<Vec<u8>, Vec<u8>>> {
        let mut summed: BTreeMap<&[u8], Aggregate> = BTreeMap::new();
        for (bucket, delta) in deltas {
            summed.entry(bucket.as_slice()).or_default().merge(delta, 1);
        }
        let mut model = model.clone();
        for (bucket, delta) in summed {
            let (key, part) = match buckets::placement(bucket) {
                Placement::Own => (bucket.to_vec(), None),
                Placement::InHour { key, part } => (key, Some(part)),
            };
            let mut parts: HourParts = match (model.get(&key), part) {
                (Some(bytes), Some(_)) => decode(&key, bytes).ok()?,
                _ => HourParts::default(),
            };
            let mut aggregate: Aggregate = match (model.get(&key), part) {
                (_, Some(part)) => parts.get(part).cloned().unwrap_or_default(),
                (Some(bytes), None) => decode(&key, bytes).ok()?,
                (None, None) => Aggregate::default(),
            };
            aggregate.merge(&delta, 1);
            if !aggregate.is_non_negative() {
                return None;
            }
            let value = match part {
                Some(part) => {
                    parts.set(part, aggregate);
                    (!parts.is_empty()).then(|| encode(&parts).expect("encodes"))
                }
                None => (!aggregate.is_zero()).then(|| encode(&aggregate).expect("encodes")),
            };
            match value {
                Some(value) => model.insert(key, value),
                None => model.remove(&key),
            };
        }
        Some(model)
    }

    /// Limits of `entries` KiB (one aggregate without histograms takes
    /// ~0.7 KiB, a byte change ~50 bytes) and `entries` derived changes a
    /// commit.
    fn small_limits(entries: usize) -> Limits {
        Limits {
            overlay_bytes: entries * 1024,
            commit_entries: entries,
        }
    }

    /// The overlay is bounded by what it holds in memory, not by how many
    /// entries: three buckets with wide histograms fill it, three without
    /// do not.
    #[test]
    fn the_overlay_checkpoints_when_its_bytes_reach_the_bound() {
        let overlay_bytes = 16 * 1024;
        let narrow = interactions(1);
        let mut wide = interactions(1);
        for seconds in [1, 10_000_000] {
            wide.handle.record(seconds * 1_000_000_000, 1);
        }
        assert!(3 * narrow.memory_bytes() < overlay_bytes / 2);
        assert!(3 * wide.memory_bytes() > overlay_bytes);
        let (_dir, inner) = temporary_sled();
        let kv = DeferredKv::with_limits(
            inner,
            Limits {
                overlay_bytes,
                commit_entries: MAX_COMMIT_ENTRIES,
            },
        );
        kv.writing.lock().unwrap().last_checkpoint = Instant::now() + Duration::from_secs(3600);
        let commit_three = |aggregate: &Aggregate, first: u8| {
            let deltas = (first..first + 3)
                .map(|id| (vec![keys::AGGREGATE, b'a', id], aggregate.clone()))
                .collect();
            kv.commit_with_aggregates(Vec::new(), deltas).unwrap();
        };
        commit_three(&narrow, 1);
        {
            let writing = kv.writing.lock().unwrap();
            assert!(writing.in_flight.is_none());
            assert!(writing.bytes > 3 * narrow.memory_bytes());
            assert!(writing.bytes < overlay_bytes);
        }
        commit_three(&wide, 11);
        let writing = kv.writing.lock().unwrap();
        assert!(
            writing.in_flight.is_some(),
            "the full overlay is being written"
        );
        assert_eq!(writing.bytes, 0);
        assert!(kv.overlay.read().unwrap().is_empty());
    }

    /// What the overlay's entries take in memory, counted afresh.
    fn overlay_bytes(kv: &DeferredKv) -> usize {
        let overlay = kv.overlay.read().unwrap();
        overlay
            .iter()
            .map(|(key, pending)| entry_bytes(key, pending))
            .sum()
    }

    fn interactions(count: i64) -> Aggregate {
        Aggregate {
            interactions: count,
            ..Aggregate::default()
        }
    }

    fn interactions_at(kv: &dyn KvStore, key: &[u8]) -> i64 {
        let bytes = kv.get(key).unwrap().expect("the bucket is there");
        decode::<Aggregate>(key, &bytes).unwrap().interactions
    }

    fn temporary_sled() -> (tempfile::TempDir, Arc<dyn KvStore>) {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn KvStore> = Arc::new(
            crate::store::kv::SledStore::open(&crate::store::kv::SledOptions::for_tests(
                dir.path(),
            ))
            .expect("open sled"),
        );
        (dir, inner)
    }

    /// Each durable commit that changes groups writes one journal entry
    /// naming them, numbered after any entry already in the store (one left
    /// by a crash is never overwritten, though `Store` recovers those before
    /// its first commit), and a checkpoint deletes them all.
    #[test]
    fn commits_journal_their_groups_after_the_entries_in_the_store() {
        let (_dir, inner) = temporary_sled();
        inner
            .commit(vec![journal_entry(5, vec![b"Gtold".to_vec()]).unwrap()])
            .unwrap();
        let kv = DeferredKv::new(Arc::clone(&inner));
        // No checkpoint falls due while the test runs, however slowly.
        kv.writing.lock().unwrap().last_checkpoint = Instant::now() + Duration::from_secs(3600);
        kv.commit(vec![
            (b"Gta".to_vec(), Some(b"1".to_vec())),
            (b"Gcb".to_vec(), Some(b"2".to_vec())),
            (b"Rix".to_vec(), Some(Vec::new())),
        ])
        .unwrap();
        kv.commit(vec![(b"Ri2".to_vec(), Some(Vec::new()))])
            .unwrap();
        kv.commit(vec![(b"Gta".to_vec(), None)]).unwrap();
        let journal: Vec<(Vec<u8>, Vec<Vec<u8>>)> = inner
            .scan_prefix(&[keys::JOURNAL])
            .map(|entry| {
                let (key, value) = entry.unwrap();
                let groups: JournalEntry = decode(&key, &value).unwrap();
                (key, groups.into_iter().map(|g| g.into_vec()).collect())
            })
            .collect();
        let expected = [
            (keys::journal(5), vec![b"Gtold".to_vec()]),
            (keys::journal(6), vec![b"Gta".to_vec(), b"Gcb".to_vec()]),
            (keys::journal(7), vec![b"Gta".to_vec()]),
        ];
        assert_eq!(journal, expected);
        kv.checkpoint().unwrap();
        assert_eq!(inner.scan_prefix(&[keys::JOURNAL]).count(), 0);
        assert_eq!(inner.get(b"Gcb").unwrap(), Some(b"2".to_vec()));
    }

    /// What a checkpoint keeps decoded is added to only while it is what the
    /// store holds: bytes a later commit writes to the bucket win over it.
    #[test]
    fn changes_after_a_checkpoint_add_to_later_bytes() {
        let (_dir, inner) = temporary_sled();
        let kv = DeferredKv::new(inner);
        let bucket = b"Aa".to_vec();
        kv.commit_with_aggregates(Vec::new(), vec![(bucket.clone(), interactions(1))])
            .unwrap();
        kv.checkpoint().unwrap();
        let bytes = encode(&interactions(5)).unwrap();
        kv.commit(vec![(bucket.clone(), Some(bytes))]).unwrap();
        kv.commit_with_aggregates(Vec::new(), vec![(bucket.clone(), interactions(1))])
            .unwrap();
        assert_eq!(interactions_at(&kv, &bucket), 6);
        kv.checkpoint().unwrap();
        kv.commit_with_aggregates(Vec::new(), vec![(bucket.clone(), interactions(1))])
            .unwrap();
        assert_eq!(interactions_at(&kv, &bucket), 7);
    }

    /// A commit too large for the overlay goes straight to the store; what
    /// the checkpoint before it kept decoded is no longer added to.
    #[test]
    fn changes_after_a_commit_past_the_overlay_add_to_what_it_wrote() {
        let (_dir, inner) = temporary_sled();
        let kv = DeferredKv::with_limits(inner, small_limits(2));
        let bucket = b"Aa".to_vec();
        kv.commit_with_aggregates(Vec::new(), vec![(bucket.clone(), interactions(1))])
            .unwrap();
        kv.checkpoint().unwrap();
        kv.commit_with_aggregates(Vec::new(), vec![(bucket.clone(), interactions(1))])
            .unwrap();
        let large = vec![
            (bucket.clone(), Some(encode(&interactions(5)).unwrap())),
            (b"Ab".to_vec(), Some(encode(&interactions(1)).unwrap())),
            (b"Xa".to_vec(), Some(b"x".to_vec())),
        ];
        kv.commit(large).unwrap();
        kv.commit_with_aggregates(Vec::new(), vec![(bucket.clone(), interactions(1))])
            .unwrap();
        assert_eq!(interactions_at(&kv, &bucket), 6);
    }

    /// Two buckets a writer always changes together, read one after the
    /// other (one by key, one by range) while it commits into the overlay
    /// and, every fifth commit, past it: read consistently, they always
    /// agree. A quick reader must keep some reads without holding commits
    /// off, and a reader slower than the commits come must hold them off.
    #[test]
    fn reads_made_consistently_never_see_part_of_a_commit() {
        let (_dir, inner) = temporary_sled();
        let kv = Arc::new(DeferredKv::with_limits(inner, small_limits(4)));
        let (a, b) = (b"Aa".to_vec(), b"Ab".to_vec());
        let both = {
            let (a, b) = (a.clone(), b.clone());
            move || vec![(a.clone(), interactions(1)), (b.clone(), interactions(1))]
        };
        kv.commit_with_aggregates(Vec::new(), both()).unwrap();
        let reading = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let writer = std::thread::spawn({
            let (kv, reading) = (Arc::clone(&kv), Arc::clone(&reading));
            move || {
                let mut commits = 0u64;
                while reading.load(Ordering::SeqCst) && commits < 1_000_000 {
                    let past_the_overlay: Vec<Change> = if commits.is_multiple_of(5) {
                        [b"Xa", b"Xb", b"Xc"]
                            .map(|key| (key.to_vec(), Some(b"x".to_vec())))
                            .into()
                    } else {
                        Vec::new()
                    };
                    kv.commit_with_aggregates(past_the_overlay, both()).unwrap();
                    commits += 1;
                }
                commits
            }
        });
        let by_range = |key: &[u8]| {
            let end = [key, &[0]].concat();
            let (key, bytes) = kv.range(key, &end).next().expect("the bucket").unwrap();
            decode::<Aggregate>(&key, &bytes).unwrap().interactions
        };
        let mut held_off = Vec::new();
        for pause in [None, Some(Duration::from_micros(300))] {
            let before = kv.held_off_reads();
            for _ in 0..200 {
                let mut read = (0, 0);
                kv.read_consistently(&mut || {
                    let first = interactions_at(kv.as_ref(), &a);
                    match pause {
                        Some(pause) => std::thread::sleep(pause),
                        None => std::thread::yield_now(),
                    }
                    read = (first, by_range(&b));
                    Ok(())
                })
                .unwrap();
                assert_eq!(read.0, read.1, "a read saw part of a commit");
            }
            held_off.push(kv.held_off_reads() - before);
        }
        reading.store(false, Ordering::SeqCst);
        let commits = writer.join().unwrap();
        assert!(commits > 0);
        assert!(held_off[0] < 200, "no quick read was kept: {held_off:?}");
        assert!(
            held_off[1] > 0,
            "no slow read held commits off: {held_off:?}"
        );
    }

    /// A store that counts the reads of single keys it serves, and holds
    /// the commits of checkpoint threads until the test grants them (or
    /// fails them).
    struct Instrumented {
        inner: Arc<dyn KvStore>,
        gets: std::sync::atomic::AtomicUsize,
        /// Checkpoint commits granted and not yet made; `None`: any may be.
        permits: Mutex<Option<usize>>,
        granted: std::sync::Condvar,
        fail_checkpoints: std::sync::atomic::AtomicBool,
    }

    impl Instrumented {
        fn over(inner: Arc<dyn KvStore>, held: bool) -> Arc<Instrumented> {
            Arc::new(Instrumented {
                inner,
                gets: Default::default(),
                permits: Mutex::new(held.then_some(0)),
                granted: Default::default(),
                fail_checkpoints: Default::default(),
            })
        }

        fn gets(&self) -> usize {
            self.gets.load(Ordering::SeqCst)
        }

        /// Lets one held checkpoint commit through.
        fn grant(&self) {
            if let Some(permits) = self.permits.lock().unwrap().as_mut() {
                *permits += 1;
            }
            self.granted.notify_all();
        }

        /// Holds no checkpoint any more.
        fn release(&self) {
            *self.permits.lock().unwrap() = None;
            self.granted.notify_all();
        }
    }

    /// Releases the held checkpoints when dropped (before the store, which
    /// lands them when dropped), also when a test fails early.
    struct ReleaseOnDrop(Arc<Instrumented>);

    impl Drop for ReleaseOnDrop {
        fn drop(&mut self) {
            self.0.release();
        }
    }

    impl KvStore for Instrumented {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            self.inner.get(key)
        }

        fn scan_prefix<'a>(
            &'a self,
            prefix: &[u8],
        ) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a> {
            self.inner.scan_prefix(prefix)
        }

        fn range<'a>(
            &'a self,
            start: &[u8],
            end: &[u8],
        ) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a> {
            self.inner.range(start, end)
        }

        fn commit(&self, changes: Vec<Change>) -> Result<()> {
            if std::thread::current().name() == Some("checkpoint") {
                let mut permits = self.permits.lock().unwrap();
                while *permits == Some(0) {
                    let (next, waited) = self
                        .granted
                        .wait_timeout(permits, Duration::from_secs(60))
                        .unwrap();
                    assert!(
                        !waited.timed_out(),
                        "a held checkpoint was never let through"
                    );
                    permits = next;
                }
                if let Some(permits) = permits.as_mut() {
                    *permits -= 1;
                }
                if self.fail_checkpoints.load(Ordering::SeqCst) {
                    return Err(Error::Internal("the disk is full".into()));
                }
            }
            self.inner.commit(changes)
        }

        fn flush(&self) -> Result<()> {
            self.inner.flush()
        }

        fn size_on_disk(&self) -> Result<u64> {
            self.inner.size_on_disk()
        }

        fn keys_written(&self) -> u64 {
            self.inner.keys_written()
        }
    }

    /// A bucket changed in the interval after a checkpoint is added to where
    /// that checkpoint left it decoded, without reading the store; one left
    /// unchanged for a whole interval is read from the store again.
    #[test]
    fn a_busy_bucket_is_not_read_again_after_a_checkpoint() {
        let (_dir, sled) = temporary_sled();
        let counting = Instrumented::over(sled, false);
        let kv = DeferredKv::new(Arc::clone(&counting) as Arc<dyn KvStore>);
        let (busy, idle) = (b"Aa".to_vec(), b"Ab".to_vec());
        let add = |bucket: &[u8]| {
            kv.commit_with_aggregates(Vec::new(), vec![(bucket.to_vec(), interactions(1))])
                .unwrap()
        };
        add(&busy);
        add(&idle);
        kv.checkpoint().unwrap();
        let before = counting.gets();
        add(&busy);
        assert_eq!(counting.gets(), before, "the busy bucket was read again");
        kv.checkpoint().unwrap();
        add(&idle);
        assert_eq!(counting.gets(), before + 1, "the idle bucket was kept");
        assert_eq!(interactions_at(&kv, &busy), 2);
        assert_eq!(interactions_at(&kv, &idle), 2);
    }

    /// A checkpoint on its own thread, held before it writes: commits go on
    /// and add to the buckets it writes, reads see it under the overlay, and
    /// once it lands the store holds what it froze and the journal entries of
    /// the commits after it only.
    #[test]
    fn a_checkpoint_in_flight_stays_readable_and_deletes_only_the_journal_it_covers() {
        let (_dir, sled) = temporary_sled();
        let held = Instrumented::over(Arc::clone(&sled), true);
        let kv = DeferredKv::new(Arc::clone(&held) as Arc<dyn KvStore>);
        let _release = ReleaseOnDrop(Arc::clone(&held));
        let bucket = b"Aa".to_vec();
        let commit = |group: &[u8], value: &[u8]| {
            kv.commit_with_aggregates(
                vec![(group.to_vec(), Some(value.to_vec()))],
                vec![(bucket.clone(), interactions(1))],
            )
            .unwrap()
        };
        commit(b"Gta", b"1");
        {
            let mut writing = kv.writing.lock().unwrap();
            kv.start_checkpoint(&mut writing).unwrap();
            assert!(writing.in_flight.is_some());
        }
        commit(b"Gtb", b"2");
        assert_eq!(interactions_at(&kv, &bucket), 2);
        assert_eq!(kv.get(b"Gta").unwrap(), Some(b"1".to_vec()));
        let groups: Vec<Entry> = kv.scan_prefix(b"G").collect::<Result<_>>().unwrap();
        assert_eq!(
            groups,
            [
                (b"Gta".to_vec(), b"1".to_vec()),
                (b"Gtb".to_vec(), b"2".to_vec())
            ]
        );
        assert_eq!(
            sled.get(b"Gta").unwrap(),
            None,
            "written before it was let through"
        );
        held.grant();
        kv.land(&mut kv.writing.lock().unwrap()).unwrap();
        assert_eq!(sled.get(b"Gta").unwrap(), Some(b"1".to_vec()));
        assert_eq!(sled.get(b"Gtb").unwrap(), None);
        assert_eq!(interactions_at(sled.as_ref(), &bucket), 1);
        let journal: Vec<Vec<u8>> = sled
            .scan_prefix(&[keys::JOURNAL])
            .map(|entry| entry.unwrap().0)
            .collect();
        assert_eq!(journal, [keys::journal(1)]);
        assert_eq!(interactions_at(&kv, &bucket), 2);
        kv.checkpoint().unwrap();
        assert_eq!(interactions_at(sled.as_ref(), &bucket), 2);
        assert_eq!(sled.scan_prefix(&[keys::JOURNAL]).count(), 0);
    }

    /// A checkpoint that fails on its thread puts what it was writing back
    /// under the overlay and leaves the journal: reads and later commits go
    /// on from it, and the next checkpoint on its thread writes it and
    /// deletes the journal.
    #[test]
    fn a_failed_checkpoint_is_written_by_the_next() {
        let (_dir, sled) = temporary_sled();
        let failing = Instrumented::over(Arc::clone(&sled), false);
        failing.fail_checkpoints.store(true, Ordering::SeqCst);
        let kv = DeferredKv::new(Arc::clone(&failing) as Arc<dyn KvStore>);
        let bucket = b"Aa".to_vec();
        kv.commit_with_aggregates(
            vec![(b"Gta".to_vec(), Some(b"1".to_vec()))],
            vec![(bucket.clone(), interactions(1))],
        )
        .unwrap();
        let background = || {
            let mut writing = kv.writing.lock().unwrap();
            kv.start_checkpoint(&mut writing).unwrap();
            assert!(writing.in_flight.is_some());
            kv.land(&mut writing)
        };
        assert!(background().is_err());
        assert_eq!(kv.writing.lock().unwrap().bytes, overlay_bytes(&kv));
        assert_eq!(kv.get(b"Gta").unwrap(), Some(b"1".to_vec()));
        assert_eq!(sled.get(b"Gta").unwrap(), None);
        assert_eq!(sled.scan_prefix(&[keys::JOURNAL]).count(), 1);
        kv.commit_with_aggregates(Vec::new(), vec![(bucket.clone(), interactions(1))])
            .unwrap();
        assert_eq!(interactions_at(&kv, &bucket), 2);
        assert_eq!(kv.writing.lock().unwrap().bytes, overlay_bytes(&kv));
        failing.fail_checkpoints.store(false, Ordering::SeqCst);
        background().unwrap();
        assert_eq!(sled.get(b"Gta").unwrap(), Some(b"1".to_vec()));
        assert_eq!(interactions_at(sled.as_ref(), &bucket), 2);
        assert_eq!(sled.scan_prefix(&[keys::JOURNAL]).count(), 0);
        assert_eq!(interactions_at(&kv, &bucket), 2);
    }

    fn all(kv: &dyn KvStore) -> Vec<Entry> {
        kv.scan_prefix(&[]).collect::<Result<_>>().expect("scan")
    }

    proptest! {
        /// Whatever the writer commits, bytes or changes to aggregates, every
        /// read of the deferred store equals the store the commits describe,
        /// before and after checkpoints, and a checkpoint leaves exactly that
        /// in the store underneath; a commit that would make a bucket negative
        /// (or add to bytes that are no aggregate) fails and changes nothing.
        /// While a checkpoint started on its own thread is held before it
        /// writes, reads still equal the commits; landed, it leaves in the
        /// store what the commits described when it started.
        /// The same with an overlay allowed only a few KiB, which
        /// checkpoints by itself (its checkpoints not held) and sends larger
        /// commits straight to the store.
        #[test]
        fn reads_and_checkpoints_agree_with_the_commits(
            steps in prop::collection::vec(step(), 1..12),
            small in prop_oneof![Just(None), (1usize..6).prop_map(Some)],
        ) {
            let (_dir, inner) = temporary_sled();
            let held = small.is_none();
            let instrumented = Instrumented::over(Arc::clone(&inner), held);
            let limits = small.map_or(Limits::SERVER, small_limits);
            let kv = DeferredKv::with_limits(Arc::clone(&instrumented) as Arc<dyn KvStore>, limits);
            let _release = ReleaseOnDrop(Arc::clone(&instrumented));
            // Held, no checkpoint starts but those the steps start.
            let far = Instant::now() + Duration::from_secs(3600);
            kv.writing.lock().unwrap().last_checkpoint = far;
            // What the commits described when the checkpoint in flight started.
            let mut frozen_model = None;
            let mut model = BTreeMap::new();
            let mut bucket_keys = BTreeSet::from([b"Aa".to_vec(), b"Ab".to_vec()]);
            for step in steps {
                match step {
                    Step::Commit(changes, deltas) => {
                        bucket_keys.extend(deltas.iter().map(|(key, _)| key.clone()));
                        let mut after = model.clone();
                        apply(&mut after, changes.clone());
                        match added(&after, &deltas) {
                            Some(after) => {
                                kv.commit_with_aggregates(changes, deltas).unwrap();
                                model = after;
                            }
                            None => {
                                prop_assert!(kv.commit_with_aggregates(changes, deltas).is_err());
                            }
                        }
                    }
                    Step::Checkpoint => {
                        frozen_model = None;
                        if kv.writing.lock().unwrap().in_flight.is_some() {
                            instrumented.grant();
                        }
                        kv.checkpoint().unwrap();
                        let expected: Vec<Entry> = model.clone().into_iter().collect();
                        prop_assert_eq!(all(inner.as_ref()), expected);
                    }
                    Step::Background => {
                        let mut writing = kv.writing.lock().unwrap();
                        let was_in_flight = writing.in_flight.is_some();
                        kv.start_checkpoint(&mut writing).unwrap();
                        if held && !was_in_flight && writing.in_flight.is_some() {
                            frozen_model = Some(model.clone());
                        }
                    }
                    Step::Land => {
                        if kv.writing.lock().unwrap().in_flight.is_some() {
                            instrumented.grant();
                        }
                        if let Some(frozen_model) = frozen_model.take() {
                            kv.land(&mut kv.writing.lock().unwrap()).unwrap();
                            // Derived keys as frozen; the others are durable at once.
                            let expected: BTreeMap<Vec<u8>, Vec<u8>> = frozen_model
                                .into_iter()
                                .filter(|(key, _)| is_derived(key))
                                .chain(model.iter().filter(|(key, _)| !is_derived(key)).map(|(k, v)| (k.clone(), v.clone())))
                                .collect();
                            let expected: Vec<Entry> = expected.into_iter().collect();
                            prop_assert_eq!(all(inner.as_ref()), expected);
                        } else {
                            kv.land(&mut kv.writing.lock().unwrap()).unwrap();
                        }
                    }
                }
                // Held, a checkpoint starts only at a Background step.
                kv.writing.lock().unwrap().last_checkpoint = far;
                prop_assert_eq!(kv.writing.lock().unwrap().bytes, overlay_bytes(&kv));
                let expected: Vec<Entry> = model.clone().into_iter().collect();
                prop_assert_eq!(all(&kv), expected);
                for family in [keys::AGGREGATE, keys::DERIVED_INDEX, keys::RAW] {
                    let expected: Vec<Entry> = model
                        .iter()
                        .filter(|(key, _)| key[0] == family)
                        .map(|(key, value)| (key.clone(), value.clone()))
                        .collect();
                    let scanned: Vec<Entry> =
                        kv.scan_prefix(&[family]).collect::<Result<_>>().unwrap();
                    prop_assert_eq!(scanned, expected.clone());
                    let ranged: Vec<Entry> =
                        kv.range(&[family], &[family + 1]).collect::<Result<_>>().unwrap();
                    prop_assert_eq!(ranged, expected);
                }
                for key in model.keys().chain(&bucket_keys) {
                    prop_assert_eq!(kv.get(key).unwrap(), model.get(key).cloned());
                }
            }
        }
    }
}
