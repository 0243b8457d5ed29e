//! A write transaction of the writer thread: changes are buffered in memory (read
//! back by later reads of the same transaction) and committed as one atomic,
//! durable batch. Aggregates are changed, not read: the transaction sums the
//! changes of each scope's quarter-hours, rolls them up into hours, days and
//! months once when it ends (one pass per bucket, however many groups changed
//! it), and the commit adds each bucket's sum to the stored bucket.
//! Drill-down listings are changed the same way: a day's listing is read and
//! rewritten once per transaction, however many of its tickets change, and
//! so is a scope's entry in the registry of known scopes.

use std::collections::hash_map;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::domain::aggregate::{Aggregate, AggregateSum, Scope};
use crate::domain::records::Id;
use crate::domain::time::Level;
use crate::error::{Error, Result};

use super::codec::{decode, encode};
use super::keys;
use super::kv::{AggregateDelta, Change, Entry, KvStore};
use super::listings::{DayListing, ListingChange};

/// Reads of the store, either straight from it or through a transaction.
pub trait Reader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Entries whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>>;

    fn get_decoded<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        self.get(key)?.map(|bytes| decode(key, &bytes)).transpose()
    }

    /// The suffixes after `prefix` of every key that starts with it.
    fn key_suffixes(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        Ok(self
            .scan_prefix(prefix)?
            .into_iter()
            .map(|(key, _)| key[prefix.len()..].to_vec())
            .collect())
    }
}

/// The entries of `stored` whose key starts with `prefix`, with `changes`
/// laid over them: a value replaces or adds its key, `None` removes it.
/// `changes` is ordered by key, as scanned from its start at `prefix`.
pub fn overlaid<'c>(
    stored: impl Iterator<Item = Result<Entry>>,
    prefix: &[u8],
    changes: impl Iterator<Item = (&'c Vec<u8>, Option<Vec<u8>>)>,
) -> Result<Vec<Entry>> {
    let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = stored.collect::<Result<_>>()?;
    for (key, value) in changes.take_while(|(key, _)| key.starts_with(prefix)) {
        match value {
            Some(value) => merged.insert(key.clone(), value),
            None => merged.remove(key),
        };
    }
    Ok(merged.into_iter().collect())
}

impl Reader for dyn KvStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        KvStore::get(self, key)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>> {
        KvStore::scan_prefix(self, prefix).collect()
    }
}

/// Changes to aggregates by scope and quarter-hour start. Hashed with a
/// fast seeded hasher (the writer hashes a scope per fact), each aggregate
/// boxed (a map that grows moves its entries, and an aggregate is ~500 bytes).
pub type QuarterChanges = HashMap<(Scope, i64), Box<Aggregate>, foldhash::fast::RandomState>;

pub struct Txn<'a> {
    kv: &'a dyn KvStore,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Changes to aggregates, by scope and quarter-hour start.
    quarters: QuarterChanges,
    /// Changes to the registry of known scopes: facts counted, by entry key.
    facts: HashMap<Vec<u8>, i64>,
    listings: BTreeMap<Vec<u8>, ListingChange>,
    /// Tickets and customers whose contribution the transaction's records
    /// may change, recomputed once each before it commits.
    touched: Touched,
}

/// Groups a transaction must recompute, tickets apart: they maintain the
/// customer-contact index that customers read, so they go first.
#[derive(Debug, Default)]
pub struct Touched {
    pub tickets: BTreeSet<Id>,
    pub customers: BTreeSet<Id>,
}

impl std::fmt::Debug for Txn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Txn")
            .field("writes", &self.writes.len())
            .field("quarters", &self.quarters.len())
            .field("listings", &self.listings.len())
            .finish()
    }
}

impl<'a> Txn<'a> {
    pub fn new(kv: &'a dyn KvStore) -> Self {
        Txn {
            kv,
            writes: BTreeMap::new(),
            quarters: QuarterChanges::default(),
            facts: HashMap::new(),
            listings: BTreeMap::new(),
            touched: Touched::default(),
        }
    }

