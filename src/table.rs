//! What DriftDB needs to know about one foreign table: its engine id, its columns and
//! its key, read from the relation and its options.

use crate::datum::{self, Column};
use crate::engine;
use crate::error::DriftError;
use crate::fdw::options;
use crate::txn;
use driftdb_storage::{ColumnId, Row, RowRef, TableId};
use pgrx::pg_sys;
use pgrx::PgList;

pub struct TableInfo {
    pub relid: pg_sys::Oid,
    pub id: TableId,
    /// One entry per attribute of the tuple descriptor, dropped ones included, by position.
    pub columns: Vec<Column>,
    /// Positions in `columns` of the primary key; empty for a hidden row id.
    pub key: Vec<usize>,
}

impl TableInfo {
    /// The table `relid`, read from its relation (opened and closed again). A relation
    /// that no longer exists (dropped while the caller waited for its lock) is 42P01.
    ///
    /// # Safety
    /// `relid` must be a DriftDB foreign table; must run inside a transaction.
    pub unsafe fn of(relid: pg_sys::Oid) -> TableInfo {
        // SAFETY: per the caller, inside a transaction: RelationIdGetRelation returns the
        // relation open (a relcache reference, closed below) or null when it does not exist
        // (checked); from_relation reads it while it is open.
        unsafe {
            let rel = pg_sys::RelationIdGetRelation(relid);
            if rel.is_null() {
                DriftError::TableDropped { relid }.report()
            }
            let info = TableInfo::from_relation(rel);
            pg_sys::RelationClose(rel);
            info
        }
    }

    /// # Safety
    /// `rel` must be an open relation of a DriftDB foreign table.
    pub unsafe fn from_relation(rel: pg_sys::Relation) -> TableInfo {
        // SAFETY: per the caller, rel is an open relation of a DriftDB foreign table: its
        // descriptor's attributes are read while it is open (Column::from_attribute copies
        // what it needs), GetForeignTable returns its palloc'd catalog entry (an ERROR for
        // a table that is not foreign), whose options are DefElem nodes with NUL-terminated
        // names and string values.
        unsafe {
            let relid = (*rel).rd_id;
            let tupdesc = pgrx::PgTupleDesc::from_pg_unchecked((*rel).rd_att);
            let columns: Vec<Column> = tupdesc
                .iter()
                .map(|att| Column::from_attribute(att))
                .collect();
            let mut key = Vec::new();
            let ft = pg_sys::GetForeignTable(relid);
            let opts = PgList::<pg_sys::DefElem>::from_pg((*ft).options);
            for def in opts.iter_ptr() {
                let name = std::ffi::CStr::from_ptr((*def).defname).to_string_lossy();
                if name != "primary_key" {
                    continue;
                }
                let value = std::ffi::CStr::from_ptr(pg_sys::defGetString(def)).to_string_lossy();
                let names = options::primary_key_columns(&value).unwrap_or_else(|e| e.report());
                for n in names {
                    let Some(pos) = columns.iter().position(|c| !c.dropped && c.name == n) else {
                        DriftError::NoSuchKeyColumn { relid, column: n }.report()
                    };
                    datum::check_key_type(&columns[pos]).unwrap_or_else(|e| e.report());
                    key.push(pos);
                }
            }
            TableInfo {
                relid,
                id: engine::table_id(relid),
                columns,
                key,
            }
        }
    }

    /// Position in the key of the column with attribute number `attno`.
    pub fn key_position(&self, attno: i16) -> Option<usize> {
        self.key
            .iter()
            .position(|&pos| self.columns[pos].attnum == attno)
    }

