//! Moving a table with its whole history (pg_dump does not dump foreign tables' data).
//!
//! `drift_export(t)` returns every event of a table as a row: its seq, commit time,
//! transaction, role, op, the key and the columns the event stored, as JSON objects of the
//! values' text forms (`COPY (SELECT * FROM drift_export('t')) TO STDOUT` moves them
//! through the client). `drift_import(t, events)` reads such rows back from a relation
//! into an empty table:
//!
//! - The imported events are appended under the importing (sub)transaction's xid, so they
//!   become visible exactly when it commits; a rolled-back import leaves nothing visible.
//! - Each exported transaction becomes one group here with new seqs (seqs are per
//!   cluster), in the same order. The journal records where it came from (original xid,
//!   commit time and role), so `drift_history` shows the same times, transactions and
//!   roles, and `drift_as_of(t, time)` (and `driftdb.as_of`) reads the table as of its
//!   original times: the last imported group committed at or before the time.
//! - Values are read back with the target columns' input functions, by column name.
//!   Hidden row ids of tables without a primary key are renumbered.
//! - A jsonb value holds at most 256 MiB, so long text forms (over 1 MiB, or past 64 MiB
//!   of one event's `data`) travel in an eighth column, `long_values text[]`, and `data`
//!   refers to them as `{"long_value": n}`. An events relation without that column is
//!   read as having none.

use crate::admin::{index_column, owned_table};
use crate::datum::{self, Column};
use crate::engine::{self, LatestFates};
use crate::error::DriftError;
use crate::pg::srf::{function_info_v1, jsonb_from_cstr, materialize, name_datum, text_datum};
use crate::schema::has_history;
use crate::shmem;
use crate::table::{split_key, TableInfo};
use crate::timetravel::{readable_table, stable_seq_of};
use crate::txn;
use driftdb_storage::{Event, Op, Origin, Row, TableId, Txn};
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString};

/// Imported groups are appended in batches of about this many events, each one append
/// (and one round of syncs).
const BATCH_EVENTS: usize = 10_000;

thread_local! {
    /// The shared in-flight slots this transaction's imported groups hold until it ends,
    /// one for each table imported into: (table, slot).
    static IMPORT_SLOTS: RefCell<Vec<(TableId, usize)>> = const { RefCell::new(Vec::new()) };
}

/// Registers the transaction callback that releases the in-flight slot; called once
/// from `_PG_init`.
pub fn init() {
    // SAFETY: registering a static callback with Postgres during library load.
    unsafe { pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut()) };
}

#[pg_guard]
extern "C-unwind" fn xact_callback(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE
            if IMPORT_SLOTS.with(|s| !s.borrow().is_empty()) =>
        {
            DriftError::PrepareWithWrites.report()
        }
        pg_sys::XactEvent::XACT_EVENT_COMMIT
        | pg_sys::XactEvent::XACT_EVENT_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            // The transaction's fate is in the commit log now (and its locks, which
            // readers waiting for the import wait on, are released after this).
            let held = IMPORT_SLOTS.with(|s| std::mem::take(&mut *s.borrow_mut()));
            if !held.is_empty() {
                let mut state = shmem::STATE.exclusive();
                for (_, slot) in held {
                    state.inflight[slot] = shmem::Inflight::default();
                }
            }
        }
        _ => {}
    }
}

/// How one column's values are written out and read back.
struct ColumnIo {
    col: Column,
    typmod: i32,
    output: pg_sys::Oid,
    input: pg_sys::Oid,
    ioparam: pg_sys::Oid,
}

/// The live columns of a table with their type's I/O functions, by column id.
fn column_io(info: &TableInfo) -> HashMap<u16, ColumnIo> {
    // SAFETY: reads the relation's tuple descriptor and the type catalog inside the
    // transaction.
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(info.relid);
        let tupdesc = pgrx::PgTupleDesc::from_pg_unchecked((*rel).rd_att);
        let typmods: Vec<i32> = tupdesc.iter().map(|a| a.atttypmod).collect();
        pg_sys::RelationClose(rel);
        info.columns
            .iter()
            .zip(typmods)
            .filter(|(c, _)| !c.dropped)
            .map(|(c, typmod)| {
                let (mut output, mut varlena) = (pg_sys::InvalidOid, false);
                pg_sys::getTypeOutputInfo(c.typid, &mut output, &mut varlena);
                let (mut input, mut ioparam) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
                pg_sys::getTypeInputInfo(c.typid, &mut input, &mut ioparam);
                (
                    c.id(),
                    ColumnIo {
                        col: c.clone(),
                        typmod,
                        output,
                        input,
                        ioparam,
                    },
                )
            })
            .collect()
    }
}

