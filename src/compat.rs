//! The few places where Postgres versions differ for DriftDB, in one file.

use pgrx::pg_sys;

/// `create_foreignscan_path` gained `fdw_restrictinfo` in 17 and `disabled_nodes` in 18.
///
/// # Safety
/// Planner pointers must be the ones Postgres passed to GetForeignPaths.
pub unsafe fn foreignscan_path(
    root: *mut pg_sys::PlannerInfo,
    rel: *mut pg_sys::RelOptInfo,
    rows: f64,
    startup: f64,
    total: f64,
    fdw_private: *mut pg_sys::List,
) -> *mut pg_sys::ForeignPath {
    unsafe {
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        return pg_sys::create_foreignscan_path(
            root,
            rel,
            std::ptr::null_mut(),
            rows,
            startup,
            total,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            fdw_private,
        );
        #[cfg(feature = "pg17")]
        return pg_sys::create_foreignscan_path(
            root,
            rel,
            std::ptr::null_mut(),
            rows,
            startup,
            total,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            fdw_private,
        );
        #[cfg(feature = "pg18")]
        return pg_sys::create_foreignscan_path(
            root,
            rel,
            std::ptr::null_mut(),
            rows,
            0,
            startup,
            total,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            fdw_private,
        );
    }
}

/// Whether the current user owns relation `relid` (superusers own everything).
/// `pg_class_ownercheck` became `object_ownercheck` in 16.
pub fn owns_relation(relid: pg_sys::Oid) -> bool {
    // SAFETY: a catalog lookup inside a transaction.
    unsafe {
        #[cfg(feature = "pg15")]
        return pg_sys::pg_class_ownercheck(relid, pg_sys::GetUserId());
        #[cfg(not(feature = "pg15"))]
        return pg_sys::object_ownercheck(pg_sys::RelationRelationId, relid, pg_sys::GetUserId());
    }
}

/// Makes the current (sub)transaction's xid durable before DriftDB frames name it: writes
/// a transactional logical message (prefix `driftdb`, no effect on redo) and flushes the
/// WAL to it. Crash recovery advances the next xid past every xid it replays, so after a
/// crash no later transaction can be given this xid and adopt frames its transaction left
/// behind. `LogLogicalMessage` gained a `flush` argument in 17.
pub fn make_xid_durable(what: &std::ffi::CStr) {
    use std::ffi::c_char;
    unsafe extern "C-unwind" {
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        fn LogLogicalMessage(
            prefix: *const c_char,
            message: *const c_char,
            size: usize,
            transactional: bool,
        ) -> pg_sys::XLogRecPtr;
        #[cfg(not(any(feature = "pg15", feature = "pg16")))]
        fn LogLogicalMessage(
            prefix: *const c_char,
            message: *const c_char,
            size: usize,
            transactional: bool,
            flush: bool,
        ) -> pg_sys::XLogRecPtr;
    }
    // SAFETY: LogLogicalMessage (replication/message.h) copies the NUL-terminated prefix
    // and `size` bytes of the message into a WAL record; an ERROR it raises is turned into
    // a Rust panic at the boundary. XLogFlush takes the LSN it returned.
    unsafe {
        let bytes = what.to_bytes();
        let lsn = pgrx::pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
            #[cfg(any(feature = "pg15", feature = "pg16"))]
            return LogLogicalMessage(c"driftdb".as_ptr(), what.as_ptr(), bytes.len(), true);
            #[cfg(not(any(feature = "pg15", feature = "pg16")))]
            return LogLogicalMessage(c"driftdb".as_ptr(), what.as_ptr(), bytes.len(), true, false);
        });
        pg_sys::XLogFlush(lsn);
    }
}
