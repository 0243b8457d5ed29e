//! Where aggregate buckets are stored. Each bucket has a key of its own
//! (`A level scope start`, see [`keys::aggregate`]); day and month buckets
//! are also stored under it, but the four quarter buckets of a scope's hour
//! share one stored value, its *hour parts* (`A p scope hour`). A write adds
//! to a quarter, a day and a month of every scope it counts in. Hours have
//! no bucket of their own (since format 14): a read of an hour sums its
//! ≤ 4 quarters, from the one value it reads anyway, where keeping the
//! hour's own aggregate beside them took a large part of the state
//! (docs/benchmarks.md).
//!
//! A day's or month's bucket is large (a month of a busy scope holds
//! hundreds of histogram buckets), and rewriting it whole at every commit
//! was most of the writer's time. Its changes gather instead in a small
//! value beside it, its *pending changes* (`A D …`, `A M …`,
//! [`keys::pending_changes_of`]), which a read adds to the bucket; they are
//! added into the bucket (*folded*) once their stored form is a quarter of
//! the bucket's, so that a bucket is rewritten once per several commits and
//! the pending changes stay small. The split between the two depends on the
//! commits that made it; their sum does not ([`folded`] gives it).
//!
//! Why an hour and not a whole day: packing a day's 96 quarters and 24 hours
//! into one value (~10 KB for a busy scope) halved ingest throughput although
//! it wrote a third fewer keys, most likely because sled's cost per insert
//! grows with the size of the leaf it changes (leaves split at 16 entries,
//! whatever their size). An hour's parts stay a few hundred bytes.
//!
//! Changes to aggregates name buckets by their own keys
//! ([`KvStore::commit_with_aggregates`](super::kv::KvStore::commit_with_aggregates)):
//! [`placement`] says where one is stored, [`aggregate_changes`] turns bucket
//! changes into stored changes. Plain reads (`get`, `scan_prefix`, `range`)
//! see the stored keys; reads of quarters and hours go through the hour parts
//! (`reads.rs`, [`HourParts::within`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::domain::aggregate::Aggregate;
use crate::domain::time::{Level, QUARTER_SECONDS};
use crate::error::{Error, Result};

use super::codec::{decode, encode};
use super::keys::{self, time_bytes, time_from_bytes};
use super::kv::{AggregateDelta, Change, Entry};

const HOUR_SECONDS: i64 = 3600;
/// Quarters in an hour: the indexes in [`HourParts`] are below this.
const QUARTERS_PER_HOUR: u8 = (HOUR_SECONDS / QUARTER_SECONDS) as u8;

mod hour_parts;
mod replay;

pub use hour_parts::HourParts;
pub use replay::{days_and_months, ReplayedHours};

/// Where a bucket key is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Under its own key (days, months, and any key that is not a bucket's).
    Own,
    /// A quarter, the one at index `quarter` of the hour parts stored under `key`.
    InHour { key: Vec<u8>, quarter: u8 },
    /// A day or month: its changes gather under `changes` first.
    Pending { changes: Vec<u8> },
}

/// Where the bucket with this key is stored. A quarter key holds its start
/// as its last eight bytes (the scope before it is prefix-free).
pub fn placement(key: &[u8]) -> Placement {
    if let Some(changes) = keys::pending_changes_of(key) {
        return Placement::Pending { changes };
    }
    if !key.starts_with(&[keys::AGGREGATE, keys::level_byte(Level::Quarter)]) {
        return Placement::Own;
    }
    let Some(scope_end) = key.len().checked_sub(8).filter(|&end| end >= 2) else {
        return Placement::Own;
    };
    let Some(start) = time_from_bytes(&key[scope_end..]) else {
        return Placement::Own;
    };
    let hour = start.div_euclid(HOUR_SECONDS) * HOUR_SECONDS;
    let offset = start - hour;
    if offset % QUARTER_SECONDS != 0 {
        return Placement::Own;
    }
    Placement::InHour {
        key: hour_parts_key(&key[2..scope_end], hour),
        quarter: (offset / QUARTER_SECONDS) as u8,
    }
}

