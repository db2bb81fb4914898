//! The store: one root directory holding the journal and every table's files, with the
//! append path (seqs, frames, syncs), recovery on open, and reads at any seq.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Config, Durability, OpenMode};
use crate::error::{Error, IoContext, Result};
use crate::fileops::{
    relative, replace_ops, truncate_ops, Applier, BackgroundWrites, FileOp, GroupMark, WriteAhead,
};
use crate::format::{
    key_events, peek_group_seq, read_frame, FrameRead, TableFrame, SEGMENT_HEADER_LEN,
};
use crate::index::{index_key, IndexKind};
use crate::journal::Journal;
use crate::log::{recover_table_log, LogWriter, TableEnds};
use crate::settled::{encode_settlement, FatesLog, SettledFates};
use crate::snapshot::{snapshot_bytes, BlockCounters, Snapshot};
use crate::table::{effect, list_snapshots, snapshot_file_name, Delta, Effect, Table, TableMeta};
use crate::types::{
    Change, ColumnId, Committed, Fate, Fates, HistoryEntry, Op, Row, Seq, Stats, TableId, Txn,
};

mod append;
mod history;
pub(crate) use history::HistoryMerge;
mod import;
mod inspect;
mod ledger;
mod scan;
pub use inspect::{EventCount, SnapshotStats, TableStats};
pub use scan::{ColumnsOf, RowRef, Scan, ScanRows};

/// Counts every group that is not aborted as committed: the append-time view of liveness.
struct NotAborted<'a>(&'a dyn Fates);

impl Fates for NotAborted<'_> {
    fn fate(&self, xid: u64) -> Fate {
        match self.0.fate(xid) {
            Fate::Aborted => Fate::Aborted,
            _ => Fate::Committed,
        }
    }
}

/// A DriftDB store rooted at one directory.
///
/// ```text
/// <root>/journal/<first_seq:020>.log          one frame per group (the commit point)
/// <root>/tables/<table_id>/<first_seq:020>.log that table's frames
/// <root>/tables/<table_id>/snap-<seq:020>.snap snapshots
/// <root>/tables/<table_id>/meta                creation seq and index definitions
/// ```
///
/// One appender at a time (the caller serialises appends across processes); any number of
/// stores, in any processes, may read the same root concurrently. Reads take `&mut self`
/// because they refresh this store's view from the files first.
pub struct Store {
    root: PathBuf,
    config: Config,
    journal: Journal,
    journal_writer: Option<LogWriter>,
    tables: HashMap<TableId, Table>,
    /// Open snapshots by (table, seq).
    snaps: HashMap<(TableId, Seq), Arc<Snapshot>>,
    /// Journal seq at which each table's snapshot directory was last listed.
    listed_at: HashMap<TableId, Seq>,
    /// The last delta replayed for a past read: (table, snapshot seq, read seq). Repeated
    /// reads at one past seq (a transaction reading "as of") replay once.
    replay_cache: Option<(TableId, Seq, Seq, Arc<Delta>)>,
    /// Tables whose log failed recovery when this writer opened (damage before the tail):
    /// every read and append of one fails with that error; the other tables still work.
    damaged: HashMap<TableId, Error>,
    stats: Stats,
    /// Where every change to the files is described before it is made, if anywhere.
    wal: Option<Box<dyn WriteAhead + Send>>,
    applier: Applier,
    fates_log: FatesLog,
    /// Tables found without storage, with the journal's last seq when looked for.
    missing: HashMap<TableId, Seq>,
    /// Set when applying a batch failed: what reached the disk is unknown (a failed fsync
    /// may have dropped the pages it could not write), so this store writes nothing more;
    /// reopening recovers from what the files hold (and, in Postgres, from the WAL).
    broken: Option<String>,
    /// Journal groups examined by `settle` so far, and those among them whose transactions
    /// were not yet below the settled xid.
    settle_scanned: usize,
    settle_pending: Vec<usize>,
    /// Block cache hits and misses of this store's snapshots (counted where they happen).
    block_counters: Arc<BlockCounters>,
    /// Set for the next append by [`Store::append_unsynced`]: its syncs wait for
    /// [`Store::finish_append`].
    defer_syncs: bool,
    /// Set for the next append by [`Store::append_guarded`]: it syncs nothing.
    guarded: bool,
    /// Set while an append runs: still set when one unwound, which poisons the store
    /// (see `append_with_origins`).
    appending: bool,
    /// The syncs of the last append, when deferred; the write-ahead's batch stays open
    /// (`WriteAhead::done` not called) until they are done.
    pending_syncs: Vec<FileOp>,
    /// The thread making the chunk writes of the append in progress (stores without a
    /// write-ahead log; started by a large append's first chunk, ended with the append).
    background: Option<BackgroundWrites>,
    /// The ledger (`<root>/ledger/`), once a ledger call opened it (`store/ledger.rs`).
    ledger: Option<ledger::LedgerState>,
    /// Where tables' logs end, shared with the other stores appending to this root
    /// ([`Store::share_table_ends`]).
    table_ends: Option<Box<dyn TableEnds>>,
}

/// The parts of a read at one seq: a base snapshot and, when the live delta does not fit,
/// a delta replayed from the log.
struct ViewParts {
    snap: Option<Arc<Snapshot>>,
    replayed: Option<Arc<Delta>>,
}

/// The state of one table at one seq.
struct View<'a> {
    snap: Option<Arc<Snapshot>>,
    delta: Arc<Delta>,
    upto: Seq,
    fates: &'a dyn Fates,
}

