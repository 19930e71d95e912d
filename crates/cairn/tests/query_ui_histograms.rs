//! Native histograms on `cairn query`'s web page, in a real headless Chromium (Debian's
//! `chromium`), over real components only:
//!
//! - from a block: histograms appended to a TSDB, written to a block, uploaded to a filesystem
//!   bucket and served by `cairn store`;
//! - from remote write: the same histograms sent to a receiver as Remote Write 1.0
//!   `TimeSeries.histograms` (integer counts, deltas), as Prometheus sends them.
//!
//! Both go through the same checks of the rendered DOM: an instant histogram in the table shows
//! its count, its sum and one row per bucket with its bounds written as Prometheus' page writes
//! them (`(0.5 -> 1]`, the zero bucket `[-0.001 -> 0.001]`) and its count; a range query of
//! `rate()` over it draws a count line (legend and tooltip say so) and a bucket heatmap with one
//! row per bucket; a float series beside it is still a plain value.
//!
//! The series: `ui_latency_seconds{job="api"}`, a counter histogram of schema 0 sampled every
//! 15 s; at sample i its zero bucket (threshold 0.001) holds i, and its buckets (0.5, 1], (1, 2],
//! (2, 4] and (4, 8] hold i, 2i, 3i and i: count 8i, sum 10i. Beside it the float counter
//! `ui_plain_total{job="api"}` = 2i.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{
    artifact_dir, between, chromium_dom, chromium_screenshot, count, Cairn, CairnQuery, CairnStore,
};

/// Samples 1..=SAMPLES (sample 0 would be an empty histogram).
const SAMPLES: i64 = 80;
const INTERVAL_MS: i64 = 15_000;

/// The first sample's timestamp: 20 minutes ago, on a whole second.
fn first_sample_ms() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    (now - 21 * 60_000) / 1000 * 1000
}

fn ts(start: i64, i: i64) -> i64 {
    start + i * INTERVAL_MS
}

/// The absolute counts of the four positive buckets at sample `i`.
fn bucket_counts(i: i64) -> [i64; 4] {
    [i, 2 * i, 3 * i, i]
}

/// The value of attribute `name` in the start tag that begins with `tag_start`.
fn attr<'a>(html: &'a str, tag_start: &str, name: &str) -> &'a str {
    let tag = between(html, tag_start, ">");
    let key = format!(" {name}=\"");
    let at = tag
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {tag}"))
        + key.len();
    &tag[at..at + tag[at..].find('"').unwrap()]
}

fn url(addr: SocketAddr, path_and_query: &str) -> String {
    format!("http://{addr}{path_and_query}")
}

