//! A persistent ordered map of byte keys to byte values whose entries are
//! packed, in key order, into chunks of a few KiB: the derived state's map.
//!
//! A map with one node slot and two allocations per entry (a persistent
//! B-tree of `Arc<[u8]>` pairs, which this replaces) spent ~100–160 bytes on
//! each entry beyond its bytes: about half the derived state's memory at 1M
//! interactions, where most values are under 100 bytes (docs/benchmarks.md).
//! Here an entry costs its bytes and two `u32` ends; the chunks sit in a
//! persistent B-tree keyed by their first key, so that a clone is still a
//! pointer copy and a change copies the chunks it touches (at most
//! [`MAX_CHUNK_BYTES`] each) and the tree's path to them.
//!
//! Changes are applied in batches ([`PackedMap::apply`]): each touched chunk
//! is rebuilt once per batch, merged with the batch's changes in one pass.
//! A chunk that removals leave small is not merged into a neighbour (the
//! derived state mostly grows and changes in place).
//!
//! A chunk is either in memory or a block of a snapshot file, read when
//! something needs it ([`cold`]): a map loaded from a snapshot holds only
//! its chunks' first keys until it is read, and a change turns the chunks
//! it touches into chunks in memory. Once a snapshot is written, the chunks
//! it holds unchanged go back to being its blocks ([`PackedMap::adopt`]), so
//! memory holds what changed since the last snapshot and what is read often.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use crate::error::{Error, Result};

mod cold;

pub use cold::{Block, ColdFile, LaidOut, DEFAULT_CACHE_BYTES};

/// A chunk is cut once it holds this many bytes of keys and values...
const TARGET_CHUNK_BYTES: usize = 4096;
/// ...and a rebuilt chunk beyond this is split into chunks of about the target.
const MAX_CHUNK_BYTES: usize = 2 * TARGET_CHUNK_BYTES;

/// Entries in key order, packed: entry `i` is its key then its value, ending
/// where `ends[i]` says; it begins where entry `i - 1` ends.
#[derive(Default)]
struct Chunk {
    bytes: Box<[u8]>,
    /// Each entry's (end of key, end of value) in `bytes`.
    ends: Box<[(u32, u32)]>,
}

impl Chunk {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn entry(&self, index: usize) -> (&[u8], &[u8]) {
        let start = match index {
            0 => 0,
            _ => self.ends[index - 1].1 as usize,
        };
        let (key_end, value_end) = self.ends[index];
        (
            &self.bytes[start..key_end as usize],
            &self.bytes[key_end as usize..value_end as usize],
        )
    }

    fn key(&self, index: usize) -> &[u8] {
        self.entry(index).0
    }

    /// The index of `key`, or where it would be inserted.
    fn search(&self, key: &[u8]) -> std::result::Result<usize, usize> {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let middle = low + (high - low) / 2;
            match self.key(middle).cmp(key) {
                Ordering::Less => low = middle + 1,
                Ordering::Greater => high = middle,
                Ordering::Equal => return Ok(middle),
            }
        }
        Err(low)
    }

    fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        (0..self.len()).map(|index| self.entry(index))
    }

    /// About what the chunk takes in memory.
    fn memory(&self) -> usize {
        self.bytes.len() + self.ends.len() * 8 + 64
    }
}

/// Where a chunk is: in memory, or a block of a snapshot file.
#[derive(Clone)]
enum Slot {
    Resident(Arc<Chunk>),
    Cold(Arc<ColdFile>, Block),
}

impl Slot {
    /// The chunk, read from its file if it is cold; `keep` caches what is read.
    fn load(&self, keep: bool) -> Result<Arc<Chunk>> {
        match self {
            Slot::Resident(chunk) => Ok(Arc::clone(chunk)),
            Slot::Cold(file, block) => file.chunk(block, keep),
        }
    }

