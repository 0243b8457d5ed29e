//! Backup and restore: `Export` streams a consistent snapshot of the raw records
//! and targets; `import` into an empty directory gives back the same store, down
//! to every scorecard.

use std::time::Duration;

use support_metrics::proto::v1 as pb;
use support_metrics::tools;

use crate::helpers::*;

const MARCH: (&str, &str) = ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z");

fn targets(team: &str, metric: pb::Metric, value: f64) -> pb::SetTargetsRequest {
    pb::SetTargetsRequest {
        team_id: team.into(),
        targets: vec![pb::Target {
            metric: metric as i32,
            value,
        }],
    }
}

/// Everything a reader can see of a store, for comparing two of them.
async fn observable_state(app: &mut TestApp) -> Vec<String> {
    let mut state = Vec::new();
    let mut stats = app.stats().await;
    stats.store_size_bytes = 0;
    state.push(format!("{stats:?}"));
    for kind in [
        pb::ScopeKind::Team,
        pb::ScopeKind::Agent,
        pb::ScopeKind::Channel,
        pb::ScopeKind::TeamChannel,
    ] {
        let page = app
            .scorecards
            .list_scorecards(pb::ListScorecardsRequest {
                scope_kind: kind as i32,
                window: Some(window(MARCH.0, MARCH.1)),
                page_size: 500,
                ..Default::default()
            })
            .await
            .expect("leaderboard")
            .into_inner();
        assert!(
            page.next_page_token.is_empty(),
            "one page holds every scope"
        );
        for row in page.scorecards {
            let scope = row.scope.expect("scope");
            let card = app
                .scorecards
                .get_scorecard(pb::GetScorecardRequest {
                    scope: Some(scope.clone()),
                    window: Some(window("2026-03-10T00:00:00Z", "2026-03-20T00:00:00Z")),
                    compare_previous: true,
                    include_organization: true,
                    backlog_as_of: Some(ts("2026-03-15T12:00:00Z")),
                    min_sample: 5,
                })
                .await
                .expect("scorecard")
                .into_inner();
            state.push(format!("{scope:?} {:?} {card:?}", row.metrics));
        }
    }
    for team in ["", "team-0", "team-1"] {
        let targets = app
            .scorecards
            .get_targets(pb::GetTargetsRequest {
                team_id: team.into(),
            })
            .await
            .expect("targets")
            .into_inner();
        state.push(format!("targets {team}: {targets:?}"));
    }
    state
}

/// Every team's calendar as GetCalendar answers it.
/// Every team's calendar and SLA policy, as GetCalendar and GetSlaPolicy answer.
async fn team_terms(app: &mut TestApp) -> String {
    let mut answers = Vec::new();
    for team in ["team-0", "team-1", "team-2"] {
        let calendar = app
            .scorecards
            .get_calendar(pb::GetCalendarRequest {
                team_id: team.into(),
            })
            .await
            .map(|r| r.into_inner())
            .map_err(|status| (status.code(), status.message().to_owned()));
        let policy = app
            .scorecards
            .get_sla_policy(pb::GetSlaPolicyRequest {
                team_id: team.into(),
            })
            .await
            .map(|r| r.into_inner())
            .map_err(|status| (status.code(), status.message().to_owned()));
        answers.push(format!("{team}: {calendar:?} {policy:?}"));
    }
    answers.join("\n")
}

/// Equal line lists, reporting the first difference rather than both lists.
fn assert_same_lines(actual: &[String], expected: &[String]) {
    if let Some((a, e)) = actual.iter().zip(expected).find(|(a, e)| a != e) {
        panic!("first differing line:\n  actual:   {a}\n  expected: {e}");
    }
    assert_eq!(actual.len(), expected.len(), "line counts");
}

