//! Routing and replication: each series goes to the `replication_factor` endpoints that own it
//! on the tenant's hashring; this node writes its own share and forwards the rest in parallel
//! over gRPC `thanos.WriteableStore/RemoteWrite` (snappy-compressed, with a replica number so
//! the peer writes locally and never forwards again).
//!
//! A write is acknowledged once every series has reached quorum (`floor(RF/2)+1` owners that
//! wrote it), so a slow replica does not delay the answer; its forward goes on in the
//! background. The answer is classed per series, as Thanos does: a series short of quorum
//! because replicas failed -> 503 (the client retries); because replicas refused it -> the most
//! severe refusal (409 conflicts, 400, 429); every series at quorum -> 204, even if a minority
//! refused. A minority that answered 409 while the write succeeded is a replica the write
//! reached out of order (another router's newer forward got there first): it is sent the
//! batch again through hinted handoff, whose deliveries are written late, so replicas converge.
//!
//! A forward that fails is retried with backoff for that peer; with hinted handoff on, it is
//! queued on disk and delivered when the peer answers again ([`crate::handoff`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use proto::remote_write::{TimeSeries, WriteRequest};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::error::RouteError;
use crate::grpc_snappy::{compressed_frame, Precompressed, SnappyChannel};
use crate::handoff::{Handoff, HintQueue};
use crate::hashring::SharedHashrings;
use crate::writer::{Severity, WriteOutcome};

use crate::metrics::MetricLabels;

/// The gRPC method of receiver-to-receiver writes.
pub const REMOTE_WRITE_PATH: &str = "/thanos.WriteableStore/RemoteWrite";

/// gRPC metadata marking a hinted handoff delivery: the samples are late on purpose, so the
/// receiving Cairn inserts them out of order anywhere its head still reaches (other receivers
/// ignore the header).
pub const HINT_METADATA: &str = "cairn-hinted-handoff";

/// How one replica's share of a request went.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplicaResult {
    /// Stored.
    Ok,
    /// Processed, with some samples refused for a reason a retry cannot fix (409/400/429).
    Rejected(Severity, String),
    /// Not stored: the peer is down, slow, failing, or storage failed.
    Unavailable(String),
}

impl ReplicaResult {
    /// The result of a local write.
    pub fn of_outcome(out: &WriteOutcome) -> ReplicaResult {
        match &out.error {
            None => ReplicaResult::Ok,
            Some((Severity::Internal, m)) => ReplicaResult::Unavailable(m.clone()),
            Some((s, _)) => ReplicaResult::Rejected(*s, out.message()),
        }
    }

    /// A peer's gRPC status, classed as Thanos' receivers class them.
    pub fn of_status(status: &Status) -> ReplicaResult {
        let msg = status.message().to_string();
        match status.code() {
            Code::Ok => ReplicaResult::Ok,
            Code::AlreadyExists => ReplicaResult::Rejected(Severity::Conflict, msg),
            Code::InvalidArgument => ReplicaResult::Rejected(Severity::BadRequest, msg),
            Code::ResourceExhausted => ReplicaResult::Rejected(Severity::TooManyRequests, msg),
            _ => ReplicaResult::Unavailable(format!("{:?}: {msg}", status.code())),
        }
    }

    /// The gRPC status a receiver answers a forwarded write with.
    pub fn to_status(out: &WriteOutcome) -> Result<(), Status> {
        match &out.error {
            None => Ok(()),
            Some((Severity::Conflict, _)) => Err(Status::already_exists(out.message())),
            Some((Severity::BadRequest, _)) => Err(Status::invalid_argument(out.message())),
            Some((Severity::TooManyRequests, _)) => Err(Status::resource_exhausted(out.message())),
            Some((Severity::Internal, _)) => Err(Status::internal(out.message())),
            Some((Severity::Unavailable, _)) => Err(Status::unavailable(out.message())),
        }
    }

    fn is_conflict(&self) -> bool {
        matches!(self, ReplicaResult::Rejected(Severity::Conflict, _))
    }

    fn label(&self) -> &'static str {
        match self {
            ReplicaResult::Ok => "success",
            ReplicaResult::Rejected(..) => "rejected",
            ReplicaResult::Unavailable(_) => "error",
        }
    }
}

/// Backoff of a failing peer: 200 ms doubling up to 10 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << failures.min(6).saturating_sub(1)))
        .min(Duration::from_secs(10))
}

#[derive(Debug, Default)]
struct Health {
    failures: u32,
    retry_at: Option<Instant>,
    /// For the status service: when the peer last answered a write, and last did not (why).
    last_success: Option<SystemTime>,
    last_error: Option<(SystemTime, String)>,
}

/// How writes to a peer went lately, as [`Replicator::peer_contact`] reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerContact {
    pub last_success: Option<SystemTime>,
    pub last_error: Option<(SystemTime, String)>,
}

/// Another receiver.
pub struct Peer {
    pub address: String,
    /// Whether messages are snappy-compressed.
    compress: bool,
    tls: Option<Arc<tls::ClientTls>>,
    channel: Mutex<Channel>,
    health: Mutex<Health>,
}

