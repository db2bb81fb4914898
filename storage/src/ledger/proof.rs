//! Checking proofs: pure functions of the proof and the digests, no I/O and no state, so that
//! an offline tool can check a proof from the proof and the digests alone.
//!
//! The algorithms are RFC 9162's: section 2.1.3.2 (verifying an inclusion proof) and section
//! 2.1.4.2 (verifying a consistency proof), step by step. Before running them, each function
//! checks the proof's length against the one length a correct proof for those sizes has
//! ([`inclusion_proof_len`], [`consistency_proof_len`]); the RFC's loops reject a wrong
//! length as well, this only makes the error say so.

use super::hash::{node_hash, Hash, EMPTY_ROOT};

/// Why a proof was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// An inclusion proof for a leaf the tree does not have.
    #[error("leaf index {index} is not in a tree of {size} leaves")]
    IndexOutOfRange { index: u64, size: u64 },
    /// A consistency proof from a larger tree to a smaller one.
    #[error("tree size {size2} is smaller than {size1}: a ledger never shrinks")]
    SizeDecreased { size1: u64, size2: u64 },
    /// The proof does not have the number of hashes a proof for these sizes has.
    #[error("a proof for these tree sizes has {expected} hashes, this one has {got}")]
    WrongLength { expected: usize, got: usize },
    /// A proof checked against a digest of another tree size.
    #[error("the proof is for a tree of {proof} leaves, the digest of one of {digest}")]
    SizeMismatch { proof: u64, digest: u64 },
    /// The hashes do not lead to the root given (for a consistency proof: to either root).
    #[error("the proof does not lead to the root it is checked against")]
    RootMismatch,
}

/// The number of hashes in the inclusion proof of leaf `index` in the tree of `size`
/// leaves; `None` when `index >= size`.
///
/// The path from the leaf to the root has one sibling per level where the leaf's subtree has
/// a right or left neighbour: the levels below the highest bit where `index` and `size - 1`
/// differ (`inner`), plus one for each set bit of `index` above them (left siblings on the
/// right border of the tree).
pub fn inclusion_proof_len(index: u64, size: u64) -> Option<usize> {
    if index >= size {
        return None;
    }
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    Some((inner + border) as usize)
}

/// The number of hashes in the consistency proof from the tree of `size1` leaves to the tree
/// of `size2` leaves; `None` when `size1 > size2`. It is 0 when `size1` is 0 or equal to
/// `size2`.
///
/// The proof is the inclusion path of the last node shared by both trees (the subtree of
/// `2^t` leaves ending at leaf `size1 - 1`, `t` = trailing zero bits of `size1`) in the larger
/// tree, preceded by that node itself unless it is the whole smaller tree (`size1 = 2^t`).
pub fn consistency_proof_len(size1: u64, size2: u64) -> Option<usize> {
    if size1 > size2 {
        return None;
    }
    if size1 == 0 || size1 == size2 {
        return Some(0);
    }
    let inner = 64 - ((size1 - 1) ^ (size2 - 1)).leading_zeros();
    let border = (size1 - 1).checked_shr(inner).unwrap_or(0).count_ones();
    // `size1 - 1` ends in `t` one bits and `size2 - 1 > size1 - 1`, so they differ above them:
    // `inner > t`.
    let shift = size1.trailing_zeros();
    let seed = usize::from(!size1.is_power_of_two());
    Some((inner - shift + border) as usize + seed)
}

/// Checks that `leaf_hash` is leaf `index` of the tree of `tree_size` leaves whose root is
/// `root`, given its inclusion proof (the audit path of RFC 9162 section 2.1.3.1, deepest
/// sibling first).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let Some(expected) = inclusion_proof_len(index, tree_size) else {
        return Err(ProofError::IndexOutOfRange {
            index,
            size: tree_size,
        });
    };
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    // RFC 9162 2.1.3.2, steps 2 to 5.
    let (mut fn_, mut sn) = (index, tree_size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::RootMismatch);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn == 0 && r == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Checks that the tree of `size2` leaves with root `root2` extends the tree of `size1` leaves
/// with root `root1` (the first `size1` leaves are the same), given the consistency proof of
/// RFC 9162 section 2.1.4.1.
///
/// The cases the RFC's algorithm leaves out (it takes `0 < size1 < size2`): equal sizes are
/// consistent when the proof is empty and the roots are equal; size 0 is consistent with
/// every tree when the proof is empty and `root1` is the empty tree's root ([`EMPTY_ROOT`]).
pub fn verify_consistency(
    size1: u64,
    root1: &Hash,
    size2: u64,
    root2: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    let Some(expected) = consistency_proof_len(size1, size2) else {
        return Err(ProofError::SizeDecreased { size1, size2 });
    };
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    if size1 == size2 {
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if size1 == 0 {
        return if *root1 == EMPTY_ROOT {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    // RFC 9162 2.1.4.2. Step 1: an empty proof fails (the length check above has already
    // refused it: a proof for 0 < size1 < size2 has at least one hash).
    let Some((&head, tail)) = proof.split_first() else {
        return Err(ProofError::RootMismatch);
    };
    // Step 2: when size1 is a power of two the smaller tree is itself the shared node, which
    // the proof leaves out; prepend root1.
    let (first, rest) = if size1.is_power_of_two() {
        (*root1, proof)
    } else {
        (head, tail)
    };
    // Steps 3 and 4.
    let (mut fn_, mut sn) = (size1 - 1, size2 - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 5.
    let (mut fr, mut sr) = (first, first);
    // Step 6.
    for c in rest {
        if sn == 0 {
            return Err(ProofError::RootMismatch);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 7.
    if fr == *root1 && sr == *root2 && sn == 0 {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_at_the_edges() {
        assert_eq!(inclusion_proof_len(0, 0), None);
        assert_eq!(inclusion_proof_len(0, 1), Some(0));
        assert_eq!(inclusion_proof_len(0, 2), Some(1));
        assert_eq!(inclusion_proof_len(6, 7), Some(2));
        assert_eq!(inclusion_proof_len(0, 7), Some(3));
        assert_eq!(inclusion_proof_len(u64::MAX - 1, u64::MAX), Some(63));
        assert_eq!(inclusion_proof_len(0, u64::MAX), Some(64));
        assert_eq!(consistency_proof_len(1, 0), None);
        assert_eq!(consistency_proof_len(0, 5), Some(0));
        assert_eq!(consistency_proof_len(5, 5), Some(0));
        assert_eq!(consistency_proof_len(1, 8), Some(3));
        assert_eq!(consistency_proof_len(6, 8), Some(3));
        assert_eq!(consistency_proof_len(2, 5), Some(2));
        assert!(consistency_proof_len(u64::MAX - 2, u64::MAX).unwrap() <= 65);
        assert!(consistency_proof_len(1, u64::MAX).unwrap() <= 65);
    }

    #[test]
    fn huge_sizes_do_not_overflow() {
        let h = [7u8; 32];
        let proof = vec![h; 64];
        assert_eq!(
            verify_inclusion(&h, 0, u64::MAX, &proof, &h),
            Err(ProofError::RootMismatch)
        );
        let n = consistency_proof_len(3, u64::MAX).unwrap();
        let proof = vec![h; n];
        assert_eq!(
            verify_consistency(3, &h, u64::MAX, &h, &proof),
            Err(ProofError::RootMismatch)
        );
    }
}
