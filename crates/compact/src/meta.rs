//! The meta.json of a block made by compaction: Prometheus' `CompactBlockMetas` for the TSDB
//! part, then the Thanos section the compactor injects (`Group.compact` + `InjectThanos`).
//!
//! TSDB part:
//! - `minTime`/`maxTime`: the union of the inputs' ranges;
//! - `compaction.level`: the highest input level plus one;
//! - `compaction.sources`: the inputs' sources, deduplicated and sorted by ULID;
//! - `compaction.parents`: `{ulid, minTime, maxTime}` of each input, in plan order;
//! - no `hints`: the Prometheus version Thanos builds with (v3.9) copies none into
//!   compacted blocks (newer Prometheus keeps `from-out-of-order` when every input has it);
//! - `stats` from the written block, `version` 1.
//!
//! Thanos part, which replaces whatever the inputs had:
//! - `labels`: the group's labels (replica labels already removed), `downsample.resolution`:
//!   the group's, `source`: `"compactor"`;
//! - `segment_files`: the chunk segment names (deprecated in Thanos but still written);
//! - `index_stats`: always written, `{}` when unknown;
//! - `extensions`: the group's combined extensions, and `null` when it has none: Go stores the
//!   group's nil map in an interface, which `omitempty` does not drop;
//! - no `version` (readers take 0 as 1); `files` and `upload_time` are set by the upload.

use std::collections::BTreeSet;

use objstore::thanos_meta::SOURCE_COMPACTOR;
use tsdb::meta::{
    BlockDesc, BlockMeta, BlockStats, Compaction, Downsample, ThanosMeta, META_VERSION,
};
use ulid::Ulid;

use crate::group::Group;

/// `thanos.index_stats`: the largest series and chunk of the written index, which the store
/// gateway uses to size its reads (0 = unknown, left out).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    pub series_max_size: i64,
    pub chunk_max_size: i64,
}

impl IndexStats {
    pub(crate) fn to_json(self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        if self.series_max_size != 0 {
            object.insert("series_max_size".into(), self.series_max_size.into());
        }
        if self.chunk_max_size != 0 {
            object.insert("chunk_max_size".into(), self.chunk_max_size.into());
        }
        serde_json::Value::Object(object)
    }
}

/// What is known of the output block only once it is written.
#[derive(Clone, Debug, Default)]
pub struct CompactedBlock {
    pub stats: BlockStats,
    /// Chunk segment file names (`000001`, ...), sorted.
    pub segment_files: Vec<String>,
    pub index_stats: IndexStats,
}

/// Prometheus' `CompactBlockMetas`: the TSDB part of the output meta of compacting `inputs`
/// (in plan order) into block `ulid`. No stats and no Thanos section yet.
///
/// # Panics
/// When `inputs` is empty: there is no compaction of nothing.
pub fn compact_block_metas(ulid: Ulid, inputs: &[&BlockMeta]) -> BlockMeta {
    assert!(!inputs.is_empty(), "compacting no blocks");
    let min_time = inputs.iter().map(|m| m.min_time).min().expect("not empty");
    let max_time = inputs.iter().map(|m| m.max_time).max().expect("not empty");
    let level = inputs
        .iter()
        .map(|m| m.compaction.level)
        .max()
        .expect("not empty")
        + 1;
    // Sorted as ULIDs (which is their text order, once normalised to upper case as Go writes
    // them); a source that is not a ULID is kept as written, after the ULIDs.
    let mut ulid_sources = BTreeSet::new();
    let mut other_sources = BTreeSet::new();
    for source in inputs.iter().flat_map(|m| &m.compaction.sources) {
        match Ulid::from_string(source) {
            Ok(u) => ulid_sources.insert(u),
            Err(_) => other_sources.insert(source.clone()),
        };
    }
    let sources = ulid_sources
        .into_iter()
        .map(|u| u.to_string())
        .chain(other_sources)
        .collect();
    let parents = inputs
        .iter()
        .map(|m| BlockDesc {
            ulid: m.ulid.to_string(),
            min_time: m.min_time,
            max_time: m.max_time,
        })
        .collect();
    BlockMeta {
        ulid,
        min_time,
        max_time,
        stats: BlockStats::default(),
        compaction: Compaction {
            level,
            sources,
            parents,
            extra: Default::default(),
        },
        version: META_VERSION,
        thanos: None,
    }
}

