//! Coalescing byte ranges into fewer GETs, as Thanos' `gapBasedPartitioner` does
//! (`pkg/store/bucket.go`).
//!
//! Ranges must come sorted by start. A part starts at the first range not yet covered and
//! grows while the next range starts at most `max_gap` bytes after the part's end; the part's
//! end is the largest end seen, so overlapping and nested ranges are fine. Fetching the gap
//! bytes is cheaper than another request to object storage.

use std::ops::Range;

/// Thanos' `PartitionerMaxGapSize`: ranges closer than 512 KiB share one GET.
pub const DEFAULT_MAX_GAP: u64 = 512 * 1024;

/// One GET covering the input ranges `elements` (indices into the sorted input).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub start: u64,
    pub end: u64,
    pub elements: Range<usize>,
}

/// Merges ranges separated by at most `max_gap` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GapPartitioner {
    pub max_gap: u64,
}

impl Default for GapPartitioner {
    fn default() -> Self {
        GapPartitioner {
            max_gap: DEFAULT_MAX_GAP,
        }
    }
}

impl GapPartitioner {
    pub fn new(max_gap: u64) -> Self {
        GapPartitioner { max_gap }
    }

    /// Parts covering `ranges`, which must be sorted by start; every input lies within the part
    /// that lists it.
    pub fn partition(&self, ranges: &[Range<u64>]) -> Vec<Part> {
        let mut parts = Vec::new();
        let mut k = 0;
        while k < ranges.len() {
            let first = k;
            let (start, mut end) = (ranges[k].start, ranges[k].end);
            k += 1;
            while k < ranges.len() && ranges[k].start <= end.saturating_add(self.max_gap) {
                end = end.max(ranges[k].end);
                k += 1;
            }
            parts.push(Part {
                start,
                end,
                elements: first..k,
            });
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(start: u64, end: u64, elements: Range<usize>) -> Part {
        Part {
            start,
            end,
            elements,
        }
    }

    // The cases of Thanos' TestGapBasedPartitioner_Partition (default gap), restated.
    #[test]
    // `&[1..10]` is meant: a list holding one range, not the numbers 1 to 9.
    #[allow(clippy::single_range_in_vec_init)]
    fn partition_matches_thanos_cases() {
        let p = GapPartitioner::default();
        let g = DEFAULT_MAX_GAP;
        assert_eq!(p.partition(&[]), vec![]);
        assert_eq!(p.partition(&[1..10]), vec![part(1, 10, 0..1)]);
        assert_eq!(p.partition(&[1..2, 3..5, 7..10]), vec![part(1, 10, 0..3)]);
        assert_eq!(
            p.partition(&[1..2, 3..5, 20..30, g + 31..g + 32]),
            vec![part(1, 30, 0..3), part(g + 31, g + 32, 3..4)]
        );
        // Overlapping ranges.
        assert_eq!(
            p.partition(&[1..30, 1..4, 3..28, g + 31..g + 32, g + 31..g + 40]),
            vec![part(1, 30, 0..3), part(g + 31, g + 40, 3..5)]
        );
        // Like the all-postings key, whose range spans the others.
        assert_eq!(
            p.partition(&[1..15, 1..g + 100, g + 31..g + 40]),
            vec![part(1, g + 100, 0..3)]
        );
    }

    #[test]
    fn partition_merges_within_the_gap_only() {
        let p = GapPartitioner::new(10);
        // Next start 2 <= 10 + 10: merged, end grows.
        assert_eq!(p.partition(&[1..2, 2..15]), vec![part(1, 15, 0..2)]);
        // Exactly at end + gap still merges; one byte further does not.
        assert_eq!(p.partition(&[1..2, 12..15]), vec![part(1, 15, 0..2)]);
        assert_eq!(
            p.partition(&[1..2, 13..15]),
            vec![part(1, 2, 0..1), part(13, 15, 1..2)]
        );
        // 16 <= 15 + 10 joins; 30 > 19 + 10 starts a new part; 60 > 35 + 10 another.
        assert_eq!(
            p.partition(&[1..2, 2..15, 16..19, 30..35, 60..70]),
            vec![part(1, 19, 0..3), part(30, 35, 3..4), part(60, 70, 4..5)]
        );
    }

    #[test]
    fn partition_handles_overlapping_and_nested_ranges() {
        let p = GapPartitioner::new(10);
        // A nested range does not shrink the part.
        assert_eq!(
            p.partition(&[0..100, 5..10, 50..60]),
            vec![part(0, 100, 0..3)]
        );
        // The gap is measured from the largest end so far.
        assert_eq!(
            p.partition(&[0..100, 5..10, 110..120, 131..140]),
            vec![part(0, 120, 0..3), part(131, 140, 3..4)]
        );
        // Duplicates (the same postings list asked twice).
        assert_eq!(p.partition(&[7..9, 7..9]), vec![part(7, 9, 0..2)]);
    }

    #[test]
    fn partition_default_gap_is_512_kib() {
        let p = GapPartitioner::default();
        assert_eq!(p.max_gap, 524_288);
        assert_eq!(p.partition(&[0..10, 524_298..524_300]).len(), 1);
        assert_eq!(p.partition(&[0..10, 524_299..524_300]).len(), 2);
        // No overflow near u64::MAX.
        assert_eq!(
            p.partition(&[u64::MAX - 1..u64::MAX, u64::MAX..u64::MAX])
                .len(),
            1
        );
    }

    #[test]
    fn partition_covers_every_input() {
        let p = GapPartitioner::new(3);
        let ranges: Vec<Range<u64>> = (0..200u64)
            .map(|i| {
                let s = i * i % 97 + i * 5;
                s..s + i % 7 + 1
            })
            .collect::<Vec<_>>();
        let mut sorted = ranges.clone();
        sorted.sort_by_key(|r| r.start);
        let parts = p.partition(&sorted);
        let mut next = 0;
        for (i, part) in parts.iter().enumerate() {
            assert_eq!(part.elements.start, next);
            next = part.elements.end;
            for r in &sorted[part.elements.clone()] {
                assert!(part.start <= r.start && r.end <= part.end);
            }
            if let Some(following) = parts.get(i + 1) {
                assert!(following.start > part.end + 3);
            }
        }
        assert_eq!(next, sorted.len());
    }
}
