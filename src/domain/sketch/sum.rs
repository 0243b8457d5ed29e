//! A sum of many histograms, as a read over a long window makes one: a slot
//! per bucket index, so that each stored bucket is added where it belongs
//! in constant time, however many distinct buckets the sum collects. Sparse
//! merging ([`DurationHistogram::merge`]) pays for every bucket of the
//! running sum at every addition, which a year of a busy scope's months
//! (~1,400 buckets each) makes the larger part of the read.
//!
//! The slots take ~190 KB; a thread keeps the sums it has finished and
//! reuses them (zeroing only the slots a sum touched), so a read allocates
//! nothing once its thread has read before.

use std::cell::RefCell;

use super::stored::{AddStoredBuckets, Damage, StoredBuckets, Target};
use super::{Bucket, DurationHistogram, LAST_INDEX};

const SLOTS: usize = LAST_INDEX as usize + 1;
const WORDS: usize = SLOTS.div_ceil(64);

/// Finished sums a thread keeps for its next read: five a read, a few reads.
const KEPT_PER_THREAD: usize = 16;

thread_local! {
    static KEPT: RefCell<Vec<Slots>> = const { RefCell::new(Vec::new()) };
}

/// The dense part: counts and offset sums by bucket index, and which
/// indexes were touched (so that finishing looks only at those).
struct Slots {
    counts: Box<[i64; SLOTS]>,
    offsets: Box<[i128; SLOTS]>,
    touched: Box<[u64; WORDS]>,
}

impl Slots {
    fn new() -> Slots {
        Slots {
            counts: Box::new([0; SLOTS]),
            offsets: Box::new([0; SLOTS]),
            touched: Box::new([0; WORDS]),
        }
    }

    fn kept_or_new() -> Slots {
        KEPT.with(|kept| kept.borrow_mut().pop())
            .unwrap_or_else(Slots::new)
    }

    /// Back to its thread for another read; every slot is zero again.
    fn keep(self) {
        KEPT.with(|kept| {
            let mut kept = kept.borrow_mut();
            if kept.len() < KEPT_PER_THREAD {
                kept.push(self);
            }
        });
    }

    #[inline(always)]
    fn add(&mut self, bucket: &Bucket, sign: i64) {
        // A bucket's index is at most LAST_INDEX; saying so spares the bounds checks.
        let index = usize::from(bucket.index).min(SLOTS - 1);
        self.touched[index / 64] |= 1 << (index % 64);
        if sign == 1 {
            self.counts[index] += bucket.count;
            self.offsets[index] += bucket.offsets;
        } else {
            self.counts[index] += bucket.count * sign;
            self.offsets[index] += bucket.offsets * i128::from(sign);
        }
    }

    /// The buckets that hold something, by index, each slot zeroed as it is read.
    fn drain_into(&mut self, histogram: &mut DurationHistogram) {
        let touched = self.touched.iter().map(|word| word.count_ones() as usize);
        histogram.buckets.reserve_exact(touched.sum());
        for word in 0..WORDS {
            let mut bits = std::mem::take(&mut self.touched[word]);
            while bits != 0 {
                let index = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let bucket = Bucket {
                    index: index as u16,
                    count: std::mem::take(&mut self.counts[index]),
                    offsets: std::mem::take(&mut self.offsets[index]),
                };
                if !bucket.is_empty() {
                    histogram.buckets.push(bucket);
                }
            }
        }
    }
}

/// Histograms added up, stored or not, then read as one [`DurationHistogram`]:
/// equal to merging them one by one.
pub struct HistogramSum {
    slots: Option<Slots>,
}

impl Default for HistogramSum {
    fn default() -> Self {
        HistogramSum::new()
    }
}

impl std::fmt::Debug for HistogramSum {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("HistogramSum")
    }
}

impl HistogramSum {
    /// An empty sum; its slots are taken when the first bucket is added.
    pub fn new() -> HistogramSum {
        HistogramSum { slots: None }
    }

    fn slots(&mut self) -> &mut Slots {
        self.slots.get_or_insert_with(Slots::kept_or_new)
    }

    /// Adds `histogram` times `sign`.
    pub fn add(&mut self, histogram: &DurationHistogram, sign: i64) {
        if histogram.buckets.is_empty() {
            return;
        }
        let slots = self.slots();
        for bucket in &histogram.buckets {
            slots.add(bucket, sign);
        }
    }

