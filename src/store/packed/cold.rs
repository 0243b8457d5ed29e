//! Chunks that stay in a snapshot file until something reads them: the map
//! loaded from a snapshot holds only each chunk's first key and where its
//! block lies, so that memory holds what is read and changed, not the whole
//! derived state.
//!
//! A block is a chunk's entries (see [`encode`]) compressed as one zstd
//! frame, with a CRC-32 of its compressed bytes kept in the file's index. A
//! block is checked every time it is read from the file, so a byte damaged
//! after the snapshot was opened is reported as data loss, naming the file,
//! never served. Blocks read are kept decompressed in a bounded cache per
//! file ([`ChunkCache`]).
//!
//! The map's side of it lives here too: a map of a file's blocks
//! ([`PackedMap::of_blocks`]), writing a map's chunks as blocks
//! ([`PackedMap::write_blocks`]), and taking back as blocks the chunks a
//! written snapshot holds unchanged ([`PackedMap::adopt`]).

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Error, Result};

use super::{Chunk, PackedMap, Slot};

/// zstd's fastest level short of its negative ones: blocks are compressed
/// on the snapshot thread while the service runs.
const COMPRESSION_LEVEL: i32 = 1;

/// Decompressed chunks kept per file, in bytes. The hot chunks of reads and
/// writes (recent hours, a team's months) fit many times over; at 1M
/// interactions the whole state is ~600 MB (docs/benchmarks.md).
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// Where a chunk's block lies in its file, and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub offset: u64,
    /// Compressed length.
    pub length: u32,
    /// The length of the encoded chunk, decompressed.
    pub raw_length: u32,
    pub entries: u32,
    /// CRC-32 of the compressed bytes.
    pub crc: u32,
}

impl Block {
    /// Whether `compressed` is the block's bytes, by its CRC-32.
    pub fn holds(&self, compressed: &[u8]) -> bool {
        crc32fast::hash(compressed) == self.crc
    }
}

/// The longest chunk a block may decompress to. A chunk is cut at 8 KiB
/// unless one entry is larger; no derived value comes near this.
const MAX_RAW_LENGTH: u32 = 256 << 20;

/// A chunk's entries as a block holds them, before compression: the number
/// of entries (u32), each entry's (end of key, end of value) (u32 each), then
/// the keys and values packed as in memory. Integers little-endian.
pub(super) fn encode(chunk: &Chunk) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + chunk.ends.len() * 8 + chunk.bytes.len());
    out.extend_from_slice(&(chunk.ends.len() as u32).to_le_bytes());
    for (key_end, value_end) in chunk.ends.iter() {
        out.extend_from_slice(&key_end.to_le_bytes());
        out.extend_from_slice(&value_end.to_le_bytes());
    }
    out.extend_from_slice(&chunk.bytes);
    out
}

/// The chunk `bytes` encodes, if they are a well-formed encoding: ends in
/// order and within the bytes, keys strictly increasing.
pub(super) fn decode(bytes: &[u8]) -> Option<Chunk> {
    let count = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let ends_bytes = bytes.get(4..4 + count.checked_mul(8)?)?;
    let packed = &bytes[4 + count * 8..];
    let mut ends = Vec::with_capacity(count);
    let mut at = 0;
    for pair in ends_bytes.chunks_exact(8) {
        let key_end = u32::from_le_bytes(pair[..4].try_into().ok()?);
        let value_end = u32::from_le_bytes(pair[4..].try_into().ok()?);
        if key_end < at || value_end < key_end {
            return None;
        }
        at = value_end;
        ends.push((key_end, value_end));
    }
    if at as usize != packed.len() {
        return None;
    }
    let chunk = Chunk {
        bytes: packed.into(),
        ends: ends.into_boxed_slice(),
    };
    let ordered = (1..chunk.len()).all(|index| chunk.key(index - 1) < chunk.key(index));
    ordered.then_some(chunk)
}

/// The block of `chunk`: its compressed bytes, and the block's description
/// with `offset` left at zero.
pub(super) fn compress(chunk: &Chunk) -> Result<(Vec<u8>, Block)> {
    let raw = encode(chunk);
    let compressed = zstd::bulk::compress(&raw, COMPRESSION_LEVEL)?;
    let too_long = |_| Error::Internal("a derived-state chunk is larger than 4 GiB".into());
    let block = Block {
        offset: 0,
        length: u32::try_from(compressed.len()).map_err(too_long)?,
        raw_length: u32::try_from(raw.len()).map_err(too_long)?,
        entries: chunk.len() as u32,
        crc: crc32fast::hash(&compressed),
    };
    Ok((compressed, block))
}

