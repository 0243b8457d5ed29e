//! The open-ticket index held whole in memory as well as in the store: every
//! scorecard's backlog reads a scope's open tickets in full. Walking a team's
//! 2,341 open tickets with sled's iterator took ~0.75 ms, nine tenths of a
//! 365-day scorecard's time at 1M interactions; with the index in memory that
//! scorecard's p50 over the wire fell from 1.14 to 0.42 ms
//! (docs/benchmarks.md).
//!
//! The store keeps one entry per open ticket, naming the scopes whose backlogs
//! count it, so that opening or closing a ticket writes one key whatever its
//! number of scopes. The copy keeps the entries as stored (for reads of the
//! family) and each scope's open tickets decoded, by key, so that no backlog
//! decodes (at 1M interactions, decoding a team's 2,341 tickets took ~90 µs
//! of a 1-day scorecard's 110 µs in process). A scope's tickets are also kept
//! as one slice once a read asks for them, until a commit changes that
//! scope's tickets: a backlog then costs a walk over a slice (5 µs there).
//! Only lists with tickets are kept, so the slices never hold more than one
//! copy of each scope's tickets.
//!
//! The store stays the truth: the index is loaded from it at open and every
//! commit that the store accepts is applied to the copy before the commit
//! returns, so a write is visible in memory once it is acknowledged. A commit
//! whose entries the copy could not index is refused before it reaches the
//! store. A stored entry that does not decode makes every backlog read fail
//! as data loss naming its key (its scopes are unknown, so no backlog can be
//! trusted) until a commit replaces or removes it. Reads of keys outside the
//! index, prefix scans wider than it, and ranges go to the store.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::domain::aggregate::Scope;
use crate::domain::scorecard::OpenTicket;
use crate::error::{Error, Result};

use super::groups::decode_open_ticket;
use super::keys;
use super::kv::{AggregateDelta, Change, Entry, KvStore, Visitor};

/// Each scope's decoded list, by the scope's key encoding.
type DecodedLists = HashMap<Vec<u8>, Arc<[OpenTicket]>>;

/// An entry of the index, decoded: the ticket and its scopes' key encodings.
type Decoded = (OpenTicket, Vec<Vec<u8>>);

/// The index in memory.
#[derive(Default)]
struct IndexCopy {
    /// The entries as stored.
    stored: BTreeMap<Box<[u8]>, Box<[u8]>>,
    /// Each scope's open tickets, by index key; scopes without any are absent.
    by_scope: HashMap<Vec<u8>, BTreeMap<Box<[u8]>, OpenTicket>>,
    /// Stored entries that do not decode.
    damaged: BTreeSet<Box<[u8]>>,
}

impl IndexCopy {
    /// The stored entries whose key starts with `prefix`, in key order.
    fn entries_under<'c>(
        &'c self,
        prefix: &'c [u8],
    ) -> impl Iterator<Item = (&'c Box<[u8]>, &'c Box<[u8]>)> + 'c {
        self.stored
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(key, _)| key.starts_with(prefix))
    }

    /// Adds an entry whose key is not in the copy; `decoded` is its value
    /// decoded, or why it does not decode. Scopes it joins go to `changed`.
    fn insert(
        &mut self,
        key: Box<[u8]>,
        value: Box<[u8]>,
        decoded: Result<Decoded>,
        changed: &mut HashSet<Vec<u8>>,
    ) {
        match decoded {
            Ok((ticket, scopes)) => {
                for scope in scopes {
                    let tickets = self.by_scope.entry(scope.clone()).or_default();
                    tickets.insert(key.clone(), ticket);
                    changed.insert(scope);
                }
            }
            Err(_) => {
                self.damaged.insert(key.clone());
            }
        }
        self.stored.insert(key, value);
    }

    /// Removes `key`'s entry, if there is one. Scopes it leaves go to
    /// `changed`.
    fn remove(&mut self, key: &[u8], changed: &mut HashSet<Vec<u8>>) {
        let Some(value) = self.stored.remove(key) else {
            return;
        };
        if self.damaged.remove(key) {
            return;
        }
        match decode_open_ticket(key, &value) {
            Ok((_, scopes)) => {
                for scope in scopes {
                    self.leave(&scope, key);
                    changed.insert(scope);
                }
            }
            // It decoded when it came in; should it not now, no scope keeps it.
            Err(_) => {
                let scopes: Vec<Vec<u8>> = self.by_scope.keys().cloned().collect();
                for scope in scopes {
                    self.leave(&scope, key);
                    changed.insert(scope);
                }
            }
        }
    }

    fn leave(&mut self, scope: &[u8], key: &[u8]) {
        if let Some(tickets) = self.by_scope.get_mut(scope) {
            tickets.remove(key);
            if tickets.is_empty() {
                self.by_scope.remove(scope);
            }
        }
    }
}

