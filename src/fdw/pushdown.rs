//! Which restrictions of a scan DriftDB answers itself: equality on the whole primary key,
//! or an IN list on a one-column key. Only exact matches are pushed (the type's default
//! equality operator, a deterministic collation), and Postgres still checks every qual on
//! the rows returned, so pushdown narrows a scan and never changes its answer.

use crate::fdw::table::TableInfo;
use pgrx::pg_sys;
use pgrx::PgList;

/// How a scan finds its rows. `exprs` (in the plan's `fdw_exprs`) are evaluated at
/// execution: one value per key column for `Key`, one array for `KeyIn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Full = 0,
    Key = 1,
    KeyIn = 2,
}

impl Access {
    pub fn from_i32(v: i32) -> Access {
        match v {
            1 => Access::Key,
            2 => Access::KeyIn,
            _ => Access::Full,
        }
    }
}

/// The column a Var of this relation refers to, looking through binary-compatible
/// relabeling (varchar compared as text).
unsafe fn var_attno(node: *mut pg_sys::Node, relid: pg_sys::Index) -> Option<i16> {
    unsafe {
        let mut n = node;
        while (*n).type_ == pg_sys::NodeTag::T_RelabelType {
            n = (*(n as *mut pg_sys::RelabelType)).arg.cast();
        }
        if (*n).type_ != pg_sys::NodeTag::T_Var {
            return None;
        }
        let var = n as *mut pg_sys::Var;
        ((*var).varno as pg_sys::Index == relid && (*var).varlevelsup == 0)
            .then_some((*var).varattno)
    }
}

/// A value known before the scan starts: no Vars, nothing volatile.
unsafe fn is_scan_constant(node: *mut pg_sys::Node) -> bool {
    unsafe { !pg_sys::contain_var_clause(node) && !pg_sys::contain_volatile_functions(node) }
}

/// True when `opno` is the default equality of the column's type and the comparison's
/// collation decides equality bytewise.
unsafe fn exact_equality(opno: pg_sys::Oid, typid: pg_sys::Oid, collid: pg_sys::Oid) -> bool {
    unsafe {
        let tc = pg_sys::lookup_type_cache(typid, pg_sys::TYPECACHE_EQ_OPR as i32);
        if tc.is_null() || (*tc).eq_opr != opno {
            return false;
        }
        collid == pg_sys::InvalidOid || pg_sys::get_collation_isdeterministic(collid)
    }
}

/// Finds the best access for a scan of `info` under `restrictinfo`, with the expressions
/// to evaluate at execution.
///
/// # Safety
/// Planner pointers of the relation being planned.
pub unsafe fn choose(
    info: &TableInfo,
    relid: pg_sys::Index,
    restrictinfo: *mut pg_sys::List,
) -> (Access, Vec<*mut pg_sys::Expr>) {
    if info.key.is_empty() {
        return (Access::Full, Vec::new());
    }
    let mut per_key: Vec<Option<*mut pg_sys::Expr>> = vec![None; info.key.len()];
    let mut in_list: Option<*mut pg_sys::Expr> = None;
    unsafe {
        let ris = PgList::<pg_sys::RestrictInfo>::from_pg(restrictinfo);
        for ri in ris.iter_ptr() {
            let clause = (*ri).clause as *mut pg_sys::Node;
            match (*clause).type_ {
                pg_sys::NodeTag::T_OpExpr => {
                    let op = clause as *mut pg_sys::OpExpr;
                    let args = PgList::<pg_sys::Node>::from_pg((*op).args);
                    if args.len() != 2 {
                        continue;
                    }
                    let (a, b) = (args.get_ptr(0).unwrap(), args.get_ptr(1).unwrap());
                    for (var, val) in [(a, b), (b, a)] {
                        let Some(attno) = var_attno(var, relid) else {
                            continue;
                        };
                        let Some(k) = info.key_position(attno) else {
                            continue;
                        };
                        let col = &info.columns[info.key[k]];
                        if is_scan_constant(val)
                            && exact_equality((*op).opno, col.typid, (*op).inputcollid)
                        {
                            per_key[k] = Some(val.cast());
                            break;
                        }
                    }
                }
                pg_sys::NodeTag::T_ScalarArrayOpExpr if info.key.len() == 1 => {
                    let op = clause as *mut pg_sys::ScalarArrayOpExpr;
                    let args = PgList::<pg_sys::Node>::from_pg((*op).args);
                    if !(*op).useOr || args.len() != 2 {
                        continue;
                    }
                    let (var, arr) = (args.get_ptr(0).unwrap(), args.get_ptr(1).unwrap());
                    let col = &info.columns[info.key[0]];
                    if var_attno(var, relid).and_then(|a| info.key_position(a)) == Some(0)
                        && is_scan_constant(arr)
                        && exact_equality((*op).opno, col.typid, (*op).inputcollid)
                    {
                        in_list = Some(arr.cast());
                    }
                }
                _ => {}
            }
        }
    }
    if per_key.iter().all(Option::is_some) {
        (
            Access::Key,
            per_key.into_iter().map(Option::unwrap).collect(),
        )
    } else if let Some(arr) = in_list {
        (Access::KeyIn, vec![arr])
    } else {
        (Access::Full, Vec::new())
    }
}
