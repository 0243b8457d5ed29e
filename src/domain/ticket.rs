//! Derived ticket state (SPEC §2) and what a ticket or a customer contributes to
//! the aggregates. Contributions are recomputed from the raw records whenever one
//! of them changes; the store retracts the old contribution and applies the new.

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::aggregate::{DatedFact, Fact, FactScopes};
use super::records::{
    Attribution, Channel, CustomerEvent, Id, Interaction, Priority, QualityReview, SurveyKind,
    SurveyResponse,
};
use super::sla::{self, SlaMetric, TeamTerms};
use super::time::{Instant, NANOS_PER_SECOND};

/// A churn within this long after a resolution counts as post-contact churn.
pub const POST_CONTACT_CHURN_NANOS: i64 = 30 * 86_400 * NANOS_PER_SECOND;

/// A derived lookup entry a contribution keeps in the store besides its facts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IndexEntry {
    /// An open ticket in the backlog of a scope.
    OpenTicket {
        scope_attribution: FactScopes,
        ticket_id: Id,
        created_at: Instant,
        priority: Priority,
        /// In breach of its SLA after this moment (see `sla::breached_after`).
        sla_breached_after: Option<Instant>,
    },
    /// An interaction of a customer, for churn attribution.
    CustomerInteraction {
        customer_id: Id,
        opened_at: Instant,
        interaction_id: Id,
        ticket_id: Id,
        attribution: Attribution,
    },
    /// A ticket whose customer this is, so a churn event finds the tickets it affects.
    CustomerTicket { customer_id: Id, ticket_id: Id },
    /// The ticket's drill-down row, listed under the scopes of every one of its
    /// interactions.
    TicketRow {
        scopes: Vec<FactScopes>,
        row: TicketRow,
    },
}

/// What drill-down lists about one ticket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TicketRow {
    pub ticket_id: Id,
    /// Team, agent, channel and priority of the latest interaction (who has it now).
    pub team_id: Id,
    pub agent_id: Option<Id>,
    pub channel: Channel,
    pub priority: Priority,
    pub created_at: Instant,
    pub first_response_at: Option<Instant>,
    pub resolved_at: Option<Instant>,
    pub contacts: u32,
    pub reopened: bool,
    /// The ticket's CSAT answer (the latest submitted), and the latest NPS and
    /// CES answers on any of its interactions.
    pub csat: Option<u8>,
    pub nps: Option<u8>,
    pub ces: Option<u8>,
    /// Every tag of any of its interactions, sorted, once each.
    pub tags: Vec<String>,
    /// In breach of its SLA after this moment (see `sla::breached_after`).
    pub sla_breached_after: Option<Instant>,
}

impl TicketRow {
    pub fn first_response_nanos(&self) -> Option<i64> {
        self.first_response_at.map(|at| at.0 - self.created_at.0)
    }

    pub fn resolution_nanos(&self) -> Option<i64> {
        self.resolved_at.map(|at| at.0 - self.created_at.0)
    }

    /// Resolved with a single contact.
    pub fn first_contact_resolved(&self) -> bool {
        self.resolved_at.is_some() && self.contacts == 1
    }
}

/// The latest-submitted answer of a kind (ties by response id).
fn latest_answer(surveys: &[SurveyResponse], kind: SurveyKind) -> Option<&SurveyResponse> {
    surveys
        .iter()
        .filter(|s| s.kind == kind)
        .max_by(|a, b| (a.submitted_at, &a.response_id).cmp(&(b.submitted_at, &b.response_id)))
}

/// Everything one ticket or one customer contributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub facts: Vec<DatedFact>,
    pub index: Vec<IndexEntry>,
    /// The ticket's tags (every tag of any of its interactions, sorted, once
    /// each): its facts and index entries also count in these tags' scopes.
    /// Empty for a customer.
    pub tags: Vec<String>,
}

/// The raw records a ticket's contribution is computed from.
#[derive(Debug, Clone, Default)]
pub struct TicketInputs {
    /// Every interaction with this ticket id, in any order.
    pub interactions: Vec<Interaction>,
    /// Every survey response whose interaction is one of them.
    pub surveys: Vec<SurveyResponse>,
    /// Every quality review whose interaction is one of them.
    pub reviews: Vec<QualityReview>,
    /// When the ticket's customer churned (every CHURNED event of that customer).
    pub churn_times: Vec<Instant>,
    /// The terms (business calendar, SLA policy) of each of its teams that
    /// had any in effect when the ticket was created.
    pub terms: BTreeMap<Id, TeamTerms>,
}

/// Interactions in ticket order: by `opened_at`, ties by `interaction_id`.
pub fn sort_in_ticket_order(interactions: &mut [Interaction]) {
    interactions
        .sort_by(|a, b| (a.opened_at, &a.interaction_id).cmp(&(b.opened_at, &b.interaction_id)));
}

