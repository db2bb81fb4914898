//! A fast keyed hasher for maps of keys that come from users: the append's verdict table
//! (`store/append.rs`) and the extension's record of a transaction's own writes (SipHash
//! dominated both for large batches).
//!
//! The hashing is foldhash's (`foldhash::fast`, hashbrown's default hasher): every step
//! folds the input with secret seeds, so no set of keys collides for every seed. The hasher
//! this crate had before did not do that (#22): its round `(h.rotate_left(23) ^ word) *
//! odd` let a flip of bit 63 of one word and bit 22 of the next cancel whatever the seed,
//! and a client could send thousands of keys with one hash (the tests keep such a
//! family, `old_collision_family`).
//!
//! The seeds are drawn for each map from std's `RandomState` (SipHash keyed with the
//! operating system's random bytes), not from foldhash's own `RandomState`, whose
//! process-wide seed comes from addresses and the clock: Postgres' backends are forked
//! from the postmaster and share its addresses. foldhash resists keys chosen in advance,
//! not an attacker who works out a map's seeds from timings while it lives; a map here
//! lives for one append or one transaction.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use foldhash::fast::FoldHasher;
use foldhash::SharedSeed;

/// Builds the hashers of one map: foldhash with seeds of its own.
#[derive(Clone, Debug)]
pub struct FastState {
    per_map: u64,
    shared: SharedSeed,
}

impl FastState {
    /// Seeds drawn anew: 128 random bits (std's `RandomState` gives each call keys of its
    /// own).
    pub fn new() -> FastState {
        let random = RandomState::new();
        FastState {
            per_map: random.hash_one(1u8),
            shared: SharedSeed::from_u64(random.hash_one(2u8)),
        }
    }
}

impl Default for FastState {
    fn default() -> FastState {
        FastState::new()
    }
}

impl BuildHasher for FastState {
    type Hasher = FoldHasher;

    fn build_hasher(&self) -> FoldHasher {
        FoldHasher::with_seed(self.per_map, &self.shared)
    }
}

pub type FastMap<K, V> = std::collections::HashMap<K, V, FastState>;

