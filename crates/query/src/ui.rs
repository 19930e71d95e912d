//! The web UI's routes on `cairn query`'s HTTP port.
//!
//! For now `/` is a small static page linking the API; the UI (a PromQL box with
//! autocompletion, a graph and a table, and a stores page fed by `/api/v1/stores`) is to be
//! served from here, as static assets under `/` that call the JSON API of [`crate::api`].

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::api::Api;

const INDEX: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Cairn query</title></head>
<body>
<h1>Cairn query</h1>
<p>The Prometheus HTTP API is served here: point Grafana at this address as a Prometheus data
source.</p>
<ul>
<li><a href="api/v1/stores">api/v1/stores</a>: the endpoints, their health, label sets and time ranges</li>
<li><a href="api/v1/labels">api/v1/labels</a>: label names</li>
<li><a href="api/v1/label/__name__/values">api/v1/label/__name__/values</a>: metric names</li>
<li><a href="metrics">metrics</a></li>
</ul>
</body>
</html>
"#;

async fn index() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX)
}

/// The UI routes, merged into the API router.
pub fn routes() -> Router<Arc<Api>> {
    Router::new().route("/", get(index))
}
