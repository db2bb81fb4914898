//! A full disk, a short write, a failed sync, truncate, rename or removal is an error to the
//! caller, never silent loss: the call that met it fails, the store refuses further writes
//! until it is reopened, a write-ahead log is told, and a reopened store holds every group
//! acknowledged before and nothing half written, answers every read as before and verifies
//! clean. Needs the `faults` feature (`cargo test -p driftdb-storage --features faults`).

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::*;
use driftdb_storage::*;

const T: TableId = 3;

#[derive(Clone, Default)]
struct Watch {
    failed: Arc<Mutex<Vec<String>>>,
}

impl WriteAhead for Watch {
    fn log(&mut self, _ops: &[FileOp], _groups: &[GroupMark]) -> Result<()> {
        Ok(())
    }
    fn done(&mut self) {}
    fn failed(&mut self, e: &Error) {
        self.failed.lock().unwrap().push(e.to_string());
    }
}

fn durable() -> Config {
    Config {
        durability: Durability::Sync,
        ..Config::default()
    }
}

fn open(dir: &std::path::Path, watch: &Watch) -> Store {
    Store::open_with(dir, durable(), Some(Box::new(watch.clone()))).unwrap()
}

fn fill(s: &mut Store, from: u64, n: u64) -> Seq {
    let mut last = 0;
    for i in from..from + n {
        last = s
            .append(
                &[txn(i, vec![ins(T, &format!("k{i}"), &[(1, "v")])])],
                &AllCommitted,
            )
            .unwrap()[0]
            .last_seq;
    }
    last
}

fn io_kind(e: &Error) -> Option<std::io::ErrorKind> {
    match e {
        Error::IoAt { source, .. } => Some(source.kind()),
        _ => None,
    }
}

fn errno(e: &Error) -> Option<i32> {
    match e {
        Error::IoAt { source, .. } => source.raw_os_error(),
        _ => None,
    }
}

const ENOSPC: i32 = 28;
const EIO: i32 = 5;

fn table_dir(root: &Path) -> PathBuf {
    root.join("tables").join(T.to_string())
}

