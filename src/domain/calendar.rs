//! Business calendars: working hours per weekday in a time zone, holidays, and
//! how much working time lies between two instants (business-time FRT and
//! resolution time).
//!
//! Rules: a shift runs from `start` to `end` local clock time on its weekday,
//! both in whole 15-minute steps; `end <= start` means it runs overnight into the
//! next day. Shifts of one day may overlap (their union counts once). A holiday
//! is a local date with no working time at all: an overnight shift into a
//! holiday stops at its midnight. Clock times that a DST change skips start at
//! the first valid local time after them; times it repeats count both times.

use std::collections::BTreeSet;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;

use super::time::{Instant, NANOS_PER_SECOND};

/// Minutes in a day; a shift may end at 24:00.
pub const DAY_MINUTES: u16 = 24 * 60;
/// Shift boundaries are whole multiples of this many minutes.
pub const STEP_MINUTES: u16 = 15;

/// One working interval of a weekday, in local minutes since midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift {
    pub start: u16,
    pub end: u16,
}

impl Shift {
    /// Runs past midnight into the next day.
    pub fn overnight(self) -> bool {
        self.end <= self.start
    }
}

/// Why a calendar is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("{0}: a shift boundary must be a multiple of 15 minutes from 00:00 to 24:00")]
    Step(String),
    #[error("{0}: a shift starts before 24:00")]
    StartsAtMidnightEnd(String),
    #[error("{0:?} is not an IANA time zone name")]
    Zone(String),
    #[error("a stored calendar does not have seven weekdays")]
    Week,
}

/// A calendar as stored: the zone by name, shifts as (start, end) minutes per
/// weekday from Monday, holidays as days from the common era.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CalendarRecord {
    pub zone: String,
    pub week: Vec<Vec<(u16, u16)>>,
    pub holidays: Vec<i32>,
}

/// Working hours and holidays in a time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    zone: Tz,
    /// Index 0 is Monday.
    week: [Vec<Shift>; 7],
    holidays: BTreeSet<NaiveDate>,
}

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

