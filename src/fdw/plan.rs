//! Planner callbacks: size, paths and the plan of a scan of a DriftDB table.
//!
//! Primary-key equality and IN lists are answered by point lookups, indexed columns by
//! index lookups and ranges (see `pushdown`); everything else reads the table's state.
//! What the plan tells the scan is one [`ScanPrivate`], kept in `fdw_private` as a list
//! of Integer nodes (plans are cached and copied, so it holds only copyable nodes). A scan
//! converted from a `drift_as_of` call (see `asof_call`) reads at its point: `point` says
//! whether that is a seq or a time, and the point's expression follows the key values in
//! `fdw_exprs`.

use crate::engine;
use crate::error::DriftError;
use crate::fdw::asof_call::{self, Point};
use crate::fdw::pushdown::{self, Access, Choice};
use crate::pg::compat;
use crate::table::TableInfo;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{PgList, PgMemoryContexts};

/// Rows assumed for a table that has none yet, as far as the engine can tell (the
/// planner's usual guess for a relation it knows nothing about).
const ROWS_UNKNOWN: f64 = 1000.0;
/// Rows assumed for an IN list whose length is only known at execution.
const ROWS_IN_LIST: f64 = 10.0;
/// Cost of producing one row from the engine, in cpu_tuple_cost units.
const COST_PER_ROW: f64 = 0.01;
const COST_PER_LOOKUP: f64 = 0.05;
const STARTUP_COST: f64 = 10.0;

/// The access DriftDB will use for this scan.
///
/// # Safety
/// Inside the planner: `relid` is the foreign table being planned (locked and open) and
/// `quals` the relation's restriction list (`baserestrictinfo`), entry `rti` of the range
/// table.
unsafe fn choose(relid: pg_sys::Oid, rti: pg_sys::Index, quals: *mut pg_sys::List) -> Choice {
    // SAFETY: per the caller, relid is the foreign table being planned, which the planner
    // has locked and opened, and quals its baserestrictinfo list; TableInfo::of reads the
    // open relation and its options inside the planner's transaction, and pushdown::choose
    // only reads the restriction clauses.
    unsafe {
        let info = TableInfo::of(relid);
        let indexes = engine::indexes(info.id);
        pushdown::choose(&info, rti, quals, &indexes)
    }
}

/// The choice GetForeignRelSize made for this relation.
///
/// # Safety
/// `baserel` is the RelOptInfo of a DriftDB table being planned, after GetForeignRelSize
/// ran for it; the reference must not outlive the planning (the Choice lives in the
/// planner's memory context).
unsafe fn planned_choice<'a>(baserel: *mut pg_sys::RelOptInfo) -> &'a Choice {
    // SAFETY: per the caller, baserel is the RelOptInfo Postgres passes to the planner
    // callbacks; its fdw_private is null or the Choice get_foreign_rel_size leaked into the
    // planner's memory context, which outlives every callback of this planning (the
    // returned reference lives no longer than that).
    unsafe {
        match ((*baserel).fdw_private as *const Choice).as_ref() {
            Some(c) => c,
            None => DriftError::Internal("planning began without sizing the scan".into()).report(),
        }
    }
}

/// Rows a scan returns, by its access.
///
/// # Safety
/// `baserel` is the RelOptInfo of the relation being planned, and `exprs` the expressions
/// of the Choice that chose `access` (for `KeyIn`, the one array expression).
unsafe fn estimate(
    baserel: *mut pg_sys::RelOptInfo,
    access: Access,
    exprs: &[*mut pg_sys::Expr],
) -> f64 {
    // SAFETY: per the caller, baserel is the relation being planned and exprs the
    // expressions of `access`: for KeyIn exactly one, the IN list's array, whose Const
    // (when it is one and not null) holds an array datum; pg_detoast_datum returns it plain
    // (a copy in the planner's memory context when it was toasted), and ARR_DIMS holds ndim
    // dimensions after its header.
    unsafe {
        match access {
            Access::Key => 1.0,
            Access::KeyIn => {
                let arr = exprs[0] as *mut pg_sys::Node;
                if (*arr).type_ == pg_sys::NodeTag::T_Const
                    && !(*(arr as *mut pg_sys::Const)).constisnull
                {
                    let a = pg_sys::pg_detoast_datum(
                        (*(arr as *mut pg_sys::Const)).constvalue.cast_mut_ptr(),
                    ) as *mut pg_sys::ArrayType;
                    pg_sys::ArrayGetNItems((*a).ndim, arr_dims(a)) as f64
                } else {
                    ROWS_IN_LIST
                }
            }
            Access::Full | Access::IndexEq | Access::IndexRange => {
                let analyzed = (*baserel).tuples;
                if analyzed > 0.0 {
                    analyzed
                } else {
                    ROWS_UNKNOWN
                }
            }
        }
    }
}

