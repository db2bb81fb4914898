//! The append of a batch whose keys were chosen to collide (#22, hash flooding): 50,000
//! INSERTs of 58-byte keys that all had one hash per class of 32 under the engine's old
//! hasher, whatever its seed (`append_batch::colliding_keys`), against 50,000 INSERTs of
//! random 58-byte keys, in the append bench's shape (2,500 transactions x 20 events,
//! keys in no order, so that every key goes through the batch's verdict table), without
//! fdatasync (the CPU's part). Before the criterion group it prints the ratio of the two
//! measured side by side, in alternating pairs, steadier than two groups run one after
//! the other on a shared machine.
//!
//! `CARGO_TARGET_DIR=$PWD/target cargo bench -p driftdb-storage --bench hash_flood`

mod append_batch;

use std::hint::black_box;
use std::time::{Duration, Instant};

use append_batch::*;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use driftdb_storage::*;

/// The time of one append of `batch` (a copy, made outside the timed part) into a fresh
/// store, without fdatasync.
fn timed_append(batch: &[Txn]) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let mut s = fresh_store(dir.path(), Durability::NoSync);
    let batch = batch.to_vec();
    let t = Instant::now();
    black_box(s.append(&batch, &AllCommitted).unwrap());
    t.elapsed()
}

fn bench_flood(c: &mut Criterion) {
    let n = TXNS * PER_TXN;
    let colliding = inserts_of_keys(&colliding_keys(n));
    let random = inserts_of_keys(&random_keys(n));
    let rounds = 10;
    let mut ratios = Vec::new();
    let (mut tc, mut tr) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let (c, r) = if round % 2 == 0 {
            let c = timed_append(&colliding);
            (c, timed_append(&random))
        } else {
            let r = timed_append(&random);
            (timed_append(&colliding), r)
        };
        ratios.push(c.as_secs_f64() / r.as_secs_f64());
        tc.push(c);
        tr.push(r);
    }
    ratios.sort_by(f64::total_cmp);
    eprintln!(
        "hash flood, side by side ({rounds} pairs): colliding keys take {:.2}x the time of \
         random ones (median of the pairs; range {:.2}x-{:.2}x); median append {:?} \
         colliding, {:?} random",
        ratios[rounds / 2],
        ratios[0],
        ratios[rounds - 1],
        median(&tc),
        median(&tr)
    );

    let mut g = c.benchmark_group("hash_flood");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    g.bench_function("append_50k_colliding_58_byte_keys_nosync", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| timed_append(&colliding)).sum())
    });
    g.bench_function("append_50k_random_58_byte_keys_nosync", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| timed_append(&random)).sum())
    });
    g.finish();
}

criterion_group!(benches, bench_flood);
criterion_main!(benches);