    /// Whether both are the very same chunk (not merely equal entries).
    fn same(&self, other: &Slot) -> bool {
        match (self, other) {
            (Slot::Resident(a), Slot::Resident(b)) => Arc::ptr_eq(a, b),
            (Slot::Cold(file_a, a), Slot::Cold(file_b, b)) => {
                Arc::ptr_eq(file_a, file_b) && a.offset == b.offset
            }
            _ => false,
        }
    }
}

/// Appends an entry to a chunk's bytes and ends being built (the layout of
/// [`Chunk`]).
fn append(bytes: &mut Vec<u8>, ends: &mut Vec<(u32, u32)>, key: &[u8], value: &[u8]) {
    bytes.extend_from_slice(key);
    let key_end = bytes.len();
    bytes.extend_from_slice(value);
    ends.push((offset(key_end), offset(bytes.len())));
}

/// A chunk offset. Entries are smaller than 4 GiB: a value's length is
/// stored in 32 bits in a snapshot, and a write is bounded far below.
fn offset(at: usize) -> u32 {
    u32::try_from(at).expect("a chunk of the derived state exceeds 4 GiB")
}

/// The chunks of `old`'s entries with `changes` (in key order) applied:
/// one chunk, or chunks of about [`TARGET_CHUNK_BYTES`] if that one would
/// exceed [`MAX_CHUNK_BYTES`]; none if no entry is left. Each is allocated
/// once, at its size.
fn merged(old: &Chunk, changes: &[(&[u8], Option<&[u8]>)]) -> Vec<Chunk> {
    let mut merged: Vec<(&[u8], &[u8])> = Vec::with_capacity(old.len() + changes.len());
    let mut entries = old.entries().peekable();
    let mut changes = changes.iter().peekable();
    loop {
        let order = match (entries.peek(), changes.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((key, _)), Some((changed, _))) => key.cmp(changed),
        };
        match order {
            Ordering::Less => merged.extend(entries.next()),
            Ordering::Equal | Ordering::Greater => {
                if order == Ordering::Equal {
                    entries.next();
                }
                if let Some(&(key, Some(value))) = changes.next() {
                    merged.push((key, value));
                }
            }
        }
    }
    let size = |entries: &[(&[u8], &[u8])]| -> usize {
        entries
            .iter()
            .map(|(key, value)| key.len() + value.len())
            .sum()
    };
    let total = size(&merged);
    let cut_at = match total <= MAX_CHUNK_BYTES {
        true => usize::MAX,
        false => total.div_ceil(total.div_ceil(TARGET_CHUNK_BYTES)),
    };
    let mut chunks = Vec::new();
    let mut rest = merged.as_slice();
    while !rest.is_empty() {
        let (mut count, mut bytes) = (0, 0);
        while let Some((key, value)) = rest.get(count) {
            if count > 0 && bytes + key.len() + value.len() > cut_at {
                break;
            }
            bytes += key.len() + value.len();
            count += 1;
        }
        let (piece, after) = rest.split_at(count);
        chunks.push(chunk_of(piece, bytes));
        rest = after;
    }
    chunks
}

/// A chunk of `entries` (in key order), whose keys and values take `bytes`.
fn chunk_of(entries: &[(&[u8], &[u8])], bytes: usize) -> Chunk {
    let mut packed = Vec::with_capacity(bytes);
    let mut ends = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        append(&mut packed, &mut ends, key, value);
    }
    Chunk {
        bytes: packed.into_boxed_slice(),
        ends: ends.into_boxed_slice(),
    }
}

/// The map. Cloning it is a pointer copy; clones share unchanged chunks.
#[derive(Clone, Default)]
pub struct PackedMap {
    /// Chunks by their first key; none is empty.
    chunks: imbl::OrdMap<Arc<[u8]>, Slot>,
    len: usize,
}

/// How two maps differ at one key ([`PackedMap::diff`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Difference<'a> {
    /// Only the other map holds the key.
    Added(&'a [u8], &'a [u8]),
    /// Only this map holds the key.
    Removed(&'a [u8], &'a [u8]),
    /// Both hold it, with different values.
    Changed {
        key: &'a [u8],
        old: &'a [u8],
        new: &'a [u8],
    },
}

