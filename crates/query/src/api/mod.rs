//! The Prometheus HTTP API over the fan-out, with Thanos' query parameters.
//!
//! Endpoints (GET, and POST with a form body where Prometheus accepts it):
//! `/api/v1/query`, `/api/v1/query_range`, `/api/v1/series`, `/api/v1/labels`,
//! `/api/v1/label/<name>/values`, `/api/v1/metadata` (always empty: StoreAPI carries no
//! metadata), `/api/v1/query_exemplars` (over the endpoints' `thanos.Exemplars`),
//! `/api/v1/rules` (empty, for Grafana),
//! `/api/v1/status/buildinfo`, `/api/v1/stores` (Thanos Query's endpoint list),
//! `/api/v1/status/cluster` (Cairn's: the receivers' own reports, see [`crate::cluster`]), `/metrics`,
//! `/-/healthy`, `/-/ready`, and the UI routes of [`crate::ui`].
//!
//! Answers have Prometheus' envelope: `{"status": "success", "data": ..., "warnings": [...]}`
//! or `{"status": "error", "errorType": ..., "error": ...}` with its status codes: `bad_data`
//! 400, `execution` 422, `timeout` and `canceled` 503, `internal` 500. A query that failed
//! because an endpoint failed with `partial_response=false` is `internal`, as Prometheus
//! reports storage errors.
//!
//! Thanos' parameters: `dedup` (default true: merge series differing only in the replica
//! labels), `replicaLabels[]` (replace `--query.replica-label` for this request),
//! `partial_response` (default `--query.partial-response`), `max_source_resolution` (a duration,
//! e.g. `0s`, `5m`, `1h`, or `auto`: a fifth of a range query's step, the coarsest downsampled
//! resolution that still gives several windows per step; 0 for instant queries; absent means
//! 0, raw data only, unless `--query.auto-downsampling` makes `auto` the default).

pub mod json;
pub mod params;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use promql::{CancelToken, Engine, EngineOpts, Matcher, QueryResult, QueryValue};
use tokio::sync::Semaphore;
use tsdb::Labels;

use crate::endpoints::{EndpointSet, Health};
use crate::error::Classify;
use crate::fanout::{self, FanoutError, FanoutOptions, SeriesQuery, TenantScope};
use crate::fanout_queryable::{FanoutQueryable, ReadOptions};
use crate::metrics::Metrics;
use crate::series_set::group;
use crate::series_set::labels_from_proto;
use params::{parse_bool, parse_duration, parse_time, Params, MAX_TIME_MS, MIN_TIME_MS};

/// `max_source_resolution` in ms (Thanos' `parseDownsamplingParamMillis`): a duration, or
/// `auto` (`auto_default`, a fifth of the step for range queries, 0 for instant ones); absent
/// or empty gives 0, or `auto_default` under `--query.auto-downsampling`.
fn max_source_resolution(
    value: Option<&str>,
    auto_downsampling: bool,
    auto_default: i64,
) -> Result<i64, ApiError> {
    let ms = match value.filter(|v| !v.is_empty()) {
        Some("auto") => auto_default,
        None if auto_downsampling => auto_default,
        None => 0,
        Some(v) => parse_duration(v)
            .map_err(|e| ApiError::bad_data(format!("'max_source_resolution' parameter: {e}")))?,
    };
    if ms < 0 {
        return Err(ApiError::bad_data(
            "negative 'max_source_resolution' is not accepted. Try a positive integer",
        ));
    }
    Ok(ms)
}

/// What the API needs to know from `cairn query`'s flags.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// `--query.replica-label`.
    pub replica_labels: Vec<String>,
    /// Engine defaults: `--query.timeout`, `--query.lookback-delta`, `--query.max-samples`.
    pub engine: EngineOpts,
    /// `--query.partial-response`: the default of `partial_response`.
    pub partial_response: bool,
    /// `--store.response-timeout`.
    pub response_timeout: Option<Duration>,
    /// `--query.max-concurrent`: queries evaluated at once; more wait.
    pub max_concurrent: usize,
    /// `--query.auto-downsampling`: a request without `max_source_resolution` reads as `auto`.
    pub auto_downsampling: bool,
    /// Which tenant a request reads.
    pub tenancy: Tenancy,
    /// `--deduplication.func`.
    pub dedup_func: crate::fanout_queryable::DedupFunc,
    /// `--http.auth-file`: credentials every request but the probes and /metrics must carry
    /// (the receiver's auth file format). A principal bound to a tenant reads that tenant only.
    pub auth: Option<Arc<auth::Authenticator>>,
}

