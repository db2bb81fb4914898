//! Row locks and waiting writers on DriftDB tables, through several real connections: the
//! waits are observed in `pg_stat_activity` and `pg_locks`, never slept for.

use driftdb_e2e::{lock_wait_of, Client, Cluster};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;

fn sqlstate(e: &postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_string())
        .unwrap_or_else(|| format!("{e}"))
}

fn pid(c: &mut Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0)
}

fn value(c: &mut Client, sql: &str) -> i32 {
    c.query_one(sql, &[]).unwrap().get(0)
}

fn table(c: &mut Client, name: &str) {
    c.batch_execute(&format!(
        "CREATE FOREIGN TABLE {name} (id int NOT NULL, v int) SERVER drift \
         OPTIONS (primary_key 'id'); INSERT INTO {name} SELECT g, 0 FROM generate_series(1, 5) g"
    ))
    .unwrap();
}

/// Runs `sql` on `c` in a thread; returns the rows it changed (or its error) and the
/// connection.
fn spawn(mut c: Client, sql: &str) -> JoinHandle<(Result<u64, postgres::Error>, Client)> {
    let sql = sql.to_string();
    std::thread::spawn(move || {
        let r = c.execute(sql.as_str(), &[]);
        (r, c)
    })
}

const CONF: &[&str] = &["deadlock_timeout = 100ms"];

