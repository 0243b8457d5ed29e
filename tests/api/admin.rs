//! AdminService over the wire: counters, and the invariant that every stored
//! aggregate equals a recomputation from the raw records (SPEC §4).

use support_metrics::proto::v1 as pb;

use crate::helpers::*;

fn contact(id: &str, ticket: &str, team: &str, opened_at: &str) -> pb::Interaction {
    pb::Interaction {
        interaction_id: id.into(),
        revision: 1,
        ticket_id: ticket.into(),
        team_id: team.into(),
        agent_id: "ana".into(),
        customer_id: "c1".into(),
        channel: pb::Channel::Chat as i32,
        opened_at: Some(ts(opened_at)),
        ..Default::default()
    }
}

fn survey(id: &str, interaction_id: &str, score: u32) -> pb::SurveyResponse {
    pb::SurveyResponse {
        response_id: id.into(),
        revision: 1,
        interaction_id: interaction_id.into(),
        kind: pb::SurveyKind::Csat as i32,
        score,
        submitted_at: Some(ts("2026-03-04T12:00:00Z")),
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
        reviewed_at: Some(ts("2026-03-04T13:00:00Z")),
    }
}

fn churn(id: &str, customer: &str, occurred_at: &str) -> pb::CustomerEvent {
    pb::CustomerEvent {
        event_id: id.into(),
        revision: 1,
        customer_id: customer.into(),
        kind: pb::CustomerEventKind::Churned as i32,
        occurred_at: Some(ts(occurred_at)),
    }
}

fn record(record: pb::record::Record) -> pb::Record {
    pb::Record {
        record: Some(record),
    }
}

async fn stats(app: &mut TestApp) -> pb::GetStatsResponse {
    app.admin
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect("stats")
        .into_inner()
}

/// Every scorecard a reader could ask for about the records of `mixed_writes`.
async fn snapshot(app: &mut TestApp) -> Vec<pb::Scorecard> {
    let week = window("2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z");
    let as_of = Some(ts("2026-03-05T00:00:00Z"));
    let mut cards = Vec::new();
    for scope in [
        org(),
        team("billing"),
        team("tech"),
        team("sales"),
        agent("ana"),
        agent("ben"),
        channel(pb::Channel::Chat),
        channel(pb::Channel::Email),
        team_channel("tech", pb::Channel::Chat),
    ] {
        cards.push(app.scorecard(scope.clone(), week, as_of).await);
        cards.push(
            app.scorecard(
                scope,
                window("2026-03-03T09:00:00Z", "2026-03-03T09:15:00Z"),
                as_of,
            )
            .await,
        );
    }
    cards
}

/// The worked example plus late feedback, updates, a team move, a stale and a
/// duplicate write, and churn.
async fn mixed_writes(app: &mut TestApp) {
    use pb::record::Record as R;
    app.record_all(worked_example()).await;
    let mut moved = contact("m1", "M1", "billing", "2026-03-03T09:05:00Z");
    let mut records = vec![
        record(R::SurveyResponse(survey("late", "m2", 4))),
        record(R::QualityReview(review("late-review", "m2", 55))),
        record(R::Interaction(moved.clone())),
        record(R::Interaction(contact(
            "m2",
            "M1",
            "billing",
            "2026-03-03T10:00:00Z",
        ))),
        record(R::SurveyResponse(survey("orphan", "never-arrives", 1))),
        record(R::CustomerEvent(churn(
            "e-c1",
            "c1",
            "2026-03-06T00:00:00Z",
        ))),
    ];
    moved.revision = 2;
    moved.team_id = "sales".into();
    records.push(record(R::Interaction(moved.clone())));
    let mut stale = moved.clone();
    stale.revision = 1;
    stale.team_id = "tech".into();
    records.push(record(R::Interaction(stale)));
    records.push(record(R::Interaction(moved)));
    app.record_all(records).await;
}

#[tokio::test]
async fn get_stats_counts_each_kind_tickets_pending_records_and_the_store_size() {
    let mut app = spawn_app().await;
    let empty = stats(&mut app).await;
    assert_eq!(
        (
            empty.interactions,
            empty.survey_responses,
            empty.tickets,
            empty.pending_survey_responses
        ),
        (0, 0, 0, 0)
    );

    use pb::record::Record as R;
    let results = app
        .record_all(vec![
            record(R::Interaction(contact(
                "i1",
                "T1",
                "billing",
                "2026-03-02T09:00:00Z",
            ))),
            record(R::Interaction(contact(
                "i2",
                "T1",
                "billing",
                "2026-03-02T10:00:00Z",
            ))),
            record(R::Interaction(contact(
                "i3",
                "T2",
                "tech",
                "2026-03-02T11:00:00Z",
            ))),
            record(R::SurveyResponse(survey("s1", "i1", 5))),
            record(R::SurveyResponse(survey("s2", "i9", 3))),
            record(R::QualityReview(review("r1", "i2", 80))),
            record(R::QualityReview(review("r2", "i8", 40))),
            record(R::QualityReview(review("r3", "i9", 60))),
            record(R::CustomerEvent(churn("e1", "c1", "2026-03-05T00:00:00Z"))),
        ])
        .await;
    assert!(results
        .iter()
        .all(|r| matches!(r.result, Some(pb::item_result::Result::Outcome(_)))));
    let counts = stats(&mut app).await;
    assert_eq!(counts.interactions, 3);
    assert_eq!(counts.survey_responses, 2);
    assert_eq!(counts.quality_reviews, 3);
    assert_eq!(counts.customer_events, 1);
    assert_eq!(counts.tickets, 2);
    assert_eq!(counts.pending_survey_responses, 1);
    assert_eq!(counts.pending_quality_reviews, 2);
    assert!(counts.store_size_bytes > 0);

    // An update that changes ticket, a duplicate and the interaction the pending
    // feedback waited for.
    let mut moved = contact("i2", "T3", "billing", "2026-03-02T10:00:00Z");
    moved.revision = 2;
    app.record_all(vec![
        record(R::Interaction(moved)),
        record(R::SurveyResponse(survey("s1", "i1", 5))),
        record(R::Interaction(contact(
            "i9",
            "T9",
            "tech",
            "2026-03-02T12:00:00Z",
        ))),
    ])
    .await;
    let counts = stats(&mut app).await;
    assert_eq!(counts.interactions, 4);
    assert_eq!(counts.survey_responses, 2);
    assert_eq!(counts.tickets, 4, "T1, T2, T3 and T9");
    assert_eq!(counts.pending_survey_responses, 0, "i9 arrived");
    assert_eq!(counts.pending_quality_reviews, 1, "i8 has not");
}

