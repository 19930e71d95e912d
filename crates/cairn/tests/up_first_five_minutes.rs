//! A new user's first minutes: a fresh `cairn up` (empty data dir, default self-scrape every
//! 15 s) has data for the page's first example query within 60 s, the examples all answer, and
//! the page draws it in headless Chromium: the graph with a hover that shows the value and
//! labels under the mouse, the table with chips. Screenshots of both are kept under
//! `target/test-artifacts/`. `--no-self-scrape` leaves the store empty.

mod common;

use std::time::{Duration, Instant};

use common::{artifact_dir, chromium_dom, chromium_screenshot, url_encode, CairnUp};

const DEFAULT_QUERY: &str = "rate(thanos_receive_http_requests_total[5m])";

/// The number of series an instant query returns.
fn series_count(up: &CairnUp, expr: &str) -> usize {
    let (status, v) = common::get_json(up.query, "/api/v1/query", &[("query", expr)]);
    assert_eq!(status, 200, "{expr}: {v}");
    v["data"]["result"].as_array().map_or(0, Vec::len)
}

fn between<'a>(html: &'a str, open: &str, close: &str) -> &'a str {
    let start = html
        .find(open)
        .unwrap_or_else(|| panic!("{open} not in page:\n{html}"));
    let rest = &html[start..];
    &rest[..rest.find(close).map_or(rest.len(), |e| e + close.len())]
}

#[test]
fn a_fresh_cairn_up_has_data_and_a_page_to_show_it_within_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let up = CairnUp::start(dir.path(), &[]);

    // The empty page suggests the queries that work on the self-scraped data.
    let html = chromium_dom(
        &dir.path().join("profile-empty"),
        &format!("http://{}/", up.query),
    );
    assert!(html.contains(r#"data-state="empty""#), "{html}");
    let examples = between(&html, r#"<ul id="examples">"#, "</ul>");
    assert!(
        examples.contains(&format!(r#"data-expr="{DEFAULT_QUERY}""#)),
        "{examples}"
    );

    let deadline = started + Duration::from_secs(60);
    while series_count(&up, DEFAULT_QUERY) == 0 {
        assert!(
            Instant::now() < deadline,
            "no data for {DEFAULT_QUERY} 60 s after start; log:\n{}",
            up.proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let took = started.elapsed();
    for expr in [
        "sum(rate(cairn_receive_samples_ingested_total[5m]))",
        "prometheus_tsdb_head_series",
    ] {
        assert!(series_count(&up, expr) > 0, "{expr}");
    }
    // One `up` per component (receiver, query, store gateway, compactor), all scraped.
    assert_eq!(series_count(&up, r#"up{job="cairn"} == 1"#), 4);

    // The graph, with the mouse over the newest point.
    let profile = dir.path().join("profile");
    let graph_url = format!(
        "http://{}/?expr={}&tab=graph&range=5m#hover=last",
        up.query,
        url_encode(DEFAULT_QUERY)
    );
    let html = chromium_dom(&profile, &graph_url);
    assert!(html.contains(r#"data-state="done""#), "{html}");
    assert!(html.contains("<canvas"), "{html}");
    let tooltip = between(&html, r#"<div id="tooltip""#, "</div></div>");
    assert!(!tooltip.contains("hidden"), "{tooltip}");
    let value = between(tooltip, r#"<b class="tip-value">"#, "</b>");
    let value = value
        .trim_start_matches(r#"<b class="tip-value">"#)
        .trim_end_matches("</b>");
    assert!(
        value.parse::<f64>().is_ok_and(|v| v > 0.0),
        "hover value {value:?} in {tooltip}"
    );
    assert!(tooltip.contains(r#"job="cairn""#), "{tooltip}");
    assert!(tooltip.contains(r#"<div class="tip-time">"#), "{tooltip}");
    let info = between(&html, r#"<div id="graph-info""#, "</div>");
    assert!(info.contains("step 1s"), "{info}");

    // The table: one row per series, labels as chips.
    let table_url = format!(
        "http://{}/?expr={}&tab=table",
        up.query,
        url_encode(DEFAULT_QUERY)
    );
    let html = chromium_dom(&profile, &table_url);
    assert!(html.contains(r#"data-state="done""#), "{html}");
    let rows = between(&html, "<tbody>", "</tbody>");
    assert!(
        rows.contains(r#"<span class="chip">job="cairn"</span>"#),
        "{rows}"
    );

    let artifacts = artifact_dir();
    let graph_png = artifacts.join("up-graph.png");
    let table_png = artifacts.join("up-table.png");
    chromium_screenshot(&profile, &graph_url, &graph_png);
    chromium_screenshot(&profile, &table_url, &table_png);
    println!(
        "data after {took:?}; screenshots: {} {}",
        graph_png.display(),
        table_png.display()
    );
}

#[test]
fn no_self_scrape_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let up = CairnUp::start(dir.path(), &["--no-self-scrape"]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(series_count(&up, "up"), 0);
    assert_eq!(
        series_count(&up, "thanos_receive_http_requests_total"),
        0,
        "the receiver got a write nobody sent"
    );
}
