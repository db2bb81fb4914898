//! A fast hasher for maps of keys: the append path's per-batch maps and the extension's
//! record of a transaction's own writes (SipHash dominated both for large batches).
//! Seeded randomly per map, like `RandomState`, so that colliding keys cannot be chosen in
//! advance.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

#[derive(Clone, Copy)]
pub struct FastState(u64);

impl FastState {
    pub fn new() -> FastState {
        FastState(RandomState::new().hash_one(0x5eed_u64))
    }
}

impl Default for FastState {
    fn default() -> FastState {
        FastState::new()
    }
}

impl BuildHasher for FastState {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.0)
    }
}

pub struct FastHasher(u64);

const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(MULTIPLIER);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder().len();
        if rest > 0 {
            // The last bytes as one word, read without copying them out one by one (a copy
            // of a length known only at run time is a call): the last 8 bytes, overlapping
            // the word before, or for a short slice, loads that cover every byte. Marked
            // with the remainder's length, so that slices of different lengths differ.
            self.add(tail_word(bytes) ^ ((rest as u64) << 59));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }

    fn write_usize(&mut self, v: usize) {
        self.add(v as u64);
    }

    fn finish(&self) -> u64 {
        // A full avalanche (every input bit reaches every output bit): the words mostly
        // differ in their high bits (big-endian integer keys), and the table picks buckets
        // by the low ones.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// A word holding every byte of `b` at or after its last multiple of 8 (`b` not empty).
fn tail_word(b: &[u8]) -> u64 {
    let n = b.len();
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| {
        u64::from(u32::from_le_bytes(
            b[at..at + 4].try_into().expect("4 bytes"),
        ))
    };
    match n {
        8.. => word(n - 8),
        4..=7 => half(0) | half(n - 4) << 32,
        _ => u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16,
    }
}

pub type FastMap<K, V> = std::collections::HashMap<K, V, FastState>;

#[cfg(test)]
mod tests {
    use super::*;

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
