//! The tables a team would keep the same records in, and the SQL it would write
//! for a team scorecard (SPEC §2–§3: ticket derivation with window functions,
//! GROUP BY, `percentile_cont`). The same text runs on PostgreSQL and DuckDB.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use support_metrics::api::convert;
use support_metrics::domain::records::{Interaction, Record, SurveyResponse};
use support_metrics::domain::time::Instant;

pub const SCHEMA: &str = "
CREATE TABLE interactions (
    interaction_id text PRIMARY KEY,
    revision bigint NOT NULL,
    ticket_id text NOT NULL,
    team_id text NOT NULL,
    agent_id text,
    customer_id text,
    channel text NOT NULL,
    priority text NOT NULL,
    opened_at {ts} NOT NULL,
    first_response_at {ts},
    closed_at {ts},
    handle_us bigint,
    resolved boolean NOT NULL,
    tags text
);
CREATE TABLE survey_responses (
    response_id text PRIMARY KEY,
    revision bigint NOT NULL,
    interaction_id text NOT NULL,
    kind text NOT NULL,
    score integer NOT NULL,
    submitted_at {ts} NOT NULL
);
CREATE TABLE quality_reviews (
    review_id text PRIMARY KEY,
    revision bigint NOT NULL,
    interaction_id text NOT NULL,
    reviewer_id text NOT NULL,
    score integer NOT NULL,
    reviewed_at {ts} NOT NULL
);
CREATE TABLE customer_events (
    event_id text PRIMARY KEY,
    revision bigint NOT NULL,
    customer_id text NOT NULL,
    kind text NOT NULL,
    occurred_at {ts} NOT NULL
);
";

/// Indexes a user would add for these queries (created after a bulk load).
pub const INDEXES: &str = "
CREATE INDEX interactions_ticket ON interactions (ticket_id);
CREATE INDEX interactions_team_opened ON interactions (team_id, opened_at);
CREATE INDEX survey_responses_interaction ON survey_responses (interaction_id);
CREATE INDEX survey_responses_submitted ON survey_responses (submitted_at);
";

/// Each ticket's derived state (SPEC §2), from its interactions.
const TICKETS: &str = "
WITH ordered AS (
    SELECT ticket_id, team_id, opened_at, first_response_at, closed_at, resolved,
        row_number() OVER (PARTITION BY ticket_id ORDER BY opened_at, interaction_id) AS first_pos,
        row_number() OVER (PARTITION BY ticket_id ORDER BY opened_at DESC, interaction_id DESC) AS last_pos,
        row_number() OVER (PARTITION BY ticket_id
            ORDER BY first_response_at NULLS LAST, opened_at, interaction_id) AS response_pos
    FROM interactions
),
tickets AS (
    SELECT ticket_id,
        min(opened_at) AS created_at,
        max(team_id) FILTER (WHERE first_pos = 1) AS created_team,
        max(closed_at) FILTER (WHERE last_pos = 1 AND resolved) AS resolved_at,
        max(team_id) FILTER (WHERE last_pos = 1) AS latest_team,
        count(*) AS contacts,
        coalesce(bool_or(resolved) FILTER (WHERE last_pos > 1), false) AS reopened,
        min(first_response_at) AS first_response_at,
        max(team_id) FILTER (WHERE response_pos = 1) AS response_team
    FROM ordered
    GROUP BY ticket_id
)";

