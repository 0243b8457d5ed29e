//! Turning wire messages into validated domain values. Every problem is
//! collected with the path of its field, so one answer names every bad field.

use std::str::FromStr;

use chrono_tz::Tz;
use prost_types::{Duration, Timestamp};

use crate::domain::aggregate::{Scope, Selection, MAX_UNION_TEAMS};
use crate::domain::calendar::{Calendar, Shift, DAY_MINUTES, STEP_MINUTES};
use crate::domain::records::{
    Channel, CustomerEvent, CustomerEventKind, Id, Interaction, Priority, QualityReview, Record,
    SocialFacts, SocialKind, SurveyKind, SurveyResponse, MAX_COMMENT_BYTES,
};
use crate::domain::scorecard::Metric;
use crate::domain::sla::{
    SlaClock, SlaMetric, SlaPolicy, SlaRule, MAX_SLA_TARGETS, MAX_SLA_TARGET_NANOS,
};
use crate::domain::time::{
    Instant, Window, EARLIEST_SECONDS, MAX_FUTURE_SECONDS, NANOS_PER_SECOND,
};
use crate::error::{shown, Error, FieldViolation};
use crate::proto::v1 as pb;

/// A calendar holds at most this many shifts a weekday and this many holidays.
pub const MAX_SHIFTS_PER_DAY: usize = 16;
pub const MAX_HOLIDAYS: usize = 1_000;

/// At most this many tags per interaction, each at most this many characters.
pub const MAX_TAGS: usize = 16;
pub const MAX_TAG_CHARS: usize = 64;
/// Handle time is at most 7 days.
pub const MAX_HANDLE_SECONDS: i64 = 7 * 86_400;
/// Windows may not reach past 2100-01-01.
pub const LATEST_WINDOW_SECONDS: i64 = 4_102_444_800;

/// Collects field violations under a path prefix.
#[derive(Debug)]
pub struct Fields {
    prefix: String,
    violations: Vec<FieldViolation>,
    now: Instant,
}

impl Fields {
    pub fn new(prefix: &str) -> Fields {
        Fields {
            prefix: prefix.to_owned(),
            violations: Vec::new(),
            now: Instant::now(),
        }
    }

