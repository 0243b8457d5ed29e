//! Model-based test of the store (STYLE habit 4). Random sequences of writes —
//! shuffled, re-sent, revised with higher, equal and lower revisions, tickets
//! spanning teams, feedback before its interaction, churn before and after
//! resolutions — go into a real sled store in random batches. A plain in-memory
//! model keeps the latest revision of every raw record and recomputes SPEC §2–§3
//! from them by straightforward iteration; every field of every scorecard and
//! backlog, for every scope and several windows, must equal it (counts and means
//! exactly, percentiles within 1%). Two teams have business calendars and two
//! have SLA policies (business- and calendar-time targets): the model finds each
//! deadline by its own walk over working quarter-hours and derives from it the
//! SLA outcomes, breach moments, breaching backlog and drill-down rows. Every
//! write's outcome must be the one SPEC §4 prescribes; the store is restarted
//! once mid-sequence; verify must find no mismatch after any batch, must find a
//! deliberately corrupted aggregate, and rebuild must repair it. A coverage tally
//! fails the test if the generator stops producing any of the situations it
//! exists for.
//!
//! `PROPTEST_CASES=5000 cargo test --test api model` hunts longer.
//!
//! The model is independent on purpose: it uses nothing from `domain::ticket`,
//! `domain::sketch`, `Aggregate` facts or `Metrics::from_aggregate`, and no
//! deadline or working time of `domain::sla` or `domain::calendar` (their types
//! only build what the store is given and what it must answer). (`Aggregate` is
//! only used to plant a corrupted value.)

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use chrono::{Datelike, NaiveDate, TimeZone, Timelike};
use chrono_tz::Tz;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use support_metrics::domain::aggregate::{Aggregate, Scope, Selection};
use support_metrics::domain::calendar::{Calendar, Shift};
use support_metrics::domain::drilldown::TicketFilter;
use support_metrics::domain::records::{
    Channel, CustomerEvent, CustomerEventKind, Id, Interaction, Priority, QualityReview, Record,
    SocialFacts, SocialKind, SurveyKind, SurveyResponse,
};
use support_metrics::domain::scorecard::{
    BacklogSummary, CesSummary, ChurnSummary, CsatSummary, DurationSummary, Metrics, NpsSummary,
    QualitySummary, SlaSummary, SocialSummary,
};
use support_metrics::domain::sla::{SlaClock, SlaMetric, SlaPolicy, SlaRule};
use support_metrics::domain::time::{Instant, Level, Window};
use support_metrics::error::Error;
use support_metrics::queries;
use support_metrics::store::{buckets, codec, keys, Outcome, SledOptions, Store};

const NANOS: i64 = 1_000_000_000;
const QUARTER: i64 = 900;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;
/// 2026-01-05T00:00:00Z, a Monday: generated activity starts here.
const T0: i64 = 1_767_571_200;
/// Interactions open within this long after `T0` (an hour earlier at most).
const SPAN: i64 = 10 * DAY;
/// A single 15-minute window that some generated times are packed into.
const HOT_QUARTER: i64 = T0 + DAY + 10 * HOUR;
/// SPEC §3: churn within 30 days after a resolution is post-contact churn.
const POST_CONTACT_CHURN: i64 = 30 * DAY;

// Small id pools, so that ids collide, tickets span teams and customers return.
const TICKETS: usize = 6;
const TEAMS: usize = 3;
const AGENTS: usize = 3;
const CUSTOMERS: usize = 4;
const INTERACTIONS: usize = 12;
const SURVEYS: usize = 8;
const REVIEWS: usize = 4;
const EVENTS: usize = 3;

fn id(raw: String) -> Id {
    Id::parse(&raw).expect("generated ids are valid")
}

fn team_id(n: usize) -> Id {
    id(format!("team-{n}"))
}

fn agent_id(n: usize) -> Id {
    id(format!("agent-{n}"))
}

fn customer_id(n: usize) -> Id {
    id(format!("customer-{n}"))
}

/// `interaction_id(INTERACTIONS)` is never created: feedback on it counts nowhere.
fn interaction_id(n: usize) -> Id {
    id(format!("interaction-{n}"))
}

fn at(seconds: i64) -> Instant {
    Instant(seconds * NANOS)
}

// ---------------------------------------------------------------------------
// Generation: a plan of operations, materialised into concrete records.

#[derive(Debug, Clone)]
struct InteractionSpec {
    id: usize,
    revision: u64,
    ticket: usize,
    team: usize,
    agent: Option<usize>,
    customer: Option<usize>,
    channel: Channel,
    priority: Priority,
    /// Seconds after `T0`.
    opened: i64,
    /// Seconds after `opened`.
    first_response: Option<ResponseAt>,
    closed: Option<i64>,
    resolved: bool,
    handle: Option<i64>,
    tags: Vec<&'static str>,
    social_kind: SocialKind,
    sentiment: f64,
}

#[derive(Debug, Clone)]
struct SurveySpec {
    id: usize,
    revision: u64,
    interaction: usize,
    kind: SurveyKind,
    score_seed: u8,
    submitted: i64,
    comment: &'static str,
}

#[derive(Debug, Clone)]
struct ReviewSpec {
    id: usize,
    revision: u64,
    interaction: usize,
    reviewer: usize,
    score: u8,
    reviewed: i64,
}

#[derive(Debug, Clone)]
enum EventTime {
    /// Seconds after `T0`.
    At(i64),
    /// Seconds after the `closed_at` (or, if `closing` is false or there is none,
    /// the `opened_at`) of an interaction sent earlier.
    Anchored {
        to: Index,
        closing: bool,
        offset: i64,
    },
}

#[derive(Debug, Clone)]
struct EventSpec {
    id: usize,
    revision: u64,
    customer: usize,
    time: EventTime,
}

#[derive(Debug, Clone)]
enum Spec {
    Interaction(InteractionSpec),
    Survey(SurveySpec),
    Review(ReviewSpec),
    Event(EventSpec),
}

#[derive(Debug, Clone)]
enum Op {
    /// A record built from scratch (its id may well exist already).
    New(Spec),
    /// The exact bytes of a record sent earlier.
    Resend(Index),
    /// A record sent earlier with some field groups (`mask`) replaced by fresh
    /// values and its revision moved by `revision_delta`.
    Revise {
        of: Index,
        fresh: Box<(InteractionSpec, SurveySpec, ReviewSpec, EventSpec)>,
        mask: u8,
        revision_delta: i64,
    },
}

/// A few instants (seconds after `T0`) that many times share, so that ticket
/// order, first responses, CSAT answers and customer contacts tie.
const SHARED_OFFSETS: [i64; 3] = [2 * DAY + 5 * HOUR, 2 * DAY + 5 * HOUR + 1, 4 * DAY];

/// Seconds after `T0`: mostly anywhere in the span, some on the edges of hours,
/// days and quarters, some packed into `HOT_QUARTER`, some shared, some exactly on
/// (or a second inside) a backlog age band of a backlog `as_of`.
fn offset_time() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => -HOUR..SPAN,
        2 => (0..10i64, 0..24i64, prop::sample::select(vec![-1i64, 0, 1, 899, 900, 3599]))
            .prop_map(|(day, hour, delta)| day * DAY + hour * HOUR + delta),
        2 => (HOT_QUARTER - T0 - 1)..=(HOT_QUARTER - T0 + QUARTER),
        1 => prop::sample::select(SHARED_OFFSETS.to_vec()),
        1 => (
            prop::sample::select(BACKLOG_AS_OF[1..].to_vec()),
            prop::sample::select(vec![0, HOUR, 4 * HOUR, DAY, 3 * DAY, 7 * DAY]),
            0..=1i64,
        )
            .prop_map(|(as_of, band, inside)| as_of - band + inside - T0),
    ]
}

/// When an interaction's first response came.
#[derive(Debug, Clone)]
enum ResponseAt {
    /// Seconds after `opened_at`.
    After(i64),
    /// At the shared instant `T0 + SHARED_OFFSETS[2]`, or at `opened_at` if later,
    /// so that interactions of one ticket tie for the first response.
    Shared,
}

/// Seconds, from 0 to 3 days.
fn duration() -> impl Strategy<Value = i64> {
    prop_oneof![
        1 => Just(0i64),
        3 => 1..HOUR,
        2 => HOUR..3 * DAY,
        1 => prop::sample::select(vec![1i64, 59, QUARTER, HOUR, 4 * HOUR, DAY, 3 * DAY]),
    ]
}

fn handle_time() -> impl Strategy<Value = i64> {
    prop_oneof![4 => duration(), 1 => Just(7 * DAY), 1 => 0..=7 * DAY]
}

fn revision() -> impl Strategy<Value = u64> {
    1..=4u64
}

fn interaction_spec() -> impl Strategy<Value = InteractionSpec> {
    (
        (
            0..INTERACTIONS,
            revision(),
            0..TICKETS,
            0..TEAMS,
            prop::option::weighted(0.75, 0..AGENTS),
            prop::option::weighted(0.75, 0..CUSTOMERS),
        ),
        (
            prop::sample::select(Channel::ALL.to_vec()),
            prop::sample::select(vec![Priority::Low, Priority::Normal, Priority::High, Priority::Urgent]),
            // Contacts often share an instant: ticket order and churn attribution tie.
            prop_oneof![5 => offset_time(), 1 => prop::sample::select(SHARED_OFFSETS.to_vec())],
            prop::option::weighted(
                0.7,
                prop_oneof![4 => duration().prop_map(ResponseAt::After), 1 => Just(ResponseAt::Shared)],
            ),
            prop::option::weighted(0.75, duration()),
            prop::bool::weighted(0.6),
        ),
        (
            prop::option::weighted(0.7, handle_time()),
            prop::sample::subsequence(vec!["billing", "login", "refund"], 0..=2),
            prop::sample::select(vec![
                SocialKind::Mention,
                SocialKind::Complaint,
                SocialKind::QuestionTechnical,
                SocialKind::QuestionAccount,
                SocialKind::Praise,
            ]),
            prop::sample::select(vec![-1.0, -0.5, -0.3, -0.2999, 0.0, 0.4, 1.0]),
        ),
    )
        .prop_map(
            |(
                (id, revision, ticket, team, agent, customer),
                (channel, priority, opened, first_response, closed, resolved),
                (handle, tags, social_kind, sentiment),
            )| InteractionSpec {
                id,
                revision,
                ticket,
                team,
                agent,
                customer,
                channel,
                priority,
                opened,
                first_response,
                closed,
                resolved,
                handle,
                tags,
                social_kind,
                sentiment,
            },
        )
}

fn survey_spec() -> impl Strategy<Value = SurveySpec> {
    (
        0..SURVEYS,
        revision(),
        0..=INTERACTIONS,
        prop::sample::select(vec![
            SurveyKind::Csat,
            SurveyKind::Csat,
            SurveyKind::Ces,
            SurveyKind::Nps,
        ]),
        any::<u8>(),
        // Answers often share an instant, so that the ticket's CSAT ties.
        prop_oneof![3 => offset_time(), 1 => Just(SHARED_OFFSETS[0])],
        prop::sample::select(vec!["", "quick and kind", "slow"]),
    )
        .prop_map(
            |(id, revision, interaction, kind, score_seed, submitted, comment)| SurveySpec {
                id,
                revision,
                interaction,
                kind,
                score_seed,
                submitted,
                comment,
            },
        )
}

fn review_spec() -> impl Strategy<Value = ReviewSpec> {
    (
        0..REVIEWS,
        revision(),
        0..=INTERACTIONS,
        0..2usize,
        prop_oneof![0..=100u8, prop::sample::select(vec![0u8, 100])],
        offset_time(),
    )
        .prop_map(
            |(id, revision, interaction, reviewer, score, reviewed)| ReviewSpec {
                id,
                revision,
                interaction,
                reviewer,
                score,
                reviewed,
            },
        )
}

