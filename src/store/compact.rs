//! Compaction: a copy of a stopped store, key for key, into a new directory.
//!
//! sled 0.34 reclaims a segment of its log only once half of it is garbage,
//! and keeps a page's updates as separate fragments until they are
//! consolidated, so a store that has taken many writes holds several times its
//! live bytes on disk and a larger page table in memory (the benchmark's 1M
//! interactions: 11 GB of files for 1.2 GB of keys and values). A copy holds
//! only the live keys, written in order. The copy is read back from disk after
//! it is reopened and compared with the store, so a compaction that returns
//! has lost nothing.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

use super::kv::{refresh_snapshot, Change, KvStore, SledOptions, SledStore};

/// Keys and values per commit into the copy, in bytes. sled frees the node
/// versions a batch replaces only after the batch: copying the benchmark's 1M
/// store peaked at 3.2 GB resident with 8 MB batches; a copy of 1.5M of its
/// keys took 1.2 GB with 8 MB, 0.75 GB with 1 MB and 0.64 GB (the store's
/// own page table included) with 128 KB, and ran faster.
const COPY_BATCH_BYTES: usize = 128 << 10;

/// What a compaction copied, and the sizes before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compaction {
    pub keys: u64,
    /// Bytes of keys and values.
    pub live_bytes: u64,
    /// sled's files of the store and of the copy.
    pub size_before: u64,
    pub size_after: u64,
}

/// The contents of a store in key order: how many keys, their bytes and a
/// hash of every key and value with their lengths (so that a byte moved from
/// a key to its value changes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    pub keys: u64,
    pub live_bytes: u64,
    hash: [u8; 32],
}

#[derive(Default)]
struct ContentsHasher {
    keys: u64,
    live_bytes: u64,
    hash: Sha256,
}

impl ContentsHasher {
    fn add(&mut self, key: &[u8], value: &[u8]) {
        self.keys += 1;
        self.live_bytes += (key.len() + value.len()) as u64;
        self.hash.update((key.len() as u64).to_be_bytes());
        self.hash.update(key);
        self.hash.update((value.len() as u64).to_be_bytes());
        self.hash.update(value);
    }

    fn finish(self) -> Contents {
        Contents {
            keys: self.keys,
            live_bytes: self.live_bytes,
            hash: self.hash.finalize().into(),
        }
    }
}

/// Reads every key and value of `kv`.
pub fn contents(kv: &dyn KvStore) -> Result<Contents> {
    let mut hasher = ContentsHasher::default();
    for entry in kv.scan_prefix(&[]) {
        let (key, value) = entry?;
        hasher.add(&key, &value);
    }
    Ok(hasher.finish())
}

/// Copies every key of `from` into `to`, which must be empty, in batches, and
/// flushes `to`. Returns what it read.
pub fn copy_entries(from: &dyn KvStore, to: &dyn KvStore) -> Result<Contents> {
    if to.scan_prefix(&[]).next().is_some() {
        return Err(Error::FailedPrecondition(
            "the store to copy into is not empty".into(),
        ));
    }
    let mut hasher = ContentsHasher::default();
    let mut batch: Vec<Change> = Vec::new();
    let mut batch_bytes = 0;
    for entry in from.scan_prefix(&[]) {
        let (key, value) = entry?;
        hasher.add(&key, &value);
        batch_bytes += key.len() + value.len();
        batch.push((key, Some(value)));
        if batch_bytes >= COPY_BATCH_BYTES {
            to.commit(std::mem::take(&mut batch))?;
            batch_bytes = 0;
        }
    }
    if !batch.is_empty() {
        to.commit(batch)?;
    }
    to.flush()?;
    Ok(hasher.finish())
}

/// Copies the stopped store at `from` into the directory `into` (absent or
/// empty), reopens the copy and checks that it holds exactly what the store
/// does. The store itself is only read. A copy that fails or differs is
/// removed: it would open as a store missing records.
pub fn compact(from: &SledOptions, into: &Path) -> Result<Compaction> {
    compact_with(from, into, copy_entries)
}

/// A copier: [`copy_entries`], or in tests one that loses a key.
type Copier = fn(&dyn KvStore, &dyn KvStore) -> Result<Contents>;

