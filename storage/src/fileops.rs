//! Every change the store makes to its files, described before it is made.
//!
//! The store never writes, truncates, renames or removes a file directly: it builds a list
//! of [`FileOp`]s, hands it to its [`WriteAhead`] (when it has one) and then applies it with
//! an [`Applier`]. A write-ahead log that records the list can replay it later with the same
//! `Applier` and get the same bytes in the same files: this is how the Postgres layer
//! WAL-logs DriftDB's files (crash recovery, standbys, point-in-time recovery).
//!
//! Applying is idempotent and tolerant of replay over a newer state: a write overwrites at
//! its offset (creating the file and its directory if needed), a rename whose source is
//! gone is skipped, a removal of something missing is a no-op.
//!
//! Encoding of a batch (one WAL record's payload), little-endian:
//!
//! ```text
//! u8 version (1) | varint ngroups | ngroups x (varint first_seq | varint last_seq | varint xid) |
//! varint nops | nops x op
//! op = u8 tag | fields
//!   1 WRITE     path | varint offset | varint len | len bytes
//!   2 TRUNCATE  path | varint len
//!   3 SYNC      path           (fdatasync a file)
//!   4 SYNC_DIR  path           (fsync a directory)
//!   5 MKDIR     path
//!   6 RENAME    path (from) | path (to)
//!   7 REMOVE    path           (a file or a whole directory)
//! path = varint len | UTF-8 bytes, relative to the store's root, no `..`, not absolute
//! ```

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread;

use crate::error::{Error, IoContext, Result};
use crate::format::{put_bytes, put_varint, DecodeResult, Decoder, SEGMENT_HEADER_LEN};
use crate::types::{Committed, Seq, Stats, TableId};

/// Version 2 gives each group its table (0 but for an import's groups); version 1, without
/// it, is still read.
const BATCH_VERSION: u8 = 2;

/// One change to one of the store's files. Paths are relative to the store's root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileOp {
    /// Writes `bytes` at `offset`, creating the file (and its directory) if missing.
    Write {
        path: String,
        offset: u64,
        bytes: Vec<u8>,
    },
    /// Cuts the file to `len` bytes (a missing file is left missing).
    Truncate { path: String, len: u64 },
    /// Makes the file's data durable (fdatasync).
    Sync { path: String },
    /// Makes the directory's entries durable (fsync); "." is the root.
    SyncDir { path: String },
    /// Creates the directory and its parents.
    MkDir { path: String },
    /// Renames a file or directory, replacing `to` (a directory with everything in it);
    /// skipped when `from` is gone.
    Rename { from: String, to: String },
    /// Removes a file or a whole directory; nothing to remove is fine.
    Remove { path: String },
}

impl FileOp {
    /// Whether this op makes something durable (SYNC or SYNC_DIR).
    pub fn is_sync(&self) -> bool {
        matches!(self, FileOp::Sync { .. } | FileOp::SyncDir { .. })
    }

    /// Bytes this op will write to a file.
    pub fn data_len(&self) -> u64 {
        match self {
            FileOp::Write { bytes, .. } => bytes.len() as u64,
            _ => 0,
        }
    }

    fn encoded_len(&self) -> usize {
        let path = |p: &String| p.len() + 10;
        1 + match self {
            FileOp::Write { path: p, bytes, .. } => path(p) + 20 + bytes.len(),
            FileOp::Truncate { path: p, .. } => path(p) + 10,
            FileOp::Rename { from, to } => path(from) + path(to),
            FileOp::Sync { path: p }
            | FileOp::SyncDir { path: p }
            | FileOp::MkDir { path: p }
            | FileOp::Remove { path: p } => path(p),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            FileOp::Write {
                path,
                offset,
                bytes,
            } => {
                out.push(1);
                put_bytes(out, path.as_bytes());
                put_varint(out, *offset);
                put_bytes(out, bytes);
            }
            FileOp::Truncate { path, len } => {
                out.push(2);
                put_bytes(out, path.as_bytes());
                put_varint(out, *len);
            }
            FileOp::Sync { path } => {
                out.push(3);
                put_bytes(out, path.as_bytes());
            }
            FileOp::SyncDir { path } => {
                out.push(4);
                put_bytes(out, path.as_bytes());
            }
            FileOp::MkDir { path } => {
                out.push(5);
                put_bytes(out, path.as_bytes());
            }
            FileOp::Rename { from, to } => {
                out.push(6);
                put_bytes(out, from.as_bytes());
                put_bytes(out, to.as_bytes());
            }
            FileOp::Remove { path } => {
                out.push(7);
                put_bytes(out, path.as_bytes());
            }
        }
    }

