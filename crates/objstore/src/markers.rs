//! Thanos' marker files: small JSON objects put beside a block's files to tell every other
//! component something about the block without touching the block itself.
//!
//! ```text
//! <ULID>/deletion-mark.json       {"id":"<ULID>","version":1,"details":"...","deletion_time":<unix s>}
//! <ULID>/no-compact-mark.json     {"id":"<ULID>","version":1,"details":"...","no_compact_time":<unix s>,"reason":"..."}
//! <ULID>/no-downsample-mark.json  {"id":"<ULID>","version":1,"details":"...","no_downsample_time":<unix s>,"reason":"..."}
//! ```
//!
//! Written the way Go's `json.Marshal` writes Thanos' structs: compact (no spaces, no trailing
//! newline), fields in declaration order, `details` left out when empty, and strings escaped as
//! Go escapes them (including `<`, `>`, `&`, U+2028 and U+2029), so a mark Cairn writes is
//! byte-identical to the one Thanos would write at the same second.
//!
//! Reading follows Thanos too: a missing file is "not marked", a file that is not valid JSON
//! (a half-uploaded mark) is its own error that callers log and skip, and a version other
//! than 1 is an error that fails whoever reads it. Marking is skipped, with a warning, when
//! the mark is already there; the first mark's time and reason win.
//!
//! This module owns the files only; what marks mean (when a marked block is deleted, skipped
//! by the planner, ...) belongs to the fetcher's filters and the compactor.

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use ulid::Ulid;

use crate::bucket::Bucket;

pub const DELETION_MARK_FILENAME: &str = "deletion-mark.json";
pub const NO_COMPACT_MARK_FILENAME: &str = "no-compact-mark.json";
pub const NO_DOWNSAMPLE_MARK_FILENAME: &str = "no-downsample-mark.json";

/// The only version of each marker file Thanos writes or accepts.
pub const MARKER_VERSION: i64 = 1;

/// Why a block is excluded from compaction (`reason` of `no-compact-mark.json`); Thanos'
/// `NoCompactReason` values. Readers keep any other string as it is.
pub mod no_compact_reason {
    /// Marked by an operator (`thanos tools bucket mark`).
    pub const MANUAL: &str = "manual";
    /// The planner's large-total-index-size filter: compacting it would make an index too big.
    pub const INDEX_SIZE_EXCEEDING: &str = "index-size-exceeding";
    /// The index has out-of-order chunks (`--compact.skip-block-with-out-of-order-chunks`).
    pub const OUT_OF_ORDER_CHUNKS: &str = "block-index-out-of-order-chunk";
    /// A downsampled block that would need vertical compaction, which aggregates cannot take.
    pub const DOWNSAMPLE_VERTICAL_COMPACTION: &str = "downsample-vertical-compaction";
}

/// Why a block is excluded from downsampling (`reason` of `no-downsample-mark.json`).
pub mod no_downsample_reason {
    pub const MANUAL: &str = "manual";
}

/// Errors reading or writing a marker file; each names the object.
#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    #[error("bucket {op} {path}: {source}")]
    Bucket {
        op: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },
    /// Not valid JSON for the marker: usually a mark caught half-uploaded. Thanos logs these
    /// and carries on as if the block were not marked.
    #[error("unparsable marker {path}: {source}")]
    Unparsable {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// A version this code does not know: the whole sync must fail rather than guess.
    #[error("unexpected {file} version {version} in {path}, expected {MARKER_VERSION}")]
    UnsupportedVersion {
        file: &'static str,
        path: String,
        version: i64,
    },
}

/// What a mark request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkOutcome {
    /// The mark was uploaded.
    Written,
    /// The block already had this mark; it was left as it was (Thanos warns and moves on).
    AlreadyMarked,
}

/// One kind of marker file.
pub trait Marker: DeserializeOwned {
    /// The file name inside `<ULID>/`.
    const FILENAME: &'static str;
    /// The version read from the file.
    fn version(&self) -> i64;
    /// The file's bytes, exactly as Thanos writes them.
    fn to_json(&self) -> String;
}

/// `deletion-mark.json`: the block is to be deleted once the mark is older than the
/// compactor's `--delete-delay`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct DeletionMark {
    #[serde(default = "Ulid::nil", with = "ulid_text")]
    pub id: Ulid,
    #[serde(default)]
    pub version: i64,
    #[serde(default)]
    pub details: String,
    /// Unix seconds.
    #[serde(default)]
    pub deletion_time: i64,
}

/// `no-compact-mark.json`: the planner leaves the block alone.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct NoCompactMark {
    #[serde(default = "Ulid::nil", with = "ulid_text")]
    pub id: Ulid,
    #[serde(default)]
    pub version: i64,
    #[serde(default)]
    pub details: String,
    /// Unix seconds.
    #[serde(default)]
    pub no_compact_time: i64,
    /// One of [`no_compact_reason`], or whatever another tool wrote.
    #[serde(default)]
    pub reason: String,
}

