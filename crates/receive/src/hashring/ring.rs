//! Placement of one series on one hashring, bit for bit as Thanos does it (`pkg/receive/
//! hashring.go` and `labelpb.HashWithPrefix`), so that Thanos and Cairn receivers in one pool
//! agree on which endpoints own a series.
//!
//! **Series hash.** xxHash64 (seed 0) over
//!
//! ```text
//! tenant 0xFF name₁ 0xFF value₁ 0xFF name₂ 0xFF value₂ 0xFF ...
//! ```
//!
//! with the labels in the order the series carries them (remote-write senders and
//! `tsdb::Labels` keep them sorted by name). External labels are not part of it.
//!
//! **hashmod.** Endpoints sorted by address; replica `n` of a series with hash `h` goes to
//! index `(h + n) mod N` (the addition wraps at 2⁶⁴, as Go's uint64 does).
//!
//! **ketama.** Endpoint `i` (in file order) gets 1000 sections whose positions are
//! xxHash64(`"<address>:<k>"`) for k = 1..=1000. Sections are sorted by position. A series
//! lands on the first section at or after its hash, wrapping to the first section. The owners
//! of a section are precomputed walking clockwise from it: an endpoint is taken unless it was
//! taken already, or — when endpoints span more than one `az` (no az counts as a zone of its
//! own) — its zone already holds a replica and more replicas than the least-used zone. The
//! first owner is replica 0.

use xxhash_rust::xxh64::xxh64;

use super::config::{Algorithm, Endpoint, ProblemKind};

/// Sections per endpoint on a ketama ring: Thanos' `SectionsPerNode`.
pub const SECTIONS_PER_NODE: usize = 1000;

/// The byte between the tenant, label names and values in the series hash (Thanos' `sep`).
const SEPARATOR: u8 = 0xFF;

/// The placement hash of a series of `tenant` (Thanos' `labelpb.HashWithPrefix`).
pub fn series_hash<'a, I>(tenant: &str, labels: I) -> u64
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    tsdb::labels::with_pair_bytes(&[tenant.as_bytes(), &[SEPARATOR]], labels, |b| xxh64(b, 0))
}

/// [`series_hash`] of a `tsdb::Labels` (already sorted by name).
pub fn labels_hash(tenant: &str, labels: &tsdb::labels::Labels) -> u64 {
    series_hash(tenant, labels.iter().map(|l| (&*l.name, &*l.value)))
}

/// One hashring's placement: which endpoints own a series hash.
#[derive(Clone, Debug)]
pub enum Hashring {
    Hashmod(HashmodRing),
    Ketama(KetamaRing),
}

impl Hashring {
    /// Builds a ring of `endpoints` (in file order) for `replication_factor` replicas.
    pub fn new(
        algorithm: Algorithm,
        endpoints: Vec<Endpoint>,
        replication_factor: usize,
    ) -> Result<Hashring, ProblemKind> {
        match algorithm {
            Algorithm::Hashmod => {
                HashmodRing::new(endpoints, replication_factor).map(Hashring::Hashmod)
            }
            Algorithm::Ketama => {
                KetamaRing::new(endpoints, replication_factor).map(Hashring::Ketama)
            }
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hashring::Hashmod(_) => Algorithm::Hashmod,
            Hashring::Ketama(_) => Algorithm::Ketama,
        }
    }

    /// The endpoints an owner index refers to: sorted by address for hashmod, in file order
    /// for ketama.
    pub fn endpoints(&self) -> &[Endpoint] {
        match self {
            Hashring::Hashmod(r) => &r.endpoints,
            Hashring::Ketama(r) => &r.endpoints,
        }
    }

    pub fn replication_factor(&self) -> usize {
        match self {
            Hashring::Hashmod(r) => r.replication_factor,
            Hashring::Ketama(r) => r.replication_factor,
        }
    }

    /// Whether every endpoint owns every series: the replication factor is the ring's size
    /// (placement then needs no series hash).
    pub fn owns_all(&self) -> bool {
        self.replication_factor() >= self.endpoints().len()
    }

