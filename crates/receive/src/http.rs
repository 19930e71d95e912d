//! The HTTP side of the receiver: `POST /api/v1/receive` on the remote-write port, and
//! `/metrics`, `/-/healthy`, `/-/ready` on the HTTP port.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::auth::Authenticator;
use crate::config::PROMETHEUS_TENANT_HEADER;
use crate::hashring::{HashringWatcher, WatchStatus};
use crate::limits::{Limits, LimitsWatcher};
use crate::metrics::Metrics;
use crate::replicate::{Plan, ReplicaResult, Replicator};
use crate::tenants::Tenants;
use crate::tls::TlsListener;
use crate::writer::{self, WriteOutcome};
use crate::ReceiveConfig;

/// Which protobuf message a request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoVersion {
    V1,
    V2,
}

/// Reads Content-Type as remote write 1.0/2.0 define it. Missing or bare
/// `application/x-protobuf` means 1.0.
pub fn negotiate(headers: &HeaderMap) -> Result<ProtoVersion, String> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(ProtoVersion::V1);
    };
    let ct = ct
        .to_str()
        .map_err(|_| "Content-Type is not ASCII".to_string())?;
    let mut parts = ct.split(';').map(str::trim);
    let media = parts.next().unwrap_or("").to_ascii_lowercase();
    if media != "application/x-protobuf" {
        return Err(format!(
            "unsupported Content-Type {ct:?}: expected application/x-protobuf"
        ));
    }
    for p in parts {
        if let Some(proto) = p.strip_prefix("proto=") {
            return match proto.trim_matches('"') {
                "prometheus.WriteRequest" => Ok(ProtoVersion::V1),
                "io.prometheus.write.v2.Request" => Ok(ProtoVersion::V2),
                other => Err(format!(
                    "unsupported remote-write message {other:?}: expected prometheus.WriteRequest or io.prometheus.write.v2.Request"
                )),
            };
        }
    }
    Ok(ProtoVersion::V1)
}

pub struct AppState {
    pub config: ReceiveConfig,
    pub tenants: Arc<Tenants>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    pub auth: Option<Authenticator>,
    pub ready: AtomicBool,
    /// Routes and replicates writes (a hashrings file is configured).
    pub replicator: Option<Arc<Replicator>>,
    /// The hashrings file watcher, taken by [`serve`] to run it.
    watcher: std::sync::Mutex<Option<HashringWatcher>>,
    pub hashring_status: Option<Arc<WatchStatus>>,
}

impl AppState {
    pub fn new(config: ReceiveConfig) -> Result<Arc<Self>, String> {
        let auth = config
            .auth_file
            .as_deref()
            .map(Authenticator::from_file)
            .transpose()?;
        let bucket = config
            .objstore
            .as_ref()
            .map(|c| c.build())
            .transpose()
            .map_err(|e| e.to_string())?;
        let mut metrics = Metrics::new();
        let (replicator, watcher, hashring_status) = match &config.hashrings_file {
            None => (None, None, None),
            Some(path) => {
                let rep = &config.replication;
                let watcher = HashringWatcher::load(
                    path.clone(),
                    config.hashrings_algorithm,
                    rep.replication_factor,
                )?;
                let handoff = if rep.hints_window.is_zero() {
                    None
                } else {
                    let dir = config.tsdb_path.join(".hints");
                    let h =
                        crate::handoff::Handoff::open(dir, rep.hints_window, rep.hints_max_bytes)
                            .map_err(|e| format!("cannot open the hint queues: {e}"))?;
                    Some(Arc::new(h))
                };
                let replication_metrics =
                    crate::replicate::ReplicationMetrics::register(metrics.registry_mut());
                let replicator =
                    Replicator::new(watcher.shared(), rep.clone(), handoff, replication_metrics);
                let status = watcher.status();
                (Some(replicator), Some(watcher), Some(status))
            }
        };
        Ok(Arc::new(AppState {
            tenants: Arc::new(Tenants::new(config.clone(), bucket)),
            config,
            metrics: Arc::new(metrics),
            limits: Limits::default(),
            auth,
            ready: AtomicBool::new(false),
            replicator,
            watcher: std::sync::Mutex::new(watcher),
            hashring_status,
        }))
    }

    /// The tenant a request names, if any.
    fn named_tenant(&self, headers: &HeaderMap) -> Option<String> {
        [self.config.tenant_header.as_str(), PROMETHEUS_TENANT_HEADER]
            .iter()
            .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    }

