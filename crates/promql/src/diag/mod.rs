//! Parse errors worded and positioned as Prometheus reports them.
//!
//! `promql-parser` does the parsing; when it rejects a query, its message carries no position
//! and often differs from Prometheus' wording. This module then re-reads the query the way
//! Prometheus does (its lexer, its grammar with the error productions, the semantic checks of
//! its grammar actions, then its type check) and reports the first error Prometheus would
//! report, as `line:col: parse error: message` (the position is the start of the offending
//! item or node; line and column count from 1, the column in bytes, as Prometheus does).
//! It runs only on queries `promql-parser` rejected, so the success path pays nothing.

mod check;
mod functions;
mod lex;
mod parse;

/// Byte offset into the query.
type Pos = usize;

/// Prometheus parser options that change which errors are raised.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Options {
    /// `--enable-feature=promql-duration-expr`: arithmetic in ranges, steps and offsets.
    pub duration_expressions: bool,
    /// `--enable-feature=promql-extended-range-selectors`: `anchored` and `smoothed`.
    pub extended_range_selectors: bool,
}

/// The first error Prometheus reports: where it starts and what it says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Diag {
    pub start: Pos,
    pub msg: String,
}

/// Prometheus' error for `query`, formatted like its `ParseErr.Error()`; `None` if Prometheus
/// would accept the query.
pub(crate) fn describe(query: &str, opts: Options) -> Option<String> {
    let d = diagnose(query, opts)?;
    Some(format!(
        "{}: parse error: {}",
        position(query, d.start),
        d.msg
    ))
}

/// The first error Prometheus reports for `query`, if any.
pub(crate) fn diagnose(query: &str, opts: Options) -> Option<Diag> {
    let mut p = parse::Parser::new(query, opts);
    let tree = p.parse_query();
    if p.first.is_none() {
        if let Ok(mut tree) = tree {
            p.check(&mut tree);
        }
    }
    // Past the limits only an error found before giving up is known to be the first.
    p.first
}

/// The `<`, `>`, `</` and `>/` operators of `query` in source order: where each starts and
/// whether it is a trim operator (`</`, `>/`). `None` if Prometheus' lexer rejects the query.
pub(crate) fn angle_operators(query: &str) -> Option<Vec<(Pos, bool)>> {
    use lex::T;
    let mut lexer = lex::Lexer::new(query);
    let mut out = Vec::new();
    loop {
        let item = lexer.next_item();
        match item.typ {
            T::Eof => return Some(out),
            T::Error => return None,
            T::Lss | T::Gtr => out.push((item.pos, false)),
            T::TrimUpper | T::TrimLower => out.push((item.pos, true)),
            _ => {}
        }
    }
}

/// Prometheus' `PositionRange.StartPosInput`: `line:col`, both from 1, the column in bytes.
fn position(query: &str, pos: Pos) -> String {
    if query.is_empty() {
        return "unknown position".into();
    }
    if pos > query.len() {
        return "invalid position".into();
    }
    let before = &query.as_bytes()[..pos];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let col = match before.iter().rposition(|&b| b == b'\n') {
        Some(nl) => pos - nl,
        None => pos + 1,
    };
    format!("{line}:{col}")
}

/// Go's `strconv.IsPrint`, closely enough for error messages.
fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    !matches!(u,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f
        | 0x202a..=0x202e | 0x2060..=0x206f | 0xd800..=0xf8ff | 0xfeff | 0xfff9..=0xfffb
        | 0xfffe | 0xffff | 0xf0000..)
}

fn push_escaped(out: &mut String, c: char, quote: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if is_print(c) => out.push(c),
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// Go's `%q` of a string.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        push_escaped(&mut out, c, '"');
    }
    out.push('"');
    out
}

/// Go's `%q` of a rune (`None`, the lexer's end of input, prints as U+FFFD).
fn go_quote_rune(c: Option<char>) -> String {
    let mut out = String::from("'");
    push_escaped(&mut out, c.unwrap_or('\u{fffd}'), '\'');
    out.push('\'');
    out
}

/// Go's `%#U` of a rune.
fn go_unicode(c: char) -> String {
    if is_print(c) {
        format!("U+{:04X} '{c}'", c as u32)
    } else {
        format!("U+{:04X}", c as u32)
    }
}

/// Go's `underscoreOK`: underscores only between digits (or after a base prefix).
fn underscore_ok(s: &str) -> bool {
    let b = s.trim_start_matches(['+', '-']).as_bytes();
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1] | 0x20, b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1] | 0x20 == b'x';
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || (hex && (c | 0x20).is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// Go's `strconv.ParseInt(s, 0, 64)`, as a float; `None` on any error.
fn go_int(s: &str) -> Option<f64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if body.contains('_') && !underscore_ok(s) {
        return None;
    }
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() {
        return None;
    }
    let v = i128::from_str_radix(&digits, radix).ok()?;
    let v = if neg { -v } else { v };
    if v > i64::MAX as i128 || v < i64::MIN as i128 {
        return None;
    }
    Some(v as f64)
}

