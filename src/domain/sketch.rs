//! A mergeable duration histogram with exact removal, whose percentiles stay
//! within 1% of the exact nearest-rank value, never lie outside the values
//! they summarise, read identical values exactly, and sit on the same side
//! of a round target as the exact value does.
//!
//! How: buckets `(lower, upper]` whose width is at most 1% of `lower`, each
//! keeping its count and the sum of its durations' offsets from `lower`. A
//! percentile reads the mean of the bucket holding its rank: the exact value
//! lies in the same bucket, so they differ by less than the width; a mean
//! lies between the values it averages, and is each of them when they are
//! equal. The widths come from a ladder of round durations (1-2-5 below a
//! second, then 1 s, 2 s, 5 s, 10 s, 20 s, 1 min, 5 min, 15 min, 30 min, 1 h,
//! 2 h, 6 h, 12 h, 1 d, …), each used from 100 times itself, so that every
//! bucket edge is a multiple of its width: a target that is an edge (every
//! whole second up to 200 s, minute up to 500 min, quarter hour up to 50 h,
//! hour up to 200 h, day up to 200 d) never falls inside a bucket, and a
//! percentile is at most the target exactly when the exact value is.

use super::time::NANOS_PER_SECOND;

mod stored;
mod sum;

pub use stored::AddStoredBuckets;
pub use sum::HistogramSum;

const SECOND: i64 = NANOS_PER_SECOND;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// Bucket widths in nanoseconds, ascending: each is used from 100 times
/// itself (the first from 0) up to 100 times the next, which must be a
/// multiple of it so that the buckets meet the next region exactly.
const WIDTHS: [i64; 46] = [
    1,
    2,
    5,
    10,
    20,
    50,
    100,
    200,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    SECOND,
    2 * SECOND,
    5 * SECOND,
    10 * SECOND,
    20 * SECOND,
    MINUTE,
    5 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    2 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    2 * DAY,
    5 * DAY,
    10 * DAY,
    20 * DAY,
    50 * DAY,
];

/// One region of the ladder: durations in `(start, start + count × width]`.
#[derive(Clone, Copy)]
struct Region {
    start: i64,
    width: i64,
    /// The index of the bucket before its first (its buckets are
    /// `before + 1 ..= before + count`).
    before: u32,
}

const REGIONS: [Region; WIDTHS.len()] = regions();

const fn regions() -> [Region; WIDTHS.len()] {
    let mut regions = [Region {
        start: 0,
        width: 1,
        before: 0,
    }; WIDTHS.len()];
    let mut k = 1;
    while k < WIDTHS.len() {
        let previous = regions[k - 1];
        let start = 100 * WIDTHS[k];
        regions[k] = Region {
            start,
            width: WIDTHS[k],
            before: previous.before + ((start - previous.start) / previous.width) as u32,
        };
        k += 1;
    }
    regions
}

/// The bucket of durations ≤ 0.
const ZERO_BUCKET: u16 = 0;

/// The region holding `nanos` (> 0).
fn region_of(nanos: i64) -> Region {
    REGIONS[REGIONS.partition_point(|region| region.start < nanos) - 1]
}

/// The bucket holding `nanos`.
fn bucket_index(nanos: i64) -> u16 {
    if nanos <= 0 {
        return ZERO_BUCKET;
    }
    let region = region_of(nanos);
    let within = (nanos - region.start - 1) / region.width + 1;
    (region.before + within as u32) as u16
}

/// The largest index a duration has (that of `i64::MAX` nanoseconds).
const LAST_INDEX: u16 = {
    let last = REGIONS[REGIONS.len() - 1];
    let within = (i64::MAX - last.start - 1) / last.width + 1;
    (last.before + within as u32) as u16
};

/// The lower end (exclusive) of bucket `index`, and its width; the zero
/// bucket's lower end is 0 (its durations are at or below it).
fn bucket_bounds(index: u16) -> (i64, i64) {
    if index == ZERO_BUCKET {
        return (0, 0);
    }
    let position = REGIONS.partition_point(|region| region.before < u32::from(index)) - 1;
    let region = REGIONS[position];
    let within = i64::from(u32::from(index) - region.before);
    (region.start + (within - 1) * region.width, region.width)
}

