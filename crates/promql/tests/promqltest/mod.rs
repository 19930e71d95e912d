//! A runner for Prometheus's PromQL test-script language (`promql/promqltest`), against
//! [`promql::MemoryStorage`].
//!
//! Supported: `load <interval>` (with `_`, `_xN`, `stale`, `a+bxN`, `axN`), `clear`,
//! `eval instant at ...`, `eval range from ... to ... step ...`, the legacy `eval_fail`,
//! `eval_warn`, `eval_info`, `eval_ordered` forms, `expected_fail_message`/`_regexp`, and the
//! `expect` lines (`fail`, `warn`, `info`, `no_warn`, `no_info`, `ordered`, `string`,
//! `range vector`). Like upstream, every instant eval is also run with `@` pinned on its
//! selectors at several other times, and in range mode around its evaluation time.
//! Native-histogram sample values are not supported: a load line holding one skips those
//! samples, and an eval expecting one fails.

use std::collections::HashMap;

use promql::promql_parser::parser::{AtModifier, Expr as PExpr};
use promql::{
    CounterResetHint, Engine, EngineOpts, Expr, FloatHistogram, Matcher, MemoryStorage,
    ParSeriesSink, QueryResult, QueryValue, Queryable, SelectHints, Series,
};
use regex::Regex;
use tsdb::Labels;

/// A storage over [`MemoryStorage`] whose [`Queryable::select_par`] hands series out on as many
/// threads as the engine allows, last series first, so that an engine run with parallelism
/// has to put its results (and annotations) back in label order itself.
pub struct ParallelStorage<'a>(pub &'a MemoryStorage);

impl Queryable for ParallelStorage<'_> {
    fn select(
        &self,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<Series>, promql::Error> {
        self.0.select(hints, matchers)
    }

    fn select_par(
        &self,
        hints: &SelectHints,
        matchers: &[Matcher],
        workers: usize,
        f: &ParSeriesSink<'_>,
    ) -> Result<(), promql::Error> {
        let series = self.0.select(hints, matchers)?;
        let taken = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers.max(1))
                .map(|w| {
                    let (series, taken) = (&series, &taken);
                    scope.spawn(move || -> Result<(), promql::Error> {
                        loop {
                            let k = taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(i) = series.len().checked_sub(k + 1) else {
                                return Ok(());
                            };
                            f(w, i, series[i].labels.clone(), &series[i].samples)?;
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("worker panicked"))
                .collect::<Result<Vec<()>, _>>()
        })?;
        Ok(())
    }
}

pub struct FileResult {
    pub passed: usize,
    pub total: usize,
    pub failures: Vec<String>,
}

/// Parses a Prometheus duration (`1h30m`, `5m`, `100ms`, `0`); a bare number means seconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    if s == "0" {
        return Some(0);
    }
    if let Ok(n) = s.parse::<i64>() {
        return Some(n * 1000);
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    if b.is_empty() {
        return None;
    }
    while i < b.len() {
        let st = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if st == i {
            return None;
        }
        let n: i64 = s[st..i].parse().ok()?;
        let us = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let mult = match &s[us..i] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        total += n * mult;
    }
    Some(total)
}

#[derive(Clone, Debug)]
enum SeqVal {
    Omitted,
    Value(f64),
    /// A native histogram, and whether its counter reset hint was given explicitly.
    Histogram(FloatHistogram, bool),
}

fn parse_float_list(s: &str) -> Result<Vec<f64>, String> {
    s.split_whitespace()
        .map(|x| parse_number(x).ok_or_else(|| format!("bad number {x}")))
        .collect()
}

