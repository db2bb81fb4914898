//! The foreign data wrapper `driftdb`: its handler, its validator, and the SQL that creates
//! the wrapper and the default server `drift`.

mod analyze;
pub mod asof_call;
mod history_call;
pub mod modify;
pub mod options;
pub mod plan;
pub mod pushdown;
mod scan;

use pgrx::datum::Internal;
use pgrx::prelude::*;

/// Returns the wrapper's callback table.
#[pg_extern(sql = "
CREATE FUNCTION driftdb_fdw_handler() RETURNS fdw_handler
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
")]
fn driftdb_fdw_handler() -> Internal {
    // SAFETY: makeNode-style allocation of a zeroed FdwRoutine in the current memory
    // context, which is what Postgres expects a handler to return.
    let mut r = unsafe { PgBox::<pg_sys::FdwRoutine>::alloc_node(pg_sys::NodeTag::T_FdwRoutine) };
    r.GetForeignRelSize = Some(plan::get_foreign_rel_size);
    r.GetForeignPaths = Some(plan::get_foreign_paths);
    r.GetForeignPlan = Some(plan::get_foreign_plan);
    r.BeginForeignScan = Some(scan::begin_foreign_scan);
    r.IterateForeignScan = Some(scan::iterate_foreign_scan);
    r.ReScanForeignScan = Some(scan::rescan_foreign_scan);
    r.EndForeignScan = Some(scan::end_foreign_scan);
    r.ExplainForeignScan = Some(plan::explain_foreign_scan);
    r.AddForeignUpdateTargets = Some(modify::add_foreign_update_targets);
    r.BeginForeignModify = Some(modify::begin_foreign_modify);
    r.ExecForeignInsert = Some(modify::exec_foreign_insert);
    r.ExecForeignUpdate = Some(modify::exec_foreign_update);
    r.ExecForeignDelete = Some(modify::exec_foreign_delete);
    r.BeginForeignInsert = Some(modify::begin_foreign_insert);
    r.AnalyzeForeignTable = Some(analyze::analyze_foreign_table);
    r.GetForeignRowMarkType = Some(plan::get_foreign_row_mark_type);
    r.RefetchForeignRow = Some(scan::refetch_foreign_row);
    Internal::from(Some(r.into_pg().into()))
}

/// Checks the options given to the wrapper, a server, a user mapping, a foreign table or
/// a column. The options arrive as a `text[]` of `name=value`, or as a zero datum when
/// there are none (so the argument is taken as a raw datum).
#[pg_extern(sql = "
CREATE FUNCTION driftdb_fdw_validator(options text[], catalog oid) RETURNS void
    SET search_path = pg_catalog, pg_temp
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
-- The extension's schema must be one that no role but superusers can create objects in:
-- a role that could would be able to plant objects DriftDB's SQL (or a later update
-- script's CREATE OR REPLACE) meets. PUBLIC, pg_database_owner standing for a database
-- owner who is not a superuser, or any other role that is not one, is refused.
DO $driftdb_schema_check$
DECLARE
    writers text;
BEGIN
    SELECT pg_catalog.string_agg(DISTINCT CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0
                                               THEN 'PUBLIC'
                                               ELSE pg_catalog.quote_ident(r.rolname) END,
                                 ', ')
      INTO writers
      FROM pg_catalog.pg_namespace n
     CROSS JOIN LATERAL pg_catalog.aclexplode(
               COALESCE(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) a
      LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
     WHERE n.nspname OPERATOR(pg_catalog.=) '@extschema@'
       AND a.privilege_type OPERATOR(pg_catalog.=) 'CREATE'
       AND (a.grantee OPERATOR(pg_catalog.=) 0
            OR NOT COALESCE(r.rolsuper, false)
               AND NOT (r.rolname OPERATOR(pg_catalog.=) 'pg_database_owner'
                        AND (SELECT u.rolsuper
                               FROM pg_catalog.pg_database d
                               JOIN pg_catalog.pg_roles u ON u.oid OPERATOR(pg_catalog.=) d.datdba
                              WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())));
    IF writers IS NOT NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'insufficient_privilege',
            MESSAGE = pg_catalog.format('DriftDB cannot be installed in schema %I, where roles that are not superusers can create objects (%s)', '@extschema@', writers),
            HINT = 'Create the extension in a schema of its own (CREATE SCHEMA driftdb; CREATE EXTENSION driftdb SCHEMA driftdb), or revoke CREATE on this schema from those roles.';
    END IF;
END
$driftdb_schema_check$;

CREATE FOREIGN DATA WRAPPER driftdb
    HANDLER @extschema@.driftdb_fdw_handler
    VALIDATOR @extschema@.driftdb_fdw_validator;
COMMENT ON FOREIGN DATA WRAPPER driftdb IS 'DriftDB temporal storage';
CREATE SERVER drift FOREIGN DATA WRAPPER driftdb;
COMMENT ON SERVER drift IS 'The default DriftDB server';
"#,
    name = "create_wrapper_and_server",
    requires = [driftdb_fdw_handler, driftdb_fdw_validator],
);
