//! The web page of `cairn query`: a PromQL box with autocompletion (metric names, label names
//! and values from the API), a table of instant results, a graph of range results, and a
//! stores page listing each endpoint with its health, label sets and time range.
//!
//! Plain HTML, CSS and JavaScript under `crates/query/ui/`, compiled into the binary; the page
//! calls the Prometheus HTTP API of [`crate::api`] with relative URLs, so it works behind a
//! path prefix too. Its state lives in the URL (`?expr=&tab=table|graph&range=&end=&step=`),
//! which is also how the headless-browser test drives it.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::api::Api;

const INDEX: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const STYLE: &str = include_str!("../ui/style.css");

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

/// The UI routes, merged into the API router.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/", get(index))
        .route("/graph", get(index))
        .route("/stores", get(index))
        .route("/static/app.js", get(app_js))
        .route("/static/style.css", get(style))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_its_script_and_styles_by_relative_urls() {
        assert!(INDEX.contains(r#"<script src="static/app.js">"#));
        assert!(INDEX.contains(r#"href="static/style.css""#));
        for id in ["expr", "suggestions", "results", "graph", "stores"] {
            assert!(INDEX.contains(&format!("id=\"{id}\"")), "{id}");
        }
    }
}
