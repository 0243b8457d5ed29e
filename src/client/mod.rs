//! The operator's command-line client: talks to a running server (address,
//! token and TLS from flags or `SUPPORT_METRICS_*`), prints a readable table or
//! the proto3 JSON of the answer exactly as `grpcurl -emit-defaults` prints it.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::Value;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Request;

use crate::ndjson;
use crate::proto::v1 as pb;
use crate::proto::FILE_DESCRIPTOR_SET;

pub mod json;
mod table;

pub use table::table;

/// The commands that talk to a running server.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClientCommand {
    /// Show the scorecard of a scope for a window, from a running server.
    Scorecard {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        scope: ScopeArgs,
        /// Window start, RFC 3339, on a 15-minute boundary.
        #[arg(long)]
        from: String,
        /// Window end (exclusive), RFC 3339, on a 15-minute boundary.
        #[arg(long)]
        to: String,
        /// Backlog as of this time (RFC 3339); now if absent.
        #[arg(long)]
        as_of: Option<String>,
        /// Add the window of equal length just before.
        #[arg(long)]
        compare_previous: bool,
        /// Targets of metrics computed from fewer items read INSUFFICIENT_DATA.
        #[arg(long, default_value_t = 0)]
        min_sample: u64,
        /// Print the proto3 JSON `grpcurl -emit-defaults` prints instead of a table.
        /// Print the proto3 JSON `grpcurl -emit-defaults` prints instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send NDJSON records (the backup format) to a running server in batches,
    /// with a progress bar and a summary; exits 1 if any line was refused.
    Record {
        #[command(flatten)]
        connection: Connection,
        /// File to read; standard input if absent.
        #[arg(long)]
        input: Option<PathBuf>,
    },
    /// Record counts, pending records and store size of a running server.
    Stats {
        #[command(flatten)]
        connection: Connection,
        /// Print the proto3 JSON `grpcurl -emit-defaults` prints instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Open tickets now (or as of a time) by priority and age.
    Backlog {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        scope: ScopeArgs,
        /// RFC 3339; now if absent.
        #[arg(long)]
        as_of: Option<String>,
        /// Print the proto3 JSON `grpcurl -emit-defaults` prints instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The targets of a team (and the organisation default).
    Targets {
        #[command(flatten)]
        connection: Connection,
        /// The team; the organisation default if absent.
        #[arg(long)]
        team: Option<String>,
        /// Print the proto3 JSON `grpcurl -emit-defaults` prints instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn timestamp(flag: &str, text: &str) -> anyhow::Result<prost_types::Timestamp> {
    let time = chrono::DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("--{flag} {text}: not an RFC 3339 time"))?;
    Ok(prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    })
}

fn optional_timestamp(
    flag: &str,
    text: Option<&str>,
) -> anyhow::Result<Option<prost_types::Timestamp>> {
    text.map(|text| timestamp(flag, text)).transpose()
}

impl ClientCommand {
    /// How the command reaches the server (to point it elsewhere).
    pub fn connection_mut(&mut self) -> &mut Connection {
        match self {
            ClientCommand::Scorecard { connection, .. }
            | ClientCommand::Record { connection, .. }
            | ClientCommand::Stats { connection, .. }
            | ClientCommand::Backlog { connection, .. }
            | ClientCommand::Targets { connection, .. } => connection,
        }
    }

    /// Runs the command, printing to `out`; `Ok(false)` when the server refused
    /// some of what it was sent.
    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<bool> {
        match self {
            ClientCommand::Scorecard {
                connection,
                scope,
                from,
                to,
                as_of,
                compare_previous,
                min_sample,
                json,
            } => {
                let request = pb::GetScorecardRequest {
                    scope: Some(scope.to_proto()?),
                    window: Some(pb::Window {
                        from: Some(timestamp("from", &from)?),
                        to: Some(timestamp("to", &to)?),
                    }),
                    compare_previous,
                    include_organization: false,
                    backlog_as_of: optional_timestamp("as-of", as_of.as_deref())?,
                    min_sample,
                };
                let answer = Client::connect(&connection)
                    .await?
                    .scorecard(request)
                    .await?;
                print(&answer, json, out)?;
            }
            ClientCommand::Record { connection, input } => {
                let client = Client::connect(&connection).await?;
                let (reader, size): (Box<dyn BufRead>, Option<u64>) = match &input {
                    Some(path) => {
                        let file = std::fs::File::open(path)
                            .with_context(|| format!("opening {}", path.display()))?;
                        let size = file.metadata().ok().map(|m| m.len());
                        (Box::new(std::io::BufReader::new(file)), size)
                    }
                    None => (Box::new(std::io::stdin().lock()), None),
                };
                let bar = match size {
                    Some(size) => indicatif::ProgressBar::new(size).with_style(
                        indicatif::ProgressStyle::with_template(
                            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    ),
                    None => indicatif::ProgressBar::new_spinner(),
                };
                let summary = client.record(reader, |bytes| bar.set_position(bytes)).await;
                bar.finish_and_clear();
                let summary = summary?;
                writeln!(out, "{summary}")?;
                for error in summary.errors.iter().take(50) {
                    writeln!(out, "  {error}")?;
                }
                if summary.errors.len() > 50 {
                    writeln!(out, "  … and {} more", summary.errors.len() - 50)?;
                }
                return Ok(summary.errors.is_empty());
            }
            ClientCommand::Stats { connection, json } => {
                let answer = Client::connect(&connection).await?.stats().await?;
                print(&answer, json, out)?;
            }
            ClientCommand::Backlog {
                connection,
                scope,
                as_of,
                json,
            } => {
                let request = pb::GetBacklogRequest {
                    scope: Some(scope.to_proto()?),
                    as_of: optional_timestamp("as-of", as_of.as_deref())?,
                };
                let answer = Client::connect(&connection).await?.backlog(request).await?;
                print(&answer, json, out)?;
            }
            ClientCommand::Targets {
                connection,
                team,
                json,
            } => {
                let answer = Client::connect(&connection).await?.targets(team).await?;
                print(&answer, json, out)?;
            }
        }
        Ok(true)
    }
}

/// Records per `RecordBatch` sent by `record`.
const RECORD_BATCH: usize = 1000;

/// How to reach the server.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// The server, `http://host:port` or `https://host:port`.
    #[arg(
        long,
        env = "SUPPORT_METRICS_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,

    /// Bearer token sent with every call.
    #[arg(long, env = "SUPPORT_METRICS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// CA certificate (PEM) that the server's certificate must chain to.
    #[arg(long, env = "SUPPORT_METRICS_CA_CERT")]
    pub ca_cert: Option<PathBuf>,

    /// Client certificate (PEM), for mutual TLS.
    #[arg(long, env = "SUPPORT_METRICS_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,

    /// Client key (PEM), for mutual TLS.
    #[arg(long, env = "SUPPORT_METRICS_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

/// Which scope a command is about: the organisation unless narrowed.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ScopeArgs {
    /// A team (with --channel: the team × channel scope); several teams separated
    /// by commas read as their union.
    #[arg(long)]
    pub team: Option<String>,
    /// An agent.
    #[arg(long, conflicts_with_all = ["team", "channel"])]
    pub agent: Option<String>,
    /// A channel (with --team: the team × channel scope).
    #[arg(long, value_parser = channel_value(), ignore_case = true)]
    pub channel: Option<pb::Channel>,
    /// A tag (with --team: the team × tag scope).
    #[arg(long, conflicts_with_all = ["agent", "channel"])]
    pub tag: Option<String>,
}

/// The values `--channel` takes: every channel's proto name in lower case
/// (`email`, `chat`, …), each read as that channel.
fn channel_value() -> impl clap::builder::TypedValueParser<Value = pb::Channel> {
    use clap::builder::TypedValueParser;
    let names = crate::domain::records::Channel::ALL.map(|channel| {
        crate::api::convert::channel(channel)
            .as_str_name()
            .to_ascii_lowercase()
    });
    clap::builder::PossibleValuesParser::new(names).map(|name| {
        pb::Channel::from_str_name(&name.to_ascii_uppercase()).unwrap_or(pb::Channel::Unspecified)
    })
}

impl ScopeArgs {
    pub fn to_proto(&self) -> anyhow::Result<pb::Scope> {
        let channel = self.channel.map_or(0, |channel| channel as i32);
        let kind = match (&self.team, &self.agent, channel != 0, &self.tag) {
            (Some(_), _, _, Some(_)) => pb::ScopeKind::TeamTag,
            (None, _, _, Some(_)) => pb::ScopeKind::Tag,
            (Some(_), _, true, None) => pb::ScopeKind::TeamChannel,
            (Some(_), _, false, None) => pb::ScopeKind::Team,
            (None, Some(_), _, None) => pb::ScopeKind::Agent,
            (None, None, true, None) => pb::ScopeKind::Channel,
            (None, None, false, None) => pb::ScopeKind::Organization,
        };
        let teams: Vec<String> = self
            .team
            .iter()
            .flat_map(|list| list.split(','))
            .map(|team| team.trim().to_owned())
            .collect();
        let (team_id, team_ids) = match teams.as_slice() {
            [] => (String::new(), Vec::new()),
            [one] => (one.clone(), Vec::new()),
            _ => (String::new(), teams),
        };
        Ok(pb::Scope {
            kind: kind as i32,
            team_id,
            agent_id: self.agent.clone().unwrap_or_default(),
            channel,
            team_ids,
            tag: self.tag.clone().unwrap_or_default(),
        })
    }
}

/// A connected client with its token.
#[derive(Debug, Clone)]
pub struct Client {
    channel: Channel,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

impl Client {
    pub async fn connect(connection: &Connection) -> anyhow::Result<Client> {
        let mut endpoint = Channel::from_shared(connection.server.clone())
            .with_context(|| format!("--server {}: not a URL", connection.server))?;
        if connection.server.starts_with("https://") || connection.ca_cert.is_some() {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &connection.ca_cert {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca, "CA certificate")?));
            }
            if let (Some(cert), Some(key)) = (&connection.client_cert, &connection.client_key) {
                tls = tls.identity(Identity::from_pem(
                    read(cert, "client certificate")?,
                    read(key, "client key")?,
                ));
            }
            endpoint = endpoint.tls_config(tls)?;
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("connecting to {}", connection.server))?;
        let token = connection
            .token
            .as_ref()
            .map(|token| format!("Bearer {token}").parse())
            .transpose()
            .context("the token must be printable ASCII")?;
        Ok(Client { channel, token })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        request
    }

    fn ingest(&self) -> pb::ingest_service_client::IngestServiceClient<Channel> {
        pb::ingest_service_client::IngestServiceClient::new(self.channel.clone())
    }

    fn scorecards(&self) -> pb::scorecard_service_client::ScorecardServiceClient<Channel> {
        pb::scorecard_service_client::ScorecardServiceClient::new(self.channel.clone())
    }

    fn admin(&self) -> pb::admin_service_client::AdminServiceClient<Channel> {
        pb::admin_service_client::AdminServiceClient::new(self.channel.clone())
    }

    pub async fn scorecard(&self, request: pb::GetScorecardRequest) -> anyhow::Result<Value> {
        let response = self
            .scorecards()
            .get_scorecard(self.request(request))
            .await
            .map_err(explain)?;
        to_json(response.get_ref(), "supportmetrics.v1.GetScorecardResponse")
    }

    pub async fn backlog(&self, request: pb::GetBacklogRequest) -> anyhow::Result<Value> {
        let response = self
            .scorecards()
            .get_backlog(self.request(request))
            .await
            .map_err(explain)?;
        to_json(response.get_ref(), "supportmetrics.v1.GetBacklogResponse")
    }

    pub async fn targets(&self, team: Option<String>) -> anyhow::Result<Value> {
        let request = pb::GetTargetsRequest {
            team_id: team.unwrap_or_default(),
        };
        let response = self
            .scorecards()
            .get_targets(self.request(request))
            .await
            .map_err(explain)?;
        to_json(response.get_ref(), "supportmetrics.v1.GetTargetsResponse")
    }

    pub async fn stats(&self) -> anyhow::Result<Value> {
        let response = self
            .admin()
            .get_stats(self.request(pb::GetStatsRequest {}))
            .await
            .map_err(explain)?;
        to_json(response.get_ref(), "supportmetrics.v1.GetStatsResponse")
    }

    /// Sends NDJSON items (records and targets) in batches; `progress` is
    /// called with the bytes read so far.
    pub async fn record(
        &self,
        input: impl BufRead,
        mut progress: impl FnMut(u64),
    ) -> anyhow::Result<RecordSummary> {
        let mut summary = RecordSummary::default();
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        let mut lines = Vec::with_capacity(RECORD_BATCH);
        let mut bytes = 0u64;
        for (index, line) in input.lines().enumerate() {
            let number = index as u64 + 1;
            let line = line.with_context(|| format!("reading line {number}"))?;
            bytes += line.len() as u64 + 1;
            if line.trim().is_empty() {
                continue;
            }
            match ndjson::from_line(&line) {
                Ok(pb::ExportItem {
                    item: Some(pb::export_item::Item::Record(record)),
                }) => {
                    batch.push(record);
                    lines.push(number);
                }
                Ok(pb::ExportItem {
                    item: Some(pb::export_item::Item::Targets(targets)),
                }) => {
                    self.send(&mut batch, &mut lines, &mut summary).await?;
                    match self.scorecards().set_targets(self.request(targets)).await {
                        Ok(_) => summary.targets += 1,
                        Err(status) => summary.errors.push(format!(
                            "line {number}: {:?} {}",
                            status.code(),
                            status.message()
                        )),
                    }
                }
                Ok(pb::ExportItem {
                    item: Some(pb::export_item::Item::Calendar(_)),
                }) => summary.errors.push(format!(
                    "line {number}: a version of a team's calendar and SLA policy is restored \
                     with the offline `support-metrics import` (set them on a live server \
                     with SetCalendar and SetSlaPolicy)"
                )),
                Ok(pb::ExportItem { item: None }) => {
                    summary.errors.push(format!("line {number}: holds no item"))
                }
                Err(error) => summary.errors.push(format!("line {number}: {error}")),
            }
            if batch.len() == RECORD_BATCH {
                self.send(&mut batch, &mut lines, &mut summary).await?;
                progress(bytes);
            }
        }
        self.send(&mut batch, &mut lines, &mut summary).await?;
        progress(bytes);
        Ok(summary)
    }

    async fn send(
        &self,
        batch: &mut Vec<pb::Record>,
        lines: &mut Vec<u64>,
        summary: &mut RecordSummary,
    ) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let request = pb::RecordBatchRequest {
            records: std::mem::take(batch),
        };
        let results = self
            .ingest()
            .record_batch(self.request(request))
            .await
            .map_err(explain)?
            .into_inner()
            .results;
        for (result, line) in results.into_iter().zip(lines.drain(..)) {
            match result.result {
                Some(pb::item_result::Result::Outcome(outcome)) => {
                    match pb::Outcome::try_from(outcome) {
                        Ok(pb::Outcome::Created) => summary.created += 1,
                        Ok(pb::Outcome::Updated) => summary.updated += 1,
                        Ok(pb::Outcome::Duplicate) => summary.duplicate += 1,
                        Ok(pb::Outcome::Stale) => summary.stale += 1,
                        _ => summary.errors.push(format!("line {line}: unknown outcome")),
                    }
                }
                Some(pb::item_result::Result::Error(error)) => {
                    let fields: Vec<String> = error
                        .field_violations
                        .iter()
                        .map(|v| format!("{}: {}", v.field, v.description))
                        .collect();
                    summary.errors.push(format!(
                        "line {line}: {} {}{}",
                        error.code,
                        error.message,
                        if fields.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", fields.join("; "))
                        }
                    ));
                }
                None => summary.errors.push(format!("line {line}: no result")),
            }
        }
        Ok(())
    }
}

