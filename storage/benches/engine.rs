//! Criterion benches of the engine's hot paths. Figures and the command that produced them:
//! `docs/benchmarks.md` (engine section).
//!
//! - append: one large batch (2,500 transactions x 20 events, about 6 MB) made durable,
//!   against a plain sequential write + fdatasync of as many bytes to the same disk; keys
//!   rising (a bulk load by a serial key) or scattered.
//! - current state: scan of 100k rows, point lookup (snapshot + a 1k-event delta).
//! - the past with 1M events of history: point lookup and scan at an old seq, and the history
//!   of one key.
//! - the history of one key whose events sit in 9 transactions of 100,000 events each.

mod append_batch;

use std::hint::black_box;
use std::time::{Duration, Instant};

use append_batch::*;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use driftdb_storage::*;

/// Time of `iters` appends of the batch, each into a fresh store, the batch built outside
/// the timed part (keys rising, or scattered).
fn timed_appends(iters: u64, durability: Durability, scattered: bool) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let dir = tempfile::tempdir().unwrap();
        let mut s = fresh_store(dir.path(), durability);
        let batch = batch(scattered);
        let t = Instant::now();
        black_box(s.append(&batch, &AllCommitted).unwrap());
        total += t.elapsed();
    }
    total
}

fn bench_append(c: &mut Criterion) {
    // Bytes one batch writes (table frames + journal frames).
    let probe = tempfile::tempdir().unwrap();
    let mut s = fresh_store(probe.path(), Durability::Sync);
    let before = s.stats().bytes_written;
    s.append(&batch(false), &AllCommitted).unwrap();
    let bytes = s.stats().bytes_written - before;
    drop(s);
    eprintln!(
        "append batch: {} events, {bytes} bytes written",
        TXNS * PER_TXN
    );
    // The ratio side by side (the benches below run one after the other, seconds apart).
    for scattered in [false, true] {
        let keys = if scattered { "scattered" } else { "rising" };
        eprintln!(
            "append vs raw, keys {keys}, side by side: {}",
            side_by_side(40, scattered, Durability::Sync, true).report()
        );
    }

    let mut g = c.benchmark_group("append");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("store_append_50k_events_fdatasync", |b| {
        b.iter_custom(|iters| timed_appends(iters, Durability::Sync, false))
    });
    g.bench_function("raw_sequential_write_fdatasync_same_bytes", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| raw_write(tempfile::tempdir().unwrap().path(), bytes))
                .sum()
        })
    });
    // The CPU part alone: the same append without fdatasync.
    g.bench_function("store_append_50k_events_nosync", |b| {
        b.iter_custom(|iters| timed_appends(iters, Durability::NoSync, false))
    });
    // Keys in no order: every INSERT is looked up in the batch's key map.
    g.bench_function("store_append_50k_scattered_keys_fdatasync", |b| {
        b.iter_custom(|iters| timed_appends(iters, Durability::Sync, true))
    });
    g.throughput(Throughput::Elements(TXNS * PER_TXN));
    g.bench_function("store_append_50k_events_fdatasync_events", |b| {
        b.iter_custom(|iters| timed_appends(iters, Durability::Sync, false))
    });
    g.finish();
}

fn bench_current(c: &mut Criterion) {
    let rows = 100_000u64;
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), config(Durability::NoSync)).unwrap();
    s.create_table(T).unwrap();
    for chunk in 0..rows / 10_000 {
        s.append(&inserts(chunk * 10_000, 1_000, 10), &AllCommitted)
            .unwrap();
    }
    let snap_seq = s.current_seq().unwrap();
    s.snapshot(T, snap_seq, &AllCommitted).unwrap();
    // A delta of 1,000 patches after the snapshot.
    let patches: Vec<Txn> = (0..1_000u64)
        .map(|i| Txn {
            xid: 10_000_000 + i,
            commit_ts: 0,
            role: "bench".into(),
            events: vec![Event {
                table: T,
                key: key(i * 97 % rows),
                op: Op::Patch(vec![(4, Some(b"patched".to_vec()))]),
            }],
        })
        .collect();
    s.append(&patches, &AllCommitted).unwrap();
    let now = s.current_seq().unwrap();

    let mut g = c.benchmark_group("current");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(rows));
    g.bench_function("scan_100k_rows", |b| {
        b.iter(|| {
            let n = s
                .scan(T, now, &AllCommitted)
                .unwrap()
                .try_fold(0u64, |n, r| r.map(|_| n + 1))
                .unwrap();
            assert_eq!(n, rows);
        })
    });
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("point_lookup", |b| {
        b.iter(|| {
            i = (i + 7_919) % rows;
            black_box(s.get(T, &key(i), now, &AllCommitted).unwrap().unwrap());
        })
    });
    g.finish();
}

