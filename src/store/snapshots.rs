//! Snapshot files of the derived state: every derived key and value, in key
//! order, with the first journal sequence they do not cover, closed by a
//! CRC-32 of everything before it, all but the magic compressed as one zstd
//! frame (level 1, zstd's fastest that still about halves it; figures in
//! docs/benchmarks.md).
//!
//! A snapshot is written to a temporary file, synced, renamed over the last
//! one and the directory synced, so that a crash at any moment leaves either
//! the old snapshot or the new one, whole. A file that is truncated, fails
//! its checksum, does not parse or belongs to another store (a file copied
//! from elsewhere) is never loaded: the caller sets it aside and recomputes
//! the state from the raw records.
//!
//! Layout (integers little-endian), after the magic `SMSTATE3` as the
//! decompressed frame reads:
//!
//! | bytes | what |
//! |---|---|
//! | 16 | the id of the store it belongs to (`keys::store_id`) |
//! | 8 | the first journal sequence not covered |
//! | 8 | number of entries |
//! | per entry | key length (u32), key, value length (u32), value |
//! | 4 | CRC-32 of every byte before it, the magic included |
//!
//! Nothing may follow the frame.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

use super::keys;
use super::kv::KvStore;
use super::packed;
use super::state::Version;

const MAGIC: &[u8; 8] = b"SMSTATE3";
/// zstd's fastest level short of its negative ones: a snapshot is written
/// on a background thread while the service runs.
const COMPRESSION_LEVEL: i32 = 1;
/// Reads and writes pass through buffers of this size on each side of the
/// compression, which is slow to call for a few bytes at a time.
const BUFFER_BYTES: usize = 1 << 20;
/// Byte strings up to this long are read into a buffer sized at once; a
/// longer one grows as it is read, so that a damaged length cannot make a
/// load allocate more than the file holds.
const SIZED_AT_ONCE: u64 = 1 << 20;

/// The id of a store, which its snapshots carry.
pub type StoreId = [u8; 16];
/// The file's name in the data directory.
const FILE_NAME: &str = "derived-state.snapshot";

/// Where the snapshot of the store in `dir` lives.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

fn temporary(path: &Path) -> PathBuf {
    path.with_extension("snapshot.tmp")
}

/// A writer that keeps the checksum of what passes through it.
struct Checksummed<W> {
    inner: W,
    hasher: crc32fast::Hasher,
}

impl<W: Write> Checksummed<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hasher.update(bytes);
        self.inner.write_all(bytes)
    }
}

fn length(bytes: &[u8]) -> Result<[u8; 4]> {
    u32::try_from(bytes.len())
        .map(u32::to_le_bytes)
        .map_err(|_| Error::Internal("a derived value is larger than 4 GiB".into()))
}