/// Prometheus' number parsing: `strconv.ParseInt(s, 0, 64)`, else `strconv.ParseFloat(s, 64)`;
/// the error is `ParseFloat`'s.
fn go_float(s: &str) -> Result<f64, String> {
    if let Some(v) = go_int(s) {
        return Ok(v);
    }
    let err = |what: &str| format!("strconv.ParseFloat: parsing {}: {what}", go_quote(s));
    let unsigned = s.trim_start_matches(['+', '-']);
    let neg = s.starts_with('-');
    let lower = unsigned.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        return Ok(if neg {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if lower == "nan" {
        return Ok(f64::NAN);
    }
    if lower.starts_with("0x") || (s.contains('_') && !underscore_ok(s)) {
        return Err(err("invalid syntax"));
    }
    let plain: String = s.chars().filter(|&c| c != '_').collect();
    let well_formed = {
        let b = plain.trim_start_matches(['+', '-']).as_bytes();
        let mut i = 0;
        let mut digits = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
            digits += 1;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
                digits += 1;
            }
        }
        let mut ok = digits > 0;
        if ok && i < b.len() && (b[i] | 0x20) == b'e' {
            i += 1;
            if i < b.len() && matches!(b[i], b'+' | b'-') {
                i += 1;
            }
            let e0 = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            ok = i > e0;
        }
        ok && i == b.len()
    };
    if !well_formed {
        return Err(err("invalid syntax"));
    }
    match plain.parse::<f64>() {
        Ok(v) if v.is_infinite() => Err(err("value out of range")),
        Ok(v) => Ok(v),
        Err(_) => Err(err("invalid syntax")),
    }
}

/// Whether a regex label matcher value parses, with Go's `regexp/syntax` error otherwise (the
/// common errors: parentheses, brackets, ranges, repetitions, escapes).
fn check_regex(re: &str) -> Result<(), String> {
    let fail = |code: &str, expr: &str| Err(format!("error parsing regexp: {code}: `{expr}`"));
    let b = re.as_bytes();
    let mut depth = 0usize;
    // Whether the previous item can take a repetition operator.
    let mut operand = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                let Some(&c) = b.get(i + 1) else {
                    return fail("trailing backslash at end of expression", "");
                };
                if !(c.is_ascii_punctuation() || b"dDwWsSbBAzaftnrvxpPQ0".contains(&c)) {
                    let end = re[i + 1..]
                        .chars()
                        .next()
                        .map_or(i + 2, |c| i + 1 + c.len_utf8());
                    return fail("invalid escape sequence", &re[i..end]);
                }
                i += 2;
                operand = true;
                continue;
            }
            b'[' => {
                let start = i;
                i += 1;
                if b.get(i) == Some(&b'^') {
                    i += 1;
                }
                let mut first = true;
                loop {
                    let Some(&c) = b.get(i) else {
                        return fail("missing closing ]", &re[start..]);
                    };
                    if c == b']' && !first {
                        break;
                    }
                    first = false;
                    if c == b'[' && b.get(i + 1) == Some(&b':') {
                        if let Some(e) = re[i + 2..].find(":]") {
                            i += e + 4;
                            continue;
                        }
                    }
                    let lo_start = i;
                    let lo = class_char(re, &mut i);
                    if b.get(i) == Some(&b'-') && b.get(i + 1).is_some_and(|&c| c != b']') {
                        i += 1;
                        let hi = class_char(re, &mut i);
                        if hi < lo {
                            return fail("invalid character class range", &re[lo_start..i]);
                        }
                    }
                }
                operand = true;
            }
            b'(' => {
                depth += 1;
                operand = false;
                if b.get(i + 1) == Some(&b'?') {
                    i += 1;
                }
            }
            b')' => {
                if depth == 0 {
                    return fail("unexpected )", re);
                }
                depth -= 1;
                operand = true;
            }
            b'|' => operand = false,
            b'*' | b'+' | b'?' => {
                if !operand {
                    let end = if b.get(i + 1) == Some(&b'?') {
                        i + 2
                    } else {
                        i + 1
                    };
                    return fail("missing argument to repetition operator", &re[i..end]);
                }
            }
            _ => operand = true,
        }
        i += 1;
    }
    if depth > 0 {
        return fail("missing closing )", re);
    }
    Ok(())
}

/// One character of a bracket class (escapes decoded roughly), advancing `i`.
fn class_char(re: &str, i: &mut usize) -> u32 {
    let rest = &re[*i..];
    let mut chars = rest.chars();
    let c = chars.next().unwrap_or('\0');
    if c == '\\' {
        let e = chars.next().unwrap_or('\\');
        *i += 1 + e.len_utf8();
        return match e {
            'n' => '\n' as u32,
            't' => '\t' as u32,
            'r' => '\r' as u32,
            'f' => 0xc,
            'v' => 0xb,
            'a' => 7,
            e => e as u32,
        };
    }
    *i += c.len_utf8();
    c as u32
}

#[cfg(test)]
mod tests;
