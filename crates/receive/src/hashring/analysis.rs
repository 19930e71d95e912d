//! What `cairn tools hashring plan` and `diff` measure: how a hashring spreads series over its
//! endpoints, and how many series change owners between two hashrings files. Measured on
//! synthetic series that look like a Kubernetes cluster's (or on series the operator supplies),
//! and, for ketama, computed exactly over the whole hash space.

use super::ring::{Hashring, KetamaRing};

/// Series per synthetic scrape target.
const SERIES_PER_TARGET: u64 = 50;
const JOBS: &[&str] = &[
    "api",
    "checkout",
    "node-exporter",
    "kube-state-metrics",
    "postgres",
    "redis",
    "frontend",
    "payments",
];
const NAMESPACES: &[&str] = &["default", "monitoring", "shop", "platform", "data"];
const BUCKETS: &[&str] = &[
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];

/// splitmix64: a bijective mix, so distinct targets get distinct pod names.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The `i`-th synthetic series, labels sorted by name: target `i / 50` (a pod of one of eight
/// jobs in one of five namespaces, with a unique `instance`) exposes 50 series of HTTP, Go
/// runtime, process and node metrics. Distinct `i` give distinct series (up to 800 million).
pub fn synthetic_series(i: u64) -> Vec<(String, String)> {
    let target = i / SERIES_PER_TARGET;
    let k = i % SERIES_PER_TARGET;
    let m = mix(target);
    let job = JOBS[(m % JOBS.len() as u64) as usize];
    let namespace = NAMESPACES[((m >> 8) % NAMESPACES.len() as u64) as usize];
    let pod = format!(
        "{job}-{:08x}-{:05x}",
        (m >> 16) as u32,
        (m >> 48) & 0xF_FFFF
    );
    let instance = format!(
        "10.{}.{}.{}:{}",
        (target >> 16) & 0xFF,
        (target >> 8) & 0xFF,
        target & 0xFF,
        8080 + (target >> 24)
    );
    let (name, extra): (&str, Vec<(&str, String)>) = match k {
        0..=11 => {
            let code = ["200", "404", "500"][(k % 3) as usize];
            let method = ["GET", "POST"][((k / 3) % 2) as usize];
            let handler = ["/api/v1/orders", "/healthz"][(k / 6) as usize];
            (
                "http_requests_total",
                vec![
                    ("code", code.into()),
                    ("handler", handler.into()),
                    ("method", method.into()),
                ],
            )
        }
        12..=23 => (
            "http_request_duration_seconds_bucket",
            vec![("le", BUCKETS[(k - 12) as usize].into())],
        ),
        24..=35 => {
            let j = k - 24;
            let mode = ["user", "system", "idle"][(j % 3) as usize];
            (
                "node_cpu_seconds_total",
                vec![("cpu", (j / 3).to_string()), ("mode", mode.into())],
            )
        }
        36..=40 => (
            "go_gc_duration_seconds",
            vec![(
                "quantile",
                ["0", "0.25", "0.5", "0.75", "1"][(k - 36) as usize].into(),
            )],
        ),
        _ => (
            [
                "up",
                "go_goroutines",
                "go_threads",
                "go_memstats_alloc_bytes",
                "go_memstats_heap_inuse_bytes",
                "process_cpu_seconds_total",
                "process_resident_memory_bytes",
                "process_open_fds",
                "scrape_duration_seconds",
            ][(k - 41) as usize],
            vec![],
        ),
    };
    let mut labels: Vec<(String, String)> = vec![
        ("__name__".into(), name.into()),
        ("instance".into(), instance),
        ("job".into(), job.into()),
        ("namespace".into(), namespace.into()),
        ("pod".into(), pod),
    ];
    labels.extend(extra.into_iter().map(|(n, v)| (n.to_string(), v)));
    labels.sort();
    labels
}