/// The bytes of every log segment in `dir` (a table's directory, or the journal's).
fn logs_len(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// The bytes of every log segment in `dir`, in the order of their names.
fn log_bytes(dir: &Path) -> Vec<u8> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segs.sort();
    segs.iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// The names of the table's files that end in `suffix`, sorted.
fn files_ending(root: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(table_dir(root))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

fn snapshot_files(root: &Path) -> Vec<String> {
    files_ending(root, ".snap")
}

fn snap_name(seq: Seq) -> String {
    format!("snap-{seq:020}.snap")
}

/// The journal and the table verify without a problem; returns the table's report.
fn verify_clean(root: &Path) -> TableReport {
    let mut v = Verifier::open(root).unwrap();
    let journal = v.journal().clone();
    assert!(journal.ok(), "{journal:?}");
    let report = v.verify_table(T, &AllCommitted).unwrap();
    assert!(report.ok(), "{report:?}");
    report
}

/// Appends 40 groups of one event each to `T` (seqs 1..=40): inserts, patches of some of
/// the inserted keys and deletions of others, so that every seq reads differently.
fn history(s: &mut Store) {
    for i in 1..=40u64 {
        let patched = format!("p{i}");
        let ev = match i % 4 {
            3 => patch(T, &format!("k{:02}", i - 1), &[(2, Some(&patched))]),
            0 => del(T, &format!("k{:02}", i - 3)),
            _ => ins(T, &format!("k{i:02}"), &[(1, &i.to_string())]),
        };
        let c = s.append(&[txn(i, vec![ev])], &AllCommitted).unwrap();
        assert_eq!(c[0].last_seq, i);
    }
}

/// What a scan of `T` answers at every seq from 0 to `upto`.
fn answers(s: &mut Store, upto: Seq) -> Vec<Vec<(String, Row)>> {
    (0..=upto)
        .map(|at| scan_all(s, T, at, &AllCommitted))
        .collect()
}

fn assert_answers(s: &mut Store, expected: &[Vec<(String, Row)>], what: &str) {
    for (at, rows) in expected.iter().enumerate() {
        assert_eq!(
            &scan_all(s, T, at as Seq, &AllCommitted),
            rows,
            "{what}: at {at}"
        );
    }
}

#[test]
fn a_full_disk_fails_the_append_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let watch = Watch::default();
    let mut s = open(dir.path(), &watch);
    s.create_table(T).unwrap();
    let acked = fill(&mut s, 1, 5);
    // The table frame's write fails; then, on a fresh store, the journal's.
    for n in [0, 1] {
        s.inject_fault(Fault::FullDisk { n });
        let e = s
            .append(
                &[txn(100 + n as u64, vec![ins(T, "lost", &[(1, "x")])])],
                &AllCommitted,
            )
            .unwrap_err();
        assert_eq!(io_kind(&e), Some(std::io::ErrorKind::StorageFull), "{e}");
        assert_eq!(watch.failed.lock().unwrap().len(), n + 1);
        // Nothing more is written by this store.
        assert!(matches!(
            s.append(
                &[txn(200, vec![ins(T, "next", &[(1, "x")])])],
                &AllCommitted
            ),
            Err(Error::Broken(_))
        ));
        // Reopened: every acknowledged group, nothing of the failed one, and appends go on.
        s = open(dir.path(), &watch);
        assert_eq!(s.current_seq().unwrap(), acked, "fault at write {n}");
        assert_eq!(scan_all(&mut s, T, acked, &AllCommitted).len(), 5);
        assert!(s.get(T, b"lost", acked, &AllCommitted).unwrap().is_none());
    }
    let more = fill(&mut s, 10, 2);
    assert_eq!(more, acked + 2);
}

#[test]
fn a_failed_sync_fails_the_append_and_the_store_must_be_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let watch = Watch::default();
    let mut s = open(dir.path(), &watch);
    s.create_table(T).unwrap();
    let acked = fill(&mut s, 1, 3);
    // The table log's sync (the first) and the journal's (the second).
    for n in [0, 1] {
        s.inject_fault(Fault::SyncFails { n });
        let e = s
            .append(
                &[txn(
                    50 + n as u64,
                    vec![ins(T, &format!("unsure{n}"), &[(1, "x")])],
                )],
                &AllCommitted,
            )
            .unwrap_err();
        let errno = match &e {
            Error::IoAt { source, .. } => source.raw_os_error(),
            _ => None,
        };
        assert_eq!(errno, Some(5), "EIO expected: {e}");
        assert!(matches!(
            s.append(
                &[txn(60, vec![ins(T, "after", &[(1, "x")])])],
                &AllCommitted
            ),
            Err(Error::Broken(_))
        ));
        // The caller never acknowledged the group. What a reopened store finds depends on
        // which pages reached the disk; here the page cache kept them: the group is either
        // whole or absent, and everything acknowledged is there.
        s = open(dir.path(), &watch);
        let now = s.current_seq().unwrap();
        let rows = scan_all(&mut s, T, now, &AllCommitted).len() as u64;
        assert!(
            now >= acked + n as u64 && rows == now,
            "seq {now}, rows {rows}"
        );
    }
    assert_eq!(watch.failed.lock().unwrap().len(), 2);
}

