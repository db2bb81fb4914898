//! DriftDB's storage engine. No Postgres symbols live here.
//!
//! Every change is an event in an append-only, CRC-checked log: a global journal (one frame
//! per committed transaction group, the commit point) and one log per table. Snapshots hold
//! materialised table states so that reads at any seq cost the rows returned plus the
//! distance from the nearest snapshot. See `docs/format.md` for the byte layout.

mod config;
mod error;
pub mod fileops;
pub mod format;
mod group;
mod hash;
mod index;
mod jindex;
pub(crate) mod journal;
pub mod ledger;
mod log;
mod settled;
mod snapshot;
mod store;
pub mod syncmark;
mod table;
mod types;
mod verify;

pub use config::{Config, Durability, OpenMode, RecoveryMode};
pub use error::{Error, Result};
#[cfg(feature = "faults")]
pub use fileops::Fault;
pub use fileops::{Applier, Batch, FileOp, GroupMark, WriteAhead};
pub use format::FORMAT_VERSION;
pub use group::GroupCommitter;
pub use hash::{FastMap, FastState};
pub use index::{index_key, IndexKind};
pub use journal::IndexMaintainer;
pub use ledger::{
    ConsistencyProof, DigestReport, Divergence, InclusionProof, LedgerDigest, MerkleTree,
    ProofError, StoredTree, TableDiff,
};
pub use log::TableEnds;
pub use settled::{SettledFates, FATES_FILE};
pub use snapshot::{check_snapshot_block, check_snapshot_bytes};
pub use store::{
    ColumnsOf, EventCount, RowRef, Scan, ScanRows, SnapshotStats, Store, TableHistory, TableStats,
};
pub use types::{
    AllCommitted, Change, ColumnId, Committed, Event, Fate, FateSet, Fates, HistoryEntry, Op,
    Origin, Row, Seq, Stats, TableId, Txn, Value,
};
pub use verify::{JournalReport, Problem, Problems, TableReport, Verifier, MAX_PROBLEMS};
