//! Settings from flags and `SUPPORT_METRICS_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// support-metrics: records customer-support interactions and serves per-team
/// quality scorecards over gRPC.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// Address the gRPC server listens on.
    #[arg(
        long,
        env = "SUPPORT_METRICS_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: SocketAddr,

    /// Directory of the embedded sled store (created if missing).
    #[arg(long, env = "SUPPORT_METRICS_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// sled's page cache in MiB.
    #[arg(long, env = "SUPPORT_METRICS_CACHE_MB", default_value_t = 128)]
    pub cache_mb: u64,

    /// Log format.
    #[arg(long, env = "SUPPORT_METRICS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, in tracing's EnvFilter syntax.
    #[arg(
        long,
        env = "SUPPORT_METRICS_LOG",
        default_value = "info,h2=warn,tower=warn,sled=warn"
    )]
    pub log: String,

    /// Largest request message accepted, in MiB.
    #[arg(long, env = "SUPPORT_METRICS_MAX_MESSAGE_MB", default_value_t = 16)]
    pub max_message_mb: usize,
}
