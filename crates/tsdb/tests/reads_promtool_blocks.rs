//! Cairn reads blocks made by promtool 2.42 (`tsdb create-blocks-from openmetrics`): every
//! input sample comes back through label matchers, exactly.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use common::{block_dirs, run_promtool, same_value};
use tsdb::block::{Block, BlockQuerier};
use tsdb::matcher::Matcher;
use tsdb::querier::{MergeQuerier, Querier};
use tsdb::Labels;

type Expected = BTreeMap<Labels, Vec<(i64, f64)>>;

/// Writes an OpenMetrics file with counters (with resets), gauges (with NaN) and gaps.
fn generate(start_s: i64) -> (String, Expected) {
    let mut text = String::new();
    let mut expected: Expected = BTreeMap::new();
    let points = 5 * 60; // 5 hours at 60 s
    writeln!(text, "# HELP http_requests requests served").unwrap();
    writeln!(text, "# TYPE http_requests counter").unwrap();
    for s in 0..2000 {
        let labels = Labels::from_pairs([
            ("__name__", "http_requests_total".to_string()),
            ("instance", format!("10.0.{}.{}:8080", s / 250, s % 250)),
            ("job", ["api", "web", "db", "cache"][s % 4].to_string()),
            ("code", ["200", "500"][s % 2].to_string()),
        ]);
        let mut value = 0.0;
        for p in 0..points {
            if (p + s) % 23 == 0 {
                continue; // gap
            }
            value += ((p * 7 + s) % 13) as f64;
            if p % 97 == 50 {
                value = 1.0; // counter reset
            }
            let t = (start_s + p as i64 * 60) * 1000;
            writeln!(
                text,
                "http_requests_total{{code=\"{}\",instance=\"{}\",job=\"{}\"}} {} {}",
                labels.get("code").unwrap(),
                labels.get("instance").unwrap(),
                labels.get("job").unwrap(),
                value,
                t / 1000
            )
            .unwrap();
            expected.entry(labels.clone()).or_default().push((t, value));
        }
    }
    writeln!(text, "# HELP temperature a gauge").unwrap();
    writeln!(text, "# TYPE temperature gauge").unwrap();
    for s in 0..1500 {
        let labels = Labels::from_pairs([
            ("__name__", "temperature".to_string()),
            ("sensor", format!("s{s}")),
            ("room", format!("room-{}", s % 30)),
        ]);
        for p in (0..points).step_by(2) {
            let t = (start_s + p as i64 * 60) * 1000 + 500; // fractional seconds
            let v = if (p + s) % 40 == 0 {
                f64::NAN
            } else {
                (p as f64 * 0.37 + s as f64).sin() * 30.0
            };
            let vtext = if v.is_nan() {
                "NaN".to_string()
            } else {
                format!("{v:?}")
            };
            writeln!(
                text,
                "temperature{{room=\"{}\",sensor=\"{}\"}} {} {}.5",
                labels.get("room").unwrap(),
                labels.get("sensor").unwrap(),
                vtext,
                t / 1000
            )
            .unwrap();
            expected.entry(labels.clone()).or_default().push((t, v));
        }
    }
    writeln!(text, "# EOF").unwrap();
    (text, expected)
}

fn check(querier: &dyn Querier, matchers: &[Matcher], expected: &Expected) -> usize {
    let want: Vec<(&Labels, &Vec<(i64, f64)>)> = expected
        .iter()
        .filter(|(l, _)| matchers.iter().all(|m| m.matches_labels(l)))
        .collect();
    let got = querier.select(matchers, i64::MIN, i64::MAX).unwrap();
    assert_eq!(got.len(), want.len(), "series for {matchers:?}");
    for (series, (labels, samples)) in got.iter().zip(want) {
        assert_eq!(&series.labels, labels);
        let have = series.samples(i64::MIN, i64::MAX);
        assert_eq!(have.len(), samples.len(), "samples of {labels}");
        for (h, w) in have.iter().zip(samples) {
            assert_eq!(h.t, w.0, "timestamp in {labels}");
            assert!(
                same_value(h.v, w.1),
                "value at {} in {labels}: {} vs {}",
                w.0,
                h.v,
                w.1
            );
        }
    }
    got.len()
}

#[test]
fn reads_blocks_made_by_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let start_s = 1_700_000_000 - 1_700_000_000 % 7200 + 1800;
    let (text, expected) = generate(start_s);
    let input = dir.path().join("input.om");
    std::fs::write(&input, text).unwrap();
    let out = dir.path().join("blocks");
    run_promtool(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        input.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);

    let blocks: Vec<Arc<Block>> = block_dirs(&out)
        .iter()
        .map(|d| Arc::new(Block::open(d).unwrap()))
        .collect();
    assert!(blocks.len() >= 3, "5 hours give at least three 2 h blocks");
    let querier = MergeQuerier::new(
        blocks
            .iter()
            .map(|b| Box::new(BlockQuerier(b.clone())) as Box<dyn Querier>)
            .collect(),
    );

    let cases = vec![
        vec![Matcher::equal("__name__", "http_requests_total")],
        vec![Matcher::equal("__name__", "temperature")],
        vec![Matcher::equal("job", "api"), Matcher::equal("code", "500")],
        vec![Matcher::regex("instance", "10\\.0\\.1\\..*").unwrap()],
        vec![Matcher::regex("sensor", "s1|s2|s300").unwrap()],
        vec![
            Matcher::equal("__name__", "temperature"),
            Matcher::not_equal("room", "room-3"),
        ],
        vec![
            Matcher::not_regex("job", "api|web").unwrap(),
            Matcher::regex("__name__", ".+").unwrap(),
        ],
        vec![Matcher::equal("room", "")],
        vec![Matcher::equal("__name__", "absent_metric")],
    ];
    let mut total = 0;
    for m in &cases {
        total += check(&querier, m, &expected);
    }
    assert!(total > 3500);

    let names = querier.label_names(&[], i64::MIN, i64::MAX).unwrap();
    assert_eq!(
        names,
        vec!["__name__", "code", "instance", "job", "room", "sensor"]
    );
    let jobs = querier
        .label_values("job", &[Matcher::equal("code", "200")], i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(jobs, vec!["api", "db"]);
    // Time bounds: only the first block's range.
    let first = blocks[0].meta();
    let early = querier
        .select(
            &[Matcher::equal("sensor", "s7")],
            first.min_time,
            first.max_time - 1,
        )
        .unwrap();
    let samples = early[0].samples(first.min_time, first.max_time - 1);
    assert!(samples.iter().all(|s| s.t < first.max_time));
    assert_eq!(
        samples.len(),
        expected[&early[0].labels]
            .iter()
            .filter(|(t, _)| *t < first.max_time)
            .count()
    );
}