fn compact_with(from: &SledOptions, into: &Path, copier: Copier) -> Result<Compaction> {
    if !from.path.join("db").exists() {
        return Err(Error::FailedPrecondition(format!(
            "{} holds no store",
            from.path.display()
        )));
    }
    let existed = match std::fs::read_dir(into) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::FailedPrecondition(format!(
                    "{} is not empty: compaction copies into a new directory",
                    into.display()
                )));
            }
            true
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
        Err(error) => return Err(error.into()),
    };
    let copy_options = SledOptions {
        path: into.to_path_buf(),
        cache_capacity_bytes: from.cache_capacity_bytes,
        // One flush at the end instead of one per batch.
        durable_acks: false,
        snapshots: from.snapshots,
    };
    let store = SledStore::open(from)?;
    let size_before = store.size_on_disk()?;
    let copied = copy_and_check(&store, &copy_options, copier)
        .and_then(|copied| copy_snapshot(&from.path, into).map(|()| copied));
    match copied {
        Ok((copied, size_after)) => Ok(Compaction {
            keys: copied.keys,
            live_bytes: copied.live_bytes,
            size_before,
            size_after,
        }),
        Err(error) => {
            let removed = std::fs::remove_dir_all(into).and_then(|()| {
                if existed {
                    std::fs::create_dir(into)?;
                }
                Ok(())
            });
            match removed {
                Ok(()) => {
                    tracing::warn!(copy = %into.display(), "compaction failed; the partial copy is removed")
                }
                Err(remove_error) => tracing::error!(
                    copy = %into.display(),
                    %remove_error,
                    "compaction failed and the partial copy could not be removed: delete it, never serve it"
                ),
            }
            Err(error)
        }
    }
}

/// Copies the derived-state snapshot beside the store, if there is one, so
/// that the copy starts from it instead of recomputing everything.
fn copy_snapshot(from: &Path, into: &Path) -> Result<()> {
    let snapshot = super::snapshots::path_in(from);
    if !snapshot.exists() {
        return Ok(());
    }
    let target = super::snapshots::path_in(into);
    std::fs::copy(&snapshot, &target)?;
    std::fs::File::open(&target)?.sync_all()?;
    std::fs::File::open(into)?.sync_all()?;
    Ok(())
}

