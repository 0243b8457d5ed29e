//! A key family held whole in memory as well as in the store: the open-ticket
//! index, which every scorecard's backlog reads in full (a scope's open tickets,
//! one key each). Walking a team's 2,341 open tickets with sled's iterator took
//! ~0.75 ms, nine tenths of a 365-day scorecard's time at 1M interactions;
//! with the index in memory that scorecard's p50 over the wire fell from 1.14
//! to 0.42 ms (docs/benchmarks.md).
//!
//! Each scope's open tickets are also kept decoded once a read asks for them,
//! until a commit changes that scope's part of the index: a backlog then
//! costs a walk over a slice, not a decode of every ticket (at 1M
//! interactions, decoding a team's 2,341 tickets took ~90 µs of a 1-day
//! scorecard's 110 µs in process; now 5 µs). Only lists with tickets are
//! kept, and every entry of the index is in exactly one scope's part, so the
//! decoded lists never hold more than one decoded copy of the index.
//!
//! The store stays the truth: the family is loaded from it at open and every
//! commit that the store accepts is applied to the copy before the commit
//! returns, so a write is visible in memory once it is acknowledged. Reads of
//! keys outside the family, prefix scans wider than it, and ranges go to the
//! store.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::domain::aggregate::Scope;
use crate::domain::scorecard::OpenTicket;
use crate::error::{Error, Result};

use super::groups::decode_open_ticket;
use super::keys;
use super::kv::{AggregateDelta, Change, Entry, KvStore, Visitor};

type InMemory = BTreeMap<Box<[u8]>, Box<[u8]>>;

type DecodedLists = HashMap<Vec<u8>, Arc<[OpenTicket]>>;

/// The entries of `copy` whose key starts with `prefix`, in key order.
fn entries_under<'c>(
    copy: &'c InMemory,
    prefix: &'c [u8],
) -> impl Iterator<Item = (&'c Box<[u8]>, &'c Box<[u8]>)> + 'c {
    copy.range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(move |(key, _)| key.starts_with(prefix))
}

