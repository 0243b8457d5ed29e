//! DuckDB through its Python package (`bench/duckdb_reads.py`), in its own
//! process pinned to the server core.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::service::pinned;
use crate::sql::{self, Dialect};

#[derive(Debug, Deserialize)]
pub struct Output {
    pub load_seconds: f64,
    pub results: Vec<QueryResult>,
}

#[derive(Debug, Deserialize)]
pub struct QueryResult {
    pub name: String,
    pub latencies_ms: Vec<f64>,
    pub row: BTreeMap<String, Option<f64>>,
}

pub struct Query {
    pub name: String,
    pub sql: String,
}

pub fn run(
    python: &Path,
    cpu: Option<usize>,
    interactions_csv: &Path,
    surveys_csv: &Path,
    queries: &[Query],
    iterations: usize,
    time_limit_seconds: f64,
) -> anyhow::Result<Output> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/duckdb_reads.py");
    let job = serde_json::json!({
        "schema": sql::schema(Dialect::DuckDb),
        "interactions_csv": interactions_csv,
        "surveys_csv": surveys_csv,
        "queries": queries.iter().map(|q| serde_json::json!({"name": q.name, "sql": q.sql})).collect::<Vec<_>>(),
        "iterations": iterations,
        "time_limit_seconds": time_limit_seconds,
    });
    let mut child = pinned(cpu, python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", python.display()))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(job.to_string().as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("the DuckDB script failed: {}", output.status);
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}
