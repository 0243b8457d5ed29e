//! Settings from flags and `SUPPORT_METRICS_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::client::ClientCommand;
use crate::store::{SledOptions, SnapshotPolicy};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// support-metrics: records customer-support interactions and serves per-team
/// quality scorecards over gRPC. Without a command it serves, with the flags
/// `serve` takes; a command's own flags go after its name.
#[derive(Debug, Clone, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(flatten)]
    pub logging: LogArgs,

    /// The server's settings when no command is given.
    #[command(flatten)]
    pub config: Config,

    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The command to run: `serve` with the top-level settings when none is given.
    pub fn into_parts(self) -> (LogArgs, Command) {
        let command = self
            .command
            .unwrap_or_else(|| Command::Serve(Box::new(self.config)));
        (self.logging, command)
    }
}

/// What to do; the tools other than `serve` need the data directory to
/// themselves (the server stopped).
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve gRPC (the default when no command is given).
    Serve(Box<Config>),
    /// Check every stored value against its checksum and every aggregate and
    /// index against a recomputation from the raw records. Exits 1 on any
    /// problem, naming the keys.
    Verify {
        #[command(flatten)]
        store: StoreConfig,
    },
    /// Write every raw record and every team's targets as NDJSON (the backup
    /// format of docs/operations.md). The only way to make a backup: the JSON
    /// grpcurl prints for AdminService/Export is not in this format.
    Export {
        #[command(flatten)]
        store: StoreConfig,
        /// File to write (created or truncated, then fsynced); standard output if absent.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Salvage: leave damaged values out instead of failing, list each on
        /// standard error, and exit 2 if any was left out.
        #[arg(long)]
        skip_damaged: bool,
    },
    /// Copy the store, key for key, into a new directory, leaving behind the
    /// space sled's log has not reclaimed; the copy is reopened and compared
    /// with the store before this succeeds. Then swap the directories
    /// (docs/operations.md, "Compaction").
    Compact {
        #[command(flatten)]
        store: StoreConfig,
        /// Directory to copy into: absent or empty.
        #[arg(long)]
        into: PathBuf,
    },
    /// Record NDJSON items (as `export` writes them) into the store with the
    /// ingest API's validation and idempotency. Into a store without records
    /// the records are loaded in bulk and the aggregates computed once at the
    /// end; else aggregates follow as records land. Stops at the first bad
    /// line, naming it: the lines before it are imported, and importing the
    /// same file again changes nothing.
    Import {
        #[command(flatten)]
        store: StoreConfig,
        /// File to read; standard input if absent.
        #[arg(long)]
        input: Option<PathBuf>,
    },
    /// Fill the store with a generated organisation (8 teams, a few months of
    /// tickets, surveys, reviews and churn, ending now) and organisation-wide
    /// targets, so that scorecards show real numbers at once. Deterministic
    /// from the seed; its ids start with `demo-`.
    Demo {
        #[command(flatten)]
        store: StoreConfig,
        /// Interactions to generate.
        #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..=20_000_000))]
        interactions: u64,
        /// Days of history, ending now.
        #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    #[command(flatten)]
    Client(Box<ClientCommand>),
}

/// How every command logs (to standard error).
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format; text has colours only when standard error is a terminal.
    #[arg(long, env = "SUPPORT_METRICS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Log filter, in tracing's EnvFilter syntax.
    #[arg(
        long,
        env = "SUPPORT_METRICS_LOG",
        default_value = "info,h2=warn,tower=warn,sled=warn",
        global = true
    )]
    pub log: String,
}

/// The store's settings, shared by the server and the offline tools.
#[derive(Debug, Clone, Args)]
pub struct StoreConfig {
    /// Directory of the embedded sled store (created if missing).
    #[arg(long, env = "SUPPORT_METRICS_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// sled's page cache in MiB.
    #[arg(long, env = "SUPPORT_METRICS_CACHE_MB", default_value_t = 64)]
    pub cache_mb: u64,

