//! The ingest core: what happens to a write, whichever door it came through.
//!
//! The HTTP handler ([`crate::http`], remote write from agents) and the gRPC
//! `thanos.WriteableStore` service ([`crate::grpc_write`], writes forwarded by other receivers)
//! are thin adapters over [`Receiver`]: they turn their request into a tenant and a decoded
//! write, call one of the functions below, and turn the result into their status codes
//! (through [`crate::error::StatusClass`]). This is Thanos' `handleRequest` shared by its HTTP
//! and gRPC handlers.
//!
//! A write goes: [`Receiver::ingest_remote_write`] (size limits, snappy, decoding, tenant
//! name) -> with a hashring, [`Receiver::route`] (the replication plan and this node's own
//! share, written by [`Receiver::write_local`]) and then the replicator's quorum wait; without
//! one, [`Receiver::write_local`] directly -> [`crate::writer::write_series`] (validation, the
//! tenant's TSDB appender, commit to the WAL).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use proto::remote_write::{TimeSeries, WriteRequest};
use tsdb::db::Db;
use tsdb::head::Durable;

use crate::error::{ConfigError, IngestError, HISTOGRAM_SAMPLE_WEIGHT};
use crate::hashring::{HashringWatcher, WatchStatus};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::replicate::{Plan, ReplicaResult, Replicator};
use crate::tenants::Tenants;
use crate::writer::{self, WriteOutcome};
use crate::ReceiveConfig;
use auth::Authenticator;

/// Which protobuf message a remote-write request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoVersion {
    V1,
    V2,
}

/// One receiver: its configuration, tenants, limits, metrics and distributed write path.
pub struct Receiver {
    pub config: ReceiveConfig,
    pub tenants: Arc<Tenants>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Writers' credentials; None accepts anonymous writes.
    pub auth: Option<Authenticator>,
    ready: AtomicBool,
    /// Routes and replicates writes (a hashrings file is configured).
    pub replicator: Option<Arc<Replicator>>,
    /// The hashrings file watcher, taken by the server to run it.
    watcher: Mutex<Option<HashringWatcher>>,
    pub hashring_status: Option<Arc<WatchStatus>>,
    /// The last shipper pass's result per tenant, for the status service.
    pub shipper_backlog: Mutex<std::collections::BTreeMap<String, objstore::shipper::SyncStats>>,
}

/// What [`Receiver::ingest_remote_write`] did with a request.
pub enum Ingested {
    /// Nothing to store (a metadata-only request).
    Empty,
    /// Written here (no hashring); what it stored holds once [`Receiver::finish`] says so.
    Written(PendingWrite),
    /// Routed: this node's share is written (`local`, None if it owns none), the rest waits
    /// for [`Replicator::execute`].
    Routed {
        plan: Plan,
        local: Option<LocalReplica>,
        /// What a successful replicated write stored: the request's samples and histograms,
        /// and the exemplars this node's replica stored (peers do not report theirs).
        written: Written,
    },
}

/// A local write logged and applied, whose WAL fsync may still be under way.
pub struct PendingWrite {
    tenant: String,
    db: Arc<Db>,
    outcome: WriteOutcome,
    durable: Durable,
}

/// An fsync at least this long is run off the async worker ([`Receiver::finish`]).
const SLOW_FSYNC: std::time::Duration = std::time::Duration::from_millis(1);

/// Runs an fsync a task leads (see [`Receiver::finish`]): on its worker thread when the disk
/// is fast (handing the worker over with `block_in_place` costs more than the fsync); when the
/// WAL's `last` fsync was slow (a network disk), in `block_in_place` on a multi-threaded
/// runtime, so that the worker's other tasks move on meanwhile.
fn run_fsync(
    last: std::time::Duration,
    fsync: &mut dyn FnMut() -> tsdb::Result<()>,
) -> tsdb::Result<()> {
    let off_worker = last >= SLOW_FSYNC
        && tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if off_worker {
        tokio::task::block_in_place(fsync)
    } else {
        fsync()
    }
}

/// This node's share of a routed write, for [`Receiver::finish_replica`].
pub type LocalReplica = Result<PendingWrite, IngestError>;

