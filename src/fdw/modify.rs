//! Executor callbacks of INSERT, UPDATE and DELETE: each change becomes a pending event of
//! the transaction (see `txn`), checked against what the transaction can see.

use crate::engine::{self, LatestFates, SnapshotFates};
use crate::error::DriftError;
use crate::fdw::scan::{from_ctid, visible_row};
use crate::rowlock::{self, Strength, Wait};
use crate::table::TableInfo;
use crate::txn::{self, Own};
use driftdb_storage::{Event, Op, Row};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;

struct ModifyState {
    info: TableInfo,
    /// Position of the ctid junk column in the plan's output (UPDATE, DELETE).
    ctid_attno: pg_sys::AttrNumber,
    /// The ModifyTable node, whose EvalPlanQual state rechecks a row another transaction
    /// changed meanwhile (null for COPY).
    mtstate: *mut pg_sys::ModifyTableState,
    /// `INSERT ... ON CONFLICT DO NOTHING`: a row whose key exists is skipped.
    on_conflict_nothing: bool,
}

/// UPDATE and DELETE find their rows by the ctid the scan put on them.
///
/// # Safety
/// Only Postgres calls this, as the wrapper's AddForeignUpdateTargets callback, with the
/// planner's root and the range-table index of a DriftDB table that an UPDATE or DELETE
/// changes.
#[pg_guard]
pub unsafe extern "C-unwind" fn add_foreign_update_targets(
    root: *mut pg_sys::PlannerInfo,
    rtindex: pg_sys::Index,
    _target_rte: *mut pg_sys::RangeTblEntry,
    _target_relation: pg_sys::Relation,
) {
    // SAFETY: Postgres calls AddForeignUpdateTargets with the planner's root and the
    // range-table index of the target relation; makeVar builds a Var node in the planner's
    // memory context, which add_row_identity_var adds to the query's row identity columns
    // under a static name.
    unsafe {
        let var = pg_sys::makeVar(
            rtindex as _,
            pg_sys::SelfItemPointerAttributeNumber as _,
            pg_sys::TIDOID,
            -1,
            pg_sys::InvalidOid,
            0,
        );
        pg_sys::add_row_identity_var(root, var, rtindex, c"ctid".as_ptr());
    }
}

/// BeginForeignModify: the state the writes of this result relation share.
///
/// # Safety
/// Only Postgres calls this, as the wrapper's BeginForeignModify callback, with the running
/// ModifyTable state and a result relation of a DriftDB table.
#[pg_guard]
pub unsafe extern "C-unwind" fn begin_foreign_modify(
    mtstate: *mut pg_sys::ModifyTableState,
    rinfo: *mut pg_sys::ResultRelInfo,
    _fdw_private: *mut pg_sys::List,
    _subplan_index: std::ffi::c_int,
    eflags: std::ffi::c_int,
) {
    // SAFETY: Postgres calls BeginForeignModify with the running ModifyTable state and a
    // result relation of a DriftDB table whose relation descriptor is open; for UPDATE and
    // DELETE it has initialised the subplan (ps.lefttree) first, whose target list holds
    // the ctid junk column add_foreign_update_targets asked for. The ModifyState is leaked
    // into the current memory context, the executor's per-query one, which frees it when
    // the query ends or fails; ri_FdwState is the wrapper's to set. Nothing is done for
    // EXPLAIN without ANALYZE.
    unsafe {
        if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 != 0 {
            return;
        }
        txn::refuse_serializable();
        crate::asof::refuse_writes();
        let info = TableInfo::from_relation((*rinfo).ri_RelationDesc);
        let mut ctid_attno = 0;
        if (*mtstate).operation != pg_sys::CmdType::CMD_INSERT {
            let subplan = (*(*mtstate).ps.lefttree).plan;
            ctid_attno =
                pg_sys::ExecFindJunkAttributeInTlist((*subplan).targetlist, c"ctid".as_ptr());
            if ctid_attno <= 0 {
                DriftError::Internal("the ctid row identity is missing from the plan".into())
                    .report()
            }
        }
        let plan = (*mtstate).ps.plan as *mut pg_sys::ModifyTable;
        let on_conflict_nothing =
            (*plan).onConflictAction == pg_sys::OnConflictAction::ONCONFLICT_NOTHING;
        let state = ModifyState {
            info,
            ctid_attno,
            mtstate,
            on_conflict_nothing,
        };
        let ptr = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(state);
        (*rinfo).ri_FdwState = ptr.cast();
    }
}