/// Parses the inside of `{{...}}`.
fn parse_histogram(body: &str) -> Result<(FloatHistogram, bool), String> {
    let mut h = FloatHistogram::default();
    let mut hint_set = false;
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    let (mut off, mut noff) = (0i32, 0i32);
    let mut rest = body.trim();
    while !rest.is_empty() {
        let colon = rest
            .find(':')
            .ok_or_else(|| format!("bad histogram {body}"))?;
        let key = rest[..colon].trim();
        rest = rest[colon + 1..].trim_start();
        let value;
        if rest.starts_with('[') {
            let close = rest.find(']').ok_or("unterminated list")?;
            value = rest[1..close].to_string();
            rest = rest[close + 1..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            value = rest[..end].to_string();
            rest = rest[end..].trim_start();
        }
        let num = || parse_number(&value).ok_or_else(|| format!("bad value {value}"));
        match key {
            "schema" => h.schema = num()? as i32,
            "sum" => h.sum = num()?,
            "count" => h.count = num()?,
            "z_bucket" => h.zero_count = num()?,
            "z_bucket_w" => h.zero_threshold = num()?,
            "offset" => off = num()? as i32,
            "n_offset" => noff = num()? as i32,
            "buckets" => pos = parse_float_list(&value)?,
            "n_buckets" => neg = parse_float_list(&value)?,
            "custom_values" => h.custom_values = parse_float_list(&value)?,
            "counter_reset_hint" => {
                hint_set = true;
                h.counter_reset_hint = match value.as_str() {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::Reset,
                    "not_reset" => CounterResetHint::NotReset,
                    "gauge" => CounterResetHint::Gauge,
                    other => return Err(format!("bad counter_reset_hint {other}")),
                }
            }
            other => return Err(format!("unknown histogram field {other}")),
        }
    }
    h.positive = pos
        .iter()
        .enumerate()
        .map(|(i, c)| (off + i as i32, *c))
        .collect();
    h.negative = neg
        .iter()
        .enumerate()
        .map(|(i, c)| (noff + i as i32, *c))
        .collect();
    Ok((h, hint_set))
}

fn expand_histogram_item(tok: &str) -> Result<Vec<SeqVal>, String> {
    let first_end = tok.find("}}").ok_or("unterminated histogram")?;
    let (base, hs) = parse_histogram(&tok[2..first_end])?;
    let rest = &tok[first_end + 2..];
    if rest.is_empty() {
        return Ok(vec![SeqVal::Histogram(base, hs)]);
    }
    if let Some(n) = rest.strip_prefix('x') {
        let n: usize = n.parse().map_err(|_| format!("bad item {tok}"))?;
        return Ok(vec![SeqVal::Histogram(base, hs); n + 1]);
    }
    let sign = if rest.starts_with('+') { 1.0 } else { -1.0 };
    let inner = &rest[1..];
    let e = inner.find("}}").ok_or("unterminated histogram")?;
    let (inc, hs2) = parse_histogram(&inner[2..e])?;
    let n: usize = inner[e + 2..]
        .strip_prefix('x')
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| format!("bad item {tok}"))?;
    let mut out = vec![SeqVal::Histogram(base.clone(), hs2)];
    let mut cur = base;
    for _ in 0..n {
        let mut next = cur.clone();
        let r = if sign > 0.0 {
            next.add(&inc)
        } else {
            next.sub(&inc)
        };
        r.map_err(|_| "incompatible histograms".to_string())?;
        out.push(SeqVal::Histogram(next.clone(), hs2));
        cur = next;
    }
    let _ = hs;
    Ok(out)
}

fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    let (neg, body) = match t.as_bytes()[0] {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let lower = body.to_ascii_lowercase();
    let v = if lower == "inf" || lower == "infinity" {
        f64::INFINITY
    } else if lower == "nan" {
        f64::NAN
    } else if let Some(h) = lower.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()? as f64
    } else {
        if !body
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-' | b'_'))
        {
            return None;
        }
        body.replace('_', "").parse::<f64>().ok()?
    };
    Some(if neg { -v } else { v })
}

fn parse_series_value(tok: &str) -> Option<f64> {
    if tok == "stale" {
        return Some(promql::stale_nan());
    }
    // In series descriptions `x` separates the repeat count, so `0x59` is not hex.
    if tok.contains(['x', 'X']) && !tok.to_ascii_lowercase().contains("inf") {
        return None;
    }
    parse_number(tok)
}

fn expand_item(tok: &str) -> Result<Vec<SeqVal>, String> {
    if tok.starts_with("{{") {
        return expand_histogram_item(tok);
    }
    if tok == "_" {
        return Ok(vec![SeqVal::Omitted]);
    }
    if let Some(rest) = tok.strip_prefix("_x") {
        let n: usize = rest.parse().map_err(|_| format!("bad item {tok}"))?;
        return Ok(vec![SeqVal::Omitted; n]);
    }
    if let Some(v) = parse_series_value(tok) {
        return Ok(vec![SeqVal::Value(v)]);
    }
    let xp = tok.rfind('x').ok_or_else(|| format!("bad item {tok}"))?;
    let n: usize = tok[xp + 1..]
        .parse()
        .map_err(|_| format!("bad item {tok}"))?;
    let left = &tok[..xp];
    if let Some(v) = parse_series_value(left) {
        return Ok(vec![SeqVal::Value(v); n + 1]);
    }
    // a+b or a-b
    let lb = left.as_bytes();
    let mut split = None;
    for i in (1..lb.len()).rev() {
        if (lb[i] == b'+' || lb[i] == b'-') && !matches!(lb[i - 1], b'e' | b'E') {
            split = Some(i);
            break;
        }
    }
    let sp = split.ok_or_else(|| format!("bad item {tok}"))?;
    let a = parse_series_value(&left[..sp]).ok_or_else(|| format!("bad item {tok}"))?;
    let b = parse_number(&left[sp..]).ok_or_else(|| format!("bad item {tok}"))?;
    let mut out = Vec::with_capacity(n + 1);
    let mut v = a;
    for _ in 0..=n {
        out.push(SeqVal::Value(v));
        v += b;
    }
    Ok(out)
}

