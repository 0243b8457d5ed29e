//! ScorecardService: validate, read precomputed buckets off the runtime, convert.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::domain::aggregate::{Scope, ScopeKind, Selection};
use crate::domain::drilldown::TicketFilter;
use crate::domain::records::Id;
use crate::domain::scorecard::{Metric, Targets};
use crate::domain::sla::{self, SlaPolicy, TeamTerms};
use crate::domain::time::{Granularity, Instant, MovingWindow, QUARTER_SECONDS};
use crate::error::{Error, FieldViolation};
use crate::live::{FeedKey, FeedState, LiveScorecards, Watch};
use crate::proto::v1 as pb;
use crate::proto::v1::scorecard_service_server::ScorecardService;
use crate::queries::{self, LeaderboardQuery, ScorecardQuery, TicketQuery};
use crate::store::{groups, reads, Store};

use super::convert;
use super::validate::{Fields, MAX_TAG_CHARS};

/// Leaderboard pages hold 1–500 rows; 50 by default.
pub const MAX_PAGE_SIZE: u32 = 500;
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// Live scorecards come at most every 100 ms, at least every hour; 1 s by default.
const WATCH_INTERVAL_BOUNDS: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(3600));
const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// A trailing live window is at most 366 days.
const MAX_TRAILING: Duration = Duration::from_secs(366 * 86_400);

#[derive(Debug, Clone)]
pub struct ScorecardApi {
    store: Store,
    live: Arc<LiveScorecards>,
}

impl ScorecardApi {
    pub fn new(store: Store, live: Arc<LiveScorecards>) -> Self {
        ScorecardApi { store, live }
    }

    /// Runs a synchronous read on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Store) -> crate::error::Result<T> + Send + 'static,
    ) -> Result<T, Status> {
        let store = self.store.clone();
        let result = tokio::task::spawn_blocking(move || read(&store))
            .await
            .map_err(|e| Error::Internal(format!("read task failed: {e}")))?;
        Ok(result?)
    }

    /// One part of a team's latest terms (its calendar or SLA policy) and
    /// the moment from which that part has held; `team_id` as the request gave it.
    async fn current_part<T: PartialEq + Clone>(
        &self,
        team_id: &str,
        part: fn(TeamTerms) -> T,
    ) -> Result<Option<(i64, T)>, Status> {
        let mut fields = Fields::new("");
        let team = fields.id("team_id", team_id);
        let team = accept(fields, team)?;
        let versions: Vec<(i64, T)> = self
            .read(move |store| groups::terms_history(store.kv(), &team))
            .await?
            .into_iter()
            .map(|(moment, terms)| (moment, part(terms)))
            .collect();
        Ok(sla::unchanged_since(&versions).map(|(moment, part)| (moment, part.clone())))
    }
}

/// The parsed request when every field was valid, else `INVALID_ARGUMENT`
/// naming every bad field (a value can parse yet carry a violation, such as a
/// scope with a field its kind does not use).
fn accept<T>(fields: Fields, parsed: Option<T>) -> Result<T, Status> {
    fields
        .finish(parsed)
        .map_err(|violations| Error::InvalidArgument(violations).into())
}

fn optional_team(fields: &mut Fields, raw: &str) -> Option<Option<Id>> {
    fields.optional_id("team_id", raw)
}

/// A page size of 1–500, 50 when unset.
fn page_size(fields: &mut Fields, field: &str, raw: u32) -> Option<u32> {
    match raw {
        0 => Some(DEFAULT_PAGE_SIZE),
        size if size <= MAX_PAGE_SIZE => Some(size),
        _ => {
            fields.violation(field, format!("must be at most {MAX_PAGE_SIZE}"));
            None
        }
    }
}

/// A drill-down page token: the position of the last ticket examined, in hex.
fn ticket_page_token(position: &[u8]) -> String {
    position.iter().map(|b| format!("{b:02x}")).collect()
}

/// The position a page token holds: 8 bytes of time and a ticket id.
fn parse_ticket_page_token(fields: &mut Fields, raw: &str) -> Option<Option<Vec<u8>>> {
    if raw.is_empty() {
        return Some(None);
    }
    let bytes: Option<Vec<u8>> = raw
        .len()
        .is_multiple_of(2)
        .then(|| {
            (0..raw.len())
                .step_by(2)
                .map(|i| {
                    raw.get(i..i + 2)
                        .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                })
                .collect()
        })
        .flatten();
    let valid = bytes.filter(|bytes| {
        bytes.len() > 8 && std::str::from_utf8(&bytes[8..]).is_ok_and(|id| Id::parse(id).is_ok())
    });
    if valid.is_none() {
        fields.violation("page_token", "is not a token this service issued");
    }
    valid.map(Some)
}