impl ColumnIo {
    /// The text form of a stored value.
    fn text(&self, stored: &[u8]) -> String {
        // SAFETY: the bytes were stored for this column's type; the output function gets
        // a datum of that type.
        unsafe {
            let d = datum::decode(&self.col, stored).unwrap_or_else(|e| e.report());
            let out = pg_sys::OidOutputFunctionCall(self.output, d);
            CStr::from_ptr(out).to_string_lossy().into_owned()
        }
    }

    /// The stored bytes of a value given in text form (the type's input function checks
    /// it, and its modifier).
    fn stored(&self, text: &str) -> Vec<u8> {
        let c = CString::new(text).unwrap_or_else(|_| {
            DriftError::BadImport {
                detail: format!(
                    "A value of column \"{}\" contains a NUL byte.",
                    self.col.name
                ),
            }
            .report()
        });
        // SAFETY: the input function of the column's type parses a NUL-terminated string
        // (raising an ERROR on bad input); its datum is of that type.
        unsafe {
            let d = pg_sys::OidInputFunctionCall(
                self.input,
                c.as_ptr().cast_mut(),
                self.ioparam,
                self.typmod,
            );
            datum::encode(&self.col, d)
        }
    }
}

/// Text forms longer than this are exported in `long_values`, not in `data`.
const LONG_VALUE: usize = 1 << 20;
/// The most text `data` holds for one event; values past it go to `long_values` too. A
/// jsonb value holds at most 256 MiB - 1 bytes, its strings included.
const DATA_BUDGET: usize = 64 << 20;

/// The columns an event stored, as `data` and `long_values` hold them (see `drift_export`).
fn columns_json(
    cols: &HashMap<u16, ColumnIo>,
    stored: &[(u16, driftdb_storage::Value)],
    long: &mut Vec<String>,
) -> Value {
    let mut obj = Map::new();
    let mut budget = DATA_BUDGET;
    for (id, value) in stored {
        // Values of dropped columns are not exported: nothing could read them back.
        let Some(io) = cols.get(id) else { continue };
        let v = match value {
            Some(bytes) => {
                let text = io.text(bytes);
                if text.len() > LONG_VALUE || text.len() > budget {
                    long.push(text);
                    let mut at = Map::new();
                    at.insert("long_value".into(), Value::from(long.len()));
                    Value::Object(at)
                } else {
                    budget -= text.len();
                    Value::String(text)
                }
            }
            None => Value::Null,
        };
        obj.insert(io.col.name.clone(), v);
    }
    Value::Object(obj)
}

/// The key of an event: `{"key column": "text form", ...}`, or `{"row_id": "hex"}` for a
/// table without a primary key.
fn key_json(info: &TableInfo, cols: &HashMap<u16, ColumnIo>, key: &[u8]) -> Value {
    let mut obj = Map::new();
    if info.key.is_empty() {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        obj.insert("row_id".into(), Value::String(hex));
        return Value::Object(obj);
    }
    let Some(parts) = split_key(info, key) else {
        DriftError::CorruptValue {
            column: "primary key".into(),
            detail: "A stored key does not split into the key columns.".into(),
        }
        .report()
    };
    for (&pos, stored) in info.key.iter().zip(parts) {
        let io = &cols[&info.columns[pos].id()];
        obj.insert(io.col.name.clone(), Value::String(io.text(&stored)));
    }
    Value::Object(obj)
}

/// A jsonb datum of a JSON value, in the current memory context.
fn jsonb(v: &Value) -> pg_sys::Datum {
    let text = CString::new(v.to_string()).expect("JSON text has no NUL");
    jsonb_from_cstr(&text)
}

function_info_v1!(drift_export);

