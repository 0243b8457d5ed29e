//! Domain values to wire messages.

use prost_types::Timestamp;

use crate::domain::aggregate::{Scope, Selection};
use crate::domain::calendar::Calendar;
use crate::domain::records::{
    Channel, CustomerEventKind, Id, Priority, Record, SocialFacts, SocialKind, SurveyKind,
};
use crate::domain::scorecard::{
    BacklogSummary, Confidence, Direction, DurationSummary, Metric, Metrics, Rate, TargetResult,
    TargetStatus,
};
use crate::domain::sla::{SlaClock, SlaMetric, SlaPolicy};
use crate::domain::ticket::TicketRow;
use crate::domain::time::{Instant, Window, NANOS_PER_SECOND};
use crate::proto::v1 as pb;
use crate::queries::Scorecard;
use crate::store::{BackupItem, Outcome};

pub fn timestamp_of_seconds(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 0 }
}

pub fn timestamp(instant: Instant) -> Timestamp {
    Timestamp {
        seconds: instant.0.div_euclid(NANOS_PER_SECOND),
        nanos: instant.0.rem_euclid(NANOS_PER_SECOND) as i32,
    }
}

pub fn window(window: Window) -> pb::Window {
    pb::Window {
        from: Some(timestamp_of_seconds(window.from())),
        to: Some(timestamp_of_seconds(window.to())),
    }
}

pub fn channel(channel: Channel) -> pb::Channel {
    match channel {
        Channel::Email => pb::Channel::Email,
        Channel::Chat => pb::Channel::Chat,
        Channel::Phone => pb::Channel::Phone,
        Channel::Social => pb::Channel::Social,
        Channel::Messaging => pb::Channel::Messaging,
        Channel::Web => pb::Channel::Web,
        Channel::Other => pb::Channel::Other,
    }
}

pub fn scope(scope: &Scope) -> pb::Scope {
    let mut message = pb::Scope::default();
    match scope {
        Scope::Organization => message.kind = pb::ScopeKind::Organization as i32,
        Scope::Team(team) => {
            message.kind = pb::ScopeKind::Team as i32;
            message.team_id = team.to_string();
        }
        Scope::Agent(agent) => {
            message.kind = pb::ScopeKind::Agent as i32;
            message.agent_id = agent.to_string();
        }
        Scope::Channel(c) => {
            message.kind = pb::ScopeKind::Channel as i32;
            message.channel = channel(*c) as i32;
        }
        Scope::TeamChannel(team, c) => {
            message.kind = pb::ScopeKind::TeamChannel as i32;
            message.team_id = team.to_string();
            message.channel = channel(*c) as i32;
        }
        Scope::Tag(tag) => {
            message.kind = pb::ScopeKind::Tag as i32;
            message.tag = tag.clone();
        }
        Scope::TeamTag(team, tag) => {
            message.kind = pb::ScopeKind::TeamTag as i32;
            message.team_id = team.to_string();
            message.tag = tag.clone();
        }
    }
    message
}

/// A single scope as itself; a union of teams as `team_ids` (with the channel
/// of a TEAM_CHANNEL union).
pub fn selection(selection: &Selection) -> pb::Scope {
    match selection {
        Selection::One(single) => scope(single),
        Selection::Teams { teams, channel: c } => pb::Scope {
            kind: match c {
                Some(_) => pb::ScopeKind::TeamChannel,
                None => pb::ScopeKind::Team,
            } as i32,
            team_ids: teams.iter().map(Id::to_string).collect(),
            channel: c.map_or(0, |c| channel(c) as i32),
            ..Default::default()
        },
    }
}