/// What the "written" response headers report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub samples: usize,
    pub histograms: usize,
    pub exemplars: usize,
}

impl Receiver {
    /// Builds a receiver from its configuration: opens the auth file, the bucket client, the
    /// hashrings file and the hint queues (TSDBs are opened by the server).
    pub fn new(config: ReceiveConfig) -> Result<Arc<Self>, ConfigError> {
        let auth = config
            .auth_file
            .as_deref()
            .map(Authenticator::from_file)
            .transpose()?;
        let bucket = config.objstore.as_ref().map(|c| c.build()).transpose()?;
        let mut metrics = Metrics::new();
        let (replicator, watcher, hashring_status) = match &config.hashrings_file {
            None => (None, None, None),
            Some(path) => {
                let rep = &config.replication;
                let watcher = HashringWatcher::load(
                    path.clone(),
                    config.hashrings_algorithm,
                    rep.replication_factor,
                )?;
                let handoff = if rep.hints_window.is_zero() {
                    None
                } else {
                    let dir = config.tsdb_path.join(".hints");
                    let h =
                        crate::handoff::Handoff::open(dir, rep.hints_window, rep.hints_max_bytes)
                            .map_err(ConfigError::Handoff)?;
                    Some(Arc::new(h))
                };
                let replication_metrics =
                    crate::replicate::ReplicationMetrics::register(metrics.registry_mut());
                let client_tls = match &rep.client_tls {
                    Some(files) => Some(tls::ClientTls::load(files)?),
                    None => None,
                };
                let replicator = Replicator::new(
                    watcher.shared(),
                    rep.clone(),
                    handoff,
                    replication_metrics,
                    client_tls,
                );
                let status = watcher.status();
                (Some(replicator), Some(watcher), Some(status))
            }
        };
        Ok(Arc::new(Receiver {
            tenants: Arc::new(Tenants::new(config.clone(), bucket)),
            config,
            metrics: Arc::new(metrics),
            limits: Limits::default(),
            auth,
            ready: AtomicBool::new(false),
            replicator,
            watcher: Mutex::new(watcher),
            hashring_status,
            shipper_backlog: Mutex::default(),
        }))
    }