impl View<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Row>> {
        let eff = self
            .delta
            .keys
            .get(key)
            .and_then(|vs| effect(vs, self.upto, self.fates));
        let base = || -> Result<Option<Row>> {
            match &self.snap {
                Some(s) => s.get(key),
                None => Ok(None),
            }
        };
        match eff {
            Some(Effect::Known(r)) => Ok(r),
            Some(e) => Ok(e.apply(base()?)),
            None => base(),
        }
    }

    /// Whether `key` has a row, without materialising it.
    fn exists(&self, key: &[u8]) -> Result<bool> {
        let mut known = None;
        if let Some(vs) = self.delta.keys.get(key) {
            for v in vs.iter().take_while(|v| v.seq <= self.upto) {
                if self.fates.fate(v.xid) != Fate::Committed {
                    continue;
                }
                match v.op {
                    Op::Insert(_) => known = Some(true),
                    Op::SoftDelete => known = Some(false),
                    // A patch keeps a live row live and a missing one missing.
                    Op::Patch(_) => {}
                }
            }
        }
        match (known, &self.snap) {
            (Some(b), _) => Ok(b),
            (None, Some(s)) => s.contains(key),
            (None, None) => Ok(false),
        }
    }

    /// The largest key of the table, live or not: no key above it has a row. Reads the
    /// snapshot's last key once.
    fn last_key(&self) -> Result<Option<Vec<u8>>> {
        let delta = self.delta.keys.last_key_value().map(|(k, _)| k.as_slice());
        let snap = match &self.snap {
            Some(s) => s.last_key()?,
            None => None,
        };
        Ok(delta.max(snap).map(<[u8]>::to_vec))
    }

    fn scan(&self) -> Scan {
        Scan::new(self.snap.clone(), self.delta.clone(), self.upto)
    }

    /// Rows whose `column` value has an index key of `kind` within `(lo, hi)` (index
    /// keys), ordered by (index key, key). A visible row whose value is not valid for
    /// `kind` is [`Error::BadValue`] naming it.
    fn index_range(
        &self,
        column: ColumnId,
        kind: IndexKind,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
    ) -> Result<Vec<(Vec<u8>, Row)>> {
        let in_range = |v: &[u8]| {
            (match lo {
                Bound::Included(l) => v >= l,
                Bound::Excluded(l) => v > l,
                Bound::Unbounded => true,
            }) && (match hi {
                Bound::Included(h) => v <= h,
                Bound::Excluded(h) => v < h,
                Bound::Unbounded => true,
            })
        };
        let mut candidates: BTreeSet<Vec<u8>> = BTreeSet::new();
        if let Some(s) = &self.snap {
            candidates.extend(s.index_keys(column, kind, lo, hi)?);
        }
        match self.delta.index.get(&column).filter(|ix| ix.kind == kind) {
            Some(ix) => {
                let start: (Vec<u8>, Vec<u8>) = match lo {
                    Bound::Included(l) | Bound::Excluded(l) => (l.to_vec(), Vec::new()),
                    Bound::Unbounded => (Vec::new(), Vec::new()),
                };
                if kind != IndexKind::Bytes && lo != Bound::Unbounded {
                    // Values not valid for the kind, under the empty index key: checked below.
                    let invalid = ix.set.iter().take_while(|(v, _)| v.is_empty());
                    candidates.extend(invalid.map(|(_, k)| k.clone()));
                }
                for (v, k) in ix.set.range(start..) {
                    let past_hi = match hi {
                        Bound::Included(h) => v.as_slice() > h,
                        Bound::Excluded(h) => v.as_slice() >= h,
                        Bound::Unbounded => false,
                    };
                    if past_hi {
                        break;
                    }
                    if in_range(v) {
                        candidates.insert(k.clone());
                    }
                }
            }
            // Not indexed (so) in this delta: look at every key it changed.
            None => candidates.extend(self.delta.keys.keys().cloned()),
        }
        let mut out = Vec::new();
        for k in candidates {
            let Some(row) = self.get(&k)? else {
                continue;
            };
            let Some(v) = row.get(column) else {
                continue;
            };
            let ik = match index_key(kind, v) {
                Ok(ik) => ik.into_owned(),
                Err(Error::BadValue { kind, detail }) => {
                    let mut shown: String = k.iter().take(32).map(|b| format!("{b:02x}")).collect();
                    if k.len() > 32 {
                        shown.push_str("...");
                    }
                    return Err(Error::BadValue {
                        kind,
                        detail: format!(
                            "{detail}, in column {column} of the row under key {shown}"
                        ),
                    });
                }
                Err(e) => return Err(e),
            };
            if in_range(&ik) {
                out.push((ik, k, row));
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        Ok(out.into_iter().map(|(_, k, r)| (k, r)).collect())
    }
}

/// Every visible event of a table, oldest first (see [`Store::table_history`]).
pub struct TableHistory<'a> {
    journal: &'a Journal,
    /// The table's groups in the journal, and the next one whose frame must come.
    groups: Vec<Seq>,
    next_group: usize,
    fates: &'a dyn Fates,
    maps: Vec<(PathBuf, Arc<memmap2::Mmap>)>,
    seg: usize,
    pos: usize,
    want: Seq,
    upto: Seq,
    key: Option<Vec<u8>>,
    pending: std::vec::IntoIter<HistoryEntry>,
    done: bool,
}

impl TableHistory<'_> {
    fn next_frame(&mut self) -> Result<Option<TableFrame>> {
        loop {
            let Some((path, map)) = self.maps.get(self.seg) else {
                return Err(Error::corruption(
                    self.maps.last().map_or(Path::new(""), |m| m.0.as_path()),
                    self.pos as u64,
                    format!(
                        "table log ends before group {}, which the journal records",
                        self.want
                    ),
                ));
            };
            match read_frame(map, self.pos) {
                FrameRead::Frame { payload, next } => {
                    let at = self.pos as u64;
                    let g = peek_group_seq(payload).map_err(|d| Error::corruption(path, at, d))?;
                    match self.groups.get(self.next_group) {
                        Some(&e) if e == g => self.next_group += 1,
                        Some(&e) if e < g && e <= self.want => {
                            return Err(Error::corruption(
                                path,
                                at,
                                format!(
                                    "table log has no frame of group {e}, which the journal records (a segment is missing)"
                                ),
                            ))
                        }
                        _ => {}
                    }
                    if g > self.want {
                        return Ok(None);
                    }
                    // One key's history decodes only that key's events, skipping the
                    // others without allocating.
                    let f = match &self.key {
                        Some(key) => key_events(payload, key).map(|(group_seq, xid, events)| {
                            let events = events
                                .into_iter()
                                .map(|(seq, op)| (seq, key.clone(), op))
                                .collect();
                            TableFrame {
                                group_seq,
                                xid,
                                events,
                            }
                        }),
                        None => TableFrame::decode(payload),
                    }
                    .map_err(|d| Error::corruption(path, at, d))?;
                    self.pos = next;
                    if g == self.want {
                        self.done = true;
                    }
                    return Ok(Some(f));
                }
                FrameRead::End => {
                    self.seg += 1;
                    self.pos = SEGMENT_HEADER_LEN;
                }
                FrameRead::Torn(d) | FrameRead::Bad(d) => {
                    return Err(Error::corruption(path, self.pos as u64, d));
                }
            }
        }
    }
}