    fn path(&self, field: &str) -> String {
        if self.prefix.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{}", self.prefix, field)
        }
    }

    pub fn violation(&mut self, field: &str, description: impl Into<String>) {
        let path = self.path(field);
        self.violations.push(FieldViolation::new(path, description));
    }

    /// `Ok(value)` when nothing was wrong, else every violation.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, Vec<FieldViolation>> {
        match value {
            Some(value) if self.violations.is_empty() => Ok(value),
            _ => Err(self.violations),
        }
    }

    pub fn id(&mut self, field: &str, raw: &str) -> Option<Id> {
        Id::parse(raw)
            .map_err(|e| self.violation(field, e.to_string()))
            .ok()
    }

    pub fn optional_id(&mut self, field: &str, raw: &str) -> Option<Option<Id>> {
        Id::parse_optional(raw)
            .map_err(|e| self.violation(field, e.to_string()))
            .ok()
    }

    /// A record timestamp: from 2000-01-01 to 24 h after now.
    pub fn record_time(&mut self, field: &str, raw: Option<&Timestamp>) -> Option<Instant> {
        let Some(raw) = raw else {
            self.violation(field, "is required");
            return None;
        };
        let instant = self.timestamp(field, raw)?;
        if instant.seconds() < EARLIEST_SECONDS {
            self.violation(field, "must not be before 2000-01-01T00:00:00Z");
            return None;
        }
        if instant.0
            > self
                .now
                .0
                .saturating_add(MAX_FUTURE_SECONDS * NANOS_PER_SECOND)
        {
            self.violation(field, "must not be more than 24 hours in the future");
            return None;
        }
        Some(instant)
    }

    pub fn optional_record_time(
        &mut self,
        field: &str,
        raw: Option<&Timestamp>,
    ) -> Option<Option<Instant>> {
        match raw {
            None => Some(None),
            Some(raw) => self.record_time(field, Some(raw)).map(Some),
        }
    }

    fn timestamp(&mut self, field: &str, raw: &Timestamp) -> Option<Instant> {
        if !(0..NANOS_PER_SECOND as i32).contains(&raw.nanos) {
            self.violation(field, "nanos must be between 0 and 999,999,999");
            return None;
        }
        // Anything outside ±292 years of 1970 does not fit in nanoseconds.
        let nanos = raw
            .seconds
            .checked_mul(NANOS_PER_SECOND)
            .and_then(|n| n.checked_add(i64::from(raw.nanos)));
        if nanos.is_none() {
            self.violation(field, "is out of range");
        }
        nanos.map(Instant)
    }

    /// A window of whole 15-minute boundaries between 2000 and 2100.
    pub fn window(&mut self, field: &str, raw: Option<&pb::Window>) -> Option<Window> {
        let Some(raw) = raw else {
            self.violation(field, "is required");
            return None;
        };
        let from = self.window_end(&format!("{field}.from"), raw.from.as_ref());
        let to = self.window_end(&format!("{field}.to"), raw.to.as_ref());
        let (from, to) = (from?, to?);
        match Window::new(from, to) {
            Ok(window) => Some(window),
            Err(e) => {
                self.violation(field, e.to_string());
                None
            }
        }
    }

    fn window_end(&mut self, field: &str, raw: Option<&Timestamp>) -> Option<i64> {
        let Some(raw) = raw else {
            self.violation(field, "is required");
            return None;
        };
        if raw.nanos != 0 || raw.seconds % 900 != 0 {
            self.violation(
                field,
                "must lie on a 15-minute boundary (seconds divisible by 900, no nanoseconds)",
            );
            return None;
        }
        if !(EARLIEST_SECONDS..=LATEST_WINDOW_SECONDS).contains(&raw.seconds) {
            self.violation(field, "must lie between 2000-01-01 and 2100-01-01");
            return None;
        }
        Some(raw.seconds)
    }

    /// An optional instant for "as of" questions; default now.
    pub fn as_of(&mut self, field: &str, raw: Option<&Timestamp>) -> Option<Instant> {
        match raw {
            None => Some(self.now),
            Some(raw) => self.timestamp(field, raw),
        }
    }

    /// An IANA time zone name; empty is UTC.
    pub fn time_zone(&mut self, field: &str, raw: &str) -> Option<Tz> {
        let name = if raw.is_empty() { "UTC" } else { raw };
        Tz::from_str(name)
            .map_err(|_| {
                self.violation(
                    field,
                    format!("{} is not an IANA time zone name", shown(name)),
                )
            })
            .ok()
    }

    /// A duration within `[min, max]`, or `default` when absent.
    pub fn bounded_duration(
        &mut self,
        field: &str,
        raw: Option<&Duration>,
        (min, max): (std::time::Duration, std::time::Duration),
        default: std::time::Duration,
    ) -> Option<std::time::Duration> {
        let Some(raw) = raw else {
            return Some(default);
        };
        let Ok(duration) = std::time::Duration::try_from(*raw) else {
            self.violation(field, "is not a valid non-negative duration");
            return None;
        };
        if duration < min || duration > max {
            self.violation(
                field,
                format!("must be between {min:?} and {max:?}, not {duration:?}"),
            );
            return None;
        }
        Some(duration)
    }

    /// A scope, or for TEAM and TEAM_CHANNEL with `team_ids` the union of those
    /// teams (`team_id` and `team_ids` are exclusive).
    pub fn selection(&mut self, field: &str, raw: Option<&pb::Scope>) -> Option<Selection> {
        let Some(raw) = raw else {
            self.violation(field, "is required");
            return None;
        };
        if raw.team_ids.is_empty() {
            return self.scope(field, raw).map(Selection::one);
        }
        let violations_before = self.violations.len();
        let kind = pb::ScopeKind::try_from(raw.kind).unwrap_or(pb::ScopeKind::Unspecified);
        let ids_field = format!("{field}.team_ids");
        if !matches!(kind, pb::ScopeKind::Team | pb::ScopeKind::TeamChannel) {
            self.violation(&ids_field, "is only for scope kinds TEAM and TEAM_CHANNEL");
        }
        if !raw.team_id.is_empty() {
            self.violation(
                &format!("{field}.team_id"),
                "must not be set together with team_ids",
            );
        }
        for (set, name) in [
            (!raw.agent_id.is_empty(), "agent_id"),
            (!raw.tag.is_empty(), "tag"),
        ] {
            if set {
                self.violation(
                    &format!("{field}.{name}"),
                    "must not be set for a union of teams",
                );
            }
        }
        if raw.team_ids.len() > MAX_UNION_TEAMS {
            self.violation(
                &ids_field,
                format!(
                    "names {} teams; at most {MAX_UNION_TEAMS}",
                    raw.team_ids.len()
                ),
            );
        }
        let mut teams = Vec::with_capacity(raw.team_ids.len());
        for (index, raw_team) in raw.team_ids.iter().enumerate().take(MAX_UNION_TEAMS) {
            let team_field = format!("{ids_field}[{index}]");
            if let Some(team) = self.id(&team_field, raw_team) {
                if teams.contains(&team) {
                    self.violation(&team_field, "names a team already in the list");
                } else {
                    teams.push(team);
                }
            }
        }
        let channel = match kind {
            pb::ScopeKind::TeamChannel => {
                Some(self.channel(&format!("{field}.channel"), raw.channel)?)
            }
            _ => {
                if raw.channel != 0 {
                    self.violation(
                        &format!("{field}.channel"),
                        "must not be set for this scope kind",
                    );
                }
                None
            }
        };
        (self.violations.len() == violations_before).then(|| Selection::teams(teams, channel))
    }

    fn scope(&mut self, field: &str, raw: &pb::Scope) -> Option<Scope> {
        let violations_before = self.violations.len();
        let kind = pb::ScopeKind::try_from(raw.kind).unwrap_or(pb::ScopeKind::Unspecified);
        let team_field = format!("{field}.team_id");
        let agent_field = format!("{field}.agent_id");
        let channel_field = format!("{field}.channel");
        let tag_field = format!("{field}.tag");
        let wants_team = matches!(
            kind,
            pb::ScopeKind::Team | pb::ScopeKind::TeamChannel | pb::ScopeKind::TeamTag
        );
        let wants_agent = kind == pb::ScopeKind::Agent;
        let wants_channel = matches!(kind, pb::ScopeKind::Channel | pb::ScopeKind::TeamChannel);
        let wants_tag = matches!(kind, pb::ScopeKind::Tag | pb::ScopeKind::TeamTag);
        for (wanted, set, name) in [
            (wants_team, !raw.team_id.is_empty(), &team_field),
            (wants_agent, !raw.agent_id.is_empty(), &agent_field),
            (wants_channel, raw.channel != 0, &channel_field),
            (wants_tag, !raw.tag.is_empty(), &tag_field),
        ] {
            if set && !wanted && kind != pb::ScopeKind::Unspecified {
                self.violation(name, "must not be set for this scope kind");
            }
        }
        let team = wants_team.then(|| self.id(&team_field, &raw.team_id));
        let agent = wants_agent.then(|| self.id(&agent_field, &raw.agent_id));
        let channel = wants_channel.then(|| self.channel(&channel_field, raw.channel));
        let tag = wants_tag.then(|| self.tag(&tag_field, &raw.tag));
        let scope = match kind {
            pb::ScopeKind::Unspecified => {
                self.violation(
                    &format!("{field}.kind"),
                    "is required: ORGANIZATION, TEAM, AGENT, CHANNEL, TEAM_CHANNEL, TAG or TEAM_TAG",
                );
                None
            }
            pb::ScopeKind::Tag => Some(Scope::Tag(tag.flatten()?)),
            pb::ScopeKind::TeamTag => Some(Scope::TeamTag(team.flatten()?, tag.flatten()?)),
            pb::ScopeKind::Organization => Some(Scope::Organization),
            pb::ScopeKind::Team => Some(Scope::Team(team.flatten()?)),
            pb::ScopeKind::Agent => Some(Scope::Agent(agent.flatten()?)),
            pb::ScopeKind::Channel => Some(Scope::Channel(channel.flatten()?)),
            pb::ScopeKind::TeamChannel => {
                Some(Scope::TeamChannel(team.flatten()?, channel.flatten()?))
            }
        };
        // A scope that carries a field its kind does not use is not a scope.
        scope.filter(|_| self.violations.len() == violations_before)
    }

    /// A business calendar: a zone, shifts in 15-minute steps, holidays.
    pub fn calendar(&mut self, field: &str, raw: &pb::BusinessCalendar) -> Option<Calendar> {
        let before = self.violations.len();
        let zone = self.time_zone(&format!("{field}.time_zone"), &raw.time_zone);
        let mut week: [Vec<Shift>; 7] = Default::default();
        for (index, hours) in raw.hours.iter().enumerate() {
            let at = format!("{field}.hours[{index}]");
            let day = match pb::Weekday::try_from(hours.weekday) {
                Ok(pb::Weekday::Unspecified) | Err(_) => {
                    self.violation(&format!("{at}.weekday"), "is required: MONDAY to SUNDAY");
                    None
                }
                Ok(day) => Some(day as usize - 1),
            };
            let start = self.clock_time(&format!("{at}.start"), &hours.start, false);
            let end = self.clock_time(&format!("{at}.end"), &hours.end, true);
            if let (Some(day), Some(start), Some(end)) = (day, start, end) {
                if week[day].len() == MAX_SHIFTS_PER_DAY {
                    self.violation(
                        &format!("{at}.weekday"),
                        format!("at most {MAX_SHIFTS_PER_DAY} shifts a day"),
                    );
                } else {
                    week[day].push(Shift { start, end });
                }
            }
        }
        if raw.holidays.len() > MAX_HOLIDAYS {
            self.violation(
                &format!("{field}.holidays"),
                format!("at most {MAX_HOLIDAYS} dates"),
            );
        }
        let mut holidays = std::collections::BTreeSet::new();
        for (index, date) in raw.holidays.iter().enumerate().take(MAX_HOLIDAYS) {
            match chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d") {
                Ok(date) => {
                    holidays.insert(date);
                }
                Err(_) => self.violation(
                    &format!("{field}.holidays[{index}]"),
                    "must be a date YYYY-MM-DD",
                ),
            }
        }
        if self.violations.len() != before {
            return None;
        }
        match Calendar::new(zone?, week, holidays) {
            Ok(calendar) => Some(calendar),
            Err(error) => {
                self.violation(&format!("{field}.hours"), error.to_string());
                None
            }
        }
    }

    /// "HH:MM" in 15-minute steps, as minutes since midnight; "24:00" only as an end.
    fn clock_time(&mut self, field: &str, raw: &str, end: bool) -> Option<u16> {
        let two_digits = |part: &str| {
            (part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u16>().ok())
                .flatten()
        };
        let minutes = raw
            .split_once(':')
            .and_then(|(h, m)| Some((two_digits(h)?, two_digits(m)?)))
            .filter(|&(_, m)| m < 60)
            .map(|(h, m)| h * 60 + m)
            .filter(|&minutes| minutes % STEP_MINUTES == 0)
            .filter(|&minutes| minutes < DAY_MINUTES || (end && minutes == DAY_MINUTES));
        if minutes.is_none() {
            self.violation(
                field,
                "must be a local time HH:MM in 15-minute steps (24:00 only as an end)",
            );
        }
        minutes
    }

    /// A tag as interactions carry them: 1–64 characters.
    pub fn tag(&mut self, field: &str, raw: &str) -> Option<String> {
        if raw.is_empty() || raw.chars().count() > MAX_TAG_CHARS {
            self.violation(field, format!("must be 1-{MAX_TAG_CHARS} characters"));
            return None;
        }
        Some(raw.to_owned())
    }

    pub fn channel(&mut self, field: &str, raw: i32) -> Option<Channel> {
        let channel = match pb::Channel::try_from(raw) {
            Ok(pb::Channel::Email) => Channel::Email,
            Ok(pb::Channel::Chat) => Channel::Chat,
            Ok(pb::Channel::Phone) => Channel::Phone,
            Ok(pb::Channel::Social) => Channel::Social,
            Ok(pb::Channel::Messaging) => Channel::Messaging,
            Ok(pb::Channel::Web) => Channel::Web,
            Ok(pb::Channel::Other) => Channel::Other,
            Ok(pb::Channel::Unspecified) => {
                self.violation(
                    field,
                    "is required: EMAIL, CHAT, PHONE, SOCIAL, MESSAGING, WEB or OTHER",
                );
                return None;
            }
            Err(_) => {
                self.violation(field, format!("{raw} is not a known channel"));
                return None;
            }
        };
        Some(channel)
    }

    /// A priority; UNSPECIFIED is NORMAL.
    pub fn priority(&mut self, field: &str, raw: i32) -> Option<Priority> {
        match pb::Priority::try_from(raw) {
            Ok(pb::Priority::Low) => Some(Priority::Low),
            Ok(pb::Priority::Normal | pb::Priority::Unspecified) => Some(Priority::Normal),
            Ok(pb::Priority::High) => Some(Priority::High),
            Ok(pb::Priority::Urgent) => Some(Priority::Urgent),
            Err(_) => {
                self.violation(field, format!("{raw} is not a known priority"));
                None
            }
        }
    }

    /// An SLA policy: at most one target per (priority, metric), each within
    /// 0 to 365 days.
    pub fn sla_policy(&mut self, field: &str, raw: &pb::SlaPolicy) -> Option<SlaPolicy> {
        if raw.targets.len() > MAX_SLA_TARGETS {
            self.violation(
                &format!("{field}.targets"),
                format!("at most {MAX_SLA_TARGETS} targets: one per priority and metric"),
            );
            return None;
        }
        let before = self.violations.len();
        let mut rules: Vec<SlaRule> = Vec::with_capacity(raw.targets.len());
        for (index, target) in raw.targets.iter().enumerate() {
            let at = format!("{field}.targets[{index}]");
            let priority = self.priority(&format!("{at}.priority"), target.priority);
            let metric = match pb::SlaMetric::try_from(target.metric) {
                Ok(pb::SlaMetric::FirstResponse) => Some(SlaMetric::FirstResponse),
                Ok(pb::SlaMetric::Resolution) => Some(SlaMetric::Resolution),
                Ok(pb::SlaMetric::Unspecified) | Err(_) => {
                    self.violation(
                        &format!("{at}.metric"),
                        "is required: FIRST_RESPONSE or RESOLUTION",
                    );
                    None
                }
            };
            let clock = match pb::SlaClock::try_from(target.clock) {
                Ok(pb::SlaClock::CalendarTime) => Some(SlaClock::Calendar),
                Ok(pb::SlaClock::BusinessTime) => Some(SlaClock::Business),
                Ok(pb::SlaClock::Unspecified) | Err(_) => {
                    self.violation(
                        &format!("{at}.clock"),
                        "is required: CALENDAR_TIME or BUSINESS_TIME",
                    );
                    None
                }
            };
            let within = match target.within.as_ref() {
                None => {
                    self.violation(&format!("{at}.within"), "is required");
                    None
                }
                Some(raw) => self.bounded_duration(
                    &format!("{at}.within"),
                    Some(raw),
                    (
                        std::time::Duration::ZERO,
                        std::time::Duration::from_nanos(MAX_SLA_TARGET_NANOS.unsigned_abs()),
                    ),
                    std::time::Duration::ZERO,
                ),
            };
            let (Some(priority), Some(metric), Some(clock), Some(within)) =
                (priority, metric, clock, within)
            else {
                continue;
            };
            if rules
                .iter()
                .any(|r| r.priority == priority && r.metric == metric)
            {
                self.violation(
                    &at,
                    "repeats the priority and metric of an earlier target: one target each",
                );
                continue;
            }
            rules.push(SlaRule {
                priority,
                metric,
                within_nanos: i64::try_from(within.as_nanos()).unwrap_or(MAX_SLA_TARGET_NANOS),
                clock,
            });
        }
        (self.violations.len() == before).then(|| SlaPolicy::new(rules))
    }

    pub fn metric(&mut self, field: &str, raw: i32) -> Option<Metric> {
        let metric = pb::Metric::try_from(raw).ok().and_then(metric_from_proto);
        if metric.is_none() {
            self.violation(field, format!("{raw} is not a known metric"));
        }
        metric
    }
}

