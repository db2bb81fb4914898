//! DriftDB's WAL resource manager: every change to DriftDB's files is a WAL record first.
//!
//! The engine describes each change to its files as file operations (write these bytes at
//! this offset, truncate, rename, remove, sync; see `driftdb_storage::fileops`) before it
//! makes it. In a backend, [`PgWal`] turns each batch into WAL records of at most
//! [`RECORD_MAX`] bytes, inside a critical section with the checkpoint held off
//! (`DELAY_CHKPT_START`), flushes the WAL up to the last one, and only then lets the engine
//! write and sync the files; the critical section ends after the sync. Redo applies the
//! same operations to the files under `$PGDATA/driftdb` and syncs them before returning, so
//! crash recovery, streaming standbys and point-in-time recovery rebuild DriftDB's files
//! byte for byte. Redo is idempotent: a write overwrites at its offset, a rename whose
//! source is gone and a removal of something missing are skipped.
//!
//! Records carry the transaction groups they made durable; redo publishes them (the
//! high-water seq and the in-flight groups) so that a hot standby's readers see them.

use crate::shmem;
use driftdb_storage::{
    fileops, Applier, Batch, FileOp, GroupMark, IndexMaintainer, Stats, WriteAhead,
};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::ffi::CStr;

/// DriftDB's custom resource manager id (custom ids are 128..=255; 128 is reserved for
/// experiments). Chosen for DriftDB; an extension that registers the same id makes the
/// server refuse to start, with Postgres' own message naming both.
pub const RMGR_ID: u8 = 171;
/// The one record type: a batch of file operations.
const XLOG_DRIFTDB_FILE_OPS: u8 = 0x10;
/// Largest record payload DriftDB writes (Postgres 16 and later refuse records over about
/// 1 GB, 15 cannot replay them; large writes are split across records).
pub const RECORD_MAX: usize = 1 << 20;

static RMGR_NAME: &CStr = c"driftdb";

/// Registers the resource manager; only valid while preloading (checked by the caller).
pub fn init() {
    let rmgr = pg_sys::RmgrData {
        rm_name: RMGR_NAME.as_ptr(),
        rm_redo: Some(redo),
        rm_desc: Some(desc),
        rm_identify: Some(identify),
        rm_startup: Some(startup),
        ..Default::default()
    };
    // Postgres keeps the table entry for the life of the process; the struct is leaked so
    // that its address stays valid whether or not the table copies it.
    let rmgr = Box::leak(Box::new(rmgr));
    // SAFETY: called from _PG_init while shared_preload_libraries is processed, as
    // RegisterCustomRmgr requires; the callbacks are `#[pg_guard]` functions.
    unsafe { pg_sys::RegisterCustomRmgr(RMGR_ID, rmgr) };
}

/// Whether DriftDB's resource manager is registered in this server.
pub fn registered() -> bool {
    // SAFETY: reads Postgres' table entry for our id (GetRmgr is a plain array access).
    unsafe {
        let entry = pg_sys::GetRmgr(RMGR_ID);
        !entry.rm_name.is_null() && CStr::from_ptr(entry.rm_name) == RMGR_NAME
    }
}

/// The write-ahead side of a backend's store: WAL records before the engine touches a
/// file. Between `log` and `done` the backend is in a critical section: a failure to write
/// DriftDB's files there is a PANIC, and recovery replays the records.
pub struct PgWal {
    in_critical: bool,
}

impl PgWal {
    pub fn new() -> PgWal {
        PgWal { in_critical: false }
    }
}

/// Free space needed on the data directory's file system beyond the bytes a batch writes,
/// so that a full disk is an ERROR before the critical section, not a PANIC inside it.
const SPACE_MARGIN: u64 = 16 << 20;

fn check_space(ops: &[FileOp]) -> driftdb_storage::Result<()> {
    let bytes: u64 = ops.iter().map(FileOp::data_len).sum();
    // The same bytes go to DriftDB's files and, first, into WAL records: count them on
    // the file system of each (twice where they are one file system). DriftDB's own
    // directory may not exist yet (then its parent, the data directory, decides).
    let data = crate::engine::data_dir();
    let root = crate::engine::root();
    let files = if root.exists() { root } else { data.clone() };
    let wal = data.join("pg_wal");
    let mut needs: Vec<(std::path::PathBuf, u64, u64)> = Vec::new();
    for path in [files, wal] {
        let dev = device(&path).map_err(|e| driftdb_storage::Error::IoAt {
            path: path.clone(),
            source: e,
        })?;
        match needs.iter_mut().find(|(_, d, _)| *d == dev) {
            Some((_, _, need)) => *need += bytes,
            None => needs.push((path, dev, bytes + SPACE_MARGIN)),
        }
    }
    for (path, _, need) in needs {
        let (free, _) = space(&path).map_err(|e| driftdb_storage::Error::IoAt {
            path: path.clone(),
            source: e,
        })?;
        if free < need {
            return Err(driftdb_storage::Error::IoAt {
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    format!(
                        "{free} bytes free, {need} needed to write {bytes} bytes safely \
                         (DriftDB's files and their WAL records)"
                    ),
                ),
            });
        }
    }
    Ok(())
}