fn unquote(s: &str) -> Result<(String, usize), String> {
    let b = s.as_bytes();
    let q = b[0];
    let mut out: Vec<u8> = Vec::new();
    let mut i = 1;
    if q == b'`' {
        while i < b.len() && b[i] != b'`' {
            out.push(b[i]);
            i += 1;
        }
        return Ok((String::from_utf8_lossy(&out).into_owned(), i + 1));
    }
    while i < b.len() {
        let c = b[i];
        if c == q {
            return Ok((String::from_utf8_lossy(&out).into_owned(), i + 1));
        }
        if c == b'\\' && i + 1 < b.len() {
            i += 1;
            match b[i] {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'r' => out.push(b'\r'),
                b'\\' => out.push(b'\\'),
                b'"' => out.push(b'"'),
                b'\'' => out.push(b'\''),
                b'x' => {
                    let h = u8::from_str_radix(&s[i + 1..i + 3], 16).map_err(|e| e.to_string())?;
                    out.push(h);
                    i += 2;
                }
                b'u' => {
                    let h = u32::from_str_radix(&s[i + 1..i + 5], 16).map_err(|e| e.to_string())?;
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(
                        char::from_u32(h)
                            .unwrap_or('?')
                            .encode_utf8(&mut buf)
                            .as_bytes(),
                    );
                    i += 4;
                }
                other => {
                    out.push(b'\\');
                    out.push(other)
                }
            }
            i += 1;
            continue;
        }
        out.push(c);
        i += 1;
    }
    Err(format!("unterminated string in {s}"))
}