/// A bucket that holds something: how many durations, and the sum of their
/// offsets from the bucket's lower end (for the zero bucket, the durations
/// themselves). Signed, so that a delta is a histogram too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    index: u16,
    count: i64,
    offsets: i128,
}

impl Bucket {
    fn is_empty(&self) -> bool {
        self.count == 0 && self.offsets == 0
    }

    #[inline]
    fn add(&mut self, other: &Bucket, sign: i64) {
        if sign == 1 {
            self.count += other.count;
            self.offsets += other.offsets;
        } else {
            self.count += other.count * sign;
            self.offsets += other.offsets * i128::from(sign);
        }
    }

    /// This bucket's counts times `sign`.
    fn times(&self, sign: i64) -> Bucket {
        Bucket {
            index: self.index,
            count: self.count * sign,
            offsets: self.offsets * i128::from(sign),
        }
    }

    /// Whether `count` durations of this bucket could have these offsets
    /// (each offset of a duration is in `1..=width`; the zero bucket's, ≤ 0).
    fn is_possible(&self) -> bool {
        let count = i128::from(self.count);
        if self.count < 0 {
            return false;
        }
        if self.index == ZERO_BUCKET {
            return self.offsets <= 0 && (self.count > 0 || self.offsets == 0);
        }
        let (_, width) = bucket_bounds(self.index);
        (count..=count * i128::from(width)).contains(&self.offsets)
    }

    /// The sum of its durations, in nanoseconds.
    fn sum_nanos(&self) -> i128 {
        let (lower, _) = bucket_bounds(self.index);
        i128::from(lower) * i128::from(self.count) + self.offsets
    }

    /// The mean of its durations, in seconds: exact (to the float) when they
    /// are all equal, and between the least and the greatest of them.
    fn mean_seconds(&self) -> f64 {
        let count = i128::from(self.count);
        let sum = self.sum_nanos();
        let whole = sum.div_euclid(count);
        let part = sum.rem_euclid(count);
        (whole as f64 + part as f64 / count as f64) / NANOS_PER_SECOND as f64
    }
}

/// Durations (nanoseconds) by bucket: only buckets that hold something, by
/// index, so equal histograms are equal values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurationHistogram {
    buckets: Vec<Bucket>,
}

/// Merging a delta this small updates buckets in place; a larger one is
/// merged in one pass over both.
const IN_PLACE_MERGE: usize = 8;

impl DurationHistogram {
    /// Adds (`sign` = 1) or removes (`sign` = -1) one duration.
    pub fn record(&mut self, nanos: i64, sign: i64) {
        let index = bucket_index(nanos);
        let (lower, _) = bucket_bounds(index);
        let one = Bucket {
            index,
            count: 1,
            offsets: i128::from(nanos) - i128::from(lower),
        };
        self.add_bucket(&one, sign);
    }

    fn add_bucket(&mut self, bucket: &Bucket, sign: i64) {
        match self
            .buckets
            .binary_search_by_key(&bucket.index, |mine| mine.index)
        {
            Ok(position) => {
                self.buckets[position].add(bucket, sign);
                if self.buckets[position].is_empty() {
                    self.buckets.remove(position);
                }
            }
            Err(position) => {
                let added = bucket.times(sign);
                if !added.is_empty() {
                    self.buckets.insert(position, added);
                }
            }
        }
    }

