//! Damaged files on a real server: `drift_verify` names the file and the offset, every read
//! of a damaged table fails with SQLSTATE XX001 naming them (never wrong rows, never a
//! crash), the other tables keep working, and the server stays up.

use driftdb_e2e::{Client, Cluster};
use std::path::{Path, PathBuf};

/// The directory of a table's files: `$PGDATA/driftdb/tables/<(dboid << 32) | relid>`.
fn table_dir(cluster: &Cluster, c: &mut Client, table: &str) -> PathBuf {
    let id: i64 = c
        .query_one(
            &format!(
                "SELECT ((SELECT oid FROM pg_database WHERE datname = current_database())::bigint << 32) \
                 | '{table}'::regclass::oid::bigint"
            ),
            &[],
        )
        .unwrap()
        .get(0);
    cluster.datadir.join("driftdb/tables").join(id.to_string())
}

/// The files of `dir` whose names end with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with(suffix))
        .collect();
    out.sort();
    out
}

/// Where the frames of a log segment start: a 32-byte header, then frames of
/// `u32 len | u32 !len | u32 crc | payload` (docs/format.md).
fn frame_starts(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = 32;
    while at + 12 <= bytes.len() {
        out.push(at);
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 12 + len;
    }
    assert_eq!(at, bytes.len(), "segment does not end with a whole frame");
    out
}

fn flip(path: &Path, pos: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[pos] ^= 0x10;
    std::fs::write(path, &bytes).unwrap();
}

/// Runs a statement that must fail with data_corrupted; returns the error's message.
fn corrupted(c: &mut Client, sql: &str) -> String {
    let err = match c.query(sql, &[]) {
        Ok(rows) => panic!("{sql}: returned {} rows from a damaged table", rows.len()),
        Err(e) => e,
    };
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{sql}: not a server error: {err}"));
    assert_eq!(db.code().code(), "XX001", "{sql}: {db:?}");
    db.message().to_string()
}

type Verified = (String, i64, bool, Option<String>);

