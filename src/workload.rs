//! A realistic workload, deterministic from a seed: an organisation's tickets of
//! one to four interactions across channels and priorities, long-tailed response
//! and handle times, surveys, quality reviews, social sentiment and churn, with a
//! fraction of records arriving late or revised. It fills `support-metrics demo`
//! and feeds the benchmarks.

use crate::domain::records::{
    Channel, CustomerEvent, CustomerEventKind, Id, Interaction, Priority, QualityReview, Record,
    SocialFacts, SocialKind, SurveyKind, SurveyResponse,
};
use crate::domain::time::{Instant, NANOS_PER_SECOND};

/// What to generate.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub seed: u64,
    pub teams: usize,
    pub agents_per_team: usize,
    /// Interactions to generate (first versions; revisions come on top).
    pub interactions: usize,
    /// Everything happens before this instant; nothing is dated after it.
    pub end: Instant,
    /// Tickets are created over this many days before `end`.
    pub days: u32,
    /// Share of records that arrive hours or days after the ones around them.
    pub late_fraction: f64,
    /// Share of interactions sent again later with a higher revision.
    pub update_fraction: f64,
    /// Put before every record, ticket and customer id (`demo-` for the demo,
    /// so that its ids never clash with records a reader types in).
    pub id_prefix: String,
}

impl WorkloadConfig {
    /// Defaults for `interactions` interactions over `days` days ending at `end`.
    pub fn new(seed: u64, interactions: usize, days: u32, end: Instant) -> Self {
        WorkloadConfig {
            seed,
            teams: 8,
            agents_per_team: 12,
            interactions,
            end,
            days,
            late_fraction: 0.03,
            update_fraction: 0.03,
            id_prefix: String::new(),
        }
    }

    /// The team ids this workload uses.
    pub fn team_ids(&self) -> Vec<Id> {
        (0..self.teams).map(team_id).collect()
    }
}

const TEAM_NAMES: [&str; 8] = [
    "billing",
    "technical",
    "onboarding",
    "enterprise",
    "returns",
    "payments",
    "mobile",
    "security",
];

fn team_id(index: usize) -> Id {
    let name = match TEAM_NAMES.get(index) {
        Some(name) => (*name).to_owned(),
        None => format!("team-{index}"),
    };
    id(&name)
}

const TAGS: [&str; 10] = [
    "billing",
    "refund",
    "login",
    "shipping",
    "bug",
    "account",
    "feature-request",
    "cancellation",
    "integration",
    "performance",
];

const CHANNELS: [(Channel, u32); 7] = [
    (Channel::Email, 35),
    (Channel::Chat, 25),
    (Channel::Phone, 14),
    (Channel::Social, 8),
    (Channel::Messaging, 10),
    (Channel::Web, 6),
    (Channel::Other, 2),
];

const PRIORITIES: [(Priority, u32); 4] = [
    (Priority::Low, 20),
    (Priority::Normal, 55),
    (Priority::High, 20),
    (Priority::Urgent, 5),
];

const CONTACTS: [(usize, u32); 4] = [(1, 60), (2, 25), (3, 10), (4, 5)];

const SOCIAL_KINDS: [(SocialKind, u32); 5] = [
    (SocialKind::Mention, 35),
    (SocialKind::Complaint, 20),
    (SocialKind::QuestionTechnical, 20),
    (SocialKind::QuestionAccount, 15),
    (SocialKind::Praise, 10),
];

/// Scores 1–5, skewed to satisfied, with a dissatisfied tail.
const CSAT_SCORES: [(u8, u32); 5] = [(1, 9), (2, 6), (3, 10), (4, 27), (5, 48)];
/// Scores 1–7.
const CES_SCORES: [(u8, u32); 7] = [(1, 4), (2, 5), (3, 8), (4, 13), (5, 20), (6, 25), (7, 25)];
/// Scores 0–10.
const NPS_SCORES: [(u8, u32); 11] = [
    (0, 3),
    (1, 2),
    (2, 2),
    (3, 3),
    (4, 3),
    (5, 6),
    (6, 7),
    (7, 12),
    (8, 16),
    (9, 21),
    (10, 25),
];