impl Peer {
    fn new(
        address: &str,
        tls: Option<&Arc<tls::ClientTls>>,
        compress: bool,
    ) -> Result<Peer, RouteError> {
        Ok(Peer {
            address: address.to_string(),
            compress,
            channel: Mutex::new(Self::channel(address, tls)?),
            tls: tls.cloned(),
            health: Mutex::new(Health::default()),
        })
    }

    fn channel(address: &str, tls: Option<&Arc<tls::ClientTls>>) -> Result<Channel, RouteError> {
        // Keepalive pings find a connection that a partition killed (its packets dropped, so
        // TCP alone would retransmit for minutes) and let the channel dial a new one. Peers
        // are Cairn receivers, whose servers accept pings this often.
        tls::lazy_channel(address, tls, |e| {
            e.connect_timeout(Duration::from_secs(2))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5))
                .keep_alive_while_idle(true)
        })
        .map_err(|e| RouteError::BadEndpoint {
            address: address.to_string(),
            reason: e.reason,
        })
    }

    /// Starts over with a new connection: after a request got no answer at all, the
    /// connection may be one that a partition left for dead, whose packets TCP keeps
    /// retransmitting into the void long after the network healed. In-flight requests keep
    /// the old one until they end.
    fn reconnect(&self) {
        if let Ok(fresh) = Self::channel(&self.address, self.tls.as_ref()) {
            *self.channel.lock().unwrap() = fresh;
        }
    }

    /// Whether the peer failed recently and its backoff has not passed.
    pub fn backing_off(&self) -> Option<Duration> {
        let h = self.health.lock().unwrap();
        h.retry_at
            .and_then(|t| t.checked_duration_since(Instant::now()))
    }

    fn succeeded(&self) {
        let mut h = self.health.lock().unwrap();
        h.failures = 0;
        h.retry_at = None;
        h.last_success = Some(SystemTime::now());
    }

    fn failed(&self, why: &str) {
        let mut h = self.health.lock().unwrap();
        h.failures = h.failures.saturating_add(1);
        h.retry_at = Some(Instant::now() + backoff(h.failures));
        h.last_error = Some((SystemTime::now(), why.to_string()));
    }

    /// When the peer last answered a write and last failed one.
    pub fn contact(&self) -> PeerContact {
        let h = self.health.lock().unwrap();
        PeerContact {
            last_success: h.last_success,
            last_error: h.last_error.clone(),
        }
    }

    /// Sends an encoded `thanos.WriteRequest` (`hinted`: a hinted handoff delivery). `wire`
    /// holds (or gets) the payload compressed, for other peers the same payload goes to.
    pub async fn send(
        &self,
        payload: Bytes,
        wire: Option<&tokio::sync::OnceCell<Bytes>>,
        timeout: Duration,
        hinted: bool,
    ) -> ReplicaResult {
        let channel = self.channel.lock().unwrap().clone();
        let mut grpc = tonic::client::Grpc::new(SnappyChannel::new(channel, self.compress));
        let call = async {
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(format!("connecting: {e}")))?;
            let mut req = match wire.filter(|_| self.compress) {
                Some(wire) => {
                    let frame = wire
                        .get_or_try_init(|| async { compressed_frame(&payload) })
                        .await
                        .map_err(|e| Status::internal(format!("compressing: {e}")))?;
                    // The message tonic encodes is left empty: the channel sends the frame.
                    let mut req = tonic::Request::new(Bytes::new());
                    req.extensions_mut().insert(Precompressed(frame.clone()));
                    req
                }
                None => tonic::Request::new(payload),
            };
            req.set_timeout(timeout);
            if hinted {
                req.metadata_mut().insert(
                    HINT_METADATA,
                    tonic::metadata::MetadataValue::from_static("1"),
                );
            }
            grpc.unary(
                req,
                http::uri::PathAndQuery::from_static(REMOTE_WRITE_PATH),
                crate::grpc_codec::ClientCodec::default(),
            )
            .await
        };
        let result = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(_)) => ReplicaResult::Ok,
            Ok(Err(status)) => ReplicaResult::of_status(&status),
            Err(_) => {
                self.reconnect();
                ReplicaResult::Unavailable(format!("no answer within {timeout:?}"))
            }
        };
        match &result {
            ReplicaResult::Unavailable(why) => self.failed(why),
            _ => self.succeeded(),
        }
        result
    }
}

/// Settings of the distributed write path.
#[derive(Clone, Debug)]
pub struct ReplicationConfig {
    /// This node's address as the hashrings file lists it; None makes a router only.
    pub local_endpoint: Option<String>,
    pub replication_factor: usize,
    /// How long a forward may take.
    pub forward_timeout: Duration,
    /// How long a missed write is kept for a replica (0 turns hinted handoff off).
    pub hints_window: Duration,
    /// The most bytes of hints kept per peer.
    pub hints_max_bytes: u64,
    /// TLS to the other receivers (`--remote-write.client-tls-*`); None: plaintext.
    pub client_tls: Option<tls::ClientFiles>,
    /// Forwards are snappy-compressed (`--receive.grpc-compression=snappy`, Thanos' default);
    /// false sends them plain (`none`).
    pub compress: bool,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            local_endpoint: None,
            replication_factor: 1,
            forward_timeout: Duration::from_secs(5),
            hints_window: Duration::from_secs(2 * 3600),
            hints_max_bytes: 1 << 30,
            client_tls: None,
            compress: true,
        }
    }
}

