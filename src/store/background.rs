//! Verify and rebuild while writes go on.
//!
//! The long part runs off the writer's thread ([`prepare`]) while commits
//! continue: every group (ticket, customer) is replayed from the raw records
//! through the write path into a scratch state that starts empty, the
//! same code that recovers a store without a snapshot, so there is no
//! second implementation of the metrics to drift from the first, and the
//! memory it takes is about that of the state served. The journal entries
//! written meanwhile are kept for it ([`DerivedState::hold_journal`]). The
//! writer then finishes between two commits ([`finish_verify`],
//! [`finish_rebuild`]): it recomputes the raw indexes (one pass over the raw
//! records, far shorter than the groups), catches the scratch state up with
//! the groups journaled since the check began, and compares it with the
//! state served (one walk over both maps in key order), or
//! commits what differs. A journal that cannot say which groups changed, or
//! team terms that changed during a rebuild, make it recompute whole there
//! while writes wait.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Error, Result};

use super::keys;
use super::kv::{Change, Entry, KvStore};
use super::state::{difference, without_contributions, DerivedMap, DerivedState};
use super::verify::{
    check_targets, collapsed_terms, commit_rebuild, compare, recompute_raw_indexes, OnDamage,
    RebuildReport, SourceCheck, TermsVersions, VerifyReport,
};

/// What the long part of a check computed, and from when.
#[derive(Debug)]
pub struct Prepared {
    /// The first journal entry the recomputation may not have seen.
    since: u64,
    /// The recomputed derived state, with the `G` entries (each group's
    /// contribution) the catch-up retracts.
    fresh: DerivedMap,
    /// The collapsed terms a rebuild computed with.
    terms: Option<TermsVersions>,
}

/// The long part of a verify (`rebuild: false`) or a rebuild, on the
/// caller's thread while writes go on. The journal is held from its start
/// until the finish.
pub fn prepare(kv: &dyn KvStore, state: &DerivedState, rebuild: bool) -> Result<Prepared> {
    let since = state.hold_journal()?;
    let prepared = (|| {
        let terms = if rebuild {
            Some(collapsed_terms(kv)?.0)
        } else {
            None
        };
        let mut sources = SourceCheck::default();
        let on_damage = if rebuild {
            OnDamage::Fail
        } else {
            // Damaged records are reported by the finish, which reads them again.
            OnDamage::Collect(&mut sources)
        };
        let fresh = replayed(kv, state, terms.as_ref(), on_damage)?;
        Ok(Prepared {
            since,
            fresh,
            terms,
        })
    })();
    if prepared.is_err() {
        state.release_journal()?;
    }
    prepared
}

/// Every group's derived state recomputed from the raw records: replayed
/// group by group through the write path into a scratch state that starts
/// empty, so that it takes about the memory of the state served (and each
/// group's contribution). The raw indexes it reads are recomputed from the
/// raw records, not the stored ones, so that a damaged stored index cannot
/// mislead it; with `terms`, so are the team terms.
fn replayed(
    kv: &dyn KvStore,
    state: &DerivedState,
    terms: Option<&TermsVersions>,
    mut on_damage: OnDamage<'_>,
) -> Result<DerivedMap> {
    let indexes = recompute_raw_indexes(kv, &mut on_damage)?;
    let groups = indexes.groups;
    let mut replaced = indexes.entries;
    let mut families = vec![keys::RAW_INDEX, keys::PENDING, keys::META];
    if let Some(terms) = terms {
        replaced.extend(terms.clone());
        families.push(keys::TERMS);
    }
    let engine = Arc::new(Overlay {
        engine: state.engine(),
        families,
        replaced,
    });
    tracing::info!(
        groups = groups.len(),
        "recomputing every group from the raw records"
    );
    let scratch = state.scratch_over(engine, DerivedMap::default());
    scratch.replay_groups(groups)?;
    scratch.into_map()
}

