//! Metric values from an aggregate (SPEC §3), targets and their status, and the
//! backlog summary. A value with no underlying data is `None`, never 0.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::aggregate::{Aggregate, SlaCounts};
use super::records::Priority;
use super::sketch::DurationHistogram;
use super::time::{Instant, NANOS_PER_SECOND};

/// Count, exact mean and approximate percentiles of durations, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DurationSummary {
    pub count: u64,
    pub mean_seconds: f64,
    pub p50_seconds: f64,
    pub p90_seconds: f64,
    pub p99_seconds: f64,
}

impl DurationSummary {
    fn of(histogram: &DurationHistogram) -> Option<DurationSummary> {
        Some(DurationSummary {
            count: u64::try_from(histogram.count()).ok().filter(|&c| c > 0)?,
            mean_seconds: histogram.mean_seconds()?,
            p50_seconds: histogram.quantile_seconds(0.5)?,
            p90_seconds: histogram.quantile_seconds(0.9)?,
            p99_seconds: histogram.quantile_seconds(0.99)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CsatSummary {
    pub responses: u64,
    pub satisfied: u64,
    pub satisfied_percent: f64,
    pub mean_score: f64,
    pub score_counts: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CesSummary {
    pub responses: u64,
    pub mean_score: f64,
    pub easy: u64,
    pub easy_percent: f64,
    pub score_counts: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NpsSummary {
    pub responses: u64,
    pub promoters: u64,
    pub passives: u64,
    pub detractors: u64,
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QualitySummary {
    pub reviews: u64,
    pub mean_score: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SocialSummary {
    pub mentions: u64,
    pub negative: u64,
    pub negative_percent: Option<f64>,
    pub technical_questions: u64,
    pub account_questions: u64,
    pub praise: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChurnSummary {
    pub churn_events: u64,
    pub resolved_tickets_with_customer: u64,
    pub churned_after_resolution: u64,
    pub post_contact_churn_percent: Option<f64>,
    pub satisfied_resolved_tickets: u64,
    pub satisfied_churned: u64,
    pub satisfied_churn_percent: Option<f64>,
    pub unsatisfied_resolved_tickets: u64,
    pub unsatisfied_churned: u64,
    pub unsatisfied_churn_percent: Option<f64>,
}

/// Tickets that met and missed an SLA target (of those whose team had one).
#[derive(Debug, Clone, PartialEq)]
pub struct SlaSummary {
    pub achieved: u64,
    pub breached: u64,
    /// achieved / (achieved + breached) × 100.
    pub achieved_percent: f64,
}

impl SlaSummary {
    fn of(counts: SlaCounts) -> Option<SlaSummary> {
        let (achieved, breached) = (count(counts.met), count(counts.breached));
        Some(SlaSummary {
            achieved,
            breached,
            achieved_percent: percent(achieved, achieved + breached)?,
        })
    }
}

/// z of a two-sided 95% normal interval.
const Z_95: f64 = 1.959_963_984_540_054;

/// Pseudo-answers the NPS interval adds (¾ promoter, 1½ passive, ¾ detractor).
const NPS_PSEUDO_ANSWERS: f64 = 3.0;

/// The 95% interval of a net promoter score, in NPS points (−100…100).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NpsInterval {
    /// Half the width of the interval.
    pub margin_of_error: f64,
    pub lower: f64,
    pub upper: f64,
}

/// The sample behind a rate and its 95% Wilson score interval, in percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Confidence {
    pub sample_size: u64,
    pub lower_percent: f64,
    pub upper_percent: f64,
}

impl Confidence {
    /// The Wilson score interval of `successes` out of `sample_size` (Wilson 1927;
    /// unlike the normal approximation it stays inside 0–100 and is useful for
    /// small samples and rates near 0 or 100). Absent for an empty sample.
    pub fn wilson(successes: u64, sample_size: u64) -> Option<Confidence> {
        if sample_size == 0 || successes > sample_size {
            return None;
        }
        let n = sample_size as f64;
        let p = successes as f64 / n;
        let z2 = Z_95 * Z_95;
        let denominator = 1.0 + z2 / n;
        let centre = (p + z2 / (2.0 * n)) / denominator;
        let half_width = Z_95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
        // At p = 0 or 1 one bound is exactly 0 or 100; the formula gets there
        // only up to rounding.
        Some(Confidence {
            sample_size,
            lower_percent: if successes == 0 {
                0.0
            } else {
                (centre - half_width) * 100.0
            },
            upper_percent: if successes == sample_size {
                100.0
            } else {
                (centre + half_width) * 100.0
            },
        })
    }
}

/// The rates of a scorecard that carry a confidence interval: each is a share of
/// a count of independent items (answers, tickets, mentions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    CsatSatisfied,
    CesEasy,
    Resolution,
    FirstContactResolution,
    Reopen,
    SocialNegative,
    PostContactChurn,
    SatisfiedChurn,
    UnsatisfiedChurn,
    FirstResponseSla,
    ResolutionSla,
}

/// Every windowed metric of one scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub tickets_created: u64,
    pub interactions: u64,
    pub tickets_resolved: u64,
    pub tickets_created_resolved_now: u64,
    pub resolution_rate_percent: Option<f64>,
    pub first_contact_resolved: u64,
    pub fcr_rate_percent: Option<f64>,
    pub reopened: u64,
    pub reopen_rate_percent: Option<f64>,
    pub first_response_time: Option<DurationSummary>,
    pub resolution_time: Option<DurationSummary>,
    pub handle_time: Option<DurationSummary>,
    /// First response and resolution time in working time, over the facts of
    /// teams with a business calendar.
    pub first_response_business_time: Option<DurationSummary>,
    pub resolution_business_time: Option<DurationSummary>,
    /// SLA outcomes of first responses and of resolutions in the window.
    pub first_response_sla: Option<SlaSummary>,
    pub resolution_sla: Option<SlaSummary>,
    pub csat: Option<CsatSummary>,
    pub ces: Option<CesSummary>,
    pub nps: Option<NpsSummary>,
    pub survey_response_rate_percent: Option<f64>,
    pub quality: Option<QualitySummary>,
    pub social: SocialSummary,
    pub churn: ChurnSummary,
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// `part / whole × 100`, absent when `whole` is 0.
pub fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

fn counts(values: &[i64]) -> Vec<u64> {
    values.iter().map(|&v| count(v)).collect()
}

impl Metrics {
    /// The metrics of an aggregate (a merge of the buckets that make up a window).
    pub fn from_aggregate(aggregate: &Aggregate) -> Metrics {
        let tickets_created = count(aggregate.tickets_created);
        let tickets_resolved = count(aggregate.tickets_resolved);
        let tickets_created_resolved_now = count(aggregate.tickets_created_resolved_now);
        let first_contact_resolved = count(aggregate.first_contact_resolved);
        let reopened = count(aggregate.reopened);

        let csat_counts = counts(&aggregate.csat);
        let csat_responses: u64 = csat_counts.iter().sum();
        let csat = (csat_responses > 0).then(|| {
            let satisfied = csat_counts[3] + csat_counts[4];
            let score_sum: u64 = csat_counts.iter().zip(1u64..).map(|(c, s)| c * s).sum();
            CsatSummary {
                responses: csat_responses,
                satisfied,
                satisfied_percent: satisfied as f64 * 100.0 / csat_responses as f64,
                mean_score: score_sum as f64 / csat_responses as f64,
                score_counts: csat_counts.clone(),
            }
        });

        let ces_counts = counts(&aggregate.ces);
        let ces_responses: u64 = ces_counts.iter().sum();
        let ces = (ces_responses > 0).then(|| {
            let easy = ces_counts[4] + ces_counts[5] + ces_counts[6];
            let score_sum: u64 = ces_counts.iter().zip(1u64..).map(|(c, s)| c * s).sum();
            CesSummary {
                responses: ces_responses,
                mean_score: score_sum as f64 / ces_responses as f64,
                easy,
                easy_percent: easy as f64 * 100.0 / ces_responses as f64,
                score_counts: ces_counts.clone(),
            }
        });

        let nps_counts = counts(&aggregate.nps);
        let nps_responses: u64 = nps_counts.iter().sum();
        let nps = (nps_responses > 0).then(|| {
            let promoters = nps_counts[9] + nps_counts[10];
            let passives = nps_counts[7] + nps_counts[8];
            let detractors: u64 = nps_counts[..7].iter().sum();
            NpsSummary {
                responses: nps_responses,
                promoters,
                passives,
                detractors,
                score: (promoters as f64 - detractors as f64) * 100.0 / nps_responses as f64,
            }
        });

        let reviews = count(aggregate.reviews);
        let quality = (reviews > 0).then(|| QualitySummary {
            reviews,
            mean_score: aggregate.review_score_sum as f64 / reviews as f64,
        });

        let mentions = count(aggregate.social_mentions);
        let negative = count(aggregate.social_negative);
        let post_contact = count(aggregate.post_contact_tickets);
        let post_contact_churned = count(aggregate.post_contact_churned);
        let satisfied = count(aggregate.post_contact_satisfied);
        let satisfied_churned = count(aggregate.post_contact_satisfied_churned);
        let unsatisfied = count(aggregate.post_contact_unsatisfied);
        let unsatisfied_churned = count(aggregate.post_contact_unsatisfied_churned);

        Metrics {
            tickets_created,
            interactions: count(aggregate.interactions),
            tickets_resolved,
            tickets_created_resolved_now,
            resolution_rate_percent: percent(tickets_created_resolved_now, tickets_created),
            first_contact_resolved,
            fcr_rate_percent: percent(first_contact_resolved, tickets_resolved),
            reopened,
            reopen_rate_percent: percent(reopened, tickets_resolved),
            first_response_time: DurationSummary::of(&aggregate.first_response),
            resolution_time: DurationSummary::of(&aggregate.resolution),
            handle_time: DurationSummary::of(&aggregate.handle),
            first_response_business_time: DurationSummary::of(&aggregate.first_response_business),
            resolution_business_time: DurationSummary::of(&aggregate.resolution_business),
            first_response_sla: SlaSummary::of(aggregate.first_response_sla),
            resolution_sla: SlaSummary::of(aggregate.resolution_sla),
            survey_response_rate_percent: percent(csat_responses, tickets_resolved),
            csat,
            ces,
            nps,
            quality,
            social: SocialSummary {
                mentions,
                negative,
                negative_percent: percent(negative, mentions),
                technical_questions: count(aggregate.social_technical),
                account_questions: count(aggregate.social_account),
                praise: count(aggregate.social_praise),
            },
            churn: ChurnSummary {
                churn_events: count(aggregate.churned),
                resolved_tickets_with_customer: post_contact,
                churned_after_resolution: post_contact_churned,
                post_contact_churn_percent: percent(post_contact_churned, post_contact),
                satisfied_resolved_tickets: satisfied,
                satisfied_churned,
                satisfied_churn_percent: percent(satisfied_churned, satisfied),
                unsatisfied_resolved_tickets: unsatisfied,
                unsatisfied_churned,
                unsatisfied_churn_percent: percent(unsatisfied_churned, unsatisfied),
            },
        }
    }

    /// The (successes, sample size) a rate is computed from.
    pub fn rate_counts(&self, rate: Rate) -> (u64, u64) {
        let answers = |responses: Option<(u64, u64)>| responses.unwrap_or((0, 0));
        let sla = |summary: &Option<SlaSummary>| {
            summary
                .as_ref()
                .map_or((0, 0), |s| (s.achieved, s.achieved + s.breached))
        };
        match rate {
            Rate::CsatSatisfied => answers(self.csat.as_ref().map(|c| (c.satisfied, c.responses))),
            Rate::CesEasy => answers(self.ces.as_ref().map(|c| (c.easy, c.responses))),
            Rate::Resolution => (self.tickets_created_resolved_now, self.tickets_created),
            Rate::FirstContactResolution => (self.first_contact_resolved, self.tickets_resolved),
            Rate::Reopen => (self.reopened, self.tickets_resolved),
            Rate::SocialNegative => (self.social.negative, self.social.mentions),
            Rate::PostContactChurn => (
                self.churn.churned_after_resolution,
                self.churn.resolved_tickets_with_customer,
            ),
            Rate::SatisfiedChurn => (
                self.churn.satisfied_churned,
                self.churn.satisfied_resolved_tickets,
            ),
            Rate::UnsatisfiedChurn => (
                self.churn.unsatisfied_churned,
                self.churn.unsatisfied_resolved_tickets,
            ),
            Rate::FirstResponseSla => sla(&self.first_response_sla),
            Rate::ResolutionSla => sla(&self.resolution_sla),
        }
    }

    /// A rate's sample and 95% Wilson interval; absent when the sample is empty.
    pub fn confidence(&self, rate: Rate) -> Option<Confidence> {
        let (successes, sample_size) = self.rate_counts(rate);
        Confidence::wilson(successes, sample_size)
    }

    /// The 95% interval of the NPS, in NPS points, by the adjusted Wald method
    /// for a net score (Sauro & Lewis; Rocks 2016): add three pseudo-answers,
    /// ¾ of a promoter, ¾ of a detractor and 1½ passives, then take the normal
    /// interval of a score of +1, 0 or −1 per answer around the adjusted shares.
    /// Unlike the plain Wald interval it is wide for one answer and never 0 when
    /// every answer agrees. Absent without answers.
    pub fn nps_interval(&self) -> Option<NpsInterval> {
        let nps = self.nps.as_ref().filter(|n| n.responses > 0)?;
        let n = nps.responses as f64 + NPS_PSEUDO_ANSWERS;
        let promoters = (nps.promoters as f64 + NPS_PSEUDO_ANSWERS / 4.0) / n;
        let detractors = (nps.detractors as f64 + NPS_PSEUDO_ANSWERS / 4.0) / n;
        let centre = promoters - detractors;
        let variance = promoters + detractors - centre.powi(2);
        let margin = Z_95 * (variance.max(0.0) / n).sqrt();
        Some(NpsInterval {
            margin_of_error: margin * 100.0,
            lower: ((centre - margin) * 100.0).max(-100.0),
            upper: ((centre + margin) * 100.0).min(100.0),
        })
    }

    /// How many items a metric's value is computed from: answers for survey
    /// metrics, tickets for ticket rates and times, interactions for handle time.
    pub fn sample_size(&self, metric: Metric) -> u64 {
        let durations = |summary: Option<DurationSummary>| summary.map_or(0, |d| d.count);
        match metric {
            Metric::TicketsCreated | Metric::ResolutionRate => self.tickets_created,
            Metric::Interactions => self.interactions,
            Metric::TicketsResolved
            | Metric::FcrRate
            | Metric::ReopenRate
            | Metric::SurveyResponseRate => self.tickets_resolved,
            Metric::CsatPercent => self.csat.as_ref().map_or(0, |c| c.responses),
            Metric::CesMean | Metric::CesEasyPercent => {
                self.ces.as_ref().map_or(0, |c| c.responses)
            }
            Metric::NpsScore => self.nps.as_ref().map_or(0, |n| n.responses),
            Metric::QualityMean => self.quality.as_ref().map_or(0, |q| q.reviews),
            Metric::FrtMean | Metric::FrtP50 | Metric::FrtP90 => {
                durations(self.first_response_time)
            }
            Metric::ResolutionTimeMean | Metric::ResolutionTimeP90 => {
                durations(self.resolution_time)
            }
            Metric::AhtMean | Metric::AhtP90 => durations(self.handle_time),
            Metric::SocialNegativePercent => self.social.mentions,
            Metric::PostContactChurnPercent => self.churn.resolved_tickets_with_customer,
            Metric::FirstResponseSlaPercent => self.rate_counts(Rate::FirstResponseSla).1,
            Metric::ResolutionSlaPercent => self.rate_counts(Rate::ResolutionSla).1,
        }
    }

    /// The 95% interval `(lower, upper)` of a metric that has one (a rate's
    /// Wilson interval, the NPS's adjusted interval); absent without data and
    /// for means, percentiles and counts.
    pub fn interval(&self, metric: Metric) -> Option<(f64, f64)> {
        if metric == Metric::NpsScore {
            return self.nps_interval().map(|i| (i.lower, i.upper));
        }
        let confidence = self.confidence(metric.rate()?)?;
        Some((confidence.lower_percent, confidence.upper_percent))
    }

    /// The value of one metric, absent when it has no data.
    pub fn value(&self, metric: Metric) -> Option<f64> {
        let duration =
            |summary: Option<DurationSummary>, pick: fn(DurationSummary) -> f64| summary.map(pick);
        match metric {
            Metric::TicketsCreated => Some(self.tickets_created as f64),
            Metric::Interactions => Some(self.interactions as f64),
            Metric::TicketsResolved => Some(self.tickets_resolved as f64),
            Metric::CsatPercent => self.csat.as_ref().map(|c| c.satisfied_percent),
            Metric::CesMean => self.ces.as_ref().map(|c| c.mean_score),
            Metric::CesEasyPercent => self.ces.as_ref().map(|c| c.easy_percent),
            Metric::NpsScore => self.nps.as_ref().map(|n| n.score),
            Metric::ResolutionRate => self.resolution_rate_percent,
            Metric::FcrRate => self.fcr_rate_percent,
            Metric::SurveyResponseRate => self.survey_response_rate_percent,
            Metric::QualityMean => self.quality.as_ref().map(|q| q.mean_score),
            Metric::FrtMean => duration(self.first_response_time, |d| d.mean_seconds),
            Metric::FrtP50 => duration(self.first_response_time, |d| d.p50_seconds),
            Metric::FrtP90 => duration(self.first_response_time, |d| d.p90_seconds),
            Metric::ResolutionTimeMean => duration(self.resolution_time, |d| d.mean_seconds),
            Metric::ResolutionTimeP90 => duration(self.resolution_time, |d| d.p90_seconds),
            Metric::AhtMean => duration(self.handle_time, |d| d.mean_seconds),
            Metric::AhtP90 => duration(self.handle_time, |d| d.p90_seconds),
            Metric::ReopenRate => self.reopen_rate_percent,
            Metric::SocialNegativePercent => self.social.negative_percent,
            Metric::PostContactChurnPercent => self.churn.post_contact_churn_percent,
            Metric::FirstResponseSlaPercent => {
                self.first_response_sla.as_ref().map(|s| s.achieved_percent)
            }
            Metric::ResolutionSlaPercent => {
                self.resolution_sla.as_ref().map(|s| s.achieved_percent)
            }
        }
    }
}

/// Metrics that can carry a target or order a leaderboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Metric {
    TicketsCreated,
    Interactions,
    TicketsResolved,
    CsatPercent,
    CesMean,
    CesEasyPercent,
    NpsScore,
    ResolutionRate,
    FcrRate,
    SurveyResponseRate,
    QualityMean,
    FrtMean,
    FrtP50,
    FrtP90,
    ResolutionTimeMean,
    ResolutionTimeP90,
    AhtMean,
    AhtP90,
    ReopenRate,
    SocialNegativePercent,
    PostContactChurnPercent,
    FirstResponseSlaPercent,
    ResolutionSlaPercent,
}

/// Which way is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    AtLeast,
    AtMost,
}

impl Metric {
    /// The natural direction of the metric; volumes have none and take no target.
    pub fn direction(self) -> Option<Direction> {
        use Metric::*;
        match self {
            TicketsCreated | Interactions | TicketsResolved => None,
            CsatPercent
            | CesMean
            | CesEasyPercent
            | NpsScore
            | ResolutionRate
            | FcrRate
            | SurveyResponseRate
            | QualityMean
            | FirstResponseSlaPercent
            | ResolutionSlaPercent => Some(Direction::AtLeast),
            FrtMean
            | FrtP50
            | FrtP90
            | ResolutionTimeMean
            | ResolutionTimeP90
            | AhtMean
            | AhtP90
            | ReopenRate
            | SocialNegativePercent
            | PostContactChurnPercent => Some(Direction::AtMost),
        }
    }

    /// The proportion behind a percentage metric, which has a Wilson interval.
    pub fn rate(self) -> Option<Rate> {
        use Metric::*;
        match self {
            CsatPercent => Some(Rate::CsatSatisfied),
            CesEasyPercent => Some(Rate::CesEasy),
            ResolutionRate => Some(Rate::Resolution),
            FcrRate => Some(Rate::FirstContactResolution),
            ReopenRate => Some(Rate::Reopen),
            SocialNegativePercent => Some(Rate::SocialNegative),
            PostContactChurnPercent => Some(Rate::PostContactChurn),
            FirstResponseSlaPercent => Some(Rate::FirstResponseSla),
            ResolutionSlaPercent => Some(Rate::ResolutionSla),
            TicketsCreated | Interactions | TicketsResolved | CesMean | NpsScore
            | SurveyResponseRate | QualityMean | FrtMean | FrtP50 | FrtP90 | ResolutionTimeMean
            | ResolutionTimeP90 | AhtMean | AhtP90 => None,
        }
    }

    /// Whether the metric has a 95% interval to order by (a rate, or the NPS).
    pub fn has_interval(self) -> bool {
        self == Metric::NpsScore || self.rate().is_some()
    }
}

/// The targets of one team (or of the organisation default), by metric.
pub type Targets = BTreeMap<Metric, f64>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetStatus {
    Met,
    Missed,
    NoData,
    /// There is data, but less than the minimum sample the reader asked for.
    InsufficientData,
}

/// A target and how a scorecard does against it.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetResult {
    pub metric: Metric,
    pub direction: Direction,
    pub target: f64,
    pub actual: Option<f64>,
    /// How many items `actual` is computed from (see `Metrics::sample_size`).
    pub sample_size: u64,
    pub status: TargetStatus,
    pub from_organization_default: bool,
}

impl TargetResult {
    /// Not judged (INSUFFICIENT_DATA) when the metric has data from fewer than
    /// `min_sample` items; otherwise unchanged.
    pub fn with_min_sample(mut self, min_sample: u64) -> TargetResult {
        if self.actual.is_some() && self.sample_size < min_sample {
            self.status = TargetStatus::InsufficientData;
        }
        self
    }
}

/// Judges `metrics` against the team's own targets, falling back to the
/// organisation default for every metric the team sets none for. A metric
/// computed from fewer than `min_sample` items is INSUFFICIENT_DATA, not judged.
pub fn evaluate_targets(
    metrics: &Metrics,
    team: &Targets,
    organization_default: &Targets,
    min_sample: u64,
) -> Vec<TargetResult> {
    let mut effective: BTreeMap<Metric, (f64, bool)> = organization_default
        .iter()
        .map(|(&metric, &target)| (metric, (target, true)))
        .collect();
    effective.extend(
        team.iter()
            .map(|(&metric, &target)| (metric, (target, false))),
    );
    effective
        .into_iter()
        .filter_map(|(metric, (target, from_organization_default))| {
            let direction = metric.direction()?;
            let actual = metrics.value(metric);
            let sample_size = metrics.sample_size(metric);
            let status = match actual {
                None => TargetStatus::NoData,
                Some(actual) => {
                    let met = match direction {
                        Direction::AtLeast => actual >= target,
                        Direction::AtMost => actual <= target,
                    };
                    if met {
                        TargetStatus::Met
                    } else {
                        TargetStatus::Missed
                    }
                }
            };
            Some(
                TargetResult {
                    metric,
                    direction,
                    target,
                    actual,
                    sample_size,
                    status,
                    from_organization_default,
                }
                .with_min_sample(min_sample),
            )
        })
        .collect()
}

/// Age bands of the backlog, by lower bound in seconds (a band includes it).
pub const AGE_BAND_LOWER_BOUNDS: [i64; 6] = [0, 3600, 4 * 3600, 86_400, 3 * 86_400, 7 * 86_400];

/// How far ahead the backlog looks for tickets about to breach their SLA.
pub const SLA_DUE_SOON_NANOS: i64 = 3600 * NANOS_PER_SECOND;

/// An open ticket as the backlog counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenTicket {
    pub created_at: Instant,
    pub priority: Priority,
    /// In breach of its SLA after this moment; `None`: never.
    pub sla_breached_after: Option<Instant>,
}

/// Open tickets of a scope at a moment.
#[derive(Debug, Clone, PartialEq)]
pub struct BacklogSummary {
    pub as_of: Instant,
    pub open_tickets: u64,
    /// Low, normal, high, urgent.
    pub by_priority: [u64; 4],
    /// One count per age band.
    pub by_age: [u64; 6],
    pub oldest_age_seconds: Option<f64>,
    /// Open tickets past an SLA deadline at `as_of`.
    pub sla_breaching: u64,
    /// Open tickets not yet in breach that will be within the hour after `as_of`.
    pub sla_breaching_within_hour: u64,
}

impl BacklogSummary {
    /// Summarises open tickets. Tickets created after `as_of` did not exist
    /// then and are left out.
    pub fn summarize(as_of: Instant, open: impl IntoIterator<Item = OpenTicket>) -> BacklogSummary {
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
        for ticket in open {
            let age_nanos = as_of.0 - ticket.created_at.0;
            if age_nanos < 0 {
                continue;
            }
            summary.open_tickets += 1;
            summary.by_priority[ticket.priority as usize] += 1;
            let band = AGE_BAND_LOWER_BOUNDS
                .iter()
                .rposition(|&lower| age_nanos >= lower * NANOS_PER_SECOND)
                .unwrap_or(0);
            summary.by_age[band] += 1;
            oldest = Some(oldest.map_or(age_nanos, |o| o.max(age_nanos)));
            if let Some(after) = ticket.sla_breached_after {
                if as_of > after {
                    summary.sla_breaching += 1;
                } else if as_of.0.saturating_add(SLA_DUE_SOON_NANOS) > after.0 {
                    summary.sla_breaching_within_hour += 1;
                }
            }
        }
        summary.oldest_age_seconds = oldest.map(|nanos| nanos as f64 / NANOS_PER_SECOND as f64);
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::aggregate::Fact;
    use crate::domain::records::SurveyKind;

    fn aggregate_of(facts: &[Fact]) -> Aggregate {
        let mut aggregate = Aggregate::default();
        for fact in facts {
            aggregate.add_fact(fact, 1);
        }
        aggregate
    }

    #[test]
    fn metrics_without_data_are_absent_not_zero() {
        let metrics = Metrics::from_aggregate(&Aggregate::default());
        assert_eq!(metrics.tickets_created, 0);
        assert_eq!(metrics.resolution_rate_percent, None);
        assert_eq!(metrics.csat, None);
        assert_eq!(metrics.first_response_time, None);
        assert_eq!(metrics.social.negative_percent, None);
        assert_eq!(metrics.churn.post_contact_churn_percent, None);
    }

    #[test]
    fn nps_is_promoters_minus_detractors_in_percent() {
        let answers: Vec<Fact> = [10, 9, 8, 3, 0]
            .into_iter()
            .map(|score| Fact::SurveyAnswer {
                kind: SurveyKind::Nps,
                score,
            })
            .collect();
        let nps = Metrics::from_aggregate(&aggregate_of(&answers))
            .nps
            .unwrap();
        assert_eq!((nps.promoters, nps.passives, nps.detractors), (2, 1, 2));
        assert_eq!(nps.score, 0.0);
    }

    #[test]
    fn csat_counts_four_and_five_as_satisfied() {
        let answers: Vec<Fact> = [5, 4, 3, 1]
            .into_iter()
            .map(|score| Fact::SurveyAnswer {
                kind: SurveyKind::Csat,
                score,
            })
            .collect();
        let csat = Metrics::from_aggregate(&aggregate_of(&answers))
            .csat
            .unwrap();
        assert_eq!(csat.satisfied_percent, 50.0);
        assert_eq!(csat.mean_score, 13.0 / 4.0);
        assert_eq!(csat.score_counts, vec![1, 0, 1, 1, 1]);
    }

    #[test]
    fn team_targets_override_the_organization_default_and_follow_direction() {
        let metrics = Metrics::from_aggregate(&aggregate_of(&[
            Fact::SurveyAnswer {
                kind: SurveyKind::Csat,
                score: 5,
            },
            Fact::FirstResponse {
                nanos: 7200 * NANOS_PER_SECOND,
                business_nanos: None,
                sla_met: None,
            },
        ]));
        let organization = Targets::from([
            (Metric::CsatPercent, 85.0),
            (Metric::FrtP90, 3600.0),
            (Metric::NpsScore, 30.0),
        ]);
        let team = Targets::from([(Metric::FrtP90, 10_000.0)]);
        let results = evaluate_targets(&metrics, &team, &organization, 0);
        let status = |metric| {
            results
                .iter()
                .find(|r| r.metric == metric)
                .map(|r| (r.status, r.from_organization_default))
        };
        assert_eq!(status(Metric::CsatPercent), Some((TargetStatus::Met, true)));
        assert_eq!(status(Metric::FrtP90), Some((TargetStatus::Met, false)));
        assert_eq!(status(Metric::NpsScore), Some((TargetStatus::NoData, true)));
        let organization_only = evaluate_targets(&metrics, &Targets::new(), &organization, 0);
        assert_eq!(
            organization_only
                .iter()
                .find(|r| r.metric == Metric::FrtP90)
                .map(|r| r.status),
            Some(TargetStatus::Missed)
        );
    }

    #[test]
    fn wilson_intervals_match_published_values() {
        // Newcombe (1998), "Two-sided confidence intervals for the single
        // proportion", Table I: 81/263 -> 0.2553-0.3662, 0/10 -> 0-0.2775.
        let round = |c: Confidence| {
            (
                (c.lower_percent * 100.0).round() / 10_000.0,
                (c.upper_percent * 100.0).round() / 10_000.0,
            )
        };
        assert_eq!(
            Confidence::wilson(81, 263).map(round),
            Some((0.2553, 0.3662))
        );
        assert_eq!(Confidence::wilson(0, 10).map(round), Some((0.0, 0.2775)));
        let all = Confidence::wilson(10, 10).unwrap();
        assert_eq!(all.upper_percent, 100.0);
        assert!((all.lower_percent - 72.2467).abs() < 1e-3);
        assert_eq!(Confidence::wilson(0, 0), None);
        assert_eq!(Confidence::wilson(3, 2), None);
    }

    #[test]
    fn a_wilson_interval_narrows_as_the_sample_grows_and_holds_the_rate() {
        let mut previous_width = f64::INFINITY;
        for n in [4u64, 40, 400, 4000] {
            let c = Confidence::wilson(n * 3 / 4, n).unwrap();
            assert!(c.lower_percent < 75.0 && 75.0 < c.upper_percent);
            let width = c.upper_percent - c.lower_percent;
            assert!(width < previous_width, "{n}: {width} >= {previous_width}");
            previous_width = width;
        }
    }

    #[test]
    fn the_nps_interval_is_honest_about_few_or_unanimous_answers() {
        let nps_of = |scores: &[u8]| {
            let answers: Vec<Fact> = scores
                .iter()
                .map(|&score| Fact::SurveyAnswer {
                    kind: SurveyKind::Nps,
                    score,
                })
                .collect();
            Metrics::from_aggregate(&aggregate_of(&answers))
        };
        // By hand: one promoter is 1.75 promoters, 1.5 passives and 0.75
        // detractors of 4; shares 0.4375 and 0.1875, net 0.25, variance
        // 0.625 − 0.0625 = 0.5625, margin 1.96 × √(0.5625 / 4) = 1.96 × 0.375.
        let one = nps_of(&[10]).nps_interval().unwrap();
        assert!((one.margin_of_error - Z_95 * 37.5).abs() < 1e-9, "{one:?}");
        assert!((one.lower - (25.0 - Z_95 * 37.5)).abs() < 1e-9, "{one:?}");
        assert!((one.upper - (25.0 + Z_95 * 37.5)).abs() < 1e-9, "{one:?}");
        // Unanimous answers are not certainty, whichever way they go.
        for unanimous in [[10u8; 20], [0u8; 20]] {
            let interval = nps_of(&unanimous).nps_interval().unwrap();
            assert!(interval.margin_of_error > 5.0, "{interval:?}");
        }
        // The interval stays within −100…100 and narrows as answers grow.
        let few = nps_of(&[0, 0, 0]).nps_interval().unwrap();
        assert!(few.lower >= -100.0 && few.upper <= 100.0, "{few:?}");
        let mut previous = f64::INFINITY;
        for n in [4usize, 40, 400, 4_000] {
            let scores: Vec<u8> = (0..n).map(|i| [10, 9, 0, 6][i % 4]).collect();
            let interval = nps_of(&scores).nps_interval().unwrap();
            assert!(interval.lower < 0.0 && interval.upper > 0.0, "{interval:?}");
            assert!(interval.margin_of_error < previous);
            previous = interval.margin_of_error;
        }
        assert_eq!(nps_of(&[]).nps_interval(), None);
    }

    #[test]
    fn a_target_with_too_small_a_sample_is_not_judged() {
        let answers: Vec<Fact> = [5, 5, 1]
            .into_iter()
            .map(|score| Fact::SurveyAnswer {
                kind: SurveyKind::Csat,
                score,
            })
            .collect();
        let metrics = Metrics::from_aggregate(&aggregate_of(&answers));
        let targets = Targets::from([(Metric::CsatPercent, 85.0), (Metric::NpsScore, 0.0)]);
        let judged = |min_sample| {
            evaluate_targets(&metrics, &targets, &Targets::new(), min_sample)
                .into_iter()
                .map(|r| (r.metric, r.status, r.sample_size))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            judged(3),
            vec![
                (Metric::CsatPercent, TargetStatus::Missed, 3),
                (Metric::NpsScore, TargetStatus::NoData, 0),
            ]
        );
        assert_eq!(
            judged(4)[0],
            (Metric::CsatPercent, TargetStatus::InsufficientData, 3)
        );
        assert_eq!(judged(4)[1].1, TargetStatus::NoData);
    }

    #[test]
    fn backlog_bands_include_their_lower_bound() {
        let as_of = Instant::from_seconds(1_000_000);
        let ages = [
            0,
            3599,
            3600,
            4 * 3600,
            86_400 - 1,
            86_400,
            3 * 86_400,
            7 * 86_400,
            30 * 86_400,
        ];
        let open = ages.iter().map(|&age| OpenTicket {
            created_at: Instant::from_seconds(1_000_000 - age),
            priority: Priority::High,
            sla_breached_after: None,
        });
        let summary = BacklogSummary::summarize(as_of, open);
        assert_eq!(summary.by_age, [2, 1, 2, 1, 1, 2]);
        assert_eq!(summary.by_priority, [0, 0, 9, 0]);
        assert_eq!(summary.oldest_age_seconds, Some(30.0 * 86_400.0));
        assert_eq!(
            (summary.sla_breaching, summary.sla_breaching_within_hour),
            (0, 0)
        );
    }

    #[test]
    fn the_backlog_counts_tickets_past_their_deadline_and_those_due_within_the_hour() {
        let as_of = Instant::from_seconds(1_000_000);
        // Deadlines relative to as_of, in seconds; a ticket is in breach after its deadline.
        let deadlines = [-1, 0, 1, 3599, 3600, 7200];
        let open = deadlines.iter().map(|&d| OpenTicket {
            created_at: Instant::from_seconds(900_000),
            priority: Priority::Low,
            sla_breached_after: Some(Instant::from_seconds(1_000_000 + d)),
        });
        let summary = BacklogSummary::summarize(as_of, open);
        assert_eq!(summary.sla_breaching, 1);
        // 0 (in breach a moment from now), 1 and 3599; at 3600 the ticket is
        // still within its deadline an hour from now.
        assert_eq!(summary.sla_breaching_within_hour, 3);
    }
}
