//! Business hours over the wire: a team's calendar, FRT and resolution time in
//! working time, when a calendar applies (tickets created after it is set; all
//! of history after RebuildAggregates), and calendar validation.

use support_metrics::proto::v1 as pb;

use crate::helpers::*;

const MARCH: (&str, &str) = ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z");

fn office_hours(zone: &str, holidays: &[&str]) -> pb::BusinessCalendar {
    use pb::Weekday::*;
    pb::BusinessCalendar {
        time_zone: zone.into(),
        hours: [Monday, Tuesday, Wednesday, Thursday, Friday]
            .into_iter()
            .map(|day| pb::WorkingHours {
                weekday: day as i32,
                start: "09:00".into(),
                end: "17:00".into(),
            })
            .collect(),
        holidays: holidays.iter().map(|d| d.to_string()).collect(),
    }
}

/// A ticket of `team` created at `created`, answered at `answered` and resolved
/// at `resolved` (RFC 3339, UTC).
fn ticket(n: usize, team: &str, created: &str, answered: &str, resolved: &str) -> pb::Record {
    pb::Record {
        record: Some(pb::record::Record::Interaction(pb::Interaction {
            interaction_id: format!("i{n}"),
            revision: 1,
            ticket_id: format!("T{n}"),
            team_id: team.into(),
            channel: pb::Channel::Email as i32,
            opened_at: Some(ts(created)),
            first_response_at: Some(ts(answered)),
            closed_at: Some(ts(resolved)),
            resolved: true,
            ..Default::default()
        })),
    }
}

