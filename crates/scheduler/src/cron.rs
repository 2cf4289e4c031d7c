//! The fires of a schedule's cron pattern, in UTC, over epoch milliseconds. croner is
//! generic over its clock ([`CronDateTime`]); it is given [`UtcSecond`], a UTC instant to
//! the second, rather than a time library. UTC has no skipped or repeated hours, so every
//! wall-clock time croner asks about is exactly one instant.

use std::cmp::Ordering;

use croner::errors::CronError;
use croner::{CivilDate, CivilDateTime, CivilTime, Cron, CronDateTime, Resolution, Weekday};
use sluice_limits::spec::{civil_from_days, days_from_civil};

const DAY_S: i64 = 86_400;

/// A UTC instant to the second: cron patterns match nothing finer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UtcSecond(i64);

/// The parts of a time of day (seconds since midnight, `0..86_400`).
fn hms(secs: i64) -> (u32, u32, u32) {
    let part = |v: i64| u32::try_from(v).unwrap_or(0);
    (part(secs / 3600), part(secs % 3600 / 60), part(secs % 60))
}

impl CronDateTime for UtcSecond {
    fn to_civil(&self) -> CivilDateTime {
        let (y, m, d) = civil_from_days(self.0.div_euclid(DAY_S));
        let (h, mi, s) = hms(self.0.rem_euclid(DAY_S));
        // Years past i32 are more than two million years away: croner's search gives up
        // long before (it looks at most a year ahead).
        let year = i32::try_from(y).unwrap_or(if y < 0 { i32::MIN } else { i32::MAX });
        CivilDateTime::new(
            CivilDate::from_parts_unchecked(year, m, d),
            CivilTime::from_parts_unchecked(h, mi, s),
        )
    }

    fn civil_weekday(&self) -> Weekday {
        // 1970-01-01 was a Thursday.
        let days = self.0.div_euclid(DAY_S);
        Weekday::from_days_from_sunday(u32::try_from((days + 4).rem_euclid(7)).unwrap_or(0))
    }

    fn resolve_civil(&self, civil: CivilDateTime) -> Result<Resolution<Self>, CronError> {
        let days = days_from_civil(i64::from(civil.year()), civil.month(), civil.day());
        let secs = i64::from(civil.hour()) * 3600
            + i64::from(civil.minute()) * 60
            + i64::from(civil.second());
        days.checked_mul(DAY_S)
            .and_then(|d| d.checked_add(secs))
            .map(|t| Resolution::Single(UtcSecond(t)))
            .ok_or(CronError::InvalidDate)
    }

    fn checked_add_seconds(&self, seconds: i64) -> Option<Self> {
        self.0.checked_add(seconds).map(UtcSecond)
    }

