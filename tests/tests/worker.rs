//! DriftDB's background worker on a real server: snapshots by policy.

use driftdb_e2e::{Client, Cluster};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn table_dir(cluster: &Cluster, c: &mut Client, table: &str) -> PathBuf {
    let id: i64 = c
        .query_one(
            &format!(
                "SELECT ((SELECT oid FROM pg_database WHERE datname = current_database())::bigint \
                 << 32) | '{table}'::regclass::oid::bigint"
            ),
            &[],
        )
        .unwrap()
        .get(0);
    cluster.datadir.join(format!("driftdb/tables/{id}"))
}

fn snapshots(dir: &PathBuf) -> Vec<u64> {
    let mut out: Vec<u64> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix("snap-")?
                        .strip_suffix(".snap")?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out
}

fn wait_for_snapshot_after(dir: &PathBuf, seq: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = snapshots(dir).into_iter().find(|s| *s >= seq) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot at or after seq {seq}: {:?}",
            snapshots(dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn current_seq(c: &mut Client) -> u64 {
    c.query_one("SELECT drift_current_seq()", &[])
        .unwrap()
        .get::<_, i64>(0) as u64
}

#[test]
fn the_worker_takes_snapshots_by_events_and_by_bytes() {
    let cluster = Cluster::start(
        "snappolicy",
        &[
            "driftdb.snapshot_events = 100",
            "driftdb.snapshot_bytes = 0",
        ],
    );
    let mut c = cluster.create_db("app");
    c.batch_execute(
        "CREATE FOREIGN TABLE t (id int NOT NULL, v text) SERVER drift OPTIONS (primary_key 'id')",
    )
    .unwrap();
    c.batch_execute("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 99) g")
        .unwrap();
    let dir = table_dir(&cluster, &mut c, "t");
    // Below the threshold: two of the worker's rounds pass without a snapshot.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(snapshots(&dir), Vec::<u64>::new());
    c.batch_execute("INSERT INTO t VALUES (100, 'x')").unwrap();
    let at = current_seq(&mut c);
    let snap = wait_for_snapshot_after(&dir, at);
    assert_eq!(snap, at, "the snapshot covers everything committed");
    let count: i64 = c.query_one("SELECT count(*) FROM t", &[]).unwrap().get(0);
    assert_eq!(count, 100);

    // The byte policy, changed with a reload.
    for sql in [
        "ALTER SYSTEM SET driftdb.snapshot_events = 0",
        "ALTER SYSTEM SET driftdb.snapshot_bytes = '16kB'",
        "SELECT pg_reload_conf()",
    ] {
        c.batch_execute(sql).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1500));
    c.batch_execute("UPDATE t SET v = repeat('y', 400) WHERE id <= 30")
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        snapshots(&dir),
        vec![snap],
        "12 kB of changes stay below 16 kB"
    );
    c.batch_execute("UPDATE t SET v = repeat('z', 400) WHERE id > 60")
        .unwrap();
    let at = current_seq(&mut c);
    assert_eq!(wait_for_snapshot_after(&dir, at), at);
    let z: i64 = c
        .query_one("SELECT count(*) FROM t WHERE v LIKE 'z%'", &[])
        .unwrap()
        .get(0);
    assert_eq!(z, 40);
    // After a restart, reads start from the newest snapshot and give the same answers.
    drop(c);
    cluster.stop();
    cluster.restart();
    let mut c = cluster.connect("app");
    let rows: Vec<(i32, String)> = c
        .query(
            "SELECT id, v FROM t WHERE id IN (1, 50, 99) ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (1, "y".repeat(400)),
            (50, "v50".to_string()),
            (99, "z".repeat(400))
        ]
    );
}
