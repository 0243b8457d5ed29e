//! IngestService over the wire: idempotent writes (SPEC §4), validation with
//! field paths (§1, §6), batches, late feedback, team moves and durability.

use std::time::{SystemTime, UNIX_EPOCH};

use prost_types::{Duration, Timestamp};
use support_metrics::proto::v1 as pb;
use tonic::Code;

use crate::helpers::*;

/// A valid, open EMAIL interaction of agent `ana` and customer `c1`.
fn interaction(id: &str, ticket: &str, team: &str, opened_at: &str) -> pb::Interaction {
    pb::Interaction {
        interaction_id: id.into(),
        revision: 1,
        ticket_id: ticket.into(),
        team_id: team.into(),
        agent_id: "ana".into(),
        customer_id: "c1".into(),
        channel: pb::Channel::Email as i32,
        priority: pb::Priority::Normal as i32,
        opened_at: Some(ts(opened_at)),
        ..Default::default()
    }
}

fn survey(id: &str, interaction_id: &str, kind: pb::SurveyKind, score: u32) -> pb::SurveyResponse {
    pb::SurveyResponse {
        response_id: id.into(),
        revision: 1,
        interaction_id: interaction_id.into(),
        kind: kind as i32,
        score,
        submitted_at: Some(ts("2026-03-02T12:00:00Z")),
        comment: String::new(),
    }
}

fn review(id: &str, interaction_id: &str, score: u32) -> pb::QualityReview {
    pb::QualityReview {
        review_id: id.into(),
        revision: 1,
        interaction_id: interaction_id.into(),
        reviewer_id: "qa1".into(),
        score,
        reviewed_at: Some(ts("2026-03-02T13:00:00Z")),
    }
}

fn churn(id: &str, customer: &str) -> pb::CustomerEvent {
    pb::CustomerEvent {
        event_id: id.into(),
        revision: 1,
        customer_id: customer.into(),
        kind: pb::CustomerEventKind::Churned as i32,
        occurred_at: Some(ts("2026-03-03T00:00:00Z")),
    }
}

fn record(record: pb::record::Record) -> pb::Record {
    pb::Record {
        record: Some(record),
    }
}

/// A timestamp this many seconds from the system clock's now.
fn from_now(seconds: i64) -> Timestamp {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Timestamp {
        seconds: now + seconds,
        nanos: 0,
    }
}

/// The outcome of a successful single write.
fn outcome(response: Result<tonic::Response<pb::RecordResponse>, tonic::Status>) -> pb::Outcome {
    response.expect("write accepted").into_inner().outcome()
}

/// Asserts INVALID_ARGUMENT naming exactly these field paths (in any order).
fn assert_invalid(status: &tonic::Status, expected: &[&str]) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let mut named = bad_fields(status);
    named.sort();
    let mut expected: Vec<String> = expected.iter().map(|f| f.to_string()).collect();
    expected.sort();
    assert_eq!(named, expected, "{}", status.message());
}

fn item_outcome(result: &pb::ItemResult) -> Option<pb::Outcome> {
    match &result.result {
        Some(pb::item_result::Result::Outcome(o)) => pb::Outcome::try_from(*o).ok(),
        _ => None,
    }
}

fn item_error(result: &pb::ItemResult) -> &pb::ItemError {
    match &result.result {
        Some(pb::item_result::Result::Error(e)) => e,
        other => panic!("expected an item error, got {other:?}"),
    }
}

fn week() -> pb::Window {
    window("2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z")
}

async fn stats(app: &mut TestApp) -> pb::GetStatsResponse {
    app.admin
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect("stats")
        .into_inner()
}

async fn metrics(app: &mut TestApp, scope: pb::Scope) -> pb::ScorecardMetrics {
    app.scorecard(scope, week(), Some(ts("2026-03-10T00:00:00Z")))
        .await
        .metrics
        .expect("metrics")
}

/// No stored record names `scope` (any more): its scorecard is NOT_FOUND.
async fn assert_unknown(app: &mut TestApp, scope: pb::Scope) {
    let status = app
        .scorecards
        .get_scorecard(pb::GetScorecardRequest {
            scope: Some(scope.clone()),
            window: Some(week()),
            ..Default::default()
        })
        .await
        .expect_err("an unknown scope");
    assert_eq!(
        status.code(),
        tonic::Code::NotFound,
        "{scope:?}: {status:?}"
    );
}

