//! Which tickets a drill-down lists: a filter over ticket rows. Every condition
//! that is set must hold.

use super::ticket::TicketRow;
use super::time::Instant;

/// The conditions of a `ListTickets` request; unset ones do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TicketFilter {
    /// First response time strictly above this (tickets without one are left out).
    pub frt_above_nanos: Option<i64>,
    /// Resolved, with resolution time strictly above this.
    pub resolution_above_nanos: Option<i64>,
    /// A CSAT answer at or below this score.
    pub csat_at_most: Option<u8>,
    /// The latest NPS answer on the ticket is a detractor (0–6).
    pub nps_detractor: bool,
    /// An interaction other than the latest resolved it before.
    pub reopened: bool,
    /// Resolved with one contact (`true`) or with more than one (`false`).
    pub first_contact_resolved: Option<bool>,
    /// Open, and created more than this before `as_of`.
    pub open_older_than_nanos: Option<i64>,
    /// Carries this tag.
    pub tag: Option<String>,
    /// In breach of an SLA target at `as_of`.
    pub sla_breached: bool,
}

impl TicketFilter {
    /// Whether `row` passes, with ages measured at `as_of`.
    pub fn matches(&self, row: &TicketRow, as_of: Instant) -> bool {
        let above = |value: Option<i64>, bound: Option<i64>| match bound {
            None => true,
            Some(bound) => value.is_some_and(|v| v > bound),
        };
        above(row.first_response_nanos(), self.frt_above_nanos)
            && above(row.resolution_nanos(), self.resolution_above_nanos)
            && self
                .csat_at_most
                .is_none_or(|most| row.csat.is_some_and(|score| score <= most))
            && (!self.nps_detractor || row.nps.is_some_and(|score| score <= 6))
            && (!self.reopened || row.reopened)
            && self
                .first_contact_resolved
                .is_none_or(|wanted| row.resolved_at.is_some() && (row.contacts == 1) == wanted)
            && self
                .open_older_than_nanos
                .is_none_or(|age| row.resolved_at.is_none() && as_of.0 - row.created_at.0 > age)
            && self
                .tag
                .as_ref()
                .is_none_or(|tag| row.tags.binary_search(tag).is_ok())
            && (!self.sla_breached || row.sla_breached_after.is_some_and(|after| as_of > after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::{Channel, Id, Priority};
    use crate::domain::time::NANOS_PER_SECOND;

    fn row() -> TicketRow {
        TicketRow {
            ticket_id: Id::parse("T1").unwrap(),
            team_id: Id::parse("billing").unwrap(),
            agent_id: None,
            channel: Channel::Chat,
            priority: Priority::Normal,
            created_at: Instant::from_seconds(1_000_000),
            first_response_at: Some(Instant::from_seconds(1_000_600)),
            resolved_at: None,
            contacts: 2,
            reopened: false,
            csat: Some(3),
            nps: Some(9),
            ces: None,
            tags: vec!["billing".into(), "login".into()],
            sla_breached_after: Some(Instant::from_seconds(1_003_600)),
        }
    }

    const SECOND: i64 = NANOS_PER_SECOND;

    #[test]
    fn each_condition_filters_and_bounds_are_strict() {
        let row = row();
        let as_of = Instant::from_seconds(1_003_600);
        let passes = |filter: TicketFilter| filter.matches(&row, as_of);
        assert!(passes(TicketFilter::default()));
        assert!(passes(TicketFilter {
            frt_above_nanos: Some(599 * SECOND),
            ..Default::default()
        }));
        assert!(!passes(TicketFilter {
            frt_above_nanos: Some(600 * SECOND),
            ..Default::default()
        }));
        assert!(!passes(TicketFilter {
            resolution_above_nanos: Some(0),
            ..Default::default()
        }));
        assert!(passes(TicketFilter {
            csat_at_most: Some(3),
            ..Default::default()
        }));
        assert!(!passes(TicketFilter {
            csat_at_most: Some(2),
            ..Default::default()
        }));
        assert!(!passes(TicketFilter {
            nps_detractor: true,
            ..Default::default()
        }));
        assert!(!passes(TicketFilter {
            reopened: true,
            ..Default::default()
        }));
        // An open ticket is neither first-contact resolved nor not.
        assert!(!passes(TicketFilter {
            first_contact_resolved: Some(false),
            ..Default::default()
        }));
        assert!(passes(TicketFilter {
            open_older_than_nanos: Some(3599 * SECOND),
            ..Default::default()
        }));
        assert!(!passes(TicketFilter {
            open_older_than_nanos: Some(3600 * SECOND),
            ..Default::default()
        }));
        assert!(passes(TicketFilter {
            tag: Some("login".into()),
            ..Default::default()
        }));
        assert!(!passes(TicketFilter {
            tag: Some("log".into()),
            ..Default::default()
        }));
        // In breach only after the moment: not yet at as_of, a moment later yes.
        let breached = TicketFilter {
            sla_breached: true,
            ..Default::default()
        };
        assert!(!breached.matches(&row, as_of));
        assert!(breached.matches(&row, Instant(as_of.0 + 1)));
    }
}
