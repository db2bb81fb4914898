//! A full disk under DriftDB (#22): when `pg_wal` or DriftDB's own directory lies on a
//! file system without room for a change, the statement fails with 53100 before anything
//! is written, the server stays up (no PANIC), committed rows are intact, and smaller
//! changes go on. Each file system is a small tmpfs mounted for the test.

use driftdb_e2e::{Client, Cluster, Tmpfs};
use std::path::Path;
use std::process::Command;

fn sqlstate(e: &postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_string())
        .unwrap_or_else(|| format!("{e}"))
}

/// Moves directory `dir` (stopped server) onto a new tmpfs of `megabytes`, mounted at
/// `at`, leaving a symlink in its place when `at` is elsewhere.
fn move_onto_tmpfs(dir: &Path, at: &Path, megabytes: u64) -> Tmpfs {
    let saved = dir.with_extension("saved");
    std::fs::rename(dir, &saved).unwrap();
    let fs = Tmpfs::mount(at, megabytes);
    let ok = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", saved.display()))
        .arg(at)
        .status()
        .unwrap()
        .success();
    assert!(ok, "copying {} onto the tmpfs", saved.display());
    std::fs::remove_dir_all(&saved).unwrap();
    if at != dir {
        std::os::unix::fs::symlink(at, dir).unwrap();
        let _ = Command::new("chown")
            .args(["-h", "postgres:postgres"])
            .arg(dir)
            .status();
    }
    fs
}

fn rows(c: &mut Client) -> Vec<(i32, i64)> {
    c.query("SELECT id, octet_length(v)::bigint FROM t ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The checks after a change too large for the file system was refused.
fn refuses_then_goes_on(cluster: &Cluster, too_large: u64) {
    let mut c = cluster.connect("app");
    let e = c
        .batch_execute(&format!(
            "INSERT INTO t VALUES (2, repeat('x', {too_large}))"
        ))
        .unwrap_err();
    assert_eq!(sqlstate(&e), "53100", "{e:?}");
    // The server is up, the committed row is there, the refused one is not, and a small
    // change commits and survives a restart.
    assert_eq!(rows(&mut c), [(1, 4)]);
    c.batch_execute("INSERT INTO t VALUES (3, 'next')").unwrap();
    drop(c);
    cluster.stop();
    cluster.restart();
    let mut c = cluster.connect("app");
    assert_eq!(rows(&mut c), [(1, 4), (3, 4)]);
    let log = cluster.server_log();
    assert!(!log.contains("PANIC"), "{log}");
    assert!(!log.contains("terminated by signal"), "{log}");
}

fn setup(cluster: &Cluster) {
    let mut c = cluster.create_db("app");
    c.batch_execute(
        "CREATE FOREIGN TABLE t (id int NOT NULL, v text) SERVER drift \
           OPTIONS (primary_key 'id');
         INSERT INTO t VALUES (1, 'kept');",
    )
    .unwrap();
}

/// pg_wal on a 128 MB file system: a 150 MB value cannot be WAL-logged. Before the fix the
/// check counted only the data directory, and the WAL write failed inside the critical
/// section: a PANIC that restarted the whole server.
#[test]
fn a_full_pg_wal_is_an_error_not_a_panic() {
    if !Tmpfs::can_mount() {
        eprintln!("NOT RUN: a_full_pg_wal_is_an_error_not_a_panic needs to mount a tmpfs (root)");
        return;
    }
    let cluster = Cluster::start("walfull", &["max_wal_size = 64MB", "min_wal_size = 32MB"]);
    setup(&cluster);
    cluster.stop();
    let wal = cluster.datadir.join("pg_wal");
    let at = cluster.datadir.with_extension("wal");
    let _fs = move_onto_tmpfs(&wal, &at, 128);
    cluster.restart();
    refuses_then_goes_on(&cluster, 150_000_000);
}

/// DriftDB's directory on a 96 MB file system: a 120 MB value cannot be written there.
/// Before the fix the check looked at the data directory's file system, and the write
/// failed inside the critical section: a PANIC.
#[test]
fn a_full_driftdb_directory_is_an_error_not_a_panic() {
    if !Tmpfs::can_mount() {
        eprintln!(
            "NOT RUN: a_full_driftdb_directory_is_an_error_not_a_panic needs to mount a tmpfs (root)"
        );
        return;
    }
    let cluster = Cluster::start("drift-full", &[]);
    setup(&cluster);
    cluster.stop();
    let dir = cluster.datadir.join("driftdb");
    let _fs = move_onto_tmpfs(&dir, &dir, 96);
    cluster.restart();
    refuses_then_goes_on(&cluster, 120_000_000);
}
