//! Who changed what and when: every event of a table (`drift_history`), and the difference
//! between two points (`drift_diff`). Rows are jsonb objects keyed by column name, rendered
//! by Postgres' own `row_to_json`.

use crate::datum;
use crate::engine::{self, LatestFates};
use crate::error::DriftError;
use crate::pg::srf::{
    function_info_v1, jsonb_from_cstr, materialize, name_datum, text_array, text_datum,
};
use crate::table::TableInfo;
use crate::timetravel::{check_seq, readable_table, stable_seq_of};
use driftdb_storage::{HistoryEntry, Op, Row};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;
use std::collections::HashMap;
use std::ffi::{CStr, CString};

/// A jsonb datum of `row`, typed as the table.
///
/// # Safety
/// `tupdesc` is the tuple descriptor of `info`'s relation (open for the call).
unsafe fn row_jsonb(info: &TableInfo, tupdesc: pg_sys::TupleDesc, row: &Row) -> pg_sys::Datum {
    // SAFETY: per the caller, tupdesc is the table's tuple descriptor (of an open
    // relation), one attribute per entry of info.columns, so `fill` writes exactly the
    // natts values heap_form_tuple reads; the tuple, its composite datum (typed as the
    // table's row type, which row_to_json reads from it), the JSON text and its C string
    // are palloc'd in the current memory context, and text_to_cstring returns a
    // NUL-terminated copy.
    unsafe {
        let natts = info.columns.len();
        let mut values = vec![pg_sys::Datum::from(0usize); natts];
        let mut nulls = vec![true; natts];
        info.fill(row, values.as_mut_ptr(), nulls.as_mut_ptr());
        let tuple = pg_sys::heap_form_tuple(tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr());
        let composite = pg_sys::heap_copy_tuple_as_datum(tuple, tupdesc);
        let json = pg_sys::OidFunctionCall1Coll(
            pg_sys::Oid::from(pg_sys::F_ROW_TO_JSON_RECORD),
            pg_sys::InvalidOid,
            composite,
        );
        let text = pg_sys::text_to_cstring(json.cast_mut_ptr());
        jsonb_from_cstr(CStr::from_ptr(text))
    }
}

/// The primary key of `row` as a jsonb object; for a table without one, the hidden row id
/// in hex.
///
/// # Safety
/// As [`row_jsonb`].
unsafe fn key_jsonb(
    info: &TableInfo,
    tupdesc: pg_sys::TupleDesc,
    key: &[u8],
    row: &Row,
) -> pg_sys::Datum {
    // SAFETY: per the caller, tupdesc is the table's tuple descriptor, as row_jsonb needs;
    // jsonb_delete(jsonb, text[]) gets two datums of those types, made in the current
    // memory context.
    unsafe {
        if info.key.is_empty() {
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            let text = CString::new(format!("{{\"row_id\": \"{hex}\"}}")).expect("hex");
            return jsonb_from_cstr(&text);
        }
        let others: Vec<String> = info
            .columns
            .iter()
            .enumerate()
            .filter(|(pos, c)| !c.dropped && !info.key.contains(pos))
            .map(|(_, c)| c.name.clone())
            .collect();
        pg_sys::OidFunctionCall2Coll(
            pg_sys::Oid::from(pg_sys::F_JSONB_DELETE_JSONB__TEXT),
            pg_sys::InvalidOid,
            row_jsonb(info, tupdesc, row),
            text_array(&others),
        )
    }
}

function_info_v1!(drift_history);

/// `drift_history(regclass)`: every visible event of the table, oldest first.
///
/// # Safety
/// Only Postgres calls this, through its V1 info record, for the SQL function
/// `drift_history(regclass)` declared below.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn drift_history(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: Postgres calls drift_history through its V1 info record with a valid fcinfo
    // for the SQL declaration below (one regclass argument, RETURNS TABLE, STRICT):
    // pg_getarg reads argument 0 as an Oid, and return_history is given the call's fcinfo
    // and the table readable_table checked and locked.
    unsafe {
        let Some(relid) = pgrx::fcinfo::pg_getarg::<pg_sys::Oid>(fcinfo, 0) else {
            return pg_sys::Datum::from(0usize);
        };
        let info = readable_table(relid);
        return_history(fcinfo, relid, &info, None);
        pg_sys::Datum::from(0usize)
    }
}

function_info_v1!(drift_history_key);

