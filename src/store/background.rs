//! Verify and rebuild while writes go on.
//!
//! The long part, recomputing every group's derived state from the raw
//! records, runs off the writer's thread ([`prepare`]) while commits
//! continue; the journal entries written meanwhile are kept for it
//! ([`DerivedState::hold_journal`]). The writer then finishes between two
//! commits ([`finish_verify`], [`finish_rebuild`]): it recomputes the raw
//! indexes (one pass over the raw records, far shorter than the groups),
//! catches the recomputed state up with the groups journaled since the check
//! began, and compares it with the state served, or commits what differs. A journal
//! entry that says every group changed (another rebuild), or team terms that
//! changed meanwhile, make it fall back to doing the whole check there.

use std::collections::BTreeMap;

use std::sync::Arc;

use crate::error::{Error, Result};

use super::keys;
use super::kv::{Change, Entry, KvStore};
use super::state::{difference, without_contributions, DerivedMap, DerivedState};
use super::verify::{
    self, check_targets, collapsed_terms, commit_rebuild, compare, recompute_group_state,
    recompute_raw_indexes, OnDamage, RebuildReport, SourceCheck, TermsVersions, VerifyReport,
};

/// What the long part of a check computed, and from when.
#[derive(Debug)]
pub struct Prepared {
    /// The first journal entry the recomputation may not have seen.
    since: u64,
    /// The recomputed `G`, `A` and `X` entries (`G`: what the catch-up
    /// retracts).
    group_state: BTreeMap<Vec<u8>, Vec<u8>>,
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
        let mut on_damage = if rebuild {
            OnDamage::Fail
        } else {
            OnDamage::Collect(&mut sources)
        };
        let indexes = recompute_raw_indexes(kv, &mut on_damage)?;
        let group_state = recompute_group_state(kv, terms.as_ref(), &indexes, true)?;
        Ok(Prepared {
            since,
            group_state,
            terms,
        })
    })();
    if prepared.is_err() {
        state.release_journal()?;
    }
    prepared
}

/// The recomputed group state caught up with the groups journaled since it
/// began, with `engine` as the recomputation reads it; `None` if the journal
/// cannot say which groups changed.
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
    let map: DerivedMap = prepared
        .group_state
        .into_iter()
        .map(|(key, value)| (Arc::<[u8]>::from(key), Arc::<[u8]>::from(value)))
        .collect();
    tracing::info!(
        groups = changed.len(),
        "background check catching up with the writes made meanwhile"
    );
    let scratch = state.scratch_over(engine, map);
    scratch.recompute_groups(changed)?;
    Ok(Some(without_contributions(scratch.into_map()?)))
}

/// Finishes a verify on the writer's thread.
pub fn finish_verify(
    kv: &dyn KvStore,
    state: &DerivedState,
    prepared: Prepared,
) -> Result<VerifyReport> {
    let Some(fresh) = caught_up(state, state.engine(), prepared)? else {
        tracing::info!("the journal cannot tell what changed during the check: verifying whole");
        return verify::verify(kv);
    };
    let mut sources = SourceCheck::default();
    let indexes = recompute_raw_indexes(kv, &mut OnDamage::Collect(&mut sources))?;
    check_targets(kv, &mut sources)?;
    let groups = indexes.groups.len() as u64;
    let mut expected = indexes.entries;
    expected.extend(
        fresh
            .iter()
            .map(|(key, value)| (key.to_vec(), value.to_vec())),
    );
    compare(kv, expected, &sources, groups)
}

/// Finishes a rebuild on the writer's thread: the collapsed terms, the raw
/// indexes and the new derived state, in one durable commit and one swap.
pub fn finish_rebuild(
    kv: &dyn KvStore,
    state: &DerivedState,
    prepared: Prepared,
) -> Result<RebuildReport> {
    let (terms, terms_changes) = collapsed_terms(kv)?;
    if prepared.terms.as_ref() != Some(&terms) {
        state.release_journal()?;
        tracing::info!("team terms changed during the rebuild: rebuilding whole");
        return verify::rebuild(kv);
    }
    let with_terms: Arc<dyn KvStore> = Arc::new(TermsOverlay {
        engine: state.engine(),
        terms,
    });
    let Some(fresh) = caught_up(state, with_terms, prepared)? else {
        tracing::info!("the journal cannot tell what changed during the rebuild: rebuilding whole");
        return verify::rebuild(kv);
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
    changes.extend(difference(&state.current().map, &fresh));
    let keys_written = changes.len() as u64;
    commit_rebuild(kv, changes, groups, keys_written)
}

/// The engine as a rebuild computes with it: team terms are the collapsed
/// ones it is about to store. Read-only.
struct TermsOverlay {
    engine: Arc<dyn KvStore>,
    terms: TermsVersions,
}

impl TermsOverlay {
    fn terms_in(&self, start: &[u8], end: &[u8]) -> Vec<Entry> {
        self.terms
            .range(start.to_vec()..end.to_vec())
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }
}

fn is_terms(key: &[u8]) -> bool {
    key.first() == Some(&keys::TERMS)
}

impl KvStore for TermsOverlay {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if is_terms(key) {
            return Ok(self.terms.get(key).cloned());
        }
        self.engine.get(key)
    }

    fn scan_prefix<'a>(
        &'a self,
        prefix: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a> {
        if is_terms(prefix) {
            let end = keys::prefix_end(prefix).unwrap_or_else(|| vec![u8::MAX; 2]);
            return Box::new(self.terms_in(prefix, &end).into_iter().map(Ok));
        }
        self.engine.scan_prefix(prefix)
    }

    fn range<'a>(
        &'a self,
        start: &[u8],
        end: &[u8],
    ) -> Box<dyn Iterator<Item = Result<Entry>> + Send + 'a> {
        if is_terms(start) && is_terms(end) {
            return Box::new(self.terms_in(start, end).into_iter().map(Ok));
        }
        self.engine.range(start, end)
    }

    fn commit(&self, _: Vec<Change>) -> Result<()> {
        Err(Error::Internal(
            "a rebuild's view of the store is read-only".into(),
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
