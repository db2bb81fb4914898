//! Figures for operators, every one measured: `drift_tables` (one row per DriftDB table the
//! caller may SELECT: its events, live rows, log and snapshot sizes, indexes) and
//! `drift_stats()` (the same in long form, plus counters of the work every backend of the
//! server did since it started).
//!
//! Each backend's engine counts its own work ([`driftdb_storage::Stats`]); after every call
//! into the engine the backend adds what grew since its last report to counters in shared
//! memory, so the server counters are the sum over all backends (DriftDB's fates worker
//! included), current to their last engine call. They start at zero when the server
//! starts. `drift_backend_stats()` shows the calling backend's own counts.

use crate::engine::{self, LatestFates};
use crate::table::TableInfo;
use crate::timetravel::stable_seq;
use driftdb_storage::{EventCount, Stats, TableId};
use pgrx::atomics::PgAtomic;
use pgrx::pg_shmem_init;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// How a server counter combines the figures of the backends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Combine {
    Sum,
    Max,
}

/// A server counter: its name, the engine figure it is made of, how backends combine.
type Counter = (&'static str, fn(&Stats) -> u64, Combine);

/// The server counters.
const COUNTERS: [Counter; 15] = [
    ("appends", |s| s.appends, Combine::Sum),
    ("groups", |s| s.groups, Combine::Sum),
    ("events_appended", |s| s.events, Combine::Sum),
    ("bytes_written", |s| s.bytes_written, Combine::Sum),
    ("fsyncs", |s| s.fsyncs, Combine::Sum),
    ("tail_events", |s| s.tail_events, Combine::Sum),
    ("replays", |s| s.replays, Combine::Sum),
    ("replayed_events", |s| s.replayed_events, Combine::Sum),
    ("longest_replay", |s| s.longest_replay, Combine::Max),
    ("replay_cache_hits", |s| s.replay_cache_hits, Combine::Sum),
    ("block_cache_hits", |s| s.block_cache_hits, Combine::Sum),
    ("block_cache_misses", |s| s.block_cache_misses, Combine::Sum),
    ("history_frames", |s| s.history_frames, Combine::Sum),
    (
        "journal_groups_read",
        |s| s.journal_groups_read,
        Combine::Sum,
    ),
    ("writer_recoveries", |s| s.writer_recoveries, Combine::Sum),
];

#[derive(Default)]
pub struct Shared {
    values: [AtomicU64; COUNTERS.len()],
}

// SAFETY: plain atomics, no pointers; every access goes through them.
unsafe impl PGRXSharedMemory for Shared {}

// SAFETY: the name is unique to DriftDB.
static SHARED: PgAtomic<Shared> = unsafe { PgAtomic::new(c"driftdb_stats") };

thread_local! {
    /// The engine figures this backend has added to the shared counters so far.
    static PUBLISHED: Cell<Stats> = Cell::new(Stats::default());
    /// Events counted per table, to continue from (the log before is never read again).
    static EVENT_COUNTS: RefCell<HashMap<TableId, EventCount>> = RefCell::new(HashMap::new());
}

/// Requests the shared memory; only valid while preloading (checked by the caller).
pub fn init() {
    pg_shmem_init!(SHARED);
}

/// Adds what this backend's engine counted since the last call to the server counters.
pub fn publish(now: Stats) {
    let before = PUBLISHED.with(|p| p.replace(now));
    let shared = SHARED.get();
    for (i, (_, figure, combine)) in COUNTERS.iter().enumerate() {
        let (n, b) = (figure(&now), figure(&before));
        match combine {
            Combine::Sum if n > b => {
                shared.values[i].fetch_add(n - b, Ordering::Relaxed);
            }
            Combine::Max if n > b => {
                shared.values[i].fetch_max(n, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// The server counters: `(name, value)`.
#[pg_extern(
    volatile,
    parallel_restricted,
    sql = "
CREATE FUNCTION drift_server_stats() RETURNS TABLE (name text, value bigint)
    VOLATILE PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION drift_server_stats() IS
    'Counters of the work every backend did since the server started, the journal''s size, and the sync worker''s rounds';
"
)]
fn drift_server_stats() -> TableIterator<'static, (name!(name, String), name!(value, i64))> {
    // Opening the store (and publishing this backend's figures) first.
    let (journal_bytes, journal_segments) = engine::with_store(|s| s.journal_files());
    let shared = SHARED.get();
    let mut rows: Vec<(String, i64)> = COUNTERS
        .iter()
        .enumerate()
        .map(|(i, (name, _, _))| {
            let v = shared.values[i].load(Ordering::Relaxed);
            (name.to_string(), v as i64)
        })
        .collect();
    rows.push(("journal_bytes".into(), journal_bytes as i64));
    rows.push(("journal_segments".into(), journal_segments as i64));
    // The sync worker: whether it guards commits now, its rounds and what they synced.
    let guard = *crate::syncguard::GUARD.share();
    rows.push(("sync_guard".into(), i64::from(crate::syncguard::active())));
    rows.push(("sync_rounds".into(), guard.rounds as i64));
    rows.push(("sync_round_files".into(), guard.files_synced as i64));
    TableIterator::new(rows)
}

/// This backend's own counters since it started (the work of this session), named as the
/// server counters.
#[pg_extern(
    volatile,
    parallel_restricted,
    sql = "
CREATE FUNCTION drift_backend_stats() RETURNS TABLE (name text, value bigint)
    VOLATILE PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION drift_backend_stats() IS
    'Counters of the work this backend did since it started';
"
)]
fn drift_backend_stats() -> TableIterator<'static, (name!(name, String), name!(value, i64))> {
    let mine = engine::with_store(|s| Ok(s.stats()));
    let rows: Vec<(String, i64)> = COUNTERS
        .iter()
        .map(|(name, figure, _)| (name.to_string(), figure(&mine) as i64))
        .collect();
    TableIterator::new(rows)
}