pub fn calendar(calendar: &Calendar) -> pb::BusinessCalendar {
    let clock = |minutes: u16| format!("{:02}:{:02}", minutes / 60, minutes % 60);
    let weekdays = [
        pb::Weekday::Monday,
        pb::Weekday::Tuesday,
        pb::Weekday::Wednesday,
        pb::Weekday::Thursday,
        pb::Weekday::Friday,
        pb::Weekday::Saturday,
        pb::Weekday::Sunday,
    ];
    pb::BusinessCalendar {
        time_zone: calendar.zone().name().to_owned(),
        hours: weekdays
            .iter()
            .zip(calendar.week())
            .flat_map(|(day, shifts)| {
                shifts.iter().map(move |shift| pb::WorkingHours {
                    weekday: *day as i32,
                    start: clock(shift.start),
                    end: clock(shift.end),
                })
            })
            .collect(),
        holidays: calendar
            .holidays()
            .iter()
            .map(|date| date.format("%Y-%m-%d").to_string())
            .collect(),
    }
}

pub fn ticket_row(row: &TicketRow) -> pb::TicketRow {
    pb::TicketRow {
        ticket_id: row.ticket_id.to_string(),
        team_id: row.team_id.to_string(),
        agent_id: optional_id(row.agent_id.as_ref()),
        channel: channel(row.channel) as i32,
        priority: priority(row.priority) as i32,
        created_at: Some(timestamp(row.created_at)),
        first_response_at: row.first_response_at.map(timestamp),
        resolved_at: row.resolved_at.map(timestamp),
        contacts: row.contacts,
        reopened: row.reopened,
        csat: row.csat.map(u32::from),
        nps: row.nps.map(u32::from),
        ces: row.ces.map(u32::from),
        tags: row.tags.clone(),
        sla_breached_after: row.sla_breached_after.map(timestamp),
    }
}

pub fn sla_policy(policy: &SlaPolicy) -> pb::SlaPolicy {
    pb::SlaPolicy {
        targets: policy
            .rules()
            .iter()
            .map(|rule| pb::SlaTarget {
                priority: priority(rule.priority) as i32,
                metric: match rule.metric {
                    SlaMetric::FirstResponse => pb::SlaMetric::FirstResponse,
                    SlaMetric::Resolution => pb::SlaMetric::Resolution,
                } as i32,
                within: Some(duration_of_nanos(rule.within_nanos)),
                clock: match rule.clock {
                    SlaClock::Calendar => pb::SlaClock::CalendarTime,
                    SlaClock::Business => pb::SlaClock::BusinessTime,
                } as i32,
            })
            .collect(),
    }
}

pub fn outcome(outcome: Outcome) -> pb::Outcome {
    match outcome {
        Outcome::Created => pb::Outcome::Created,
        Outcome::Updated => pb::Outcome::Updated,
        Outcome::Duplicate => pb::Outcome::Duplicate,
        Outcome::Stale => pb::Outcome::Stale,
    }
}

fn duration_stats(summary: Option<DurationSummary>) -> Option<pb::DurationStats> {
    summary.map(|s| pb::DurationStats {
        count: s.count,
        mean_seconds: s.mean_seconds,
        p50_seconds: s.p50_seconds,
        p90_seconds: s.p90_seconds,
        p99_seconds: s.p99_seconds,
    })
}

fn confidence(c: Confidence) -> pb::Confidence {
    pb::Confidence {
        sample_size: c.sample_size,
        lower_percent: c.lower_percent,
        upper_percent: c.upper_percent,
    }
}

