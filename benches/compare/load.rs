//! A bounded, concurrent load loop and the latency figures it reports.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Throughput and latency of one measured run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measured {
    pub operations: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Measured {
    pub fn from_latencies(mut latencies_ms: Vec<f64>, elapsed: Duration) -> Measured {
        latencies_ms.sort_by(f64::total_cmp);
        let seconds = elapsed.as_secs_f64();
        Measured {
            operations: latencies_ms.len(),
            seconds,
            per_second: latencies_ms.len() as f64 / seconds,
            p50_ms: percentile(&latencies_ms, 0.5),
            p99_ms: percentile(&latencies_ms, 0.99),
        }
    }
}

/// Runs `operation(worker, index)` for every index in `0..total` with
/// `concurrency` workers until all are done or `limit` has passed (operations
/// already started finish). Fails on the first failed operation.
pub async fn drive<F, Fut>(
    concurrency: usize,
    total: usize,
    limit: Duration,
    operation: F,
) -> anyhow::Result<Measured>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let next = next.clone();
        let operation = operation.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total || started.elapsed() > limit {
                    return anyhow::Ok(latencies);
                }
                let began = Instant::now();
                operation(worker, index).await?;
                latencies.push(began.elapsed().as_secs_f64() * 1e3);
            }
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    Ok(Measured::from_latencies(latencies, started.elapsed()))
}

/// CPU time (user + system, all threads) a process has used so far, in
/// seconds, to the nanosecond: `pid`'s, or this process's when `None`.
pub fn cpu_seconds(pid: Option<u32>) -> anyhow::Result<f64> {
    use nix::time::{clock_getcpuclockid, clock_gettime, ClockId};
    let clock = match pid {
        Some(pid) => clock_getcpuclockid(nix::unistd::Pid::from_raw(i32::try_from(pid)?))?,
        None => ClockId::CLOCK_PROCESS_CPUTIME_ID,
    };
    let time = clock_gettime(clock)?;
    Ok(time.tv_sec() as f64 + time.tv_nsec() as f64 / 1e9)
}