async fn send_interaction(
    app: &mut TestApp,
    interaction: pb::Interaction,
) -> Result<tonic::Response<pb::RecordResponse>, tonic::Status> {
    app.ingest
        .record_interaction(pb::RecordInteractionRequest {
            interaction: Some(interaction),
        })
        .await
}

async fn send_survey(
    app: &mut TestApp,
    survey: pb::SurveyResponse,
) -> Result<tonic::Response<pb::RecordResponse>, tonic::Status> {
    app.ingest
        .record_survey_response(pb::RecordSurveyResponseRequest {
            survey_response: Some(survey),
        })
        .await
}

async fn send_review(
    app: &mut TestApp,
    review: pb::QualityReview,
) -> Result<tonic::Response<pb::RecordResponse>, tonic::Status> {
    app.ingest
        .record_quality_review(pb::RecordQualityReviewRequest {
            quality_review: Some(review),
        })
        .await
}

async fn send_event(
    app: &mut TestApp,
    event: pb::CustomerEvent,
) -> Result<tonic::Response<pb::RecordResponse>, tonic::Status> {
    app.ingest
        .record_customer_event(pb::RecordCustomerEventRequest {
            customer_event: Some(event),
        })
        .await
}

// ---------------------------------------------------------------- idempotency

#[tokio::test]
async fn recording_the_same_interaction_twice_is_a_duplicate_and_revisions_decide_updates() {
    let mut app = spawn_app().await;
    let mut first = interaction("i1", "T1", "billing", "2026-03-02T09:00:00Z");
    first.handle_time = Some(Duration {
        seconds: 600,
        nanos: 0,
    });
    assert_eq!(
        outcome(send_interaction(&mut app, first.clone()).await),
        pb::Outcome::Created
    );
    assert_eq!(
        outcome(send_interaction(&mut app, first.clone()).await),
        pb::Outcome::Duplicate
    );

    let mut second = first.clone();
    second.revision = 2;
    second.handle_time = Some(Duration {
        seconds: 1200,
        nanos: 0,
    });
    assert_eq!(
        outcome(send_interaction(&mut app, second.clone()).await),
        pb::Outcome::Updated
    );
    let aht = metrics(&mut app, team("billing"))
        .await
        .handle_time
        .unwrap();
    assert_eq!(
        (aht.count, aht.mean_seconds),
        (1, 1200.0),
        "the update replaced the old handle time"
    );

    // An older revision, even with other content, changes nothing.
    assert_eq!(
        outcome(send_interaction(&mut app, first.clone()).await),
        pb::Outcome::Stale
    );
    let mut conflicting = second.clone();
    conflicting.handle_time = Some(Duration {
        seconds: 60,
        nanos: 0,
    });
    let status = send_interaction(&mut app, conflicting)
        .await
        .expect_err("same revision, other content");
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");

    let card = metrics(&mut app, team("billing")).await;
    let aht = card.handle_time.unwrap();
    assert_eq!((aht.count, aht.mean_seconds), (1, 1200.0));
    assert_eq!((card.tickets_created, card.interactions), (1, 1));
    assert_eq!(stats(&mut app).await.interactions, 1);
    assert_eq!(app.verify().await.mismatch_count, 0);
}

#[tokio::test]
async fn recording_the_same_survey_response_twice_is_a_duplicate_and_revisions_decide_updates() {
    let mut app = spawn_app().await;
    send_interaction(
        &mut app,
        interaction("i1", "T1", "billing", "2026-03-02T09:00:00Z"),
    )
    .await
    .unwrap();
    let first = survey("s1", "i1", pb::SurveyKind::Csat, 5);
    assert_eq!(
        outcome(send_survey(&mut app, first.clone()).await),
        pb::Outcome::Created
    );
    assert_eq!(
        outcome(send_survey(&mut app, first.clone()).await),
        pb::Outcome::Duplicate
    );

    let mut second = first.clone();
    second.revision = 2;
    second.score = 2;
    assert_eq!(
        outcome(send_survey(&mut app, second.clone()).await),
        pb::Outcome::Updated
    );
    assert_eq!(
        outcome(send_survey(&mut app, first.clone()).await),
        pb::Outcome::Stale
    );

    let mut conflicting = second.clone();
    conflicting.comment = "changed my mind".into();
    let status = send_survey(&mut app, conflicting)
        .await
        .expect_err("conflict");
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");

    let csat = metrics(&mut app, team("billing")).await.csat.unwrap();
    assert_eq!((csat.responses, csat.satisfied), (1, 0));
    assert_eq!(csat.score_counts, vec![0, 1, 0, 0, 0]);
    assert_eq!(stats(&mut app).await.survey_responses, 1);
    assert_eq!(app.verify().await.mismatch_count, 0);
}

