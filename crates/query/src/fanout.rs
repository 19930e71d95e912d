//! Fan-out: one StoreAPI request to every endpoint that can answer it, in parallel, with
//! partial-response handling.
//!
//! Each endpoint's call is bounded by the query's deadline and, when set, by
//! `--store.response-timeout`. An endpoint that fails, times out (its own timeout), is down, or
//! sends a warning becomes a warning of the response when partial responses are allowed (the
//! default), and fails the request otherwise (`partial_response=false`), as in Thanos; an
//! endpoint that fails contributes nothing, not even what it sent before failing. Reaching the
//! query's deadline fails the request either way.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use promql::{MatchType, Matcher};
use proto::thanos::exemplars_client::ExemplarsClient;
use proto::thanos::store_client::StoreClient;
use proto::thanos::{
    exemplars_response, label_matcher, series_response, ExemplarData, ExemplarsRequest,
    LabelMatcher, LabelNamesRequest, LabelValuesRequest, PartialResponseStrategy, SeriesRequest,
};

use crate::endpoints::{Endpoint, EndpointError, EndpointSet, MAX_MESSAGE_BYTES};
use crate::error::{Classify, StatusClass};
use crate::series_set::{push_frame, RawSeries};

/// How a fan-out behaves.
#[derive(Clone, Debug)]
pub struct FanoutOptions {
    /// A failing endpoint is a warning (true) or fails the request (false).
    pub partial_response: bool,
    /// When the whole query must be done.
    pub deadline: Option<Instant>,
    /// Longest one endpoint may take (`--store.response-timeout`; `None`: the query's deadline).
    pub response_timeout: Option<Duration>,
    /// `--query.enforce-tenancy`: only this tenant's series, whatever the request's matchers.
    pub tenant: Option<TenantScope>,
}

/// The tenant a request is confined to: every StoreAPI call gets the matcher
/// `label="tenant"` added to its own (so a regex over the tenant label cannot widen it), and
/// the tenant in the gRPC metadata `thanos-tenant`, for stores that enforce it themselves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantScope {
    /// `--query.tenant-label-name`.
    pub label: String,
    pub tenant: String,
}

/// Series per `SeriesBatch` asked of stores (Thanos' querier asks 64 too,
/// `store.DefaultResponseBatchSize`): one message per series costs both sides more than the
/// series; stores that predate batches ignore it and send one series a message.
pub const RESPONSE_BATCH_SIZE: i64 = 64;

/// The gRPC metadata key carrying the tenant (Thanos' `tenancy.DefaultTenantHeader`, lowercased).
pub const TENANT_METADATA: &str = "thanos-tenant";

impl TenantScope {
    /// `matchers` with this tenant's matcher added.
    pub fn confine(&self, matchers: &[Matcher]) -> Vec<Matcher> {
        let mut out = matchers.to_vec();
        out.push(
            Matcher::new(MatchType::Equal, &self.label, &self.tenant)
                .expect("an equality matcher always builds"),
        );
        out
    }
}

/// `message` as a request, with the tenant in its metadata when there is one.
fn with_tenant<T>(message: T, tenant: Option<&TenantScope>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(t) = tenant {
        if let Ok(v) = t.tenant.parse() {
            request.metadata_mut().insert(TENANT_METADATA, v);
        }
    }
    request
}

impl Default for FanoutOptions {
    fn default() -> Self {
        FanoutOptions {
            partial_response: true,
            deadline: None,
            response_timeout: None,
            tenant: None,
        }
    }
}

/// Why a fan-out failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FanoutError {
    /// An endpoint failed and partial responses are off.
    #[error("{0}")]
    Endpoint(String),
    /// The query's deadline passed.
    #[error("query timed out in {0}")]
    Timeout(&'static str),
}

