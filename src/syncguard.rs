//! DriftDB's sync worker: commits that sync nothing, made durable before any checkpoint
//! can pass them (#19, "Commits without syncs" in `docs/design.md`).
//!
//! A commit WAL-logs its frames and writes them to the page cache; Postgres' commit record
//! flushes the WAL (group commit across backends), and no backend syncs DriftDB's files.
//! Crash recovery replays the records from the last checkpoint's redo point, so what a
//! crash can lose is only frames whose records lie before that point: this worker makes
//! sure that every checkpoint finds them durable before it completes.
//!
//! It holds `DELAY_CHKPT_START` in its own transaction: a checkpoint, once it has set its
//! redo point, waits for every process holding that flag in the transaction it saw before
//! it writes anything. The worker polls the redo pointer (a new one means a checkpoint
//! began), and once a second in any case it ends its transaction and begins another,
//! which lets such a checkpoint go: always under the append lock, and after a sync round
//! when anything was appended since the last one (the WAL flushed, every log segment
//! written since synced, where the journal ends recorded in `sync.mark`,
//! [`driftdb_storage::syncmark`]). Appends insert their records under the append lock: a
//! checkpoint the worker lets go set its redo point before the lock was taken (every
//! append before it is synced) or while the worker held it (no append ran since the
//! round), so the frames of every record before its redo point are durable.
//!
//! Frames written without their records flushed can reach the disk before them. After a
//! crash the journal is cut back to the mark before anything reads it (`wal.rs` startup,
//! the first open after a start): frames of groups whose records survived are written
//! again by redo, the others are gone before their xids are handed out again.
//!
//! While the worker is not running (before it starts, after it stops, on a standby) the
//! append lock's `guard` is off and commits sync their files as before. It turns the guard
//! on only after its first round, and off (with a last round, then removing the mark)
//! before it lets go of the checkpoint: no guarded commit is ever left unsynced behind a
//! checkpoint. A failure after the guard is on is a PANIC, as a failed fsync is in
//! Postgres: only recovery can tell what reached the disk.

use crate::engine;
use crate::shmem;
use driftdb_storage::syncmark::{self, SyncRounds};
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::lwlock::PgLwLock;
use pgrx::pg_shmem_init;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use std::time::{Duration, Instant};

/// How often the worker looks at the redo pointer: a checkpoint waits about this long, plus
/// a sync round, for the worker.
const POLL: Duration = Duration::from_millis(10);
/// The longest the worker keeps one transaction: a checkpoint that began before the worker
/// read the redo pointer last, and saw the worker's flag only after, waits this long.
const SWITCH: Duration = Duration::from_secs(1);

/// What the sync worker reports about itself (`drift_server_stats()`).
#[derive(Clone, Copy, Default)]
pub struct GuardState {
    /// Sync rounds since the server started.
    pub rounds: u64,
    /// Files and directories those rounds synced.
    pub files_synced: u64,
}

// SAFETY: plain old data, no pointers; lives in shared memory guarded by its LWLock.
unsafe impl PGRXSharedMemory for GuardState {}

// SAFETY: the name is unique to DriftDB.
pub static GUARD: PgLwLock<GuardState> = unsafe { PgLwLock::new(c"driftdb_sync_worker") };

/// Registers the worker; only valid while preloading (checked by the caller).
pub fn init() {
    pg_shmem_init!(GUARD);
    BackgroundWorkerBuilder::new("driftdb sync worker")
        .set_type("driftdb sync")
        .set_function("driftdb_sync_worker_main")
        .set_library("driftdb")
        .enable_spi_access()
        // A primary's worker: on a standby redo syncs what it writes.
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
}

/// Logs what cutting the journal back to the sync mark took away (nothing: no message).
pub fn report_cut(bytes: u64) {
    if bytes > 0 {
        pgrx::log!(
            "driftdb: cut {bytes} bytes from the journal back to the last sync round's mark: \
             groups whose WAL records the crash lost"
        );
    }
}

/// Whether commits are guarded now.
pub fn active() -> bool {
    shmem::STATE.share().guard
}

/// Begins a transaction holding `DELAY_CHKPT_START`: a checkpoint that sees it waits,
/// before it writes anything, until this transaction ends.
fn arm() {
    // SAFETY: a transaction begun as any background worker begins one; the flag is this
    // process's own, set as Postgres sets it (a plain store to MyProc, read by the
    // checkpointer under ProcArrayLock), and cleared by the transaction's end.
    unsafe {
        pg_sys::StartTransactionCommand();
        (*pg_sys::MyProc).delayChkptFlags |= pg_sys::DELAY_CHKPT_START as i32;
    }
}

/// Ends the transaction `arm` began, which lets a checkpoint waiting for it go.
fn disarm() {
    // SAFETY: ends the transaction `arm` began, in this process.
    unsafe {
        (*pg_sys::MyProc).delayChkptFlags &= !(pg_sys::DELAY_CHKPT_START as i32);
        pg_sys::CommitTransactionCommand();
    }
}

/// Flushes the WAL up to the end of the newest DriftDB record: the records of every append
/// so far (the caller holds the append lock), so that no group the mark keeps can lose its
/// records (and its xid be handed out again).
fn flush_wal() {
    let upto = shmem::RECORDS_END
        .get()
        .load(std::sync::atomic::Ordering::SeqCst);
    if upto > 0 {
        // SAFETY: a flush up to the end of a record this server inserted, outside recovery
        // (a flush of what is flushed already returns at once).
        unsafe { pg_sys::XLogFlush(upto) };
    }
}

