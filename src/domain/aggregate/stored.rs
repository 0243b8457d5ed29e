//! The stored form of an aggregate: a presence mask, then only the fields
//! it names ([`Aggregate::serialize`]), read by a seed that adds it into an
//! aggregate or a sum as it decodes it, never building it first.

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::super::sketch::HistogramSum;
use super::Aggregate;

/// How many scalars come before the histograms in the stored order: the
/// ticket and interaction counts, which most buckets that hold anything hold,
/// so that their presence bits stay in the mask's low bytes.
const LEADING_SCALARS: usize = 6;
pub(super) const SCALARS: usize = 24;
pub(super) const HISTOGRAMS: usize = 5;
pub(super) const SCORES: usize = 5 + 7 + 11;
/// Every count and histogram, one presence bit each.
pub(super) const STORED_FIELDS: usize = SCALARS + HISTOGRAMS + SCORES;

/// Where the field with presence bit `bit` lives. This is the stored order:
/// the leading scalars, the histograms, the other scalars, the survey scores.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Scalar(usize),
    Histogram(usize),
    Score(usize),
}

fn stored_slot(bit: usize) -> Slot {
    if bit < LEADING_SCALARS {
        Slot::Scalar(bit)
    } else if bit < LEADING_SCALARS + HISTOGRAMS {
        Slot::Histogram(bit - LEADING_SCALARS)
    } else if bit < SCALARS + HISTOGRAMS {
        Slot::Scalar(bit - HISTOGRAMS)
    } else {
        Slot::Score(bit - SCALARS - HISTOGRAMS)
    }
}

impl Serialize for Aggregate {
    /// A mask with a bit for every field that is not zero (in the order of
    /// [`stored_slot`]), then those fields alone. Most buckets hold one or two
    /// kinds of fact: an aggregate of one interaction takes under 20 bytes
    /// instead of the 72 its zeros alone take when every field is written.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let scalars = self.scalars();
        let histograms = self.histograms();
        let mut scores = [0i64; SCORES];
        for (slot, &count) in scores.iter_mut().zip(self.scores()) {
            *slot = count;
        }
        let is_present = |bit: usize| match stored_slot(bit) {
            Slot::Scalar(index) => scalars[index] != 0,
            Slot::Histogram(index) => !histograms[index].is_zero(),
            Slot::Score(index) => scores[index] != 0,
        };
        let mask = (0..STORED_FIELDS)
            .filter(|&bit| is_present(bit))
            .fold(0u64, |mask, bit| mask | 1 << bit);
        let mut seq = serializer.serialize_seq(Some(1 + mask.count_ones() as usize))?;
        seq.serialize_element(&mask)?;
        for bit in (0..STORED_FIELDS).filter(|&bit| is_present(bit)) {
            match stored_slot(bit) {
                Slot::Scalar(index) => seq.serialize_element(&scalars[index])?,
                Slot::Histogram(index) => seq.serialize_element(histograms[index])?,
                Slot::Score(index) => seq.serialize_element(&scores[index])?,
            }
        }
        seq.end()
    }
}

impl Aggregate {
    /// A seed that adds a stored aggregate (what [`Aggregate::serialize`]
    /// writes) times `sign` into this one as it decodes it.
    pub fn add_stored(&mut self, sign: i64) -> AddStored<'_> {
        AddStored {
            into: self,
            histograms: None,
            sign,
        }
    }
}

impl<'de> Deserialize<'de> for Aggregate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut aggregate = Aggregate::default();
        aggregate.add_stored(1).deserialize(deserializer)?;
        Ok(aggregate)
    }
}

/// Aggregates added up, stored or not, then read as one: equal to merging
/// them one by one, but each histogram is summed in a [`HistogramSum`], so
/// that a read adding up a year of a busy scope's months pays per bucket
/// read, not per bucket of the running sum.
#[derive(Debug, Default)]
pub struct AggregateSum {
    /// The counts; its histograms stay empty until [`AggregateSum::finish`].
    counts: Aggregate,
    histograms: [HistogramSum; HISTOGRAMS],
}

impl AggregateSum {
    /// Adds `aggregate` times `sign`.
    pub fn add(&mut self, aggregate: &Aggregate, sign: i64) {
        self.counts.merge_counts(aggregate, sign);
        for (sum, histogram) in self.histograms.iter_mut().zip(aggregate.histograms()) {
            sum.add(histogram, sign);
        }
    }

    /// A seed that adds a stored aggregate times `sign` as it decodes it.
    pub fn add_stored(&mut self, sign: i64) -> AddStored<'_> {
        AddStored {
            into: &mut self.counts,
            histograms: Some(&mut self.histograms),
            sign,
        }
    }

    /// The sum, as an aggregate.
    pub fn finish(self) -> Aggregate {
        let AggregateSum {
            mut counts,
            histograms,
        } = self;
        for (histogram, sum) in counts.histograms_mut().into_iter().zip(histograms) {
            *histogram = sum.finish();
        }
        counts
    }
}

/// Adds a stored aggregate (what [`Aggregate::serialize`] writes) times
/// `sign` into an aggregate or a sum as it reads it, without building it
/// first ([`Aggregate::add_stored`], [`AggregateSum::add_stored`]). Bytes
/// that do not read leave the target partly changed; the caller drops it.
#[derive(Debug)]
pub struct AddStored<'a> {
    into: &'a mut Aggregate,
    /// Where histograms go when summing; `None`: into `into`'s own.
    histograms: Option<&'a mut [HistogramSum; HISTOGRAMS]>,
    sign: i64,
}

impl<'de> DeserializeSeed<'de> for AddStored<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for AddStored<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a presence mask, then the aggregate's fields it names")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let expected = "a presence mask, then the aggregate's fields it names";
        let mask: u64 = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &expected))?;
        if mask >> STORED_FIELDS != 0 {
            return Err(de::Error::custom(format!(
                "presence mask {mask:#x} names fields past the {STORED_FIELDS} an aggregate has"
            )));
        }
        let fields = mask.count_ones() as usize;
        if let Some(remaining) = seq.size_hint().filter(|&remaining| remaining != fields) {
            return Err(de::Error::invalid_length(1 + remaining, &expected));
        }
        let AddStored {
            into,
            mut histograms,
            sign,
        } = self;
        // The mask's set bits, lowest first; `read` counts the elements read.
        let mut rest = mask;
        let mut read = 1;
        while rest != 0 {
            let bit = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            let missing = || de::Error::invalid_length(read, &expected);
            match stored_slot(bit) {
                Slot::Scalar(index) => {
                    let count: i64 = seq.next_element()?.ok_or_else(missing)?;
                    *into.scalars_mut()[index] += count * sign;
                }
                Slot::Histogram(index) => {
                    let seed = match histograms.as_deref_mut() {
                        Some(sums) => sums[index].add_stored(sign),
                        None => into.histograms_mut()[index].add_stored(sign),
                    };
                    seq.next_element_seed(seed)?.ok_or_else(missing)?;
                }
                Slot::Score(index) => {
                    let count: i64 = seq.next_element()?.ok_or_else(missing)?;
                    if let Some(slot) = into.scores_mut().nth(index) {
                        *slot += count * sign;
                    }
                }
            }
            read += 1;
        }
        Ok(())
    }
}
