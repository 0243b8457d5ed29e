//! SLA policies over the wire: achieved and breached counts per SLA metric with
//! their confidence interval and targets, in business and calendar time, once a
//! policy applies (tickets created after it takes effect; all of history after
//! RebuildAggregates); the backlog's tickets breaching now and within the hour;
//! the drill-down's "SLA breached" filter; policy validation.

use chrono::{Duration, Utc};
use prost_types::Timestamp;
use support_metrics::proto::v1 as pb;

use crate::helpers::*;

const MARCH: (&str, &str) = ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z");

fn target(
    priority: pb::Priority,
    metric: pb::SlaMetric,
    within_seconds: i64,
    clock: pb::SlaClock,
) -> pb::SlaTarget {
    pb::SlaTarget {
        priority: priority as i32,
        metric: metric as i32,
        within: Some(prost_types::Duration {
            seconds: within_seconds,
            nanos: 0,
        }),
        clock: clock as i32,
    }
}

/// Monday to Friday, 09:00-17:00 in Berlin.
fn berlin_office_hours() -> pb::BusinessCalendar {
    use pb::Weekday::*;
    pb::BusinessCalendar {
        time_zone: "Europe/Berlin".into(),
        hours: [Monday, Tuesday, Wednesday, Thursday, Friday]
            .into_iter()
            .map(|day| pb::WorkingHours {
                weekday: day as i32,
                start: "09:00".into(),
                end: "17:00".into(),
            })
            .collect(),
        holidays: vec![],
    }
}

/// One interaction that is a whole ticket.
fn ticket(
    id: &str,
    team: &str,
    priority: pb::Priority,
    created: Timestamp,
    answered: Option<Timestamp>,
    resolved: Option<Timestamp>,
) -> pb::Record {
    pb::Record {
        record: Some(pb::record::Record::Interaction(pb::Interaction {
            interaction_id: format!("i-{id}"),
            revision: 1,
            ticket_id: id.into(),
            team_id: team.into(),
            channel: pb::Channel::Email as i32,
            priority: priority as i32,
            opened_at: Some(created),
            first_response_at: answered,
            resolved: resolved.is_some(),
            closed_at: resolved,
            ..Default::default()
        })),
    }
}

async fn set_policy(
    app: &TestApp,
    team: &str,
    targets: Vec<pb::SlaTarget>,
) -> Result<pb::SetSlaPolicyResponse, tonic::Status> {
    app.scorecards
        .clone()
        .set_sla_policy(pb::SetSlaPolicyRequest {
            team_id: team.into(),
            policy: Some(pb::SlaPolicy { targets }),
        })
        .await
        .map(|r| r.into_inner())
}

fn counts(stats: &Option<pb::SlaStats>) -> Option<(u64, u64)> {
    stats.as_ref().map(|s| (s.achieved, s.breached))
}

