//! Compaction groups (Thanos' `DefaultGrouper`): blocks with the same resolution and the same
//! external labels, the only blocks that may be compacted into one.
//!
//! The key is `"<resolution>@<hash>"`, the hash being Prometheus' label-set hash of
//! `thanos.labels` (see [`objstore::thanos_meta::labels_hash`]); the compactor's work directory
//! for a group is `<data-dir>/compact/<key>/`. The labels must already have lost their replica
//! labels (the fetcher's `ReplicaLabelRemover`), or replicas of one stream form separate
//! groups and are never deduplicated.
//!
//! A group also carries the `thanos.extensions` its output blocks get: the keys present in
//! the extensions of every block of the group that has an extensions object, with the values
//! of the first such block by min time (Thanos' logical AND of extensions).

use std::collections::BTreeMap;

use tsdb::meta::BlockMeta;

pub use objstore::thanos_meta::{group_key, group_key_of, labels_hash};

/// One compaction group.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub key: String,
    /// The external labels shared by every block of the group.
    pub labels: BTreeMap<String, String>,
    /// Downsampling resolution in milliseconds (0 raw, 300000, 3600000).
    pub resolution: i64,
    /// The blocks, by min time (then ULID): the order the planner expects.
    pub metas: Vec<BlockMeta>,
    /// The extensions the group's output blocks carry; `None` when no block has any.
    pub extensions: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Group {
    /// The earliest min time of the group's blocks (0 for an empty group).
    pub fn min_time(&self) -> i64 {
        self.metas.iter().map(|m| m.min_time).min().unwrap_or(0)
    }

    /// The latest max time of the group's blocks (0 for an empty group).
    pub fn max_time(&self) -> i64 {
        self.metas.iter().map(|m| m.max_time).max().unwrap_or(0)
    }
}

/// Two blocks with one group key but different labels: a 64-bit hash collision, which Thanos
/// also refuses to paper over.
#[derive(Debug, thiserror::Error)]
#[error("block {block} has labels {labels:?} but its group {key} has {group_labels:?}")]
pub struct GroupError {
    pub block: ulid::Ulid,
    pub key: String,
    pub labels: BTreeMap<String, String>,
    pub group_labels: BTreeMap<String, String>,
}

/// Splits blocks into compaction groups, sorted by key, each with its blocks by min time.
pub fn group_blocks(metas: impl IntoIterator<Item = BlockMeta>) -> Result<Vec<Group>, GroupError> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for meta in metas {
        let key = group_key(&meta);
        let labels = objstore::thanos_meta::labels(&meta);
        let group = groups.entry(key.clone()).or_insert_with(|| Group {
            key: key.clone(),
            labels: labels.clone(),
            resolution: meta.resolution(),
            metas: Vec::new(),
            extensions: None,
        });
        if &group.labels != labels {
            return Err(GroupError {
                block: meta.ulid,
                key,
                labels: labels.clone(),
                group_labels: group.labels.clone(),
            });
        }
        group.metas.push(meta);
    }
    let mut groups: Vec<Group> = groups.into_values().collect();
    for group in &mut groups {
        group.metas.sort_by_key(|m| (m.min_time, m.ulid));
        group.extensions = combined_extensions(&group.metas);
    }
    Ok(groups)
}

/// Thanos' extensions AND over blocks in min-time order: blocks without an extensions object
/// are skipped; the first one with one provides the values, and later ones can only remove
/// keys.
pub fn combined_extensions(
    metas_by_min_time: &[BlockMeta],
) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut combined: Option<serde_json::Map<String, serde_json::Value>> = None;
    for meta in metas_by_min_time {
        let Some(serde_json::Value::Object(extensions)) = objstore::thanos_meta::extensions(meta)
        else {
            continue;
        };
        match &mut combined {
            None => combined = Some(extensions.clone()),
            Some(combined) => combined.retain(|key, _| extensions.contains_key(key)),
        }
    }
    combined
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(
        n: u64,
        min: i64,
        labels: serde_json::Value,
        resolution: i64,
        ext: Option<serde_json::Value>,
    ) -> BlockMeta {
        let mut thanos = json!({"labels": labels, "downsample": {"resolution": resolution}, "source": "receive"});
        if let Some(ext) = ext {
            thanos["extensions"] = ext;
        }
        serde_json::from_value(json!({
            "ulid": ulid::Ulid::from_parts(n, 0).to_string(), "minTime": min, "maxTime": min + 10,
            "compaction": {"level": 1}, "version": 1, "thanos": thanos,
        }))
        .unwrap()
    }

    #[test]
    fn groups_by_resolution_and_labels_sorted_by_key_and_min_time() {
        let groups = group_blocks(vec![
            meta(1, 20, json!({"a": "1"}), 0, None),
            meta(2, 0, json!({"a": "1"}), 0, None),
            meta(3, 0, json!({"a": "1"}), 300_000, None),
            meta(4, 0, json!({"a": "2"}), 0, None),
        ])
        .unwrap();
        assert_eq!(groups.len(), 3);
        let keys: Vec<&str> = groups.iter().map(|g| g.key.as_str()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        let raw_a1 = groups
            .iter()
            .find(|g| g.resolution == 0 && g.labels["a"] == "1")
            .unwrap();
        assert_eq!(raw_a1.key, group_key_of(0, &raw_a1.labels));
        let order: Vec<i64> = raw_a1.metas.iter().map(|m| m.min_time).collect();
        assert_eq!(order, vec![0, 20]);
        assert_eq!((raw_a1.min_time(), raw_a1.max_time()), (0, 30));
    }

    #[test]
    fn extensions_are_the_keys_every_block_with_extensions_has() {
        let metas = vec![
            meta(1, 0, json!({}), 0, Some(json!({"a": 1, "b": 2, "c": 3}))),
            meta(2, 10, json!({}), 0, None),
            meta(3, 20, json!({}), 0, Some(json!({"b": 20, "c": 30}))),
            meta(4, 30, json!({}), 0, Some(json!("not an object"))),
        ];
        let combined = combined_extensions(&metas).unwrap();
        assert_eq!(serde_json::Value::Object(combined), json!({"b": 2, "c": 3}));
        assert!(combined_extensions(&metas[1..2]).is_none());
    }
}
