//! The few places where Postgres versions differ for DriftDB, in one file.

use pgrx::pg_sys;

/// `create_foreignscan_path` gained `fdw_restrictinfo` in 17 and `disabled_nodes` in 18.
///
/// # Safety
/// Planner pointers must be the ones Postgres passed to GetForeignPaths.
pub unsafe fn foreignscan_path(
    root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    rows: f64,
    startup: f64,
    total: f64,
    fdw_private: *mut pg_sys::List,
) -> *mut pg_sys::ForeignPath {
    // SAFETY: per the caller, root and rel are the planner's pointers for the foreign
    // relation being planned (GetForeignPaths); create_foreignscan_path allocates the path
    // in the planner's memory context and takes the null pointers as "none" (no target
    // list, outer rels, outer path or restrictions of its own), as postgres_fdw passes
    // them; the cfg picks the one signature of the version built for.
    unsafe {
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        return pg_sys::create_foreignscan_path(
            root,
            rel,
            std::ptr::null_mut(),
            rows,
            startup,
            total,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            fdw_private,
        );
        #[cfg(feature = "pg17")]
        return pg_sys::create_foreignscan_path(
            root,
            rel,
            std::ptr::null_mut(),
            rows,
            startup,
            total,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            fdw_private,
        );
        #[cfg(feature = "pg18")]
        return pg_sys::create_foreignscan_path(
            root,
            rel,
            std::ptr::null_mut(),
            rows,
            0,
            startup,
            total,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            fdw_private,
        );
    }
}

/// Whether the current user owns relation `relid` (superusers own everything).
/// `pg_class_ownercheck` became `object_ownercheck` in 16.
pub fn owns_relation(relid: pg_sys::Oid) -> bool {
    // SAFETY: a catalog lookup inside a transaction.
    unsafe {
        #[cfg(feature = "pg15")]
        return pg_sys::pg_class_ownercheck(relid, pg_sys::GetUserId());
        #[cfg(not(feature = "pg15"))]
        return pg_sys::object_ownercheck(pg_sys::RelationRelationId, relid, pg_sys::GetUserId());
    }
}

/// `XLogRegisterData` took `char *` and `int` up to 16, `char *` and `uint32` in 17, and
/// `const void *` and `uint32` since 18.
///
/// # Safety
/// Between `XLogBeginInsert` and `XLogInsert`; `data` must stay valid until `XLogInsert`.
pub unsafe fn xlog_register_data(data: &[u8]) {
    // SAFETY: per the caller, this runs between XLogBeginInsert and XLogInsert, and `data`
    // (borrowed for the call) stays alive until XLogInsert has copied it; XLogRegisterData
    // only records the pointer and the length, which fits the record size DriftDB writes
    // (RECORD_MAX, far below i32::MAX). It takes a mutable pointer only by the C signature
    // of 15 to 17; it never writes through it.
    unsafe {
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        pg_sys::XLogRegisterData(data.as_ptr() as *mut std::ffi::c_char, data.len() as i32);
        #[cfg(feature = "pg17")]
        pg_sys::XLogRegisterData(data.as_ptr() as *mut std::ffi::c_char, data.len() as u32);
        #[cfg(feature = "pg18")]
        pg_sys::XLogRegisterData(data.as_ptr() as *const std::ffi::c_void, data.len() as u32);
    }
}

/// The oldest xid the commit log still holds (`ShmemVariableCache` before 17,
/// `TransamVariables` since).
pub fn oldest_clog_xid() -> pg_sys::TransactionId {
    // SAFETY: the shared transaction-state struct exists in every backend; the field is a
    // plain 32-bit value that only moves forward.
    unsafe {
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        return (*pg_sys::ShmemVariableCache).oldestClogXid;
        #[cfg(not(any(feature = "pg15", feature = "pg16")))]
        return (*pg_sys::TransamVariables).oldestClogXid;
    }
}

