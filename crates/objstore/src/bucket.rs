//! Block upload, listing and deletion marks, in Thanos' bucket layout:
//!
//! ```text
//! <ULID>/meta.json            present only once every other file of the block is uploaded
//! <ULID>/index
//! <ULID>/chunks/000001 ...
//! <ULID>/deletion-mark.json   see [`crate::markers`]
//! ```

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tsdb::meta::BlockMeta;
use ulid::Ulid;

use crate::{Error, Result};

pub type Bucket = Arc<dyn ObjectStore>;

pub use crate::markers::{mark_for_deletion, DELETION_MARK_FILENAME};
/// Files above this size are uploaded in parts of this size (the design's 5 MB parts).
pub const MULTIPART_PART_SIZE: usize = 5 * 1024 * 1024;

fn bucket_err<'a>(
    op: &'static str,
    path: &'a ObjectPath,
) -> impl FnOnce(object_store::Error) -> Error + 'a {
    move |source| Error::Bucket {
        op,
        path: path.to_string(),
        source,
    }
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// Bytes uploaded per file, for progress and metrics.
#[derive(Debug, Default, Clone)]
pub struct UploadStats {
    pub files: usize,
    pub bytes: u64,
}

/// The files of a local block in upload order: chunks, index, tombstones... and meta.json last.
fn block_files(dir: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    let chunks = dir.join(tsdb::block::CHUNKS_DIRNAME);
    let mut names: Vec<String> = std::fs::read_dir(&chunks)
        .map_err(io_err(format!("listing {}", chunks.display())))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    files.extend(
        names
            .into_iter()
            .map(|n| format!("{}/{n}", tsdb::block::CHUNKS_DIRNAME)),
    );
    files.push(tsdb::block::INDEX_FILENAME.to_string());
    if dir.join(tsdb::block::TOMBSTONES_FILENAME).exists() {
        files.push(tsdb::block::TOMBSTONES_FILENAME.to_string());
    }
    files.push(tsdb::meta::META_FILENAME.to_string());
    Ok(files)
}

/// Uploads one file, in parts when it is large.
async fn upload_file(bucket: &Bucket, local: &Path, remote: &ObjectPath) -> Result<u64> {
    let size = std::fs::metadata(local)
        .map_err(io_err(format!("reading {}", local.display())))?
        .len();
    if size as usize <= MULTIPART_PART_SIZE {
        let data = tokio::fs::read(local)
            .await
            .map_err(io_err(format!("reading {}", local.display())))?;
        bucket
            .put(remote, PutPayload::from(data))
            .await
            .map_err(bucket_err("put", remote))?;
        return Ok(size);
    }
    let upload = bucket
        .put_multipart(remote)
        .await
        .map_err(bucket_err("start multipart upload", remote))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART_SIZE);
    let mut file = tokio::fs::File::open(local)
        .await
        .map_err(io_err(format!("opening {}", local.display())))?;
    let mut buf = vec![0u8; MULTIPART_PART_SIZE];
    let mut sent = 0u64;
    loop {
        use tokio::io::AsyncReadExt;
        let n = file
            .read(&mut buf)
            .await
            .map_err(io_err(format!("reading {}", local.display())))?;
        if n == 0 {
            break;
        }
        if let Err(e) = writer.wait_for_capacity(4).await {
            let _ = writer.abort().await;
            return Err(bucket_err("upload part", remote)(e));
        }
        writer.write(&buf[..n]);
        sent += n as u64;
        tracing::info!(file = %remote, sent, size, "upload progress");
    }
    writer
        .finish()
        .await
        .map_err(bucket_err("finish multipart upload", remote))?;
    Ok(size)
}

/// Uploads a local block directory: every file, then meta.json last, so the block only
/// becomes visible (to readers that look for meta.json) once complete.
pub async fn upload_block(bucket: &Bucket, block_dir: &Path) -> Result<UploadStats> {
    upload_block_with_progress(bucket, block_dir, &mut |_, _| {}).await
}

