//! Tags over the wire: organisation × tag and team × tag scopes, and GetDrivers
//! with each tag's share of tickets, unsatisfied CSAT answers and detractors.

use support_metrics::proto::v1 as pb;

use crate::helpers::*;

const DAY_START: &str = "2026-03-02T00:00:00Z";
const DAY_END: &str = "2026-03-03T00:00:00Z";

/// | ticket | team | tags | CSAT | NPS |
/// |---|---|---|---|---|
/// | T1 | billing | refund | 1 | 2 |
/// | T2 | billing | refund, login (on two contacts) | 5 | 10 |
/// | T3 | billing | login | 2 | |
/// | T4 | billing | | 5 | 3 |
/// | T5 | tech | refund | 1 | |
fn records() -> Vec<pb::Record> {
    let contact = |id: &str, ticket: &str, team: &str, hour: u32, tags: &[&str]| pb::Record {
        record: Some(pb::record::Record::Interaction(pb::Interaction {
            interaction_id: id.into(),
            revision: 1,
            ticket_id: ticket.into(),
            team_id: team.into(),
            channel: pb::Channel::Chat as i32,
            opened_at: Some(ts(&format!("2026-03-02T{hour:02}:00:00Z"))),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        })),
    };
    let answer = |id: &str, on: &str, kind: pb::SurveyKind, score: u32| pb::Record {
        record: Some(pb::record::Record::SurveyResponse(pb::SurveyResponse {
            response_id: id.into(),
            revision: 1,
            interaction_id: on.into(),
            kind: kind as i32,
            score,
            submitted_at: Some(ts("2026-03-02T20:00:00Z")),
            comment: String::new(),
        })),
    };
    use pb::SurveyKind::{Csat, Nps};
    vec![
        contact("i1", "T1", "billing", 1, &["refund"]),
        contact("i2a", "T2", "billing", 2, &["refund"]),
        contact("i2b", "T2", "billing", 3, &["login"]),
        contact("i3", "T3", "billing", 4, &["login"]),
        contact("i4", "T4", "billing", 5, &[]),
        contact("i5", "T5", "tech", 6, &["refund"]),
        answer("c1", "i1", Csat, 1),
        answer("c2", "i2b", Csat, 5),
        answer("c3", "i3", Csat, 2),
        answer("c4", "i4", Csat, 5),
        answer("c5", "i5", Csat, 1),
        answer("n1", "i1", Nps, 2),
        answer("n2", "i2a", Nps, 10),
        answer("n4", "i4", Nps, 3),
    ]
}

async fn drivers(app: &TestApp, scope: pb::Scope) -> pb::GetDriversResponse {
    app.scorecards
        .clone()
        .get_drivers(pb::GetDriversRequest {
            scope: Some(scope),
            window: Some(window(DAY_START, DAY_END)),
            limit: 0,
        })
        .await
        .expect("drivers")
        .into_inner()
}

/// (tag, tickets, share of tickets, of unsatisfied, of detractors)
type Row = (String, u64, Option<f64>, Option<f64>, Option<f64>);

fn rows(response: &pb::GetDriversResponse) -> Vec<Row> {
    let round = |v: Option<f64>| v.map(|v| (v * 100.0).round() / 100.0);
    response
        .drivers
        .iter()
        .map(|d| {
            (
                d.tag.clone(),
                d.metrics.as_ref().unwrap().tickets_created,
                round(d.share_of_tickets_percent),
                round(d.share_of_unsatisfied_csat_percent),
                round(d.share_of_detractors_percent),
            )
        })
        .collect()
}

