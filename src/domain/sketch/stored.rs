//! The stored form of a histogram: one byte string of varints that a read
//! decodes in one loop ([`DurationHistogram::serialize`]), read bucket by
//! bucket with every number checked ([`StoredBuckets`]), and added into a
//! histogram or a sum as it is read, never built first.

use serde::de::{self, DeserializeSeed, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Bucket, DurationHistogram, HistogramSum, LAST_INDEX};

/// The largest power of ten the offsets are stored in units of.
const MAX_UNIT_EXPONENT: u32 = 12;

/// The largest `e` (at most [`MAX_UNIT_EXPONENT`]) such that every bucket's
/// offsets are a multiple of 10^e: durations from timestamps in whole
/// seconds have offsets in whole seconds, stored as such in a byte or two.
pub(super) fn unit_exponent(buckets: &[Bucket]) -> u32 {
    let mut exponent = MAX_UNIT_EXPONENT;
    for bucket in buckets {
        while exponent > 0 && !divides(POWERS_OF_TEN[exponent as usize], bucket.offsets) {
            exponent -= 1;
        }
        if exponent == 0 {
            break;
        }
    }
    exponent
}

/// 10^0 to 10^[`MAX_UNIT_EXPONENT`].
const POWERS_OF_TEN: [i64; MAX_UNIT_EXPONENT as usize + 1] = {
    let mut powers = [1i64; MAX_UNIT_EXPONENT as usize + 1];
    let mut exponent = 1;
    while exponent < powers.len() {
        powers[exponent] = powers[exponent - 1] * 10;
        exponent += 1;
    }
    powers
};

/// Whether `unit` divides `offsets`, in 64 bits where they fit (a 128-bit
/// division costs several times a 64-bit one).
fn divides(unit: i64, offsets: i128) -> bool {
    match i64::try_from(offsets) {
        Ok(small) => small % unit == 0,
        Err(_) => offsets % i128::from(unit) == 0,
    }
}

/// `offsets` in units of `unit`, which divides them.
fn in_units(offsets: i128, unit: i64) -> i128 {
    match (unit, i64::try_from(offsets)) {
        (1, _) => offsets,
        (unit, Ok(small)) => i128::from(small / unit),
        (unit, Err(_)) => offsets / i128::from(unit),
    }
}

/// Stored as one byte string of varints: the unit's exponent `e` (see
/// [`unit_exponent`]), then per bucket that holds something its index's
/// distance from the previous one's (less one; the first's from -1), its
/// count and its offset sum in units of 10^e nanoseconds, zigzag-encoded.
/// An empty histogram is an empty string. Being one byte string, it is
/// decoded by one loop over the bytes rather than a serde call per number.
impl Serialize for DurationHistogram {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::with_capacity(1 + 4 * self.buckets.len());
        if !self.buckets.is_empty() {
            let exponent = unit_exponent(&self.buckets);
            let unit = POWERS_OF_TEN[exponent as usize];
            varint::put(&mut bytes, u128::from(exponent));
            let mut previous = -1i32;
            for bucket in &self.buckets {
                varint::put(&mut bytes, (i32::from(bucket.index) - previous - 1) as u128);
                varint::put(&mut bytes, varint::zigzag(i128::from(bucket.count)));
                varint::put(&mut bytes, varint::zigzag(in_units(bucket.offsets, unit)));
                previous = i32::from(bucket.index);
            }
        }
        serializer.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for DurationHistogram {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut histogram = DurationHistogram::default();
        histogram.add_stored(1).deserialize(deserializer)?;
        Ok(histogram)
    }
}

impl DurationHistogram {
    /// Adds a stored histogram (what [`DurationHistogram::serialize`]
    /// writes) times `sign` into this one as it reads it: each bucket read
    /// is added where this one has it, the others merged in at the end.
    pub fn add_stored(&mut self, sign: i64) -> AddStoredBuckets<'_> {
        AddStoredBuckets::new(Target::Histogram(self), sign)
    }

    fn add_buckets(&mut self, stored: StoredBuckets<'_>, sign: i64) -> Result<(), Damage> {
        let mut stored = stored;
        if self.buckets.is_empty() && sign == 1 {
            // Each bucket takes at least 3 bytes.
            self.buckets.reserve_exact(stored.bytes.len() / 3);
            while !stored.bytes.is_empty() {
                self.buckets.push(stored.next_bucket()?);
            }
            return Ok(());
        }
        let mut at = 0;
        let mut emptied = false;
        let mut new = DurationHistogram::default();
        while !stored.bytes.is_empty() {
            let bucket = stored.next_bucket()?;
            while at < self.buckets.len() && self.buckets[at].index < bucket.index {
                at += 1;
            }
            match self.buckets.get_mut(at) {
                Some(mine) if mine.index == bucket.index => {
                    mine.add(&bucket, sign);
                    emptied |= mine.is_empty();
                }
                _ => new.buckets.push(bucket),
            }
        }
        if emptied {
            self.buckets.retain(|bucket| !bucket.is_empty());
        }
        if !new.buckets.is_empty() {
            self.merge_in_one_pass(&new, sign);
        }
        Ok(())
    }
}

