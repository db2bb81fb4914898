//! Reading the past: the stable seq, the seq of an instant, and a table's rows as of a seq
//! or an instant, typed as the table (`SELECT * FROM drift_as_of(NULL::users, 42)`).
//!
//! The past is read only over the stable prefix: every group at or below the seq read is
//! decided, so its fate comes from the commit log and never changes afterwards.

use crate::drop::is_driftdb_table;
use crate::engine::{self, LatestFates};
use crate::error::DriftError;
use crate::pg::srf::{function_info_v1, materialize};
use crate::shmem;
use crate::table::TableInfo;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// The stable seq readers read up to: every transaction at or below it has finished, but
/// imports in progress, which a reader of their own table waits for ([`wait_for_imports`]);
/// an idle import holds up no reader of any other table.
pub fn stable_seq() -> u64 {
    engine::read_point();
    shmem::readable_seq()
}

/// Waits until no import into `table` still in progress has a group at or below `seq`,
/// other than this transaction's own (which it reads as its own writes). A read of the
/// table at `seq` then gives the answer it will always give. The wait is a lock wait on
/// the importing transaction, as a heap writer waits for another: `lock_timeout`,
/// `statement_timeout` and deadlock detection apply, and `pg_locks` shows it.
pub fn wait_for_imports(table: driftdb_storage::TableId, seq: u64) {
    wait_for(table, seq, shmem::pending_imports(table, seq));
}