/// Replication metrics (Thanos' names where Thanos has them).
#[derive(Clone)]
pub struct ReplicationMetrics {
    pub replications: Family<MetricLabels, Counter>,
    pub replication_requests: Family<MetricLabels, Counter>,
    pub forward_duration: Family<MetricLabels, Histogram, fn() -> Histogram>,
    pub forward_requests: Family<MetricLabels, Counter>,
    pub hints_queued: Family<MetricLabels, Counter>,
    /// Forwards a peer refused as out of order while the write reached quorum (re-sent as
    /// hints).
    pub reordered: Family<MetricLabels, Counter>,
    pub hints_delivered: Family<MetricLabels, Counter>,
    pub hints_dropped: Family<MetricLabels, Counter>,
    pub hints_pending: Family<MetricLabels, Gauge>,
    pub hints_pending_bytes: Family<MetricLabels, Gauge>,
    pub hints_oldest_age: Family<MetricLabels, Gauge>,
}

fn forward_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

impl ReplicationMetrics {
    pub fn register(registry: &mut Registry) -> ReplicationMetrics {
        let m = ReplicationMetrics {
            replications: Family::default(),
            replication_requests: Family::default(),
            forward_duration: Family::new_with_constructor(forward_histogram),
            forward_requests: Family::default(),
            hints_queued: Family::default(),
            reordered: Family::default(),
            hints_delivered: Family::default(),
            hints_dropped: Family::default(),
            hints_pending: Family::default(),
            hints_pending_bytes: Family::default(),
            hints_oldest_age: Family::default(),
        };
        registry.register(
            "thanos_receive_replications",
            "Series replicated (reached quorum or not), by result",
            m.replications.clone(),
        );
        registry.register(
            "thanos_receive_replication_requests",
            "Write requests that needed replication, by result",
            m.replication_requests.clone(),
        );
        registry.register(
            "thanos_receive_forward_duration_seconds",
            "Latency of writes forwarded to a peer",
            m.forward_duration.clone(),
        );
        registry.register(
            "thanos_receive_forward_requests",
            "Writes forwarded to peers, by peer and result",
            m.forward_requests.clone(),
        );
        registry.register(
            "cairn_receive_hints_queued",
            "Writes a peer missed, queued for hinted handoff",
            m.hints_queued.clone(),
        );
        registry.register(
            "cairn_receive_forwards_reordered",
            "Forwards a peer refused as out of order while the write reached quorum, re-sent through hinted handoff",
            m.reordered.clone(),
        );
        registry.register(
            "cairn_receive_hints_delivered",
            "Queued writes delivered to their peer",
            m.hints_delivered.clone(),
        );
        registry.register(
            "cairn_receive_hints_dropped",
            "Queued writes given up, by peer and reason (expired, full, rejected, io)",
            m.hints_dropped.clone(),
        );
        registry.register(
            "cairn_receive_hints_pending",
            "Writes waiting in a peer's hint queue",
            m.hints_pending.clone(),
        );
        registry.register(
            "cairn_receive_hints_pending_bytes",
            "Bytes waiting in a peer's hint queue",
            m.hints_pending_bytes.clone(),
        );
        registry.register(
            "cairn_receive_hints_oldest_age_seconds",
            "Age of the oldest write waiting in a peer's hint queue",
            m.hints_oldest_age.clone(),
        );
        m
    }

    fn peer(peer: &str) -> MetricLabels {
        vec![("peer".into(), peer.into())]
    }

    fn dropped(&self, peer: &str, reason: &str, n: u64) {
        if n > 0 {
            self.hints_dropped
                .get_or_create(&vec![
                    ("peer".into(), peer.into()),
                    ("reason".into(), reason.into()),
                ])
                .inc_by(n);
        }
    }

    /// Refreshes the queue gauges.
    /// Sets the hint gauges from the queues, and to 0 for the `peers` that have none, so that a
    /// healthy pool shows a flat line per peer rather than no data.
    pub fn update_queues(&self, handoff: &Handoff, peers: &[String]) {
        for peer in peers {
            if handoff.get(peer).is_none() {
                let l = Self::peer(peer);
                self.hints_pending.get_or_create(&l).set(0);
                self.hints_pending_bytes.get_or_create(&l).set(0);
                self.hints_oldest_age.get_or_create(&l).set(0);
            }
        }
        let now = crate::handoff::now_millis();
        for q in handoff.queues() {
            let s = q.stats();
            let l = Self::peer(&q.peer);
            self.hints_pending.get_or_create(&l).set(s.pending as i64);
            self.hints_pending_bytes
                .get_or_create(&l)
                .set(s.pending_bytes as i64);
            self.hints_oldest_age
                .get_or_create(&l)
                .set(s.oldest_millis.map_or(0, |t| (now - t).max(0) / 1000));
        }
    }
}