/// `no-downsample-mark.json`: downsampling skips the block.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct NoDownsampleMark {
    #[serde(default = "Ulid::nil", with = "ulid_text")]
    pub id: Ulid,
    #[serde(default)]
    pub version: i64,
    #[serde(default)]
    pub details: String,
    /// Unix seconds.
    #[serde(default)]
    pub no_downsample_time: i64,
    #[serde(default)]
    pub reason: String,
}

impl Marker for DeletionMark {
    const FILENAME: &'static str = DELETION_MARK_FILENAME;
    fn version(&self) -> i64 {
        self.version
    }
    fn to_json(&self) -> String {
        let mut out = marker_head(self.id, self.version, &self.details);
        out.push_str(&format!(",\"deletion_time\":{}}}", self.deletion_time));
        out
    }
}

impl Marker for NoCompactMark {
    const FILENAME: &'static str = NO_COMPACT_MARK_FILENAME;
    fn version(&self) -> i64 {
        self.version
    }
    fn to_json(&self) -> String {
        let mut out = marker_head(self.id, self.version, &self.details);
        out.push_str(&format!(
            ",\"no_compact_time\":{},\"reason\":",
            self.no_compact_time
        ));
        push_go_json_string(&mut out, &self.reason);
        out.push('}');
        out
    }
}

impl Marker for NoDownsampleMark {
    const FILENAME: &'static str = NO_DOWNSAMPLE_MARK_FILENAME;
    fn version(&self) -> i64 {
        self.version
    }
    fn to_json(&self) -> String {
        let mut out = marker_head(self.id, self.version, &self.details);
        out.push_str(&format!(
            ",\"no_downsample_time\":{},\"reason\":",
            self.no_downsample_time
        ));
        push_go_json_string(&mut out, &self.reason);
        out.push('}');
        out
    }
}

/// The fields every marker starts with: `{"id":...,"version":...[,"details":...]`.
fn marker_head(id: Ulid, version: i64, details: &str) -> String {
    let mut out = format!("{{\"id\":\"{id}\",\"version\":{version}");
    // `details` carries `omitempty` in all three Go structs.
    if !details.is_empty() {
        out.push_str(",\"details\":");
        push_go_json_string(&mut out, details);
    }
    out
}

/// Appends `s` as a JSON string the way Go's `encoding/json` (with its default HTML-safe
/// escaping) writes it. serde_json differs only in not escaping `<`, `>`, `&`, U+2028 and
/// U+2029, but a marker must match Thanos' bytes, so the whole table is spelled out here.
fn push_go_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Go 1.22 and later write these two short forms too.
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn marker_path(ulid: Ulid, filename: &str) -> ObjectPath {
    ObjectPath::from(format!("{ulid}/{filename}"))
}

fn bucket_err(
    op: &'static str,
    path: &ObjectPath,
) -> impl FnOnce(object_store::Error) -> MarkerError {
    let path = path.to_string();
    move |source| MarkerError::Bucket { op, path, source }
}

/// Reads `<ULID>/<M::FILENAME>`: `None` when the block has no such mark.
pub async fn read_marker<M: Marker>(bucket: &Bucket, ulid: Ulid) -> Result<Option<M>, MarkerError> {
    let path = marker_path(ulid, M::FILENAME);
    let data = match bucket.get(&path).await {
        Ok(r) => r.bytes().await.map_err(bucket_err("read", &path))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(bucket_err("get", &path)(e)),
    };
    let marker: M = serde_json::from_slice(&data).map_err(|source| MarkerError::Unparsable {
        path: path.to_string(),
        source,
    })?;
    if marker.version() != MARKER_VERSION {
        return Err(MarkerError::UnsupportedVersion {
            file: M::FILENAME,
            path: path.to_string(),
            version: marker.version(),
        });
    }
    Ok(Some(marker))
}