/// The DriftDB tables of this database the current role may SELECT, by OID.
fn visible_tables() -> Vec<pg_sys::Oid> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT c.oid FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_foreign_table ft ON ft.ftrelid = c.oid
               JOIN pg_catalog.pg_foreign_server s ON s.oid = ft.ftserver
               JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw
              WHERE w.fdwname = 'driftdb'
                AND pg_catalog.has_table_privilege(c.oid, 'SELECT')
              ORDER BY c.oid",
            None,
            &[],
        )?;
        rows.map(|r| r.get::<pg_sys::Oid>(1))
            .filter_map(|r| r.transpose())
            .collect::<Result<Vec<_>, _>>()
    })
    .unwrap_or_else(|e| crate::error::DriftError::Internal(format!("listing tables: {e}")).report())
}

/// relid, events, live rows, log bytes, segments, snapshot seq, bytes, raw and compressed
/// block bytes, index column names.
type TableRow = (
    pg_sys::Oid,
    i64,
    i64,
    i64,
    i32,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Vec<String>,
);

/// One table's figures as of the stable seq.
fn measure(relid: pg_sys::Oid, upto: u64) -> Option<TableRow> {
    // SAFETY: opens the relation under AccessShareLock (as a SELECT would, so it cannot be
    // dropped while it is measured) inside the running transaction; a table dropped since
    // it was listed is skipped.
    let info = unsafe {
        let rel = pg_sys::try_relation_open(relid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        if rel.is_null() {
            return None;
        }
        let info = TableInfo::from_relation(rel);
        pg_sys::relation_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        info
    };
    let earlier = EVENT_COUNTS.with(|c| c.borrow().get(&info.id).copied());
    let stats = engine::with_store(|s| {
        match s.table_stats(info.id, upto, &LatestFates, earlier) {
            // Nothing was ever written to it.
            Err(driftdb_storage::Error::NoSuchTable(_)) => Ok(None),
            other => other.map(Some),
        }
    });
    let Some(st) = stats else {
        return Some((relid, 0, 0, 0, 0, None, None, None, None, Vec::new()));
    };
    EVENT_COUNTS.with(|c| c.borrow_mut().insert(info.id, st.events));
    let names: Vec<String> = st
        .indexes
        .iter()
        .map(|id| match info.columns.iter().find(|c| c.id() == *id) {
            Some(c) if !c.dropped => c.name.clone(),
            _ => format!("#{id}"),
        })
        .collect();
    let snap = st.snapshot.as_ref();
    Some((
        relid,
        st.events.count as i64,
        st.live_rows as i64,
        st.log_bytes as i64,
        st.segments as i32,
        snap.map(|s| s.seq as i64),
        snap.map(|s| s.file_bytes as i64),
        snap.map(|s| s.raw_bytes as i64),
        snap.map(|s| s.compressed_bytes as i64),
        names,
    ))
}

/// One row per DriftDB table the current role may SELECT, measured as of the stable seq.
#[allow(clippy::type_complexity)]
#[pg_extern(
    volatile,
    parallel_restricted,
    sql = "
CREATE FUNCTION drift_table_stats() RETURNS TABLE (relid oid, events bigint, live_rows bigint,
        log_bytes bigint, segments int, snapshot_seq bigint, snapshot_bytes bigint,
        snapshot_raw_bytes bigint, snapshot_compressed_bytes bigint, indexes text[])
    VOLATILE PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION drift_table_stats() IS
    'Measurements of every DriftDB table the current role may SELECT (behind drift_tables)';
"
)]
fn drift_table_stats() -> TableIterator<
    'static,
    (
        name!(relid, pg_sys::Oid),
        name!(events, i64),
        name!(live_rows, i64),
        name!(log_bytes, i64),
        name!(segments, i32),
        name!(snapshot_seq, Option<i64>),
        name!(snapshot_bytes, Option<i64>),
        name!(snapshot_raw_bytes, Option<i64>),
        name!(snapshot_compressed_bytes, Option<i64>),
        name!(indexes, Vec<String>),
    ),