    /// The bytes its buckets take on the heap (the rest is inline).
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Bucket>()
    }

    /// Adds `other` times `sign` into this histogram: bucket by bucket for
    /// a small `other`, in place when it has no bucket this one lacks (a
    /// read summing months of a scope, mostly), else in one pass over both.
    pub fn merge(&mut self, other: &DurationHistogram, sign: i64) {
        if other.buckets.len() <= IN_PLACE_MERGE {
            for bucket in &other.buckets {
                self.add_bucket(bucket, sign);
            }
        } else if self.holds_every_index_of(other) {
            let mut mine = self.buckets.iter_mut();
            let mut emptied = false;
            for theirs in &other.buckets {
                // Found: every index of `other` is here, in the same order.
                if let Some(bucket) = mine.find(|bucket| bucket.index == theirs.index) {
                    bucket.add(theirs, sign);
                    emptied |= bucket.is_empty();
                }
            }
            if emptied {
                self.buckets.retain(|bucket| !bucket.is_empty());
            }
        } else {
            self.merge_in_one_pass(other, sign);
        }
    }

    /// Whether every bucket index of `other` has a bucket here.
    fn holds_every_index_of(&self, other: &DurationHistogram) -> bool {
        let mut mine = self.buckets.iter().map(|bucket| bucket.index);
        other
            .buckets
            .iter()
            .all(|theirs| mine.any(|index| index == theirs.index))
    }

    /// Merges in one pass from the back, in this histogram's own vector
    /// (grown once, amortised): no new vector per merge, which a read
    /// summing a year of months would otherwise allocate a dozen times.
    fn merge_in_one_pass(&mut self, other: &DurationHistogram, sign: i64) {
        let (mine, theirs) = (self.buckets.len(), other.buckets.len());
        let placeholder = Bucket {
            index: 0,
            count: 0,
            offsets: 0,
        };
        self.buckets.resize(mine + theirs, placeholder);
        // Merged buckets fill `to..` from the back; `self.buckets[..i]` and
        // `other.buckets[..j]` are still to merge.
        let (mut i, mut j, mut to) = (mine, theirs, mine + theirs);
        while j > 0 {
            let next = other.buckets[j - 1];
            let merged = match self.buckets[..i].last() {
                Some(&last) if last.index > next.index => {
                    i -= 1;
                    last
                }
                Some(&last) if last.index == next.index => {
                    i -= 1;
                    j -= 1;
                    let mut sum = last;
                    sum.add(&next, sign);
                    sum
                }
                _ => {
                    j -= 1;
                    next.times(sign)
                }
            };
            to -= 1;
            self.buckets[to] = merged;
        }
        // Shared indexes left a gap between the untouched front and the merged back.
        self.buckets.drain(i..to);
        self.buckets.retain(|bucket| !bucket.is_empty());
    }

    /// How many durations it holds.
    pub fn count(&self) -> i64 {
        self.buckets.iter().map(|bucket| bucket.count).sum()
    }

    /// The sum of its durations, in nanoseconds.
    pub fn sum_nanos(&self) -> i128 {
        self.buckets.iter().map(Bucket::sum_nanos).sum()
    }

    pub fn is_zero(&self) -> bool {
        self.buckets.is_empty()
    }

    /// True when it could hold durations: no count negative, and every
    /// bucket's offsets ones its count of durations could have (a stored
    /// histogram always can).
    pub fn is_non_negative(&self) -> bool {
        self.buckets.iter().all(Bucket::is_possible)
    }

    /// Whether adding `delta` keeps it [`is_non_negative`](Self::is_non_negative),
    /// given that it is now: only the buckets `delta` changes are looked at,
    /// so a large histogram is checked in the time of a small delta.
    pub fn stays_non_negative_with(&self, delta: &DurationHistogram) -> bool {
        delta.buckets.iter().all(|change| {
            let mut bucket = match self
                .buckets
                .binary_search_by_key(&change.index, |mine| mine.index)
            {
                Ok(position) => self.buckets[position],
                Err(_) => Bucket {
                    index: change.index,
                    count: 0,
                    offsets: 0,
                },
            };
            bucket.add(change, 1);
            bucket.is_possible()
        })
    }

    /// Exact mean in seconds, absent when empty.
    pub fn mean_seconds(&self) -> Option<f64> {
        let count = self.count();
        (count > 0).then(|| self.sum_nanos() as f64 / count as f64 / NANOS_PER_SECOND as f64)
    }

    /// The nearest-rank percentile (the value at rank ⌈q·n⌉ of the sorted
    /// values), in seconds, read as the mean of the bucket holding that rank
    /// (see the module's doc); absent when empty.
    pub fn quantile_seconds(&self, quantile: f64) -> Option<f64> {
        let count = self.count();
        if count <= 0 {
            return None;
        }
        let rank = ((quantile * count as f64).ceil() as i64).clamp(1, count);
        let mut seen = 0;
        let holding = self.buckets.iter().find(|bucket| {
            seen += bucket.count;
            seen >= rank
        })?;
        Some(holding.mean_seconds())
    }
}

