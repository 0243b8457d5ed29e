//! The command-line tools that own a stopped store: `verify`, `export`, `import`,
//! `demo`, `compact`.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context};

use crate::api::convert;
use crate::api::scorecard::parse_targets;
use crate::api::validate;
use crate::config::StoreConfig;
use crate::domain::records::{Id, Priority, Record};
use crate::domain::scorecard::{Metric, Targets};
use crate::domain::sla::{SlaClock, SlaMetric, SlaPolicy, SlaRule, TeamTerms};
use crate::domain::time::Instant;
use crate::error::Error;
use crate::ndjson;
use crate::proto::v1 as pb;
use crate::store::{compact, refresh_snapshot, BulkLoad, Compaction, Outcome, Store};
use crate::workload::{self, WorkloadConfig};

/// Records per commit when importing into a store that holds records
/// already: each commit recomputes what its records touch.
const IMPORT_BATCH: usize = 1000;
/// Records per commit of a bulk load ([`BulkLoad`]), which recomputes
/// nothing until the end.
const BULK_BATCH: usize = 10_000;

fn open(config: &StoreConfig, durable_acks: bool) -> anyhow::Result<Store> {
    if !config.data_dir.join("db").exists() {
        bail!("{} holds no store", config.data_dir.display());
    }
    Store::open(&config.sled_options(durable_acks))
        .with_context(|| format!("opening {}", config.data_dir.display()))
}

/// Scrubs the store; `Ok(false)` when anything is damaged or inconsistent.
pub async fn verify(config: &StoreConfig, out: &mut impl Write) -> anyhow::Result<bool> {
    let opened = config.clone();
    let store = tokio::task::spawn_blocking(move || open(&opened, true)).await??;
    let report = store.verify().await;
    // Closing joins the writer and saves the derived state: not on the runtime.
    tokio::task::spawn_blocking(move || drop(store)).await?;
    let report = report?;
    writeln!(
        out,
        "values checked: {}\ndamaged values: {}\ngroups recomputed: {}\nderived keys checked: {}\nmismatches: {}",
        report.values_checked,
        report.damaged_values,
        report.groups_checked,
        report.keys_checked,
        report.mismatch_count
    )?;
    for (key, description) in &report.mismatches {
        writeln!(out, "  {key}: {description}")?;
    }
    if report.mismatch_count > report.mismatches.len() as u64 {
        writeln!(
            out,
            "  … and {} more",
            report.mismatch_count - report.mismatches.len() as u64
        )?;
    }
    if report.damaged_values > 0 {
        writeln!(
            out,
            "Damaged raw records or targets cannot be recomputed: restore them from a backup."
        )?;
    } else if report.mismatch_count > 0 {
        writeln!(
            out,
            "The raw records are intact: RebuildAggregates (or an import into an empty \
             directory) repairs the derived values."
        )?;
    }
    Ok(report.mismatch_count == 0)
}

/// Copies the stopped store into `into` (see [`compact::compact`]).
pub fn compact(config: &StoreConfig, into: &Path) -> anyhow::Result<Compaction> {
    compact::compact(&config.sled_options(true), into).with_context(|| {
        format!(
            "compacting {} into {}",
            config.data_dir.display(),
            into.display()
        )
    })
}

/// What an export wrote, and what a salvage skipped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub items: u64,
    /// Damaged values left out (`--skip-damaged`), each naming its key.
    pub skipped: Vec<String>,
}

/// Writes the backup to `output` (a file, fsynced) or standard output. It
/// reads only the record log, so a store whose derived state cannot be
/// restored still exports. A damaged record fails the export, naming it;
/// with `skip_damaged` (a salvage) it is left out and listed instead.
pub fn export(
    config: &StoreConfig,
    output: Option<&Path>,
    skip_damaged: bool,
) -> anyhow::Result<ExportSummary> {
    if !config.data_dir.join("db").exists() {
        bail!("{} holds no store", config.data_dir.display());
    }
    let log = crate::store::open_record_log(&config.sled_options(true))
        .with_context(|| format!("opening {}", config.data_dir.display()))?;
    let snapshot = crate::store::Snapshot::take(&log, &config.data_dir)?;
    let mut skipped = Vec::new();
    let write = |out: &mut dyn Write| -> anyhow::Result<u64> {
        let mut count = 0;
        for item in snapshot {
            let item = match item {
                Ok(item) => item,
                Err(crate::error::Error::DataLoss(why)) if skip_damaged => {
                    tracing::error!(%why, "salvage: a damaged value is left out");
                    skipped.push(why);
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            let line = ndjson::to_line(&convert::backup_item(&item));
            writeln!(out, "{line}")?;
            count += 1;
        }
        Ok(count)
    };
    let count = match output {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("creating {}", path.display()))?;
            let mut out = BufWriter::new(file);
            let count = write(&mut out)?;
            out.into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()
                .with_context(|| format!("syncing {}", path.display()))?;
            count
        }
        None => {
            let mut out = BufWriter::new(std::io::stdout().lock());
            let count = write(&mut out)?;
            out.flush()?;
            count
        }
    };
    tracing::info!(items = count, skipped = skipped.len(), "exported");
    Ok(ExportSummary {
        items: count,
        skipped,
    })
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub lines: u64,
    pub created: u64,
    pub updated: u64,
    pub duplicate: u64,
    pub stale: u64,
    pub targets: u64,
    /// Versions of team terms (calendar, SLA policy) restored.
    pub terms: u64,
    /// Records whose id and revision exist with other content (ALREADY_EXISTS).
    pub conflicts: Vec<String>,
}