/// The ticket's customer: the latest interaction's, or if that is empty the first's.
/// `interactions` must be in ticket order.
pub fn ticket_customer(interactions: &[Interaction]) -> Option<Id> {
    let latest = interactions.last()?;
    latest.customer_id.clone().or_else(|| {
        interactions
            .first()
            .and_then(|first| first.customer_id.clone())
    })
}

/// What a ticket contributes: its created / first-response / resolved facts,
/// every interaction's facts, every survey answer and review on its interactions,
/// its post-contact churn fact, and its backlog and customer index entries.
pub fn ticket_contribution(mut inputs: TicketInputs) -> Contribution {
    let mut contribution = Contribution::default();
    sort_in_ticket_order(&mut inputs.interactions);
    let interactions = &inputs.interactions;
    let (Some(first), Some(latest)) = (interactions.first(), interactions.last()) else {
        return contribution;
    };
    let created_at = first.opened_at;
    let resolved_at = latest.resolved_at();
    let customer = ticket_customer(interactions);

    contribution.facts.push(DatedFact {
        at: created_at,
        scopes: FactScopes::Of(first.attribution()),
        fact: Fact::TicketCreated {
            resolved_now: resolved_at.is_some(),
        },
    });

    // Working time from creation to `until`, by the calendar of the team of the
    // interaction the fact is attributed to.
    let business_time = |attributed: &Interaction, until: Instant| {
        inputs
            .terms
            .get(&attributed.team_id)
            .and_then(|terms| terms.calendar.as_ref())
            .map(|calendar| calendar.working_nanos(created_at, until))
    };
    // An SLA target is that of the team and priority of the interaction the
    // fact is attributed to (the latest one while nothing has happened yet).
    let deadline = |attributed: &Interaction, metric: SlaMetric| {
        inputs
            .terms
            .get(&attributed.team_id)
            .and_then(|terms| terms.deadline(attributed.priority, metric, created_at))
    };
    let first_response = interactions
        .iter()
        .filter_map(|i| i.first_response_at.map(|at| (at, i)))
        .min_by_key(|(at, _)| *at);
    let first_response_deadline = deadline(
        first_response.map_or(latest, |(_, holder)| holder),
        SlaMetric::FirstResponse,
    );
    let resolution_deadline = deadline(latest, SlaMetric::Resolution);
    let sla_breached_after = sla::breached_after(
        (first_response_deadline, first_response.map(|(at, _)| at)),
        (resolution_deadline, resolved_at),
        resolved_at.is_some(),
    );
    if let Some((at, holder)) = first_response {
        contribution.facts.push(DatedFact {
            at,
            scopes: FactScopes::Of(holder.attribution()),
            fact: Fact::FirstResponse {
                nanos: at.0 - created_at.0,
                business_nanos: business_time(holder, at),
                sla_met: first_response_deadline.map(|deadline| sla::met(deadline, at)),
            },
        });
    }

    if let Some(resolved_at) = resolved_at {
        let reopened = interactions[..interactions.len() - 1]
            .iter()
            .any(|i| i.resolved);
        contribution.facts.push(DatedFact {
            at: resolved_at,
            scopes: FactScopes::Of(latest.attribution()),
            fact: Fact::TicketResolved {
                resolution_nanos: resolved_at.0 - created_at.0,
                business_nanos: business_time(latest, resolved_at),
                first_contact: interactions.len() == 1,
                reopened,
                sla_met: resolution_deadline.map(|deadline| sla::met(deadline, resolved_at)),
            },
        });
        if customer.is_some() {
            let churned = inputs
                .churn_times
                .iter()
                .any(|t| t.0 >= resolved_at.0 && t.0 - resolved_at.0 <= POST_CONTACT_CHURN_NANOS);
            let ticket_csat = latest_answer(&inputs.surveys, SurveyKind::Csat);
            contribution.facts.push(DatedFact {
                at: resolved_at,
                scopes: FactScopes::Of(latest.attribution()),
                fact: Fact::PostContactChurn {
                    churned,
                    csat_satisfied: ticket_csat.map(|s| s.score >= 4),
                },
            });
        }
    } else {
        contribution.index.push(IndexEntry::OpenTicket {
            scope_attribution: FactScopes::Of(latest.attribution()),
            ticket_id: latest.ticket_id.clone(),
            created_at,
            priority: latest.priority,
            sla_breached_after,
        });
    }

    for interaction in interactions {
        contribution.facts.push(DatedFact {
            at: interaction.opened_at,
            scopes: FactScopes::Of(interaction.attribution()),
            fact: Fact::InteractionOpened {
                handle_nanos: interaction.handle_time_nanos,
                on_social_channel: interaction.channel == Channel::Social,
                social: interaction.social,
            },
        });
        if let Some(customer_id) = &interaction.customer_id {
            contribution.index.push(IndexEntry::CustomerInteraction {
                customer_id: customer_id.clone(),
                opened_at: interaction.opened_at,
                interaction_id: interaction.interaction_id.clone(),
                ticket_id: interaction.ticket_id.clone(),
                attribution: interaction.attribution(),
            });
        }
    }
    let attribution_of = |interaction_id: &Id| {
        interactions
            .iter()
            .find(|i| &i.interaction_id == interaction_id)
            .map(Interaction::attribution)
    };
    for survey in &inputs.surveys {
        if let Some(attribution) = attribution_of(&survey.interaction_id) {
            contribution.facts.push(DatedFact {
                at: survey.submitted_at,
                scopes: FactScopes::Of(attribution),
                fact: Fact::SurveyAnswer {
                    kind: survey.kind,
                    score: survey.score,
                },
            });
        }
    }
    for review in &inputs.reviews {
        if let Some(attribution) = attribution_of(&review.interaction_id) {
            contribution.facts.push(DatedFact {
                at: review.reviewed_at,
                scopes: FactScopes::Of(attribution),
                fact: Fact::Review {
                    score: review.score,
                },
            });
        }
    }
    if let Some(customer_id) = customer {
        contribution.index.push(IndexEntry::CustomerTicket {
            customer_id,
            ticket_id: latest.ticket_id.clone(),
        });
    }
    let mut scopes: Vec<FactScopes> = interactions
        .iter()
        .map(|i| FactScopes::Of(i.attribution()))
        .collect();
    scopes.sort();
    scopes.dedup();
    let mut tags: Vec<String> = interactions
        .iter()
        .flat_map(|i| i.tags.iter().cloned())
        .collect();
    tags.sort();
    tags.dedup();
    let answer = |kind| latest_answer(&inputs.surveys, kind).map(|s| s.score);
    contribution.index.push(IndexEntry::TicketRow {
        scopes,
        row: TicketRow {
            ticket_id: latest.ticket_id.clone(),
            team_id: latest.team_id.clone(),
            agent_id: latest.agent_id.clone(),
            channel: latest.channel,
            priority: latest.priority,
            created_at,
            first_response_at: first_response.map(|(at, _)| at),
            resolved_at,
            contacts: u32::try_from(interactions.len()).unwrap_or(u32::MAX),
            reopened: interactions[..interactions.len() - 1]
                .iter()
                .any(|i| i.resolved),
            csat: answer(SurveyKind::Csat),
            nps: answer(SurveyKind::Nps),
            ces: answer(SurveyKind::Ces),
            tags: tags.clone(),
            sla_breached_after,
        },
    });
    contribution.tags = tags;
    contribution
}