#[cfg(test)]
mod tests {
    use super::stored::{unit_exponent, varint};
    use super::*;
    use proptest::prelude::*;
    use serde::de::DeserializeSeed;

    /// The exclusive lower end of `nanos`' bucket and its inclusive upper end.
    fn edges_around(nanos: i64) -> (i64, i128) {
        let (lower, width) = bucket_bounds(bucket_index(nanos));
        (lower, i128::from(lower) + i128::from(width))
    }

    #[test]
    fn the_ladder_meets_itself_and_fits_the_index() {
        for pair in REGIONS.windows(2) {
            let (previous, next) = (pair[0], pair[1]);
            assert!(previous.width < next.width && previous.start < next.start);
            assert_eq!((next.start - previous.start) % previous.width, 0);
        }
        let region = REGIONS[REGIONS.len() - 1];
        let within =
            (i128::from(i64::MAX) - i128::from(region.start) - 1) / i128::from(region.width) + 1;
        assert!(i128::from(region.before) + within < i128::from(u16::MAX));
        assert_eq!(bucket_index(i64::MAX), LAST_INDEX);
        assert_eq!(bucket_index(1), 1);
    }

    /// Every bucket is `(lower, lower + width]`, at most 1% of `lower` wide
    /// (or a single nanosecond), and begins where the one before ends.
    #[test]
    fn buckets_tile_the_durations_at_most_one_percent_wide() {
        let mut expected_lower = 0i64;
        for index in 1..=LAST_INDEX {
            let (lower, width) = bucket_bounds(index);
            assert_eq!(lower, expected_lower, "bucket {index}");
            assert!(
                width == 1 || lower >= 100 * width,
                "bucket {index}: {lower} + {width}"
            );
            assert_eq!(bucket_index(lower + 1), index);
            let upper = lower.saturating_add(width);
            assert_eq!(bucket_index(upper), index);
            expected_lower = upper;
        }
        assert_eq!(expected_lower, i64::MAX);
        assert_eq!(bucket_index(0), ZERO_BUCKET);
        assert_eq!(bucket_index(-5), ZERO_BUCKET);
    }

    /// The round values a target is set on, as the module's doc lists them.
    fn round_targets() -> Vec<i64> {
        let every = |step: i64, up_to: i64| (1..=up_to / step).map(move |n| n * step);
        every(SECOND, 200 * SECOND)
            .chain(every(MINUTE, 500 * MINUTE))
            .chain(every(15 * MINUTE, 50 * HOUR))
            .chain(every(HOUR, 200 * HOUR))
            .chain(every(DAY, 200 * DAY))
            .collect()
    }

    #[test]
    fn round_targets_are_bucket_edges() {
        for target in round_targets() {
            let (_, upper) = edges_around(target);
            assert_eq!(upper, i128::from(target), "{target} ns is inside a bucket");
        }
    }

