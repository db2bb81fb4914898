//! Executor callbacks of a scan: the table's state at the reader's view, with the
//! transaction's own earlier writes laid over it.

use crate::asof;
use crate::datum;
use crate::engine::{self, LatestFates, SnapshotFates};
use crate::error::DriftError;
use crate::fdw::asof_call::Point;
use crate::fdw::pushdown::{self, Access};
use crate::table::{Columns, TableInfo};
use crate::txn::{self, Own};
use driftdb_storage::{Fates, Row, RowRef, Store, TableId};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{PgList, PgMemoryContexts};
use std::cmp::Ordering;
use std::collections::btree_map;
use std::iter::Peekable;

/// The rows a scan returns, in key order: the engine's state merged with own changes.
pub struct Rows {
    view: View,
    base: Option<driftdb_storage::Scan>,
    own: Peekable<btree_map::IntoIter<Vec<u8>, Own>>,
    /// The own row returned last.
    current: Option<(Vec<u8>, Row)>,
}

/// One row of a scan: the engine's (borrowed from its buffer) or one held here.
pub enum ScanRow<'a> {
    Stored(RowRef<'a>),
    Held(&'a [u8], &'a Row),
}

impl ScanRow<'_> {
    pub fn key(&self) -> &[u8] {
        match self {
            ScanRow::Stored(r) => r.key,
            ScanRow::Held(k, _) => k,
        }
    }
}

impl Columns for ScanRow<'_> {
    fn column(&self, id: driftdb_storage::ColumnId) -> Option<&[u8]> {
        match self {
            ScanRow::Stored(r) => r.get(id),
            ScanRow::Held(_, r) => r.get(id),
        }
    }
}

/// Where a read looks: the present, through the statement's snapshot with the
/// transaction's own earlier writes laid over it, or one point in the past
/// (`driftdb.as_of`), where the commit log alone decides and own writes do not exist yet.
pub struct View {
    pub at: u64,
    pub fates: Box<dyn Fates>,
    own_upto: Option<pg_sys::CommandId>,
}

impl View {
    /// One point in the past: the commit log alone decides, own writes do not exist yet.
    pub fn past(at: u64) -> View {
        View {
            at,
            fates: Box::new(LatestFates),
            own_upto: None,
        }
    }

    /// Whether this read sees one point in the past.
    pub fn is_past(&self) -> bool {
        self.own_upto.is_none()
    }

    /// # Safety
    /// `snapshot` must be the running statement's MVCC snapshot.
    pub unsafe fn new(snapshot: pg_sys::Snapshot, table: TableId) -> View {
        match asof::past_point(table) {
            Some(at) => View::past(at),
            None => View {
                at: engine::read_point(),
                // SAFETY: the caller's snapshot outlives the read.
                fates: Box::new(unsafe { SnapshotFates::new(snapshot) }),
                // SAFETY: per the caller, snapshot is the running statement's MVCC
                // snapshot, a valid pointer for the whole read; curcid is a plain field of
                // it.
                own_upto: Some(unsafe { (*snapshot).curcid }),
            },
        }
    }

    /// The transaction's own changes to the whole table visible to this read, a PATCH
    /// applied to the row this read sees in the store.
    pub fn own_table_changes(
        &self,
        s: &mut Store,
        info: &TableInfo,
    ) -> driftdb_storage::Result<btree_map::BTreeMap<Vec<u8>, Own>> {
        let mut failure = None;
        let own = self.own_changes(info.id, None, &mut |k| {
            visible_row(s, info.id, k, self.at, self.fates.as_ref()).unwrap_or_else(|e| {
                failure = Some(e);
                None
            })
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(own),
        }
    }

    /// The transaction's own changes visible to this read.
    pub fn own_changes(
        &self,
        table: TableId,
        only_key: Option<&[u8]>,
        base: &mut dyn FnMut(&[u8]) -> Option<Row>,
    ) -> btree_map::BTreeMap<Vec<u8>, Own> {
        match self.own_upto {
            Some(cid) => txn::own_changes(table, only_key, cid, false, base),
            None => btree_map::BTreeMap::new(),
        }
    }
}

/// The rows under given keys (a pushed-down key lookup), in key order.
fn lookup_rows(info: &TableInfo, view: &View, keys: &[Vec<u8>]) -> Vec<(Vec<u8>, Row)> {
    engine::with_store(|s| {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let base = visible_row(s, info.id, key, view.at, view.fates.as_ref())?;
            let mut own = view.own_changes(info.id, Some(key), &mut |_| base.clone());
            let row = match own.remove(key) {
                Some(Own::Row(r)) => Some(r),
                Some(Own::Deleted) => None,
                None => base,
            };
            if let Some(r) = row {
                out.push((key.clone(), r));
            }
        }
        Ok(out)
    })
}

