//! Engine behaviour outside the conformance scripts: limits, cancellation, pushdown hints.

use std::sync::Mutex;
use std::time::Duration;

use promql::{
    CancelToken, Engine, EngineOpts, Error, MatchType, Matcher, MemoryStorage, QueryValue,
    Queryable, SelectHints, Series,
};
use tsdb::Labels;

fn storage() -> MemoryStorage {
    let mut st = MemoryStorage::new();
    for (job, inst) in [("a", "1"), ("a", "2"), ("b", "1")] {
        let l = Labels::from_pairs([("__name__", "up_total"), ("job", job), ("instance", inst)]);
        for i in 0..100 {
            st.append(&l, i * 15_000, i as f64);
        }
    }
    st
}

/// Records the hints of every select.
struct Recorder<'a> {
    inner: &'a MemoryStorage,
    seen: Mutex<Vec<(SelectHints, Vec<String>)>>,
}

impl Queryable for Recorder<'_> {
    fn select(&self, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Series>, Error> {
        self.seen.lock().unwrap().push((
            hints.clone(),
            matchers.iter().map(|m| m.to_string()).collect(),
        ));
        self.inner.select(hints, matchers)
    }
}

#[test]
fn matchers_are_anchored() {
    let m = Matcher::new(MatchType::Regex, "job", "a|b").unwrap();
    assert!(m.matches("a"));
    assert!(!m.matches("ab"));
    let m = Matcher::new(MatchType::NotRegex, "job", "a.*").unwrap();
    assert!(m.matches("b"));
    assert!(!m.matches("abc"));
}

#[test]
fn instant_and_range_queries() {
    let st = storage();
    let e = Engine::default();
    let r = e
        .instant_query(&st, "sum by (job) (up_total)", 60_000)
        .unwrap();
    let QueryValue::Vector(v) = r.value else {
        panic!()
    };
    assert_eq!(v.len(), 2);
    let r = e
        .range_query(&st, "rate(up_total[1m])", 60_000, 600_000, 60_000)
        .unwrap();
    let QueryValue::Matrix(m) = r.value else {
        panic!()
    };
    assert_eq!(m.len(), 3);
    assert_eq!(m[0].samples.len(), 10);
    assert!((m[0].samples[0].f - 1.0 / 15.0).abs() < 1e-9);
    assert!(m[0].labels.get("__name__").is_none());
}

#[test]
fn hints_reach_storage() {
    let st = storage();
    let rec = Recorder {
        inner: &st,
        seen: Mutex::new(Vec::new()),
    };
    let e = Engine::default();
    e.range_query(
        &rec,
        r#"sum by (job) (rate(up_total{job=~"a"}[5m] offset 1m))"#,
        600_000,
        900_000,
        30_000,
    )
    .unwrap();
    let seen = rec.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (h, ms) = &seen[0];
    assert_eq!(h.start, 600_000 - 60_000 - 300_000 + 1);
    assert_eq!(h.end, 900_000 - 60_000);
    assert_eq!(h.step, 30_000);
    assert_eq!(h.range, 300_000);
    assert_eq!(h.func.as_deref(), Some("rate"));
    assert_eq!(h.grouping, vec!["job".to_string()]);
    assert!(h.by);
    assert_eq!(
        ms,
        &vec![
            r#"__name__="up_total""#.to_string(),
            r#"job=~"a""#.to_string()
        ]
    );
}

#[test]
fn aggregations_name_the_function_and_binary_operators_end_it() {
    let st = storage();
    let funcs = |q: &str| {
        let rec = Recorder {
            inner: &st,
            seen: Mutex::new(Vec::new()),
        };
        Engine::default().instant_query(&rec, q, 600_000).unwrap();
        let seen = rec.seen.lock().unwrap();
        seen.iter()
            .map(|(h, _)| h.func.clone())
            .collect::<Vec<Option<String>>>()
    };
    assert_eq!(funcs("max(up_total)"), [Some("max".to_string())]);
    assert_eq!(funcs("sum(rate(up_total[5m]))"), [Some("rate".to_string())]);
    assert_eq!(funcs("max(up_total - up_total)"), [None, None]);
    assert_eq!(
        funcs("abs(up_total) + max_over_time(up_total[5m])"),
        [Some("abs".to_string()), Some("max_over_time".to_string())]
    );
    assert_eq!(funcs("up_total"), [None]);
}