/// The key of a scope's hour parts, from the scope's encoding.
fn hour_parts_key(scope: &[u8], hour: i64) -> Vec<u8> {
    [
        &[keys::AGGREGATE, keys::HOUR_PARTS][..],
        scope,
        &time_bytes(hour),
    ]
    .concat()
}

/// The first key of the hour parts of `scope` from the hour holding `seconds` on.
pub fn hour_parts_from(scope_bytes: &[u8], seconds: i64) -> Vec<u8> {
    hour_parts_key(scope_bytes, seconds.div_euclid(HOUR_SECONDS) * HOUR_SECONDS)
}

/// The start (seconds) of the hour of an hour-parts key.
pub fn hour_of(key: &[u8]) -> Option<i64> {
    time_from_bytes(key.get(key.len().checked_sub(8)?..)?)
}

/// Fails if adding `delta` to `base`, the aggregate of the bucket at `key`,
/// would leave a count negative: a retraction of something never added.
pub fn ensure_stays_non_negative(base: &Aggregate, delta: &Aggregate, key: &[u8]) -> Result<()> {
    if base.stays_non_negative_with(delta) {
        Ok(())
    } else {
        Err(Error::Internal(format!(
            "aggregate {} would go negative",
            keys::describe_key(key)
        )))
    }
}

/// A stored value, as the derived state holds it.
pub type Stored = Option<Arc<[u8]>>;

/// The value stored at `key` (`bytes`), decoded; the default when there is none.
fn decoded_or_default<T: DeserializeOwned + Default>(key: &[u8], bytes: Stored) -> Result<T> {
    Ok(bytes
        .map(|bytes| decode(key, &bytes))
        .transpose()?
        .unwrap_or_default())
}

/// The value at `key` in `decoded`, decoded from `stored()` (nothing: the
/// default) the first time it is asked for.
fn decoded_once<'a, T: DeserializeOwned + Default>(
    decoded: &'a mut BTreeMap<Vec<u8>, T>,
    key: &[u8],
    stored: impl FnOnce() -> Result<Stored>,
) -> Result<&'a mut T> {
    if !decoded.contains_key(key) {
        let value = decoded_or_default(key, stored()?)?;
        decoded.insert(key.to_vec(), value);
    }
    decoded
        .get_mut(key)
        .ok_or_else(|| Error::Internal("a value just decoded went missing".into()))
}

/// The changes with each bucket's summed into one (the commit of a
/// transaction names each bucket once already).
pub fn summed_by_bucket(deltas: Vec<AggregateDelta>) -> Vec<AggregateDelta> {
    let distinct = deltas
        .iter()
        .map(|(key, _)| key.as_slice())
        .collect::<HashSet<_>>()
        .len();
    if distinct == deltas.len() {
        return deltas;
    }
    let mut summed: Vec<AggregateDelta> = Vec::with_capacity(distinct);
    let mut index: HashMap<Vec<u8>, usize> = HashMap::with_capacity(distinct);
    for (key, delta) in deltas {
        match index.get(&key) {
            Some(&at) => summed[at].1.merge(&delta, 1),
            None => {
                index.insert(key.clone(), summed.len());
                summed.push((key, delta));
            }
        }
    }
    summed
}

/// Buckets after a commit's changes, decoded: those stored under their own
/// key, hours' parts, and days' and months' pending changes (by their key).
#[derive(Debug, Default)]
pub struct Added {
    pub own: BTreeMap<Vec<u8>, Aggregate>,
    pub hours: BTreeMap<Vec<u8>, HourParts>,
    pub pending: BTreeMap<Vec<u8>, Aggregate>,
}