/// The visible row under `key`, treating a table without storage yet as empty.
pub fn visible_row(
    s: &mut Store,
    id: TableId,
    key: &[u8],
    at: u64,
    fates: &dyn Fates,
) -> driftdb_storage::Result<Option<Row>> {
    match s.get(id, key, at, fates) {
        Err(driftdb_storage::Error::NoSuchTable(_)) => Ok(None),
        other => other,
    }
}

impl Rows {
    /// Opens the rows of `info` as seen by `view`.
    pub fn open(info: &TableInfo, view: View) -> Rows {
        engine::with_store(|s| {
            let base = match s.scan_rows(info.id, view.at) {
                Ok(scan) => Some(scan),
                Err(driftdb_storage::Error::NoSuchTable(_)) => None,
                Err(e) => return Err(e),
            };
            let own = view.own_table_changes(s, info)?;
            Ok(Rows {
                view,
                base,
                own: own.into_iter().peekable(),
                current: None,
            })
        })
    }

    /// The next row in key order.
    fn next(&mut self) -> Option<ScanRow<'_>> {
        enum Take {
            Base,
            Own,
        }
        let fates = self.view.fates.as_ref();
        let take = loop {
            let order = match self.base.as_mut().and_then(|b| b.next_row(fates)) {
                Some(Err(e)) => DriftError::Engine(e).report(),
                Some(Ok(r)) => Some(match self.own.peek() {
                    None => Ordering::Less,
                    Some((o, _)) => r.key.cmp(o.as_slice()),
                }),
                None => None,
            };
            match order {
                Some(Ordering::Less) => {
                    self.base.as_mut().expect("read from").unread();
                    break Take::Base;
                }
                // The own change replaces the base row, which stays read.
                Some(Ordering::Equal) => {}
                Some(Ordering::Greater) => self.base.as_mut().expect("read from").unread(),
                None if self.own.peek().is_none() => return None,
                None => {}
            }
            match self.own.next() {
                Some((k, Own::Row(r))) => {
                    self.current = Some((k, r));
                    break Take::Own;
                }
                Some((_, Own::Deleted)) => continue,
                None => unreachable!("an own change was peeked"),
            }
        };
        match take {
            Take::Base => match self.base.as_mut().and_then(|b| b.next_row(fates)) {
                Some(Ok(r)) => Some(ScanRow::Stored(r)),
                _ => unreachable!("the row was read before"),
            },
            Take::Own => self.current.as_ref().map(|(k, r)| ScanRow::Held(k, r)),
        }
    }
}

enum Open {
    All(Box<Rows>),
    Listed(std::vec::IntoIter<(Vec<u8>, Row)>, Option<(Vec<u8>, Row)>),
}

impl Open {
    fn next(&mut self) -> Option<ScanRow<'_>> {
        match self {
            Open::All(r) => r.next(),
            Open::Listed(rows, current) => {
                *current = rows.next();
                current.as_ref().map(|(k, r)| ScanRow::Held(k, r))
            }
        }
    }
}

