//! Pending writes of the running transaction, and its commit into the log.
//!
//! DML buffers its events here, tagged with the subtransaction and command that made
//! them. At `PRE_COMMIT` (the last point where an ERROR still aborts cleanly) the events
//! are appended to the log as one group under the top-level xid, under the append lock,
//! synced, and the high-water seq is published. Postgres then writes its commit record;
//! whether the group is visible is decided by the commit log, so a transaction that aborts
//! after `PRE_COMMIT` leaves frames that no reader ever sees. ROLLBACK drops the buffer;
//! ROLLBACK TO SAVEPOINT drops the events of the aborted subtransactions.

use crate::engine::{self, LatestFates};
use crate::error::DriftError;
use crate::shmem;
use driftdb_storage::{Event, FastMap, Fate, Fates, Op, Row, TableId, Txn};
use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

struct Pending {
    event: Event,
    /// Relation the event belongs to (for error messages).
    relid: pg_sys::Oid,
    subxid: pg_sys::SubTransactionId,
    cid: pg_sys::CommandId,
}

#[derive(Default)]
struct State {
    pending: Vec<Pending>,
    /// Positions in `pending` of each table's events, and of each key's: looking up what
    /// the transaction did to one row must not scan all it did (a million-row INSERT
    /// checks every key).
    by_table: HashMap<TableId, Vec<usize>>,
    by_key: HashMap<TableId, FastMap<Vec<u8>, Vec<usize>>>,
    /// Each key's events folded so far (see [`own_key_change`]): how many of its positions,
    /// and what they leave.
    folds: HashMap<(TableId, Vec<u8>), (usize, Option<Fold>)>,
    /// The shared in-flight slot this transaction's appended group holds until the
    /// transaction ends.
    inflight_slot: Option<usize>,
    /// Counter for hidden row ids of tables without a primary key.
    next_rowid: u32,
    /// Keys of the rows returned by the scan of each UPDATE/DELETE target, by position:
    /// the scan puts the position in the row's ctid, the modify callbacks look it up.
    target_keys: BTreeMap<u32, Vec<Vec<u8>>>,
    /// Rows of those scans that the scan itself locked and found changed by a transaction
    /// that committed after the statement's snapshot (see `scan::iterate_foreign_scan`):
    /// the newest version, which the scan returned instead, by (scan, position).
    target_newest: HashMap<(u32, u64), Row>,
    /// For each key this transaction updated or deleted: the committed row it based the
    /// change on (as its snapshot saw it). At commit the row must still be that, or some
    /// other transaction changed it meanwhile and this one fails with 40001 (no lost
    /// updates).
    expect: HashMap<(TableId, Vec<u8>), (pg_sys::Oid, Option<Row>)>,
    /// Schema changes to apply when the transaction commits, with the subtransaction that
    /// asked for them (a rolled-back subtransaction takes its own back).
    ddl: Vec<(Ddl, pg_sys::SubTransactionId)>,
}

/// A change to DriftDB's files that must follow the transaction's fate.
#[derive(Clone, Copy, Debug)]
pub enum Ddl {
    /// Remove the table's files after COMMIT.
    DropTable(TableId),
    /// Every table of the database with this oid (its ids' high 32 bits).
    DropDatabase(u32),
    /// Create or drop a secondary index at PRE_COMMIT (where an error still aborts).
    CreateIndex(TableId, u16, driftdb_storage::IndexKind),
    DropIndex(TableId, u16),
}

impl State {
    /// Rebuilds the positions after events were removed.
    fn reindex(&mut self) {
        self.by_table.clear();
        self.by_key.clear();
        self.folds.clear();
        for (pos, p) in self.pending.iter().enumerate() {
            self.by_table.entry(p.event.table).or_default().push(pos);
            self.by_key
                .entry(p.event.table)
                .or_default()
                .entry(p.event.key.clone())
                .or_default()
                .push(pos);
        }
    }
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// What this transaction itself did to a key so far, as seen by command `upto_cid`
/// (events of later commands, and of the running command, are not visible).
pub enum Own {
    Row(Row),
    Deleted,
}

/// Registers the transaction callbacks; called once from `_PG_init`.
pub fn init() {
    // SAFETY: registering static callbacks with Postgres during library load.
    unsafe {
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(subxact_callback), std::ptr::null_mut());
    }
}