/// Imports NDJSON from `input` (a file) or standard input.
pub async fn import(config: &StoreConfig, input: Option<&Path>) -> anyhow::Result<ImportSummary> {
    let mut loader = Loader::open(config).await?;
    let batch_size = loader.batch_size();
    let reader: Box<dyn BufRead + Send> = match input {
        Some(path) => Box::new(BufReader::new(
            File::open(path).with_context(|| format!("opening {}", path.display()))?,
        )),
        None => Box::new(BufReader::new(std::io::stdin())),
    };
    let mut summary = ImportSummary::default();
    let mut batch = Vec::with_capacity(batch_size);
    let mut batch_lines = Vec::with_capacity(batch_size);
    let result = async {
        for (index, line) in reader.lines().enumerate() {
            let number = index as u64 + 1;
            let line = line.with_context(|| format!("reading line {number}"))?;
            if line.trim().is_empty() {
                continue;
            }
            let item = match parse_item(&line) {
                Ok(item) => item,
                Err(error) => {
                    // The lines before the bad one are imported, as documented.
                    record_batch(&mut loader, &mut batch, &mut batch_lines, &mut summary).await?;
                    bail!("line {number}: {error}");
                }
            };
            summary.lines += 1;
            match item {
                Item::Record(record) => {
                    batch.push(record);
                    batch_lines.push(number);
                    if batch.len() == batch_size {
                        record_batch(&mut loader, &mut batch, &mut batch_lines, &mut summary)
                            .await?;
                    }
                }
                Item::Targets(team, targets) => {
                    // Keep the file's order: earlier records land first.
                    record_batch(&mut loader, &mut batch, &mut batch_lines, &mut summary).await?;
                    loader.set_targets(team, targets).await?;
                    summary.targets += 1;
                }
                Item::Terms {
                    team,
                    effective_from,
                    terms,
                } => {
                    record_batch(&mut loader, &mut batch, &mut batch_lines, &mut summary).await?;
                    loader
                        .restore_terms(team, effective_from, terms)
                        .await
                        .with_context(|| format!("line {number}"))?;
                    summary.terms += 1;
                }
            }
        }
        record_batch(&mut loader, &mut batch, &mut batch_lines, &mut summary).await
    }
    .await;
    // Whatever was recorded is made durable, even when a line stopped the import.
    let flushed = loader.close(config).await;
    result?;
    flushed?;
    Ok(summary)
}

/// Where `import` and `demo` write: a [`BulkLoad`] into a store without
/// records, else the store's writer. Either way commits are acknowledged once
/// applied, and the whole is made durable once at the end ([`Loader::close`]).
enum Loader {
    /// `None` only while a call holds it on a blocking thread.
    Bulk(Option<BulkLoad>),
    Writer(Store),
}

impl Loader {
    /// Opens (or creates) the store of `config` for a load.
    async fn open(config: &StoreConfig) -> anyhow::Result<Loader> {
        std::fs::create_dir_all(&config.data_dir)?;
        let options = config.sled_options(false);
        let opening = || format!("opening {}", config.data_dir.display());
        let bulk = tokio::task::spawn_blocking(move || BulkLoad::begin(&options))
            .await?
            .with_context(opening)?;
        if let Some(bulk) = bulk {
            return Ok(Loader::Bulk(Some(bulk)));
        }
        let options = config.sled_options(false);
        let store = tokio::task::spawn_blocking(move || Store::open(&options))
            .await?
            .with_context(opening)?;
        Ok(Loader::Writer(store))
    }

    fn batch_size(&self) -> usize {
        match self {
            Loader::Bulk(_) => BULK_BATCH,
            Loader::Writer(_) => IMPORT_BATCH,
        }
    }

