//! Reads that serve scorecards: windows merged from precomputed buckets, scope
//! listings, the open-ticket index, targets and counters. None scans raw records.

use std::sync::Arc;

use crate::domain::aggregate::{Aggregate, AggregateSum, Scope, ScopeKind};
use crate::domain::records::Id;
use crate::domain::scorecard::{OpenTicket, Targets};
use crate::domain::ticket::TicketRow;
use crate::domain::time::{decompose, BucketRun, Level, Window, NANOS_PER_SECOND};
use crate::error::{Error, Result};

use super::buckets::{self, HourParts};
use super::codec::{decode, decode_seed};
use super::keys;
use super::kv::KvStore;
use super::listings;
use super::txn::Reader;
use super::writes::Counters;

/// The sum of some scopes' buckets over a window (a selection's members,
/// say): the window is cut into runs of buckets to add and to take away
/// ([`decompose`]), each one range read (of the hours' parts, for quarters;
/// two, for days and months: the buckets and the changes pending
/// beside them), all of one state of the store
/// ([`KvStore::read_consistently`]).
pub fn window_aggregate(kv: &dyn KvStore, scopes: &[Scope], window: Window) -> Result<Aggregate> {
    let runs = decompose(window);
    let mut total = Aggregate::default();
    kv.read_consistently(&mut || {
        let mut sum = AggregateSum::default();
        for scope in scopes {
            add_runs(kv, scope, &runs, &mut sum)?;
        }
        total = sum.finish();
        Ok(())
    })?;
    Ok(total)
}

fn add_runs(
    kv: &dyn KvStore,
    scope: &Scope,
    runs: &[BucketRun],
    total: &mut AggregateSum,
) -> Result<()> {
    for run in runs {
        if run.level == Level::Quarter {
            let scope_bytes = keys::scope_bytes(scope);
            let start = buckets::hour_parts_from(&scope_bytes, run.start);
            let end = buckets::hour_parts_from(&scope_bytes, run.end + 3599);
            for entry in kv.range(&start, &end) {
                let (key, value) = entry?;
                let hour = buckets::hour_of(&key).ok_or_else(|| {
                    Error::DataLoss(format!("bad hour parts key {}", keys::describe_key(&key)))
                })?;
                let parts: HourParts = decode(&key, &value)?;
                for aggregate in parts.within(hour, run.start, run.end) {
                    total.add(aggregate, run.sign);
                }
            }
            continue;
        }
        // The buckets, then the changes pending beside them (see `buckets`).
        let start = keys::aggregate(run.level, scope, run.start);
        let end = keys::aggregate(run.level, scope, run.end);
        let pending = keys::pending_changes_of(&start).zip(keys::pending_changes_of(&end));
        for (start, end) in std::iter::once((start, end)).chain(pending) {
            for entry in kv.range(&start, &end) {
                let (key, value) = entry?;
                decode_seed(&key, &value, total.add_stored(run.sign))?;
            }
        }
    }
    Ok(())
}