    /// Indexes into [`Hashring::endpoints`] of the owners of a series hash, replica 0 first;
    /// as many as the replication factor, all distinct (except, as in Thanos, for a hashmod
    /// hash within the replication factor of 2⁶⁴, where the wrapping addition can repeat one).
    pub fn owner_indices(&self, hash: u64) -> OwnerIndices<'_> {
        let start = match self {
            Hashring::Hashmod(_) => 0,
            Hashring::Ketama(r) => r.section_of(hash),
        };
        OwnerIndices {
            ring: self,
            hash,
            start,
            n: 0,
        }
    }

    /// The owners of a series hash, replica 0 first.
    pub fn owners(&self, hash: u64) -> impl Iterator<Item = &Endpoint> + '_ {
        let endpoints = self.endpoints();
        self.owner_indices(hash).map(move |i| &endpoints[i])
    }

    /// The exact fraction of the hash space each endpoint owns (in [`Hashring::endpoints`]
    /// order): as replica 0, and as any replica (the second sums to the replication factor).
    pub fn hash_space_shares(&self) -> Vec<(f64, f64)> {
        match self {
            Hashring::Hashmod(r) => {
                let n = r.endpoints.len() as f64;
                vec![(1.0 / n, r.replication_factor as f64 / n); r.endpoints.len()]
            }
            Hashring::Ketama(r) => r.hash_space_shares(),
        }
    }

    /// The owner of replica `n` (Thanos' `GetN`); None when `n` is not below the replication
    /// factor.
    pub fn get_n(&self, hash: u64, n: usize) -> Option<&Endpoint> {
        self.owners(hash).nth(n)
    }
}

/// See [`Hashring::owner_indices`].
pub struct OwnerIndices<'a> {
    ring: &'a Hashring,
    hash: u64,
    /// The ketama section the series lands on.
    start: usize,
    n: usize,
}

impl Iterator for OwnerIndices<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let rf = self.ring.replication_factor();
        if self.n >= rf {
            return None;
        }
        let n = self.n;
        self.n += 1;
        Some(match self.ring {
            Hashring::Hashmod(r) => {
                (self.hash.wrapping_add(n as u64) % r.endpoints.len() as u64) as usize
            }
            Hashring::Ketama(r) => r.replicas[self.start * rf + n] as usize,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.ring.replication_factor() - self.n;
        (left, Some(left))
    }
}

/// `hash mod N` placement.
#[derive(Clone, Debug)]
pub struct HashmodRing {
    /// Sorted by address.
    endpoints: Vec<Endpoint>,
    replication_factor: usize,
}

impl HashmodRing {
    pub fn new(
        mut endpoints: Vec<Endpoint>,
        replication_factor: usize,
    ) -> Result<Self, ProblemKind> {
        check_size(&endpoints, replication_factor)?;
        if endpoints.iter().any(|e| !e.az.is_empty()) {
            return Err(ProblemKind::HashmodWithAz);
        }
        endpoints.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(HashmodRing {
            endpoints,
            replication_factor,
        })
    }
}

/// A section of the ketama ring: its position and the endpoint it belongs to.
#[derive(Clone, Copy, Debug)]
struct Section {
    hash: u64,
    endpoint: u32,
}

/// Consistent-hashing placement.
#[derive(Clone, Debug)]
pub struct KetamaRing {
    /// In file order.
    endpoints: Vec<Endpoint>,
    /// Sorted by position.
    sections: Vec<Section>,
    /// `replication_factor` owner indexes per section, replica 0 first.
    replicas: Vec<u32>,
    replication_factor: usize,
}

impl KetamaRing {
    pub fn new(endpoints: Vec<Endpoint>, replication_factor: usize) -> Result<Self, ProblemKind> {
        Self::with_sections(endpoints, SECTIONS_PER_NODE, replication_factor)
    }

    /// A ring with another number of sections per endpoint (Thanos' tests use 10).
    pub fn with_sections(
        endpoints: Vec<Endpoint>,
        sections_per_node: usize,
        replication_factor: usize,
    ) -> Result<Self, ProblemKind> {
        check_size(&endpoints, replication_factor)?;
        let mut sections = Vec::with_capacity(endpoints.len() * sections_per_node);
        for (i, e) in endpoints.iter().enumerate() {
            for k in 1..=sections_per_node {
                sections.push(Section {
                    hash: xxh64(format!("{}:{k}", e.address).as_bytes(), 0),
                    endpoint: i as u32,
                });
            }
        }
        // Equal positions only come from equal addresses, which the file checks refuse; the
        // stable sort makes even those deterministic.
        sections.sort_by_key(|s| s.hash);

        // Zones as small integers; an endpoint without az is in the zone "".
        let mut zones: Vec<&str> = endpoints.iter().map(|e| e.az.as_str()).collect();
        zones.sort_unstable();
        zones.dedup();
        let zone_of: Vec<usize> = endpoints
            .iter()
            .map(|e| zones.binary_search(&e.az.as_str()).unwrap())
            .collect();

        let rf = replication_factor;
        let mut replicas = Vec::with_capacity(sections.len() * rf);
        let mut per_zone = vec![0usize; zones.len()];
        for start in 0..sections.len() {
            per_zone.iter_mut().for_each(|c| *c = 0);
            let first = replicas.len();
            let mut j = start;
            // Sections visited since the last replica was taken: a whole lap without one means
            // the zone rule can never be satisfied (Thanos would loop forever).
            let mut idle = 0;
            while replicas.len() - first < rf {
                let endpoint = sections[j].endpoint;
                j = (j + 1) % sections.len();
                let zone = zone_of[endpoint as usize];
                let taken = replicas[first..].contains(&endpoint);
                let least = per_zone.iter().copied().min().unwrap_or(0);
                let crowded = zones.len() > 1 && per_zone[zone] > 0 && per_zone[zone] > least;
                if taken || crowded {
                    idle += 1;
                    if idle > sections.len() {
                        return Err(ProblemKind::AzUnplaceable {
                            replication_factor: rf,
                        });
                    }
                    continue;
                }
                idle = 0;
                per_zone[zone] += 1;
                replicas.push(endpoint);
            }
        }
        Ok(KetamaRing {
            endpoints,
            sections,
            replicas,
            replication_factor,
        })
    }

