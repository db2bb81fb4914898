//! The one place where DriftDB errors become Postgres errors with a SQLSTATE.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// The location Postgres prints for errors raised here.
const FUNC: &str = "driftdb";

#[derive(Debug)]
pub enum DriftError {
    /// The library was loaded by a backend instead of the postmaster.
    NotPreloaded,
    /// A foreign-data-wrapper option that DriftDB does not know.
    UnknownOption {
        name: String,
        valid: &'static str,
    },
    /// A known option given on the wrong kind of object.
    MisplacedOption {
        name: String,
        belongs_on: &'static str,
        given_on: &'static str,
    },
    /// A known option with a value DriftDB cannot use.
    BadOptionValue {
        name: String,
        value: String,
        why: String,
    },
    /// `primary_key` names a column the table does not have.
    NoSuchKeyColumn {
        relid: pg_sys::Oid,
        column: String,
    },
    /// A key column of a type whose stored image does not decide equality.
    UnsupportedKeyType {
        column: String,
        why: String,
    },
    NullInColumn {
        relid: pg_sys::Oid,
        column: String,
    },
    NoSuchColumn {
        relid: pg_sys::Oid,
        column: String,
    },
    NoSuchIndex {
        relid: pg_sys::Oid,
        column: String,
    },
    NotDriftTable {
        relid: pg_sys::Oid,
    },
    NotOwner {
        relid: pg_sys::Oid,
    },
    /// The table was dropped while this statement waited for its lock.
    TableDropped {
        relid: pg_sys::Oid,
    },
    UnsupportedIndexType {
        column: String,
        why: String,
    },
    SeqOutOfRange {
        seq: i64,
        current: u64,
    },
    TimeInFuture,
    NullPoint,
    NotDriftRowType,
    /// `drift_history_key` (or `drift_prove`, the `function`) on a key column whose
    /// rendering it cannot invert.
    KeyTextType {
        function: &'static str,
        column: String,
    },
    /// `drift_history_key` given a number of key texts other than the key's columns.
    KeyTextCount {
        table: pg_sys::Oid,
        expected: usize,
        got: usize,
    },
    WriteInPast,
    DuplicateKey {
        relid: pg_sys::Oid,
        key: Vec<u8>,
    },
    /// The row was changed or removed by a transaction this one cannot see.
    ConcurrentChange {
        relid: pg_sys::Oid,
        key: Vec<u8>,
    },
    PrepareWithWrites,
    PrepareWithDdl,
    Serializable,
    /// NOWAIT found the row locked by another transaction.
    RowLocked {
        relid: pg_sys::Oid,
    },
    /// `ON CONFLICT (columns)` naming other columns than the primary key's.
    OnConflictTarget {
        relid: pg_sys::Oid,
        keyless: bool,
    },
    /// `ON CONFLICT ... DO UPDATE`.
    OnConflictUpdate {
        relid: pg_sys::Oid,
    },
    /// An UPDATE through a partitioned table that would move a row out of DriftDB
    /// partition `from` where the move cannot be done as heap does it (`to`: the partition
    /// it belongs in, when known).
    RowMove {
        from: pg_sys::Oid,
        to: pg_sys::Oid,
        why: String,
    },
    /// A rewritten call of a function the user may not EXECUTE.
    NoExecute {
        funcid: pg_sys::Oid,
    },
    /// `driftdb.as_of` set, the table read with a view owner's privileges the reader lacks.
    PastThroughOtherRole {
        relid: pg_sys::Oid,
    },
    /// `drift_as_of(t, '')`.
    EmptyPoint,
    /// A locking read while `driftdb.as_of` is set.
    LockInPast,
    /// A transaction's fate is neither recorded by DriftDB nor in the commit log any more.
    FateForgotten {
        xid: u64,
    },
    TooManyTargetRows,
    /// A stored value does not fit its column's type.
    CorruptValue {
        column: String,
        detail: String,
    },
    /// A schema change that would make stored rows read wrongly (or differently from what
    /// Postgres would show for a heap table). `{table}` in the message names the table.
    SchemaChange {
        relid: pg_sys::Oid,
        message: String,
        detail: String,
        hint: String,
    },
    /// Dropping a column of the primary key.
    KeyColumnDrop {
        relid: pg_sys::Oid,
        column: String,
    },
    /// An import into a table that already has history (or pending writes).
    ImportTargetNotEmpty {
        relid: pg_sys::Oid,
        why: String,
    },
    /// Import input that does not describe a valid history of the table.
    BadImport {
        detail: String,
    },
    /// A digest's text that is not the canonical `driftdb-digest:v1:...` form.
    BadDigest {
        text: String,
        why: &'static str,
    },
    /// Proof bytes that are not a valid encoding of their kind.
    BadProof {
        kind: &'static str,
        why: &'static str,
    },
    /// A ledger request that cannot be answered as asked (a seq not in the ledger, not an
    /// event of the row, digests out of order or larger than the ledger).
    LedgerRequest {
        message: String,
        detail: String,
    },
    /// `drift_prove` of a group that also has events in a table the caller may not read
    /// (`relid`; `None`: a table that no longer exists, or of another database).
    ProofRevealsTable {
        table: driftdb_storage::TableId,
        relid: Option<pg_sys::Oid>,
        seq: u64,
    },
    Engine(driftdb_storage::Error),
    Internal(String),
}

