//! State shared by every backend of the cluster: the append lock, the published
//! high-water seq (the last seq whose frames are fully written and synced), and the groups
//! appended whose transactions have not finished yet.

use pgrx::atomics::PgAtomic;
use pgrx::lwlock::PgLwLock;
use pgrx::pg_shmem_init;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use std::sync::atomic::{AtomicU64, Ordering};

/// Transactions that can be between their first append and their end at once, one slot
/// each. On a primary that is at most one per backend (an appender waits for a slot when
/// all are taken). Redo registers every transaction whose groups it replays, one slot per
/// xid however many groups it has (an import of 100,000 transactions is one), and the slot
/// frees once the transaction is seen to have ended; when redo finds every slot taken (a
/// standby without hot standby keeps the transactions a crash of its primary cut off), the
/// rest are kept together in [`Shared::overflow`], so redo has no fixed limit.
pub const INFLIGHT_SLOTS: usize = 1024;

/// A group appended whose transaction may not have finished.
#[derive(Clone, Copy, Default)]
pub struct Inflight {
    /// First seq of the group; 0 marks a free slot.
    pub first_seq: u64,
    /// The transaction's xid (the low 32 bits of its full xid).
    pub xid: u32,
    /// The one table an import's groups write to, 0 for any other group (a commit, which
    /// may write to several tables and holds its slot only until its transaction ends).
    /// An import holds its slot for as long as its transaction lasts, so readers of other
    /// tables pass it (see [`Shared::readable_seq`]).
    pub table: u64,
}

/// Tables found damaged by the recovering open that can be listed for the opens after it.
pub const DAMAGED_SLOTS: usize = 64;

#[derive(Clone, Copy)]
pub struct Shared {
    /// Set once the first backend after startup opened the store (which recovers the
    /// files) and read the high-water seq from them.
    pub initialized: bool,
    /// Set once a writer has opened the store with recovery since the server started (or
    /// since a standby was promoted: a standby's opens are readers, which never recover).
    /// Later opens recover nothing: no process leaves a change to the files half made
    /// without the server restarting (an append that fails cuts its own frames, or the
    /// failure is a PANIC).
    pub recovered: bool,
    /// The tables that recovery found damaged: `damaged[..damaged_len]`. When it found
    /// more than [`DAMAGED_SLOTS`], `damaged_len` is larger than that and every open
    /// recovers again, as before (slower, still exact).
    pub damaged: [u64; DAMAGED_SLOTS],
    pub damaged_len: usize,
    /// Readers see groups at or below this seq only: frames past it may be half written.
    pub high_water: u64,
    /// Groups appended whose transactions have not been seen to end. Everything below the
    /// smallest first seq is decided.
    pub inflight: [Inflight; INFLIGHT_SLOTS],
    /// Set while DriftDB's sync worker guards durability (`syncguard.rs`): commits then
    /// sync nothing, and a sync round before every checkpoint completes makes their files
    /// durable. Read and changed under this lock, which every commit's append holds.
    pub guard: bool,
    /// Redo only: the transactions replayed while every slot was taken, as one entry (its
    /// first seq the smallest of theirs, 0 when there are none). Readers treat everything
    /// from that seq on as undecided until all of them have ended.
    pub overflow: Overflow,
}

/// Transactions replayed without a slot of their own.
#[derive(Clone, Copy, Default)]
pub struct Overflow {
    /// Smallest first seq of their groups; 0 when there are none.
    pub first_seq: u64,
    /// The newest of their xids: they have all ended once every transaction up to it has.
    pub newest_xid: u32,
}

impl Default for Shared {
    fn default() -> Shared {
        Shared {
            initialized: false,
            recovered: false,
            damaged: [0; DAMAGED_SLOTS],
            damaged_len: 0,
            high_water: 0,
            inflight: [Inflight::default(); INFLIGHT_SLOTS],
            overflow: Overflow::default(),
            guard: false,
        }
    }
}

