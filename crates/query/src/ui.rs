//! The web page of `cairn query`: a PromQL box with autocompletion (metric names, label names
//! and values from the API), a table of instant results, a graph of range results, and a
//! stores page listing each endpoint with its health, label sets and time range, and a cluster
//! page over `/api/v1/status/cluster` (hashring members, their series share, hints, replication,
//! shipper backlog and free volume).
//!
//! Plain HTML, CSS and JavaScript under `crates/query/ui/`, compiled into the binary; the page
//! calls the Prometheus HTTP API of [`crate::api`] with relative URLs, so it works behind a
//! path prefix too. Its state lives in the URL (`?expr=&tab=table|graph&range=&end=&step=`),
//! which is also how the headless-browser test drives it. The graph is drawn by uPlot, vendored
//! under `ui/vendor/` with its licence so the binary needs nothing from the network.
//!
//! Native histograms: in the table an instant histogram shows its count, sum and a table of its
//! buckets (bounds written as Prometheus' page does, `(0.5 -> 1]`); on the graph a histogram
//! series is a line of its count (sum in the tooltip) plus a heatmap of its bucket counts on a
//! canvas, one column per step and one row per bucket.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::api::Api;

const INDEX: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const STYLE: &str = include_str!("../ui/style.css");
/// uPlot (MIT, version pinned in `ui/vendor/`), the graph's charting library.
const UPLOT_JS: &str = include_str!("../ui/vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../ui/vendor/uPlot.min.css");

async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX)
}

async fn app_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

async fn uplot_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        UPLOT_JS,
    )
}

async fn uplot_css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        UPLOT_CSS,
    )
}

/// The UI routes, merged into the API router.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/", get(index))
        .route("/graph", get(index))
        .route("/stores", get(index))
        .route("/cluster", get(index))
        .route("/static/app.js", get(app_js))
        .route("/static/style.css", get(style))
        .route("/static/vendor/uPlot.iife.min.js", get(uplot_js))
        .route("/static/vendor/uPlot.min.css", get(uplot_css))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_its_script_and_styles_by_relative_urls() {
        assert!(INDEX.contains(r#"<script src="static/app.js">"#));
        assert!(INDEX.contains(r#"href="static/style.css""#));
        assert!(INDEX.contains(r#"<script src="static/vendor/uPlot.iife.min.js">"#));
        assert!(INDEX.contains(r#"href="static/vendor/uPlot.min.css""#));
        assert!(UPLOT_JS.starts_with("/*! https://github.com/leeoniya/uPlot (v1.6.32) */"));
        for id in [
            "expr",
            "suggestions",
            "results",
            "graph",
            "stores",
            "cluster",
            "cluster-refresh",
            "tooltip",
            "legend",
            "history",
            "empty",
            "graph-info",
            "error-pos",
            "hist-note",
            "heatmaps",
        ] {
            assert!(INDEX.contains(&format!("id=\"{id}\"")), "{id}");
        }
    }
}
