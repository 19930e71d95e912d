//! `cairn tools bucket`: list, inspect, verify and upload blocks in object storage; mark
//! blocks, clean the bucket and apply retention as the compactor does, and browse the
//! bucket's blocks on a web page (`web`, in [`crate::tools_bucket_web`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use compact::compactor::{Compactor, CompactorConfig};
use objstore::bucket::{block_objects, list_blocks, Bucket};
use objstore::config::parse_duration;
use objstore::markers::{
    self, no_compact_reason, no_downsample_reason, MarkOutcome, DELETION_MARK_FILENAME,
    NO_COMPACT_MARK_FILENAME, NO_DOWNSAMPLE_MARK_FILENAME,
};
use objstore::BucketConfig;
use ulid::Ulid;

#[derive(Args, Clone)]
pub struct BucketArgs {
    /// Object storage configuration file (Thanos' objstore.yml).
    #[arg(long = "objstore.config-file", global = true)]
    config_file: Option<PathBuf>,
    /// Object storage configuration as YAML text.
    #[arg(long = "objstore.config", global = true)]
    config: Option<String>,
    #[command(subcommand)]
    command: BucketCommand,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Clone)]
enum BucketCommand {
    /// List the blocks: ULID, time range, resolution, labels, series, samples, size.
    Ls {
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Show one block's meta.json and objects.
    Inspect { ulid: String },
    /// Check every block (or the given ones): index and chunk integrity, stats, overlaps.
    Verify { ulids: Vec<String> },
    /// Upload existing Prometheus blocks: DIR is a block directory or a data directory of them.
    Upload {
        dir: PathBuf,
        /// External label `name="value"` to set in the uploaded meta.json's Thanos section.
        #[arg(long = "label", value_parser = receive::config::parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Mark blocks for deletion, no-compaction or no-downsampling (or remove such marks).
    /// A mark already there is left as it is. If a compactor is working on the same block,
    /// this may come too late to matter.
    Mark {
        /// ULID of a block to mark; repeatable.
        #[arg(long = "id", required = true)]
        ids: Vec<String>,
        /// The marker file to put (or remove).
        #[arg(long, value_parser = [DELETION_MARK_FILENAME, NO_COMPACT_MARK_FILENAME, NO_DOWNSAMPLE_MARK_FILENAME])]
        marker: String,
        /// Human-readable details put into the marker (required unless --remove).
        #[arg(long, default_value = "")]
        details: String,
        /// Remove the marker instead of putting it.
        #[arg(long)]
        remove: bool,
    },
    /// One pass of the compactor's cleaning, without compacting: mark for deletion the
    /// blocks a compacted block supersedes, delete blocks whose deletion mark is older than
    /// --delete-delay, and partial uploads (no meta.json) older than 2 days.
    Cleanup {
        #[command(flatten)]
        sync: SyncArgs,
        /// How long a block marked for deletion stays before it is deleted.
        #[arg(long = "delete-delay", default_value = "48h", value_parser = parse_duration)]
        delete_delay: Duration,
    },
    /// Apply retention as the compactor does: mark for deletion the blocks whose max time is
    /// older than their resolution's retention (with --delete-delay=0s, delete them at once).
    /// No compactor should be running on the bucket meanwhile.
    Retention {
        #[command(flatten)]
        sync: SyncArgs,
        /// How long a block marked for deletion stays before it is deleted; 0s deletes the
        /// blocks past retention right away.
        #[arg(long = "delete-delay", default_value = "48h", value_parser = parse_duration)]
        delete_delay: Duration,
        /// How long raw blocks are kept (0d: forever).
        #[arg(long = "retention.resolution-raw", default_value = "0d", value_parser = parse_duration)]
        retention_raw: Duration,
        /// How long 5m-downsampled blocks are kept (0d: forever).
        #[arg(long = "retention.resolution-5m", default_value = "0d", value_parser = parse_duration)]
        retention_5m: Duration,
        /// How long 1h-downsampled blocks are kept (0d: forever).
        #[arg(long = "retention.resolution-1h", default_value = "0d", value_parser = parse_duration)]
        retention_1h: Duration,
    },
    /// Serve a web page showing the bucket's blocks on a timeline, per external-label group
    /// and resolution, with their marks (and the data as JSON at /api/v1/blocks).
    Web(crate::tools_bucket_web::WebArgs),
}

/// How `cleanup` and `retention` sync the bucket's view, as the compactor does.
#[derive(Args, Clone)]
struct SyncArgs {
    /// Blocks uploaded more recently than this are left alone (their upload may be in flight).
    #[arg(long = "consistency-delay", default_value = "30m", value_parser = parse_duration)]
    consistency_delay: Duration,
    /// meta.json files (and marks) fetched at once.
    #[arg(long = "block-sync-concurrency", default_value_t = 20)]
    block_sync_concurrency: usize,
    /// Relabel rules over each block's external labels: which blocks to act on.
    #[arg(
        long = "selector.relabel-config",
        conflicts_with = "relabel_config_file"
    )]
    relabel_config: Option<String>,
    /// File holding the --selector.relabel-config rules.
    #[arg(long = "selector.relabel-config-file")]
    relabel_config_file: Option<PathBuf>,
}

