//! Operating the engine: per-table measurements checked against the files, the counters of
//! read work, and imported history (origins, visibility by the importing xid, reads as of
//! original times).

mod common;

use common::*;
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

/// Sizes of the files in a table's directory ending in `suffix`, measured by the file system.
fn file_sizes(d: &tempfile::TempDir, table: TableId, suffix: &str) -> Vec<u64> {
    let mut out: Vec<(String, u64)> =
        std::fs::read_dir(d.path().join("tables").join(table.to_string()))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
    out.sort();
    out.into_iter().map(|(_, l)| l).collect()
}

#[test]
fn table_stats_match_the_files_and_the_state() {
    let (d, mut s) = setup();
    // 10 rows in 4 transactions; one more transaction aborts; then a delete and a patch.
    let mut xid = 1;
    for batch in [0..3, 3..5, 5..9, 9..10] {
        let evs = batch
            .map(|i| ins(T, &format!("k{i:02}"), &[(1, "v")]))
            .collect();
        s.append(&[txn(xid, evs)], &AllCommitted).unwrap();
        xid += 1;
    }
    s.append(
        &[txn(100, vec![ins(T, "aborted", &[(1, "x")])])],
        &AllCommitted,
    )
    .unwrap();
    s.append(
        &[txn(
            xid,
            vec![del(T, "k03"), patch(T, "k04", &[(1, Some("w"))])],
        )],
        &AllCommitted,
    )
    .unwrap();
    s.append(&[txn(xid + 1, vec![ins(U, "u", &[])])], &AllCommitted)
        .unwrap();
    let fates = FateSet::aborted([100]);
    let at = s.current_seq().unwrap();
    let st = s.table_stats(T, at, &fates, None).unwrap();
    assert_eq!(
        st.events.count, 12,
        "10 inserts, a delete, a patch; the aborted insert is not counted"
    );
    assert_eq!(st.live_rows, 9);
    let logs = file_sizes(&d, T, ".log");
    assert_eq!(st.segments, logs.len() as u64);
    assert_eq!(st.segments, 1);
    assert_eq!(st.log_bytes, logs.iter().sum::<u64>());
    assert_eq!(st.snapshot, None);
    assert!(st.indexes.is_empty());
    // At an earlier seq: the first two transactions only.
    let early = s.table_stats(T, 5, &fates, None).unwrap();
    assert_eq!((early.events.count, early.live_rows), (5, 5));

    // A snapshot, an index, more changes on top of it.
    s.create_index(T, 1, IndexKind::Bytes).unwrap();
    s.snapshot(T, at, &fates).unwrap();
    s.append(
        &[txn(
            xid + 2,
            vec![
                del(T, "k00"),
                ins(T, "k50", &[(1, "n")]),
                ins(T, "k51", &[]),
            ],
        )],
        &AllCommitted,
    )
    .unwrap();
    let at2 = s.current_seq().unwrap();
    let again = s.table_stats(T, at2, &fates, Some(st.events)).unwrap();
    let fresh = s.table_stats(T, at2, &fates, None).unwrap();
    assert_eq!(
        again, fresh,
        "counting on from an earlier count gives the same answer"
    );
    assert_eq!(fresh.events.count, 15);
    assert_eq!(fresh.live_rows, 10);
    let snap = fresh.snapshot.clone().unwrap();
    assert_eq!(snap.seq, at);
    assert_eq!(vec![snap.file_bytes], file_sizes(&d, T, ".snap"));
    assert!(snap.raw_bytes > 0 && snap.compressed_bytes > 0);
    assert!(snap.compressed_bytes < snap.file_bytes);
    assert_eq!(fresh.indexes, vec![1]);
    // The state at the seq asked for, also before the snapshot (a replay).
    let before_snapshot = s.table_stats(T, 5, &fates, None).unwrap();
    assert_eq!(
        (before_snapshot.events.count, before_snapshot.live_rows),
        (5, 5)
    );
    let scanned = scan_all(&mut s, T, at2, &fates).len() as u64;
    assert_eq!(fresh.live_rows, scanned);

    // A table created again under the same id starts over.
    s.drop_table(T).unwrap();
    s.create_table(T).unwrap();
    s.append(&[txn(xid + 3, vec![ins(T, "new", &[])])], &AllCommitted)
        .unwrap();
    let at3 = s.current_seq().unwrap();
    let reborn = s.table_stats(T, at3, &fates, Some(fresh.events)).unwrap();
    assert_eq!((reborn.events.count, reborn.live_rows), (1, 1));
    assert_eq!(reborn.snapshot, None);
}