/// Warnings DriftDB raises (the call goes on).
#[derive(Debug)]
pub enum DriftWarning {
    /// `drift_verify_digest` found that history does not match a digest: `report` says
    /// what differs.
    DigestMismatch { report: String },
}

impl DriftWarning {
    /// Raises this warning (a WARNING message to the client and the log).
    pub fn report(self) {
        use PgSqlErrorCode::*;
        let report = match self {
            DriftWarning::DigestMismatch { report } => {
                ErrorReport::new(ERRCODE_WARNING, "history does not match the digest", FUNC)
                    .set_detail(report)
            }
        };
        report.report(PgLogLevel::WARNING);
    }
}

fn rel_name(relid: pg_sys::Oid) -> String {
    // SAFETY: a syscache lookup inside a transaction; NULL when the relation is gone.
    unsafe {
        let p = pg_sys::get_rel_name(relid);
        if p.is_null() {
            format!("relation {}", relid.to_u32())
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

impl DriftError {
    /// Raises this error in Postgres. Never returns: the transaction aborts.
    pub fn report(self) -> ! {
        use PgSqlErrorCode::*;
        let report = match self {
            DriftError::NotPreloaded => ErrorReport::new(
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "driftdb must be loaded via shared_preload_libraries",
                FUNC,
            )
            .set_hint(
                "Add driftdb to shared_preload_libraries in postgresql.conf \
                 (shared_preload_libraries = 'driftdb') and restart the server.",
            ),
            DriftError::UnknownOption { name, valid } => ErrorReport::new(
                ERRCODE_FDW_INVALID_OPTION_NAME,
                format!("invalid option \"{name}\""),
                FUNC,
            )
            .set_hint(if valid.is_empty() {
                "There are no valid options in this context.".to_string()
            } else {
                format!("Valid options in this context are: {valid}")
            }),
            DriftError::MisplacedOption { name, belongs_on, given_on } => ErrorReport::new(
                ERRCODE_FDW_INVALID_OPTION_NAME,
                format!("option \"{name}\" is only valid on {belongs_on}, not on {given_on}"),
                FUNC,
            ),
            DriftError::BadOptionValue { name, value, why } => ErrorReport::new(
                ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE,
                format!("invalid value for option \"{name}\": \"{value}\""),
                FUNC,
            )
            .set_detail(why),
            DriftError::NoSuchKeyColumn { relid, column } => ErrorReport::new(
                ERRCODE_UNDEFINED_COLUMN,
                format!(
                    "primary key column \"{column}\" of foreign table \"{}\" does not exist",
                    rel_name(relid)
                ),
                FUNC,
            ),
            DriftError::UnsupportedKeyType { column, why } => ErrorReport::new(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("column \"{column}\" cannot be part of a DriftDB primary key"),
                FUNC,
            )
            .set_detail(format!("Its type is {why}.")),
            DriftError::NullInColumn { relid, column } => ErrorReport::new(
                ERRCODE_NOT_NULL_VIOLATION,
                format!(
                    "null value in column \"{column}\" of relation \"{}\" violates not-null constraint",
                    rel_name(relid)
                ),
                FUNC,
            ),
            DriftError::NoSuchColumn { relid, column } => ErrorReport::new(
                ERRCODE_UNDEFINED_COLUMN,
                format!("column \"{column}\" of relation \"{}\" does not exist", rel_name(relid)),
                FUNC,
            ),
            DriftError::NoSuchIndex { relid, column } => ErrorReport::new(
                ERRCODE_UNDEFINED_OBJECT,
                format!(
                    "column \"{column}\" of relation \"{}\" has no DriftDB index",
                    rel_name(relid)
                ),
                FUNC,
            ),
            DriftError::NotDriftTable { relid } => ErrorReport::new(
                ERRCODE_WRONG_OBJECT_TYPE,
                format!("\"{}\" is not a DriftDB table", rel_name(relid)),
                FUNC,
            ),
            DriftError::NotOwner { relid } => ErrorReport::new(
                ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("must be owner of table {}", rel_name(relid)),
                FUNC,
            ),
            DriftError::TableDropped { relid } => ErrorReport::new(
                ERRCODE_UNDEFINED_TABLE,
                format!("relation with OID {} does not exist", relid.to_u32()),
                FUNC,
            )
            .set_detail("It was dropped while this statement waited for it."),
            DriftError::UnsupportedIndexType { column, why } => ErrorReport::new(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("column \"{column}\" cannot have a DriftDB index"),
                FUNC,
            )
            .set_detail(format!("Its type is {why}.")),
            DriftError::SeqOutOfRange { seq, current } => ErrorReport::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("seq {seq} is not in the past"),
                FUNC,
            )
            .set_detail(format!("Seqs run from 0 to the current stable seq, {current}.")),
            DriftError::KeyTextType { function, column } => ErrorReport::new(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("{function} cannot look up key column \"{column}\" by its text"),
                FUNC,
            )
            .set_detail("Only integer key columns, and text or varchar ones in a UTF8 database, are looked up by text.")
            .set_hint("Filter drift_history(table) instead."),
            DriftError::KeyTextCount {
                table,
                expected,
                got,
            } => ErrorReport::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!(
                    "table \"{}\" has {expected} key column(s), not {got}",
                    rel_name(table)
                ),
                FUNC,
            )
            .set_hint("Give one text per primary key column, in the key's order."),
            DriftError::TimeInFuture => ErrorReport::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                "cannot read DriftDB tables as of a time in the future",
                FUNC,
            ),
            DriftError::NullPoint => ErrorReport::new(
                ERRCODE_NULL_VALUE_NOT_ALLOWED,
                "the point to read as of must not be NULL",
                FUNC,
            ),
            DriftError::NotDriftRowType => ErrorReport::new(
                ERRCODE_WRONG_OBJECT_TYPE,
                "drift_as_of needs the row type of a DriftDB table",
                FUNC,
            )
            .set_hint("Pass a NULL of the table's row type, as in drift_as_of(NULL::users, 42)."),
            DriftError::WriteInPast => ErrorReport::new(
                ERRCODE_READ_ONLY_SQL_TRANSACTION,
                "cannot write DriftDB tables while driftdb.as_of is set",
                FUNC,
            )
            .set_hint("The past is read-only: RESET driftdb.as_of to write."),
            DriftError::RowLocked { relid } => ErrorReport::new(
                ERRCODE_LOCK_NOT_AVAILABLE,
                format!("could not obtain lock on row in relation \"{}\"", rel_name(relid)),
                FUNC,
            ),
            DriftError::OnConflictTarget { relid, keyless } => ErrorReport::new(
                ERRCODE_INVALID_COLUMN_REFERENCE,
                "there is no unique or exclusion constraint matching the ON CONFLICT specification",
                FUNC,
            )
            .set_detail(if keyless {
                format!("DriftDB table \"{}\" has no primary key.", rel_name(relid))
            } else {
                format!(
                    "The one unique constraint of DriftDB table \"{}\" is its primary key.",
                    rel_name(relid)
                )
            })
            .set_hint("Name exactly the primary key's columns, or no columns: ON CONFLICT DO NOTHING."),
            DriftError::OnConflictUpdate { relid } => ErrorReport::new(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                format!(
                    "ON CONFLICT DO UPDATE is not supported on DriftDB table \"{}\"",
                    rel_name(relid)
                ),
                FUNC,
            )
            .set_hint(
                "Upsert in two statements: UPDATE the row by its key, and when it updated no row, \
                 INSERT ... ON CONFLICT DO NOTHING (and UPDATE again if that inserted nothing).",
            ),
            DriftError::RowMove { from, to, why } => ErrorReport::new(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                if to == pg_sys::InvalidOid {
                    format!(
                        "cannot move a row out of DriftDB partition \"{}\"",
                        rel_name(from)
                    )
                } else {
                    format!(
                        "cannot move a row from DriftDB partition \"{}\" to partition \"{}\"",
                        rel_name(from),
                        rel_name(to)
                    )
                },
                FUNC,
            )
            .set_detail(format!("DriftDB cannot move it as heap would: {why}."))
            .set_hint("DELETE the row and INSERT it through the partitioned table, in one transaction."),
            DriftError::NoExecute { funcid } => {
                // SAFETY: a catalog lookup of an existing function, inside a transaction.
                let name = unsafe {
                    let n = pg_sys::get_func_name(funcid);
                    if n.is_null() {
                        format!("with OID {}", funcid.to_u32())
                    } else {
                        std::ffi::CStr::from_ptr(n).to_string_lossy().into_owned()
                    }
                };
                ErrorReport::new(
                    ERRCODE_INSUFFICIENT_PRIVILEGE,
                    format!("permission denied for function {name}"),
                    FUNC,
                )
            }
            DriftError::PastThroughOtherRole { relid } => ErrorReport::new(
                ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("permission denied to read the past of table {}", rel_name(relid)),
                FUNC,
            )
            .set_detail(
                "driftdb.as_of is set, and the table is read with another role's privileges \
                 (a view's owner's). Reading a table's past needs SELECT on the table itself.",
            )
            .set_hint("RESET driftdb.as_of to read the view in the present."),
            DriftError::EmptyPoint => ErrorReport::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                "the point to read as of must be a seq or a timestamp, not an empty string",
                FUNC,
            ),
            DriftError::LockInPast => ErrorReport::new(
                ERRCODE_READ_ONLY_SQL_TRANSACTION,
                "cannot lock rows of DriftDB tables while driftdb.as_of is set",
                FUNC,
            )
            .set_hint("The past is read-only: RESET driftdb.as_of to lock rows."),
            DriftError::DuplicateKey { relid, key } => {
                let detail = crate::table::describe_key(relid, &key);
                ErrorReport::new(
                    ERRCODE_UNIQUE_VIOLATION,
                    format!(
                        "duplicate key value violates the primary key of \"{}\"",
                        rel_name(relid)
                    ),
                    FUNC,
                )
                .set_detail(format!("Key {detail} already exists."))
            }
            DriftError::ConcurrentChange { relid, key } => {
                let detail = crate::table::describe_key(relid, &key);
                ErrorReport::new(
                    ERRCODE_T_R_SERIALIZATION_FAILURE,
                    "could not serialize access due to concurrent update",
                    FUNC,
                )
                .set_detail(format!(
                    "Row {detail} of \"{}\" was changed or deleted by another transaction.",
                    rel_name(relid)
                ))
            }
            DriftError::FateForgotten { xid } => ErrorReport::new(
                ERRCODE_DATA_CORRUPTED,
                format!(
                    "the fate of transaction {xid} is no longer known: DriftDB has not \
                     recorded it and the commit log has been truncated past it"
                ),
                FUNC,
            )
            .set_hint(
                "DriftDB's fates worker records each transaction's fate and holds back \
                 freezing until it has; check that it runs (drift_health(), the server log).",
            ),
            DriftError::PrepareWithWrites => ErrorReport::new(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                "cannot PREPARE a transaction that has written to DriftDB tables",
                FUNC,
            ),
            DriftError::PrepareWithDdl => ErrorReport::new(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                "cannot PREPARE a transaction that created or dropped a DriftDB index or dropped DriftDB tables",
                FUNC,
            )
            .set_detail("DriftDB applies these when the transaction commits in this session, which COMMIT PREPARED would not."),
            DriftError::Serializable => ErrorReport::new(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                "DriftDB tables do not support SERIALIZABLE transactions",
                FUNC,
            )
            .set_hint(
                "Use REPEATABLE READ or READ COMMITTED. DriftDB does not take the predicate \
                 locks SERIALIZABLE needs, and does not pretend to.",
            ),
            DriftError::TooManyTargetRows => ErrorReport::new(
                ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                "too many rows in one UPDATE or DELETE of a DriftDB table",
                FUNC,
            )
            .set_detail("One statement can change at most 2147483648 rows."),
            DriftError::CorruptValue { column, detail } => ErrorReport::new(
                ERRCODE_DATA_CORRUPTED,
                format!("stored value of column \"{column}\" is damaged"),
                FUNC,
            )
            .set_detail(detail),
            DriftError::SchemaChange {
                relid,
                message,
                detail,
                hint,
            } => ErrorReport::new(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                message.replace("{table}", &format!("DriftDB table \"{}\"", rel_name(relid))),
                FUNC,
            )
            .set_detail(detail)
            .set_hint(hint),
            DriftError::KeyColumnDrop { relid, column } => ErrorReport::new(
                ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
                format!(
                    "cannot drop column \"{column}\": it is part of the primary key of DriftDB table \"{}\"",
                    rel_name(relid)
                ),
                FUNC,
            )
            .set_detail("Every event of the table is stored under its key.")
            .set_hint(
                "To key the rows differently, create a new table and copy the rows with \
                 INSERT ... SELECT.",
            ),
            DriftError::ImportTargetNotEmpty { relid, why } => ErrorReport::new(
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "cannot import into DriftDB table \"{}\": {why}",
                    rel_name(relid)
                ),
                FUNC,
            )
            .set_hint("Import into a new, empty table."),
            DriftError::BadImport { detail } => ErrorReport::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                "the events to import are not a valid DriftDB history",
                FUNC,
            )
            .set_detail(detail),
            DriftError::BadDigest { text, why } => ErrorReport::new(
                ERRCODE_INVALID_TEXT_REPRESENTATION,
                format!("invalid input syntax for a DriftDB digest: \"{text}\""),
                FUNC,
            )
            .set_detail(format!("{}.", capitalized(why)))
            .set_hint(
                "A digest reads driftdb-digest:v1:<tree size>:<last seq>:<commit time>:<root \
                 as 64 lowercase hex digits>, as drift_digest() returns it.",
            ),
            DriftError::BadProof { kind, why } => ErrorReport::new(
                ERRCODE_INVALID_BINARY_REPRESENTATION,
                format!("invalid DriftDB {kind}"),
                FUNC,
            )
            .set_detail(format!("{}.", capitalized(why))),
            DriftError::LedgerRequest { message, detail } => {
                ErrorReport::new(ERRCODE_INVALID_PARAMETER_VALUE, message, FUNC).set_detail(detail)
            }
            DriftError::ProofRevealsTable { table, relid, seq } => ErrorReport::new(
                ERRCODE_INSUFFICIENT_PRIVILEGE,
                match relid {
                    Some(r) => format!("permission denied for table {}", rel_name(r)),
                    None => format!("permission denied for DriftDB table {table}"),
                },
                FUNC,
            )
            .set_detail(match relid {
                Some(r) => format!(
                    "The transaction of seq {seq} also wrote \"{}\": its proof holds the keys of \
                     those rows, so it needs SELECT on every table the transaction wrote.",
                    rel_name(r)
                ),
                None => format!(
                    "The transaction of seq {seq} also wrote DriftDB table {table}, which no \
                     longer exists: only a superuser may see its keys in the proof."
                ),
            }),
            DriftError::Engine(e) => engine_report(e),
            DriftError::Internal(what) => {
                ErrorReport::new(ERRCODE_INTERNAL_ERROR, format!("driftdb: {what}"), FUNC)
            }
        };
        report.report(PgLogLevel::ERROR);
        unreachable!("an ERROR report does not return")
    }
}

