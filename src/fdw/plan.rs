//! Planner callbacks: size, paths and the plan of a scan of a DriftDB table.
//!
//! Every qual is left to Postgres for now (no pushdown yet), so a scan reads the whole
//! table state. `fdw_private` holds only copyable nodes (plans are cached and copied).

use crate::compat;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;

/// Rows assumed before ANALYZE has counted any (the planner's usual guess for a relation
/// it knows nothing about).
const ROWS_UNKNOWN: f64 = 1000.0;
/// Cost of producing one row from the engine, relative to `cpu_tuple_cost` units.
const COST_PER_ROW: f64 = 0.01;
const STARTUP_COST: f64 = 10.0;

#[pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_rel_size(
    _root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    _relid: pg_sys::Oid,
) {
    unsafe {
        let analyzed = (*baserel).tuples;
        (*baserel).rows = if analyzed > 0.0 {
            analyzed
        } else {
            ROWS_UNKNOWN
        };
    }
}

#[pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_paths(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    _relid: pg_sys::Oid,
) {
    unsafe {
        let rows = (*baserel).rows;
        let total = STARTUP_COST + rows * COST_PER_ROW;
        let path = compat::foreignscan_path(
            root,
            baserel,
            rows,
            STARTUP_COST,
            total,
            std::ptr::null_mut(),
        );
        pg_sys::add_path(baserel, path.cast());
    }
}

/// `fdw_private` of the plan: one Integer, 1 when this scan feeds an UPDATE or DELETE of
/// the same relation (its rows then carry their key position in ctid).
#[pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_plan(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    _relid: pg_sys::Oid,
    _best_path: *mut pg_sys::ForeignPath,
    tlist: *mut pg_sys::List,
    scan_clauses: *mut pg_sys::List,
    outer_plan: *mut pg_sys::Plan,
) -> *mut pg_sys::ForeignScan {
    unsafe {
        let parse = (*root).parse;
        let is_target = (*parse).resultRelation == (*baserel).relid as i32
            && matches!(
                (*parse).commandType,
                pg_sys::CmdType::CMD_UPDATE | pg_sys::CmdType::CMD_DELETE
            );
        let clauses = pg_sys::extract_actual_clauses(scan_clauses, false);
        let mut private = PgList::<pg_sys::Integer>::new();
        private.push(pg_sys::makeInteger(is_target as i32));
        pg_sys::make_foreignscan(
            tlist,
            clauses,
            (*baserel).relid,
            std::ptr::null_mut(),
            private.into_pg(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            outer_plan,
        )
    }
}