/// A [`KvStore`] that serves one key family from memory.
pub struct ResidentKv {
    inner: Arc<dyn KvStore>,
    /// Keys that start with this are resident.
    family: Vec<u8>,
    copy: RwLock<InMemory>,
    /// Scopes' open tickets, decoded, by the scope's prefix in the index.
    /// Filled only under a read lock of `copy` and emptied of a scope under
    /// its write lock, so no list outlives a change to its part of the copy.
    decoded: Mutex<DecodedLists>,
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
            decoded: Mutex::new(HashMap::new()),
            writing: Mutex::new(()),
        })
    }

    fn is_resident(&self, key: &[u8]) -> bool {
        key.starts_with(&self.family)
    }

    /// Calls `visit` on the copy's entries under `prefix` (itself resident).
    fn visit_copy(&self, prefix: &[u8], visit: &mut Visitor<'_>) -> Result<()> {
        let copy = self.copy.read().map_err(poisoned)?;
        for (key, value) in entries_under(&copy, prefix) {
            visit(key, value)?;
        }
        Ok(())
    }

    /// The decoded lists. They are a cache of the copy: a panic that poisoned
    /// their lock leaves them emptied, not the store unusable.
    fn decoded_lists(&self) -> MutexGuard<'_, DecodedLists> {
        self.decoded.lock().unwrap_or_else(|poisoned| {
            let mut lists = poisoned.into_inner();
            lists.clear();
            lists
        })
    }

    /// The prefix of the scope whose part of the index `key` is in, if the
    /// key is in a scope's part (scopes' prefixes are self-delimiting).
    fn scope_prefix_of<'k>(&self, key: &'k [u8]) -> Option<&'k [u8]> {
        let (_, rest) = keys::scope_from_bytes(key.get(self.family.len()..)?)?;
        Some(&key[..key.len() - rest.len()])
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

    fn open_tickets(&self, scope: &Scope) -> Result<Arc<[OpenTicket]>> {
        let prefix = keys::open_ticket_prefix(scope);
        if !self.is_resident(&prefix) {
            return self.inner.open_tickets(scope);
        }
        // Held until the list is kept: no commit changes the copy meanwhile.
        let copy = self.copy.read().map_err(poisoned)?;
        if let Some(open) = self.decoded_lists().get(&prefix) {
            return Ok(Arc::clone(open));
        }
        let open: Arc<[OpenTicket]> = entries_under(&copy, &prefix)
            .map(|(key, value)| decode_open_ticket(key, value))
            .collect::<Result<_>>()?;
        // An empty list is not kept: reads of scopes that have no open
        // tickets (or do not exist) must not grow the lists.
        if !open.is_empty() {
            self.decoded_lists().insert(prefix, Arc::clone(&open));
        }
        Ok(open)
    }

    fn range<'a>(
        &'a self,
        start: &[u8],
        end: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a> {
        self.inner.range(start, end)
    }

    /// The store's promise, for the values the store serves. The copy
    /// changes after the store does, outside that promise, so a `read` that
    /// mixed the copy's keys with the store's derived values could see them
    /// at different commits; window reads read only aggregates.
    fn read_consistently(&self, read: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        self.inner.read_consistently(read)
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
            let mut decoded = self.decoded_lists();
            for (key, _) in &resident {
                if decoded.is_empty() {
                    break;
                }
                match self.scope_prefix_of(key) {
                    Some(prefix) => decoded.remove(prefix),
                    None => {
                        decoded.clear();
                        None
                    }
                };
            }
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
        Arc::new(SledStore::open(&SledOptions::for_tests(dir)).expect("open sled"))
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

    /// Scopes whose prefixes in the index begin alike (team `a`, team `ab`,
    /// agent `a`), so that a change under one must not touch another's list.
    fn scope() -> impl Strategy<Value = Scope> {
        use crate::domain::records::Id;
        let id = |raw: &str| Id::parse(raw).unwrap();
        prop::sample::select(vec![
            Scope::Organization,
            Scope::Team(id("a")),
            Scope::Team(id("ab")),
            Scope::Agent(id("a")),
        ])
    }

    /// A change to a scope's part of the open-ticket index: a ticket opened
    /// (or changed) with a creation time, or closed.
    fn index_change() -> impl Strategy<Value = Change> {
        use crate::domain::records::{Id, Priority};
        use crate::domain::time::Instant;
        use crate::store::codec::encode;
        let ticket = prop::sample::select(vec!["t1", "t2", "t3"]);
        let opened = prop::option::of((0i64..1_000, prop::option::of(0i64..1_000)));
        (scope(), ticket, opened).prop_map(|(scope, ticket, opened)| {
            let key = keys::open_ticket(&scope, &Id::parse(ticket).unwrap());
            let value = opened.map(|(created, breached)| {
                encode(&OpenTicket {
                    created_at: Instant(created),
                    priority: Priority::High,
                    sla_breached_after: breached.map(Instant),
                })
                .unwrap()
            });
            (key, value)
        })
    }

    #[test]
    fn lists_are_kept_only_with_tickets_and_dropped_by_a_key_of_no_scope() {
        use crate::domain::records::{Id, Priority};
        use crate::domain::time::Instant;
        use crate::store::codec::encode;
        let dir = tempfile::tempdir().unwrap();
        let inner = sled(dir.path());
        let resident = ResidentKv::load(Arc::clone(&inner), &keys::OPEN_TICKETS).unwrap();
        let team = |raw: &str| Scope::Team(Id::parse(raw).unwrap());
        let ticket = OpenTicket {
            created_at: Instant(1),
            priority: Priority::Low,
            sla_breached_after: None,
        };
        let key = keys::open_ticket(&team("a"), &Id::parse("t1").unwrap());
        resident
            .commit(vec![(key, Some(encode(&ticket).unwrap()))])
            .unwrap();
        assert_eq!(resident.open_tickets(&team("a")).unwrap().len(), 1);
        assert!(resident.open_tickets(&team("nobody")).unwrap().is_empty());
        assert_eq!(resident.decoded_lists().len(), 1, "an empty list was kept");
        let of_no_scope = [&keys::OPEN_TICKETS[..], &[0xff, b'x']].concat();
        resident.commit(vec![(of_no_scope, None)]).unwrap();
        assert!(resident.decoded_lists().is_empty());
        assert_eq!(resident.open_tickets(&team("a")).unwrap().len(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever commits come between reads, a scope's open tickets read
        /// through the resident store (kept decoded between them) are those
        /// decoded afresh from the store underneath.
        #[test]
        fn decoded_open_tickets_follow_every_commit(
            steps in prop::collection::vec(
                (prop::collection::vec(index_change(), 0..4), prop::collection::vec(scope(), 0..3)),
                1..12,
            ),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let inner = sled(dir.path());
            let resident = ResidentKv::load(Arc::clone(&inner), &keys::OPEN_TICKETS).unwrap();
            for (changes, reads) in steps {
                resident.commit(changes).unwrap();
                for scope in reads {
                    let kept = resident.open_tickets(&scope).unwrap();
                    let fresh = inner.open_tickets(&scope).unwrap();
                    prop_assert_eq!(&kept[..], &fresh[..], "scope {:?}", scope);
                }
            }
        }

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
