//! Hashrings: which receivers own a tenant's series (`--receive.hashrings-file`).
//!
//! - [`config`]: the file, in Thanos' `hashrings.json` schema, its parsing and checks.
//! - [`ring`]: placement on one hashring (ketama, hashmod), identical to Thanos' so that a
//!   mixed or migrating Thanos/Cairn pool agrees on ownership.
//! - [`Hashrings`]: the file's hashrings built for a replication factor; picks a tenant's
//!   hashring (the first that matches; one without tenants matches every tenant).
//! - [`watch`]: re-reads the file and swaps the rings; an invalid file is refused and the old
//!   rings stay.
//! - [`analysis`]: what `cairn tools hashring plan` and `diff` measure on synthetic series.
//!
//! Routing writes to the owners and replicating them is not here (see `docs/components/
//! hashring.md`).

pub mod analysis;
pub mod config;
pub mod ring;
pub mod watch;

use std::collections::{BTreeMap, HashSet};

pub use config::{
    Algorithm, Endpoint, HashringConfig, HashringsConfig, Problem, ProblemKind, Severity,
    TenantMatcherType,
};
pub use ring::{labels_hash, series_hash, Hashring, SECTIONS_PER_NODE};
pub use watch::{HashringWatcher, Reload, SharedHashrings, WatchStatus};

use config::ring_label;
use model::glob::Glob;

#[derive(Debug, thiserror::Error)]
pub enum HashringError {
    #[error("hashrings file does not parse: {0}")]
    Parse(String),
    #[error("the hashrings file lists no hashrings")]
    Empty,
    #[error("{}", join_problems(.0))]
    Invalid(Vec<Problem>),
    #[error("no hashring matches tenant {0:?}")]
    NoMatchingHashring(String),
}

fn join_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Which tenants a hashring takes.
#[derive(Clone, Debug)]
enum TenantSet {
    /// No tenants: the default hashring.
    All,
    Exact(HashSet<String>),
    Glob(Vec<Glob>),
}

/// One hashring of the file, built.
#[derive(Clone, Debug)]
pub struct TenantHashring {
    /// The file's `hashring` (may be empty).
    pub name: String,
    /// The file's `tenants`, in order.
    pub tenants: Vec<String>,
    tenant_set: TenantSet,
    pub ring: Hashring,
    pub external_labels: BTreeMap<String, String>,
}

impl TenantHashring {
    pub fn is_default(&self) -> bool {
        matches!(self.tenant_set, TenantSet::All)
    }

    pub fn matches(&self, tenant: &str) -> bool {
        match &self.tenant_set {
            TenantSet::All => true,
            TenantSet::Exact(set) => set.contains(tenant),
            TenantSet::Glob(globs) => globs.iter().any(|g| g.matches(tenant)),
        }
    }
}

/// The hashrings of a file, built for one replication factor.
#[derive(Clone, Debug)]
pub struct Hashrings {
    rings: Vec<TenantHashring>,
    replication_factor: usize,
}

impl Hashrings {
    /// Builds every hashring; hashrings without an `algorithm` use `default_algorithm`.
    /// Refuses the file when any hashring is smaller than the replication factor, lists an
    /// endpoint twice, combines hashmod with zones, or has zones that cannot hold the replicas.
    pub fn new(
        config: &HashringsConfig,
        default_algorithm: Algorithm,
        replication_factor: usize,
    ) -> Result<Hashrings, HashringError> {
        let mut problems = config.refusals(default_algorithm, replication_factor);
        if !problems.is_empty() {
            return Err(HashringError::Invalid(problems));
        }
        let mut rings = Vec::with_capacity(config.hashrings.len());
        for (i, h) in config.hashrings.iter().enumerate() {
            let ring = match Hashring::new(
                h.effective_algorithm(default_algorithm),
                h.endpoints.clone(),
                replication_factor,
            ) {
                Ok(r) => r,
                Err(kind) => {
                    problems.push(Problem {
                        hashring: ring_label(i, &h.name),
                        kind,
                    });
                    continue;
                }
            };
            let tenant_set = if h.tenants.is_empty() {
                TenantSet::All
            } else {
                match h.tenant_matcher_type {
                    TenantMatcherType::Exact => {
                        TenantSet::Exact(h.tenants.iter().cloned().collect())
                    }
                    TenantMatcherType::Glob => TenantSet::Glob(
                        h.tenants
                            .iter()
                            // Patterns were checked when the file was parsed.
                            .filter_map(|t| Glob::new(t).ok())
                            .collect(),
                    ),
                }
            };
            rings.push(TenantHashring {
                name: h.name.clone(),
                tenants: h.tenants.clone(),
                tenant_set,
                ring,
                external_labels: h.external_labels.clone(),
            });
        }
        if !problems.is_empty() {
            return Err(HashringError::Invalid(problems));
        }
        Ok(Hashrings {
            rings,
            replication_factor,
        })
    }

    /// Parses and builds in one step.
    pub fn parse(
        text: &str,
        default_algorithm: Algorithm,
        replication_factor: usize,
    ) -> Result<Hashrings, HashringError> {
        Hashrings::new(
            &HashringsConfig::parse(text)?,
            default_algorithm,
            replication_factor,
        )
    }

    pub fn replication_factor(&self) -> usize {
        self.replication_factor
    }

    /// In file order.
    pub fn rings(&self) -> &[TenantHashring] {
        &self.rings
    }

    /// The hashring of a tenant: the first that matches it.
    pub fn hashring_for(&self, tenant: &str) -> Option<&TenantHashring> {
        self.rings.iter().find(|r| r.matches(tenant))
    }

    /// The owners of a series, replica 0 first (as many as the replication factor).
    pub fn owners<'a, I>(&self, tenant: &str, labels: I) -> Result<Vec<&Endpoint>, HashringError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let ring = self
            .hashring_for(tenant)
            .ok_or_else(|| HashringError::NoMatchingHashring(tenant.to_string()))?;
        Ok(ring.ring.owners(series_hash(tenant, labels)).collect())
    }

    /// The owners of a series given as `tsdb::Labels`.
    pub fn owners_of_labels(
        &self,
        tenant: &str,
        labels: &tsdb::labels::Labels,
    ) -> Result<Vec<&Endpoint>, HashringError> {
        self.owners(tenant, labels.iter().map(|l| (&*l.name, &*l.value)))
    }

    /// Every endpoint address of every hashring, sorted, without repeats.
    pub fn addresses(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self
            .rings
            .iter()
            .flat_map(|r| r.ring.endpoints().iter().map(|e| e.address.as_str()))
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}

#[cfg(test)]
mod tests;