impl Difference<'_> {
    pub fn key(&self) -> &[u8] {
        match self {
            Difference::Added(key, _) | Difference::Removed(key, _) => key,
            Difference::Changed { key, .. } => key,
        }
    }
}

/// Called on each entry of a walk ([`PackedMap::visit`]); `false` ends it.
pub type Visit<'v> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'v;

/// Walks a map's entries in key order, one chunk in hand at a time (chunks
/// read from a file are not cached: a walk of everything would evict what
/// reads use).
struct Cursor<'a> {
    slots: Box<dyn Iterator<Item = &'a Slot> + 'a>,
    chunk: Option<Arc<Chunk>>,
    index: usize,
}

impl<'a> Cursor<'a> {
    fn new(map: &'a PackedMap) -> Cursor<'a> {
        Cursor {
            slots: Box::new(map.chunks.values()),
            chunk: None,
            index: 0,
        }
    }

    /// The entry under the cursor, reading the next chunk if needed.
    fn peek(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        while self.chunk.as_ref().is_none_or(|c| self.index >= c.len()) {
            match self.slots.next() {
                None => return Ok(None),
                Some(slot) => {
                    self.chunk = Some(slot.load(false)?);
                    self.index = 0;
                }
            }
        }
        Ok(self.chunk.as_ref().map(|chunk| chunk.entry(self.index)))
    }

    fn advance(&mut self) {
        self.index += 1;
    }
}

impl PackedMap {
    pub fn new() -> PackedMap {
        PackedMap::default()
    }

    /// A map of `entries`, in one batch (chunks cut as [`merged`] cuts them).
    #[cfg(test)]
    pub fn from_sorted<'e>(entries: impl IntoIterator<Item = (&'e [u8], &'e [u8])>) -> PackedMap {
        let mut map = PackedMap::new();
        map.apply(
            entries
                .into_iter()
                .map(|(key, value)| (key.to_vec(), Some(value.to_vec()))),
        )
        .expect("a map in memory");
        map
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many chunks the map holds, and how many of those are in memory.
    pub fn chunk_counts(&self) -> (usize, usize) {
        let resident = self
            .chunks
            .values()
            .filter(|slot| matches!(slot, Slot::Resident(_)))
            .count();
        (self.chunks.len(), resident)
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some((_, slot)) = self.chunks.get_prev(key) else {
            return Ok(None);
        };
        let chunk = slot.load(true)?;
        Ok(chunk
            .search(key)
            .ok()
            .map(|index| chunk.entry(index).1.to_vec()))
    }

    /// Calls `visit` with the entries from `start` up to `end` (to the end
    /// if `None`), in key order, until it returns `false`.
    pub fn visit(&self, start: &[u8], end: Option<&[u8]>, visit: &mut Visit<'_>) -> Result<()> {
        let first_chunk: &[u8] = match self.chunks.get_prev(start) {
            Some((first_key, _)) => first_key,
            None => start,
        };
        let mut first = true;
        for (_, slot) in self
            .chunks
            .range::<_, [u8]>((Bound::Included(first_chunk), Bound::Unbounded))
        {
            let chunk = slot.load(true)?;
            let from = match std::mem::take(&mut first) {
                true => chunk.search(start).unwrap_or_else(|at| at),
                false => 0,
            };
            for (key, value) in (from..chunk.len()).map(|index| chunk.entry(index)) {
                if end.is_some_and(|end| key >= end) || !visit(key, value)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The entries from `start` up to `end` (to the end if `None`), copied.
    pub fn range(&self, start: &[u8], end: Option<&[u8]>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut entries = Vec::new();
        self.visit(start, end, &mut |key, value| {
            entries.push((key.to_vec(), value.to_vec()));
            Ok(true)
        })?;
        Ok(entries)
    }

    #[cfg(test)]
    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        self.apply([(key.to_vec(), Some(value.to_vec()))])
            .expect("a map in memory");
    }

    /// The chunk a change to `key` falls in: the one holding it, or the
    /// first one for a key before every chunk.
    fn holder(&self, key: &[u8]) -> Option<(&Arc<[u8]>, &Slot)> {
        self.chunks
            .get_prev(key)
            .or_else(|| self.chunks.get_min().map(|(first, slot)| (first, slot)))
    }

    /// Reads (into their file's cache) the chunks in files that changes to
    /// `keys` would touch: a caller about to make changes durable learns
    /// first whether it can apply them.
    pub fn read_ahead<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) -> Result<()> {
        self.read_touched(keys).map(drop)
    }

    /// The chunks in files that changes to `keys` fall in, read, so that
    /// applying them cannot fail half-way.
    fn read_touched<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k [u8]>,
    ) -> Result<HashMap<Arc<[u8]>, Arc<Chunk>>> {
        let mut read = HashMap::new();
        for key in keys {
            if let Some((first, slot @ Slot::Cold(..))) = self.holder(key) {
                if !read.contains_key(first) {
                    read.insert(Arc::clone(first), slot.load(true)?);
                }
            }
        }
        Ok(read)
    }