/// The domain metric of a wire metric; `None` for UNSPECIFIED.
pub fn metric_from_proto(metric: pb::Metric) -> Option<Metric> {
    use pb::Metric as P;
    Some(match metric {
        P::Unspecified => return None,
        P::TicketsCreated => Metric::TicketsCreated,
        P::Interactions => Metric::Interactions,
        P::TicketsResolved => Metric::TicketsResolved,
        P::CsatPercent => Metric::CsatPercent,
        P::CesMean => Metric::CesMean,
        P::CesEasyPercent => Metric::CesEasyPercent,
        P::NpsScore => Metric::NpsScore,
        P::ResolutionRate => Metric::ResolutionRate,
        P::FcrRate => Metric::FcrRate,
        P::SurveyResponseRate => Metric::SurveyResponseRate,
        P::QualityMean => Metric::QualityMean,
        P::FrtMean => Metric::FrtMean,
        P::FrtP50 => Metric::FrtP50,
        P::FrtP90 => Metric::FrtP90,
        P::ResolutionTimeMean => Metric::ResolutionTimeMean,
        P::ResolutionTimeP90 => Metric::ResolutionTimeP90,
        P::AhtMean => Metric::AhtMean,
        P::AhtP90 => Metric::AhtP90,
        P::ReopenRate => Metric::ReopenRate,
        P::SocialNegativePercent => Metric::SocialNegativePercent,
        P::PostContactChurnPercent => Metric::PostContactChurnPercent,
        P::FirstResponseSlaPercent => Metric::FirstResponseSlaPercent,
        P::ResolutionSlaPercent => Metric::ResolutionSlaPercent,
    })
}

