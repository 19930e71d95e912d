//! JSON in the shapes of Prometheus' HTTP API, written straight into a string (results can be
//! large; no intermediate tree).
//!
//! - Timestamps are numbers of seconds with the milliseconds after a point, as Prometheus
//!   prints them (`1435781451.781`, `1.500`, `7`).
//! - Sample values are strings: the shortest decimal that reads back to the same float, never
//!   in exponent form (Go's `FormatFloat(v, 'f', -1, 64)`), and `NaN`, `+Inf`, `-Inf`.
//! - Label sets are objects in label-name order.

use std::fmt::Write as _;

use promql::{FloatHistogram, QueryValue};
use tsdb::Labels;

/// Appends `s` as a JSON string.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(escaped);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends a timestamp in ms as seconds.
pub fn push_ts(out: &mut String, t: i64) {
    if t < 0 {
        out.push('-');
    }
    let a = t.unsigned_abs();
    out.push_str(itoa::Buffer::new().format(a / 1000));
    let frac = a % 1000;
    if frac != 0 {
        let digits = [
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ];
        out.push_str(std::str::from_utf8(&digits).expect("ASCII"));
    }
}

/// A sample value as Prometheus prints it (without quotes).
pub fn format_value(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_string()
    } else if f == f64::INFINITY {
        "+Inf".to_string()
    } else if f == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        // Rust prints the shortest round-tripping digits and never an exponent, as Go's
        // FormatFloat(f, 'f', -1, 64) does.
        format!("{f}")
    }
}

fn push_value(out: &mut String, f: f64) {
    out.push('"');
    if f.is_finite() {
        // Straight into the output: large matrices have a value per point.
        let _ = write!(out, "{f}");
    } else {
        out.push_str(&format_value(f));
    }
    out.push('"');
}

/// Appends a label set as an object.
pub fn push_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, &l.name);
        out.push(':');
        push_str(out, &l.value);
    }
    out.push('}');
}

/// Appends a list of strings as an array.
pub fn push_str_array<S: AsRef<str>>(out: &mut String, items: &[S]) {
    out.push('[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, s.as_ref());
    }
    out.push(']');
}

fn push_point(out: &mut String, t: i64, f: f64) {
    out.push('[');
    push_ts(out, t);
    out.push(',');
    push_value(out, f);
    out.push(']');
}

/// `{"count": "...", "sum": "...", "buckets": [[rule, "lower", "upper", "count"], ...]}`, the
/// boundary rule being 0 (lower open), 1 (upper open), 2 (both open) or 3 (both closed).
fn push_histogram(out: &mut String, h: &FloatHistogram) {
    out.push_str("{\"count\":");
    push_value(out, h.count);
    out.push_str(",\"sum\":");
    push_value(out, h.sum);
    let buckets: Vec<_> = h
        .all_buckets()
        .into_iter()
        .filter(|b| b.count != 0.0)
        .collect();
    if !buckets.is_empty() {
        out.push_str(",\"buckets\":[");
        for (i, b) in buckets.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let rule = match (b.lower_inclusive, b.upper_inclusive) {
                (false, true) => 0,
                (true, false) => 1,
                (false, false) => 2,
                (true, true) => 3,
            };
            let _ = write!(out, "[{rule},");
            push_value(out, b.lower);
            out.push(',');
            push_value(out, b.upper);
            out.push(',');
            push_value(out, b.count);
            out.push(']');
        }
        out.push(']');
    }
    out.push('}');
}

fn push_hist_point(out: &mut String, t: i64, h: &FloatHistogram) {
    out.push('[');
    push_ts(out, t);
    out.push(',');
    push_histogram(out, h);
    out.push(']');
}

