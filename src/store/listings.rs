//! Drill-down listings: which tickets each scope lists, newest first. One
//! value per scope and UTC day of creation holds the positions of that day's
//! tickets, instead of a key per scope and ticket: sled 0.34 keeps every tree
//! node resident, so its memory follows the number of keys, and listings were
//! 41% of them (docs/benchmarks.md, "What sled keeps in memory").
//!
//! A position is the newest-first bytes of a ticket's creation moment and its
//! id ([`keys::ticket_row_position`]); positions sort in list order, and a
//! day's key sorts with its positions: newer days first.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::domain::aggregate::Scope;
use crate::domain::records::MAX_ID_LEN;
use crate::domain::time::NANOS_PER_SECOND;
use crate::error::{Error, Result};

use super::codec::decode;
use super::keys;
use super::kv::{Entry, KvStore};

const DAY_NANOS: i64 = 86_400 * NANOS_PER_SECOND;

/// The newest-first bytes of a creation moment, at the start of a position.
const MOMENT_LEN: usize = 8;

/// The tickets one scope lists for one day, in list order, each once: one
/// byte string of each position's ticket-id length and the position, so
/// that a read walks the day without decoding a value per ticket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DayListing {
    #[serde(with = "serde_bytes")]
    positions: Vec<u8>,
}

impl DayListing {
    /// A listing of `positions`, which must be in list order.
    fn of<'a>(positions: impl IntoIterator<Item = &'a [u8]>) -> DayListing {
        let mut bytes = Vec::new();
        for position in positions {
            bytes.push((position.len() - MOMENT_LEN) as u8);
            bytes.extend_from_slice(position);
        }
        DayListing { positions: bytes }
    }

    /// Decodes a stored day listing, refusing one whose positions do not
    /// follow each other as written.
    pub fn decode(key: &[u8], value: &[u8]) -> Result<DayListing> {
        let listing: DayListing = decode(key, value)?;
        let mut at = 0;
        while let Some(&id_len) = listing.positions.get(at) {
            let next = at + 1 + MOMENT_LEN + usize::from(id_len);
            if id_len == 0 || usize::from(id_len) > MAX_ID_LEN || next > listing.positions.len() {
                return Err(Error::DataLoss(format!(
                    "day listing {} is malformed at byte {at}",
                    keys::describe_key(key)
                )));
            }
            at = next;
        }
        Ok(listing)
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// The position at byte `at` and the byte after it, if one begins there.
    fn position_at(&self, at: usize) -> Option<(&[u8], usize)> {
        let id_len = usize::from(*self.positions.get(at)?);
        let next = (at + 1 + MOMENT_LEN + id_len).min(self.positions.len());
        Some((&self.positions[at + 1..next], next))
    }

    /// The positions, in list order.
    pub fn positions(&self) -> impl Iterator<Item = &[u8]> {
        let mut at = 0;
        std::iter::from_fn(move || {
            let (position, next) = self.position_at(at)?;
            at = next;
            Some(position)
        })
    }
}

/// The changes a transaction makes to one day's listing: positions to add
/// and to take away (never the same in both).
#[derive(Debug, Default)]
pub struct ListingChange {
    pub added: BTreeSet<Vec<u8>>,
    pub removed: BTreeSet<Vec<u8>>,
}

impl ListingChange {
    /// `listing` with this change made, in one pass over it.
    pub fn applied_to(&self, listing: &DayListing) -> DayListing {
        let mut merged: Vec<&[u8]> = Vec::new();
        let mut added = self.added.iter().map(Vec::as_slice).peekable();
        for position in listing.positions() {
            while let Some(new) = added.next_if(|new| *new <= position) {
                if new < position {
                    merged.push(new);
                }
            }
            if !self.removed.contains(position) {
                merged.push(position);
            }
        }
        merged.extend(added);
        DayListing::of(merged)
    }
}

/// The start of the UTC day holding `nanos`: what a day listing's key holds.
fn day_start(nanos: i64) -> i64 {
    nanos.div_euclid(DAY_NANOS) * DAY_NANOS
}