fn handle_time(fields: &mut Fields, raw: Option<&Duration>) -> Option<Option<i64>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let valid_nanos = raw.nanos.unsigned_abs() < NANOS_PER_SECOND as u32
        && !(raw.seconds > 0 && raw.nanos < 0 || raw.seconds < 0 && raw.nanos > 0);
    if !valid_nanos {
        fields.violation("handle_time", "is not a valid duration");
        return None;
    }
    if raw.seconds < 0 || raw.nanos < 0 {
        fields.violation("handle_time", "must not be negative");
        return None;
    }
    if raw.seconds > MAX_HANDLE_SECONDS || raw.seconds == MAX_HANDLE_SECONDS && raw.nanos > 0 {
        fields.violation("handle_time", "must be at most 7 days");
        return None;
    }
    Some(Some(raw.seconds * NANOS_PER_SECOND + i64::from(raw.nanos)))
}

/// Validates an interaction; `prefix` is the path of the message in the request.
pub fn interaction(
    raw: &pb::Interaction,
    prefix: &str,
) -> Result<Interaction, Vec<FieldViolation>> {
    let mut f = Fields::new(prefix);
    let interaction_id = f.id("interaction_id", &raw.interaction_id);
    let ticket_id = f.id("ticket_id", &raw.ticket_id);
    let team_id = f.id("team_id", &raw.team_id);
    let agent_id = f.optional_id("agent_id", &raw.agent_id);
    let customer_id = f.optional_id("customer_id", &raw.customer_id);
    let channel = f.channel("channel", raw.channel);
    let priority = f.priority("priority", raw.priority);
    let opened_at = f.record_time("opened_at", raw.opened_at.as_ref());
    let first_response_at =
        f.optional_record_time("first_response_at", raw.first_response_at.as_ref());
    let closed_at = f.optional_record_time("closed_at", raw.closed_at.as_ref());
    if let Some(opened_at) = opened_at {
        if let Some(Some(at)) = first_response_at {
            if at < opened_at {
                f.violation("first_response_at", "must not be before opened_at");
            }
        }
        if let Some(Some(at)) = closed_at {
            if at < opened_at {
                f.violation("closed_at", "must not be before opened_at");
            }
        }
    }
    if raw.resolved && raw.closed_at.is_none() {
        f.violation("closed_at", "is required when resolved is true");
    }
    let handle_time_nanos = handle_time(&mut f, raw.handle_time.as_ref());
    if raw.tags.len() > MAX_TAGS {
        f.violation("tags", format!("must hold at most {MAX_TAGS} tags"));
    }
    for (index, tag) in raw.tags.iter().enumerate() {
        if tag.is_empty() || tag.chars().count() > MAX_TAG_CHARS {
            f.violation(
                &format!("tags[{index}]"),
                format!("must be 1 to {MAX_TAG_CHARS} characters"),
            );
        }
    }
    let social = match &raw.social {
        None => Some(None),
        Some(social) => {
            if raw.channel != pb::Channel::Social as i32 {
                f.violation("social", "is only allowed on channel SOCIAL");
            }
            let kind = match pb::SocialKind::try_from(social.kind) {
                Ok(pb::SocialKind::Mention) => Some(SocialKind::Mention),
                Ok(pb::SocialKind::Complaint) => Some(SocialKind::Complaint),
                Ok(pb::SocialKind::QuestionTechnical) => Some(SocialKind::QuestionTechnical),
                Ok(pb::SocialKind::QuestionAccount) => Some(SocialKind::QuestionAccount),
                Ok(pb::SocialKind::Praise) => Some(SocialKind::Praise),
                Ok(pb::SocialKind::Unspecified) | Err(_) => {
                    f.violation(
                        "social.kind",
                        "is required: MENTION, COMPLAINT, QUESTION_TECHNICAL, QUESTION_ACCOUNT or PRAISE",
                    );
                    None
                }
            };
            if !(-1.0..=1.0).contains(&social.sentiment) {
                f.violation("social.sentiment", "must be between -1 and 1");
            }
            kind.map(|kind| {
                Some(SocialFacts {
                    kind,
                    sentiment: social.sentiment,
                })
            })
        }
    };
    let value = (|| {
        Some(Interaction {
            interaction_id: interaction_id?,
            revision: raw.revision,
            ticket_id: ticket_id?,
            team_id: team_id?,
            agent_id: agent_id?,
            customer_id: customer_id?,
            channel: channel?,
            priority: priority?,
            opened_at: opened_at?,
            first_response_at: first_response_at?,
            closed_at: closed_at?,
            handle_time_nanos: handle_time_nanos?,
            resolved: raw.resolved,
            tags: raw.tags.clone(),
            social: social?,
        })
    })();
    f.finish(value)
}

