//! The invariant of SPEC §4: every derived value (raw indexes, pending markers,
//! group contributions, aggregates, derived indexes, counters) equals a
//! recomputation from the raw records. `verify` checks it; `rebuild` restores it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::domain::aggregate::Aggregate;
use crate::domain::records::{CustomerEvent, Id, Interaction, QualityReview, SurveyResponse};
use crate::domain::scorecard::Targets;
use crate::domain::time::Level;
use crate::error::{Error, Result};

use super::buckets::{self, HourParts};
use super::codec::{decode, encode};
use super::groups::{compute, decode_terms, fact_deltas, index_entries, listings};
use super::keys::{self, Group, RecordKind};
use super::kv::{Change, Entry, KvStore};
use super::listings::{DayListing, ListingChange};
use super::txn::Reader;
use super::writes::Counters;

/// The key families that are derived from the raw records.
const DERIVED_FAMILIES: [u8; 6] = [
    keys::RAW_INDEX,
    keys::PENDING,
    keys::GROUP,
    keys::AGGREGATE,
    keys::DERIVED_INDEX,
    keys::META,
];

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

/// Reads source data (raw records, team terms) from the store and derived
/// families from the recomputation under way, so that a damaged stored index
/// cannot mislead it.
struct RecomputingReader<'a> {
    kv: &'a dyn KvStore,
    derived: &'a BTreeMap<Vec<u8>, Vec<u8>>,
    /// The team terms to compute with, when they are not the stored ones (a
    /// rebuild computes with the collapsed terms it is about to store).
    terms: Option<&'a TermsVersions>,
}

impl RecomputingReader<'_> {
    fn terms_view(&self, key: &[u8]) -> Option<&TermsVersions> {
        self.terms.filter(|_| key.first() == Some(&keys::TERMS))
    }
}

impl Reader for RecomputingReader<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(terms) = self.terms_view(key) {
            Ok(terms.get(key).cloned())
        } else if is_source(key) {
            KvStore::get(self.kv, key)
        } else {
            Ok(self.derived.get(key).cloned())
        }
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>> {
        if let Some(terms) = self.terms_view(prefix) {
            Ok(terms
                .range(prefix.to_vec()..)
                .take_while(|(key, _)| key.starts_with(prefix))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect())
        } else if is_source(prefix) {
            KvStore::scan_prefix(self.kv, prefix).collect()
        } else {
            Ok(self
                .derived
                .range(prefix.to_vec()..)
                .take_while(|(key, _)| key.starts_with(prefix))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect())
        }
    }
}

