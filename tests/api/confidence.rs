//! Confidence over the wire: every rate carries its sample and a 95% Wilson
//! interval, NPS its margin of error, and `min_sample` keeps small samples from
//! being judged against targets.
//!
//! The expected intervals were computed outside the service (Python, the Wilson
//! formula with z = 1.959963984540054) and are written out here.

use support_metrics::proto::v1 as pb;

use crate::helpers::*;

const DAY_START: &str = "2026-03-02T00:00:00Z";
const DAY_END: &str = "2026-03-03T00:00:00Z";

/// Twelve single-contact billing tickets on 2 March, ten resolved; ten CSAT
/// answers (eight satisfied) and four NPS answers (two promoters, two detractors).
fn records() -> Vec<pb::Record> {
    let mut records = Vec::new();
    for n in 0..12 {
        let opened = format!("2026-03-02T09:{n:02}:00Z");
        let mut interaction = pb::Interaction {
            interaction_id: format!("i{n}"),
            revision: 1,
            ticket_id: format!("T{n}"),
            team_id: "billing".into(),
            agent_id: "ana".into(),
            channel: pb::Channel::Chat as i32,
            opened_at: Some(ts(&opened)),
            ..Default::default()
        };
        if n < 10 {
            interaction.first_response_at = Some(ts(&format!("2026-03-02T10:{n:02}:00Z")));
            interaction.closed_at = Some(ts(&format!("2026-03-02T11:{n:02}:00Z")));
            interaction.resolved = true;
        }
        records.push(pb::Record {
            record: Some(pb::record::Record::Interaction(interaction)),
        });
    }
    let answer = |id: String, interaction: usize, kind: pb::SurveyKind, score: u32| pb::Record {
        record: Some(pb::record::Record::SurveyResponse(pb::SurveyResponse {
            response_id: id,
            revision: 1,
            interaction_id: format!("i{interaction}"),
            kind: kind as i32,
            score,
            submitted_at: Some(ts("2026-03-02T12:00:00Z")),
            comment: String::new(),
        })),
    };
    for n in 0..10 {
        let score = if n < 8 { 5 } else { 2 };
        records.push(answer(format!("csat{n}"), n, pb::SurveyKind::Csat, score));
    }
    for (n, score) in [10, 9, 0, 6].into_iter().enumerate() {
        records.push(answer(format!("nps{n}"), n, pb::SurveyKind::Nps, score));
    }
    records
}

fn assert_interval(
    name: &str,
    actual: Option<&pb::Confidence>,
    sample_size: u64,
    (lower, upper): (f64, f64),
) {
    let actual = actual.unwrap_or_else(|| panic!("{name}: no interval"));
    assert_eq!(actual.sample_size, sample_size, "{name}: sample size");
    assert!(
        (actual.lower_percent - lower).abs() < 1e-6 && (actual.upper_percent - upper).abs() < 1e-6,
        "{name}: [{}, {}], expected [{lower}, {upper}]",
        actual.lower_percent,
        actual.upper_percent
    );
}

#[tokio::test]
async fn every_rate_carries_its_sample_and_wilson_interval() {
    let mut app = spawn_app_holding(records()).await;
    let card = app
        .scorecard(team("billing"), window(DAY_START, DAY_END), None)
        .await;
    let metrics = card.metrics.expect("metrics");

    let csat = metrics.csat.as_ref().expect("csat");
    assert_eq!(csat.satisfied_percent, 80.0);
    assert_interval(
        "csat",
        csat.satisfied_confidence.as_ref(),
        10,
        (49.01624715366418, 94.33178485456247),
    );
    assert_interval(
        "resolution rate",
        metrics.resolution_rate_confidence.as_ref(),
        12,
        (55.19691377470266, 95.30348578161463),
    );
    // 10 of 10: the upper bound is exactly 100, the lower one well below.
    assert_interval(
        "fcr",
        metrics.fcr_rate_confidence.as_ref(),
        10,
        (72.24672001371107, 100.0),
    );
    assert_interval(
        "reopen",
        metrics.reopen_rate_confidence.as_ref(),
        10,
        (0.0, 100.0 - 72.24672001371107),
    );

    // NPS 0 from +1, +1, -1, -1; adjusted Wald: 2.75 promoters, 1.5 passives and
    // 2.75 detractors of 7, variance 5.5 / 7, margin 1.96 x sqrt(5.5 / 49) x 100.
    let nps = metrics.nps.as_ref().expect("nps");
    assert_eq!(nps.score, 0.0);
    assert_nps_interval(
        nps,
        (65.66461401266423, -65.66461401266423, 65.66461401266423),
    );

    // Rates without a sample have no interval (and no value).
    let social = metrics.social.as_ref().expect("social");
    assert_eq!(social.negative_percent, None);
    assert_eq!(social.negative_confidence, None);
    let churn = metrics.churn.as_ref().expect("churn");
    assert_eq!(churn.post_contact_churn_confidence, None);
    assert_eq!(metrics.ces, None);
}

