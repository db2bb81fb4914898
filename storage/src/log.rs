//! Segmented append-only log files: naming, mapping, appending with rollover, and the
//! recovery of a table log's tail. The journal uses the same segments (see `journal.rs`).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{Mmap, MmapOptions};

use crate::config::{Config, Durability, RecoveryMode};
use crate::error::{Error, IoContext, Result};
use crate::fileops::{relative, replace_ops, truncate_ops, FileOp};
use crate::format::{
    peek_group_seq, read_frame, FrameRead, SegmentHeader, KIND_JOURNAL, SEGMENT_HEADER_LEN,
};
use crate::types::{Seq, TableId};

/// A segment's file name: its first seq, zero-padded so names sort like seqs.
pub(crate) fn segment_file_name(first_seq: Seq) -> String {
    format!("{first_seq:020}.log")
}

/// The first seq a segment's file name gives (as [`segment_file_name`] makes it), if it is
/// one.
fn segment_seq_of(name: &str) -> Option<Seq> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The segments in `dir`, sorted by first seq. A missing directory has none.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(Seq, PathBuf)>> {
    let mut segs = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(segs),
        Err(e) => return Err(e).at(dir),
    };
    for entry in entries {
        let entry = entry.at(dir)?;
        if let Some(seq) = entry.file_name().to_str().and_then(segment_seq_of) {
            segs.push((seq, entry.path()));
        }
    }
    segs.sort();
    Ok(segs)
}

/// Maps a whole file read-only.
pub(crate) fn map_file(path: &Path) -> Result<Mmap> {
    let file = File::open(path).at(path)?;
    // SAFETY: DriftDB files are append-only or immutable once renamed into place. A mapped
    // log is only read up to frames the journal has committed, which are never truncated;
    // an unlinked file stays mapped until the map is dropped.
    unsafe { MmapOptions::new().map(&file) }.at(path)
}

/// One segment of a log, mapped on demand and remapped when it has grown.
pub(crate) struct Segment {
    pub first_seq: Seq,
    pub path: PathBuf,
    map: Option<Arc<Mmap>>,
}

impl Segment {
    pub fn new(first_seq: Seq, path: PathBuf) -> Segment {
        Segment {
            first_seq,
            path,
            map: None,
        }
    }

    /// The bytes mapped so far (mapping the file on first use), header checked.
    pub fn bytes(&mut self, kind: u8, table: TableId) -> Result<Arc<Mmap>> {
        match &self.map {
            Some(m) => Ok(m.clone()),
            None => self.remap(kind, table),
        }
    }

    /// Maps the file again at its current length.
    pub fn remap(&mut self, kind: u8, table: TableId) -> Result<Arc<Mmap>> {
        let map = map_file(&self.path)?;
        let header =
            SegmentHeader::decode(&map).map_err(|d| Error::corruption(&self.path, 0, d))?;
        if header.kind != kind || header.table != table || header.first_seq != self.first_seq {
            return Err(Error::corruption(
                &self.path,
                0,
                "segment header does not match its name and directory",
            ));
        }
        let map = Arc::new(map);
        self.map = Some(map.clone());
        Ok(map)
    }