    /// Ready once the existing tenants' TSDBs are open (their WALs replayed).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub(crate) fn take_watcher(&self) -> Option<HashringWatcher> {
        self.watcher.lock().unwrap().take()
    }

    /// Checks a remote-write body against the limits (the flags' and the tenant's, the tighter
    /// wins), decompresses and decodes it, and writes it: here, or routed by the hashring.
    /// Runs on the calling thread (decoding and the WAL fsync are the request's CPU and I/O).
    pub fn ingest_remote_write(
        &self,
        tenant: &str,
        version: ProtoVersion,
        body: &[u8],
    ) -> Result<Ingested, IngestError> {
        let limits = &self.config.limits;
        let tenant_limits = self.limits.for_tenant(tenant);
        let tighter = |flag: usize, file: Option<u64>| file.map_or(flag, |f| flag.min(f as usize));
        let max_body = tighter(limits.max_body_bytes, tenant_limits.size_bytes);
        let max_series = tighter(limits.max_series, tenant_limits.series);
        let max_samples = tighter(limits.max_samples, tenant_limits.samples);
        if body.len() > max_body {
            return Err(IngestError::BodyTooLarge {
                size: body.len(),
                limit: max_body,
            });
        }
        let raw = decode_snappy_body(body, limits.max_decoded_bytes)?;
        // The series limit is checked before decoding allocates per series.
        let max_histograms = max_samples / HISTOGRAM_SAMPLE_WEIGHT;
        let req = match version {
            ProtoVersion::V1 => {
                proto::remote_write::decode_v1_limited(&raw, max_series, max_histograms)
            }
            ProtoVersion::V2 => {
                proto::remote_write::decode_v2_limited(&raw, max_series, max_histograms)
            }
        }
        .map_err(|e| match e {
            proto::remote_write::DecodeError::TooManySeries { count, limit } => {
                IngestError::TooManySeries { count, limit }
            }
            proto::remote_write::DecodeError::TooManyHistograms { limit } => {
                IngestError::TooManyHistograms {
                    limit,
                    samples_limit: max_samples,
                }
            }
            e => IngestError::Protobuf(e.to_string()),
        })?;
        let samples = req.num_samples();
        let weighted = samples + req.num_histograms() * HISTOGRAM_SAMPLE_WEIGHT;
        if weighted > max_samples {
            return Err(IngestError::TooManySamples {
                count: weighted,
                limit: max_samples,
            });
        }
        if req.timeseries.is_empty() {
            // Metadata-only requests (Prometheus sends metadata separately): accepted.
            return Ok(Ingested::Empty);
        }
        crate::tenants::validate_tenant(tenant)?;
        if self.replicator.is_some() {
            // Remote Write 1.0 series are forwarded as the client encoded them.
            let series_bytes = match version {
                ProtoVersion::V1 => proto::remote_write::series_bytes_v1(&raw).ok(),
                ProtoVersion::V2 => None,
            }
            .filter(|b| b.len() == req.timeseries.len());
            let (plan, local, exemplars) = self.route(tenant, &req, series_bytes.as_deref())?;
            return Ok(Ingested::Routed {
                plan,
                local,
                written: Written {
                    samples,
                    histograms: req.num_histograms(),
                    exemplars,
                },
            });
        }
        let pending = self.write_local_deferred(tenant, req.timeseries.iter(), false)?;
        Ok(Ingested::Written(pending))
    }

    /// Plans where a request's series go (with `raw`, each series' encoded Remote Write 1.0
    /// bytes, forwarded as they are) and writes this node's share. The plan's remote batches
    /// are left to [`Replicator::execute`].
    pub fn route(
        &self,
        tenant: &str,
        req: &WriteRequest<'_>,
        raw: Option<&[&[u8]]>,
    ) -> Result<(Plan, Option<LocalReplica>, usize), IngestError> {
        let replicator = self
            .replicator
            .as_ref()
            .expect("route is only called with a hashring");
        let plan = replicator.plan(tenant, req, raw)?;
        let local = plan.local.as_ref().map(|batch| {
            self.write_local_deferred(tenant, Replicator::local_series(req, batch), false)
        });
        let exemplars = match &local {
            Some(Ok(pending)) => pending.outcome.accepted_exemplars,
            _ => 0,
        };
        Ok((plan, local, exemplars))
    }

    /// This node's replica of a routed write, once its fsync is done.
    pub async fn finish_replica(&self, local: LocalReplica) -> ReplicaResult {
        match local {
            Ok(pending) => ReplicaResult::of_outcome(&self.finish(pending).await),
            Err(e) => ReplicaResult::Unavailable(e.to_string()),
        }
    }

    /// Writes series into the tenant's TSDB (opened on first use), within the tenant's head
    /// series limit, and records the outcome in the metrics. `late`: the samples are late on
    /// purpose (hinted handoff deliveries) and go wherever the head still reaches.
    pub fn write_local<'a, 'b: 'a, I>(
        &self,
        tenant: &str,
        series: I,
        late: bool,
    ) -> Result<WriteOutcome, IngestError>
    where
        I: Iterator<Item = &'a TimeSeries<'b>> + Clone,
    {
        let pending = self.write_local_deferred(tenant, series, late)?;
        let result = pending.durable.wait();
        Ok(self.settle(pending.tenant, &pending.db, pending.outcome, result))
    }

    /// [`Receiver::write_local`] up to the WAL's fsync: hand the result to
    /// [`Receiver::finish`] before acknowledging the write.
    pub fn write_local_deferred<'a, 'b: 'a, I>(
        &self,
        tenant: &str,
        series: I,
        late: bool,
    ) -> Result<PendingWrite, IngestError>
    where
        I: Iterator<Item = &'a TimeSeries<'b>> + Clone,
    {
        let db = self.tenants.get_or_open(tenant)?;
        let limits = writer::HeadLimits {
            tenant: self.limits.for_tenant(tenant).head_series,
            node: self
                .config
                .node_head_series_limit
                .map(|limit| (limit, self.tenants.head_series() as u64)),
        };
        let (outcome, durable) = writer::write_series_deferred(&db, series, limits, late);
        Ok(PendingWrite {
            tenant: tenant.to_string(),
            db,
            outcome,
            durable,
        })
    }

    /// Waits for a deferred write's fsync without blocking the thread (another write's fsync
    /// may be under way), then records what it stored.
    pub async fn finish(&self, pending: PendingWrite) -> WriteOutcome {
        let durable = pending.durable;
        let last = durable.last_fsync();
        let result =
            std::future::poll_fn(|cx| durable.poll_with(cx, |fsync| run_fsync(last, fsync))).await;
        self.settle(pending.tenant, &pending.db, pending.outcome, result)
    }

    fn settle(
        &self,
        tenant: String,
        db: &Db,
        mut outcome: WriteOutcome,
        synced: tsdb::Result<()>,
    ) -> WriteOutcome {
        if let Err(e) = synced {
            writer::commit_failed(db, &mut outcome, &e);
        }
        self.record(&tenant, &outcome);
        if outcome.error.is_some() {
            tracing::debug!(tenant, status = outcome.status(), message = %outcome.message(), "write rejected");
        }
        outcome
    }

    /// Counts what a write stored and rejected, per tenant (and reason).
    fn record(&self, tenant: &str, outcome: &WriteOutcome) {
        let t = ("tenant".to_string(), tenant.to_string());
        self.metrics
            .samples_ingested
            .get_or_create(&vec![t.clone()])
            .inc_by(outcome.accepted_samples as u64);
        if outcome.accepted_histograms > 0 {
            self.metrics
                .histograms_ingested
                .get_or_create(&vec![t.clone()])
                .inc_by(outcome.accepted_histograms as u64);
        }
        if outcome.accepted_exemplars > 0 {
            self.metrics
                .exemplars_ingested
                .get_or_create(&vec![t.clone()])
                .inc_by(outcome.accepted_exemplars as u64);
        }
        for (reason, n) in &outcome.rejected {
            self.metrics
                .samples_rejected
                .get_or_create(&vec![
                    t.clone(),
                    ("reason".to_string(), reason.as_str().to_string()),
                ])
                .inc_by(*n as u64);
        }
    }
}