    /// Runs `call` on the bulk load, on a blocking thread (it writes to sled).
    async fn bulk<T: Send + 'static>(
        slot: &mut Option<BulkLoad>,
        call: impl FnOnce(&mut BulkLoad) -> crate::error::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let mut bulk = slot
            .take()
            .context("an earlier bulk-load call did not come back")?;
        let (bulk, result) = tokio::task::spawn_blocking(move || {
            let result = call(&mut bulk);
            (bulk, result)
        })
        .await?;
        *slot = Some(bulk);
        Ok(result?)
    }

    async fn record(
        &mut self,
        records: Vec<Record>,
    ) -> anyhow::Result<Vec<Result<Outcome, Error>>> {
        match self {
            Loader::Bulk(slot) => Loader::bulk(slot, move |bulk| bulk.record(records)).await,
            Loader::Writer(store) => Ok(store.record(records).await?),
        }
    }

    async fn set_targets(&mut self, team: Option<Id>, targets: Targets) -> anyhow::Result<()> {
        match self {
            Loader::Bulk(slot) => {
                Loader::bulk(slot, move |bulk| bulk.set_targets(team, targets)).await
            }
            Loader::Writer(store) => Ok(store.set_targets(team, targets).await?),
        }
    }

    async fn restore_terms(
        &mut self,
        team: Id,
        effective_from: i64,
        terms: TeamTerms,
    ) -> anyhow::Result<()> {
        match self {
            Loader::Bulk(slot) => {
                Loader::bulk(slot, move |bulk| {
                    bulk.restore_terms(team, effective_from, terms)
                })
                .await
            }
            Loader::Writer(store) => Ok(store
                .restore_terms(team, effective_from, terms)
                .await
                .map(|_| ())?),
        }
    }

    /// Finishes a bulk load (its derived state computed once, see
    /// [`BulkLoad::finish`]), then closes the store durably.
    async fn close(self, config: &StoreConfig) -> anyhow::Result<()> {
        let store = match self {
            Loader::Bulk(slot) => {
                let bulk = slot.context("an earlier bulk-load call did not come back")?;
                tokio::task::spawn_blocking(move || bulk.finish())
                    .await?
                    .with_context(|| format!("opening {}", config.data_dir.display()))?
            }
            Loader::Writer(store) => store,
        };
        close_durably(config, store).await
    }
}

