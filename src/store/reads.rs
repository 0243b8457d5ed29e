//! Reads that serve scorecards: windows merged from precomputed buckets, scope
//! listings, the open-ticket index, targets and counters. None scans raw records.

use crate::domain::aggregate::{Aggregate, Scope, ScopeKind};
use crate::domain::records::{Id, Priority};
use crate::domain::scorecard::Targets;
use crate::domain::time::{decompose, Instant, Window};
use crate::error::{Error, Result};

use super::codec::decode;
use super::groups::decode_open_ticket;
use super::keys;
use super::kv::KvStore;
use super::txn::Reader;
use super::writes::Counters;

/// The sum of a scope's buckets over a window: the window is cut into the coarsest
/// aligned buckets and each run of equal buckets is one range read.
pub fn window_aggregate(kv: &dyn KvStore, scope: &Scope, window: Window) -> Result<Aggregate> {
    let mut total = Aggregate::default();
    for run in decompose(window) {
        let start = keys::aggregate(run.level, scope, run.start);
        let end = keys::aggregate(run.level, scope, run.end);
        for entry in kv.range(&start, &end) {
            let (key, value) = entry?;
            total.merge(&decode::<Aggregate>(&key, &value)?, 1);
        }
    }
    Ok(total)
}

/// Every scope of a kind that has ever had a fact, in key order.
pub fn list_scopes(kv: &dyn KvStore, kind: ScopeKind) -> Result<Vec<Scope>> {
    let prefix = keys::totals_prefix(kind);
    KvStore::scan_prefix(kv, &prefix)
        .map(|entry| {
            let (key, _) = entry?;
            keys::scope_from_bytes(&key[2..])
                .map(|(scope, _)| scope)
                .ok_or_else(|| {
                    Error::DataLoss(format!("bad aggregate key {}", keys::describe_key(&key)))
                })
        })
        .collect()
}

/// Open tickets of a scope as (created_at, priority), from the open-ticket index.
pub fn open_tickets(kv: &dyn KvStore, scope: &Scope) -> Result<Vec<(Instant, Priority)>> {
    KvStore::scan_prefix(kv, &keys::open_ticket_prefix(scope))
        .map(|entry| {
            let (key, value) = entry?;
            decode_open_ticket(&key, &value)
        })
        .collect()
}

/// The targets of a team, or of the organisation default.
pub fn targets(kv: &dyn KvStore, team: Option<&Id>) -> Result<Targets> {
    Ok(kv.get_decoded(&keys::targets(team))?.unwrap_or_default())
}

/// The record counters.
pub fn counters(kv: &dyn KvStore) -> Result<Counters> {
    Ok(kv.get_decoded(&keys::stats())?.unwrap_or_default())
}
