//! Applying one record to a transaction: idempotency by id and revision, raw
//! record and raw index upkeep, naming every group (ticket, customer) whose
//! contribution the record can change; each is recomputed once when the
//! transaction ends ([`recompute_touched`]).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::domain::records::{
    CustomerEvent, Id, Interaction, QualityReview, Record, SurveyResponse,
};
use crate::domain::scorecard::Targets;
use crate::domain::sla::TeamTerms;
use crate::error::{Error, Result};

use super::groups::{recompute, Retract};
use super::keys::{self, Group, RecordKind};
use super::txn::{Reader, Txn};

/// What a write did (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Duplicate,
    Stale,
}

/// Record counters kept up to date by every write.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub interactions: i64,
    pub survey_responses: i64,
    pub quality_reviews: i64,
    pub customer_events: i64,
    pub tickets: i64,
    pub pending_survey_responses: i64,
    pub pending_quality_reviews: i64,
}

impl Counters {
    fn pending_mut(&mut self, kind: RecordKind) -> &mut i64 {
        if kind == RecordKind::Survey {
            &mut self.pending_survey_responses
        } else {
            &mut self.pending_quality_reviews
        }
    }
}

/// Compares a write with the stored version of the same id.
fn classify<T: PartialEq>(
    stored: Option<(&T, u64)>,
    new: &T,
    new_revision: u64,
    what: &str,
    id: &Id,
) -> Result<Outcome> {
    match stored {
        None => Ok(Outcome::Created),
        Some((_, revision)) if new_revision > revision => Ok(Outcome::Updated),
        Some((_, revision)) if new_revision < revision => Ok(Outcome::Stale),
        Some((stored, _)) if stored == new => Ok(Outcome::Duplicate),
        Some(_) => Err(Error::AlreadyExists(format!(
            "{what} {id} revision {new_revision} is already stored with different content; send a higher revision to update it"
        ))),
    }
}

/// Applies one write to the transaction. Per-record refusals (ALREADY_EXISTS)
/// happen before anything is changed; any other error leaves the transaction
/// half-done and must abort it.
pub fn apply_record(
    txn: &mut Txn<'_>,
    counters: &mut Counters,
    record: &Record,
) -> Result<Outcome> {
    match record {
        Record::Interaction(interaction) => apply_interaction(txn, counters, interaction),
        Record::SurveyResponse(survey) => apply_feedback(txn, counters, &Feedback::Survey(survey)),
        Record::QualityReview(review) => apply_feedback(txn, counters, &Feedback::Review(review)),
        Record::CustomerEvent(event) => apply_event(txn, counters, event),
    }
}

fn apply_interaction(
    txn: &mut Txn<'_>,
    counters: &mut Counters,
    new: &Interaction,
) -> Result<Outcome> {
    let id = &new.interaction_id;
    let key = keys::raw(RecordKind::Interaction, id);
    let old: Option<Interaction> = txn.get_decoded(&key)?;
    let outcome = classify(
        old.as_ref().map(|o| (o, o.revision)),
        new,
        new.revision,
        "interaction",
        id,
    )?;
    if matches!(outcome, Outcome::Duplicate | Outcome::Stale) {
        return Ok(outcome);
    }
    let mut tickets = BTreeSet::from([new.ticket_id.clone()]);
    let mut customers: BTreeSet<Id> = new.customer_id.iter().cloned().collect();
    if let Some(old) = &old {
        txn.delete(keys::ticket_member(&old.ticket_id, id));
        if txn
            .scan_prefix(&keys::ticket_members_prefix(&old.ticket_id))?
            .is_empty()
        {
            counters.tickets -= 1;
        }
        tickets.insert(old.ticket_id.clone());
        customers.extend(old.customer_id.iter().cloned());
    } else {
        counters.interactions += 1;
        // Feedback that arrived before this interaction now counts.
        for (pending_key, _) in txn.scan_prefix(&keys::pending_prefix(id))? {
            let kind = pending_key[keys::pending_prefix(id).len()];
            let kind = if kind == RecordKind::Survey.byte() {
                RecordKind::Survey
            } else {
                RecordKind::Review
            };
            *counters.pending_mut(kind) -= 1;
            txn.delete(pending_key);
        }
    }
    if txn
        .scan_prefix(&keys::ticket_members_prefix(&new.ticket_id))?
        .is_empty()
    {
        counters.tickets += 1;
    }
    txn.put(keys::ticket_member(&new.ticket_id, id), &())?;
    txn.put(key, new)?;
    txn.touch(tickets, customers);
    Ok(outcome)
}

/// A survey response or a quality review: both rate one interaction.
enum Feedback<'a> {
    Survey(&'a SurveyResponse),
    Review(&'a QualityReview),
}

impl Feedback<'_> {
    fn kind(&self) -> RecordKind {
        match self {
            Feedback::Survey(_) => RecordKind::Survey,
            Feedback::Review(_) => RecordKind::Review,
        }
    }

    fn id(&self) -> &Id {
        match self {
            Feedback::Survey(s) => &s.response_id,
            Feedback::Review(r) => &r.review_id,
        }
    }

    fn interaction_id(&self) -> &Id {
        match self {
            Feedback::Survey(s) => &s.interaction_id,
            Feedback::Review(r) => &r.interaction_id,
        }
    }
}