struct ScanState {
    info: TableInfo,
    access: Access,
    /// Initialised `fdw_exprs`: the key values (or the IN array) of a lookup.
    exprs: *mut pg_sys::List,
    /// Indexed column and range flags (`pushdown::HAS_LO`, ...) of an index scan.
    column: i16,
    flags: i32,
    /// The point of a scan planned from a `drift_as_of` call, and its initialised
    /// expression (kept out of `exprs`).
    point: Point,
    point_expr: *mut pg_sys::ExprState,
    rows: Option<Open>,
    /// The attributes to fill (by position), or `None` for all (see `plan::needed_attrs`).
    needed: Option<Vec<bool>>,
    /// Set when this scan feeds an UPDATE/DELETE: its slot in the key registry.
    target: Option<u32>,
    /// The lock this scan takes on each row it returns (a target with BEFORE ROW
    /// triggers, see `plan::trigger_lock`).
    prelock: Option<crate::rowlock::Strength>,
    /// The role whose privileges the scan reads with (a view's owner), or invalid for
    /// the current user's.
    check_as: pg_sys::Oid,
}

/// Packs (target scan, row number) into a ctid; the pair comes back in the modify
/// callbacks. Block high half: scan; block low half and offset: row number (offset 0 is
/// invalid, so offsets run from 1).
fn ctid_for(scan: u32, n: u64) -> pg_sys::ItemPointerData {
    if scan > u32::from(u16::MAX) || n >= 1 << 31 {
        DriftError::TooManyTargetRows.report()
    }
    pg_sys::ItemPointerData {
        ip_blkid: pg_sys::BlockIdData {
            bi_hi: scan as u16,
            bi_lo: (n >> 15) as u16,
        },
        ip_posid: (n & 0x7FFF) as u16 + 1,
    }
}

/// The (target scan, row number) a ctid made by [`ctid_for`] holds.
pub fn from_ctid(tid: &pg_sys::ItemPointerData) -> (u32, u64) {
    let scan = u32::from(tid.ip_blkid.bi_hi);
    let n = (u64::from(tid.ip_blkid.bi_lo) << 15) | u64::from(tid.ip_posid.saturating_sub(1));
    (scan, n)
}

/// BeginForeignScan: the scan's state, from its plan; the rows are opened at the first row.
///
/// # Safety
/// Only Postgres calls this, as the wrapper's BeginForeignScan callback, with a scan of a
/// DriftDB table whose plan `get_foreign_plan` made.
#[pg_guard]
pub unsafe extern "C-unwind" fn begin_foreign_scan(
    node: *mut pg_sys::ForeignScanState,
    eflags: std::ffi::c_int,
) {
    // SAFETY: Postgres calls BeginForeignScan with the valid state of a scan of a DriftDB
    // table, after initialising its plan, relation (ss_currentRelation, open and locked)
    // and expression context: the plan is the ForeignScan get_foreign_plan made
    // (fdw_private as to_list wrote it, and, for a scan from a drift_as_of call, the
    // point's expression last in fdw_exprs). The initialised expressions and the list copy
    // are allocated in the current memory context, the executor's per-query context, as is
    // the ScanState leaked into it, which frees it (dropping it) when the query ends or
    // fails; fdw_state is the wrapper's to set. Nothing is done for EXPLAIN without
    // ANALYZE, which never iterates the scan.
    unsafe {
        if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 != 0 {
            return;
        }
        txn::refuse_serializable();
        let plan = (*node).ss.ps.plan as *mut pg_sys::ForeignScan;
        let private = crate::fdw::plan::ScanPrivate::from_list((*plan).fdw_private);
        let is_target = private.is_target;
        let access = private.access;
        let info = TableInfo::from_relation((*node).ss.ss_currentRelation);
        let mut exprs = pg_sys::ExecInitExprList((*plan).fdw_exprs, node.cast());
        let column = private.column;
        let flags = private.flags;
        let point = private.point;
        if point != Point::Present {
            // EXECUTE on the drift_as_of function the scan was planned from, for the role
            // running it now, as the executor checks for a function call.
            let funcid = private.as_of_function;
            if !crate::pg::compat::may_execute(funcid) {
                DriftError::NoExecute { funcid }.report()
            }
        }
        let mut point_expr = std::ptr::null_mut();
        if point != Point::Present {
            let list = PgList::<pg_sys::ExprState>::from_pg(exprs);
            let n = list.len();
            point_expr = list.get_ptr(n - 1).expect("the point follows the keys");
            exprs = pg_sys::list_truncate(pg_sys::list_copy(exprs), (n - 1) as i32);
        }
        let needed = private.needed_flags(info.columns.len());
        let state = ScanState {
            needed,
            info,
            access,
            exprs,
            column,
            flags,
            point,
            point_expr,
            rows: None,
            target: is_target.then(txn::register_target_scan),
            prelock: private.prelock,
            check_as: crate::pg::compat::scan_check_as_user(node),
        };
        // Freed with the query's memory context, also when the query fails.
        let ptr = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(state);
        (*node).fdw_state = ptr.cast();
    }
}