/// DriftDB tables take no predicate locks yet, so SERIALIZABLE would silently be weaker
/// than it promises: refuse it.
pub fn refuse_serializable() {
    // SAFETY: reads the backend's isolation level.
    if unsafe { pg_sys::XactIsoLevel } == pg_sys::XACT_SERIALIZABLE as i32 {
        DriftError::Serializable.report()
    }
}

/// Buffers one event of the running command.
pub fn push(relid: pg_sys::Oid, event: Event) {
    // SAFETY: assigning the top-level xid as a heap write would; the current
    // subtransaction id and command id are plain reads of backend state.
    let (subxid, cid) = unsafe {
        pg_sys::GetTopFullTransactionId();
        (
            pg_sys::GetCurrentSubTransactionId(),
            pg_sys::GetCurrentCommandId(true),
        )
    };
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let pos = s.pending.len();
        s.by_table.entry(event.table).or_default().push(pos);
        s.by_key
            .entry(event.table)
            .or_default()
            .entry(event.key.clone())
            .or_default()
            .push(pos);
        s.pending.push(Pending {
            event,
            relid,
            subxid,
            cid,
        });
    });
}

/// Records the committed row an UPDATE or DELETE of `key` was based on (the first time
/// this transaction touches the key).
pub fn expect(relid: pg_sys::Oid, table: TableId, key: &[u8], base: Option<Row>) {
    STATE.with(|s| {
        s.borrow_mut()
            .expect
            .entry((table, key.to_vec()))
            .or_insert((relid, base));
    });
}

/// Counts groups still in flight as committed: a change by a transaction that has not
/// finished committing is a concurrent change too.
struct InFlightCommitted;

impl Fates for InFlightCommitted {
    fn fate(&self, xid: u64) -> Fate {
        match LatestFates.fate(xid) {
            Fate::InProgress => Fate::Committed,
            other => other,
        }
    }
}

/// Applies `ddl` when this transaction commits.
pub fn at_commit(ddl: Ddl) {
    // SAFETY: reads the current subtransaction id.
    let subxid = unsafe { pg_sys::GetCurrentSubTransactionId() };
    STATE.with(|s| s.borrow_mut().ddl.push((ddl, subxid)));
}

/// Removes the files of the tables a committed transaction dropped, keeping their leaf
/// sections for the ledger (`ledger::remove_dropped_tables`). Runs after the commit is
/// durable, where an ERROR is no longer possible: a failure is logged, and the files stay
/// behind (they belong to no table any more, so nothing reads them).
fn remove_dropped(ddl: Vec<(Ddl, pg_sys::SubTransactionId)>) {
    for (op, _) in ddl {
        let (table, db) = match op {
            Ddl::DropTable(table) => (Some(table), None),
            Ddl::DropDatabase(db) => (None, Some(db)),
            _ => continue,
        };
        let result = std::panic::catch_unwind(|| {
            let tables = match (table, db) {
                (Some(t), _) => vec![t],
                (_, Some(db)) => engine::try_with_store(|store| store.table_ids())?
                    .into_iter()
                    .filter(|id| (id >> 32) as u32 == db)
                    .collect(),
                _ => Vec::new(),
            };
            // Their leaf sections are kept for the ledger first.
            crate::ledger::remove_dropped_tables(&tables)
        });
        let what = match (table, db) {
            (Some(t), _) => format!("table {t}"),
            (_, db) => format!("the tables of database {}", db.unwrap_or(0)),
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => pgrx::warning!("driftdb: could not remove the files of {what}: {e}"),
            Err(_) => pgrx::warning!("driftdb: could not remove the files of {what}"),
        }
    }
}

/// Creates and drops the indexes this transaction asked for. Runs at PRE_COMMIT under the
/// append lock.
fn apply_index_ddl(
    store: &mut driftdb_storage::Store,
    ddl: &[(Ddl, pg_sys::SubTransactionId)],
) -> driftdb_storage::Result<()> {
    for (op, _) in ddl {
        match *op {
            Ddl::CreateIndex(table, col, kind) => {
                if let Err(driftdb_storage::Error::NoSuchTable(_)) =
                    store.create_index(table, col, kind)
                {
                    store.create_table(table)?;
                    store.create_index(table, col, kind)?;
                }
            }
            Ddl::DropIndex(table, col) => match store.drop_index(table, col) {
                Err(driftdb_storage::Error::NoSuchTable(_)) => {}
                other => other?,
            },
            Ddl::DropTable(_) | Ddl::DropDatabase(_) => {}
        }
    }
    Ok(())
}