/// ARR_DIMS: the dimensions follow the fixed array header.
///
/// # Safety
/// `a` points to a detoasted array (an `ArrayType` header followed by its dimensions).
unsafe fn arr_dims(a: *mut pg_sys::ArrayType) -> *mut i32 {
    // SAFETY: per the caller, `a` points to a detoasted array, whose dimensions follow its
    // fixed ArrayType header (ARR_DIMS): the offset stays inside the array's allocation.
    unsafe { (a as *mut u8).add(std::mem::size_of::<pg_sys::ArrayType>()) as *mut i32 }
}

/// GetForeignRelSize: the rows of the scan, from the engine's estimate for a table never
/// analyzed and the access chosen, which is kept for the callbacks that follow.
///
/// # Safety
/// Only Postgres calls this, as the wrapper's GetForeignRelSize callback, with the
/// planner's root and baserel for the foreign table `relid`.
#[pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_rel_size(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    relid: pg_sys::Oid,
) {
    // SAFETY: Postgres calls GetForeignRelSize with the planner's valid root and baserel
    // for the foreign table relid, which it has locked and opened. The Choice is leaked
    // into the current memory context (the planner's), which frees it when planning ends,
    // after the last callback that reads it; clauselist_selectivity reads the relation's
    // own restriction list.
    unsafe {
        if (*baserel).tuples <= 0.0 {
            // Never analyzed: the engine's own estimate of the table's rows. It is only
            // advice: a table it cannot read (no storage yet, or damaged, which the scan
            // itself reports) keeps the default guess, and planning goes on.
            let id = engine::table_id(relid);
            if let Ok(rows) = engine::try_with_store(|s| s.estimate_rows(id)) {
                if rows > 0 {
                    (*baserel).tuples = rows as f64;
                }
            }
        }
        let c = choose(relid, (*baserel).relid, (*baserel).baserestrictinfo);
        let rows = estimate(baserel, c.access, &c.exprs);
        // Kept for GetForeignPaths and GetForeignPlan: the choice reads the table's index
        // list from disk. Freed with the planner's memory.
        let kept = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(c);
        (*baserel).fdw_private = kept.cast();
        let c = &*kept;
        // A key lookup returns what it found; otherwise the quals' selectivity applies.
        (*baserel).rows = match c.access {
            Access::Full | Access::IndexEq | Access::IndexRange => {
                rows * pg_sys::clauselist_selectivity(
                    root,
                    (*baserel).baserestrictinfo,
                    0,
                    pg_sys::JoinType::JOIN_INNER,
                    std::ptr::null_mut(),
                )
            }
            _ => rows,
        }
        .max(1.0);
    }
}

/// GetForeignPaths: the one path of the scan, costed by its access.
///
/// # Safety
/// Only Postgres calls this, as the wrapper's GetForeignPaths callback, with the root and
/// baserel it passed to GetForeignRelSize before.
#[pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_paths(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    _relid: pg_sys::Oid,
) {
    // SAFETY: Postgres calls GetForeignPaths with the same valid root and baserel it passed
    // to GetForeignRelSize, whose fdw_private holds the Choice that callback kept; the path
    // is made and added in the planner's memory context by Postgres' own functions.
    unsafe {
        let c = planned_choice(baserel);
        // A full scan reads every row; the others fetch about the rows they return.
        let (startup, fetched, per_row) = match c.access {
            Access::Full => (
                STARTUP_COST,
                estimate(baserel, c.access, &c.exprs),
                COST_PER_ROW,
            ),
            Access::Key | Access::KeyIn => (
                COST_PER_LOOKUP,
                estimate(baserel, c.access, &c.exprs),
                COST_PER_LOOKUP,
            ),
            Access::IndexEq | Access::IndexRange => {
                (COST_PER_LOOKUP, (*baserel).rows, COST_PER_LOOKUP)
            }
        };
        let total = startup + fetched * per_row;
        let path = compat::foreignscan_path(
            root,
            baserel,
            (*baserel).rows,
            startup,
            total,
            std::ptr::null_mut(),
        );
        pg_sys::add_path(baserel, path.cast());
    }
}