/// One request's share for one endpoint.
pub struct Batch {
    pub endpoint: String,
    /// Indices into the request's series.
    pub series: Vec<u32>,
    /// The replica number the batch is sent with (1-based).
    pub replica: u64,
    /// Encoded `thanos.WriteRequest` (empty for the local batch).
    pub payload: Bytes,
    /// The payload as a compressed gRPC frame, made by the first forward that needs it and
    /// shared by the batches with the same payload.
    pub wire: Arc<tokio::sync::OnceCell<Bytes>>,
}

/// Where a request's series go.
pub struct Plan {
    pub tenant: String,
    /// Owners per series (how many of each series' writes are expected).
    pub owners_per_series: usize,
    pub series: usize,
    pub local: Option<Batch>,
    pub remote: Vec<Batch>,
}

/// Tracks quorum per series as replica results arrive.
struct Tracker {
    quorum: u32,
    owners: u32,
    ok: Vec<u32>,
    failed: Vec<u32>,
    undecided: usize,
    no_quorum: usize,
    first_failure: Option<String>,
    rejection: Option<(Severity, String)>,
}

impl Tracker {
    fn new(series: usize, owners: usize) -> Tracker {
        Tracker {
            quorum: (owners / 2 + 1) as u32,
            owners: owners as u32,
            ok: vec![0; series],
            failed: vec![0; series],
            undecided: series,
            no_quorum: 0,
            first_failure: None,
            rejection: None,
        }
    }

    fn apply(&mut self, endpoint: &str, series: &[u32], result: &ReplicaResult) {
        match result {
            ReplicaResult::Ok => {}
            ReplicaResult::Rejected(sev, msg) => {
                if self.rejection.as_ref().is_none_or(|(s, _)| sev > s) {
                    self.rejection = Some((*sev, format!("{endpoint}: {msg}")));
                }
            }
            ReplicaResult::Unavailable(msg) => {
                if self.first_failure.is_none() {
                    self.first_failure = Some(format!("{endpoint}: {msg}"));
                }
            }
        }
        let ok = matches!(result, ReplicaResult::Ok);
        for &i in series {
            let i = i as usize;
            let decided_before = self.decided(i);
            if ok {
                self.ok[i] += 1;
            } else {
                self.failed[i] += 1;
            }
            if !decided_before && self.decided(i) {
                self.undecided -= 1;
                if self.ok[i] < self.quorum {
                    self.no_quorum += 1;
                }
            }
        }
    }

    fn decided(&self, i: usize) -> bool {
        self.ok[i] >= self.quorum || self.failed[i] > self.owners - self.quorum
    }
}

/// The answer to a replicated write.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub message: String,
    /// Series that reached quorum.
    pub series_ok: usize,
}

/// The distributed write path of one node.
pub struct Replicator {
    pub rings: SharedHashrings,
    pub config: ReplicationConfig,
    peers: Mutex<HashMap<String, Arc<Peer>>>,
    client_tls: Option<Arc<tls::ClientTls>>,
    pub handoff: Option<Arc<Handoff>>,
    pub metrics: ReplicationMetrics,
}

impl Replicator {
    pub fn new(
        rings: SharedHashrings,
        config: ReplicationConfig,
        handoff: Option<Arc<Handoff>>,
        metrics: ReplicationMetrics,
        client_tls: Option<Arc<tls::ClientTls>>,
    ) -> Arc<Replicator> {
        Arc::new(Replicator {
            rings,
            config,
            peers: Mutex::new(HashMap::new()),
            client_tls,
            handoff,
            metrics,
        })
    }

