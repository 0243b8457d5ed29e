//! Recomputing groups into the derived state: the journal's groups after a
//! snapshot (and a background check's catch-up) through the per-commit
//! path, and a replay into an empty state (a start without a snapshot, the
//! end of a bulk load, a verify's or rebuild's scratch state) through its
//! own ([`buckets::ReplayedHours`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};

use super::{is_derived, poisoned, DerivedState, Version};
use crate::store::buckets;
use crate::store::groups::{compute, recompute, Retract};
use crate::store::journal;
use crate::store::keys::{self, Group};
use crate::store::kv::{AggregateDelta, Change};
use crate::store::txn::Txn;

/// Groups recomputed per transaction while recovering.
const RECOVERY_BATCH_GROUPS: usize = 2_000;

/// A long recomputation logs its progress every this many batches (100,000
/// groups: about a minute).
const PROGRESS_EVERY_BATCHES: usize = 50;
/// A replay from empty keeps an hour's parts decoded while one of this many
/// last batches changed it ([`buckets::ReplayedHours`]).
const HELD_BATCHES: u64 = 4;

impl DerivedState {
    /// Recomputes groups from the raw records into the derived state,
    /// without journaling them (they are journaled already, or the whole
    /// state is being recomputed). What each contributed before is
    /// retracted: as stored, in a state that keeps contributions; else as
    /// computed from `as_at_snapshot`; else nothing (a state recomputed
    /// from empty). Tickets sort before customers, which read the contact
    /// index tickets maintain.
    pub fn recompute_groups(&self, groups: BTreeSet<Group>) -> Result<()> {
        self.recompute_groups_since(groups.into_iter().collect(), None)
    }

    /// Replays groups, in the order given, into this state, which holds no
    /// aggregates yet (a verify's or rebuild's scratch state): see
    /// [`DerivedState::replay_from_empty`]. Customers must come after the
    /// tickets.
    pub fn replay_groups(&self, groups: Vec<Group>) -> Result<()> {
        self.replay_from_empty(groups)
    }

    pub(super) fn recompute_groups_since(
        &self,
        groups: Vec<Group>,
        as_at_snapshot: Option<&journal::AsAtSnapshot<'_>>,
    ) -> Result<()> {
        let started = Instant::now();
        for (done, batch) in groups.chunks(RECOVERY_BATCH_GROUPS).enumerate() {
            log_progress(done, groups.len(), started);
            let (changes, deltas) = self.recomputed(batch, as_at_snapshot)?.into_parts()?;
            let changes = only_derived(changes)?;
            let mut writer = self.writer.lock().map_err(poisoned)?;
            let stored = self.stored_aggregates(&writer.master, &changes, deltas)?;
            let kept = self.kept(changes);
            writer.master.map.apply(kept.into_iter().chain(stored))?;
            self.publish(writer.master.clone());
        }
        Ok(())
    }

