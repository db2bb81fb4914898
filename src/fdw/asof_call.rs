//! `FROM drift_as_of(NULL::t, point)` planned as a scan of `t` at that point, so that key
//! and index conditions on the call are pushed down like on the table itself: a point
//! lookup in the past reads one key, not the whole table.
//!
//! A planner hook finds, in the query and every subquery, a range-table function entry
//! that is exactly one call of DriftDB's `drift_as_of` with a DriftDB table's row type as
//! its first argument and a point that is one value for the whole statement (a constant,
//! a parameter, `now() - interval ...`; see `history_call::one_value`). The entry becomes
//! a scan of the table: a relation entry with
//! the SELECT privilege it needs checked as for a plain SELECT, and the point carried in
//! the entry's `tablesample` (a clause no foreign-table path reads, which the planner keeps
//! with the entry through subquery pull-up and preprocesses like any expression, and drops
//! from the final plan). The table's columns are the function's result columns, dropped
//! ones included, so every reference to the call's columns stays valid. The wrapper's
//! planner callbacks find the point there and put it into the plan; the scan evaluates it
//! when it starts. Any other use of `drift_as_of` (WITH ORDINALITY, ROWS FROM, a point
//! that refers to a column of any query level, a sublink or anything else that is not one
//! value for the whole statement) is left to the function, which Postgres evaluates again
//! for each outer row.

use crate::drop::is_driftdb_table;
use pgrx::pg_sys;
use pgrx::prelude::*;

static mut PREV_PLANNER: pg_sys::planner_hook_type = None;

/// Installs the planner hook; called once from `_PG_init`.
pub fn init() {
    // SAFETY: hooks are installed once, while the library loads, keeping the previous one.
    unsafe {
        PREV_PLANNER = pg_sys::planner_hook;
        pg_sys::planner_hook = Some(planner);
    }
}

/// The planner hook: `drift_as_of` calls that are one value for the whole statement become
/// scans of their table (see the module doc), `drift_history` calls with the whole key
/// become `drift_history_key`, and ON CONFLICT on DriftDB tables is rewritten (see
/// `modify::rewrite_on_conflict`).
///
/// # Safety
/// Only Postgres calls this, as `planner_hook`, with the query to plan and its text,
/// options and parameters.
#[pg_guard]
unsafe extern "C-unwind" fn planner(
    parse: *mut pg_sys::Query,
    query_string: *const std::ffi::c_char,
    cursor_options: std::ffi::c_int,
    bound_params: pg_sys::ParamListInfo,
) -> *mut pg_sys::PlannedStmt {
    // SAFETY: Postgres calls the planner hook with the query to plan (a tree the planner
    // may change: the plan cache plans a copy), its text, options and parameters, all
    // passed on unchanged to the previous hook (inside a guard, as it may be C) or to
    // standard_planner, which return a valid PlannedStmt. The invalidation items are
    // palloc'd in the current memory context, the one the plan was made in, and appended
    // to its own list.
    unsafe {
        crate::fdw::modify::rewrite_on_conflict(parse);
        // Planning may plan other queries meanwhile (an immutable function folded into a
        // constant runs its own): each level keeps its own record of the functions it
        // rewrote, and the outer level's is put back when this one ends, also by an error.
        let _outer = OuterRewritten(REWRITTEN.with(|r| std::mem::take(&mut *r.borrow_mut())));
        rewrite_calls(parse);
        let stmt = match PREV_PLANNER {
            // Another extension's hook (pg_stat_statements', say) is C: its ERROR (any
            // planning error) must become a Rust panic here, not a longjmp over this frame.
            Some(prev) => pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
                prev(parse, query_string, cursor_options, bound_params)
            }),
            None => pg_sys::standard_planner(parse, query_string, cursor_options, bound_params),
        };
        // The plan no longer calls the functions it was written with: it must still be
        // planned again when one of them changes (a REVOKE EXECUTE, say), as a plan that
        // calls a function is.
        for funcid in REWRITTEN.with(|r| std::mem::take(&mut *r.borrow_mut())) {
            let item = pg_sys::palloc0(std::mem::size_of::<pg_sys::PlanInvalItem>())
                as *mut pg_sys::PlanInvalItem;
            (*item).type_ = pg_sys::NodeTag::T_PlanInvalItem;
            (*item).cacheId = pg_sys::SysCacheIdentifier::PROCOID as _;
            (*item).hashValue = pg_sys::GetSysCacheHashValue(
                pg_sys::SysCacheIdentifier::PROCOID as _,
                pg_sys::Datum::from(funcid),
                pg_sys::Datum::from(0usize),
                pg_sys::Datum::from(0usize),
                pg_sys::Datum::from(0usize),
            );
            (*stmt).invalItems = pg_sys::lappend((*stmt).invalItems, item.cast());
        }
        stmt
    }
}