impl Iterator for TableHistory<'_> {
    type Item = Result<HistoryEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.pending.next() {
                return Some(Ok(e));
            }
            if self.done {
                return None;
            }
            let frame = match self.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            if frame.events.is_empty() || self.fates.fate(frame.xid) != Fate::Committed {
                continue;
            }
            let shown = match history::shown_as(self.journal, frame.group_seq, frame.xid) {
                Ok(shown) => shown,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            let Some((commit_ts, xid, role)) = shown else {
                self.done = true;
                return Some(Err(Error::corruption(
                    &self.maps[self.seg.min(self.maps.len() - 1)].0,
                    self.pos as u64,
                    format!("group {} is not in the journal", frame.group_seq),
                )));
            };
            let entries: Vec<HistoryEntry> = frame
                .events
                .into_iter()
                .filter(|(seq, key, _)| {
                    *seq <= self.upto && self.key.as_ref().is_none_or(|k| k == key)
                })
                .map(|(seq, key, op)| HistoryEntry {
                    seq,
                    commit_ts,
                    xid,
                    role: role.clone(),
                    key,
                    op,
                })
                .collect();
            self.pending = entries.into_iter();
        }
    }
}

impl Store {
    /// Opens (creating in writer mode) the store under `root`. A writer recovers the files:
    /// torn tails are cut per `config.recovery`, table frames whose group is not in the
    /// journal are cut, and any other damage is [`Error::Corruption`]: of the whole open for
    /// the journal, of every later read and append of the table for a table log.
    pub fn open(root: impl AsRef<Path>, config: Config) -> Result<Store> {
        Store::open_with(root, config, None)
    }

    /// [`Store::open`] with a write-ahead log that is told every change to the files
    /// (recovery's cuts included) before it is made.
    pub fn open_with(
        root: impl AsRef<Path>,
        config: Config,
        wal: Option<Box<dyn WriteAhead + Send>>,
    ) -> Result<Store> {
        let applier = Applier::new(root.as_ref(), config.durability == Durability::Sync);
        Store::open_applying(root, config, wal, applier)
    }

    /// [`Store::open_with`] with `faults` injected before recovery's own changes to the
    /// files (tests of disk failures, with the `faults` feature).
    #[cfg(feature = "faults")]
    pub fn open_with_faults(
        root: impl AsRef<Path>,
        config: Config,
        wal: Option<Box<dyn WriteAhead + Send>>,
        faults: &[crate::fileops::Fault],
    ) -> Result<Store> {
        let mut applier = Applier::new(root.as_ref(), config.durability == Durability::Sync);
        for f in faults {
            applier.inject(*f);
        }
        Store::open_applying(root, config, wal, applier)
    }

    fn open_applying(
        root: impl AsRef<Path>,
        config: Config,
        wal: Option<Box<dyn WriteAhead + Send>>,
        applier: Applier,
    ) -> Result<Store> {
        let root = root.as_ref().to_path_buf();
        let writer = config.mode == OpenMode::Writer;
        let mut store = Store {
            wal,
            applier,
            fates_log: FatesLog::new(&root),
            broken: None,
            defer_syncs: false,
            guarded: false,
            appending: false,
            pending_syncs: Vec::new(),
            background: None,
            ledger: None,
            table_ends: None,
            missing: HashMap::new(),
            settle_scanned: 0,
            settle_pending: Vec::new(),
            journal: Journal::new(root.join("journal"), config.segment_size),
            root,
            config,
            journal_writer: None,
            tables: HashMap::new(),
            snaps: HashMap::new(),
            listed_at: HashMap::new(),
            replay_cache: None,
            damaged: HashMap::new(),
            stats: Stats::default(),
            block_counters: Arc::default(),
        };
        if writer && store.config.recover {
            let mut ops = Vec::new();
            for d in ["journal", "tables"] {
                if !store.root.join(d).is_dir() {
                    ops.push(FileOp::MkDir { path: d.into() });
                }
            }
            store.perform(ops, &[])?;
            // The journal's index is derived data: if it cannot be repaired, it is rebuilt
            // from the journal (and if that fails too, every open reads the journal).
            store.journal.set_maintain(true);
            match store.journal.repair_derived() {
                Ok(()) => {}
                Err(e @ Error::SegmentSizeMismatch { .. }) => return Err(e),
                Err(_) => {
                    store.journal =
                        Journal::new(store.root.join("journal"), store.config.segment_size);
                    store.journal.set_maintain(true);
                }
            }
            let refreshed = store.refresh_journal_writer();
            let _ = store.journal.write_derived();
            store.journal.set_maintain(false);
            refreshed?;
            let ids = store.table_ids()?;
            store.check_tables(&ids)?;
        } else {
            store.journal.refresh(None)?;
        }
        Ok(store)
    }

