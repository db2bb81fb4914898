//! Verifiable history (issue #21): an RFC 9162 Merkle tree over the committed transaction
//! groups, so that a user who keeps a small [`LedgerDigest`] (tree size and root) can later
//! check that history was only ever appended to ([`ConsistencyProof`]) and that a group is
//! in it ([`InclusionProof`]), with proofs of `O(log n)` hashes that verify offline.
//!
//! This module is the tree alone: [`hash`] (RFC 9162's hashing with SHA-256), [`tree`] (the
//! append-only tree file), [`proof`] (the pure verification functions) and [`encoding`]
//! (digests and proofs as bytes and text). What a leaf holds and when leaves are appended
//! are decided by the store. `docs/ledger.md` has the layout and the algorithms.

pub mod encoding;
pub mod hash;
pub mod proof;
pub mod tree;

pub use encoding::{ConsistencyProof, InclusionProof, LedgerDigest};
pub use hash::{leaf_hash, node_hash, Hash, EMPTY_ROOT, HASH_LEN};
pub use proof::{
    consistency_proof_len, inclusion_proof_len, verify_consistency, verify_inclusion, ProofError,
};
pub use tree::MerkleTree;
