//! The tonic services: `thanos.Store` and `thanos.info.Info`.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use proto::thanos::exemplars_server::ExemplarsServer;
use proto::thanos::info::info_server::{Info, InfoServer};
use proto::thanos::info::{ExemplarsInfo, InfoRequest, InfoResponse, StoreInfo, TsdbInfo};
use proto::thanos::store_server::{Store, StoreServer};
use proto::thanos::{
    LabelNamesRequest, LabelNamesResponse, LabelValuesRequest, LabelValuesResponse, SeriesRequest,
    ZLabelSet,
};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::matchers::convert_matchers;
use crate::query::{self, Responses, SeriesQuery};
use crate::{time_range, ExternalLabels, TsdbSource};

/// The component type a receiver reports in Info.
pub const COMPONENT_RECEIVE: &str = "receive";

/// The StoreAPI and Info services over the TSDBs of a [`TsdbSource`]. Cheap to clone.
pub struct TsdbStore<S> {
    source: Arc<S>,
    /// Whether Info advertises the exemplars service (the TSDBs keep exemplars).
    exemplars: bool,
    component_type: Arc<str>,
    /// The label a tenant named in a request's metadata is matched on ([`crate::tenancy`]).
    tenant_label: Arc<str>,
}

impl<S> Clone for TsdbStore<S> {
    fn clone(&self) -> Self {
        TsdbStore {
            source: self.source.clone(),
            exemplars: self.exemplars,
            component_type: self.component_type.clone(),
            tenant_label: self.tenant_label.clone(),
        }
    }
}

/// Runs blocking TSDB work off the async threads; a panic there is an internal error.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("{what} failed: {e}")))?
}

pub(crate) fn non_negative(limit: i64) -> usize {
    usize::try_from(limit).unwrap_or(0)
}

pub(crate) fn label_set_of(labels: &tsdb::Labels) -> ZLabelSet {
    ZLabelSet {
        labels: query::proto_labels(labels),
    }
}

pub(crate) fn label_set(external: &ExternalLabels) -> ZLabelSet {
    ZLabelSet {
        labels: external
            .iter()
            .map(|(k, v)| proto::thanos::Label {
                name: k.clone(),
                value: v.clone(),
            })
            .collect(),
    }
}

impl<S: TsdbSource> TsdbStore<S> {
    /// Serves `source`'s TSDBs, reporting component type "receive".
    pub fn new(source: S) -> Self {
        TsdbStore {
            source: Arc::new(source),
            exemplars: false,
            component_type: COMPONENT_RECEIVE.into(),
            tenant_label: crate::tenancy::DEFAULT_TENANT_LABEL.into(),
        }
    }

    /// Sets the label a request's tenant is matched on (`--receive.tenant-label-name`).
    pub fn with_tenant_label(mut self, label: &str) -> Self {
        self.tenant_label = label.into();
        self
    }

    /// Sets the component type Info reports ("receive", "store", "sidecar", ...).
    pub fn with_component_type(mut self, component_type: &str) -> Self {
        self.component_type = component_type.into();
        self
    }

    /// Advertises the exemplars service in Info (when the TSDBs keep exemplars).
    pub fn with_exemplars(mut self, on: bool) -> Self {
        self.exemplars = on;
        self
    }

    pub(crate) fn source(&self) -> &S {
        &self.source
    }

    pub(crate) fn tenant_label(&self) -> &str {
        &self.tenant_label
    }

    /// The `thanos.Exemplars` service, to add to a tonic server.
    pub fn exemplars_server(&self) -> ExemplarsServer<Self> {
        ExemplarsServer::new(self.clone())
    }

    /// The `thanos.Store` service, to add to a tonic server.
    pub fn store_server(&self) -> StoreServer<Self> {
        StoreServer::new(self.clone())
    }

    /// The `thanos.info.Info` service, to add to a tonic server.
    pub fn info_server(&self) -> InfoServer<Self> {
        InfoServer::new(self.clone())
    }