/// What `record` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordSummary {
    pub created: u64,
    pub updated: u64,
    pub duplicate: u64,
    pub stale: u64,
    pub targets: u64,
    /// Each refused line, with why.
    pub errors: Vec<String>,
}

impl std::fmt::Display for RecordSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} created, {} updated, {} duplicate, {} stale, {} targets set, {} refused",
            self.created,
            self.updated,
            self.duplicate,
            self.stale,
            self.targets,
            self.errors.len()
        )
    }
}

/// The proto3 JSON of a message, as `grpcurl -emit-defaults` prints it.
fn to_json(message: &impl Message, name: &str) -> anyhow::Result<Value> {
    let pool = DescriptorPool::decode(FILE_DESCRIPTOR_SET).context("the embedded descriptors")?;
    let descriptor = pool
        .get_message_by_name(name)
        .with_context(|| format!("no descriptor for {name}"))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())?;
    Ok(json::message(&dynamic))
}

/// Prints a JSON answer as a table, or as JSON indented like grpcurl's.
pub fn print(value: &Value, json: bool, out: &mut impl Write) -> std::io::Result<()> {
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        )
    } else {
        write!(out, "{}", table(value))
    }
}

/// A refusal from the server, worded for the person at the keyboard: what
/// was wrong with which field, and which flag fixes a missing token.
fn explain(status: tonic::Status) -> anyhow::Error {
    use tonic_types::StatusExt;
    let mut text = format!(
        "the server answered {:?}: {}",
        status.code(),
        status.message()
    );
    if let Some(bad) = status.get_details_bad_request() {
        for violation in bad.field_violations {
            text.push_str(&format!(
                "\n  {}: {}",
                violation.field, violation.description
            ));
        }
    }
    match status.code() {
        tonic::Code::Unauthenticated => text.push_str(
            "\nuse `--token <token>` (or SUPPORT_METRICS_TOKEN) with a token from the \
             server's tokens file",
        ),
        tonic::Code::PermissionDenied => text.push_str(
            "\nthe token's role may not call this: use `--token` with a token of the \
             role named above",
        ),
        _ => {}
    }
    anyhow::anyhow!(text)
}
