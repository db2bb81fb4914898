//! `drift_health()`: one row of measured facts about DriftDB on this server.

use crate::wal;
use crate::worker;
use pgrx::datum::FromDatum;
use pgrx::lwlock::PgLwLock;
use pgrx::pg_shmem_init;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;

/// Tables (engine ids) whose last verification since the server started found damage
/// (shared memory: the count starts again with the server).
const FAILING_SLOTS: usize = 1024;

#[derive(Clone, Copy)]
pub struct Failing {
    ids: [u64; FAILING_SLOTS],
    /// Failing tables beyond the slots (counted, not named).
    overflow: u32,
}

impl Default for Failing {
    fn default() -> Failing {
        Failing {
            ids: [0; FAILING_SLOTS],
            overflow: 0,
        }
    }
}

// SAFETY: plain old data, no pointers; lives in shared memory guarded by its LWLock.
unsafe impl PGRXSharedMemory for Failing {}

// SAFETY: the name is unique to DriftDB.
static FAILING: PgLwLock<Failing> = unsafe { PgLwLock::new(c"driftdb_verify_failures") };

/// Requests the shared memory; only valid while preloading (checked by the caller).
pub fn init() {
    pg_shmem_init!(FAILING);
}

/// Records the outcome of verifying table `id`.
pub fn record_verification(id: u64, ok: bool) {
    let mut f = FAILING.exclusive();
    let at = f.ids.iter().position(|x| *x == id);
    match (at, ok) {
        (Some(i), true) => f.ids[i] = 0,
        (None, false) => match f.ids.iter().position(|x| *x == 0) {
            Some(i) => f.ids[i] = id,
            None => f.overflow += 1,
        },
        _ => {}
    }
}

fn failing_verify() -> u32 {
    let f = FAILING.share();
    f.ids.iter().filter(|x| **x != 0).count() as u32 + f.overflow
}

/// Bytes of every file under `dir`, recursively (files that vanish meanwhile count 0).
fn tree_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => tree_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The data directory's file system, DriftDB's bytes on disk, whether the WAL resource
/// manager is registered, whether the background worker is alive and when it last took a
/// snapshot, how many tables failed their last verification, and how many tables the
/// worker could not snapshot at its last attempt (it retries them with backoff).
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_restricted)]
#[search_path(pg_catalog, pg_temp)]
fn drift_health() -> TableIterator<
    'static,
    (
        name!(disk_free_bytes, i64),
        name!(disk_total_bytes, i64),
        name!(drift_bytes, i64),
        name!(wal_rmgr_registered, bool),
        name!(worker_alive, bool),
        name!(last_snapshot_at, Option<pgrx::datum::TimestampWithTimeZone>),
        name!(tables_failing_verify, i32),
        name!(tables_failing_snapshot, i32),
    ),
> {
    let data = crate::engine::data_dir();
    let root = crate::engine::root();
    let (free, total) = wal::space(&data).unwrap_or_else(|e| {
        crate::error::DriftError::Internal(format!("statvfs {}: {e}", data.display())).report()
    });
    let w = *worker::WORKER.share();
    let last_snapshot_at = w.last_snapshot_at;
    TableIterator::once((
        free as i64,
        total as i64,
        tree_bytes(&root) as i64,
        wal::registered(),
        worker::alive(),
        (last_snapshot_at != 0).then(|| {
            // SAFETY: a timestamptz datum is its microseconds, passed by value.
            unsafe {
                pgrx::datum::TimestampWithTimeZone::from_datum(
                    pg_sys::Datum::from(last_snapshot_at),
                    false,
                )
            }
            .expect("not null")
        }),
        failing_verify() as i32,
        w.tables_failing_snapshot as i32,
    ))
}
