//! Schema changes of DriftDB tables with their history intact.
//!
//! Rows are stored by column id (the attnum) in the stored form of the column's type, and
//! Postgres rewrites no foreign table's rows on ALTER. So:
//! - ADD COLUMN: older rows read the new column as NULL. A DEFAULT, NOT NULL, identity or
//!   generated column would not be applied to the existing rows (Postgres does not do it for
//!   foreign tables), so it is refused while the table has rows.
//! - DROP COLUMN: the stored values stay in the log and are no longer read; a DriftDB index
//!   on the column is dropped with it; a primary key column cannot be dropped.
//! - RENAME COLUMN: history and past reads show the new name; the table's `primary_key`
//!   option follows a renamed key column.
//! - ALTER COLUMN TYPE: only where the stored form stays valid and means the same (see
//!   [`keeps_stored_form`]).
//! - Changing the `primary_key` option of a table that has history is refused.

use crate::datum;
use crate::drop::is_driftdb_table;
use crate::engine::{self, LatestFates};
use crate::error::DriftError;
use crate::fdw::options::primary_key_columns;
use crate::table::TableInfo;
use crate::txn::{self, Ddl, Own};
use pgrx::pg_sys;
use pgrx::pg_sys::submodules::ffi::pg_guard_ffi_boundary;
use pgrx::prelude::*;
use pgrx::PgList;
use std::cell::Cell;
use std::ffi::{CStr, CString};

static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;
static mut PREV_OBJECT_ACCESS: pg_sys::object_access_hook_type = None;

thread_local! {
    /// Set while DriftDB itself rewrites a table's `primary_key` option after a key column
    /// was renamed (the same columns under their new names).
    static REWRITING_KEY: Cell<bool> = const { Cell::new(false) };
}

/// Installs the hooks, keeping the ones installed before; called once from `_PG_init`.
pub fn init() {
    // SAFETY: hooks are installed while the library loads, before any query runs.
    unsafe {
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
        PREV_OBJECT_ACCESS = pg_sys::object_access_hook;
        pg_sys::object_access_hook = Some(object_access);
    }
}

