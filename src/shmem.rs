//! State shared by every backend of the cluster: the append lock, the published
//! high-water seq (the last seq whose frames are fully written and synced), and the groups
//! appended whose transactions have not finished yet.

use pgrx::atomics::PgAtomic;
use pgrx::lwlock::PgLwLock;
use pgrx::pg_shmem_init;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use std::sync::atomic::{AtomicU64, Ordering};

/// Groups that can be between their append and the end of their transaction at once. On a
/// primary that is at most one per backend; on a standby, redo registers every group it
/// replays and the slot frees once the transaction is seen to have ended.
pub const INFLIGHT_SLOTS: usize = 1024;

/// A group appended whose transaction may not have finished.
#[derive(Clone, Copy, Default)]
pub struct Inflight {
    /// First seq of the group; 0 marks a free slot.
    pub first_seq: u64,
    /// The transaction's xid (the low 32 bits of its full xid).
    pub xid: u32,
}

#[derive(Clone, Copy)]
pub struct Shared {
    /// Set once the first backend after startup opened the store (which recovers the
    /// files) and read the high-water seq from them.
    pub initialized: bool,
    /// Readers see groups at or below this seq only: frames past it may be half written.
    pub high_water: u64,
    /// Groups appended whose transactions have not been seen to end. Everything below the
    /// smallest first seq is decided.
    pub inflight: [Inflight; INFLIGHT_SLOTS],
}

impl Default for Shared {
    fn default() -> Shared {
        Shared {
            initialized: false,
            high_water: 0,
            inflight: [Inflight::default(); INFLIGHT_SLOTS],
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

impl Shared {
    /// The highest seq at or below which every group is decided (committed or aborted).
    pub fn stable_seq(&self) -> u64 {
        match self
            .inflight
            .iter()
            .filter(|s| s.first_seq != 0)
            .map(|s| s.first_seq)
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

/// Requests the shared memory; only valid while preloading (checked by the caller).
pub fn init() {
    pg_shmem_init!(STATE);
    pg_shmem_init!(SNAPSHOTS);
    pg_shmem_init!(FATES_GENERATION);
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

/// The stable seq: every group at or below it is decided. Frees the slots of transactions
/// that have ended first (on a standby nothing else frees them).
pub fn stable_seq() -> u64 {
    let mut state = STATE.exclusive();
    state.prune();
    state.stable_seq()
}

/// Publishes groups that redo (or an append) made durable: raises the high-water seq and
/// registers each group as in flight until its transaction is seen to end.
pub fn publish(groups: &[driftdb_storage::GroupMark], state: &mut Shared) -> Option<()> {
    for g in groups {
        state.high_water = state.high_water.max(g.last_seq);
        let slot = state.claim_slot()?;
        state.inflight[slot] = Inflight {
            first_seq: g.first_seq,
            xid: g.xid as u32,
        };
    }
    Some(())
}
