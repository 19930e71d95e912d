//! Timestamps: milliseconds since the Unix epoch, as Prometheus keeps them, to and from civil
//! dates and RFC 3339 text. Dates are proleptic Gregorian (Howard Hinnant's `days_from_civil`
//! and `civil_from_days` algorithms), valid over the whole `i64` millisecond range.

/// Days since 1970-01-01 of a date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    // Months counted from March, so the leap day is the last day of the year.
    let mp = (month as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month 1-12, day 1-31) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
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

pub fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Milliseconds since the epoch as RFC 3339 in UTC, with the fraction Go's `RFC3339Nano`
/// prints (trailing zeros dropped): `2024-01-02T03:04:05.12Z`.
pub fn format_rfc3339(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, frac) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    let mut out = format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}");
    if frac != 0 {
        let f = format!("{frac:03}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Seconds from 0001-01-01T00:00:00Z (Go's zero `time.Time`) to the Unix epoch. A meta.json
/// written with an unset `upload_time` holds that instant.
const GO_ZERO_TIME_UNIX_SECONDS: i64 = -62_135_596_800;

/// An RFC 3339 instant: whole seconds since the epoch (floored) and the nanoseconds after them,
/// as Go's `Time.Unix()` and `Time.Nanosecond()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant {
    pub unix_seconds: i64,
    pub nanos: u32,
}

impl Instant {
    /// Milliseconds since the epoch, sub-millisecond digits truncated as Prometheus does.
    pub fn unix_millis(&self) -> i64 {
        self.unix_seconds * 1000 + i64::from(self.nanos / 1_000_000)
    }

    /// Is this Go's zero time (`time.Time{}.IsZero()`), which Go writes for "unset"?
    pub fn is_go_zero(&self) -> bool {
        self.unix_seconds == GO_ZERO_TIME_UNIX_SECONDS && self.nanos == 0
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses RFC 3339 as Go's `time.Parse(time.RFC3339, s)` accepts it: `T` between date and
/// time, optional fractional seconds (nanoseconds kept, further digits dropped), `Z` or
/// `±hh:mm`, years 0000-9999, days checked against their month.
pub fn parse_rfc3339_instant(s: &str) -> Result<Instant, String> {
    let bad = |why: &str| format!("invalid RFC 3339 time {s:?}: {why}");
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = b.get(range).ok_or_else(|| bad("too short"))?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(bad("expected digits"));
        }
        Ok(part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let expect = |at: usize, c: u8| -> Result<(), String> {
        if b.get(at) == Some(&c) {
            Ok(())
        } else {
            Err(bad(&format!("expected {:?} at byte {at}", c as char)))
        }
    };
    let year = digits(0..4)?;
    expect(4, b'-')?;
    let month = digits(5..7)?;
    expect(7, b'-')?;
    let day = digits(8..10)?;
    expect(10, b'T')?;
    let hour = digits(11..13)?;
    expect(13, b':')?;
    let minute = digits(14..16)?;
    expect(16, b':')?;
    let second = digits(17..19)?;
    if !(1..=12).contains(&month) {
        return Err(bad("month out of range"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(bad("day out of range"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(bad("time of day out of range"));
    }
    let mut at = 19;
    let mut nanos: u32 = 0;
    if matches!(b.get(at), Some(b'.' | b',')) {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start {
            return Err(bad("empty fraction of a second"));
        }
        nanos = (0..9).fold(0u32, |n, i| {
            let d = if start + i < at {
                b[start + i] - b'0'
            } else {
                0
            };
            n * 10 + u32::from(d)
        });
    }
    let offset_seconds = match &b[at..] {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), ..] if b.len() == at + 6 => {
            let hours = digits(at + 1..at + 3)?;
            expect(at + 3, b':')?;
            let minutes = digits(at + 4..at + 6)?;
            if hours > 23 || minutes > 59 {
                return Err(bad("zone offset out of range"));
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return Err(bad("expected Z or a ±hh:mm zone offset at the end")),
    };
    let days = days_from_civil(year, month as u32, day as u32);
    let unix_seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Ok(Instant {
        unix_seconds,
        nanos,
    })
}

/// Parses RFC 3339 (`2024-01-02T03:04:05.123Z`, `...+02:00`) into ms; digits below the
/// millisecond are dropped.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    parse_rfc3339_instant(s).ok().map(|t| t.unix_millis())
}

/// A Thanos time flag value (`model.TimeOrDurationValue`, `--min-time`, `--max-time`): a fixed
/// instant, or a duration relative to the moment it is evaluated (`-2w` is two weeks ago).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeOrDuration {
    /// Milliseconds since the epoch.
    Time(i64),
    /// Milliseconds added to now (negative for the past).
    Relative(i64),
}

impl TimeOrDuration {
    /// Thanos' default `--min-time`: `0000-01-01T00:00:00Z`.
    pub const EARLIEST: TimeOrDuration = TimeOrDuration::Time(-62_167_219_200_000);
    /// Thanos' default `--max-time`: `9999-12-31T23:59:59Z`.
    pub const LATEST: TimeOrDuration = TimeOrDuration::Time(253_402_300_799_000);

    /// Parses a flag value: RFC 3339 first, else an optionally negative Prometheus duration.
    pub fn parse(s: &str) -> Result<TimeOrDuration, String> {
        if let Some(t) = parse_rfc3339(s) {
            return Ok(TimeOrDuration::Time(t));
        }
        let (negative, duration) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let ms = crate::duration::parse(duration)
            .map_err(|e| format!("{s:?} is neither an RFC 3339 time nor a duration: {e}"))?
            .as_millis();
        Ok(TimeOrDuration::Relative(if negative { -ms } else { ms }))
    }

    /// The Prometheus timestamp (ms) this value stands for when "now" is `now_ms`.
    pub fn timestamp_ms(&self, now_ms: i64) -> i64 {
        match *self {
            TimeOrDuration::Time(t) => t,
            TimeOrDuration::Relative(d) => now_ms.saturating_add(d),
        }
    }
}

impl std::str::FromStr for TimeOrDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TimeOrDuration::parse(s)
    }
}

impl std::fmt::Display for TimeOrDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            TimeOrDuration::Time(t) => write!(f, "{t}ms"),
            TimeOrDuration::Relative(d) if d < 0 => write!(f, "-{}ms", -d),
            TimeOrDuration::Relative(d) => write!(f, "{d}ms"),
        }
    }
}