/// How requests name their tenant (Thanos Query's flags).
#[derive(Clone, Debug)]
pub struct Tenancy {
    /// `--query.enforce-tenancy`: every request sees one tenant's series only. Without it a
    /// request sees every tenant, unless its credentials are bound to one.
    pub enforce: bool,
    /// `--query.tenant-header`.
    pub header: String,
    /// `--query.tenant-label-name`: the external label carrying the tenant.
    pub label: String,
    /// `--query.default-tenant-id`: the tenant of requests without the header.
    pub default_tenant: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            replica_labels: Vec::new(),
            engine: EngineOpts::default(),
            partial_response: true,
            response_timeout: None,
            max_concurrent: 20,
            auto_downsampling: false,
            tenancy: Tenancy::default(),
            dedup_func: Default::default(),
            auth: None,
        }
    }
}

impl Default for Tenancy {
    fn default() -> Self {
        Tenancy {
            enforce: false,
            header: "THANOS-TENANT".into(),
            label: "tenant_id".into(),
            default_tenant: "default-tenant".into(),
        }
    }
}

/// The API's state.
pub struct Api {
    endpoints: Arc<EndpointSet>,
    config: ApiConfig,
    gate: Semaphore,
    pub metrics: Metrics,
    /// Which hashring member each receiver endpoint said it is.
    cluster_names: crate::cluster::Names,
}

/// The error types of Prometheus' API (the class of every error of this crate).
pub use crate::error::StatusClass as ErrorType;

/// A failed request.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorType,
    pub message: String,
    pub warnings: Vec<String>,
}

impl ApiError {
    fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            warnings: Vec::new(),
        }
    }

    fn bad_data(message: impl Into<String>) -> Self {
        Self::new(ErrorType::BadData, message)
    }

    fn invalid_param(name: &str, err: impl std::fmt::Display) -> Self {
        Self::bad_data(format!("invalid parameter {name:?}: {err}"))
    }
}

impl ApiError {
    /// An error answered as its class says, with its text.
    fn classified(e: &(impl Classify + std::fmt::Display)) -> Self {
        ApiError::new(e.class(), e.to_string())
    }
}

impl From<promql::Error> for ApiError {
    fn from(e: promql::Error) -> Self {
        ApiError::classified(&e)
    }
}

impl From<FanoutError> for ApiError {
    fn from(e: FanoutError) -> Self {
        ApiError::classified(&e)
    }
}

/// A successful answer: `data` as JSON, and its warnings and infos.
struct Answer {
    data: String,
    warnings: Vec<String>,
    infos: Vec<String>,
}

impl Answer {
    fn new(data: String, warnings: Vec<String>) -> Self {
        Answer {
            data,
            warnings,
            infos: Vec::new(),
        }
    }
}

type ApiResult = Result<Answer, ApiError>;

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Writes an answer: the one place an error's class becomes a status code and `errorType`.
fn respond(result: ApiResult) -> Response {
    match result {
        Ok(a) => json_response(StatusCode::OK, json::success(a.data, &a.warnings, &a.infos)),
        Err(e) => json_response(
            e.kind.status(),
            json::error(e.kind.as_str(), &e.message, &e.warnings),
        ),
    }
}

/// Cancels a query's evaluation when the request goes away before it finishes.
struct CancelOnDrop(Option<CancelToken>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.cancel();
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn parse_bool_param(p: &Params, name: &str, default: bool) -> Result<bool, ApiError> {
    match p.get(name) {
        None => Ok(default),
        Some(v) => parse_bool(v).ok_or_else(|| {
            ApiError::bad_data(format!(
                "'{name}' parameter: strconv.ParseBool: parsing {v:?}: invalid syntax"
            ))
        }),
    }
}

fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, ApiError> {
    match p.get(name) {
        None => Ok(default),
        Some(v) => parse_time(v).map_err(|e| {
            ApiError::invalid_param(name, format!("invalid time value for '{name}': {e}"))
        }),
    }
}

fn limit_param(p: &Params) -> Result<usize, ApiError> {
    match p.get("limit") {
        None => Ok(0),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(n as usize),
            Ok(_) => Err(ApiError::invalid_param(
                "limit",
                "limit must be non-negative",
            )),
            Err(_) => Err(ApiError::invalid_param(
                "limit",
                format!("strconv.Atoi: parsing {v:?}: invalid syntax"),
            )),
        },
    }
}

