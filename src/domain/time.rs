//! Instants, windows, the bucket levels aggregates are kept at, the decomposition
//! of a window into the fewest buckets that sum to it, and time-zone periods.

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

/// The granularities aggregates are stored at. (Which scopes are known is kept
/// apart, as a count of facts per scope: no window reads an all-time bucket.
/// No hour buckets either: an hour's four quarters are stored in one value,
/// which a read of the hour sums.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Quarter,
    Day,
    /// A UTC calendar month.
    Month,
}

impl Level {
    /// The levels a fact is added to, finest first.
    pub const ALL: [Level; 3] = [Level::Quarter, Level::Day, Level::Month];

    /// The start (seconds) of the bucket of this level holding `seconds`.
    pub fn bucket_start(self, seconds: i64) -> i64 {
        match self {
            Level::Quarter => seconds.div_euclid(QUARTER_SECONDS) * QUARTER_SECONDS,
            Level::Day => seconds.div_euclid(86_400) * 86_400,
            Level::Month => {
                let date = DateTime::from_timestamp(seconds, 0)
                    .unwrap_or_default()
                    .date_naive();
                month_start_seconds(date.year(), date.month())
            }
        }
    }

    /// The end (seconds) of the bucket of this level starting at `start`.
    fn bucket_end(self, start: i64) -> i64 {
        match self {
            Level::Quarter => start + QUARTER_SECONDS,
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
        }
    }
}

fn month_start_seconds(year: i32, month: u32) -> i64 {
    NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp())
        .unwrap_or(0)
}

/// A run of consecutive buckets of one level, `[start, end)` in seconds, that a
/// window's sum adds (`sign` 1) or takes away (`sign` -1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketRun {
    pub level: Level,
    pub start: i64,
    pub end: i64,
    pub sign: i64,
}

/// The levels a window is cut into, coarsest first.
const COARSE_TO_FINE: [Level; 3] = [Level::Month, Level::Day, Level::Quarter];

/// An hour's quarters are stored in one value: a run of quarters reads one
/// value per hour it touches.
const QUARTERS_STORED_TOGETHER_SECONDS: i64 = 3600;

/// Cuts a window into bucket runs whose signed sum is the window's, reading as
/// few stored values as it can (an hour's quarters are stored in one value,
/// so they cost one read): the whole buckets of the coarsest level
/// inside the window, and for each ragged end the cheaper of the finer
/// buckets that fill it and the whole coarser bucket less the finer buckets
/// of it that lie outside the window (the last 30 days of a 31-day month:
/// that month less its first day, 2 buckets instead of 30). Aggregates add
/// and subtract exactly, so both give the same sum. Each run is one range
/// read; the runs that add come first.
pub fn decompose(window: Window) -> Vec<BucketRun> {
    let mut runs = cover(window.from, window.to, &COARSE_TO_FINE).runs;
    // Runs of one sign and level side by side, in time order, to be joined.
    runs.sort_by_key(|run| (-run.sign, run.level, run.start));
    let mut merged: Vec<BucketRun> = Vec::with_capacity(runs.len());
    for run in runs {
        match merged.last_mut() {
            Some(last) if (last.level, last.sign, last.end) == (run.level, run.sign, run.start) => {
                last.end = run.end;
            }
            _ => merged.push(run),
        }
    }
    merged
}

/// Bucket runs whose signed sum is `[from, to)`, and how many stored values
/// they read.
#[derive(Debug, Default)]
struct Cover {
    values: i64,
    runs: Vec<BucketRun>,
}

impl Cover {
    fn whole(level: Level, start: i64, end: i64) -> Cover {
        let mut values = 0;
        if level == Level::Quarter {
            let hour = QUARTERS_STORED_TOGETHER_SECONDS;
            if start < end {
                values = (end - 1).div_euclid(hour) - start.div_euclid(hour) + 1;
            }
        } else {
            let mut cursor = start;
            while cursor < end {
                cursor = level.bucket_end(cursor);
                values += 1;
            }
        }
        let runs = (start < end)
            .then_some(BucketRun {
                level,
                start,
                end,
                sign: 1,
            })
            .into_iter()
            .collect();
        Cover { values, runs }
    }

