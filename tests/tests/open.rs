//! Opening DriftDB in a new session (#19): a backend's first statement reads the journal's
//! index in place, not the history, so its cost does not grow with the commits before it.

use driftdb_e2e::{Client, Cluster};

fn journal_groups_read(c: &mut Client) -> i64 {
    c.query_one(
        "SELECT value FROM drift_backend_stats() WHERE name = 'journal_groups_read'",
        &[],
    )
    .unwrap()
    .get(0)
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
         END $$;
         CALL bump(3000);",
    )
    .unwrap();
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
