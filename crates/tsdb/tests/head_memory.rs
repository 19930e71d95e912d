//! Measures the head's memory per series and per sample with a counting allocator, and prints
//! the figures. The bounds are generous ceilings that catch a regression (a copied label set
//! per series, a chunk that keeps its spare capacity), not a benchmark.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use tsdb::head::{Head, HeadOptions};
use tsdb::Labels;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds
// `GlobalAlloc`'s contract; the counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's guarantees for this call are the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's guarantees for this call are the system allocator's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: the caller's guarantees for this call are the system allocator's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A realistic node-exporter-like series: 8 labels, most values shared between series.
fn series_labels(i: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", format!("node_cpu_seconds_total_{}", i % 50)),
        ("cluster", format!("edge-{}", i % 10)),
        ("cpu", (i % 16).to_string()),
        (
            "instance",
            format!("10.1.{}.{}:9100", (i / 256) % 256, i % 256),
        ),
        ("job", "node".to_string()),
        (
            "mode",
            ["idle", "user", "system", "iowait"][i % 4].to_string(),
        ),
        ("namespace", "monitoring".to_string()),
        ("pod", format!("node-exporter-{}", i / 64)),
    ])
}

#[test]
fn head_memory_per_series_and_sample() {
    const SERIES: usize = 20_000;
    const SAMPLES: i64 = 240; // two full chunks per series: 1 hour at 15 s
    let head = Head::new(HeadOptions::default(), None);
    let labels: Vec<Labels> = (0..SERIES).map(series_labels).collect();
    let before = LIVE.load(Ordering::SeqCst);
    for step in 0..SAMPLES {
        let mut app = head.appender();
        for (i, l) in labels.iter().enumerate() {
            // Counter-like values: increments of a few units, the common case.
            app.append(
                l,
                1_700_000_000_000 + step * 15_000,
                (step * (i as i64 % 7 + 1)) as f64,
            )
            .unwrap();
        }
        app.commit().unwrap();
    }
    let used = (LIVE.load(Ordering::SeqCst) - before) as f64;
    let est = head.memory_estimate();
    let per_series_total = used / SERIES as f64;
    let chunk_per_sample = est.chunk_bytes as f64 / (SERIES as f64 * SAMPLES as f64);
    println!(
        "head memory: {SERIES} series x {SAMPLES} samples: {:.0} bytes/series in all, \
         {:.2} chunk bytes/sample, {:.0} bytes/series besides chunks",
        per_series_total,
        chunk_per_sample,
        (used - est.chunk_bytes as f64) / SERIES as f64,
    );
    // Index + labels + series struct (labels are interned, the caller's copies are separate).
    let besides_chunks = (used - est.chunk_bytes as f64) / SERIES as f64;
    assert!(
        besides_chunks < 900.0,
        "{besides_chunks} bytes/series besides chunks"
    );
    // XOR chunks of regular counters: Prometheus sees ~1.3 bytes/sample.
    assert!(chunk_per_sample < 2.5, "{chunk_per_sample} bytes/sample");
    // The same figure Prometheus users know (~1.3 bytes/sample for regular scrapes): data only.
    let data: usize = (1..=SERIES as u64)
        .filter_map(|r| head.series_by_ref(r))
        .flat_map(|s| s.chunks(i64::MIN, i64::MAX))
        .map(|c| c.data.len())
        .sum();
    let data_per_sample = data as f64 / (SERIES as f64 * SAMPLES as f64);
    println!("head memory: {data_per_sample:.2} XOR data bytes/sample");
    assert!(data_per_sample < 2.0, "{data_per_sample} data bytes/sample");
}