    /// Recovers the logs of `ids` now (cutting frames a crashed writer left past the
    /// journal, checking each ends with the last group the journal records for it): a
    /// table found damaged is remembered, and every later read or write of it fails with
    /// that error. A writer opened with `recover: false` does this for the tables the
    /// recovering process found damaged ([`Store::damaged_tables`]), so that it refuses
    /// them as that process does; it recovers any other table when it first appends to it.
    pub fn check_tables(&mut self, ids: &[TableId]) -> Result<()> {
        self.require_writer()?;
        for &id in ids {
            if self.damaged.contains_key(&id) {
                continue;
            }
            match self.recover_table(id) {
                Ok(()) => {}
                Err(e @ Error::Corruption { .. }) => {
                    self.damaged.insert(id, e);
                }
                Err(Error::NoSuchTable(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Syncs the journal's index files and records how much of them is on disk, so that
    /// the next recovering open rewrites only what came after (the fates worker calls
    /// this every cycle). Their writers never sync them: a commit does not wait for them.
    pub fn sync_index(&mut self) -> Result<()> {
        self.require_writer()?;
        self.journal.sync_derived()
    }

    /// The tables this store found damaged (by recovery, or by a read or write since),
    /// ascending.
    pub fn damaged_tables(&self) -> Vec<TableId> {
        let mut ids: Vec<TableId> = self.damaged.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    fn durable(&self) -> bool {
        self.config.durability == Durability::Sync
    }

    /// Makes `ops` happen: described to the write-ahead log first (if the store has one),
    /// then applied in order. `groups` are the transaction groups they make durable.
    fn perform(&mut self, ops: Vec<FileOp>, groups: &[GroupMark]) -> Result<()> {
        self.finish_append()?;
        if ops.is_empty() {
            return Ok(());
        }
        if let Some(why) = &self.broken {
            return Err(Error::Broken(why.clone()));
        }
        let mut ops = ops;
        if self.guarded && self.wal.is_some() {
            // A guarded append: a sync round makes the files durable (`syncmark`).
            ops.retain(|op| !op.is_sync());
        }
        if let Some(w) = self.wal.as_mut() {
            w.log(&ops, groups)?;
        }
        // Deferred only behind a write-ahead log: a crash before the syncs is repaired by
        // replaying it (without one, the journal could reach the disk before the table
        // frames it commits).
        let defer = self.defer_syncs && self.wal.is_some();
        let applied = if defer {
            self.pending_syncs = ops.iter().filter(|op| op.is_sync()).cloned().collect();
            ops.iter().filter(|op| !op.is_sync()).try_for_each(|op| {
                self.applier
                    .apply(std::slice::from_ref(op), false, &mut self.stats)
            })
        } else {
            self.applier.apply(&ops, false, &mut self.stats)
        };
        if let Err(e) = applied {
            self.pending_syncs.clear();
            self.broken = Some(e.to_string());
            if let Some(w) = self.wal.as_mut() {
                w.failed(&e);
            }
            return Err(e);
        }
        if !self.pending_syncs.is_empty() {
            return Ok(());
        }
        if let Some(w) = self.wal.as_mut() {
            w.done();
        }
        Ok(())
    }

    /// Like [`Store::append`], but returns once the frames are written (to the page cache)
    /// and WAL-logged, before they are synced: the caller may release its append lock, so
    /// that the next appender writes while this one syncs, and must then call
    /// [`Store::finish_append`] (any other change to the files calls it first). Only a
    /// store with a write-ahead log defers (a crash before the syncs is repaired by replay:
    /// the WAL holds every byte, flushed before the files were written); without one this
    /// is [`Store::append`]. The write-ahead's batch stays open until the syncs are done
    /// (in Postgres: the critical section, and the checkpoint held off).
    pub fn append_unsynced(&mut self, txns: &[Txn], fates: &dyn Fates) -> Result<Vec<Committed>> {
        // If the append unwinds, the flag stays set, but the store is poisoned then (no
        // later append runs on it).
        self.defer_syncs = true;
        let out = self.append(txns, fates);
        self.defer_syncs = false;
        if out.is_err() {
            // Written but failed afterwards (reading the journal back): sync now, so that
            // the caller's error leaves no batch open.
            self.finish_append()?;
        }
        out
    }

    /// Like [`Store::append`], but makes nothing durable itself: the frames are WAL-logged
    /// and written (to the page cache), with no sync, and the write-ahead log is not asked
    /// to flush the records first (a batch without syncs does not need them durable before
    /// its files are written). The caller answers for durability instead: a sync round
    /// ([`crate::syncmark`]) makes the logs durable before a checkpoint can pass the
    /// records, and recovery cuts the journal back to the round's mark, so that groups
    /// whose records a crash lost are gone before their xids are handed out again. Without
    /// a write-ahead log this is [`Store::append`].
    pub fn append_guarded(&mut self, txns: &[Txn], fates: &dyn Fates) -> Result<Vec<Committed>> {
        if self.wal.is_none() {
            return self.append(txns, fates);
        }
        // If the append unwinds the flag stays set, but the store is poisoned then.
        self.guarded = true;
        let out = self.append(txns, fates);
        self.guarded = false;
        out
    }

    /// Syncs what the last [`Store::append_unsynced`] wrote, and closes its write-ahead
    /// batch. Nothing to do after any other call.
    pub fn finish_append(&mut self) -> Result<()> {
        if self.pending_syncs.is_empty() {
            return Ok(());
        }
        let syncs = std::mem::take(&mut self.pending_syncs);
        if let Err(e) = self.applier.apply(&syncs, false, &mut self.stats) {
            self.broken = Some(e.to_string());
            if let Some(w) = self.wal.as_mut() {
                w.failed(&e);
            }
            return Err(e);
        }
        if let Some(w) = self.wal.as_mut() {
            w.done();
        }
        Ok(())
    }

    /// Reads the journal as a writer: a torn tail is cut (or reported, per the recovery
    /// mode).
    fn refresh_journal_writer(&mut self) -> Result<()> {
        self.journal.refresh(Some(self.config.recovery))?;
        if let Some((path, len)) = self.journal.torn_cut.take() {
            let mut ops = Vec::new();
            truncate_ops(relative(&self.root, &path), len, self.durable(), &mut ops);
            self.perform(ops, &[])?;
            self.journal_writer = None;
        }
        Ok(())
    }

    fn table_dir(&self, id: TableId) -> PathBuf {
        self.root.join("tables").join(id.to_string())
    }

    /// The ids of every table directory.
    pub fn table_ids(&self) -> Result<Vec<TableId>> {
        let dir = self.root.join("tables");
        let mut ids = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(e).at(&dir),
        };
        for e in entries {
            let e = e.at(&dir)?;
            if let Some(id) = e.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// Cuts a table log back to the journal and checks that it holds the last group the
    /// journal records for it.
    fn recover_table(&mut self, id: TableId) -> Result<()> {
        let dir = self.table_dir(id);
        let last_seq = self.journal.last_seq();
        let durable = self.durable();
        let mut rec = recover_table_log(
            &self.root,
            &dir,
            id,
            last_seq,
            self.config.recovery,
            durable,
        )?;
        self.perform(std::mem::take(&mut rec.ops), &[])?;
        let journal_last = self.journal.last_group_of(id)?;
        let t = self.load_table(id)?;
        t.log.forget_maps();
        t.log.relist()?;
        let expected = t.last_group(journal_last.as_ref());
        if expected > 0 {
            let bad = match (rec.last_group, &rec.writer) {
                (Some(g), _) => g != expected,
                (None, None) => true,
                (None, Some(_)) => false,
            };
            if bad {
                return Err(Error::corruption(
                    &dir,
                    0,
                    format!(
                        "table log ends at group {:?}, but the journal records group {expected}",
                        rec.last_group
                    ),
                ));
            }
        }
        t.writer = rec.writer;
        self.publish_table_end(id);
        Ok(())
    }

    /// Shares where tables' logs end with the other stores appending to this root (see
    /// [`TableEnds`]): this store takes up their positions for its first append to a table,
    /// and publishes its own after each append and recovery, starting with those of the
    /// logs it recovered when it opened.
    pub fn share_table_ends(&mut self, ends: Box<dyn TableEnds>) {
        self.table_ends = Some(ends);
        let ids: Vec<TableId> = self.tables.keys().copied().collect();
        for id in ids {
            self.publish_table_end(id);
        }
    }

    /// Publishes where this store's writer of table `id` stands, if it has one.
    pub(crate) fn publish_table_end(&self, id: TableId) {
        let (Some(ends), Some(t)) = (&self.table_ends, self.tables.get(&id)) else {
            return;
        };
        if let Some((w, seg)) = t.writer.as_ref().and_then(|w| Some((w, w.segment_seq()?))) {
            ends.put(id, seg, w.len);
        }
    }

    fn load_table(&mut self, id: TableId) -> Result<&mut Table> {
        if !self.tables.contains_key(&id) {
            // A table without storage stays without until a commit creates it, which moves
            // the journal: until then, do not look for its directory again.
            let last = self.journal.last_seq();
            if self.missing.get(&id) == Some(&last) {
                return Err(Error::NoSuchTable(id));
            }
            let t = match Table::load(self.table_dir(id), id) {
                Err(Error::NoSuchTable(_)) => {
                    self.missing.insert(id, last);
                    return Err(Error::NoSuchTable(id));
                }
                other => other?,
            };
            self.missing.remove(&id);
            self.tables.insert(id, t);
        }
        Ok(self.tables.get_mut(&id).expect("just inserted"))
    }

    /// The first seq before the group holding `seq + 1`: replaying frames with group seqs
    /// above it (and events above `seq`) yields exactly the events after `seq`.
    fn group_floor(&self, seq: Seq) -> Result<Seq> {
        Ok(match self.journal.group_of(seq + 1)? {
            Some(g) => g.first_seq - 1,
            None => seq,
        })
    }

    /// Brings one table's view up to the journal: snapshot list, rebase, and the log tail
    /// up to `upto` (frames past what a read needs are not touched).
    fn refresh_table(&mut self, id: TableId, upto: Seq) -> Result<()> {
        if let Some(e) = self.damaged.get(&id) {
            return Err(e.duplicate());
        }
        let last_seq = self.journal.last_seq();
        self.load_table(id)?;
        if self.listed_at.get(&id) != Some(&last_seq) {
            let dir = self.table_dir(id);
            let snaps = list_snapshots(&dir)?;
            self.tables.get_mut(&id).expect("loaded").snapshots = snaps;
            self.listed_at.insert(id, last_seq);
        }
        let newest = self.tables[&id].snapshots.last().copied().unwrap_or(0);
        let floor = self.group_floor(newest)?;
        let t = self.tables.get_mut(&id).expect("loaded");
        if newest > t.base {
            let delta = Arc::make_mut(&mut t.delta);
            delta.rebase(newest);
            delta.upto = delta.upto.max(floor);
            t.base = newest;
        }
        let delta = &mut t.delta;
        let base = t.base;
        let after = delta.upto;
        let groups = self.journal.groups_of(id, t.meta.created_seq.max(after))?;
        let mut applied = 0;
        let read = t.log.for_each_frame(after, upto, &groups, |f| {
            applied += f.events.iter().filter(|e| e.0 > base).count() as u64;
            // A scan may hold the delta: copied on the first change, not before.
            Arc::make_mut(delta).add_frame_after(f, base);
        });
        self.stats.tail_events += applied;
        read
    }

    fn open_snapshot(&mut self, id: TableId, seq: Seq) -> Result<Arc<Snapshot>> {
        if let Some(s) = self.snaps.get(&(id, seq)) {
            return Ok(s.clone());
        }
        let path = self.table_dir(id).join(snapshot_file_name(seq));
        let s = Arc::new(Snapshot::open(&path, id)?);
        s.count_blocks_into(self.block_counters.clone());
        if s.seq != seq {
            return Err(Error::corruption(
                &path,
                0,
                "snapshot seq does not match its name",
            ));
        }
        // Keep the base snapshot of each table and a few others.
        let base = self.tables.get(&id).map_or(0, |t| t.base);
        if self.snaps.len() > 16 {
            self.snaps.retain(|(t, s), _| *s == base && *t == id);
        }
        self.snaps.insert((id, seq), s.clone());
        Ok(s)
    }

    /// Chooses the base of a read of table `id` at `at` (already refreshed).
    fn view_parts(&mut self, id: TableId, at: Seq) -> Result<ViewParts> {
        self.view_parts_for(id, at, None)
    }

    /// [`Store::view_parts`], replaying only `only_key`'s events when a past read must
    /// replay (a point lookup: other keys' ops are skipped undecoded).
    fn view_parts_for(
        &mut self,
        id: TableId,
        at: Seq,
        only_key: Option<&[u8]>,
    ) -> Result<ViewParts> {
        for _attempt in 0..3 {
            let t = &self.tables[&id];
            if at >= t.base {
                let base = t.base;
                let snap = if base > 0 {
                    match self.open_snapshot(id, base) {
                        Ok(s) => Some(s),
                        Err(Error::IoAt { source, .. })
                            if source.kind() == std::io::ErrorKind::NotFound =>
                        {
                            // Pruned by another store between listing and opening: a newer
                            // snapshot exists; list again and rebase on it.
                            self.listed_at.remove(&id);
                            self.refresh_table(id, at)?;
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                } else {
                    None
                };
                return Ok(ViewParts {
                    snap,
                    replayed: None,
                });
            }
            let start = t
                .snapshots
                .iter()
                .rev()
                .find(|s| **s <= at)
                .copied()
                .unwrap_or(0);
            let snap = if start > 0 {
                match self.open_snapshot(id, start) {
                    Ok(s) => Some(s),
                    Err(Error::IoAt { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        // Pruned by another store meanwhile: list again and choose again.
                        let snaps = list_snapshots(&self.table_dir(id))?;
                        self.tables.get_mut(&id).expect("loaded").snapshots = snaps;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            } else {
                None
            };
            if let Some((t, s, a, d)) = &self.replay_cache {
                if (*t, *s, *a) == (id, start, at) {
                    self.stats.replay_cache_hits += 1;
                    return Ok(ViewParts {
                        snap,
                        replayed: Some(d.clone()),
                    });
                }
            }
            let floor = self.group_floor(start)?;
            let t = self.tables.get_mut(&id).expect("loaded");
            let groups = self.journal.groups_of(id, t.meta.created_seq.max(floor))?;
            let mut delta = Delta::with_indexes(floor, &t.meta.indexes);
            if let Some(key) = only_key {
                t.log.for_each_payload(floor, at, &groups, |p| {
                    let (group, xid, events) = key_events(p, key)?;
                    delta.add_key_events(key, group, xid, events, start);
                    Ok(())
                })?;
                self.stats.count_replay(&delta);
                return Ok(ViewParts {
                    snap,
                    replayed: Some(Arc::new(delta)),
                });
            }
            t.log.for_each_frame(floor, at, &groups, |f| {
                delta.add_frame_after(f, start);
            })?;
            self.stats.count_replay(&delta);
            let delta = Arc::new(delta);
            self.replay_cache = Some((id, start, at, delta.clone()));
            return Ok(ViewParts {
                snap,
                replayed: Some(delta),
            });
        }
        Err(Error::corruption(
            self.table_dir(id),
            0,
            "snapshots keep disappearing",
        ))
    }

    fn view<'f>(&self, id: TableId, parts: &ViewParts, at: Seq, fates: &'f dyn Fates) -> View<'f> {
        View {
            snap: parts.snap.clone(),
            delta: parts
                .replayed
                .clone()
                .unwrap_or_else(|| self.tables[&id].delta.clone()),
            upto: at,
            fates,
        }
    }

    /// Refreshes the journal and the table, and checks `at` against the current seq.
    fn prepare_read(&mut self, id: TableId, at: Seq) -> Result<()> {
        // Groups at or below `at` never change: the journal needs reading only when the
        // read goes past what this store has seen.
        if at > self.journal.last_seq() {
            self.journal.refresh(None)?;
        }
        let current = self.journal.last_seq();
        if at > current {
            return Err(Error::SeqInFuture {
                requested: at,
                current,
            });
        }
        self.refresh_table(id, at)
    }

    // ------------------------------------------------------------------------------------
    // Tables and indexes

    /// Creates an empty table.
    pub fn create_table(&mut self, id: TableId) -> Result<()> {
        self.require_writer()?;
        self.journal.refresh(None)?;
        let dir = self.table_dir(id);
        if dir.exists() {
            return Err(Error::TableExists(id));
        }
        let tmp = format!("tables/.tmp-{id}");
        let meta = TableMeta {
            created_seq: self.journal.last_seq(),
            indexes: Vec::new(),
        };
        let durable = self.durable();
        let mut ops = vec![
            FileOp::Remove { path: tmp.clone() },
            FileOp::MkDir { path: tmp.clone() },
        ];
        replace_ops(&format!("{tmp}/meta"), meta.encode(), durable, &mut ops);
        ops.push(FileOp::Rename {
            from: tmp,
            to: relative(&self.root, &dir),
        });
        if durable {
            ops.push(FileOp::SyncDir {
                path: "tables".into(),
            });
        }
        self.perform(ops, &[])?;
        self.tables.remove(&id);
        self.missing.remove(&id);
        self.listed_at.remove(&id);
        self.replay_cache = None;
        Ok(())
    }

    /// Drops a table: removes its directory (log, snapshots, indexes).
    pub fn drop_table(&mut self, id: TableId) -> Result<()> {
        self.require_writer()?;
        let dir = self.table_dir(id);
        if !dir.exists() {
            return Err(Error::NoSuchTable(id));
        }
        let gone = format!("tables/.dropped-{id}");
        let mut ops = vec![
            FileOp::Remove { path: gone.clone() },
            FileOp::Rename {
                from: relative(&self.root, &dir),
                to: gone.clone(),
            },
        ];
        if self.durable() {
            ops.push(FileOp::SyncDir {
                path: "tables".into(),
            });
        }
        ops.push(FileOp::Remove { path: gone });
        self.perform(ops, &[])?;
        self.tables.remove(&id);
        self.missing.remove(&id);
        self.damaged.remove(&id);
        self.listed_at.remove(&id);
        self.snaps.retain(|(t, _), _| *t != id);
        self.replay_cache = None;
        Ok(())
    }

    /// Defines a secondary index of `kind` on `column` (a no-op if it exists; an index of
    /// the column of another kind is replaced: the column has one index). It serves reads
    /// at every seq, past ones included; snapshots written from now on persist it.
    pub fn create_index(&mut self, id: TableId, column: ColumnId, kind: IndexKind) -> Result<()> {
        self.set_index(id, column, Some(kind))
    }

    pub fn drop_index(&mut self, id: TableId, column: ColumnId) -> Result<()> {
        self.set_index(id, column, None)
    }

    /// The columns of table `id` that have a secondary index, ascending, with each index's
    /// kind, as the files say now (another process may have created or dropped one).
    pub fn indexes(&mut self, id: TableId) -> Result<Vec<(ColumnId, IndexKind)>> {
        let t = self.load_table(id)?;
        let meta = TableMeta::load(&t.dir)?;
        for (c, kind) in &meta.indexes {
            Arc::make_mut(&mut t.delta).ensure_index(*c, *kind);
        }
        t.meta = meta;
        Ok(t.meta.indexes.clone())
    }

    fn set_index(&mut self, id: TableId, column: ColumnId, kind: Option<IndexKind>) -> Result<()> {
        self.require_writer()?;
        let durable = self.durable();
        let t = self.load_table(id)?;
        let mut meta = TableMeta::load(&t.dir)?;
        if meta.index_kind(column) == kind {
            t.meta = meta;
            return Ok(());
        }
        meta.indexes.retain(|(c, _)| *c != column);
        if let Some(kind) = kind {
            meta.indexes.push((column, kind));
            meta.indexes.sort_unstable();
        }
        let meta_path = t.dir.join("meta");
        let path = relative(&self.root, &meta_path);
        let mut ops = Vec::new();
        replace_ops(&path, meta.encode(), durable, &mut ops);
        self.perform(ops, &[])?;
        self.replay_cache = None;
        let t = self.tables.get_mut(&id).expect("loaded");
        match kind {
            Some(kind) => Arc::make_mut(&mut t.delta).ensure_index(column, kind),
            None => Arc::make_mut(&mut t.delta).drop_index(column),
        }
        t.meta = meta;
        Ok(())
    }

    fn require_writer(&self) -> Result<()> {
        match self.config.mode {
            OpenMode::Writer => Ok(()),
            OpenMode::Reader => Err(Error::ReadOnly),
        }
    }

    // ------------------------------------------------------------------------------------
    // Snapshots

    /// Writes the state of table `id` as of `upto` as a snapshot; returns its seq. Every
    /// group of the table at or below `upto` must be decided ([`Error::Undecided`]).
    pub fn snapshot(&mut self, id: TableId, upto: Seq, fates: &dyn Fates) -> Result<Seq> {
        self.require_writer()?;
        self.prepare_read(id, upto)?;
        if self.tables[&id].snapshots.contains(&upto) {
            return Ok(upto);
        }
        let parts = self.view_parts(id, upto)?;
        let history = self.history_section(id, upto)?;
        let durable = self.durable();
        let bytes = {
            let view = self.view(id, &parts, upto, fates);
            for vs in view.delta.keys.values() {
                for v in vs.iter().take_while(|v| v.seq <= upto) {
                    if fates.fate(v.xid) == Fate::InProgress {
                        return Err(Error::Undecided {
                            table: id,
                            seq: v.seq,
                            xid: v.xid,
                        });
                    }
                }
            }
            let t = &self.tables[&id];
            let path = t.dir.join(snapshot_file_name(upto));
            snapshot_bytes(
                &path,
                id,
                upto,
                view.scan().rows(fates),
                &t.meta.indexes,
                Some(history),
                true,
            )?
        };
        let dir = self.table_dir(id);
        let rel_dir = relative(&self.root, &dir);
        let mut ops = Vec::new();
        replace_ops(
            &format!("{rel_dir}/{}", snapshot_file_name(upto)),
            bytes,
            durable,
            &mut ops,
        );
        // The oldest snapshots beyond the number kept go in the same batch.
        let mut snaps = list_snapshots(&dir)?;
        snaps.push(upto);
        snaps.sort_unstable();
        snaps.dedup();
        while snaps.len() > self.config.snapshots_kept.max(1) {
            let old = snaps.remove(0);
            ops.push(FileOp::Remove {
                path: format!("{rel_dir}/{}", snapshot_file_name(old)),
            });
            self.snaps.remove(&(id, old));
        }
        if durable {
            ops.push(FileOp::SyncDir { path: rel_dir });
        }
        self.perform(ops, &[])?;
        self.tables.get_mut(&id).expect("loaded").snapshots = snaps;
        self.refresh_table(id, upto)?;
        Ok(upto)
    }

    /// The events of table `id` after its newest snapshot (committed or not), and about
    /// how many bytes of log they take: what a snapshot would save a cold reader.
    pub fn since_snapshot(&mut self, id: TableId) -> Result<(u64, u64)> {
        self.journal.refresh(None)?;
        self.refresh_table(id, Seq::MAX)?;
        let t = &self.tables[&id];
        let mut events = 0u64;
        let mut bytes = 0u64;
        for (key, versions) in &t.delta.keys {
            for v in versions.iter().filter(|v| v.seq > t.base) {
                events += 1;
                bytes += (key.len() + encoded_op_estimate(&v.op)) as u64;
            }
        }
        Ok((events, bytes))
    }

    // ------------------------------------------------------------------------------------
    // Settled fates

    /// The fates this store has recorded, as its files say now (see [`Store::settle`]).
    pub fn settled(&mut self) -> Result<Arc<SettledFates>> {
        self.fates_log.refresh()?;
        Ok(self.fates_log.settled.clone())
    }

    /// Records the fate of every group whose transaction's full xid is below `below`, as
    /// `fates` decides it (the caller's commit log). Every transaction with an xid below
    /// `below` must have ended (an undecided one is [`Error::Undecided`] and nothing is
    /// recorded). Returns the number of groups settled; when it is 0 nothing is written
    /// (no group has an xid in the range, so nothing will ever look one up). Afterwards the
    /// caller's commit log is never needed for the settled groups: [`SettledFates::fate`]
    /// answers.
    pub fn settle(&mut self, below: u64, fates: &dyn Fates) -> Result<usize> {
        self.require_writer()?;
        self.fates_log.refresh()?;
        let prev = self.fates_log.settled.below;
        if below <= prev {
            return Ok(0);
        }
        self.journal.refresh(None)?;
        let total = self.journal.group_count();
        let mut pending = Vec::new();
        let mut aborted = Vec::new();
        let mut settled = 0;
        for i in self
            .settle_pending
            .iter()
            .copied()
            .chain(self.settle_scanned..total)
        {
            let g = self.journal.group(i)?;
            if g.xid < prev {
                continue;
            }
            if g.xid >= below {
                pending.push(i);
                continue;
            }
            match fates.fate(g.xid) {
                Fate::Committed => {}
                Fate::Aborted => aborted.push(g.xid),
                Fate::InProgress => {
                    return Err(Error::Undecided {
                        table: 0,
                        seq: g.first_seq,
                        xid: g.xid,
                    })
                }
            }
            settled += 1;
        }
        if settled == 0 {
            // No group has an xid in the newly settled range, so no reader will ever ask
            // about those xids: there is nothing to record.
            self.settle_pending = pending;
            self.settle_scanned = total;
            return Ok(0);
        }
        let rel = crate::settled::FATES_FILE.to_string();
        let mut ops = Vec::new();
        let frame = encode_settlement(below, aborted.iter());
        if self
            .fates_log
            .should_compact(frame.len() as u64, self.config.fates_compact_bytes)
        {
            // One frame with every fate recorded so far, in place of the file.
            let mut all = self.fates_log.settled.aborted.clone();
            all.extend(aborted.iter().copied());
            let whole = encode_settlement(below, all.iter());
            replace_ops(&rel, whole, self.durable(), &mut ops);
        } else {
            if self.fates_log.torn {
                ops.push(FileOp::Truncate {
                    path: rel.clone(),
                    len: self.fates_log.off,
                });
            }
            ops.push(FileOp::Write {
                path: rel.clone(),
                offset: self.fates_log.off,
                bytes: frame,
            });
            if self.durable() {
                ops.push(FileOp::Sync { path: rel });
            }
        }
        self.perform(ops, &[])?;
        self.settle_pending = pending;
        self.settle_scanned = total;
        self.fates_log.refresh()?;
        Ok(settled)
    }

    // ------------------------------------------------------------------------------------
    // Reads

    /// Reads what other stores appended to the journal and to tables `ids` since this
    /// store last looked (a table without files is skipped), as a reader does. A writer
    /// about to append calls it before it takes its append lock, so that the append, under
    /// the lock, reads only what was appended in between.
    pub fn catch_up(&mut self, ids: &[TableId]) -> Result<()> {
        self.journal.refresh(None)?;
        for &id in ids {
            match self.refresh_table(id, Seq::MAX) {
                Ok(()) | Err(Error::NoSuchTable(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The last committed seq (the journal's end).
    pub fn current_seq(&mut self) -> Result<Seq> {
        self.journal.refresh(None)?;
        Ok(self.journal.last_seq())
    }

    /// The last seq of the last group committed at or before `ts` (microseconds); 0 if
    /// every group committed later.
    pub fn seq_at(&mut self, ts: i64) -> Result<Seq> {
        self.journal.refresh(None)?;
        self.journal.seq_at(ts)
    }

    /// The rows of table `id` as of seq `at`, in key order.
    pub fn scan<'f>(&mut self, id: TableId, at: Seq, fates: &'f dyn Fates) -> Result<ScanRows<'f>> {
        Ok(self.scan_rows(id, at)?.rows(fates))
    }

    /// The rows of table `id` as of seq `at`, in key order, read without allocating per
    /// row ([`Scan::next_row`]).
    pub fn scan_rows(&mut self, id: TableId, at: Seq) -> Result<Scan> {
        self.prepare_read(id, at)?;
        let parts = self.view_parts(id, at)?;
        let delta = match parts.replayed {
            Some(d) => d,
            None => self.tables[&id].delta.clone(),
        };
        Ok(Scan::new(parts.snap, delta, at))
    }

    /// The row under `key` in table `id` as of seq `at`.
    pub fn get(
        &mut self,
        id: TableId,
        key: &[u8],
        at: Seq,
        fates: &dyn Fates,
    ) -> Result<Option<Row>> {
        self.prepare_read(id, at)?;
        let parts = self.view_parts_for(id, at, Some(key))?;
        self.view(id, &parts, at, fates).get(key)
    }

    /// Rows whose `column` equals `value` (a value as rows hold it) as of seq `at`, by key:
    /// equal by the index's kind (see [`Store::index_range`]).
    pub fn index_eq(
        &mut self,
        id: TableId,
        column: ColumnId,
        value: &[u8],
        at: Seq,
        fates: &dyn Fates,
    ) -> Result<Vec<(Vec<u8>, Row)>> {
        self.index_range(
            id,
            column,
            Bound::Included(value),
            Bound::Included(value),
            at,
            fates,
        )
    }

    /// Rows whose `column` lies between `lo` and `hi` as of seq `at`, ordered by (value,
    /// key), in the order of the column's index: its kind's canonical keys
    /// ([`crate::index_key`]), the bytes themselves (memcmp) for kind `Bytes`. The bounds
    /// are values as rows hold them; one that is not valid for the index's kind is
    /// [`Error::BadValue`]. NULLs never match. A row the read meets whose value is not
    /// valid for the kind is `Corruption` naming the table's directory.
    pub fn index_range(
        &mut self,
        id: TableId,
        column: ColumnId,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        at: Seq,
        fates: &dyn Fates,
    ) -> Result<Vec<(Vec<u8>, Row)>> {
        self.prepare_read(id, at)?;
        let kind = match self.tables[&id].meta.index_kind(column) {
            Some(kind) => kind,
            None => {
                let t = self.tables.get_mut(&id).expect("loaded");
                t.meta = TableMeta::load(&t.dir)?;
                let Some(kind) = t.meta.index_kind(column) else {
                    return Err(Error::NoSuchIndex { table: id, column });
                };
                Arc::make_mut(&mut t.delta).ensure_index(column, kind);
                kind
            }
        };
        // The bounds' index keys (for kind Bytes, the bounds themselves).
        let (lo, hi) = (index_bound(kind, lo)?, index_bound(kind, hi)?);
        let parts = self.view_parts(id, at)?;
        let found = self.view(id, &parts, at, fates).index_range(
            column,
            kind,
            lo.as_ref().map(|k| k.as_ref()),
            hi.as_ref().map(|k| k.as_ref()),
        );
        found.map_err(|e| match e {
            Error::BadValue { kind, detail } => Error::corruption(
                self.table_dir(id),
                0,
                format!("not a valid {kind} value for the index: {detail}"),
            ),
            e => e,
        })
    }

    /// Every visible event of table `id` up to `upto`, oldest first.
    pub fn table_history<'a>(
        &'a mut self,
        id: TableId,
        upto: Seq,
        fates: &'a dyn Fates,
    ) -> Result<TableHistory<'a>> {
        self.history_iter(id, None, upto, fates)
    }

    fn history_iter<'a>(
        &'a mut self,
        id: TableId,
        key: Option<Vec<u8>>,
        upto: Seq,
        fates: &'a dyn Fates,
    ) -> Result<TableHistory<'a>> {
        self.prepare_read(id, upto)?;
        let t = self.tables.get_mut(&id).expect("loaded");
        let groups = self.journal.groups_of(id, t.meta.created_seq)?;
        let last = groups.last().copied().unwrap_or(0);
        let maps = t.log.all_maps()?;
        Ok(TableHistory {
            journal: &self.journal,
            groups,
            next_group: 0,
            fates,
            maps,
            seg: 0,
            pos: SEGMENT_HEADER_LEN,
            want: last.min(upto),
            upto,
            key,
            pending: Vec::new().into_iter(),
            done: last.min(upto) == 0,
        })
    }

    /// The keys of table `id` that differ between seq `from` and seq `to`, by key, with
    /// their rows at both (`None`: absent).
    pub fn changes(
        &mut self,
        id: TableId,
        from: Seq,
        to: Seq,
        fates: &dyn Fates,
    ) -> Result<Vec<Change>> {
        let (from, to) = (from.min(to), from.max(to));
        self.prepare_read(id, to)?;
        let floor = self.group_floor(from)?;
        let t = self.tables.get_mut(&id).expect("loaded");
        let groups = self.journal.groups_of(id, t.meta.created_seq.max(floor))?;
        let mut touched = Delta::with_indexes(floor, &[]);
        t.log.for_each_frame(floor, to, &groups, |f| {
            touched.add_frame_after(f, from);
        })?;
        let parts_from = self.view_parts(id, from)?;
        let parts_to = self.view_parts(id, to)?;
        let before = self.view(id, &parts_from, from, fates);
        let after = self.view(id, &parts_to, to, fates);
        let mut out = Vec::new();
        for (key, versions) in &touched.keys {
            let visible = versions
                .iter()
                .any(|v| v.seq <= to && fates.fate(v.xid) == Fate::Committed);
            if !visible {
                continue;
            }
            let b = before.get(key)?;
            let a = after.get(key)?;
            if a != b {
                out.push(Change {
                    key: key.clone(),
                    before: b,
                    after: a,
                });
            }
        }
        Ok(out)
    }

    /// Counters of the work this store did.
    pub fn stats(&self) -> Stats {
        let (hits, misses) = self.block_counters.get();
        Stats {
            block_cache_hits: hits,
            block_cache_misses: misses,
            journal_groups_read: self.journal.groups_read,
            ..self.stats
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Makes a later file operation of this store fail, besides any injected before (tests
    /// of disk failures, with the `faults` feature).
    #[cfg(feature = "faults")]
    pub fn inject_fault(&mut self, fault: crate::fileops::Fault) {
        self.applier.inject(fault);
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// The index key of a lookup bound (a stored value) for an index of `kind`.
fn index_bound(kind: IndexKind, b: Bound<&[u8]>) -> Result<Bound<std::borrow::Cow<'_, [u8]>>> {
    Ok(match b {
        Bound::Included(v) => Bound::Included(index_key(kind, v)?),
        Bound::Excluded(v) => Bound::Excluded(index_key(kind, v)?),
        Bound::Unbounded => Bound::Unbounded,
    })
}

/// An upper bound of an op's encoded size (tag, counts, ids, lengths, values).
fn encoded_op_estimate(op: &Op) -> usize {
    let cols = match op {
        Op::Insert(r) => r.0.as_slice(),
        Op::Patch(p) => p.as_slice(),
        Op::SoftDelete => &[],
    };
    16 + cols
        .iter()
        .map(|(_, v)| 8 + v.as_ref().map_or(0, Vec::len))
        .sum::<usize>()
}