use tsdb::wal::SNAPPY_MAX_EXPANSION;

/// Decompresses a remote-write body (snappy block format). The length the body declares is
/// checked first, against `max_decoded` and against what its size can hold at all, so a
/// few hostile bytes cannot make the receiver allocate the limit before failing: what is
/// allocated stays within [`SNAPPY_MAX_EXPANSION`] times the body.
pub fn decode_snappy_body(body: &[u8], max_decoded: usize) -> Result<Vec<u8>, IngestError> {
    let declared = snap::raw::decompress_len(body).map_err(IngestError::Snappy)?;
    if declared > max_decoded {
        return Err(IngestError::DecodedTooLarge {
            size: declared,
            limit: max_decoded,
        });
    }
    if declared > body.len().saturating_mul(SNAPPY_MAX_EXPANSION) {
        return Err(IngestError::SnappyDeclaredLength {
            declared,
            size: body.len(),
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(IngestError::Snappy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Whether a task spawned on a one-worker runtime gets to run while `run_fsync` runs an
    /// fsync that waits for it (up to a second).
    fn others_run_during_fsync(last: Duration) -> bool {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(rt.spawn(async move {
            let (tx, rx) = std::sync::mpsc::channel();
            // Spawned from the worker, so it is queued on this very worker.
            let other = tokio::spawn(async move {
                let _ = tx.send(());
            });
            let mut ran = false;
            let result = run_fsync(last, &mut || {
                ran = rx.recv_timeout(Duration::from_secs(1)).is_ok();
                Ok(())
            });
            result.unwrap();
            other.await.unwrap();
            ran
        }))
        .unwrap()
    }

    #[test]
    fn a_slow_disks_fsync_leaves_the_worker_to_other_tasks() {
        assert!(others_run_during_fsync(SLOW_FSYNC));
        assert!(!others_run_during_fsync(Duration::from_micros(100)));
    }
}