/// Uploads `marker` unless the block already has a file of its kind.
pub async fn write_marker<M: Marker>(
    bucket: &Bucket,
    ulid: Ulid,
    marker: &M,
) -> Result<MarkOutcome, MarkerError> {
    let path = marker_path(ulid, M::FILENAME);
    match bucket.head(&path).await {
        Ok(_) => {
            tracing::warn!(block = %ulid, file = M::FILENAME, "requested to mark a block that already has this mark; leaving the existing one");
            return Ok(MarkOutcome::AlreadyMarked);
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(bucket_err("head", &path)(e)),
    }
    bucket
        .put(&path, PutPayload::from(marker.to_json().into_bytes()))
        .await
        .map_err(bucket_err("put", &path))?;
    tracing::info!(block = %ulid, file = M::FILENAME, "block marked");
    Ok(MarkOutcome::Written)
}

fn unix_now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Marks a block for deletion (Thanos' `block.MarkForDeletion`); `details` says why, e.g.
/// "source of compacted block", "outdated block".
pub async fn mark_for_deletion(
    bucket: &Bucket,
    ulid: Ulid,
    details: &str,
) -> Result<MarkOutcome, MarkerError> {
    let mark = DeletionMark {
        id: ulid,
        version: MARKER_VERSION,
        details: details.to_string(),
        deletion_time: unix_now_seconds(),
    };
    write_marker(bucket, ulid, &mark).await
}

/// Excludes a block from compaction (Thanos' `block.MarkForNoCompact`); `reason` is one of
/// [`no_compact_reason`].
pub async fn mark_for_no_compact(
    bucket: &Bucket,
    ulid: Ulid,
    reason: &str,
    details: &str,
) -> Result<MarkOutcome, MarkerError> {
    let mark = NoCompactMark {
        id: ulid,
        version: MARKER_VERSION,
        details: details.to_string(),
        no_compact_time: unix_now_seconds(),
        reason: reason.to_string(),
    };
    write_marker(bucket, ulid, &mark).await
}

/// Excludes a block from downsampling (Thanos' `block.MarkForNoDownsample`).
pub async fn mark_for_no_downsample(
    bucket: &Bucket,
    ulid: Ulid,
    reason: &str,
    details: &str,
) -> Result<MarkOutcome, MarkerError> {
    let mark = NoDownsampleMark {
        id: ulid,
        version: MARKER_VERSION,
        details: details.to_string(),
        no_downsample_time: unix_now_seconds(),
        reason: reason.to_string(),
    };
    write_marker(bucket, ulid, &mark).await
}

/// Removes `<ULID>/<filename>` (Thanos' `block.RemoveMark`, behind `tools bucket mark
/// --remove`): `true` when there was a mark to remove, `false` when the block had none.
pub async fn remove_marker(
    bucket: &Bucket,
    ulid: Ulid,
    filename: &str,
) -> Result<bool, MarkerError> {
    let path = marker_path(ulid, filename);
    match bucket.head(&path).await {
        Ok(_) => {}
        Err(object_store::Error::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(bucket_err("head", &path)(e)),
    }
    match bucket.delete(&path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(bucket_err("delete", &path)(e)),
    }
    tracing::info!(block = %ulid, file = filename, "mark removed");
    Ok(true)
}

mod ulid_text {
    use serde::{Deserialize, Deserializer};
    use ulid::Ulid;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ulid, D::Error> {
        let s = String::deserialize(d)?;
        Ulid::from_string(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket() -> (tempfile::TempDir, Bucket) {
        let dir = tempfile::tempdir().unwrap();
        let bucket = crate::BucketConfig::filesystem(dir.path().join("bucket"))
            .build()
            .unwrap();
        (dir, bucket)
    }

    fn ulid() -> Ulid {
        Ulid::from_string("01HQ8ZC3Y8ZJ6M5X2N0W6P3V2A").unwrap()
    }

    async fn raw(bucket: &Bucket, ulid: Ulid, file: &str) -> String {
        let data = bucket
            .get(&marker_path(ulid, file))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        String::from_utf8(data.to_vec()).unwrap()
    }

    #[test]
    fn json_is_go_marshal_output() {
        // What `json.Marshal(metadata.DeletionMark{...})` gives for these values.
        let mark = DeletionMark {
            id: ulid(),
            version: 1,
            details: "source of compacted block".into(),
            deletion_time: 1_700_000_000,
        };
        assert_eq!(
            mark.to_json(),
            r#"{"id":"01HQ8ZC3Y8ZJ6M5X2N0W6P3V2A","version":1,"details":"source of compacted block","deletion_time":1700000000}"#
        );
        let no_details = DeletionMark {
            details: String::new(),
            ..mark
        };
        assert_eq!(
            no_details.to_json(),
            r#"{"id":"01HQ8ZC3Y8ZJ6M5X2N0W6P3V2A","version":1,"deletion_time":1700000000}"#
        );
        let no_compact = NoCompactMark {
            id: ulid(),
            version: 1,
            details: String::new(),
            no_compact_time: 5,
            reason: no_compact_reason::MANUAL.into(),
        };
        assert_eq!(
            no_compact.to_json(),
            r#"{"id":"01HQ8ZC3Y8ZJ6M5X2N0W6P3V2A","version":1,"no_compact_time":5,"reason":"manual"}"#
        );
        let no_downsample = NoDownsampleMark {
            id: ulid(),
            version: 1,
            details: "x".into(),
            no_downsample_time: 6,
            reason: no_downsample_reason::MANUAL.into(),
        };
        assert_eq!(
            no_downsample.to_json(),
            r#"{"id":"01HQ8ZC3Y8ZJ6M5X2N0W6P3V2A","version":1,"details":"x","no_downsample_time":6,"reason":"manual"}"#
        );
    }

    #[test]
    fn strings_are_escaped_like_go() {
        let mut out = String::new();
        push_go_json_string(&mut out, "a<b>&\"\\\n\t\u{1}\u{8}\u{c}\u{7f}é\u{2028}");
        assert_eq!(
            out,
            r#""a\u003cb\u003e\u0026\"\\\n\t\u0001\b\f"#.to_string() + "\u{7f}é\\u2028\""
        );
    }

    #[tokio::test]
    async fn marks_round_trip_and_are_not_overwritten() {
        let (_dir, bucket) = bucket();
        let id = ulid();
        assert!(read_marker::<DeletionMark>(&bucket, id)
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            mark_for_deletion(&bucket, id, "outdated block")
                .await
                .unwrap(),
            MarkOutcome::Written
        );
        let first = raw(&bucket, id, DELETION_MARK_FILENAME).await;
        assert!(first.starts_with(r#"{"id":"01HQ8ZC3Y8ZJ6M5X2N0W6P3V2A","version":1,"details":"outdated block","deletion_time":"#));
        assert!(!first.ends_with('\n'));
        let mark = read_marker::<DeletionMark>(&bucket, id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(mark.id, id);
        assert_eq!(mark.details, "outdated block");
        assert!(mark.deletion_time > 1_700_000_000);

        assert_eq!(
            mark_for_deletion(&bucket, id, "something else")
                .await
                .unwrap(),
            MarkOutcome::AlreadyMarked
        );
        assert_eq!(raw(&bucket, id, DELETION_MARK_FILENAME).await, first);

        mark_for_no_compact(&bucket, id, no_compact_reason::INDEX_SIZE_EXCEEDING, "")
            .await
            .unwrap();
        let nc = read_marker::<NoCompactMark>(&bucket, id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(nc.reason, "index-size-exceeding");
        mark_for_no_downsample(&bucket, id, no_downsample_reason::MANUAL, "by hand")
            .await
            .unwrap();
        let nd = read_marker::<NoDownsampleMark>(&bucket, id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (nd.reason.as_str(), nd.details.as_str()),
            ("manual", "by hand")
        );

        // Removing one mark leaves the others; removing it again finds nothing.
        assert!(remove_marker(&bucket, id, NO_COMPACT_MARK_FILENAME)
            .await
            .unwrap());
        assert!(read_marker::<NoCompactMark>(&bucket, id)
            .await
            .unwrap()
            .is_none());
        assert!(!remove_marker(&bucket, id, NO_COMPACT_MARK_FILENAME)
            .await
            .unwrap());
        assert!(read_marker::<NoDownsampleMark>(&bucket, id)
            .await
            .unwrap()
            .is_some());
        assert_eq!(raw(&bucket, id, DELETION_MARK_FILENAME).await, first);
    }

    #[tokio::test]
    async fn readers_reject_other_versions_and_report_half_written_marks() {
        let (_dir, bucket) = bucket();
        let id = ulid();
        let put = |file: &'static str, body: &'static str| {
            let bucket = bucket.clone();
            async move {
                bucket
                    .put(&marker_path(id, file), PutPayload::from(body.as_bytes()))
                    .await
                    .unwrap();
            }
        };
        put(
            DELETION_MARK_FILENAME,
            r#"{"id":"01HQ8ZC3Y8ZJ6M5X2N0W6P3V2A","version":2,"deletion_time":1}"#,
        )
        .await;
        let err = read_marker::<DeletionMark>(&bucket, id).await.unwrap_err();
        assert!(matches!(
            err,
            MarkerError::UnsupportedVersion { version: 2, .. }
        ));
        assert!(err.to_string().contains("deletion-mark.json"), "{err}");

        put(
            NO_COMPACT_MARK_FILENAME,
            r#"{"id":"01HQ8ZC3Y8ZJ6M5X2N0W6P3V2A","ver"#,
        )
        .await;
        let err = read_marker::<NoCompactMark>(&bucket, id).await.unwrap_err();
        assert!(matches!(err, MarkerError::Unparsable { .. }), "{err}");

        // A mark without a version is version 0 to Go, so it is rejected too.
        put(
            NO_DOWNSAMPLE_MARK_FILENAME,
            r#"{"id":"01HQ8ZC3Y8ZJ6M5X2N0W6P3V2A"}"#,
        )
        .await;
        let err = read_marker::<NoDownsampleMark>(&bucket, id)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            MarkerError::UnsupportedVersion { version: 0, .. }
        ));
    }
}
