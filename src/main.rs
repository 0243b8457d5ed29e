//! Thin: parse the command line → telemetry → serve (until SIGTERM or Ctrl-C),
//! run one of the offline tools, or act as a client of a running server.

use std::process::ExitCode;

use clap::Parser;
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

/// mimalloc's option `purge_delay` (`mi_option_purge_delay` in mimalloc.h;
/// libmimalloc-sys names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long memory stays free before mimalloc gives it back to the kernel.
/// Its default, 1 s, is the writer's checkpoint interval: pages freed by one
/// second's work were given back and faulted in again, zeroed, by the next.
/// A `demo` load of 10,000 interactions took 100,000–260,000 page faults;
/// with 10 s, ~1,000, and 10–20% less CPU (docs/benchmarks.md). 10 s keeps
/// memory across checkpoints and still gives back what a burst leaves behind.
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// Sets [`PURGE_DELAY_MS`] unless the environment (`MIMALLOC_PURGE_DELAY`)
/// set the option. Call it before any other thread starts.
#[allow(unsafe_code)]
fn keep_freed_memory_longer() {
    // SAFETY: writes one value (a `long`) of mimalloc's option table, which
    // mimalloc reads when it next considers purging; in `main` no other
    // thread runs yet.
    unsafe { libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}

fn main() -> anyhow::Result<ExitCode> {
    keep_freed_memory_longer();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<ExitCode> {
    let Cli { config, command } = Cli::parse();
    telemetry::init(&config.log, config.log_format, std::io::stderr);
    match command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(&config).await?;
            app.run_until(shutdown_signal()).await?;
        }
        Command::Verify => {
            let clean = tokio::task::spawn_blocking(move || {
                tools::verify(&config, &mut std::io::stdout().lock())
            })
            .await??;
            if !clean {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Export { output } => {
            tokio::task::spawn_blocking(move || tools::export(&config, output.as_deref()))
                .await??;
        }
        Command::Client(command) => {
            let mut out = std::io::stdout();
            if !command.run(&mut out).await? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Demo {
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
        Command::Import { input } => {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The option index is mimalloc's purge delay: it holds that option's
    /// documented default (1,000 ms) until it is set, then the new value.
    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_is_set_where_mimalloc_reads_it() {
        let from_environment = ["MIMALLOC_PURGE_DELAY", "MIMALLOC_RESET_DELAY"]
            .iter()
            .any(|name| std::env::var_os(name).is_some());
        if from_environment {
            return;
        }
        // SAFETY: reads one value of mimalloc's option table.
        let get = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(get(), 1_000);
        // Other test threads may allocate meanwhile: they read the option
        // before or after this write of one `long`, either value valid.
        keep_freed_memory_longer();
        assert_eq!(get(), PURGE_DELAY_MS);
    }
}
