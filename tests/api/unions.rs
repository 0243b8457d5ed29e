//! Several teams at once over the wire: a scope with `team_ids` answers for the
//! union of those teams (scorecard, time series, backlog), merging their
//! precomputed buckets, percentiles included.

use support_metrics::proto::v1 as pb;

use crate::helpers::*;

const DAY_START: &str = "2026-03-02T00:00:00Z";
const DAY_END: &str = "2026-03-03T00:00:00Z";

/// One ticket per (team, first-response delay in seconds), created at 09:00 on
/// 2 March on CHAT; `resolved` tickets close at 12:00.
fn ticket(n: usize, team: &str, frt_seconds: i64, resolved: bool) -> pb::Record {
    let opened = ts("2026-03-02T09:00:00Z");
    let mut interaction = pb::Interaction {
        interaction_id: format!("i{n}"),
        revision: 1,
        ticket_id: format!("T{n}"),
        team_id: team.into(),
        agent_id: format!("agent-{team}"),
        channel: pb::Channel::Chat as i32,
        priority: pb::Priority::High as i32,
        opened_at: Some(opened),
        first_response_at: Some(prost_types::Timestamp {
            seconds: opened.seconds + frt_seconds,
            nanos: 0,
        }),
        ..Default::default()
    };
    if resolved {
        interaction.closed_at = Some(ts("2026-03-02T12:00:00Z"));
        interaction.resolved = true;
    }
    pb::Record {
        record: Some(pb::record::Record::Interaction(interaction)),
    }
}

fn records() -> Vec<pb::Record> {
    vec![
        ticket(0, "alpha", 60, true),
        ticket(1, "alpha", 120, true),
        ticket(2, "alpha", 180, false),
        ticket(3, "beta", 600, true),
        ticket(4, "beta", 1200, false),
        ticket(5, "gamma", 5000, false),
    ]
}

