//! The invariant of SPEC §4: every derived value (raw indexes, pending markers,
//! counters, aggregates, derived indexes) equals a recomputation from the raw
//! records. The recomputation itself replays every group through the write
//! path ([`super::background`]); this module recomputes the raw indexes,
//! compares, and commits a rebuild.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::domain::aggregate::Aggregate;
use crate::domain::records::{CustomerEvent, Id, Interaction, QualityReview, SurveyResponse};
use crate::domain::scorecard::Targets;
use crate::error::{Error, Result};

use super::buckets::HourParts;
use super::codec::{decode, encode};
use super::groups::{decode_terms, in_replay_order, note_opening, Openings};
use super::keys::{self, Group, RecordKind};
use super::kv::{Change, KvStore};
use super::state::DerivedMap;
use super::writes::Counters;

/// The derived families the engine holds beside the raw records (the rest
/// of the derived state is in memory).
const ENGINE_DERIVED_FAMILIES: [u8; 3] = [keys::RAW_INDEX, keys::PENDING, keys::META];

/// At most this many mismatches are listed (all are counted).
const MAX_LISTED_MISMATCHES: usize = 100;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub groups_checked: u64,
    /// Raw records and targets decoded and checked against their checksums.
    pub values_checked: u64,
    /// Raw records and targets that fail their checksum (also listed as mismatches).
    pub damaged_values: u64,
    pub keys_checked: u64,
    pub mismatch_count: u64,
    /// (readable key, what is wrong), the first 100.
    pub mismatches: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebuildReport {
    pub groups_rebuilt: u64,
    pub keys_written: u64,
}

/// What to do with a source value (a raw record or targets) that is damaged.
pub(super) enum OnDamage<'a> {
    /// Fail: rebuilding from a damaged record would silently drop it.
    Fail,
    /// Note its key and go on without it, to report every problem at once.
    Collect(&'a mut SourceCheck),
}

/// Source values read, and the keys of those that are damaged.
#[derive(Default)]
pub(super) struct SourceCheck {
    checked: u64,
    damaged: Vec<Vec<u8>>,
}

/// Calls `each` with every raw record of a kind, in key order, decoded;
/// a damaged one is handled as `on_damage` says.
fn for_each_raw_record<T: serde::de::DeserializeOwned>(
    kv: &dyn KvStore,
    kind: RecordKind,
    on_damage: &mut OnDamage<'_>,
    mut each: impl FnMut(T),
) -> Result<()> {
    for entry in KvStore::scan_prefix(kv, &keys::raw_prefix(kind)) {
        let (key, value) = entry?;
        match (decode(&key, &value), &mut *on_damage) {
            (Ok(record), OnDamage::Collect(check)) => {
                check.checked += 1;
                each(record);
            }
            (Ok(record), OnDamage::Fail) => each(record),
            (Err(Error::DataLoss(_)), OnDamage::Collect(check)) => {
                check.checked += 1;
                check.damaged.push(key);
            }
            (Err(error), _) => return Err(error),
        }
    }
    Ok(())
}