/// Decompressed chunks by block offset, in two generations: a read finds a
/// chunk in either and keeps it in the young one; once the young one holds
/// half the capacity, the old one is dropped and the young one becomes old.
/// So the cache never holds more than its capacity (plus the chunk that
/// tipped it), and what is read again and again stays.
#[derive(Default)]
struct ChunkCache {
    young: HashMap<u64, Arc<Chunk>>,
    old: HashMap<u64, Arc<Chunk>>,
    young_bytes: usize,
    capacity: usize,
}

impl ChunkCache {
    fn get(&mut self, offset: u64) -> Option<Arc<Chunk>> {
        if let Some(chunk) = self.young.get(&offset) {
            return Some(Arc::clone(chunk));
        }
        let chunk = self.old.remove(&offset)?;
        self.put(offset, Arc::clone(&chunk));
        Some(chunk)
    }

    fn put(&mut self, offset: u64, chunk: Arc<Chunk>) {
        let bytes = chunk.memory();
        if self.young.insert(offset, chunk).is_none() {
            self.young_bytes += bytes;
        }
        if self.young_bytes > self.capacity / 2 {
            self.old = std::mem::take(&mut self.young);
            self.young_bytes = 0;
        }
    }
}

/// A snapshot file whose blocks a map reads.
pub struct ColdFile {
    file: File,
    path: PathBuf,
    cache: Mutex<ChunkCache>,
}

impl std::fmt::Debug for ColdFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ColdFile {
    /// `file` open for reading; `path` names it in errors.
    pub fn new(file: File, path: &Path, cache_bytes: usize) -> Arc<ColdFile> {
        Arc::new(ColdFile {
            file,
            path: path.to_owned(),
            cache: Mutex::new(ChunkCache {
                capacity: cache_bytes,
                ..ChunkCache::default()
            }),
        })
    }

    fn damaged(&self, block: &Block, why: &str) -> Error {
        let path = self.path.display();
        tracing::error!(path = %path, offset = block.offset, why, "a snapshot block is damaged");
        Error::DataLoss(format!(
            "the snapshot {path} {why} (the block at byte {}); restart the service to \
             recompute the derived state from the raw records",
            block.offset
        ))
    }

    /// The block's compressed bytes, checked against its CRC.
    pub fn raw(&self, block: &Block) -> Result<Vec<u8>> {
        let mut bytes = vec![0; block.length as usize];
        self.file
            .read_exact_at(&mut bytes, block.offset)
            .map_err(|error| self.damaged(block, &format!("cannot be read: {error}")))?;
        if !block.holds(&bytes) {
            return Err(self.damaged(block, "fails a block's checksum"));
        }
        Ok(bytes)
    }

    /// The chunk in `block`, from the cache or the file; `keep` puts one read
    /// from the file in the cache (a scan of everything does not).
    pub(super) fn chunk(&self, block: &Block, keep: bool) -> Result<Arc<Chunk>> {
        if let Some(chunk) = self.lock().get(block.offset) {
            return Ok(chunk);
        }
        let compressed = self.raw(block)?;
        if block.raw_length > MAX_RAW_LENGTH {
            return Err(self.damaged(block, "names a block longer than any chunk"));
        }
        let raw = zstd::bulk::decompress(&compressed, block.raw_length as usize)
            .map_err(|error| self.damaged(block, &format!("does not decompress: {error}")))?;
        let chunk = decode(&raw)
            .filter(|_| raw.len() == block.raw_length as usize)
            .filter(|chunk| chunk.len() == block.entries as usize && chunk.len() > 0)
            .ok_or_else(|| self.damaged(block, "holds a block that does not parse"))?;
        let chunk = Arc::new(chunk);
        if keep {
            self.lock().put(block.offset, Arc::clone(&chunk));
        }
        Ok(chunk)
    }

    /// Keeps `chunk`, which `block` holds, in the cache: a chunk just
    /// written need not be read back.
    pub(super) fn seed(&self, block: &Block, chunk: Arc<Chunk>) {
        self.lock().put(block.offset, chunk);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ChunkCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A block of a snapshot being written, and the chunk it holds
/// ([`PackedMap::write_blocks`], [`PackedMap::adopt`]).
pub struct LaidOut {
    pub first_key: Arc<[u8]>,
    pub block: Block,
    /// The chunk as the written map held it.
    slot: Slot,
}

impl fmt::Debug for LaidOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaidOut")
            .field("first_key", &self.first_key)
            .field("block", &self.block)
            .finish_non_exhaustive()
    }
}