fn cstr(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: a NUL-terminated string from a parse tree or the catalogs.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// A key column renamed by the statement being run: the option to rewrite afterwards.
struct KeyRename {
    relid: pg_sys::Oid,
    key: Vec<String>,
}

/// The ProcessUtility hook: schema changes of DriftDB tables are checked before they run
/// (see the module doc) and after (`Recheck`), and a renamed key column is renamed in the
/// `primary_key` option.
///
/// # Safety
/// Only Postgres calls this, as `ProcessUtility_hook`, with a planned utility statement and
/// what running it needs.
#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: Postgres passes a valid planned utility statement; the checks only read the
    // parse tree and the catalogs, and the previous hook or the standard function runs
    // the statement exactly as it would without DriftDB.
    unsafe {
        let after = check((*pstmt).utilityStmt);
        let recheck = recheck_of((*pstmt).utilityStmt);
        match PREV_PROCESS_UTILITY {
            Some(prev) => pg_guard_ffi_boundary(|| {
                prev(
                    pstmt,
                    query_string,
                    read_only_tree,
                    context,
                    params,
                    query_env,
                    dest,
                    qc,
                )
            }),
            None => pg_sys::standard_ProcessUtility(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
        }
        if let Some(r) = after {
            rewrite_key_option(r);
        }
        recheck.run();
    }
}

/// A DriftDB table a statement created or altered, to be checked once it has run.
enum Recheck {
    Nothing,
    Created(*mut pg_sys::RangeVar),
    Altered(pg_sys::Oid),
}

/// What to check after `stmt`: CREATE FOREIGN TABLE and ALTER of a DriftDB table.
///
/// # Safety
/// `stmt` is null or the parse tree of the utility statement about to run, inside its
/// transaction.
unsafe fn recheck_of(stmt: *mut pg_sys::Node) -> Recheck {
    // SAFETY: per the caller, stmt is null (checked) or the utility statement's parse tree:
    // it is read as a CreateForeignTableStmt or an AlterTableStmt only after its tag says
    // so, and driftdb_relation gets that statement's own RangeVar.
    unsafe {
        if stmt.is_null() {
            return Recheck::Nothing;
        }
        match (*stmt).type_ {
            pg_sys::NodeTag::T_CreateForeignTableStmt => {
                let s = &*(stmt as *mut pg_sys::CreateForeignTableStmt);
                Recheck::Created(s.base.relation)
            }
            pg_sys::NodeTag::T_AlterTableStmt => {
                let s = &*(stmt as *mut pg_sys::AlterTableStmt);
                match driftdb_relation(s.relation, s.missing_ok) {
                    Some(relid) => Recheck::Altered(relid),
                    None => Recheck::Nothing,
                }
            }
            _ => Recheck::Nothing,
        }
    }
}

impl Recheck {
    /// Refuses (rolling the statement back with it) a DriftDB table whose primary_key
    /// option names a missing column or one whose type cannot be a key, or whose indexed
    /// column can no longer be indexed: at CREATE and ALTER, not at the first write.
    ///
    /// # Safety
    /// Runs after the statement `self` was made for, inside its transaction.
    unsafe fn run(self) {
        // SAFETY: per the caller, this runs after the statement ran, inside its
        // transaction: a Created RangeVar points into the statement's parse tree, which
        // stays allocated until the statement's memory is released, after this; the lookups
        // read the catalogs (made current by CommandCounterIncrement), and the relation
        // TableInfo::of opens was just created or altered by this statement, which holds
        // its lock.
        unsafe {
            let relid = match self {
                Recheck::Nothing => return,
                Recheck::Altered(relid) => relid,
                Recheck::Created(rv) => pg_sys::RangeVarGetRelidExtended(
                    rv,
                    pg_sys::NoLock as pg_sys::LOCKMODE,
                    pg_sys::RVROption::RVR_MISSING_OK,
                    None,
                    std::ptr::null_mut(),
                ),
            };
            // The statement's own changes become visible to the checks.
            pg_sys::CommandCounterIncrement();
            if relid == pg_sys::InvalidOid || !is_driftdb_table(relid) {
                return;
            }
            let info = TableInfo::of(relid);
            for &pos in &info.key {
                datum::check_key_type_by_catalog(&info.columns[pos]).unwrap_or_else(|e| e.report());
            }
            for (id, kind) in engine::indexes(info.id) {
                let Some(col) = info.columns.iter().find(|c| !c.dropped && c.id() == id) else {
                    continue;
                };
                let now = datum::check_index_type_by_catalog(col).unwrap_or_else(|e| e.report());
                if now != kind {
                    DriftError::UnsupportedIndexType {
                        column: col.name.clone(),
                        why: format!(
                            "one its index no longer fits (the index keys values as {kind}, \
                             the type needs {now}); drop the index first with \
                             drift_drop_index, and create it again after"
                        ),
                    }
                    .report()
                }
            }
        }
    }
}

/// The DriftDB table a statement names, or `None` (not a DriftDB table, or missing and
/// the statement says IF EXISTS; a missing table otherwise raises Postgres' own error).
///
/// # Safety
/// `rv` is null or a RangeVar of a statement's parse tree, inside its transaction.
unsafe fn driftdb_relation(rv: *mut pg_sys::RangeVar, missing_ok: bool) -> Option<pg_sys::Oid> {
    // SAFETY: per the caller, rv is null (checked) or a RangeVar of a statement's parse
    // tree, inside its transaction: the lookup takes no lock and returns InvalidOid only
    // with RVR_MISSING_OK (without it a missing relation is Postgres' own ERROR); the rest
    // are catalog lookups.
    unsafe {
        if rv.is_null() {
            return None;
        }
        let flags = if missing_ok {
            pg_sys::RVROption::RVR_MISSING_OK
        } else {
            0
        };
        let relid = pg_sys::RangeVarGetRelidExtended(
            rv,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            flags,
            None,
            std::ptr::null_mut(),
        );
        // Only the owner gets DriftDB's checks (which tell about the table's rows and
        // history); anyone else gets Postgres' own 42501 from the statement itself.
        (relid != pg_sys::InvalidOid
            && is_driftdb_table(relid)
            && crate::pg::compat::owns_relation(relid))
        .then_some(relid)
    }
}

/// Refuses the schema changes that would misread stored rows; returns what to do after a
/// statement that renames a key column.
///
/// # Safety
/// `stmt` is null or the parse tree of the utility statement about to run, inside its
/// transaction.
unsafe fn check(stmt: *mut pg_sys::Node) -> Option<KeyRename> {
    // SAFETY: per the caller, stmt is null (checked) or the utility statement's parse tree,
    // inside its transaction: it is read as an AlterTableStmt or a RenameStmt only after
    // its tag says so, and each ALTER subcommand's def is what its subtype says (a
    // ColumnDef for ADD COLUMN and ALTER COLUMN TYPE, a list of DefElems for OPTIONS), each
    // null-checked by the function it goes to. TableInfo::of opens the DriftDB table
    // driftdb_relation found (42P01 if it was dropped meanwhile).
    unsafe {
        if stmt.is_null() {
            return None;
        }
        match (*stmt).type_ {
            pg_sys::NodeTag::T_AlterTableStmt => {
                let s = &*(stmt as *mut pg_sys::AlterTableStmt);
                let relid = driftdb_relation(s.relation, s.missing_ok)?;
                for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg(s.cmds).iter_ptr() {
                    let cmd = &*cmd;
                    match cmd.subtype {
                        pg_sys::AlterTableType::AT_AddColumn => {
                            check_add_column(relid, cmd.def as *mut pg_sys::ColumnDef)
                        }
                        pg_sys::AlterTableType::AT_AlterColumnType => check_type_change(
                            relid,
                            &cstr(cmd.name),
                            cmd.def as *mut pg_sys::ColumnDef,
                        ),
                        pg_sys::AlterTableType::AT_GenericOptions => {
                            check_key_option(relid, cmd.def as *mut pg_sys::List)
                        }
                        _ => {}
                    }
                }
                None
            }
            pg_sys::NodeTag::T_RenameStmt => {
                let s = &*(stmt as *mut pg_sys::RenameStmt);
                if s.renameType != pg_sys::ObjectType::OBJECT_COLUMN {
                    return None;
                }
                let relid = driftdb_relation(s.relation, s.missing_ok)?;
                let info = TableInfo::of(relid);
                let (old, new) = (cstr(s.subname), cstr(s.newname));
                let mut key: Vec<String> = info
                    .key
                    .iter()
                    .map(|&p| info.columns[p].name.clone())
                    .collect();
                let pos = key.iter().position(|k| *k == old)?;
                if new.contains(',') || new.trim() != new || new.is_empty() {
                    DriftError::SchemaChange {
                        relid,
                        message: format!(
                            "cannot rename key column \"{old}\" of {{table}} to \"{new}\""
                        ),
                        detail: "The primary_key option lists key columns separated by commas."
                            .into(),
                        hint: "Choose a name without commas and without leading or trailing \
                               spaces."
                            .into(),
                    }
                    .report()
                }
                key[pos] = new;
                Some(KeyRename { relid, key })
            }
            _ => None,
        }
    }
}

/// True for a NULL constant (possibly cast), the one default that changes nothing.
///
/// # Safety
/// `node` is null or a valid raw parse-tree expression node.
unsafe fn is_null_constant(node: *mut pg_sys::Node) -> bool {
    // SAFETY: per the caller, node is null (checked) or a raw parse-tree expression node,
    // read as an A_Const or a TypeCast only after its tag says so.
    unsafe {
        if node.is_null() {
            return true;
        }
        match (*node).type_ {
            pg_sys::NodeTag::T_A_Const => (*(node as *mut pg_sys::A_Const)).isnull,
            pg_sys::NodeTag::T_TypeCast => is_null_constant((*(node as *mut pg_sys::TypeCast)).arg),
            _ => false,
        }
    }
}

/// What a new column would need applied to the rows already there, if anything.
///
/// # Safety
/// `def` is a valid ColumnDef of a raw parse tree.
unsafe fn fills_existing_rows(def: *mut pg_sys::ColumnDef) -> Option<&'static str> {
    // SAFETY: per the caller, def is a valid ColumnDef of a raw parse tree: its type name
    // (null checked) holds a list of name nodes, read as a String only after its tag says
    // so, and its constraint list holds Constraint nodes.
    unsafe {
        let def = &*def;
        if !def.typeName.is_null() {
            let names = PgList::<pg_sys::Node>::from_pg((*def.typeName).names);
            if let Some(last) = names.iter_ptr().last() {
                if (*last).type_ == pg_sys::NodeTag::T_String {
                    let name = cstr((*(last as *mut pg_sys::String)).sval);
                    if matches!(
                        name.as_str(),
                        "serial" | "serial2" | "serial4" | "serial8" | "smallserial" | "bigserial"
                    ) {
                        return Some("a serial type");
                    }
                }
            }
        }
        if def.identity != 0 {
            return Some("an identity");
        }
        if def.generated != 0 {
            return Some("a generated value");
        }
        if !is_null_constant(def.raw_default) || !def.cooked_default.is_null() {
            return Some("a default");
        }
        if def.is_not_null {
            return Some("NOT NULL");
        }
        for c in PgList::<pg_sys::Constraint>::from_pg(def.constraints).iter_ptr() {
            match (*c).contype {
                pg_sys::ConstrType::CONSTR_DEFAULT if !is_null_constant((*c).raw_expr) => {
                    return Some("a default")
                }
                pg_sys::ConstrType::CONSTR_NOTNULL => return Some("NOT NULL"),
                pg_sys::ConstrType::CONSTR_IDENTITY => return Some("an identity"),
                pg_sys::ConstrType::CONSTR_GENERATED => return Some("a generated value"),
                _ => {}
            }
        }
        None
    }
}

