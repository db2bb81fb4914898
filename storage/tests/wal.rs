//! The write-ahead contract: every change to the files is described before it is made, and
//! replaying the descriptions elsewhere gives the same files, byte for byte, from any
//! earlier copy of them, as often as it is replayed.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;
use driftdb_storage::*;

/// A write-ahead log kept in memory: the encoded batches, as WAL records would hold them,
/// and how many logged batches were not (yet) reported done.
#[derive(Clone, Default)]
struct Recorder {
    batches: Arc<Mutex<Vec<Vec<u8>>>>,
    logged_not_done: Arc<Mutex<usize>>,
}

impl WriteAhead for Recorder {
    fn log(&mut self, ops: &[FileOp], groups: &[GroupMark]) -> Result<()> {
        // Small records, so that big writes are split as the Postgres layer splits them.
        let mut b = self.batches.lock().unwrap();
        b.extend(fileops::encode_batches(ops, groups, 4096));
        *self.logged_not_done.lock().unwrap() += 1;
        Ok(())
    }

    fn done(&mut self) {
        *self.logged_not_done.lock().unwrap() -= 1;
    }
}

fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel == "index" || is_derived(&rel) {
                continue;
            }
            if p.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                stack.push(p);
            } else {
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The journal's index files under `root` (those of tables that exist: a dropped table's
/// groups file stays where its groups were indexed, unread), but how much is synced.
fn index_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.join("index")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if rel != "index/synced"
                && rel
                    .strip_prefix("index/tables/")
                    .is_none_or(|t| root.join("tables").join(t).is_dir())
            {
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn replay(root: &Path, batches: &[Vec<u8>]) -> Vec<GroupMark> {
    let mut applier = Applier::new(root, true);
    let mut stats = Stats::default();
    let mut groups = Vec::new();
    for b in batches {
        let batch = Batch::decode(b).unwrap();
        applier.apply(&batch.ops, true, &mut stats).unwrap();
        groups.extend(batch.groups);
    }
    groups
}

fn small_segments() -> Config {
    Config {
        segment_size: 600,
        snapshots_kept: 2,
        // Settlements in the workloads below compact the record of fates now and then.
        fates_compact_bytes: 100,
        ..cfg()
    }
}

#[test]
fn replaying_the_log_gives_the_same_files_and_the_same_reads() {
    let primary = tempfile::tempdir().unwrap();
    let rec = Recorder::default();
    let mut s = Store::open_with(
        primary.path(),
        small_segments(),
        Some(Box::new(rec.clone())),
    )
    .unwrap();
    let mut step_ends = Vec::new();
    s.create_table(1).unwrap();
    s.create_table(2).unwrap();
    for i in 0..40u64 {
        let key = format!("k{}", i % 7);
        let now = s.current_seq().unwrap();
        let exists = s.get(1, key.as_bytes(), now, &AllCommitted).unwrap();
        let ev = if exists.is_some() {
            if i % 3 == 0 {
                del(1, &key)
            } else {
                patch(1, &key, &[(2, Some(&format!("v{i}")))])
            }
        } else {
            ins(1, &key, &[(1, "a"), (2, &format!("v{i}"))])
        };
        let mut events = vec![ev];
        if i % 4 == 0 {
            events.push(ins(2, &format!("u{i}"), &[(1, &"x".repeat(100))]));
        }
        s.append(&[txn(i + 1, events)], &AllCommitted).unwrap();
        if i == 10 {
            s.create_index(1, 2, IndexKind::Bytes).unwrap();
        }
        if i % 9 == 8 {
            let at = s.current_seq().unwrap();
            s.snapshot(1, at, &AllCommitted).unwrap();
            s.snapshot(2, at, &AllCommitted).unwrap();
        }
        if i % 2 == 1 {
            // Every xid up to this step's has ended (1000, below, is still open).
            s.settle(i + 2, &FateSet::aborted([4, 12])).unwrap();
        }
        if i == 20 {
            s.create_table(3).unwrap();
            s.append(&[txn(1000, vec![ins(3, "z", &[(1, "z")])])], &AllCommitted)
                .unwrap();
        }
        if i == 30 {
            s.drop_table(3).unwrap();
            s.drop_index(1, 2).unwrap();
        }
        step_ends.push(rec.batches.lock().unwrap().len());
    }
    assert_eq!(*rec.logged_not_done.lock().unwrap(), 0);
    let batches = rec.batches.lock().unwrap().clone();
    let segments = fs::read_dir(primary.path().join("tables/2"))
        .unwrap()
        .count();
    assert!(
        segments > 3,
        "the workload rolls segments over ({segments} files)"
    );

    // From nothing: the same files, byte for byte, and the groups published in order.
    let standby = tempfile::tempdir().unwrap();
    let groups = replay(standby.path(), &batches);
    assert_eq!(files(primary.path()), files(standby.path()));

    // Redo keeps the journal's index as the appender did: replayed with an index
    // maintainer, and replayed once more over its own result (as crash recovery replays
    // records the files already hold, tables' creations among them, which replace their
    // directories), the index files are the primary's, byte for byte.
    let maintained = tempfile::tempdir().unwrap();
    for _pass in 0..2 {
        let mut applier = Applier::new(maintained.path(), true);
        let mut m = IndexMaintainer::start(maintained.path(), 600).unwrap();
        for b in &batches {
            let batch = Batch::decode(b).unwrap();
            applier
                .apply(&batch.ops, true, &mut Stats::default())
                .unwrap();
            if !batch.groups.is_empty() {
                m.catch_up().unwrap();
            }
        }
        assert_eq!(files(primary.path()), files(maintained.path()));
        assert_eq!(index_files(primary.path()), index_files(maintained.path()));
        assert!(index_files(primary.path()).len() > 3);
    }
    assert_eq!(
        groups.iter().map(|g| g.last_seq).max(),
        Some(s.current_seq().unwrap())
    );
    assert!(groups.windows(2).all(|w| w[0].last_seq < w[1].first_seq));

    // Again over the result (a replay from an earlier checkpoint): nothing changes.
    replay(standby.path(), &batches);
    assert_eq!(files(primary.path()), files(standby.path()));

    // From a copy taken in the middle of the workload, replaying from an earlier point
    // (a base backup's start): the same files.
    let mid = tempfile::tempdir().unwrap();
    replay(mid.path(), &batches[..step_ends[15]]);
    replay(mid.path(), &batches[step_ends[5]..]);
    assert_eq!(files(primary.path()), files(mid.path()));

    // And a store opened on the replayed files reads what the primary reads, at every seq.
    let reader = Config {
        mode: OpenMode::Reader,
        ..small_segments()
    };
    let mut r = Store::open(standby.path(), reader).unwrap();
    // The record of fates was compacted (20 settlements of some 14 bytes each would be
    // 280), and the standby's reads it as the primary's.
    let fates_len = fs::metadata(primary.path().join("fates.log"))
        .unwrap()
        .len();
    assert!(fates_len <= 132, "fates.log holds {fates_len} bytes");
    assert_eq!(r.settled().unwrap(), s.settled().unwrap());
    assert_eq!(s.settled().unwrap().below, 41);
    assert_eq!(
        s.settled()
            .unwrap()
            .aborted
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        [4, 12]
    );
    let last = s.current_seq().unwrap();
    for at in 0..=last {
        for t in [1, 2] {
            assert_eq!(
                scan_all(&mut r, t, at, &AllCommitted),
                scan_all(&mut s, t, at, &AllCommitted),
                "table {t} at {at}"
            );
        }
    }
}

#[test]
fn a_replay_cut_anywhere_recovers_to_a_whole_group() {
    let primary = tempfile::tempdir().unwrap();
    let rec = Recorder::default();
    let mut s = Store::open_with(
        primary.path(),
        small_segments(),
        Some(Box::new(rec.clone())),
    )
    .unwrap();
    s.create_table(1).unwrap();
    let mut committed = Vec::new();
    for i in 0..12u64 {
        let big = "y".repeat(300 + i as usize * 50);
        let c = s
            .append(
                &[txn(i + 1, vec![ins(1, &format!("k{i}"), &[(1, &big)])])],
                &AllCommitted,
            )
            .unwrap();
        committed.push((rec.batches.lock().unwrap().len(), c[0].last_seq));
    }
    let batches = rec.batches.lock().unwrap().clone();
    // Replay every prefix of the log (a crash in the middle of a group's records), then
    // open as a writer that logs its own recovery: the store holds exactly the groups
    // whose every record was replayed, and the recovery's cuts replay too.
    for cut in 0..=batches.len() {
        let dir = tempfile::tempdir().unwrap();
        replay(dir.path(), &batches[..cut]);
        let expect = committed
            .iter()
            .filter(|(end, _)| *end <= cut)
            .map(|(_, seq)| *seq)
            .max()
            .unwrap_or(0);
        let rec2 = Recorder::default();
        let mut w = Store::open_with(dir.path(), small_segments(), Some(Box::new(rec2.clone())));
        let w = match &mut w {
            Ok(w) => w,
            // Before the table's creation was whole there is no table yet.
            Err(e) => panic!("cut {cut}: {e}"),
        };
        assert_eq!(w.current_seq().unwrap(), expect, "cut {cut}");
        let rows = if expect == 0 {
            Vec::new()
        } else {
            scan_all(w, 1, expect, &AllCommitted)
        };
        assert_eq!(rows.len() as u64, expect, "cut {cut}");
        // The recovered store takes the next append, and a copy that replays the recovery's
        // own records ends identical.
        let next = w
            .append(&[txn(99, vec![ins(1, "next", &[(1, "n")])])], &AllCommitted)
            .map(|c| c[0].last_seq);
        if w.table_ids().unwrap().contains(&1) {
            assert_eq!(next.unwrap(), expect + 1, "cut {cut}");
        }
        let copy = tempfile::tempdir().unwrap();
        replay(copy.path(), &batches[..cut]);
        replay(copy.path(), &rec2.batches.lock().unwrap());
        assert_eq!(files(dir.path()), files(copy.path()), "cut {cut}");
    }
}

/// An append whose syncs are deferred: written and logged when it returns, its batch still
/// open (the syncs pending) until `finish_append`, which any other change to the files
/// calls first; the reads see it at once and the replay gives the same files. Without a
/// write-ahead log nothing is deferred.
#[test]
fn deferred_syncs_keep_the_batch_open_until_finished() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::default();
    let config = Config {
        durability: Durability::Sync,
        ..Config::default()
    };
    let mut s = Store::open_with(dir.path(), config.clone(), Some(Box::new(rec.clone()))).unwrap();
    s.create_table(7).unwrap();
    assert_eq!(*rec.logged_not_done.lock().unwrap(), 0);
    let syncs = |s: &Store| s.stats().fsyncs;
    let before = syncs(&s);
    s.append_unsynced(&[txn(1, vec![ins(7, "a", &[(1, "x")])])], &AllCommitted)
        .unwrap();
    assert_eq!(
        *rec.logged_not_done.lock().unwrap(),
        1,
        "open until finished"
    );
    assert_eq!(syncs(&s), before, "no sync before finish_append");
    assert_eq!(scan_all(&mut s, 7, 1, &AllCommitted).len(), 1);
    s.finish_append().unwrap();
    assert_eq!(*rec.logged_not_done.lock().unwrap(), 0);
    assert!(syncs(&s) >= before + 2, "table log and journal synced");
    s.finish_append().unwrap();

    // Another change finishes a pending append first.
    s.append_unsynced(&[txn(2, vec![ins(7, "b", &[(1, "y")])])], &AllCommitted)
        .unwrap();
    s.append(&[txn(3, vec![ins(7, "c", &[(1, "z")])])], &AllCommitted)
        .unwrap();
    assert_eq!(*rec.logged_not_done.lock().unwrap(), 0);
    let replica = tempfile::tempdir().unwrap();
    replay(replica.path(), &rec.batches.lock().unwrap());
    assert_eq!(files(replica.path()), files(dir.path()));

    // Without a write-ahead log the syncs are not deferred.
    let plain = tempfile::tempdir().unwrap();
    let mut p = Store::open(plain.path(), config).unwrap();
    p.create_table(7).unwrap();
    let before = syncs(&p);
    p.append_unsynced(&[txn(1, vec![ins(7, "a", &[(1, "x")])])], &AllCommitted)
        .unwrap();
    assert!(syncs(&p) >= before + 2);
}

/// An imported group's mark names the one table it writes to, so that redo holds up only
/// that table's readers while the import's transaction is open; a commit's marks name none.
#[test]
fn imported_groups_name_their_table_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::default();
    let mut s = Store::open_with(dir.path(), cfg(), Some(Box::new(rec.clone()))).unwrap();
    s.create_table(1).unwrap();
    s.create_table(2).unwrap();
    s.append(
        &[txn(
            7,
            vec![ins(1, "a", &[(1, "x")]), ins(2, "b", &[(1, "y")])],
        )],
        &AllCommitted,
    )
    .unwrap();
    let origin = |xid: u64, commit_ts: i64| Origin {
        xid,
        commit_ts,
        role: "alice".into(),
    };
    let imp = |events| Txn {
        xid: 50,
        commit_ts: 30_000,
        role: "importer".into(),
        events,
    };
    s.append_imported(
        &[
            imp(vec![ins(2, "c", &[(1, "1")]), ins(2, "d", &[(1, "1")])]),
            imp(vec![patch(2, "c", &[(1, Some("2"))])]),
        ],
        &[origin(900, 100), origin(901, 200)],
        &AllCommitted,
    )
    .unwrap();
    let replica = tempfile::tempdir().unwrap();
    let groups = replay(replica.path(), &rec.batches.lock().unwrap());
    let marks: Vec<(u64, u64, u64, TableId)> = groups
        .iter()
        .map(|g| (g.first_seq, g.last_seq, g.xid, g.table))
        .collect();
    assert_eq!(marks, [(1, 2, 7, 0), (3, 4, 50, 2), (5, 5, 50, 2)]);
}