#[tokio::test]
async fn recording_the_same_quality_review_twice_is_a_duplicate_and_revisions_decide_updates() {
    let mut app = spawn_app().await;
    send_interaction(
        &mut app,
        interaction("i1", "T1", "billing", "2026-03-02T09:00:00Z"),
    )
    .await
    .unwrap();
    let first = review("r1", "i1", 60);
    assert_eq!(
        outcome(send_review(&mut app, first.clone()).await),
        pb::Outcome::Created
    );
    assert_eq!(
        outcome(send_review(&mut app, first.clone()).await),
        pb::Outcome::Duplicate
    );

    let mut second = first.clone();
    second.revision = 5;
    second.score = 90;
    assert_eq!(
        outcome(send_review(&mut app, second.clone()).await),
        pb::Outcome::Updated
    );
    assert_eq!(
        outcome(send_review(&mut app, first.clone()).await),
        pb::Outcome::Stale
    );

    let mut conflicting = second.clone();
    conflicting.score = 10;
    let status = send_review(&mut app, conflicting)
        .await
        .expect_err("conflict");
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");

    let quality = metrics(&mut app, agent("ana")).await.quality.unwrap();
    assert_eq!((quality.reviews, quality.mean_score), (1, 90.0));
    assert_eq!(stats(&mut app).await.quality_reviews, 1);
    assert_eq!(app.verify().await.mismatch_count, 0);
}

#[tokio::test]
async fn recording_the_same_customer_event_twice_is_a_duplicate_and_revisions_decide_updates() {
    let mut app = spawn_app().await;
    send_interaction(
        &mut app,
        interaction("i1", "T1", "billing", "2026-03-02T09:00:00Z"),
    )
    .await
    .unwrap();
    let first = churn("e1", "c1");
    assert_eq!(
        outcome(send_event(&mut app, first.clone()).await),
        pb::Outcome::Created
    );
    assert_eq!(
        outcome(send_event(&mut app, first.clone()).await),
        pb::Outcome::Duplicate
    );
    assert_eq!(
        metrics(&mut app, team("billing"))
            .await
            .churn
            .unwrap()
            .churn_events,
        1
    );

    // The update moves the churn out of the week.
    let mut second = first.clone();
    second.revision = 2;
    second.occurred_at = Some(ts("2026-03-20T00:00:00Z"));
    assert_eq!(
        outcome(send_event(&mut app, second.clone()).await),
        pb::Outcome::Updated
    );
    assert_eq!(
        outcome(send_event(&mut app, first.clone()).await),
        pb::Outcome::Stale
    );

    let mut conflicting = second.clone();
    conflicting.occurred_at = Some(ts("2026-03-21T00:00:00Z"));
    let status = send_event(&mut app, conflicting)
        .await
        .expect_err("conflict");
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");

    assert_eq!(
        metrics(&mut app, org()).await.churn.unwrap().churn_events,
        0
    );
    assert_eq!(stats(&mut app).await.customer_events, 1);
    assert_eq!(app.verify().await.mismatch_count, 0);
}

// ----------------------------------------------------------------- validation

#[tokio::test]
async fn an_interaction_with_many_problems_names_every_bad_field_in_one_answer() {
    let mut app = spawn_app().await;
    let mut bad = interaction("", "T1", "billing team!", "2026-03-02T10:00:00Z");
    bad.channel = pb::Channel::Unspecified as i32;
    bad.closed_at = Some(ts("2026-03-02T09:00:00Z"));
    bad.first_response_at = Some(from_now(2 * 86_400));
    bad.handle_time = Some(Duration {
        seconds: 8 * 86_400,
        nanos: 0,
    });
    bad.tags = (0..17).map(|i| format!("tag{i}")).collect();
    bad.social = Some(pb::SocialFacts {
        kind: pb::SocialKind::Mention as i32,
        sentiment: 0.0,
    });
    let status = send_interaction(&mut app, bad).await.expect_err("invalid");
    assert_invalid(
        &status,
        &[
            "interaction.interaction_id",
            "interaction.team_id",
            "interaction.channel",
            "interaction.closed_at",
            "interaction.first_response_at",
            "interaction.handle_time",
            "interaction.tags",
            "interaction.social",
        ],
    );
    assert_eq!(stats(&mut app).await.interactions, 0, "nothing was stored");
}

