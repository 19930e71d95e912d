//! Label sets: the identity of a series.
//!
//! A [`Labels`] value is a set of name/value pairs kept sorted by name, with no duplicate names,
//! exactly like Prometheus' `labels.Labels`. Ordering between label sets is Prometheus' too: pair by
//! pair (name, then value, compared as bytes), and a shorter set that is a prefix sorts first. The
//! index writer relies on that ordering, since series in an index must be sorted by label set.
//!
//! Strings are `Arc<str>` so the head can intern them: every series that says `job="node"` shares
//! one allocation for `job` and one for `node`.

use std::fmt;
use std::sync::Arc;

/// The label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// One name/value pair.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Label {
    pub name: Arc<str>,
    pub value: Arc<str>,
}

impl Label {
    pub fn new(name: impl Into<Arc<str>>, value: impl Into<Arc<str>>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A sorted set of labels identifying one series.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Builds a label set from pairs in any order. Empty values are dropped (in Prometheus an
    /// empty value means "label absent"); when a name repeats, the last value wins.
    pub fn from_pairs<N, V, I>(pairs: I) -> Self
    where
        N: Into<Arc<str>>,
        V: Into<Arc<str>>,
        I: IntoIterator<Item = (N, V)>,
    {
        let mut labels: Vec<Label> = pairs
            .into_iter()
            .map(|(n, v)| Label::new(n, v))
            .filter(|l| !l.value.is_empty())
            .collect();
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        // Keep the last of each run of equal names.
        let mut out: Vec<Label> = Vec::with_capacity(labels.len());
        for l in labels {
            match out.last_mut() {
                Some(last) if last.name == l.name => *last = l,
                _ => out.push(l),
            }
        }
        Labels(out)
    }

    /// Wraps labels the caller guarantees are sorted by name without duplicates.
    pub fn from_sorted(labels: Vec<Label>) -> Self {
        debug_assert!(labels.windows(2).all(|w| w[0].name < w[1].name));
        Labels(labels)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| (*l.name).cmp(name))
            .ok()
            .map(|i| &*self.0[i].value)
    }

    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// Returns a copy with `name` set to `value` (or removed when `value` is empty).
    pub fn with(&self, name: &str, value: &str) -> Labels {
        let mut v = self.0.clone();
        match v.binary_search_by(|l| (*l.name).cmp(name)) {
            Ok(i) if value.is_empty() => {
                v.remove(i);
            }
            Ok(i) => v[i].value = value.into(),
            Err(_) if value.is_empty() => {}
            Err(i) => v.insert(i, Label::new(name, value)),
        }
        Labels(v)
    }

    /// Returns a copy without the given names.
    pub fn without(&self, names: &[&str]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| !names.contains(&&*l.name))
                .cloned()
                .collect(),
        )
    }

    /// A 64-bit hash of the label set for in-process maps (not the hashring's hash). Equal to
    /// [`hash_pairs`] over the same pairs, so borrowed labels can be looked up without
    /// building a `Labels`.
    pub fn stable_hash(&self) -> u64 {
        (self.identity_hash() >> 64) as u64
    }

    /// The 128-bit identity hash, see [`identity_hash_pairs`].
    pub fn identity_hash(&self) -> u128 {
        identity_hash_pairs(self.0.iter().map(|l| (&*l.name, &*l.value)))
    }
}

/// A label value as the text exposition format writes it (`\\`, `\"` and `\n` escaped).
/// `prometheus-client` writes label values as given, so values that can hold these characters
/// (a label set rendered as text, names from configuration files) pass through here first;
/// otherwise one such value makes the whole `/metrics` page unparsable for Prometheus.
pub fn escape_exposition_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The 128-bit identity hash of name/value pairs (in the order given): XXH3-128 over the
/// strings, each followed by 0xff (a byte UTF-8 never contains, so pairs cannot alias).
///
/// The head identifies a series arriving with borrowed labels by this hash alone (no string
/// comparison): two different label sets sharing a 128-bit XXH3 hash is far less likely than a
/// disk flipping a bit, and a writer could at most merge two series of a tenant it may write to.
pub fn identity_hash_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> u128 {
    with_pair_bytes(&[], pairs, xxhash_rust::xxh3::xxh3_128)
}

