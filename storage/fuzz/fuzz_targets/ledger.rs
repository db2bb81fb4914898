//! Arbitrary bytes as a ledger digest, an inclusion proof and a consistency proof (binary),
//! as a digest's text form, and as a leaf's data. Nothing may panic; whatever decodes must encode back to the
//! same bytes (one encoding per value), and checking a decoded proof must not panic either.
#![no_main]

use driftdb_storage::ledger::leaf::hashes_of_leaf_data;
use driftdb_storage::ledger::{leaf_hash, ConsistencyProof, InclusionProof, Leaf, LedgerDigest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A root to check proofs against, taken from the input itself.
    let mut root = [0u8; 32];
    for (r, b) in root.iter_mut().zip(data.iter().rev()) {
        *r = *b;
    }
    if let Ok(d) = LedgerDigest::decode(data) {
        assert_eq!(d.encode(), data);
        assert_eq!(LedgerDigest::from_text(&d.to_text()), Ok(d));
    }
    if let Ok(p) = InclusionProof::decode(data) {
        assert_eq!(p.encode(), data);
        let _ = p.verify(&root, &root);
    }
    if let Ok(p) = ConsistencyProof::decode(data) {
        assert_eq!(p.encode(), data);
        let _ = p.verify(&root, &root);
    }
    if let Ok(l) = Leaf::decode(data) {
        assert_eq!(l.encode(), data);
        assert_eq!(hashes_of_leaf_data(data).map(|h| h.leaf), Ok(leaf_hash(data)));
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(d) = LedgerDigest::from_text(s) {
            assert_eq!(d.to_text(), s);
            assert_eq!(LedgerDigest::decode(&d.encode()), Ok(d));
        }
    }
});