/// `ms` since the epoch as RFC 3339 UTC.
pub fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn bucket(args: &BucketArgs) -> anyhow::Result<Bucket> {
    let config = match (&args.config_file, &args.config) {
        (Some(p), _) => BucketConfig::from_file(p)?,
        (None, Some(t)) => BucketConfig::parse(t)?,
        (None, None) => bail!("give --objstore.config-file or --objstore.config"),
    };
    Ok(config.build()?)
}

pub fn run(args: BucketArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run_async(args))
}

/// A compactor over `bucket` for one of the tools, its scratch space in a temporary
/// directory (the tools keep no meta cache); `dir` is to be removed after use.
fn tool_compactor(
    bucket: &Bucket,
    sync: &SyncArgs,
    configure: impl FnOnce(&mut CompactorConfig),
) -> anyhow::Result<(Compactor, PathBuf)> {
    let dir = tempdir()?;
    let mut config = CompactorConfig::new(dir.clone());
    config.consistency_delay = sync.consistency_delay;
    config.block_meta_fetch_concurrency = sync.block_sync_concurrency.max(1);
    config.relabel_configs =
        crate::selector_relabel(&sync.relabel_config_file, &sync.relabel_config)?;
    configure(&mut config);
    let compactor = Compactor::new(bucket.clone(), config, Default::default())
        .context("setting up the bucket sync")?;
    Ok((compactor, dir))
}

/// `tools bucket mark`: every id is checked (a block with meta.json) before any is marked.
async fn mark(
    bucket: &Bucket,
    ids: &[String],
    marker: &str,
    details: &str,
    remove: bool,
) -> anyhow::Result<()> {
    if !remove && details.is_empty() {
        bail!("--details is required to put a mark (it says why, for whoever finds it)");
    }
    let mut ulids = Vec::with_capacity(ids.len());
    for id in ids {
        let ulid: Ulid = id
            .parse()
            .with_context(|| format!("--id {id:?} is not a ULID"))?;
        if !objstore::bucket::block_exists(bucket, ulid).await? {
            bail!("block {ulid} not found in the bucket (no {ulid}/meta.json); nothing was marked");
        }
        ulids.push(ulid);
    }
    for ulid in ulids {
        if remove {
            if markers::remove_marker(bucket, ulid, marker).await? {
                println!("{ulid}: removed {marker}");
            } else {
                println!("{ulid}: has no {marker}, nothing to remove");
            }
            continue;
        }
        let outcome = match marker {
            DELETION_MARK_FILENAME => markers::mark_for_deletion(bucket, ulid, details).await?,
            NO_COMPACT_MARK_FILENAME => {
                markers::mark_for_no_compact(bucket, ulid, no_compact_reason::MANUAL, details)
                    .await?
            }
            NO_DOWNSAMPLE_MARK_FILENAME => {
                markers::mark_for_no_downsample(bucket, ulid, no_downsample_reason::MANUAL, details)
                    .await?
            }
            other => bail!("unsupported marker {other:?}"),
        };
        match outcome {
            MarkOutcome::Written => println!("{ulid}: marked with {marker}"),
            MarkOutcome::AlreadyMarked => {
                println!("{ulid}: already has {marker}, left as it is")
            }
        }
    }
    Ok(())
}

