//! Fan-out: one StoreAPI request to every endpoint that can answer it, in parallel, with
//! partial-response handling.
//!
//! Each endpoint's call is bounded by the query's deadline and, when set, by
//! `--store.response-timeout`. An endpoint that fails, times out (its own timeout), is down, or
//! sends a warning becomes a warning of the response when partial responses are allowed (the
//! default), and fails the request otherwise (`partial_response=false`), as in Thanos. With
//! [`series`] an endpoint that fails contributes nothing; with [`series_streams`] (what the
//! engine reads) what it streamed before failing is used, as in Thanos. Reaching the query's
//! deadline fails the request either way.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use promql::{MatchType, Matcher};
use proto::thanos::exemplars_client::ExemplarsClient;
use proto::thanos::store_client::StoreClient;
use proto::thanos::{
    exemplars_response, label_matcher, series_response, ExemplarData, ExemplarsRequest,
    LabelMatcher, LabelNamesRequest, LabelValuesRequest, PartialResponseStrategy, SeriesRequest,
    SeriesResponse,
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
    /// A store that said it sorts its answer without the replica labels did not.
    #[error("answer not in label order: {0}")]
    Unsorted(String),
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
        let deadline = call_deadline(opts, started);
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

/// Adds a `Series` response's frames to `out` (joining a series split over frames, the labels
/// in `strip` left out) and its warning to `warnings`.
fn take_response(
    msg: SeriesResponse,
    strip: &[&str],
    out: &mut Vec<RawSeries>,
    warnings: &mut Vec<String>,
) {
    match msg.result {
        Some(series_response::Result::Series(s)) => push_frame(out, s, strip),
        Some(series_response::Result::Batch(b)) => {
            for s in b.series {
                push_frame(out, s, strip);
            }
        }
        Some(series_response::Result::Warning(w)) => warnings.push(w),
        Some(series_response::Result::Hints(_)) | None => {}
    }
}

/// `query` confined to the request's tenant, if it has one.
fn confined<'q>(query: &'q SeriesQuery, opts: &FanoutOptions) -> std::borrow::Cow<'q, SeriesQuery> {
    match &opts.tenant {
        Some(t) => std::borrow::Cow::Owned(SeriesQuery {
            matchers: t.confine(&query.matchers),
            ..query.clone()
        }),
        None => std::borrow::Cow::Borrowed(query),
    }
}

/// When a call to one endpoint, started at `started`, must be done: the query's deadline or
/// `--store.response-timeout` after the start, whichever comes first.
fn call_deadline(opts: &FanoutOptions, started: Instant) -> Option<Instant> {
    match (opts.deadline, opts.response_timeout) {
        (Some(d), Some(r)) => Some(d.min(started + r)),
        (Some(d), None) => Some(d),
        (None, Some(r)) => Some(started + r),
        (None, None) => None,
    }
}

/// Streams the matching series from every endpoint that can have them.
pub async fn series(
    set: &EndpointSet,
    query: &SeriesQuery,
    opts: &FanoutOptions,
) -> Result<Gathered<Vec<RawSeries>>, FanoutError> {
    let query = &confined(query, opts);
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
                    take_response(msg, &[], &mut out, &mut warnings);
                }
                Ok((out, warnings))
            }
        },
    )
    .await
}

/// What one endpoint's reader hands over during a streamed `Series` fan-out ([`series_streams`]).
#[derive(Debug)]
pub enum StreamPart {
    /// Series in label order (replica labels left out when de-duplicating), the frames of
    /// each joined.
    Series(Vec<RawSeries>),
    /// The stream ended; the store's warnings, each naming the endpoint.
    Done(Vec<String>),
    /// The call failed; the message names the endpoint.
    Failed(String),
}

/// One endpoint's `Series` answer as it streams in: a task on the runtime reads the gRPC stream
/// and passes on what it read, so that the reader of the parts can merge and evaluate series
/// while later ones are still on their way.
#[derive(Debug)]
pub struct SeriesStream {
    pub address: String,
    parts: tokio::sync::mpsc::UnboundedReceiver<StreamPart>,
}

impl SeriesStream {
    /// The next part, waiting for it (call from a thread that is not a runtime worker); `None`
    /// once the last part was read.
    pub fn blocking_next(&mut self) -> Option<StreamPart> {
        self.parts.blocking_recv()
    }

    /// The next part if one is there already.
    pub fn try_next(&mut self) -> Result<StreamPart, Pending> {
        match self.parts.try_recv() {
            Ok(p) => Ok(p),
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => Err(Pending::Waiting),
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => Err(Pending::Ended),
        }
    }
}

#[cfg(test)]
impl SeriesStream {
    /// A stream fed by hand.
    pub(crate) fn for_test(
        address: &str,
    ) -> (tokio::sync::mpsc::UnboundedSender<StreamPart>, SeriesStream) {
        let (tx, parts) = tokio::sync::mpsc::unbounded_channel();
        let address = address.to_string();
        (tx, SeriesStream { address, parts })
    }
}

/// Why [`SeriesStream::try_next`] has no part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    /// Not yet.
    Waiting,
    /// The reader is gone (after its last part).
    Ended,
}

