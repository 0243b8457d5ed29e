//! The stored form of an hour's bucket and its quarter buckets, kept
//! together under one key (`A p scope hour`, see the module above).

use serde::{Deserialize, Serialize};

use crate::domain::aggregate::Aggregate;
use crate::domain::time::{Level, QUARTER_SECONDS};
use crate::error::Result;

use super::{ensure_stays_non_negative, QUARTERS_PER_HOUR};

/// An hour's bucket and its quarter buckets (by their index in the hour, 0–3)
/// that are not zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourParts {
    hour: Option<Aggregate>,
    quarters: Quarters,
}

/// The quarter buckets of an hour that are not zero, in index order, held
/// as a vector exactly as long as it needs: a `BTreeMap` keeps even one
/// entry in a node with room for eleven aggregates (~8 KB), and a commit
/// decodes hours by the hundred. Stored as a map from index
/// to aggregate, byte for byte what a `BTreeMap<u8, Aggregate>` was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Quarters(Vec<(u8, Aggregate)>);

impl Quarters {
    /// Where `index` is, or would go.
    fn position(&self, index: u8) -> std::result::Result<usize, usize> {
        self.0.binary_search_by_key(&index, |(at, _)| *at)
    }

    fn get(&self, index: u8) -> Option<&Aggregate> {
        let position = self.position(index).ok()?;
        Some(&self.0[position].1)
    }

    /// The quarter at `index`, a zero one put there if there is none.
    fn get_or_default(&mut self, index: u8) -> &mut Aggregate {
        let position = match self.position(index) {
            Ok(position) => position,
            Err(position) => {
                self.0.reserve_exact(1);
                self.0.insert(position, (index, Aggregate::default()));
                position
            }
        };
        &mut self.0[position].1
    }

    fn insert(&mut self, index: u8, aggregate: Aggregate) {
        *self.get_or_default(index) = aggregate;
    }

    fn remove(&mut self, index: u8) {
        if let Ok(position) = self.position(index) {
            self.0.remove(position);
        }
    }

    fn iter(&self) -> impl Iterator<Item = (u8, &Aggregate)> {
        self.0.iter().map(|(index, aggregate)| (*index, aggregate))
    }

    fn values(&self) -> impl Iterator<Item = &Aggregate> {
        self.0.iter().map(|(_, aggregate)| aggregate)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// The bytes its vector takes on the heap (the aggregates' histograms
    /// not included).
    fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<(u8, Aggregate)>()
    }
}

impl Serialize for Quarters {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(index, aggregate)| (index, aggregate)))
    }
}

impl<'de> Deserialize<'de> for Quarters {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Quarters, D::Error> {
        struct QuartersVisitor;

        impl<'de> serde::de::Visitor<'de> for QuartersVisitor {
            type Value = Quarters;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a map of quarter indexes to aggregates")
            }

            /// As a `BTreeMap` would: a repeated index keeps its last value.
            /// An index past the hour's last quarter, which no write makes
            /// and a read would count in a later hour, does not decode.
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Quarters, A::Error> {
                let mut quarters = Quarters(Vec::with_capacity(
                    map.size_hint()
                        .unwrap_or(0)
                        .min(usize::from(QUARTERS_PER_HOUR)),
                ));
                while let Some(index) = map.next_key::<u8>()? {
                    if index >= QUARTERS_PER_HOUR {
                        return Err(serde::de::Error::invalid_value(
                            serde::de::Unexpected::Unsigned(u64::from(index)),
                            &"a quarter of the hour, 0 to 3",
                        ));
                    }
                    quarters.insert(index, map.next_value::<Aggregate>()?);
                }
                Ok(quarters)
            }
        }

        deserializer.deserialize_map(QuartersVisitor)
    }
}

/// A bucket within its hour's parts: the hour itself, or one of its quarters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Hour,
    Quarter(u8),
}

impl HourParts {
    pub fn get(&self, part: Part) -> Option<&Aggregate> {
        match part {
            Part::Hour => self.hour.as_ref(),
            Part::Quarter(index) => self.quarters.get(index),
        }
    }

