//! Thanos' `pkg/compact/planner_test.go`, case by case, over Cairn's types: the same blocks
//! (ULIDs `ulid.MustNew(n, nil)`, i.e. time n and zero entropy), the same ranges
//! (20, 60, 180, 540, 1620, Prometheus' exponential ranges scaled down) and the same plans.

use super::*;
use serde_json::json;

const RANGES: [i64; 5] = [20, 60, 180, 540, 1620];

fn u(n: u64) -> Ulid {
    Ulid::from_parts(n, 0)
}

/// Block `n` spanning `[min, max)`.
fn b(n: u64, min: i64, max: i64) -> BlockMeta {
    serde_json::from_value(json!({
        "ulid": u(n).to_string(), "minTime": min, "maxTime": max,
        "compaction": {"level": 1}, "version": 1,
        "thanos": {"labels": {}, "downsample": {"resolution": 0}, "source": ""},
    }))
    .unwrap()
}

/// Block `n` with tombstone and series counts.
fn b_stats(n: u64, min: i64, max: i64, series: u64, tombstones: u64) -> BlockMeta {
    let mut m = b(n, min, max);
    m.stats.num_series = series;
    m.stats.num_tombstones = tombstones;
    m
}

fn by_min_time(mut metas: Vec<BlockMeta>) -> Vec<BlockMeta> {
    // Go's sort.Slice by MinTime; no case has equal min times.
    metas.sort_by_key(|m| m.min_time);
    metas
}

fn ids(plan: &[&BlockMeta]) -> Vec<u64> {
    plan.iter().map(|m| m.ulid.timestamp_ms()).collect()
}

fn marks(ns: &[u64]) -> BTreeSet<Ulid> {
    ns.iter().map(|n| u(*n)).collect()
}

/// `TestPlanners_Plan_Compatibility` (the tsdbBasedPlanner half; the other half checks that
/// Prometheus' own planner agrees).
#[test]
fn plan_compatibility_cases() {
    let cases: Vec<(&str, Vec<BlockMeta>, Vec<u64>)> = vec![
        ("Outside range", vec![b(1, 0, 20)], vec![]),
        (
            "We should wait for four blocks of size 20 to appear before compacting.",
            vec![b(1, 0, 20), b(2, 20, 40)],
            vec![],
        ),
        (
            "We should wait for a next block of size 20 to appear before compacting the existing ones. We have three, but we ignore the fresh one from WAl",
            vec![b(1, 0, 20), b(2, 20, 40), b(3, 40, 60)],
            vec![],
        ),
        (
            "Block to fill the entire parent range appeared – should be compacted",
            vec![b(1, 0, 20), b(2, 20, 40), b(3, 40, 60), b(4, 60, 80)],
            vec![1, 2, 3],
        ),
        (
            "There are blocks to fill the entire 2nd parent range.",
            vec![b(6, 0, 60), b(7, 60, 120), b(8, 120, 180), b(9, 180, 200), b(10, 200, 220)],
            vec![6, 7, 8],
        ),
        (
            "Block for the next parent range appeared with gap with size 20. Nothing will happen in the first one anymore but we ignore fresh one still, so no compaction",
            vec![b(1, 0, 20), b(2, 20, 40), b(4, 60, 80)],
            vec![],
        ),
        (
            "Block for the next parent range appeared, and we have a gap with size 20 between second and third block. We will not get this missed gap anymore and we should compact just these two.",
            vec![b(1, 0, 20), b(2, 20, 40), b(4, 60, 80), b(5, 80, 100)],
            vec![1, 2],
        ),
        (
            "We have 20, 20, 20, 60, 60 range blocks. '5' is marked as fresh one",
            vec![b(1, 0, 20), b(2, 20, 40), b(3, 40, 60), b(4, 60, 120), b(5, 120, 180)],
            vec![1, 2, 3],
        ),
        (
            "There are blocks to fill the entire 2nd parent range, but there is a gap",
            vec![b(6, 0, 60), b(8, 120, 180), b(9, 180, 200), b(10, 200, 220)],
            vec![6, 8],
        ),
        (
            "We have 20, 60, 20, 60, 240 range blocks. We can compact 20 + 60 + 60",
            vec![b(2, 20, 40), b(4, 60, 120), b(5, 960, 980), b(6, 120, 180), b(7, 720, 960)],
            vec![2, 4, 6],
        ),
        (
            "Do not select large blocks that have many tombstones when there is no fresh block",
            vec![b_stats(1, 0, 540, 10, 3)],
            vec![],
        ),
        (
            "Select large blocks that have many tombstones when fresh appears",
            vec![b_stats(1, 0, 540, 10, 3), b(2, 540, 560)],
            vec![1],
        ),
        (
            "For small blocks, do not compact tombstones, even when fresh appears.",
            vec![b_stats(1, 0, 60, 10, 3), b(2, 60, 80)],
            vec![],
        ),
        (
            "Regression test: we were stuck in a compact loop where we always recompacted the same block when tombstones and series counts were zero",
            vec![b_stats(1, 0, 540, 0, 0), b(2, 540, 560)],
            vec![],
        ),
        (
            "Regression test: we were wrongly assuming that new block is fresh from WAL when its ULID is newest.",
            vec![b(5, 0, 360), b(6, 540, 560), b(7, 360, 420), b(8, 420, 540)],
            vec![7, 8],
        ),
        (
            "Overlapping blocks 1",
            vec![b(1, 0, 20), b(2, 19, 40), b(3, 40, 60)],
            vec![1, 2],
        ),
        (
            "Overlapping blocks 2",
            vec![b(1, 0, 20), b(2, 20, 40), b(3, 30, 50)],
            vec![2, 3],
        ),
        (
            "Overlapping blocks 3",
            vec![b(1, 0, 20), b(2, 10, 40), b(3, 30, 50)],
            vec![1, 2, 3],
        ),
        (
            "Overlapping blocks 4",
            vec![b(5, 0, 360), b(6, 340, 560), b(7, 360, 420), b(8, 420, 540)],
            vec![5, 6, 7, 8],
        ),
        (
            "Overlapping blocks 5",
            vec![b(1, 0, 10), b(2, 9, 20), b(3, 30, 40), b(4, 39, 50)],
            vec![1, 2],
        ),
    ];
    let planner = Planner::new(RANGES.to_vec());
    for (name, metas, expected) in cases {
        let metas = by_min_time(metas);
        assert_eq!(
            ids(&planner.plan(&metas, &BTreeSet::new())),
            expected,
            "{name}"
        );
    }
}

