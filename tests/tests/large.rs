//! Large values on a real server (#24 item 6): a row of over 100 MB is snapshotted (by
//! `drift_snapshot` and by the worker's policy) and read back whole from the snapshot
//! after a restart; a 270 MB text value, longer than a jsonb value may be, moves through
//! drift_export (in its long_values column) and drift_import unchanged.

use driftdb_e2e::{Client, Cluster};
use std::time::{Duration, Instant};

fn one<T: for<'a> postgres::types::FromSql<'a>>(c: &mut Client, sql: &str) -> T {
    c.query_one(sql, &[]).unwrap().get(0)
}

/// (id, length, md5) of every row of `from`, in key order.
fn digest(c: &mut Client, from: &str) -> Vec<(i32, i64, String)> {
    c.query(
        &format!(
            "SELECT id, coalesce(octet_length(v), -1)::bigint, coalesce(md5(v), '') \
               FROM {from} ORDER BY id"
        ),
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

#[test]
fn a_row_of_100_mb_is_snapshotted_and_read_back_from_the_snapshot() {
    // The worker snapshots a table once 1 MB of log has gathered since its last snapshot.
    let cluster = Cluster::start(
        "large-row",
        &[
            "driftdb.snapshot_events = 0",
            "driftdb.snapshot_bytes = 1MB",
        ],
    );
    let mut c = cluster.create_db("app");
    // 105 MB of md5 hex digits: incompressible enough that no block of the snapshot could
    // hold the row under the 64 MiB block limit.
    c.batch_execute(
        "CREATE FOREIGN TABLE big (id int NOT NULL, v text) SERVER drift \
           OPTIONS (primary_key 'id');
         INSERT INTO big SELECT g, 'small ' || g FROM generate_series(1, 1000) g;
         UPDATE big SET v = (SELECT string_agg(md5(g::text), '') \
                               FROM generate_series(1, 3300000) g) WHERE id = 500;
         INSERT INTO big VALUES (2000, 'after');",
    )
    .unwrap();
    let before = digest(&mut c, "big");
    assert_eq!(before.len(), 1001);
    assert_eq!(before[499].1, 105_600_000);
    let seq: i64 = one(&mut c, "SELECT drift_snapshot('big')");
    assert!(seq > 0);
    let snap_bytes: i64 = one(
        &mut c,
        "SELECT snapshot_bytes FROM drift_tables WHERE table_name = 'big'::regclass",
    );
    assert!(snap_bytes > 40_000_000, "snapshot of {snap_bytes} bytes");
    assert!(one::<bool>(
        &mut c,
        "SELECT bool_and(ok) FROM drift_verify('big')"
    ));
    drop(c);
    // After a restart the row is read from the snapshot (nothing after it in the log).
    cluster.stop();
    cluster.restart();
    let mut c = cluster.connect("app");
    assert_eq!(digest(&mut c, "big"), before);
    assert_eq!(
        digest(&mut c, "big WHERE id = 500"),
        vec![before[499].clone()]
    );
    // The worker's own snapshots of a table with such a row succeed too: more log, then
    // a snapshot past it and no table reported failing.
    c.batch_execute("UPDATE big SET v = v || '!' WHERE id = 500")
        .unwrap();
    let after: i64 = one(&mut c, "SELECT drift_current_seq()");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let snap: Option<i64> = one(
            &mut c,
            "SELECT snapshot_seq FROM drift_tables WHERE table_name = 'big'::regclass",
        );
        if snap.is_some_and(|s| s >= after) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no policy snapshot at or after seq {after} (newest {snap:?}):\n{}",
            cluster.server_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        one::<i32>(&mut c, "SELECT tables_failing_snapshot FROM drift_health()"),
        0
    );
    assert_eq!(
        one::<i64>(
            &mut c,
            "SELECT octet_length(v)::bigint FROM big WHERE id = 500"
        ),
        105_600_001
    );
    assert!(!cluster.server_log().contains("could not snapshot"));
}

#[test]
fn a_value_longer_than_a_jsonb_string_moves_through_export_and_import() {
    let cluster = Cluster::start("large-value", &["driftdb.snapshot_events = 0"]);
    let mut c = cluster.create_db("app");
    // 270,000,000 bytes, then a PATCH with a 2 MB value (over the 1 MiB that data holds).
    c.batch_execute(
        "CREATE FOREIGN TABLE src (id int NOT NULL, v text) SERVER drift \
           OPTIONS (primary_key 'id');
         CREATE FOREIGN TABLE dst (id int NOT NULL, v text) SERVER drift \
           OPTIONS (primary_key 'id');
         INSERT INTO src VALUES (1, 'one'), (2, repeat('ab€', 54000000)), (3, NULL);
         UPDATE src SET v = repeat('cd€', 400000) WHERE id = 1;",
    )
    .unwrap();
    let source = digest(&mut c, "src");
    assert_eq!(source[1].1, 270_000_000);
    // drift_history cannot render the row as jsonb: Postgres' own limit, 54000.
    let err = c
        .query("SELECT count(*) FROM drift_history('src')", &[])
        .unwrap_err();
    assert_eq!(err.code().map(|s| s.code()), Some("54000"), "{err:?}");
    c.batch_execute(
        "CREATE TABLE ev AS SELECT * FROM drift_export('src');
         SELECT drift_import('dst', 'ev');",
    )
    .unwrap();
    // Short values stay in data; the long one is in long_values, which data refers to.
    let kinds: Vec<(String, String, i32)> = c
        .query(
            "SELECT op, coalesce(data->>'v', 'null'), \
                    coalesce(array_length(long_values, 1), 0) FROM ev ORDER BY seq",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        kinds,
        [
            ("INSERT", "one", 0),
            ("INSERT", r#"{"long_value": 1}"#, 1),
            ("INSERT", "null", 0),
            ("PATCH", r#"{"long_value": 1}"#, 1),
        ]
        .map(|(a, b, n)| (a.to_string(), b.to_string(), n))
    );
    assert_eq!(
        one::<i64>(
            &mut c,
            "SELECT octet_length(long_values[1])::bigint FROM ev WHERE op = 'PATCH'"
        ),
        2_000_000
    );
    assert_eq!(digest(&mut c, "dst"), source);
    // A reference to a long value the event does not have is refused as a bad import.
    c.batch_execute(
        "CREATE FOREIGN TABLE bad (id int NOT NULL, v text) SERVER drift \
           OPTIONS (primary_key 'id');
         CREATE TABLE badev AS SELECT * FROM ev WHERE op = 'INSERT' AND key->>'id' = '1';
         UPDATE badev SET data = '{\"id\": \"1\", \"v\": {\"long_value\": 2}}', \
                          long_values = '{x}';",
    )
    .unwrap();
    let err = c
        .query("SELECT drift_import('bad', 'badev')", &[])
        .unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "22023", "{db:?}");
    assert!(db.detail().unwrap_or("").contains("long value 2"), "{db:?}");
}