/// `drift_history_key(regclass, text[])`: the events of the row whose primary key columns,
/// rendered as `drift_history`'s `row->>'column'` renders them, are the given texts (in
/// the order of the key's columns). What a `drift_history` call with such conditions on
/// every key column is planned as (`fdw/history_call.rs`). Text that no key value renders
/// as matches nothing, as the condition would.
///
/// # Safety
/// Only Postgres calls this, through its V1 info record, for the SQL function
/// `drift_history_key(regclass, text[])` declared below.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn drift_history_key(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: Postgres calls drift_history_key through its V1 info record with a valid
    // fcinfo for the SQL declaration below (regclass and text[], RETURNS TABLE, STRICT):
    // pg_getarg reads the arguments as an Oid and a text array; the result set is set up on
    // the call's own fcinfo.
    unsafe {
        let relid = pgrx::fcinfo::pg_getarg::<pg_sys::Oid>(fcinfo, 0);
        let parts = pgrx::fcinfo::pg_getarg::<Vec<Option<String>>>(fcinfo, 1);
        let (Some(relid), Some(parts)) = (relid, parts) else {
            return pg_sys::Datum::from(0usize);
        };
        let info = readable_table(relid);
        if parts.len() != info.key.len() {
            DriftError::KeyTextCount {
                table: relid,
                expected: info.key.len(),
                got: parts.len(),
            }
            .report()
        }
        let key = info
            .key
            .iter()
            .zip(&parts)
            .try_fold(Some(Vec::new()), |key, (pos, text)| {
                let col = &info.columns[*pos];
                let stored = match text {
                    Some(text) => datum::rendered_key_stored(col, text)?,
                    None => None,
                };
                Ok::<_, DriftError>(key.zip(stored).map(|(mut key, stored)| {
                    datum::push_key_part(col, &stored, &mut key);
                    key
                }))
            })
            .unwrap_or_else(|e| e.report());
        match key {
            Some(key) => return_history(fcinfo, relid, &info, Some(&key)),
            // Matches nothing: the result is empty, as the conditions would make it.
            None => {
                materialize(fcinfo);
            }
        }
        pg_sys::Datum::from(0usize)
    }
}

/// Materialises the visible events of table `relid` (of `key` alone, if given), oldest
/// first, into the function's result set.
///
/// # Safety
/// `fcinfo` is the running call of `drift_history` or `drift_history_key`, and `relid` the
/// DriftDB table `info` describes, checked and locked by `readable_table`.
unsafe fn return_history(
    fcinfo: pg_sys::FunctionCallInfo,
    relid: pg_sys::Oid,
    info: &TableInfo,
    key: Option<&[u8]>,
) {
    // SAFETY: per the caller, fcinfo is the running call of a RETURNS TABLE function of the
    // history's seven columns and relid a DriftDB table readable_table checked and locked,
    // so RelationIdGetRelation returns it open (closed at the end; an ERROR releases it
    // with the transaction's resources). Each row's datums are made in `per_row`, which is
    // reset only after tuplestore_putvalues copied them into the store's own memory; the
    // values arrays have the 7 entries of the result's descriptor.
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        let rowdesc = (*rel).rd_att;
        let upto = stable_seq_of(info.id);
        let (store, desc) = materialize(fcinfo);
        let mut current: HashMap<Vec<u8>, Row> = HashMap::new();
        // Dropped columns are not shown, as in the rows.
        let names: HashMap<u16, String> = info
            .columns
            .iter()
            .filter(|c| !c.dropped)
            .map(|c| (c.id(), c.name.clone()))
            .collect();
        // What rendering one event allocates (the row's tuple, its JSON text, the jsonb) is
        // freed once the tuplestore holds its copy: memory stays flat over any history.
        let mut per_row = PgMemoryContexts::new("drift_history row");
        engine::with_store(|s| {
            let events: Box<dyn Iterator<Item = driftdb_storage::Result<HistoryEntry>>> = match key
            {
                Some(key) => match s.history(info.id, key, upto, &LatestFates) {
                    Err(driftdb_storage::Error::NoSuchTable(_)) => return Ok(()),
                    other => Box::new(other?.into_iter().map(Ok)),
                },
                None => match s.table_history(info.id, upto, &LatestFates) {
                    Err(driftdb_storage::Error::NoSuchTable(_)) => return Ok(()),
                    other => Box::new(other?),
                },
            };
            for e in events {
                let e = e?;
                let (op, row, changed) = match &e.op {
                    Op::Insert(r) => {
                        current.insert(e.key.clone(), r.clone());
                        ("INSERT", r.clone(), None)
                    }
                    Op::Patch(cols) => {
                        let mut r = current.remove(&e.key).unwrap_or_default();
                        r.apply_patch(cols);
                        current.insert(e.key.clone(), r.clone());
                        let changed: Vec<String> = cols
                            .iter()
                            .filter_map(|(c, _)| names.get(c).cloned())
                            .collect();
                        ("PATCH", r, Some(changed))
                    }
                    Op::SoftDelete => (
                        "SOFT_DELETE",
                        current.remove(&e.key).unwrap_or_default(),
                        None,
                    ),
                };
                let mut values = [pg_sys::Datum::from(0usize); 7];
                let mut nulls = [false; 7];
                per_row.switch_to(|_| {
                    values[0] = pg_sys::Datum::from(e.seq as i64);
                    values[1] = pg_sys::Datum::from(e.commit_ts);
                    values[2] = text_datum(op);
                    values[3] = row_jsonb(info, rowdesc, &row);
                    match changed {
                        Some(c) => values[4] = text_array(&c),
                        None => nulls[4] = true,
                    }
                    values[5] = pg_sys::Datum::from(e.xid as i64);
                    values[6] = name_datum(&e.role);
                });
                // The tuplestore copies the values into its own memory.
                pg_sys::tuplestore_putvalues(store, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
                per_row.reset();
            }
            Ok(())
        });
        pg_sys::RelationClose(rel);
    }
}