/// Why a `match[]` value is not a series selector.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SelectorError {
    /// It does not parse, or holds a matcher that does not compile.
    #[error("{source}")]
    Invalid {
        selector: String,
        #[source]
        source: promql::Error,
    },
    /// It parses as an expression other than a selector.
    #[error("{selector:?} is not a series selector")]
    NotASelector { selector: String },
}

impl Classify for SelectorError {
    fn class(&self) -> ErrorType {
        ErrorType::BadData
    }
}

/// The matcher sets of a series selector (`{a="b"}`, `up{job=~"x"}`; `or` inside the braces
/// gives several sets).
pub fn parse_selector(s: &str) -> Result<Vec<Vec<Matcher>>, SelectorError> {
    use promql::promql_parser::parser::Expr;
    let invalid = |source| SelectorError::Invalid {
        selector: s.to_string(),
        source,
    };
    let expr = promql::parse(s).map_err(invalid)?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(SelectorError::NotASelector {
            selector: s.to_string(),
        });
    };
    promql::selector_matchers(&vs).map_err(invalid)
}

/// Parses every `match[]` value; each set must have a matcher that does not match the empty
/// string (Prometheus' rule: no selecting everything).
fn matcher_sets(p: &Params) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let mut out = Vec::new();
    for m in p.all("match[]") {
        let sets = parse_selector(m).map_err(|e| ApiError::invalid_param("match[]", e))?;
        for set in sets {
            if !set.iter().any(|m| !m.matches("")) {
                return Err(ApiError::bad_data(
                    "match[] must contain at least one non-empty matcher",
                ));
            }
            out.push(set);
        }
    }
    Ok(out)
}

fn truncate<T>(v: &mut Vec<T>, limit: usize, warnings: &mut Vec<String>) {
    if limit > 0 && v.len() > limit {
        v.truncate(limit);
        warnings.push("results truncated due to limit".to_string());
    }
}

impl Api {
    pub fn new(config: ApiConfig, endpoints: Arc<EndpointSet>) -> Arc<Self> {
        Arc::new(Api {
            gate: Semaphore::new(config.max_concurrent.max(1)),
            endpoints,
            config,
            metrics: Metrics::new(),
            cluster_names: Default::default(),
        })
    }

    pub fn endpoints(&self) -> &Arc<EndpointSet> {
        &self.endpoints
    }

    /// The engine for a request (`timeout` and `lookback_delta` parameters applied) and the
    /// query's deadline.
    fn engine_for(&self, p: &Params) -> Result<(Engine, Instant), ApiError> {
        let mut opts = self.config.engine.clone();
        if let Some(v) = p.get("timeout") {
            let ms = parse_duration(v).map_err(|e| ApiError::invalid_param("timeout", e))?;
            let asked = Duration::from_millis(ms.max(0) as u64);
            opts.timeout = Some(opts.timeout.map_or(asked, |t| t.min(asked)));
        }
        if let Some(v) = p.get("lookback_delta") {
            let ms = parse_duration(v).map_err(|e| {
                ApiError::bad_data(format!("error parsing lookback delta duration: {e}"))
            })?;
            if ms > 0 {
                opts.lookback_delta = Duration::from_millis(ms as u64);
            }
        }
        let deadline =
            Instant::now() + opts.timeout.unwrap_or(Duration::from_secs(365 * 24 * 3600));
        Ok((Engine::new(opts), deadline))
    }