fn union(teams: &[&str]) -> pb::Scope {
    pb::Scope {
        kind: pb::ScopeKind::Team as i32,
        team_ids: teams.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_union_of_teams_merges_counts_percentiles_and_backlog() {
    let mut app = spawn_app_holding(records()).await;
    let card = app
        .scorecard(
            union(&["alpha", "beta"]),
            window(DAY_START, DAY_END),
            Some(ts("2026-03-02T13:00:00Z")),
        )
        .await;
    assert_eq!(card.scope, Some(union(&["alpha", "beta"])), "echoed");
    let metrics = card.metrics.expect("metrics");
    assert_eq!(metrics.tickets_created, 5);
    assert_eq!(metrics.tickets_resolved, 3);
    assert_eq!(metrics.resolution_rate_percent, Some(60.0));
    // FRT of the five tickets: 60, 120, 180, 600, 1200 s. Nearest rank: p50 is
    // the 3rd (180), p90 and p99 the 5th (1200); mean 432.
    let frt = metrics.first_response_time.expect("frt");
    assert_eq!(frt.count, 5);
    assert!(
        (frt.mean_seconds - 432.0).abs() < 1e-9,
        "{}",
        frt.mean_seconds
    );
    for (name, exact, approximate) in [
        ("p50", 180.0, frt.p50_seconds),
        ("p90", 1200.0, frt.p90_seconds),
        ("p99", 1200.0, frt.p99_seconds),
    ] {
        assert!(
            (approximate - exact).abs() <= 0.01 * exact,
            "{name}: {approximate} vs {exact}"
        );
    }
    // Open now: alpha's T2 and beta's T4, both HIGH, 4 hours old.
    let backlog = card.backlog.expect("backlog");
    assert_eq!((backlog.open_tickets, backlog.high), (2, 2));
    assert_eq!(backlog.age_4h_to_24h, 2);

    // The same through GetBacklog, and the union of one team is that team.
    let backlog = app
        .scorecards
        .get_backlog(pb::GetBacklogRequest {
            scope: Some(union(&["beta", "gamma"])),
            as_of: Some(ts("2026-03-02T13:00:00Z")),
        })
        .await
        .expect("backlog")
        .into_inner()
        .backlog
        .expect("backlog");
    assert_eq!(backlog.open_tickets, 2);
    let alone = app
        .scorecard(union(&["gamma"]), window(DAY_START, DAY_END), None)
        .await;
    assert_eq!(alone.scope, Some(team("gamma")));
    assert_eq!(alone.metrics.expect("metrics").tickets_created, 1);
}

#[tokio::test]
async fn a_union_on_a_channel_and_a_time_series_answer_for_the_union() {
    let mut app = spawn_app_holding(records()).await;
    let scope = pb::Scope {
        kind: pb::ScopeKind::TeamChannel as i32,
        channel: pb::Channel::Chat as i32,
        team_ids: vec!["alpha".into(), "gamma".into()],
        ..Default::default()
    };
    let card = app
        .scorecard(scope.clone(), window(DAY_START, DAY_END), None)
        .await;
    assert_eq!(card.metrics.expect("metrics").tickets_created, 4);

    let series = app
        .scorecards
        .get_time_series(pb::GetTimeSeriesRequest {
            scope: Some(union(&["alpha", "beta", "gamma"])),
            window: Some(window("2026-03-02T08:00:00Z", "2026-03-02T11:00:00Z")),
            granularity: pb::Granularity::Hour as i32,
            time_zone: String::new(),
        })
        .await
        .expect("series")
        .into_inner();
    let created: Vec<u64> = series
        .periods
        .iter()
        .map(|p| p.metrics.as_ref().unwrap().tickets_created)
        .collect();
    assert_eq!(created, vec![0, 6, 0]);
}

#[tokio::test]
async fn a_union_is_judged_by_the_organization_default() {
    let mut app = spawn_app_holding(records()).await;
    for (team_id, value) in [("alpha", 100.0), ("", 50.0)] {
        app.scorecards
            .set_targets(pb::SetTargetsRequest {
                team_id: team_id.into(),
                targets: vec![pb::Target {
                    metric: pb::Metric::ResolutionRate as i32,
                    value,
                }],
            })
            .await
            .expect("targets");
    }
    let alpha = app
        .scorecard(team("alpha"), window(DAY_START, DAY_END), None)
        .await;
    assert_eq!(alpha.targets[0].target, 100.0);
    let card = app
        .scorecard(union(&["alpha", "beta"]), window(DAY_START, DAY_END), None)
        .await;
    let target = &card.targets[0];
    assert_eq!(
        (
            target.target,
            target.from_organization_default,
            target.status()
        ),
        (50.0, true, pb::TargetStatus::Met)
    );
}

#[tokio::test]
async fn a_bad_union_is_invalid_and_names_the_field() {
    let mut app = spawn_app().await;
    let with = |edit: fn(&mut pb::Scope)| {
        let mut scope = union(&["alpha", "beta"]);
        edit(&mut scope);
        scope
    };
    let cases: Vec<(pb::Scope, &[&str])> = vec![
        (
            with(|s| s.team_ids.push("alpha".into())),
            &["scope.team_ids[2]"],
        ),
        (with(|s| s.team_id = "gamma".into()), &["scope.team_id"]),
        (
            with(|s| s.kind = pb::ScopeKind::Agent as i32),
            &["scope.team_ids"],
        ),
        (
            with(|s| s.kind = pb::ScopeKind::Organization as i32),
            &["scope.team_ids"],
        ),
        (
            with(|s| s.kind = pb::ScopeKind::TeamChannel as i32),
            &["scope.channel"],
        ),
        (
            with(|s| s.channel = pb::Channel::Chat as i32),
            &["scope.channel"],
        ),
        (
            with(|s| s.team_ids[1] = "no spaces".into()),
            &["scope.team_ids[1]"],
        ),
        (
            with(|s| s.team_ids = (0..101).map(|n| format!("t{n}")).collect()),
            &["scope.team_ids"],
        ),
    ];
    for (scope, expected) in cases {
        let status = app
            .scorecards
            .get_scorecard(pb::GetScorecardRequest {
                scope: Some(scope.clone()),
                window: Some(window(DAY_START, DAY_END)),
                ..Default::default()
            })
            .await
            .expect_err("invalid");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{scope:?}");
        assert_eq!(bad_fields(&status), expected, "{scope:?}");
    }
}