#[test]
fn read_counters_count_replays_caches_and_tails() {
    let (_d, mut s) = setup();
    let start = s.stats();
    let evs = (0..200)
        .map(|i| ins(T, &format!("k{i:03}"), &[(1, "value")]))
        .collect();
    s.append(&[txn(1, evs)], &AllCommitted).unwrap();
    s.append(
        &[txn(2, vec![patch(T, "k005", &[(1, Some("x"))])])],
        &AllCommitted,
    )
    .unwrap();
    // Every event reaches this store's state of the present from the log tail once (the
    // second append's validation read the first's, the scan the second's).
    scan_all(&mut s, T, 201, &AllCommitted);
    let st = s.stats();
    assert_eq!(st.tail_events - start.tail_events, 201);
    scan_all(&mut s, T, 201, &AllCommitted);
    assert_eq!(s.stats().tail_events, st.tail_events);
    assert_eq!(st.replays, 0);

    s.snapshot(T, 201, &AllCommitted).unwrap();
    let before = s.stats();
    // A read before the snapshot replays the log up to its seq, once; then the cache serves
    // it. The replay applies whole groups: the 200 events of the first one.
    assert_eq!(scan_all(&mut s, T, 150, &AllCommitted).len(), 150);
    let st = s.stats();
    assert_eq!(st.replays - before.replays, 1);
    assert_eq!(st.replayed_events - before.replayed_events, 200);
    assert_eq!(st.longest_replay, 200);
    scan_all(&mut s, T, 150, &AllCommitted);
    let st2 = s.stats();
    assert_eq!(st2.replays, st.replays);
    assert_eq!(st2.replay_cache_hits - st.replay_cache_hits, 1);
    // A point lookup at another past seq replays only its key's events (at the cached
    // seq, the cached replay would serve it).
    assert!(s.get(T, b"k005", 140, &AllCommitted).unwrap().is_some());
    let st3 = s.stats();
    assert_eq!(st3.replays - st2.replays, 1);
    assert_eq!(st3.replayed_events - st2.replayed_events, 1);

    // Point lookups in the snapshot: the first decompresses its block, the second finds it.
    let (h0, m0) = (st3.block_cache_hits, st3.block_cache_misses);
    assert!(s.get(T, b"k010", 201, &AllCommitted).unwrap().is_some());
    let st4 = s.stats();
    assert_eq!(
        (st4.block_cache_hits - h0, st4.block_cache_misses - m0),
        (0, 1)
    );
    assert!(s.get(T, b"k011", 201, &AllCommitted).unwrap().is_some());
    let st5 = s.stats();
    assert_eq!(
        (st5.block_cache_hits - h0, st5.block_cache_misses - m0),
        (1, 1)
    );
}

#[test]
fn appends_count_syncs_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), Config::default()).unwrap();
    s.create_table(T).unwrap();
    s.append(&[txn(1, vec![ins(T, "a", &[])])], &AllCommitted)
        .unwrap();
    let before = s.stats();
    let logs = |d: &std::path::Path| -> u64 {
        ["journal".to_string(), format!("tables/{T}")]
            .iter()
            .flat_map(|sub| std::fs::read_dir(d.join(sub)).unwrap())
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| e.metadata().unwrap().len())
            .sum()
    };
    let bytes_before = logs(dir.path());
    for x in 2..7 {
        s.append(
            &[txn(x, vec![ins(T, &format!("k{x}"), &[(1, "v")])])],
            &AllCommitted,
        )
        .unwrap();
    }
    let st = s.stats();
    assert_eq!(st.appends - before.appends, 5);
    assert_eq!(st.events - before.events, 5);
    // One sync of the table log and one of the journal per durable append.
    assert_eq!(st.fsyncs - before.fsyncs, 10);
    assert_eq!(
        st.bytes_written - before.bytes_written,
        logs(dir.path()) - bytes_before
    );
}

fn origin(xid: u64, ts: i64, role: &str) -> Origin {
    Origin {
        xid,
        commit_ts: ts,
        role: role.into(),
    }
}