/// A large append without a write-ahead log writes its table frames in chunks on a second
/// thread while it encodes the rest. The third chunk's write meets `fault` there: the
/// append must fail (not commit frames the file lacks) and break the store; a reopened store
/// cuts what the failed append left. Returns the bytes the failed append had left in the
/// table log.
fn large_append_meets(fault: Fault) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), durable()).unwrap();
    s.create_table(T).unwrap();
    let acked = fill(&mut s, 1, 5);
    let before = logs_len(&table_dir(dir.path()));
    let value = "v".repeat(1000);
    let big: Vec<Txn> = (0..400u64)
        .map(|t| {
            txn(
                100 + t,
                (0..10)
                    .map(|e| ins(T, &format!("big-{:06}", t * 10 + e), &[(1, &value)]))
                    .collect(),
            )
        })
        .collect();
    s.inject_fault(fault);
    let e = s.append(&big, &AllCommitted).unwrap_err();
    assert_eq!(io_kind(&e), Some(std::io::ErrorKind::StorageFull), "{e}");
    assert!(matches!(
        s.append(
            &[txn(900, vec![ins(T, "next", &[(1, "x")])])],
            &AllCommitted
        ),
        Err(Error::Broken(_))
    ));
    let left = logs_len(&table_dir(dir.path())) - before;
    drop(s);
    let mut s = Store::open(dir.path(), durable()).unwrap();
    assert_eq!(s.current_seq().unwrap(), acked);
    assert_eq!(
        logs_len(&table_dir(dir.path())),
        before,
        "{fault:?}: not cut"
    );
    assert_eq!(scan_all(&mut s, T, acked, &AllCommitted).len(), 5);
    verify_clean(dir.path());
    // The same batch, whole this time.
    let last = s
        .append(&big, &AllCommitted)
        .unwrap()
        .last()
        .unwrap()
        .last_seq;
    assert_eq!(last, acked + 4000);
    drop(s);
    let mut s = Store::open(dir.path(), durable()).unwrap();
    let rows = scan_all(&mut s, T, last, &AllCommitted);
    assert_eq!(rows.len(), 4005);
    assert_eq!(rows[0], ("big-000000".to_string(), row(&[(1, &value)])));
    let report = verify_clean(dir.path());
    assert_eq!(report.events, 4005);
    left
}

#[test]
fn a_full_disk_or_a_short_write_met_by_a_large_append_s_background_writes_loses_nothing_acknowledged(
) {
    let full = large_append_meets(Fault::FullDisk { n: 2 });
    let short = large_append_meets(Fault::ShortWrite { n: 2 });
    // Two chunks landed before each fault; the short write left half of the third too.
    assert!(full > 0, "two chunks were written before the full disk");
    assert!(short > full, "short write {short} bytes, full disk {full}");
}

#[test]
fn a_short_write_of_a_table_frame_or_of_the_journal_s_fails_the_append_and_is_cut_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (table, journal) = (table_dir(dir.path()), dir.path().join("journal"));
    let watch = Watch::default();
    let mut s = open(dir.path(), &watch);
    s.create_table(T).unwrap();
    let mut acked = fill(&mut s, 1, 5);
    let value = "w".repeat(3000);
    // The table frame's write (the first of an append), then the journal frame's.
    for n in [0, 1] {
        let (t0, j0) = (logs_len(&table), logs_len(&journal));
        let key = format!("short{n}");
        let group = txn(100 + n as u64, vec![ins(T, &key, &[(1, &value)])]);
        s.inject_fault(Fault::ShortWrite { n });
        let e = s
            .append(std::slice::from_ref(&group), &AllCommitted)
            .unwrap_err();
        assert_eq!(errno(&e), Some(ENOSPC), "{e}");
        assert_eq!(watch.failed.lock().unwrap().len(), n + 1);
        let (t1, j1) = (logs_len(&table), logs_len(&journal));
        assert!(
            t1 > t0,
            "fault at write {n}: the table frame was (partly) written"
        );
        assert_eq!(j1 > j0, n == 1, "fault at write {n}: journal {j0} -> {j1}");
        let short_file = if n == 0 { &table } else { &journal };
        let left = log_bytes(short_file);
        assert!(matches!(
            s.append(
                &[txn(200, vec![ins(T, "next", &[(1, "x")])])],
                &AllCommitted
            ),
            Err(Error::Broken(_))
        ));
        // Reopened: the half frame and everything after the journal are cut, every
        // acknowledged group is there and nothing of the failed one.
        s = open(dir.path(), &watch);
        assert_eq!(s.current_seq().unwrap(), acked, "fault at write {n}");
        assert_eq!((logs_len(&table), logs_len(&journal)), (t0, j0));
        assert_eq!(scan_all(&mut s, T, acked, &AllCommitted).len(), 5 + n);
        assert!(s
            .get(T, key.as_bytes(), acked, &AllCommitted)
            .unwrap()
            .is_none());
        verify_clean(dir.path());
        // The same group again, whole: the short write had written the first half of its
        // frame, byte for byte.
        acked = s.append(&[group], &AllCommitted).unwrap()[0].last_seq;
        assert_eq!(acked, 6 + n as u64);
        let whole = log_bytes(short_file);
        let base = if n == 0 { t0 } else { j0 } as usize;
        assert_eq!(
            left.len() - base,
            (whole.len() - base) / 2,
            "fault at write {n}"
        );
        assert_eq!(left[..], whole[..left.len()], "fault at write {n}");
    }
    assert_eq!(
        s.get(T, b"short1", acked, &AllCommitted).unwrap(),
        Some(row(&[(1, &value)]))
    );
    let more = fill(&mut s, 10, 2);
    assert_eq!(more, acked + 2);
    drop(s);
    let mut s = open(dir.path(), &watch);
    assert_eq!(scan_all(&mut s, T, more, &AllCommitted).len(), 9);
    let report = verify_clean(dir.path());
    assert_eq!(report.events, 9);
}

