//! A mergeable, log-bucketed duration histogram of the DDSketch kind: exact count
//! and sum, percentiles within 1% relative error, and exact removal (a value is
//! always filed in the same bucket, so subtracting it undoes adding it).

use serde::{Deserialize, Serialize};

use super::time::NANOS_PER_SECOND;

/// Relative accuracy of a reported percentile (kept a hair under 1% so that float
/// rounding cannot push the bound over the promised 1%).
pub const RELATIVE_ACCURACY: f64 = 0.0099;

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

/// Counts of durations (nanoseconds) by logarithmic bucket. Counts are signed so
/// that a delta (new contribution minus old) is a histogram too.
///
/// The buckets are dense: `buckets[i]` counts bucket `offset + i`, and the vector
/// never begins or ends with a zero (an empty histogram has no buckets and offset
/// 0), so equal histograms are equal values. Decoding, merging and checking one
/// are then plain array work, which is what the writer does most.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredHistogram")]
pub struct DurationHistogram {
    pub count: i64,
    pub sum_nanos: i128,
    zero_count: i64,
    offset: i32,
    #[serde(with = "zero_runs")]
    buckets: Vec<i64>,
}

/// A histogram as stored, the same fields in the same order, checked before
/// it becomes one: its buckets must lie within the indexes a duration can
/// have (`0..MAX_BUCKETS`), so that merging and covering never overflow, and
/// an empty one must have offset 0, so that equal histograms stay equal
/// values. Only a damaged store holds anything else.
#[derive(Deserialize)]
struct StoredHistogram {
    count: i64,
    sum_nanos: i128,
    zero_count: i64,
    offset: i32,
    #[serde(with = "zero_runs")]
    buckets: Vec<i64>,
}

impl TryFrom<StoredHistogram> for DurationHistogram {
    type Error = String;

    fn try_from(stored: StoredHistogram) -> Result<DurationHistogram, String> {
        let StoredHistogram {
            count,
            sum_nanos,
            zero_count,
            offset,
            buckets,
        } = stored;
        let within = if buckets.is_empty() {
            offset == 0
        } else {
            usize::try_from(offset)
                .is_ok_and(|first| first + buckets.len() <= zero_runs::MAX_BUCKETS)
        };
        if !within {
            return Err(format!(
                "histogram buckets from index {offset}, {} of them, are not within 0..{}",
                buckets.len(),
                zero_runs::MAX_BUCKETS
            ));
        }
        Ok(DurationHistogram {
            count,
            sum_nanos,
            zero_count,
            offset,
            buckets,
        })
    }
}

impl DurationHistogram {
    /// Adds (`sign` = 1) or removes (`sign` = -1) one duration.
    pub fn record(&mut self, nanos: i64, sign: i64) {
        self.count += sign;
        self.sum_nanos += i128::from(nanos) * i128::from(sign);
        if nanos <= 0 {
            self.zero_count += sign;
        } else {
            let index = bucket_index(nanos);
            self.cover(index, index);
            self.buckets[(index - self.offset) as usize] += sign;
            self.trim();
        }
    }