    fn tenant_of(&self, headers: &HeaderMap) -> String {
        self.named_tenant(headers)
            .unwrap_or_else(|| self.config.default_tenant.clone())
    }

    /// Authenticates a write and decides its tenant; Err is the response to send.
    fn authorize(&self, headers: &HeaderMap) -> Result<String, Box<Response>> {
        let Some(auth) = &self.auth else {
            return Ok(self.tenant_of(headers));
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
        match (principal.tenant, self.named_tenant(headers)) {
            (Some(bound), Some(named)) if bound != named => {
                let message = format!(
                    "writer {:?} may not write to tenant {named:?}",
                    principal.name
                );
                Err(Box::new((StatusCode::FORBIDDEN, message).into_response()))
            }
            (Some(bound), _) => Ok(bound),
            (None, _) => Ok(self.tenant_of(headers)),
        }
    }
}

pub fn remote_write_router(state: Arc<AppState>) -> Router {
    let limit = state.config.limits.max_body_bytes;
    Router::new()
        .route("/api/v1/receive", post(receive))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

pub fn http_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "OK" }))
        .route("/-/ready", get(ready))
        .route("/api/v1/status/tsdb", get(status_tsdb))
        .with_state(state)
}

/// Prometheus' `/api/v1/status/tsdb` for one tenant: the tenant header (or `?tenant=`) picks it,
/// the default tenant otherwise; `?limit=` sizes the top lists (default 10).
async fn status_tsdb(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let tenant = params
        .get("tenant")
        .cloned()
        .unwrap_or_else(|| state.tenant_of(&headers));
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
    let Some(db) = state.tenants.get(&tenant) else {
        return api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("unknown tenant {tenant:?}"),
        );
    };
    let st = db.head().status(limit);
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

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.update_tsdb(&state.tenants);
    if let Some(status) = &state.hashring_status {
        state.metrics.update_hashrings(&status.snapshot());
    }
    if let Some(handoff) = state.replicator.as_ref().and_then(|r| r.handoff.as_ref()) {
        if let Some(r) = &state.replicator {
            r.metrics.update_queues(handoff);
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

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "OK").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: opening TSDBs").into_response()
    }
}

fn error(status: u16, message: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, message).into_response()
}

