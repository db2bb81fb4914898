//! DriftDB foreign tables through a real client: durability across restarts and kill -9,
//! visibility between connections, and concurrent writers.

use driftdb_e2e::{Client, Cluster};
use std::sync::{Arc, Barrier};

fn users(c: &mut Client) {
    c.batch_execute(
        "CREATE FOREIGN TABLE users (id int NOT NULL, name text, age int) \
         SERVER drift OPTIONS (primary_key 'id')",
    )
    .unwrap();
}

fn ids(c: &mut Client, sql: &str) -> Vec<i32> {
    c.query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn sqlstate(e: &postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_string())
        .unwrap_or_else(|| format!("{e}"))
}

#[test]
fn committed_rows_survive_restart_and_kill_9() {
    let cluster = Cluster::start("durable", &[]);
    let mut c = cluster.create_db("app");
    users(&mut c);
    c.batch_execute("INSERT INTO users VALUES (1, 'a', 10), (2, 'b', 20)")
        .unwrap();
    c.batch_execute("UPDATE users SET age = 11 WHERE id = 1; DELETE FROM users WHERE id = 2")
        .unwrap();
    drop(c);
    cluster.stop();
    cluster.restart();
    let mut c = cluster.connect("app");
    let rows = c
        .query("SELECT id, name, age FROM users ORDER BY id", &[])
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].get::<_, i32>(0), rows[0].get::<_, i32>(2)),
        (1, 11)
    );

    // Each acknowledged commit survives an immediate kill -9 of the whole server.
    for round in 0..5 {
        let id = 100 + round;
        c.execute("INSERT INTO users VALUES ($1, 'k', 0)", &[&id])
            .unwrap();
        drop(c);
        cluster.crash();
        cluster.restart();
        c = cluster.connect("app");
        let got = ids(&mut c, "SELECT id FROM users WHERE id >= 100 ORDER BY id");
        assert_eq!(got, (100..=id).collect::<Vec<_>>(), "after crash {round}");
    }

    // A snapshot, then more changes, then a crash: the restarted server reads the
    // snapshot plus the changes after it.
    let covered: i64 = c
        .query_one("SELECT drift_snapshot('users')", &[])
        .unwrap()
        .get(0);
    assert!(covered > 0);
    c.batch_execute(
        "UPDATE users SET name = 'after' WHERE id = 100; DELETE FROM users WHERE id = 101",
    )
    .unwrap();
    drop(c);
    cluster.crash();
    cluster.restart();
    let mut c = cluster.connect("app");
    let rows = c
        .query(
            "SELECT id, name FROM users WHERE id IN (100, 101, 102) ORDER BY id",
            &[],
        )
        .unwrap();
    let got: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        vec![(100, "after".to_string()), (102, "k".to_string())]
    );
}

#[test]
fn other_connections_see_only_committed_changes() {
    let cluster = Cluster::start("visibility", &[]);
    let mut a = cluster.create_db("app");
    users(&mut a);
    let mut b = cluster.connect("app");
    let mut rr = cluster.connect("app");

    a.batch_execute("BEGIN; INSERT INTO users VALUES (1, 'x', 1)")
        .unwrap();
    // Own writes are visible inside the transaction, not outside it.
    assert_eq!(ids(&mut a, "SELECT id FROM users"), vec![1]);
    assert_eq!(ids(&mut b, "SELECT id FROM users"), Vec::<i32>::new());

    rr.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .unwrap();
    assert_eq!(ids(&mut rr, "SELECT id FROM users"), Vec::<i32>::new());

    a.batch_execute("COMMIT").unwrap();
    assert_eq!(ids(&mut b, "SELECT id FROM users"), vec![1]);
    // REPEATABLE READ keeps the snapshot of its first statement.
    assert_eq!(ids(&mut rr, "SELECT id FROM users"), Vec::<i32>::new());
    rr.batch_execute("COMMIT").unwrap();
    assert_eq!(ids(&mut rr, "SELECT id FROM users"), vec![1]);

    // A rolled-back transaction leaves nothing, for anyone.
    a.batch_execute("BEGIN; INSERT INTO users VALUES (2, 'y', 2); ROLLBACK")
        .unwrap();
    assert_eq!(ids(&mut b, "SELECT id FROM users ORDER BY id"), vec![1]);
    assert_eq!(ids(&mut a, "SELECT id FROM users ORDER BY id"), vec![1]);
}

