//! Watching the hashrings file: the current rings, shared with the write path, swapped when the
//! file changes; a change that does not parse or build is refused with a log line and a
//! counter, and the old rings stay.
//!
//! The counters and gauges mirror Thanos' so the design's dashboards work unchanged:
//! `thanos_receive_hashrings_file_refreshes_total`, `_changes_total`, `_errors_total`,
//! `thanos_receive_config_hash`, `thanos_receive_config_last_reload_successful`,
//! `thanos_receive_config_last_reload_success_timestamp_seconds`,
//! `thanos_receive_hashring_nodes{name}`, `thanos_receive_hashring_tenants{name}`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::ConfigError;

use super::{Algorithm, Hashrings, HashringsConfig, Severity};

/// The current hashrings, read by request handlers and swapped on reload.
#[derive(Clone, Debug)]
pub struct SharedHashrings {
    current: Arc<RwLock<Arc<Hashrings>>>,
    /// Bumped on every swap, so users can notice a change (Thanos flushes heads on one).
    generation: Arc<AtomicU64>,
}

impl SharedHashrings {
    pub fn new(rings: Hashrings) -> SharedHashrings {
        SharedHashrings {
            current: Arc::new(RwLock::new(Arc::new(rings))),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn get(&self) -> Arc<Hashrings> {
        self.current.read().unwrap().clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn set(&self, rings: Hashrings) {
        *self.current.write().unwrap() = Arc::new(rings);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// One hashring's gauges.
#[derive(Clone, Debug, PartialEq)]
pub struct HashringGauges {
    /// The `name` label: the file's `hashring` (may be empty, as in Thanos).
    pub name: String,
    pub nodes: usize,
    pub tenants: usize,
    /// The most loaded endpoint's exact share of the hash space over the mean share (1.0: an
    /// even spread; ketama's 200 sections per endpoint give about 1.01-1.07).
    pub skew: f64,
}

/// What the hashring metrics expose; updated by the watcher.
#[derive(Debug, Default)]
pub struct WatchStatus {
    refreshes: AtomicU64,
    changes: AtomicU64,
    errors: AtomicU64,
    last_reload_successful: AtomicBool,
    last_success_unix_millis: AtomicU64,
    config_hash_bits: AtomicU64,
    hashrings: Mutex<Vec<HashringGauges>>,
    /// What the file in use has that loads but has caused incidents (or is suspicious):
    /// (`incident` or `warning`, the problem).
    problems: Mutex<Vec<(&'static str, String)>>,
}

/// A consistent read of [`WatchStatus`].
#[derive(Clone, Debug, PartialEq)]
pub struct WatchSnapshot {
    /// Re-reads of the file (`thanos_receive_hashrings_file_refreshes_total`).
    pub refreshes: u64,
    /// Changes applied (`thanos_receive_hashrings_file_changes_total`).
    pub changes: u64,
    /// Reads that failed or files refused (`thanos_receive_hashrings_file_errors_total`).
    pub errors: u64,
    /// `thanos_receive_config_last_reload_successful`.
    pub last_reload_successful: bool,
    /// `thanos_receive_config_last_reload_success_timestamp_seconds`.
    pub last_success: Option<SystemTime>,
    /// `thanos_receive_config_hash` of the rings in use.
    pub config_hash: f64,
    /// `thanos_receive_hashring_nodes` and `_tenants` of the rings in use.
    pub hashrings: Vec<HashringGauges>,
    /// The lint's findings on the file in use: (`incident` or `warning`, the problem).
    pub problems: Vec<(&'static str, String)>,
}

impl WatchStatus {
    pub fn snapshot(&self) -> WatchSnapshot {
        let millis = self.last_success_unix_millis.load(Ordering::Relaxed);
        WatchSnapshot {
            refreshes: self.refreshes.load(Ordering::Relaxed),
            changes: self.changes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            last_reload_successful: self.last_reload_successful.load(Ordering::Relaxed),
            last_success: (millis > 0).then(|| UNIX_EPOCH + Duration::from_millis(millis)),
            config_hash: f64::from_bits(self.config_hash_bits.load(Ordering::Relaxed)),
            hashrings: self.hashrings.lock().unwrap().clone(),
            problems: self.problems.lock().unwrap().clone(),
        }
    }

    fn applied(&self, text: &[u8], rings: &Hashrings, algorithm: Algorithm) {
        self.last_reload_successful.store(true, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        self.last_success_unix_millis
            .store(now.max(1), Ordering::Relaxed);
        self.config_hash_bits
            .store(config_hash(text).to_bits(), Ordering::Relaxed);
        *self.hashrings.lock().unwrap() = rings
            .rings()
            .iter()
            .map(|r| {
                let shares = r.ring.hash_space_shares();
                let mean = rings.replication_factor() as f64 / shares.len().max(1) as f64;
                let max = shares.iter().map(|(_, any)| *any).fold(0.0, f64::max);
                HashringGauges {
                    name: r.name.clone(),
                    nodes: r.ring.endpoints().len(),
                    tenants: r.tenants.len(),
                    skew: max / mean,
                }
            })
            .collect();
        // The file loads, but a default hashring smaller than the tenant hashrings (the design's
        // "hashring missing nodes" outage) or a tenant no hashring reaches is worth a warning
        // on every receiver that applies it, not only in `cairn tools hashring validate`.
        let problems: Vec<(&'static str, String)> = std::str::from_utf8(text)
            .ok()
            .and_then(|t| HashringsConfig::parse(t).ok())
            .map(|c| c.lint(algorithm, rings.replication_factor()))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| match p.severity() {
                Severity::Incident => Some(("incident", p.to_string())),
                Severity::Warning => Some(("warning", p.to_string())),
                Severity::Refused => None,
            })
            .collect();
        for (severity, problem) in &problems {
            tracing::warn!(severity, problem = %problem, "the hashrings file in use has a problem");
        }
        for g in self.hashrings.lock().unwrap().iter() {
            if g.skew > SKEW_WARNING {
                tracing::warn!(hashring = %g.name, skew = g.skew, "hashring spreads series unevenly: its most loaded receiver owns {:.2} times the mean share", g.skew);
            }
        }
        *self.problems.lock().unwrap() = problems;
    }

    fn failed(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.last_reload_successful.store(false, Ordering::Relaxed);
    }
}

/// Thanos' `thanos_receive_config_hash` of a file's bytes: the first 48 bits of its SHA-256,
/// little-endian, as a float (48 bits fit a float64's 53-bit mantissa exactly).
pub fn config_hash(bytes: &[u8]) -> f64 {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut eight = [0u8; 8];
    eight[..6].copy_from_slice(&digest.as_ref()[..6]);
    u64::from_le_bytes(eight) as f64
}

/// Exact max/mean share above which a receiver warns: ketama with a few endpoints stays under
/// 1.1; hashmod is exact; zones of unequal size go far above.
const SKEW_WARNING: f64 = 1.25;

/// The outcome of one re-read.
#[derive(Debug)]
pub enum Reload {
    /// The file has the content last seen.
    Unchanged,
    /// New rings are in use.
    Applied,
    /// The file could not be read, parsed or built; the old rings stay.
    Refused(ConfigError),
}

/// Loads the hashrings file, then re-reads it periodically and when it changes.
pub struct HashringWatcher {
    path: PathBuf,
    algorithm: Algorithm,
    replication_factor: usize,
    shared: SharedHashrings,
    status: Arc<WatchStatus>,
    /// The content last read (applied or refused), so a refused file is reported once.
    last_seen: Vec<u8>,
    /// The file's modification time and length when last read.
    last_stat: Option<(SystemTime, u64)>,
}

impl HashringWatcher {
    /// Reads the file once; a file that is missing or invalid at start-up is an error, as in
    /// Thanos.
    pub fn load(
        path: PathBuf,
        algorithm: Algorithm,
        replication_factor: usize,
    ) -> Result<HashringWatcher, ConfigError> {
        let text = read(&path)?;
        let rings = build(&path, &text, algorithm, replication_factor)?;
        let status = Arc::new(WatchStatus::default());
        status.applied(&text, &rings, algorithm);
        Ok(HashringWatcher {
            last_stat: stat(&path),
            path,
            algorithm,
            replication_factor,
            shared: SharedHashrings::new(rings),
            status,
            last_seen: text,
        })
    }

    /// The rings in use; stays current across reloads.
    pub fn shared(&self) -> SharedHashrings {
        self.shared.clone()
    }

    pub fn status(&self) -> Arc<WatchStatus> {
        self.status.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file and applies it when its content changed and it is valid.
    pub fn check(&mut self) -> Reload {
        self.status.refreshes.fetch_add(1, Ordering::Relaxed);
        self.last_stat = stat(&self.path);
        let text = match read(&self.path) {
            Ok(t) => t,
            Err(e) => {
                self.status.failed();
                return Reload::Refused(e);
            }
        };
        if text == self.last_seen {
            return Reload::Unchanged;
        }
        let built = build(&self.path, &text, self.algorithm, self.replication_factor);
        self.last_seen = text;
        match built {
            Ok(rings) => {
                self.status.changes.fetch_add(1, Ordering::Relaxed);
                self.status.applied(&self.last_seen, &rings, self.algorithm);
                self.shared.set(rings);
                Reload::Applied
            }
            Err(e) => {
                self.status.failed();
                Reload::Refused(e)
            }
        }
    }

    /// Whether the file's modification time or length differ from the last read.
    fn changed_on_disk(&self) -> bool {
        stat(&self.path) != self.last_stat
    }

    /// Re-reads the file every `every`, and within a second of a change to its modification
    /// time or size (a Kubernetes ConfigMap update swaps a symlink, which this sees too).
    pub async fn run(mut self, every: Duration) {
        let poll = every.min(Duration::from_secs(1));
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_read = Instant::now();
        loop {
            tick.tick().await;
            if last_read.elapsed() < every && !self.changed_on_disk() {
                continue;
            }
            last_read = Instant::now();
            match self.check() {
                Reload::Unchanged => {}
                Reload::Applied => {
                    let s = self.status.snapshot();
                    tracing::info!(
                        path = %self.path.display(),
                        hashrings = s.hashrings.len(),
                        config_hash = s.config_hash,
                        "hashrings reloaded"
                    );
                }
                Reload::Refused(e) => {
                    tracing::error!(error = %e, "hashrings file refused; keeping the previous hashrings")
                }
            }
        }
    }
}

const FILE: &str = "hashrings file";

fn read(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::Read {
        file: FILE,
        path: path.to_path_buf(),
        source,
    })
}

fn stat(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn build(
    path: &Path,
    text: &[u8],
    algorithm: Algorithm,
    replication_factor: usize,
) -> Result<Hashrings, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        file: FILE,
        path: path.to_path_buf(),
        reason,
    };
    let text = std::str::from_utf8(text).map_err(|e| invalid(format!("not UTF-8: {e}")))?;
    Hashrings::parse(text, algorithm, replication_factor).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"[{"hashring": "default", "endpoints": ["a:1", "b:1", "c:1"]}]"#;

    #[test]
    fn a_default_hashring_missing_receivers_loads_with_an_incident_and_its_skew() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hashrings.json");
        // The design's outage: tenants spread over three receivers, everyone else on one.
        std::fs::write(
            &path,
            r#"[{"hashring": "t", "tenants": ["t"], "endpoints": ["a:1", "b:1", "c:1"]},
                {"hashring": "default", "endpoints": ["a:1"]}]"#,
        )
        .unwrap();
        let w = HashringWatcher::load(path, Algorithm::Ketama, 1).unwrap();
        let s = w.status().snapshot();
        assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
        assert_eq!(s.problems[0].0, "incident");
        assert!(s.problems[0].1.contains("default"), "{:?}", s.problems);
        let default = s.hashrings.iter().find(|g| g.name == "default").unwrap();
        assert_eq!(default.skew, 1.0);
        // Zones of unequal size: one receiver alone in its zone holds a copy of every series.
        std::fs::write(
            dir.path().join("zones.json"),
            r#"[{"hashring": "default", "endpoints": [{"address": "a:1", "az": "x"}, {"address": "b:1", "az": "x"},
                {"address": "c:1", "az": "x"}, {"address": "d:1", "az": "y"}]}]"#,
        )
        .unwrap();
        let w = HashringWatcher::load(dir.path().join("zones.json"), Algorithm::Ketama, 2).unwrap();
        let skew = w.status().snapshot().hashrings[0].skew;
        assert!((skew - 2.0).abs() < 1e-9, "{skew}");
    }

    #[test]
    fn applies_valid_changes_and_refuses_invalid_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hashrings.json");
        std::fs::write(&path, GOOD).unwrap();
        let mut w = HashringWatcher::load(path.clone(), Algorithm::Ketama, 2).unwrap();
        let shared = w.shared();
        let status = w.status();
        let s = status.snapshot();
        assert!(s.last_reload_successful);
        assert!(s.last_success.is_some());
        assert_eq!(s.config_hash, config_hash(GOOD.as_bytes()));
        assert_eq!(s.hashrings.len(), 1);
        let g = &s.hashrings[0];
        assert_eq!((g.name.as_str(), g.nodes, g.tenants), ("default", 3, 0));
        // Three ketama endpoints split the hash space within a few percent of a third each.
        assert!((1.0..1.1).contains(&g.skew), "{}", g.skew);
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert!(matches!(w.check(), Reload::Unchanged));

        // A valid change applies without a restart.
        let four = r#"[{"hashring": "default", "endpoints": ["a:1", "b:1", "c:1", "d:1"]},
                       {"hashring": "t", "tenants": ["t"], "endpoints": ["a:1", "b:1"]}]"#;
        std::fs::write(&path, four).unwrap();
        assert!(matches!(w.check(), Reload::Applied));
        // It loads, but the default hashring listed first shadows "t": an incident to report.
        let problems = status.snapshot().problems;
        assert_eq!(problems.len(), 1);
        assert!(problems[0].1.contains("never used"), "{problems:?}");
        assert_eq!(shared.generation(), 1);
        assert_eq!(shared.get().rings()[0].ring.endpoints().len(), 4);
        let s = status.snapshot();
        assert_eq!((s.refreshes, s.changes, s.errors), (2, 1, 0));
        assert_eq!(s.config_hash, config_hash(four.as_bytes()));
        assert_eq!(s.hashrings[1].nodes, 2);
        assert_eq!(s.hashrings[1].tenants, 1);

        // Invalid changes are refused and counted; the rings in use stay.
        for bad in [
            "[{",                                                        // parse error
            r#"[{"endpoints": ["a:1"]}]"#,                               // fewer than RF 2
            r#"[{"endpoints": ["a:1", "b:1", "a:1"]}]"#,                 // duplicate
            r#"[{"endpoints": ["a:1", "b:1"], "algorithm": "maglev"}]"#, // unknown algorithm
            "[]",                                                        // empty
        ] {
            std::fs::write(&path, bad).unwrap();
            match w.check() {
                Reload::Refused(e) => assert!(e.to_string().contains("hashrings.json"), "{e}"),
                other => panic!("{bad}: {other:?}"),
            }
            assert_eq!(shared.get().rings()[0].ring.endpoints().len(), 4);
            assert!(!status.snapshot().last_reload_successful);
            // The same bad content is reported once.
            assert!(matches!(w.check(), Reload::Unchanged));
        }
        let s = status.snapshot();
        assert_eq!(s.errors, 5);
        assert_eq!(
            s.config_hash,
            config_hash(four.as_bytes()),
            "hash of the rings in use"
        );

        // Going back to a good file applies it and clears the failure.
        std::fs::write(&path, GOOD).unwrap();
        assert!(matches!(w.check(), Reload::Applied));
        assert!(status.snapshot().last_reload_successful);
        assert_eq!(shared.get().rings()[0].ring.endpoints().len(), 3);

        // A file that disappears is an error; the rings stay.
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(w.check(), Reload::Refused(_)));
        assert_eq!(shared.get().rings().len(), 1);
    }

    #[test]
    fn invalid_at_start_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hashrings.json");
        assert!(HashringWatcher::load(path.clone(), Algorithm::Ketama, 1).is_err());
        std::fs::write(&path, r#"[{"endpoints": ["a", "b"]}]"#).unwrap();
        let e = HashringWatcher::load(path.clone(), Algorithm::Ketama, 3)
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .contains("fewer than the replication factor 3"),
            "{e}"
        );
    }

    #[test]
    fn config_hash_matches_thanos_definition() {
        // SHA-256("") = e3b0c442 98fc...; the first six bytes little-endian.
        assert_eq!(config_hash(b""), 0xfc98_42c4_b0e3_u64 as f64);
    }

    #[tokio::test]
    async fn run_picks_up_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hashrings.json");
        std::fs::write(&path, GOOD).unwrap();
        let w = HashringWatcher::load(path.clone(), Algorithm::Ketama, 1).unwrap();
        let shared = w.shared();
        let task = tokio::spawn(w.run(Duration::from_millis(100)));
        std::fs::write(&path, r#"[{"endpoints": ["a:1"]}]"#).unwrap();
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if shared.generation() > 0 {
                break;
            }
        }
        assert_eq!(shared.get().rings()[0].ring.endpoints().len(), 1);
        task.abort();
    }
}
