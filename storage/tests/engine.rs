mod common;

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};

use common::*;
use driftdb_storage::format::{SegmentHeader, KIND_TABLE, SEGMENT_HEADER_LEN};
use driftdb_storage::*;

const T: TableId = 7;
const U: TableId = 9;

fn setup() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), cfg()).unwrap();
    s.create_table(T).unwrap();
    s.create_table(U).unwrap();
    (dir, s)
}

#[test]
fn append_assigns_seqs_and_timestamps_and_reads_every_seq() {
    let (_d, mut s) = setup();
    let c = s
        .append(
            &[
                txn(
                    1,
                    vec![ins(T, "a", &[(1, "x"), (2, "y")]), ins(T, "b", &[(1, "z")])],
                ),
                Txn {
                    commit_ts: 0, // earlier than the first: raised to keep time increasing
                    ..txn(
                        2,
                        vec![
                            patch(T, "a", &[(2, None), (3, Some("w"))]),
                            ins(U, "a", &[(1, "u")]),
                        ],
                    )
                },
            ],
            &AllCommitted,
        )
        .unwrap();
    assert_eq!(c[0].first_seq, 1);
    assert_eq!(c[0].last_seq, 2);
    assert_eq!(c[0].commit_ts, 1000);
    assert_eq!(c[1].first_seq, 3);
    assert_eq!(c[1].last_seq, 4);
    assert_eq!(c[1].commit_ts, 1001);
    s.append(&[txn(3, vec![del(T, "b")])], &AllCommitted)
        .unwrap();
    assert_eq!(s.current_seq().unwrap(), 5);

    assert_eq!(scan_all(&mut s, T, 0, &AllCommitted), vec![]);
    assert_eq!(
        scan_all(&mut s, T, 1, &AllCommitted),
        vec![("a".into(), row(&[(1, "x"), (2, "y")]))]
    );
    let at2 = vec![
        ("a".into(), row(&[(1, "x"), (2, "y")])),
        ("b".into(), row(&[(1, "z")])),
    ];
    assert_eq!(scan_all(&mut s, T, 2, &AllCommitted), at2);
    let a3 = Row(vec![(1, v("x")), (2, None), (3, v("w"))]);
    assert_eq!(s.get(T, b"a", 3, &AllCommitted).unwrap(), Some(a3.clone()));
    assert_eq!(
        s.get(T, b"a", 2, &AllCommitted).unwrap(),
        Some(row(&[(1, "x"), (2, "y")]))
    );
    assert_eq!(
        scan_all(&mut s, T, 5, &AllCommitted),
        vec![("a".into(), a3)]
    );
    assert_eq!(s.get(T, b"b", 5, &AllCommitted).unwrap(), None);
    assert_eq!(s.get(U, b"a", 3, &AllCommitted).unwrap(), None);
    assert_eq!(
        s.get(U, b"a", 4, &AllCommitted).unwrap(),
        Some(row(&[(1, "u")]))
    );
    assert!(matches!(
        s.get(T, b"a", 6, &AllCommitted),
        Err(Error::SeqInFuture {
            requested: 6,
            current: 5
        })
    ));

    // seq_at: exact on the boundary microsecond.
    assert_eq!(s.seq_at(999).unwrap(), 0);
    assert_eq!(s.seq_at(1000).unwrap(), 2);
    assert_eq!(s.seq_at(1001).unwrap(), 4);
    assert_eq!(s.seq_at(2999).unwrap(), 4);
    assert_eq!(s.seq_at(3000).unwrap(), 5);
    assert_eq!(s.seq_at(i64::MAX).unwrap(), 5);
}

#[test]
fn validation_rejects_bad_targets_and_writes_nothing() {
    let (_d, mut s) = setup();
    s.append(&[txn(1, vec![ins(T, "a", &[(1, "x")])])], &AllCommitted)
        .unwrap();
    let before = s.stats();
    assert!(matches!(
        s.append(&[txn(2, vec![ins(T, "a", &[(1, "y")])])], &AllCommitted),
        Err(Error::KeyExists { table: T, .. })
    ));
    assert!(matches!(
        s.append(&[txn(2, vec![patch(T, "zz", &[(1, None)])])], &AllCommitted),
        Err(Error::KeyMissing { table: T, .. })
    ));
    assert!(matches!(
        s.append(&[txn(2, vec![del(T, "zz")])], &AllCommitted),
        Err(Error::KeyMissing { .. })
    ));
    // Within one call, earlier events count: delete then insert again is fine, but the
    // whole call fails if any transaction does.
    assert!(matches!(
        s.append(
            &[txn(2, vec![del(T, "a")]), txn(3, vec![del(T, "a")])],
            &AllCommitted
        ),
        Err(Error::KeyMissing { .. })
    ));
    assert!(matches!(
        s.append(&[txn(2, vec![ins(404, "a", &[])])], &AllCommitted),
        Err(Error::NoSuchTable(404))
    ));
    assert!(matches!(
        s.append(&[txn(2, vec![])], &AllCommitted),
        Err(Error::InvalidTxn(_))
    ));
    let unsorted = Event {
        table: T,
        key: b"q".to_vec(),
        op: Op::Insert(Row(vec![(2, None), (1, None)])),
    };
    assert!(matches!(
        s.append(&[txn(2, vec![unsorted])], &AllCommitted),
        Err(Error::InvalidTxn(_))
    ));
    assert_eq!(s.stats().bytes_written, before.bytes_written);
    assert_eq!(s.current_seq().unwrap(), 1);
    s.append(
        &[
            txn(2, vec![del(T, "a")]),
            txn(3, vec![ins(T, "a", &[(1, "again")])]),
        ],
        &AllCommitted,
    )
    .unwrap();
    assert_eq!(
        s.get(T, b"a", 3, &AllCommitted).unwrap(),
        Some(row(&[(1, "again")]))
    );
    assert_eq!(s.get(T, b"a", 2, &AllCommitted).unwrap(), None);
}

#[test]
fn aborted_and_in_progress_groups_are_invisible() {
    let (_d, mut s) = setup();
    let fates = FateSet::aborted([2]);
    s.append(&[txn(1, vec![ins(T, "a", &[(1, "1")])])], &fates)
        .unwrap();
    s.append(
        &[txn(
            2,
            vec![ins(T, "b", &[(1, "2")]), patch(T, "a", &[(1, Some("bad"))])],
        )],
        &fates,
    )
    .unwrap();
    // b's insert aborted: inserting b again is allowed, patching it is not.
    assert!(matches!(
        s.append(&[txn(3, vec![patch(T, "b", &[(1, None)])])], &fates),
        Err(Error::KeyMissing { .. })
    ));
    s.append(&[txn(3, vec![ins(T, "b", &[(1, "3")])])], &fates)
        .unwrap();
    assert_eq!(
        scan_all(&mut s, T, 4, &fates),
        vec![
            ("a".into(), row(&[(1, "1")])),
            ("b".into(), row(&[(1, "3")]))
        ]
    );
    let mut pending = FateSet::aborted([2]);
    pending.in_progress.insert(3);
    assert_eq!(
        scan_all(&mut s, T, 4, &pending),
        vec![("a".into(), row(&[(1, "1")]))]
    );
    // A snapshot needs every group decided.
    assert!(matches!(
        s.snapshot(T, 4, &pending),
        Err(Error::Undecided { xid: 3, .. })
    ));
    assert_eq!(s.snapshot(T, 4, &fates).unwrap(), 4);
    assert_eq!(
        scan_all(&mut s, T, 4, &fates),
        vec![
            ("a".into(), row(&[(1, "1")])),
            ("b".into(), row(&[(1, "3")]))
        ]
    );
}

#[test]
fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = Store::open(dir.path(), cfg()).unwrap();
        s.create_table(T).unwrap();
        for i in 0..20u64 {
            s.append(
                &[txn(
                    i + 1,
                    vec![ins(T, &format!("k{i:02}"), &[(1, &i.to_string())])],
                )],
                &AllCommitted,
            )
            .unwrap();
        }
    }
    let mut s = Store::open(dir.path(), cfg()).unwrap();
    assert_eq!(s.current_seq().unwrap(), 20);
    assert_eq!(scan_all(&mut s, T, 20, &AllCommitted).len(), 20);
    assert_eq!(scan_all(&mut s, T, 7, &AllCommitted).len(), 7);
    let c = s
        .append(&[txn(99, vec![del(T, "k03")])], &AllCommitted)
        .unwrap();
    assert_eq!(c[0].first_seq, 21);
    assert_eq!(c[0].commit_ts, 99_000);
    let c = s
        .append(
            &[Txn {
                commit_ts: 5,
                ..txn(100, vec![del(T, "k04")])
            }],
            &AllCommitted,
        )
        .unwrap();
    assert_eq!(c[0].commit_ts, 99_001);
}