/// Median first-response and handle times per channel, in seconds.
fn channel_times(channel: Channel) -> (f64, f64) {
    match channel {
        Channel::Chat => (90.0, 720.0),
        Channel::Phone => (40.0, 480.0),
        Channel::Messaging => (300.0, 600.0),
        Channel::Social => (1_800.0, 300.0),
        Channel::Email => (10_800.0, 420.0),
        Channel::Web => (7_200.0, 420.0),
        Channel::Other => (14_400.0, 600.0),
    }
}

const SECONDS_PER_DAY: f64 = 86_400.0;
const MAX_HANDLE_SECONDS: f64 = 7.0 * SECONDS_PER_DAY;

/// Generates the workload, in arrival order.
pub fn generate(config: &WorkloadConfig) -> Vec<Record> {
    let mut generator = Generator {
        rng: Rng::new(config.seed),
        config,
        customers: (config.interactions / 3).max(1),
        arrivals: Vec::with_capacity(config.interactions * 3 / 2),
        next_interaction: 0,
        next_survey: 0,
        next_review: 0,
        customers_seen: Vec::new(),
    };
    let mut ticket = 0usize;
    while generator.next_interaction < config.interactions {
        generator.ticket(ticket);
        ticket += 1;
    }
    generator.churn();
    let Generator { mut arrivals, .. } = generator;
    // Stable: records arriving at the same instant keep their generation order.
    arrivals.sort_by_key(|(arrival, _)| *arrival);
    arrivals.into_iter().map(|(_, record)| record).collect()
}

struct Generator<'a> {
    rng: Rng,
    config: &'a WorkloadConfig,
    customers: usize,
    /// Records with the instant they reach the service, in nanoseconds.
    arrivals: Vec<(i64, Record)>,
    next_interaction: usize,
    next_survey: usize,
    next_review: usize,
    /// (customer index, last contact) of customers with a ticket.
    customers_seen: Vec<(usize, i64)>,
}

impl<'a> Generator<'a> {
    /// The id prefix (borrowed from the configuration, not from `self`, so
    /// that it can be used while `self` is borrowed mutably).
    fn prefix(&self) -> &'a str {
        &self.config.id_prefix
    }
}

