//! Chunk segment files of a block: `chunks/000001`, `000002`, ... (Prometheus format).
//!
//! Contract: `ChunkWriter::create(dir)` writes segments into `dir` (the block's `chunks/`),
//! cutting a new segment before one would exceed 512 MiB; `write_chunk(encoding, data)` returns
//! the chunk ref ((segment index << 32) | offset of the length varint, segment index 0-based);
//! `finish()` fsyncs and closes. `ChunkReader::open(dir)` mmaps all segments, checks the header;
//! `chunk(ref)` returns `(encoding, data)` after verifying the CRC.
//!
//! ```text
//! segment file:
//! ┌──────────────────────────────┬─────────────────┬──────────────────┐
//! │ magic 0x85BD40DD (u32 BE)    │ version 1 (u8)  │ padding (3 × 0)  │
//! ├──────────────────────────────┴─────────────────┴──────────────────┤
//! │ chunk 1 │ chunk 2 │ ... │ chunk n                                 │
//! └───────────────────────────────────────────────────────────────────┘
//! chunk:
//! ┌───────────────────────┬───────────────┬──────────────┬─────────────────────────────────┐
//! │ len(data) (uvarint)   │ encoding (u8) │ data         │ CRC32C(encoding, data) (u32 BE) │
//! └───────────────────────┴───────────────┴──────────────┴─────────────────────────────────┘
//! ```
//!
//! Files are numbered from 1 (`000001`) while refs number segments from 0, so the chunk at byte
//! 8 of `000002` has ref `(1 << 32) | 8`. Like Prometheus, the writer creates no segment until
//! the first chunk, so a block without chunks has an empty `chunks/` directory.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{Mmap, UncheckedAdvice};

use crate::chunkenc::varint;
use crate::error::IoContext;
use crate::{Error, Result};

pub const SEGMENT_MAX_BYTES: u64 = 512 * 1024 * 1024;

/// Identifies a chunk segment file.
pub const SEGMENT_MAGIC: u32 = 0x85BD_40DD;
/// The only segment format version.
pub const SEGMENT_VERSION: u8 = 1;
/// Magic, version and three bytes of padding.
pub const SEGMENT_HEADER_BYTES: u64 = 8;

/// Prometheus sizes a chunk for the cut decision with the longest length field it writes
/// (`binary.MaxVarintLen32`), not the actual one; doing the same cuts at the same places.
const LENGTH_FIELD_MAX_BYTES: u64 = 5;
const ENCODING_BYTES: u64 = 1;
const CRC_BYTES: u64 = 4;

/// Prometheus' write buffer is 8 MiB; 1 MiB keeps the syscalls just as rare for our sizes.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

fn segment_file_name(sequence: u32) -> String {
    format!("{sequence:06}")
}

fn crc32c_of(encoding: u8, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&[encoding]), data)
}

/// Writes chunks into numbered segment files of one directory.
pub struct ChunkWriter {
    dir: PathBuf,
    segment_size: u64,
    /// The segment being written, if any chunk has been written yet.
    tail: Option<Tail>,
    /// Segments created so far; the tail is `segments - 1` (0-based).
    segments: u32,
}

struct Tail {
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes written to this segment, header included: the offset of the next chunk.
    len: u64,
}

impl ChunkWriter {
    /// Creates `dir` if needed and prepares to write segments of at most [`SEGMENT_MAX_BYTES`].
    pub fn create(dir: &Path) -> Result<Self> {
        Self::create_with_segment_size(dir, SEGMENT_MAX_BYTES)
    }

