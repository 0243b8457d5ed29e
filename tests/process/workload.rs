//! Concurrent writers that remember what they sent and what was acknowledged,
//! and the check that every acknowledged write survived.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prost_types::{Duration as ProtoDuration, Timestamp};
use support_metrics::proto::v1 as pb;
use tonic::{Code, Status};

use crate::server::{stats, verify, Server};

/// xorshift64*: deterministic from a printed seed, no extra crate.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The seed from `CRASH_SEED`, else from the clock; printed so a failure can be replayed.
pub fn seed() -> u64 {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("seed: {seed} (replay with CRASH_SEED={seed})");
    seed
}

/// A record's identity: its kind and id.
fn key(record: &pb::Record) -> String {
    use pb::record::Record as R;
    match &record.record {
        Some(R::Interaction(i)) => format!("interaction {}", i.interaction_id),
        Some(R::SurveyResponse(s)) => format!("survey {}", s.response_id),
        Some(R::QualityReview(r)) => format!("review {}", r.review_id),
        Some(R::CustomerEvent(e)) => format!("event {}", e.event_id),
        None => String::new(),
    }
}

fn revision(record: &pb::Record) -> u64 {
    use pb::record::Record as R;
    match &record.record {
        Some(R::Interaction(i)) => i.revision,
        Some(R::SurveyResponse(s)) => s.revision,
        Some(R::QualityReview(r)) => r.revision,
        Some(R::CustomerEvent(e)) => e.revision,
        None => 0,
    }
}

/// What was sent and what was acknowledged, across every restart.
#[derive(Debug, Default)]
pub struct Ledger {
    /// The highest revision ever sent, per record.
    attempted: HashMap<String, u64>,
    /// The highest acknowledged revision, with the exact record, per record.
    acknowledged: HashMap<String, pb::Record>,
    /// The kill cycle in which each record was last acknowledged.
    acknowledged_in: HashMap<String, usize>,
    /// Each writer's interactions, which only that writer revises.
    interactions_of: HashMap<usize, Vec<pb::Interaction>>,
    /// Acknowledged write answers (an item of a batch counts as one).
    pub acknowledgements: u64,
}

impl Ledger {
    fn attempt(&mut self, record: &pb::Record) {
        let highest = self.attempted.entry(key(record)).or_default();
        *highest = (*highest).max(revision(record));
    }

    fn acknowledge(&mut self, record: &pb::Record, outcome: pb::Outcome, cycle: usize) {
        self.acknowledgements += 1;
        if outcome == pb::Outcome::Stale {
            return; // a later revision is stored; it was acknowledged on its own
        }
        let key = key(record);
        let newer = self
            .acknowledged
            .get(&key)
            .is_none_or(|known| revision(known) < revision(record));
        if newer {
            self.acknowledged_in.insert(key.clone(), cycle);
            self.acknowledged.insert(key, record.clone());
        }
    }

    fn count(map_keys: impl Iterator<Item = String>, prefix: &str) -> u64 {
        map_keys.filter(|k| k.starts_with(prefix)).count() as u64
    }
}

/// One writer's loop: random single writes, revisions of its own earlier
/// interactions, surveys (some before their interaction) and mixed batches,
/// until the server stops answering. Returns the code that stopped it.
pub async fn write_until_error(
    server_port: u16,
    writer: usize,
    cycle: usize,
    seed: u64,
    ledger: Arc<Mutex<Ledger>>,
) -> Status {
    let Ok(channel) = crate::server::connect(server_port).await else {
        return Status::unavailable("could not connect");
    };
    let mut client = pb::ingest_service_client::IngestServiceClient::new(channel);
    let mut rng = Rng::new(seed ^ ((writer as u64 + 1) << 32) ^ cycle as u64);
    let prefix = format!("c{cycle}-w{writer}");
    for step in 0u64.. {
        let records = {
            let mut ledger = ledger.lock().unwrap();
            next_records(&mut rng, &mut ledger, writer, &prefix, step)
        };
        let answer = client
            .record_batch(pb::RecordBatchRequest {
                records: records.clone(),
            })
            .await;
        match answer {
            Ok(response) => {
                let results = response.into_inner().results;
                let mut ledger = ledger.lock().unwrap();
                for (record, result) in records.iter().zip(results) {
                    match result.result {
                        Some(pb::item_result::Result::Outcome(outcome)) => {
                            let outcome = pb::Outcome::try_from(outcome).expect("an outcome");
                            ledger.acknowledge(record, outcome, cycle);
                        }
                        other => panic!("{}: unexpected item result {other:?}", key(record)),
                    }
                }
            }
            Err(status) => return status,
        }
    }
    Status::ok("")
}