    fn exact_nearest_rank(values: &mut [i64], quantile: f64) -> i64 {
        values.sort_unstable();
        let rank = ((quantile * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1]
    }

    fn seconds(nanos: i64) -> f64 {
        nanos as f64 / NANOS_PER_SECOND as f64
    }

    pub(super) fn histogram_of(values: &[i64]) -> DurationHistogram {
        let mut histogram = DurationHistogram::default();
        for &value in values {
            histogram.record(value, 1);
        }
        histogram
    }

    #[test]
    fn empty_histogram_has_no_mean_and_no_percentile() {
        let histogram = DurationHistogram::default();
        assert_eq!(histogram.mean_seconds(), None);
        assert_eq!(histogram.quantile_seconds(0.5), None);
        assert_eq!(histogram.count(), 0);
    }

    /// The cases issue 27 found: one answer of 600 s read 598.05, and an
    /// exact p90 of 3600 s read 3624.71, missing a target of 3600.
    #[test]
    fn a_single_value_and_an_exact_round_percentile_read_as_they_are() {
        let single = histogram_of(&[600 * SECOND]);
        assert_eq!(single.quantile_seconds(0.5), Some(600.0));
        let mixed = histogram_of(&[30 * SECOND, 120 * SECOND, 600 * SECOND, 3600 * SECOND]);
        assert_eq!(mixed.quantile_seconds(0.9), Some(3600.0));
        assert_eq!(mixed.quantile_seconds(0.5), Some(120.0));
        assert_eq!(mixed.mean_seconds(), Some(1087.5));
    }

    #[test]
    fn zero_and_negative_durations_read_as_themselves() {
        let histogram = histogram_of(&[0, 0, 10 * SECOND]);
        assert_eq!(histogram.quantile_seconds(0.5), Some(0.0));
        assert_eq!(histogram.quantile_seconds(0.9), Some(10.0));
        let negative = histogram_of(&[-SECOND]);
        assert_eq!(negative.quantile_seconds(0.5), Some(-1.0));
        assert_eq!(negative.sum_nanos(), -i128::from(SECOND));
    }

    pub(super) fn stored(histogram: &DurationHistogram) -> Vec<u8> {
        postcard::to_stdvec(histogram).unwrap()
    }

    #[test]
    fn a_bucket_takes_a_few_bytes() {
        // Two durations days apart: 2 buckets, each a step, a count and an
        // offset (a byte string's length first).
        let histogram = histogram_of(&[60 * SECOND, 3 * DAY + 7]);
        assert_eq!(histogram.buckets.len(), 2);
        let bytes = stored(&histogram);
        assert!(bytes.len() <= 20, "{} bytes", bytes.len());
        assert_eq!(
            postcard::from_bytes::<DurationHistogram>(&bytes).unwrap(),
            histogram
        );
    }

    /// Durations in whole seconds store their offsets in seconds: a byte
    /// or two a bucket, where nanoseconds took five or more.
    #[test]
    fn whole_seconds_are_stored_in_seconds() {
        // From 101 s on, bucket edges are whole seconds too (below, half seconds).
        let values: Vec<i64> = (0..200).map(|n| (101 + 37 * n) * SECOND).collect();
        let histogram = histogram_of(&values);
        assert_eq!(unit_exponent(&histogram.buckets), 9);
        let bytes = stored(&histogram);
        assert!(
            bytes.len() <= 4 * histogram.buckets.len() + 4,
            "{} bytes",
            bytes.len()
        );
        assert_eq!(
            postcard::from_bytes::<DurationHistogram>(&bytes).unwrap(),
            histogram
        );
        let mut finer = histogram.clone();
        finer.record(HOUR + 1, 1);
        assert_eq!(unit_exponent(&finer.buckets), 0);
        assert_eq!(
            postcard::from_bytes::<DurationHistogram>(&stored(&finer)).unwrap(),
            finer
        );
    }

    /// Stored histograms that only a damaged store holds.
    pub(super) fn damaged_stored_histograms() -> Vec<Vec<u8>> {
        let raw = |numbers: &[u128]| {
            let mut varints = Vec::new();
            for &number in numbers {
                varint::put(&mut varints, number);
            }
            postcard::to_stdvec(&varints).unwrap()
        };
        let zig = |value: i128| varint::zigzag(value);
        let past_the_last = u128::from(LAST_INDEX) + 1;
        vec![
            raw(&[13, 5, zig(1), zig(0)]),             // a unit past 10^12
            raw(&[12, 5, zig(1), zig(i128::MAX / 2)]), // offsets past an i128 in that unit
            raw(&[3]),                                 // a unit and no bucket
            raw(&[0, past_the_last, zig(1), zig(0)]),  // an index no duration has
            raw(&[0, 2, zig(1), zig(0), past_the_last - 3, zig(1), zig(0)]), // stepping past the last
            raw(&[0, u128::from(u64::MAX >> 1), zig(1), zig(0)]),            // a 63-bit step
            raw(&[0, u128::MAX, zig(1), zig(0)]), // a step past any index
            raw(&[0, 5, zig(0), zig(0)]),         // an empty bucket
            raw(&[0, 5, zig(1)]),                 // a bucket without its offsets
            raw(&[0, 5, zig(i128::from(i64::MAX) + 1), zig(0)]), // a count past an i64
            postcard::to_stdvec(&vec![0x85u8]).unwrap(), // the last byte continues
            postcard::to_stdvec(&vec![0xffu8; 20]).unwrap(), // longer than a u128's
        ]
    }

    #[test]
    fn damaged_buckets_do_not_read() {
        let mut varints = Vec::new();
        for number in [3, 5, varint::zigzag(1), varint::zigzag(2)] {
            varint::put(&mut varints, number);
        }
        // A unit of 10^3 ns, then bucket 5 holding one duration 2,000 ns past its lower end.
        let good =
            postcard::from_bytes::<DurationHistogram>(&postcard::to_stdvec(&varints).unwrap())
                .unwrap();
        assert_eq!(good.buckets[0].offsets, 2_000);
        for damaged in damaged_stored_histograms() {
            assert!(
                postcard::from_bytes::<DurationHistogram>(&damaged).is_err(),
                "{damaged:x?} read"
            );
        }
    }

    /// Durations that share buckets with each other and with round targets:
    /// a few round values, each perhaps a little off.
    fn durations_near_round_values() -> impl Strategy<Value = i64> {
        (
            prop::sample::select(vec![
                90 * SECOND,
                5 * MINUTE,
                HOUR,
                8 * HOUR,
                48 * HOUR,
                7 * DAY,
            ]),
            prop::sample::select(vec![-2 * MINUTE, -SECOND, -1, 0, 0, 0, 1, SECOND, MINUTE]),
        )
            .prop_map(|(round, off)| round + off)
    }

    fn any_durations() -> impl Strategy<Value = Vec<i64>> {
        prop_oneof![
            prop::collection::vec(0i64..7 * DAY, 1..300),
            prop::collection::vec(durations_near_round_values(), 1..60),
        ]
    }

    proptest! {
        /// Within 1% of the exact nearest-rank value, never outside the
        /// values' range, and a target on a round value judged as the exact
        /// value would be.
        #[test]
        fn percentiles_are_close_inside_the_range_and_on_the_targets_side(
            mut values in any_durations(),
            quantile in prop::sample::select(vec![0.5, 0.9, 0.99]),
        ) {
            let histogram = histogram_of(&values);
            let exact = exact_nearest_rank(&mut values, quantile);
            let reported = histogram.quantile_seconds(quantile).unwrap();
            let exact_seconds = seconds(exact);
            prop_assert!((reported - exact_seconds).abs() <= exact_seconds.abs() * 0.01,
                "reported {reported} exact {exact_seconds}");
            let (least, greatest) = (values[0], values[values.len() - 1]);
            prop_assert!(seconds(least) <= reported && reported <= seconds(greatest),
                "reported {reported} outside {least}..={greatest} ns");
            for target in [90 * SECOND, 5 * MINUTE, HOUR, 8 * HOUR, 48 * HOUR, 7 * DAY] {
                prop_assert_eq!(reported <= seconds(target), exact <= target,
                    "target {} s, reported {}, exact {}", seconds(target), reported, exact_seconds);
            }
            let sum: i128 = values.iter().map(|&v| i128::from(v)).sum();
            prop_assert_eq!(histogram.sum_nanos(), sum);
            prop_assert_eq!(histogram.count(), values.len() as i64);
        }

        #[test]
        fn a_percentile_of_equal_values_is_that_value(
            value in 0i64..i64::MAX,
            count in 1usize..50,
            quantile in prop::sample::select(vec![0.5, 0.9, 0.99]),
        ) {
            let histogram = histogram_of(&vec![value; count]);
            prop_assert_eq!(histogram.quantile_seconds(quantile), Some(seconds(value)));
        }

        #[test]
        fn a_histogram_reads_back_as_it_was_stored(
            durations in prop::collection::vec(
                (prop::sample::select(vec![
                    i64::MIN, -1, 0, 1, 999, 60 * SECOND, 1 << 50, i64::MAX,
                    90 * SECOND, HOUR, DAY + MINUTE, 3 * 1_000_000,
                ]),
                 prop::bool::ANY),
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

        /// Removing what was added leaves exactly the rest, merged either
        /// way (bucket by bucket, or in one pass).
        #[test]
        fn removing_what_was_added_leaves_exactly_the_rest(
            kept in prop::collection::vec(0i64..1_000_000_000_000, 0..50),
            removed in prop::collection::vec(0i64..1_000_000_000_000, 0..50),
        ) {
            let expected = histogram_of(&kept);
            let delta = histogram_of(&removed);
            let mut histogram = expected.clone();
            histogram.merge(&delta, 1);
            prop_assert!(histogram.is_non_negative());
            histogram.merge(&delta, -1);
            prop_assert_eq!(&histogram, &expected);
            let mut one_by_one = expected.clone();
            for &value in &removed {
                one_by_one.record(value, 1);
            }
            let mut in_one_pass = expected.clone();
            in_one_pass.merge(&delta, 1);
            prop_assert_eq!(one_by_one, in_one_pass);
        }

        /// Adding a stored histogram as it is read gives what decoding it
        /// and merging it does, whichever buckets the two share.
        #[test]
        fn adding_a_stored_histogram_is_merging_it(
            base in prop::collection::vec(durations_near_round_values(), 0..40),
            other in prop::collection::vec(durations_near_round_values(), 0..40),
            sign in prop::sample::select(vec![1i64, -1]),
        ) {
            let (base, other) = (histogram_of(&base), histogram_of(&other));
            let mut merged = base.clone();
            merged.merge(&other, sign);
            let mut added = base;
            let bytes = stored(&other);
            let mut deserializer = postcard::Deserializer::from_bytes(&bytes);
            added.add_stored(sign).deserialize(&mut deserializer).unwrap();
            prop_assert_eq!(added, merged);
        }

        /// The check that looks only at what a delta changes says what
        /// adding it and checking every bucket would.
        #[test]
        fn the_quick_check_agrees_with_adding_and_checking_everything(
            base in prop::collection::vec(durations_near_round_values(), 0..10),
            delta in prop::collection::vec((durations_near_round_values(), prop::bool::ANY), 0..6),
        ) {
            let base = histogram_of(&base);
            let mut change = DurationHistogram::default();
            for (nanos, remove) in delta {
                change.record(nanos, if remove { -1 } else { 1 });
            }
            let mut sum = base.clone();
            sum.merge(&change, 1);
            prop_assert_eq!(base.stays_non_negative_with(&change), sum.is_non_negative());
        }

        /// The varints are postcard's encoding of a `u128`: written byte for
        /// byte as postcard writes it, read back as postcard does.
        #[test]
        fn varints_are_postcards(value in any::<u128>(), tail in prop::collection::vec(any::<u8>(), 0..3)) {
            let mut written = Vec::new();
            varint::put(&mut written, value);
            prop_assert_eq!(&written, &postcard::to_stdvec(&value).unwrap());
            let bytes = [written.as_slice(), &tail].concat();
            let mut rest = bytes.as_slice();
            prop_assert_eq!(varint::take(&mut rest), Some(value));
            prop_assert_eq!(rest, tail.as_slice());
        }

        /// Any bytes, damaged ones included, read as postcard reads a `u128`.
        #[test]
        fn any_bytes_read_as_postcard_reads_them(
            continuing in prop::collection::vec(0x80u8.., 0..=19),
            last in any::<u8>(),
        ) {
            let bytes = [continuing.as_slice(), &[last]].concat();
            let mut rest = bytes.as_slice();
            let ours = varint::take(&mut rest).map(|value| (value, rest));
            let postcards = postcard::take_from_bytes::<u128>(&bytes).ok();
            prop_assert_eq!(ours, postcards);
        }

        #[test]
        fn zigzag_round_trips(value in any::<i128>()) {
            prop_assert_eq!(varint::unzigzag(varint::zigzag(value)), value);
        }
    }
}