/// Opens a store on `root` with `faults` injected before recovery; the error it fails with.
fn open_failing(root: &Path, watch: &Watch, faults: &[Fault]) -> Error {
    match Store::open_with_faults(root, durable(), Some(Box::new(watch.clone())), faults) {
        Ok(_) => panic!("{faults:?}: the open succeeded"),
        Err(e) => e,
    }
}

#[test]
fn a_failed_cut_of_a_failed_append_s_frames_fails_the_open_and_the_next_open_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (table, journal) = (table_dir(dir.path()), dir.path().join("journal"));
    let watch = Watch::default();
    let mut s = open(dir.path(), &watch);
    s.create_table(T).unwrap();
    let acked = fill(&mut s, 1, 5);
    let (t0, j0) = (logs_len(&table), logs_len(&journal));
    // The journal's write runs out of room half way, after the table frame landed whole.
    // The failed store cuts nothing (it refuses every change from then on): recovery does.
    s.inject_fault(Fault::ShortWrite { n: 1 });
    let e = s
        .append(
            &[txn(100, vec![ins(T, "lost", &[(1, "x")])])],
            &AllCommitted,
        )
        .unwrap_err();
    assert_eq!(errno(&e), Some(ENOSPC), "{e}");
    assert!(matches!(
        s.append(
            &[txn(200, vec![ins(T, "next", &[(1, "x")])])],
            &AllCommitted
        ),
        Err(Error::Broken(_))
    ));
    let (t1, j1) = (logs_len(&table), logs_len(&journal));
    assert!(
        t1 > t0 && j1 > j0,
        "table {t0} -> {t1}, journal {j0} -> {j1}"
    );
    drop(s);
    assert_eq!(watch.failed.lock().unwrap().len(), 1);

    // Recovery's first cut, of the journal's torn tail, fails: so does the open, having
    // cut nothing, and the write-ahead log is told.
    let e = open_failing(dir.path(), &watch, &[Fault::TruncateFails { n: 0 }]);
    assert_eq!(errno(&e), Some(EIO), "{e}");
    assert_eq!(watch.failed.lock().unwrap().len(), 2);
    assert_eq!((logs_len(&table), logs_len(&journal)), (t1, j1));
    // Its second, of the table frames past the journal, fails after the first was made.
    let e = open_failing(dir.path(), &watch, &[Fault::TruncateFails { n: 1 }]);
    assert_eq!(errno(&e), Some(EIO), "{e}");
    assert_eq!(watch.failed.lock().unwrap().len(), 3);
    assert_eq!((logs_len(&table), logs_len(&journal)), (t1, j0));
    // Now the table's cut is recovery's first truncate: failing it fails the open again.
    let e = open_failing(dir.path(), &watch, &[Fault::TruncateFails { n: 0 }]);
    assert_eq!(errno(&e), Some(EIO), "{e}");
    assert_eq!((logs_len(&table), logs_len(&journal)), (t1, j0));

    // An open whose cuts succeed recovers: every acknowledged group, nothing of the failed
    // one, a clean verify, and appends go on.
    let mut s = open(dir.path(), &watch);
    assert_eq!(watch.failed.lock().unwrap().len(), 4);
    assert_eq!(s.current_seq().unwrap(), acked);
    assert_eq!((logs_len(&table), logs_len(&journal)), (t0, j0));
    assert_eq!(scan_all(&mut s, T, acked, &AllCommitted).len(), 5);
    assert!(s.get(T, b"lost", acked, &AllCommitted).unwrap().is_none());
    verify_clean(dir.path());
    let more = fill(&mut s, 10, 2);
    assert_eq!(more, acked + 2);
    drop(s);
    let mut s = open(dir.path(), &watch);
    assert_eq!(scan_all(&mut s, T, more, &AllCommitted).len(), 7);
    assert_eq!(verify_clean(dir.path()).events, 7);
}

