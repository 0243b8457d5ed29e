//! ListTickets over the wire: the tickets behind a number, newest first, page
//! by page, filtered; a ticket belongs to the scopes of all its interactions and
//! a union lists it once.

use support_metrics::proto::v1 as pb;

use crate::helpers::*;

const WEEK_START: &str = "2026-03-02T00:00:00Z";
const WEEK_END: &str = "2026-03-09T00:00:00Z";

/// A contact of `ticket` in `team`, opened on 2 March at `hour`:`minute`.
fn contact(id: &str, ticket: &str, team: &str, hour: u32, minute: u32) -> pb::Interaction {
    pb::Interaction {
        interaction_id: id.into(),
        revision: 1,
        ticket_id: ticket.into(),
        team_id: team.into(),
        agent_id: "ana".into(),
        channel: pb::Channel::Email as i32,
        priority: pb::Priority::Normal as i32,
        opened_at: Some(ts(&format!("2026-03-02T{hour:02}:{minute:02}:00Z"))),
        ..Default::default()
    }
}

fn answered(mut i: pb::Interaction, after_minutes: i64) -> pb::Interaction {
    let opened = i.opened_at.unwrap().seconds;
    i.first_response_at = Some(prost_types::Timestamp {
        seconds: opened + after_minutes * 60,
        nanos: 0,
    });
    i
}

fn resolved(mut i: pb::Interaction, after_minutes: i64) -> pb::Interaction {
    let opened = i.opened_at.unwrap().seconds;
    i.closed_at = Some(prost_types::Timestamp {
        seconds: opened + after_minutes * 60,
        nanos: 0,
    });
    i.resolved = true;
    i
}

fn tagged(mut i: pb::Interaction, tags: &[&str]) -> pb::Interaction {
    i.tags = tags.iter().map(|t| t.to_string()).collect();
    i
}

fn interaction(i: pb::Interaction) -> pb::Record {
    pb::Record {
        record: Some(pb::record::Record::Interaction(i)),
    }
}

fn survey(id: &str, on: &str, kind: pb::SurveyKind, score: u32) -> pb::Record {
    pb::Record {
        record: Some(pb::record::Record::SurveyResponse(pb::SurveyResponse {
            response_id: id.into(),
            revision: 1,
            interaction_id: on.into(),
            kind: kind as i32,
            score,
            submitted_at: Some(ts("2026-03-03T00:00:00Z")),
            comment: String::new(),
        })),
    }
}

/// Seven billing tickets T1..T7 created an hour apart (T7 newest), and T8
/// created in billing but last handled by tech.
///
/// | ticket | FRT | resolved | contacts | CSAT | NPS | tags |
/// |---|---|---|---|---|---|---|
/// | T1 | 5 min | 30 min | 1 | 5 | 10 | billing |
/// | T2 | 90 min | 3 h | 1 | 2 | 3 | billing, refund |
/// | T3 | — | open | 1 | | | login |
/// | T4 | 10 min | resolved, reopened | 2 | 3 | | |
/// | T5 | 2 h | open | 1 | | 6 | refund |
/// | T6 | 1 min | 5 min | 1 | 1 | | |
/// | T7 | — | open | 1 | | | |
/// | T8 | 20 min | resolved by tech | 2 | | | |
fn records() -> Vec<pb::Record> {
    vec![
        interaction(tagged(
            resolved(answered(contact("i1", "T1", "billing", 1, 0), 5), 30),
            &["billing"],
        )),
        interaction(tagged(
            resolved(answered(contact("i2", "T2", "billing", 2, 0), 90), 180),
            &["refund", "billing"],
        )),
        interaction(tagged(contact("i3", "T3", "billing", 3, 0), &["login"])),
        interaction(resolved(
            answered(contact("i4a", "T4", "billing", 4, 0), 10),
            20,
        )),
        interaction(resolved(contact("i4b", "T4", "billing", 9, 0), 30)),
        interaction(tagged(
            answered(contact("i5", "T5", "billing", 5, 0), 120),
            &["refund"],
        )),
        interaction(resolved(
            answered(contact("i6", "T6", "billing", 6, 0), 1),
            5,
        )),
        interaction(contact("i7", "T7", "billing", 7, 0)),
        interaction(answered(contact("i8a", "T8", "billing", 0, 30), 20)),
        interaction(resolved(contact("i8b", "T8", "tech", 10, 0), 10)),
        survey("s1", "i1", pb::SurveyKind::Csat, 5),
        survey("s2", "i2", pb::SurveyKind::Csat, 2),
        survey("s4", "i4b", pb::SurveyKind::Csat, 3),
        survey("s6", "i6", pb::SurveyKind::Csat, 1),
        survey("n1", "i1", pb::SurveyKind::Nps, 10),
        survey("n2", "i2", pb::SurveyKind::Nps, 3),
        survey("n5", "i5", pb::SurveyKind::Nps, 6),
    ]
}

