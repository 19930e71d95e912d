//! Request parameters as the Prometheus HTTP API reads them: from the URL query and, for POST,
//! an `application/x-www-form-urlencoded` body (body values first, as Go's `FormValue`), with
//! Prometheus' time and duration syntax.

use crate::error::{Classify, StatusClass};

/// Why a parameter (or the form holding it) cannot be read. Each variant carries the text that
/// was refused; the API adds the parameter's name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("invalid URL escape {escape:?}")]
    InvalidEscape { escape: String },
    #[error("invalid UTF-8 in {component:?}")]
    InvalidUtf8 { component: String },
    #[error("form body is not UTF-8")]
    FormNotUtf8,
    #[error("cannot parse {value:?} to a valid timestamp")]
    InvalidTime { value: String },
    #[error("cannot parse {value:?} to a valid duration. It overflows int64")]
    DurationOverflow { value: String },
    #[error("cannot parse {value:?} to a valid duration")]
    InvalidDuration { value: String },
}

impl Classify for ParamError {
    fn class(&self) -> StatusClass {
        StatusClass::BadData
    }
}

/// An error equals the text it displays.
impl PartialEq<&str> for ParamError {
    fn eq(&self, other: &&str) -> bool {
        let text = self.to_string();
        text.as_str() == *other
    }
}

/// The parameters of one request, and the tenant its header named (kept apart from the
/// parameters, so no URL can set it).
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>, Option<String>);

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space).
pub fn url_decode(s: &str) -> Result<String, ParamError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let (Some(h), Some(l)) = (
                    b.get(i + 1).copied().and_then(hex),
                    b.get(i + 2).copied().and_then(hex),
                ) else {
                    let end = (i + 3).min(b.len());
                    return Err(ParamError::InvalidEscape {
                        escape: String::from_utf8_lossy(&b[i..end]).into_owned(),
                    });
                };
                out.push(h << 4 | l);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ParamError::InvalidUtf8 {
        component: s.to_string(),
    })
}

fn parse_pairs(s: &str, out: &mut Vec<(String, String)>) -> Result<(), ParamError> {
    for part in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((url_decode(k)?, url_decode(v)?));
    }
    Ok(())
}

impl Params {
    /// The tenant named by the request's tenant header.
    pub fn tenant(&self) -> Option<&str> {
        self.1.as_deref()
    }

    pub fn set_tenant(&mut self, tenant: Option<String>) {
        self.1 = tenant;
    }

    /// Parses the URL query and a form body (body values come first).
    pub fn parse(query: Option<&str>, form_body: Option<&[u8]>) -> Result<Params, ParamError> {
        let mut pairs = Vec::new();
        if let Some(body) = form_body {
            let body = std::str::from_utf8(body).map_err(|_| ParamError::FormNotUtf8)?;
            parse_pairs(body, &mut pairs)?;
        }
        if let Some(q) = query {
            parse_pairs(q, &mut pairs)?;
        }
        Ok(Params(pairs, None))
    }

    /// The first value of `name`, if any and not empty (Go's `FormValue` then says "").
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Prometheus' default start of optional time ranges (its `MinTime`), in ms.
pub const MIN_TIME_MS: i64 = (i64::MIN / 1000 + 62_135_596_801) * 1000;
/// Prometheus' default end of optional time ranges (its `MaxTime`), in ms.
pub const MAX_TIME_MS: i64 = (i64::MAX / 1000 - 62_135_596_801) * 1000 + 999;
const MIN_TIME_TEXT: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_TEXT: &str = "292277025-08-18T07:12:54.999999999Z";

pub use model::time::{format_rfc3339, parse_rfc3339};

/// Parses a time parameter: float seconds since the epoch (rounded to ms as Prometheus does),
/// RFC 3339, or Prometheus' own min/max time strings.
pub fn parse_time(s: &str) -> Result<i64, ParamError> {
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() {
            let secs = f.trunc();
            let frac = ((f - secs) * 1000.0).round();
            let ms = secs * 1000.0 + frac;
            if ms.abs() < 9.2e18 {
                return Ok(ms as i64);
            }
        }
    }
    if let Some(ms) = parse_rfc3339(s) {
        return Ok(ms);
    }
    match s {
        MIN_TIME_TEXT => Ok(MIN_TIME_MS),
        MAX_TIME_TEXT => Ok(MAX_TIME_MS),
        _ => Err(ParamError::InvalidTime {
            value: s.to_string(),
        }),
    }
}