    /// Remaps if the file is now longer than the map; says whether it did.
    pub fn remap_if_grown(&mut self, kind: u8, table: TableId) -> Result<bool> {
        let len = fs::metadata(&self.path).at(&self.path)?.len();
        let mapped = self.map.as_ref().map_or(0, |m| m.len() as u64);
        if len > mapped {
            self.remap(kind, table)?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    pub fn forget_map(&mut self) {
        self.map = None;
    }
}

/// Encoded frames: `(group_seq, byte range)` in one buffer.
pub(crate) type Frames = Vec<(Seq, std::ops::Range<usize>)>;

/// Where tables' logs end, shared by the stores (processes) that append to one root, so
/// that a store's first append to a table need not read the log's last segment to find its
/// end. Only a position a store had for its own writer, after an append whose groups are in
/// the journal or after recovering the log, is published; a store takes one up as it takes
/// up its own writer's position after another store appended (the file must be at least
/// that long and hold only whole frames of the journal's groups past it), and recovers the
/// log when it does not hold. Called under the caller's append lock.
pub trait TableEnds: Send {
    /// The segment (by its first seq) and the byte length of the table's log, as last
    /// published.
    fn get(&self, table: TableId) -> Option<(Seq, u64)>;
    /// Publishes that the table's log ends at `end` in the segment starting at `segment`.
    fn put(&self, table: TableId, segment: Seq, end: u64);
}

/// Where appends to a log go: its last segment and that segment's length.
pub(crate) struct LogWriter {
    pub path: PathBuf,
    /// `path` relative to the store's root, as file ops name it.
    pub rel: String,
    pub len: u64,
}

impl LogWriter {
    /// The first seq of the segment written to (from its name).
    pub fn segment_seq(&self) -> Option<Seq> {
        segment_seq_of(self.path.file_name()?.to_str()?)
    }

    pub fn at(root: &Path, path: &Path, len: u64) -> LogWriter {
        LogWriter {
            path: path.to_path_buf(),
            rel: relative(root, path),
            len,
        }
    }

    /// Plans a new segment holding only its header, created atomically. A journal
    /// segment's header records `segment_size`, the size its store rolls over at.
    fn create(
        root: &Path,
        (dir, kind, table): (&Path, u8, TableId),
        first_seq: Seq,
        segment_size: u64,
        durable: bool,
        ops: &mut Vec<FileOp>,
    ) -> LogWriter {
        let path = dir.join(segment_file_name(first_seq));
        let header = if kind == KIND_JOURNAL {
            SegmentHeader::journal(first_seq, segment_size)
        } else {
            SegmentHeader {
                kind,
                table,
                first_seq,
            }
        }
        .encode();
        let w = LogWriter::at(root, &path, SEGMENT_HEADER_LEN as u64);
        replace_ops(&w.rel, header.to_vec(), durable, ops);
        w
    }
}

/// Plans the appending of frames (each `(group_seq, byte range in buf)`, contiguous) to a
/// log, rolling over to a new segment when the current one has reached the configured
/// size. A full segment is synced before the next is created, so only the last segment can
/// ever have a torn tail; with `sync_last`, the segment the frames end in is synced too
/// (even when there are no frames) when the store is durable. `writer` moves to where the
/// frames end. A write of the whole of `buf` takes it without copying.
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan_frames(
    root: &Path,
    writer: &mut Option<LogWriter>,
    log: (&Path, u8, TableId),
    buf: Vec<u8>,
    frames: &[(Seq, std::ops::Range<usize>)],
    config: &Config,
    sync_last: bool,
    ops: &mut Vec<FileOp>,
) {
    let durable = config.durability == Durability::Sync;
    let mut buf = Some(buf);
    let mut write = |w: &mut LogWriter, p: std::ops::Range<usize>, ops: &mut Vec<FileOp>| {
        let whole = buf
            .as_ref()
            .is_some_and(|b| p.start == 0 && p.end == b.len());
        let bytes = if whole {
            buf.take().expect("checked")
        } else {
            buf.as_ref().expect("a whole-buffer write is the only one")[p.clone()].to_vec()
        };
        ops.push(FileOp::Write {
            path: w.rel.clone(),
            offset: w.len,
            bytes,
        });
        w.len += p.len() as u64;
    };
    let mut pending: Option<std::ops::Range<usize>> = None;
    for (seq, range) in frames {
        let pending_len = pending.as_ref().map_or(0, |p| p.len()) as u64;
        let full = match writer {
            None => true,
            Some(w) => {
                w.len + pending_len >= config.segment_size
                    && w.len + pending_len > SEGMENT_HEADER_LEN as u64
            }
        };
        if full {
            if let (Some(w), Some(p)) = (writer.as_mut(), pending.take()) {
                write(w, p, ops);
                if durable {
                    ops.push(FileOp::Sync {
                        path: w.rel.clone(),
                    });
                }
            }
            *writer = Some(LogWriter::create(
                root,
                log,
                *seq,
                config.segment_size,
                durable,
                ops,
            ));
        }
        pending = Some(match pending {
            Some(p) => p.start..range.end,
            None => range.clone(),
        });
    }
    if let Some(w) = writer.as_mut() {
        if let Some(p) = pending {
            write(w, p, ops);
        }
        if durable && sync_last {
            ops.push(FileOp::Sync {
                path: w.rel.clone(),
            });
        }
    }
}

/// What recovery found at the end of a table log.
pub(crate) struct Recovered {
    pub writer: Option<LogWriter>,
    /// The group seq of the last frame kept in the last segment.
    pub last_group: Option<Seq>,
    /// The cuts to make: segments to remove, the tail to truncate.
    pub ops: Vec<FileOp>,
}

/// Plans bringing a table log back to its last whole frame whose group is in the journal
/// (`group_seq <= last_seq`): removes segments that start after it, cuts frames after it,
/// and cuts a torn tail (or reports it, under [`RecoveryMode::Strict`]). Damage before the
/// tail is [`Error::Corruption`].
pub(crate) fn recover_table_log(
    root: &Path,
    dir: &Path,
    table: TableId,
    last_seq: Seq,
    mode: RecoveryMode,
    durable: bool,
) -> Result<Recovered> {
    let mut ops = Vec::new();
    let mut segs = list_segments(dir)?;
    while let Some((first, path)) = segs.last() {
        if *first <= last_seq {
            break;
        }
        ops.push(FileOp::Remove {
            path: relative(root, path),
        });
        if durable {
            ops.push(FileOp::SyncDir {
                path: relative(root, dir),
            });
        }
        segs.pop();
    }
    let Some((first, path)) = segs.last().cloned() else {
        return Ok(Recovered {
            writer: None,
            last_group: None,
            ops,
        });
    };
    let bytes = fs::read(&path).at(&path)?;
    let header = SegmentHeader::decode(&bytes).map_err(|d| Error::corruption(&path, 0, d))?;
    if header.kind != crate::format::KIND_TABLE
        || header.table != table
        || header.first_seq != first
    {
        return Err(Error::corruption(
            &path,
            0,
            "segment header does not match its name",
        ));
    }
    let mut pos = SEGMENT_HEADER_LEN;
    let mut last_group = None;
    let cut = loop {
        match read_frame(&bytes, pos) {
            FrameRead::End => break None,
            FrameRead::Frame { payload, next } => {
                let g =
                    peek_group_seq(payload).map_err(|d| Error::corruption(&path, pos as u64, d))?;
                if g > last_seq {
                    break Some(pos);
                }
                last_group = Some(g);
                pos = next;
            }
            FrameRead::Torn(detail) => match mode {
                RecoveryMode::TolerateTornTail => break Some(pos),
                RecoveryMode::Strict => {
                    return Err(Error::corruption(
                        &path,
                        pos as u64,
                        format!("torn tail: {detail}"),
                    ))
                }
            },
            FrameRead::Bad(detail) => return Err(Error::corruption(&path, pos as u64, detail)),
        }
    };
    let len = match cut {
        Some(at) => {
            truncate_ops(relative(root, &path), at as u64, durable, &mut ops);
            at as u64
        }
        None => bytes.len() as u64,
    };
    Ok(Recovered {
        writer: Some(LogWriter::at(root, &path, len)),
        last_group,
        ops,
    })
}