/// The functions an outer planner call rewrote, put back when a nested one ends.
struct OuterRewritten(Vec<pg_sys::Oid>);

impl Drop for OuterRewritten {
    fn drop(&mut self) {
        let outer = std::mem::take(&mut self.0);
        REWRITTEN.with(|r| *r.borrow_mut() = outer);
    }
}

thread_local! {
    /// Functions whose calls the planner hook rewrote in the statement being planned.
    static REWRITTEN: std::cell::RefCell<Vec<pg_sys::Oid>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Records that a call of `funcid` was rewritten away (see `planner`).
pub fn note_rewrite(funcid: pg_sys::Oid) {
    REWRITTEN.with(|r| r.borrow_mut().push(funcid));
}

/// What a planned scan reads at: the present, or the point of a `drift_as_of` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    Present = 0,
    Seq = 1,
    Time = 2,
    /// Text read as `driftdb.as_of` reads it: an integer seq, else a timestamptz.
    Text = 3,
}

impl Point {
    pub fn from_i32(v: i32) -> Point {
        match v {
            1 => Point::Seq,
            2 => Point::Time,
            3 => Point::Text,
            _ => Point::Present,
        }
    }
}

/// Whether `funcid` is one of the driftdb extension's `drift_as_of` functions.
///
/// # Safety
/// Catalog lookups: must run inside a transaction.
unsafe fn is_as_of_call(funcid: pg_sys::Oid) -> bool {
    // SAFETY: per the caller, inside a transaction (catalog lookups).
    unsafe { is_extension_function(funcid, b"drift_as_of") }
}

/// Whether `funcid` is the driftdb extension's function called `name`.
///
/// # Safety
/// Catalog lookups: must run inside a transaction.
pub unsafe fn is_extension_function(funcid: pg_sys::Oid, name: &[u8]) -> bool {
    // SAFETY: per the caller, inside a transaction: get_func_name returns null or a
    // palloc'd NUL-terminated name, and the extension lookups read the catalogs
    // (missing_ok, so a missing extension is InvalidOid).
    unsafe {
        let found = pg_sys::get_func_name(funcid);
        if found.is_null() || std::ffi::CStr::from_ptr(found).to_bytes() != name {
            return false;
        }
        let ext = pg_sys::get_extension_oid(c"driftdb".as_ptr(), true);
        ext != pg_sys::InvalidOid
            && pg_sys::getExtensionOfObject(pg_sys::ProcedureRelationId, funcid) == ext
    }
}

/// The call of a range-table entry that is exactly one plain function call (no WITH
/// ORDINALITY, no ROWS FROM of several).
///
/// # Safety
/// `rte` must be a valid range-table entry.
pub unsafe fn single_call(rte: *mut pg_sys::RangeTblEntry) -> Option<*mut pg_sys::FuncExpr> {
    // SAFETY: per the caller, rte is a valid range-table entry: for a function entry its
    // functions list holds RangeTblFunction nodes whose funcexpr is null (checked) or an
    // expression node, read as a FuncExpr only after its tag says so.
    unsafe {
        if (*rte).rtekind != pg_sys::RTEKind::RTE_FUNCTION || (*rte).funcordinality {
            return None;
        }
        let functions = pgrx::PgList::<pg_sys::RangeTblFunction>::from_pg((*rte).functions);
        if functions.len() != 1 {
            return None;
        }
        let expr = (*functions.get_ptr(0)?).funcexpr;
        if expr.is_null() || (*expr).type_ != pg_sys::NodeTag::T_FuncExpr {
            return None;
        }
        Some(expr as *mut pg_sys::FuncExpr)
    }
}