/// Whether transaction `xid` has ended (committed or aborted), as far as this process can
/// tell without a snapshot.
fn ended(xid: u32) -> bool {
    let xid = pg_sys::TransactionId::from(xid);
    // SAFETY: plain lookups in the commit log and the proc array (or, on a hot standby, the
    // known-assigned xids) for a recent normal xid. `standbyState` is a plain read.
    unsafe {
        if pg_sys::TransactionIdDidCommit(xid) || pg_sys::TransactionIdDidAbort(xid) {
            return true;
        }
        // A transaction cut off by a crash is never marked aborted: it has ended when it is
        // no longer running. During recovery the running transactions are known only once
        // the standby has its snapshot.
        let knows_running = !pg_sys::RecoveryInProgress()
            || pg_sys::standbyState == pg_sys::HotStandbyState::STANDBY_SNAPSHOT_READY;
        knows_running && !pg_sys::TransactionIdIsInProgress(xid)
    }
}

/// Whether every transaction up to and including `xid` has ended, as far as this process
/// can tell: after recovery, every transaction that redo replayed has (the ones a crash cut
/// off never will commit); on a hot standby, every xid older than the oldest transaction
/// this backend's last snapshot saw running has.
fn ended_up_to(xid: u32) -> bool {
    let xid = pg_sys::TransactionId::from(xid);
    // SAFETY: plain reads of backend state and an xid comparison.
    unsafe {
        if !pg_sys::RecoveryInProgress() {
            return true;
        }
        pg_sys::standbyState == pg_sys::HotStandbyState::STANDBY_SNAPSHOT_READY
            && pg_sys::TransactionIdIsNormal(pg_sys::RecentXmin)
            && pg_sys::TransactionIdPrecedes(xid, pg_sys::RecentXmin)
    }
}

impl Shared {
    /// The highest seq at or below which every group is decided (committed or aborted) but
    /// those of imports in progress: what readers may read up to. A reader of an importing
    /// table at a seq past the import's first group waits for the import first
    /// ([`pending_imports`]).
    pub fn readable_seq(&self) -> u64 {
        self.stable_seq_where(|s| s.table == 0)
    }

    /// The highest seq at or below which every group that may write to `table` is decided.
    pub fn stable_seq_for(&self, table: u64) -> u64 {
        self.stable_seq_where(|s| s.table == 0 || s.table == table)
    }

    fn stable_seq_where(&self, counts: impl Fn(&Inflight) -> bool) -> u64 {
        match self
            .inflight
            .iter()
            .filter(|s| counts(s))
            .map(|s| s.first_seq)
            .chain(std::iter::once(self.overflow.first_seq))
            .filter(|&first| first != 0)
            .min()
        {
            Some(first) => first - 1,
            None => self.high_water,
        }
    }

    /// Frees the slots of groups whose transactions have ended.
    pub fn prune(&mut self) {
        for s in self.inflight.iter_mut() {
            if s.first_seq != 0 && ended(s.xid) {
                *s = Inflight::default();
            }
        }
        if self.overflow.first_seq != 0 && ended_up_to(self.overflow.newest_xid) {
            self.overflow = Overflow::default();
        }
    }

    /// Takes a free in-flight slot, if there is one (freeing those of ended transactions
    /// when none is free).
    pub fn claim_slot(&mut self) -> Option<usize> {
        if let Some(i) = self.inflight.iter().position(|s| s.first_seq == 0) {
            return Some(i);
        }
        self.prune();
        self.inflight.iter().position(|s| s.first_seq == 0)
    }
}

// SAFETY: plain old data, no pointers; lives in shared memory guarded by the LWLock.
unsafe impl PGRXSharedMemory for Shared {}

/// Held exclusively while appending (one appender at a time across all backends), shared
/// to read the high-water seq.
// SAFETY: the name is unique to DriftDB.
pub static STATE: PgLwLock<Shared> = unsafe { PgLwLock::new(c"driftdb_append") };