/// Whether the table has rows: committed ones at the newest point, or ones this
/// transaction wrote (conservatively: rows it deleted again from the committed state
/// still count).
fn has_rows(info: &TableInfo) -> bool {
    let at = engine::read_point();
    let committed = engine::with_store(|s| match s.scan(info.id, at, &LatestFates) {
        Ok(mut scan) => scan.next().transpose().map(|r| r.is_some()),
        Err(driftdb_storage::Error::NoSuchTable(_)) => Ok(false),
        Err(e) => Err(e),
    });
    committed
        || txn::own_changes(info.id, None, pg_sys::CommandId::MAX, true, &mut |_| None)
            .values()
            .any(|o| matches!(o, Own::Row(_)))
}

/// Whether the table has any committed event, or this transaction wrote to it.
pub fn has_history(info: &TableInfo) -> bool {
    let at = engine::read_point();
    let committed = engine::with_store(|s| match s.table_history(info.id, at, &LatestFates) {
        Ok(mut events) => events.next().transpose().map(|e| e.is_some()),
        Err(driftdb_storage::Error::NoSuchTable(_)) => Ok(false),
        Err(e) => Err(e),
    });
    committed
        || !txn::own_changes(info.id, None, pg_sys::CommandId::MAX, true, &mut |_| None).is_empty()
}