    /// Replaces a part; a zero aggregate removes it.
    pub fn set(&mut self, part: Part, aggregate: Aggregate) {
        let aggregate = (!aggregate.is_zero()).then_some(aggregate);
        match (part, aggregate) {
            (Part::Hour, aggregate) => self.hour = aggregate,
            (Part::Quarter(index), Some(aggregate)) => {
                self.quarters.insert(index, aggregate);
            }
            (Part::Quarter(index), None) => {
                self.quarters.remove(index);
            }
        }
    }

    /// Adds `delta` to a part; a part that adds up to zero is removed.
    pub fn add(&mut self, part: Part, delta: &Aggregate) {
        let aggregate = match part {
            Part::Hour => self.hour.get_or_insert_with(Aggregate::default),
            Part::Quarter(index) => self.quarters.get_or_default(index),
        };
        aggregate.merge(delta, 1);
        if aggregate.is_zero() {
            self.set(part, Aggregate::default());
        }
    }

    /// [`ensure_stays_non_negative`] for a part, the bucket at `bucket`.
    pub fn ensure_stays_non_negative(
        &self,
        part: Part,
        delta: &Aggregate,
        bucket: &[u8],
    ) -> Result<()> {
        match self.get(part) {
            Some(aggregate) => ensure_stays_non_negative(aggregate, delta, bucket),
            None => ensure_stays_non_negative(&Aggregate::default(), delta, bucket),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.hour.is_none() && self.quarters.is_empty()
    }

    /// How many buckets the value holds.
    pub fn len(&self) -> usize {
        usize::from(self.hour.is_some()) + self.quarters.len()
    }

    /// The bytes it takes in memory: itself (the hour inline), its
    /// quarters, and every part's histograms.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<HourParts>()
            + self.quarters.heap_bytes()
            + self
                .hour
                .iter()
                .chain(self.quarters.values())
                .map(Aggregate::heap_bytes)
                .sum::<usize>()
    }

