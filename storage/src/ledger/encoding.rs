//! Digests and proofs as values, and their byte and text encodings (`docs/ledger.md`).
//!
//! Binary, little-endian, version 1:
//!
//! ```text
//! digest       u8 1 | u8 1 | u64 tree_size | u64 last_seq | i64 commit_time | root[32]   58 bytes
//! inclusion    u8 1 | u8 2 | u64 leaf_index | u64 tree_size | u8 n | n x hash[32]   19 + 32n bytes
//! consistency  u8 1 | u8 3 | u64 size1 | u64 size2 | u8 n | n x hash[32]           19 + 32n bytes
//! ```
//!
//! The first byte is the encoding's version, the second what the bytes are. A proof's `n`
//! must be exactly the length a proof for its sizes has ([`inclusion_proof_len`],
//! [`consistency_proof_len`]: at most 64 and 65), and nothing may follow the last hash. A
//! digest of size 0 must carry the empty tree's root. Every decoder takes untrusted bytes:
//! it never panics and allocates at most the `n` hashes its input holds.
//!
//! Text form of a digest (for people, files and e-mails), canonical, one spelling per
//! digest:
//!
//! ```text
//! driftdb-digest:v1:<tree_size>:<last_seq>:<commit_time>:<root as 64 lowercase hex digits>
//! ```
//!
//! with the numbers in decimal without leading zeros or `+` (`commit_time` may be negative).

use std::fmt;
use std::str::FromStr;

use super::hash::{hash_from_hex, hash_to_hex, Hash, EMPTY_ROOT, HASH_LEN};
use super::proof::{
    consistency_proof_len, inclusion_proof_len, verify_consistency, verify_inclusion, ProofError,
};
use crate::format::DecodeResult;

/// Version of the digest and proof encodings (the first byte of each).
pub const ENCODING_VERSION: u8 = 1;
/// Second byte: a digest.
pub const KIND_DIGEST: u8 = 1;
/// Second byte: an inclusion proof.
pub const KIND_INCLUSION: u8 = 2;
/// Second byte: a consistency proof.
pub const KIND_CONSISTENCY: u8 = 3;
/// Length of an encoded digest.
pub const DIGEST_LEN: usize = 58;
/// Length of an encoded proof before its hashes.
pub const PROOF_HEADER_LEN: usize = 19;
/// Start of a digest's text form, up to its version.
pub const DIGEST_TEXT_PREFIX: &str = "driftdb-digest:v1:";

/// What a user keeps to check the ledger later: the size of the tree and its root, with two
/// fields the caller fills and the tree does not interpret (the last seq and the commit time
/// of the newest group in the tree, so that a person can tell which moment a digest is of).
/// They are not covered by the root: a proof checks sizes and roots only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LedgerDigest {
    pub tree_size: u64,
    pub root: Hash,
    pub last_seq: u64,
    pub commit_time: i64,
}

/// Proof that a leaf hash is leaf `leaf_index` of the tree of `tree_size` leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    /// RFC 9162's inclusion path: the siblings from the leaf up to the root.
    pub path: Vec<Hash>,
}

/// Proof that the tree of `size2` leaves extends the tree of `size1` leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub size1: u64,
    pub size2: u64,
    /// RFC 9162's consistency path.
    pub path: Vec<Hash>,
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        if self.bytes.len() < n {
            return Err("truncated");
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> DecodeResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> DecodeResult<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn hash(&mut self) -> DecodeResult<Hash> {
        let mut h = [0u8; HASH_LEN];
        h.copy_from_slice(self.take(HASH_LEN)?);
        Ok(h)
    }

    fn header(&mut self, kind: u8) -> DecodeResult<()> {
        if self.u8()? != ENCODING_VERSION {
            return Err("unknown ledger encoding version");
        }
        if self.u8()? != kind {
            return Err("not the kind of ledger value expected");
        }
        Ok(())
    }

    /// `u8 n | n hashes`, `n` required to be `expected`, and the end of the input after them.
    fn path(&mut self, expected: usize) -> DecodeResult<Vec<Hash>> {
        let n = usize::from(self.u8()?);
        if n != expected {
            return Err("proof length does not match its tree sizes");
        }
        if self.bytes.len() != n * HASH_LEN {
            return Err("proof hashes do not fill the input exactly");
        }
        (0..n).map(|_| self.hash()).collect()
    }

    fn end(&self) -> DecodeResult<()> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err("trailing bytes")
        }
    }
}