fn at(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

const MARCH_2026: i64 = 1_772_323_200;

fn new_interaction(rng: &mut Rng, id: String, ticket: String) -> pb::Interaction {
    let opened = MARCH_2026 + rng.below(28 * 86_400) as i64;
    pb::Interaction {
        interaction_id: id,
        revision: 1,
        ticket_id: ticket,
        team_id: format!("team-{}", rng.below(3)),
        agent_id: format!("agent-{}", rng.below(5)),
        customer_id: format!("customer-{}", rng.below(30)),
        channel: 1 + rng.below(3) as i32,
        priority: 1 + rng.below(4) as i32,
        opened_at: at(opened),
        first_response_at: at(opened + rng.below(3_600) as i64),
        closed_at: at(opened + 3_600 + rng.below(86_400) as i64),
        handle_time: Some(ProtoDuration {
            seconds: 60 + rng.below(1_800) as i64,
            nanos: 0,
        }),
        resolved: rng.below(3) > 0,
        tags: vec![],
        social: None,
    }
}

fn record(interaction: pb::Interaction) -> pb::Record {
    pb::Record {
        record: Some(pb::record::Record::Interaction(interaction)),
    }
}

fn survey(rng: &mut Rng, id: String, interaction_id: String) -> pb::Record {
    pb::Record {
        record: Some(pb::record::Record::SurveyResponse(pb::SurveyResponse {
            response_id: id,
            revision: 1,
            interaction_id,
            kind: pb::SurveyKind::Csat as i32,
            score: 1 + rng.below(5) as u32,
            submitted_at: at(MARCH_2026 + 29 * 86_400),
            comment: String::new(),
        })),
    }
}

/// The next request's records: one, or a batch of up to 20, each noted as
/// attempted.
fn next_records(
    rng: &mut Rng,
    ledger: &mut Ledger,
    writer: usize,
    prefix: &str,
    step: u64,
) -> Vec<pb::Record> {
    let count = if rng.below(4) == 0 {
        2 + rng.below(19)
    } else {
        1
    };
    let mut records = Vec::new();
    for part in 0..count {
        let n = step * 100 + part;
        let choice = rng.below(100);
        let own_count = ledger.interactions_of.get(&writer).map_or(0, Vec::len);
        if choice < 15 && own_count > 0 {
            // A revision of one of this writer's interactions, sometimes moved to
            // another team. A revision is never reused with other content.
            let index = rng.below(own_count as u64) as usize;
            let mut revised = ledger.interactions_of[&writer][index].clone();
            let key = format!("interaction {}", revised.interaction_id);
            revised.revision = ledger.attempted.get(&key).copied().unwrap_or(0) + 1;
            revised.resolved = !revised.resolved;
            revised.team_id = format!("team-{}", rng.below(3));
            ledger.interactions_of.get_mut(&writer).unwrap()[index] = revised.clone();
            records.push(record(revised));
        } else if choice < 35 {
            // A survey, now and then for an interaction not sent yet.
            let target = if rng.below(4) == 0 {
                format!("{prefix}-i{}", n + 300)
            } else {
                format!("{prefix}-i{}", n.saturating_sub(rng.below(400)))
            };
            records.push(survey(rng, format!("{prefix}-s{n}"), target));
        } else {
            let interaction = new_interaction(
                rng,
                format!("{prefix}-i{n}"),
                format!("{prefix}-T{}", n / 300),
            );
            ledger
                .interactions_of
                .entry(writer)
                .or_default()
                .push(interaction.clone());
            records.push(record(interaction));
        }
        // Noted at once, so a revision later in the same batch counts from it.
        ledger.attempt(records.last().expect("a record per part"));
    }
    records
}

/// What the check after a restart found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Acknowledged writes that are gone, with what the re-send answered.
    pub lost: Vec<String>,
    pub mismatches: u64,
    pub problems: Vec<String>,
}