/// The DriftDB table and the point of an entry that is one plain `drift_as_of` call.
///
/// # Safety
/// `rte` must be a valid range-table entry of a query being planned, inside its
/// transaction.
unsafe fn as_of_call(
    rte: *mut pg_sys::RangeTblEntry,
) -> Option<(pg_sys::Oid, *mut pg_sys::Node, pg_sys::Oid)> {
    // Returns (table, point, the drift_as_of function).
    // SAFETY: per the caller, rte is a valid range-table entry of a query being planned,
    // inside its transaction: the call's arguments are expression nodes whose tags are
    // checked before they are read as a Const; the rest are catalog lookups.
    unsafe {
        let call = single_call(rte)?;
        let args = pgrx::PgList::<pg_sys::Node>::from_pg((*call).args);
        if args.len() != 2 || !is_as_of_call((*call).funcid) {
            return None;
        }
        let (row, point) = (args.get_ptr(0)?, args.get_ptr(1)?);
        if (*row).type_ != pg_sys::NodeTag::T_Const {
            return None;
        }
        let relid = pg_sys::get_typ_typrelid((*(row as *mut pg_sys::Const)).consttype);
        if relid == pg_sys::InvalidOid || !(is_driftdb_table(relid) || all_driftdb_parts(relid)) {
            return None;
        }
        // Only a point that is one value for the whole statement: a column of any query
        // level (a LATERAL reference, a correlated subquery's outer column) would be
        // evaluated by a scan that has no row of that relation (#24: it crashed the server).
        if !super::history_call::one_value(point) {
            return None;
        }
        // Without EXECUTE on the function the call stays a call, which the executor
        // refuses with 42501 as for any function (#23).
        if !crate::pg::compat::may_execute((*call).funcid) {
            return None;
        }
        Some((relid, point, (*call).funcid))
    }
}

/// Whether `relid` is a partitioned table whose leaf partitions are all DriftDB tables:
/// its past is the union of theirs, read by scanning the parent with the point, which
/// every partition's scan takes from the entry (the planner copies a parent's entry, its
/// sample clause with it, into each partition's). A heap partition would take the clause
/// for a real TABLESAMPLE: then the call stays a function call.
///
/// # Safety
/// Catalog lookups and lock waits: must run inside a transaction.
unsafe fn all_driftdb_parts(relid: pg_sys::Oid) -> bool {
    // SAFETY: per the caller, inside a transaction: catalog lookups, and all_inheritors
    // locks each partition it returns, as the planner would when expanding the table.
    unsafe {
        if pg_sys::get_rel_relkind(relid) as u8 != pg_sys::RELKIND_PARTITIONED_TABLE {
            return false;
        }
        // Locked as the planner locks a parent's partitions when it expands them.
        crate::pg::compat::all_inheritors(relid, pg_sys::AccessShareLock as _)
            .into_iter()
            .all(|part| match pg_sys::get_rel_relkind(part) as u8 {
                pg_sys::RELKIND_PARTITIONED_TABLE => true,
                _ => is_driftdb_table(part),
            })
    }
}

/// Turns the call entry into a scan of the table, carrying the point (see the module doc).
///
/// # Safety
/// `query` is the query being planned, `rte` one of its range-table entries that
/// [`as_of_call`] returned `call` for.
unsafe fn convert(
    query: *mut pg_sys::Query,
    rte: *mut pg_sys::RangeTblEntry,
    (relid, point, funcid): (pg_sys::Oid, *mut pg_sys::Node, pg_sys::Oid),
) {
    // SAFETY: per the caller, query is the query being planned, rte one of its range-table
    // entries (as_of_call found it to be one plain drift_as_of call of a DriftDB table) and
    // point an expression node of the call's, moved into the new TableSampleClause: the
    // clause and its argument list are allocated in the current memory context, the
    // planner's, as is the permission bitmapset; the entry becomes a relation entry with no
    // function list, its relation locked here as the parser would have locked it.
    unsafe {
        note_rewrite(funcid);
        // A relation in a plan is locked from planning on, as the parser would have.
        pg_sys::LockRelationOid(relid, pg_sys::AccessShareLock as _);
        let sample = pg_sys::palloc0(std::mem::size_of::<pg_sys::TableSampleClause>())
            as *mut pg_sys::TableSampleClause;
        (*sample).type_ = pg_sys::NodeTag::T_TableSampleClause;
        // The drift_as_of function itself marks the clause: it is no sampling method, so
        // nothing can mistake the entry for a real TABLESAMPLE.
        (*sample).tsmhandler = funcid;
        (*sample).args = pgrx::PgList::<pg_sys::Node>::new().into_pg();
        (*sample).args = pg_sys::lappend((*sample).args, point.cast());
        (*rte).rtekind = pg_sys::RTEKind::RTE_RELATION;
        (*rte).relid = relid;
        let relkind = pg_sys::get_rel_relkind(relid);
        (*rte).relkind = relkind;
        (*rte).rellockmode = pg_sys::AccessShareLock as _;
        // A partitioned table is expanded into its partitions, each scanned at the point.
        (*rte).inh = relkind as u8 == pg_sys::RELKIND_PARTITIONED_TABLE;
        (*rte).functions = std::ptr::null_mut();
        (*rte).funcordinality = false;
        (*rte).tablesample = sample;
        // The whole row is read: SELECT on the table (or on every column), as for
        // `SELECT * FROM t`.
        let whole_row = pg_sys::bms_make_singleton(-pg_sys::FirstLowInvalidHeapAttributeNumber);
        crate::pg::compat::require_select(query, rte, whole_row);
    }
}