    /// The store as it was before this transaction: what a group contributed
    /// there, recomputed, is what the transaction's recomputation retracts.
    pub fn committed(&self) -> &'a dyn KvStore {
        self.kv
    }

    /// Names groups whose contribution this transaction's records may change.
    pub fn touch(
        &mut self,
        tickets: impl IntoIterator<Item = Id>,
        customers: impl IntoIterator<Item = Id>,
    ) {
        self.touched.tickets.extend(tickets);
        self.touched.customers.extend(customers);
    }

    /// The groups touched so far, which are then forgotten.
    pub fn take_touched(&mut self) -> Touched {
        std::mem::take(&mut self.touched)
    }

    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.writes.insert(key, value);
    }

    pub fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) -> Result<()> {
        self.write(key, Some(encode(value)?));
        Ok(())
    }

    /// Puts an already encoded value.
    pub fn put_encoded(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.write(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.write(key, None);
    }

    /// Adds `delta` to the aggregates of `scope` for the quarter-hour
    /// starting at `quarter`, and so to its hour's, day's and month's: to
    /// this transaction's change to them, which the commit adds to the stored
    /// buckets. Nothing is read here: a bucket is read only where the commit
    /// needs it.
    pub fn add_to_quarter(&mut self, scope: Scope, quarter: i64, delta: Box<Aggregate>) {
        match self.quarters.entry((scope, quarter)) {
            hash_map::Entry::Occupied(mut summed) => summed.get_mut().merge(&delta, 1),
            hash_map::Entry::Vacant(vacant) => {
                vacant.insert(delta);
            }
        }
    }

    /// Adds `facts` to the count of facts in the scope registry entry at
    /// `key`, which [`Txn::into_parts`] reads and rewrites once.
    pub fn count_facts(&mut self, key: Vec<u8>, facts: i64) {
        *self.facts.entry(key).or_default() += facts;
    }

    /// Lists a ticket's position in the day listing at `day_key`, or
    /// (`listed` false) takes it out. Nothing is read here:
    /// [`Txn::into_parts`] rewrites each changed day once. Listings are not
    /// read through a transaction.
    pub fn change_listing(&mut self, day_key: Vec<u8>, position: Vec<u8>, listed: bool) {
        let change = self.listings.entry(day_key).or_default();
        if listed {
            change.removed.remove(&position);
            change.added.insert(position);
        } else {
            change.added.remove(&position);
            change.removed.insert(position);
        }
    }

    /// The changes to commit, and the changes to aggregates, for
    /// [`KvStore::commit_with_aggregates`] (which refuses a change that would
    /// make an aggregate negative). Each changed day listing is read here and
    /// rewritten with its changes.
    pub fn into_parts(self) -> Result<(Vec<Change>, Vec<AggregateDelta>)> {
        let (changes, quarters) = self.into_quarters()?;
        Ok((changes, rolled_up(quarters)))
    }

    /// The changes to commit, as [`Txn::into_parts`] gives them, and the
    /// changes to aggregates by scope and quarter-hour start, not rolled up
    /// into hours, days and months (a replay from empty does that itself,
    /// see `buckets::ReplayedHours`).
    pub fn into_quarters(mut self) -> Result<(Vec<Change>, QuarterChanges)> {
        if !self.touched.tickets.is_empty() || !self.touched.customers.is_empty() {
            return Err(Error::Internal(
                "a transaction committed before recomputing the groups it touched".into(),
            ));
        }
        for (key, change) in std::mem::take(&mut self.listings) {
            let stored = match self.get(&key)? {
                Some(value) => DayListing::decode(&key, &value)?,
                None => DayListing::default(),
            };
            let listing = change.applied_to(&stored);
            if listing.is_empty() {
                self.delete(key);
            } else {
                self.put(key, &listing)?;
            }
        }
        for (key, facts) in std::mem::take(&mut self.facts) {
            if facts == 0 {
                continue;
            }
            let stored: i64 = self.get_decoded(&key)?.unwrap_or(0);
            match stored.checked_add(facts) {
                Some(0) => self.delete(key),
                Some(count) if count > 0 => self.put(key, &count)?,
                _ => {
                    return Err(Error::Internal(format!(
                        "the count of facts in {} would go negative",
                        keys::describe_key(&key)
                    )))
                }
            }
        }
        Ok((self.writes.into_iter().collect(), self.quarters))
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
            && self.quarters.is_empty()
            && self.facts.is_empty()
            && self.listings.is_empty()
            && self.touched.tickets.is_empty()
            && self.touched.customers.is_empty()
    }
}

/// Each bucket's change, from the changes of the quarter-hours it holds:
/// the quarters' own, then each day's and month's summed in one pass
/// over the quarters' buckets ([`AggregateSum`]), where adding them one by
/// one into a growing month would shift its buckets at every insertion.
/// Buckets whose change is zero are left out.
fn rolled_up(quarters: QuarterChanges) -> Vec<AggregateDelta> {
    let mut coarser: HashMap<Vec<u8>, Vec<&Aggregate>, foldhash::fast::RandomState> =
        HashMap::default();
    for ((scope, quarter), delta) in &quarters {
        if delta.is_zero() {
            continue;
        }
        for level in [Level::Day, Level::Month] {
            coarser
                .entry(keys::aggregate(level, scope, level.bucket_start(*quarter)))
                .or_default()
                .push(delta.as_ref());
        }
    }
    let mut deltas = Vec::with_capacity(quarters.len() + coarser.len());
    for (key, parts) in coarser {
        let sum = match parts.as_slice() {
            [only] => (*only).clone(),
            parts => {
                let mut sum = AggregateSum::default();
                for part in parts {
                    sum.add(part, 1);
                }
                sum.finish()
            }
        };
        if !sum.is_zero() {
            deltas.push((key, sum));
        }
    }
    for ((scope, quarter), delta) in quarters {
        if !delta.is_zero() {
            deltas.push((keys::aggregate(Level::Quarter, &scope, quarter), *delta));
        }
    }
    deltas
}

impl Reader for Txn<'_> {
    /// Aggregates are not read through a transaction: it holds only their changes.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.writes.get(key) {
            Some(value) => Ok(value.clone()),
            None => KvStore::get(self.kv, key),
        }
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>> {
        overlaid(
            KvStore::scan_prefix(self.kv, prefix),
            prefix,
            self.writes
                .range(prefix.to_vec()..)
                .map(|(key, value)| (key, value.clone())),
        )
    }
}