/// Parses one series in the text form Prometheus prints: `name{a="b", c="d"}`, `{__name__=
/// "name", a="b"}` or `name`. Labels come back sorted by name.
pub fn parse_series(line: &str) -> Result<Vec<(String, String)>, String> {
    let line = line.trim();
    let err = |what: &str| format!("series {line:?}: {what}");
    let (name, rest) = match line.find('{') {
        Some(i) => (line[..i].trim(), Some(&line[i + 1..])),
        None => (line, None),
    };
    let mut labels = Vec::new();
    if !name.is_empty() {
        labels.push(("__name__".to_string(), name.to_string()));
    }
    if let Some(rest) = rest {
        let mut chars = rest.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
                chars.next();
            }
            match chars.peek() {
                Some('}') => {
                    chars.next();
                    break;
                }
                None => return Err(err("missing '}'")),
                _ => {}
            }
            let mut label = String::new();
            while let Some(&c) = chars.peek() {
                if c == '=' || c.is_whitespace() {
                    break;
                }
                label.push(c);
                chars.next();
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.next() != Some('=') || label.is_empty() {
                return Err(err("expected name=\"value\""));
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.next() != Some('"') {
                return Err(err("label values must be quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    None => return Err(err("unterminated label value")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some(c) => value.push(c),
                        None => return Err(err("unterminated label value")),
                    },
                    Some(c) => value.push(c),
                }
            }
            labels.push((label, value));
        }
        if chars.any(|c| !c.is_whitespace()) {
            return Err(err("text after '}'"));
        }
    }
    if labels.is_empty() {
        return Err(err("no labels"));
    }
    labels.sort();
    if labels.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(err("a label name repeats"));
    }
    Ok(labels)
}

/// How many series one endpoint holds.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointLoad {
    pub address: String,
    pub az: String,
    /// Series it holds a replica of (any replica).
    pub series: u64,
    /// Series it holds replica 0 of.
    pub primaries: u64,
    /// The exact fraction of the hash space it holds any replica of (sums to the replication
    /// factor over the endpoints).
    pub expected_share: f64,
}

/// How a hashring spreads a set of series.
#[derive(Clone, Debug, PartialEq)]
pub struct Distribution {
    /// In the ring's endpoint order.
    pub endpoints: Vec<EndpointLoad>,
    pub series: u64,
    pub replication_factor: usize,
}

impl Distribution {
    /// Places every series hash on `ring`.
    pub fn measure(ring: &Hashring, hashes: impl IntoIterator<Item = u64>) -> Distribution {
        let expected = ring.hash_space_shares();
        let mut endpoints: Vec<EndpointLoad> = ring
            .endpoints()
            .iter()
            .zip(expected)
            .map(|(e, (_, share))| EndpointLoad {
                address: e.address.clone(),
                az: e.az.clone(),
                series: 0,
                primaries: 0,
                expected_share: share,
            })
            .collect();
        let mut series = 0;
        for hash in hashes {
            series += 1;
            for (n, i) in ring.owner_indices(hash).enumerate() {
                endpoints[i].series += 1;
                if n == 0 {
                    endpoints[i].primaries += 1;
                }
            }
        }
        Distribution {
            endpoints,
            series,
            replication_factor: ring.replication_factor(),
        }
    }

    /// Series replicas per endpoint if the spread were perfect.
    pub fn mean(&self) -> f64 {
        (self.series * self.replication_factor as u64) as f64 / self.endpoints.len() as f64
    }

    /// The most loaded endpoint over the mean (1.0 is a perfect spread).
    pub fn max_over_mean(&self) -> f64 {
        let max = self.endpoints.iter().map(|e| e.series).max().unwrap_or(0);
        max as f64 / self.mean()
    }

    /// The least loaded endpoint over the mean.
    pub fn min_over_mean(&self) -> f64 {
        let min = self.endpoints.iter().map(|e| e.series).min().unwrap_or(0);
        min as f64 / self.mean()
    }

    /// The same from the exact hash-space shares (no sampling noise).
    pub fn expected_max_over_mean(&self) -> f64 {
        let mean = self.replication_factor as f64 / self.endpoints.len() as f64;
        let max = self
            .endpoints
            .iter()
            .map(|e| e.expected_share)
            .fold(0.0, f64::max);
        max / mean
    }
}

/// How many series change owners between two hashrings.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Movement {
    pub series: u64,
    /// Series whose set of owners (by address) differs.
    pub owners_changed: u64,
    /// Series whose replica-0 owner differs.
    pub primary_changed: u64,
}