/// IterateForeignScan: the next row, in the scan tuple slot (empty at the end). The first
/// call evaluates the keys, bounds or point and opens the rows.
///
/// # Safety
/// Only Postgres calls this, as the wrapper's IterateForeignScan callback, on a scan
/// `begin_foreign_scan` began.
#[pg_guard]
pub unsafe extern "C-unwind" fn iterate_foreign_scan(
    node: *mut pg_sys::ForeignScanState,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: Postgres calls IterateForeignScan only on a scan BeginForeignScan began, so
    // fdw_state is the ScanState it leaked into the per-query memory context, alive until
    // the query ends, and no other reference to it exists during this call; the scan tuple
    // slot, the executor state (its es_snapshot is the statement's snapshot, alive while
    // the query runs) and the expression context are the executor's. The slot gets a
    // virtual tuple of the table's row type, its datums in the current memory context, the
    // per-tuple one the executor resets per row.
    unsafe {
        let state = &mut *((*node).fdw_state as *mut ScanState);
        let slot = (*node).ss.ss_ScanTupleSlot;
        if state.rows.is_none() {
            let snapshot = (*(*node).ss.ps.state).es_snapshot;
            let econtext = (*node).ss.ps.ps_ExprContext;
            let view = scan_view(state, econtext, snapshot);
            state.rows = Some(match state.access {
                Access::Full => Open::All(Box::new(Rows::open(&state.info, view))),
                Access::IndexEq | Access::IndexRange => {
                    Open::Listed(index_rows(state, econtext, &view).into_iter(), None)
                }
                Access::Key | Access::KeyIn => {
                    let keys = lookup_keys(state, econtext);
                    Open::Listed(lookup_rows(&state.info, &view, &keys).into_iter(), None)
                }
            });
        }
        loop {
            let Some(row) = state.rows.as_mut().expect("opened").next() else {
                pg_sys::ExecClearTuple(slot);
                return slot;
            };
            state.info.store_some(slot, &row, state.needed.as_deref());
            let Some(scan) = state.target else {
                return slot;
            };
            let key = row.key().to_vec();
            let mut newest = None;
            if let Some(strength) = state.prelock {
                match lock_returned_row(node, state, slot, &key, strength) {
                    Returned::Skip => {
                        // What reading and checking the row left out allocated goes, as the
                        // executor resets the per-tuple memory (it called this scan in it)
                        // for each row it filters.
                        pg_sys::MemoryContextReset(
                            (*(*node).ss.ps.ps_ExprContext).ecxt_per_tuple_memory,
                        );
                        continue;
                    }
                    Returned::AsRead => {}
                    Returned::Newest(row) => newest = Some(row),
                }
            }
            let n = txn::record_target_key(scan, key, newest);
            (*slot).tts_tid = ctid_for(scan, n);
            return slot;
        }
    }
}

/// What a scan that locks its rows returns for one row.
enum Returned {
    /// Nothing: the statement's conditions leave it out, or it was deleted meanwhile.
    Skip,
    /// The row as the scan read it (nobody changed it since the snapshot).
    AsRead,
    /// Its newest version, committed after the snapshot, now in the slot.
    Newest(driftdb_storage::Row),
}

