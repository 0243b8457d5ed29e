//! Instants, windows, the bucket levels aggregates are kept at, the decomposition
//! of a window into the coarsest aligned buckets, and time-zone periods.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Nanoseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Instant(pub i64);

pub const NANOS_PER_SECOND: i64 = 1_000_000_000;
/// Buckets and window ends are aligned to 15 minutes.
pub const QUARTER_SECONDS: i64 = 900;
/// 2000-01-01T00:00:00Z: nothing older is accepted.
pub const EARLIEST_SECONDS: i64 = 946_684_800;
/// Timestamps may lie at most this far in the future.
pub const MAX_FUTURE_SECONDS: i64 = 24 * 3600;

impl Instant {
    pub fn from_seconds(seconds: i64) -> Self {
        Instant(seconds * NANOS_PER_SECOND)
    }

    /// Whole seconds, rounded towards minus infinity.
    pub fn seconds(self) -> i64 {
        self.0.div_euclid(NANOS_PER_SECOND)
    }

    pub fn now() -> Self {
        Instant(Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX))
    }

    /// The start of the 15-minute bucket holding this instant, in seconds.
    pub fn quarter_start(self) -> i64 {
        self.seconds().div_euclid(QUARTER_SECONDS) * QUARTER_SECONDS
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.0)
    }
}

/// A validated half-open window `[from, to)` in whole seconds, both ends on a
/// 15-minute boundary, `from < to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    from: i64,
    to: i64,
}

/// Why a window was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("must lie on a 15-minute boundary (seconds divisible by 900, no nanoseconds)")]
    Misaligned,
    #[error("`from` must be before `to`")]
    Inverted,
}

impl Window {
    pub fn new(from: i64, to: i64) -> Result<Self, WindowError> {
        if from % QUARTER_SECONDS != 0 || to % QUARTER_SECONDS != 0 {
            return Err(WindowError::Misaligned);
        }
        if from >= to {
            return Err(WindowError::Inverted);
        }
        Ok(Window { from, to })
    }

    pub fn from(self) -> i64 {
        self.from
    }

    pub fn to(self) -> i64 {
        self.to
    }

    /// The window of equal length just before this one.
    pub fn previous(self) -> Window {
        let length = self.to - self.from;
        Window {
            from: self.from - length,
            to: self.from,
        }
    }

    pub fn contains(self, instant: Instant) -> bool {
        let seconds_floor = instant.seconds();
        seconds_floor >= self.from && seconds_floor < self.to
    }
}

/// The granularities aggregates are stored at. `Total` holds one all-time bucket per
/// scope and doubles as the registry of known scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Quarter,
    Hour,
    Day,
    /// A UTC calendar month.
    Month,
    Total,
}

impl Level {
    /// The levels a fact is added to, finest first.
    pub const ALL: [Level; 5] = [
        Level::Quarter,
        Level::Hour,
        Level::Day,
        Level::Month,
        Level::Total,
    ];

    /// The start (seconds) of the bucket of this level holding `seconds`.
    pub fn bucket_start(self, seconds: i64) -> i64 {
        match self {
            Level::Quarter => seconds.div_euclid(QUARTER_SECONDS) * QUARTER_SECONDS,
            Level::Hour => seconds.div_euclid(3600) * 3600,
            Level::Day => seconds.div_euclid(86_400) * 86_400,
            Level::Month => {
                let date = DateTime::from_timestamp(seconds, 0)
                    .unwrap_or_default()
                    .date_naive();
                month_start_seconds(date.year(), date.month())
            }
            Level::Total => 0,
        }
    }

    /// The end (seconds) of the bucket of this level starting at `start`.
    fn bucket_end(self, start: i64) -> i64 {
        match self {
            Level::Quarter => start + QUARTER_SECONDS,
            Level::Hour => start + 3600,
            Level::Day => start + 86_400,
            Level::Month => {
                let date = DateTime::from_timestamp(start, 0)
                    .unwrap_or_default()
                    .date_naive();
                let (year, month) = if date.month() == 12 {
                    (date.year() + 1, 1)
                } else {
                    (date.year(), date.month() + 1)
                };
                month_start_seconds(year, month)
            }
            Level::Total => i64::MAX,
        }
    }
}