async fn receive(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let (tenant, response) = match state.authorize(&headers) {
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

async fn handle(state: &Arc<AppState>, tenant: &str, headers: &HeaderMap, body: Bytes) -> Response {
    let version = match negotiate(headers) {
        Ok(v) => v,
        Err(e) => return error(415, e),
    };
    if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
        if !enc.as_bytes().eq_ignore_ascii_case(b"snappy") {
            return error(
                415,
                format!("unsupported Content-Encoding {enc:?}: remote write bodies are snappy-compressed"),
            );
        }
    }
    let st = state.clone();
    let tenant = tenant.to_string();
    // Decoding and appending are CPU work ending in an fsync: run them on this worker thread
    // (tokio moves other tasks elsewhere meanwhile) rather than handing them to the blocking
    // pool, which costs two context switches per request.
    match tokio::task::block_in_place(move || ingest(&st, &tenant, version, &body)) {
        Ingested::Done(r) => r,
        Ingested::Replicate(plan, local, samples) => {
            let Some(replicator) = &state.replicator else {
                return error(500, "no replicator".into());
            };
            let answer = replicator.execute(plan, local).await;
            if answer.status >= 300 {
                tracing::debug!(status = answer.status, message = %answer.message, "replicated write failed");
            }
            let status =
                StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let written_samples = if answer.status < 300 { samples } else { 0 };
            written(status, written_samples, 0, answer.message)
        }
    }
}

/// What [`ingest`] did: answered, or wrote the local share and left the rest to replicate.
enum Ingested {
    Done(Response),
    Replicate(Plan, Option<ReplicaResult>, usize),
}

/// Writes the local share of a routed request; None when this node owns none of it.
pub(crate) fn write_local_share(
    state: &AppState,
    plan: &Plan,
    req: &proto::remote_write::WriteRequest<'_>,
    head_series_limit: Option<u64>,
) -> Option<ReplicaResult> {
    let batch = plan.local.as_ref()?;
    Some(match state.tenants.get_or_open(&plan.tenant) {
        Ok(db) => {
            let outcome = writer::write_series(
                &db,
                Replicator::local_series(req, batch),
                head_series_limit,
                false,
            );
            record(state, &plan.tenant, &outcome);
            ReplicaResult::of_outcome(&outcome)
        }
        Err(e) => ReplicaResult::Unavailable(e.to_string()),
    })
}

/// Decompresses, decodes, checks limits and writes (or plans replication); runs on a blocking
/// thread (fsync).
fn ingest(state: &AppState, tenant: &str, version: ProtoVersion, body: &[u8]) -> Ingested {
    match ingest_inner(state, tenant, version, body) {
        Ok(i) => i,
        Err(r) => Ingested::Done(r),
    }
}

#[allow(clippy::result_large_err)] // one per request; boxing buys nothing
fn ingest_inner(
    state: &AppState,
    tenant: &str,
    version: ProtoVersion,
    body: &[u8],
) -> Result<Ingested, Response> {
    let limits = &state.config.limits;
    let tenant_limits = state.limits.for_tenant(tenant);
    let tighter = |flag: usize, file: Option<u64>| file.map_or(flag, |f| flag.min(f as usize));
    let max_body = tighter(limits.max_body_bytes, tenant_limits.size_bytes);
    let max_series = tighter(limits.max_series, tenant_limits.series);
    let max_samples = tighter(limits.max_samples, tenant_limits.samples);
    if body.len() > max_body {
        return Err(error(
            413,
            format!(
                "request too large: {} bytes, the limit is {max_body}",
                body.len()
            ),
        ));
    }
    let decoded_len = match snap::raw::decompress_len(body) {
        Ok(n) => n,
        Err(e) => return Err(error(400, format!("invalid snappy body: {e}"))),
    };
    if decoded_len > limits.max_decoded_bytes {
        return Err(error(
            413,
            format!(
                "request too large: {decoded_len} bytes uncompressed, the limit is {}",
                limits.max_decoded_bytes
            ),
        ));
    }
    let raw = match snap::raw::Decoder::new().decompress_vec(body) {
        Ok(r) => r,
        Err(e) => return Err(error(400, format!("invalid snappy body: {e}"))),
    };
    let decoded = match version {
        ProtoVersion::V1 => proto::remote_write::decode_v1(&raw),
        ProtoVersion::V2 => proto::remote_write::decode_v2(&raw),
    };
    let req = match decoded {
        Ok(r) => r,
        Err(e) => return Err(error(400, format!("invalid remote-write protobuf: {e}"))),
    };
    if req.timeseries.len() > max_series {
        return Err(error(
            413,
            format!(
                "request too large: {} series, the limit is {}",
                req.timeseries.len(),
                max_series
            ),
        ));
    }
    let samples = req.num_samples();
    if samples > max_samples {
        return Err(error(
            413,
            format!("request too large: {samples} samples, the limit is {max_samples}"),
        ));
    }
    if req.timeseries.is_empty() {
        // Metadata-only requests (Prometheus sends metadata separately): accepted.
        return Ok(Ingested::Done(written(
            StatusCode::NO_CONTENT,
            0,
            0,
            String::new(),
        )));
    }
    if let Err(e @ crate::tenants::TenantError::InvalidName(_)) =
        crate::tenants::validate_tenant(tenant)
    {
        return Err(error(400, e.to_string()));
    }
    if let Some(replicator) = &state.replicator {
        // Remote Write 1.0 series are forwarded as the client encoded them.
        let series_bytes = match version {
            ProtoVersion::V1 => proto::remote_write::series_bytes_v1(&raw).ok(),
            ProtoVersion::V2 => None,
        }
        .filter(|b| b.len() == req.timeseries.len());
        let plan = replicator
            .plan(tenant, &req, series_bytes.as_deref())
            .map_err(|e| error(500, e))?;
        let local = write_local_share(state, &plan, &req, tenant_limits.head_series);
        return Ok(Ingested::Replicate(plan, local, samples));
    }
    let db = match state.tenants.get_or_open(tenant) {
        Ok(db) => db,
        Err(e) => return Err(error(500, e.to_string())),
    };
    let outcome = writer::write(&db, &req, tenant_limits.head_series);
    record(state, tenant, &outcome);
    let status =
        StatusCode::from_u16(outcome.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if outcome.error.is_some() {
        tracing::debug!(tenant, status = status.as_u16(), message = %outcome.message(), "remote write rejected");
    }
    Ok(Ingested::Done(written(
        status,
        outcome.accepted_samples,
        outcome.accepted_exemplars,
        outcome.message(),
    )))
}

pub(crate) fn record(state: &AppState, tenant: &str, outcome: &WriteOutcome) {
    let t = ("tenant".to_string(), tenant.to_string());
    state
        .metrics
        .samples_ingested
        .get_or_create(&vec![t.clone()])
        .inc_by(outcome.accepted_samples as u64);
    for (reason, n) in &outcome.rejected {
        state
            .metrics
            .samples_rejected
            .get_or_create(&vec![
                t.clone(),
                ("reason".to_string(), reason.as_str().to_string()),
            ])
            .inc_by(*n as u64);
    }
}

/// A response with the remote write 2.0 "written" headers (sent for 1.0 too; harmless).
fn written(status: StatusCode, samples: usize, exemplars: usize, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        "X-Prometheus-Remote-Write-Samples-Written",
        HeaderValue::from(samples),
    );
    h.insert(
        "X-Prometheus-Remote-Write-Histograms-Written",
        HeaderValue::from(0),
    );
    h.insert(
        "X-Prometheus-Remote-Write-Exemplars-Written",
        HeaderValue::from(exemplars),
    );
    resp
}

/// One shipper pass over every tenant; false if any upload failed.
async fn ship_all(state: &AppState) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    let mut ok = true;
    for (tenant, db) in state.tenants.all() {
        let Some(shipper) = state.tenants.shipper(&tenant) else {
            continue;
        };
        let metas: Vec<_> = db.blocks().iter().map(|b| b.meta().clone()).collect();
        let stats = shipper.sync(&metas, now).await;
        let l = vec![("tenant".to_string(), tenant.clone())];
        let m = &state.metrics;
        m.shipper_uploads
            .get_or_create(&l)
            .inc_by(stats.uploaded as u64);
        m.shipper_bytes.get_or_create(&l).inc_by(stats.bytes);
        m.shipper_queue.get_or_create(&l).set(stats.pending as i64);
        m.shipper_oldest_age
            .get_or_create(&l)
            .set(stats.oldest_pending_max_time.map_or(0, |ms| ms / 1000));
        if let Some(e) = &stats.failed {
            ok = false;
            m.shipper_failures.get_or_create(&l).inc();
            tracing::warn!(tenant, pending = stats.pending, error = %e, "upload failed; will retry with backoff");
        }
    }
    ok
}