/// Each delta in `deltas` (one per bucket) added to its bucket as `base`
/// reads the stored value, each value read and decoded once, an hour's parts
/// together; a bucket that adds up to zero is emptied. Fails if a bucket
/// would go negative. A day's or month's delta is added to its pending
/// changes, which may go negative: its hours, changed by the same deltas,
/// are checked.
pub fn added(deltas: Vec<AggregateDelta>, base: impl Fn(&[u8]) -> Result<Stored>) -> Result<Added> {
    let mut added = Added::default();
    for (bucket, delta) in deltas {
        match placement(&bucket) {
            Placement::Own => {
                let aggregate = decoded_once(&mut added.own, &bucket, || base(&bucket))?;
                ensure_stays_non_negative(aggregate, &delta, &bucket)?;
                aggregate.merge(&delta, 1);
            }
            Placement::InHour { key, quarter } => {
                let parts = decoded_once(&mut added.hours, &key, || base(&key))?;
                parts.ensure_stays_non_negative(quarter, &delta, &bucket)?;
                parts.add(quarter, &delta);
            }
            Placement::Pending { changes } => {
                decoded_once(&mut added.pending, &changes, || base(&changes))?.merge(&delta, 1);
            }
        }
    }
    Ok(added)
}

/// Pending changes are folded into their bucket once their stored form is
/// at least this fraction (1/n) of the bucket's.
const FOLD_AT_FRACTION: usize = 4;

/// The stored changes that add each delta in `deltas` to the bucket at its
/// key (a bucket's changes summed first), applied after `earlier` (changes
/// of the same commit) over what `stored` reads: every changed value is
/// read, changed and written whole, an hour's parts together; a bucket that
/// adds up to zero is removed. A day's or month's delta goes to its pending
/// changes, folded into the bucket once they are large enough. Fails if a
/// bucket would go negative.
pub fn aggregate_changes(
    earlier: &[Change],
    deltas: Vec<AggregateDelta>,
    stored: impl Fn(&[u8]) -> Result<Stored>,
) -> Result<Vec<Change>> {
    // The last change of a key wins; a recomputation's commit holds
    // thousands of changes, so they are looked up by key, not scanned.
    let earlier: HashMap<&[u8], &Option<Vec<u8>>> = earlier
        .iter()
        .map(|(key, value)| (key.as_slice(), value))
        .collect();
    let base = |key: &[u8]| match earlier.get(key) {
        Some(value) => Ok(value.as_deref().map(Arc::from)),
        None => stored(key),
    };
    let Added {
        own,
        hours,
        pending,
    } = added(summed_by_bucket(deltas), base)?;
    let mut changes = Vec::with_capacity(own.len() + hours.len() + 2 * pending.len());
    for (key, aggregate) in own {
        let value = (!aggregate.is_zero())
            .then(|| encode(&aggregate))
            .transpose()?;
        changes.push((key, value));
    }
    for (key, parts) in hours {
        let value = (!parts.is_empty()).then(|| encode(&parts)).transpose()?;
        changes.push((key, value));
    }
    for (key, pending) in pending {
        changes.extend(pending_or_folded(key, &pending, &base)?);
    }
    Ok(changes)
}

/// The changes that store `pending` as the pending changes at `key`, or,
/// once they are large enough, add them into their bucket (as `base` reads
/// it) and delete them.
fn pending_or_folded(
    key: Vec<u8>,
    pending: &Aggregate,
    base: &impl Fn(&[u8]) -> Result<Stored>,
) -> Result<Vec<Change>> {
    let bucket = keys::bucket_of_pending(&key).ok_or_else(|| {
        Error::Internal(format!(
            "{} holds no pending changes",
            keys::describe_key(&key)
        ))
    })?;
    if pending.is_zero() {
        return Ok(vec![(key, None)]);
    }
    let encoded = encode(pending)?;
    let stored = base(&bucket)?;
    let bucket_len = stored.as_ref().map_or(0, |bytes| bytes.len());
    if encoded.len() * FOLD_AT_FRACTION < bucket_len {
        return Ok(vec![(key, Some(encoded))]);
    }
    let mut folded: Aggregate = decoded_or_default(&bucket, stored)?;
    ensure_stays_non_negative(&folded, pending, &bucket)?;
    folded.merge(pending, 1);
    let value = (!folded.is_zero()).then(|| encode(&folded)).transpose()?;
    Ok(vec![(bucket, value), (key, None)])
}