    /// Replays groups into a state that holds no aggregates yet, in the
    /// order given: a replay into an empty state orders them by time, so
    /// that each batch changes few hours. Aggregates are built as
    /// [`buckets::ReplayedHours`] says, days and months last; nothing may
    /// read the state until this returns.
    pub(super) fn replay_from_empty(&self, groups: Vec<Group>) -> Result<()> {
        let started = Instant::now();
        let aggregates = [keys::AGGREGATE];
        let after_aggregates = [keys::AGGREGATE + 1];
        let holds_aggregates = {
            let view = self.view();
            let mut any = false;
            view.map
                .visit(&aggregates, Some(&after_aggregates), &mut |_, _| {
                    any = true;
                    Ok(false)
                })?;
            any
        };
        if holds_aggregates {
            return Err(Error::Internal(
                "a replay from empty into a state that holds aggregates".into(),
            ));
        }
        let mut hours = buckets::ReplayedHours::default();
        for (done, batch) in groups.chunks(RECOVERY_BATCH_GROUPS).enumerate() {
            log_progress(done, groups.len(), started);
            let (changes, quarters) = self.recomputed(batch, None)?.into_quarters()?;
            let changes = only_derived(changes)?;
            let mut writer = self.writer.lock().map_err(poisoned)?;
            writer.master.map.apply(self.kept(changes))?;
            let map = &writer.master.map;
            hours.add(quarters, |key| Ok(map.get(key)?.map(Arc::from)))?;
            let released = hours.release_unchanged(HELD_BATCHES)?;
            writer.master.map.apply(released)?;
            self.publish(writer.master.clone());
        }
        let mut writer = self.writer.lock().map_err(poisoned)?;
        writer.master.map.apply(hours.into_changes()?)?;
        let hour_parts = [keys::AGGREGATE, keys::HOUR_PARTS];
        let after_hour_parts = [keys::AGGREGATE, keys::HOUR_PARTS + 1];
        let map = &writer.master.map;
        let days_and_months = buckets::days_and_months(|visit| {
            map.visit(&hour_parts, Some(&after_hour_parts), visit)
        })?;
        writer.master.map.apply(days_and_months)?;
        self.publish(writer.master.clone());
        Ok(())
    }

    /// A transaction over this state that recomputes `batch`, retracting
    /// what each group contributed: as stored, in a state that keeps
    /// contributions; else as computed from `as_at_snapshot`; else nothing.
    fn recomputed(
        &self,
        batch: &[Group],
        as_at_snapshot: Option<&journal::AsAtSnapshot<'_>>,
    ) -> Result<Txn<'_>> {
        let mut txn = Txn::new(self);
        for group in batch {
            let retract = match as_at_snapshot {
                _ if self.keeps_contributions => Retract::Stored,
                Some(view) => Retract::This(compute(view, group)?),
                None => Retract::This(Default::default()),
            };
            recompute(&mut txn, group, retract)?;
        }
        Ok(txn)
    }

    /// The derived changes this state keeps: all but the `G` keys' where it
    /// keeps no contributions (they only name groups to the journal).
    pub(super) fn kept(&self, mut derived: Vec<Change>) -> Vec<Change> {
        if !self.keeps_contributions {
            derived.retain(|(key, _)| key.first() != Some(&keys::GROUP));
        }
        derived
    }

    /// The stored form of aggregate deltas added to their buckets in `map`
    /// (after `earlier`, the same commit's byte changes).
    pub(super) fn stored_aggregates(
        &self,
        version: &Version,
        earlier: &[Change],
        deltas: Vec<AggregateDelta>,
    ) -> Result<Vec<Change>> {
        let (derived, engine): (Vec<_>, Vec<_>) =
            deltas.into_iter().partition(|(key, _)| is_derived(key));
        if !engine.is_empty() {
            return Err(Error::Internal(
                "an aggregate change outside the derived state".into(),
            ));
        }
        buckets::aggregate_changes(earlier, derived, |key| {
            Ok(version.map.get(key)?.map(Arc::from))
        })
    }
}

/// Logs a long recomputation's progress every [`PROGRESS_EVERY_BATCHES`].
fn log_progress(done_batches: usize, of: usize, started: Instant) {
    if done_batches > 0 && done_batches.is_multiple_of(PROGRESS_EVERY_BATCHES) {
        tracing::info!(
            done = done_batches * RECOVERY_BATCH_GROUPS,
            of,
            elapsed_s = started.elapsed().as_secs(),
            "recomputing groups"
        );
    }
}

/// A recomputation's changes, checked to be all derived state.
fn only_derived(changes: Vec<Change>) -> Result<Vec<Change>> {
    if let Some((key, _)) = changes.iter().find(|(key, _)| !is_derived(key)) {
        return Err(Error::Internal(format!(
            "recomputing a group changed the raw key {}",
            keys::describe_key(key)
        )));
    }
    Ok(changes)
}