/// [`wait_for_imports`], given the imports pending at the first look.
fn wait_for(table: driftdb_storage::TableId, seq: u64, mut pending: Vec<u32>) {
    loop {
        // SAFETY: a plain check of this backend's transaction stack.
        let others: Vec<u32> = std::mem::take(&mut pending)
            .into_iter()
            .filter(|&x| unsafe { !pg_sys::TransactionIdIsCurrentTransactionId(x.into()) })
            .collect();
        if others.is_empty() {
            return;
        }
        for xid in others {
            // SAFETY: waits for a transaction's lock as heap visibility checks do; no
            // LWLock is held here. Returns once that transaction has ended (its slot is
            // freed before its locks are released, or pruned once it is seen to end).
            unsafe {
                pg_sys::XactLockTableWait(
                    xid.into(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    pg_sys::XLTW_Oper::XLTW_None,
                )
            };
        }
        pending = shmem::pending_imports(table, seq);
    }
}

/// The stable seq you can read: every transaction at or below it has finished.
#[pg_extern(volatile, parallel_restricted)]
#[search_path(pg_catalog, pg_temp)]
fn drift_current_seq() -> i64 {
    stable_seq() as i64
}

/// Microseconds of a timestamptz (Postgres' epoch, as the engine stores commit times).
fn now_us() -> i64 {
    // SAFETY: reads the clock.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// The last seq of the last transaction committed at or before `at`. Waits for
/// transactions that are still committing and might have committed by then.
pub fn seq_at(at: i64) -> u64 {
    resolve_time(at, |s| s.seq_at(at))
}

/// The seq at which `table` is read as of `at`: [`seq_at`], or for a table with imported
/// history, the last imported group committed at or before `at` where it came from, if
/// later (see `Store::seq_at_for_table`).
pub fn seq_at_table(table: driftdb_storage::TableId, at: i64) -> u64 {
    let seq = resolve_time(at, |s| s.seq_at_for_table(table, at, &LatestFates));
    wait_for_imports(table, seq);
    seq
}

fn resolve_time(
    at: i64,
    mut seq_of: impl FnMut(&mut driftdb_storage::Store) -> driftdb_storage::Result<u64>,
) -> u64 {
    if at > now_us() {
        DriftError::TimeInFuture.report()
    }
    loop {
        let seq = engine::with_store(&mut seq_of);
        if seq <= stable_seq() {
            return seq;
        }
        // SAFETY: a short, interruptible sleep while a commit finishes.
        unsafe {
            pg_sys::pg_usleep(1000);
            pg_sys::check_for_interrupts!();
        }
    }
}

/// The last seq committed at or before the given instant (0 before the first commit).
#[pg_extern(volatile, parallel_restricted)]
#[search_path(pg_catalog, pg_temp)]
fn drift_seq_at(at: pgrx::datum::TimestampWithTimeZone) -> i64 {
    seq_at(i64::from(at)) as i64
}

/// `seq` checked to be a seq readers may read `table` at, once the imports into `table`
/// that it covers have ended.
pub fn check_seq(table: driftdb_storage::TableId, seq: i64) -> u64 {
    engine::read_point();
    let (current, pending) = shmem::read_point(table, u64::try_from(seq).ok());
    if seq < 0 || seq as u64 > current {
        DriftError::SeqOutOfRange { seq, current }.report()
    }
    wait_for(table, seq as u64, pending);
    seq as u64
}

/// The stable seq, for reading the whole history of `table` up to it.
pub fn stable_seq_of(table: driftdb_storage::TableId) -> u64 {
    engine::read_point();
    let (seq, pending) = shmem::read_point(table, None);
    wait_for(table, seq, pending);
    seq
}

/// The DriftDB table `relid`, checked for SELECT exactly as a plain SELECT is: without it,
/// nothing is learned, not even whether rows exist. Then locked as a SELECT locks it
/// (AccessShareLock to the end of the transaction), so a DROP waits for the read.
pub fn readable_table(relid: pg_sys::Oid) -> TableInfo {
    // SAFETY: catalog lookups and a relcache reference inside the transaction.
    unsafe {
        if !is_driftdb_table(relid) {
            DriftError::NotDriftTable { relid }.report()
        }
        if pg_sys::pg_class_aclcheck(relid, pg_sys::GetUserId(), pg_sys::ACL_SELECT as _)
            != pg_sys::AclResult::ACLCHECK_OK
        {
            pg_sys::aclcheck_error(
                pg_sys::AclResult::ACLCHECK_NO_PRIV,
                pg_sys::get_relkind_objtype(pg_sys::get_rel_relkind(relid)),
                pg_sys::get_rel_name(relid),
            );
        }
        crate::drop::lock_table(relid, pg_sys::AccessShareLock);
        TableInfo::of(relid)
    }
}

/// The DriftDB table whose row type `fcinfo`'s first argument has, checked for SELECT.
///
/// # Safety
/// `fcinfo` is the running call of a `drift_as_of` function, inside its transaction.
unsafe fn table_of_argument(fcinfo: pg_sys::FunctionCallInfo) -> TableInfo {
    // SAFETY: per the caller, fcinfo is the running call of a drift_as_of function: its
    // flinfo is valid, and get_fn_expr_argtype reads the call expression (InvalidOid
    // without one, refused below); the rest are catalog lookups inside the transaction.
    unsafe {
        let typid = pg_sys::get_fn_expr_argtype((*fcinfo).flinfo, 0);
        let relid = pg_sys::get_typ_typrelid(typid);
        if relid == pg_sys::InvalidOid || !is_driftdb_table(relid) {
            DriftError::NotDriftRowType.report()
        }
        readable_table(relid)
    }
}

/// Materialises the table's rows as of `seq` into the function's result set.
///
/// # Safety
/// `fcinfo` is the running call of a `drift_as_of` function on `info`'s table (whose row
/// type is the call's result type).
unsafe fn return_rows_as_of(fcinfo: pg_sys::FunctionCallInfo, info: &TableInfo, seq: u64) {
    // SAFETY: per the caller, fcinfo is the running call of a drift_as_of function whose
    // result type resolved to the row type of `info`'s table (its descriptor, dropped
    // columns included, has one attribute per entry of info.columns, the natts values
    // `fill` writes). The datums are made in `per_row`, a child of the current memory
    // context (freed with it on an ERROR), reset only after tuplestore_putvalues copied
    // them into the store's memory, and deleted at the end.
    unsafe {
        let (store, desc) = materialize(fcinfo);
        let natts = info.columns.len();
        let mut values = vec![pg_sys::Datum::from(0usize); natts];
        let mut nulls = vec![true; natts];
        let scan = engine::with_store(|s| match s.scan(info.id, seq, &LatestFates) {
            Err(driftdb_storage::Error::NoSuchTable(_)) => Ok(None),
            other => other.map(Some),
        });
        let Some(scan) = scan else { return };
        let per_row = pg_sys::AllocSetContextCreateExtended(
            pg_sys::CurrentMemoryContext,
            c"driftdb as-of row".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        for item in scan {
            let (_, row) = item.unwrap_or_else(|e| DriftError::Engine(e).report());
            let old = pg_sys::MemoryContextSwitchTo(per_row);
            info.fill(&row, values.as_mut_ptr(), nulls.as_mut_ptr());
            pg_sys::MemoryContextSwitchTo(old);
            pg_sys::tuplestore_putvalues(store, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            pg_sys::MemoryContextReset(per_row);
        }
        pg_sys::MemoryContextDelete(per_row);
    }
}

// The `drift_as_of` functions use the V1 calling convention directly: they take the row
// type as `anyelement` and so need the call's own information (pgrx does not expose it).
function_info_v1!(drift_as_of_seq);

/// `drift_as_of(anyelement, bigint)`: the table's rows as of a seq.
///
/// # Safety
/// Only Postgres calls this, through its V1 info record, for the SQL function
/// `drift_as_of(anyelement, bigint)` declared below.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn drift_as_of_seq(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: Postgres calls drift_as_of_seq through its V1 info record with a valid fcinfo
    // for `drift_as_of(anyelement, bigint)` declared below (RETURNS SETOF anyelement):
    // argument 1 is read as an i64, and the call's fcinfo is what table_of_argument and
    // return_rows_as_of need.
    unsafe {
        let info = table_of_argument(fcinfo);
        let Some(seq) = pgrx::fcinfo::pg_getarg::<i64>(fcinfo, 1) else {
            DriftError::NullPoint.report()
        };
        let seq = check_seq(info.id, seq);
        return_rows_as_of(fcinfo, &info, seq);
        pg_sys::Datum::from(0usize)
    }
}

function_info_v1!(drift_as_of_time);

/// `drift_as_of(anyelement, timestamptz)`: the table's rows after the last transaction
/// committed at or before an instant.
///
/// # Safety
/// Only Postgres calls this, through its V1 info record, for the SQL function
/// `drift_as_of(anyelement, timestamptz)` declared below.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn drift_as_of_time(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: Postgres calls drift_as_of_time through its V1 info record with a valid
    // fcinfo for `drift_as_of(anyelement, timestamptz)` declared below (RETURNS SETOF
    // anyelement): argument 1, a timestamptz, is read as its i64 microseconds, and the
    // call's fcinfo is what table_of_argument and return_rows_as_of need.
    unsafe {
        let info = table_of_argument(fcinfo);
        let Some(at) = pgrx::fcinfo::pg_getarg::<i64>(fcinfo, 1) else {
            DriftError::NullPoint.report()
        };
        let seq = seq_at_table(info.id, at);
        return_rows_as_of(fcinfo, &info, seq);
        pg_sys::Datum::from(0usize)
    }
}

function_info_v1!(drift_as_of_text);

/// `drift_as_of(anyelement, text)`: the point as text, read as `SET driftdb.as_of` reads
/// it (an integer is a seq, anything else a timestamptz). An untyped literal or parameter
/// resolves to this overload (the other two are of different type categories, so
/// Postgres could not choose between them).
///
/// # Safety
/// Only Postgres calls this, through its V1 info record, for the SQL function
/// `drift_as_of(anyelement, text)` declared below.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn drift_as_of_text(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: Postgres calls drift_as_of_text through its V1 info record with a valid
    // fcinfo for `drift_as_of(anyelement, text)` declared below (RETURNS SETOF anyelement):
    // argument 1 is read as text, and the call's fcinfo is what table_of_argument and
    // return_rows_as_of need.
    unsafe {
        let info = table_of_argument(fcinfo);
        let Some(point) = pgrx::fcinfo::pg_getarg::<String>(fcinfo, 1) else {
            DriftError::NullPoint.report()
        };
        let seq = crate::asof::seq_of_text(info.id, &point);
        return_rows_as_of(fcinfo, &info, seq);
        pg_sys::Datum::from(0usize)
    }
}

extension_sql!(
    r#"
CREATE FUNCTION drift_as_of(row_type anyelement, seq bigint) RETURNS SETOF anyelement
    VOLATILE PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', 'drift_as_of_seq';
COMMENT ON FUNCTION drift_as_of(anyelement, bigint) IS
    'The rows of a DriftDB table as of a seq: SELECT * FROM drift_as_of(NULL::t, 42)';
CREATE FUNCTION drift_as_of(row_type anyelement, at timestamptz) RETURNS SETOF anyelement
    VOLATILE PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', 'drift_as_of_time';
COMMENT ON FUNCTION drift_as_of(anyelement, timestamptz) IS
    'The rows of a DriftDB table after the last commit at or before an instant';
CREATE FUNCTION drift_as_of(row_type anyelement, point text) RETURNS SETOF anyelement
    VOLATILE PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', 'drift_as_of_text';
COMMENT ON FUNCTION drift_as_of(anyelement, text) IS
    'The rows of a DriftDB table as of a seq (an integer) or a timestamptz, given as text';
"#,
    name = "drift_as_of",
);