#[tokio::test]
async fn verify_finds_no_mismatch_after_a_mix_of_writes() {
    let mut app = spawn_app().await;
    mixed_writes(&mut app).await;
    let report = app.verify().await;
    assert_eq!(report.mismatch_count, 0, "{:?}", report.mismatches);
    assert!(report.mismatches.is_empty());
    assert!(report.groups_checked > 0);
    assert!(report.keys_checked > report.groups_checked);

    // The late feedback moved with the interaction to its final team.
    let week = window("2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z");
    let sales = app.scorecard(team("sales"), week, None).await;
    let sales = sales.metrics.unwrap();
    assert_eq!((sales.tickets_created, sales.interactions), (1, 1));
    let billing = app
        .scorecard(team("billing"), week, None)
        .await
        .metrics
        .unwrap();
    assert_eq!(
        billing.csat.unwrap().responses,
        2,
        "s1 and the late answer on m2"
    );
}

#[tokio::test]
async fn rebuild_recomputes_every_aggregate_and_leaves_scorecards_unchanged() {
    let mut app = spawn_app().await;
    mixed_writes(&mut app).await;
    let before = snapshot(&mut app).await;
    let report = app.rebuild().await;
    assert!(report.groups_rebuilt > 0);
    assert!(report.keys_written > 0);
    assert_eq!(app.verify().await.mismatch_count, 0);
    let after = snapshot(&mut app).await;
    assert_eq!(after, before);
    let counts = stats(&mut app).await;
    assert_eq!(counts.interactions, 9);
    assert_eq!(counts.pending_survey_responses, 1);

    // Writes after a rebuild keep the invariant.
    app.record_all(vec![record(pb::record::Record::Interaction(contact(
        "after",
        "T1",
        "tech",
        "2026-03-04T16:00:00Z",
    )))])
    .await;
    assert_eq!(app.verify().await.mismatch_count, 0);
}

#[tokio::test]
async fn verify_and_rebuild_on_an_empty_store_find_nothing_to_do() {
    let mut app = spawn_app().await;
    let report = app.verify().await;
    assert_eq!((report.mismatch_count, report.groups_checked), (0, 0));
    let rebuilt = app.rebuild().await;
    assert_eq!(rebuilt.groups_rebuilt, 0);
    assert_eq!(app.verify().await.mismatch_count, 0);
}

/// Verify and rebuild recompute off the writer's thread while writes go on,
/// then catch up with the groups written meanwhile: every check made during
/// the writes finds nothing wrong, every write is acknowledged, and the
/// state they leave equals the offline scrub's recomputation (which holds
/// the store alone). Snapshots land every few groups meanwhile, so the
/// journal a check catches up from must outlive them.
#[tokio::test]
async fn verify_and_rebuild_run_while_writes_go_on_and_miss_none_of_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tool_config(dir.path().join("data"));
    config.store.snapshot_after_groups = 50;
    let mut app = spawn_app_with(config).await;
    let mut records = generated_records(31, 6_000);
    let during = records.split_off(records.len() / 3);
    let written_during = during.len();
    app.record_all(records).await;

    let mut ingest = app.ingest.clone();
    let writes = tokio::spawn(async move {
        let mut acknowledged = 0;
        for chunk in during.chunks(25) {
            let response = ingest
                .record_batch(pb::RecordBatchRequest {
                    records: chunk.to_vec(),
                })
                .await
                .expect("writes go on during the checks")
                .into_inner();
            acknowledged += response.results.len();
        }
        acknowledged
    });
    let mut checks = 0;
    while !writes.is_finished() {
        let verify = app.verify().await;
        assert_eq!(verify.mismatch_count, 0, "{:?}", verify.mismatches);
        assert!(app.rebuild().await.groups_rebuilt > 0);
        checks += 1;
    }
    assert_eq!(writes.await.expect("writer task"), written_during);
    assert!(checks > 0);
    let verify = app.verify().await;
    assert_eq!(verify.mismatch_count, 0, "{:?}", verify.mismatches);

    let data_dir = app.data_dir.clone();
    app.stop().await;
    let mut report = Vec::new();
    let clean = support_metrics::tools::verify(&store_config(data_dir), &mut report)
        .await
        .expect("scrub");
    assert!(clean, "{}", String::from_utf8_lossy(&report));
}