impl PackedMap {
    /// A map of the blocks of `file`, given in key order by their first keys,
    /// none of them read yet.
    pub fn of_blocks(
        file: &Arc<ColdFile>,
        blocks: impl IntoIterator<Item = (Arc<[u8]>, Block)>,
    ) -> PackedMap {
        let mut map = PackedMap::new();
        for (first_key, block) in blocks {
            map.len += block.entries as usize;
            map.chunks
                .insert(first_key, Slot::Cold(Arc::clone(file), block));
        }
        map
    }

    /// Writes every chunk as a block through `write`, the first at file
    /// offset `offset`: chunks in memory compressed, blocks of a file copied
    /// as they are (checked, not decompressed). Returns the blocks in key
    /// order.
    pub fn write_blocks(
        &self,
        mut offset: u64,
        write: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<Vec<LaidOut>> {
        let mut laid_out = Vec::with_capacity(self.chunks.len());
        for (first_key, slot) in self.chunks.iter() {
            let (bytes, mut block) = match slot {
                Slot::Resident(chunk) => compress(chunk)?,
                Slot::Cold(file, block) => (file.raw(block)?, *block),
            };
            block.offset = offset;
            write(&bytes)?;
            offset += bytes.len() as u64;
            laid_out.push(LaidOut {
                first_key: Arc::clone(first_key),
                block,
                slot: slot.clone(),
            });
        }
        Ok(laid_out)
    }

    /// Makes the chunks this map still holds as `laid_out` (written from an
    /// earlier clone of it) blocks of `file`, which holds them; chunks
    /// changed since stay as they are. A chunk that was in memory seeds the
    /// file's cache.
    pub fn adopt(&mut self, laid_out: &[LaidOut], file: &Arc<ColdFile>) {
        let mut written = laid_out.iter().peekable();
        let mut chunks = imbl::OrdMap::new();
        for (first_key, slot) in self.chunks.iter() {
            while written
                .peek()
                .is_some_and(|item| item.first_key < *first_key)
            {
                written.next();
            }
            let slot = match written.peek() {
                Some(item) if item.first_key == *first_key && item.slot.same(slot) => {
                    if let Slot::Resident(chunk) = slot {
                        file.seed(&item.block, Arc::clone(chunk));
                    }
                    Slot::Cold(Arc::clone(file), item.block)
                }
                _ => slot.clone(),
            };
            chunks.insert(Arc::clone(first_key), slot);
        }
        self.chunks = chunks;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk_of(entries: &[(&[u8], &[u8])]) -> Chunk {
        let bytes = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        super::super::chunk_of(entries, bytes)
    }

    #[test]
    fn a_chunk_round_trips_and_a_bad_encoding_is_refused() {
        let chunk = chunk_of(&[(b"a", b"1"), (b"b", b""), (b"cc", b"333")]);
        let decoded = decode(&encode(&chunk)).unwrap();
        assert_eq!(
            decoded.entries().collect::<Vec<_>>(),
            chunk.entries().collect::<Vec<_>>()
        );
        let mut out_of_order = encode(&chunk_of(&[(b"a", b"1"), (b"b", b"2")]));
        // Swap the keys: "b" then "a".
        let len = out_of_order.len();
        out_of_order.swap(len - 4, len - 2);
        assert!(decode(&out_of_order).is_none());
        let mut bad_end = encode(&chunk);
        bad_end[4] = 200;
        assert!(decode(&bad_end).is_none());
        assert!(decode(&encode(&chunk)[..10]).is_none());
        assert!(decode(&[]).is_none());
    }

    #[test]
    fn the_cache_keeps_what_is_read_again_within_its_capacity() {
        let chunk = Arc::new(chunk_of(&[(b"k", &[0; 1000])]));
        let mut cache = ChunkCache {
            capacity: 10 * chunk.memory(),
            ..ChunkCache::default()
        };
        for offset in 0..100 {
            cache.put(offset, Arc::clone(&chunk));
            // Offset 0 is read after every other put: it stays.
            assert!(cache.get(0).is_some(), "lost after {offset}");
        }
        let held = cache.young.len() + cache.old.len();
        assert!(held <= 11, "{held} chunks held");
        assert!(cache.get(50).is_none());
        assert!(cache.get(99).is_some());
    }
}