/// The page checks, over a `cairn query` that serves the series described above; screenshots
/// of the table and the graph go to `target/test-artifacts/histograms-{name}-*.png`.
fn check_page(name: &str, profile: &Path, query: SocketAddr, start: i64) {
    let last = ts(start, SAMPLES);
    let end = format!("{:.3}", last as f64 / 1000.0);
    let n = SAMPLES;

    // The table: the histogram's count, sum and buckets; the float series' value.
    let html = chromium_dom(
        profile,
        &url(
            query,
            &format!("/?expr=%7B__name__%3D~%22ui_.*%22%7D&tab=table&end={end}"),
        ),
    );
    assert!(html.contains(r#"data-state="done""#), "{html}");
    assert!(html.contains("2 series, vector"), "{html}");
    // (The bucket tables inside end with `</table></div>`, the results table with a newline.)
    let rows = between(&html, r#"<table id="results">"#, "</table>\n");
    let hist_row = rows
        .split(r#"<tr class="result""#)
        .find(|r| r.contains(r#"<span class="metric-name">ui_latency_seconds</span>"#))
        .unwrap_or_else(|| panic!("no histogram row in {rows}"));
    assert!(!hist_row.contains("[object Object]"), "{hist_row}");
    assert!(
        hist_row.contains(&format!(
            r#"<span class="hist-count">Count: <b>{}</b></span>"#,
            8 * n
        )),
        "{hist_row}"
    );
    assert!(
        hist_row.contains(&format!(
            r#"<span class="hist-sum">Sum: <b>{}</b></span>"#,
            10 * n
        )),
        "{hist_row}"
    );
    // One row per populated bucket, lowest first: the zero bucket closed on both ends, the
    // positive buckets open on the left.
    assert_eq!(count(hist_row, r#"<tr class="bucket">"#), 5, "{hist_row}");
    let [b0, b1, b2, b3] = bucket_counts(n);
    let expected = [
        ("[-0.001 -&gt; 0.001]", n),
        ("(0.5 -&gt; 1]", b0),
        ("(1 -&gt; 2]", b1),
        ("(2 -&gt; 4]", b2),
        ("(4 -&gt; 8]", b3),
    ];
    let mut at = 0;
    for (range, c) in expected {
        let cell = format!(r#"<td class="range">{range}</td>"#);
        let pos = hist_row[at..]
            .find(&cell)
            .unwrap_or_else(|| panic!("no {cell} after offset {at} in {hist_row}"))
            + at;
        let bucket = between(&hist_row[pos..], "<td", "</tr>");
        assert!(bucket.contains(&format!(">{c}</td>")), "{bucket}");
        at = pos + cell.len();
    }
    // The largest bucket's bar is full.
    assert!(
        hist_row.contains(&format!(r#"style="--frac: 100.0%;">{b2}</td>"#)),
        "{hist_row}"
    );
    let plain_row = rows
        .split(r#"<tr class="result""#)
        .find(|r| r.contains(r#"<span class="metric-name">ui_plain_total</span>"#))
        .unwrap_or_else(|| panic!("no float row in {rows}"));
    assert!(
        plain_row.contains(&format!(r#"<td class="value">{}</td>"#, 2 * n)),
        "{plain_row}"
    );

    // A range vector in the table lists the histogram samples one per line.
    let html = chromium_dom(
        profile,
        &url(
            query,
            &format!("/?expr=ui_latency_seconds%5B1m%5D&tab=table&end={end}"),
        ),
    );
    assert!(html.contains("1 series, matrix"), "{html}");
    assert!(
        html.contains(&format!(
            "count {}, sum {}, 5 buckets @{end}",
            8 * n,
            10 * n
        )) || html.contains(&format!(
            "count {}, sum {}, 5 buckets @{}",
            8 * n,
            10 * n,
            last / 1000
        )),
        "{html}"
    );

    // The graph of rate(): a count line with its note, and a heatmap of the buckets.
    let html = chromium_dom(
        profile,
        &url(
            query,
            &format!(
                "/?expr=rate(ui_latency_seconds%5B2m%5D)&tab=graph&range=15m&end={end}#hover=last"
            ),
        ),
    );
    assert!(html.contains(r#"data-state="done""#), "{html}");
    assert!(html.contains("1 series, matrix"), "{html}");
    assert!(
        html.contains(r#"<div id="graph" data-series="1""#),
        "{html}"
    );
    assert!(html.contains("<canvas"), "{html}");
    let legend = between(&html, r#"<ul id="legend">"#, "</ul>");
    assert_eq!(count(legend, r#"<li class="series""#), 1, "{legend}");
    assert!(
        legend.contains(r#"<span class="kind">histogram count</span>"#),
        "{legend}"
    );
    let note = between(&html, r#"<div id="hist-note""#, "</div>");
    assert!(!note.contains("hidden"), "{note}");
    assert!(note.contains("1 native histogram series"), "{note}");
    // The tooltip at the newest step: the count (8 per 15 s) and the sum (10 per 15 s).
    let tip = between(&html, r#"<div id="tooltip""#, "</div></div>");
    assert!(tip.contains(r#"<b class="tip-value">count 0.533"#), "{tip}");
    assert!(tip.contains(", sum 0.666"), "{tip}");
    assert!(tip.contains("count</span>"), "{tip}");
    // One heatmap, one row per bucket, a column for every step with data.
    let heatmaps = between(&html, r#"<div id="heatmaps""#, r#"<script"#);
    assert_eq!(attr(&html, r#"<div id="heatmaps""#, "data-count"), "1");
    assert_eq!(count(heatmaps, r#"<div class="heatmap""#), 1, "{heatmaps}");
    assert!(heatmaps.contains("<canvas"), "{heatmaps}");
    assert_eq!(attr(heatmaps, r#"<div class="heatmap""#, "data-rows"), "5");
    // 15m at a 4s step: 226 steps; rate() over 2m has a value at every one of them.
    let columns: usize = attr(heatmaps, r#"<div class="heatmap""#, "data-columns")
        .parse()
        .unwrap();
    assert!((200..=226).contains(&columns), "{columns} columns");
    // The largest cell: (2, 4] at 3 per 15 s.
    let max: f64 = attr(heatmaps, r#"<div class="heatmap""#, "data-max")
        .parse()
        .unwrap();
    assert!((max - 0.2).abs() < 1e-6, "max {max}");
    let info = between(heatmaps, r#"<div class="heatmap-info">"#, "</div>");
    assert!(info.contains("5 buckets"), "{info}");

    for (tab, expr) in [
        ("table", "%7B__name__%3D~%22ui_.*%22%7D"),
        ("graph", "rate(ui_latency_seconds%5B2m%5D)"),
    ] {
        chromium_screenshot(
            profile,
            &url(
                query,
                &format!("/?expr={expr}&tab={tab}&range=15m&end={end}#hover=0.7"),
            ),
            &artifact_dir().join(format!("histograms-{name}-{tab}.png")),
        );
    }

    // Float series draw as before: no heatmap, no note.
    let html = chromium_dom(
        profile,
        &url(
            query,
            &format!("/?expr=rate(ui_plain_total%5B2m%5D)&tab=graph&range=15m&end={end}"),
        ),
    );
    assert!(html.contains(r#"data-state="done""#), "{html}");
    assert!(
        html.contains(r#"<div id="graph" data-series="1""#),
        "{html}"
    );
    assert!(
        html.contains(r#"<div id="heatmaps" hidden="" data-count="0"></div>"#),
        "{html}"
    );
    assert!(!html.contains(r#"class="kind""#), "{html}");
}

/// Histograms written to a TSDB block, uploaded to a bucket and served by `cairn store`.
#[test]
fn histograms_from_a_block_show_in_the_table_and_as_heatmaps() {
    use model::histogram::{Histogram, Span};
    use tsdb::db::{Db, DbOptions};

    let dir = tempfile::tempdir().unwrap();
    let start = first_sample_ms();
    let tsdb_dir = dir.path().join("tsdb");
    {
        let (db, _) = Db::open(&tsdb_dir, DbOptions::default()).unwrap();
        let mut app = db.appender();
        let hist = app
            .series_for_pairs(&[("__name__", "ui_latency_seconds"), ("job", "api")])
            .unwrap();
        let plain = app
            .series_for_pairs(&[("__name__", "ui_plain_total"), ("job", "api")])
            .unwrap();
        for i in 1..=SAMPLES {
            let c = bucket_counts(i);
            let h = Histogram {
                schema: 0,
                zero_threshold: 0.001,
                zero_count: i as u64,
                count: 8 * i as u64,
                sum: 10.0 * i as f64,
                positive_spans: vec![Span {
                    offset: 0,
                    length: 4,
                }],
                positive_buckets: vec![c[0], c[1] - c[0], c[2] - c[1], c[3] - c[2]],
                ..Default::default()
            };
            app.append_histogram_to(hist, ts(start, i), h).unwrap();
            app.append_to(plain, ts(start, i), 2.0 * i as f64).unwrap();
        }
        app.commit().unwrap();
        assert!(!db.flush().unwrap().is_empty(), "no block written");
    }
    // Only the blocks (directories with a meta.json), not the WAL.
    let blocks = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks).unwrap();
    for e in std::fs::read_dir(&tsdb_dir).unwrap() {
        let p = e.unwrap().path();
        if p.join("meta.json").exists() {
            common::copy_dir(&p, &blocks.join(p.file_name().unwrap()));
        }
    }
    let yaml = common::filesystem_yaml(&dir.path().join("bucket"));
    common::upload_blocks(&yaml, &blocks, "source=\"block\"");
    let store = CairnStore::start(dir.path(), &yaml, &[]);
    let query = CairnQuery::start(dir.path(), &[store.grpc], &[]);
    check_page(
        "block",
        &dir.path().join("chromium-profile"),
        query.http,
        start,
    );
}

/// Histograms remote-written (1.0) to a receiver, as Prometheus sends them: integer counts,
/// bucket deltas, the reset hint unknown.
#[test]
fn remote_written_histograms_show_in_the_table_and_as_heatmaps() {
    use proto::remote_write::{
        encode_v1, BucketSpan, Histogram, HistogramCount, Label, Sample, TimeSeries, WriteRequest,
    };

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("r1")).unwrap();
    let r1 = Cairn::receive(&dir.path().join("r1"), &["--label=replica=\"r1\""]);
    let start = first_sample_ms();
    let labels = |name| {
        vec![
            Label {
                name: "__name__",
                value: name,
            },
            Label {
                name: "job",
                value: "api",
            },
        ]
    };
    let histograms = (1..=SAMPLES)
        .map(|i| {
            let c = bucket_counts(i);
            Histogram {
                count: HistogramCount::Int(8 * i as u64),
                sum: 10.0 * i as f64,
                schema: 0,
                zero_threshold: 0.001,
                zero_count: HistogramCount::Int(i as u64),
                positive_spans: vec![BucketSpan {
                    offset: 0,
                    length: 4,
                }],
                positive_deltas: vec![c[0], c[1] - c[0], c[2] - c[1], c[3] - c[2]],
                timestamp: ts(start, i),
                ..Default::default()
            }
        })
        .collect();
    let req = WriteRequest {
        timeseries: vec![
            TimeSeries {
                labels: labels("ui_latency_seconds"),
                histograms,
                ..Default::default()
            },
            TimeSeries {
                labels: labels("ui_plain_total"),
                samples: (1..=SAMPLES)
                    .map(|i| Sample {
                        value: 2.0 * i as f64,
                        timestamp: ts(start, i),
                    })
                    .collect(),
                ..Default::default()
            },
        ],
        metadata: vec![],
    };
    let body = common::snappy(&encode_v1(&req));
    let r = common::http(
        r1.remote_write,
        "POST",
        "/api/v1/receive",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        &body,
    )
    .unwrap();
    assert!(
        (200..300).contains(&r.status),
        "the receiver refused the histograms: {} {}",
        r.status,
        r.body
    );
    let query = CairnQuery::start(dir.path(), &[r1.grpc], &["--query.replica-label=replica"]);
    check_page(
        "remote-write",
        &dir.path().join("chromium-profile"),
        query.http,
        start,
    );
}