fn keeping(snapshots_kept: usize) -> Config {
    Config {
        snapshots_kept,
        ..durable()
    }
}

fn open_keeping(root: &Path, snapshots_kept: usize, watch: &Watch) -> Store {
    Store::open_with(root, keeping(snapshots_kept), Some(Box::new(watch.clone()))).unwrap()
}

#[test]
fn a_snapshot_whose_file_cannot_take_its_place_fails_and_changes_no_answer() {
    // A snapshot is written to a temp file, synced, renamed over its name. The temp file's
    // write runs short, its sync fails, or the rename does.
    for (fault, code) in [
        (Fault::ShortWrite { n: 0 }, ENOSPC),
        (Fault::SyncFails { n: 0 }, EIO),
        (Fault::RenameFails { n: 0 }, EIO),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let watch = Watch::default();
        let mut s = open_keeping(dir.path(), 2, &watch);
        s.create_table(T).unwrap();
        history(&mut s);
        assert_eq!(s.snapshot(T, 10, &AllCommitted).unwrap(), 10);
        let expected = answers(&mut s, 40);
        assert_eq!(expected[40].len(), 10);

        s.inject_fault(fault);
        let e = s.snapshot(T, 20, &AllCommitted).unwrap_err();
        assert_eq!(errno(&e), Some(code), "{fault:?}: {e}");
        assert_eq!(watch.failed.lock().unwrap().len(), 1, "{fault:?}");
        assert_eq!(snapshot_files(dir.path()), [snap_name(10)], "{fault:?}");
        assert_eq!(
            files_ending(dir.path(), ".tmp"),
            [format!("{}.tmp", snap_name(20))],
            "{fault:?}"
        );
        // Reads go on as before; changes are refused until the store is reopened.
        assert_answers(&mut s, &expected, &format!("{fault:?}, the failed store"));
        assert!(matches!(
            s.snapshot(T, 20, &AllCommitted),
            Err(Error::Broken(_))
        ));
        assert!(matches!(
            s.append(
                &[txn(900, vec![ins(T, "next", &[(1, "x")])])],
                &AllCommitted
            ),
            Err(Error::Broken(_))
        ));
        drop(s);

        let mut s = open_keeping(dir.path(), 2, &watch);
        assert_eq!(
            s.since_snapshot(T).unwrap().0,
            30,
            "{fault:?}: read from snapshot 10"
        );
        assert_answers(&mut s, &expected, &format!("{fault:?}, reopened"));
        assert_eq!(verify_clean(dir.path()).snapshots, 1, "{fault:?}");
        // The same snapshot again succeeds, over the temp file left behind.
        assert_eq!(s.snapshot(T, 20, &AllCommitted).unwrap(), 20);
        assert_eq!(snapshot_files(dir.path()), [snap_name(10), snap_name(20)]);
        assert!(files_ending(dir.path(), ".tmp").is_empty(), "{fault:?}");
        assert_eq!(s.since_snapshot(T).unwrap().0, 20, "{fault:?}");
        assert_answers(&mut s, &expected, &format!("{fault:?}, after the snapshot"));
        drop(s);
        let mut s = open_keeping(dir.path(), 2, &watch);
        assert_answers(&mut s, &expected, &format!("{fault:?}, reopened again"));
        assert_eq!(verify_clean(dir.path()).snapshots, 2, "{fault:?}");
        assert_eq!(watch.failed.lock().unwrap().len(), 1, "{fault:?}");
    }
}

