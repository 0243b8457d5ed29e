//! The service side by side with PostgreSQL and DuckDB on the same generated
//! records, on the same machine, in the same run. Started by `bench/run`, which
//! installs and starts PostgreSQL and DuckDB and pins the load generator to its
//! own core; see docs/benchmarks.md.
//!
//! Measures: the transport ceiling (Echo), the storage ceiling (sled alone,
//! `storage.rs`), ingest (records/s, p50/p99, server CPU and sled keys per
//! record) at concurrency 1, 16 and 64 with durable and with relaxed
//! acknowledgement, team scorecard reads over 1, 30 and 365 days, and
//! footprint. Checks that every system gives the same counts and that the
//! service's percentiles are within 1% of the exact ones; exits 1 (after
//! printing) if not.

mod duckdb;
mod load;
mod postgres;
mod service;
mod sql;
mod storage;

use std::path::PathBuf;
use std::time::{Duration, Instant as Clock};

use anyhow::Context;
use clap::Parser;
use serde_json::json;

use support_metrics::api::convert;
use support_metrics::config::Cli;
use support_metrics::domain::records::Record;
use support_metrics::domain::time::{Instant, NANOS_PER_SECOND};
use support_metrics::proto::v1 as pb;
use support_metrics::proto::v1::admin_service_client::AdminServiceClient;
use support_metrics::proto::v1::ingest_service_client::IngestServiceClient;
use support_metrics::proto::v1::scorecard_service_client::ScorecardServiceClient;
use support_metrics::tools;
use support_metrics::workload::{self, WorkloadConfig};

use load::{drive, percentile, Measured};
use service::Server;

/// The bench loads the service's store in process (`tools::load`); with the
/// allocator the server binary uses, set up the same way (`main`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    /// Interactions in the read benchmark's store.
    #[arg(long, default_value_t = 1_000_000)]
    interactions: usize,
    /// 10M interactions instead (hours, and tens of GB of disk).
    #[arg(long)]
    large: bool,
    /// A quick run with tiny counts that checks the harness works.
    #[arg(long)]
    smoke: bool,
    /// PostgreSQL's Unix socket directory (bench/run starts the server).
    #[arg(long)]
    pg_socket: PathBuf,
    /// A Python with the duckdb package.
    #[arg(long)]
    python: PathBuf,
    /// CPU for the server processes (the service, PostgreSQL, DuckDB); the
    /// harness itself should run on another one.
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// Where data directories and CSV files go.
    #[arg(long, default_value = "target/bench/work")]
    work_dir: PathBuf,
    /// The JSON results.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Only the ingest part (transport ceiling and writes).
    #[arg(long, conflicts_with = "only_reads")]
    only_ingest: bool,
    /// Only the read part (scorecards and footprint).
    #[arg(long)]
    only_reads: bool,
    // cargo bench passes --bench.
    #[arg(long, hide = true)]
    bench: bool,
}

/// How much each part does.
#[derive(Debug, Clone, Copy)]
struct Plan {
    interactions: usize,
    /// Records per ingest run, per concurrency 1, 16, 64.
    ingest: [usize; 3],
    ingest_limit: Duration,
    service_reads: usize,
    sql_reads: usize,
    read_limit: Duration,
}

const CONCURRENCY: [usize; 3] = [1, 16, 64];
/// 2026-01-01T00:00:00Z: the generated data ends here.
const END_SECONDS: i64 = 1_767_225_600;
const DAY: i64 = 86_400 * NANOS_PER_SECOND;
/// The largest team of the generated organisation.
const TEAM: &str = "billing";

impl Plan {
    fn of(args: &Args) -> Plan {
        if args.smoke {
            return Plan {
                interactions: 3_000,
                ingest: [50, 200, 400],
                ingest_limit: Duration::from_secs(20),
                service_reads: 20,
                sql_reads: 2,
                read_limit: Duration::from_secs(10),
            };
        }
        Plan {
            interactions: if args.large {
                10_000_000
            } else {
                args.interactions
            },
            ingest: [1_500, 10_000, 30_000],
            ingest_limit: Duration::from_secs(30),
            service_reads: 2_000,
            sql_reads: 10,
            read_limit: Duration::from_secs(60),
        }
    }
}

