//! The HTTP adapter of the receiver: `POST /api/v1/receive` on the remote-write port, and
//! `/metrics`, `/-/healthy`, `/-/ready`, `/api/v1/status/tsdb` on the HTTP port.
//!
//! The remote-write handler reads what only HTTP carries (authentication, the tenant header,
//! Content-Type and Content-Encoding), hands the body to the ingest core
//! ([`Receiver::ingest_remote_write`]) and turns the result into the status code and the
//! remote write 2.0 "written" headers the client acts on.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::config::PROMETHEUS_TENANT_HEADER;
use crate::error::IngestError;
pub use crate::ingest::ProtoVersion;
use crate::ingest::{Ingested, Receiver, Written};

/// Reads Content-Type as remote write 1.0/2.0 define it. Missing or bare
/// `application/x-protobuf` means 1.0.
pub fn negotiate(headers: &HeaderMap) -> Result<ProtoVersion, IngestError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(ProtoVersion::V1);
    };
    let ct = ct.to_str().map_err(|_| IngestError::ContentTypeNotAscii)?;
    let mut parts = ct.split(';').map(str::trim);
    let media = parts.next().unwrap_or("").to_ascii_lowercase();
    if media != "application/x-protobuf" {
        return Err(IngestError::UnsupportedContentType(ct.to_string()));
    }
    for p in parts {
        if let Some(proto) = p.strip_prefix("proto=") {
            return match proto.trim_matches('"') {
                "prometheus.WriteRequest" => Ok(ProtoVersion::V1),
                "io.prometheus.write.v2.Request" => Ok(ProtoVersion::V2),
                other => Err(IngestError::UnsupportedMessage(other.to_string())),
            };
        }
    }
    Ok(ProtoVersion::V1)
}

/// The tenant a request names, if any.
fn named_tenant(receiver: &Receiver, headers: &HeaderMap) -> Option<String> {
    [
        receiver.config.tenant_header.as_str(),
        PROMETHEUS_TENANT_HEADER,
    ]
    .iter()
    .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
    .filter(|t| !t.is_empty())
    .map(str::to_string)
}

fn tenant_of(receiver: &Receiver, headers: &HeaderMap) -> String {
    named_tenant(receiver, headers).unwrap_or_else(|| receiver.config.default_tenant.clone())
}

/// Authenticates a write and decides its tenant; Err is the response to send.
fn authorize(receiver: &Receiver, headers: &HeaderMap) -> Result<String, Box<Response>> {
    let Some(auth) = &receiver.auth else {
        return Ok(tenant_of(receiver, headers));
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = auth.authenticate(authorization).map_err(|e| {
        let mut r = (StatusCode::UNAUTHORIZED, e.to_string()).into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"cairn\""),
        );
        Box::new(r)
    })?;
    match (principal.tenant, named_tenant(receiver, headers)) {
        (Some(bound), Some(named)) if bound != named => {
            let message = format!(
                "writer {:?} may not write to tenant {named:?}",
                principal.name
            );
            Err(Box::new((StatusCode::FORBIDDEN, message).into_response()))
        }
        (Some(bound), _) => Ok(bound),
        (None, _) => Ok(tenant_of(receiver, headers)),
    }
}

pub fn remote_write_router(receiver: Arc<Receiver>) -> Router {
    let limit = receiver.config.limits.max_body_bytes;
    Router::new()
        .route("/api/v1/receive", post(receive))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(receiver)
}

pub fn http_router(receiver: Arc<Receiver>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "OK" }))
        .route("/-/ready", get(ready))
        .route("/api/v1/status/tsdb", get(status_tsdb))
        .with_state(receiver)
}