pub fn metrics(m: &Metrics) -> pb::ScorecardMetrics {
    let interval = |rate| m.confidence(rate).map(confidence);
    let nps_interval = m.nps_interval();
    pb::ScorecardMetrics {
        tickets_created: m.tickets_created,
        interactions: m.interactions,
        tickets_resolved: m.tickets_resolved,
        tickets_created_resolved_now: m.tickets_created_resolved_now,
        resolution_rate_percent: m.resolution_rate_percent,
        first_contact_resolved: m.first_contact_resolved,
        fcr_rate_percent: m.fcr_rate_percent,
        reopened: m.reopened,
        reopen_rate_percent: m.reopen_rate_percent,
        first_response_time: duration_stats(m.first_response_time),
        resolution_time: duration_stats(m.resolution_time),
        handle_time: duration_stats(m.handle_time),
        first_response_business_time: duration_stats(m.first_response_business_time),
        resolution_business_time: duration_stats(m.resolution_business_time),
        first_response_sla: m.first_response_sla.as_ref().map(|s| pb::SlaStats {
            achieved: s.achieved,
            breached: s.breached,
            achieved_percent: s.achieved_percent,
            achieved_confidence: interval(Rate::FirstResponseSla),
        }),
        resolution_sla: m.resolution_sla.as_ref().map(|s| pb::SlaStats {
            achieved: s.achieved,
            breached: s.breached,
            achieved_percent: s.achieved_percent,
            achieved_confidence: interval(Rate::ResolutionSla),
        }),
        csat: m.csat.as_ref().map(|c| pb::CsatStats {
            responses: c.responses,
            satisfied: c.satisfied,
            satisfied_percent: c.satisfied_percent,
            mean_score: c.mean_score,
            score_counts: c.score_counts.clone(),
            satisfied_confidence: interval(Rate::CsatSatisfied),
        }),
        ces: m.ces.as_ref().map(|c| pb::CesStats {
            responses: c.responses,
            mean_score: c.mean_score,
            easy: c.easy,
            easy_percent: c.easy_percent,
            score_counts: c.score_counts.clone(),
            easy_confidence: interval(Rate::CesEasy),
        }),
        nps: m.nps.as_ref().map(|n| pb::NpsStats {
            responses: n.responses,
            promoters: n.promoters,
            passives: n.passives,
            detractors: n.detractors,
            score: n.score,
            margin_of_error: nps_interval.map_or(0.0, |i| i.margin_of_error),
            score_lower: nps_interval.map_or(0.0, |i| i.lower),
            score_upper: nps_interval.map_or(0.0, |i| i.upper),
        }),
        survey_response_rate_percent: m.survey_response_rate_percent,
        quality: m.quality.as_ref().map(|q| pb::QualityStats {
            reviews: q.reviews,
            mean_score: q.mean_score,
        }),
        social: Some(pb::SocialStats {
            mentions: m.social.mentions,
            negative: m.social.negative,
            negative_percent: m.social.negative_percent,
            technical_questions: m.social.technical_questions,
            account_questions: m.social.account_questions,
            praise: m.social.praise,
            negative_confidence: interval(Rate::SocialNegative),
        }),
        churn: Some(pb::ChurnStats {
            churn_events: m.churn.churn_events,
            resolved_tickets_with_customer: m.churn.resolved_tickets_with_customer,
            churned_after_resolution: m.churn.churned_after_resolution,
            post_contact_churn_percent: m.churn.post_contact_churn_percent,
            satisfied_resolved_tickets: m.churn.satisfied_resolved_tickets,
            satisfied_churned: m.churn.satisfied_churned,
            satisfied_churn_percent: m.churn.satisfied_churn_percent,
            unsatisfied_resolved_tickets: m.churn.unsatisfied_resolved_tickets,
            unsatisfied_churned: m.churn.unsatisfied_churned,
            unsatisfied_churn_percent: m.churn.unsatisfied_churn_percent,
            post_contact_churn_confidence: interval(Rate::PostContactChurn),
            satisfied_churn_confidence: interval(Rate::SatisfiedChurn),
            unsatisfied_churn_confidence: interval(Rate::UnsatisfiedChurn),
        }),
        resolution_rate_confidence: interval(Rate::Resolution),
        fcr_rate_confidence: interval(Rate::FirstContactResolution),
        reopen_rate_confidence: interval(Rate::Reopen),
    }
}

pub fn backlog(b: &BacklogSummary) -> pb::Backlog {
    pb::Backlog {
        as_of: Some(timestamp(b.as_of)),
        open_tickets: b.open_tickets,
        low: b.by_priority[0],
        normal: b.by_priority[1],
        high: b.by_priority[2],
        urgent: b.by_priority[3],
        age_under_1h: b.by_age[0],
        age_1h_to_4h: b.by_age[1],
        age_4h_to_24h: b.by_age[2],
        age_1d_to_3d: b.by_age[3],
        age_3d_to_7d: b.by_age[4],
        age_7d_or_more: b.by_age[5],
        oldest_age_seconds: b.oldest_age_seconds,
        sla_breaching: b.sla_breaching,
        sla_breaching_within_hour: b.sla_breaching_within_hour,
    }
}

