//! Snapshots: the materialised state of one table at one seq, in zstd-compressed blocks of
//! sorted records, with the table's secondary indexes beside the rows and, for each key the
//! table ever had, where its events are in the table's log.

use std::collections::HashMap;
use std::io::Read;
use std::ops::{Bound, Range};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use memmap2::Mmap;

use crate::error::{Error, IoContext, Result};
use crate::format::{
    columns_len, history_record, history_record_frames, put_bytes, put_columns, put_history_record,
    put_varint, skip_history_frames, varint_len, DecodeResult, Decoder, FramePositions,
    HistoryRecords, FORMAT_VERSION, MAX_BLOCK_RAW_LEN, MAX_RECORD_BLOCK_RAW_LEN, SECTION_HISTORY,
    SECTION_HISTORY_POSITIONS, SECTION_INDEX, SECTION_INDEX_KEYED, SECTION_ROWS,
    SNAPSHOT_END_MAGIC, SNAPSHOT_FOOTER_LEN, SNAPSHOT_HEADER_LEN, SNAPSHOT_MAGIC,
};
use crate::index::{entry_key, IndexKind};
use crate::log::map_file;
use crate::types::{ColumnId, Row, Seq, TableId};

/// Raw bytes gathered before a block is compressed.
const BLOCK_TARGET: usize = 64 << 10;
/// The same for the key history section, whose reads look up one key each: a smaller
/// block is decompressed and walked for it.
const HISTORY_BLOCK_TARGET: usize = 16 << 10;
/// zstd level: fast to write; snapshots are read far more than written, and decompression
/// speed barely depends on the level.
const ZSTD_LEVEL: i32 = 1;
/// Decompressed row blocks kept per open snapshot (64 KiB each).
const CACHED_BLOCKS: usize = 16;
/// Raw bytes of the decompressed row blocks kept per open snapshot, at most: far above
/// what 16 blocks of 64 KiB take, it keeps blocks of large records (up to 1 GiB) from
/// staying in memory; a block larger than this is not kept.
const CACHED_BYTES: usize = 16 << 20;

/// A block as a snapshot's directory gives it.
#[derive(Clone, Debug)]
struct BlockMeta {
    offset: u64,
    clen: u64,
    raw_len: u64,
    crc: u32,
    /// The kind of the block's section (`SECTION_*`): what its records are.
    kind: u8,
    /// Where the block's first key (row and history sections) or first value (index
    /// sections) lies in the file (inside the directory): a block of one large record has
    /// a large first key or value, which is not copied out of the mapping.
    first: Range<usize>,
}

/// A block as the writer wrote it, with its first key or value for the directory.
struct WrittenBlock {
    offset: u64,
    clen: u64,
    raw_len: u64,
    crc: u32,
    first: Vec<u8>,
}

type RowBlock = Arc<Vec<(Vec<u8>, Row)>>;

/// A decompressed row block kept for point lookups. The first lookup walks it (stopping at
/// the key); the next ones find where each record starts, once, and binary-search: random
/// lookups that miss the cache pay no more than before, lookups in key order (an UPDATE's
/// rows) stop walking the same block again and again.
struct IndexedBlock {
    raw: Vec<u8>,
    starts: std::sync::OnceLock<Vec<u32>>,
}

