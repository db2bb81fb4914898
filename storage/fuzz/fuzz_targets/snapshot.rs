//! Arbitrary bytes as a snapshot file (verification, then every block and index decoded)
//! and as the raw contents of a row block and an index block.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = driftdb_storage::check_snapshot_bytes(data);
    // Block contents sit behind a CRC, so random files never reach them: decode directly.
    let _ = driftdb_storage::check_snapshot_block(data);
});
