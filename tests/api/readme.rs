//! README.md runs in its own order against a fresh server, and says what it
//! does: its records are the worked example's, each grpcurl example is sent as
//! grpcurl would send it (its JSON through the descriptors) and must succeed,
//! and every output a comment shows (`# {"outcome": "CREATED"}`, `# "key":
//! value, ...`, the `record` summary) is what comes back.

use clap::Parser;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};
use serde_json::Value;
use support_metrics::client::json;
use support_metrics::config::{Cli, Command};
use support_metrics::proto::FILE_DESCRIPTOR_SET;

use crate::helpers::*;

const README: &str = include_str!("../../README.md");

/// One command of a ```sh block, continuation lines and quoted JSON joined,
/// with the `# ...` lines that follow it.
#[derive(Debug)]
struct Example {
    command: String,
    comments: Vec<String>,
    /// The block also runs `demo`: its reads are of the demo's data.
    after_demo: bool,
}

fn examples() -> Vec<Example> {
    let mut examples = Vec::new();
    let mut in_block = false;
    let mut block: Vec<&str> = Vec::new();
    for line in README.lines() {
        match (in_block, line.trim_start().starts_with("```")) {
            (false, true) if line.trim() == "```sh" => in_block = true,
            (true, true) => {
                examples.extend(commands_of(&block));
                block.clear();
                in_block = false;
            }
            (true, false) => block.push(line),
            _ => {}
        }
    }
    examples
}

fn commands_of(block: &[&str]) -> Vec<Example> {
    let after_demo = block.iter().any(|line| line.contains("-- demo"));
    let mut examples: Vec<Example> = Vec::new();
    let mut pending = String::new();
    for line in block {
        let code = line.split("   #").next().unwrap_or(line);
        if pending.is_empty() {
            if let Some(comment) = line.trim().strip_prefix("# ") {
                if let Some(last) = examples.last_mut() {
                    last.comments.push(comment.to_owned());
                }
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
        }
        // A comment after a command on its line (`cargo run -- demo  # ...`).
        let code = if pending.is_empty() && !code.contains('\'') {
            code.split("  #").next().unwrap_or(code)
        } else {
            code
        };
        pending.push_str(code.trim_end().trim_end_matches('\\'));
        pending.push('\n');
        let quotes_open = pending.matches('\'').count() % 2 == 1;
        if !quotes_open && !code.trim_end().ends_with('\\') {
            examples.push(Example {
                command: std::mem::take(&mut pending),
                comments: Vec::new(),
                after_demo,
            });
        }
    }
    examples
}

/// The JSON between `-d '` and the closing quote; `{}` without one.
fn body(command: &str) -> &str {
    command
        .split_once("-d '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map_or("{}", |(body, _)| body)
}

fn method(pool: &DescriptorPool, command: &str) -> Option<MethodDescriptor> {
    let path = command
        .split_whitespace()
        .find(|word| word.starts_with("supportmetrics.v1.") && word.contains('/'))?;
    let (service, method) = path.split_once('/')?;
    let service = pool.get_service_by_name(service)?;
    let found = service.methods().find(|m| m.name() == method);
    found
}

/// Sends `request` as the method's input; the answers as grpcurl's JSON.
async fn call(
    app: &TestApp,
    method: &MethodDescriptor,
    request: &str,
) -> Result<Vec<Value>, tonic::Status> {
    let mut deserializer = serde_json::Deserializer::from_str(request);
    let message =
        DynamicMessage::deserialize(method.input(), &mut deserializer).unwrap_or_else(|e| {
            panic!(
                "README's JSON for {} does not parse: {e}\n{request}",
                method.name()
            )
        });
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::try_from(path).unwrap();
    let bytes = message.encode_to_vec();
    let answers: Vec<Vec<u8>> = if method.is_server_streaming() {
        let mut stream = grpc
            .server_streaming(tonic::Request::new(bytes), path, RawCodec)
            .await?
            .into_inner();
        let mut answers = Vec::new();
        // A watch streams until stopped: its first scorecard is enough.
        while let Some(answer) = stream.message().await? {
            answers.push(answer);
            if method.name() == "WatchScorecard" {
                break;
            }
        }
        answers
    } else {
        vec![grpc
            .unary(tonic::Request::new(bytes), path, RawCodec)
            .await?
            .into_inner()]
    };
    Ok(answers
        .iter()
        .map(|bytes| {
            json::message(&DynamicMessage::decode(method.output(), bytes.as_slice()).unwrap())
        })
        .collect())
}

/// What a comment promises of an answer: `{"outcome": "CREATED"} — prose`
/// (those fields), or `"key": value, "key": value, ...` (each key's first
/// occurrence in the answer, in grpcurl's order, has that value).
fn check_comment(comment: &str, answer: &Value, command: &str) {
    if comment.starts_with('{') {
        let object = &comment[..=comment.find('}').unwrap()];
        let expected: Value = serde_json::from_str(object).unwrap();
        for (key, value) in expected.as_object().unwrap() {
            assert_eq!(&answer[key], value, "{command}\n# {comment}\n{answer:#}");
        }
        return;
    }
    for pair in comment
        .split(", ")
        .map(str::trim)
        .filter(|p| p.contains("\": "))
    {
        let pair = pair.trim_end_matches(',');
        let (key, value) = pair.split_once(": ").unwrap();
        let key: String = serde_json::from_str(key).unwrap();
        let expected: Value = serde_json::from_str(value).unwrap();
        assert_eq!(
            first(answer, &key),
            Some(&expected),
            "{command}\n# {comment}\n{answer:#}"
        );
    }
}

/// The first value under `key`, depth first in the answer's order.
fn first<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    match value {
        Value::Object(fields) => {
            fields
                .iter()
                .find_map(|(k, v)| if k == key { Some(v) } else { first(v, key) })
        }
        Value::Array(items) => items.iter().find_map(|item| first(item, key)),
        _ => None,
    }
}

#[tokio::test]
async fn the_readme_runs_in_its_own_order_against_a_fresh_server() {
    run_the_readme(&spawn_app().await).await;
}

/// The demo's ids and dates are its own: the README answers the same on it.
#[tokio::test]
async fn the_readme_runs_in_its_own_order_against_a_demo_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let options = support_metrics::tools::DemoOptions {
        seed: 7,
        interactions: 500,
        days: 30,
    };
    support_metrics::tools::demo(&store_config(data.clone()), &options)
        .await
        .expect("demo runs");
    run_the_readme(&spawn_app_at(data).await).await;
}

