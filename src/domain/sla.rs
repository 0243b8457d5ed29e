//! SLA policies — per priority, how long a ticket may wait for its first
//! response and for its resolution, in calendar time or in the team's working
//! time — the deadlines they set, and a team's terms: the business calendar and
//! SLA policy that apply together to the tickets created while they are in
//! effect.

use serde::{Deserialize, Serialize};

use super::calendar::{Calendar, CalendarError, CalendarRecord};
use super::records::Priority;
use super::time::{Instant, NANOS_PER_SECOND};

/// The longest target a rule may set.
pub const MAX_SLA_TARGET_NANOS: i64 = 365 * 86_400 * NANOS_PER_SECOND;
/// At most one target per (priority, metric).
pub const MAX_SLA_TARGETS: usize = 8;
/// The deadline of a target that never runs out: always met, never breached.
pub const NEVER: Instant = Instant(i64::MAX);

/// What an SLA target is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SlaMetric {
    /// The ticket's first response (its FRT).
    FirstResponse,
    /// The ticket's resolution (its resolution time).
    Resolution,
}

/// Which time an SLA target counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SlaClock {
    /// Every second since the ticket was created.
    Calendar,
    /// Working time by the team's business calendar (every second when the
    /// team has none).
    Business,
}

/// One target: tickets of `priority` must reach `metric` within `within_nanos`
/// of their creation, counted by `clock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SlaRule {
    pub priority: Priority,
    pub metric: SlaMetric,
    pub within_nanos: i64,
    pub clock: SlaClock,
}

/// A team's SLA targets, at most one per (priority, metric), in that order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlaPolicy {
    rules: Vec<SlaRule>,
}

impl SlaPolicy {
    /// A policy of these rules; a later rule for the same (priority, metric)
    /// replaces an earlier one (the API refuses such duplicates before).
    pub fn new(rules: impl IntoIterator<Item = SlaRule>) -> SlaPolicy {
        let mut rules: Vec<SlaRule> = rules.into_iter().collect();
        rules.reverse();
        rules.sort_by_key(|r| (r.priority, r.metric));
        rules.dedup_by_key(|r| (r.priority, r.metric));
        SlaPolicy { rules }
    }

    pub fn rules(&self) -> &[SlaRule] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rule(&self, priority: Priority, metric: SlaMetric) -> Option<&SlaRule> {
        self.rules
            .iter()
            .find(|r| r.priority == priority && r.metric == metric)
    }
}

/// What applies to the tickets a team handles: its business calendar and its
/// SLA policy, versioned together (a ticket uses the version in effect when it
/// was created).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TeamTerms {
    pub calendar: Option<Calendar>,
    pub sla: SlaPolicy,
}

/// Team terms as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermsRecord {
    pub calendar: Option<CalendarRecord>,
    pub sla: Vec<SlaRule>,
}

impl TeamTerms {
    /// Neither a calendar nor an SLA target.
    pub fn is_empty(&self) -> bool {
        self.calendar.is_none() && self.sla.is_empty()
    }

    pub fn record(&self) -> TermsRecord {
        TermsRecord {
            calendar: self.calendar.as_ref().map(Calendar::record),
            sla: self.sla.rules().to_vec(),
        }
    }

    pub fn from_record(record: &TermsRecord) -> Result<TeamTerms, CalendarError> {
        Ok(TeamTerms {
            calendar: record
                .calendar
                .as_ref()
                .map(Calendar::from_record)
                .transpose()?,
            sla: SlaPolicy::new(record.sla.iter().copied()),
        })
    }

    /// The last moment a ticket of `priority` created at `created_at` meets
    /// its `metric` target (reaching it later misses the target); `None` when
    /// the policy sets no such target. A business-time target that the
    /// calendar cannot use up within ten years never runs out ([`NEVER`]).
    pub fn deadline(
        &self,
        priority: Priority,
        metric: SlaMetric,
        created_at: Instant,
    ) -> Option<Instant> {
        let rule = self.sla.rule(priority, metric)?;
        Some(match (rule.clock, &self.calendar) {
            (SlaClock::Business, Some(calendar)) => calendar
                .deadline(created_at, rule.within_nanos)
                .unwrap_or(NEVER),
            _ => Instant(created_at.0.saturating_add(rule.within_nanos)),
        })
    }
}

/// The latest of a series of versions (oldest first) and the moment from
/// which it has held unchanged: the moment of the earliest version of the
/// unbroken run of equal versions at the end. (A team's terms are versioned
/// whole; its calendar, say, may be unchanged across several versions.)
pub fn unchanged_since<T: PartialEq>(versions: &[(i64, T)]) -> Option<(i64, &T)> {
    let (mut since, latest) = versions.last().map(|(moment, part)| (*moment, part))?;
    for (moment, part) in versions.iter().rev().skip(1) {
        if part != latest {
            break;
        }
        since = *moment;
    }
    Some((since, latest))
}

