//! `cairn tools bucket web`: the bucket's blocks on a timeline (Thanos' `tools bucket web`).
//!
//! `/` is one self-contained page (HTML, JS and SVG embedded in the binary, nothing fetched
//! from elsewhere) that draws the blocks from `/api/v1/blocks`: one band per compaction group
//! (external labels and resolution), each block a bar from its min time to its max time.
//! The bucket is read again every `--refresh`, and at once on `/api/v1/blocks?refresh=1`
//! (the page's refresh button, or `/?refresh=1`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use clap::Args;
use objstore::bucket::{block_objects, Bucket};
use objstore::config::parse_duration;
use objstore::fetcher::MetaFetcher;
use objstore::filters::{GatherNoCompactMarks, GatherNoDownsampleMarks, IgnoreDeletionMarkFilter};
use objstore::thanos_meta;
use serde_json::{json, Value};
use tokio::sync::{Mutex, RwLock};
use tsdb::meta::BlockMeta;
use ulid::Ulid;

const PAGE: &str = include_str!("bucket_web.html");

/// Deletion marks are gathered, never used to hide a block: a delay no mark reaches.
const NEVER: Duration = Duration::from_secs(1000 * 365 * 86_400);

#[derive(Args, Clone)]
pub struct WebArgs {
    /// Address of the web page and its API.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: SocketAddr,
    /// How often the bucket is read again.
    #[arg(long = "refresh", default_value = "30m", value_parser = parse_duration)]
    refresh: Duration,
    /// How long one reading of the bucket may take.
    #[arg(long = "timeout", default_value = "5m", value_parser = parse_duration)]
    timeout: Duration,
    /// External label whose value titles each group's band (all labels otherwise).
    #[arg(long = "label")]
    label: Option<String>,
    /// meta.json files (and marks) fetched at once.
    #[arg(long = "block-sync-concurrency", default_value_t = 20)]
    block_sync_concurrency: usize,
}

/// The last reading of the bucket.
#[derive(Default)]
struct Snapshot {
    blocks: Vec<Value>,
    partial: Vec<String>,
    refreshed_at_ms: Option<i64>,
    error: Option<String>,
}

struct Web {
    bucket: Bucket,
    fetcher: MetaFetcher,
    deletion: Arc<IgnoreDeletionMarkFilter>,
    no_compact: Arc<GatherNoCompactMarks>,
    no_downsample: Arc<GatherNoDownsampleMarks>,
    label: Option<String>,
    timeout: Duration,
    concurrency: usize,
    snapshot: RwLock<Snapshot>,
    /// One reading at a time.
    reading: Mutex<()>,
}

pub async fn serve(bucket: Bucket, args: WebArgs) -> anyhow::Result<()> {
    if args.refresh < Duration::from_secs(5 * 60) {
        tracing::warn!("refreshing more often than every 5m can mean large data transfers");
    }
    let concurrency = args.block_sync_concurrency.max(1);
    let deletion = Arc::new(IgnoreDeletionMarkFilter::new(
        bucket.clone(),
        NEVER,
        concurrency,
    ));
    let no_compact = Arc::new(GatherNoCompactMarks::new(bucket.clone(), concurrency));
    let no_downsample = Arc::new(GatherNoDownsampleMarks::new(bucket.clone(), concurrency));
    let fetcher = MetaFetcher::new(
        bucket.clone(),
        None,
        concurrency,
        vec![deletion.clone(), no_compact.clone(), no_downsample.clone()],
    )?;
    let web = Arc::new(Web {
        bucket,
        fetcher,
        deletion,
        no_compact,
        no_downsample,
        label: args.label.clone(),
        timeout: args.timeout,
        concurrency,
        snapshot: RwLock::new(Snapshot::default()),
        reading: Mutex::new(()),
    });
    let listener = tokio::net::TcpListener::bind(args.http_address)
        .await
        .with_context(|| format!("listening on {}", args.http_address))?;
    tracing::info!(address = %listener.local_addr()?, refresh = ?args.refresh, "serving the bucket's blocks");

    let refresher = {
        let web = web.clone();
        let every = args.refresh.max(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                web.refresh().await;
                tokio::time::sleep(every).await;
            }
        })
    };
    let router = axum::Router::new()
        .route("/", get(page))
        .route("/api/v1/blocks", get(blocks))
        .route("/-/healthy", get(|| async { "OK" }))
        .route("/-/ready", get(|| async { "OK" }))
        .with_state(web);
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(crate::shutdown_signal())
        .await;
    refresher.abort();
    result.context("serving HTTP")
}

