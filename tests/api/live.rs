//! WatchScorecard over the wire: the current scorecard at once, a write shows
//! up on an open stream, watchers of one scope share one feed, a client that
//! never reads holds up no writer, bad requests name their field, and streams
//! end with UNAVAILABLE when the server stops.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use support_metrics::proto::v1 as pb;
use support_metrics::proto::v1::scorecard_service_client::ScorecardServiceClient;
use tonic::Streaming;

use crate::helpers::*;

/// Long enough for anything that should happen; only reached when it does not.
const PATIENCE: Duration = Duration::from_secs(20);
/// The HTTP/2 stream window (bytes) of a client that never reads.
const STALLED_WINDOW: u32 = 64;

fn trailing_day(scope: pb::Scope) -> pb::WatchScorecardRequest {
    pb::WatchScorecardRequest {
        scope: Some(scope),
        moving_window: Some(pb::watch_scorecard_request::MovingWindow::Trailing(
            prost_types::Duration {
                seconds: 86_400,
                nanos: 0,
            },
        )),
        min_interval: Some(prost_types::Duration {
            seconds: 0,
            nanos: 100_000_000,
        }),
        min_sample: 0,
    }
}

async fn open(
    app: &TestApp,
    request: pb::WatchScorecardRequest,
) -> Streaming<pb::WatchScorecardResponse> {
    app.scorecards
        .clone()
        .watch_scorecard(request)
        .await
        .expect("watch opens")
        .into_inner()
}

async fn next_card(stream: &mut Streaming<pb::WatchScorecardResponse>) -> pb::Scorecard {
    tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("a scorecard in time")
        .expect("a good message")
        .expect("the stream is open")
        .scorecard
        .expect("scorecard")
}

fn tickets_created(card: &pb::Scorecard) -> u64 {
    card.metrics.as_ref().expect("metrics").tickets_created
}

/// An interaction of `team` opened a minute ago (inside any trailing window).
fn fresh_contact(n: usize, team: &str) -> pb::Record {
    let now = Utc::now().timestamp();
    pb::Record {
        record: Some(pb::record::Record::Interaction(pb::Interaction {
            interaction_id: format!("live-{n}"),
            revision: 1,
            ticket_id: format!("live-ticket-{n}"),
            team_id: team.into(),
            channel: pb::Channel::Chat as i32,
            opened_at: Some(prost_types::Timestamp {
                seconds: now - 60,
                nanos: 0,
            }),
            ..Default::default()
        })),
    }
}

/// One contact of each team three days ago, outside a trailing day: the teams
/// are known (a watch of a team no record names is NOT_FOUND) and the live
/// window starts empty.
async fn known_teams(app: &TestApp, teams: &[&str]) {
    for team in teams {
        let Some(pb::record::Record::Interaction(mut earlier)) = fresh_contact(0, team).record
        else {
            unreachable!()
        };
        earlier.interaction_id = format!("earlier-{team}");
        earlier.ticket_id = format!("earlier-ticket-{team}");
        earlier.opened_at = Some(prost_types::Timestamp {
            seconds: Utc::now().timestamp() - 3 * 86_400,
            nanos: 0,
        });
        write_one(
            app,
            pb::Record {
                record: Some(pb::record::Record::Interaction(earlier)),
            },
        )
        .await;
    }
}

async fn write_one(app: &TestApp, record: pb::Record) {
    let response = app
        .ingest
        .clone()
        .record_batch(pb::RecordBatchRequest {
            records: vec![record],
        })
        .await
        .expect("write");
    assert!(
        matches!(
            response.get_ref().results[0].result,
            Some(pb::item_result::Result::Outcome(_))
        ),
        "{response:?}"
    );
}

/// Reads scorecards until one satisfies `done`.
async fn until(
    stream: &mut Streaming<pb::WatchScorecardResponse>,
    done: impl Fn(&pb::Scorecard) -> bool,
) -> pb::Scorecard {
    loop {
        let card = next_card(stream).await;
        if done(&card) {
            return card;
        }
    }
}

