//! A team, agent, channel or tag no stored record names is NOT_FOUND, naming
//! it: a typo such as `biling` must not read as a scorecard of no activity.

use support_metrics::proto::v1 as pb;
use tonic::Code;

use crate::helpers::*;

const WEEK: (&str, &str) = ("2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z");

fn week() -> pb::Window {
    window(WEEK.0, WEEK.1)
}

fn tag(tag: &str) -> pb::Scope {
    pb::Scope {
        kind: pb::ScopeKind::Tag as i32,
        tag: tag.into(),
        ..Default::default()
    }
}

fn teams(ids: &[&str]) -> pb::Scope {
    pb::Scope {
        kind: pb::ScopeKind::Team as i32,
        team_ids: ids.iter().map(|id| id.to_string()).collect(),
        ..Default::default()
    }
}

async fn scorecard_status(app: &mut TestApp, scope: pb::Scope) -> Result<(), tonic::Status> {
    app.scorecards
        .get_scorecard(pb::GetScorecardRequest {
            scope: Some(scope),
            window: Some(week()),
            ..Default::default()
        })
        .await
        .map(|_| ())
}

fn assert_not_found(result: Result<(), tonic::Status>, names: &[&str]) {
    let status = result.expect_err("an unknown scope must be refused");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    for name in names {
        assert!(
            status.message().contains(name),
            "{:?} lacks {name}",
            status.message()
        );
    }
}

#[tokio::test]
async fn a_misspelt_team_is_not_found_by_every_read_that_names_it() {
    let mut app = spawn_app_holding(worked_example()).await;
    assert_not_found(
        scorecard_status(&mut app, team("biling")).await,
        &["team \"biling\""],
    );

    let series = app
        .scorecards
        .get_time_series(pb::GetTimeSeriesRequest {
            scope: Some(team("biling")),
            window: Some(week()),
            granularity: pb::Granularity::Day as i32,
            time_zone: String::new(),
        })
        .await;
    assert_not_found(series.map(|_| ()), &["biling"]);

    let backlog = app
        .scorecards
        .get_backlog(pb::GetBacklogRequest {
            scope: Some(team("biling")),
            as_of: None,
        })
        .await;
    assert_not_found(backlog.map(|_| ()), &["biling"]);

    let tickets = app
        .scorecards
        .list_tickets(pb::ListTicketsRequest {
            scope: Some(team("biling")),
            window: Some(week()),
            ..Default::default()
        })
        .await;
    assert_not_found(tickets.map(|_| ()), &["biling"]);

    let drivers = app
        .scorecards
        .get_drivers(pb::GetDriversRequest {
            scope: Some(team("biling")),
            window: Some(week()),
            limit: 0,
        })
        .await;
    assert_not_found(drivers.map(|_| ()), &["biling"]);

    let watch = app
        .scorecards
        .watch_scorecard(pb::WatchScorecardRequest {
            scope: Some(team("biling")),
            moving_window: Some(pb::watch_scorecard_request::MovingWindow::TodayInTimeZone(
                "UTC".into(),
            )),
            ..Default::default()
        })
        .await;
    assert_not_found(watch.map(|_| ()), &["biling"]);
}

#[tokio::test]
async fn unknown_agents_channels_and_tags_are_not_found_and_known_ones_answer() {
    let mut app = spawn_app_holding(worked_example()).await;
    assert_not_found(
        scorecard_status(&mut app, agent("anna")).await,
        &["agent \"anna\""],
    );
    // The worked example has no MESSAGING interaction.
    assert_not_found(
        scorecard_status(&mut app, channel(pb::Channel::Messaging)).await,
        &["channel MESSAGING"],
    );
    assert_not_found(
        scorecard_status(&mut app, tag("refnd")).await,
        &["tag \"refnd\""],
    );
    // A team × channel names both parts; only the unknown one is reported.
    assert_not_found(
        scorecard_status(&mut app, team_channel("biling", pb::Channel::Email)).await,
        &["team \"biling\""],
    );

    for known in [
        org(),
        team("billing"),
        agent("ana"),
        channel(pb::Channel::Email),
        tag("refund"),
        // Known team and known channel that never met: a real "no activity".
        team_channel("tech", pb::Channel::Email),
    ] {
        scorecard_status(&mut app, known.clone())
            .await
            .unwrap_or_else(|status| panic!("{known:?}: {status:?}"));
    }
}

#[tokio::test]
async fn a_union_names_every_unknown_team_and_no_known_one() {
    let mut app = spawn_app_holding(worked_example()).await;
    let status = scorecard_status(&mut app, teams(&["billing", "biling", "tehc"]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().contains("\"biling\""),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("\"tehc\""),
        "{}",
        status.message()
    );
    assert!(
        !status.message().contains("\"billing\""),
        "{}",
        status.message()
    );
    scorecard_status(&mut app, teams(&["billing", "tech"]))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_team_is_known_once_a_record_names_it_and_unknown_once_none_does() {
    let mut app = spawn_app().await;
    assert_not_found(
        scorecard_status(&mut app, team("returns")).await,
        &["returns"],
    );
    let first = r#"{"interaction": {"interaction_id": "x1", "revision": 1, "ticket_id": "X1", "team_id": "returns", "channel": "EMAIL", "opened_at": "2026-03-02T09:00:00Z"}}"#;
    app.record_all(vec![record_from_json(first)]).await;
    scorecard_status(&mut app, team("returns")).await.unwrap();
    // A new revision moves the only interaction to another team.
    let moved = first
        .replace("\"revision\": 1", "\"revision\": 2")
        .replace("returns", "refunds");
    app.record_all(vec![record_from_json(&moved)]).await;
    assert_not_found(
        scorecard_status(&mut app, team("returns")).await,
        &["returns"],
    );
    scorecard_status(&mut app, team("refunds")).await.unwrap();
}
