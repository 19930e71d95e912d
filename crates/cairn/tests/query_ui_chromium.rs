//! `cairn query`'s web page in a real headless Chromium (Debian's `chromium`): the page runs its
//! JavaScript against the real query layer over two replica receivers, and the rendered DOM is
//! checked: a table of instant results (one row per series after de-duplication, four with
//! dedup off; labels as chips, a copy button), a graph with one line per series and the step
//! under it, autocompletion from the metric names, label names and label values the API
//! serves, the error of a bad query at its position, and the stores page.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{between, chromium_dom, count, remote_write, Cairn, CairnQuery};

fn dom(profile: &std::path::Path, url: &str) -> String {
    chromium_dom(profile, url)
}

/// The table row (`<tr class="result" ...>...</tr>`) that contains `needle`.
fn row_with<'a>(rows: &'a str, needle: &str) -> &'a str {
    rows.split(r#"<tr class="result""#)
        .find(|r| r.contains(needle))
        .unwrap_or_else(|| panic!("no row with {needle} in {rows}"))
}

fn url(addr: SocketAddr, path_and_query: &str) -> String {
    format!("http://{addr}{path_and_query}")
}

#[test]
fn the_query_page_works_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("chromium-profile");
    for r in ["r1", "r2"] {
        std::fs::create_dir_all(dir.path().join(r)).unwrap();
    }
    let r1 = Cairn::receive(&dir.path().join("r1"), &["--label=replica=\"r1\""]);
    let r2 = Cairn::receive(&dir.path().join("r2"), &["--label=replica=\"r2\""]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let start = (now - 20 * 60_000) / 1000 * 1000;
    let series = |job: &str, scale: f64| {
        (
            vec![
                ("__name__".to_string(), "ui_requests_total".to_string()),
                ("job".to_string(), job.to_string()),
            ],
            (0..80)
                .map(|i| (start + i * 15_000, scale * i as f64))
                .collect::<Vec<_>>(),
        )
    };
    for r in [&r1, &r2] {
        remote_write(
            r.remote_write,
            None,
            &[series("api", 2.0), series("web", 3.0)],
        );
    }
    let query = CairnQuery::start(
        dir.path(),
        &[r1.grpc, r2.grpc],
        &["--query.replica-label=replica"],
    );
    let end = format!("{:.3}", (start + 79 * 15_000) as f64 / 1000.0);

    // An instant query in the table: one row per series (replicas merged).
    let html = dom(
        &profile,
        &url(
            query.http,
            &format!("/?expr=ui_requests_total&tab=table&end={end}"),
        ),
    );
    assert!(html.contains(r#"data-state="done""#), "{html}");
    let rows = between(&html, "<tbody>", "</tbody>");
    assert_eq!(count(rows, r#"<tr class="result""#), 2, "{rows}");
    // Labels as chips, the value, and a button that copies the series' selector.
    for (job, value) in [("api", "158"), ("web", "237")] {
        let row = row_with(rows, &format!(r#"<span class="chip">job="{job}"</span>"#));
        assert!(
            row.contains(r#"<span class="metric-name">ui_requests_total</span>"#),
            "{row}"
        );
        assert!(
            row.contains(r#"<span class="chip">tenant_id="default-tenant"</span>"#),
            "{row}"
        );
        assert!(
            row.contains(&format!(r#"<td class="value">{value}</td>"#)),
            "{row}"
        );
        assert!(
            row.contains(&format!(
                r#"title="Copy ui_requests_total{{job=&quot;{job}&quot;, tenant_id=&quot;default-tenant&quot;}}""#
            )),
            "{row}"
        );
    }
    assert!(html.contains("2 series, vector"), "{html}");

    // Sorted by value, largest first (the Value header's first click), from the URL.
    let html = dom(
        &profile,
        &url(
            query.http,
            &format!("/?expr=ui_requests_total&tab=table&end={end}&sort=-value"),
        ),
    );
    let rows = between(&html, "<tbody>", "</tbody>");
    let (web, api) = (rows.find(">237<").unwrap(), rows.find(">158<").unwrap());
    assert!(web < api, "{rows}");
    assert!(
        html.contains(r#"data-sort="value" data-dir="desc""#),
        "{html}"
    );

    // Without de-duplication both replicas show.
    let html = dom(
        &profile,
        &url(
            query.http,
            &format!("/?expr=ui_requests_total&tab=table&end={end}&dedup=false"),
        ),
    );
    let rows = between(&html, "<tbody>", "</tbody>");
    assert_eq!(count(rows, r#"<tr class="result""#), 4, "{rows}");
    assert!(rows.contains(r#"replica="r2""#), "{rows}");

    // A range query on the graph (uPlot on a canvas): one line per series, and a legend.
    let html = dom(
        &profile,
        &url(
            query.http,
            &format!("/?expr=rate(ui_requests_total%5B2m%5D)&tab=graph&range=15m&end={end}"),
        ),
    );
    assert!(html.contains(r#"data-state="done""#), "{html}");
    assert!(html.contains(r#"data-series="2""#), "{html}");
    assert!(html.contains("<canvas"), "{html}");
    assert!(html.contains("2 series, matrix"), "{html}");
    let legend = between(&html, r#"<ul id="legend">"#, "</ul>");
    assert_eq!(count(legend, r#"<li class="series""#), 2, "{legend}");
    assert!(
        legend.contains(r#"<span class="chip">job="api"</span>"#),
        "{legend}"
    );
    // The step is shown under the graph (15m / 250 rounds to 4s).
    let info = between(&html, r#"<div id="graph-info""#, "</div>");
    assert!(info.contains("step 4s"), "{info}");
    assert!(info.contains("resolution raw"), "{info}");

    // The resolution selector, restored from the URL and sent as max_source_resolution (the
    // receivers have raw data only, which answers at any resolution).
    let html = dom(
        &profile,
        &url(
            query.http,
            &format!(
                "/?expr=rate(ui_requests_total%5B2m%5D)&tab=graph&range=15m&end={end}&max_source_resolution=5m"
            ),
        ),
    );
    assert!(html.contains(r#"data-resolution="5m""#), "{html}");
    assert!(html.contains(r#"data-state="done""#), "{html}");
    assert!(html.contains(r#"data-series="2""#), "{html}");
    let info = between(&html, r#"<div id="graph-info""#, "</div>");
    assert!(info.contains("resolution 5m"), "{info}");

    // Autocompletion: metric names, label names inside braces, label values inside quotes.
    let html = dom(&profile, &url(query.http, "/?expr=ui_req&suggest=1"));
    let list = between(&html, r#"<ul id="suggestions""#, "</ul>");
    assert!(
        list.contains("<li role=\"option\">ui_requests_total</li>"),
        "{list}"
    );
    let html = dom(
        &profile,
        &url(query.http, "/?expr=ui_requests_total%7Bj&suggest=1"),
    );
    let list = between(&html, r#"<ul id="suggestions""#, "</ul>");
    assert!(list.contains("<li role=\"option\">job</li>"), "{list}");
    let html = dom(
        &profile,
        &url(
            query.http,
            "/?expr=ui_requests_total%7Bjob%3D%22w&suggest=1",
        ),
    );
    let list = between(&html, r#"<ul id="suggestions""#, "</ul>");
    assert!(list.contains("<li role=\"option\">web</li>"), "{list}");
    assert!(!list.contains(">api<"), "{list}");

    // A bad query shows Prometheus' error.
    let html = dom(
        &profile,
        &url(query.http, "/?expr=sum(ui_requests_total&tab=table"),
    );
    assert!(html.contains(r#"data-state="error""#), "{html}");
    let status = between(&html, r#"<div id="status""#, "</div>");
    assert!(status.contains("bad_data"), "{status}");
    assert!(status.contains("parse error"), "{status}");
    // ... and points at where the parser stopped.
    let pos = between(&html, r#"<pre id="error-pos""#, "</pre>");
    assert!(pos.contains(r#"data-line="1""#), "{pos}");
    assert!(pos.contains(r#"data-col="22""#), "{pos}");
    assert!(
        pos.contains(&format!(
            "sum(ui_requests_total\n{}^ unclosed",
            " ".repeat(21)
        )),
        "{pos}"
    );

    // The stores page: both receivers, healthy, with their label sets and time ranges.
    let html = dom(&profile, &url(query.http, "/stores"));
    assert!(html.contains(r#"data-state="done""#), "{html}");
    let rows = between(&html, r#"<table id="stores">"#, "</table>");
    assert_eq!(count(rows, r#"<tr class="store">"#), 2, "{rows}");
    for r in [&r1, &r2] {
        assert!(rows.contains(&r.grpc.to_string()), "{rows}");
    }
    assert_eq!(count(rows, r#"<td class="health-up">up</td>"#), 2, "{rows}");
    assert!(rows.contains(r#"replica="r1""#), "{rows}");

    // With one receiver gone the stores page says so.
    drop(r2);
    std::thread::sleep(Duration::from_secs(2));
    let html = dom(&profile, &url(query.http, "/stores"));
    let rows = between(&html, r#"<table id="stores">"#, "</table>");
    assert_eq!(
        count(rows, r#"<td class="health-down">down</td>"#),
        1,
        "{rows}"
    );
}