    /// Every endpoint of the hashrings in use except this receiver: the peers it forwards to.
    pub fn peer_endpoints(&self) -> Vec<String> {
        let rings = self.rings.get();
        let mut out: Vec<String> = rings
            .rings()
            .iter()
            .flat_map(|r| r.ring.endpoints().iter().map(|e| e.address.clone()))
            .filter(|a| !self.is_local(a))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// How writes to `endpoint` went lately (default: never sent one since start).
    pub fn peer_contact(&self, endpoint: &str) -> PeerContact {
        let peer = self.peers.lock().unwrap().get(endpoint).cloned();
        peer.map(|p| p.contact()).unwrap_or_default()
    }

    /// Starts delivering the hints a previous run left (needs a tokio runtime).
    pub fn start(self: &Arc<Self>) {
        if let Some(h) = &self.handoff {
            for q in h.queues() {
                self.clone().spawn_drainer(q);
            }
        }
    }

    fn peer(&self, address: &str) -> Result<Arc<Peer>, RouteError> {
        let mut peers = self.peers.lock().unwrap();
        if let Some(p) = peers.get(address) {
            return Ok(p.clone());
        }
        let p = Arc::new(Peer::new(
            address,
            self.client_tls.as_ref(),
            self.config.compress,
        )?);
        peers.insert(address.to_string(), p.clone());
        Ok(p)
    }

    fn is_local(&self, endpoint: &str) -> bool {
        self.config.local_endpoint.as_deref() == Some(endpoint)
    }

    /// Splits a request by owner. `raw` holds each series' encoded bytes when the request came
    /// as Remote Write 1.0: they are forwarded as they are instead of re-encoded.
    pub fn plan(
        &self,
        tenant: &str,
        req: &WriteRequest<'_>,
        raw: Option<&[&[u8]]>,
    ) -> Result<Plan, RouteError> {
        let rings = self.rings.get();
        let ring = rings
            .hashring_for(tenant)
            .ok_or_else(|| RouteError::NoHashring(tenant.to_string()))?;
        let endpoints = ring.ring.endpoints();
        let (per_endpoint, first_replica, owners_per_series) = if ring.ring.owns_all() {
            // Every endpoint owns every series (RF = the ring's size, the usual small pool):
            // no series hash, and every peer gets the same message (replica 1: any number
            // from 1 to RF only tells the peer the write is replicated).
            let all: Vec<u32> = (0..req.timeseries.len() as u32).collect();
            let n = endpoints.len();
            (vec![all; n], vec![1; n], n)
        } else {
            let mut per_endpoint: Vec<Vec<u32>> = vec![Vec::new(); endpoints.len()];
            let mut first_replica: Vec<u64> = vec![0; endpoints.len()];
            let mut owners_per_series = rings.replication_factor();
            for (i, ts) in req.timeseries.iter().enumerate() {
                let hash = crate::hashring::series_hash(
                    tenant,
                    ts.labels.iter().map(|l| (l.name, l.value)),
                );
                let mut n = 0;
                for (replica, e) in ring.ring.owner_indices(hash).enumerate() {
                    if per_endpoint[e].is_empty() {
                        first_replica[e] = replica as u64 + 1;
                    }
                    per_endpoint[e].push(i as u32);
                    n += 1;
                }
                owners_per_series = n;
            }
            (per_endpoint, first_replica, owners_per_series)
        };
        let mut plan = Plan {
            tenant: tenant.to_string(),
            owners_per_series,
            series: req.timeseries.len(),
            local: None,
            remote: Vec::new(),
        };
        for (e, series) in per_endpoint.into_iter().enumerate() {
            if series.is_empty() {
                continue;
            }
            let endpoint = endpoints[e].address.clone();
            if self.is_local(&endpoint) {
                plan.local = Some(Batch {
                    endpoint,
                    series,
                    replica: first_replica[e],
                    payload: Bytes::new(),
                    wire: Arc::default(),
                });
                continue;
            }
            // Peers that get the same series under the same replica number share one message.
            if let Some(same) = plan
                .remote
                .iter()
                .find(|b| b.series == series && b.replica == first_replica[e])
            {
                let (payload, wire) = (same.payload.clone(), same.wire.clone());
                plan.remote.push(Batch {
                    endpoint,
                    series,
                    replica: first_replica[e],
                    payload,
                    wire,
                });
                continue;
            }
            let payload = match raw {
                Some(raw) => proto::remote_write::encode_thanos_write_raw(
                    tenant,
                    first_replica[e],
                    series.iter().map(|&i| raw[i as usize]),
                ),
                None => proto::remote_write::encode_thanos_write(
                    tenant,
                    first_replica[e],
                    series.iter().map(|&i| &req.timeseries[i as usize]),
                ),
            };
            plan.remote.push(Batch {
                endpoint,
                series,
                replica: first_replica[e],
                payload: Bytes::from(payload),
                wire: Arc::default(),
            });
        }
        Ok(plan)
    }

    /// The local batch's series, for the local write.
    pub fn local_series<'r, 'a>(
        req: &'r WriteRequest<'a>,
        batch: &'r Batch,
    ) -> impl Iterator<Item = &'r TimeSeries<'a>> + Clone + 'r {
        batch
            .series
            .iter()
            .map(move |&i| &req.timeseries[i as usize])
    }

