//! A key family held whole in memory as well as in the store: the open-ticket
//! index, which every scorecard's backlog reads in full (a scope's open tickets,
//! one key each). Walking a team's 2,341 open tickets with sled's iterator took
//! ~0.75 ms, nine tenths of a 365-day scorecard's time at 1M interactions;
//! with the index in memory that scorecard's p50 over the wire fell from 1.14
//! to 0.42 ms (docs/benchmarks.md).
//!
//! The store stays the truth: the family is loaded from it at open and every
//! commit that the store accepts is applied to the copy before the commit
//! returns, so a write is visible in memory once it is acknowledged. Reads of
//! keys outside the family, prefix scans wider than it, and ranges go to the
//! store.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock};

use crate::error::{Error, Result};

use super::keys;
use super::kv::{AggregateDelta, Change, Entry, KvStore, Visitor};

type InMemory = BTreeMap<Box<[u8]>, Box<[u8]>>;

/// A [`KvStore`] that serves one key family from memory.
pub struct ResidentKv {
    inner: Arc<dyn KvStore>,
    /// Keys that start with this are resident.
    family: Vec<u8>,
    copy: RwLock<InMemory>,
    /// Serialises commits so that the copy changes in the store's order.
    writing: Mutex<()>,
}

impl std::fmt::Debug for ResidentKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResidentKv")
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

fn poisoned<T>(_: T) -> Error {
    Error::Internal("the resident index lock was poisoned by a panic".into())
}

impl ResidentKv {
    /// Loads every key of `family` from `inner`.
    pub fn load(inner: Arc<dyn KvStore>, family: &[u8]) -> Result<ResidentKv> {
        let started = std::time::Instant::now();
        let mut copy = InMemory::new();
        let mut bytes = 0usize;
        for entry in inner.scan_prefix(family) {
            let (key, value) = entry?;
            bytes += key.len() + value.len();
            copy.insert(key.into_boxed_slice(), value.into_boxed_slice());
        }
        tracing::info!(
            keys = copy.len(),
            bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "open-ticket index loaded into memory"
        );
        Ok(ResidentKv {
            inner,
            family: family.to_vec(),
            copy: RwLock::new(copy),
            writing: Mutex::new(()),
        })
    }

    fn is_resident(&self, key: &[u8]) -> bool {
        key.starts_with(&self.family)
    }

    /// Calls `visit` on the copy's entries under `prefix` (itself resident).
    fn visit_copy(&self, prefix: &[u8], visit: &mut Visitor<'_>) -> Result<()> {
        let copy = self.copy.read().map_err(poisoned)?;
        for (key, value) in copy
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
        {
            visit(key, value)?;
        }
        Ok(())
    }
}