/// Requires SELECT of `cols` on the relation entry `rte` of `query`, as the parser would
/// for a plain SELECT: on the entry itself before 16, in a permission-info entry since.
///
/// # Safety
/// `rte` must be a relation entry of `query`'s range table, without permission info yet.
pub unsafe fn require_select(
    query: *mut pg_sys::Query,
    rte: *mut pg_sys::RangeTblEntry,
    cols: *mut pg_sys::Bitmapset,
) {
    // SAFETY: per the caller, rte is a relation entry of query's range table with no
    // permission info yet: before 16 the permissions are fields of the entry itself; from
    // 16 addRTEPermissionInfo appends a new RTEPermissionInfo to query->rteperminfos
    // (allocated in the current memory context, the planner's) and points the entry at it,
    // and cols is a bitmapset the caller made for it.
    unsafe {
        #[cfg(feature = "pg15")]
        {
            let _ = query;
            (*rte).requiredPerms = pg_sys::ACL_SELECT as pg_sys::AclMode;
            (*rte).checkAsUser = pg_sys::InvalidOid;
            (*rte).selectedCols = cols;
        }
        #[cfg(not(feature = "pg15"))]
        {
            let info = pg_sys::addRTEPermissionInfo(&raw mut (*query).rteperminfos, rte);
            (*info).requiredPerms = pg_sys::ACL_SELECT as pg_sys::AclMode;
            (*info).selectedCols = cols;
        }
    }
}

unsafe extern "C-unwind" {
    /// nodeModifyTable.h (the same in 15 to 18), which pgrx's bindings leave out.
    fn ExecComputeStoredGenerated(
        rinfo: *mut pg_sys::ResultRelInfo,
        estate: *mut pg_sys::EState,
        slot: *mut pg_sys::TupleTableSlot,
        cmdtype: pg_sys::CmdType::Type,
    );
}

unsafe extern "C-unwind" {
    /// catalog/pg_inherits.h (the same in 15 to 18), which pgrx's bindings leave out.
    fn find_all_inheritors(
        parent: pg_sys::Oid,
        lockmode: pg_sys::LOCKMODE,
        numparents: *mut *mut pg_sys::List,
    ) -> *mut pg_sys::List;
}

/// `relid` and every relation that inherits from it (a partitioned table's partitions,
/// at every level), each locked in `lockmode`.
///
/// # Safety
/// Catalog lookups and lock waits: must run inside a transaction.
pub unsafe fn all_inheritors(relid: pg_sys::Oid, lockmode: pg_sys::LOCKMODE) -> Vec<pg_sys::Oid> {
    // SAFETY: per the caller, inside a transaction: find_all_inheritors reads pg_inherits
    // and takes `lockmode` on every relation it returns (held to the end of the
    // transaction); the guard turns its ERROR into a Rust panic, as pgrx does for its own
    // bindings. The list it returns is a palloc'd list of Oids, read by position within its
    // length; a null list (no relation) is empty.
    unsafe {
        let list = pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
            find_all_inheritors(relid, lockmode, std::ptr::null_mut())
        });
        let n = if list.is_null() { 0 } else { (*list).length };
        (0..n).map(|i| pg_sys::list_nth_oid(list, i)).collect()
    }
}

/// Computes the stored generated columns of a new row: an UPDATE's again (`CMD_UPDATE`,
/// after a recheck built the row anew, as the executor did before the first attempt), or
/// a row moved into another partition (`CMD_INSERT`, as routing an INSERT computes them).
///
/// # Safety
/// The pointers are a result relation, its executor state and a slot of its row type.
pub unsafe fn compute_stored_generated(
    rinfo: *mut pg_sys::ResultRelInfo,
    estate: *mut pg_sys::EState,
    slot: *mut pg_sys::TupleTableSlot,
    cmd: pg_sys::CmdType::Type,
) {
    // SAFETY: per the caller, rinfo is a result relation with an open relation descriptor,
    // estate its executor state and slot a slot of its row type: the descriptor's tuple
    // descriptor (and its constraints, null when there are none) belong to the open
    // relation; ExecComputeStoredGenerated gets exactly the executor's own arguments,
    // behind a guard that turns its ERROR into a Rust panic.
    unsafe {
        let constr = (*(*(*rinfo).ri_RelationDesc).rd_att).constr;
        if !constr.is_null() && (*constr).has_generated_stored {
            pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
                ExecComputeStoredGenerated(rinfo, estate, slot, cmd)
            });
        }
    }
}

unsafe extern "C-unwind" {
    /// executor/execPartition.h (the same in 15 to 18), which pgrx's bindings leave out.
    fn ExecSetupPartitionTupleRouting(
        estate: *mut pg_sys::EState,
        rel: pg_sys::Relation,
    ) -> *mut pg_sys::PartitionTupleRouting;
    fn ExecFindPartition(
        mtstate: *mut pg_sys::ModifyTableState,
        root: *mut pg_sys::ResultRelInfo,
        proute: *mut pg_sys::PartitionTupleRouting,
        slot: *mut pg_sys::TupleTableSlot,
        estate: *mut pg_sys::EState,
    ) -> *mut pg_sys::ResultRelInfo;
}