    fn decode(d: &mut Decoder<'_>) -> DecodeResult<FileOp> {
        let tag = d.u8()?;
        let path = |d: &mut Decoder<'_>| -> DecodeResult<String> {
            let b = d.len_bytes()?;
            let s = std::str::from_utf8(b).map_err(|_| "path is not UTF-8")?;
            check_relative(s)?;
            Ok(s.to_string())
        };
        Ok(match tag {
            1 => FileOp::Write {
                path: path(d)?,
                offset: d.varint()?,
                bytes: d.len_bytes()?.to_vec(),
            },
            2 => FileOp::Truncate {
                path: path(d)?,
                len: d.varint()?,
            },
            3 => FileOp::Sync { path: path(d)? },
            4 => FileOp::SyncDir {
                path: match d.len_bytes()? {
                    b"." => ".".to_string(),
                    b => {
                        let s = std::str::from_utf8(b).map_err(|_| "path is not UTF-8")?;
                        check_relative(s)?;
                        s.to_string()
                    }
                },
            },
            5 => FileOp::MkDir { path: path(d)? },
            6 => FileOp::Rename {
                from: path(d)?,
                to: path(d)?,
            },
            7 => FileOp::Remove { path: path(d)? },
            _ => return Err("unknown file op"),
        })
    }
}

/// A path inside the root: relative, made of plain names only.
fn check_relative(path: &str) -> DecodeResult<()> {
    let p = Path::new(path);
    if path.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err("file op path is not a plain relative path");
    }
    Ok(())
}

/// The groups a batch of ops made durable: published to readers once applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupMark {
    pub first_seq: Seq,
    pub last_seq: Seq,
    pub xid: u64,
    /// The one table an imported group writes to, 0 for any other group: readers of other
    /// tables need not wait for an import in progress (batches of version 1 have none).
    pub table: TableId,
}

impl From<&Committed> for GroupMark {
    fn from(c: &Committed) -> GroupMark {
        GroupMark {
            first_seq: c.first_seq,
            last_seq: c.last_seq,
            xid: c.xid,
            table: 0,
        }
    }
}

/// A decoded batch: what one WAL record carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub groups: Vec<GroupMark>,
    pub ops: Vec<FileOp>,
}

impl Batch {
    pub fn decode(buf: &[u8]) -> DecodeResult<Batch> {
        let mut d = Decoder::new(buf);
        let version = d.u8()?;
        if version != 1 && version != BATCH_VERSION {
            return Err("unknown file op batch version");
        }
        let n = d.count(3)?;
        let mut groups = Vec::with_capacity(n);
        for _ in 0..n {
            groups.push(GroupMark {
                first_seq: d.varint()?,
                last_seq: d.varint()?,
                xid: d.varint()?,
                table: if version == 1 { 0 } else { d.varint()? },
            });
        }
        let n = d.count(2)?;
        let mut ops = Vec::with_capacity(n);
        for _ in 0..n {
            ops.push(FileOp::decode(&mut d)?);
        }
        if !d.is_empty() {
            return Err("trailing bytes after file ops");
        }
        Ok(Batch { groups, ops })
    }
}

/// Encodes `ops` as batches of at most about `max_len` bytes each (a write larger than that
/// is split into several writes), in order; `groups` go with the last batch, so a replay
/// publishes them only after every op before them was applied.
pub fn encode_batches(ops: &[FileOp], groups: &[GroupMark], max_len: usize) -> Vec<Vec<u8>> {
    let max_len = max_len.max(256);
    let mut out = Vec::new();
    let mut cur: Vec<FileOp> = Vec::new();
    let mut cur_len = 0usize;
    let flush = |cur: &mut Vec<FileOp>, groups: &[GroupMark], out: &mut Vec<Vec<u8>>| {
        let mut buf = vec![BATCH_VERSION];
        put_varint(&mut buf, groups.len() as u64);
        for g in groups {
            put_varint(&mut buf, g.first_seq);
            put_varint(&mut buf, g.last_seq);
            put_varint(&mut buf, g.xid);
            put_varint(&mut buf, g.table);
        }
        put_varint(&mut buf, cur.len() as u64);
        for op in cur.iter() {
            op.encode(&mut buf);
        }
        out.push(buf);
        cur.clear();
    };
    // Room for the header and the groups in every batch.
    let overhead = 16 + groups.len() * 40;
    let budget = max_len.saturating_sub(overhead).max(128);
    for op in ops {
        if let FileOp::Write {
            path,
            offset,
            bytes,
        } = op
        {
            let room = budget.saturating_sub(path.len() + 32);
            if bytes.len() > room {
                for (i, chunk) in bytes.chunks(room.max(64)).enumerate() {
                    if !cur.is_empty() {
                        flush(&mut cur, &[], &mut out);
                    }
                    cur.push(FileOp::Write {
                        path: path.clone(),
                        offset: offset + (i * room.max(64)) as u64,
                        bytes: chunk.to_vec(),
                    });
                    cur_len = cur[0].encoded_len();
                }
                continue;
            }
        }
        let len = op.encoded_len();
        if !cur.is_empty() && cur_len + len > budget {
            flush(&mut cur, &[], &mut out);
            cur_len = 0;
        }
        cur.push(op.clone());
        cur_len += len;
    }
    flush(&mut cur, groups, &mut out);
    out
}