/// The ticket of an interaction, if the interaction is known.
fn ticket_of(txn: &Txn<'_>, interaction: &Id) -> Result<Option<Id>> {
    Ok(txn
        .get_decoded::<Interaction>(&keys::raw(RecordKind::Interaction, interaction))?
        .map(|i| i.ticket_id))
}

fn apply_feedback(
    txn: &mut Txn<'_>,
    counters: &mut Counters,
    new: &Feedback<'_>,
) -> Result<Outcome> {
    let kind = new.kind();
    let id = new.id();
    let key = keys::raw(kind, id);
    let (outcome, old_interaction) = match new {
        Feedback::Survey(survey) => {
            let old: Option<SurveyResponse> = txn.get_decoded(&key)?;
            let outcome = classify(
                old.as_ref().map(|o| (o, o.revision)),
                *survey,
                survey.revision,
                "survey response",
                id,
            )?;
            (outcome, old.map(|o| o.interaction_id))
        }
        Feedback::Review(review) => {
            let old: Option<QualityReview> = txn.get_decoded(&key)?;
            let outcome = classify(
                old.as_ref().map(|o| (o, o.revision)),
                *review,
                review.revision,
                "quality review",
                id,
            )?;
            (outcome, old.map(|o| o.interaction_id))
        }
    };
    if matches!(outcome, Outcome::Duplicate | Outcome::Stale) {
        return Ok(outcome);
    }
    let mut tickets = BTreeSet::new();
    match &old_interaction {
        Some(old_interaction) => {
            txn.delete(keys::feedback(old_interaction, kind, id));
            let pending_key = keys::pending(old_interaction, kind, id);
            if txn.get(&pending_key)?.is_some() {
                txn.delete(pending_key);
                *counters.pending_mut(kind) -= 1;
            }
            tickets.extend(ticket_of(txn, old_interaction)?);
        }
        None => match kind {
            RecordKind::Survey => counters.survey_responses += 1,
            _ => counters.quality_reviews += 1,
        },
    }
    let interaction = new.interaction_id();
    txn.put(keys::feedback(interaction, kind, id), &())?;
    match ticket_of(txn, interaction)? {
        Some(ticket) => {
            tickets.insert(ticket);
        }
        None => {
            txn.put(keys::pending(interaction, kind, id), &())?;
            *counters.pending_mut(kind) += 1;
        }
    }
    match new {
        Feedback::Survey(survey) => txn.put(key, *survey)?,
        Feedback::Review(review) => txn.put(key, *review)?,
    }
    txn.touch(tickets, []);
    Ok(outcome)
}

fn apply_event(txn: &mut Txn<'_>, counters: &mut Counters, new: &CustomerEvent) -> Result<Outcome> {
    let id = &new.event_id;
    let key = keys::raw(RecordKind::Event, id);
    let old: Option<CustomerEvent> = txn.get_decoded(&key)?;
    let outcome = classify(
        old.as_ref().map(|o| (o, o.revision)),
        new,
        new.revision,
        "customer event",
        id,
    )?;
    if matches!(outcome, Outcome::Duplicate | Outcome::Stale) {
        return Ok(outcome);
    }
    let mut customers = BTreeSet::from([new.customer_id.clone()]);
    match &old {
        Some(old) => {
            txn.delete(keys::customer_event(&old.customer_id, id));
            customers.insert(old.customer_id.clone());
        }
        None => counters.customer_events += 1,
    }
    txn.put(keys::customer_event(&new.customer_id, id), &())?;
    txn.put(key, new)?;
    // Post-contact churn of the customers' resolved tickets depends on their events.
    let mut tickets = BTreeSet::new();
    for customer in &customers {
        for suffix in txn.key_suffixes(&keys::customer_tickets_prefix(customer))? {
            let ticket = std::str::from_utf8(&suffix)
                .ok()
                .and_then(|s| Id::parse(s).ok())
                .ok_or_else(|| Error::DataLoss("customer ticket index holds a bad id".into()))?;
            tickets.insert(ticket);
        }
    }
    txn.touch(tickets, customers);
    Ok(outcome)
}

/// Recomputes every group the transaction's records touched, once, however
/// many of its records touched it: what it contributed before the
/// transaction is retracted and what it contributes after it applied (the
/// sum, over the records, of what each changed). Tickets first: they
/// maintain the customer-contact index that customers read.
///
/// A record's groups are found by reading the transaction, whose
/// customer-ticket index is not yet updated for the tickets it touched; the
/// tickets it misses that way are its own, touched already.
pub fn recompute_touched(txn: &mut Txn<'_>) -> Result<()> {
    let touched = txn.take_touched();
    for ticket in touched.tickets {
        recompute(txn, &Group::Ticket(ticket), Retract::AsCommitted)?;
    }
    for customer in touched.customers {
        recompute(txn, &Group::Customer(customer), Retract::AsCommitted)?;
    }
    Ok(())
}

/// A version of a team's terms, in effect for tickets created from
/// `effective_from_seconds` on.
pub fn put_terms(
    txn: &mut Txn<'_>,
    team: &Id,
    terms: &TeamTerms,
    effective_from_seconds: i64,
) -> Result<()> {
    txn.put(keys::terms(team, effective_from_seconds), &terms.record())
}

/// Replaces the targets of a team, or of the organisation default.
pub fn apply_targets(txn: &mut Txn<'_>, team: Option<&Id>, targets: &Targets) -> Result<()> {
    let key = keys::targets(team);
    if targets.is_empty() {
        txn.delete(key);
        Ok(())
    } else {
        txn.put(key, targets)
    }
}
