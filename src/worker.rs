//! DriftDB's background worker. It records the fate of every DriftDB transaction group
//! in DriftDB's own files, so that Postgres may truncate its commit log without making
//! history unreadable, and it takes snapshots by policy (`driftdb.snapshot_events`,
//! `driftdb.snapshot_bytes`), so that a cold reader loads a snapshot plus a short tail.
//!
//! Once a second (or when woken) it takes the oldest transaction still running; every
//! transaction with an older xid has ended, and the group it appended (at `PRE_COMMIT`) is
//! in the journal. The worker asks the commit log how each of those groups ended and
//! records the aborted ones under a new settled mark (`Store::settle`, WAL-logged like every
//! change to DriftDB's files). Readers then answer for xids below the mark from the record.
//!
//! Then it extends the ledger (`ledger::worker_round`) over every decided group, so that
//! `drift_digest` has little left to do.
//!
//! Until a group is settled its xid must stay in the commit log. The worker holds the xmin
//! horizon of every database at its settled mark (its own `xmin`, with
//! `PROC_AFFECTS_ALL_HORIZONS` as a walsender with hot_standby_feedback has), so VACUUM
//! cannot freeze, and the commit log cannot be truncated, past a group not yet settled.

use crate::engine;
use crate::shmem;
use driftdb_storage::{Fate, Fates};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::lwlock::PgLwLock;
use pgrx::pg_shmem_init;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_secs(1);
/// The longest a table whose snapshots fail waits for its next attempt; the wait doubles
/// from 2 s with each failure in a row.
const BACKOFF_MAX: Duration = Duration::from_secs(3600);