/// Records a batch of ops before the store applies it.
///
/// `log` is called with every change before any of it is made, and returns once the
/// description is durable: after it returns, the changes must be made or replayed. `done`
/// is called after they were all made. If applying fails in between, `failed` is called
/// instead: a half-applied batch is the write-ahead log's to resolve (the Postgres layer is
/// in a critical section there and PANICs, and its recovery replays the log).
pub trait WriteAhead {
    fn log(&mut self, ops: &[FileOp], groups: &[GroupMark]) -> Result<()>;
    fn done(&mut self);
    /// Applying a logged batch failed with `e` (the store returns the error afterwards).
    fn failed(&mut self, e: &Error) {
        let _ = e;
    }
}

/// An I/O failure to inject, for tests of what the store does when the disk fails (only
/// with the `faults` feature: the release library has no injection). Each counts the ops
/// of its own kind from when it is injected: `n = 0` fails the next one. Several may be
/// pending at once.
#[cfg(feature = "faults")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The `n`th WRITE from now fails with ENOSPC, having written nothing.
    FullDisk { n: usize },
    /// The `n`th WRITE from now writes the first half of its bytes, then fails with ENOSPC
    /// (as a write that ran out of room part of the way leaves the file).
    ShortWrite { n: usize },
    /// The `n`th SYNC or SYNC_DIR from now fails with EIO (after its write went to the page
    /// cache, as a failed fsync leaves it).
    SyncFails { n: usize },
    /// The `n`th TRUNCATE from now fails with EIO, cutting nothing.
    TruncateFails { n: usize },
    /// The `n`th RENAME from now fails with EIO, renaming nothing.
    RenameFails { n: usize },
    /// The `n`th REMOVE from now fails with EIO, removing nothing.
    RemoveFails { n: usize },
}

#[cfg(feature = "faults")]
impl Fault {
    /// The kind of op this fault counts, and how many it lets pass before it fails one.
    fn counts(&self) -> (OpKind, usize) {
        match *self {
            Fault::FullDisk { n } | Fault::ShortWrite { n } => (OpKind::Write, n),
            Fault::SyncFails { n } => (OpKind::Sync, n),
            Fault::TruncateFails { n } => (OpKind::Truncate, n),
            Fault::RenameFails { n } => (OpKind::Rename, n),
            Fault::RemoveFails { n } => (OpKind::Remove, n),
        }
    }

    fn count_down(&mut self) {
        match self {
            Fault::FullDisk { n }
            | Fault::ShortWrite { n }
            | Fault::SyncFails { n }
            | Fault::TruncateFails { n }
            | Fault::RenameFails { n }
            | Fault::RemoveFails { n } => *n -= 1,
        }
    }
}

/// The kinds of op an injected fault counts (a SYNC_DIR counts as a SYNC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    Write,
    Sync,
    Truncate,
    Rename,
    Remove,
}

/// Asks the kernel to start writing `len` bytes of `file` from `offset` to the disk now,
/// so that the sync that follows finds most of them written (a large append writes in
/// chunks on its background thread: the disk works on one while the next is encoded; the
/// call itself takes as long as submitting the I/O, which is why it is made there). Only
/// a hint: durability still comes from the sync, which reports any error of the writeback,
/// so the result is ignored.
fn start_writeback(file: &File, offset: u64, len: usize) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: sync_file_range only reads its integer arguments; the descriptor is
        // open for as long as `file` is borrowed.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Writes `bytes` at `offset`, then starts their writeback when asked. `fail_after`
/// (an injected fault) fails the write as a full disk does, after writing that many of the
/// bytes.
fn write_at(
    file: &File,
    abs: &Path,
    offset: u64,
    bytes: &[u8],
    writeback: bool,
    fail_after: Option<usize>,
) -> Result<()> {
    if let Some(written) = fail_after {
        file.write_all_at(&bytes[..written.min(bytes.len())], offset)
            .at(abs)?;
        return Err(full_disk(abs));
    }
    file.write_all_at(bytes, offset).at(abs)?;
    if writeback {
        start_writeback(file, offset, bytes.len());
    }
    Ok(())
}

/// Writes handed over but not yet reported back, at most: the caller runs this many
/// chunks ahead of the disk's page cache, and no further.
const WRITES_IN_FLIGHT: usize = 2;

/// One WRITE for the background thread.
struct WriteJob {
    file: Arc<File>,
    path: PathBuf,
    offset: u64,
    bytes: Vec<u8>,
    writeback: bool,
    /// An injected fault: fail as a full disk does, after writing this many of the bytes.
    fail_after: Option<usize>,
    /// `bytes` are whole log frames whose CRCs are still to be computed
    /// ([`crate::format::seal_frames`]).
    seal: bool,
}

/// The error of a write that met a full disk (ENOSPC), as an injected fault reports it.
fn full_disk(path: &Path) -> Error {
    Error::IoAt {
        path: path.to_path_buf(),
        source: std::io::Error::from_raw_os_error(28),
    }
}

/// The error of any other op an injected fault fails (EIO).
fn io_error(path: &Path) -> Error {
    Error::IoAt {
        path: path.to_path_buf(),
        source: std::io::Error::from_raw_os_error(5),
    }
}