/// Routes `slot`, a row of an UPDATE's partition `rinfo`, from the statement's root
/// partitioned table to the leaf partition it belongs in, as the executor routes a row
/// that an UPDATE moves (`ExecCrossPartitionUpdate`): the routing state is set up once per
/// statement on the ModifyTable node (which cleans it up at its end), the row converted to
/// the root's row type, the partition found (23514 when none takes it) and opened as a
/// result relation (its FDW's BeginForeignInsert called). Returns the partition's result
/// relation and the row converted to its row type.
///
/// # Safety
/// `mtstate` is a running UPDATE whose root result relation is a partitioned table, and
/// `rinfo` one of its leaf result relations with `slot` holding a row of its type.
pub unsafe fn route_from_root(
    mtstate: *mut pg_sys::ModifyTableState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
) -> (*mut pg_sys::ResultRelInfo, *mut pg_sys::TupleTableSlot) {
    // SAFETY: per the caller, mtstate is the running UPDATE (its state, plan and
    // partition-routing fields are the executor's), rinfo one of its leaf result relations,
    // whose ri_RootResultRelInfo is the partitioned root, and slot holds a row of rinfo's
    // type. The routing state is made once, in the query's memory context (es_query_cxt),
    // which lives as long as the executor state, as ExecCrossPartitionUpdate makes it; the
    // slots made here are registered in the estate's tuple table (es_tupleTable) or belong
    // to the ModifyTable node, which drop them at the end of the statement. Conversion maps
    // come from the executor's own functions and are null when no conversion is needed. The
    // guards turn an ERROR of the two functions pgrx's bindings leave out into a Rust
    // panic; their closures call nothing else.
    unsafe {
        let estate = (*mtstate).ps.state;
        let root = (*rinfo).ri_RootResultRelInfo;
        let root_rel = (*root).ri_RelationDesc;
        // Only the functions pgrx's bindings leave out run inside a guard of their own: a
        // guarded binding's ERROR is a panic, which must not unwind out of such a closure.
        if (*mtstate).mt_partition_tuple_routing.is_null() {
            // Built for the rest of the statement, as the executor builds it.
            let old = pg_sys::MemoryContextSwitchTo((*estate).es_query_cxt);
            let routing = pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
                ExecSetupPartitionTupleRouting(estate, root_rel)
            });
            (*mtstate).mt_partition_tuple_routing = routing;
            (*mtstate).mt_root_tuple_slot =
                pg_sys::table_slot_create(root_rel, std::ptr::null_mut());
            pg_sys::MemoryContextSwitchTo(old);
        }
        let to_root = pg_sys::ExecGetChildToRootMap(rinfo);
        let root_slot = if to_root.is_null() {
            slot
        } else {
            pg_sys::execute_attr_map_slot((*to_root).attrMap, slot, (*mtstate).mt_root_tuple_slot)
        };
        let routing = (*mtstate).mt_partition_tuple_routing;
        let dest = pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
            ExecFindPartition(mtstate, root, routing, root_slot, estate)
        });
        #[cfg(feature = "pg15")]
        let to_dest = (*dest).ri_RootToPartitionMap;
        #[cfg(not(feature = "pg15"))]
        let to_dest = pg_sys::ExecGetRootToChildMap(dest, estate);
        if to_dest.is_null() {
            return (dest, root_slot);
        }
        if (*dest).ri_PartitionTupleSlot.is_null() {
            (*dest).ri_PartitionTupleSlot = pg_sys::table_slot_create(
                (*dest).ri_RelationDesc,
                &raw mut (*estate).es_tupleTable,
            );
        }
        let dest_slot = pg_sys::execute_attr_map_slot(
            (*to_dest).attrMap,
            root_slot,
            (*dest).ri_PartitionTupleSlot,
        );
        (dest, dest_slot)
    }
}

