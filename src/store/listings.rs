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
use crate::domain::records::Id;
use crate::domain::time::NANOS_PER_SECOND;
use crate::error::Result;

use super::codec::decode;
use super::keys;
use super::kv::KvStore;

const DAY_NANOS: i64 = 86_400 * NANOS_PER_SECOND;

/// A ticket's place in a list: its position, split into the creation
/// moment's newest-first bytes (as a number) and the ticket id, which order
/// as the position's bytes do.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Listed {
    newest_first: u64,
    ticket: String,
}

impl Listed {
    pub fn new(created_at_nanos: i64, ticket: &Id) -> Listed {
        Listed {
            newest_first: u64::from_be_bytes(keys::newest_first(created_at_nanos)),
            ticket: ticket.as_str().to_owned(),
        }
    }

    /// The position's bytes, as drill-down pages continue from them.
    pub fn position(&self) -> Vec<u8> {
        [&self.newest_first.to_be_bytes()[..], self.ticket.as_bytes()].concat()
    }
}

/// The tickets one scope lists for one day, in list order, each once.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DayListing {
    listed: Vec<Listed>,
}

impl DayListing {
    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    pub fn insert(&mut self, listed: Listed) {
        if let Err(at) = self.listed.binary_search(&listed) {
            self.listed.insert(at, listed);
        }
    }

    pub fn remove(&mut self, listed: &Listed) {
        if let Ok(at) = self.listed.binary_search(listed) {
            self.listed.remove(at);
        }
    }
}

/// The changes a transaction makes to one day's listing.
#[derive(Debug, Default)]
pub struct ListingChange {
    pub added: BTreeSet<Listed>,
    pub removed: BTreeSet<Listed>,
}

impl ListingChange {
    /// `listing` with this change made.
    pub fn applied_to(self, mut listing: DayListing) -> DayListing {
        for listed in &self.removed {
            listing.remove(listed);
        }
        for listed in self.added {
            listing.insert(listed);
        }
        listing
    }
}

/// The key of the day a ticket created at `created_at_nanos` is listed under.
pub fn day_key(scope: &Scope, created_at_nanos: i64) -> Vec<u8> {
    keys::ticket_listing_day(scope, created_at_nanos.div_euclid(DAY_NANOS) * DAY_NANOS)
}

/// The day-key suffix of the day holding the positions that begin with the
/// newest-first bytes `prefix` (fewer than eight bytes count as followed by
/// zeros). It does not decrease as the position increases, so it bounds the
/// days a range of positions can be listed under, whatever bytes a client
/// sent as a page's end.
fn day_suffix_bound(position: &[u8]) -> [u8; 8] {
    let mut moment = [0u8; 8];
    let known = position.len().min(8);
    moment[..known].copy_from_slice(&position[..known]);
    let created_at_nanos = i64::MAX.saturating_sub(keys::time_from_bytes(&moment).unwrap_or(0));
    keys::newest_first(created_at_nanos.div_euclid(DAY_NANOS) * DAY_NANOS)
}

/// The positions a scope lists from `start` (included) to `end` (excluded),
/// in list order, reading one day's value at a time.
pub fn positions<'a>(
    kv: &'a dyn KvStore,
    scope: &Scope,
    start: Vec<u8>,
    end: Vec<u8>,
) -> impl Iterator<Item = Result<Vec<u8>>> + 'a {
    let prefix = keys::ticket_rows_prefix(scope);
    let first_day = [&prefix[..], &day_suffix_bound(&start)].concat();
    let after_last_day = [&prefix[..], &day_suffix_bound(&end), &[0]].concat();
    kv.range(&first_day, &after_last_day)
        .flat_map(move |entry| {
            match entry.and_then(|(key, value)| decode::<DayListing>(&key, &value)) {
                Ok(day) => day
                    .listed
                    .iter()
                    .map(Listed::position)
                    .filter(|position| *position >= start && *position < end)
                    .map(Ok)
                    .collect(),
                Err(error) => vec![Err(error)],
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::codec::encode;
    use crate::store::kv::{SledOptions, SledStore};

    /// 2000-01-01, the earliest moment a record may carry.
    const EARLIEST: i64 = 946_684_800 * NANOS_PER_SECOND;

    #[test]
    fn listed_orders_as_its_position_bytes() {
        let tickets = ["a", "ab", "b", "t-10", "t-9"].map(|t| Id::parse(t).unwrap());
        let moments = [
            EARLIEST,
            EARLIEST + 1,
            EARLIEST + DAY_NANOS,
            1_700_000_000 * NANOS_PER_SECOND,
            i64::MAX - 1,
        ];
        let mut listed: Vec<Listed> = moments
            .iter()
            .flat_map(|&at| tickets.iter().map(move |t| Listed::new(at, t)))
            .collect();
        listed.sort();
        let positions: Vec<Vec<u8>> = listed.iter().map(Listed::position).collect();
        let mut sorted = positions.clone();
        sorted.sort();
        assert_eq!(positions, sorted);
        for (moment, ticket) in moments.iter().zip(&tickets) {
            assert_eq!(
                Listed::new(*moment, ticket).position(),
                keys::ticket_row_position(*moment, ticket)
            );
        }
    }

    #[test]
    fn a_day_listing_holds_each_ticket_once_in_order() {
        let ticket = |t: &str| Id::parse(t).unwrap();
        let mut day = DayListing::default();
        for (at, t) in [(5, "b"), (9, "a"), (5, "a"), (9, "a")] {
            day.insert(Listed::new(at, &ticket(t)));
        }
        let expected = [(9, "a"), (5, "a"), (5, "b")].map(|(at, t)| Listed::new(at, &ticket(t)));
        assert_eq!(day.listed, expected);
        day.remove(&Listed::new(5, &ticket("a")));
        day.remove(&Listed::new(7, &ticket("never-listed")));
        assert_eq!(day.listed, [expected[0].clone(), expected[2].clone()]);
    }

    fn store(dir: &std::path::Path) -> SledStore {
        SledStore::open(&SledOptions {
            path: dir.to_path_buf(),
            cache_capacity_bytes: 1 << 20,
            durable_acks: false,
        })
        .unwrap()
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
            let place = |n: usize| Listed::new(EARLIEST + n as i64, &Id::parse(&format!("t{n}")).unwrap());
            let mut model = BTreeSet::new();
            for steps in transactions {
                let mut txn = crate::store::txn::Txn::new(&kv);
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
                let stored: Option<DayListing> = kv
                    .get(&day)
                    .unwrap()
                    .map(|value| decode(&day, &value).unwrap());
                let expected = (!model.is_empty()).then(|| model.iter().cloned().collect());
                proptest::prop_assert_eq!(stored.map(|listing| listing.listed), expected);
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
            let mut changes = std::collections::BTreeMap::<Vec<u8>, ListingChange>::new();
            let mut all = Vec::new();
            for (n, &at) in moments.iter().enumerate() {
                let listed = Listed::new(at, &Id::parse(&format!("t{n}")).unwrap());
                all.push(listed.position());
                for s in [&scope, &other] {
                    changes.entry(day_key(s, at)).or_default().added.insert(listed.clone());
                }
            }
            let stored: Vec<_> = changes
                .into_iter()
                .map(|(key, change)| {
                    let listing = change.applied_to(DayListing::default());
                    (key, Some(encode(&listing).unwrap()))
                })
                .collect();
            kv.commit(stored).unwrap();
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