/// Whether a target with this deadline was met by an event at `at`.
pub fn met(deadline: Instant, at: Instant) -> bool {
    at <= deadline
}

/// From when on a ticket is in breach of its SLA: it is at every moment after
/// the returned one, and never when `None`. A target counts once its deadline
/// has passed without the event it waits for: the first response (a ticket
/// resolved without one no longer waits for it), or the resolution.
pub fn breached_after(
    first_response: (Option<Instant>, Option<Instant>),
    resolution: (Option<Instant>, Option<Instant>),
    resolved: bool,
) -> Option<Instant> {
    let missed = |(deadline, at): (Option<Instant>, Option<Instant>), still_waiting: bool| {
        let deadline = deadline.filter(|&deadline| deadline != NEVER)?;
        match at {
            Some(at) => (!met(deadline, at)).then_some(deadline),
            None => still_waiting.then_some(deadline),
        }
    };
    [
        missed(first_response, !resolved),
        missed(resolution, !resolved),
    ]
    .into_iter()
    .flatten()
    .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Instant {
        Instant::from_seconds(seconds)
    }

    #[test]
    fn a_later_rule_for_the_same_target_replaces_an_earlier_one() {
        let rule = |priority, metric, seconds| SlaRule {
            priority,
            metric,
            within_nanos: seconds * NANOS_PER_SECOND,
            clock: SlaClock::Calendar,
        };
        let policy = SlaPolicy::new([
            rule(Priority::High, SlaMetric::Resolution, 10),
            rule(Priority::Low, SlaMetric::FirstResponse, 20),
            rule(Priority::High, SlaMetric::Resolution, 30),
        ]);
        assert_eq!(policy.rules().len(), 2);
        assert_eq!(
            policy
                .rule(Priority::High, SlaMetric::Resolution)
                .map(|r| r.within_nanos),
            Some(30 * NANOS_PER_SECOND)
        );
        assert_eq!(policy.rule(Priority::High, SlaMetric::FirstResponse), None);
    }

    #[test]
    fn business_time_without_a_calendar_counts_every_second() {
        let terms = TeamTerms {
            calendar: None,
            sla: SlaPolicy::new([SlaRule {
                priority: Priority::Normal,
                metric: SlaMetric::FirstResponse,
                within_nanos: 60 * NANOS_PER_SECOND,
                clock: SlaClock::Business,
            }]),
        };
        assert_eq!(
            terms.deadline(Priority::Normal, SlaMetric::FirstResponse, at(1_000)),
            Some(at(1_060))
        );
        assert_eq!(
            terms.deadline(Priority::Urgent, SlaMetric::FirstResponse, at(1_000)),
            None
        );
    }

    #[test]
    fn a_part_holds_since_the_first_of_its_trailing_equal_versions() {
        assert_eq!(unchanged_since::<u8>(&[]), None);
        let versions = [(i64::MIN, 'a'), (10, 'b'), (20, 'b'), (30, 'b')];
        assert_eq!(unchanged_since(&versions), Some((10, &'b')));
        assert_eq!(unchanged_since(&versions[..1]), Some((i64::MIN, &'a')));
        assert_eq!(
            unchanged_since(&[(i64::MIN, 'b'), (5, 'b')]),
            Some((i64::MIN, &'b'))
        );
    }

    #[test]
    fn a_ticket_breaches_from_its_earliest_missed_deadline() {
        let (d1, d2) = (Some(at(100)), Some(at(200)));
        // Answered on time, resolved late: in breach after the resolution deadline.
        assert_eq!(
            breached_after((d1, Some(at(100))), (d2, Some(at(201))), true),
            Some(at(200))
        );
        // Answered late: in breach after the first response deadline, even
        // though it was resolved in time.
        assert_eq!(
            breached_after((d1, Some(at(150))), (d2, Some(at(190))), true),
            Some(at(100))
        );
        // Open and unanswered: both deadlines still run, the earlier counts.
        assert_eq!(breached_after((d1, None), (d2, None), false), Some(at(100)));
        // Resolved without a first response: no longer waiting for one.
        assert_eq!(breached_after((d1, None), (d2, Some(at(200))), true), None);
        // No policy, or a target that never runs out: never.
        assert_eq!(breached_after((None, None), (None, None), false), None);
        assert_eq!(
            breached_after((Some(NEVER), None), (None, None), false),
            None
        );
        assert!(met(NEVER, at(4_000_000_000)));
    }
}
