//! The engine's vocabulary: sequence numbers, rows, events, transaction groups and fates.

use std::collections::HashSet;

/// Position in the one global sequence. The first event is seq 1; 0 means "before everything".
pub type Seq = u64;
/// A table's stable id (the extension uses the foreign table's OID).
pub type TableId = u64;
/// A column's id (the extension uses the Postgres attnum).
pub type ColumnId = u16;
/// A column value: opaque bytes, or `None` for NULL.
pub type Value = Option<Vec<u8>>;

/// A row: `(column, value)` pairs sorted by column id, without duplicate ids.
/// A column absent from a row reads as NULL (it was added after the row was written).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row(pub Vec<(ColumnId, Value)>);

impl Row {
    /// Builds a row from pairs in any order; the last value wins for a repeated column.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (ColumnId, Value)>) -> Row {
        let mut cols: Vec<(ColumnId, Value)> = Vec::new();
        for (c, v) in pairs {
            match cols.binary_search_by_key(&c, |p| p.0) {
                Ok(i) => cols[i].1 = v,
                Err(i) => cols.insert(i, (c, v)),
            }
        }
        Row(cols)
    }

    /// The value of `column`, `None` when it is NULL or absent.
    pub fn get(&self, column: ColumnId) -> Option<&[u8]> {
        match self.0.binary_search_by_key(&column, |p| p.0) {
            Ok(i) => self.0[i].1.as_deref(),
            Err(_) => None,
        }
    }

    /// Applies a patch (sorted, unique column ids) on top of this row.
    pub fn apply_patch(&mut self, patch: &[(ColumnId, Value)]) {
        Row::merge_patch(&mut self.0, patch);
    }

    /// Merges `patch` into a sorted column list, the patch's values winning.
    pub(crate) fn merge_patch(cols: &mut Vec<(ColumnId, Value)>, patch: &[(ColumnId, Value)]) {
        for (c, v) in patch {
            match cols.binary_search_by_key(c, |p| p.0) {
                Ok(i) => cols[i].1 = v.clone(),
                Err(i) => cols.insert(i, (*c, v.clone())),
            }
        }
    }

    pub(crate) fn is_well_formed(cols: &[(ColumnId, Value)]) -> bool {
        cols.windows(2).all(|w| w[0].0 < w[1].0)
    }
}

/// What an event does to the row under its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// The whole row; the key must not be live.
    Insert(Row),
    /// Only the changed columns (sorted, unique ids); the key must be live.
    Patch(Vec<(ColumnId, Value)>),
    /// Removes the key from the state; the key must be live. A later insert may reuse it.
    SoftDelete,
}

/// One change to one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub table: TableId,
    /// The primary key, compared as bytes (memcmp order).
    pub key: Vec<u8>,
    pub op: Op,
}

/// One transaction group handed to [`crate::Store::append`]. Its events get consecutive
/// seqs in order and share one commit timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Txn {
    /// The full 64-bit transaction id; [`Fates`] decides whether it committed.
    pub xid: u64,
    /// Requested commit time in microseconds; the store raises it to keep timestamps
    /// strictly increasing.
    pub commit_ts: i64,
    /// The committing role.
    pub role: String,
    pub events: Vec<Event>,
}

/// What the store assigned to one appended group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    pub xid: u64,
    pub first_seq: Seq,
    pub last_seq: Seq,
    /// The commit timestamp actually recorded.
    pub commit_ts: i64,
}

/// The outcome of a transaction, as decided by the caller (Postgres' commit log).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fate {
    Committed,
    Aborted,
    InProgress,
}

/// Decides the fate of a transaction id. Every read takes one.
pub trait Fates {
    fn fate(&self, xid: u64) -> Fate;
}

/// Every transaction committed (tests, tools, and logs whose groups are all settled).
#[derive(Clone, Copy, Debug, Default)]
pub struct AllCommitted;

impl Fates for AllCommitted {
    fn fate(&self, _xid: u64) -> Fate {
        Fate::Committed
    }
}