impl KvStore for ResidentKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.is_resident(key) {
            let copy = self.copy.read().map_err(poisoned)?;
            return Ok(copy.get(key).map(|value| value.to_vec()));
        }
        self.inner.get(key)
    }

    fn scan_prefix<'a>(
        &'a self,
        prefix: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a> {
        if !self.is_resident(prefix) {
            return self.inner.scan_prefix(prefix);
        }
        let mut entries = Vec::new();
        let copied = self.visit_copy(prefix, &mut |key, value| {
            entries.push((key.to_vec(), value.to_vec()));
            Ok(())
        });
        match copied {
            Ok(()) => Box::new(entries.into_iter().map(Ok)),
            Err(error) => Box::new(std::iter::once(Err(error))),
        }
    }

    fn visit_prefix(&self, prefix: &[u8], visit: &mut Visitor<'_>) -> Result<()> {
        if !self.is_resident(prefix) {
            return self.inner.visit_prefix(prefix, visit);
        }
        self.visit_copy(prefix, visit)
    }

    fn range<'a>(
        &'a self,
        start: &[u8],
        end: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a> {
        self.inner.range(start, end)
    }

    fn commit(&self, changes: Vec<Change>) -> Result<()> {
        self.commit_with_aggregates(changes, Vec::new())
    }

    /// Commits to the store, then, only if that succeeded, to the copy.
    fn commit_with_aggregates(
        &self,
        changes: Vec<Change>,
        deltas: Vec<AggregateDelta>,
    ) -> Result<()> {
        let _writing = self.writing.lock().map_err(poisoned)?;
        // The copy must see every change to its family; aggregates are not in it.
        if let Some((key, _)) = deltas.iter().find(|(key, _)| self.is_resident(key)) {
            return Err(Error::Internal(format!(
                "an aggregate change to {}, in the resident family",
                keys::describe_key(key)
            )));
        }
        let resident: Vec<Change> = changes
            .iter()
            .filter(|(key, _)| self.is_resident(key))
            .cloned()
            .collect();
        self.inner.commit_with_aggregates(changes, deltas)?;
        if !resident.is_empty() {
            let mut copy = self.copy.write().map_err(poisoned)?;
            for (key, value) in resident {
                match value {
                    Some(value) => copy.insert(key.into_boxed_slice(), value.into_boxed_slice()),
                    None => copy.remove(key.as_slice()),
                };
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::store::kv::{SledOptions, SledStore};

    fn sled(dir: &std::path::Path) -> Arc<dyn KvStore> {
        Arc::new(
            SledStore::open(&SledOptions {
                path: dir.to_path_buf(),
                cache_capacity_bytes: 1 << 20,
                durable_acks: false,
            })
            .expect("open sled"),
        )
    }

    fn visited(kv: &dyn KvStore, prefix: &[u8]) -> Vec<Entry> {
        let mut entries = Vec::new();
        kv.visit_prefix(prefix, &mut |key, value| {
            entries.push((key.to_vec(), value.to_vec()));
            Ok(())
        })
        .expect("visit");
        entries
    }

    /// Keys over a small alphabet, so that commits overwrite and delete each
    /// other's keys, in and out of the family `ab`.
    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(b"abc".to_vec()), 1..5)
    }

    /// Refuses every commit; reads go to the store it wraps.
    struct Refusing(Arc<dyn KvStore>);

    impl KvStore for Refusing {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            self.0.get(key)
        }
        fn scan_prefix<'a>(
            &'a self,
            prefix: &[u8],
        ) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a> {
            self.0.scan_prefix(prefix)
        }
        fn range<'a>(
            &'a self,
            start: &[u8],
            end: &[u8],
        ) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a> {
            self.0.range(start, end)
        }
        fn commit(&self, _: Vec<Change>) -> Result<()> {
            Err(Error::Unavailable("disk full".into()))
        }
        fn flush(&self) -> Result<()> {
            Ok(())
        }
        fn size_on_disk(&self) -> Result<u64> {
            Ok(0)
        }

        fn keys_written(&self) -> u64 {
            0
        }
    }

    #[test]
    fn a_refused_commit_leaves_the_copy_as_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let inner = sled(dir.path());
        inner
            .commit(vec![(b"abx".to_vec(), Some(b"1".to_vec()))])
            .unwrap();
        let resident = ResidentKv::load(Arc::new(Refusing(Arc::clone(&inner))), b"ab").unwrap();
        let refused = resident.commit(vec![
            (b"abx".to_vec(), None),
            (b"aby".to_vec(), Some(b"2".to_vec())),
        ]);
        assert!(matches!(refused, Err(Error::Unavailable(_))));
        assert_eq!(
            visited(&resident, b"ab"),
            vec![(b"abx".to_vec(), b"1".to_vec())]
        );
        assert_eq!(resident.get(b"aby").unwrap(), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// After any commits, the resident store answers every read as the
        /// store underneath does, and so does one loaded afresh from it.
        #[test]
        fn reads_match_the_store_after_any_commits(
            before in prop::collection::vec((key(), prop::option::of(prop::collection::vec(any::<u8>(), 0..3))), 0..20),
            commits in prop::collection::vec(prop::collection::vec((key(), prop::option::of(prop::collection::vec(any::<u8>(), 0..3))), 0..6), 0..8),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let inner = sled(dir.path());
            inner.commit(before).unwrap();
            let resident = ResidentKv::load(Arc::clone(&inner), b"ab").unwrap();
            for changes in commits {
                resident.commit(changes).unwrap();
            }
            let reloaded = ResidentKv::load(Arc::clone(&inner), b"ab").unwrap();
            for prefix in [&b"ab"[..], b"aba", b"abc", b"a", b""] {
                let truth: Vec<Entry> = inner.scan_prefix(prefix).collect::<Result<_>>().unwrap();
                for kv in [&resident, &reloaded] {
                    let scanned: Vec<Entry> = kv.scan_prefix(prefix).collect::<Result<_>>().unwrap();
                    prop_assert_eq!(&scanned, &truth);
                    prop_assert_eq!(&visited(kv, prefix), &truth);
                }
            }
            for key in [&b"ab"[..], b"aba", b"abc", b"abcc", b"a", b"b"] {
                prop_assert_eq!(resident.get(key).unwrap(), inner.get(key).unwrap());
            }
        }
    }
}