#[tokio::test]
async fn achievement_is_counted_per_sla_metric_in_business_or_calendar_time_once_it_applies() {
    use pb::{Priority::*, SlaClock::*, SlaMetric::*};
    let mut app = spawn_app().await;
    app.record_all(vec![
        // Friday 6 March 16:00 CET, answered Monday 09:30 CET: 1.5 working
        // hours (met), 65.5 calendar hours; resolved 67 hours later (missed).
        ticket(
            "T1",
            "billing",
            High,
            ts("2026-03-06T15:00:00Z"),
            Some(ts("2026-03-09T08:30:00Z")),
            Some(ts("2026-03-09T10:00:00Z")),
        ),
        // Monday 10:00 CET, answered 13:30 CET: 3.5 working hours (missed);
        // resolved 11 hours after creation (met).
        ticket(
            "T2",
            "billing",
            High,
            ts("2026-03-09T09:00:00Z"),
            Some(ts("2026-03-09T12:30:00Z")),
            Some(ts("2026-03-09T20:00:00Z")),
        ),
        // Normal: answered after exactly an hour (met: the deadline counts);
        // no resolution target for normal tickets.
        ticket(
            "T3",
            "billing",
            Normal,
            ts("2026-03-10T10:00:00Z"),
            Some(ts("2026-03-10T11:00:00Z")),
            Some(ts("2026-03-10T11:30:00Z")),
        ),
        // Low: no target at all.
        ticket(
            "T4",
            "billing",
            Low,
            ts("2026-03-10T10:00:00Z"),
            Some(ts("2026-03-13T10:00:00Z")),
            Some(ts("2026-03-20T10:00:00Z")),
        ),
    ])
    .await;
    app.scorecards
        .set_calendar(pb::SetCalendarRequest {
            team_id: "billing".into(),
            calendar: Some(berlin_office_hours()),
        })
        .await
        .expect("calendar");
    let policy = vec![
        target(High, FirstResponse, 2 * 3600, BusinessTime),
        target(High, Resolution, 86_400, CalendarTime),
        target(Normal, FirstResponse, 3600, CalendarTime),
    ];
    let answer = set_policy(&app, "billing", policy.clone())
        .await
        .expect("policy set");
    // Like a calendar, a policy applies to tickets created a day from now on.
    let now = Utc::now().timestamp();
    let effective_from = answer.effective_from.expect("effective_from").seconds;
    assert!((now + 86_400..=now + 86_400 + 5).contains(&effective_from));
    let card = app
        .scorecard(team("billing"), window(MARCH.0, MARCH.1), None)
        .await;
    let metrics = card.metrics.unwrap();
    assert_eq!(counts(&metrics.first_response_sla), None);
    assert_eq!(counts(&metrics.resolution_sla), None);

    // RebuildAggregates applies the current policy (and calendar) to history.
    app.rebuild().await;
    let targets = app
        .scorecards
        .set_targets(pb::SetTargetsRequest {
            team_id: "billing".into(),
            targets: vec![
                pb::Target {
                    metric: pb::Metric::FirstResponseSlaPercent as i32,
                    value: 90.0,
                },
                pb::Target {
                    metric: pb::Metric::ResolutionSlaPercent as i32,
                    value: 50.0,
                },
            ],
        })
        .await;
    targets.expect("targets set");
    let card = app
        .scorecard(team("billing"), window(MARCH.0, MARCH.1), None)
        .await;
    let metrics = card.metrics.unwrap();
    let frt = metrics.first_response_sla.expect("FRT SLA");
    assert_eq!((frt.achieved, frt.breached), (2, 1));
    assert!((frt.achieved_percent - 200.0 / 3.0).abs() < 1e-9);
    // Wilson 95% intervals computed outside the service (Python).
    let interval = frt.achieved_confidence.expect("interval");
    assert_eq!(interval.sample_size, 3);
    assert!((interval.lower_percent - 20.765_960_080_204_77).abs() < 1e-9);
    assert!((interval.upper_percent - 93.850_805_527_960_38).abs() < 1e-9);
    let resolution = metrics.resolution_sla.expect("resolution SLA");
    assert_eq!((resolution.achieved, resolution.breached), (1, 1));
    assert_eq!(resolution.achieved_percent, 50.0);
    let interval = resolution.achieved_confidence.expect("interval");
    assert!((interval.lower_percent - 9.453_120_573_423_075).abs() < 1e-9);
    // 66.7% misses a 90% target; 50% meets a 50% one.
    let status = |metric: pb::Metric| {
        card.targets
            .iter()
            .find(|t| t.metric == metric as i32)
            .map(|t| (t.status, t.sample_size))
    };
    assert_eq!(
        status(pb::Metric::FirstResponseSlaPercent),
        Some((pb::TargetStatus::Missed as i32, 3))
    );
    assert_eq!(
        status(pb::Metric::ResolutionSlaPercent),
        Some((pb::TargetStatus::Met as i32, 2))
    );
    // The organisation counts the same outcomes.
    let card = app.scorecard(org(), window(MARCH.0, MARCH.1), None).await;
    assert_eq!(
        counts(&card.metrics.unwrap().first_response_sla),
        Some((2, 1))
    );
    assert_eq!(app.verify().await.mismatch_count, 0);

    // The policy reads back (ordered by priority, then metric) and applies to
    // all of history; setting it kept the calendar.
    let read = app
        .scorecards
        .clone()
        .get_sla_policy(pb::GetSlaPolicyRequest {
            team_id: "billing".into(),
        })
        .await
        .expect("policy")
        .into_inner();
    let in_order = vec![policy[2], policy[0], policy[1]];
    assert_eq!(read.policy, Some(pb::SlaPolicy { targets: in_order }));
    assert_eq!(read.effective_from, None);
    let calendar = app
        .scorecards
        .clone()
        .get_calendar(pb::GetCalendarRequest {
            team_id: "billing".into(),
        })
        .await
        .expect("calendar kept")
        .into_inner();
    assert_eq!(calendar.calendar, Some(berlin_office_hours()));
    let none = app
        .scorecards
        .clone()
        .get_sla_policy(pb::GetSlaPolicyRequest {
            team_id: "tech".into(),
        })
        .await
        .expect_err("no policy");
    assert_eq!(none.code(), tonic::Code::NotFound);

    // A new calendar keeps the policy, and each reads back with the moment
    // it has held since: the policy since always, the calendar from tomorrow.
    let mut new_calendar = berlin_office_hours();
    new_calendar.holidays.push("2026-12-24".into());
    app.scorecards
        .set_calendar(pb::SetCalendarRequest {
            team_id: "billing".into(),
            calendar: Some(new_calendar),
        })
        .await
        .expect("calendar");
    let read = app
        .scorecards
        .clone()
        .get_sla_policy(pb::GetSlaPolicyRequest {
            team_id: "billing".into(),
        })
        .await
        .expect("policy kept")
        .into_inner();
    assert_eq!(read.effective_from, None);
    assert_eq!(read.policy.map(|p| p.targets.len()), Some(3));
    let calendar = app
        .scorecards
        .clone()
        .get_calendar(pb::GetCalendarRequest {
            team_id: "billing".into(),
        })
        .await
        .expect("calendar")
        .into_inner();
    assert!(calendar.effective_from.is_some());

    // Removed (no targets) and the removal applied: no outcomes, and the
    // calendar is still there.
    set_policy(&app, "billing", vec![]).await.expect("removed");
    app.rebuild().await;
    let card = app
        .scorecard(team("billing"), window(MARCH.0, MARCH.1), None)
        .await;
    let metrics = card.metrics.unwrap();
    assert_eq!(counts(&metrics.first_response_sla), None);
    assert!(metrics.first_response_business_time.is_some());
    assert_eq!(app.verify().await.mismatch_count, 0);
}