/// A duration bound of a filter: absent, or non-negative.
fn filter_bound(
    fields: &mut Fields,
    field: &str,
    raw: Option<&prost_types::Duration>,
) -> Option<Option<i64>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let duration = fields.bounded_duration(
        field,
        Some(raw),
        (Duration::ZERO, Duration::from_secs(100 * 365 * 86_400)),
        Duration::ZERO,
    )?;
    Some(Some(duration.as_nanos() as i64))
}

fn parse_list_tickets(raw: &pb::ListTicketsRequest) -> Result<TicketQuery, Status> {
    let mut fields = Fields::new("");
    let scope = fields.selection("scope", raw.scope.as_ref());
    let window = fields.window("window", raw.window.as_ref());
    let as_of = fields.as_of("as_of", raw.as_of.as_ref());
    let page_size = page_size(&mut fields, "page_size", raw.page_size);
    let after = parse_ticket_page_token(&mut fields, &raw.page_token);
    let default_filter = pb::TicketFilter::default();
    let f = raw.filter.as_ref().unwrap_or(&default_filter);
    let frt_above = filter_bound(&mut fields, "filter.frt_above", f.frt_above.as_ref());
    let resolution_above = filter_bound(
        &mut fields,
        "filter.resolution_time_above",
        f.resolution_time_above.as_ref(),
    );
    let open_older_than = filter_bound(
        &mut fields,
        "filter.open_older_than",
        f.open_older_than.as_ref(),
    );
    let csat_at_most = match f.csat_at_most {
        0 => Some(None),
        score @ 1..=5 => Some(Some(score as u8)),
        _ => {
            fields.violation(
                "filter.csat_at_most",
                "must be a CSAT score, 1-5 (0: no filter)",
            );
            None
        }
    };
    let tag = if f.tag.is_empty() {
        Some(None)
    } else if f.tag.chars().count() > MAX_TAG_CHARS {
        fields.violation(
            "filter.tag",
            format!("must be at most {MAX_TAG_CHARS} characters"),
        );
        None
    } else {
        Some(Some(f.tag.clone()))
    };
    let parsed = scope
        .zip(window)
        .zip(as_of)
        .zip(page_size)
        .zip(after)
        .zip(frt_above.zip(resolution_above).zip(open_older_than))
        .zip(csat_at_most.zip(tag));
    let (
        (
            ((((scope, window), as_of), page_size), after),
            ((frt_above, resolution_above), open_older_than),
        ),
        (csat_at_most, tag),
    ) = accept(fields, parsed)?;
    Ok(TicketQuery {
        scope,
        window,
        filter: TicketFilter {
            frt_above_nanos: frt_above,
            resolution_above_nanos: resolution_above,
            csat_at_most,
            nps_detractor: f.nps_detractor,
            reopened: f.reopened,
            first_contact_resolved: f.first_contact_resolved,
            open_older_than_nanos: open_older_than,
            tag,
            sla_breached: f.sla_breached,
        },
        as_of,
        after,
        page_size: page_size as usize,
    })
}

/// What a watch asks for: the shared feed and this stream's least interval.
fn parse_watch(raw: &pb::WatchScorecardRequest) -> Result<(FeedKey, Duration, u64), Status> {
    use pb::watch_scorecard_request::MovingWindow as Raw;
    let mut fields = Fields::new("");
    let selection = fields.selection("scope", raw.scope.as_ref());
    let window = match &raw.moving_window {
        None => {
            fields.violation(
                "moving_window",
                "is required: trailing or today_in_time_zone",
            );
            None
        }
        Some(Raw::Trailing(trailing)) => fields
            .bounded_duration("trailing", Some(trailing), (QUARTER, MAX_TRAILING), QUARTER)
            .and_then(|trailing| {
                if trailing.as_secs() % QUARTER.as_secs() != 0 || trailing.subsec_nanos() != 0 {
                    fields.violation("trailing", "must be a whole number of 15 minutes");
                    return None;
                }
                Some(MovingWindow::Trailing {
                    seconds: trailing.as_secs() as i64,
                })
            }),
        Some(Raw::TodayInTimeZone(zone)) => fields
            .time_zone("today_in_time_zone", zone)
            .map(MovingWindow::Today),
    };
    // A zone whose midnight is not on a 15-minute boundary cannot be served.
    if let Some(window) = window {
        if let Err(error) = window.at(Instant::now().seconds()) {
            fields.violation("today_in_time_zone", error.to_string());
        }
    }
    let interval = fields.bounded_duration(
        "min_interval",
        raw.min_interval.as_ref(),
        WATCH_INTERVAL_BOUNDS,
        DEFAULT_WATCH_INTERVAL,
    );
    let ((selection, window), interval) = accept(fields, selection.zip(window).zip(interval))?;
    let key = FeedKey { selection, window };
    Ok((key, interval, raw.min_sample))
}