    /// `dedup`, `replicaLabels[]`, `partial_response`, `max_source_resolution`.
    fn read_options(
        &self,
        p: &Params,
        deadline: Instant,
        step_ms: i64,
    ) -> Result<ReadOptions, ApiError> {
        let dedup = parse_bool_param(p, "dedup", true)?;
        let partial = parse_bool_param(p, "partial_response", self.config.partial_response)?;
        let asked: Vec<String> = p
            .all("replicaLabels[]")
            .into_iter()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        let replica_labels = if asked.is_empty() {
            self.config.replica_labels.clone()
        } else {
            asked
        };
        let max_resolution_window = max_source_resolution(
            p.get("max_source_resolution"),
            self.config.auto_downsampling,
            step_ms / 5,
        )?;
        Ok(ReadOptions {
            dedup_func: self.config.dedup_func,
            dedup,
            replica_labels,
            fanout: FanoutOptions {
                partial_response: partial,
                deadline: Some(deadline),
                response_timeout: self.config.response_timeout,
                tenant: p.tenant().map(|t| TenantScope {
                    label: self.config.tenancy.label.clone(),
                    tenant: t.to_string(),
                }),
            },
            max_resolution_window,
        })
    }

    /// Runs `eval` on a blocking thread over a fan-out queryable; returns the result and every
    /// warning (endpoints' first, then the engine's).
    async fn evaluate<F>(
        &self,
        engine: Engine,
        read: ReadOptions,
        kind: &'static str,
        eval: F,
    ) -> Result<(QueryResult, Vec<String>), ApiError>
    where
        F: FnOnce(&Engine, &FanoutQueryable, CancelToken) -> promql::Result<QueryResult>
            + Send
            + 'static,
    {
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|_| ApiError::new(ErrorType::Internal, "shutting down"))?;
        let cancel = CancelToken::new();
        let mut guard = CancelOnDrop(Some(cancel.clone()));
        let storage = FanoutQueryable::new(
            self.endpoints.clone(),
            tokio::runtime::Handle::current(),
            read,
            Some(cancel.clone()),
        );
        let joined = tokio::task::spawn_blocking(move || {
            let result = eval(&engine, &storage, cancel);
            (result, storage.take_warnings())
        })
        .await;
        guard.0 = None;
        let outcome = |o: &str| {
            vec![
                ("kind".to_string(), kind.to_string()),
                ("outcome".to_string(), o.to_string()),
            ]
        };
        let (result, mut warnings) = match joined {
            Ok(r) => r,
            Err(e) => {
                self.metrics
                    .queries
                    .get_or_create(&outcome("internal"))
                    .inc();
                return Err(ApiError::new(
                    ErrorType::Internal,
                    format!("query evaluation failed: {e}"),
                ));
            }
        };
        if warnings.iter().any(|w| w.starts_with("endpoint ")) {
            self.metrics.partial_responses.inc();
        }
        match result {
            Ok(r) => {
                self.metrics
                    .queries
                    .get_or_create(&outcome("success"))
                    .inc();
                warnings.extend(r.annotations.warnings.iter().cloned());
                Ok((r, warnings))
            }
            Err(e) => {
                let mut err = ApiError::from(e);
                self.metrics
                    .queries
                    .get_or_create(&outcome(err.kind.as_str()))
                    .inc();
                err.warnings = warnings;
                Err(err)
            }
        }
    }

    async fn query(self: Arc<Self>, p: Params) -> ApiResult {
        let t = time_param(&p, "time", now_ms())?;
        let (engine, deadline) = self.engine_for(&p)?;
        let read = self.read_options(&p, deadline, 0)?;
        let expr = promql::parse(p.get("query").unwrap_or(""))
            .map_err(|e| ApiError::invalid_param("query", e))?;
        let (result, warnings) = self
            .evaluate(engine, read, "instant", move |engine, storage, cancel| {
                engine.instant_query_expr(storage, &expr, t, Some(cancel))
            })
            .await?;
        Ok(query_answer(result, warnings))
    }

    async fn query_range(self: Arc<Self>, p: Params) -> ApiResult {
        let start = parse_time(p.get("start").unwrap_or(""))
            .map_err(|e| ApiError::invalid_param("start", e))?;
        let end = parse_time(p.get("end").unwrap_or(""))
            .map_err(|e| ApiError::invalid_param("end", e))?;
        if end < start {
            return Err(ApiError::invalid_param(
                "end",
                "end timestamp must not be before start time",
            ));
        }
        let step = parse_duration(p.get("step").unwrap_or(""))
            .map_err(|e| ApiError::invalid_param("step", e))?;
        if step <= 0 {
            return Err(ApiError::invalid_param(
                "step",
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        // Prometheus' bound: 60 s resolution for a week, 1 h for a year.
        if (end - start) / step > 11_000 {
            return Err(ApiError::bad_data(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            ));
        }
        let (engine, deadline) = self.engine_for(&p)?;
        let read = self.read_options(&p, deadline, step)?;
        let expr = promql::parse(p.get("query").unwrap_or(""))
            .map_err(|e| ApiError::invalid_param("query", e))?;
        let (result, warnings) = self
            .evaluate(engine, read, "range", move |engine, storage, cancel| {
                engine.range_query_expr(storage, &expr, start, end, step, Some(cancel))
            })
            .await?;
        Ok(query_answer(result, warnings))
    }

    /// Deadline and read options for the metadata endpoints (no engine involved).
    fn metadata_options(&self, p: &Params) -> Result<ReadOptions, ApiError> {
        let (_, deadline) = self.engine_for(p)?;
        self.read_options(p, deadline, 0)
    }

    async fn series(self: Arc<Self>, p: Params) -> ApiResult {
        if p.all("match[]").is_empty() {
            return Err(ApiError::bad_data("no match[] parameter provided"));
        }
        let limit = limit_param(&p)?;
        let start = time_param(&p, "start", MIN_TIME_MS)?;
        let end = time_param(&p, "end", MAX_TIME_MS)?;
        let sets = matcher_sets(&p)?;
        let read = self.metadata_options(&p)?;
        let mut found: BTreeSet<Labels> = BTreeSet::new();
        let mut warnings = Vec::new();
        for matchers in sets {
            let q = SeriesQuery {
                matchers,
                min_time: start,
                max_time: end,
                skip_chunks: true,
                func: Some("series".into()),
                ..Default::default()
            };
            let g = fanout::series(&self.endpoints, &q, &read.fanout).await?;
            warnings.extend(g.warnings);
            for s in group(g.answers, &read.replica_labels, read.dedup_active()) {
                found.insert(s.labels);
            }
        }
        let mut found: Vec<Labels> = found.into_iter().collect();
        truncate(&mut found, limit, &mut warnings);
        let mut data = String::from("[");
        for (i, l) in found.iter().enumerate() {
            if i > 0 {
                data.push(',');
            }
            json::push_labels(&mut data, l);
        }
        data.push(']');
        Ok(Answer::new(data, warnings))
    }

    async fn labels(self: Arc<Self>, p: Params) -> ApiResult {
        let limit = limit_param(&p)?;
        let start = time_param(&p, "start", MIN_TIME_MS)?;
        let end = time_param(&p, "end", MAX_TIME_MS)?;
        let mut sets = matcher_sets(&p)?;
        if sets.is_empty() {
            sets.push(Vec::new());
        }
        let read = self.metadata_options(&p)?;
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut warnings = Vec::new();
        for matchers in sets {
            let g =
                fanout::label_names(&self.endpoints, &matchers, start, end, &read.fanout).await?;
            warnings.extend(g.warnings);
            names.extend(g.answers.into_iter().flatten());
        }
        if read.dedup_active() {
            names.retain(|n| !read.replica_labels.contains(n));
        }
        let mut names: Vec<String> = names.into_iter().collect();
        truncate(&mut names, limit, &mut warnings);
        let mut data = String::new();
        json::push_str_array(&mut data, &names);
        Ok(Answer::new(data, warnings))
    }

    /// `/api/v1/query_exemplars`: the exemplars of the series the query's selectors match, from
    /// every endpoint serving `thanos.Exemplars`, replicas merged as for series.
    async fn query_exemplars(self: Arc<Self>, p: Params) -> ApiResult {
        let query = p.get("query").unwrap_or_default().to_string();
        promql::query_selectors(&query).map_err(|e| ApiError::bad_data(e.to_string()))?;
        let start = time_param(&p, "start", MIN_TIME_MS)?;
        let end = time_param(&p, "end", MAX_TIME_MS)?;
        if end < start {
            return Err(ApiError::bad_data(
                "end timestamp must not be before start timestamp",
            ));
        }
        let read = self.metadata_options(&p)?;
        let g = fanout::exemplars(&self.endpoints, &query, start, end, &read.fanout).await?;
        let mut merged: BTreeMap<Labels, Vec<(i64, f64, Labels)>> = BTreeMap::new();
        for data in g.answers.into_iter().flatten() {
            let mut labels = labels_from_proto(
                data.series_labels
                    .as_ref()
                    .map_or(&[][..], |l| l.labels.as_slice()),
            );
            if read.dedup_active() {
                let names: Vec<&str> = read.replica_labels.iter().map(String::as_str).collect();
                labels = labels.without(&names);
            }
            let slot = merged.entry(labels).or_default();
            for e in data.exemplars {
                let el =
                    labels_from_proto(e.labels.as_ref().map_or(&[][..], |l| l.labels.as_slice()));
                slot.push((e.ts, e.value, el));
            }
        }
        let mut data = String::from("[");
        for (i, (series, mut exemplars)) in merged.into_iter().enumerate() {
            exemplars.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.2.cmp(&b.2)));
            exemplars.dedup_by(|a, b| a.0 == b.0 && a.2 == b.2);
            if i > 0 {
                data.push(',');
            }
            data.push_str("{\"seriesLabels\":");
            json::push_labels(&mut data, &series);
            data.push_str(",\"exemplars\":[");
            for (j, (ts, value, labels)) in exemplars.iter().enumerate() {
                if j > 0 {
                    data.push(',');
                }
                data.push_str("{\"labels\":");
                json::push_labels(&mut data, labels);
                data.push_str(",\"value\":");
                json::push_str(&mut data, &json::format_value(*value));
                data.push_str(",\"timestamp\":");
                json::push_ts(&mut data, *ts);
                data.push('}');
            }
            data.push_str("]}");
        }
        data.push(']');
        Ok(Answer::new(data, g.warnings))
    }

    async fn label_values(self: Arc<Self>, name: String, p: Params) -> ApiResult {
        if name.is_empty() {
            return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
        }
        let limit = limit_param(&p)?;
        let start = time_param(&p, "start", MIN_TIME_MS)?;
        let end = time_param(&p, "end", MAX_TIME_MS)?;
        let mut sets = matcher_sets(&p)?;
        if sets.is_empty() {
            sets.push(Vec::new());
        }
        let read = self.metadata_options(&p)?;
        let mut values: BTreeSet<String> = BTreeSet::new();
        let mut warnings = Vec::new();
        // A replica label has no values once replicas are merged (as in Thanos).
        if !(read.dedup_active() && read.replica_labels.contains(&name)) {
            for matchers in sets {
                let g = fanout::label_values(
                    &self.endpoints,
                    &name,
                    &matchers,
                    start,
                    end,
                    &read.fanout,
                )
                .await?;
                warnings.extend(g.warnings);
                values.extend(g.answers.into_iter().flatten());
            }
        }
        let mut values: Vec<String> = values.into_iter().collect();
        truncate(&mut values, limit, &mut warnings);
        let mut data = String::new();
        json::push_str_array(&mut data, &values);
        Ok(Answer::new(data, warnings))
    }

    fn stores(&self) -> ApiResult {
        let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in self.endpoints.snapshots() {
            let mut o = String::from("{\"name\":");
            json::push_str(&mut o, &e.address);
            o.push_str(",\"health\":");
            json::push_str(&mut o, e.health.as_str());
            o.push_str(",\"lastCheck\":");
            match e.last_check {
                Some(t) => {
                    let ms = t
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_millis() as i64)
                        .unwrap_or(0);
                    json::push_str(&mut o, &params::format_rfc3339(ms));
                }
                None => o.push_str("null"),
            }
            o.push_str(",\"lastError\":");
            match (&e.last_error, e.health) {
                (Some(err), Health::Down) => json::push_str(&mut o, err),
                _ => o.push_str("null"),
            }
            o.push_str(",\"labelSets\":[");
            let info = e.info.as_ref();
            for (i, l) in info
                .map(|i| i.label_sets.as_slice())
                .unwrap_or(&[])
                .iter()
                .enumerate()
            {
                if i > 0 {
                    o.push(',');
                }
                json::push_labels(&mut o, l);
            }
            o.push(']');
            match info.and_then(|i| i.store_range) {
                Some((lo, hi)) => {
                    o.push_str(&format!(",\"minTime\":{lo},\"maxTime\":{hi}"));
                }
                None => o.push_str(",\"minTime\":null,\"maxTime\":null"),
            }
            o.push('}');
            let kind = info
                .map(|i| i.component_type.clone())
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| "unknown".to_string());
            by_type.entry(kind).or_default().push(o);
        }
        let mut data = String::from("{");
        for (i, (kind, list)) in by_type.iter().enumerate() {
            if i > 0 {
                data.push(',');
            }
            json::push_str(&mut data, kind);
            data.push_str(":[");
            data.push_str(&list.join(","));
            data.push(']');
        }
        data.push('}');
        Ok(Answer::new(data, Vec::new()))
    }
}

