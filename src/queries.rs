//! The read use-cases behind the scorecard service: merge precomputed buckets,
//! compute metrics, judge targets. Synchronous (sled): call from a blocking task.

use std::cmp::Ordering;

use chrono_tz::Tz;

use crate::domain::aggregate::{Aggregate, Scope, ScopeKind, Selection};
use crate::domain::drilldown::TicketFilter;
use crate::domain::records::Id;
use crate::domain::scorecard::{
    evaluate_targets, percent, BacklogSummary, Metric, Metrics, TargetResult,
};
use crate::domain::ticket::TicketRow;
use crate::domain::time::{periods, Granularity, Instant, Window};
use crate::error::{shown, Error, Result};
use crate::store::{reads, KvStore};

/// A scorecard of one scope over one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Scorecard {
    pub scope: Selection,
    pub window: Window,
    pub metrics: Metrics,
    pub backlog: BacklogSummary,
    pub targets: Vec<TargetResult>,
    pub previous: Option<(Window, Metrics)>,
    pub organization: Option<Metrics>,
}

/// What a scorecard request asks for.
#[derive(Debug, Clone)]
pub struct ScorecardQuery {
    pub scope: Selection,
    pub window: Window,
    pub compare_previous: bool,
    pub include_organization: bool,
    pub backlog_as_of: Instant,
    /// Targets of metrics computed from fewer items read INSUFFICIENT_DATA.
    pub min_sample: u64,
}