/// Parses `metric{a="b"} values...` into labels and the value tokens.
fn parse_series_desc(line: &str) -> Result<(Labels, Vec<SeqVal>), String> {
    let line = line.trim();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
        i += 1;
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    if i > 0 {
        pairs.push(("__name__".into(), line[..i].to_string()));
    }
    if i < b.len() && b[i] == b'{' {
        i += 1;
        loop {
            while i < b.len() && (b[i] == b' ' || b[i] == b',' || b[i] == b'\t') {
                i += 1;
            }
            if i >= b.len() {
                return Err("unterminated label set".into());
            }
            if b[i] == b'}' {
                i += 1;
                break;
            }
            let name;
            if b[i] == b'"' || b[i] == b'\'' || b[i] == b'`' {
                let (n, used) = unquote(&line[i..])?;
                name = n;
                i += used;
            } else {
                let st = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'.'
                        || b[i] == b':')
                {
                    i += 1;
                }
                name = line[st..i].to_string();
            }
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if i < b.len() && b[i] == b'=' {
                i += 1;
                while i < b.len() && b[i] == b' ' {
                    i += 1;
                }
                let (v, used) = unquote(&line[i..])?;
                i += used;
                pairs.push((name, v));
            } else {
                // A bare quoted name: the metric name.
                pairs.push(("__name__".into(), name));
            }
        }
    }
    let rest = &line[i..];
    let mut vals = Vec::new();
    let mut toks: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    for c in rest.chars() {
        match c {
            '{' => {
                depth += 1;
                cur.push(c)
            }
            '}' => {
                depth -= 1;
                cur.push(c)
            }
            ' ' | '\t' if depth == 0 => {
                if !cur.is_empty() {
                    toks.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        toks.push(cur);
    }
    for t in toks {
        vals.extend(expand_item(&t)?);
    }
    Ok((Labels::from_pairs(pairs), vals))
}

#[derive(Clone)]
struct ExpectCmd {
    msg: Option<String>,
    re: Option<Regex>,
}

impl ExpectCmd {
    fn matches(&self, s: &str) -> bool {
        match (&self.msg, &self.re) {
            (Some(m), _) => m == s,
            (_, Some(r)) => r.is_match(s),
            _ => true,
        }
    }
}

#[derive(Default)]
struct EvalCmd {
    line: usize,
    expr: String,
    is_range: bool,
    start: i64,
    end: i64,
    step: i64,
    eval_t: i64,
    fail: bool,
    warn: bool,
    info: bool,
    ordered: bool,
    fail_msg: Option<String>,
    fail_re: Option<Regex>,
    expect_fail: Vec<ExpectCmd>,
    expect_warn: Vec<ExpectCmd>,
    expect_info: Vec<ExpectCmd>,
    no_warn: bool,
    no_info: bool,
    expect_ordered: bool,
    expected_string: Option<String>,
    exclude_from_range: bool,
    expect_scalar: Option<f64>,
    expected: Vec<(Labels, Vec<SeqVal>, usize)>,
    parse_error: Option<String>,
}

impl EvalCmd {
    fn is_fail(&self) -> bool {
        self.fail || !self.expect_fail.is_empty()
    }
    fn is_ordered(&self) -> bool {
        self.ordered || self.expect_ordered
    }
}

enum Cmd {
    Clear,
    /// Interval, series, and whether to also load classic histograms as NHCB.
    Load(i64, Vec<(Labels, Vec<SeqVal>)>, bool),
    Eval(Box<EvalCmd>),
}

fn parse_expect(line: &str) -> Result<(String, ExpectCmd), String> {
    let re =
        Regex::new(r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$")
            .unwrap();
    let caps = re
        .captures(line.trim())
        .ok_or_else(|| format!("invalid expect statement {line}"))?;
    let kind = caps[1].to_string();
    let cmd = match caps.get(2).map(|m| m.as_str()) {
        Some("msg") => ExpectCmd {
            msg: Some(caps[3].trim().to_string()),
            re: None,
        },
        Some(_) => ExpectCmd {
            msg: None,
            re: Some(Regex::new(caps[3].trim()).map_err(|e| e.to_string())?),
        },
        None => ExpectCmd {
            msg: None,
            re: None,
        },
    };
    Ok((kind, cmd))
}

fn parse_script(input: &str) -> Result<Vec<Cmd>, String> {
    let lines: Vec<String> = input
        .lines()
        .map(|l| {
            let t = l.trim();
            if t.starts_with('#') {
                String::new()
            } else {
                t.to_string()
            }
        })
        .collect();
    let pat_inst =
        Regex::new(r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$")
            .unwrap();
    let pat_range = Regex::new(
        r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$",
    )
    .unwrap();
    let pat_erange =
        Regex::new(r"^expect range vector\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$").unwrap();
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        if l.is_empty() {
            i += 1;
            continue;
        }
        let word = l
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if word == "clear" {
            cmds.push(Cmd::Clear);
            i += 1;
        } else if word.starts_with("load") {
            let step = l
                .split_whitespace()
                .nth(1)
                .and_then(parse_duration)
                .ok_or("bad load")?;
            let mut series = Vec::new();
            i += 1;
            while i < lines.len() && !lines[i].is_empty() {
                let first = lines[i].split_whitespace().next().unwrap_or("");
                if !first.contains("@st") {
                    series.push(parse_series_desc(&lines[i])?);
                }
                i += 1;
            }
            cmds.push(Cmd::Load(step, series, word == "load_with_nhcb"));
        } else if word.starts_with("eval") {
            let mut cmd = EvalCmd {
                line: i + 1,
                ..Default::default()
            };
            let modifier;
            if let Some(c) = pat_inst.captures(l) {
                modifier = c.get(1).map(|m| m.as_str().to_string());
                cmd.expr = c[3].to_string();
                cmd.eval_t = c
                    .get(2)
                    .and_then(|m| parse_duration(m.as_str()))
                    .ok_or("bad eval time")?;
                cmd.start = cmd.eval_t;
            } else if let Some(c) = pat_range.captures(l) {
                modifier = c.get(1).map(|m| m.as_str().to_string());
                cmd.is_range = true;
                cmd.start = parse_duration(&c[2]).ok_or("bad start")?;
                cmd.end = parse_duration(&c[3]).ok_or("bad end")?;
                cmd.step = parse_duration(&c[4]).ok_or("bad step")?;
                cmd.expr = c[5].to_string();
            } else {
                return Err(format!("line {}: invalid eval {l}", i + 1));
            }
            match modifier.as_deref() {
                Some("fail") => cmd.fail = true,
                Some("warn") => cmd.warn = true,
                Some("info") => cmd.info = true,
                Some("ordered") => cmd.ordered = true,
                _ => {}
            }
            let mut j = 1;
            i += 1;
            while i < lines.len() && !lines[i].is_empty() {
                let dl = &lines[i];
                i += 1;
                if cmd.fail && dl.starts_with("expected_fail_message") {
                    cmd.fail_msg = Some(dl["expected_fail_message".len()..].trim().to_string());
                    break;
                }
                if cmd.fail && dl.starts_with("expected_fail_regexp") {
                    cmd.fail_re = Regex::new(dl["expected_fail_regexp".len()..].trim()).ok();
                    break;
                }
                if let Some(c) = pat_erange.captures(dl) {
                    cmd.start = parse_duration(&c[1]).ok_or("bad from")?;
                    cmd.end = parse_duration(&c[2]).ok_or("bad to")?;
                    cmd.step = parse_duration(&c[3]).ok_or("bad step")?;
                    cmd.eval_t = cmd.end;
                    cmd.exclude_from_range = true;
                    continue;
                }
                if let Some(rest) = dl.strip_prefix("expect string") {
                    let r = rest.trim();
                    let s = if r.starts_with('`') || r.starts_with('"') {
                        unquote(r)?.0
                    } else {
                        return Err("bad expect string".into());
                    };
                    cmd.expected_string = Some(s);
                    cmd.exclude_from_range = true;
                    continue;
                }
                if dl.split(' ').next() == Some("expect") {
                    let (kind, e) = parse_expect(dl)?;
                    match kind.as_str() {
                        "fail" => cmd.expect_fail.push(e),
                        "warn" => cmd.expect_warn.push(e),
                        "info" => cmd.expect_info.push(e),
                        "no_warn" => cmd.no_warn = true,
                        "no_info" => cmd.no_info = true,
                        _ => cmd.expect_ordered = true,
                    }
                    continue;
                }
                if let Some(f) = parse_number(dl) {
                    cmd.expect_scalar = Some(f);
                    break;
                }
                match parse_series_desc(dl) {
                    Ok((labels, vals)) => {
                        cmd.expected.push((labels, vals, j));
                        j += 1;
                    }
                    Err(e) => cmd.parse_error = Some(e),
                }
            }
            cmds.push(Cmd::Eval(Box::new(cmd)));
        } else {
            return Err(format!("line {}: invalid command {l}", i + 1));
        }
    }
    Ok(cmds)
}

fn almost_equal(a: f64, b: f64) -> bool {
    let eps = 0.000001;
    if promql::is_stale_nan(a) || promql::is_stale_nan(b) {
        return promql::is_stale_nan(a) && promql::is_stale_nan(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let min_normal = f64::from_bits(0x0010_0000_0000_0000);
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < eps * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

fn histograms_match(e: &FloatHistogram, a: &FloatHistogram, hint_set: bool) -> bool {
    let mut e = e.clone();
    let mut a = a.clone();
    e.compact();
    a.compact();
    let buckets_match = |x: &[(i32, f64)], y: &[(i32, f64)]| {
        x.len() == y.len()
            && x.iter()
                .zip(y)
                .all(|(p, q)| p.0 == q.0 && almost_equal(p.1, q.1))
    };
    e.schema == a.schema
        && almost_equal(e.count, a.count)
        && almost_equal(e.sum, a.sum)
        && (!e.uses_custom_buckets() || e.custom_values == a.custom_values)
        && e.zero_threshold == a.zero_threshold
        && almost_equal(e.zero_count, a.zero_count)
        && buckets_match(&e.negative, &a.negative)
        && buckets_match(&e.positive, &a.positive)
        && (!hint_set || e.counter_reset_hint == a.counter_reset_hint)
}

fn check_value(e: &SeqVal, f: f64, h: Option<&FloatHistogram>) -> Result<(), String> {
    match (e, h) {
        (SeqVal::Value(ev), None) => {
            if almost_equal(*ev, f) {
                Ok(())
            } else {
                Err(format!("expected {ev} but got {f}"))
            }
        }
        (SeqVal::Histogram(eh, hint_set), Some(ah)) => {
            if histograms_match(eh, ah, *hint_set) {
                Ok(())
            } else {
                Err(format!("expected histogram {eh:?} but got {ah:?}"))
            }
        }
        (SeqVal::Value(ev), Some(ah)) => Err(format!("expected float {ev} but got histogram {ah}")),
        (SeqVal::Histogram(eh, _), None) => {
            Err(format!("expected histogram {eh} but got float {f}"))
        }
        (SeqVal::Omitted, _) => Err("unexpected omitted value".into()),
    }
}

fn check_fail(cmd: &EvalCmd, err: &str) -> Result<(), String> {
    if let Some(m) = &cmd.fail_msg {
        if m != err {
            return Err(format!("expected error {m:?}, got {err:?}"));
        }
    }
    if let Some(r) = &cmd.fail_re {
        if !r.is_match(err) {
            return Err(format!("expected error matching {r}, got {err:?}"));
        }
    }
    if let Some(e) = cmd.expect_fail.first() {
        if !e.matches(err) {
            return Err(format!(
                "expected error matching {:?}/{:?}, got {err:?}",
                e.msg,
                e.re.as_ref().map(|r| r.to_string())
            ));
        }
    }
    Ok(())
}

fn check_annos(cmd: &EvalCmd, res: &QueryResult) -> Result<(), String> {
    let a = &res.annotations;
    if cmd.warn && a.warnings.is_empty() {
        return Err("expected warnings but got none".into());
    }
    if cmd.info && a.infos.is_empty() {
        return Err("expected info annotations but got none".into());
    }
    for (exp, act, kind) in [
        (&cmd.expect_warn, &a.warnings, "warn"),
        (&cmd.expect_info, &a.infos, "info"),
    ] {
        if exp.is_empty() {
            continue;
        }
        if act.is_empty() {
            return Err(format!("expected {kind} annotations but none were found"));
        }
        for e in exp.iter() {
            if !act.iter().any(|x| e.matches(x)) {
                return Err(format!(
                    "expected {kind} annotation {:?}/{:?} not found in {act:?}",
                    e.msg,
                    e.re.as_ref().map(|r| r.to_string())
                ));
            }
        }
        for x in act.iter() {
            if !exp.iter().any(|e| e.matches(x)) {
                return Err(format!("unexpected {kind} annotation {x:?}"));
            }
        }
    }
    if cmd.no_warn && !a.warnings.is_empty() {
        return Err(format!("unexpected warnings {:?}", a.warnings));
    }
    if cmd.no_info && !a.infos.is_empty() {
        return Err(format!("unexpected infos {:?}", a.infos));
    }
    Ok(())
}

fn compare(cmd: &EvalCmd, val: &QueryValue) -> Result<(), String> {
    let expected: HashMap<&Labels, (&Vec<SeqVal>, usize)> =
        cmd.expected.iter().map(|(l, v, p)| (l, (v, *p))).collect();
    match val {
        QueryValue::Matrix(m) => {
            if cmd.is_ordered() {
                return Err("expected ordered result, but query returned a matrix".into());
            }
            if cmd.expect_scalar.is_some() {
                return Err("expected scalar result, but got matrix".into());
            }
            if m.windows(2).any(|w| w[0].labels > w[1].labels) {
                return Err("matrix results should always be sorted by labels".into());
            }
            for s in m {
                let Some((vals, _)) = expected.get(&s.labels) else {
                    return Err(format!("unexpected metric {} in result", s.labels));
                };
                let mut exp = Vec::new();
                for (i, v) in vals.iter().enumerate() {
                    let ts = cmd.start + i as i64 * cmd.step;
                    if ts > cmd.end {
                        return Err(format!("expected {} points for {}, but query time range cannot return this many points", vals.len(), s.labels));
                    }
                    if !matches!(v, SeqVal::Omitted) {
                        exp.push((ts, v));
                    }
                }
                // Floats and histograms are compared separately, like upstream.
                let (ef, eh): (Vec<_>, Vec<_>) =
                    exp.iter().partition(|(_, v)| matches!(v, SeqVal::Value(_)));
                let (af, ah): (Vec<_>, Vec<_>) = s.samples.iter().partition(|p| p.h.is_none());
                if ef.len() != af.len() || eh.len() != ah.len() {
                    return Err(format!(
                        "expected {} float points and {} histogram points for {}, got {:?}",
                        ef.len(),
                        eh.len(),
                        s.labels,
                        s.samples
                    ));
                }
                for ((t, e), a) in ef.iter().chain(eh.iter()).zip(af.iter().chain(ah.iter())) {
                    if *t != a.t {
                        return Err(format!(
                            "expected timestamp {} for {}, got {}",
                            t, s.labels, a.t
                        ));
                    }
                    check_value(e, a.f, a.h.as_deref())
                        .map_err(|m| format!("{m} at t={} for {}", a.t, s.labels))?;
                }
            }
            let got: std::collections::HashSet<&Labels> = m.iter().map(|s| &s.labels).collect();
            for (l, _, _) in &cmd.expected {
                if !got.contains(l) {
                    return Err(format!("expected metric {l} not found"));
                }
            }
        }
        QueryValue::Vector(v) => {
            if cmd.expect_scalar.is_some() {
                return Err("expected scalar result, but got vector".into());
            }
            for (pos, s) in v.iter().enumerate() {
                let Some((vals, epos)) = expected.get(&s.labels) else {
                    return Err(format!(
                        "unexpected metric {} in result, has value {}",
                        s.labels, s.f
                    ));
                };
                if cmd.is_ordered() && *epos != pos + 1 {
                    return Err(format!(
                        "expected metric {} at position {} but was at {}",
                        s.labels,
                        epos,
                        pos + 1
                    ));
                }
                match vals.first() {
                    Some(v @ (SeqVal::Value(_) | SeqVal::Histogram(..))) => {
                        check_value(v, s.f, s.h.as_deref())
                            .map_err(|m| format!("{m} for {}", s.labels))?
                    }
                    _ => {
                        if s.h.is_some() || !almost_equal(0.0, s.f) {
                            return Err(format!("expected {} for {} but got {}", 0, s.labels, s.f));
                        }
                    }
                }
            }
            let got: std::collections::HashSet<&Labels> = v.iter().map(|s| &s.labels).collect();
            for (l, _, _) in &cmd.expected {
                if !got.contains(l) {
                    return Err(format!("expected metric {l} not found"));
                }
            }
        }
        QueryValue::Scalar { f, .. } => {
            let Some(e) = cmd.expect_scalar else {
                return Err(format!(
                    "expected vector or matrix result, but got scalar {f}"
                ));
            };
            if !almost_equal(e, *f) {
                return Err(format!("expected scalar {e} but got {f}"));
            }
        }
        QueryValue::String { s, .. } => {
            if cmd.expected_string.as_deref() != Some(s.as_str()) {
                return Err(format!(
                    "expected string {:?} but got {:?}",
                    cmd.expected_string, s
                ));
            }
        }
    }
    Ok(())
}

const AT_UNSAFE: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "end",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "range",
    "start",
    "step",
    "time",
    "timestamp",
];

fn contains_unsafe(e: &PExpr) -> bool {
    match e {
        PExpr::Call(c) => {
            AT_UNSAFE.contains(&c.func.name) || c.args.args.iter().any(|a| contains_unsafe(a))
        }
        PExpr::Aggregate(a) => {
            contains_unsafe(&a.expr) || a.param.as_deref().is_some_and(contains_unsafe)
        }
        PExpr::Unary(u) => contains_unsafe(&u.expr),
        PExpr::Binary(b) => contains_unsafe(&b.lhs) || contains_unsafe(&b.rhs),
        PExpr::Paren(p) => contains_unsafe(&p.expr),
        PExpr::Subquery(s) => contains_unsafe(&s.expr),
        // Extension nodes (the engine's trim operators) are opaque except for their children.
        PExpr::Extension(x) => x.expr.children().iter().any(contains_unsafe),
        _ => false,
    }
}

/// Pins `@ t` on every selector and subquery that has no `@`, except below a subquery that
/// already has one.
fn set_at(e: &mut PExpr, at: &AtModifier) {
    match e {
        PExpr::VectorSelector(vs) if vs.at.is_none() => vs.at = Some(at.clone()),
        PExpr::MatrixSelector(ms) if ms.vs.at.is_none() => ms.vs.at = Some(at.clone()),
        // Selectors below a subquery with `@` keep their own times.
        PExpr::Subquery(s) if s.at.is_none() => s.at = Some(at.clone()),
        PExpr::Call(c) => c.args.args.iter_mut().for_each(|a| set_at(a, at)),
        PExpr::Aggregate(a) => {
            set_at(&mut a.expr, at);
            if let Some(p) = a.param.as_mut() {
                set_at(p, at);
            }
        }
        PExpr::Unary(u) => set_at(&mut u.expr, at),
        PExpr::Binary(b) => {
            set_at(&mut b.lhs, at);
            set_at(&mut b.rhs, at);
        }
        PExpr::Paren(p) => set_at(&mut p.expr, at),
        PExpr::Extension(x) => {
            let mut children = x.expr.children().to_vec();
            children.iter_mut().for_each(|c| set_at(c, at));
            x.expr = x.expr.with_new_children(children);
        }
        _ => {}
    }
}

fn ms_to_system_time(t: i64) -> std::time::SystemTime {
    if t >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(t as u64)
    } else {
        std::time::UNIX_EPOCH - std::time::Duration::from_millis((-t) as u64)
    }
}

fn run_instant(
    engine: &Engine,
    st: &dyn Queryable,
    cmd: &EvalCmd,
    expr: &Expr,
    t: i64,
    text: &str,
) -> Result<(), String> {
    let res = match engine.instant_query_expr(st, expr, t, None) {
        Err(e) => {
            if cmd.is_fail() {
                return check_fail(cmd, &e.to_string());
            }
            return Err(format!("error evaluating query: {e}"));
        }
        Ok(r) => r,
    };
    if cmd.is_fail() {
        return Err("expected error evaluating query but got none".into());
    }
    check_annos(cmd, &res)?;
    compare(cmd, &res.value)?;
    if cmd.exclude_from_range {
        return Ok(());
    }
    if Regex::new(r"(start|end|range|step)\(\)")
        .unwrap()
        .is_match(text)
    {
        return Ok(());
    }
    let rres = engine
        .range_query_expr(st, expr, t - 60_000, t + 60_000, 60_000, None)
        .map_err(|e| format!("error evaluating query in range mode: {e}"))?;
    if cmd.is_ordered() {
        return Ok(());
    }
    let QueryValue::Matrix(m) = rres.value else {
        return Err("range query did not return a matrix".into());
    };
    if m.windows(2).any(|w| w[0].labels > w[1].labels) {
        return Err("matrix results should always be sorted by labels".into());
    }
    let mut vec = Vec::new();
    for s in m {
        if let Some(p) = s.samples.iter().find(|p| p.t == t) {
            vec.push(promql::InstantSample {
                labels: s.labels.clone(),
                t,
                f: p.f,
                h: p.h.clone(),
            });
        }
    }
    let v = if matches!(res.value, QueryValue::Scalar { .. }) {
        QueryValue::Scalar {
            t,
            f: vec.first().map(|s| s.f).unwrap_or(f64::NAN),
        }
    } else {
        QueryValue::Vector(vec)
    };
    compare(cmd, &v).map_err(|e| format!("range mode: {e}"))
}

fn exec_eval(engine: &Engine, st: &dyn Queryable, cmd: &EvalCmd) -> Result<(), String> {
    if let Some(e) = &cmd.parse_error {
        return Err(format!("cannot parse expected result: {e}"));
    }
    if cmd.is_range {
        let expr = match promql::parse(&cmd.expr) {
            Ok(e) => e,
            Err(e) => {
                if cmd.is_fail() {
                    return check_fail(cmd, &e.to_string());
                }
                return Err(e.to_string());
            }
        };
        let res = match engine.range_query_expr(st, &expr, cmd.start, cmd.end, cmd.step, None) {
            Err(e) => {
                if cmd.is_fail() {
                    return check_fail(cmd, &e.to_string());
                }
                return Err(format!("error evaluating query: {e}"));
            }
            Ok(r) => r,
        };
        if cmd.is_fail() {
            return Err("expected error evaluating query but got none".into());
        }
        check_annos(cmd, &res)?;
        return compare(cmd, &res.value);
    }
    let expr = match promql::parse(&cmd.expr) {
        Ok(e) => e,
        Err(e) => {
            if cmd.is_fail() {
                return check_fail(cmd, &e.to_string());
            }
            return Err(e.to_string());
        }
    };
    let t = cmd.eval_t;
    run_instant(engine, st, cmd, &expr, t, &cmd.expr)?;
    if contains_unsafe(&expr) {
        return Ok(());
    }
    let mut pinned = expr.clone();
    set_at(&mut pinned, &AtModifier::At(ms_to_system_time(t)));
    let times: Vec<i64> = if t == 0 {
        vec![-1000, 0, 1000]
    } else {
        vec![-10 * t, 0, t / 5, t, 10 * t]
    };
    for et in times {
        run_instant(engine, st, cmd, &pinned, et, &cmd.expr)
            .map_err(|e| format!("with @ {t} at {et}: {e}"))?;
    }
    Ok(())
}

/// Converts classic histogram series (`_bucket` with `le`, `_count`, `_sum`) into native
/// histograms with custom buckets, like upstream's `load_with_nhcb`.
fn nhcb_series(
    series: &[(Labels, Vec<SeqVal>)],
    step: i64,
) -> Vec<(Labels, Vec<(i64, FloatHistogram)>)> {
    #[derive(Default)]
    struct Temp {
        buckets: Vec<(f64, f64)>,
        count: Option<f64>,
        sum: f64,
    }
    let mut map: std::collections::BTreeMap<Labels, std::collections::BTreeMap<i64, Temp>> =
        Default::default();
    for (labels, vals) in series {
        let name = labels.get("__name__").unwrap_or("");
        let (kind, base) = if let Some(b) = name.strip_suffix("_bucket") {
            (0, b)
        } else if let Some(b) = name.strip_suffix("_count") {
            (1, b)
        } else if let Some(b) = name.strip_suffix("_sum") {
            (2, b)
        } else {
            continue;
        };
        let le = if kind == 0 {
            match labels.get("le").and_then(parse_number) {
                Some(le) if !le.is_nan() => le,
                _ => continue,
            }
        } else {
            0.0
        };
        let key = labels.with("__name__", base).without(&["le"]);
        let per_t = map.entry(key).or_default();
        for (i, v) in vals.iter().enumerate() {
            let SeqVal::Value(f) = v else { continue };
            let t = per_t.entry(i as i64 * step).or_default();
            match kind {
                0 => t.buckets.push((le, *f)),
                1 => t.count = Some(*f),
                _ => t.sum = *f,
            }
        }
    }
    let mut out = Vec::new();
    for (labels, per_t) in map {
        let mut samples = Vec::new();
        for (t, mut tmp) in per_t {
            tmp.buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
            let count = tmp
                .count
                .unwrap_or_else(|| tmp.buckets.last().map(|b| b.1).unwrap_or(0.0));
            if tmp.buckets.last().map(|b| b.0) != Some(f64::INFINITY) {
                tmp.buckets.push((f64::INFINITY, count));
            }
            let mut h = FloatHistogram {
                schema: promql::CUSTOM_BUCKETS_SCHEMA,
                count,
                sum: tmp.sum,
                ..Default::default()
            };
            let mut prev = 0.0;
            for (i, (le, c)) in tmp.buckets.iter().enumerate() {
                h.positive.push((i as i32, c - prev));
                prev = *c;
                if le.is_finite() {
                    h.custom_values.push(*le);
                }
            }
            h.compact();
            samples.push((t, h));
        }
        out.push((labels, samples));
    }
    out
}

/// The counter reset hint a TSDB head would hand back for a histogram appended after `prev`
/// (a sample continuing a chunk reads back as `not_reset`; one that starts a chunk as
/// `unknown`, or `reset` when the hint was given explicitly).
fn stored_hint(h: &FloatHistogram, prev: Option<&FloatHistogram>) -> CounterResetHint {
    use CounterResetHint::*;
    if h.counter_reset_hint == Gauge {
        return Gauge;
    }
    let Some(p) = prev else {
        return if h.counter_reset_hint == Reset {
            Reset
        } else {
            Unknown
        };
    };
    if h.counter_reset_hint == Reset {
        return Reset;
    }
    if p.counter_reset_hint == Gauge {
        return Unknown;
    }
    let mut hh = h.clone();
    hh.counter_reset_hint = Unknown;
    if hh.detect_reset(p) {
        // A detected reset starts a new chunk, whose first sample reads back as unknown
        // (prometheus/prometheus#15346).
        return Unknown;
    }
    if h.uses_custom_buckets() != p.uses_custom_buckets()
        || (h.uses_custom_buckets() && h.custom_values != p.custom_values)
    {
        return Unknown;
    }
    NotReset
}

/// Runs one script, returning per-eval results. `parallelism` > 1 evaluates over a
/// [`ParallelStorage`] with that many threads.
pub fn run_script(input: &str, parallelism: usize) -> FileResult {
    let mut res = FileResult {
        passed: 0,
        total: 0,
        failures: Vec::new(),
    };
    let cmds = match parse_script(input) {
        Ok(c) => c,
        Err(e) => {
            res.failures.push(format!("script parse error: {e}"));
            res.total = input
                .lines()
                .filter(|l| l.trim_start().starts_with("eval"))
                .count();
            return res;
        }
    };
    let engine = Engine::new(EngineOpts {
        timeout: Some(std::time::Duration::from_secs(100)),
        parallelism,
        ..Default::default()
    });
    let mut st = MemoryStorage::new();
    for c in cmds {
        match c {
            Cmd::Clear => st.clear(),
            Cmd::Load(step, series, with_nhcb) => {
                if with_nhcb {
                    for (labels, samples) in nhcb_series(&series, step) {
                        let mut prev: Option<FloatHistogram> = None;
                        for (t, mut h) in samples {
                            h.counter_reset_hint = stored_hint(&h, prev.as_ref());
                            prev = Some(h.clone());
                            st.append_histogram(&labels, t, h);
                        }
                    }
                }
                for (labels, vals) in series {
                    let mut prev: Option<FloatHistogram> = None;
                    for (i, v) in vals.iter().enumerate() {
                        match v {
                            SeqVal::Value(f) => {
                                st.append(&labels, i as i64 * step, *f);
                                prev = None;
                            }
                            SeqVal::Histogram(h, _) => {
                                let mut h = h.clone();
                                h.counter_reset_hint = stored_hint(&h, prev.as_ref());
                                prev = Some(h.clone());
                                st.append_histogram(&labels, i as i64 * step, h);
                            }
                            SeqVal::Omitted => {}
                        }
                    }
                }
            }
            Cmd::Eval(cmd) => {
                res.total += 1;
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    if parallelism > 1 {
                        exec_eval(&engine, &ParallelStorage(&st), &cmd)
                    } else {
                        exec_eval(&engine, &st, &cmd)
                    }
                }))
                .unwrap_or_else(|_| Err("panic".into()));
                match outcome {
                    Ok(()) => res.passed += 1,
                    Err(e) => res
                        .failures
                        .push(format!("line {}: {}: {}", cmd.line, cmd.expr, e)),
                }
            }
        }
    }
    res
}