/// Fates that count the calls made to them and panic at call `panic_at` (as a Postgres
/// ERROR raised in a commit log lookup unwinds through the engine in the extension).
struct PanicAt {
    calls: std::cell::Cell<usize>,
    panic_at: usize,
}

impl Fates for PanicAt {
    fn fate(&self, xid: u64) -> Fate {
        let n = self.calls.get();
        self.calls.set(n + 1);
        assert!(n != self.panic_at, "injected failure at fates call {n}");
        if xid == 66 {
            Fate::InProgress
        } else {
            Fate::Committed
        }
    }
}

/// A store with history whose groups are not settled (so an append asks the fates of
/// earlier transactions), one of them in progress.
fn unsettled_store(dir: &Path, rec: &Recorder) -> Store {
    let mut s = Store::open_with(dir, cfg(), Some(Box::new(rec.clone()))).unwrap();
    s.create_table(7).unwrap();
    for (xid, key) in [(60, "a"), (66, "b"), (61, "c")] {
        s.append(&[txn(xid, vec![ins(7, key, &[(1, "x")])])], &AllCommitted)
            .unwrap();
    }
    s
}

/// An append that a panic in a `Fates` callback unwinds, at each of the calls it makes,
/// poisons the store (#22: the deferred-sync flag stayed set, so the next plain append
/// left its write-ahead batch open, in Postgres a critical section in which an ordinary
/// error became a PANIC). The poisoned store refuses further appends; the files are as
/// before the failed append, and a store reopened on them appends and closes its batches.
#[test]
fn an_append_unwound_at_any_fates_call_poisons_the_store_and_changes_no_file() {
    // How many fates calls the append makes.
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::default();
    let mut s = unsettled_store(dir.path(), &rec);
    let counting = PanicAt {
        calls: std::cell::Cell::new(0),
        panic_at: usize::MAX,
    };
    let batch = || {
        vec![txn(
            70,
            vec![
                ins(7, "d", &[(1, "y")]),
                patch(7, "a", &[(1, Some("z"))]),
                del(7, "c"),
            ],
        )]
    };
    s.append_unsynced(&batch(), &counting).unwrap();
    s.finish_append().unwrap();
    let calls = counting.calls.get();
    assert!(calls >= 2, "the append asks fates {calls} times");

    for panic_at in 0..calls {
        let dir = tempfile::tempdir().unwrap();
        let rec = Recorder::default();
        let mut s = unsettled_store(dir.path(), &rec);
        let before = files(dir.path());
        let rows = scan_all(&mut s, 7, 3, &AllCommitted);
        let failing = PanicAt {
            calls: std::cell::Cell::new(0),
            panic_at,
        };
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            s.append_unsynced(&batch(), &failing)
        }));
        assert!(unwound.is_err(), "call {panic_at}: no panic");
        assert_eq!(*rec.logged_not_done.lock().unwrap(), 0, "call {panic_at}");
        // Poisoned: the next append is refused, and nothing is left open.
        let next = s.append(&[txn(71, vec![ins(7, "e", &[(1, "w")])])], &AllCommitted);
        assert!(
            matches!(next, Err(Error::Broken(_))),
            "call {panic_at}: {next:?}"
        );
        assert_eq!(*rec.logged_not_done.lock().unwrap(), 0, "call {panic_at}");
        assert_eq!(files(dir.path()), before, "call {panic_at}");
        drop(s);
        // Reopened: the same rows; appends close their write-ahead batches again.
        let mut s = Store::open_with(dir.path(), cfg(), Some(Box::new(rec.clone()))).unwrap();
        assert_eq!(
            scan_all(&mut s, 7, 3, &AllCommitted),
            rows,
            "call {panic_at}"
        );
        s.append(&[txn(72, vec![ins(7, "f", &[(1, "v")])])], &AllCommitted)
            .unwrap();
        assert_eq!(*rec.logged_not_done.lock().unwrap(), 0, "call {panic_at}");
        s.append_unsynced(&batch(), &AllCommitted).unwrap();
        s.finish_append().unwrap();
        assert_eq!(*rec.logged_not_done.lock().unwrap(), 0, "call {panic_at}");
    }
}