#[test]
fn heap_and_driftdb_writes_commit_or_abort_together() {
    let cluster = Cluster::start("atomic", &[]);
    let mut c = cluster.create_db("app");
    users(&mut c);
    c.batch_execute("CREATE TABLE audit (id int primary key)")
        .unwrap();
    c.batch_execute("INSERT INTO audit VALUES (1)").unwrap();
    // The heap insert fails at the end: the DriftDB insert before it must vanish too.
    let err = c
        .batch_execute(
            "BEGIN; INSERT INTO users VALUES (5, 'z', 5); INSERT INTO audit VALUES (1); COMMIT",
        )
        .unwrap_err();
    assert_eq!(sqlstate(&err), "23505");
    c.batch_execute("ROLLBACK").unwrap();
    assert_eq!(ids(&mut c, "SELECT id FROM users"), Vec::<i32>::new());
    // A transaction that another inserter of its key waits for commits its heap and
    // DriftDB writes as one; the waiter then finds the key taken (23505). When it rolls
    // back instead, both writes vanish and the waiter's insert goes in.
    let mut other = cluster.connect("app");
    let other_pid: i32 = other
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    for (id, end) in [(7, "COMMIT"), (8, "ROLLBACK")] {
        c.batch_execute(&format!(
            "BEGIN; INSERT INTO audit VALUES ({id}); INSERT INTO users VALUES ({id}, 'v', 7)"
        ))
        .unwrap();
        let h = std::thread::spawn(move || {
            let r = other.execute("INSERT INTO users VALUES ($1, 'other', 0)", &[&id]);
            (r, other)
        });
        driftdb_e2e::lock_wait_of(&mut c_watch(&cluster), other_pid);
        c.batch_execute(end).unwrap();
        let (r, o) = h.join().unwrap();
        other = o;
        let audit: i64 = c
            .query_one("SELECT count(*) FROM audit WHERE id = $1", &[&id])
            .unwrap()
            .get(0);
        let name: String = c
            .query_one("SELECT name FROM users WHERE id = $1", &[&id])
            .unwrap()
            .get(0);
        if end == "COMMIT" {
            assert_eq!(sqlstate(&r.unwrap_err()), "23505");
            assert_eq!((audit, name.as_str()), (1, "v"));
        } else {
            assert_eq!(r.unwrap(), 1);
            assert_eq!((audit, name.as_str()), (0, "other"));
        }
    }
}

fn c_watch(cluster: &Cluster) -> Client {
    cluster.connect("app")
}

