//! Hostile input: arbitrary field values and arbitrary bytes thrown at decoding
//! and validation, in process and over the wire. Nothing panics; every answer
//! is OK or a clear status; INVALID_ARGUMENT always names the bad fields; the
//! server keeps serving.

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use prost::Message;
use prost_types::{Duration, Timestamp};
use support_metrics::api::scorecard::parse_targets;
use support_metrics::api::validate;
use support_metrics::proto::v1 as pb;
use tonic::Code;

use crate::helpers::*;

/// Text that validation must survive: empty, long, unicode, control characters.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9]{1,8}",
        ".{0,40}",
        "[\\x00-\\x1f]{1,4}",
        Just("x".repeat(129)),
        Just("é".repeat(70)),
        Just("a".repeat(5_000)),
    ]
}

fn hostile_timestamp() -> impl Strategy<Value = Option<Timestamp>> {
    prop_oneof![
        Just(None),
        (1_700_000_000i64..1_800_000_000, 0i32..1_000_000_000)
            .prop_map(|(seconds, nanos)| Some(Timestamp { seconds, nanos })),
        (any::<i64>(), any::<i32>())
            .prop_map(|(seconds, nanos)| Some(Timestamp { seconds, nanos })),
        Just(Some(Timestamp {
            seconds: 1_772_442_000,
            nanos: -1
        })),
        Just(Some(Timestamp {
            seconds: 1_772_442_000,
            nanos: 2_000_000_000
        })),
        Just(Some(Timestamp {
            seconds: i64::MAX,
            nanos: 999_999_999
        })),
        Just(Some(Timestamp {
            seconds: i64::MIN,
            nanos: 0
        })),
    ]
}

fn hostile_duration() -> impl Strategy<Value = Option<Duration>> {
    prop_oneof![
        Just(None),
        (0i64..100_000).prop_map(|seconds| Some(Duration { seconds, nanos: 0 })),
        (any::<i64>(), any::<i32>()).prop_map(|(seconds, nanos)| Some(Duration { seconds, nanos })),
    ]
}

/// Durations around the bounds of windows and intervals: whole quarters, sub-second
/// intervals, a year and more, and anything.
fn hostile_bound() -> impl Strategy<Value = Option<prost_types::Duration>> {
    prop_oneof![
        Just(None),
        (0i64..400 * 86_400, 0i32..1_000_000_000)
            .prop_map(|(seconds, nanos)| Some(prost_types::Duration { seconds, nanos })),
        (0i64..100, prop::sample::select(vec![0i32, 100_000_000])).prop_map(|(quarters, nanos)| {
            Some(prost_types::Duration {
                seconds: quarters * 900,
                nanos,
            })
        }),
        (any::<i64>(), any::<i32>())
            .prop_map(|(seconds, nanos)| Some(prost_types::Duration { seconds, nanos })),
    ]
}

fn hostile_enum() -> impl Strategy<Value = i32> {
    prop_oneof![0i32..8, any::<i32>()]
}

fn hostile_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        -1.0f64..1.0,
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        any::<f64>(),
    ]
}

fn hostile_interaction() -> impl Strategy<Value = pb::Interaction> {
    (
        (
            hostile_text(),
            any::<u64>(),
            hostile_text(),
            hostile_text(),
            hostile_text(),
        ),
        (hostile_enum(), hostile_enum()),
        (
            hostile_timestamp(),
            hostile_timestamp(),
            hostile_timestamp(),
        ),
        (hostile_duration(), any::<bool>()),
        prop::collection::vec(hostile_text(), 0..20),
        prop::option::of((hostile_enum(), hostile_float())),
    )
        .prop_map(
            |(
                (id, revision, ticket, team, agent),
                (channel, priority),
                times,
                (handle, resolved),
                tags,
                social,
            )| {
                pb::Interaction {
                    interaction_id: id,
                    revision,
                    ticket_id: ticket,
                    team_id: team,
                    agent_id: agent,
                    customer_id: String::new(),
                    channel,
                    priority,
                    opened_at: times.0,
                    first_response_at: times.1,
                    closed_at: times.2,
                    handle_time: handle,
                    resolved,
                    tags,
                    social: social.map(|(kind, sentiment)| pb::SocialFacts { kind, sentiment }),
                }
            },
        )
}

