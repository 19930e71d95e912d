//! `cairn.status.v1.Status/Node`: this receiver's view of itself and of the pool, for the query
//! layer's cluster page. Served on the gRPC port, so `cairn query` reaches it through the
//! endpoints it already queries, with no extra configuration.
//!
//! Everything it reports is already kept for the metrics (head series, hint queues, the
//! replication counters, the hashrings watcher's gauges, the TSDB volume) or kept on the side
//! for it (each peer's last answered and last failed write, the last shipper pass per tenant):
//! answering costs no I/O but one `statvfs`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use pb::status_server::{Status, StatusServer};
use proto::cairn::status::v1 as pb;
use tonic::{Request, Response};

use crate::ingest::Receiver;

fn unix_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The service over a receiver.
#[derive(Clone)]
pub struct StatusService {
    receiver: Arc<Receiver>,
}

impl StatusService {
    pub fn new(receiver: Arc<Receiver>) -> StatusService {
        StatusService { receiver }
    }

    pub fn server(self) -> StatusServer<StatusService> {
        StatusServer::new(self)
    }
}

#[tonic::async_trait]
impl Status for StatusService {
    async fn node(
        &self,
        _: Request<pb::NodeRequest>,
    ) -> Result<Response<pb::NodeResponse>, tonic::Status> {
        let receiver = self.receiver.clone();
        // statvfs and the head locks: off the async threads.
        let node = tokio::task::spawn_blocking(move || node_status(&receiver))
            .await
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        Ok(Response::new(node))
    }
}

/// What the receiver reports now.
pub fn node_status(receiver: &Receiver) -> pb::NodeResponse {
    let now = SystemTime::now();
    let now_ms = unix_millis(now);
    let mut out = pb::NodeResponse {
        local_endpoint: receiver
            .config
            .replication
            .local_endpoint
            .clone()
            .unwrap_or_default(),
        now_unix_millis: now_ms,
        ..Default::default()
    };
    for (tenant, db) in receiver.tenants.all() {
        let n = db.head().num_series() as u64;
        out.head_series += n;
        out.tenants.push(pb::TenantHead {
            tenant,
            head_series: n,
        });
    }
    if let Some(r) = &receiver.replicator {
        let rings = r.rings.get();
        out.replication_factor = rings.replication_factor() as u32;
        // Skew as the watcher computed it when it applied the file (not recomputed per call).
        let gauges = receiver
            .hashring_status
            .as_ref()
            .map(|s| s.snapshot().hashrings)
            .unwrap_or_default();
        for ring in rings.rings() {
            out.hashrings.push(pb::Hashring {
                name: ring.name.clone(),
                endpoints: ring
                    .ring
                    .endpoints()
                    .iter()
                    .map(|e| e.address.clone())
                    .collect(),
                tenants: ring.tenants.clone(),
                skew: gauges
                    .iter()
                    .find(|g| g.name == ring.name)
                    .map_or(0.0, |g| g.skew),
            });
        }
        for endpoint in r.peer_endpoints() {
            let mut peer = pb::Peer {
                endpoint: endpoint.clone(),
                ..Default::default()
            };
            if let Some(q) = r.handoff.as_ref().and_then(|h| h.get(&endpoint)) {
                let s = q.stats();
                peer.hints_pending = s.pending;
                peer.hints_pending_bytes = s.pending_bytes;
                peer.hints_oldest_age_seconds =
                    s.oldest_millis.map_or(0, |t| (now_ms - t).max(0) / 1000);
            }
            let contact = r.peer_contact(&endpoint);
            peer.last_success_unix_millis = contact.last_success.map_or(0, unix_millis);
            if let Some((t, why)) = contact.last_error {
                peer.last_error_unix_millis = unix_millis(t);
                peer.last_error = why;
            }
            out.peers.push(peer);
        }
        let count = |result: &str| {
            r.metrics
                .replications
                .get_or_create(&vec![("result".into(), result.into())])
                .get()
        };
        out.replication = Some(pb::Replication {
            success: count("success"),
            error: count("error"),
        });
    }
    let mut shipper = pb::Shipper {
        enabled: receiver.config.objstore.is_some(),
        ..Default::default()
    };
    for stats in receiver.shipper_backlog.lock().unwrap().values() {
        shipper.pending_blocks += stats.pending as u64;
        shipper.pending_bytes += stats.pending_bytes;
        let age = stats.oldest_pending_max_time.map_or(0, |ms| ms / 1000);
        shipper.oldest_pending_age_seconds = shipper.oldest_pending_age_seconds.max(age);
        if let Some(e) = &stats.failed {
            shipper.last_error = e.clone();
        }
    }
    out.shipper = Some(shipper);
    if let Ok(st) = rustix::fs::statvfs(receiver.tenants.root()) {
        out.volume = Some(pb::Volume {
            size_bytes: st.f_blocks * st.f_frsize,
            available_bytes: st.f_bavail * st.f_frsize,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_reports_its_rings_peers_and_volume() {
        let dir = tempfile::tempdir().unwrap();
        let ring = dir.path().join("hashrings.json");
        std::fs::write(
            &ring,
            r#"[{"hashring": "default", "endpoints": ["a:1", "b:1", "c:1"]}]"#,
        )
        .unwrap();
        let mut config = crate::ReceiveConfig {
            tsdb_path: dir.path().join("data"),
            hashrings_file: Some(ring),
            ..Default::default()
        };
        config.replication.local_endpoint = Some("a:1".into());
        config.replication.replication_factor = 3;
        std::fs::create_dir_all(&config.tsdb_path).unwrap();
        let receiver = Receiver::new(config).unwrap();
        receiver.shipper_backlog.lock().unwrap().insert(
            "t".into(),
            objstore::shipper::SyncStats {
                pending: 2,
                pending_bytes: 100,
                oldest_pending_max_time: Some(90_000),
                failed: Some("bucket down".into()),
                ..Default::default()
            },
        );
        let node = node_status(&receiver);
        assert_eq!(node.local_endpoint, "a:1");
        assert_eq!(node.replication_factor, 3);
        assert_eq!(node.hashrings.len(), 1);
        assert_eq!(node.hashrings[0].endpoints, ["a:1", "b:1", "c:1"]);
        assert!(node.hashrings[0].skew >= 1.0, "{:?}", node.hashrings);
        let peers: Vec<&str> = node.peers.iter().map(|p| p.endpoint.as_str()).collect();
        assert_eq!(peers, ["b:1", "c:1"]);
        assert!(node.peers.iter().all(|p| p.hints_pending == 0
            && p.last_success_unix_millis == 0
            && p.last_error.is_empty()));
        assert_eq!(node.replication, Some(pb::Replication::default()));
        let shipper = node.shipper.unwrap();
        assert_eq!(
            (
                shipper.pending_blocks,
                shipper.pending_bytes,
                shipper.oldest_pending_age_seconds
            ),
            (2, 100, 90)
        );
        assert_eq!(shipper.last_error, "bucket down");
        assert!(node.volume.unwrap().size_bytes > 0);
    }
}