/// The store's id, made (16 bytes from the standard library's randomly
/// keyed hasher, and the clock) and written if it has none yet: a new
/// store, or one from before format 12. A snapshot written with it is only
/// installed once the engine is flushed, so the id is durable first.
pub fn store_id(engine: &dyn KvStore) -> Result<StoreId> {
    use std::hash::{BuildHasher, Hasher};
    let key = keys::store_id();
    if let Some(stored) = engine.get(&key)? {
        return StoreId::try_from(stored.as_slice()).map_err(|_| {
            Error::DataLoss(format!(
                "the store id {} is {} bytes, not 16",
                keys::describe_key(&key),
                stored.len()
            ))
        });
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let mut id = StoreId::default();
    for (half, salt) in id.chunks_mut(8).zip([now, now.rotate_left(64)]) {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(salt);
        half.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    engine.commit(vec![(key, Some(id.to_vec()))])?;
    Ok(id)
}

/// Writes `version` as the snapshot at `path` (see the module's
/// documentation for the steps that make it crash-safe), calling
/// `before_install` once the new file is durable and before it replaces the
/// last one. Returns the size of the file (compressed).
pub fn write(
    path: &Path,
    store: &StoreId,
    version: &Version,
    before_install: impl FnOnce() -> Result<()>,
) -> Result<u64> {
    let temporary = temporary(path);
    let mut file = BufWriter::with_capacity(BUFFER_BYTES, File::create(&temporary)?);
    file.write_all(MAGIC)?;
    let compressed = zstd::Encoder::new(file, COMPRESSION_LEVEL)?;
    let mut out = Checksummed {
        inner: BufWriter::with_capacity(BUFFER_BYTES, compressed),
        hasher: crc32fast::Hasher::new(),
    };
    out.hasher.update(MAGIC);
    out.put(store)?;
    out.put(&version.next_journal.to_le_bytes())?;
    out.put(&(version.map.len() as u64).to_le_bytes())?;
    for (key, value) in version.map.iter() {
        out.put(&length(key)?)?;
        out.put(key)?;
        out.put(&length(value)?)?;
        out.put(value)?;
    }
    let checksum = out.hasher.clone().finalize().to_le_bytes();
    out.inner.write_all(&checksum)?;
    let compressed = out
        .inner
        .into_inner()
        .map_err(|e| Error::from(e.into_error()))?;
    let file = compressed
        .finish()?
        .into_inner()
        .map_err(|e| Error::from(e.into_error()))?;
    file.sync_all()?;
    let size = file.metadata()?.len();
    drop(file);
    before_install()?;
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(size)
}

fn damaged(path: &Path, why: &str) -> Error {
    Error::DataLoss(format!("the snapshot {} {why}", path.display()))
}

/// Reads a snapshot file front to back, keeping the checksum of what it read.
struct Reader<R> {
    inner: R,
    hasher: crc32fast::Hasher,
}

impl<R: Read> Reader<R> {
    /// Fills `buffer` from the file; `false` if the file ends first.
    fn fill(&mut self, buffer: &mut [u8]) -> std::io::Result<bool> {
        match self.inner.read_exact(buffer) {
            Ok(()) => {
                self.hasher.update(buffer);
                Ok(true)
            }
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(error) => Err(error),
        }
    }

    fn u64(&mut self) -> std::io::Result<Option<u64>> {
        let mut bytes = [0; 8];
        Ok(self.fill(&mut bytes)?.then(|| u64::from_le_bytes(bytes)))
    }

    /// Reads a length-prefixed byte string into `bytes`; `false` if the
    /// file ends first.
    fn sized(&mut self, bytes: &mut Vec<u8>) -> std::io::Result<bool> {
        let mut length = [0; 4];
        if !self.fill(&mut length)? {
            return Ok(false);
        }
        let length = u64::from(u32::from_le_bytes(length));
        if length <= SIZED_AT_ONCE {
            bytes.resize(length as usize, 0);
            return self.fill(bytes);
        }
        bytes.clear();
        let read = (&mut self.inner).take(length).read_to_end(bytes)?;
        self.hasher.update(bytes);
        Ok(read as u64 == length)
    }
}

/// The snapshot at `path` of the store `store`: `None` if there is none,
/// data loss naming the file if it is damaged or another store's. Read in
/// one pass, entry by entry, so that loading takes little more memory than
/// the state itself.
pub fn load(path: &Path, store: &StoreId) -> Result<Option<Version>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let mut file = BufReader::with_capacity(BUFFER_BYTES, file);
    let mut magic = [0; 8];
    match file.read_exact(&mut magic) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(damaged(path, "is truncated or does not parse"));
        }
        Err(error) => return Err(error.into()),
    }
    if &magic != MAGIC {
        return Err(damaged(path, "is not a snapshot of this format"));
    }
    // Past the magic, a read that fails is a frame that does not
    // decompress: damage, like a checksum that fails.
    let decompressed = zstd::Decoder::with_buffer(file)
        .map_err(|error| damaged(path, &format!("does not decompress: {error}")))?
        .single_frame();
    let mut reader = Reader {
        inner: BufReader::with_capacity(BUFFER_BYTES, decompressed),
        hasher: crc32fast::Hasher::new(),
    };
    reader.hasher.update(MAGIC);
    match read_frame(path, store, &mut reader) {
        Err(Error::Internal(error)) => {
            Err(damaged(path, &format!("does not decompress ({error})")))
        }
        result => result.map(Some),
    }
}

