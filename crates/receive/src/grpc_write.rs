//! `thanos.WriteableStore/RemoteWrite`: writes forwarded by other receivers (or sent by any
//! gRPC client). A request with a replica number is written locally and never forwarded
//! again; one without is routed like an HTTP write when this node has a hashring.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use proto::remote_write::WriteRequest;
use tonic::body::Body;
use tonic::{Request, Response, Status};

use crate::error::{IngestError, StatusClass};
use crate::ingest::Receiver;
use crate::replicate::ReplicaResult;

/// The service over a receiver's state: `thanos.WriteableStore`, decoding requests without
/// copying label strings (a generated prost server would allocate one `String` per label).
#[derive(Clone)]
pub struct WriteService {
    receiver: Arc<Receiver>,
    max_message: usize,
}

impl WriteService {
    pub fn new(receiver: Arc<Receiver>) -> WriteService {
        // Forwarded batches and concatenated hints may exceed tonic's 4 MiB default.
        let max_message = receiver.config.limits.max_decoded_bytes.max(64 << 20);
        WriteService {
            receiver,
            max_message,
        }
    }
}

impl tonic::server::NamedService for WriteService {
    const NAME: &'static str = "thanos.WriteableStore";
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

struct RemoteWriteMethod(WriteService);

impl tonic::server::UnaryService<Bytes> for RemoteWriteMethod {
    type Response = ();
    type Future = BoxFuture<Response<()>, Status>;
    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let svc = self.0.clone();
        let hinted = request
            .metadata()
            .contains_key(crate::replicate::HINT_METADATA);
        Box::pin(async move {
            svc.remote_write(request.into_inner(), hinted)
                .await
                .map(Response::new)
        })
    }
}

impl tower_service::Service<http::Request<Body>> for WriteService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != crate::replicate::REMOTE_WRITE_PATH {
            return Box::pin(async move {
                let mut resp = http::Response::new(Body::default());
                resp.headers_mut().insert(
                    Status::GRPC_STATUS,
                    (tonic::Code::Unimplemented as i32).into(),
                );
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(resp)
            });
        }
        let method = RemoteWriteMethod(self.clone());
        let max = self.max_message;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(crate::grpc_codec::ServerCodec::default())
                .apply_max_message_size_config(Some(max), None);
            Ok(grpc.unary(method, req).await)
        })
    }
}

impl WriteService {
    async fn write_tenant(
        &self,
        tenant: &str,
        replica: i64,
        req: &WriteRequest<'_>,
        hinted: bool,
    ) -> Result<(), Status> {
        let receiver = &self.receiver;
        let tenant = if tenant.is_empty() {
            receiver.config.default_tenant.as_str()
        } else {
            tenant
        };
        crate::tenants::validate_tenant(tenant).map_err(|e| IngestError::from(e).to_status())?;
        let factor = receiver.config.replication.replication_factor;
        if replica < 0 || replica as usize > factor.max(1) {
            return Err(IngestError::ReplicaOutOfRange { replica, factor }.to_status());
        }
        if replica == 0 {
            if let Some(replicator) = &receiver.replicator {
                let (plan, local, _) = receiver
                    .route(tenant, req, None)
                    .map_err(|e| e.to_status())?;
                let local = local.map(|l| receiver.finish_replica(l));
                let answer = replicator.execute(plan, local).await;
                if answer.status < 300 {
                    return Ok(());
                }
                let class = match StatusClass::of_http(answer.status) {
                    // A quorum failure is the peers' unavailability, whatever the HTTP code.
                    StatusClass::Internal => StatusClass::Unavailable,
                    class => class,
                };
                return Err(Status::new(class.grpc(), answer.message));
            }
        }
        // Hinted handoff deliveries are late on purpose: they go wherever the head still
        // reaches, in or out of order.
        // Decoding is done; appending runs on this worker thread and the fsync is awaited, as
        // for remote write (see `http::handle`).
        let pending = receiver
            .write_local_deferred(tenant, req.timeseries.iter(), hinted)
            .map_err(|e| e.to_status())?;
        ReplicaResult::to_status(&receiver.finish(pending).await)
    }

    async fn remote_write(&self, body: Bytes, hinted: bool) -> Result<(), Status> {
        if !self.receiver.is_ready() {
            return Err(IngestError::NotReady.to_status());
        }
        let decoded = proto::remote_write::decode_thanos_write(&body)
            .map_err(|e| IngestError::ThanosProtobuf(e.to_string()).to_status())?;
        for (tenant, req) in &decoded.tenants {
            self.write_tenant(tenant, decoded.replica, req, hinted)
                .await?;
        }
        Ok(())
    }
}