/// Whether the current user may EXECUTE function `funcid` (`object_aclcheck` from 16 on).
///
/// # Safety
/// Catalog lookups: must run inside a transaction.
pub unsafe fn may_execute(funcid: pg_sys::Oid) -> bool {
    // SAFETY: per the caller, inside a transaction: the ACL check reads pg_proc through the
    // syscache for the current user (GetUserId is set in every backend that runs SQL), and
    // raises an ERROR only for a function that does not exist.
    unsafe {
        #[cfg(feature = "pg15")]
        let result =
            pg_sys::pg_proc_aclcheck(funcid, pg_sys::GetUserId(), pg_sys::ACL_EXECUTE as _);
        #[cfg(not(feature = "pg15"))]
        let result = pg_sys::object_aclcheck(
            pg_sys::ProcedureRelationId,
            funcid,
            pg_sys::GetUserId(),
            pg_sys::ACL_EXECUTE as _,
        );
        result == pg_sys::AclResult::ACLCHECK_OK
    }
}

#[cfg(feature = "pg15")]
unsafe extern "C" {
    fn malloc(size: usize) -> *mut std::ffi::c_void;
}

/// Memory for a GUC check hook's `extra`, which Postgres frees: `malloc` up to 15,
/// `guc_malloc` from 16 on. Null when out of memory (the hook then refuses the value).
///
/// # Safety
/// The result must be handed to Postgres as a check hook's `extra`.
pub unsafe fn guc_extra(size: usize) -> *mut std::ffi::c_void {
    // SAFETY: per the caller, the memory is handed to Postgres as a check hook's `extra`,
    // which Postgres frees with free() (up to 15, where malloc is what it expects) or
    // guc_free() (from 16, for guc_malloc's memory); a null result is checked by the
    // caller. guc_malloc at LOG level returns null rather than raising an ERROR.
    unsafe {
        #[cfg(feature = "pg15")]
        return malloc(size);
        #[cfg(not(feature = "pg15"))]
        return pg_sys::guc_malloc(pg_sys::LOG as _, size);
    }
}

/// The role whose privileges a foreign scan reads with (a view's owner), or invalid for
/// the current user's: the range-table entry's `checkAsUser` up to 15, the plan's from 16.
///
/// # Safety
/// `node` is a foreign scan being started.
pub unsafe fn scan_check_as_user(node: *mut pg_sys::ForeignScanState) -> pg_sys::Oid {
    // SAFETY: per the caller, node is a foreign scan being started: its plan is the
    // ForeignScan Postgres planned for it, and (before 16) its estate's range table holds
    // the scan's relation entry at the 1-based index scanrelid.
    unsafe {
        let plan = (*node).ss.ps.plan as *mut pg_sys::ForeignScan;
        #[cfg(feature = "pg15")]
        {
            let estate = (*node).ss.ps.state;
            let rti = (*plan).scan.scanrelid as i32;
            let rte =
                pg_sys::list_nth((*estate).es_range_table, rti - 1) as *mut pg_sys::RangeTblEntry;
            (*rte).checkAsUser
        }
        #[cfg(not(feature = "pg15"))]
        {
            (*plan).checkAsUser
        }
    }
}

/// ProcArrayLock, which pgrx's bindings do not name: the individual LWLock number 4 in
/// `MainLWLockArray` (lwlocknames.txt in 15 and 16, lwlocklist.h from 17), checked against
/// the name Postgres gives that lock, so that another number in a later version is an
/// ERROR rather than the wrong lock.
///
/// # Safety
/// Shared memory must be set up (any backend or background worker after startup).
pub unsafe fn proc_array_lock() -> *mut pg_sys::LWLock {
    const PROC_ARRAY_LOCK: u16 = 4;
    // SAFETY: shared memory is set up (per the caller): GetLWLockIdentifier returns a
    // static name for an individual LWLock id, and MainLWLockArray, the shared array of the
    // individual LWLocks, holds more than five entries in every version DriftDB builds for;
    // the name check makes sure index 4 is ProcArrayLock before its address is returned.
    unsafe {
        let name = pg_sys::GetLWLockIdentifier(pg_sys::PG_WAIT_LWLOCK, PROC_ARRAY_LOCK);
        if name.is_null() || std::ffi::CStr::from_ptr(name).to_bytes() != b"ProcArray" {
            pgrx::error!("driftdb: individual LWLock {PROC_ARRAY_LOCK} is not ProcArrayLock here");
        }
        &raw mut (*pg_sys::MainLWLockArray.add(PROC_ARRAY_LOCK as usize)).lock
    }
}
