//! Rows, keys and index entries larger than a snapshot block (64 MiB): a table holding one
//! snapshots, reads back and verifies; the memory a snapshot of it takes is measured; a
//! snapshot whose directory gives a block a false, huge raw length is corruption at that
//! block, found without allocating that length.
//!
//! This binary counts the bytes it allocates (its own global allocator), so its tests run
//! one at a time (`serial`).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use common::*;
use driftdb_storage::format::{
    put_bytes, put_varint, Decoder, MAX_BLOCK_RAW_LEN, MAX_RECORD_BLOCK_RAW_LEN,
};
use driftdb_storage::*;

/// Counts the bytes allocated now and the most allocated at once since the last reset.
struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = NOW.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call goes to the system allocator with the caller's arguments; the
// counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller promised for `layout`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller promised for `layout`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator (the system's) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        NOW.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as the caller promised for `ptr`, `layout` and `new_size`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                NOW.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most bytes `f` had allocated at once beyond what was allocated when it started.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = NOW.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed) - base)
}

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const T: TableId = 1;
const MIB: usize = 1 << 20;

/// `n` bytes no compressor shrinks (xorshift64).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

fn key(i: usize) -> Vec<u8> {
    format!("k{i:03}").into_bytes()
}

fn bytes_row(cols: Vec<(ColumnId, Vec<u8>)>) -> Row {
    Row(cols.into_iter().map(|(c, v)| (c, Some(v))).collect())
}

fn insert(key: Vec<u8>, row: Row) -> Event {
    Event {
        table: T,
        key,
        op: Op::Insert(row),
    }
}

fn snapshot_file(root: &Path, seq: Seq) -> PathBuf {
    root.join("tables")
        .join(T.to_string())
        .join(format!("snap-{seq:020}.snap"))
}