/// `NOT_FOUND` naming every team, agent, channel and tag of the selection that
/// no stored fact counts in (a typo such as `biling` must not read as "no
/// activity"). A composite scope (team × channel, team × tag, a union) is
/// checked part by part: a known team on a known channel is known even if the
/// two never met. One point read per part.
pub fn require_known(kv: &dyn KvStore, selection: &Selection) -> Result<()> {
    let mut unknown = Vec::new();
    for part in named_parts(selection) {
        if !reads::scope_known(kv, &part)? {
            unknown.push(describe_part(&part));
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(Error::NotFound(format!(
            "no stored record names {}",
            unknown.join(", ")
        )))
    }
}

/// The single-kind scopes (team, agent, channel, tag) a selection is made of.
fn named_parts(selection: &Selection) -> Vec<Scope> {
    match selection {
        Selection::One(scope) => match scope {
            Scope::Organization => vec![],
            Scope::Team(_) | Scope::Agent(_) | Scope::Channel(_) | Scope::Tag(_) => {
                vec![scope.clone()]
            }
            Scope::TeamChannel(team, channel) => {
                vec![Scope::Team(team.clone()), Scope::Channel(*channel)]
            }
            Scope::TeamTag(team, tag) => vec![Scope::Team(team.clone()), Scope::Tag(tag.clone())],
        },
        Selection::Teams { teams, channel } => teams
            .iter()
            .map(|team| Scope::Team(team.clone()))
            .chain(channel.map(Scope::Channel))
            .collect(),
    }
}

fn describe_part(part: &Scope) -> String {
    match part {
        Scope::Team(team) => format!("team {}", shown(team.as_str())),
        Scope::Agent(agent) => format!("agent {}", shown(agent.as_str())),
        Scope::Channel(channel) => format!("channel {}", format!("{channel:?}").to_uppercase()),
        Scope::Tag(tag) => format!("tag {}", shown(tag)),
        Scope::Organization | Scope::TeamChannel(..) | Scope::TeamTag(..) => format!("{part:?}"),
    }
}

/// The metrics of a selection over a window: its members' buckets merged.
pub fn metrics(kv: &dyn KvStore, selection: &Selection, window: Window) -> Result<Metrics> {
    let total = reads::window_aggregate(kv, &selection.members(), window)?;
    Ok(Metrics::from_aggregate(&total))
}

/// The open tickets of a selection's members, summarised at `as_of`.
pub fn backlog(kv: &dyn KvStore, selection: &Selection, as_of: Instant) -> Result<BacklogSummary> {
    let lists = selection
        .members()
        .iter()
        .map(|scope| reads::open_tickets(kv, scope))
        .collect::<Result<Vec<_>>>()?;
    Ok(BacklogSummary::summarize(
        as_of,
        lists.iter().flat_map(|open| open.iter().copied()),
    ))
}

pub fn scorecard(kv: &dyn KvStore, query: &ScorecardQuery) -> Result<Scorecard> {
    let metrics = metrics(kv, &query.scope, query.window)?;
    let organization_default = reads::targets(kv, None)?;
    let team_targets = match query.scope.team() {
        Some(team) => reads::targets(kv, Some(team))?,
        None => Default::default(),
    };
    let previous = if query.compare_previous {
        let window = query.window.previous();
        Some((window, self::metrics(kv, &query.scope, window)?))
    } else {
        None
    };
    let organization = if query.include_organization {
        Some(self::metrics(
            kv,
            &Selection::one(Scope::Organization),
            query.window,
        )?)
    } else {
        None
    };
    Ok(Scorecard {
        targets: evaluate_targets(
            &metrics,
            &team_targets,
            &organization_default,
            query.min_sample,
        ),
        backlog: backlog(kv, &query.scope, query.backlog_as_of)?,
        scope: query.scope.clone(),
        window: query.window,
        metrics,
        previous,
        organization,
    })
}

/// Leaderboard rows: every scope of a kind with activity in the window.
#[derive(Debug, Clone)]
pub struct LeaderboardQuery {
    pub kind: ScopeKind,
    pub window: Window,
    pub order_by: Metric,
    pub ascending: bool,
    pub offset: usize,
    pub page_size: usize,
    /// Leave out scopes whose `order_by` is computed from fewer items.
    pub min_sample: u64,
    /// Order by the interval's lower bound (descending) or upper bound
    /// (ascending) instead of the value.
    pub by_confidence_bound: bool,
}

/// One page of a leaderboard.
#[derive(Debug, Clone)]
pub struct LeaderboardPage {
    pub rows: Vec<(Scope, Metrics)>,
    /// The offset of the next page, if any.
    pub next_offset: Option<usize>,
}

/// One page of a leaderboard: scopes with activity in the window, ordered.
pub fn leaderboard(kv: &dyn KvStore, query: &LeaderboardQuery) -> Result<LeaderboardPage> {
    let mut rows = Vec::new();
    for scope in reads::list_scopes(kv, query.kind)? {
        let aggregate = reads::window_aggregate(kv, std::slice::from_ref(&scope), query.window)?;
        if aggregate.is_zero() {
            continue;
        }
        let metrics = Metrics::from_aggregate(&aggregate);
        if metrics.sample_size(query.order_by) >= query.min_sample {
            rows.push((scope, metrics));
        }
    }
    let key = |metrics: &Metrics| {
        if !query.by_confidence_bound {
            return metrics.value(query.order_by);
        }
        let (lower, upper) = metrics.interval(query.order_by)?;
        Some(if query.ascending { upper } else { lower })
    };
    // Scopes without a value come last whatever the direction; ties keep scope order.
    rows.sort_by(|(a_scope, a), (b_scope, b)| {
        let by_value = match (key(a), key(b)) {
            (Some(x), Some(y)) => {
                let ordering = x.partial_cmp(&y).unwrap_or(Ordering::Equal);
                if query.ascending {
                    ordering
                } else {
                    ordering.reverse()
                }
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        by_value.then_with(|| a_scope.cmp(b_scope))
    });
    let end = query.offset.saturating_add(query.page_size).min(rows.len());
    let next = (end < rows.len()).then_some(end);
    let rows = rows
        .into_iter()
        .skip(query.offset)
        .take(end.saturating_sub(query.offset))
        .collect();
    Ok(LeaderboardPage {
        rows,
        next_offset: next,
    })
}

/// One period of a time series.
pub fn time_series(
    kv: &dyn KvStore,
    scope: &Selection,
    window: Window,
    granularity: Granularity,
    zone: Tz,
) -> Result<Vec<(Window, Metrics)>> {
    periods(window, granularity, zone)
        .map_err(|e| Error::invalid("window", e.to_string()))?
        .into_iter()
        .map(|period| Ok((period, metrics(kv, scope, period)?)))
        .collect()
}

/// Ticket rows examined for one drill-down page at most: a page costs this much
/// whatever the store holds, and may come back short (with a token) when the
/// filter is selective.
pub const TICKET_SCAN_BUDGET: usize = 10_000;

/// A drill-down request.
#[derive(Debug, Clone)]
pub struct TicketQuery {
    pub scope: Selection,
    /// Tickets created in this window.
    pub window: Window,
    pub filter: TicketFilter,
    /// The moment ages are measured from.
    pub as_of: Instant,
    /// Continue after this position (from a previous page).
    pub after: Option<Vec<u8>>,
    pub page_size: usize,
}

/// One page of tickets, newest first, and where the next begins.
#[derive(Debug, Clone)]
pub struct TicketPage {
    pub rows: Vec<TicketRow>,
    pub next: Option<Vec<u8>>,
}

/// The tickets behind a number: those listed under the selection's scopes,
/// created in the window, that pass the filter.
pub fn list_tickets(kv: &dyn KvStore, query: &TicketQuery) -> Result<TicketPage> {
    let scopes = query.scope.members();
    let page = reads::RowPage {
        scopes: &scopes,
        window: query.window,
        after: query.after.as_deref(),
        page_size: query.page_size,
        budget: TICKET_SCAN_BUDGET,
    };
    let (rows, next) = reads::ticket_rows(kv, &page, |row| query.filter.matches(row, query.as_of))?;
    Ok(TicketPage { rows, next })
}

/// One tag among a scope's tickets.
#[derive(Debug, Clone, PartialEq)]
pub struct Driver {
    pub tag: String,
    pub metrics: Metrics,
    /// The tag's tickets created / the scope's, in percent.
    pub share_of_tickets_percent: Option<f64>,
    /// The tag's CSAT answers of 1-3 / the scope's, in percent.
    pub share_of_unsatisfied_csat_percent: Option<f64>,
    /// The tag's NPS detractors / the scope's, in percent.
    pub share_of_detractors_percent: Option<f64>,
}

/// The drivers of a scope: per tag, its metrics and its share of the scope's
/// tickets, unsatisfied CSAT answers and detractors.
#[derive(Debug, Clone, PartialEq)]
pub struct Drivers {
    /// The most ticketed tags first (ties by tag), at most the limit asked for.
    pub drivers: Vec<Driver>,
    /// The scope's own totals the shares are of.
    pub tickets_created: u64,
    pub unsatisfied_csat_answers: u64,
    pub detractors: u64,
}

fn unsatisfied_csat(aggregate: &Aggregate) -> u64 {
    aggregate.csat[..3]
        .iter()
        .map(|&c| u64::try_from(c).unwrap_or(0))
        .sum()
}

fn detractors(aggregate: &Aggregate) -> u64 {
    aggregate.nps[..7]
        .iter()
        .map(|&c| u64::try_from(c).unwrap_or(0))
        .sum()
}

/// Drivers of the organisation, a team or a union of teams over a window, from
/// the precomputed organisation × tag and team × tag buckets.
pub fn drivers(
    kv: &dyn KvStore,
    selection: &Selection,
    window: Window,
    limit: usize,
) -> Result<Drivers> {
    // Each member of the selection and how to name its scope for a tag.
    let members: Vec<Option<Id>> = match selection {
        Selection::One(Scope::Organization) => vec![None],
        Selection::One(Scope::Team(team)) => vec![Some(team.clone())],
        Selection::Teams {
            teams,
            channel: None,
        } => teams.iter().cloned().map(Some).collect(),
        _ => {
            return Err(Error::invalid(
                "scope",
                "drivers are kept for the organisation, a team or a union of teams",
            ))
        }
    };
    // Each tag and the scopes that have ever had it: only those are read.
    let mut tags: std::collections::BTreeMap<String, Vec<Scope>> = Default::default();
    for member in &members {
        match member {
            None => {
                for scope in reads::list_scopes(kv, ScopeKind::Tag)? {
                    if let Scope::Tag(tag) = &scope {
                        tags.entry(tag.clone()).or_default().push(scope.clone());
                    }
                }
            }
            Some(team) => {
                for tag in reads::team_tags(kv, team)? {
                    let scope = Scope::TeamTag(team.clone(), tag.clone());
                    tags.entry(tag).or_default().push(scope);
                }
            }
        }
    }
    let total = reads::window_aggregate(kv, &selection.members(), window)?;
    let tickets_created = u64::try_from(total.tickets_created).unwrap_or(0);
    let total_unsatisfied = unsatisfied_csat(&total);
    let total_detractors = detractors(&total);
    let mut drivers = Vec::new();
    for (tag, scopes) in tags {
        let aggregate = reads::window_aggregate(kv, &scopes, window)?;
        if aggregate.is_zero() {
            continue;
        }
        let metrics = Metrics::from_aggregate(&aggregate);
        drivers.push(Driver {
            share_of_tickets_percent: percent(metrics.tickets_created, tickets_created),
            share_of_unsatisfied_csat_percent: percent(
                unsatisfied_csat(&aggregate),
                total_unsatisfied,
            ),
            share_of_detractors_percent: percent(detractors(&aggregate), total_detractors),
            tag,
            metrics,
        });
    }
    drivers.sort_by(|a, b| {
        b.metrics
            .tickets_created
            .cmp(&a.metrics.tickets_created)
            .then_with(|| a.tag.cmp(&b.tag))
    });
    drivers.truncate(limit);
    Ok(Drivers {
        drivers,
        tickets_created,
        unsatisfied_csat_answers: total_unsatisfied,
        detractors: total_detractors,
    })
}
