//! The journal: one entry per durable commit that changes records a replay
//! reads or derived state, written in the commit's own engine batch. An
//! entry names the groups the commit changed and keeps the earlier value of
//! every record key it changed, so that a recovery can see the records as
//! the last snapshot saw them ([`AsAtSnapshot`]) and retract what each
//! journaled group contributed then. Entries a durable snapshot covers are
//! deleted. See `state` for how commits, snapshots and recovery use it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

use super::codec::{decode, encode};
use super::keys::{self, Group};
use super::kv::{Change, Entry, KvStore};
use super::state::{is_derived, DerivedMap};
use super::txn::{overlaid, Reader};

/// A commit changing more groups than this journals "every group": a
/// recovery then recomputes them all, which is what naming them would cost.
const MAX_JOURNALED_GROUPS: usize = 10_000;

/// Whether a key is a record a replay reads (through [`compute`](super::groups::compute)), whose
/// earlier values the journal keeps.
fn is_replayed(key: &[u8]) -> bool {
    matches!(
        key.first(),
        Some(&keys::RAW) | Some(&keys::RAW_INDEX) | Some(&keys::PENDING) | Some(&keys::TERMS)
    )
}

/// A record key's value before a commit (`None`: it had none).
pub type EarlierValue = (serde_bytes::ByteBuf, Option<serde_bytes::ByteBuf>);

/// What one journal entry says a durable commit changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JournalEntry {
    /// These groups, by `G` key (format 10, which kept contributions: a
    /// replay cannot retract what they were, so it recomputes every group).
    Groups(Vec<serde_bytes::ByteBuf>),
    /// Possibly every group (a rebuild, or a commit changing very many).
    Everything,
    /// These groups, by `G` key (a key that names none, such as
    /// [`keys::EVERY_GROUP`], means every group), and the record keys the
    /// commit changed with their values before it.
    Changes {
        groups: Vec<serde_bytes::ByteBuf>,
        before: Vec<EarlierValue>,
    },
}

/// Whether a commit changing the groups with these `G` keys is journaled
/// as changing every group: too many to name, or a key naming none.
pub(super) fn changes_every_group(group_keys: &[Vec<u8>]) -> bool {
    group_keys.len() > MAX_JOURNALED_GROUPS
        || group_keys
            .iter()
            .any(|key| keys::group_from_key(key).is_none())
}

/// The journal entry numbered `sequence` of a durable commit that changed
/// the groups with these `G` keys and these record keys, which had these
/// values before it (not kept where it changes every group).
pub fn entry(sequence: u64, group_keys: Vec<Vec<u8>>, before: Vec<EarlierValue>) -> Result<Change> {
    let entry = if changes_every_group(&group_keys) {
        JournalEntry::Everything
    } else {
        JournalEntry::Changes {
            groups: group_keys
                .into_iter()
                .map(serde_bytes::ByteBuf::from)
                .collect(),
            before,
        }
    };
    Ok((keys::journal(sequence), Some(encode(&entry)?)))
}

/// The record keys among `changes` with their values in `engine` now.
pub(super) fn earlier_values(
    engine: &dyn KvStore,
    changes: &[Change],
) -> Result<Vec<EarlierValue>> {
    changes
        .iter()
        .filter(|(key, _)| is_replayed(key))
        .map(|(key, _)| {
            Ok((
                serde_bytes::ByteBuf::from(key.clone()),
                engine.get(key)?.map(serde_bytes::ByteBuf::from),
            ))
        })
        .collect()
}

/// The store as a snapshot saw it: the derived state it holds, and the
/// records as they were then (today's, with the value each key changed
/// since had before its first change, from the journal).
pub(super) struct AsAtSnapshot<'a> {
    pub(super) engine: &'a dyn KvStore,
    pub(super) map: DerivedMap,
    pub(super) before: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Reader for AsAtSnapshot<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if is_derived(key) {
            return self.map.get(key);
        }
        match self.before.get(key) {
            Some(value) => Ok(value.clone()),
            None => self.engine.get(key),
        }
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>> {
        let end = keys::prefix_end(prefix);
        if is_derived(prefix) {
            return self.map.range(prefix, end.as_deref());
        }
        overlaid(
            self.engine.scan_prefix(prefix),
            prefix,
            self.before
                .range(prefix.to_vec()..)
                .map(|(key, value)| (key, value.clone())),
        )
    }
}

/// The groups the journal names from `sequence` on; `None` if an entry
/// says every group may have changed, or cannot be read.
pub(super) fn groups_since(engine: &dyn KvStore, sequence: u64) -> Result<Option<BTreeSet<Group>>> {
    let mut groups = BTreeSet::new();
    for entry in engine.range(&keys::journal(sequence), &[keys::JOURNAL + 1]) {
        let (key, value) = entry?;
        match decode::<JournalEntry>(&key, &value) {
            Ok(JournalEntry::Groups(named) | JournalEntry::Changes { groups: named, .. }) => {
                for group_key in named {
                    match keys::group_from_key(&group_key) {
                        Some(group) => groups.insert(group),
                        None => return Ok(None),
                    };
                }
            }
            Ok(JournalEntry::Everything) | Err(_) => return Ok(None),
        }
    }
    Ok(Some(groups))
}

/// What the journal in `engine` says: the groups named from `covers` on (every entry
/// without a snapshot) and the earliest earlier value of each record key
/// changed since, whether one may have changed every group, the
/// deletions of the entries before `covers`, and the next sequence.
pub(super) fn scan(engine: &dyn KvStore, covers: Option<u64>) -> Result<JournalScan> {
    let mut scan = JournalScan::default();
    for entry in engine.scan_prefix(&[keys::JOURNAL]) {
        let (key, value) = entry?;
        let sequence = keys::journal_sequence(&key).ok_or_else(|| {
            Error::DataLoss(format!("bad journal key {}", keys::describe_key(&key)))
        })?;
        scan.next = scan.next.max(sequence.saturating_add(1));
        if covers.is_some_and(|covers| sequence < covers) {
            scan.covered.push((key, None));
            continue;
        }
        match decode::<JournalEntry>(&key, &value) {
            Ok(JournalEntry::Changes { groups, before }) => {
                for group_key in groups {
                    match keys::group_from_key(&group_key) {
                        Some(group) => {
                            scan.groups.insert(group);
                        }
                        None => scan.everything = true,
                    }
                }
                for (key, value) in before {
                    scan.before
                        .entry(key.into_vec())
                        .or_insert_with(|| value.map(serde_bytes::ByteBuf::into_vec));
                }
            }
            Ok(JournalEntry::Everything | JournalEntry::Groups(_)) => scan.everything = true,
            Err(error) => {
                tracing::error!(%error, "a journal entry is damaged; recomputing every group");
                scan.everything = true;
            }
        }
    }
    Ok(scan)
}

/// What [`scan`] found.
#[derive(Debug, Default)]
pub(super) struct JournalScan {
    pub(super) groups: BTreeSet<Group>,
    pub(super) before: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub(super) everything: bool,
    pub(super) covered: Vec<Change>,
    pub(super) next: u64,
}

/// Deletions of the journal entries numbered below `before`.
pub(super) fn deletes(engine: &dyn KvStore, before: u64) -> Result<Vec<Change>> {
    engine
        .range(&[keys::JOURNAL], &keys::journal(before))
        .map(|entry| Ok((entry?.0, None)))
        .collect()
}
