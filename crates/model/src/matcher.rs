//! Label matchers (`=`, `!=`, `=~`, `!~`): the one matcher type of every layer (the TSDB's
//! postings lookups, the PromQL engine, the StoreAPI, the query layer).
//!
//! Regexes are anchored at both ends and `.` matches a newline, as in Prometheus. Common regex
//! shapes are recognised so they never run the regex engine: a literal (`foo`), an alternation
//! of literals (`a|b|c`, the shape Grafana's multi-value variables produce), `.*` (matches
//! anything) and `.+` (anything non-empty). For those shapes [`Matcher::set_matches`] lists the
//! exact values, so a postings lookup is a handful of map reads instead of a scan over every
//! value of the label. A regex is compiled once, when the matcher is built.

use regex::Regex;

use crate::labels::Labels;

/// A regex matcher whose pattern does not compile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid regular expression {pattern:?}: {reason}")]
pub struct InvalidMatcher {
    pub pattern: String,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchType {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchType {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regex => "=~",
            MatchType::NotRegex => "!~",
        }
    }
}

/// What a regex pattern reduces to.
#[derive(Clone, Debug)]
enum Pattern {
    /// Any value, including the empty one (`.*`).
    Any,
    /// Any non-empty value (`.+`).
    NonEmpty,
    /// One of these exact values (a literal, or an alternation of literals).
    Set(Vec<String>),
    /// Everything else: the compiled, anchored regex.
    Regex(Regex),
}

#[derive(Clone, Debug)]
pub struct Matcher {
    pub kind: MatchType,
    pub name: String,
    pub value: String,
    pattern: Option<Pattern>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.name == other.name && self.value == other.value
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.kind.as_str(), self.value)
    }
}

impl Matcher {
    pub fn new(
        kind: MatchType,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, InvalidMatcher> {
        let name = name.into();
        let value = value.into();
        let pattern = match kind {
            MatchType::Regex | MatchType::NotRegex => Some(compile(&value)?),
            _ => None,
        };
        Ok(Matcher {
            kind,
            name,
            value,
            pattern,
        })
    }

    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self::new(MatchType::Equal, name, value).expect("equality matchers always compile")
    }

    pub fn not_equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self::new(MatchType::NotEqual, name, value).expect("inequality matchers always compile")
    }

    pub fn regex(
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, InvalidMatcher> {
        Self::new(MatchType::Regex, name, value)
    }

    pub fn not_regex(
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, InvalidMatcher> {
        Self::new(MatchType::NotRegex, name, value)
    }

    /// Does a label value (empty when the label is absent) satisfy the matcher?
    pub fn matches(&self, v: &str) -> bool {
        match self.kind {
            MatchType::Equal => v == self.value,
            MatchType::NotEqual => v != self.value,
            MatchType::Regex => self.pattern_matches(v),
            MatchType::NotRegex => !self.pattern_matches(v),
        }
    }

    fn pattern_matches(&self, v: &str) -> bool {
        match self
            .pattern
            .as_ref()
            .expect("regex matchers carry a pattern")
        {
            Pattern::Any => true,
            Pattern::NonEmpty => !v.is_empty(),
            Pattern::Set(values) => values.iter().any(|x| x == v),
            Pattern::Regex(re) => re.is_match(v),
        }
    }

    /// Does a series satisfy the matcher?
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(labels.get(&self.name).unwrap_or(""))
    }

    /// For `=` and regexes that reduce to a set of literals: the exact values that match.
    pub fn set_matches(&self) -> Option<Vec<&str>> {
        match (self.kind, &self.pattern) {
            (MatchType::Equal, _) => Some(vec![self.value.as_str()]),
            (MatchType::Regex, Some(Pattern::Set(values))) => {
                Some(values.iter().map(String::as_str).collect())
            }
            _ => None,
        }
    }

    /// True if the matcher matches every value, even the empty one (`=~".*"`): it selects nothing.
    pub fn matches_everything(&self) -> bool {
        matches!(
            (self.kind, &self.pattern),
            (MatchType::Regex, Some(Pattern::Any))
        )
    }
}

/// Characters with a meaning in regex syntax; a pattern without them is a literal.
fn is_regex_meta(c: char) -> bool {
    matches!(
        c,
        '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$'
    )
}

fn compile(pattern: &str) -> Result<Pattern, InvalidMatcher> {
    match pattern {
        ".*" => return Ok(Pattern::Any),
        ".+" => return Ok(Pattern::NonEmpty),
        _ => {}
    }
    // `a|b|c` where each alternative is a plain literal (Grafana's multi-value variables).
    let alternatives: Vec<&str> = pattern.split('|').collect();
    if alternatives
        .iter()
        .all(|alt| !alt.chars().any(is_regex_meta))
    {
        let mut set: Vec<String> = alternatives.iter().map(|s| s.to_string()).collect();
        set.sort();
        set.dedup();
        return Ok(Pattern::Set(set));
    }
    // Prometheus anchors regexes at both ends and lets `.` match newlines.
    let anchored = format!("^(?s:{pattern})$");
    Regex::new(&anchored)
        .map(Pattern::Regex)
        .map_err(|e| InvalidMatcher {
            pattern: pattern.to_string(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_shapes() {
        let m = Matcher::regex("job", "a|b").unwrap();
        assert_eq!(m.set_matches(), Some(vec!["a", "b"]));
        assert!(m.matches("a") && !m.matches("ab") && !m.matches(""));
        let m = Matcher::regex("job", "a.*").unwrap();
        assert!(m.set_matches().is_none());
        assert!(m.matches("abc") && !m.matches("ba"));
        assert!(Matcher::regex("x", ".*").unwrap().matches_everything());
        let m = Matcher::regex("x", ".+").unwrap();
        assert!(m.matches("z") && !m.matches(""));
        let m = Matcher::not_regex("x", "foo|").unwrap();
        assert!(!m.matches("") && !m.matches("foo") && m.matches("bar"));
        let err = Matcher::regex("x", "(").unwrap_err();
        assert_eq!(err.pattern, "(");
        // Anchoring applies to the whole alternation, and `.` matches a newline.
        let m = Matcher::regex("x", "a|b.").unwrap();
        assert!(m.matches("b\n") && !m.matches("ab."));
    }

    #[test]
    fn displays_like_promql() {
        let m = Matcher::regex("job", "a\"b").unwrap();
        assert_eq!(m.to_string(), r#"job=~"a\"b""#);
    }
}