/// The derived state in a snapshot's frame, the magic read (see [`load`]).
fn read_frame<R: std::io::BufRead>(
    path: &Path,
    store: &StoreId,
    reader: &mut Reader<BufReader<zstd::Decoder<'static, R>>>,
) -> Result<Version> {
    let truncated = || damaged(path, "is truncated or does not parse");
    let mut belongs_to = StoreId::default();
    if !reader.fill(&mut belongs_to)? {
        return Err(truncated());
    }
    if &belongs_to != store {
        return Err(damaged(
            path,
            "belongs to another store (its store id is not this store's): copied from elsewhere?",
        ));
    }
    let next_journal = reader.u64()?.ok_or_else(truncated)?;
    let count = reader.u64()?.ok_or_else(truncated)?;
    let mut map = packed::Builder::default();
    let (mut key, mut previous, mut value) = (Vec::new(), Vec::new(), Vec::new());
    for at in 0..count {
        if !reader.sized(&mut key)? || !reader.sized(&mut value)? {
            return Err(truncated());
        }
        if at > 0 && previous >= key {
            return Err(damaged(path, "holds keys out of order"));
        }
        if !super::state::is_derived(&key) {
            return Err(damaged(path, "holds a key that is not derived state"));
        }
        map.push(&key, &value);
        std::mem::swap(&mut previous, &mut key);
    }
    let map = map.finish();
    let computed = reader.hasher.clone().finalize().to_le_bytes();
    let mut stored = [0; 4];
    if reader.inner.read_exact(&mut stored).is_err() {
        return Err(truncated());
    }
    if stored != computed {
        return Err(damaged(path, "fails its checksum"));
    }
    let mut rest = [0; 1];
    if reader.inner.read(&mut rest)? != 0 {
        return Err(damaged(path, "has bytes after its checksum"));
    }
    let file = reader.inner.get_mut().get_mut();
    if file.read(&mut rest)? != 0 {
        return Err(damaged(path, "has bytes after its compressed frame"));
    }
    Ok(Version { map, next_journal })
}