fn tag_scope(team: Option<&str>, tag: &str) -> pb::Scope {
    pb::Scope {
        kind: match team {
            Some(_) => pb::ScopeKind::TeamTag,
            None => pb::ScopeKind::Tag,
        } as i32,
        team_id: team.unwrap_or_default().into(),
        tag: tag.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn drivers_show_each_tags_share_of_tickets_and_of_unhappy_answers() {
    let app = spawn_app_holding(records()).await;
    // Organisation: 5 tickets, 3 unsatisfied CSAT answers (T1, T3, T5), 2
    // detractors (T1, T4). refund: T1, T2, T5; login: T2, T3.
    let organization = drivers(&app, org()).await;
    assert_eq!(
        (
            organization.tickets_created,
            organization.unsatisfied_csat_answers,
            organization.detractors
        ),
        (5, 3, 2)
    );
    assert_eq!(
        rows(&organization),
        vec![
            ("refund".into(), 3, Some(60.0), Some(66.67), Some(50.0)),
            ("login".into(), 2, Some(40.0), Some(33.33), Some(0.0)),
        ]
    );
    let refund = organization.drivers[0].metrics.as_ref().unwrap();
    let csat = refund.csat.as_ref().unwrap();
    assert_eq!((csat.responses, csat.satisfied), (3, 1));

    // Billing: 4 tickets, unsatisfied T1 and T3, detractors T1 and T4; a tie
    // in tickets is ordered by tag.
    let billing = drivers(&app, team("billing")).await;
    assert_eq!(
        rows(&billing),
        vec![
            ("login".into(), 2, Some(50.0), Some(50.0), Some(0.0)),
            ("refund".into(), 2, Some(50.0), Some(50.0), Some(50.0)),
        ]
    );
    // The union of both teams is the organisation here.
    let union = pb::Scope {
        kind: pb::ScopeKind::Team as i32,
        team_ids: vec!["billing".into(), "tech".into()],
        ..Default::default()
    };
    assert_eq!(rows(&drivers(&app, union).await), rows(&organization));
}

#[tokio::test]
async fn tag_scopes_serve_scorecards_and_leaderboards() {
    let mut app = spawn_app_holding(records()).await;
    let day = || window(DAY_START, DAY_END);
    let card = app.scorecard(tag_scope(None, "refund"), day(), None).await;
    assert_eq!(card.metrics.unwrap().tickets_created, 3);
    let card = app
        .scorecard(tag_scope(Some("billing"), "refund"), day(), None)
        .await;
    assert_eq!(card.scope, Some(tag_scope(Some("billing"), "refund")));
    assert_eq!(card.metrics.unwrap().tickets_created, 2);
    // The backlog of a tag: every ticket here is open.
    assert_eq!(card.backlog.unwrap().open_tickets, 2);

    let board = app
        .scorecards
        .clone()
        .list_scorecards(pb::ListScorecardsRequest {
            scope_kind: pb::ScopeKind::TeamTag as i32,
            window: Some(day()),
            ..Default::default()
        })
        .await
        .expect("leaderboard")
        .into_inner();
    let listed: Vec<(String, String, u64)> = board
        .scorecards
        .iter()
        .map(|row| {
            let scope = row.scope.as_ref().unwrap();
            (
                scope.team_id.clone(),
                scope.tag.clone(),
                row.metrics.as_ref().unwrap().tickets_created,
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            ("billing".into(), "login".into(), 2),
            ("billing".into(), "refund".into(), 2),
            ("tech".into(), "refund".into(), 1),
        ]
    );
    assert_eq!(app.verify().await.mismatch_count, 0);
}

#[tokio::test]
async fn drivers_and_tag_scopes_reject_what_they_do_not_keep() {
    let app = spawn_app_holding(records()).await;
    let cases: Vec<(pb::Scope, Option<u32>, &[&str])> = vec![
        (agent("ana"), None, &["scope.kind"]),
        (tag_scope(None, "refund"), None, &["scope.kind"]),
        (org(), Some(501), &["limit"]),
        (tag_scope(None, ""), None, &["scope.tag"]),
        (tag_scope(None, &"x".repeat(65)), None, &["scope.tag"]),
        (
            pb::Scope {
                tag: "refund".into(),
                ..team("billing")
            },
            None,
            &["scope.tag"],
        ),
    ];
    for (scope, limit, expected) in cases {
        let status = app
            .scorecards
            .clone()
            .get_drivers(pb::GetDriversRequest {
                scope: Some(scope.clone()),
                window: Some(window(DAY_START, DAY_END)),
                limit: limit.unwrap_or(0),
            })
            .await
            .expect_err("invalid");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{scope:?}");
        assert_eq!(bad_fields(&status), expected, "{scope:?}");
    }
}
