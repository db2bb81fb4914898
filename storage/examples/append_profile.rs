//! Repeats the append bench's batch (2,500 transactions x 20 INSERTs into a fresh store,
//! no sync) for profiling: `cargo run --release -p driftdb-storage --example append_profile`
//! under `perf record`. Prints the mean time of the appends alone.

use driftdb_storage::*;
use std::time::{Duration, Instant};

fn main() {
    let rounds: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(40);
    let mut total = Duration::ZERO;
    for _ in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(
            dir.path(),
            Config {
                durability: Durability::NoSync,
                ..Config::default()
            },
        )
        .unwrap();
        s.create_table(1).unwrap();
        let batch: Vec<Txn> = (0..2500u64)
            .map(|t| Txn {
                xid: t + 1,
                commit_ts: 0,
                role: "bench".into(),
                events: (0..20u64)
                    .map(|e| {
                        let i = t * 20 + e;
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
            .collect();
        let t = Instant::now();
        s.append(&batch, &AllCommitted).unwrap();
        total += t.elapsed();
    }
    println!("mean append: {:?}", total / rounds);
}