/// A store under `dir` with 300-byte segments whose table T got `n` rows, one transaction
/// each (keys k00, k01, ...): many table and journal segments. Returns its config.
fn small_segments(dir: &std::path::Path, n: u64) -> Config {
    let config = Config {
        segment_size: 300,
        ..cfg()
    };
    let mut s = Store::open(dir, config.clone()).unwrap();
    s.create_table(T).unwrap();
    for i in 0..n {
        s.append(
            &[txn(
                i + 1,
                vec![ins(T, &format!("k{i:02}"), &[(1, "some value bytes")])],
            )],
            &AllCommitted,
        )
        .unwrap();
    }
    config
}

#[test]
fn segments_roll_over_and_old_seqs_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments(dir.path(), 60);
    let segs = std::fs::read_dir(dir.path().join("tables").join(T.to_string()))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .ends_with(".log")
        })
        .count();
    assert!(segs > 5, "{segs} segments");
    let jsegs = std::fs::read_dir(dir.path().join("journal"))
        .unwrap()
        .count();
    assert!(jsegs > 2, "{jsegs} journal segments");
    let mut s = Store::open(dir.path(), config).unwrap();
    for at in [0, 1, 17, 33, 59, 60] {
        assert_eq!(scan_all(&mut s, T, at, &AllCommitted).len(), at as usize);
    }
    s.snapshot(T, 30, &AllCommitted).unwrap();
    for at in [29, 30, 31, 45, 60] {
        assert_eq!(scan_all(&mut s, T, at, &AllCommitted).len(), at as usize);
        assert_eq!(
            s.get(
                T,
                format!("k{:02}", at.saturating_sub(1)).as_bytes(),
                at,
                &AllCommitted
            )
            .unwrap()
            .is_some(),
            at > 0
        );
    }
    assert_eq!(s.history(T, b"k42", 60, &AllCommitted).unwrap().len(), 1);
    assert_eq!(s.table_history(T, 60, &AllCommitted).unwrap().count(), 60);
}

/// The journal's segments under `root`, in order.
fn journal_segments(root: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(root.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segs.sort();
    segs
}

fn header_of(path: &Path) -> SegmentHeader {
    SegmentHeader::decode(&std::fs::read(path).unwrap()).unwrap()
}

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.insert(p.clone(), std::fs::read(&p).unwrap());
        }
    }
    out
}

#[test]
fn journal_segments_record_the_segment_size_and_reopen_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments(dir.path(), 20);
    let jsegs = journal_segments(dir.path());
    assert!(jsegs.len() > 1, "{jsegs:?}");
    for p in &jsegs {
        assert_eq!(header_of(p).recorded_segment_size(), Some(300), "{p:?}");
    }
    // A table log's header still names its table, and records no size.
    let tseg = std::fs::read_dir(dir.path().join("tables").join(T.to_string()))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .unwrap();
    let h = header_of(&tseg);
    assert_eq!(
        (h.kind, h.table, h.recorded_segment_size()),
        (KIND_TABLE, T, None)
    );
    // The same size reopens it, as a writer and as a reader.
    let mut w = Store::open(dir.path(), config.clone()).unwrap();
    let mut r = Store::open(
        dir.path(),
        Config {
            mode: OpenMode::Reader,
            ..config.clone()
        },
    )
    .unwrap();
    for i in 20..40u64 {
        w.append(
            &[txn(
                i + 1,
                vec![ins(T, &format!("k{i:02}"), &[(1, "more value")])],
            )],
            &AllCommitted,
        )
        .unwrap();
    }
    assert!(journal_segments(dir.path()).len() > jsegs.len());
    assert_eq!(r.current_seq().unwrap(), 40);
    assert_eq!(scan_all(&mut r, T, 40, &AllCommitted).len(), 40);
}

#[test]
fn a_store_opened_with_another_segment_size_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments(dir.path(), 20);
    let jsegs = journal_segments(dir.path());
    assert!(jsegs.len() > 1, "{jsegs:?}");
    // A torn tail, which a writer opening with the right size cuts.
    let last = jsegs.last().unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    std::io::Write::write_all(&mut f, &[7, 0, 0, 0, 0xf8]).unwrap();
    drop(f);
    let before = files(dir.path());
    for mode in [OpenMode::Writer, OpenMode::Reader] {
        for size in [200, 301, 64 << 20] {
            let opened = Store::open(
                dir.path(),
                Config {
                    mode,
                    segment_size: size,
                    ..config.clone()
                },
            );
            let err = opened.err().expect("another segment size is refused");
            match &err {
                Error::SegmentSizeMismatch {
                    file,
                    recorded,
                    configured,
                } => assert_eq!((file, *recorded, *configured), (&jsegs[0], 300, size)),
                e => panic!("{e}"),
            }
            assert_eq!(
                err.to_string(),
                format!(
                    "segment size mismatch: {} records segment_size 300, but the store is \
                     opened with segment_size {size} (every store opened on one root must use \
                     the segment size it was created with)",
                    jsegs[0].display()
                )
            );
        }
    }
    assert!(files(dir.path()) == before, "a refused open writes nothing");
    // Its own size opens it: the torn tail is cut and every row is there.
    let len = std::fs::metadata(last).unwrap().len();
    let mut s = Store::open(dir.path(), config).unwrap();
    assert_eq!(std::fs::metadata(last).unwrap().len(), len - 5);
    assert_eq!(s.current_seq().unwrap(), 20);
    assert_eq!(scan_all(&mut s, T, 20, &AllCommitted).len(), 20);
}

#[test]
fn journal_segments_recording_no_segment_size_open_with_any_size() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments(dir.path(), 20);
    // As written before segment sizes were recorded: 0 where the size goes.
    let old = journal_segments(dir.path());
    for p in &old {
        let mut bytes = std::fs::read(p).unwrap();
        let h = SegmentHeader::journal(header_of(p).first_seq, 0);
        bytes[..SEGMENT_HEADER_LEN].copy_from_slice(&h.encode());
        std::fs::write(p, bytes).unwrap();
        assert_eq!(header_of(p).recorded_segment_size(), None);
    }
    for size in [200, 300, 400, 64 << 20] {
        let mut r = Store::open(
            dir.path(),
            Config {
                mode: OpenMode::Reader,
                segment_size: size,
                ..config.clone()
            },
        )
        .unwrap();
        assert_eq!(scan_all(&mut r, T, 20, &AllCommitted).len(), 20, "{size}");
    }
    // A writer with another size takes the store over: the segments it starts record
    // its size, which is the store's from then on.
    let bigger = Config {
        segment_size: 400,
        ..config.clone()
    };
    let mut w = Store::open(dir.path(), bigger.clone()).unwrap();
    for i in 20..40u64 {
        w.append(
            &[txn(
                i + 1,
                vec![ins(T, &format!("k{i:02}"), &[(1, "more value")])],
            )],
            &AllCommitted,
        )
        .unwrap();
    }
    drop(w);
    let jsegs = journal_segments(dir.path());
    assert!(jsegs.len() > old.len(), "{jsegs:?}");
    for p in &jsegs[old.len()..] {
        assert_eq!(header_of(p).recorded_segment_size(), Some(400), "{p:?}");
    }
    let opened = Store::open(dir.path(), config);
    assert!(
        matches!(
            opened.err(),
            Some(Error::SegmentSizeMismatch { file, recorded: 400, configured: 300 })
                if file == jsegs[old.len()]
        ),
        "the old size no longer opens it"
    );
    let mut s = Store::open(dir.path(), bigger).unwrap();
    assert_eq!(scan_all(&mut s, T, 40, &AllCommitted).len(), 40);
}