/// A [`KvStore`] that serves the open-ticket index from memory.
pub struct ResidentKv {
    inner: Arc<dyn KvStore>,
    copy: RwLock<IndexCopy>,
    /// Scopes' open tickets as slices, by the scope's key encoding. Filled
    /// only under a read lock of `copy` and emptied of a scope under its
    /// write lock, so no list outlives a change to its scope's tickets.
    decoded: Mutex<DecodedLists>,
    /// Serialises commits so that the copy changes in the store's order.
    writing: Mutex<()>,
}

impl std::fmt::Debug for ResidentKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResidentKv").finish_non_exhaustive()
    }
}

fn poisoned<T>(_: T) -> Error {
    Error::Internal("the resident index lock was poisoned by a panic".into())
}

fn is_resident(key: &[u8]) -> bool {
    key.starts_with(&keys::OPEN_TICKETS)
}

impl ResidentKv {
    /// Loads the open-ticket index from `inner`.
    pub fn load(inner: Arc<dyn KvStore>) -> Result<ResidentKv> {
        let started = std::time::Instant::now();
        let mut copy = IndexCopy::default();
        let mut bytes = 0usize;
        let mut changed = HashSet::new();
        for entry in inner.scan_prefix(&keys::OPEN_TICKETS) {
            let (key, value) = entry?;
            bytes += key.len() + value.len();
            let decoded = decode_open_ticket(&key, &value);
            copy.insert(key.into(), value.into(), decoded, &mut changed);
        }
        tracing::info!(
            tickets = copy.stored.len(),
            scopes = copy.by_scope.len(),
            tickets_in_scopes = copy.by_scope.values().map(BTreeMap::len).sum::<usize>(),
            damaged = copy.damaged.len(),
            bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "open-ticket index loaded into memory"
        );
        Ok(ResidentKv {
            inner,
            copy: RwLock::new(copy),
            decoded: Mutex::new(HashMap::new()),
            writing: Mutex::new(()),
        })
    }

    /// Calls `visit` on the copy's entries under `prefix` (itself resident).
    fn visit_copy(&self, prefix: &[u8], visit: &mut Visitor<'_>) -> Result<()> {
        let copy = self.copy.read().map_err(poisoned)?;
        for (key, value) in copy.entries_under(prefix) {
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
}

impl KvStore for ResidentKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if is_resident(key) {
            let copy = self.copy.read().map_err(poisoned)?;
            return Ok(copy.stored.get(key).map(|value| value.to_vec()));
        }
        self.inner.get(key)
    }