/// The team scorecard, one row. `{team}`, `{from}`, `{to}` are filled in by [`render`].
const SCORECARD: &str = "
, created AS (
    SELECT count(*) AS tickets_created,
        count(*) FILTER (WHERE resolved_at IS NOT NULL) AS created_resolved_now
    FROM tickets
    WHERE created_team = {team} AND created_at >= {from} AND created_at < {to}
), responded AS (
    SELECT count(*) AS frt_count, avg(secs)::float8 AS frt_mean,
        percentile_cont(0.5) WITHIN GROUP (ORDER BY secs)::float8 AS frt_p50,
        percentile_cont(0.9) WITHIN GROUP (ORDER BY secs)::float8 AS frt_p90,
        percentile_cont(0.99) WITHIN GROUP (ORDER BY secs)::float8 AS frt_p99
    FROM (SELECT extract(epoch FROM first_response_at - created_at)::float8 AS secs
          FROM tickets
          WHERE response_team = {team} AND first_response_at >= {from} AND first_response_at < {to}) f
), resolved AS (
    SELECT count(*) AS tickets_resolved,
        count(*) FILTER (WHERE contacts = 1) AS first_contact_resolved,
        count(*) FILTER (WHERE reopened) AS reopened,
        avg(secs)::float8 AS resolution_mean,
        percentile_cont(0.5) WITHIN GROUP (ORDER BY secs)::float8 AS resolution_p50,
        percentile_cont(0.9) WITHIN GROUP (ORDER BY secs)::float8 AS resolution_p90
    FROM (SELECT extract(epoch FROM resolved_at - created_at)::float8 AS secs, contacts, reopened
          FROM tickets
          WHERE latest_team = {team} AND resolved_at >= {from} AND resolved_at < {to}) r
), handled AS (
    SELECT count(*) AS interactions, count(handle_us) AS aht_count,
        (avg(handle_us) / 1e6)::float8 AS aht_mean,
        (percentile_cont(0.5) WITHIN GROUP (ORDER BY handle_us) / 1e6)::float8 AS aht_p50,
        (percentile_cont(0.9) WITHIN GROUP (ORDER BY handle_us) / 1e6)::float8 AS aht_p90
    FROM interactions
    WHERE team_id = {team} AND opened_at >= {from} AND opened_at < {to}
), answered AS (
    SELECT count(*) FILTER (WHERE s.kind = 'CSAT') AS csat_responses,
        count(*) FILTER (WHERE s.kind = 'CSAT' AND s.score >= 4) AS csat_satisfied,
        count(*) FILTER (WHERE s.kind = 'CES') AS ces_responses,
        count(*) FILTER (WHERE s.kind = 'NPS') AS nps_responses,
        count(*) FILTER (WHERE s.kind = 'NPS' AND s.score >= 9) AS nps_promoters,
        count(*) FILTER (WHERE s.kind = 'NPS' AND s.score <= 6) AS nps_detractors
    FROM survey_responses s JOIN interactions i ON i.interaction_id = s.interaction_id
    WHERE i.team_id = {team} AND s.submitted_at >= {from} AND s.submitted_at < {to}
)
SELECT * FROM created, responded, resolved, handled, answered";

/// The columns of the scorecard query that are counts (compared exactly).
pub const COUNT_COLUMNS: &[&str] = &[
    "tickets_created",
    "created_resolved_now",
    "frt_count",
    "tickets_resolved",
    "first_contact_resolved",
    "reopened",
    "interactions",
    "aht_count",
    "csat_responses",
    "csat_satisfied",
    "ces_responses",
    "nps_responses",
    "nps_promoters",
    "nps_detractors",
];

/// The sorted durations behind each percentile, for checking the service's
/// percentiles against exact ones (untimed).
const SORTED_FRT: &str = "
SELECT extract(epoch FROM first_response_at - created_at)::float8 AS secs FROM tickets
WHERE response_team = {team} AND first_response_at >= {from} AND first_response_at < {to}
ORDER BY secs";
const SORTED_RESOLUTION: &str = "
SELECT extract(epoch FROM resolved_at - created_at)::float8 AS secs FROM tickets
WHERE latest_team = {team} AND resolved_at >= {from} AND resolved_at < {to}
ORDER BY secs";
const SORTED_HANDLE: &str = "
SELECT (handle_us / 1e6)::float8 AS secs FROM interactions
WHERE team_id = {team} AND opened_at >= {from} AND opened_at < {to} AND handle_us IS NOT NULL
ORDER BY secs";

/// How a database spells a timestamp literal.
#[derive(Debug, Clone, Copy)]
pub enum Dialect {
    Postgres,
    DuckDb,
}

impl Dialect {
    pub fn timestamp_type(self) -> &'static str {
        match self {
            Dialect::Postgres => "timestamptz",
            // UTC instants without a zone: DuckDB's time zone support needs an extension.
            Dialect::DuckDb => "timestamp",
        }
    }

    fn literal(self, instant: Instant) -> String {
        match self {
            Dialect::Postgres => format!("'{}+00'::timestamptz", csv_time(instant)),
            Dialect::DuckDb => format!("TIMESTAMP '{}'", csv_time(instant)),
        }
    }
}