/// Refuses an ADD COLUMN that would need values filled into the rows a DriftDB table has.
///
/// # Safety
/// `relid` is a DriftDB table and `def` null or the ColumnDef of an ADD COLUMN of it,
/// inside the transaction of the ALTER.
unsafe fn check_add_column(relid: pg_sys::Oid, def: *mut pg_sys::ColumnDef) {
    // SAFETY: per the caller, def is null (checked) or the ColumnDef of an ADD COLUMN, and
    // relid a DriftDB table, inside the transaction: get_attnum reads the catalog for the
    // NUL-terminated name, and the lock taken is the one ALTER takes anyway; TableInfo::of
    // then opens the locked relation (42P01 if it was dropped while this waited).
    unsafe {
        if def.is_null() {
            return;
        }
        let Some(what) = fills_existing_rows(def) else {
            return;
        };
        let name = CString::new(cstr((*def).colname)).unwrap_or_default();
        if pg_sys::get_attnum(relid, name.as_ptr()) != pg_sys::InvalidAttrNumber as i16 {
            // The column exists: Postgres skips the command (IF NOT EXISTS) or refuses it.
            return;
        }
        // The lock ALTER takes anyway, taken now: no other transaction writes the table
        // while it is checked, and none can add rows between the check and the change.
        pg_sys::LockRelationOid(relid, pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE);
        let info = TableInfo::of(relid);
        if has_rows(&info) {
            let col = cstr((*def).colname);
            DriftError::SchemaChange {
                relid,
                message: format!(
                    "cannot add column \"{col}\" with {what} to {{table}}, which has rows"
                ),
                detail: "Postgres applies nothing to the existing rows of a foreign table when \
                         a column is added: DriftDB would read the new column as NULL in every \
                         row there is."
                    .into(),
                hint: format!(
                    "Add the column without it, then fill it with UPDATE (which is recorded in \
                     the history): ALTER FOREIGN TABLE {} ADD COLUMN {col} ...; UPDATE ... SET \
                     {col} = ...; then ALTER COLUMN {col} SET DEFAULT or SET NOT NULL.",
                    cstr(pg_sys::get_rel_name(relid))
                ),
            }
            .report()
        }
    }
}