pub fn survey_response(
    raw: &pb::SurveyResponse,
    prefix: &str,
) -> Result<SurveyResponse, Vec<FieldViolation>> {
    let mut f = Fields::new(prefix);
    let response_id = f.id("response_id", &raw.response_id);
    let interaction_id = f.id("interaction_id", &raw.interaction_id);
    let kind = match pb::SurveyKind::try_from(raw.kind) {
        Ok(pb::SurveyKind::Csat) => Some(SurveyKind::Csat),
        Ok(pb::SurveyKind::Ces) => Some(SurveyKind::Ces),
        Ok(pb::SurveyKind::Nps) => Some(SurveyKind::Nps),
        Ok(pb::SurveyKind::Unspecified) | Err(_) => {
            f.violation("kind", "is required: CSAT, CES or NPS");
            None
        }
    };
    let score = kind.and_then(|kind| {
        let (low, high) = kind.score_range();
        if (low..=high).contains(&raw.score) {
            u8::try_from(raw.score).ok()
        } else {
            f.violation(
                "score",
                format!("must be between {low} and {high} for {}", kind.name()),
            );
            None
        }
    });
    let submitted_at = f.record_time("submitted_at", raw.submitted_at.as_ref());
    if raw.comment.len() > MAX_COMMENT_BYTES {
        f.violation("comment", "must be at most 4 KiB");
    }
    let value = (|| {
        Some(SurveyResponse {
            response_id: response_id?,
            revision: raw.revision,
            interaction_id: interaction_id?,
            kind: kind?,
            score: score?,
            submitted_at: submitted_at?,
            comment: raw.comment.clone(),
        })
    })();
    f.finish(value)
}