fn main() -> anyhow::Result<()> {
    support_metrics::allocator::keep_freed_memory_longer();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv
        .get(1)
        .is_some_and(|first| first == storage::CHILD_FLAG)
    {
        return storage::child(&argv[2..]);
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(harness())
}

/// The ingest part's records: a workload of its own, so that every write is new.
fn ingest_workload(seed: u64, total: usize) -> Vec<Record> {
    let config = WorkloadConfig::new(seed, total, 30, Instant::from_seconds(END_SECONDS));
    workload::generate(&config)
        .into_iter()
        .take(total)
        .collect()
}

async fn harness() -> anyhow::Result<()> {
    let args = Args::parse();
    let plan = Plan::of(&args);
    std::fs::create_dir_all(&args.work_dir)?;
    let cpu = Some(args.server_cpu);
    let mut failures = Vec::new();

    let ingest = if args.only_reads {
        serde_json::Value::Null
    } else {
        println!("== ingest: records/s and latency, one record per request / per transaction ==");
        ingest(&args, plan, cpu).await?
    };
    let reads = if args.only_ingest {
        serde_json::Value::Null
    } else {
        println!(
            "\n== team scorecard reads at {} interactions ==",
            plan.interactions
        );
        reads(&args, plan, cpu, &mut failures).await?
    };

    let results = json!({
        "machine": machine(),
        "plan": {
            "interactions": plan.interactions,
            "ingest_records": plan.ingest,
            "concurrency": CONCURRENCY,
        },
        "ingest": ingest,
        "reads": reads,
        "failures": failures,
    });
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&results)?)?;
    println!("\nresults written to {}", args.out.display());
    if !failures.is_empty() {
        eprintln!("\nTHE SYSTEMS DISAGREE:");
        for failure in &failures {
            eprintln!("  {failure}");
        }
        std::process::exit(1);
    }
    Ok(())
}

/// The machine, read from /proc (the harness itself is pinned to one CPU).
fn machine() -> serde_json::Value {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let cores = info.lines().filter(|l| l.starts_with("processor")).count();
    json!({ "cpu": cpu, "cores": cores })
}

