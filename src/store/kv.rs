//! The narrow boundary between the service and its storage engine: an ordered
//! key-value store with atomic, durable batches, implemented over sled.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::domain::aggregate::{Aggregate, Scope};
use crate::domain::scorecard::OpenTicket;
use crate::error::{Error, Result};

use super::buckets;
use super::groups::decode_open_ticket;
use super::keys;

/// One change of a batch: a value to put, or `None` to delete the key.
pub type Change = (Vec<u8>, Option<Vec<u8>>);

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A change to add to a bucket's aggregate, by the bucket's key
/// ([`keys::aggregate`]); a bucket whose aggregate adds up to zero is removed.
/// Where it is stored is [`buckets::placement`]'s business.
///
/// [`keys::aggregate`]: super::keys::aggregate
pub type AggregateDelta = (Vec<u8>, Aggregate);

/// Called on each entry of a visit; an error ends the visit with it.
pub type Visitor<'v> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'v;

/// An ordered key-value store.
pub trait KvStore: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Entries whose key starts with `prefix`, in key order.
    fn scan_prefix<'a>(
        &'a self,
        prefix: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a>;

    /// Calls `visit` with each entry whose key starts with `prefix`, in key
    /// order, without copying it where the store can avoid that.
    fn visit_prefix(&self, prefix: &[u8], visit: &mut Visitor<'_>) -> Result<()> {
        for entry in self.scan_prefix(prefix) {
            let (key, value) = entry?;
            visit(&key, &value)?;
        }
        Ok(())
    }

    /// The open tickets whose entries in the open-ticket index name `scope`,
    /// decoded, in key order. This walks the whole index; a store that holds
    /// the index in memory keeps it by scope, and each scope's list decoded
    /// until a commit changes it (see [`ResidentKv`]).
    ///
    /// [`ResidentKv`]: super::resident::ResidentKv
    fn open_tickets(&self, scope: &Scope) -> Result<Arc<[OpenTicket]>> {
        let scope = keys::scope_bytes(scope);
        let mut open = Vec::new();
        self.visit_prefix(&keys::OPEN_TICKETS, &mut |key, value| {
            let (ticket, scopes) = decode_open_ticket(key, value)?;
            if scopes.contains(&scope) {
                open.push(ticket);
            }
            Ok(())
        })?;
        Ok(open.into())
    }

    /// Entries with `start <= key < end`, in key order.
    fn range<'a>(
        &'a self,
        start: &[u8],
        end: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a>;

    /// Runs `read`, which may read several times, so that the aggregates and
    /// other derived values it reads (but not a resident copy's, see
    /// [`ResidentKv`]) are of one state of the store: no commit changes them
    /// between its reads. It may run `read` more than once: each run must
    /// start afresh, and a run that is not kept may have seen a torn state
    /// (it must not panic on one). The default runs it once, with no such
    /// promise; [`DerivedState`], which serves reads while the writer commits,
    /// keeps it.
    ///
    /// [`DerivedState`]: super::state::DerivedState
    /// [`ResidentKv`]: super::resident::ResidentKv
    fn read_consistently(&self, read: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        read()
    }

    /// Applies every change or none, and returns only once they are durable.
    fn commit(&self, changes: Vec<Change>) -> Result<()>;

    /// [`KvStore::commit`] of `changes` and then of `deltas` added to their
    /// buckets (a bucket's changes summed first), together. Fails, committing
    /// nothing, if a bucket would go negative: a retraction of something never
    /// added, a broken invariant.
    /// A store that keeps recent aggregates decoded adds to them in place; by
    /// default they are read and stored as [`buckets::aggregate_changes`] says.
    fn commit_with_aggregates(
        &self,
        mut changes: Vec<Change>,
        deltas: Vec<AggregateDelta>,
    ) -> Result<()> {
        let stored =
            buckets::aggregate_changes(&changes, deltas, |key| Ok(self.get(key)?.map(Arc::from)))?;
        changes.extend(stored);
        self.commit(changes)
    }

    /// Makes every commit so far durable (a no-op when commits already are).
    fn flush(&self) -> Result<()>;

    /// Bytes the store occupies on disk.
    fn size_on_disk(&self) -> Result<u64>;

    /// Keys the storage engine has been given to write (puts and deletes)
    /// since the store was opened: its write load, whatever the layers above
    /// it defer or coalesce.
    fn keys_written(&self) -> u64;
}

/// Settings of the sled store.
#[derive(Debug, Clone)]
pub struct SledOptions {
    pub path: PathBuf,
    /// sled's page cache, in bytes.
    pub cache_capacity_bytes: u64,
    /// `true`: a commit returns only once it is on disk. `false` (unsafe, for
    /// bulk backfills): a commit returns once applied in memory and sled writes
    /// it out within about half a second, so a crash loses the last moments.
    pub durable_acks: bool,
    /// When the derived state is saved while the store is open.
    pub snapshots: super::state::SnapshotPolicy,
}

#[cfg(test)]
impl SledOptions {
    /// A store at `path` for a test: a 1 MiB cache, commits not waiting for
    /// the disk.
    pub fn for_tests(path: &std::path::Path) -> SledOptions {
        SledOptions {
            path: path.to_path_buf(),
            cache_capacity_bytes: 1 << 20,
            durable_acks: false,
            snapshots: Default::default(),
        }
    }
}

/// The embedded sled store.
///
/// Durability: sled 0.34's `flush()` ends in `sync_file_range` on Linux, which
/// neither flushes the drive's cache nor the file's metadata, and it writes
/// large pages to `blobs/` files it never syncs. After every flush we therefore
/// `fdatasync` sled's data file and `fsync` every blob file not yet synced (and
/// the blob directory), so an acknowledged commit survives a power cut, not only
/// a killed process.
#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    durability: Mutex<Durability>,
    path: PathBuf,
    durable_acks: bool,
    keys_written: AtomicU64,
}