#[tokio::test]
async fn a_write_shows_up_on_an_open_stream() {
    let app = spawn_app().await;
    known_teams(&app, &["billing", "returns"]).await;
    let mut stream = open(&app, trailing_day(team("billing"))).await;
    let first = next_card(&mut stream).await;
    assert_eq!(tickets_created(&first), 0);
    let (from, to) = {
        let w = first.window.as_ref().expect("window");
        (w.from.unwrap().seconds, w.to.unwrap().seconds)
    };
    let now = Utc::now().timestamp();
    assert_eq!(to - from, 86_400, "a trailing day");
    assert!(
        to % 900 == 0 && now < to && to <= now + 900,
        "ends with the current quarter"
    );

    write_one(&app, fresh_contact(1, "billing")).await;
    let card = until(&mut stream, |card| tickets_created(card) == 1).await;
    assert_eq!(card.scope, Some(team("billing")));
    // Another team's write changes nothing here; billing's next one does.
    write_one(&app, fresh_contact(2, "returns")).await;
    write_one(&app, fresh_contact(3, "billing")).await;
    let card = next_card(&mut stream).await;
    assert_eq!(
        tickets_created(&card),
        2,
        "the next scorecard is billing's second ticket"
    );
}

#[tokio::test]
async fn today_in_a_time_zone_runs_from_local_midnight_and_targets_use_min_sample() {
    let app = spawn_app().await;
    app.scorecards
        .clone()
        .set_targets(pb::SetTargetsRequest {
            team_id: String::new(),
            targets: vec![pb::Target {
                metric: pb::Metric::ResolutionRate as i32,
                value: 50.0,
            }],
        })
        .await
        .expect("targets");
    write_one(&app, fresh_contact(1, "billing")).await;
    let mut stream = open(
        &app,
        pb::WatchScorecardRequest {
            scope: Some(org()),
            moving_window: Some(pb::watch_scorecard_request::MovingWindow::TodayInTimeZone(
                "Asia/Kolkata".into(),
            )),
            min_interval: None,
            min_sample: 5,
        },
    )
    .await;
    let card = next_card(&mut stream).await;
    // Today in Kolkata, computed here with chrono-tz: [local midnight, next).
    let zone = chrono_tz::Asia::Kolkata;
    let today = Utc::now().with_timezone(&zone).date_naive();
    let midnight = |date: chrono::NaiveDate| {
        zone.from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap())
            .unwrap()
            .timestamp()
    };
    let window = card.window.expect("window");
    assert_eq!(window.from.unwrap().seconds, midnight(today));
    assert_eq!(
        window.to.unwrap().seconds,
        midnight(today.succ_opt().unwrap())
    );
    // One ticket (none if it was opened a minute before local midnight): with
    // min_sample 5 the resolution rate is never judged.
    let target = &card.targets[0];
    let expected = match target.sample_size {
        0 => pb::TargetStatus::NoData,
        1 => pb::TargetStatus::InsufficientData,
        other => panic!("sample of {other} tickets"),
    };
    assert_eq!(target.status(), expected);
}

