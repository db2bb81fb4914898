//! Executor callbacks of INSERT, UPDATE and DELETE: each change becomes a pending event of
//! the transaction (see `txn`), checked against what the transaction can see.

use crate::engine::{self, LatestFates, SnapshotFates};
use crate::error::DriftError;
use crate::fdw::scan::{from_ctid, visible_row};
use crate::fdw::table::TableInfo;
use crate::txn::{self, Own};
use driftdb_storage::{Event, Op, Row};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;

struct ModifyState {
    info: TableInfo,
    /// Position of the ctid junk column in the plan's output (UPDATE, DELETE).
    ctid_attno: pg_sys::AttrNumber,
}

/// UPDATE and DELETE find their rows by the ctid the scan put on them.
#[pg_guard]
pub unsafe extern "C-unwind" fn add_foreign_update_targets(
    root: *mut pg_sys::PlannerInfo,
    rtindex: pg_sys::Index,
    _target_rte: *mut pg_sys::RangeTblEntry,
    _target_relation: pg_sys::Relation,
) {
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

#[pg_guard]
pub unsafe extern "C-unwind" fn begin_foreign_modify(
    mtstate: *mut pg_sys::ModifyTableState,
    rinfo: *mut pg_sys::ResultRelInfo,
    _fdw_private: *mut pg_sys::List,
    _subplan_index: std::ffi::c_int,
    eflags: std::ffi::c_int,
) {
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
        let state = ModifyState { info, ctid_attno };
        let ptr = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(state);
        (*rinfo).ri_FdwState = ptr.cast();
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
#[pg_guard]
pub unsafe extern "C-unwind" fn begin_foreign_insert(
    _mtstate: *mut pg_sys::ModifyTableState,
    rinfo: *mut pg_sys::ResultRelInfo,
) {
    unsafe {
        txn::refuse_serializable();
        crate::asof::refuse_writes();
        let info = TableInfo::from_relation((*rinfo).ri_RelationDesc);
        let state = ModifyState {
            info,
            ctid_attno: 0,
        };
        let ptr = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(state);
        (*rinfo).ri_FdwState = ptr.cast();
    }
}

/// The state Begin* left on the result relation.
unsafe fn modify_state<'a>(rinfo: *mut pg_sys::ResultRelInfo) -> &'a ModifyState {
    unsafe {
        match ((*rinfo).ri_FdwState as *const ModifyState).as_ref() {
            Some(s) => s,
            None => DriftError::Internal("a write began without its state".into()).report(),
        }
    }
}

/// The row under `key` as this transaction sees it right now, and the committed row
/// beneath its own changes. The committed row is the one the reader's snapshot sees
/// (`snapshot_fates`) or, for uniqueness checks, the latest one of every transaction that
/// has not aborted, so that concurrent writers are not missed.
unsafe fn current_row(
    info: &TableInfo,
    key: &[u8],
    snapshot_fates: bool,
) -> (Option<Row>, Option<Row>) {
    let at = engine::read_point();
    unsafe {
        let cid = pg_sys::GetCurrentCommandId(false);
        let snapshot = pg_sys::GetActiveSnapshot();
        engine::with_store(|s| {
            let base = if snapshot_fates && !snapshot.is_null() {
                visible_row(s, info.id, key, at, &SnapshotFates::new(snapshot))?
            } else {
                visible_row(s, info.id, key, at, &LatestFates)?
            };
            let mut own = txn::own_changes(info.id, Some(key), cid, true, &mut |_| base.clone());
            let current = match own.remove(key) {
                Some(Own::Row(r)) => Some(r),
                Some(Own::Deleted) => None,
                None => base.clone(),
            };
            Ok((current, base))
        })
    }
}

/// The row an UPDATE or DELETE changes, remembering what it was based on.
unsafe fn row_to_change(info: &TableInfo, key: &[u8]) -> Row {
    let (current, base) = unsafe { current_row(info, key, true) };
    txn::expect(info.relid, info.id, key, base);
    match current {
        Some(row) => row,
        None => DriftError::ConcurrentChange {
            relid: info.relid,
            key: key.to_vec(),
        }
        .report(),
    }
}

unsafe fn target_key(state: &ModifyState, plan_slot: *mut pg_sys::TupleTableSlot) -> Vec<u8> {
    unsafe {
        let mut isnull = false;
        let d = pg_sys::slot_getattr(plan_slot, state.ctid_attno as i32, &mut isnull);
        if isnull {
            DriftError::Internal("the ctid row identity is NULL".into()).report()
        }
        let tid = &*(d.cast_mut_ptr::<pg_sys::ItemPointerData>());
        let (scan, n) = from_ctid(tid);
        txn::target_key(scan, n).unwrap_or_else(|| {
            DriftError::Internal(format!("no row {n} in target scan {scan}")).report()
        })
    }
}

/// Checks the table's NOT NULL and CHECK constraints, which Postgres does not check for
/// foreign tables by itself, with Postgres' own errors (23502, 23514).
unsafe fn check_constraints(
    estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
) {
    unsafe {
        if !(*(*(*rinfo).ri_RelationDesc).rd_att).constr.is_null() {
            pg_sys::ExecConstraints(rinfo, slot, estate);
        }
    }
}

fn check_absent(info: &TableInfo, key: &[u8]) {
    // SAFETY: called from executor callbacks of this table.
    if unsafe { current_row(info, key, false) }.0.is_some() {
        DriftError::DuplicateKey {
            relid: info.relid,
            key: key.to_vec(),
        }
        .report()
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_insert(
    estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    _plan_slot: *mut pg_sys::TupleTableSlot,
) -> *mut pg_sys::TupleTableSlot {
    unsafe {
        let state = modify_state(rinfo);
        check_constraints(estate, rinfo, slot);
        let (key, row) = state.info.row_from_slot(slot, true);
        let key = key.expect("a new row always has a key");
        if !state.info.key.is_empty() {
            check_absent(&state.info, &key);
        }
        push_event(&state.info, key, Op::Insert(row));
        slot
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_update(
    estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    plan_slot: *mut pg_sys::TupleTableSlot,
) -> *mut pg_sys::TupleTableSlot {
    unsafe {
        let state = modify_state(rinfo);
        check_constraints(estate, rinfo, slot);
        let info = &state.info;
        let old_key = target_key(state, plan_slot);
        let old = row_to_change(info, &old_key);
        let (new_key, new) = info.row_from_slot(slot, false);
        let new_key = new_key.unwrap_or_else(|| old_key.clone());
        if new_key != old_key {
            // The key changed: the old row leaves, a new one arrives.
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

#[pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_delete(
    _estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    plan_slot: *mut pg_sys::TupleTableSlot,
) -> *mut pg_sys::TupleTableSlot {
    unsafe {
        let state = modify_state(rinfo);
        let info = &state.info;
        let key = target_key(state, plan_slot);
        let old = row_to_change(info, &key);
        push_event(info, key, Op::SoftDelete);
        if !(*rinfo).ri_projectReturning.is_null() {
            info.store_row(slot, &old);
        }
        slot
    }
}