#[test]
fn concurrent_writers_from_several_connections() {
    let cluster = Arc::new(Cluster::start("writers", &[]));
    let mut c = cluster.create_db("app");
    users(&mut c);
    const WRITERS: i32 = 4;
    const EACH: i32 = 40;
    let barrier = Arc::new(Barrier::new(WRITERS as usize));
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let cluster = cluster.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut c = cluster.connect("app");
                barrier.wait();
                for i in 0..EACH {
                    let id = w * 1000 + i;
                    c.execute("INSERT INTO users VALUES ($1, 'w', $2)", &[&id, &w])
                        .unwrap();
                    if i % 4 == 0 {
                        c.execute("UPDATE users SET age = age + 100 WHERE id = $1", &[&id])
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let n: i64 = c
        .query_one("SELECT count(*) FROM users", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, i64::from(WRITERS * EACH));
    let bumped: i64 = c
        .query_one("SELECT count(*) FROM users WHERE age >= 100", &[])
        .unwrap()
        .get(0);
    assert_eq!(bumped, i64::from(WRITERS * ((EACH + 3) / 4)));
}

#[test]
fn concurrent_inserts_of_one_key_let_exactly_one_win() {
    let cluster = Arc::new(Cluster::start("samekey", &[]));
    let mut c = cluster.create_db("app");
    users(&mut c);
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|w: i32| {
            let cluster = cluster.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut c = cluster.connect("app");
                barrier.wait();
                // The later inserters wait for the first (row locks) and then find the key
                // taken, as on heap.
                let r = c.batch_execute(&format!(
                    "BEGIN; INSERT INTO users VALUES (1, 'racer', {w}); COMMIT"
                ));
                match r {
                    Ok(()) => None,
                    Err(e) => {
                        c.batch_execute("ROLLBACK").unwrap();
                        Some(sqlstate(&e))
                    }
                }
            })
        })
        .collect();
    let outcomes: Vec<Option<String>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        outcomes.iter().filter(|o| o.is_none()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes.iter().flatten().all(|s| s == "23505"),
        "{outcomes:?}"
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM users", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[test]
fn concurrent_updates_of_one_row_never_lose_one() {
    let cluster = Cluster::start("lostupdate", &[]);
    let mut a = cluster.create_db("app");
    users(&mut a);
    a.batch_execute("INSERT INTO users VALUES (1, 'n', 0), (2, 'm', 0)")
        .unwrap();
    let b = cluster.connect("app");

    // Both add one to age 0. READ COMMITTED: the second waits and adds to the first's
    // result; REPEATABLE READ: the second fails with 40001. Either way no update is lost.
    let mut b = Some(b);
    for (iso, expected) in [("READ COMMITTED", Ok(2)), ("REPEATABLE READ", Err("40001"))] {
        a.batch_execute(&format!("BEGIN ISOLATION LEVEL {iso}"))
            .unwrap();
        let mut bc = b.take().unwrap();
        bc.batch_execute(&format!("BEGIN ISOLATION LEVEL {iso}; SELECT 1"))
            .unwrap();
        a.batch_execute("UPDATE users SET age = age + 1 WHERE id = 1")
            .unwrap();
        let h = std::thread::spawn(move || {
            let r = bc.batch_execute("UPDATE users SET age = age + 1 WHERE id = 1; COMMIT");
            if r.is_err() {
                bc.batch_execute("ROLLBACK").unwrap();
            }
            (r, bc)
        });
        let mut watch = cluster.connect("app");
        let waiting: i64 = loop {
            let n: i64 = watch
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'tuple'",
                    &[],
                )
                .unwrap()
                .get(0);
            if n > 0 {
                break n;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(waiting, 1);
        a.batch_execute("COMMIT").unwrap();
        let (r, bc) = h.join().unwrap();
        b = Some(bc);
        match expected {
            Ok(age) => {
                r.unwrap();
                let got: i32 = a
                    .query_one("SELECT age FROM users WHERE id = 1", &[])
                    .unwrap()
                    .get(0);
                assert_eq!(got, age, "{iso}");
            }
            Err(state) => assert_eq!(sqlstate(&r.unwrap_err()), state, "{iso}"),
        }
    }
    let age: i32 = a
        .query_one("SELECT age FROM users WHERE id = 1", &[])
        .unwrap()
        .get(0);
    assert_eq!(age, 3);
    let mut b = b.unwrap();

    // Changes to different rows do not conflict.
    a.batch_execute("INSERT INTO users VALUES (3, 'x', 0)")
        .unwrap();
    a.batch_execute("BEGIN; UPDATE users SET age = 10 WHERE id = 1")
        .unwrap();
    b.batch_execute("BEGIN; UPDATE users SET age = 30 WHERE id = 3")
        .unwrap();
    a.batch_execute("COMMIT").unwrap();
    b.batch_execute("COMMIT").unwrap();
    let ages: Vec<i32> = a
        .query("SELECT age FROM users ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ages, vec![10, 0, 30]);
}

/// Keys and indexes under collations and extension types whose equal values are stored
/// differently (#22): a text key under a nondeterministic ICU collation and a citext key
/// are refused with 0A000 at CREATE, as is an index on such a column. Where this Postgres
/// is built without ICU or without contrib, what it lacks is asserted instead (the test
/// then checks that the missing piece is really missing).
#[test]
fn keys_under_nondeterministic_collations_and_citext_are_refused() {
    let cluster = Cluster::start("keycoll", &[]);
    let mut c = cluster.create_db("app");
    let icu = c.batch_execute(
        "CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)",
    );
    match icu {
        Ok(()) => {
            let e = c
                .batch_execute(
                    "CREATE FOREIGN TABLE kc (k text COLLATE ci NOT NULL) SERVER drift \
                       OPTIONS (primary_key 'k')",
                )
                .unwrap_err();
            assert_eq!(sqlstate(&e), "0A000", "{e:?}");
            assert!(format!("{e:?}").contains("nondeterministic"), "{e:?}");
            c.batch_execute(
                "CREATE FOREIGN TABLE ic (id int NOT NULL, t text COLLATE ci) SERVER drift \
                   OPTIONS (primary_key 'id')",
            )
            .unwrap();
            let e = c
                .batch_execute("SELECT drift_create_index('ic', 't')")
                .unwrap_err();
            assert_eq!(sqlstate(&e), "0A000", "{e:?}");
            // The same type under a deterministic collation is a key.
            c.batch_execute(
                "CREATE FOREIGN TABLE kd (k text COLLATE \"C\" NOT NULL) SERVER drift \
                   OPTIONS (primary_key 'k'); INSERT INTO kd VALUES ('A'), ('a')",
            )
            .unwrap();
        }
        Err(e) => {
            // Built without ICU: Postgres says so (0A000 "ICU is not supported").
            assert_eq!(sqlstate(&e), "0A000", "{e:?}");
            assert!(format!("{e:?}").contains("ICU"), "{e:?}");
        }
    }
    match c.batch_execute("CREATE EXTENSION citext") {
        Ok(()) => {
            let e = c
                .batch_execute(
                    "CREATE FOREIGN TABLE kx (k citext NOT NULL) SERVER drift \
                       OPTIONS (primary_key 'k')",
                )
                .unwrap_err();
            assert_eq!(sqlstate(&e), "0A000", "{e:?}");
        }
        Err(e) => {
            // No contrib in this build: the extension is missing (58P01 up to 16, 0A000
            // "is not available" from 17).
            assert!(["58P01", "0A000"].contains(&sqlstate(&e).as_str()), "{e:?}");
            let message = e.as_db_error().map(|d| d.message()).unwrap_or("");
            assert!(message.contains("citext"), "{e:?}");
        }
    }
}
