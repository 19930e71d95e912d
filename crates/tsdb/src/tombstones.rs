//! The `tombstones` file of a block (Prometheus format): deleted time ranges per series.
//!
//! Contract: `write_tombstones(path, &[])` writes the 9-byte empty file Prometheus writes;
//! `read_tombstones(path)` returns `(series ref, mint, maxt)` entries.
//!
//! ```text
//! ┌────────────────────────────┬────────────────┬─────────────────────────────┬──────────────────────┐
//! │ magic 0x0130BA30 (u32 BE)  │ version 1 (u8) │ entries                     │ CRC32C(entries) (BE) │
//! └────────────────────────────┴────────────────┴─────────────────────────────┴──────────────────────┘
//! entry: series ref (uvarint) │ mint (varint) │ maxt (varint)
//! ```
//!
//! The checksum covers the entries only, not the magic or the version byte (Prometheus keeps it
//! that way for compatibility). A series with several deleted ranges has one entry per range.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::chunkenc::varint;
use crate::error::IoContext;
use crate::{Error, Result};

/// Identifies a tombstones file.
pub const TOMBSTONES_MAGIC: u32 = 0x0130_BA30;
/// The only tombstones format version.
pub const TOMBSTONES_VERSION: u8 = 1;
/// Name of the file inside a block directory.
pub const TOMBSTONES_FILENAME: &str = "tombstones";

/// Magic (4) + version (1).
const HEADER_BYTES: usize = 5;
const CRC_BYTES: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tombstone {
    pub series_ref: u64,
    pub min_time: i64,
    pub max_time: i64,
}

/// Encodes the whole file.
pub fn encode_tombstones(stones: &[Tombstone]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER_BYTES + stones.len() * 12 + CRC_BYTES);
    buf.extend_from_slice(&TOMBSTONES_MAGIC.to_be_bytes());
    buf.push(TOMBSTONES_VERSION);
    for stone in stones {
        varint::put_uvarint(&mut buf, stone.series_ref);
        varint::put_varint(&mut buf, stone.min_time);
        varint::put_varint(&mut buf, stone.max_time);
    }
    let crc = crc32c::crc32c(&buf[HEADER_BYTES..]);
    buf.extend_from_slice(&crc.to_be_bytes());
    buf
}

