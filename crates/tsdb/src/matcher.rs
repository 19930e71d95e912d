//! Label matchers (`=`, `!=`, `=~`, `!~`) and their resolution to postings.
//!
//! Regexes are anchored at both ends, as in Prometheus. Common regex shapes are recognised so
//! they never run the regex engine: a literal (`foo`), an alternation of literals (`a|b|c`, the
//! shape Grafana's multi-value variables produce), `.*` (matches anything) and `.+` (anything
//! non-empty). For those shapes [`Matcher::set_matches`] lists the exact values, so a postings
//! lookup is a handful of map reads instead of a scan over every value of the label.

use std::collections::BTreeSet;

use regex::Regex;

use crate::{Error, Labels, Result};

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
    pub fn new(kind: MatchType, name: impl Into<String>, value: impl Into<String>) -> Result<Self> {
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

    pub fn regex(name: impl Into<String>, value: impl Into<String>) -> Result<Self> {
        Self::new(MatchType::Regex, name, value)
    }

    pub fn not_regex(name: impl Into<String>, value: impl Into<String>) -> Result<Self> {
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

fn compile(pattern: &str) -> Result<Pattern> {
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
        .map_err(|e| Error::InvalidMatcher(format!("{pattern:?}: {e}")))
}

/// What postings resolution needs from an index (the head's or a block's).
pub trait PostingsIndex {
    /// All series refs, ascending.
    fn all_postings(&self) -> Result<Vec<u64>>;
    /// Series refs holding `name="value"`, ascending.
    fn postings(&self, name: &str, value: &str) -> Result<Vec<u64>>;
    /// The values of label `name`, sorted.
    fn label_values(&self, name: &str) -> Result<Vec<String>>;
}

/// Resolves matchers to the ascending list of series refs that satisfy all of them, the way
/// Prometheus does: matchers that cannot match the empty value select (and intersect) the
/// postings of their matching values; matchers that do match the empty value ("label absent
/// or ...") subtract the postings of the values they reject.
pub fn postings_for_matchers<I: PostingsIndex + ?Sized>(
    index: &I,
    matchers: &[Matcher],
) -> Result<Vec<u64>> {
    let mut positive: Option<Vec<u64>> = None;
    let mut negatives: Vec<Vec<u64>> = Vec::new();

    for m in matchers {
        if m.matches_everything() {
            continue;
        }
        if m.matches("") {
            // Series without the label match, so subtract those whose value is rejected.
            let rejected = values_where(index, &m.name, |v| !m.matches(v))?;
            negatives.push(union_postings(index, &m.name, &rejected)?);
        } else {
            let selected = match m.set_matches() {
                Some(values) => values.into_iter().map(str::to_string).collect(),
                None => values_where(index, &m.name, |v| m.matches(v))?,
            };
            let p = union_postings(index, &m.name, &selected)?;
            positive = Some(match positive {
                None => p,
                Some(prev) => intersect(&prev, &p),
            });
        }
        if matches!(&positive, Some(p) if p.is_empty()) {
            return Ok(Vec::new());
        }
    }

    let mut result = match positive {
        Some(p) => p,
        None => index.all_postings()?,
    };
    for n in &negatives {
        result = subtract(&result, n);
    }
    Ok(result)
}

fn values_where<I: PostingsIndex + ?Sized>(
    index: &I,
    name: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<String>> {
    Ok(index
        .label_values(name)?
        .into_iter()
        .filter(|v| keep(v))
        .collect())
}

fn union_postings<I: PostingsIndex + ?Sized>(
    index: &I,
    name: &str,
    values: &[String],
) -> Result<Vec<u64>> {
    let mut all: BTreeSet<u64> = BTreeSet::new();
    let mut single = None;
    for v in values {
        let p = index.postings(name, v)?;
        if values.len() == 1 {
            single = Some(p);
        } else {
            all.extend(p);
        }
    }
    Ok(single.unwrap_or_else(|| all.into_iter().collect()))
}

/// Intersection of two ascending lists.
pub fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Elements of ascending `a` not in ascending `b`.
pub fn subtract(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut j = 0;
    let mut out = Vec::with_capacity(a.len());
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j >= b.len() || b[j] != x {
            out.push(x);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

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
        assert!(Matcher::regex("x", "(").is_err());
        // Anchoring applies to the whole alternation, and `.` matches a newline.
        let m = Matcher::regex("x", "a|b.").unwrap();
        assert!(m.matches("b\n") && !m.matches("ab."));
    }

    struct MapIndex(BTreeMap<(String, String), Vec<u64>>, Vec<u64>);

    impl PostingsIndex for MapIndex {
        fn all_postings(&self) -> Result<Vec<u64>> {
            Ok(self.1.clone())
        }
        fn postings(&self, name: &str, value: &str) -> Result<Vec<u64>> {
            Ok(self
                .0
                .get(&(name.to_string(), value.to_string()))
                .cloned()
                .unwrap_or_default())
        }
        fn label_values(&self, name: &str) -> Result<Vec<String>> {
            Ok(self
                .0
                .keys()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .collect())
        }
    }

    /// Checks postings resolution against brute force over every series.
    #[test]
    fn postings_agree_with_brute_force() {
        let series: Vec<Labels> = vec![
            crate::labels!("__name__" => "up", "job" => "a", "i" => "1"),
            crate::labels!("__name__" => "up", "job" => "b", "i" => "2"),
            crate::labels!("__name__" => "up", "job" => "c"),
            crate::labels!("__name__" => "down", "i" => "1"),
        ];
        let mut map: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
        for (r, s) in series.iter().enumerate() {
            for l in s {
                map.entry((l.name.to_string(), l.value.to_string()))
                    .or_default()
                    .push(r as u64);
            }
        }
        let index = MapIndex(map, (0..series.len() as u64).collect());
        let cases: Vec<Vec<Matcher>> = vec![
            vec![Matcher::equal("__name__", "up")],
            vec![
                Matcher::equal("__name__", "up"),
                Matcher::not_equal("i", "1"),
            ],
            vec![Matcher::equal("i", "")],
            vec![Matcher::not_equal("i", "")],
            vec![Matcher::regex("job", "a|c").unwrap()],
            vec![Matcher::regex("job", "a|c|").unwrap()],
            vec![Matcher::not_regex("job", "a.*").unwrap()],
            vec![Matcher::regex("job", ".*").unwrap()],
            vec![
                Matcher::regex("job", ".+").unwrap(),
                Matcher::equal("i", "2"),
            ],
            vec![Matcher::equal("nope", "x")],
        ];
        for ms in cases {
            let got = postings_for_matchers(&index, &ms).unwrap();
            let want: Vec<u64> = series
                .iter()
                .enumerate()
                .filter(|(_, s)| ms.iter().all(|m| m.matches_labels(s)))
                .map(|(i, _)| i as u64)
                .collect();
            assert_eq!(got, want, "matchers {ms:?}");
        }
    }

    #[test]
    fn set_operations() {
        assert_eq!(intersect(&[1, 3, 5, 7], &[3, 4, 5]), vec![3, 5]);
        assert_eq!(subtract(&[1, 3, 5, 7], &[3, 4, 5]), vec![1, 7]);
    }
}
