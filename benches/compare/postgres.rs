//! PostgreSQL as a user would run it: one row per record (upserted by id and
//! revision), one transaction per row, and SQL for the scorecard.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, Statement};

use support_metrics::api::convert;
use support_metrics::domain::records::Record;
use support_metrics::domain::time::Instant;

use crate::sql::{self, Dialect};

pub async fn connect(socket_dir: &Path) -> anyhow::Result<Client> {
    let config = format!(
        "host={} user=postgres dbname=postgres",
        socket_dir.display()
    );
    let (client, connection) = tokio_postgres::connect(&config, NoTls)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {}", socket_dir.display()))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("postgres connection: {error}");
        }
    });
    client.batch_execute("SET TimeZone = 'UTC'").await?;
    Ok(client)
}

/// Drops and recreates the tables (indexes included when `indexes`).
pub async fn reset(client: &Client, indexes: bool) -> anyhow::Result<()> {
    client
        .batch_execute(
            "DROP TABLE IF EXISTS interactions, survey_responses, quality_reviews, customer_events",
        )
        .await?;
    client
        .batch_execute(&sql::schema(Dialect::Postgres))
        .await?;
    if indexes {
        client.batch_execute(sql::INDEXES).await?;
    }
    Ok(())
}

fn time(instant: Instant) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(instant.0 as u64)
}

/// One connection's prepared upserts.
pub struct Writer {
    client: Client,
    interaction: Statement,
    survey: Statement,
    review: Statement,
    event: Statement,
}

impl Writer {
    /// `synchronous_commit` on (durable at commit) or off (the relaxed class).
    pub async fn new(socket_dir: &Path, synchronous_commit: bool) -> anyhow::Result<Writer> {
        let client = connect(socket_dir).await?;
        let setting = if synchronous_commit { "on" } else { "off" };
        client
            .batch_execute(&format!("SET synchronous_commit = {setting}"))
            .await?;
        let interaction = client
            .prepare_typed(
                "INSERT INTO interactions VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                 ON CONFLICT (interaction_id) DO UPDATE SET revision = EXCLUDED.revision,
                    ticket_id = EXCLUDED.ticket_id, team_id = EXCLUDED.team_id,
                    agent_id = EXCLUDED.agent_id, customer_id = EXCLUDED.customer_id,
                    channel = EXCLUDED.channel, priority = EXCLUDED.priority,
                    opened_at = EXCLUDED.opened_at, first_response_at = EXCLUDED.first_response_at,
                    closed_at = EXCLUDED.closed_at, handle_us = EXCLUDED.handle_us,
                    resolved = EXCLUDED.resolved, tags = EXCLUDED.tags
                 WHERE interactions.revision < EXCLUDED.revision",
                &[
                    Type::TEXT,
                    Type::INT8,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TIMESTAMPTZ,
                    Type::TIMESTAMPTZ,
                    Type::TIMESTAMPTZ,
                    Type::INT8,
                    Type::BOOL,
                    Type::TEXT,
                ],
            )
            .await?;
        let survey = client
            .prepare(
                "INSERT INTO survey_responses VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (response_id) DO UPDATE SET revision = EXCLUDED.revision,
                    interaction_id = EXCLUDED.interaction_id, kind = EXCLUDED.kind,
                    score = EXCLUDED.score, submitted_at = EXCLUDED.submitted_at
                 WHERE survey_responses.revision < EXCLUDED.revision",
            )
            .await?;
        let review = client
            .prepare(
                "INSERT INTO quality_reviews VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (review_id) DO UPDATE SET revision = EXCLUDED.revision,
                    interaction_id = EXCLUDED.interaction_id, reviewer_id = EXCLUDED.reviewer_id,
                    score = EXCLUDED.score, reviewed_at = EXCLUDED.reviewed_at
                 WHERE quality_reviews.revision < EXCLUDED.revision",
            )
            .await?;
        let event = client
            .prepare(
                "INSERT INTO customer_events VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (event_id) DO UPDATE SET revision = EXCLUDED.revision,
                    customer_id = EXCLUDED.customer_id, kind = EXCLUDED.kind,
                    occurred_at = EXCLUDED.occurred_at
                 WHERE customer_events.revision < EXCLUDED.revision",
            )
            .await?;
        Ok(Writer {
            client,
            interaction,
            survey,
            review,
            event,
        })
    }