async fn set_calendar(
    app: &TestApp,
    team: &str,
    calendar: Option<pb::BusinessCalendar>,
) -> Result<pb::SetCalendarResponse, tonic::Status> {
    app.scorecards
        .clone()
        .set_calendar(pb::SetCalendarRequest {
            team_id: team.into(),
            calendar,
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn frt_and_resolution_time_are_reported_in_working_time_once_the_calendar_applies() {
    let mut app = spawn_app().await;
    // Berlin office hours, Good Friday (3 April) off... and a March ticket from
    // Friday 6 March 16:00 CET, answered Monday 9 March 10:00 CET (2 working
    // hours, 66 calendar hours), resolved Tuesday 10 March 09:30 CET (9.5 h).
    app.record_all(vec![ticket(
        1,
        "billing",
        "2026-03-06T15:00:00Z",
        "2026-03-09T09:00:00Z",
        "2026-03-10T08:30:00Z",
    )])
    .await;
    let answer = set_calendar(
        &app,
        "billing",
        Some(office_hours("Europe/Berlin", &["2026-04-03"])),
    )
    .await
    .expect("calendar set");
    assert!(answer.effective_from.is_some());

    // The ticket was created before the calendar: no business time yet.
    let card = app
        .scorecard(team("billing"), window(MARCH.0, MARCH.1), None)
        .await;
    let metrics = card.metrics.unwrap();
    assert_eq!(
        metrics.first_response_time.unwrap().mean_seconds,
        66.0 * 3600.0
    );
    assert_eq!(metrics.first_response_business_time, None);

    // RebuildAggregates applies the current calendar to history.
    app.rebuild().await;
    let card = app
        .scorecard(team("billing"), window(MARCH.0, MARCH.1), None)
        .await;
    let metrics = card.metrics.unwrap();
    let frt = metrics.first_response_business_time.expect("business FRT");
    assert_eq!((frt.count, frt.mean_seconds), (1, 2.0 * 3600.0));
    let resolution = metrics
        .resolution_business_time
        .expect("business resolution");
    assert_eq!(resolution.mean_seconds, 9.5 * 3600.0);
    assert_eq!(app.verify().await.mismatch_count, 0);

    // The calendar reads back as it was set; after the rebuild it applies to
    // all of history.
    let read = app
        .scorecards
        .clone()
        .get_calendar(pb::GetCalendarRequest {
            team_id: "billing".into(),
        })
        .await
        .expect("calendar")
        .into_inner();
    assert_eq!(
        read.calendar,
        Some(office_hours("Europe/Berlin", &["2026-04-03"]))
    );
    assert_eq!(read.effective_from, None);

    // A team without a calendar: NOT_FOUND, and no business time.
    let none = app
        .scorecards
        .clone()
        .get_calendar(pb::GetCalendarRequest {
            team_id: "tech".into(),
        })
        .await
        .expect_err("no calendar");
    assert_eq!(none.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn an_overnight_shift_in_a_half_hour_zone_and_removing_a_calendar() {
    let mut app = spawn_app().await;
    // 22:00-06:00 every day in Kolkata (+05:30), i.e. 16:30-00:30 UTC.
    let night = pb::BusinessCalendar {
        time_zone: "Asia/Kolkata".into(),
        hours: (1..=7)
            .map(|day| pb::WorkingHours {
                weekday: day,
                start: "22:00".into(),
                end: "06:00".into(),
            })
            .collect(),
        holidays: vec![],
    };
    let answer = set_calendar(&app, "night", Some(night.clone()))
        .await
        .unwrap();
    // Set again within the same second: versions keep their order.
    let again = set_calendar(&app, "night", Some(night)).await.unwrap();
    assert!(again.effective_from.unwrap().seconds > answer.effective_from.unwrap().seconds);
    // A new calendar applies to tickets created a day from now, so that no
    // ticket already written (up to 24 h ahead) changes.
    let now = chrono::Utc::now().timestamp();
    let effective_from = answer.effective_from.unwrap().seconds;
    assert!((now + 86_400..=now + 86_400 + 5).contains(&effective_from));
    // Created 21:30 IST, answered 01:00 IST (3 working hours), resolved 07:30
    // IST (the whole 8-hour shift).
    app.record_all(vec![ticket(
        1,
        "night",
        "2026-03-02T16:00:00Z",
        "2026-03-02T19:30:00Z",
        "2026-03-03T02:00:00Z",
    )])
    .await;
    let business = |metrics: &pb::ScorecardMetrics| {
        (
            metrics
                .first_response_business_time
                .as_ref()
                .map(|d| d.mean_seconds / 3600.0),
            metrics
                .resolution_business_time
                .as_ref()
                .map(|d| d.mean_seconds / 3600.0),
        )
    };
    app.rebuild().await;
    let card = app
        .scorecard(team("night"), window(MARCH.0, MARCH.1), None)
        .await;
    assert_eq!(business(&card.metrics.unwrap()), (Some(3.0), Some(8.0)));

    // Removed, and the removal applied to history: no business time.
    set_calendar(&app, "night", None).await.unwrap();
    app.rebuild().await;
    let card = app
        .scorecard(team("night"), window(MARCH.0, MARCH.1), None)
        .await;
    assert_eq!(business(&card.metrics.unwrap()), (None, None));
    assert_eq!(app.verify().await.mismatch_count, 0);
}

#[tokio::test]
async fn a_bad_calendar_is_invalid_and_names_the_field() {
    let app = spawn_app().await;
    type Edit = fn(&mut pb::BusinessCalendar);
    let cases: Vec<(Edit, &[&str])> = vec![
        (
            |c| c.time_zone = "Mars/Olympus".into(),
            &["calendar.time_zone"],
        ),
        (
            |c| c.hours[0].start = "09:10".into(),
            &["calendar.hours[0].start"],
        ),
        (
            |c| c.hours[1].end = "25:00".into(),
            &["calendar.hours[1].end"],
        ),
        (
            |c| c.hours[1].start = "24:00".into(),
            &["calendar.hours[1].start"],
        ),
        (
            |c| c.hours[2].start = "+9:00".into(),
            &["calendar.hours[2].start"],
        ),
        (|c| c.hours[3].weekday = 0, &["calendar.hours[3].weekday"]),
        (
            |c| c.holidays.push("2026-02-30".into()),
            &["calendar.holidays[1]"],
        ),
    ];
    for (edit, expected) in cases {
        let mut calendar = office_hours("Europe/Berlin", &["2026-12-25"]);
        edit(&mut calendar);
        let status = set_calendar(&app, "billing", Some(calendar.clone()))
            .await
            .expect_err("invalid");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{calendar:?}");
        assert_eq!(bad_fields(&status), expected, "{calendar:?}");
    }
    let status = set_calendar(&app, "", None).await.expect_err("no team");
    assert_eq!(bad_fields(&status), ["team_id"]);
}