fn hostile_record() -> impl Strategy<Value = pb::Record> {
    use pb::record::Record as R;
    prop_oneof![
        hostile_interaction().prop_map(|i| Some(R::Interaction(i))),
        (
            hostile_text(),
            hostile_text(),
            hostile_enum(),
            any::<u32>(),
            hostile_timestamp(),
            hostile_text()
        )
            .prop_map(|(id, interaction, kind, score, at, comment)| {
                Some(R::SurveyResponse(pb::SurveyResponse {
                    response_id: id,
                    revision: 1,
                    interaction_id: interaction,
                    kind,
                    score: score % 12,
                    submitted_at: at,
                    comment,
                }))
            }),
        (hostile_text(), any::<u32>(), hostile_timestamp()).prop_map(|(id, score, at)| {
            Some(R::QualityReview(pb::QualityReview {
                review_id: id.clone(),
                revision: 0,
                interaction_id: id,
                reviewer_id: "qa".into(),
                score,
                reviewed_at: at,
            }))
        }),
        (hostile_text(), hostile_enum(), hostile_timestamp()).prop_map(|(id, kind, at)| {
            Some(R::CustomerEvent(pb::CustomerEvent {
                event_id: id.clone(),
                revision: 2,
                customer_id: id,
                kind,
                occurred_at: at,
            }))
        }),
        Just(None),
    ]
    .prop_map(|record| pb::Record { record })
}

/// A valid interaction, so that some hostile batches carry writes that land.
fn valid_interaction(n: u32) -> pb::Record {
    record_from_json(&format!(
        r#"{{"interaction": {{"interaction_id": "ok-{n}", "revision": 1, "ticket_id": "T-{n}", "team_id": "team", "channel": "EMAIL", "opened_at": "2026-03-02T09:00:00Z"}}}}"#
    ))
}

/// Statuses a hostile request may get; anything else is a bug.
fn is_clear_refusal(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::AlreadyExists
            | Code::OutOfRange
            | Code::FailedPrecondition
            | Code::NotFound
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    /// Arbitrary bytes decoded as each request and validated as the handlers do.
    #[test]
    fn decoding_and_validating_arbitrary_bytes_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        if let Ok(batch) = pb::RecordBatchRequest::decode(bytes.as_slice()) {
            for (index, record) in batch.records.iter().enumerate() {
                if let Err(violations) = validate::record(record, &format!("records[{index}]")) {
                    prop_assert!(!violations.is_empty());
                }
            }
        }
        if let Ok(request) = pb::RecordInteractionRequest::decode(bytes.as_slice()) {
            if let Some(interaction) = &request.interaction {
                let _ = validate::interaction(interaction, "interaction");
            }
        }
        if let Ok(request) = pb::SetTargetsRequest::decode(bytes.as_slice()) {
            let _ = parse_targets(&request);
        }
        if let Ok(request) = pb::SetSlaPolicyRequest::decode(bytes.as_slice()) {
            if let Some(policy) = &request.policy {
                let _ = validate::Fields::new("").sla_policy("policy", policy);
            }
        }
        if let Ok(request) = pb::GetScorecardRequest::decode(bytes.as_slice()) {
            let mut fields = validate::Fields::new("");
            let _ = fields.selection("scope", request.scope.as_ref());
            let _ = fields.window("window", request.window.as_ref());
            let _ = fields.as_of("backlog_as_of", request.backlog_as_of.as_ref());
        }
    }

    /// Hostile SLA targets: a policy is accepted whole or every violation names
    /// a target's field.
    #[test]
    fn every_violation_of_a_hostile_sla_policy_names_its_target(
        targets in prop::collection::vec(
            (hostile_enum(), hostile_enum(), hostile_bound(), hostile_enum()),
            0..11,
        ),
    ) {
        let policy = pb::SlaPolicy {
            targets: targets
                .into_iter()
                .map(|(priority, metric, within, clock)| pb::SlaTarget {
                    priority,
                    metric,
                    within,
                    clock,
                })
                .collect(),
        };
        let mut fields = validate::Fields::new("");
        let parsed = fields.sla_policy("policy", &policy);
        match fields.finish(parsed) {
            Ok(parsed) => prop_assert_eq!(parsed.rules().len(), policy.targets.len()),
            Err(violations) => {
                prop_assert!(!violations.is_empty());
                for violation in violations {
                    prop_assert!(violation.field.starts_with("policy.targets"), "{:?}", violation);
                }
            }
        }
    }

    /// Hostile field values: a violation always names a field of the record.
    #[test]
    fn every_violation_of_a_hostile_record_names_its_field(record in hostile_record()) {
        if let Err(violations) = validate::record(&record, "records[0]") {
            prop_assert!(!violations.is_empty());
            for violation in violations {
                prop_assert!(violation.field.starts_with("records[0]"), "{:?}", violation);
                prop_assert!(!violation.description.is_empty());
            }
        }
    }
}