fn event_spec() -> impl Strategy<Value = EventSpec> {
    let time = prop_oneof![
        2 => (-HOUR..SPAN + 40 * DAY).prop_map(EventTime::At),
        2 => (
            any::<Index>(),
            prop::sample::select(vec![
                -1i64,
                0,
                1,
                POST_CONTACT_CHURN - 1,
                POST_CONTACT_CHURN,
                POST_CONTACT_CHURN + 1,
            ]),
        )
            .prop_map(|(to, offset)| EventTime::Anchored { to, closing: true, offset }),
        1 => (any::<Index>(), -1i64..=1)
            .prop_map(|(to, offset)| EventTime::Anchored { to, closing: false, offset }),
    ];
    (0..EVENTS, revision(), 0..CUSTOMERS, time).prop_map(|(id, revision, customer, time)| {
        EventSpec {
            id,
            revision,
            customer,
            time,
        }
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => interaction_spec().prop_map(|s| Op::New(Spec::Interaction(s))),
        4 => survey_spec().prop_map(|s| Op::New(Spec::Survey(s))),
        1 => review_spec().prop_map(|s| Op::New(Spec::Review(s))),
        2 => event_spec().prop_map(|s| Op::New(Spec::Event(s))),
        2 => any::<Index>().prop_map(Op::Resend),
        4 => (
            any::<Index>(),
            (interaction_spec(), survey_spec(), review_spec(), event_spec()),
            any::<u8>(),
            prop::sample::select(vec![-1i64, 0, 1, 1, 2]),
        )
            .prop_map(|(of, fresh, mask, revision_delta)| Op::Revise {
                of,
                fresh: Box::new(fresh),
                mask,
                revision_delta,
            }),
    ]
}

fn build_interaction(spec: &InteractionSpec) -> Interaction {
    let opened = T0 + spec.opened;
    let closed_at = spec.closed.map(|d| at(opened + d));
    Interaction {
        interaction_id: interaction_id(spec.id),
        revision: spec.revision,
        ticket_id: id(format!("ticket-{}", spec.ticket)),
        team_id: team_id(spec.team),
        agent_id: spec.agent.map(agent_id),
        customer_id: spec.customer.map(customer_id),
        channel: spec.channel,
        priority: spec.priority,
        opened_at: at(opened),
        first_response_at: spec.first_response.as_ref().map(|response| match response {
            ResponseAt::After(d) => at(opened + d),
            ResponseAt::Shared => at(opened.max(T0 + SHARED_OFFSETS[2])),
        }),
        closed_at,
        handle_time_nanos: spec.handle.map(|seconds| seconds * NANOS),
        resolved: spec.resolved && closed_at.is_some(),
        tags: spec.tags.iter().map(|t| t.to_string()).collect(),
        // Social facts exactly on SOCIAL interactions (see the brief: both readings
        // of "mentions" then agree).
        social: (spec.channel == Channel::Social).then_some(SocialFacts {
            kind: spec.social_kind,
            sentiment: spec.sentiment,
        }),
    }
}

fn build_survey(spec: &SurveySpec) -> SurveyResponse {
    let (low, high) = match spec.kind {
        SurveyKind::Csat => (1u8, 5u8),
        SurveyKind::Ces => (1, 7),
        SurveyKind::Nps => (0, 10),
    };
    SurveyResponse {
        response_id: id(format!("survey-{}", spec.id)),
        revision: spec.revision,
        interaction_id: interaction_id(spec.interaction),
        kind: spec.kind,
        score: low + spec.score_seed % (high - low + 1),
        submitted_at: at(T0 + spec.submitted),
        comment: spec.comment.to_owned(),
    }
}

fn build_review(spec: &ReviewSpec) -> QualityReview {
    QualityReview {
        review_id: id(format!("review-{}", spec.id)),
        revision: spec.revision,
        interaction_id: interaction_id(spec.interaction),
        reviewer_id: id(format!("reviewer-{}", spec.reviewer)),
        score: spec.score,
        reviewed_at: at(T0 + spec.reviewed),
    }
}

/// An anchored event takes its customer from the interaction it is anchored to
/// (when it has one), and prefers resolving interactions when anchored to a closing.
fn build_event(spec: &EventSpec, sent: &[Record]) -> CustomerEvent {
    let mut customer = customer_id(spec.customer);
    let occurred = match &spec.time {
        EventTime::At(offset) => at(T0 + offset),
        EventTime::Anchored {
            to,
            closing,
            offset,
        } => {
            let earlier: Vec<&Interaction> = sent
                .iter()
                .filter_map(|r| match r {
                    Record::Interaction(i) => Some(i),
                    _ => None,
                })
                .collect();
            let resolving: Vec<&Interaction> =
                earlier.iter().copied().filter(|i| i.resolved).collect();
            let candidates = if *closing && !resolving.is_empty() {
                resolving
            } else {
                earlier
            };
            let anchor = if candidates.is_empty() {
                at(T0)
            } else {
                let interaction = candidates[to.index(candidates.len())];
                if let Some(anchor_customer) = &interaction.customer_id {
                    customer = anchor_customer.clone();
                }
                match (closing, interaction.closed_at) {
                    (true, Some(closed)) => closed,
                    _ => interaction.opened_at,
                }
            };
            Instant(anchor.0 + offset * NANOS)
        }
    };
    CustomerEvent {
        event_id: id(format!("event-{}", spec.id)),
        revision: spec.revision,
        customer_id: customer,
        kind: CustomerEventKind::Churned,
        occurred_at: occurred,
    }
}

fn build(spec: &Spec, sent: &[Record]) -> Record {
    match spec {
        Spec::Interaction(s) => Record::Interaction(build_interaction(s)),
        Spec::Survey(s) => Record::SurveyResponse(build_survey(s)),
        Spec::Review(s) => Record::QualityReview(build_review(s)),
        Spec::Event(s) => Record::CustomerEvent(build_event(s, sent)),
    }
}

fn moved_revision(revision: u64, delta: i64) -> u64 {
    (revision as i64 + delta).max(0) as u64
}

/// A revision of `old`: the field groups selected by `mask` come from `fresh`.
fn revise(
    old: &Record,
    fresh: &(InteractionSpec, SurveySpec, ReviewSpec, EventSpec),
    mask: u8,
    delta: i64,
    sent: &[Record],
) -> Record {
    let bit = |n: u8| mask & (1 << n) != 0;
    match old {
        Record::Interaction(old) => {
            let new = build_interaction(&fresh.0);
            let mut revised = old.clone();
            revised.revision = moved_revision(old.revision, delta);
            if bit(0) {
                revised.ticket_id = new.ticket_id;
            }
            if bit(1) {
                revised.team_id = new.team_id;
                revised.agent_id = new.agent_id;
            }
            if bit(2) {
                revised.customer_id = new.customer_id;
            }
            if bit(3) {
                revised.channel = new.channel;
                revised.social = new.social;
            }
            if bit(4) {
                revised.opened_at = new.opened_at;
                revised.first_response_at = new.first_response_at;
                revised.closed_at = new.closed_at;
                revised.resolved = new.resolved;
            }
            if bit(5) {
                revised.priority = new.priority;
                revised.handle_time_nanos = new.handle_time_nanos;
                revised.tags = new.tags;
            }
            if bit(6) {
                // Toggle resolution alone (keeping the times valid).
                revised.resolved = !revised.resolved && revised.closed_at.is_some();
            }
            Record::Interaction(revised)
        }
        Record::SurveyResponse(old) => {
            let new = build_survey(&fresh.1);
            let mut revised = old.clone();
            revised.revision = moved_revision(old.revision, delta);
            if bit(0) {
                revised.interaction_id = new.interaction_id;
            }
            if bit(1) {
                revised.kind = new.kind;
                revised.score = new.score;
            }
            if bit(2) {
                revised.submitted_at = new.submitted_at;
            }
            if bit(3) {
                revised.comment = new.comment;
            }
            Record::SurveyResponse(revised)
        }
        Record::QualityReview(old) => {
            let new = build_review(&fresh.2);
            let mut revised = old.clone();
            revised.revision = moved_revision(old.revision, delta);
            if bit(0) {
                revised.interaction_id = new.interaction_id;
            }
            if bit(1) {
                revised.score = new.score;
                revised.reviewer_id = new.reviewer_id;
            }
            if bit(2) {
                revised.reviewed_at = new.reviewed_at;
            }
            Record::QualityReview(revised)
        }
        Record::CustomerEvent(old) => {
            let new = build_event(&fresh.3, sent);
            let mut revised = old.clone();
            revised.revision = moved_revision(old.revision, delta);
            if bit(0) {
                revised.customer_id = new.customer_id;
            }
            if bit(1) {
                revised.occurred_at = new.occurred_at;
            }
            Record::CustomerEvent(revised)
        }
    }
}

fn materialize(ops: &[Op]) -> Vec<Record> {
    let mut sent: Vec<Record> = Vec::new();
    for op in ops {
        let record = match op {
            Op::New(spec) => build(spec, &sent),
            Op::Resend(which) if !sent.is_empty() => sent[which.index(sent.len())].clone(),
            Op::Revise {
                of,
                fresh,
                mask,
                revision_delta,
            } if !sent.is_empty() => revise(
                &sent[of.index(sent.len())],
                fresh,
                *mask,
                *revision_delta,
                &sent,
            ),
            Op::Resend(_) | Op::Revise { .. } => continue,
        };
        sent.push(record);
    }
    sent
}

/// How the test damages one stored aggregate after a run.
#[derive(Debug, Clone)]
enum Corruption {
    /// A valid encoding of a different aggregate (of the n-th stored, cyclically).
    Recount(usize),
    /// One flipped byte (fails its checksum).
    FlipByte(usize),
    /// The aggregate is gone.
    Delete(usize),
    /// An aggregate for a scope that never had a fact.
    Plant,
}

fn corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        2 => any::<usize>().prop_map(Corruption::Recount),
        1 => any::<usize>().prop_map(Corruption::FlipByte),
        1 => any::<usize>().prop_map(Corruption::Delete),
        1 => Just(Corruption::Plant),
    ]
}

/// One generated run.
#[derive(Debug, Clone)]
struct Case {
    records: Vec<Record>,
    batch_sizes: Vec<usize>,
    /// A random window, besides the fixed ones.
    random_window: Window,
    corruption: Corruption,
    /// The store is closed and reopened after this many records.
    restart_after: usize,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(op(), 1..120),
        prop::collection::vec(1..=20usize, 1..8),
        (-4 * 96i64..14 * 96, 1..=40 * 96i64),
        corruption(),
        any::<Index>(),
    )
        .prop_map(|(ops, batch_sizes, (start, length), corruption, restart)| {
            let records = materialize(&ops);
            Case {
                restart_after: restart.index(records.len() + 1),
                records,
                batch_sizes,
                random_window: window(T0 + start * QUARTER, T0 + (start + length) * QUARTER),
                corruption,
            }
        })
}

fn window(from: i64, to: i64) -> Window {
    Window::new(from, to).expect("aligned window")
}

// ---------------------------------------------------------------------------
// The model.

/// The outcome SPEC §4 prescribes for a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    Created,
    Updated,
    Duplicate,
    Stale,
    AlreadyExists,
}

/// The latest revision of every raw record, by id.
#[derive(Debug, Default)]
struct Model {
    interactions: BTreeMap<Id, Interaction>,
    surveys: BTreeMap<Id, SurveyResponse>,
    reviews: BTreeMap<Id, QualityReview>,
    events: BTreeMap<Id, CustomerEvent>,
}

fn upsert<T: Clone + PartialEq>(
    records: &mut BTreeMap<Id, T>,
    id: &Id,
    new: &T,
    revision: fn(&T) -> u64,
) -> Expected {
    let expected = match records.get(id) {
        None => Expected::Created,
        Some(old) if revision(new) > revision(old) => Expected::Updated,
        Some(old) if revision(new) < revision(old) => Expected::Stale,
        Some(old) if old == new => Expected::Duplicate,
        Some(_) => Expected::AlreadyExists,
    };
    if matches!(expected, Expected::Created | Expected::Updated) {
        records.insert(id.clone(), new.clone());
    }
    expected
}