/// Every scope of a kind that has ever had a fact, in key order.
pub fn list_scopes(kv: &dyn KvStore, kind: ScopeKind) -> Result<Vec<Scope>> {
    let prefix = keys::registry_prefix(kind);
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

/// Whether any stored fact counts in `scope`: it has a registry entry (which
/// goes once its count of facts is zero, so a scope whose last fact was
/// retracted is unknown again). One point read.
pub fn scope_known(kv: &dyn KvStore, scope: &Scope) -> Result<bool> {
    Ok(kv.get(&keys::registered_scope(scope))?.is_some())
}

/// The tags a team has ever had a fact under, in key order.
pub fn team_tags(kv: &dyn KvStore, team: &Id) -> Result<Vec<String>> {
    KvStore::scan_prefix(kv, &keys::team_tags_registry_prefix(team))
        .map(|entry| {
            let (key, _) = entry?;
            match keys::scope_from_bytes(&key[2..]) {
                Some((Scope::TeamTag(_, tag), _)) => Ok(tag),
                _ => Err(Error::DataLoss(format!(
                    "bad aggregate key {}",
                    keys::describe_key(&key)
                ))),
            }
        })
        .collect()
}

/// Open tickets of a scope, from the open-ticket index (held in memory, and
/// kept decoded between the commits that change it).
pub fn open_tickets(kv: &dyn KvStore, scope: &Scope) -> Result<Arc<[OpenTicket]>> {
    kv.open_tickets(scope)
}

/// Where a drill-down page ends: the position of the last row examined.
pub type RowPosition = Vec<u8>;

/// What one page of ticket rows asks for.
#[derive(Debug)]
pub struct RowPage<'a> {
    /// Rows listed under any of these scopes (a ticket in several, once).
    pub scopes: &'a [Scope],
    /// Created in this window.
    pub window: Window,
    /// Continue after this position.
    pub after: Option<&'a [u8]>,
    /// Keep at most this many rows...
    pub page_size: usize,
    /// ...and examine at most this many.
    pub budget: usize,
}

/// One page of ticket rows, newest first, that `keep` accepts, and the position
/// to continue from when rows may remain. The cost is bounded by `budget`
/// whatever the store holds: a selective filter may yield a short page.
pub fn ticket_rows(
    kv: &dyn KvStore,
    page: &RowPage<'_>,
    keep: impl Fn(&TicketRow) -> bool,
) -> Result<(Vec<TicketRow>, Option<RowPosition>)> {
    let newest = keys::newest_first(page.window.to() * NANOS_PER_SECOND - 1).to_vec();
    let start = match page.after {
        Some(after) if after >= newest.as_slice() => [after, &[0]].concat(),
        _ => newest,
    };
    let end = keys::newest_first(page.window.from() * NANOS_PER_SECOND - 1);
    let mut lists: Vec<_> = page
        .scopes
        .iter()
        .map(|scope| listings::positions(kv, scope, start.clone(), end.to_vec()).peekable())
        .collect();
    let mut rows = Vec::new();
    let mut examined = 0;
    let mut last_examined: Option<RowPosition> = None;
    loop {
        // The smallest position at the head of any list (errors first).
        let mut next: Option<RowPosition> = None;
        for list in &mut lists {
            match list.peek() {
                Some(Err(_)) => {
                    if let Some(Err(error)) = list.next() {
                        return Err(error);
                    }
                }
                Some(Ok(position)) if next.as_ref().is_none_or(|n| position < n) => {
                    next = Some(position.clone());
                }
                Some(Ok(_)) => {}
                None => {}
            }
        }
        let Some(position) = next else {
            return Ok((rows, None));
        };
        if rows.len() >= page.page_size || examined >= page.budget {
            // More rows remain: continue after the last one examined.
            return Ok((rows, last_examined));
        }
        for list in &mut lists {
            if matches!(list.peek(), Some(Ok(p)) if *p == position) {
                list.next();
            }
        }
        let ticket = keys::ticket_of_position(&position).ok_or_else(|| {
            Error::DataLoss(format!(
                "bad ticket listing {}",
                keys::describe_key(&position)
            ))
        })?;
        let row: TicketRow = kv
            .get_decoded(&keys::ticket_row(&ticket))?
            .ok_or_else(|| Error::DataLoss(format!("ticket {ticket} is listed but has no row")))?;
        examined += 1;
        last_examined = Some(position);
        if keep(&row) {
            rows.push(row);
        }
    }
}

/// The targets of a team, or of the organisation default.
pub fn targets(kv: &dyn KvStore, team: Option<&Id>) -> Result<Targets> {
    Ok(kv.get_decoded(&keys::targets(team))?.unwrap_or_default())
}

/// The record counters.
pub fn counters(kv: &dyn KvStore) -> Result<Counters> {
    Ok(kv.get_decoded(&keys::stats())?.unwrap_or_default())
}
