//! Per-tenant limits from `--receive.limits-config-file`, in Thanos' YAML shape:
//!
//! ```yaml
//! write:
//!   default:
//!     request:
//!       size_bytes_limit: 1048576   # compressed body bytes   -> 413
//!       series_limit: 5000          # series in one request  -> 413
//!       samples_limit: 50000        # samples in one request -> 413
//!     head_series_limit: 1000000    # active series per tenant -> 429 for new series
//!   tenants:
//!     team-a:
//!       head_series_limit: 20000
//! ```
//! A limit of 0 (or absent) means unlimited; a tenant's missing fields come from `default`.
//! The file is re-read when it changes ([`LimitsWatcher`]); a file that does not parse is
//! refused with a log line and the previous limits stay.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;

use crate::error::ConfigError;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RequestLimitsConfig {
    #[serde(default)]
    pub size_bytes_limit: Option<u64>,
    #[serde(default)]
    pub series_limit: Option<u64>,
    #[serde(default)]
    pub samples_limit: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct TenantLimitsConfig {
    #[serde(default)]
    pub request: RequestLimitsConfig,
    #[serde(default)]
    pub head_series_limit: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct WriteLimitsConfig {
    /// Thanos' global section (max_concurrency, meta-monitoring): accepted, not used.
    #[serde(default)]
    pub global: Option<serde_json::Value>,
    #[serde(default)]
    pub default: TenantLimitsConfig,
    #[serde(default)]
    pub tenants: HashMap<String, TenantLimitsConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct LimitsConfig {
    #[serde(default)]
    pub write: WriteLimitsConfig,
}

/// The effective limits of one tenant (None = unlimited).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantLimits {
    pub size_bytes: Option<u64>,
    pub series: Option<u64>,
    pub samples: Option<u64>,
    pub head_series: Option<u64>,
}

fn nonzero(v: Option<u64>) -> Option<u64> {
    v.filter(|&x| x > 0)
}

impl LimitsConfig {
    pub fn parse(text: &str) -> Result<LimitsConfig, ConfigError> {
        if text.trim().is_empty() {
            return Ok(LimitsConfig::default());
        }
        model::yaml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))
    }

    pub fn for_tenant(&self, tenant: &str) -> TenantLimits {
        let d = &self.write.default;
        let t = self.write.tenants.get(tenant);
        let pick = |f: fn(&TenantLimitsConfig) -> Option<u64>| nonzero(t.and_then(f).or(f(d)));
        TenantLimits {
            size_bytes: pick(|c| c.request.size_bytes_limit),
            series: pick(|c| c.request.series_limit),
            samples: pick(|c| c.request.samples_limit),
            head_series: pick(|c| c.head_series_limit),
        }
    }
}

/// The current limits, shared by request handlers and swapped on reload.
#[derive(Clone, Default)]
pub struct Limits(Arc<RwLock<LimitsConfig>>);

impl Limits {
    pub fn for_tenant(&self, tenant: &str) -> TenantLimits {
        self.0.read().unwrap().for_tenant(tenant)
    }

    pub fn set(&self, c: LimitsConfig) {
        *self.0.write().unwrap() = c;
    }
}

const FILE: &str = "limits file";

fn read(path: &std::path::Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: FILE,
        path: path.to_path_buf(),
        source,
    })
}

/// Loads the limits file, then re-reads it whenever its content changes.
pub struct LimitsWatcher {
    path: PathBuf,
    limits: Limits,
    last: Option<String>,
}

impl LimitsWatcher {
    /// Reads the file once; an invalid file at start-up is an error (as in Thanos).
    pub fn load(path: PathBuf, limits: Limits) -> Result<LimitsWatcher, ConfigError> {
        let text = read(&path)?;
        let config = LimitsConfig::parse(&text).map_err(|e| e.in_file(FILE, &path))?;
        limits.set(config);
        Ok(LimitsWatcher {
            path,
            limits,
            last: Some(text),
        })
    }

    /// Re-reads the file; returns Some(Ok) when new limits were applied, Some(Err) when a
    /// changed file was refused, None when nothing changed.
    pub fn check(&mut self) -> Option<Result<(), ConfigError>> {
        let text = match read(&self.path) {
            Ok(t) => t,
            Err(e) => return Some(Err(e)),
        };
        if self.last.as_deref() == Some(text.as_str()) {
            return None;
        }
        let result = LimitsConfig::parse(&text).map(|c| self.limits.set(c));
        self.last = Some(text);
        Some(result.map_err(|e| e.in_file(FILE, &self.path)))
    }

    /// Polls the file every `every` until the task is dropped.
    pub async fn run(mut self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match self.check() {
                Some(Ok(())) => tracing::info!(path = %self.path.display(), "limits reloaded"),
                Some(Err(e)) => {
                    tracing::error!(error = %e, "limits file refused; keeping the previous limits")
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thanos_shape_with_defaults_and_overrides() {
        let c = LimitsConfig::parse(
            "write:\n  global:\n    max_concurrency: 30\n  default:\n    request:\n      size_bytes_limit: 1000\n      series_limit: 10\n    head_series_limit: 100\n  tenants:\n    team-a:\n      head_series_limit: 5\n      request:\n        series_limit: 0\n",
        )
        .unwrap();
        assert_eq!(
            c.for_tenant("other"),
            TenantLimits {
                size_bytes: Some(1000),
                series: Some(10),
                samples: None,
                head_series: Some(100)
            }
        );
        assert_eq!(
            c.for_tenant("team-a"),
            TenantLimits {
                size_bytes: Some(1000),
                series: None,
                samples: None,
                head_series: Some(5)
            }
        );
        assert!(LimitsConfig::parse("write: [").is_err());
        assert_eq!(LimitsConfig::parse("").unwrap(), LimitsConfig::default());
    }

    #[test]
    fn watcher_applies_changes_and_refuses_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.yaml");
        std::fs::write(&path, "write:\n  default:\n    head_series_limit: 10\n").unwrap();
        let limits = Limits::default();
        let mut w = LimitsWatcher::load(path.clone(), limits.clone()).unwrap();
        assert_eq!(limits.for_tenant("x").head_series, Some(10));
        assert!(w.check().is_none());
        std::fs::write(&path, "write:\n  default:\n    head_series_limit: 20\n").unwrap();
        assert!(matches!(w.check(), Some(Ok(()))));
        assert_eq!(limits.for_tenant("x").head_series, Some(20));
        std::fs::write(&path, "write: {default: [").unwrap();
        assert!(matches!(w.check(), Some(Err(_))));
        assert_eq!(
            limits.for_tenant("x").head_series,
            Some(20),
            "old limits stay"
        );
    }
}
