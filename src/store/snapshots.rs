//! Snapshot files of the derived state: its chunks as compressed blocks, in
//! key order, then an index of the blocks with the first journal sequence
//! they do not cover, closed by a CRC-32 of the index (and the magic).
//!
//! A map loaded from a snapshot holds only the index: each chunk is read
//! from the file when something needs it, and kept in memory once changed
//! (see [`packed`]). The file stays open while a map uses it, even once a
//! newer snapshot replaces it, so a read of an older version never fails
//! for that. A newer snapshot copies the blocks that did not change as they
//! are, without decompressing them.
//!
//! A snapshot is written to a temporary file, synced, renamed over the last
//! one and the directory synced, so that a crash at any moment leaves either
//! the old snapshot or the new one, whole. A file that is truncated, fails
//! a checksum, does not parse or belongs to another store (a file copied
//! from elsewhere) is never loaded: the caller sets it aside and recomputes
//! the state from the raw records. Every block's checksum is checked when
//! the file is loaded, and again whenever the block is read.
//!
//! Layout (integers little-endian):
//!
//! | bytes | what |
//! |---|---|
//! | 8 | the magic `SMSTATE4` |
//! | per chunk | its block: the chunk's entries compressed as one zstd frame (`packed::cold`) |
//! | 16 | the index: the id of the store it belongs to (`keys::store_id`) |
//! | 8 | the first journal sequence not covered |
//! | 8 | number of blocks |
//! | per block | first key's length (u32), first key, offset (u64), compressed length, decompressed length, entries, CRC-32 of the compressed bytes (u32 each) |
//! | 8, 8 | the footer: the index's offset and length |
//! | 4 | CRC-32 of the magic and the index |
//!
//! The blocks follow one another from byte 8 to the index; nothing may
//! follow the footer.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

use super::keys;
use super::kv::KvStore;
use super::packed::{self, Block, ColdFile, LaidOut};
use super::state::Version;

const MAGIC: &[u8; 8] = b"SMSTATE4";
/// Writes go through a buffer of this size.
const BUFFER_BYTES: usize = 1 << 20;
/// The footer: the index's offset and length, and the checksum.
const FOOTER_BYTES: u64 = 20;
/// An index entry's fixed part: the key's length and the block's fields.
const INDEX_ENTRY_BYTES: usize = 4 + 8 + 4 * 4;

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

/// A snapshot written: its size, the file (open, for the map to read its
/// blocks) and where each chunk went ([`packed::PackedMap::adopt`]).
pub struct Written {
    pub size: u64,
    pub file: Arc<ColdFile>,
    pub laid_out: Vec<LaidOut>,
}

/// The index of a snapshot of `version` whose blocks are `laid_out`.
fn index_of(store: &StoreId, version: &Version, laid_out: &[LaidOut]) -> Result<Vec<u8>> {
    let mut index = Vec::with_capacity(32 + laid_out.len() * (INDEX_ENTRY_BYTES + 32));
    index.extend_from_slice(store);
    index.extend_from_slice(&version.next_journal.to_le_bytes());
    index.extend_from_slice(&(laid_out.len() as u64).to_le_bytes());
    for item in laid_out {
        let key_length = u32::try_from(item.first_key.len())
            .map_err(|_| Error::Internal("a derived key is larger than 4 GiB".into()))?;
        index.extend_from_slice(&key_length.to_le_bytes());
        index.extend_from_slice(&item.first_key);
        let block = &item.block;
        index.extend_from_slice(&block.offset.to_le_bytes());
        for field in [block.length, block.raw_length, block.entries, block.crc] {
            index.extend_from_slice(&field.to_le_bytes());
        }
    }
    Ok(index)
}