    /// What Info answers: each TSDB's external labels and time range, and the overall range
    /// (`i64::MIN..i64::MAX` when there are no TSDBs, as Thanos reports).
    pub fn info_response(&self) -> InfoResponse {
        let tsdbs = self.source.tsdbs();
        let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
        let mut label_sets = Vec::new();
        let mut tsdb_infos = Vec::new();
        for (external, db) in &tsdbs {
            let (lo, hi) = time_range(db);
            min_time = min_time.min(lo);
            max_time = max_time.max(hi);
            if !external.is_empty() {
                label_sets.push(label_set(external));
                tsdb_infos.push(TsdbInfo {
                    labels: Some(label_set(external)),
                    min_time: lo,
                    max_time: hi,
                });
            }
        }
        if tsdbs.is_empty() {
            (min_time, max_time) = (i64::MIN, i64::MAX);
        }
        InfoResponse {
            label_sets,
            component_type: self.component_type.to_string(),
            store: Some(StoreInfo {
                min_time,
                max_time,
                supports_sharding: false,
                supports_without_replica_labels: true,
                tsdb_infos,
                supports_projections: false,
            }),
            exemplars: self.exemplars.then_some(ExemplarsInfo {
                min_time: i64::MIN,
                max_time: i64::MAX,
            }),
            ..Default::default()
        }
    }

    /// Serves both services on `listener` until `shutdown` completes, then waits for open
    /// requests to finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        tonic::transport::Server::builder()
            .add_service(self.store_server())
            .add_service(self.info_server())
            .add_service(self.exemplars_server())
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    }
}

#[tonic::async_trait]
impl<S: TsdbSource> Store for TsdbStore<S> {
    type SeriesStream = tokio_stream::Iter<Responses>;

    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        let r = crate::tenancy::confined(request, &self.tenant_label, |r| &mut r.matchers);
        if r.matchers.is_empty() {
            return Err(Status::invalid_argument("no matchers specified"));
        }
        let query = SeriesQuery {
            matchers: convert_matchers(&r.matchers)?,
            min_time: r.min_time,
            max_time: r.max_time,
            skip_chunks: r.skip_chunks,
            without: r.without_replica_labels,
            limit: non_negative(r.limit),
        };
        let batch_size = non_negative(r.response_batch_size);
        let aggregates = r.aggregates;
        let source = self.source.clone();
        let started = Instant::now();
        let (series, streamed) =
            blocking("Series", move || query::select(&source.tsdbs(), &query)).await?;
        tracing::debug!(
            streamed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "StoreAPI Series: selected"
        );
        // The stream reads each series' chunks when tonic polls it for the next response, that
        // is as fast as the client takes them (HTTP/2 flow control): a response is at most
        // about 1 MiB of work, short enough for an async worker, and no thread hand-off per
        // response.
        Ok(Response::new(tokio_stream::iter(Responses::streaming(
            series, batch_size, aggregates,
        ))))
    }

    async fn label_names(
        &self,
        request: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        let r = crate::tenancy::confined(request, &self.tenant_label, |r| &mut r.matchers);
        let matchers = convert_matchers(&r.matchers)?;
        let source = self.source.clone();
        let names = blocking("LabelNames", move || {
            query::label_names(
                &source.tsdbs(),
                &matchers,
                r.start,
                r.end,
                &r.without_replica_labels,
                non_negative(r.limit),
            )
        })
        .await?;
        Ok(Response::new(LabelNamesResponse {
            names,
            ..Default::default()
        }))
    }

    async fn label_values(
        &self,
        request: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        let r = crate::tenancy::confined(request, &self.tenant_label, |r| &mut r.matchers);
        if r.label.is_empty() {
            return Err(Status::invalid_argument(
                "label name parameter cannot be empty",
            ));
        }
        if r.without_replica_labels.contains(&r.label) {
            return Ok(Response::new(LabelValuesResponse::default()));
        }
        let matchers = convert_matchers(&r.matchers)?;
        let source = self.source.clone();
        let values = blocking("LabelValues", move || {
            query::label_values(
                &source.tsdbs(),
                &r.label,
                &matchers,
                r.start,
                r.end,
                non_negative(r.limit),
            )
        })
        .await?;
        Ok(Response::new(LabelValuesResponse {
            values,
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl<S: TsdbSource> Info for TsdbStore<S> {
    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let store = self.clone();
        let resp = blocking("Info", move || Ok(store.info_response())).await?;
        Ok(Response::new(resp))
    }
}