/// Locks row `key`, just read into `slot`, for an UPDATE or DELETE whose BEFORE ROW
/// triggers fire on the row the scan returns (`plan::trigger_lock`), as heap locks the row
/// before its triggers fire: only a row that passes the statement's conditions (evaluated
/// here as the scan node would; Postgres evaluates them again on what is returned), and,
/// when another transaction committed a change to it after the snapshot, its newest
/// version is returned instead (READ COMMITTED, whose conditions Postgres then checks on
/// it), or a serialization failure (REPEATABLE READ), as heap's EvalPlanQual does.
///
/// # Safety
/// `node` is the running foreign scan whose state is `state` and scan slot `slot`.
unsafe fn lock_returned_row(
    node: *mut pg_sys::ForeignScanState,
    state: &ScanState,
    slot: *mut pg_sys::TupleTableSlot,
    key: &[u8],
    strength: crate::rowlock::Strength,
) -> Returned {
    use crate::fdw::modify::{after_lock, uses_transaction_snapshot, Locked};
    // SAFETY: the node's expression context and qual belong to this running scan.
    unsafe {
        let econtext = (*node).ss.ps.ps_ExprContext;
        (*econtext).ecxt_scantuple = slot;
        if !pg_sys::ExecQual((*node).ss.ps.qual, econtext) {
            return Returned::Skip;
        }
    }
    crate::rowlock::lock_row(state.info.relid, key, strength, crate::rowlock::Wait::Block);
    // SAFETY: inside the scan's statement (after_lock reads the active snapshot).
    match unsafe { after_lock(&state.info, key) } {
        Locked::Unchanged(..) => Returned::AsRead,
        Locked::Changed(_) if uses_transaction_snapshot() => DriftError::ConcurrentChange {
            relid: state.info.relid,
            key: key.to_vec(),
        }
        .report(),
        Locked::Changed(None) => Returned::Skip,
        Locked::Changed(Some(row)) => {
            // SAFETY: the scan's own slot, filled with every column of the newest row.
            unsafe { state.info.store_row(slot, &row) };
            Returned::Newest(row)
        }
    }
}

/// The rows an index scan returns: the engine's matches at the reader's view, with this
/// transaction's own changed rows in place of theirs (Postgres rechecks every qual, so
/// own rows that do not match are filtered there). A NULL bound matches nothing.
///
/// # Safety
/// `state` is the state of a running index scan (`IndexEq` or `IndexRange`) and `econtext`
/// its expression context.
unsafe fn index_rows(
    state: &ScanState,
    econtext: *mut pg_sys::ExprContext,
    view: &View,
) -> Vec<(Vec<u8>, Row)> {
    use std::ops::Bound;
    // SAFETY: per the caller, state.exprs holds the ExprStates the scan initialised for the
    // index bound(s), evaluated in the scan's expression context; each non-null result is a
    // datum of the indexed column's type (pushdown only chooses an index when both sides
    // have the column's type), encoded at once.
    unsafe {
        let info = &state.info;
        let Some(col) = info.columns.iter().find(|c| c.attnum == state.column) else {
            DriftError::Internal("the indexed column of the plan is gone".into()).report()
        };
        let exprs = PgList::<pg_sys::ExprState>::from_pg(state.exprs);
        let mut values = Vec::new();
        for e in exprs.iter_ptr() {
            let mut isnull = false;
            let d = pg_sys::ExecEvalExprSwitchContext(e, econtext, &mut isnull);
            if isnull {
                return Vec::new();
            }
            // Ranges are served for integer-like types only, stored as given; an equal
            // value is brought to the column's stored form (character(n) padding).
            let stored = if state.access == Access::IndexEq {
                datum::encode_lookup(col, d)
            } else {
                Some(datum::encode(col, d))
            };
            let Some(stored) = stored else {
                return Vec::new();
            };
            values.push(stored);
        }
        let (lo, hi) = if state.access == Access::IndexEq {
            (
                Bound::Included(values[0].as_slice()),
                Bound::Included(values[0].as_slice()),
            )
        } else {
            let mut it = values.iter();
            let mut bound = |has: i32, inclusive: i32| {
                if state.flags & has == 0 {
                    Bound::Unbounded
                } else {
                    let v = it.next().expect("a value per bound").as_slice();
                    if state.flags & inclusive != 0 {
                        Bound::Included(v)
                    } else {
                        Bound::Excluded(v)
                    }
                }
            };
            let lo = bound(pushdown::HAS_LO, pushdown::LO_INCLUSIVE);
            let hi = bound(pushdown::HAS_HI, pushdown::HI_INCLUSIVE);
            (lo, hi)
        };
        let (at, fates) = (view.at, view.fates.as_ref());
        engine::with_store(|s| {
            let found = match s.index_range(info.id, col.id(), lo, hi, at, fates) {
                Err(driftdb_storage::Error::NoSuchTable(_)) => Vec::new(),
                other => other?,
            };
            let own = view.own_table_changes(s, info)?;
            let mut out: Vec<(Vec<u8>, Row)> = found
                .into_iter()
                .filter(|(k, _)| !own.contains_key(k))
                .collect();
            out.extend(own.into_iter().filter_map(|(k, o)| match o {
                Own::Row(r) => Some((k, r)),
                Own::Deleted => None,
            }));
            Ok(out)
        })
    }
}