#[tokio::test]
async fn each_interaction_rule_names_its_own_field() {
    let mut app = spawn_app().await;
    type Mutation = fn(&mut pb::Interaction);
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "empty id",
            |i| i.interaction_id.clear(),
            "interaction.interaction_id",
        ),
        (
            "129-character id",
            |i| i.interaction_id = "x".repeat(129),
            "interaction.interaction_id",
        ),
        (
            "slash in ticket",
            |i| i.ticket_id = "T/1".into(),
            "interaction.ticket_id",
        ),
        (
            "empty ticket",
            |i| i.ticket_id.clear(),
            "interaction.ticket_id",
        ),
        (
            "space in team",
            |i| i.team_id = "bill ing".into(),
            "interaction.team_id",
        ),
        ("empty team", |i| i.team_id.clear(), "interaction.team_id"),
        (
            "bad agent",
            |i| i.agent_id = "ana#1".into(),
            "interaction.agent_id",
        ),
        (
            "bad customer",
            |i| i.customer_id = "c 1".into(),
            "interaction.customer_id",
        ),
        (
            "unspecified channel",
            |i| i.channel = pb::Channel::Unspecified as i32,
            "interaction.channel",
        ),
        ("unknown channel", |i| i.channel = 42, "interaction.channel"),
        (
            "unknown priority",
            |i| i.priority = 42,
            "interaction.priority",
        ),
        (
            "no opened_at",
            |i| i.opened_at = None,
            "interaction.opened_at",
        ),
        (
            "opened before 2000",
            |i| i.opened_at = Some(ts("1999-12-31T23:59:59Z")),
            "interaction.opened_at",
        ),
        (
            "opened 2 days in the future",
            |i| i.opened_at = Some(from_now(2 * 86_400)),
            "interaction.opened_at",
        ),
        (
            "closed before opened",
            |i| i.closed_at = Some(ts("2026-03-02T09:59:59Z")),
            "interaction.closed_at",
        ),
        (
            "first response before opened",
            |i| i.first_response_at = Some(ts("2026-03-02T09:00:00Z")),
            "interaction.first_response_at",
        ),
        (
            "resolved without closed_at",
            |i| i.resolved = true,
            "interaction.closed_at",
        ),
        (
            "handle time of 8 days",
            |i| {
                i.handle_time = Some(Duration {
                    seconds: 8 * 86_400,
                    nanos: 0,
                })
            },
            "interaction.handle_time",
        ),
        (
            "handle time just over 7 days",
            |i| {
                i.handle_time = Some(Duration {
                    seconds: 7 * 86_400,
                    nanos: 1,
                })
            },
            "interaction.handle_time",
        ),
        (
            "negative handle time",
            |i| {
                i.handle_time = Some(Duration {
                    seconds: -1,
                    nanos: 0,
                })
            },
            "interaction.handle_time",
        ),
        (
            "17 tags",
            |i| i.tags = (0..17).map(|n| format!("t{n}")).collect(),
            "interaction.tags",
        ),
        (
            "65-character tag",
            |i| i.tags = vec!["ok".into(), "x".repeat(65)],
            "interaction.tags[1]",
        ),
        (
            "empty tag",
            |i| i.tags = vec![String::new()],
            "interaction.tags[0]",
        ),
        (
            "social facts on EMAIL",
            |i| {
                i.social = Some(pb::SocialFacts {
                    kind: pb::SocialKind::Complaint as i32,
                    sentiment: -0.5,
                })
            },
            "interaction.social",
        ),
        (
            "social facts without kind",
            |i| {
                i.channel = pb::Channel::Social as i32;
                i.social = Some(pb::SocialFacts {
                    kind: 0,
                    sentiment: 0.0,
                })
            },
            "interaction.social.kind",
        ),
        (
            "sentiment above 1",
            |i| {
                i.channel = pb::Channel::Social as i32;
                i.social = Some(pb::SocialFacts {
                    kind: pb::SocialKind::Praise as i32,
                    sentiment: 1.5,
                })
            },
            "interaction.social.sentiment",
        ),
        (
            "NaN sentiment",
            |i| {
                i.channel = pb::Channel::Social as i32;
                i.social = Some(pb::SocialFacts {
                    kind: pb::SocialKind::Praise as i32,
                    sentiment: f64::NAN,
                })
            },
            "interaction.social.sentiment",
        ),
        (
            "negative nanos",
            |i| {
                i.opened_at = Some(Timestamp {
                    seconds: ts("2026-03-02T10:00:00Z").seconds,
                    nanos: -1,
                })
            },
            "interaction.opened_at",
        ),
    ];
    for (case, mutate, field) in cases {
        let mut raw = interaction("i1", "T1", "billing", "2026-03-02T10:00:00Z");
        mutate(&mut raw);
        let status = send_interaction(&mut app, raw)
            .await
            .expect_err(&format!("{case} is rejected"));
        assert_eq!(status.code(), Code::InvalidArgument, "{case}");
        assert_eq!(bad_fields(&status), vec![field.to_string()], "{case}");
    }
    assert_eq!(stats(&mut app).await.interactions, 0, "nothing was stored");
}