/// `drift_export(regclass)`: every event of the table, oldest first, as rows that
/// `drift_import` reads back.
///
/// # Safety
/// Only Postgres calls this, through its V1 info record, for the SQL function
/// `drift_export(regclass)` declared below.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn drift_export(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: Postgres calls drift_export through its V1 info record with a valid fcinfo
    // for `drift_export(regclass)` declared below (RETURNS TABLE of 8 columns, STRICT):
    // argument 0 is read as an Oid, the table is checked and locked by readable_table, and
    // the result set is set up on the call's own fcinfo. Each event's datums are made in
    // `per_row`, a child of the current memory context (freed with it on an ERROR), reset
    // only after tuplestore_putvalues copied the 8 values into the store's memory; the
    // INDEX rows' datums live in the current memory context, which outlives the call's use
    // of them.
    unsafe {
        let Some(relid) = pgrx::fcinfo::pg_getarg::<pg_sys::Oid>(fcinfo, 0) else {
            return pg_sys::Datum::from(0usize);
        };
        let info = readable_table(relid);
        let cols = column_io(&info);
        let upto = stable_seq_of(info.id);
        let (store, desc) = materialize(fcinfo);
        let per_row = pg_sys::AllocSetContextCreateExtended(
            pg_sys::CurrentMemoryContext,
            c"driftdb export row".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        engine::with_store(|s| {
            let events = match s.table_history(info.id, upto, &LatestFates) {
                Err(driftdb_storage::Error::NoSuchTable(_)) => return Ok(()),
                other => other?,
            };
            for e in events {
                let e = e?;
                let old = pg_sys::MemoryContextSwitchTo(per_row);
                let mut long = Vec::new();
                let (op, data) = match &e.op {
                    Op::Insert(r) => ("INSERT", Some(columns_json(&cols, &r.0, &mut long))),
                    Op::Patch(c) => ("PATCH", Some(columns_json(&cols, c, &mut long))),
                    Op::SoftDelete => ("SOFT_DELETE", None),
                };
                let mut values = [pg_sys::Datum::from(0usize); 8];
                let mut nulls = [false; 8];
                values[0] = pg_sys::Datum::from(e.seq as i64);
                values[1] = pg_sys::Datum::from(e.commit_ts);
                values[2] = pg_sys::Datum::from(e.xid as i64);
                values[3] = name_datum(&e.role);
                values[4] = text_datum(op);
                values[5] = jsonb(&key_json(&info, &cols, &e.key));
                match &data {
                    Some(d) => values[6] = jsonb(d),
                    None => nulls[6] = true,
                }
                if long.is_empty() {
                    nulls[7] = true;
                } else {
                    values[7] = long.into_datum().expect("a text[] datum");
                }
                pg_sys::tuplestore_putvalues(store, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
                pg_sys::MemoryContextSwitchTo(old);
                pg_sys::MemoryContextReset(per_row);
            }
            Ok(())
        });
        // Then the table's secondary indexes, one row each (op INDEX, no seq: after every
        // event in seq order), so that an import makes them too.
        let indexed = engine::indexes(info.id);
        for col in info
            .columns
            .iter()
            .filter(|c| !c.dropped && indexed.iter().any(|&(i, _)| i == c.id()))
        {
            let mut values = [pg_sys::Datum::from(0usize); 8];
            let mut nulls = [true; 8];
            values[4] = text_datum("INDEX");
            nulls[4] = false;
            let mut obj = Map::new();
            obj.insert("column".into(), Value::String(col.name.clone()));
            values[6] = jsonb(&Value::Object(obj));
            nulls[6] = false;
            pg_sys::tuplestore_putvalues(store, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
        }
        pg_sys::MemoryContextDelete(per_row);
        pg_sys::Datum::from(0usize)
    }
}

fn bad(detail: String) -> ! {
    DriftError::BadImport { detail }.report()
}

/// One event row read from the relation being imported.
struct Row7 {
    seq: i64,
    committed_at: i64,
    txid: u64,
    role: String,
    op: String,
    key: Option<Value>,
    data: Option<Value>,
    /// The text forms `data` refers to as `{"long_value": n}` (1-based).
    long: Vec<Option<String>>,
}

/// Builds the groups of an import and appends them in batches.
struct Importer<'a> {
    info: &'a TableInfo,
    cols: HashMap<u16, ColumnIo>,
    by_name: HashMap<String, u16>,
    /// The importing (sub)transaction's xid, the role importing, and when it started.
    xid: u64,
    role: String,
    now: i64,
    /// New hidden row ids for the exported ones, for tables without a primary key.
    row_ids: HashMap<String, Vec<u8>>,
    /// The keys live after the events read so far (the table starts empty), with their
    /// rows when the table's CHECK constraints need them to judge a PATCH.
    live: HashMap<Vec<u8>, Option<Row>>,
    /// The table's CHECK and NOT NULL constraints, when it has CHECK constraints.
    checks: Option<Checks>,
    last_seq: Option<i64>,
    /// The group being read: its origin and its events.
    group: Option<(Origin, Vec<Event>)>,
    batch: Vec<(Txn, Origin)>,
    batch_events: usize,
    imported: i64,
    /// The columns of the INDEX rows read: indexed when the transaction commits, as
    /// `drift_create_index` does.
    indexes: Vec<(u16, driftdb_storage::IndexKind)>,
}

/// The CHECK (and NOT NULL) constraints of the table imported into, checked on each
/// imported row as a live write checks them (`ExecConstraints`, 23514 and 23502).
struct Checks {
    estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    per_row: pg_sys::MemoryContext,
}

impl Checks {
    /// The checker for table `relid`, if it has CHECK constraints.
    ///
    /// # Safety
    /// Inside a transaction that holds a lock on `relid`.
    unsafe fn new(relid: pg_sys::Oid) -> Option<Checks> {
        // SAFETY: per the caller, inside a transaction that holds a lock on relid, so
        // RelationIdGetRelation returns it open (kept open in the ResultRelInfo until
        // close, or released with the transaction's resources on an ERROR); the executor
        // state, the zeroed ResultRelInfo InitResultRelInfo fills (range-table index 0: no
        // range table), the virtual slot of the relation's descriptor and the per-row
        // context are all allocated in the current memory context, which lasts until
        // drift_import returns.
        unsafe {
            let rel = pg_sys::RelationIdGetRelation(relid);
            let constr = (*(*rel).rd_att).constr;
            if constr.is_null() || (*constr).num_check == 0 {
                pg_sys::RelationClose(rel);
                return None;
            }
            let estate = pg_sys::CreateExecutorState();
            let rinfo = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>())
                as *mut pg_sys::ResultRelInfo;
            // Range-table index 0: no range table; the error's row description then shows
            // the columns the role may read, as for a write.
            pg_sys::InitResultRelInfo(rinfo, rel, 0, std::ptr::null_mut(), 0);
            let slot = pg_sys::MakeSingleTupleTableSlot((*rel).rd_att, &pg_sys::TTSOpsVirtual);
            let per_row = pg_sys::AllocSetContextCreateExtended(
                pg_sys::CurrentMemoryContext,
                c"driftdb import check".as_ptr(),
                pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
            );
            Some(Checks {
                estate,
                rinfo,
                slot,
                per_row,
            })
        }
    }

    /// Raises the error of the first constraint `row` violates.
    ///
    /// # Safety
    /// `info` is the table this checker was made for, in the same transaction.
    unsafe fn check(&self, info: &TableInfo, row: &Row) {
        // SAFETY: per the caller, info is the table this checker was made for, so the slot
        // has its descriptor, which store_row fills (in `per_row`, reset once
        // ExecConstraints is done with the row); rinfo and estate are the ones `new` made,
        // alive until close.
        unsafe {
            let old = pg_sys::MemoryContextSwitchTo(self.per_row);
            info.store_row(self.slot, row);
            pg_sys::ExecConstraints(self.rinfo, self.slot, self.estate);
            pg_sys::MemoryContextSwitchTo(old);
            pg_sys::MemoryContextReset(self.per_row);
        }
    }

    /// Frees what the checker holds (an error frees it with the transaction instead).
    ///
    /// # Safety
    /// Called once, after the last check.
    unsafe fn close(self) {
        // SAFETY: per the caller, this runs once, after the last check: the slot, the
        // relation reference taken in `new`, the executor state and the per-row context are
        // each released exactly once, and nothing uses them after.
        unsafe {
            pg_sys::ExecDropSingleTupleTableSlot(self.slot);
            pg_sys::RelationClose((*self.rinfo).ri_RelationDesc);
            pg_sys::FreeExecutorState(self.estate);
            pg_sys::MemoryContextDelete(self.per_row);
        }
    }
}