/// `TestRangeWithFailedCompactionWontGetSelected`: the second block's compaction failed, so
/// no range holding it is planned.
#[test]
fn range_with_failed_compaction_is_not_selected() {
    let cases = vec![
        vec![b(1, 0, 20), b(2, 20, 40), b(3, 40, 60), b(4, 60, 80)],
        vec![b(1, 0, 20), b(2, 20, 40), b(4, 60, 80), b(5, 80, 100)],
        vec![
            b(1, 0, 20),
            b(2, 20, 40),
            b(3, 40, 60),
            b(4, 60, 120),
            b(5, 120, 180),
            b(6, 180, 200),
        ],
    ];
    let planner = Planner::new(RANGES.to_vec());
    for mut metas in cases {
        metas[1]
            .compaction
            .extra
            .insert("failed".into(), json!(true));
        assert!(planner.plan(&metas, &BTreeSet::new()).is_empty());
    }
}

/// A case name, the blocks, the blocks marked no-compact, and the expected plan.
type MarkedCase = (&'static str, Vec<BlockMeta>, Vec<u64>, Vec<u64>);

/// `TestTSDBBasedPlanner_PlanWithNoCompactMarks`.
#[test]
fn plan_with_no_compact_marks() {
    let fill = || vec![b(1, 0, 20), b(2, 20, 40), b(3, 40, 60), b(4, 60, 80)];
    let mixed = || {
        vec![
            b(2, 20, 40),
            b(4, 60, 120),
            b(5, 960, 980),
            b(6, 120, 180),
            b(7, 720, 960),
        ]
    };
    let cases: Vec<MarkedCase> = vec![
        ("Outside range and excluded", vec![b(1, 0, 20)], vec![1], vec![]),
        ("Blocks to fill the entire parent, but with first one excluded.", fill(), vec![1], vec![2, 3]),
        ("Blocks to fill the entire parent, but with second one excluded.", fill(), vec![2], vec![]),
        ("Blocks to fill the entire parent, but with last one excluded.", fill(), vec![4], vec![1, 2, 3]),
        ("Blocks to fill the entire parent, but with last one fist excluded.", fill(), vec![1, 4], vec![2, 3]),
        ("Blocks to fill the entire parent, but with all of them excluded.", fill(), vec![1, 2, 3, 4], vec![]),
        (
            "Block for the next parent range appeared, and we have a gap with size 20 between second and third block. Second block is excluded.",
            vec![b(1, 0, 20), b(2, 20, 40), b(4, 60, 80), b(5, 80, 100)],
            vec![2],
            vec![],
        ),
        (
            "We have 20, 60, 20, 60, 240 range blocks. We could compact 20 + 60 + 60, but sixth 6th is excluded",
            mixed(),
            vec![6],
            vec![2, 4],
        ),
        (
            "We have 20, 60, 20, 60, 240 range blocks. We could compact 20 + 60 + 60, but 4th is excluded",
            mixed(),
            vec![4],
            vec![],
        ),
        (
            "Do not select large blocks that have many tombstones when fresh appears but are excluded",
            vec![b_stats(1, 0, 540, 10, 3), b(2, 540, 560)],
            vec![1],
            vec![],
        ),
        (
            "Overlapping blocks 1, but one is excluded",
            vec![b(1, 0, 20), b(2, 19, 40), b(3, 40, 60)],
            vec![1],
            vec![],
        ),
    ];
    let planner = Planner::new(RANGES.to_vec());
    for (name, metas, excluded, expected) in cases {
        let metas = by_min_time(metas);
        assert_eq!(
            ids(&planner.plan(&metas, &marks(&excluded))),
            expected,
            "{name}"
        );
    }
}

/// Block `n` whose `thanos.files` records an index of `index_size` bytes.
fn b_index(n: u64, min: i64, max: i64, index_size: u64) -> BlockMeta {
    let mut m = b(n, min, max);
    m.thanos.as_mut().unwrap().files = vec![tsdb::meta::FileMeta {
        rel_path: "index".into(),
        size_bytes: Some(index_size),
    }];
    m
}

/// `TestLargeTotalIndexSizeFilter_Plan`, with sizes from meta.json ("from meta") and from the
/// bucket ("from bkt"), and the limit 100 (so 85 triggers a mark).
#[tokio::test]
async fn large_total_index_size_filter_cases() {
    let cases: Vec<(&str, Vec<BlockMeta>, Vec<u64>, usize)> = vec![
        ("Outside range and excluded", vec![b_index(1, 0, 20, 100)], vec![], 0),
        (
            "Blocks to fill the entire parent, but with first one too large.",
            vec![b_index(1, 0, 20, 41), b_index(2, 20, 40, 30), b_index(3, 40, 60, 30), b_index(4, 60, 80, 30)],
            vec![2, 3],
            1,
        ),
        (
            "Blocks to fill the entire parent, but with second one too large.",
            vec![b_index(1, 0, 20, 30), b_index(2, 20, 40, 41), b_index(3, 40, 60, 30), b_index(4, 60, 80, 20)],
            vec![],
            1,
        ),
        (
            "Blocks to fill the entire parent, but with last size exceeded (should not matter and not even marked).",
            vec![b_index(1, 0, 20, 10), b_index(2, 20, 40, 10), b_index(3, 40, 60, 10), b_index(4, 60, 80, 90)],
            vec![1, 2, 3],
            0,
        ),
        (
            "Blocks to fill the entire parent, but with pre-last one and first too large.",
            vec![
                b_index(1, 0, 20, 90),
                b_index(2, 20, 40, 30),
                b_index(3, 40, 50, 30),
                b_index(4, 50, 60, 90),
                b_index(5, 60, 80, 90),
            ],
            vec![2, 3],
            2,
        ),
        (
            "Block for the next parent range appeared, and we have a gap with size 20 between second and third block. Second block is excluded.",
            vec![b_index(1, 0, 20, 30), b_index(2, 20, 40, 90), b_index(4, 60, 80, 30), b_index(5, 80, 100, 30)],
            vec![],
            1,
        ),
        (
            "We have 20, 60, 20, 60, 240 range blocks. We could compact 20 + 60 + 60, but sixth 6th is excluded",
            vec![
                b_index(2, 20, 40, 30),
                b_index(4, 60, 120, 30),
                b_index(5, 960, 980, 30),
                b_index(6, 120, 180, 90),
                b_index(7, 720, 960, 30),
            ],
            vec![2, 4],
            1,
        ),
        (
            "Overlapping blocks 1, but total is too large",
            vec![b_index(1, 0, 20, 90), b_index(2, 19, 40, 30), b_index(3, 40, 60, 30)],
            vec![],
            1,
        ),
    ];
    for (name, metas, expected, expected_marks) in cases {
        for from_bucket in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let bucket = objstore::BucketConfig::filesystem(dir.path().join("bucket"))
                .build()
                .unwrap();
            let mut metas = by_min_time(metas.clone());
            if from_bucket {
                // Sizes only in the bucket: meta.json records none.
                for m in &mut metas {
                    let size = m.thanos.as_ref().unwrap().files[0].size_bytes.unwrap();
                    bucket
                        .put(
                            &ObjectPath::from(format!("{}/index", m.ulid)),
                            object_store::PutPayload::from(vec![0u8; size as usize]),
                        )
                        .await
                        .unwrap();
                    m.thanos.as_mut().unwrap().files.clear();
                }
            }
            let filter =
                LargeTotalIndexSizeFilter::new(Planner::new(RANGES.to_vec()), bucket.clone(), 100);
            let result = filter.plan(&metas, &BTreeSet::new()).await.unwrap();
            assert_eq!(
                ids(&result.plan),
                expected,
                "{name} (from bucket: {from_bucket})"
            );
            assert_eq!(
                result.marked.len(),
                expected_marks,
                "{name} (from bucket: {from_bucket})"
            );
            for ulid in &result.marked {
                let mark = markers::read_marker::<markers::NoCompactMark>(&bucket, *ulid)
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(mark.reason, "index-size-exceeding");
                assert!(mark.details.contains("could exceed: 100 with this block"));
            }
        }
    }
}

#[test]
fn thanos_ranges_plan_two_hour_blocks_into_eight_hours() {
    // Four 2h blocks of an 8h range plus a newer one: the four are compacted.
    let h = HOUR_MS;
    let metas: Vec<BlockMeta> = (0..5)
        .map(|i| b(i as u64 + 1, i * 2 * h, (i + 1) * 2 * h))
        .collect();
    let plan = Planner::thanos().plan(&metas, &BTreeSet::new());
    assert_eq!(ids(&plan), vec![1, 2, 3, 4]);
    assert!(Planner::thanos().plan(&[], &BTreeSet::new()).is_empty());
}