pub fn metric(metric: Metric) -> pb::Metric {
    use pb::Metric as P;
    match metric {
        Metric::TicketsCreated => P::TicketsCreated,
        Metric::Interactions => P::Interactions,
        Metric::TicketsResolved => P::TicketsResolved,
        Metric::CsatPercent => P::CsatPercent,
        Metric::CesMean => P::CesMean,
        Metric::CesEasyPercent => P::CesEasyPercent,
        Metric::NpsScore => P::NpsScore,
        Metric::ResolutionRate => P::ResolutionRate,
        Metric::FcrRate => P::FcrRate,
        Metric::SurveyResponseRate => P::SurveyResponseRate,
        Metric::QualityMean => P::QualityMean,
        Metric::FrtMean => P::FrtMean,
        Metric::FrtP50 => P::FrtP50,
        Metric::FrtP90 => P::FrtP90,
        Metric::ResolutionTimeMean => P::ResolutionTimeMean,
        Metric::ResolutionTimeP90 => P::ResolutionTimeP90,
        Metric::AhtMean => P::AhtMean,
        Metric::AhtP90 => P::AhtP90,
        Metric::ReopenRate => P::ReopenRate,
        Metric::SocialNegativePercent => P::SocialNegativePercent,
        Metric::PostContactChurnPercent => P::PostContactChurnPercent,
        Metric::FirstResponseSlaPercent => P::FirstResponseSlaPercent,
        Metric::ResolutionSlaPercent => P::ResolutionSlaPercent,
    }
}

fn target_result(result: &TargetResult) -> pb::TargetResult {
    pb::TargetResult {
        metric: metric(result.metric) as i32,
        direction: match result.direction {
            Direction::AtLeast => pb::Direction::AtLeast,
            Direction::AtMost => pb::Direction::AtMost,
        } as i32,
        target: result.target,
        actual: result.actual,
        status: match result.status {
            TargetStatus::Met => pb::TargetStatus::Met,
            TargetStatus::Missed => pb::TargetStatus::Missed,
            TargetStatus::NoData => pb::TargetStatus::NoData,
            TargetStatus::InsufficientData => pb::TargetStatus::InsufficientData,
        } as i32,
        from_organization_default: result.from_organization_default,
        sample_size: result.sample_size,
    }
}

pub fn scorecard(card: &Scorecard) -> pb::Scorecard {
    pb::Scorecard {
        scope: Some(selection(&card.scope)),
        window: Some(window(card.window)),
        metrics: Some(metrics(&card.metrics)),
        backlog: Some(backlog(&card.backlog)),
        targets: card.targets.iter().map(target_result).collect(),
        previous_window: card.previous.as_ref().map(|(w, _)| window(*w)),
        previous: card.previous.as_ref().map(|(_, m)| metrics(m)),
        organization: card.organization.as_ref().map(metrics),
    }
}

pub fn targets(targets: &crate::domain::scorecard::Targets) -> Vec<pb::Target> {
    targets
        .iter()
        .map(|(&m, &value)| pb::Target {
            metric: metric(m) as i32,
            value,
        })
        .collect()
}

fn optional_id(id: Option<&Id>) -> String {
    id.map(Id::to_string).unwrap_or_default()
}

pub fn priority(priority: Priority) -> pb::Priority {
    match priority {
        Priority::Low => pb::Priority::Low,
        Priority::Normal => pb::Priority::Normal,
        Priority::High => pb::Priority::High,
        Priority::Urgent => pb::Priority::Urgent,
    }
}