/// Removes what a snapshot write cut short by a crash left behind; the last
/// whole snapshot is untouched.
pub fn remove_unfinished(path: &Path) -> Result<()> {
    let temporary = temporary(path);
    match std::fs::remove_file(&temporary) {
        Ok(()) => {
            tracing::info!(path = %temporary.display(), "removed an unfinished snapshot");
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Removes the snapshot at `path` for good (a store upgrade whose derived
/// values it cannot read), syncing its directory so that the removal is
/// durable before the caller goes on.
pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error.into()),
    }
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Moves a damaged snapshot out of the way (kept for a post-mortem) and
/// returns where it went.
pub fn set_aside(path: &Path) -> PathBuf {
    let aside = path.with_extension("snapshot.damaged");
    if let Err(error) = std::fs::rename(path, &aside) {
        tracing::error!(%error, path = %path.display(), "could not move the damaged snapshot aside");
    }
    aside
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: StoreId = *b"sixteen bytes id";

    fn version(entries: &[(&[u8], &[u8])], next_journal: u64) -> Version {
        Version {
            map: packed::PackedMap::from_sorted(entries.iter().copied()),
            next_journal,
        }
    }

    #[test]
    fn a_snapshot_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        assert!(load(&path, &STORE).unwrap().is_none());
        let written = version(
            &[(b"Aday", b"one"), (b"Gtticket", b""), (b"Xr7", b"row")],
            42,
        );
        let size = write(&path, &STORE, &written, || Ok(())).unwrap();
        assert_eq!(size, std::fs::metadata(&path).unwrap().len());
        let read = load(&path, &STORE).unwrap().unwrap();
        assert_eq!(read.next_journal, 42);
        assert_eq!(read.map, written.map);
        assert!(!temporary(&path).exists());
    }

    /// A flipped byte is refused, or (where zstd's frame header holds a
    /// field the decoding does not need, such as its window size) loads the
    /// very state written: the checksum covers every decompressed byte. A
    /// cut is always refused.
    #[test]
    fn every_flipped_or_cut_byte_is_refused_as_data_loss_or_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let written = version(&[(b"Aa", b"x"), (b"Xb", b"yz")], 3);
        write(&path, &STORE, &written, || Ok(())).unwrap();
        let good = std::fs::read(&path).unwrap();
        let mut refused = 0;
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x04;
            std::fs::write(&path, &bad).unwrap();
            match load(&path, &STORE) {
                Err(Error::DataLoss(_)) => refused += 1,
                Ok(Some(loaded)) => {
                    assert_eq!(loaded.map, written.map, "flipped byte {at}");
                    assert_eq!(loaded.next_journal, 3, "flipped byte {at}");
                }
                other => panic!("flipped byte {at}: {other:?}"),
            }
            std::fs::write(&path, &good[..at]).unwrap();
            assert!(
                matches!(load(&path, &STORE), Err(Error::DataLoss(_))),
                "cut at {at}"
            );
        }
        assert!(refused + 2 >= good.len(), "{refused} of {}", good.len());
        let mut longer = good.clone();
        longer.push(0);
        std::fs::write(&path, &longer).unwrap();
        let message = load(&path, &STORE).unwrap_err().to_string();
        assert!(message.contains("after its compressed frame"), "{message}");
    }

    #[test]
    fn another_stores_snapshot_is_refused_naming_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        write(&path, &STORE, &version(&[(b"Aa", b"x")], 1), || Ok(())).unwrap();
        let message = load(&path, b"another store id").unwrap_err().to_string();
        assert!(message.contains("another store"), "{message}");
        assert!(load(&path, &STORE).unwrap().is_some());
    }

    #[test]
    fn a_well_checksummed_file_of_raw_keys_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        write(
            &path,
            &STORE,
            &version(&[(b"Ri1", b"record")], 1),
            || Ok(()),
        )
        .unwrap();
        let message = load(&path, &STORE).unwrap_err().to_string();
        assert!(message.contains("not derived"), "{message}");
    }

    /// The magic and the header of a snapshot of `count` entries, in the
    /// layout above, before compression.
    fn header(count: u64) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&STORE);
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&count.to_le_bytes());
        bytes
    }

    /// The file of `bytes` (magic first), all but the magic compressed.
    fn framed(bytes: &[u8]) -> Vec<u8> {
        let frame = zstd::encode_all(&bytes[MAGIC.len()..], 1).unwrap();
        [&MAGIC[..], &frame].concat()
    }

    /// A snapshot file of `entries` as given, in the layout above, with a
    /// checksum that matches.
    fn file_of(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut bytes = header(entries.len() as u64);
        for (key, value) in entries {
            for part in [key, value] {
                bytes.extend_from_slice(&(part.len() as u32).to_le_bytes());
                bytes.extend_from_slice(part);
            }
        }
        let checksum = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&checksum.to_le_bytes());
        framed(&bytes)
    }

    #[test]
    fn a_well_checksummed_file_with_keys_out_of_order_or_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let in_order: &[(&[u8], &[u8])] = &[(b"Ad1", b"a"), (b"Ad2", b"b"), (b"Xo1", b"c")];
        std::fs::write(&path, file_of(in_order)).unwrap();
        let loaded = load(&path, &STORE).unwrap().expect("a snapshot");
        assert_eq!(
            loaded.map,
            packed::PackedMap::from_sorted(in_order.iter().copied())
        );
        for entries in [
            [(b"Ad2", b"b"), (b"Ad1", b"a"), (b"Xo1", b"c")],
            [(b"Ad1", b"a"), (b"Ad1", b"b"), (b"Xo1", b"c")],
        ] {
            let entries = entries.map(|(key, value)| (&key[..], &value[..]));
            std::fs::write(&path, file_of(&entries)).unwrap();
            let message = load(&path, &STORE).unwrap_err().to_string();
            assert!(message.contains("out of order"), "{message}");
        }
    }

    /// A value longer than one read at once reads back whole; a length
    /// that runs past the end of the file is truncation, whatever it claims.
    #[test]
    fn a_long_value_reads_back_and_a_length_past_the_end_is_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let long: Vec<u8> = (0..3 * SIZED_AT_ONCE + 7)
            .map(|at| (at % 251) as u8)
            .collect();
        let written = version(&[(b"Ad1", &long), (b"Xo1", b"c")], 5);
        write(&path, &STORE, &written, || Ok(())).unwrap();
        assert_eq!(load(&path, &STORE).unwrap().unwrap().map, written.map);
        let mut bytes = header(1);
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(b"Ad1");
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(b"a few bytes, not 4 GiB");
        std::fs::write(&path, framed(&bytes)).unwrap();
        let message = load(&path, &STORE).unwrap_err().to_string();
        assert!(message.contains("truncated"), "{message}");
    }

    #[test]
    fn a_write_that_fails_before_install_leaves_the_last_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        write(&path, &STORE, &version(&[(b"Aold", b"1")], 1), || Ok(())).unwrap();
        let failed = write(&path, &STORE, &version(&[(b"Anew", b"2")], 2), || {
            Err(Error::Internal("the engine could not flush".into()))
        });
        assert!(failed.is_err());
        let kept = load(&path, &STORE).unwrap().unwrap();
        assert_eq!(kept.next_journal, 1);
        remove_unfinished(&path).unwrap();
        assert!(!temporary(&path).exists());
        assert_eq!(load(&path, &STORE).unwrap().unwrap().next_journal, 1);
    }

    #[test]
    fn a_damaged_snapshot_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        std::fs::write(&path, b"garbage").unwrap();
        let aside = set_aside(&path);
        assert!(!path.exists());
        assert_eq!(std::fs::read(aside).unwrap(), b"garbage");
    }
}