    fn add(&mut self, other: Cover, sign: i64) {
        self.values += other.values;
        self.runs
            .extend(other.runs.into_iter().map(|run| BucketRun {
                sign: run.sign * sign,
                ..run
            }));
    }
}

/// `[from, to)` (on quarter boundaries) from buckets of `levels` (coarsest first).
fn cover(from: i64, to: i64, levels: &[Level]) -> Cover {
    let Some((&level, finer)) = levels.split_first() else {
        return Cover::default();
    };
    if from >= to || finer.is_empty() {
        return Cover::whole(level, from, to);
    }
    let first = level.bucket_start(from);
    let first_end = level.bucket_end(first);
    if !(first <= from && from < first_end) {
        // Months past what the calendar arithmetic covers (no valid window).
        return cover(from, to, finer);
    }
    if from == first && to == first_end {
        return Cover::whole(level, from, to);
    }
    if to <= first_end {
        return ragged(level, first, first_end, from, to, finer);
    }
    let mut cover = Cover::default();
    let whole_from = if first == from {
        from
    } else {
        cover.add(ragged(level, first, first_end, from, first_end, finer), 1);
        first_end
    };
    let last = level.bucket_start(to);
    cover.add(Cover::whole(level, whole_from, last), 1);
    if last < to {
        cover.add(
            ragged(level, last, level.bucket_end(last), last, to, finer),
            1,
        );
    }
    cover
}