#[test]
fn a_failed_removal_of_old_snapshots_or_a_crash_before_it_keeps_every_answer_right() {
    // REMOVE 0 of a snapshot's batch clears its temp file; 1 and 2 remove the two oldest
    // snapshots beyond those kept, after the new one is in place. The first removal
    // failing leaves what a crash right after the rename leaves.
    for n in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let watch = Watch::default();
        let mut s = open_keeping(dir.path(), 3, &watch);
        s.create_table(T).unwrap();
        history(&mut s);
        for at in [5, 10, 20] {
            assert_eq!(s.snapshot(T, at, &AllCommitted).unwrap(), at);
        }
        let expected = answers(&mut s, 40);
        drop(s);
        // Two snapshots kept from now on: the next one removes 5 and 10.
        let mut s = open_keeping(dir.path(), 2, &watch);
        assert_answers(&mut s, &expected, "before");
        s.inject_fault(Fault::RemoveFails { n });
        let e = s.snapshot(T, 30, &AllCommitted).unwrap_err();
        assert_eq!(errno(&e), Some(EIO), "removal {n}: {e}");
        assert_eq!(watch.failed.lock().unwrap().len(), 1);
        let left: Vec<Seq> = if n == 1 {
            vec![5, 10, 20, 30]
        } else {
            vec![10, 20, 30]
        };
        let names: Vec<String> = left.iter().map(|s| snap_name(*s)).collect();
        assert_eq!(snapshot_files(dir.path()), names, "removal {n}");
        assert!(files_ending(dir.path(), ".tmp").is_empty());
        // A crash now: a copy of the files, opened below like the directory itself.
        let crashed = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), crashed.path());
        // The failed store still answers right (its list of snapshots may name one gone).
        assert_answers(&mut s, &expected, &format!("removal {n}, the failed store"));
        assert!(matches!(
            s.append(
                &[txn(900, vec![ins(T, "next", &[(1, "x")])])],
                &AllCommitted
            ),
            Err(Error::Broken(_))
        ));
        drop(s);

        for root in [dir.path(), crashed.path()] {
            let what = |w: &str| format!("removal {n}, {}: {w}", root.display());
            let watch = Watch::default();
            let mut s = open_keeping(root, 2, &watch);
            assert_eq!(snapshot_files(root), names, "{}", what("reopened"));
            // Reads start from the newest snapshot: the 10 events after it are the tail.
            assert_eq!(s.since_snapshot(T).unwrap().0, 10, "{}", what("tail"));
            assert_answers(&mut s, &expected, &what("reopened"));
            assert_eq!(
                verify_clean(root).snapshots,
                left.len() as u64,
                "{}",
                what("verify")
            );
            // Appends go on; the next snapshot leaves exactly the number kept.
            let last = fill(&mut s, 100, 2);
            assert_eq!(last, 42);
            assert_eq!(s.snapshot(T, last, &AllCommitted).unwrap(), last);
            assert_eq!(
                snapshot_files(root),
                [snap_name(30), snap_name(42)],
                "{}",
                what("next snapshot")
            );
            assert_answers(&mut s, &expected, &what("after the next snapshot"));
            assert_eq!(
                scan_all(&mut s, T, last, &AllCommitted).len(),
                expected[40].len() + 2
            );
            drop(s);
            let mut s = open_keeping(root, 2, &watch);
            assert_answers(&mut s, &expected, &what("reopened after it"));
            assert_eq!(verify_clean(root).snapshots, 2, "{}", what("verify after"));
            assert!(watch.failed.lock().unwrap().is_empty());
        }
    }
}

