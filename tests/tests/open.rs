//! Opening DriftDB in a new session (#19): a backend's first statement reads the journal's
//! index in place, not the history, so its cost does not grow with the commits before it;
//! its first write to a table starts where the last writer left the table's log, without
//! reading the log's last segment to find its end.

use driftdb_e2e::{Client, Cluster};

fn backend_stat(c: &mut Client, name: &str) -> i64 {
    c.query_one(
        "SELECT value FROM drift_backend_stats() WHERE name = $1",
        &[&name],
    )
    .unwrap()
    .get(0)
}

fn journal_groups_read(c: &mut Client) -> i64 {
    backend_stat(c, "journal_groups_read")
}

#[test]
fn a_new_session_reads_no_history_when_it_opens() {
    let cluster = Cluster::start("open", &[]);
    let mut c = cluster.create_db("app");
    c.batch_execute(
        "CREATE FOREIGN TABLE t (id int NOT NULL, v int) SERVER drift \
           OPTIONS (primary_key 'id');
         INSERT INTO t VALUES (1, 0);
         CREATE PROCEDURE bump(n int) LANGUAGE plpgsql AS $$
         BEGIN
           FOR i IN 1..n LOOP
             UPDATE t SET v = i WHERE id = 1;
             COMMIT;
           END LOOP;
         END $$;",
    )
    .unwrap();
    // On its own: a CALL that commits cannot run in the implicit transaction of a
    // multi-statement query.
    c.batch_execute("CALL bump(3000)").unwrap();
    // The session that committed read its own 3,001 groups back (for their places in the
    // index): the counter counts.
    assert!(
        journal_groups_read(&mut c) >= 3001,
        "{}",
        journal_groups_read(&mut c)
    );
    let check = |c: &mut Client| {
        let v: i32 = c
            .query_one("SELECT v FROM t WHERE id = 1", &[])
            .unwrap()
            .get(0);
        assert_eq!(v, 3000);
        let seq: i64 = c
            .query_one("SELECT drift_current_seq()", &[])
            .unwrap()
            .get(0);
        assert_eq!(seq, 3001);
        let n: i64 = c
            .query_one("SELECT count(*) FROM drift_history('t')", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 3001);
    };
    // A new session finds every group in the index: it reads none from the journal.
    let mut s = cluster.connect("app");
    check(&mut s);
    assert_eq!(journal_groups_read(&mut s), 0);
    // After kill -9 (the index files are not synced by commits, and the restart's
    // recovery repairs them): the same.
    drop(c);
    drop(s);
    cluster.crash();
    cluster.restart();
    let mut s = cluster.connect("app");
    check(&mut s);
    let mut s2 = cluster.connect("app");
    check(&mut s2);
    assert_eq!(journal_groups_read(&mut s2), 0);
}

#[test]
fn a_new_sessions_first_write_takes_up_where_the_last_writer_left_the_log() {
    let cluster = Cluster::start("open_write", &[]);
    let mut c = cluster.create_db("app");
    c.batch_execute(
        "CREATE FOREIGN TABLE t (id int NOT NULL, v text) SERVER drift \
           OPTIONS (primary_key 'id');
         INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g;",
    )
    .unwrap();
    // Sessions that each write once, as a connection per request does: none reads the
    // log's last segment to find its end, and every write lands.
    for i in 0..5 {
        let mut s = cluster.connect("app");
        s.execute(
            "UPDATE t SET v = $1 WHERE id = 7",
            &[&format!("session {i}")],
        )
        .unwrap();
        s.execute("INSERT INTO t VALUES ($1, 'new')", &[&(100_000 + i)])
            .unwrap();
        assert_eq!(backend_stat(&mut s, "writer_recoveries"), 0, "session {i}");
        assert_eq!(backend_stat(&mut s, "appends"), 2);
    }
    // The session that wrote first since the server started found the end by recovery:
    // the counter counts (and the server's sums every backend's).
    let server: i64 = c
        .query_one(
            "SELECT value FROM drift_server_stats() WHERE name = 'writer_recoveries'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(server <= 1, "{server} recoveries");
    let (n, v): (i64, String) = {
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM t), (SELECT v FROM t WHERE id = 7)",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((n, v.as_str()), (20_005, "session 4"));
    // After kill -9 the positions are gone with shared memory: the first writer recovers
    // the log, the next session takes up its position again.
    drop(c);
    cluster.crash();
    cluster.restart();
    let mut s = cluster.connect("app");
    s.execute("INSERT INTO t VALUES (200000, 'after')", &[])
        .unwrap();
    let mut s2 = cluster.connect("app");
    s2.execute("INSERT INTO t VALUES (200001, 'after')", &[])
        .unwrap();
    assert_eq!(backend_stat(&mut s2, "writer_recoveries"), 0);
    let n: i64 = s2.query_one("SELECT count(*) FROM t", &[]).unwrap().get(0);
    assert_eq!(n, 20_007);
    let ok: bool = s2
        .query_one("SELECT bool_and(ok) FROM drift_verify('t')", &[])
        .unwrap()
        .get(0);
    assert!(ok);
}