/// The device of the file system holding `path` (following a symlink, as `pg_wal` may
/// be one).
fn device(path: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)?.dev())
}

/// (free bytes for unprivileged writers, total bytes) of the file system holding `path`.
pub fn space(path: &std::path::Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: statvfs fills the struct for a NUL-terminated path; checked for failure.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: initialised by the successful call above.
    let st = unsafe { st.assume_init() };
    let frsize = st.f_frsize;
    Ok((st.f_bavail * frsize, st.f_blocks * frsize))
}

impl WriteAhead for PgWal {
    fn log(&mut self, ops: &[FileOp], groups: &[GroupMark]) -> driftdb_storage::Result<()> {
        check_space(ops)?;
        let records = fileops::encode_batches(ops, groups, RECORD_MAX);
        // SAFETY: the critical section and the checkpoint delay are what Postgres' own
        // WAL-logged changes use (START_CRIT_SECTION, MyProc->delayChkptFlags); MyProc is
        // set in every backend that runs SQL. Each record's data stays alive until its
        // XLogInsert returns.
        unsafe {
            pg_sys::CritSectionCount += 1;
            (*pg_sys::MyProc).delayChkptFlags |= pg_sys::DELAY_CHKPT_START as i32;
            self.in_critical = true;
            let mut last = 0;
            for rec in &records {
                pg_sys::XLogBeginInsert();
                crate::pg::compat::xlog_register_data(rec);
                last = pg_sys::XLogInsert(RMGR_ID, XLOG_DRIFTDB_FILE_OPS);
            }
            // WAL before data: files that the batch syncs are written only once their
            // records are durable. A batch that syncs nothing (a commit the sync worker
            // guards, `syncguard.rs`) is not flushed here: its commit record flushes it,
            // and recovery cuts the journal back to the last sync round's mark, so frames
            // that reached the disk without their records never count.
            if ops.iter().any(FileOp::is_sync) {
                pg_sys::XLogFlush(last);
            }
            shmem::RECORDS_END
                .get()
                .fetch_max(last, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }

    fn done(&mut self) {
        if std::mem::take(&mut self.in_critical) {
            // SAFETY: ends what `log` began, in the same backend.
            unsafe {
                (*pg_sys::MyProc).delayChkptFlags &= !(pg_sys::DELAY_CHKPT_START as i32);
                pg_sys::CritSectionCount -= 1;
            }
        }
    }

    fn failed(&mut self, e: &driftdb_storage::Error) {
        if self.in_critical {
            // The records are in the WAL but the files could not be written: only a
            // restart, whose recovery replays the records, can make them agree.
            ereport!(
                PgLogLevel::PANIC,
                PgSqlErrorCode::ERRCODE_IO_ERROR,
                format!("driftdb: could not write DriftDB files after WAL-logging the change: {e}")
            );
        }
    }
}

thread_local! {
    // The startup process replays records one at a time on one thread.
    static REDO: RefCell<Option<Applier>> = const { RefCell::new(None) };
    // Keeps the journal's index up to date as redo writes the journal (derived data: after
    // a failure, reported once, redo goes on without it and the next recovering open of
    // the store rebuilds what is missing).
    static INDEX: RefCell<Option<IndexMaintainer>> = const { RefCell::new(None) };
    static INDEX_FAILED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` on redo's index maintainer, starting it (a repair of the index files) first.
fn maintain_index(f: impl FnOnce(&mut IndexMaintainer) -> driftdb_storage::Result<()>) {
    if INDEX_FAILED.get() {
        return;
    }
    let result = INDEX.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            let size = driftdb_storage::Config::default().segment_size;
            *cell = Some(IndexMaintainer::start(&crate::engine::root(), size)?);
        }
        f(cell.as_mut().expect("started"))
    });
    if let Err(e) = result {
        INDEX_FAILED.set(true);
        INDEX.with(|cell| *cell.borrow_mut() = None);
        pgrx::warning!("driftdb: redo could not keep the journal's index: {e}");
    }
}

/// The batch a record carries.
///
/// # Safety
/// `record` must be the reader state Postgres passed to a resource manager callback.
unsafe fn batch_of(record: *mut pg_sys::XLogReaderState) -> Result<Batch, String> {
    // SAFETY: per the caller, `record` points at a decoded record; main_data is
    // main_data_len bytes long (XLogRecGetData / XLogRecGetDataLen).
    let (info, data) = unsafe {
        let rec = (*record).record;
        let info = (*rec).header.xl_info & pg_sys::XLR_RMGR_INFO_MASK as u8;
        let len = (*rec).main_data_len as usize;
        let data = if len == 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts((*rec).main_data as *const u8, len)
        };
        (info, data)
    };
    if info != XLOG_DRIFTDB_FILE_OPS {
        return Err(format!("unknown DriftDB WAL record type {info:#x}"));
    }
    Batch::decode(data).map_err(|d| format!("damaged DriftDB WAL record: {d}"))
}

/// Start of recovery: publish what the files already hold (a base backup's copy, or the
/// files a crash left), before redo publishes the groups it replays.
#[pg_guard]
extern "C-unwind" fn startup() {
    // Commits the sync worker guarded may have left frames whose records the crash lost:
    // the journal goes back to where the last sync round left it, and redo writes again
    // every group whose records survived.
    let cut = driftdb_storage::syncmark::settle(&crate::engine::root()).unwrap_or_else(|e| {
        error!("driftdb: could not cut the journal back to its sync mark: {e}")
    });
    crate::syncguard::report_cut(cut);
    let config = driftdb_storage::Config {
        mode: driftdb_storage::OpenMode::Reader,
        ..Default::default()
    };
    let current = driftdb_storage::Store::open(crate::engine::root(), config)
        .and_then(|mut s| s.current_seq())
        .unwrap_or_else(|e| error!("driftdb: could not read DriftDB's files before recovery: {e}"));
    let mut state = shmem::STATE.exclusive();
    state.high_water = state.high_water.max(current);
    state.initialized = true;
    drop(state);
    // Repairs the index files (a crash may have left them behind the journal, or a base
    // backup copied them at another moment than the journal) before redo extends them.
    maintain_index(|_| Ok(()));
}

/// Redo of DriftDB's records: the file operations are applied to the files under
/// `$PGDATA/driftdb` and synced, and the groups they made durable published.
///
/// # Safety
/// Only Postgres calls this, as the resource manager's `rm_redo`, with the decoded record
/// being replayed.
#[pg_guard]
unsafe extern "C-unwind" fn redo(record: *mut pg_sys::XLogReaderState) {
    // SAFETY: Postgres passes the record being replayed.
    let batch = unsafe { batch_of(record) }.unwrap_or_else(|e| error!("driftdb: {e}"));
    let result = REDO.with(|cell| {
        let mut cell = cell.borrow_mut();
        let applier = cell.get_or_insert_with(|| Applier::new(crate::engine::root(), true));
        // Synced before returning: restartpoints do not know DriftDB's files.
        applier.apply(&batch.ops, true, &mut Stats::default())
    });
    if let Err(e) = result {
        error!("driftdb: could not replay a change to DriftDB's files: {e}");
    }
    // A settlement replayed: readers of this standby reread the record.
    let fates = driftdb_storage::FATES_FILE;
    if batch.ops.iter().any(|op| {
        matches!(op, FileOp::Write { path, .. } | FileOp::Truncate { path, .. }
            | FileOp::Rename { to: path, .. } if path == fates)
    }) {
        shmem::fates_changed();
    }
    if !batch.groups.is_empty() {
        // Indexed before the groups are published: a reader that sees them finds them in
        // the index, or reads them from the journal (after the index's end).
        maintain_index(IndexMaintainer::catch_up);
        shmem::publish(&batch.groups, &mut shmem::STATE.exclusive());
    }
}

/// The description of a record, for `pg_waldump` and the like.
///
/// # Safety
/// Only Postgres calls this, as the resource manager's `rm_desc`, with the buffer to append
/// to and a decoded record.
#[pg_guard]
unsafe extern "C-unwind" fn desc(buf: pg_sys::StringInfo, record: *mut pg_sys::XLogReaderState) {
    // SAFETY: Postgres passes the record to describe.
    let text = match unsafe { batch_of(record) } {
        Ok(b) => describe(&b),
        Err(e) => e,
    };
    let text = std::ffi::CString::new(text.replace('\0', " ")).expect("no NUL left");
    // SAFETY: appends a NUL-terminated string to the buffer Postgres passed.
    unsafe { pg_sys::appendStringInfoString(buf, text.as_ptr()) };
}

fn describe(b: &Batch) -> String {
    let mut parts: Vec<String> = b
        .ops
        .iter()
        .map(|op| match op {
            FileOp::Write {
                path,
                offset,
                bytes,
            } => format!("write {path} @{offset} +{}", bytes.len()),
            FileOp::Truncate { path, len } => format!("truncate {path} to {len}"),
            FileOp::Sync { path } => format!("sync {path}"),
            FileOp::SyncDir { path } => format!("syncdir {path}"),
            FileOp::MkDir { path } => format!("mkdir {path}"),
            FileOp::Rename { from, to } => format!("rename {from} {to}"),
            FileOp::Remove { path } => format!("remove {path}"),
        })
        .collect();
    for g in &b.groups {
        parts.push(if g.table == 0 {
            format!("group seqs {}..={} xid {}", g.first_seq, g.last_seq, g.xid)
        } else {
            format!(
                "import group seqs {}..={} xid {} table {}",
                g.first_seq, g.last_seq, g.xid, g.table
            )
        });
    }
    parts.join("; ")
}

#[pg_guard]
extern "C-unwind" fn identify(info: u8) -> *const std::ffi::c_char {
    if info & pg_sys::XLR_RMGR_INFO_MASK as u8 == XLOG_DRIFTDB_FILE_OPS {
        c"FILE_OPS".as_ptr()
    } else {
        std::ptr::null()
    }
}
