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
//! derived state mostly grows and changes in place); loading a snapshot
//! packs every chunk full again.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

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
}

/// Builds chunks of about [`TARGET_CHUNK_BYTES`] from entries given in key order.
#[derive(Default)]
struct Packer {
    bytes: Vec<u8>,
    ends: Vec<(u32, u32)>,
    done: Vec<Chunk>,
}

impl Packer {
    fn push(&mut self, key: &[u8], value: &[u8]) {
        if !self.ends.is_empty() && self.bytes.len() + key.len() + value.len() > TARGET_CHUNK_BYTES
        {
            self.cut();
        }
        append(&mut self.bytes, &mut self.ends, key, value);
    }

    /// Moves what was pushed into a chunk of its exact size. Copied, not
    /// shrunk in place: an allocator may keep a shrunk block whole (mimalloc
    /// keeps it when the new size is at least half), and the buffers are
    /// reused for the next chunk.
    fn cut(&mut self) {
        if self.ends.is_empty() {
            return;
        }
        let bytes = Box::from(self.bytes.as_slice());
        let ends = Box::from(self.ends.as_slice());
        self.bytes.clear();
        self.ends.clear();
        self.done.push(Chunk { bytes, ends });
    }

    fn finish(mut self) -> Vec<Chunk> {
        self.cut();
        self.done
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
    chunks: imbl::OrdMap<Arc<[u8]>, Arc<Chunk>>,
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

impl PackedMap {
    pub fn new() -> PackedMap {
        PackedMap::default()
    }

    /// A map of `entries`, which must come in strictly increasing key order.
    #[cfg(test)]
    pub fn from_sorted<'e>(entries: impl IntoIterator<Item = (&'e [u8], &'e [u8])>) -> PackedMap {
        let mut builder = Builder::default();
        for (key, value) in entries {
            builder.push(key, value);
        }
        builder.finish()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunk that holds `key` if any chunk does.
    fn chunk_for(&self, key: &[u8]) -> Option<&Arc<Chunk>> {
        self.chunks.get_prev(key).map(|(_, chunk)| chunk)
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let chunk = self.chunk_for(key)?;
        let index = chunk.search(key).ok()?;
        Some(chunk.entry(index).1)
    }

    /// The entries from `start` up to `end` (to the end if `None`), in key order.
    pub fn range<'a>(
        &'a self,
        start: &'a [u8],
        end: Option<&'a [u8]>,
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let first_chunk: &[u8] = match self.chunks.get_prev(start) {
            Some((first_key, _)) => first_key,
            None => start,
        };
        let mut first = true;
        self.chunks
            .range::<_, [u8]>((Bound::Included(first_chunk), Bound::Unbounded))
            .flat_map(move |(_, chunk)| {
                let chunk: &'a Chunk = chunk;
                let from = match std::mem::take(&mut first) {
                    true => chunk.search(start).unwrap_or_else(|at| at),
                    false => 0,
                };
                (from..chunk.len()).map(move |index| chunk.entry(index))
            })
            .take_while(move |(key, _)| end.is_none_or(|end| *key < end))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.chunks.values().flat_map(|chunk| chunk.entries())
    }

    #[cfg(test)]
    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        self.apply([(key.to_vec(), Some(value.to_vec()))]);
    }

    /// Puts (`Some`) and removes (`None`); of several changes to one key the
    /// last counts. Each chunk they touch is rebuilt once.
    pub fn apply(&mut self, changes: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>) {
        let changes: BTreeMap<Vec<u8>, Option<Vec<u8>>> = changes.into_iter().collect();
        let mut pending = changes.iter().peekable();
        while let Some((key, _)) = pending.peek() {
            // The chunk the next change falls in (the first one for a key
            // before every chunk), and the changes before the chunk after it.
            let holder = self
                .chunks
                .get_prev(key.as_slice())
                .or_else(|| self.chunks.get_min().map(|(first, chunk)| (first, chunk)))
                .map(|(first, chunk)| (Arc::clone(first), Arc::clone(chunk)));
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
                Some((first, chunk)) => (Some(first), chunk),
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
                        *slot = Arc::new(chunk);
                    }
                } else {
                    self.chunks.remove(&first[..]);
                }
            }
            for chunk in rebuilt {
                self.put_chunk(chunk);
            }
        }
    }

    /// Adds `chunk` under its first key, which no chunk holds.
    fn put_chunk(&mut self, chunk: Chunk) {
        self.len += chunk.len();
        self.chunks.insert(Arc::from(chunk.key(0)), Arc::new(chunk));
    }

    /// How `other` differs from this map, in key order.
    pub fn diff<'a>(&'a self, other: &'a PackedMap) -> impl Iterator<Item = Difference<'a>> + 'a {
        let mut ours = self.iter().peekable();
        let mut theirs = other.iter().peekable();
        std::iter::from_fn(move || loop {
            let order = match (ours.peek(), theirs.peek()) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((mine, _)), Some((other, _))) => mine.cmp(other),
            };
            match order {
                Ordering::Less => {
                    let (key, value) = ours.next()?;
                    return Some(Difference::Removed(key, value));
                }
                Ordering::Greater => {
                    let (key, value) = theirs.next()?;
                    return Some(Difference::Added(key, value));
                }
                Ordering::Equal => {
                    let (key, old) = ours.next()?;
                    let (_, new) = theirs.next()?;
                    if old != new {
                        return Some(Difference::Changed { key, old, new });
                    }
                }
            }
        })
    }
}

impl PartialEq for PackedMap {
    fn eq(&self, other: &PackedMap) -> bool {
        self.len == other.len && self.diff(other).next().is_none()
    }
}

impl Eq for PackedMap {}

impl fmt::Debug for PackedMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Builds a map from entries in strictly increasing key order, chunk by
/// chunk, with a tree operation per chunk rather than per entry.
#[derive(Default)]
pub struct Builder {
    packer: Packer,
    map: PackedMap,
}

impl Builder {
    /// Adds an entry after every entry added before; a key not above the
    /// last one's is a caller's bug.
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        self.packer.push(key, value);
        for chunk in self.packer.done.drain(..) {
            self.map.put_chunk(chunk);
        }
    }

    pub fn finish(mut self) -> PackedMap {
        for chunk in self.packer.finish() {
            self.map.put_chunk(chunk);
        }
        self.map
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
        let entries: Vec<(Vec<u8>, Vec<u8>)> =
            map.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        let expected: Vec<(Vec<u8>, Vec<u8>)> =
            model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(entries, expected);
        assert_eq!(map.len(), model.len());
        for chunk in map.chunks.values() {
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
                map.apply(batch);
                assert_same(&map, &model);
            }
            // Earlier clones are unchanged by later changes.
            for (version, expected) in &versions {
                assert_same(version, expected);
            }
            for (start, end) in &probes {
                prop_assert_eq!(map.get(start), model.get(start).map(Vec::as_slice));
                let got: Vec<_> = map.range(start, end.as_deref()).map(|(k, _)| k.to_vec()).collect();
                let want: Vec<_> = model
                    .keys()
                    .filter(|key| *key >= start && end.as_ref().is_none_or(|end| *key < end))
                    .cloned()
                    .collect();
                prop_assert_eq!(got, want);
            }
            let (earlier, earlier_model) = &versions[versions.len() / 2];
            let diff: Vec<_> = earlier.diff(&map).map(|d| format!("{d:?}")).collect();
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

    #[test]
    fn a_built_map_equals_one_of_single_inserts_and_cuts_chunks() {
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