/// The size of a row's record in a snapshot: its key and its columns as the log encodes
/// them (the varint of the key's length at most 10 bytes).
pub fn row_record_len(key: &[u8], row: &Row) -> u64 {
    (driftdb_storage::format::columns_len(&row.0) + key.len() + 10) as u64
}

/// Refuses (54000) an UPDATE that would make a row larger than a snapshot can hold as one
/// record: one INSERT cannot (its table frame is no larger), but PATCHes of several
/// transactions could build one, which no snapshot of the table could then take.
fn check_row_size(key: &[u8], row: &Row) {
    let len = row_record_len(key, row);
    let max = driftdb_storage::format::MAX_RECORD_BLOCK_RAW_LEN;
    if len > max {
        DriftError::Engine(driftdb_storage::Error::TooLarge(format!(
            "the row would take {len} bytes; a DriftDB row takes at most {max}"
        )))
        .report()
    }
}

/// Buffers one change to a row of this table in the transaction.
fn push_event(info: &TableInfo, key: Vec<u8>, op: Op) {
    txn::push(
        info.relid,
        Event {
            table: info.id,
            key,
            op,
        },
    );
}

/// COPY FROM (and tuple routing) inserts through this instead of BeginForeignModify.
///
/// # Safety
/// Only Postgres calls this, as the wrapper's BeginForeignInsert callback, with a result
/// relation of a DriftDB table and the statement's ModifyTable state (null for COPY FROM).
#[pg_guard]
pub unsafe extern "C-unwind" fn begin_foreign_insert(
    mtstate: *mut pg_sys::ModifyTableState,
    rinfo: *mut pg_sys::ResultRelInfo,
) {
    // SAFETY: Postgres calls BeginForeignInsert with a result relation of a DriftDB table
    // whose relation descriptor is open, and the ModifyTable state of the statement, or
    // null for COPY FROM (checked). ri_FdwState is null or the ModifyState
    // BeginForeignModify left for the same relation; a new one is leaked into the current
    // memory context (the query's, or the routing state's, both alive until the statement
    // ends).
    unsafe {
        txn::refuse_serializable();
        crate::asof::refuse_writes();
        if !(*rinfo).ri_FdwState.is_null() {
            // A partition the same UPDATE changes, taking a row another partition's UPDATE
            // moves into it: the state its BeginForeignModify left serves both.
            return;
        }
        let info = TableInfo::from_relation((*rinfo).ri_RelationDesc);
        // Rows routed through a partitioned table keep its ON CONFLICT DO NOTHING (COPY's
        // state has no plan).
        let plan = if mtstate.is_null() {
            std::ptr::null_mut()
        } else {
            (*mtstate).ps.plan as *mut pg_sys::ModifyTable
        };
        let on_conflict_nothing = !plan.is_null()
            && (*plan).onConflictAction == pg_sys::OnConflictAction::ONCONFLICT_NOTHING;
        let state = ModifyState {
            info,
            ctid_attno: 0,
            mtstate: std::ptr::null_mut(),
            on_conflict_nothing,
        };
        let ptr = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(state);
        (*rinfo).ri_FdwState = ptr.cast();
    }
}

/// The state Begin* left on the result relation.
///
/// # Safety
/// `rinfo` is a result relation of a DriftDB table in the running statement; the reference
/// must not outlive the statement.
unsafe fn modify_state<'a>(rinfo: *mut pg_sys::ResultRelInfo) -> &'a ModifyState {
    // SAFETY: per the caller, rinfo is a result relation of a DriftDB table; ri_FdwState is
    // null (checked) or the ModifyState BeginForeignModify or BeginForeignInsert leaked
    // into memory that lives until the statement ends, which the returned reference does
    // not outlive, and nothing mutates it meanwhile.
    unsafe {
        match ((*rinfo).ri_FdwState as *const ModifyState).as_ref() {
            Some(s) => s,
            None => DriftError::Internal("a write began without its state".into()).report(),
        }
    }
}

/// The row under `key` as this transaction sees it right now: the latest committed row
/// of every transaction that has not aborted, with this transaction's own changes laid
/// over it. Called with the row's lock held, so no other writer of the key is running.
///
/// # Safety
/// Must run inside a statement of a transaction (it reads the command counter).
unsafe fn current_row(info: &TableInfo, key: &[u8]) -> Option<Row> {
    let at = engine::read_point();
    // SAFETY: per the caller, inside a statement of the transaction:
    // GetCurrentCommandId(false) is a plain read of the backend's command counter.
    unsafe {
        let cid = pg_sys::GetCurrentCommandId(false);
        engine::with_store(|s| {
            let base = visible_row(s, info.id, key, at, &LatestFates)?;
            let mut own = txn::own_changes(info.id, Some(key), cid, true, &mut |_| base.clone());
            Ok(match own.remove(key) {
                Some(Own::Row(r)) => Some(r),
                Some(Own::Deleted) => None,
                None => base,
            })
        })
    }
}