    /// The row held by a slot, and its key (a new hidden row id when the table has no
    /// primary key and `new_rowid`). Checks NOT NULL and key columns.
    ///
    /// # Safety
    /// `slot` must hold a tuple of this table.
    pub unsafe fn row_from_slot(
        &self,
        slot: *mut pg_sys::TupleTableSlot,
        new_rowid: bool,
    ) -> (Option<Vec<u8>>, Row) {
        // SAFETY: per the caller, slot holds a tuple of this table, whose descriptor has
        // one attribute per entry of self.columns: slot_getsomeattrs_int makes the first
        // natts attributes valid, and tts_values and tts_isnull are read within natts; each
        // non-null datum is of its column's type, as encode requires.
        unsafe {
            let natts = self.columns.len();
            if ((*slot).tts_nvalid as usize) < natts {
                pg_sys::slot_getsomeattrs_int(slot, natts as i32);
            }
            let mut cols = Vec::with_capacity(natts);
            for (i, col) in self.columns.iter().enumerate() {
                if col.dropped {
                    continue;
                }
                let value = if *(*slot).tts_isnull.add(i) {
                    if col.not_null || self.key.contains(&i) {
                        DriftError::NullInColumn {
                            relid: self.relid,
                            column: col.name.clone(),
                        }
                        .report()
                    }
                    None
                } else {
                    Some(datum::encode(col, *(*slot).tts_values.add(i)))
                };
                cols.push((col.id(), value));
            }
            let row = Row(cols);
            let key = if !self.key.is_empty() {
                Some(self.key_of(&row))
            } else if new_rowid {
                Some(txn::hidden_rowid())
            } else {
                None
            };
            (key, row)
        }
    }

    /// The key of a row of this table (which has a primary key).
    pub fn key_of(&self, row: &Row) -> Vec<u8> {
        let mut key = Vec::new();
        for &pos in &self.key {
            let col = &self.columns[pos];
            let stored = row.get(col.id()).unwrap_or_default();
            datum::push_key_part(col, stored, &mut key);
        }
        key
    }

    /// Decodes `row` into `values` and `nulls`, one entry per attribute.
    ///
    /// # Safety
    /// Both arrays must have one entry per attribute; runs in the memory context the
    /// values should live in.
    pub unsafe fn fill(&self, row: &impl Columns, values: *mut pg_sys::Datum, nulls: *mut bool) {
        // SAFETY: per the caller, as fill_some requires.
        unsafe { self.fill_some(row, values, nulls, None) }
    }

    /// [`TableInfo::fill`], decoding only the attributes flagged in `needed` (all when it
    /// is `None`); the others are NULL.
    ///
    /// # Safety
    /// As [`TableInfo::fill`].
    pub unsafe fn fill_some(
        &self,
        row: &impl Columns,
        values: *mut pg_sys::Datum,
        nulls: *mut bool,
        needed: Option<&[bool]>,
    ) {
        // SAFETY: per the caller, values and nulls have one entry per attribute, so the
        // writes at i < self.columns.len() are in bounds; decode allocates in the current
        // memory context, the one the caller wants the values in.
        unsafe {
            for (i, col) in self.columns.iter().enumerate() {
                let wanted =
                    !col.dropped && needed.is_none_or(|n| n.get(i).copied().unwrap_or(true));
                let stored = if wanted { row.column(col.id()) } else { None };
                match stored {
                    Some(bytes) => {
                        let d = datum::decode(col, bytes).unwrap_or_else(|e| e.report());
                        *values.add(i) = d;
                        *nulls.add(i) = false;
                    }
                    None => {
                        *values.add(i) = pg_sys::Datum::from(0usize);
                        *nulls.add(i) = true;
                    }
                }
            }
        }
    }

    /// Fills `slot` with `row` as a virtual tuple.
    ///
    /// # Safety
    /// `slot` must have this table's tuple descriptor; runs in the memory context the
    /// values should live in.
    pub unsafe fn store_row(&self, slot: *mut pg_sys::TupleTableSlot, row: &impl Columns) {
        // SAFETY: per the caller, as store_some requires.
        unsafe { self.store_some(slot, row, None) }
    }