fn query_answer(result: QueryResult, warnings: Vec<String>) -> Answer {
    let mut data = String::with_capacity(match &result.value {
        // `[1700000000,"0.26666666666666666"],` is 36 bytes; room for the envelope too.
        QueryValue::Matrix(m) => 128 + m.iter().map(|s| 100 + s.samples.len() * 36).sum::<usize>(),
        _ => 256,
    });
    json::push_query_data(&mut data, &result.value);
    Answer {
        data,
        warnings,
        infos: result.annotations.infos,
    }
}

/// Reads a request's parameters: the URL query, plus the form body of a POST.
fn read_params(
    api: &Api,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Params, ApiError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let form = (*method == Method::POST && is_form).then_some(body.as_ref());
    let mut p = Params::parse(uri.query(), form)
        .map_err(|e| ApiError::new(e.class(), format!("error parsing form values: {e}")))?;
    p.set_tenant(read_tenant(api, headers)?);
    Ok(p)
}

/// The tenant a request reads (None: every tenant). Credentials bound to a tenant decide it
/// whatever the tenancy flags; a tenant header naming another is refused.
fn read_tenant(api: &Api, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let t = &api.config.tenancy;
    let named = headers
        .get(t.header.as_str())
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty());
    let bound = match &api.config.auth {
        Some(auth) => {
            auth.authenticate(authorization(headers))
                .map_err(|e| ApiError::new(ErrorType::Unauthorized, e.to_string()))?
                .tenant
        }
        None => None,
    };
    Ok(match (bound, named) {
        (Some(bound), Some(named)) if named != bound => {
            return Err(ApiError::new(
                ErrorType::Forbidden,
                format!(
                    "these credentials may only read tenant {bound:?}, not {named:?} (header {})",
                    t.header
                ),
            ))
        }
        (Some(bound), _) => Some(bound),
        (None, named) if t.enforce => {
            Some(named.map_or_else(|| t.default_tenant.clone(), str::to_string))
        }
        (None, _) => None,
    })
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// Refuses a request without valid credentials when an auth file is configured (401 with a
/// basic-auth challenge, so a browser asks for them).
async fn authenticate(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let Some(auth) = &api.config.auth else {
        return next.run(req).await;
    };
    match auth.authenticate(authorization(req.headers())) {
        Ok(_) => next.run(req).await,
        Err(e) => {
            let mut resp = respond(Err(ApiError::new(ErrorType::Unauthorized, e.to_string())));
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"cairn\""),
            );
            resp
        }
    }
}