/// The parts of a numeric typmod: `(precision, scale)`.
fn numeric_typmod(typmod: i32) -> (i32, i32) {
    let t = typmod - pg_sys::VARHDRSZ as i32;
    ((t >> 16) & 0xffff, ((t & 0x7ff) ^ 1024) - 1024)
}

/// Whether values stored for a column of type `(typid, typmod)` stay valid, and mean the
/// same, when the column becomes `(new_typid, new_typmod)` (-1: no modifier):
/// the same type and modifier (a collation change); varchar(n) to text, varchar, or
/// varchar(m >= n); text to varchar; varbit(n) to varbit or varbit(m >= n); numeric(p, s)
/// to numeric or numeric(q >= p, s); time, timetz, timestamp and timestamptz to a larger
/// precision or none; interval to interval without modifier. Every other change would need
/// the stored values rewritten (int4 is 4 bytes, int8 8; char(n) is padded to n; a domain
/// adds checks the old values never passed).
pub fn keeps_stored_form(old: (pg_sys::Oid, i32), new: (pg_sys::Oid, i32)) -> bool {
    use pg_sys::*;
    let ((ot, om), (nt, nm)) = (old, new);
    if old == new {
        return true;
    }
    let wider = |o: i32, n: i32| n == -1 || (o != -1 && n >= o);
    match (ot, nt) {
        (VARCHAROID, VARCHAROID) | (VARBITOID, VARBITOID) => wider(om, nm),
        (VARCHAROID, TEXTOID) => true,
        (TEXTOID, VARCHAROID) => nm == -1,
        (NUMERICOID, NUMERICOID) => {
            nm == -1 || {
                let ((op, os), (np, ns)) = (numeric_typmod(om), numeric_typmod(nm));
                om != -1 && os == ns && np >= op
            }
        }
        (TIMEOID, TIMEOID)
        | (TIMETZOID, TIMETZOID)
        | (TIMESTAMPOID, TIMESTAMPOID)
        | (TIMESTAMPTZOID, TIMESTAMPTZOID) => wider(om, nm),
        (INTERVALOID, INTERVALOID) => nm == -1,
        _ => false,
    }
}

/// Refuses an ALTER COLUMN TYPE of a DriftDB table whose stored values the new type would
/// misread ([`keeps_stored_form`]).
///
/// # Safety
/// `relid` is a DriftDB table and `def` null or the ColumnDef of an ALTER COLUMN TYPE of
/// it, inside the transaction of the ALTER.
unsafe fn check_type_change(relid: pg_sys::Oid, column: &str, def: *mut pg_sys::ColumnDef) {
    // SAFETY: per the caller, def is null (checked) or the ColumnDef of an ALTER COLUMN
    // TYPE, whose typeName is checked not null, and relid a DriftDB table, inside the
    // transaction: the attribute and type lookups read the catalogs (typenameTypeIdAndMod
    // raises Postgres' own ERROR for a missing type), and format_type_with_typemod returns
    // palloc'd NUL-terminated names.
    unsafe {
        if def.is_null() || (*def).typeName.is_null() {
            return;
        }
        let name = CString::new(column).unwrap_or_default();
        let attnum = pg_sys::get_attnum(relid, name.as_ptr());
        if attnum == pg_sys::InvalidAttrNumber as i16 {
            // Postgres reports the missing column itself.
            return;
        }
        let (mut ot, mut om, mut oc) = (pg_sys::InvalidOid, -1, pg_sys::InvalidOid);
        pg_sys::get_atttypetypmodcoll(relid, attnum, &mut ot, &mut om, &mut oc);
        let (mut nt, mut nm) = (pg_sys::InvalidOid, -1);
        pg_sys::typenameTypeIdAndMod(std::ptr::null_mut(), (*def).typeName, &mut nt, &mut nm);
        if keeps_stored_form((ot, om), (nt, nm)) {
            return;
        }
        DriftError::SchemaChange {
            relid,
            message: format!(
                "cannot change the type of column \"{column}\" of {{table}} from {} to {}",
                cstr(pg_sys::format_type_with_typemod(ot, om)),
                cstr(pg_sys::format_type_with_typemod(nt, nm))
            ),
            detail: "ALTER TYPE rewrites no row of a foreign table: DriftDB keeps every past and \
                     present value in the stored form of the old type, which the new type would \
                     misread."
                .into(),
            hint: "Allowed: varchar(n) to text, varchar or varchar(m) with m >= n; text to \
                   varchar; numeric(p,s) to numeric or numeric(q,s) with q >= p; a larger or no \
                   precision for time and timestamp types; a new collation. Otherwise add a \
                   column of the new type, fill it with UPDATE and drop the old one."
                .into(),
        }
        .report()
    }
}