fn all_rows(s: &mut Store, at: Seq) -> Vec<(Vec<u8>, Row)> {
    s.scan(T, at, &AllCommitted)
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// Small rows around a row with a 70 MiB value (incompressible) in an indexed column: the
/// snapshot is written (measured: no more than four copies of the row at once besides the
/// store's own), a fresh store reads every row back from it (point lookups of the large key and
/// its neighbours, a full scan, the index on the large column and on a small one), appends
/// after it see its keys, and verification passes.
#[test]
fn a_row_of_70_mib_snapshots_and_reads_back() {
    let _one = serial();
    let big_len = 70 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let mut expected: Vec<(Vec<u8>, Row)> = (0..200)
        .map(|i| {
            let row = bytes_row(vec![
                (1, format!("v{i:03}").into_bytes()),
                (2, format!("s{i:03}").into_bytes()),
            ]);
            (key(i), row)
        })
        .collect();
    expected[100].1 = bytes_row(vec![(1, b"v100".to_vec()), (2, noise(big_len, 99))]);
    let seq = {
        let mut s = Store::open(&root, cfg()).unwrap();
        s.create_table(T).unwrap();
        s.create_index(T, 1, IndexKind::Bytes).unwrap();
        s.create_index(T, 2, IndexKind::Bytes).unwrap();
        let events = |range: std::ops::Range<usize>| -> Vec<Event> {
            range
                .map(|i| insert(expected[i].0.clone(), expected[i].1.clone()))
                .collect()
        };
        s.append(&[txn(1, events(0..100))], &AllCommitted).unwrap();
        s.append(&[txn(2, events(100..101))], &AllCommitted)
            .unwrap();
        let done = s
            .append(&[txn(3, events(101..200))], &AllCommitted)
            .unwrap();
        let seq = done[0].last_seq;
        let (written, peak) = peak_of(|| s.snapshot(T, seq, &AllCommitted));
        assert_eq!(written.unwrap(), seq);
        // The store's own copy of the row is there before and after. Beyond it, at most 4
        // copies at once: the scan's chunk holding the row, the indexed value (moved out of
        // the row read, kept for the index section, then the directory), the record's
        // encoding, and the file (row block, then index block, then the directory's first
        // value of that block). A fifth means a copy, or a doubled buffer, crept in.
        assert!(
            peak < 4 * big_len + 8 * MIB,
            "snapshotting a {} MiB row allocated {} MiB at its peak",
            big_len / MIB,
            peak / MIB
        );
        eprintln!(
            "snapshot of a {} MiB row: {} MiB allocated at the peak",
            big_len / MIB,
            peak / MIB
        );
        let stats = s.table_stats(T, seq, &AllCommitted, None).unwrap();
        let snap = stats.snapshot.unwrap();
        assert_eq!(snap.seq, seq);
        // The row block and the index block, incompressible.
        assert!(snap.raw_bytes > 2 * big_len as u64, "{snap:?}");
        assert!(snap.compressed_bytes > 2 * big_len as u64, "{snap:?}");
        seq
    };

    // A fresh store reads the rows from the snapshot (its log before the snapshot unread).
    let mut s = Store::open(&root, cfg()).unwrap();
    for i in [100, 99, 101, 0, 199] {
        let got = s.get(T, &key(i), seq, &AllCommitted).unwrap();
        assert!(got.as_ref() == Some(&expected[i].1), "row {i} differs");
    }
    assert_eq!(s.get(T, b"k100x", seq, &AllCommitted).unwrap(), None);
    let scanned = all_rows(&mut s, seq);
    assert_eq!(scanned.len(), 200);
    assert!(scanned == expected, "the scanned rows differ");
    let big = expected[100].1.get(2).unwrap();
    let found = s.index_eq(T, 2, big, seq, &AllCommitted).unwrap();
    assert_eq!(found.len(), 1);
    assert!(found[0].0 == key(100) && found[0].1 == expected[100].1);
    // Every value of column 2 but the large one is below "t": all 200 keys, by value.
    let mut by_value: Vec<(&[u8], Vec<u8>)> = expected
        .iter()
        .map(|(k, r)| (r.get(2).unwrap(), k.clone()))
        .collect();
    by_value.sort_unstable();
    let keys: Vec<Vec<u8>> = s
        .index_range(T, 2, Bound::Unbounded, Bound::Unbounded, seq, &AllCommitted)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        by_value.into_iter().map(|(_, k)| k).collect::<Vec<_>>()
    );
    let v100 = s.index_eq(T, 1, b"v100", seq, &AllCommitted).unwrap();
    assert!(v100.len() == 1 && v100[0].1 == expected[100].1);
    assert_eq!(s.estimate_rows(T).unwrap(), 200);
    // The large row's history: its one insert, whole.
    let history = s.history(T, &key(100), seq, &AllCommitted).unwrap();
    assert_eq!(history.len(), 1);
    assert!(history[0].op == Op::Insert(expected[100].1.clone()));

    // Appends after the snapshot: a key above the last one, and the large key again.
    s.append(
        &[txn(
            4,
            vec![insert(key(200), bytes_row(vec![(1, b"new".to_vec())]))],
        )],
        &AllCommitted,
    )
    .unwrap();
    let again = s.append(
        &[txn(
            5,
            vec![insert(key(100), bytes_row(vec![(1, b"again".to_vec())]))],
        )],
        &AllCommitted,
    );
    assert!(
        matches!(again, Err(Error::KeyExists { ref key, .. }) if *key == self::key(100)),
        "{:?}",
        again.map(|_| ())
    );
    drop(s);

    let report = Verifier::open(&root)
        .unwrap()
        .verify_table(T, &AllCommitted)
        .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.snapshots, report.snapshots_compared), (1, 1));
}