/// A row read through the statement's snapshot, once its lock is held.
pub enum Locked {
    /// Nobody changed it since the snapshot: the row as this transaction sees it (its own
    /// changes laid over the committed row), and the committed row it is based on.
    Unchanged(Option<Row>, Option<Row>),
    /// Another transaction committed a change to it after the snapshot was taken: the row
    /// as that change left it (`None`: deleted).
    Changed(Option<Row>),
}

/// What became of row `key`, read through the statement's snapshot, now that this
/// transaction holds its lock (so every other writer of it has finished).
///
/// # Safety
/// Must run inside a statement of a transaction (it reads the active snapshot).
pub unsafe fn after_lock(info: &TableInfo, key: &[u8]) -> Locked {
    let at = engine::read_point();
    // SAFETY: per the caller, inside a statement of a transaction: the command id is a
    // plain read, and the active snapshot, when there is one, is the running statement's,
    // valid for the whole call in which SnapshotFates reads it.
    unsafe {
        let cid = pg_sys::GetCurrentCommandId(false);
        let snapshot = pg_sys::GetActiveSnapshot();
        engine::with_store(|s| {
            let base = if snapshot.is_null() {
                visible_row(s, info.id, key, at, &LatestFates)?
            } else {
                visible_row(s, info.id, key, at, &SnapshotFates::new(snapshot))?
            };
            let mut own = txn::own_changes(info.id, Some(key), cid, true, &mut |_| base.clone());
            // Rows this transaction changed were locked since: nobody else changed them.
            match own.remove(key) {
                Some(Own::Row(r)) => return Ok(Locked::Unchanged(Some(r), base)),
                Some(Own::Deleted) => return Ok(Locked::Unchanged(None, base)),
                None => {}
            }
            let latest = visible_row(s, info.id, key, at, &LatestFates)?;
            Ok(if latest == base {
                Locked::Unchanged(base.clone(), base)
            } else {
                Locked::Changed(latest)
            })
        })
    }
}

/// Whether the transaction reads through one snapshot (REPEATABLE READ): a row changed
/// since then is a serialization failure, not a row to recheck.
pub fn uses_transaction_snapshot() -> bool {
    // SAFETY: a plain read of the backend's isolation level.
    unsafe { pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32 }
}

/// Whether a slot holds no row (Postgres' `TupIsNull`).
///
/// # Safety
/// `slot` is null or a valid slot.
pub unsafe fn slot_is_empty(slot: *mut pg_sys::TupleTableSlot) -> bool {
    // SAFETY: per the caller, slot is null (checked first) or a valid slot, whose flags are
    // a plain field.
    unsafe { slot.is_null() || (*slot).tts_flags & pg_sys::TTS_FLAG_EMPTY as u16 != 0 }
}

/// Runs the statement's EvalPlanQual recheck on `latest`, the row another transaction's
/// change left under the key: the plan's conditions are evaluated again on it, and its
/// output row computed from it (heap's READ COMMITTED behaviour). Returns the recheck's
/// output row, or null when the row no longer qualifies.
///
/// # Safety
/// `state` is the ModifyState of `rinfo`, a result relation of the running UPDATE or DELETE
/// (with its range-table index), and `plan_slot` the subplan's row being changed.
unsafe fn recheck(
    state: &ModifyState,
    rinfo: *mut pg_sys::ResultRelInfo,
    plan_slot: *mut pg_sys::TupleTableSlot,
    latest: &Row,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: per the caller, state is the ModifyState of rinfo's running UPDATE or DELETE
    // (state.mtstate is checked not null: the ModifyTable node, whose EvalPlanQual state is
    // initialised), rinfo the result relation being changed, with an open relation and its
    // range-table index, and plan_slot the subplan's row with the ctid junk column.
    // EvalPlanQualSlot returns the EPQ slot of that relation, of its row type, which
    // store_row fills as a virtual tuple before EvalPlanQual rechecks it.
    unsafe {
        if state.mtstate.is_null() {
            DriftError::Internal("a recheck without its plan".into()).report()
        }
        let epq = &raw mut (*state.mtstate).mt_epqstate;
        let rel = (*rinfo).ri_RelationDesc;
        let rti = (*rinfo).ri_RangeTableIndex;
        let input = pg_sys::EvalPlanQualSlot(epq, rel, rti);
        state.info.store_row(input, latest);
        (*input).tts_tableOid = state.info.relid;
        (*input).tts_tid = ctid_of(state, plan_slot);
        pg_sys::EvalPlanQual(epq, rel, rti, input)
    }
}

