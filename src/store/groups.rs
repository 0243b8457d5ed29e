//! Computing a group's contribution from the raw records, and turning a
//! contribution into the aggregate deltas and index entries it stands for.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::domain::aggregate::Scope;
use crate::domain::records::{
    Attribution, CustomerEvent, Id, Interaction, QualityReview, SurveyResponse,
};
use crate::domain::scorecard::OpenTicket;
use crate::domain::sla::{TeamTerms, TermsRecord};
use crate::domain::ticket::{
    customer_contribution, sort_in_ticket_order, ticket_contribution, ticket_customer,
    Contribution, CustomerContact, IndexEntry, TicketInputs,
};
use crate::domain::time::Instant;
use crate::error::{Error, Result};

use super::codec::{decode, encode};
use super::keys::{self, Group, RecordKind};
use super::kv::KvStore;
use super::listings;
use super::txn::{QuarterChanges, Reader, Txn};

/// Each ticket's earliest interaction opening (UTC nanoseconds).
pub type Openings = HashMap<Id, i64>;

/// Notes an interaction's opening in `openings`.
pub fn note_opening(openings: &mut Openings, interaction: &Interaction) {
    let opened = interaction.opened_at.0;
    openings
        .entry(interaction.ticket_id.clone())
        .and_modify(|earliest| *earliest = opened.min(*earliest))
        .or_insert(opened);
}

/// Every ticket and customer the raw indexes name (`I t ticket 0 …`,
/// `I e customer 0 …`): every group that can have a contribution (a
/// customer without events has none), in the order a replay takes them.
pub fn every_group_in_replay_order(kv: &dyn KvStore) -> Result<Vec<Group>> {
    let mut groups = BTreeSet::new();
    for (family, group) in [(b't', Group::Ticket as GroupOf), (b'e', Group::Customer)] {
        for entry in kv.scan_prefix(&[keys::RAW_INDEX, family]) {
            let (key, _) = entry?;
            let id = key[2..].split(|&b| b == 0).next().unwrap_or_default();
            groups.insert(group(id_from_bytes(id)?));
        }
    }
    Ok(in_replay_order(groups, &openings(kv)?))
}

/// A group of an id.
type GroupOf = fn(Id) -> Group;

/// Each ticket's earliest opening, from the raw interactions that decode
/// (a damaged one is left out here; recomputing its ticket reports it).
fn openings(kv: &dyn KvStore) -> Result<Openings> {
    let mut openings = Openings::new();
    for entry in kv.scan_prefix(&keys::raw_prefix(RecordKind::Interaction)) {
        let (key, value) = entry?;
        match decode::<Interaction>(&key, &value) {
            Ok(interaction) => note_opening(&mut openings, &interaction),
            Err(Error::DataLoss(_)) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(openings)
}

/// Groups in the order a replay into an empty state takes them: tickets
/// first (customers read the contact index the tickets maintain), by their
/// earliest opening (those with none known last), so that each batch of a
/// replay changes the aggregates of a few days and months rather than
/// re-encoding those of all history; then customers.
pub fn in_replay_order(groups: impl IntoIterator<Item = Group>, openings: &Openings) -> Vec<Group> {
    let mut groups: Vec<(bool, i64, Group)> = groups
        .into_iter()
        .map(|group| match &group {
            Group::Ticket(id) => (false, openings.get(id).copied().unwrap_or(i64::MAX), group),
            Group::Customer(_) => (true, 0, group),
        })
        .collect();
    groups.sort_unstable();
    groups.into_iter().map(|(_, _, group)| group).collect()
}

/// An id read from an index key; bytes that are not one are data loss.
pub fn id_from_bytes(bytes: &[u8]) -> Result<Id> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| Id::parse(s).ok())
        .ok_or_else(|| {
            Error::DataLoss(format!(
                "index key holds a bad id: {}",
                keys::describe_key(bytes)
            ))
        })
}