/// The table's log segments, by name.
fn segment_files(root: &Path) -> Vec<String> {
    files_ending(root, ".log")
}

#[test]
fn a_new_segment_that_cannot_take_its_place_fails_the_append_and_the_next_open_goes_on() {
    // A log rolls over to a new segment made like a snapshot: its header is written to a
    // temp file, synced and renamed into place; the frames follow. The header's write runs
    // short, the rename fails, or the first frames' write meets a full disk after it.
    for (fault, code, tmp_left, new_segment_left) in [
        (Fault::ShortWrite { n: 0 }, ENOSPC, true, false),
        (Fault::RenameFails { n: 0 }, EIO, true, false),
        (Fault::FullDisk { n: 1 }, ENOSPC, false, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let watch = Watch::default();
        let config = Config {
            segment_size: 4096,
            ..durable()
        };
        let open = || Store::open_with(dir.path(), config.clone(), Some(Box::new(watch.clone())));
        let mut s = open().unwrap();
        s.create_table(T).unwrap();
        let value = "s".repeat(1500);
        let mut acked = 0;
        let mut i = 0;
        let mut append = |s: &mut Store| {
            i += 1;
            let g = txn(i, vec![ins(T, &format!("seg{i:03}"), &[(1, &value)])]);
            s.append(&[g], &AllCommitted)
        };
        // Until the table's last segment is full: the next append starts one.
        loop {
            let segs = segment_files(dir.path());
            let full = segs.last().is_some_and(|last| {
                let len = std::fs::metadata(table_dir(dir.path()).join(last))
                    .unwrap()
                    .len();
                len >= 4096
            });
            if segs.len() >= 2 && full {
                break;
            }
            acked = append(&mut s).unwrap()[0].last_seq;
            assert!(acked < 100, "no segment filled up");
        }
        let segs = segment_files(dir.path());
        let (t0, j0) = (
            logs_len(&table_dir(dir.path())),
            logs_len(&dir.path().join("journal")),
        );
        s.inject_fault(fault);
        let e = append(&mut s).unwrap_err();
        assert_eq!(errno(&e), Some(code), "{fault:?}: {e}");
        assert_eq!(watch.failed.lock().unwrap().len(), 1);
        assert_eq!(
            !files_ending(dir.path(), ".tmp").is_empty(),
            tmp_left,
            "{fault:?}"
        );
        let after = segment_files(dir.path());
        assert_eq!(
            after.len(),
            segs.len() + new_segment_left as usize,
            "{fault:?}"
        );
        assert!(matches!(append(&mut s), Err(Error::Broken(_))));
        drop(s);

        let mut s = open().unwrap();
        assert_eq!(s.current_seq().unwrap(), acked, "{fault:?}");
        assert_eq!(segment_files(dir.path()), segs, "{fault:?}");
        assert_eq!(
            (
                logs_len(&table_dir(dir.path())),
                logs_len(&dir.path().join("journal"))
            ),
            (t0, j0),
            "{fault:?}"
        );
        assert_eq!(
            scan_all(&mut s, T, acked, &AllCommitted).len() as u64,
            acked,
            "{fault:?}"
        );
        verify_clean(dir.path());
        // The next append makes the new segment (over any temp file left).
        let more = append(&mut s).unwrap()[0].last_seq;
        assert_eq!(more, acked + 1);
        assert_eq!(segment_files(dir.path()).len(), segs.len() + 1, "{fault:?}");
        assert!(files_ending(dir.path(), ".tmp").is_empty(), "{fault:?}");
        drop(s);
        let mut s = open().unwrap();
        assert_eq!(scan_all(&mut s, T, more, &AllCommitted).len() as u64, more);
        assert_eq!(verify_clean(dir.path()).events, more, "{fault:?}");
        assert_eq!(watch.failed.lock().unwrap().len(), 1, "{fault:?}");
    }
}