impl Movement {
    /// Compares owners series by series; a missing ring (the tenant has no hashring in that
    /// file) counts every series as moved.
    pub fn measure(
        old: Option<&Hashring>,
        new: Option<&Hashring>,
        hashes: impl IntoIterator<Item = u64>,
    ) -> Movement {
        let mut m = Movement::default();
        let owners = |ring: Option<&Hashring>, hash| -> Vec<String> {
            ring.map(|r| r.owners(hash).map(|e| e.address.clone()).collect())
                .unwrap_or_default()
        };
        for hash in hashes {
            m.series += 1;
            let (mut a, mut b) = (owners(old, hash), owners(new, hash));
            if a.is_empty() || b.is_empty() || a[0] != b[0] {
                m.primary_changed += 1;
            }
            a.sort_unstable();
            b.sort_unstable();
            if a.is_empty() || a != b {
                m.owners_changed += 1;
            }
        }
        m
    }

    pub fn add(&mut self, other: Movement) {
        self.series += other.series;
        self.owners_changed += other.owners_changed;
        self.primary_changed += other.primary_changed;
    }

    pub fn owners_fraction(&self) -> f64 {
        self.owners_changed as f64 / self.series.max(1) as f64
    }

    pub fn primary_fraction(&self) -> f64 {
        self.primary_changed as f64 / self.series.max(1) as f64
    }
}

/// The exact fractions of the hash space whose (owner set, replica-0 owner) change between two
/// hashrings, when both are ketama; None otherwise (hashmod owners do not follow arcs).
pub fn exact_movement(old: &Hashring, new: &Hashring) -> Option<(f64, f64)> {
    match (old, new) {
        (Hashring::Ketama(a), Hashring::Ketama(b)) => Some(KetamaRing::exact_movement(a, b)),
        _ => None,
    }
}

/// The least fraction of series that must get a new replica-0 owner when endpoints are only
/// added or only removed: added / new size, or removed / old size. None when endpoints are
/// both added and removed.
pub fn minimal_movement(old: &[&str], new: &[&str]) -> Option<f64> {
    let added = new.iter().filter(|a| !old.contains(a)).count();
    let removed = old.iter().filter(|a| !new.contains(a)).count();
    match (added, removed) {
        (0, 0) => Some(0.0),
        (a, 0) => Some(a as f64 / new.len() as f64),
        (0, r) => Some(r as f64 / old.len() as f64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_series_are_distinct_sorted_and_realistic() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..20_000 {
            let s = synthetic_series(i);
            assert!(s.windows(2).all(|w| w[0].0 < w[1].0), "{s:?}");
            assert_eq!(s[0].0, "__name__");
            assert!(seen.insert(s));
        }
        let s = synthetic_series(13);
        let names: Vec<&str> = s.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["__name__", "instance", "job", "le", "namespace", "pod"]
        );
        assert_eq!(s[0].1, "http_request_duration_seconds_bucket");
        assert_eq!(s[3].1, "0.01");
    }

    #[test]
    fn series_text_form() {
        assert_eq!(
            parse_series(r#"up{job="api", instance="a:1"}"#).unwrap(),
            [
                ("__name__".to_string(), "up".to_string()),
                ("instance".into(), "a:1".into()),
                ("job".into(), "api".into())
            ]
        );
        assert_eq!(
            parse_series(r#"{__name__="x",a="q\"\\\n"}"#).unwrap(),
            [
                ("__name__".to_string(), "x".to_string()),
                ("a".into(), "q\"\\\n".into())
            ]
        );
        assert_eq!(
            parse_series("up").unwrap(),
            [("__name__".to_string(), "up".to_string())]
        );
        assert_eq!(parse_series("up{}").unwrap().len(), 1);
        for bad in [
            "",
            "{}",
            "up{a=b}",
            "up{a=\"b\"",
            "up{a=\"b\"} x",
            "up{a=\"1\",a=\"2\"}",
        ] {
            assert!(parse_series(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn minimal_movement_of_pure_changes() {
        assert_eq!(
            minimal_movement(&["a", "b", "c"], &["a", "b", "c", "d", "e"]),
            Some(0.4)
        );
        assert_eq!(
            minimal_movement(&["a", "b", "c", "d"], &["a", "b", "c"]),
            Some(0.25)
        );
        assert_eq!(minimal_movement(&["a", "b"], &["b", "a"]), Some(0.0));
        assert_eq!(minimal_movement(&["a", "b"], &["a", "c"]), None);
    }
}