impl Calendar {
    pub fn new(
        zone: Tz,
        week: [Vec<Shift>; 7],
        holidays: BTreeSet<NaiveDate>,
    ) -> Result<Calendar, CalendarError> {
        for (day, shifts) in WEEKDAYS.iter().zip(&week) {
            for shift in shifts {
                let name = format!("{day} {:02}:{:02}", shift.start / 60, shift.start % 60);
                if shift.start % STEP_MINUTES != 0
                    || shift.end % STEP_MINUTES != 0
                    || shift.end > DAY_MINUTES
                {
                    return Err(CalendarError::Step(name));
                }
                if shift.start >= DAY_MINUTES {
                    return Err(CalendarError::StartsAtMidnightEnd(name));
                }
            }
        }
        Ok(Calendar {
            zone,
            week,
            holidays,
        })
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The shifts of each weekday, Monday first.
    pub fn week(&self) -> &[Vec<Shift>; 7] {
        &self.week
    }

    pub fn holidays(&self) -> &BTreeSet<NaiveDate> {
        &self.holidays
    }

    pub fn record(&self) -> CalendarRecord {
        CalendarRecord {
            zone: self.zone.name().to_owned(),
            week: self
                .week
                .iter()
                .map(|shifts| shifts.iter().map(|s| (s.start, s.end)).collect())
                .collect(),
            holidays: self.holidays.iter().map(|d| d.num_days_from_ce()).collect(),
        }
    }

    pub fn from_record(record: &CalendarRecord) -> Result<Calendar, CalendarError> {
        let zone: Tz = record
            .zone
            .parse()
            .map_err(|_| CalendarError::Zone(record.zone.clone()))?;
        let week: [Vec<Shift>; 7] = record
            .week
            .iter()
            .map(|shifts| {
                shifts
                    .iter()
                    .map(|&(start, end)| Shift { start, end })
                    .collect()
            })
            .collect::<Vec<_>>()
            .try_into()
            .map_err(|_| CalendarError::Week)?;
        let holidays = record
            .holidays
            .iter()
            .filter_map(|&days| NaiveDate::from_num_days_from_ce_opt(days))
            .collect();
        Calendar::new(zone, week, holidays)
    }

    /// Working time in `[from, to)`, in nanoseconds; 0 when `to <= from`.
    pub fn working_nanos(&self, from: Instant, to: Instant) -> i64 {
        self.working_intervals(from, to)
            .iter()
            .map(|(start, end)| end - start)
            .sum()
    }

    /// The latest instant `t` with `working_nanos(from, t) <= working`: a
    /// target of that much working time from `from` is met up to and including
    /// `t` and missed after it (so a target used up at the end of a shift has
    /// its deadline at the start of the next). `None` when the calendar does
    /// not have that much working time within ten years of `from`.
    pub fn deadline(&self, from: Instant, working: i64) -> Option<Instant> {
        const WEEK_NANOS: i64 = 7 * 86_400 * NANOS_PER_SECOND;
        const HORIZON_WEEKS: usize = 522;
        if self.week.iter().all(Vec::is_empty) {
            return None;
        }
        let mut remaining = working.max(0);
        let mut start = from.0;
        // The working time of a regular week (no holiday, one UTC offset):
        // any seven such days hold the weekly pattern exactly once, so a long
        // target skips them without building their intervals.
        let mut regular_week: Option<i64> = None;
        for _ in 0..HORIZON_WEEKS {
            let end = start.checked_add(WEEK_NANOS)?;
            let regular = self.is_regular(Instant(start), Instant(end));
            if let (true, Some(week)) = (regular, regular_week) {
                if week <= remaining {
                    remaining -= week;
                    start = end;
                    continue;
                }
            }
            let intervals = self.working_intervals(Instant(start), Instant(end));
            if regular {
                regular_week = Some(intervals.iter().map(|(a, b)| b - a).sum());
            }
            for (a, b) in intervals {
                if b - a > remaining {
                    return Some(Instant(a + remaining));
                }
                remaining -= b - a;
            }
            start = end;
        }
        None
    }

    /// No holiday and no change of UTC offset near `[from, to)`.
    fn is_regular(&self, from: Instant, to: Instant) -> bool {
        let local_date = |instant: Instant| self.zone.timestamp_nanos(instant.0).date_naive();
        let (first, last) = (
            local_date(from) - Duration::days(1),
            local_date(to) + Duration::days(1),
        );
        let (from_seconds, to_seconds) = (from.seconds(), to.seconds());
        self.holidays.range(first..=last).next().is_none()
            && self.offset_seconds(from_seconds - 2 * 86_400)
                == self.offset_seconds(to_seconds + 2 * 86_400)
    }

    /// The working time in `[from, to)` as sorted, disjoint UTC intervals
    /// (nanoseconds).
    fn working_intervals(&self, from: Instant, to: Instant) -> Vec<(i64, i64)> {
        if to <= from {
            return Vec::new();
        }
        let local_date = |instant: Instant| self.zone.timestamp_nanos(instant.0).date_naive();
        // A shift that starts the day before `from` may still run.
        let mut date = local_date(from) - Duration::days(1);
        let last = local_date(to);
        let mut intervals: Vec<(i64, i64)> = Vec::new();
        while date <= last {
            let weekday = date.weekday().num_days_from_monday() as usize;
            for shift in &self.week[weekday] {
                intervals.extend(self.shift_intervals(date, *shift));
            }
            date += Duration::days(1);
        }
        intervals.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(intervals.len());
        for (start, end) in intervals {
            let (start, end) = (start.max(from.0), end.min(to.0));
            if end <= start {
                continue;
            }
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
    }

    /// A shift on `date` as UTC intervals (nanoseconds), split at local midnight
    /// and without the parts on holidays.
    fn shift_intervals(&self, date: NaiveDate, shift: Shift) -> Vec<(i64, i64)> {
        let next = date + Duration::days(1);
        let at = |day: NaiveDate, minutes: u16| {
            day.and_hms_opt(0, 0, 0).unwrap_or_default() + Duration::minutes(i64::from(minutes))
        };
        let mut parts = Vec::with_capacity(2);
        if shift.overnight() {
            parts.push((date, at(date, shift.start), at(next, 0)));
            parts.push((next, at(next, 0), at(next, shift.end)));
        } else {
            parts.push((date, at(date, shift.start), at(date, shift.end)));
        }
        parts
            .into_iter()
            .filter(|(day, start, end)| start < end && !self.holidays.contains(day))
            .flat_map(|(_, start, end)| self.utc_intervals(start, end))
            .collect()
    }

    /// The instants whose local clock time lies in `[start, end)`, in UTC
    /// nanoseconds: one interval, or two around a DST change (a skipped hour
    /// has no instants, a repeated one has two).
    fn utc_intervals(&self, start: NaiveDateTime, end: NaiveDateTime) -> Vec<(i64, i64)> {
        let (start, end) = (start.and_utc().timestamp(), end.and_utc().timestamp());
        // Real zones change offset at most once in a few days: look two days
        // either side.
        let (low, high) = (start - 2 * 86_400, end + 2 * 86_400);
        let (before, after) = (self.offset_seconds(low), self.offset_seconds(high));
        let nanos = |(from, to): (i64, i64)| (from * NANOS_PER_SECOND, to * NANOS_PER_SECOND);
        if before == after {
            return vec![nanos((start - before, end - before))];
        }
        // The first second of the new offset.
        let (mut old, mut new) = (low, high);
        while new - old > 1 {
            let middle = old + (new - old) / 2;
            if self.offset_seconds(middle) == before {
                old = middle;
            } else {
                new = middle;
            }
        }
        let change = new;
        [
            (start - before, (end - before).min(change)),
            ((start - after).max(change), end - after),
        ]
        .into_iter()
        .filter(|(from, to)| from < to)
        .map(nanos)
        .collect()
    }

    /// Local time minus UTC at an instant, in seconds.
    fn offset_seconds(&self, utc_seconds: i64) -> i64 {
        let utc = chrono::DateTime::from_timestamp(utc_seconds, 0)
            .unwrap_or_default()
            .naive_utc();
        i64::from(
            self.zone
                .offset_from_utc_datetime(&utc)
                .fix()
                .local_minus_utc(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Timelike};
    use proptest::prelude::*;

    const HOUR: i64 = 3600 * NANOS_PER_SECOND;

    fn at(rfc3339: &str) -> Instant {
        Instant(
            DateTime::parse_from_rfc3339(rfc3339)
                .unwrap()
                .timestamp_nanos_opt()
                .unwrap(),
        )
    }

    fn shift(start: &str, end: &str) -> Shift {
        let minutes = |hhmm: &str| {
            let (h, m) = hhmm.split_once(':').unwrap();
            h.parse::<u16>().unwrap() * 60 + m.parse::<u16>().unwrap()
        };
        Shift {
            start: minutes(start),
            end: minutes(end),
        }
    }

    fn office(zone: Tz, holidays: &[&str]) -> Calendar {
        let day = vec![shift("09:00", "17:00")];
        Calendar::new(
            zone,
            [
                day.clone(),
                day.clone(),
                day.clone(),
                day.clone(),
                day,
                vec![],
                vec![],
            ],
            holidays.iter().map(|d| d.parse().unwrap()).collect(),
        )
        .unwrap()
    }

    fn hours(calendar: &Calendar, from: &str, to: &str) -> f64 {
        calendar.working_nanos(at(from), at(to)) as f64 / HOUR as f64
    }

    #[test]
    fn a_ticket_over_a_weekend_counts_friday_afternoon_and_monday_morning() {
        let berlin = office(chrono_tz::Europe::Berlin, &[]);
        // Friday 16:00 to Monday 10:00 local (UTC+1 in March).
        assert_eq!(
            hours(&berlin, "2026-03-06T15:00:00Z", "2026-03-09T09:00:00Z"),
            2.0
        );
        assert_eq!(
            hours(&berlin, "2026-03-07T10:00:00Z", "2026-03-08T20:00:00Z"),
            0.0
        );
    }

    #[test]
    fn a_deadline_skips_the_weekend_and_a_target_used_up_at_closing_waits_for_opening() {
        let berlin = office(chrono_tz::Europe::Berlin, &[]);
        // Two working hours from Friday 16:00 local: one on Friday, one on Monday.
        assert_eq!(
            berlin.deadline(at("2026-03-06T15:00:00Z"), 2 * HOUR),
            Some(at("2026-03-09T09:00:00Z"))
        );
        // One working hour from Friday 16:00 runs out at 17:00, and responding
        // at any time before Monday 09:00 still meets it.
        assert_eq!(
            berlin.deadline(at("2026-03-06T15:00:00Z"), HOUR),
            Some(at("2026-03-09T08:00:00Z"))
        );
        // Zero working time from Saturday: met until the office opens.
        assert_eq!(
            berlin.deadline(at("2026-03-07T12:00:00Z"), 0),
            Some(at("2026-03-09T08:00:00Z"))
        );
        let never = Calendar::new(chrono_tz::UTC, Default::default(), BTreeSet::new()).unwrap();
        assert_eq!(never.deadline(at("2026-03-07T12:00:00Z"), HOUR), None);
    }

    #[test]
    fn a_holiday_has_no_working_time() {
        let calendar = office(chrono_tz::UTC, &["2026-12-25"]);
        // Thursday 24 Dec 16:00 to Monday 28 Dec 10:00: 1 h + (Friday is a holiday) + 1 h.
        assert_eq!(
            hours(&calendar, "2026-12-24T16:00:00Z", "2026-12-28T10:00:00Z"),
            2.0
        );
    }

    #[test]
    fn working_time_follows_the_local_clock_across_a_dst_change() {
        let new_york = office(chrono_tz::America::New_York, &[]);
        // Friday 6 March 16:00 EST (21:00Z) to Monday 9 March 10:00 EDT (14:00Z):
        // the clocks moved on Sunday, the office hours did not.
        assert_eq!(
            hours(&new_york, "2026-03-06T21:00:00Z", "2026-03-09T14:00:00Z"),
            2.0
        );
        // A night shift on the night the clocks go forward is an hour shorter.
        let night = Calendar::new(
            chrono_tz::America::New_York,
            std::array::from_fn(|_| vec![shift("22:00", "06:00")]),
            BTreeSet::new(),
        )
        .unwrap();
        assert_eq!(
            hours(&night, "2026-03-08T00:00:00Z", "2026-03-08T12:00:00Z"),
            7.0
        );
        // ...and an hour longer on the night they go back.
        assert_eq!(
            hours(&night, "2026-11-01T00:00:00Z", "2026-11-01T14:00:00Z"),
            9.0
        );
    }

    #[test]
    fn an_overnight_shift_runs_into_the_next_day_and_stops_at_a_holiday() {
        let night = Calendar::new(
            chrono_tz::UTC,
            std::array::from_fn(|_| vec![shift("22:00", "06:00")]),
            ["2026-03-03".parse().unwrap()].into_iter().collect(),
        )
        .unwrap();
        // 2 March 20:00 to 3 March 08:00: 22:00-24:00 only (3 March is a holiday).
        assert_eq!(
            hours(&night, "2026-03-02T20:00:00Z", "2026-03-03T08:00:00Z"),
            2.0
        );
        // 1 March 23:00 to 2 March 05:00: all of it.
        assert_eq!(
            hours(&night, "2026-03-01T23:00:00Z", "2026-03-02T05:00:00Z"),
            6.0
        );
    }

    #[test]
    fn a_half_hour_zone_shifts_the_working_day() {
        let kolkata = office(chrono_tz::Asia::Kolkata, &[]);
        // 09:00-17:00 IST is 03:30-11:30 UTC.
        assert_eq!(
            hours(&kolkata, "2026-03-02T00:00:00Z", "2026-03-02T04:00:00Z"),
            0.5
        );
        assert_eq!(
            hours(&kolkata, "2026-03-02T11:00:00Z", "2026-03-02T23:59:00Z"),
            0.5
        );
    }

    #[test]
    fn bad_shift_boundaries_are_refused() {
        let with = |s: Shift| {
            let mut week: [Vec<Shift>; 7] = Default::default();
            week[2] = vec![s];
            Calendar::new(chrono_tz::UTC, week, BTreeSet::new())
        };
        assert!(with(Shift {
            start: 540,
            end: 1020
        })
        .is_ok());
        assert!(with(Shift {
            start: 545,
            end: 1020
        })
        .is_err());
        assert!(with(Shift {
            start: 540,
            end: 1445
        })
        .is_err());
        assert!(with(Shift {
            start: 1440,
            end: 60
        })
        .is_err());
    }

    /// The same rules, walked one UTC quarter-hour at a time: within a quarter
    /// the local clock never jumps (offsets and DST changes are whole quarters).
    fn by_quarters(calendar: &Calendar, week: &[Vec<Shift>; 7], from: i64, to: i64) -> i64 {
        let quarter = 900 * NANOS_PER_SECOND;
        let mut total = 0;
        let mut q = from.div_euclid(quarter) * quarter;
        while q < to {
            let local = calendar.zone.timestamp_nanos(q).naive_local();
            let date = local.date();
            let minute = (local.hour() * 60 + local.minute()) as u16;
            let today = &week[date.weekday().num_days_from_monday() as usize];
            let yesterday =
                &week[date.pred_opt().unwrap().weekday().num_days_from_monday() as usize];
            let working = !calendar.holidays.contains(&date)
                && (today.iter().any(|s| {
                    if s.overnight() {
                        minute >= s.start
                    } else {
                        s.start <= minute && minute < s.end
                    }
                }) || yesterday.iter().any(|s| s.overnight() && minute < s.end));
            if working {
                total += (q + quarter).min(to) - q.max(from);
            }
            q += quarter;
        }
        total
    }

    /// A calendar with holidays given as days after the date of `base`.
    fn generated(zone: Tz, week: &[Vec<Shift>; 7], base: i64, holidays: BTreeSet<i64>) -> Calendar {
        let first_day = DateTime::from_timestamp(base, 0).unwrap().date_naive();
        let holidays = holidays
            .into_iter()
            .map(|d| first_day + Duration::days(d))
            .collect();
        Calendar::new(zone, week.clone(), holidays).unwrap()
    }

    fn any_shift() -> impl Strategy<Value = Shift> {
        (0u16..96, 1u16..=96).prop_map(|(start, end)| Shift {
            start: start * STEP_MINUTES,
            end: end * STEP_MINUTES,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn working_time_equals_a_quarter_by_quarter_walk(
            week in prop::array::uniform7(prop::collection::vec(any_shift(), 0..3)),
            zone in prop::sample::select(vec![
                chrono_tz::UTC,
                chrono_tz::America::New_York,
                chrono_tz::Europe::London,
                chrono_tz::Asia::Kolkata,
                chrono_tz::Asia::Kathmandu,
                chrono_tz::Australia::Lord_Howe,
            ]),
            holidays in prop::collection::btree_set(0i64..40, 0..5),
            // Around both 2026 DST changes of the northern and southern zones.
            base in prop::sample::select(vec![1_772_323_200i64, 1_775_000_000, 1_792_800_000]),
            from_offset in 0i64..20 * 86_400,
            length in 0i64..12 * 86_400,
            nanos in 0i64..1_000_000_000,
        ) {
            let calendar = generated(zone, &week, base, holidays);
            let from = (base + from_offset) * NANOS_PER_SECOND + nanos;
            let to = from + length * NANOS_PER_SECOND;
            prop_assert_eq!(
                calendar.working_nanos(Instant(from), Instant(to)),
                by_quarters(&calendar, &week, from, to)
            );
        }

        #[test]
        fn a_deadline_is_the_last_moment_a_working_time_target_is_still_met(
            week in prop::array::uniform7(prop::collection::vec(any_shift(), 0..3)),
            zone in prop::sample::select(vec![
                chrono_tz::UTC,
                chrono_tz::America::New_York,
                chrono_tz::Asia::Kolkata,
                chrono_tz::Australia::Lord_Howe,
            ]),
            holidays in prop::collection::btree_set(0i64..40, 0..5),
            base in prop::sample::select(vec![1_772_323_200i64, 1_775_000_000, 1_792_800_000]),
            from_offset in 0i64..20 * 86_400,
            // Up to three working days, in whole seconds or exactly zero.
            target_seconds in prop::sample::select(vec![0i64, 1, 900, 3_600, 28_800, 86_400, 259_200]),
            probe_offset in 0i64..30 * 86_400,
            nanos in 0i64..1_000_000_000,
        ) {
            let calendar = generated(zone, &week, base, holidays);
            let from = (base + from_offset) * NANOS_PER_SECOND + nanos;
            let target = target_seconds * NANOS_PER_SECOND;
            let worked = |until: i64| by_quarters(&calendar, &week, from, until);
            match calendar.deadline(Instant(from), target) {
                Some(deadline) => {
                    prop_assert!(deadline.0 >= from);
                    prop_assert!(worked(deadline.0) <= target);
                    prop_assert!(worked(deadline.0 + 1) > target);
                    // Any other moment is met exactly when it is not after the deadline.
                    let probe = from + probe_offset * NANOS_PER_SECOND;
                    prop_assert_eq!(probe <= deadline.0, worked(probe) <= target);
                }
                None => prop_assert!(week.iter().all(Vec::is_empty)),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Targets of weeks to months of working time, which skip regular
        /// weeks whole, across DST changes and holidays; or more than the
        /// calendar gives in ten years.
        #[test]
        fn a_long_target_ends_where_the_quarter_walk_says(
            week in prop::array::uniform7(prop::collection::vec(any_shift(), 0..3)),
            zone in prop::sample::select(vec![
                chrono_tz::UTC,
                chrono_tz::America::New_York,
                chrono_tz::Australia::Lord_Howe,
            ]),
            holidays in prop::collection::btree_set(0i64..400, 0..12),
            from_offset in 0i64..20 * 86_400,
            target_days in prop::sample::select(vec![7i64, 30, 90]),
            probe_days in 0i64..1_200,
            nanos in 0i64..1_000_000_000,
        ) {
            let base = 1_767_225_600; // 2026-01-01
            let calendar = generated(zone, &week, base, holidays);
            let from = (base + from_offset) * NANOS_PER_SECOND + nanos;
            let target = target_days * 86_400 * NANOS_PER_SECOND;
            let worked = |until: i64| by_quarters(&calendar, &week, from, until);
            let probe = from + probe_days * 86_400 * NANOS_PER_SECOND;
            match calendar.deadline(Instant(from), target) {
                Some(deadline) => {
                    prop_assert!(worked(deadline.0) <= target);
                    prop_assert!(worked(deadline.0 + 1) > target);
                    prop_assert_eq!(probe <= deadline.0, worked(probe) <= target);
                }
                // Never used up within the ten years searched.
                None => prop_assert!(worked(probe) <= target),
            }
        }
    }
}
