//! The command-line client against a running server with tokens: what it
//! records and prints matches what the API answers.

use serde_json::Value;
use support_metrics::client::{ClientCommand, Connection, ScopeArgs};
use support_metrics::proto::v1 as pb;

use crate::helpers::*;

const WRITER: &str = "writer-token-0123456789";
const READER: &str = "reader-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

fn connection(app: &TestApp, token: &str) -> Connection {
    Connection {
        server: format!("http://{}", app.addr),
        token: Some(token.to_owned()),
        ca_cert: None,
        client_cert: None,
        client_key: None,
    }
}

async fn run(command: ClientCommand) -> (bool, String) {
    let mut out = Vec::new();
    let ok = command.run(&mut out).await.expect("the command runs");
    (ok, String::from_utf8(out).unwrap())
}

async fn app_with_tokens() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tool_config(dir.keep().join("data"));
    config.tokens = Some(format!("writer {WRITER}; reader {READER}; admin {ADMIN}"));
    spawn_app_with(config).await
}

#[tokio::test]
async fn record_then_read_back_what_the_api_answers() {
    let app = app_with_tokens().await;
    let example = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/worked-example.ndjson"
    ));
    let (ok, out) = run(ClientCommand::Record {
        connection: connection(&app, WRITER),
        input: Some(example.clone()),
    })
    .await;
    assert!(ok, "{out}");
    assert!(
        out.starts_with("13 created, 0 updated, 0 duplicate"),
        "{out}"
    );

    let scope = ScopeArgs {
        team: Some("billing".into()),
        ..ScopeArgs::default()
    };
    let scorecard = |json| ClientCommand::Scorecard {
        connection: connection(&app, READER),
        scope: scope.clone(),
        from: "2026-03-01T00:00:00Z".into(),
        to: "2026-04-01T00:00:00Z".into(),
        as_of: Some("2026-03-03T00:00:00Z".into()),
        compare_previous: false,
        min_sample: 0,
        json,
    };
    let (_, json) = run(scorecard(true)).await;
    let printed: Value = serde_json::from_str(&json).expect("JSON output");
    let mut scorecards = app.scorecards.clone();
    let mut request = tonic::Request::new(pb::GetScorecardRequest {
        scope: Some(team("billing")),
        window: Some(window("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")),
        backlog_as_of: Some(ts("2026-03-03T00:00:00Z")),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {READER}").parse().unwrap());
    let direct = scorecards
        .get_scorecard(request)
        .await
        .unwrap()
        .into_inner()
        .scorecard
        .unwrap();
    let metrics = direct.metrics.as_ref().unwrap();
    let card = &printed["scorecard"];
    // Proto3 JSON as grpcurl prints it: 64-bit counts as strings.
    assert_eq!(
        card["metrics"]["tickets_created"],
        metrics.tickets_created.to_string()
    );
    assert_eq!(
        card["metrics"]["interactions"],
        metrics.interactions.to_string()
    );
    assert_eq!(
        card["metrics"]["csat"]["satisfied_percent"].as_f64(),
        metrics.csat.as_ref().map(|c| c.satisfied_percent)
    );
    assert_eq!(
        card["backlog"]["open_tickets"],
        direct.backlog.as_ref().unwrap().open_tickets.to_string()
    );
    // As `grpcurl -emit-defaults` writes them: an unset message is null, an
    // unset `optional` number is left out, a whole double has no fraction.
    assert_eq!(card["previous_window"], Value::Null, "{json}");
    assert_eq!(card["metrics"]["ces"], Value::Null, "{json}");
    assert!(json.contains("\"resolution_rate_percent\": 75,"), "{json}");
    assert_eq!(card["metrics"]["social"]["negative_percent"], 100, "{json}");
    let churn = card["metrics"]["churn"].as_object().unwrap();
    assert!(!churn.contains_key("unsatisfied_churn_percent"), "{json}");
    assert_eq!(churn["unsatisfied_resolved_tickets"], "0", "{json}");

    let (_, table) = run(scorecard(false)).await;
    let row = table
        .lines()
        .find(|line| line.starts_with("scorecard.metrics.tickets_created "))
        .expect("a row per field");
    assert!(
        row.ends_with(&format!(" {}", metrics.tickets_created)),
        "{row}"
    );
    // Billing's FRT: (600 + 120 + 3600) / 3 = 1440 s; CSAT one 5.
    assert!(
        table.contains("scorecard.metrics.first_response_time.mean_seconds")
            && table.contains(" 24m 00s\n"),
        "{table}"
    );
    assert!(
        table.contains("scorecard.metrics.csat.score_counts[score 5]"),
        "{table}"
    );
    assert!(!table.contains("UNSPECIFIED"), "{table}");

    let (_, stats) = run(ClientCommand::Stats {
        connection: connection(&app, ADMIN),
        json: false,
    })
    .await;
    let interactions = stats
        .lines()
        .find_map(|line| line.strip_prefix("interactions "))
        .map(str::trim);
    assert_eq!(interactions, Some("7"), "{stats}");
}

#[tokio::test]
async fn refusals_are_reported_with_their_lines_and_roles_are_enforced() {
    let app = app_with_tokens().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("records.ndjson");
    let good = include_str!("../fixtures/worked-example.ndjson")
        .lines()
        .next()
        .unwrap();
    std::fs::write(
        &file,
        format!("{good}\n{{\"interaction\": {{\"interaction_id\": \"x\"}}}}\nnot json\n"),
    )
    .unwrap();
    let (ok, out) = run(ClientCommand::Record {
        connection: connection(&app, WRITER),
        input: Some(file.clone()),
    })
    .await;
    assert!(!ok, "refused lines make the command fail");
    assert!(out.starts_with("1 created"), "{out}");
    assert!(out.contains("line 2: INVALID_ARGUMENT"), "{out}");
    assert!(out.contains("interaction.team_id"), "{out}");
    assert!(out.contains("line 3: not JSON"), "{out}");

    let error = ClientCommand::Record {
        connection: connection(&app, READER),
        input: Some(file),
    }
    .run(&mut Vec::new())
    .await
    .expect_err("a reader may not write");
    assert!(
        format!("{error:#}").contains("the Reader role may not call"),
        "{error:#}"
    );
}

#[tokio::test]
async fn a_call_without_a_token_says_which_flag_to_use() {
    let app = app_with_tokens().await;
    let mut without = connection(&app, READER);
    without.token = None;
    let error = ClientCommand::Stats {
        connection: without,
        json: false,
    }
    .run(&mut Vec::new())
    .await
    .expect_err("no token");
    let text = format!("{error:#}");
    assert!(text.contains("Unauthenticated"), "{text}");
    assert!(text.contains("use `--token"), "{text}");
}
