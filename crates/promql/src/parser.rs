//! Parser glue: the `promql-parser` crate does the parsing and type checking; when it rejects a
//! query, [`crate::diag`] works out the error Prometheus reports, with its position
//! (`1:16: parse error: unclosed left parenthesis`), falling back to `promql-parser`'s message
//! where Prometheus would accept the query (syntax `promql-parser` lacks).
//!
//! One gap is patched before parsing: `promql-parser` decodes `\xNN` (and octal) escapes in
//! string literals as the code point U+00NN, where Go (and so Prometheus) produces the raw
//! byte. Literals using those escapes are decoded here the Go way and re-escaped with `\u`
//! escapes; bytes that are not valid UTF-8 become the private-use characters
//! `U+10FF00 + byte` ([`INVALID_BYTE_BASE`]), which the engine rejects where Prometheus
//! rejects invalid UTF-8 (label names) and prints back as `\xNN`.
//!
//! The histogram trim operators `</` and `>/`, which `promql-parser` lacks, are handled in
//! [`crate::trim`].

use promql_parser::parser::Expr;

use crate::diag;
use crate::error::{Error, Result};

/// Invalid UTF-8 byte `b` of a string literal is carried as the char `INVALID_BYTE_BASE + b`.
pub(crate) const INVALID_BYTE_BASE: u32 = 0x10_FF00;

fn bytes_to_string(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        s.push_str(chunk.valid());
        for &b in chunk.invalid() {
            s.push(char::from_u32(INVALID_BYTE_BASE + b as u32).unwrap_or('\u{fffd}'));
        }
    }
    s
}

/// Whether `s` holds bytes that were not valid UTF-8 in the query.
pub(crate) fn has_invalid_bytes(s: &str) -> bool {
    s.chars()
        .any(|c| (c as u32) >= INVALID_BYTE_BASE && (c as u32) <= INVALID_BYTE_BASE + 0xff)
}

/// Quotes like Go's `%q`, printing carried invalid bytes as `\xNN`.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        let u = c as u32;
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            _ if (INVALID_BYTE_BASE..=INVALID_BYTE_BASE + 0xff).contains(&u) => {
                out.push_str(&format!("\\x{:02x}", u - INVALID_BYTE_BASE))
            }
            _ if c.is_control() => out.push_str(&format!("\\u{:04x}", u)),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Parses a PromQL expression.
pub fn parse(query: &str) -> Result<Expr> {
    // Only on the error path, work out Prometheus' wording and position.
    let fail = |fallback: String| {
        Error::Parse(
            diag::describe(query, diag::Options::default())
                .unwrap_or_else(|| format!("parse error: {fallback}")),
        )
    };
    // The trim operators are unknown to `promql-parser`: parse them masked, then restore.
    let (masked, trims) = match crate::trim::mask(query) {
        Some((masked, marks)) => (Some(masked), Some(marks)),
        None => (None, None),
    };
    let fixed = fix_byte_escapes(masked.as_deref().unwrap_or(query));
    let expr = promql_parser::parser::parse(&fixed).map_err(fail)?;
    match trims {
        Some(marks) => crate::trim::restore(expr, &marks).map_err(fail),
        None => Ok(expr),
    }
}

/// Decodes a quoted literal body Go-style into bytes; `None` if it has no byte escapes or is
/// malformed.
fn decode_go(body: &str) -> Option<Vec<u8>> {
    let b = body.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut has_byte_escape = false;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = *b.get(i + 1)?;
        i += 2;
        match c {
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'\\' | b'\'' | b'"' => out.push(c),
            b'x' => {
                let h = body.get(i..i + 2)?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                has_byte_escape = true;
                i += 2;
            }
            b'0'..=b'7' => {
                let o = body.get(i - 1..i + 2)?;
                out.push(u8::from_str_radix(o, 8).ok()?);
                has_byte_escape = true;
                i += 2;
            }
            b'u' | b'U' => {
                let n = if c == b'u' { 4 } else { 8 };
                let h = body.get(i..i + n)?;
                let ch = char::from_u32(u32::from_str_radix(h, 16).ok()?)?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i += n;
            }
            _ => return None,
        }
    }
    has_byte_escape.then_some(out)
}