    /// The bytes its buckets take on the heap (the rest is inline).
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<i64>()
    }

    /// Adds `other` times `sign` into this histogram.
    pub fn merge(&mut self, other: &DurationHistogram, sign: i64) {
        self.count += other.count * sign;
        self.sum_nanos += other.sum_nanos * i128::from(sign);
        self.zero_count += other.zero_count * sign;
        if other.buckets.is_empty() {
            return;
        }
        self.cover(other.offset, other.offset + other.buckets.len() as i32 - 1);
        let start = (other.offset - self.offset) as usize;
        for (slot, &count) in self.buckets[start..].iter_mut().zip(&other.buckets) {
            *slot += count * sign;
        }
        self.trim();
    }

    /// Grows the buckets (with zeros) to cover indexes `low..=high`.
    fn cover(&mut self, low: i32, high: i32) {
        if self.buckets.is_empty() {
            self.offset = low;
            self.buckets = vec![0; (high - low + 1) as usize];
            return;
        }
        if low < self.offset {
            let extra = (self.offset - low) as usize;
            self.buckets.splice(0..0, std::iter::repeat_n(0, extra));
            self.offset = low;
        }
        let end = self.offset + self.buckets.len() as i32 - 1;
        if high > end {
            self.buckets
                .resize(self.buckets.len() + (high - end) as usize, 0);
        }
    }

    /// Drops zero buckets at both ends.
    fn trim(&mut self) {
        let Some(first) = self.buckets.iter().position(|&c| c != 0) else {
            self.buckets.clear();
            self.offset = 0;
            return;
        };
        let last = self.buckets.iter().rposition(|&c| c != 0).unwrap_or(first);
        self.buckets.truncate(last + 1);
        if first > 0 {
            self.buckets.drain(..first);
            self.offset += first as i32;
        }
    }

    fn nonzero_buckets(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, &count)| count != 0)
            .map(|(i, &count)| (self.offset + i as i32, count))
    }

    pub fn is_zero(&self) -> bool {
        self.count == 0 && self.sum_nanos == 0 && self.zero_count == 0 && self.buckets.is_empty()
    }

    /// True when no count is negative (a stored histogram must never be).
    pub fn is_non_negative(&self) -> bool {
        self.count >= 0 && self.zero_count >= 0 && self.buckets.iter().all(|&c| c >= 0)
    }

    /// Whether adding `delta` leaves no count negative, given that none is
    /// now: only the counts `delta` changes are looked at, so a large
    /// histogram is checked in the time of a small delta.
    pub fn stays_non_negative_with(&self, delta: &DurationHistogram) -> bool {
        self.count + delta.count >= 0
            && self.zero_count + delta.zero_count >= 0
            && delta.buckets.iter().enumerate().all(|(slot, &change)| {
                change >= 0 || self.count_at(i64::from(delta.offset) + slot as i64) + change >= 0
            })
    }

    /// The count of bucket `index` (zero outside the stored range).
    fn count_at(&self, index: i64) -> i64 {
        usize::try_from(index - i64::from(self.offset))
            .ok()
            .and_then(|slot| self.buckets.get(slot))
            .copied()
            .unwrap_or(0)
    }

    /// Exact mean in seconds, absent when empty.
    pub fn mean_seconds(&self) -> Option<f64> {
        (self.count > 0)
            .then(|| self.sum_nanos as f64 / self.count as f64 / NANOS_PER_SECOND as f64)
    }

    /// The nearest-rank percentile (the value at rank ⌈q·n⌉ of the sorted values),
    /// in seconds, within 1% relative error; absent when empty.
    pub fn quantile_seconds(&self, quantile: f64) -> Option<f64> {
        if self.count <= 0 {
            return None;
        }
        let rank = ((quantile * self.count as f64).ceil() as i64).clamp(1, self.count);
        let mut seen = self.zero_count;
        if seen >= rank {
            return Some(0.0);
        }
        for (index, count) in self.nonzero_buckets() {
            seen += count;
            if seen >= rank {
                return Some(bucket_value_nanos(index) / NANOS_PER_SECOND as f64);
            }
        }
        self.nonzero_buckets()
            .last()
            .map(|(index, _)| bucket_value_nanos(index) / NANOS_PER_SECOND as f64)
    }
}

/// The bucket `i` holding `x` satisfies γ^(i-1) < x ≤ γ^i.
fn bucket_index(nanos: i64) -> i32 {
    ((nanos as f64).ln() / gamma().ln()).ceil() as i32
}

/// The value that is within the relative accuracy of everything in bucket `i`.
fn bucket_value_nanos(index: i32) -> f64 {
    let gamma = gamma();
    2.0 * gamma.powi(index) / (gamma + 1.0)
}

/// The stored form of a histogram's buckets: one byte string of zigzag
/// varints (postcard's encoding of an `i64`), each count that is not zero as
/// it is, and each run of zeros as a 0 followed by the run's length. A day's
/// response times spread over a few hundred buckets, most of them empty.
/// Being one byte string, it is decoded by one loop over the bytes rather
/// than by a serde call per count (store format 7; format 6 stored the same
/// numbers as a sequence, which took 10-25% longer to decode).
mod zero_runs {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    /// More buckets than any duration in nanoseconds needs (an i64 of
    /// nanoseconds is below bucket 2,300), so that a damaged length cannot
    /// make decoding allocate without bound.
    pub const MAX_BUCKETS: usize = 4096;