/// Why one endpoint's call failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CallError {
    /// The endpoint is down; the message names it.
    #[error("{0}")]
    Down(String),
    #[error(transparent)]
    Channel(#[from] EndpointError),
    /// The endpoint answered with a gRPC error.
    #[error("{code:?}: {message}")]
    Status { code: tonic::Code, message: String },
    /// No answer within the call's deadline.
    #[error("no answer after {seconds:.1}s")]
    NoAnswer { seconds: f64 },
}

impl From<tonic::Status> for CallError {
    fn from(s: tonic::Status) -> Self {
        CallError::Status {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

impl Classify for CallError {
    /// What the call's failure becomes when partial responses are off.
    fn class(&self) -> StatusClass {
        StatusClass::Internal
    }
}

/// What a fan-out gathered: one answer per endpoint that answered, and the warnings.
#[derive(Debug, Default)]
pub struct Gathered<T> {
    pub answers: Vec<T>,
    pub warnings: Vec<String>,
    /// Addresses of the endpoints asked (including failed ones).
    pub asked: Vec<String>,
}

/// A gRPC status as `Code: message`.
pub fn describe_status(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// Converts engine matchers into StoreAPI matchers.
pub fn proto_matchers(matchers: &[Matcher]) -> Vec<LabelMatcher> {
    matchers
        .iter()
        .map(|m| LabelMatcher {
            r#type: match m.kind {
                MatchType::Equal => label_matcher::Type::Eq,
                MatchType::NotEqual => label_matcher::Type::Neq,
                MatchType::Regex => label_matcher::Type::Re,
                MatchType::NotRegex => label_matcher::Type::Nre,
            } as i32,
            name: m.name.clone(),
            value: m.value.clone(),
        })
        .collect()
}

fn strategy(partial: bool) -> (bool, i32) {
    if partial {
        (false, PartialResponseStrategy::Warn as i32)
    } else {
        (true, PartialResponseStrategy::Abort as i32)
    }
}

/// Runs `call` against every store target concurrently and sorts out failures.
async fn gather<T, F, Fut>(
    set: &EndpointSet,
    mint: i64,
    maxt: i64,
    matchers: &[Matcher],
    opts: &FanoutOptions,
    what: &'static str,
    call: F,
) -> Result<Gathered<T>, FanoutError>
where
    F: Fn(Arc<Endpoint>) -> Fut,
    Fut: Future<Output = Result<(T, Vec<String>), CallError>>,
{
    gather_from(set.targets(mint, maxt, matchers), opts, what, call).await
}

/// Runs `call` against `targets` concurrently and sorts out failures.
async fn gather_from<T, F, Fut>(
    targets: Vec<crate::endpoints::Target>,
    opts: &FanoutOptions,
    what: &'static str,
    call: F,
) -> Result<Gathered<T>, FanoutError>
where
    F: Fn(Arc<Endpoint>) -> Fut,
    Fut: Future<Output = Result<(T, Vec<String>), CallError>>,
{
    let asked: Vec<String> = targets.iter().map(|t| t.endpoint.address.clone()).collect();
    let calls = targets.into_iter().map(|t| {
        let started = Instant::now();
        let deadline = match (opts.deadline, opts.response_timeout) {
            (Some(d), Some(r)) => Some(d.min(started + r)),
            (Some(d), None) => Some(d),
            (None, Some(r)) => Some(started + r),
            (None, None) => None,
        };
        let fut = call(t.endpoint.clone());
        async move {
            let address = t.endpoint.address.clone();
            if let Some(down) = t.down {
                return (address, Err(CallError::Down(down)));
            }
            let result = match deadline {
                None => fut.await,
                Some(d) => match tokio::time::timeout_at(d.into(), fut).await {
                    Ok(r) => r,
                    Err(_) => Err(CallError::NoAnswer {
                        seconds: started.elapsed().as_secs_f64(),
                    }),
                },
            };
            (address, result)
        }
    });
    let results = futures::future::join_all(calls).await;
    if opts.deadline.is_some_and(|d| Instant::now() >= d) {
        return Err(FanoutError::Timeout(what));
    }
    let mut out = Gathered {
        answers: Vec::with_capacity(results.len()),
        warnings: Vec::new(),
        asked,
    };
    for (address, result) in results {
        match result {
            Ok((answer, warnings)) => {
                for w in warnings {
                    let w = format!("endpoint {address}: {w}");
                    if !opts.partial_response {
                        return Err(FanoutError::Endpoint(w));
                    }
                    out.warnings.push(w);
                }
                out.answers.push(answer);
            }
            Err(e) => {
                let msg = match e {
                    CallError::Down(msg) => msg,
                    e => format!("endpoint {address}: {what}: {e}"),
                };
                tracing::debug!(endpoint = %address, error = %msg, "fan-out call failed");
                if !opts.partial_response {
                    return Err(FanoutError::Endpoint(msg));
                }
                out.warnings.push(msg);
            }
        }
    }
    Ok(out)
}

fn client(endpoint: &Endpoint) -> Result<StoreClient<tonic::transport::Channel>, EndpointError> {
    Ok(StoreClient::new(endpoint.channel()?).max_decoding_message_size(MAX_MESSAGE_BYTES))
}

/// A Series request, as the engine and the series API make them.
#[derive(Clone, Debug, Default)]
pub struct SeriesQuery {
    pub matchers: Vec<Matcher>,
    pub min_time: i64,
    pub max_time: i64,
    pub skip_chunks: bool,
    /// Passed through (`max_source_resolution`), for stores that downsample.
    pub max_resolution_window: i64,
    pub step: i64,
    pub range: i64,
    pub func: Option<String>,
    pub grouping: Option<(bool, Vec<String>)>,
    /// Replica labels the stores should leave out (sent when deduplicating, as Thanos' querier
    /// does): their answers then need no re-sorting, and the labels no bytes.
    pub without_replica_labels: Vec<String>,
    /// `SeriesRequest.aggregates`: what downsampled chunks should carry
    /// ([`crate::downsample::Aggregates::request`]).
    pub aggregates: Vec<i32>,
}

impl SeriesQuery {
    fn request(&self, partial: bool) -> SeriesRequest {
        let (disabled, strategy) = strategy(partial);
        SeriesRequest {
            min_time: self.min_time,
            max_time: self.max_time,
            matchers: proto_matchers(&self.matchers),
            max_resolution_window: self.max_resolution_window,
            aggregates: self.aggregates.clone(),
            partial_response_disabled: disabled,
            partial_response_strategy: strategy,
            skip_chunks: self.skip_chunks,
            without_replica_labels: self.without_replica_labels.clone(),
            response_batch_size: RESPONSE_BATCH_SIZE,
            step: self.step,
            range: self.range,
            query_hints: Some(proto::thanos::QueryHints {
                step_millis: self.step,
                func: self
                    .func
                    .as_ref()
                    .map(|f| proto::thanos::Func { name: f.clone() }),
                grouping: self
                    .grouping
                    .as_ref()
                    .map(|(by, labels)| proto::thanos::Grouping {
                        by: *by,
                        labels: labels.clone(),
                    }),
                range: (self.range > 0).then_some(proto::thanos::Range { millis: self.range }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// Streams the matching series from every endpoint that can have them.
pub async fn series(
    set: &EndpointSet,
    query: &SeriesQuery,
    opts: &FanoutOptions,
) -> Result<Gathered<Vec<RawSeries>>, FanoutError> {
    let confined;
    let query = match &opts.tenant {
        Some(t) => {
            confined = SeriesQuery {
                matchers: t.confine(&query.matchers),
                ..query.clone()
            };
            &confined
        }
        None => query,
    };
    let request = query.request(opts.partial_response);
    let tenant = opts.tenant.clone();
    gather(
        set,
        query.min_time,
        query.max_time,
        &query.matchers,
        opts,
        "Series",
        |endpoint| {
            let request = with_tenant(request.clone(), tenant.as_ref());
            async move {
                let mut client = client(&endpoint)?;
                let mut stream = client.series(request).await?.into_inner();
                let mut out: Vec<RawSeries> = Vec::new();
                let mut warnings = Vec::new();
                while let Some(msg) = stream.message().await? {
                    match msg.result {
                        Some(series_response::Result::Series(s)) => push_frame(&mut out, s),
                        Some(series_response::Result::Batch(b)) => {
                            for s in b.series {
                                push_frame(&mut out, s);
                            }
                        }
                        Some(series_response::Result::Warning(w)) => warnings.push(w),
                        Some(series_response::Result::Hints(_)) | None => {}
                    }
                }
                Ok((out, warnings))
            }
        },
    )
    .await
}

/// Label names of the matching series in `[start, end]` from every endpoint, merged and sorted.
pub async fn label_names(
    set: &EndpointSet,
    matchers: &[Matcher],
    start: i64,
    end: i64,
    opts: &FanoutOptions,
) -> Result<Gathered<Vec<String>>, FanoutError> {
    let confined = opts.tenant.as_ref().map(|t| t.confine(matchers));
    let matchers = confined.as_deref().unwrap_or(matchers);
    let (disabled, strategy) = strategy(opts.partial_response);
    let request = LabelNamesRequest {
        partial_response_disabled: disabled,
        partial_response_strategy: strategy,
        start,
        end,
        matchers: proto_matchers(matchers),
        ..Default::default()
    };
    gather(set, start, end, matchers, opts, "LabelNames", |endpoint| {
        let request = with_tenant(request.clone(), opts.tenant.as_ref());
        async move {
            let r = client(&endpoint)?.label_names(request).await?.into_inner();
            Ok((r.names, r.warnings))
        }
    })
    .await
}

/// Values of label `name` among the matching series in `[start, end]` from every endpoint.
pub async fn label_values(
    set: &EndpointSet,
    name: &str,
    matchers: &[Matcher],
    start: i64,
    end: i64,
    opts: &FanoutOptions,
) -> Result<Gathered<Vec<String>>, FanoutError> {
    let confined = opts.tenant.as_ref().map(|t| t.confine(matchers));
    let matchers = confined.as_deref().unwrap_or(matchers);
    let (disabled, strategy) = strategy(opts.partial_response);
    let request = LabelValuesRequest {
        label: name.to_string(),
        partial_response_disabled: disabled,
        partial_response_strategy: strategy,
        start,
        end,
        matchers: proto_matchers(matchers),
        ..Default::default()
    };
    gather(set, start, end, matchers, opts, "LabelValues", |endpoint| {
        let request = with_tenant(request.clone(), opts.tenant.as_ref());
        async move {
            let r = client(&endpoint)?.label_values(request).await?.into_inner();
            Ok((r.values, r.warnings))
        }
    })
    .await
}

/// Exemplars of the series `query`'s selectors match in `[start, end]` from every endpoint that
/// serves them (`thanos.Exemplars`).
pub async fn exemplars(
    set: &EndpointSet,
    query: &str,
    start: i64,
    end: i64,
    opts: &FanoutOptions,
) -> Result<Gathered<Vec<ExemplarData>>, FanoutError> {
    let (_, strategy) = strategy(opts.partial_response);
    let request = ExemplarsRequest {
        query: query.to_string(),
        start,
        end,
        partial_response_strategy: strategy,
    };
    let targets = set.exemplar_targets(start, end);
    gather_from(targets, opts, "Exemplars", |endpoint| {
        let request = with_tenant(request.clone(), opts.tenant.as_ref());
        async move {
            let mut client = ExemplarsClient::new(endpoint.channel()?)
                .max_decoding_message_size(MAX_MESSAGE_BYTES);
            let mut stream = client.exemplars(request).await?.into_inner();
            let (mut out, mut warnings) = (Vec::new(), Vec::new());
            while let Some(msg) = stream.message().await? {
                match msg.result {
                    Some(exemplars_response::Result::Data(d)) => out.push(d),
                    Some(exemplars_response::Result::Warning(w)) => warnings.push(w),
                    None => {}
                }
            }
            Ok((out, warnings))
        }
    })
    .await
}
