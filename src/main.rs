//! Thin: parse the command line → telemetry → serve (until SIGTERM or Ctrl-C),
//! run one of the offline tools, or act as a client of a running server.

use std::process::ExitCode;

use clap::Parser;
use support_metrics::allocator;
use support_metrics::api::convert;
use support_metrics::app::Application;
use support_metrics::config::{Cli, Command};
use support_metrics::domain::time::{Instant, NANOS_PER_SECOND};
use support_metrics::ndjson;
use support_metrics::telemetry;
use support_metrics::tools;

/// The writer allocates and frees many small buffers per record; glibc's
/// malloc spent a quarter of its time in them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<ExitCode> {
    allocator::keep_freed_memory_longer();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<ExitCode> {
    let (logging, command) = Cli::parse().into_parts();
    telemetry::init(&logging.log, logging.log_format, std::io::stderr);
    match command {
        Command::Serve(config) => {
            let app = Application::build(&config).await?;
            app.run_until(shutdown_signal()).await?;
        }
        Command::Verify { store: config } => {
            let clean = tools::verify(&config, &mut std::io::stdout()).await?;
            if !clean {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Export {
            store: config,
            output,
            skip_damaged,
        } => {
            let summary = tokio::task::spawn_blocking(move || {
                tools::export(&config, output.as_deref(), skip_damaged)
            })
            .await??;
            if !summary.skipped.is_empty() {
                eprintln!(
                    "salvage: {} items written, {} damaged values left out:",
                    summary.items,
                    summary.skipped.len()
                );
                for why in &summary.skipped {
                    eprintln!("  {why}");
                }
                std::process::exit(2);
            }
        }
        Command::Compact {
            store: config,
            into,
        } => {
            let from = config.data_dir.clone();
            let copy = into.clone();
            let done =
                tokio::task::spawn_blocking(move || tools::compact(&config, &into)).await??;
            eprintln!(
                "compact: copied {} keys ({} MB of keys and values) into {}; sled's files {} MB → \
                 {} MB.\nKeep the server stopped, move {} aside and the copy in its place \
                 (docs/operations.md).",
                done.keys,
                done.live_bytes / 1_000_000,
                copy.display(),
                done.size_before / 1_000_000,
                done.size_after / 1_000_000,
                from.display(),
            );
        }
        Command::Client(command) => {
            let mut out = std::io::stdout();
            if !command.run(&mut out).await? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Demo {
            store: config,
            interactions,
            days,
            seed,
        } => {
            let options = tools::DemoOptions {
                seed,
                interactions: usize::try_from(interactions)?,
                days,
            };
            let (summary, end) = tools::demo(&config, &options).await?;
            let text = |instant| ndjson::timestamp_text(&convert::timestamp(instant));
            let month_before = Instant(end.0 - 30 * 86_400 * NANOS_PER_SECOND);
            eprintln!(
                "demo: {} records ({} created, {} updated, {} stale) over {days} days in {}\n\
                 start the server (`support-metrics`) and try\n  \
                 support-metrics scorecard --team billing --from {} --to {}",
                summary.lines,
                summary.created,
                summary.updated,
                summary.stale,
                config.data_dir.display(),
                text(month_before),
                text(end),
            );
        }
        Command::Import {
            store: config,
            input,
        } => {
            let summary = tools::import(&config, input.as_deref()).await?;
            eprintln!(
                "imported {} lines: {} created, {} updated, {} duplicate, {} stale, {} targets, \
                 {} team terms versions (calendars, SLA policies), {} conflicts",
                summary.lines,
                summary.created,
                summary.updated,
                summary.duplicate,
                summary.stale,
                summary.targets,
                summary.terms,
                summary.conflicts.len()
            );
            for conflict in &summary.conflicts {
                eprintln!("  {conflict}");
            }
            if !summary.conflicts.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