fn load<T: serde::de::DeserializeOwned>(reader: &(impl Reader + ?Sized), key: &[u8]) -> Result<T> {
    reader.get_decoded(key)?.ok_or_else(|| {
        Error::DataLoss(format!(
            "index points at a missing record {}",
            keys::describe_key(key)
        ))
    })
}

/// The interactions of a ticket, in ticket order.
pub fn ticket_interactions(
    reader: &(impl Reader + ?Sized),
    ticket: &Id,
) -> Result<Vec<Interaction>> {
    let mut interactions = reader
        .key_suffixes(&keys::ticket_members_prefix(ticket))?
        .into_iter()
        .map(|suffix| {
            load(
                reader,
                &keys::raw(RecordKind::Interaction, &id_from_bytes(&suffix)?),
            )
        })
        .collect::<Result<Vec<Interaction>>>()?;
    sort_in_ticket_order(&mut interactions);
    Ok(interactions)
}

/// The CHURNED events of a customer.
pub fn customer_events(
    reader: &(impl Reader + ?Sized),
    customer: &Id,
) -> Result<Vec<CustomerEvent>> {
    reader
        .key_suffixes(&keys::customer_events_prefix(customer))?
        .into_iter()
        .map(|suffix| {
            load(
                reader,
                &keys::raw(RecordKind::Event, &id_from_bytes(&suffix)?),
            )
        })
        .collect()
}

/// The terms version of a team in effect at `seconds` (the latest that took
/// effect at or before): when it took effect, and the terms.
pub fn terms_version_at<R: Reader + ?Sized>(
    reader: &R,
    team: &Id,
    seconds: i64,
) -> Result<Option<(i64, TeamTerms)>> {
    stored_terms(reader, team)?
        .into_iter()
        .take_while(|(effective_from, ..)| *effective_from <= seconds)
        .last()
        .map(|(effective_from, key, value)| Ok((effective_from, decode_terms(&key, &value)?)))
        .transpose()
}

/// Every version of a team's terms, oldest first, with the moment it takes effect.
pub fn terms_history<R: Reader + ?Sized>(reader: &R, team: &Id) -> Result<Vec<(i64, TeamTerms)>> {
    stored_terms(reader, team)?
        .into_iter()
        .map(|(effective_from, key, value)| Ok((effective_from, decode_terms(&key, &value)?)))
        .collect()
}

/// A stored terms version: when it takes effect, its key and its value.
type StoredTerms = (i64, Vec<u8>, Vec<u8>);

/// A team's stored terms versions, oldest first.
fn stored_terms<R: Reader + ?Sized>(reader: &R, team: &Id) -> Result<Vec<StoredTerms>> {
    let prefix = keys::terms_prefix(team);
    reader
        .scan_prefix(&prefix)?
        .into_iter()
        .map(|(key, value)| {
            let effective_from = keys::time_from_bytes(&key[prefix.len()..]).ok_or_else(|| {
                Error::DataLoss(format!("bad terms key {}", keys::describe_key(&key)))
            })?;
            Ok((effective_from, key, value))
        })
        .collect()
}

/// A stored version of a team's terms.
pub fn decode_terms(key: &[u8], value: &[u8]) -> Result<TeamTerms> {
    let record: TermsRecord = decode(key, value)?;
    TeamTerms::from_record(&record)
        .map_err(|e| Error::DataLoss(format!("team terms {}: {e}", keys::describe_key(key))))
}