impl Model {
    fn apply(&mut self, record: &Record) -> Expected {
        match record {
            Record::Interaction(r) => {
                upsert(&mut self.interactions, &r.interaction_id, r, |r| r.revision)
            }
            Record::SurveyResponse(r) => {
                upsert(&mut self.surveys, &r.response_id, r, |r| r.revision)
            }
            Record::QualityReview(r) => upsert(&mut self.reviews, &r.review_id, r, |r| r.revision),
            Record::CustomerEvent(r) => upsert(&mut self.events, &r.event_id, r, |r| r.revision),
        }
    }
}

/// SPEC §2, derived by hand for one ticket.
#[derive(Debug)]
struct TicketState<'a> {
    /// By `opened_at`, ties by `interaction_id`.
    interactions: Vec<&'a Interaction>,
    created_at: Instant,
    /// The earliest `first_response_at` and the interaction holding it (the first
    /// in ticket order on ties).
    first_response: Option<(Instant, &'a Interaction)>,
    resolved_at: Option<Instant>,
    reopened: bool,
    customer: Option<&'a Id>,
    /// The latest-submitted CSAT answer on any of its interactions (ties: response id).
    csat: Option<&'a SurveyResponse>,
    /// The deadlines of its SLA targets (`None`: no target): the first-response
    /// target of `first_response_target_of()`, the resolution target of the
    /// latest interaction.
    first_response_deadline: Option<Instant>,
    resolution_deadline: Option<Instant>,
    /// In breach of its SLA at every instant after this one (`None`: never).
    sla_breached_after: Option<Instant>,
}

impl<'a> TicketState<'a> {
    fn first(&self) -> &'a Interaction {
        self.interactions[0]
    }

    fn latest(&self) -> &'a Interaction {
        self.interactions[self.interactions.len() - 1]
    }

    /// Whose first-response target applies: the holder of the first response,
    /// or, while there is none, the latest interaction.
    fn first_response_target_of(&self) -> &'a Interaction {
        self.first_response
            .map_or(self.latest(), |(_, holder)| holder)
    }
}

fn tickets(model: &Model) -> Vec<TicketState<'_>> {
    let mut by_ticket: BTreeMap<&Id, Vec<&Interaction>> = BTreeMap::new();
    for interaction in model.interactions.values() {
        by_ticket
            .entry(&interaction.ticket_id)
            .or_default()
            .push(interaction);
    }
    by_ticket
        .into_values()
        .map(|mut interactions| {
            interactions.sort_by(|a, b| {
                (a.opened_at, &a.interaction_id).cmp(&(b.opened_at, &b.interaction_id))
            });
            let first = interactions[0];
            let latest = interactions[interactions.len() - 1];
            let mut first_response: Option<(Instant, &Interaction)> = None;
            for &interaction in &interactions {
                if let Some(responded) = interaction.first_response_at {
                    if first_response.is_none_or(|(earliest, _)| responded < earliest) {
                        first_response = Some((responded, interaction));
                    }
                }
            }
            let resolved_at = if latest.resolved {
                Some(latest.closed_at.expect("resolved interactions are closed"))
            } else {
                None
            };
            let reopened = interactions[..interactions.len() - 1]
                .iter()
                .any(|i| i.resolved);
            let customer = latest.customer_id.as_ref().or(first.customer_id.as_ref());
            let mut csat: Option<&SurveyResponse> = None;
            for survey in model.surveys.values() {
                let on_this_ticket = interactions
                    .iter()
                    .any(|i| i.interaction_id == survey.interaction_id);
                if survey.kind == SurveyKind::Csat && on_this_ticket {
                    let later = csat.is_none_or(|c| {
                        (survey.submitted_at, &survey.response_id)
                            > (c.submitted_at, &c.response_id)
                    });
                    if later {
                        csat = Some(survey);
                    }
                }
            }
            let mut ticket = TicketState {
                created_at: first.opened_at,
                interactions,
                first_response,
                resolved_at,
                reopened,
                customer,
                csat,
                first_response_deadline: None,
                resolution_deadline: None,
                sla_breached_after: None,
            };
            let target_of = ticket.first_response_target_of();
            ticket.first_response_deadline =
                model_deadline(target_of, SlaMetric::FirstResponse, ticket.created_at);
            ticket.resolution_deadline =
                model_deadline(latest, SlaMetric::Resolution, ticket.created_at);
            ticket.sla_breached_after = model_breach_moment(&ticket);
            ticket
        })
        .collect()
}

/// Whether an interaction's facts count in `scope` (the agent scope only when it
/// has an agent; a tag scope when any interaction of its ticket has the tag).
fn in_scope(model: &Model, scope: &Scope, interaction: &Interaction) -> bool {
    let ticket_has = |tag: &String| {
        model
            .interactions
            .values()
            .any(|i| i.ticket_id == interaction.ticket_id && i.tags.contains(tag))
    };
    match scope {
        Scope::Organization => true,
        Scope::Team(team) => &interaction.team_id == team,
        Scope::Agent(agent) => interaction.agent_id.as_ref() == Some(agent),
        Scope::Channel(channel) => interaction.channel == *channel,
        Scope::TeamChannel(team, channel) => {
            &interaction.team_id == team && interaction.channel == *channel
        }
        Scope::Tag(tag) => ticket_has(tag),
        Scope::TeamTag(team, tag) => &interaction.team_id == team && ticket_has(tag),
    }
}

/// Whether an interaction's facts count in the union of `scopes`.
fn in_any(model: &Model, scopes: &[Scope], interaction: &Interaction) -> bool {
    scopes
        .iter()
        .any(|scope| in_scope(model, scope, interaction))
}

// ---------------------------------------------------------------------------
// Business calendars: team 0 works office hours in New York with a holiday,
// team 1 a night shift and a Saturday in Kolkata; the other teams have none.
// Set before the first write and made to apply to all of history by a rebuild.

/// (zone, shifts per weekday from Monday as (start, end) minutes, holidays).
type ModelCalendar = (Tz, [Vec<(u16, u16)>; 7], Vec<NaiveDate>);

fn model_calendar(team: &Id) -> Option<ModelCalendar> {
    let office = vec![(9 * 60, 17 * 60)];
    if team == &team_id(0) {
        let mut week: [Vec<(u16, u16)>; 7] = Default::default();
        for day in week.iter_mut().take(5) {
            *day = office.clone();
        }
        Some((
            chrono_tz::America::New_York,
            week,
            vec![NaiveDate::from_ymd_opt(2026, 1, 6).unwrap()],
        ))
    } else if team == &team_id(1) {
        let mut week: [Vec<(u16, u16)>; 7] = std::array::from_fn(|_| vec![(22 * 60, 6 * 60)]);
        week[5].push((10 * 60, 14 * 60 + 30));
        Some((chrono_tz::Asia::Kolkata, week, vec![]))
    } else {
        None
    }
}

fn store_calendar((zone, week, holidays): ModelCalendar) -> Calendar {
    Calendar::new(
        zone,
        week.map(|day| {
            day.into_iter()
                .map(|(start, end)| Shift { start, end })
                .collect()
        }),
        holidays.into_iter().collect(),
    )
    .expect("a valid calendar")
}

/// Whether the UTC quarter-hour starting at `quarter_start` (nanos) is worked:
/// its local clock time is in a shift of its weekday (or in the overnight part
/// of the day before's) and its local date is not a holiday.
fn worked_quarter((zone, week, holidays): &ModelCalendar, quarter_start: i64) -> bool {
    let local = zone.timestamp_nanos(quarter_start).naive_local();
    let date = local.date();
    let minute = (local.hour() * 60 + local.minute()) as u16;
    let weekday = |d: NaiveDate| d.weekday().num_days_from_monday() as usize;
    let in_today = week[weekday(date)].iter().any(|&(start, end)| {
        if end <= start {
            minute >= start
        } else {
            start <= minute && minute < end
        }
    });
    let from_yesterday = week[weekday(date.pred_opt().unwrap())]
        .iter()
        .any(|&(start, end)| end <= start && minute < end);
    !holidays.contains(&date) && (in_today || from_yesterday)
}

/// Working time in [from, to) by walking UTC quarter-hours.
fn model_business_nanos(team: &Id, from: Instant, to: Instant) -> Option<i64> {
    let calendar = model_calendar(team)?;
    let quarter = QUARTER * NANOS;
    let mut total = 0;
    let mut q = from.0.div_euclid(quarter) * quarter;
    while q < to.0 {
        if worked_quarter(&calendar, q) {
            total += (q + quarter).min(to.0) - q.max(from.0);
        }
        q += quarter;
    }
    Some(total)
}

// ---------------------------------------------------------------------------
// SLA policies: team 0 (office hours) has business- and calendar-time targets,
// among them one that a shift uses up exactly and one of zero; team 2 (no
// calendar) has business-time targets, which count every second, and
// calendar-time ones; team 1 (night shift) has none. Each team leaves some
// priority without a target. Set with the calendars, and like them made to
// apply to all of history by a rebuild.

/// (priority, metric, target in seconds, clock).
type ModelTarget = (Priority, SlaMetric, i64, SlaClock);

fn model_sla_policy(team: &Id) -> Vec<ModelTarget> {
    use SlaClock::{Business, Calendar as Elapsed};
    use SlaMetric::{FirstResponse, Resolution};
    if team == &team_id(0) {
        vec![
            (Priority::Low, FirstResponse, 0, Business),
            (Priority::Normal, FirstResponse, 4 * HOUR, Business),
            (Priority::High, FirstResponse, HOUR, Elapsed),
            (Priority::Urgent, FirstResponse, HOUR, Business),
            (Priority::Normal, Resolution, DAY, Elapsed),
            // One whole office-hours shift.
            (Priority::Urgent, Resolution, 8 * HOUR, Business),
        ]
    } else if team == &team_id(2) {
        vec![
            (Priority::Normal, FirstResponse, QUARTER, Business),
            (Priority::High, FirstResponse, 0, Elapsed),
            (Priority::Low, Resolution, 4 * HOUR, Elapsed),
            (Priority::High, Resolution, HOUR, Elapsed),
            (Priority::Urgent, Resolution, 3 * DAY, Business),
        ]
    } else {
        Vec::new()
    }
}

fn store_sla_policy(targets: Vec<ModelTarget>) -> SlaPolicy {
    SlaPolicy::new(
        targets
            .into_iter()
            .map(|(priority, metric, seconds, clock)| SlaRule {
                priority,
                metric,
                within_nanos: seconds * NANOS,
                clock,
            }),
    )
}

/// The target (nanos, clock) for `metric` of the team and priority of `by`.
fn model_target(by: &Interaction, metric: SlaMetric) -> Option<(i64, SlaClock)> {
    model_sla_policy(&by.team_id)
        .into_iter()
        .find(|&(priority, m, _, _)| priority == by.priority && m == metric)
        .map(|(_, _, seconds, clock)| (seconds * NANOS, clock))
}

/// The last instant at which a ticket created at `created_at` still meets the
/// target for `metric` of the team and priority of `by`. Calendar time: `within`
/// after creation. Business time by a calendar: the latest instant up to which
/// no more than `within` of working time has passed — so a target used up at the
/// end of a shift, or one of zero outside working hours, runs until the next
/// shift starts. Found by walking working quarter-hours from `created_at`.
fn model_deadline(by: &Interaction, metric: SlaMetric, created_at: Instant) -> Option<Instant> {
    let (within, clock) = model_target(by, metric)?;
    let calendar = match clock {
        SlaClock::Business => model_calendar(&by.team_id),
        SlaClock::Calendar => None,
    };
    let Some(calendar) = calendar else {
        return Some(Instant(created_at.0.saturating_add(within)));
    };
    let quarter = QUARTER * NANOS;
    let mut left = within;
    let mut q = created_at.0.div_euclid(quarter) * quarter;
    // The model's calendars work every week: a year is far more than enough.
    for _ in 0..366 * 96 {
        if worked_quarter(&calendar, q) {
            let start = q.max(created_at.0);
            // Strictly less: once `left` is used up exactly, the deadline moves
            // on to the start of the next worked quarter.
            if left < q + quarter - start {
                return Some(Instant(start + left));
            }
            left -= q + quarter - start;
        }
        q += quarter;
    }
    panic!("no deadline within a year for {by:?}")
}

