//! A block's `meta.json`: Prometheus' fields plus the `thanos` section.
//!
//! Written tab-indented like Go's `json.MarshalIndent(meta, "", "\t")`, via a temp file, fsync
//! and rename, so a reader never sees a half-written file. Unknown fields in a file written by
//! another tool are kept in `extra` maps so rewriting a meta does not drop them.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::error::IoContext;
use crate::{Error, Result};

pub const META_FILENAME: &str = "meta.json";
/// The only meta.json version Prometheus knows.
pub const META_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockMeta {
    #[serde(with = "ulid_string")]
    pub ulid: Ulid,
    #[serde(rename = "minTime")]
    pub min_time: i64,
    #[serde(rename = "maxTime")]
    pub max_time: i64,
    #[serde(default)]
    pub stats: BlockStats,
    pub compaction: Compaction,
    pub version: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub thanos: Option<ThanosMeta>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockStats {
    #[serde(rename = "numSamples", default, skip_serializing_if = "is_zero")]
    pub num_samples: u64,
    #[serde(rename = "numSeries", default, skip_serializing_if = "is_zero")]
    pub num_series: u64,
    #[serde(rename = "numChunks", default, skip_serializing_if = "is_zero")]
    pub num_chunks: u64,
    #[serde(rename = "numTombstones", default, skip_serializing_if = "is_zero")]
    pub num_tombstones: u64,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Compaction {
    pub level: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<BlockDesc>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockDesc {
    pub ulid: String,
    #[serde(rename = "minTime")]
    pub min_time: i64,
    #[serde(rename = "maxTime")]
    pub max_time: i64,
}

/// Thanos' extension (`thanos` key): external labels, resolution, origin.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ThanosMeta {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub downsample: Downsample,
    #[serde(default)]
    pub source: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileMeta>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Downsample {
    /// Resolution in milliseconds: 0 raw, 300000 (5 m), 3600000 (1 h).
    pub resolution: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileMeta {
    pub rel_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

/// Thanos sources a receiver writes (`thanos.source`).
pub const SOURCE_RECEIVE: &str = "receive";

impl BlockMeta {
    /// Reads `<block_dir>/meta.json`.
    pub fn read(block_dir: &Path) -> Result<BlockMeta> {
        let path = block_dir.join(META_FILENAME);
        let data = std::fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
        let meta: BlockMeta = serde_json::from_slice(&data)
            .map_err(|e| Error::corruption(&path, format!("invalid meta.json: {e}")))?;
        if meta.version != META_VERSION {
            return Err(Error::corruption(
                &path,
                format!("unsupported meta.json version {}", meta.version),
            ));
        }
        Ok(meta)
    }

    /// Writes `<block_dir>/meta.json` atomically (temp file, fsync, rename).
    pub fn write(&self, block_dir: &Path) -> Result<()> {
        let json = self.to_json();
        let path = block_dir.join(META_FILENAME);
        crate::block::write_file_atomically(&path, json.as_bytes())
    }

    /// The JSON text, tab-indented like Prometheus writes it.
    pub fn to_json(&self) -> String {
        let mut buf = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
        self.serialize(&mut ser)
            .expect("serializing a BlockMeta cannot fail");
        buf.push(b'\n');
        String::from_utf8(buf).expect("serde_json writes UTF-8")
    }

    /// The Thanos resolution (0 for raw blocks and blocks without a thanos section).
    pub fn resolution(&self) -> i64 {
        self.thanos.as_ref().map_or(0, |t| t.downsample.resolution)
    }
}

mod ulid_string {
    use serde::{Deserialize, Deserializer, Serializer};
    use ulid::Ulid;

    pub fn serialize<S: Serializer>(u: &Ulid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&u.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ulid, D::Error> {
        let s = String::deserialize(d)?;
        Ulid::from_string(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_thanos_meta_and_keeps_unknown_fields() {
        let text = r#"{
	"ulid": "01HQ8ZC3Y8ZJ6M5X2N0W6P3V2A",
	"minTime": 1700000000000,
	"maxTime": 1700007200000,
	"stats": {"numSamples": 10, "numSeries": 2, "numChunks": 2, "numFloatSamples": 10},
	"compaction": {"level": 1, "sources": ["01HQ8ZC3Y8ZJ6M5X2N0W6P3V2A"]},
	"version": 1,
	"thanos": {"labels": {"replica": "r0"}, "downsample": {"resolution": 0}, "source": "receive",
	           "segment_files": ["000001"]}
}"#;
        let meta: BlockMeta = serde_json::from_str(text).unwrap();
        assert_eq!(meta.stats.num_samples, 10);
        assert_eq!(meta.thanos.as_ref().unwrap().labels["replica"], "r0");
        let again: BlockMeta = serde_json::from_str(&meta.to_json()).unwrap();
        assert_eq!(again, meta);
        assert!(meta.to_json().contains("\"numFloatSamples\": 10"));
        assert!(meta.to_json().contains("\"segment_files\""));
        assert!(meta.to_json().starts_with("{\n\t\"ulid\""));
    }
}
