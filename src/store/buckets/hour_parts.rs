//! The stored form of an hour's quarter buckets, kept together under one
//! key (`A p scope hour`, see the module above). An hour has no bucket of
//! its own: a read of the hour sums its quarters.

use serde::{Deserialize, Serialize};

use crate::domain::aggregate::Aggregate;
use crate::domain::time::QUARTER_SECONDS;
use crate::error::Result;

use super::{ensure_stays_non_negative, QUARTERS_PER_HOUR};

/// The quarter buckets of an hour that are not zero, by their index in the
/// hour (0–3), in index order, held as a vector exactly as long as it needs:
/// a `BTreeMap` keeps even one entry in a node with room for eleven
/// aggregates (~8 KB), and a commit decodes hours by the hundred. Stored as
/// a map from index to aggregate, byte for byte what a
/// `BTreeMap<u8, Aggregate>` is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HourParts(Vec<(u8, Aggregate)>);

impl HourParts {
    /// Where `index` is, or would go.
    fn position(&self, index: u8) -> std::result::Result<usize, usize> {
        self.0.binary_search_by_key(&index, |(at, _)| *at)
    }

    /// The quarter at `index`, if it is not zero.
    pub fn get(&self, index: u8) -> Option<&Aggregate> {
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

    /// Replaces the quarter at `index`; a zero aggregate removes it.
    pub fn set(&mut self, index: u8, aggregate: Aggregate) {
        if aggregate.is_zero() {
            self.remove(index);
        } else {
            *self.get_or_default(index) = aggregate;
        }
    }

    fn remove(&mut self, index: u8) {
        if let Ok(position) = self.position(index) {
            self.0.remove(position);
        }
    }

    /// Adds `delta` to the quarter at `index`; one that adds up to zero is
    /// removed.
    pub fn add(&mut self, index: u8, delta: &Aggregate) {
        let aggregate = self.get_or_default(index);
        aggregate.merge(delta, 1);
        if aggregate.is_zero() {
            self.remove(index);
        }
    }

    /// [`ensure_stays_non_negative`] for the quarter at `index`, the bucket
    /// at `bucket`.
    pub fn ensure_stays_non_negative(
        &self,
        index: u8,
        delta: &Aggregate,
        bucket: &[u8],
    ) -> Result<()> {
        match self.get(index) {
            Some(aggregate) => ensure_stays_non_negative(aggregate, delta, bucket),
            None => ensure_stays_non_negative(&Aggregate::default(), delta, bucket),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many quarters the value holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Every quarter that is not zero, in index order.
    pub fn quarters(&self) -> impl Iterator<Item = &Aggregate> {
        self.0.iter().map(|(_, aggregate)| aggregate)
    }

    /// The bytes it takes in memory: itself, its vector and every
    /// quarter's histograms.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<HourParts>()
            + self.0.capacity() * std::mem::size_of::<(u8, Aggregate)>()
            + self.quarters().map(Aggregate::heap_bytes).sum::<usize>()
    }

    /// The quarters that start in `from..to`, given that the hour starts at
    /// `hour` (seconds).
    pub fn within(&self, hour: i64, from: i64, to: i64) -> impl Iterator<Item = &Aggregate> {
        self.0
            .iter()
            .filter(move |(index, _)| {
                (from..to).contains(&(hour + i64::from(*index) * QUARTER_SECONDS))
            })
            .map(|(_, aggregate)| aggregate)
    }
}

impl Serialize for HourParts {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(index, aggregate)| (index, aggregate)))
    }
}

impl<'de> Deserialize<'de> for HourParts {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<HourParts, D::Error> {
        struct QuartersVisitor;

        impl<'de> serde::de::Visitor<'de> for QuartersVisitor {
            type Value = HourParts;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a map of quarter indexes to aggregates")
            }

            /// As a `BTreeMap` would: a repeated index keeps its last value.
            /// An index past the hour's last quarter, which no write makes
            /// and a read would count in a later hour, does not decode.
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<HourParts, A::Error> {
                let mut parts = HourParts(Vec::with_capacity(
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
                    *parts.get_or_default(index) = map.next_value::<Aggregate>()?;
                }
                Ok(parts)
            }
        }

