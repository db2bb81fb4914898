//! State shared by every backend of the cluster: the append lock and the published
//! high-water seq (the last seq whose frames are fully written and synced).

use pgrx::lwlock::PgLwLock;
use pgrx::pg_shmem_init;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;

#[derive(Clone, Copy, Default)]
pub struct Shared {
    /// Set once the first backend after startup opened the store (which recovers the
    /// files) and read the high-water seq from them.
    pub initialized: bool,
    /// Readers see groups at or below this seq only: frames past it may be half written.
    pub high_water: u64,
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
