//! The worked example of `shared/examples/README.md`: five tickets whose scorecard
//! numbers were worked out by hand, checked column by column over the wire.

use support_metrics::proto::v1 as pb;

use crate::helpers::*;

/// One column of the table in the example's README. `None` is "absent".
struct Expected {
    scope: pb::Scope,
    tickets_created: u64,
    interactions: u64,
    tickets_resolved: u64,
    resolution_rate: Option<f64>,
    fcr_rate: Option<f64>,
    reopen_rate: Option<f64>,
    frt: (u64, Option<f64>),
    resolution_time: (u64, Option<f64>),
    aht: (u64, Option<f64>),
    csat: (u64, Option<f64>),
    ces: (u64, Option<f64>),
    nps: (u64, Option<f64>),
    survey_response_rate: Option<f64>,
    quality: (u64, Option<f64>),
    social: (u64, u64),
    churn_events: u64,
    post_contact_churn: Option<f64>,
    churn_after_unsatisfied: Option<f64>,
    churn_after_satisfied: Option<f64>,
    backlog_open: u64,
    oldest_open_age: Option<f64>,
}

fn columns() -> Vec<Expected> {
    vec![
        Expected {
            scope: org(),
            tickets_created: 5,
            interactions: 7,
            tickets_resolved: 3,
            resolution_rate: Some(60.0),
            fcr_rate: Some(200.0 / 3.0),
            reopen_rate: Some(0.0),
            frt: (4, Some(1087.5)),
            resolution_time: (3, Some(30200.0)),
            aht: (5, Some(768.0)),
            csat: (2, Some(50.0)),
            ces: (1, Some(3.0)),
            nps: (1, Some(100.0)),
            survey_response_rate: Some(200.0 / 3.0),
            quality: (1, Some(80.0)),
            social: (1, 1),
            churn_events: 0,
            post_contact_churn: Some(100.0 / 3.0),
            churn_after_unsatisfied: Some(100.0),
            churn_after_satisfied: Some(0.0),
            backlog_open: 2,
            oldest_open_age: Some(219_600.0),
        },
        Expected {
            scope: team("billing"),
            tickets_created: 4,
            interactions: 4,
            tickets_resolved: 2,
            resolution_rate: Some(75.0),
            fcr_rate: Some(100.0),
            reopen_rate: Some(0.0),
            frt: (3, Some(1440.0)),
            resolution_time: (2, Some(3900.0)),
            aht: (3, Some(600.0)),
            csat: (1, Some(100.0)),
            ces: (0, None),
            nps: (1, Some(100.0)),
            survey_response_rate: Some(50.0),
            quality: (0, None),
            social: (1, 1),
            churn_events: 0,
            post_contact_churn: Some(0.0),
            churn_after_unsatisfied: None,
            churn_after_satisfied: Some(0.0),
            backlog_open: 1,
            oldest_open_age: Some(32_400.0),
        },
        Expected {
            scope: team("tech"),
            tickets_created: 1,
            interactions: 3,
            tickets_resolved: 1,
            resolution_rate: Some(0.0),
            fcr_rate: Some(0.0),
            reopen_rate: Some(0.0),
            frt: (1, Some(30.0)),
            resolution_time: (1, Some(82_800.0)),
            aht: (2, Some(1020.0)),
            csat: (1, Some(0.0)),
            ces: (1, Some(3.0)),
            nps: (0, None),
            survey_response_rate: Some(100.0),
            quality: (1, Some(80.0)),
            social: (0, 0),
            churn_events: 0,
            post_contact_churn: Some(100.0),
            churn_after_unsatisfied: Some(100.0),
            churn_after_satisfied: None,
            backlog_open: 1,
            oldest_open_age: Some(219_600.0),
        },
        Expected {
            scope: agent("ben"),
            tickets_created: 1,
            interactions: 3,
            tickets_resolved: 1,
            resolution_rate: Some(0.0),
            fcr_rate: Some(0.0),
            reopen_rate: Some(0.0),
            frt: (1, Some(30.0)),
            resolution_time: (1, Some(82_800.0)),
            aht: (2, Some(1020.0)),
            csat: (1, Some(0.0)),
            ces: (1, Some(3.0)),
            nps: (0, None),
            survey_response_rate: Some(100.0),
            quality: (1, Some(80.0)),
            social: (0, 0),
            churn_events: 0,
            post_contact_churn: Some(100.0),
            churn_after_unsatisfied: Some(100.0),
            churn_after_satisfied: None,
            backlog_open: 1,
            oldest_open_age: Some(219_600.0),
        },
    ]
}

fn close(actual: Option<f64>, expected: Option<f64>, what: &str, scope: &pb::Scope) {
    match (actual, expected) {
        (Some(a), Some(e)) => assert!((a - e).abs() < 1e-9, "{what} of {scope:?}: {a} != {e}"),
        (a, e) => assert_eq!(a, e, "{what} of {scope:?}"),
    }
}

