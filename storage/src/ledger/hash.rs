//! The tree's hashing, exactly RFC 9162 section 2.1.1 (the same as RFC 6962 section 2.1)
//! with SHA-256:
//!
//! ```text
//! MTH({})       = SHA-256()                                 the empty tree
//! MTH({d(0)})   = SHA-256(0x00 || d(0))                     a leaf
//! MTH(D[n])     = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))
//!                 k = the largest power of two smaller than n (n > 1)
//! ```
//!
//! The prefixes keep a leaf from ever hashing like an interior node (second preimages).

use sha2::{Digest as _, Sha256};

/// Length of every hash in the tree (SHA-256).
pub const HASH_LEN: usize = 32;

/// One SHA-256 hash: a leaf hash, an interior node or a root.
pub type Hash = [u8; HASH_LEN];

/// The root of the empty tree: SHA-256 of no bytes.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The hash of a leaf's data: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of a tree built by appending leaf hashes one at a time, keeping only the roots
/// of the complete subtrees (one per set bit of the size, at most 64 hashes): the streaming
/// form of `MTH`, for recomputing a root without storing the tree.
#[derive(Clone, Debug, Default)]
pub struct RootBuilder {
    size: u64,
    /// Roots of the complete subtrees, largest (leftmost) first.
    subtrees: Vec<Hash>,
}

impl RootBuilder {
    pub fn new() -> RootBuilder {
        RootBuilder::default()
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: &Hash) {
        let mut node = *leaf;
        // Leaf `size` completes as many subtrees as `size` has trailing one bits.
        for _ in 0..(self.size + 1).trailing_zeros() {
            let left = self.subtrees.pop().expect("one subtree root per set bit");
            node = node_hash(&left, &node);
        }
        self.subtrees.push(node);
        self.size += 1;
    }

    /// Leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the tree of the leaves appended so far.
    pub fn root(&self) -> Hash {
        let mut nodes = self.subtrees.iter().rev();
        let Some(last) = nodes.next() else {
            return EMPTY_ROOT;
        };
        nodes.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// Lowercase hex, 64 characters.
pub fn hash_to_hex(hash: &Hash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * HASH_LEN);
    for b in hash {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Parses exactly 64 lowercase hex digits (the one spelling [`hash_to_hex`] gives, so a
/// digest's text form is canonical).
pub fn hash_from_hex(s: &str) -> Option<Hash> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = s.as_bytes();
    if bytes.len() != 2 * HASH_LEN {
        return None;
    }
    let mut out = [0u8; HASH_LEN];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        let h: Hash = Sha256::digest([]).into();
        assert_eq!(h, EMPTY_ROOT);
        assert_eq!(
            hash_to_hex(&EMPTY_ROOT),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn prefixes() {
        // SHA-256 of the single byte 0x00: the leaf hash of empty data (RFC 6962's tree of
        // size 1 in the Certificate Transparency test data).
        assert_eq!(
            hash_to_hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        let mut cat = vec![1u8];
        cat.extend_from_slice(&a);
        cat.extend_from_slice(&b);
        let want: Hash = Sha256::digest(&cat).into();
        assert_eq!(node_hash(&a, &b), want);
        assert_ne!(node_hash(&a, &b), node_hash(&b, &a));
    }

    #[test]
    fn root_builder_is_mth() {
        // MTH straight from the definition.
        fn mth(leaves: &[Hash]) -> Hash {
            match leaves.len() {
                0 => EMPTY_ROOT,
                1 => leaves[0],
                n => {
                    let k = 1 << (63 - (n as u64 - 1).leading_zeros());
                    node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
                }
            }
        }
        let leaves: Vec<Hash> = (0..70u32).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let mut b = RootBuilder::new();
        assert_eq!(b.root(), EMPTY_ROOT);
        for (n, l) in leaves.iter().enumerate() {
            b.push(l);
            assert_eq!(b.size(), n as u64 + 1);
            assert_eq!(b.root(), mth(&leaves[..=n]), "{} leaves", n + 1);
        }
    }

    #[test]
    fn hex_round_trip_and_rejects() {
        let h = leaf_hash(b"x");
        assert_eq!(hash_from_hex(&hash_to_hex(&h)), Some(h));
        let upper = hash_to_hex(&h).to_uppercase();
        assert_eq!(hash_from_hex(&upper), None);
        assert_eq!(hash_from_hex(&hash_to_hex(&h)[1..]), None);
        assert_eq!(hash_from_hex(&format!("{}0", hash_to_hex(&h))), None);
        assert_eq!(hash_from_hex(&"g".repeat(64)), None);
        // A multi-byte character must not be split into a "digit".
        assert_eq!(hash_from_hex(&format!("{}é", &hash_to_hex(&h)[..62])), None);
    }
}