macro_rules! handler {
    ($name:ident, $method:ident) => {
        async fn $name(
            State(api): State<Arc<Api>>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            respond(match read_params(&api, &method, &uri, &headers, &body) {
                Ok(p) => api.$method(p).await,
                Err(e) => Err(e),
            })
        }
    };
}

handler!(query_handler, query);
handler!(query_range_handler, query_range);
handler!(series_handler, series);
handler!(labels_handler, labels);
handler!(query_exemplars_handler, query_exemplars);

async fn label_values_handler(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(match read_params(&api, &method, &uri, &headers, &body) {
        Ok(p) => api.label_values(name, p).await,
        Err(e) => Err(e),
    })
}

/// The admin pages list every store's label sets (every tenant's name) and the pool's state:
/// credentials bound to a tenant may not read them.
fn admin_only(api: &Api, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(auth) = &api.config.auth else {
        return Ok(());
    };
    match auth.authenticate(authorization(headers)) {
        Ok(p) => match p.tenant {
            Some(t) => Err(ApiError::new(
                ErrorType::Forbidden,
                format!(
                    "{} is bound to tenant {t:?}: the stores and cluster pages show every tenant",
                    p.name
                ),
            )),
            None => Ok(()),
        },
        Err(e) => Err(ApiError::new(ErrorType::Unauthorized, e.to_string())),
    }
}

