//! Snapshots: the materialised state of one table at one seq, in zstd-compressed blocks of
//! sorted records, with the table's secondary indexes beside the rows and, for each key the
//! table ever had, where its events are in the table's log.

use std::collections::HashMap;
use std::io::Read;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use memmap2::Mmap;

use crate::error::{Error, IoContext, Result};
use crate::format::{
    history_record, history_record_frames, put_bytes, put_columns, put_history_record, put_varint,
    skip_history_frames, DecodeResult, Decoder, FramePositions, HistoryRecords, FORMAT_VERSION,
    MAX_BLOCK_RAW_LEN, SECTION_HISTORY, SECTION_HISTORY_POSITIONS, SECTION_INDEX, SECTION_ROWS,
    SNAPSHOT_END_MAGIC, SNAPSHOT_FOOTER_LEN, SNAPSHOT_HEADER_LEN, SNAPSHOT_MAGIC,
};
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

#[derive(Clone, Debug)]
struct BlockMeta {
    offset: u64,
    clen: u64,
    raw_len: u64,
    crc: u32,
    /// The block's first key (row and history sections) or first value (index sections).
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
/// The decoded `(value, key)` entries of one index block.
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
    indexes: HashMap<ColumnId, Vec<BlockMeta>>,
    /// Where each key's events are in the log up to `seq` (`None`: a snapshot written
    /// before snapshots had this section).
    history: Option<Vec<BlockMeta>>,
    /// The key history section keeps the positions of keys' events in large frames
    /// (section kind 4; kind 3 has none).
    history_positions: bool,
    /// Recently decompressed row blocks, most recent first.
    cache: Mutex<Vec<(usize, Arc<IndexedBlock>)>>,
    /// Indexes this snapshot lacks, rebuilt from its rows on first use.
    rebuilt: Mutex<HashMap<ColumnId, IndexEntries>>,
    /// Where block cache hits and misses are counted, once a store set it.
    counters: OnceLock<Arc<BlockCounters>>,
    /// The number of rows, once counted.
    rows_counted: OnceLock<u64>,
    /// The largest key, once read.
    last_key: OnceLock<Option<Vec<u8>>>,
}

/// Streams records into compressed blocks of one section.
struct BlockWriter<'a> {
    out: &'a mut Vec<u8>,
    hasher: &'a mut crc32fast::Hasher,
    pos: &'a mut u64,
    raw: Vec<u8>,
    first: Option<Vec<u8>>,
    blocks: Vec<BlockMeta>,
    path: &'a Path,
    /// Raw bytes gathered before a block is compressed.
    target: usize,
}

