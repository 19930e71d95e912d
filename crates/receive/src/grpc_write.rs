//! `thanos.WriteableStore/RemoteWrite`: writes forwarded by other receivers (or sent by any
//! gRPC client). A request with a replica number is written locally and never forwarded
//! again; one without is routed like an HTTP write when this node has a hashring.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use proto::remote_write::WriteRequest;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Request, Response, Status};

use crate::http::AppState;
use crate::replicate::ReplicaResult;
use crate::writer;

/// The service over a receiver's state: `thanos.WriteableStore`, decoding requests without
/// copying label strings (a generated prost server would allocate one `String` per label).
#[derive(Clone)]
pub struct WriteService {
    state: Arc<AppState>,
    max_message: usize,
}

impl WriteService {
    pub fn new(state: Arc<AppState>) -> WriteService {
        // Forwarded batches and concatenated hints may exceed tonic's 4 MiB default.
        let max_message = state.config.limits.max_decoded_bytes.max(64 << 20);
        WriteService { state, max_message }
    }
}

impl tonic::server::NamedService for WriteService {
    const NAME: &'static str = "thanos.WriteableStore";
}

/// Server codec: requests arrive as raw bytes, the response (`WriteResponse{}`) is empty.
#[derive(Clone, Copy, Default)]
struct RawServerCodec;
struct EmptyEncoder;
struct BytesDecoder;

impl Encoder for EmptyEncoder {
    type Item = ();
    type Error = Status;
    fn encode(&mut self, _: (), _: &mut EncodeBuf<'_>) -> Result<(), Status> {
        Ok(())
    }
}

impl Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

impl Codec for RawServerCodec {
    type Encode = ();
    type Decode = Bytes;
    type Encoder = EmptyEncoder;
    type Decoder = BytesDecoder;
    fn encoder(&mut self) -> EmptyEncoder {
        EmptyEncoder
    }
    fn decoder(&mut self) -> BytesDecoder {
        BytesDecoder
    }
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
            let mut grpc = tonic::server::Grpc::new(RawServerCodec)
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
                let plan = replicator
                    .plan(tenant, req, None)
                    .map_err(Status::internal)?;
                let state = self.state.clone();
                let local = tokio::task::block_in_place(|| {
                    crate::http::write_local_share(&state, &plan, req, limit)
                });
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
            // Hinted handoff deliveries are late on purpose: they go wherever the head still
            // reaches, in or out of order.
            let outcome = writer::write_series(&db, req.timeseries.iter(), limit, hinted);
            crate::http::record(&state, tenant, &outcome);
            Ok::<_, Status>(outcome)
        })?;
        ReplicaResult::to_status(&outcome)
    }

    async fn remote_write(&self, body: Bytes, hinted: bool) -> Result<(), Status> {
        if !self.state.ready.load(Ordering::Acquire) {
            return Err(Status::unavailable("receiver is not ready"));
        }
        let decoded = proto::remote_write::decode_thanos_write(&body)
            .map_err(|e| Status::invalid_argument(format!("invalid thanos.WriteRequest: {e}")))?;
        for (tenant, req) in &decoded.tenants {
            self.write_tenant(tenant, decoded.replica, req, hinted)
                .await?;
        }
        Ok(())
    }
}