/// GetForeignPlan: the scan's plan, with what its scan needs to know in fdw_private (a
/// ScanPrivate) and the expressions it evaluates in fdw_exprs.
///
/// # Safety
/// Only Postgres calls this, as the wrapper's GetForeignPlan callback, with the planner's
/// pointers for the relation whose size and paths the callbacks above computed.
#[pg_guard]
pub unsafe extern "C-unwind" fn get_foreign_plan(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    relid: pg_sys::Oid,
    _best_path: *mut pg_sys::ForeignPath,
    tlist: *mut pg_sys::List,
    scan_clauses: *mut pg_sys::List,
    outer_plan: *mut pg_sys::Plan,
) -> *mut pg_sys::ForeignScan {
    // SAFETY: Postgres calls GetForeignPlan with valid planner pointers for the foreign
    // relation: root's parse tree, row marks, result relids and range-table array
    // (simple_rte_array, indexed by baserel->relid) are the planner's own; the Choice is
    // the one GetForeignRelSize kept; tlist, scan_clauses and outer_plan are passed through
    // to make_foreignscan. The expressions are copied into the plan, which is allocated in
    // the planner's memory context.
    unsafe {
        let parse = (*root).parse;
        // The scan feeds an UPDATE or DELETE of the table, or a locking read of it: either
        // finds each row again by the ctid the scan puts on it.
        let locked = PgList::<pg_sys::PlanRowMark>::from_pg((*root).rowMarks)
            .iter_ptr()
            .any(|rc| {
                (*rc).rti == (*baserel).relid
                    && crate::rowlock::Strength::of_rowmark((*rc).markType).is_some()
            });
        // A partition of a partitioned target is a result relation of its own
        // (`all_result_relids`), not the query's `resultRelation`.
        let modified = ((*parse).resultRelation == (*baserel).relid as i32
            || pg_sys::bms_is_member((*baserel).relid as i32, (*root).all_result_relids))
            && matches!(
                (*parse).commandType,
                pg_sys::CmdType::CMD_UPDATE | pg_sys::CmdType::CMD_DELETE
            );
        let is_target = locked || modified;
        let prelock = if modified {
            trigger_lock(relid, (*parse).commandType)
        } else {
            None
        };
        // The scan's quals are the relation's restrictions (DriftDB paths are never
        // parameterized), which the choice was made from.
        let c = planned_choice(baserel);
        let mut fdw_exprs = PgList::<pg_sys::Expr>::new();
        for &e in &c.exprs {
            fdw_exprs.push(pg_sys::copyObjectImpl(e.cast()).cast());
        }
        let rte = *(*root).simple_rte_array.add((*baserel).relid as usize);
        let (point, funcid) = match asof_call::point_of(rte) {
            Some((e, kind, funcid)) => {
                fdw_exprs.push(pg_sys::copyObjectImpl(e.cast()).cast());
                (kind, funcid)
            }
            None => (Point::Present, pg_sys::InvalidOid),
        };
        // Every qual stays with Postgres, which checks it on each row returned.
        let clauses = pg_sys::extract_actual_clauses(scan_clauses, false);
        let private = ScanPrivate {
            is_target,
            access: c.access,
            column: c.column,
            flags: c.flags,
            point,
            needed: needed_attrs(baserel),
            as_of_function: funcid,
            prelock,
        };
        pg_sys::make_foreignscan(
            tlist,
            clauses,
            (*baserel).relid,
            fdw_exprs.into_pg(),
            private.to_list(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            outer_plan,
        )
    }
}

/// The row lock the scan of an UPDATE or DELETE target takes itself, when the table has
/// BEFORE ROW triggers for the command: heap locks a row and finds its newest version
/// before those triggers fire (`GetTupleForTrigger`), so that they fire once, on the row
/// the statement changes. Postgres fires a foreign table's on the row its scan returned,
/// so the scan locks each row that passes the statement's conditions and returns its
/// newest version (see `scan::iterate_foreign_scan`). Without such triggers the lock is
/// taken where the change is made (`modify::lock_target`), as heap takes it.
///
/// # Safety
/// Planner callback context: `relid` is a relation of the query being planned, locked.
unsafe fn trigger_lock(
    relid: pg_sys::Oid,
    cmd: pg_sys::CmdType::Type,
) -> Option<crate::rowlock::Strength> {
    use crate::rowlock::Strength;
    // SAFETY: the relation is open and locked by the planner; its trigger descriptor
    // lives in the relcache entry until it is closed below.
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return None;
        }
        let trig = (*rel).trigdesc;
        let (fires, strength) = match cmd {
            // An UPDATE that changes the key upgrades the lock where it changes the row.
            pg_sys::CmdType::CMD_UPDATE => (
                !trig.is_null() && (*trig).trig_update_before_row,
                Strength::NoKeyUpdate,
            ),
            pg_sys::CmdType::CMD_DELETE => (
                !trig.is_null() && (*trig).trig_delete_before_row,
                Strength::Update,
            ),
            _ => (false, Strength::Update),
        };
        pg_sys::RelationClose(rel);
        fires.then_some(strength)
    }
}

