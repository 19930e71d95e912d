//! `cairn tools hashring`: validate, plan and diff hashrings files. The logic lives in
//! `receive::hashring`; this module reads files, picks tenants and prints.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use receive::hashring::analysis::{
    exact_movement, minimal_movement, parse_series, synthetic_series, Distribution, Movement,
};
use receive::hashring::{
    series_hash, Algorithm, Hashrings, HashringsConfig, Severity, TenantHashring,
};

/// The tenant of writes that name none (`--receive.default-tenant-id`'s default).
const DEFAULT_TENANT: &str = "default-tenant";

#[derive(Subcommand)]
pub enum HashringCommand {
    /// Check a hashrings file: schema, rings smaller than the replication factor, duplicate
    /// endpoints, and the incident checks (a default hashring that lacks endpoints of the
    /// tenant hashrings, hashrings no tenant reaches). Exits non-zero on any problem.
    Validate {
        /// The hashrings file (Thanos' hashrings.json schema).
        file: PathBuf,
        #[command(flatten)]
        ring: RingArgs,
    },
    /// Show how a hashrings file spreads series over its endpoints: per-endpoint share and
    /// max/mean skew, measured on synthetic (or supplied) series and exact over the hash space.
    Plan {
        file: PathBuf,
        #[command(flatten)]
        ring: RingArgs,
        #[command(flatten)]
        series: SeriesArgs,
        /// Plan only the hashring of this tenant, hashing with it; default: every hashring.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Compare two hashrings files: the fraction of series whose owners change, and whose
    /// primary (replica 0) owner changes.
    Diff {
        old: PathBuf,
        new: PathBuf,
        #[command(flatten)]
        ring: RingArgs,
        #[command(flatten)]
        series: SeriesArgs,
        /// Compare this tenant's series (repeatable); default: every tenant named in either
        /// file, and `default-tenant` for the default hashring.
        #[arg(long)]
        tenant: Vec<String>,
    },
    /// Print the hashrings file of a receive StatefulSet of N replicas (the pods' stable DNS
    /// names, as they pass `--receive.local-endpoint`), for scaling it: stdout is the file for
    /// the ConfigMap; stderr shows how series spread over the new ring and, with `--current`,
    /// how many change owners.
    Generate(GenerateArgs),
}

#[derive(Args)]
pub struct GenerateArgs {
    /// The receivers' StatefulSet: pod i is `<statefulset>-<i>`.
    #[arg(long)]
    statefulset: String,
    /// The StatefulSet's headless Service (the pods' DNS subdomain).
    #[arg(long)]
    service: String,
    #[arg(long, default_value = "monitoring")]
    namespace: String,
    /// Pods in the StatefulSet after scaling.
    #[arg(long)]
    replicas: usize,
    /// The receivers' gRPC port.
    #[arg(long, default_value_t = 10901)]
    port: u16,
    /// Availability zones, comma-separated; pod i is listed in zone i modulo their number, which is
    /// where a zone-spread StatefulSet (maxSkew 1, pods created in order) puts it. With zones,
    /// ketama keeps a series' replicas in different zones.
    #[arg(long, value_delimiter = ',')]
    zones: Vec<String>,
    /// The cluster's DNS domain.
    #[arg(long = "cluster-domain", default_value = "cluster.local")]
    cluster_domain: String,
    /// The hashring's name.
    #[arg(long = "hashring", default_value = "default")]
    hashring: String,
    /// Replicas per series (`--receive.replication-factor`).
    #[arg(long = "replication-factor", default_value_t = 3)]
    replication_factor: usize,
    /// The hashrings file in use now (e.g. from `kubectl get configmap`): stderr then shows the
    /// share of series whose owners change.
    #[arg(long)]
    current: Option<PathBuf>,
    #[command(flatten)]
    series: SeriesArgs,
}

#[derive(Args)]
pub struct RingArgs {
    /// Replicas per series (`--receive.replication-factor`).
    #[arg(long = "replication-factor", default_value_t = 1)]
    replication_factor: usize,
    /// Algorithm of hashrings that name none (`--receive.hashrings-algorithm`).
    #[arg(long, default_value = "ketama")]
    algorithm: Algorithm,
}

#[derive(Args)]
pub struct SeriesArgs {
    /// How many synthetic series to place.
    #[arg(long, default_value_t = 100_000)]
    series: u64,
    /// Place these series instead: one per line, `name{label="value", ...}`.
    #[arg(long = "series-file")]
    series_file: Option<PathBuf>,
}

pub fn run(command: HashringCommand) -> anyhow::Result<()> {
    match command {
        HashringCommand::Validate { file, ring } => validate(&file, &ring),
        HashringCommand::Plan {
            file,
            ring,
            series,
            tenant,
        } => plan(&file, &ring, &series, tenant.as_deref()),
        HashringCommand::Diff {
            old,
            new,
            ring,
            series,
            tenant,
        } => diff(&old, &new, &ring, &series, &tenant),
        HashringCommand::Generate(args) => generate(&args),
    }
}

/// The hashrings file of `args.replicas` pods, as pretty JSON in Thanos' schema.
fn generated_file(args: &GenerateArgs) -> anyhow::Result<String> {
    if args.replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    if args.zones.iter().any(|z| z.trim().is_empty()) {
        bail!("--zones has an empty zone name");
    }
    let endpoints: Vec<serde_json::Value> = (0..args.replicas)
        .map(|i| {
            let address = format!(
                "{}-{i}.{}.{}.svc.{}:{}",
                args.statefulset, args.service, args.namespace, args.cluster_domain, args.port
            );
            if args.zones.is_empty() {
                serde_json::Value::String(address)
            } else {
                serde_json::json!({"address": address, "az": args.zones[i % args.zones.len()].trim()})
            }
        })
        .collect();
    let file = serde_json::json!([{
        "hashring": args.hashring,
        "algorithm": "ketama",
        "endpoints": endpoints,
    }]);
    Ok(serde_json::to_string_pretty(&file)? + "\n")
}

/// Zone-aware placement puts one copy of each series in each of `replication_factor` zones, so
/// with zones of different sizes the receivers of the smaller zones hold more series.
fn uneven_zones(args: &GenerateArgs) -> Option<String> {
    if args.zones.is_empty() || args.replicas.is_multiple_of(args.zones.len()) {
        return None;
    }
    let sizes: Vec<String> = args
        .zones
        .iter()
        .enumerate()
        .map(|(z, name)| {
            let pods = (0..args.replicas)
                .filter(|i| i % args.zones.len() == z)
                .count();
            format!("{}: {pods}", name.trim())
        })
        .collect();
    Some(format!(
        "zones hold different numbers of receivers ({}); receivers in the smaller zones hold \
         more series. Scale by a multiple of {} pods to keep them even.",
        sizes.join(", "),
        args.zones.len()
    ))
}

fn generate(args: &GenerateArgs) -> anyhow::Result<()> {
    let text = generated_file(args)?;
    // Refuse what the receivers would refuse (fewer endpoints or zones than replicas per series).
    let rings = Hashrings::parse(&text, Algorithm::Ketama, args.replication_factor)
        .context("the generated hashring is not usable")?;
    let series = series_set(&args.series)?;
    let mut err = std::io::stderr().lock();
    if let Some(warning) = uneven_zones(args) {
        writeln!(err, "warning: {warning}")?;
    }
    write_plan(&mut err, &rings, &series, Path::new("generated"), None)?;
    if let Some(path) = &args.current {
        let current = Hashrings::parse(&read(path)?, Algorithm::Ketama, args.replication_factor)
            .with_context(|| format!("{} is not a usable hashrings file", path.display()))?;
        writeln!(err, "from {} to the generated file:", path.display())?;
        write_diff(&mut err, &current, &rings, &series, &[])?;
    }
    print!("{text}");
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn load(path: &Path, ring: &RingArgs) -> anyhow::Result<Hashrings> {
    Hashrings::parse(&read(path)?, ring.algorithm, ring.replication_factor)
        .with_context(|| format!("{} is not a usable hashrings file", path.display()))
}

fn validate(path: &Path, args: &RingArgs) -> anyhow::Result<()> {
    let text = read(path)?;
    let config = HashringsConfig::parse(&text)
        .with_context(|| format!("{} is not a valid hashrings file", path.display()))?;
    let mut problems = config.lint(args.algorithm, args.replication_factor);
    if problems.iter().all(|p| p.severity() != Severity::Refused) {
        // Building finds what only placement shows: zones that cannot hold the replicas.
        if let Err(receive::hashring::HashringError::Invalid(p)) =
            Hashrings::new(&config, args.algorithm, args.replication_factor)
        {
            problems.extend(p);
        }
    }
    problems.sort_by_key(|p| std::cmp::Reverse(p.severity()));
    for p in &problems {
        let tag = match p.severity() {
            Severity::Refused => "error",
            Severity::Incident => "incident",
            Severity::Warning => "warning",
        };
        println!("{tag}: {p}");
    }
    let failing = problems
        .iter()
        .filter(|p| p.severity() >= Severity::Incident)
        .count();
    if failing > 0 {
        bail!(
            "{}: {failing} problem(s) (replication factor {}, default algorithm {})",
            path.display(),
            args.replication_factor,
            args.algorithm
        );
    }
    let endpoints: BTreeSet<&str> = config
        .hashrings
        .iter()
        .flat_map(|h| h.endpoints.iter().map(|e| e.address.as_str()))
        .collect();
    println!(
        "{}: OK: {} hashring(s), {} endpoint(s), replication factor {}, default algorithm {}",
        path.display(),
        config.hashrings.len(),
        endpoints.len(),
        args.replication_factor,
        args.algorithm
    );
    Ok(())
}

/// The series to place: from the file, or `n` synthetic ones.
fn series_set(args: &SeriesArgs) -> anyhow::Result<Vec<Vec<(String, String)>>> {
    match &args.series_file {
        Some(path) => {
            let text = read(path)?;
            let mut out = Vec::new();
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                out.push(
                    parse_series(line)
                        .map_err(anyhow::Error::msg)
                        .with_context(|| format!("{}:{}", path.display(), i + 1))?,
                );
            }
            if out.is_empty() {
                bail!("{} has no series", path.display());
            }
            Ok(out)
        }
        None => {
            if args.series == 0 {
                bail!("--series must be at least 1");
            }
            Ok((0..args.series).map(synthetic_series).collect())
        }
    }
}

fn hashes(tenant: &str, series: &[Vec<(String, String)>]) -> Vec<u64> {
    series
        .iter()
        .map(|s| series_hash(tenant, s.iter().map(|(n, v)| (n.as_str(), v.as_str()))))
        .collect()
}

fn describe(index: usize, r: &TenantHashring) -> String {
    let name = if r.name.is_empty() {
        format!("hashring #{}", index + 1)
    } else {
        format!("hashring {:?}", r.name)
    };
    format!(
        "{name} ({}, {} endpoints)",
        r.ring.algorithm(),
        r.ring.endpoints().len()
    )
}

/// A tenant that lands on this hashring, to hash its series with.
fn representative_tenant(r: &TenantHashring) -> String {
    match r.tenants.first() {
        None => DEFAULT_TENANT.to_string(),
        Some(t) => t.clone(),
    }
}

fn plan(
    path: &Path,
    args: &RingArgs,
    series_args: &SeriesArgs,
    tenant: Option<&str>,
) -> anyhow::Result<()> {
    let rings = load(path, args)?;
    let series = series_set(series_args)?;
    write_plan(&mut std::io::stdout().lock(), &rings, &series, path, tenant)
}

/// `plan`'s report: each chosen hashring's per-endpoint share and skew.
fn write_plan(
    out: &mut dyn Write,
    rings: &Hashrings,
    series: &[Vec<(String, String)>],
    path: &Path,
    tenant: Option<&str>,
) -> anyhow::Result<()> {
    let chosen: Vec<(usize, &TenantHashring, String)> = match tenant {
        Some(t) => {
            let (i, r) = ring_of(rings, t).with_context(|| {
                format!("no hashring of {} matches tenant {t:?}", path.display())
            })?;
            vec![(i, r, t.to_string())]
        }
        None => rings
            .rings()
            .iter()
            .enumerate()
            .map(|(i, r)| (i, r, representative_tenant(r)))
            .collect(),
    };
    for (i, r, tenant) in chosen {
        let d = Distribution::measure(&r.ring, hashes(&tenant, series));
        writeln!(
            out,
            "{}, replication factor {}: {} series of tenant {tenant:?}",
            describe(i, r),
            d.replication_factor,
            d.series
        )?;
        writeln!(
            out,
            "  {:<40} {:<12} {:>10} {:>8} {:>8} {:>8}",
            "endpoint", "az", "series", "share", "primary", "exact"
        )?;
        let mut rows: Vec<_> = d.endpoints.iter().collect();
        rows.sort_by(|a, b| a.address.cmp(&b.address));
        for e in rows {
            writeln!(
                out,
                "  {:<40} {:<12} {:>10} {:>7.2}% {:>7.2}% {:>7.2}%",
                e.address,
                if e.az.is_empty() { "-" } else { &e.az },
                e.series,
                100.0 * e.series as f64 / d.series as f64,
                100.0 * e.primaries as f64 / d.series as f64,
                100.0 * e.expected_share
            )?;
        }
        writeln!(
            out,
            "  skew: max/mean {:.3} (exact {:.3}), min/mean {:.3}; mean {:.1} series per endpoint",
            d.max_over_mean(),
            d.expected_max_over_mean(),
            d.min_over_mean(),
            d.mean()
        )?;
    }
    Ok(())
}

/// The hashring a tenant's writes go to, with its index in the file.
fn ring_of<'a>(rings: &'a Hashrings, tenant: &str) -> Option<(usize, &'a TenantHashring)> {
    rings
        .rings()
        .iter()
        .enumerate()
        .find(|(_, r)| r.matches(tenant))
}