/// A snapshot's bytes: mapped from its file, or held in memory (the fuzzer).
enum Bytes {
    Map(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Map(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}
type IndexEntries = Arc<Vec<(Vec<u8>, Vec<u8>)>>;
/// The decoded `(index key, key)` entries of one index block.
pub(crate) type IndexBlock = Vec<(Vec<u8>, Vec<u8>)>;

/// Hits and misses of the decompressed-block cache of point lookups, shared by the
/// snapshots one store opens.
#[derive(Debug, Default)]
pub(crate) struct BlockCounters {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl BlockCounters {
    /// `(hits, misses)`.
    pub fn get(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

/// An open, verified snapshot file.
pub(crate) struct Snapshot {
    pub path: PathBuf,
    map: Bytes,
    pub seq: Seq,
    rows: Vec<BlockMeta>,
    /// Each index section: its column, its kind and its blocks.
    indexes: HashMap<ColumnId, (IndexKind, Vec<BlockMeta>)>,
    /// Where each key's events are in the log up to `seq` (`None`: a snapshot written
    /// before snapshots had this section).
    history: Option<Vec<BlockMeta>>,
    /// The key history section keeps the positions of keys' events in large frames
    /// (section kind 4; kind 3 has none).
    history_positions: bool,
    /// Recently decompressed row blocks, most recent first.
    cache: Mutex<Vec<(usize, Arc<IndexedBlock>)>>,
    /// Indexes this snapshot lacks (no section for the column, or one of another kind),
    /// rebuilt from its rows on first use.
    rebuilt: Mutex<HashMap<(ColumnId, IndexKind), IndexEntries>>,
    /// Where block cache hits and misses are counted, once a store set it.
    counters: OnceLock<Arc<BlockCounters>>,
    /// The number of rows, once counted.
    rows_counted: OnceLock<u64>,
    /// The largest key, once read.
    last_key: OnceLock<Option<Vec<u8>>>,
    /// The largest raw block this snapshot decompresses: [`MAX_RECORD_BLOCK_RAW_LEN`] for
    /// a file, [`IN_MEMORY_RAW_LEN`] for an image checked in memory (the fuzzer's).
    max_raw_len: u64,
}

/// The largest raw block [`check_snapshot_bytes`] decompresses. It serves the fuzzer,
/// which runs under a 128 MiB allocation limit: a few hundred bytes of zstd can stand for
/// hundreds of megabytes (a valid block of one large, repetitive record), and a block
/// decompressed by streaming may hold twice its length while its buffer grows. Blocks
/// larger than this are refused there, unread; the rule for them (one record) is fuzzed
/// through [`check_snapshot_block`].
const IN_MEMORY_RAW_LEN: u64 = 16 << 20;

/// Streams records into compressed blocks of one section.
///
/// A block is cut once its raw bytes reach `target`. A record that would take a block
/// beyond [`MAX_BLOCK_RAW_LEN`] gets a block of its own instead (up to
/// [`MAX_RECORD_BLOCK_RAW_LEN`]): the records before it are written as one block, then it.
struct BlockWriter<'a> {
    out: &'a mut Vec<u8>,
    hasher: &'a mut crc32fast::Hasher,
    pos: &'a mut u64,
    compressor: zstd::bulk::Compressor<'static>,
    raw: Vec<u8>,
    /// The first key or value of the block being gathered in `raw` (`None`: none yet).
    first: Option<Vec<u8>>,
    blocks: Vec<WrittenBlock>,
    path: &'a Path,
    /// Raw bytes gathered before a block is compressed.
    target: usize,
}

impl BlockWriter<'_> {
    /// A fresh buffer for the raw bytes of blocks of `target` bytes.
    fn raw_buffer(target: usize) -> Vec<u8> {
        Vec::with_capacity(target + 4096)
    }

    /// Adds one record of about `len` bytes (its length or a little more): `encode`
    /// appends its bytes to the raw ones and returns the record's first key or value (taken
    /// by value: kept when it starts a block, else dropped). Room for `len` bytes is made
    /// first, so that a large record is encoded into a buffer allocated once, not one
    /// doubled as it grows.
    fn record(&mut self, len: usize, encode: impl FnOnce(&mut Vec<u8>) -> Vec<u8>) -> Result<()> {
        let start = self.raw.len();
        self.raw.reserve(len);
        let first = encode(&mut self.raw);
        if self.raw.len() as u64 <= MAX_BLOCK_RAW_LEN {
            self.first.get_or_insert(first);
            if self.raw.len() >= self.target {
                self.flush()?;
            }
            return Ok(());
        }
        let len = self.raw.len() - start;
        if len as u64 > MAX_RECORD_BLOCK_RAW_LEN {
            let shown: String = first.iter().take(16).map(|b| format!("{b:02x}")).collect();
            return Err(Error::TooLarge(format!(
                "snapshot {}: a record of {len} bytes (first key or value {shown}...) exceeds \
                 the largest block of one record, {MAX_RECORD_BLOCK_RAW_LEN} bytes",
                self.path.display()
            )));
        }
        // The records gathered before it (fewer bytes than the target) make one block.
        if let Some(before) = self.first.take() {
            self.write_block(0..start, before)?;
        }
        self.write_block(start..self.raw.len(), first)?;
        // Not kept at the large record's size for the rest of the snapshot.
        self.raw = Self::raw_buffer(self.target);
        Ok(())
    }

    /// Writes the records gathered so far as a block.
    fn flush(&mut self) -> Result<()> {
        let Some(first) = self.first.take() else {
            return Ok(());
        };
        self.write_block(0..self.raw.len(), first)?;
        self.raw.clear();
        Ok(())
    }

    /// Compresses `raw[range]` as one block straight onto the end of the output.
    fn write_block(&mut self, range: Range<usize>, first: Vec<u8>) -> Result<()> {
        let raw = &self.raw[range];
        let start = self.out.len();
        self.out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
        // A cursor at the end of the output: the compressor writes into its spare capacity.
        let mut dst = std::io::Cursor::new(&mut *self.out);
        dst.set_position(start as u64);
        let clen = self
            .compressor
            .compress_to_buffer(raw, &mut dst)
            .at(self.path)?;
        let compressed = &self.out[start..];
        debug_assert_eq!(compressed.len(), clen);
        let mut crc = crc32fast::Hasher::new();
        crc.update(compressed);
        self.hasher.combine(&crc);
        self.blocks.push(WrittenBlock {
            offset: *self.pos,
            clen: clen as u64,
            raw_len: raw.len() as u64,
            crc: crc.finalize(),
            first,
        });
        *self.pos += clen as u64;
        Ok(())
    }
}

/// Encodes a snapshot of `rows` (sorted by key) with index sections for `indexes` and the
/// key history section `history` (sorted by key; `None` writes none, as snapshots were
/// written before that section existed, for tests); the store writes it atomically (temp
/// file, sync, rename, sync the directory) through its file ops. `path` names the snapshot
/// in errors.
///
/// Layout (little-endian):
/// ```text
/// header  = magic "DRIFTSNP" | u16 version | u16 0 | u64 table | u64 seq | u32 crc32(bytes 0..28)
/// blocks  = zstd frames, row blocks first, then each index's blocks, then the history blocks
///           row block raw bytes   = { varint len + key | columns }*   (keys strictly increasing)
///           index block raw bytes = { varint len + index key | varint len + key }*
///                                   (sorted by (index key, key); the index key is the value
///                                   for kind Bytes, its canonical key for the others)
///           history block raw bytes = { key history record }*  (keys strictly increasing,
///                                     see format::put_history_record)
///           a block is cut once its raw bytes reach its target; a record that would take a
///           block beyond MAX_BLOCK_RAW_LEN (64 MiB) is a block of its own, of up to
///           MAX_RECORD_BLOCK_RAW_LEN (1 GiB) raw bytes
/// dir     = varint nsections | { u8 kind (1 rows, 2 index of kind Bytes, 3 or 4 history,
///           5 index of canonical keys) | varint column (0 for rows and history) |
///           [u8 index kind, in kind 5 only (never 0, Bytes)] |
///           varint nblocks | { varint offset | varint clen | varint raw_len |
///           u32 crc32(compressed block) | varint len + first key or value }* }*
/// footer  = u64 dir_offset | u64 dir_len | u32 crc32(dir) | u32 crc32(bytes 0..dir_offset+dir_len) |
///           magic "DRIFTEND"
/// ```
pub(crate) fn snapshot_bytes(
    path: &Path,
    table: TableId,
    seq: Seq,
    rows: impl Iterator<Item = Result<(Vec<u8>, Row)>>,
    indexes: &[(ColumnId, IndexKind)],
    history: Option<impl Iterator<Item = Result<(Vec<u8>, FramePositions)>>>,
    positions: bool,
) -> Result<Vec<u8>> {
    let mut file = SnapshotOut::begin(table, seq);
    let mut index_entries: Vec<Vec<(Vec<u8>, Vec<u8>)>> = vec![Vec::new(); indexes.len()];
    let mut sections: Vec<Section> = Vec::new();
    {
        let mut w = file.writer(path, BLOCK_TARGET)?;
        for item in rows {
            let (key, row) = item?;
            let entries = &mut index_entries;
            let len = varint_len(key.len() as u64) + key.len() + columns_len(&row.0);
            w.record(len, move |raw| {
                put_bytes(raw, &key);
                put_columns(raw, &row.0);
                // The indexed values move from the row to the index entries (or their
                // canonical keys are taken), and the rest of the row is freed here, before
                // its block is compressed: a large row is not held twice besides its
                // encoding. The row record keeps every value.
                take_indexed(row, indexes, &key, entries);
                key
            })?;
        }
        w.flush()?;
        sections.push((
            SECTION_ROWS,
            0,
            IndexKind::Bytes,
            std::mem::take(&mut w.blocks),
        ));
        for (i, (col, kind)) in indexes.iter().enumerate() {
            let mut entries = std::mem::take(&mut index_entries[i]);
            entries.sort_unstable();
            for (v, k) in entries {
                let len =
                    varint_len(v.len() as u64) + v.len() + varint_len(k.len() as u64) + k.len();
                w.record(len, move |raw| {
                    put_bytes(raw, &v);
                    put_bytes(raw, &k);
                    v
                })?;
            }
            w.flush()?;
            let section = match kind {
                IndexKind::Bytes => SECTION_INDEX,
                _ => SECTION_INDEX_KEYED,
            };
            sections.push((section, *col, *kind, std::mem::take(&mut w.blocks)));
        }
        if let Some(history) = history {
            w.target = HISTORY_BLOCK_TARGET;
            for item in history {
                let (key, frames) = item?;
                // At most: a varint of a u64 takes 10 bytes, of a u32 5.
                let per_frame =
                    |f: &(Seq, u64, Vec<u32>)| 20 + if positions { 10 + 5 * f.2.len() } else { 0 };
                let len = 20 + key.len() + frames.iter().map(per_frame).sum::<usize>();
                w.record(len, move |raw| {
                    put_history_record(raw, &key, &frames, positions);
                    key
                })?;
            }
            w.flush()?;
            let kind = if positions {
                SECTION_HISTORY_POSITIONS
            } else {
                SECTION_HISTORY
            };
            sections.push((kind, 0, IndexKind::Bytes, std::mem::take(&mut w.blocks)));
        }
    }

    Ok(file.finish(sections))
}

/// A section as written: its kind, its column, its index kind (written to the directory
/// for `SECTION_INDEX_KEYED` only) and its blocks.
type Section = (u8, ColumnId, IndexKind, Vec<WrittenBlock>);

/// A snapshot file being encoded: its bytes so far and their checksum.
struct SnapshotOut {
    out: Vec<u8>,
    hasher: crc32fast::Hasher,
    /// `out.len()`, as a file offset.
    pos: u64,
}

impl SnapshotOut {
    /// A snapshot of `table` at `seq`: its header.
    fn begin(table: TableId, seq: Seq) -> SnapshotOut {
        let mut out: Vec<u8> = Vec::with_capacity(1 << 20);
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&table.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(out.len(), SNAPSHOT_HEADER_LEN);
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&out);
        SnapshotOut {
            pos: out.len() as u64,
            out,
            hasher,
        }
    }

    /// A writer of blocks of `target` raw bytes onto the end of the file (`path` names it
    /// in errors).
    fn writer<'a>(&'a mut self, path: &'a Path, target: usize) -> Result<BlockWriter<'a>> {
        Ok(BlockWriter {
            out: &mut self.out,
            hasher: &mut self.hasher,
            pos: &mut self.pos,
            compressor: zstd::bulk::Compressor::new(ZSTD_LEVEL).at(path)?,
            raw: BlockWriter::raw_buffer(target),
            first: None,
            blocks: Vec::new(),
            path,
            target,
        })
    }

    /// The whole file: the blocks written, then the directory of `sections` and the
    /// footer. The directory is encoded in place, each block's first key or value freed
    /// once it is there.
    fn finish(self, sections: Vec<Section>) -> Vec<u8> {
        let SnapshotOut {
            mut out,
            mut hasher,
            pos,
        } = self;
        let dir_start = out.len();
        debug_assert_eq!(pos, dir_start as u64);
        // Room for exactly the directory and the footer: a directory with a large first
        // key or value would otherwise double the whole file's buffer.
        let dir_len: usize = varint_len(sections.len() as u64)
            + sections
                .iter()
                .map(|(kind, col, _, blocks)| {
                    1 + varint_len(u64::from(*col))
                        + usize::from(*kind == SECTION_INDEX_KEYED)
                        + varint_len(blocks.len() as u64)
                        + blocks
                            .iter()
                            .map(|b| {
                                varint_len(b.offset)
                                    + varint_len(b.clen)
                                    + varint_len(b.raw_len)
                                    + 4
                                    + varint_len(b.first.len() as u64)
                                    + b.first.len()
                            })
                            .sum::<usize>()
                })
                .sum::<usize>();
        out.reserve_exact(dir_len + SNAPSHOT_FOOTER_LEN);
        put_varint(&mut out, sections.len() as u64);
        for (kind, col, index_kind, blocks) in sections {
            out.push(kind);
            put_varint(&mut out, u64::from(col));
            if kind == SECTION_INDEX_KEYED {
                out.push(index_kind.code());
            }
            put_varint(&mut out, blocks.len() as u64);
            for b in blocks {
                put_varint(&mut out, b.offset);
                put_varint(&mut out, b.clen);
                put_varint(&mut out, b.raw_len);
                out.extend_from_slice(&b.crc.to_le_bytes());
                put_bytes(&mut out, &b.first);
            }
        }
        let dir = &out[dir_start..];
        debug_assert_eq!(dir.len(), dir_len);
        hasher.update(dir);
        let dir_len = dir.len() as u64;
        let dir_crc = crc32fast::hash(dir);
        out.extend_from_slice(&pos.to_le_bytes());
        out.extend_from_slice(&dir_len.to_le_bytes());
        out.extend_from_slice(&dir_crc.to_le_bytes());
        out.extend_from_slice(&hasher.finalize().to_le_bytes());
        out.extend_from_slice(&SNAPSHOT_END_MAGIC);
        out
    }
}

/// Moves the values of the `indexes` columns of kind `Bytes` out of `row` (which is
/// dropped) into their `entries` with `key`, and adds the index keys of the other kinds'
/// values; NULL values are not indexed.
fn take_indexed(
    mut row: Row,
    indexes: &[(ColumnId, IndexKind)],
    key: &[u8],
    entries: &mut [Vec<(Vec<u8>, Vec<u8>)>],
) {
    for (i, (col, kind)) in indexes.iter().enumerate() {
        let Ok(at) = row.0.binary_search_by_key(col, |p| p.0) else {
            continue;
        };
        let v = match kind {
            // Copied only if another index has the same column.
            IndexKind::Bytes if indexes[i + 1..].iter().any(|(c, _)| c == col) => {
                row.0[at].1.clone()
            }
            IndexKind::Bytes => row.0[at].1.take(),
            kind => row.0[at].1.as_deref().map(|v| entry_key(*kind, v)),
        };
        if let Some(v) = v {
            entries[i].push((v, key.to_vec()));
        }
    }
}

/// Checks a block's compressed bytes against the CRC the directory gives it (the directory
/// was checked to keep every block inside the file).
fn check_block_crc(map: &[u8], b: &BlockMeta) -> DecodeResult<()> {
    let bytes = &map[b.offset as usize..(b.offset + b.clen) as usize];
    if crc32fast::hash(bytes) != b.crc {
        return Err("snapshot block crc mismatch");
    }
    Ok(())
}

/// A section as the directory gives it: its kind, its column, its index kind (`Bytes` but
/// for `SECTION_INDEX_KEYED`) and its blocks.
type DirSection = (u8, ColumnId, IndexKind, Vec<BlockMeta>);

/// Decodes the directory `buf`, which starts at `data_end` in the file (where the blocks
/// end).
fn decode_dir(buf: &[u8], data_end: u64) -> DecodeResult<Vec<DirSection>> {
    let mut d = Decoder::new(buf);
    let n = d.count(3)?;
    let mut sections = Vec::with_capacity(n);
    for _ in 0..n {
        let kind = d.u8()?;
        if ![
            SECTION_ROWS,
            SECTION_INDEX,
            SECTION_HISTORY,
            SECTION_HISTORY_POSITIONS,
            SECTION_INDEX_KEYED,
        ]
        .contains(&kind)
        {
            return Err("unknown snapshot section kind");
        }
        let col = ColumnId::try_from(d.varint()?).map_err(|_| "column id overflows u16")?;
        let index_kind = if kind == SECTION_INDEX_KEYED {
            match IndexKind::from_code(d.u8()?) {
                Some(IndexKind::Bytes) => return Err("an index of kind bytes in a keyed section"),
                Some(k) => k,
                None => return Err("unknown index kind in snapshot directory"),
            }
        } else {
            IndexKind::Bytes
        };
        // Each block entry takes at least 8 bytes.
        let nb = d.count(8)?;
        let mut blocks = Vec::with_capacity(nb);
        for _ in 0..nb {
            let offset = d.varint()?;
            let clen = d.varint()?;
            let raw_len = d.varint()?;
            let crc = d.u32_le()?;
            let first_len = d.len_bytes()?.len();
            let first_end = data_end as usize + d.pos();
            if offset < SNAPSHOT_HEADER_LEN as u64
                || offset.checked_add(clen).is_none_or(|e| e > data_end)
            {
                return Err("snapshot block out of bounds");
            }
            // Beyond MAX_BLOCK_RAW_LEN, a block holds one record (checked as it is read).
            if raw_len > MAX_RECORD_BLOCK_RAW_LEN {
                return Err("snapshot block too large");
            }
            blocks.push(BlockMeta {
                offset,
                clen,
                raw_len,
                crc,
                kind,
                first: first_end - first_len..first_end,
            });
        }
        sections.push((kind, col, index_kind, blocks));
    }
    if !d.is_empty() {
        return Err("trailing bytes in snapshot directory");
    }
    Ok(sections)
}

/// Skips one record of a block of a section of `kind`.
fn skip_record(d: &mut Decoder<'_>, kind: u8) -> DecodeResult<()> {
    match kind {
        SECTION_ROWS => {
            d.len_bytes()?;
            d.skip_columns()
        }
        SECTION_INDEX | SECTION_INDEX_KEYED => {
            d.len_bytes()?;
            d.len_bytes().map(drop)
        }
        SECTION_HISTORY | SECTION_HISTORY_POSITIONS => {
            d.len_bytes()?;
            skip_history_frames(d, kind == SECTION_HISTORY_POSITIONS)
        }
        _ => Err("unknown snapshot section kind"),
    }
}

/// Checks that the decompressed block `raw` of a section of `kind` is one whole record: a
/// block longer than [`MAX_BLOCK_RAW_LEN`] is written for one record alone.
fn one_record(raw: &[u8], kind: u8) -> DecodeResult<()> {
    let mut d = Decoder::new(raw);
    skip_record(&mut d, kind)?;
    if !d.is_empty() {
        return Err("a snapshot block larger than 64 MiB holds more than one record");
    }
    Ok(())
}

/// Decodes a decompressed row block.
pub(crate) fn decode_row_block(raw: &[u8]) -> DecodeResult<Vec<(Vec<u8>, Row)>> {
    let mut d = Decoder::new(raw);
    let mut rows: Vec<(Vec<u8>, Row)> = Vec::new();
    while !d.is_empty() {
        let key = d.len_bytes()?;
        if rows.last().is_some_and(|(k, _)| k.as_slice() >= key) {
            return Err("snapshot keys not strictly increasing");
        }
        let key = key.to_vec();
        rows.push((key, Row(d.columns()?)));
    }
    Ok(rows)
}

/// Decodes a decompressed key history block (of a section that keeps positions, or not).
pub(crate) fn decode_history_block(raw: &[u8], positions: bool) -> DecodeResult<HistoryRecords> {
    let mut d = Decoder::new(raw);
    let mut out: HistoryRecords = Vec::new();
    while !d.is_empty() {
        let (key, frames) = history_record(&mut d, positions)?;
        if out.last().is_some_and(|(k, _)| k.as_slice() >= key) {
            return Err("key history keys not strictly increasing");
        }
        out.push((key.to_vec(), frames));
    }
    Ok(out)
}

/// Decodes a decompressed index block.
pub(crate) fn decode_index_block(raw: &[u8]) -> DecodeResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut d = Decoder::new(raw);
    let mut out = Vec::new();
    while !d.is_empty() {
        let v = d.len_bytes()?.to_vec();
        let k = d.len_bytes()?.to_vec();
        out.push((v, k));
    }
    Ok(out)
}

impl Snapshot {
    /// Opens a snapshot to read from, verifying its header, footer and directory: what it
    /// reads at open, whatever the table's size. Each block's CRC is checked when the
    /// block is read, before it is decompressed, so damaged bytes are never read as data;
    /// damage in a block no read needs is found by [`Snapshot::open_verified`] (verify).
    /// Any mismatch is corruption naming the file and offset.
    pub fn open(path: &Path, table: TableId) -> Result<Snapshot> {
        let map = map_file(path)?;
        Snapshot::from_bytes(
            path,
            table,
            Bytes::Map(map),
            MAX_RECORD_BLOCK_RAW_LEN,
            false,
        )
    }