/// Refuses a change of the `primary_key` option that would file new events under other
/// key columns than the table's history.
///
/// # Safety
/// `relid` is a DriftDB table and `options` the DefElems of an OPTIONS clause on it, inside
/// the transaction of the ALTER.
unsafe fn check_key_option(relid: pg_sys::Oid, options: *mut pg_sys::List) {
    // SAFETY: per the caller, options is the list of DefElems of an OPTIONS clause on the
    // DriftDB table relid (possibly empty), inside the transaction: each has a
    // NUL-terminated name, and defGetString is called only for one that sets a value (not
    // for DROP); TableInfo::of and get_attnum read the table and the catalogs.
    unsafe {
        if REWRITING_KEY.with(Cell::get) {
            return;
        }
        for def in PgList::<pg_sys::DefElem>::from_pg(options).iter_ptr() {
            if cstr((*def).defname) != "primary_key" {
                continue;
            }
            let info = TableInfo::of(relid);
            let current: Vec<i16> = info.key.iter().map(|&p| info.columns[p].attnum).collect();
            let wanted: Option<Vec<i16>> =
                if (*def).defaction == pg_sys::DefElemAction::DEFELEM_DROP {
                    Some(Vec::new())
                } else {
                    let value = cstr(pg_sys::defGetString(def));
                    primary_key_columns(&value).ok().map(|names| {
                        names
                            .iter()
                            .map(|n| {
                                let c = CString::new(n.as_str()).unwrap_or_default();
                                pg_sys::get_attnum(relid, c.as_ptr())
                            })
                            .collect()
                    })
                };
            if wanted.as_ref() == Some(&current) || !has_history(&info) {
                continue;
            }
            DriftError::SchemaChange {
                relid,
                message: "cannot change the primary key of {table}".into(),
                detail: "Every event of the table is filed under the key its row had when it \
                         was written."
                    .into(),
                hint: "Create a table with the new key and copy the rows with INSERT ... SELECT."
                    .into(),
            }
            .report()
        }
    }
}

/// Resets [`REWRITING_KEY`] however the rewrite ends.
struct RewriteGuard;

impl Drop for RewriteGuard {
    fn drop(&mut self) {
        REWRITING_KEY.with(|r| r.set(false));
    }
}

/// Points the `primary_key` option at the renamed column, within the same transaction.
///
/// # Safety
/// Runs inside the transaction whose statement renamed the key column, after it ran.
unsafe fn rewrite_key_option(r: KeyRename) {
    // SAFETY: per the caller, inside the transaction whose statement renamed the column:
    // CommandCounterIncrement makes the rename visible to the SPI statements below.
    unsafe {
        pg_sys::CommandCounterIncrement();
    }
    let value = r.key.join(", ");
    let command = Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.format('ALTER FOREIGN TABLE %s OPTIONS (SET primary_key %L)', \
         $1::pg_catalog.regclass, $2)",
        &[r.relid.into(), value.as_str().into()],
    );
    let command = match command {
        Ok(Some(c)) => c,
        other => {
            DriftError::Internal(format!("rewriting the primary key option: {other:?}")).report()
        }
    };
    REWRITING_KEY.with(|f| f.set(true));
    let _guard = RewriteGuard;
    if let Err(e) = Spi::run(&command) {
        DriftError::Internal(format!("rewriting the primary key option: {e}")).report()
    }
}