        deserializer.deserialize_map(QuartersVisitor)
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
    fn within_picks_the_quarters_that_start_in_the_window() {
        let hour = 480_000 * HOUR_SECONDS;
        let mut parts = HourParts::default();
        for (index, interactions) in [(0, 1), (2, 2), (3, 4)] {
            parts.set(index, with_interactions(interactions));
        }
        let sum = |from, to| -> i64 { parts.within(hour, from, to).map(|a| a.interactions).sum() };
        assert_eq!(sum(hour, hour + HOUR_SECONDS), 7);
        assert_eq!(sum(hour + 900, hour + 2700), 2);
        assert_eq!(sum(hour + 2700, hour + 3600), 4);
        assert_eq!(sum(hour + 3600, hour + 7200), 0);
        assert_eq!(parts.len(), 3);
        parts.add(2, &with_interactions(-2));
        parts.set(3, Aggregate::default());
        assert_eq!(parts.len(), 1);
        assert_eq!(parts.get(0), Some(&with_interactions(1)));
        assert!(!parts.is_empty());
    }

    fn with_handle(interactions: i64, handle_seconds: i64) -> Aggregate {
        let mut aggregate = with_interactions(interactions);
        aggregate.handle.record(handle_seconds * 1_000_000_000, 1);
        aggregate
    }

    proptest::proptest! {
        /// Hour parts encode byte for byte as a `BTreeMap` of quarters
        /// does, and decode what it encodes, whatever order the quarters
        /// came in; their vector holds no spare room.
        #[test]
        fn quarters_are_stored_as_a_map(
            quarters in proptest::collection::vec((0u8..4, 1i64..5, 1i64..100_000), 0..6),
        ) {
            let mut parts = HourParts::default();
            let mut map = BTreeMap::new();
            for (index, interactions, seconds) in quarters {
                parts.set(index, with_handle(interactions, seconds));
                map.insert(index, with_handle(interactions, seconds));
            }
            let bytes = encode(&parts).unwrap();
            proptest::prop_assert_eq!(&bytes, &encode(&map).unwrap());
            let decoded: HourParts = decode(b"Ap", &bytes).unwrap();
            proptest::prop_assert_eq!(&decoded, &parts);
            proptest::prop_assert_eq!(decoded.0.capacity(), map.len());
            proptest::prop_assert_eq!(parts.0.capacity(), map.len());
            for index in 0..4 {
                proptest::prop_assert_eq!(parts.get(index), map.get(&index));
            }
        }
    }

    /// A quarter given twice in stored bytes keeps its last value, as a map
    /// does.
    #[test]
    fn a_repeated_quarter_keeps_its_last_value() {
        let bytes = encode(&HourParts(vec![
            (1, with_interactions(1)),
            (1, with_interactions(2)),
        ]))
        .unwrap();
        let map: BTreeMap<u8, Aggregate> = decode(b"Ap", &bytes).unwrap();
        assert_eq!(map, BTreeMap::from([(1, with_interactions(2))]));
        let decoded: HourParts = decode(b"Ap", &bytes).unwrap();
        assert_eq!(decoded.get(1), Some(&with_interactions(2)));
        assert_eq!(decoded.len(), 1);
    }

    /// A quarter index past the hour's last (a map would take it, and a
    /// read would count it in a later hour) is damage.
    #[test]
    fn a_quarter_past_the_hour_does_not_decode() {
        for index in [4, 255] {
            let bytes = encode(&HourParts(vec![
                (0, with_interactions(1)),
                (index, with_interactions(2)),
            ]))
            .unwrap();
            match decode::<HourParts>(b"Ap", &bytes) {
                Err(Error::DataLoss(message)) => {
                    assert!(message.contains("does not decode"), "{message}")
                }
                other => panic!("index {index}: expected data loss, got {other:?}"),
            }
        }
        let last = encode(&HourParts(vec![(3, with_interactions(1))])).unwrap();
        let decoded: HourParts = decode(b"Ap", &last).unwrap();
        assert_eq!(decoded.get(3), Some(&with_interactions(1)));
    }
}