const QUARTER: Duration = Duration::from_secs(QUARTER_SECONDS as u64);

/// Sends the feed's scorecards to one stream, at most one per `interval`, until
/// the client goes, the feed fails or the server stops.
async fn forward(
    watch: Watch,
    interval: Duration,
    min_sample: u64,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    sender: mpsc::Sender<Result<pb::WatchScorecardResponse, Status>>,
) {
    let mut state = watch.state();
    loop {
        let current = state.borrow_and_update().clone();
        match current {
            FeedState::Starting => {}
            FeedState::Current(card) => {
                // The feed judges targets on any data; this watcher's minimum
                // sample applies on top.
                let mut card = (*card).clone();
                card.targets = card
                    .targets
                    .into_iter()
                    .map(|target| target.with_min_sample(min_sample))
                    .collect();
                let message = pb::WatchScorecardResponse {
                    scorecard: Some(convert::scorecard(&card)),
                };
                // A slow reader holds up only its own stream.
                tokio::select! {
                    sent = sender.send(Ok(message)) => if sent.is_err() { return },
                    _ = stopping.wait_for(|stop| *stop) => break,
                }
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = sender.closed() => return,
                    _ = stopping.wait_for(|stop| *stop) => break,
                }
            }
            FeedState::Failed(error) => {
                send_last(&sender, error.into()).await;
                return;
            }
        }
        tokio::select! {
            changed = state.changed() => if changed.is_err() { return },
            () = sender.closed() => return,
            _ = stopping.wait_for(|stop| *stop) => break,
        }
    }
    send_last(
        &sender,
        Status::unavailable("the server is shutting down; reconnect to another instance"),
    )
    .await;
}

/// Ends a stream with an error, waiting at most a second for room: a client
/// that does not read does not hold up shutdown.
async fn send_last(
    sender: &mpsc::Sender<Result<pb::WatchScorecardResponse, Status>>,
    status: Status,
) {
    let _ = tokio::time::timeout(Duration::from_secs(1), sender.send(Err(status))).await;
}

#[tonic::async_trait]
impl ScorecardService for ScorecardApi {
    type WatchScorecardStream = ReceiverStream<Result<pb::WatchScorecardResponse, Status>>;