async fn run_the_readme(app: &TestApp) {
    let pool = DescriptorPool::decode(FILE_DESCRIPTOR_SET).unwrap();
    let mut calls = 0;
    let mut cli_runs = 0;
    for example in examples() {
        let command = example.command.trim();
        if example.after_demo {
            continue;
        }
        if command.starts_with("grpcurl") {
            let Some(method) = method(&pool, command) else {
                continue; // list, describe, the health check
            };
            let answers = call(app, &method, body(command))
                .await
                .unwrap_or_else(|status| panic!("{command}\nfailed: {status:?}"));
            for comment in &example.comments {
                check_comment(comment, &answers[0], command);
            }
            calls += 1;
        } else if let Some(args) = command.strip_prefix("cargo run --release --") {
            let mut argv = vec!["support-metrics".to_owned()];
            argv.extend(args.split_whitespace().map(str::to_owned));
            let (_, parsed) = Cli::try_parse_from(&argv)
                .unwrap_or_else(|e| panic!("{command}: {e}"))
                .into_parts();
            let Command::Client(mut client) = parsed else {
                continue; // the offline tools need the server stopped
            };
            client.connection_mut().server = format!("http://{}", app.addr);
            let mut out = Vec::new();
            let ok = client
                .run(&mut out)
                .await
                .unwrap_or_else(|e| panic!("{command}: {e:#}"));
            let out = String::from_utf8(out).unwrap();
            assert!(ok, "{command}\n{out}");
            for comment in &example.comments {
                assert!(
                    out.starts_with(comment.as_str()),
                    "{command}\n# {comment}\n{out}"
                );
            }
            cli_runs += 1;
        }
    }
    assert!(calls >= 20, "only {calls} grpcurl examples ran");
    assert!(cli_runs >= 3, "only {cli_runs} CLI examples ran");
}

#[test]
fn the_readme_records_are_the_worked_example_records() {
    let pool = DescriptorPool::decode(FILE_DESCRIPTOR_SET).unwrap();
    let fixture = worked_example();
    let mut seen = 0;
    for example in examples() {
        let command = example.command.trim();
        let Some(method) = method(&pool, command) else {
            continue;
        };
        if method.parent_service().name() != "IngestService" {
            continue;
        }
        let request: Value = serde_json::from_str(body(command)).unwrap();
        let records: Vec<Value> = match request.get("records") {
            Some(Value::Array(records)) => records.clone(),
            _ => vec![request],
        };
        for record in records {
            let record = record_from_json(&record.to_string());
            assert!(
                fixture.contains(&record),
                "a README record that is not the fixture's, line for line: {record:?}"
            );
            seen += 1;
        }
    }
    assert!(seen >= 4, "{seen}");
}