    /// Like [`ChunkWriter::create`] with another segment size cap (tests use small ones). A
    /// chunk larger than the cap still goes alone into a segment of its own, as in Prometheus.
    /// The cap must leave chunk offsets within the 32 bits of a ref.
    pub fn create_with_segment_size(dir: &Path, segment_size: u64) -> Result<Self> {
        if segment_size <= SEGMENT_HEADER_BYTES || segment_size > 1 << 32 {
            return Err(Error::Invalid(format!(
                "chunk segment size {segment_size} outside {}..=2^32 bytes",
                SEGMENT_HEADER_BYTES + 1
            )));
        }
        std::fs::create_dir_all(dir).ctx(|| format!("creating chunks directory {dir:?}"))?;
        Ok(ChunkWriter {
            dir: dir.to_path_buf(),
            segment_size,
            tail: None,
            segments: 0,
        })
    }

    /// Appends one chunk and returns its ref. Cuts a new segment first when this chunk would
    /// take the current one past the size cap (unless the segment holds no chunk yet).
    pub fn write_chunk(&mut self, encoding: u8, data: &[u8]) -> Result<u64> {
        if data.len() as u64 > u64::from(u32::MAX) {
            return Err(Error::Invalid(format!(
                "chunk of {} bytes does not fit a segment",
                data.len()
            )));
        }
        let reserved = LENGTH_FIELD_MAX_BYTES + ENCODING_BYTES + data.len() as u64 + CRC_BYTES;
        let must_cut = match &self.tail {
            None => true,
            Some(tail) => {
                tail.len > SEGMENT_HEADER_BYTES && tail.len + reserved > self.segment_size
            }
        };
        if must_cut {
            self.cut()?;
        }
        let segment_index = u64::from(self.segments - 1);
        let tail = self.tail.as_mut().expect("a segment was just cut");
        let offset = tail.len;
        if offset > u64::from(u32::MAX) {
            // Only reachable with a single oversized chunk followed by another; refuse rather
            // than hand out a ref that points elsewhere.
            return Err(Error::Invalid(format!(
                "chunk offset {offset} in {:?} does not fit a chunk ref",
                tail.path
            )));
        }

        let mut length_field = [0u8; varint::MAX_LEN_64];
        let length_bytes = varint::encode_uvarint(data.len() as u64, &mut length_field);
        let crc = crc32c_of(encoding, data);
        let path = &tail.path;
        let out = &mut tail.out;
        out.write_all(&length_field[..length_bytes])
            .and_then(|()| out.write_all(&[encoding]))
            .and_then(|()| out.write_all(data))
            .and_then(|()| out.write_all(&crc.to_be_bytes()))
            .ctx(|| format!("writing chunk at offset {offset} of {path:?}"))?;
        tail.len += length_bytes as u64 + ENCODING_BYTES + data.len() as u64 + CRC_BYTES;
        Ok((segment_index << 32) | offset)
    }

    /// Flushes and fsyncs the segments and the directory.
    pub fn finish(mut self) -> Result<()> {
        self.close_tail()?;
        let dir = &self.dir;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .ctx(|| format!("syncing chunks directory {dir:?}"))
    }

    /// Number of segment files created so far.
    pub fn num_segments(&self) -> u32 {
        self.segments
    }

    fn close_tail(&mut self) -> Result<()> {
        if let Some(tail) = self.tail.take() {
            let Tail { path, out, .. } = tail;
            let file = out
                .into_inner()
                .map_err(|e| Error::io(format!("flushing {path:?}"), e.into_error()))?;
            file.sync_all().ctx(|| format!("syncing {path:?}"))?;
        }
        Ok(())
    }

    fn cut(&mut self) -> Result<()> {
        self.close_tail()?;
        let sequence = self.segments + 1;
        let path = self.dir.join(segment_file_name(sequence));
        // `create_new`: a segment left over in the directory would make refs ambiguous.
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .ctx(|| format!("creating chunk segment {path:?}"))?;
        let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
        let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
        header[..4].copy_from_slice(&SEGMENT_MAGIC.to_be_bytes());
        header[4] = SEGMENT_VERSION;
        out.write_all(&header)
            .ctx(|| format!("writing header of {path:?}"))?;
        self.segments = sequence;
        self.tail = Some(Tail {
            path,
            out,
            len: SEGMENT_HEADER_BYTES,
        });
        Ok(())
    }
}