impl BlockWriter<'_> {
    fn record(&mut self, first: &[u8], encode: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
        if self.first.is_none() {
            self.first = Some(first.to_vec());
        }
        encode(&mut self.raw);
        if self.raw.len() as u64 > MAX_BLOCK_RAW_LEN {
            return Err(Error::TooLarge(format!(
                "a snapshot record of {} bytes exceeds the block limit of {MAX_BLOCK_RAW_LEN}",
                self.raw.len()
            )));
        }
        if self.raw.len() >= self.target {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let Some(first) = self.first.take() else {
            return Ok(());
        };
        let compressed = zstd::bulk::compress(&self.raw, ZSTD_LEVEL).at(self.path)?;
        self.out.extend_from_slice(&compressed);
        self.hasher.update(&compressed);
        self.blocks.push(BlockMeta {
            offset: *self.pos,
            clen: compressed.len() as u64,
            raw_len: self.raw.len() as u64,
            crc: crc32fast::hash(&compressed),
            first,
        });
        *self.pos += compressed.len() as u64;
        self.raw.clear();
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
///           index block raw bytes = { varint len + value | varint len + key }*  (sorted by (value, key))
///           history block raw bytes = { key history record }*  (keys strictly increasing,
///                                     see format::put_history_record)
/// dir     = varint nsections | { u8 kind (1 rows, 2 index, 3 history) | varint column (0 for rows and history) |
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
    indexes: &[ColumnId],
    history: Option<impl Iterator<Item = Result<(Vec<u8>, FramePositions)>>>,
    positions: bool,
) -> Result<Vec<u8>> {
    let tmp = path;
    let mut out: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut hasher = crc32fast::Hasher::new();
    let mut pos = 0u64;

    let mut header = Vec::with_capacity(SNAPSHOT_HEADER_LEN);
    header.extend_from_slice(&SNAPSHOT_MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&0u16.to_le_bytes());
    header.extend_from_slice(&table.to_le_bytes());
    header.extend_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&header);
    header.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&header);
    hasher.update(&header);
    pos += header.len() as u64;

    let mut index_entries: Vec<Vec<(Vec<u8>, Vec<u8>)>> = vec![Vec::new(); indexes.len()];
    let mut sections: Vec<(u8, ColumnId, Vec<BlockMeta>)> = Vec::new();
    {
        let mut w = BlockWriter {
            out: &mut out,
            hasher: &mut hasher,
            pos: &mut pos,
            raw: Vec::with_capacity(BLOCK_TARGET + 4096),
            first: None,
            blocks: Vec::new(),
            path: tmp,
            target: BLOCK_TARGET,
        };
        for item in rows {
            let (key, row) = item?;
            for (i, col) in indexes.iter().enumerate() {
                if let Some(v) = row.get(*col) {
                    index_entries[i].push((v.to_vec(), key.clone()));
                }
            }
            w.record(&key, |raw| {
                put_bytes(raw, &key);
                put_columns(raw, &row.0);
            })?;
        }
        w.flush()?;
        sections.push((SECTION_ROWS, 0, std::mem::take(&mut w.blocks)));
        for (i, col) in indexes.iter().enumerate() {
            let entries = &mut index_entries[i];
            entries.sort_unstable();
            for (v, k) in entries.iter() {
                w.record(v, |raw| {
                    put_bytes(raw, v);
                    put_bytes(raw, k);
                })?;
            }
            w.flush()?;
            sections.push((SECTION_INDEX, *col, std::mem::take(&mut w.blocks)));
            entries.clear();
        }
        if let Some(history) = history {
            w.target = HISTORY_BLOCK_TARGET;
            for item in history {
                let (key, frames) = item?;
                w.record(&key, |raw| {
                    put_history_record(raw, &key, &frames, positions)
                })?;
            }
            w.flush()?;
            let kind = if positions {
                SECTION_HISTORY_POSITIONS
            } else {
                SECTION_HISTORY
            };
            sections.push((kind, 0, std::mem::take(&mut w.blocks)));
        }
    }

    let mut dir = Vec::new();
    put_varint(&mut dir, sections.len() as u64);
    for (kind, col, blocks) in &sections {
        dir.push(*kind);
        put_varint(&mut dir, u64::from(*col));
        put_varint(&mut dir, blocks.len() as u64);
        for b in blocks {
            put_varint(&mut dir, b.offset);
            put_varint(&mut dir, b.clen);
            put_varint(&mut dir, b.raw_len);
            dir.extend_from_slice(&b.crc.to_le_bytes());
            put_bytes(&mut dir, &b.first);
        }
    }
    out.extend_from_slice(&dir);
    hasher.update(&dir);
    let mut footer = Vec::with_capacity(SNAPSHOT_FOOTER_LEN);
    footer.extend_from_slice(&pos.to_le_bytes());
    footer.extend_from_slice(&(dir.len() as u64).to_le_bytes());
    footer.extend_from_slice(&crc32fast::hash(&dir).to_le_bytes());
    footer.extend_from_slice(&hasher.finalize().to_le_bytes());
    footer.extend_from_slice(&SNAPSHOT_END_MAGIC);
    out.extend_from_slice(&footer);
    Ok(out)
}

