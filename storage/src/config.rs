//! The engine's configuration ([`Config`]) and the checks made of it when a store opens.

use std::path::Path;

use crate::error::{Error, Result};

/// What recovery does with damage at the very end of the last segment of a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Cut a torn tail (partial last frame, zeroes, bad CRC at the very end) back to the
    /// last whole frame. Damage anywhere else is still [`Error::Corruption`].
    TolerateTornTail,
    /// Any damage, a torn tail included, is [`Error::Corruption`].
    Strict,
}

/// Whether appends and snapshots are made durable with fdatasync / fsync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    Sync,
    /// For tests and benchmarks only: a crash may lose acknowledged appends.
    NoSync,
}

/// A writer recovers the files on open and may append; a reader never changes a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    Writer,
    Reader,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub mode: OpenMode,
    pub recovery: RecoveryMode,
    pub durability: Durability,
    /// A segment rolls over once it has reached this many bytes. Every store opened on one
    /// root must use the same value (readers rely on it to skip directory listings): the
    /// journal's segments record it, and opening with another one fails with
    /// [`Error::SegmentSizeMismatch`].
    pub segment_size: u64,
    /// Snapshots kept per table; older ones are deleted after a new one is written.
    pub snapshots_kept: usize,
    /// Whether a writer's open recovers the files (cuts a torn tail of the journal, cuts
    /// every table log back to the journal and checks it). Needed once after the files may
    /// have been left mid-change (a crash, a restore, a promotion): a process that knows
    /// another one has recovered them since opens with `false`, reads nothing it does not
    /// need, and recovers a table's log only when it first appends to it (see
    /// [`crate::Store::check_tables`] for damage found by the recovering process).
    pub recover: bool,
    /// The record of settled fates (`fates.log`) is rewritten as one frame once it has
    /// grown past this many bytes (and past four times what the one frame would take), so
    /// that what every new backend reads of it stays bounded as settlements accumulate.
    pub fates_compact_bytes: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            mode: OpenMode::Writer,
            recovery: RecoveryMode::TolerateTornTail,
            durability: Durability::Sync,
            segment_size: 64 << 20,
            snapshots_kept: 4,
            recover: true,
            fates_compact_bytes: 64 << 10,
        }
    }
}

/// The check, on open, of a segment size recorded in the store's files against the
/// configured one: `recorded` is what `file` records (`None`: nothing, as in files written
/// before sizes were recorded, which any size may open). A writer with another size would
/// roll segments over where readers do not expect it, and a reader with another size would
/// miss new segments, so any difference is [`Error::SegmentSizeMismatch`].
pub(crate) fn check_segment_size(
    file: &Path,
    recorded: Option<u64>,
    configured: u64,
) -> Result<()> {
    match recorded {
        Some(recorded) if recorded != configured => Err(Error::SegmentSizeMismatch {
            file: file.to_path_buf(),
            recorded,
            configured,
        }),
        _ => Ok(()),
    }
}
