//! The endpoints `cairn query` fans out to, and what it knows about each.
//!
//! Endpoints come from `--endpoint` flags and from file service discovery
//! (`--endpoint.sd-files`, re-read every `--endpoint.sd-interval`). Every
//! `--endpoint.info-interval` each endpoint is asked `thanos.info.Info/Info`, which says its
//! component type, the external label sets of the TSDBs behind it and the time range they
//! cover. That is what routing uses: a Series (or label) request goes only to endpoints whose
//! time range overlaps the request's and one of whose label sets the request's matchers can
//! match (Thanos' `LabelSetsMatch`: a matcher on a label the set has must match its value).
//!
//! Health: an endpoint whose last Info call failed is "down". Thanos Query drops such an
//! endpoint (unless it was given with `--endpoint-strict`) and answers from the others without a
//! word; Cairn keeps it in every fan-out it could match (by its last known label sets and time
//! range, or all of them if it never answered) but does not call it: the request reports it as
//! failed straight away, which becomes a warning in the response (partial response) or fails the
//! query (`partial_response=false`). An answer is then never silently incomplete, and a dead
//! endpoint costs no time-out. An endpoint removed from the flags or the SD files is forgotten
//! at the next update.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use proto::thanos::info::info_client::InfoClient;
use proto::thanos::info::{InfoRequest, InfoResponse};
use tonic::transport::Channel;
use tsdb::Labels;

use crate::error::{Classify, StatusClass};
use crate::series_set::labels_from_proto;

/// How the endpoint set is configured.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// Static endpoints (`host:port`).
    pub static_endpoints: Vec<String>,
    /// File SD paths (a `*`/`?` pattern in the last component is expanded).
    pub sd_files: Vec<PathBuf>,
    /// How often Info is asked (Thanos: every 5 s).
    pub info_interval: Duration,
    /// How long an Info call may take (Thanos' `--endpoint.info-timeout`, 5 s).
    pub info_timeout: Duration,
    /// How often SD files are re-read.
    pub sd_interval: Duration,
    /// TLS to the endpoints (`--grpc-client-tls-*`); None: plaintext.
    pub client_tls: Option<Arc<tls::ClientTls>>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            static_endpoints: Vec::new(),
            sd_files: Vec::new(),
            info_interval: Duration::from_secs(5),
            info_timeout: Duration::from_secs(5),
            sd_interval: Duration::from_secs(30),
            client_tls: None,
        }
    }
}

/// What an endpoint said about itself in its last successful Info.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointInfo {
    pub component_type: String,
    /// External label sets of the TSDBs behind the endpoint (empty: it has none).
    pub label_sets: Vec<Labels>,
    /// Time range its StoreAPI covers; `None` when it has no StoreAPI.
    pub store_range: Option<(i64, i64)>,
    /// Time range of its exemplars API; `None` when it has none.
    pub exemplars_range: Option<(i64, i64)>,
    /// Its StoreAPI honours `without_replica_labels` (leaves those labels out and sorts what
    /// is left), so its `Series` answers are in label order without them.
    pub supports_without_replica_labels: bool,
}

impl EndpointInfo {
    fn from_response(r: &InfoResponse) -> Self {
        let mut label_sets: Vec<Labels> = r
            .label_sets
            .iter()
            .map(|s| labels_from_proto(&s.labels))
            .collect();
        label_sets.sort();
        label_sets.dedup();
        EndpointInfo {
            component_type: r.component_type.clone(),
            label_sets,
            store_range: r.store.as_ref().map(|s| (s.min_time, s.max_time)),
            exemplars_range: r.exemplars.as_ref().map(|e| (e.min_time, e.max_time)),
            supports_without_replica_labels: r
                .store
                .as_ref()
                .is_some_and(|s| s.supports_without_replica_labels),
        }
    }
}

/// An endpoint's health as the last Info call left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Not asked yet.
    Unknown,
    Up,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Status {
    last_check: Option<SystemTime>,
    last_error: Option<String>,
    info: Option<EndpointInfo>,
}