/// A new hidden row id, unique cluster-wide: the top-level xid and a counter.
pub fn hidden_rowid() -> Vec<u8> {
    // SAFETY: assigns (or reads) the top-level xid.
    let xid = unsafe { pg_sys::GetTopFullTransactionId().value };
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.next_rowid += 1;
        let mut k = xid.to_be_bytes().to_vec();
        k.extend_from_slice(&s.next_rowid.to_be_bytes());
        k
    })
}

/// This transaction's own changes to `table` (or to its one key `only_key`), by key, made
/// by commands before `upto_cid` (`upto_cid` itself included when `include_current`).
/// `base` supplies the committed row a PATCH applies to.
pub fn own_changes(
    table: TableId,
    only_key: Option<&[u8]>,
    upto_cid: pg_sys::CommandId,
    include_current: bool,
    base: &mut dyn FnMut(&[u8]) -> Option<Row>,
) -> BTreeMap<Vec<u8>, Own> {
    if let Some(key) = only_key {
        let mut out = BTreeMap::new();
        if let Some(own) = own_key_change(table, key, upto_cid, include_current, base) {
            out.insert(key.to_vec(), own);
        }
        return out;
    }
    STATE.with(|s| {
        let s = s.borrow();
        let mut out: BTreeMap<Vec<u8>, Own> = BTreeMap::new();
        let positions = s.by_table.get(&table);
        for &pos in positions.map(Vec::as_slice).unwrap_or_default() {
            let p = &s.pending[pos];
            if p.cid > upto_cid || (p.cid == upto_cid && !include_current) {
                continue;
            }
            let key = &p.event.key;
            let next = match &p.event.op {
                Op::Insert(row) => Own::Row(row.clone()),
                Op::SoftDelete => Own::Deleted,
                Op::Patch(cols) => {
                    let mut row = match out.remove(key) {
                        Some(Own::Row(r)) => r,
                        Some(Own::Deleted) => continue,
                        None => match base(key) {
                            Some(r) => r,
                            None => continue,
                        },
                    };
                    row.apply_patch(cols);
                    Own::Row(row)
                }
            };
            out.insert(key.clone(), next);
        }
        out
    })
}

/// One key's own events folded into what they leave, whatever committed row a PATCH
/// applies to: a key changed many times in a transaction is folded once per event, not
/// once per statement per event (#22: updating one row 70,000 times took over ten
/// minutes).
#[derive(Clone)]
enum Fold {
    /// Only PATCHes so far: the columns they set, on the committed row.
    Patch(Row),
    Row(Row),
    Deleted,
}

impl Fold {
    fn step(state: Option<Fold>, op: &Op) -> Option<Fold> {
        Some(match (state, op) {
            (_, Op::Insert(row)) => Fold::Row(row.clone()),
            (_, Op::SoftDelete) => Fold::Deleted,
            (Some(Fold::Deleted), Op::Patch(_)) => Fold::Deleted,
            (Some(Fold::Row(mut r)), Op::Patch(cols)) => {
                r.apply_patch(cols);
                Fold::Row(r)
            }
            (Some(Fold::Patch(mut acc)), Op::Patch(cols)) => {
                acc.apply_patch(cols);
                Fold::Patch(acc)
            }
            (None, Op::Patch(cols)) => {
                let mut acc = Row(Vec::new());
                acc.apply_patch(cols);
                Fold::Patch(acc)
            }
        })
    }
}

/// Events of one key from which their fold is kept between calls.
const FOLD_FROM: usize = 8;

/// What this transaction did to one key, as [`own_changes`] says it. The fold of the
/// key's events is kept between calls and extended by the events added since.
fn own_key_change(
    table: TableId,
    key: &[u8],
    upto_cid: pg_sys::CommandId,
    include_current: bool,
    base: &mut dyn FnMut(&[u8]) -> Option<Row>,
) -> Option<Own> {
    let fold = STATE.with(|s| {
        let s = &mut *s.borrow_mut();
        let positions = s.by_key.get(&table).and_then(|m| m.get(key))?;
        // Command ids never decrease along a key's events: the visible ones are a prefix.
        let visible = positions.partition_point(|&pos| {
            let cid = s.pending[pos].cid;
            cid < upto_cid || (cid == upto_cid && include_current)
        });
        let cached = s.folds.get(&(table, key.to_vec())).cloned();
        let (from, mut state) = match cached {
            Some((done, state)) if done <= visible => (done, state),
            _ => (0, None),
        };
        for &pos in &positions[from..visible] {
            state = Fold::step(state, &s.pending[pos].event.op);
        }
        // Kept for keys with several events only: a bulk write's keys, changed once
        // each, do not keep a second copy of their rows.
        if visible > from && visible >= FOLD_FROM {
            s.folds
                .insert((table, key.to_vec()), (visible, state.clone()));
        }
        state
    })?;
    match fold {
        Fold::Row(r) => Some(Own::Row(r)),
        Fold::Deleted => Some(Own::Deleted),
        Fold::Patch(acc) => base(key).map(|mut r| {
            r.apply_patch(&acc.0);
            Own::Row(r)
        }),
    }
}

