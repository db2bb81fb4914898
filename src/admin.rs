//! Administration functions: secondary indexes and snapshots.

use crate::datum;
use crate::drop::is_driftdb_table;
use crate::engine;
use crate::error::DriftError;
use crate::pg::compat;
use crate::shmem;
use crate::table::TableInfo;
use crate::txn::{self, Ddl};
use driftdb_storage::IndexKind;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// The table behind `relid`, checked to be a DriftDB table owned by the current user, then
/// locked in `mode` until the transaction ends (see `drop::lock_table`).
pub(crate) fn owned_table(relid: pg_sys::Oid, mode: u32) -> TableInfo {
    // SAFETY: catalog lookups and a relcache reference inside the transaction.
    unsafe {
        if !is_driftdb_table(relid) {
            DriftError::NotDriftTable { relid }.report()
        }
        if !compat::owns_relation(relid) {
            DriftError::NotOwner { relid }.report()
        }
        crate::drop::lock_table(relid, mode);
        let rel = pg_sys::RelationIdGetRelation(relid);
        let info = TableInfo::from_relation(rel);
        pg_sys::RelationClose(rel);
        info
    }
}

/// The column named `name`; one to index must have a type whose stored bytes decide
/// equality (an index on another is dropped without that check).
pub(crate) fn column_id(info: &TableInfo, name: &str) -> u16 {
    column(info, name).id()
}

/// The live column named `name` (42703 when there is none).
fn column<'a>(info: &'a TableInfo, name: &str) -> &'a datum::Column {
    match info.columns.iter().find(|c| !c.dropped && c.name == name) {
        Some(c) => c,
        None => DriftError::NoSuchColumn {
            relid: info.relid,
            column: name.to_string(),
        }
        .report(),
    }
}

/// The column named `name` to index, and the kind of index its type takes (refused when
/// its type cannot be indexed).
pub(crate) fn index_column(info: &TableInfo, name: &str) -> (u16, IndexKind) {
    let col = column(info, name);
    // SAFETY: catalog lookups inside the calling transaction.
    let kind = unsafe { datum::check_index_type_by_catalog(col) }.unwrap_or_else(|e| e.report());
    (col.id(), kind)
}

/// Creates a secondary index on a column of a DriftDB table, built from its history. It
/// serves equality (and ranges, for integer-like, date and time types, numeric, real,
/// double precision, uuid, and text under the C collation) in scans, at the current point
/// and in the past. Takes effect when the transaction commits.
#[pg_extern(
    volatile,
    parallel_restricted,
    sql = "
CREATE FUNCTION drift_create_index(table_name regclass, column_name text) RETURNS void
    VOLATILE PARALLEL RESTRICTED STRICT
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"
)]
fn drift_create_index(table_name: pg_sys::Oid, column_name: &str) {
    // As ANALYZE or CREATE INDEX CONCURRENTLY: reads and writes go on, a DROP or another
    // index change of the table waits for this transaction.
    let info = owned_table(table_name, pg_sys::ShareUpdateExclusiveLock);
    let (col, kind) = index_column(&info, column_name);
    txn::at_commit(Ddl::CreateIndex(info.id, col, kind));
}

/// Drops the secondary index on a column. Takes effect when the transaction commits.
#[pg_extern(
    volatile,
    parallel_restricted,
    sql = "
CREATE FUNCTION drift_drop_index(table_name regclass, column_name text) RETURNS void
    VOLATILE PARALLEL RESTRICTED STRICT
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"
)]
fn drift_drop_index(table_name: pg_sys::Oid, column_name: &str) {
    let info = owned_table(table_name, pg_sys::ShareUpdateExclusiveLock);
    let col = column_id(&info, column_name);
    if !engine::indexes(info.id).iter().any(|&(c, _)| c == col) {
        DriftError::NoSuchIndex {
            relid: info.relid,
            column: column_name.to_string(),
        }
        .report()
    }
    txn::at_commit(Ddl::DropIndex(info.id, col));
}

/// Writes a snapshot of the table's current state (every change committed so far), so that
/// reads start from it instead of replaying the log. Returns the seq it covers. Waits for
/// transactions that are still committing below that seq.
#[pg_extern(
    volatile,
    parallel_restricted,
    sql = "
CREATE FUNCTION drift_snapshot(table_name regclass) RETURNS bigint
    VOLATILE PARALLEL RESTRICTED STRICT
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"
)]
fn drift_snapshot(table_name: pg_sys::Oid) -> i64 {
    // As a reader: a DROP of the table waits for the snapshot.
    let info = owned_table(table_name, pg_sys::AccessShareLock);
    let upto = engine::read_point();
    loop {
        let outcome = engine::try_with_store(|s| {
            // One snapshot writer at a time; appends go on meanwhile.
            let _lock = shmem::SNAPSHOTS.exclusive();
            s.snapshot(info.id, upto, &engine::LatestFates)
        });
        match outcome {
            Ok(seq) => return seq as i64,
            // Nothing was ever written: there is nothing to snapshot yet.
            Err(driftdb_storage::Error::NoSuchTable(_)) => return 0,
            Err(driftdb_storage::Error::Undecided { xid, .. }) => {
                // SAFETY: waits on the transaction's lock until it commits or aborts.
                unsafe {
                    pg_sys::XactLockTableWait(
                        pg_sys::TransactionId::from(xid as u32),
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        pg_sys::XLTW_Oper::XLTW_None,
                    );
                }
            }
            Err(e) => DriftError::Engine(e).report(),
        }
    }
}