    /// Puts (`Some`) and removes (`None`); of several changes to one key the
    /// last counts. Each chunk they touch is rebuilt once, in memory. Fails
    /// (changing nothing) if a chunk they touch cannot be read from its file.
    pub fn apply(
        &mut self,
        changes: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<()> {
        let changes: BTreeMap<Vec<u8>, Option<Vec<u8>>> = changes.into_iter().collect();
        let mut read = self.read_touched(changes.keys().map(Vec::as_slice))?;
        let mut pending = changes.iter().peekable();
        while let Some((key, _)) = pending.peek() {
            // The chunk the next change falls in, and the changes before the
            // chunk after it.
            let holder = self
                .holder(key)
                .map(|(first, slot)| (Arc::clone(first), slot.clone()));
            let next_first = holder.as_ref().and_then(|(first, _)| {
                self.chunks
                    .range::<_, [u8]>((Bound::Excluded(&first[..]), Bound::Unbounded))
                    .next()
                    .map(|(next, _)| Arc::clone(next))
            });
            let mut batch = Vec::new();
            while let Some((key, change)) = pending.peek() {
                if next_first
                    .as_deref()
                    .is_some_and(|next| key.as_slice() >= next)
                {
                    break;
                }
                batch.push((key.as_slice(), change.as_deref()));
                pending.next();
            }
            let (first, old) = match holder {
                Some((first, Slot::Resident(chunk))) => (Some(first), chunk),
                Some((first, Slot::Cold(..))) => {
                    let chunk = read.remove(&first).ok_or_else(|| {
                        Error::Internal("a chunk in a file was not read before a change".into())
                    })?;
                    (Some(first), chunk)
                }
                None => (None, Arc::new(Chunk::default())),
            };
            self.len -= old.len();
            let mut rebuilt = merged(&old, &batch);
            // A chunk that keeps its first key is replaced in place: one
            // walk down the tree instead of a removal and an insertion.
            if let Some(first) = first {
                if rebuilt
                    .first()
                    .is_some_and(|chunk| chunk.key(0) == &first[..])
                {
                    let chunk = rebuilt.remove(0);
                    self.len += chunk.len();
                    if let Some(slot) = self.chunks.get_mut(&first[..]) {
                        *slot = Slot::Resident(Arc::new(chunk));
                    }
                } else {
                    self.chunks.remove(&first[..]);
                }
            }
            for chunk in rebuilt {
                self.put_chunk(chunk);
            }
        }
        Ok(())
    }

    /// Adds `chunk` under its first key, which no chunk holds.
    fn put_chunk(&mut self, chunk: Chunk) {
        self.len += chunk.len();
        self.chunks
            .insert(Arc::from(chunk.key(0)), Slot::Resident(Arc::new(chunk)));
    }

    /// Calls `visit` with how `other` differs from this map, in key order.
    pub fn diff(
        &self,
        other: &PackedMap,
        visit: &mut dyn FnMut(Difference<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut ours = Cursor::new(self);
        let mut theirs = Cursor::new(other);
        loop {
            let (mine, other) = (ours.peek()?, theirs.peek()?);
            let order = match (mine, other) {
                (None, None) => return Ok(()),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((mine, _)), Some((other, _))) => mine.cmp(other),
            };
            match (order, mine, other) {
                (Ordering::Less, Some((key, value)), _) => {
                    visit(Difference::Removed(key, value))?;
                    ours.advance();
                }
                (Ordering::Greater, _, Some((key, value))) => {
                    visit(Difference::Added(key, value))?;
                    theirs.advance();
                }
                (Ordering::Equal, Some((key, old)), Some((_, new))) => {
                    if old != new {
                        visit(Difference::Changed { key, old, new })?;
                    }
                    ours.advance();
                    theirs.advance();
                }
                _ => return Err(Error::Internal("a map walk lost its place".into())),
            }
        }
    }

    /// Every entry, copied (tests and debugging).
    pub fn entries(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.range(&[], None)
    }
}

impl PartialEq for PackedMap {
    /// Equal entries; a map whose chunks cannot be read equals none.
    fn eq(&self, other: &PackedMap) -> bool {
        let mut differs = false;
        let walked = self.diff(other, &mut |_| {
            differs = true;
            Err(Error::Internal("differs".into()))
        });
        self.len == other.len && walked.is_ok() && !differs
    }
}

impl Eq for PackedMap {}

impl fmt::Debug for PackedMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.entries() {
            Ok(entries) => f.debug_map().entries(entries).finish(),
            Err(error) => write!(f, "PackedMap({error})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Model = BTreeMap<Vec<u8>, Vec<u8>>;

    fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
        // Few distinct short keys so that changes hit existing entries.
        proptest::collection::vec(0u8..4, 1..5)
    }

