//! Facts (what one ticket, interaction, answer or event contributes to the
//! metrics) and the additive aggregate they are summed into per scope and bucket.

use serde::{Deserialize, Serialize};

use super::records::{Attribution, Channel, Id, SocialFacts, SocialKind, SurveyKind};
use super::sketch::DurationHistogram;
use super::time::Instant;

mod stored;

pub use stored::{AddStored, AggregateSum};

/// What one thing contributes to the metrics, before it is dated and scoped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Fact {
    /// A ticket was created; `resolved_now` feeds the resolution rate.
    TicketCreated { resolved_now: bool },
    /// A ticket's first response, `nanos` after its creation; `business_nanos`
    /// of working time when the responding team has a business calendar.
    FirstResponse {
        nanos: i64,
        business_nanos: Option<i64>,
        /// Whether it met the SLA target for it (`None`: no target).
        sla_met: Option<bool>,
    },
    /// A ticket was resolved (`business_nanos`: working time from creation to
    /// resolution, when the resolving team has a business calendar).
    TicketResolved {
        resolution_nanos: i64,
        business_nanos: Option<i64>,
        first_contact: bool,
        reopened: bool,
        /// Whether it met the SLA target for it (`None`: no target).
        sla_met: Option<bool>,
    },
    /// A resolved ticket with a customer; whether that customer churned within 30
    /// days after the resolution, and the ticket's CSAT answer (satisfied or not).
    PostContactChurn {
        churned: bool,
        csat_satisfied: Option<bool>,
    },
    /// An interaction was opened. Every interaction on the SOCIAL channel is a
    /// mention; its social facts (if sent) say whether it was negative and what kind.
    InteractionOpened {
        handle_nanos: Option<i64>,
        on_social_channel: bool,
        social: Option<SocialFacts>,
    },
    /// A survey answer.
    SurveyAnswer { kind: SurveyKind, score: u8 },
    /// A quality review.
    Review { score: u8 },
    /// A customer churned.
    Churned,
}

/// Which scopes a fact counts in: the organisation alone, or the organisation and
/// the team, agent, channel and team × channel of an interaction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FactScopes {
    OrganizationOnly,
    Of(Attribution),
}

/// A fact with the instant that dates it and the scopes it counts in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatedFact {
    pub at: Instant,
    pub scopes: FactScopes,
    pub fact: Fact,
}

/// A slice of the organisation that aggregates are kept for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Organization,
    Team(Id),
    Agent(Id),
    Channel(Channel),
    TeamChannel(Id, Channel),
    /// The organisation's tickets carrying a tag (an issue category).
    Tag(String),
    /// A team's share of the tickets carrying a tag.
    TeamTag(Id, String),
}

/// The kinds of scope, for listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    Organization,
    Team,
    Agent,
    Channel,
    TeamChannel,
    Tag,
    TeamTag,
}

impl Scope {
    pub fn kind(&self) -> ScopeKind {
        match self {
            Scope::Organization => ScopeKind::Organization,
            Scope::Team(_) => ScopeKind::Team,
            Scope::Agent(_) => ScopeKind::Agent,
            Scope::Channel(_) => ScopeKind::Channel,
            Scope::TeamChannel(..) => ScopeKind::TeamChannel,
            Scope::Tag(_) => ScopeKind::Tag,
            Scope::TeamTag(..) => ScopeKind::TeamTag,
        }
    }

    /// The team whose targets apply to this scope, if any.
    pub fn team(&self) -> Option<&Id> {
        match self {
            Scope::Team(team) | Scope::TeamChannel(team, _) | Scope::TeamTag(team, _) => Some(team),
            _ => None,
        }
    }
}

/// What a read is about: one precomputed scope, or the union of several teams
/// (optionally on one channel). Every fact counts in exactly one team, and an
/// open ticket in the backlog of exactly one, so a union's aggregate is the sum
/// of its members' and its open tickets are theirs together.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selection {
    One(Scope),
    /// Two or more distinct teams, each on `channel` if given.
    Teams {
        teams: Vec<Id>,
        channel: Option<Channel>,
    },
}

/// A union names at most this many teams.
pub const MAX_UNION_TEAMS: usize = 100;

impl Selection {
    pub fn one(scope: Scope) -> Selection {
        Selection::One(scope)
    }