/// A primary key of 65 MiB: its row, its entry in an index (value small, key large) and
/// its key history record each exceed a block, so each gets a block of its own; all read
/// back (the row, the index, the key's history of an insert and a patch), and the snapshot
/// verifies.
#[test]
fn a_key_of_65_mib_gets_blocks_of_its_own_in_every_section() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    // Compressible (4 KiB of noise over and over): its blocks are small on disk, read back
    // by streaming decompression.
    let mut big_key = b"m".to_vec();
    let pattern = noise(4096, 5);
    while big_key.len() < 65 * MIB {
        big_key.extend_from_slice(&pattern);
    }
    let mut expected: Vec<(Vec<u8>, Row)> = (0..50)
        .map(|i| (key(i), bytes_row(vec![(1, format!("v{i}").into_bytes())])))
        .collect();
    // "k..." keys sort before "m...".
    expected.push((big_key.clone(), bytes_row(vec![(1, b"big".to_vec())])));
    expected.push((b"z".to_vec(), bytes_row(vec![(1, b"after".to_vec())])));
    let mut s = Store::open(&root, cfg()).unwrap();
    s.create_table(T).unwrap();
    s.create_index(T, 1, IndexKind::Bytes).unwrap();
    let events: Vec<Event> = expected
        .iter()
        .map(|(k, r)| insert(k.clone(), r.clone()))
        .collect();
    s.append(&[txn(1, events)], &AllCommitted).unwrap();
    let patched = Event {
        table: T,
        key: big_key.clone(),
        op: Op::Patch(vec![(1, Some(b"bigger".to_vec()))]),
    };
    let done = s.append(&[txn(2, vec![patched])], &AllCommitted).unwrap();
    let seq = done[0].last_seq;
    expected[50].1 = bytes_row(vec![(1, b"bigger".to_vec())]);
    s.snapshot(T, seq, &AllCommitted).unwrap();
    let snap = s
        .table_stats(T, seq, &AllCommitted, None)
        .unwrap()
        .snapshot
        .unwrap();
    // The key in the row block, the index block and the key history block; compressed,
    // far less.
    assert!(snap.raw_bytes > 3 * MAX_BLOCK_RAW_LEN, "{snap:?}");
    assert!(snap.compressed_bytes < MAX_BLOCK_RAW_LEN / 8, "{snap:?}");
    drop(s);

    let mut s = Store::open(&root, cfg()).unwrap();
    assert_eq!(
        s.get(T, &big_key, seq, &AllCommitted).unwrap(),
        Some(expected[50].1.clone())
    );
    assert_eq!(
        s.get(T, b"z", seq, &AllCommitted).unwrap(),
        Some(expected[51].1.clone())
    );
    assert!(all_rows(&mut s, seq) == expected, "the scanned rows differ");
    let found = s.index_eq(T, 1, b"bigger", seq, &AllCommitted).unwrap();
    assert!(found.len() == 1 && found[0].0 == big_key);
    let history = s.history(T, &big_key, seq, &AllCommitted).unwrap();
    let ops: Vec<&Op> = history.iter().map(|h| &h.op).collect();
    assert_eq!(
        ops,
        [
            &Op::Insert(bytes_row(vec![(1, b"big".to_vec())])),
            &Op::Patch(vec![(1, Some(b"bigger".to_vec()))]),
        ]
    );
    assert!(history.iter().all(|h| h.key == big_key));
    drop(s);
    let report = Verifier::open(&root)
        .unwrap()
        .verify_table(T, &AllCommitted)
        .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.snapshots_compared, 1);
}

