//! The append bench's batch and its baseline, shared by the criterion bench (`engine.rs`)
//! and `examples/append_profile.rs`: 2,500 transactions x 20 INSERTs of about 100 bytes of
//! column data each, keys rising or scattered, appended to a fresh store; the raw disk is
//! one write of as many bytes to a fresh file in the same directory and one fdatasync.
//!
//! [`side_by_side`] times the two in pairs, each round's raw write right before or right
//! after its append: this shared machine's disk and CPU change from second to second, so
//! the ratio within each pair is steadier than the ratio of two benches run one after the
//! other.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use driftdb_storage::*;

pub const T: TableId = 1;
pub const TXNS: u64 = 2_500;
pub const PER_TXN: u64 = 20;

pub fn key(i: u64) -> Vec<u8> {
    format!("user-{i:010}").into_bytes()
}

/// About 100 bytes of column data.
pub fn row(i: u64) -> Row {
    Row(vec![
        (1, Some(i.to_be_bytes().to_vec())),
        (2, Some(format!("name number {i}").into_bytes())),
        (3, Some(vec![b'x'; 64])),
        (4, None),
    ])
}

pub fn inserts(first: u64, txns: u64, per_txn: u64) -> Vec<Txn> {
    (0..txns)
        .map(|t| Txn {
            xid: first + t,
            commit_ts: 0,
            role: "bench".into(),
            events: (0..per_txn)
                .map(|e| {
                    let i = first + t * per_txn + e;
                    Event {
                        table: T,
                        key: key(i),
                        op: Op::Insert(row(i)),
                    }
                })
                .collect(),
        })
        .collect()
}

/// [`inserts`] from 0 with the keys scattered: event `i` gets key `i * 7919 mod n` (7919
/// is prime and does not divide `n`, so every key is used once), so that validation
/// cannot take the rising-keys path.
pub fn scattered_inserts(txns: u64, per_txn: u64) -> Vec<Txn> {
    let n = txns * per_txn;
    let mut batch = inserts(0, txns, per_txn);
    for (i, e) in batch
        .iter_mut()
        .flat_map(|t| t.events.iter_mut())
        .enumerate()
    {
        e.key = key(i as u64 * 7919 % n);
    }
    batch
}

/// The bench's batch, keys rising or scattered.
pub fn batch(scattered: bool) -> Vec<Txn> {
    if scattered {
        scattered_inserts(TXNS, PER_TXN)
    } else {
        inserts(0, TXNS, PER_TXN)
    }
}

/// `n` distinct keys of 58 bytes in classes of 32 that each had one hash, whatever the
/// seed, under the hasher the engine had before #22 (`(h.rotate_left(23) ^ word) * odd`
/// per 8-byte word): a class is one base key (its number in the last two bytes) with bit
/// 63 of word `p` and bit 22 of word `p + 1` flipped, for any set of the 5 pairs `p` that
/// end before the last word. The hash flood bench's keys.
pub fn colliding_keys(n: u64) -> Vec<Vec<u8>> {
    let base = random_keys(1).remove(0);
    (0..n as usize)
        .map(|i| {
            let mut key = base.clone();
            key[56..].copy_from_slice(&((i / 32) as u16).to_be_bytes());
            for p in (0..5).filter(|p| i >> p & 1 == 1) {
                key[8 * p + 7] ^= 0x80;
                key[8 * (p + 1) + 2] ^= 0x40;
            }
            key
        })
        .collect()
}

/// `n` keys of 58 bytes, `z` and 57 random ones (the same ones each time; all different,
/// as random keys of 456 bits are), so that they sort above the one row of
/// [`fresh_store`] (the table has none of them: no lookup).
pub fn random_keys(n: u64) -> Vec<Vec<u8>> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let mut key: Vec<u8> = (0..58).map(|_| next() as u8).collect();
            key[0] = b'z';
            key
        })
        .collect()
}

/// [`inserts`] from 0 ([`TXNS`] x [`PER_TXN`] events) with the keys `keys` (as many)
/// scattered as in [`scattered_inserts`]: event `i` gets `keys[i * 7919 % n]`.
pub fn inserts_of_keys(keys: &[Vec<u8>]) -> Vec<Txn> {
    let n = keys.len() as u64;
    assert_eq!(n, TXNS * PER_TXN);
    let mut batch = inserts(0, TXNS, PER_TXN);
    for (i, e) in batch
        .iter_mut()
        .flat_map(|t| t.events.iter_mut())
        .enumerate()
    {
        e.key = keys[(i as u64 * 7919 % n) as usize].clone();
    }
    batch
}