/// Milliseconds since the epoch now.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(
            format_rfc3339(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.12Z"),
            Some(1_700_000_000_120)
        );
        assert_eq!(
            parse_rfc3339("2023-11-15T00:13:20+02:00"),
            Some(1_700_000_000_000)
        );
        assert_eq!(parse_rfc3339("2023-11-14 22:13:20Z"), None);
        assert!(is_leap_year(2000) && !is_leap_year(1900) && is_leap_year(2024));
    }

    #[test]
    fn rfc3339_like_go() {
        assert_eq!(
            parse_rfc3339_instant("1970-01-01T00:00:00Z")
                .unwrap()
                .unix_millis(),
            0
        );
        assert_eq!(
            parse_rfc3339_instant("2023-11-14T22:13:20Z")
                .unwrap()
                .unix_millis(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_rfc3339_instant("2023-11-14T23:13:20.123456789+01:00").unwrap(),
            Instant {
                unix_seconds: 1_700_000_000,
                nanos: 123_456_789
            }
        );
        assert_eq!(
            parse_rfc3339_instant("2023-11-14T22:13:20.5Z")
                .unwrap()
                .unix_millis(),
            1_700_000_000_500
        );
        // Thanos' default --min-time and --max-time, and Go's zero time.
        assert_eq!(
            TimeOrDuration::parse("0000-01-01T00:00:00Z").unwrap(),
            TimeOrDuration::EARLIEST
        );
        assert_eq!(
            TimeOrDuration::parse("9999-12-31T23:59:59Z").unwrap(),
            TimeOrDuration::LATEST
        );
        assert!(parse_rfc3339_instant("0001-01-01T00:00:00Z")
            .unwrap()
            .is_go_zero());
        // Before the epoch, seconds floor like Go's Time.Unix().
        assert_eq!(
            parse_rfc3339_instant("1969-12-31T23:59:59.5Z").unwrap(),
            Instant {
                unix_seconds: -1,
                nanos: 500_000_000
            }
        );
        for bad in [
            "2023-11-14 22:13:20Z",
            "2023-11-14T22:13:20",
            "2023-02-29T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:13:20+0100",
            "2023-11-14T22:13:20.Z",
            "",
        ] {
            assert!(parse_rfc3339_instant(bad).is_err(), "{bad}");
        }
        assert!(parse_rfc3339_instant("2024-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn time_or_duration_flags() {
        assert_eq!(
            TimeOrDuration::parse("-2w").unwrap(),
            TimeOrDuration::Relative(-1_209_600_000)
        );
        assert_eq!(
            TimeOrDuration::parse("-1d")
                .unwrap()
                .timestamp_ms(100_000_000),
            100_000_000 - 86_400_000
        );
        assert_eq!(
            TimeOrDuration::parse("3h").unwrap(),
            TimeOrDuration::Relative(10_800_000)
        );
        assert_eq!(
            TimeOrDuration::parse("2023-11-14T22:13:20Z")
                .unwrap()
                .timestamp_ms(5),
            1_700_000_000_000
        );
        assert!(TimeOrDuration::parse("yesterday").is_err());
        assert!(TimeOrDuration::parse("-").is_err());
    }

    proptest! {
        #[test]
        fn civil_round_trips(days in -100_000_000i64..100_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }

        #[test]
        fn rfc3339_round_trips(ms in -62_135_596_800_000i64..253_402_300_799_999) {
            prop_assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Some(ms));
        }
    }
}
