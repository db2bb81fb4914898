//! A full disk or a failed sync is an error to the caller, never silent loss: the append
//! that met it fails, the store refuses further writes until it is reopened, a write-ahead
//! log is told, and a reopened store holds every group acknowledged before and nothing
//! half written.

mod common;

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

#[test]
fn a_full_disk_met_by_a_large_append_s_background_writes_loses_nothing_acknowledged() {
    // Without a write-ahead log, a large append writes its table frames in chunks on a
    // second thread while it encodes the rest. The third chunk's write fails there: the
    // append must fail (not commit frames the file lacks) and break the store.
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), durable()).unwrap();
    s.create_table(T).unwrap();
    let acked = fill(&mut s, 1, 5);
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
    s.inject_fault(Fault::FullDisk { n: 2 });
    let e = s.append(&big, &AllCommitted).unwrap_err();
    assert_eq!(io_kind(&e), Some(std::io::ErrorKind::StorageFull), "{e}");
    assert!(matches!(
        s.append(
            &[txn(900, vec![ins(T, "next", &[(1, "x")])])],
            &AllCommitted
        ),
        Err(Error::Broken(_))
    ));
    drop(s);
    let mut s = Store::open(dir.path(), durable()).unwrap();
    assert_eq!(s.current_seq().unwrap(), acked);
    assert_eq!(scan_all(&mut s, T, acked, &AllCommitted).len(), 5);
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
    let report = Verifier::open(dir.path())
        .unwrap()
        .verify_table(T, &AllCommitted)
        .unwrap();
    assert!(report.ok(), "{report:?}");
}