#[test]
fn snapshots_serve_reads_and_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        snapshots_kept: 2,
        ..cfg()
    };
    let mut s = Store::open(dir.path(), config).unwrap();
    s.create_table(T).unwrap();
    let mut expected = Vec::new();
    for i in 0..40u64 {
        let ev = if i % 4 == 3 {
            patch(T, &format!("k{:02}", i - 1), &[(2, Some("p"))])
        } else if i % 7 == 6 {
            del(T, &format!("k{:02}", i - 2))
        } else {
            ins(T, &format!("k{i:02}"), &[(1, &i.to_string())])
        };
        let e = s.append(&[txn(i + 1, vec![ev])], &AllCommitted);
        if e.is_err() {
            // Patch or delete of a deleted key: use an insert instead.
            s.append(
                &[txn(i + 1, vec![ins(T, &format!("k{i:02}"), &[(1, "r")])])],
                &AllCommitted,
            )
            .unwrap();
        }
    }
    for at in 0..=40 {
        expected.push(scan_all(&mut s, T, at, &AllCommitted));
    }
    for snap_at in [10, 20, 25, 35] {
        s.snapshot(T, snap_at, &AllCommitted).unwrap();
    }
    let snaps: Vec<_> = std::fs::read_dir(dir.path().join("tables").join(T.to_string()))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".snap"))
        .collect();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    for at in 0..=40u64 {
        assert_eq!(
            scan_all(&mut s, T, at, &AllCommitted),
            expected[at as usize],
            "at {at}"
        );
        for (k, r) in &expected[at as usize] {
            assert_eq!(
                s.get(T, k.as_bytes(), at, &AllCommitted).unwrap().as_ref(),
                Some(r)
            );
        }
    }
    // A fresh store starts from the snapshots too.
    let mut r = Store::open(dir.path(), reader_cfg()).unwrap();
    for at in 0..=40u64 {
        assert_eq!(
            scan_all(&mut r, T, at, &AllCommitted),
            expected[at as usize],
            "at {at}"
        );
    }
}

#[test]
fn snapshot_corruption_is_found_by_the_reads_that_meet_it_and_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = Store::open(dir.path(), cfg()).unwrap();
        s.create_table(T).unwrap();
        let events = (0..3000)
            .map(|i| ins(T, &format!("key{i:05}"), &[(1, &format!("value {i}"))]))
            .collect();
        s.append(&[txn(1, events)], &AllCommitted).unwrap();
        s.create_index(T, 1, IndexKind::Bytes).unwrap();
        s.snapshot(T, 3000, &AllCommitted).unwrap();
    }
    let path = dir
        .path()
        .join("tables")
        .join(T.to_string())
        .join(format!("snap-{:020}.snap", 3000));
    let good = std::fs::read(&path).unwrap();
    assert!(check_snapshot_bytes(&good).unwrap() >= 6000);
    let want = Some(row(&[(1, "value 1")]));
    let mut rng = 12345u64;
    let (mut by_get, mut by_scan) = (0, 0);
    for _ in 0..60 {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pos = (rng >> 33) as usize % good.len();
        let mut bad = good.clone();
        bad[pos] ^= 1 << (rng % 8);
        // Verification (drift_verify) finds every flipped bit.
        assert!(check_snapshot_bytes(&bad).is_err(), "flip at {pos} passed");
        std::fs::write(&path, &bad).unwrap();
        // A read uses no damaged byte: it answers right (the damage lies where it does not
        // read) or fails naming the file and an offset at or before the damage.
        let corrupt = |r: Result<()>| match r {
            Ok(()) => false,
            Err(Error::Corruption { file, offset, .. }) => {
                assert_eq!(file, path);
                assert!(
                    offset as usize <= pos,
                    "offset {offset} after flipped byte {pos}"
                );
                true
            }
            Err(other) => panic!("flip at {pos}: {other:?}"),
        };
        let mut s = Store::open(dir.path(), reader_cfg()).unwrap();
        let got = s.get(T, b"key00001", 3000, &AllCommitted);
        by_get += usize::from(corrupt(got.map(|g| assert_eq!(g, want, "flip at {pos}"))));
        let mut s = Store::open(dir.path(), reader_cfg()).unwrap();
        let scanned = s.scan(T, 3000, &AllCommitted).and_then(|rows| {
            let n = rows.collect::<Result<Vec<_>>>()?.len();
            assert_eq!(n, 3000, "flip at {pos}");
            Ok(())
        });
        by_scan += usize::from(corrupt(scanned));
    }
    // The point lookup reads the header, the directory and one row block, the scan every
    // row block (the rest of the file holds the index and the keys' history).
    assert!(
        by_get >= 1 && by_scan >= by_get,
        "{by_get} by a lookup, {by_scan} by a scan"
    );
    std::fs::write(&path, &good[..good.len() - 1]).unwrap();
    let mut s = Store::open(dir.path(), reader_cfg()).unwrap();
    assert!(matches!(
        s.get(T, b"key00001", 3000, &AllCommitted),
        Err(Error::Corruption { .. })
    ));
}

#[test]
fn indexes_answer_at_every_seq() {
    let (_d, mut s) = setup();
    s.create_index(T, 2, IndexKind::Bytes).unwrap();
    s.append(
        &[txn(
            1,
            vec![
                ins(T, "a", &[(1, "x"), (2, "red")]),
                ins(T, "b", &[(1, "y"), (2, "blue")]),
                ins(T, "c", &[(1, "z")]),
            ],
        )],
        &AllCommitted,
    )
    .unwrap();
    s.snapshot(T, 3, &AllCommitted).unwrap();
    s.append(
        &[txn(
            2,
            vec![
                patch(T, "b", &[(2, Some("red"))]),
                patch(T, "a", &[(1, Some("x2"))]),
            ],
        )],
        &AllCommitted,
    )
    .unwrap();
    s.append(
        &[txn(
            3,
            vec![del(T, "a"), patch(T, "c", &[(2, Some("green"))])],
        )],
        &AllCommitted,
    )
    .unwrap();
    let keys = |r: Vec<(Vec<u8>, Row)>| {
        r.into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(s.index_eq(T, 2, b"red", 3, &AllCommitted).unwrap()),
        ["a"]
    );
    assert_eq!(
        keys(s.index_eq(T, 2, b"red", 5, &AllCommitted).unwrap()),
        ["a", "b"]
    );
    assert_eq!(
        keys(s.index_eq(T, 2, b"red", 7, &AllCommitted).unwrap()),
        ["b"]
    );
    assert_eq!(
        keys(s.index_eq(T, 2, b"red", 2, &AllCommitted).unwrap()),
        ["a"]
    );
    assert_eq!(
        keys(
            s.index_range(
                T,
                2,
                Bound::Included(b"blue"),
                Bound::Excluded(b"red"),
                7,
                &AllCommitted
            )
            .unwrap()
        ),
        ["c"]
    );
    assert_eq!(
        keys(
            s.index_range(T, 2, Bound::Unbounded, Bound::Unbounded, 3, &AllCommitted)
                .unwrap()
        ),
        ["b", "a"]
    );
    let got = s.index_eq(T, 2, b"red", 5, &AllCommitted).unwrap();
    assert_eq!(got[0].1, row(&[(1, "x2"), (2, "red")]));
    assert!(matches!(
        s.index_eq(T, 1, b"x", 3, &AllCommitted),
        Err(Error::NoSuchIndex {
            table: T,
            column: 1
        })
    ));
    // An index created after the snapshot is rebuilt from it; the next snapshot holds it.
    s.create_index(T, 1, IndexKind::Bytes).unwrap();
    assert_eq!(
        keys(s.index_eq(T, 1, b"y", 3, &AllCommitted).unwrap()),
        ["b"]
    );
    assert_eq!(
        keys(s.index_eq(T, 1, b"x2", 5, &AllCommitted).unwrap()),
        ["a"]
    );
    s.snapshot(T, 7, &AllCommitted).unwrap();
    assert_eq!(
        keys(s.index_eq(T, 1, b"z", 7, &AllCommitted).unwrap()),
        ["c"]
    );
    let mut r = Store::open(s.root(), reader_cfg()).unwrap();
    assert_eq!(
        keys(r.index_eq(T, 1, b"y", 7, &AllCommitted).unwrap()),
        ["b"]
    );
    assert_eq!(
        keys(r.index_eq(T, 2, b"red", 3, &AllCommitted).unwrap()),
        ["a"]
    );
    s.drop_index(T, 1).unwrap();
    let mut r = Store::open(s.root(), reader_cfg()).unwrap();
    assert!(matches!(
        r.index_eq(T, 1, b"y", 7, &AllCommitted),
        Err(Error::NoSuchIndex { .. })
    ));
}