#[tokio::test]
async fn a_target_below_the_minimum_sample_reads_insufficient_data() {
    let mut app = spawn_app_holding(records()).await;
    let targets = vec![
        pb::Target {
            metric: pb::Metric::CsatPercent as i32,
            value: 85.0,
        },
        pb::Target {
            metric: pb::Metric::ResolutionRate as i32,
            value: 80.0,
        },
        pb::Target {
            metric: pb::Metric::QualityMean as i32,
            value: 80.0,
        },
    ];
    app.scorecards
        .set_targets(pb::SetTargetsRequest {
            team_id: "billing".into(),
            targets,
        })
        .await
        .expect("set targets");

    let judged = |min_sample: u64| {
        let mut client = app.scorecards.clone();
        async move {
            let card = client
                .get_scorecard(pb::GetScorecardRequest {
                    scope: Some(team("billing")),
                    window: Some(window(DAY_START, DAY_END)),
                    min_sample,
                    ..Default::default()
                })
                .await
                .expect("scorecard")
                .into_inner()
                .scorecard
                .expect("scorecard");
            card.targets
                .iter()
                .map(|t| (t.metric(), t.status(), t.sample_size))
                .collect::<Vec<_>>()
        }
    };
    use pb::Metric::{CsatPercent, QualityMean, ResolutionRate};
    use pb::TargetStatus::{InsufficientData, Met, Missed, NoData};
    // CSAT 80% from 10 answers, resolution 83.3% from 12 tickets, no reviews.
    assert_eq!(
        judged(0).await,
        vec![
            (CsatPercent, Missed, 10),
            (ResolutionRate, Met, 12),
            (QualityMean, NoData, 0)
        ]
    );
    assert_eq!(
        judged(10).await,
        vec![
            (CsatPercent, Missed, 10),
            (ResolutionRate, Met, 12),
            (QualityMean, NoData, 0)
        ]
    );
    assert_eq!(
        judged(11).await,
        vec![
            (CsatPercent, InsufficientData, 10),
            (ResolutionRate, Met, 12),
            (QualityMean, NoData, 0)
        ]
    );
    assert_eq!(
        judged(13).await,
        vec![
            (CsatPercent, InsufficientData, 10),
            (ResolutionRate, InsufficientData, 12),
            (QualityMean, NoData, 0)
        ]
    );
}

fn assert_nps_interval(nps: &pb::NpsStats, (margin, lower, upper): (f64, f64, f64)) {
    let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
    assert!(
        close(nps.margin_of_error, margin)
            && close(nps.score_lower, lower)
            && close(nps.score_upper, upper),
        "{nps:?}, expected {margin} [{lower}, {upper}]"
    );
}

/// One promoter, or five detractors, are not certainty: the interval is wide.
#[tokio::test]
async fn an_nps_from_one_answer_or_unanimous_answers_has_a_wide_interval() {
    let nps_answer = |id: &str, interaction: &str, score: u32| pb::Record {
        record: Some(pb::record::Record::SurveyResponse(pb::SurveyResponse {
            response_id: id.into(),
            revision: 1,
            interaction_id: interaction.into(),
            kind: pb::SurveyKind::Nps as i32,
            score,
            submitted_at: Some(ts("2026-03-02T12:00:00Z")),
            comment: String::new(),
        })),
    };
    let contact = |id: &str, team: &str| {
        record_from_json(&format!(
            r#"{{"interaction": {{"interaction_id": "{id}", "revision": 1, "ticket_id": "T-{id}", "team_id": "{team}", "channel": "EMAIL", "opened_at": "2026-03-02T09:00:00Z"}}}}"#
        ))
    };
    let mut records = vec![contact("p", "praised"), nps_answer("n-p", "p", 10)];
    for n in 0..5 {
        let id = format!("d{n}");
        records.push(contact(&id, "panned"));
        records.push(nps_answer(&format!("n-{id}"), &id, 3));
    }
    let mut app = spawn_app_holding(records).await;
    // Expected values computed outside the service (Python, adjusted Wald).
    for (team_id, score, expected) in [
        (
            "praised",
            100.0,
            (73.49864942025202, -48.49864942025203, 98.49864942025202),
        ),
        (
            "panned",
            -100.0,
            (45.00854696583103, -100.0, -17.49145303416897),
        ),
    ] {
        let card = app
            .scorecard(team(team_id), window(DAY_START, DAY_END), None)
            .await;
        let nps = card
            .metrics
            .as_ref()
            .and_then(|m| m.nps.as_ref())
            .expect("nps");
        assert_eq!(nps.score, score);
        assert_nps_interval(nps, expected);
    }
}