/// Held while a snapshot is written: one snapshot writer at a time, without holding up
/// appends (a snapshot touches only snapshot files).
// SAFETY: the name is unique to DriftDB.
pub static SNAPSHOTS: PgLwLock<bool> = unsafe { PgLwLock::new(c"driftdb_snapshot") };

/// Counts the changes to the record of settled fates (`fates.log`): the fates worker
/// bumps it after each settlement, redo after each replayed change of DriftDB's files. A
/// backend rereads the record only when the count moved since it last read it.
// SAFETY: the name is unique to DriftDB.
pub static FATES_GENERATION: PgAtomic<AtomicU64> =
    unsafe { PgAtomic::new(c"driftdb_fates_generation") };

/// The end of the newest WAL record DriftDB inserted (0: none since the server started):
/// how far the sync worker flushes the WAL before it records where the journal ends.
// SAFETY: the name is unique to DriftDB.
pub static RECORDS_END: PgAtomic<AtomicU64> = unsafe { PgAtomic::new(c"driftdb_records_end") };

/// Slots of [`TABLE_ENDS`]. A table's slot is a hash of its id; a table whose slot another
/// table took since has no published end, and its next new appender recovers its log.
pub const TABLE_END_SLOTS: usize = 4096;

/// Where each table's log ended after the last append to it or recovery of it: its last
/// segment (by first seq) and that segment's length. Lets a backend's first append to a
/// table start there instead of reading the log's last segment (up to 64 MiB) to find its
/// end; the engine checks a position before it uses one (`driftdb_storage::TableEnds`).
#[derive(Clone, Copy)]
pub struct TableEndSlots {
    /// (table id, segment, end); table 0 marks a free slot.
    slots: [(u64, u64, u64); TABLE_END_SLOTS],
}

impl Default for TableEndSlots {
    fn default() -> TableEndSlots {
        TableEndSlots {
            slots: [(0, 0, 0); TABLE_END_SLOTS],
        }
    }
}

// SAFETY: plain old data, no pointers; lives in shared memory guarded by the LWLock.
unsafe impl PGRXSharedMemory for TableEndSlots {}

/// Taken (after the append lock, never before it) to read or publish a table's end.
// SAFETY: the name is unique to DriftDB.
pub static TABLE_ENDS: PgLwLock<TableEndSlots> = unsafe { PgLwLock::new(c"driftdb_table_ends") };