#[test]
fn history_and_changes() {
    let (_d, mut s) = setup();
    let fates = FateSet::aborted([3]);
    s.append(
        &[txn(
            1,
            vec![ins(T, "a", &[(1, "1")]), ins(T, "b", &[(1, "1")])],
        )],
        &fates,
    )
    .unwrap();
    s.append(
        &[txn(
            2,
            vec![patch(T, "a", &[(1, Some("2"))]), ins(U, "a", &[])],
        )],
        &fates,
    )
    .unwrap();
    s.append(&[txn(3, vec![del(T, "b")])], &fates).unwrap();
    s.append(
        &[txn(4, vec![del(T, "a"), ins(T, "c", &[(1, "c")])])],
        &fates,
    )
    .unwrap();
    let h = s.history(T, b"a", 7, &fates).unwrap();
    assert_eq!(h.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 3, 6]);
    assert_eq!(h[1].commit_ts, 2000);
    assert_eq!(h[1].xid, 2);
    assert_eq!(h[1].role, "role2");
    assert_eq!(h[2].op, Op::SoftDelete);
    assert_eq!(s.history(T, b"a", 3, &fates).unwrap().len(), 2);
    assert_eq!(s.history(T, b"b", 7, &fates).unwrap().len(), 1);
    let all: Vec<Seq> = s
        .table_history(T, 7, &fates)
        .unwrap()
        .map(|e| e.unwrap().seq)
        .collect();
    assert_eq!(all, [1, 2, 3, 6, 7]);

    let ch = s.changes(T, 2, 7, &fates).unwrap();
    assert_eq!(
        ch,
        vec![
            Change {
                key: b"a".to_vec(),
                before: Some(row(&[(1, "1")])),
                after: None
            },
            Change {
                key: b"c".to_vec(),
                before: None,
                after: Some(row(&[(1, "c")]))
            },
        ]
    );
    s.snapshot(T, 4, &fates).unwrap();
    assert_eq!(s.changes(T, 2, 7, &fates).unwrap(), ch);
    assert_eq!(s.changes(T, 0, 2, &fates).unwrap().len(), 2);
    assert_eq!(s.changes(T, 5, 5, &fates).unwrap(), vec![]);
}

#[test]
fn reader_sees_later_appends_and_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Store::open(dir.path(), cfg()).unwrap();
    w.create_table(T).unwrap();
    w.append(&[txn(1, vec![ins(T, "a", &[(1, "1")])])], &AllCommitted)
        .unwrap();
    let mut r = Store::open(dir.path(), reader_cfg()).unwrap();
    assert_eq!(r.current_seq().unwrap(), 1);
    assert_eq!(scan_all(&mut r, T, 1, &AllCommitted).len(), 1);
    assert!(matches!(
        r.append(&[txn(2, vec![del(T, "a")])], &AllCommitted),
        Err(Error::ReadOnly)
    ));
    for i in 2..50u64 {
        w.append(
            &[txn(i, vec![ins(T, &format!("k{i:02}"), &[(1, "v")])])],
            &AllCommitted,
        )
        .unwrap();
        if i % 10 == 0 {
            assert_eq!(r.current_seq().unwrap(), i);
            assert_eq!(scan_all(&mut r, T, i, &AllCommitted).len(), i as usize);
        }
    }
    w.snapshot(T, 30, &AllCommitted).unwrap();
    assert_eq!(scan_all(&mut r, T, 49, &AllCommitted).len(), 49);
    assert_eq!(scan_all(&mut r, T, 25, &AllCommitted).len(), 25);
    // Bytes past the journal (a writer mid-append) are not an error for a reader.
    let jseg = std::fs::read_dir(dir.path().join("journal"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&jseg)
        .unwrap();
    std::io::Write::write_all(&mut f, &[7, 0, 0, 0, 0xf8]).unwrap();
    let len = std::fs::metadata(&jseg).unwrap().len();
    assert_eq!(r.current_seq().unwrap(), 49);
    assert_eq!(scan_all(&mut r, T, 49, &AllCommitted).len(), 49);
    assert_eq!(
        std::fs::metadata(&jseg).unwrap().len(),
        len,
        "a reader never truncates"
    );
}

#[test]
fn group_commit_shares_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), Config::default()).unwrap();
    s.create_table(T).unwrap();
    let gc = std::sync::Arc::new(GroupCommitter::new(s, std::sync::Arc::new(AllCommitted)));
    let threads = 8;
    let per_thread = 25;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let gc = gc.clone();
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    let xid = (t * 1000 + i + 1) as u64;
                    let c = gc
                        .commit(txn(xid, vec![ins(T, &format!("t{t}-{i}"), &[(1, "v")])]))
                        .unwrap();
                    assert_eq!(c.first_seq, c.last_seq);
                }
                // A rejected transaction does not fail its batch.
                assert!(matches!(
                    gc.commit(txn(1, vec![ins(T, &format!("t{t}-0"), &[(1, "v")])])),
                    Err(Error::KeyExists { .. })
                ));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let commits = (threads * per_thread) as u64;
    gc.with_store(|s| {
        let st = s.stats();
        assert_eq!(st.groups, commits);
        assert_eq!(s.current_seq().unwrap(), commits);
        assert_eq!(
            scan_all(s, T, commits, &AllCommitted).len(),
            commits as usize
        );
        assert!(st.sync_rounds < commits, "{st:?}");
        assert_eq!(st.sync_rounds, st.appends);
        eprintln!("{commits} commits, {} sync rounds", st.sync_rounds);
    });
}

#[test]
fn drop_and_recreate_table() {
    let (d, mut s) = setup();
    s.append(
        &[txn(1, vec![ins(T, "a", &[(1, "1")]), ins(U, "u", &[])])],
        &AllCommitted,
    )
    .unwrap();
    s.drop_table(T).unwrap();
    assert!(!d.path().join("tables").join(T.to_string()).exists());
    assert!(matches!(
        s.get(T, b"a", 2, &AllCommitted),
        Err(Error::NoSuchTable(T))
    ));
    assert!(matches!(s.drop_table(T), Err(Error::NoSuchTable(T))));
    s.create_table(T).unwrap();
    assert_eq!(scan_all(&mut s, T, 2, &AllCommitted), vec![]);
    s.append(&[txn(2, vec![ins(T, "a", &[(1, "2")])])], &AllCommitted)
        .unwrap();
    drop(s);
    let mut s = Store::open(d.path(), cfg()).unwrap();
    assert_eq!(
        scan_all(&mut s, T, 3, &AllCommitted),
        vec![("a".into(), row(&[(1, "2")]))]
    );
    assert_eq!(scan_all(&mut s, U, 3, &AllCommitted).len(), 1);
}