#[test]
fn imported_history_keeps_its_origin_and_its_times() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), cfg()).unwrap();
    s.create_table(T).unwrap();
    s.create_table(U).unwrap();
    // Native history first: U at times 10_000 and 20_000.
    s.append(
        &[Txn {
            commit_ts: 10_000,
            ..txn(1, vec![ins(U, "u", &[])])
        }],
        &AllCommitted,
    )
    .unwrap();
    s.append(
        &[Txn {
            commit_ts: 20_000,
            ..txn(2, vec![del(U, "u")])
        }],
        &AllCommitted,
    )
    .unwrap();
    // An import into T by transaction 50 at time 30_000 of three groups that were
    // committed elsewhere at times 100, 200 and 300, in two calls.
    let imp = |events| Txn {
        xid: 50,
        commit_ts: 30_000,
        role: "importer".into(),
        events,
    };
    let c1 = s
        .append_imported(
            &[
                imp(vec![ins(T, "a", &[(1, "1")]), ins(T, "b", &[(1, "1")])]),
                imp(vec![patch(T, "a", &[(1, Some("2"))])]),
            ],
            &[origin(900, 100, "alice"), origin(901, 200, "bob")],
            &AllCommitted,
        )
        .unwrap();
    assert_eq!((c1[0].first_seq, c1[1].first_seq), (3, 5));
    assert_eq!(
        c1[1].commit_ts, 30_001,
        "the journal's own clock keeps increasing"
    );
    // Out of order, or later than the import itself: refused, nothing written.
    assert!(matches!(
        s.append_imported(
            &[imp(vec![del(T, "b")])],
            &[origin(902, 200, "carol")],
            &AllCommitted
        ),
        Err(Error::InvalidTxn(_))
    ));
    assert!(matches!(
        s.append_imported(
            &[imp(vec![del(T, "b")])],
            &[origin(902, 40_000, "carol")],
            &AllCommitted
        ),
        Err(Error::InvalidTxn(_))
    ));
    s.append_imported(
        &[imp(vec![del(T, "b")])],
        &[origin(902, 300, "carol")],
        &AllCommitted,
    )
    .unwrap();
    // A native write after the import.
    s.append(
        &[Txn {
            commit_ts: 50_000,
            ..txn(3, vec![ins(T, "c", &[])])
        }],
        &AllCommitted,
    )
    .unwrap();

    let check = |s: &mut Store| {
        let h: Vec<(Seq, i64, u64, String)> = s
            .table_history(T, 7, &AllCommitted)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.seq, e.commit_ts, e.xid, e.role)
            })
            .collect();
        assert_eq!(
            h,
            vec![
                (3, 100, 900, "alice".into()),
                (4, 100, 900, "alice".into()),
                (5, 200, 901, "bob".into()),
                (6, 300, 902, "carol".into()),
                (7, 50_000, 3, "role0".into()),
            ]
        );
        // As of an instant, T follows its original times; U and the journal their own.
        let at = |s: &mut Store, t, ts| s.seq_at_for_table(t, ts, &AllCommitted).unwrap();
        assert_eq!(at(s, T, 99), 0);
        assert_eq!(at(s, T, 100), 4);
        assert_eq!(at(s, T, 250), 5);
        assert_eq!(at(s, T, 300), 6);
        assert_eq!(at(s, T, 10_000), 6);
        assert_eq!(at(s, T, 30_001), 6);
        assert_eq!(at(s, T, 50_000), 7);
        assert_eq!(at(s, U, 100), 0);
        assert_eq!(at(s, U, 15_000), 1);
        assert_eq!(s.seq_at(250).unwrap(), 0);
        let rows = |s: &mut Store, seq| scan_all(s, T, seq, &AllCommitted);
        assert_eq!(
            {
                let q = at(s, T, 150);
                rows(s, q)
            },
            vec![
                ("a".into(), row(&[(1, "1")])),
                ("b".into(), row(&[(1, "1")]))
            ]
        );
        let q = at(s, T, 300);
        assert_eq!(rows(s, q), vec![("a".into(), row(&[(1, "2")]))]);
    };
    check(&mut s);
    // The origins live in the journal: a store opened afresh reads them back.
    drop(s);
    let mut s = Store::open(dir.path(), reader_cfg()).unwrap();
    check(&mut s);
    // An import whose transaction aborted is not read as of any time.
    let fates = FateSet::aborted([50]);
    assert_eq!(s.seq_at_for_table(T, 250, &fates).unwrap(), 0);
    assert_eq!(s.table_history(T, 7, &fates).unwrap().count(), 1);
}

/// Keeps the encoded write-ahead batches in memory, as WAL records would hold them.
#[derive(Clone, Default)]
struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl WriteAhead for Recorder {
    fn log(&mut self, ops: &[FileOp], groups: &[GroupMark]) -> Result<()> {
        let mut b = self.0.lock().unwrap();
        b.extend(fileops::encode_batches(ops, groups, 4096));
        Ok(())
    }

    fn done(&mut self) {}
}

#[test]
fn an_import_is_write_ahead_logged_like_any_append() {
    let primary = tempfile::tempdir().unwrap();
    let wal = Recorder::default();
    let mut s = Store::open_with(primary.path(), cfg(), Some(Box::new(wal.clone()))).unwrap();
    s.create_table(T).unwrap();
    let imp = |events| Txn {
        xid: 50,
        commit_ts: 30_000,
        role: "importer".into(),
        events,
    };
    let done = s
        .append_imported(
            &[imp(vec![ins(T, "a", &[(1, "1")])]), imp(vec![del(T, "a")])],
            &[origin(900, 100, "alice"), origin(901, 200, "bob")],
            &AllCommitted,
        )
        .unwrap();
    assert_eq!(done.len(), 2);
    // Replaying the records on an empty directory gives a store with the same history.
    let replica = tempfile::tempdir().unwrap();
    let mut applier = Applier::new(replica.path(), true);
    let mut stats = Stats::default();
    for b in wal.0.lock().unwrap().iter() {
        let batch = Batch::decode(b).unwrap();
        applier.apply(&batch.ops, true, &mut stats).unwrap();
    }
    let mut r = Store::open(replica.path(), reader_cfg()).unwrap();
    let history = |s: &mut Store| -> Vec<(Seq, i64, u64, String)> {
        s.table_history(T, 2, &AllCommitted)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.seq, e.commit_ts, e.xid, e.role)
            })
            .collect()
    };
    assert_eq!(
        history(&mut r),
        vec![(1, 100, 900, "alice".into()), (2, 200, 901, "bob".into())]
    );
    assert_eq!(history(&mut r), history(&mut s));
    assert_eq!(r.seq_at_for_table(T, 150, &AllCommitted).unwrap(), 1);
}