    /// The runs of `buckets`: `(count, 1)` for a count that is not zero,
    /// `(0, length)` for a run of zeros.
    fn runs(buckets: &[i64]) -> impl Iterator<Item = (i64, usize)> + '_ {
        let mut rest = buckets;
        std::iter::from_fn(move || {
            let (&first, _) = rest.split_first()?;
            let length = if first == 0 {
                rest.iter().take_while(|&&count| count == 0).count()
            } else {
                1
            };
            rest = &rest[length..];
            Some((first, length))
        })
    }

    pub(super) fn put_varint(bytes: &mut Vec<u8>, value: i64) {
        let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
        while zigzag >= 0x80 {
            bytes.push(zigzag as u8 | 0x80);
            zigzag >>= 7;
        }
        bytes.push(zigzag as u8);
    }

    /// The next varint of `bytes`, as postcard reads an `i64`: at most 10
    /// bytes, the tenth at most 1. `None`: the bytes end or it is too long.
    #[inline]
    pub(super) fn take_varint(bytes: &mut &[u8]) -> Option<i64> {
        // Most counts of a bucket fit one byte.
        if let Some((&byte, rest)) = bytes.split_first() {
            if byte < 0x80 {
                *bytes = rest;
                return Some(unzigzag(u64::from(byte)));
            }
        }
        take_long_varint(bytes)
    }

    /// The `i64` a zigzag-encoded `u64` stands for (0, -1, 1, -2, …).
    #[inline]
    fn unzigzag(zigzag: u64) -> i64 {
        (zigzag >> 1) as i64 ^ -((zigzag & 1) as i64)
    }

    fn take_long_varint(bytes: &mut &[u8]) -> Option<i64> {
        let mut zigzag = 0u64;
        for index in 0..10 {
            let (&byte, rest) = bytes.split_first()?;
            *bytes = rest;
            zigzag |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                if index == 9 && byte > 1 {
                    return None;
                }
                return Some(unzigzag(zigzag));
            }
        }
        None
    }

    pub fn serialize<S: Serializer>(buckets: &[i64], serializer: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::with_capacity(buckets.len());
        for (count, length) in runs(buckets) {
            put_varint(&mut bytes, count);
            if count == 0 {
                put_varint(&mut bytes, length as i64);
            }
        }
        serializer.serialize_bytes(&bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<i64>, D::Error> {
        deserializer.deserialize_bytes(ZeroRuns)
    }

    struct ZeroRuns;

    impl<'de> Visitor<'de> for ZeroRuns {
        type Value = Vec<i64>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("bucket counts, each run of zeros as 0 and its length")
        }

        fn visit_bytes<E: de::Error>(self, mut bytes: &[u8]) -> Result<Vec<i64>, E> {
            let too_many = || E::custom(format!("more than {MAX_BUCKETS} buckets"));
            let not_varint = || E::custom("a bucket count is not a varint");
            let mut buckets = Vec::with_capacity(bytes.len().min(MAX_BUCKETS));
            while !bytes.is_empty() {
                let count = take_varint(&mut bytes).ok_or_else(not_varint)?;
                if count != 0 {
                    if buckets.len() == MAX_BUCKETS {
                        return Err(too_many());
                    }
                    buckets.push(count);
                    continue;
                }
                if bytes.is_empty() {
                    return Err(E::custom("a run of zeros lacks its length"));
                }
                let length = take_varint(&mut bytes).ok_or_else(not_varint)?;
                let length = usize::try_from(length)
                    .ok()
                    .filter(|&length| length > 0)
                    .ok_or_else(|| E::custom(format!("a run of {length} zeros is not a run")))?;
                if length > MAX_BUCKETS - buckets.len() {
                    return Err(too_many());
                }
                buckets.resize(buckets.len() + length, 0);
            }
            if buckets.first() == Some(&0) || buckets.last() == Some(&0) {
                return Err(E::custom("the buckets begin or end with a zero"));
            }
            Ok(buckets)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bucket indexes no duration has (a merge would overflow on them), and
    /// an empty histogram with an offset, do not decode; the last index a
    /// duration can have does.
    #[test]
    fn stored_buckets_outside_the_durations_indexes_do_not_decode() {
        let with = |offset: i32, buckets: Vec<i64>| DurationHistogram {
            count: buckets.iter().sum(),
            sum_nanos: 1,
            zero_count: 0,
            offset,
            buckets,
        };
        let decoded = |histogram: &DurationHistogram| {
            postcard::from_bytes::<DurationHistogram>(&postcard::to_allocvec(histogram).unwrap())
        };
        let last = zero_runs::MAX_BUCKETS as i32 - 1;
        for damaged in [
            with(i32::MAX - 1, vec![1, 1]),
            with(-1, vec![1]),
            with(last, vec![1, 1]),
            with(7, Vec::new()),
        ] {
            assert!(decoded(&damaged).is_err(), "{damaged:?} decoded");
        }
        let at_the_edge = with(last, vec![1]);
        assert_eq!(decoded(&at_the_edge).unwrap(), at_the_edge);
        let mut recorded = DurationHistogram::default();
        recorded.record(i64::MAX, 1);
        assert_eq!(decoded(&recorded).unwrap(), recorded);
    }

    fn exact_nearest_rank(values: &mut [i64], quantile: f64) -> f64 {
        values.sort_unstable();
        let rank = ((quantile * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1] as f64 / NANOS_PER_SECOND as f64
    }

    #[test]
    fn empty_histogram_has_no_mean_and_no_percentile() {
        let histogram = DurationHistogram::default();
        assert_eq!(histogram.mean_seconds(), None);
        assert_eq!(histogram.quantile_seconds(0.5), None);
    }

    #[test]
    fn zero_durations_are_reported_as_zero() {
        let mut histogram = DurationHistogram::default();
        histogram.record(0, 1);
        histogram.record(0, 1);
        histogram.record(10 * NANOS_PER_SECOND, 1);
        assert_eq!(histogram.quantile_seconds(0.5), Some(0.0));
        assert!((histogram.quantile_seconds(0.9).unwrap() - 10.0).abs() <= 0.1);
    }

    fn stored(histogram: &DurationHistogram) -> Vec<u8> {
        postcard::to_stdvec(histogram).unwrap()
    }

    #[test]
    fn buckets_store_runs_of_zeros_as_their_length() {
        let mut histogram = DurationHistogram::default();
        histogram.record(60 * NANOS_PER_SECOND, 1);
        histogram.record(3 * 86_400 * NANOS_PER_SECOND, 1);
        // Two counts over 400 buckets apart (a factor of 4,320 at 2% a bucket).
        assert!(histogram.buckets.len() > 400);
        let bytes = stored(&histogram);
        assert!(bytes.len() < 30, "{} bytes", bytes.len());
        assert_eq!(
            postcard::from_bytes::<DurationHistogram>(&bytes).unwrap(),
            histogram
        );
    }

    #[test]
    fn damaged_runs_do_not_read() {
        // count, sum, zero count, offset, then the runs: a byte string of
        // varints. A Vec<u8> is written as a byte string is: its length,
        // then the bytes.
        let head = (1u8, 1u8, 0u8, 2u8);
        let raw = |varints: &[u8]| {
            let mut bytes = postcard::to_stdvec(&head).unwrap();
            bytes.extend(postcard::to_stdvec(&varints.to_vec()).unwrap());
            bytes
        };
        // The elements each encoded as postcard encodes an i64.
        let runs = |elements: &[i64]| {
            let varints: Vec<u8> = elements
                .iter()
                .flat_map(|element| postcard::to_stdvec(element).unwrap())
                .collect();
            raw(&varints)
        };
        assert!(postcard::from_bytes::<DurationHistogram>(&runs(&[1])).is_ok());
        assert!(postcard::from_bytes::<DurationHistogram>(&raw(&[2])).is_ok());
        for damaged in [
            runs(&[1, 0, 0, 1]),                            // a run of no zeros
            runs(&[1, 0, -2, 1]),                           // a run of a negative length
            runs(&[1, 0]),                                  // a run without its length
            runs(&[1, 0, 5_000, 1]),                        // more buckets than any duration needs
            runs(&[0, 2, 1]),                               // begins with zeros
            runs(&[1, 0, 2]),                               // ends with zeros
            raw(&[0x82]),                                   // the last byte continues
            raw(&[0xff; 11]),                               // longer than any i64's
            raw(&[[0x80; 9].as_slice(), &[0x02]].concat()), // past 64 bits
        ] {
            assert!(
                postcard::from_bytes::<DurationHistogram>(&damaged).is_err(),
                "{damaged:x?} read"
            );
        }
    }

    /// Every length of continuing bytes (of all-zero and all-one payloads),
    /// then every last byte: read as postcard reads an i64, overlong and
    /// overflowing varints refused alike.
    #[test]
    fn varint_edges_read_as_postcard_reads_them() {
        for continuing in [0x80u8, 0xff] {
            for length in 0..=10 {
                for last in 0..=u8::MAX {
                    let bytes = [vec![continuing; length], vec![last]].concat();
                    let mut rest = bytes.as_slice();
                    let ours = zero_runs::take_varint(&mut rest).map(|value| (value, rest));
                    let postcards = postcard::take_from_bytes::<i64>(&bytes).ok();
                    assert_eq!(ours, postcards, "{bytes:x?}");
                }
            }
        }
    }

    proptest! {
        /// The bucket varints are postcard's encoding of an i64: written
        /// byte for byte as postcard writes it, read back as postcard does.
        #[test]
        fn bucket_varints_are_postcards(value in any::<i64>(), tail in prop::collection::vec(any::<u8>(), 0..3)) {
            let mut written = Vec::new();
            zero_runs::put_varint(&mut written, value);
            let postcards = postcard::to_stdvec(&value).unwrap();
            prop_assert_eq!(&written, &postcards);
            let bytes = [postcards.as_slice(), &tail].concat();
            let mut rest = bytes.as_slice();
            prop_assert_eq!(zero_runs::take_varint(&mut rest), Some(value));
            prop_assert_eq!(rest, tail.as_slice());
        }

        /// Any bytes, damaged ones included, read as postcard reads an i64:
        /// up to 10 bytes that continue, then any byte, then anything.
        #[test]
        fn any_bytes_read_as_postcard_reads_them(
            continuing in prop::collection::vec(0x80u8.., 0..=10),
            last in any::<u8>(),
            tail in prop::collection::vec(any::<u8>(), 0..2),
        ) {
            let bytes = [continuing.as_slice(), &[last], &tail].concat();
            let mut rest = bytes.as_slice();
            let ours = zero_runs::take_varint(&mut rest).map(|value| (value, rest));
            let postcards = postcard::take_from_bytes::<i64>(&bytes).ok();
            prop_assert_eq!(ours, postcards);
        }

        #[test]
        fn percentiles_are_within_one_percent_of_nearest_rank(
            mut values in prop::collection::vec(0i64..7 * 86_400 * NANOS_PER_SECOND, 1..300),
            quantile in prop::sample::select(vec![0.5, 0.9, 0.99]),
        ) {
            let mut histogram = DurationHistogram::default();
            for &value in &values {
                histogram.record(value, 1);
            }
            let exact = exact_nearest_rank(&mut values, quantile);
            let approx = histogram.quantile_seconds(quantile).unwrap();
            prop_assert!((approx - exact).abs() <= exact * 0.01, "approx {approx} exact {exact}");
            let sum: i128 = values.iter().map(|&v| i128::from(v)).sum();
            prop_assert_eq!(histogram.sum_nanos, sum);
        }

        #[test]
        fn a_histogram_reads_back_as_it_was_stored(
            durations in prop::collection::vec(
                (prop::sample::select(vec![0i64, 1, 999, 60_000_000_000, 1 << 50, i64::MAX]), prop::bool::ANY),
                0..30,
            ),
        ) {
            let mut histogram = DurationHistogram::default();
            for (nanos, remove) in durations {
                histogram.record(nanos, if remove { -1 } else { 1 });
            }
            let read: DurationHistogram = postcard::from_bytes(&stored(&histogram)).unwrap();
            prop_assert_eq!(read, histogram);
        }

        #[test]
        fn removing_what_was_added_leaves_exactly_the_rest(
            kept in prop::collection::vec(0i64..1_000_000_000_000, 0..50),
            removed in prop::collection::vec(0i64..1_000_000_000_000, 0..50),
        ) {
            let mut expected = DurationHistogram::default();
            let mut histogram = DurationHistogram::default();
            for &value in &kept {
                expected.record(value, 1);
                histogram.record(value, 1);
            }
            let mut delta = DurationHistogram::default();
            for &value in &removed {
                histogram.record(value, 1);
                delta.record(value, 1);
            }
            histogram.merge(&delta, -1);
            prop_assert_eq!(histogram, expected);
        }
    }
}