#[test]
fn hostile_batches_over_the_wire_get_clear_answers() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut app = runtime.block_on(spawn_app());
    let ingest = app.ingest.clone();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 150,
        ..ProptestConfig::default()
    });
    let accepted = std::cell::Cell::new(0u64);
    let sent_valid = std::cell::Cell::new(0u32);
    let strategy = prop::collection::vec(hostile_record(), 0..12);
    runner
        .run(&strategy, |mut records| {
            let n = sent_valid.get();
            sent_valid.set(n + 1);
            records.push(valid_interaction(n));
            let mut ingest = ingest.clone();
            let answer = runtime.block_on(ingest.record_batch(pb::RecordBatchRequest {
                records: records.clone(),
            }));
            let results = match answer {
                Ok(response) => response.into_inner().results,
                Err(status) => {
                    prop_assert!(is_clear_refusal(status.code()), "{status:?}");
                    return Ok(());
                }
            };
            prop_assert_eq!(results.len(), records.len());
            for result in results {
                match result.result {
                    Some(pb::item_result::Result::Outcome(_)) => accepted.set(accepted.get() + 1),
                    Some(pb::item_result::Result::Error(error)) => {
                        prop_assert!(
                            ["INVALID_ARGUMENT", "ALREADY_EXISTS"].contains(&error.code.as_str()),
                            "{:?}",
                            error
                        );
                        if error.code == "INVALID_ARGUMENT" {
                            prop_assert!(!error.field_violations.is_empty(), "{:?}", error);
                        }
                    }
                    None => prop_assert!(false, "an item without a result"),
                }
            }
            Ok(())
        })
        .unwrap();
    assert!(accepted.get() >= 150, "the valid records landed");
    let stats = runtime.block_on(app.stats());
    assert!(stats.interactions >= 150);
    assert_eq!(runtime.block_on(app.verify()).mismatch_count, 0);
}

fn hostile_scope() -> impl Strategy<Value = Option<pb::Scope>> {
    prop::option::of(
        (
            hostile_enum(),
            hostile_text(),
            hostile_text(),
            hostile_enum(),
            prop::collection::vec(hostile_text(), 0..4),
            hostile_text(),
        )
            .prop_map(
                |(kind, team_id, agent_id, channel, team_ids, tag)| pb::Scope {
                    kind,
                    team_id,
                    agent_id,
                    channel,
                    team_ids,
                    tag,
                },
            ),
    )
}

fn hostile_window() -> impl Strategy<Value = Option<pb::Window>> {
    prop::option::of(
        (hostile_timestamp(), hostile_timestamp()).prop_map(|(from, to)| pb::Window { from, to }),
    )
}