/// The recomputed state caught up with the groups journaled since it began,
/// with `engine` as the recomputation reads it, without the contributions;
/// `None` if the journal cannot say which groups changed.
fn caught_up(
    state: &DerivedState,
    engine: Arc<dyn KvStore>,
    prepared: Prepared,
) -> Result<Option<DerivedMap>> {
    let changed = state.journaled_since(prepared.since);
    state.release_journal()?;
    let Some(changed) = changed? else {
        return Ok(None);
    };
    tracing::info!(
        groups = changed.len(),
        "background check catching up with the writes made meanwhile"
    );
    let scratch = state.scratch_over(engine, prepared.fresh);
    scratch.recompute_groups(changed)?;
    without_contributions(scratch.into_map()?).map(Some)
}

/// Finishes a verify on the writer's thread.
pub fn finish_verify(
    kv: &dyn KvStore,
    state: &DerivedState,
    prepared: Prepared,
) -> Result<VerifyReport> {
    let fresh = match caught_up(state, state.engine(), prepared)? {
        Some(fresh) => fresh,
        None => {
            tracing::warn!(
                "the journal cannot tell what changed during the check: recomputing whole, writes wait"
            );
            let mut ignored = SourceCheck::default();
            let fresh = replayed(kv, state, None, OnDamage::Collect(&mut ignored))?;
            without_contributions(fresh)?
        }
    };
    let mut sources = SourceCheck::default();
    let indexes = recompute_raw_indexes(kv, &mut OnDamage::Collect(&mut sources))?;
    check_targets(kv, &mut sources)?;
    compare(kv, indexes, &state.current().map, &fresh, &sources)
}

/// Finishes a rebuild on the writer's thread: the collapsed terms, the raw
/// indexes and the new derived state, in one durable commit and one swap.
pub fn finish_rebuild(
    kv: &dyn KvStore,
    state: &DerivedState,
    prepared: Prepared,
) -> Result<RebuildReport> {
    let (terms, terms_changes) = collapsed_terms(kv)?;
    let fresh = if prepared.terms.as_ref() != Some(&terms) {
        state.release_journal()?;
        None
    } else {
        let with_terms: Arc<dyn KvStore> = Arc::new(Overlay {
            engine: state.engine(),
            families: vec![keys::TERMS],
            replaced: terms.clone(),
        });
        caught_up(state, with_terms, prepared)?
    };
    let fresh = match fresh {
        Some(fresh) => fresh,
        None => {
            tracing::warn!(
                "team terms changed during the rebuild, or the journal cannot tell what did: \
                 rebuilding whole, writes wait"
            );
            without_contributions(replayed(kv, state, Some(&terms), OnDamage::Fail)?)?
        }
    };
    let indexes = recompute_raw_indexes(kv, &mut OnDamage::Fail)?;
    let mut changes = terms_changes;
    for family in [keys::RAW_INDEX, keys::PENDING, keys::META] {
        for entry in kv.scan_prefix(&[family]) {
            let (key, _) = entry?;
            if !indexes.entries.contains_key(&key) {
                changes.push((key, None));
            }
        }
    }
    let groups = indexes.groups.len() as u64;
    changes.extend(
        indexes
            .entries
            .into_iter()
            .map(|(key, value)| (key, Some(value))),
    );
    // What differs from the state served, as one commit through the layers
    // above (the open-ticket copy follows it) that journals the groups.
    changes.extend(difference(&state.current().map, &fresh)?);
    let keys_written = changes.len() as u64;
    commit_rebuild(kv, changes, groups, keys_written)
}

/// The engine as a recomputation reads it: the keys of some families
/// (raw indexes, team terms) are replaced by recomputed ones. Read-only.
struct Overlay {
    engine: Arc<dyn KvStore>,
    /// The families whose keys `replaced` holds instead of the engine.
    families: Vec<u8>,
    replaced: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Overlay {
    fn is_replaced(&self, key: &[u8]) -> bool {
        key.first()
            .is_some_and(|family| self.families.contains(family))
    }

    /// What a read across replaced and other families gets: no recomputation makes one.
    fn mixed<'a>(&self) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a> {
        Box::new(std::iter::once(Err(Error::Internal(
            "a recomputation read across the families it replaces".into(),
        ))))
    }