#[test]
fn too_many_samples() {
    let st = storage();
    let e = Engine::new(EngineOpts {
        max_samples: 10,
        ..Default::default()
    });
    let err = e
        .range_query(&st, "up_total", 0, 1_000_000, 15_000)
        .unwrap_err();
    assert!(matches!(err, Error::TooManySamples(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "query processing would load too many samples into memory in query execution"
    );
}

#[test]
fn cancellation_and_timeout() {
    let st = storage();
    let e = Engine::default();
    let expr = promql::parse("up_total").unwrap();
    let token = CancelToken::new();
    token.cancel();
    let err = e
        .instant_query_expr(&st, &expr, 0, Some(token))
        .unwrap_err();
    assert!(matches!(err, Error::Canceled(_)));
    let e = Engine::new(EngineOpts {
        timeout: Some(Duration::ZERO),
        ..Default::default()
    });
    std::thread::sleep(Duration::from_millis(2));
    let err = e.instant_query(&st, "up_total", 0).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)));
}

#[test]
fn many_to_many_is_an_error() {
    let st = storage();
    let e = Engine::default();
    let err = e
        .instant_query(&st, "up_total * on(job) up_total", 60_000)
        .unwrap_err()
        .to_string();
    assert!(err.contains("many-to-many matching not allowed"), "{err}");
}

#[test]
fn parse_errors_are_reported() {
    let err = promql::parse("sum(").unwrap_err();
    assert!(matches!(err, Error::Parse(_)));
    // Worded and positioned as Prometheus reports them.
    for (query, want) in [
        ("sum(", "1:5: parse error: unclosed left parenthesis"),
        ("foo{a=b}", "1:7: parse error: unexpected identifier \"b\" in label matching, expected string"),
        ("rate(foo)", "1:6: parse error: expected type range vector in call to function \"rate\", got instant vector"),
        ("1 +\n  * 2", "2:3: parse error: unexpected <op:*>"),
    ] {
        assert_eq!(promql::parse(query).unwrap_err().to_string(), want, "{query}");
    }
}

/// Storage whose samples stand for counts of raw samples (downsampled data read for
/// `count_over_time`).
struct Counts<'a>(&'a MemoryStorage);

impl Queryable for Counts<'_> {
    fn select(&self, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Series>, Error> {
        self.0.select(hints, matchers)
    }

    fn samples_are_counts(&self, hints: &SelectHints) -> bool {
        hints.func.as_deref() == Some("count_over_time")
    }
}

#[test]
fn count_over_time_adds_up_counts_when_storage_says_samples_are_counts() {
    let mut st = MemoryStorage::new();
    // Two 5m windows covering 20 and 20 raw samples, and a raw sample (read as 1).
    let l = Labels::from_pairs([("__name__", "windows")]);
    for (t, v) in [(300_000, 20.0), (600_000, 20.0), (615_000, 1.0)] {
        st.append(&l, t, v);
    }
    let e = Engine::default();
    let value = |q: &str, storage: &dyn Queryable| {
        let r = e.instant_query(storage, q, 615_000).unwrap();
        let QueryValue::Vector(v) = r.value else {
            panic!("{q}")
        };
        v[0].f
    };
    assert_eq!(value("count_over_time(windows[15m])", &Counts(&st)), 41.0);
    // Plain storage: samples are samples.
    assert_eq!(value("count_over_time(windows[15m])", &st), 3.0);
    // Other functions over the same storage are unchanged.
    assert_eq!(value("sum_over_time(windows[15m])", &Counts(&st)), 41.0);
    assert_eq!(value("max_over_time(windows[15m])", &Counts(&st)), 20.0);
}
