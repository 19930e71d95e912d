//! Times as Thanos' block readers take them: RFC 3339 timestamps (`--min-time`, `--max-time`,
//! `thanos.upload_time` in meta.json), Prometheus durations (`2h`, `1d12h`, `2w`) and Thanos'
//! time-or-duration flag values (`2024-01-01T00:00:00Z` or `-2w`, relative to now).
//!
//! Parsing follows Go: RFC 3339 as `time.Parse(time.RFC3339, ...)` accepts it (a `T`
//! between date and time, optional fractional seconds, `Z` or `±hh:mm`, years 0000-9999), and
//! durations as `model.ParseDuration` from prometheus/common (integer counts, units from `y`
//! down to `ms`, each at most once and biggest first, `y` = 365 days). Timestamps are
//! milliseconds since the Unix epoch, like Prometheus' `timestamp.FromTime`.

use std::fmt;

/// Milliseconds in each Prometheus duration unit, biggest first: the order a duration must
/// spell them in.
const DURATION_UNITS: [(&str, i64); 7] = [
    ("y", 365 * 24 * 3_600_000),
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
];

/// Seconds from 0001-01-01T00:00:00Z (Go's zero `time.Time`) to the Unix epoch. A meta.json
/// written with an unset `upload_time` holds that instant.
const GO_ZERO_TIME_UNIX_SECONDS: i64 = -62_135_596_800;

/// A parsed RFC 3339 instant: whole seconds since the epoch (floored) and the nanoseconds
/// after them, as Go's `Time.Unix()` and `Time.Nanosecond()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant {
    pub unix_seconds: i64,
    pub nanos: u32,
}

impl Instant {
    /// Milliseconds since the epoch, truncating sub-millisecond digits like Prometheus.
    pub fn unix_millis(&self) -> i64 {
        self.unix_seconds * 1000 + i64::from(self.nanos / 1_000_000)
    }

    /// Is this Go's zero time (`time.Time{}.IsZero()`), which Go writes for "unset"?
    pub fn is_go_zero(&self) -> bool {
        self.unix_seconds == GO_ZERO_TIME_UNIX_SECONDS && self.nanos == 0
    }
}

/// Parses an RFC 3339 timestamp the way Go's `time.Parse(time.RFC3339, s)` does.
pub fn parse_rfc3339(s: &str) -> Result<Instant, String> {
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
    if matches!(b.get(at), Some(b'.') | Some(b',')) {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start {
            return Err(bad("empty fraction of a second"));
        }
        // Go keeps nanoseconds; digits past the ninth are dropped.
        let mut scaled: u32 = 0;
        for i in 0..9 {
            let d = b
                .get(start + i)
                .filter(|_| start + i < at)
                .map_or(0, |d| d - b'0');
            scaled = scaled * 10 + u32::from(d);
        }
        nanos = scaled;
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
    let days = days_from_civil(year, month, day);
    let unix_seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Ok(Instant {
        unix_seconds,
        nanos,
    })
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`), valid for year 0 too.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Parses a Prometheus duration (`model.ParseDuration`) into milliseconds.
pub fn parse_prometheus_duration(s: &str) -> Result<i64, String> {
    match s {
        "0" => return Ok(0),
        "" => return Err("empty duration string".into()),
        _ => {}
    }
    let bad = || format!("not a valid duration string: {s:?}");
    let mut rest = s;
    let mut total: i64 = 0;
    // Index in DURATION_UNITS of the last unit seen: each next one must come later.
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return Err(bad());
        }
        let count: i64 = rest[..digits_end]
            .parse()
            .map_err(|_| "duration out of range".to_string())?;
        rest = &rest[digits_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        if unit_end == 0 {
            return Err(bad());
        }
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let index = DURATION_UNITS
            .iter()
            .position(|(name, _)| *name == unit)
            .ok_or_else(|| format!("unknown unit {unit:?} in duration {s:?}"))?;
        if last_unit.is_some_and(|last| index <= last) {
            return Err(bad());
        }
        last_unit = Some(index);
        total = count
            .checked_mul(DURATION_UNITS[index].1)
            .and_then(|ms| total.checked_add(ms))
            // Go keeps durations in int64 nanoseconds.
            .filter(|ms| ms.checked_mul(1_000_000).is_some())
            .ok_or_else(|| "duration out of range".to_string())?;
    }
    Ok(total)
}

/// A Thanos time flag value (`model.TimeOrDurationValue`): a fixed instant, or a duration
/// relative to the moment it is evaluated (`-2w` is two weeks ago).
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
        if let Ok(t) = parse_rfc3339(s) {
            return Ok(TimeOrDuration::Time(t.unix_millis()));
        }
        let (negative, duration) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let ms = parse_prometheus_duration(duration)
            .map_err(|e| format!("{s:?} is neither an RFC 3339 time nor a duration: {e}"))?;
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

impl fmt::Display for TimeOrDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TimeOrDuration::Time(t) => write!(f, "{t}ms"),
            TimeOrDuration::Relative(d) if d < 0 => write!(f, "-{}ms", -d),
            TimeOrDuration::Relative(d) => write!(f, "{d}ms"),
        }
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_like_go() {
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:00Z").unwrap().unix_millis(),
            0
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20Z").unwrap().unix_millis(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20.123456789+01:00").unwrap(),
            Instant {
                unix_seconds: 1_700_000_000,
                nanos: 123_456_789
            }
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.5Z")
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
        assert!(parse_rfc3339("0001-01-01T00:00:00Z").unwrap().is_go_zero());
        // Before the epoch, seconds floor like Go's Time.Unix().
        assert_eq!(
            parse_rfc3339("1969-12-31T23:59:59.5Z").unwrap(),
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
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn durations_like_prometheus() {
        assert_eq!(parse_prometheus_duration("0").unwrap(), 0);
        assert_eq!(parse_prometheus_duration("2h").unwrap(), 7_200_000);
        assert_eq!(parse_prometheus_duration("1d12h").unwrap(), 129_600_000);
        assert_eq!(parse_prometheus_duration("2w").unwrap(), 1_209_600_000);
        assert_eq!(parse_prometheus_duration("1y").unwrap(), 31_536_000_000);
        assert_eq!(parse_prometheus_duration("1m30s500ms").unwrap(), 90_500);
        for bad in ["", "h", "1.5h", "30m1h", "1h1h", "5x", "-1h", "10"] {
            assert!(parse_prometheus_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_prometheus_duration("300y").is_err(), "past int64 ns");
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
}
