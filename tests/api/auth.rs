//! Bearer tokens and roles over the wire: every role against every service.

use support_metrics::app::Application;
use support_metrics::proto::v1 as pb;
use tonic::{Code, Request};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::ServerReflectionRequest;

use crate::helpers::*;

const WRITER: &str = "writer-token-0123456789";
const READER: &str = "reader-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

/// The code each call answers with `token`, in the order of `CALLS`.
async fn answers(app: &TestApp, token: Option<&str>) -> Vec<Code> {
    let code = |result: Result<(), tonic::Status>| result.err().map_or(Code::Ok, |s| s.code());
    let mut ingest = app.ingest.clone();
    let mut scorecards = app.scorecards.clone();
    let mut admin = app.admin.clone();
    let mut health = HealthClient::new(app.channel.clone());
    let mut reflection = ServerReflectionClient::new(app.channel.clone());
    let interaction = match record_from_json(
        r#"{"interaction": {"interaction_id": "i1", "revision": 1, "ticket_id": "T1", "team_id": "billing", "channel": "EMAIL", "opened_at": "2026-03-02T09:00:00Z"}}"#,
    )
    .record
    {
        Some(pb::record::Record::Interaction(i)) => i,
        _ => unreachable!(),
    };
    vec![
        code(
            ingest
                .record_interaction(with_token(
                    pb::RecordInteractionRequest {
                        interaction: Some(interaction),
                    },
                    token,
                ))
                .await
                .map(|_| ()),
        ),
        code(
            scorecards
                .get_scorecard(with_token(
                    pb::GetScorecardRequest {
                        scope: Some(org()),
                        window: Some(window("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .map(|_| ()),
        ),
        code(
            scorecards
                .set_targets(with_token(pb::SetTargetsRequest::default(), token))
                .await
                .map(|_| ()),
        ),
        code(
            admin
                .get_stats(with_token(pb::GetStatsRequest {}, token))
                .await
                .map(|_| ()),
        ),
        code(
            health
                .check(with_token(HealthCheckRequest::default(), token))
                .await
                .map(|_| ()),
        ),
        code(
            reflection
                .server_reflection_info(with_token(
                    tokio_stream::iter([ServerReflectionRequest {
                        host: String::new(),
                        message_request: Some(MessageRequest::ListServices(String::new())),
                    }]),
                    token,
                ))
                .await
                .map(|_| ()),
        ),
    ]
}

#[tokio::test]
async fn every_role_against_every_service() {
    let dir = tempfile::tempdir().unwrap();
    let tokens_file = dir.path().join("tokens");
    std::fs::write(&tokens_file, format!("writer {WRITER}\nreader {READER}\n")).unwrap();
    let mut config = tool_config(dir.path().join("data"));
    config.tokens_file = Some(tokens_file);
    config.tokens = Some(format!("admin {ADMIN}"));
    let app = spawn_app_with(config).await;

    use Code::{Ok as OK, PermissionDenied as DENIED, Unauthenticated as UNAUTH};
    //          ingest  scorecard set targets admin  health reflection
    let expected: [(Option<&str>, [Code; 6]); 5] = [
        (None, [UNAUTH, UNAUTH, UNAUTH, UNAUTH, OK, OK]),
        (
            Some("not-a-known-token-at-all"),
            [UNAUTH, UNAUTH, UNAUTH, UNAUTH, OK, OK],
        ),
        (Some(WRITER), [OK, DENIED, DENIED, DENIED, OK, OK]),
        (Some(READER), [DENIED, OK, DENIED, DENIED, OK, OK]),
        (Some(ADMIN), [OK, OK, OK, OK, OK, OK]),
    ];
    for (token, codes) in expected {
        assert_eq!(answers(&app, token).await, codes, "token {token:?}");
    }
}

#[tokio::test]
async fn without_tokens_the_server_stays_on_loopback_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tool_config(dir.path().join("data"));
    config.listen = "0.0.0.0:0".parse().unwrap();
    let error = Application::build(&config)
        .await
        .expect_err("no tokens on every interface");
    assert!(error.to_string().contains("--insecure"), "{error}");

    config.insecure = true;
    let app = Application::build(&config).await.expect("told to");
    drop(app);

    config.insecure = false;
    config.tokens = Some("reader short".into());
    let error = Application::build(&config)
        .await
        .expect_err("a token too short to be a secret");
    assert!(error.to_string().contains("at least 16"), "{error}");
}

#[tokio::test]
async fn reflection_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tool_config(dir.path().join("data"));
    config.disable_reflection = true;
    let app = spawn_app_with(config).await;
    let status = ServerReflectionClient::new(app.channel.clone())
        .server_reflection_info(tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]))
        .await
        .expect_err("no reflection service");
    assert_eq!(status.code(), Code::Unimplemented);
}

/// The code GetStats answers with `token`.
async fn stats_code(app: &TestApp, token: &str) -> Code {
    app.admin
        .clone()
        .get_stats(with_token(pb::GetStatsRequest {}, Some(token)))
        .await
        .err()
        .map_or(Code::Ok, |s| s.code())
}

/// Replaces a file whole, as Kubernetes updates a Secret volume.
fn replace(path: &std::path::Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

/// Waits (up to 10 s) until `token` gets `code`; the code it got last.
async fn once_answered(app: &TestApp, token: &str, code: Code) -> Code {
    let mut got = stats_code(app, token).await;
    for _ in 0..100 {
        if got == code {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        got = stats_code(app, token).await;
    }
    got
}

const NEW_ADMIN: &str = "new-admin-token-0123456789";

#[tokio::test]
async fn a_changed_tokens_file_is_read_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tokens_file = dir.path().join("tokens");
    std::fs::write(&tokens_file, format!("admin {ADMIN}\n")).unwrap();
    let mut config = tool_config(dir.path().join("data"));
    config.tokens_file = Some(tokens_file.clone());
    let app = spawn_app_with(config).await;
    assert_eq!(stats_code(&app, ADMIN).await, Code::Ok);
    assert_eq!(stats_code(&app, NEW_ADMIN).await, Code::Unauthenticated);

    replace(&tokens_file, &format!("admin {NEW_ADMIN}\n"));
    assert_eq!(once_answered(&app, NEW_ADMIN, Code::Ok).await, Code::Ok);
    assert_eq!(
        stats_code(&app, ADMIN).await,
        Code::Unauthenticated,
        "a token taken out of the file is refused"
    );
}

#[tokio::test]
async fn a_bad_tokens_file_is_refused_and_the_tokens_in_force_kept() {
    let dir = tempfile::tempdir().unwrap();
    let tokens_file = dir.path().join("tokens");
    std::fs::write(&tokens_file, format!("admin {ADMIN}\n")).unwrap();
    let mut config = tool_config(dir.path().join("data"));
    config.tokens_file = Some(tokens_file.clone());
    let app = spawn_app_with(config).await;
    let checks = support_metrics::auth::RELOAD_CHECK_INTERVAL * 3;

    // A bad entry, then a file without any token (which would turn
    // authentication off): each is refused, the old tokens stay in force.
    for bad in [
        format!("admin {ADMIN}\nowner {NEW_ADMIN}\n"),
        "# emptied\n".into(),
    ] {
        replace(&tokens_file, &bad);
        tokio::time::sleep(checks).await;
        assert_eq!(stats_code(&app, ADMIN).await, Code::Ok, "after {bad:?}");
        let anonymous = app
            .admin
            .clone()
            .get_stats(pb::GetStatsRequest {})
            .await
            .expect_err("still authenticated");
        assert_eq!(anonymous.code(), Code::Unauthenticated, "after {bad:?}");
    }
    // The watch goes on after a refusal.
    replace(&tokens_file, &format!("admin {NEW_ADMIN}\n"));
    assert_eq!(once_answered(&app, NEW_ADMIN, Code::Ok).await, Code::Ok);
}