    /// Opens a snapshot as [`Snapshot::open`] does and verifies all of it: every block's
    /// CRC and the whole-file checksum too.
    pub fn open_verified(path: &Path, table: TableId) -> Result<Snapshot> {
        let map = map_file(path)?;
        Snapshot::from_bytes(path, table, Bytes::Map(map), MAX_RECORD_BLOCK_RAW_LEN, true)
    }

    /// Opens the snapshot `map`, which decompresses no block larger than `max_raw_len` raw
    /// bytes, verifying every block and the file's checksum too when `whole`.
    fn from_bytes(
        path: &Path,
        table: TableId,
        map: Bytes,
        max_raw_len: u64,
        whole: bool,
    ) -> Result<Snapshot> {
        let bad = |offset: u64, detail: &str| Error::corruption(path, offset, detail);
        let len = map.len();
        if len < SNAPSHOT_HEADER_LEN + SNAPSHOT_FOOTER_LEN {
            return Err(bad(0, "snapshot too short"));
        }
        let mut h = Decoder::new(&map[..SNAPSHOT_HEADER_LEN]);
        let ok_header = (|| -> DecodeResult<(u64, u64)> {
            if h.array::<8>()? != SNAPSHOT_MAGIC {
                return Err("bad snapshot magic");
            }
            if h.u16_le()? != FORMAT_VERSION {
                return Err("unsupported snapshot version");
            }
            let _ = h.u16_le()?;
            let t = h.u64_le()?;
            let s = h.u64_le()?;
            if h.u32_le()? != crc32fast::hash(&map[..28]) {
                return Err("snapshot header crc mismatch");
            }
            Ok((t, s))
        })();
        let (t, seq) = ok_header.map_err(|d| bad(0, d))?;
        if t != table {
            return Err(bad(0, "snapshot belongs to another table"));
        }
        let foot_at = len - SNAPSHOT_FOOTER_LEN;
        let mut f = Decoder::new(&map[foot_at..]);
        let footer = (|| -> DecodeResult<(u64, u64, u32, u32)> {
            let dir_offset = f.u64_le()?;
            let dir_len = f.u64_le()?;
            let dir_crc = f.u32_le()?;
            let file_crc = f.u32_le()?;
            if f.array::<8>()? != SNAPSHOT_END_MAGIC {
                return Err("bad snapshot footer magic");
            }
            if dir_offset < SNAPSHOT_HEADER_LEN as u64
                || dir_offset.checked_add(dir_len) != Some(foot_at as u64)
            {
                return Err("snapshot directory out of bounds");
            }
            Ok((dir_offset, dir_len, dir_crc, file_crc))
        })();
        let (dir_offset, _dir_len, dir_crc, file_crc) =
            footer.map_err(|d| bad(foot_at as u64, d))?;
        let dir = &map[dir_offset as usize..foot_at];
        if crc32fast::hash(dir) != dir_crc {
            return Err(bad(dir_offset, "snapshot directory crc mismatch"));
        }
        let sections = decode_dir(dir, dir_offset).map_err(|d| bad(dir_offset, d))?;
        let mut rows = None;
        let mut indexes = HashMap::new();
        let mut history = None;
        let mut history_positions = false;
        for (kind, col, index_kind, blocks) in sections {
            for b in blocks.iter().filter(|_| whole) {
                check_block_crc(&map, b).map_err(|d| bad(b.offset, d))?;
            }
            if kind == SECTION_ROWS {
                if rows.replace(blocks).is_some() {
                    return Err(bad(dir_offset, "two row sections"));
                }
            } else if kind == SECTION_HISTORY || kind == SECTION_HISTORY_POSITIONS {
                history_positions = kind == SECTION_HISTORY_POSITIONS;
                if history.replace(blocks).is_some() {
                    return Err(bad(dir_offset, "two key history sections"));
                }
            } else if indexes.insert(col, (index_kind, blocks)).is_some() {
                return Err(bad(dir_offset, "two sections for one index"));
            }
        }
        let rows = rows.ok_or_else(|| bad(dir_offset, "no row section"))?;
        if whole && crc32fast::hash(&map[..foot_at]) != file_crc {
            return Err(bad(0, "snapshot file checksum mismatch"));
        }
        Ok(Snapshot {
            path: path.to_path_buf(),
            map,
            seq,
            rows,
            indexes,
            history,
            history_positions,
            cache: Mutex::new(Vec::new()),
            rebuilt: Mutex::new(HashMap::new()),
            counters: OnceLock::new(),
            rows_counted: OnceLock::new(),
            last_key: OnceLock::new(),
            max_raw_len,
        })
    }