    fn scan_prefix<'a>(
        &'a self,
        prefix: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a> {
        if !is_resident(prefix) {
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
        if !is_resident(prefix) {
            return self.inner.visit_prefix(prefix, visit);
        }
        self.visit_copy(prefix, visit)
    }

    fn open_tickets(&self, scope: &Scope) -> Result<Arc<[OpenTicket]>> {
        let scope = keys::scope_bytes(scope);
        // Held until the list is kept: no commit changes the copy meanwhile.
        let copy = self.copy.read().map_err(poisoned)?;
        if let Some(key) = copy.damaged.first() {
            return Err(Error::DataLoss(format!(
                "value of key {} in the open-ticket index does not decode",
                keys::describe_key(key)
            )));
        }
        if let Some(open) = self.decoded_lists().get(&scope) {
            return Ok(Arc::clone(open));
        }
        // Reads of scopes that have no open tickets (or do not exist) must
        // not grow the lists.
        let Some(tickets) = copy.by_scope.get(&scope) else {
            return Ok(Arc::from([]));
        };
        let open: Arc<[OpenTicket]> = tickets.values().copied().collect();
        self.decoded_lists().insert(scope, Arc::clone(&open));
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
        // The copy must see every change to the index; aggregates are not in it.
        if let Some((key, _)) = deltas.iter().find(|(key, _)| is_resident(key)) {
            return Err(Error::Internal(format!(
                "an aggregate change to {}, in the open-ticket index",
                keys::describe_key(key)
            )));
        }
        // Decoded before the store sees them: an entry the copy could not
        // index is a bug of the writer, refused with the whole commit.
        let mut resident = Vec::new();
        for (key, value) in changes.iter().filter(|(key, _)| is_resident(key)) {
            let value = match value {
                Some(value) => {
                    let decoded = decode_open_ticket(key, value).map_err(|_| {
                        Error::Internal(format!(
                            "refusing an open-ticket index entry that does not decode: {}",
                            keys::describe_key(key)
                        ))
                    })?;
                    Some((value.clone(), decoded))
                }
                None => None,
            };
            resident.push((key.clone(), value));
        }
        self.inner.commit_with_aggregates(changes, deltas)?;
        if !resident.is_empty() {
            let mut copy = self.copy.write().map_err(poisoned)?;
            let mut changed = HashSet::new();
            for (key, value) in resident {
                copy.remove(&key, &mut changed);
                if let Some((value, decoded)) = value {
                    copy.insert(key.into(), value.into(), Ok(decoded), &mut changed);
                }
            }
            let mut decoded = self.decoded_lists();
            for scope in &changed {
                decoded.remove(scope);
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
    use crate::domain::records::{Id, Priority};
    use crate::domain::time::Instant;
    use crate::store::codec::encode;
    use crate::store::groups::OpenTicketEntry;
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

    fn ticket_key(ticket: &str) -> Vec<u8> {
        keys::open_ticket(&Id::parse(ticket).unwrap())
    }

    fn open_ticket(created: i64, breached: Option<i64>) -> OpenTicket {
        OpenTicket {
            created_at: Instant(created),
            priority: Priority::High,
            sla_breached_after: breached.map(Instant),
        }
    }

    fn entry(ticket: OpenTicket, scopes: &[Scope]) -> Vec<u8> {
        encode(&OpenTicketEntry::new(ticket, scopes)).unwrap()
    }

    /// Scopes whose key encodings begin alike (team `a`, team `ab`, agent
    /// `a`), so that a change under one must not touch another's list.
    fn all_scopes() -> Vec<Scope> {
        let id = |raw: &str| Id::parse(raw).unwrap();
        vec![
            Scope::Organization,
            Scope::Team(id("a")),
            Scope::Team(id("ab")),
            Scope::Agent(id("a")),
        ]
    }

    /// An entry's worth of an open ticket: when it was created, when it
    /// breaches, and which of `all_scopes` count it (as a mask).
    fn opened() -> impl Strategy<Value = (i64, Option<i64>, u8)> {
        (0i64..1_000, prop::option::of(0i64..1_000), 0u8..16)
    }

    fn scopes_of(mask: u8) -> Vec<Scope> {
        all_scopes()
            .into_iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, scope)| scope)
            .collect()
    }

    /// Tickets whose keys are prefixes of one another (`t1`, `t10`).
    fn ticket() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["t1", "t10", "t2", "t3"])
    }