fn fresh_dir(args: &Args, name: &str) -> anyhow::Result<PathBuf> {
    let dir = args.work_dir.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn print_row(system: &str, concurrency: usize, m: &Measured) {
    println!(
        "{system:<36} {concurrency:>4} {:>11.0} {:>9.3} {:>9.3}",
        m.per_second, m.p50_ms, m.p99_ms
    );
}

/// The transport ceiling, then the service and PostgreSQL in both durability
/// classes, each on a fresh store, at each concurrency.
async fn ingest(args: &Args, plan: Plan, cpu: Option<usize>) -> anyhow::Result<serde_json::Value> {
    let total: usize = plan.ingest.iter().sum();
    let records = ingest_workload(args.seed + 1, total);
    let slices: Vec<&[Record]> = {
        let mut start = 0;
        plan.ingest
            .iter()
            .map(|&n| {
                let slice = &records[start..start + n];
                start += n;
                slice
            })
            .collect()
    };
    println!(
        "{:<36} {:>4} {:>11} {:>9} {:>9}",
        "system", "conc", "per second", "p50 ms", "p99 ms"
    );
    let mut rows = Vec::new();

    // Echo carries a typical record's bytes.
    let payload = prost::Message::encode_to_vec(&convert::record(&records[0]));
    let dir = fresh_dir(args, "echo")?;
    let server = Server::start(&dir, cpu, false).await?;
    for (level, &concurrency) in CONCURRENCY.iter().enumerate() {
        let cpu_before = server.cpu_seconds()?;
        let client = AdminServiceClient::new(server.channel.clone());
        let payload = payload.clone();
        let measured = drive(
            concurrency,
            plan.ingest[level] * 2,
            plan.ingest_limit,
            move |_, _| {
                let mut client = client.clone();
                let payload = payload.clone();
                async move { service::echo(&mut client, payload).await }
            },
        )
        .await?;
        print_row("echo (transport ceiling)", concurrency, &measured);
        let cpu_us = (server.cpu_seconds()? - cpu_before) * 1e6 / measured.operations as f64;
        rows.push(json!({"system": "echo", "concurrency": concurrency, "result": measured, "server_cpu_us_per_operation": cpu_us}));
    }
    server.stop().await?;

    // Records per group commit the durable service formed at each concurrency:
    // the storage ceiling below commits in groups of the same size.
    let mut durable_groups = [1.0; 3];
    for relaxed in [false, true] {
        let dir = fresh_dir(args, "ingest")?;
        let server = Server::start(&dir, cpu, relaxed).await?;
        let name = if relaxed {
            "service --unsafe-ack-before-durable"
        } else {
            "service (durable ack)"
        };
        for (level, &concurrency) in CONCURRENCY.iter().enumerate() {
            let before = StoreLoad::read(&server).await?;
            let cpu_before = server.cpu_seconds()?;
            let client = IngestServiceClient::new(server.channel.clone());
            let slice: std::sync::Arc<Vec<Record>> = std::sync::Arc::new(slices[level].to_vec());
            let measured = drive(
                concurrency,
                slice.len(),
                plan.ingest_limit,
                move |_, index| {
                    let mut client = client.clone();
                    let slice = slice.clone();
                    async move { service::record_one(&mut client, &slice[index]).await }
                },
            )
            .await?;
            print_row(name, concurrency, &measured);
            let cpu_us = (server.cpu_seconds()? - cpu_before) * 1e6 / measured.operations as f64;
            let load = StoreLoad::read(&server).await?.since(&before);
            if !relaxed {
                durable_groups[level] = load.records_per_commit();
            }
            rows.push(json!({
                "system": if relaxed {"service-relaxed"} else {"service"},
                "concurrency": concurrency,
                "result": measured,
                "records_per_commit": load.records_per_commit(),
                "store_keys_per_record": load.keys_per_record(),
                "server_cpu_us_per_operation": cpu_us,
                // The server's high-water mark since it started, this
                // concurrency and those before it included.
                "server_peak_rss_bytes": server.memory()?.1,
            }));
        }
        server.stop().await?;

        if !relaxed {
            let mut skip = 0;
            for (level, &concurrency) in CONCURRENCY.iter().enumerate() {
                let group = durable_groups[level].round().max(1.0) as usize;
                // A short run: the median of three, by CPU per record.
                let mut runs = (0..3)
                    .map(|_| {
                        storage::run(
                            &storage::Job {
                                dir: fresh_dir(args, "storage")?,
                                seed: args.seed + 1,
                                total,
                                skip,
                                count: plan.ingest[level],
                                group,
                                limit: plan.ingest_limit,
                            },
                            cpu,
                        )
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                runs.sort_by(|a, b| a.cpu_us_per_record.total_cmp(&b.cpu_us_per_record));
                let ceiling = runs.swap_remove(1);
                skip += plan.ingest[level];
                print_row(
                    "sled: lookup + 1 key, service groups",
                    concurrency,
                    &ceiling.measured,
                );
                rows.push(json!({
                    "system": "sled-one-key",
                    "concurrency": concurrency,
                    "records_per_commit": group,
                    "result": ceiling.measured,
                    "server_cpu_us_per_operation": ceiling.cpu_us_per_record,
                }));
            }
        }

        let name = if relaxed {
            "postgres synchronous_commit=off"
        } else {
            "postgres synchronous_commit=on"
        };
        let admin = postgres::connect(&args.pg_socket).await?;
        postgres::reset(&admin, true).await?;
        for (level, &concurrency) in CONCURRENCY.iter().enumerate() {
            let mut writers = Vec::with_capacity(concurrency);
            for _ in 0..concurrency {
                writers.push(postgres::Writer::new(&args.pg_socket, !relaxed).await?);
            }
            let writers = std::sync::Arc::new(writers);
            let slice: std::sync::Arc<Vec<Record>> = std::sync::Arc::new(slices[level].to_vec());
            let measured = drive(
                concurrency,
                slice.len(),
                plan.ingest_limit,
                move |worker, index| {
                    let writers = writers.clone();
                    let slice = slice.clone();
                    async move { writers[worker].write(&slice[index]).await }
                },
            )
            .await?;
            print_row(name, concurrency, &measured);
            rows.push(json!({"system": if relaxed {"postgres-async-commit"} else {"postgres"}, "concurrency": concurrency, "result": measured}));
        }
    }

    let rate = |system: &str, concurrency: usize| -> f64 {
        rows.iter()
            .find(|r| r["system"] == system && r["concurrency"] == concurrency)
            .and_then(|r| r["result"]["per_second"].as_f64())
            .unwrap_or(f64::NAN)
    };
    let field = |system: &str, concurrency: usize, name: &str| -> f64 {
        rows.iter()
            .find(|r| r["system"] == system && r["concurrency"] == concurrency)
            .and_then(|r| r[name].as_f64())
            .unwrap_or(f64::NAN)
    };
    let cpu_per_record = |system: &str| field(system, 64, "server_cpu_us_per_operation");
    println!(
        "server CPU per record at concurrency 64: echo {:.1} µs, sled alone {:.1} µs, service {:.1} µs \
         ({:.1} keys written per record, {:.1} records per commit)",
        cpu_per_record("echo"),
        cpu_per_record("sled-one-key"),
        cpu_per_record("service"),
        field("service", 64, "store_keys_per_record"),
        field("service", 64, "records_per_commit"),
    );
    let peak_mib = |system: &str| field(system, 64, "server_peak_rss_bytes") / 1048576.0;
    println!(
        "server peak resident memory during ingest: durable {:.0} MiB, relaxed {:.0} MiB \
         (the Kubernetes manifest allows 5 GiB)",
        peak_mib("service"),
        peak_mib("service-relaxed"),
    );
    // On one core the transport's CPU and the storage engine's add up: the
    // most any durable RPC that stores each record under its key could do.
    let one_core_bound = 1e6 / (cpu_per_record("echo") + cpu_per_record("sled-one-key"));
    println!("ratios at concurrency 64:");
    let ratios = json!({
        "one_core_bound_over_echo": one_core_bound / rate("echo", 64),
        "durable_service_over_postgres": rate("service", 64) / rate("postgres", 64),
        "durable_service_over_echo": rate("service", 64) / rate("echo", 64),
        "sled_one_key_over_echo": rate("sled-one-key", 64) / rate("echo", 64),
        "sled_one_key_over_postgres": rate("sled-one-key", 64) / rate("postgres", 64),
        "relaxed_service_over_postgres_async": rate("service-relaxed", 64) / rate("postgres-async-commit", 64),
    });
    for (name, value) in ratios.as_object().into_iter().flatten() {
        println!("  {name:<40} {:.2}", value.as_f64().unwrap_or(f64::NAN));
    }
    Ok(json!({"runs": rows, "ratios": ratios}))
}

/// The service's write counters, from its metrics endpoint.
#[derive(Debug)]
struct StoreLoad {
    records_committed: f64,
    commits: f64,
    keys_written: f64,
}

impl StoreLoad {
    async fn read(server: &Server) -> anyhow::Result<StoreLoad> {
        Ok(StoreLoad {
            records_committed: server
                .metric("support_metrics_commit_group_records_sum")
                .await?,
            commits: server
                .metric("support_metrics_commit_group_records_count")
                .await?,
            keys_written: server
                .metric("support_metrics_store_keys_written_total")
                .await?,
        })
    }

    fn since(&self, earlier: &StoreLoad) -> StoreLoad {
        StoreLoad {
            records_committed: self.records_committed - earlier.records_committed,
            commits: self.commits - earlier.commits,
            keys_written: self.keys_written - earlier.keys_written,
        }
    }

    fn records_per_commit(&self) -> f64 {
        self.records_committed / self.commits
    }

    /// Keys the storage engine wrote per record (derived state still waiting
    /// for its checkpoint, at most about a second of writes, is not counted).
    fn keys_per_record(&self) -> f64 {
        self.keys_written / self.records_committed
    }
}

/// Runs `sync`: the kernel writes every dirty page back and returns.
fn write_back_dirty_pages() -> anyhow::Result<Duration> {
    let began = Clock::now();
    let status = std::process::Command::new("sync").status()?;
    anyhow::ensure!(status.success(), "sync failed: {status}");
    Ok(began.elapsed())
}

fn window(days: i64) -> (Instant, Instant) {
    let end = Instant::from_seconds(END_SECONDS);
    (Instant(end.0 - days * DAY), end)
}

fn pb_window((from, to): (Instant, Instant)) -> pb::Window {
    pb::Window {
        from: Some(convert::timestamp(from)),
        to: Some(convert::timestamp(to)),
    }
}

/// The service's value for each column of the SQL scorecard.
fn service_columns(m: &pb::ScorecardMetrics) -> Vec<(&'static str, f64)> {
    let frt = m.first_response_time.unwrap_or_default();
    let resolution = m.resolution_time.unwrap_or_default();
    let handle = m.handle_time.unwrap_or_default();
    let csat = m.csat.clone().unwrap_or_default();
    let ces = m.ces.clone().unwrap_or_default();
    let nps = m.nps.unwrap_or_default();
    vec![
        ("tickets_created", m.tickets_created as f64),
        (
            "created_resolved_now",
            m.tickets_created_resolved_now as f64,
        ),
        ("frt_count", frt.count as f64),
        ("frt_mean", frt.mean_seconds),
        ("frt_p50", frt.p50_seconds),
        ("frt_p90", frt.p90_seconds),
        ("frt_p99", frt.p99_seconds),
        ("tickets_resolved", m.tickets_resolved as f64),
        ("first_contact_resolved", m.first_contact_resolved as f64),
        ("reopened", m.reopened as f64),
        ("resolution_mean", resolution.mean_seconds),
        ("resolution_p50", resolution.p50_seconds),
        ("resolution_p90", resolution.p90_seconds),
        ("interactions", m.interactions as f64),
        ("aht_count", handle.count as f64),
        ("aht_mean", handle.mean_seconds),
        ("aht_p50", handle.p50_seconds),
        ("aht_p90", handle.p90_seconds),
        ("csat_responses", csat.responses as f64),
        ("csat_satisfied", csat.satisfied as f64),
        ("ces_responses", ces.responses as f64),
        ("nps_responses", nps.responses as f64),
        ("nps_promoters", nps.promoters as f64),
        ("nps_detractors", nps.detractors as f64),
    ]
}

fn close(a: f64, b: f64, relative: f64) -> bool {
    (a - b).abs() <= relative * a.abs().max(b.abs()) + 1e-9
}

/// Compares the service's scorecard with PostgreSQL's row (counts exact, means
/// to rounding, percentiles within 1% of the exact nearest-rank values from the
/// sorted durations) and DuckDB's row with PostgreSQL's.
fn check(
    label: &str,
    service: &pb::ScorecardMetrics,
    postgres: &std::collections::BTreeMap<String, f64>,
    duck: &std::collections::BTreeMap<String, Option<f64>>,
    sorted: &[Vec<f64>; 3],
    failures: &mut Vec<String>,
) {
    for (column, value) in service_columns(service) {
        let Some(&sql) = postgres.get(column) else {
            failures.push(format!("{label}: PostgreSQL has no column {column}"));
            continue;
        };
        let exact = match column {
            "frt_p50" => percentile(&sorted[0], 0.5),
            "frt_p90" => percentile(&sorted[0], 0.9),
            "frt_p99" => percentile(&sorted[0], 0.99),
            "resolution_p50" => percentile(&sorted[1], 0.5),
            "resolution_p90" => percentile(&sorted[1], 0.9),
            "aht_p50" => percentile(&sorted[2], 0.5),
            "aht_p90" => percentile(&sorted[2], 0.9),
            _ => sql,
        };
        let ok = if sql::COUNT_COLUMNS.contains(&column) {
            value == sql
        } else if column.ends_with("mean") {
            // Absent (n = 0) is 0 on the wire and NULL in SQL.
            close(value, if sql.is_nan() { 0.0 } else { sql }, 1e-6)
        } else if exact.is_nan() {
            value == 0.0
        } else {
            close(value, exact, 0.01)
        };
        if !ok {
            failures.push(format!(
                "{label}: {column}: service {value}, exact {exact} (PostgreSQL {sql})"
            ));
        }
    }
    for (column, &value) in postgres {
        let duck_value = duck.get(column).copied().flatten().unwrap_or(f64::NAN);
        let same = (value.is_nan() && duck_value.is_nan()) || close(value, duck_value, 1e-6);
        if !same {
            failures.push(format!(
                "{label}: {column}: PostgreSQL {value}, DuckDB {duck_value}"
            ));
        }
    }
}

async fn reads(
    args: &Args,
    plan: Plan,
    cpu: Option<usize>,
    failures: &mut Vec<String>,
) -> anyhow::Result<serde_json::Value> {
    let began = Clock::now();
    let config = WorkloadConfig::new(
        args.seed,
        plan.interactions,
        365,
        Instant::from_seconds(END_SECONDS),
    );
    let records = workload::generate(&config);
    println!(
        "generated {} records ({} interactions) in {:.1} s",
        records.len(),
        plan.interactions,
        began.elapsed().as_secs_f64()
    );

    // The service: bulk-load the store, then start the server on it.
    let data = fresh_dir(args, "reads-service")?;
    let tool_config = Cli::try_parse_from([
        "support-metrics",
        "--data-dir",
        data.to_str().context("utf-8 path")?,
    ])?
    .config
    .store;
    let began = Clock::now();
    tools::load(&tool_config, &records, None, &[]).await?;
    let service_load = began.elapsed();
    let server = Server::start(&data, cpu, false).await?;
    let startup = server.startup;
    println!(
        "service: loaded in {:.1} s ({:.0} records/s), started in {:.2} s",
        service_load.as_secs_f64(),
        records.len() as f64 / service_load.as_secs_f64(),
        startup.as_secs_f64()
    );

    // PostgreSQL and DuckDB: the final state as CSV, bulk-loaded.
    let interactions_csv = args.work_dir.join("interactions.csv");
    let surveys_csv = args.work_dir.join("survey_responses.csv");
    sql::write_csv(&records, &interactions_csv, &surveys_csv)?;
    let pg = postgres::connect(&args.pg_socket).await?;
    let began = Clock::now();
    postgres::bulk_load(&pg, &interactions_csv, &surveys_csv).await?;
    let pg_load = began.elapsed();
    println!(
        "postgres: COPY + indexes + analyse in {:.1} s",
        pg_load.as_secs_f64()
    );

    // Every system is measured on a quiet machine: no load's dirty pages
    // still being written under the reads (PostgreSQL checkpointed above).
    let flushed = write_back_dirty_pages()?;
    println!(
        "sync: dirty pages written in {:.1} s",
        flushed.as_secs_f64()
    );

    let windows = [("1 day", 1), ("30 days", 30), ("365 days", 365)];
    let queries: Vec<duckdb::Query> = windows
        .iter()
        .map(|&(name, days)| {
            let (from, to) = window(days);
            duckdb::Query {
                name: name.into(),
                sql: sql::scorecard(sql::Dialect::DuckDb, TEAM, from, to),
            }
        })
        .collect();
    let duck = duckdb::run(
        &args.python,
        cpu,
        &interactions_csv,
        &surveys_csv,
        &queries,
        plan.sql_reads,
        plan.read_limit.as_secs_f64(),
    )?;
    println!("duckdb: loaded in {:.1} s", duck.load_seconds);

    println!(
        "{:<9} {:>20} {:>20} {:>20} {:>14}",
        "window", "service p50/p99 ms", "postgres p50/p99 ms", "duckdb p50/p99 ms", "p99 speed-up"
    );
    let mut rows = Vec::new();
    for &(name, days) in &windows {
        let range = window(days);
        // The service, at concurrency 1 after a warm-up.
        let client = ScorecardServiceClient::new(server.channel.clone());
        for _ in 0..20 {
            service::scorecard(&mut client.clone(), TEAM, pb_window(range)).await?;
        }
        let service_card = service::scorecard(&mut client.clone(), TEAM, pb_window(range)).await?;
        let service_measured = drive(1, plan.service_reads, plan.read_limit, move |_, _| {
            let mut client = client.clone();
            async move {
                service::scorecard(&mut client, TEAM, pb_window(range)).await?;
                Ok(())
            }
        })
        .await?;

        // PostgreSQL, the same way.
        let query = sql::scorecard(sql::Dialect::Postgres, TEAM, range.0, range.1);
        let pg_row = postgres::row(&pg, &query).await?;
        let mut latencies = Vec::new();
        let started = Clock::now();
        while latencies.len() < plan.sql_reads
            && (latencies.len() < 3 || started.elapsed() < plan.read_limit)
        {
            let t0 = Clock::now();
            postgres::row(&pg, &query).await?;
            latencies.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let pg_measured = Measured::from_latencies(latencies, started.elapsed());

        let duck_result = duck
            .results
            .iter()
            .find(|r| r.name == name)
            .context("duckdb result")?;
        let duck_measured = Measured::from_latencies(
            duck_result.latencies_ms.clone(),
            Duration::from_secs_f64(duck_result.latencies_ms.iter().sum::<f64>() / 1e3),
        );

        let sorted = {
            let [frt, resolution, handle] = sql::sorted_durations(TEAM, range.0, range.1);
            [
                postgres::column(&pg, &frt).await?,
                postgres::column(&pg, &resolution).await?,
                postgres::column(&pg, &handle).await?,
            ]
        };
        check(
            name,
            &service_card,
            &pg_row,
            &duck_result.row,
            &sorted,
            failures,
        );
        let speedup = pg_measured.p99_ms.min(duck_measured.p99_ms) / service_measured.p99_ms;
        println!(
            "{name:<9} {:>20} {:>20} {:>20} {:>13.0}x",
            format!(
                "{:.3} / {:.3}",
                service_measured.p50_ms, service_measured.p99_ms
            ),
            format!("{:.1} / {:.1}", pg_measured.p50_ms, pg_measured.p99_ms),
            format!("{:.1} / {:.1}", duck_measured.p50_ms, duck_measured.p99_ms),
            speedup
        );
        rows.push(json!({
            "window": name,
            "tickets_created": pg_row.get("tickets_created"),
            "service": service_measured,
            "postgres": pg_measured,
            "duckdb": duck_measured,
            "p99_speedup_over_faster_sql": speedup,
        }));
    }

    let (rss, peak) = server.memory()?;
    let service_disk = service::disk_bytes(&data)?;
    let pg_bytes = postgres::table_bytes(&pg).await?;
    let per = |bytes: u64| bytes as f64 / plan.interactions as f64;
    println!(
        "footprint: service RSS {:.0} MiB (peak {:.0} MiB), disk {:.0} B/interaction; \
         postgres tables+indexes {:.0} B/interaction; service startup {:.2} s",
        rss as f64 / 1048576.0,
        peak as f64 / 1048576.0,
        per(service_disk),
        per(pg_bytes),
        startup.as_secs_f64()
    );
    server.stop().await?;
    Ok(json!({
        "team": TEAM,
        "records": records.len(),
        "windows": rows,
        "footprint": {
            "service_rss_bytes": rss,
            "service_peak_rss_bytes": peak,
            "service_disk_bytes_per_interaction": per(service_disk),
            "postgres_bytes_per_interaction": per(pg_bytes),
            "service_startup_seconds": startup.as_secs_f64(),
            "service_bulk_load_seconds": service_load.as_secs_f64(),
            "postgres_bulk_load_seconds": pg_load.as_secs_f64(),
            "duckdb_load_seconds": duck.load_seconds,
        },
    }))
}
