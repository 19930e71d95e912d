//! `thanos.Store` and `thanos.info.Info` over a [`BucketStore`] (component type "store").

use std::sync::Arc;

use proto::thanos::info::info_server::{Info, InfoServer};
use proto::thanos::info::{InfoRequest, InfoResponse, StoreInfo, TsdbInfo};
use proto::thanos::store_server::{Store, StoreServer};
use proto::thanos::{
    LabelNamesRequest, LabelNamesResponse, LabelValuesRequest, LabelValuesResponse, SeriesRequest,
    SeriesResponse,
};
use tonic::{Request, Response, Status};

use super::store::BucketStore;
use crate::matchers::convert_matchers;
use crate::service::{label_set, non_negative};

/// The component type a store gateway reports in Info.
pub const COMPONENT_STORE: &str = "store";

/// The gRPC services of a bucket store. Cheap to clone.
#[derive(Clone)]
pub struct BucketStoreService(pub Arc<BucketStore>);

impl BucketStoreService {
    pub fn store_server(&self) -> StoreServer<Self> {
        StoreServer::new(self.clone())
    }

    pub fn info_server(&self) -> InfoServer<Self> {
        InfoServer::new(self.clone())
    }

    /// What Info answers: the served blocks' external label sets and time range.
    pub fn info_response(&self) -> InfoResponse {
        let (sets, min_time, max_time) = self.0.info();
        InfoResponse {
            label_sets: sets.iter().map(label_set).collect(),
            component_type: COMPONENT_STORE.to_string(),
            store: Some(StoreInfo {
                min_time,
                max_time,
                supports_sharding: false,
                supports_without_replica_labels: true,
                tsdb_infos: Vec::<TsdbInfo>::new(),
                supports_projections: false,
            }),
            ..Default::default()
        }
    }
}

#[tonic::async_trait]
impl Store for BucketStoreService {
    type SeriesStream = tokio_stream::wrappers::ReceiverStream<Result<SeriesResponse, Status>>;

    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        let request =
            crate::tenancy::confined(request, crate::tenancy::DEFAULT_TENANT_LABEL, |r| {
                &mut r.matchers
            });
        let rx = self.0.series(request).await?;
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn label_names(
        &self,
        request: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        let r = crate::tenancy::confined(request, crate::tenancy::DEFAULT_TENANT_LABEL, |r| {
            &mut r.matchers
        });
        let matchers = convert_matchers(&r.matchers)?;
        let (names, warnings) = self
            .0
            .label_names(
                &matchers,
                r.start,
                r.end,
                &r.without_replica_labels,
                non_negative(r.limit),
            )
            .await?;
        Ok(Response::new(LabelNamesResponse {
            names,
            warnings,
            ..Default::default()
        }))
    }

    async fn label_values(
        &self,
        request: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        let r = crate::tenancy::confined(request, crate::tenancy::DEFAULT_TENANT_LABEL, |r| {
            &mut r.matchers
        });
        if r.label.is_empty() {
            return Err(Status::invalid_argument(
                "label name parameter cannot be empty",
            ));
        }
        if r.without_replica_labels.contains(&r.label) {
            return Ok(Response::new(LabelValuesResponse::default()));
        }
        let matchers = convert_matchers(&r.matchers)?;
        let (values, warnings) = self
            .0
            .label_values(&r.label, &matchers, r.start, r.end, non_negative(r.limit))
            .await?;
        Ok(Response::new(LabelValuesResponse {
            values,
            warnings,
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl Info for BucketStoreService {
    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        Ok(Response::new(self.info_response()))
    }
}
