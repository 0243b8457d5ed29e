//! The service under test: the release binary in its own process (pinned to
//! the server core), spoken to over loopback gRPC.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use support_metrics::api::convert;
use support_metrics::domain::records::Record;
use support_metrics::proto::v1 as pb;
use support_metrics::proto::v1::admin_service_client::AdminServiceClient;
use support_metrics::proto::v1::ingest_service_client::IngestServiceClient;
use support_metrics::proto::v1::scorecard_service_client::ScorecardServiceClient;

pub struct Server {
    child: Child,
    pub channel: Channel,
    metrics_port: u16,
    /// From spawn to the health service answering SERVING.
    pub startup: Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("pid", &self.child.id())
            .finish()
    }
}

/// `taskset -c <cpu>` in front of a command, when taskset exists.
pub fn pinned(cpu: Option<usize>, program: &Path) -> Command {
    match cpu {
        Some(cpu) if Path::new("/usr/bin/taskset").exists() => {
            let mut command = Command::new("/usr/bin/taskset");
            command.arg("-c").arg(cpu.to_string()).arg(program);
            command
        }
        _ => Command::new(program),
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Server {
    /// Starts the server on `data_dir` and waits until it serves.
    pub async fn start(
        data_dir: &Path,
        cpu: Option<usize>,
        relaxed: bool,
    ) -> anyhow::Result<Server> {
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_support-metrics"));
        let port = free_port()?;
        let metrics_port = free_port()?;
        let mut command = pinned(cpu, &binary);
        command
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .arg("--insecure")
            .arg("--max-in-flight")
            .arg("4096")
            .env("SUPPORT_METRICS_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if relaxed {
            command.arg("--unsafe-ack-before-durable");
        }
        let began = Instant::now();
        let child = command.spawn().context("starting support-metrics")?;
        let endpoint = format!("http://127.0.0.1:{port}");
        loop {
            if began.elapsed() > Duration::from_secs(300) {
                bail!("the server did not start within 300 s");
            }
            if let Ok(channel) = Channel::from_shared(endpoint.clone())?.connect().await {
                let status = HealthClient::new(channel.clone())
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .map(|r| r.into_inner().status);
                if matches!(status, Ok(s) if s == ServingStatus::Serving as i32) {
                    return Ok(Server {
                        child,
                        channel,
                        metrics_port,
                        startup: began.elapsed(),
                    });
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The sum of every series of the metrics endpoint named `name` (all
    /// label sets), or of the one series `name` when it has no labels.
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        let mut found = None;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let series_name = series.split('{').next().unwrap_or(series);
            if series_name == name {
                *found.get_or_insert(0.0) += value.parse::<f64>()?;
            }
        }
        found.with_context(|| format!("no series {name} on the metrics endpoint"))
    }

    /// CPU time the server process has used so far, in seconds.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        // Behind taskset the pid is the server's own (taskset execs it).
        crate::load::cpu_seconds(Some(self.child.id()))
    }

    /// Resident and peak resident memory of the server process, in bytes.
    pub fn memory(&self) -> anyhow::Result<(u64, u64)> {
        // Behind taskset the pid is the server's own (taskset execs it).
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("{name} missing"))?;
            let kib: u64 = line
                .split_whitespace()
                .nth(1)
                .context("no value")?
                .parse()?;
            Ok(kib * 1024)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// SIGTERM, then waits for a clean exit (the runtime keeps running, so
    /// that this side's connections see the server's GOAWAY and close).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        Command::new("kill").arg("-TERM").arg(&pid).status()?;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("the server exited with {status}");
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one record with its single-record RPC.
pub async fn record_one(
    client: &mut IngestServiceClient<Channel>,
    record: &Record,
) -> anyhow::Result<()> {
    let outcome = match convert::record(record).record {
        Some(pb::record::Record::Interaction(interaction)) => {
            client
                .record_interaction(pb::RecordInteractionRequest {
                    interaction: Some(interaction),
                })
                .await?
                .into_inner()
                .outcome
        }
        Some(pb::record::Record::SurveyResponse(survey_response)) => {
            client
                .record_survey_response(pb::RecordSurveyResponseRequest {
                    survey_response: Some(survey_response),
                })
                .await?
                .into_inner()
                .outcome
        }
        Some(pb::record::Record::QualityReview(quality_review)) => {
            client
                .record_quality_review(pb::RecordQualityReviewRequest {
                    quality_review: Some(quality_review),
                })
                .await?
                .into_inner()
                .outcome
        }
        Some(pb::record::Record::CustomerEvent(customer_event)) => {
            client
                .record_customer_event(pb::RecordCustomerEventRequest {
                    customer_event: Some(customer_event),
                })
                .await?
                .into_inner()
                .outcome
        }
        None => bail!("empty record"),
    };
    if outcome == pb::Outcome::Unspecified as i32 {
        bail!("no outcome");
    }
    Ok(())
}

pub async fn echo(
    client: &mut AdminServiceClient<Channel>,
    payload: Vec<u8>,
) -> anyhow::Result<()> {
    let reply = client.echo(pb::EchoRequest { payload }).await?.into_inner();
    if reply.payload.is_empty() {
        bail!("empty echo");
    }
    Ok(())
}

pub async fn scorecard(
    client: &mut ScorecardServiceClient<Channel>,
    team: &str,
    window: pb::Window,
) -> anyhow::Result<pb::ScorecardMetrics> {
    client
        .get_scorecard(pb::GetScorecardRequest {
            scope: Some(pb::Scope {
                kind: pb::ScopeKind::Team as i32,
                team_id: team.into(),
                ..Default::default()
            }),
            window: Some(window),
            ..Default::default()
        })
        .await?
        .into_inner()
        .scorecard
        .and_then(|card| card.metrics)
        .context("no metrics")
}

/// Bytes the files under `dir` occupy on disk.
pub fn disk_bytes(dir: &Path) -> anyhow::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        total += if metadata.is_dir() {
            disk_bytes(&entry.path())?
        } else {
            metadata.blocks() * 512
        };
    }
    Ok(total)
}