/// Where this scan reads: at the point of the `drift_as_of` call it was planned from,
/// else as `View::new` says (the statement's snapshot, or `driftdb.as_of`).
///
/// # Safety
/// `state` is the state of a running scan, `econtext` its expression context and `snapshot`
/// the running statement's snapshot.
unsafe fn scan_view(
    state: &ScanState,
    econtext: *mut pg_sys::ExprContext,
    snapshot: pg_sys::Snapshot,
) -> View {
    // SAFETY: per the caller, snapshot is the running statement's snapshot, econtext the
    // scan's expression context and, when the scan came from a drift_as_of call,
    // state.point_expr the point's initialised ExprState, whose result has the type `point`
    // says (bigint, timestamptz or text); the ACL check reads the catalog inside the
    // running transaction.
    unsafe {
        if state.point == Point::Present {
            // The high-water mark is read after the snapshot was taken: groups past the
            // snapshot's horizon are then filtered out by the snapshot itself.
            let view = View::new(snapshot, state.info.id);
            // Under driftdb.as_of, a view owned by another role would show the reader what
            // its owner's privileges reach in the past: the reader needs SELECT on the
            // table itself (#23).
            let user = pg_sys::GetUserId();
            if view.is_past()
                && state.check_as != pg_sys::InvalidOid
                && state.check_as != user
                && pg_sys::pg_class_aclcheck(state.info.relid, user, pg_sys::ACL_SELECT as _)
                    != pg_sys::AclResult::ACLCHECK_OK
            {
                DriftError::PastThroughOtherRole {
                    relid: state.info.relid,
                }
                .report()
            }
            return view;
        }
        let mut isnull = false;
        let d = pg_sys::ExecEvalExprSwitchContext(state.point_expr, econtext, &mut isnull);
        if isnull {
            DriftError::NullPoint.report()
        }
        engine::read_point();
        let at = match state.point {
            Point::Time => crate::timetravel::seq_at_table(state.info.id, d.value() as i64),
            Point::Text => {
                let text = String::from_datum(d, false).unwrap_or_default();
                crate::asof::seq_of_text(state.info.id, &text)
            }
            _ => crate::timetravel::check_seq(state.info.id, d.value() as i64),
        };
        View::past(at)
    }
}