/// The worker's sync rounds: what the last one synced, and where the journal ended then.
struct Rounds {
    logs: SyncRounds,
    end: Option<syncmark::SyncMark>,
}

impl Rounds {
    /// A round, under the append lock held by the caller, if anything was appended since
    /// the last one: the WAL flushed (every group the mark keeps has its records durable,
    /// so that its xid is never handed out again), the logs written since synced, the
    /// journal's end recorded.
    fn run(&mut self) -> driftdb_storage::Result<()> {
        let root = engine::root();
        let end = syncmark::journal_end(&root)?;
        if self.end == Some(end) {
            return Ok(());
        }
        flush_wal();
        let files = self.logs.sync_logs(&root)?;
        syncmark::write(&root, end)?;
        self.end = Some(end);
        let mut g = GUARD.exclusive();
        g.rounds += 1;
        g.files_synced += files;
        Ok(())
    }
}

fn panic_on(e: driftdb_storage::Error, what: &str) -> ! {
    ereport!(
        PgLogLevel::PANIC,
        PgSqlErrorCode::ERRCODE_IO_ERROR,
        format!("driftdb: the sync worker could not {what}: {e}"),
        "Commits wrote DriftDB's files without syncing them; recovery replays their WAL."
    );
    unreachable!("PANIC does not return")
}

/// Reads the redo pointer of the newest checkpoint begun.
fn redo_pointer() -> pg_sys::XLogRecPtr {
    // SAFETY: reads XLogCtl's copy under its spinlock.
    unsafe { pg_sys::GetRedoRecPtr() }
}

/// Runs as the worker exits. Its own stop turns the guard off first; an exit that did not
/// (an ERROR ending the worker) leaves commits unsynced that no round will cover: a PANIC,
/// whose crash recovery replays them.
#[pg_guard]
unsafe extern "C-unwind" fn exit_guarded(_code: i32, _arg: pg_sys::Datum) {
    // SAFETY: releases whatever LWLock the failing code held (the append lock among them),
    // as Postgres' own error recovery does, before the append lock is read below.
    unsafe { pg_sys::LWLockReleaseAll() };
    if shmem::STATE.share().guard {
        ereport!(
            PgLogLevel::PANIC,
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "driftdb: the sync worker ended while it guarded commits",
            "Commits wrote DriftDB's files without syncing them; recovery replays their WAL."
        );
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn driftdb_sync_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // No database: transactions only, for their virtual xid.
    BackgroundWorker::connect_worker_to_spi(None, None);
    // The first open after a start recovers the files and settles the mark a crash left
    // (an ERROR here ends the worker, which the postmaster starts again); the guard's own
    // mark comes after.
    engine::with_store(|_| Ok(()));
    let mut rounds = Rounds {
        logs: SyncRounds::default(),
        end: None,
    };
    let mut seen = redo_pointer();
    let started = {
        let mut state = shmem::STATE.exclusive();
        // Every segment synced the first time (this costs one pass at start only).
        match rounds.run() {
            Ok(()) => {
                arm();
                state.guard = true;
                true
            }
            Err(e) => {
                pgrx::warning!("driftdb: the sync worker could not start: {e}");
                false
            }
        }
    };
    if !started {
        // SAFETY: ends this process; the postmaster starts the worker again.
        unsafe { pg_sys::proc_exit(1) };
    }
    // SAFETY: registers a callback Postgres runs as this process exits, with no argument.
    unsafe { pg_sys::before_shmem_exit(Some(exit_guarded), pg_sys::Datum::from(0usize)) };
    let mut switched = Instant::now();
    while BackgroundWorker::wait_latch(Some(POLL)) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: rereads the configuration files, as any process does on SIGHUP.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        // Read before the lock is taken: a checkpoint that set its redo point later is
        // seen at the next poll, or let go by the round below having held the lock.
        let redo = redo_pointer();
        if redo == seen && switched.elapsed() < SWITCH {
            continue;
        }
        // A round, and the lock held until this process holds the flag again in a new
        // transaction: no append runs between what the round synced and the flag a later
        // checkpoint waits for.
        let _state = shmem::STATE.exclusive();
        if let Err(e) = rounds.run() {
            panic_on(e, "sync DriftDB's files before a checkpoint")
        }
        disarm();
        arm();
        seen = redo;
        switched = Instant::now();
    }
    // Stopping: commits sync their own files from now on; a last round for the ones that
    // did not, then the mark goes (no crash can leave anything for it to cut), and only
    // then the flag.
    {
        let mut state = shmem::STATE.exclusive();
        state.guard = false;
        if let Err(e) = rounds.run() {
            panic_on(e, "sync DriftDB's files as it stopped")
        }
        if let Err(e) = syncmark::remove(&engine::root()) {
            panic_on(e, "remove its sync mark as it stopped")
        }
    }
    disarm();
    // SAFETY: ends this process the way Postgres processes end; exit code 1 has the
    // postmaster start the worker again unless the server is shutting down.
    unsafe { pg_sys::proc_exit(1) };
}