#[tokio::test]
async fn watchers_of_one_scope_share_one_feed_and_a_reader_that_never_reads_holds_up_no_writer() {
    let mut app = spawn_app().await;
    known_teams(&app, &["billing", "returns"]).await;
    // 100 watchers of billing, one of returns, one of billing that never reads.
    let mut billing = Vec::new();
    for _ in 0..100 {
        billing.push(open(&app, trailing_day(team("billing"))).await);
    }
    let mut returns = open(&app, trailing_day(team("returns"))).await;
    // The stalled client gives its streams a 64-byte HTTP/2 window and never
    // reads: the server can send it less than one scorecard.
    let stalled_channel = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .initial_stream_window_size(STALLED_WINDOW)
        .connect()
        .await
        .expect("connects");
    let never_read = ScorecardServiceClient::new(stalled_channel)
        .watch_scorecard(trailing_day(team("billing")))
        .await
        .expect("watch opens")
        .into_inner();
    let series = scrape(&app).await;
    assert_eq!(value(&series, "support_metrics_live_watchers"), 102.0);
    assert_eq!(value(&series, "support_metrics_live_feeds"), 2.0);

    // Separate writes for at least 2 s (20 intervals of the stalled stream) while
    // it is never read: all acknowledged.
    let started = std::time::Instant::now();
    let writes = async {
        let mut written = 0;
        while written < 300 || started.elapsed() < Duration::from_secs(2) {
            write_one(&app, fresh_contact(written, "billing")).await;
            written += 1;
        }
        written as u64
    };
    let written = tokio::time::timeout(Duration::from_secs(120), writes)
        .await
        .expect("writers are not held up by a stream nobody reads");

    // Every reading watcher catches up with the last write.
    for stream in &mut billing {
        let card = until(stream, |card| tickets_created(card) == written).await;
        assert!(
            prost::Message::encoded_len(&card) > STALLED_WINDOW as usize,
            "a scorecard overflows the stalled stream's window"
        );
    }
    assert_eq!(tickets_created(&next_card(&mut returns).await), 0);

    drop(billing);
    drop(returns);
    drop(never_read);
    // Closed streams give their feeds back.
    let mut series = scrape(&app).await;
    for _ in 0..100 {
        if value(&series, "support_metrics_live_feeds") == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        series = scrape(&app).await;
    }
    assert_eq!(value(&series, "support_metrics_live_watchers"), 0.0);
    assert_eq!(value(&series, "support_metrics_live_feeds"), 0.0);
    assert_eq!(app.verify().await.mismatch_count, 0);
}

#[tokio::test]
async fn a_bad_watch_request_is_invalid_and_names_the_field() {
    let app = spawn_app().await;
    type Edit = fn(&mut pb::WatchScorecardRequest);
    let cases: Vec<(Edit, &[&str])> = vec![
        (|r| r.moving_window = None, &["moving_window"]),
        (
            |r| {
                r.moving_window = Some(pb::watch_scorecard_request::MovingWindow::Trailing(
                    prost_types::Duration {
                        seconds: 600,
                        nanos: 0,
                    },
                ))
            },
            &["trailing"],
        ),
        (
            |r| {
                r.moving_window = Some(pb::watch_scorecard_request::MovingWindow::Trailing(
                    prost_types::Duration {
                        seconds: 1000,
                        nanos: 0,
                    },
                ))
            },
            &["trailing"],
        ),
        (
            |r| {
                r.moving_window = Some(pb::watch_scorecard_request::MovingWindow::Trailing(
                    prost_types::Duration {
                        seconds: 400 * 86_400,
                        nanos: 0,
                    },
                ))
            },
            &["trailing"],
        ),
        (
            |r| {
                r.moving_window = Some(pb::watch_scorecard_request::MovingWindow::TodayInTimeZone(
                    "Mars/Olympus".into(),
                ))
            },
            &["today_in_time_zone"],
        ),
        (
            |r| {
                r.min_interval = Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 1_000_000,
                })
            },
            &["min_interval"],
        ),
        (
            |r| {
                r.min_interval = Some(prost_types::Duration {
                    seconds: -1,
                    nanos: 0,
                })
            },
            &["min_interval"],
        ),
        (|r| r.scope = None, &["scope"]),
    ];
    for (edit, expected) in cases {
        let mut request = trailing_day(team("billing"));
        edit(&mut request);
        let status = app
            .scorecards
            .clone()
            .watch_scorecard(request.clone())
            .await
            .expect_err("invalid");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{request:?}");
        assert_eq!(bad_fields(&status), expected, "{request:?}");
    }
}

#[tokio::test]
async fn streams_end_with_unavailable_when_the_server_stops() {
    let app = spawn_app().await;
    let mut stream = open(&app, trailing_day(org())).await;
    next_card(&mut stream).await;
    // Well inside the 20 s drain: open streams do not hold the stop up.
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("the server stops without waiting out the drain timeout");
    let ended = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("the stream ends");
    match ended {
        Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}"),
        Ok(message) => panic!("expected UNAVAILABLE, got {message:?}"),
    }
}