fn fill(template: &str, dialect: Dialect, team: &str, from: Instant, to: Instant) -> String {
    template
        .replace("{team}", &format!("'{team}'"))
        .replace("{from}", &dialect.literal(from))
        .replace("{to}", &dialect.literal(to))
}

pub fn schema(dialect: Dialect) -> String {
    SCHEMA.replace("{ts}", dialect.timestamp_type())
}

/// The scorecard query for a team and window.
pub fn scorecard(dialect: Dialect, team: &str, from: Instant, to: Instant) -> String {
    fill(&format!("{TICKETS}{SCORECARD}"), dialect, team, from, to)
}

/// The three sorted-duration queries: first response, resolution, handle time.
pub fn sorted_durations(team: &str, from: Instant, to: Instant) -> [String; 3] {
    [SORTED_FRT, SORTED_RESOLUTION, SORTED_HANDLE].map(|query| {
        fill(
            &format!("{TICKETS}{query}"),
            Dialect::Postgres,
            team,
            from,
            to,
        )
    })
}

/// `YYYY-MM-DD HH:MM:SS.ffffff`, UTC.
pub fn csv_time(instant: Instant) -> String {
    let seconds = instant.0.div_euclid(1_000_000_000);
    let micros = instant.0.rem_euclid(1_000_000_000) / 1_000;
    let time = chrono::DateTime::from_timestamp(seconds, 0).expect("in range");
    format!("{}.{micros:06}", time.format("%Y-%m-%d %H:%M:%S"))
}

/// The latest revision of every interaction and survey response: what the
/// tables hold after the whole stream has been upserted.
pub fn final_state(records: &[Record]) -> (Vec<&Interaction>, Vec<&SurveyResponse>) {
    let mut interactions: HashMap<&str, &Interaction> = HashMap::new();
    let mut surveys: HashMap<&str, &SurveyResponse> = HashMap::new();
    for record in records {
        match record {
            Record::Interaction(i) => {
                let slot = interactions.entry(i.interaction_id.as_str()).or_insert(i);
                if i.revision > slot.revision {
                    *slot = i;
                }
            }
            Record::SurveyResponse(s) => {
                let slot = surveys.entry(s.response_id.as_str()).or_insert(s);
                if s.revision > slot.revision {
                    *slot = s;
                }
            }
            _ => {}
        }
    }
    let mut interactions: Vec<_> = interactions.into_values().collect();
    interactions.sort_by(|a, b| a.interaction_id.cmp(&b.interaction_id));
    let mut surveys: Vec<_> = surveys.into_values().collect();
    surveys.sort_by(|a, b| a.response_id.cmp(&b.response_id));
    (interactions, surveys)
}

fn optional_time(instant: Option<Instant>) -> String {
    instant.map(csv_time).unwrap_or_default()
}

/// Writes the final state as two CSV files (no header; empty = NULL).
pub fn write_csv(
    records: &[Record],
    interactions_csv: &Path,
    surveys_csv: &Path,
) -> std::io::Result<()> {
    let (interactions, surveys) = final_state(records);
    let mut out = BufWriter::new(File::create(interactions_csv)?);
    for i in interactions {
        writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            i.interaction_id,
            i.revision,
            i.ticket_id,
            i.team_id,
            i.agent_id.as_ref().map(|a| a.as_str()).unwrap_or(""),
            i.customer_id.as_ref().map(|c| c.as_str()).unwrap_or(""),
            convert::channel(i.channel).as_str_name(),
            convert::priority(i.priority).as_str_name(),
            csv_time(i.opened_at),
            optional_time(i.first_response_at),
            optional_time(i.closed_at),
            i.handle_time_nanos
                .map(|n| (n / 1_000).to_string())
                .unwrap_or_default(),
            i.resolved,
            i.tags.join("|"),
        )?;
    }
    out.flush()?;
    let mut out = BufWriter::new(File::create(surveys_csv)?);
    for s in surveys {
        writeln!(
            out,
            "{},{},{},{},{},{}",
            s.response_id,
            s.revision,
            s.interaction_id,
            s.kind.name(),
            s.score,
            csv_time(s.submitted_at),
        )?;
    }
    out.flush()
}