/// Calls `f` with the `prefix` parts, then each pair's name and value each followed by 0xff,
/// laid out in a buffer reused per thread: one pass of a one-shot hash over it costs less than
/// a streaming hasher's updates for strings this short.
pub fn with_pair_bytes<'a, R>(
    prefix: &[&[u8]],
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        prefix.iter().for_each(|p| buf.extend_from_slice(p));
        for (name, value) in pairs {
            buf.extend_from_slice(name.as_bytes());
            buf.push(0xff);
            buf.extend_from_slice(value.as_bytes());
            buf.push(0xff);
        }
        f(&buf)
    })
}

/// The upper 64 bits of [`identity_hash_pairs`]: what [`Labels::stable_hash`] returns.
pub fn hash_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    (identity_hash_pairs(pairs) >> 64) as u64
}

/// A `BuildHasher` for maps whose keys already are good 64-bit hashes or unique ids (series
/// refs, label-set hashes): the key is used as its own hash, no second hashing.
#[derive(Clone, Copy, Default, Debug)]
pub struct IdentityHash;

/// The hasher behind [`IdentityHash`]; only `u64` (and smaller integer) keys are supported.
#[derive(Default)]
pub struct IdentityHasher(u64);

impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not used by integer keys; fold bytes in so misuse still hashes something sensible.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        // Spread ids (which are small and sequential) over the high bits hashbrown uses.
        self.0 = v.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

impl std::hash::BuildHasher for IdentityHash {
    type Hasher = IdentityHasher;
    fn build_hasher(&self) -> IdentityHasher {
        IdentityHasher::default()
    }
}

/// A `BuildHasher` for maps keyed by label names and values: each string is hashed in one
/// xxh3 call, with a seed drawn once per process so that label values a client chooses cannot
/// be made to collide on purpose. Several times faster than the standard library's SipHash on
/// the short strings of labels; the head's postings and symbol table use it.
#[derive(Clone, Copy, Debug)]
pub struct StrHash(u64);

impl Default for StrHash {
    fn default() -> Self {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        StrHash(*SEED.get_or_init(|| {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64)
        }))
    }
}

/// The hasher behind [`StrHash`].
pub struct StrHasher(u64);

impl std::hash::Hasher for StrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
    fn write_u8(&mut self, b: u8) {
        // `str` ends its hash with 0xff; mixing it in keeps ("a", "b") and ("ab") apart.
        self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl std::hash::BuildHasher for StrHash {
    type Hasher = StrHasher;
    fn build_hasher(&self) -> StrHasher {
        StrHasher(self.0)
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Formats like Prometheus: `{__name__="up", job="node"}`, values escaped as Go `%q` would.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={:?}", l.name, &*l.value)?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `labels!("__name__" => "up", "job" => "node")`
#[macro_export]
macro_rules! labels {
    ($($name:expr => $value:expr),* $(,)?) => {
        $crate::labels::Labels::from_pairs([$(($name, $value)),*])
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_values_escape_quotes_backslashes_and_newlines() {
        assert_eq!(escape_exposition_value("plain"), "plain");
        assert_eq!(
            escape_exposition_value("{replica=\"r0\"}\\\n"),
            "{replica=\\\"r0\\\"}\\\\\\n"
        );
    }

    #[test]
    fn sorted_and_deduplicated() {
        let l = Labels::from_pairs([("b", "1"), ("a", "2"), ("b", "3"), ("c", "")]);
        assert_eq!(l.to_string(), r#"{a="2", b="3"}"#);
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
    }

    #[test]
    fn ordering_matches_prometheus() {
        let a = labels!("a" => "1");
        let ab = labels!("a" => "1", "b" => "1");
        let a2 = labels!("a" => "2");
        assert!(a < ab);
        assert!(ab < a2);
    }

    #[test]
    fn with_and_without() {
        let l = labels!("a" => "1", "c" => "3");
        assert_eq!(l.with("b", "2").to_string(), r#"{a="1", b="2", c="3"}"#);
        assert_eq!(l.with("a", "").to_string(), r#"{c="3"}"#);
        assert_eq!(l.without(&["a"]).to_string(), r#"{c="3"}"#);
    }
}