    /// The union of distinct teams, each on `channel` if given; one team is
    /// simply that team's scope. The teams are kept sorted, so that the same
    /// union named in another order is the same selection.
    pub fn teams(mut teams: Vec<Id>, channel: Option<Channel>) -> Selection {
        teams.sort();
        if teams.len() == 1 {
            let team = teams.remove(0);
            return Selection::One(match channel {
                Some(channel) => Scope::TeamChannel(team, channel),
                None => Scope::Team(team),
            });
        }
        Selection::Teams { teams, channel }
    }

    /// The disjoint scopes whose union this is.
    pub fn members(&self) -> Vec<Scope> {
        match self {
            Selection::One(scope) => vec![scope.clone()],
            Selection::Teams { teams, channel } => teams
                .iter()
                .map(|team| match channel {
                    Some(channel) => Scope::TeamChannel(team.clone(), *channel),
                    None => Scope::Team(team.clone()),
                })
                .collect(),
        }
    }

    /// The team whose own targets apply: only a selection of one team (or one team
    /// on a channel) has one; a union is judged by the organisation default.
    pub fn team(&self) -> Option<&Id> {
        match self {
            Selection::One(scope) => scope.team(),
            Selection::Teams { .. } => None,
        }
    }
}

impl FactScopes {
    /// Every scope a fact of a ticket carrying `tags` counts in: its scopes and,
    /// when it is attributed to an interaction, the organisation × tag and
    /// team × tag scopes of each tag.
    pub fn scopes_tagged(&self, tags: &[String]) -> Vec<Scope> {
        let mut scopes = self.scopes();
        if let FactScopes::Of(attribution) = self {
            for tag in tags {
                scopes.push(Scope::Tag(tag.clone()));
                scopes.push(Scope::TeamTag(attribution.team_id.clone(), tag.clone()));
            }
        }
        scopes
    }

    /// Every scope the fact counts in, the organisation first.
    pub fn scopes(&self) -> Vec<Scope> {
        match self {
            FactScopes::OrganizationOnly => vec![Scope::Organization],
            FactScopes::Of(attribution) => {
                let mut scopes = vec![
                    Scope::Organization,
                    Scope::Team(attribution.team_id.clone()),
                    Scope::Channel(attribution.channel),
                    Scope::TeamChannel(attribution.team_id.clone(), attribution.channel),
                ];
                if let Some(agent) = &attribution.agent_id {
                    scopes.push(Scope::Agent(agent.clone()));
                }
                scopes
            }
        }
    }
}

/// Everything the metrics of one scope and one bucket are computed from. Every
/// field is a sum, so aggregates merge by addition and a contribution is retracted
/// by subtraction. Counts are signed so that a difference is an aggregate too.
///
/// Stored compactly (see [`Aggregate::serialize`]): most buckets hold one or
/// two kinds of fact, so most of the 52 counts and histograms are zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregate {
    pub tickets_created: i64,
    pub tickets_created_resolved_now: i64,
    pub interactions: i64,
    pub tickets_resolved: i64,
    pub first_contact_resolved: i64,
    pub reopened: i64,
    pub first_response: DurationHistogram,
    pub resolution: DurationHistogram,
    pub handle: DurationHistogram,
    /// Working time, for facts of teams with a business calendar.
    pub first_response_business: DurationHistogram,
    pub resolution_business: DurationHistogram,
    /// Outcomes against SLA targets, of the facts that had one.
    pub first_response_sla: SlaCounts,
    pub resolution_sla: SlaCounts,
    /// Index 0 is score 1.
    pub csat: [i64; 5],
    /// Index 0 is score 1.
    pub ces: [i64; 7],
    /// Index 0 is score 0.
    pub nps: [i64; 11],
    pub reviews: i64,
    pub review_score_sum: i64,
    pub social_mentions: i64,
    pub social_negative: i64,
    pub social_technical: i64,
    pub social_account: i64,
    pub social_praise: i64,
    pub churned: i64,
    pub post_contact_tickets: i64,
    pub post_contact_churned: i64,
    pub post_contact_satisfied: i64,
    pub post_contact_satisfied_churned: i64,
    pub post_contact_unsatisfied: i64,
    pub post_contact_unsatisfied_churned: i64,
}

/// How many events met and missed their SLA target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlaCounts {
    pub met: i64,
    pub breached: i64,
}

impl SlaCounts {
    fn add(&mut self, met: Option<bool>, sign: i64) {
        match met {
            Some(true) => self.met += sign,
            Some(false) => self.breached += sign,
            None => {}
        }
    }
}