/// Flushes and closes the store, then opens and closes it once more so that
/// sled's snapshot covers the load (see [`refresh_snapshot`]). The load is
/// durable once flushed: a failed refresh only costs the next start time, so
/// it is logged, not reported as a failed load.
async fn close_durably(config: &StoreConfig, store: Store) -> anyhow::Result<()> {
    let options = config.sled_options(false);
    tokio::task::spawn_blocking(move || {
        let flushed = store.kv().flush();
        drop(store);
        flushed?;
        if let Err(error) = refresh_snapshot(&options) {
            tracing::warn!(
                %error,
                "could not reopen the store after the load; its next start replays sled's log"
            );
        }
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}

/// What `demo` should generate.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub seed: u64,
    pub interactions: usize,
    pub days: u32,
}

/// Fills the store with a generated organisation (see [`workload`]) whose data
/// ends now, plus organisation-wide targets, so that every scorecard has
/// something to show. Running it again with the same seed in the same hour
/// changes nothing (the records are idempotent).
pub async fn demo(
    config: &StoreConfig,
    options: &DemoOptions,
) -> anyhow::Result<(ImportSummary, Instant)> {
    let now = Instant::now().0 / 1_000_000_000;
    // The end is the current hour, so that reruns within it repeat the same records.
    let end = Instant::from_seconds(now - now.rem_euclid(3600));
    let workload = WorkloadConfig {
        id_prefix: "demo-".into(),
        ..WorkloadConfig::new(options.seed, options.interactions, options.days, end)
    };
    let records = workload::generate(&workload);
    let terms: Vec<(Id, TeamTerms)> = workload
        .team_ids()
        .into_iter()
        .map(|team| (team, demo_terms()))
        .collect();
    let summary = load(config, &records, Some(demo_targets()), &terms).await?;
    Ok((summary, end))
}

/// Every demo team's SLA policy, in calendar time (the demo sets no calendars).
fn demo_terms() -> TeamTerms {
    const HOUR: i64 = 3600 * 1_000_000_000;
    let targets = [
        (Priority::Urgent, 1, 8),
        (Priority::High, 4, 24),
        (Priority::Normal, 8, 72),
        (Priority::Low, 24, 168),
    ];
    let rule = |priority, metric, hours: i64| SlaRule {
        priority,
        metric,
        within_nanos: hours * HOUR,
        clock: SlaClock::Calendar,
    };
    TeamTerms {
        calendar: None,
        sla: SlaPolicy::new(
            targets
                .into_iter()
                .flat_map(|(priority, first, resolution)| {
                    [
                        rule(priority, SlaMetric::FirstResponse, first),
                        rule(priority, SlaMetric::Resolution, resolution),
                    ]
                }),
        ),
    }
}

/// Records `records` (and organisation-wide `targets`) into the store of
/// `config`, in batches, with a progress bar; durable when it returns. Teams'
/// `terms` go in first, applying to all of history (so only into a store
/// without interactions, or one that has them already). The `lines` of the
/// summary count records.
pub async fn load(
    config: &StoreConfig,
    records: &[Record],
    targets: Option<Targets>,
    terms: &[(Id, TeamTerms)],
) -> anyhow::Result<ImportSummary> {
    let mut loader = Loader::open(config).await?;
    let batch_size = loader.batch_size();
    let mut summary = ImportSummary::default();
    let loaded = async {
        for (team, team_terms) in terms {
            loader
                .restore_terms(team.clone(), i64::MIN, team_terms.clone())
                .await?;
            summary.terms += 1;
        }
        let progress = indicatif::ProgressBar::new(records.len() as u64);
        for chunk in records.chunks(batch_size) {
            let mut batch = chunk.to_vec();
            let mut lines: Vec<u64> =
                (summary.lines + 1..=summary.lines + chunk.len() as u64).collect();
            summary.lines += batch.len() as u64;
            record_batch(&mut loader, &mut batch, &mut lines, &mut summary).await?;
            progress.inc(chunk.len() as u64);
        }
        progress.finish_and_clear();
        if let Some(targets) = targets {
            loader.set_targets(None, targets).await?;
            summary.targets += 1;
        }
        anyhow::Ok(())
    }
    .await;
    let flushed = loader.close(config).await;
    loaded?;
    flushed?;
    Ok(summary)
}

/// Organisation-wide targets of the kind SPEC §3 gives as examples.
fn demo_targets() -> Targets {
    Targets::from([
        (Metric::CsatPercent, 85.0),
        (Metric::FrtP90, 3_600.0),
        (Metric::FcrRate, 70.0),
        (Metric::NpsScore, 30.0),
        (Metric::ResolutionRate, 80.0),
    ])
}

/// A validated line.
enum Item {
    Record(Record),
    Targets(Option<Id>, Targets),
    Terms {
        team: Id,
        effective_from: i64,
        terms: TeamTerms,
    },
}

fn parse_item(line: &str) -> Result<Item, String> {
    match ndjson::from_line(line)?.item {
        Some(pb::export_item::Item::Record(record)) => validate::record(&record, "")
            .map(Item::Record)
            .map_err(|violations| Error::InvalidArgument(violations).to_string()),
        Some(pb::export_item::Item::Targets(targets)) => parse_targets(&targets)
            .map(|(team, targets)| Item::Targets(team, targets))
            .map_err(|violations| Error::InvalidArgument(violations).to_string()),
        Some(pb::export_item::Item::Calendar(version)) => {
            let mut fields = validate::Fields::new("");
            let team = fields.id("team_id", &version.team_id);
            let calendar = match &version.calendar {
                None => Some(None),
                Some(calendar) => fields.calendar("calendar", calendar).map(Some),
            };
            let sla = match &version.sla_policy {
                None => Some(SlaPolicy::default()),
                Some(policy) => fields.sla_policy("sla_policy", policy),
            };
            let effective_from = version
                .effective_from
                .as_ref()
                .map_or(i64::MIN, |moment| moment.seconds);
            fields
                .finish(team.zip(calendar).zip(sla))
                .map(|((team, calendar), sla)| Item::Terms {
                    team,
                    effective_from,
                    terms: TeamTerms { calendar, sla },
                })
                .map_err(|violations| Error::InvalidArgument(violations).to_string())
        }
        None => Err("holds no item".into()),
    }
}

async fn record_batch(
    loader: &mut Loader,
    batch: &mut Vec<Record>,
    lines: &mut Vec<u64>,
    summary: &mut ImportSummary,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let outcomes = loader.record(std::mem::take(batch)).await?;
    for (outcome, line) in outcomes.into_iter().zip(lines.drain(..)) {
        match outcome {
            Ok(Outcome::Created) => summary.created += 1,
            Ok(Outcome::Updated) => summary.updated += 1,
            Ok(Outcome::Duplicate) => summary.duplicate += 1,
            Ok(Outcome::Stale) => summary.stale += 1,
            Err(Error::AlreadyExists(message)) => {
                summary.conflicts.push(format!("line {line}: {message}"))
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(())
}