#[test]
fn settled_fates_answer_without_the_callers_commit_log() {
    let (d, mut s) = setup();
    let mut fates = FateSet::default();
    fates.aborted.insert(3);
    fates.aborted.insert(7);
    fates.in_progress.insert(9);
    for xid in 1..=10u64 {
        s.append(
            &[txn(xid, vec![ins(T, &format!("k{xid}"), &[(1, "x")])])],
            &fates,
        )
        .unwrap();
    }
    assert_eq!(*s.settled().unwrap(), SettledFates::default());
    // Transaction 9 is still running: everything below it can be settled, not above.
    assert_eq!(s.settle(9, &fates).unwrap(), 8);
    let settled = s.settled().unwrap();
    assert_eq!(settled.below, 9);
    assert_eq!(
        settled.aborted.iter().copied().collect::<Vec<_>>(),
        vec![3, 7]
    );
    assert_eq!(settled.fate(7), Some(Fate::Aborted));
    assert_eq!(settled.fate(8), Some(Fate::Committed));
    assert_eq!(settled.fate(9), None);
    assert!(matches!(
        s.settle(11, &fates),
        Err(Error::Undecided { xid: 9, .. })
    ));
    assert_eq!(
        s.settled().unwrap().below,
        9,
        "a failed settle records nothing"
    );
    // Settling again below the mark is a no-op, and so is a range without groups.
    assert_eq!(s.settle(5, &fates).unwrap(), 0);
    let len = std::fs::metadata(d.path().join("fates.log")).unwrap().len();
    s.append(&[txn(20, vec![ins(T, "k20", &[(1, "x")])])], &fates)
        .unwrap();
    assert_eq!(s.settle(9, &fates).unwrap(), 0);
    assert_eq!(
        std::fs::metadata(d.path().join("fates.log")).unwrap().len(),
        len
    );
    fates.in_progress.clear();
    fates.aborted.insert(9);
    assert_eq!(s.settle(11, &fates).unwrap(), 2);

    // Another store (a reader in another process) sees the same; a torn tail is ignored
    // by readers and cut by the next settle; damage before the tail is corruption.
    let mut r = Store::open(d.path(), reader_cfg()).unwrap();
    let want = s.settled().unwrap();
    assert_eq!(
        want.aborted.iter().copied().collect::<Vec<_>>(),
        vec![3, 7, 9]
    );
    assert_eq!(r.settled().unwrap(), want);
    let path = d.path().join("fates.log");
    let good = std::fs::read(&path).unwrap();
    let mut torn = good.clone();
    torn.extend_from_slice(&[5, 0, 0]);
    std::fs::write(&path, &torn).unwrap();
    let mut r2 = Store::open(d.path(), reader_cfg()).unwrap();
    assert_eq!(r2.settled().unwrap(), want);
    s.append(&[txn(12, vec![ins(T, "k12", &[(1, "x")])])], &fates)
        .unwrap();
    assert_eq!(s.settle(13, &fates).unwrap(), 1);
    assert_eq!(r2.settled().unwrap().below, 13);
    let mut bad = std::fs::read(&path).unwrap();
    bad[14] ^= 0x40;
    std::fs::write(&path, &bad).unwrap();
    let mut r3 = Store::open(d.path(), reader_cfg()).unwrap();
    match r3.settled() {
        Err(Error::Corruption { file, offset, .. }) => {
            assert_eq!(file, path);
            assert_eq!(offset, 0);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn the_record_of_settled_fates_is_compacted_and_readers_follow_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        fates_compact_bytes: 256,
        ..cfg()
    };
    let mut s = Store::open(dir.path(), config.clone()).unwrap();
    s.create_table(T).unwrap();
    let path = dir.path().join("fates.log");
    // A reader that follows the record from its first settlement on.
    let mut r = Store::open(
        dir.path(),
        Config {
            mode: OpenMode::Reader,
            ..config.clone()
        },
    )
    .unwrap();
    let aborted: Vec<u64> = (1..=300).filter(|x| x % 100 == 0).collect();
    let fates = FateSet::aborted(aborted.iter().copied());
    let (mut shrinks, mut prev, mut largest) = (0, 0, 0);
    for xid in 1..=300u64 {
        s.append(
            &[txn(xid, vec![ins(T, &format!("k{xid}"), &[(1, "x")])])],
            &fates,
        )
        .unwrap();
        assert_eq!(s.settle(xid + 1, &fates).unwrap(), 1);
        let len = std::fs::metadata(&path).unwrap().len();
        shrinks += usize::from(len < prev);
        (prev, largest) = (len, largest.max(len));
        let want = s.settled().unwrap();
        assert_eq!(want.below, xid + 1);
        assert_eq!(
            want.aborted.iter().copied().collect::<Vec<_>>(),
            aborted
                .iter()
                .copied()
                .filter(|a| *a <= xid)
                .collect::<Vec<_>>()
        );
        assert_eq!(r.settled().unwrap(), want, "the reader after xid {xid}");
    }
    // 300 settlements of about 15 bytes each would be 4.5 kB: the file was replaced
    // many times and never grew past the threshold by more than one frame.
    assert!(shrinks >= 10, "compacted {shrinks} times");
    assert!(largest <= 256 + 32, "the record grew to {largest} bytes");
    // A new store reads the same fates from the compacted file; so does a reopened writer.
    let want = s.settled().unwrap();
    let mut fresh = Store::open(dir.path(), reader_cfg()).unwrap();
    assert_eq!(fresh.settled().unwrap(), want);
    drop(s);
    let mut s = Store::open(dir.path(), config).unwrap();
    assert_eq!(s.settled().unwrap(), want);
    assert!(!dir.path().join("fates.log.tmp").exists());
}

/// Table ends shared in memory, as the Postgres layer shares them in shared memory.
#[derive(Clone, Default)]
struct SharedEnds(std::sync::Arc<std::sync::Mutex<HashMap<TableId, (Seq, u64)>>>);

impl TableEnds for SharedEnds {
    fn get(&self, table: TableId) -> Option<(Seq, u64)> {
        self.0.lock().unwrap().get(&table).copied()
    }
    fn put(&self, table: TableId, segment: Seq, end: u64) {
        self.0.lock().unwrap().insert(table, (segment, end));
    }
}

#[test]
fn a_store_takes_up_where_another_left_a_tables_log_and_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        segment_size: 1024,
        ..cfg()
    };
    let quick = Config {
        recover: false,
        ..config.clone()
    };
    let ends = SharedEnds::default();
    let mut a = Store::open(dir.path(), config.clone()).unwrap();
    a.share_table_ends(Box::new(ends.clone()));
    a.create_table(T).unwrap();
    let mut xid = 0u64;
    let mut next = || {
        xid += 1;
        xid
    };
    // Enough groups for several segments.
    for i in 0..200 {
        a.append(
            &[txn(
                next(),
                vec![ins(T, &format!("k{i:03}"), &[(1, "some value")])],
            )],
            &AllCommitted,
        )
        .unwrap();
    }
    assert!(
        std::fs::read_dir(dir.path().join("tables").join(T.to_string()))
            .unwrap()
            .count()
            > 3
    );
    let published = ends.get(T).expect("published by the appender");
    // Another store takes the position up: no segment read whole.
    let mut b = Store::open(dir.path(), quick.clone()).unwrap();
    b.share_table_ends(Box::new(ends.clone()));
    b.append(
        &[txn(next(), vec![ins(T, "b1", &[(1, "x")])])],
        &AllCommitted,
    )
    .unwrap();
    assert_eq!(b.stats().writer_recoveries, 0);
    assert_ne!(
        ends.get(T),
        Some(published),
        "b published where it left the log"
    );
    // The first store follows (its writer is behind: it reads just the other's frames).
    // It recovered the log once, when it first wrote to the table, which had none yet;
    // never at a rollover.
    assert_eq!(a.stats().writer_recoveries, 1);
    a.append(
        &[txn(next(), vec![ins(T, "a1", &[(1, "x")])])],
        &AllCommitted,
    )
    .unwrap();
    assert_eq!(a.stats().writer_recoveries, 1);
    // A store without shared ends reads the last segment to find the end.
    let mut c = Store::open(dir.path(), quick.clone()).unwrap();
    c.append(
        &[txn(next(), vec![ins(T, "c1", &[(1, "x")])])],
        &AllCommitted,
    )
    .unwrap();
    assert_eq!(c.stats().writer_recoveries, 1);
    // Positions that do not hold are not taken: mid-frame, past the end, a segment that
    // is not there, or one that is not the last. Each store recovers the log and appends
    // where it really ends.
    let first_seg = std::fs::read_dir(dir.path().join("tables").join(T.to_string()))
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            n.strip_suffix(".log")?.parse::<Seq>().ok()
        })
        .min()
        .unwrap();
    for k in 0..4 {
        let (seg, end) = ends.get(T).unwrap();
        let bad = [
            (seg, end - 3),
            (seg, end + 100),
            (seg + 1_000_000, 64),
            (first_seg, 100),
        ][k];
        let lies = SharedEnds::default();
        lies.put(T, bad.0, bad.1);
        let mut d = Store::open(dir.path(), quick.clone()).unwrap();
        d.share_table_ends(Box::new(lies.clone()));
        d.append(
            &[txn(next(), vec![ins(T, &format!("d{k}"), &[(1, "x")])])],
            &AllCommitted,
        )
        .unwrap();
        assert_eq!(d.stats().writer_recoveries, 1, "position {bad:?}");
        let real = lies.get(T).unwrap();
        assert_ne!(real, bad);
        ends.put(T, real.0, real.1);
    }
    // Every store reads every row, and the files verify.
    let now = a.current_seq().unwrap();
    for s in [&mut a, &mut b, &mut c] {
        let rows = scan_all(s, T, now, &AllCommitted);
        assert_eq!(rows.len(), 200 + 3 + 4);
    }
    drop((a, b, c));
    let mut r = Store::open(dir.path(), config).unwrap();
    let now = r.current_seq().unwrap();
    assert_eq!(scan_all(&mut r, T, now, &AllCommitted).len(), 207);
    assert!(r.damaged_tables().is_empty());
}