/// Rewrites the directory of the snapshot `bytes` with `raw_len` as the raw length of its
/// first row block, its CRC and the file's checksum made to match; returns the block's
/// offset.
fn set_first_raw_len(bytes: &mut Vec<u8>, raw_len: u64) -> u64 {
    let foot = bytes.len() - 32;
    let dir_offset = u64::from_le_bytes(bytes[foot..foot + 8].try_into().unwrap()) as usize;
    let old = bytes[dir_offset..foot].to_vec();
    let mut d = Decoder::new(&old);
    let mut dir = Vec::new();
    let mut first_block = None;
    let sections = d.varint().unwrap();
    put_varint(&mut dir, sections);
    for _ in 0..sections {
        let kind = d.u8().unwrap();
        dir.push(kind);
        put_varint(&mut dir, d.varint().unwrap());
        let blocks = d.varint().unwrap();
        put_varint(&mut dir, blocks);
        for _ in 0..blocks {
            let offset = d.varint().unwrap();
            let clen = d.varint().unwrap();
            let mut len = d.varint().unwrap();
            let crc = d.u32_le().unwrap();
            let first = d.len_bytes().unwrap();
            if kind == 1 && first_block.is_none() {
                first_block = Some(offset);
                len = raw_len;
            }
            put_varint(&mut dir, offset);
            put_varint(&mut dir, clen);
            put_varint(&mut dir, len);
            dir.extend_from_slice(&crc.to_le_bytes());
            put_bytes(&mut dir, first);
        }
    }
    assert!(d.is_empty());
    bytes.truncate(dir_offset);
    bytes.extend_from_slice(&dir);
    let file_crc = crc32fast::hash(bytes);
    bytes.extend_from_slice(&(dir_offset as u64).to_le_bytes());
    bytes.extend_from_slice(&(dir.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&dir).to_le_bytes());
    bytes.extend_from_slice(&file_crc.to_le_bytes());
    bytes.extend_from_slice(b"DRIFTEND");
    first_block.unwrap()
}

/// A snapshot whose directory gives a block of many small rows a raw length of 1 GiB (the
/// largest a block of one record may have), its checksums made to match: reading that
/// block is corruption at the block's offset in that file, for a point lookup, a scan and
/// verification, and none of them allocates anything near the length claimed.
#[test]
fn a_false_raw_length_is_corruption_not_an_allocation() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let seq = {
        let mut s = Store::open(&root, cfg()).unwrap();
        s.create_table(T).unwrap();
        let events = (0..10_000)
            .map(|i| ins(T, &format!("key{i:05}"), &[(1, &format!("value {i}"))]))
            .collect();
        let done = s.append(&[txn(1, events)], &AllCommitted).unwrap();
        s.snapshot(T, done[0].last_seq, &AllCommitted).unwrap()
    };
    let path = snapshot_file(&root, seq);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = set_first_raw_len(&mut bytes, MAX_RECORD_BLOCK_RAW_LEN);
    std::fs::write(&path, &bytes).unwrap();
    let claimed = MAX_RECORD_BLOCK_RAW_LEN as usize;

    let is_the_block = |e: &Error| match e {
        Error::Corruption {
            file,
            offset,
            detail,
        } => *file == path && *offset == at && detail.contains("block length mismatch"),
        _ => false,
    };
    let mut s = Store::open(&root, cfg()).unwrap();
    let (got, peak) = peak_of(|| s.get(T, b"key00000", seq, &AllCommitted));
    let e = got.unwrap_err();
    assert!(is_the_block(&e), "{e:?}");
    assert!(peak < 4 * MIB, "a point lookup allocated {peak} bytes");
    // A row in another block is read.
    assert_eq!(
        s.get(T, b"key09999", seq, &AllCommitted).unwrap(),
        Some(row(&[(1, "value 9999")]))
    );
    let (scanned, peak) = peak_of(|| {
        s.scan(T, seq, &AllCommitted)
            .unwrap()
            .collect::<Result<Vec<_>>>()
    });
    let e = scanned.unwrap_err();
    assert!(is_the_block(&e), "{e:?}");
    assert!(peak < 4 * MIB, "a scan allocated {peak} bytes");
    drop(s);

    let (report, peak) = peak_of(|| {
        Verifier::open(&root)
            .unwrap()
            .verify_table(T, &AllCommitted)
            .unwrap()
    });
    // Verification rebuilds the table's 10,000 rows from the log besides.
    assert!(
        peak < 32 * MIB,
        "verification allocated {peak} bytes of {claimed} claimed"
    );
    let p = report
        .problems
        .listed
        .first()
        .unwrap_or_else(|| panic!("no problem reported: {report:?}"));
    assert_eq!((p.file.as_path(), p.offset), (path.as_path(), at), "{p:?}");
    assert!(p.detail.contains("block length mismatch"), "{p:?}");
}