    /// Block `b` decompressed, checked to be as long as the directory says and, when it is
    /// longer than [`MAX_BLOCK_RAW_LEN`], to hold exactly one record.
    fn raw_block(&self, b: &BlockMeta) -> Result<Vec<u8>> {
        if b.raw_len > self.max_raw_len {
            return Err(Error::TooLarge(format!(
                "snapshot {}: the block at offset {} of {} raw bytes is larger than the {} \
                 this reader decompresses",
                self.path.display(),
                b.offset,
                b.raw_len,
                self.max_raw_len
            )));
        }
        check_block_crc(&self.map, b).map_err(|d| Error::corruption(&self.path, b.offset, d))?;
        let bytes = &self.map[b.offset as usize..(b.offset + b.clen) as usize];
        let zerr =
            |e: std::io::Error| Error::corruption(&self.path, b.offset, format!("zstd: {e}"));
        // Reserve the stated length up front only when the compressed size can justify it
        // (the compressed bytes are in the file: at most 64 times as many are reserved);
        // otherwise grow with what the decoder actually produces (bounded by raw_len + 1).
        // A large block whose directory entry lies about its length is thus found out by
        // what it decompresses to, not by an allocation of the length it claims.
        let raw = if b.raw_len <= b.clen.saturating_mul(64) {
            // One decompression context per thread: creating one per block was a large
            // part of a point lookup.
            thread_local! {
                static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                    const { std::cell::RefCell::new(None) };
            }
            DCTX.with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot.is_none() {
                    *slot = Some(zstd::bulk::Decompressor::new()?);
                }
                slot.as_mut()
                    .expect("just created")
                    .decompress(bytes, b.raw_len as usize)
            })
            .map_err(zerr)?
        } else {
            let mut out = Vec::new();
            let mut dec = zstd::stream::read::Decoder::with_buffer(bytes).map_err(zerr)?;
            // The window never needs to exceed the block's stated length.
            let window_log = (64 - b.raw_len.max(1024).leading_zeros()).min(31);
            dec.window_log_max(window_log).map_err(zerr)?;
            dec.take(b.raw_len + 1)
                .read_to_end(&mut out)
                .map_err(zerr)?;
            out
        };
        if raw.len() as u64 != b.raw_len {
            return Err(Error::corruption(
                &self.path,
                b.offset,
                "block length mismatch",
            ));
        }
        if b.raw_len > MAX_BLOCK_RAW_LEN {
            one_record(&raw, b.kind).map_err(|d| Error::corruption(&self.path, b.offset, d))?;
        }
        Ok(raw)
    }

    pub fn row_blocks(&self) -> usize {
        self.rows.len()
    }

    /// Where row block `i` starts in the file, and the first key the directory gives it.
    pub(crate) fn row_block_start(&self, i: usize) -> (u64, &[u8]) {
        let b = &self.rows[i];
        (b.offset, self.first_of(b))
    }

    /// The first key or value the directory gives block `b`.
    fn first_of(&self, b: &BlockMeta) -> &[u8] {
        &self.map[b.first.clone()]
    }

    /// The columns this snapshot has an index section for, ascending, with each section's
    /// index kind.
    pub(crate) fn index_columns(&self) -> Vec<(ColumnId, IndexKind)> {
        let mut cols: Vec<(ColumnId, IndexKind)> =
            self.indexes.iter().map(|(c, (k, _))| (*c, *k)).collect();
        cols.sort_unstable();
        cols
    }

    /// The number of blocks in `column`'s index section.
    pub(crate) fn index_blocks(&self, column: ColumnId) -> usize {
        self.indexes.get(&column).map_or(0, |(_, b)| b.len())
    }

    /// Block `i` of `column`'s index section, decoded: its offset, the first index key the
    /// directory gives it, and its `(index key, key)` entries.
    pub(crate) fn index_block(
        &self,
        column: ColumnId,
        i: usize,
    ) -> Result<(u64, &[u8], IndexBlock)> {
        let b = &self.indexes[&column].1[i];
        let entries = decode_index_block(&self.raw_block(b)?)
            .map_err(|d| Error::corruption(&self.path, b.offset, d))?;
        Ok((b.offset, self.first_of(b), entries))
    }

    /// Whether this snapshot records where each key's events are.
    pub fn has_history(&self) -> bool {
        self.history.is_some()
    }

    /// Whether the key history section keeps the positions of keys' events in large
    /// frames (written since they exist).
    pub(crate) fn has_history_positions(&self) -> bool {
        self.history_positions
    }

    /// The number of blocks in the key history section.
    pub(crate) fn history_blocks(&self) -> usize {
        self.history.as_ref().map_or(0, Vec::len)
    }

    /// Block `i` of the key history section, decoded: its offset, the first key the
    /// directory gives it, and its records.
    pub(crate) fn history_block(&self, i: usize) -> Result<(u64, &[u8], HistoryRecords)> {
        let b = &self.history.as_ref().expect("has a history section")[i];
        let records = decode_history_block(&self.raw_block(b)?, self.history_positions)
            .map_err(|d| Error::corruption(&self.path, b.offset, d))?;
        Ok((b.offset, self.first_of(b), records))
    }

    /// Where `key`'s events up to this snapshot's seq are in the log (empty: it has none);
    /// `None` when the snapshot has no key history section. One block decompressed.
    pub fn key_history(&self, key: &[u8]) -> Result<Option<FramePositions>> {
        let Some(blocks) = &self.history else {
            return Ok(None);
        };
        let Some(i) = blocks
            .partition_point(|b| self.first_of(b) <= key)
            .checked_sub(1)
        else {
            return Ok(Some(Vec::new()));
        };
        let b = &blocks[i];
        let raw = self.raw_block(b)?;
        let found = (|| -> DecodeResult<FramePositions> {
            let mut d = Decoder::new(&raw);
            let mut prev: Option<&[u8]> = None;
            while !d.is_empty() {
                let k = d.len_bytes()?;
                if prev.is_some_and(|p| p >= k) {
                    return Err("key history keys not strictly increasing");
                }
                match k.cmp(key) {
                    std::cmp::Ordering::Less => {
                        skip_history_frames(&mut d, self.history_positions)?;
                        prev = Some(k);
                    }
                    std::cmp::Ordering::Equal => {
                        return history_record_frames(&mut d, self.history_positions)
                    }
                    std::cmp::Ordering::Greater => break,
                }
            }
            Ok(Vec::new())
        })();
        found
            .map(Some)
            .map_err(|d| Error::corruption(&self.path, b.offset, d))
    }

    /// Counts this snapshot's block cache hits and misses into `counters` from now on.
    pub fn count_blocks_into(&self, counters: Arc<BlockCounters>) {
        let _ = self.counters.set(counters);
    }

    /// The file's size in bytes.
    pub fn file_len(&self) -> u64 {
        self.map.len() as u64
    }

    /// `(raw, compressed)` bytes of every block (rows, indexes and key history), as its
    /// directory records them.
    pub fn block_bytes(&self) -> (u64, u64) {
        self.rows
            .iter()
            .chain(self.indexes.values().flat_map(|(_, b)| b))
            .chain(self.history.iter().flatten())
            .fold((0, 0), |(r, c), b| (r + b.raw_len, c + b.clen))
    }

    /// The number of rows, counted once by walking every row block's keys (columns are
    /// skipped undecoded). A block longer than [`MAX_BLOCK_RAW_LEN`] counts one row
    /// without being decompressed: it holds one record, which every read of it checks.
    pub fn row_count(&self) -> Result<u64> {
        if let Some(n) = self.rows_counted.get() {
            return Ok(*n);
        }
        let mut n = 0u64;
        for b in &self.rows {
            if b.raw_len > MAX_BLOCK_RAW_LEN {
                n += 1;
                continue;
            }
            n += self.block_rows(b)?;
        }
        let _ = self.rows_counted.set(n);
        Ok(n)
    }

    /// About how many rows the snapshot holds, for a planner, without reading it whole: the
    /// exact count when it was counted already or has at most three row blocks; otherwise
    /// the rows of its first, middle and last row blocks per raw byte, times the raw bytes
    /// of all of them (a block longer than [`MAX_BLOCK_RAW_LEN`] counts one row). What a
    /// new session's first plan of a table never analyzed reads: three blocks, whatever
    /// the table's size.
    pub fn estimate_row_count(&self) -> Result<u64> {
        if let Some(n) = self.rows_counted.get() {
            return Ok(*n);
        }
        let small: Vec<&BlockMeta> = self
            .rows
            .iter()
            .filter(|b| b.raw_len <= MAX_BLOCK_RAW_LEN)
            .collect();
        if small.len() <= 3 {
            return self.row_count();
        }
        let large = (self.rows.len() - small.len()) as u64;
        let (mut counted, mut sampled) = (0u64, 0u64);
        for b in [small[0], small[small.len() / 2], small[small.len() - 1]] {
            counted += self.block_rows(b)?;
            sampled += b.raw_len;
        }
        let raw: u64 = small.iter().map(|b| b.raw_len).sum();
        let rate = counted as f64 / sampled.max(1) as f64;
        Ok(large + (raw as f64 * rate).round() as u64)
    }

    /// The rows of one row block (decompressed, keys walked, columns skipped undecoded).
    fn block_rows(&self, b: &BlockMeta) -> Result<u64> {
        let raw = self.raw_block(b)?;
        let counted = (|| -> DecodeResult<u64> {
            let mut d = Decoder::new(&raw);
            let mut k = 0;
            while !d.is_empty() {
                d.len_bytes()?;
                d.skip_columns()?;
                k += 1;
            }
            Ok(k)
        })();
        counted.map_err(|d| Error::corruption(&self.path, b.offset, d))
    }

    /// The largest key, read once from the last row block (`None`: no rows). A block
    /// longer than [`MAX_BLOCK_RAW_LEN`] holds one record: its first key, as the directory
    /// gives it, is its last, and the block is not decompressed for it.
    pub fn last_key(&self) -> Result<Option<&[u8]>> {
        if let Some(k) = self.last_key.get() {
            return Ok(k.as_deref());
        }
        let last = match self.rows.last() {
            None => None,
            Some(b) if b.raw_len > MAX_BLOCK_RAW_LEN => Some(self.first_of(b).to_vec()),
            Some(b) => {
                let raw = self.raw_block(b)?;
                let found = (|| -> DecodeResult<Option<Vec<u8>>> {
                    let mut d = Decoder::new(&raw);
                    let mut key = None;
                    while !d.is_empty() {
                        key = Some(d.len_bytes()?);
                        d.skip_columns()?;
                    }
                    Ok(key.map(<[u8]>::to_vec))
                })();
                found.map_err(|d| Error::corruption(&self.path, b.offset, d))?
            }
        };
        Ok(self.last_key.get_or_init(|| last).as_deref())
    }

    /// Row block `i`, decompressed (cached), and whether it came from the cache.
    fn indexed_row_block(&self, i: usize) -> Result<(Arc<IndexedBlock>, bool)> {
        {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = cache.iter().position(|(j, _)| *j == i) {
                let hit = cache.remove(p);
                cache.insert(0, hit.clone());
                if let Some(c) = self.counters.get() {
                    c.hits.fetch_add(1, Ordering::Relaxed);
                }
                return Ok((hit.1, true));
            }
        }
        if let Some(c) = self.counters.get() {
            c.misses.fetch_add(1, Ordering::Relaxed);
        }
        let raw = self.raw_block(&self.rows[i])?;
        let block = Arc::new(IndexedBlock {
            raw,
            starts: std::sync::OnceLock::new(),
        });
        if block.raw.len() <= CACHED_BYTES {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.insert(0, (i, block.clone()));
            let mut bytes = 0;
            let kept = cache
                .iter()
                .take(CACHED_BLOCKS)
                .take_while(|(_, b)| {
                    bytes += b.raw.len();
                    bytes <= CACHED_BYTES
                })
                .count();
            cache.truncate(kept);
        }
        Ok((block, false))
    }

    /// Row block `i` decompressed, with its offset in the file (for scans, which read each
    /// block once).
    pub fn row_block_raw(&self, i: usize) -> Result<(u64, Vec<u8>)> {
        let b = &self.rows[i];
        Ok((b.offset, self.raw_block(b)?))
    }

    /// Row block `i`, decoded (for scans, which read each block once).
    pub fn row_block(&self, i: usize) -> Result<RowBlock> {
        let b = &self.rows[i];
        let raw = self.raw_block(b)?;
        let rows =
            decode_row_block(&raw).map_err(|d| Error::corruption(&self.path, b.offset, d))?;
        Ok(Arc::new(rows))
    }

    /// Finds `key` in the one block that may hold it, decoding only its row.
    fn find(&self, key: &[u8]) -> Result<Option<Row>> {
        let i = self.rows.partition_point(|b| self.first_of(b) <= key);
        let Some(i) = i.checked_sub(1) else {
            return Ok(None);
        };
        let (block, cached) = self.indexed_row_block(i)?;
        let found = (|| -> DecodeResult<Option<Row>> {
            if !cached && block.starts.get().is_none() {
                let mut d = Decoder::new(&block.raw);
                while !d.is_empty() {
                    let k = d.len_bytes()?;
                    match k.cmp(key) {
                        std::cmp::Ordering::Less => d.skip_columns()?,
                        std::cmp::Ordering::Equal => return Ok(Some(Row(d.columns()?))),
                        std::cmp::Ordering::Greater => return Ok(None),
                    }
                }
                return Ok(None);
            }
            if block.starts.get().is_none() {
                let mut starts = Vec::new();
                let mut d = Decoder::new(&block.raw);
                let mut prev: Option<&[u8]> = None;
                while !d.is_empty() {
                    starts.push(d.pos() as u32);
                    let k = d.len_bytes()?;
                    if prev.is_some_and(|p| p >= k) {
                        return Err("keys of a row block not increasing");
                    }
                    prev = Some(k);
                    d.skip_columns()?;
                }
                let _ = block.starts.set(starts);
            }
            let starts = block.starts.get().expect("set above");
            let key_at = |start: u32| -> DecodeResult<&[u8]> {
                Decoder::new(&block.raw[start as usize..]).len_bytes()
            };
            // Binary search over the record starts (keys were checked increasing).
            let (mut lo, mut hi) = (0usize, starts.len());
            while lo < hi {
                let mid = (lo + hi) / 2;
                match key_at(starts[mid])?.cmp(key) {
                    std::cmp::Ordering::Less => lo = mid + 1,
                    std::cmp::Ordering::Greater => hi = mid,
                    std::cmp::Ordering::Equal => {
                        let mut d = Decoder::new(&block.raw[starts[mid] as usize..]);
                        d.len_bytes()?;
                        return Ok(Some(Row(d.columns()?)));
                    }
                }
            }
            Ok(None)
        })();
        found.map_err(|d| Error::corruption(&self.path, self.rows[i].offset, d))
    }

    /// The row under `key`: one block decompressed at most.
    pub fn get(&self, key: &[u8]) -> Result<Option<Row>> {
        self.find(key)
    }

    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(self.find(key)?.is_some())
    }

    /// Keys whose `column` value has an index key of `kind` within `(lo, hi)` (index keys,
    /// see [`crate::index_key`]), in index order, from the index section or, when this
    /// snapshot has none for the column or one of another kind, from an index rebuilt from
    /// its rows. For a kind other than `Bytes`, the keys of rows whose value is not valid
    /// for the kind (filed under the empty index key) come first, whatever the bounds: the
    /// caller checks every row it is given.
    pub fn index_keys(
        &self,
        column: ColumnId,
        kind: IndexKind,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
    ) -> Result<Vec<Vec<u8>>> {
        let in_lo = |v: &[u8]| match lo {
            Bound::Included(l) => v >= l,
            Bound::Excluded(l) => v > l,
            Bound::Unbounded => true,
        };
        let below_hi = |v: &[u8]| match hi {
            Bound::Included(h) => v <= h,
            Bound::Excluded(h) => v < h,
            Bound::Unbounded => true,
        };
        // Invalid values sort first: an unbounded read meets them anyway.
        let invalid_too = kind != IndexKind::Bytes && lo != Bound::Unbounded;
        let mut out = Vec::new();
        if let Some((_, blocks)) = self.indexes.get(&column).filter(|(k, _)| *k == kind) {
            if invalid_too {
                'invalid: for b in blocks {
                    if !self.first_of(b).is_empty() {
                        break;
                    }
                    let entries = decode_index_block(&self.raw_block(b)?)
                        .map_err(|d| Error::corruption(&self.path, b.offset, d))?;
                    for (v, k) in entries {
                        if !v.is_empty() {
                            break 'invalid;
                        }
                        out.push(k);
                    }
                }
            }
            let start = match lo {
                Bound::Unbounded => 0,
                Bound::Included(l) | Bound::Excluded(l) => blocks
                    .partition_point(|b| self.first_of(b) < l)
                    .saturating_sub(1),
            };
            for b in &blocks[start..] {
                if !below_hi(self.first_of(b)) {
                    break;
                }
                let entries = decode_index_block(&self.raw_block(b)?)
                    .map_err(|d| Error::corruption(&self.path, b.offset, d))?;
                for (v, k) in entries {
                    if !below_hi(&v) {
                        return Ok(out);
                    }
                    if in_lo(&v) {
                        out.push(k);
                    }
                }
            }
            return Ok(out);
        }
        let entries = self.rebuilt_index(column, kind)?;
        if invalid_too {
            out.extend(
                entries
                    .iter()
                    .take_while(|(v, _)| v.is_empty())
                    .map(|(_, k)| k.clone()),
            );
        }
        let start = match lo {
            Bound::Unbounded => 0,
            Bound::Included(l) | Bound::Excluded(l) => {
                entries.partition_point(|(v, _)| v.as_slice() < l)
            }
        };
        for (v, k) in &entries[start..] {
            if !below_hi(v) {
                break;
            }
            if in_lo(v) {
                out.push(k.clone());
            }
        }
        Ok(out)
    }

    fn rebuilt_index(&self, column: ColumnId, kind: IndexKind) -> Result<IndexEntries> {
        if let Some(e) = self
            .rebuilt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(column, kind))
        {
            return Ok(e.clone());
        }
        let mut entries = Vec::new();
        for i in 0..self.rows.len() {
            for (k, row) in self.row_block(i)?.iter() {
                if let Some(v) = row.get(column) {
                    entries.push((entry_key(kind, v), k.clone()));
                }
            }
        }
        entries.sort_unstable();
        let entries = Arc::new(entries);
        self.rebuilt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((column, kind), entries.clone());
        Ok(entries)
    }
}

