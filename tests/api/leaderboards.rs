//! Leaderboards that respect sample size: `min_sample` leaves out scopes with
//! too few items, `by_confidence_bound` ranks by the end of the 95% interval
//! the sample vouches for, so 33 perfect answers do not outrank 62 near-perfect.

use support_metrics::proto::v1 as pb;
use tonic::Code;

use crate::helpers::*;

/// `answers` CSAT answers for `team`, the first `satisfied` of them a 5, the rest a 1.
fn csat_answers(team: &str, answers: usize, satisfied: usize) -> Vec<pb::Record> {
    let mut records = Vec::new();
    for n in 0..answers {
        records.push(record_from_json(&format!(
            r#"{{"interaction": {{"interaction_id": "{team}-i{n}", "revision": 1, "ticket_id": "{team}-T{n}", "team_id": "{team}", "channel": "CHAT", "opened_at": "2026-03-02T09:00:00Z"}}}}"#
        )));
        let score = if n < satisfied { 5 } else { 1 };
        records.push(record_from_json(&format!(
            r#"{{"survey_response": {{"response_id": "{team}-s{n}", "revision": 1, "interaction_id": "{team}-i{n}", "kind": "CSAT", "score": {score}, "submitted_at": "2026-03-02T12:00:00Z"}}}}"#
        )));
    }
    records
}

/// The Wilson score interval, written out independently of the service.
fn wilson(successes: f64, n: f64) -> (f64, f64) {
    let z = 1.959963984540054f64;
    let p = successes / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
    ((centre - half) * 100.0, (centre + half) * 100.0)
}

async fn board(
    app: &mut TestApp,
    min_sample: u64,
    by_confidence_bound: bool,
    ascending: bool,
) -> Result<Vec<String>, tonic::Status> {
    let response = app
        .scorecards
        .list_scorecards(pb::ListScorecardsRequest {
            scope_kind: pb::ScopeKind::Team as i32,
            window: Some(window("2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z")),
            order_by: pb::Metric::CsatPercent as i32,
            ascending,
            min_sample,
            by_confidence_bound,
            ..Default::default()
        })
        .await?;
    Ok(response
        .into_inner()
        .scorecards
        .into_iter()
        .map(|row| row.scope.unwrap().team_id)
        .collect())
}

#[tokio::test]
async fn a_leaderboard_by_confidence_bound_ranks_62_answers_above_33() {
    let mut records = csat_answers("small", 33, 33);
    records.extend(csat_answers("big", 62, 61));
    records.extend(csat_answers("poor", 40, 20));
    let mut app = spawn_app_holding(records).await;

    // By value: 100% (33 answers) above 98.4% (62 answers).
    assert_eq!(
        board(&mut app, 0, false, false).await.unwrap(),
        ["small", "big", "poor"]
    );

    // The Wilson lower bounds, computed here: big's is the higher.
    let (small_lower, small_upper) = wilson(33.0, 33.0);
    let (big_lower, big_upper) = wilson(61.0, 62.0);
    assert!(big_lower > small_lower, "{big_lower} vs {small_lower}");
    assert_eq!(
        board(&mut app, 0, true, false).await.unwrap(),
        ["big", "small", "poor"]
    );
    // Ascending ranks by the upper bound: the surely worst first.
    let (_, poor_upper) = wilson(20.0, 40.0);
    assert!(poor_upper < big_upper && big_upper < small_upper);
    assert_eq!(
        board(&mut app, 0, true, true).await.unwrap(),
        ["poor", "big", "small"]
    );

    // min_sample leaves out scopes with fewer answers.
    assert_eq!(
        board(&mut app, 40, false, false).await.unwrap(),
        ["big", "poor"]
    );
    assert_eq!(board(&mut app, 62, false, false).await.unwrap(), ["big"]);
    assert!(board(&mut app, 63, false, false).await.unwrap().is_empty());
}

#[tokio::test]
async fn ordering_by_confidence_bound_needs_a_metric_with_an_interval() {
    let mut app = spawn_app_holding(csat_answers("small", 3, 3)).await;
    let status = app
        .scorecards
        .list_scorecards(pb::ListScorecardsRequest {
            scope_kind: pb::ScopeKind::Team as i32,
            window: Some(window("2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z")),
            order_by: pb::Metric::FrtMean as i32,
            by_confidence_bound: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&status), ["by_confidence_bound"]);
}
