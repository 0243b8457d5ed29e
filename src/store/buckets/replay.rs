//! Aggregates of a replay into an empty state: a recovery without a
//! snapshot, the end of a bulk load, the scratch state of a verify or a
//! rebuild. A commit adds each bucket's change to its stored value,
//! decoding and re-encoding it, and rolls its changes per quarter-hour up
//! into days and months; replayed batch by batch, that was most of
//! a replay's time, since each batch changes the same days and months
//! again. A replay from empty only adds, and nothing reads its state
//! until it ends, so here:
//!
//! - each batch's changes per scope and quarter-hour (the transaction's,
//!   before any roll-up) are added to their hour's parts, held decoded while
//!   recent batches change them and encoded once they have gone unchanged
//!   for a few batches (a replay runs in time order, so the hour is seldom
//!   changed again; if it is, it is decoded again);
//! - days and months are not changed batch by batch at all: at the end each
//!   is summed from its quarters ([`days_and_months`]), in one pass over the
//!   hours' parts in key order.
//!
//! The buckets are the ones commits would have built: a day's and a
//! month's change is always the sum of the same changes to their hours.

use std::collections::hash_map::{self, HashMap};

use crate::domain::aggregate::{AggregateSum, Scope};
use crate::domain::time::{Level, QUARTER_SECONDS};
use crate::error::{Error, Result};

use super::{decoded_or_default, hour_of, hour_parts_key, HourParts, Stored, HOUR_SECONDS};
use crate::store::codec::{decode, encode};
use crate::store::keys;
use crate::store::kv::Change;
use crate::store::packed::Visit;
use crate::store::txn::QuarterChanges;

/// Hours' parts held decoded during a replay from empty.
#[derive(Debug, Default)]
pub struct ReplayedHours {
    /// Boxed: a map that grows or rehashes moves its entries.
    held: HashMap<(Scope, i64), Box<HeldHour>, foldhash::fast::RandomState>,
    /// Batches added so far.
    batch: u64,
}

#[derive(Debug)]
struct HeldHour {
    key: Vec<u8>,
    parts: HourParts,
    /// The last batch that changed it.
    changed: u64,
}

impl ReplayedHours {
    /// Adds one batch's changes, by scope and quarter-hour start, to their
    /// hours' parts; an hour not held is first decoded from what `stored`
    /// reads.
    pub fn add(
        &mut self,
        quarters: QuarterChanges,
        stored: impl Fn(&[u8]) -> Result<Stored>,
    ) -> Result<()> {
        self.batch += 1;
        for ((scope, quarter), delta) in quarters {
            if delta.is_zero() {
                continue;
            }
            let hour = quarter.div_euclid(HOUR_SECONDS) * HOUR_SECONDS;
            let index = u8::try_from((quarter - hour) / QUARTER_SECONDS)
                .map_err(|_| Error::Internal(format!("quarter {quarter} is not in its hour")))?;
            let held = match self.held.entry((scope, hour)) {
                hash_map::Entry::Occupied(held) => held.into_mut(),
                hash_map::Entry::Vacant(vacant) => {
                    let key = hour_parts_key(&keys::scope_bytes(&vacant.key().0), hour);
                    let parts = decoded_or_default(&key, stored(&key)?)?;
                    vacant.insert(Box::new(HeldHour {
                        key,
                        parts,
                        changed: 0,
                    }))
                }
            };
            held.parts.add(index, &delta);
            held.changed = self.batch;
        }
        Ok(())
    }

    /// The stored changes of the hours no batch changed among the last
    /// `batches`, which are then no longer held.
    pub fn release_unchanged(&mut self, batches: u64) -> Result<Vec<Change>> {
        let before = self.batch.saturating_sub(batches);
        self.held
            .extract_if(|_, held| held.changed <= before)
            .map(|(_, held)| held.into_change())
            .collect()
    }

    /// The stored changes of every hour held.
    pub fn into_changes(self) -> Result<Vec<Change>> {
        self.held
            .into_values()
            .map(|held| held.into_change())
            .collect()
    }
}

impl HeldHour {
    fn into_change(self) -> Result<Change> {
        let value = (!self.parts.is_empty())
            .then(|| encode(&self.parts))
            .transpose()?;
        Ok((self.key, value))
    }
}

/// Every day's and month's bucket, summed from the hours `visit_hours`
/// gives the visitor it is called with: every hour-parts entry of the
/// state, in key order (by scope, then time).
pub fn days_and_months(
    visit_hours: impl FnOnce(&mut Visit<'_>) -> Result<()>,
) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    let mut day = Summing::new(Level::Day);
    let mut month = Summing::new(Level::Month);
    visit_hours(&mut |key, value| {
        let scope = key.len().checked_sub(8).and_then(|end| key.get(2..end));
        let (Some(hour), Some(scope)) = (hour_of(key), scope) else {
            return Err(Error::Internal(format!(
                "{} is not an hour's parts",
                keys::describe_key(key)
            )));
        };
        let parts: HourParts = decode(key, value)?;
        for summing in [&mut day, &mut month] {
            changes.extend(summing.add(scope, hour, &parts)?);
        }
        Ok(true)
    })?;
    changes.extend(day.finish()?);
    changes.extend(month.finish()?);
    Ok(changes)
}

/// The bucket of one level being summed: its scope's encoding, its start,
/// and the sum so far.
struct Summing {
    level: Level,
    current: Option<(Vec<u8>, i64, AggregateSum)>,
}

impl Summing {
    fn new(level: Level) -> Summing {
        Summing {
            level,
            current: None,
        }
    }

    /// Adds an hour of `scope` (its quarters) to its bucket; gives the
    /// bucket before it once the hour is past it.
    fn add(&mut self, scope: &[u8], hour: i64, parts: &HourParts) -> Result<Option<Change>> {
        let start = self.level.bucket_start(hour);
        let finished = match &self.current {
            Some((current, at, _)) if current == scope && *at == start => None,
            Some(_) => self.finish()?,
            None => None,
        };
        let sum = &mut self
            .current
            .get_or_insert_with(|| (scope.to_vec(), start, AggregateSum::default()))
            .2;
        for quarter in parts.quarters() {
            sum.add(quarter, 1);
        }
        Ok(finished)
    }

    /// The bucket summed so far, stored (none if it adds up to zero).
    fn finish(&mut self) -> Result<Option<Change>> {
        let Some((scope, start, sum)) = self.current.take() else {
            return Ok(None);
        };
        let sum = sum.finish();
        if sum.is_zero() {
            return Ok(None);
        }
        Ok(Some((
            keys::aggregate_of(self.level, &scope, start),
            Some(encode(&sum)?),
        )))
    }
}