/// Prometheus' `/api/v1/status/tsdb` for one tenant: the tenant header (or `?tenant=`) picks it,
/// the default tenant otherwise; `?tenant=*` takes every tenant of this receiver as one head (the
/// node's totals, what its memory holds). `?limit=` sizes the top lists (default 10). Besides
/// Prometheus' fields, `data.nodeHeadStats` always gives this receiver's series per tenant and in
/// all, so one request tells a tenant's share of the node.
async fn status_tsdb(
    State(state): State<Arc<Receiver>>,
    headers: HeaderMap,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let tenant = params
        .get("tenant")
        .cloned()
        .unwrap_or_else(|| tenant_of(&state, &headers));
    let limit: usize = match params.get("limit").map(|l| l.parse()) {
        None => 10,
        Some(Ok(l)) if l > 0 => l,
        _ => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "bad_data",
                "limit must be a positive integer",
            )
        }
    };
    let all = state.tenants.all();
    let st = if tenant == "*" {
        let heads: Vec<&tsdb::head::Head> = all.iter().map(|(_, db)| &**db.head()).collect();
        tsdb::head::Head::status_of(&heads, limit)
    } else {
        let Some(db) = state.tenants.get(&tenant) else {
            return api_error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("unknown tenant {tenant:?}"),
            );
        };
        db.head().status(limit)
    };
    let per_tenant: Vec<serde_json::Value> = all
        .iter()
        .map(|(name, db)| serde_json::json!({"tenant": name, "numSeries": db.head().num_series()}))
        .collect();
    let node_series: usize = all.iter().map(|(_, db)| db.head().num_series()).sum();
    let list = |v: &[(String, u64)]| -> Vec<serde_json::Value> {
        v.iter()
            .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
            .collect()
    };
    let (min_time, max_time) = if st.num_series == 0 {
        (0, 0)
    } else {
        (st.min_time, st.max_time)
    };
    let body = serde_json::json!({
        "status": "success",
        "data": {
            "headStats": {
                "numSeries": st.num_series,
                "numLabelPairs": st.num_label_pairs,
                "chunkCount": st.chunk_count,
                "minTime": min_time,
                "maxTime": max_time,
            },
            "seriesCountByMetricName": list(&st.series_count_by_metric_name),
            "labelValueCountByLabelName": list(&st.label_value_count_by_label_name),
            "memoryInBytesByLabelName": list(&st.memory_in_bytes_by_label_name),
            "seriesCountByLabelValuePair": list(&st.series_count_by_label_value_pair),
            "nodeHeadStats": {"numSeries": node_series, "tenants": per_tenant},
        }
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn api_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = serde_json::json!({"status": "error", "errorType": kind, "error": message});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn metrics(State(state): State<Arc<Receiver>>) -> Response {
    state.metrics.update_tsdb(&state.tenants);
    if let Some(status) = &state.hashring_status {
        state.metrics.update_hashrings(&status.snapshot());
    }
    if let Some(handoff) = state.replicator.as_ref().and_then(|r| r.handoff.as_ref()) {
        if let Some(r) = &state.replicator {
            r.metrics.update_queues(handoff, &r.peer_endpoints());
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn ready(State(state): State<Arc<Receiver>>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "OK").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: opening TSDBs").into_response()
    }
}

/// The one place an ingest error becomes an HTTP answer.
fn refused(e: &IngestError) -> Response {
    let status =
        StatusCode::from_u16(e.class().http()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, e.to_string()).into_response()
}

async fn receive(State(state): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let (tenant, response) = match authorize(&state, &headers) {
        Ok(tenant) => {
            let r = handle(&state, &tenant, &headers, body).await;
            (tenant, r)
        }
        Err(r) => (String::new(), *r),
    };
    let code = response.status().as_u16().to_string();
    let labels = vec![("code".to_string(), code), ("tenant".to_string(), tenant)];
    state.metrics.http_requests.get_or_create(&labels).inc();
    state
        .metrics
        .http_request_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn handle(state: &Arc<Receiver>, tenant: &str, headers: &HeaderMap, body: Bytes) -> Response {
    let version = match negotiate(headers) {
        Ok(v) => v,
        Err(e) => return refused(&e),
    };
    if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
        if !enc.as_bytes().eq_ignore_ascii_case(b"snappy") {
            let enc = String::from_utf8_lossy(enc.as_bytes()).into_owned();
            return refused(&IngestError::UnsupportedEncoding(enc));
        }
    }
    // Decoding and appending are CPU work: they run on this worker thread. The WAL's fsync is
    // awaited: a request that finds another's fsync under way yields its thread meanwhile.
    let ingested = state.ingest_remote_write(tenant, version, &body);
    match ingested {
        Err(e) => refused(&e),
        Ok(Ingested::Empty) => written(StatusCode::NO_CONTENT, Written::default(), String::new()),
        Ok(Ingested::Written(pending)) => {
            let outcome = state.finish(pending).await;
            let status =
                StatusCode::from_u16(outcome.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let counts = Written {
                samples: outcome.accepted_samples,
                histograms: outcome.accepted_histograms,
                exemplars: outcome.accepted_exemplars,
            };
            written(status, counts, outcome.message())
        }
        Ok(Ingested::Routed {
            plan,
            local,
            written: counts,
        }) => {
            let replicator = state
                .replicator
                .as_ref()
                .expect("routed writes have a replicator");
            let local = local.map(|l| state.finish_replica(l));
            let answer = replicator.execute(plan, local).await;
            if answer.status >= 300 {
                tracing::debug!(status = answer.status, message = %answer.message, "replicated write failed");
            }
            let status =
                StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let counts = if answer.status < 300 {
                counts
            } else {
                Written::default()
            };
            written(status, counts, answer.message)
        }
    }
}

/// A response with the remote write 2.0 "written" headers (sent for 1.0 too; harmless).
fn written(status: StatusCode, counts: Written, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        "X-Prometheus-Remote-Write-Samples-Written",
        HeaderValue::from(counts.samples),
    );
    h.insert(
        "X-Prometheus-Remote-Write-Histograms-Written",
        HeaderValue::from(counts.histograms),
    );
    h.insert(
        "X-Prometheus-Remote-Write-Exemplars-Written",
        HeaderValue::from(counts.exemplars),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_negotiation() {
        let mut h = HeaderMap::new();
        assert_eq!(negotiate(&h).unwrap(), ProtoVersion::V1);
        h.insert(
            header::CONTENT_TYPE,
            "application/x-protobuf".parse().unwrap(),
        );
        assert_eq!(negotiate(&h).unwrap(), ProtoVersion::V1);
        h.insert(
            header::CONTENT_TYPE,
            "application/x-protobuf;proto=io.prometheus.write.v2.Request"
                .parse()
                .unwrap(),
        );
        assert_eq!(negotiate(&h).unwrap(), ProtoVersion::V2);
        h.insert(
            header::CONTENT_TYPE,
            "application/x-protobuf; proto=foo.Bar".parse().unwrap(),
        );
        assert!(negotiate(&h).is_err());
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(negotiate(&h).is_err());
    }
}