    /// A commit's change to one key: an open ticket's entry (opened, changed
    /// or closed), or a key outside the index.
    #[derive(Debug, Clone)]
    enum Write {
        Ticket(&'static str, Option<(OpenTicket, u8)>),
        Outside(&'static [u8], Option<Vec<u8>>),
    }

    impl Write {
        fn change(&self) -> Change {
            match self {
                Write::Ticket(ticket, opened) => (
                    ticket_key(ticket),
                    opened.map(|(open, mask)| entry(open, &scopes_of(mask))),
                ),
                Write::Outside(key, value) => (key.to_vec(), value.clone()),
            }
        }
    }

    fn write() -> impl Strategy<Value = Write> {
        let outside = prop::sample::select(vec![&b"Xn"[..], b"Xp1", b"A", b"X"]);
        prop_oneof![
            3 => (ticket(), prop::option::of(opened())).prop_map(|(ticket, opened)| {
                Write::Ticket(
                    ticket,
                    opened.map(|(created, breached, mask)| (open_ticket(created, breached), mask)),
                )
            }),
            1 => (outside, prop::option::of(prop::collection::vec(any::<u8>(), 0..3)))
                .prop_map(|(key, value)| Write::Outside(key, value)),
        ]
    }

    fn changes(writes: &[Write]) -> Vec<Change> {
        writes.iter().map(Write::change).collect()
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
        let team = Scope::Team(Id::parse("a").unwrap());
        let first = entry(open_ticket(1, None), std::slice::from_ref(&team));
        inner
            .commit(vec![(ticket_key("t1"), Some(first.clone()))])
            .unwrap();
        let resident = ResidentKv::load(Arc::new(Refusing(Arc::clone(&inner)))).unwrap();
        let refused = resident.commit(vec![
            (ticket_key("t1"), None),
            (
                ticket_key("t2"),
                Some(entry(open_ticket(2, None), std::slice::from_ref(&team))),
            ),
        ]);
        assert!(matches!(refused, Err(Error::Unavailable(_))));
        assert_eq!(
            visited(&resident, &keys::OPEN_TICKETS),
            vec![(ticket_key("t1"), first)]
        );
        assert_eq!(resident.get(&ticket_key("t2")).unwrap(), None);
        assert_eq!(
            &resident.open_tickets(&team).unwrap()[..],
            &[open_ticket(1, None)]
        );
    }

    #[test]
    fn an_entry_that_does_not_decode_is_refused_before_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let inner = sled(dir.path());
        let resident = ResidentKv::load(Arc::clone(&inner)).unwrap();
        let refused = resident.commit(vec![
            (b"Xn".to_vec(), Some(b"1".to_vec())),
            (ticket_key("t1"), Some(b"not an entry".to_vec())),
        ]);
        assert!(matches!(refused, Err(Error::Internal(_))), "{refused:?}");
        assert_eq!(inner.get(b"Xn").unwrap(), None);
        assert_eq!(inner.get(&ticket_key("t1")).unwrap(), None);
    }