#[tokio::test]
async fn interaction_limits_are_inclusive() {
    let mut app = spawn_app().await;
    let mut edge = interaction(
        &"i".repeat(128),
        "T.1_a:b@c-d",
        "billing",
        "2000-01-01T00:00:00Z",
    );
    edge.channel = pb::Channel::Social as i32;
    edge.handle_time = Some(Duration {
        seconds: 7 * 86_400,
        nanos: 0,
    });
    edge.tags = (0..16).map(|n| format!("{n:0>64}")).collect();
    edge.social = Some(pb::SocialFacts {
        kind: pb::SocialKind::Complaint as i32,
        sentiment: -1.0,
    });
    edge.closed_at = edge.opened_at;
    edge.first_response_at = edge.opened_at;
    edge.resolved = true;
    assert_eq!(
        outcome(send_interaction(&mut app, edge).await),
        pb::Outcome::Created
    );

    let mut soon = interaction("i2", "T2", "billing", "2026-03-02T10:00:00Z");
    soon.opened_at = Some(from_now(23 * 3600));
    assert_eq!(
        outcome(send_interaction(&mut app, soon).await),
        pb::Outcome::Created
    );
}

#[tokio::test]
async fn survey_review_and_event_rules_name_their_fields() {
    let mut app = spawn_app().await;

    let mut csat_six = survey("s1", "i1", pb::SurveyKind::Csat, 6);
    let status = send_survey(&mut app, csat_six.clone()).await.unwrap_err();
    assert_invalid(&status, &["survey_response.score"]);
    csat_six.score = 0;
    let status = send_survey(&mut app, csat_six).await.unwrap_err();
    assert_invalid(&status, &["survey_response.score"]);

    let status = send_survey(&mut app, survey("s1", "i1", pb::SurveyKind::Nps, 11))
        .await
        .unwrap_err();
    assert_invalid(&status, &["survey_response.score"]);
    let status = send_survey(&mut app, survey("s1", "i1", pb::SurveyKind::Ces, 8))
        .await
        .unwrap_err();
    assert_invalid(&status, &["survey_response.score"]);

    let mut long_comment = survey("s1", "i1", pb::SurveyKind::Csat, 5);
    long_comment.comment = "é".repeat(2049); // 4,098 bytes in 2,049 characters
    let status = send_survey(&mut app, long_comment).await.unwrap_err();
    assert_invalid(&status, &["survey_response.comment"]);

    let mut unspecified = survey("", "", pb::SurveyKind::Unspecified, 3);
    unspecified.submitted_at = None;
    let status = send_survey(&mut app, unspecified).await.unwrap_err();
    assert_invalid(
        &status,
        &[
            "survey_response.response_id",
            "survey_response.interaction_id",
            "survey_response.kind",
            "survey_response.submitted_at",
        ],
    );

    let status = send_review(&mut app, review("r1", "i1", 101))
        .await
        .unwrap_err();
    assert_invalid(&status, &["quality_review.score"]);
    let mut no_reviewer = review("r1", "i1", 50);
    no_reviewer.reviewer_id.clear();
    no_reviewer.reviewed_at = Some(ts("1970-01-01T00:00:00Z"));
    let status = send_review(&mut app, no_reviewer).await.unwrap_err();
    assert_invalid(
        &status,
        &["quality_review.reviewer_id", "quality_review.reviewed_at"],
    );

    let mut no_kind = churn("e1", "c1");
    no_kind.kind = pb::CustomerEventKind::Unspecified as i32;
    let status = send_event(&mut app, no_kind).await.unwrap_err();
    assert_invalid(&status, &["customer_event.kind"]);
    let mut no_customer = churn("e1", "");
    no_customer.occurred_at = Some(from_now(2 * 86_400));
    let status = send_event(&mut app, no_customer).await.unwrap_err();
    assert_invalid(
        &status,
        &["customer_event.customer_id", "customer_event.occurred_at"],
    );

    // The limits themselves are accepted.
    let mut full_comment = survey("s2", "i1", pb::SurveyKind::Nps, 10);
    full_comment.comment = "x".repeat(4096);
    assert_eq!(
        outcome(send_survey(&mut app, full_comment).await),
        pb::Outcome::Created
    );
    assert_eq!(
        outcome(send_survey(&mut app, survey("s3", "i1", pb::SurveyKind::Ces, 7)).await),
        pb::Outcome::Created
    );
    assert_eq!(
        outcome(send_review(&mut app, review("r2", "i1", 100)).await),
        pb::Outcome::Created
    );
    let counts = stats(&mut app).await;
    assert_eq!(
        (
            counts.survey_responses,
            counts.quality_reviews,
            counts.customer_events
        ),
        (2, 1, 0)
    );
}

