//! Repeats the append bench's batch (2,500 transactions x 20 INSERTs into a fresh store)
//! for profiling: `cargo run --release -p driftdb-storage --example append_profile
//! [rounds] [sync]` under `perf record`. Prints the median and the fastest time of the
//! appends alone. With `sync`, the appends are durable, and each round also makes a plain
//! write + fdatasync of as many bytes to a fresh file in the same directory (the raw
//! disk), before the append in odd rounds and after it in even ones: it prints the ratio of
//! the two medians, and the median and quartiles of each round's own ratio (its raw time
//! over its append time). A round's two writes meet the same state of this shared machine,
//! which changes from second to second: the ratio of each pair is the steadier figure.

use driftdb_storage::*;
use std::io::Write;
use std::time::{Duration, Instant};

fn main() {
    let rounds: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(40);
    let sync = std::env::args().nth(2).as_deref() == Some("sync");
    let mut total = Vec::new();
    let mut raw = Vec::new();
    // FRESH: each round builds its batch anew (as the criterion bench does), in memory the
    // last round freed; otherwise one batch, laid out in order, serves every round.
    let fresh = std::env::var_os("FRESH").is_some();
    let mut kept = batch();
    // The bytes an append writes, for a round whose raw write comes first (the same in
    // every round: the first round writes raw after its append).
    let mut expected_bytes = 0;
    for round in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(
            dir.path(),
            Config {
                durability: if sync {
                    Durability::Sync
                } else {
                    Durability::NoSync
                },
                ..Config::default()
            },
        )
        .unwrap();
        s.create_table(1).unwrap();
        // As the bench does: the segments exist, and one row sorts before the batch.
        let mut first = batch_of(1, 1);
        first[0].events[0].key = b"user-".to_vec();
        s.append(&first, &AllCommitted).unwrap();
        if fresh {
            drop(std::mem::take(&mut kept));
            kept = batch();
        }
        let batch = &kept;
        let raw_first = sync && round % 2 == 1;
        if raw_first {
            raw.push(raw_write(dir.path(), expected_bytes));
        }
        let before = s.stats().bytes_written;
        let t = Instant::now();
        s.append(batch, &AllCommitted).unwrap();
        total.push(t.elapsed());
        let written = s.stats().bytes_written - before;
        if sync && !raw_first {
            raw.push(raw_write(dir.path(), written));
        }
        expected_bytes = written;
    }
    println!(
        "median append: {:?} (fastest {:?})",
        median(&mut total),
        fastest(&total)
    );
    if sync {
        let mut ratios: Vec<f64> = raw
            .iter()
            .zip(&total)
            .map(|(r, a)| r.as_secs_f64() / a.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let quartile = |q: usize| 100.0 * ratios[(ratios.len() - 1) * q / 4];
        let (raw, append) = (median(&mut raw), median(&mut total));
        println!(
            "median raw write + fdatasync: {:?} (append at {:.0}% of the raw bandwidth)",
            raw,
            100.0 * raw.as_secs_f64() / append.as_secs_f64()
        );
        println!(
            "each round's raw / append: median {:.0}%, quartiles {:.0}% and {:.0}%",
            quartile(2),
            quartile(1),
            quartile(3)
        );
    }
}

/// Writes `bytes` bytes to a fresh file in `dir` with one write and fdatasyncs it, as the
/// bench's baseline does (the file made and synced first); the time of the write and the
/// sync.
fn raw_write(dir: &std::path::Path, bytes: u64) -> Duration {
    let data = vec![0x5au8; bytes as usize];
    let path = dir.join("raw");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&[0u8; 32]).unwrap();
    f.sync_all().unwrap();
    let t = Instant::now();
    f.write_all(&data).unwrap();
    f.sync_data().unwrap();
    let took = t.elapsed();
    std::fs::remove_file(&path).unwrap();
    took
}

/// The middle of `times` (the machines these run on are noisy: a mean follows outliers).
fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The shortest of `times`: the run least disturbed by other work.
fn fastest(times: &[Duration]) -> Duration {
    times.iter().copied().min().unwrap_or_default()
}

/// 2,500 transactions x 20 INSERTs of about 100 bytes of column data each, keys rising
/// (with SCATTER set: in no order, as the bench's scattered batch).
fn batch() -> Vec<Txn> {
    let mut b = batch_of(2500, 20);
    if std::env::var_os("SCATTER").is_some() {
        for (i, e) in b.iter_mut().flat_map(|t| t.events.iter_mut()).enumerate() {
            e.key = format!("user-{:010}", i as u64 * 7919 % 50_000).into_bytes();
        }
    }
    b
}

fn batch_of(txns: u64, per_txn: u64) -> Vec<Txn> {
    (0..txns)
        .map(|t| Txn {
            xid: t + 1,
            commit_ts: 0,
            role: "bench".into(),
            events: (0..per_txn)
                .map(|e| {
                    let i = t * per_txn + e;
                    Event {
                        table: 1,
                        key: format!("user-{i:010}").into_bytes(),
                        op: Op::Insert(Row(vec![
                            (1, Some(i.to_be_bytes().to_vec())),
                            (2, Some(format!("name number {i}").into_bytes())),
                            (3, Some(vec![b'x'; 64])),
                            (4, None),
                        ])),
                    }
                })
                .collect(),
        })
        .collect()
}