fn bench_past(c: &mut Criterion) {
    let keys = 100_000u64;
    let total_events = 1_000_000u64;
    let built = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(
        dir.path(),
        Config {
            snapshots_kept: 10,
            ..config(Durability::NoSync)
        },
    )
    .unwrap();
    s.create_table(T).unwrap();
    for chunk in 0..keys / 10_000 {
        s.append(&inserts(chunk * 10_000, 1_000, 10), &AllCommitted)
            .unwrap();
    }
    let mut xid = 20_000_000u64;
    while s.current_seq().unwrap() < total_events {
        let at = s.current_seq().unwrap();
        let batch: Vec<Txn> = (0..1_000u64)
            .map(|t| {
                xid += 1;
                Txn {
                    xid,
                    commit_ts: 0,
                    role: "bench".into(),
                    events: (0..10u64)
                        .map(|e| Event {
                            table: T,
                            key: key((at + t * 10 + e) * 7_919 % keys),
                            op: Op::Patch(vec![(
                                1,
                                Some((at + t * 10 + e).to_be_bytes().to_vec()),
                            )]),
                        })
                        .collect(),
                }
            })
            .collect();
        s.append(&batch, &AllCommitted).unwrap();
        let now = s.current_seq().unwrap();
        if now.is_multiple_of(100_000) {
            s.snapshot(T, now, &AllCommitted).unwrap();
        }
    }
    let old = 450_000; // 50k events past the snapshot at 400k
    eprintln!(
        "history: {} events, built in {:?}",
        s.current_seq().unwrap(),
        built.elapsed()
    );

    let mut g = c.benchmark_group("past_1m_events");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    let mut i = 0u64;
    g.bench_function("point_lookup_at_snapshot_seq_400k", |b| {
        b.iter(|| {
            i = (i + 7_919) % keys;
            black_box(s.get(T, &key(i), 400_000, &AllCommitted).unwrap().unwrap());
        })
    });
    g.bench_function("point_lookup_at_seq_450k_50k_past_snapshot", |b| {
        b.iter(|| {
            i = (i + 7_919) % keys;
            black_box(s.get(T, &key(i), old, &AllCommitted).unwrap().unwrap());
        })
    });
    // Each lookup at a different seq: the replay from the snapshot at 400k is not reused.
    let mut j = 0u64;
    g.bench_function("point_lookup_at_new_seq_near_450k_cold", |b| {
        b.iter(|| {
            j += 1;
            i = (i + 7_919) % keys;
            black_box(
                s.get(T, &key(i), old - j % 1_000, &AllCommitted)
                    .unwrap()
                    .unwrap(),
            );
        })
    });
    // One key's history (about 10 events) with the newest snapshot at the last seq: the
    // frames the snapshot's key history names, not the 1M events.
    let now = s.current_seq().unwrap();
    let frames_before = s.stats().history_frames;
    let mut histories = 0u64;
    g.bench_function("history_of_one_key_1m_events", |b| {
        b.iter(|| {
            i = (i + 7_919) % keys;
            histories += 1;
            let h = s.history(T, &key(i), now, &AllCommitted).unwrap();
            assert!(!h.is_empty());
            black_box(h);
        })
    });
    eprintln!(
        "history of one key: {:.1} frames read per call",
        (s.stats().history_frames - frames_before) as f64 / histories as f64
    );
    g.throughput(Throughput::Elements(keys));
    g.bench_function("scan_at_seq_450k_100k_rows", |b| {
        b.iter(|| {
            let n = s
                .scan(T, old, &AllCommitted)
                .unwrap()
                .try_fold(0u64, |n, r| r.map(|_| n + 1))
                .unwrap();
            assert_eq!(n, keys);
        })
    });
    g.finish();
}

/// One key's history when its events sit in large transactions: 100,000 rows inserted in
/// one transaction, then 8 transactions each updating every row, a snapshot at the end.
/// The snapshot's key history names the key's 9 frames, each holding 100,000 events.
fn bench_history_in_large_frames(c: &mut Criterion) {
    let keys = 100_000u64;
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), config(Durability::NoSync)).unwrap();
    s.create_table(T).unwrap();
    s.append(&inserts(0, 1, keys), &AllCommitted).unwrap();
    for round in 1..=8u64 {
        let events = (0..keys)
            .map(|i| Event {
                table: T,
                key: key(i),
                op: Op::Patch(vec![(4, Some(round.to_be_bytes().to_vec()))]),
            })
            .collect();
        let txn = Txn {
            xid: 1_000 + round,
            commit_ts: 0,
            role: "bench".into(),
            events,
        };
        s.append(&[txn], &AllCommitted).unwrap();
    }
    let now = s.current_seq().unwrap();
    s.snapshot(T, now, &AllCommitted).unwrap();
    let mut g = c.benchmark_group("large_transactions");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    let mut i = 0u64;
    g.bench_function("history_of_one_key_9_frames_of_100k_events", |b| {
        b.iter(|| {
            i = (i + 7_919) % keys;
            let h = s.history(T, &key(i), now, &AllCommitted).unwrap();
            assert_eq!(h.len(), 9);
            black_box(h);
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_append,
    bench_current,
    bench_past,
    bench_history_in_large_frames
);
criterion_main!(benches);