/// Why an endpoint has no gRPC channel.
#[derive(Clone, Debug, thiserror::Error)]
pub enum EndpointError {
    /// The address cannot be dialled.
    #[error("{0}")]
    InvalidAddress(Arc<tls::InvalidAddress>),
}

impl Classify for EndpointError {
    /// A request that needs the endpoint fails for it as for any failing endpoint.
    fn class(&self) -> StatusClass {
        match self {
            EndpointError::InvalidAddress(_) => StatusClass::Internal,
        }
    }
}

/// One endpoint: its address, its gRPC channel and its status.
pub struct Endpoint {
    pub address: String,
    /// An error when the address is not a valid URI (its text is the endpoint's last error).
    channel: Result<Channel, EndpointError>,
    status: RwLock<Status>,
}

/// A copy of an endpoint's status, for the stores page and metrics.
#[derive(Clone, Debug)]
pub struct EndpointSnapshot {
    pub address: String,
    pub health: Health,
    pub last_check: Option<SystemTime>,
    pub last_error: Option<String>,
    /// Last known Info (kept while the endpoint is down).
    pub info: Option<EndpointInfo>,
}

/// Largest gRPC message accepted from an endpoint (Thanos sets no limit; tonic's default of
/// 4 MiB is below what a Series frame with a long series can reach).
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

fn channel_for(address: &str, tls: Option<&Arc<tls::ClientTls>>) -> Result<Channel, EndpointError> {
    tls::lazy_channel(address, tls, |e| {
        e.connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_adaptive_window(true)
    })
    .map_err(|e| EndpointError::InvalidAddress(Arc::new(e)))
}

impl Endpoint {
    fn new(address: String, tls: Option<&Arc<tls::ClientTls>>) -> Self {
        let channel = channel_for(&address, tls);
        let status = match &channel {
            Ok(_) => Status::default(),
            Err(e) => Status {
                last_check: Some(SystemTime::now()),
                last_error: Some(e.to_string()),
                info: None,
            },
        };
        Endpoint {
            address,
            channel,
            status: RwLock::new(status),
        }
    }

    /// The gRPC channel, or why there is none.
    pub fn channel(&self) -> Result<Channel, EndpointError> {
        self.channel.clone()
    }

    pub fn snapshot(&self) -> EndpointSnapshot {
        let s = self.status.read().unwrap().clone();
        let health = match (&s.last_check, &s.last_error) {
            (None, _) => Health::Unknown,
            (Some(_), None) => Health::Up,
            (Some(_), Some(_)) => Health::Down,
        };
        EndpointSnapshot {
            address: self.address.clone(),
            health,
            last_check: s.last_check,
            last_error: s.last_error,
            info: s.info,
        }
    }

    /// Asks Info and records the answer (or the failure).
    async fn refresh(&self, timeout: Duration) {
        let result = match &self.channel {
            Err(_) => return,
            Ok(channel) => {
                let mut client = InfoClient::new(channel.clone());
                match tokio::time::timeout(timeout, client.info(InfoRequest::default())).await {
                    Ok(Ok(r)) => Ok(EndpointInfo::from_response(r.get_ref())),
                    Ok(Err(status)) => Err(crate::fanout::describe_status(&status)),
                    Err(_) => Err(format!("Info timed out after {timeout:?}")),
                }
            }
        };
        let mut s = self.status.write().unwrap();
        let was_up = s.last_check.is_some() && s.last_error.is_none();
        s.last_check = Some(SystemTime::now());
        match result {
            Ok(info) => {
                if !was_up || s.info.as_ref() != Some(&info) {
                    tracing::info!(
                        endpoint = %self.address,
                        component = %info.component_type,
                        label_sets = %describe_label_sets(&info.label_sets),
                        "endpoint up"
                    );
                }
                s.last_error = None;
                s.info = Some(info);
            }
            Err(e) => {
                if was_up || s.last_error.is_none() {
                    tracing::warn!(endpoint = %self.address, error = %e, "endpoint down");
                }
                s.last_error = Some(e);
            }
        }
    }
}