fn decode_dir(buf: &[u8], data_end: u64) -> DecodeResult<Vec<(u8, ColumnId, Vec<BlockMeta>)>> {
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
        ]
        .contains(&kind)
        {
            return Err("unknown snapshot section kind");
        }
        let col = ColumnId::try_from(d.varint()?).map_err(|_| "column id overflows u16")?;
        // Each block entry takes at least 8 bytes.
        let nb = d.count(8)?;
        let mut blocks = Vec::with_capacity(nb);
        for _ in 0..nb {
            let offset = d.varint()?;
            let clen = d.varint()?;
            let raw_len = d.varint()?;
            let crc = d.u32_le()?;
            let first = d.len_bytes()?.to_vec();
            if offset < SNAPSHOT_HEADER_LEN as u64
                || offset.checked_add(clen).is_none_or(|e| e > data_end)
            {
                return Err("snapshot block out of bounds");
            }
            if raw_len > MAX_BLOCK_RAW_LEN {
                return Err("snapshot block too large");
            }
            blocks.push(BlockMeta {
                offset,
                clen,
                raw_len,
                crc,
                first,
            });
        }
        sections.push((kind, col, blocks));
    }
    if !d.is_empty() {
        return Err("trailing bytes in snapshot directory");
    }
    Ok(sections)
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
    /// Opens and verifies a snapshot: header, footer, directory, every block's CRC and the
    /// whole-file checksum. Any mismatch is corruption naming the file and offset.
    pub fn open(path: &Path, table: TableId) -> Result<Snapshot> {
        let map = map_file(path)?;
        Snapshot::from_bytes(path, table, Bytes::Map(map))
    }

    fn from_bytes(path: &Path, table: TableId, map: Bytes) -> Result<Snapshot> {
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
        for (kind, col, blocks) in sections {
            for b in &blocks {
                let bytes = &map[b.offset as usize..(b.offset + b.clen) as usize];
                if crc32fast::hash(bytes) != b.crc {
                    return Err(bad(b.offset, "snapshot block crc mismatch"));
                }
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
            } else if indexes.insert(col, blocks).is_some() {
                return Err(bad(dir_offset, "two sections for one index"));
            }
        }
        let rows = rows.ok_or_else(|| bad(dir_offset, "no row section"))?;
        if crc32fast::hash(&map[..foot_at]) != file_crc {
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
        })
    }

    fn raw_block(&self, b: &BlockMeta) -> Result<Vec<u8>> {
        let bytes = &self.map[b.offset as usize..(b.offset + b.clen) as usize];
        let zerr =
            |e: std::io::Error| Error::corruption(&self.path, b.offset, format!("zstd: {e}"));
        // Reserve the stated length up front only when the compressed size can justify it;
        // otherwise grow with what the decoder actually produces (bounded by raw_len + 1).
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
        Ok(raw)
    }

    pub fn row_blocks(&self) -> usize {
        self.rows.len()
    }

    /// Where row block `i` starts in the file, and the first key the directory gives it.
    pub(crate) fn row_block_start(&self, i: usize) -> (u64, &[u8]) {
        let b = &self.rows[i];
        (b.offset, &b.first)
    }

    /// The columns this snapshot has an index section for, ascending.
    pub(crate) fn index_columns(&self) -> Vec<ColumnId> {
        let mut cols: Vec<ColumnId> = self.indexes.keys().copied().collect();
        cols.sort_unstable();
        cols
    }

    /// The number of blocks in `column`'s index section.
    pub(crate) fn index_blocks(&self, column: ColumnId) -> usize {
        self.indexes.get(&column).map_or(0, Vec::len)
    }

    /// Block `i` of `column`'s index section, decoded: its offset, the first value the
    /// directory gives it, and its `(value, key)` entries.
    pub(crate) fn index_block(
        &self,
        column: ColumnId,
        i: usize,
    ) -> Result<(u64, &[u8], IndexBlock)> {
        let b = &self.indexes[&column][i];
        let entries = decode_index_block(&self.raw_block(b)?)
            .map_err(|d| Error::corruption(&self.path, b.offset, d))?;
        Ok((b.offset, &b.first, entries))
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
        Ok((b.offset, &b.first, records))
    }

    /// Where `key`'s events up to this snapshot's seq are in the log (empty: it has none);
    /// `None` when the snapshot has no key history section. One block decompressed.
    pub fn key_history(&self, key: &[u8]) -> Result<Option<FramePositions>> {
        let Some(blocks) = &self.history else {
            return Ok(None);
        };
        let Some(i) = blocks
            .partition_point(|b| b.first.as_slice() <= key)
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
            .chain(self.indexes.values().flatten())
            .chain(self.history.iter().flatten())
            .fold((0, 0), |(r, c), b| (r + b.raw_len, c + b.clen))
    }

    /// The number of rows, counted once by walking every row block's keys (columns are
    /// skipped undecoded).
    pub fn row_count(&self) -> Result<u64> {
        if let Some(n) = self.rows_counted.get() {
            return Ok(*n);
        }
        let mut n = 0u64;
        for b in &self.rows {
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
            n += counted.map_err(|d| Error::corruption(&self.path, b.offset, d))?;
        }
        let _ = self.rows_counted.set(n);
        Ok(n)
    }

    /// The largest key, read once from the last row block (`None`: no rows).
    pub fn last_key(&self) -> Result<Option<&[u8]>> {
        if let Some(k) = self.last_key.get() {
            return Ok(k.as_deref());
        }
        let last = match self.rows.last() {
            None => None,
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
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(0, (i, block.clone()));
        cache.truncate(CACHED_BLOCKS);
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
        let i = self.rows.partition_point(|b| b.first.as_slice() <= key);
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

    /// Keys whose `column` value lies within `(lo, hi)`, from the index section or, when
    /// this snapshot has none for the column, from an index rebuilt from its rows.
    pub fn index_keys(
        &self,
        column: ColumnId,
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
        let mut out = Vec::new();
        if let Some(blocks) = self.indexes.get(&column) {
            let start = match lo {
                Bound::Unbounded => 0,
                Bound::Included(l) | Bound::Excluded(l) => blocks
                    .partition_point(|b| b.first.as_slice() < l)
                    .saturating_sub(1),
            };
            for b in &blocks[start..] {
                if !below_hi(&b.first) {
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
        let entries = self.rebuilt_index(column)?;
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

    fn rebuilt_index(&self, column: ColumnId) -> Result<IndexEntries> {
        if let Some(e) = self
            .rebuilt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&column)
        {
            return Ok(e.clone());
        }
        let mut entries = Vec::new();
        for i in 0..self.rows.len() {
            for (k, row) in self.row_block(i)?.iter() {
                if let Some(v) = row.get(column) {
                    entries.push((v.to_vec(), k.clone()));
                }
            }
        }
        entries.sort_unstable();
        let entries = Arc::new(entries);
        self.rebuilt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(column, entries.clone());
        Ok(entries)
    }
}

/// Decodes a whole snapshot image held in memory, for the fuzzer: verifies it like
/// [`Snapshot::open`] does, then decodes every block. Returns the records decoded.
pub fn check_snapshot_bytes(bytes: &[u8]) -> Result<usize> {
    let table = match bytes.get(12..20) {
        Some(t) => u64::from_le_bytes(t.try_into().unwrap_or([0; 8])),
        None => 0,
    };
    let snap = Snapshot::from_bytes(Path::new("<memory>"), table, Bytes::Owned(bytes.to_vec()))?;
    let mut n = 0;
    for i in 0..snap.row_blocks() {
        n += snap.row_block(i)?.len();
    }
    let cols: Vec<ColumnId> = snap.indexes.keys().copied().collect();
    for c in cols {
        n += snap
            .index_keys(c, Bound::Unbounded, Bound::Unbounded)?
            .len();
    }
    for i in 0..snap.history_blocks() {
        n += snap.history_block(i)?.2.len();
    }
    Ok(n)
}

/// Decodes arbitrary bytes as a raw (decompressed) row block and as an index block, for the
/// fuzzer: block contents are only reached after their CRC passed, so random snapshot files
/// never get this far. Returns the records decoded.
pub fn check_snapshot_block(raw: &[u8]) -> usize {
    decode_row_block(raw).map_or(0, |r| r.len())
        + decode_index_block(raw).map_or(0, |r| r.len())
        + decode_history_block(raw, false).map_or(0, |r| r.len())
        + decode_history_block(raw, true).map_or(0, |r| r.len())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
