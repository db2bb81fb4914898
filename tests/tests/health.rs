//! `drift_health()` against what the test measures itself.

use driftdb_e2e::Cluster;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

type Health = (i64, i64, i64, bool, bool, bool, i32);

fn health(c: &mut postgres::Client) -> Health {
    let r = c
        .query_one(
            "SELECT disk_free_bytes, disk_total_bytes, drift_bytes, wal_rmgr_registered, \
                    worker_alive, last_snapshot_at IS NOT NULL, tables_failing_verify \
               FROM drift_health()",
            &[],
        )
        .unwrap();
    (
        r.get(0),
        r.get(1),
        r.get(2),
        r.get(3),
        r.get(4),
        r.get(5),
        r.get(6),
    )
}

fn tree_bytes(dir: &Path) -> i64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                tree_bytes(&e.path())
            } else {
                m.len() as i64
            }
        })
        .sum()
}

/// (available, size) in bytes of the file system holding `dir`, as df reports them.
fn df(dir: &Path) -> (i64, i64) {
    let out = Command::new("df")
        .args(["-B1", "--output=avail,size"])
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let nums: Vec<i64> = text
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    (nums[0], nums[1])
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn drift_health_reports_what_is_measured() {
    let cluster = Cluster::start("health", &["driftdb.snapshot_events = 50"]);
    let mut c = cluster.create_db("app");
    c.batch_execute(
        "CREATE FOREIGN TABLE t (id int NOT NULL, v text) SERVER drift OPTIONS (primary_key 'id'); \
         INSERT INTO t SELECT g, 'v' FROM generate_series(1, 10) g;",
    )
    .unwrap();
    let (free, total, bytes, rmgr, alive, snapped, failing) = health(&mut c);
    let (df_free, df_total) = df(&cluster.datadir);
    assert_eq!(total, df_total);
    assert!(
        (free - df_free).abs() < 256 << 20,
        "free {free}, df {df_free}"
    );
    assert_eq!(bytes, tree_bytes(&cluster.datadir.join("driftdb")));
    assert!(rmgr);
    wait_until("the worker", || health(&mut c).4);
    assert!(!snapped, "no snapshot taken yet");
    assert_eq!(failing, 0);
    let _ = alive;

    // The worker's snapshot by policy is reported.
    c.batch_execute("INSERT INTO t SELECT g, 'w' FROM generate_series(11, 80) g")
        .unwrap();
    wait_until("a snapshot by policy", || health(&mut c).5);
    let before_now: bool = c
        .query_one("SELECT last_snapshot_at <= now() FROM drift_health()", &[])
        .unwrap()
        .get(0);
    assert!(before_now);

    // A stopped worker is reported until the postmaster starts it again.
    c.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'driftdb fates'",
    )
    .unwrap();
    wait_until("the worker to be reported down", || !health(&mut c).4);
    wait_until("the worker to be back", || health(&mut c).4);

    // A table whose last verification failed is counted (since the server started).
    let id: i64 = c
        .query_one(
            "SELECT ((SELECT oid FROM pg_database WHERE datname = current_database())::bigint \
             << 32) | 't'::regclass::oid::bigint",
            &[],
        )
        .unwrap()
        .get(0);
    drop(c);
    cluster.stop();
    let seg = cluster
        .datadir
        .join(format!("driftdb/tables/{id}/00000000000000000001.log"));
    let good = std::fs::read(&seg).unwrap();
    let mut bad = good.clone();
    bad[60] ^= 0x10;
    std::fs::write(&seg, &bad).unwrap();
    cluster.restart();
    let mut c = cluster.connect("app");
    let ok: bool = c
        .query_one("SELECT ok FROM drift_verify('t')", &[])
        .unwrap()
        .get(0);
    assert!(!ok);
    assert_eq!(health(&mut c).6, 1);
    drop(c);
    cluster.stop();
    std::fs::write(&seg, &good).unwrap();
    cluster.restart();
    let mut c = cluster.connect("app");
    assert_eq!(health(&mut c).6, 0, "counts start again with the server");
    let ok: bool = c
        .query_one("SELECT ok FROM drift_verify('t')", &[])
        .unwrap()
        .get(0);
    assert!(ok);
    assert_eq!(health(&mut c).6, 0);
}