/// [`upload_block`], calling `progress(bytes uploaded, bytes in the block)` after each file.
pub async fn upload_block_with_progress(
    bucket: &Bucket,
    block_dir: &Path,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<UploadStats> {
    let meta = BlockMeta::read(block_dir)?;
    let files = block_files(block_dir)?;
    let total: u64 = files
        .iter()
        .filter_map(|rel| std::fs::metadata(block_dir.join(rel)).ok())
        .map(|m| m.len())
        .sum();
    let mut stats = UploadStats::default();
    progress(0, total);
    for rel in files {
        let remote = ObjectPath::from(format!("{}/{rel}", meta.ulid));
        let bytes = upload_file(bucket, &block_dir.join(&rel), &remote).await?;
        stats.files += 1;
        stats.bytes += bytes;
        progress(stats.bytes, total);
    }
    Ok(stats)
}

/// Is the block complete in the bucket (its meta.json present)?
pub async fn block_exists(bucket: &Bucket, ulid: Ulid) -> Result<bool> {
    let path = ObjectPath::from(format!("{ulid}/{}", tsdb::meta::META_FILENAME));
    match bucket.head(&path).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(bucket_err("head", &path)(e)),
    }
}

/// Reads a block's meta.json from the bucket.
pub async fn read_meta(bucket: &Bucket, ulid: Ulid) -> Result<BlockMeta> {
    let path = ObjectPath::from(format!("{ulid}/{}", tsdb::meta::META_FILENAME));
    let data = bucket
        .get(&path)
        .await
        .map_err(bucket_err("get", &path))?
        .bytes()
        .await
        .map_err(bucket_err("read", &path))?;
    serde_json::from_slice(&data).map_err(|e| Error::InvalidBlock(format!("{path}: {e}")))
}

/// Complete blocks in the bucket (directories with a meta.json), oldest first.
pub async fn list_blocks(bucket: &Bucket) -> Result<Vec<BlockMeta>> {
    let root = bucket
        .list_with_delimiter(None)
        .await
        .map_err(bucket_err("list", &ObjectPath::from("")))?;
    let mut metas = Vec::new();
    for prefix in root.common_prefixes {
        let Ok(ulid) = Ulid::from_string(prefix.as_ref()) else {
            continue;
        };
        if block_exists(bucket, ulid).await? {
            metas.push(read_meta(bucket, ulid).await?);
        }
    }
    metas.sort_by_key(|m| (m.min_time, m.ulid));
    Ok(metas)
}

/// Every object of a block with its size.
pub async fn block_objects(bucket: &Bucket, ulid: Ulid) -> Result<Vec<(String, u64)>> {
    let prefix = ObjectPath::from(ulid.to_string());
    let mut out = Vec::new();
    let mut stream = bucket.list(Some(&prefix));
    while let Some(item) = stream.next().await {
        let meta = item.map_err(bucket_err("list", &prefix))?;
        out.push((meta.location.to_string(), meta.size));
    }
    out.sort();
    Ok(out)
}

/// Compares a block in the bucket with its local directory, file by file and byte by byte.
/// Returns what differs (empty when the bucket holds exactly the local block).
pub async fn diff_with_local(bucket: &Bucket, block_dir: &Path) -> Result<Vec<String>> {
    let meta = BlockMeta::read(block_dir)?;
    let ulid = meta.ulid.to_string();
    let mut problems = Vec::new();
    let remote: std::collections::BTreeMap<String, u64> = block_objects(bucket, meta.ulid)
        .await?
        .into_iter()
        .collect();
    let local = block_files(block_dir)?;
    for rel in &local {
        let path = format!("{ulid}/{rel}");
        if !remote.contains_key(&path) {
            problems.push(format!("{path} is missing from the bucket"));
            continue;
        }
        let object = ObjectPath::from(path.as_str());
        let data = bucket
            .get(&object)
            .await
            .map_err(bucket_err("get", &object))?
            .bytes()
            .await
            .map_err(bucket_err("read", &object))?;
        let mine = std::fs::read(block_dir.join(rel))
            .map_err(io_err(format!("reading {}", block_dir.join(rel).display())))?;
        if data != mine {
            problems.push(format!("{path} differs from the local copy"));
        }
    }
    for path in remote.keys() {
        let rel = path.strip_prefix(&format!("{ulid}/")).unwrap_or(path);
        if rel != DELETION_MARK_FILENAME && !local.iter().any(|l| l == rel) {
            problems.push(format!(
                "{path} is in the bucket but not in the local block"
            ));
        }
    }
    Ok(problems)
}