/// Reads a stored histogram into a histogram or a sum as it reads it: see
/// [`DurationHistogram::add_stored`], [`HistogramSum::add_stored`]. Bytes
/// that do not read leave the target partly changed; the caller drops it.
#[derive(Debug)]
pub struct AddStoredBuckets<'a> {
    into: Target<'a>,
    sign: i64,
}

/// Where a stored histogram is added.
#[derive(Debug)]
pub(super) enum Target<'a> {
    Histogram(&'a mut DurationHistogram),
    Sum(&'a mut HistogramSum),
}

impl<'a> AddStoredBuckets<'a> {
    pub(super) fn new(into: Target<'a>, sign: i64) -> AddStoredBuckets<'a> {
        AddStoredBuckets { into, sign }
    }
}

impl<'de> DeserializeSeed<'de> for AddStoredBuckets<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_bytes(self)
    }
}

impl<'de> Visitor<'de> for AddStoredBuckets<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str(
            "histogram buckets: a unit, then index steps, counts and offset sums, as varints",
        )
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<(), E> {
        let stored = StoredBuckets::new(bytes).map_err(E::custom)?;
        let added = match self.into {
            Target::Histogram(histogram) => histogram.add_buckets(stored, self.sign),
            Target::Sum(sum) => sum.add_buckets(stored, self.sign),
        };
        added.map_err(E::custom)
    }
}

/// The buckets of a stored histogram, in order, each checked: what only a
/// damaged store holds is an error (a unit past 10^12, an index past the
/// last a duration has, a count past an `i64`, offsets past an `i128`, an
/// empty bucket, bytes that are not varints, a unit with no bucket).
pub(super) struct StoredBuckets<'a> {
    pub(super) bytes: &'a [u8],
    unit: i128,
    previous: i64,
}

const NOT_A_VARINT: &str = "a histogram number is not a varint";

impl<'a> StoredBuckets<'a> {
    pub(super) fn new(mut bytes: &'a [u8]) -> Result<StoredBuckets<'a>, String> {
        if bytes.is_empty() {
            return Ok(StoredBuckets {
                bytes,
                unit: 1,
                previous: -1,
            });
        }
        let exponent = varint::take(&mut bytes)
            .ok_or(NOT_A_VARINT)?
            .try_into()
            .ok()
            .filter(|&exponent| exponent <= MAX_UNIT_EXPONENT)
            .ok_or("a histogram's unit is past 10^12 ns")?;
        if bytes.is_empty() {
            return Err("a histogram with a unit and no buckets".into());
        }
        Ok(StoredBuckets {
            bytes,
            unit: 10i128.pow(exponent),
            previous: -1,
        })
    }

    /// The next bucket; every check is a comparison or two, so that a read
    /// decoding a year of a busy scope's buckets stays fast.
    #[inline(always)]
    pub(super) fn next_bucket(&mut self) -> Result<Bucket, Damage> {
        match self.next_short_bucket() {
            Some(bucket) => bucket,
            None => self.next_long_bucket(),
        }
    }

    /// The next bucket when each of its numbers takes at most nine bytes
    /// (63 bits: every bucket of a histogram of durations in whole seconds,
    /// and nearly every other), read with 64-bit arithmetic; `None`, with
    /// nothing read, for a bucket that needs [`StoredBuckets::next_long_bucket`].
    #[inline(always)]
    fn next_short_bucket(&mut self) -> Option<Result<Bucket, Damage>> {
        let mut rest = self.bytes;
        let step = varint::take_short(&mut rest)?;
        let count = varint::take_short(&mut rest)?;
        let offsets = varint::take_short(&mut rest)?;
        self.bytes = rest;
        let index = self.previous + 1 + step.min(u64::from(LAST_INDEX) + 1) as i64;
        if index > i64::from(LAST_INDEX) {
            return Some(Err(Damage::PastTheLastIndex));
        }
        let bucket = Bucket {
            index: index as u16,
            count: varint::unzigzag_short(count),
            offsets: i128::from(varint::unzigzag_short(offsets)) * self.unit,
        };
        if bucket.is_empty() {
            return Some(Err(Damage::EmptyBucket));
        }
        self.previous = index;
        Some(Ok(bucket))
    }

    /// The next bucket, whatever the length of its numbers.
    #[inline(never)]
    fn next_long_bucket(&mut self) -> Result<Bucket, Damage> {
        let mut next = || varint::take(&mut self.bytes).ok_or(Damage::NotAVarint);
        let (step, count, offsets) = (next()?, next()?, next()?);
        let index = u16::try_from(step)
            .ok()
            .and_then(|step| u16::try_from(self.previous + 1 + i64::from(step)).ok())
            .filter(|&index| index <= LAST_INDEX)
            .ok_or(Damage::PastTheLastIndex)?;
        let count = i64::try_from(varint::unzigzag(count)).map_err(|_| Damage::CountPastAnI64)?;
        let offsets = varint::unzigzag(offsets);
        let offsets = match (self.unit, i64::try_from(offsets)) {
            (1, _) => offsets,
            (unit, Ok(small)) => i128::from(small) * unit,
            (unit, Err(_)) => offsets.checked_mul(unit).ok_or(Damage::OffsetsPastAnI128)?,
        };
        let bucket = Bucket {
            index,
            count,
            offsets,
        };
        if bucket.is_empty() {
            return Err(Damage::EmptyBucket);
        }
        self.previous = i64::from(index);
        Ok(bucket)
    }
}

/// What is wrong with a damaged stored bucket.
#[derive(Debug, Clone, Copy)]
pub(super) enum Damage {
    NotAVarint,
    PastTheLastIndex,
    CountPastAnI64,
    OffsetsPastAnI128,
    EmptyBucket,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Damage::NotAVarint => f.write_str(NOT_A_VARINT),
            Damage::PastTheLastIndex => write!(
                f,
                "a histogram bucket past index {LAST_INDEX}, the last a duration has"
            ),
            Damage::CountPastAnI64 => f.write_str("a histogram bucket's count is past an i64"),
            Damage::OffsetsPastAnI128 => {
                f.write_str("a histogram bucket's offsets are past an i128")
            }
            Damage::EmptyBucket => f.write_str("a histogram bucket is stored, yet empty"),
        }
    }
}