/// Evaluates the pushed-down key values: the keys to look up, sorted, without repeats. A
/// NULL matches no key.
///
/// # Safety
/// `state` is the state of a running key lookup (`Key` or `KeyIn`) and `econtext` its
/// expression context.
unsafe fn lookup_keys(state: &ScanState, econtext: *mut pg_sys::ExprContext) -> Vec<Vec<u8>> {
    // SAFETY: per the caller, state.exprs holds the scan's initialised key expressions,
    // evaluated in its expression context: for Key one per key column, each of the column's
    // type (the column's default equality chose it, through binary-compatible relabeling);
    // for KeyIn one array, deconstructed as its own element type (the column's or a
    // binary-compatible one, so encode_lookup reads the same bytes) into palloc'd arrays of
    // `n` datums and flags, read within `n`.
    unsafe {
        let exprs = PgList::<pg_sys::ExprState>::from_pg(state.exprs);
        let info = &state.info;
        let mut keys = Vec::new();
        match state.access {
            Access::Key => {
                let mut key = Vec::new();
                for (k, e) in exprs.iter_ptr().enumerate() {
                    let mut isnull = false;
                    let d = pg_sys::ExecEvalExprSwitchContext(e, econtext, &mut isnull);
                    if isnull {
                        return Vec::new();
                    }
                    let col = &info.columns[info.key[k]];
                    let Some(stored) = datum::encode_lookup(col, d) else {
                        return Vec::new();
                    };
                    datum::push_key_part(col, &stored, &mut key);
                }
                keys.push(key);
            }
            Access::KeyIn => {
                let mut isnull = false;
                let e = exprs.get_ptr(0).expect("one array");
                let d = pg_sys::ExecEvalExprSwitchContext(e, econtext, &mut isnull);
                if isnull {
                    return Vec::new();
                }
                let col = &info.columns[info.key[0]];
                let arr = pg_sys::pg_detoast_datum(d.cast_mut_ptr()) as *mut pg_sys::ArrayType;
                // The array's own element type: the key column's, or one binary-compatible
                // with it (text for a varchar key, the base type for a domain's), which
                // deconstruct_array requires to be named exactly.
                let elemtype = (*arr).elemtype;
                let (mut typlen, mut byval, mut align) = (0i16, false, 0 as std::ffi::c_char);
                pg_sys::get_typlenbyvalalign(elemtype, &mut typlen, &mut byval, &mut align);
                let mut elems: *mut pg_sys::Datum = std::ptr::null_mut();
                let mut nulls: *mut bool = std::ptr::null_mut();
                let mut n = 0;
                pg_sys::deconstruct_array(
                    arr,
                    elemtype,
                    typlen.into(),
                    byval,
                    align,
                    &mut elems,
                    &mut nulls,
                    &mut n,
                );
                for i in 0..n as usize {
                    if *nulls.add(i) {
                        continue;
                    }
                    let Some(stored) = datum::encode_lookup(col, *elems.add(i)) else {
                        continue;
                    };
                    let mut key = Vec::new();
                    datum::push_key_part(col, &stored, &mut key);
                    keys.push(key);
                }
            }
            Access::Full | Access::IndexEq | Access::IndexRange => {}
        }
        keys.sort();
        keys.dedup();
        keys
    }
}

/// ReScanForeignScan: the rows are opened again, with the keys evaluated again, at the next
/// row.
///
/// # Safety
/// Only Postgres calls this, as the wrapper's ReScanForeignScan callback, on a scan
/// `begin_foreign_scan` began.
#[pg_guard]
pub unsafe extern "C-unwind" fn rescan_foreign_scan(node: *mut pg_sys::ForeignScanState) {
    // SAFETY: Postgres calls ReScanForeignScan only on a scan BeginForeignScan began, so
    // fdw_state is its ScanState (see iterate_foreign_scan), and no other reference to it
    // exists during this call.
    unsafe {
        let state = &mut *((*node).fdw_state as *mut ScanState);
        // Parameters may have changed: evaluate the keys again on the next row.
        state.rows = None;
    }
}

/// EndForeignScan: the engine's scan and the target scan's keys are released.
///
/// # Safety
/// Only Postgres calls this, as the wrapper's EndForeignScan callback, on a scan
/// `begin_foreign_scan` began (or only initialised, for EXPLAIN).
#[pg_guard]
pub unsafe extern "C-unwind" fn end_foreign_scan(node: *mut pg_sys::ForeignScanState) {
    // SAFETY: Postgres calls EndForeignScan on every scan it began, also under EXPLAIN
    // without ANALYZE, where BeginForeignScan left fdw_state null (checked); otherwise it
    // is the ScanState in the per-query memory context, not yet freed (the context outlives
    // this call), and no other reference to it exists during this call.
    unsafe {
        if let Some(state) = ((*node).fdw_state as *mut ScanState).as_mut() {
            // Release the engine's scan now; the state itself goes with the memory context.
            state.rows = None;
            // The keys of the rows it returned were needed while it ran (by the writes and
            // row locks above it) and no longer are.
            if let Some(scan) = state.target.take() {
                txn::release_target_scan(scan);
            }
        }
    }
}