/// `why` with its first letter in upper case, for a detail sentence.
fn capitalized(why: &str) -> String {
    let mut c = why.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn engine_report(e: driftdb_storage::Error) -> ErrorReport {
    use driftdb_storage::Error as E;
    use PgSqlErrorCode::*;
    match e {
        E::Corruption {
            file,
            offset,
            detail,
        } => ErrorReport::new(
            ERRCODE_DATA_CORRUPTED,
            format!(
                "DriftDB file \"{}\" is damaged at offset {offset}",
                file.display()
            ),
            FUNC,
        )
        .set_detail(detail),
        E::IoAt { ref source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
            ErrorReport::new(
                ERRCODE_DISK_FULL,
                format!("DriftDB cannot write: {e}"),
                FUNC,
            )
        }
        E::IoAt { .. } | E::Io(_) | E::Broken(_) => {
            ErrorReport::new(ERRCODE_IO_ERROR, e.to_string(), FUNC)
        }
        E::ReadOnly => ErrorReport::new(
            ERRCODE_READ_ONLY_SQL_TRANSACTION,
            "DriftDB's files are read-only during recovery (on a standby)",
            FUNC,
        ),
        E::TooLarge(what) => ErrorReport::new(
            ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("too large for DriftDB: {what}"),
            FUNC,
        ),
        other => ErrorReport::new(ERRCODE_INTERNAL_ERROR, format!("driftdb: {other}"), FUNC),
    }
}
