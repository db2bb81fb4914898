//! DROP FOREIGN TABLE removes the table's files when the dropping transaction commits,
//! and keeps them when it rolls back; DROP DATABASE removes the files of every DriftDB
//! table of the database. DriftDB's functions lock the tables they read or change as a
//! statement would ([`lock_table`]), so a DROP waits for them.

use crate::engine;
use crate::txn;
use pgrx::pg_sys;
use pgrx::prelude::*;

static mut PREV_OBJECT_ACCESS_HOOK: pg_sys::object_access_hook_type = None;

/// Installs the hook; called once from `_PG_init`.
pub fn init() {
    // SAFETY: hooks are installed while the library loads, before any query runs.
    unsafe {
        PREV_OBJECT_ACCESS_HOOK = pg_sys::object_access_hook;
        pg_sys::object_access_hook = Some(object_access);
    }
}

/// True for a foreign table whose server belongs to the `driftdb` wrapper.
///
/// # Safety
/// Catalog lookups: must run inside a transaction.
pub unsafe fn is_driftdb_table(relid: pg_sys::Oid) -> bool {
    // SAFETY: per the caller, inside a transaction: get_rel_relkind is a syscache lookup
    // (no relation: not a foreign table), and for a foreign table GetForeignTable,
    // GetForeignServer and GetForeignDataWrapper return palloc'd copies of its catalog
    // entries (raising an ERROR when one is missing), whose fdwname is a NUL-terminated
    // string.
    unsafe {
        if pg_sys::get_rel_relkind(relid) as u8 != pg_sys::RELKIND_FOREIGN_TABLE {
            return false;
        }
        let ft = pg_sys::GetForeignTable(relid);
        let server = pg_sys::GetForeignServer((*ft).serverid);
        let fdw = pg_sys::GetForeignDataWrapper((*server).fdwid);
        std::ffi::CStr::from_ptr((*fdw).fdwname).to_bytes() == b"driftdb"
    }
}

/// Takes lock `mode` on the DriftDB table `relid`, held to the end of the transaction as a
/// statement on the table holds it, so that a DROP of the table waits for this reader or
/// writer (and this one for a DROP under way). Fails with 42P01 when the table was dropped
/// while this waited. Callers check privileges first: a role that may not use the table
/// never waits for it.
pub fn lock_table(relid: pg_sys::Oid, mode: u32) {
    // SAFETY: a lock-manager call and a syscache probe inside a transaction.
    let exists = unsafe {
        pg_sys::LockRelationOid(relid, mode as pg_sys::LOCKMODE);
        pg_sys::SearchSysCacheExists(
            pg_sys::SysCacheIdentifier::RELOID as i32,
            pg_sys::Datum::from(relid),
            pg_sys::Datum::from(0usize),
            pg_sys::Datum::from(0usize),
            pg_sys::Datum::from(0usize),
        )
    };
    if !exists {
        // SAFETY: releases the lock taken above.
        unsafe { pg_sys::UnlockRelationOid(relid, mode as pg_sys::LOCKMODE) };
        crate::error::DriftError::TableDropped { relid }.report()
    }
}

/// The object-access hook: a dropped DriftDB table, or a dropped database, has its files
/// removed when the transaction commits.
///
/// # Safety
/// Only Postgres calls this, as `object_access_hook`, for an access to an object inside a
/// transaction.
#[pg_guard]
unsafe extern "C-unwind" fn object_access(
    access: pg_sys::ObjectAccessType::Type,
    class_id: pg_sys::Oid,
    object_id: pg_sys::Oid,
    sub_id: std::ffi::c_int,
    arg: *mut std::ffi::c_void,
) {
    // SAFETY: Postgres calls the object-access hook with the event and the object's ids,
    // inside the transaction that accesses the object; the previous hook gets exactly those
    // arguments, behind a guard as it may be C. On a drop, the relation being dropped still
    // exists in the catalogs, so is_driftdb_table can look it up.
    unsafe {
        if let Some(prev) = PREV_OBJECT_ACCESS_HOOK {
            // Another extension's hook may be C: its ERROR must become a Rust panic here,
            // not a longjmp over this frame (as in schema.rs).
            pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
                prev(access, class_id, object_id, sub_id, arg)
            });
        }
        if access == pg_sys::ObjectAccessType::OAT_DROP
            && class_id == pg_sys::RelationRelationId
            && sub_id == 0
            && is_driftdb_table(object_id)
        {
            txn::at_commit(txn::Ddl::DropTable(engine::table_id(object_id)));
        }
        // A dropped database's DriftDB tables go with it (a table id holds the database).
        if access == pg_sys::ObjectAccessType::OAT_DROP
            && class_id == pg_sys::DatabaseRelationId
            && sub_id == 0
        {
            txn::at_commit(txn::Ddl::DropDatabase(object_id.to_u32()));
        }
    }
}