#[test]
fn since_snapshot_counts_the_events_a_snapshot_would_cover() {
    let (_d, mut s) = setup();
    assert_eq!(s.since_snapshot(T).unwrap(), (0, 0));
    for i in 0..10u64 {
        s.append(
            &[txn(i + 1, vec![ins(T, &format!("k{i}"), &[(1, "value")])])],
            &AllCommitted,
        )
        .unwrap();
    }
    s.append(
        &[txn(
            20,
            vec![patch(T, "k1", &[(1, Some("w"))]), del(T, "k2")],
        )],
        &AllCommitted,
    )
    .unwrap();
    let (events, bytes) = s.since_snapshot(T).unwrap();
    assert_eq!(events, 12);
    assert!(bytes >= 12 * 2, "{bytes}");
    let at = s.current_seq().unwrap();
    s.snapshot(T, at, &AllCommitted).unwrap();
    assert_eq!(s.since_snapshot(T).unwrap(), (0, 0));
    s.append(&[txn(21, vec![ins(T, "new", &[(1, "v")])])], &AllCommitted)
        .unwrap();
    assert_eq!(s.since_snapshot(T).unwrap().0, 1);
    assert_eq!(s.since_snapshot(U).unwrap(), (0, 0));
}

#[test]
fn two_writers_taking_turns_across_segment_rollovers_keep_every_group_in_order() {
    let d = tempfile::tempdir().unwrap();
    let small = || Config {
        segment_size: 300,
        ..cfg()
    };
    let mut a = Store::open(d.path(), small()).unwrap();
    a.create_table(T).unwrap();
    let mut b = Store::open(d.path(), small()).unwrap();
    let mut expect = Vec::new();
    for i in 0..60u64 {
        // Writers alternate irregularly, as backends taking the append lock in turn.
        let s = if (i / 3) % 2 == 0 { &mut a } else { &mut b };
        let key = format!("k{i:03}");
        s.append(
            &[txn(i + 1, vec![ins(T, &key, &[(1, "value-value")])])],
            &AllCommitted,
        )
        .unwrap();
        expect.push((key, row(&[(1, "value-value")])));
    }
    let segments = std::fs::read_dir(d.path().join(format!("tables/{T}")))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .count();
    assert!(segments > 5, "{segments} segments");
    let reader = Config {
        mode: OpenMode::Reader,
        ..small()
    };
    let mut r = Store::open(d.path(), reader).unwrap();
    for s in [&mut a, &mut b, &mut r] {
        let at = s.current_seq().unwrap();
        assert_eq!(at, 60);
        assert_eq!(scan_all(s, T, at, &AllCommitted), expect);
        for i in [0u64, 17, 59] {
            assert_eq!(
                scan_all(s, T, i + 1, &AllCommitted).len() as u64,
                i + 1,
                "as of {}",
                i + 1
            );
        }
    }
    let mut fresh = Store::open(d.path(), small()).unwrap();
    assert_eq!(scan_all(&mut fresh, T, 60, &AllCommitted), expect);
}

#[test]
fn point_lookups_in_a_snapshot_find_every_key_and_no_other() {
    let (_d, mut s) = setup();
    let rows: Vec<Event> = (0..3000u32)
        .map(|i| ins(T, &format!("k{:06}", i * 2), &[(1, &format!("v{i}"))]))
        .collect();
    s.append(&[txn(1, rows)], &AllCommitted).unwrap();
    let at = s.current_seq().unwrap();
    s.snapshot(T, at, &AllCommitted).unwrap();
    // Twice in key order (the second pass finds cached blocks), and once backwards: every
    // present key is found with its row, every absent key between them is not.
    for pass in 0..3 {
        let order: Vec<u32> = if pass < 2 {
            (0..6000).collect()
        } else {
            (0..6000).rev().collect()
        };
        for n in order {
            let got = s
                .get(T, format!("k{n:06}").as_bytes(), at, &AllCommitted)
                .unwrap();
            if n % 2 == 0 {
                assert_eq!(got, Some(row(&[(1, &format!("v{}", n / 2))])), "k{n}");
            } else {
                assert_eq!(got, None, "k{n}");
            }
        }
    }
}

#[test]
fn estimate_rows_follows_inserts_and_deletes_around_a_snapshot() {
    let (_d, mut s) = setup();
    assert!(matches!(s.estimate_rows(99), Err(Error::NoSuchTable(99))));
    assert_eq!(s.estimate_rows(T).unwrap(), 0);
    let rows: Vec<Event> = (0..100)
        .map(|i| ins(T, &format!("k{i:03}"), &[(1, "v")]))
        .collect();
    s.append(&[txn(1, rows)], &AllCommitted).unwrap();
    assert_eq!(s.estimate_rows(T).unwrap(), 100);
    let at = s.current_seq().unwrap();
    s.snapshot(T, at, &AllCommitted).unwrap();
    assert_eq!(s.estimate_rows(T).unwrap(), 100);
    s.append(
        &[txn(
            2,
            vec![
                del(T, "k000"),
                del(T, "k001"),
                ins(T, "new", &[(1, "v")]),
                patch(T, "k002", &[(1, Some("w"))]),
            ],
        )],
        &AllCommitted,
    )
    .unwrap();
    s.append(
        &[txn(3, vec![ins(T, "k000", &[(1, "back")])])],
        &AllCommitted,
    )
    .unwrap();
    // 100 - 2 deleted + 1 new + 1 re-inserted.
    assert_eq!(s.estimate_rows(T).unwrap(), 100);
    s.append(
        &[txn(4, vec![ins(T, "gone", &[(1, "v")]), del(T, "gone")])],
        &AllCommitted,
    )
    .unwrap();
    assert_eq!(s.estimate_rows(T).unwrap(), 100);
}

/// A scan over many snapshot blocks and many chunks of rows, with the delta's inserts,
/// patches and deletes falling before, between and after the snapshot's keys and on block
/// edges, against a map kept alongside, at the snapshot's seq, in the middle and at the end.
#[test]
fn scans_merge_many_blocks_with_the_delta() {
    let (_d, mut s) = setup();
    let filler = "v".repeat(120);
    let mut model: BTreeMap<String, Row> = BTreeMap::new();
    let mut states: Vec<(Seq, BTreeMap<String, Row>)> = Vec::new();
    let key = |i: u32| format!("k{i:06}");
    // 6,000 rows of ~140 bytes: about a dozen 64 KiB blocks, six chunks of rows.
    let mut events = Vec::new();
    for i in 0..6000u32 {
        let r = row(&[(1, &key(i)), (2, &filler)]);
        model.insert(key(i), r.clone());
        events.push(Event {
            table: T,
            key: key(i).into_bytes(),
            op: Op::Insert(r),
        });
    }
    let c = s.append(&[txn(1, events)], &AllCommitted).unwrap();
    let snap_seq = c[0].last_seq;
    s.snapshot(T, snap_seq, &AllCommitted).unwrap();
    states.push((snap_seq, model.clone()));

    // Transactions after the snapshot; xid 3 aborts and must leave no trace.
    let fates = FateSet::aborted([3]);
    for xid in 2..6u64 {
        let mut events = Vec::new();
        let mut next = model.clone();
        for i in (0..6000u32).filter(|i| (i + xid as u32).is_multiple_of(7)) {
            let k = key(i);
            if !next.contains_key(&k) {
                continue;
            }
            if i % 3 == 0 {
                next.remove(&k);
                events.push(del(T, &k));
            } else {
                let val = format!("p{xid}-{i}");
                let p = if i % 2 == 0 {
                    vec![(2, None), (3, Some(val.as_str()))]
                } else {
                    vec![(3, Some(val.as_str()))]
                };
                next.get_mut(&k).unwrap().apply_patch(
                    &p.iter()
                        .map(|(c, v)| (*c, v.map(|v| v.as_bytes().to_vec())))
                        .collect::<Vec<_>>(),
                );
                events.push(patch(T, &k, &p));
            }
        }
        // New keys before the first, between existing ones, and after the last.
        for k in [
            format!("a{xid}"),
            format!("k{:06}x{xid}", xid * 1000),
            format!("z{xid}"),
        ] {
            let r = row(&[(1, &k)]);
            next.insert(k.clone(), r);
            events.push(ins(T, &k, &[(1, &k)]));
        }
        let c = s.append(&[txn(xid, events)], &fates).unwrap();
        if xid != 3 {
            model = next;
        }
        states.push((c[0].last_seq, model.clone()));
    }

    for (at, want) in &states {
        let got = scan_all(&mut s, T, *at, &fates);
        let want: Vec<(String, Row)> = want.iter().map(|(k, r)| (k.clone(), r.clone())).collect();
        assert_eq!(got.len(), want.len(), "rows at seq {at}");
        assert!(got == want, "scan at seq {at} differs from the model");
        // The borrowing reader gives the same rows.
        let mut scan = s.scan_rows(T, *at).unwrap();
        let mut n = 0;
        while let Some(r) = scan.next_row(&fates) {
            let r = r.unwrap();
            assert_eq!(r.key, want[n].0.as_bytes());
            assert_eq!(r.to_row(), want[n].1);
            assert_eq!(r.get(1), want[n].1.get(1));
            n += 1;
        }
        assert_eq!(n, want.len());
    }
}

