//! The fates worker: records the fate of every DriftDB transaction group in DriftDB's own
//! files, so that Postgres may truncate its commit log without making history unreadable.
//!
//! Once a second (or when woken) it takes the oldest transaction still running; every
//! transaction with an older xid has ended, and the group it appended (at `PRE_COMMIT`) is
//! in the journal. The worker asks the commit log how each of those groups ended and
//! records the aborted ones under a new settled mark (`Store::settle`, WAL-logged like every
//! change to DriftDB's files). Readers then answer for xids below the mark from the record.
//!
//! Until a group is settled its xid must stay in the commit log. The worker holds the xmin
//! horizon of every database at its settled mark (its own `xmin`, with
//! `PROC_AFFECTS_ALL_HORIZONS` as a walsender with hot_standby_feedback has), so VACUUM
//! cannot freeze, and the commit log cannot be truncated, past a group not yet settled.

use crate::engine;
use driftdb_storage::{Fate, Fates};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_secs(1);

/// Registers the worker; only valid while preloading (checked by the caller).
pub fn init() {
    BackgroundWorkerBuilder::new("driftdb fates worker")
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
    // ProcArrayLock (MainLWLockArray[4]), in MyProc and in ProcGlobal's dense copy.
    unsafe {
        let lock = &raw mut (*pg_sys::MainLWLockArray.add(4)).lock;
        pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        (*pg_sys::MyProc).statusFlags |= pg_sys::PROC_AFFECTS_ALL_HORIZONS as u8;
        let off = (*pg_sys::MyProc).pgxactoff as usize;
        *(*pg_sys::ProcGlobal).statusFlags.add(off) = (*pg_sys::MyProc).statusFlags;
        pg_sys::LWLockRelease(lock);
    }
}

fn hold_horizon(full: u64) {
    // SAFETY: a 32-bit store of this process's own xmin, which horizon computations read
    // without a lock; the worker runs no transaction that would reset it.
    unsafe { (*pg_sys::MyProc).xmin = pg_sys::TransactionId::from(full as u32) };
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
    let done = engine::try_with_store(|s| {
        let settled = s.settled()?;
        // Hold what is not settled yet before looking at it.
        if settled.below > 0 {
            hold_horizon(settled.below);
        }
        s.settle(below, &EndedFates)
    });
    match done {
        Ok(_) => hold_horizon(below),
        Err(e) => pgrx::warning!("driftdb: could not record transaction fates: {e}"),
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn driftdb_fates_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // A database connection puts the worker in the proc array, where its xmin counts.
    BackgroundWorker::connect_worker_to_spi(Some("postgres"), None);
    affect_all_horizons();
    while BackgroundWorker::wait_latch(Some(INTERVAL)) {
        // SAFETY: a plain read of the server's recovery state.
        if unsafe { pg_sys::RecoveryInProgress() } {
            continue;
        }
        settle_once();
    }
}