/// What a locking read (`FOR UPDATE` and the like) keeps of its table between rows.
struct LockState {
    info: TableInfo,
}

/// `SELECT ... FOR UPDATE` (and FOR NO KEY UPDATE, FOR SHARE, FOR KEY SHARE) locks each
/// DriftDB row the query returns, found by the ctid the scan put on it. A row that
/// another transaction changed after the statement's snapshot is returned as that change
/// left it, flagged `updated` so that Postgres rechecks the query's conditions on it (READ
/// COMMITTED); under REPEATABLE READ that is a serialization failure, as on heap. A row
/// deleted meanwhile, or locked with SKIP LOCKED, comes back empty and is left out.
///
/// # Safety
/// Only Postgres calls this, as the wrapper's RefetchForeignRow callback, with the row mark
/// of a DriftDB table and a row identity its scan returned.
#[pg_guard]
pub unsafe extern "C-unwind" fn refetch_foreign_row(
    estate: *mut pg_sys::EState,
    erm: *mut pg_sys::ExecRowMark,
    rowid: pg_sys::Datum,
    slot: *mut pg_sys::TupleTableSlot,
    updated: *mut bool,
) {
    // SAFETY: Postgres calls RefetchForeignRow with its valid executor state, the row mark
    // of a DriftDB table (whose relation is open and whose ermExtra, null at first, is the
    // wrapper's), the row identity the scan returned and a slot of the table's row type to
    // fill, and a flag to set. The LockState is leaked into the query's memory context
    // (es_query_cxt), alive until the query ends; rowid, when not null, is a ctid datum, a
    // pointer to an ItemPointerData.
    unsafe {
        *updated = false;
        let Some(strength) = crate::rowlock::Strength::of_rowmark((*erm).markType) else {
            DriftError::Internal("a row refetched without a lock".into()).report()
        };
        if (*erm).ermExtra.is_null() {
            let info = TableInfo::from_relation((*erm).relation);
            let mut cxt = PgMemoryContexts::For((*estate).es_query_cxt);
            (*erm).ermExtra = cxt.leak_and_drop_on_delete(LockState { info }).cast();
        }
        let info = &(*((*erm).ermExtra as *const LockState)).info;
        if asof::past_point(info.id).is_some() {
            DriftError::LockInPast.report()
        }
        if rowid.is_null() {
            DriftError::Internal("the ctid row identity is NULL".into()).report()
        }
        let tid = *(rowid.cast_mut_ptr::<pg_sys::ItemPointerData>());
        let (scan, n) = from_ctid(&tid);
        let Some(key) = txn::target_key(scan, n) else {
            DriftError::Internal(format!("no row {n} in locking scan {scan}")).report()
        };
        let wait = crate::rowlock::Wait::of_policy((*erm).waitPolicy);
        pg_sys::ExecClearTuple(slot);
        if crate::rowlock::lock_row(info.relid, &key, strength, wait)
            == crate::rowlock::Got::Skipped
        {
            return;
        }
        let row = match crate::fdw::modify::after_lock(info, &key) {
            crate::fdw::modify::Locked::Unchanged(row, _) => row,
            crate::fdw::modify::Locked::Changed(_)
                if crate::fdw::modify::uses_transaction_snapshot() =>
            {
                DriftError::ConcurrentChange {
                    relid: info.relid,
                    key,
                }
                .report()
            }
            crate::fdw::modify::Locked::Changed(row) => {
                *updated = true;
                row
            }
        };
        if let Some(row) = row {
            info.store_row(slot, &row);
            (*slot).tts_tableOid = info.relid;
            (*slot).tts_tid = tid;
        }
    }
}