/// Reads chunks from the memory-mapped segment files of one directory.
pub struct ChunkReader {
    dir: PathBuf,
    segments: Vec<Segment>,
    size: u64,
}

struct Segment {
    path: PathBuf,
    map: Arc<Mmap>,
    /// The same mapping as shareable bytes: chunks handed out as [`Bytes`] slices keep it
    /// mapped, without copying.
    bytes: Bytes,
}

/// A shared mapping as the owner of [`Bytes`].
struct SharedMap(Arc<Mmap>);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl ChunkReader {
    /// Maps every segment file (names made only of digits) in name order and checks headers.
    pub fn open(dir: &Path) -> Result<Self> {
        let entries = std::fs::read_dir(dir).ctx(|| format!("listing chunks directory {dir:?}"))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.ctx(|| format!("listing chunks directory {dir:?}"))?;
            let name = entry.file_name();
            if let Some(name) = name.to_str() {
                if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
                    names.push(name.to_string());
                }
            }
        }
        names.sort();

        let mut segments = Vec::with_capacity(names.len());
        let mut size = 0;
        for name in names {
            let path = dir.join(name);
            let segment = Segment::open(path)?;
            size += segment.map.len() as u64;
            segments.push(segment);
        }
        Ok(ChunkReader {
            dir: dir.to_path_buf(),
            segments,
            size,
        })
    }

    /// The chunk at `chunk_ref`: its encoding byte and data, after checking bounds and CRC.
    pub fn chunk(&self, chunk_ref: u64) -> Result<(u8, &[u8])> {
        let segment_index = (chunk_ref >> 32) as usize;
        let offset = chunk_ref & 0xffff_ffff;
        let Some(segment) = self.segments.get(segment_index) else {
            return Err(Error::corruption(
                &self.dir,
                format!(
                    "chunk ref {chunk_ref:#x}: segment index {segment_index} out of range \
                     ({} segments)",
                    self.segments.len()
                ),
            ));
        };
        segment
            .chunk_at(offset)
            .map(|(encoding, data, _)| (encoding, data))
    }

    /// Like [`ChunkReader::chunk`], the data as a slice of the mapping that keeps it alive (no
    /// copy).
    pub fn chunk_bytes(&self, chunk_ref: u64) -> Result<(u8, Bytes)> {
        let (encoding, data) = self.chunk(chunk_ref)?;
        let segment = &self.segments[(chunk_ref >> 32) as usize];
        Ok((encoding, segment.bytes.slice_ref(data)))
    }

    /// Every chunk of every segment in file order, as `(ref, encoding, data)`; stops after the
    /// first error. For verification tools and tests: a block's index says which refs exist.
    pub fn iter(&self) -> impl Iterator<Item = Result<(u64, u8, &[u8])>> + '_ {
        self.segments
            .iter()
            .enumerate()
            .flat_map(|(index, segment)| {
                let mut offset = SEGMENT_HEADER_BYTES;
                let mut failed = false;
                std::iter::from_fn(move || {
                    if failed || offset >= segment.map.len() as u64 {
                        return None;
                    }
                    let chunk_ref = ((index as u64) << 32) | offset;
                    match segment.chunk_at(offset) {
                        Ok((encoding, data, end)) => {
                            offset = end;
                            Some(Ok((chunk_ref, encoding, data)))
                        }
                        Err(e) => {
                            failed = true;
                            Some(Err(e))
                        }
                    }
                })
            })
            .scan(false, |failed, item| {
                if *failed {
                    return None;
                }
                *failed = item.is_err();
                Some(item)
            })
    }

    /// Total bytes of all segment files.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Drops the segments' pages from this process' resident set (they stay in the page cache
    /// and are faulted back on the next read). A reader that goes through a whole block once
    /// (compaction, verification) calls it now and then so that its RSS does not grow with the
    /// block's size.
    pub fn release_pages(&self) {
        for segment in &self.segments {
            // SAFETY: the map is a read-only shared mapping of a block file, which is never
            // modified (blocks are immutable), so pages dropped here fault back with the very
            // same bytes: slices borrowed from the map keep their contents.
            let _ = unsafe { segment.map.unchecked_advise(UncheckedAdvice::DontNeed) };
        }
    }

    pub fn num_segments(&self) -> usize {
        self.segments.len()
    }
}

