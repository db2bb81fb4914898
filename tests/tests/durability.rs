//! Crash safety and replication through the WAL: DriftDB's appends are WAL records, so a
//! killed server, a streaming standby and point-in-time recovery all carry DriftDB data.

use driftdb_e2e::{copy_tree, Client, Cluster, ScratchDir};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn one_text(c: &mut Client, sql: &str) -> String {
    c.query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get::<_, Option<String>>(0)
        .unwrap_or_default()
}

fn one_i64(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Every file under a cluster's `driftdb` directory with its bytes.
fn driftdb_files(datadir: &Path) -> Vec<(String, Vec<u8>)> {
    let root = datadir.join("driftdb");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(&root).unwrap().display().to_string();
            if p.is_dir() {
                stack.push(p);
            } else if rel != "index/synced" && rel != "sync.mark" && !rel.starts_with("ledger/") {
                // How much of the journal's index each server has synced differs (the fates
                // worker syncs it on the primary, redo on the standby), the ledger is
                // extended by the primary's worker only (derived data, not WAL-logged), and
                // the sync worker's mark is the primary's own: all else is equal.
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn schema(c: &mut Client) {
    c.batch_execute(
        "CREATE FOREIGN TABLE users (id int NOT NULL, name text, age int) \
           SERVER drift OPTIONS (primary_key 'id'); \
         CREATE TABLE audit (id int PRIMARY KEY, note text);",
    )
    .unwrap();
}

/// The answers a reader gets, as text, for comparing two servers.
fn answers(c: &mut Client, seqs: &[i64], times: &[String]) -> Vec<String> {
    let mut out = vec![
        one_text(c, "SELECT json_agg(u ORDER BY id)::text FROM users u"),
        one_text(
            c,
            "SELECT json_agg(u ORDER BY id)::text FROM users u WHERE age = 30",
        ),
        one_text(
            c,
            "SELECT json_agg(h ORDER BY seq)::text FROM drift_history('users') h",
        ),
        one_text(c, "SELECT json_agg(a ORDER BY id)::text FROM audit a"),
        one_i64(c, "SELECT drift_current_seq()").to_string(),
    ];
    for s in seqs {
        out.push(one_text(
            c,
            &format!("SELECT json_agg(u ORDER BY id)::text FROM drift_as_of(NULL::users, {s}) u"),
        ));
    }
    for t in times {
        out.push(one_text(
            c,
            &format!(
                "SELECT json_agg(u ORDER BY id)::text \
                 FROM drift_as_of(NULL::users, '{t}'::timestamptz) u"
            ),
        ));
    }
    out
}

#[test]
fn a_standby_answers_like_the_primary_and_takes_over_after_promotion() {
    let primary = Cluster::start("primary", &[]);
    let mut p = primary.create_db("app");
    schema(&mut p);
    p.batch_execute(
        "INSERT INTO users VALUES (1, 'a', 30), (2, 'b', 40), (3, 'c', 30); \
         INSERT INTO audit VALUES (1, 'one'); \
         UPDATE users SET age = 31 WHERE id = 1; \
         SELECT drift_snapshot('users');",
    )
    .unwrap();
    let standby = primary.standby("standby");

    // Changes after the base backup reach the standby through the WAL only: rows, a
    // snapshot, an index, a table created and one dropped.
    let mut seqs = vec![one_i64(&mut p, "SELECT drift_current_seq()")];
    let mut times = Vec::new();
    for i in 10..40 {
        p.batch_execute(&format!(
            "BEGIN; INSERT INTO users VALUES ({i}, 'n{i}', {}); \
             INSERT INTO audit VALUES ({i}, 'n{i}'); COMMIT;",
            30 + i % 3
        ))
        .unwrap();
        if i % 7 == 0 {
            p.batch_execute(&format!(
                "UPDATE users SET name = 'u{i}' WHERE id = {}; DELETE FROM users WHERE id = {};",
                i - 1,
                i - 2
            ))
            .unwrap();
            seqs.push(one_i64(&mut p, "SELECT drift_current_seq()"));
            times.push(one_text(&mut p, "SELECT clock_timestamp()::text"));
        }
        if i == 20 {
            p.batch_execute(
                "SELECT drift_create_index('users', 'age'); SELECT drift_snapshot('users'); \
                 CREATE FOREIGN TABLE scratch (id int NOT NULL) SERVER drift \
                   OPTIONS (primary_key 'id'); \
                 INSERT INTO scratch VALUES (1);",
            )
            .unwrap();
        }
        if i == 30 {
            p.batch_execute("DROP FOREIGN TABLE scratch").unwrap();
        }
    }
    // A transaction that rolls back after writing leaves nothing on either side.
    p.batch_execute("BEGIN; INSERT INTO users VALUES (999, 'gone', 0); ROLLBACK;")
        .unwrap();
    primary.wait_replayed(&standby);

    let mut s = standby.connect("app");
    let on_primary = answers(&mut p, &seqs, &times);
    assert_eq!(answers(&mut s, &seqs, &times), on_primary);
    assert!(on_primary[0].contains("\"u35\""), "{}", on_primary[0]);
    // The files themselves are the same, byte for byte.
    assert_eq!(
        driftdb_files(&standby.datadir),
        driftdb_files(&primary.datadir)
    );
    // A standby is read-only for DriftDB tables too.
    let err = s
        .batch_execute("INSERT INTO users VALUES (500, 'x', 1)")
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("25006"), "{err}");

    // Promotion: the old primary goes away, the new one takes writes, and history goes on
    // from the next seq.
    let last: i64 = one_i64(&mut p, "SELECT max(seq) FROM drift_history('users')");
    drop(p);
    primary.stop();
    standby.promote();
    let mut s = standby.connect("app");
    s.batch_execute(
        "INSERT INTO users VALUES (600, 'after', 1); UPDATE users SET age = 2 WHERE id = 600",
    )
    .unwrap();
    let after: Vec<(i64, String)> = s
        .query(
            "SELECT seq, op FROM drift_history('users') WHERE seq > $1 ORDER BY seq",
            &[&last],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        after,
        vec![
            (last + 1, "INSERT".to_string()),
            (last + 2, "PATCH".to_string())
        ]
    );
    assert_eq!(
        one_text(
            &mut s,
            "SELECT json_agg(u)::text FROM users u WHERE id = 600"
        ),
        r#"[{"id":600,"name":"after","age":2}]"#
    );
    // The past is unchanged after promotion.
    assert_eq!(answers(&mut s, &seqs, &times)[5..], on_primary[5..]);
}

/// Waits until `archive` holds the WAL segment `segment`.
fn wait_archived(archive: &Path, segment: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !archive.join(segment).exists() {
        assert!(Instant::now() < deadline, "{segment} was not archived");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Point-in-time recovery: a copy of the base backup `backup`, restored from the WAL in
/// `archive` up to `target` and promoted; returns the cluster once it takes writes.
fn restore_to(backup: &Path, archive: &Path, target: &str) -> Cluster {
    let restored_dir = backup.with_file_name(format!(
        "{}-restored",
        backup.file_name().unwrap().to_string_lossy()
    ));
    copy_tree(backup, &restored_dir);
    std::fs::write(restored_dir.join("recovery.signal"), b"").unwrap();
    let restore_cmd = format!("restore_command = 'cp {}/%f %p'", archive.display());
    let target_conf = format!("recovery_target_time = '{target}'");
    let restored = Cluster::from_data(
        restored_dir,
        &[
            &restore_cmd,
            &target_conf,
            "recovery_target_action = 'promote'",
            "archive_mode = off",
        ],
    );
    let mut r = restored.connect("postgres");
    let deadline = Instant::now() + Duration::from_secs(120);
    while one_text(&mut r, "SELECT pg_is_in_recovery()::text") == "true" {
        assert!(Instant::now() < deadline, "recovery did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    restored
}

#[test]
fn point_in_time_recovery_restores_driftdb_tables_as_of_the_target() {
    let archive = ScratchDir::new("archive");
    let backup = ScratchDir::new("backup");
    let archive_cmd = format!("archive_command = 'cp %p {}/%f'", archive.0.display());
    let primary = Cluster::start("pitr", &["archive_mode = on", &archive_cmd]);
    let mut p = primary.create_db("app");
    schema(&mut p);
    p.batch_execute("INSERT INTO users SELECT g, 'a' || g, g FROM generate_series(1, 50) g")
        .unwrap();
    primary.base_backup(&backup.0, false);
    for round in 0..3 {
        p.batch_execute(&format!(
            "UPDATE users SET age = age + 100 WHERE id % 3 = {round}; \
             DELETE FROM users WHERE id = {}; INSERT INTO audit VALUES ({round}, 'r');",
            10 + round
        ))
        .unwrap();
    }
    // The target falls in a quiet moment, so that DriftDB's commit times (taken just
    // before Postgres writes its commit record) and Postgres' commit times agree about it.
    std::thread::sleep(Duration::from_millis(300));
    let target = one_text(&mut p, "SELECT clock_timestamp()::text");
    std::thread::sleep(Duration::from_millis(300));
    p.batch_execute(
        "UPDATE users SET name = 'late' WHERE id < 20; DELETE FROM users WHERE id > 40; \
         INSERT INTO users VALUES (77, 'late', 0); INSERT INTO audit VALUES (99, 'late');",
    )
    .unwrap();
    let expected = one_text(
        &mut p,
        &format!(
            "SELECT json_agg(u ORDER BY id)::text \
             FROM drift_as_of(NULL::users, '{target}'::timestamptz) u"
        ),
    );
    let expected_history = one_text(
        &mut p,
        &format!(
            "SELECT json_agg(h ORDER BY seq)::text FROM drift_history('users') h \
             WHERE committed_at <= '{target}'::timestamptz"
        ),
    );
    assert_ne!(
        expected,
        one_text(&mut p, "SELECT json_agg(u ORDER BY id)::text FROM users u")
    );
    // Archive the last WAL segment and wait for it.
    let segment = one_text(&mut p, "SELECT pg_walfile_name(pg_switch_wal())");
    wait_archived(&archive.0, &segment);
    drop(p);
    primary.stop();

    let restored = restore_to(&backup.0, &archive.0, &target);
    let mut r = restored.connect("app");
    assert_eq!(
        one_text(&mut r, "SELECT json_agg(u ORDER BY id)::text FROM users u"),
        expected
    );
    assert_eq!(
        one_text(
            &mut r,
            "SELECT json_agg(h ORDER BY seq)::text FROM drift_history('users') h"
        ),
        expected_history
    );
    assert_eq!(
        one_text(
            &mut r,
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM audit"
        ),
        "0,1,2"
    );
    // The restored cluster takes writes.
    r.batch_execute("INSERT INTO users VALUES (1000, 'new', 1)")
        .unwrap();
    assert_eq!(
        one_i64(&mut r, "SELECT count(*) FROM users WHERE id = 1000"),
        1
    );
}

/// Kill cycles, as many as `DRIFTDB_KILL_CYCLES` says (20 by default).
/// Waits until DriftDB's sync worker guards commits (it starts with the server).
fn wait_for_guard(c: &mut Client) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while one_i64(
        c,
        "SELECT value FROM drift_server_stats() WHERE name = 'sync_guard'",
    ) != 1
    {
        assert!(Instant::now() < deadline, "the sync worker never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A guarded commit syncs nothing and does not flush its WAL records before writing its
/// frames. An asynchronous commit killed before the WAL writer flushed it loses its records
/// while its frames stay in the page cache: the restart cuts them (before its xid is handed
/// out again), and a transaction that gets the same xid after the restart commits only its
/// own row.
#[test]
fn a_crash_that_lost_a_guarded_commits_wal_cuts_its_frames_before_its_xid_returns() {
    // The WAL writer flushes asynchronous commits once in 10 s only.
    let cluster = Cluster::start("lostwal", &["wal_writer_delay = 10000ms"]);
    let mut c = cluster.create_db("app");
    c.batch_execute(
        "CREATE FOREIGN TABLE t (id int NOT NULL, v text) SERVER drift OPTIONS (primary_key 'id'); \
         INSERT INTO t VALUES (1, 'kept');",
    )
    .unwrap();
    let mut reached = 0;
    for attempt in 0..10 {
        let mut c = cluster.connect("app");
        wait_for_guard(&mut c);
        let fsyncs = "SELECT value FROM drift_backend_stats() WHERE name = 'fsyncs'";
        let before = one_i64(&mut c, fsyncs);
        let seq_before = one_i64(&mut c, "SELECT drift_current_seq()");
        let id = 100 + attempt;
        let mut tx = c.transaction().unwrap();
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .unwrap();
        tx.execute("INSERT INTO t VALUES ($1, 'lost?')", &[&id])
            .unwrap();
        let xid: i64 = tx.query_one("SELECT txid_current()", &[]).unwrap().get(0);
        tx.commit().unwrap();
        assert_eq!(one_i64(&mut c, fsyncs), before, "the commit synced nothing");
        assert!(one_i64(&mut c, "SELECT drift_current_seq()") > seq_before);
        let cut = "bytes from the journal";
        let cuts_before = cluster.server_log().matches(cut).count();
        // Before the sync worker's next round (once a second) flushes the WAL.
        cluster.crash();
        cluster.restart();
        let mut c = cluster.connect("app");
        let present = one_i64(&mut c, &format!("SELECT count(*) FROM t WHERE id = {id}"));
        if present == 1 {
            // The WAL was flushed before the crash: the commit survived, as it may.
            continue;
        }
        reached += 1;
        assert!(
            cluster.server_log().matches(cut).count() > cuts_before,
            "the restart cut the lost group's frames"
        );
        // Transactions until the lost one's xid is handed out again, each adding a row.
        let mut n = 0;
        loop {
            let mut tx = c.transaction().unwrap();
            tx.execute("INSERT INTO t VALUES ($1, 'after')", &[&(10_000 + n)])
                .unwrap();
            let x: i64 = tx.query_one("SELECT txid_current()", &[]).unwrap().get(0);
            tx.commit().unwrap();
            n += 1;
            if x >= xid {
                break;
            }
        }
        assert_eq!(
            one_i64(&mut c, &format!("SELECT count(*) FROM t WHERE id = {id}")),
            0,
            "the lost commit's row came back with its xid"
        );
        assert_eq!(
            one_i64(&mut c, "SELECT count(*) FROM t WHERE id >= 10000"),
            n as i64
        );
        let verified: bool = c
            .query_one("SELECT bool_and(ok) FROM drift_verify()", &[])
            .unwrap()
            .get(0);
        assert!(verified, "drift_verify after the cut");
        c.batch_execute("DELETE FROM t WHERE id >= 10000").unwrap();
        if reached == 2 {
            break;
        }
    }
    assert!(reached > 0, "no crash lost the commit's WAL in 10 attempts");
    assert_eq!(
        one_i64(
            &mut cluster.connect("app"),
            "SELECT count(*) FROM t WHERE id = 1"
        ),
        1
    );
}

/// A clean stop leaves no sync mark: the sync worker's last round synced everything.
#[test]
fn a_clean_stop_leaves_every_guarded_commit_synced_and_no_mark() {
    let cluster = Cluster::start("guardstop", &[]);
    let mut c = cluster.create_db("app");
    wait_for_guard(&mut c);
    c.batch_execute(
        "CREATE FOREIGN TABLE t (id int NOT NULL) SERVER drift OPTIONS (primary_key 'id'); \
         INSERT INTO t SELECT g FROM generate_series(1, 10) g; \
         INSERT INTO t VALUES (11); INSERT INTO t VALUES (12);",
    )
    .unwrap();
    assert!(cluster.datadir.join("driftdb/sync.mark").exists());
    drop(c);
    cluster.stop();
    assert!(!cluster.datadir.join("driftdb/sync.mark").exists());
    cluster.restart();
    let mut c = cluster.connect("app");
    assert_eq!(one_i64(&mut c, "SELECT count(*) FROM t"), 12);
}

fn kill_cycles() -> usize {
    std::env::var("DRIFTDB_KILL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

#[test]
fn kill_9_at_random_moments_loses_no_acknowledged_commit() {
    let cluster = Cluster::start("killloop", &[]);
    let mut c = cluster.create_db("app");
    c.batch_execute(
        "CREATE FOREIGN TABLE d (id int NOT NULL, w int, n int) \
           SERVER drift OPTIONS (primary_key 'id'); \
         CREATE TABLE h (id int PRIMARY KEY);",
    )
    .unwrap();
    drop(c);
    let acked: Arc<Mutex<BTreeSet<i32>>> = Arc::default();
    let tried: Arc<Mutex<BTreeSet<i32>>> = Arc::default();
    let mut next_id = 0i32;
    // A simple deterministic generator for the crash moments.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for cycle in 0..kill_cycles() {
        let mut c = cluster.connect("app");
        let before_seq = one_i64(&mut c, "SELECT drift_current_seq()");
        let before = one_text(
            &mut c,
            &format!(
                "SELECT json_agg(x ORDER BY seq)::text FROM drift_history('d') x \
                 WHERE seq <= {before_seq}"
            ),
        );
        drop(c);
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..3 {
            let (acked, tried, stop) = (acked.clone(), tried.clone(), stop.clone());
            let port = cluster.port;
            let first = next_id + w * 100_000;
            writers.push(std::thread::spawn(move || {
                let Ok(mut c) = postgres::Client::connect(
                    &format!("host=127.0.0.1 port={port} user=postgres dbname=app"),
                    postgres::NoTls,
                ) else {
                    return;
                };
                let mut id = first;
                while !stop.load(Ordering::Relaxed) {
                    tried.lock().unwrap().insert(id);
                    let sql = format!(
                        "BEGIN; INSERT INTO d VALUES ({id}, {w}, 0); INSERT INTO h VALUES ({id}); \
                         UPDATE d SET n = n + 1 WHERE id = {id}; COMMIT;"
                    );
                    if c.batch_execute(&sql).is_err() {
                        return;
                    }
                    acked.lock().unwrap().insert(id);
                    id += 1;
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(150 + rand(500)));
        cluster.crash();
        stop.store(true, Ordering::Relaxed);
        for t in writers {
            t.join().unwrap();
        }
        next_id += 1_000_000;
        cluster.restart();

        let mut c = cluster.connect("app");
        let verified: bool = c
            .query_one("SELECT bool_and(ok) FROM drift_verify()", &[])
            .unwrap()
            .get(0);
        assert!(verified, "cycle {cycle}: drift_verify found damage");
        let in_d: BTreeSet<i32> = c
            .query("SELECT id FROM d WHERE n = 1", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let all_d = one_i64(&mut c, "SELECT count(*) FROM d");
        assert_eq!(
            all_d as usize,
            in_d.len(),
            "cycle {cycle}: a half-applied transaction"
        );
        let in_h: BTreeSet<i32> = c
            .query("SELECT id FROM h", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let acked = acked.lock().unwrap();
        let missing: Vec<_> = acked.difference(&in_d).collect();
        assert!(
            missing.is_empty(),
            "cycle {cycle}: acknowledged but lost: {missing:?}"
        );
        // Heap and DriftDB agree on every transaction, acknowledged or not.
        assert_eq!(in_d, in_h, "cycle {cycle}: heap and DriftDB disagree");
        let tried = tried.lock().unwrap();
        assert!(in_d.is_subset(&tried));
        assert_eq!(
            one_text(
                &mut c,
                &format!(
                    "SELECT json_agg(x ORDER BY seq)::text FROM drift_history('d') x \
                     WHERE seq <= {before_seq}"
                ),
            ),
            before,
            "cycle {cycle}: history before the crash changed"
        );
    }
    assert!(
        acked.lock().unwrap().len() > kill_cycles(),
        "the writers committed too little to test anything"
    );
}

#[test]
fn history_survives_freezing_and_commit_log_truncation() {
    let cluster = Cluster::start(
        "freeze",
        &[
            "autovacuum = off",
            "vacuum_freeze_min_age = 0",
            "vacuum_freeze_table_age = 0",
        ],
    );
    let mut c = cluster.create_db("app");
    schema(&mut c);
    for i in 0..20 {
        c.batch_execute(&format!(
            "INSERT INTO users VALUES ({i}, 'n{i}', {i}); UPDATE users SET age = age + 1 WHERE id = {};",
            i / 2
        ))
        .unwrap();
    }
    c.batch_execute("DELETE FROM users WHERE id % 5 = 0")
        .unwrap();
    let mid = one_i64(&mut c, "SELECT drift_current_seq()") / 2;
    let read = |c: &mut Client| {
        vec![
            one_text(c, "SELECT json_agg(u ORDER BY id)::text FROM users u"),
            one_text(
                c,
                "SELECT json_agg(h ORDER BY seq)::text FROM drift_history('users') h",
            ),
            one_text(
                c,
                &format!(
                    "SELECT json_agg(u ORDER BY id)::text FROM drift_as_of(NULL::users, {mid}) u"
                ),
            ),
            one_text(
                c,
                "SELECT json_agg(u ORDER BY id)::text FROM users u WHERE id = 7",
            ),
        ]
    };
    let before = read(&mut c);
    let first_xid: i64 = c
        .query_one(
            "SELECT min(txid::text::bigint) FROM drift_history('users')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        first_xid < 1 << 20,
        "DriftDB's first transactions are in pg_xact/0000"
    );

    // More than a commit-log segment's worth of transactions (2^20), then freeze every
    // database so that Postgres truncates the commit log past DriftDB's transactions.
    c.batch_execute(
        "CREATE PROCEDURE burn(n int) LANGUAGE plpgsql AS $$ \
         BEGIN FOR i IN 1..n LOOP PERFORM txid_current(); COMMIT; END LOOP; END $$",
    )
    .unwrap();
    c.batch_execute("SET synchronous_commit = off").unwrap();
    c.batch_execute("CALL burn(1100000)").unwrap();
    // The fates worker holds the horizon at its settled mark: wait until it has moved past
    // the burnt transactions (it wakes every second), so freezing can pass them too.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held: Option<i64> = c
            .query_one(
                "SELECT age(backend_xmin)::bigint FROM pg_stat_activity \
                 WHERE backend_type = 'driftdb fates'",
                &[],
            )
            .unwrap()
            .get(0);
        if held.is_some_and(|age| age < 1000) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fates worker did not advance its horizon (age {held:?})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    cluster
        .connect("postgres")
        .batch_execute("UPDATE pg_database SET datallowconn = true WHERE datname = 'template0'")
        .unwrap();
    for db in ["template0", "template1", "postgres", "app"] {
        cluster
            .connect(db)
            .batch_execute("VACUUM (FREEZE)")
            .unwrap_or_else(|e| panic!("VACUUM FREEZE in {db}: {e}"));
    }
    let clog0 = cluster.datadir.join("pg_xact/0000");
    if clog0.exists() {
        let frozen = one_text(
            &mut cluster.connect("postgres"),
            "SELECT string_agg(datname || ':' || datfrozenxid, ' ') FROM pg_database",
        );
        panic!("the commit log was not truncated (pg_xact/0000 is still there): {frozen}");
    }
    assert!(cluster.datadir.join("driftdb/fates.log").exists());

    // The connection that wrote, open all along, reads exactly what was there before
    // (it rereads the settled fates the worker recorded since its last read)...
    assert_eq!(read(&mut c), before);
    // ...and so does a new one.
    drop(c);
    let mut c = cluster.connect("app");
    assert_eq!(read(&mut c), before);
    // And after a restart (the store and its fates are read from disk again).
    drop(c);
    cluster.stop();
    cluster.restart();
    let mut c = cluster.connect("app");
    assert_eq!(read(&mut c), before);
    c.batch_execute("UPDATE users SET name = 'later' WHERE id = 1")
        .unwrap();
    assert_eq!(
        one_text(&mut c, "SELECT name FROM users WHERE id = 1"),
        "later"
    );
}

/// What a reader sees of the imported rows of `imp` (ids above 0): rows, their sum, the
/// history's length and the table as of the middle of the imported history.
fn imported_answers(c: &mut Client) -> Vec<String> {
    vec![
        one_text(c, "SELECT count(*)::text FROM imp WHERE id > 0"),
        one_text(c, "SELECT sum(id)::text FROM imp WHERE id > 0"),
        one_text(
            c,
            "SELECT count(*)::text FROM drift_history('imp') WHERE (\"row\"->>'id')::int > 0",
        ),
        one_text(
            c,
            "SELECT count(*)::text FROM drift_as_of(NULL::imp, \
             '2020-01-01 00:00:00+00'::timestamptz + interval '50000 s')",
        ),
        one_text(c, "SELECT v FROM imp WHERE id = 77777"),
    ]
}

/// An import of many source transactions appends many groups under one xid. Crash
/// recovery, a streaming standby and point-in-time recovery all replay them (#24: with
/// more than 1,024 of them in the WAL since the last checkpoint, no start succeeded).
#[test]
fn an_import_of_100000_transactions_replays_after_a_crash_on_a_standby_and_by_pitr() {
    const N: i64 = 100_000;
    let archive = ScratchDir::new("imp-archive");
    let backup = ScratchDir::new("imp-backup");
    let archive_cmd = format!("archive_command = 'cp %p {}/%f'", archive.0.display());
    // No checkpoint of its own between the import and the crash: redo replays all of it.
    let primary = Cluster::start(
        "imp",
        &[
            "archive_mode = on",
            &archive_cmd,
            "checkpoint_timeout = 1h",
            "max_wal_size = 20GB",
        ],
    );
    let mut p = primary.create_db("app");
    p.batch_execute(
        "CREATE FOREIGN TABLE imp (id int NOT NULL, v text) SERVER drift \
           OPTIONS (primary_key 'id');
         CREATE TABLE staging AS
           SELECT g::bigint AS seq,
                  '2020-01-01 00:00:00+00'::timestamptz + g * interval '1 s' AS committed_at,
                  g::text::xid8 AS txid, 'postgres'::name AS role, 'INSERT' AS op,
                  jsonb_build_object('id', g::text) AS key,
                  jsonb_build_object('id', g::text, 'v', 'v' || g) AS data
             FROM generate_series(1, 100000) g;",
    )
    .unwrap();
    primary.base_backup(&backup.0, false);
    let standby = primary.standby("imp-standby");
    p.batch_execute("CHECKPOINT").unwrap();
    assert_eq!(one_i64(&mut p, "SELECT drift_import('imp', 'staging')"), N);
    let expected = vec![
        N.to_string(),
        (N * (N + 1) / 2).to_string(),
        N.to_string(),
        "50000".to_string(),
        "v77777".to_string(),
    ];
    assert_eq!(imported_answers(&mut p), expected);
    std::thread::sleep(Duration::from_millis(300));
    let target = one_text(&mut p, "SELECT clock_timestamp()::text");
    std::thread::sleep(Duration::from_millis(300));
    p.batch_execute("INSERT INTO imp VALUES (0, 'after the target')")
        .unwrap();
    let segment = one_text(&mut p, "SELECT pg_walfile_name(pg_switch_wal())");

    // A hot standby replayed the import and answers as the primary did.
    primary.wait_replayed(&standby);
    let mut s = standby.connect("app");
    assert_eq!(imported_answers(&mut s), expected);
    assert_eq!(one_i64(&mut s, "SELECT count(*) FROM imp"), N + 1);

    // kill -9 with the whole import in the WAL after the last checkpoint: the server
    // starts again and has all of it.
    drop(p);
    primary.crash();
    primary.restart();
    let mut p = primary.connect("app");
    assert_eq!(imported_answers(&mut p), expected);
    assert_eq!(one_i64(&mut p, "SELECT count(*) FROM imp"), N + 1);
    p.batch_execute("INSERT INTO imp VALUES (-1, 'after the crash')")
        .unwrap();
    let log = primary.server_log();
    assert!(!log.contains("in flight during replay"), "{log}");

    // Point-in-time recovery to a moment after the import, before the next insert.
    wait_archived(&archive.0, &segment);
    drop(p);
    primary.stop();
    let restored = restore_to(&backup.0, &archive.0, &target);
    let mut r = restored.connect("app");
    assert_eq!(imported_answers(&mut r), expected);
    r.batch_execute("INSERT INTO imp VALUES (0, 'new')")
        .unwrap();
    assert_eq!(one_i64(&mut r, "SELECT count(*) FROM imp"), N + 1);
}
