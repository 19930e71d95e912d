//! The shipper: uploads every local block of a TSDB to the bucket, oldest first, and remembers
//! what it uploaded in `<tsdb>/thanos.shipper.json` (Thanos' format: `{"version": 1,
//! "uploaded": [ULIDs]}`), so a restart resumes where it stopped.
//!
//! - Blocks are uploaded in `minTime` order and a failure stops the pass: a later block is never
//!   in the bucket before an earlier one.
//! - A block whose meta.json is already in the bucket (an upload that finished just before a
//!   crash) is recorded without being uploaded again; a block whose upload was interrupted has
//!   no meta.json there, so it is uploaded again, completely.
//! - [`Shipper::is_uploaded`] is the retention veto: local blocks are never deleted before
//!   they are in the bucket.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tsdb::meta::BlockMeta;

use crate::bucket::{block_exists, upload_block, Bucket};
use crate::{Error, Result};

pub const SHIPPER_STATE_FILENAME: &str = "thanos.shipper.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct ShipperState {
    version: u32,
    #[serde(default)]
    uploaded: Vec<String>,
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncStats {
    pub uploaded: usize,
    pub already_in_bucket: usize,
    pub bytes: u64,
    /// Blocks still waiting (including the one that failed).
    pub pending: usize,
    /// Their bytes on local disk: what an outage of the bucket adds to the volume.
    pub pending_bytes: u64,
    /// Age in ms (by the block's maxTime against now) of the oldest block not uploaded.
    pub oldest_pending_max_time: Option<i64>,
    pub failed: Option<String>,
}

pub struct Shipper {
    tsdb_dir: PathBuf,
    bucket: Bucket,
    uploaded: Mutex<BTreeSet<String>>,
}

impl Shipper {
    /// Loads the state file of `tsdb_dir` (a missing or unreadable one starts empty: blocks
    /// already in the bucket are then recognised by their meta.json and not uploaded twice).
    pub fn new(tsdb_dir: &Path, bucket: Bucket) -> Shipper {
        let path = tsdb_dir.join(SHIPPER_STATE_FILENAME);
        let uploaded = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<ShipperState>(&b).ok())
            .map(|s| s.uploaded.into_iter().collect())
            .unwrap_or_default();
        Shipper {
            tsdb_dir: tsdb_dir.to_path_buf(),
            bucket,
            uploaded: Mutex::new(uploaded),
        }
    }

    pub fn is_uploaded(&self, meta: &BlockMeta) -> bool {
        self.uploaded
            .lock()
            .unwrap()
            .contains(&meta.ulid.to_string())
    }

    fn record(&self, ulid: &str) -> Result<()> {
        let state = {
            let mut set = self.uploaded.lock().unwrap();
            set.insert(ulid.to_string());
            ShipperState {
                version: 1,
                uploaded: set.iter().cloned().collect(),
            }
        };
        let path = self.tsdb_dir.join(SHIPPER_STATE_FILENAME);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&state).expect("state serializes");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|source| Error::Io {
                context: format!("writing {}", path.display()),
                source,
            })
    }

    /// Bytes of these blocks' directories on local disk.
    fn bytes_of(&self, blocks: &[&BlockMeta]) -> u64 {
        blocks
            .iter()
            .map(|m| dir_bytes(&self.tsdb_dir.join(m.ulid.to_string())))
            .sum()
    }

    /// Uploads every block in `blocks` not yet shipped, oldest first, stopping at the first
    /// failure. Only level-1 blocks (cut from the head) are shipped, as Thanos does.
    pub async fn sync(&self, blocks: &[BlockMeta], now_ms: i64) -> SyncStats {
        let mut todo: Vec<&BlockMeta> = blocks
            .iter()
            .filter(|m| m.compaction.level == 1 && !self.is_uploaded(m))
            .collect();
        todo.sort_by_key(|m| (m.min_time, m.ulid));
        let mut stats = SyncStats::default();
        for (i, meta) in todo.iter().enumerate() {
            let ulid = meta.ulid.to_string();
            let result = async {
                if block_exists(&self.bucket, meta.ulid).await? {
                    return Ok(None);
                }
                let started = Instant::now();
                let up = upload_block(&self.bucket, &self.tsdb_dir.join(&ulid)).await?;
                tracing::info!(block = %ulid, files = up.files, bytes = up.bytes, seconds = started.elapsed().as_secs_f64(), "uploaded block");
                Ok::<_, Error>(Some(up.bytes))
            }
            .await;
            match result {
                Ok(None) => stats.already_in_bucket += 1,
                Ok(Some(bytes)) => {
                    stats.uploaded += 1;
                    stats.bytes += bytes;
                }
                Err(e) => {
                    stats.pending = todo.len() - i;
                    stats.pending_bytes = self.bytes_of(&todo[i..]);
                    stats.oldest_pending_max_time = Some(now_ms - meta.max_time);
                    stats.failed = Some(format!("block {ulid}: {e}"));
                    return stats;
                }
            }
            if let Err(e) = self.record(&ulid) {
                stats.failed = Some(e.to_string());
                stats.pending = todo.len() - i - 1;
                stats.pending_bytes = self.bytes_of(&todo[i + 1..]);
                return stats;
            }
        }
        stats
    }
}

/// Exponential backoff with jitter for failed passes: 1 s doubling up to `max`.
pub fn backoff(failures: u32, max: Duration) -> Duration {
    let base = Duration::from_secs(1).saturating_mul(1u32 << failures.min(16));
    let capped = base.min(max);
    // Jitter: 50-100% of the delay, from the clock's low bits (no rand dependency needed).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    capped.mul_f64(0.5 + (nanos % 1000) as f64 / 2000.0)
}

/// Bytes of the files under `dir` (0 for what cannot be read).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