    /// Sends the remote batches, applies the local result, and answers once every series has
    /// reached quorum or cannot. Forwards still running then finish in the background.
    pub async fn execute(
        self: &Arc<Self>,
        plan: Plan,
        local: Option<impl Future<Output = ReplicaResult>>,
    ) -> Answer {
        let started = Instant::now();
        let mut tracker = Tracker::new(plan.series, plan.owners_per_series);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let tenant: Arc<str> = plan.tenant.as_str().into();
        let mut batches = Vec::with_capacity(plan.remote.len());
        for (i, batch) in plan.remote.into_iter().enumerate() {
            let this = self.clone();
            let tx = tx.clone();
            let tenant = tenant.clone();
            let endpoint = batch.endpoint.clone();
            let payload = batch.payload.clone();
            let wire = batch.wire.clone();
            tokio::spawn(async move {
                let r = this.forward(&tenant, &endpoint, payload, &wire).await;
                let _ = tx.send((i, r));
            });
            batches.push(batch);
        }
        drop(tx);
        // This node's replica settles (its fsync) while the peers' are on their way.
        if let (Some(batch), Some(local)) = (&plan.local, local) {
            tracker.apply(&batch.endpoint, &batch.series, &local.await);
        }
        let deadline =
            tokio::time::Instant::now() + self.config.forward_timeout + Duration::from_millis(500);
        let mut reordered = Vec::new();
        while tracker.undecided > 0 {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((i, result))) => {
                    let b: &Batch = &batches[i];
                    tracker.apply(&b.endpoint, &b.series, &result);
                    if result.is_conflict() {
                        reordered.push(i);
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        let undecided = tracker.undecided;
        let failed = tracker.no_quorum + undecided;
        if failed == 0 {
            // Replicas that got this write out of order get it again as a late write, now or
            // when their answer comes.
            for i in reordered {
                self.rehint(&tenant, &batches[i]);
            }
            let this = self.clone();
            tokio::spawn(async move {
                while let Some((i, result)) = rx.recv().await {
                    if result.is_conflict() {
                        this.rehint(&tenant, &batches[i]);
                    }
                }
            });
        }
        let ok = plan.series - failed;
        self.metrics
            .replications
            .get_or_create(&vec![("result".into(), "success".into())])
            .inc_by(ok as u64);
        self.metrics
            .replications
            .get_or_create(&vec![("result".into(), "error".into())])
            .inc_by(failed as u64);
        let result = if failed > 0 { "error" } else { "success" };
        self.metrics
            .replication_requests
            .get_or_create(&vec![("result".into(), result.into())])
            .inc();
        if let (true, None, Some((sev, msg))) =
            (failed > 0, &tracker.first_failure, &tracker.rejection)
        {
            if undecided == 0 {
                return Answer {
                    status: sev.status(),
                    message: msg.clone(),
                    series_ok: ok,
                };
            }
        }
        if failed > 0 {
            let why = tracker
                .first_failure
                .unwrap_or_else(|| "replicas did not answer in time".into());
            return Answer {
                status: 503,
                message: format!(
                    "quorum ({} of {}) not reached for {failed} of {} series after {:?}; first failure: {why}",
                    tracker.quorum,
                    tracker.owners,
                    plan.series,
                    started.elapsed()
                ),
                series_ok: ok,
            };
        }
        Answer {
            status: 204,
            message: String::new(),
            series_ok: ok,
        }
    }

    /// Queues `batch` again for its replica, which refused it as out of order while the write
    /// reached quorum elsewhere.
    fn rehint(self: &Arc<Self>, tenant: &str, batch: &Batch) {
        self.metrics
            .reordered
            .get_or_create(&ReplicationMetrics::peer(&batch.endpoint))
            .inc();
        self.hint(
            tenant,
            &batch.endpoint,
            &batch.payload,
            "the replica got the write out of order",
        );
    }

    /// Sends one batch to its peer, or queues it as a hint when the peer is failing.
    ///
    /// A peer still catching up on earlier hints gets new writes directly as soon as it answers
    /// again: it is a replica for them, and quorum can count it (the hints it has yet to receive
    /// are accepted out of order when they come). Queueing new writes behind the hints instead
    /// would keep the peer out of every quorum until the queue drained, and a second fault in
    /// that window (seen in `network_faults`: an asymmetric partition right after a healed one)
    /// would then fail writes that two healthy replicas could take.
    async fn forward(
        self: &Arc<Self>,
        tenant: &str,
        endpoint: &str,
        payload: Bytes,
        wire: &tokio::sync::OnceCell<Bytes>,
    ) -> ReplicaResult {
        let peer = match self.peer(endpoint) {
            Ok(p) => p,
            Err(e) => return ReplicaResult::Unavailable(e.to_string()),
        };
        let labels = vec![("peer".to_string(), endpoint.to_string())];
        let result = if let Some(wait) = peer.backing_off() {
            ReplicaResult::Unavailable(format!("peer failed recently; next try in {wait:?}"))
        } else {
            let started = Instant::now();
            let r = peer
                .send(
                    payload.clone(),
                    Some(wire),
                    self.config.forward_timeout,
                    false,
                )
                .await;
            self.metrics
                .forward_duration
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64());
            r
        };
        self.metrics
            .forward_requests
            .get_or_create(&vec![
                ("peer".into(), endpoint.into()),
                ("result".into(), result.label().into()),
            ])
            .inc();
        if let ReplicaResult::Unavailable(why) = &result {
            self.hint(tenant, endpoint, &payload, why);
        }
        result
    }

    fn hint(self: &Arc<Self>, tenant: &str, endpoint: &str, payload: &[u8], why: &str) {
        let Some(handoff) = &self.handoff else {
            return;
        };
        match handoff.queue(endpoint) {
            Ok((q, created)) => {
                match q.push(tenant, payload) {
                    Ok(dropped) => {
                        self.metrics
                            .hints_queued
                            .get_or_create(&ReplicationMetrics::peer(endpoint))
                            .inc();
                        self.metrics.dropped(endpoint, "full", dropped);
                    }
                    Err(e) => {
                        tracing::warn!(peer = endpoint, error = %e, "cannot queue hint");
                        self.metrics.dropped(endpoint, "io", 1);
                    }
                }
                if created {
                    tracing::info!(
                        peer = endpoint,
                        reason = why,
                        "peer missed writes; queueing hints"
                    );
                    self.clone().spawn_drainer(q);
                }
            }
            Err(e) => {
                tracing::warn!(peer = endpoint, error = %e, "cannot open hint queue");
                self.metrics.dropped(endpoint, "io", 1);
            }
        }
    }

    /// Delivers a peer's hints, oldest first, whenever the peer answers.
    fn spawn_drainer(self: Arc<Self>, queue: Arc<HintQueue>) {
        tokio::spawn(async move {
            let Some(handoff) = self.handoff.clone() else {
                return;
            };
            let peer = match self.peer(&queue.peer) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(peer = queue.peer, error = %e, "cannot deliver hints");
                    return;
                }
            };
            let deliver_timeout = self.config.forward_timeout.max(Duration::from_secs(30));
            loop {
                let batch = {
                    let q = queue.clone();
                    let expire = handoff.expire_before();
                    tokio::task::spawn_blocking(move || q.next_batch(4 << 20, expire)).await
                };
                let batch = match batch {
                    Ok(Ok(Some(b))) => b,
                    Ok(Ok(None)) => {
                        let _ =
                            tokio::time::timeout(Duration::from_secs(1), queue.notify.notified())
                                .await;
                        continue;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(peer = queue.peer, error = %e, "cannot read hints");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(peer = queue.peer, error = %e, "cannot read hints");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        continue;
                    }
                };
                self.metrics.dropped(&queue.peer, "expired", batch.expired);
                if batch.hints > 0 {
                    if let Some(wait) = peer.backing_off() {
                        tokio::time::sleep(wait).await;
                    }
                    match peer
                        .send(
                            Bytes::from(batch.payload.clone()),
                            None,
                            deliver_timeout,
                            true,
                        )
                        .await
                    {
                        ReplicaResult::Ok => {
                            self.metrics
                                .hints_delivered
                                .get_or_create(&ReplicationMetrics::peer(&queue.peer))
                                .inc_by(batch.hints);
                        }
                        ReplicaResult::Rejected(_, msg) => {
                            tracing::warn!(
                                peer = queue.peer,
                                hints = batch.hints,
                                error = msg,
                                "peer refused hinted writes; dropping them"
                            );
                            self.metrics.dropped(&queue.peer, "rejected", batch.hints);
                        }
                        ReplicaResult::Unavailable(_) => continue,
                    }
                }
                let q = queue.clone();
                let done = tokio::task::spawn_blocking(move || q.commit(&batch)).await;
                if !matches!(done, Ok(Ok(()))) {
                    tracing::warn!(
                        peer = queue.peer,
                        "cannot record hint delivery; hints may be sent twice"
                    );
                }
                if queue.is_empty() {
                    tracing::info!(peer = queue.peer, "hint queue drained");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_is_reached_without_the_slowest_replica() {
        let mut t = Tracker::new(2, 3);
        t.apply("a", &[0, 1], &ReplicaResult::Ok);
        assert_eq!(t.undecided, 2);
        t.apply("b", &[0], &ReplicaResult::Ok);
        assert_eq!(t.undecided, 1);
        t.apply("c", &[1], &ReplicaResult::Unavailable("down".into()));
        assert_eq!(t.undecided, 1);
        t.apply("d", &[1], &ReplicaResult::Ok);
        assert_eq!((t.undecided, t.no_quorum), (0, 0));
    }

    #[test]
    fn two_failures_of_three_lose_quorum() {
        let mut t = Tracker::new(1, 3);
        t.apply("a", &[0], &ReplicaResult::Unavailable("x".into()));
        assert_eq!(t.undecided, 1);
        t.apply("b", &[0], &ReplicaResult::Unavailable("y".into()));
        assert_eq!((t.undecided, t.no_quorum), (0, 1));
        assert_eq!(t.first_failure.as_deref(), Some("a: x"));
    }

    #[test]
    fn rejections_decide_but_do_not_count_toward_quorum() {
        let mut t = Tracker::new(1, 3);
        t.apply(
            "a",
            &[0],
            &ReplicaResult::Rejected(Severity::Conflict, "ooo".into()),
        );
        t.apply(
            "b",
            &[0],
            &ReplicaResult::Rejected(Severity::BadRequest, "bad".into()),
        );
        assert_eq!((t.undecided, t.no_quorum), (0, 1));
        assert_eq!(t.rejection, Some((Severity::BadRequest, "b: bad".into())));
        assert_eq!(t.first_failure, None);
        // A minority refusal does not stop quorum.
        let mut t = Tracker::new(1, 3);
        t.apply("a", &[0], &ReplicaResult::Ok);
        t.apply(
            "b",
            &[0],
            &ReplicaResult::Rejected(Severity::Conflict, "ooo".into()),
        );
        assert_eq!(t.undecided, 1);
        t.apply("c", &[0], &ReplicaResult::Ok);
        assert_eq!((t.undecided, t.no_quorum), (0, 0));
    }

    #[test]
    fn rf1_needs_its_one_owner() {
        let mut t = Tracker::new(1, 1);
        t.apply("a", &[0], &ReplicaResult::Unavailable("x".into()));
        assert_eq!(t.no_quorum, 1);
    }

    fn replicator(endpoints: &[&str], rf: usize) -> Arc<Replicator> {
        let list: Vec<String> = endpoints.iter().map(|e| format!("{e:?}")).collect();
        let file = format!(r#"[{{"endpoints": [{}]}}]"#, list.join(", "));
        let config = crate::hashring::HashringsConfig::parse(&file).unwrap();
        let rings =
            crate::hashring::Hashrings::new(&config, crate::hashring::Algorithm::Ketama, rf)
                .unwrap();
        let config = ReplicationConfig {
            local_endpoint: Some(endpoints[0].to_string()),
            replication_factor: rf,
            ..ReplicationConfig::default()
        };
        let metrics = ReplicationMetrics::register(&mut Registry::default());
        Replicator::new(SharedHashrings::new(rings), config, None, metrics, None)
    }

    /// A Remote Write 1.0 request of `n` series named `series_<i>`.
    fn request(n: usize) -> Vec<u8> {
        let names: Vec<String> = (0..n).map(|i| format!("series_{i}")).collect();
        let series: Vec<TimeSeries<'_>> = names
            .iter()
            .enumerate()
            .map(|(i, name)| TimeSeries {
                labels: vec![proto::remote_write::Label {
                    name: "__name__",
                    value: name,
                }],
                samples: vec![proto::remote_write::Sample {
                    value: i as f64,
                    timestamp: 1000,
                }],
                ..TimeSeries::default()
            })
            .collect();
        proto::remote_write::encode_v1(&WriteRequest {
            timeseries: series,
            ..WriteRequest::default()
        })
    }

    /// The series names and replica number a forwarded payload carries.
    fn forwarded(payload: &[u8]) -> (Vec<String>, i64) {
        let w = proto::remote_write::decode_thanos_write(payload).unwrap();
        let (tenant, req) = &w.tenants[0];
        assert_eq!(*tenant, "t");
        let names = req
            .timeseries
            .iter()
            .map(|ts| ts.labels[0].value.to_string())
            .collect();
        (names, w.replica)
    }

    #[test]
    fn a_ring_where_every_endpoint_owns_every_series_sends_one_shared_message() {
        let body = request(50);
        let req = proto::remote_write::decode_v1(&body).unwrap();
        let raw = proto::remote_write::series_bytes_v1(&body).unwrap();
        let all: Vec<u32> = (0..50).collect();
        let names: Vec<String> = (0..50).map(|i| format!("series_{i}")).collect();
        for raw in [Some(&raw[..]), None] {
            let r = replicator(&["a:1", "b:1", "c:1"], 3);
            let plan = r.plan("t", &req, raw).unwrap();
            assert_eq!(plan.owners_per_series, 3);
            assert_eq!(plan.local.as_ref().unwrap().series, all);
            assert_eq!(plan.remote.len(), 2);
            let (b, c) = (&plan.remote[0], &plan.remote[1]);
            assert_eq!((b.series == all, c.series == all), (true, true));
            // One message, compressed once, for both peers.
            assert_eq!(b.payload.as_ptr(), c.payload.as_ptr());
            assert!(Arc::ptr_eq(&b.wire, &c.wire));
            assert_eq!(forwarded(&b.payload), (names.clone(), 1));
        }
    }

    #[test]
    fn a_larger_ring_splits_series_by_hash() {
        let body = request(200);
        let req = proto::remote_write::decode_v1(&body).unwrap();
        let raw = proto::remote_write::series_bytes_v1(&body).unwrap();
        let r = replicator(&["a:1", "b:1", "c:1", "d:1", "e:1"], 3);
        let plan = r.plan("t", &req, Some(&raw)).unwrap();
        assert_eq!(plan.owners_per_series, 3);
        let rings = r.rings.get();
        let ring = &rings.hashring_for("t").unwrap().ring;
        let mut copies = vec![0; 200];
        let batches = plan.local.iter().chain(&plan.remote);
        for b in batches {
            for &i in &b.series {
                copies[i as usize] += 1;
                let ts = &req.timeseries[i as usize];
                let hash =
                    crate::hashring::series_hash("t", ts.labels.iter().map(|l| (l.name, l.value)));
                assert!(ring.owners(hash).any(|e| e.address == b.endpoint));
            }
            if !b.payload.is_empty() {
                let names: Vec<String> = b.series.iter().map(|&i| format!("series_{i}")).collect();
                let (got, replica) = forwarded(&b.payload);
                assert_eq!(got, names);
                assert!((1..=3).contains(&replica));
            }
        }
        assert!(copies.iter().all(|&n| n == 3));
        // Each endpoint owns some of the series, not all.
        assert!(plan.remote.iter().all(|b| b.series.len() < 200));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(400));
        assert!(backoff(30) <= Duration::from_secs(10));
    }
}
