//! What the bucket's readers need from a block's meta.json beyond `tsdb::meta::BlockMeta`'s
//! typed fields: the Thanos section read with Thanos' defaults for a block that has none, the
//! fields Cairn keeps in `extra` maps (`upload_time`, `extensions`, `compaction.failed`), and
//! the compaction group key.
//!
//! The group key is Thanos' `Thanos.GroupKey()`: `"<resolution>@<hash>"` with the hash of
//! the external labels computed as Prometheus' `labels.Labels.Hash()` in the `slicelabels`
//! build Thanos releases use: XXH64 (seed 0) over the labels sorted by name, each written as
//! name, 0xFF, value, 0xFF. Blocks in one group are compacted together, and the dedup filter
//! only compares blocks of one group, so the key must match Thanos' byte for byte for a
//! bucket shared with Thanos components.

use std::collections::BTreeMap;

use tsdb::meta::{BlockMeta, FileMeta};

use model::time::{parse_rfc3339_instant as parse_rfc3339, Instant};

/// `thanos.source` of blocks the compactor writes.
pub const SOURCE_COMPACTOR: &str = "compactor";
/// `thanos.source` of blocks the compactor rewrote while repairing them.
pub const SOURCE_COMPACTOR_REPAIR: &str = "compactor.repair";
/// `thanos.source` of blocks `thanos tools bucket` repaired.
pub const SOURCE_BUCKET_REPAIR: &str = "bucket.repair";

/// Separates names and values in Prometheus' label hash; a byte UTF-8 text never contains.
const LABEL_SEPARATOR: u8 = 0xFF;

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// The block's external labels (`thanos.labels`); none for a block without a Thanos section.
pub fn labels(meta: &BlockMeta) -> &BTreeMap<String, String> {
    meta.thanos.as_ref().map_or(&NO_LABELS, |t| &t.labels)
}

/// `thanos.source` ("" when absent).
pub fn source(meta: &BlockMeta) -> &str {
    meta.thanos.as_ref().map_or("", |t| t.source.as_str())
}

/// `thanos.upload_time`, when set: absent, unparsable and Go's zero time all mean "unknown",
/// as a zero `time.Time` does to Thanos.
pub fn upload_time(meta: &BlockMeta) -> Option<Instant> {
    let text = meta.thanos.as_ref()?.extra.get("upload_time")?.as_str()?;
    parse_rfc3339(text).ok().filter(|t| !t.is_go_zero())
}

/// `thanos.extensions`, when present and not null.
pub fn extensions(meta: &BlockMeta) -> Option<&serde_json::Value> {
    meta.thanos
        .as_ref()?
        .extra
        .get("extensions")
        .filter(|v| !v.is_null())
}

/// `compaction.failed`: Prometheus sets it on blocks whose compaction failed, and planners
/// never pick a range holding one.
pub fn compaction_failed(meta: &BlockMeta) -> bool {
    meta.compaction
        .extra
        .get("failed")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

/// `thanos.files`, the block's files with sizes as the uploader recorded them.
pub fn files(meta: &BlockMeta) -> &[FileMeta] {
    meta.thanos.as_ref().map_or(&[], |t| t.files.as_slice())
}

/// Prometheus' `labels.Labels.Hash()` (slicelabels) of a label map. Empty values count, as in
/// `labels.FromMap`, which keeps them.
pub fn labels_hash(labels: &BTreeMap<String, String>) -> u64 {
    let mut hasher = xxhash_rust::xxh64::Xxh64::new(0);
    for (name, value) in labels {
        hasher.update(name.as_bytes());
        hasher.update(&[LABEL_SEPARATOR]);
        hasher.update(value.as_bytes());
        hasher.update(&[LABEL_SEPARATOR]);
    }
    hasher.digest()
}

/// The compaction group key of a resolution and label set: `"<resolution>@<hash>"`.
pub fn group_key_of(resolution: i64, labels: &BTreeMap<String, String>) -> String {
    format!("{resolution}@{}", labels_hash(labels))
}

/// The block's compaction group key (Thanos' `Thanos.GroupKey()`).
pub fn group_key(meta: &BlockMeta) -> String {
    group_key_of(meta.resolution(), labels(meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn group_keys_match_thanos() {
        // Thanos' pkg/compact/compact_test.go TestGroupKey.
        assert_eq!(group_key_of(0, &map(&[])), "0@17241709254077376921");
        assert_eq!(
            group_key_of(0, &map(&[("foo", "bar"), ("foo1", "bar2")])),
            "0@2124638872457683483"
        );
        assert_eq!(
            group_key_of(
                0,
                &map(&[(
                    r"foo/some..thing/some.thing/../",
                    r"a_b_c/bar-something-a\metric/a\x"
                )])
            ),
            "0@16590761456214576373"
        );
        // compact_e2e_test.go: the same (empty) labels at resolution 1000.
        assert_eq!(group_key_of(1000, &map(&[])), "1000@17241709254077376921");
    }

    #[test]
    fn hash_is_xxh64_over_name_ff_value_ff() {
        let labels = map(&[("b", "2"), ("a", "1")]);
        let bytes = b"a\xff1\xffb\xff2\xff";
        assert_eq!(labels_hash(&labels), xxhash_rust::xxh64::xxh64(bytes, 0));
    }

    #[test]
    fn upload_time_and_flags_from_extra_fields() {
        let mut meta: BlockMeta = serde_json::from_str(
            r#"{"ulid":"01HQ8ZC3Y8ZJ6M5X2N0W6P3V2A","minTime":0,"maxTime":1,
                "compaction":{"level":1,"failed":true},"version":1,
                "thanos":{"labels":{"a":"b"},"downsample":{"resolution":300000},"source":"compactor",
                          "upload_time":"2023-11-14T22:13:20.25Z","extensions":{"x":1}}}"#,
        )
        .unwrap();
        assert_eq!(upload_time(&meta).unwrap().unix_millis(), 1_700_000_000_250);
        assert!(compaction_failed(&meta));
        assert_eq!(source(&meta), SOURCE_COMPACTOR);
        assert_eq!(extensions(&meta).unwrap()["x"], 1);
        assert!(group_key(&meta).starts_with("300000@"));
        meta.thanos.as_mut().unwrap().extra.insert(
            "upload_time".into(),
            serde_json::json!("0001-01-01T00:00:00Z"),
        );
        assert!(upload_time(&meta).is_none());
        meta.thanos = None;
        assert!(labels(&meta).is_empty());
        assert_eq!(group_key(&meta), "0@17241709254077376921");
    }
}
