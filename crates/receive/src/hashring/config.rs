//! The hashrings file (`--receive.hashrings-file`), in Thanos' `hashrings.json` schema:
//!
//! ```json
//! [
//!   {
//!     "hashring": "team-a",
//!     "tenants": ["team-a", "team-a-*"],
//!     "tenant_matcher_type": "glob",
//!     "algorithm": "ketama",
//!     "endpoints": [
//!       "receive-0.receive:10901",
//!       {"address": "receive-1.receive:10901", "az": "eu-west-1a"}
//!     ],
//!     "external_labels": {"team": "a"}
//!   },
//!   {"hashring": "default", "endpoints": ["receive-0.receive:10901", "receive-1.receive:10901"]}
//! ]
//! ```
//!
//! Parsing follows Go's `encoding/json` into Thanos' types: absent and `null` fields are empty,
//! fields Thanos does not know are ignored (and reported by `cairn tools hashring validate`).
//! Cairn is stricter than Thanos where Thanos would misroute silently or fail later: an unknown
//! `algorithm` (Thanos falls back to hashmod) or `tenant_matcher_type` (Thanos matches nothing),
//! a malformed glob (Thanos fails each write that reaches it) and a shuffle-sharding section
//! with a shard size (not implemented) are refused when the file is loaded.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::HashringError;
use model::glob::Glob;

/// The port Thanos derives a Cap'n Proto address from when an endpoint gives none.
pub const DEFAULT_CAPNPROTO_PORT: &str = "19391";

/// How series are spread over a hashring's endpoints (`--receive.hashrings-algorithm`, or the
/// hashring's `algorithm`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Consistent hashing: 1000 sections per endpoint; a membership change moves ~K/N series.
    #[default]
    Ketama,
    /// `hash mod N` over the endpoints sorted by address; a membership change moves most series.
    Hashmod,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Ketama => "ketama",
            Algorithm::Hashmod => "hashmod",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ketama" => Ok(Algorithm::Ketama),
            "hashmod" => Ok(Algorithm::Hashmod),
            other => Err(format!(
                "unknown hashring algorithm {other:?} (expected ketama or hashmod)"
            )),
        }
    }
}

/// How a hashring's `tenants` are compared with a request's tenant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TenantMatcherType {
    /// The tenant is one of `tenants` (the default, also when the field is `""`).
    #[default]
    Exact,
    /// The tenant matches one of `tenants` as a Go `filepath.Match` pattern.
    Glob,
}

/// One receiver in a hashring. Placement uses `address` only (and `az` for ketama).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// `host:port` of the receiver's gRPC endpoint, as the hashring file gives it.
    pub address: String,
    /// Availability zone; empty when not given.
    pub az: String,
    /// Thanos' Cap'n Proto replication address: given, or `<host>:19391`.
    pub capnproto_address: String,
}

impl Endpoint {
    /// An endpoint as a plain string in the file would give it.
    pub fn new(address: &str) -> Endpoint {
        Endpoint::with_az(address, "")
    }