    /// Adds a stored histogram (what [`DurationHistogram::serialize`] writes)
    /// times `sign` as it reads it.
    pub fn add_stored(&mut self, sign: i64) -> AddStoredBuckets<'_> {
        AddStoredBuckets::new(Target::Sum(self), sign)
    }

    pub(super) fn add_buckets(
        &mut self,
        mut stored: StoredBuckets<'_>,
        sign: i64,
    ) -> Result<(), Damage> {
        if stored.bytes.is_empty() {
            return Ok(());
        }
        let slots = self.slots();
        while !stored.bytes.is_empty() {
            slots.add(&stored.next_bucket()?, sign);
        }
        Ok(())
    }

    /// The sum, as a histogram; its slots go back to the thread for the next sum.
    pub fn finish(mut self) -> DurationHistogram {
        let mut histogram = DurationHistogram::default();
        if let Some(mut slots) = self.slots.take() {
            slots.drain_into(&mut histogram);
            slots.keep();
        }
        histogram
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::de::DeserializeSeed;

    use super::super::tests::{damaged_stored_histograms, histogram_of, stored};
    use super::super::{DAY, HOUR, MINUTE, SECOND};
    use super::*;

    fn add_stored(sum: &mut HistogramSum, bytes: &[u8], sign: i64) -> postcard::Result<()> {
        let mut deserializer = postcard::Deserializer::from_bytes(bytes);
        sum.add_stored(sign).deserialize(&mut deserializer)
    }

    /// Parts of a sum: durations, added or taken away, as a histogram or stored.
    fn parts() -> impl Strategy<Value = Vec<(Vec<i64>, i64, bool)>> {
        let durations = prop_oneof![
            prop::collection::vec(0i64..7 * DAY, 0..200),
            prop::collection::vec(
                prop::sample::select(vec![
                    i64::MIN,
                    -MINUTE,
                    0,
                    1,
                    SECOND,
                    90 * SECOND,
                    HOUR,
                    DAY + 7,
                    i64::MAX
                ]),
                0..20
            ),
        ];
        prop::collection::vec(
            (
                durations,
                prop::sample::select(vec![1i64, -1]),
                prop::bool::ANY,
            ),
            0..16,
        )
    }

    proptest! {
        /// A sum is the histogram of every duration its parts added, less
        /// those they took away, whether the parts came stored or not.
        #[test]
        fn a_sum_is_the_histogram_of_everything_it_added(parts in parts()) {
            let mut everything = DurationHistogram::default();
            let mut sum = HistogramSum::new();
            for (durations, sign, is_stored) in &parts {
                for &nanos in durations {
                    everything.record(nanos, *sign);
                }
                let part = histogram_of(durations);
                if *is_stored {
                    add_stored(&mut sum, &stored(&part), *sign).unwrap();
                } else {
                    sum.add(&part, *sign);
                }
            }
            prop_assert_eq!(sum.finish(), everything);
        }
    }

    #[test]
    fn a_sum_starts_empty_on_slots_another_sum_used() {
        assert!(HistogramSum::new().finish().is_zero());
        let mut first = HistogramSum::new();
        first.add(&histogram_of(&[MINUTE, HOUR, 3 * DAY]), 1);
        assert_eq!(first.finish(), histogram_of(&[MINUTE, HOUR, 3 * DAY]));
        // The first sum's slots went back to this thread; the second takes
        // them, and finds nothing of the first in the bucket they share.
        let mut second = HistogramSum::new();
        second.add(&histogram_of(&[SECOND, HOUR]), 1);
        assert_eq!(second.finish(), histogram_of(&[SECOND, HOUR]));
    }

    #[test]
    fn damaged_buckets_do_not_add() {
        for damaged in damaged_stored_histograms() {
            let mut sum = HistogramSum::new();
            sum.add(&histogram_of(&[MINUTE]), 1);
            assert!(
                add_stored(&mut sum, &damaged, 1).is_err(),
                "{damaged:x?} added"
            );
        }
        // A sum dropped after damage leaves nothing behind for the next.
        let mut next = HistogramSum::new();
        next.add(&histogram_of(&[HOUR]), 1);
        assert_eq!(next.finish(), histogram_of(&[HOUR]));
    }
}