impl Importer<'_> {
    /// An INDEX row: `{"column": name}` of a column to index, checked as
    /// `drift_create_index` checks it.
    fn index(&mut self, data: Option<Value>) {
        let name = match &data {
            Some(Value::Object(obj)) if obj.len() == 1 => match obj.get("column") {
                Some(Value::String(n)) => n.as_str(),
                _ => bad("An INDEX row's data is not {\"column\": name}.".into()),
            },
            _ => bad("An INDEX row's data is not {\"column\": name}.".into()),
        };
        let (col, kind) = index_column(self.info, name);
        if !self.indexes.iter().any(|&(c, _)| c == col) {
            self.indexes.push((col, kind));
        }
    }

    /// A key or NOT NULL column without a value: the error a live write gets (23502).
    fn null_in(&self, col: &Column) -> ! {
        DriftError::NullInColumn {
            relid: self.info.relid,
            column: col.name.clone(),
        }
        .report()
    }

    fn push(&mut self, r: Row7) {
        if self.last_seq.is_some_and(|l| r.seq <= l) {
            bad(format!(
                "Seqs must increase, but seq {} follows seq {}.",
                r.seq,
                self.last_seq.unwrap_or(0)
            ));
        }
        self.last_seq = Some(r.seq);
        if r.committed_at > self.now {
            bad(format!(
                "The event at seq {} was committed after this import began.",
                r.seq
            ));
        }
        let same_group = self.group.as_ref().is_some_and(|(o, _)| {
            o.xid == r.txid && o.commit_ts == r.committed_at && o.role == r.role
        });
        if !same_group {
            let previous = self.group.as_ref().map(|(o, _)| o.commit_ts);
            if previous.is_some_and(|p| p >= r.committed_at) {
                bad(format!(
                    "The transaction at seq {} was not committed after the one before it.",
                    r.seq
                ));
            }
            self.end_group();
            self.group = Some((
                Origin {
                    xid: r.txid,
                    commit_ts: r.committed_at,
                    role: r.role.clone(),
                },
                Vec::new(),
            ));
        }
        let event = self.event(&r);
        self.group.as_mut().expect("started").1.push(event);
        self.imported += 1;
    }

    /// The columns of `data` (an object of text forms, nulls or references into
    /// `long_values`), sorted by id.
    fn columns(&self, r: &Row7) -> Vec<(u16, driftdb_storage::Value)> {
        let seq = r.seq;
        let Some(Value::Object(obj)) = &r.data else {
            bad(format!("The event at seq {seq} has no object of columns."));
        };
        let mut pairs = Vec::with_capacity(obj.len());
        for (name, v) in obj {
            let Some(id) = self.by_name.get(name) else {
                bad(format!(
                    "The event at seq {seq} sets column \"{name}\", which the table does not have."
                ));
            };
            let stored = match v {
                Value::Null => None,
                Value::String(s) => Some(self.cols[id].stored(s)),
                Value::Object(at) if at.len() == 1 && at.contains_key("long_value") => {
                    let text = at["long_value"]
                        .as_u64()
                        .and_then(|n| usize::try_from(n).ok()?.checked_sub(1))
                        .and_then(|i| r.long.get(i)?.as_deref())
                        .unwrap_or_else(|| {
                            bad(format!(
                                "The event at seq {seq} gives column \"{name}\" the long \
                                 value {}, which its long_values (of {}) does not have.",
                                at["long_value"],
                                r.long.len()
                            ))
                        });
                    Some(self.cols[id].stored(text))
                }
                _ => bad(format!(
                    "The event at seq {seq} gives column \"{name}\" a value that is not a \
                     string, null or {{\"long_value\": n}}."
                )),
            };
            pairs.push((*id, stored));
        }
        Row::from_pairs(pairs).0
    }

    /// The stored key of an event given by its key object.
    fn key(&mut self, r: &Row7, insert: bool) -> Vec<u8> {
        let Some(Value::Object(obj)) = &r.key else {
            bad(format!("The event at seq {} has no key object.", r.seq));
        };
        if self.info.key.is_empty() {
            let Some(Value::String(id)) = obj.get("row_id") else {
                bad(format!("The event at seq {} has no row_id.", r.seq));
            };
            if let Some(k) = self.row_ids.get(id) {
                if insert {
                    bad(format!("Row id {id} is inserted twice (seq {}).", r.seq));
                }
                return k.clone();
            }
            if !insert {
                bad(format!("Row id {id} at seq {} was never inserted.", r.seq));
            }
            let k = txn::hidden_rowid();
            self.row_ids.insert(id.clone(), k.clone());
            return k;
        }
        let mut key = Vec::new();
        for &pos in &self.info.key {
            let io = &self.cols[&self.info.columns[pos].id()];
            let Some(Value::String(text)) = obj.get(&io.col.name) else {
                bad(format!(
                    "The key of the event at seq {} lacks column \"{}\".",
                    r.seq, io.col.name
                ));
            };
            datum::push_key_part(&io.col, &io.stored(text), &mut key);
        }
        key
    }

    fn event(&mut self, r: &Row7) -> Event {
        let (key, op) = match r.op.as_str() {
            "INSERT" => {
                let row = Row(self.columns(r));
                // A live INSERT gives every key and NOT NULL column a value (23502).
                for col in self.info.columns.iter().enumerate().filter_map(|(i, c)| {
                    (!c.dropped && (c.not_null || self.info.key.contains(&i))).then_some(c)
                }) {
                    if row.get(col.id()).is_none() {
                        self.null_in(col);
                    }
                }
                let key = self.key(r, true);
                if !self.info.key.is_empty() && self.info.key_of(&row) != key {
                    bad(format!(
                        "The key of the event at seq {} is not its row's.",
                        r.seq
                    ));
                }
                (key, Op::Insert(row))
            }
            "PATCH" => {
                let cols = self.columns(r);
                let key = self.key(r, false);
                for (id, value) in &cols {
                    let Some(pos) = self.info.columns.iter().position(|c| c.id() == *id) else {
                        continue;
                    };
                    let col = &self.info.columns[pos];
                    let in_key = self.info.key.contains(&pos);
                    if value.is_none() && (col.not_null || in_key) {
                        self.null_in(col);
                    }
                    // A live UPDATE of a key column writes a SOFT_DELETE and an INSERT, never
                    // a PATCH that moves the row to another key.
                    if in_key {
                        // The key this row would have with the patched value.
                        let mut moved = Vec::new();
                        let parts = split_key(self.info, &key).unwrap_or_default();
                        for (at, &k) in self.info.key.iter().enumerate() {
                            let c = &self.info.columns[k];
                            let part = if k == pos {
                                value.as_deref()
                            } else {
                                parts.get(at).map(Vec::as_slice)
                            };
                            datum::push_key_part(c, part.unwrap_or_default(), &mut moved);
                        }
                        if moved != key {
                            bad(format!(
                                "The PATCH at seq {} changes key column \"{}\", which no \
                                 UPDATE does (an UPDATE of the key is a SOFT_DELETE and an \
                                 INSERT).",
                                r.seq, col.name
                            ));
                        }
                    }
                }
                (key, Op::Patch(cols))
            }
            "SOFT_DELETE" => (self.key(r, false), Op::SoftDelete),
            other => bad(format!("Unknown op \"{other}\" at seq {}.", r.seq)),
        };
        let keep = self.checks.is_some();
        let was_live = match &op {
            Op::SoftDelete => self.live.remove(&key).is_some(),
            Op::Insert(row) => self
                .live
                .insert(key.clone(), keep.then(|| row.clone()))
                .is_some(),
            Op::Patch(cols) => match self.live.get_mut(&key) {
                Some(current) => {
                    if let Some(row) = current {
                        row.apply_patch(cols);
                    }
                    true
                }
                None => false,
            },
        };
        // CHECK constraints, on the row as the event leaves it (23514).
        if let (Some(checks), Some(Some(row))) = (&self.checks, self.live.get(&key)) {
            if !matches!(op, Op::SoftDelete) {
                // SAFETY: the checker was made for this table in this transaction.
                unsafe { checks.check(self.info, row) };
            }
        }
        if was_live == matches!(op, Op::Insert(_)) {
            let what = if was_live {
                "inserts a row that exists"
            } else {
                "changes a row that does not exist"
            };
            bad(format!(
                "The event at seq {} {what}: {}.",
                r.seq,
                crate::table::describe_key(self.info.relid, &key)
            ));
        }
        Event {
            table: self.info.id,
            key,
            op,
        }
    }

    fn end_group(&mut self) {
        let Some((origin, events)) = self.group.take() else {
            return;
        };
        self.batch_events += events.len();
        self.batch.push((
            Txn {
                xid: self.xid,
                commit_ts: self.now,
                role: self.role.clone(),
                events,
            },
            origin,
        ));
        if self.batch_events >= BATCH_EVENTS {
            self.flush();
        }
    }

    /// Appends the batch under the append lock, as a commit does, holding an in-flight
    /// slot from the first batch until the transaction ends.
    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let (txns, origins): (Vec<Txn>, Vec<Origin>) =
            std::mem::take(&mut self.batch).into_iter().unzip();
        self.batch_events = 0;
        engine::with_store(|store| {
            // Old groups' fates come from DriftDB's own record, as for a commit.
            engine::refresh_settled(store)?;
            let table = self.info.id;
            let held = IMPORT_SLOTS.with(|s| {
                s.borrow()
                    .iter()
                    .find(|(t, _)| *t == table)
                    .map(|(_, slot)| *slot)
            });
            let (mut state, slot) = match held {
                Some(s) => (shmem::STATE.exclusive(), s),
                None => shmem::lock_with_slot(),
            };
            loop {
                match store.append_imported(&txns, &origins, &LatestFates) {
                    Ok(done) => {
                        let last = done.last().map_or(0, |c| c.last_seq);
                        state.high_water = state.high_water.max(last);
                        if held.is_none() {
                            state.inflight[slot] = shmem::Inflight {
                                first_seq: done[0].first_seq,
                                xid: done[0].xid as u32,
                                table,
                            };
                            IMPORT_SLOTS.with(|s| s.borrow_mut().push((table, slot)));
                        }
                        return Ok(());
                    }
                    Err(driftdb_storage::Error::NoSuchTable(t)) => store.create_table(t)?,
                    Err(
                        e @ (driftdb_storage::Error::KeyExists { .. }
                        | driftdb_storage::Error::KeyMissing { .. }
                        | driftdb_storage::Error::InvalidTxn(_)),
                    ) => {
                        drop(state);
                        bad(e.to_string())
                    }
                    Err(e) => return Err(e),
                }
            }
        });
    }
}