#[tokio::test]
async fn a_write_without_its_record_message_is_invalid_and_names_it() {
    let mut app = spawn_app().await;
    let status = app
        .ingest
        .record_interaction(pb::RecordInteractionRequest { interaction: None })
        .await
        .unwrap_err();
    assert_invalid(&status, &["interaction"]);
    let status = app
        .ingest
        .record_survey_response(pb::RecordSurveyResponseRequest {
            survey_response: None,
        })
        .await
        .unwrap_err();
    assert_invalid(&status, &["survey_response"]);
    let status = app
        .ingest
        .record_quality_review(pb::RecordQualityReviewRequest {
            quality_review: None,
        })
        .await
        .unwrap_err();
    assert_invalid(&status, &["quality_review"]);
    let status = app
        .ingest
        .record_customer_event(pb::RecordCustomerEventRequest {
            customer_event: None,
        })
        .await
        .unwrap_err();
    assert_invalid(&status, &["customer_event"]);
}

// -------------------------------------------------------------------- batches

#[tokio::test]
async fn a_batch_answers_one_result_per_item_in_order_and_invalid_items_name_their_fields() {
    let mut app = spawn_app().await;
    use pb::record::Record as R;
    let mut no_ticket = interaction("i2", "", "billing", "2026-03-02T10:00:00Z");
    no_ticket.channel = 0;
    let records = vec![
        record(R::Interaction(interaction(
            "i1",
            "T1",
            "billing",
            "2026-03-02T09:00:00Z",
        ))),
        record(R::Interaction(no_ticket)),
        record(R::SurveyResponse(survey(
            "s1",
            "i1",
            pb::SurveyKind::Csat,
            4,
        ))),
        record(R::SurveyResponse(survey(
            "s2",
            "i1",
            pb::SurveyKind::Csat,
            6,
        ))),
        pb::Record { record: None },
        record(R::QualityReview(review("r1", "i1", 70))),
        record(R::CustomerEvent(churn("e1", "c1"))),
        record(R::QualityReview(review("r2", "i1", 101))),
    ];
    let results = app
        .ingest
        .record_batch(pb::RecordBatchRequest { records })
        .await
        .expect("batch")
        .into_inner()
        .results;
    assert_eq!(results.len(), 8);
    for (position, result) in results.iter().enumerate() {
        assert_eq!(result.index as usize, position);
    }
    for valid in [0, 2, 5, 6] {
        assert_eq!(
            item_outcome(&results[valid]),
            Some(pb::Outcome::Created),
            "item {valid}"
        );
    }
    let expected: [(usize, &[&str]); 4] = [
        (1, &["interaction.ticket_id", "interaction.channel"]),
        (3, &["survey_response.score"]),
        (4, &["record"]),
        (7, &["quality_review.score"]),
    ];
    for (index, fields) in expected {
        let error = item_error(&results[index]);
        assert_eq!(error.code, "INVALID_ARGUMENT", "item {index}");
        let mut named: Vec<&str> = error
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        named.sort();
        let mut fields = fields.to_vec();
        fields.sort();
        assert_eq!(named, fields, "item {index}");
        assert!(error
            .field_violations
            .iter()
            .all(|v| !v.description.is_empty()));
    }

    let counts = stats(&mut app).await;
    assert_eq!(
        (
            counts.interactions,
            counts.survey_responses,
            counts.quality_reviews,
            counts.customer_events
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(
        metrics(&mut app, team("billing"))
            .await
            .csat
            .unwrap()
            .responses,
        1
    );
}

#[tokio::test]
async fn an_already_exists_item_inside_a_batch_does_not_fail_the_others() {
    let mut app = spawn_app().await;
    use pb::record::Record as R;
    send_interaction(
        &mut app,
        interaction("i1", "T1", "billing", "2026-03-02T09:00:00Z"),
    )
    .await
    .unwrap();
    let mut conflicting = interaction("i1", "T1", "billing", "2026-03-02T09:00:00Z");
    conflicting.agent_id = "ben".into();
    let records = vec![
        record(R::Interaction(interaction(
            "i2",
            "T2",
            "billing",
            "2026-03-02T10:00:00Z",
        ))),
        record(R::Interaction(conflicting)),
        record(R::Interaction(interaction(
            "i3",
            "T3",
            "billing",
            "2026-03-02T11:00:00Z",
        ))),
    ];
    let results = app.record_all(records).await;
    assert_eq!(item_outcome(&results[0]), Some(pb::Outcome::Created));
    let error = item_error(&results[1]);
    assert_eq!(error.code, "ALREADY_EXISTS");
    assert!(error.field_violations.is_empty());
    assert!(!error.message.is_empty());
    assert_eq!(item_outcome(&results[2]), Some(pb::Outcome::Created));

    assert_eq!(metrics(&mut app, team("billing")).await.tickets_created, 3);
    // The conflict changed nothing: no stored record names agent ben.
    assert_unknown(&mut app, agent("ben")).await;
    assert_eq!(app.verify().await.mismatch_count, 0);
}

#[tokio::test]
async fn a_batch_applies_its_items_in_order_so_a_repeat_inside_it_is_a_duplicate_or_stale() {
    let mut app = spawn_app().await;
    use pb::record::Record as R;
    let first = interaction("i1", "T1", "billing", "2026-03-02T09:00:00Z");
    let mut newer = first.clone();
    newer.revision = 2;
    newer.team_id = "tech".into();
    let results = app
        .record_all(vec![
            record(R::Interaction(first.clone())),
            record(R::Interaction(first.clone())),
            record(R::Interaction(newer.clone())),
            record(R::Interaction(first.clone())),
        ])
        .await;
    let outcomes: Vec<_> = results.iter().map(item_outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            Some(pb::Outcome::Created),
            Some(pb::Outcome::Duplicate),
            Some(pb::Outcome::Updated),
            Some(pb::Outcome::Stale),
        ]
    );
    assert_eq!(metrics(&mut app, team("tech")).await.tickets_created, 1);
    // Its only record moved to tech: billing counts nothing, so is unknown.
    assert_unknown(&mut app, team("billing")).await;
    assert_eq!(app.verify().await.mismatch_count, 0);
}

#[tokio::test]
async fn an_empty_batch_or_one_of_1001_records_is_invalid_and_names_records() {
    let mut app = spawn_app().await;
    let status = app
        .ingest
        .record_batch(pb::RecordBatchRequest { records: vec![] })
        .await
        .unwrap_err();
    assert_invalid(&status, &["records"]);

    let events: Vec<pb::Record> = (0..1001)
        .map(|n| {
            record(pb::record::Record::CustomerEvent(churn(
                &format!("e{n}"),
                "c1",
            )))
        })
        .collect();
    let status = app
        .ingest
        .record_batch(pb::RecordBatchRequest {
            records: events.clone(),
        })
        .await
        .unwrap_err();
    assert_invalid(&status, &["records"]);
    assert_eq!(
        stats(&mut app).await.customer_events,
        0,
        "nothing of it was stored"
    );

    let results = app
        .ingest
        .record_batch(pb::RecordBatchRequest {
            records: events[..1000].to_vec(),
        })
        .await
        .expect("1,000 records are accepted")
        .into_inner()
        .results;
    assert_eq!(results.len(), 1000);
    assert!(results
        .iter()
        .all(|r| item_outcome(r) == Some(pb::Outcome::Created)));
    assert_eq!(stats(&mut app).await.customer_events, 1000);
}

// ------------------------------------------------- derived state over the wire

#[tokio::test]
async fn a_survey_before_its_interaction_is_pending_and_counted_once_the_interaction_arrives() {
    let mut app = spawn_app().await;
    assert_eq!(
        outcome(send_survey(&mut app, survey("s1", "i1", pb::SurveyKind::Csat, 5)).await),
        pb::Outcome::Created
    );
    assert_eq!(
        outcome(send_review(&mut app, review("r1", "i1", 75)).await),
        pb::Outcome::Created
    );
    let counts = stats(&mut app).await;
    assert_eq!(
        (counts.survey_responses, counts.pending_survey_responses),
        (1, 1)
    );
    assert_eq!(
        (counts.quality_reviews, counts.pending_quality_reviews),
        (1, 1)
    );
    // The answers name no team: billing is not known until the interaction is.
    assert_unknown(&mut app, team("billing")).await;
    assert!(
        metrics(&mut app, org()).await.csat.is_none(),
        "not counted anywhere yet"
    );
    assert!(metrics(&mut app, org()).await.quality.is_none());

    send_interaction(
        &mut app,
        interaction("i1", "T1", "billing", "2026-03-02T09:00:00Z"),
    )
    .await
    .unwrap();
    let counts = stats(&mut app).await;
    assert_eq!(
        (
            counts.pending_survey_responses,
            counts.pending_quality_reviews
        ),
        (0, 0)
    );
    let card = metrics(&mut app, team("billing")).await;
    let csat = card.csat.expect("counted now");
    assert_eq!((csat.responses, csat.satisfied_percent), (1, 100.0));
    assert_eq!(card.quality.expect("counted now").mean_score, 75.0);
    assert_eq!(metrics(&mut app, org()).await.csat.unwrap().responses, 1);
    assert_eq!(app.verify().await.mismatch_count, 0);
}

#[tokio::test]
async fn an_interaction_moved_to_another_team_moves_its_counts() {
    let mut app = spawn_app().await;
    let mut moved = interaction("i1", "T1", "billing", "2026-03-02T09:00:00Z");
    send_interaction(&mut app, moved.clone()).await.unwrap();
    send_survey(&mut app, survey("s1", "i1", pb::SurveyKind::Csat, 4))
        .await
        .unwrap();
    let billing = metrics(&mut app, team("billing")).await;
    assert_eq!((billing.tickets_created, billing.interactions), (1, 1));
    assert_eq!(billing.csat.unwrap().responses, 1);

    moved.revision = 2;
    moved.team_id = "tech".into();
    assert_eq!(
        outcome(send_interaction(&mut app, moved).await),
        pb::Outcome::Updated
    );

    // Everything left billing with its only interaction, the survey too.
    assert_unknown(&mut app, team("billing")).await;
    let tech = metrics(&mut app, team("tech")).await;
    assert_eq!((tech.tickets_created, tech.interactions), (1, 1));
    assert_eq!(tech.csat.unwrap().responses, 1);
    let org_card = metrics(&mut app, org()).await;
    assert_eq!((org_card.tickets_created, org_card.interactions), (1, 1));

    let backlog = |card: pb::Scorecard| card.backlog.unwrap().open_tickets;
    let as_of = Some(ts("2026-03-10T00:00:00Z"));
    assert_eq!(backlog(app.scorecard(team("tech"), week(), as_of).await), 1);
    assert_eq!(app.verify().await.mismatch_count, 0);
}

#[tokio::test]
async fn acknowledged_records_survive_a_restart_and_a_resend_is_a_duplicate() {
    let mut app = spawn_app().await;
    let data_dir = app.data_dir.clone();
    // Not an id of the worked example, which follows.
    let first = interaction("x1", "X1", "billing", "2026-03-02T09:00:00Z");
    assert_eq!(
        outcome(send_interaction(&mut app, first.clone()).await),
        pb::Outcome::Created
    );
    let records = worked_example();
    app.record_all(records.clone()).await;
    let as_of = Some(ts("2026-03-05T00:00:00Z"));
    let before = app.scorecard(team("billing"), week(), as_of).await;
    let stats_before = stats(&mut app).await;
    assert_eq!(before.metrics.as_ref().unwrap().tickets_created, 5);

    let dir = app.stop().await;
    let mut app = spawn_app_at(data_dir).await;
    let after = app.scorecard(team("billing"), week(), as_of).await;
    assert_eq!(after, before);
    let stats_after = stats(&mut app).await;
    assert_eq!(stats_after.interactions, stats_before.interactions);
    assert_eq!(stats_after.survey_responses, stats_before.survey_responses);
    assert_eq!(stats_after.tickets, stats_before.tickets);

    assert_eq!(
        outcome(send_interaction(&mut app, first).await),
        pb::Outcome::Duplicate
    );
    let results = app.record_all(records).await;
    assert!(results
        .iter()
        .all(|r| item_outcome(r) == Some(pb::Outcome::Duplicate)));
    assert_eq!(app.verify().await.mismatch_count, 0);
    app.stop().await;
    drop(dir);
}