/// Starts a streamed `Series` fan-out on `runtime`: one reader task per endpoint, each bounded
/// by the query's deadline and `--store.response-timeout` as [`series`] is. `strip`: replica
/// labels to leave out of every series (when de-duplicating); a store that does not say it
/// honours `without_replica_labels` has its whole answer sorted again once it is in, as Thanos'
/// querier does (its "eager" retrieval); one that says so is trusted to stream in label order,
/// and fails with an error saying so if it does not.
pub fn series_streams(
    set: &EndpointSet,
    query: &SeriesQuery,
    opts: &FanoutOptions,
    strip: &[String],
    runtime: &tokio::runtime::Handle,
) -> Vec<SeriesStream> {
    let query = &confined(query, opts);
    let request = query.request(opts.partial_response);
    let targets = set.targets(query.min_time, query.max_time, &query.matchers);
    let strip: Arc<[String]> = strip.into();
    targets
        .into_iter()
        .map(|t| {
            let (tx, parts) = tokio::sync::mpsc::unbounded_channel();
            let address = t.endpoint.address.clone();
            let request = with_tenant(request.clone(), opts.tenant.as_ref());
            let started = Instant::now();
            let deadline = call_deadline(opts, started);
            let strip = strip.clone();
            runtime.spawn(async move {
                let address = t.endpoint.address.clone();
                if let Some(down) = t.down {
                    let _ = tx.send(StreamPart::Failed(down));
                    return;
                }
                let names: Vec<&str> = strip.iter().map(String::as_str).collect();
                let mut reader = StreamReader {
                    names,
                    sorted: t.supports_without_replica_labels,
                    tx: &tx,
                    open: None,
                    held: Vec::new(),
                    last: None,
                    warnings: Vec::new(),
                };
                let read = read_series(&t.endpoint, request, &mut reader);
                let timed = async {
                    match deadline {
                        None => read.await,
                        Some(d) => match tokio::time::timeout_at(d.into(), read).await {
                            Ok(r) => r,
                            Err(_) => Err(CallError::NoAnswer {
                                seconds: started.elapsed().as_secs_f64(),
                            }),
                        },
                    }
                };
                // Nobody reads the parts any more (the query ended early, failed or was
                // cancelled): stop, dropping the call.
                let result = tokio::select! {
                    r = timed => r,
                    () = tx.closed() => return,
                };
                // What was read goes on however the read ended (as Thanos keeps what it
                // buffered from a store that failed).
                let finished = reader.finish();
                let result = result
                    .and(finished)
                    .map(|()| std::mem::take(&mut reader.warnings));
                let last = match result {
                    Ok(warnings) => StreamPart::Done(
                        warnings
                            .into_iter()
                            .map(|w| format!("endpoint {address}: {w}"))
                            .collect(),
                    ),
                    Err(e) => {
                        tracing::debug!(endpoint = %address, error = %e, "fan-out call failed");
                        StreamPart::Failed(format!("endpoint {address}: Series: {e}"))
                    }
                };
                let _ = tx.send(last);
            });
            SeriesStream { address, parts }
        })
        .collect()
}

/// One endpoint's reader in a streamed fan-out (see [`series_streams`]): what it read and has
/// not handed over yet.
struct StreamReader<'a> {
    /// Replica labels to leave out.
    names: Vec<&'a str>,
    /// The store is trusted to stream in label order (without the replica labels); otherwise
    /// its whole answer is held and sorted at the end.
    sorted: bool,
    tx: &'a tokio::sync::mpsc::UnboundedSender<StreamPart>,
    /// The last series read: its next frame may continue it.
    open: Option<RawSeries>,
    held: Vec<RawSeries>,
    /// The labels of the last series handed over (the order check).
    last: Option<tsdb::Labels>,
    /// The store's warnings.
    warnings: Vec<String>,
}

impl StreamReader<'_> {
    /// Takes one response in; false when nobody reads the parts any more.
    fn take(&mut self, msg: SeriesResponse) -> Result<bool, CallError> {
        let mut out: Vec<RawSeries> = self.open.take().into_iter().collect();
        take_response(msg, &self.names, &mut out, &mut self.warnings);
        self.open = out.pop();
        self.pass(out)
    }

    /// Hands `series` over (checking their order), or holds them; false when nobody reads.
    fn pass(&mut self, mut series: Vec<RawSeries>) -> Result<bool, CallError> {
        if !self.sorted {
            self.held.append(&mut series);
            return Ok(true);
        }
        let Some(tail) = series.last() else {
            return Ok(true);
        };
        // Each series against the one before it; only a batch's last is kept for the next.
        let mut prev = self.last.as_ref();
        for s in &series {
            if let Some(p) = prev.filter(|p| s.labels < **p) {
                return Err(CallError::Unsorted(format!(
                    "series {} came after {p}",
                    s.labels
                )));
            }
            prev = Some(&s.labels);
        }
        self.last = Some(tail.labels.clone());
        Ok(self.tx.send(StreamPart::Series(series)).is_ok())
    }

    /// Hands over what is left: the open series, and a held answer, sorted (stable: copies a
    /// store merged keep its order).
    fn finish(&mut self) -> Result<(), CallError> {
        let open = self.open.take().into_iter().collect();
        let checked = self.pass(open);
        let mut held = std::mem::take(&mut self.held);
        held.sort_by(|a, b| a.labels.cmp(&b.labels));
        if !held.is_empty() {
            let _ = self.tx.send(StreamPart::Series(held));
        }
        checked.map(|_| ())
    }
}

/// Reads one endpoint's `Series` stream into `reader`; stops early, dropping the call, when
/// nobody reads the parts any more.
async fn read_series(
    endpoint: &Endpoint,
    request: tonic::Request<SeriesRequest>,
    reader: &mut StreamReader<'_>,
) -> Result<(), CallError> {
    let mut stream = client(endpoint)?.series(request).await?.into_inner();
    while let Some(msg) = stream.message().await? {
        if !reader.take(msg)? {
            break;
        }
    }
    Ok(())
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