/// A segment missing from the middle of a table log (or its first one) is damage: every
/// read that needs its groups fails naming the table's log, and none returns the rows of
/// the segments that are left as if they were the whole table.
#[test]
fn a_missing_segment_is_reported_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_segments(dir.path(), 40);
    let tdir = dir.path().join("tables").join(T.to_string());
    let mut segs: Vec<_> = std::fs::read_dir(&tdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segs.sort();
    assert!(segs.len() > 4, "{} segments", segs.len());
    let is_missing = |e: Error| match e {
        Error::Corruption { detail, .. } => detail.contains("a segment is missing"),
        other => panic!("expected corruption, got {other}"),
    };
    for victim in [segs[2].clone(), segs[0].clone()] {
        let keep = std::fs::read(&victim).unwrap();
        std::fs::remove_file(&victim).unwrap();
        let mut s = Store::open(dir.path(), config.clone()).unwrap();
        assert!(is_missing(
            s.scan(T, 40, &AllCommitted).err().expect("a scan fails")
        ));
        assert!(is_missing(
            s.scan(T, 30, &AllCommitted)
                .err()
                .expect("a past scan fails")
        ));
        assert!(is_missing(
            s.get(T, b"k39", 40, &AllCommitted)
                .expect_err("a lookup fails")
        ));
        let history = s
            .table_history(T, 40, &AllCommitted)
            .and_then(|h| h.collect::<Result<Vec<_>>>());
        assert!(is_missing(history.expect_err("history fails")));
        drop(s);
        std::fs::write(&victim, keep).unwrap();
        let mut s = Store::open(dir.path(), config.clone()).unwrap();
        assert_eq!(scan_all(&mut s, T, 40, &AllCommitted).len(), 40);
    }
}

/// INSERTs whose keys rise above everything the table and the batch hold are checked with
/// one comparison each, not a lookup: every verdict must still come out as the lookups'
/// would, and a failed or aborted transaction must take its keys back.
#[test]
fn keys_inserted_in_rising_order_are_checked_like_any_other() {
    let (_d, mut s) = setup();
    s.append(&[txn(1, vec![ins(T, "m", &[(1, "m")])])], &AllCommitted)
        .unwrap();
    // Above the table: "n", "p" rise; then events on them and below them.
    s.append(
        &[
            txn(2, vec![ins(T, "n", &[(1, "n")]), ins(T, "p", &[(1, "p")])]),
            txn(3, vec![patch(T, "n", &[(1, Some("n2"))])]),
            txn(4, vec![del(T, "p"), ins(T, "p", &[(1, "p2")])]),
            txn(5, vec![ins(T, "a", &[(1, "a")]), ins(T, "q", &[(1, "q")])]),
        ],
        &AllCommitted,
    )
    .unwrap();
    let at = s.current_seq().unwrap();
    assert_eq!(
        scan_all(&mut s, T, at, &AllCommitted),
        vec![
            ("a".to_string(), row(&[(1, "a")])),
            ("m".to_string(), row(&[(1, "m")])),
            ("n".to_string(), row(&[(1, "n2")])),
            ("p".to_string(), row(&[(1, "p2")])),
            ("q".to_string(), row(&[(1, "q")])),
        ]
    );
    // A key inserted earlier in the same call, in rising order, exists for later ones.
    for dup in ["r", "s"] {
        let got = s.append(
            &[
                txn(6, vec![ins(T, "r", &[]), ins(T, "s", &[])]),
                txn(7, vec![ins(T, dup, &[])]),
            ],
            &AllCommitted,
        );
        assert!(matches!(got, Err(Error::KeyExists { key, .. }) if key == dup.as_bytes()));
    }
    // The table's largest key and keys below it go through the lookups.
    for (key, exists) in [("q", true), ("m", true), ("b", false)] {
        let got = s.append(&[txn(6, vec![ins(T, key, &[])])], &AllCommitted);
        assert_eq!(got.is_err(), exists, "{key}");
    }
    // An aborted transaction's rising keys are not live for the next ones.
    let aborted = FateSet::aborted([8]);
    s.append(
        &[
            txn(8, vec![ins(T, "x", &[(1, "lost")]), ins(T, "y", &[])]),
            txn(9, vec![ins(T, "x", &[(1, "kept")])]),
        ],
        &aborted,
    )
    .unwrap();
    let at = s.current_seq().unwrap();
    assert_eq!(
        s.get(T, b"x", at, &aborted).unwrap(),
        Some(row(&[(1, "kept")]))
    );
    assert_eq!(s.get(T, b"y", at, &aborted).unwrap(), None);
    // Above a snapshot's last key, and at it.
    s.snapshot(T, at, &aborted).unwrap();
    let mut fresh = Store::open(s.root(), cfg()).unwrap();
    assert!(matches!(
        fresh.append(&[txn(10, vec![ins(T, "x", &[])])], &aborted),
        Err(Error::KeyExists { .. })
    ));
    fresh
        .append(&[txn(10, vec![ins(T, "z", &[(1, "z")])])], &aborted)
        .unwrap();
    let at = fresh.current_seq().unwrap();
    assert_eq!(
        fresh.get(T, b"z", at, &aborted).unwrap(),
        Some(row(&[(1, "z")]))
    );
    // An event out of order moves the keys inserted in order so far into the lookups,
    // those of its own transaction included: taken back when that one is aborted, live
    // for the next ones when it commits.
    let aborted = FateSet::aborted([8, 11]);
    fresh
        .append(
            &[
                txn(
                    11,
                    vec![
                        ins(T, "za1", &[]),
                        ins(T, "za2", &[]),
                        patch(T, "za1", &[(1, Some("p"))]),
                        ins(T, "za3", &[]),
                        del(T, "za2"),
                    ],
                ),
                txn(
                    12,
                    vec![
                        ins(T, "za1", &[(1, "1")]),
                        ins(T, "za2", &[(1, "2")]),
                        ins(T, "za3", &[(1, "3")]),
                        ins(T, "zb1", &[(1, "b")]),
                        ins(T, "zb2", &[(1, "b")]),
                        patch(T, "za2", &[(1, Some("2p"))]),
                    ],
                ),
            ],
            &aborted,
        )
        .unwrap();
    for dup in ["za2", "zb1", "zb2"] {
        let got = fresh.append(
            &[
                txn(13, vec![ins(T, "zc", &[]), patch(T, "za1", &[])]),
                txn(14, vec![ins(T, dup, &[])]),
            ],
            &aborted,
        );
        assert!(matches!(got, Err(Error::KeyExists { key, .. }) if key == dup.as_bytes()));
    }
    let at = fresh.current_seq().unwrap();
    let rows = scan_all(&mut fresh, T, at, &aborted);
    let za: Vec<_> = rows.iter().filter(|r| r.0.starts_with("za")).collect();
    assert_eq!(
        za,
        vec![
            &("za1".to_string(), row(&[(1, "1")])),
            &("za2".to_string(), row(&[(1, "2p")])),
            &("za3".to_string(), row(&[(1, "3")])),
        ]
    );
}