    pub fn with_az(address: &str, az: &str) -> Endpoint {
        Endpoint {
            address: address.to_string(),
            az: az.to_string(),
            capnproto_address: default_capnproto_address(address),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

/// Thanos keeps the part of the address before the first `:` and appends the default port.
fn default_capnproto_address(address: &str) -> String {
    let host = address.split(':').next().unwrap_or("");
    format!("{host}:{DEFAULT_CAPNPROTO_PORT}")
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Endpoint, D::Error> {
        struct EndpointVisitor;
        impl<'de> Visitor<'de> for EndpointVisitor {
            type Value = Endpoint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "an endpoint: \"host:port\" or {\"address\": \"host:port\", \"az\": \"zone\"}",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Endpoint, E> {
                if v.is_empty() {
                    return Err(E::custom("endpoint address must be set"));
                }
                Ok(Endpoint::new(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Endpoint, E> {
                Err(E::custom("endpoint address must be set"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Endpoint, A::Error> {
                let (mut address, mut az, mut capnp) = (None, None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "address" => address = map.next_value::<Option<String>>()?,
                        "az" => az = map.next_value::<Option<String>>()?,
                        "capnproto_address" => capnp = map.next_value::<Option<String>>()?,
                        // encoding/json ignores fields it does not know.
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                let address = address.unwrap_or_default();
                if address.is_empty() {
                    return Err(de::Error::custom("endpoint address must be set"));
                }
                let capnproto_address = capnp
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| default_capnproto_address(&address));
                Ok(Endpoint {
                    address,
                    az: az.unwrap_or_default(),
                    capnproto_address,
                })
            }
        }
        d.deserialize_any(EndpointVisitor)
    }
}

/// One hashring of the file.
#[derive(Clone, Debug, PartialEq)]
pub struct HashringConfig {
    /// `hashring`: the name (may be empty); the `name` label of the hashring metrics.
    pub name: String,
    /// `tenants`: empty makes this a default hashring, which matches every tenant.
    pub tenants: Vec<String>,
    pub tenant_matcher_type: TenantMatcherType,
    /// In file order; ketama numbers endpoints in this order, hashmod sorts them by address.
    pub endpoints: Vec<Endpoint>,
    /// `algorithm`; None uses `--receive.hashrings-algorithm`.
    pub algorithm: Option<Algorithm>,
    /// `external_labels`: added to the blocks of the tenants of this hashring.
    pub external_labels: BTreeMap<String, String>,
}

impl HashringConfig {
    pub fn is_default(&self) -> bool {
        self.tenants.is_empty()
    }

    /// The algorithm this hashring uses when the flag's default is `default`.
    pub fn effective_algorithm(&self, default: Algorithm) -> Algorithm {
        self.algorithm.unwrap_or(default)
    }
}

/// The whole file: hashrings in order (the first that matches a tenant wins).
#[derive(Clone, Debug, PartialEq)]
pub struct HashringsConfig {
    pub hashrings: Vec<HashringConfig>,
    /// Fields Thanos ignores, as (hashring label, field); reported by `validate`.
    pub unknown_fields: Vec<(String, String)>,
}

/// Thanos' `HashringConfig` as `encoding/json` sees it.
#[derive(Deserialize)]
struct RawHashring {
    #[serde(default)]
    hashring: Option<String>,
    #[serde(default)]
    tenants: Option<Vec<String>>,
    #[serde(default)]
    tenant_matcher_type: Option<String>,
    #[serde(default)]
    endpoints: Option<Vec<Endpoint>>,
    #[serde(default)]
    algorithm: Option<String>,
    #[serde(default)]
    external_labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    shuffle_sharding_config: Option<serde_json::Value>,
}

const KNOWN_FIELDS: &[&str] = &[
    "hashring",
    "tenants",
    "tenant_matcher_type",
    "endpoints",
    "algorithm",
    "external_labels",
    "shuffle_sharding_config",
];

/// How a hashring is named in messages: `hashring "name"`, or `hashring #2` (1-based) when the
/// file gives no name.
pub fn ring_label(index: usize, name: &str) -> String {
    if name.is_empty() {
        format!("hashring #{}", index + 1)
    } else {
        format!("hashring {name:?}")
    }
}

/// What is wrong with a hashrings file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    // Refused on load and on reload: the old ring stays.
    UnknownAlgorithm(String),
    UnknownTenantMatcher(String),
    BadGlob(String),
    ShuffleSharding,
    TooFewEndpoints {
        have: usize,
        replication_factor: usize,
    },
    DuplicateEndpoint(String),
    HashmodWithAz,
    /// Thanos' zone-aware replica walk never finishes for this ring (it would hang).
    AzUnplaceable {
        replication_factor: usize,
    },
    // Incidents: `validate` fails on them, a running receiver accepts them.
    DefaultMissesEndpoints {
        default: String,
        missing: Vec<String>,
    },
    Unreachable {
        shadowed_by: String,
    },
    TenantShadowed {
        tenant: String,
        first: String,
    },
    // Warnings: printed, not failed on.
    NoDefault,
    DuplicateName,
    UnknownField(String),
}

/// How serious a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    /// The file loads, but it is the kind of configuration behind past incidents.
    Incident,
    /// The file is refused.
    Refused,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// `hashring "name"`, `hashring #n`, or empty for the file as a whole.
    pub hashring: String,
    pub kind: ProblemKind,
}

impl Problem {
    pub fn severity(&self) -> Severity {
        use ProblemKind::*;
        match self.kind {
            UnknownAlgorithm(_)
            | UnknownTenantMatcher(_)
            | BadGlob(_)
            | ShuffleSharding
            | TooFewEndpoints { .. }
            | DuplicateEndpoint(_)
            | HashmodWithAz
            | AzUnplaceable { .. } => Severity::Refused,
            DefaultMissesEndpoints { .. } | Unreachable { .. } | TenantShadowed { .. } => {
                Severity::Incident
            }
            NoDefault | DuplicateName | UnknownField(_) => Severity::Warning,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ProblemKind::*;
        if !self.hashring.is_empty() {
            write!(f, "{}: ", self.hashring)?;
        }
        match &self.kind {
            UnknownAlgorithm(a) => write!(f, "unknown algorithm {a:?} (expected ketama or hashmod)"),
            UnknownTenantMatcher(m) => {
                write!(f, "unknown tenant_matcher_type {m:?} (expected exact or glob)")
            }
            BadGlob(e) => write!(f, "{e}"),
            ShuffleSharding => f.write_str(
                "shuffle_sharding_config with a shard_size is not supported; remove it",
            ),
            TooFewEndpoints {
                have,
                replication_factor,
            } => write!(
                f,
                "{have} endpoint(s), fewer than the replication factor {replication_factor}"
            ),
            DuplicateEndpoint(a) => write!(f, "endpoint {a:?} is listed more than once"),
            HashmodWithAz => f.write_str(
                "the hashmod algorithm does not support endpoints with an az; use ketama or remove the az",
            ),
            AzUnplaceable { replication_factor } => write!(
                f,
                "the availability zones cannot hold {replication_factor} replicas spread evenly \
                 (a zone would need more endpoints); add endpoints or lower the replication factor"
            ),
            DefaultMissesEndpoints { default, missing } => write!(
                f,
                "the default {default} does not include {} of this hashring's endpoints: {}",
                missing.len(),
                missing.join(", ")
            ),
            Unreachable { shadowed_by } => write!(
                f,
                "never used: the default {shadowed_by} comes first and matches every tenant"
            ),
            TenantShadowed { tenant, first } => write!(
                f,
                "tenant {tenant:?} is also listed by {first}, which comes first and wins"
            ),
            NoDefault => f.write_str(
                "no default hashring (one without tenants): writes of unlisted tenants fail",
            ),
            DuplicateName => f.write_str("more than one hashring has this name"),
            UnknownField(name) => write!(f, "unknown field {name:?} (ignored)"),
        }
    }
}

impl HashringsConfig {
    /// Parses the file; refuses JSON errors, an empty list, and values that Cairn does not
    /// accept (see the module doc).
    pub fn parse(text: &str) -> Result<HashringsConfig, HashringError> {
        let raw: Option<Vec<RawHashring>> =
            serde_json::from_str(text).map_err(|e| HashringError::Parse(e.to_string()))?;
        let raw = raw.unwrap_or_default();
        if raw.is_empty() {
            return Err(HashringError::Empty);
        }
        let unknown_fields = unknown_fields(text);
        let mut problems = Vec::new();
        let mut hashrings = Vec::with_capacity(raw.len());
        for (i, r) in raw.into_iter().enumerate() {
            let name = r.hashring.unwrap_or_default();
            let label = ring_label(i, &name);
            let mut problem = |kind| {
                problems.push(Problem {
                    hashring: label.clone(),
                    kind,
                })
            };
            let algorithm = match r.algorithm.as_deref() {
                None | Some("") => None,
                Some(a) => match a.parse() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        problem(ProblemKind::UnknownAlgorithm(a.to_string()));
                        None
                    }
                },
            };
            let tenant_matcher_type = match r.tenant_matcher_type.as_deref() {
                None | Some("" | "exact") => TenantMatcherType::Exact,
                Some("glob") => TenantMatcherType::Glob,
                Some(m) => {
                    problem(ProblemKind::UnknownTenantMatcher(m.to_string()));
                    TenantMatcherType::Exact
                }
            };
            let tenants = r.tenants.unwrap_or_default();
            if tenant_matcher_type == TenantMatcherType::Glob {
                for t in &tenants {
                    if let Err(e) = Glob::new(t) {
                        problem(ProblemKind::BadGlob(e.to_string()));
                    }
                }
            }
            if let Some(ss) = &r.shuffle_sharding_config {
                let shard_size = ss.get("shard_size").and_then(|v| v.as_i64()).unwrap_or(0);
                if shard_size > 0 {
                    problem(ProblemKind::ShuffleSharding);
                }
            }
            hashrings.push(HashringConfig {
                name,
                tenants,
                tenant_matcher_type,
                endpoints: r.endpoints.unwrap_or_default(),
                algorithm,
                external_labels: r.external_labels.unwrap_or_default(),
            });
        }
        if !problems.is_empty() {
            return Err(HashringError::Invalid(problems));
        }
        Ok(HashringsConfig {
            hashrings,
            unknown_fields,
        })
    }

    /// The problems that make a receiver refuse this file for the given flags: too few
    /// endpoints for the replication factor, duplicate endpoints, az with hashmod, zones that
    /// cannot hold the replicas.
    pub fn refusals(
        &self,
        default_algorithm: Algorithm,
        replication_factor: usize,
    ) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (i, h) in self.hashrings.iter().enumerate() {
            let label = ring_label(i, &h.name);
            let mut seen = BTreeSet::new();
            let mut reported = BTreeSet::new();
            for e in &h.endpoints {
                if !seen.insert(e.address.as_str()) && reported.insert(e.address.as_str()) {
                    problems.push(Problem {
                        hashring: label.clone(),
                        kind: ProblemKind::DuplicateEndpoint(e.address.clone()),
                    });
                }
            }
            if h.endpoints.len() < replication_factor.max(1) {
                problems.push(Problem {
                    hashring: label.clone(),
                    kind: ProblemKind::TooFewEndpoints {
                        have: h.endpoints.len(),
                        replication_factor: replication_factor.max(1),
                    },
                });
            }
            if h.effective_algorithm(default_algorithm) == Algorithm::Hashmod
                && h.endpoints.iter().any(|e| !e.az.is_empty())
            {
                problems.push(Problem {
                    hashring: label.clone(),
                    kind: ProblemKind::HashmodWithAz,
                });
            }
        }
        problems
    }

    /// Everything `cairn tools hashring validate` reports: the refusals, the incident checks
    /// (a default hashring that lacks endpoints of the tenant hashrings, hashrings no tenant can
    /// reach, tenants listed twice) and warnings. Building the rings (to find zones that cannot
    /// hold the replicas) is left to [`super::Hashrings::new`].
    pub fn lint(&self, default_algorithm: Algorithm, replication_factor: usize) -> Vec<Problem> {
        let mut problems = self.refusals(default_algorithm, replication_factor);
        let labels: Vec<String> = self
            .hashrings
            .iter()
            .enumerate()
            .map(|(i, h)| ring_label(i, &h.name))
            .collect();
        let first_default = self.hashrings.iter().position(|h| h.is_default());
        match first_default {
            None => problems.push(Problem {
                hashring: String::new(),
                kind: ProblemKind::NoDefault,
            }),
            Some(d) => {
                let default_addresses: BTreeSet<&str> = self.hashrings[d]
                    .endpoints
                    .iter()
                    .map(|e| e.address.as_str())
                    .collect();
                for (i, h) in self.hashrings.iter().enumerate() {
                    if i > d {
                        problems.push(Problem {
                            hashring: labels[i].clone(),
                            kind: ProblemKind::Unreachable {
                                shadowed_by: labels[d].clone(),
                            },
                        });
                    }
                    if h.is_default() {
                        continue;
                    }
                    let mut missing: Vec<String> = h
                        .endpoints
                        .iter()
                        .filter(|e| !default_addresses.contains(e.address.as_str()))
                        .map(|e| e.address.clone())
                        .collect();
                    missing.dedup();
                    if !missing.is_empty() {
                        problems.push(Problem {
                            hashring: labels[i].clone(),
                            kind: ProblemKind::DefaultMissesEndpoints {
                                default: labels[d].clone(),
                                missing,
                            },
                        });
                    }
                }
            }
        }
        // An exact tenant listed by an earlier hashring never reaches a later one.
        let mut first_listing: HashMap<&str, usize> = HashMap::new();
        for (i, h) in self.hashrings.iter().enumerate() {
            if h.tenant_matcher_type != TenantMatcherType::Exact {
                continue;
            }
            for t in &h.tenants {
                match first_listing.get(t.as_str()) {
                    Some(&first) if first != i => problems.push(Problem {
                        hashring: labels[i].clone(),
                        kind: ProblemKind::TenantShadowed {
                            tenant: t.clone(),
                            first: labels[first].clone(),
                        },
                    }),
                    Some(_) => {}
                    None => {
                        first_listing.insert(t, i);
                    }
                }
            }
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        for h in &self.hashrings {
            *names.entry(h.name.as_str()).or_default() += 1;
        }
        for (i, h) in self.hashrings.iter().enumerate() {
            if !h.name.is_empty() && names[h.name.as_str()] > 1 {
                problems.push(Problem {
                    hashring: labels[i].clone(),
                    kind: ProblemKind::DuplicateName,
                });
            }
        }
        for (hashring, field) in &self.unknown_fields {
            problems.push(Problem {
                hashring: hashring.clone(),
                kind: ProblemKind::UnknownField(field.clone()),
            });
        }
        problems
    }
}

/// Top-level fields of each hashring that Thanos' schema does not have.
fn unknown_fields(text: &str) -> Vec<(String, String)> {
    let Ok(serde_json::Value::Array(rings)) = serde_json::from_str::<serde_json::Value>(text)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, r) in rings.iter().enumerate() {
        let Some(obj) = r.as_object() else { continue };
        let name = obj.get("hashring").and_then(|v| v.as_str()).unwrap_or("");
        for key in obj.keys() {
            if !KNOWN_FIELDS.contains(&key.as_str()) {
                out.push((ring_label(i, name), key.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> HashringsConfig {
        HashringsConfig::parse(text).unwrap()
    }

    fn kinds(problems: &[Problem]) -> Vec<&ProblemKind> {
        problems.iter().map(|p| &p.kind).collect()
    }

    #[test]
    fn every_schema_form() {
        let c = parse(
            r#"[
              {
                "hashring": "team-a",
                "tenants": ["team-a", "team-b"],
                "tenant_matcher_type": "exact",
                "algorithm": "hashmod",
                "endpoints": ["a:10901", "b:10901"],
                "external_labels": {"team": "a", "env": "prod"}
              },
              {
                "hashring": "globbed",
                "tenants": ["prefix-*"],
                "tenant_matcher_type": "glob",
                "algorithm": "ketama",
                "endpoints": [
                  {"address": "c:10901", "az": "az-1"},
                  {"address": "d:10901", "az": "az-2", "capnproto_address": "d:7000"},
                  {"address": "e:10901"},
                  "f:10901"
                ]
              },
              {"endpoints": ["a:10901"], "tenants": null, "algorithm": "", "tenant_matcher_type": ""}
            ]"#,
        );
        assert_eq!(c.hashrings.len(), 3);
        let a = &c.hashrings[0];
        assert_eq!(a.name, "team-a");
        assert_eq!(a.tenants, ["team-a", "team-b"]);
        assert_eq!(a.tenant_matcher_type, TenantMatcherType::Exact);
        assert_eq!(a.algorithm, Some(Algorithm::Hashmod));
        assert_eq!(
            a.endpoints,
            [Endpoint::new("a:10901"), Endpoint::new("b:10901")]
        );
        assert_eq!(a.endpoints[0].capnproto_address, "a:19391");
        assert_eq!(a.external_labels.get("team").map(String::as_str), Some("a"));
        assert!(!a.is_default());
        let g = &c.hashrings[1];
        assert_eq!(g.tenant_matcher_type, TenantMatcherType::Glob);
        assert_eq!(g.algorithm, Some(Algorithm::Ketama));
        assert_eq!(
            g.endpoints,
            [
                Endpoint::with_az("c:10901", "az-1"),
                Endpoint {
                    address: "d:10901".into(),
                    az: "az-2".into(),
                    capnproto_address: "d:7000".into()
                },
                Endpoint::new("e:10901"),
                Endpoint::new("f:10901"),
            ]
        );
        let d = &c.hashrings[2];
        assert_eq!(d.name, "");
        assert!(d.is_default());
        assert_eq!(d.algorithm, None);
        assert_eq!(
            d.effective_algorithm(Algorithm::Hashmod),
            Algorithm::Hashmod
        );
        assert_eq!(d.tenant_matcher_type, TenantMatcherType::Exact);
        assert!(c.unknown_fields.is_empty());
        // Thanos' own minimal form.
        let m = parse(r#"[{"endpoints": ["node1"]}]"#);
        assert_eq!(m.hashrings[0].endpoints, [Endpoint::new("node1")]);
    }

    #[test]
    fn parse_errors() {
        for (text, what) in [
            ("", "EOF"),
            ("[", "EOF"),
            ("{}", "sequence"),
            (r#"[{"endpoints": "a"}]"#, "sequence"),
            (
                r#"[{"endpoints": [{"az": "az-1"}]}]"#,
                "address must be set",
            ),
            (r#"[{"endpoints": [""]}]"#, "address must be set"),
            (r#"[{"endpoints": [null]}]"#, "address must be set"),
            (r#"[{"endpoints": [42]}]"#, "an endpoint"),
        ] {
            let e = HashringsConfig::parse(text).unwrap_err();
            assert!(
                matches!(e, HashringError::Parse(_)) && e.to_string().contains(what),
                "{text:?}: {e}"
            );
        }
        assert!(matches!(
            HashringsConfig::parse("[]"),
            Err(HashringError::Empty)
        ));
        assert!(matches!(
            HashringsConfig::parse("null"),
            Err(HashringError::Empty)
        ));
        let e = HashringsConfig::parse(
            r#"[{"hashring": "x", "algorithm": "Ketama", "tenant_matcher_type": "regex",
                 "endpoints": ["a"], "shuffle_sharding_config": {"shard_size": 2}},
                {"tenants": ["[a-"], "tenant_matcher_type": "glob", "endpoints": ["a"]}]"#,
        )
        .unwrap_err();
        let HashringError::Invalid(problems) = &e else {
            panic!("{e}")
        };
        assert_eq!(problems.len(), 4, "{e}");
        assert!(matches!(problems[0].kind, ProblemKind::UnknownAlgorithm(_)));
        assert!(matches!(
            problems[1].kind,
            ProblemKind::UnknownTenantMatcher(_)
        ));
        assert_eq!(problems[2].kind, ProblemKind::ShuffleSharding);
        assert!(matches!(problems[3].kind, ProblemKind::BadGlob(_)));
        assert_eq!(problems[3].hashring, "hashring #2");
        let text = e.to_string();
        assert!(
            text.contains("hashring \"x\": unknown algorithm \"Ketama\""),
            "{text}"
        );
        // A shuffle-sharding section without a shard size is inert in Thanos too.
        parse(r#"[{"endpoints": ["a"], "shuffle_sharding_config": {"shard_size": 0}}]"#);
    }

    #[test]
    fn refusals_duplicates_and_small_rings() {
        let c = parse(
            r#"[{"hashring": "a", "tenants": ["t"], "endpoints": ["x", "y", {"address": "x", "az": "1"}, "x"]},
                {"hashring": "b", "endpoints": ["x", "y"]}]"#,
        );
        let p = c.refusals(Algorithm::Ketama, 3);
        assert_eq!(
            kinds(&p),
            [
                &ProblemKind::DuplicateEndpoint("x".into()),
                &ProblemKind::TooFewEndpoints {
                    have: 2,
                    replication_factor: 3
                },
            ]
        );
        assert_eq!(p[0].hashring, "hashring \"a\"");
        assert_eq!(p[1].hashring, "hashring \"b\"");
        assert!(p.iter().all(|p| p.severity() == Severity::Refused));
        // Zones are fine with ketama (the default here), refused with hashmod.
        let az = parse(r#"[{"endpoints": [{"address": "a", "az": "1"}, "b"]}]"#);
        assert!(az.refusals(Algorithm::Ketama, 1).is_empty());
        assert_eq!(
            kinds(&az.refusals(Algorithm::Hashmod, 1)),
            [&ProblemKind::HashmodWithAz]
        );
        let explicit =
            parse(r#"[{"algorithm": "ketama", "endpoints": [{"address": "a", "az": "1"}, "b"]}]"#);
        assert!(explicit.refusals(Algorithm::Hashmod, 2).is_empty());
    }

    #[test]
    fn incident_checks() {
        // The design's incident: the default ring is a single node while the tenant rings
        // spread over three.
        let c = parse(
            r#"[{"hashring": "team-a", "tenants": ["team-a"], "endpoints": ["r0", "r1", "r2"]},
                {"hashring": "default", "endpoints": ["r0"]}]"#,
        );
        let p = c.lint(Algorithm::Ketama, 1);
        assert_eq!(
            kinds(&p),
            [&ProblemKind::DefaultMissesEndpoints {
                default: "hashring \"default\"".into(),
                missing: vec!["r1".into(), "r2".into()]
            }]
        );
        assert_eq!(p[0].severity(), Severity::Incident);
        assert!(p[0].to_string().contains("does not include 2"), "{}", p[0]);

        let c = parse(
            r#"[{"hashring": "all", "endpoints": ["r0", "r1"]},
                {"hashring": "team-a", "tenants": ["team-a", "team-b"], "endpoints": ["r0", "r1"]},
                {"hashring": "team-b", "tenants": ["team-b"], "endpoints": ["r0", "r1"], "tenant": "x"},
                {"hashring": "team-b", "tenants": ["team-c"], "endpoints": ["r0", "r1"]}]"#,
        );
        let p = c.lint(Algorithm::Ketama, 2);
        let shadow = ProblemKind::Unreachable {
            shadowed_by: "hashring \"all\"".into(),
        };
        assert_eq!(
            kinds(&p),
            [
                &shadow,
                &shadow,
                &shadow,
                &ProblemKind::TenantShadowed {
                    tenant: "team-b".into(),
                    first: "hashring \"team-a\"".into()
                },
                &ProblemKind::DuplicateName,
                &ProblemKind::DuplicateName,
                &ProblemKind::UnknownField("tenant".into()),
            ]
        );

        let c = parse(r#"[{"tenants": ["a"], "endpoints": ["r0"]}]"#);
        let p = c.lint(Algorithm::Ketama, 1);
        assert_eq!(kinds(&p), [&ProblemKind::NoDefault]);
        assert_eq!(p[0].severity(), Severity::Warning);

        let good = parse(
            r#"[{"hashring": "a", "tenants": ["a"], "endpoints": ["r0", "r1", "r2"]},
                {"hashring": "b", "tenants": ["b-*"], "tenant_matcher_type": "glob", "endpoints": ["r2", "r3", "r4"]},
                {"hashring": "default", "endpoints": ["r0", "r1", "r2", "r3", "r4"]}]"#,
        );
        assert!(good.lint(Algorithm::Ketama, 3).is_empty());
    }
}