fn request(scope: pb::Scope, filter: pb::TicketFilter) -> pb::ListTicketsRequest {
    pb::ListTicketsRequest {
        scope: Some(scope),
        window: Some(window(WEEK_START, WEEK_END)),
        filter: Some(filter),
        page_size: 0,
        page_token: String::new(),
        as_of: Some(ts("2026-03-02T12:00:00Z")),
    }
}

/// Every page, in order: the ticket ids of each.
async fn pages(app: &TestApp, mut request: pb::ListTicketsRequest) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    loop {
        let page = app
            .scorecards
            .clone()
            .list_tickets(request.clone())
            .await
            .expect("list tickets")
            .into_inner();
        pages.push(page.tickets.iter().map(|t| t.ticket_id.clone()).collect());
        if page.next_page_token.is_empty() {
            return pages;
        }
        request.page_token = page.next_page_token;
    }
}

async fn ids(app: &TestApp, scope: pb::Scope, filter: pb::TicketFilter) -> Vec<String> {
    pages(app, request(scope, filter)).await.concat()
}

fn minutes(n: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: n * 60,
        nanos: 0,
    })
}

#[tokio::test]
async fn tickets_come_newest_first_a_page_at_a_time() {
    let app = spawn_app_holding(records()).await;
    let mut paged = request(team("billing"), pb::TicketFilter::default());
    paged.page_size = 3;
    assert_eq!(
        pages(&app, paged).await,
        vec![
            vec!["T7", "T6", "T5"],
            vec!["T4", "T3", "T2"],
            vec!["T1", "T8"],
        ]
    );
    // A window holds only the tickets created in it.
    let mut morning = request(team("billing"), pb::TicketFilter::default());
    morning.window = Some(window("2026-03-02T02:00:00Z", "2026-03-02T04:00:00Z"));
    assert_eq!(pages(&app, morning).await.concat(), vec!["T3", "T2"]);

    let page = app
        .scorecards
        .clone()
        .list_tickets(request(team("billing"), pb::TicketFilter::default()))
        .await
        .unwrap()
        .into_inner();
    let t2 = page.tickets.iter().find(|t| t.ticket_id == "T2").unwrap();
    assert_eq!(t2.created_at, Some(ts("2026-03-02T02:00:00Z")));
    assert_eq!(t2.first_response_at, Some(ts("2026-03-02T03:30:00Z")));
    assert_eq!(t2.resolved_at, Some(ts("2026-03-02T05:00:00Z")));
    assert_eq!((t2.csat, t2.nps, t2.ces), (Some(2), Some(3), None));
    assert_eq!(t2.tags, vec!["billing", "refund"]);
    assert_eq!((t2.contacts, t2.reopened), (1, false));
    let t8 = page.tickets.iter().find(|t| t.ticket_id == "T8").unwrap();
    assert_eq!((t8.team_id.as_str(), t8.contacts), ("tech", 2));
}