#[test]
fn hostile_reads_over_the_wire_get_clear_answers() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut app = runtime.block_on(spawn_app());
    let example = worked_example();
    let interactions = example
        .iter()
        .filter(|r| matches!(r.record, Some(pb::record::Record::Interaction(_))))
        .count() as u64;
    runtime.block_on(app.record_all(example));
    let scorecards = app.scorecards.clone();
    let watches_answered = std::cell::Cell::new(0u32);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 200,
        ..ProptestConfig::default()
    });
    let strategy = (
        // Valid scopes now and then, so that hostile windows, bounds and
        // intervals reach past scope validation.
        prop_oneof![
            3 => hostile_scope(),
            1 => prop::sample::select(vec![Some(org()), Some(team("billing"))]),
        ],
        hostile_window(),
        hostile_timestamp(),
        hostile_enum(),
        prop_oneof![
            Just(String::new()),
            Just("Asia/Kolkata".to_owned()),
            Just("Mars/Olympus".to_owned()),
            ".{0,30}"
        ],
        (hostile_enum(), any::<u32>(), hostile_text()),
        (
            hostile_bound(),
            hostile_bound(),
            any::<bool>(),
            any::<u64>(),
        ),
        // A valid moving window and interval now and then: hostile ones alone
        // let a watch past validation in ~2% of cases, so 200 cases had ~3%
        // odds of never reaching the answering side.
        prop::bool::weighted(0.25),
    );
    runner
        .run(
            &strategy,
            |(
                scope,
                window,
                as_of,
                granularity,
                zone,
                (order_by, page_size, token),
                (bound, interval, today, min_sample),
                valid_watch,
            )| {
                let mut client = scorecards.clone();
                let answers = runtime.block_on(async {
                    let (moving_window, min_interval) = if valid_watch {
                        let hour = prost_types::Duration {
                            seconds: 3600,
                            nanos: 0,
                        };
                        (
                            pb::watch_scorecard_request::MovingWindow::Trailing(hour),
                            None,
                        )
                    } else if today {
                        (
                            pb::watch_scorecard_request::MovingWindow::TodayInTimeZone(
                                zone.clone(),
                            ),
                            interval,
                        )
                    } else {
                        (
                            pb::watch_scorecard_request::MovingWindow::Trailing(
                                bound.unwrap_or_default(),
                            ),
                            interval,
                        )
                    };
                    // A watch either refuses or answers with a first scorecard.
                    let watched = match client
                        .watch_scorecard(pb::WatchScorecardRequest {
                            scope: scope.clone(),
                            moving_window: Some(moving_window),
                            min_interval,
                            min_sample,
                        })
                        .await
                    {
                        Ok(stream) => {
                            let first = tokio::time::timeout(
                                std::time::Duration::from_secs(10),
                                stream.into_inner().message(),
                            )
                            .await
                            .expect("a first scorecard in time");
                            watches_answered.set(watches_answered.get() + 1);
                            first.map(|message| assert!(message.is_some()))
                        }
                        Err(status) => Err(status),
                    };
                    vec![
                        watched,
                        client
                            .list_tickets(pb::ListTicketsRequest {
                                scope: scope.clone(),
                                window,
                                filter: Some(pb::TicketFilter {
                                    frt_above: bound,
                                    resolution_time_above: interval,
                                    csat_at_most: page_size % 8,
                                    nps_detractor: today,
                                    reopened: !today,
                                    first_contact_resolved: Some(today),
                                    open_older_than: bound,
                                    tag: token.clone(),
                                    sla_breached: today,
                                }),
                                page_size,
                                page_token: token.clone(),
                                as_of,
                            })
                            .await
                            .map(|_| ()),
                        client
                            .get_drivers(pb::GetDriversRequest {
                                scope: scope.clone(),
                                window,
                                limit: page_size,
                            })
                            .await
                            .map(|_| ()),
                        client
                            .get_scorecard(pb::GetScorecardRequest {
                                scope: scope.clone(),
                                window,
                                compare_previous: true,
                                include_organization: true,
                                backlog_as_of: as_of,
                                min_sample: 3,
                            })
                            .await
                            .map(|_| ()),
                        client
                            .get_time_series(pb::GetTimeSeriesRequest {
                                scope: scope.clone(),
                                window,
                                granularity,
                                time_zone: zone,
                            })
                            .await
                            .map(|_| ()),
                        client
                            .list_scorecards(pb::ListScorecardsRequest {
                                scope_kind: scope.as_ref().map_or(0, |s| s.kind),
                                window,
                                order_by,
                                ascending: false,
                                page_size,
                                page_token: token,
                                min_sample: 0,
                                by_confidence_bound: today,
                            })
                            .await
                            .map(|_| ()),
                        client
                            .get_backlog(pb::GetBacklogRequest { scope, as_of })
                            .await
                            .map(|_| ()),
                    ]
                });
                for answer in answers {
                    if let Err(status) = answer {
                        prop_assert!(is_clear_refusal(status.code()), "{:?}", status);
                        if status.code() == Code::InvalidArgument {
                            prop_assert!(!bad_fields(&status).is_empty(), "{:?}", status);
                        }
                    }
                }
                Ok(())
            },
        )
        .unwrap();
    // Reads changed nothing.
    assert_eq!(runtime.block_on(app.stats()).interactions, interactions);
    assert!(
        watches_answered.get() > 0,
        "no hostile watch got past validation"
    );
}