    /// The buckets of `level` (hour or quarter) that start in `from..to`,
    /// given that the hour starts at `hour` (seconds).
    pub fn within(
        &self,
        level: Level,
        hour: i64,
        from: i64,
        to: i64,
    ) -> impl Iterator<Item = &Aggregate> {
        let starts_within = move |start: i64| (from..to).contains(&start);
        let hour_part = (level == Level::Hour && starts_within(hour))
            .then_some(self.hour.as_ref())
            .flatten();
        let quarters = self
            .quarters
            .iter()
            .filter(move |(index, _)| {
                level == Level::Quarter && starts_within(hour + i64::from(*index) * QUARTER_SECONDS)
            })
            .map(|(_, aggregate)| aggregate);
        hour_part.into_iter().chain(quarters)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::error::Error;
    use crate::store::buckets::tests::with_interactions;
    use crate::store::buckets::HOUR_SECONDS;
    use crate::store::codec::{decode, encode};

    #[test]
    fn within_picks_the_parts_of_a_level_that_start_in_the_window() {
        let hour = 480_000 * HOUR_SECONDS;
        let mut parts = HourParts::default();
        parts.set(Part::Hour, with_interactions(7));
        for (index, interactions) in [(0, 1), (2, 2), (3, 4)] {
            parts.set(Part::Quarter(index), with_interactions(interactions));
        }
        let sum = |level, from, to| -> i64 {
            parts
                .within(level, hour, from, to)
                .map(|a| a.interactions)
                .sum()
        };
        assert_eq!(sum(Level::Hour, hour, hour + HOUR_SECONDS), 7);
        assert_eq!(sum(Level::Hour, hour + 1, hour + 2 * HOUR_SECONDS), 0);
        assert_eq!(sum(Level::Quarter, hour, hour + HOUR_SECONDS), 7);
        assert_eq!(sum(Level::Quarter, hour + 900, hour + 2700), 2);
        assert_eq!(sum(Level::Quarter, hour + 2700, hour + 3600), 4);
        assert_eq!(parts.len(), 4);
        parts.set(Part::Quarter(2), Aggregate::default());
        parts.set(Part::Hour, Aggregate::default());
        assert_eq!(parts.len(), 2);
        assert!(!parts.is_empty());
    }

    /// What hour parts were stored as before their quarters became a
    /// vector.
    #[derive(Debug, Serialize, Deserialize)]
    struct FormerHourParts {
        hour: Option<Aggregate>,
        quarters: BTreeMap<u8, Aggregate>,
    }

    fn with_handle(interactions: i64, handle_seconds: i64) -> Aggregate {
        let mut aggregate = with_interactions(interactions);
        aggregate.handle.record(handle_seconds * 1_000_000_000, 1);
        aggregate
    }

    proptest::proptest! {
        /// Hour parts encode byte for byte as they did with a `BTreeMap` of
        /// quarters, and decode what it encoded, whatever order the
        /// quarters came in; their vector holds no spare room.
        #[test]
        fn quarters_are_stored_as_the_map_they_were(
            hour in proptest::option::of((1i64..5, 1i64..100_000)),
            quarters in proptest::collection::vec((0u8..4, 1i64..5, 1i64..100_000), 0..6),
        ) {
            let hour = hour.map(|(interactions, seconds)| with_handle(interactions, seconds));
            let mut parts = HourParts::default();
            let mut former = FormerHourParts { hour: hour.clone(), quarters: BTreeMap::new() };
            if let Some(hour) = hour {
                parts.set(Part::Hour, hour);
            }
            for (index, interactions, seconds) in quarters {
                parts.set(Part::Quarter(index), with_handle(interactions, seconds));
                former.quarters.insert(index, with_handle(interactions, seconds));
            }
            let bytes = encode(&parts).unwrap();
            proptest::prop_assert_eq!(&bytes, &encode(&former).unwrap());
            let decoded: HourParts = decode(b"Ap", &bytes).unwrap();
            proptest::prop_assert_eq!(&decoded, &parts);
            proptest::prop_assert_eq!(decoded.quarters.0.capacity(), former.quarters.len());
            proptest::prop_assert_eq!(parts.quarters.0.capacity(), former.quarters.len());
            for index in 0..4 {
                proptest::prop_assert_eq!(parts.get(Part::Quarter(index)), former.quarters.get(&index));
            }
        }
    }

    /// A quarter given twice in stored bytes keeps its last value, as the
    /// map did.
    #[test]
    fn a_repeated_quarter_keeps_its_last_value() {
        let bytes = encode(&HourParts {
            hour: None,
            quarters: Quarters(vec![(1, with_interactions(1)), (1, with_interactions(2))]),
        })
        .unwrap();
        let former: FormerHourParts = decode(b"Ap", &bytes).unwrap();
        assert_eq!(former.quarters, BTreeMap::from([(1, with_interactions(2))]));
        let decoded: HourParts = decode(b"Ap", &bytes).unwrap();
        assert_eq!(decoded.get(Part::Quarter(1)), Some(&with_interactions(2)));
        assert_eq!(decoded.quarters.len(), 1);
    }

    /// A quarter index past the hour's last (a map would have taken it, and a
    /// read would have counted it in a later hour) is damage.
    #[test]
    fn a_quarter_past_the_hour_does_not_decode() {
        for index in [4, 255] {
            let bytes = encode(&HourParts {
                hour: None,
                quarters: Quarters(vec![
                    (0, with_interactions(1)),
                    (index, with_interactions(2)),
                ]),
            })
            .unwrap();
            match decode::<HourParts>(b"Ap", &bytes) {
                Err(Error::DataLoss(message)) => {
                    assert!(message.contains("does not decode"), "{message}")
                }
                other => panic!("index {index}: expected data loss, got {other:?}"),
            }
        }
        let last = encode(&HourParts {
            hour: None,
            quarters: Quarters(vec![(3, with_interactions(1))]),
        })
        .unwrap();
        let decoded: HourParts = decode(b"Ap", &last).unwrap();
        assert_eq!(decoded.get(Part::Quarter(3)), Some(&with_interactions(1)));
    }
}
