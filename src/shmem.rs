//! State shared by every backend of the cluster: the append lock and the published
//! high-water seq (the last seq whose frames are fully written and synced).

use pgrx::lwlock::PgLwLock;
use pgrx::pg_shmem_init;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;

/// Groups that can be between their append and their commit record at once; an appender
/// that finds every slot taken waits for one to free (they free within milliseconds).
pub const INFLIGHT_SLOTS: usize = 64;

#[derive(Clone, Copy)]
pub struct Shared {
    /// Set once the first backend after startup opened the store (which recovers the
    /// files) and read the high-water seq from them.
    pub initialized: bool,
    /// Readers see groups at or below this seq only: frames past it may be half written.
    pub high_water: u64,
    /// First seqs of the groups appended whose transactions have not finished committing
    /// or aborting (0: free slot). Everything below the smallest is decided.
    pub inflight: [u64; INFLIGHT_SLOTS],
}

impl Default for Shared {
    fn default() -> Shared {
        Shared {
            initialized: false,
            high_water: 0,
            inflight: [0; INFLIGHT_SLOTS],
        }
    }
}

impl Shared {
    /// The highest seq at or below which every group is decided (committed or aborted).
    pub fn stable_seq(&self) -> u64 {
        match self.inflight.iter().filter(|&&s| s != 0).min() {
            Some(first) => first - 1,
            None => self.high_water,
        }
    }

    /// Takes a free in-flight slot, if there is one.
    pub fn claim_slot(&mut self) -> Option<usize> {
        self.inflight.iter().position(|&s| s == 0)
    }
}

// SAFETY: plain old data, no pointers; lives in shared memory guarded by the LWLock.
unsafe impl PGRXSharedMemory for Shared {}

/// Held exclusively while appending (one appender at a time across all backends), shared
/// to read the high-water seq.
// SAFETY: the name is unique to DriftDB.
pub static STATE: PgLwLock<Shared> = unsafe { PgLwLock::new(c"driftdb_append") };

/// Requests the shared memory; only valid while preloading (checked by the caller).
pub fn init() {
    pg_shmem_init!(STATE);
}

/// The last seq every reader may look at.
pub fn high_water() -> u64 {
    STATE.share().high_water
}