#[tokio::test]
async fn each_filter_returns_the_tickets_behind_its_number() {
    let app = spawn_app_holding(records()).await;
    let billing = || team("billing");
    let filter = pb::TicketFilter::default;
    let cases: Vec<(pb::TicketFilter, Vec<&str>)> = vec![
        (
            pb::TicketFilter {
                frt_above: minutes(10),
                ..filter()
            },
            vec!["T5", "T2", "T8"],
        ),
        (
            pb::TicketFilter {
                resolution_time_above: minutes(60),
                ..filter()
            },
            vec!["T4", "T2", "T8"],
        ),
        (
            pb::TicketFilter {
                csat_at_most: 2,
                ..filter()
            },
            vec!["T6", "T2"],
        ),
        (
            pb::TicketFilter {
                nps_detractor: true,
                ..filter()
            },
            vec!["T5", "T2"],
        ),
        (
            pb::TicketFilter {
                reopened: true,
                ..filter()
            },
            vec!["T4"],
        ),
        (
            pb::TicketFilter {
                first_contact_resolved: Some(true),
                ..filter()
            },
            vec!["T6", "T2", "T1"],
        ),
        (
            pb::TicketFilter {
                first_contact_resolved: Some(false),
                ..filter()
            },
            vec!["T4", "T8"],
        ),
        // At 12:00, T7 (07:00) is 5 h old, T5 7 h, T3 9 h.
        (
            pb::TicketFilter {
                open_older_than: minutes(6 * 60),
                ..filter()
            },
            vec!["T5", "T3"],
        ),
        (
            pb::TicketFilter {
                tag: "refund".into(),
                ..filter()
            },
            vec!["T5", "T2"],
        ),
        (
            pb::TicketFilter {
                tag: "refund".into(),
                csat_at_most: 2,
                ..filter()
            },
            vec!["T2"],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            ids(&app, billing(), filter.clone()).await,
            expected,
            "{filter:?}"
        );
    }
}

#[tokio::test]
async fn a_ticket_is_listed_under_every_scope_it_touched_and_once_in_a_union() {
    let app = spawn_app_holding(records()).await;
    let all = pb::TicketFilter::default;
    assert_eq!(ids(&app, team("tech"), all()).await, vec!["T8"]);
    let union = pb::Scope {
        kind: pb::ScopeKind::Team as i32,
        team_ids: vec!["tech".into(), "billing".into()],
        ..Default::default()
    };
    let listed = ids(&app, union, all()).await;
    assert_eq!(listed.len(), 8);
    assert_eq!(listed.iter().filter(|id| *id == "T8").count(), 1);
    assert_eq!(ids(&app, org(), all()).await, listed);
    assert_eq!(ids(&app, agent("ana"), all()).await, listed);
    // No record is on the CHAT channel: it is unknown, not empty.
    let unknown = app
        .scorecards
        .clone()
        .list_tickets(request(channel(pb::Channel::Chat), all()))
        .await
        .expect_err("no record names CHAT");
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
}

#[tokio::test]
async fn a_bad_drill_down_request_names_the_field() {
    let app = spawn_app_holding(records()).await;
    type Edit = fn(&mut pb::ListTicketsRequest);
    let cases: Vec<(Edit, &[&str])> = vec![
        (|r| r.page_token = "zz".into(), &["page_token"]),
        (|r| r.page_token = "0011".into(), &["page_token"]),
        (|r| r.page_size = 501, &["page_size"]),
        (
            |r| r.filter.as_mut().unwrap().csat_at_most = 6,
            &["filter.csat_at_most"],
        ),
        (
            |r| {
                r.filter.as_mut().unwrap().frt_above = Some(prost_types::Duration {
                    seconds: -5,
                    nanos: 0,
                })
            },
            &["filter.frt_above"],
        ),
        (
            |r| r.filter.as_mut().unwrap().tag = "x".repeat(65),
            &["filter.tag"],
        ),
        (|r| r.window = None, &["window"]),
    ];
    for (edit, expected) in cases {
        let mut bad = request(team("billing"), pb::TicketFilter::default());
        edit(&mut bad);
        let status = app
            .scorecards
            .clone()
            .list_tickets(bad.clone())
            .await
            .expect_err("invalid");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad:?}");
        assert_eq!(bad_fields(&status), expected, "{bad:?}");
    }
}