> {
    let upto = stable_seq();
    let rows: Vec<TableRow> = visible_tables()
        .into_iter()
        .filter_map(|relid| measure(relid, upto))
        .collect();
    TableIterator::new(rows)
}

extension_sql!(
    r#"
CREATE VIEW drift_tables AS
SELECT relid::pg_catalog.regclass AS table_name, events, live_rows, log_bytes, segments,
       snapshot_seq, snapshot_bytes, indexes,
       pg_catalog.round(snapshot_raw_bytes::pg_catalog.numeric
                        OPERATOR(pg_catalog./)
                        nullif(snapshot_compressed_bytes, 0::pg_catalog.int8)::pg_catalog.numeric,
                        2) AS compression_ratio
  FROM @extschema@.drift_table_stats();
COMMENT ON VIEW drift_tables IS
    'One row per DriftDB table the current role may SELECT, measured as of drift_current_seq()';
-- Everyone may read it: each role sees only the tables it may SELECT (the function checks
-- the calling role's privileges, not the view owner's).
GRANT SELECT ON drift_tables TO PUBLIC;

CREATE FUNCTION drift_stats()
    RETURNS TABLE (scope text, table_name regclass, name text, value numeric)
    VOLATILE PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
    LANGUAGE sql AS $$
SELECT 'server', NULL::pg_catalog.regclass, s.name, s.value::pg_catalog.numeric
  FROM @extschema@.drift_server_stats() s
UNION ALL
SELECT 'backend', NULL::pg_catalog.regclass, b.name, b.value::pg_catalog.numeric
  FROM @extschema@.drift_backend_stats() b
UNION ALL
SELECT 'table', t.relid::pg_catalog.regclass, m.name, m.value
  FROM @extschema@.drift_table_stats() t
 CROSS JOIN LATERAL (VALUES
       (1, 'events', t.events::pg_catalog.numeric),
       (2, 'live_rows', t.live_rows::pg_catalog.numeric),
       (3, 'log_bytes', t.log_bytes::pg_catalog.numeric),
       (4, 'segments', t.segments::pg_catalog.numeric),
       (5, 'snapshot_seq', t.snapshot_seq::pg_catalog.numeric),
       (6, 'snapshot_bytes', t.snapshot_bytes::pg_catalog.numeric),
       (7, 'snapshot_raw_bytes', t.snapshot_raw_bytes::pg_catalog.numeric),
       (8, 'snapshot_compressed_bytes', t.snapshot_compressed_bytes::pg_catalog.numeric),
       (9, 'compression_ratio',
           pg_catalog.round(t.snapshot_raw_bytes::pg_catalog.numeric
                            OPERATOR(pg_catalog./)
                            nullif(t.snapshot_compressed_bytes, 0::pg_catalog.int8)::pg_catalog.numeric,
                            2)),
       (10, 'indexes', pg_catalog.cardinality(t.indexes)::pg_catalog.numeric)) AS m(n, name, value)
 WHERE m.value IS NOT NULL
$$;
COMMENT ON FUNCTION drift_stats() IS
    'Server counters and per-table figures, one row per figure: (scope, table_name, name, value)';
"#,
    name = "drift_tables_and_stats",
    requires = [drift_server_stats, drift_backend_stats, drift_table_stats],
);
