//! The binary's command line and start-up refusals: `serve` takes every server
//! flag, each command's help lists only its own, and a refusal names what to fix.

use clap::{CommandFactory, Parser};
use support_metrics::app::Application;
use support_metrics::config::{Cli, Command};

use crate::helpers::*;

fn parse(args: &[&str]) -> Result<Command, clap::Error> {
    let mut argv = vec!["support-metrics"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).map(|cli| cli.into_parts().1)
}

#[test]
fn serve_accepts_every_server_flag_as_does_no_command() {
    let flags = [
        "--listen",
        "127.0.0.1:50999",
        "--data-dir",
        "/tmp/somewhere",
        "--cache-mb",
        "8",
        "--max-in-flight",
        "7",
        "--max-message-mb",
        "2",
        "--snapshot-after-groups",
        "9",
        "--disable-reflection",
        "--log",
        "warn",
    ];
    for with_command in [true, false] {
        let args: Vec<&str> = with_command
            .then_some("serve")
            .into_iter()
            .chain(flags)
            .collect();
        let Ok(Command::Serve(config)) = parse(&args) else {
            panic!("{args:?} does not parse as serve: {:?}", parse(&args));
        };
        assert_eq!(config.listen.to_string(), "127.0.0.1:50999");
        assert_eq!(config.store.data_dir.to_str(), Some("/tmp/somewhere"));
        assert_eq!(config.store.cache_mb, 8);
        assert_eq!(config.store.snapshot_after_groups, 9);
        assert_eq!((config.max_in_flight, config.max_message_mb), (7, 2));
        assert!(config.disable_reflection);
    }
}

#[test]
fn each_command_lists_only_the_flags_it_uses() {
    Cli::command().debug_assert(); // clap's own checks of the definitions
    let mut cli = Cli::command();
    cli.build(); // hands the global flags (--log, --log-format) down
    let help = |name: &str| {
        cli.clone()
            .find_subcommand_mut(name)
            .unwrap_or_else(|| panic!("no {name} command"))
            .render_long_help()
            .to_string()
    };
    let verify = help("verify");
    assert!(verify.contains("--data-dir"), "{verify}");
    for server_only in [
        "--listen",
        "--tokens-file",
        "--tls-cert",
        "--server",
        "--json",
    ] {
        assert!(
            !verify.contains(server_only),
            "verify lists {server_only}:\n{verify}"
        );
    }
    let scorecard = help("scorecard");
    assert!(scorecard.contains("--server") && scorecard.contains("--token"));
    for store_only in ["--data-dir", "--cache-mb", "--snapshot-", "--listen"] {
        assert!(
            !scorecard.contains(store_only),
            "scorecard lists {store_only}:\n{scorecard}"
        );
    }
    // --channel says which values it takes.
    for channel in [
        "email",
        "chat",
        "phone",
        "social",
        "messaging",
        "web",
        "other",
    ] {
        assert!(scorecard.contains(channel), "{scorecard}");
    }
    let serve = help("serve");
    for flag in [
        "--listen",
        "--metrics-listen",
        "--tokens-file",
        "--data-dir",
        "--log",
    ] {
        assert!(serve.contains(flag), "serve lacks {flag}:\n{serve}");
    }
}

#[test]
fn flags_before_a_command_are_refused_not_ignored() {
    // `--data-dir X verify` would otherwise verify ./data.
    assert!(parse(&["--data-dir", "/tmp/x", "verify"]).is_err());
    assert!(parse(&["verify", "--data-dir", "/tmp/x"]).is_ok());
    // Log flags apply to every command, given after its name.
    assert!(parse(&["verify", "--log", "warn"]).is_ok());
    assert!(parse(&["scorecard", "--log", "warn", "--from", "x", "--to", "y"]).is_ok());
    // A channel that does not exist is refused with the list.
    let error = parse(&["scorecard", "--channel", "fax", "--from", "x", "--to", "y"])
        .unwrap_err()
        .to_string();
    assert!(error.contains("email") && error.contains("web"), "{error}");
}

#[tokio::test]
async fn an_empty_tokens_file_is_refused_not_read_as_authentication_off() {
    let dir = tempfile::tempdir().unwrap();
    let tokens_file = dir.path().join("tokens");
    std::fs::write(&tokens_file, "# no tokens yet\n\n").unwrap();
    let mut config = tool_config(dir.path().join("data"));
    config.tokens_file = Some(tokens_file.clone());
    let error = Application::build(&config)
        .await
        .expect_err("an empty tokens file is an error");
    let text = format!("{error:#}");
    assert!(text.contains(&tokens_file.display().to_string()), "{text}");
    assert!(text.contains("holds no token"), "{text}");
}

#[tokio::test]
async fn a_busy_grpc_port_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = tool_config(dir.path().join("data"));
    config.listen = address;
    let error = Application::build(&config)
        .await
        .expect_err("the port is taken");
    let text = format!("{error:#}");
    assert!(text.contains(&format!("gRPC address {address}")), "{text}");
}