    /// Each section's arc of the hash space, `(length, owners)`: the hashes after the previous
    /// section up to this one. The arc of section 0 also takes the hashes past the last
    /// section (the ring wraps).
    fn arcs(&self) -> impl Iterator<Item = (u128, &[u32])> + '_ {
        let rf = self.replication_factor;
        let last = self.sections.last().map_or(0, |s| s.hash);
        self.sections.iter().enumerate().map(move |(i, s)| {
            let length = if i == 0 {
                s.hash as u128 + 1 + (u64::MAX - last) as u128
            } else {
                (s.hash - self.sections[i - 1].hash) as u128
            };
            (length, &self.replicas[i * rf..(i + 1) * rf])
        })
    }

    /// The exact fraction of the hash space each endpoint owns (in [`Hashring::endpoints`]
    /// order): as replica 0, and as any replica (these sum to the replication factor).
    pub fn hash_space_shares(&self) -> Vec<(f64, f64)> {
        let mut primary = vec![0u128; self.endpoints.len()];
        let mut any = vec![0u128; self.endpoints.len()];
        for (length, owners) in self.arcs() {
            primary[owners[0] as usize] += length;
            for &o in owners {
                any[o as usize] += length;
            }
        }
        let space = 2f64.powi(64);
        primary
            .iter()
            .zip(&any)
            .map(|(&p, &a)| (p as f64 / space, a as f64 / space))
            .collect()
    }

    /// The exact fraction of the hash space whose owner set, and whose replica-0 owner, differ
    /// between two ketama rings (owners compared by address).
    pub fn exact_movement(old: &KetamaRing, new: &KetamaRing) -> (f64, f64) {
        let mut ends: Vec<u64> = old
            .sections
            .iter()
            .chain(&new.sections)
            .map(|s| s.hash)
            .collect();
        ends.sort_unstable();
        ends.dedup();
        let (mut owners_moved, mut primary_moved) = (0u128, 0u128);
        let (Some(&first), Some(&last)) = (ends.first(), ends.last()) else {
            return (0.0, 0.0);
        };
        let mut previous = None;
        for &end in &ends {
            let length = match previous {
                None => first as u128 + 1 + (u64::MAX - last) as u128,
                Some(p) => (end - p) as u128,
            };
            previous = Some(end);
            let a = old.owner_addresses(end);
            let b = new.owner_addresses(end);
            if a[0] != b[0] {
                primary_moved += length;
            }
            let (mut a, mut b) = (a, b);
            a.sort_unstable();
            b.sort_unstable();
            if a != b {
                owners_moved += length;
            }
        }
        let space = 2f64.powi(64);
        (owners_moved as f64 / space, primary_moved as f64 / space)
    }

    fn owner_addresses(&self, hash: u64) -> Vec<&str> {
        let s = self.section_of(hash);
        let rf = self.replication_factor;
        self.replicas[s * rf..(s + 1) * rf]
            .iter()
            .map(|&o| self.endpoints[o as usize].address.as_str())
            .collect()
    }

    /// The section a hash lands on: the first at or after it, wrapping around.
    fn section_of(&self, hash: u64) -> usize {
        let i = self.sections.partition_point(|s| s.hash < hash);
        if i == self.sections.len() {
            0
        } else {
            i
        }
    }
}

fn check_size(endpoints: &[Endpoint], replication_factor: usize) -> Result<(), ProblemKind> {
    if replication_factor == 0 || endpoints.len() < replication_factor {
        return Err(ProblemKind::TooFewEndpoints {
            have: endpoints.len(),
            replication_factor: replication_factor.max(1),
        });
    }
    Ok(())
}
