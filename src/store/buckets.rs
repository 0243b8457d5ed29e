//! Where aggregate buckets are stored. Each bucket has a key of its own in the
//! store's interface (`A level scope start`, see [`keys::aggregate`]); day,
//! month and all-time buckets are also stored under it, but a scope's quarter
//! and hour buckets of one UTC day share one stored value, its *day parts*
//! (`A p scope day`). A write touches a quarter, an hour, a day, a month and the
//! total of every scope it counts in; with the parts of a day in one value, the
//! writes of a second to a busy scope rewrite one key there instead of one per
//! quarter and hour, and the store holds a third as many keys (docs/benchmarks.md).
//!
//! The rest of the store speaks of buckets by their own keys: [`placement`]
//! says where one is stored, [`aggregate_changes`] turns bucket changes into
//! stored changes and [`stored_part`] reads one back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::aggregate::Aggregate;
use crate::domain::time::{Level, QUARTER_SECONDS};
use crate::error::Result;

use super::codec::{decode, encode};
use super::keys::{self, time_bytes, time_from_bytes};
use super::kv::Change;

const DAY_SECONDS: i64 = 86_400;

/// The quarter and hour buckets of one scope and UTC day that are not zero, by
/// their index in the day (quarters 0–95, hours 0–23).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayParts {
    quarters: BTreeMap<u8, Aggregate>,
    hours: BTreeMap<u8, Aggregate>,
}

/// A bucket within its day's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    level: Level,
    index: u8,
}

impl DayParts {
    fn of_level(&self, level: Level) -> &BTreeMap<u8, Aggregate> {
        if level == Level::Quarter {
            &self.quarters
        } else {
            &self.hours
        }
    }

    pub fn get(&self, part: Part) -> Option<&Aggregate> {
        self.of_level(part.level).get(&part.index)
    }

    /// Replaces a part; a zero aggregate removes it.
    pub fn set(&mut self, part: Part, aggregate: Aggregate) {
        let parts = if part.level == Level::Quarter {
            &mut self.quarters
        } else {
            &mut self.hours
        };
        if aggregate.is_zero() {
            parts.remove(&part.index);
        } else {
            parts.insert(part.index, aggregate);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.quarters.is_empty() && self.hours.is_empty()
    }

    /// How many buckets the value holds (a measure of its size in memory).
    pub fn len(&self) -> usize {
        self.quarters.len() + self.hours.len()
    }

    /// The buckets of `level` that start in `from..to`, given that the day
    /// starts at `day` (seconds).
    pub fn within(
        &self,
        level: Level,
        day: i64,
        from: i64,
        to: i64,
    ) -> impl Iterator<Item = &Aggregate> {
        let width = if level == Level::Quarter {
            QUARTER_SECONDS
        } else {
            3600
        };
        self.of_level(level)
            .iter()
            .filter(move |(index, _)| (from..to).contains(&(day + i64::from(**index) * width)))
            .map(|(_, aggregate)| aggregate)
    }
}

/// Where a bucket key is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Under its own key (days, months, totals, and any key that is not a bucket's).
    Own,
    /// As a part of the day parts stored under `key`.
    InDay { key: Vec<u8>, part: Part },
}

/// Where the bucket with this key is stored. A quarter or hour key holds its
/// start as its last eight bytes (the scope before it is prefix-free).
pub fn placement(key: &[u8]) -> Placement {
    let level = match key {
        [keys::AGGREGATE, b'q', ..] => Level::Quarter,
        [keys::AGGREGATE, b'h', ..] => Level::Hour,
        _ => return Placement::Own,
    };
    let Some(scope_end) = key.len().checked_sub(8).filter(|&end| end >= 2) else {
        return Placement::Own;
    };
    let Some(start) = time_from_bytes(&key[scope_end..]) else {
        return Placement::Own;
    };
    let day = start.div_euclid(DAY_SECONDS) * DAY_SECONDS;
    let width = if level == Level::Quarter {
        QUARTER_SECONDS
    } else {
        3600
    };
    let offset = start - day;
    if offset % width != 0 {
        return Placement::Own;
    }
    let Ok(index) = u8::try_from(offset / width) else {
        return Placement::Own;
    };
    Placement::InDay {
        key: day_parts_key(&key[2..scope_end], day),
        part: Part { level, index },
    }
}

/// The key of a scope's day parts, from the scope's encoding.
fn day_parts_key(scope: &[u8], day: i64) -> Vec<u8> {
    [
        &[keys::AGGREGATE, keys::DAY_PARTS][..],
        scope,
        &time_bytes(day),
    ]
    .concat()
}

/// The first key of the day parts of `scope` from the day holding `seconds` on.
pub fn day_parts_from(scope_bytes: &[u8], seconds: i64) -> Vec<u8> {
    day_parts_key(scope_bytes, seconds.div_euclid(DAY_SECONDS) * DAY_SECONDS)
}

/// The start (seconds) of the day of a day-parts key.
pub fn day_of(key: &[u8]) -> Option<i64> {
    time_from_bytes(key.get(key.len().checked_sub(8)?..)?)
}

/// A bucket of stored day parts (decoded from `bytes`, the value at `key`).
pub fn stored_part(key: &[u8], bytes: &[u8], part: Part) -> Result<Option<Aggregate>> {
    Ok(decode::<DayParts>(key, bytes)?.get(part).cloned())
}

