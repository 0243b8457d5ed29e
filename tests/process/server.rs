//! The real binary as a child process, and what the tests need to drive it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support_metrics::proto::v1 as pb;
use support_metrics::proto::v1::admin_service_client::AdminServiceClient;
use support_metrics::proto::v1::ingest_service_client::IngestServiceClient;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// How long a server may take to answer its first health check.
const STARTUP: Duration = Duration::from_secs(30);

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// A running `support-metrics` process.
pub struct Server {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

/// Starts the binary on `data_dir` without waiting for it.
pub fn spawn(data_dir: &Path, log: &Path, port: u16, extra: &[&str]) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_support-metrics"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--metrics-listen")
        .arg("127.0.0.1:0")
        .args(extra)
        .env("SUPPORT_METRICS_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("the binary starts")
}

impl Server {
    /// Starts the binary and waits until it answers health checks.
    pub async fn start(data_dir: &Path, extra: &[&str]) -> Server {
        let log = data_dir.with_extension("log");
        for _attempt in 0..5 {
            let port = free_port();
            let mut child = spawn(data_dir, &log, port, extra);
            let deadline = Instant::now() + STARTUP;
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait().expect("child status") {
                    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
                    if log_text.contains("Address already in use") {
                        break; // the port was taken meanwhile: try another
                    }
                    panic!("the server exited with {status} while starting:\n{log_text}");
                }
                if serving(port).await {
                    return Server { child, port, log };
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("the server did not start: {}", self_log(&log));
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub async fn channel(&self) -> Channel {
        connect(self.port).await.expect("connects")
    }

    pub async fn ingest(&self) -> IngestServiceClient<Channel> {
        IngestServiceClient::new(self.channel().await)
    }

    pub async fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel().await)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM; the exit status, or `None` if it took longer than `limit`.
    pub async fn terminate(mut self, limit: Duration) -> Option<ExitStatus> {
        kill(self.pid(), Signal::SIGTERM).expect("SIGTERM");
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("child status") {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// What the process logged.
    pub fn log(&self) -> String {
        self_log(&self.log)
    }
}

fn self_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn connect(port: u16) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("uri")
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
}

async fn serving(port: u16) -> bool {
    let Ok(channel) = connect(port).await else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .is_ok_and(|response| {
            response.into_inner().status
                == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        })
}

pub async fn stats(server: &Server) -> pb::GetStatsResponse {
    server
        .admin()
        .await
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect("stats")
        .into_inner()
}

pub async fn verify(server: &Server) -> pb::VerifyAggregatesResponse {
    server
        .admin()
        .await
        .verify_aggregates(pb::VerifyAggregatesRequest {})
        .await
        .expect("verify")
        .into_inner()
}
