//! A parser for the Prometheus text exposition format (version 0.0.4), enough for `cairn up` to
//! scrape its own components' `/metrics`.
//!
//! Only samples are returned: `# HELP` / `# TYPE` lines and other comments are skipped, since
//! remote write 1.0 carries metadata separately and the self-scrape does not send it. Each
//! line is parsed on its own, so one malformed line does not hide the others: the caller gets
//! the samples and the errors (with line numbers) side by side.

use std::fmt;

/// One sample line: `name{labels} value [timestamp]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    /// In the order of the line; names are not checked for duplicates.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Milliseconds since the epoch, when the exposition gives one.
    pub timestamp_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses a whole exposition; returns the samples of every well-formed line and an error for
/// each malformed one.
pub fn parse(text: &str) -> (Vec<Sample>, Vec<ParseError>) {
    let mut samples = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match parse_line(trimmed) {
            Ok(s) => samples.push(s),
            Err(message) => errors.push(ParseError {
                line: i + 1,
                message,
            }),
        }
    }
    (samples, errors)
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    is_name_start(c) || c.is_ascii_digit()
}

/// Parses one non-comment line.
pub fn parse_line(line: &str) -> Result<Sample, String> {
    let mut rest = line;
    let name =
        take_name(&mut rest, true).ok_or_else(|| format!("expected a metric name in {line:?}"))?;
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            rest = rest.trim_start_matches([' ', '\t']);
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let label = take_name(&mut rest, false)
                .ok_or_else(|| format!("expected a label name in {line:?}"))?;
            rest = rest.trim_start_matches([' ', '\t']);
            rest = rest
                .strip_prefix('=')
                .ok_or_else(|| format!("expected '=' after label {label:?}"))?;
            rest = rest.trim_start_matches([' ', '\t']);
            let value = take_quoted(&mut rest)?;
            labels.push((label, value));
            rest = rest.trim_start_matches([' ', '\t']);
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err(format!("expected ',' or '}}' in {line:?}"));
            }
        }
    }
    // OpenMetrics (which client libraries may serve) puts exemplars after a `#`.
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let mut fields = rest.split([' ', '\t']).filter(|f| !f.is_empty());
    let value = fields
        .next()
        .ok_or_else(|| format!("missing value in {line:?}"))?;
    let value = parse_value(value).ok_or_else(|| format!("bad value {value:?}"))?;
    let timestamp_ms = match fields.next() {
        None => None,
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|_| format!("bad timestamp {t:?}"))?,
        ),
    };
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected {extra:?} after the timestamp"));
    }
    Ok(Sample {
        name,
        labels,
        value,
        timestamp_ms,
    })
}

/// A metric name (colons allowed) or a label name (no colons).
fn take_name(rest: &mut &str, metric: bool) -> Option<String> {
    let ok_start = |c: char| is_name_start(c) && (metric || c != ':');
    let ok = |c: char| is_name_char(c) && (metric || c != ':');
    let mut chars = rest.char_indices();
    match chars.next() {
        Some((_, c)) if ok_start(c) => {}
        _ => return None,
    }
    let end = chars.find(|&(_, c)| !ok(c)).map_or(rest.len(), |(i, _)| i);
    let name = rest[..end].to_string();
    *rest = &rest[end..];
    Some(name)
}

/// A double-quoted label value with the format's three escapes (`\\`, `\"`, `\n`).
fn take_quoted(rest: &mut &str) -> Result<String, String> {
    let body = rest
        .strip_prefix('"')
        .ok_or_else(|| "expected '\"' before a label value".to_string())?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                *rest = &body[i + 1..];
                return Ok(out);
            }
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                // Prometheus keeps an unknown escape as written.
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("unterminated label value".to_string())
}