/// Label sets as `{a="b"}, {c="d"}` for logs and messages.
pub fn describe_label_sets(sets: &[Labels]) -> String {
    if sets.is_empty() {
        return "{}".to_string();
    }
    sets.iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the matchers can match at least one of the label sets (no label sets: yes).
pub fn label_sets_match(matchers: &[promql::Matcher], sets: &[Labels]) -> bool {
    sets.is_empty()
        || sets.iter().any(|set| {
            matchers.iter().all(|m| match set.get(&m.name) {
                Some(v) => m.matches(v),
                None => true,
            })
        })
}

/// An endpoint chosen for a request.
pub struct Target {
    pub endpoint: Arc<Endpoint>,
    /// Set when the endpoint is down: the request fails for it with this message, uncalled.
    pub down: Option<String>,
    /// Its last Info said it honours `without_replica_labels`.
    pub supports_without_replica_labels: bool,
}

impl Target {
    /// `endpoint` as a target, as its last `status` leaves it.
    fn new(endpoint: Arc<Endpoint>, status: &Status) -> Self {
        let down = match (&status.last_check, &status.last_error) {
            (Some(_), Some(err)) => Some(format!("endpoint {} is down: {err}", endpoint.address)),
            _ => None,
        };
        let supports_without_replica_labels = status
            .info
            .as_ref()
            .is_some_and(|i| i.supports_without_replica_labels);
        Target {
            endpoint,
            down,
            supports_without_replica_labels,
        }
    }
}

/// Every endpoint, kept up to date by [`EndpointSet::run`].
pub struct EndpointSet {
    config: EndpointConfig,
    endpoints: RwLock<BTreeMap<String, Arc<Endpoint>>>,
    /// Targets found in each SD file.
    sd_targets: Mutex<BTreeMap<PathBuf, Vec<String>>>,
    first_update_done: AtomicBool,
}

impl EndpointSet {
    pub fn new(config: EndpointConfig) -> Arc<Self> {
        Arc::new(EndpointSet {
            config,
            endpoints: RwLock::new(BTreeMap::new()),
            sd_targets: Mutex::new(BTreeMap::new()),
            first_update_done: AtomicBool::new(false),
        })
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Whether every endpoint has been asked Info at least once (readiness).
    pub fn first_update_done(&self) -> bool {
        self.first_update_done.load(Ordering::Acquire)
    }

    /// Re-reads the SD files; a file that fails keeps its previous targets.
    pub fn refresh_sd_files(&self) {
        let mut found: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
        let previous = self.sd_targets.lock().unwrap().clone();
        for pattern in &self.config.sd_files {
            let (files, errors) = crate::sd::read(pattern);
            for e in &errors {
                tracing::warn!(error = %e, "endpoint SD file");
            }
            let read_ok: Vec<&PathBuf> = files.iter().map(|(p, _)| p).collect();
            for (path, targets) in &files {
                found.insert(path.clone(), targets.clone());
            }
            // Files of this pattern that failed this time keep what they had.
            if !errors.is_empty() {
                for (path, targets) in &previous {
                    let same_pattern = match (path.parent(), pattern.parent()) {
                        (Some(a), Some(b)) => a == b,
                        _ => false,
                    };
                    if same_pattern && !read_ok.contains(&path) && path.exists() {
                        found.insert(path.clone(), targets.clone());
                    }
                }
            }
        }
        *self.sd_targets.lock().unwrap() = found;
    }

    /// The addresses to use now: static ones and SD ones, each once, sorted.
    pub fn addresses(&self) -> Vec<String> {
        let mut all: Vec<String> = self.config.static_endpoints.clone();
        for targets in self.sd_targets.lock().unwrap().values() {
            all.extend(targets.iter().cloned());
        }
        all.sort();
        all.dedup();
        all
    }

    /// Adds new endpoints, forgets removed ones and asks every endpoint Info (concurrently).
    pub async fn update(&self) {
        let wanted = self.addresses();
        let endpoints: Vec<Arc<Endpoint>> = {
            let mut map = self.endpoints.write().unwrap();
            map.retain(|addr, _| {
                let keep = wanted.contains(addr);
                if !keep {
                    tracing::info!(endpoint = %addr, "endpoint removed");
                }
                keep
            });
            for addr in &wanted {
                map.entry(addr.clone()).or_insert_with(|| {
                    Arc::new(Endpoint::new(addr.clone(), self.config.client_tls.as_ref()))
                });
            }
            map.values().cloned().collect()
        };
        let timeout = self.config.info_timeout;
        futures::future::join_all(endpoints.iter().map(|e| e.refresh(timeout))).await;
        self.first_update_done.store(true, Ordering::Release);
    }

    /// Keeps the set up to date until `stop` resolves.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let mut info_tick = tokio::time::interval(self.config.info_interval);
        info_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sd_tick = tokio::time::interval(self.config.sd_interval);
        sd_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let has_sd = !self.config.sd_files.is_empty();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = sd_tick.tick(), if has_sd => {
                    let set = self.clone();
                    let _ = tokio::task::spawn_blocking(move || set.refresh_sd_files()).await;
                    self.update().await;
                }
                _ = info_tick.tick() => self.update().await,
            }
        }
    }

    /// Every endpoint, sorted by address.
    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.endpoints.read().unwrap().values().cloned().collect()
    }

    /// Every endpoint's status, sorted by address.
    pub fn snapshots(&self) -> Vec<EndpointSnapshot> {
        self.endpoints
            .read()
            .unwrap()
            .values()
            .map(|e| e.snapshot())
            .collect()
    }

    /// The endpoints a StoreAPI request over `[mint, maxt]` with `matchers` must go to.
    pub fn targets(&self, mint: i64, maxt: i64, matchers: &[promql::Matcher]) -> Vec<Target> {
        let endpoints: Vec<Arc<Endpoint>> =
            self.endpoints.read().unwrap().values().cloned().collect();
        let mut out = Vec::new();
        for e in endpoints {
            let s = e.status.read().unwrap().clone();
            if let Some(info) = &s.info {
                let Some((lo, hi)) = info.store_range else {
                    continue;
                };
                if mint > hi || maxt < lo {
                    continue;
                }
                if !label_sets_match(matchers, &info.label_sets) {
                    continue;
                }
            }
            out.push(Target::new(e, &s));
        }
        out
    }

    /// The endpoints that advertise the exemplars API over `[mint, maxt]`.
    pub fn exemplar_targets(&self, mint: i64, maxt: i64) -> Vec<Target> {
        let endpoints: Vec<Arc<Endpoint>> =
            self.endpoints.read().unwrap().values().cloned().collect();
        let mut out = Vec::new();
        for e in endpoints {
            let s = e.status.read().unwrap().clone();
            let Some((lo, hi)) = s.info.as_ref().and_then(|i| i.exemplars_range) else {
                continue;
            };
            if mint > hi || maxt < lo {
                continue;
            }
            out.push(Target::new(e, &s));
        }
        out
    }

    /// Records an outcome for an endpoint directly (tests).
    #[cfg(test)]
    pub(crate) fn set_status_for_test(
        &self,
        address: &str,
        info: Option<EndpointInfo>,
        error: Option<&str>,
    ) {
        let mut map = self.endpoints.write().unwrap();
        let e = map.entry(address.to_string()).or_insert_with(|| {
            Arc::new(Endpoint::new(
                address.to_string(),
                self.config.client_tls.as_ref(),
            ))
        });
        let mut s = e.status.write().unwrap();
        s.last_check = Some(SystemTime::now());
        s.last_error = error.map(str::to_string);
        if info.is_some() {
            s.info = info;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql::{MatchType, Matcher};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn m(op: MatchType, name: &str, value: &str) -> Matcher {
        Matcher::new(op, name, value).unwrap()
    }

    #[test]
    fn label_sets_match_like_thanos() {
        let sets = vec![
            labels(&[("replica", "r1"), ("tenant_id", "a")]),
            labels(&[("replica", "r1"), ("tenant_id", "b")]),
        ];
        let job = m(MatchType::Equal, "job", "x");
        assert!(label_sets_match(std::slice::from_ref(&job), &sets));
        assert!(label_sets_match(
            &[job.clone(), m(MatchType::Equal, "tenant_id", "b")],
            &sets
        ));
        assert!(!label_sets_match(
            &[job.clone(), m(MatchType::Equal, "tenant_id", "c")],
            &sets
        ));
        assert!(!label_sets_match(
            &[m(MatchType::Regex, "replica", "r[23]")],
            &sets
        ));
        assert!(label_sets_match(
            &[m(MatchType::NotEqual, "tenant_id", "a")],
            &sets
        ));
        assert!(label_sets_match(&[job], &[]));
    }

    #[tokio::test]
    async fn targets_route_by_time_and_labels_and_flag_down_endpoints() {
        let set = EndpointSet::new(EndpointConfig::default());
        let info = |replica: &str, lo: i64, hi: i64| EndpointInfo {
            component_type: "receive".into(),
            label_sets: vec![labels(&[("replica", replica)])],
            store_range: Some((lo, hi)),
            exemplars_range: None,
            supports_without_replica_labels: true,
        };
        set.set_status_for_test("127.0.0.1:1", Some(info("r1", 0, 1000)), None);
        set.set_status_for_test("127.0.0.1:2", Some(info("r2", 2000, i64::MAX)), None);
        set.set_status_for_test(
            "127.0.0.1:3",
            Some(info("r3", 0, i64::MAX)),
            Some("refused"),
        );
        // Never answered: could hold anything.
        set.set_status_for_test("127.0.0.1:4", None, Some("refused"));
        let addrs = |targets: Vec<Target>| -> Vec<(String, bool)> {
            targets
                .into_iter()
                .map(|t| (t.endpoint.address.clone(), t.down.is_some()))
                .collect()
        };
        let job = m(MatchType::Equal, "job", "x");
        assert_eq!(
            addrs(set.targets(500, 800, std::slice::from_ref(&job))),
            [
                ("127.0.0.1:1".to_string(), false),
                ("127.0.0.1:3".to_string(), true),
                ("127.0.0.1:4".to_string(), true)
            ]
        );
        assert_eq!(
            addrs(set.targets(500, 2500, &[job, m(MatchType::Equal, "replica", "r2")])),
            [
                ("127.0.0.1:2".to_string(), false),
                ("127.0.0.1:4".to_string(), true)
            ]
        );
        let down = set.targets(0, 10, &[]);
        assert!(down[1]
            .down
            .as_deref()
            .unwrap()
            .contains("endpoint 127.0.0.1:3 is down: refused"));
    }

    #[test]
    fn sd_files_add_endpoints_and_a_broken_file_keeps_its_targets() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sd.yml");
        std::fs::write(&file, "- targets: ['b:1', 'a:1']\n").unwrap();
        let set = EndpointSet::new(EndpointConfig {
            static_endpoints: vec!["s:1".into(), "a:1".into()],
            sd_files: vec![dir.path().join("*.yml")],
            ..Default::default()
        });
        set.refresh_sd_files();
        assert_eq!(set.addresses(), ["a:1", "b:1", "s:1"]);
        std::fs::write(&file, "- targets: [[[").unwrap();
        set.refresh_sd_files();
        assert_eq!(set.addresses(), ["a:1", "b:1", "s:1"]);
        std::fs::write(&file, "- targets: ['c:1']\n").unwrap();
        set.refresh_sd_files();
        assert_eq!(set.addresses(), ["a:1", "c:1", "s:1"]);
        std::fs::remove_file(&file).unwrap();
        set.refresh_sd_files();
        assert_eq!(set.addresses(), ["a:1", "s:1"]);
    }
}
