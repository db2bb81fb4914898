//! Repeats the append bench's batch (2,500 transactions x 20 INSERTs into a fresh store)
//! for profiling: `cargo run --release -p driftdb-storage --example append_profile
//! [rounds] [sync]` under `perf record`. Prints the median and the fastest time of the
//! appends alone; with `sync`, the appends are durable and each is paired with a raw write
//! of as many bytes, and it prints the share of the raw bandwidth the appends reached, as
//! the bench's side-by-side figure does (`benches/append_batch.rs`).
//!
//! `SCATTER=1`: keys in no order. `FRESH=1`: each round builds its batch anew (as the
//! bench does); otherwise one batch, laid out in order, serves every round.

#[path = "../benches/append_batch.rs"]
mod append_batch;

use append_batch::side_by_side;
use driftdb_storage::Durability;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(40);
    let durability = match std::env::args().nth(2).as_deref() {
        Some("sync") => Durability::Sync,
        _ => Durability::NoSync,
    };
    let scattered = std::env::var_os("SCATTER").is_some();
    let fresh = std::env::var_os("FRESH").is_some();
    println!(
        "{}",
        side_by_side(rounds, scattered, durability, fresh).report()
    );
}