/// A block's raw bytes and its first key or value.
#[cfg(test)]
pub(crate) type RawBlock = (Vec<u8>, Vec<u8>);

/// A snapshot file of `table` at `seq` of `sections`, each a kind, a column, an index kind
/// (written for `SECTION_INDEX_KEYED`) and the raw bytes of its blocks with their first
/// keys or values, written as given (so that a test can write blocks the writer never
/// would).
#[cfg(test)]
pub(crate) fn snapshot_of_sections(
    table: TableId,
    seq: Seq,
    sections: Vec<(u8, ColumnId, IndexKind, Vec<RawBlock>)>,
) -> Vec<u8> {
    let path = Path::new("<test>");
    let mut file = SnapshotOut::begin(table, seq);
    let mut written = Vec::new();
    for (kind, col, index_kind, blocks) in sections {
        let mut w = file.writer(path, BLOCK_TARGET).unwrap();
        for (raw, first) in blocks {
            w.raw = raw;
            w.write_block(0..w.raw.len(), first).unwrap();
        }
        written.push((kind, col, index_kind, std::mem::take(&mut w.blocks)));
    }
    file.finish(written)
}

/// The raw bytes of a row record.
#[cfg(test)]
pub(crate) fn row_record(key: &[u8], row: &Row) -> Vec<u8> {
    let mut raw = Vec::new();
    put_bytes(&mut raw, key);
    put_columns(&mut raw, &row.0);
    raw
}