/// Parses a duration parameter: float seconds or a Prometheus duration, into ms.
pub fn parse_duration(s: &str) -> Result<i64, ParamError> {
    if let Ok(f) = s.parse::<f64>() {
        let ms = f * 1000.0;
        if !ms.is_finite() || ms.abs() > i64::MAX as f64 / 1e6 {
            return Err(ParamError::DurationOverflow {
                value: s.to_string(),
            });
        }
        return Ok(ms.round() as i64);
    }
    model::duration::parse(s)
        .map(|d| d.as_millis())
        .map_err(|_| ParamError::InvalidDuration {
            value: s.to_string(),
        })
}

/// Parses a Go `strconv.ParseBool` boolean.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_and_query_values_body_first() {
        let p = Params::parse(
            Some("query=up&match%5B%5D=a&match[]=b&x="),
            Some(b"query=rate%28x%5B5m%5D%29+%2B+1&time=1.5"),
        )
        .unwrap();
        assert_eq!(p.get("query"), Some("rate(x[5m]) + 1"));
        assert_eq!(p.get("time"), Some("1.5"));
        assert_eq!(p.all("match[]"), ["a", "b"]);
        assert_eq!(p.get("x"), None);
        assert!(Params::parse(Some("a=%zz"), None).is_err());
    }

    #[test]
    fn times_like_prometheus() {
        assert_eq!(parse_time("1435781451.781").unwrap(), 1_435_781_451_781);
        assert_eq!(parse_time("1435781451").unwrap(), 1_435_781_451_000);
        assert_eq!(parse_time("-1.5").unwrap(), -1500);
        assert_eq!(parse_time("1.0006").unwrap(), 1001);
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z").unwrap(),
            1_435_781_451_781
        );
        assert_eq!(
            parse_time("2015-07-01T22:10:51.781+02:00").unwrap(),
            1_435_781_451_781
        );
        assert_eq!(parse_time(MIN_TIME_TEXT).unwrap(), MIN_TIME_MS);
        assert_eq!(parse_time(MAX_TIME_TEXT).unwrap(), MAX_TIME_MS);
        assert_eq!(
            parse_time("x").unwrap_err(),
            "cannot parse \"x\" to a valid timestamp"
        );
        assert!(parse_time("2015-13-01T00:00:00Z").is_err());
    }

    #[test]
    fn rfc3339_round_trip() {
        for ms in [
            0,
            1_435_781_451_781,
            1_700_000_000_000,
            -86_400_001,
            951_782_400_000,
        ] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Some(ms), "{ms}");
        }
        assert_eq!(format_rfc3339(1_435_781_451_780), "2015-07-01T20:10:51.78Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn durations_like_prometheus() {
        assert_eq!(parse_duration("15").unwrap(), 15_000);
        assert_eq!(parse_duration("0.5").unwrap(), 500);
        assert_eq!(parse_duration("5m").unwrap(), 300_000);
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration("250ms").unwrap(), 250);
        assert_eq!(parse_duration("1d2h").unwrap(), 93_600_000);
        assert!(parse_duration("30m1h").is_err());
        assert!(parse_duration("5x").is_err());
        assert_eq!(
            parse_duration("").unwrap_err(),
            "cannot parse \"\" to a valid duration"
        );
    }

    #[test]
    fn booleans_like_go() {
        assert_eq!(parse_bool("false"), Some(false));
        assert_eq!(parse_bool("1"), Some(true));
        assert_eq!(parse_bool("yes"), None);
    }
}