fn month_start_seconds(year: i32, month: u32) -> i64 {
    NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp())
        .unwrap_or(0)
}

/// A run of consecutive buckets of one level, `[start, end)` in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketRun {
    pub level: Level,
    pub start: i64,
    pub end: i64,
}

/// Splits a window into the coarsest aligned buckets, grouped into runs of one
/// level so that each run is one range read. A 365-day window costs a few dozen
/// buckets (months, then days, hours and quarters at the ragged ends).
pub fn decompose(window: Window) -> Vec<BucketRun> {
    let mut runs: Vec<BucketRun> = Vec::new();
    let mut cursor = window.from;
    while cursor < window.to {
        let (level, end) = [Level::Month, Level::Day, Level::Hour, Level::Quarter]
            .into_iter()
            .find_map(|level| {
                let end = level.bucket_end(cursor);
                (level.bucket_start(cursor) == cursor && end <= window.to).then_some((level, end))
            })
            .unwrap_or((Level::Quarter, cursor + QUARTER_SECONDS));
        match runs.last_mut() {
            Some(run) if run.level == level && run.end == cursor => run.end = end,
            _ => runs.push(BucketRun {
                level,
                start: cursor,
                end,
            }),
        }
        cursor = end;
    }
    runs
}

/// Time-series period lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Hour,
    Day,
    /// Weeks start on Monday.
    Week,
    Month,
}

/// At most this many periods in one time series.
pub const MAX_PERIODS: usize = 10_000;

/// Why periods could not be cut.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("the window holds more than {MAX_PERIODS} periods of this granularity")]
    TooMany,
    #[error("a period boundary in this time zone does not lie on a 15-minute boundary")]
    Misaligned,
}

/// Cuts `window` into periods of `granularity` in `zone` (local midnights, Mondays and
/// month starts; DST respected), the first and last clipped to the window.
pub fn periods(window: Window, granularity: Granularity, zone: Tz) -> Result<Vec<Window>, PeriodError> {
    let mut periods = Vec::new();
    let mut start = window.from;
    while start < window.to {
        if periods.len() >= MAX_PERIODS {
            return Err(PeriodError::TooMany);
        }
        let next = next_boundary(start, granularity, zone).min(window.to);
        let period = Window::new(start, next).map_err(|_| PeriodError::Misaligned)?;
        periods.push(period);
        start = next;
    }
    Ok(periods)
}

/// The first period boundary strictly after `seconds`.
fn next_boundary(seconds: i64, granularity: Granularity, zone: Tz) -> i64 {
    let local = DateTime::from_timestamp(seconds, 0)
        .unwrap_or_default()
        .with_timezone(&zone);
    let date = local.date_naive();
    match granularity {
        Granularity::Hour => {
            // An hour period ends at the next local hour mark; in every real zone that
            // is the next UTC instant whose local minute is zero.
            seconds - i64::from(local.minute()) * 60 - i64::from(local.second()) + 3600
        }
        Granularity::Day => local_midnight(zone, date + Duration::days(1)),
        Granularity::Week => {
            let days_since_monday = i64::from(date.weekday().num_days_from_monday());
            local_midnight(zone, date + Duration::days(7 - days_since_monday))
        }
        Granularity::Month => {
            let (year, month) = if date.month() == 12 {
                (date.year() + 1, 1)
            } else {
                (date.year(), date.month() + 1)
            };
            local_midnight(zone, NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(date))
        }
    }
}

/// The first instant of `date` in `zone`. Where midnight does not exist (a DST jump
/// at midnight), the day starts at the first local time that does.
fn local_midnight(zone: Tz, date: NaiveDate) -> i64 {
    let mut naive = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    for _ in 0..8 {
        if let Some(instant) = zone.from_local_datetime(&naive).earliest() {
            return instant.timestamp();
        }
        naive += Duration::minutes(15);
    }
    naive.and_utc().timestamp()
}
