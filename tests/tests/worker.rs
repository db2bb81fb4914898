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

/// Seconds since midnight of a server log line (`%m`: "YYYY-MM-DD HH:MM:SS.mmm ...").
fn log_time(line: &str) -> f64 {
    let t = &line[11..23];
    let h: f64 = t[0..2].parse().unwrap();
    let m: f64 = t[3..5].parse().unwrap();
    let s: f64 = t[6..12].parse().unwrap();
    h * 3600.0 + m * 60.0 + s
}

/// A table whose snapshot cannot be taken (its log damaged on disk) is tried again after
/// 2 s, then 4 s, not every second, and `drift_health()` counts it until it is dropped
/// (#24: the worker retried every 1.6 s forever and nothing reported it).
#[test]
fn a_failing_policy_snapshot_is_retried_with_backoff_and_reported() {
    let cluster = Cluster::start(
        "snapshot-fails",
        &["driftdb.snapshot_events = 0", "driftdb.snapshot_bytes = 0"],
    );
    let mut c = cluster.create_db("app");
    c.batch_execute(
        "CREATE FOREIGN TABLE bad (id int NOT NULL, v text) SERVER drift \
           OPTIONS (primary_key 'id');
         INSERT INTO bad SELECT g, 'v' || g FROM generate_series(1, 200) g;
         CREATE FOREIGN TABLE good (id int NOT NULL) SERVER drift OPTIONS (primary_key 'id');
         INSERT INTO good SELECT generate_series(1, 200);",
    )
    .unwrap();
    let dir = table_dir(&cluster, &mut c, "bad");
    let id = dir.file_name().unwrap().to_string_lossy().into_owned();
    drop(c);
    cluster.stop();
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".log"))
        .collect();
    segments.sort();
    // A byte of the first frame's payload (after the 32-byte header and the frame's 12).
    let mut bytes = std::fs::read(&segments[0]).unwrap();
    bytes[32 + 12 + 4] ^= 0x10;
    std::fs::write(&segments[0], &bytes).unwrap();
    cluster.restart();
    let mut c = cluster.connect("app");
    c.batch_execute("ALTER SYSTEM SET driftdb.snapshot_events = 10")
        .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    let failing = |c: &mut Client| -> i32 {
        c.query_one("SELECT tables_failing_snapshot FROM drift_health()", &[])
            .unwrap()
            .get(0)
    };
    let marker = format!("could not snapshot table {id} ");
    let deadline = Instant::now() + Duration::from_secs(60);
    let attempts = loop {
        let log = cluster.server_log();
        let lines: Vec<String> = log
            .lines()
            .filter(|l| l.contains(&marker))
            .map(String::from)
            .collect();
        if lines.len() >= 3 {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than 3 attempts to snapshot table {id} in 60 s:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(failing(&mut c), 1);
    assert!(
        attempts[0].contains("1 failures in a row; next attempt in 2 s"),
        "{attempts:?}"
    );
    assert!(
        attempts[1].contains("2 failures in a row; next attempt in 4 s"),
        "{attempts:?}"
    );
    let (t0, t1, t2) = (
        log_time(&attempts[0]),
        log_time(&attempts[1]),
        log_time(&attempts[2]),
    );
    assert!(
        t1 - t0 >= 1.9,
        "second attempt {:.1} s after the first",
        t1 - t0
    );
    assert!(
        t2 - t1 >= 3.9,
        "third attempt {:.1} s after the second",
        t2 - t1
    );
    // The other table is snapshotted meanwhile.
    let good = table_dir(&cluster, &mut c, "good");
    wait_for_snapshot_after(&good, 1);
    // Dropped, the table is no longer reported.
    c.batch_execute("DROP FOREIGN TABLE bad").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while failing(&mut c) != 0 {
        assert!(
            Instant::now() < deadline,
            "the dropped table is still reported"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
