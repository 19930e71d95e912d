//! Files from outside, damaged at random: a hashrings file, the limits file, objstore.yml, a
//! relabel selector and a block's meta.json are mutated byte by byte from valid examples (and
//! replaced by arbitrary text), and each parser must answer with a value or an error, never a
//! panic. The case count follows `PROPTEST_CASES` (256 by default) for longer runs.

use proptest::prelude::*;

const HASHRINGS: &str = r#"[
  {"hashring": "team-a", "tenants": ["team-a"], "endpoints": ["r0:10901", "r1:10901", "r2:10901"]},
  {"hashring": "teams", "tenants": ["team-*"], "tenant_matcher_type": "glob", "algorithm": "ketama",
   "endpoints": [{"address": "r2:10901", "az": "a"}, {"address": "r3:10901", "az": "b"}, {"address": "r4:10901", "az": "c"}]},
  {"hashring": "default", "endpoints": ["r0:10901", "r1:10901", "r2:10901", "r3:10901"]}
]"#;

const LIMITS: &str = "write:\n  global:\n    max_concurrency: 30\n  default:\n    request:\n      size_bytes_limit: 1048576\n      series_limit: 5000\n      samples_limit: 50000\n    head_series_limit: 1000000\n  tenants:\n    team-a:\n      head_series_limit: 20000\n";

const OBJSTORE: &str = "type: S3\nconfig:\n  bucket: metrics\n  endpoint: 127.0.0.1:9000\n  region: us-east-1\n  access_key: a\n  secret_key: b\n  insecure: true\n  http_config:\n    idle_conn_timeout: 90s\n";

const RELABEL: &str = "- action: keep\n  source_labels: [cluster, region]\n  separator: ;\n  regex: eu-.*;(west|east)\n- action: hashmod\n  source_labels: [__block_id]\n  modulus: 3\n  target_label: shard\n- action: drop\n  source_labels: [shard]\n  regex: '[12]'\n";

const META: &str = r#"{"ulid":"01HF6Z4V3Q7Y3D6M3Q9K2C7X1A","minTime":1699999200000,"maxTime":1700006400000,
"stats":{"numSamples":480,"numSeries":2,"numChunks":4},
"compaction":{"level":2,"sources":["01HF6Z4V3Q7Y3D6M3Q9K2C7X1A","01HF6Z4V3Q7Y3D6M3Q9K2C7X1B"],"parents":[{"ulid":"01HF6Z4V3Q7Y3D6M3Q9K2C7X1B","minTime":1699999200000,"maxTime":1700006400000}]},
"version":1,"thanos":{"labels":{"replica":"a","tenant_id":"t"},"downsample":{"resolution":300000},"source":"compactor","segment_files":["000001"],"files":[{"rel_path":"index","size_bytes":1024}]}}"#;

/// Edits to a text: (position as a fraction of its length, operation, byte).
fn edits() -> impl Strategy<Value = Vec<(f64, u8, u8)>> {
    prop::collection::vec((0.0..1.0f64, 0u8..3, any::<u8>()), 1..12)
}

/// `base` with the edits applied (replace, delete or insert a byte), as text (lossy).
fn mutate(base: &str, edits: &[(f64, u8, u8)]) -> String {
    let mut bytes = base.as_bytes().to_vec();
    for &(at, op, b) in edits {
        let i = ((bytes.len() as f64) * at) as usize;
        match op {
            0 if i < bytes.len() => bytes[i] = b,
            1 if i < bytes.len() => {
                bytes.remove(i);
            }
            _ => bytes.insert(i.min(bytes.len()), b),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn parse_all(text: &str) {
    use receive::hashring::{Algorithm, Hashrings, HashringsConfig};
    if let Ok(config) = HashringsConfig::parse(text) {
        let _ = config.lint(Algorithm::Ketama, 3);
    }
    for rf in [1, 3] {
        let _ = Hashrings::parse(text, Algorithm::Ketama, rf);
        let _ = Hashrings::parse(text, Algorithm::Hashmod, rf);
    }
    let _ = receive::limits::LimitsConfig::parse(text);
    if let Ok(c) = objstore::config::BucketConfig::parse(text) {
        // Building an S3 client touches no network; a FILESYSTEM one would create directories.
        if c.kind == "S3" {
            let _ = c.build();
        }
    }
    let _ = objstore::relabel::parse_relabel_configs(text, None);
    let _ = serde_json::from_str::<tsdb::meta::BlockMeta>(text);
}

proptest! {
    #[test]
    fn damaged_hashrings_files_never_panic(e in edits()) {
        parse_all(&mutate(HASHRINGS, &e));
    }

    #[test]
    fn damaged_limits_files_never_panic(e in edits()) {
        parse_all(&mutate(LIMITS, &e));
    }

    #[test]
    fn damaged_objstore_files_never_panic(e in edits()) {
        parse_all(&mutate(OBJSTORE, &e));
    }

    #[test]
    fn damaged_relabel_configs_never_panic(e in edits()) {
        parse_all(&mutate(RELABEL, &e));
    }

    #[test]
    fn damaged_block_metas_never_panic(e in edits()) {
        parse_all(&mutate(META, &e));
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        parse_all(&text);
    }
}

#[test]
fn the_examples_are_valid() {
    use receive::hashring::{Algorithm, Hashrings};
    Hashrings::parse(HASHRINGS, Algorithm::Ketama, 3).unwrap();
    receive::limits::LimitsConfig::parse(LIMITS).unwrap();
    objstore::config::BucketConfig::parse(OBJSTORE).unwrap();
    objstore::relabel::parse_relabel_configs(RELABEL, None).unwrap();
    serde_json::from_str::<tsdb::meta::BlockMeta>(META).unwrap();
}