fn put_path(out: &mut Vec<u8>, path: &[Hash]) {
    // Proofs of this module have at most 65 hashes; a longer `path` was built by hand and is
    // encoded with a count no decoder accepts rather than a wrapped one.
    out.push(u8::try_from(path.len()).unwrap_or(u8::MAX));
    for h in path {
        out.extend_from_slice(h);
    }
}

impl LedgerDigest {
    /// `DIGEST_LEN` bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(DIGEST_LEN);
        out.push(ENCODING_VERSION);
        out.push(KIND_DIGEST);
        out.extend_from_slice(&self.tree_size.to_le_bytes());
        out.extend_from_slice(&self.last_seq.to_le_bytes());
        out.extend_from_slice(&self.commit_time.to_le_bytes());
        out.extend_from_slice(&self.root);
        out
    }

    pub fn decode(bytes: &[u8]) -> DecodeResult<LedgerDigest> {
        let mut r = Reader { bytes };
        r.header(KIND_DIGEST)?;
        let tree_size = r.u64()?;
        let last_seq = r.u64()?;
        let commit_time = r.u64()? as i64;
        let root = r.hash()?;
        r.end()?;
        let d = LedgerDigest {
            tree_size,
            root,
            last_seq,
            commit_time,
        };
        d.check()?;
        Ok(d)
    }

    fn check(&self) -> DecodeResult<()> {
        if self.tree_size == 0 && self.root != EMPTY_ROOT {
            return Err("a digest of the empty tree with another root");
        }
        Ok(())
    }

    /// The text form, `driftdb-digest:v1:<size>:<seq>:<time>:<hex root>` (also `Display`).
    pub fn to_text(&self) -> String {
        format!(
            "{DIGEST_TEXT_PREFIX}{}:{}:{}:{}",
            self.tree_size,
            self.last_seq,
            self.commit_time,
            hash_to_hex(&self.root)
        )
    }

    /// Parses the text form (also `FromStr`); only the spelling [`Self::to_text`] gives.
    pub fn from_text(s: &str) -> DecodeResult<LedgerDigest> {
        let rest = s
            .strip_prefix(DIGEST_TEXT_PREFIX)
            .ok_or("not a driftdb-digest:v1 text")?;
        let mut parts = rest.split(':');
        let mut field = || parts.next().ok_or("too few fields in a digest text");
        let tree_size = parse_u64(field()?)?;
        let last_seq = parse_u64(field()?)?;
        let commit_time = parse_i64(field()?)?;
        let root = hash_from_hex(field()?).ok_or("root is not 64 lowercase hex digits")?;
        if parts.next().is_some() {
            return Err("too many fields in a digest text");
        }
        let d = LedgerDigest {
            tree_size,
            root,
            last_seq,
            commit_time,
        };
        d.check()?;
        Ok(d)
    }
}

/// Decimal digits, no sign, no leading zero (but "0").
fn parse_u64(s: &str) -> DecodeResult<u64> {
    let b = s.as_bytes();
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b[0] == b'0') {
        return Err("not a canonical decimal number");
    }
    s.parse().map_err(|_| "number out of range")
}