/// The key of the day a ticket created at `created_at_nanos` is listed under.
pub fn day_key(scope: &Scope, created_at_nanos: i64) -> Vec<u8> {
    keys::ticket_listing_day(scope, day_start(created_at_nanos))
}

/// The day-key suffix of the day holding the positions that begin with the
/// newest-first bytes of `position` (fewer than eight bytes count as followed
/// by zeros). It does not decrease as the position increases, so it bounds the
/// days a range of positions can be listed under, whatever bytes a client
/// sent as a page's end.
fn day_suffix_bound(position: &[u8]) -> [u8; 8] {
    let mut moment = [0u8; MOMENT_LEN];
    let known = position.len().min(MOMENT_LEN);
    moment[..known].copy_from_slice(&position[..known]);
    let created_at_nanos = i64::MAX.saturating_sub(keys::time_from_bytes(&moment).unwrap_or(0));
    keys::newest_first(day_start(created_at_nanos))
}

/// The positions a scope lists from `start` (included) to `end` (excluded),
/// in list order, reading one day's value at a time.
pub fn positions<'a>(
    kv: &'a dyn KvStore,
    scope: &Scope,
    start: Vec<u8>,
    end: Vec<u8>,
) -> ScopePositions<'a> {
    let prefix = keys::ticket_rows_prefix(scope);
    let first_day = [&prefix[..], &day_suffix_bound(&start)].concat();
    let after_last_day = [&prefix[..], &day_suffix_bound(&end), &[0]].concat();
    ScopePositions {
        days: kv.range(&first_day, &after_last_day),
        day: None,
        start,
        end,
    }
}

/// See [`positions`].
pub struct ScopePositions<'a> {
    days: Box<dyn Iterator<Item = Result<Entry>> + Send + 'a>,
    /// The day being read, and the byte its next position begins at.
    day: Option<(DayListing, usize)>,
    start: Vec<u8>,
    end: Vec<u8>,
}

impl std::fmt::Debug for ScopePositions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopePositions")
            .field("start", &keys::describe_key(&self.start))
            .field("end", &keys::describe_key(&self.end))
            .finish()
    }
}

