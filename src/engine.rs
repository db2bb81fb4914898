//! This backend's handle on the storage engine, and the fates Postgres decides.
//!
//! Every backend opens the one store under `$PGDATA/driftdb`. Opening a store in writer
//! mode recovers its files (cutting a torn tail), so it happens under the append lock; the
//! first backend after a (re)start also publishes the high-water seq it found.

use crate::error::DriftError;
use crate::shmem;
use crate::wal::PgWal;
use driftdb_storage::{Config, Fate, Fates, OpenMode, SettledFates, Store, TableId, WriteAhead};
use pgrx::pg_sys;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CStr;
use std::path::PathBuf;
use std::sync::Arc;

thread_local! {
    // Postgres backends are single-threaded; thread_local gives this process its handle.
    static STORE: RefCell<Option<Store>> = const { RefCell::new(None) };
    // Set while the engine runs a call on STORE: still set when an ERROR unwound it.
    static IN_ENGINE: Cell<bool> = const { Cell::new(false) };
    // The fates DriftDB has recorded itself, as last read (see `refresh_settled`).
    static SETTLED: RefCell<Arc<SettledFates>> = RefCell::new(Arc::default());
    // The count of settlements (`shmem::fates_generation`) SETTLED was read at; `None`
    // until read from this backend's store.
    static SETTLED_AT: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Reads the fates the store has recorded (`fates.log`, written by the fates worker), so
/// that the fates below answer for old transactions without the commit log. Called by
/// [`read_point`] and before each commit; reads the file only when a settlement (or redo)
/// changed it since this backend last read it.
pub fn refresh_settled(store: &mut Store) -> driftdb_storage::Result<()> {
    // Read before the file: a settlement that lands after this read moves the count again.
    let generation = shmem::fates_generation();
    if SETTLED_AT.get() == Some(generation) {
        return Ok(());
    }
    let settled = store.settled()?;
    SETTLED.with(|c| *c.borrow_mut() = settled);
    SETTLED_AT.set(Some(generation));
    Ok(())
}

/// The fate DriftDB recorded for `full`, if it is settled; otherwise the commit log must
/// answer, and it must still know the transaction: one it has forgotten is an ERROR, never
/// a guess.
fn settled_fate(full: u64) -> Option<Fate> {
    if let Some(f) = SETTLED.with(|c| c.borrow().fate(full)) {
        return Some(f);
    }
    let xid = xid_of(full);
    // SAFETY: reads the oldest xid the commit log still holds (it only moves forward) and
    // compares xids with Postgres' wraparound-aware comparison.
    let forgotten = unsafe {
        pg_sys::TransactionIdIsNormal(xid)
            && pg_sys::TransactionIdPrecedes(xid, crate::pg::compat::oldest_clog_xid())
    };
    if forgotten {
        DriftError::FateForgotten { xid: full }.report()
    }
    None
}

/// The engine's id for a foreign table: database and relation OIDs, so the cluster-wide
/// store never confuses tables of two databases.
pub fn table_id(relid: pg_sys::Oid) -> TableId {
    // SAFETY: MyDatabaseId is set for the life of a connected backend.
    let db = unsafe { pg_sys::MyDatabaseId };
    (u64::from(db.to_u32()) << 32) | u64::from(relid.to_u32())
}

/// The server's data directory.
pub fn data_dir() -> PathBuf {
    // SAFETY: DataDir is set before any backend runs SQL and never changes afterwards.
    let data = unsafe { CStr::from_ptr(pg_sys::DataDir) };
    PathBuf::from(data.to_string_lossy().into_owned())
}

/// The store's root directory, `$PGDATA/driftdb`.
pub fn root() -> PathBuf {
    data_dir().join("driftdb")
}

/// The seq a reader may read up to: the published high-water mark. The store is opened
/// first, because the first backend after a start publishes the mark when it opens it.
pub fn read_point() -> u64 {
    with_store(refresh_settled);
    shmem::high_water()
}

/// Opens the store: as a writer whose every change is WAL-logged first, or, while the
/// server is in recovery (a hot standby), as a reader (redo writes the files there).
///
/// The first writer since the server started (or was promoted) recovers the files, under
/// the append lock, and lists the tables it found damaged in shared memory; every later
/// open recovers nothing (its cost does not grow with the number of tables) and checks
/// only the listed tables, so that it refuses them as the recovering open does.
fn open_store() -> Store {
    // SAFETY: a plain read of the server's recovery state.
    let in_recovery = unsafe { pg_sys::RecoveryInProgress() };
    if in_recovery {
        let config = Config {
            mode: OpenMode::Reader,
            ..Config::default()
        };
        return Store::open_with(root(), config, None)
            .unwrap_or_else(|e| DriftError::Engine(e).report());
    }
    let wal = || -> Option<Box<dyn WriteAhead + Send>> { Some(Box::new(PgWal::new())) };
    let listed = {
        let state = shmem::STATE.share();
        (state.recovered && state.damaged_len <= shmem::DAMAGED_SLOTS)
            .then(|| state.damaged[..state.damaged_len].to_vec())
    };
    if let Some(damaged) = listed {
        let config = Config {
            recover: false,
            ..Config::default()
        };
        let mut store = Store::open_with(root(), config, wal())
            .unwrap_or_else(|e| DriftError::Engine(e).report());
        store.share_table_ends(Box::new(shmem::SharedTableEnds));
        if !damaged.is_empty() {
            store
                .check_tables(&damaged)
                .unwrap_or_else(|e| DriftError::Engine(e).report());
        }
        return store;
    }
    let mut state = shmem::STATE.exclusive();
    if state.recovered && state.damaged_len <= shmem::DAMAGED_SLOTS {
        // Another backend recovered while this one waited for the lock.
        drop(state);
        return open_store();
    }
    if !state.recovered {
        // The first open since the server started: groups whose WAL records a crash lost
        // (commits the sync worker guarded) are cut before anything reads the journal.
        // Only this once: later the mark is the sync worker's, for the next crash.
        let cut = driftdb_storage::syncmark::settle(&root())
            .unwrap_or_else(|e| DriftError::Engine(e).report());
        crate::syncguard::report_cut(cut);
    }
    let mut store = Store::open_with(root(), Config::default(), wal())
        .unwrap_or_else(|e| DriftError::Engine(e).report());
    // Publishes where the logs it recovered end, under the append lock.
    store.share_table_ends(Box::new(shmem::SharedTableEnds));
    let damaged = store.damaged_tables();
    state.damaged_len = damaged.len();
    for (slot, id) in state.damaged.iter_mut().zip(&damaged) {
        *slot = *id;
    }
    state.recovered = true;
    store
}

/// Runs `f` on this backend's store, opening it first if needed (and again as a writer
/// once a standby has been promoted).
pub fn with_store<R>(f: impl FnOnce(&mut Store) -> driftdb_storage::Result<R>) -> R {
    STORE.with(|cell| {
        let mut slot = cell.borrow_mut();
        // An ERROR raised inside an earlier `f` (in a callback into Postgres) unwound
        // through the engine: that store is dropped and opened again from the files,
        // which the interrupted call had not changed (an append unwinds before its WAL
        // record, and the engine poisons a store an append unwound through).
        if IN_ENGINE.replace(false) {
            *slot = None;
        }
        let promoted = slot.as_ref().is_some_and(|s| {
            // SAFETY: a plain read of the server's recovery state.
            s.config().mode == OpenMode::Reader && !unsafe { pg_sys::RecoveryInProgress() }
        });
        if slot.is_none() || promoted {
            *slot = None;
            let mut store = open_store();
            if !shmem::STATE.share().initialized {
                let mut state = shmem::STATE.exclusive();
                if !state.initialized {
                    // Redo may have published groups already (a standby, or after a
                    // crash). Read under the append lock: no group is being appended.
                    let current = store
                        .current_seq()
                        .unwrap_or_else(|e| DriftError::Engine(e).report());
                    state.high_water = state.high_water.max(current);
                    state.initialized = true;
                }
            }
            *slot = Some(store);
            SETTLED_AT.set(None);
        }
        let store = slot.as_mut().expect("opened above");
        IN_ENGINE.set(true);
        let out = f(store);
        IN_ENGINE.set(false);
        crate::stats::publish(store.stats());
        out.unwrap_or_else(|e| DriftError::Engine(e).report())
    })
}

/// The columns of table `id` that have a secondary index, with the index's kind (none for
/// a table without files yet).
pub fn indexes(
    id: driftdb_storage::TableId,
) -> Vec<(driftdb_storage::ColumnId, driftdb_storage::IndexKind)> {
    with_store(|s| match s.indexes(id) {
        Err(driftdb_storage::Error::NoSuchTable(_)) => Ok(Vec::new()),
        other => other,
    })
}

/// Like [`with_store`], for callers that must not raise an ERROR on engine failures
/// (the store is still opened by `with_store`, whose failures do raise).
pub fn try_with_store<R>(
    f: impl FnOnce(&mut Store) -> driftdb_storage::Result<R>,
) -> driftdb_storage::Result<R> {
    let mut out = None;
    with_store(|s| {
        out = Some(f(s));
        Ok(())
    });
    out.expect("ran")
}

fn xid_of(full: u64) -> pg_sys::TransactionId {
    // The low 32 bits are the xid Postgres' commit log and snapshots know.
    pg_sys::TransactionId::from(full as u32)
}

/// Fates as seen by one MVCC snapshot: a transaction that the snapshot counts as running
/// is in progress even if it has committed since; otherwise the commit log decides.
pub struct SnapshotFates {
    snapshot: pg_sys::Snapshot,
    cache: RefCell<HashMap<u64, Fate>>,
}

impl SnapshotFates {
    /// # Safety
    /// `snapshot` must stay valid while this value is used (the active snapshot of a
    /// running statement does).
    pub unsafe fn new(snapshot: pg_sys::Snapshot) -> SnapshotFates {
        SnapshotFates {
            snapshot,
            cache: RefCell::new(HashMap::new()),
        }
    }
}

impl Fates for SnapshotFates {
    fn fate(&self, full: u64) -> Fate {
        if let Some(f) = self.cache.borrow().get(&full) {
            return *f;
        }
        let xid = xid_of(full);
        // SAFETY: plain lookups in the commit log, and in the snapshot, which is valid while
        // this value is used (the contract of SnapshotFates::new).
        let fate = unsafe {
            if pg_sys::TransactionIdIsCurrentTransactionId(xid) {
                Fate::Committed
            } else if pg_sys::XidInMVCCSnapshot(xid, self.snapshot) {
                Fate::InProgress
            } else if let Some(f) = settled_fate(full) {
                f
            } else if pg_sys::TransactionIdDidCommit(xid) {
                Fate::Committed
            } else {
                Fate::Aborted
            }
        };
        self.cache.borrow_mut().insert(full, fate);
        fate
    }
}

/// Fates as of now, without a snapshot (for appends): running transactions are checked
/// first, as the commit log alone cannot tell a running transaction from a crashed one.
pub struct LatestFates;

impl Fates for LatestFates {
    fn fate(&self, full: u64) -> Fate {
        let xid = xid_of(full);
        // SAFETY: plain lookups in the proc array and the commit log.
        unsafe {
            if pg_sys::TransactionIdIsCurrentTransactionId(xid) {
                Fate::Committed
            } else if let Some(f) = settled_fate(full) {
                f
            } else if pg_sys::TransactionIdIsInProgress(xid) {
                Fate::InProgress
            } else if pg_sys::TransactionIdDidCommit(xid) {
                Fate::Committed
            } else {
                Fate::Aborted
            }
        }
    }
}