impl Generator<'_> {
    fn start_nanos(&self) -> i64 {
        self.config.end.0 - i64::from(self.config.days) * 86_400 * NANOS_PER_SECOND
    }

    /// Whole microseconds, as helpdesks and SQL databases keep them.
    fn seconds(seconds: f64) -> i64 {
        (seconds * 1e6) as i64 * 1_000
    }

    /// An instant in the span, busier in working hours (UTC 08–18) than at night.
    fn creation_instant(&mut self) -> i64 {
        let span = self.config.end.0 - self.start_nanos();
        loop {
            let at = self.start_nanos() + Self::seconds(self.rng.unit() * span as f64 / 1e9);
            let hour = at.div_euclid(3600 * NANOS_PER_SECOND).rem_euclid(24);
            let weight = if (8..18).contains(&hour) { 1.0 } else { 0.35 };
            if self.rng.chance(weight) {
                return at;
            }
        }
    }

    /// When a record reaches the service: at `at`, or later for late arrivals.
    fn arrive(&mut self, at: i64, record: Record) {
        let delay = if self.rng.chance(self.config.late_fraction) {
            Self::seconds(3_600.0 + self.rng.unit() * 6.0 * SECONDS_PER_DAY)
        } else {
            0
        };
        self.arrivals.push((at + delay, record));
    }

    fn ticket(&mut self, number: usize) {
        let end = self.config.end.0;
        let ticket_id = id(&format!("{}t{number}", self.prefix()));
        let team_index = self.rng.zipf(self.config.teams);
        let channel = *self.rng.pick(&CHANNELS);
        let priority = *self.rng.pick(&PRIORITIES);
        let customer = self.rng.below(self.customers as u64) as usize;
        let contacts = *self.rng.pick(&CONTACTS);
        let tags: Vec<String> = (0..1 + self.rng.below(2))
            .map(|_| TAGS[self.rng.below(TAGS.len() as u64) as usize].to_owned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut opened = self.creation_instant();
        for contact in 0..contacts {
            if opened >= end || self.next_interaction >= self.config.interactions {
                break;
            }
            let last = contact + 1 == contacts;
            // Later contacts are now and then handled by another team.
            let team = if contact > 0 && self.rng.chance(0.1) {
                self.rng.below(self.config.teams as u64) as usize
            } else {
                team_index
            };
            let (response_median, handle_median) = channel_times(channel);
            let first_response = if self.rng.chance(0.97) {
                Some(opened + Self::seconds(self.rng.lognormal(response_median, 1.2)))
            } else {
                None
            };
            let handle = Self::seconds(
                self.rng
                    .lognormal(handle_median, 0.8)
                    .min(MAX_HANDLE_SECONDS),
            );
            let closed = first_response.unwrap_or(opened)
                + handle
                + Self::seconds(self.rng.lognormal(1_800.0, 1.0));
            let closed = (closed < end).then_some(closed);
            // Most tickets end resolved; what stays open is mostly recent, as
            // in a helpdesk that works its backlog (a few days of volume).
            let resolve_share = match (last, opened < end - 7 * 86_400 * NANOS_PER_SECOND) {
                (false, _) => 0.2,
                (true, true) => 0.995,
                (true, false) => 0.85,
            };
            let resolved = closed.is_some() && self.rng.chance(resolve_share);
            let interaction = Interaction {
                interaction_id: id(&format!("{}i{}", self.prefix(), self.next_interaction)),
                revision: 1,
                ticket_id: ticket_id.clone(),
                team_id: team_id(team),
                agent_id: self.rng.chance(0.95).then(|| {
                    let agent = self.rng.below(self.config.agents_per_team as u64);
                    id(&format!("{}-agent-{agent}", team_id(team)))
                }),
                customer_id: Some(id(&format!("{}c{customer}", self.prefix()))),
                channel,
                priority,
                opened_at: Instant(opened),
                first_response_at: first_response.filter(|&at| at < end).map(Instant),
                closed_at: closed.map(Instant),
                handle_time_nanos: closed.map(|_| handle),
                resolved,
                tags: tags.clone(),
                social: (channel == Channel::Social).then(|| SocialFacts {
                    kind: *self.rng.pick(&SOCIAL_KINDS),
                    sentiment: (self.rng.unit() * 2.0 - 1.0 + 0.2).clamp(-1.0, 1.0),
                }),
            };
            self.next_interaction += 1;
            self.customers_seen.push((customer, opened));
            if let Some(closed) = closed {
                self.feedback(&interaction, closed, resolved && last);
                if self.rng.chance(self.config.update_fraction) {
                    // A later revision: the agent logged more handle time.
                    let mut revised = interaction.clone();
                    revised.revision = 2;
                    revised.handle_time_nanos = Some(
                        (handle + Self::seconds(self.rng.lognormal(300.0, 0.5)))
                            .min(Self::seconds(MAX_HANDLE_SECONDS)),
                    );
                    let at = (closed + Self::seconds(self.rng.lognormal(7_200.0, 1.0))).min(end);
                    self.arrivals.push((at, Record::Interaction(revised)));
                }
            }
            let arrival = closed.unwrap_or(opened);
            self.arrive(arrival, Record::Interaction(interaction));
            let Some(closed) = closed else { break };
            opened = closed + Self::seconds(self.rng.lognormal(SECONDS_PER_DAY, 1.0));
        }
    }

    /// Surveys on ticket-resolving interactions, and quality reviews on some.
    fn feedback(&mut self, interaction: &Interaction, closed: i64, resolves_ticket: bool) {
        let end = self.config.end.0;
        if resolves_ticket {
            for (kind, share) in [
                (SurveyKind::Csat, 0.25),
                (SurveyKind::Ces, 0.10),
                (SurveyKind::Nps, 0.08),
            ] {
                if !self.rng.chance(share) {
                    continue;
                }
                let submitted = closed + Self::seconds(self.rng.lognormal(7_200.0, 1.5));
                if submitted >= end {
                    continue;
                }
                let score = match kind {
                    SurveyKind::Csat => *self.rng.pick(&CSAT_SCORES),
                    SurveyKind::Ces => *self.rng.pick(&CES_SCORES),
                    SurveyKind::Nps => *self.rng.pick(&NPS_SCORES),
                };
                let survey = SurveyResponse {
                    response_id: id(&format!("{}s{}", self.prefix(), self.next_survey)),
                    revision: 1,
                    interaction_id: interaction.interaction_id.clone(),
                    kind,
                    score,
                    submitted_at: Instant(submitted),
                    comment: String::new(),
                };
                self.next_survey += 1;
                self.arrive(submitted, Record::SurveyResponse(survey));
            }
        }
        if self.rng.chance(0.05) {
            let reviewed = closed + Self::seconds(SECONDS_PER_DAY * (1.0 + 4.0 * self.rng.unit()));
            if reviewed < end {
                let score = (80.0 + 12.0 * self.rng.normal()).round().clamp(0.0, 100.0) as u8;
                let review = QualityReview {
                    review_id: id(&format!("{}r{}", self.prefix(), self.next_review)),
                    revision: 1,
                    interaction_id: interaction.interaction_id.clone(),
                    reviewer_id: id(&format!("reviewer-{}", self.rng.below(5))),
                    score,
                    reviewed_at: Instant(reviewed),
                };
                self.next_review += 1;
                self.arrive(reviewed, Record::QualityReview(review));
            }
        }
    }

    /// About 2% of the customers who contacted support churn, some time after a contact.
    fn churn(&mut self) {
        let end = self.config.end.0;
        let mut churned = std::collections::BTreeSet::new();
        let seen = std::mem::take(&mut self.customers_seen);
        for (customer, contacted) in seen {
            if churned.contains(&customer) || !self.rng.chance(0.02 / 1.6) {
                continue;
            }
            let at = contacted + Self::seconds(self.rng.unit() * 45.0 * SECONDS_PER_DAY);
            if at >= end {
                continue;
            }
            churned.insert(customer);
            let event = CustomerEvent {
                event_id: id(&format!("{}churn-c{customer}", self.prefix())),
                revision: 1,
                customer_id: id(&format!("{}c{customer}", self.prefix())),
                kind: CustomerEventKind::Churned,
                occurred_at: Instant(at),
            };
            self.arrive(at, Record::CustomerEvent(event));
        }
    }
}