impl Iterator for ScopePositions<'_> {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Result<Vec<u8>>> {
        loop {
            if let Some((day, at)) = &mut self.day {
                while let Some((position, next)) = day.position_at(*at) {
                    *at = next;
                    if position >= self.end.as_slice() {
                        break;
                    }
                    if position >= self.start.as_slice() {
                        return Some(Ok(position.to_vec()));
                    }
                }
            }
            let decoded = match self.days.next()? {
                Ok((key, value)) => DayListing::decode(&key, &value),
                Err(error) => Err(error),
            };
            match decoded {
                Ok(day) => self.day = Some((day, 0)),
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::Id;
    use crate::store::codec::encode;
    use crate::store::kv::{SledOptions, SledStore};
    use crate::store::txn::Txn;

    /// 2000-01-01, the earliest moment a record may carry.
    const EARLIEST: i64 = 946_684_800 * NANOS_PER_SECOND;

    fn position(at: i64, ticket: &str) -> Vec<u8> {
        keys::ticket_row_position(at, &Id::parse(ticket).unwrap())
    }

    fn store(dir: &std::path::Path) -> SledStore {
        SledStore::open(&SledOptions::for_tests(dir)).unwrap()
    }

    fn listed(listing: &DayListing) -> Vec<Vec<u8>> {
        listing.positions().map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn a_change_keeps_each_position_once_in_list_order() {
        let change = ListingChange {
            added: [(5, "b"), (9, "a"), (5, "a"), (7, "x")]
                .map(|(at, t)| position(at, t))
                .into(),
            removed: BTreeSet::new(),
        };
        let day = change.applied_to(&DayListing::default());
        let expected = [(9, "a"), (7, "x"), (5, "a"), (5, "b")].map(|(at, t)| position(at, t));
        assert_eq!(listed(&day), expected);
        let change = ListingChange {
            added: [position(9, "a"), position(6, "new")].into(),
            removed: [position(7, "x"), position(3, "never-listed")].into(),
        };
        let day = change.applied_to(&day);
        let expected = [(9, "a"), (6, "new"), (5, "a"), (5, "b")].map(|(at, t)| position(at, t));
        assert_eq!(listed(&day), expected);
    }

    #[test]
    fn a_malformed_day_listing_is_data_loss_naming_its_key() {
        let key = day_key(&Scope::Organization, EARLIEST);
        let whole = ListingChange {
            added: [position(EARLIEST, "t1"), position(EARLIEST, "t2")].into(),
            removed: BTreeSet::new(),
        }
        .applied_to(&DayListing::default());
        let stored = encode(&whole).unwrap();
        assert_eq!(DayListing::decode(&key, &stored).unwrap(), whole);
        let mut cut = whole.clone();
        cut.positions.pop();
        let mut no_id = whole.clone();
        no_id.positions[0] = 0;
        for damaged in [cut, no_id] {
            let error = DayListing::decode(&key, &encode(&damaged).unwrap()).unwrap_err();
            assert!(
                matches!(&error, Error::DataLoss(m) if m.contains(&keys::describe_key(&key))),
                "{error:?}"
            );
        }
    }

    proptest::proptest! {
        /// A day listing after transactions that list and unlist tickets in
        /// any order, several times each, equals a set the same steps
        /// changed one at a time (the model).
        #[test]
        fn transactions_leave_a_day_listing_as_their_steps_one_by_one(
            transactions in proptest::collection::vec(
                proptest::collection::vec((0usize..6, proptest::bool::ANY), 0..12),
                1..4,
            ),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let kv = store(dir.path());
            let day = day_key(&Scope::Organization, EARLIEST);
            let place = |n: usize| position(EARLIEST + (n % 3) as i64, &format!("t{n}"));
            let mut model = BTreeSet::new();
            for steps in transactions {
                let mut txn = Txn::new(&kv);
                for (n, listed) in steps {
                    txn.change_listing(day.clone(), place(n), listed);
                    if listed {
                        model.insert(place(n));
                    } else {
                        model.remove(&place(n));
                    }
                }
                let (changes, _) = txn.into_parts().unwrap();
                kv.commit(changes).unwrap();
                let stored = kv
                    .get(&day)
                    .unwrap()
                    .map(|value| listed(&DayListing::decode(&day, &value).unwrap()));
                let expected = (!model.is_empty()).then(|| model.iter().cloned().collect());
                proptest::prop_assert_eq!(stored, expected);
            }
        }

        /// Every position a scope lists between two bounds, whatever their
        /// bytes, equals a filter of all its positions (the model).
        #[test]
        fn positions_between_any_bounds_are_those_listed_between_them(
            moments in proptest::collection::vec(EARLIEST..EARLIEST + 4 * DAY_NANOS, 1..40),
            start in proptest::collection::vec(proptest::num::u8::ANY, 0..12),
            end in proptest::collection::vec(proptest::num::u8::ANY, 0..12),
            use_listed_bounds in proptest::bool::ANY,
            pick in (0usize..40, 0usize..40),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let kv = store(dir.path());
            let scope = Scope::Organization;
            let other = Scope::Team(Id::parse("other").unwrap());
            let mut txn = Txn::new(&kv);
            let mut all = Vec::new();
            for (n, &at) in moments.iter().enumerate() {
                let listed = position(at, &format!("t{n}"));
                all.push(listed.clone());
                for s in [&scope, &other] {
                    txn.change_listing(day_key(s, at), listed.clone(), true);
                }
            }
            kv.commit(txn.into_parts().unwrap().0).unwrap();
            all.sort();
            let (start, end) = if use_listed_bounds {
                (all[pick.0 % all.len()].clone(), all[pick.1 % all.len()].clone())
            } else {
                (start, end)
            };
            let expected: Vec<Vec<u8>> =
                all.iter().filter(|p| **p >= start && **p < end).cloned().collect();
            let found: Vec<Vec<u8>> =
                positions(&kv, &scope, start, end).collect::<Result<_>>().unwrap();
            proptest::prop_assert_eq!(found, expected);
        }
    }
}