/// As [`parse_u64`], with an optional `-` (but not "-0").
fn parse_i64(s: &str) -> DecodeResult<i64> {
    match s.strip_prefix('-') {
        Some(digits) => {
            parse_u64(digits)?;
            if digits == "0" {
                return Err("not a canonical decimal number");
            }
            s.parse().map_err(|_| "number out of range")
        }
        None => {
            parse_u64(s)?;
            s.parse().map_err(|_| "number out of range")
        }
    }
}

impl fmt::Display for LedgerDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl FromStr for LedgerDigest {
    type Err = &'static str;

    fn from_str(s: &str) -> DecodeResult<LedgerDigest> {
        LedgerDigest::from_text(s)
    }
}

impl InclusionProof {
    /// `PROOF_HEADER_LEN + 32 * path.len()` bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PROOF_HEADER_LEN + HASH_LEN * self.path.len());
        out.push(ENCODING_VERSION);
        out.push(KIND_INCLUSION);
        out.extend_from_slice(&self.leaf_index.to_le_bytes());
        out.extend_from_slice(&self.tree_size.to_le_bytes());
        put_path(&mut out, &self.path);
        out
    }

    pub fn decode(bytes: &[u8]) -> DecodeResult<InclusionProof> {
        let mut r = Reader { bytes };
        r.header(KIND_INCLUSION)?;
        let leaf_index = r.u64()?;
        let tree_size = r.u64()?;
        let expected =
            inclusion_proof_len(leaf_index, tree_size).ok_or("leaf index beyond the tree size")?;
        let path = r.path(expected)?;
        r.end()?;
        Ok(InclusionProof {
            leaf_index,
            tree_size,
            path,
        })
    }

    /// Checks the proof for `leaf_hash` against a tree of `tree_size` leaves with `root`.
    pub fn verify(&self, leaf_hash: &Hash, root: &Hash) -> Result<(), ProofError> {
        verify_inclusion(leaf_hash, self.leaf_index, self.tree_size, &self.path, root)
    }

    /// Checks the proof against a digest: the digest must be of the proof's tree size.
    pub fn verify_digest(&self, leaf_hash: &Hash, digest: &LedgerDigest) -> Result<(), ProofError> {
        if digest.tree_size != self.tree_size {
            return Err(ProofError::SizeMismatch {
                proof: self.tree_size,
                digest: digest.tree_size,
            });
        }
        self.verify(leaf_hash, &digest.root)
    }
}

impl ConsistencyProof {
    /// `PROOF_HEADER_LEN + 32 * path.len()` bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PROOF_HEADER_LEN + HASH_LEN * self.path.len());
        out.push(ENCODING_VERSION);
        out.push(KIND_CONSISTENCY);
        out.extend_from_slice(&self.size1.to_le_bytes());
        out.extend_from_slice(&self.size2.to_le_bytes());
        put_path(&mut out, &self.path);
        out
    }

    pub fn decode(bytes: &[u8]) -> DecodeResult<ConsistencyProof> {
        let mut r = Reader { bytes };
        r.header(KIND_CONSISTENCY)?;
        let size1 = r.u64()?;
        let size2 = r.u64()?;
        let expected =
            consistency_proof_len(size1, size2).ok_or("first tree size beyond the second")?;
        let path = r.path(expected)?;
        r.end()?;
        Ok(ConsistencyProof { size1, size2, path })
    }

    /// Checks that the tree of `size2` leaves with `root2` extends the one of `size1` leaves
    /// with `root1`.
    pub fn verify(&self, root1: &Hash, root2: &Hash) -> Result<(), ProofError> {
        verify_consistency(self.size1, root1, self.size2, root2, &self.path)
    }

    /// Checks the proof between two digests, which must be of the proof's two sizes.
    pub fn verify_digests(&self, old: &LedgerDigest, new: &LedgerDigest) -> Result<(), ProofError> {
        for (proof, digest) in [(self.size1, old.tree_size), (self.size2, new.tree_size)] {
            if proof != digest {
                return Err(ProofError::SizeMismatch { proof, digest });
            }
        }
        self.verify(&old.root, &new.root)
    }
}