function_info_v1!(drift_diff);

/// `drift_diff(regclass, from, to)`: rows added, changed and removed between two seqs.
///
/// # Safety
/// Only Postgres calls this, through its V1 info record, for the SQL function
/// `drift_diff(regclass, bigint, bigint)` declared below.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn drift_diff(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: Postgres calls drift_diff through its V1 info record with a valid fcinfo for
    // the SQL declaration below (regclass, bigint, bigint, RETURNS TABLE): pg_getarg reads
    // the arguments as an Oid and two i64s; the table is checked and locked by
    // readable_table, so RelationIdGetRelation returns it open (closed at the end); each
    // row's datums are made in `per_row`, reset only after tuplestore_putvalues copied the
    // 4 values into the store.
    unsafe {
        let relid = pgrx::fcinfo::pg_getarg::<pg_sys::Oid>(fcinfo, 0);
        let from = pgrx::fcinfo::pg_getarg::<i64>(fcinfo, 1);
        let to = pgrx::fcinfo::pg_getarg::<i64>(fcinfo, 2);
        let (Some(relid), Some(from), Some(to)) = (relid, from, to) else {
            DriftError::NullPoint.report()
        };
        let info = readable_table(relid);
        let (from, to) = (check_seq(info.id, from), check_seq(info.id, to));
        let rel = pg_sys::RelationIdGetRelation(relid);
        let rowdesc = (*rel).rd_att;
        let (store, desc) = materialize(fcinfo);
        let changes = engine::with_store(|s| match s.changes(info.id, from, to, &LatestFates) {
            Err(driftdb_storage::Error::NoSuchTable(_)) => Ok(Vec::new()),
            other => other,
        });
        // Freed after each row, once the tuplestore holds its copy (as in drift_history).
        let mut per_row = PgMemoryContexts::new("drift_diff row");
        for ch in changes {
            let (kind, keyed) = match (&ch.before, &ch.after) {
                (None, Some(a)) => ("added", a),
                (Some(b), None) => ("removed", b),
                (Some(_), Some(a)) => ("changed", a),
                (None, None) => continue,
            };
            let mut values = [pg_sys::Datum::from(0usize); 4];
            let mut nulls = [false; 4];
            per_row.switch_to(|_| {
                values[0] = key_jsonb(&info, rowdesc, &ch.key, keyed);
                values[1] = text_datum(kind);
                match &ch.before {
                    Some(b) => values[2] = row_jsonb(&info, rowdesc, b),
                    None => nulls[2] = true,
                }
                match &ch.after {
                    Some(a) => values[3] = row_jsonb(&info, rowdesc, a),
                    None => nulls[3] = true,
                }
            });
            pg_sys::tuplestore_putvalues(store, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            per_row.reset();
        }
        pg_sys::RelationClose(rel);
        pg_sys::Datum::from(0usize)
    }
}

extension_sql!(
    r#"
CREATE FUNCTION drift_history(table_name regclass)
    RETURNS TABLE (seq bigint, committed_at timestamptz, op text, "row" jsonb,
                   changed text[], txid xid8, role name)
    VOLATILE PARALLEL RESTRICTED STRICT
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', 'drift_history';
COMMENT ON FUNCTION drift_history(regclass) IS
    'Every event of a DriftDB table, oldest first, with who committed it and when';
CREATE FUNCTION drift_history_key(table_name regclass, key text[])
    RETURNS TABLE (seq bigint, committed_at timestamptz, op text, "row" jsonb,
                   changed text[], txid xid8, role name)
    VOLATILE PARALLEL RESTRICTED STRICT
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', 'drift_history_key';
COMMENT ON FUNCTION drift_history_key(regclass, text[]) IS
    'The events of one row of a DriftDB table, its key columns given as drift_history renders them (row->>''column'')';
CREATE FUNCTION drift_diff(table_name regclass, from_seq bigint, to_seq bigint)
    RETURNS TABLE (pk jsonb, change text, before jsonb, after jsonb)
    VOLATILE PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', 'drift_diff';
COMMENT ON FUNCTION drift_diff(regclass, bigint, bigint) IS
    'Rows added, changed and removed between two seqs, with before and after';
"#,
    name = "drift_history_and_diff",
);
