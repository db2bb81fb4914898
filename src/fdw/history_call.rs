//! `FROM drift_history(t) WHERE "row"->>'id' = '42'` planned as
//! `drift_history_key(t, ARRAY['42'])`: the events of one row, not the whole table's
//! rendered and then filtered.
//!
//! The planner hook (`asof_call.rs`) hands every query, subqueries included, to
//! [`push_down_keys`]. A range-table entry that is exactly one call of DriftDB's
//! `drift_history` on a constant table qualifies when the query's WHERE clause has, among
//! its top-level AND terms, `"row" ->> 'column' = <text>` for every primary key column of
//! the table, with the text a constant or a parameter (casts allowed, nothing volatile,
//! no column of any table) and a deterministic collation; and when every key column is
//! one whose rendering `drift_history_key` can invert (`datum::key_renders_plainly`:
//! integers, and text or varchar in a UTF8 database). The call then becomes
//! `drift_history_key` with the texts in the key's order. The conditions stay in the
//! query, so Postgres still checks every row; the key function returns a subset of what
//! `drift_history` returns that holds every row they accept. Anything else (OR, a
//! condition in a join's ON clause, a key column missing, a lateral reference) is left
//! to `drift_history`.

use super::asof_call::{is_extension_function, single_call};
use crate::datum;
use crate::drop::is_driftdb_table;
use crate::table::TableInfo;
use pgrx::pg_sys;
use pgrx::PgList;

/// The attribute number of `drift_history`'s `row` column.
const ROW_ATTNO: i16 = 4;

/// Rewrites the qualifying `drift_history` calls of `q` (not of its subqueries).
///
/// # Safety
/// `q` must be a valid query tree being planned.
pub unsafe fn push_down_keys(q: *mut pg_sys::Query) {
    // SAFETY: per the caller, q is a valid query being planned, inside its transaction: its
    // join tree and range table are its own nodes, and every node is read as a type only
    // after its tag says so. TableInfo::of opens the relation history_call found to be a
    // DriftDB table, locked here first (one dropped while this waited for the lock is
    // 42P01 there). The new ArrayExpr, its element copies and the extended argument list
    // are allocated in the current memory context, the planner's, and are complete nodes
    // (palloc0 zeroes every other field).
    unsafe {
        if (*q).jointree.is_null() || (*(*q).jointree).quals.is_null() {
            return;
        }
        let terms = and_terms((*(*q).jointree).quals);
        let rtable = PgList::<pg_sys::RangeTblEntry>::from_pg((*q).rtable);
        for (i, rte) in rtable.iter_ptr().enumerate() {
            let Some((call, relid)) = history_call(rte) else {
                continue;
            };
            // Read under the lock a query of the table takes.
            pg_sys::LockRelationOid(relid, pg_sys::AccessShareLock as _);
            let info = TableInfo::of(relid);
            let plain = |pos: &usize| datum::key_renders_plainly(&info.columns[*pos]);
            if info.key.is_empty() || !info.key.iter().all(plain) {
                continue;
            }
            let mut texts: Vec<*mut pg_sys::Node> = vec![std::ptr::null_mut(); info.key.len()];
            for term in &terms {
                let Some((name, text)) = key_condition(*term, i + 1) else {
                    continue;
                };
                let at = info
                    .key
                    .iter()
                    .position(|pos| info.columns[*pos].name.as_bytes() == name.as_slice());
                if let Some(at) = at {
                    if texts[at].is_null() {
                        texts[at] = text;
                    }
                }
            }
            if texts.iter().any(|t| t.is_null()) {
                continue;
            }
            let Some(keyed) = key_function((*call).funcid) else {
                continue;
            };
            // Without EXECUTE on drift_history the call stays, and is refused (#23).
            if !crate::pg::compat::may_execute((*call).funcid) {
                continue;
            }
            super::asof_call::note_rewrite((*call).funcid);
            let mut elements = PgList::<pg_sys::Node>::new();
            for t in texts {
                elements.push(pg_sys::copyObjectImpl(t.cast()).cast());
            }
            let array =
                pg_sys::palloc0(std::mem::size_of::<pg_sys::ArrayExpr>()) as *mut pg_sys::ArrayExpr;
            (*array).xpr.type_ = pg_sys::NodeTag::T_ArrayExpr;
            (*array).array_typeid = pg_sys::TEXTARRAYOID;
            (*array).array_collid = pg_sys::DEFAULT_COLLATION_OID;
            (*array).element_typeid = pg_sys::TEXTOID;
            (*array).elements = elements.into_pg();
            (*array).multidims = false;
            (*array).location = -1;
            (*call).funcid = keyed;
            (*call).args = pg_sys::lappend((*call).args, array.cast());
        }
    }
}