fn duration(stats: &Option<pb::DurationStats>) -> (u64, Option<f64>) {
    stats
        .as_ref()
        .map_or((0, None), |s| (s.count, Some(s.mean_seconds)))
}

fn check(card: &pb::Scorecard, expected: &Expected) {
    let scope = &expected.scope;
    let m = card.metrics.as_ref().unwrap();
    assert_eq!(
        m.tickets_created, expected.tickets_created,
        "tickets created of {scope:?}"
    );
    assert_eq!(
        m.interactions, expected.interactions,
        "interactions of {scope:?}"
    );
    assert_eq!(
        m.tickets_resolved, expected.tickets_resolved,
        "tickets resolved of {scope:?}"
    );
    close(
        m.resolution_rate_percent,
        expected.resolution_rate,
        "resolution rate",
        scope,
    );
    close(m.fcr_rate_percent, expected.fcr_rate, "FCR rate", scope);
    close(
        m.reopen_rate_percent,
        expected.reopen_rate,
        "reopen rate",
        scope,
    );
    for (what, actual, wanted) in [
        ("FRT", duration(&m.first_response_time), expected.frt),
        (
            "resolution time",
            duration(&m.resolution_time),
            expected.resolution_time,
        ),
        ("AHT", duration(&m.handle_time), expected.aht),
    ] {
        assert_eq!(actual.0, wanted.0, "{what} count of {scope:?}");
        close(actual.1, wanted.1, what, scope);
    }
    let csat = m
        .csat
        .as_ref()
        .map_or((0, None), |c| (c.responses, Some(c.satisfied_percent)));
    assert_eq!(csat.0, expected.csat.0, "CSAT responses of {scope:?}");
    close(csat.1, expected.csat.1, "CSAT %", scope);
    let ces = m
        .ces
        .as_ref()
        .map_or((0, None), |c| (c.responses, Some(c.mean_score)));
    assert_eq!(ces.0, expected.ces.0, "CES responses of {scope:?}");
    close(ces.1, expected.ces.1, "CES mean", scope);
    let nps = m
        .nps
        .as_ref()
        .map_or((0, None), |n| (n.responses, Some(n.score)));
    assert_eq!(nps.0, expected.nps.0, "NPS responses of {scope:?}");
    close(nps.1, expected.nps.1, "NPS", scope);
    close(
        m.survey_response_rate_percent,
        expected.survey_response_rate,
        "survey response rate",
        scope,
    );
    let quality = m
        .quality
        .as_ref()
        .map_or((0, None), |q| (q.reviews, Some(q.mean_score)));
    assert_eq!(quality.0, expected.quality.0, "reviews of {scope:?}");
    close(quality.1, expected.quality.1, "quality mean", scope);
    let social = m.social.as_ref().unwrap();
    assert_eq!(
        (social.mentions, social.negative),
        expected.social,
        "social of {scope:?}"
    );
    let churn = m.churn.as_ref().unwrap();
    assert_eq!(
        churn.churn_events, expected.churn_events,
        "churn events of {scope:?}"
    );
    close(
        churn.post_contact_churn_percent,
        expected.post_contact_churn,
        "post-contact churn",
        scope,
    );
    close(
        churn.unsatisfied_churn_percent,
        expected.churn_after_unsatisfied,
        "churn after unsatisfied",
        scope,
    );
    close(
        churn.satisfied_churn_percent,
        expected.churn_after_satisfied,
        "churn after satisfied",
        scope,
    );
    let backlog = card.backlog.as_ref().unwrap();
    assert_eq!(
        backlog.open_tickets, expected.backlog_open,
        "backlog of {scope:?}"
    );
    close(
        backlog.oldest_age_seconds,
        expected.oldest_open_age,
        "oldest open age",
        scope,
    );
}

#[tokio::test]
async fn every_number_of_the_worked_example_matches_the_hand_computed_table() {
    let mut app = spawn_app().await;
    let results = app.record_all(worked_example()).await;
    assert!(results.iter().all(|r| r.result
        == Some(pb::item_result::Result::Outcome(
            pb::Outcome::Created as i32
        ))));
    let window = window("2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z");
    for expected in columns() {
        let card = app
            .scorecard(
                expected.scope.clone(),
                window,
                Some(ts("2026-03-05T00:00:00Z")),
            )
            .await;
        check(&card, &expected);
    }
    assert_eq!(app.verify().await.mismatch_count, 0);
}

#[tokio::test]
async fn the_worked_example_gives_the_same_numbers_whatever_the_arrival_order() {
    let window = window("2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z");
    let mut records = worked_example();
    // Newest first: surveys, the review and the churn before their interactions,
    // the second contact of each ticket before the first.
    records.reverse();
    let mut app = spawn_app().await;
    app.record_all(records).await;
    for expected in columns() {
        let card = app
            .scorecard(
                expected.scope.clone(),
                window,
                Some(ts("2026-03-05T00:00:00Z")),
            )
            .await;
        check(&card, &expected);
    }
    assert_eq!(app.verify().await.mismatch_count, 0);
}
