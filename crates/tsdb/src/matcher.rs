//! Resolution of label matchers to postings. The matchers themselves are the model layer's
//! ([`model::matcher`]); this module turns them into sorted lists of series refs over any index
//! (the head's or a block's), using the literal sets a matcher's regex reduces to.

use std::collections::BTreeSet;

pub use model::matcher::{InvalidMatcher, MatchType, Matcher};

use crate::Result;

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
    use crate::Labels;
    use std::collections::BTreeMap;

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