/// A second thread that makes plain writes, in the order handed over, while the caller
/// goes on (a large append encodes its next chunk of frames while the last one is copied
/// into the page cache: on a fast disk that copy is a third of the append). Used only by
/// stores without a write-ahead log: everything else applies its ops where it runs.
///
/// After a write fails, the thread makes none of the later ones (no write may land past a
/// hole). The caller learns of the failure from its next [`BackgroundWrites::send`] or
/// [`BackgroundWrites::wait`]. Dropping it waits for the thread: no write lands after.
pub(crate) struct BackgroundWrites {
    jobs: Option<mpsc::SyncSender<WriteJob>>,
    done: mpsc::Receiver<(Vec<u8>, Result<()>)>,
    thread: Option<thread::JoinHandle<()>>,
    in_flight: usize,
    /// Buffers of finished writes, emptied, for the caller to fill again.
    spare: Vec<Vec<u8>>,
    failed: Option<Error>,
}

impl BackgroundWrites {
    /// Starts the thread; `None` if the system has none to give (then write in place).
    pub fn start() -> Option<BackgroundWrites> {
        let (jobs, inbox) = mpsc::sync_channel::<WriteJob>(WRITES_IN_FLIGHT);
        let (report, done) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("driftdb-writes".into())
            .spawn(move || {
                let mut failed = false;
                for mut job in inbox {
                    let r = if failed {
                        Ok(())
                    } else {
                        if job.seal {
                            crate::format::seal_frames(&mut job.bytes);
                        }
                        let (file, path) = (&job.file, &job.path);
                        write_at(
                            file,
                            path,
                            job.offset,
                            &job.bytes,
                            job.writeback,
                            job.fail_after,
                        )
                    };
                    failed |= r.is_err();
                    let mut bytes = job.bytes;
                    bytes.clear();
                    if report.send((bytes, r)).is_err() {
                        break;
                    }
                }
            })
            .ok()?;
        Some(BackgroundWrites {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            in_flight: 0,
            spare: Vec::new(),
            failed: None,
        })
    }

    /// Hands a write over, first waiting for room.
    fn send(&mut self, job: WriteJob) -> Result<()> {
        while self.in_flight >= WRITES_IN_FLIGHT {
            self.collect(true)?;
        }
        self.check()?;
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(job).map_err(|_| stopped())?;
        self.in_flight += 1;
        Ok(())
    }

    /// Waits until every write handed over is made; the first error of any of them.
    pub fn wait(&mut self) -> Result<()> {
        while self.in_flight > 0 {
            self.collect(true)?;
        }
        self.check()
    }

    /// An emptied buffer of a finished write, if one is back.
    pub fn spare_buffer(&mut self) -> Option<Vec<u8>> {
        while self.in_flight > 0 && self.collect(false).unwrap_or(false) {}
        self.spare.pop()
    }

    /// Takes one report (waiting for it when `block`); false if none was there.
    fn collect(&mut self, block: bool) -> Result<bool> {
        let (bytes, r) = if block {
            self.done.recv().map_err(|_| stopped())?
        } else {
            match self.done.try_recv() {
                Ok(report) => report,
                Err(mpsc::TryRecvError::Empty) => return Ok(false),
                Err(mpsc::TryRecvError::Disconnected) => return Err(stopped()),
            }
        };
        self.in_flight -= 1;
        self.spare.push(bytes);
        if let Err(e) = r {
            self.failed.get_or_insert(e);
        }
        Ok(true)
    }

    fn check(&mut self) -> Result<()> {
        match &self.failed {
            Some(e) => Err(e.duplicate()),
            None => Ok(()),
        }
    }
}

impl Drop for BackgroundWrites {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            // A panic there was already reported as a write that never came back.
            let _ = t.join();
        }
    }
}

fn stopped() -> Error {
    Error::Broken("the background write thread stopped".into())
}

/// Applies file ops under one root, keeping recently written files open.
pub struct Applier {
    root: PathBuf,
    durable: bool,
    /// Shared with [`BackgroundWrites`]: a file stays open until its writes there are done.
    files: HashMap<String, Arc<File>>,
    /// Injected faults still to fail an op.
    #[cfg(feature = "faults")]
    faults: Vec<Fault>,
}

impl Applier {
    /// `durable = false` skips every sync (tests and benchmarks only).
    pub fn new(root: impl Into<PathBuf>, durable: bool) -> Applier {
        Applier {
            root: root.into(),
            durable,
            files: HashMap::new(),
            #[cfg(feature = "faults")]
            faults: Vec::new(),
        }
    }

    /// Makes a later op fail (tests only; see [`Fault`]), besides any injected before.
    #[cfg(feature = "faults")]
    pub fn inject(&mut self, fault: Fault) {
        self.faults.push(fault);
    }

    /// Counts an op of `kind` against the injected faults: `Some(k)` if one fails it,
    /// after writing the first `k` of its `len` bytes (a WRITE; 0 for any other op). A
    /// fault is gone once its op came (of two due at one op, the first injected decides).
    #[cfg(feature = "faults")]
    fn trips(&mut self, kind: OpKind, len: usize) -> Option<usize> {
        let mut fired = None;
        self.faults.retain_mut(|f| {
            let (k, n) = f.counts();
            if k != kind {
                return true;
            }
            if n > 0 {
                f.count_down();
                return true;
            }
            fired.get_or_insert(*f);
            false
        });
        match fired? {
            Fault::ShortWrite { .. } => Some(len / 2),
            _ => Some(0),
        }
    }