    #[test]
    fn a_damaged_stored_entry_fails_every_backlog_until_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let inner = sled(dir.path());
        let team = Scope::Team(Id::parse("a").unwrap());
        inner
            .commit(vec![
                (
                    ticket_key("t1"),
                    Some(entry(open_ticket(1, None), std::slice::from_ref(&team))),
                ),
                (ticket_key("t2"), Some(b"damaged".to_vec())),
            ])
            .unwrap();
        let resident = ResidentKv::load(Arc::clone(&inner)).unwrap();
        for scope in [&team, &Scope::Organization] {
            match resident.open_tickets(scope) {
                Err(Error::DataLoss(message)) => assert!(message.contains("Xot2"), "{message}"),
                other => panic!("expected data loss, got {other:?}"),
            }
        }
        resident
            .commit(vec![(
                ticket_key("t2"),
                Some(entry(open_ticket(2, None), std::slice::from_ref(&team))),
            )])
            .unwrap();
        let open = resident.open_tickets(&team).unwrap();
        assert_eq!(&open[..], &[open_ticket(1, None), open_ticket(2, None)]);
        assert!(resident
            .open_tickets(&Scope::Organization)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn lists_are_kept_only_for_scopes_with_tickets_and_dropped_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let inner = sled(dir.path());
        let resident = ResidentKv::load(Arc::clone(&inner)).unwrap();
        let [organization, team, ..] = <[Scope; 4]>::try_from(all_scopes()).unwrap();
        let both = [organization.clone(), team.clone()];
        resident
            .commit(vec![(
                ticket_key("t1"),
                Some(entry(open_ticket(1, None), &both)),
            )])
            .unwrap();
        assert_eq!(resident.open_tickets(&team).unwrap().len(), 1);
        assert_eq!(resident.open_tickets(&organization).unwrap().len(), 1);
        assert!(resident
            .open_tickets(&Scope::Team(Id::parse("nobody").unwrap()))
            .unwrap()
            .is_empty());
        assert_eq!(resident.decoded_lists().len(), 2, "an empty list was kept");
        // The ticket leaves the team: the team's list goes, and so does the
        // organisation's (its ticket changed).
        resident
            .commit(vec![(
                ticket_key("t1"),
                Some(entry(
                    open_ticket(5, None),
                    std::slice::from_ref(&organization),
                )),
            )])
            .unwrap();
        assert!(resident.decoded_lists().is_empty());
        assert!(resident.open_tickets(&team).unwrap().is_empty());
        assert_eq!(
            &resident.open_tickets(&organization).unwrap()[..],
            &[open_ticket(5, None)]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever commits come between reads, a scope's open tickets read
        /// through the resident store (kept decoded between them) are the
        /// tickets of a model of the index that name the scope, in key
        /// order, and those the store underneath lists.
        #[test]
        fn open_tickets_follow_every_commit(
            steps in prop::collection::vec(
                (prop::collection::vec(write(), 0..4), prop::collection::vec(0usize..4, 0..3)),
                1..12,
            ),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let inner = sled(dir.path());
            let resident = ResidentKv::load(Arc::clone(&inner)).unwrap();
            let scopes = all_scopes();
            // Ticket key -> the ticket and the mask of its scopes.
            let mut model: BTreeMap<Vec<u8>, (OpenTicket, u8)> = BTreeMap::new();
            for (writes, reads) in steps {
                for write in &writes {
                    if let Write::Ticket(ticket, opened) = write {
                        match opened {
                            Some(opened) => model.insert(ticket_key(ticket), *opened),
                            None => model.remove(&ticket_key(ticket)),
                        };
                    }
                }
                resident.commit(changes(&writes)).unwrap();
                for read in reads {
                    let scope = &scopes[read];
                    let expected: Vec<OpenTicket> = model
                        .values()
                        .filter(|(_, mask)| mask & (1 << read) != 0)
                        .map(|(ticket, _)| *ticket)
                        .collect();
                    let kept = resident.open_tickets(scope).unwrap();
                    prop_assert_eq!(&kept[..], &expected[..], "scope {:?}", scope);
                    let walked = inner.open_tickets(scope).unwrap();
                    prop_assert_eq!(&walked[..], &expected[..], "scope {:?}", scope);
                }
            }
        }

        /// After any commits, the resident store answers every read as the
        /// store underneath does, and so does one loaded afresh from it.
        #[test]
        fn reads_match_the_store_after_any_commits(
            before in prop::collection::vec(write(), 0..20),
            commits in prop::collection::vec(prop::collection::vec(write(), 0..6), 0..8),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let inner = sled(dir.path());
            inner.commit(changes(&before)).unwrap();
            let resident = ResidentKv::load(Arc::clone(&inner)).unwrap();
            for writes in commits {
                resident.commit(changes(&writes)).unwrap();
            }
            let reloaded = ResidentKv::load(Arc::clone(&inner)).unwrap();
            let t1 = ticket_key("t1");
            for prefix in [&keys::OPEN_TICKETS[..], &t1, b"Xot", b"X", b"Xp", b""] {
                let truth: Vec<Entry> = inner.scan_prefix(prefix).collect::<Result<_>>().unwrap();
                for kv in [&resident, &reloaded] {
                    let scanned: Vec<Entry> = kv.scan_prefix(prefix).collect::<Result<_>>().unwrap();
                    prop_assert_eq!(&scanned, &truth);
                    prop_assert_eq!(&visited(kv, prefix), &truth);
                }
            }
            for key in [ticket_key("t1"), ticket_key("t10"), b"Xot".to_vec(), b"Xn".to_vec(), b"A".to_vec()] {
                prop_assert_eq!(resident.get(&key).unwrap(), inner.get(&key).unwrap());
            }
            for scope in all_scopes() {
                let fresh = resident.open_tickets(&scope).unwrap();
                prop_assert_eq!(&reloaded.open_tickets(&scope).unwrap()[..], &fresh[..]);
            }
        }
    }
}