/// Decodes a whole snapshot image held in memory, for the fuzzer: verifies it like
/// [`Snapshot::open_verified`] does, then decodes every block. Returns the records decoded.
pub fn check_snapshot_bytes(bytes: &[u8]) -> Result<usize> {
    let table = match bytes.get(12..20) {
        Some(t) => u64::from_le_bytes(t.try_into().unwrap_or([0; 8])),
        None => 0,
    };
    let snap = Snapshot::from_bytes(
        Path::new("<memory>"),
        table,
        Bytes::Owned(bytes.to_vec()),
        IN_MEMORY_RAW_LEN,
        true,
    )?;
    let mut n = 0;
    for i in 0..snap.row_blocks() {
        n += snap.row_block(i)?.len();
    }
    for (c, kind) in snap.index_columns() {
        n += snap
            .index_keys(c, kind, Bound::Unbounded, Bound::Unbounded)?
            .len();
    }
    for i in 0..snap.history_blocks() {
        n += snap.history_block(i)?.2.len();
    }
    Ok(n)
}

/// Decodes arbitrary bytes as a raw (decompressed) row block, index block and key history
/// block (of both kinds), and checks them as a block of one record of each section, for the
/// fuzzer: block contents are only reached after their CRC passed, so random snapshot files
/// never get this far. Returns the records decoded (a block found to be one record counts
/// one).
pub fn check_snapshot_block(raw: &[u8]) -> usize {
    let single = [
        SECTION_ROWS,
        SECTION_INDEX,
        SECTION_INDEX_KEYED,
        SECTION_HISTORY,
        SECTION_HISTORY_POSITIONS,
    ]
    .iter()
    .filter(|kind| one_record(raw, **kind).is_ok())
    .count();
    decode_row_block(raw).map_or(0, |r| r.len())
        + decode_index_block(raw).map_or(0, |r| r.len())
        + decode_history_block(raw, false).map_or(0, |r| r.len())
        + decode_history_block(raw, true).map_or(0, |r| r.len())
        + single
}

#[cfg(test)]
mod tests {
    use super::*;

    type HistoryItem = Result<(Vec<u8>, FramePositions)>;

    fn no_history() -> Option<std::iter::Empty<HistoryItem>> {
        None
    }

    /// A planner's estimate of the rows reads three row blocks, not the snapshot: close to
    /// the count for rows of similar sizes, exact once counted or for a small snapshot.
    #[test]
    fn the_row_estimate_reads_three_blocks() {
        let n = 40_000u64;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap");
        let rows = (0..n).map(|i| {
            let value = format!("value {i} {}", "x".repeat((i % 17) as usize));
            Ok((
                format!("key-{i:08}").into_bytes(),
                Row(vec![(1, Some(value.into_bytes()))]),
            ))
        });
        let bytes = snapshot_bytes(&path, 1, 100_000, rows, &[], no_history(), false).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let snap = Snapshot::open(&path, 1).unwrap();
        assert!(snap.row_blocks() > 10, "{} blocks", snap.row_blocks());
        let estimate = snap.estimate_row_count().unwrap();
        assert!(
            estimate.abs_diff(n) * 50 <= n,
            "estimated {estimate} of {n} rows"
        );
        assert!(
            snap.rows_counted.get().is_none(),
            "the estimate counted every block"
        );
        assert_eq!(snap.row_count().unwrap(), n);
        assert_eq!(snap.estimate_row_count().unwrap(), n);
        // Three blocks or fewer: counted exactly.
        let small = dir.path().join("small");
        let rows = (0..100u64).map(|i| Ok((i.to_be_bytes().to_vec(), Row(vec![]))));
        let bytes = snapshot_bytes(&small, 1, 100, rows, &[], no_history(), false).unwrap();
        std::fs::write(&small, bytes).unwrap();
        let snap = Snapshot::open(&small, 1).unwrap();
        assert_eq!(snap.estimate_row_count().unwrap(), 100);
    }

    /// A key history section of many blocks: every key's frames are found in the block
    /// the directory picks, and a key without a record (before the first, between two,
    /// after the last) has none.
    #[test]
    fn key_history_over_many_blocks() {
        let key = |i: u64| format!("key-{:08}", i * 2).into_bytes();
        let frames = |i: u64| -> FramePositions {
            (0..1 + i % 7)
                .map(|n| {
                    // Every other frame with positions (1 or 2 of them), as large ones have.
                    let at = (0..n % 3).map(|j| 20 + 9 * j as u32).collect();
                    (1 + i * 10 + n, 4096 + 100 * i + n * 7, at)
                })
                .collect()
        };
        let n = 3_000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap");
        let rows = std::iter::once(Ok((b"a".to_vec(), Row(vec![]))));
        let history = (0..n).map(|i| Ok((key(i), frames(i))));
        let bytes = snapshot_bytes(&path, 1, 100_000, rows, &[], Some(history), true).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let snap = Snapshot::open(&path, 1).unwrap();
        assert!(
            snap.history_blocks() > 4,
            "{} blocks",
            snap.history_blocks()
        );
        for i in 0..n {
            assert_eq!(
                snap.key_history(&key(i)).unwrap(),
                Some(frames(i)),
                "key {i}"
            );
            let between = format!("key-{:08}", i * 2 + 1).into_bytes();
            assert_eq!(snap.key_history(&between).unwrap(), Some(Vec::new()));
        }
        for absent in [b"a".as_slice(), b"key-", b"z"] {
            assert_eq!(snap.key_history(absent).unwrap(), Some(Vec::new()));
        }
    }

