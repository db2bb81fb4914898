//! The ledger's Merkle tree against RFC 9162 itself: a recursive reference written straight
//! from the RFC's definitions (MTH, PATH, PROOF/SUBPROOF, section 2.1), the Certificate
//! Transparency test vectors, tampered proofs, reopening, torn tails, damage, node reads per
//! proof, and the digest and proof encodings.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use driftdb_storage::ledger::encoding::{DIGEST_LEN, PROOF_HEADER_LEN};
use driftdb_storage::ledger::tree::{record_offset, MAX_TREE_SIZE, TREE_HEADER_LEN};
use driftdb_storage::ledger::{
    consistency_proof_len, inclusion_proof_len, leaf_hash, verify_consistency, verify_inclusion,
    ConsistencyProof, Hash, InclusionProof, LedgerDigest, MerkleTree, ProofError, EMPTY_ROOT,
};
use driftdb_storage::{Error, OpenMode, RecoveryMode};
use proptest::prelude::*;
use sha2::{Digest as _, Sha256};

// ---------------------------------------------------------------------------------------
// The reference: RFC 9162 section 2.1, literally, with its own hashing.

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn ref_leaf(data: &[u8]) -> Hash {
    sha256(&[&[0], data])
}

/// The largest power of two smaller than n (n > 1).
fn ref_k(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// Leaf hashes D[0..n] and MTH over any range of them (memoized: the exhaustive tests ask
/// for the same ranges many times).
struct Reference {
    leaves: Vec<Hash>,
    memo: RefCell<HashMap<(usize, usize), Hash>>,
}

impl Reference {
    fn new(leaves: Vec<Hash>) -> Reference {
        Reference {
            leaves,
            memo: RefCell::new(HashMap::new()),
        }
    }

    /// MTH(D[lo:hi]).
    fn mth(&self, lo: usize, hi: usize) -> Hash {
        if let Some(h) = self.memo.borrow().get(&(lo, hi)) {
            return *h;
        }
        let n = hi - lo;
        let h = match n {
            0 => sha256(&[]),
            1 => self.leaves[lo],
            _ => {
                let k = ref_k(n);
                sha256(&[&[1], &self.mth(lo, lo + k), &self.mth(lo + k, hi)])
            }
        };
        self.memo.borrow_mut().insert((lo, hi), h);
        h
    }

    /// PATH(m, D[lo:hi]), m an index into D[lo:hi].
    fn path(&self, m: usize, lo: usize, hi: usize) -> Vec<Hash> {
        let n = hi - lo;
        if n == 1 {
            return Vec::new();
        }
        let k = ref_k(n);
        if m < k {
            let mut p = self.path(m, lo, lo + k);
            p.push(self.mth(lo + k, hi));
            p
        } else {
            let mut p = self.path(m - k, lo + k, hi);
            p.push(self.mth(lo, lo + k));
            p
        }
    }

    /// SUBPROOF(m, D[lo:hi], b).
    fn subproof(&self, m: usize, lo: usize, hi: usize, b: bool) -> Vec<Hash> {
        let n = hi - lo;
        if m == n {
            return if b {
                Vec::new()
            } else {
                vec![self.mth(lo, hi)]
            };
        }
        let k = ref_k(n);
        if m <= k {
            let mut p = self.subproof(m, lo, lo + k, b);
            p.push(self.mth(lo + k, hi));
            p
        } else {
            let mut p = self.subproof(m - k, lo + k, hi, false);
            p.push(self.mth(lo, lo + k));
            p
        }
    }

    /// PROOF(m, D[0:n]) for 0 < m < n; empty for the trivial cases.
    fn proof(&self, m: usize, n: usize) -> Vec<Hash> {
        if m == 0 || m == n {
            return Vec::new();
        }
        self.subproof(m, 0, n, true)
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

fn data(i: usize) -> Vec<u8> {
    format!("group {i}").into_bytes()
}

fn tree_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("ledger.tree")
}

fn writer(path: &Path) -> MerkleTree {
    MerkleTree::open(path, OpenMode::Writer, RecoveryMode::TolerateTornTail).unwrap()
}

fn reader(path: &Path) -> MerkleTree {
    MerkleTree::open(path, OpenMode::Reader, RecoveryMode::TolerateTornTail).unwrap()
}

/// A tree of `n` leaves `data(0..n)` and its reference.
fn build(path: &Path, n: usize) -> (MerkleTree, Reference) {
    let mut t = writer(path);
    let leaves: Vec<Hash> = (0..n).map(|i| ref_leaf(&data(i))).collect();
    t.append_leaf_hashes(&leaves).unwrap();
    (t, Reference::new(leaves))
}

fn hx(s: &str) -> Hash {
    let v: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut h = *h;
    h[bit / 8 % 32] ^= 1 << (bit % 8);
    h
}

fn is_corruption(e: &Error) -> bool {
    matches!(e, Error::Corruption { .. })
}

fn is_invalid_input(e: &Error) -> bool {
    matches!(e, Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidInput)
}

fn ceil_log2(n: u64) -> u64 {
    if n <= 1 {
        0
    } else {
        u64::from(64 - (n - 1).leading_zeros())
    }
}

// ---------------------------------------------------------------------------------------
// RFC 6962 test vectors: the 8-leaf tree of the Certificate Transparency reference tests, as
// published in transparency-dev/merkle (proof/verify_test.go; Apache-2.0), the successor of
// the Go CT and Trillian tests. Leaf data, the roots of sizes 1..=8, and proofs.

const CT_LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

const CT_ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (leaf index, tree size, path). The source numbers leaves from 1; these from 0.
const CT_INCLUSION: [(u64, u64, &[&str]); 4] = [
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (size1, size2, path).
const CT_CONSISTENCY: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

#[test]
fn rfc6962_test_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = writer(&tree_path(&dir));
    assert_eq!(t.root(), EMPTY_ROOT);
    assert_eq!(
        t.root_at(0).unwrap(),
        hx("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    let mut reference = Vec::new();
    for (i, leaf) in CT_LEAVES.iter().enumerate() {
        assert_eq!(t.append_leaf_data(&unhex(leaf)).unwrap(), i as u64);
        assert_eq!(t.root(), hx(CT_ROOTS[i]), "root of size {}", i + 1);
        reference.push(ref_leaf(&unhex(leaf)));
    }
    let r = Reference::new(reference);
    for (n, root) in CT_ROOTS.iter().enumerate() {
        assert_eq!(t.root_at(n as u64 + 1).unwrap(), hx(root));
        assert_eq!(r.mth(0, n + 1), hx(root), "the reference agrees too");
    }
    for (index, size, path) in CT_INCLUSION {
        let want: Vec<Hash> = path.iter().map(|h| hx(h)).collect();
        let p = t.inclusion_proof(index, size).unwrap();
        assert_eq!(p.path, want, "inclusion of {index} in {size}");
        assert_eq!(r.path(index as usize, 0, size as usize), want);
        let leaf = leaf_hash(&unhex(CT_LEAVES[index as usize]));
        verify_inclusion(&leaf, index, size, &want, &hx(CT_ROOTS[size as usize - 1])).unwrap();
    }
    for (size1, size2, path) in CT_CONSISTENCY {
        let want: Vec<Hash> = path.iter().map(|h| hx(h)).collect();
        let p = t.consistency_proof(size1, size2).unwrap();
        assert_eq!(p.path, want, "consistency {size1} -> {size2}");
        assert_eq!(r.proof(size1 as usize, size2 as usize), want);
        let (r1, r2) = (
            hx(CT_ROOTS[size1 as usize - 1]),
            hx(CT_ROOTS[size2 as usize - 1]),
        );
        verify_consistency(size1, &r1, size2, &r2, &want).unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// Every size up to 300 against the reference.

const N: usize = 300;

#[test]
fn roots_and_proofs_match_the_reference_for_every_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = writer(&tree_path(&dir));
    let leaves: Vec<Hash> = (0..N).map(|i| ref_leaf(&data(i))).collect();
    let r = Reference::new(leaves.clone());
    // One leaf at a time: the in-memory root after each append.
    for (i, leaf) in leaves.iter().enumerate() {
        assert_eq!(leaf_hash(&data(i)), *leaf);
        t.append_leaf_hash(leaf).unwrap();
        assert_eq!(t.root(), r.mth(0, i + 1), "root after {} appends", i + 1);
    }
    for m in 0..=N {
        assert_eq!(t.root_at(m as u64).unwrap(), r.mth(0, m), "root_at({m})");
    }
    for (i, leaf) in leaves.iter().enumerate() {
        assert_eq!(t.leaf(i as u64).unwrap(), *leaf);
    }
    let mut proofs = 0;
    for m in 1..=N {
        let root = r.mth(0, m);
        for (i, leaf) in leaves.iter().enumerate().take(m) {
            let p = t.inclusion_proof(i as u64, m as u64).unwrap();
            assert_eq!(p.path, r.path(i, 0, m), "inclusion of {i} in {m}");
            assert_eq!(inclusion_proof_len(i as u64, m as u64), Some(p.path.len()));
            p.verify(leaf, &root).unwrap();
            proofs += 1;
        }
    }
    for m2 in 0..=N {
        let root2 = r.mth(0, m2);
        for m1 in 0..=m2 {
            let p = t.consistency_proof(m1 as u64, m2 as u64).unwrap();
            assert_eq!(p.path, r.proof(m1, m2), "consistency {m1} -> {m2}");
            assert_eq!(
                consistency_proof_len(m1 as u64, m2 as u64),
                Some(p.path.len())
            );
            p.verify(&r.mth(0, m1), &root2).unwrap();
            proofs += 1;
        }
    }
    assert_eq!(proofs, N * (N + 1) / 2 + (N + 1) * (N + 2) / 2);
}

// ---------------------------------------------------------------------------------------
// Tampering. Each probe states something false, or presents a proof that is not the proof of
// what it states: it must fail. (A proof of leaf i in size m shown for size m + 1 against
// the root of size m may "verify" when both trees put the same hashes in the same places:
// a tree size means nothing without its own root, and the probes below always pair a size
// with its real root.)

fn inclusion_probes(t: &MerkleTree, r: &Reference, i: usize, m: usize) {
    let (iu, mu) = (i as u64, m as u64);
    let proof = t.inclusion_proof(iu, mu).unwrap().path;
    let root = r.mth(0, m);
    let leaf = r.leaves[i];
    let fails = |leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash, what: &str| {
        assert!(
            verify_inclusion(leaf, index, size, proof, root).is_err(),
            "inclusion of {i} in {m}: {what} verified"
        );
    };
    // Another index: the leaf is not there.
    for other in [iu.wrapping_sub(1), iu + 1, iu ^ 1, iu ^ 2, iu + mu] {
        fails(&leaf, other, mu, &proof, &root, "another index");
    }
    // Another size, with that size's root: a true statement, but this is its proof only if
    // the two trees' paths are the same hashes.
    for other in [mu - 1, mu + 1, mu * 2, mu / 2] {
        if other > iu && other as usize <= r.leaves.len() {
            let ok = verify_inclusion(&leaf, iu, other, &proof, &r.mth(0, other as usize));
            assert!(
                ok.is_err() || r.path(i, 0, other as usize) == proof,
                "inclusion of {i} in {m} verified for size {other}"
            );
        }
    }
    fails(&leaf, iu, u64::MAX, &proof, &root, "size 2^64 - 1");
    // Another leaf or root.
    fails(&ref_leaf(b"WrongLeaf"), iu, mu, &proof, &root, "wrong leaf");
    if m > 1 {
        fails(
            &r.leaves[(i + 1) % m],
            iu,
            mu,
            &proof,
            &root,
            "neighbour leaf",
        );
    }
    fails(&leaf, iu, mu, &proof, &EMPTY_ROOT, "empty root");
    fails(&leaf, iu, mu, &proof, &flip(&root, 77), "flipped root");
    // Extra, missing and changed hashes.
    let with = |f: &dyn Fn(&mut Vec<Hash>)| {
        let mut p = proof.clone();
        f(&mut p);
        p
    };
    fails(
        &leaf,
        iu,
        mu,
        &with(&|p| p.push(root)),
        &root,
        "trailing root",
    );
    fails(
        &leaf,
        iu,
        mu,
        &with(&|p| p.push([0; 32])),
        &root,
        "trailing zeros",
    );
    fails(
        &leaf,
        iu,
        mu,
        &with(&|p| p.insert(0, root)),
        &root,
        "preceding root",
    );
    fails(
        &leaf,
        iu,
        mu,
        &with(&|p| p.insert(0, leaf)),
        &root,
        "preceding leaf",
    );
    if !proof.is_empty() {
        fails(
            &leaf,
            iu,
            mu,
            &with(&|p| p.truncate(p.len() - 1)),
            &root,
            "truncated",
        );
        fails(
            &leaf,
            iu,
            mu,
            &with(&|p| {
                p.remove(0);
            }),
            &root,
            "first removed",
        );
        fails(
            &leaf,
            iu,
            mu,
            &with(&|p| p.insert(1, [9; 32])),
            &root,
            "inserted",
        );
    }
    if proof.len() > 1 {
        fails(&leaf, iu, mu, &with(&|p| p.reverse()), &root, "reversed");
    }
    for k in 0..proof.len() {
        for bit in [0, 3, 100, 255] {
            let p = with(&|p| p[k] = flip(&p[k], bit));
            fails(&leaf, iu, mu, &p, &root, "flipped bit");
        }
    }
}

fn consistency_probes(t: &MerkleTree, r: &Reference, m1: usize, m2: usize) {
    let (a, b) = (m1 as u64, m2 as u64);
    let proof = t.consistency_proof(a, b).unwrap().path;
    let (root1, root2) = (r.mth(0, m1), r.mth(0, m2));
    let fails = |s1: u64, r1: &Hash, s2: u64, r2: &Hash, proof: &[Hash], what: &str| {
        assert!(
            verify_consistency(s1, r1, s2, r2, proof).is_err(),
            "consistency {m1} -> {m2}: {what} verified"
        );
    };
    // Other sizes with their real roots: true statements, but this is not their proof
    // unless it is the same hashes.
    let n = r.leaves.len() as u64;
    for (s1, s2) in [
        (a.wrapping_sub(1), b),
        (a + 1, b),
        (a ^ 2, b),
        (a, b - 1),
        (a, b + 1),
        (a, b * 2),
        (a, b / 2),
    ] {
        if s1 <= s2 && s2 <= n && (s1, s2) != (a, b) {
            let (r1, r2) = (r.mth(0, s1 as usize), r.mth(0, s2 as usize));
            let ok = verify_consistency(s1, &r1, s2, &r2, &proof);
            assert!(
                ok.is_err() || r.proof(s1 as usize, s2 as usize) == proof,
                "consistency {m1} -> {m2} verified for {s1} -> {s2}"
            );
        }
    }
    if a != b {
        fails(b, &root2, a, &root1, &proof, "sizes swapped");
    }
    if root1 != root2 {
        fails(a, &root2, b, &root1, &proof, "roots swapped");
    }
    fails(a, &flip(&root1, 5), b, &root2, &proof, "flipped root1");
    if a > 0 {
        // (Every tree extends the empty one, whatever its root.)
        fails(a, &root1, b, &flip(&root2, 200), &proof, "flipped root2");
    }
    let with = |f: &dyn Fn(&mut Vec<Hash>)| {
        let mut p = proof.clone();
        f(&mut p);
        p
    };
    fails(
        a,
        &root1,
        b,
        &root2,
        &with(&|p| p.push(root1)),
        "trailing root1",
    );
    fails(
        a,
        &root1,
        b,
        &root2,
        &with(&|p| p.push(root2)),
        "trailing root2",
    );
    fails(
        a,
        &root1,
        b,
        &root2,
        &with(&|p| p.insert(0, root1)),
        "prec. root1",
    );
    fails(
        a,
        &root1,
        b,
        &root2,
        &with(&|p| p.insert(0, [0; 32])),
        "prec. zeros",
    );
    if !proof.is_empty() {
        fails(a, &root1, b, &root2, &[], "empty proof");
        fails(
            a,
            &root1,
            b,
            &root2,
            &with(&|p| p.truncate(p.len() - 1)),
            "truncated",
        );
        fails(
            a,
            &root1,
            b,
            &root2,
            &with(&|p| p.insert(0, p[0])),
            "prec. [0]",
        );
        fails(
            a,
            &root1,
            b,
            &root2,
            &with(&|p| p.insert(1, [3; 32])),
            "inserted",
        );
    }
    for k in 0..proof.len() {
        for bit in [4, 130] {
            let p = with(&|p| p[k] = flip(&p[k], bit));
            fails(a, &root1, b, &root2, &p, "flipped bit");
        }
    }
}

#[test]
fn tampered_inclusion_proofs_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (t, r) = build(&tree_path(&dir), 200);
    for m in 1..=200 {
        // Every leaf of the small trees; a spread of leaves of the larger ones.
        let picks: Vec<usize> = if m <= 40 {
            (0..m).collect()
        } else {
            vec![0, 1, m / 3, m / 2, m - 2, m - 1, (m * 7 + 3) % m]
        };
        for i in picks {
            inclusion_probes(&t, &r, i, m);
        }
    }
}

#[test]
fn tampered_consistency_proofs_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (t, r) = build(&tree_path(&dir), 200);
    for m2 in 1..=200 {
        let picks: Vec<usize> = if m2 <= 40 {
            (0..=m2).collect()
        } else {
            vec![0, 1, 2, m2 / 3, m2 / 2, m2 - 1, m2, (m2 * 5 + 1) % m2]
        };
        for m1 in picks {
            consistency_probes(&t, &r, m1, m2);
        }
    }
}

#[test]
fn edge_cases_of_the_verifiers() {
    let h = ref_leaf(b"x");
    assert_eq!(
        verify_inclusion(&h, 0, 0, &[], &EMPTY_ROOT),
        Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
    );
    verify_inclusion(&h, 0, 1, &[], &h).unwrap();
    assert_eq!(
        verify_inclusion(&h, 0, 1, &[], &EMPTY_ROOT),
        Err(ProofError::RootMismatch)
    );
    assert_eq!(
        verify_inclusion(&h, 0, 1, &[h], &h),
        Err(ProofError::WrongLength {
            expected: 0,
            got: 1
        })
    );
    // Size 0 and equal sizes.
    verify_consistency(0, &EMPTY_ROOT, 0, &EMPTY_ROOT, &[]).unwrap();
    verify_consistency(0, &EMPTY_ROOT, 5, &h, &[]).unwrap();
    assert!(
        verify_consistency(0, &h, 5, &h, &[]).is_err(),
        "size 0, not the empty root"
    );
    assert!(verify_consistency(0, &EMPTY_ROOT, 5, &h, &[h]).is_err());
    verify_consistency(3, &h, 3, &h, &[]).unwrap();
    assert_eq!(
        verify_consistency(3, &h, 3, &EMPTY_ROOT, &[]),
        Err(ProofError::RootMismatch)
    );
    assert!(verify_consistency(3, &h, 3, &h, &[h]).is_err());
    assert_eq!(
        verify_consistency(4, &h, 3, &h, &[]),
        Err(ProofError::SizeDecreased { size1: 4, size2: 3 })
    );
    assert!(
        verify_consistency(1, &h, 2, &h, &[]).is_err(),
        "empty proof"
    );
}

// ---------------------------------------------------------------------------------------
// Files: reopening, torn tails, damage.

#[test]
fn new_tree_is_empty_and_reads_check_their_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let path = tree_path(&dir);
    let t = writer(&path);
    assert_eq!(t.size(), 0);
    assert_eq!(t.root(), EMPTY_ROOT);
    assert_eq!(t.root_at(0).unwrap(), EMPTY_ROOT);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        TREE_HEADER_LEN,
        "a header and nothing else"
    );
    assert!(!dir.path().join("ledger.tree.tmp").exists());
    assert!(is_invalid_input(&t.root_at(1).unwrap_err()));
    assert!(is_invalid_input(&t.inclusion_proof(0, 0).unwrap_err()));
    assert!(is_invalid_input(&t.leaf(0).unwrap_err()));
    assert!(t.consistency_proof(0, 0).unwrap().path.is_empty());
    t.check().unwrap();
    drop(t);

    let (t, _) = build(&path, 10);
    assert!(is_invalid_input(&t.root_at(11).unwrap_err()));
    assert!(is_invalid_input(&t.inclusion_proof(5, 11).unwrap_err()));
    assert!(is_invalid_input(&t.inclusion_proof(5, 5).unwrap_err()));
    assert!(is_invalid_input(&t.consistency_proof(5, 11).unwrap_err()));
    assert!(is_invalid_input(&t.consistency_proof(6, 5).unwrap_err()));
    assert!(is_invalid_input(&t.leaf(10).unwrap_err()));
    t.check().unwrap();

    // A reader does not create, and does not append.
    let missing = dir.path().join("none.tree");
    assert!(MerkleTree::open(&missing, OpenMode::Reader, RecoveryMode::Strict).is_err());
    assert!(!missing.exists());
    let mut r = reader(&path);
    assert_eq!(r.size(), 10);
    assert!(matches!(
        r.append_leaf_data(b"no").unwrap_err(),
        Error::ReadOnly
    ));
    // An empty batch appends nothing.
    drop(t);
    let mut t = writer(&path);
    assert_eq!(t.append_leaf_hashes(&[]).unwrap(), 10);
    assert_eq!(t.size(), 10);
}

#[test]
fn reopen_gives_the_same_tree() {
    let dir = tempfile::tempdir().unwrap();
    let path = tree_path(&dir);
    let leaves: Vec<Hash> = (0..260).map(|i| ref_leaf(&data(i))).collect();
    let r = Reference::new(leaves.clone());
    let mut done = 0;
    for chunk in [1, 1, 2, 3, 1, 8, 17, 31, 64, 1, 5, 126] {
        let mut t = writer(&path);
        assert_eq!(t.size(), done as u64);
        assert_eq!(t.root(), r.mth(0, done));
        assert_eq!(
            t.append_leaf_hashes(&leaves[done..done + chunk]).unwrap(),
            done as u64
        );
        t.sync().unwrap();
        done += chunk;
        let root = t.root();
        drop(t);
        for t in [writer(&path), reader(&path)] {
            assert_eq!(t.size(), done as u64);
            assert_eq!(t.root(), root);
            assert_eq!(t.root(), r.mth(0, done));
            for m in 0..=done {
                assert_eq!(t.root_at(m as u64).unwrap(), r.mth(0, m));
            }
            t.check().unwrap();
        }
    }
    assert_eq!(done, 260);
    // A reader open beside a writer sees the size it opened at.
    let mut w = writer(&path);
    let rd = reader(&path);
    w.append_leaf_data(b"more").unwrap();
    assert_eq!(rd.size(), 260);
    assert_eq!(rd.root(), r.mth(0, 260));
    assert_eq!(reader(&path).size(), 261);
}

/// Writes `bytes` as a tree file of its own.
fn file_with(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The number of whole records within `len` bytes.
fn whole_records(len: u64) -> u64 {
    (0..)
        .take_while(|n| record_offset(*n) <= len)
        .last()
        .unwrap()
}

#[test]
fn torn_tail_is_cut_and_the_tree_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (t, r) = build(&tree_path(&dir), 48);
    t.sync().unwrap();
    drop(t);
    let full = std::fs::read(tree_path(&dir)).unwrap();
    assert_eq!(full.len() as u64, record_offset(48));
    // Every cut from the middle of record 38 on, down to the byte: the tree is the whole
    // records before the cut, the file is cut there, and appending the rest gives the tree.
    for len in record_offset(38) + 5..=full.len() as u64 {
        let path = file_with(&dir, "cut.tree", &full[..len as usize]);
        let want = whole_records(len);
        let torn = len != record_offset(want);
        if torn {
            let e = MerkleTree::open(&path, OpenMode::Writer, RecoveryMode::Strict).unwrap_err();
            assert!(is_corruption(&e), "strict open of a torn tail: {e}");
            let rd = reader(&path);
            assert_eq!(rd.size(), want);
            assert_eq!(
                std::fs::metadata(&path).unwrap().len(),
                len,
                "a reader cuts nothing"
            );
        } else {
            let t = MerkleTree::open(&path, OpenMode::Writer, RecoveryMode::Strict).unwrap();
            assert_eq!(t.size(), want);
        }
        let mut t = writer(&path);
        assert_eq!(t.size(), want, "cut at {len}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), record_offset(want));
        assert_eq!(t.root(), r.mth(0, want as usize));
        t.append_leaf_hashes(&r.leaves[want as usize..]).unwrap();
        assert_eq!(t.root(), r.mth(0, 48));
        assert_eq!(t.root_at(40).unwrap(), r.mth(0, 40));
        drop(t);
        assert_eq!(std::fs::read(&path).unwrap(), full, "the same bytes again");
    }

    // Zero bytes after the last record (a file extended, its data never written).
    let mut zeros = full.clone();
    zeros.extend_from_slice(&[0; 5000]);
    let path = file_with(&dir, "zeros.tree", &zeros);
    assert_eq!(writer(&path).size(), 48);
    assert_eq!(std::fs::read(&path).unwrap(), full);

    // The last records zeroed: a crash before their data reached the disk.
    let mut zeroed = full.clone();
    for b in &mut zeroed[record_offset(45) as usize..] {
        *b = 0;
    }
    zeroed.extend_from_slice(&[0; 7]);
    let path = file_with(&dir, "zeroed.tree", &zeroed);
    let t = writer(&path);
    assert_eq!(t.size(), 45);
    assert_eq!(t.root(), r.mth(0, 45));

    // The last record damaged, nothing after it: torn.
    let mut last_bad = full.clone();
    last_bad[record_offset(47) as usize + 3] ^= 0x40;
    let path = file_with(&dir, "last.tree", &last_bad);
    assert!(is_corruption(
        &MerkleTree::open(&path, OpenMode::Writer, RecoveryMode::Strict).unwrap_err()
    ));
    assert_eq!(writer(&path).size(), 47);

    // A damaged record with other data after it: corruption, at the record, even tolerant.
    let mut then_data = last_bad.clone();
    then_data.extend_from_slice(&[1, 2, 3]);
    let path = file_with(&dir, "data.tree", &then_data);
    match MerkleTree::open(&path, OpenMode::Writer, RecoveryMode::TolerateTornTail) {
        Err(Error::Corruption { offset, .. }) => assert_eq!(offset, record_offset(47)),
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), then_data, "left as it was");
    // A zeroed record followed by a damaged one that is not zeroes: the damaged one is a
    // torn tail, the zeroed one has data after it.
    let mut zeros_then_data = full.clone();
    for b in &mut zeros_then_data[record_offset(46) as usize..record_offset(47) as usize] {
        *b = 0;
    }
    zeros_then_data[record_offset(47) as usize] ^= 1;
    let path = file_with(&dir, "zd.tree", &zeros_then_data);
    match writer_err(&path) {
        Error::Corruption { offset, .. } => assert_eq!(offset, record_offset(46)),
        e => panic!("{e}"),
    }
}

fn writer_err(path: &Path) -> Error {
    MerkleTree::open(path, OpenMode::Writer, RecoveryMode::TolerateTornTail).unwrap_err()
}

#[test]
fn damage_is_reported_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let (t, r) = build(&tree_path(&dir), 64);
    drop(t);
    let full = std::fs::read(tree_path(&dir)).unwrap();

    // The header.
    for at in [0, 8, 10, 11, 12] {
        let mut b = full.clone();
        b[at] ^= 1;
        match writer_err(&file_with(&dir, "h.tree", &b)) {
            Error::Corruption { offset, .. } => assert_eq!(offset, 0),
            e => panic!("{e}"),
        }
    }
    assert!(is_corruption(&writer_err(&file_with(
        &dir,
        "s.tree",
        &full[..9]
    ))));
    assert!(is_corruption(&writer_err(&file_with(&dir, "z.tree", &[]))));

    // A record in the middle: opening does not read it, but every read of it and the full
    // check report it at the record.
    let mut b = full.clone();
    b[record_offset(37) as usize + 40] ^= 4; // node 1 of record 37 (leaves 36..38)
    let path = file_with(&dir, "mid.tree", &b);
    let t = writer(&path);
    assert_eq!(t.size(), 64);
    match t.check().unwrap_err() {
        Error::Corruption { offset, .. } => assert_eq!(offset, record_offset(37)),
        e => panic!("{e}"),
    }
    assert!(is_corruption(&t.leaf(37).unwrap_err()));
    assert!(is_corruption(&t.inclusion_proof(39, 64).unwrap_err()));
    assert!(is_corruption(&t.consistency_proof(38, 40).unwrap_err()));
    // Proofs that do not touch it still work.
    t.inclusion_proof(3, 64)
        .unwrap()
        .verify(&r.leaves[3], &r.mth(0, 64))
        .unwrap();

    // A record whose CRC holds but whose interior node is not the hash of its children (the
    // CRC recomputed over the damage, as a buggy or hostile writer would): only the full
    // check can tell.
    let mut b = full.clone();
    let at = record_offset(37) as usize;
    b[at + 40] ^= 4;
    let nodes = &b[at..at + 64];
    let mut crc = record_crc(37, nodes);
    b[at + 64..at + 68].copy_from_slice(&crc.to_le_bytes());
    let path = file_with(&dir, "node.tree", &b);
    let t = writer(&path);
    match t.check().unwrap_err() {
        Error::Corruption { offset, .. } => assert_eq!(offset, record_offset(37) + 32),
        e => panic!("{e}"),
    }
    // A proof through that node fails to verify (that is what the proofs are for); one
    // that does not use it still verifies.
    let p = t.inclusion_proof(39, 64).unwrap();
    assert!(p.verify(&r.leaves[39], &r.mth(0, 64)).is_err());
    let p = t.inclusion_proof(0, 64).unwrap();
    p.verify(&r.leaves[0], &r.mth(0, 64)).unwrap();
    crc ^= 1;
    b[at + 64..at + 68].copy_from_slice(&crc.to_le_bytes());
    assert!(is_corruption(
        &writer(&file_with(&dir, "crc.tree", &b))
            .check()
            .unwrap_err()
    ));
}

