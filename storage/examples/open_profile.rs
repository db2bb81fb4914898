//! What opening a store costs as its history grows: the measurement behind the design of
//! "Storage inside Postgres" (docs/design.md, #19).
//!
//! `cargo run --release -p driftdb-storage --example open_profile [groups...]` builds, for
//! each count, a store of 10 tables of 1,000 rows and that many one-event transaction
//! groups (updates spread over the tables), snapshots every table at the end (as the
//! background worker would), and then, in this process, times a writer's open with
//! recovery (what the first backend after a start does), one without (`recover: false`:
//! every later backend), a reader's open (a standby's backends), and the first point lookup
//! after it, and reports how much the process' resident memory grew; then, in a store
//! opened without recovery, the first append to a table and a second one (a backend's
//! first write to a table finds the end of its log). Run each count in its
//! own process for the memory figure (the stores are kept in the temp directory).

use std::time::Instant;

use driftdb_storage::{
    AllCommitted, Config, Durability, Event, Op, OpenMode, Row, Store, TableId, Txn,
};

const TABLES: u64 = 10;
const ROWS: u64 = 1000;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("status");
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

fn key(k: u64) -> Vec<u8> {
    k.to_be_bytes().to_vec()
}

fn build(root: &std::path::Path, groups: u64) {
    let config = Config {
        durability: Durability::NoSync,
        ..Config::default()
    };
    let mut store = Store::open(root, config).expect("open");
    let mut xid = 1000u64;
    let mut txn = |events: Vec<Event>| {
        xid += 1;
        Txn {
            xid,
            commit_ts: 0,
            role: "bench".into(),
            events,
        }
    };
    let tables: Vec<TableId> = (1..=TABLES).collect();
    for &t in &tables {
        store.create_table(t).expect("create");
    }
    let inserts: Vec<Txn> = tables
        .iter()
        .map(|&t| {
            txn((0..ROWS)
                .map(|k| Event {
                    table: t,
                    key: key(k),
                    op: Op::Insert(Row(vec![(1, Some(key(k))), (2, Some(vec![0; 8]))])),
                })
                .collect())
        })
        .collect();
    store.append(&inserts, &AllCommitted).expect("insert");
    let mut done = 0u64;
    while done < groups {
        let n = (groups - done).min(5000);
        let batch: Vec<Txn> = (0..n)
            .map(|i| {
                let g = done + i;
                txn(vec![Event {
                    table: tables[(g % TABLES) as usize],
                    key: key((g / TABLES) % ROWS),
                    op: Op::Patch(vec![(2, Some(g.to_le_bytes().to_vec()))]),
                }])
            })
            .collect();
        store.append(&batch, &AllCommitted).expect("append");
        done += n;
    }
    let at = store.current_seq().expect("seq");
    for &t in &tables {
        store.snapshot(t, at, &AllCommitted).expect("snapshot");
    }
    // As the fates worker does every second: the next recovering open trusts what is synced.
    store.sync_index().expect("sync index");
}

fn main() {
    let counts: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![10_000, 100_000, 1_000_000]
    } else {
        counts
    };
    println!(
        "groups    journal_MB  recovering_open_ms  writer_open_ms  reader_open_ms  first_get_ms  rss_growth_MB  table_log_MB  first_append_ms  next_append_ms"
    );
    for groups in counts {
        let dir = std::env::temp_dir().join(format!("driftdb-open-profile-{groups}"));
        if !dir.join("journal").is_dir() {
            let _ = std::fs::remove_dir_all(&dir);
            build(&dir, groups);
        }
        let journal: u64 = std::fs::read_dir(dir.join("journal"))
            .expect("journal")
            .map(|e| e.expect("entry"))
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| e.metadata().expect("meta").len())
            .sum();
        let before = rss_kib();
        let t = Instant::now();
        let store = Store::open(&dir, Config::default()).expect("open");
        let writer_ms = t.elapsed().as_secs_f64() * 1e3;
        drop(store);
        let t = Instant::now();
        let quick = Config {
            recover: false,
            ..Config::default()
        };
        let store = Store::open(&dir, quick).expect("open");
        let quick_ms = t.elapsed().as_secs_f64() * 1e3;
        drop(store);
        let t = Instant::now();
        let reader = Config {
            mode: OpenMode::Reader,
            ..Config::default()
        };
        let mut store = Store::open(&dir, reader).expect("open");
        let reader_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let at = store.current_seq().expect("seq");
        let row = store.get(3, &key(7), at, &AllCommitted).expect("get");
        let get_ms = t.elapsed().as_secs_f64() * 1e3;
        assert!(row.is_some());
        let grown = rss_kib().saturating_sub(before);
        drop(store);
        let table_log: u64 = std::fs::read_dir(dir.join("tables/3"))
            .expect("table 3")
            .map(|e| e.expect("entry"))
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| e.metadata().expect("meta").len())
            .sum();
        let quick = Config {
            recover: false,
            durability: Durability::NoSync,
            ..Config::default()
        };
        let mut store = Store::open(&dir, quick).expect("open");
        let mut xid = 1u64 << 40;
        let mut append_ms = || {
            xid += 1;
            let t = Instant::now();
            let txn = Txn {
                xid,
                commit_ts: 0,
                role: "bench".into(),
                events: vec![Event {
                    table: 3,
                    key: key(7),
                    op: Op::Patch(vec![(2, Some(xid.to_le_bytes().to_vec()))]),
                }],
            };
            store.append(&[txn], &AllCommitted).expect("append");
            t.elapsed().as_secs_f64() * 1e3
        };
        let (first_append, next_append) = (append_ms(), append_ms());
        println!(
            "{groups:<9} {:>10.1}  {writer_ms:>18.1}  {quick_ms:>14.1}  {reader_ms:>14.1}  {get_ms:>12.2}  {:>13.1}  {:>12.1}  {first_append:>15.2}  {next_append:>14.2}",
            journal as f64 / 1e6,
            grown as f64 / 1024.0,
            table_log as f64 / 1e6,
        );
    }
}