impl Iterator for StoredBuckets<'_> {
    type Item = Result<Bucket, Damage>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.bytes.is_empty() {
            return None;
        }
        let bucket = self.next_bucket();
        if bucket.is_err() {
            self.bytes = &[];
        }
        Some(bucket)
    }
}

/// Unsigned LEB128 varints of up to 128 bits (what postcard writes for a
/// `u128`), and the zigzag mapping that makes small signed numbers short.
pub(super) mod varint {
    /// Bytes a `u128` can take: 19 of 7 bits.
    const MAX_BYTES: usize = 19;

    pub fn zigzag(value: i128) -> u128 {
        ((value << 1) ^ (value >> 127)) as u128
    }

    pub fn unzigzag(zigzag: u128) -> i128 {
        (zigzag >> 1) as i128 ^ -((zigzag & 1) as i128)
    }

    #[inline]
    pub fn put(bytes: &mut Vec<u8>, mut value: u128) {
        if value < 0x80 {
            bytes.push(value as u8);
            return;
        }
        while value >= 0x80 {
            bytes.push(value as u8 | 0x80);
            value >>= 7;
        }
        bytes.push(value as u8);
    }

    /// The next varint of `bytes`. `None`: the bytes end, it is longer than
    /// a `u128`'s, or it overflows one.
    #[inline]
    pub fn take(bytes: &mut &[u8]) -> Option<u128> {
        // Most numbers of a histogram fit one byte, nearly all nine (63 bits).
        take_short(bytes)
            .map(u128::from)
            .or_else(|| take_long(bytes))
    }

    /// The next varint of `bytes` if it takes at most nine bytes (63 bits).
    #[inline(always)]
    pub fn take_short(bytes: &mut &[u8]) -> Option<u64> {
        if let [first, ref rest @ ..] = **bytes {
            if first < 0x80 {
                *bytes = rest;
                return Some(u64::from(first));
            }
        }
        let mut value = 0u64;
        for (index, &byte) in bytes.iter().take(9).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                *bytes = &bytes[index + 1..];
                return Some(value);
            }
        }
        None
    }

    /// [`unzigzag`] of a number of at most 63 bits.
    #[inline(always)]
    pub fn unzigzag_short(zigzag: u64) -> i64 {
        (zigzag >> 1) as i64 ^ -((zigzag & 1) as i64)
    }

    fn take_long(bytes: &mut &[u8]) -> Option<u128> {
        let mut value = 0u128;
        for index in 0..MAX_BYTES {
            let (&byte, rest) = bytes.split_first()?;
            *bytes = rest;
            value |= u128::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                // The 19th byte holds the top 2 bits of 128.
                if index == MAX_BYTES - 1 && byte > 0b11 {
                    return None;
                }
                return Some(value);
            }
        }
        None
    }
}