    /// Save the derived state (aggregates, indexes) as a snapshot once this
    /// many tickets and customers have changed since the last one: after a
    /// crash, start-up recomputes at most about this many from the raw records.
    #[arg(
        long,
        env = "SUPPORT_METRICS_SNAPSHOT_AFTER_GROUPS",
        default_value_t = 100_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub snapshot_after_groups: u64,

    /// ...or once the last snapshot is this many seconds old and anything
    /// has changed. A clean shutdown always saves one.
    #[arg(
        long,
        env = "SUPPORT_METRICS_SNAPSHOT_INTERVAL_SECS",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub snapshot_interval_secs: u64,
}

impl StoreConfig {
    /// The store's settings; `durable_acks` as the caller needs (the server
    /// follows `--unsafe-ack-before-durable`).
    pub fn sled_options(&self, durable_acks: bool) -> SledOptions {
        SledOptions {
            path: self.data_dir.clone(),
            cache_capacity_bytes: self.cache_mb * 1024 * 1024,
            durable_acks,
            snapshots: SnapshotPolicy {
                after_groups: self.snapshot_after_groups,
                interval: std::time::Duration::from_secs(self.snapshot_interval_secs),
            },
        }
    }
}

/// Settings of the server: its own and its store's.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address the gRPC server listens on.
    #[arg(
        long,
        env = "SUPPORT_METRICS_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: SocketAddr,

    /// Address of the Prometheus metrics endpoint (`GET /metrics`).
    #[arg(
        long,
        env = "SUPPORT_METRICS_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_listen: SocketAddr,

    /// File of bearer tokens: `<role> <token>` or `<role> sha256:<hex>` per
    /// line, roles `writer`, `reader`, `admin`.
    #[arg(long, env = "SUPPORT_METRICS_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Bearer tokens inline, in the tokens file's format (`;` separates
    /// entries); added to the file's.
    #[arg(long, env = "SUPPORT_METRICS_TOKENS", hide_env_values = true)]
    pub tokens: Option<String>,

    /// TLS: the server's certificate chain (PEM). With `--tls-key`, gRPC is
    /// served over TLS only.
    #[arg(long, env = "SUPPORT_METRICS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS: the server's private key (PEM).
    #[arg(long, env = "SUPPORT_METRICS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Mutual TLS: CA certificates (PEM) that client certificates must chain
    /// to; clients without such a certificate are refused.
    #[arg(long, env = "SUPPORT_METRICS_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Serve on a non-loopback address without any token (authentication off).
    #[arg(long, env = "SUPPORT_METRICS_INSECURE")]
    pub insecure: bool,

    /// Do not offer gRPC server reflection.
    #[arg(long, env = "SUPPORT_METRICS_DISABLE_REFLECTION")]
    pub disable_reflection: bool,

    /// UNSAFE, for bulk backfills only: acknowledge writes before they are on
    /// disk. A crash (kill -9, power cut) loses writes acknowledged in roughly
    /// the last half second. A clean shutdown still flushes everything.
    #[arg(long, env = "SUPPORT_METRICS_UNSAFE_ACK_BEFORE_DURABLE")]
    pub unsafe_ack_before_durable: bool,

    /// Requests handled at once across all connections; beyond it requests are
    /// refused with RESOURCE_EXHAUSTED (health checks are exempt).
    #[arg(long, env = "SUPPORT_METRICS_MAX_IN_FLIGHT", default_value_t = 512)]
    pub max_in_flight: usize,

    /// Largest request message accepted, in MiB.
    #[arg(long, env = "SUPPORT_METRICS_MAX_MESSAGE_MB", default_value_t = 16)]
    pub max_message_mb: usize,

    #[command(flatten)]
    pub store: StoreConfig,
}

impl Config {
    /// The store's settings for this configuration.
    pub fn sled_options(&self, durable_acks: bool) -> SledOptions {
        self.store.sled_options(durable_acks)
    }
}