/// The point a converted entry carries, with its type, if this relation entry is one.
///
/// # Safety
/// `rte` must be a valid range-table entry.
pub unsafe fn point_of(
    rte: *mut pg_sys::RangeTblEntry,
) -> Option<(*mut pg_sys::Expr, Point, pg_sys::Oid)> {
    // SAFETY: per the caller, rte is a valid range-table entry: its tablesample is null or
    // a TableSampleClause, whose args list holds expression nodes (for a converted entry,
    // the point).
    unsafe {
        let sample = (*rte).tablesample;
        if sample.is_null() || !is_as_of_call((*sample).tsmhandler) {
            return None;
        }
        let args = pgrx::PgList::<pg_sys::Expr>::from_pg((*sample).args);
        let e = args.get_ptr(0)?;
        let kind = match pg_sys::exprType(e.cast()) {
            pg_sys::TIMESTAMPTZOID => Point::Time,
            pg_sys::TEXTOID => Point::Text,
            _ => Point::Seq,
        };
        Some((e, kind, (*sample).tsmhandler))
    }
}

struct Walk {
    queries: Vec<*mut pg_sys::Query>,
}

/// Walks a query tree, subqueries included, converting the plain `drift_as_of` call entries
/// and handing each query to `history_call::push_down_keys`.
///
/// # Safety
/// Called by Postgres' tree walkers only, with a node of the tree being walked (or null)
/// and a pointer to the [`Walk`] that [`rewrite_calls`] passed.
#[pg_guard]
unsafe extern "C-unwind" fn walker(node: *mut pg_sys::Node, ctx: *mut std::ffi::c_void) -> bool {
    // SAFETY: query_tree_walker and expression_tree_walker call the walker with null or a
    // node of the tree being walked, and ctx is the Walk that rewrite_calls passed, alive
    // for the whole walk and used through this one reference at a time; a node is read as a
    // Query or a RangeTblEntry only after its tag says so, and the innermost Query on the
    // stack is the one whose range table holds that entry.
    unsafe {
        if node.is_null() {
            return false;
        }
        let walk = &mut *(ctx as *mut Walk);
        match (*node).type_ {
            pg_sys::NodeTag::T_Query => {
                let q = node as *mut pg_sys::Query;
                super::history_call::push_down_keys(q);
                walk.queries.push(q);
                let r = pg_sys::query_tree_walker(
                    q,
                    Some(walker),
                    ctx,
                    pg_sys::QTW_EXAMINE_RTES_BEFORE as i32,
                );
                walk.queries.pop();
                r
            }
            pg_sys::NodeTag::T_RangeTblEntry => {
                let rte = node as *mut pg_sys::RangeTblEntry;
                if let (Some(call), Some(&q)) = (as_of_call(rte), walk.queries.last()) {
                    convert(q, rte, call);
                }
                false
            }
            _ => pg_sys::expression_tree_walker(node, Some(walker), ctx),
        }
    }
}

/// Converts every plain `drift_as_of` call entry in `parse` and its subqueries.
///
/// # Safety
/// `parse` is null or a valid query about to be planned, inside its transaction.
unsafe fn rewrite_calls(parse: *mut pg_sys::Query) {
    // SAFETY: per the caller, parse is null (checked) or the query about to be planned;
    // walker gets a pointer to the Walk on this stack frame, which outlives the walk.
    unsafe {
        if parse.is_null() || (*parse).commandType == pg_sys::CmdType::CMD_UTILITY {
            return;
        }
        let mut walk = Walk {
            queries: Vec::new(),
        };
        walker(parse.cast(), (&raw mut walk).cast());
    }
}
