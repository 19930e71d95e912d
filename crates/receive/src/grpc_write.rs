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
use crate::ingest::{LocalReplica, PendingWrite, Receiver};
use crate::replicate::{Plan, ReplicaResult};

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

/// A tenant's share of a forwarded write, under way.
enum Started {
    /// Written here; its fsync is awaited.
    Local(PendingWrite),
    /// Not replicated yet (replica 0, a router that does not replicate): routed like a remote
    /// write.
    Routed(Plan, Option<LocalReplica>),
}

impl WriteService {
    /// Checks and starts one tenant's write: everything that reads the decoded request.
    fn start_tenant(
        &self,
        tenant: &str,
        replica: i64,
        req: &WriteRequest<'_>,
        hinted: bool,
    ) -> Result<Started, Status> {
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
        if replica == 0 && receiver.replicator.is_some() {
            let (plan, local, _) = receiver
                .route(tenant, req, None)
                .map_err(|e| e.to_status())?;
            return Ok(Started::Routed(plan, local));
        }
        // Hinted handoff deliveries are late on purpose: they go wherever the head still
        // reaches, in or out of order.
        // Decoding is done; appending runs on this worker thread and the fsync is awaited, as
        // for remote write (see `http::handle`).
        receiver
            .write_local_deferred(tenant, req.timeseries.iter(), hinted)
            .map(Started::Local)
            .map_err(|e| e.to_status())
    }

    /// Waits for a started write: its fsync, or its replicas' quorum.
    async fn finish_tenant(&self, started: Started) -> Result<(), Status> {
        let receiver = &self.receiver;
        match started {
            Started::Local(pending) => ReplicaResult::to_status(&receiver.finish(pending).await),
            Started::Routed(plan, local) => {
                let replicator = receiver
                    .replicator
                    .as_ref()
                    .expect("routed only with a hashring");
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
                Err(Status::new(class.grpc(), answer.message))
            }
        }
    }

    async fn remote_write(&self, body: Bytes, hinted: bool) -> Result<(), Status> {
        if !self.receiver.is_ready() {
            return Err(IngestError::NotReady.to_status());
        }
        let decoded = proto::remote_write::decode_thanos_write(&body)
            .map_err(|e| IngestError::ThanosProtobuf(e.to_string()).to_status())?;
        let mut started = Vec::with_capacity(decoded.tenants.len());
        for (tenant, req) in &decoded.tenants {
            match self.start_tenant(tenant, decoded.replica, req, hinted) {
                Ok(s) => started.push(Ok(s)),
                Err(e) => {
                    // The tenants before still finish (their samples are in the head).
                    started.push(Err(e));
                    break;
                }
            }
        }
        // The decoded series are freed on the thread that allocated them, before the wait
        // (which may resume on another worker).
        drop(decoded);
        drop(body);
        // Every started write is seen through; the first error is the answer.
        let mut result = Ok(());
        for s in started {
            let r = match s {
                Ok(s) => self.finish_tenant(s).await,
                Err(e) => Err(e),
            };
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::remote_write::{Label, Sample, TimeSeries};

    fn service(dir: &std::path::Path) -> WriteService {
        let config = crate::ReceiveConfig {
            tsdb_path: dir.join("data"),
            ..Default::default()
        };
        std::fs::create_dir_all(&config.tsdb_path).unwrap();
        let receiver = Receiver::new(config).unwrap();
        receiver.set_ready(true);
        WriteService::new(receiver)
    }

    /// A receiver that is `endpoints[0]` of a hashring of `endpoints`, with replication
    /// factor `rf` and no hinted handoff.
    fn pool_member(dir: &std::path::Path, endpoints: &[&str], rf: usize) -> WriteService {
        let ring = dir.join("hashrings.json");
        let list: Vec<String> = endpoints.iter().map(|e| format!("{e:?}")).collect();
        std::fs::write(
            &ring,
            format!(r#"[{{"endpoints": [{}]}}]"#, list.join(", ")),
        )
        .unwrap();
        let mut config = crate::ReceiveConfig {
            tsdb_path: dir.join("data"),
            hashrings_file: Some(ring),
            ..Default::default()
        };
        config.replication.local_endpoint = Some(endpoints[0].to_string());
        config.replication.replication_factor = rf;
        config.replication.hints_window = std::time::Duration::ZERO;
        config.replication.forward_timeout = std::time::Duration::from_secs(2);
        std::fs::create_dir_all(&config.tsdb_path).unwrap();
        let receiver = Receiver::new(config).unwrap();
        receiver.set_ready(true);
        WriteService::new(receiver)
    }

    fn series(name: &str) -> TimeSeries<'_> {
        TimeSeries {
            labels: vec![Label {
                name: "__name__",
                value: name,
            }],
            samples: vec![Sample {
                value: 1.0,
                timestamp: 1_000,
            }],
            ..TimeSeries::default()
        }
    }

    /// A `thanos.WriteRequest` with `main`'s series under `tenant`, and a
    /// `timeseriesTenantData` entry (field 4: series, tenant) per element of `others`.
    fn message(tenant: &str, replica: u64, main: &[&str], others: &[(&str, &str)]) -> Bytes {
        let main: Vec<TimeSeries<'_>> = main.iter().map(|n| series(n)).collect();
        let mut out = proto::remote_write::encode_thanos_write(tenant, replica, &main);
        for (t, name) in others {
            let entry = proto::remote_write::encode_thanos_write(t, 0, &[series(name)]);
            assert!(entry.len() < 128, "one-byte length");
            out.extend_from_slice(&[4 << 3 | 2, entry.len() as u8]);
            out.extend_from_slice(&entry);
        }
        Bytes::from(out)
    }

    fn head_series(s: &WriteService, tenant: &str) -> usize {
        s.receiver
            .tenants
            .get(tenant)
            .map_or(0, |db| db.head().num_series())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_tenant_of_a_forwarded_message_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let body = message("a", 1, &["x", "y"], &[("b", "z")]);
        s.remote_write(body, false).await.unwrap();
        assert_eq!((head_series(&s, "a"), head_series(&s, "b")), (2, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_tenant_fails_the_message_after_the_tenants_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let body = message("a", 1, &["x"], &[("../b", "y"), ("c", "z")]);
        let err = s.remote_write(body, false).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert_eq!(head_series(&s, "a"), 1);
        assert_eq!(head_series(&s, "c"), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_not_replicated_yet_is_routed_by_the_hashring() {
        // Replica 0 (a router that does not replicate sent it): this node replicates it to
        // its ring. Alone in its ring it owns every series.
        let dir = tempfile::tempdir().unwrap();
        let s = pool_member(dir.path(), &["127.0.0.1:1"], 1);
        s.remote_write(message("a", 0, &["x", "y"], &[]), false)
            .await
            .unwrap();
        assert_eq!(head_series(&s, "a"), 2);
        // With a second owner that refuses connections, RF=2 cannot reach quorum: the write
        // was routed, not only written here.
        let dir = tempfile::tempdir().unwrap();
        let s = pool_member(dir.path(), &["127.0.0.1:1", "127.0.0.1:2"], 2);
        let err = s
            .remote_write(message("a", 0, &["x"], &[]), false)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        assert!(err.message().contains("quorum"), "{err:?}");
        // A replicated write (replica 1) is this node's alone to store.
        s.remote_write(message("a", 1, &["z"], &[]), false)
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_number_above_the_factor_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let err = s
            .remote_write(message("a", 2, &["x"], &[]), false)
            .await
            .unwrap_err();
        assert!(err.message().contains("replica"), "{err:?}");
        assert_eq!(head_series(&s, "a"), 0);
    }
}
