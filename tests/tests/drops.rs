//! Dropping DriftDB tables and databases (#24): DROP DATABASE removes its DriftDB tables'
//! files, and DROP FOREIGN TABLE waits for DriftDB's functions that read or change the
//! table, as it waits for a SELECT on a heap table, instead of pulling the files from under
//! them.

use driftdb_e2e::{lock_wait_of, Client, Cluster};
use std::path::Path;

/// The directories of DriftDB tables under the cluster's data directory.
fn table_dirs(datadir: &Path) -> Vec<String> {
    let mut dirs: Vec<String> = std::fs::read_dir(datadir.join("driftdb/tables"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// The engine's id of table `name` in the database `c` is connected to.
fn table_id(c: &mut Client, name: &str) -> String {
    let id: i64 = c
        .query_one(
            "SELECT ((SELECT oid FROM pg_database WHERE datname = current_database())::bigint \
               << 32) | $1::text::regclass::oid::bigint",
            &[&name],
        )
        .unwrap()
        .get(0);
    id.to_string()
}

#[test]
fn drop_database_removes_its_driftdb_tables_files() {
    let cluster = Cluster::start("dropdb", &[]);
    let mut keep = cluster.create_db("keep");
    keep.batch_execute(
        "CREATE FOREIGN TABLE k (id int NOT NULL) SERVER drift OPTIONS (primary_key 'id');
         INSERT INTO k SELECT generate_series(1, 10);",
    )
    .unwrap();
    let kept = table_id(&mut keep, "k");
    let mut gone = cluster.create_db("gone");
    gone.batch_execute(
        "CREATE FOREIGN TABLE g1 (id int NOT NULL, v text) SERVER drift \
           OPTIONS (primary_key 'id');
         CREATE FOREIGN TABLE g2 (id int NOT NULL) SERVER drift OPTIONS (primary_key 'id');
         INSERT INTO g1 SELECT g, 'row ' || g FROM generate_series(1, 100) g;
         INSERT INTO g2 VALUES (1);
         SELECT drift_snapshot('g1');",
    )
    .unwrap();
    let (g1, g2) = (table_id(&mut gone, "g1"), table_id(&mut gone, "g2"));
    drop(gone);
    let before = table_dirs(&cluster.datadir);
    for id in [&kept, &g1, &g2] {
        assert!(before.contains(id), "{id} not in {before:?}");
    }
    cluster
        .connect("postgres")
        .batch_execute("DROP DATABASE gone")
        .unwrap();
    assert_eq!(table_dirs(&cluster.datadir), vec![kept.clone()]);
    // The other database's table is untouched, and so is the store.
    let n: i64 = keep
        .query_one("SELECT count(*) FROM k", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 10);
    let damage: i64 = keep
        .query_one("SELECT count(*) FROM drift_verify() WHERE NOT ok", &[])
        .unwrap()
        .get(0);
    assert_eq!(damage, 0);
}

/// Session `a` runs `sql` in an open transaction; a DROP FOREIGN TABLE of `t` in another
/// session then waits for it (observed as a lock wait), and completes once `a` commits.
fn drop_waits_for(cluster: &Cluster, sql: &str) {
    let mut a = cluster.connect("app");
    a.batch_execute(
        "CREATE FOREIGN TABLE t (id int NOT NULL, v int) SERVER drift OPTIONS (primary_key 'id');
         INSERT INTO t SELECT g, g FROM generate_series(1, 50) g;",
    )
    .unwrap();
    let id = table_id(&mut a, "t");
    a.batch_execute(&format!("BEGIN; {sql}")).unwrap();
    let mut b = cluster.connect("app");
    let b_pid: i32 = b.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let dropper = std::thread::spawn(move || b.batch_execute("DROP FOREIGN TABLE t"));
    let mut watcher = cluster.connect("app");
    assert_eq!(lock_wait_of(&mut watcher, b_pid), "Lock:relation", "{sql}");
    // Still inside the transaction, the table reads whole.
    let n: i64 = a
        .query_one("SELECT count(*) FROM drift_history('t')", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 50, "{sql}");
    a.batch_execute("COMMIT").unwrap();
    dropper.join().unwrap().unwrap();
    assert!(
        !table_dirs(&cluster.datadir).contains(&id),
        "the files of the dropped table are back after {sql}"
    );
}

#[test]
fn drop_foreign_table_waits_for_driftdb_functions_using_the_table() {
    let cluster = Cluster::start("drop-wait", &[]);
    drop(cluster.create_db("app"));
    for sql in [
        "SELECT count(*) FROM drift_history('t')",
        "SELECT count(*) FROM drift_export('t')",
        "SELECT count(*) FROM drift_as_of(NULL::t, 1) WITH ORDINALITY",
        "SELECT drift_snapshot('t')",
        "SELECT drift_create_index('t', 'v')",
        "SELECT count(*) FROM drift_diff('t', 0, 1)",
    ] {
        drop_waits_for(&cluster, sql);
    }
    // A function called on a table dropped while it waited says so (42P01).
    let mut a = cluster.connect("app");
    a.batch_execute(
        "CREATE FOREIGN TABLE t (id int NOT NULL, v int) SERVER drift OPTIONS (primary_key 'id')",
    )
    .unwrap();
    a.batch_execute("BEGIN; DROP FOREIGN TABLE t").unwrap();
    let oid: u32 = {
        let mut c = cluster.connect("app");
        let oid: u32 = c
            .query_one("SELECT 't'::regclass::oid", &[])
            .unwrap()
            .get(0);
        oid
    };
    let mut b = cluster.connect("app");
    let b_pid: i32 = b.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let reader = std::thread::spawn(move || {
        b.query_one(
            &format!("SELECT count(*) FROM drift_history({oid}::oid::regclass)"),
            &[],
        )
        .map(|_| ())
    });
    let mut watcher = cluster.connect("app");
    assert_eq!(lock_wait_of(&mut watcher, b_pid), "Lock:relation");
    a.batch_execute("COMMIT").unwrap();
    let err = reader.join().unwrap().unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"), "{err}");

    // The same for a drift_history call the planner rewrites into a key lookup, which
    // locks the table and then reads it (the backend crashed on the missing relation).
    a.batch_execute(
        "CREATE FOREIGN TABLE t (id int NOT NULL, v int) SERVER drift OPTIONS (primary_key 'id'); \
         INSERT INTO t VALUES (1, 1)",
    )
    .unwrap();
    a.batch_execute("BEGIN; DROP FOREIGN TABLE t").unwrap();
    let mut b = cluster.connect("app");
    let b_pid: i32 = b.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let reader = std::thread::spawn(move || {
        let r = b
            .query_one(
                "SELECT count(*) FROM drift_history('t') WHERE \"row\"->>'id' = '1'",
                &[],
            )
            .map(|_| ());
        (r, b)
    });
    assert_eq!(lock_wait_of(&mut watcher, b_pid), "Lock:relation");
    a.batch_execute("COMMIT").unwrap();
    let (r, mut b) = reader.join().unwrap();
    let err = r.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"), "{err}");
    // The server is up and the session goes on.
    let one: i32 = b.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
}
