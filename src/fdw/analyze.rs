//! ANALYZE of a DriftDB table: a uniform sample of its current rows (reservoir sampling
//! over one pass), so that the planner's statistics and row counts are real.

use crate::engine::{self, SnapshotFates};
use crate::table::TableInfo;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// AnalyzeForeignTable: ANALYZE samples DriftDB tables with [`acquire_sample_rows`].
///
/// # Safety
/// Only Postgres calls this, as the wrapper's AnalyzeForeignTable callback, with pointers
/// to the sampler and the page count it sets.
#[pg_guard]
pub unsafe extern "C-unwind" fn analyze_foreign_table(
    _relation: pg_sys::Relation,
    func: *mut pg_sys::AcquireSampleRowsFunc,
    totalpages: *mut pg_sys::BlockNumber,
) -> bool {
    // SAFETY: Postgres calls AnalyzeForeignTable with valid pointers to its sampler
    // function and page count, which it reads after this returns.
    unsafe {
        *func = Some(acquire_sample_rows);
        // DriftDB has no pages; one keeps ANALYZE's progress reporting meaningful.
        *totalpages = 1;
    }
    true
}

/// The sampler of ANALYZE: a uniform sample of the table's current rows, at most `targrows`
/// of them, into `rows`.
///
/// # Safety
/// Only Postgres calls this, as the sampler [`analyze_foreign_table`] returned, with the
/// open relation, an array of `targrows` tuple pointers and the two counters.
#[pg_guard]
unsafe extern "C-unwind" fn acquire_sample_rows(
    relation: pg_sys::Relation,
    _elevel: std::ffi::c_int,
    rows: *mut pg_sys::HeapTuple,
    targrows: std::ffi::c_int,
    totalrows: *mut f64,
    totaldeadrows: *mut f64,
) -> std::ffi::c_int {
    // SAFETY: Postgres calls the sampler AnalyzeForeignTable returned with the open
    // relation being analyzed, inside ANALYZE's transaction with an active snapshot (valid
    // for the whole call, in which SnapshotFates reads it), and `rows`, an uninitialised
    // array of targrows tuple pointers, plus the two counters to set. Every tuple is formed
    // from the relation's own descriptor, whose natts values `fill` writes (TableInfo has
    // one column per attribute of it), in the current memory context, where ANALYZE expects
    // them; slot i < targrows, and a slot is read only after it was written.
    unsafe {
        let info = TableInfo::from_relation(relation);
        let snapshot = pg_sys::GetActiveSnapshot();
        let at = engine::read_point();
        let fates = SnapshotFates::new(snapshot);
        let target = targrows.max(0) as usize;
        let natts = info.columns.len();
        let mut values = vec![pg_sys::Datum::from(0usize); natts];
        let mut nulls = vec![true; natts];
        let mut kept = 0usize;
        let mut seen = 0u64;
        engine::with_store(|s| {
            let scan = match s.scan(info.id, at, &fates) {
                Err(driftdb_storage::Error::NoSuchTable(_)) => return Ok(()),
                other => other?,
            };
            for item in scan {
                let (_, row) = item?;
                seen += 1;
                // Algorithm R: row number `seen` replaces a random kept row with
                // probability target/seen.
                let slot = if kept < target {
                    kept += 1;
                    Some(kept - 1)
                } else {
                    let j = (pg_sys::pg_prng_double(&raw mut pg_sys::pg_global_prng_state)
                        * seen as f64) as usize;
                    (j < target).then_some(j)
                };
                if let Some(i) = slot {
                    info.fill(&row, values.as_mut_ptr(), nulls.as_mut_ptr());
                    let tuple = pg_sys::heap_form_tuple(
                        (*relation).rd_att,
                        values.as_mut_ptr(),
                        nulls.as_mut_ptr(),
                    );
                    // A replacement frees the tuple it replaces. `rows` is not zeroed: slot
                    // `i` is read only once every slot has been filled (seen > target).
                    if seen as usize > target && !(*rows.add(i)).is_null() {
                        pg_sys::heap_freetuple(*rows.add(i));
                    }
                    *rows.add(i) = tuple;
                }
            }
            Ok(())
        });
        *totalrows = seen as f64;
        *totaldeadrows = 0.0;
        kept as std::ffi::c_int
    }
}