/// The `data` of a query answer: `{"resultType": ..., "result": ...}`.
pub fn push_query_data(out: &mut String, value: &QueryValue) {
    match value {
        QueryValue::Vector(v) => {
            out.push_str("{\"resultType\":\"vector\",\"result\":[");
            for (i, s) in v.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(out, &s.labels);
                match &s.h {
                    None => {
                        out.push_str(",\"value\":");
                        push_point(out, s.t, s.f);
                    }
                    Some(h) => {
                        out.push_str(",\"histogram\":");
                        push_hist_point(out, s.t, h);
                    }
                }
                out.push('}');
            }
            out.push_str("]}");
        }
        QueryValue::Matrix(m) => {
            out.push_str("{\"resultType\":\"matrix\",\"result\":[");
            for (i, s) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(out, &s.labels);
                let floats = s.samples.iter().filter(|p| p.h.is_none());
                if floats.clone().next().is_some() {
                    out.push_str(",\"values\":[");
                    for (j, p) in floats.enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        push_point(out, p.t, p.f);
                    }
                    out.push(']');
                }
                let hists = s
                    .samples
                    .iter()
                    .filter_map(|p| p.h.as_ref().map(|h| (p.t, h)));
                if hists.clone().next().is_some() {
                    out.push_str(",\"histograms\":[");
                    for (j, (t, h)) in hists.enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        push_hist_point(out, t, h);
                    }
                    out.push(']');
                }
                out.push('}');
            }
            out.push_str("]}");
        }
        QueryValue::Scalar { t, f } => {
            out.push_str("{\"resultType\":\"scalar\",\"result\":");
            push_point(out, *t, *f);
            out.push('}');
        }
        QueryValue::String { t, s } => {
            out.push_str("{\"resultType\":\"string\",\"result\":[");
            push_ts(out, *t);
            out.push(',');
            push_str(out, s);
            out.push_str("]}");
        }
    }
}

/// A success envelope around `data` (already JSON), in `data`'s own buffer: a large answer is
/// shifted once in place rather than copied into a new allocation.
pub fn success(mut data: String, warnings: &[String], infos: &[String]) -> String {
    data.insert_str(0, "{\"status\":\"success\",\"data\":");
    if !warnings.is_empty() {
        data.push_str(",\"warnings\":");
        push_str_array(&mut data, warnings);
    }
    if !infos.is_empty() {
        data.push_str(",\"infos\":");
        push_str_array(&mut data, infos);
    }
    data.push('}');
    data
}

/// An error envelope.
pub fn error(error_type: &str, message: &str, warnings: &[String]) -> String {
    let mut out = String::from("{\"status\":\"error\",\"errorType\":");
    push_str(&mut out, error_type);
    out.push_str(",\"error\":");
    push_str(&mut out, message);
    if !warnings.is_empty() {
        out.push_str(",\"warnings\":");
        push_str_array(&mut out, warnings);
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql::{InstantSample, RangeSeries, Sample};

    #[test]
    fn timestamps_and_values_like_prometheus() {
        let ts = |t| {
            let mut s = String::new();
            push_ts(&mut s, t);
            s
        };
        assert_eq!(ts(1_435_781_451_781), "1435781451.781");
        assert_eq!(ts(1_500), "1.500");
        assert_eq!(ts(1_050), "1.050");
        assert_eq!(ts(7_000), "7");
        assert_eq!(ts(-1_500), "-1.500");
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(1.5e-7), "0.00000015");
        assert_eq!(format_value(-0.0), "-0");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn strings_are_escaped() {
        let mut s = String::new();
        push_str(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, r#""a\"b\\c\nd\u0001é""#);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn result_shapes() {
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "x")]);
        let mut out = String::new();
        push_query_data(
            &mut out,
            &QueryValue::Vector(vec![InstantSample {
                labels: labels.clone(),
                t: 1_500,
                f: 1.0,
                h: None,
            }]),
        );
        assert_eq!(
            out,
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"x"},"value":[1.500,"1"]}]}"#
        );
        out.clear();
        push_query_data(
            &mut out,
            &QueryValue::Matrix(vec![RangeSeries {
                labels,
                samples: vec![Sample::float(1000, 2.5), Sample::float(2000, f64::NAN)],
            }]),
        );
        assert_eq!(
            out,
            r#"{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"x"},"values":[[1,"2.5"],[2,"NaN"]]}]}"#
        );
        out.clear();
        push_query_data(&mut out, &QueryValue::Scalar { t: 1000, f: 2.0 });
        assert_eq!(out, r#"{"resultType":"scalar","result":[1,"2"]}"#);
        out.clear();
        push_query_data(
            &mut out,
            &QueryValue::String {
                t: 1000,
                s: "hi".into(),
            },
        );
        assert_eq!(out, r#"{"resultType":"string","result":[1,"hi"]}"#);
        assert_eq!(
            success("[]".to_string(), &["w".into()], &[]),
            r#"{"status":"success","data":[],"warnings":["w"]}"#
        );
        assert_eq!(
            error("bad_data", "x", &[]),
            r#"{"status":"error","errorType":"bad_data","error":"x"}"#
        );
    }
}