/// `n` distinct keys of 58 bytes in classes of 32 that each had one hash, whatever the
/// seed, under the hasher this crate had before (#22; see `old_round` in the tests): its
/// round `(h.rotate_left(23) ^ word) * odd` carries a flip of bit 63 of one 8-byte word
/// into bit 22 of the state the next word is XORed into, so flipping bit 22 of that next
/// word too cancels it. A class is a base key (its number in the last two bytes) with
/// such a pair of flips in any of the 5 pairs of words that end before the last word
/// (which overlaps word 6 from byte 50 on).
#[cfg(test)]
pub(crate) fn old_collision_family(n: usize) -> Vec<Vec<u8>> {
    let mut base = [0u8; 58];
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    for b in &mut base {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    (0..n)
        .map(|i| {
            let mut key = base.to_vec();
            key[56..].copy_from_slice(&((i / 32) as u16).to_be_bytes());
            for pair in (0..5).filter(|p| i >> p & 1 == 1) {
                key[8 * pair + 7] ^= 0x80; // bit 63 of word `pair`
                key[8 * (pair + 1) + 2] ^= 0x40; // bit 22 of word `pair + 1`
            }
            key
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hasher;

    /// The state the old hasher (before #22) reached for `(table, key)` from `seed`,
    /// before its final mix (equal states: equal hashes): a model of its round, kept to
    /// show that [`old_collision_family`] is what it claims.
    fn old_round(seed: u64, table: u64, key: &[u8]) -> u64 {
        let add = |h: u64, w: u64| (h.rotate_left(23) ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut h = add(add(seed, table), key.len() as u64);
        let mut words = key.chunks_exact(8);
        for w in &mut words {
            h = add(h, u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let rest = words.remainder().len();
        assert!(
            key.len() >= 8 && rest > 0,
            "the model covers these keys only"
        );
        let tail = u64::from_le_bytes(key[key.len() - 8..].try_into().expect("8 bytes"));
        add(h, tail ^ ((rest as u64) << 59))
    }

    /// The keys that collided under the old hasher for every seed (#22) hash apart: of
    /// 4,096 keys in 128 classes of 32, every hash is different, and the low 13 bits (the
    /// word a table of 8,192 starts probing at) spread as random ones would.
    #[test]
    fn keys_that_collided_for_every_seed_hash_apart() {
        let keys = old_collision_family(4096);
        assert_eq!(
            keys.iter().collect::<std::collections::HashSet<_>>().len(),
            4096
        );
        for seed in [0, 1, 0x5eed, u64::MAX] {
            let states: std::collections::HashSet<u64> =
                keys.iter().map(|k| old_round(seed, 7, k)).collect();
            assert_eq!(states.len(), 128, "the old hasher, seed {seed}");
        }
        for _ in 0..8 {
            let s = FastState::new();
            let hashes: Vec<u64> = keys
                .iter()
                .map(|k| s.hash_one((7u64, k.as_slice())))
                .collect();
            let distinct: std::collections::HashSet<u64> = hashes.iter().copied().collect();
            assert_eq!(distinct.len(), 4096);
            let mut per_word = vec![0u32; 8192];
            for h in &hashes {
                per_word[(h & 8191) as usize] += 1;
            }
            // Random hashes: about 4,096 * e^-0.5 = 3,225 distinct words, rarely more than
            // 7 keys on one (the old hasher: 128 words of 32 keys each).
            let used = per_word.iter().filter(|&&c| c > 0).count();
            let most = per_word.iter().max().copied().unwrap_or(0);
            assert!((3000..3450).contains(&used), "{used} words used");
            assert!(most <= 10, "{most} keys on one word");
        }
    }

    #[test]
    fn distinct_keys_hash_apart_and_maps_work() {
        let s = FastState::new();
        let h = |b: &[u8]| {
            let mut x = s.build_hasher();
            std::hash::Hash::hash(b, &mut x);
            x.finish()
        };
        assert_ne!(h(b"ab"), h(b"ab\0"));
        // Every byte of a remainder counts, whatever its length and place.
        let base = b"0123456789abcdefghijklmnopqrstu".to_vec();
        for len in 1..base.len() {
            for at in 0..len {
                let mut other = base[..len].to_vec();
                other[at] ^= 1;
                assert_ne!(h(&base[..len]), h(&other), "length {len}, byte {at}");
            }
        }
        assert_ne!(h(b"user-0000000001"), h(b"user-0000000002"));
        assert_eq!(h(b"same"), h(b"same"));
        let mut m: FastMap<(u64, &[u8]), bool> = FastMap::default();
        for i in 0..1000u32 {
            m.insert(
                (1, Box::leak(i.to_string().into_boxed_str()).as_bytes()),
                i % 2 == 0,
            );
        }
        assert_eq!(m.len(), 1000);
        assert_eq!(m.get(&(1, b"42".as_slice())), Some(&true));
        assert_eq!(m.get(&(2, b"42".as_slice())), None);
    }

    #[test]
    fn integer_keys_spread_over_the_low_bits() {
        // Keys as the Postgres layer encodes integers: 8 bytes, big-endian, sign bit
        // flipped. The buckets of a table of 2^18 come from the low 18 bits.
        let s = FastState::new();
        let mut low = std::collections::HashSet::new();
        for i in 1..=200_000i64 {
            let key = ((i as u64) ^ (1 << 63)).to_be_bytes();
            let mut x = s.build_hasher();
            std::hash::Hash::hash(&(7u64, key.as_slice()), &mut x);
            low.insert(x.finish() & ((1 << 18) - 1));
        }
        // Random hashes would give about 140,000 distinct values.
        assert!(low.len() > 130_000, "{} distinct bucket bits", low.len());
    }
}