fn verify_all(c: &mut Client) -> Vec<Verified> {
    c.query(
        "SELECT table_name::text, frames, ok, detail FROM drift_verify() ORDER BY 1",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

fn rows(c: &mut Client, sql: &str) -> Vec<(i32, String)> {
    c.query(sql, &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn damaged_files_are_reported_and_never_read_as_data() {
    let cluster = Cluster::start("corruption", &[]);
    let mut c = cluster.create_db("app");
    let tables = ["good", "logd", "snapd"];
    for t in tables {
        c.batch_execute(&format!(
            "CREATE FOREIGN TABLE {t} (id int NOT NULL, v text) SERVER drift \
             OPTIONS (primary_key 'id')"
        ))
        .unwrap();
    }
    c.batch_execute("SELECT drift_create_index('logd', 'v')")
        .unwrap();
    // One transaction, hence one frame, per row and table.
    for i in 1..=20 {
        for t in tables {
            c.batch_execute(&format!("INSERT INTO {t} VALUES ({i}, 'v{i}')"))
                .unwrap();
        }
    }
    for t in tables {
        c.batch_execute(&format!("SELECT drift_snapshot('{t}')"))
            .unwrap();
    }
    // One batch of two statements is one transaction: one more frame.
    c.batch_execute("UPDATE good SET v = 'changed' WHERE id <= 5; DELETE FROM good WHERE id = 20")
        .unwrap();
    let seq: i64 = c
        .query_one("SELECT drift_current_seq()", &[])
        .unwrap()
        .get(0);
    let good_rows = rows(&mut c, "SELECT id, v FROM good ORDER BY id");
    assert_eq!(good_rows.len(), 19);
    assert_eq!(
        verify_all(&mut c),
        vec![
            ("good".into(), 21, true, None),
            ("logd".into(), 20, true, None),
            ("snapd".into(), 20, true, None),
        ]
    );
    let logd_dir = table_dir(&cluster, &mut c, "logd");
    let snapd_dir = table_dir(&cluster, &mut c, "snapd");
    drop(c);
    cluster.stop();

    // A byte inside the third of twenty frames of logd's log (not its tail), and a byte
    // inside the first row block of snapd's snapshot (which starts after a 32-byte header).
    let segs = files(&logd_dir, ".log");
    assert_eq!(segs.len(), 1, "{segs:?}");
    let seg = &segs[0];
    let starts = frame_starts(&std::fs::read(seg).unwrap());
    assert_eq!(starts.len(), 20);
    let damaged_frame = starts[2];
    flip(seg, damaged_frame + 12 + 3);
    let snaps = files(&snapd_dir, ".snap");
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let snap = &snaps[0];
    flip(snap, 40);
    cluster.restart();
    let mut c = cluster.connect("app");

    // drift_verify: not ok, with the file and the offset.
    let report = verify_all(&mut c);
    assert_eq!(report.len(), 3, "{report:?}");
    assert_eq!(report[0], ("good".into(), 21, true, None));
    let (name, frames, ok, detail) = &report[1];
    let detail = detail.as_deref().unwrap_or_default();
    assert_eq!((name.as_str(), *ok), ("logd", false), "{report:?}");
    assert!(
        detail.starts_with(&format!(
            "{} at offset {damaged_frame}: frame crc mismatch",
            seg.display()
        )),
        "{detail}"
    );
    // The two frames before the damaged one were read and checked.
    assert_eq!(*frames, 2, "{detail}");
    let (name, frames, ok, detail) = &report[2];
    let detail = detail.as_deref().unwrap_or_default();
    assert_eq!((name.as_str(), *frames, *ok), ("snapd", 20, false));
    assert_eq!(
        detail,
        format!(
            "{} at offset 32: snapshot block crc mismatch",
            snap.display()
        )
    );
    let (frames, ok): (i64, bool) = {
        let r = c
            .query_one("SELECT frames, ok FROM drift_verify('logd')", &[])
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((frames, ok), (2, false));

    // Every read of logd fails with XX001 naming the file and the frame: scans, key and
    // index lookups, the past, history and diff; and so does a write.
    let explain: Vec<String> = c
        .query("EXPLAIN SELECT * FROM logd WHERE v = 'v7'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        explain.iter().any(|l| l.contains("index lookup")),
        "{explain:?}"
    );
    let log_damage = format!(
        "DriftDB file \"{}\" is damaged at offset {damaged_frame}",
        seg.display()
    );
    for sql in [
        "SELECT * FROM logd".to_string(),
        "SELECT count(*) FROM logd".to_string(),
        "SELECT * FROM logd WHERE id = 7".to_string(),
        "SELECT * FROM logd WHERE id IN (1, 2, 3)".to_string(),
        "SELECT * FROM logd WHERE v = 'v7'".to_string(),
        format!("SELECT * FROM drift_as_of(NULL::logd, {seq})"),
        "SELECT * FROM drift_as_of(NULL::logd, 1)".to_string(),
        "SELECT * FROM drift_history('logd')".to_string(),
        format!("SELECT * FROM drift_diff('logd', 0, {seq})"),
        "INSERT INTO logd VALUES (100, 'x')".to_string(),
        "UPDATE logd SET v = 'y' WHERE id = 1".to_string(),
    ] {
        assert_eq!(corrupted(&mut c, &sql), log_damage, "{sql}");
    }

    // Every read of snapd that needs the snapshot fails the same way, naming the snapshot.
    let snap_damage = format!(
        "DriftDB file \"{}\" is damaged at offset 32",
        snap.display()
    );
    for sql in [
        "SELECT * FROM snapd".to_string(),
        "SELECT * FROM snapd WHERE id = 7".to_string(),
        format!("SELECT * FROM drift_as_of(NULL::snapd, {seq})"),
    ] {
        assert_eq!(corrupted(&mut c, &sql), snap_damage, "{sql}");
    }
    // Its log is whole: its history is right (it does not read the snapshot).
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM drift_history('snapd') WHERE op = 'INSERT'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 20);

    // The healthy table reads whole and takes writes.
    assert_eq!(
        rows(&mut c, "SELECT id, v FROM good ORDER BY id"),
        good_rows
    );
    assert_eq!(
        rows(&mut c, "SELECT id, v FROM good WHERE id = 3"),
        vec![(3, "changed".to_string())]
    );
    c.batch_execute("INSERT INTO good VALUES (100, 'after')")
        .unwrap();
    assert_eq!(
        rows(&mut c, "SELECT id, v FROM good WHERE id = 100"),
        vec![(100, "after".to_string())]
    );

    // The server is up: a new connection works, and nothing crashed or panicked.
    let one: i32 = cluster
        .connect("app")
        .query_one("SELECT 1", &[])
        .unwrap()
        .get(0);
    assert_eq!(one, 1);
    let log = cluster.server_log();
    for bad in [
        "PANIC",
        "panicked",
        "terminated by signal",
        "server process",
    ] {
        assert!(!log.contains(bad), "server log has {bad:?}:\n{log}");
    }
}
