//! Which restrictions of a scan DriftDB answers itself: equality on the whole primary key,
//! an IN list on a one-column key, or equality or a range on a column with a secondary
//! index (ranges for types whose stored bytes sort like their values, and on numeric and
//! float indexes, which the engine keys canonically). Only exact
//! matches are pushed (the type's own btree operators on both sides, a deterministic
//! collation), and Postgres still checks every qual on the rows returned, so pushdown
//! narrows a scan and never changes its answer.

use crate::datum;
use crate::table::TableInfo;
use driftdb_storage::IndexKind;
use pgrx::pg_sys;
use pgrx::PgList;

/// How a scan finds its rows. `exprs` (in the plan's `fdw_exprs`) are evaluated at
/// execution: one value per key column for `Key`, one array for `KeyIn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Full = 0,
    Key = 1,
    KeyIn = 2,
    IndexEq = 3,
    IndexRange = 4,
}

impl Access {
    pub fn from_i32(v: i32) -> Access {
        match v {
            1 => Access::Key,
            2 => Access::KeyIn,
            3 => Access::IndexEq,
            4 => Access::IndexRange,
            _ => Access::Full,
        }
    }
}

/// The column a Var of this relation refers to, looking through binary-compatible
/// relabeling (varchar compared as text).
///
/// # Safety
/// `node` is a valid expression node.
unsafe fn var_attno(node: *mut pg_sys::Node, relid: pg_sys::Index) -> Option<i16> {
    // SAFETY: per the caller, node is a valid expression node: each RelabelType's arg is a
    // non-null expression node, and the node is read as a Var only after its tag says so.
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
///
/// # Safety
/// `node` is a valid expression tree.
unsafe fn is_scan_constant(node: *mut pg_sys::Node) -> bool {
    // SAFETY: per the caller, node is a valid expression tree; both walkers only read it.
    unsafe { !pg_sys::contain_var_clause(node) && !pg_sys::contain_volatile_functions(node) }
}

/// True when `opno` is the default equality of the column's type and the comparison's
/// collation decides equality bytewise.
///
/// # Safety
/// Catalog lookups: must run inside a transaction.
unsafe fn exact_equality(opno: pg_sys::Oid, typid: pg_sys::Oid, collid: pg_sys::Oid) -> bool {
    // SAFETY: per the caller, inside a transaction: lookup_type_cache returns the backend's
    // cached entry for the type (null checked), and the collation lookup reads the catalog.
    unsafe {
        let tc = pg_sys::lookup_type_cache(typid, pg_sys::TYPECACHE_EQ_OPR as i32);
        if tc.is_null() || (*tc).eq_opr != opno {
            return false;
        }
        collid == pg_sys::InvalidOid || pg_sys::get_collation_isdeterministic(collid)
    }
}

/// One end of a range: its value and whether it is inclusive.
type Bound = (*mut pg_sys::Expr, bool);

/// Range flags of an index scan, kept in the plan.
pub const HAS_LO: i32 = 1;
pub const LO_INCLUSIVE: i32 = 2;
pub const HAS_HI: i32 = 4;
pub const HI_INCLUSIVE: i32 = 8;

/// How a scan reads its rows, with the expressions to evaluate at execution.
pub struct Choice {
    pub access: Access,
    pub exprs: Vec<*mut pg_sys::Expr>,
    /// The indexed column (IndexEq, IndexRange).
    pub column: i16,
    /// HAS_LO | LO_INCLUSIVE | HAS_HI | HI_INCLUSIVE (IndexRange); exprs are lo then hi.
    pub flags: i32,
}

/// The btree strategy (1 <, 2 <=, 3 =, 4 >=, 5 >) of `opno` for the column's type, seen
/// from the column's side, when both operands have the column's type (a domain's column
/// is compared as its base type, by the base type's operators).
///
/// # Safety
/// Inside a transaction (catalog lookups); `other` is a valid expression node.
unsafe fn strategy(
    opno: pg_sys::Oid,
    typid: pg_sys::Oid,
    other: *mut pg_sys::Node,
    var_on_left: bool,
) -> Option<i32> {
    // SAFETY: per the caller, inside the planning transaction, `other` is a valid
    // expression node: exprType reads it, and the rest are type-cache and catalog lookups
    // (the type cache entry's null is checked).
    unsafe {
        let typid = pg_sys::getBaseType(typid);
        if pg_sys::getBaseType(pg_sys::exprType(other)) != typid {
            return None;
        }
        let tc = pg_sys::lookup_type_cache(typid, pg_sys::TYPECACHE_BTREE_OPFAMILY as i32);
        if tc.is_null() || (*tc).btree_opf == pg_sys::InvalidOid {
            return None;
        }
        let st = pg_sys::get_op_opfamily_strategy(opno, (*tc).btree_opf);
        if !(1..=5).contains(&st) {
            return None;
        }
        Some(if var_on_left { st } else { 6 - st })
    }
}

/// Finds the best access for a scan of `info` under `restrictinfo`, given the columns
/// that have a secondary index.
///
/// # Safety
/// Planner pointers of the relation being planned.
pub unsafe fn choose(
    info: &TableInfo,
    relid: pg_sys::Index,
    restrictinfo: *mut pg_sys::List,
    indexes: &[(u16, IndexKind)],
) -> Choice {
    let full = Choice {
        access: Access::Full,
        exprs: Vec::new(),
        column: 0,
        flags: 0,
    };
    let mut per_key: Vec<Option<*mut pg_sys::Expr>> = vec![None; info.key.len()];
    let mut in_list: Option<*mut pg_sys::Expr> = None;
    let mut index_eq: Option<(i16, *mut pg_sys::Expr)> = None;
    // Per indexed column: (lo, lo inclusive), (hi, hi inclusive).
    let mut ranges: Vec<(i16, Option<Bound>, Option<Bound>)> = Vec::new();
    // SAFETY: per the caller, restrictinfo is the relation's baserestrictinfo: a list of
    // RestrictInfos whose clauses are expression nodes, read as an OpExpr or a
    // ScalarArrayOpExpr only after their tags say so, with argument lists of expression
    // nodes (a list of any other length than two is skipped).
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
                    for (var, val, var_on_left) in [(a, b, true), (b, a, false)] {
                        let Some(attno) = var_attno(var, relid) else {
                            continue;
                        };
                        if !is_scan_constant(val) {
                            continue;
                        }
                        let Some(pos) = info.columns.iter().position(|c| c.attnum == attno) else {
                            continue;
                        };
                        let col = &info.columns[pos];
                        if let Some(k) = info.key_position(attno) {
                            if exact_equality((*op).opno, col.typid, (*op).inputcollid) {
                                per_key[k] = Some(val.cast());
                                break;
                            }
                        }
                        let Some(&(_, kind)) = indexes.iter().find(|(c, _)| *c == col.id()) else {
                            continue;
                        };
                        let collation_ok = (*op).inputcollid == pg_sys::InvalidOid
                            || pg_sys::get_collation_isdeterministic((*op).inputcollid);
                        match strategy((*op).opno, col.typid, val, var_on_left) {
                            Some(3) if collation_ok && index_eq.is_none() => {
                                index_eq = Some((attno, val.cast()));
                            }
                            // A canonical index key sorts like the values; stored bytes
                            // do for some types only.
                            Some(st)
                                if st != 3
                                    && (kind != IndexKind::Bytes
                                        || datum::bytes_sort_like_values(
                                            col.typid,
                                            (*op).inputcollid,
                                        )) =>
                            {
                                let entry = match ranges.iter_mut().find(|r| r.0 == attno) {
                                    Some(e) => e,
                                    None => {
                                        ranges.push((attno, None, None));
                                        ranges.last_mut().unwrap()
                                    }
                                };
                                let bound = Some((val.cast(), st == 2 || st == 4));
                                if st <= 2 && entry.2.is_none() {
                                    entry.2 = bound;
                                } else if st >= 4 && entry.1.is_none() {
                                    entry.1 = bound;
                                }
                            }
                            _ => {}
                        }
                        break;
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
    if !info.key.is_empty() && per_key.iter().all(Option::is_some) {
        return Choice {
            access: Access::Key,
            exprs: per_key.into_iter().map(Option::unwrap).collect(),
            ..full
        };
    }
    if let Some(arr) = in_list {
        return Choice {
            access: Access::KeyIn,
            exprs: vec![arr],
            ..full
        };
    }
    if let Some((column, val)) = index_eq {
        return Choice {
            access: Access::IndexEq,
            exprs: vec![val],
            column,
            flags: 0,
        };
    }
    if let Some((column, lo, hi)) = ranges.into_iter().next() {
        let mut flags = 0;
        let mut exprs = Vec::new();
        if let Some((e, inclusive)) = lo {
            flags |= HAS_LO | if inclusive { LO_INCLUSIVE } else { 0 };
            exprs.push(e);
        }
        if let Some((e, inclusive)) = hi {
            flags |= HAS_HI | if inclusive { HI_INCLUSIVE } else { 0 };
            exprs.push(e);
        }
        return Choice {
            access: Access::IndexRange,
            exprs,
            column,
            flags,
        };
    }
    full
}