/// The object-access hook: a column of a DriftDB table being dropped is refused when it is
/// a key column, and takes its index with it.
///
/// # Safety
/// Only Postgres calls this, as `object_access_hook`, for an access to an object inside a
/// transaction.
#[pg_guard]
unsafe extern "C-unwind" fn object_access(
    access: pg_sys::ObjectAccessType::Type,
    class_id: pg_sys::Oid,
    object_id: pg_sys::Oid,
    sub_id: std::ffi::c_int,
    arg: *mut std::ffi::c_void,
) {
    // SAFETY: the previous hook gets exactly what Postgres passed; the rest reads the
    // catalogs of a column that is about to be dropped (it still exists).
    unsafe {
        if let Some(prev) = PREV_OBJECT_ACCESS {
            pg_guard_ffi_boundary(|| prev(access, class_id, object_id, sub_id, arg));
        }
        if access == pg_sys::ObjectAccessType::OAT_DROP
            && class_id == pg_sys::RelationRelationId
            && sub_id > 0
            && is_driftdb_table(object_id)
        {
            dropping_column(object_id, sub_id as i16);
        }
    }
}

/// A column of a DriftDB table is being dropped.
///
/// # Safety
/// `relid` is a DriftDB table whose column `attnum` is being dropped (the drop holds its
/// lock).
unsafe fn dropping_column(relid: pg_sys::Oid, attnum: i16) {
    // SAFETY: per the caller, relid is the DriftDB table a column of which is being
    // dropped: the drop holds its lock, and the table itself still exists, so TableInfo::of
    // opens it.
    let info = unsafe { TableInfo::of(relid) };
    if let Some(&pos) = info.key.iter().find(|&&p| info.columns[p].attnum == attnum) {
        DriftError::KeyColumnDrop {
            relid,
            column: info.columns[pos].name.clone(),
        }
        .report()
    }
    let column = attnum as u16;
    if engine::indexes(info.id).iter().any(|&(c, _)| c == column) {
        txn::at_commit(Ddl::DropIndex(info.id, column));
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use super::keeps_stored_form;
    use pgrx::pg_sys::*;
    use pgrx::prelude::*;

    fn numeric(p: i32, s: i32) -> i32 {
        ((p << 16) | (s & 0x7ff)) + VARHDRSZ as i32
    }

    #[pg_test]
    fn stored_form_rules() {
        let vc = |n: i32| (VARCHAROID, n + VARHDRSZ as i32);
        assert!(keeps_stored_form(vc(5), vc(10)));
        assert!(keeps_stored_form(vc(5), (VARCHAROID, -1)));
        assert!(!keeps_stored_form(vc(10), vc(5)));
        assert!(!keeps_stored_form((VARCHAROID, -1), vc(5)));
        assert!(keeps_stored_form(vc(5), (TEXTOID, -1)));
        assert!(keeps_stored_form((TEXTOID, -1), (VARCHAROID, -1)));
        assert!(!keeps_stored_form((TEXTOID, -1), vc(3)));
        assert!(!keeps_stored_form((INT4OID, -1), (INT8OID, -1)));
        assert!(!keeps_stored_form((INT8OID, -1), (INT4OID, -1)));
        assert!(!keeps_stored_form((TEXTOID, -1), (BPCHAROID, -1)));
        assert!(!keeps_stored_form((BPCHAROID, 9), (BPCHAROID, 14)));
        assert!(keeps_stored_form(
            (NUMERICOID, numeric(5, 2)),
            (NUMERICOID, numeric(8, 2))
        ));
        assert!(keeps_stored_form(
            (NUMERICOID, numeric(5, 2)),
            (NUMERICOID, -1)
        ));
        assert!(!keeps_stored_form(
            (NUMERICOID, numeric(5, 2)),
            (NUMERICOID, numeric(8, 3))
        ));
        assert!(!keeps_stored_form(
            (NUMERICOID, numeric(8, 2)),
            (NUMERICOID, numeric(5, 2))
        ));
        assert!(!keeps_stored_form(
            (NUMERICOID, -1),
            (NUMERICOID, numeric(8, 2))
        ));
        assert!(keeps_stored_form((TIMESTAMPTZOID, 3), (TIMESTAMPTZOID, 6)));
        assert!(keeps_stored_form((TIMESTAMPTZOID, 3), (TIMESTAMPTZOID, -1)));
        assert!(!keeps_stored_form((TIMESTAMPTZOID, 6), (TIMESTAMPTZOID, 3)));
        assert!(!keeps_stored_form((TIMESTAMPOID, -1), (TIMESTAMPTZOID, -1)));
        assert!(keeps_stored_form((TEXTOID, -1), (TEXTOID, -1)));
    }
}
