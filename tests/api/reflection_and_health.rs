//! What operators reach without our protos: gRPC health (Kubernetes probes) and
//! server reflection v1 and v1alpha (grpcurl).

use prost::Message;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::helpers::*;

const OUR_SERVICES: [&str; 3] = [
    "supportmetrics.v1.IngestService",
    "supportmetrics.v1.ScorecardService",
    "supportmetrics.v1.AdminService",
];

#[tokio::test]
async fn health_reports_serving_for_the_server_and_each_service() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());
    for service in std::iter::once("").chain(OUR_SERVICES) {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("check {service:?}: {e:?}"))
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "supportmetrics.v1.NoSuchService".into(),
        })
        .await
        .expect_err("an unknown service");
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn shutdown_turns_health_to_not_serving_while_requests_drain() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let first = watch
        .message()
        .await
        .expect("first status")
        .expect("a status");
    assert_eq!(first.status(), ServingStatus::Serving);

    let stopping = tokio::spawn(app.stop());
    // The watch is itself a request in flight, so the server is draining and
    // still answers it: with NOT_SERVING, before anything closes.
    let next = watch
        .message()
        .await
        .expect("next status")
        .expect("a status");
    assert_eq!(next.status(), ServingStatus::NotServing);
    drop(watch);
    stopping
        .await
        .expect("the server stops once nothing is in flight");
}

/// One reflection request on a fresh stream; the single answer.
macro_rules! reflection_tests {
    ($version:ident, $list_test:ident, $symbol_test:ident) => {
        mod $version {
            use super::*;
            use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
            use tonic_reflection::pb::$version::ServerReflectionRequest;

            async fn ask(
                app: &TestApp,
                request: MessageRequest,
            ) -> Result<MessageResponse, tonic::Status> {
                let mut client = ServerReflectionClient::new(app.channel.clone());
                let request = ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(request),
                };
                let mut answers = client
                    .server_reflection_info(tokio_stream::iter(vec![request]))
                    .await
                    .expect("reflection stream")
                    .into_inner();
                Ok(answers
                    .message()
                    .await?
                    .expect("one answer")
                    .message_response
                    .expect("a response"))
            }

            #[tokio::test]
            async fn $list_test() {
                let app = spawn_app().await;
                let MessageResponse::ListServicesResponse(list) =
                    ask(&app, MessageRequest::ListServices(String::new()))
                        .await
                        .expect("a service list")
                else {
                    panic!("expected a service list");
                };
                let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
                for expected in OUR_SERVICES.into_iter().chain(["grpc.health.v1.Health"]) {
                    assert!(
                        names.iter().any(|n| n == expected),
                        "{expected} missing from {names:?}"
                    );
                }
            }

            #[tokio::test]
            async fn $symbol_test() {
                let app = spawn_app().await;
                let answer = ask(
                    &app,
                    MessageRequest::FileContainingSymbol(
                        "supportmetrics.v1.ScorecardService".into(),
                    ),
                )
                .await
                .expect("file descriptors");
                let MessageResponse::FileDescriptorResponse(files) = answer else {
                    panic!("expected file descriptors, got {answer:?}");
                };
                let files: Vec<prost_types::FileDescriptorProto> = files
                    .file_descriptor_proto
                    .iter()
                    .map(|bytes| {
                        prost_types::FileDescriptorProto::decode(bytes.as_slice())
                            .expect("a file descriptor")
                    })
                    .collect();
                let file = files
                    .iter()
                    .find(|f| f.service.iter().any(|s| s.name() == "ScorecardService"))
                    .expect("the file defining ScorecardService");
                assert_eq!(file.package(), "supportmetrics.v1");
                let service = file
                    .service
                    .iter()
                    .find(|s| s.name() == "ScorecardService")
                    .unwrap();
                let methods: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
                for method in [
                    "GetScorecard",
                    "ListScorecards",
                    "GetTimeSeries",
                    "GetBacklog",
                    "SetTargets",
                    "GetTargets",
                ] {
                    assert!(
                        methods.contains(&method),
                        "{method} missing from {methods:?}"
                    );
                }

                // The error detail types, so that grpcurl prints a refusal's
                // google.rpc.BadRequest as fields rather than base64.
                let answer = ask(
                    &app,
                    MessageRequest::FileContainingSymbol("google.rpc.BadRequest".into()),
                )
                .await
                .expect("google.rpc.BadRequest is served");
                let MessageResponse::FileDescriptorResponse(files) = answer else {
                    panic!("expected file descriptors, got {answer:?}");
                };
                let defines_bad_request = files.file_descriptor_proto.iter().any(|bytes| {
                    let file = prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap();
                    file.package() == "google.rpc"
                        && file.message_type.iter().any(|m| m.name() == "BadRequest")
                });
                assert!(defines_bad_request);

                // tonic-reflection ends the stream with NOT_FOUND rather than sending
                // an ErrorResponse; either way grpcurl reports "not found".
                let answer = ask(
                    &app,
                    MessageRequest::FileContainingSymbol("supportmetrics.v1.NoSuchThing".into()),
                )
                .await;
                let code = match answer {
                    Err(status) => status.code() as i32,
                    Ok(MessageResponse::ErrorResponse(error)) => error.error_code,
                    Ok(other) => panic!("expected NOT_FOUND for an unknown symbol, got {other:?}"),
                };
                assert_eq!(code, Code::NotFound as i32);
            }
        }
    };
}

reflection_tests!(
    v1,
    reflection_v1_lists_our_three_services_and_health,
    reflection_v1_returns_the_file_that_defines_the_scorecard_service
);
reflection_tests!(
    v1alpha,
    reflection_v1alpha_lists_our_three_services_and_health,
    reflection_v1alpha_returns_the_file_that_defines_the_scorecard_service
);
