//! Verifiable history (issue #21): an RFC 9162 Merkle tree over the committed transaction
//! groups, so that a user who keeps a small [`LedgerDigest`] (tree size and root) can later
//! check that history was only ever appended to ([`ConsistencyProof`]) and that a group is
//! in it ([`InclusionProof`]), with proofs of `O(log n)` hashes that verify offline.
//!
//! [`hash`] (RFC 9162's hashing with SHA-256), [`tree`] (the append-only tree file),
//! [`proof`] (the pure verification functions) and [`encoding`] (digests and proofs as bytes
//! and text) are the tree alone. [`leaf`] says what a leaf is (the canonical bytes of one
//! committed group), [`files`] how a store keeps its ledger (the tree and a record per
//! leaf beside it), [`kept`] the leaf sections of dropped tables, and [`report`] what
//! checking a digest against a store's log found. The
//! store appends the leaves (`Store::extend_ledger`, `store/ledger.rs`). `docs/ledger.md` has
//! the layouts and the algorithms.

pub mod encoding;
pub mod files;
pub mod hash;
pub mod kept;
pub mod leaf;
pub mod proof;
pub mod report;
pub mod tree;

pub use encoding::{ConsistencyProof, InclusionProof, LedgerDigest};
pub use hash::{leaf_hash, node_hash, Hash, RootBuilder, EMPTY_ROOT, HASH_LEN};
pub use leaf::{value_commitment, Leaf, LeafEvent, LeafHashes, LeafOp, LeafTable};
pub use proof::{
    consistency_proof_len, inclusion_proof_len, verify_consistency, verify_inclusion, ProofError,
};
pub use report::{DigestReport, Divergence, StoredTree, TableDiff};
pub use tree::MerkleTree;