impl Segment {
    fn open(path: PathBuf) -> Result<Self> {
        let file = File::open(&path).ctx(|| format!("opening chunk segment {path:?}"))?;
        let len = file
            .metadata()
            .ctx(|| format!("reading metadata of {path:?}"))?
            .len();
        if len < SEGMENT_HEADER_BYTES {
            return Err(Error::corruption(
                &path,
                format!(
                    "segment of {len} bytes is shorter than its {SEGMENT_HEADER_BYTES}-byte header"
                ),
            ));
        }
        // SAFETY: block files are written once and never modified while a reader maps them
        // (blocks are immutable; deletion unlinks the file, which keeps the mapping valid).
        let map = unsafe { Mmap::map(&file) }.ctx(|| format!("mapping chunk segment {path:?}"))?;
        let magic = u32::from_be_bytes(map[..4].try_into().expect("4 bytes"));
        if magic != SEGMENT_MAGIC {
            return Err(Error::corruption(
                &path,
                format!("invalid magic number {magic:#010x}, want {SEGMENT_MAGIC:#010x}"),
            ));
        }
        if map[4] != SEGMENT_VERSION {
            return Err(Error::corruption(
                &path,
                format!("unsupported chunk segment format version {}", map[4]),
            ));
        }
        let map = Arc::new(map);
        let bytes = Bytes::from_owner(SharedMap(map.clone()));
        Ok(Segment { path, map, bytes })
    }