/// When a ticket falls into breach: the earliest deadline that passed without
/// the event it waits for — its first response (no longer awaited once the
/// ticket is resolved), or its resolution.
fn model_breach_moment(ticket: &TicketState<'_>) -> Option<Instant> {
    let first_response = match (ticket.first_response_deadline, ticket.first_response) {
        (Some(deadline), Some((responded, _))) => (responded > deadline).then_some(deadline),
        (Some(deadline), None) => ticket.resolved_at.is_none().then_some(deadline),
        (None, _) => None,
    };
    let resolution = match (ticket.resolution_deadline, ticket.resolved_at) {
        (Some(deadline), Some(resolved)) => (resolved > deadline).then_some(deadline),
        (Some(deadline), None) => Some(deadline),
        (None, _) => None,
    };
    [first_response, resolution].into_iter().flatten().min()
}

fn in_window(window: Window, instant: Instant) -> bool {
    let seconds = instant.0.div_euclid(NANOS);
    window.from() <= seconds && seconds < window.to()
}

fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

/// Nearest rank: the value at rank ⌈q·n⌉ (1-based) of the sorted values, with
/// q in per mille so that the rank is computed exactly.
fn nearest_rank(sorted: &[i64], per_mille: usize) -> f64 {
    let rank = (per_mille * sorted.len()).div_ceil(1000).max(1);
    sorted[rank - 1] as f64 / NANOS as f64
}

fn durations(mut nanos: Vec<i64>) -> Option<DurationSummary> {
    if nanos.is_empty() {
        return None;
    }
    nanos.sort_unstable();
    let sum: i128 = nanos.iter().map(|&n| i128::from(n)).sum();
    Some(DurationSummary {
        count: nanos.len() as u64,
        mean_seconds: sum as f64 / nanos.len() as f64 / NANOS as f64,
        p50_seconds: nearest_rank(&nanos, 500),
        p90_seconds: nearest_rank(&nanos, 900),
        p99_seconds: nearest_rank(&nanos, 990),
    })
}

fn count(n: usize) -> u64 {
    n as u64
}

/// Met and missed targets; `None` when no event had a target.
fn sla_summary(outcomes: impl Iterator<Item = bool>) -> Option<SlaSummary> {
    let (mut achieved, mut breached) = (0, 0);
    for met in outcomes {
        if met {
            achieved += 1;
        } else {
            breached += 1;
        }
    }
    Some(SlaSummary {
        achieved,
        breached,
        achieved_percent: percent(achieved, achieved + breached)?,
    })
}

fn mean(scores: &[u8]) -> f64 {
    scores.iter().map(|&s| f64::from(s)).sum::<f64>() / scores.len() as f64
}

fn score_counts(scores: &[u8], range: std::ops::RangeInclusive<u8>) -> Vec<u64> {
    range
        .map(|score| count(scores.iter().filter(|&&s| s == score).count()))
        .collect()
}