/// Writes `version` as the snapshot at `path` (see the module's
/// documentation for the steps that make it crash-safe), calling
/// `before_install` once the new file is durable and before it replaces the
/// last one.
pub fn write(
    path: &Path,
    store: &StoreId,
    version: &Version,
    before_install: impl FnOnce() -> Result<()>,
) -> Result<Written> {
    let temporary = temporary(path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)?;
    let mut out = BufWriter::with_capacity(BUFFER_BYTES, file);
    out.write_all(MAGIC)?;
    let laid_out = version
        .map
        .write_blocks(MAGIC.len() as u64, &mut |bytes| Ok(out.write_all(bytes)?))?;
    let index_offset = laid_out.last().map_or(MAGIC.len() as u64, |item| {
        item.block.offset + u64::from(item.block.length)
    });
    let index = index_of(store, version, &laid_out)?;
    out.write_all(&index)?;
    out.write_all(&index_offset.to_le_bytes())?;
    out.write_all(&(index.len() as u64).to_le_bytes())?;
    let mut checksum = crc32fast::Hasher::new();
    checksum.update(MAGIC);
    checksum.update(&index);
    out.write_all(&checksum.finalize().to_le_bytes())?;
    let file = out.into_inner().map_err(|e| Error::from(e.into_error()))?;
    file.sync_all()?;
    let size = file.metadata()?.len();
    before_install()?;
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(Written {
        size,
        file: ColdFile::new(file, path, packed::DEFAULT_CACHE_BYTES),
        laid_out,
    })
}

fn damaged(path: &Path, why: &str) -> Error {
    Error::DataLoss(format!("the snapshot {} {why}", path.display()))
}

/// Reads an index front to back.
struct IndexReader<'a> {
    bytes: &'a [u8],
}

impl<'a> IndexReader<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < count {
            return None;
        }
        let (taken, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Some(taken)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// The parts of a loaded index.
struct Index {
    next_journal: u64,
    blocks: Vec<(Arc<[u8]>, Block)>,
}

/// Parses an index whose checksum matched; the blocks must follow one
/// another from just after the magic up to `index_offset`.
fn parse_index(path: &Path, store: &StoreId, bytes: &[u8], index_offset: u64) -> Result<Index> {
    let does_not_parse = || damaged(path, "has an index that does not parse");
    let mut reader = IndexReader { bytes };
    if reader.take(16).ok_or_else(does_not_parse)? != store {
        return Err(damaged(
            path,
            "belongs to another store (its store id is not this store's): copied from elsewhere?",
        ));
    }
    let next_journal = reader.u64().ok_or_else(does_not_parse)?;
    let count = reader.u64().ok_or_else(does_not_parse)?;
    let mut blocks: Vec<(Arc<[u8]>, Block)> = Vec::new();
    let mut at = MAGIC.len() as u64;
    for _ in 0..count {
        let key_length = reader.u32().ok_or_else(does_not_parse)? as usize;
        let key = reader.take(key_length).ok_or_else(does_not_parse)?;
        let offset = reader.u64().ok_or_else(does_not_parse)?;
        let mut fields = [0; 4];
        for field in &mut fields {
            *field = reader.u32().ok_or_else(does_not_parse)?;
        }
        let [length, raw_length, entries, crc] = fields;
        if offset != at || entries == 0 {
            return Err(does_not_parse());
        }
        if blocks
            .last()
            .is_some_and(|(previous, _)| &previous[..] >= key)
        {
            return Err(damaged(path, "holds keys out of order"));
        }
        if !super::state::is_derived(key) {
            return Err(damaged(path, "holds a key that is not derived state"));
        }
        at += u64::from(length);
        let block = Block {
            offset,
            length,
            raw_length,
            entries,
            crc,
        };
        blocks.push((Arc::from(key), block));
    }
    if at != index_offset || !reader.bytes.is_empty() {
        return Err(does_not_parse());
    }
    Ok(Index {
        next_journal,
        blocks,
    })
}

/// Reads every block front to back and checks its checksum.
fn check_blocks(path: &Path, file: &File, blocks: &[(Arc<[u8]>, Block)]) -> Result<()> {
    let mut reader = BufReader::with_capacity(BUFFER_BYTES, file);
    reader.seek(SeekFrom::Start(MAGIC.len() as u64))?;
    let mut bytes = Vec::new();
    for (_, block) in blocks {
        bytes.resize(block.length as usize, 0);
        reader.read_exact(&mut bytes)?;
        if !block.holds(&bytes) {
            return Err(damaged(
                path,
                &format!("fails the checksum of the block at byte {}", block.offset),
            ));
        }
    }
    Ok(())
}

/// The snapshot at `path` of the store `store`: `None` if there is none,
/// data loss naming the file if it is damaged or another store's. Reads the
/// index into memory and checks every block; the blocks themselves are read
/// again when the map needs them.
pub fn load(path: &Path, store: &StoreId) -> Result<Option<Version>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let truncated = || damaged(path, "is truncated or does not parse");
    let size = file.metadata()?.len();
    if size < MAGIC.len() as u64 + FOOTER_BYTES {
        return Err(truncated());
    }
    let mut magic = [0; 8];
    file.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(damaged(
            path,
            "is not a snapshot of this format (one written by an older version is recomputed once)",
        ));
    }
    let mut footer = [0; FOOTER_BYTES as usize];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut footer, size - FOOTER_BYTES)?;
    let index_offset = u64::from_le_bytes(footer[..8].try_into().unwrap_or_default());
    let index_length = u64::from_le_bytes(footer[8..16].try_into().unwrap_or_default());
    let stored_checksum = u32::from_le_bytes(footer[16..].try_into().unwrap_or_default());
    let index_ends = index_offset.checked_add(index_length);
    if index_offset < MAGIC.len() as u64 || index_ends != Some(size - FOOTER_BYTES) {
        return Err(truncated());
    }
    let mut index = vec![0; index_length as usize];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut index, index_offset)?;
    let mut checksum = crc32fast::Hasher::new();
    checksum.update(MAGIC);
    checksum.update(&index);
    if checksum.finalize() != stored_checksum {
        return Err(damaged(path, "fails its checksum"));
    }
    let index = parse_index(path, store, &index, index_offset)?;
    check_blocks(path, &file, &index.blocks)?;
    let file = ColdFile::new(file, path, packed::DEFAULT_CACHE_BYTES);
    Ok(Some(Version {
        map: packed::PackedMap::of_blocks(&file, index.blocks),
        next_journal: index.next_journal,
    }))
}