/// The attnums a scan of `baserel` must fill, or `None` for all of them: those the rest of
/// the plan reads (the relation's target list, which holds a whole-row Var when an UPDATE
/// or a row trigger needs the old row) and those of every qual (Postgres checks each on
/// the rows returned). The other columns are returned as NULL without being decoded, as
/// postgres_fdw fetches only these columns.
///
/// # Safety
/// `baserel` must be a base relation being planned.
unsafe fn needed_attrs(baserel: *mut pg_sys::RelOptInfo) -> Option<Vec<i32>> {
    // SAFETY: per the caller, baserel is a base relation being planned: its reltarget and
    // baserestrictinfo are the planner's; pull_varattnos builds a bitmapset in the current
    // memory context, which bms_is_member and bms_next_member only read.
    unsafe {
        let relid = (*baserel).relid;
        let mut attrs: *mut pg_sys::Bitmapset = std::ptr::null_mut();
        pg_sys::pull_varattnos((*(*baserel).reltarget).exprs.cast(), relid, &mut attrs);
        for rinfo in PgList::<pg_sys::RestrictInfo>::from_pg((*baserel).baserestrictinfo).iter_ptr()
        {
            pg_sys::pull_varattnos((*rinfo).clause.cast(), relid, &mut attrs);
        }
        let offset = pg_sys::FirstLowInvalidHeapAttributeNumber;
        if pg_sys::bms_is_member(-offset, attrs) {
            return None;
        }
        let mut out = Vec::new();
        let mut x = -1;
        loop {
            x = pg_sys::bms_next_member(attrs, x);
            if x < 0 {
                break;
            }
            // System columns (negative attnums) are not DriftDB's to fill.
            if x + offset > 0 {
                out.push(x + offset);
            }
        }
        Some(out)
    }
}

/// What a plan made by [`get_foreign_plan`] tells its scan.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanPrivate {
    /// The scan reads the target of an UPDATE or DELETE.
    pub is_target: bool,
    pub access: Access,
    /// The indexed column's attnum (index accesses).
    pub column: i16,
    /// The range's bound flags (see `pushdown`).
    pub flags: i32,
    pub point: Point,
    /// The attnums the scan must fill, or `None` for all (see [`needed_attrs`]).
    pub needed: Option<Vec<i32>>,
    /// The `drift_as_of` function the scan came from (invalid in the present): the scan
    /// checks EXECUTE on it each time it starts, as a cached plan may run for another role.
    pub as_of_function: pg_sys::Oid,
    /// The lock the scan takes on each row it returns (see [`trigger_lock`]).
    pub prelock: Option<crate::rowlock::Strength>,
}

impl ScanPrivate {
    /// `fdw_private`: `[is_target, access, column, flags, point, as_of_function, prelock,
    /// n, needed...]`, with `prelock` -1 for none and `n` -1 when every column is needed.
    pub fn to_list(&self) -> *mut pg_sys::List {
        let mut ints = vec![
            self.is_target as i32,
            self.access as i32,
            self.column.into(),
            self.flags,
            self.point as i32,
            self.as_of_function.to_u32() as i32,
            self.prelock.map_or(-1, |s| s.code()),
        ];
        match &self.needed {
            None => ints.push(-1),
            Some(attrs) => {
                ints.push(attrs.len() as i32);
                ints.extend(attrs);
            }
        }
        let mut list = PgList::<pg_sys::Integer>::new();
        for i in ints {
            // SAFETY: makeInteger allocates a node in the planner's current memory context.
            list.push(unsafe { pg_sys::makeInteger(i) });
        }
        list.into_pg()
    }