/// The top-level AND terms of a WHERE clause.
///
/// # Safety
/// `quals` is a valid expression node (a WHERE clause).
unsafe fn and_terms(quals: *mut pg_sys::Node) -> Vec<*mut pg_sys::Node> {
    // SAFETY: per the caller, quals is a valid expression node; it is read as a BoolExpr
    // only after its tag says so, and its args list holds expression nodes.
    unsafe {
        if (*quals).type_ == pg_sys::NodeTag::T_BoolExpr {
            let b = quals as *mut pg_sys::BoolExpr;
            if (*b).boolop == pg_sys::BoolExprType::AND_EXPR {
                return PgList::<pg_sys::Node>::from_pg((*b).args)
                    .iter_ptr()
                    .collect();
            }
        }
        vec![quals]
    }
}

/// The call and its table, if `rte` is exactly one plain `drift_history(<constant>)` of
/// the driftdb extension on a DriftDB table.
///
/// # Safety
/// `rte` is a valid range-table entry of a query being planned, inside its transaction.
unsafe fn history_call(
    rte: *mut pg_sys::RangeTblEntry,
) -> Option<(*mut pg_sys::FuncExpr, pg_sys::Oid)> {
    // SAFETY: per the caller, rte is a valid range-table entry of a query being planned,
    // inside its transaction: single_call checks the entry, the argument is read as a Const
    // only after its tag says so, and its value is an Oid when its type is regclass and it
    // is not null (both checked).
    unsafe {
        let call = single_call(rte)?;
        let args = PgList::<pg_sys::Node>::from_pg((*call).args);
        if args.len() != 1 || !is_extension_function((*call).funcid, b"drift_history") {
            return None;
        }
        let table = args.get_ptr(0)?;
        if (*table).type_ != pg_sys::NodeTag::T_Const {
            return None;
        }
        let table = table as *mut pg_sys::Const;
        if (*table).constisnull || (*table).consttype != pg_sys::REGCLASSOID {
            return None;
        }
        let relid = pg_sys::Oid::from((*table).constvalue.value() as u32);
        is_driftdb_table(relid).then_some((call, relid))
    }
}

/// `drift_history_key(regclass, text[])`, from the schema of `drift_history` (`funcid`).
///
/// # Safety
/// Catalog lookups: must run inside a transaction.
unsafe fn key_function(funcid: pg_sys::Oid) -> Option<pg_sys::Oid> {
    // SAFETY: per the caller, inside a transaction: the name lookups return null (checked)
    // or palloc'd NUL-terminated strings, the qualified name list is built of String nodes
    // in the current memory context, and LookupFuncName reads the argument types from the
    // array, alive for the call, with missing_ok (InvalidOid when there is no such
    // function).
    unsafe {
        let schema = pg_sys::get_namespace_name(pg_sys::get_func_namespace(funcid));
        if schema.is_null() {
            return None;
        }
        let mut name = PgList::<pg_sys::String>::new();
        name.push(pg_sys::makeString(schema));
        name.push(pg_sys::makeString(pg_sys::pstrdup(
            c"drift_history_key".as_ptr(),
        )));
        let args = [pg_sys::REGCLASSOID, pg_sys::TEXTARRAYOID];
        let found = pg_sys::LookupFuncName(name.into_pg(), 2, args.as_ptr(), true);
        (found != pg_sys::InvalidOid && is_extension_function(found, b"drift_history_key"))
            .then_some(found)
    }
}

