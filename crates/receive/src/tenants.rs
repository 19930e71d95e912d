//! One TSDB per tenant under `<tsdb.path>/<tenant>/`, opened on first write (and at start-up for
//! tenants that already have data, so their WAL is replayed before traffic arrives).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use objstore::shipper::Shipper;
use tsdb::db::{Db, DbOptions};
use tsdb::meta::{ThanosMeta, SOURCE_RECEIVE};
use tsdb::wal::WalOptions;

use crate::ReceiveConfig;

/// Why a tenant could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error(
        "invalid tenant name {0:?}: use 1-128 characters of [A-Za-z0-9_.-], not \".\" or \"..\""
    )]
    InvalidName(String),
    #[error("opening the TSDB of tenant {tenant:?}: {source}")]
    Open {
        tenant: String,
        #[source]
        source: tsdb::Error,
    },
}

/// Tenant names become directory names: allow only what cannot escape `tsdb.path`.
pub fn validate_tenant(name: &str) -> Result<(), TenantError> {
    // Hidden names are the receiver's own directories (`.hints`).
    if auth::valid_tenant_name(name) {
        Ok(())
    } else {
        Err(TenantError::InvalidName(name.to_string()))
    }
}

pub struct Tenants {
    config: ReceiveConfig,
    dbs: RwLock<HashMap<String, Arc<Db>>>,
    /// The bucket blocks are shipped to, when object storage is configured.
    bucket: Option<objstore::Bucket>,
    shippers: RwLock<HashMap<String, Arc<Shipper>>>,
}

impl Tenants {
    pub fn new(config: ReceiveConfig, bucket: Option<objstore::Bucket>) -> Self {
        Tenants {
            config,
            dbs: RwLock::new(HashMap::new()),
            bucket,
            shippers: RwLock::new(HashMap::new()),
        }
    }

    /// The shipper of a tenant (None without object storage).
    pub fn shipper(&self, tenant: &str) -> Option<Arc<Shipper>> {
        self.shippers.read().unwrap().get(tenant).cloned()
    }

    /// Opens every tenant directory that already exists.
    pub fn open_existing(&self) -> Result<usize, TenantError> {
        let Ok(entries) = std::fs::read_dir(&self.config.tsdb_path) else {
            return Ok(0);
        };
        let mut n = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if e.path().is_dir() && validate_tenant(&name).is_ok() {
                self.get_or_open(&name)?;
                n += 1;
            }
        }
        Ok(n)
    }

    pub fn get(&self, tenant: &str) -> Option<Arc<Db>> {
        self.dbs.read().unwrap().get(tenant).cloned()
    }

    /// The tenant's TSDB, opened (and created) if needed.
    pub fn get_or_open(&self, tenant: &str) -> Result<Arc<Db>, TenantError> {
        if let Some(db) = self.get(tenant) {
            return Ok(db);
        }
        validate_tenant(tenant)?;
        let mut dbs = self.dbs.write().unwrap();
        if let Some(db) = dbs.get(tenant) {
            return Ok(db.clone());
        }
        let dir = self.tenant_dir(tenant);
        let (db, stats) =
            Db::open(&dir, self.db_options(tenant)).map_err(|source| TenantError::Open {
                tenant: tenant.to_string(),
                source,
            })?;
        tracing::info!(
            tenant,
            blocks = stats.blocks,
            wal_records = stats.wal_records,
            "tenant TSDB open"
        );
        let db = Arc::new(db);
        if let Some(bucket) = &self.bucket {
            // Blocks are bucketed under the tenant's own prefix-free layout, as Thanos does
            // (external labels tell tenants apart); local retention waits for the upload.
            let shipper = Arc::new(Shipper::new(&dir, bucket.clone()));
            let veto = shipper.clone();
            db.set_deletion_veto(Arc::new(move |meta| veto.is_uploaded(meta)));
            self.shippers
                .write()
                .unwrap()
                .insert(tenant.to_string(), shipper);
        }
        dbs.insert(tenant.to_string(), db.clone());
        Ok(db)
    }

    fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.config.tsdb_path.join(tenant)
    }

    /// External labels of a tenant: the `--label` flags plus the tenant label.
    pub fn external_labels(&self, tenant: &str) -> BTreeMap<String, String> {
        let mut labels: BTreeMap<String, String> =
            self.config.external_labels.iter().cloned().collect();
        labels.insert(self.config.tenant_label_name.clone(), tenant.to_string());
        labels
    }

    fn db_options(&self, tenant: &str) -> DbOptions {
        DbOptions {
            block_duration: self.config.block_duration.as_millis() as i64,
            retention: self.config.retention.map(|r| r.as_millis() as i64),
            wal: WalOptions {
                fsync: self.config.fsync,
                compression: self.config.wal_compression,
                ..Default::default()
            },
            out_of_order_window: self.config.out_of_order_window.as_millis() as i64,
            max_exemplars: self.config.max_exemplars,
            thanos: Some(ThanosMeta {
                labels: self.external_labels(tenant),
                source: SOURCE_RECEIVE.into(),
                ..Default::default()
            }),
        }
    }

    /// Every open tenant, sorted by name.
    pub fn all(&self) -> Vec<(String, Arc<Db>)> {
        let mut v: Vec<_> = self
            .dbs
            .read()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The TSDB directory (one subdirectory per tenant).
    pub fn root(&self) -> &std::path::Path {
        &self.config.tsdb_path
    }

    /// Active series in every tenant's head: what this receiver's memory holds.
    pub fn head_series(&self) -> usize {
        self.dbs
            .read()
            .unwrap()
            .values()
            .map(|db| db.head().num_series())
            .sum()
    }

    /// Cuts due blocks and applies retention in every tenant; errors are logged.
    pub fn maintain(&self) {
        for (tenant, db) in self.all() {
            if let Err(e) = db.maintain() {
                tracing::error!(tenant, error = %e, "TSDB maintenance failed");
            }
        }
    }

    /// Flushes every head to blocks (shutdown). The TSDBs stay open for a last upload pass.
    pub fn close_all(&self) {
        for (tenant, db) in self.all() {
            match db.flush() {
                Ok(blocks) => tracing::info!(tenant, blocks = blocks.len(), "flushed head"),
                Err(e) => {
                    tracing::error!(tenant, error = %e, "flushing head failed; the WAL will be replayed on start")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_cannot_escape() {
        for bad in ["", ".", "..", "a/b", "../x", "a b", "ä", &"x".repeat(129)] {
            assert!(validate_tenant(bad).is_err(), "{bad:?}");
        }
        for good in ["default-tenant", "team_a", "t.1", "A-Z"] {
            validate_tenant(good).unwrap();
        }
    }
}