    /// The chunk whose length field starts at `offset`: encoding, data, and the offset just
    /// past its CRC.
    fn chunk_at(&self, offset: u64) -> Result<(u8, &[u8], u64)> {
        let bytes: &[u8] = &self.map;
        let corrupt = |detail: String| {
            Error::corruption(&self.path, format!("chunk at offset {offset}: {detail}"))
        };
        if offset < SEGMENT_HEADER_BYTES || offset >= bytes.len() as u64 {
            return Err(corrupt(format!(
                "offset outside the segment's chunks ({SEGMENT_HEADER_BYTES}..{})",
                bytes.len()
            )));
        }
        let start = offset as usize;
        let (data_len, length_bytes) = varint::decode_uvarint(&bytes[start..])
            .ok_or_else(|| corrupt("unreadable length field".to_string()))?;
        let encoding_at = start + length_bytes;
        let end = usize::try_from(data_len)
            .ok()
            .and_then(|n| encoding_at.checked_add(1 + 4)?.checked_add(n))
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| {
                corrupt(format!(
                    "length {data_len} runs past the end of the segment ({} bytes)",
                    bytes.len()
                ))
            })?;
        let encoding = bytes[encoding_at];
        let data = &bytes[encoding_at + 1..end - 4];
        let stored = u32::from_be_bytes(bytes[end - 4..end].try_into().expect("4 bytes"));
        let computed = crc32c_of(encoding, data);
        if stored != computed {
            return Err(corrupt(format!(
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            )));
        }
        Ok((encoding, data, end as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::{XorChunk, ENCODING_XOR};
    use proptest::prelude::*;

    fn write_all(dir: &Path, segment_size: u64, chunks: &[(u8, Vec<u8>)]) -> Vec<u64> {
        let mut w = ChunkWriter::create_with_segment_size(dir, segment_size).unwrap();
        let refs = chunks
            .iter()
            .map(|(enc, data)| w.write_chunk(*enc, data).unwrap())
            .collect();
        w.finish().unwrap();
        refs
    }

    #[test]
    fn known_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("chunks");
        let mut chunk = XorChunk::new();
        chunk.append(1000, 1.0);
        let refs = write_all(
            &dir,
            SEGMENT_MAX_BYTES,
            &[(ENCODING_XOR, chunk.bytes().to_vec())],
        );
        assert_eq!(refs, [8]);

        let file = std::fs::read(dir.join("000001")).unwrap();
        let data = chunk.bytes();
        let mut want = vec![0x85, 0xbd, 0x40, 0xdd, 1, 0, 0, 0, data.len() as u8, 1];
        want.extend_from_slice(data);
        let mut crc_input = vec![1u8];
        crc_input.extend_from_slice(data);
        want.extend_from_slice(&crc32c::crc32c(&crc_input).to_be_bytes());
        assert_eq!(file, want);

        let reader = ChunkReader::open(&dir).unwrap();
        assert_eq!(reader.size(), want.len() as u64);
        assert_eq!(reader.chunk(8).unwrap(), (ENCODING_XOR, data));
    }

    #[test]
    fn released_pages_read_back_the_same_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("chunks");
        // Chunks over several pages and two segments.
        let chunks: Vec<(u8, Vec<u8>)> = (0..64u32)
            .map(|i| (ENCODING_XOR, vec![(i % 251) as u8; 3000 + i as usize]))
            .collect();
        let refs = write_all(&dir, 128 << 10, &chunks);
        let reader = ChunkReader::open(&dir).unwrap();
        assert!(reader.num_segments() > 1);
        let read = |r: &ChunkReader| -> Vec<Vec<u8>> {
            refs.iter()
                .map(|&c| r.chunk(c).unwrap().1.to_vec())
                .collect()
        };
        let before = read(&reader);
        reader.release_pages();
        assert_eq!(read(&reader), before);
        assert_eq!(
            before,
            chunks.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn crc32c_is_castagnoli() {
        // The standard CRC-32C check value.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn no_chunks_no_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("chunks");
        write_all(&dir, SEGMENT_MAX_BYTES, &[]);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let reader = ChunkReader::open(&dir).unwrap();
        assert_eq!((reader.size(), reader.num_segments()), (0, 0));
        assert!(matches!(reader.chunk(8), Err(Error::Corruption { .. })));
    }

    #[test]
    fn cuts_before_exceeding_and_keeps_oversized_chunks_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("chunks");
        // Each 10-byte chunk reserves 5 + 1 + 10 + 4 = 20 bytes for the cut decision and takes
        // 1 + 1 + 10 + 4 = 16.
        let chunks: Vec<(u8, Vec<u8>)> = vec![
            (1, vec![1; 10]),
            (1, vec![2; 10]),
            (1, vec![3; 10]), // 8 + 16 + 16 + 20 = 60 > 50: new segment
            (1, vec![4; 100]),
            (1, vec![5; 10]),
        ];
        let refs = write_all(&dir, 50, &chunks);
        assert_eq!(
            refs,
            [8, 24, (1 << 32) | 8, (2 << 32) | 8, (3 << 32) | 8],
            "an oversized chunk takes a segment of its own"
        );
        let names: Vec<String> = {
            let mut v: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names, ["000001", "000002", "000003", "000004"]);
        let reader = ChunkReader::open(&dir).unwrap();
        for (r, (enc, data)) in refs.iter().zip(&chunks) {
            assert_eq!(reader.chunk(*r).unwrap(), (*enc, data.as_slice()));
        }
    }

    #[test]
    fn bad_refs_are_corruption_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("chunks");
        let refs = write_all(&dir, SEGMENT_MAX_BYTES, &[(1, vec![9; 20])]);
        let reader = ChunkReader::open(&dir).unwrap();
        for bad in [0, 7, 9, 8 + 26, 1 << 32, u64::MAX] {
            let err = reader.chunk(bad).unwrap_err();
            assert!(matches!(err, Error::Corruption { .. }), "{bad:#x}: {err}");
        }
        assert!(reader.chunk(refs[0]).is_ok());
    }