/// Remembers the keys a target scan returned; returns the scan's slot in the registry.
pub fn register_target_scan() -> u32 {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let id = s.target_keys.keys().next_back().map_or(0, |k| k + 1);
        s.target_keys.insert(id, Vec::new());
        id
    })
}

/// Records the key of the next row of target scan `scan` (rows are numbered from 0), and
/// the newest version the scan returned for it when it locked the row and found it
/// changed since the statement's snapshot. Returns the row's number.
pub fn record_target_key(scan: u32, key: Vec<u8>, newest: Option<Row>) -> u64 {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let keys = s.target_keys.get_mut(&scan).expect("registered");
        keys.push(key);
        let n = keys.len() as u64 - 1;
        if let Some(row) = newest {
            s.target_newest.insert((scan, n), row);
        }
        n
    })
}

/// Forgets the keys of target scan `scan`, which has ended.
pub fn release_target_scan(scan: u32) {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.target_keys.remove(&scan);
        s.target_newest.retain(|&(sc, _), _| sc != scan);
    });
}

/// The newest version target scan `scan` returned for its row `n`, having locked it
/// (see [`record_target_key`]).
pub fn target_newest(scan: u32, n: u64) -> Option<Row> {
    STATE.with(|s| s.borrow().target_newest.get(&(scan, n)).cloned())
}

/// The key of row `n` of target scan `scan`.
pub fn target_key(scan: u32, n: u64) -> Option<Vec<u8>> {
    STATE.with(|s| s.borrow().target_keys.get(&scan)?.get(n as usize).cloned())
}

/// The transaction's fate is in the commit log now: its group no longer holds back the
/// stable seq.
fn release_inflight() {
    if let Some(slot) = STATE.with(|s| s.borrow_mut().inflight_slot.take()) {
        shmem::STATE.exclusive().inflight[slot] = shmem::Inflight::default();
    }
}

fn has_pending() -> bool {
    STATE.with(|s| !s.borrow().pending.is_empty())
}

fn clear() {
    STATE.with(|s| *s.borrow_mut() = State::default());
}