async fn stores_handler(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    respond(admin_only(&api, &headers).and_then(|()| api.stores()))
}

async fn cluster_handler(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    if let Err(e) = admin_only(&api, &headers) {
        return respond(Err(e));
    }
    let data = crate::cluster::cluster(&api.endpoints, &api.cluster_names).await;
    respond(Ok(Answer::new(data.to_string(), Vec::new())))
}

async fn buildinfo_handler() -> Response {
    let data = format!(
        "{{\"version\":\"{}\",\"revision\":\"\",\"branch\":\"\",\"buildUser\":\"\",\"buildDate\":\"\",\"goVersion\":\"\",\"application\":\"cairn\"}}",
        env!("CARGO_PKG_VERSION")
    );
    respond(Ok(Answer::new(data, Vec::new())))
}

async fn empty_object_handler() -> Response {
    respond(Ok(Answer::new("{}".into(), Vec::new())))
}

async fn rules_handler() -> Response {
    respond(Ok(Answer::new("{\"groups\":[]}".into(), Vec::new())))
}

async fn metrics_handler(State(api): State<Arc<Api>>) -> Response {
    api.metrics.observe_endpoints(&api.endpoints.snapshots());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        api.metrics.encode(),
    )
        .into_response()
}

async fn ready_handler(State(api): State<Arc<Api>>) -> Response {
    if api.endpoints.first_update_done() {
        (StatusCode::OK, "OK").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: endpoints not asked yet",
        )
            .into_response()
    }
}