    /// `n` bytes no compressor shrinks (xorshift64).
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(n);
        out
    }

    /// The error of `r`, which must be corruption of `path` at `offset` saying `detail`.
    fn assert_corrupt<T: std::fmt::Debug>(r: Result<T>, path: &Path, offset: u64, detail: &str) {
        match r {
            Err(Error::Corruption {
                file,
                offset: at,
                detail: d,
            }) => {
                assert_eq!(file, path);
                assert_eq!(at, offset, "{d}");
                assert!(d.contains(detail), "{d}");
            }
            other => panic!("expected corruption at {offset} ({detail}), got {other:?}"),
        }
    }

    /// A snapshot file of table 1 at seq 10 of `sections` (see [`snapshot_of_sections`]),
    /// of index kind `Bytes`.
    fn snapshot_of(sections: Vec<(u8, ColumnId, Vec<RawBlock>)>) -> Vec<u8> {
        let sections = sections
            .into_iter()
            .map(|(kind, col, blocks)| (kind, col, IndexKind::Bytes, blocks))
            .collect();
        snapshot_of_sections(1, 10, sections)
    }

    /// A snapshot with an index section of each kind (`Bytes` for column 1, the others
    /// keyed): the directory gives each kind, the keyed sections hold canonical keys, the
    /// rows keep every value, and each index answers by its own kind; asked by another
    /// kind, it is rebuilt from the rows.
    #[test]
    fn index_sections_of_every_kind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap");
        let f8 = |x: f64| x.to_le_bytes().to_vec();
        let f4 = |x: f32| x.to_le_bytes().to_vec();
        // 1.0 and 1.00 as numerics (short format, dscale 1 and 2), and -0.
        let n1 = vec![0x80, 0x80, 1, 0];
        let n100 = vec![0x00, 0x81, 1, 0];
        let nzero = vec![0x00, 0xA0];
        let rows: Vec<(Vec<u8>, Row)> = [
            ("a", f8(-0.0), f4(1.5), n1.clone()),
            ("b", f8(0.0), f4(f32::NAN), n100.clone()),
            ("c", f8(-1.0), f4(-1.5), nzero.clone()),
        ]
        .into_iter()
        .map(|(k, x, y, z)| {
            let row = Row(vec![
                (1, Some(x.clone())),
                (2, Some(x)),
                (3, Some(y)),
                (4, Some(z)),
            ]);
            (k.as_bytes().to_vec(), row)
        })
        .collect();
        let kinds = [
            (1, IndexKind::Bytes),
            (2, IndexKind::Float8),
            (3, IndexKind::Float4),
            (4, IndexKind::Numeric),
        ];
        let none = None::<std::iter::Empty<Result<(Vec<u8>, FramePositions)>>>;
        let bytes = snapshot_bytes(
            &path,
            1,
            10,
            rows.clone().into_iter().map(Ok),
            &kinds,
            none,
            true,
        )
        .unwrap();
        std::fs::write(&path, bytes).unwrap();
        let snap = Snapshot::open(&path, 1).unwrap();
        assert_eq!(snap.index_columns(), kinds);
        for (col, kind) in kinds {
            let section = if kind == IndexKind::Bytes {
                SECTION_INDEX
            } else {
                SECTION_INDEX_KEYED
            };
            assert!(snap.indexes[&col].1.iter().all(|b| b.kind == section));
            let (_, first, entries) = snap.index_block(col, 0).unwrap();
            assert_eq!(first, entries[0].0.as_slice());
            let mut want: Vec<(Vec<u8>, Vec<u8>)> = rows
                .iter()
                .map(|(k, r)| (entry_key(kind, r.get(col).unwrap()), k.clone()))
                .collect();
            want.sort();
            assert_eq!(entries, want, "column {col}");
        }
        for i in 0..snap.row_blocks() {
            assert!(*snap.row_block(i).unwrap() == rows);
        }
        let keys = |col, kind, v: &[u8]| {
            let k = crate::index::index_key(kind, v).unwrap();
            snap.index_keys(col, kind, Bound::Included(&k), Bound::Included(&k))
                .unwrap()
        };
        assert_eq!(keys(1, IndexKind::Bytes, &f8(0.0)), [b"b"]);
        assert_eq!(keys(2, IndexKind::Float8, &f8(0.0)), [b"a", b"b"]);
        assert_eq!(keys(3, IndexKind::Float4, &f4(-f32::NAN)), [b"b"]);
        assert_eq!(keys(4, IndexKind::Numeric, &n100), [b"a", b"b"]);
        assert_eq!(keys(4, IndexKind::Numeric, &[0x00, 0x80]), [b"c"]);
        // Asked by other kinds: rebuilt from the rows, each once.
        assert_eq!(keys(1, IndexKind::Float8, &f8(-0.0)), [b"a", b"b"]);
        assert_eq!(keys(2, IndexKind::Bytes, &f8(-0.0)), [b"a"]);
        assert_eq!(keys(4, IndexKind::Bytes, &n1), [b"a"]);
        let rebuilt = snap.rebuilt.lock().unwrap();
        let mut cached: Vec<_> = rebuilt.keys().copied().collect();
        cached.sort();
        assert_eq!(
            cached,
            [
                (1, IndexKind::Float8),
                (2, IndexKind::Bytes),
                (4, IndexKind::Bytes)
            ]
        );
    }

    /// A keyed index section's directory entry carries its index kind: an unknown kind, or
    /// kind `Bytes` (whose sections are of kind 2), is corruption at the directory.
    #[test]
    fn a_keyed_section_of_a_bad_index_kind_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let mut entry = Vec::new();
        put_bytes(&mut entry, &[4]);
        put_bytes(&mut entry, b"a");
        for (code, detail) in [
            (0u8, "an index of kind bytes in a keyed section"),
            (4, "unknown index kind in snapshot directory"),
        ] {
            let good = snapshot_of_sections(
                1,
                10,
                vec![
                    (SECTION_ROWS, 0, IndexKind::Bytes, Vec::new()),
                    (
                        SECTION_INDEX_KEYED,
                        7,
                        IndexKind::Numeric,
                        vec![(entry.clone(), vec![4])],
                    ),
                ],
            );
            let path = dir.path().join(format!("kind {code}"));
            std::fs::write(&path, &good).unwrap();
            let snap = Snapshot::open(&path, 1).unwrap();
            assert_eq!(snap.index_columns(), [(7, IndexKind::Numeric)]);
            // The directory: 2 sections, rows (kind 1, column 0, no blocks), then kind 5,
            // column 7, index kind 3.
            let foot = &good[good.len() - SNAPSHOT_FOOTER_LEN..];
            let dir_offset = u64::from_le_bytes(foot[..8].try_into().unwrap()) as usize;
            assert_eq!(&good[dir_offset..dir_offset + 7], &[2, 1, 0, 0, 5, 7, 3]);
            let mut bad = good.clone();
            bad[dir_offset + 6] = code;
            // The checksums made to match the changed directory.
            let foot_at = bad.len() - SNAPSHOT_FOOTER_LEN;
            let dir_crc = crc32fast::hash(&bad[dir_offset..foot_at]);
            bad[foot_at + 16..foot_at + 20].copy_from_slice(&dir_crc.to_le_bytes());
            let file_crc = crc32fast::hash(&bad[..foot_at]);
            bad[foot_at + 20..foot_at + 24].copy_from_slice(&file_crc.to_le_bytes());
            std::fs::write(&path, &bad).unwrap();
            assert_corrupt(
                Snapshot::open(&path, 1).map(|_| ()),
                &path,
                dir_offset as u64,
                detail,
            );
        }
    }

    /// Small rows around a row of 65 MiB (incompressible) in an indexed column, and a key
    /// history with a key of 65 MiB (compressible, so that its block is decompressed by
    /// streaming): each large record is a block of its own, between a block of the records
    /// before it and one of those after it, with the right first keys and values, and
    /// everything reads back.
    #[test]
    fn a_record_too_large_for_a_block_gets_a_block_of_its_own() {
        let big_len = (MAX_BLOCK_RAW_LEN + (1 << 20)) as usize;
        let key = |i: usize| format!("r{i:04}").into_bytes();
        let rows: Vec<(Vec<u8>, Row)> = (0..200)
            .map(|i| {
                let v2 = if i == 100 {
                    noise(big_len, 7)
                } else {
                    format!("s{i:04}").into_bytes()
                };
                let row = Row(vec![(1, Some(format!("v{i}").into_bytes())), (2, Some(v2))]);
                (key(i), row)
            })
            .collect();
        let frames = |i: usize| -> FramePositions { vec![(1 + i as u64, 32 + i as u64, vec![])] };
        let mut big_history_key = key(150);
        big_history_key.resize(big_len, b'x');
        let mut history: Vec<(Vec<u8>, FramePositions)> =
            (0..200).map(|i| (key(i), frames(i))).collect();
        history.insert(
            151,
            (big_history_key.clone(), vec![(7, 4096, vec![20, 40])]),
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap");
        let bytes = snapshot_bytes(
            &path,
            1,
            10,
            rows.clone().into_iter().map(Ok),
            &[(2, IndexKind::Bytes)],
            Some(history.clone().into_iter().map(Ok)),
            true,
        )
        .unwrap();
        std::fs::write(&path, bytes).unwrap();
        let snap = Snapshot::open(&path, 1).unwrap();

        // Rows: the 100 before the large one, it alone, the 99 after it.
        let firsts: Vec<&[u8]> = snap.rows.iter().map(|b| snap.first_of(b)).collect();
        assert_eq!(firsts, [key(0), key(100), key(101)]);
        let raw_lens: Vec<u64> = snap.rows.iter().map(|b| b.raw_len).collect();
        assert!(raw_lens[0] < BLOCK_TARGET as u64 && raw_lens[2] < BLOCK_TARGET as u64);
        assert_eq!(
            raw_lens[1],
            row_record(&key(100), &rows[100].1).len() as u64
        );
        assert!(raw_lens[1] > MAX_BLOCK_RAW_LEN);
        // Incompressible: read without streaming.
        assert!(snap.rows[1].raw_len <= snap.rows[1].clen * 64);
        let counts: Vec<usize> = (0..3).map(|i| snap.row_block(i).unwrap().len()).collect();
        assert_eq!(counts, [100, 1, 99]);
        let scanned: Vec<(Vec<u8>, Row)> = (0..3)
            .flat_map(|i| snap.row_block(i).unwrap().as_ref().clone())
            .collect();
        assert!(scanned == rows, "the rows read back differ");
        for (k, r) in [99, 100, 101, 0, 199].map(|i| &rows[i]) {
            assert!(snap.get(k).unwrap().as_ref() == Some(r), "row {k:?}");
        }
        assert_eq!(snap.get(b"r0100a").unwrap(), None);
        assert_eq!(snap.row_count().unwrap(), 200);
        assert_eq!(snap.last_key().unwrap(), Some(key(199).as_slice()));

        // The index: entries sorted by value, the large value in a block of its own.
        let big_value = rows[100].1.get(2).unwrap();
        let mut entries: Vec<(&[u8], Vec<u8>)> = rows
            .iter()
            .map(|(k, r)| (r.get(2).unwrap(), k.clone()))
            .collect();
        entries.sort_unstable();
        let at = entries.iter().position(|e| e.1 == key(100)).unwrap();
        let blocks = snap.index_blocks(2);
        let mut got = Vec::new();
        for i in 0..blocks {
            let (_, first, block) = snap.index_block(2, i).unwrap();
            assert_eq!(first, block[0].0.as_slice());
            got.push(block.len());
        }
        let expected: Vec<usize> = [at, 1, entries.len() - at - 1]
            .into_iter()
            .filter(|n| *n > 0)
            .collect();
        assert_eq!(got, expected);
        assert!(snap.indexes[&2]
            .1
            .iter()
            .any(|b| b.raw_len > MAX_BLOCK_RAW_LEN));
        assert_eq!(
            snap.index_keys(
                2,
                IndexKind::Bytes,
                Bound::Included(big_value),
                Bound::Included(big_value)
            )
            .unwrap(),
            [key(100)]
        );
        let all = snap
            .index_keys(2, IndexKind::Bytes, Bound::Unbounded, Bound::Unbounded)
            .unwrap();
        assert_eq!(all, entries.iter().map(|e| e.1.clone()).collect::<Vec<_>>());

        // The key history: the large key alone in a block, decompressed by streaming.
        let b = snap
            .history
            .as_ref()
            .unwrap()
            .iter()
            .find(|b| b.raw_len > MAX_BLOCK_RAW_LEN)
            .unwrap();
        assert!(b.raw_len > b.clen * 64, "{} from {}", b.raw_len, b.clen);
        assert_eq!(snap.first_of(b), big_history_key.as_slice());
        assert_eq!(
            snap.key_history(&big_history_key).unwrap(),
            Some(vec![(7, 4096, vec![20, 40])])
        );
        for i in [0, 150, 151, 199] {
            assert_eq!(snap.key_history(&key(i)).unwrap(), Some(frames(i)));
        }
        let mut records = Vec::new();
        for i in 0..snap.history_blocks() {
            records.extend(snap.history_block(i).unwrap().2);
        }
        assert!(records == history, "the key history read back differs");
    }

    /// A block longer than 64 MiB must hold one record: of two records it is corruption at
    /// the block, whichever way it is read (rows, index, key history), and of one it reads.
    #[test]
    fn a_large_block_of_two_records_is_corruption() {
        let half = (MAX_BLOCK_RAW_LEN / 2 + 1024) as usize;
        let dir = tempfile::tempdir().unwrap();
        let row = |fill: u8| Row(vec![(1, Some(vec![fill; half]))]);
        let mut two_rows = row_record(b"a", &row(1));
        two_rows.extend(row_record(b"b", &row(2)));
        let index_record = |value: &[u8], key: &[u8]| {
            let mut raw = Vec::new();
            put_bytes(&mut raw, value);
            put_bytes(&mut raw, key);
            raw
        };
        let mut two_entries = index_record(&vec![3; half], b"a");
        two_entries.extend(index_record(&vec![4; half], b"b"));
        let history_key = |c: u8| {
            let mut k = vec![c];
            k.resize(half, 0);
            k
        };
        let frames: FramePositions = vec![(5, 64, vec![])];
        let history_record = |key: &[u8]| {
            let mut raw = Vec::new();
            put_history_record(&mut raw, key, &frames, true);
            raw
        };
        let mut two_histories = history_record(&history_key(b'a'));
        two_histories.extend(history_record(&history_key(b'b')));
        for (name, section, raw) in [
            ("rows", SECTION_ROWS, two_rows),
            ("index", SECTION_INDEX, two_entries),
            ("key history", SECTION_HISTORY_POSITIONS, two_histories),
        ] {
            assert!(raw.len() as u64 > MAX_BLOCK_RAW_LEN);
            let first = match section {
                SECTION_ROWS => b"a".to_vec(),
                SECTION_INDEX => vec![3; half],
                _ => history_key(b'a'),
            };
            let mut sections = vec![(SECTION_ROWS, 0, Vec::new())];
            if section == SECTION_ROWS {
                sections[0].2.push((raw, first));
            } else {
                let col = if section == SECTION_INDEX { 1 } else { 0 };
                sections.push((section, col, vec![(raw, first)]));
            }
            let path = dir.path().join(format!("two {name}"));
            std::fs::write(&path, snapshot_of(sections)).unwrap();
            // The directory and every CRC are fine: loading succeeds.
            let snap = Snapshot::open(&path, 1).unwrap();
            let at = SNAPSHOT_HEADER_LEN as u64;
            let detail = "holds more than one record";
            match section {
                SECTION_ROWS => {
                    assert_corrupt(snap.get(b"a"), &path, at, detail);
                    assert_corrupt(snap.row_block(0), &path, at, detail);
                    assert_corrupt(snap.row_block_raw(0), &path, at, detail);
                }
                SECTION_INDEX => {
                    assert_corrupt(snap.index_block(1, 0), &path, at, detail);
                    let all =
                        snap.index_keys(1, IndexKind::Bytes, Bound::Unbounded, Bound::Unbounded);
                    assert_corrupt(all, &path, at, detail);
                }
                _ => {
                    assert_corrupt(snap.history_block(0), &path, at, detail);
                    let found = snap.key_history(&history_key(b'a'));
                    assert_corrupt(found, &path, at, detail);
                }
            }
        }

        // One record of the same size is a block as it should be.
        let one_row = row_record(b"a", &Row(vec![(1, Some(vec![9; 2 * half]))]));
        let path = dir.path().join("one row");
        std::fs::write(
            &path,
            snapshot_of(vec![(SECTION_ROWS, 0, vec![(one_row, b"a".to_vec())])]),
        )
        .unwrap();
        let snap = Snapshot::open(&path, 1).unwrap();
        assert!(snap.rows[0].raw_len > MAX_BLOCK_RAW_LEN);
        assert_eq!(
            snap.get(b"a").unwrap(),
            Some(Row(vec![(1, Some(vec![9; 2 * half]))]))
        );
    }

    /// A directory that gives a block of small records a raw length of 1 GiB (its CRCs
    /// made to match) is corruption at the block once the block is read: it decompresses
    /// to its real length, which is what gives it away. Beyond 1 GiB the directory is
    /// refused when the snapshot is opened.
    #[test]
    fn a_false_raw_length_in_the_directory_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let write = |raw_len: u64| -> PathBuf {
            let path = dir.path().join(format!("raw {raw_len}"));
            let mut file = SnapshotOut::begin(1, 10);
            let mut w = file.writer(&path, BLOCK_TARGET).unwrap();
            for i in 0..10_000u32 {
                let key = format!("key{i:05}").into_bytes();
                let row = Row(vec![(1, Some(format!("value {i}").into_bytes()))]);
                w.record(0, move |raw| {
                    put_bytes(raw, &key);
                    put_columns(raw, &row.0);
                    key
                })
                .unwrap();
            }
            w.flush().unwrap();
            let mut blocks = std::mem::take(&mut w.blocks);
            assert!(blocks.len() > 1 && blocks[0].raw_len >= BLOCK_TARGET as u64);
            blocks[0].raw_len = raw_len;
            std::fs::write(
                &path,
                file.finish(vec![(SECTION_ROWS, 0, IndexKind::Bytes, blocks)]),
            )
            .unwrap();
            path
        };
        let path = write(MAX_RECORD_BLOCK_RAW_LEN);
        let snap = Snapshot::open(&path, 1).unwrap();
        let at = SNAPSHOT_HEADER_LEN as u64;
        assert_corrupt(snap.get(b"key00000"), &path, at, "block length mismatch");
        assert_corrupt(snap.row_block(0), &path, at, "block length mismatch");
        // The other blocks are read.
        assert_eq!(
            snap.get(b"key09999").unwrap(),
            Some(Row(vec![(1, Some(b"value 9999".to_vec()))]))
        );

        let path = write(MAX_RECORD_BLOCK_RAW_LEN + 1);
        let dir_offset = {
            let bytes = std::fs::read(&path).unwrap();
            let foot = &bytes[bytes.len() - SNAPSHOT_FOOTER_LEN..];
            u64::from_le_bytes(foot[..8].try_into().unwrap())
        };
        assert_corrupt(
            Snapshot::open(&path, 1).map(|_| ()),
            &path,
            dir_offset,
            "snapshot block too large",
        );
    }

    /// A record beyond the largest block of one record is refused with `TooLarge` naming
    /// the snapshot, before anything is compressed.
    #[test]
    fn a_record_beyond_the_largest_block_is_too_large() {
        let path = Path::new("/some/table/snap");
        let mut file = SnapshotOut::begin(1, 10);
        let mut w = file.writer(path, BLOCK_TARGET).unwrap();
        let huge = MAX_RECORD_BLOCK_RAW_LEN as usize + 1;
        let err = w
            .record(0, |raw| {
                // Only the length matters: zeroed pages from the allocator, never touched.
                *raw = vec![0; huge];
                b"key".to_vec()
            })
            .unwrap_err();
        match err {
            Error::TooLarge(m) => {
                assert!(m.contains("/some/table/snap"), "{m}");
                assert!(m.contains(&format!("a record of {huge} bytes")), "{m}");
            }
            e => panic!("{e:?}"),
        }
        assert!(w.blocks.is_empty());
    }
}