/// The ctid the scan put on the row being changed.
///
/// # Safety
/// `state` is the ModifyState of a running UPDATE or DELETE and `plan_slot` the subplan's
/// row, with the ctid junk column.
unsafe fn ctid_of(
    state: &ModifyState,
    plan_slot: *mut pg_sys::TupleTableSlot,
) -> pg_sys::ItemPointerData {
    // SAFETY: per the caller, plan_slot is the subplan's row and state.ctid_attno (checked
    // positive at BeginForeignModify) the position of its ctid junk column; a ctid datum
    // that is not null points to an ItemPointerData, copied out here.
    unsafe {
        let mut isnull = false;
        let d = pg_sys::slot_getattr(plan_slot, state.ctid_attno as i32, &mut isnull);
        if isnull {
            DriftError::Internal("the ctid row identity is NULL".into()).report()
        }
        *(d.cast_mut_ptr::<pg_sys::ItemPointerData>())
    }
}

/// The key of the row being changed, found by the ctid the scan put on it, and the newest
/// version of it when the scan locked it and returned that version (see
/// `scan::lock_returned_row`).
///
/// # Safety
/// As [`ctid_of`].
unsafe fn target_key(
    state: &ModifyState,
    plan_slot: *mut pg_sys::TupleTableSlot,
) -> (Vec<u8>, Option<Row>) {
    // SAFETY: per the caller, plan_slot is the subplan's row of this UPDATE or DELETE, as
    // ctid_of needs.
    unsafe {
        let tid = ctid_of(state, plan_slot);
        let (scan, n) = from_ctid(&tid);
        let key = txn::target_key(scan, n).unwrap_or_else(|| {
            DriftError::Internal(format!("no row {n} in target scan {scan}")).report()
        });
        (key, txn::target_newest(scan, n))
    }
}

/// Checks the table's NOT NULL and CHECK constraints, which Postgres does not check for
/// foreign tables by itself, with Postgres' own errors (23502, 23514); and a partition's
/// partition constraint, as heap does: for an INSERT unless tuple routing chose the
/// partition, for an UPDATE of the partition itself always (23514). An UPDATE through a
/// partitioned table of a row that no longer belongs in its partition returns `false`
/// unchecked: the row moves (`move_row`), and its new partition checks it.
///
/// # Safety
/// `estate` is the executor state, `rinfo` a result relation of it and `slot` a row of its
/// type.
unsafe fn check_constraints(
    estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    update: bool,
) -> bool {
    // SAFETY: per the caller, estate is the executor state, rinfo a result relation whose
    // relation (and its relation and tuple descriptors) is open, and slot holds a row of
    // its type; ExecPartitionCheck and ExecConstraints are the executor's own checks,
    // raising Postgres' errors.
    unsafe {
        let rel = (*rinfo).ri_RelationDesc;
        let partition = (*(*rel).rd_rel).relispartition;
        let routed = !(*rinfo).ri_RootResultRelInfo.is_null();
        // In heap's order: an UPDATE checks the partition first, an INSERT last.
        if partition && update && !pg_sys::ExecPartitionCheck(rinfo, slot, estate, !routed) {
            return false;
        }
        if !(*(*rel).rd_att).constr.is_null() {
            pg_sys::ExecConstraints(rinfo, slot, estate);
        }
        if partition && !update && !routed {
            pg_sys::ExecPartitionCheck(rinfo, slot, estate, true);
        }
        true
    }
}

/// Locks a key a new row takes (waiting for a transaction that inserted or deleted it),
/// and tells whether a row holds it.
fn lock_new_key(info: &TableInfo, key: &[u8]) -> (bool, rowlock::Got) {
    let got = rowlock::lock_row(info.relid, key, Strength::Update, Wait::Block);
    // SAFETY: called from executor callbacks of this table.
    (unsafe { current_row(info, key) }.is_some(), got)
}

fn check_absent(info: &TableInfo, key: &[u8]) {
    if lock_new_key(info, key).0 {
        DriftError::DuplicateKey {
            relid: info.relid,
            key: key.to_vec(),
        }
        .report()
    }
}

