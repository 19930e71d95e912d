//! Durations in Prometheus' grammar (`model.ParseDuration` of prometheus/common), the one
//! grammar of every duration Cairn reads: flags, `objstore.yml`, query parameters, PromQL.
//!
//! ```text
//! duration := "0" | (number unit)+       units in this order, each at most once:
//! unit     := "y" | "w" | "d" | "h" | "m" | "s" | "ms"
//! ```
//! A year is 365 days, a week 7 days. The total must fit Go's `time.Duration` (an int64 count
//! of nanoseconds, about 292 years); a longer one is refused rather than wrapped.

use std::fmt;

/// Nanoseconds per unit, in the order the grammar requires them.
const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 86_400 * 1_000_000_000),
    ("w", 7 * 86_400 * 1_000_000_000),
    ("d", 86_400 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
];

/// Go's `time.Duration` limit: the largest int64 count of nanoseconds.
const MAX_NANOS: u64 = i64::MAX as u64;

/// Why a duration does not parse. The messages are Prometheus'.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration string")]
    Empty,
    /// Not of the grammar: a missing number or unit, or units out of order or repeated.
    #[error("not a valid duration string: {0:?}")]
    Invalid(String),
    #[error("unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit { unit: String, input: String },
    #[error("duration out of range")]
    OutOfRange,
}

/// A parsed duration: nanoseconds, at most `i64::MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct PromDuration {
    nanos: u64,
}

impl PromDuration {
    pub fn as_nanos(self) -> u64 {
        self.nanos
    }

    /// Whole milliseconds (the grammar's smallest unit, so nothing is lost).
    pub fn as_millis(self) -> i64 {
        (self.nanos / 1_000_000) as i64
    }

    pub fn as_secs_f64(self) -> f64 {
        self.nanos as f64 / 1e9
    }

    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.nanos)
    }
}

impl fmt::Display for PromDuration {
    /// Prints the duration back in the grammar, largest units first (`1h30m`, `0s`), as
    /// Prometheus' `model.Duration.String` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.nanos / 1_000_000;
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, nanos) in UNITS {
            let unit_ms = nanos / 1_000_000;
            if ms >= unit_ms {
                write!(f, "{}{unit}", ms / unit_ms)?;
                ms %= unit_ms;
            }
        }
        Ok(())
    }
}

/// Parses a duration of Prometheus' grammar.
pub fn parse(input: &str) -> Result<PromDuration, DurationError> {
    if input == "0" {
        return Ok(PromDuration::default());
    }
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    let invalid = || DurationError::Invalid(input.to_string());
    let bytes = input.as_bytes();
    let mut at = 0;
    let mut total: u64 = 0;
    // Index into UNITS of the next unit allowed: each must come after the previous one.
    let mut next_unit = 0;
    while at < bytes.len() {
        let digits_start = at;
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            at += 1;
        }
        if at == digits_start {
            return Err(invalid());
        }
        let value: u64 = input[digits_start..at]
            .parse()
            .map_err(|_| DurationError::OutOfRange)?;
        let unit_start = at;
        while at < bytes.len() && !bytes[at].is_ascii_digit() {
            at += 1;
        }
        let unit = &input[unit_start..at];
        if unit.is_empty() {
            return Err(invalid());
        }
        let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(DurationError::UnknownUnit {
                unit: unit.to_string(),
                input: input.to_string(),
            });
        };
        if index < next_unit {
            return Err(invalid());
        }
        next_unit = index + 1;
        total = value
            .checked_mul(UNITS[index].1)
            .and_then(|n| total.checked_add(n))
            .filter(|&n| n <= MAX_NANOS)
            .ok_or(DurationError::OutOfRange)?;
    }
    Ok(PromDuration { nanos: total })
}

/// [`parse`] into a `std::time::Duration` (flags, configuration files).
pub fn parse_std(input: &str) -> Result<std::time::Duration, DurationError> {
    parse(input).map(PromDuration::to_std)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(s: &str) -> i64 {
        parse(s).unwrap().as_millis()
    }

    #[test]
    fn the_grammar() {
        assert_eq!(ms("0"), 0);
        assert_eq!(ms("0s"), 0);
        assert_eq!(ms("250ms"), 250);
        assert_eq!(ms("90s"), 90_000);
        assert_eq!(ms("1h30m"), 5_400_000);
        assert_eq!(ms("1d2h"), 93_600_000);
        assert_eq!(ms("2w"), 14 * 86_400_000);
        assert_eq!(ms("1y"), 365 * 86_400_000);
        assert_eq!(
            ms("1y2w3d4h5m6s7ms"),
            31_536_000_000 + 1_209_600_000 + 259_200_000 + 14_400_000 + 300_000 + 6_000 + 7
        );
        assert_eq!(parse(""), Err(DurationError::Empty));
        for bad in ["30m1h", "1h1h", "h", "5", "1.5s", " 1s", "-1s", "1s "] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse("5x"),
            Err(DurationError::UnknownUnit {
                unit: "x".into(),
                input: "5x".into()
            })
        );
    }

    #[test]
    fn refuses_what_does_not_fit_an_int64_of_nanoseconds() {
        assert_eq!(ms("292y"), 292 * 31_536_000_000);
        assert_eq!(parse("293y"), Err(DurationError::OutOfRange));
        assert_eq!(
            parse("99999999999999999999s"),
            Err(DurationError::OutOfRange)
        );
        assert_eq!(
            parse("106751d23h47m16s854ms").unwrap().as_nanos(),
            9_223_372_036_854_000_000
        );
        assert_eq!(
            parse("106751d23h47m16s855ms"),
            Err(DurationError::OutOfRange)
        );
    }

    #[test]
    fn prints_back_in_the_grammar() {
        for s in ["0s", "250ms", "1m30s", "1h", "2d3h", "1y1w1d1h1m1s1ms"] {
            assert_eq!(parse(s).unwrap().to_string(), s);
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(ms in 0i64..9_000_000_000_000) {
            let d = parse(&format!("{ms}ms")).unwrap();
            prop_assert_eq!(parse(&d.to_string()).unwrap(), d);
        }

        #[test]
        fn never_panics(s in "\\PC{0,20}") {
            let _ = parse(&s);
        }
    }
}
