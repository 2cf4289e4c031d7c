//! What a limit is: a scope (key, user, agent, model, upstream model) carries [`Limits`];
//! each limit is a meter (requests, tokens, nano-dollars) over a period (a rolling minute,
//! a UTC day, a UTC month, or the whole lifetime). Each becomes one shared bucket, named
//! so that every instance finds the same one.

pub use sluice_config::Limits;

/// What [`Limits`] (plain config data) mean to the engine: the meters and periods each
/// one sets.
pub trait LimitsExt {
    /// Whether no limit is set (the scope costs nothing to check).
    fn is_empty(&self) -> bool;

    /// Every limit set, as (meter, period, capacity).
    fn each(&self) -> impl Iterator<Item = (Meter, Period, u64)> + '_;

    /// Whether any limit is counted in this meter (so its estimate is worth computing).
    fn counts(&self, meter: Meter) -> bool;
}

impl LimitsExt for Limits {
    fn is_empty(&self) -> bool {
        self.each().next().is_none()
    }

    fn each(&self) -> impl Iterator<Item = (Meter, Period, u64)> + '_ {
        [
            (Meter::Requests, Period::Minute, self.rpm),
            (Meter::Tokens, Period::Minute, self.tpm),
            (Meter::UsdNanos, Period::Day, self.usd_day_nanos),
            (Meter::UsdNanos, Period::Month, self.usd_month_nanos),
            (Meter::UsdNanos, Period::Total, self.usd_total_nanos),
            (Meter::Tokens, Period::Day, self.tokens_day),
            (Meter::Tokens, Period::Month, self.tokens_month),
            (Meter::Tokens, Period::Total, self.tokens_total),
        ]
        .into_iter()
        .filter_map(|(m, p, v)| v.map(|v| (m, p, v)))
    }

    fn counts(&self, meter: Meter) -> bool {
        self.each().any(|(m, _, _)| m == meter)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Meter {
    Requests,
    Tokens,
    UsdNanos,
}

impl Meter {
    pub fn as_str(self) -> &'static str {
        match self {
            Meter::Requests => "requests",
            Meter::Tokens => "tokens",
            Meter::UsdNanos => "usd",
        }
    }
}

/// A rolling minute refills continuously (a token bucket holding a minute's quota); the
/// calendar periods (UTC) start empty at their first instant and never refill within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Minute,
    Day,
    Month,
    Total,
}

pub const DAY_MS: i64 = 86_400_000;

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Minute => "minute",
            Period::Day => "day",
            Period::Month => "month",
            Period::Total => "total",
        }
    }

    /// Units that come back per minute for a bucket of this capacity (rate limits only).
    pub fn refill_per_min(self, capacity: u64) -> u64 {
        match self {
            Period::Minute => capacity,
            _ => 0,
        }
    }

    /// The window containing `now_ms`: which one (a new window is a new, empty bucket)
    /// and when it ends. No allocation: it is computed for every limit of every request.
    pub fn window(self, now_ms: i64) -> Window {
        match self {
            Period::Minute | Period::Total => Window {
                period: self,
                key: 0,
                ends_ms: None,
            },
            Period::Day => {
                let day = now_ms.div_euclid(DAY_MS);
                Window {
                    period: self,
                    key: day,
                    ends_ms: Some((day + 1) * DAY_MS),
                }
            }
            Period::Month => {
                let (y, m, _) = civil_from_days(now_ms.div_euclid(DAY_MS));
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                Window {
                    period: self,
                    key: y * 12 + i64::from(m) - 1,
                    ends_ms: Some(days_from_civil(ny, nm, 1) * DAY_MS),
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub period: Period,
    /// Which window of the period: the day number, `year * 12 + month - 1`, or 0.
    pub key: i64,
    /// When the window ends (a budget's refusal says to come back then); `None` for the
    /// rolling minute and the lifetime.
    pub ends_ms: Option<i64>,
}

impl Window {
    /// The window's part of a bucket name: `min`, `total`, `d20417`, `m2026-11`.
    pub fn id(&self) -> String {
        match self.period {
            Period::Minute => "min".into(),
            Period::Total => "total".into(),
            Period::Day => format!("d{}", self.key),
            Period::Month => format!(
                "m{:04}-{:02}",
                self.key.div_euclid(12),
                self.key.rem_euclid(12) + 1
            ),
        }
    }
}

/// The bucket's name, shared by every instance: `scope/meter/window`.
pub fn bucket_name(scope: &str, meter: Meter, window: &Window) -> String {
    format!("{scope}/{}/{}", meter.as_str(), window.id())
}

/// (year, month 1-12, day 1-31) of a day number counted from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`; exact for the proleptic Gregorian calendar).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The inverse of [`civil_from_days`].
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_windows_roll_over_at_utc_midnight_and_month_start() {
        // 2026-11-30T23:59:59.999Z and one millisecond later.
        let last = days_from_civil(2026, 12, 1) * DAY_MS - 1;
        assert_eq!(civil_from_days(last.div_euclid(DAY_MS)), (2026, 11, 30));
        let day = Period::Day.window(last);
        let next_day = Period::Day.window(last + 1);
        assert_ne!(day.id(), next_day.id());
        assert_eq!(day.ends_ms, Some(last + 1));
        let month = Period::Month.window(last);
        assert_eq!(month.id(), "m2026-11");
        assert_eq!(month.ends_ms, Some(last + 1));
        assert_eq!(Period::Month.window(last + 1).id(), "m2026-12");
        // December rolls into January of the next year.
        let dec = days_from_civil(2026, 12, 15) * DAY_MS;
        assert_eq!(
            Period::Month.window(dec).ends_ms,
            Some(days_from_civil(2027, 1, 1) * DAY_MS)
        );
        assert_eq!(Period::Total.window(last), Period::Total.window(last + 1));
    }

    #[test]
    fn civil_dates_round_trip() {
        for z in [-1, 0, 59, 10_956, 11_016, 20_417, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn limits_list_what_is_set() {
        let l = Limits {
            rpm: Some(3),
            usd_day_nanos: Some(5),
            ..Limits::default()
        };
        let all: Vec<_> = l.each().collect();
        assert_eq!(
            all,
            vec![
                (Meter::Requests, Period::Minute, 3),
                (Meter::UsdNanos, Period::Day, 5)
            ]
        );
        assert!(l.counts(Meter::UsdNanos) && !l.counts(Meter::Tokens));
        assert!(Limits::default().is_empty());
    }
}