/// SPEC §3 for the union of `scope` (one scope, or several teams) over one
/// window, by iteration over the raw records.
fn model_metrics(
    model: &Model,
    tickets: &[TicketState<'_>],
    scope: &[Scope],
    window: Window,
) -> Metrics {
    let within = |instant: Instant| in_window(window, instant);

    let created: Vec<&TicketState<'_>> = tickets
        .iter()
        .filter(|t| within(t.created_at) && in_any(model, scope, t.first()))
        .collect();
    let resolved: Vec<(&TicketState<'_>, Instant)> = tickets
        .iter()
        .filter_map(|t| t.resolved_at.map(|resolved_at| (t, resolved_at)))
        .filter(|(t, resolved_at)| within(*resolved_at) && in_any(model, scope, t.latest()))
        .collect();
    let tickets_created = count(created.len());
    let tickets_created_resolved_now =
        count(created.iter().filter(|t| t.resolved_at.is_some()).count());
    let tickets_resolved = count(resolved.len());
    let first_contact_resolved = count(
        resolved
            .iter()
            .filter(|(t, _)| t.interactions.len() == 1)
            .count(),
    );
    let reopened = count(resolved.iter().filter(|(t, _)| t.reopened).count());

    let first_response_nanos = tickets
        .iter()
        .filter_map(|t| {
            t.first_response
                .map(|(responded, holder)| (t, responded, holder))
        })
        .filter(|(_, responded, holder)| within(*responded) && in_any(model, scope, holder))
        .map(|(t, responded, _)| responded.0 - t.created_at.0)
        .collect();
    let first_response_business = tickets
        .iter()
        .filter_map(|t| {
            t.first_response
                .map(|(responded, holder)| (t, responded, holder))
        })
        .filter(|(_, responded, holder)| within(*responded) && in_any(model, scope, holder))
        .filter_map(|(t, responded, holder)| {
            model_business_nanos(&holder.team_id, t.created_at, responded)
        })
        .collect();
    let resolution_nanos = resolved
        .iter()
        .map(|(t, resolved_at)| resolved_at.0 - t.created_at.0)
        .collect();
    let resolution_business = resolved
        .iter()
        .filter_map(|(t, resolved_at)| {
            model_business_nanos(&t.latest().team_id, t.created_at, *resolved_at)
        })
        .collect();
    // SLA outcomes go with the first-response and resolution facts: met when
    // the event came at or before its target's deadline.
    let first_response_sla = sla_summary(
        tickets
            .iter()
            .filter_map(|t| {
                t.first_response
                    .map(|(responded, holder)| (t, responded, holder))
            })
            .filter(|(_, responded, holder)| within(*responded) && in_any(model, scope, holder))
            .filter_map(|(t, responded, _)| t.first_response_deadline.map(|d| responded <= d)),
    );
    let resolution_sla = sla_summary(
        resolved
            .iter()
            .filter_map(|(t, resolved_at)| t.resolution_deadline.map(|d| *resolved_at <= d)),
    );

    let opened: Vec<&Interaction> = model
        .interactions
        .values()
        .filter(|i| within(i.opened_at) && in_any(model, scope, i))
        .collect();
    let handle_nanos = opened.iter().filter_map(|i| i.handle_time_nanos).collect();
    let social: Vec<&SocialFacts> = opened.iter().filter_map(|i| i.social.as_ref()).collect();
    let social_count = |kind: SocialKind| count(social.iter().filter(|s| s.kind == kind).count());
    let mentions = count(social.len());
    let negative = count(
        social
            .iter()
            .filter(|s| s.kind == SocialKind::Complaint || s.sentiment < -0.3)
            .count(),
    );

    // Feedback counts only once its interaction is known, in that interaction's scopes.
    let rated_in_scope = |interaction: &Id| {
        model
            .interactions
            .get(interaction)
            .is_some_and(|i| in_any(model, scope, i))
    };
    let answers = |kind: SurveyKind| -> Vec<u8> {
        model
            .surveys
            .values()
            .filter(|s| {
                s.kind == kind && within(s.submitted_at) && rated_in_scope(&s.interaction_id)
            })
            .map(|s| s.score)
            .collect()
    };
    let csat_scores = answers(SurveyKind::Csat);
    let ces_scores = answers(SurveyKind::Ces);
    let nps_scores = answers(SurveyKind::Nps);
    let csat = (!csat_scores.is_empty()).then(|| {
        let satisfied = count(csat_scores.iter().filter(|&&s| s >= 4).count());
        CsatSummary {
            responses: count(csat_scores.len()),
            satisfied,
            satisfied_percent: satisfied as f64 * 100.0 / csat_scores.len() as f64,
            mean_score: mean(&csat_scores),
            score_counts: score_counts(&csat_scores, 1..=5),
        }
    });
    let ces = (!ces_scores.is_empty()).then(|| {
        let easy = count(ces_scores.iter().filter(|&&s| s >= 5).count());
        CesSummary {
            responses: count(ces_scores.len()),
            mean_score: mean(&ces_scores),
            easy,
            easy_percent: easy as f64 * 100.0 / ces_scores.len() as f64,
            score_counts: score_counts(&ces_scores, 1..=7),
        }
    });
    let nps = (!nps_scores.is_empty()).then(|| {
        let promoters = count(nps_scores.iter().filter(|&&s| s >= 9).count());
        let passives = count(nps_scores.iter().filter(|&&s| (7..=8).contains(&s)).count());
        let detractors = count(nps_scores.iter().filter(|&&s| s <= 6).count());
        NpsSummary {
            responses: count(nps_scores.len()),
            promoters,
            passives,
            detractors,
            score: (promoters as f64 - detractors as f64) * 100.0 / nps_scores.len() as f64,
        }
    });
    let review_scores: Vec<u8> = model
        .reviews
        .values()
        .filter(|r| within(r.reviewed_at) && rated_in_scope(&r.interaction_id))
        .map(|r| r.score)
        .collect();
    let quality = (!review_scores.is_empty()).then(|| QualitySummary {
        reviews: count(review_scores.len()),
        mean_score: mean(&review_scores),
    });

    // Churn events: the organisation counts every event; other scopes take the
    // customer's latest interaction opened at or before the event.
    let churn_events = count(
        model
            .events
            .values()
            .filter(|e| within(e.occurred_at))
            .filter(|e| {
                let latest_contact = model
                    .interactions
                    .values()
                    .filter(|i| {
                        i.customer_id.as_ref() == Some(&e.customer_id)
                            && i.opened_at <= e.occurred_at
                    })
                    .max_by(|a, b| {
                        (a.opened_at, &a.interaction_id).cmp(&(b.opened_at, &b.interaction_id))
                    });
                scope.contains(&Scope::Organization)
                    // A churn event belongs to the customer, not to a ticket: it
                    // counts in no tag scope.
                    || latest_contact.is_some_and(|i| {
                        scope.iter().any(|s| {
                            !matches!(s, Scope::Tag(_) | Scope::TeamTag(..))
                                && in_scope(model, s, i)
                        })
                    })
            })
            .count(),
    );
    // Post-contact churn: resolved tickets with a customer, churned iff a CHURNED
    // event of that customer lies in [resolved_at, resolved_at + 30 days].
    let mut post_contact = [(0u64, 0u64); 3]; // all, satisfied, unsatisfied: (tickets, churned)
    for (ticket, resolved_at) in &resolved {
        let Some(customer) = ticket.customer else {
            continue;
        };
        let churned = model.events.values().any(|e| {
            &e.customer_id == customer
                && e.occurred_at >= *resolved_at
                && e.occurred_at.0 <= resolved_at.0 + POST_CONTACT_CHURN * NANOS
        });
        let mut tally = |slot: usize| {
            post_contact[slot].0 += 1;
            post_contact[slot].1 += u64::from(churned);
        };
        tally(0);
        match ticket.csat.map(|s| s.score >= 4) {
            Some(true) => tally(1),
            Some(false) => tally(2),
            None => {}
        }
    }
    let [(with_customer, churned_after), (satisfied, satisfied_churned), (unsatisfied, unsatisfied_churned)] =
        post_contact;

    Metrics {
        first_response_sla,
        resolution_sla,
        tickets_created,
        interactions: count(opened.len()),
        tickets_resolved,
        tickets_created_resolved_now,
        resolution_rate_percent: percent(tickets_created_resolved_now, tickets_created),
        first_contact_resolved,
        fcr_rate_percent: percent(first_contact_resolved, tickets_resolved),
        reopened,
        reopen_rate_percent: percent(reopened, tickets_resolved),
        first_response_time: durations(first_response_nanos),
        resolution_time: durations(resolution_nanos),
        handle_time: durations(handle_nanos),
        first_response_business_time: durations(first_response_business),
        resolution_business_time: durations(resolution_business),
        survey_response_rate_percent: percent(count(csat_scores.len()), tickets_resolved),
        csat,
        ces,
        nps,
        quality,
        social: SocialSummary {
            mentions,
            negative,
            negative_percent: percent(negative, mentions),
            technical_questions: social_count(SocialKind::QuestionTechnical),
            account_questions: social_count(SocialKind::QuestionAccount),
            praise: social_count(SocialKind::Praise),
        },
        churn: ChurnSummary {
            churn_events,
            resolved_tickets_with_customer: with_customer,
            churned_after_resolution: churned_after,
            post_contact_churn_percent: percent(churned_after, with_customer),
            satisfied_resolved_tickets: satisfied,
            satisfied_churned,
            satisfied_churn_percent: percent(satisfied_churned, satisfied),
            unsatisfied_resolved_tickets: unsatisfied,
            unsatisfied_churned,
            unsatisfied_churn_percent: percent(unsatisfied_churned, unsatisfied),
        },
    }
}

/// The drill-down filters the model checks, each set on its own and a pair.
fn drilldown_filters() -> Vec<(&'static str, TicketFilter)> {
    vec![
        ("all", TicketFilter::default()),
        (
            "frt above 30 min",
            TicketFilter {
                frt_above_nanos: Some(30 * 60 * NANOS),
                ..Default::default()
            },
        ),
        (
            "resolution above 2 h",
            TicketFilter {
                resolution_above_nanos: Some(2 * HOUR * NANOS),
                ..Default::default()
            },
        ),
        (
            "csat at most 3",
            TicketFilter {
                csat_at_most: Some(3),
                ..Default::default()
            },
        ),
        (
            "nps detractor",
            TicketFilter {
                nps_detractor: true,
                ..Default::default()
            },
        ),
        (
            "reopened and not first contact",
            TicketFilter {
                reopened: true,
                first_contact_resolved: Some(false),
                ..Default::default()
            },
        ),
        (
            "first contact resolved",
            TicketFilter {
                first_contact_resolved: Some(true),
                ..Default::default()
            },
        ),
        (
            "open older than a day",
            TicketFilter {
                open_older_than_nanos: Some(DAY * NANOS),
                ..Default::default()
            },
        ),
        (
            "sla breached",
            TicketFilter {
                sla_breached: true,
                ..Default::default()
            },
        ),
    ]
}

/// The latest-submitted answer of a kind on any of the ticket's interactions.
fn latest_answer(model: &Model, ticket: &TicketState<'_>, kind: SurveyKind) -> Option<u8> {
    model
        .surveys
        .values()
        .filter(|s| {
            s.kind == kind
                && ticket
                    .interactions
                    .iter()
                    .any(|i| i.interaction_id == s.interaction_id)
        })
        .max_by(|a, b| (a.submitted_at, &a.response_id).cmp(&(b.submitted_at, &b.response_id)))
        .map(|s| s.score)
}

/// Drill-down by hand: tickets with an interaction in the scopes, created in the
/// window, passing every set condition; newest first, ties by ticket id. Each as
/// (ticket, created, resolved, contacts, reopened, csat, nps, SLA breached after).
type ModelRow = (
    Id,
    Instant,
    Option<Instant>,
    u32,
    bool,
    Option<u8>,
    Option<u8>,
    Option<Instant>,
);

fn model_tickets(
    model: &Model,
    tickets: &[TicketState<'_>],
    scope: &[Scope],
    window: Window,
    filter: &TicketFilter,
    as_of: Instant,
) -> Vec<ModelRow> {
    let mut rows: Vec<ModelRow> = tickets
        .iter()
        .filter(|t| in_window(window, t.created_at))
        .filter(|t| t.interactions.iter().any(|i| in_any(model, scope, i)))
        .filter(|t| {
            let frt = t.first_response.map(|(at, _)| at.0 - t.created_at.0);
            let resolution = t.resolved_at.map(|at| at.0 - t.created_at.0);
            let csat = t.csat.map(|s| s.score);
            let nps = latest_answer(model, t, SurveyKind::Nps);
            let contacts = t.interactions.len();
            filter
                .frt_above_nanos
                .is_none_or(|b| frt.is_some_and(|f| f > b))
                && filter
                    .resolution_above_nanos
                    .is_none_or(|b| resolution.is_some_and(|r| r > b))
                && filter
                    .csat_at_most
                    .is_none_or(|m| csat.is_some_and(|c| c <= m))
                && (!filter.nps_detractor || nps.is_some_and(|n| n <= 6))
                && (!filter.reopened || t.reopened)
                && filter
                    .first_contact_resolved
                    .is_none_or(|w| t.resolved_at.is_some() && (contacts == 1) == w)
                && filter
                    .open_older_than_nanos
                    .is_none_or(|age| t.resolved_at.is_none() && as_of.0 - t.created_at.0 > age)
                && (!filter.sla_breached || t.sla_breached_after.is_some_and(|b| as_of > b))
        })
        .map(|t| {
            (
                t.latest().ticket_id.clone(),
                t.created_at,
                t.resolved_at,
                t.interactions.len() as u32,
                t.reopened,
                t.csat.map(|s| s.score),
                latest_answer(model, t, SurveyKind::Nps),
                t.sla_breached_after,
            )
        })
        .collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows
}

/// Open tickets of a scope (by their latest interaction) created at or before
/// `as_of`; those in breach at `as_of`, and those not yet but within the hour after.
fn model_backlog(
    model: &Model,
    tickets: &[TicketState<'_>],
    scope: &[Scope],
    as_of: Instant,
) -> BacklogSummary {
    let mut summary = BacklogSummary {
        as_of,
        open_tickets: 0,
        by_priority: [0; 4],
        by_age: [0; 6],
        oldest_age_seconds: None,
        sla_breaching: 0,
        sla_breaching_within_hour: 0,
    };
    let mut oldest: Option<i64> = None;
    for ticket in tickets {
        if ticket.resolved_at.is_some()
            || !in_any(model, scope, ticket.latest())
            || ticket.created_at > as_of
        {
            continue;
        }
        summary.open_tickets += 1;
        summary.by_priority[match ticket.latest().priority {
            Priority::Low => 0,
            Priority::Normal => 1,
            Priority::High => 2,
            Priority::Urgent => 3,
        }] += 1;
        let age = (as_of.0 - ticket.created_at.0) / NANOS;
        let band = match age {
            a if a < HOUR => 0,
            a if a < 4 * HOUR => 1,
            a if a < DAY => 2,
            a if a < 3 * DAY => 3,
            a if a < 7 * DAY => 4,
            _ => 5,
        };
        summary.by_age[band] += 1;
        oldest = Some(oldest.map_or(age, |o| o.max(age)));
        if let Some(breached_after) = ticket.sla_breached_after {
            if as_of > breached_after {
                summary.sla_breaching += 1;
            } else if as_of.0 + HOUR * NANOS > breached_after.0 {
                summary.sla_breaching_within_hour += 1;
            }
        }
    }
    summary.oldest_age_seconds = oldest.map(|seconds| seconds as f64);
    summary
}

// ---------------------------------------------------------------------------
// Comparison: every field, by exhaustive destructuring (a new field fails to compile).

/// Differences between the model (`expected`) and the store (`actual`).
#[derive(Debug, Default)]
struct Diffs(Vec<String>);

impl Diffs {
    fn exact<T: PartialEq + Debug>(&mut self, name: &str, expected: &T, actual: &T) {
        if expected != actual {
            self.0
                .push(format!("{name}: model {expected:?}, store {actual:?}"));
        }
    }

    /// Counts and means are exact; a quotient may differ in its last bits only.
    fn float(&mut self, name: &str, expected: f64, actual: f64) {
        if (expected - actual).abs() > 1e-9 * expected.abs().max(1.0) {
            self.0
                .push(format!("{name}: model {expected}, store {actual}"));
        }
    }

    fn optional_float(&mut self, name: &str, expected: Option<f64>, actual: Option<f64>) {
        match (expected, actual) {
            (Some(e), Some(a)) => self.float(name, e, a),
            (None, None) => {}
            _ => self
                .0
                .push(format!("{name}: model {expected:?}, store {actual:?}")),
        }
    }

    /// SPEC §3: percentiles within 1% relative error of the nearest-rank value.
    fn percentile(&mut self, name: &str, exact: f64, approximate: f64) {
        if (approximate - exact).abs() > 0.01 * exact {
            self.0.push(format!(
                "{name}: model {exact}, store {approximate} (more than 1% off)"
            ));
        }
    }

    fn durations(
        &mut self,
        name: &str,
        expected: &Option<DurationSummary>,
        actual: &Option<DurationSummary>,
    ) {
        match (expected, actual) {
            (None, None) => {}
            (Some(e), Some(a)) => {
                let DurationSummary {
                    count,
                    mean_seconds,
                    p50_seconds,
                    p90_seconds,
                    p99_seconds,
                } = *e;
                self.exact(&format!("{name}.count"), &count, &a.count);
                self.float(&format!("{name}.mean"), mean_seconds, a.mean_seconds);
                self.percentile(&format!("{name}.p50"), p50_seconds, a.p50_seconds);
                self.percentile(&format!("{name}.p90"), p90_seconds, a.p90_seconds);
                self.percentile(&format!("{name}.p99"), p99_seconds, a.p99_seconds);
            }
            _ => self
                .0
                .push(format!("{name}: model {expected:?}, store {actual:?}")),
        }
    }

    fn both<'a, T: Debug>(
        &mut self,
        name: &str,
        expected: &'a Option<T>,
        actual: &'a Option<T>,
    ) -> Option<(&'a T, &'a T)> {
        match (expected, actual) {
            (Some(e), Some(a)) => Some((e, a)),
            (None, None) => None,
            _ => {
                self.0
                    .push(format!("{name}: model {expected:?}, store {actual:?}"));
                None
            }
        }
    }

    fn sla(&mut self, name: &str, expected: &Option<SlaSummary>, actual: &Option<SlaSummary>) {
        if let Some((e, a)) = self.both(name, expected, actual) {
            let SlaSummary {
                achieved,
                breached,
                achieved_percent,
            } = e;
            self.exact(&format!("{name}.achieved"), achieved, &a.achieved);
            self.exact(&format!("{name}.breached"), breached, &a.breached);
            self.float(
                &format!("{name}.achieved_percent"),
                *achieved_percent,
                a.achieved_percent,
            );
        }
    }

    fn metrics(&mut self, expected: &Metrics, actual: &Metrics) {
        let Metrics {
            tickets_created,
            interactions,
            tickets_resolved,
            tickets_created_resolved_now,
            resolution_rate_percent,
            first_contact_resolved,
            fcr_rate_percent,
            reopened,
            reopen_rate_percent,
            first_response_time,
            resolution_time,
            handle_time,
            first_response_business_time,
            resolution_business_time,
            first_response_sla,
            resolution_sla,
            csat,
            ces,
            nps,
            survey_response_rate_percent,
            quality,
            social,
            churn,
        } = expected;
        self.sla(
            "first_response_sla",
            first_response_sla,
            &actual.first_response_sla,
        );
        self.sla("resolution_sla", resolution_sla, &actual.resolution_sla);
        self.exact("tickets_created", tickets_created, &actual.tickets_created);
        self.exact("interactions", interactions, &actual.interactions);
        self.exact(
            "tickets_resolved",
            tickets_resolved,
            &actual.tickets_resolved,
        );
        self.exact(
            "tickets_created_resolved_now",
            tickets_created_resolved_now,
            &actual.tickets_created_resolved_now,
        );
        self.optional_float(
            "resolution_rate",
            *resolution_rate_percent,
            actual.resolution_rate_percent,
        );
        self.exact(
            "first_contact_resolved",
            first_contact_resolved,
            &actual.first_contact_resolved,
        );
        self.optional_float("fcr_rate", *fcr_rate_percent, actual.fcr_rate_percent);
        self.exact("reopened", reopened, &actual.reopened);
        self.optional_float(
            "reopen_rate",
            *reopen_rate_percent,
            actual.reopen_rate_percent,
        );
        self.durations("frt", first_response_time, &actual.first_response_time);
        self.durations("resolution_time", resolution_time, &actual.resolution_time);
        self.durations("handle_time", handle_time, &actual.handle_time);
        self.durations(
            "frt_business",
            first_response_business_time,
            &actual.first_response_business_time,
        );
        self.durations(
            "resolution_business",
            resolution_business_time,
            &actual.resolution_business_time,
        );
        if let Some((e, a)) = self.both("csat", csat, &actual.csat) {
            let CsatSummary {
                responses,
                satisfied,
                satisfied_percent,
                mean_score,
                score_counts,
            } = e;
            self.exact("csat.responses", responses, &a.responses);
            self.exact("csat.satisfied", satisfied, &a.satisfied);
            self.float(
                "csat.satisfied_percent",
                *satisfied_percent,
                a.satisfied_percent,
            );
            self.float("csat.mean", *mean_score, a.mean_score);
            self.exact("csat.score_counts", score_counts, &a.score_counts);
        }
        if let Some((e, a)) = self.both("ces", ces, &actual.ces) {
            let CesSummary {
                responses,
                mean_score,
                easy,
                easy_percent,
                score_counts,
            } = e;
            self.exact("ces.responses", responses, &a.responses);
            self.float("ces.mean", *mean_score, a.mean_score);
            self.exact("ces.easy", easy, &a.easy);
            self.float("ces.easy_percent", *easy_percent, a.easy_percent);
            self.exact("ces.score_counts", score_counts, &a.score_counts);
        }
        if let Some((e, a)) = self.both("nps", nps, &actual.nps) {
            let NpsSummary {
                responses,
                promoters,
                passives,
                detractors,
                score,
            } = e;
            self.exact("nps.responses", responses, &a.responses);
            self.exact("nps.promoters", promoters, &a.promoters);
            self.exact("nps.passives", passives, &a.passives);
            self.exact("nps.detractors", detractors, &a.detractors);
            self.float("nps.score", *score, a.score);
        }
        self.optional_float(
            "survey_response_rate",
            *survey_response_rate_percent,
            actual.survey_response_rate_percent,
        );
        if let Some((e, a)) = self.both("quality", quality, &actual.quality) {
            let QualitySummary {
                reviews,
                mean_score,
            } = e;
            self.exact("quality.reviews", reviews, &a.reviews);
            self.float("quality.mean", *mean_score, a.mean_score);
        }
        let SocialSummary {
            mentions,
            negative,
            negative_percent,
            technical_questions,
            account_questions,
            praise,
        } = social;
        let a = &actual.social;
        self.exact("social.mentions", mentions, &a.mentions);
        self.exact("social.negative", negative, &a.negative);
        self.optional_float(
            "social.negative_percent",
            *negative_percent,
            a.negative_percent,
        );
        self.exact(
            "social.technical_questions",
            technical_questions,
            &a.technical_questions,
        );
        self.exact(
            "social.account_questions",
            account_questions,
            &a.account_questions,
        );
        self.exact("social.praise", praise, &a.praise);
        let ChurnSummary {
            churn_events,
            resolved_tickets_with_customer,
            churned_after_resolution,
            post_contact_churn_percent,
            satisfied_resolved_tickets,
            satisfied_churned,
            satisfied_churn_percent,
            unsatisfied_resolved_tickets,
            unsatisfied_churned,
            unsatisfied_churn_percent,
        } = churn;
        let a = &actual.churn;
        self.exact("churn.churn_events", churn_events, &a.churn_events);
        self.exact(
            "churn.resolved_tickets_with_customer",
            resolved_tickets_with_customer,
            &a.resolved_tickets_with_customer,
        );
        self.exact(
            "churn.churned_after_resolution",
            churned_after_resolution,
            &a.churned_after_resolution,
        );
        self.optional_float(
            "churn.post_contact_percent",
            *post_contact_churn_percent,
            a.post_contact_churn_percent,
        );
        self.exact(
            "churn.satisfied_resolved_tickets",
            satisfied_resolved_tickets,
            &a.satisfied_resolved_tickets,
        );
        self.exact(
            "churn.satisfied_churned",
            satisfied_churned,
            &a.satisfied_churned,
        );
        self.optional_float(
            "churn.satisfied_percent",
            *satisfied_churn_percent,
            a.satisfied_churn_percent,
        );
        self.exact(
            "churn.unsatisfied_resolved_tickets",
            unsatisfied_resolved_tickets,
            &a.unsatisfied_resolved_tickets,
        );
        self.exact(
            "churn.unsatisfied_churned",
            unsatisfied_churned,
            &a.unsatisfied_churned,
        );
        self.optional_float(
            "churn.unsatisfied_percent",
            *unsatisfied_churn_percent,
            a.unsatisfied_churn_percent,
        );
    }

    fn backlog(&mut self, expected: &BacklogSummary, actual: &BacklogSummary) {
        let BacklogSummary {
            as_of,
            open_tickets,
            by_priority,
            by_age,
            oldest_age_seconds,
            sla_breaching,
            sla_breaching_within_hour,
        } = expected;
        self.exact(
            "backlog.sla_breaching",
            sla_breaching,
            &actual.sla_breaching,
        );
        self.exact(
            "backlog.sla_breaching_within_hour",
            sla_breaching_within_hour,
            &actual.sla_breaching_within_hour,
        );
        self.exact("backlog.as_of", as_of, &actual.as_of);
        self.exact("backlog.open_tickets", open_tickets, &actual.open_tickets);
        self.exact("backlog.by_priority", by_priority, &actual.by_priority);
        self.exact("backlog.by_age", by_age, &actual.by_age);
        self.optional_float(
            "backlog.oldest_age",
            *oldest_age_seconds,
            actual.oldest_age_seconds,
        );
    }
}

// ---------------------------------------------------------------------------
// Running a case against the store.

/// What the generated cases exercised, so that a generator that stops producing,
/// say, stale writes or post-contact churn fails loudly instead of passing vacuously.
#[derive(Debug, Default)]
struct Coverage(RefCell<BTreeMap<&'static str, u64>>);

impl Coverage {
    fn hit(&self, what: &'static str, when: bool) {
        if when {
            *self.0.borrow_mut().entry(what).or_default() += 1;
        }
    }

    /// Panics unless every one of `required` was hit.
    fn assert_covers(&self, required: &[&'static str]) {
        let seen = self.0.borrow();
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|what| !seen.contains_key(what))
            .collect();
        assert!(
            missing.is_empty(),
            "the generator never produced {missing:?}; saw {seen:#?}"
        );
    }
}

const REQUIRED_COVERAGE: [&str; 40] = [
    "business time both zero and positive",
    "team x tag scope with answers",
    "union of teams with tickets",
    "drill-down with rows",
    "outcome created",
    "outcome updated",
    "outcome duplicate",
    "outcome stale",
    "outcome already exists",
    "interaction moved to another ticket",
    "interaction moved to another team",
    "feedback moved to another interaction",
    "feedback counted after its interaction arrived",
    "feedback on an unknown interaction",
    "ticket spanning teams",
    "ticket reopened",
    "churn event before the customer's first contact",
    "churn attributed to a team",
    "post-contact churn",
    "resolved ticket with a customer that did not churn",
    "churn split: satisfied",
    "churn split: unsatisfied",
    "a scope is unknown",
    "open tickets in the backlog",
    "backlog ticket created after as_of",
    "single quarter window has data",
    "negative social mention",
    "corruption: recount",
    "corruption: plant",
    "sla: first response met",
    "sla: first response breached",
    "sla: resolution met",
    "sla: resolution breached",
    "sla: business-clock outcome met",
    "sla: business-clock outcome breached",
    "sla: business-clock outcome without a calendar",
    "sla: met in the off-hours after a business target ran out",
    "sla: open ticket already breaching",
    "sla: open ticket due within the hour",
    "sla: drill-down lists breached tickets",
];

/// Every scope that data can reach, plus a team and an agent that never appear
/// (and the 7 team × channel scopes of that team): those must be all zero / absent.
fn scopes() -> Vec<Scope> {
    let teams: Vec<Id> = (0..=TEAMS).map(team_id).collect();
    let mut scopes = vec![Scope::Organization];
    scopes.extend(teams.iter().cloned().map(Scope::Team));
    scopes.extend((0..=AGENTS).map(agent_id).map(Scope::Agent));
    scopes.extend(Channel::ALL.map(Scope::Channel));
    for team in &teams {
        scopes.extend(Channel::ALL.map(|channel| Scope::TeamChannel(team.clone(), channel)));
    }
    // The generator's tags, and one it never uses.
    for tag in ["billing", "login", "refund", "unused"] {
        scopes.push(Scope::Tag(tag.into()));
        scopes.extend(
            teams
                .iter()
                .map(|team| Scope::TeamTag(team.clone(), tag.into())),
        );
    }
    scopes
}

/// What reads are asked about: the store's selection and, independently, the
/// scopes whose union the model computes — every scope alone, and unions of
/// teams with and without a channel (a team outside the pool included).
fn subjects() -> Vec<(Selection, Vec<Scope>)> {
    let mut subjects: Vec<(Selection, Vec<Scope>)> = scopes()
        .into_iter()
        .map(|scope| (Selection::one(scope.clone()), vec![scope]))
        .collect();
    for members in [vec![0, 2], vec![TEAMS, 1, 0]] {
        let teams: Vec<Id> = members.into_iter().map(team_id).collect();
        subjects.push((
            Selection::teams(teams.clone(), None),
            teams.iter().cloned().map(Scope::Team).collect(),
        ));
        subjects.push((
            Selection::teams(teams.clone(), Some(Channel::Chat)),
            teams
                .iter()
                .map(|team| Scope::TeamChannel(team.clone(), Channel::Chat))
                .collect(),
        ));
    }
    subjects
}

/// Whole UTC months, December 2025 to February 2026: every generated fact.
fn full_span() -> Window {
    window(1_764_547_200, 1_772_323_200)
}

fn windows(random: Window) -> Vec<(&'static str, Window)> {
    let cut = window(T0 + HOUR + 15 * 60, T0 + 3 * DAY + 13 * HOUR + 45 * 60);
    vec![
        ("full span", full_span()),
        ("cut through hours and days", cut),
        ("single quarter", window(HOT_QUARTER, HOT_QUARTER + QUARTER)),
        (
            "hour around the quarter",
            window(HOT_QUARTER - QUARTER, HOT_QUARTER + 3 * QUARTER),
        ),
        ("day-aligned week", window(T0, T0 + 7 * DAY)),
        ("previous period of the cut", cut.previous()),
        ("random", random),
    ]
}

const BACKLOG_AS_OF: [i64; 3] = [
    T0 + 60 * DAY,
    T0 + 3 * DAY + 7 * HOUR + 13 * 60 + 27,
    T0 + DAY + 10 * HOUR + 450,
];

/// Compares every scorecard and backlog field of every scope with the model.
fn compare_with_model(
    store: &Store,
    model: &Model,
    random_window: Window,
    coverage: &Coverage,
) -> Result<(), String> {
    let tickets = tickets(model);
    note_state(model, &tickets, coverage);
    let mut failures = Vec::new();
    for (selection, scope) in subjects() {
        for (name, window) in windows(random_window) {
            let actual = queries::metrics(store.kv(), &selection, window)
                .map_err(|e| format!("metrics read: {e}"))?;
            let expected = model_metrics(model, &tickets, &scope, window);
            note_metrics(&scope, name, &expected, coverage);
            let mut diffs = Diffs::default();
            diffs.metrics(&expected, &actual);
            if !diffs.0.is_empty() {
                failures.push(format!(
                    "{scope:?} in {name} [{}, {}): {}",
                    window.from(),
                    window.to(),
                    diffs.0.join("; ")
                ));
            }
        }
        for (window_name, window) in windows(random_window).into_iter().take(2) {
            for (filter_name, filter) in drilldown_filters() {
                let as_of = at(BACKLOG_AS_OF[1]);
                let expected = model_tickets(model, &tickets, &scope, window, &filter, as_of);
                coverage.hit("drill-down with rows", expected.len() > 1);
                coverage.hit(
                    "sla: drill-down lists breached tickets",
                    filter.sla_breached && !expected.is_empty(),
                );
                let mut listed = Vec::new();
                let mut after = None;
                loop {
                    let page = queries::list_tickets(
                        store.kv(),
                        &queries::TicketQuery {
                            scope: selection.clone(),
                            window,
                            filter: filter.clone(),
                            as_of,
                            after: after.take(),
                            page_size: 2,
                        },
                    )
                    .map_err(|e| format!("list tickets: {e}"))?;
                    listed.extend(page.rows.into_iter().map(|r| {
                        (
                            r.ticket_id,
                            r.created_at,
                            r.resolved_at,
                            r.contacts,
                            r.reopened,
                            r.csat,
                            r.nps,
                            r.sla_breached_after,
                        )
                    }));
                    match page.next {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                }
                if listed != expected {
                    failures.push(format!(
                        "{scope:?} drill-down {filter_name} in {window_name}: model {expected:?}, store {listed:?}"
                    ));
                }
            }
        }
        for as_of in BACKLOG_AS_OF.map(at) {
            let actual = queries::backlog(store.kv(), &selection, as_of)
                .map_err(|e| format!("backlog read: {e}"))?;
            let expected = model_backlog(model, &tickets, &scope, as_of);
            if matches!(scope[..], [Scope::Organization]) {
                coverage.hit(
                    "sla: open ticket already breaching",
                    expected.sla_breaching > 0,
                );
                coverage.hit(
                    "sla: open ticket due within the hour",
                    expected.sla_breaching_within_hour > 0,
                );
            }
            let mut diffs = Diffs::default();
            diffs.backlog(&expected, &actual);
            if !diffs.0.is_empty() {
                failures.push(format!(
                    "{scope:?} backlog as of {as_of:?}: {}",
                    diffs.0.join("; ")
                ));
            }
        }
    }
    // A team, agent, channel or tag is known (reads answer rather than
    // NOT_FOUND) exactly while some stored interaction names it.
    for scope in scopes() {
        let mut interactions = model.interactions.values();
        let named = match &scope {
            Scope::Team(team) => interactions.any(|i| &i.team_id == team),
            Scope::Agent(agent) => interactions.any(|i| i.agent_id.as_ref() == Some(agent)),
            Scope::Channel(channel) => interactions.any(|i| i.channel == *channel),
            Scope::Tag(tag) => interactions.any(|i| i.tags.contains(tag)),
            _ => continue,
        };
        coverage.hit("a scope is unknown", !named);
        let known = queries::require_known(store.kv(), &Selection::one(scope.clone())).is_ok();
        if known != named {
            failures.push(format!(
                "{scope:?}: known {known}, named by the model {named}"
            ));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        let shown = failures
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ");
        Err(format!(
            "{} scorecards differ from the model:\n  {shown}",
            failures.len()
        ))
    }
}

async fn verify_is_clean(store: &Store, when: &str) -> Result<(), String> {
    let report = store
        .verify()
        .await
        .map_err(|e| format!("verify {when}: {e}"))?;
    if report.mismatch_count == 0 {
        Ok(())
    } else {
        Err(format!(
            "verify {when}: {} mismatches, e.g. {:?}",
            report.mismatch_count,
            report.mismatches.iter().take(5).collect::<Vec<_>>()
        ))
    }
}

fn outcome_name(outcome: &support_metrics::error::Result<Outcome>) -> Result<Expected, String> {
    match outcome {
        Ok(Outcome::Created) => Ok(Expected::Created),
        Ok(Outcome::Updated) => Ok(Expected::Updated),
        Ok(Outcome::Duplicate) => Ok(Expected::Duplicate),
        Ok(Outcome::Stale) => Ok(Expected::Stale),
        Err(Error::AlreadyExists(_)) => Ok(Expected::AlreadyExists),
        Err(other) => Err(format!("unexpected error {other}")),
    }
}

/// The model as the writes go, and what coverage needs to remember about them.
#[derive(Debug, Default)]
struct Writes {
    model: Model,
    /// Feedback written while its interaction was unknown.
    early_feedback: BTreeSet<Id>,
    /// Records written so far.
    written: usize,
}

/// Writes `records` in batches of the given sizes (cycled), checking every outcome
/// against the model and verifying after every batch.
async fn write_all(
    store: &Store,
    records: &[Record],
    batch_sizes: &[usize],
    writes: &mut Writes,
    coverage: &Coverage,
) -> Result<(), String> {
    let Writes {
        model,
        early_feedback,
        written,
    } = writes;
    let mut sizes = batch_sizes.iter().copied().cycle();
    let mut start = 0;
    while start < records.len() {
        let size = sizes.next().unwrap_or(1).max(1);
        let batch = &records[start..(start + size).min(records.len())];
        let next = *written;
        let outcomes = store
            .record(batch.to_vec())
            .await
            .map_err(|e| format!("batch at record #{next} failed: {e}"))?;
        if outcomes.len() != batch.len() {
            return Err(format!(
                "{} outcomes for {} records",
                outcomes.len(),
                batch.len()
            ));
        }
        for (offset, (record, outcome)) in batch.iter().zip(&outcomes).enumerate() {
            note_write(model, record, early_feedback, coverage);
            let expected = model.apply(record);
            coverage.hit(
                match expected {
                    Expected::Created => "outcome created",
                    Expected::Updated => "outcome updated",
                    Expected::Duplicate => "outcome duplicate",
                    Expected::Stale => "outcome stale",
                    Expected::AlreadyExists => "outcome already exists",
                },
                true,
            );
            let actual =
                outcome_name(outcome).map_err(|e| format!("record #{}: {e}", next + offset))?;
            if actual != expected {
                return Err(format!(
                    "record #{}: store said {actual:?}, SPEC §4 says {expected:?}: {record:?}",
                    next + offset
                ));
            }
        }
        start += batch.len();
        *written += batch.len();
        verify_is_clean(store, &format!("after record #{written}")).await?;
    }
    Ok(())
}

/// Notes which feedback waited for its interaction, and which still waits.
fn note_feedback(writes: &Writes, coverage: &Coverage) {
    let Writes {
        model,
        early_feedback,
        ..
    } = writes;
    let arrived_late = |interaction: &Id| model.interactions.contains_key(interaction);
    let surveys = model
        .surveys
        .values()
        .map(|s| (&s.response_id, &s.interaction_id));
    let reviews = model
        .reviews
        .values()
        .map(|r| (&r.review_id, &r.interaction_id));
    for (feedback, interaction) in surveys.chain(reviews) {
        coverage.hit(
            "feedback counted after its interaction arrived",
            early_feedback.contains(feedback) && arrived_late(interaction),
        );
        coverage.hit(
            "feedback on an unknown interaction",
            !model.interactions.contains_key(interaction),
        );
    }
}

/// Notes what a write is about to do to the model, for coverage.
fn note_write(
    model: &Model,
    record: &Record,
    early_feedback: &mut BTreeSet<Id>,
    coverage: &Coverage,
) {
    let newer = |old_revision: u64, new_revision: u64| new_revision > old_revision;
    match record {
        Record::Interaction(new) => {
            if let Some(old) = model
                .interactions
                .get(&new.interaction_id)
                .filter(|o| newer(o.revision, new.revision))
            {
                coverage.hit(
                    "interaction moved to another ticket",
                    old.ticket_id != new.ticket_id,
                );
                coverage.hit(
                    "interaction moved to another team",
                    old.team_id != new.team_id,
                );
            }
        }
        Record::SurveyResponse(new) => {
            if let Some(old) = model
                .surveys
                .get(&new.response_id)
                .filter(|o| newer(o.revision, new.revision))
            {
                coverage.hit(
                    "feedback moved to another interaction",
                    old.interaction_id != new.interaction_id,
                );
            }
            if !model.interactions.contains_key(&new.interaction_id) {
                early_feedback.insert(new.response_id.clone());
            }
        }
        Record::QualityReview(new) => {
            if !model.interactions.contains_key(&new.interaction_id) {
                early_feedback.insert(new.review_id.clone());
            }
        }
        Record::CustomerEvent(_) => {}
    }
}

/// Notes what the final state holds, for coverage.
fn note_state(model: &Model, tickets: &[TicketState<'_>], coverage: &Coverage) {
    for ticket in tickets {
        let teams: BTreeSet<&Id> = ticket.interactions.iter().map(|i| &i.team_id).collect();
        coverage.hit("ticket spanning teams", teams.len() > 1);
        coverage.hit(
            "ticket reopened",
            ticket.reopened && ticket.resolved_at.is_some(),
        );
        coverage.hit("open tickets in the backlog", ticket.resolved_at.is_none());
        coverage.hit(
            "backlog ticket created after as_of",
            ticket.resolved_at.is_none() && ticket.created_at > at(BACKLOG_AS_OF[1]),
        );
        note_business_sla(ticket, coverage);
    }
    for event in model.events.values() {
        let contacted_before = model.interactions.values().any(|i| {
            i.customer_id.as_ref() == Some(&event.customer_id) && i.opened_at <= event.occurred_at
        });
        coverage.hit(
            "churn event before the customer's first contact",
            !contacted_before,
        );
    }
    let negative = |i: &Interaction| {
        i.social
            .is_some_and(|s| s.kind == SocialKind::Complaint || s.sentiment < -0.3)
    };
    coverage.hit(
        "negative social mention",
        model.interactions.values().any(negative),
    );
}

/// Notes a ticket's SLA outcomes on business-clock targets, for coverage:
/// whether they were met, whether a calendar counted them, and whether one was
/// met only because a target used up at the end of a shift runs until the next.
fn note_business_sla(ticket: &TicketState<'_>, coverage: &Coverage) {
    let outcomes = [
        (
            ticket.first_response.map(|(responded, _)| responded),
            ticket.first_response_target_of(),
            SlaMetric::FirstResponse,
            ticket.first_response_deadline,
        ),
        (
            ticket.resolved_at,
            ticket.latest(),
            SlaMetric::Resolution,
            ticket.resolution_deadline,
        ),
    ];
    for (event, by, metric, deadline) in outcomes {
        let (Some(event), Some(deadline), Some((within, SlaClock::Business))) =
            (event, deadline, model_target(by, metric))
        else {
            continue;
        };
        let met = event <= deadline;
        if model_calendar(&by.team_id).is_none() {
            coverage.hit("sla: business-clock outcome without a calendar", true);
            continue;
        }
        coverage.hit("sla: business-clock outcome met", met);
        coverage.hit("sla: business-clock outcome breached", !met);
        // All of the target was worked before the event's last nanosecond.
        let ran_out_before = event > ticket.created_at
            && model_business_nanos(&by.team_id, ticket.created_at, Instant(event.0 - 1))
                == Some(within);
        coverage.hit(
            "sla: met in the off-hours after a business target ran out",
            met && ran_out_before,
        );
    }
}

/// Notes what one expected scorecard holds, for coverage.
fn note_metrics(scope: &[Scope], window_name: &str, expected: &Metrics, coverage: &Coverage) {
    let churn = &expected.churn;
    if matches!(scope, [Scope::Team(_)]) {
        coverage.hit("churn attributed to a team", churn.churn_events > 0);
    }
    if matches!(scope, [Scope::TeamTag(..)]) {
        coverage.hit(
            "team x tag scope with answers",
            expected.tickets_created > 0 && expected.csat.is_some(),
        );
    }
    if matches!(scope, [Scope::Team(_), Scope::Team(_), ..]) {
        coverage.hit(
            "union of teams with tickets",
            expected.tickets_created > 0 && expected.first_response_time.is_some(),
        );
    }
    if matches!(scope, [Scope::Organization]) && window_name == "full span" {
        coverage.hit(
            "business time both zero and positive",
            [
                &expected.first_response_business_time,
                &expected.resolution_business_time,
            ]
            .iter()
            .any(|d| {
                d.is_some_and(|d| d.count > 1 && d.mean_seconds > 0.0 && d.p50_seconds == 0.0)
            }),
        );
        coverage.hit("post-contact churn", churn.churned_after_resolution > 0);
        coverage.hit(
            "resolved ticket with a customer that did not churn",
            churn.resolved_tickets_with_customer > churn.churned_after_resolution,
        );
        coverage.hit(
            "churn split: satisfied",
            churn.satisfied_resolved_tickets > 0,
        );
        coverage.hit(
            "churn split: unsatisfied",
            churn.unsatisfied_resolved_tickets > 0,
        );
        let sla = |summary: &Option<SlaSummary>| {
            summary
                .as_ref()
                .map_or((false, false), |s| (s.achieved > 0, s.breached > 0))
        };
        let (met, breached) = sla(&expected.first_response_sla);
        coverage.hit("sla: first response met", met);
        coverage.hit("sla: first response breached", breached);
        let (met, breached) = sla(&expected.resolution_sla);
        coverage.hit("sla: resolution met", met);
        coverage.hit("sla: resolution breached", breached);
    }
    if matches!(scope, [Scope::Organization]) && window_name == "single quarter" {
        coverage.hit(
            "single quarter window has data",
            expected.interactions + expected.tickets_created + expected.tickets_resolved > 0,
        );
    }
}

fn open_store(dir: &tempfile::TempDir) -> Result<Store, String> {
    Store::open(&SledOptions {
        path: dir.path().join("data"),
        cache_capacity_bytes: 8 << 20,
        durable_acks: true,
        snapshots: Default::default(),
    })
    .map_err(|e| format!("open: {e}"))
}

/// Damages one stored aggregate; returns the key it damaged.
fn corrupt(store: &Store, corruption: &Corruption) -> Result<Option<Vec<u8>>, String> {
    let kv = store.kv();
    let aggregates: Vec<(Vec<u8>, Vec<u8>)> = kv
        .scan_prefix(&[keys::AGGREGATE])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("scan: {e}"))?;
    let pick = |which: &usize| aggregates.get(which % aggregates.len().max(1)).cloned();
    // Buckets under their own key (days, months), not an hour's parts nor
    // the registry of known scopes.
    let own: Vec<&(Vec<u8>, Vec<u8>)> = aggregates
        .iter()
        .filter(|(key, _)| {
            !matches!(
                key.get(1),
                Some(&keys::HOUR_PARTS) | Some(&keys::SCOPE_REGISTRY)
            )
        })
        .collect();
    let change = match corruption {
        Corruption::Recount(which) => own.get(which % own.len().max(1)).map(|(key, value)| {
            let mut aggregate: Aggregate =
                codec::decode(key, value).expect("stored aggregates decode");
            aggregate.interactions += 1;
            (
                key.clone(),
                Some(codec::encode(&aggregate).expect("encodes")),
            )
        }),
        Corruption::FlipByte(which) => pick(which).map(|(key, mut value)| {
            let last = value.len() - 1;
            value[last] ^= 0x20;
            (key, Some(value))
        }),
        Corruption::Delete(which) => pick(which).map(|(key, _)| (key, None)),
        Corruption::Plant => {
            let aggregate = Aggregate {
                tickets_created: 1,
                ..Aggregate::default()
            };
            // A ticket no record made, added to a quarter (in its hour's
            // parts) the way the writer adds to one.
            let key = keys::aggregate(Level::Quarter, &Scope::Team(team_id(TEAMS)), HOT_QUARTER);
            kv.commit_with_aggregates(Vec::new(), vec![(key.clone(), aggregate)])
                .map_err(|e| format!("planting: {e}"))?;
            return Ok(Some(match buckets::placement(&key) {
                buckets::Placement::InHour { key, .. } => key,
                buckets::Placement::Own | buckets::Placement::Pending { .. } => key,
            }));
        }
    };
    let Some((key, value)) = change else {
        return Ok(None);
    };
    kv.commit(vec![(key.clone(), value)])
        .map_err(|e| format!("corrupting: {e}"))?;
    Ok(Some(key))
}

async fn run_case(case: &Case, coverage: &Coverage) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let mut writes = Writes::default();
    let (before_restart, after_restart) = case
        .records
        .split_at(case.restart_after.min(case.records.len()));
    let store = open_store(&dir)?;
    for team in [team_id(0), team_id(1)] {
        let calendar = model_calendar(&team).map(store_calendar);
        store
            .set_calendar(team, calendar)
            .await
            .map_err(|e| format!("set calendar: {e}"))?;
    }
    for team in [team_id(0), team_id(2)] {
        let policy = store_sla_policy(model_sla_policy(&team));
        store
            .set_sla_policy(team, policy)
            .await
            .map_err(|e| format!("set SLA policy: {e}"))?;
    }
    // Calendars and SLA policies set now apply to tickets created from a day
    // on; a rebuild makes them apply to all of history, which the model assumes.
    store.rebuild().await.map_err(|e| format!("rebuild: {e}"))?;
    write_all(
        &store,
        before_restart,
        &case.batch_sizes,
        &mut writes,
        coverage,
    )
    .await?;
    drop(store);
    // A restart on the same directory: what was acknowledged is all there.
    let store = open_store(&dir)?;
    write_all(
        &store,
        after_restart,
        &case.batch_sizes,
        &mut writes,
        coverage,
    )
    .await?;
    note_feedback(&writes, coverage);
    let model = writes.model;
    compare_with_model(&store, &model, case.random_window, coverage)?;

    if let Some(key) = corrupt(&store, &case.corruption)? {
        coverage.hit(
            match case.corruption {
                Corruption::Recount(_) => "corruption: recount",
                Corruption::FlipByte(_) => "corruption: flipped byte",
                Corruption::Delete(_) => "corruption: delete",
                Corruption::Plant => "corruption: plant",
            },
            true,
        );
        let report = store
            .verify()
            .await
            .map_err(|e| format!("verify after corruption: {e}"))?;
        // A day's or month's pending changes are checked with its bucket, and
        // a difference reported under the bucket's key.
        let described = keys::describe_key(&key);
        let bucket = keys::bucket_of_pending(&key).map(|bucket| keys::describe_key(&bucket));
        let named = |k: &String| *k == described || Some(k) == bucket.as_ref();
        if report.mismatch_count == 0 || !report.mismatches.iter().any(|(k, _)| named(k)) {
            return Err(format!(
                "{:?} of {described} went unreported: {report:?}",
                case.corruption
            ));
        }
        store.rebuild().await.map_err(|e| format!("rebuild: {e}"))?;
        verify_is_clean(&store, "after rebuild").await?;
        compare_with_model(&store, &model, case.random_window, &Coverage::default())
            .map_err(|e| format!("after rebuild: {e}"))?;
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[test]
fn scorecards_equal_an_independent_model_after_random_write_sequences() {
    let mut config = Config::default(); // honours PROPTEST_CASES
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 256;
    }
    // Shrunk failures become named regression tests below, not a file.
    config.failure_persistence = None;
    config.max_shrink_iters = 1024;
    let runtime = runtime();
    let coverage = Coverage::default();
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case(), |case| {
        runtime
            .block_on(run_case(&case, &coverage))
            .map_err(TestCaseError::fail)
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    eprintln!("model test coverage: {:#?}", coverage.0.borrow());
    coverage.assert_covers(&REQUIRED_COVERAGE);
}

// ---------------------------------------------------------------------------
// Named regression tests: fixed sequences through the same check.

/// Runs a fixed sequence through the whole check (batches of one).
fn check_sequence(records: Vec<Record>, corruption: Corruption) {
    let case = Case {
        records,
        batch_sizes: vec![1],
        random_window: window(T0, T0 + QUARTER),
        corruption,
        restart_after: 0,
    };
    if let Err(error) = runtime().block_on(run_case(&case, &Coverage::default())) {
        panic!("{error}");
    }
}

/// The model after `records`, for stating what a regression test expects.
fn model_of(records: &[Record]) -> Model {
    let mut model = Model::default();
    for record in records {
        model.apply(record);
    }
    model
}

/// An unresolved CHAT interaction without agent, customer or response.
fn contact(n: usize, ticket: usize, team: usize, opened: i64) -> Interaction {
    Interaction {
        interaction_id: interaction_id(n),
        revision: 1,
        ticket_id: id(format!("ticket-{ticket}")),
        team_id: team_id(team),
        agent_id: None,
        customer_id: None,
        channel: Channel::Chat,
        priority: Priority::Normal,
        opened_at: at(opened),
        first_response_at: None,
        closed_at: None,
        handle_time_nanos: None,
        resolved: false,
        tags: Vec::new(),
        social: None,
    }
}

fn churned(n: usize, customer: usize, occurred: i64) -> Record {
    Record::CustomerEvent(CustomerEvent {
        event_id: id(format!("event-{n}")),
        revision: 1,
        customer_id: customer_id(customer),
        kind: CustomerEventKind::Churned,
        occurred_at: at(occurred),
    })
}

fn csat(name: &str, interaction: usize, score: u8, submitted: i64) -> Record {
    Record::SurveyResponse(SurveyResponse {
        response_id: id(format!("survey-{name}")),
        revision: 1,
        interaction_id: interaction_id(interaction),
        kind: SurveyKind::Csat,
        score,
        submitted_at: at(submitted),
        comment: String::new(),
    })
}

// Postmortem: the first generator never put a churn exactly on either end of the
// 30-day post-contact window, so a model off by one second there still passed.
#[test]
fn post_contact_churn_includes_both_ends_of_the_thirty_days_after_resolution() {
    let resolved = T0 + HOUR;
    let records: Vec<Record> = (0..4)
        .map(|n| {
            let mut interaction = contact(n, n, n % TEAMS, T0);
            interaction.customer_id = Some(customer_id(n));
            interaction.closed_at = Some(at(resolved));
            interaction.resolved = true;
            Record::Interaction(interaction)
        })
        .chain([
            churned(0, 0, resolved),
            churned(1, 1, resolved + POST_CONTACT_CHURN),
            churned(2, 2, resolved + POST_CONTACT_CHURN + 1),
            churned(3, 3, resolved - 1),
        ])
        .collect();
    let model = model_of(&records);
    let churn = model_metrics(
        &model,
        &tickets(&model),
        &[Scope::Organization],
        full_span(),
    )
    .churn;
    assert_eq!(
        (
            churn.resolved_tickets_with_customer,
            churn.churned_after_resolution
        ),
        (4, 2)
    );
    assert_eq!(churn.churn_events, 4);
    check_sequence(records, Corruption::Plant);
}

// Postmortem: the first generator almost never produced equal instants, so models
// that broke ticket-order, first-response, CSAT and churn-contact ties the wrong
// way still passed; this pins every tie (feedback sent before its interaction).
#[test]
fn ties_go_to_the_lower_interaction_id_first_and_the_higher_response_id_last() {
    let shared = T0 + 2 * DAY;
    let mut first = contact(1, 0, 0, shared);
    first.customer_id = Some(customer_id(0));
    first.first_response_at = Some(at(shared + 60));
    first.priority = Priority::Low;
    let mut second = contact(2, 0, 1, shared);
    second.customer_id = Some(customer_id(0));
    second.first_response_at = Some(at(shared + 60));
    second.priority = Priority::Urgent;
    let mut rated = contact(3, 1, 2, shared);
    rated.customer_id = Some(customer_id(1));
    rated.closed_at = Some(at(shared + HOUR));
    rated.resolved = true;
    let records = vec![
        csat("b", 3, 1, shared + 2 * HOUR),
        csat("a", 3, 5, shared + 2 * HOUR),
        Record::Interaction(second),
        Record::Interaction(first),
        Record::Interaction(rated),
        churned(0, 0, shared + 10),
        churned(1, 1, shared + DAY),
    ];
    let model = model_of(&records);
    let tickets = tickets(&model);
    let of = |scope: Scope| model_metrics(&model, &tickets, &[scope], full_span());
    let (team_0, team_1) = (of(Scope::Team(team_id(0))), of(Scope::Team(team_id(1))));
    // Ticket 0: created by and first answered in interaction-1 (team 0); its latest
    // is interaction-2 (team 1), and so is customer 0's latest contact.
    assert_eq!((team_0.tickets_created, team_1.tickets_created), (1, 0));
    assert_eq!(team_0.first_response_time.map(|d| d.count), Some(1));
    assert_eq!(team_1.first_response_time, None);
    assert_eq!(
        (team_0.churn.churn_events, team_1.churn.churn_events),
        (0, 1)
    );
    let backlog = model_backlog(
        &model,
        &tickets,
        &[Scope::Team(team_id(1))],
        at(T0 + 60 * DAY),
    );
    assert_eq!(
        (backlog.open_tickets, backlog.by_priority),
        (1, [0, 0, 0, 1])
    );
    // Ticket 1: its two CSAT answers tie; survey-b (score 1) is the later one.
    let churn = of(Scope::Organization).churn;
    assert_eq!(
        (
            churn.unsatisfied_resolved_tickets,
            churn.unsatisfied_churned,
            churn.satisfied_resolved_tickets
        ),
        (1, 1, 0)
    );
    check_sequence(records, Corruption::Recount(0));
}
