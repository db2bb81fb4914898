//! `SET driftdb.as_of`: while set (to a seq or a timestamp), every read of a DriftDB table
//! in the session sees that one point in the past, so joins, views and CTEs across tables
//! are consistent; writes to DriftDB tables are refused. Empty turns it off. `SET LOCAL`
//! works, as for any setting.

use crate::error::DriftError;
use crate::timetravel::{check_seq, seq_at_table};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::{CStr, CString};

static AS_OF: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

thread_local! {
    /// The role that set the setting's current value (kept with the value as its GUC
    /// `extra`, so that a value restored at the end of a function or subtransaction comes
    /// back with its role).
    static SETTER: std::cell::Cell<pg_sys::Oid> = const { std::cell::Cell::new(pg_sys::InvalidOid) };
}

/// What the setting says, parsed.
enum Point {
    Seq(i64),
    Time(i64),
}

/// Parses a value: a non-negative integer is a seq, anything else must be a timestamptz.
/// `None` for the empty string (off). Errors raise as Postgres errors.
fn parse(value: &str) -> Option<Point> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if let Ok(seq) = v.parse::<i64>() {
        return Some(Point::Seq(seq));
    }
    let c = CString::new(v).unwrap_or_default();
    // SAFETY: timestamptz_in on a NUL-terminated string; a bad value raises an ERROR.
    let ts = unsafe {
        pg_sys::OidFunctionCall3Coll(
            pg_sys::Oid::from(pg_sys::F_TIMESTAMPTZ_IN),
            pg_sys::InvalidOid,
            pg_sys::Datum::from(c.as_ptr()),
            pg_sys::Datum::from(pg_sys::InvalidOid),
            pg_sys::Datum::from(-1i32),
        )
    };
    Some(Point::Time(ts.value() as i64))
}

/// The seq that `value` names for a read of `table`, by the rule of this setting: an
/// integer is a seq, anything else must be a timestamptz (in the session's DateStyle and
/// TimeZone). Used by `drift_as_of(t, text)`, where an empty value is no point at all.
pub fn seq_of_text(table: driftdb_storage::TableId, value: &str) -> u64 {
    match parse(value) {
        Some(Point::Seq(s)) => check_seq(table, s),
        Some(Point::Time(t)) => seq_at_table(table, t),
        None => DriftError::EmptyPoint.report(),
    }
}

/// Rejects values that are neither empty, a seq, nor a timestamp, at SET time, and keeps
/// the role that sets the value with it.
///
/// # Safety
/// Only Postgres calls this, as the check hook of `driftdb.as_of`, with the proposed value
/// and its `extra` slot.
#[pg_guard]
unsafe extern "C-unwind" fn check_as_of(
    newval: *mut *mut std::ffi::c_char,
    extra: *mut *mut std::ffi::c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: Postgres calls a string GUC's check hook with valid pointers to the proposed
    // value (itself null or a NUL-terminated string, checked) and to the `extra` slot,
    // which the hook may set to memory Postgres frees later: guc_extra allocates it as
    // Postgres expects (null checked) for one Oid, written before it is handed over. A
    // value that timestamptz_in refuses raises an ERROR inside the PgTryBuilder, which
    // turns it into `false`: the input function holds no lock, buffer or other resource
    // when it fails.
    unsafe {
        if newval.is_null() || (*newval).is_null() {
            return true;
        }
        let value = CStr::from_ptr(*newval).to_string_lossy().into_owned();
        let valid = PgTryBuilder::new(|| match parse(&value) {
            Some(Point::Seq(s)) => s >= 0,
            _ => true,
        })
        .catch_others(|_| false)
        .execute();
        if !valid {
            return false;
        }
        let setter =
            crate::pg::compat::guc_extra(std::mem::size_of::<pg_sys::Oid>()) as *mut pg_sys::Oid;
        if setter.is_null() {
            return false;
        }
        *setter = pg_sys::GetUserId();
        *extra = setter.cast();
        true
    }
}

/// Remembers who set the value now in force.
///
/// # Safety
/// Only Postgres calls this, as the assign hook of `driftdb.as_of`, with the value in force
/// and the `extra` its check hook made for it (or null).
#[pg_guard]
unsafe extern "C-unwind" fn assign_as_of(
    _newval: *const std::ffi::c_char,
    extra: *mut std::ffi::c_void,
) {
    // SAFETY: `extra` is null or the Oid the check hook allocated for this value.
    let setter = unsafe { (extra as *const pg_sys::Oid).as_ref() }.copied();
    SETTER.with(|s| s.set(setter.unwrap_or(pg_sys::InvalidOid)));
}

/// Whether the setting applies to the code running now. Inside a SECURITY DEFINER
/// function (any code running as another role than the session's, as Postgres marks it),
/// a point that another role set does not: that code reads the present, unless it set
/// the point itself (a `SET driftdb.as_of` clause of the function, or a SET in its body).
fn applies_here() -> bool {
    let (mut user, mut context) = (pg_sys::InvalidOid, 0);
    // SAFETY: reads the backend's current user and security context.
    unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut context) };
    context & pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32 == 0 || SETTER.with(|s| s.get()) == user
}

pub fn init() {
    // SAFETY: the check hook is guarded and only parses its argument.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"driftdb.as_of",
            c"Reads every DriftDB table as of this seq or timestamp ('' for the present).",
            c"While set, DriftDB tables are read-only and every read sees that one point.",
            &AS_OF,
            GucContext::Userset,
            GucFlags::default(),
            Some(check_as_of),
            Some(assign_as_of),
            None,
        );
    }
}

/// The seq a read of `table` sees while `driftdb.as_of` is set, `None` when it is not.
pub fn past_point(table: driftdb_storage::TableId) -> Option<u64> {
    let value = AS_OF.get()?;
    let point = parse(&value.to_string_lossy())?;
    if !applies_here() {
        return None;
    }
    match point {
        Point::Seq(s) => Some(check_seq(table, s)),
        Point::Time(t) => Some(seq_at_table(table, t)),
    }
}

/// Writes are refused while the session reads the past.
pub fn refuse_writes() {
    if let Some(value) = AS_OF.get() {
        if !value.to_string_lossy().trim().is_empty() && applies_here() {
            DriftError::WriteInPast.report()
        }
    }
}