/// ExecForeignInsert: the new row becomes an INSERT event of the transaction.
///
/// # Safety
/// Only Postgres calls this, as the wrapper's ExecForeignInsert callback, for a result
/// relation BeginForeignModify or BeginForeignInsert set up, with the new row in `slot`.
#[pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_insert(
    estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    _plan_slot: *mut pg_sys::TupleTableSlot,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: Postgres calls ExecForeignInsert with its executor state, a result relation
    // of a DriftDB table that BeginForeignModify or BeginForeignInsert set up, and a slot
    // holding the new row of its type, as insert_row and modify_state require.
    unsafe { insert_row(modify_state(rinfo), estate, rinfo, slot) }
}

/// Inserts the row in `slot` into the table of `rinfo`: an INSERT's row, or a row an
/// UPDATE moved into this partition. Null when ON CONFLICT DO NOTHING skips it.
///
/// # Safety
/// `state` is the ModifyState of `rinfo`, a result relation of the executor state `estate`,
/// and `slot` holds a row of its type.
unsafe fn insert_row(
    state: &ModifyState,
    estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: per the caller, state is rinfo's ModifyState, estate the executor state and
    // slot a row of rinfo's type (check_constraints and row_from_slot read it).
    unsafe {
        check_constraints(estate, rinfo, slot, false);
        let (key, row) = state.info.row_from_slot(slot, true);
        let key = key.expect("a new row always has a key");
        if !state.info.key.is_empty() {
            if state.on_conflict_nothing {
                let (exists, got) = lock_new_key(&state.info, &key);
                if exists {
                    if uses_transaction_snapshot() && conflict_is_invisible(&state.info, &key) {
                        DriftError::ConcurrentChange {
                            relid: state.info.relid,
                            key,
                        }
                        .report()
                    }
                    if got == rowlock::Got::Taken {
                        rowlock::unlock_row(state.info.relid, &key, Strength::Update);
                    }
                    return std::ptr::null_mut();
                }
            } else {
                check_absent(&state.info, &key);
            }
        }
        push_event(&state.info, key, Op::Insert(row));
        slot
    }
}

/// Whether the row under `key` is one the transaction's snapshot does not see (committed
/// by a transaction that ran concurrently).
fn conflict_is_invisible(info: &TableInfo, key: &[u8]) -> bool {
    // SAFETY: called from executor callbacks of this table.
    matches!(unsafe { after_lock(info, key) }, Locked::Changed(_))
}

/// Locks the row an UPDATE or DELETE changes and finds what it is now. Returns the row to
/// change and, when another transaction changed it after the statement's snapshot (READ
/// COMMITTED), the recheck's output row; `None` when the row is to be skipped (deleted
/// meanwhile, or no longer matching the statement's conditions). `newest`: the version
/// the scan already locked and returned (the statement's new row was computed from it,
/// and its BEFORE ROW triggers fired on it), which stays the newest while the lock holds.
///
/// # Safety
/// `state` is the ModifyState of `rinfo`, a result relation of the running UPDATE or
/// DELETE, and `plan_slot` the subplan's row being changed.
unsafe fn lock_target(
    state: &ModifyState,
    rinfo: *mut pg_sys::ResultRelInfo,
    plan_slot: *mut pg_sys::TupleTableSlot,
    key: &[u8],
    newest: Option<Row>,
    strength: Strength,
) -> Option<(Row, *mut pg_sys::TupleTableSlot)> {
    let info = &state.info;
    rowlock::lock_row(info.relid, key, strength, Wait::Block);
    // SAFETY: per the caller, this runs inside a statement of the transaction (an UPDATE or
    // DELETE).
    let found = match (unsafe { after_lock(info, key) }, newest) {
        (Locked::Changed(Some(latest)), Some(newest)) if latest == newest => {
            Locked::Unchanged(Some(latest), Some(newest))
        }
        (found, _) => found,
    };
    match found {
        Locked::Unchanged(current, base) => {
            txn::expect(info.relid, info.id, key, base);
            // None: deleted earlier by this transaction, nothing left to change.
            current.map(|row| (row, std::ptr::null_mut()))
        }
        Locked::Changed(_) if uses_transaction_snapshot() => DriftError::ConcurrentChange {
            relid: info.relid,
            key: key.to_vec(),
        }
        .report(),
        Locked::Changed(None) => None,
        Locked::Changed(Some(latest)) => {
            // SAFETY: per the caller, state, rinfo and plan_slot are the running UPDATE's
            // or DELETE's, as recheck requires.
            let out = unsafe { recheck(state, rinfo, plan_slot, &latest) };
            // SAFETY: recheck returns what EvalPlanQual returned: null or a valid slot.
            if unsafe { slot_is_empty(out) } {
                return None;
            }
            txn::expect(info.relid, info.id, key, Some(latest.clone()));
            Some((latest, out))
        }
    }
}