/// Generated ids are made of allowed characters.
fn id(raw: &str) -> Id {
    Id::parse(raw).unwrap_or_else(|error| unreachable!("generated id {raw:?} {error}"))
}

/// SplitMix64: small, fast, and the same sequence on every platform and version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    pub fn chance(&mut self, probability: f64) -> bool {
        self.unit() < probability
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.unit();
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Log-normal with the given median; `sigma` sets the tail.
    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// Index in [0, n) with weight 1/(i+1): a few big teams, several small ones.
    pub fn zipf(&mut self, n: usize) -> usize {
        let total: f64 = (1..=n).map(|i| 1.0 / i as f64).sum();
        let mut target = self.unit() * total;
        for i in 0..n {
            target -= 1.0 / (i + 1) as f64;
            if target < 0.0 {
                return i;
            }
        }
        n.saturating_sub(1)
    }

    pub fn pick<'a, T>(&mut self, weighted: &'a [(T, u32)]) -> &'a T {
        let total: u32 = weighted.iter().map(|(_, weight)| weight).sum();
        let mut target = self.below(u64::from(total)) as u32;
        for (value, weight) in weighted {
            if target < *weight {
                return value;
            }
            target -= weight;
        }
        &weighted[weighted.len() - 1].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{convert, validate};

    fn config(seed: u64) -> WorkloadConfig {
        // 2026-01-01T00:00:00Z
        WorkloadConfig::new(seed, 20_000, 60, Instant::from_seconds(1_767_225_600))
    }

    #[test]
    fn the_same_seed_gives_the_same_records_and_another_seed_others() {
        let a = generate(&config(7));
        assert_eq!(a, generate(&config(7)));
        assert_ne!(a, generate(&config(8)));
    }

    #[test]
    fn every_record_passes_the_wire_validation_and_is_dated_in_microseconds() {
        for record in generate(&config(1)) {
            let wire = convert::record(&record);
            let parsed = validate::record(&wire, "")
                .unwrap_or_else(|violations| panic!("{record:?}: {violations:?}"));
            assert_eq!(parsed, record);
            if let Record::Interaction(i) = &record {
                let instants = [Some(i.opened_at), i.first_response_at, i.closed_at];
                assert!(instants.iter().flatten().all(|at| at.0 % 1_000 == 0));
                assert!(i.handle_time_nanos.iter().all(|nanos| nanos % 1_000 == 0));
            }
        }
    }

    #[test]
    fn the_mix_is_what_the_workload_promises() {
        let config = config(3);
        let records = generate(&config);
        let mut first_versions = 0;
        let mut revisions = 0;
        let mut resolving = 0;
        let mut csat = 0;
        let mut reviews = 0;
        let mut churn = 0;
        let mut social_with_facts = 0;
        let mut customers = std::collections::BTreeSet::new();
        let mut tickets = std::collections::BTreeMap::<Id, usize>::new();
        for record in &records {
            match record {
                Record::Interaction(i) if i.revision == 1 => {
                    first_versions += 1;
                    resolving += usize::from(i.resolved);
                    customers.extend(i.customer_id.clone());
                    *tickets.entry(i.ticket_id.clone()).or_default() += 1;
                    social_with_facts += usize::from(i.social.is_some());
                    assert!(i.opened_at < config.end);
                }
                Record::Interaction(_) => revisions += 1,
                Record::SurveyResponse(s) if s.kind == SurveyKind::Csat => csat += 1,
                Record::SurveyResponse(_) => {}
                Record::QualityReview(_) => reviews += 1,
                Record::CustomerEvent(_) => churn += 1,
            }
        }
        let share = |part: usize, whole: usize| part as f64 / whole as f64;
        assert_eq!(first_versions, config.interactions);
        assert!((0.02..0.04).contains(&share(revisions, first_versions)));
        assert!(tickets
            .values()
            .all(|&contacts| (1..=4).contains(&contacts)));
        assert!(tickets.values().any(|&contacts| contacts == 4));
        // CSAT rides on ~25% of ticket-resolving interactions (not every
        // resolved interaction ends its ticket, so the share of all is lower).
        assert!((0.12..0.28).contains(&share(csat, resolving)));
        assert!((0.035..0.065).contains(&share(reviews, first_versions)));
        assert!((0.01..0.03).contains(&share(churn, customers.len())));
        assert!(social_with_facts > 0);
        // Some records arrive out of their event order.
        let dated = |record: &Record| match record {
            Record::Interaction(i) => i.opened_at,
            Record::SurveyResponse(s) => s.submitted_at,
            Record::QualityReview(r) => r.reviewed_at,
            Record::CustomerEvent(e) => e.occurred_at,
        };
        assert!(records.windows(2).any(|w| dated(&w[0]) > dated(&w[1])));
    }

    #[test]
    fn the_rng_is_uniform_enough() {
        let mut rng = Rng::new(42);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[rng.below(10) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_500..10_500).contains(&c)),
            "{counts:?}"
        );
        let median = {
            let mut values: Vec<f64> = (0..10_001).map(|_| rng.lognormal(100.0, 1.0)).collect();
            values.sort_by(f64::total_cmp);
            values[5_000]
        };
        assert!((95.0..105.0).contains(&median), "{median}");
    }
}
