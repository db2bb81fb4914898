//! Arbitrary bytes as a snapshot file (verification, then every block and index decoded),
//! as the raw contents of a row block and an index block, and as a stored value of every
//! index kind (its canonical key).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = driftdb_storage::check_snapshot_bytes(data);
    // Block contents sit behind a CRC, so random files never reach them: decode directly.
    let _ = driftdb_storage::check_snapshot_block(data);
    for kind in driftdb_storage::IndexKind::ALL {
        let _ = driftdb_storage::index_key(kind, data);
    }
});