/// Explicit sets of aborted and in-progress xids; every other xid committed.
#[derive(Clone, Debug, Default)]
pub struct FateSet {
    pub aborted: HashSet<u64>,
    pub in_progress: HashSet<u64>,
}

impl FateSet {
    pub fn aborted(xids: impl IntoIterator<Item = u64>) -> FateSet {
        FateSet {
            aborted: xids.into_iter().collect(),
            in_progress: HashSet::new(),
        }
    }
}

impl Fates for FateSet {
    fn fate(&self, xid: u64) -> Fate {
        if self.in_progress.contains(&xid) {
            Fate::InProgress
        } else if self.aborted.contains(&xid) {
            Fate::Aborted
        } else {
            Fate::Committed
        }
    }
}

/// One event of a key's history, as returned by [`crate::Store::history`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub seq: Seq,
    pub commit_ts: i64,
    pub xid: u64,
    pub role: String,
    pub key: Vec<u8>,
    pub op: Op,
}

/// How one key differs between two seqs, as returned by [`crate::Store::changes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub key: Vec<u8>,
    /// `None`: the key was absent at `from` (added).
    pub before: Option<Row>,
    /// `None`: the key is absent at `to` (removed).
    pub after: Option<Row>,
}

/// Counters of the work a store did, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Calls that wrote at least one group.
    pub appends: u64,
    pub groups: u64,
    pub events: u64,
    pub bytes_written: u64,
    /// fdatasync calls on log files and directories.
    pub fsyncs: u64,
    /// Rounds of syncs that made one batch durable (one per append call).
    pub sync_rounds: u64,
    /// Reads before the newest snapshot that replayed the table's log (each one missed the
    /// replay cache).
    pub replays: u64,
    /// Events those replays applied.
    pub replayed_events: u64,
    /// The most events one replay applied.
    pub longest_replay: u64,
    /// Reads before the newest snapshot served by the replay cache instead.
    pub replay_cache_hits: u64,
    /// Events read from table logs' tails into this store's in-memory state of the present.
    pub tail_events: u64,
    /// Point lookups that found their snapshot block decompressed in the block cache, and
    /// those that had to decompress it.
    pub block_cache_hits: u64,
    pub block_cache_misses: u64,
    /// Table frames read for the history of one key ([`crate::Store::history`]): those a
    /// snapshot names for the key and those after that snapshot, or the whole log.
    pub history_frames: u64,
    /// Journal records read to compute ledger leaves ([`crate::Store::extend_ledger`],
    /// [`crate::Store::verify_digest`], a leaf's data): the groups made leaves and those
    /// passed over on the way (aborted ones, one undecided).
    pub ledger_records: u64,
    /// Table frames read (CRC checked) to compute ledger leaves: the frames of the groups
    /// made leaves and any passed over on the way.
    pub ledger_frames: u64,
    /// Groups read from the journal's frames (those past its index, `docs/format.md`):
    /// none at an open but the few an appender has not indexed yet, whatever the history.
    pub journal_groups_read: u64,
    /// Appends that found the end of a table's log by reading its last segment whole
    /// (recovering it), for want of a position this store or another one had left
    /// ([`crate::TableEnds`]): at most once per table after a server start, and after an
    /// append that failed part of the way.
    pub writer_recoveries: u64,
}

impl Stats {
    /// Counts one replay of a table's log that built `delta`.
    pub(crate) fn count_replay(&mut self, delta: &crate::table::Delta) {
        let events: u64 = delta.keys.values().map(|vs| vs.len() as u64).sum();
        self.replays += 1;
        self.replayed_events += events;
        self.longest_replay = self.longest_replay.max(events);
    }
}

/// Where an imported group came from: the transaction, commit time and role it had in the
/// store it was exported from. Its own xid (which decides its fate) and commit time are
/// those of the importing transaction; history shows these instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub xid: u64,
    /// Microseconds, as `Txn::commit_ts`.
    pub commit_ts: i64,
    pub role: String,
}