/// Keys in runs that rise but stay below the batch's largest key (scattered keys) go
/// through the lookups, beside the first run (gathered as rising): a later event on any
/// key of the batch, whichever way it was checked, must still see it, and an aborted
/// transaction's keys must not be live for the next ones.
#[test]
fn scattered_keys_are_checked_like_any_other() {
    let (_d, mut s) = setup();
    s.append(
        &[txn(1, vec![ins(T, "k000", &[(1, "first")])])],
        &AllCommitted,
    )
    .unwrap();
    // 40 runs of 3 rising keys, each run below the one before: k39a k39b k39c k38a ...
    let key = |run: u32, n: char| format!("k{run:03}{n}");
    let runs: Vec<Txn> = (0..40u32)
        .rev()
        .map(|run| {
            let events = ['a', 'b', 'c']
                .iter()
                .map(|n| ins(T, &key(run, *n), &[(1, "v")]))
                .collect();
            txn(100 + u64::from(run), events)
        })
        .collect();
    let aborted = FateSet::aborted([7]);
    let tail = |dup: &str| {
        vec![
            // Above the first run: rising again.
            txn(
                5,
                vec![ins(T, "k900", &[(1, "x")]), ins(T, "k901", &[(1, "y")])],
            ),
            txn(
                6,
                vec![patch(T, "k001b", &[(1, Some("p"))]), del(T, "k900")],
            ),
            txn(7, vec![ins(T, "k902", &[]), del(T, "k039c")]),
            txn(
                8,
                vec![
                    ins(T, "k902", &[(1, "kept")]),
                    ins(T, "k900", &[(1, "again")]),
                ],
            ),
            txn(9, vec![ins(T, dup, &[])]),
        ]
    };
    // A key the batch inserted, gathered as rising or looked up, or a key of the table,
    // exists for a later INSERT.
    for dup in ["k039a", "k000b", "k020c", "k901", "k902", "k000"] {
        let mut batch = runs.clone();
        batch.extend(tail(dup));
        let got = s.append(&batch, &aborted);
        assert!(
            matches!(&got, Err(Error::KeyExists { key, .. }) if key == dup.as_bytes()),
            "{dup}: {got:?}"
        );
    }
    let mut batch = runs.clone();
    batch.extend(tail("k903"));
    s.append(&batch, &aborted).unwrap();
    let at = s.current_seq().unwrap();
    let rows = scan_all(&mut s, T, at, &aborted);
    assert_eq!(rows.len(), 1 + 40 * 3 + 4);
    let get = |k: &str| rows.iter().find(|r| r.0 == k).map(|r| r.1.clone());
    assert_eq!(get("k001b"), Some(row(&[(1, "p")])));
    assert_eq!(get("k039c"), Some(row(&[(1, "v")])));
    assert_eq!(get("k900"), Some(row(&[(1, "again")])));
    assert_eq!(get("k902"), Some(row(&[(1, "kept")])));
    assert_eq!(get("k903"), Some(Row(vec![])));
    // Against a snapshot: a key above its last one needs no lookup, in any order; the
    // last key and the keys below it are looked up.
    s.snapshot(T, at, &aborted).unwrap();
    let mut s = Store::open(s.root(), cfg()).unwrap();
    for (dup, exists) in [
        ("k903", true),
        ("k020b", true),
        ("k000", true),
        ("k940", false),
    ] {
        let got = s.append(
            &[
                txn(20, vec![ins(T, "k950", &[])]),
                txn(21, vec![ins(T, "k945", &[]), ins(T, dup, &[])]),
            ],
            &aborted,
        );
        assert_eq!(got.is_err(), exists, "{dup}: {got:?}");
        if exists {
            assert!(matches!(got, Err(Error::KeyExists { key, .. }) if key == dup.as_bytes()));
        }
    }
    let at = s.current_seq().unwrap();
    assert_eq!(s.get(T, b"k945", at, &aborted).unwrap(), Some(Row(vec![])));
    // A missing key stays missing: a PATCH of one fails.
    let mut batch: Vec<Txn> = (0..40u32)
        .rev()
        .map(|run| {
            txn(
                200 + u64::from(run),
                vec![
                    ins(T, &format!("m{run:03}"), &[]),
                    ins(T, &format!("m{run:03}x"), &[]),
                ],
            )
        })
        .collect();
    batch.push(txn(11, vec![patch(T, "m040", &[(1, Some("p"))])]));
    assert!(matches!(
        s.append(&batch, &aborted),
        Err(Error::KeyMissing { key, .. }) if key == b"m040"
    ));
}

/// A batch of several megabytes is written out in chunks while it is encoded: when a later
/// transaction then fails, what was written is cut again, and the next append and a
/// reopened store see exactly the groups the journal committed.
/// 400 transactions of 10 INSERTs into T (keys k-000000 .. k-003999, column 1 `value`),
/// xids from `first_xid`: a batch written in several chunks.
fn big_batch(value: &str, first_xid: u64) -> Vec<Txn> {
    (0..400u64)
        .map(|t| {
            txn(
                t + first_xid,
                (0..10)
                    .map(|e| ins(T, &format!("k-{:06}", t * 10 + e), &[(1, value)]))
                    .collect(),
            )
        })
        .collect()
}

/// A large append, written in chunks whose frames' CRCs the background thread computes,
/// rolling over to new segments between chunks and inside them: read back whole, and
/// every frame passes verification.
#[test]
fn a_large_append_over_several_segments_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        segment_size: 1 << 20,
        ..cfg()
    };
    let mut s = Store::open(dir.path(), config.clone()).unwrap();
    s.create_table(T).unwrap();
    let value = "v".repeat(1000);
    let big = big_batch(&value, 1);
    s.append(&big, &AllCommitted).unwrap();
    drop(s);
    let segments = std::fs::read_dir(dir.path().join("tables").join(T.to_string()))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".log")
        })
        .count();
    assert!(segments >= 4, "{segments} segments");
    let mut s = Store::open(dir.path(), config).unwrap();
    let at = s.current_seq().unwrap();
    assert_eq!(at, 4000);
    let rows = scan_all(&mut s, T, at, &AllCommitted);
    assert_eq!(rows.len(), 4000);
    for (i, (key, r)) in rows.iter().enumerate() {
        assert_eq!(key, &format!("k-{i:06}"));
        assert_eq!(r, &row(&[(1, &value)]));
    }
    let report = Verifier::open(dir.path())
        .unwrap()
        .verify_table(T, &AllCommitted)
        .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.frames, 400);
}

#[test]
fn a_large_batch_that_fails_late_leaves_nothing_behind() {
    let (dir, mut s) = setup();
    s.append(
        &[txn(1, vec![ins(T, "k-first", &[(1, "x")])])],
        &AllCommitted,
    )
    .unwrap();
    let log_bytes = |d: &std::path::Path| -> u64 {
        std::fs::read_dir(d.join("tables").join(T.to_string()))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| e.metadata().unwrap().len())
            .sum()
    };
    let before = log_bytes(dir.path());
    let value = "v".repeat(1000);
    let big = big_batch(&value, 2);
    let mut failing = big.clone();
    failing.push(txn(500, vec![ins(T, "k-first", &[])]));
    assert!(matches!(
        s.append(&failing, &AllCommitted),
        Err(Error::KeyExists { .. })
    ));
    assert_eq!(s.current_seq().unwrap(), 1);
    assert_eq!(log_bytes(dir.path()), before, "the written chunks are cut");
    // Failing first: an append judges its transactions after encoding the last, so its
    // chunks are written before the failure is known, and cut.
    let mut failing = vec![txn(499, vec![ins(T, "k-first", &[])])];
    failing.extend(big.iter().cloned());
    match s.append(&failing, &AllCommitted) {
        Err(Error::KeyExists { key, .. }) => assert_eq!(key, b"k-first"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.current_seq().unwrap(), 1);
    assert_eq!(log_bytes(dir.path()), before, "the written chunks are cut");
    s.append(&big, &AllCommitted).unwrap();
    s.append(&[txn(600, vec![ins(T, "k-last", &[])])], &AllCommitted)
        .unwrap();
    drop(s);
    let mut s = Store::open(dir.path(), cfg()).unwrap();
    let at = s.current_seq().unwrap();
    assert_eq!(at, 4002);
    let rows = scan_all(&mut s, T, at, &AllCommitted);
    assert_eq!(rows.len(), 4002);
    assert_eq!(rows[0], ("k-000000".to_string(), row(&[(1, &value)])));
    assert_eq!(rows[4000].0, "k-first");
    assert_eq!(rows[4001].0, "k-last");
    let report = Verifier::open(dir.path())
        .unwrap()
        .verify_table(T, &AllCommitted)
        .unwrap();
    assert!(report.ok(), "{report:?}");
}