    fn change_strategy() -> impl Strategy<Value = (Vec<u8>, Option<Vec<u8>>)> {
        (
            key_strategy(),
            proptest::option::weighted(0.7, proptest::collection::vec(any::<u8>(), 0..3000)),
        )
    }

    fn assert_same(map: &PackedMap, model: &Model) {
        let entries = map.entries().unwrap();
        let expected: Vec<(Vec<u8>, Vec<u8>)> =
            model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(entries, expected);
        assert_eq!(map.len(), model.len());
        for slot in map.chunks.values() {
            let chunk = slot.load(false).unwrap();
            assert!(chunk.len() > 0, "an empty chunk is kept");
            let bytes = chunk.ends.last().map_or(0, |end| end.1 as usize);
            assert!(
                chunk.len() == 1 || bytes <= MAX_CHUNK_BYTES,
                "a chunk of {bytes} bytes holds {} entries",
                chunk.len()
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn batches_of_changes_give_what_a_btreemap_gives(
            batches in proptest::collection::vec(proptest::collection::vec(change_strategy(), 0..30), 1..12),
            probes in proptest::collection::vec((key_strategy(), proptest::option::of(key_strategy())), 8),
        ) {
            let mut map = PackedMap::new();
            let mut model = Model::new();
            let mut versions = Vec::new();
            for batch in batches {
                versions.push((map.clone(), model.clone()));
                for (key, value) in &batch {
                    match value {
                        Some(value) => model.insert(key.clone(), value.clone()),
                        None => model.remove(key),
                    };
                }
                map.apply(batch).unwrap();
                assert_same(&map, &model);
            }
            // Earlier clones are unchanged by later changes.
            for (version, expected) in &versions {
                assert_same(version, expected);
            }
            for (start, end) in &probes {
                prop_assert_eq!(map.get(start).unwrap(), model.get(start).cloned());
                let got: Vec<_> = map.range(start, end.as_deref()).unwrap().into_iter().map(|(k, _)| k).collect();
                let want: Vec<_> = model
                    .keys()
                    .filter(|key| *key >= start && end.as_ref().is_none_or(|end| *key < end))
                    .cloned()
                    .collect();
                prop_assert_eq!(got, want);
            }
            let (earlier, earlier_model) = &versions[versions.len() / 2];
            let mut diff = Vec::new();
            earlier.diff(&map, &mut |d| {
                diff.push(format!("{d:?}"));
                Ok(())
            }).unwrap();
            let mut want = Vec::new();
            let keys: std::collections::BTreeSet<&Vec<u8>> = earlier_model.keys().chain(model.keys()).collect();
            for key in keys {
                let difference = match (earlier_model.get(key), model.get(key)) {
                    (Some(old), Some(new)) if old != new => Difference::Changed { key, old, new },
                    (Some(old), None) => Difference::Removed(key, old),
                    (None, Some(new)) => Difference::Added(key, new),
                    _ => continue,
                };
                want.push(format!("{difference:?}"));
            }
            prop_assert_eq!(diff, want);
            prop_assert_eq!(earlier == &map, earlier_model == &model);
        }
    }

    /// Writes `map`'s blocks as a file in `dir` after 8 bytes of header; the
    /// file's cache holds about two chunks, so reads go to the file.
    fn blocks_of(
        map: &PackedMap,
        dir: &std::path::Path,
        name: &str,
    ) -> (Arc<ColdFile>, Vec<LaidOut>) {
        let mut bytes = vec![0u8; 8];
        let laid_out = map
            .write_blocks(8, &mut |block| {
                bytes.extend_from_slice(block);
                Ok(())
            })
            .unwrap();
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        (ColdFile::new(file, &path, 2 * MAX_CHUNK_BYTES), laid_out)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A map whose chunks are blocks of files (read from a snapshot, or
        /// adopted after one was written while changes went on) reads and
        /// changes as a BTreeMap does, and so do the versions before.
        #[test]
        fn a_map_of_blocks_and_adopted_chunks_gives_what_a_btreemap_gives(
            batches in proptest::collection::vec(proptest::collection::vec(change_strategy(), 0..30), 2..10),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut map = PackedMap::new();
            let mut model = Model::new();
            let mut versions = Vec::new();
            for (at, batch) in batches.into_iter().enumerate() {
                // A snapshot of the map as it is, this batch applied meanwhile.
                let written = (map.clone(), model.clone());
                let (file, laid_out) = blocks_of(&written.0, dir.path(), &format!("{at}"));
                for (key, value) in &batch {
                    match value {
                        Some(value) => model.insert(key.clone(), value.clone()),
                        None => model.remove(key),
                    };
                }
                map.apply(batch).unwrap();
                map.adopt(&laid_out, &file);
                assert_same(&map, &model);
                let loaded = PackedMap::of_blocks(
                    &file,
                    laid_out.iter().map(|item| (Arc::clone(&item.first_key), item.block)),
                );
                prop_assert_eq!(loaded.chunk_counts().1, 0);
                assert_same(&loaded, &written.1);
                versions.push((loaded, written.1));
                versions.push((map.clone(), model.clone()));
            }
            for (version, expected) in &versions {
                assert_same(version, expected);
            }
            // What no change touched since the last snapshot is a block.
            let (file, laid_out) = blocks_of(&map, dir.path(), "last");
            map.adopt(&laid_out, &file);
            prop_assert_eq!(map.chunk_counts().1, 0);
            assert_same(&map, &model);
        }
    }
    #[test]
    fn a_map_of_one_batch_equals_one_of_single_inserts_and_cuts_chunks() {
        let entries: Vec<(Vec<u8>, Vec<u8>)> = (0u32..5000)
            .map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; (i % 97) as usize]))
            .collect();
        let built = PackedMap::from_sorted(entries.iter().map(|(k, v)| (&k[..], &v[..])));
        let mut inserted = PackedMap::new();
        for (key, value) in entries.iter().rev() {
            inserted.insert(key, value);
        }
        let model: Model = entries.into_iter().collect();
        assert_same(&built, &model);
        assert_same(&inserted, &model);
        assert!(built.chunks.len() > 20, "{} chunks", built.chunks.len());
        assert!(
            inserted.chunks.len() > 20,
            "{} chunks",
            inserted.chunks.len()
        );
    }
}