/// Counts and times every request by route.
async fn track(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".to_string());
    let method = req.method().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let code = resp.status().as_u16().to_string();
    api.metrics
        .http_requests
        .get_or_create(&vec![
            ("handler".to_string(), handler.clone()),
            ("method".to_string(), method.clone()),
            ("code".to_string(), code),
        ])
        .inc();
    api.metrics
        .http_request_duration
        .get_or_create(&vec![
            ("handler".to_string(), handler),
            ("method".to_string(), method),
        ])
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// Every route of `cairn query`'s HTTP port.
pub fn router(api: Arc<Api>) -> Router {
    let open = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/-/healthy", get(|| async { "OK" }))
        .route("/-/ready", get(ready_handler));
    Router::new()
        .route("/api/v1/query", get(query_handler).post(query_handler))
        .route(
            "/api/v1/query_range",
            get(query_range_handler).post(query_range_handler),
        )
        .route("/api/v1/series", get(series_handler).post(series_handler))
        .route("/api/v1/labels", get(labels_handler).post(labels_handler))
        .route("/api/v1/label/{name}/values", get(label_values_handler))
        .route("/api/v1/metadata", get(empty_object_handler))
        .route(
            "/api/v1/query_exemplars",
            get(query_exemplars_handler).post(query_exemplars_handler),
        )
        .route("/api/v1/rules", get(rules_handler))
        .route("/api/v1/status/buildinfo", get(buildinfo_handler))
        .route("/api/v1/stores", get(stores_handler))
        .route("/api/v1/status/cluster", get(cluster_handler))
        .merge(crate::ui::routes())
        .route_layer(middleware::from_fn_with_state(api.clone(), authenticate))
        .merge(open)
        .route_layer(middleware::from_fn_with_state(api.clone(), track))
        .with_state(api)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_source_resolution_values() {
        let step_fifth = 720_000; // a 1h step
        let ok = |v: Option<&str>, auto: bool| max_source_resolution(v, auto, step_fifth).unwrap();
        assert_eq!(ok(None, false), 0);
        assert_eq!(ok(Some(""), false), 0);
        assert_eq!(ok(Some("0s"), false), 0);
        assert_eq!(ok(Some("5m"), false), 300_000);
        assert_eq!(ok(Some("1h"), false), 3_600_000);
        assert_eq!(ok(Some("300"), false), 300_000);
        assert_eq!(ok(Some("auto"), false), step_fifth);
        // --query.auto-downsampling: absent means auto; a value still wins.
        assert_eq!(ok(None, true), step_fifth);
        assert_eq!(ok(Some("0s"), true), 0);
        // Instant queries: auto is 0.
        assert_eq!(max_source_resolution(Some("auto"), false, 0).unwrap(), 0);
        let e = max_source_resolution(Some("-300"), false, 0).unwrap_err();
        assert!(e.message.contains("negative"), "{}", e.message);
        let e = max_source_resolution(Some("soon"), false, 0).unwrap_err();
        assert!(e.message.starts_with("'max_source_resolution' parameter"));
    }
}
