//! The foreign data wrapper `driftdb`: its handler, its validator, and the SQL that creates
//! the wrapper and the default server `drift`.

mod options;

use crate::error::DriftError;
use pgrx::datum::Internal;
use pgrx::prelude::*;

/// Returns the wrapper's callback table.
///
/// Reading and writing foreign tables is the next piece of work (issue 4). Until it lands,
/// planning a scan raises a clear `feature_not_supported` error instead of returning nothing,
/// and Postgres itself refuses INSERT/UPDATE/DELETE because no modify callbacks are set.
#[pg_extern(sql = "
CREATE FUNCTION driftdb_fdw_handler() RETURNS fdw_handler
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
")]
fn driftdb_fdw_handler() -> Internal {
    // SAFETY: makeNode-style allocation of a zeroed FdwRoutine in the current memory
    // context, which is what Postgres expects a handler to return (it copies it into the
    // relcache's context itself).
    let mut routine =
        unsafe { PgBox::<pg_sys::FdwRoutine>::alloc_node(pg_sys::NodeTag::T_FdwRoutine) };
    routine.GetForeignRelSize = Some(get_foreign_rel_size);
    Internal::from(Some(routine.into_pg().into()))
}

#[pg_guard]
unsafe extern "C-unwind" fn get_foreign_rel_size(
    _root: *mut pg_sys::PlannerInfo,
    _baserel: *mut pg_sys::RelOptInfo,
    _foreigntableid: pg_sys::Oid,
) {
    DriftError::NotImplemented {
        what: "reading DriftDB foreign tables",
    }
    .report()
}

/// Checks the options given to the wrapper, a server, a user mapping, a foreign table or
/// a column. The options arrive as a `text[]` of `name=value`, or as a zero datum when
/// there are none (so the argument is taken as `internal`-style raw datum).
#[pg_extern(sql = "
CREATE FUNCTION driftdb_fdw_validator(options text[], catalog oid) RETURNS void
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
")]
fn driftdb_fdw_validator(options: Internal, catalog: pg_sys::Oid) {
    let given: Vec<String> = match options.unwrap() {
        Some(datum) if !datum.is_null() => {
            // SAFETY: Postgres passes the options as a non-null text[] datum here.
            unsafe { Vec::<String>::from_datum(datum, false) }.unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let place = options::Place::from_catalog(catalog);
    for item in given {
        let (name, value) = item.split_once('=').unwrap_or((item.as_str(), ""));
        if let Err(e) = options::validate(place, name, value) {
            e.report();
        }
    }
}

extension_sql!(
    r#"
CREATE FOREIGN DATA WRAPPER driftdb
    HANDLER driftdb_fdw_handler
    VALIDATOR driftdb_fdw_validator;
COMMENT ON FOREIGN DATA WRAPPER driftdb IS 'DriftDB temporal storage';
CREATE SERVER drift FOREIGN DATA WRAPPER driftdb;
COMMENT ON SERVER drift IS 'The default DriftDB server';
"#,
    name = "create_wrapper_and_server",
    requires = [driftdb_fdw_handler, driftdb_fdw_validator],
);