/// The column name and the text of a term `"row" ->> 'name' = <text>` (either way round)
/// on range-table entry `varno`, the text being one value for the whole query.
///
/// # Safety
/// `term` is a valid expression node of the query's WHERE clause, inside the planning
/// transaction.
unsafe fn key_condition(
    term: *mut pg_sys::Node,
    varno: usize,
) -> Option<(Vec<u8>, *mut pg_sys::Node)> {
    // SAFETY: per the caller, term is a valid expression node of the query's WHERE clause:
    // it is read as an OpExpr only after its tag says so, whose args list holds expression
    // nodes (a list of fewer than two is None through get_ptr).
    unsafe {
        if (*term).type_ != pg_sys::NodeTag::T_OpExpr {
            return None;
        }
        let eq = term as *mut pg_sys::OpExpr;
        if (*eq).opno != pg_sys::Oid::from(pg_sys::TextEqualOperator)
            || ((*eq).inputcollid != pg_sys::InvalidOid
                && !pg_sys::get_collation_isdeterministic((*eq).inputcollid))
        {
            return None;
        }
        let args = PgList::<pg_sys::Node>::from_pg((*eq).args);
        let (a, b) = (args.get_ptr(0)?, args.get_ptr(1)?);
        let (name, text) = match (field_of_row(a, varno), field_of_row(b, varno)) {
            (Some(name), None) => (name, b),
            (None, Some(name)) => (name, a),
            _ => return None,
        };
        (pg_sys::exprType(text) == pg_sys::TEXTOID
            && one_value(text)
            && !pg_sys::contain_volatile_functions(text))
        .then_some((name, text))
    }
}

/// The field name of `"row" ->> 'name'` on entry `varno` of this query level.
///
/// # Safety
/// `node` is a valid expression node.
unsafe fn field_of_row(node: *mut pg_sys::Node, varno: usize) -> Option<Vec<u8>> {
    // SAFETY: per the caller, node is a valid expression node: it and its arguments are
    // read as an OpExpr, a Var and a Const only after their tags say so, and the Const's
    // value is a text datum when it is of type text and not null (both checked);
    // text_to_cstring returns a palloc'd copy.
    unsafe {
        if (*node).type_ != pg_sys::NodeTag::T_OpExpr {
            return None;
        }
        let op = node as *mut pg_sys::OpExpr;
        if (*op).opfuncid != pg_sys::Oid::from(pg_sys::F_JSONB_OBJECT_FIELD_TEXT) {
            return None;
        }
        let args = PgList::<pg_sys::Node>::from_pg((*op).args);
        let (var, field) = (args.get_ptr(0)?, args.get_ptr(1)?);
        if (*var).type_ != pg_sys::NodeTag::T_Var || (*field).type_ != pg_sys::NodeTag::T_Const {
            return None;
        }
        let var = var as *mut pg_sys::Var;
        if (*var).varno as usize != varno || (*var).varattno != ROW_ATTNO || (*var).varlevelsup != 0
        {
            return None;
        }
        let field = field as *mut pg_sys::Const;
        if (*field).constisnull || (*field).consttype != pg_sys::TEXTOID {
            return None;
        }
        let text = pg_sys::text_to_cstring((*field).constvalue.cast_mut_ptr());
        Some(std::ffi::CStr::from_ptr(text).to_bytes().to_vec())
    }
}

/// Whether `node` is one value for the whole query: a constant or a parameter of the
/// statement, through casts, function calls and operators (checked for volatility by the
/// caller). Anything that could refer to a row of this query or an outer one (a column at
/// any level, a placeholder, a sublink, an aggregate) is not.
///
/// # Safety
/// `node` must be a valid expression tree.
pub unsafe fn one_value(node: *mut pg_sys::Node) -> bool {
    // SAFETY: per the caller, node is null (checked) or a valid expression tree: each node
    // is read as the type its tag names, and the recursion follows its own argument lists.
    unsafe {
        if node.is_null() {
            return false;
        }
        match (*node).type_ {
            pg_sys::NodeTag::T_Const | pg_sys::NodeTag::T_SQLValueFunction => true,
            pg_sys::NodeTag::T_Param => {
                (*(node as *mut pg_sys::Param)).paramkind == pg_sys::ParamKind::PARAM_EXTERN
            }
            pg_sys::NodeTag::T_OpExpr => {
                PgList::<pg_sys::Node>::from_pg((*(node as *mut pg_sys::OpExpr)).args)
                    .iter_ptr()
                    .all(|a| one_value(a))
            }
            pg_sys::NodeTag::T_RelabelType => {
                one_value((*(node as *mut pg_sys::RelabelType)).arg.cast())
            }
            pg_sys::NodeTag::T_CoerceViaIO => {
                one_value((*(node as *mut pg_sys::CoerceViaIO)).arg.cast())
            }
            pg_sys::NodeTag::T_FuncExpr => {
                PgList::<pg_sys::Node>::from_pg((*(node as *mut pg_sys::FuncExpr)).args)
                    .iter_ptr()
                    .all(|a| one_value(a))
            }
            _ => false,
        }
    }
}
