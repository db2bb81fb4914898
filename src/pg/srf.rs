//! Set-returning functions written against Postgres' V1 calling convention: their info
//! records ([`function_info_v1!`]), their materialised result set ([`materialize`]), and
//! the datums their rows are made of.
//!
//! Why these functions (`drift_history`, `drift_history_key`, `drift_diff`, `drift_export`,
//! `drift_verify`, the three `drift_as_of`) are not pgrx's `TableIterator` or
//! `SetOfIterator`: those use the value-per-call protocol, where a boxed iterator kept in
//! the call's multi-call memory context yields one row per call, each row a tuple of Rust
//! values of types fixed at compile time. `drift_history` and `drift_export` stream events
//! from the engine's history iterator, which borrows the backend's store for the length of
//! one `engine::with_store` call, into the tuplestore, resetting a per-row memory context
//! after each row, so memory stays flat over a history of any length; an iterator kept
//! between calls could not hold that borrow, and collecting the events first would hold
//! the whole history in memory. `drift_as_of` returns `SETOF anyelement`, whose row type
//! (the table's, dropped columns included) is known only at the call. The rows of
//! `drift_history`, `drift_history_key` and `drift_diff` carry jsonb that Postgres itself
//! renders (`row_to_json` of a tuple of the table's row type), a datum no Rust value
//! converts to. `drift_verify` would fit (a few rows of plain types, no store held), but
//! Postgres records each C function's symbol in `pg_proc` (`AS 'MODULE_PATHNAME',
//! 'drift_verify'`) and `#[pg_extern]` exports `drift_verify_wrapper` instead, so a
//! database with the extension installed would no longer find it; it stays as written.

use pgrx::pg_sys;
use std::ffi::{CStr, CString};

/// Emits the info record Postgres looks up before it calls a C function of the V1
/// convention (`PG_FUNCTION_INFO_V1`): `pg_finfo_<name>`, exported unmangled, for the
/// hand-written `#[pg_guard] #[unsafe(no_mangle)] extern "C-unwind" fn <name>(fcinfo)`
/// (pgrx's `#[pg_extern]` emits its own).
macro_rules! function_info_v1 {
    ($name:ident) => {
        const _: () = {
            #[unsafe(export_name = concat!("pg_finfo_", stringify!($name)))]
            extern "C" fn finfo() -> &'static ::pgrx::pg_sys::Pg_finfo_record {
                const V1: ::pgrx::pg_sys::Pg_finfo_record =
                    ::pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
                &V1
            }
        };
    };
}
pub(crate) use function_info_v1;

/// Sets up the result set of a set-returning function in materialize mode
/// (`InitMaterializedSRF`); returns the result store and its row descriptor, which live
/// in the query's memory context (`ecxt_per_query_memory`) until the query ends. Rows go
/// into the store with `tuplestore_putvalues`, which copies them into the store's memory.
///
/// # Safety
/// `fcinfo` must be the `FunctionCallInfo` Postgres passed to the running V1 function,
/// declared to return a set of a composite type (`RETURNS TABLE`, or `SETOF` a row type
/// that the call resolves). Postgres raises an ERROR when the caller cannot take a
/// materialised set or the result type is not composite.
pub unsafe fn materialize(
    fcinfo: pg_sys::FunctionCallInfo,
) -> (*mut pg_sys::Tuplestorestate, pg_sys::TupleDesc) {
    // SAFETY: per the caller, `fcinfo` is the live call of a set-returning function; after
    // InitMaterializedSRF returns (it raises an ERROR otherwise) `resultinfo` is the
    // ReturnSetInfo it filled, with setResult and setDesc set.
    unsafe {
        pg_sys::InitMaterializedSRF(fcinfo, 0);
        let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        ((*rsinfo).setResult, (*rsinfo).setDesc)
    }
}

/// A `text` datum of `s`, allocated in the current memory context. A string with a NUL
/// byte is a panic (an internal error): DriftDB only passes its own words and messages.
pub fn text_datum(s: &str) -> pg_sys::Datum {
    let c = CString::new(s).expect("no NUL");
    // SAFETY: cstring_to_text copies a NUL-terminated string, alive for the call, into a
    // new varlena in the current memory context.
    unsafe { pg_sys::Datum::from(pg_sys::cstring_to_text(c.as_ptr())) }
}

/// A `name` datum of `s` (a role name; one with a NUL is empty, as no role can have it),
/// truncated to `NAMEDATALEN - 1` bytes as `namein` does, in the current memory context.
pub fn name_datum(s: &str) -> pg_sys::Datum {
    let c = CString::new(s).unwrap_or_default();
    // SAFETY: namein reads the NUL-terminated string, alive for the call, and returns a
    // palloc'd NameData.
    unsafe {
        pg_sys::OidFunctionCall1Coll(
            pg_sys::Oid::from(pg_sys::F_NAMEIN),
            pg_sys::InvalidOid,
            pg_sys::Datum::from(c.as_ptr()),
        )
    }
}

/// A `text[]` datum of `items`, in the current memory context. An item with a NUL byte is
/// a panic (an internal error): the items are column names, which cannot hold one.
pub fn text_array(items: &[String]) -> pg_sys::Datum {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    let literal = CString::new(format!("{{{}}}", quoted.join(","))).expect("no NUL in names");
    // SAFETY: array_in parses the NUL-terminated literal, alive for the call, as text[]
    // (element type TEXTOID, no typmod) and raises an ERROR on a malformed one; the
    // quoting above escapes every backslash and double quote of the items.
    unsafe {
        pg_sys::OidFunctionCall3Coll(
            pg_sys::Oid::from(pg_sys::F_ARRAY_IN),
            pg_sys::InvalidOid,
            pg_sys::Datum::from(literal.as_ptr()),
            pg_sys::Datum::from(pg_sys::TEXTOID),
            pg_sys::Datum::from(-1i32),
        )
    }
}

/// A `jsonb` datum of the JSON text `text`, in the current memory context (`jsonb_in`,
/// which raises an ERROR on text that is not JSON).
pub fn jsonb_from_cstr(text: &CStr) -> pg_sys::Datum {
    // SAFETY: jsonb_in reads the NUL-terminated string, borrowed for the call, and returns
    // a palloc'd jsonb or raises an ERROR.
    unsafe {
        pg_sys::OidFunctionCall1Coll(
            pg_sys::Oid::from(pg_sys::F_JSONB_IN),
            pg_sys::InvalidOid,
            pg_sys::Datum::from(text.as_ptr()),
        )
    }
}