#[tokio::test]
async fn export_then_import_restores_identical_stats_scorecards_and_targets() {
    let mut source = spawn_app().await;
    let mut records = generated_records(11, 1_200);
    records.extend(worked_example());
    let results = source.record_all(records.clone()).await;
    let created = Some(pb::item_result::Result::Outcome(
        pb::Outcome::Created as i32,
    ));
    if let Some(other) = results.iter().find(|r| r.result != created) {
        panic!("not created: {other:?}");
    }
    for request in [
        targets("", pb::Metric::CsatPercent, 80.0),
        targets("team-0", pb::Metric::FrtP90, 3_600.0),
    ] {
        source
            .scorecards
            .set_targets(request)
            .await
            .expect("targets");
    }
    // Team 0's calendar and SLA policy apply to all of history (a rebuild),
    // team 1's calendar and team 2's policy are versions that take effect
    // tomorrow: all must come back as they were.
    let policy = |clock: pb::SlaClock| pb::SlaPolicy {
        targets: [pb::Priority::Low, pb::Priority::Normal, pb::Priority::High]
            .into_iter()
            .flat_map(|priority| {
                [pb::SlaMetric::FirstResponse, pb::SlaMetric::Resolution].map(|metric| {
                    pb::SlaTarget {
                        priority: priority as i32,
                        metric: metric as i32,
                        within: Some(prost_types::Duration {
                            seconds: 4 * 3600,
                            nanos: 0,
                        }),
                        clock: clock as i32,
                    }
                })
            })
            .collect(),
    };
    let policy_client = source.scorecards.clone();
    let set_policy = |team: &str, clock: pb::SlaClock| {
        let mut scorecards = policy_client.clone();
        let request = pb::SetSlaPolicyRequest {
            team_id: team.into(),
            policy: Some(policy(clock)),
        };
        async move { scorecards.set_sla_policy(request).await.expect("policy") }
    };
    set_policy("team-0", pb::SlaClock::BusinessTime).await;
    for team in ["team-0", "team-1"] {
        source
            .scorecards
            .set_calendar(pb::SetCalendarRequest {
                team_id: team.into(),
                calendar: Some(pb::BusinessCalendar {
                    time_zone: "America/New_York".into(),
                    hours: vec![pb::WorkingHours {
                        weekday: pb::Weekday::Monday as i32,
                        start: "22:00".into(),
                        end: "06:00".into(),
                    }],
                    holidays: vec!["2026-03-16".into()],
                }),
            })
            .await
            .expect("calendar");
        if team == "team-0" {
            // The new calendar kept the team's policy.
            let policy = source
                .scorecards
                .get_sla_policy(pb::GetSlaPolicyRequest {
                    team_id: team.into(),
                })
                .await
                .expect("policy kept");
            assert!(policy.into_inner().policy.is_some());
            source.rebuild().await;
        }
    }
    set_policy("team-2", pb::SlaClock::CalendarTime).await;
    let mut before = observable_state(&mut source).await;
    before.push(team_terms(&mut source).await);
    for shown in [
        "first_response_business_time: Some",
        "first_response_sla: Some",
        "resolution_sla: Some",
    ] {
        assert!(before.iter().any(|line| line.contains(shown)), "{shown}");
    }
    let lines = source.export_lines().await.expect("export");
    assert_eq!(
        lines.len(),
        records.len() + 2 + 3,
        "every record, both targets, team 0's terms and the versions of teams 1 and 2"
    );

    // The offline tool writes the same backup from the stopped store.
    let source_dir = source.data_dir.clone();
    let keep = source.stop().await;
    let scratch = tempfile::tempdir().unwrap();
    let offline_file = scratch.path().join("offline.ndjson");
    let written =
        tools::export(&store_config(source_dir), Some(&offline_file), false).expect("export");
    assert_eq!(written.items, lines.len() as u64);
    assert!(written.skipped.is_empty());
    let offline = std::fs::read_to_string(&offline_file).unwrap();
    assert_same_lines(
        &offline.lines().map(str::to_owned).collect::<Vec<_>>(),
        &lines,
    );
    drop(keep);

    let restored_dir = scratch.path().join("restored");
    let summary = tools::import(&store_config(restored_dir.clone()), Some(&offline_file))
        .await
        .expect("import");
    assert_eq!(summary.created, records.len() as u64);
    assert_eq!((summary.targets, summary.terms), (2, 3));
    assert!(summary.conflicts.is_empty());

    let mut restored = spawn_app_at(restored_dir.clone()).await;
    let mut after = observable_state(&mut restored).await;
    after.push(team_terms(&mut restored).await);
    assert_eq!(before.len(), after.len());
    for (before, after) in before.iter().zip(&after) {
        assert_eq!(before, after);
    }
    let verify = restored.verify().await;
    assert_eq!(verify.mismatch_count, 0, "{:?}", verify.mismatches);
    assert_same_lines(&restored.export_lines().await.unwrap(), &lines);
    restored.stop().await;

    // Importing the same backup again changes nothing.
    let again = tools::import(&store_config(restored_dir), Some(&offline_file))
        .await
        .expect("second import");
    assert_eq!(again.created + again.updated, 0);
    assert_eq!(again.duplicate, records.len() as u64);
}