/// A guarded append (a commit while the sync rounds guard durability) logs no sync and asks
/// for no flush; if a crash loses its records but the page cache kept its frames, the
/// recovering open cuts the journal back to the last round's mark, so that the group is gone
/// (its xid may be handed out again); if its records survive, a replay from a copy cut back
/// to the mark gives the same files.
#[test]
fn guarded_appends_sync_nothing_and_recovery_cuts_groups_whose_records_were_lost() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::default();
    let config = Config {
        durability: Durability::Sync,
        ..small_segments()
    };
    let mut s = Store::open_with(dir.path(), config.clone(), Some(Box::new(rec.clone()))).unwrap();
    s.create_table(7).unwrap();
    s.append(&[txn(1, vec![ins(7, "a", &[(1, "x")])])], &AllCommitted)
        .unwrap();
    // A sync round: the journal's end recorded.
    syncmark::write(dir.path(), syncmark::journal_end(dir.path()).unwrap()).unwrap();
    let at_mark = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), at_mark.path());
    let logged = rec.batches.lock().unwrap().len();
    let fsyncs = s.stats().fsyncs;
    // Enough groups for the journal and the table log to start new segments.
    for xid in 2..40u64 {
        let key = format!("k{xid:03}");
        s.append_guarded(
            &[txn(
                xid,
                vec![ins(7, &key, &[(1, "a value to fill segments")])],
            )],
            &AllCommitted,
        )
        .unwrap();
    }
    assert_eq!(s.stats().fsyncs, fsyncs, "a guarded append syncs nothing");
    assert_eq!(
        *rec.logged_not_done.lock().unwrap(),
        0,
        "its batch is closed"
    );
    let batches: Vec<Vec<u8>> = rec.batches.lock().unwrap()[logged..].to_vec();
    for b in &batches {
        let batch = Batch::decode(b).unwrap();
        assert!(
            !batch
                .ops
                .iter()
                .any(|op| matches!(op, FileOp::Sync { .. } | FileOp::SyncDir { .. })),
            "no sync is logged either"
        );
    }
    assert!(
        fs::read_dir(dir.path().join("journal")).unwrap().count() > 1,
        "the journal started a new segment"
    );
    let now = s.current_seq().unwrap();
    drop(s);

    // The records survived: cut back to the mark, then replayed (rm_startup, then redo).
    let survived = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), survived.path());
    assert!(syncmark::settle(survived.path()).unwrap() > 0);
    replay(survived.path(), &batches);
    let mut primary = files(dir.path());
    assert!(primary.remove(syncmark::SYNC_MARK_FILE).is_some());
    assert!(
        files(survived.path()) == primary,
        "the replay gives the primary's files"
    );

    // The records were lost, the frames not: the recovering open cuts them.
    let lost = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), lost.path());
    // What the first open after the start does (the extension settles the mark once).
    assert!(syncmark::settle(lost.path()).unwrap() > 0);
    let mut r = Store::open(lost.path(), config.clone()).unwrap();
    assert_eq!(
        syncmark::read(lost.path()).unwrap(),
        None,
        "the mark is used up"
    );
    assert_eq!(r.current_seq().unwrap(), 1);
    assert!(r.current_seq().unwrap() < now);
    // The lost group's xid, handed out again, commits something else.
    r.append(&[txn(2, vec![ins(7, "b", &[(1, "y")])])], &AllCommitted)
        .unwrap();
    let seq = r.current_seq().unwrap();
    let rows = scan_all(&mut r, 7, seq, &AllCommitted);
    let keys: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, vec!["a", "b"]);
    drop(r);
    // Those files are the ones the mark's copy gives with that commit.
    syncmark::settle(at_mark.path()).unwrap();
    let mut m = Store::open(at_mark.path(), config).unwrap();
    m.append(&[txn(2, vec![ins(7, "b", &[(1, "y")])])], &AllCommitted)
        .unwrap();
    drop(m);
    assert!(
        files(lost.path()) == files(at_mark.path()),
        "as if the lost groups never were"
    );
}
