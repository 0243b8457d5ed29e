//! A write transaction of the writer thread: changes are buffered in memory (read
//! back by later reads of the same transaction) and committed as one atomic,
//! durable batch. Aggregates are kept decoded until the commit, so a group of
//! writes touching the same bucket decodes and encodes it once.

use std::collections::{BTreeMap, HashMap};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::domain::aggregate::Aggregate;
use crate::error::{Error, Result};

use super::codec::{decode, encode};
use super::keys::describe_key;
use super::kv::{AggregateChange, Change, Entry, KvStore};

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

impl Reader for dyn KvStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        KvStore::get(self, key)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>> {
        KvStore::scan_prefix(self, prefix).collect()
    }
}

pub struct Txn<'a> {
    kv: &'a dyn KvStore,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    aggregates: HashMap<Vec<u8>, Aggregate>,
}

impl std::fmt::Debug for Txn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Txn")
            .field("writes", &self.writes.len())
            .field("aggregates", &self.aggregates.len())
            .finish()
    }
}

impl<'a> Txn<'a> {
    pub fn new(kv: &'a dyn KvStore) -> Self {
        Txn {
            kv,
            writes: BTreeMap::new(),
            aggregates: HashMap::new(),
        }
    }

    pub fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) -> Result<()> {
        self.writes.insert(key, Some(encode(value)?));
        Ok(())
    }

    /// Puts an already encoded value.
    pub fn put_encoded(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// Adds `delta` times `sign` to the stored aggregate at `key`.
    pub fn add_to_aggregate(&mut self, key: Vec<u8>, delta: &Aggregate, sign: i64) -> Result<()> {
        if !self.aggregates.contains_key(&key) {
            let stored = match self.writes.get(&key) {
                Some(written) => written
                    .as_ref()
                    .map(|bytes| decode(&key, bytes))
                    .transpose()?,
                None => self.kv.get_aggregate(&key)?,
            };
            self.aggregates
                .insert(key.clone(), stored.unwrap_or_default());
        }
        if let Some(aggregate) = self.aggregates.get_mut(&key) {
            aggregate.merge(delta, sign);
        }
        Ok(())
    }

    /// The changes to commit, with the aggregates left decoded (for
    /// [`KvStore::commit_with_aggregates`]). Fails if an aggregate went
    /// negative: that would mean a retraction of something never applied, a
    /// broken invariant.
    pub fn into_parts(self) -> Result<(Vec<Change>, Vec<AggregateChange>)> {
        if let Some((key, _)) = self
            .aggregates
            .iter()
            .find(|(_, aggregate)| !aggregate.is_non_negative())
        {
            return Err(Error::Internal(format!(
                "aggregate {} would go negative",
                describe_key(key)
            )));
        }
        Ok((
            self.writes.into_iter().collect(),
            self.aggregates.into_iter().collect(),
        ))
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.aggregates.is_empty()
    }
}

impl Reader for Txn<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(aggregate) = self.aggregates.get(key) {
            return Ok(Some(encode(aggregate)?));
        }
        match self.writes.get(key) {
            Some(value) => Ok(value.clone()),
            None => KvStore::get(self.kv, key),
        }
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> =
            KvStore::scan_prefix(self.kv, prefix).collect::<Result<_>>()?;
        for (key, value) in self
            .writes
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
        {
            match value {
                Some(value) => merged.insert(key.clone(), value.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().collect())
    }
}