    /// One record, one autocommitted statement.
    pub async fn write(&self, record: &Record) -> anyhow::Result<()> {
        match record {
            Record::Interaction(i) => {
                let revision = i.revision as i64;
                let agent = i.agent_id.as_ref().map(|a| a.as_str());
                let customer = i.customer_id.as_ref().map(|c| c.as_str());
                // The wire names, as in the CSV files of the read benchmark.
                let channel = convert::channel(i.channel).as_str_name();
                let priority = convert::priority(i.priority).as_str_name();
                let handle_us = i.handle_time_nanos.map(|n| n / 1_000);
                let tags = i.tags.join("|");
                self.client
                    .execute(
                        &self.interaction,
                        &[
                            &i.interaction_id.as_str(),
                            &revision,
                            &i.ticket_id.as_str(),
                            &i.team_id.as_str(),
                            &agent,
                            &customer,
                            &channel,
                            &priority,
                            &time(i.opened_at),
                            &i.first_response_at.map(time),
                            &i.closed_at.map(time),
                            &handle_us,
                            &i.resolved,
                            &tags,
                        ],
                    )
                    .await?;
            }
            Record::SurveyResponse(s) => {
                self.client
                    .execute(
                        &self.survey,
                        &[
                            &s.response_id.as_str(),
                            &(s.revision as i64),
                            &s.interaction_id.as_str(),
                            &s.kind.name(),
                            &i32::from(s.score),
                            &time(s.submitted_at),
                        ],
                    )
                    .await?;
            }
            Record::QualityReview(r) => {
                self.client
                    .execute(
                        &self.review,
                        &[
                            &r.review_id.as_str(),
                            &(r.revision as i64),
                            &r.interaction_id.as_str(),
                            &r.reviewer_id.as_str(),
                            &i32::from(r.score),
                            &time(r.reviewed_at),
                        ],
                    )
                    .await?;
            }
            Record::CustomerEvent(e) => {
                self.client
                    .execute(
                        &self.event,
                        &[
                            &e.event_id.as_str(),
                            &(e.revision as i64),
                            &e.customer_id.as_str(),
                            &"CHURNED",
                            &time(e.occurred_at),
                        ],
                    )
                    .await?;
            }
        }
        Ok(())
    }
}

/// Bulk-loads the CSV files with COPY, then indexes and analyses.
pub async fn bulk_load(
    client: &Client,
    interactions_csv: &Path,
    surveys_csv: &Path,
) -> anyhow::Result<()> {
    use futures_util::SinkExt;
    reset(client, false).await?;
    for (table, path) in [
        ("interactions", interactions_csv),
        ("survey_responses", surveys_csv),
    ] {
        let sink = client
            .copy_in(&format!("COPY {table} FROM STDIN (FORMAT csv)"))
            .await?;
        futures_util::pin_mut!(sink);
        let bytes = std::fs::read(path)?;
        for chunk in bytes.chunks(1 << 20) {
            sink.send(bytes::Bytes::copy_from_slice(chunk)).await?;
        }
        sink.finish().await?;
    }
    client.batch_execute(sql::INDEXES).await?;
    for table in ["interactions", "survey_responses"] {
        client
            .batch_execute(&format!("VACUUM ANALYZE {table}"))
            .await?;
    }
    // The load's dirty pages are written now, not by the checkpointer in
    // the background of the reads measured next.
    client.batch_execute("CHECKPOINT").await?;
    Ok(())
}

/// Runs a one-row query; every column as a number (NULL as NaN).
pub async fn row(client: &Client, query: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let row = client.query_one(query, &[]).await?;
    let mut values = BTreeMap::new();
    for (index, column) in row.columns().iter().enumerate() {
        let value = match *column.type_() {
            Type::INT8 => row.get::<_, i64>(index) as f64,
            Type::FLOAT8 => row.get::<_, Option<f64>>(index).unwrap_or(f64::NAN),
            ref other => anyhow::bail!("column {} has type {other}", column.name()),
        };
        values.insert(column.name().to_owned(), value);
    }
    Ok(values)
}

pub async fn column(client: &Client, query: &str) -> anyhow::Result<Vec<f64>> {
    Ok(client
        .query(query, &[])
        .await?
        .iter()
        .map(|row| row.get::<_, f64>(0))
        .collect())
}

/// Bytes of the tables and their indexes.
pub async fn table_bytes(client: &Client) -> anyhow::Result<u64> {
    let row = client
        .query_one(
            "SELECT (pg_total_relation_size('interactions') + pg_total_relation_size('survey_responses'))::int8",
            &[],
        )
        .await?;
    Ok(row.get::<_, i64>(0) as u64)
}