/// Whether a key (or prefix) belongs to what users wrote, not to what is derived.
fn is_source(key: &[u8]) -> bool {
    matches!(key.first(), Some(&keys::RAW) | Some(&keys::TERMS))
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

fn raw_records<T: serde::de::DeserializeOwned>(
    kv: &dyn KvStore,
    kind: RecordKind,
    on_damage: &mut OnDamage<'_>,
) -> Result<Vec<T>> {
    let mut records = Vec::new();
    for entry in KvStore::scan_prefix(kv, &keys::raw_prefix(kind)) {
        let (key, value) = entry?;
        match (decode(&key, &value), &mut *on_damage) {
            (Ok(record), OnDamage::Collect(check)) => {
                check.checked += 1;
                records.push(record);
            }
            (Ok(record), OnDamage::Fail) => records.push(record),
            (Err(Error::DataLoss(_)), OnDamage::Collect(check)) => {
                check.checked += 1;
                check.damaged.push(key);
            }
            (Err(error), _) => return Err(error),
        }
    }
    Ok(records)
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

/// Every derived key with its encoded value, and the number of groups computed.
pub(super) struct Derived {
    pub entries: BTreeMap<Vec<u8>, Vec<u8>>,
    pub groups: u64,
}

/// The raw indexes, pending markers and counters the raw records imply
/// (`I`, `P`, `M`), and every group (tickets first: customers read the
/// contact index the tickets produce).
pub(super) struct RawIndexes {
    pub entries: BTreeMap<Vec<u8>, Vec<u8>>,
    pub groups: Vec<Group>,
}

/// The raw indexes, pending markers and counters, recomputed from the raw
/// records (one pass over them).
pub(super) fn recompute_raw_indexes(
    kv: &dyn KvStore,
    on_damage: &mut OnDamage<'_>,
) -> Result<RawIndexes> {
    let mut derived = BTreeMap::new();
    let empty = encode(&())?;
    let mut counters = Counters::default();

    let interactions: Vec<Interaction> = raw_records(kv, RecordKind::Interaction, on_damage)?;
    let known: BTreeSet<&Id> = interactions.iter().map(|i| &i.interaction_id).collect();
    let mut tickets = BTreeSet::new();
    for interaction in &interactions {
        derived.insert(
            keys::ticket_member(&interaction.ticket_id, &interaction.interaction_id),
            empty.clone(),
        );
        tickets.insert(interaction.ticket_id.clone());
    }
    counters.interactions = interactions.len() as i64;
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
    let surveys: Vec<SurveyResponse> = raw_records(kv, RecordKind::Survey, on_damage)?;
    for survey in &surveys {
        feedback(
            &survey.interaction_id,
            RecordKind::Survey,
            &survey.response_id,
            &mut counters,
        );
    }
    let reviews: Vec<QualityReview> = raw_records(kv, RecordKind::Review, on_damage)?;
    for review in &reviews {
        feedback(
            &review.interaction_id,
            RecordKind::Review,
            &review.review_id,
            &mut counters,
        );
    }
    counters.survey_responses = surveys.len() as i64;
    counters.quality_reviews = reviews.len() as i64;

    let events: Vec<CustomerEvent> = raw_records(kv, RecordKind::Event, on_damage)?;
    let mut customers = BTreeSet::new();
    for event in &events {
        derived.insert(
            keys::customer_event(&event.customer_id, &event.event_id),
            empty.clone(),
        );
        customers.insert(event.customer_id.clone());
    }
    counters.customer_events = events.len() as i64;
    if counters != Counters::default() {
        derived.insert(keys::stats(), encode(&counters)?);
    }
    let groups = tickets
        .into_iter()
        .map(Group::Ticket)
        .chain(customers.into_iter().map(Group::Customer))
        .collect();
    Ok(RawIndexes {
        entries: derived,
        groups,
    })
}

/// The derived state (`A`, `X`, and with `keep_contributions` the `G` keys
/// a later catch-up retracts) of every group, recomputed from the raw
/// records, reading the raw indexes from `indexes`, not from the store.
pub(super) fn recompute_group_state(
    kv: &dyn KvStore,
    terms: Option<&TermsVersions>,
    indexes: &RawIndexes,
    keep_contributions: bool,
) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut derived = indexes.entries.clone();
    let mut aggregates: HashMap<Vec<u8>, Aggregate> = HashMap::new();
    let mut day_listings: BTreeMap<Vec<u8>, ListingChange> = BTreeMap::new();
    for group in &indexes.groups {
        let contribution = compute(
            &RecomputingReader {
                kv,
                derived: &derived,
                terms,
            },
            group,
        )?;
        let mut deltas = HashMap::new();
        fact_deltas(&contribution, 1, &mut deltas);
        for ((scope, quarter), delta) in deltas {
            for level in Level::ALL {
                aggregates
                    .entry(keys::aggregate(level, &scope, level.bucket_start(quarter)))
                    .or_default()
                    .merge(&delta, 1);
            }
        }
        derived.extend(index_entries(&contribution)?);
        for (day, position) in listings(&contribution) {
            day_listings.entry(day).or_default().added.insert(position);
        }
        if keep_contributions && !(contribution.facts.is_empty() && contribution.index.is_empty()) {
            derived.insert(keys::group(group), encode(&contribution)?);
        }
    }
    for (day, positions) in day_listings {
        derived.insert(day, encode(&positions.applied_to(&DayListing::default()))?);
    }
    let aggregates = aggregates.into_iter().collect();
    for (key, value) in buckets::aggregate_changes(&[], aggregates, |_| Ok(None))? {
        if let Some(value) = value {
            derived.insert(key, value);
        }
    }
    derived.retain(|key, _| !indexes.entries.contains_key(key));
    Ok(derived)
}

/// Every derived key and value, recomputed from the raw records.
fn recompute_derived(
    kv: &dyn KvStore,
    terms: Option<&TermsVersions>,
    mut on_damage: OnDamage<'_>,
) -> Result<Derived> {
    let indexes = recompute_raw_indexes(kv, &mut on_damage)?;
    let mut entries = recompute_group_state(kv, terms, &indexes, false)?;
    let groups = indexes.groups.len() as u64;
    entries.extend(indexes.entries);
    Ok(Derived { entries, groups })
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

fn stored_derived(kv: &dyn KvStore) -> impl Iterator<Item = Result<Entry>> + '_ {
    DERIVED_FAMILIES
        .into_iter()
        .flat_map(move |family| KvStore::scan_prefix(kv, &[family]))
}

/// Compares every stored derived value with its recomputation.
pub fn verify(kv: &dyn KvStore) -> Result<VerifyReport> {
    let mut sources = SourceCheck::default();
    let Derived {
        entries: expected,
        groups,
    } = recompute_derived(kv, None, OnDamage::Collect(&mut sources))?;
    check_targets(kv, &mut sources)?;
    compare(kv, expected, &sources, groups)
}

/// Compares every stored derived value with `expected`, reporting `sources`
/// (the raw records and targets decoded on the way) too.
pub(super) fn compare(
    kv: &dyn KvStore,
    mut expected: BTreeMap<Vec<u8>, Vec<u8>>,
    sources: &SourceCheck,
    groups: u64,
) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        groups_checked: groups,
        values_checked: sources.checked,
        damaged_values: sources.damaged.len() as u64,
        ..VerifyReport::default()
    };
    let mismatch = |key: &[u8], description: &str, report: &mut VerifyReport| {
        report.mismatch_count += 1;
        if report.mismatches.len() < MAX_LISTED_MISMATCHES {
            report
                .mismatches
                .push((keys::describe_key(key), description.to_owned()));
        }
    };
    for key in &sources.damaged {
        mismatch(
            key,
            "damaged (fails its checksum or does not decode): restore it from a backup",
            &mut report,
        );
    }
    for entry in stored_derived(kv) {
        let (key, value) = entry?;
        report.keys_checked += 1;
        match expected.remove(&key) {
            None => mismatch(
                &key,
                "stored but not derivable from the raw records",
                &mut report,
            ),
            Some(want) if want != value => {
                let description = if key.first() == Some(&keys::AGGREGATE) {
                    let decodes = if key.get(1) == Some(&keys::HOUR_PARTS) {
                        decode::<HourParts>(&key, &value).is_ok()
                    } else {
                        decode::<Aggregate>(&key, &value).is_ok()
                    };
                    if decodes {
                        "differs from its recomputation".to_owned()
                    } else {
                        "damaged (fails its checksum or does not decode)".to_owned()
                    }
                } else {
                    "differs from its recomputation".to_owned()
                };
                mismatch(&key, &description, &mut report);
            }
            Some(_) => {}
        }
    }
    for key in expected.keys() {
        report.keys_checked += 1;
        mismatch(key, "missing: the raw records imply it", &mut report);
    }
    if report.mismatch_count > 0 {
        tracing::warn!(
            mismatches = report.mismatch_count,
            "aggregates do not match the raw records"
        );
    }
    Ok(report)
}

/// Replaces every derived value with its recomputation, with every team's
/// current terms (calendar, SLA policy) applied to all of history, in one atomic commit.
pub fn rebuild(kv: &dyn KvStore) -> Result<RebuildReport> {
    // Computed with the collapsed terms and stored with them in one commit.
    let (terms, mut changes) = collapsed_terms(kv)?;
    let Derived {
        entries: expected,
        groups,
    } = recompute_derived(kv, Some(&terms), OnDamage::Fail)?;
    for entry in stored_derived(kv) {
        let (key, _) = entry?;
        if !expected.contains_key(&key) {
            changes.push((key, None));
        }
    }
    let keys_written = expected.len() as u64;
    changes.extend(expected.into_iter().map(|(key, value)| (key, Some(value))));
    commit_rebuild(kv, changes, groups, keys_written)
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
