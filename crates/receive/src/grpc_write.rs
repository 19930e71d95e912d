//! `thanos.WriteableStore/RemoteWrite`: writes forwarded by other receivers (or sent by any
//! gRPC client). A request with a replica number is written locally and never forwarded
//! again; one without is routed like an HTTP write when this node has a hashring.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use proto::remote_write::{Label, Sample, TimeSeries, WriteRequest};
use proto::thanos::writeable_store_server::{WriteableStore, WriteableStoreServer};
use proto::thanos::{WriteRequest as ThanosWriteRequest, WriteResponse};
use tonic::{Request, Response, Status};

use crate::http::AppState;
use crate::replicate::ReplicaResult;
use crate::writer;

/// The service over a receiver's state.
#[derive(Clone)]
pub struct WriteService {
    state: Arc<AppState>,
}

impl WriteService {
    pub fn server(state: Arc<AppState>) -> WriteableStoreServer<WriteService> {
        // Forwarded batches and concatenated hints may exceed tonic's 4 MiB default.
        let limit = state.config.limits.max_decoded_bytes.max(64 << 20);
        WriteableStoreServer::new(WriteService { state }).max_decoding_message_size(limit)
    }
}

/// Borrows a decoded `prometheus.TimeSeries` list as the writer's request type.
fn borrow(series: &[proto::prometheus::TimeSeries]) -> WriteRequest<'_> {
    WriteRequest {
        timeseries: series
            .iter()
            .map(|ts| TimeSeries {
                labels: ts
                    .labels
                    .iter()
                    .map(|l| Label {
                        name: &l.name,
                        value: &l.value,
                    })
                    .collect(),
                samples: ts
                    .samples
                    .iter()
                    .map(|s| Sample {
                        value: s.value,
                        timestamp: s.timestamp,
                    })
                    .collect(),
                exemplars: Vec::new(),
                histograms: ts.histograms.len(),
                metadata: None,
            })
            .collect(),
        metadata: Vec::new(),
    }
}

impl WriteService {
    async fn write_tenant(
        &self,
        tenant: &str,
        replica: i64,
        series: &[proto::prometheus::TimeSeries],
    ) -> Result<(), Status> {
        let tenant = if tenant.is_empty() {
            self.state.config.default_tenant.as_str()
        } else {
            tenant
        };
        crate::tenants::validate_tenant(tenant)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if replica < 0 || replica as usize > self.state.config.replication.replication_factor.max(1)
        {
            return Err(Status::invalid_argument(format!(
                "replica {replica} is out of range for replication factor {}",
                self.state.config.replication.replication_factor
            )));
        }
        let limit = self.state.limits.for_tenant(tenant).head_series;
        if replica == 0 {
            if let Some(replicator) = &self.state.replicator {
                let req = borrow(series);
                let plan = replicator.plan(tenant, &req).map_err(Status::internal)?;
                let state = self.state.clone();
                let local = tokio::task::block_in_place(|| {
                    crate::http::write_local_share(&state, &plan, &req, limit)
                });
                drop(req);
                let answer = replicator.execute(plan, local).await;
                return match answer.status {
                    200..=299 => Ok(()),
                    409 => Err(Status::already_exists(answer.message)),
                    400 => Err(Status::invalid_argument(answer.message)),
                    429 => Err(Status::resource_exhausted(answer.message)),
                    _ => Err(Status::unavailable(answer.message)),
                };
            }
        }
        let state = self.state.clone();
        let outcome = tokio::task::block_in_place(|| {
            let db = state
                .tenants
                .get_or_open(tenant)
                .map_err(|e| Status::internal(e.to_string()))?;
            let req = borrow(series);
            let outcome = writer::write(&db, &req, limit);
            crate::http::record(&state, tenant, &outcome);
            Ok::<_, Status>(outcome)
        })?;
        ReplicaResult::to_status(&outcome)
    }
}

#[tonic::async_trait]
impl WriteableStore for WriteService {
    async fn remote_write(
        &self,
        request: Request<ThanosWriteRequest>,
    ) -> Result<Response<WriteResponse>, Status> {
        if !self.state.ready.load(Ordering::Acquire) {
            return Err(Status::unavailable("receiver is not ready"));
        }
        let r = request.into_inner();
        if r.timeseries_tenant_data.is_empty() {
            self.write_tenant(&r.tenant, r.replica, &r.timeseries)
                .await?;
        } else {
            for t in &r.timeseries_tenant_data {
                self.write_tenant(&t.tenant, r.replica, &t.timeseries)
                    .await?;
            }
        }
        Ok(Response::new(WriteResponse {}))
    }
}