/// Recomputes a group's contribution from the raw records.
pub fn compute(reader: &(impl Reader + ?Sized), group: &Group) -> Result<Contribution> {
    match group {
        Group::Ticket(ticket) => {
            let interactions = ticket_interactions(reader, ticket)?;
            let mut inputs = TicketInputs::default();
            for interaction in &interactions {
                let prefix = keys::feedback_prefix(&interaction.interaction_id);
                for suffix in reader.key_suffixes(&prefix)? {
                    let (&kind, id) = suffix
                        .split_first()
                        .ok_or_else(|| Error::DataLoss("empty feedback index key".into()))?;
                    let id = id_from_bytes(id)?;
                    if kind == RecordKind::Survey.byte() {
                        inputs.surveys.push(load::<SurveyResponse>(
                            reader,
                            &keys::raw(RecordKind::Survey, &id),
                        )?);
                    } else {
                        inputs.reviews.push(load::<QualityReview>(
                            reader,
                            &keys::raw(RecordKind::Review, &id),
                        )?);
                    }
                }
            }
            if let Some(customer) = ticket_customer(&interactions) {
                inputs.churn_times = customer_events(reader, &customer)?
                    .iter()
                    .map(|event| event.occurred_at)
                    .collect();
            }
            if let Some(first) = interactions.first() {
                let created_at = first.opened_at.seconds();
                let teams: BTreeSet<&Id> = interactions.iter().map(|i| &i.team_id).collect();
                for team in teams {
                    if let Some((_, terms)) = terms_version_at(reader, team, created_at)? {
                        if !terms.is_empty() {
                            inputs.terms.insert(team.clone(), terms);
                        }
                    }
                }
            }
            inputs.interactions = interactions;
            Ok(ticket_contribution(inputs))
        }
        Group::Customer(customer) => {
            let events = customer_events(reader, customer)?;
            let prefix = keys::customer_contacts_prefix(customer);
            let contacts = reader
                .scan_prefix(&prefix)?
                .into_iter()
                .map(|(key, value)| {
                    let suffix = &key[prefix.len()..];
                    let opened_at = keys::time_from_bytes(suffix.get(..8).unwrap_or_default())
                        .ok_or_else(|| {
                            Error::DataLoss(format!("bad contact key {}", keys::describe_key(&key)))
                        })?;
                    let interaction = suffix[8..].split(|&b| b == 0).next().unwrap_or_default();
                    Ok(CustomerContact {
                        opened_at: Instant(opened_at),
                        interaction_id: id_from_bytes(interaction)?,
                        attribution: decode::<Attribution>(&key, &value)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(customer_contribution(&events, contacts))
        }
    }
}

/// What a contribution adds to the aggregates (per scope and 15-minute
/// bucket start) and to the registry of known scopes (facts per scope), times
/// `sign`.
#[derive(Debug, Default)]
pub struct FactDeltas {
    pub aggregates: QuarterChanges,
    pub facts: HashMap<Scope, i64, foldhash::fast::RandomState>,
}

impl FactDeltas {
    pub fn add(&mut self, contribution: &Contribution, sign: i64) {
        for dated in &contribution.facts {
            let quarter = dated.at.quarter_start();
            for scope in dated.scopes.scopes_tagged(&contribution.tags) {
                *self.facts.entry(scope.clone()).or_default() += sign;
                self.aggregates
                    .entry((scope, quarter))
                    .or_default()
                    .add_fact(&dated.fact, sign);
            }
        }
    }
}

/// The stored key-value pairs of a contribution's index entries.
pub fn index_entries(contribution: &Contribution) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut entries = BTreeMap::new();
    for entry in &contribution.index {
        match entry {
            IndexEntry::OpenTicket {
                scope_attribution,
                ticket_id,
                created_at,
                priority,
                sla_breached_after,
            } => {
                let ticket = OpenTicket {
                    created_at: *created_at,
                    priority: *priority,
                    sla_breached_after: *sla_breached_after,
                };
                let scopes = scope_attribution.scopes_tagged(&contribution.tags);
                entries.insert(
                    keys::open_ticket(ticket_id),
                    encode(&OpenTicketEntry::new(ticket, &scopes))?,
                );
            }
            IndexEntry::CustomerInteraction {
                customer_id,
                opened_at,
                interaction_id,
                ticket_id,
                attribution,
            } => {
                entries.insert(
                    keys::customer_contact(customer_id, opened_at.0, interaction_id, ticket_id),
                    encode(attribution)?,
                );
            }
            IndexEntry::CustomerTicket {
                customer_id,
                ticket_id,
            } => {
                entries.insert(keys::customer_ticket(customer_id, ticket_id), encode(&())?);
            }
            IndexEntry::TicketRow { row, .. } => {
                entries.insert(keys::ticket_row(&row.ticket_id), encode(row)?);
            }
        }
    }
    Ok(entries)
}

/// Where a contribution's ticket is listed for drill-down: the day listing of
/// each scope it touched, and its position there.
pub fn listings(contribution: &Contribution) -> BTreeSet<(Vec<u8>, Vec<u8>)> {
    let mut listed = BTreeSet::new();
    for entry in &contribution.index {
        if let IndexEntry::TicketRow { scopes, row } = entry {
            let position = keys::ticket_row_position(row.created_at.0, &row.ticket_id);
            for scope in scopes
                .iter()
                .flat_map(|s| s.scopes_tagged(&contribution.tags))
            {
                let day = listings::day_key(&scope, row.created_at.0);
                listed.insert((day, position.clone()));
            }
        }
    }
    listed
}

/// A value of the open-ticket index: an open ticket as the backlog counts it,
/// and the scopes whose backlogs count it. One entry per ticket, so opening
/// or closing a ticket writes one key whatever its number of scopes; the
/// store keeps the index in memory by scope (see `resident`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenTicketEntry {
    pub ticket: OpenTicket,
    /// The scopes' key encodings ([`keys::scope_bytes`]) one after another;
    /// each is self-delimiting.
    #[serde(with = "serde_bytes")]
    scopes: Vec<u8>,
}

impl OpenTicketEntry {
    /// The entry of `ticket`, counted in `scopes` (in any order, repeats
    /// ignored: the stored bytes depend only on the set).
    pub fn new(ticket: OpenTicket, scopes: &[Scope]) -> OpenTicketEntry {
        let scopes: BTreeSet<Vec<u8>> = scopes.iter().map(keys::scope_bytes).collect();
        OpenTicketEntry {
            ticket,
            scopes: scopes.into_iter().flatten().collect(),
        }
    }

    /// Each scope's key encoding, or `None` if the bytes do not split into
    /// scopes.
    fn scope_keys(&self) -> Option<Vec<&[u8]>> {
        let mut keys = Vec::new();
        let mut rest = self.scopes.as_slice();
        while !rest.is_empty() {
            let (scope, after) = rest.split_at(keys::scope_len(rest)?);
            keys.push(scope);
            rest = after;
        }
        Some(keys)
    }
}

/// An open-ticket index value, decoded: the ticket and the key encodings of
/// the scopes that count it. A value that does not decode, or whose scopes
/// do not, is data loss naming the key.
pub fn decode_open_ticket(key: &[u8], value: &[u8]) -> Result<(OpenTicket, Vec<Vec<u8>>)> {
    let entry: OpenTicketEntry = decode(key, value)?;
    let scopes = entry.scope_keys().ok_or_else(|| {
        let key = keys::describe_key(key);
        tracing::error!(key = %key, "stored open ticket names a scope that does not decode");
        Error::DataLoss(format!(
            "value of key {key} names a scope that does not decode"
        ))
    })?;
    let scopes = scopes.into_iter().map(<[u8]>::to_vec).collect();
    Ok((entry.ticket, scopes))
}

/// What a group contributed before a recomputation, to be retracted.
#[derive(Debug)]
pub enum Retract {
    /// Its contribution recomputed from the records as they were before the
    /// transaction ([`Txn::committed`]): the live store keeps no
    /// contributions.
    AsCommitted,
    /// Its contribution as stored under its `G` key, which the
    /// recomputation replaces (a background check's scratch state).
    Stored,
    /// This contribution.
    This(Contribution),
}

/// Recomputes a group: the old contribution is retracted and the new one
/// applied, touching only what changed. A change writes the group's `G`
/// key: the new contribution where they are [`Retract::Stored`], else a
/// deletion, which names the group to the journal and is all a store that
/// keeps no contributions sees of it.
pub fn recompute(txn: &mut Txn<'_>, group: &Group, retract: Retract) -> Result<()> {
    let key = keys::group(group);
    let stored = matches!(retract, Retract::Stored);
    let old: Contribution = match retract {
        Retract::AsCommitted => compute(txn.committed(), group)?,
        Retract::Stored => txn.get_decoded(&key)?.unwrap_or_default(),
        Retract::This(old) => old,
    };
    let new = compute(txn, group)?;
    if old == new {
        return Ok(());
    }
    let mut deltas = FactDeltas::default();
    deltas.add(&new, 1);
    deltas.add(&old, -1);
    for ((scope, quarter), delta) in deltas.aggregates {
        if !delta.is_zero() {
            txn.add_to_quarter(scope, quarter, delta);
        }
    }
    for (scope, facts) in deltas.facts {
        if facts != 0 {
            txn.count_facts(keys::registered_scope(&scope), facts);
        }
    }
    let old_entries = index_entries(&old)?;
    let new_entries = index_entries(&new)?;
    for key in old_entries.keys() {
        if !new_entries.contains_key(key) {
            txn.delete(key.clone());
        }
    }
    for (key, value) in new_entries {
        if old_entries.get(&key) != Some(&value) {
            txn.put_encoded(key, value);
        }
    }
    let old_listings = listings(&old);
    let new_listings = listings(&new);
    for (day, position) in old_listings.difference(&new_listings) {
        txn.change_listing(day.clone(), position.clone(), false);
    }
    for (day, position) in new_listings.difference(&old_listings) {
        txn.change_listing(day.clone(), position.clone(), true);
    }
    if !stored || (new.facts.is_empty() && new.index.is_empty()) {
        txn.delete(key);
    } else {
        txn.put(key, &new)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::{Channel, Priority};

    /// An entry's bytes depend on its set of scopes only (verify compares
    /// bytes), and decoding gives back each scope's key encoding once.
    #[test]
    fn open_ticket_entries_hold_a_set_of_scopes() {
        let ticket = OpenTicket {
            created_at: Instant(5),
            priority: Priority::Urgent,
            sla_breached_after: Some(Instant(9)),
        };
        let team = Scope::Team(Id::parse("billing").unwrap());
        let tag = Scope::TeamTag(Id::parse("billing").unwrap(), "refunds".into());
        let channel = Scope::Channel(Channel::Email);
        let one = OpenTicketEntry::new(ticket, &[team.clone(), tag.clone(), channel.clone()]);
        let other =
            OpenTicketEntry::new(ticket, &[channel.clone(), team.clone(), tag.clone(), team]);
        assert_eq!(encode(&one).unwrap(), encode(&other).unwrap());
        let key = keys::open_ticket(&Id::parse("t1").unwrap());
        let (decoded, scopes) = decode_open_ticket(&key, &encode(&one).unwrap()).unwrap();
        assert_eq!(decoded, ticket);
        let mut expected: Vec<Vec<u8>> = [Scope::Team(Id::parse("billing").unwrap()), tag, channel]
            .iter()
            .map(keys::scope_bytes)
            .collect();
        expected.sort();
        assert_eq!(scopes, expected);
    }

    #[test]
    fn an_entry_whose_scopes_do_not_parse_is_data_loss_naming_its_key() {
        let mut entry = OpenTicketEntry::new(
            OpenTicket {
                created_at: Instant(1),
                priority: Priority::Low,
                sla_breached_after: None,
            },
            &[Scope::Organization],
        );
        entry.scopes.push(0xee);
        let key = keys::open_ticket(&Id::parse("t7").unwrap());
        match decode_open_ticket(&key, &encode(&entry).unwrap()) {
            Err(Error::DataLoss(message)) => assert!(message.contains("Xot7"), "{message}"),
            other => panic!("expected data loss, got {other:?}"),
        }
    }
}
