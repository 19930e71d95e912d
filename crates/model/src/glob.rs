//! Glob patterns with the syntax and meaning of Go's `path/filepath.Match`: Thanos uses them
//! for `"tenant_matcher_type": "glob"` in hashrings files, Prometheus for file SD paths:
//!
//! - `*` matches any run of characters except `/`;
//! - `?` matches one character except `/`;
//! - `[abc]`, `[a-z]`, `[^a-z]` match one character in (or, with `^`, not in) the class; a class
//!   may match `/`;
//! - `\x` matches `x` literally, inside or outside a class.
//!
//! The whole name must match. Go rejects a malformed pattern only when a name is matched
//! against it (Thanos then fails the write); Cairn rejects it when the pattern is built, with the
//! same rules for what is malformed: a trailing `\`, an unterminated or empty class, a class
//! item that starts with an unescaped `-` or `]`, a range without an upper bound.

use std::fmt;

/// Go's `filepath.Separator` on the platforms Thanos runs on.
const SEPARATOR: char = '/';

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`
    AnyChar,
    /// `*` (a run of stars is one star)
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A compiled glob pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    tokens: Vec<Token>,
}

/// Why a pattern is malformed (Go's `ErrBadPattern`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadPattern {
    pub pattern: String,
    pub reason: &'static str,
}

impl fmt::Display for BadPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed glob {:?}: {}", self.pattern, self.reason)
    }
}

impl std::error::Error for BadPattern {}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, BadPattern> {
        let bad = |reason| BadPattern {
            pattern: pattern.to_string(),
            reason,
        };
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                }
                '?' => tokens.push(Token::AnyChar),
                '\\' => match chars.next() {
                    Some(e) => tokens.push(Token::Literal(e)),
                    None => return Err(bad("trailing backslash")),
                },
                '[' => {
                    let negated = chars.peek() == Some(&'^');
                    if negated {
                        chars.next();
                    }
                    let mut ranges = Vec::new();
                    loop {
                        if chars.peek() == Some(&']') && !ranges.is_empty() {
                            chars.next();
                            break;
                        }
                        let lo = class_char(&mut chars).map_err(bad)?;
                        let hi = if chars.peek() == Some(&'-') {
                            chars.next();
                            class_char(&mut chars).map_err(bad)?
                        } else {
                            lo
                        };
                        ranges.push((lo, hi));
                    }
                    tokens.push(Token::Class { negated, ranges });
                }
                c => tokens.push(Token::Literal(c)),
            }
        }
        Ok(Glob {
            pattern: pattern.to_string(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the whole of `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        // next[n]: tokens[t+1..] match name[n..]; built from the last token backwards.
        let (nt, nn) = (self.tokens.len(), name.len());
        let mut next = vec![false; nn + 1];
        next[nn] = true; // no tokens match only the empty rest
        for t in (0..nt).rev() {
            let mut cur = vec![false; nn + 1];
            for n in (0..=nn).rev() {
                cur[n] = match &self.tokens[t] {
                    // Either the star matches nothing here, or it takes one non-separator
                    // character and goes on.
                    Token::Star => next[n] || (n < nn && name[n] != SEPARATOR && cur[n + 1]),
                    token => n < nn && single(token, name[n]) && next[n + 1],
                };
            }
            next = cur;
        }
        next[0]
    }
}

fn single(token: &Token, c: char) -> bool {
    match token {
        Token::Literal(l) => *l == c,
        Token::AnyChar => c != SEPARATOR,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
        }
        Token::Star => unreachable!("stars are handled by the caller"),
    }
}

/// One possibly escaped character of a class; like Go, a class must go on after it.
fn class_char(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, &'static str> {
    let c = match chars.next() {
        None => return Err("unterminated character class"),
        Some('-') => return Err("'-' at the start of a class item"),
        Some(']') => return Err("empty character class or unescaped ']'"),
        Some('\\') => chars
            .next()
            .ok_or("trailing backslash in a character class")?,
        Some(c) => c,
    };
    if chars.peek().is_none() {
        return Err("unterminated character class");
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        Glob::new(p).unwrap().matches(n)
    }

    #[test]
    fn go_filepath_match_semantics() {
        assert!(m("abc", "abc"));
        assert!(m("*", "abc"));
        assert!(m("*c", "abc"));
        assert!(m("a*", "a"));
        assert!(m("a*", "abc"));
        assert!(!m("a*", "ab/c"));
        assert!(m("a*/b", "abc/b"));
        assert!(!m("a*/b", "a/c/b"));
        assert!(m("a*b*c*d*e*/f", "axbxcxdxe/f"));
        assert!(m("a*b*c*d*e*/f", "axbxcxdxexxx/f"));
        assert!(!m("a*b*c*d*e*/f", "axbxcxdxe/xxx/f"));
        assert!(!m("a*b*c*d*e*/f", "axbxcxdxexxx/fff"));
        assert!(m("a*b?c*x", "abxbbxdbxebxczzx"));
        assert!(!m("a*b?c*x", "abxbbxdbxebxczzy"));
        assert!(m("ab[c]", "abc"));
        assert!(m("ab[b-d]", "abc"));
        assert!(!m("ab[e-g]", "abc"));
        assert!(!m("ab[^c]", "abc"));
        assert!(!m("ab[^b-d]", "abc"));
        assert!(m("ab[^e-g]", "abc"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "ab"));
        assert!(m("a?b", "a☺b"));
        assert!(m("a[^a]b", "a☺b"));
        assert!(!m("a???b", "a☺b"));
        assert!(!m("a[^a][^a][^a]b", "a☺b"));
        assert!(m("[a-ζ]*", "α"));
        assert!(!m("*[a-ζ]", "A"));
        assert!(!m("a?b", "a/b"));
        assert!(!m("a*b", "a/b"));
        assert!(m("a[/]b", "a/b"), "a class may match the separator");
        assert!(m("[\\]a]", "]"));
        assert!(m("[\\-]", "-"));
        assert!(m("[x\\-]", "x"));
        assert!(m("[x\\-]", "-"));
        assert!(!m("[x\\-]", "z"));
        assert!(m("[\\-x]", "x"));
        assert!(!m("[\\-x]", "a"));
        assert!(m("*x", "xxx"));
        assert!(m("prefix*", "prefix-1"));
        assert!(!m("prefix*", "suffix-1"));
        assert!(m("t2", "t2"));
        assert!(!m("t2", "t22"));
        assert!(m("", ""));
        assert!(!m("", "a"));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for p in [
            "[]a]", "[-]", "[x-]", "[", "[^", "[^bc", "a[", "ab\\", "[a-b-c]", "a[]", "[\\",
            "[^]a]",
        ] {
            assert!(Glob::new(p).is_err(), "{p:?} should be malformed");
        }
        for p in ["[a-b]", "\\[", "a[\\]]", "[^a]"] {
            assert!(Glob::new(p).is_ok(), "{p:?} should compile");
        }
    }
}