impl Web {
    /// Reads the bucket (within `--timeout`) and replaces the snapshot; a failed reading keeps
    /// the last good blocks and reports the error beside them.
    async fn refresh(&self) {
        let _one = self.reading.lock().await;
        let read = tokio::time::timeout(self.timeout, self.read()).await;
        let mut snapshot = self.snapshot.write().await;
        match read {
            Ok(Ok((blocks, partial))) => {
                snapshot.blocks = blocks;
                snapshot.partial = partial;
                snapshot.refreshed_at_ms = Some(now_ms());
                snapshot.error = None;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading the bucket failed");
                snapshot.error = Some(format!("{e:#}"));
            }
            Err(_) => {
                tracing::warn!(timeout = ?self.timeout, "reading the bucket timed out");
                snapshot.error = Some(format!("reading the bucket took over {:?}", self.timeout));
            }
        }
    }

    async fn read(&self) -> anyhow::Result<(Vec<Value>, Vec<String>)> {
        let result = self.fetcher.fetch().await?;
        for failed in &result.failed {
            tracing::warn!(error = %failed, "a block's meta.json could not be read");
        }
        let deletion = self.deletion.deletion_marks();
        let no_compact = self.no_compact.marks();
        let no_downsample = self.no_downsample.marks();
        let sizes = self.sizes(&result.metas).await?;
        let mut blocks = Vec::with_capacity(result.metas.len());
        for (ulid, meta) in &result.metas {
            let mut block = serde_json::to_value(meta)?;
            let obj = block.as_object_mut().expect("a meta is a JSON object");
            let labels = thanos_meta::labels(meta);
            obj.insert("group".into(), json!(thanos_meta::group_key(meta)));
            obj.insert("labels".into(), json!(labels));
            obj.insert("resolution".into(), json!(meta.resolution()));
            obj.insert(
                "sizeBytes".into(),
                json!(sizes.get(ulid).copied().unwrap_or(0)),
            );
            obj.insert(
                "marks".into(),
                json!({
                    "deletion": deletion.get(ulid).map(|m| json!({
                        "time": m.deletion_time, "details": m.details,
                    })),
                    "noCompact": no_compact.get(ulid).map(|m| json!({
                        "time": m.no_compact_time, "reason": m.reason, "details": m.details,
                    })),
                    "noDownsample": no_downsample.get(ulid).map(|m| json!({
                        "time": m.no_downsample_time, "reason": m.reason, "details": m.details,
                    })),
                }),
            );
            blocks.push(block);
        }
        let partial = result.partial.keys().map(Ulid::to_string).collect();
        Ok((blocks, partial))
    }

    /// Each block's size: the sum of `thanos.files` sizes when the meta lists them with sizes,
    /// else the sum of its objects in the bucket (listed `concurrency` blocks at a time).
    async fn sizes(
        &self,
        metas: &BTreeMap<Ulid, BlockMeta>,
    ) -> anyhow::Result<BTreeMap<Ulid, u64>> {
        let mut sizes = BTreeMap::new();
        let mut to_list = Vec::new();
        for (ulid, meta) in metas {
            let files = thanos_meta::files(meta);
            // meta.json itself is listed without a size; every other file needs one.
            let complete = !files.is_empty()
                && files
                    .iter()
                    .all(|f| f.size_bytes.is_some() || f.rel_path == tsdb::meta::META_FILENAME);
            if complete {
                sizes.insert(*ulid, files.iter().filter_map(|f| f.size_bytes).sum());
            } else {
                to_list.push(*ulid);
            }
        }
        for chunk in to_list.chunks(self.concurrency) {
            let mut set = tokio::task::JoinSet::new();
            for &ulid in chunk {
                let bucket = self.bucket.clone();
                set.spawn(async move { (ulid, block_objects(&bucket, ulid).await) });
            }
            while let Some(joined) = set.join_next().await {
                let (ulid, objects) = joined?;
                sizes.insert(ulid, objects?.iter().map(|(_, size)| size).sum());
            }
        }
        Ok(sizes)
    }
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn blocks(
    State(web): State<Arc<Web>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    if params
        .get("refresh")
        .is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
    {
        web.refresh().await;
    }
    let snapshot = web.snapshot.read().await;
    let body = json!({
        "status": "success",
        "data": {
            "blocks": snapshot.blocks,
            "partial": snapshot.partial,
            "refreshedAt": snapshot.refreshed_at_ms,
            "err": snapshot.error,
            "label": web.label.clone().unwrap_or_default(),
        }
    });
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