/// Tenants to compare when none are given: every exact tenant and glob pattern of either file
/// (a pattern stands for the tenants it matches), and the default tenant.
fn tenants_of(files: [&Hashrings; 2]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for rings in files {
        for r in rings.rings() {
            for t in &r.tenants {
                if !out.contains(t) {
                    out.push(t.clone());
                }
            }
        }
    }
    if !out.iter().any(|t| t == DEFAULT_TENANT) {
        out.push(DEFAULT_TENANT.to_string());
    }
    out
}

fn diff(
    old_path: &Path,
    new_path: &Path,
    args: &RingArgs,
    series_args: &SeriesArgs,
    tenants: &[String],
) -> anyhow::Result<()> {
    let old = load(old_path, args)?;
    let new = load(new_path, args)?;
    let series = series_set(series_args)?;
    write_diff(&mut std::io::stdout().lock(), &old, &new, &series, tenants)
}

/// `diff`'s report: per tenant, the share of series whose owners move from `old` to `new`.
fn write_diff(
    out: &mut dyn Write,
    old: &Hashrings,
    new: &Hashrings,
    series: &[Vec<(String, String)>],
    tenants: &[String],
) -> anyhow::Result<()> {
    let tenants = if tenants.is_empty() {
        tenants_of([old, new])
    } else {
        tenants.to_vec()
    };
    let mut total = Movement::default();
    for tenant in &tenants {
        let (a, b) = (ring_of(old, tenant), ring_of(new, tenant));
        if a.is_none() && b.is_none() {
            writeln!(out, "tenant {tenant:?}: no hashring in either file")?;
            continue;
        }
        let label = |x: Option<(usize, &TenantHashring)>| {
            x.map_or("no hashring (writes fail)".to_string(), |(i, r)| {
                describe(i, r)
            })
        };
        writeln!(out, "tenant {tenant:?}: {} -> {}", label(a), label(b))?;
        let hashes = hashes(tenant, series);
        let m = Movement::measure(
            a.map(|(_, r)| &r.ring),
            b.map(|(_, r)| &r.ring),
            hashes.iter().copied(),
        );
        writeln!(
            out,
            "  owners changed: {:.2}% of {} series; primary owner changed: {:.2}%",
            100.0 * m.owners_fraction(),
            m.series,
            100.0 * m.primary_fraction()
        )?;
        if let (Some((_, ra)), Some((_, rb))) = (a, b) {
            let mut notes = Vec::new();
            if let Some((owners, primary)) = exact_movement(&ra.ring, &rb.ring) {
                notes.push(format!(
                    "exact over the hash space: owners {:.2}%, primary {:.2}%",
                    100.0 * owners,
                    100.0 * primary
                ));
            }
            let addresses = |r: &TenantHashring| -> Vec<String> {
                r.ring
                    .endpoints()
                    .iter()
                    .map(|e| e.address.clone())
                    .collect()
            };
            let (old_addrs, new_addrs) = (addresses(ra), addresses(rb));
            let old_refs: Vec<&str> = old_addrs.iter().map(String::as_str).collect();
            let new_refs: Vec<&str> = new_addrs.iter().map(String::as_str).collect();
            if let Some(least) = minimal_movement(&old_refs, &new_refs) {
                notes.push(format!(
                    "least possible primary movement {:.2}%",
                    100.0 * least
                ));
            }
            if !notes.is_empty() {
                writeln!(out, "  {}", notes.join("; "))?;
            }
            let before = Distribution::measure(&ra.ring, hashes.iter().copied());
            let after = Distribution::measure(&rb.ring, hashes.iter().copied());
            let mut all: BTreeSet<&str> = old_refs.iter().copied().collect();
            all.extend(new_refs.iter().copied());
            let held = |d: &Distribution, a: &str| {
                d.endpoints
                    .iter()
                    .find(|e| e.address == a)
                    .map_or(0, |e| e.series)
            };
            writeln!(out, "  {:<40} {:>10} {:>10}", "endpoint", "before", "after")?;
            for a in all {
                writeln!(
                    out,
                    "  {:<40} {:>10} {:>10}",
                    a,
                    held(&before, a),
                    held(&after, a)
                )?;
            }
        }
        total.add(m);
    }
    if tenants.len() > 1 {
        writeln!(
            out,
            "all {} tenants: owners changed {:.2}%, primary owner changed {:.2}% of {} series",
            tenants.len(),
            100.0 * total.owners_fraction(),
            100.0 * total.primary_fraction(),
            total.series
        )?;
    }
    Ok(())
}