/// The record CRC as the file layout defines it (crc32 of `u64 index | nodes`), for the test
/// that rewrites one.
fn record_crc(index: u64, nodes: &[u8]) -> u32 {
    // CRC-32 (IEEE), bitwise: the test does not lean on the crate's own CRC code.
    let mut crc = !0u32;
    for b in index.to_le_bytes().iter().chain(nodes) {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn leaves_are_appended_one_record_each_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = tree_path(&dir);
    let mut t = writer(&path);
    let mut before = std::fs::read(&path).unwrap();
    for i in 0..70u64 {
        t.append_leaf_data(&data(i as usize)).unwrap();
        let after = std::fs::read(&path).unwrap();
        assert_eq!(&after[..before.len()], &before[..], "only appended");
        assert_eq!(after.len() as u64, record_offset(i + 1));
        // The record: the leaf hash, then the subtrees it completes, then the CRC.
        let rec = &after[record_offset(i) as usize..];
        assert_eq!(&rec[..32], &ref_leaf(&data(i as usize)));
        let nodes = (rec.len() - 4) / 32;
        assert_eq!(nodes as u32, 1 + (i + 1).trailing_zeros());
        assert_eq!(
            u32::from_le_bytes(rec[rec.len() - 4..].try_into().unwrap()),
            record_crc(i, &rec[..rec.len() - 4])
        );
        before = after;
    }
    const { assert!(MAX_TREE_SIZE >= 1 << 40) };
}

// ---------------------------------------------------------------------------------------
// Node reads per operation.

#[test]
fn node_reads_are_logarithmic() {
    let dir = tempfile::tempdir().unwrap();
    let path = tree_path(&dir);
    let mut t = writer(&path);
    let total: u64 = 100_000;
    let mut batch = Vec::new();
    for i in 0..total {
        batch.push(leaf_hash(&i.to_le_bytes()));
        if batch.len() == 4096 || i + 1 == total {
            t.append_leaf_hashes(&batch).unwrap();
            batch.clear();
        }
    }
    assert_eq!(t.node_reads(), 0, "appends read nothing");
    drop(t);
    let t = writer(&path);
    assert_eq!(
        t.node_reads(),
        u64::from(total.count_ones()),
        "open reads the subtree roots"
    );
    let reads = |f: &dyn Fn()| {
        let before = t.node_reads();
        f();
        t.node_reads() - before
    };
    let root = t.root();
    let sizes = [
        1u64, 2, 3, 5, 64, 65, 1000, 4095, 4096, 4097, 65535, 99_999, total,
    ];
    let mut worst = 0;
    for &m in &sizes {
        assert_eq!(
            reads(&|| {
                t.root_at(m).unwrap();
            }),
            u64::from(m.count_ones())
        );
        for i in [
            0,
            1,
            m / 2,
            m / 3,
            m - 1,
            m.saturating_sub(2),
            (7919 * 31) % m,
        ] {
            if i >= m {
                continue;
            }
            let n = reads(&|| drop(t.inclusion_proof(i, m).unwrap()));
            assert!(n <= 2 * ceil_log2(m), "inclusion of {i} in {m}: {n} reads");
            worst = worst.max(n);
        }
        for &m1 in &sizes {
            if m1 <= m {
                let n = reads(&|| drop(t.consistency_proof(m1, m).unwrap()));
                assert!(
                    n <= 2 * ceil_log2(m) + 1,
                    "consistency {m1} -> {m}: {n} reads"
                );
                worst = worst.max(n);
            }
        }
    }
    // log2(100000) ~ 17: no proof read more than ~34 of the 200,000 nodes.
    assert!(worst <= 35, "worst {worst}");
    let p = t.inclusion_proof(12_345, total).unwrap();
    p.verify(&leaf_hash(&12_345u64.to_le_bytes()), &root)
        .unwrap();
    let c = t.consistency_proof(77_777, total).unwrap();
    c.verify(&t.root_at(77_777).unwrap(), &root).unwrap();
}

#[test]
fn node_reads_are_bounded_for_every_small_proof() {
    let dir = tempfile::tempdir().unwrap();
    let (t, _) = build(&tree_path(&dir), 130);
    for m in 1..=130u64 {
        for i in 0..m {
            let before = t.node_reads();
            t.inclusion_proof(i, m).unwrap();
            let n = t.node_reads() - before;
            assert!(n <= 2 * ceil_log2(m), "inclusion of {i} in {m}: {n}");
        }
        for m1 in 0..=m {
            let before = t.node_reads();
            t.consistency_proof(m1, m).unwrap();
            let n = t.node_reads() - before;
            assert!(n <= 2 * ceil_log2(m) + 1, "consistency {m1} -> {m}: {n}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Encodings.

#[test]
fn offline_verification_from_bytes_and_text_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (t, r) = build(&tree_path(&dir), 77);
    let old = LedgerDigest {
        tree_size: 31,
        root: t.root_at(31).unwrap(),
        last_seq: 1234,
        commit_time: -5,
    };
    let new = t.digest(99_999, 788_000_000_000_000);
    assert_eq!(new.tree_size, 77);
    assert_eq!(new.root, r.mth(0, 77));
    // What the user kept: text. What the database sent: bytes.
    let old_text = old.to_text();
    assert_eq!(
        old_text,
        format!(
            "driftdb-digest:v1:31:1234:-5:{}",
            driftdb_storage::ledger::hash::hash_to_hex(&old.root)
        )
    );
    let new_bytes = new.encode();
    assert_eq!(new_bytes.len(), DIGEST_LEN);
    let proof_bytes = t.consistency_proof(31, 77).unwrap().encode();
    let incl_bytes = t.inclusion_proof(30, 31).unwrap().encode();

    let old2: LedgerDigest = old_text.parse().unwrap();
    let new2 = LedgerDigest::decode(&new_bytes).unwrap();
    assert_eq!((old2, new2), (old, new));
    assert_eq!(new.to_string().parse::<LedgerDigest>().unwrap(), new);
    let proof = ConsistencyProof::decode(&proof_bytes).unwrap();
    proof.verify_digests(&old2, &new2).unwrap();
    assert_eq!(
        proof.verify_digests(&new2, &old2),
        Err(ProofError::SizeMismatch {
            proof: 31,
            digest: 77
        })
    );
    let incl = InclusionProof::decode(&incl_bytes).unwrap();
    incl.verify_digest(&leaf_hash(&data(30)), &old2).unwrap();
    assert!(incl.verify_digest(&leaf_hash(&data(29)), &old2).is_err());
    assert!(incl.verify_digest(&leaf_hash(&data(30)), &new2).is_err());
    // A rewritten history: the same sizes, another leaf 3.
    let dir2 = tempfile::tempdir().unwrap();
    let mut forged = writer(&tree_path(&dir2));
    for i in 0..77 {
        forged
            .append_leaf_data(&data(if i == 3 { 1000 } else { i }))
            .unwrap();
    }
    let forged_digest = forged.digest(0, 0);
    let forged_proof = forged.consistency_proof(31, 77).unwrap();
    assert!(forged_proof.verify_digests(&old2, &forged_digest).is_err());
    assert!(proof.verify_digests(&old2, &forged_digest).is_err());
}

#[test]
fn encodings_are_exact_and_strict() {
    let dir = tempfile::tempdir().unwrap();
    let (t, _) = build(&tree_path(&dir), 40);
    let d = t.digest(7, 8);
    let db = d.encode();
    assert_eq!(db[..2], [1, 1]);
    assert_eq!(db[2..10], 40u64.to_le_bytes());
    assert_eq!(db[10..18], 7u64.to_le_bytes());
    assert_eq!(db[18..26], 8i64.to_le_bytes());
    assert_eq!(db[26..], d.root);
    let ib = t.inclusion_proof(5, 40).unwrap().encode();
    assert_eq!(ib[..2], [1, 2]);
    assert_eq!(ib[2..10], 5u64.to_le_bytes());
    assert_eq!(ib[10..18], 40u64.to_le_bytes());
    assert_eq!(usize::from(ib[18]), inclusion_proof_len(5, 40).unwrap());
    assert_eq!(ib.len(), PROOF_HEADER_LEN + 32 * usize::from(ib[18]));
    let cb = t.consistency_proof(13, 40).unwrap().encode();
    assert_eq!(cb[..2], [1, 3]);
    assert_eq!(cb[2..10], 13u64.to_le_bytes());
    assert_eq!(cb[10..18], 40u64.to_le_bytes());
    assert_eq!(usize::from(cb[18]), consistency_proof_len(13, 40).unwrap());

    // Every prefix and every extension is refused; so are other versions and kinds.
    for bytes in [&db, &ib, &cb] {
        let ok = |b: &[u8]| {
            LedgerDigest::decode(b).is_ok()
                || InclusionProof::decode(b).is_ok()
                || ConsistencyProof::decode(b).is_ok()
        };
        assert!(ok(bytes));
        for cut in 0..bytes.len() {
            assert!(!ok(&bytes[..cut]), "prefix of {cut} bytes");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(!ok(&longer));
        let mut v = bytes.to_vec();
        v[0] = 2;
        assert!(!ok(&v));
        for kind in [0, 4, 255] {
            let mut v = bytes.to_vec();
            v[1] = kind;
            assert!(!ok(&v));
        }
    }
    assert!(InclusionProof::decode(&db).is_err());
    assert!(LedgerDigest::decode(&ib).is_err());
    assert!(ConsistencyProof::decode(&ib).is_err());

    // A hash count other than the sizes' own, with or without the hashes to match it.
    for (bytes, decode) in [
        (
            &ib,
            (|b: &[u8]| InclusionProof::decode(b).is_ok()) as fn(&[u8]) -> bool,
        ),
        (&cb, |b: &[u8]| ConsistencyProof::decode(b).is_ok()),
    ] {
        let n = bytes[18];
        for other in [0, n - 1, n + 1, 255] {
            let mut v = bytes.to_vec();
            v[18] = other;
            assert!(!decode(&v));
            let mut v = bytes[..PROOF_HEADER_LEN].to_vec();
            v[18] = other;
            v.extend(std::iter::repeat_n(7u8, 32 * usize::from(other)));
            assert!(!decode(&v), "{other} hashes");
        }
    }
    // Sizes that have no proof.
    let mut v = ib.clone();
    v[2..10].copy_from_slice(&40u64.to_le_bytes());
    assert!(InclusionProof::decode(&v).is_err(), "index = size");
    let mut v = cb.clone();
    v[2..10].copy_from_slice(&41u64.to_le_bytes());
    assert!(ConsistencyProof::decode(&v).is_err(), "size1 > size2");
    // Trivial proofs encode as 19 bytes.
    let trivial = t.consistency_proof(40, 40).unwrap().encode();
    assert_eq!(trivial.len(), PROOF_HEADER_LEN);
    assert!(ConsistencyProof::decode(&trivial).unwrap().path.is_empty());

    // The empty tree's digest must carry the empty root.
    let empty = LedgerDigest {
        tree_size: 0,
        root: EMPTY_ROOT,
        last_seq: 0,
        commit_time: 0,
    };
    assert_eq!(LedgerDigest::decode(&empty.encode()).unwrap(), empty);
    let bad = LedgerDigest {
        root: d.root,
        ..empty
    };
    assert!(LedgerDigest::decode(&bad.encode()).is_err());
    assert!(LedgerDigest::from_text(&bad.to_text()).is_err());
}

#[test]
fn digest_text_is_canonical() {
    let d = LedgerDigest {
        tree_size: 5,
        root: hx(CT_ROOTS[4]),
        last_seq: 120,
        commit_time: i64::MIN,
    };
    let text = d.to_text();
    assert_eq!(
        text,
        format!(
            "driftdb-digest:v1:5:120:-9223372036854775808:{}",
            CT_ROOTS[4]
        )
    );
    assert_eq!(LedgerDigest::from_text(&text).unwrap(), d);
    let max = LedgerDigest {
        tree_size: u64::MAX,
        last_seq: u64::MAX,
        commit_time: i64::MAX,
        ..d
    };
    assert_eq!(LedgerDigest::from_text(&max.to_text()).unwrap(), max);
    let root = CT_ROOTS[4];
    for bad in [
        String::new(),
        "driftdb-digest:v1:".to_string(),
        format!("driftdb-digest:v2:5:120:0:{root}"),
        format!("Driftdb-digest:v1:5:120:0:{root}"),
        format!("driftdb-digest:v1:05:120:0:{root}"),
        format!("driftdb-digest:v1:+5:120:0:{root}"),
        format!("driftdb-digest:v1:-5:120:0:{root}"),
        format!("driftdb-digest:v1:5:120:-0:{root}"),
        format!("driftdb-digest:v1:5:120:+1:{root}"),
        format!("driftdb-digest:v1:5:120:--1:{root}"),
        format!("driftdb-digest:v1:5:120:-:{root}"),
        format!("driftdb-digest:v1:5::0:{root}"),
        format!("driftdb-digest:v1:5:120:0:{}", root.to_uppercase()),
        format!("driftdb-digest:v1:5:120:0:{}", &root[2..]),
        format!("driftdb-digest:v1:5:120:0:{root}:"),
        format!("driftdb-digest:v1:5:120:0:{root} "),
        format!(" driftdb-digest:v1:5:120:0:{root}"),
        format!("driftdb-digest:v1:5:120:{root}"),
        format!("driftdb-digest:v1:18446744073709551616:1:0:{root}"),
        format!("driftdb-digest:v1:5:1:9223372036854775808:{root}"),
        format!("driftdb-digest:v1:5:1:٣:{root}"),
    ] {
        assert!(LedgerDigest::from_text(&bad).is_err(), "{bad:?} parsed");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2200)) {
        for d in [LedgerDigest::decode(&bytes).ok().map(|d| d.encode()),
                  InclusionProof::decode(&bytes).ok().map(|p| p.encode()),
                  ConsistencyProof::decode(&bytes).ok().map(|p| p.encode())].into_iter().flatten() {
            prop_assert_eq!(&d, &bytes, "whatever decodes, encodes back to the same bytes");
        }
        if let Ok(s) = std::str::from_utf8(&bytes) {
            if let Ok(d) = LedgerDigest::from_text(s) {
                prop_assert_eq!(d.to_text(), s);
            }
        }
    }

    #[test]
    fn headers_with_random_sizes(kind in 1u8..=3, a in any::<u64>(), b in any::<u64>(),
                                 n in any::<u8>(), fill in any::<u8>()) {
        let mut v = vec![1, kind];
        v.extend_from_slice(&a.to_le_bytes());
        v.extend_from_slice(&b.to_le_bytes());
        v.push(n);
        v.extend(std::iter::repeat_n(fill, 32 * usize::from(n)));
        match kind {
            2 => {
                let ok = InclusionProof::decode(&v).is_ok();
                prop_assert_eq!(ok, inclusion_proof_len(a, b) == Some(usize::from(n)));
            }
            3 => {
                let ok = ConsistencyProof::decode(&v).is_ok();
                prop_assert_eq!(ok, consistency_proof_len(a, b) == Some(usize::from(n)));
            }
            _ => { let _ = LedgerDigest::decode(&v); }
        }
    }

    #[test]
    fn digests_round_trip(size in any::<u64>(), seq in any::<u64>(), time in any::<i64>(),
                          root in any::<[u8; 32]>()) {
        let d = LedgerDigest { tree_size: size, root: if size == 0 { EMPTY_ROOT } else { root },
                               last_seq: seq, commit_time: time };
        prop_assert_eq!(LedgerDigest::decode(&d.encode()).unwrap(), d);
        prop_assert_eq!(LedgerDigest::from_text(&d.to_text()).unwrap(), d);
    }

    #[test]
    fn text_parser_never_panics(s in "\\PC{0,120}") {
        let _ = LedgerDigest::from_text(&s);
        let with_prefix = format!("driftdb-digest:v1:{s}");
        let _ = LedgerDigest::from_text(&with_prefix);
    }

    #[test]
    fn verifiers_never_panic(a in any::<u64>(), b in any::<u64>(), n in 0usize..70,
                             h in any::<[u8; 32]>()) {
        let proof = vec![h; n];
        let _ = verify_inclusion(&h, a, b, &proof, &h);
        let _ = verify_consistency(a, &h, b, &h, &proof);
        let _ = inclusion_proof_len(a, b);
        let _ = consistency_proof_len(a, b);
    }
}

#[test]
fn truncating_gives_the_shorter_tree_which_then_grows_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = tree_path(&dir);
    let (t, r) = build(&path, 70);
    drop(t);
    let full = std::fs::read(&path).unwrap();
    for k in [70usize, 69, 64, 63, 33, 1, 0] {
        std::fs::write(&path, &full).unwrap();
        let mut t = writer(&path);
        t.truncate(k as u64).unwrap();
        assert_eq!(t.size(), k as u64);
        assert_eq!(t.root(), r.mth(0, k), "{k}");
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            record_offset(k as u64)
        );
        let rest: Vec<Hash> = (k..70).map(|i| ref_leaf(&data(i))).collect();
        t.append_leaf_hashes(&rest).unwrap();
        assert_eq!(t.root(), r.mth(0, 70));
        drop(t);
        assert_eq!(std::fs::read(&path).unwrap(), full, "{k}");
    }
    let mut t = reader(&path);
    assert!(matches!(t.truncate(3), Err(Error::ReadOnly)));
}