/// Deletes a block in the order Thanos' `block.Delete` uses, so that a reader never mistakes a
/// half-deleted block for a complete one: `meta.json` first (from then on every reader sees a
/// partial block), then every other object, and `deletion-mark.json` last (so the compactor
/// that crashes half-way still knows the leftovers are to be deleted). Deleting a block that is
/// already gone, or partly gone, is not an error.
///
/// Thanos also removes "directory marker" objects (`<ULID>/`, `<ULID>/chunks/`) that some
/// stores create; object_store paths cannot name them, and the stores Cairn talks to do not
/// create them.
pub async fn delete_block(bucket: &Bucket, ulid: Ulid) -> Result<()> {
    let meta = ObjectPath::from(format!("{ulid}/{}", tsdb::meta::META_FILENAME));
    let mark = ObjectPath::from(format!("{ulid}/{DELETION_MARK_FILENAME}"));
    delete_if_present(bucket, &meta).await?;
    let prefix = ObjectPath::from(ulid.to_string());
    let mut objects = Vec::new();
    let mut stream = bucket.list(Some(&prefix));
    while let Some(item) = stream.next().await {
        let object = item.map_err(bucket_err("list", &prefix))?;
        if object.location != meta && object.location != mark {
            objects.push(object.location);
        }
    }
    drop(stream);
    for object in &objects {
        delete_if_present(bucket, object).await?;
        tracing::debug!(file = %object, "deleted");
    }
    delete_if_present(bucket, &mark).await?;
    tracing::info!(block = %ulid, objects = objects.len(), "deleted block");
    Ok(())
}

/// Deletes one object; one that is already gone is fine (another compactor, or a retry).
async fn delete_if_present(bucket: &Bucket, path: &ObjectPath) -> Result<()> {
    match bucket.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(bucket_err("delete", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn large_files_go_up_in_parts_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let bucket: Bucket = crate::BucketConfig::filesystem(dir.path().join("bucket"))
            .build()
            .unwrap();
        let local = dir.path().join("big");
        let data: Vec<u8> = (0..(MULTIPART_PART_SIZE * 2 + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        std::fs::write(&local, &data).unwrap();
        let remote = ObjectPath::from("x/big");
        assert_eq!(
            upload_file(&bucket, &local, &remote).await.unwrap(),
            data.len() as u64
        );
        let back = bucket.get(&remote).await.unwrap().bytes().await.unwrap();
        assert!(back == data);
    }

    #[tokio::test]
    async fn a_marked_block_without_meta_is_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let bucket: Bucket = crate::BucketConfig::filesystem(dir.path().join("bucket"))
            .build()
            .unwrap();
        let ulid = Ulid::new();
        mark_for_deletion(&bucket, ulid, "compacted").await.unwrap();
        assert!(list_blocks(&bucket).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn delete_block_removes_meta_first_and_the_mark_last() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("bucket");
        let bucket: Bucket = crate::BucketConfig::filesystem(&root).build().unwrap();
        let ulid = Ulid::new();
        let other = Ulid::new();
        for id in [ulid, other] {
            for file in ["chunks/000001", "chunks/000002", "index", "meta.json"] {
                bucket
                    .put(
                        &ObjectPath::from(format!("{id}/{file}")),
                        PutPayload::from_static(b"x"),
                    )
                    .await
                    .unwrap();
            }
        }
        mark_for_deletion(&bucket, ulid, "test").await.unwrap();
        delete_block(&bucket, ulid).await.unwrap();
        assert!(block_objects(&bucket, ulid).await.unwrap().is_empty());
        assert_eq!(block_objects(&bucket, other).await.unwrap().len(), 4);
        // No empty directory is left behind to look like a partial upload.
        assert!(!root.join(ulid.to_string()).exists());
        // Deleting again (a retry after a crash) is fine.
        delete_block(&bucket, ulid).await.unwrap();
    }
}