#[tokio::test]
async fn the_backlog_and_the_drill_down_show_who_is_breaching_now_and_within_the_hour() {
    use pb::{Priority::*, SlaClock::*, SlaMetric::*};
    let mut app = spawn_app().await;
    set_policy(
        &app,
        "support",
        vec![
            target(Urgent, FirstResponse, 3600, CalendarTime),
            target(Urgent, Resolution, 4 * 3600, CalendarTime),
        ],
    )
    .await
    .expect("policy");
    app.rebuild().await;
    let now = Utc::now();
    let ago = |minutes: i64| {
        let at = now - Duration::minutes(minutes);
        Timestamp {
            seconds: at.timestamp(),
            nanos: 0,
        }
    };
    app.record_all(vec![
        // Unanswered two hours after creation: breaching.
        ticket("O1", "support", Urgent, ago(120), None, None),
        // Unanswered for 30 minutes: breaches in 30.
        ticket("O2", "support", Urgent, ago(30), None, None),
        // Answered in time, resolution due in 3 h 50: neither.
        ticket("O3", "support", Urgent, ago(10), Some(ago(5)), None),
        // Answered in time, resolution due in 30 minutes.
        ticket("O4", "support", Urgent, ago(210), Some(ago(200)), None),
        // Answered an hour late: breaching since then.
        ticket("O5", "support", Urgent, ago(300), Some(ago(180)), None),
        // Not urgent: no target.
        ticket("O6", "support", Low, ago(600), None, None),
        // Resolved after 5 hours (missed), and resolved in time.
        ticket(
            "R1",
            "support",
            Urgent,
            ago(360),
            Some(ago(355)),
            Some(ago(60)),
        ),
        ticket(
            "R2",
            "support",
            Urgent,
            ago(100),
            Some(ago(95)),
            Some(ago(50)),
        ),
    ])
    .await;

    let backlog = app
        .scorecards
        .get_backlog(pb::GetBacklogRequest {
            scope: Some(team("support")),
            as_of: None,
        })
        .await
        .expect("backlog")
        .into_inner()
        .backlog
        .expect("backlog present");
    assert_eq!(backlog.open_tickets, 6);
    assert_eq!(backlog.sla_breaching, 2, "O1 and O5");
    assert_eq!(backlog.sla_breaching_within_hour, 2, "O2 and O4");
    // Three hours on, O2 and O4 breach too, and O3's resolution is due within the hour.
    let later = Timestamp {
        seconds: (now + Duration::minutes(180)).timestamp(),
        nanos: 0,
    };
    let backlog = app
        .scorecards
        .get_backlog(pb::GetBacklogRequest {
            scope: Some(team("support")),
            as_of: Some(later),
        })
        .await
        .expect("backlog")
        .into_inner()
        .backlog
        .expect("backlog present");
    assert_eq!(
        (backlog.sla_breaching, backlog.sla_breaching_within_hour),
        (4, 1)
    );

    let quarter = |at: chrono::DateTime<Utc>| {
        let seconds = at.timestamp() - at.timestamp().rem_euclid(900);
        Timestamp { seconds, nanos: 0 }
    };
    let day = pb::Window {
        from: Some(quarter(now - Duration::days(1))),
        to: Some(quarter(now + Duration::hours(1))),
    };
    let listed = app
        .scorecards
        .list_tickets(pb::ListTicketsRequest {
            scope: Some(team("support")),
            window: Some(day),
            filter: Some(pb::TicketFilter {
                sla_breached: true,
                ..Default::default()
            }),
            page_size: 50,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    let ids: Vec<&str> = listed
        .tickets
        .iter()
        .map(|t| t.ticket_id.as_str())
        .collect();
    assert_eq!(ids, ["O1", "O5", "R1"], "newest first");
    // O1 has been in breach since its first response deadline.
    let o1 = &listed.tickets[0];
    assert_eq!(
        o1.sla_breached_after.as_ref().map(|t| t.seconds),
        Some(ago(120).seconds + 3600)
    );
    assert_eq!(app.verify().await.mismatch_count, 0);
}

#[tokio::test]
async fn a_bad_policy_is_invalid_and_names_the_field() {
    use pb::{Priority::*, SlaClock::*, SlaMetric::*};
    let app = spawn_app().await;
    let good = || target(High, FirstResponse, 3600, CalendarTime);
    type Edit = fn(&mut Vec<pb::SlaTarget>);
    let cases: Vec<(Edit, &[&str])> = vec![
        (|t| t[0].priority = 99, &["policy.targets[0].priority"]),
        (|t| t[0].metric = 0, &["policy.targets[0].metric"]),
        (|t| t[0].clock = 7, &["policy.targets[0].clock"]),
        (|t| t[0].within = None, &["policy.targets[0].within"]),
        (
            |t| {
                t[0].within = Some(prost_types::Duration {
                    seconds: -1,
                    nanos: 0,
                })
            },
            &["policy.targets[0].within"],
        ),
        (
            |t| {
                t[0].within = Some(prost_types::Duration {
                    seconds: 366 * 86_400,
                    nanos: 0,
                })
            },
            &["policy.targets[0].within"],
        ),
        (
            |t| t.push(target(High, FirstResponse, 60, BusinessTime)),
            &["policy.targets[1]"],
        ),
        (
            |t| t.extend((0..8).map(|_| target(Low, Resolution, 60, BusinessTime))),
            &["policy.targets"],
        ),
    ];
    for (edit, expected) in cases {
        let mut targets = vec![good()];
        edit(&mut targets);
        let status = set_policy(&app, "billing", targets.clone())
            .await
            .expect_err("invalid");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{targets:?}");
        assert_eq!(bad_fields(&status), expected, "{targets:?}");
    }
    let status = set_policy(&app, "", vec![good()])
        .await
        .expect_err("no team");
    assert_eq!(bad_fields(&status), ["team_id"]);
    // A refused policy changed nothing.
    let none = app
        .scorecards
        .clone()
        .get_sla_policy(pb::GetSlaPolicyRequest {
            team_id: "billing".into(),
        })
        .await
        .expect_err("nothing set");
    assert_eq!(none.code(), tonic::Code::NotFound);
}