impl Aggregate {
    /// The bytes it takes in memory: itself and its histograms' buckets.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Aggregate>() + self.heap_bytes()
    }

    /// The bytes its histograms' buckets take on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.histograms()
            .iter()
            .map(|histogram| histogram.heap_bytes())
            .sum()
    }

    /// Adds (`sign` = 1) or retracts (`sign` = -1) one fact.
    pub fn add_fact(&mut self, fact: &Fact, sign: i64) {
        match *fact {
            Fact::TicketCreated { resolved_now } => {
                self.tickets_created += sign;
                self.tickets_created_resolved_now += sign * i64::from(resolved_now);
            }
            Fact::FirstResponse {
                nanos,
                business_nanos,
                sla_met,
            } => {
                self.first_response.record(nanos, sign);
                if let Some(business) = business_nanos {
                    self.first_response_business.record(business, sign);
                }
                self.first_response_sla.add(sla_met, sign);
            }
            Fact::TicketResolved {
                resolution_nanos,
                business_nanos,
                first_contact,
                reopened,
                sla_met,
            } => {
                self.resolution_sla.add(sla_met, sign);
                self.tickets_resolved += sign;
                self.resolution.record(resolution_nanos, sign);
                if let Some(business) = business_nanos {
                    self.resolution_business.record(business, sign);
                }
                self.first_contact_resolved += sign * i64::from(first_contact);
                self.reopened += sign * i64::from(reopened);
            }
            Fact::PostContactChurn {
                churned,
                csat_satisfied,
            } => {
                let churned = i64::from(churned);
                self.post_contact_tickets += sign;
                self.post_contact_churned += sign * churned;
                match csat_satisfied {
                    Some(true) => {
                        self.post_contact_satisfied += sign;
                        self.post_contact_satisfied_churned += sign * churned;
                    }
                    Some(false) => {
                        self.post_contact_unsatisfied += sign;
                        self.post_contact_unsatisfied_churned += sign * churned;
                    }
                    None => {}
                }
            }
            Fact::InteractionOpened {
                handle_nanos,
                on_social_channel,
                social,
            } => {
                self.interactions += sign;
                if let Some(nanos) = handle_nanos {
                    self.handle.record(nanos, sign);
                }
                self.social_mentions += sign * i64::from(on_social_channel);
                if let Some(social) = social {
                    self.social_negative += sign * i64::from(social.is_negative());
                    match social.kind {
                        SocialKind::QuestionTechnical => self.social_technical += sign,
                        SocialKind::QuestionAccount => self.social_account += sign,
                        SocialKind::Praise => self.social_praise += sign,
                        SocialKind::Mention | SocialKind::Complaint => {}
                    }
                }
            }
            Fact::SurveyAnswer { kind, score } => {
                let score = usize::from(score);
                match kind {
                    SurveyKind::Csat => self.csat[score - 1] += sign,
                    SurveyKind::Ces => self.ces[score - 1] += sign,
                    SurveyKind::Nps => self.nps[score] += sign,
                }
            }
            Fact::Review { score } => {
                self.reviews += sign;
                self.review_score_sum += sign * i64::from(score);
            }
            Fact::Churned => self.churned += sign,
        }
    }

    /// Adds `other` times `sign` into this aggregate.
    pub fn merge(&mut self, other: &Aggregate, sign: i64) {
        self.merge_counts(other, sign);
        for (mine, theirs) in self.histograms_mut().into_iter().zip(other.histograms()) {
            mine.merge(theirs, sign);
        }
    }

    /// Adds the counts of `other` (all but its histograms) times `sign`.
    fn merge_counts(&mut self, other: &Aggregate, sign: i64) {
        for (mine, theirs) in self.scalars_mut().into_iter().zip(other.scalars()) {
            *mine += theirs * sign;
        }
        for (mine, theirs) in self.scores_mut().zip(other.scores()) {
            *mine += theirs * sign;
        }
    }

    pub fn is_zero(&self) -> bool {
        self.scalars().iter().chain(self.scores()).all(|&c| c == 0)
            && self.histograms().iter().all(|h| h.is_zero())
    }

    /// True when no count is negative: a stored aggregate must never be.
    pub fn is_non_negative(&self) -> bool {
        self.scalars().iter().chain(self.scores()).all(|&c| c >= 0)
            && self.histograms().iter().all(|h| h.is_non_negative())
    }

    /// Whether adding `delta` leaves no count negative, given that none is
    /// now; looks only at what `delta` changes.
    pub fn stays_non_negative_with(&self, delta: &Aggregate) -> bool {
        let scalars = self.scalars().into_iter().zip(delta.scalars());
        let scores = self.scores().zip(delta.scores());
        scalars
            .chain(scores.map(|(mine, theirs)| (*mine, *theirs)))
            .all(|(mine, theirs)| mine + theirs >= 0)
            && self
                .histograms()
                .into_iter()
                .zip(delta.histograms())
                .all(|(mine, theirs)| mine.stays_non_negative_with(theirs))
    }

    fn histograms(&self) -> [&DurationHistogram; 5] {
        [
            &self.first_response,
            &self.resolution,
            &self.handle,
            &self.first_response_business,
            &self.resolution_business,
        ]
    }

    fn histograms_mut(&mut self) -> [&mut DurationHistogram; 5] {
        [
            &mut self.first_response,
            &mut self.resolution,
            &mut self.handle,
            &mut self.first_response_business,
            &mut self.resolution_business,
        ]
    }

    /// The survey score counts, CSAT, CES then NPS.
    fn scores(&self) -> impl Iterator<Item = &i64> {
        self.csat.iter().chain(&self.ces).chain(&self.nps)
    }

    fn scores_mut(&mut self) -> impl Iterator<Item = &mut i64> {
        self.csat
            .iter_mut()
            .chain(&mut self.ces)
            .chain(&mut self.nps)
    }

    /// Every other count, in the order of [`Aggregate::scalars_mut`].
    fn scalars(&self) -> [i64; 24] {
        [
            self.tickets_created,
            self.tickets_created_resolved_now,
            self.interactions,
            self.tickets_resolved,
            self.first_contact_resolved,
            self.reopened,
            self.reviews,
            self.review_score_sum,
            self.social_mentions,
            self.social_negative,
            self.social_technical,
            self.social_account,
            self.social_praise,
            self.churned,
            self.post_contact_tickets,
            self.post_contact_churned,
            self.post_contact_satisfied,
            self.post_contact_satisfied_churned,
            self.post_contact_unsatisfied,
            self.post_contact_unsatisfied_churned,
            self.first_response_sla.met,
            self.first_response_sla.breached,
            self.resolution_sla.met,
            self.resolution_sla.breached,
        ]
    }

    fn scalars_mut(&mut self) -> [&mut i64; 24] {
        [
            &mut self.tickets_created,
            &mut self.tickets_created_resolved_now,
            &mut self.interactions,
            &mut self.tickets_resolved,
            &mut self.first_contact_resolved,
            &mut self.reopened,
            &mut self.reviews,
            &mut self.review_score_sum,
            &mut self.social_mentions,
            &mut self.social_negative,
            &mut self.social_technical,
            &mut self.social_account,
            &mut self.social_praise,
            &mut self.churned,
            &mut self.post_contact_tickets,
            &mut self.post_contact_churned,
            &mut self.post_contact_satisfied,
            &mut self.post_contact_satisfied_churned,
            &mut self.post_contact_unsatisfied,
            &mut self.post_contact_unsatisfied_churned,
            &mut self.first_response_sla.met,
            &mut self.first_response_sla.breached,
            &mut self.resolution_sla.met,
            &mut self.resolution_sla.breached,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::stored::{HISTOGRAMS, SCALARS, SCORES, STORED_FIELDS};
    use super::*;
    use serde::de::DeserializeSeed;

    #[test]
    fn retracting_a_fact_returns_the_aggregate_to_zero() {
        let facts = [
            Fact::TicketCreated { resolved_now: true },
            Fact::TicketResolved {
                resolution_nanos: 5_000_000_000,
                business_nanos: Some(1_000_000_000),
                first_contact: true,
                reopened: false,
                sla_met: Some(false),
            },
            Fact::SurveyAnswer {
                kind: SurveyKind::Nps,
                score: 0,
            },
            Fact::PostContactChurn {
                churned: true,
                csat_satisfied: Some(false),
            },
        ];
        let mut aggregate = Aggregate::default();
        for fact in &facts {
            aggregate.add_fact(fact, 1);
        }
        assert!(!aggregate.is_zero());
        assert_eq!(aggregate.nps[0], 1);
        assert_eq!(aggregate.post_contact_unsatisfied_churned, 1);
        for fact in &facts {
            aggregate.add_fact(fact, -1);
        }
        assert!(aggregate.is_zero());
    }

    /// An aggregate from a few facts, each added or retracted.
    fn from_facts(facts: &[(u8, i64, bool)]) -> Aggregate {
        let mut aggregate = Aggregate::default();
        for &(kind, nanos, retract) in facts {
            let fact = match kind % 4 {
                0 => Fact::Review { score: 70 },
                1 => Fact::SurveyAnswer {
                    kind: SurveyKind::Csat,
                    score: 1 + (nanos % 5) as u8,
                },
                2 => Fact::InteractionOpened {
                    handle_nanos: Some(nanos),
                    on_social_channel: false,
                    social: None,
                },
                _ => Fact::FirstResponse {
                    nanos,
                    business_nanos: None,
                    sla_met: Some(nanos % 2 == 0),
                },
            };
            aggregate.add_fact(&fact, if retract { -1 } else { 1 });
        }
        aggregate
    }

    /// Few distinct durations, so that retractions meet what is there.
    fn nanos() -> impl proptest::strategy::Strategy<Value = i64> {
        proptest::sample::select(vec![0, 1_000, 7_000_000, 2_000_000_000, 2_100_000_000])
    }

    proptest::proptest! {
        /// The check that looks only at what a change touches says what adding
        /// it and checking every count would.
        #[test]
        fn the_quick_check_agrees_with_adding_and_checking_everything(
            base in proptest::collection::vec((0u8..4, nanos(), proptest::strategy::Just(false)), 0..12),
            delta in proptest::collection::vec((0u8..4, nanos(), proptest::bool::ANY), 0..6),
        ) {
            let base = from_facts(&base);
            let delta = from_facts(&delta);
            let mut sum = base.clone();
            sum.merge(&delta, 1);
            proptest::prop_assert_eq!(base.stays_non_negative_with(&delta), sum.is_non_negative());
        }
    }

    /// Counts as they come: mostly zero, sometimes at the ends of the range.
    fn stored_count() -> impl proptest::strategy::Strategy<Value = i64> {
        proptest::prop_oneof![
            6 => proptest::strategy::Just(0i64),
            2 => -3i64..40,
            1 => proptest::sample::select(vec![i64::MIN, i64::MAX, 1 << 40]),
        ]
    }

    /// Any aggregate: every count drawn on its own, every histogram from
    /// durations added or removed.
    fn any_aggregate() -> impl proptest::strategy::Strategy<Value = Aggregate> {
        use proptest::prelude::*;
        let histogram = prop::collection::vec((0i64..400_000_000_000_000, prop::bool::ANY), 0..8)
            .prop_map(|durations| {
                let mut histogram = DurationHistogram::default();
                for (nanos, remove) in durations {
                    histogram.record(nanos, if remove { -1 } else { 1 });
                }
                histogram
            });
        (
            prop::collection::vec(stored_count(), SCALARS),
            prop::collection::vec(stored_count(), SCORES),
            prop::collection::vec(
                prop_oneof![3 => Just(DurationHistogram::default()), 1 => histogram],
                HISTOGRAMS,
            ),
        )
            .prop_map(|(scalars, scores, histograms)| {
                let mut aggregate = Aggregate::default();
                for (slot, count) in aggregate.scalars_mut().into_iter().zip(scalars) {
                    *slot = count;
                }
                for (slot, count) in aggregate.scores_mut().zip(scores) {
                    *slot = count;
                }
                for (slot, histogram) in aggregate.histograms_mut().into_iter().zip(histograms) {
                    *slot = histogram;
                }
                aggregate
            })
    }

    proptest::proptest! {
        /// Adding a stored aggregate as it is read gives what decoding it
        /// and merging it does.
        #[test]
        fn adding_a_stored_aggregate_is_merging_it(
            base in proptest::collection::vec((0u8..4, nanos(), proptest::bool::ANY), 0..12),
            stored in proptest::collection::vec((0u8..4, nanos(), proptest::bool::ANY), 0..12),
            sign in proptest::sample::select(vec![1i64, -1]),
        ) {
            let (base, stored) = (from_facts(&base), from_facts(&stored));
            let bytes = postcard::to_stdvec(&stored).unwrap();
            let mut merged = base.clone();
            merged.merge(&stored, sign);
            let mut added = base;
            let mut deserializer = postcard::Deserializer::from_bytes(&bytes);
            added.add_stored(sign).deserialize(&mut deserializer).unwrap();
            proptest::prop_assert_eq!(added, merged);
        }

        /// A sum of aggregates, each added as it is or as it is stored,
        /// equals merging them one by one.
        #[test]
        fn a_sum_of_aggregates_is_merging_them(
            parts in proptest::collection::vec(
                (
                    proptest::collection::vec((0u8..4, nanos(), proptest::bool::ANY), 0..12),
                    proptest::sample::select(vec![1i64, -1]),
                    proptest::bool::ANY,
                ),
                0..8,
            ),
        ) {
            let mut merged = Aggregate::default();
            let mut sum = AggregateSum::default();
            for (facts, sign, is_stored) in &parts {
                let aggregate = &from_facts(facts);
                merged.merge(aggregate, *sign);
                if *is_stored {
                    let bytes = postcard::to_stdvec(aggregate).unwrap();
                    let mut deserializer = postcard::Deserializer::from_bytes(&bytes);
                    sum.add_stored(*sign).deserialize(&mut deserializer).unwrap();
                } else {
                    sum.add(aggregate, *sign);
                }
            }
            proptest::prop_assert_eq!(sum.finish(), merged);
        }

        #[test]
        fn an_aggregate_reads_back_as_it_was_stored(aggregate in any_aggregate()) {
            let bytes = postcard::to_stdvec(&aggregate).unwrap();
            let read: Aggregate = postcard::from_bytes(&bytes).unwrap();
            proptest::prop_assert_eq!(read, aggregate);
        }
    }

    #[test]
    fn each_field_reads_back_in_its_own_place() {
        for field in 0..SCALARS + SCORES {
            let mut aggregate = Aggregate::default();
            let value = field as i64 + 1;
            if field < SCALARS {
                *aggregate.scalars_mut()[field] = value;
            } else {
                *aggregate.scores_mut().nth(field - SCALARS).unwrap() = value;
            }
            let bytes = postcard::to_stdvec(&aggregate).unwrap();
            assert_eq!(
                postcard::from_bytes::<Aggregate>(&bytes).unwrap(),
                aggregate
            );
        }
        for field in 0..HISTOGRAMS {
            let mut aggregate = Aggregate::default();
            aggregate.histograms_mut()[field].record(1_000 * (field as i64 + 1), 1);
            let bytes = postcard::to_stdvec(&aggregate).unwrap();
            assert_eq!(
                postcard::from_bytes::<Aggregate>(&bytes).unwrap(),
                aggregate
            );
        }
    }

    #[test]
    fn an_aggregate_stores_only_what_is_not_zero() {
        assert_eq!(postcard::to_stdvec(&Aggregate::default()).unwrap().len(), 2);
        let mut one_interaction = Aggregate::default();
        one_interaction.add_fact(
            &Fact::InteractionOpened {
                handle_nanos: Some(300_000_000_000),
                on_social_channel: false,
                social: None,
            },
            1,
        );
        let stored = postcard::to_stdvec(&one_interaction).unwrap().len();
        assert!(stored <= 20, "one interaction took {stored} bytes");
    }

    #[test]
    fn a_damaged_mask_or_a_missing_field_does_not_read() {
        // A mask naming a field past the last.
        let mask = postcard::to_stdvec(&(1u8, 1u64 << STORED_FIELDS)).unwrap();
        assert!(postcard::from_bytes::<Aggregate>(&mask).is_err());
        // Two fields named, one given (and the length saying so).
        let short = postcard::to_stdvec(&(2u8, 0b11u64, 5i64)).unwrap();
        assert!(postcard::from_bytes::<Aggregate>(&short).is_err());
        // Two fields named, three given (and the length saying so).
        let long = postcard::to_stdvec(&(4u8, 0b11u64, 5i64, 6i64, 7i64)).unwrap();
        assert!(postcard::from_bytes::<Aggregate>(&long).is_err());
        // The same with the right length reads.
        let right = postcard::to_stdvec(&(3u8, 0b11u64, 5i64, 6i64)).unwrap();
        let read = postcard::from_bytes::<Aggregate>(&right).unwrap();
        assert_eq!(
            (read.tickets_created, read.tickets_created_resolved_now),
            (5, 6)
        );
    }

    #[test]
    fn merging_with_minus_one_subtracts() {
        let mut a = Aggregate::default();
        a.add_fact(&Fact::Review { score: 80 }, 1);
        a.add_fact(&Fact::Churned, 1);
        let copy = a.clone();
        a.merge(&copy, 1);
        assert_eq!(a.review_score_sum, 160);
        a.merge(&copy, -1);
        assert_eq!(a, copy);
    }
}