/// Serves `router` on `listener`, over TLS when configured, until `stop` resolves.
fn spawn_server(
    listener: tokio::net::TcpListener,
    tls: Option<&crate::tls::TlsFiles>,
    router: Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    Ok(match tls {
        None => tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
        }),
        Some(files) => {
            let config = crate::tls::server_config(files).map_err(std::io::Error::other)?;
            let listener = TlsListener::new(listener, config)?;
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(stop)
                    .await
            })
        }
    })
}

/// Runs the receiver until `shutdown` resolves, then stops accepting, finishes in-flight
/// requests and flushes every head to blocks.
pub async fn run(
    config: ReceiveConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = AppState::new(config.clone()).map_err(std::io::Error::other)?;
    let rw_listener = tokio::net::TcpListener::bind(config.remote_write_address).await?;
    let http_listener = tokio::net::TcpListener::bind(config.http_address).await?;
    let grpc_listener = tokio::net::TcpListener::bind(config.grpc_address).await?;
    serve(state, rw_listener, http_listener, grpc_listener, shutdown).await
}

/// Like [`run`] with listeners already bound (tests bind port 0).
pub async fn serve(
    state: Arc<AppState>,
    rw_listener: tokio::net::TcpListener,
    http_listener: tokio::net::TcpListener,
    grpc_listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(
        remote_write = %rw_listener.local_addr()?,
        http = %http_listener.local_addr()?,
        grpc = %grpc_listener.local_addr()?,
        tsdb = %state.config.tsdb_path.display(),
        "receiver starting"
    );
    let limits_task = match &state.config.limits_file {
        Some(path) => {
            let watcher = LimitsWatcher::load(path.clone(), state.limits.clone())
                .map_err(std::io::Error::other)?;
            Some(tokio::spawn(watcher.run(std::time::Duration::from_secs(5))))
        }
        None => None,
    };
    let tenants = state.tenants.clone();
    let opened = tokio::task::spawn_blocking(move || tenants.open_existing())
        .await
        .map_err(std::io::Error::other)?
        .map_err(std::io::Error::other)?;
    tracing::info!(tenants = opened, "existing tenants opened");
    state.ready.store(true, Ordering::Release);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let maintenance = {
        let tenants = state.tenants.clone();
        let mut stop = stop_rx.clone();
        let every = state.config.maintenance_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let t = tenants.clone();
                        let _ = tokio::task::spawn_blocking(move || t.maintain()).await;
                    }
                    _ = stop.changed() => break,
                }
            }
        })
    };

    let shipping = state.config.objstore.is_some().then(|| {
        let state = state.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                let delay = if failures == 0 {
                    state.config.shipper_interval
                } else {
                    objstore::shipper::backoff(
                        failures,
                        state
                            .config
                            .shipper_interval
                            .max(std::time::Duration::from_secs(30)),
                    )
                };
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => break,
                }
                if ship_all(&state).await {
                    failures = 0;
                } else {
                    failures += 1;
                }
            }
        })
    });

    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
    };
    // The StoreAPI over every tenant's TSDB (heads and local blocks), with its external labels.
    let grpc = {
        let tenants = state.tenants.clone();
        let source = move || {
            tenants
                .all()
                .into_iter()
                .map(|(t, db)| (tenants.external_labels(&t), db))
                .collect::<Vec<_>>()
        };
        let store = store::TsdbStore::new(source);
        let writes = crate::grpc_write::WriteService::new(state.clone());
        let stop = wait(stop_rx.clone());
        tokio::spawn(async move {
            let incoming =
                tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
            let served = tonic::transport::Server::builder()
                .layer(crate::grpc_snappy::SnappyDecompressLayer)
                .add_service(store.store_server())
                .add_service(store.info_server())
                .add_service(writes)
                .serve_with_incoming_shutdown(incoming, stop)
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "gRPC server failed");
            }
        })
    };
    let watcher_task = state.watcher.lock().unwrap().take().map(|w| {
        tracing::info!(path = %w.path().display(), "watching the hashrings file");
        tokio::spawn(w.run(state.config.hashrings_refresh))
    });
    if let Some(r) = &state.replicator {
        r.start();
    }
    let rw = spawn_server(
        rw_listener,
        state.config.remote_write_tls.as_ref(),
        remote_write_router(state.clone()),
        wait(stop_rx.clone()),
    )?;
    let http = spawn_server(
        http_listener,
        state.config.http_tls.as_ref(),
        http_router(state.clone()),
        wait(stop_rx.clone()),
    )?;
    shutdown.await;
    tracing::info!("shutting down: finishing in-flight requests");
    state.ready.store(false, Ordering::Release);
    let _ = stop_tx.send(true);
    let _ = rw.await;
    let _ = http.await;
    let _ = grpc.await;
    let _ = maintenance.await;
    if let Some(t) = limits_task {
        t.abort();
    }
    if let Some(t) = watcher_task {
        t.abort();
    }
    if let Some(t) = shipping {
        let _ = t.await;
    }
    let tenants = state.tenants.clone();
    tokio::task::spawn_blocking(move || tenants.close_all())
        .await
        .map_err(std::io::Error::other)?;
    if state.config.objstore.is_some() {
        // The flushed heads are blocks now: one last, bounded, pass ships them.
        let last = tokio::time::timeout(std::time::Duration::from_secs(60), ship_all(&state)).await;
        if !matches!(last, Ok(true)) {
            tracing::warn!(
                "some blocks are not in the bucket yet; they are shipped after the next start"
            );
        }
    }
    tracing::info!("receiver stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_negotiation() {
        let mut h = HeaderMap::new();
        assert_eq!(negotiate(&h), Ok(ProtoVersion::V1));
        h.insert(
            header::CONTENT_TYPE,
            "application/x-protobuf".parse().unwrap(),
        );
        assert_eq!(negotiate(&h), Ok(ProtoVersion::V1));
        h.insert(
            header::CONTENT_TYPE,
            "application/x-protobuf;proto=io.prometheus.write.v2.Request"
                .parse()
                .unwrap(),
        );
        assert_eq!(negotiate(&h), Ok(ProtoVersion::V2));
        h.insert(
            header::CONTENT_TYPE,
            "application/x-protobuf; proto=foo.Bar".parse().unwrap(),
        );
        assert!(negotiate(&h).is_err());
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(negotiate(&h).is_err());
    }
}