pub fn config(durability: Durability) -> Config {
    Config {
        durability,
        ..Config::default()
    }
}

/// A fresh store with its segments created (so the timed append only appends), holding
/// one row whose key sorts before every key of the batches.
pub fn fresh_store(dir: &Path, durability: Durability) -> Store {
    let mut s = Store::open(dir, config(durability)).unwrap();
    s.create_table(T).unwrap();
    let mut first = inserts(u64::MAX / 2, 1, 1);
    first[0].events[0].key = b"user-".to_vec();
    s.append(&first, &AllCommitted).unwrap();
    s
}

/// The baseline: `bytes` bytes written to a fresh file `raw` in `dir` with one write and
/// fdatasynced once (the file made and synced first); the time of the write and the sync.
pub fn raw_write(dir: &Path, bytes: u64) -> Duration {
    let data = vec![0x5au8; bytes as usize];
    let path = dir.join("raw");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&[0u8; 32]).unwrap();
    f.sync_all().unwrap();
    let t = Instant::now();
    f.write_all(&data).unwrap();
    f.sync_data().unwrap();
    t.elapsed()
}

/// The times of `rounds` appends of the batch, each into a fresh store. With `fresh`, the
/// batch is built anew for each round outside the timed part (in memory the last round
/// freed, as the criterion bench does); otherwise one batch, laid out in order, serves
/// every round. A durable append is paired with a raw write of the bytes it wrote, made
/// right before it in odd rounds and right after it in even ones. The rounds' files stay
/// until the last round is done (about 12 MB a round).
pub fn side_by_side(rounds: usize, scattered: bool, durability: Durability, fresh: bool) -> Pairs {
    let sync = durability == Durability::Sync;
    let mut pairs = Pairs::default();
    let mut bytes = 0;
    let mut kept = batch(scattered);
    // Removed at the end: removing a round's files would make the next round's first
    // sync (the append's or the raw write's) commit their removal too.
    let mut dirs = Vec::new();
    for round in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let mut s = fresh_store(dir.path(), durability);
        if fresh {
            drop(std::mem::take(&mut kept));
            kept = batch(scattered);
        }
        let raw_first = sync && round % 2 == 1;
        if raw_first {
            pairs.raw.push(raw_write(dir.path(), bytes));
        }
        let before = s.stats().bytes_written;
        let t = Instant::now();
        s.append(&kept, &AllCommitted).unwrap();
        pairs.append.push(t.elapsed());
        bytes = s.stats().bytes_written - before;
        if sync && !raw_first {
            pairs.raw.push(raw_write(dir.path(), bytes));
        }
        drop(s);
        dirs.push(dir);
    }
    pairs
}

/// Appends and raw writes timed in pairs.
#[derive(Default)]
pub struct Pairs {
    pub append: Vec<Duration>,
    pub raw: Vec<Duration>,
}

impl Pairs {
    /// Each pair's raw time over its append time (the share of the raw bandwidth the
    /// append reached), sorted.
    pub fn ratios(&self) -> Vec<f64> {
        let mut r: Vec<f64> = self
            .raw
            .iter()
            .zip(&self.append)
            .map(|(r, a)| r.as_secs_f64() / a.as_secs_f64())
            .collect();
        r.sort_by(f64::total_cmp);
        r
    }

    /// One line: the pairs' median ratio and its quartiles, and the median times (without
    /// raw writes: the median and the fastest append).
    pub fn report(&self) -> String {
        if self.raw.is_empty() {
            return format!(
                "median append {:?} (fastest {:?})",
                median(&self.append),
                self.append.iter().min().copied().unwrap_or_default()
            );
        }
        let r = self.ratios();
        let at = |q: usize| 100.0 * r[(r.len() - 1) * q / 4];
        format!(
            "{} pairs: append at {:.0}% of the raw bandwidth (median of the pairs; quartiles \
             {:.0}% and {:.0}%); median append {:?}, median raw {:?}",
            r.len(),
            at(2),
            at(1),
            at(3),
            median(&self.append),
            median(&self.raw)
        )
    }
}

/// The middle of `times` (a mean follows the outliers of a noisy machine).
pub fn median(times: &[Duration]) -> Duration {
    let mut t = times.to_vec();
    t.sort();
    t[t.len() / 2]
}