pub fn quality_review(
    raw: &pb::QualityReview,
    prefix: &str,
) -> Result<QualityReview, Vec<FieldViolation>> {
    let mut f = Fields::new(prefix);
    let review_id = f.id("review_id", &raw.review_id);
    let interaction_id = f.id("interaction_id", &raw.interaction_id);
    let reviewer_id = f.id("reviewer_id", &raw.reviewer_id);
    let score = if raw.score <= 100 {
        u8::try_from(raw.score).ok()
    } else {
        f.violation("score", "must be between 0 and 100");
        None
    };
    let reviewed_at = f.record_time("reviewed_at", raw.reviewed_at.as_ref());
    let value = (|| {
        Some(QualityReview {
            review_id: review_id?,
            revision: raw.revision,
            interaction_id: interaction_id?,
            reviewer_id: reviewer_id?,
            score: score?,
            reviewed_at: reviewed_at?,
        })
    })();
    f.finish(value)
}

pub fn customer_event(
    raw: &pb::CustomerEvent,
    prefix: &str,
) -> Result<CustomerEvent, Vec<FieldViolation>> {
    let mut f = Fields::new(prefix);
    let event_id = f.id("event_id", &raw.event_id);
    let customer_id = f.id("customer_id", &raw.customer_id);
    let kind = match pb::CustomerEventKind::try_from(raw.kind) {
        Ok(pb::CustomerEventKind::Churned) => Some(CustomerEventKind::Churned),
        Ok(pb::CustomerEventKind::Unspecified) | Err(_) => {
            f.violation("kind", "is required: CHURNED");
            None
        }
    };
    let occurred_at = f.record_time("occurred_at", raw.occurred_at.as_ref());
    let value = (|| {
        Some(CustomerEvent {
            event_id: event_id?,
            revision: raw.revision,
            customer_id: customer_id?,
            kind: kind?,
            occurred_at: occurred_at?,
        })
    })();
    f.finish(value)
}