    /// Without the `faults` feature no op is ever failed on purpose.
    #[cfg(not(feature = "faults"))]
    #[inline(always)]
    fn trips(&mut self, _kind: OpKind, _len: usize) -> Option<usize> {
        None
    }

    fn abs(&self, rel: &str) -> Result<PathBuf> {
        check_relative(rel).map_err(|d| Error::InvalidTxn(format!("{d}: {rel:?}")))?;
        Ok(self.root.join(rel))
    }

    fn file(&mut self, rel: &str) -> Result<&File> {
        if !self.files.contains_key(rel) {
            if self.files.len() >= 64 {
                self.files.clear();
            }
            let path = self.abs(rel)?;
            let open = || {
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
            };
            let f = match open() {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if let Some(dir) = path.parent() {
                        fs::create_dir_all(dir).at(dir)?;
                    }
                    open()
                }
                other => other,
            }
            .at(&path)?;
            self.files.insert(rel.to_string(), Arc::new(f));
        }
        Ok(self.files[rel].as_ref())
    }

    /// Forgets open files at or under `rel` (renamed or removed).
    fn forget(&mut self, rel: &str) {
        self.files
            .retain(|k, _| !(k == rel || k.starts_with(&format!("{rel}/"))));
    }

    /// Applies `ops` in order. With `sync_all`, every file and directory touched is made
    /// durable at the end as well (a replay must not leave its writes to a later sync).
    pub fn apply(&mut self, ops: &[FileOp], sync_all: bool, stats: &mut Stats) -> Result<()> {
        let mut touched: Vec<&str> = Vec::new();
        for op in ops {
            match op {
                FileOp::Write {
                    path,
                    offset,
                    bytes,
                } => {
                    if *offset > 0
                        && path.ends_with(TMP_SUFFIX)
                        && !self.files.contains_key(path.as_str())
                        && !self.abs(path)?.exists()
                    {
                        // A later chunk of a file that `replace_ops` builds, whose first
                        // chunk (at offset 0, after removing any old one) was not replayed:
                        // a replay that began inside the batch. Postgres' redo does that
                        // when the checkpoint's redo point fell between the batch's
                        // records, and the checkpoint waited for the batch to be written
                        // and synced whole (`DELAY_CHKPT_START`), renamed away included.
                        // Writing the chunk would make a temp file of this chunk alone,
                        // which the batch's rename would put in place of the good file.
                        continue;
                    }
                    let (abs, file, fail_after) = self.writable(path, bytes.len())?;
                    write_at(&file, &abs, *offset, bytes, false, fail_after)?;
                    stats.bytes_written += bytes.len() as u64;
                    touched.push(path);
                }
                FileOp::Truncate { path, len } => {
                    let abs = self.abs(path)?;
                    if self.trips(OpKind::Truncate, 0).is_some() {
                        return Err(io_error(&abs));
                    }
                    match OpenOptions::new().write(true).open(&abs) {
                        Ok(f) => f.set_len(*len).at(&abs)?,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e).at(&abs),
                    }
                    touched.push(path);
                }
                FileOp::Sync { path } => {
                    if self.durable {
                        self.sync_file(path, stats)?;
                    }
                }
                FileOp::SyncDir { path } => {
                    if self.durable {
                        self.sync_dir(path, stats)?;
                    }
                }
                FileOp::MkDir { path } => {
                    let abs = self.abs(path)?;
                    fs::create_dir_all(&abs).at(&abs)?;
                    touched.push(path);
                }
                FileOp::Rename { from, to } => {
                    let (a, b) = (self.abs(from)?, self.abs(to)?);
                    if self.trips(OpKind::Rename, 0).is_some() {
                        return Err(io_error(&b));
                    }
                    self.forget(from);
                    self.forget(to);
                    if !a.exists() {
                        // Renamed before (a replay over a newer state): nothing to do.
                        continue;
                    }
                    // A directory replaces a directory only when that one is removed
                    // first. Replaying over a newer state can meet this: the records after
                    // this one rebuild everything the removed directory held.
                    if a.is_dir() && b.is_dir() {
                        fs::remove_dir_all(&b).at(&b)?;
                    }
                    fs::rename(&a, &b).at(&b)?;
                    touched.push(to);
                }
                FileOp::Remove { path } => {
                    let abs = self.abs(path)?;
                    if self.trips(OpKind::Remove, 0).is_some() {
                        return Err(io_error(&abs));
                    }
                    self.forget(path);
                    let r = match fs::symlink_metadata(&abs) {
                        Ok(m) if m.is_dir() => fs::remove_dir_all(&abs),
                        Ok(_) => fs::remove_file(&abs),
                        Err(e) => Err(e),
                    };
                    match r {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e).at(&abs),
                    }
                    touched.push(path);
                }
            }
        }
        if sync_all && self.durable {
            touched.sort_unstable();
            touched.dedup();
            for rel in touched {
                let abs = self.abs(rel)?;
                match fs::symlink_metadata(&abs) {
                    Ok(m) if m.is_dir() => self.sync_dir(rel, stats)?,
                    Ok(_) => self.sync_file(rel, stats)?,
                    Err(_) => {}
                }
                if let Some(parent) = Path::new(rel).parent().and_then(Path::to_str) {
                    let parent = if parent.is_empty() { "." } else { parent };
                    if self.root.join(parent).is_dir() {
                        let dir = self.root.join(parent);
                        File::open(&dir).and_then(|d| d.sync_all()).at(&dir)?;
                        stats.fsyncs += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies `ops` in order like [`Applier::apply`] (without `sync_all`), handing each
    /// WRITE to `background` instead of making it here; any other op first waits for the
    /// writes handed over before it (a sync must find them written, a segment be full
    /// before the next is made). Errors of a background write come back from a later
    /// call or from [`BackgroundWrites::wait`]. The WRITEs are an append's table frames
    /// without their CRCs, which the background thread computes before writing them
    /// (a WRITE at offset 0, a new segment's header, is written as it is).
    pub(crate) fn apply_in_background(
        &mut self,
        ops: Vec<FileOp>,
        background: &mut BackgroundWrites,
        stats: &mut Stats,
    ) -> Result<()> {
        for op in ops {
            match op {
                FileOp::Write {
                    path,
                    offset,
                    bytes,
                } => {
                    let (abs, file, fail_after) = self.writable(&path, bytes.len())?;
                    stats.bytes_written += bytes.len() as u64;
                    background.send(WriteJob {
                        file,
                        path: abs,
                        // Past a segment's header: log frames (the header is written
                        // to a new segment's file at 0).
                        seal: offset >= SEGMENT_HEADER_LEN as u64,
                        offset,
                        bytes,
                        writeback: self.durable,
                        fail_after,
                    })?;
                }
                other => {
                    background.wait()?;
                    self.apply(std::slice::from_ref(&other), false, stats)?;
                }
            }
        }
        Ok(())
    }

    /// The file a WRITE of `len` bytes to `rel` goes to, its absolute path, and whether an
    /// injected fault fails the write (as a full disk: [`full_disk`]) after how many bytes.
    fn writable(&mut self, rel: &str, len: usize) -> Result<(PathBuf, Arc<File>, Option<usize>)> {
        let abs = self.abs(rel)?;
        self.file(rel)?;
        let file = Arc::clone(&self.files[rel]);
        Ok((abs, file, self.trips(OpKind::Write, len)))
    }

    fn sync_file(&mut self, rel: &str, stats: &mut Stats) -> Result<()> {
        let abs = self.abs(rel)?;
        if self.trips(OpKind::Sync, 0).is_some() {
            return Err(io_error(&abs));
        }
        if !abs.exists() {
            return Ok(());
        }
        self.file(rel)?.sync_data().at(&abs)?;
        stats.fsyncs += 1;
        Ok(())
    }

    /// Syncs a directory: `rel`, or the root itself for ".".
    fn sync_dir(&mut self, rel: &str, stats: &mut Stats) -> Result<()> {
        let abs = if rel == "." {
            self.root.clone()
        } else {
            self.abs(rel)?
        };
        if self.trips(OpKind::Sync, 0).is_some() {
            return Err(io_error(&abs));
        }
        match File::open(&abs) {
            Ok(d) => d.sync_all().at(&abs)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).at(&abs),
        }
        stats.fsyncs += 1;
        Ok(())
    }
}

/// The path of `abs` relative to `root`, as a file op names it.
pub(crate) fn relative(root: &Path, abs: &Path) -> String {
    abs.strip_prefix(root)
        .unwrap_or(abs)
        .to_string_lossy()
        .into_owned()
}

/// The suffix of the temp file [`replace_ops`] builds a file in. No other file DriftDB
/// writes ends with it.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Ops that replace `path` with `bytes` atomically: temp file, sync, rename, sync the
/// directory.
pub(crate) fn replace_ops(path: &str, bytes: Vec<u8>, durable: bool, ops: &mut Vec<FileOp>) {
    let tmp = format!("{path}{TMP_SUFFIX}");
    ops.push(FileOp::Remove { path: tmp.clone() });
    ops.push(FileOp::Write {
        path: tmp.clone(),
        offset: 0,
        bytes,
    });
    if durable {
        ops.push(FileOp::Sync { path: tmp.clone() });
    }
    ops.push(FileOp::Rename {
        from: tmp,
        to: path.to_string(),
    });
    if durable {
        ops.push(FileOp::SyncDir {
            path: parent_of(path),
        });
    }
}

/// Writes `bytes` as the whole of `path`, atomically and durably, outside the write-ahead
/// log (files that no WAL record describes): `<path>.tmp` written and fdatasynced, renamed
/// to `path`, the directory fsynced.
pub(crate) fn write_file_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = std::ffi::OsString::from(path.as_os_str());
    tmp.push(TMP_SUFFIX);
    let tmp = PathBuf::from(tmp);
    let file = File::create(&tmp).at(&tmp)?;
    file.write_all_at(bytes, 0).at(&tmp)?;
    file.sync_data().at(&tmp)?;
    drop(file);
    fs::rename(&tmp, path).at(path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Ops that cut `path` to `len` bytes, durably when `durable`.
pub(crate) fn truncate_ops(path: String, len: u64, durable: bool, ops: &mut Vec<FileOp>) {
    ops.push(FileOp::Truncate {
        path: path.clone(),
        len,
    });
    if durable {
        ops.push(FileOp::Sync { path });
    }
}

/// The directory holding `path` ("." for the root itself).
pub(crate) fn parent_of(path: &str) -> String {
    match Path::new(path).parent().and_then(Path::to_str) {
        Some("") | None => ".".to_string(),
        Some(p) => p.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<FileOp> {
        vec![
            FileOp::MkDir { path: "t/1".into() },
            FileOp::Write {
                path: "t/1/a.log".into(),
                offset: 0,
                bytes: (0..5000u32).map(|i| i as u8).collect(),
            },
            FileOp::Sync {
                path: "t/1/a.log".into(),
            },
            FileOp::Write {
                path: "t/1/b.new".into(),
                offset: 3,
                bytes: b"xyz".to_vec(),
            },
            FileOp::Rename {
                from: "t/1/b.new".into(),
                to: "t/1/b".into(),
            },
            FileOp::Truncate {
                path: "t/1/a.log".into(),
                len: 4000,
            },
            FileOp::SyncDir { path: "t/1".into() },
            FileOp::SyncDir { path: ".".into() },
            FileOp::Remove {
                path: "t/gone".into(),
            },
        ]
    }

    fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    out.push((relative(root, &p), Vec::new()));
                    stack.push(p);
                } else {
                    out.push((relative(root, &p), fs::read(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    /// WAL written before groups named their table (batch version 1) still replays, its
    /// groups naming none.
    #[test]
    fn a_version_1_batch_reads_with_groups_of_no_table() {
        let mut buf = vec![1u8];
        for v in [1u64, 5, 9, 77, 1] {
            put_varint(&mut buf, v);
        }
        FileOp::MkDir {
            path: "tables/9".into(),
        }
        .encode(&mut buf);
        let b = Batch::decode(&buf).unwrap();
        assert_eq!(
            b.groups,
            [GroupMark {
                first_seq: 5,
                last_seq: 9,
                xid: 77,
                table: 0
            }]
        );
        assert_eq!(
            b.ops,
            [FileOp::MkDir {
                path: "tables/9".into()
            }]
        );
        buf[0] = 3;
        assert!(Batch::decode(&buf).is_err());
    }

    /// Several faults at once, each counting the ops of its own kind from when it was
    /// injected, each failing one op only, as the op would fail on a real disk.
    #[cfg(feature = "faults")]
    #[test]
    fn injected_faults_count_their_own_kind_of_op_each() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("d")).unwrap();
        let mut a = Applier::new(root, true);
        let mut stats = Stats::default();
        for f in [
            Fault::ShortWrite { n: 1 },
            Fault::TruncateFails { n: 0 },
            Fault::RenameFails { n: 1 },
            Fault::RemoveFails { n: 0 },
            Fault::SyncFails { n: 1 },
        ] {
            a.inject(f);
        }
        let mut run = |op: FileOp| match a.apply(&[op], false, &mut stats) {
            Ok(()) => None,
            Err(Error::IoAt { source, .. }) => source.raw_os_error(),
            Err(e) => panic!("{e}"),
        };
        let write = |path: &str, bytes: &[u8]| FileOp::Write {
            path: path.into(),
            offset: 0,
            bytes: bytes.to_vec(),
        };
        let truncate = |len| FileOp::Truncate {
            path: "d/a".into(),
            len,
        };
        let len = |p: &str| fs::metadata(root.join(p)).map(|m| m.len()).ok();

        assert_eq!(run(write("d/a", b"0123456789")), None, "write 0 passes");
        assert_eq!(run(truncate(4)), Some(5), "truncate 0 fails");
        assert_eq!(len("d/a"), Some(10));
        assert_eq!(run(truncate(4)), None, "the truncate fault is spent");
        assert_eq!(len("d/a"), Some(4));
        assert_eq!(
            run(write("d/b", b"abcdefghij")),
            Some(28),
            "write 1 runs short"
        );
        assert_eq!(fs::read(root.join("d/b")).unwrap(), b"abcde");
        assert_eq!(
            run(FileOp::Sync { path: "d/b".into() }),
            None,
            "sync 0 passes"
        );
        assert_eq!(
            run(FileOp::SyncDir { path: "d".into() }),
            Some(5),
            "sync 1 fails"
        );
        let rename = |from: &str, to: &str| FileOp::Rename {
            from: from.into(),
            to: to.into(),
        };
        assert_eq!(run(rename("d/b", "d/c")), None, "rename 0 passes");
        assert_eq!(run(rename("d/c", "d/d")), Some(5), "rename 1 fails");
        assert_eq!((len("d/c"), len("d/d")), (Some(5), None));
        assert_eq!(run(FileOp::Remove { path: "d/c".into() }), Some(5));
        assert_eq!(len("d/c"), Some(5));
        // Every fault is spent: everything goes through.
        assert_eq!(run(FileOp::Remove { path: "d/c".into() }), None);
        assert_eq!(len("d/c"), None);
        assert_eq!(run(write("d/e", b"whole")), None);
        assert_eq!(fs::read(root.join("d/e")).unwrap(), b"whole");
        assert_eq!(run(rename("d/e", "d/f")), None);
        assert_eq!(run(FileOp::SyncDir { path: "d".into() }), None);
        assert_eq!(run(truncate(1)), None);
        assert_eq!(len("d/a"), Some(1));
    }

    #[test]
    fn batches_round_trip_and_replay_gives_the_same_files() {
        let ops = sample();
        let groups = [
            GroupMark {
                first_seq: 5,
                last_seq: 9,
                xid: 77,
                table: 0,
            },
            GroupMark {
                first_seq: 10,
                last_seq: 12,
                xid: 78,
                table: (12 << 32) | 16_384,
            },
        ];
        let batches = encode_batches(&ops, &groups, 1024);
        assert!(batches.len() > 1, "the 5000-byte write is split");
        assert!(batches.iter().all(|b| b.len() <= 1024 + 64));
        let decoded: Vec<Batch> = batches.iter().map(|b| Batch::decode(b).unwrap()).collect();
        // Groups travel with the last batch only.
        assert!(decoded[..decoded.len() - 1]
            .iter()
            .all(|b| b.groups.is_empty()));
        assert_eq!(decoded.last().unwrap().groups, groups);

        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let mut stats = Stats::default();
        Applier::new(a.path(), true)
            .apply(&ops, false, &mut stats)
            .unwrap();
        let mut replay = Applier::new(b.path(), true);
        for d in &decoded {
            replay.apply(&d.ops, true, &mut stats).unwrap();
        }
        assert_eq!(tree(a.path()), tree(b.path()));
        let a_log = fs::read(a.path().join("t/1/a.log")).unwrap();
        assert_eq!(a_log.len(), 4000);
        assert_eq!(&fs::read(a.path().join("t/1/b")).unwrap(), b"\0\0\0xyz");

        // Replaying everything again over the final state changes nothing.
        for d in &decoded {
            replay.apply(&d.ops, true, &mut stats).unwrap();
        }
        assert_eq!(tree(a.path()), tree(b.path()));
    }

    #[test]
    fn a_replay_that_begins_inside_a_replacement_leaves_the_replaced_file_whole() {
        // A file replaced with bytes that take several records (a snapshot), then a
        // replay from each record after the first over the final state: what redo does
        // when a checkpoint's redo point fell inside the batch.
        let old: Vec<u8> = (0..6000u32).map(|i| (i % 251) as u8).collect();
        let new: Vec<u8> = (0..9000u32).map(|i| (i % 241) as u8 ^ 0x5a).collect();
        let mut ops = vec![FileOp::MkDir { path: "t".into() }];
        replace_ops("t/snap", old, true, &mut ops);
        let mut second = Vec::new();
        replace_ops("t/snap", new.clone(), true, &mut second);
        second.push(FileOp::Write {
            path: "t/log".into(),
            offset: 0,
            bytes: b"after".to_vec(),
        });
        let batches = encode_batches(&second, &[], 1024);
        assert!(batches.len() > 3, "the replacement takes several records");
        let decoded: Vec<Batch> = batches.iter().map(|b| Batch::decode(b).unwrap()).collect();
        let mut stats = Stats::default();
        for start in 1..decoded.len() {
            let dir = tempfile::tempdir().unwrap();
            let mut a = Applier::new(dir.path(), true);
            a.apply(&ops, false, &mut stats).unwrap();
            a.apply(&second, false, &mut stats).unwrap();
            let before = tree(dir.path());
            let mut redo = Applier::new(dir.path(), true);
            for d in &decoded[start..] {
                redo.apply(&d.ops, true, &mut stats).unwrap();
            }
            assert_eq!(tree(dir.path()), before, "replay from record {start}");
            assert_eq!(fs::read(dir.path().join("t/snap")).unwrap(), new);
        }
    }

    #[test]
    fn decoding_refuses_paths_outside_the_root_and_garbage() {
        for bad in ["../x", "/etc/passwd", "a/../../b", "", "."] {
            let batch = encode_batches(
                &[FileOp::Remove {
                    path: bad.to_string(),
                }],
                &[],
                4096,
            );
            assert!(Batch::decode(&batch[0]).is_err(), "{bad:?} accepted");
        }
        // The root is a directory to sync, and nothing else ("./x" is no plain name).
        for bad in ["..", "/", "./x", ""] {
            let batch = encode_batches(
                &[FileOp::SyncDir {
                    path: bad.to_string(),
                }],
                &[],
                4096,
            );
            assert!(
                Batch::decode(&batch[0]).is_err(),
                "SyncDir {bad:?} accepted"
            );
        }
        let good = encode_batches(&sample(), &[], 1 << 20).remove(0);
        for cut in 0..good.len() {
            assert!(
                Batch::decode(&good[..cut]).is_err(),
                "prefix {cut} accepted"
            );
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(Batch::decode(&trailing).is_err());
    }
}
