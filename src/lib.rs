//! DriftDB: temporal storage for PostgreSQL.
//!
//! This crate is the thin Postgres layer. Storage lives in the `driftdb-storage` crate;
//! everything here adapts Postgres callbacks to it. All `unsafe` and all `pg_sys` use stays
//! in this crate, and every error reaches Postgres through [`error::DriftError::report`].
//! The raw Postgres interface is being gathered in [`pg`], whose documentation gives the
//! rules every `unsafe` block and `unsafe fn` of the crate follows. Clippy enforces the
//! `// SAFETY:` comment on every `unsafe` block; `missing_safety_doc` is denied too, but it
//! covers only `unsafe fn`s visible outside the crate (DriftDB has none), so the `# Safety`
//! section of the crate's own is kept by review.

#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(clippy::missing_safety_doc)]

use pgrx::prelude::*;

mod admin;
mod asof;
mod datum;
mod drop;
mod engine;
mod error;
mod export;
mod fdw;
mod health;
mod history;
mod ledger;
mod pg;
mod rowlock;
mod schema;
mod shmem;
mod stats;
mod syncguard;
mod table;
mod timetravel;
mod txn;
mod verify;
mod wal;
mod worker;

::pgrx::pg_module_magic!(name, version);

/// Called when the library is loaded. DriftDB must be loaded by the postmaster
/// (`shared_preload_libraries`) because it needs shared memory for its append lock and
/// seq high-water mark, and a WAL resource manager, both of which can only be set up then.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: a plain read of a backend-global flag that Postgres sets while it loads
    // shared_preload_libraries; nothing else writes it concurrently in this process.
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    if !preloading {
        error::DriftError::NotPreloaded.report();
    }
    shmem::init();
    wal::init();
    worker::init();
    syncguard::init();
    health::init();
    txn::init();
    drop::init();
    asof::init();
    fdw::asof_call::init();
    stats::init();
    schema::init();
    export::init();
    rowlock::init();
    ledger::init();
}

/// The version of the extension and of the on-disk format it writes.
#[pg_extern(immutable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn drift_version() -> String {
    format!(
        "driftdb {} (storage format {})",
        env!("CARGO_PKG_VERSION"),
        driftdb_storage::FORMAT_VERSION
    )
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn version_names_extension_and_format() {
        let v = Spi::get_one::<String>("SELECT drift_version()")
            .unwrap()
            .unwrap();
        assert!(
            v.starts_with(&format!("driftdb {} ", env!("CARGO_PKG_VERSION"))),
            "{v}"
        );
        assert!(v.ends_with(&format!(
            "(storage format {})",
            driftdb_storage::FORMAT_VERSION
        )));
    }

    #[pg_test]
    fn extension_creates_wrapper_and_server() {
        let handler = Spi::get_one::<String>(
            "SELECT fdwhandler::regproc::text FROM pg_foreign_data_wrapper WHERE fdwname = 'driftdb'",
        )
        .unwrap();
        assert_eq!(handler.as_deref(), Some("driftdb_fdw_handler"));
        let server = Spi::get_one::<String>(
            "SELECT w.fdwname::text FROM pg_foreign_server s \
             JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw WHERE s.srvname = 'drift'",
        )
        .unwrap();
        assert_eq!(server.as_deref(), Some("driftdb"));
    }

    /// A scan's plan data reads back as written, through a copy of the plan's list (plans
    /// are cached and copied); a list that is not one is an internal error, never a guess.
    #[pg_test]
    fn scan_plan_data_round_trips() {
        use crate::fdw::asof_call::Point;
        use crate::fdw::plan::ScanPrivate;
        use crate::fdw::pushdown::Access;
        for needed in [None, Some(vec![]), Some(vec![1, 3, 7])] {
            let p = ScanPrivate {
                is_target: true,
                access: Access::IndexRange,
                column: 3,
                flags: 5,
                point: Point::Time,
                needed,
                as_of_function: pg_sys::Oid::from(4_000_000_000u32),
                prelock: Some(crate::rowlock::Strength::NoKeyUpdate),
            };
            // SAFETY: a list made here, copied as the plan cache copies plans.
            let back = unsafe {
                let list = p.to_list();
                ScanPrivate::from_list(pg_sys::copyObjectImpl(list.cast()).cast())
            };
            assert_eq!(back, p);
            assert_eq!(
                back.needed_flags(7),
                back.needed
                    .as_ref()
                    .map(|a| (1..=7).map(|i| a.contains(&i)).collect())
            );
        }
    }

    #[pg_test(error = "driftdb: a DriftDB scan plan holds [1, 2, 3]")]
    fn a_scan_plan_list_of_the_wrong_shape_is_refused() {
        let mut list = pgrx::PgList::<pg_sys::Integer>::new();
        for i in [1, 2, 3] {
            // SAFETY: a node allocated in the current memory context.
            list.push(unsafe { pg_sys::makeInteger(i) });
        }
        // SAFETY: a list of Integer nodes, as fdw_private holds.
        unsafe { crate::fdw::plan::ScanPrivate::from_list(list.into_pg()) };
    }

    #[pg_test(error = "invalid option \"colour\"")]
    fn validator_rejects_unknown_table_option() {
        Spi::run("CREATE FOREIGN TABLE t_bad (id int) SERVER drift OPTIONS (colour 'blue')")
            .unwrap();
    }

    #[pg_test(error = "option \"primary_key\" is only valid on a foreign table, not on a server")]
    fn validator_rejects_misplaced_option() {
        Spi::run("CREATE SERVER drift2 FOREIGN DATA WRAPPER driftdb OPTIONS (primary_key 'id')")
            .unwrap();
    }

    #[pg_test]
    fn validator_accepts_primary_key() {
        Spi::run(
            "CREATE FOREIGN TABLE t_ok (id int, b int) SERVER drift OPTIONS (primary_key 'id,b')",
        )
        .unwrap();
        let opts = Spi::get_one::<Vec<String>>(
            "SELECT ftoptions::text[] FROM pg_foreign_table WHERE ftrelid = 't_ok'::regclass",
        )
        .unwrap()
        .unwrap();
        assert_eq!(opts, vec!["primary_key=id,b".to_string()]);
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'driftdb'"]
    }
}