/// Where the index of the snapshot file `bytes` begins, by its footer
/// (tests that damage a file where they mean to).
#[cfg(test)]
pub(super) fn index_offset(bytes: &[u8]) -> usize {
    let footer = bytes.len() - FOOTER_BYTES as usize;
    u64::from_le_bytes(bytes[footer..footer + 8].try_into().unwrap()) as usize
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

    /// Entries enough for several chunks.
    fn many_entries() -> Vec<(Vec<u8>, Vec<u8>)> {
        (0u32..2_000)
            .map(|i| {
                let key = [&b"Ad"[..], &i.to_be_bytes()].concat();
                (
                    key,
                    format!("value {i}").repeat(1 + i as usize % 7).into_bytes(),
                )
            })
            .collect()
    }

    fn version_of(entries: &[(Vec<u8>, Vec<u8>)], next_journal: u64) -> Version {
        let borrowed: Vec<(&[u8], &[u8])> = entries.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        version(&borrowed, next_journal)
    }

    #[test]
    fn a_snapshot_reads_back_as_written_and_again_from_its_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        assert!(load(&path, &STORE).unwrap().is_none());
        let written = version_of(&many_entries(), 42);
        let snapshot = write(&path, &STORE, &written, || Ok(())).unwrap();
        assert_eq!(snapshot.size, std::fs::metadata(&path).unwrap().len());
        assert!(snapshot.laid_out.len() > 5, "{:?}", snapshot.laid_out.len());
        assert!(!temporary(&path).exists());
        let read = load(&path, &STORE).unwrap().unwrap();
        assert_eq!(read.next_journal, 42);
        assert_eq!(read.map.chunk_counts().1, 0, "nothing read at load");
        assert_eq!(read.map, written.map);
        // A snapshot of a map read from a snapshot copies its blocks, and
        // one of a changed map holds the change.
        let mut changed = read.clone();
        changed
            .map
            .apply([(b"Ad\x00\x00\x00\x07".to_vec(), Some(b"new".to_vec()))])
            .unwrap();
        write(&path, &STORE, &changed, || Ok(())).unwrap();
        let reread = load(&path, &STORE).unwrap().unwrap();
        assert_eq!(reread.map, changed.map);
        assert_ne!(reread.map, written.map);
        // The map loaded first still reads the file it was loaded from.
        assert_eq!(read.map, written.map);
    }

    /// Every byte of the file is under a checksum or checked against the
    /// file's size: a flipped byte and a cut are refused, at load.
    #[test]
    fn every_flipped_or_cut_byte_is_refused_as_data_loss() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let written = version(&[(b"Aa", b"x"), (b"Xb", b"yz")], 3);
        write(&path, &STORE, &written, || Ok(())).unwrap();
        let good = std::fs::read(&path).unwrap();
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x04;
            std::fs::write(&path, &bad).unwrap();
            assert!(
                matches!(load(&path, &STORE), Err(Error::DataLoss(_))),
                "flipped byte {at}"
            );
            std::fs::write(&path, &good[..at]).unwrap();
            assert!(
                matches!(load(&path, &STORE), Err(Error::DataLoss(_))),
                "cut at {at}"
            );
        }
        let mut longer = good.clone();
        longer.push(0);
        std::fs::write(&path, &longer).unwrap();
        assert!(matches!(load(&path, &STORE), Err(Error::DataLoss(_))));
        std::fs::write(&path, &good).unwrap();
        assert_eq!(load(&path, &STORE).unwrap().unwrap().map, written.map);
    }

    /// A block damaged after the file was loaded is data loss, naming the
    /// file, when it is read; never served.
    #[test]
    fn a_block_damaged_after_load_is_data_loss_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let entries = many_entries();
        write(&path, &STORE, &version_of(&entries, 1), || Ok(())).unwrap();
        let loaded = load(&path, &STORE).unwrap().unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[MAGIC.len() + 3] ^= 0x10;
        // Written in place: the loaded map's open file sees it.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
        let message = loaded.map.get(&entries[0].0).unwrap_err().to_string();
        assert!(message.contains("checksum"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        // Chunks elsewhere still read.
        let last = entries.last().unwrap();
        assert_eq!(loaded.map.get(&last.0).unwrap(), Some(last.1.clone()));
    }

    #[test]
    fn an_older_format_and_another_stores_snapshot_are_refused_naming_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        write(&path, &STORE, &version(&[(b"Aa", b"x")], 1), || Ok(())).unwrap();
        let message = load(&path, b"another store id").unwrap_err().to_string();
        assert!(message.contains("another store"), "{message}");
        assert!(load(&path, &STORE).unwrap().is_some());
        let mut older = std::fs::read(&path).unwrap();
        older[..8].copy_from_slice(b"SMSTATE3");
        std::fs::write(&path, older).unwrap();
        let message = load(&path, &STORE).unwrap_err().to_string();
        assert!(
            message.contains("not a snapshot of this format"),
            "{message}"
        );
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

    /// The file with its index changed by `change` and its checksum made to
    /// match again.
    fn with_index_changed(file: &[u8], change: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let footer = file.len() - FOOTER_BYTES as usize;
        let index_offset = index_offset(file);
        let mut bytes = file.to_vec();
        change(&mut bytes[index_offset..footer]);
        let mut checksum = crc32fast::Hasher::new();
        checksum.update(MAGIC);
        checksum.update(&bytes[index_offset..footer]);
        bytes[footer + 16..].copy_from_slice(&checksum.finalize().to_le_bytes());
        bytes
    }

    #[test]
    fn a_well_checksummed_index_out_of_order_or_with_a_gap_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let entries = many_entries();
        write(&path, &STORE, &version_of(&entries, 1), || Ok(())).unwrap();
        let good = std::fs::read(&path).unwrap();
        // The first block's first key is "Ad" 0 0 0 0, 6 bytes after the
        // index's 32-byte head and its length; make it sort after the second's.
        let out_of_order = with_index_changed(&good, |index| index[32 + 4 + 2] = 0xff);
        std::fs::write(&path, out_of_order).unwrap();
        let message = load(&path, &STORE).unwrap_err().to_string();
        assert!(message.contains("out of order"), "{message}");
        // The first block's offset moved by one: the blocks no longer tile.
        let gap = with_index_changed(&good, |index| index[32 + 4 + 6] ^= 1);
        std::fs::write(&path, gap).unwrap();
        let message = load(&path, &STORE).unwrap_err().to_string();
        assert!(message.contains("does not parse"), "{message}");
        std::fs::write(&path, &good).unwrap();
        assert!(load(&path, &STORE).unwrap().is_some());
    }

    #[test]
    fn a_long_value_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let long: Vec<u8> = (0..(3 << 20) + 7).map(|at| (at % 251) as u8).collect();
        let written = version(&[(b"Ad1", &long), (b"Xo1", b"c")], 5);
        write(&path, &STORE, &written, || Ok(())).unwrap();
        let read = load(&path, &STORE).unwrap().unwrap();
        assert_eq!(read.map.get(b"Ad1").unwrap(), Some(long));
        assert_eq!(read.map, written.map);
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
