//! Operating DriftDB: a table's whole history moved between two real clusters through the
//! client (COPY out of drift_export, COPY into a staging table, drift_import), and the
//! server counters and table figures checked against what was done and what is on disk.

use driftdb_e2e::{lock_wait_of, Client, Cluster, Rng};
use std::io::{Read, Write};

const TABLE: &str = "CREATE FOREIGN TABLE items (id int NOT NULL, name text, qty int, \
                     price numeric(10,2), tags text[], seen timestamptz, doc jsonb) \
                     SERVER drift OPTIONS (primary_key 'id')";

/// Every column of every row, as text, in key order.
type State = Vec<String>;

fn rows(c: &mut Client, from: &str) -> State {
    c.query(&format!("SELECT t::text FROM {from} t ORDER BY id"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// drift_history without the seq, which is per cluster: one text per event, in seq order.
fn history(c: &mut Client) -> Vec<String> {
    c.query(
        "SELECT (committed_at, op, \"row\", changed, txid, role)::text \
           FROM drift_history('items') ORDER BY seq",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn as_of(c: &mut Client, at: &str) -> State {
    rows(c, &format!("drift_as_of(NULL::items, '{at}'::timestamptz)"))
}

fn random_statement(rng: &mut Rng) -> String {
    let id = rng.below(15);
    match rng.below(5) {
        0 | 1 => format!(
            "INSERT INTO items VALUES ({id}, 'item \"{}\"\t{}', {}, {}.{:02}, \
             '{{a,\"b c\",NULL}}', now(), '{{\"k\": [{}, null]}}')",
            rng.below(100),
            rng.below(9),
            rng.below(50),
            rng.below(1000),
            rng.below(100),
            rng.below(9)
        ),
        2 => format!(
            "UPDATE items SET qty = qty + {} WHERE id = {id}",
            rng.below(5) + 1
        ),
        3 => format!("UPDATE items SET name = NULL, doc = '[]' WHERE id = {id}"),
        _ => format!("DELETE FROM items WHERE id = {id}"),
    }
}

#[test]
fn history_moves_between_clusters_with_identical_answers() {
    let source = Cluster::start("export-src", &[]);
    let mut setup = source.create_db("app");
    setup
        .batch_execute(&format!(
            "{TABLE}; CREATE ROLE alice; CREATE ROLE bob; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON items TO alice, bob"
        ))
        .unwrap();
    let mut conns: Vec<Client> = (0..3).map(|_| source.connect("app")).collect();
    conns[1].batch_execute("SET ROLE alice").unwrap();
    conns[2].batch_execute("SET ROLE bob").unwrap();
    let mut rng = Rng(0xfeed_0007_0003_0001);
    // (time just after the commit, state) after every commit.
    let mut records: Vec<(String, State)> = Vec::new();
    let mut tries = 0;
    while records.len() < 30 {
        tries += 1;
        assert!(tries < 300, "the workload stopped committing");
        let c = &mut conns[rng.below(3) as usize];
        c.batch_execute("BEGIN").unwrap();
        let mut ok = true;
        for _ in 0..(1 + rng.below(3)) {
            if c.batch_execute(&random_statement(&mut rng)).is_err() {
                ok = false;
                break;
            }
        }
        if !ok || rng.below(6) == 0 {
            c.batch_execute("ROLLBACK").unwrap();
            continue;
        }
        c.batch_execute("COMMIT").unwrap();
        let at: String = setup
            .query_one("SELECT clock_timestamp()::text", &[])
            .unwrap()
            .get(0);
        records.push((at, rows(&mut setup, "items")));
    }
    let before_all: String = setup
        .query_one(
            "SELECT (min(committed_at) - interval '1 second')::text FROM drift_history('items')",
            &[],
        )
        .unwrap()
        .get(0);
    let source_history = history(&mut setup);
    for op in ["INSERT", "PATCH", "SOFT_DELETE"] {
        assert!(
            source_history.iter().any(|e| e.contains(op)),
            "no {op} in {source_history:?}"
        );
    }

    // Out through the client.
    let mut exported = Vec::new();
    setup
        .copy_out("COPY (SELECT * FROM drift_export('items') ORDER BY seq) TO STDOUT")
        .unwrap()
        .read_to_end(&mut exported)
        .unwrap();

    // In, on another cluster.
    let target = Cluster::start("export-dst", &[]);
    let mut t = target.create_db("app");
    t.batch_execute(&format!(
        "{TABLE}; CREATE TABLE staging (seq bigint, committed_at timestamptz, txid xid8, \
         role name, op text, key jsonb, data jsonb, long_values text[])"
    ))
    .unwrap();
    let mut w = t.copy_in("COPY staging FROM STDIN").unwrap();
    w.write_all(&exported).unwrap();
    w.finish().unwrap();
    // An import that is rolled back, or whose transaction dies in a crash, leaves nothing.
    t.batch_execute("BEGIN; SELECT drift_import('items', 'staging'); ROLLBACK")
        .unwrap();
    assert!(history(&mut t).is_empty());
    t.batch_execute("BEGIN; SELECT drift_import('items', 'staging')")
        .unwrap();
    target.crash();
    target.restart();
    let mut t = target.connect("app");
    assert!(
        history(&mut t).is_empty(),
        "an uncommitted import survived a crash"
    );
    // A hot standby of the target receives the import through the WAL.
    let standby = target.standby("export-standby");
    let n: i64 = t
        .query_one("SELECT drift_import('items', 'staging')", &[])
        .unwrap()
        .get(0);
    assert_eq!(n as usize, source_history.len());
    // The committed import survives kill -9.
    target.crash();
    target.restart();
    let mut t = target.connect("app");

    // drift_history: every column but the seq is the same, in the same order.
    assert_eq!(history(&mut t), source_history);
    target.wait_replayed(&standby);
    let mut s = standby.connect("app");
    assert_eq!(history(&mut s), source_history);
    for (at, state) in records.iter().step_by(5) {
        assert_eq!(&as_of(&mut s, at), state, "standby as of {at}");
    }
    let err = s
        .batch_execute("SELECT drift_import('items', 'staging')")
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("25006"), "{err}");
    let seqs_increase: bool = t
        .query_one(
            "SELECT bool_and(seq > prev) FROM (SELECT seq, lag(seq, 1, 0::bigint) \
             OVER (ORDER BY seq) AS prev FROM drift_history('items')) s",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(seqs_increase);
    // drift_as_of at every recorded point, at every commit time and before the first:
    // the same rows on both clusters, and the rows recorded on the source then.
    for (i, (at, state)) in records.iter().enumerate() {
        assert_eq!(&as_of(&mut t, at), state, "as of {at} (commit {i})");
        assert_eq!(&as_of(&mut setup, at), state, "source as of {at}");
    }
    let times: Vec<String> = setup
        .query(
            "SELECT DISTINCT committed_at::text FROM drift_history('items')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for at in times.iter().chain([&before_all]) {
        assert_eq!(as_of(&mut t, at), as_of(&mut setup, at), "as of {at}");
    }
    assert!(as_of(&mut t, &before_all).is_empty());
    assert_eq!(rows(&mut t, "items"), rows(&mut setup, "items"));
    // Under driftdb.as_of too.
    let (at, state) = &records[records.len() / 2];
    t.batch_execute(&format!("SET driftdb.as_of = '{at}'"))
        .unwrap();
    assert_eq!(&rows(&mut t, "items"), state);
    t.batch_execute("RESET driftdb.as_of").unwrap();
    // The imported table takes new writes, after its history.
    t.batch_execute("DELETE FROM items; INSERT INTO items (id) VALUES (1000)")
        .unwrap();
    assert_eq!(history(&mut t)[..source_history.len()], source_history[..]);
    assert_eq!(rows(&mut t, "items").len(), 1);
}

/// Sizes of the `.log` files in a directory, read from the file system.
fn log_files(dir: &std::path::Path) -> (u64, usize) {
    let mut bytes = 0;
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().ends_with(".log") {
            bytes += e.metadata().unwrap().len();
            n += 1;
        }
    }
    (bytes, n)
}

fn server_stat(c: &mut Client, name: &str) -> i64 {
    c.query_one(
        "SELECT value FROM drift_server_stats() WHERE name = $1",
        &[&name],
    )
    .unwrap()
    .get(0)
}

fn my_stat(c: &mut Client, name: &str) -> i64 {
    c.query_one(
        "SELECT value FROM drift_backend_stats() WHERE name = $1",
        &[&name],
    )
    .unwrap()
    .get(0)
}

#[test]
fn counters_sum_over_backends_and_figures_match_the_files() {
    let cluster = Cluster::start("stats", &[]);
    let mut admin = cluster.create_db("app");
    admin
        .batch_execute(
            "CREATE FOREIGN TABLE m (id int NOT NULL, v text) SERVER drift \
             OPTIONS (primary_key 'id'); INSERT INTO m VALUES (0, 'first')",
        )
        .unwrap();
    let id: i64 = admin
        .query_one(
            "SELECT ((SELECT oid FROM pg_database WHERE datname = 'app')::bigint << 32) \
                    | 'm'::regclass::oid::bigint",
            &[],
        )
        .unwrap()
        .get(0);
    let driftdb = cluster.datadir.join("driftdb");
    let table_dir = driftdb.join("tables").join(id.to_string());
    let files_before = log_files(&table_dir).0 + log_files(&driftdb.join("journal")).0;
    let before: Vec<i64> = ["appends", "events_appended", "bytes_written"]
        .iter()
        .map(|n| server_stat(&mut admin, n))
        .collect();
    // Two backends, each 6 transactions of 5 rows, at the same time; each reports the
    // bytes it wrote itself.
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let port = cluster.port;
            std::thread::spawn(move || {
                let mut c = postgres::Client::connect(
                    &format!("host=127.0.0.1 port={port} user=postgres dbname=app"),
                    postgres::NoTls,
                )
                .unwrap();
                let mine = |c: &mut Client| {
                    ["appends", "events_appended", "bytes_written"].map(|n| my_stat(c, n))
                };
                let start = mine(&mut c);
                for k in 0..6 {
                    let first = 1 + w * 1000 + k * 5;
                    c.batch_execute(&format!(
                        "INSERT INTO m SELECT g, 'v' || g FROM generate_series({first}, {}) g",
                        first + 4
                    ))
                    .unwrap();
                }
                let end = mine(&mut c);
                [0, 1, 2].map(|i| end[i] - start[i])
            })
        })
        .collect();
    let done: Vec<[i64; 3]> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    for d in &done {
        assert_eq!((d[0], d[1]), (6, 30), "each backend counts its own appends");
    }
    // The bytes both backends wrote are exactly what the table log and the journal grew by
    // (the file system says so).
    let files_after = log_files(&table_dir).0 + log_files(&driftdb.join("journal")).0;
    assert_eq!((done[0][2] + done[1][2]) as u64, files_after - files_before);
    // A third backend sees the sum of both in the server counters (DriftDB's background
    // worker writes its own file, but appends nothing).
    let mut reader = cluster.connect("app");
    assert_eq!(server_stat(&mut reader, "appends") - before[0], 12);
    assert_eq!(server_stat(&mut reader, "events_appended") - before[1], 60);
    assert!(server_stat(&mut reader, "bytes_written") - before[2] >= done[0][2] + done[1][2]);
    reader
        .batch_execute("DELETE FROM m WHERE id % 2 = 0")
        .unwrap();
    let row = reader
        .query_one(
            "SELECT events, live_rows, log_bytes, segments, (SELECT count(*) FROM m) \
               FROM drift_tables WHERE table_name = 'm'::regclass",
            &[],
        )
        .unwrap();
    let (events, live, log_bytes, segments, counted): (i64, i64, i64, i32, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    // 61 inserts, then 31 deletes (id 0 and the 30 even ones).
    assert_eq!((events, live, counted), (92, 30, 30));
    let (bytes, files) = log_files(&table_dir);
    assert_eq!((log_bytes as u64, segments as usize), (bytes, files));
    let (journal, jfiles) = log_files(&driftdb.join("journal"));
    assert_eq!(server_stat(&mut reader, "journal_bytes") as u64, journal);
    assert_eq!(
        server_stat(&mut reader, "journal_segments") as usize,
        jfiles
    );
}

/// Tables mt2 (to import 50 events into from mev2) and t2 (one row), readable by the role
/// reader.
const OPEN_IMPORT_SETUP: &str = "
    CREATE FOREIGN TABLE mt2 (id int NOT NULL, v text) SERVER drift
      OPTIONS (primary_key 'id');
    CREATE FOREIGN TABLE t2 (id int NOT NULL, v text) SERVER drift
      OPTIONS (primary_key 'id');
    CREATE TABLE mev2 AS
      SELECT g::bigint AS seq,
             '2021-01-01 00:00:00+00'::timestamptz + g * interval '1 min' AS committed_at,
             (1000 + g)::text::xid8 AS txid, 'postgres'::name AS role, 'INSERT' AS op,
             jsonb_build_object('id', g::text) AS key,
             jsonb_build_object('id', g::text, 'v', 'm' || g) AS data
        FROM generate_series(1, 50) g;
    GRANT SELECT ON t2, mt2 TO PUBLIC;
    CREATE ROLE reader LOGIN;
    INSERT INTO t2 VALUES (1, 'before');";

/// What a reader of t2's past sees while mt2's import is open: the row written during the
/// import in drift_history and drift_as_of(now()), and drift_seq_at(now()) at or past
/// `seq` (the import holds none of it up).
fn other_table_passes(c: &mut Client, seq: i64) {
    let history: i64 = c
        .query_one(
            "SELECT count(*) FROM drift_history('t2') WHERE \"row\"->>'v' = 'during the import'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(history, 1);
    let past: Vec<i32> = c
        .query(
            "SELECT id FROM drift_as_of(NULL::t2, now()) ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(past, vec![1, 2]);
    let at_now: i64 = c
        .query_one("SELECT drift_seq_at(now())", &[])
        .unwrap()
        .get(0);
    assert!(at_now >= seq, "drift_seq_at(now()) {at_now} < {seq}");
}

/// The rows of mt2's past at `seq`.
fn mt2_at(c: &mut Client, seq: i64) -> Result<i64, postgres::Error> {
    c.query_one(
        "SELECT count(*) FROM drift_as_of(NULL::mt2, $1::bigint)",
        &[&seq],
    )
    .map(|r| r.get(0))
}

/// An import left open holds up no reader of another table, in this database or another,
/// and never waits on itself; a reader of the importing table's past waits for the import
/// as a lock wait (lock_timeout applies) and then sees what it committed (#24).
#[test]
fn an_open_import_blocks_only_readers_of_its_own_table() {
    let cluster = Cluster::start("open-import", &[]);
    let mut a = cluster.create_db("app");
    let mut other_db = cluster.create_db("other");
    other_db
        .batch_execute(
            "CREATE FOREIGN TABLE o (id int NOT NULL) SERVER drift OPTIONS (primary_key 'id')",
        )
        .unwrap();
    a.batch_execute(OPEN_IMPORT_SETUP).unwrap();
    a.batch_execute("BEGIN; SELECT drift_import('mt2', 'mev2')")
        .unwrap();
    // Inside the import's own transaction: its own history, the present and the past of
    // other tables, without waiting on itself.
    let own: i64 = a
        .query_one("SELECT count(*) FROM drift_as_of(NULL::mt2, now())", &[])
        .unwrap()
        .get(0);
    assert_eq!(own, 50);
    let own_seq: i64 = a
        .query_one("SELECT drift_current_seq()", &[])
        .unwrap()
        .get(0);
    let seen: i64 = a
        .query_one(
            "SELECT count(*) FROM drift_as_of(NULL::mt2, $1::bigint)",
            &[&own_seq],
        )
        .unwrap()
        .get(0);
    assert_eq!(seen, 50);
    let t2_now: i64 = a
        .query_one("SELECT count(*) FROM drift_as_of(NULL::t2, now())", &[])
        .unwrap()
        .get(0);
    assert_eq!(t2_now, 1);

    // Another role's commits are seen by every reader of the past of other tables.
    let mut b = Client::connect(
        &format!(
            "host=127.0.0.1 port={} user=reader dbname=app",
            cluster.port
        ),
        postgres::NoTls,
    )
    .unwrap();
    let mut writer = cluster.connect("app");
    let before: i64 = b
        .query_one("SELECT drift_current_seq()", &[])
        .unwrap()
        .get(0);
    writer
        .batch_execute("INSERT INTO t2 VALUES (2, 'during the import')")
        .unwrap();
    let after: i64 = b
        .query_one("SELECT drift_current_seq()", &[])
        .unwrap()
        .get(0);
    assert!(after > before, "drift_current_seq stayed at {before}");
    other_table_passes(&mut b, after);
    let mut o = cluster.connect("other");
    o.batch_execute("INSERT INTO o VALUES (1)").unwrap();
    let o_seq: i64 = o
        .query_one("SELECT drift_seq_at(now())", &[])
        .unwrap()
        .get(0);
    assert!(o_seq > after);
    // The present of the importing table: the import is not committed, so nothing.
    let present: i64 = b.query_one("SELECT count(*) FROM mt2", &[]).unwrap().get(0);
    assert_eq!(present, 0);

    // The past of the importing table at a seq past the import's groups waits for it: a
    // lock wait, which lock_timeout ends with 55P03.
    b.batch_execute("SET lock_timeout = '300ms'").unwrap();
    let err = mt2_at(&mut b, after).unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("55P03"), "{err}");
    b.batch_execute("RESET lock_timeout").unwrap();
    let b_pid: i32 = b.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let waiter = std::thread::spawn(move || mt2_at(&mut b, after).unwrap());
    let what = lock_wait_of(&mut writer, b_pid);
    assert_eq!(what, "Lock:transactionid");
    a.batch_execute("COMMIT").unwrap();
    assert_eq!(waiter.join().unwrap(), 50);
    // The import committed; its rows are there, in the present and the past.
    let now_rows: i64 = writer
        .query_one("SELECT count(*) FROM mt2", &[])
        .unwrap()
        .get(0);
    assert_eq!(now_rows, 50);
    let log = cluster.server_log();
    assert!(!log.contains("terminated by signal"), "{log}");
}

/// On a hot standby too, an import open on the primary holds up only the readers of the
/// table it imports into (#24 item 3: redo marked every group as a commit's, so the
/// standby's drift_current_seq and every read of the past stopped at the import).
#[test]
fn an_open_import_on_the_primary_holds_up_only_its_table_on_a_standby() {
    let primary = Cluster::start("open-import-primary", &[]);
    let mut a = primary.create_db("app");
    a.batch_execute(OPEN_IMPORT_SETUP).unwrap();
    let standby = primary.standby("open-import-standby");
    a.batch_execute("BEGIN; SELECT drift_import('mt2', 'mev2')")
        .unwrap();
    let mut w = primary.connect("app");
    w.batch_execute("INSERT INTO t2 VALUES (2, 'during the import')")
        .unwrap();
    let t2_seq: i64 = w
        .query_one("SELECT max(seq) FROM drift_history('t2')", &[])
        .unwrap()
        .get(0);
    primary.wait_replayed(&standby);
    let mut s = standby.connect("app");
    let s_seq: i64 = s
        .query_one("SELECT drift_current_seq()", &[])
        .unwrap()
        .get(0);
    assert!(s_seq >= t2_seq, "standby's seq {s_seq} < {t2_seq}");
    other_table_passes(&mut s, t2_seq);
    // The importing table's past after the import's groups waits for the import (on a
    // standby by polling the transaction: statement_timeout ends it).
    s.batch_execute("SET statement_timeout = '300ms'").unwrap();
    let err = mt2_at(&mut s, s_seq).unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    s.batch_execute("RESET statement_timeout").unwrap();
    let s_pid: i32 = s.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let waiter = std::thread::spawn(move || mt2_at(&mut s, s_seq).unwrap());
    // Seen running on the standby before the import commits.
    let mut watch = standby.connect("app");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let running: bool = watch
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1 \
                   AND state = 'active' AND query LIKE '%drift_as_of(NULL::mt2%')",
                &[&s_pid],
            )
            .unwrap()
            .get(0);
        if running {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the read never started"
        );
    }
    assert!(
        !waiter.is_finished(),
        "the read did not wait for the import"
    );
    a.batch_execute("COMMIT").unwrap();
    primary.wait_replayed(&standby);
    assert_eq!(waiter.join().unwrap(), 50);
    let log = standby.server_log();
    assert!(!log.contains("terminated by signal"), "{log}");
}

/// Imported events are judged by the rules a live write meets (#24): a PATCH that moves a
/// row to another key, a missing or NULL key or NOT NULL column, a row that fails a CHECK
/// constraint are refused with the SQLSTATE a live write gets, and leave the table empty.
#[test]
fn imports_refuse_histories_a_live_table_could_never_have() {
    let cluster = Cluster::start("import-checks", &[]);
    let mut c = cluster.create_db("app");
    c.batch_execute(
        "CREATE FOREIGN TABLE it (id int NOT NULL, name text NOT NULL, \
           qty int CHECK (qty >= 0)) SERVER drift OPTIONS (primary_key 'id');
         CREATE FOREIGN TABLE tk (k text, v int) SERVER drift OPTIONS (primary_key 'k');
         CREATE TABLE ev (seq bigint, committed_at timestamptz, txid xid8, role name,
                          op text, key jsonb, data jsonb);",
    )
    .unwrap();
    let insert = r#"(1, '2020-01-01', '10', 'postgres', 'INSERT', '{"id": "1"}', '{"id": "1", "name": "a", "qty": "1"}')"#;
    let cases: &[(&str, String, &str)] = &[
        (
            "it",
            format!(
                r#"{insert}, (2, '2020-01-02', '11', 'postgres', 'PATCH', '{{"id": "1"}}', '{{"id": "2"}}')"#
            ),
            "22023",
        ),
        (
            "it",
            r#"(1, '2020-01-01', '10', 'postgres', 'INSERT', '{"id": "1"}', '{"id": "1", "qty": "1"}')"#
                .to_string(),
            "23502",
        ),
        (
            "it",
            r#"(1, '2020-01-01', '10', 'postgres', 'INSERT', '{"id": "1"}', '{"id": "1", "name": null}')"#
                .to_string(),
            "23502",
        ),
        (
            "it",
            format!(
                r#"{insert}, (2, '2020-01-02', '11', 'postgres', 'PATCH', '{{"id": "1"}}', '{{"name": null}}')"#
            ),
            "23502",
        ),
        (
            "it",
            r#"(1, '2020-01-01', '10', 'postgres', 'INSERT', '{"id": "1"}', '{"id": "1", "name": "a", "qty": "-1"}')"#
                .to_string(),
            "23514",
        ),
        (
            "it",
            format!(
                r#"{insert}, (2, '2020-01-02', '11', 'postgres', 'PATCH', '{{"id": "1"}}', '{{"qty": "-5"}}')"#
            ),
            "23514",
        ),
        (
            "tk",
            r#"(1, '2020-01-01', '10', 'postgres', 'INSERT', '{"k": ""}', '{"v": "1"}')"#.to_string(),
            "23502",
        ),
    ];
    for (table, events, code) in cases {
        c.batch_execute(&format!("TRUNCATE ev; INSERT INTO ev VALUES {events}"))
            .unwrap();
        let err = c
            .batch_execute(&format!("SELECT drift_import('{table}', 'ev')"))
            .unwrap_err();
        assert_eq!(
            err.code().map(|c| c.code()),
            Some(*code),
            "{table} <- {events}: {err}"
        );
        let left: i64 = c
            .query_one(
                &format!("SELECT count(*) FROM drift_history('{table}')"),
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "{table} <- {events}");
    }
    // A history a live table could have: the key column patched to the value it has,
    // columns patched within their constraints.
    c.batch_execute(&format!(
        "TRUNCATE ev; INSERT INTO ev VALUES {insert}, \
         (2, '2020-01-02', '11', 'postgres', 'PATCH', '{{\"id\": \"1\"}}', '{{\"id\": \"1\", \"qty\": \"3\"}}'), \
         (3, '2020-01-03', '12', 'postgres', 'PATCH', '{{\"id\": \"1\"}}', '{{\"qty\": null}}')"
    ))
    .unwrap();
    let n: i64 = c
        .query_one("SELECT drift_import('it', 'ev')", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    let row: String = c.query_one("SELECT it::text FROM it", &[]).unwrap().get(0);
    assert_eq!(row, "(1,a,)");
    // Read as of a moment between the imported transactions' original commit times.
    let text_key: i64 = c
        .query_one(
            "SELECT count(*) FROM drift_as_of(NULL::it, '2020-01-02 12:00'::timestamptz) \
             WHERE qty = 3",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(text_key, 1);
}

fn run_tool(tool: &str, dir: &std::path::Path, cluster: &Cluster) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../bin")
        .join(tool);
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(dir)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "app",
        ])
        .env("PG_BINDIR", driftdb_e2e::bindir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tool}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// driftdb-dump and driftdb-restore (#22: pg_dump alone keeps no DriftDB row): a database
/// with DriftDB tables (one in another schema with an awkward name, one with a 2 MB
/// value), their indexes and a heap table, dumped and restored into another cluster, gives
/// the same history (but the seqs), the same past at every commit, the same indexes and
/// the same heap rows; changes after the dump's cut are not in it.
#[test]
fn driftdb_dump_and_restore_keep_history_indexes_and_heap_rows() {
    let source = Cluster::start("dump-src", &[]);
    let mut c = source.create_db("app");
    c.batch_execute(&format!(
        "{TABLE}; CREATE ROLE alice; GRANT SELECT, INSERT, UPDATE, DELETE ON items TO alice;
         CREATE SCHEMA \"S p\";
         CREATE FOREIGN TABLE \"S p\".\"Odd \"\"t\"\"\" (k text NOT NULL, v text) SERVER drift
           OPTIONS (primary_key 'k');
         CREATE TABLE plain (id int PRIMARY KEY, note text);
         INSERT INTO plain VALUES (1, 'heap one'), (2, 'heap two');
         SELECT drift_create_index('items', 'qty');"
    ))
    .unwrap();
    let mut rng = Rng(0xd0d0_0022_0001);
    let mut alice = source.connect("app");
    alice.batch_execute("SET ROLE alice").unwrap();
    for i in 0..40 {
        let conn = if i % 3 == 0 { &mut alice } else { &mut c };
        let _ = conn.batch_execute(&random_statement(&mut rng));
    }
    c.batch_execute(
        "INSERT INTO \"S p\".\"Odd \"\"t\"\"\" VALUES ('a', 'one'), ('b', repeat('x', 2000000));
         UPDATE \"S p\".\"Odd \"\"t\"\"\" SET v = 'uno' WHERE k = 'a';",
    )
    .unwrap();
    let odd_rows = |c: &mut Client| -> Vec<(String, i64)> {
        c.query(
            "SELECT k, octet_length(v)::bigint FROM \"S p\".\"Odd \"\"t\"\"\" ORDER BY k",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };
    let src_history = history(&mut c);
    assert!(src_history.len() > 10, "{src_history:?}");
    let src_rows = rows(&mut c, "items");
    let src_odd = odd_rows(&mut c);
    let times: Vec<String> = c
        .query(
            "SELECT committed_at::text FROM drift_history('items') ORDER BY seq",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let past: Vec<State> = times.iter().map(|t| as_of(&mut c, t)).collect();

    let dump = driftdb_e2e::ScratchDir::new("dump");
    let dir = dump.0.join("backup");
    run_tool("driftdb-dump", &dir, &source);
    // After the dump's cut: not in it.
    c.batch_execute("INSERT INTO items (id, name) VALUES (999, 'after the dump')")
        .unwrap();

    let target = Cluster::start("dump-dst", &[]);
    let mut admin = target.connect("postgres");
    admin.batch_execute("CREATE ROLE alice").unwrap();
    admin.batch_execute("CREATE DATABASE app").unwrap();
    run_tool("driftdb-restore", &dir, &target);
    let mut t = target.connect("app");
    assert_eq!(history(&mut t), src_history);
    assert_eq!(rows(&mut t, "items"), src_rows);
    assert_eq!(odd_rows(&mut t), src_odd);
    for (at, state) in times.iter().zip(&past) {
        assert_eq!(&as_of(&mut t, at), state, "as of {at}");
    }
    let indexes: Vec<String> = t
        .query_one(
            "SELECT indexes FROM drift_tables WHERE table_name = 'items'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(indexes, ["qty"]);
    let heap: Vec<String> = t
        .query("SELECT note FROM plain ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(heap, ["heap one", "heap two"]);
    // Privileges came with pg_dump; alice writes the restored table, after its history.
    let mut a = target.connect("app");
    a.batch_execute("SET ROLE alice; INSERT INTO items (id, name) VALUES (1000, 'new')")
        .unwrap();
    assert_eq!(history(&mut t).len(), src_history.len() + 1);
}