/// Imports the events `drift_export` wrote (read from `events`, any relation with its
/// columns) into the empty DriftDB table `table_name`; returns how many. Owner only.
#[pg_extern(
    volatile,
    parallel_unsafe,
    sql = "
CREATE FUNCTION drift_import(table_name regclass, events regclass) RETURNS bigint
    VOLATILE PARALLEL UNSAFE STRICT
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION drift_import(regclass, regclass) IS
    'Imports the history drift_export wrote into an empty DriftDB table, keeping its times';
"
)]
fn drift_import(table_name: pg_sys::Oid, events: pg_sys::Oid) -> i64 {
    // SAFETY: both raise 25006 in a read-only transaction or on a standby, as Postgres does
    // for its own writing commands.
    unsafe {
        pg_sys::PreventCommandIfReadOnly(c"drift_import()".as_ptr());
        pg_sys::PreventCommandDuringRecovery(c"drift_import()".as_ptr());
    }
    crate::asof::refuse_writes();
    txn::refuse_serializable();
    // The lock that keeps writers out until the transaction ends (readers go on).
    let info = owned_table(table_name, pg_sys::ExclusiveLock);
    // SAFETY: reads backend state: the xid (assigned now) and the role.
    let (xid, role, now) = unsafe {
        let name = pg_sys::GetUserNameFromId(pg_sys::GetUserId(), false);
        (
            pg_sys::GetCurrentFullTransactionId().value,
            CStr::from_ptr(name).to_string_lossy().into_owned(),
            pg_sys::GetCurrentTimestamp(),
        )
    };
    if has_history(&info) {
        DriftError::ImportTargetNotEmpty {
            relid: table_name,
            why: "it has history, or this transaction wrote to it".into(),
        }
        .report()
    }
    let cols = column_io(&info);
    let by_name = cols
        .iter()
        .map(|(id, io)| (io.col.name.clone(), *id))
        .collect();
    let mut importer = Importer {
        info: &info,
        cols,
        by_name,
        xid,
        role,
        now,
        row_ids: HashMap::new(),
        live: HashMap::new(),
        // SAFETY: the table is locked (above).
        checks: unsafe { Checks::new(table_name) },
        last_seq: None,
        group: None,
        batch: Vec::new(),
        batch_events: 0,
        imported: 0,
        indexes: Vec::new(),
    };
    let source =
        Spi::get_one_with_args::<String>("SELECT $1::pg_catalog.regclass::text", &[events.into()])
            .ok()
            .flatten()
            .unwrap_or_else(|| DriftError::Internal("naming the events relation".into()).report());
    // Events relations made before long_values existed have seven columns.
    let has_long = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute \
          WHERE attrelid = $1 AND attname = 'long_values' AND attnum > 0 AND NOT attisdropped)",
        &[events.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false);
    let long = if has_long {
        "long_values::pg_catalog.text[]"
    } else {
        "NULL::pg_catalog.text[]"
    };
    let query = format!(
        "SELECT seq, committed_at, txid::text, role::text, op, key, data, {long} \
           FROM {source} ORDER BY seq"
    );
    let read = Spi::connect(|client| -> Result<(), pgrx::spi::Error> {
        let mut cursor = client.try_open_cursor(query.as_str(), &[])?;
        loop {
            let rows = cursor.fetch(1000)?;
            if rows.is_empty() {
                return Ok(());
            }
            for row in rows {
                let need = |what: &str| -> ! { bad(format!("An event has no {what}.")) };
                let op = row.get::<String>(5)?.unwrap_or_else(|| need("op"));
                if op == "INDEX" {
                    importer.index(row.get::<pgrx::JsonB>(7)?.map(|j| j.0));
                    continue;
                }
                let r = Row7 {
                    seq: row.get::<i64>(1)?.unwrap_or_else(|| need("seq")),
                    committed_at: row
                        .get::<pgrx::datum::TimestampWithTimeZone>(2)?
                        .map(i64::from)
                        .unwrap_or_else(|| need("committed_at")),
                    txid: row
                        .get::<String>(3)?
                        .and_then(|t| t.parse::<u64>().ok())
                        .unwrap_or_else(|| need("txid")),
                    role: row.get::<String>(4)?.unwrap_or_else(|| need("role")),
                    op,
                    key: row.get::<pgrx::JsonB>(6)?.map(|j| j.0),
                    data: row.get::<pgrx::JsonB>(7)?.map(|j| j.0),
                    long: row.get::<Vec<Option<String>>>(8)?.unwrap_or_default(),
                };
                importer.push(r);
            }
        }
    });
    if let Err(e) = read {
        DriftError::Internal(format!("reading the events to import: {e}")).report()
    }
    importer.end_group();
    importer.flush();
    for (col, kind) in std::mem::take(&mut importer.indexes) {
        txn::at_commit(txn::Ddl::CreateIndex(info.id, col, kind));
    }
    if let Some(checks) = importer.checks.take() {
        // SAFETY: after the last check.
        unsafe { checks.close() };
    }
    importer.imported
}

extension_sql!(
    r#"
CREATE FUNCTION drift_export(table_name regclass)
    RETURNS TABLE (seq bigint, committed_at timestamptz, txid xid8, role name, op text,
                   key jsonb, data jsonb, long_values text[])
    VOLATILE PARALLEL RESTRICTED STRICT
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', 'drift_export';
COMMENT ON FUNCTION drift_export(regclass) IS
    'Every event of a DriftDB table, oldest first, in the form drift_import reads back';
"#,
    name = "drift_export",
);