/// ExecForeignUpdate: the changed columns become a PATCH event (a SOFT_DELETE and an INSERT
/// when the key changes, or a move to another partition), once the row is locked and, if
/// another transaction changed it meanwhile, rechecked.
///
/// # Safety
/// Only Postgres calls this, as the wrapper's ExecForeignUpdate callback, for a result
/// relation BeginForeignModify set up, with the new row in `slot` and the subplan's row in
/// `plan_slot`.
#[pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_update(
    estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    plan_slot: *mut pg_sys::TupleTableSlot,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: Postgres calls ExecForeignUpdate with its executor state, a result relation
    // of a DriftDB table that BeginForeignModify set up (state, ctid junk column, old-tuple
    // slot and new-tuple projection, initialised by the executor before the first row), the
    // new row in `slot` and the subplan's row in plan_slot. ExecGetUpdateNewTuple computes
    // the new row into the relation's own new-tuple slot; every pointer passed on is one of
    // these, as the functions called require.
    unsafe {
        let state = modify_state(rinfo);
        let info = &state.info;
        let (old_key, newest) = target_key(state, plan_slot);
        let mut stays = check_constraints(estate, rinfo, slot, true);
        let (mut new_key, mut new) = info.row_from_slot(slot, false);
        // Heap takes FOR UPDATE strength when the key changes or the row leaves its
        // partition, FOR NO KEY UPDATE otherwise.
        let strength = match &new_key {
            _ if !stays => Strength::Update,
            Some(k) if *k != old_key => Strength::Update,
            _ => Strength::NoKeyUpdate,
        };
        let Some((old, rechecked)) =
            lock_target(state, rinfo, plan_slot, &old_key, newest, strength)
        else {
            return std::ptr::null_mut();
        };
        let mut slot = slot;
        if !rechecked.is_null() {
            // The new row is computed again from the row as the other transaction left it.
            let old_slot = (*rinfo).ri_oldTupleSlot;
            info.store_row(old_slot, &old);
            slot = pg_sys::ExecGetUpdateNewTuple(rinfo, rechecked, old_slot);
            crate::pg::compat::compute_stored_generated(
                rinfo,
                estate,
                slot,
                pg_sys::CmdType::CMD_UPDATE,
            );
            stays = check_constraints(estate, rinfo, slot, true);
            (new_key, new) = info.row_from_slot(slot, false);
        }
        if !stays {
            return move_row(state, estate, rinfo, slot, old_key);
        }
        let new_key = new_key.unwrap_or_else(|| old_key.clone());
        check_row_size(&new_key, &new);
        if new_key != old_key {
            // The key changed: the old row leaves, a new one arrives.
            rowlock::lock_row(info.relid, &old_key, Strength::Update, Wait::Block);
            check_absent(info, &new_key);
            push_event(info, old_key, Op::SoftDelete);
            push_event(info, new_key, Op::Insert(new));
            return slot;
        }
        let patch: Vec<_> = new
            .0
            .into_iter()
            .filter(|(c, v)| old.get(*c) != v.as_deref())
            .collect();
        if !patch.is_empty() {
            push_event(info, old_key, Op::Patch(patch));
        }
        slot
    }
}