    #[tracing::instrument(skip_all)]
    async fn get_drivers(
        &self,
        request: Request<pb::GetDriversRequest>,
    ) -> Result<Response<pb::GetDriversResponse>, Status> {
        let raw = request.into_inner();
        let mut fields = Fields::new("");
        let scope = fields.selection("scope", raw.scope.as_ref());
        let scope = scope.filter(|selection| {
            let kept = matches!(
                selection,
                Selection::One(Scope::Organization | Scope::Team(_))
                    | Selection::Teams { channel: None, .. }
            );
            if !kept {
                fields.violation(
                    "scope.kind",
                    "drivers are kept for ORGANIZATION, TEAM or a union of teams",
                );
            }
            kept
        });
        let window = fields.window("window", raw.window.as_ref());
        let limit = page_size(&mut fields, "limit", raw.limit);
        let ((scope, window), limit) = accept(fields, scope.zip(window).zip(limit))?;
        let found = self
            .read(move |store| {
                queries::require_known(store.kv(), &scope)?;
                queries::drivers(store.kv(), &scope, window, limit as usize)
            })
            .await?;
        Ok(Response::new(pb::GetDriversResponse {
            drivers: found
                .drivers
                .iter()
                .map(|d| pb::Driver {
                    tag: d.tag.clone(),
                    metrics: Some(convert::metrics(&d.metrics)),
                    share_of_tickets_percent: d.share_of_tickets_percent,
                    share_of_unsatisfied_csat_percent: d.share_of_unsatisfied_csat_percent,
                    share_of_detractors_percent: d.share_of_detractors_percent,
                })
                .collect(),
            tickets_created: found.tickets_created,
            unsatisfied_csat_answers: found.unsatisfied_csat_answers,
            detractors: found.detractors,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_tickets(
        &self,
        request: Request<pb::ListTicketsRequest>,
    ) -> Result<Response<pb::ListTicketsResponse>, Status> {
        let query = parse_list_tickets(request.get_ref())?;
        let page = self
            .read(move |store| {
                queries::require_known(store.kv(), &query.scope)?;
                queries::list_tickets(store.kv(), &query)
            })
            .await?;
        Ok(Response::new(pb::ListTicketsResponse {
            tickets: page.rows.iter().map(convert::ticket_row).collect(),
            next_page_token: page
                .next
                .as_deref()
                .map(ticket_page_token)
                .unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn watch_scorecard(
        &self,
        request: Request<pb::WatchScorecardRequest>,
    ) -> Result<Response<Self::WatchScorecardStream>, Status> {
        let (key, interval, min_sample) = parse_watch(request.get_ref())?;
        let scope = key.selection.clone();
        self.read(move |store| queries::require_known(store.kv(), &scope))
            .await?;
        tracing::debug!(?key, ?interval, "watch opened");
        let watch = self.live.watch(key)?;
        let (sender, receiver) = mpsc::channel(1);
        tokio::spawn(forward(
            watch,
            interval,
            min_sample,
            self.live.stopping(),
            sender,
        ));
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_scorecard(
        &self,
        request: Request<pb::GetScorecardRequest>,
    ) -> Result<Response<pb::GetScorecardResponse>, Status> {
        let raw = request.into_inner();
        let mut fields = Fields::new("");
        let scope = fields.selection("scope", raw.scope.as_ref());
        let window = fields.window("window", raw.window.as_ref());
        let as_of = fields.as_of("backlog_as_of", raw.backlog_as_of.as_ref());
        let ((scope, window), backlog_as_of) = accept(fields, scope.zip(window).zip(as_of))?;
        let query = ScorecardQuery {
            scope,
            window,
            compare_previous: raw.compare_previous,
            include_organization: raw.include_organization,
            backlog_as_of,
            min_sample: raw.min_sample,
        };
        let card = self
            .read(move |store| {
                queries::require_known(store.kv(), &query.scope)?;
                queries::scorecard(store.kv(), &query)
            })
            .await?;
        Ok(Response::new(pb::GetScorecardResponse {
            scorecard: Some(convert::scorecard(&card)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_scorecards(
        &self,
        request: Request<pb::ListScorecardsRequest>,
    ) -> Result<Response<pb::ListScorecardsResponse>, Status> {
        let raw = request.into_inner();
        let mut fields = Fields::new("");
        let kind = match pb::ScopeKind::try_from(raw.scope_kind) {
            Ok(pb::ScopeKind::Team) => Some(ScopeKind::Team),
            Ok(pb::ScopeKind::Agent) => Some(ScopeKind::Agent),
            Ok(pb::ScopeKind::Channel) => Some(ScopeKind::Channel),
            Ok(pb::ScopeKind::TeamChannel) => Some(ScopeKind::TeamChannel),
            Ok(pb::ScopeKind::Tag) => Some(ScopeKind::Tag),
            Ok(pb::ScopeKind::TeamTag) => Some(ScopeKind::TeamTag),
            _ => {
                fields.violation(
                    "scope_kind",
                    "must be TEAM, AGENT, CHANNEL, TEAM_CHANNEL, TAG or TEAM_TAG",
                );
                None
            }
        };
        let window = fields.window("window", raw.window.as_ref());
        let order_by = if raw.order_by == 0 {
            Some(Metric::TicketsCreated)
        } else {
            fields.metric("order_by", raw.order_by)
        };
        let page_size = page_size(&mut fields, "page_size", raw.page_size);
        let offset = if raw.page_token.is_empty() {
            Some(0)
        } else {
            raw.page_token
                .parse::<usize>()
                .map_err(|_| fields.violation("page_token", "is not a token this service issued"))
                .ok()
        };
        let order_by = order_by.filter(|metric| {
            let orderable = !raw.by_confidence_bound || metric.has_interval();
            if !orderable {
                fields.violation(
                    "by_confidence_bound",
                    "needs an order_by with a 95% interval: a rate or NPS_SCORE",
                );
            }
            orderable
        });
        let ((((kind, window), order_by), page_size), offset) = accept(
            fields,
            kind.zip(window).zip(order_by).zip(page_size).zip(offset),
        )?;
        let query = LeaderboardQuery {
            kind,
            window,
            order_by,
            ascending: raw.ascending,
            offset,
            page_size: page_size as usize,
            min_sample: raw.min_sample,
            by_confidence_bound: raw.by_confidence_bound,
        };
        let page = self
            .read(move |store| queries::leaderboard(store.kv(), &query))
            .await?;
        Ok(Response::new(pb::ListScorecardsResponse {
            scorecards: page
                .rows
                .iter()
                .map(|(scope, metrics)| pb::ScopeMetrics {
                    scope: Some(convert::scope(scope)),
                    metrics: Some(convert::metrics(metrics)),
                })
                .collect(),
            next_page_token: page.next_offset.map(|n| n.to_string()).unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_time_series(
        &self,
        request: Request<pb::GetTimeSeriesRequest>,
    ) -> Result<Response<pb::GetTimeSeriesResponse>, Status> {
        let raw = request.into_inner();
        let mut fields = Fields::new("");
        let scope = fields.selection("scope", raw.scope.as_ref());
        let window = fields.window("window", raw.window.as_ref());
        let granularity = match pb::Granularity::try_from(raw.granularity) {
            Ok(pb::Granularity::Hour) => Some(Granularity::Hour),
            Ok(pb::Granularity::Day) => Some(Granularity::Day),
            Ok(pb::Granularity::Week) => Some(Granularity::Week),
            Ok(pb::Granularity::Month) => Some(Granularity::Month),
            _ => {
                fields.violation("granularity", "is required: HOUR, DAY, WEEK or MONTH");
                None
            }
        };
        let zone = fields.time_zone("time_zone", &raw.time_zone);
        let (((scope, window), granularity), zone) =
            accept(fields, scope.zip(window).zip(granularity).zip(zone))?;
        let series = self
            .read(move |store| {
                queries::require_known(store.kv(), &scope)?;
                queries::time_series(store.kv(), &scope, window, granularity, zone)
            })
            .await?;
        Ok(Response::new(pb::GetTimeSeriesResponse {
            periods: series
                .iter()
                .map(|(period, metrics)| pb::Period {
                    window: Some(convert::window(*period)),
                    metrics: Some(convert::metrics(metrics)),
                })
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_backlog(
        &self,
        request: Request<pb::GetBacklogRequest>,
    ) -> Result<Response<pb::GetBacklogResponse>, Status> {
        let raw = request.into_inner();
        let mut fields = Fields::new("");
        let scope = fields.selection("scope", raw.scope.as_ref());
        let as_of = fields.as_of("as_of", raw.as_of.as_ref());
        let (scope, as_of) = accept(fields, scope.zip(as_of))?;
        let backlog = self
            .read(move |store| {
                queries::require_known(store.kv(), &scope)?;
                queries::backlog(store.kv(), &scope, as_of)
            })
            .await?;
        Ok(Response::new(pb::GetBacklogResponse {
            backlog: Some(convert::backlog(&backlog)),
        }))
    }

    #[tracing::instrument(skip_all, fields(team = %request.get_ref().team_id))]
    async fn set_targets(
        &self,
        request: Request<pb::SetTargetsRequest>,
    ) -> Result<Response<pb::SetTargetsResponse>, Status> {
        let (team, targets) =
            parse_targets(&request.into_inner()).map_err(Error::InvalidArgument)?;
        self.store.set_targets(team, targets.clone()).await?;
        Ok(Response::new(pb::SetTargetsResponse {
            targets: convert::targets(&targets),
        }))
    }

    #[tracing::instrument(skip_all, fields(team = %request.get_ref().team_id))]
    async fn set_calendar(
        &self,
        request: Request<pb::SetCalendarRequest>,
    ) -> Result<Response<pb::SetCalendarResponse>, Status> {
        let raw = request.into_inner();
        let mut fields = Fields::new("");
        let team = fields.id("team_id", &raw.team_id);
        let calendar = match &raw.calendar {
            None => Some(None),
            Some(calendar) => fields.calendar("calendar", calendar).map(Some),
        };
        let (team, calendar) = accept(fields, team.zip(calendar))?;
        let effective_from = self.store.set_calendar(team, calendar).await?;
        Ok(Response::new(pb::SetCalendarResponse {
            effective_from: Some(convert::timestamp_of_seconds(effective_from)),
        }))
    }

    #[tracing::instrument(skip_all, fields(team = %request.get_ref().team_id))]
    async fn get_calendar(
        &self,
        request: Request<pb::GetCalendarRequest>,
    ) -> Result<Response<pb::GetCalendarResponse>, Status> {
        let raw = request.into_inner();
        match self
            .current_part(&raw.team_id, |terms| terms.calendar)
            .await?
        {
            Some((effective_from, Some(calendar))) => Ok(Response::new(pb::GetCalendarResponse {
                calendar: Some(convert::calendar(&calendar)),
                effective_from: since(effective_from),
            })),
            _ => Err(
                Error::NotFound(format!("team {} has no business calendar", raw.team_id)).into(),
            ),
        }
    }

    #[tracing::instrument(skip_all, fields(team = %request.get_ref().team_id))]
    async fn set_sla_policy(
        &self,
        request: Request<pb::SetSlaPolicyRequest>,
    ) -> Result<Response<pb::SetSlaPolicyResponse>, Status> {
        let raw = request.into_inner();
        let mut fields = Fields::new("");
        let team = fields.id("team_id", &raw.team_id);
        let policy = match &raw.policy {
            None => Some(SlaPolicy::default()),
            Some(policy) => fields.sla_policy("policy", policy),
        };
        let (team, policy) = accept(fields, team.zip(policy))?;
        let effective_from = self.store.set_sla_policy(team, policy).await?;
        Ok(Response::new(pb::SetSlaPolicyResponse {
            effective_from: Some(convert::timestamp_of_seconds(effective_from)),
        }))
    }

    #[tracing::instrument(skip_all, fields(team = %request.get_ref().team_id))]
    async fn get_sla_policy(
        &self,
        request: Request<pb::GetSlaPolicyRequest>,
    ) -> Result<Response<pb::GetSlaPolicyResponse>, Status> {
        let raw = request.into_inner();
        match self.current_part(&raw.team_id, |terms| terms.sla).await? {
            Some((effective_from, policy)) if !policy.is_empty() => {
                Ok(Response::new(pb::GetSlaPolicyResponse {
                    policy: Some(convert::sla_policy(&policy)),
                    effective_from: since(effective_from),
                }))
            }
            _ => Err(Error::NotFound(format!("team {} has no SLA policy", raw.team_id)).into()),
        }
    }

    #[tracing::instrument(skip_all, fields(team = %request.get_ref().team_id))]
    async fn get_targets(
        &self,
        request: Request<pb::GetTargetsRequest>,
    ) -> Result<Response<pb::GetTargetsResponse>, Status> {
        let raw = request.into_inner();
        let mut fields = Fields::new("");
        let team = optional_team(&mut fields, &raw.team_id);
        let team = accept(fields, team)?;
        let (own, organization) = self
            .read(move |store| {
                let organization = reads::targets(store.kv(), None)?;
                let own = match &team {
                    Some(team) => reads::targets(store.kv(), Some(team))?,
                    None => organization.clone(),
                };
                Ok((own, organization))
            })
            .await?;
        Ok(Response::new(pb::GetTargetsResponse {
            targets: convert::targets(&own),
            organization_default: convert::targets(&organization),
        }))
    }
}

/// The team and its complete set of targets, at most one per metric.
pub fn parse_targets(
    raw: &pb::SetTargetsRequest,
) -> Result<(Option<Id>, Targets), Vec<FieldViolation>> {
    let mut fields = Fields::new("");
    let team = optional_team(&mut fields, &raw.team_id);
    let mut targets = Targets::new();
    for (index, target) in raw.targets.iter().enumerate() {
        let field = format!("targets[{index}]");
        let Some(metric) = fields.metric(&format!("{field}.metric"), target.metric) else {
            continue;
        };
        if metric.direction().is_none() {
            fields.violation(
                &format!("{field}.metric"),
                "volume metrics order leaderboards but take no target",
            );
        } else if !target.value.is_finite() {
            fields.violation(&format!("{field}.value"), "must be a finite number");
        } else if targets.insert(metric, target.value).is_some() {
            fields.violation(&format!("{field}.metric"), "appears more than once");
        }
    }
    fields.finish(team.map(|team| (team, targets)))
}

/// When a terms version takes effect, as the wire says it: absent for the
/// beginning of time.
fn since(effective_from: i64) -> Option<prost_types::Timestamp> {
    (effective_from != i64::MIN).then(|| convert::timestamp_of_seconds(effective_from))
}