/// Decodes every stored targets value.
pub(super) fn check_targets(kv: &dyn KvStore, check: &mut SourceCheck) -> Result<()> {
    for entry in KvStore::scan_prefix(kv, &[keys::TARGETS]) {
        let (key, value) = entry?;
        check.checked += 1;
        match decode::<Targets>(&key, &value) {
            Ok(_) => {}
            Err(Error::DataLoss(_)) => check.damaged.push(key),
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The raw indexes, pending markers and counters the raw records imply
/// (`I`, `P`, `M`), and every group in the order a replay takes them
/// ([`in_replay_order`]).
pub(super) struct RawIndexes {
    pub entries: BTreeMap<Vec<u8>, Vec<u8>>,
    pub groups: Vec<Group>,
}

/// The raw indexes, pending markers and counters, recomputed from the raw
/// records (one pass over them, a record at a time).
pub(super) fn recompute_raw_indexes(
    kv: &dyn KvStore,
    on_damage: &mut OnDamage<'_>,
) -> Result<RawIndexes> {
    let mut derived = BTreeMap::new();
    let empty = encode(&())?;
    let mut counters = Counters::default();

    let mut known = HashSet::new();
    let mut tickets = Openings::new();
    for_each_raw_record(
        kv,
        RecordKind::Interaction,
        on_damage,
        |interaction: Interaction| {
            derived.insert(
                keys::ticket_member(&interaction.ticket_id, &interaction.interaction_id),
                empty.clone(),
            );
            counters.interactions += 1;
            note_opening(&mut tickets, &interaction);
            known.insert(interaction.interaction_id);
        },
    )?;
    counters.tickets = tickets.len() as i64;

    let mut feedback = |interaction: &Id, kind: RecordKind, id: &Id, counters: &mut Counters| {
        derived.insert(keys::feedback(interaction, kind, id), empty.clone());
        if !known.contains(interaction) {
            derived.insert(keys::pending(interaction, kind, id), empty.clone());
            match kind {
                RecordKind::Survey => counters.pending_survey_responses += 1,
                _ => counters.pending_quality_reviews += 1,
            }
        }
    };
    let mut surveys = 0;
    for_each_raw_record(
        kv,
        RecordKind::Survey,
        on_damage,
        |survey: SurveyResponse| {
            surveys += 1;
            feedback(
                &survey.interaction_id,
                RecordKind::Survey,
                &survey.response_id,
                &mut counters,
            );
        },
    )?;
    let mut reviews = 0;
    for_each_raw_record(
        kv,
        RecordKind::Review,
        on_damage,
        |review: QualityReview| {
            reviews += 1;
            feedback(
                &review.interaction_id,
                RecordKind::Review,
                &review.review_id,
                &mut counters,
            );
        },
    )?;
    counters.survey_responses = surveys;
    counters.quality_reviews = reviews;

    let mut customers = BTreeSet::new();
    for_each_raw_record(kv, RecordKind::Event, on_damage, |event: CustomerEvent| {
        derived.insert(
            keys::customer_event(&event.customer_id, &event.event_id),
            empty.clone(),
        );
        counters.customer_events += 1;
        customers.insert(event.customer_id);
    })?;
    if counters != Counters::default() {
        derived.insert(keys::stats(), encode(&counters)?);
    }
    let groups = in_replay_order(
        tickets
            .keys()
            .cloned()
            .map(Group::Ticket)
            .chain(customers.into_iter().map(Group::Customer)),
        &tickets,
    );
    Ok(RawIndexes {
        entries: derived,
        groups,
    })
}

/// Team terms keys and values.
pub(super) type TermsVersions = BTreeMap<Vec<u8>, Vec<u8>>;

/// Each team's current terms (calendar and SLA policy) made to apply to all of
/// history: its latest version takes effect from the beginning of time and the
/// earlier ones go (a team whose latest version has neither keeps no version).
/// Returns the terms keys as they will be, and the changes that make them so.
pub(super) fn collapsed_terms(kv: &dyn KvStore) -> Result<(TermsVersions, Vec<Change>)> {
    let mut latest: BTreeMap<Id, (Vec<u8>, Vec<u8>)> = BTreeMap::new();
    let mut stored = Vec::new();
    for entry in KvStore::scan_prefix(kv, &[keys::TERMS]) {
        let (key, value) = entry?;
        let (team, _) = keys::terms_from_key(&key).ok_or_else(|| {
            Error::DataLoss(format!("bad terms key {}", keys::describe_key(&key)))
        })?;
        stored.push(key.clone());
        latest.insert(team, (key, value));
    }
    let mut collapsed = BTreeMap::new();
    for (team, (key, value)) in latest {
        if !decode_terms(&key, &value)?.is_empty() {
            collapsed.insert(keys::terms(&team, i64::MIN), value);
        }
    }
    let mut changes: Vec<Change> = stored
        .into_iter()
        .filter(|key| !collapsed.contains_key(key))
        .map(|key| (key, None))
        .collect();
    changes.extend(
        collapsed
            .iter()
            .map(|(key, value)| (key.clone(), Some(value.clone()))),
    );
    Ok((collapsed, changes))
}

/// Compares every derived value with its recomputation: those the engine
/// holds with `indexes`, and the derived state `served` with `fresh`. Reports
/// `sources` (the raw records and targets decoded on the way) too.
pub(super) fn compare(
    kv: &dyn KvStore,
    indexes: RawIndexes,
    served: &DerivedMap,
    fresh: &DerivedMap,
    sources: &SourceCheck,
) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        groups_checked: indexes.groups.len() as u64,
        values_checked: sources.checked,
        damaged_values: sources.damaged.len() as u64,
        ..VerifyReport::default()
    };
    for key in &sources.damaged {
        report.mismatch(
            key,
            "damaged (fails its checksum or does not decode): restore it from a backup",
        );
    }
    let mut expected = indexes.entries;
    for family in ENGINE_DERIVED_FAMILIES {
        for entry in KvStore::scan_prefix(kv, &[family]) {
            let (key, value) = entry?;
            report.keys_checked += 1;
            match expected.remove(&key) {
                None => report.mismatch(&key, NOT_DERIVABLE),
                Some(want) if want != value => report.mismatch(&key, DIFFERS),
                Some(_) => {}
            }
        }
    }
    for key in expected.keys() {
        report.keys_checked += 1;
        report.mismatch(key, MISSING);
    }
    report.keys_checked += served.len() as u64;
    // Days and months whose bucket or pending changes differ: compared by
    // their sums, which do not depend on the commits that split them.
    let mut days_and_months = BTreeSet::new();
    served.diff(fresh, &mut |item| {
        use super::packed::Difference;
        let key = item.key();
        if matches!(item, Difference::Added(..)) {
            report.keys_checked += 1;
        }
        if let Some(bucket) = keys::bucket_of_pending(key)
            .or_else(|| keys::pending_changes_of(key).map(|_| key.to_vec()))
        {
            days_and_months.insert(bucket);
            return Ok(());
        }
        match item {
            Difference::Added(key, _) => report.mismatch(key, MISSING),
            Difference::Removed(key, _) => report.mismatch(key, NOT_DERIVABLE),
            Difference::Changed { key, old, .. } => {
                report.mismatch(key, differs_or_damaged(key, old))
            }
        }
        Ok(())
    })?;
    for bucket in days_and_months {
        compare_sums(&bucket, served, fresh, &mut report)?;
    }
    if report.mismatch_count > 0 {
        tracing::warn!(
            mismatches = report.mismatch_count,
            "aggregates do not match the raw records"
        );
    }
    Ok(report)
}

/// Compares a day's or month's bucket plus its pending changes as served
/// and as recomputed, reporting a difference under the bucket's key (and a
/// value that does not decode under its own).
fn compare_sums(
    bucket: &[u8],
    served: &DerivedMap,
    fresh: &DerivedMap,
    report: &mut VerifyReport,
) -> Result<()> {
    let pending = keys::pending_changes_of(bucket)
        .ok_or_else(|| Error::Internal("a day or month without pending changes".into()))?;
    // The sum, or the key of a value that does not decode.
    let sum = |map: &DerivedMap| -> Result<std::result::Result<Aggregate, Vec<u8>>> {
        let mut sum = Aggregate::default();
        for key in [bucket, pending.as_slice()] {
            if let Some(value) = map.get(key)? {
                match decode::<Aggregate>(key, &value) {
                    Ok(part) => sum.merge(&part, 1),
                    Err(_) => return Ok(Err(key.to_vec())),
                }
            }
        }
        Ok(Ok(sum))
    };
    let want = sum(fresh)?.map_err(|key| {
        Error::Internal(format!(
            "a recomputed value does not decode: {}",
            keys::describe_key(&key)
        ))
    })?;
    match sum(served)? {
        Err(damaged) => report.mismatch(&damaged, DAMAGED),
        Ok(served) if served == want => {}
        Ok(served) if served.is_zero() => report.mismatch(bucket, MISSING),
        Ok(_) if want.is_zero() => report.mismatch(bucket, NOT_DERIVABLE),
        Ok(_) => report.mismatch(bucket, DIFFERS),
    }
    Ok(())
}

const DAMAGED: &str = "damaged (fails its checksum or does not decode)";
const NOT_DERIVABLE: &str = "stored but not derivable from the raw records";
const DIFFERS: &str = "differs from its recomputation";
const MISSING: &str = "missing: the raw records imply it";

/// Why a derived value differs from its recomputation: it is damaged if it
/// does not decode, else it differs.
fn differs_or_damaged(key: &[u8], value: &[u8]) -> &'static str {
    let decodes = match (key.first(), key.get(1)) {
        (Some(&keys::AGGREGATE), Some(&keys::HOUR_PARTS)) => {
            decode::<HourParts>(key, value).is_ok()
        }
        (Some(&keys::AGGREGATE), Some(&keys::SCOPE_REGISTRY)) => decode::<i64>(key, value).is_ok(),
        (Some(&keys::AGGREGATE), _) => decode::<Aggregate>(key, value).is_ok(),
        _ => true,
    };
    if decodes {
        DIFFERS
    } else {
        DAMAGED
    }
}

impl VerifyReport {
    /// Counts a mismatch, and lists the first [`MAX_LISTED_MISMATCHES`].
    fn mismatch(&mut self, key: &[u8], description: &str) {
        self.mismatch_count += 1;
        if self.mismatches.len() < MAX_LISTED_MISMATCHES {
            self.mismatches
                .push((keys::describe_key(key), description.to_owned()));
        }
    }
}

/// Commits what a rebuild changes, in one commit, and reports it.
pub(super) fn commit_rebuild(
    kv: &dyn KvStore,
    changes: Vec<Change>,
    groups: u64,
    keys_written: u64,
) -> Result<RebuildReport> {
    let mut changes = changes;
    // Journaled as changing every group: a replay recomputes them all.
    changes.push((keys::EVERY_GROUP.to_vec(), None));
    kv.commit(changes)
        .map_err(|e| Error::Internal(format!("rebuild commit failed: {e}")))?;
    tracing::info!(groups, keys_written, "aggregates rebuilt");
    Ok(RebuildReport {
        groups_rebuilt: groups,
        keys_written,
    })
}