/// Up to this many acknowledged records, every check re-sends them all.
const FULL_CHECK_LIMIT: usize = 20_000;
/// Beyond it, a check re-sends those of the last two cycles and this many others.
const SAMPLE_OF_OLDER: usize = 2_000;

/// After a restart: counts within bounds, every acknowledged write still there
/// (a re-send must be a DUPLICATE, or STALE when a later revision was sent),
/// and the aggregates consistent with the raw records. In long runs only the
/// last `full` check re-sends everything; the others re-send what the last two
/// cycles acknowledged and a random sample of the rest, so a cycle's cost stays
/// bounded.
pub async fn check(
    server: &Server,
    ledger: &Mutex<Ledger>,
    cycle: usize,
    full: bool,
    rng: &mut Rng,
) -> Findings {
    let mut findings = Findings::default();
    let (acknowledged, attempted, to_resend) = {
        let ledger = ledger.lock().unwrap();
        let everything = full || ledger.acknowledged.len() <= FULL_CHECK_LIMIT;
        let total = ledger.acknowledged.len() as u64;
        let to_resend: Vec<pb::Record> = ledger
            .acknowledged
            .iter()
            .filter(|(key, _)| {
                let recent = ledger.acknowledged_in[*key] + 1 >= cycle;
                everything || recent || rng.below(total) < SAMPLE_OF_OLDER as u64
            })
            .map(|(_, record)| record.clone())
            .collect();
        (
            ledger.acknowledged.clone(),
            ledger.attempted.clone(),
            to_resend,
        )
    };
    let stats = stats(server).await;
    for (prefix, stored) in [
        ("interaction ", stats.interactions),
        ("survey ", stats.survey_responses),
    ] {
        let low = Ledger::count(acknowledged.keys().cloned(), prefix);
        let high = Ledger::count(attempted.keys().cloned(), prefix);
        if !(low..=high).contains(&stored) {
            findings.problems.push(format!(
                "{prefix}count {stored} outside [{low} acknowledged, {high} attempted]"
            ));
        }
    }
    let verify = verify(server).await;
    findings.mismatches = verify.mismatch_count;
    if verify.mismatch_count > 0 {
        findings
            .problems
            .push(format!("aggregate mismatches: {:?}", verify.mismatches));
    }
    let mut client = server.ingest().await;
    for chunk in to_resend.chunks(500) {
        let results = client
            .record_batch(pb::RecordBatchRequest {
                records: chunk.to_vec(),
            })
            .await
            .expect("re-send")
            .into_inner()
            .results;
        for (record, result) in chunk.iter().zip(results) {
            let key = key(record);
            let later_sent = attempted.get(&key).copied().unwrap_or(0) > revision(record);
            let fine = match &result.result {
                Some(pb::item_result::Result::Outcome(o)) => {
                    *o == pb::Outcome::Duplicate as i32
                        || (*o == pb::Outcome::Stale as i32 && later_sent)
                }
                _ => false,
            };
            if !fine {
                findings.lost.push(format!(
                    "{key} revision {}: re-send answered {:?}",
                    revision(record),
                    result.result
                ));
            }
        }
    }
    findings
}

/// What a writer may see when the server goes away under it: a status the
/// client makes of the lost connection. That includes INTERNAL from the
/// client's reading of an HTTP/2 error (tonic maps a stream caught by the
/// server's GOAWAY with NO_ERROR, the graceful shutdown, to INTERNAL, as
/// grpc-java once did: grpc/grpc-java#1355), never an INTERNAL the server
/// sent.
pub fn is_disconnect(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::Unknown | Code::Cancelled => true,
        Code::Internal => status.message().starts_with("h2 protocol error"),
        _ => false,
    }
}