/// One interaction of a customer, as the customer index holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CustomerContact {
    pub opened_at: Instant,
    pub interaction_id: Id,
    pub attribution: Attribution,
}

/// What a customer contributes: one churn fact per CHURNED event, attributed to the
/// scopes of the customer's latest interaction opened at or before the event (the
/// organisation alone when there is none).
pub fn customer_contribution(
    events: &[CustomerEvent],
    mut contacts: Vec<CustomerContact>,
) -> Contribution {
    contacts.sort();
    let facts = events
        .iter()
        .map(|event| {
            let latest_before = contacts
                .iter()
                .rev()
                .find(|c| c.opened_at <= event.occurred_at);
            DatedFact {
                at: event.occurred_at,
                scopes: latest_before
                    .map(|c| FactScopes::Of(c.attribution.clone()))
                    .unwrap_or(FactScopes::OrganizationOnly),
                fact: Fact::Churned,
            }
        })
        .collect();
    Contribution {
        facts,
        index: Vec::new(),
        tags: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::Channel;

    fn id(raw: &str) -> Id {
        Id::parse(raw).unwrap()
    }

    fn interaction(
        interaction_id: &str,
        team: &str,
        opened_hour: i64,
        resolved: bool,
    ) -> Interaction {
        let opened_at = Instant::from_seconds(1_767_225_600 + opened_hour * 3600);
        Interaction {
            interaction_id: id(interaction_id),
            revision: 1,
            ticket_id: id("T"),
            team_id: id(team),
            agent_id: None,
            customer_id: Some(id("c")),
            channel: Channel::Chat,
            priority: Priority::High,
            opened_at,
            first_response_at: Some(Instant(opened_at.0 + 60 * NANOS_PER_SECOND)),
            closed_at: Some(Instant(opened_at.0 + 600 * NANOS_PER_SECOND)),
            handle_time_nanos: None,
            resolved,
            tags: Vec::new(),
            social: None,
        }
    }

    fn resolved_fact(contribution: &Contribution) -> Option<(&Fact, &FactScopes)> {
        contribution
            .facts
            .iter()
            .find(|f| matches!(f.fact, Fact::TicketResolved { .. }))
            .map(|f| (&f.fact, &f.scopes))
    }

    #[test]
    fn a_ticket_is_resolved_by_its_latest_contact_whatever_the_arrival_order() {
        let inputs = TicketInputs {
            interactions: vec![
                interaction("b", "tech", 24, true),
                interaction("a", "billing", 0, false),
            ],
            ..TicketInputs::default()
        };
        let contribution = ticket_contribution(inputs);
        let (fact, scopes) = resolved_fact(&contribution).expect("resolved");
        assert_eq!(
            fact,
            &Fact::TicketResolved {
                resolution_nanos: (24 * 3600 + 600) * NANOS_PER_SECOND,
                business_nanos: None,
                first_contact: false,
                reopened: false,
                sla_met: None,
            }
        );
        assert!(matches!(scopes, FactScopes::Of(a) if a.team_id.as_str() == "tech"));
        let created = &contribution.facts[0];
        assert!(matches!(&created.scopes, FactScopes::Of(a) if a.team_id.as_str() == "billing"));
        assert_eq!(created.fact, Fact::TicketCreated { resolved_now: true });
        assert!(!contribution
            .index
            .iter()
            .any(|e| matches!(e, IndexEntry::OpenTicket { .. })));
    }

    #[test]
    fn a_ticket_whose_latest_contact_is_unresolved_is_open_and_counts_as_reopened_later() {
        let open = ticket_contribution(TicketInputs {
            interactions: vec![
                interaction("a", "tech", 0, true),
                interaction("b", "tech", 48, false),
            ],
            ..TicketInputs::default()
        });
        assert!(resolved_fact(&open).is_none());
        assert!(open
            .index
            .iter()
            .any(|e| matches!(e, IndexEntry::OpenTicket { .. })));
        let resolved_again = ticket_contribution(TicketInputs {
            interactions: vec![
                interaction("a", "tech", 0, true),
                interaction("b", "tech", 48, true),
            ],
            ..TicketInputs::default()
        });
        assert!(matches!(
            resolved_fact(&resolved_again),
            Some((
                Fact::TicketResolved {
                    reopened: true,
                    first_contact: false,
                    ..
                },
                _
            ))
        ));
    }

    #[test]
    fn post_contact_churn_counts_a_churn_within_thirty_days_after_the_resolution() {
        let resolved_at = interaction("a", "tech", 0, true).closed_at.unwrap();
        let churn_after = |days: i64, extra_seconds: i64| {
            let at = Instant(resolved_at.0 + (days * 86_400 + extra_seconds) * NANOS_PER_SECOND);
            let contribution = ticket_contribution(TicketInputs {
                interactions: vec![interaction("a", "tech", 0, true)],
                churn_times: vec![at],
                ..TicketInputs::default()
            });
            contribution.facts.iter().find_map(|f| match f.fact {
                Fact::PostContactChurn { churned, .. } => Some(churned),
                _ => None,
            })
        };
        assert_eq!(churn_after(0, 0), Some(true));
        assert_eq!(churn_after(30, 0), Some(true));
        assert_eq!(churn_after(30, 1), Some(false));
        assert_eq!(churn_after(0, -1), Some(false));
    }

    #[test]
    fn churn_is_attributed_to_the_latest_contact_opened_at_or_before_it() {
        let contact = |hour: i64, team: &str| CustomerContact {
            opened_at: Instant::from_seconds(hour * 3600),
            interaction_id: id(&format!("i{hour}")),
            attribution: Attribution {
                team_id: id(team),
                agent_id: None,
                channel: Channel::Email,
            },
        };
        let event = |hour: i64| CustomerEvent {
            event_id: id(&format!("e{hour}")),
            revision: 1,
            customer_id: id("c"),
            kind: crate::domain::records::CustomerEventKind::Churned,
            occurred_at: Instant::from_seconds(hour * 3600),
        };
        let contribution = customer_contribution(
            &[event(5), event(10), event(1)],
            vec![contact(10, "late"), contact(2, "early")],
        );
        let teams: Vec<Option<&str>> = contribution
            .facts
            .iter()
            .map(|f| match &f.scopes {
                FactScopes::Of(a) => Some(a.team_id.as_str()),
                FactScopes::OrganizationOnly => None,
            })
            .collect();
        assert_eq!(teams, vec![Some("early"), Some("late"), None]);
    }
}