/// Decodes a whole file; `path` only names it in errors.
pub fn decode_tombstones(path: &Path, bytes: &[u8]) -> Result<Vec<Tombstone>> {
    let corrupt = |detail: String| Error::corruption(path, detail);
    if bytes.len() < HEADER_BYTES + CRC_BYTES {
        return Err(corrupt(format!(
            "tombstones file of {} bytes is shorter than the {} bytes of an empty one",
            bytes.len(),
            HEADER_BYTES + CRC_BYTES
        )));
    }
    let magic = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"));
    if magic != TOMBSTONES_MAGIC {
        return Err(corrupt(format!(
            "invalid magic number {magic:#010x}, want {TOMBSTONES_MAGIC:#010x}"
        )));
    }
    if bytes[4] != TOMBSTONES_VERSION {
        return Err(corrupt(format!(
            "unsupported tombstones format version {}",
            bytes[4]
        )));
    }
    let (entries, crc) = bytes[HEADER_BYTES..].split_at(bytes.len() - HEADER_BYTES - CRC_BYTES);
    let stored = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(entries);
    if stored != computed {
        return Err(corrupt(format!(
            "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        )));
    }

    let mut stones = Vec::new();
    let mut rest = entries;
    while !rest.is_empty() {
        let offset = HEADER_BYTES + entries.len() - rest.len();
        let truncated = || corrupt(format!("unreadable tombstone entry at offset {offset}"));
        let (series_ref, n) = varint::decode_uvarint(rest).ok_or_else(truncated)?;
        rest = &rest[n..];
        let (min_time, n) = varint::decode_varint(rest).ok_or_else(truncated)?;
        rest = &rest[n..];
        let (max_time, n) = varint::decode_varint(rest).ok_or_else(truncated)?;
        rest = &rest[n..];
        stones.push(Tombstone {
            series_ref,
            min_time,
            max_time,
        });
    }
    Ok(stones)
}

/// Writes the file crash-safely: into `<path>.tmp`, fsynced, renamed over `path`, and the
/// directory fsynced so the rename itself is durable.
pub fn write_tombstones(path: &Path, stones: &[Tombstone]) -> Result<()> {
    let bytes = encode_tombstones(stones);
    let tmp = {
        let mut name = path.as_os_str().to_owned();
        name.push(".tmp");
        PathBuf::from(name)
    };
    let result = (|| {
        let mut file = File::create(&tmp).ctx(|| format!("creating {tmp:?}"))?;
        file.write_all(&bytes).ctx(|| format!("writing {tmp:?}"))?;
        file.sync_all().ctx(|| format!("syncing {tmp:?}"))?;
        drop(file);
        std::fs::rename(&tmp, path).ctx(|| format!("renaming {tmp:?} to {path:?}"))
    })();
    if result.is_err() {
        // Best effort: the error being returned matters more than a leftover temp file.
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("syncing directory {dir:?}"))
}

/// Reads and validates the file. A missing file reads as no tombstones, as in Prometheus
/// (blocks from some writers carry none).
pub fn read_tombstones(path: &Path) -> Result<Vec<Tombstone>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {path:?}"), e)),
    };
    decode_tombstones(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_file_is_nine_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(TOMBSTONES_FILENAME);
        write_tombstones(&path, &[]).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            [0x01, 0x30, 0xba, 0x30, 0x01, 0, 0, 0, 0]
        );
        assert_eq!(read_tombstones(&path).unwrap(), []);
        assert!(!tmp.path().join("tombstones.tmp").exists());
    }

    #[test]
    fn known_entry_bytes() {
        let stones = [Tombstone {
            series_ref: 300,
            min_time: -1,
            max_time: 64,
        }];
        let bytes = encode_tombstones(&stones);
        let entries = [0xac, 0x02, 0x01, 0x80, 0x01];
        assert_eq!(bytes[5..10], entries);
        assert_eq!(bytes[10..], crc32c::crc32c(&entries).to_be_bytes());
        assert_eq!(decode_tombstones(Path::new("t"), &bytes).unwrap(), stones);
    }

    #[test]
    fn missing_file_reads_as_empty() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(read_tombstones(&tmp.path().join("nope")).unwrap(), []);
    }

    #[test]
    fn rejects_bad_magic_version_crc_and_length() {
        let good = encode_tombstones(&[Tombstone {
            series_ref: 1,
            min_time: 2,
            max_time: 3,
        }]);
        let mut bad_magic = good.clone();
        bad_magic[0] ^= 1;
        let mut bad_version = good.clone();
        bad_version[4] = 2;
        let mut bad_crc = good.clone();
        *bad_crc.last_mut().unwrap() ^= 1;
        let mut bad_entry = good.clone();
        bad_entry[6] ^= 1;
        // A checksummed but truncated entry.
        let mut truncated = good[..HEADER_BYTES].to_vec();
        truncated.push(0x80);
        truncated.extend_from_slice(&crc32c::crc32c(&[0x80]).to_be_bytes());
        for (what, bytes) in [
            ("magic", bad_magic),
            ("version", bad_version),
            ("crc", bad_crc),
            ("entry", bad_entry),
            ("short", good[..8].to_vec()),
            ("truncated", truncated),
        ] {
            let err = decode_tombstones(Path::new("t"), &bytes).expect_err(what);
            assert!(matches!(err, Error::Corruption { .. }), "{what}: {err}");
        }
    }

    proptest! {
        #[test]
        fn round_trip(raw in prop::collection::vec((any::<u64>(), any::<i64>(), any::<i64>()), 0..50)) {
            let stones: Vec<Tombstone> = raw
                .into_iter()
                .map(|(series_ref, min_time, max_time)| Tombstone { series_ref, min_time, max_time })
                .collect();
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join(TOMBSTONES_FILENAME);
            write_tombstones(&path, &stones).unwrap();
            prop_assert_eq!(read_tombstones(&path).unwrap(), stones.clone());
            // Rewriting replaces the file.
            write_tombstones(&path, &stones[..stones.len() / 2]).unwrap();
            prop_assert_eq!(read_tombstones(&path).unwrap(), stones[..stones.len() / 2].to_vec());
        }
    }
}