    /// Reads back what [`ScanPrivate::to_list`] wrote.
    ///
    /// # Safety
    /// `list` is the `fdw_private` of a DriftDB foreign scan plan.
    pub unsafe fn from_list(list: *mut pg_sys::List) -> ScanPrivate {
        // SAFETY: per the caller, list is the fdw_private of a DriftDB scan plan, which
        // to_list made as a list of Integer nodes (a copy of the plan holds copies of
        // them); every element is read as one within the list's length.
        let ints: Vec<i32> = unsafe {
            PgList::<pg_sys::Integer>::from_pg(list)
                .iter_ptr()
                .map(|i| (*i).ival)
                .collect()
        };
        let bad = || -> ! {
            DriftError::Internal(format!("a DriftDB scan plan holds {ints:?}")).report()
        };
        if ints.len() < 8 {
            bad()
        }
        let needed = match ints[7] {
            -1 => None,
            n if n >= 0 && ints.len() == 8 + n as usize => Some(ints[8..].to_vec()),
            _ => bad(),
        };
        let prelock = match ints[6] {
            -1 => None,
            code => Some(crate::rowlock::Strength::from_code(code).unwrap_or_else(|| bad())),
        };
        ScanPrivate {
            is_target: ints[0] != 0,
            access: Access::from_i32(ints[1]),
            column: i16::try_from(ints[2]).unwrap_or_else(|_| bad()),
            flags: ints[3],
            point: Point::from_i32(ints[4]),
            as_of_function: pg_sys::Oid::from(ints[5] as u32),
            prelock,
            needed,
        }
    }

    /// The needed attnums as a flag per attribute (`natts` of them), or `None` for all.
    pub fn needed_flags(&self, natts: usize) -> Option<Vec<bool>> {
        let attrs = self.needed.as_ref()?;
        let mut needed = vec![false; natts];
        for &attno in attrs {
            if let Some(flag) = usize::try_from(attno - 1)
                .ok()
                .and_then(|i| needed.get_mut(i))
            {
                *flag = true;
            }
        }
        Some(needed)
    }
}

/// ExplainForeignScan: the scan's access, its point in the past, and its index column.
///
/// # Safety
/// Only Postgres calls this, as the wrapper's ExplainForeignScan callback, with the state
/// of a scan whose plan `get_foreign_plan` made, and the EXPLAIN output being built.
#[pg_guard]
pub unsafe extern "C-unwind" fn explain_foreign_scan(
    node: *mut pg_sys::ForeignScanState,
    es: *mut pg_sys::ExplainState,
) {
    // SAFETY: Postgres calls ExplainForeignScan with the valid scan state of a scan of a
    // DriftDB table (begun, or only initialised for EXPLAIN) and its ExplainState: the plan
    // is the ForeignScan GetForeignPlan made, whose fdw_private to_list wrote, and the
    // scan's relation is open; the property names and texts are static C strings, and
    // get_attname returns a palloc'd name of an existing column (it raises an ERROR
    // otherwise).
    unsafe {
        let plan = (*node).ss.ps.plan as *mut pg_sys::ForeignScan;
        let private = ScanPrivate::from_list((*plan).fdw_private);
        let text = match private.access {
            Access::Full => c"full scan",
            Access::Key => c"primary key lookup",
            Access::KeyIn => c"primary key lookups (IN list)",
            Access::IndexEq => c"index lookup",
            Access::IndexRange => c"index range",
        };
        pg_sys::ExplainPropertyText(c"DriftDB Access".as_ptr(), text.as_ptr(), es);
        let point = match private.point {
            Point::Present => None,
            Point::Seq => Some(c"drift_as_of seq"),
            Point::Time => Some(c"drift_as_of time"),
            Point::Text => Some(c"drift_as_of text"),
        };
        if let Some(p) = point {
            pg_sys::ExplainPropertyText(c"DriftDB As Of".as_ptr(), p.as_ptr(), es);
        }
        if matches!(private.access, Access::IndexEq | Access::IndexRange) {
            let relid = (*(*node).ss.ss_currentRelation).rd_id;
            let name = pg_sys::get_attname(relid, private.column, false);
            pg_sys::ExplainPropertyText(c"DriftDB Index".as_ptr(), name, es);
        }
    }
}

/// Locking reads lock DriftDB rows (see `scan::refetch_foreign_row`); a row mark without a
/// lock (a DriftDB table joined to the target of an UPDATE) copies the whole row.
#[pg_guard]
pub extern "C-unwind" fn get_foreign_row_mark_type(
    _rte: *mut pg_sys::RangeTblEntry,
    strength: pg_sys::LockClauseStrength::Type,
) -> pg_sys::RowMarkType::Type {
    use pg_sys::LockClauseStrength as S;
    use pg_sys::RowMarkType as M;
    match strength {
        S::LCS_FORUPDATE => M::ROW_MARK_EXCLUSIVE,
        S::LCS_FORNOKEYUPDATE => M::ROW_MARK_NOKEYEXCLUSIVE,
        S::LCS_FORSHARE => M::ROW_MARK_SHARE,
        S::LCS_FORKEYSHARE => M::ROW_MARK_KEYSHARE,
        _ => M::ROW_MARK_COPY,
    }
}