    #[test]
    fn crc_mismatch_names_file_and_offset() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("chunks");
        let refs = write_all(
            &dir,
            SEGMENT_MAX_BYTES,
            &[(1, vec![1; 20]), (1, vec![2; 20])],
        );
        let path = dir.join("000001");
        let mut bytes = std::fs::read(&path).unwrap();
        let second = refs[1] as usize;
        bytes[second + 2 + 5] ^= 0x10; // a data byte of the second chunk
        std::fs::write(&path, &bytes).unwrap();

        let reader = ChunkReader::open(&dir).unwrap();
        assert!(reader.chunk(refs[0]).is_ok());
        match reader.chunk(refs[1]).unwrap_err() {
            Error::Corruption { path: p, detail } => {
                assert_eq!(p, path);
                assert!(detail.contains(&format!("offset {second}")), "{detail}");
                assert!(detail.contains("checksum"), "{detail}");
            }
            other => panic!("unexpected error {other}"),
        }
        let items: Vec<_> = reader.iter().collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok() && items[1].is_err());
    }

    #[test]
    fn bad_headers_are_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write_all(dir, SEGMENT_MAX_BYTES, &[(1, vec![1; 3])]);
        let path = dir.join("000001");
        let good = std::fs::read(&path).unwrap();

        for (what, bytes) in [
            (
                "magic",
                [&[0x85, 0xbd, 0x40, 0xde][..], &good[4..]].concat(),
            ),
            ("version", [&good[..4], &[2][..], &good[5..]].concat()),
            ("short", good[..7].to_vec()),
        ] {
            std::fs::write(&path, &bytes).unwrap();
            let err = ChunkReader::open(dir).err().expect(what);
            assert!(matches!(err, Error::Corruption { .. }), "{what}: {err}");
        }
    }

    #[test]
    fn reader_ignores_non_segment_files_and_writer_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write_all(dir, SEGMENT_MAX_BYTES, &[(1, vec![1; 3])]);
        std::fs::write(dir.join("000002.tmp"), b"junk").unwrap();
        std::fs::write(dir.join("notes"), b"junk").unwrap();
        let reader = ChunkReader::open(dir).unwrap();
        assert_eq!(reader.num_segments(), 1);

        let mut w = ChunkWriter::create(dir).unwrap();
        assert!(w.write_chunk(1, &[1, 2, 3]).is_err());
    }

    #[test]
    fn rejects_unusable_segment_sizes() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(ChunkWriter::create_with_segment_size(tmp.path(), 8).is_err());
        assert!(ChunkWriter::create_with_segment_size(tmp.path(), (1 << 32) + 1).is_err());
    }

    /// Oracle check against Prometheus itself: `promtool tsdb create-blocks-from openmetrics`
    /// (Debian package `prometheus`, 2.42) writes blocks from generated samples; every chunk in
    /// them must pass our CRC checks, decode to exactly the samples written, and re-encode to
    /// the very same bytes. Fails when promtool is missing (the test command installs it).
    #[test]
    fn prometheus_blocks_read_back_and_reencode_identically() {
        use crate::chunkenc::XorIterator;
        use std::process::Command;

        assert!(
            Command::new("promtool").arg("--version").output().is_ok(),
            "promtool not found: install the Debian package `prometheus` (scripts/test-all does)"
        );
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("input.om");
        let out = tmp.path().join("blocks");

        // Deterministic pseudo-random numbers (SplitMix64), so failures reproduce.
        let mut state = 0x5eed_u64;
        let mut next = move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        // Go's math.NaN(), which is what Prometheus' parser produces for "NaN".
        const GO_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;
        let mut text = String::from("# TYPE m gauge\n");
        let mut written: Vec<(i64, u64)> = Vec::new();
        for series in 0..6 {
            let mut t: i64 = 1_700_000_000_000;
            let mut v = 0.0f64;
            for _ in 0..400 {
                let r = next();
                t += match (series, r % 16) {
                    (0, _) => 15_000,
                    (1, 0..=11) => 15_000,
                    (1, _) => 15_000 + (r >> 8) as i64 % 2_000 - 1_000,
                    (2, _) => 1 + (r >> 8) as i64 % 600_000,
                    (3, 0) => 3_000_000 + (r >> 8) as i64 % 1_000_000, // 64-bit dod
                    (_, _) => 1 + (r >> 8) as i64 % 60_000,
                };
                let r = next();
                v = match (series, r % 10) {
                    (0, _) => 42.0,
                    (1, _) | (2, 0..=6) => v + ((r >> 16) % 100) as f64,
                    (_, 0) => f64::NAN,
                    (_, 1) => f64::INFINITY,
                    (_, 2) => -0.0,
                    (_, 3) => v,
                    _ => {
                        let bits = next();
                        let x = f64::from_bits(bits);
                        if x.is_finite() {
                            x
                        } else {
                            1.5
                        }
                    }
                };
                let value = if v.is_nan() {
                    "NaN".to_string()
                } else if v.is_infinite() {
                    if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
                } else {
                    format!("{v:?}")
                };
                text.push_str(&format!(
                    "m{{s=\"{series}\"}} {value} {}.{:03}\n",
                    t / 1000,
                    t % 1000
                ));
                let bits = if v.is_nan() { GO_NAN_BITS } else { v.to_bits() };
                written.push((t, bits));
            }
        }
        text.push_str("# EOF\n");
        std::fs::write(&input, text).unwrap();
        let status = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&out)
            .output()
            .unwrap();
        assert!(status.status.success(), "promtool failed: {status:?}");

        let mut decoded: Vec<(i64, u64)> = Vec::new();
        let mut chunks = 0;
        for block in std::fs::read_dir(&out).unwrap() {
            let block = block.unwrap().path();
            let reader = ChunkReader::open(&block.join("chunks")).unwrap();
            for item in reader.iter() {
                let (chunk_ref, encoding, data) = item.unwrap();
                assert_eq!(reader.chunk(chunk_ref).unwrap(), (encoding, data));
                assert_eq!(encoding, ENCODING_XOR);
                let mut it = XorIterator::new(data);
                let samples: Vec<(i64, f64)> = it.by_ref().collect();
                assert_eq!(it.err(), None);
                let mut reencoded = XorChunk::new();
                for &(t, v) in &samples {
                    reencoded.append(t, v);
                    decoded.push((t, v.to_bits()));
                }
                assert_eq!(reencoded.bytes(), data, "chunk {chunk_ref:#x} of {block:?}");
                chunks += 1;
            }
            let tombstones = std::fs::read(block.join("tombstones")).unwrap();
            assert_eq!(tombstones, crate::tombstones::encode_tombstones(&[]));
        }
        assert!(chunks >= 6, "only {chunks} chunks");
        written.sort_unstable();
        decoded.sort_unstable();
        assert_eq!(decoded, written);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn write_read_round_trip(
            chunks in prop::collection::vec((1u8..=3, prop::collection::vec(any::<u8>(), 0..300)), 0..60),
            segment_size in 9u64..2000,
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("chunks");
            let refs = write_all(&dir, segment_size, &chunks);
            let reader = ChunkReader::open(&dir).unwrap();

            for (r, (enc, data)) in refs.iter().zip(&chunks) {
                prop_assert_eq!(reader.chunk(*r).unwrap(), (*enc, data.as_slice()));
            }
            // Refs increase, and segments stay under the cap unless one chunk alone exceeds it.
            prop_assert!(refs.windows(2).all(|w| w[0] < w[1]));
            let mut total = 0;
            for index in 0..reader.num_segments() {
                let path = dir.join(segment_file_name(index as u32 + 1));
                let len = std::fs::metadata(&path).unwrap().len();
                total += len;
                let in_segment = refs.iter().filter(|r| (**r >> 32) as usize == index).count();
                prop_assert!(in_segment >= 1);
                prop_assert!(len <= segment_size || in_segment == 1, "segment {} of {} bytes", index, len);
            }
            prop_assert_eq!(reader.size(), total);
            let walked: Vec<(u64, u8, Vec<u8>)> = reader
                .iter()
                .map(|item| item.map(|(r, e, d)| (r, e, d.to_vec())).unwrap())
                .collect();
            let want: Vec<(u64, u8, Vec<u8>)> = refs
                .iter()
                .zip(&chunks)
                .map(|(r, (e, d))| (*r, *e, d.clone()))
                .collect();
            prop_assert_eq!(walked, want);
        }

        /// Independent oracle: rusty-chunkenc parses our segment files (checking CRCs) and
        /// finds the same chunks at the same refs.
        #[test]
        fn rusty_chunkenc_reads_our_segments(
            series in prop::collection::vec(
                (0i64..1_000_000, prop::collection::vec((1i64..100_000, any::<u64>()), 1..150)),
                1..40,
            ),
            segment_size in 64u64..4000,
        ) {
            let chunks: Vec<(u8, Vec<u8>)> = series
                .iter()
                .map(|(start, steps)| {
                    let mut chunk = XorChunk::new();
                    let mut t = *start;
                    for &(step, bits) in steps {
                        t += step;
                        chunk.append(t, f64::from_bits(bits));
                    }
                    (ENCODING_XOR, chunk.into_bytes())
                })
                .collect();
            let tmp = tempfile::tempdir().unwrap();
            let refs = write_all(tmp.path(), segment_size, &chunks);

            let mut theirs: Vec<(u64, Vec<(i64, u64)>)> = Vec::new();
            let reader = ChunkReader::open(tmp.path()).unwrap();
            for index in 0..reader.num_segments() {
                let bytes = std::fs::read(tmp.path().join(segment_file_name(index as u32 + 1))).unwrap();
                let (rest, parsed) = rusty_chunkenc::read_chunks(&bytes, Some(index as u64))
                    .map_err(|e| TestCaseError::fail(format!("rusty-chunkenc: {e}")))?;
                prop_assert!(rest.is_empty());
                for chunk in parsed.chunks() {
                    let chunk_ref = chunk.block_chunk_ref().unwrap();
                    let rusty_chunkenc::Chunk::XOR(xor) = chunk else {
                        return Err(TestCaseError::fail("not an XOR chunk"));
                    };
                    let samples = xor.samples().iter().map(|s| (s.timestamp, s.value.to_bits())).collect();
                    theirs.push((chunk_ref, samples));
                }
            }
            let ours: Vec<(u64, Vec<(i64, u64)>)> = refs
                .iter()
                .zip(&chunks)
                .map(|(r, (_, data))| {
                    let samples = crate::chunkenc::XorIterator::new(data).map(|(t, v)| (t, v.to_bits())).collect();
                    (*r, samples)
                })
                .collect();
            prop_assert_eq!(theirs, ours);
        }

        #[test]
        fn any_flipped_bit_is_detected(
            data in prop::collection::vec(any::<u8>(), 1..200),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path();
            let refs = write_all(dir, SEGMENT_MAX_BYTES, &[(1, data.clone())]);
            let path = dir.join("000001");
            let mut bytes = std::fs::read(&path).unwrap();
            // Flip a bit in the encoding byte, the data or the CRC (not the length field,
            // whose corruption is reported as a bounds error or a CRC error elsewhere).
            let length_bytes = if data.len() < 128 { 1 } else { 2 };
            let first = refs[0] as usize + length_bytes;
            let at = first + flip.index(bytes.len() - first);
            bytes[at] ^= 1 << bit;
            std::fs::write(&path, &bytes).unwrap();
            let reader = ChunkReader::open(dir).unwrap();
            let is_corruption = matches!(reader.chunk(refs[0]), Err(Error::Corruption { .. }));
            prop_assert!(is_corruption);
        }
    }
}