thread_local! {
    /// Tables whose policy snapshot failed: failures in a row, and when to try again.
    static BACKOFF: std::cell::RefCell<std::collections::HashMap<u64, (u32, Instant)>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

static SNAPSHOT_EVENTS: GucSetting<i32> = GucSetting::<i32>::new(100_000);
static SNAPSHOT_BYTES: GucSetting<i32> = GucSetting::<i32>::new(64 * 1024);

/// What the worker reports about itself.
#[derive(Clone, Copy, Default)]
pub struct WorkerState {
    pub pid: i32,
    /// When it last woke (microseconds, Postgres' epoch).
    pub beat: i64,
    /// When it last took a snapshot (0: not since the server started).
    pub last_snapshot_at: i64,
    /// Tables whose last policy snapshot failed (the worker retries them with backoff).
    pub tables_failing_snapshot: u32,
}

// SAFETY: plain old data, no pointers; lives in shared memory guarded by its LWLock.
unsafe impl PGRXSharedMemory for WorkerState {}

// SAFETY: the name is unique to DriftDB.
pub static WORKER: PgLwLock<WorkerState> = unsafe { PgLwLock::new(c"driftdb_worker") };

/// Whether the worker is running and awake: its process exists and it woke within the
/// last ten intervals.
pub fn alive() -> bool {
    let w = *WORKER.share();
    if w.pid == 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists; reads the clock.
    let (exists, now) = unsafe { (libc::kill(w.pid, 0) == 0, pg_sys::GetCurrentTimestamp()) };
    exists && now - w.beat < 10 * INTERVAL.as_micros() as i64
}

/// Registers the worker and its settings; only valid while preloading (checked by the
/// caller).
pub fn init() {
    GucRegistry::define_int_guc(
        c"driftdb.snapshot_events",
        c"Events after a table's newest snapshot at which the worker takes a new one.",
        c"0 turns the event policy off.",
        &SNAPSHOT_EVENTS,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"driftdb.snapshot_bytes",
        c"Log bytes after a table's newest snapshot at which the worker takes a new one.",
        c"0 turns the byte policy off.",
        &SNAPSHOT_BYTES,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_KB,
    );
    pg_shmem_init!(WORKER);
    BackgroundWorkerBuilder::new("driftdb worker")
        .set_type("driftdb fates")
        .set_function("driftdb_fates_worker_main")
        .set_library("driftdb")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

/// Fates straight from the commit log, for transactions known to have ended: one that did
/// not commit aborted (a transaction cut off by a crash is never marked aborted).
struct EndedFates;

impl Fates for EndedFates {
    fn fate(&self, full: u64) -> Fate {
        let xid = pg_sys::TransactionId::from(full as u32);
        // SAFETY: a commit-log lookup of an xid that is still held in it (the worker holds
        // the horizon at the settled mark, and `full` is at or above it).
        if unsafe { pg_sys::TransactionIdDidCommit(xid) } {
            Fate::Committed
        } else {
            Fate::Aborted
        }
    }
}

/// The full xid of `xid`, a recent xid at or before the next one to be assigned.
fn full_xid(xid: pg_sys::TransactionId, next: pg_sys::FullTransactionId) -> u64 {
    let next32 = next.value as u32;
    let epoch = next.value >> 32;
    let x = xid.into_inner();
    let epoch = if x > next32 { epoch - 1 } else { epoch };
    (epoch << 32) | u64::from(x)
}

/// Makes this process's xmin count for the horizons of every database, not just its own.
fn affect_all_horizons() {
    // SAFETY: the flag is changed as Postgres changes it for a walsender: under
    // ProcArrayLock, in MyProc and in ProcGlobal's dense copy.
    unsafe {
        let lock = crate::pg::compat::proc_array_lock();
        pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        (*pg_sys::MyProc).statusFlags |= pg_sys::PROC_AFFECTS_ALL_HORIZONS as u8;
        let off = (*pg_sys::MyProc).pgxactoff as usize;
        *(*pg_sys::ProcGlobal).statusFlags.add(off) = (*pg_sys::MyProc).statusFlags;
        pg_sys::LWLockRelease(lock);
    }
}

/// The mark this process holds the horizon at (0: none yet). It only moves forward: a
/// VACUUM that computed its horizon from a later mark may already have frozen up to it.
static HELD: AtomicU64 = AtomicU64::new(0);

/// Holds the horizon at `full`, or where it is when that is later.
fn hold_horizon(full: u64) {
    let held = HELD.fetch_max(full, Ordering::Relaxed).max(full);
    // SAFETY: a 32-bit store of this process's own xmin, which horizon computations read
    // without a lock; the worker runs no transaction that would reset it.
    unsafe { (*pg_sys::MyProc).xmin = pg_sys::TransactionId::from(held as u32) };
}

/// Holds the horizon at the settled mark on disk, before anything else.
fn hold_settled() {
    match engine::try_with_store(|s| s.settled()) {
        Ok(settled) if settled.below > 0 => hold_horizon(settled.below),
        Ok(_) => {}
        Err(e) => pgrx::warning!("driftdb: could not read the settled transaction fates: {e}"),
    }
}

fn settle_once() {
    // SAFETY: plain reads of the proc array and the xid counter.
    let (oldest, next) = unsafe {
        (
            pg_sys::GetOldestActiveTransactionId(),
            pg_sys::ReadNextFullTransactionId(),
        )
    };
    let below = full_xid(oldest, next);
    // The mark on disk only moves when a group was settled: a round with nothing to settle
    // releases the horizon to `below` without writing, so the process keeps its own mark.
    match engine::try_with_store(|s| s.settle(below, &EndedFates)) {
        Ok(settled) => {
            // Backends reread the record before they can need it: before the horizon
            // moves past what was just settled.
            if settled > 0 {
                shmem::fates_changed();
            }
            hold_horizon(below)
        }
        Err(e) => pgrx::warning!("driftdb: could not record transaction fates: {e}"),
    }
}

/// Takes a snapshot of every table whose events or log bytes since its newest snapshot
/// reached the policy's thresholds.
fn snapshot_by_policy() {
    let events = SNAPSHOT_EVENTS.get().max(0) as u64;
    let bytes = SNAPSHOT_BYTES.get().max(0) as u64 * 1024;
    if events == 0 && bytes == 0 {
        return;
    }
    let ids = match engine::try_with_store(|s| s.table_ids()) {
        Ok(ids) => ids,
        Err(e) => {
            pgrx::warning!("driftdb: could not list tables for snapshots: {e}");
            return;
        }
    };
    let now = Instant::now();
    // Tables dropped since they failed are forgotten.
    BACKOFF.with(|b| b.borrow_mut().retain(|id, _| ids.contains(id)));
    for id in ids {
        if BACKOFF.with(|b| b.borrow().get(&id).is_some_and(|(_, next)| now < *next)) {
            continue;
        }
        // Reading what the table holds since its snapshot reads its log: a damaged table
        // fails here, and counts as a failed snapshot.
        let due = engine::try_with_store(|s| s.since_snapshot(id))
            .map(|(e, b)| (events > 0 && e >= events) || (bytes > 0 && b >= bytes));
        let done = match due {
            Ok(false) => {
                BACKOFF.with(|b| b.borrow_mut().remove(&id));
                continue;
            }
            Ok(true) => {
                // Every group of the table at or below this seq is decided.
                let upto = shmem::stable_seq_for(id);
                engine::try_with_store(|s| {
                    engine::refresh_settled(s)?;
                    let _lock = shmem::SNAPSHOTS.exclusive();
                    s.snapshot(id, upto, &engine::LatestFates)
                })
            }
            Err(e) => Err(e),
        };
        match done {
            Ok(_) => {
                BACKOFF.with(|b| b.borrow_mut().remove(&id));
                // SAFETY: reads the clock.
                WORKER.exclusive().last_snapshot_at = unsafe { pg_sys::GetCurrentTimestamp() }
            }
            // Dropped meanwhile, or a group still deciding: the next round sees.
            Err(
                driftdb_storage::Error::NoSuchTable(_) | driftdb_storage::Error::Undecided { .. },
            ) => {}
            Err(e) => {
                // Tried again after 2 s, 4 s, 8 s, ... at most an hour: a table whose
                // snapshot cannot be taken costs neither a loop nor a flooded log.
                let (failures, wait) = BACKOFF.with(|b| {
                    let mut b = b.borrow_mut();
                    let entry = b.entry(id).or_insert((0, now));
                    entry.0 += 1;
                    let wait = Duration::from_secs(1u64 << entry.0.min(12)).min(BACKOFF_MAX);
                    entry.1 = Instant::now() + wait;
                    (entry.0, wait)
                });
                pgrx::warning!(
                    "driftdb: could not snapshot table {id} ({failures} failures in a row; \
                     next attempt in {} s): {e}",
                    wait.as_secs()
                )
            }
        }
    }
    WORKER.exclusive().tables_failing_snapshot = BACKOFF.with(|b| b.borrow().len() as u32);
}

/// Syncs the journal's index files, which appends write without syncing, so that the next
/// recovering open (after a crash, a restart) rewrites only what came after.
fn sync_index() {
    if let Err(e) = engine::try_with_store(|s| s.sync_index()) {
        pgrx::warning!("driftdb: could not sync the journal's index: {e}");
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn driftdb_fates_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // A database connection puts the worker in the proc array, where its xmin counts.
    BackgroundWorker::connect_worker_to_spi(Some("postgres"), None);
    affect_all_horizons();
    hold_settled();
    {
        let mut w = WORKER.exclusive();
        // SAFETY: this process's pid, set by the postmaster; reads the clock.
        unsafe {
            w.pid = pg_sys::MyProcPid;
            w.beat = pg_sys::GetCurrentTimestamp();
        }
    }
    while BackgroundWorker::wait_latch(Some(INTERVAL)) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: rereads the configuration files, as any process does on SIGHUP.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        // SAFETY: reads the clock and the server's recovery state.
        let (now, in_recovery) =
            unsafe { (pg_sys::GetCurrentTimestamp(), pg_sys::RecoveryInProgress()) };
        WORKER.exclusive().beat = now;
        if in_recovery {
            continue;
        }
        settle_once();
        sync_index();
        snapshot_by_policy();
        // Last: it waits for a verification of a digest holding the ledger lock.
        crate::ledger::worker_round();
    }
    // SAFETY: a plain read of the server's recovery state.
    if !unsafe { pg_sys::RecoveryInProgress() } {
        // A clean shutdown leaves nothing of the journal's index for the next start to redo.
        sync_index();
    }
    // Exit code 1: the postmaster starts the worker again (after 5 s) unless the server is
    // shutting down; a worker that exits with 0 is never restarted.
    // SAFETY: ends this process the way Postgres processes end.
    unsafe { pg_sys::proc_exit(1) };
}