/// An UPDATE through a partitioned table whose new row belongs in another partition moves
/// the row, as heap does (`ExecCrossPartitionUpdate`): routed from the statement's root,
/// the row is inserted into the partition it belongs in (which computes its generated
/// columns, checks its constraints and key) and leaves this one (its key's history ends
/// with a delete). The row is locked already; RETURNING is computed from the new row.
///
/// Heap fires the DELETE triggers of the old partition and the INSERT triggers of the new
/// one instead of the old partition's AFTER UPDATE triggers, and reports the new partition
/// as the row's `tableoid`; Postgres' executor, which calls this for a foreign partition,
/// fires the AFTER UPDATE triggers and reports the old partition. So a move is refused
/// (0A000) where either would show: row triggers of those kinds, RETURNING tableoid, or a
/// destination that is not a DriftDB table.
///
/// # Safety
/// `state` is the ModifyState of `rinfo`, a leaf result relation of a running UPDATE
/// through a partitioned table, `estate` its executor state and `slot` its new row.
unsafe fn move_row(
    state: &ModifyState,
    estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    old_key: Vec<u8>,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: per the caller, state is rinfo's ModifyState, estate the executor state,
    // rinfo a leaf result relation of a running UPDATE through a partitioned table
    // (state.mtstate is checked not null) and slot its new row. route_from_root returns a
    // partition result relation opened by the executor (with its trigger description and
    // WITH CHECK options, null when none) and its row in a slot of its type; a DriftDB
    // partition's BeginForeignInsert has left its ModifyState, which insert_row uses.
    unsafe {
        let info = &state.info;
        if state.mtstate.is_null() {
            DriftError::Internal("a row moves between partitions without its plan".into()).report()
        }
        let from = info.relid;
        let refuse = |to: pg_sys::Oid, why: &str| -> ! {
            DriftError::RowMove {
                from,
                to,
                why: why.into(),
            }
            .report()
        };
        let trig = (*rinfo).ri_TrigDesc;
        if !trig.is_null()
            && ((*trig).trig_update_after_row
                || (*trig).trig_delete_before_row
                || (*trig).trig_delete_after_row)
        {
            refuse(
                pg_sys::InvalidOid,
                "the partition it leaves has row triggers ON UPDATE (AFTER) or ON DELETE",
            )
        }
        if returns_tableoid(rinfo) {
            refuse(pg_sys::InvalidOid, "RETURNING names tableoid")
        }
        let (dest, dest_slot) = crate::pg::compat::route_from_root(state.mtstate, rinfo, slot);
        let to = (*(*dest).ri_RelationDesc).rd_id;
        if !crate::drop::is_driftdb_table(to) {
            refuse(to, "the partition it belongs in is not a DriftDB table")
        }
        let trig = (*dest).ri_TrigDesc;
        if !trig.is_null() && ((*trig).trig_insert_before_row || (*trig).trig_insert_after_row) {
            refuse(to, "the partition it belongs in has row triggers ON INSERT")
        }
        (*dest_slot).tts_tableOid = to;
        crate::pg::compat::compute_stored_generated(
            dest,
            estate,
            dest_slot,
            pg_sys::CmdType::CMD_INSERT,
        );
        if !(*dest).ri_WithCheckOptions.is_null() {
            // As routing checks a moved row: the UPDATE's policies, not INSERT's.
            pg_sys::ExecWithCheckOptions(
                pg_sys::WCOKind::WCO_RLS_UPDATE_CHECK,
                dest,
                dest_slot,
                estate,
            );
        }
        insert_row(modify_state(dest), estate, dest, dest_slot);
        rowlock::lock_row(info.relid, &old_key, Strength::Update, Wait::Block);
        push_event(info, old_key, Op::SoftDelete);
        slot
    }
}

/// Whether the result relation's RETURNING list reads `tableoid`.
///
/// # Safety
/// `rinfo` is a result relation of the running statement.
unsafe fn returns_tableoid(rinfo: *mut pg_sys::ResultRelInfo) -> bool {
    // SAFETY: per the caller, rinfo is a result relation; its RETURNING list is null
    // (checked) or a list of expressions, whose Vars pull_var_clause lists in a new list in
    // the current memory context.
    unsafe {
        let list = (*rinfo).ri_returningList;
        if list.is_null() {
            return false;
        }
        let vars = pg_sys::pull_var_clause(list.cast(), 0);
        pgrx::PgList::<pg_sys::Var>::from_pg(vars)
            .iter_ptr()
            .any(|v| (*v).varattno == pg_sys::TableOidAttributeNumber as pg_sys::AttrNumber)
    }
}

/// ExecForeignDelete: a SOFT_DELETE event, once the row is locked and, if another
/// transaction changed it meanwhile, rechecked.
///
/// # Safety
/// Only Postgres calls this, as the wrapper's ExecForeignDelete callback, for a result
/// relation BeginForeignModify set up, with the subplan's row in `plan_slot`.
#[pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_delete(
    _estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    plan_slot: *mut pg_sys::TupleTableSlot,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: Postgres calls ExecForeignDelete with a result relation of a DriftDB table
    // that BeginForeignModify set up, the subplan's row in plan_slot, and `slot`, a slot of
    // the relation's row type that RETURNING reads when there is a RETURNING projection.
    unsafe {
        let state = modify_state(rinfo);
        let info = &state.info;
        let (key, newest) = target_key(state, plan_slot);
        let Some((old, _)) = lock_target(state, rinfo, plan_slot, &key, newest, Strength::Update)
        else {
            return std::ptr::null_mut();
        };
        push_event(info, key, Op::SoftDelete);
        if !(*rinfo).ri_projectReturning.is_null() {
            info.store_row(slot, &old);
        }
        slot
    }
}