/// `[from, to)`, part of the bucket `[start, end)` of `level`: by `finer`
/// buckets, or by the whole bucket less its parts outside, whichever reads
/// fewer values (on a tie, the one that only adds).
fn ragged(level: Level, start: i64, end: i64, from: i64, to: i64, finer: &[Level]) -> Cover {
    let inside = cover(from, to, finer);
    let mut outside = Cover::whole(level, start, end);
    outside.add(cover(start, from, finer), -1);
    outside.add(cover(to, end, finer), -1);
    if outside.values < inside.values {
        outside
    } else {
        inside
    }
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
pub fn periods(
    window: Window,
    granularity: Granularity,
    zone: Tz,
) -> Result<Vec<Window>, PeriodError> {
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

/// A window that moves with the clock (live scorecards).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MovingWindow {
    /// The last `seconds` (a positive multiple of 15 minutes) up to the end of
    /// the current 15-minute bucket.
    Trailing { seconds: i64 },
    /// The local day in a zone, midnight to midnight.
    Today(Tz),
}

impl MovingWindow {
    /// The window at `now` (UTC seconds) and the moment it next moves.
    pub fn at(self, now: i64) -> Result<(Window, i64), PeriodError> {
        let (from, to) = match self {
            MovingWindow::Trailing { seconds } => {
                let end = now.div_euclid(QUARTER_SECONDS) * QUARTER_SECONDS + QUARTER_SECONDS;
                (end - seconds, end)
            }
            MovingWindow::Today(zone) => {
                let date = DateTime::from_timestamp(now, 0)
                    .unwrap_or_default()
                    .with_timezone(&zone)
                    .date_naive();
                (
                    local_midnight(zone, date),
                    local_midnight(zone, date + Duration::days(1)),
                )
            }
        };
        let window = Window::new(from, to).map_err(|_| PeriodError::Misaligned)?;
        Ok((window, to))
    }
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
            local_midnight(
                zone,
                NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(date),
            )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp()
    }

    fn lengths_in_hours(periods: &[Window]) -> Vec<i64> {
        periods.iter().map(|p| (p.to() - p.from()) / 3600).collect()
    }

    #[test]
    fn a_trailing_window_ends_with_the_current_quarter() {
        let trailing = MovingWindow::Trailing { seconds: 86_400 };
        let now = at("2026-03-02T10:07:30Z");
        let (window, moves_at) = trailing.at(now).unwrap();
        assert_eq!(
            (window.from(), window.to()),
            (at("2026-03-01T10:15:00Z"), at("2026-03-02T10:15:00Z"))
        );
        assert_eq!(moves_at, at("2026-03-02T10:15:00Z"));
        // On a boundary, the bucket starting there is the current one.
        let (window, _) = trailing.at(at("2026-03-02T10:15:00Z")).unwrap();
        assert_eq!(window.to(), at("2026-03-02T10:30:00Z"));
    }

    #[test]
    fn today_runs_from_local_midnight_to_the_next_and_follows_dst() {
        let kolkata = MovingWindow::Today(chrono_tz::Asia::Kolkata);
        let (window, moves_at) = kolkata.at(at("2026-03-02T20:00:00Z")).unwrap();
        assert_eq!(
            (window.from(), window.to()),
            (at("2026-03-02T18:30:00Z"), at("2026-03-03T18:30:00Z"))
        );
        assert_eq!(moves_at, window.to());
        // 8 March 2026 in New York has 23 hours.
        let new_york = MovingWindow::Today(chrono_tz::America::New_York);
        let (window, _) = new_york.at(at("2026-03-08T12:00:00Z")).unwrap();
        assert_eq!(
            (window.from(), window.to()),
            (at("2026-03-08T05:00:00Z"), at("2026-03-09T04:00:00Z"))
        );
    }

    #[test]
    fn windows_must_be_aligned_and_ordered() {
        assert_eq!(Window::new(900, 1800).map(|w| w.to()), Ok(1800));
        assert_eq!(Window::new(60, 1800), Err(WindowError::Misaligned));
        assert_eq!(Window::new(1800, 1800), Err(WindowError::Inverted));
        assert_eq!(Window::new(2700, 1800), Err(WindowError::Inverted));
    }

    /// How many stored values the runs read.
    fn values_read(runs: &[BucketRun]) -> i64 {
        runs.iter()
            .map(|run| Cover::whole(run.level, run.start, run.end).values)
            .sum()
    }

    /// Checks that the runs' signed sum is the window: each quarter-hour near
    /// it is counted once if inside, never if outside. The count only changes
    /// at a run's or the window's ends, so the quarters at and before each
    /// end stand for all.
    fn assert_sum_is_window(runs: &[BucketRun], window: Window) {
        let ends = runs
            .iter()
            .flat_map(|run| [run.start, run.end])
            .chain([window.from(), window.to()]);
        for end in ends {
            for quarter in [end - QUARTER_SECONDS, end] {
                let counted: i64 = runs
                    .iter()
                    .filter(|run| run.start <= quarter && quarter < run.end)
                    .map(|run| run.sign)
                    .sum();
                let inside = i64::from(window.from() <= quarter && quarter < window.to());
                assert_eq!(
                    counted, inside,
                    "quarter {quarter} of {window:?} in {runs:?}"
                );
            }
        }
    }

    /// The values read by cutting the window from its start into the
    /// coarsest aligned bucket that fits, each run of one level one read, as
    /// this service did before it subtracted: what the decomposition must
    /// never exceed.
    fn greedy_values(window: Window) -> i64 {
        let mut runs: Vec<BucketRun> = Vec::new();
        let mut cursor = window.from();
        while cursor < window.to() {
            let (level, end) = COARSE_TO_FINE
                .into_iter()
                .map(|level| (level, level.bucket_end(cursor)))
                .find(|&(level, end)| level.bucket_start(cursor) == cursor && end <= window.to())
                .unwrap_or((Level::Quarter, cursor + QUARTER_SECONDS));
            match runs.last_mut() {
                Some(run) if run.level == level && run.end == cursor => run.end = end,
                _ => runs.push(BucketRun {
                    level,
                    start: cursor,
                    end,
                    sign: 1,
                }),
            }
            cursor = end;
        }
        values_read(&runs)
    }

    #[test]
    fn a_year_long_window_costs_a_few_dozen_buckets_not_thousands() {
        let window = Window::new(at("2025-01-03T10:45:00Z"), at("2026-01-05T13:15:00Z")).unwrap();
        let runs = decompose(window);
        assert!(values_read(&runs) < 80, "{runs:?}");
        assert!(runs.len() <= 10, "{} runs", runs.len());
        assert_sum_is_window(&runs, window);
    }

    #[test]
    fn a_ragged_end_reads_its_parts_or_the_whole_bucket_less_the_rest() {
        let window = Window::new(at("2025-12-02T00:00:00Z"), at("2026-01-01T00:00:00Z")).unwrap();
        let december = at("2025-12-01T00:00:00Z");
        assert_eq!(
            decompose(window),
            vec![
                BucketRun {
                    level: Level::Month,
                    start: december,
                    end: window.to(),
                    sign: 1
                },
                BucketRun {
                    level: Level::Day,
                    start: december,
                    end: window.from(),
                    sign: -1
                },
            ]
        );
        // Fifteen days of a 31-day month are read one by one.
        let half = Window::new(at("2025-12-17T00:00:00Z"), at("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(values_read(&decompose(half)), 15);
        // Twenty hours are their day less the quarters of four hours.
        let hours = Window::new(at("2025-12-17T02:00:00Z"), at("2025-12-17T22:00:00Z")).unwrap();
        assert_eq!(values_read(&decompose(hours)), 5);
        // Three quarters are read from their hour's value.
        let quarters = Window::new(at("2025-12-17T10:15:00Z"), at("2025-12-17T11:00:00Z")).unwrap();
        assert_eq!(
            decompose(quarters),
            vec![BucketRun {
                level: Level::Quarter,
                start: quarters.from(),
                end: quarters.to(),
                sign: 1
            }]
        );
    }

    #[test]
    fn whole_buckets_are_read_whole_and_runs_of_a_level_are_joined() {
        // One hour: its quarters, one stored value; two hours, two.
        let hour = Window::new(at("2025-12-17T10:00:00Z"), at("2025-12-17T11:00:00Z")).unwrap();
        assert_eq!(
            decompose(hour),
            vec![BucketRun {
                level: Level::Quarter,
                start: hour.from(),
                end: hour.to(),
                sign: 1
            }]
        );
        assert_eq!(values_read(&decompose(hour)), 1);
        let two = Window::new(at("2025-12-17T10:45:00Z"), at("2025-12-17T11:15:00Z")).unwrap();
        assert_eq!(values_read(&decompose(two)), 2);
        // January less its first ten days and most of the tenth, then
        // February and March: one run of months, one of days taken away.
        let window = Window::new(at("2026-01-10T20:15:00Z"), at("2026-04-02T00:00:00Z")).unwrap();
        let runs = decompose(window);
        assert_sum_is_window(&runs, window);
        let months: Vec<_> = runs
            .iter()
            .filter(|run| run.level == Level::Month)
            .collect();
        assert_eq!(months.len(), 1, "{runs:?}");
        assert_eq!(
            (months[0].start, months[0].end),
            (at("2026-01-01T00:00:00Z"), at("2026-04-01T00:00:00Z"))
        );
        let days_taken = runs
            .iter()
            .filter(|run| run.level == Level::Day && run.sign < 0);
        assert_eq!(days_taken.count(), 1, "{runs:?}");
    }

    #[test]
    fn a_window_past_the_calendars_range_is_cut_into_days() {
        // About 28 million years from now, where chrono has no months.
        let from = 900 * 1_000_000_000_000;
        let window = Window::new(from, from + 3 * 86_400 + 3 * 3600).unwrap();
        let runs = decompose(window);
        assert_sum_is_window(&runs, window);
        assert!(runs.iter().all(|run| run.level != Level::Month), "{runs:?}");
    }

    #[test]
    fn decomposition_uses_calendar_months_of_different_lengths() {
        let window = Window::new(at("2026-02-01T00:00:00Z"), at("2026-04-01T00:00:00Z")).unwrap();
        assert_eq!(
            decompose(window),
            vec![BucketRun {
                level: Level::Month,
                start: window.from(),
                end: window.to(),
                sign: 1
            }]
        );
    }

    proptest::proptest! {
        /// Any window, up to two years long and starting anywhere in three
        /// years: the runs sum to exactly the window, and read no more
        /// values than cutting it greedily into whole buckets does.
        #[test]
        fn runs_sum_to_the_window_and_read_no_more_than_whole_buckets(
            start in 0i64..3 * 365 * 96,
            length in proptest::prop_oneof![1i64..4 * 96, 1i64..2 * 365 * 96],
        ) {
            let from = at("2024-01-01T00:00:00Z") + start * QUARTER_SECONDS;
            let window = Window::new(from, from + length * QUARTER_SECONDS).unwrap();
            let runs = decompose(window);
            assert_sum_is_window(&runs, window);
            proptest::prop_assert!(values_read(&runs) <= greedy_values(window), "{:?}", runs);
            // Adds first, and no run is empty.
            proptest::prop_assert!(runs.windows(2).all(|pair| pair[0].sign >= pair[1].sign));
            proptest::prop_assert!(runs.iter().all(|run| run.start < run.end && run.sign.abs() == 1));
        }
    }

    #[test]
    fn days_in_new_york_have_23_and_25_hours_across_dst_changes() {
        let zone: Tz = "America/New_York".parse().unwrap();
        let spring = Window::new(at("2026-03-07T05:00:00Z"), at("2026-03-10T04:00:00Z")).unwrap();
        assert_eq!(
            lengths_in_hours(&periods(spring, Granularity::Day, zone).unwrap()),
            vec![24, 23, 24]
        );
        let autumn = Window::new(at("2026-10-31T04:00:00Z"), at("2026-11-03T05:00:00Z")).unwrap();
        assert_eq!(
            lengths_in_hours(&periods(autumn, Granularity::Day, zone).unwrap()),
            vec![24, 25, 24]
        );
    }

    #[test]
    fn kolkata_days_start_at_half_past_six_utc_and_the_ends_are_clipped() {
        let zone: Tz = "Asia/Kolkata".parse().unwrap();
        let window = Window::new(at("2026-03-01T00:00:00Z"), at("2026-03-03T00:00:00Z")).unwrap();
        let cut = periods(window, Granularity::Day, zone).unwrap();
        let bounds: Vec<(i64, i64)> = cut.iter().map(|p| (p.from(), p.to())).collect();
        assert_eq!(
            bounds,
            vec![
                (at("2026-03-01T00:00:00Z"), at("2026-03-01T18:30:00Z")),
                (at("2026-03-01T18:30:00Z"), at("2026-03-02T18:30:00Z")),
                (at("2026-03-02T18:30:00Z"), at("2026-03-03T00:00:00Z")),
            ]
        );
        let hours = periods(
            Window::new(at("2026-03-01T00:00:00Z"), at("2026-03-01T02:00:00Z")).unwrap(),
            Granularity::Hour,
            zone,
        )
        .unwrap();
        assert_eq!(
            hours.iter().map(|p| p.to() - p.from()).collect::<Vec<_>>(),
            vec![1800, 3600, 1800],
            "local hours start at :30 UTC"
        );
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first_in_local_time() {
        let zone: Tz = "UTC".parse().unwrap();
        // 2026-03-04 is a Wednesday.
        let window = Window::new(at("2026-03-04T00:00:00Z"), at("2026-03-20T00:00:00Z")).unwrap();
        let weeks = periods(window, Granularity::Week, zone).unwrap();
        assert_eq!(weeks[1].from(), at("2026-03-09T00:00:00Z"));
        assert_eq!(weeks[2].from(), at("2026-03-16T00:00:00Z"));
        let new_york: Tz = "America/New_York".parse().unwrap();
        let months = periods(
            Window::new(at("2026-01-15T00:00:00Z"), at("2026-04-15T00:00:00Z")).unwrap(),
            Granularity::Month,
            new_york,
        )
        .unwrap();
        assert_eq!(
            months.iter().map(|p| p.from()).collect::<Vec<_>>(),
            vec![
                at("2026-01-15T00:00:00Z"),
                at("2026-02-01T05:00:00Z"),
                at("2026-03-01T05:00:00Z"),
                at("2026-04-01T04:00:00Z")
            ]
        );
    }

    #[test]
    fn too_many_periods_are_refused() {
        let zone: Tz = "UTC".parse().unwrap();
        let window = Window::new(at("2020-01-01T00:00:00Z"), at("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(
            periods(window, Granularity::Hour, zone),
            Err(PeriodError::TooMany)
        );
    }
}
