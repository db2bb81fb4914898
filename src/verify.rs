//! `drift_verify(regclass DEFAULT NULL)`: re-reads every frame of a DriftDB table's log and
//! every snapshot, checks them against the journal and each other, and reports what is
//! damaged, with the file and the byte offset.
//!
//! Verification reads the files directly (it does not need the backend's store, so it
//! still reports when damage keeps that from opening) and takes no DriftDB lock: it reads
//! up to the journal's last group as read when it starts, so appends made meanwhile are
//! neither blocked nor looked at. It holds an ACCESS SHARE lock on each table it verifies,
//! as a SELECT does, so the table is not dropped under it.

use crate::drop::is_driftdb_table;
use crate::engine::{self, LatestFates};
use crate::error::DriftError;
use crate::pg::srf::{function_info_v1, materialize, text_datum};
use crate::timetravel::readable_table;
use driftdb_storage::{Fate, Fates, Problems, SettledFates, Verifier};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::sync::Arc;

/// The fates snapshots are compared under: those the store recorded (read by the verifier
/// itself, which needs no open store), then the commit log, as every read decides them.
struct VerifyFates(Arc<SettledFates>);

impl Fates for VerifyFates {
    fn fate(&self, xid: u64) -> Fate {
        self.0.fate(xid).unwrap_or_else(|| LatestFates.fate(xid))
    }
}

/// Every DriftDB table of the current database, by OID.
fn all_tables() -> Vec<pg_sys::Oid> {
    let oids = Spi::get_one::<Vec<i64>>(
        "SELECT coalesce(pg_catalog.array_agg(ft.ftrelid::pg_catalog.int8 ORDER BY ft.ftrelid), '{}') \
           FROM pg_catalog.pg_foreign_table ft \
           JOIN pg_catalog.pg_foreign_server s ON s.oid = ft.ftserver \
           JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw \
          WHERE w.fdwname = 'driftdb'",
    )
    .unwrap_or_else(|e| DriftError::Internal(format!("listing DriftDB tables: {e}")).report())
    .unwrap_or_default();
    oids.into_iter()
        .map(|o| pg_sys::Oid::from(o as u32))
        .collect()
}

/// Takes the lock a SELECT takes on `relid`.
fn lock_for_read(relid: pg_sys::Oid) {
    // SAFETY: a heavyweight lock inside the running transaction, released at its end.
    unsafe { pg_sys::LockRelationOid(relid, pg_sys::AccessShareLock as _) }
}

/// Whether the current user may SELECT from `relid`.
fn may_read(relid: pg_sys::Oid) -> bool {
    // SAFETY: a catalog lookup inside the running transaction.
    unsafe {
        pg_sys::pg_class_aclcheck(relid, pg_sys::GetUserId(), pg_sys::ACL_SELECT as _)
            == pg_sys::AclResult::ACLCHECK_OK
    }
}

/// The tables to verify: the one asked for (which must be a DriftDB table the user may
/// read: 42809, 42501 otherwise), or every DriftDB table of the database that the user may
/// read. Each is locked as for a SELECT.
fn tables_to_verify(asked: Option<pg_sys::Oid>) -> Vec<pg_sys::Oid> {
    match asked {
        Some(relid) => {
            // Checked for SELECT first, then locked (readable_table does both).
            readable_table(relid);
            vec![relid]
        }
        None => all_tables()
            .into_iter()
            .filter(|relid| {
                lock_for_read(*relid);
                // SAFETY: catalog lookups inside the running transaction; a table dropped
                // since it was listed is no foreign table any more.
                let driftdb = unsafe { is_driftdb_table(*relid) };
                driftdb && may_read(*relid)
            })
            .collect(),
    }
}

/// The `detail` column: every problem as "file at offset N: what", the journal's first.
fn describe(journal: &Problems, table: &Problems) -> Option<String> {
    let mut parts: Vec<String> = journal
        .listed
        .iter()
        .chain(&table.listed)
        .map(ToString::to_string)
        .collect();
    let more = journal.more + table.more;
    if more > 0 {
        parts.push(format!("and {more} more problems"));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

function_info_v1!(drift_verify);

/// `drift_verify(regclass DEFAULT NULL)`: one row per table verified.
///
/// # Safety
/// Only Postgres calls this, through its V1 info record, for the SQL function
/// `drift_verify(regclass)` declared below.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn drift_verify(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: Postgres calls drift_verify through its V1 info record with a valid fcinfo
    // for `drift_verify(regclass DEFAULT NULL)` declared below (RETURNS TABLE, not STRICT):
    // argument 0 is read as an Oid or None for NULL, and the result set is set up on the
    // call's own fcinfo; each row's four datums (the text one in the current memory
    // context) go into the store, which copies them.
    unsafe {
        let asked = pgrx::fcinfo::pg_getarg::<pg_sys::Oid>(fcinfo, 0);
        let tables = tables_to_verify(asked);
        let (store, desc) = materialize(fcinfo);
        let ids: Vec<u64> = tables.iter().map(|r| engine::table_id(*r)).collect();
        let mut verifier = Verifier::open_for(engine::root(), &ids)
            .unwrap_or_else(|e| DriftError::Engine(e).report())
            // A cancel request or a terminating server stops a long verification: the
            // error unwinds through the engine, which only reads.
            .on_progress(|| {
                pg_sys::check_for_interrupts!();
            });
        let journal = verifier.journal().problems.clone();
        let fates = VerifyFates(verifier.settled());
        for relid in tables {
            let report = verifier
                .verify_table(engine::table_id(relid), &fates)
                .unwrap_or_else(|e| DriftError::Engine(e).report());
            let ok = report.ok() && journal.is_empty();
            crate::health::record_verification(engine::table_id(relid), ok);
            let mut values = [pg_sys::Datum::from(0usize); 4];
            let mut nulls = [false; 4];
            values[0] = pg_sys::Datum::from(relid.to_u32());
            values[1] = pg_sys::Datum::from(report.frames as i64);
            values[2] = pg_sys::Datum::from(ok);
            match describe(&journal, &report.problems) {
                Some(d) => values[3] = text_datum(&d),
                None => nulls[3] = true,
            }
            pg_sys::tuplestore_putvalues(store, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
        }
        pg_sys::Datum::from(0usize)
    }
}

extension_sql!(
    r#"
CREATE FUNCTION drift_verify(regclass DEFAULT NULL)
    RETURNS TABLE (table_name regclass, frames bigint, ok boolean, detail text)
    VOLATILE PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', 'drift_verify';
COMMENT ON FUNCTION drift_verify(regclass) IS
    'Re-reads every frame and snapshot of a DriftDB table (of every one the caller may read, without an argument) and reports damage with its file and offset';
"#,
    name = "drift_verify",
);