/// `INSERT ... ON CONFLICT` on a DriftDB table, before Postgres plans it. Postgres infers
/// an arbiter from unique indexes, which a foreign table has none of: `ON CONFLICT (key
/// columns) DO NOTHING` names the table's primary key, its one unique constraint, so the
/// arbiter is dropped and the statement runs as `ON CONFLICT DO NOTHING` (which checks
/// exactly that key). Other columns are refused with Postgres' own error (42P10), and
/// `DO UPDATE` with 0A000 and the upsert that works instead. Data-modifying CTEs too.
///
/// # Safety
/// `parse` is a query about to be planned.
pub unsafe fn rewrite_on_conflict(parse: *mut pg_sys::Query) {
    // SAFETY: per the caller, parse is null (checked) or a query about to be planned: its
    // CTE list holds CommonTableExprs whose queries are checked to be Query nodes before
    // the recursion; for an INSERT with ON CONFLICT, resultRelation is the 1-based index of
    // its relation entry in rtable, and the arbiter elements are InferenceElem nodes whose
    // expressions are checked to be Vars before they are read as such. The statement's
    // relation is locked since parse analysis, so TableInfo::of may open it.
    unsafe {
        if parse.is_null() {
            return;
        }
        for cte in pgrx::PgList::<pg_sys::CommonTableExpr>::from_pg((*parse).cteList).iter_ptr() {
            let q = (*cte).ctequery;
            if !q.is_null() && (*q).type_ == pg_sys::NodeTag::T_Query {
                rewrite_on_conflict(q.cast());
            }
        }
        let oc = (*parse).onConflict;
        if (*parse).commandType != pg_sys::CmdType::CMD_INSERT || oc.is_null() {
            return;
        }
        let rte = pg_sys::list_nth((*parse).rtable, (*parse).resultRelation - 1)
            as *mut pg_sys::RangeTblEntry;
        let relid = (*rte).relid;
        if !crate::drop::is_driftdb_table(relid) {
            return;
        }
        if (*oc).action == pg_sys::OnConflictAction::ONCONFLICT_UPDATE {
            DriftError::OnConflictUpdate { relid }.report()
        }
        if (*oc).arbiterElems.is_null() && (*oc).constraint == pg_sys::InvalidOid {
            return;
        }
        let info = TableInfo::of(relid);
        let key: std::collections::BTreeSet<i16> =
            info.key.iter().map(|&k| info.columns[k].attnum).collect();
        let mut named = std::collections::BTreeSet::new();
        for e in pgrx::PgList::<pg_sys::InferenceElem>::from_pg((*oc).arbiterElems).iter_ptr() {
            let var = (*e).expr as *mut pg_sys::Var;
            if var.is_null() || (*var).xpr.type_ != pg_sys::NodeTag::T_Var {
                DriftError::OnConflictTarget {
                    relid,
                    keyless: info.key.is_empty(),
                }
                .report()
            }
            named.insert((*var).varattno);
        }
        if key.is_empty()
            || named != key
            || !(*oc).arbiterWhere.is_null()
            || (*oc).constraint != pg_sys::InvalidOid
        {
            DriftError::OnConflictTarget {
                relid,
                keyless: info.key.is_empty(),
            }
            .report()
        }
        (*oc).arbiterElems = std::ptr::null_mut();
    }
}

#[cfg(test)]
mod unit {
    use super::row_record_len;
    use driftdb_storage::format::{put_bytes, put_columns};
    use driftdb_storage::Row;

    /// The measure an UPDATE is refused by bounds the record a snapshot writes from above,
    /// by no more than a varint.
    #[test]
    fn a_row_record_is_measured_from_above() {
        let big = vec![7u8; 300_000];
        let rows = [
            (
                b"k".to_vec(),
                Row(vec![(1, Some(b"v".to_vec())), (2, None)]),
            ),
            (
                vec![9u8; 200],
                Row(vec![(1, Some(big.clone())), (3, Some(big.clone()))]),
            ),
            (Vec::new(), Row(Vec::new())),
        ];
        for (key, row) in rows {
            let mut record = Vec::new();
            put_bytes(&mut record, &key);
            put_columns(&mut record, &row.0);
            let measured = row_record_len(&key, &row);
            let exact = record.len() as u64;
            assert!(
                measured >= exact && measured <= exact + 10,
                "{measured} for {exact}"
            );
        }
    }
}