/// Entries of the derived state (in key order) with every day's and month's
/// pending changes folded into its bucket: what they add up to, whatever
/// commits made them (a bucket that adds up to zero is left out).
pub fn folded(entries: impl IntoIterator<Item = Entry>) -> Result<Vec<Entry>> {
    let mut pending: BTreeMap<Vec<u8>, Aggregate> = BTreeMap::new();
    let mut rest: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for (key, value) in entries {
        match keys::bucket_of_pending(&key) {
            Some(bucket) => {
                pending.insert(bucket, decode(&key, &value)?);
            }
            None => {
                rest.insert(key, value);
            }
        }
    }
    for (bucket, changes) in pending {
        let mut sum: Aggregate = decoded_or_default(&bucket, rest.remove(&bucket).map(Arc::from))?;
        sum.merge(&changes, 1);
        if !sum.is_zero() {
            rest.insert(bucket, encode(&sum)?);
        }
    }
    Ok(rest.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::aggregate::Scope;
    use crate::domain::records::Id;

    /// An aggregate of `interactions` alone (shared with `hour_parts`' tests).
    pub(super) fn with_interactions(interactions: i64) -> Aggregate {
        Aggregate {
            interactions,
            ..Aggregate::default()
        }
    }

    #[test]
    fn quarters_go_into_their_hour_and_days_and_months_take_changes_beside_them() {
        let team = Scope::Team(Id::parse("billing").unwrap());
        let hour = 480_000 * HOUR_SECONDS;
        let in_hour = |level, start| match placement(&keys::aggregate(level, &team, start)) {
            Placement::InHour { key, quarter } => Some((key, quarter)),
            Placement::Own | Placement::Pending { .. } => None,
        };
        let (quarter_key, quarter) = in_hour(Level::Quarter, hour + 45 * 60).unwrap();
        assert_eq!(quarter, 3);
        let (first_key, first) = in_hour(Level::Quarter, hour).unwrap();
        assert_eq!(first, 0);
        assert_eq!(quarter_key, first_key);
        assert_eq!(hour_of(&quarter_key), Some(hour));
        assert_eq!(
            quarter_key,
            hour_parts_from(&keys::scope_bytes(&team), hour + 5)
        );
        // The next hour's parts are another key, the hour before's too.
        assert_ne!(
            in_hour(Level::Quarter, hour + HOUR_SECONDS).unwrap().0,
            quarter_key
        );
        let before = in_hour(Level::Quarter, hour - QUARTER_SECONDS).unwrap();
        assert_eq!(before.1, 3);
        assert_eq!(hour_of(&before.0), Some(hour - HOUR_SECONDS));
        // Days' and months' changes wait beside them: the same key, but for
        // the level's capital letter.
        for (level, byte) in [(Level::Day, b'D'), (Level::Month, b'M')] {
            let bucket = keys::aggregate(level, &team, hour);
            let Placement::Pending { changes } = placement(&bucket) else {
                panic!("{level:?} changes are pending first");
            };
            assert_eq!(changes[1], byte);
            assert_eq!(changes[2..], bucket[2..]);
            assert_eq!(keys::bucket_of_pending(&changes), Some(bucket));
        }
        // Keys that are no bucket's are their own.
        assert_eq!(placement(b"Ad"), Placement::Own);
        assert_eq!(placement(b"Aq"), Placement::Own);
        assert_eq!(placement(b"Xq01234567890"), Placement::Own);
        let unaligned = keys::aggregate(Level::Quarter, &team, hour + 60);
        assert_eq!(placement(&unaligned), Placement::Own);
    }

    #[test]
    fn changes_read_modify_and_write_the_hour_parts() {
        let scope = Scope::Organization;
        let hour = 470_000 * HOUR_SECONDS;
        let quarter = keys::aggregate(Level::Quarter, &scope, hour + 900);
        let month = keys::aggregate(Level::Month, &scope, hour);
        let Placement::InHour { key, .. } = placement(&quarter) else {
            panic!("a quarter is in its hour");
        };
        let mut before = HourParts::default();
        before.set(3, with_interactions(3));
        let stored_bytes: Arc<[u8]> = encode(&before).unwrap().into();
        let changes = aggregate_changes(
            &[],
            vec![
                (quarter, with_interactions(2)),
                (month.clone(), with_interactions(9)),
            ],
            |k| Ok((k == key.as_slice()).then(|| stored_bytes.clone())),
        )
        .unwrap();
        let mut expected = before.clone();
        expected.set(1, with_interactions(2));
        let pending = keys::pending_changes_of(&month).unwrap();
        assert_eq!(
            changes,
            vec![
                (key.clone(), Some(encode(&expected).unwrap())),
                // A month with nothing stored takes its first changes at once.
                (month.clone(), Some(encode(&with_interactions(9)).unwrap())),
                (pending.clone(), None),
            ]
        );
        // Retracting the last part deletes the value; a change earlier in the
        // commit is the base, not the store.
        let three = keys::aggregate(Level::Quarter, &scope, hour + 3 * 900);
        let changes = aggregate_changes(
            &[(key.clone(), Some(encode(&before).unwrap()))],
            vec![(three.clone(), with_interactions(-3))],
            |_| panic!("the earlier change is the base"),
        )
        .unwrap();
        assert_eq!(changes, vec![(key.clone(), None)]);
        // Retracting more than is there fails, for a part as for a bucket of
        // its own, and names the bucket.
        let error = aggregate_changes(&[], vec![(three, with_interactions(-4))], |_| {
            Ok(Some(stored_bytes.clone()))
        })
        .unwrap_err();
        assert!(error.to_string().contains("would go negative"), "{error}");
        // A month's changes fold into it once they are a quarter of its size
        // (retracting all it holds, here); one that would go negative fails.
        let stored_month: Arc<[u8]> = encode(&with_interactions(9)).unwrap().into();
        let month_base = |k: &[u8]| Ok((k == month.as_slice()).then(|| stored_month.clone()));
        let added = aggregate_changes(
            &[],
            vec![(month.clone(), with_interactions(-9))],
            month_base,
        );
        assert_eq!(
            added.unwrap(),
            vec![(month.clone(), None), (pending.clone(), None)]
        );
        let error = aggregate_changes(
            &[],
            vec![(month.clone(), with_interactions(-10))],
            month_base,
        )
        .unwrap_err();
        assert!(error.to_string().contains("would go negative"), "{error}");
    }

    /// An aggregate of `interactions` and one handle time per second in
    /// `seconds`, so that its stored form grows with them.
    fn handled(interactions: i64, seconds: std::ops::RangeInclusive<i64>) -> Aggregate {
        let mut aggregate = with_interactions(interactions);
        for second in seconds {
            aggregate.handle.record(second * 1_000_000_000, 1);
        }
        aggregate
    }

    #[test]
    fn changes_to_a_large_month_wait_beside_it_until_they_are_a_quarter_of_its_size() {
        let month = keys::aggregate(Level::Month, &Scope::Organization, 0);
        let pending = keys::pending_changes_of(&month).unwrap();
        let first = handled(100, 1..=400);
        let mut stored: BTreeMap<Vec<u8>, Arc<[u8]>> =
            BTreeMap::from([(month.clone(), encode(&first).unwrap().into())]);
        let mut want = first;
        let mut folds = 0;
        for commit in 0..300 {
            // Each commit's handle time in a bucket of its own (a minute wide).
            let minute = 100 + commit;
            let delta = handled(1, 60 * minute..=60 * minute);
            want.merge(&delta, 1);
            let changes = aggregate_changes(&[], vec![(month.clone(), delta)], |k| {
                Ok(stored.get(k).cloned())
            })
            .unwrap();
            if changes.iter().any(|(key, _)| *key == month) {
                folds += 1;
                assert_eq!(changes.len(), 2, "a fold deletes the pending changes");
            }
            for (key, value) in changes {
                match value {
                    Some(value) => stored.insert(key, value.into()),
                    None => stored.remove(&key),
                };
            }
            // Whatever the split, the sum is the month with every change added.
            let entries = stored.iter().map(|(k, v)| (k.clone(), v.to_vec()));
            let sum: Aggregate = decode(&month, &folded(entries).unwrap()[0].1).unwrap();
            assert_eq!(sum, want);
            if let Some(changes) = stored.get(&pending) {
                assert!(changes.len() * FOLD_AT_FRACTION < stored[&month].len());
            }
        }
        // Most commits wrote only the small pending changes, not the month.
        assert!((1..10).contains(&folds), "{folds} folds");
    }
}
