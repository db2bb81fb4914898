//! What a new backend's first point lookup costs in a large table (#19): builds a store with
//! one table of N rows (inserted in transactions of 200,000, then snapshotted), and three
//! times opens it without recovery (as every backend after the first does) and times the
//! open, the first point lookup (which opens the snapshot) and a second one elsewhere.
//!
//! `cargo run --release -p driftdb-storage --example first_lookup [rows]` (default
//! 1,000,000; the store is kept in the temp directory and reused).

use std::time::Instant;

use driftdb_storage::{AllCommitted, Config, Durability, Event, Op, Row, Store, Txn};

fn key(k: u64) -> Vec<u8> {
    k.to_be_bytes().to_vec()
}

fn main() {
    let rows: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("driftdb-first-lookup-{rows}"));
    if !dir.join("journal").is_dir() {
        let config = Config {
            durability: Durability::NoSync,
            ..Config::default()
        };
        let mut s = Store::open(&dir, config).expect("open");
        s.create_table(1).expect("create");
        let (mut done, mut xid) = (0, 10);
        while done < rows {
            let n = (rows - done).min(200_000);
            let events = (done..done + n)
                .map(|k| Event {
                    table: 1,
                    key: key(k),
                    op: Op::Insert(Row(vec![
                        (1, Some(key(k))),
                        (2, Some(format!("name {k}").into_bytes())),
                    ])),
                })
                .collect();
            xid += 1;
            let txn = Txn {
                xid,
                commit_ts: 0,
                role: "bench".into(),
                events,
            };
            s.append(&[txn], &AllCommitted).expect("append");
            done += n;
        }
        let at = s.current_seq().expect("seq");
        s.snapshot(1, at, &AllCommitted).expect("snapshot");
        s.sync_index().expect("sync index");
    }
    println!("rows        open_ms  first_lookup_ms  second_lookup_ms");
    for _ in 0..3 {
        let t = Instant::now();
        let quick = Config {
            recover: false,
            ..Config::default()
        };
        let mut s = Store::open(&dir, quick).expect("open");
        let open = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let at = s.current_seq().expect("seq");
        let first = s.get(1, &key(rows / 3), at, &AllCommitted).expect("get");
        let first_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let second = s.get(1, &key(rows / 2), at, &AllCommitted).expect("get");
        let second_ms = t.elapsed().as_secs_f64() * 1e3;
        assert!(first.is_some() && second.is_some());
        println!("{rows:<10} {open:>8.2}  {first_ms:>15.2}  {second_ms:>16.2}");
    }
}