/// What has to be synced after a flush.
#[derive(Debug)]
struct Durability {
    data_file: File,
    synced_blobs: HashSet<OsString>,
}

impl Durability {
    fn sync(&mut self, store_path: &Path) -> std::io::Result<()> {
        self.data_file.sync_data()?;
        let blobs = store_path.join("blobs");
        let Ok(entries) = std::fs::read_dir(&blobs) else {
            return Ok(());
        };
        let mut synced_any = false;
        for entry in entries {
            let entry = entry?;
            if !self.synced_blobs.contains(&entry.file_name()) {
                File::open(entry.path())?.sync_all()?;
                self.synced_blobs.insert(entry.file_name());
                synced_any = true;
            }
        }
        if synced_any {
            File::open(&blobs)?.sync_all()?;
        }
        Ok(())
    }
}

impl SledStore {
    pub fn open(options: &SledOptions) -> Result<SledStore> {
        std::fs::create_dir_all(&options.path)?;
        let db = open_sled(options)?;
        let data_file = File::open(options.path.join("db"))?;
        // Make the directory entries of sled's files durable once.
        File::open(&options.path)?.sync_all()?;
        Ok(SledStore {
            db,
            durability: Mutex::new(Durability {
                data_file,
                synced_blobs: HashSet::new(),
            }),
            path: options.path.clone(),
            durable_acks: options.durable_acks,
            keys_written: AtomicU64::new(0),
        })
    }
}

/// Opens the sled store at `options.path` once and closes it again. sled
/// writes the snapshot of its page table only when it opens, after replaying
/// its log since the previous snapshot; after a bulk load that replay (73 s
/// for the benchmark's 1M interactions) would otherwise fall on the server's
/// first start. Call it once the store is closed.
pub fn refresh_snapshot(options: &SledOptions) -> Result<()> {
    let started = std::time::Instant::now();
    drop(open_sled(options)?);
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "sled snapshot refreshed"
    );
    Ok(())
}

/// How long opening waits for a lock held by a sled instance that is still
/// shutting down; sled releases its file lock only when its background
/// flusher exits, a little after the last handle is dropped.
const LOCK_WAIT: Duration = Duration::from_secs(3);

fn open_sled(options: &SledOptions) -> Result<sled::Db> {
    let config = sled::Config::new()
        .path(&options.path)
        .cache_capacity(options.cache_capacity_bytes);
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        // sled 0.34 panics on some damage to its log ("tried to serialize
        // Uninitialized"); a damaged store is an error naming the way out.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()))
            .map_err(|panic| damaged_store(&options.path, &panic_message(panic.as_ref())))?;
        match opened {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(io)) if is_lock_conflict(&io) => {
                if std::time::Instant::now() >= deadline {
                    return Err(Error::Unavailable(format!(
                        "the data directory {} is locked by another running instance \
                         (waited {} s): {io}",
                        options.path.display(),
                        LOCK_WAIT.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(sled::Error::Corruption { at, .. }) => {
                return Err(damaged_store(
                    &options.path,
                    &format!("it reports corruption at {at:?}"),
                ))
            }
            Err(other) => return Err(Error::from(other)),
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "an unknown panic".to_owned())
}

/// The error for a store sled cannot open.
fn damaged_store(path: &Path, why: &str) -> Error {
    Error::DataLoss(format!(
        "sled cannot open the store in {} ({why}): its files are damaged. Keep the \
         directory for a post-mortem and restore the last backup into an empty one \
         (`support-metrics import`; docs/operations.md, \"When the store is damaged\")",
        path.display()
    ))
}

fn is_lock_conflict(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock")
}

fn entries<'a>(iter: sled::Iter) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a> {
    Box::new(iter.map(|item| {
        item.map(|(k, v)| (k.to_vec(), v.to_vec()))
            .map_err(Error::from)
    }))
}

impl KvStore for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(key)?.map(|v| v.to_vec()))
    }

    fn scan_prefix<'a>(
        &'a self,
        prefix: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a> {
        entries(self.db.scan_prefix(prefix))
    }

    fn range<'a>(
        &'a self,
        start: &[u8],
        end: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a> {
        entries(self.db.range(start.to_vec()..end.to_vec()))
    }

    fn commit(&self, changes: Vec<Change>) -> Result<()> {
        let keys = changes.len() as u64;
        let mut batch = sled::Batch::default();
        for (key, value) in changes {
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
        self.db.apply_batch(batch)?;
        self.keys_written.fetch_add(keys, Ordering::Relaxed);
        if self.durable_acks {
            self.make_durable()?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.make_durable()
    }

    fn size_on_disk(&self) -> Result<u64> {
        Ok(directory_size(&self.path)?)
    }

    fn keys_written(&self) -> u64 {
        self.keys_written.load(Ordering::Relaxed)
    }
}

impl SledStore {
    /// Flushes sled and syncs its files (see the type's documentation).
    fn make_durable(&self) -> Result<()> {
        self.db.flush()?;
        self.durability
            .lock()
            .map_err(|_| Error::Internal("durability lock poisoned".into()))?
            .sync(&self.path)?;
        Ok(())
    }
}

impl Drop for SledStore {
    /// A clean close leaves everything on disk, whatever `durable_acks` was.
    fn drop(&mut self) {
        if let Err(error) = self.make_durable() {
            tracing::error!(%error, "flushing the store on close failed");
        }
    }
}

fn directory_size(path: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        total += if metadata.is_dir() {
            directory_size(&entry.path())?
        } else {
            metadata.len()
        };
    }
    Ok(total)
}