/// Copies, reopens the copy (sled writes its page table's snapshot when it
/// opens: once now, not at the server's first start) and reads it back.
/// Returns what was copied and the copy's size on disk.
fn copy_and_check(
    store: &SledStore,
    copy_options: &SledOptions,
    copier: Copier,
) -> Result<(Contents, u64)> {
    let copied = {
        let copy = SledStore::open(copy_options)?;
        copier(store, &copy)?
    };
    refresh_snapshot(copy_options)?;
    let copy = SledStore::open(copy_options)?;
    let reread = contents(&copy)?;
    if reread != copied {
        return Err(Error::DataLoss(format!(
            "the copy in {} differs from the store: {} keys ({} bytes) read, {} keys ({} bytes) \
             in the copy; the store is unchanged",
            copy_options.path.display(),
            copied.keys,
            copied.live_bytes,
            reread.keys,
            reread.live_bytes
        )));
    }
    Ok((copied, copy.size_on_disk()?))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// A store at `path` holding `entries`.
    fn store_holding(path: &Path, entries: &[(&[u8], &[u8])]) -> SledStore {
        let kv = SledStore::open(&SledOptions::for_tests(path)).unwrap();
        let changes = entries
            .iter()
            .map(|(key, value)| (key.to_vec(), Some(value.to_vec())))
            .collect();
        kv.commit(changes).unwrap();
        kv
    }

    fn everything(kv: &dyn KvStore) -> BTreeMap<Vec<u8>, Vec<u8>> {
        kv.scan_prefix(&[]).map(|entry| entry.unwrap()).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        /// A store that took puts, overwrites and deletes, copied: the copy,
        /// reopened, holds what a map given the same changes holds.
        #[test]
        fn the_reopened_copy_holds_what_the_store_holds(
            changes in prop::collection::vec(
                (prop::collection::vec(0u8..4, 1..4), prop::option::of(prop::collection::vec(any::<u8>(), 0..3000))),
                1..300,
            )
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut model = BTreeMap::new();
            {
                let store = SledStore::open(&SledOptions::for_tests(&dir.path().join("store"))).unwrap();
                for batch in changes.chunks(7) {
                    for (key, value) in batch {
                        match value {
                            Some(value) => model.insert(key.clone(), value.clone()),
                            None => model.remove(key),
                        };
                    }
                    store.commit(batch.to_vec()).unwrap();
                }
            }
            let into = dir.path().join("copy");
            let report = compact(&SledOptions::for_tests(&dir.path().join("store")), &into).unwrap();
            prop_assert_eq!(report.keys, model.len() as u64);
            let live: usize = model.iter().map(|(k, v)| k.len() + v.len()).sum();
            prop_assert_eq!(report.live_bytes, live as u64);
            let copy = SledStore::open(&SledOptions::for_tests(&into)).unwrap();
            prop_assert_eq!(everything(&copy), model);
        }
    }

    /// Values overwritten many times leave sled's log mostly garbage; the copy
    /// holds the live values only.
    #[test]
    fn a_copy_of_a_store_of_overwritten_values_is_smaller() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledOptions::for_tests(&dir.path().join("store"));
        {
            let kv = SledStore::open(&store).unwrap();
            for round in 0..20u8 {
                let changes = (0..2_000u32)
                    .map(|key| (key.to_be_bytes().to_vec(), Some(vec![round; 1_000])))
                    .collect();
                kv.commit(changes).unwrap();
            }
        }
        let report = compact(&store, &dir.path().join("copy")).unwrap();
        assert_eq!(report.keys, 2_000);
        // sled reclaims some garbage on its own, at times of its choosing,
        // and writes the copy's pages out at times of its choosing too
        // (10.5–21 MB were left here under loaded test runs, the copies of
        // the 2 MB of live values took 4.7–6.3 MB): the copy is smaller,
        // and within a few times its live bytes.
        assert!(report.size_after < report.size_before, "{report:?}");
        assert!(report.size_after < 4 * report.live_bytes, "{report:?}");
    }

    /// A copier that loses the store's last key but reports all of them.
    fn copy_losing_the_last_key(from: &dyn KvStore, to: &dyn KvStore) -> Result<Contents> {
        let read = contents(from)?;
        let mut entries: Vec<Change> = from
            .scan_prefix(&[])
            .map(|entry| entry.map(|(key, value)| (key, Some(value))))
            .collect::<Result<_>>()?;
        entries.pop();
        to.commit(entries)?;
        Ok(read)
    }

    #[test]
    fn a_copy_that_differs_is_refused_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledOptions::for_tests(&dir.path().join("store"));
        drop(store_holding(&store.path, &[(b"a", b"1"), (b"b", b"2")]));
        let absent = dir.path().join("absent");
        let error = compact_with(&store, &absent, copy_losing_the_last_key).unwrap_err();
        assert!(matches!(error, Error::DataLoss(_)), "{error}");
        assert!(
            error
                .to_string()
                .contains("2 keys (4 bytes) read, 1 keys (2 bytes)"),
            "{error}"
        );
        assert!(!absent.exists());

        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        compact_with(&store, &empty, copy_losing_the_last_key).unwrap_err();
        assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
        let store_now = SledStore::open(&store).unwrap();
        assert_eq!(everything(&store_now).len(), 2);
    }

    #[test]
    fn contents_differ_when_a_key_a_value_or_a_boundary_differs() {
        let dir = tempfile::tempdir().unwrap();
        let store = |name: &str, entries: &[(&[u8], &[u8])]| {
            contents(&store_holding(&dir.path().join(name), entries)).unwrap()
        };
        let original = store("a", &[(b"ab", b"c"), (b"x", b"yz")]);
        assert_eq!(original, store("same", &[(b"x", b"yz"), (b"ab", b"c")]));
        assert_ne!(original, store("value", &[(b"ab", b"d"), (b"x", b"yz")]));
        assert_ne!(original, store("key", &[(b"ab", b"c"), (b"w", b"yz")]));
        assert_ne!(original, store("missing", &[(b"ab", b"c")]));
        let boundary = store("boundary", &[(b"a", b"bc"), (b"x", b"yz")]);
        assert_eq!(boundary.live_bytes, original.live_bytes);
        assert_ne!(original, boundary);
    }

    #[test]
    fn copies_only_into_an_empty_place_and_only_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledOptions::for_tests(&dir.path().join("store"));
        drop(store_holding(&store.path, &[(b"k", b"v")]));

        let occupied = dir.path().join("occupied");
        std::fs::create_dir(&occupied).unwrap();
        std::fs::write(occupied.join("file"), b"mine").unwrap();
        let error = compact(&store, &occupied).unwrap_err().to_string();
        assert!(
            error.contains("occupied") && error.contains("not empty"),
            "{error}"
        );
        assert_eq!(std::fs::read(occupied.join("file")).unwrap(), b"mine");

        let error = compact(
            &SledOptions::for_tests(&dir.path().join("nothing")),
            &dir.path().join("c"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("holds no store"), "{error}");

        let into_a_store = store_holding(&dir.path().join("other"), &[(b"x", b"")]);
        let from = store_holding(&dir.path().join("third"), &[]);
        let error = copy_entries(&from, &into_a_store).unwrap_err().to_string();
        assert!(error.contains("not empty"), "{error}");
    }
}