/// Appends the transaction's events as one group. Runs at PRE_COMMIT.
fn commit() {
    let (events, expect): (Vec<(Event, pg_sys::Oid)>, Vec<_>) = STATE.with(|s| {
        let mut s = s.borrow_mut();
        let events = s.pending.drain(..).map(|p| (p.event, p.relid)).collect();
        s.by_table.clear();
        s.by_key.clear();
        s.folds.clear();
        (events, s.expect.drain().collect())
    });
    let ddl: Vec<_> = STATE.with(|s| s.borrow().ddl.clone());
    if ddl
        .iter()
        .any(|(op, _)| !matches!(op, Ddl::DropTable(_) | Ddl::DropDatabase(_)))
    {
        engine::with_store(|store| {
            let _lock = shmem::STATE.exclusive();
            apply_index_ddl(store, &ddl)
        });
    }
    if events.is_empty() {
        return;
    }
    // SAFETY: reads of backend state; the xid was assigned by the first write.
    let (xid, now, role) = unsafe {
        let xid = pg_sys::GetTopFullTransactionId().value;
        let now = pg_sys::GetCurrentTimestamp();
        let name = pg_sys::GetUserNameFromId(pg_sys::GetUserId(), false);
        (
            xid,
            now,
            std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned(),
        )
    };
    let relids: BTreeMap<TableId, pg_sys::Oid> =
        events.iter().map(|(e, r)| (e.table, *r)).collect();
    let txn = Txn {
        xid,
        commit_ts: now,
        role,
        events: events.into_iter().map(|(e, _)| e).collect(),
    };
    engine::with_store(|store| {
        // Old groups' fates come from DriftDB's own record, not the commit log.
        engine::refresh_settled(store)?;
        // What other backends appended since this one last looked is read before the
        // append lock is taken: under it, the append reads only the few groups in between.
        let tables: Vec<TableId> = relids.keys().copied().collect();
        store.catch_up(&tables)?;
        let (mut state, slot) = shmem::lock_with_slot();
        let now = store.current_seq()?;
        // In key order: neighbouring keys share snapshot blocks (random order missed the
        // block cache on every key).
        let mut expect = expect;
        expect.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for ((table, key), (relid, expected)) in expect {
            let current = match store.get(table, &key, now, &InFlightCommitted) {
                Err(driftdb_storage::Error::NoSuchTable(_)) => None,
                other => other?,
            };
            if current != expected {
                drop(state);
                DriftError::ConcurrentChange { relid, key }.report()
            }
        }
        loop {
            // With the sync worker guarding durability the append syncs nothing (and does
            // not flush its WAL records first): Postgres' commit record flushes them, and
            // the worker's round before the next checkpoint completes syncs the files.
            // Without it, the files are synced after the lock is released.
            let appended = if state.guard {
                store.append_guarded(std::slice::from_ref(&txn), &LatestFates)
            } else {
                store.append_unsynced(std::slice::from_ref(&txn), &LatestFates)
            };
            match appended {
                Ok(done) => {
                    // The append wrote WAL records under this transaction's xid, so Postgres
                    // flushes the commit record synchronously (unless the user chose
                    // synchronous_commit = off).
                    state.high_water = state.high_water.max(done[0].last_seq);
                    state.inflight[slot] = shmem::Inflight {
                        first_seq: done[0].first_seq,
                        xid: done[0].xid as u32,
                        table: 0,
                    };
                    drop(state);
                    STATE.with(|s| s.borrow_mut().inflight_slot = Some(slot));
                    // The frames are in the WAL (flushed) and written; they are synced
                    // after the lock is released, so the next committer appends while this
                    // one syncs (its checkpoint delay holds until then).
                    store.finish_append()?;
                    return Ok(());
                }
                // A table's storage is created by the first commit that writes to it.
                Err(driftdb_storage::Error::NoSuchTable(table)) => store.create_table(table)?,
                Err(driftdb_storage::Error::KeyExists { table, key }) => {
                    drop(state);
                    DriftError::DuplicateKey {
                        relid: relids[&table],
                        key,
                    }
                    .report()
                }
                Err(driftdb_storage::Error::KeyMissing { table, key }) => {
                    drop(state);
                    DriftError::ConcurrentChange {
                        relid: relids[&table],
                        key,
                    }
                    .report()
                }
                Err(e) => return Err(e),
            }
        }
    });
}

#[pgrx::pg_guard]
extern "C-unwind" fn xact_callback(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT => commit(),
        pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE if has_pending() => {
            DriftError::PrepareWithWrites.report()
        }
        // An index made or dropped, a table or database dropped: applied at COMMIT by this
        // backend, which a COMMIT PREPARED (from any backend) would never do (#22).
        pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE if STATE.with(|s| !s.borrow().ddl.is_empty()) => {
            DriftError::PrepareWithDdl.report()
        }
        pg_sys::XactEvent::XACT_EVENT_COMMIT => {
            let ddl = STATE.with(|s| std::mem::take(&mut s.borrow_mut().ddl));
            release_inflight();
            clear();
            crate::rowlock::clear();
            remove_dropped(ddl);
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            release_inflight();
            clear();
            crate::rowlock::clear();
        }
        _ => {}
    }
}

#[pgrx::pg_guard]
extern "C-unwind" fn subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    parent_subid: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    match event {
        pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => STATE.with(|s| {
            let mut s = s.borrow_mut();
            let before = s.pending.len();
            s.pending.retain(|p| p.subxid != my_subid);
            if s.pending.len() != before {
                s.reindex();
            }
            s.ddl.retain(|d| d.1 != my_subid);
            drop(s);
            crate::rowlock::subtransaction_aborted();
        }),
        pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => STATE.with(|s| {
            let mut s = s.borrow_mut();
            for p in s.pending.iter_mut() {
                if p.subxid == my_subid {
                    p.subxid = parent_subid;
                }
            }
            for d in s.ddl.iter_mut() {
                if d.1 == my_subid {
                    d.1 = parent_subid;
                }
            }
        }),
        _ => {}
    }
}