fn social(facts: &SocialFacts) -> pb::SocialFacts {
    let kind = match facts.kind {
        SocialKind::Mention => pb::SocialKind::Mention,
        SocialKind::Complaint => pb::SocialKind::Complaint,
        SocialKind::QuestionTechnical => pb::SocialKind::QuestionTechnical,
        SocialKind::QuestionAccount => pb::SocialKind::QuestionAccount,
        SocialKind::Praise => pb::SocialKind::Praise,
    };
    pb::SocialFacts {
        kind: kind as i32,
        sentiment: facts.sentiment,
    }
}

fn duration_of_nanos(nanos: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: nanos / NANOS_PER_SECOND,
        nanos: (nanos % NANOS_PER_SECOND) as i32,
    }
}

/// A stored record as the wire message that records it again, unchanged.
pub fn record(record: &Record) -> pb::Record {
    let record = match record {
        Record::Interaction(i) => pb::record::Record::Interaction(pb::Interaction {
            interaction_id: i.interaction_id.to_string(),
            revision: i.revision,
            ticket_id: i.ticket_id.to_string(),
            team_id: i.team_id.to_string(),
            agent_id: optional_id(i.agent_id.as_ref()),
            customer_id: optional_id(i.customer_id.as_ref()),
            channel: channel(i.channel) as i32,
            priority: priority(i.priority) as i32,
            opened_at: Some(timestamp(i.opened_at)),
            first_response_at: i.first_response_at.map(timestamp),
            closed_at: i.closed_at.map(timestamp),
            handle_time: i.handle_time_nanos.map(duration_of_nanos),
            resolved: i.resolved,
            tags: i.tags.clone(),
            social: i.social.as_ref().map(social),
        }),
        Record::SurveyResponse(s) => pb::record::Record::SurveyResponse(pb::SurveyResponse {
            response_id: s.response_id.to_string(),
            revision: s.revision,
            interaction_id: s.interaction_id.to_string(),
            kind: match s.kind {
                SurveyKind::Csat => pb::SurveyKind::Csat,
                SurveyKind::Ces => pb::SurveyKind::Ces,
                SurveyKind::Nps => pb::SurveyKind::Nps,
            } as i32,
            score: u32::from(s.score),
            submitted_at: Some(timestamp(s.submitted_at)),
            comment: s.comment.clone(),
        }),
        Record::QualityReview(r) => pb::record::Record::QualityReview(pb::QualityReview {
            review_id: r.review_id.to_string(),
            revision: r.revision,
            interaction_id: r.interaction_id.to_string(),
            reviewer_id: r.reviewer_id.to_string(),
            score: u32::from(r.score),
            reviewed_at: Some(timestamp(r.reviewed_at)),
        }),
        Record::CustomerEvent(e) => pb::record::Record::CustomerEvent(pb::CustomerEvent {
            event_id: e.event_id.to_string(),
            revision: e.revision,
            customer_id: e.customer_id.to_string(),
            kind: match e.kind {
                CustomerEventKind::Churned => pb::CustomerEventKind::Churned,
            } as i32,
            occurred_at: Some(timestamp(e.occurred_at)),
        }),
    };
    pb::Record {
        record: Some(record),
    }
}

/// A backup item as the wire message that restores it.
pub fn backup_item(item: &BackupItem) -> pb::ExportItem {
    let item = match item {
        BackupItem::Record(r) => pb::export_item::Item::Record(record(r)),
        BackupItem::Targets(team, t) => pb::export_item::Item::Targets(pb::SetTargetsRequest {
            team_id: optional_id(team.as_ref()),
            targets: targets(t),
        }),
        BackupItem::Terms {
            team,
            effective_from,
            terms,
        } => pb::export_item::Item::Calendar(pb::CalendarVersion {
            team_id: team.to_string(),
            effective_from: (*effective_from != i64::MIN)
                .then(|| timestamp_of_seconds(*effective_from)),
            calendar: terms.calendar.as_ref().map(calendar),
            sla_policy: (!terms.sla.is_empty()).then(|| sla_policy(&terms.sla)),
        }),
    };
    pb::ExportItem { item: Some(item) }
}