    fn replaced_in(&self, start: &[u8], end: &[u8]) -> Vec<Entry> {
        self.replaced
            .range(start.to_vec()..end.to_vec())
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }
}

impl KvStore for Overlay {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.is_replaced(key) {
            return Ok(self.replaced.get(key).cloned());
        }
        self.engine.get(key)
    }

    fn scan_prefix<'a>(
        &'a self,
        prefix: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a> {
        match keys::prefix_end(prefix) {
            Some(end) if !prefix.is_empty() => self.range(prefix, &end),
            _ => self.mixed(),
        }
    }

    fn range<'a>(
        &'a self,
        start: &[u8],
        end: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a> {
        // Every read of a recomputation stays in one family: it ends in
        // that family, or where the next one starts.
        match start.first() {
            Some(&family) if end.first() == Some(&family) || end == [family.wrapping_add(1)] => {
                if self.families.contains(&family) {
                    Box::new(self.replaced_in(start, end).into_iter().map(Ok))
                } else {
                    self.engine.range(start, end)
                }
            }
            _ => self.mixed(),
        }
    }

    fn commit(&self, _: Vec<Change>) -> Result<()> {
        Err(Error::Internal(
            "a recomputation's view of the store is read-only".into(),
        ))
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64> {
        self.engine.size_on_disk()
    }

    fn keys_written(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::aggregate::Scope;
    use crate::domain::records::Priority;
    use crate::domain::sla::{SlaClock, SlaMetric, SlaPolicy, SlaRule};
    use crate::domain::time::{Instant, Window, NANOS_PER_SECOND};
    use crate::store::kv::SledOptions;
    use crate::store::{reads, Command, Reply, Store};
    use crate::workload::{generate, WorkloadConfig};

    /// A rebuild whose team terms change between its long part and its
    /// finish cannot use what it prepared: the finish recomputes whole with
    /// the terms as they are then (applied to all history), and what it
    /// leaves verifies clean.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rebuild_whose_terms_change_meanwhile_recomputes_whole_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&SledOptions::for_tests(dir.path())).unwrap();
        // A moment on a 15-minute boundary.
        let now_seconds = 1_790_000_100;
        let config = WorkloadConfig::new(5, 400, 20, Instant(now_seconds * NANOS_PER_SECOND));
        let team = config.team_ids()[0].clone();
        let outcomes = store.record(generate(&config)).await.unwrap();
        assert!(outcomes.iter().all(Result::is_ok));
        let history = Window::new(now_seconds - 40 * 86_400, now_seconds + 900).unwrap();
        let sla_counted = || {
            let team = [Scope::Team(team.clone())];
            let total = reads::window_aggregate(store.kv(), &team, history).unwrap();
            total.first_response_sla.met + total.first_response_sla.breached
        };
        assert_eq!(sla_counted(), 0, "no policy yet");

        let prepared = prepare(store.inner.kv.as_ref(), &store.inner.state, true).unwrap();
        // Takes effect a day from now; the rebuild applies it to all history.
        let policy = SlaPolicy::new([SlaRule {
            priority: Priority::Normal,
            metric: SlaMetric::FirstResponse,
            within_nanos: 3_600 * NANOS_PER_SECOND,
            clock: SlaClock::Calendar,
        }]);
        store.set_sla_policy(team.clone(), policy).await.unwrap();
        let reply = store
            .submit(Command::FinishRebuild(Box::new(prepared)))
            .await
            .unwrap();
        let Reply::Rebuild(report) = reply else {
            panic!("a rebuild's finish answered something else");
        };
        assert!(report.groups_rebuilt > 0);
        assert!(sla_counted() > 0, "the new policy counts in all history");
        let verify = store.verify().await.unwrap();
        assert_eq!(verify.mismatch_count, 0, "{:?}", verify.mismatches);
    }
}