    /// [`TableInfo::store_row`] with only the `needed` attributes decoded (see
    /// [`TableInfo::fill_some`]).
    ///
    /// # Safety
    /// As [`TableInfo::store_row`].
    pub unsafe fn store_some(
        &self,
        slot: *mut pg_sys::TupleTableSlot,
        row: &impl Columns,
        needed: Option<&[bool]>,
    ) {
        // SAFETY: per the caller, slot has this table's tuple descriptor: its tts_values
        // and tts_isnull arrays have one entry per attribute, as fill_some requires, and
        // ExecStoreVirtualTuple marks the filled slot valid after ExecClearTuple emptied
        // it.
        unsafe {
            pg_sys::ExecClearTuple(slot);
            self.fill_some(row, (*slot).tts_values, (*slot).tts_isnull, needed);
            pg_sys::ExecStoreVirtualTuple(slot);
        }
    }
}

/// A row's stored column values, wherever the row is held.
pub trait Columns {
    /// The stored bytes of `id`, `None` when NULL or absent.
    fn column(&self, id: ColumnId) -> Option<&[u8]>;
}

impl Columns for Row {
    fn column(&self, id: ColumnId) -> Option<&[u8]> {
        self.get(id)
    }
}

impl Columns for RowRef<'_> {
    fn column(&self, id: ColumnId) -> Option<&[u8]> {
        self.get(id)
    }
}

/// Splits a key made by [`TableInfo::key_of`] back into the stored bytes of its columns.
pub fn split_key(info: &TableInfo, key: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut parts = Vec::new();
    let mut rest = key;
    for &pos in &info.key {
        let col = &info.columns[pos];
        let part = match col.typid {
            pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID | pg_sys::OIDOID => {
                let (head, tail) = rest.split_at_checked(8)?;
                rest = tail;
                let v = (u64::from_be_bytes(head.try_into().ok()?) ^ (1 << 63)) as i64;
                datum::int_key_stored(col, v)
            }
            _ => {
                let mut out = Vec::new();
                let mut i = 0;
                loop {
                    match (rest.get(i)?, rest.get(i + 1)) {
                        (0, Some(0xFF)) => {
                            out.push(0);
                            i += 2;
                        }
                        (0, Some(0x01)) => break,
                        (&b, _) => {
                            out.push(b);
                            i += 1;
                        }
                    }
                }
                rest = &rest[i + 2..];
                out
            }
        };
        parts.push(part);
    }
    Some(parts)
}

/// `(a, b)=(1, x)` for a key of relation `relid`, as Postgres shows keys in errors; for a
/// table without a primary key, the hidden row id in hex.
pub fn describe_key(relid: pg_sys::Oid, key: &[u8]) -> String {
    let hex = || key.iter().map(|b| format!("{b:02x}")).collect::<String>();
    // SAFETY: opening the relation inside the running transaction, reading its
    // descriptor, and calling type output functions on datums decoded for those types.
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return format!("(row id)=({})", hex());
        }
        let info = TableInfo::from_relation(rel);
        pg_sys::RelationClose(rel);
        if info.key.is_empty() {
            return format!("(row id)=({})", hex());
        }
        let Some(parts) = split_key(&info, key) else {
            return format!("(key)=({})", hex());
        };
        let mut names = Vec::new();
        let mut values = Vec::new();
        for (&pos, stored) in info.key.iter().zip(parts) {
            let col = &info.columns[pos];
            names.push(col.name.clone());
            let Ok(d) = datum::decode(col, &stored) else {
                return format!("(key)=({})", hex());
            };
            let mut out_fn = pg_sys::InvalidOid;
            let mut varlena = false;
            pg_sys::getTypeOutputInfo(col.typid, &mut out_fn, &mut varlena);
            let text = pg_sys::OidOutputFunctionCall(out_fn, d);
            values.push(
                std::ffi::CStr::from_ptr(text)
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        format!("({})=({})", names.join(", "), values.join(", "))
    }
}