#[tokio::test]
async fn an_export_taken_during_writes_is_a_snapshot() {
    let mut app = spawn_app().await;
    app.record_all(generated_records(5, 3_000)).await;
    let initial = app.export_lines().await.expect("export").len();

    // One writer records interactions one after another, each acknowledged
    // before the next is sent. A snapshot holds a prefix of that sequence:
    // never a later one without every earlier one.
    let mut writer = app.ingest.clone();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let writes = tokio::spawn(async move {
        let mut acknowledged = 0usize;
        loop {
            if stopped.try_recv().is_ok() {
                return acknowledged;
            }
            let id = format!("w{acknowledged:06}");
            let line = format!(
                r#"{{"interaction": {{"interaction_id": "{id}", "revision": 1, "ticket_id": "W{acknowledged}", "team_id": "writers", "channel": "CHAT", "opened_at": "2026-03-05T10:00:00Z"}}}}"#
            );
            let Some(pb::record::Record::Interaction(interaction)) = record_from_json(&line).record
            else {
                unreachable!()
            };
            writer
                .record_interaction(pb::RecordInteractionRequest {
                    interaction: Some(interaction),
                })
                .await
                .expect("write during export");
            acknowledged += 1;
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut exports = Vec::new();
    for _ in 0..3 {
        let before = app.stats().await.interactions;
        let lines = app.export_lines().await.expect("export");
        exports.push((before, lines));
    }
    let _ = stop.send(());
    let acknowledged = writes.await.unwrap();
    assert!(
        acknowledged > 0,
        "the writer made progress during the exports"
    );

    let base_interactions = {
        let stats = app.stats().await;
        stats.interactions - acknowledged as u64
    };
    for (interactions_before, lines) in exports {
        let written: Vec<usize> = lines
            .iter()
            .filter_map(|line| {
                let start = line.find(r#""interaction_id":"w"#)? + r#""interaction_id":"w"#.len();
                line[start..start + 6].parse().ok()
            })
            .collect();
        let mut sorted = written.clone();
        sorted.sort_unstable();
        let prefix: Vec<usize> = (0..written.len()).collect();
        assert_eq!(sorted, prefix, "the writer's records form a prefix");
        assert_eq!(lines.len() - written.len(), initial, "nothing else changed");
        let acknowledged_before = (interactions_before - base_interactions) as usize;
        assert!(
            written.len() >= acknowledged_before,
            "an export holds every write acknowledged before it started \
             ({} < {acknowledged_before})",
            written.len()
        );
    }
}

#[tokio::test]
async fn import_stops_at_the_first_bad_line_and_names_it() {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("backup.ndjson");
    let good = include_str!("../fixtures/worked-example.ndjson");
    let first_two: Vec<&str> = good.lines().take(2).collect();
    std::fs::write(
        &file,
        format!(
            "{}\n{}\n{{\"survey_response\": {{\"response_id\": \"s9\", \"interaction_id\": \"i1\", \"kind\": \"CSAT\", \"score\": 9, \"submitted_at\": \"2026-03-02T10:00:00Z\"}}}}\n{}\n",
            first_two[0],
            first_two[1],
            good.lines().nth(2).unwrap()
        ),
    )
    .unwrap();
    let data = scratch.path().join("data");
    let error = tools::import(&store_config(data.clone()), Some(&file))
        .await
        .expect_err("line 3 is invalid");
    let message = format!("{error:#}");
    assert!(message.contains("line 3"), "{message}");
    assert!(message.contains("survey_response.score"), "{message}");

    // The lines before it landed, durably.
    let mut app = spawn_app_at(data).await;
    assert_eq!(app.stats().await.interactions, 2);
    assert_eq!(app.stats().await.survey_responses, 0);
}

#[tokio::test]
async fn a_calendar_version_is_restored_only_before_any_interaction() {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("backup.ndjson");
    let interaction = include_str!("../fixtures/worked-example.ndjson")
        .lines()
        .next()
        .unwrap();
    let calendar = r#"{"calendar": {"team_id": "billing", "effective_from": "2026-01-01T00:00:00Z", "calendar": {"time_zone": "UTC", "hours": [{"weekday": "MONDAY", "start": "09:00", "end": "17:00"}], "holidays": []}}}"#;
    std::fs::write(&file, format!("{calendar}\n{interaction}\n{calendar}\n")).unwrap();
    // First, the same version again after an interaction: a no-op, accepted.
    let data = scratch.path().join("data");
    let summary = tools::import(&store_config(data), Some(&file))
        .await
        .expect("same version twice");
    assert_eq!((summary.terms, summary.created), (2, 1));

    // A different version after an interaction would change stored tickets.
    let other = calendar.replace("17:00", "18:00");
    std::fs::write(&file, format!("{interaction}\n{other}\n")).unwrap();
    let error = tools::import(&store_config(scratch.path().join("fresh")), Some(&file))
        .await
        .expect_err("calendar after an interaction");
    let message = format!("{error:#}");
    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("without interactions"), "{message}");
}