async fn run_async(args: BucketArgs) -> anyhow::Result<()> {
    let bucket = bucket(&args)?;
    match args.command {
        BucketCommand::Mark {
            ids,
            marker,
            details,
            remove,
        } => mark(&bucket, &ids, &marker, &details, remove).await?,
        BucketCommand::Cleanup { sync, delete_delay } => {
            let (compactor, dir) =
                tool_compactor(&bucket, &sync, |c| c.delete_delay = delete_delay)?;
            let result = compactor.clean_only().await;
            std::fs::remove_dir_all(&dir).ok();
            let report = result?;
            println!(
                "cleanup done: {} block(s) marked for deletion, {} deleted",
                report.marked_for_deletion, report.deleted
            );
        }
        BucketCommand::Retention {
            sync,
            delete_delay,
            retention_raw,
            retention_5m,
            retention_1h,
        } => {
            let retention = [
                (compact::compactor::RESOLUTION_RAW, retention_raw),
                (compact::compactor::RESOLUTION_5M, retention_5m),
                (compact::compactor::RESOLUTION_1H, retention_1h),
            ];
            if retention.iter().all(|(_, keep)| keep.is_zero()) {
                bail!("no retention given: set --retention.resolution-raw, -5m or -1h");
            }
            tracing::warn!("no compactor should be running on this bucket meanwhile");
            let (compactor, dir) = tool_compactor(&bucket, &sync, |c| {
                c.delete_delay = delete_delay;
                c.retention = retention
                    .into_iter()
                    .filter(|(_, keep)| !keep.is_zero())
                    .collect();
            })?;
            let result = compactor.retention_only().await;
            std::fs::remove_dir_all(&dir).ok();
            let report = result?;
            println!(
                "retention done: {} block(s) marked for deletion, {} deleted",
                report.marked_for_deletion, report.deleted
            );
        }
        BucketCommand::Web(web) => crate::tools_bucket_web::serve(bucket, web).await?,
        BucketCommand::Ls { output } => {
            let metas = list_blocks(&bucket).await?;
            let mut rows = Vec::new();
            for m in &metas {
                let size: u64 = block_objects(&bucket, m.ulid)
                    .await?
                    .iter()
                    .map(|(_, s)| s)
                    .sum();
                rows.push((m, size));
            }
            match output {
                Output::Json => {
                    let v: Vec<serde_json::Value> = rows
                        .iter()
                        .map(|(m, size)| {
                            serde_json::json!({
                                "ulid": m.ulid.to_string(),
                                "minTime": m.min_time,
                                "maxTime": m.max_time,
                                "resolution": m.resolution(),
                                "labels": m.thanos.as_ref().map(|t| t.labels.clone()).unwrap_or_default(),
                                "series": m.stats.num_series,
                                "samples": m.stats.num_samples,
                                "level": m.compaction.level,
                                "sizeBytes": size,
                            })
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
                Output::Table => {
                    println!(
                        "{:<26}  {:<20}  {:<20}  {:>10}  {:>8}  {:>10}  {:>12}  LABELS",
                        "ULID", "FROM", "UNTIL", "RESOLUTION", "SERIES", "SAMPLES", "SIZE"
                    );
                    for (m, size) in rows {
                        let labels = m
                            .thanos
                            .as_ref()
                            .map(|t| {
                                t.labels
                                    .iter()
                                    .map(|(k, v)| format!("{k}={v:?}"))
                                    .collect::<Vec<_>>()
                                    .join(",")
                            })
                            .unwrap_or_default();
                        println!(
                            "{:<26}  {:<20}  {:<20}  {:>10}  {:>8}  {:>10}  {:>12}  {labels}",
                            m.ulid.to_string(),
                            format_ms(m.min_time),
                            format_ms(m.max_time),
                            format!("{}ms", m.resolution()),
                            m.stats.num_series,
                            m.stats.num_samples,
                            size
                        );
                    }
                }
            }
        }
        BucketCommand::Inspect { ulid } => {
            let ulid = ulid
                .parse()
                .with_context(|| format!("{ulid:?} is not a ULID"))?;
            let meta = objstore::bucket::read_meta(&bucket, ulid).await?;
            println!("{}", meta.to_json());
            for (path, size) in block_objects(&bucket, ulid).await? {
                println!("{size:>12}  {path}");
            }
        }
        BucketCommand::Verify { ulids } => {
            let metas = list_blocks(&bucket).await?;
            let tmp = tempdir()?;
            let mut bad = 0;
            for m in &metas {
                if !ulids.is_empty() && !ulids.contains(&m.ulid.to_string()) {
                    continue;
                }
                let dir = objstore::verify::download_block(&bucket, m.ulid, &tmp).await?;
                let report = objstore::verify::verify_local_block(&dir)?;
                std::fs::remove_dir_all(&dir).ok();
                if report.problems.is_empty() {
                    println!(
                        "ok    {}  {} series, {} chunks, {} samples",
                        m.ulid, report.series, report.chunks, report.samples
                    );
                } else {
                    bad += 1;
                    println!("FAIL  {}", m.ulid);
                    for p in &report.problems {
                        println!("      {p}");
                    }
                }
            }
            std::fs::remove_dir_all(&tmp).ok();
            let overlaps = objstore::verify::overlaps(&metas);
            for o in &overlaps {
                println!("OVERLAP  {o}");
            }
            if bad > 0 || !overlaps.is_empty() {
                bail!("{bad} damaged block(s), {} overlap(s)", overlaps.len());
            }
        }
        BucketCommand::Upload { dir, labels } => {
            let blocks = block_dirs(&dir)?;
            if blocks.is_empty() {
                bail!("no block (a directory with meta.json) in {}", dir.display());
            }
            for (i, block) in blocks.iter().enumerate() {
                let meta = tsdb::meta::BlockMeta::read(block)?;
                if objstore::bucket::block_exists(&bucket, meta.ulid).await? {
                    println!(
                        "[{}/{}] {} already in the bucket, skipped",
                        i + 1,
                        blocks.len(),
                        meta.ulid
                    );
                    continue;
                }
                let staged;
                let source = if labels.is_empty() {
                    block.as_path()
                } else {
                    // Upload a copy whose meta.json carries the external labels.
                    staged = tempdir()?.join(meta.ulid.to_string());
                    copy_dir(block, &staged)?;
                    let mut m = meta.clone();
                    let t = m.thanos.get_or_insert_with(Default::default);
                    t.labels.extend(labels.iter().cloned());
                    if t.source.is_empty() {
                        t.source = "upload".into();
                    }
                    m.write(&staged)?;
                    staged.as_path()
                };
                let started = std::time::Instant::now();
                let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
                let label = format!("[{}/{}] {}", i + 1, blocks.len(), meta.ulid);
                let mut bar = |done: u64, total: u64| {
                    if interactive {
                        eprint!("\r{}", progress_bar(&label, done, total));
                    }
                };
                let stats =
                    objstore::bucket::upload_block_with_progress(&bucket, source, &mut bar).await?;
                if interactive {
                    eprintln!();
                }
                println!(
                    "[{}/{}] {} uploaded: {} files, {} bytes in {:.1}s",
                    i + 1,
                    blocks.len(),
                    meta.ulid,
                    stats.files,
                    stats.bytes,
                    started.elapsed().as_secs_f64()
                );
            }
        }
    }
    Ok(())
}

/// `label [#########           ]  45%  12.3 / 27.0 MB`
fn progress_bar(label: &str, done: u64, total: u64) -> String {
    const WIDTH: usize = 30;
    let fraction = if total == 0 {
        1.0
    } else {
        done as f64 / total as f64
    };
    let filled = ((fraction * WIDTH as f64).round() as usize).min(WIDTH);
    format!(
        "{label} [{}{}] {:>3.0}%  {:.1} / {:.1} MB",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled),
        fraction * 100.0,
        done as f64 / 1e6,
        total as f64 / 1e6
    )
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("cairn-bucket-{}", Ulid::new()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dst)?;
        } else {
            std::fs::copy(e.path(), dst)?;
        }
    }
    Ok(())
}

/// `dir` itself when it is a block, else its block subdirectories, oldest ULID first.
fn block_dirs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if dir.join("meta.json").exists() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn draws_progress() {
        assert_eq!(
            super::progress_bar("b", 15, 30),
            "b [###############               ]  50%  0.0 / 0.0 MB"
        );
        assert!(super::progress_bar("b", 0, 0).contains("100%"));
    }

    #[test]
    fn formats_times() {
        assert_eq!(super::format_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::format_ms(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::format_ms(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