/// Validates a batch item (or an NDJSON line); `prefix` is its path, e.g. `records[3]`.
pub fn record(raw: &pb::Record, prefix: &str) -> Result<Record, Vec<FieldViolation>> {
    let path = |field: &str| {
        if prefix.is_empty() {
            field.to_owned()
        } else {
            format!("{prefix}.{field}")
        }
    };
    match &raw.record {
        Some(pb::record::Record::Interaction(r)) => {
            interaction(r, &path("interaction")).map(Record::Interaction)
        }
        Some(pb::record::Record::SurveyResponse(r)) => {
            survey_response(r, &path("survey_response")).map(Record::SurveyResponse)
        }
        Some(pb::record::Record::QualityReview(r)) => {
            quality_review(r, &path("quality_review")).map(Record::QualityReview)
        }
        Some(pb::record::Record::CustomerEvent(r)) => {
            customer_event(r, &path("customer_event")).map(Record::CustomerEvent)
        }
        None => Err(vec![FieldViolation::new(
            if prefix.is_empty() {
                "record".to_owned()
            } else {
                prefix.to_owned()
            },
            "must hold one of interaction, survey_response, quality_review, customer_event",
        )]),
    }
}

/// A required message field of a request.
pub fn required<'a, T>(raw: Option<&'a T>, field: &str) -> Result<&'a T, Error> {
    raw.ok_or_else(|| Error::invalid(field, "is required"))
}