/// The stored changes that set each bucket key in `aggregates` to its
/// aggregate (zero: none), applied after `earlier` (changes of the same
/// commit) over what `stored` reads. Day parts are read, changed and written
/// whole.
pub fn aggregate_changes(
    earlier: &[Change],
    aggregates: Vec<(Vec<u8>, Aggregate)>,
    stored: impl Fn(&[u8]) -> Result<Option<Vec<u8>>>,
) -> Result<Vec<Change>> {
    let mut changes = Vec::with_capacity(aggregates.len());
    let mut days: BTreeMap<Vec<u8>, DayParts> = BTreeMap::new();
    for (key, aggregate) in aggregates {
        match placement(&key) {
            Placement::Own => {
                let value = (!aggregate.is_zero())
                    .then(|| encode(&aggregate))
                    .transpose()?;
                changes.push((key, value));
            }
            Placement::InDay { key, part } => {
                if !days.contains_key(&key) {
                    let base = match earlier.iter().rev().find(|(k, _)| *k == key) {
                        Some((_, value)) => value.clone(),
                        None => stored(&key)?,
                    };
                    let parts = base
                        .map(|bytes| decode(&key, &bytes))
                        .transpose()?
                        .unwrap_or_default();
                    days.insert(key.clone(), parts);
                }
                if let Some(parts) = days.get_mut(&key) {
                    parts.set(part, aggregate);
                }
            }
        }
    }
    for (key, parts) in days {
        let value = (!parts.is_empty()).then(|| encode(&parts)).transpose()?;
        changes.push((key, value));
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::aggregate::Scope;
    use crate::domain::records::Id;

    fn with_interactions(interactions: i64) -> Aggregate {
        Aggregate {
            interactions,
            ..Aggregate::default()
        }
    }

    #[test]
    fn quarters_and_hours_go_into_their_day_and_the_rest_stays_put() {
        let team = Scope::Team(Id::parse("billing").unwrap());
        let day = 20_000 * DAY_SECONDS;
        let in_day = |level, start| match placement(&keys::aggregate(level, &team, start)) {
            Placement::InDay { key, part } => Some((key, part)),
            Placement::Own => None,
        };
        let (quarter_key, quarter) = in_day(Level::Quarter, day + 23 * 3600 + 45 * 60).unwrap();
        assert_eq!(
            quarter,
            Part {
                level: Level::Quarter,
                index: 95
            }
        );
        let (hour_key, hour) = in_day(Level::Hour, day).unwrap();
        assert_eq!(
            hour,
            Part {
                level: Level::Hour,
                index: 0
            }
        );
        assert_eq!(quarter_key, hour_key);
        assert_eq!(day_of(&quarter_key), Some(day));
        assert_eq!(
            quarter_key,
            day_parts_from(&keys::scope_bytes(&team), day + 5)
        );
        // The next day's parts are another key; days, months and totals are their own.
        assert_ne!(
            in_day(Level::Quarter, day + DAY_SECONDS).unwrap().0,
            quarter_key
        );
        assert_eq!(
            in_day(Level::Quarter, day - QUARTER_SECONDS)
                .unwrap()
                .1
                .index,
            95
        );
        for level in [Level::Day, Level::Month, Level::Total] {
            assert_eq!(
                placement(&keys::aggregate(level, &team, day)),
                Placement::Own
            );
        }
        assert_eq!(placement(b"Aq"), Placement::Own);
        assert_eq!(placement(b"Xq01234567890"), Placement::Own);
    }

    #[test]
    fn changes_read_modify_and_write_the_day_parts() {
        let scope = Scope::Organization;
        let day = 19_000 * DAY_SECONDS;
        let quarter = keys::aggregate(Level::Quarter, &scope, day + 900);
        let hour = keys::aggregate(Level::Hour, &scope, day);
        let month = keys::aggregate(Level::Month, &scope, day);
        let Placement::InDay { key, .. } = placement(&quarter) else {
            panic!("a quarter is in its day");
        };
        let mut before = DayParts::default();
        before.set(
            Part {
                level: Level::Quarter,
                index: 7,
            },
            with_interactions(3),
        );
        let stored_bytes = encode(&before).unwrap();
        let changes = aggregate_changes(
            &[],
            vec![
                (quarter, with_interactions(2)),
                (hour, with_interactions(2)),
                (month.clone(), with_interactions(9)),
            ],
            |k| Ok((k == key.as_slice()).then(|| stored_bytes.clone())),
        )
        .unwrap();
        let mut expected = before.clone();
        expected.set(
            Part {
                level: Level::Quarter,
                index: 1,
            },
            with_interactions(2),
        );
        expected.set(
            Part {
                level: Level::Hour,
                index: 0,
            },
            with_interactions(2),
        );
        assert_eq!(
            changes,
            vec![
                (month, Some(encode(&with_interactions(9)).unwrap())),
                (key.clone(), Some(encode(&expected).unwrap())),
            ]
        );
        // Zeroing the last part deletes the value; a change earlier in the
        // commit is the base, not the store.
        let only_seven = encode(&before).unwrap();
        let seven = keys::aggregate(Level::Quarter, &scope, day + 7 * 900);
        let changes = aggregate_changes(
            &[(key.clone(), Some(only_seven))],
            vec![(seven, Aggregate::default())],
            |_| panic!("the earlier change is the base"),
        )
        .unwrap();
        assert_eq!(changes, vec![(key, None)]);
    }
}