const METHODS: [&str; 8] = [
    "/supportmetrics.v1.IngestService/RecordInteraction",
    "/supportmetrics.v1.IngestService/RecordSurveyResponse",
    "/supportmetrics.v1.IngestService/RecordBatch",
    "/supportmetrics.v1.ScorecardService/GetScorecard",
    "/supportmetrics.v1.ScorecardService/GetTimeSeries",
    "/supportmetrics.v1.ScorecardService/ListScorecards",
    "/supportmetrics.v1.ScorecardService/SetTargets",
    "/supportmetrics.v1.AdminService/GetStats",
];

#[test]
fn arbitrary_bytes_over_the_wire_are_refused_and_the_server_keeps_serving() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut app = runtime.block_on(spawn_app());
    let channel = app.channel.clone();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    });
    let strategy = (0..METHODS.len(), prop::collection::vec(any::<u8>(), 0..200));
    runner
        .run(&strategy, |(method, bytes)| {
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            let answer = runtime.block_on(async {
                grpc.ready().await.expect("ready");
                grpc.unary(
                    tonic::Request::new(bytes),
                    http::uri::PathAndQuery::from_static(METHODS[method]),
                    RawCodec,
                )
                .await
            });
            if let Err(status) = answer {
                // gRPC's convention, which tonic follows: a request that does not
                // parse as protobuf is INTERNAL "failed to decode Protobuf message".
                let undecodable = status.code() == Code::Internal
                    && status
                        .message()
                        .contains("failed to decode Protobuf message");
                prop_assert!(
                    undecodable || is_clear_refusal(status.code()),
                    "{} answered {:?}",
                    METHODS[method],
                    status
                );
            }
            Ok(())
        })
        .unwrap();
    // Still serving (the helpers panic on any error), and consistent.
    runtime.block_on(app.stats());
    assert_eq!(runtime.block_on(app.verify()).mismatch_count, 0);
}

/// Asserts a refusal of a 1 MiB value: INVALID_ARGUMENT naming `field`, with a
/// message and description that show only a short prefix of the value.
fn assert_refused_briefly(status: &tonic::Status, field: &str) {
    use tonic_types::StatusExt;
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "{}",
        &status.message()[..200.min(status.message().len())]
    );
    assert_eq!(bad_fields(status), vec![field.to_owned()]);
    assert!(
        status.message().len() < 300,
        "message of {} bytes",
        status.message().len()
    );
    let bad = status.get_details_bad_request().unwrap();
    let description = &bad.field_violations[0].description;
    assert!(
        description.len() < 200,
        "description of {} bytes",
        description.len()
    );
    assert!(description.contains("(1048576 bytes)"), "{description}");
}

#[tokio::test]
async fn a_one_mebibyte_time_zone_is_refused_by_name_with_a_short_message() {
    let mut app = spawn_app().await;
    let zone = "z".repeat(1 << 20);
    let status = app
        .scorecards
        .get_time_series(pb::GetTimeSeriesRequest {
            scope: Some(org()),
            window: Some(window("2026-03-02T00:00:00Z", "2026-03-03T00:00:00Z")),
            granularity: pb::Granularity::Day as i32,
            time_zone: zone.clone(),
        })
        .await
        .unwrap_err();
    assert_refused_briefly(&status, "time_zone");

    let status = app
        .scorecards
        .set_calendar(pb::SetCalendarRequest {
            team_id: "billing".into(),
            calendar: Some(pb::BusinessCalendar {
                time_zone: zone.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_refused_briefly(&status, "calendar.time_zone");

    let mut watch = pb::WatchScorecardRequest {
        scope: Some(org()),
        ..Default::default()
    };
    watch.moving_window = Some(pb::watch_scorecard_request::MovingWindow::TodayInTimeZone(
        zone,
    ));
    let status = app.scorecards.watch_scorecard(watch).await.unwrap_err();
    assert_refused_briefly(&status, "today_in_time_zone");
}