#[test]
fn for_update_read_then_write_loses_no_increment() {
    // The ORM pattern of #20: read under FOR UPDATE, compute in the client, write back.
    let cluster = Arc::new(Cluster::start("forupdate", CONF));
    let mut c = cluster.create_db("app");
    table(&mut c, "fu");
    const CLIENTS: usize = 4;
    const EACH: i32 = 50;
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (cluster, barrier) = (cluster.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut c = cluster.connect("app");
                let lock = ["FOR UPDATE", "FOR NO KEY UPDATE"][i % 2];
                barrier.wait();
                for _ in 0..EACH {
                    let mut t = c.transaction().unwrap();
                    let v: i32 = t
                        .query_one(&format!("SELECT v FROM fu WHERE id = 1 {lock}"), &[])
                        .unwrap()
                        .get(0);
                    let n = t
                        .execute("UPDATE fu SET v = $1 WHERE id = 1", &[&(v + 1)])
                        .unwrap();
                    assert_eq!(n, 1);
                    t.commit().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        value(&mut c, "SELECT v FROM fu WHERE id = 1"),
        CLIENTS as i32 * EACH
    );
    // Every increment is an event in the row's history.
    let patches: i64 = c
        .query_one(
            "SELECT count(*) FROM drift_history('fu') WHERE row->>'id' = '1' AND op = 'PATCH'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(patches, CLIENTS as i64 * i64::from(EACH));
}

#[test]
fn writers_wait_and_recheck_the_new_version() {
    let cluster = Cluster::start("waiters", CONF);
    let mut a = cluster.create_db("app");
    table(&mut a, "w");
    let mut watch = cluster.connect("app");

    // READ COMMITTED: the second writer waits for the first, then applies its change to
    // the row the first left (heap's EvalPlanQual), instead of failing at COMMIT.
    a.batch_execute("BEGIN; UPDATE w SET v = v + 10 WHERE id = 1")
        .unwrap();
    let mut b = cluster.connect("app");
    let b_pid = pid(&mut b);
    let h = spawn(b, "UPDATE w SET v = v + 1 WHERE id = 1");
    assert_eq!(lock_wait_of(&mut watch, b_pid), "Lock:tuple");
    let waits_on: String = watch
        .query_one(
            "SELECT l.relation::regclass::text FROM pg_locks l \
             WHERE l.pid = $1 AND NOT l.granted",
            &[&b_pid],
        )
        .unwrap()
        .get(0);
    assert_eq!(waits_on, "w");
    a.batch_execute("COMMIT").unwrap();
    let (r, mut b) = h.join().unwrap();
    assert_eq!(r.unwrap(), 1);
    assert_eq!(value(&mut a, "SELECT v FROM w WHERE id = 1"), 11);

    // The statement's conditions are checked again on the new version: a row that no
    // longer matches is skipped.
    a.batch_execute("BEGIN; UPDATE w SET v = 100 WHERE id = 2")
        .unwrap();
    let h = spawn(b, "UPDATE w SET v = v + 1 WHERE v < 50");
    lock_wait_of(&mut watch, b_pid);
    a.batch_execute("COMMIT").unwrap();
    let (r, b2) = h.join().unwrap();
    b = b2;
    // Rows 1 (11), 3, 4 and 5 (0) matched and were not locked; row 2 became 100.
    assert_eq!(r.unwrap(), 4);
    assert_eq!(value(&mut a, "SELECT v FROM w WHERE id = 2"), 100);
    assert_eq!(value(&mut a, "SELECT v FROM w WHERE id = 1"), 12);

    // A row deleted meanwhile is skipped, with no error; RETURNING shows only what changed.
    a.batch_execute("BEGIN; DELETE FROM w WHERE id = 3")
        .unwrap();
    let h = spawn(b, "UPDATE w SET v = -1 WHERE id IN (3, 4)");
    lock_wait_of(&mut watch, b_pid);
    a.batch_execute("COMMIT").unwrap();
    let (r, b2) = h.join().unwrap();
    b = b2;
    assert_eq!(r.unwrap(), 1);
    assert_eq!(value(&mut a, "SELECT v FROM w WHERE id = 4"), -1);
    assert_eq!(value(&mut a, "SELECT count(*)::int FROM w WHERE id = 3"), 0);

    // A DELETE waits too, and deletes the new version.
    a.batch_execute("BEGIN; UPDATE w SET v = 7 WHERE id = 4")
        .unwrap();
    let h = spawn(b, "DELETE FROM w WHERE id = 4");
    lock_wait_of(&mut watch, b_pid);
    a.batch_execute("COMMIT").unwrap();
    let (r, b2) = h.join().unwrap();
    b = b2;
    assert_eq!(r.unwrap(), 1);

    // A rolled-back first writer: the second applies to the row as it was.
    a.batch_execute("BEGIN; UPDATE w SET v = 500 WHERE id = 5")
        .unwrap();
    let h = spawn(b, "UPDATE w SET v = v + 2 WHERE id = 5");
    lock_wait_of(&mut watch, b_pid);
    a.batch_execute("ROLLBACK").unwrap();
    let (r, b2) = h.join().unwrap();
    b = b2;
    assert_eq!(r.unwrap(), 1);
    assert_eq!(value(&mut a, "SELECT count(*)::int FROM w WHERE id = 4"), 0);
    assert_eq!(value(&mut a, "SELECT v FROM w WHERE id = 5"), 3);

    // REPEATABLE READ: the waiter fails with 40001 once the first commits, as on heap.
    b.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1 FROM w LIMIT 1")
        .unwrap();
    a.batch_execute("BEGIN; UPDATE w SET v = 9 WHERE id = 5")
        .unwrap();
    let h = spawn(b, "UPDATE w SET v = v + 1 WHERE id = 5");
    lock_wait_of(&mut watch, b_pid);
    a.batch_execute("COMMIT").unwrap();
    let (r, b2) = h.join().unwrap();
    b = b2;
    assert_eq!(sqlstate(&r.unwrap_err()), "40001");
    b.batch_execute("ROLLBACK").unwrap();
    assert_eq!(value(&mut a, "SELECT v FROM w WHERE id = 5"), 9);

    // lock_timeout ends a wait with 55P03, and the waiter's statement leaves nothing.
    a.batch_execute("BEGIN; UPDATE w SET v = 1 WHERE id = 5")
        .unwrap();
    b.batch_execute("SET lock_timeout = '50ms'").unwrap();
    let err = b
        .execute("UPDATE w SET v = 2 WHERE id IN (1, 5)", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&err), "55P03", "{err}");
    a.batch_execute("COMMIT").unwrap();
    assert_eq!(value(&mut b, "SELECT v FROM w WHERE id = 1"), 12);
    assert_eq!(value(&mut b, "SELECT v FROM w WHERE id = 5"), 1);
}

#[test]
fn a_row_moving_between_partitions_waits_and_moves_the_new_version() {
    let cluster = Cluster::start("movers", CONF);
    let mut a = cluster.create_db("app");
    a.batch_execute(
        "CREATE TABLE mp (id int NOT NULL, region text NOT NULL, v int) \
           PARTITION BY LIST (region); \
         CREATE FOREIGN TABLE mp_eu PARTITION OF mp FOR VALUES IN ('eu') \
           SERVER drift OPTIONS (primary_key 'id'); \
         CREATE FOREIGN TABLE mp_us PARTITION OF mp FOR VALUES IN ('us') \
           SERVER drift OPTIONS (primary_key 'id'); \
         INSERT INTO mp SELECT g, 'eu', 0 FROM generate_series(1, 4) g",
    )
    .unwrap();
    let mut watch = cluster.connect("app");
    let mut b = cluster.connect("app");
    let b_pid = pid(&mut b);
    let where_is = |c: &mut Client, id: i32| -> Vec<(String, i32)> {
        c.query(
            "SELECT tableoid::regclass::text, v FROM mp WHERE id = $1",
            &[&id],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };

    // The mover waits for the writer of the row, then moves the row as the writer left
    // it (READ COMMITTED's recheck, as heap's row movement does).
    a.batch_execute("BEGIN; UPDATE mp SET v = v + 10 WHERE id = 1")
        .unwrap();
    let h = spawn(b, "UPDATE mp SET region = 'us', v = v + 1 WHERE id = 1");
    assert_eq!(lock_wait_of(&mut watch, b_pid), "Lock:tuple");
    a.batch_execute("COMMIT").unwrap();
    let (r, b2) = h.join().unwrap();
    b = b2;
    assert_eq!(r.unwrap(), 1);
    assert_eq!(where_is(&mut a, 1), [("mp_us".to_string(), 11)]);

    // A row deleted meanwhile is not moved: no row comes back to life.
    a.batch_execute("BEGIN; DELETE FROM mp WHERE id = 2")
        .unwrap();
    let h = spawn(b, "UPDATE mp SET region = 'us' WHERE id = 2");
    lock_wait_of(&mut watch, b_pid);
    a.batch_execute("COMMIT").unwrap();
    let (r, b2) = h.join().unwrap();
    b = b2;
    assert_eq!(r.unwrap(), 0);
    assert!(where_is(&mut a, 2).is_empty());

    // A row that no longer matches the statement's conditions stays where it is.
    a.batch_execute("BEGIN; UPDATE mp SET v = 100 WHERE id = 3")
        .unwrap();
    let h = spawn(b, "UPDATE mp SET region = 'us' WHERE id = 3 AND v < 50");
    lock_wait_of(&mut watch, b_pid);
    a.batch_execute("COMMIT").unwrap();
    let (r, b2) = h.join().unwrap();
    b = b2;
    assert_eq!(r.unwrap(), 0);
    assert_eq!(where_is(&mut a, 3), [("mp_eu".to_string(), 100)]);

    // Moving a row into a partition waits for a transaction inserting the same key there,
    // and fails as a duplicate when it commits.
    a.batch_execute("BEGIN; INSERT INTO mp VALUES (4, 'us', 7)")
        .unwrap();
    let h = spawn(
        b,
        "UPDATE mp SET region = 'us' WHERE region = 'eu' AND id = 4",
    );
    lock_wait_of(&mut watch, b_pid);
    a.batch_execute("COMMIT").unwrap();
    let (r, _b) = h.join().unwrap();
    assert_eq!(sqlstate(&r.unwrap_err()), "23505");
    let mut rows = a
        .query(
            "SELECT tableoid::regclass::text, v FROM mp WHERE id = 4 ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i32>(1)))
        .collect::<Vec<_>>();
    rows.sort();
    assert_eq!(rows, [("mp_eu".to_string(), 0), ("mp_us".to_string(), 7)]);
}

#[test]
fn before_row_triggers_fire_once_on_the_row_the_statement_changes() {
    // Heap locks a row and finds its newest version before BEFORE ROW triggers fire
    // (GetTupleForTrigger): a waiting UPDATE's trigger fires once, on the row it changes.
    let cluster = Cluster::start("brtrig", CONF);
    let mut a = cluster.create_db("app");
    a.batch_execute(
        "CREATE FOREIGN TABLE bt (id int NOT NULL, v int, w int) SERVER drift \
           OPTIONS (primary_key 'id'); \
         INSERT INTO bt VALUES (1, 1, 0), (2, 2, 0), (3, 3, 0), (4, 4, 0); \
         CREATE TABLE audit (op text, id int, v int); \
         CREATE FUNCTION bt_note() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           INSERT INTO audit VALUES (TG_OP, OLD.id, OLD.v); \
           IF TG_OP = 'DELETE' THEN RETURN OLD; END IF; \
           NEW.w := NEW.v * 10; RETURN NEW; END $$; \
         CREATE TRIGGER bt_upd BEFORE UPDATE ON bt FOR EACH ROW EXECUTE FUNCTION bt_note(); \
         CREATE TRIGGER bt_del BEFORE DELETE ON bt FOR EACH ROW EXECUTE FUNCTION bt_note();",
    )
    .unwrap();
    let mut watch = cluster.connect("app");
    let mut b = cluster.connect("app");
    let b_pid = pid(&mut b);
    let audit = |c: &mut Client| -> Vec<(String, i32, i32)> {
        c.query("SELECT op, id, v FROM audit ORDER BY op, id, v", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };

    // UPDATE: the waiter's trigger sees the row the first writer left, and what it sets
    // is kept.
    a.batch_execute("BEGIN; UPDATE bt SET v = v + 10 WHERE id = 1")
        .unwrap();
    let h = spawn(b, "UPDATE bt SET v = v + 1 WHERE v > 0 AND id = 1");
    assert_eq!(lock_wait_of(&mut watch, b_pid), "Lock:tuple");
    a.batch_execute("COMMIT").unwrap();
    let (r, b2) = h.join().unwrap();
    b = b2;
    assert_eq!(r.unwrap(), 1);
    let row: (i32, i32) = {
        let r = a
            .query_one("SELECT v, w FROM bt WHERE id = 1", &[])
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(row, (12, 120));
    assert_eq!(
        audit(&mut a),
        [("UPDATE".to_string(), 1, 1), ("UPDATE".to_string(), 1, 11)]
    );

    // A row the statement's conditions leave out is not locked (heap locks only the rows
    // it changes): the second statement does not wait for the first's row 2.
    a.batch_execute("BEGIN; UPDATE bt SET v = 20 WHERE id = 2")
        .unwrap();
    b.batch_execute("SET lock_timeout = '5s'").unwrap();
    assert_eq!(
        b.execute("UPDATE bt SET v = v + 1 WHERE v = 3", &[])
            .unwrap(),
        1
    );
    // The newest version no longer matching: skipped, its trigger not fired.
    let h = spawn(b, "UPDATE bt SET v = v + 1 WHERE v = 2");
    lock_wait_of(&mut watch, b_pid);
    a.batch_execute("COMMIT").unwrap();
    let (r, b2) = h.join().unwrap();
    b = b2;
    assert_eq!(r.unwrap(), 0);

    // DELETE: the trigger sees the newest row too.
    a.batch_execute("BEGIN; UPDATE bt SET v = 40 WHERE id = 4")
        .unwrap();
    let h = spawn(b, "DELETE FROM bt WHERE id = 4");
    lock_wait_of(&mut watch, b_pid);
    a.batch_execute("COMMIT").unwrap();
    let (r, b2) = h.join().unwrap();
    b = b2;
    assert_eq!(r.unwrap(), 1);
    let deletes: Vec<_> = audit(&mut a)
        .into_iter()
        .filter(|(op, _, _)| op == "DELETE")
        .collect();
    assert_eq!(deletes, [("DELETE".to_string(), 4, 40)]);

    // REPEATABLE READ: 40001 once the first writer commits, with no trigger fired.
    let before = audit(&mut a).len();
    b.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1 FROM bt LIMIT 1")
        .unwrap();
    a.batch_execute("BEGIN; UPDATE bt SET v = 50 WHERE id = 3")
        .unwrap();
    let h = spawn(b, "UPDATE bt SET v = v + 1 WHERE id = 3");
    lock_wait_of(&mut watch, b_pid);
    a.batch_execute("COMMIT").unwrap();
    let (r, mut b) = h.join().unwrap();
    assert_eq!(sqlstate(&r.unwrap_err()), "40001");
    b.batch_execute("ROLLBACK").unwrap();
    // The first writer's own trigger fired (one row); the waiter's did not.
    assert_eq!(audit(&mut a).len(), before + 1);
}

#[test]
fn locking_reads_conflict_as_heap_row_locks_do() {
    let cluster = Cluster::start("strengths", CONF);
    let mut a = cluster.create_db("app");
    table(&mut a, "s");
    let mut b = cluster.connect("app");
    let ok = |c: &mut Client, sql: &str| c.query(sql, &[]).map(|r| r.len());

    // The row-lock conflict table, probed with NOWAIT: 55P03 exactly where heap has it.
    let strengths = [
        "FOR KEY SHARE",
        "FOR SHARE",
        "FOR NO KEY UPDATE",
        "FOR UPDATE",
    ];
    let conflicts = [
        [false, false, false, true],
        [false, false, true, true],
        [false, true, true, true],
        [true, true, true, true],
    ];
    for (i, held) in strengths.iter().enumerate() {
        a.batch_execute(&format!("BEGIN; SELECT * FROM s WHERE id = 1 {held}"))
            .unwrap();
        for (j, asked) in strengths.iter().enumerate() {
            let r = ok(
                &mut b,
                &format!("SELECT * FROM s WHERE id = 1 {asked} NOWAIT"),
            );
            match r {
                Ok(n) => {
                    assert!(!conflicts[i][j], "{asked} granted beside {held}");
                    assert_eq!(n, 1);
                }
                Err(e) => {
                    assert!(conflicts[i][j], "{asked} refused beside {held}: {e}");
                    assert_eq!(sqlstate(&e), "55P03", "{e}");
                }
            }
        }
        a.batch_execute("COMMIT").unwrap();
    }

    // An UPDATE takes FOR NO KEY UPDATE strength: FOR KEY SHARE still passes.
    a.batch_execute("BEGIN; UPDATE s SET v = 1 WHERE id = 2")
        .unwrap();
    assert_eq!(
        ok(&mut b, "SELECT * FROM s WHERE id = 2 FOR KEY SHARE NOWAIT").unwrap(),
        1
    );
    let e = ok(&mut b, "SELECT * FROM s WHERE id = 2 FOR SHARE NOWAIT").unwrap_err();
    assert_eq!(sqlstate(&e), "55P03");
    // SKIP LOCKED leaves the locked row out and returns the others.
    let ids: Vec<i32> = b
        .query("SELECT id FROM s ORDER BY id FOR UPDATE SKIP LOCKED", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![1, 3, 4, 5]);
    a.batch_execute("COMMIT").unwrap();

    // Locks go with the subtransaction that took them, and with ROLLBACK.
    a.batch_execute(
        "BEGIN; SELECT * FROM s WHERE id = 3 FOR UPDATE; SAVEPOINT p; \
         SELECT * FROM s WHERE id = 4 FOR UPDATE",
    )
    .unwrap();
    assert!(ok(&mut b, "SELECT * FROM s WHERE id = 4 FOR UPDATE NOWAIT").is_err());
    a.batch_execute("ROLLBACK TO p").unwrap();
    assert_eq!(
        ok(&mut b, "SELECT * FROM s WHERE id = 4 FOR UPDATE NOWAIT").unwrap(),
        1
    );
    assert!(ok(&mut b, "SELECT * FROM s WHERE id = 3 FOR UPDATE NOWAIT").is_err());
    a.batch_execute("ROLLBACK").unwrap();
    assert_eq!(
        ok(&mut b, "SELECT * FROM s WHERE id = 3 FOR UPDATE NOWAIT").unwrap(),
        1
    );

    // A locked row changed meanwhile comes back as the change left it, and only if it
    // still matches the query (READ COMMITTED).
    a.batch_execute("BEGIN; UPDATE s SET v = 40 WHERE id = 5")
        .unwrap();
    let b_pid = pid(&mut b);
    let mut watch = cluster.connect("app");
    let h = std::thread::spawn(move || {
        let r = b.query(
            "SELECT id, v FROM s WHERE v < 10 ORDER BY id FOR UPDATE",
            &[],
        );
        let rows: Vec<(i32, i32)> = r.unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
        (rows, b)
    });
    lock_wait_of(&mut watch, b_pid);
    a.batch_execute("COMMIT").unwrap();
    let (rows, mut b) = h.join().unwrap();
    assert_eq!(rows, vec![(1, 0), (2, 1), (3, 0), (4, 0)]);

    // Locking the past is refused; locking rows joined with a heap table works.
    let now: i64 = b
        .query_one("SELECT drift_current_seq()", &[])
        .unwrap()
        .get(0);
    b.batch_execute(&format!("SET driftdb.as_of = '{now}'"))
        .unwrap();
    let e = ok(&mut b, "SELECT * FROM s FOR UPDATE").unwrap_err();
    assert_eq!(sqlstate(&e), "25006", "{e}");
    b.batch_execute("RESET driftdb.as_of; CREATE TABLE h (id int); INSERT INTO h VALUES (2)")
        .unwrap();
    a.batch_execute("BEGIN; SELECT * FROM s JOIN h USING (id) FOR UPDATE OF s")
        .unwrap();
    let e = ok(&mut b, "SELECT * FROM s WHERE id = 2 FOR UPDATE NOWAIT").unwrap_err();
    assert_eq!(sqlstate(&e), "55P03");
    assert_eq!(
        ok(&mut b, "SELECT * FROM s WHERE id = 1 FOR UPDATE NOWAIT").unwrap(),
        1
    );
    a.batch_execute("COMMIT").unwrap();
}

#[test]
fn deadlocks_through_driftdb_rows_end_in_40p01() {
    let cluster = Cluster::start("deadlock", CONF);
    let mut a = cluster.create_db("app");
    table(&mut a, "d");
    a.batch_execute(
        "CREATE TABLE heap_t (id int PRIMARY KEY, v int); INSERT INTO heap_t VALUES (1, 0)",
    )
    .unwrap();
    let mut watch = cluster.connect("app");
    // Between two DriftDB rows, then between a DriftDB row and a heap row.
    for (first_b, second_a) in [
        (
            "UPDATE d SET v = 2 WHERE id = 2",
            "UPDATE d SET v = 1 WHERE id = 2",
        ),
        (
            "UPDATE heap_t SET v = 2 WHERE id = 1",
            "UPDATE heap_t SET v = 1 WHERE id = 1",
        ),
    ] {
        let mut b = cluster.connect("app");
        let b_pid = pid(&mut b);
        a.batch_execute("BEGIN; UPDATE d SET v = 1 WHERE id = 1")
            .unwrap();
        b.batch_execute(&format!("BEGIN; {first_b}")).unwrap();
        // B waits for A's row...
        let h = spawn(b, "UPDATE d SET v = 2 WHERE id = 1");
        assert_eq!(lock_wait_of(&mut watch, b_pid), "Lock:tuple");
        // ...and A for B's: one of them is chosen as the victim.
        let ra = a.execute(second_a, &[]);
        let (rb, mut b) = h.join().unwrap();
        let states: Vec<String> = [&ra, &rb]
            .iter()
            .filter_map(|r| r.as_ref().err().map(sqlstate))
            .collect();
        assert_eq!(states, vec!["40P01".to_string()], "{ra:?} {rb:?}");
        a.batch_execute("ROLLBACK").unwrap();
        b.batch_execute("ROLLBACK").unwrap();
    }
    assert_eq!(value(&mut a, "SELECT sum(v)::int FROM d"), 0);
}

#[test]
fn skip_locked_queue_takes_each_job_exactly_once() {
    let cluster = Arc::new(Cluster::start("queue", CONF));
    let mut c = cluster.create_db("app");
    c.batch_execute(
        "CREATE FOREIGN TABLE jobs (id int NOT NULL, taken_by int) SERVER drift \
         OPTIONS (primary_key 'id'); \
         INSERT INTO jobs SELECT g, NULL FROM generate_series(1, 200) g",
    )
    .unwrap();
    const WORKERS: i32 = 4;
    let barrier = Arc::new(Barrier::new(WORKERS as usize));
    let handles: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (cluster, barrier) = (cluster.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut c = cluster.connect("app");
                barrier.wait();
                let mut taken = Vec::new();
                loop {
                    let mut t = c.transaction().unwrap();
                    let row = t
                        .query_opt(
                            "SELECT id FROM jobs WHERE taken_by IS NULL ORDER BY id \
                             LIMIT 1 FOR UPDATE SKIP LOCKED",
                            &[],
                        )
                        .unwrap();
                    let Some(row) = row else { break };
                    let id: i32 = row.get(0);
                    let n = t
                        .execute("UPDATE jobs SET taken_by = $1 WHERE id = $2", &[&w, &id])
                        .unwrap();
                    assert_eq!(n, 1);
                    t.commit().unwrap();
                    taken.push(id);
                }
                taken
            })
        })
        .collect();
    let mut all: Vec<i32> = Vec::new();
    let mut busy = 0;
    for h in handles {
        let taken = h.join().unwrap();
        busy += usize::from(!taken.is_empty());
        all.extend(taken);
    }
    all.sort();
    assert_eq!(all, (1..=200).collect::<Vec<_>>(), "each job exactly once");
    assert!(busy > 1, "the workers took jobs side by side");
    let untaken: i64 = c
        .query_one("SELECT count(*) FROM jobs WHERE taken_by IS NULL", &[])
        .unwrap()
        .get(0);
    assert_eq!(untaken, 0);
}

#[test]
fn inserts_of_one_key_wait_for_each_other() {
    let cluster = Cluster::start("inserters", CONF);
    let mut a = cluster.create_db("app");
    table(&mut a, "k");
    let mut watch = cluster.connect("app");
    let mut b = cluster.connect("app");
    let b_pid = pid(&mut b);

    // ON CONFLICT DO NOTHING waits for a concurrent inserter of the key and skips it if
    // that one commits...
    a.batch_execute("BEGIN; INSERT INTO k VALUES (10, 1)")
        .unwrap();
    let h = spawn(
        b,
        "INSERT INTO k VALUES (10, 2), (11, 2) ON CONFLICT DO NOTHING",
    );
    assert_eq!(lock_wait_of(&mut watch, b_pid), "Lock:tuple");
    a.batch_execute("COMMIT").unwrap();
    let (r, b2) = h.join().unwrap();
    b = b2;
    assert_eq!(r.unwrap(), 1);
    assert_eq!(value(&mut a, "SELECT v FROM k WHERE id = 10"), 1);
    // ...and inserts it if that one rolls back.
    a.batch_execute("BEGIN; INSERT INTO k VALUES (12, 1)")
        .unwrap();
    let h = spawn(
        b,
        "INSERT INTO k VALUES (12, 2), (13, 2) ON CONFLICT DO NOTHING",
    );
    lock_wait_of(&mut watch, b_pid);
    a.batch_execute("ROLLBACK").unwrap();
    let (r, b2) = h.join().unwrap();
    b = b2;
    assert_eq!(r.unwrap(), 2);
    assert_eq!(value(&mut a, "SELECT v FROM k WHERE id = 12"), 2);

    // A plain INSERT of a key another transaction is inserting waits, then fails with
    // 23505 once it commits.
    a.batch_execute("BEGIN; INSERT INTO k VALUES (14, 1)")
        .unwrap();
    let h = spawn(b, "INSERT INTO k VALUES (14, 2)");
    lock_wait_of(&mut watch, b_pid);
    a.batch_execute("COMMIT").unwrap();
    let (r, b2) = h.join().unwrap();
    b = b2;
    assert_eq!(sqlstate(&r.unwrap_err()), "23505");
    // An INSERT of a key another transaction is deleting waits, then succeeds.
    a.batch_execute("BEGIN; DELETE FROM k WHERE id = 14")
        .unwrap();
    let h = spawn(b, "INSERT INTO k VALUES (14, 3)");
    lock_wait_of(&mut watch, b_pid);
    a.batch_execute("COMMIT").unwrap();
    let (r, mut b) = h.join().unwrap();
    assert_eq!(r.unwrap(), 1);
    assert_eq!(value(&mut a, "SELECT v FROM k WHERE id = 14"), 3);

    // ON CONFLICT DO NOTHING that found the key taken holds no lock on it (as on heap).
    a.batch_execute("BEGIN; INSERT INTO k VALUES (14, 9) ON CONFLICT DO NOTHING")
        .unwrap();
    assert_eq!(
        b.execute("UPDATE k SET v = 4 WHERE id = 14", &[]).unwrap(),
        1
    );
    a.batch_execute("COMMIT").unwrap();
    assert_eq!(value(&mut a, "SELECT v FROM k WHERE id = 14"), 4);
}

#[test]
fn many_row_locks_become_one_table_lock() {
    let cluster = Cluster::start("escalation", CONF);
    let mut a = cluster.create_db("app");
    a.batch_execute(
        "CREATE FOREIGN TABLE e (id int NOT NULL, v int) SERVER drift OPTIONS (primary_key 'id'); \
         INSERT INTO e SELECT g, 0 FROM generate_series(1, 1000) g",
    )
    .unwrap();
    let mut watch = cluster.connect("app");
    let mut b = cluster.connect("app");
    let b_pid = pid(&mut b);
    let a_pid = pid(&mut a);
    let locks = |c: &mut Client, p: i32, kind: &str| -> i64 {
        c.query_one(
            "SELECT count(*) FROM pg_locks WHERE pid = $1 AND locktype = $2 AND granted",
            &[&p, &kind],
        )
        .unwrap()
        .get(0)
    };
    // Alone, a transaction that updates 1,000 rows holds 16 row locks and then the table.
    a.batch_execute("SET driftdb.row_lock_escalation = 16; BEGIN; UPDATE e SET v = 1")
        .unwrap();
    assert_eq!(locks(&mut watch, a_pid, "tuple"), 16);
    let mode: String = watch
        .query_one(
            "SELECT string_agg(mode, ',' ORDER BY mode) FROM pg_locks \
             WHERE pid = $1 AND locktype = 'relation' AND relation = 'e'::regclass",
            &[&a_pid],
        )
        .unwrap()
        .get(0);
    assert_eq!(mode, "ExclusiveLock,RowExclusiveLock");
    // Other writers of the table wait for it; plain readers do not.
    assert_eq!(
        value(&mut b, "SELECT count(*)::int FROM e WHERE v = 0"),
        1000
    );
    let h = spawn(b, "UPDATE e SET v = 2 WHERE id = 1");
    assert_eq!(lock_wait_of(&mut watch, b_pid), "Lock:relation");
    a.batch_execute("COMMIT").unwrap();
    let (r, mut b) = h.join().unwrap();
    assert_eq!(r.unwrap(), 1);

    // With another writer in the table, the table lock is tried without waiting (and row
    // locks go on) until four times the number, where the transaction waits for it.
    b.batch_execute("BEGIN; UPDATE e SET v = 3 WHERE id = 1000")
        .unwrap();
    let h = spawn(a, "UPDATE e SET v = 4 WHERE id < 1000");
    assert_eq!(lock_wait_of(&mut watch, a_pid), "Lock:relation");
    assert_eq!(locks(&mut watch, a_pid, "tuple"), 64);
    b.batch_execute("COMMIT").unwrap();
    let (r, mut a) = h.join().unwrap();
    assert_eq!(r.unwrap(), 999);
    assert_eq!(
        value(&mut a, "SELECT count(*)::int FROM e WHERE v = 4"),
        999
    );
    assert_eq!(value(&mut a, "SELECT v FROM e WHERE id = 1000"), 3);
}

#[test]
fn no_row_lock_survives_a_crash() {
    let cluster = Cluster::start("lockcrash", CONF);
    let mut a = cluster.create_db("app");
    table(&mut a, "c");
    a.batch_execute("UPDATE c SET v = 5 WHERE id = 1").unwrap();
    a.batch_execute(
        "BEGIN; SELECT * FROM c WHERE id = 1 FOR UPDATE; UPDATE c SET v = 6 WHERE id = 2; \
         INSERT INTO c VALUES (6, 6)",
    )
    .unwrap();
    cluster.crash();
    cluster.restart();
    let mut b = cluster.connect("app");
    b.batch_execute("SET lock_timeout = '1s'").unwrap();
    // Nothing is locked, the committed change is there, the uncommitted ones are not.
    let n = b
        .query(
            "SELECT * FROM c WHERE id IN (1, 2, 6) FOR UPDATE NOWAIT",
            &[],
        )
        .unwrap()
        .len();
    assert_eq!(n, 2);
    assert_eq!(b.execute("INSERT INTO c VALUES (6, 7)", &[]).unwrap(), 1);
    assert_eq!(value(&mut b, "SELECT v FROM c WHERE id = 1"), 5);
    assert_eq!(value(&mut b, "SELECT v FROM c WHERE id = 2"), 0);
    assert_eq!(value(&mut b, "SELECT v FROM c WHERE id = 6"), 7);
}

#[test]
fn prepared_transactions_keep_row_locks_and_refuse_driftdb_schema_work() {
    let cluster = Cluster::start("prepared", &["max_prepared_transactions = 4"]);
    let mut a = cluster.create_db("app");
    table(&mut a, "p");
    let mut b = cluster.connect("app");
    // A row lock is all a prepared transaction may hold of DriftDB, and it keeps it until
    // COMMIT PREPARED, as a heap row lock.
    a.batch_execute("BEGIN; SELECT * FROM p WHERE id = 1 FOR UPDATE; PREPARE TRANSACTION 'q'")
        .unwrap();
    let e = b
        .query("SELECT * FROM p WHERE id = 1 FOR UPDATE NOWAIT", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "55P03");
    // It keeps it through a restart: the key's tag is computed again with the cluster's
    // row-lock key, which lasts as long as the cluster.
    let tag = |c: &mut Client| -> (i32, i16) {
        let r = c
            .query_one(
                "SELECT page, tuple FROM pg_locks WHERE locktype = 'tuple' \
                 AND relation = 'p'::regclass",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let before = tag(&mut b);
    drop((a, b));
    cluster.stop();
    cluster.restart();
    let mut a = cluster.connect("app");
    let mut b = cluster.connect("app");
    assert_eq!(tag(&mut b), before);
    let e = b
        .query("SELECT * FROM p WHERE id = 1 FOR UPDATE NOWAIT", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&e), "55P03");
    // Another cluster has a key of its own: the same key of the same table has another
    // tag there, so nobody can pick keys whose tags collide from knowing the hash alone.
    let other = Cluster::start("prepared-other", &[]);
    let mut o = other.create_db("app");
    table(&mut o, "p");
    o.batch_execute("BEGIN; SELECT * FROM p WHERE id = 1 FOR UPDATE")
        .unwrap();
    assert_ne!(tag(&mut o), before);
    o.batch_execute("COMMIT").unwrap();
    b.batch_execute("COMMIT PREPARED 'q'").unwrap();
    assert_eq!(
        b.query("SELECT * FROM p WHERE id = 1 FOR UPDATE NOWAIT", &[])
            .unwrap()
            .len(),
        1
    );
    // Writes, index work and drops are refused at PREPARE, and leave nothing (#22: an
    // index made in a prepared transaction was silently lost).
    for work in [
        "UPDATE p SET v = 1 WHERE id = 1",
        "SELECT drift_create_index('p', 'v')",
        "DROP FOREIGN TABLE p",
    ] {
        let e = a
            .batch_execute(&format!("BEGIN; {work}; PREPARE TRANSACTION 'r'"))
            .unwrap_err();
        assert_eq!(sqlstate(&e), "0A000", "{work}: {e}");
        a.batch_execute("ROLLBACK").unwrap();
    }
    let prepared: i64 = a
        .query_one("SELECT count(*) FROM pg_prepared_xacts", &[])
        .unwrap()
        .get(0);
    assert_eq!(prepared, 0);
    assert_eq!(value(&mut a, "SELECT sum(v)::int FROM p"), 0);
    let indexes: Vec<String> = a
        .query_one(
            "SELECT indexes FROM drift_tables WHERE table_name = 'p'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(indexes.is_empty(), "{indexes:?}");
}