/// The complete meta.json of the block `ulid` compacted from `inputs` (in plan order) of
/// `group`; see the module docs for each field.
pub fn compacted_meta(
    ulid: Ulid,
    inputs: &[&BlockMeta],
    group: &Group,
    block: &CompactedBlock,
) -> BlockMeta {
    let mut meta = compact_block_metas(ulid, inputs);
    meta.stats = block.stats.clone();
    let mut extra = std::collections::BTreeMap::new();
    if !block.segment_files.is_empty() {
        extra.insert(
            "segment_files".to_string(),
            serde_json::Value::from(block.segment_files.clone()),
        );
    }
    extra.insert("index_stats".to_string(), block.index_stats.to_json());
    extra.insert(
        "extensions".to_string(),
        group
            .extensions
            .clone()
            .map_or(serde_json::Value::Null, serde_json::Value::Object),
    );
    meta.thanos = Some(ThanosMeta {
        labels: group.labels.clone(),
        downsample: Downsample {
            resolution: group.resolution,
        },
        source: SOURCE_COMPACTOR.to_string(),
        files: Vec::new(),
        extra,
    });
    meta
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn u(n: u64) -> Ulid {
        Ulid::from_parts(n, 0)
    }

    fn input(n: u64, min: i64, max: i64, level: u32, sources: &[u64]) -> BlockMeta {
        let sources: Vec<String> = sources.iter().map(|s| u(*s).to_string()).collect();
        serde_json::from_value(json!({
            "ulid": u(n).to_string(), "minTime": min, "maxTime": max,
            "stats": {"numSamples": 100, "numSeries": 3},
            "compaction": {"level": level, "sources": sources, "hints": ["from-out-of-order"]},
            "version": 1,
            "thanos": {"labels": {"tenant": "a", "replica": "r1"}, "downsample": {"resolution": 0},
                       "source": "receive", "upload_time": "2023-11-14T22:13:20Z",
                       "extensions": {"x": 1},
                       "files": [{"rel_path": "index", "size_bytes": 10}]},
        }))
        .unwrap()
    }

    #[test]
    fn tsdb_part_follows_compact_block_metas() {
        let a = input(10, 0, 7_200_000, 1, &[10]);
        let b = input(11, 7_200_000, 14_400_000, 2, &[3, 1, 10]);
        let c = input(12, 3_600_000, 21_600_000, 1, &[12]);
        let out = compact_block_metas(u(99), &[&a, &b, &c]);
        assert_eq!(out.ulid, u(99));
        assert_eq!((out.min_time, out.max_time), (0, 21_600_000));
        assert_eq!(out.compaction.level, 3);
        let sources: Vec<String> = [1, 3, 10, 12].iter().map(|n| u(*n).to_string()).collect();
        assert_eq!(out.compaction.sources, sources);
        let parents: Vec<(String, i64, i64)> = out
            .compaction
            .parents
            .iter()
            .map(|p| (p.ulid.clone(), p.min_time, p.max_time))
            .collect();
        assert_eq!(
            parents,
            vec![
                (u(10).to_string(), 0, 7_200_000),
                (u(11).to_string(), 7_200_000, 14_400_000),
                (u(12).to_string(), 3_600_000, 21_600_000),
            ]
        );
        assert!(out.compaction.extra.is_empty(), "no hints copied");
        assert_eq!(out.version, 1);
        assert_eq!(out.stats, BlockStats::default());
        assert!(out.thanos.is_none());
    }

    #[test]
    fn thanos_part_is_the_groups() {
        let a = input(1, 0, 10, 1, &[1]);
        let b = input(2, 10, 20, 1, &[2]);
        let mut group = Group {
            key: "0@1".into(),
            labels: [("tenant".to_string(), "a".to_string())].into(),
            resolution: 0,
            metas: vec![a.clone(), b.clone()],
            extensions: crate::group::combined_extensions(&[a.clone(), b.clone()]),
        };
        let block = CompactedBlock {
            stats: BlockStats {
                num_samples: 200,
                num_series: 3,
                num_chunks: 4,
                ..Default::default()
            },
            segment_files: vec!["000001".into()],
            index_stats: IndexStats {
                series_max_size: 512,
                chunk_max_size: 0,
            },
        };
        let out = compacted_meta(u(3), &[&a, &b], &group, &block);
        let json: serde_json::Value = serde_json::from_str(&out.to_json()).unwrap();
        assert_eq!(
            json["thanos"],
            json!({
                "labels": {"tenant": "a"},
                "downsample": {"resolution": 0},
                "source": "compactor",
                "segment_files": ["000001"],
                "index_stats": {"series_max_size": 512},
                "extensions": {"x": 1},
            })
        );
        assert_eq!(
            json["stats"],
            json!({"numSamples": 200, "numSeries": 3, "numChunks": 4})
        );
        assert_eq!(json["compaction"]["level"], 2);

        group.extensions = None;
        let bare = compacted_meta(u(3), &[&a, &b], &group, &CompactedBlock::default());
        let json: serde_json::Value = serde_json::from_str(&bare.to_json()).unwrap();
        assert_eq!(json["thanos"]["index_stats"], json!({}));
        assert_eq!(
            json["thanos"].get("extensions"),
            Some(&serde_json::Value::Null)
        );
        assert!(json["thanos"].get("segment_files").is_none());
        assert!(json["thanos"].get("upload_time").is_none());
        assert!(json["thanos"].get("files").is_none());
    }
}