    fn cmp_instant(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

/// The first fire of `cron` strictly after `after_ms` (epoch milliseconds, UTC), or `None`
/// when the pattern has none (30 February).
pub fn next_fire(cron: &Cron, after_ms: i64) -> Option<i64> {
    // The second `after_ms` falls in is excluded too: a fire is always on a whole second.
    let from = UtcSecond(after_ms.div_euclid(1000));
    let at = cron.find_next_occurrence(&from, false).ok()?;
    at.0.checked_mul(1000)
}

/// An instant as `2026-11-30T09:00:00Z`, for people (the CLI, the log).
pub fn utc_text(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(DAY_S));
    let (h, mi, s) = hms(secs.rem_euclid(DAY_S));
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_config::parse_cron;

    /// Epoch ms of a UTC date and time.
    fn at(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64) -> i64 {
        (days_from_civil(y, mo, d) * DAY_S + h * 3600 + mi * 60 + s) * 1000
    }

    fn next(pattern: &str, after_ms: i64) -> Option<String> {
        next_fire(&parse_cron(pattern).unwrap(), after_ms).map(utc_text)
    }

    #[test]
    fn instants_are_written_in_utc() {
        assert_eq!(utc_text(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            utc_text(at(2024, 2, 29, 23, 59, 59) + 999),
            "2024-02-29T23:59:59Z"
        );
        assert_eq!(utc_text(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn a_fire_is_strictly_after_the_instant_given() {
        let ten = at(2026, 11, 27, 10, 0, 0);
        assert_eq!(
            next("*/15 * * * * *", ten + 7_500).as_deref(),
            Some("2026-11-27T10:00:15Z")
        );
        assert_eq!(
            next("*/15 * * * * *", ten + 15_000).as_deref(),
            Some("2026-11-27T10:00:30Z"),
            "a fire at the instant itself is the one just made"
        );
        assert_eq!(
            next("*/15 * * * * *", ten + 14_999).as_deref(),
            Some("2026-11-27T10:00:15Z")
        );
        assert_eq!(
            next("* * * * * *", ten + 500).as_deref(),
            Some("2026-11-27T10:00:01Z"),
            "every second"
        );
    }

    #[test]
    fn five_fields_fire_on_the_minute() {
        // 2026-11-27 is a Friday: weekdays at 09:00 next fire on Monday.
        assert_eq!(
            next("0 9 * * 1-5", at(2026, 11, 27, 10, 0, 0)).as_deref(),
            Some("2026-11-30T09:00:00Z")
        );
        assert_eq!(
            next("0 9 * * MON-FRI", at(2026, 11, 27, 8, 59, 59)).as_deref(),
            Some("2026-11-27T09:00:00Z")
        );
        assert_eq!(
            next("*/5 * * * *", at(2026, 1, 1, 0, 3, 0)).as_deref(),
            Some("2026-01-01T00:05:00Z")
        );
    }

    #[test]
    fn aliases_and_weekdays_follow_the_calendar() {
        // The epoch was a Thursday: @weekly is Sunday midnight.
        assert_eq!(next("@weekly", 0).as_deref(), Some("1970-01-04T00:00:00Z"));
        assert_eq!(
            next("@daily", at(2026, 12, 31, 12, 0, 0)).as_deref(),
            Some("2027-01-01T00:00:00Z")
        );
        assert_eq!(
            next("@monthly", at(2026, 1, 31, 0, 0, 0)).as_deref(),
            Some("2026-02-01T00:00:00Z")
        );
        assert_eq!(
            next("@yearly", at(2026, 6, 1, 0, 0, 0)).as_deref(),
            Some("2027-01-01T00:00:00Z")
        );
        assert_eq!(
            next("@hourly", at(2026, 6, 1, 23, 30, 0)).as_deref(),
            Some("2026-06-02T00:00:00Z")
        );
    }

    #[test]
    fn month_ends_are_skipped_or_found_as_the_calendar_says() {
        // The 31st: April has none, so May.
        assert_eq!(
            next("0 0 31 * *", at(2026, 4, 1, 0, 0, 0)).as_deref(),
            Some("2026-05-31T00:00:00Z")
        );
        // The last day of the month (`L`).
        assert_eq!(
            next("0 0 L * *", at(2026, 4, 10, 0, 0, 0)).as_deref(),
            Some("2026-04-30T00:00:00Z")
        );
        assert_eq!(
            next("0 0 L 2 *", at(2026, 1, 10, 0, 0, 0)).as_deref(),
            Some("2026-02-28T00:00:00Z")
        );
        assert_eq!(
            next("0 0 L 2 *", at(2028, 1, 10, 0, 0, 0)).as_deref(),
            Some("2028-02-29T00:00:00Z")
        );
        // The last second of a year, with seconds.
        assert_eq!(
            next("59 59 23 31 12 *", at(2026, 12, 31, 23, 59, 58)).as_deref(),
            Some("2026-12-31T23:59:59Z")
        );
        assert_eq!(
            next("59 59 23 31 12 *", at(2026, 12, 31, 23, 59, 59)).as_deref(),
            Some("2027-12-31T23:59:59Z")
        );
    }

    #[test]
    fn the_29th_of_february_waits_for_a_leap_year() {
        assert_eq!(
            next("0 12 29 2 *", at(2027, 3, 1, 0, 0, 0)).as_deref(),
            Some("2028-02-29T12:00:00Z")
        );
        assert_eq!(
            next("0 12 29 2 *", at(2028, 2, 29, 11, 0, 0)).as_deref(),
            Some("2028-02-29T12:00:00Z")
        );
        // 2100 is no leap year (divisible by 100, not by 400): eight years to wait.
        assert_eq!(
            next("0 12 29 2 *", at(2097, 3, 1, 0, 0, 0)).as_deref(),
            Some("2104-02-29T12:00:00Z")
        );
        assert_eq!(
            next("0 0 1 3 *", at(2100, 2, 28, 12, 0, 0)).as_deref(),
            Some("2100-03-01T00:00:00Z")
        );
    }

    #[test]
    fn a_pattern_that_never_fires_has_no_next_fire() {
        assert_eq!(next("0 0 30 2 *", at(2026, 1, 1, 0, 0, 0)), None);
    }
}