/// Go's `strconv.ParseFloat` spellings that expositions use, including `NaN` and `±Inf`.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => {
            // Rust also takes "inf"/"infinity" in any case; the format does not.
            if s.bytes()
                .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E')
            {
                return None;
            }
            s.parse().ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(name: &str, labels: &[(&str, &str)], value: f64, ts: Option<i64>) -> Sample {
        Sample {
            name: name.to_string(),
            labels: labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            value,
            timestamp_ms: ts,
        }
    }

    #[test]
    fn parses_a_typical_exposition() {
        let text = "# HELP http_requests_total The total.\n\
                    # TYPE http_requests_total counter\n\
                    http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
                    http_requests_total{method=\"post\",code=\"400\",}    3\n\
                    \n\
                    up 1\n\
                    metric_without_timestamp_and_labels 12.47\n\
                    something_weird{problem=\"division by zero\"} +Inf -3982045\n\
                    msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n\
                    rpc_duration_seconds{quantile=\"0.5\"} NaN\n\
                    ns:rule:rate5m{le=\"-Inf\"} -Inf\n";
        let (samples, errors) = parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(samples.len(), 8);
        assert_eq!(
            samples[0],
            sample(
                "http_requests_total",
                &[("method", "post"), ("code", "200")],
                1027.0,
                Some(1_395_066_363_000)
            )
        );
        assert_eq!(
            samples[1],
            sample(
                "http_requests_total",
                &[("method", "post"), ("code", "400")],
                3.0,
                None
            )
        );
        assert_eq!(samples[2], sample("up", &[], 1.0, None));
        assert_eq!(samples[4].value, f64::INFINITY);
        assert_eq!(samples[4].timestamp_ms, Some(-3_982_045));
        assert_eq!(
            samples[5].labels,
            vec![
                ("path".to_string(), r"C:\DIR\FILE.TXT".to_string()),
                (
                    "error".to_string(),
                    "Cannot find file:\n\"FILE.TXT\"".to_string()
                )
            ]
        );
        assert!(samples[6].value.is_nan());
        assert_eq!(samples[7].name, "ns:rule:rate5m");
        assert_eq!(samples[7].value, f64::NEG_INFINITY);
    }

    #[test]
    fn malformed_lines_are_reported_with_their_line_and_skipped() {
        let text =
            "ok 1\n{a=\"b\"} 1\nx{a=b} 1\nx{a=\"b\" 1\ny 1 2 3\nz inf\nw\nv{:a=\"1\"} 2\nok2 2\n";
        let (samples, errors) = parse(text);
        assert_eq!(
            samples.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["ok", "ok2"]
        );
        assert_eq!(
            errors.iter().map(|e| e.line).collect::<Vec<_>>(),
            [2, 3, 4, 5, 6, 7, 8]
        );
    }

    /// The exposition of one sample, as a client library writes it.
    fn render(s: &Sample) -> String {
        let mut out = s.name.clone();
        if !s.labels.is_empty() {
            let labels = s
                .labels
                .iter()
                .map(|(n, v)| {
                    let v = v
                        .replace('\\', r"\\")
                        .replace('"', "\\\"")
                        .replace('\n', r"\n");
                    format!("{n}=\"{v}\"")
                })
                .collect::<Vec<_>>();
            out.push_str(&format!("{{{}}}", labels.join(",")));
        }
        let v = if s.value.is_nan() {
            "NaN".to_string()
        } else if s.value == f64::INFINITY {
            "+Inf".to_string()
        } else if s.value == f64::NEG_INFINITY {
            "-Inf".to_string()
        } else {
            format!("{:e}", s.value)
        };
        out.push_str(&format!(" {v}"));
        if let Some(t) = s.timestamp_ms {
            out.push_str(&format!(" {t}"));
        }
        out
    }

    fn arb_sample() -> impl Strategy<Value = Sample> {
        (
            "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}",
            prop::collection::vec(("[a-zA-Z_][a-zA-Z0-9_]{0,8}", "\\PC{0,10}"), 0..4),
            prop_oneof![
                any::<f64>(),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(0.0)
            ],
            prop::option::of(any::<i64>()),
        )
            .prop_map(|(name, labels, value, timestamp_ms)| Sample {
                name,
                labels,
                value,
                timestamp_ms,
            })
    }

    fn same(a: &Sample, b: &Sample) -> bool {
        a.name == b.name
            && a.labels == b.labels
            && a.timestamp_ms == b.timestamp_ms
            && (a.value == b.value || (a.value.is_nan() && b.value.is_nan()))
    }

    proptest! {
        #[test]
        fn what_a_client_writes_parses_back(samples in prop::collection::vec(arb_sample(), 0..8)) {
            let text = samples.iter().map(render).collect::<Vec<_>>().join("\n");
            let (parsed, errors) = parse(&text);
            prop_assert!(errors.is_empty(), "{errors:?} in {text}");
            prop_assert_eq!(parsed.len(), samples.len());
            for (p, s) in parsed.iter().zip(&samples) {
                prop_assert!(same(p, s), "{p:?} != {s:?}");
            }
        }

        #[test]
        fn any_text_parses_without_panicking(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }
    }
}
