//! The framing shared by Cairn's append-only logs: the TSDB's WAL and the receivers' hint
//! queues both store records as
//!
//! ```text
//! ┌──────────────┬────────────────────┬───────────────────┐
//! │ len (u32 BE) │ CRC32C (u32 BE)    │ payload (len B)   │
//! └──────────────┴────────────────────┴───────────────────┘
//! ```
//!
//! in numbered segment files. A reader stops at the first record that is cut short or whose
//! checksum does not match: that is where a crash tore the log, and everything before it is
//! intact. What the payload holds is the log's own business.

use std::io;
use std::path::Path;

/// Bytes before each payload: its length and its CRC32C (Castagnoli, as Prometheus' WAL).
pub const HEADER: usize = 8;

/// Appends one framed record to `out`.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Where reading a buffer of records stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadEnd {
    /// Offset just past the last record read.
    pub offset: usize,
    /// True when reading stopped at a torn or corrupt record (not at the end of the data or
    /// because the callback asked to stop).
    pub damaged: bool,
}

/// Calls `f(payload, end)` for each intact record in `data`, where `end` is the offset just past
/// it; `f` returns false to stop early (the record it was given then counts as not read).
pub fn read(data: &[u8], mut f: impl FnMut(&[u8], usize) -> bool) -> ReadEnd {
    let mut at = 0;
    while at < data.len() {
        let torn = ReadEnd {
            offset: at,
            damaged: true,
        };
        if data.len() - at < HEADER {
            return torn;
        }
        let len = u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(data[at + 4..at + 8].try_into().expect("4 bytes"));
        let start = at + HEADER;
        let Some(end) = start.checked_add(len).filter(|&e| e <= data.len()) else {
            return torn;
        };
        let payload = &data[start..end];
        if crc32c::crc32c(payload) != crc {
            return torn;
        }
        if !f(payload, end) {
            return ReadEnd {
                offset: at,
                damaged: false,
            };
        }
        at = end;
    }
    ReadEnd {
        offset: at,
        damaged: false,
    }
}

/// The numbers of the segment files in `dir` named `<digits><suffix>` with at least `digits`
/// digits (the WAL's `00000012`, a hint queue's `00000012.seg`), ascending. Other files are
/// ignored.
pub fn list_segments(dir: &Path, digits: usize, suffix: &str) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(number) = name.to_str().and_then(|n| n.strip_suffix(suffix)) else {
            continue;
        };
        if number.len() >= digits && number.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = number.parse() {
                out.push(n);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn framed(payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            frame(p, &mut out);
        }
        out
    }

    fn read_all(data: &[u8]) -> (Vec<Vec<u8>>, ReadEnd) {
        let mut got = Vec::new();
        let end = read(data, |p, _| {
            got.push(p.to_vec());
            true
        });
        (got, end)
    }

    proptest! {
        #[test]
        fn frames_read_back(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let data = framed(&payloads);
            let (got, end) = read_all(&data);
            prop_assert_eq!(got, payloads);
            prop_assert_eq!(end, ReadEnd { offset: data.len(), damaged: false });
        }

        /// Cutting the log anywhere keeps exactly the records wholly before the cut.
        #[test]
        fn a_torn_tail_keeps_the_records_before_it(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..16),
            cut in any::<prop::sample::Index>(),
        ) {
            let data = framed(&payloads);
            let cut = cut.index(data.len());
            let (got, end) = read_all(&data[..cut]);
            let mut boundary = 0;
            let mut whole = 0;
            for p in &payloads {
                if boundary + HEADER + p.len() > cut { break; }
                boundary += HEADER + p.len();
                whole += 1;
            }
            prop_assert_eq!(&got[..], &payloads[..whole]);
            prop_assert_eq!(end, ReadEnd { offset: boundary, damaged: boundary < cut });
        }
    }

    #[test]
    fn a_flipped_bit_stops_reading_at_that_record() {
        let data = framed(&[b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
        let mut bad = data.clone();
        bad[HEADER + 3 + HEADER] ^= 1; // first payload byte of "two"
        let (got, end) = read_all(&bad);
        assert_eq!(got, [b"one".to_vec()]);
        assert_eq!(
            end,
            ReadEnd {
                offset: HEADER + 3,
                damaged: true
            }
        );
    }

    #[test]
    fn the_callback_can_stop_early() {
        let data = framed(&[b"a".to_vec(), b"b".to_vec()]);
        let end = read(&data, |p, _| p == b"a");
        assert_eq!(
            end,
            ReadEnd {
                offset: HEADER + 1,
                damaged: false
            }
        );
    }

    #[test]
    fn segments_are_listed_by_number() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "00000002",
            "00000010",
            "00000001.seg",
            "checkpoint.00000001",
            "0000003",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        assert_eq!(list_segments(dir.path(), 8, "").unwrap(), [2, 10]);
        assert_eq!(list_segments(dir.path(), 8, ".seg").unwrap(), [1]);
    }
}