fn fix_byte_escapes(query: &str) -> String {
    if !query.contains('\\') {
        return query.to_string();
    }
    let mut out = String::with_capacity(query.len());
    let chars: Vec<(usize, char)> = query.char_indices().collect();
    let mut k = 0;
    while k < chars.len() {
        let (pos, c) = chars[k];
        if c == '`' {
            // Raw string: copy through.
            let end = query[pos + 1..]
                .find('`')
                .map(|e| pos + 1 + e + 1)
                .unwrap_or(query.len());
            out.push_str(&query[pos..end]);
            while k < chars.len() && chars[k].0 < end {
                k += 1;
            }
            continue;
        }
        if c != '"' && c != '\'' {
            out.push(c);
            k += 1;
            continue;
        }
        // Find the closing quote, honouring escapes.
        let mut j = k + 1;
        while j < chars.len() && chars[j].1 != c {
            if chars[j].1 == '\\' {
                j += 1;
            }
            j += 1;
        }
        if j >= chars.len() {
            out.push_str(&query[pos..]);
            break;
        }
        let body = &query[pos + 1..chars[j].0];
        match decode_go(body) {
            Some(bytes) => {
                let s = bytes_to_string(&bytes);
                out.push(c);
                for ch in s.chars() {
                    match ch {
                        '\\' => out.push_str("\\\\"),
                        ch if ch == c => {
                            out.push('\\');
                            out.push(ch);
                        }
                        ' '..='~' => out.push(ch),
                        ch if (ch as u32) > 0xffff => {
                            out.push_str(&format!("\\U{:08x}", ch as u32))
                        }
                        ch => out.push_str(&format!("\\u{:04x}", ch as u32)),
                    }
                }
                out.push(c);
            }
            None => out.push_str(&query[pos..=chars[j].0]),
        }
        k = j + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_escapes_are_decoded_like_go() {
        assert_eq!(fix_byte_escapes(r#"f("\xc3\xa9")"#), r#"f("\u00e9")"#);
        assert_eq!(fix_byte_escapes(r#"f("a\xc5z")"#), r#"f("a\U0010ffc5z")"#);
        assert_eq!(go_quote("a\u{10ffc5}z"), r#""a\xc5z""#);
        assert_eq!(fix_byte_escapes(r#"f("a\nb", `\x`)"#), r#"f("a\nb", `\x`)"#);
    }
}

/// The matcher sets of every vector selector in a query, in source order (one entry per
/// selector: its sets, one per `or` group), for APIs that select by a query's selectors without
/// evaluating it (exemplars).
pub fn query_selectors(query: &str) -> Result<Vec<Vec<Vec<model::Matcher>>>> {
    fn walk(e: &Expr, out: &mut Vec<Vec<Vec<model::Matcher>>>) -> Result<()> {
        match e {
            Expr::VectorSelector(vs) => out.push(crate::eval::selector_matchers(vs)?),
            Expr::MatrixSelector(ms) => out.push(crate::eval::selector_matchers(&ms.vs)?),
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    walk(p, out)?;
                }
                walk(&a.expr, out)?;
            }
            Expr::Unary(u) => walk(&u.expr, out)?,
            Expr::Binary(b) => {
                walk(&b.lhs, out)?;
                walk(&b.rhs, out)?;
            }
            Expr::Paren(p) => walk(&p.expr, out)?,
            Expr::Subquery(s) => walk(&s.expr, out)?,
            Expr::Call(c) => {
                for a in &c.args.args {
                    walk(a, out)?;
                }
            }
            Expr::Extension(x) => {
                for c in x.expr.children() {
                    walk(c, out)?;
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(&parse(query)?, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod selector_tests {
    #[test]
    fn every_selector_of_a_query_is_found() {
        let got = super::query_selectors(
            r#"sum(rate(a{job="x"}[5m])) / on() group_left b or histogram_quantile(0.9, c) </ 3"#,
        )
        .unwrap();
        let names: Vec<String> = got.iter().map(|sets| sets[0][0].value.clone()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(got[0][0].len(), 2);
    }
}