fn table_end_slot(table: u64) -> usize {
    // Fibonacci hashing: the ids of one database differ in their low bits only.
    (table.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize % TABLE_END_SLOTS
}

/// The engine's view of [`TABLE_ENDS`].
pub struct SharedTableEnds;

impl driftdb_storage::TableEnds for SharedTableEnds {
    fn get(&self, table: u64) -> Option<(u64, u64)> {
        let (t, seg, end) = TABLE_ENDS.share().slots[table_end_slot(table)];
        (t == table).then_some((seg, end))
    }

    fn put(&self, table: u64, segment: u64, end: u64) {
        TABLE_ENDS.exclusive().slots[table_end_slot(table)] = (table, segment, end);
    }
}

/// Requests the shared memory; only valid while preloading (checked by the caller).
pub fn init() {
    pg_shmem_init!(STATE);
    pg_shmem_init!(SNAPSHOTS);
    pg_shmem_init!(FATES_GENERATION);
    pg_shmem_init!(TABLE_ENDS);
    pg_shmem_init!(RECORDS_END);
}

/// The count of changes to the settled fates so far.
pub fn fates_generation() -> u64 {
    FATES_GENERATION.get().load(Ordering::SeqCst)
}

/// Records that the settled fates changed (after the change is in the file).
pub fn fates_changed() {
    FATES_GENERATION.get().fetch_add(1, Ordering::SeqCst);
}

/// Takes the append lock with a free in-flight slot, waiting for one: every slot is held
/// only between an append and the end of its transaction, which is short.
pub fn lock_with_slot() -> (pgrx::lwlock::PgLwLockExclusiveGuard<'static, Shared>, usize) {
    let mut state = STATE.exclusive();
    loop {
        if let Some(slot) = state.claim_slot() {
            return (state, slot);
        }
        drop(state);
        // SAFETY: sleeps one millisecond, interruptible by Postgres as usual.
        unsafe {
            pg_sys::pg_usleep(1000);
            pg_sys::check_for_interrupts!();
        }
        state = STATE.exclusive();
    }
}

/// The last seq every reader may look at.
pub fn high_water() -> u64 {
    STATE.share().high_water
}

/// [`Shared::readable_seq`], after freeing the slots of transactions that have ended (on a
/// standby nothing else frees them).
pub fn readable_seq() -> u64 {
    let mut state = STATE.exclusive();
    state.prune();
    state.readable_seq()
}

/// The highest seq at or below which every group is decided, those of imports in progress
/// included (which [`readable_seq`] passes): what the ledger is extended up to. After
/// freeing the slots of transactions that have ended.
pub fn decided_seq() -> u64 {
    let mut state = STATE.exclusive();
    state.prune();
    state.stable_seq_where(|_| true)
}

/// [`Shared::stable_seq_for`], after freeing the slots of transactions that have ended.
pub fn stable_seq_for(table: u64) -> u64 {
    let mut state = STATE.exclusive();
    state.prune();
    state.stable_seq_for(table)
}

/// The xids of the imports into `table` in progress whose groups begin at or below `upto`.
pub fn pending_imports(table: u64, upto: u64) -> Vec<u32> {
    let mut state = STATE.exclusive();
    state.prune();
    state.imports_into(table, upto)
}

/// One look for a reader of `table`, under one lock and one pruning: the readable seq
/// ([`readable_seq`]) and the imports into `table` in progress whose groups begin at or
/// below `upto` (the readable seq when `None`).
pub fn read_point(table: u64, upto: Option<u64>) -> (u64, Vec<u32>) {
    let mut state = STATE.exclusive();
    state.prune();
    let readable = state.readable_seq();
    (
        readable,
        state.imports_into(table, upto.unwrap_or(readable)),
    )
}

impl Shared {
    fn imports_into(&self, table: u64, upto: u64) -> Vec<u32> {
        self.inflight
            .iter()
            .filter(|s| s.first_seq != 0 && s.table == table && s.first_seq <= upto)
            .map(|s| s.xid)
            .collect()
    }
}

/// Publishes groups that redo made durable: raises the high-water seq and registers each
/// group's transaction as in flight until it is seen to end (one slot per transaction,
/// holding its smallest first seq and, for an import's groups, their table; the overflow
/// entry, which holds up every reader, when no slot is free).
pub fn publish(groups: &[driftdb_storage::GroupMark], state: &mut Shared) {
    for g in groups {
        state.high_water = state.high_water.max(g.last_seq);
        let xid = g.xid as u32;
        if let Some(s) = state
            .inflight
            .iter_mut()
            .find(|s| s.first_seq != 0 && s.xid == xid)
        {
            s.first_seq = s.first_seq.min(g.first_seq);
            // A transaction that imports into one table and also writes others (or
            // imports into two) holds up every reader, as a commit does.
            if s.table != g.table {
                s.table = 0;
            }
            continue;
        }
        match state.claim_slot() {
            Some(slot) => {
                state.inflight[slot] = Inflight {
                    first_seq: g.first_seq,
                    xid,
                    table: g.table,
                }
            }
            None => {
                let o = &mut state.overflow;
                // SAFETY: a plain comparison of two xids.
                let newer = o.first_seq == 0
                    || unsafe {
                        pg_sys::TransactionIdPrecedes(
                            pg_sys::TransactionId::from(o.newest_xid),
                            pg_sys::TransactionId::from(xid),
                        )
                    };
                if newer {
                    o.newest_xid = xid;
                }
                o.first_seq = if o.first_seq == 0 {
                    g.first_seq
                } else {
                    o.first_seq.min(g.first_seq)
                };
            }
        }
    }
}
