//! The store's ledger (issue #21): one leaf per committed group in seq order, computed from
//! the log; grown incrementally, equal to one built at once and to a reference computed here
//! from the files with the public leaf encoding; proofs that verify; `verify_digest`
//! passing on an untampered store and naming exactly what changed when the log was edited
//! behind the store's back (with valid CRCs), which the existing `verify` does not see.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use common::*;
use driftdb_storage::format::{
    begin_frame, encode_table_frame, finish_frame, read_frame, FrameRead, JournalRecord,
    SegmentHeader, TableFrame, KIND_JOURNAL, KIND_TABLE, SEGMENT_HEADER_LEN,
};
use driftdb_storage::ledger::files::{LedgerFiles, GROUPS_FILE, INDEX_FILE, LEDGER_DIR, TREE_FILE};
use driftdb_storage::ledger::leaf::{leaf_data, Leaf, LeafOp};
use driftdb_storage::ledger::{leaf_hash, value_commitment, Hash, RootBuilder};
use driftdb_storage::*;

const A: TableId = 1;
const B: TableId = 2;
const C: TableId = 3;
const IMP: TableId = 4;

/// Transactions aborted, and the one left undecided.
fn aborted(i: u64) -> bool {
    i % 7 == 3
}

fn xid_of(i: u64) -> u64 {
    1000 + i
}

/// Group `i` of the history built here: over tables A, B and C, some with many events,
/// values NULL and empty among them.
fn group(i: u64) -> Txn {
    let mut events = Vec::new();
    if i == 1 {
        for k in 0..10 {
            events.push(ins(A, &format!("base-{k}"), &[(1, "b"), (2, "")]));
        }
    }
    let mut cols = vec![(1u16, Some(format!("secret-{i:03}")))];
    cols.push((2, (!i.is_multiple_of(4)).then(|| format!("w{i}"))));
    events.push(Event {
        table: A,
        key: format!("a{i:04}").into_bytes(),
        op: Op::Insert(Row(cols
            .into_iter()
            .map(|(c, v)| (c, v.map(String::into_bytes)))
            .collect())),
    });
    if i.is_multiple_of(3) && !aborted(i) {
        events.push(ins(B, &format!("b{i}"), &[(7, "x")]));
        events.push(patch(
            A,
            &format!("base-{}", i % 10),
            &[(1, Some(&format!("p{i}"))), (2, None)],
        ));
    }
    if i.is_multiple_of(4) {
        events.push(ins(B, &format!("d{i}"), &[(1, "gone soon")]));
        events.push(del(B, &format!("d{i}")));
    }
    if i.is_multiple_of(5) {
        for k in 0..60 {
            events.push(ins(
                C,
                &format!("c{i}-{k:02}"),
                &[(1, &"z".repeat(100)), (9, "q")],
            ));
        }
    }
    txn(xid_of(i), events)
}

fn fates_until(undecided: Option<u64>) -> FateSet {
    let mut f = FateSet::aborted((1..200).filter(|i| aborted(*i)).map(xid_of));
    if let Some(i) = undecided {
        f.in_progress.insert(xid_of(i));
    }
    f
}

fn open(root: &Path) -> Store {
    Store::open(root, cfg()).unwrap()
}

fn open_small(root: &Path) -> Store {
    Store::open(
        root,
        Config {
            segment_size: 300,
            ..cfg()
        },
    )
    .unwrap()
}

/// Appends groups `range` one transaction at a time.
fn append_groups(s: &mut Store, range: std::ops::RangeInclusive<u64>, fates: &dyn Fates) {
    for i in range {
        s.append(&[group(i)], fates).unwrap();
    }
}

/// Three imported groups into IMP, under importing transaction 5000.
fn import(s: &mut Store, fates: &dyn Fates) {
    let txns: Vec<Txn> = (0..3)
        .map(|k| Txn {
            xid: 5000,
            commit_ts: 5_000_000 + k,
            role: "importer".into(),
            events: vec![ins(IMP, &format!("imp{k}"), &[(1, &format!("old{k}"))])],
        })
        .collect();
    let origins: Vec<Origin> = (0..3)
        .map(|k| Origin {
            xid: 70 + k as u64,
            commit_ts: 1000 + k,
            role: "exporter".into(),
        })
        .collect();
    s.append_imported(&txns, &origins, fates).unwrap();
}

fn create_tables(s: &mut Store) {
    for t in [A, B, C, IMP] {
        s.create_table(t).unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// The log as files: a reference leaf computation, and tampering.

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    out.sort();
    out
}

/// Every frame payload of a log, segment after segment.
fn payloads(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for seg in segments(dir) {
        let bytes = std::fs::read(&seg).unwrap();
        let mut at = SEGMENT_HEADER_LEN;
        while let FrameRead::Frame { payload, next } = read_frame(&bytes, at) {
            out.push(payload.to_vec());
            at = next;
        }
    }
    out
}

fn table_dir(root: &Path, t: TableId) -> PathBuf {
    root.join("tables").join(t.to_string())
}

/// The journal and every table log, decoded.
struct Logs {
    journal: Vec<JournalRecord>,
    tables: BTreeMap<TableId, Vec<TableFrame>>,
}

fn read_logs(root: &Path) -> Logs {
    let journal = payloads(&root.join("journal"))
        .iter()
        .map(|p| JournalRecord::decode(p).unwrap())
        .collect();
    let tables = [A, B, C, IMP]
        .into_iter()
        .map(|t| {
            let frames = payloads(&table_dir(root, t))
                .iter()
                .map(|p| TableFrame::decode(p).unwrap())
                .collect();
            (t, frames)
        })
        .collect();
    Logs { journal, tables }
}

/// The leaves of the log: the leaf data of each committed group in seq order, up to the
/// first undecided one, from the files alone with the public leaf encoding.
fn reference_leaves(root: &Path, fates: &dyn Fates) -> Vec<(Seq, Vec<u8>)> {
    let logs = read_logs(root);
    let mut out = Vec::new();
    for rec in &logs.journal {
        match fates.fate(rec.xid) {
            Fate::Aborted => continue,
            Fate::InProgress => break,
            Fate::Committed => {}
        }
        let frames: Vec<(TableId, &TableFrame)> = rec
            .tables
            .iter()
            .map(|t| {
                let f = logs.tables[t]
                    .iter()
                    .find(|f| f.group_seq == rec.first_seq)
                    .unwrap();
                (*t, f)
            })
            .collect();
        out.push((rec.first_seq, leaf_data(rec, &frames).unwrap()));
    }
    out
}

fn root_of(leaves: &[(Seq, Vec<u8>)]) -> Hash {
    let mut b = RootBuilder::new();
    for (_, d) in leaves {
        b.push(&leaf_hash(d));
    }
    b.root()
}

/// Writes a segment: its header and `payloads` as frames.
fn write_segment(path: &Path, header: SegmentHeader, payloads: &[Vec<u8>]) {
    let mut bytes = header.encode().to_vec();
    for p in payloads {
        let start = begin_frame(&mut bytes);
        bytes.extend_from_slice(p);
        finish_frame(&mut bytes, start);
    }
    std::fs::write(path, bytes).unwrap();
}

/// Rewrites one frame of a segment: `edit` gets each payload in turn and returns the new
/// payload of the frame to change; the segment is written back with every frame's length
/// and CRC computed as format.rs lays them out. Returns the frame's offset.
fn rewrite_frame(path: &Path, mut edit: impl FnMut(&[u8]) -> Option<Vec<u8>>) -> usize {
    let bytes = std::fs::read(path).unwrap();
    let header = SegmentHeader::decode(&bytes).unwrap();
    let mut frames = Vec::new();
    let mut changed = None;
    let mut at = SEGMENT_HEADER_LEN;
    while let FrameRead::Frame { payload, next } = read_frame(&bytes, at) {
        match edit(payload) {
            Some(p) if changed.is_none() => {
                changed = Some(at);
                frames.push(p);
            }
            _ => frames.push(payload.to_vec()),
        }
        at = next;
    }
    assert_eq!(at, bytes.len(), "a whole segment");
    write_segment(path, header, &frames);
    changed.expect("a frame to rewrite")
}

/// Replaces `from` by `to` (as long) in the first frame of a log holding it.
fn edit_bytes(dir: &Path, from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    for seg in segments(dir) {
        let bytes = std::fs::read(&seg).unwrap();
        if bytes.windows(from.len()).any(|w| w == from) {
            rewrite_frame(&seg, |p| {
                let i = p.windows(from.len()).position(|w| w == from)?;
                let mut p = p.to_vec();
                p[i..i + to.len()].copy_from_slice(to);
                Some(p)
            });
            return;
        }
    }
    panic!("no frame holds {from:?}");
}

/// Writes `logs` back as the store's log (one segment per log), its groups renumbered to
/// be contiguous from seq 1 in their journal order, each group's frames following it.
fn write_logs_renumbered(root: &Path, mut logs: Logs) {
    let mut next = 1;
    let mut moved: HashMap<Seq, Seq> = HashMap::new();
    for rec in &mut logs.journal {
        moved.insert(rec.first_seq, next);
        rec.first_seq = next;
        next += rec.count;
    }
    let jdir = root.join("journal");
    for seg in segments(&jdir) {
        std::fs::remove_file(seg).unwrap();
    }
    let payloads: Vec<Vec<u8>> = logs
        .journal
        .iter()
        .map(|r| {
            let mut p = Vec::new();
            r.encode(&mut p);
            p
        })
        .collect();
    write_segment(
        &jdir.join(format!("{:020}.log", 1)),
        SegmentHeader {
            kind: KIND_JOURNAL,
            table: 0,
            first_seq: 1,
        },
        &payloads,
    );
    for (t, frames) in logs.tables {
        let dir = table_dir(root, t);
        for seg in segments(&dir) {
            std::fs::remove_file(seg).unwrap();
        }
        let mut frames: Vec<TableFrame> = frames
            .into_iter()
            .filter_map(|mut f| {
                let to = *moved.get(&f.group_seq)?;
                for e in &mut f.events {
                    e.0 = e.0 - f.group_seq + to;
                }
                f.group_seq = to;
                Some(f)
            })
            .collect();
        frames.sort_by_key(|f| f.group_seq);
        let Some(first) = frames.first().map(|f| f.group_seq) else {
            continue;
        };
        let payloads: Vec<Vec<u8>> = frames
            .iter()
            .map(|f| {
                let mut p = Vec::new();
                encode_table_frame(
                    &mut p,
                    f.group_seq,
                    f.xid,
                    f.events.len(),
                    f.events.iter().map(|(s, k, o)| (*s, k.as_slice(), o)),
                    usize::MAX,
                );
                p
            })
            .collect();
        write_segment(
            &dir.join(format!("{first:020}.log")),
            SegmentHeader {
                kind: KIND_TABLE,
                table: t,
                first_seq: first,
            },
            &payloads,
        );
    }
}

fn verify_all(root: &Path, fates: &dyn Fates) {
    let mut v = Verifier::open(root).unwrap();
    assert!(v.journal().ok(), "{:?}", v.journal());
    for t in [A, B, C, IMP] {
        let r = v.verify_table(t, fates).unwrap();
        assert!(r.ok(), "table {t}: {r:?}");
    }
}

/// A store of 30 groups (the aborted among them), three imported ones, and 5 more, its
/// ledger extended over all of them; the digest.
fn built(root: &Path) -> (Store, LedgerDigest) {
    let fates = fates_until(None);
    let mut s = open(root);
    create_tables(&mut s);
    append_groups(&mut s, 1..=30, &fates);
    import(&mut s, &fates);
    append_groups(&mut s, 31..=35, &fates);
    let seq = s.current_seq().unwrap();
    let d = s.extend_ledger(seq, &fates).unwrap();
    (s, d)
}

/// Extends the ledger over every group appended.
fn extend_all(s: &mut Store, fates: &dyn Fates) -> LedgerDigest {
    let seq = s.current_seq().unwrap();
    s.extend_ledger(seq, fates).unwrap()
}

/// The leaf index of the group of transaction `i` in [`built`]'s store.
fn leaf_of_group(s: &mut Store, first_seq: Seq) -> u64 {
    s.leaf_of_seq(first_seq).unwrap().unwrap()
}

/// First seqs of the groups of [`built`]'s store, by transaction number.
fn first_seqs(root: &Path) -> HashMap<u64, Seq> {
    read_logs(root)
        .journal
        .iter()
        .filter(|r| r.origin.is_none())
        .map(|r| (r.xid - 1000, r.first_seq))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Leaves, growth and proofs

#[test]
fn leaves_are_the_committed_groups_in_seq_order_up_to_an_undecided_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let undecided = fates_until(Some(20));
    let mut s = open(&root);
    create_tables(&mut s);
    append_groups(&mut s, 1..=19, &undecided);
    import(&mut s, &undecided);
    append_groups(&mut s, 20..=25, &undecided);
    let end = s.current_seq().unwrap();
    assert_eq!(s.ledger_digest().unwrap().tree_size, 0);
    assert_eq!(s.ledger_digest().unwrap().root, ledger::EMPTY_ROOT);

    // Group 20 is undecided: the ledger stops before it.
    let d1 = s.extend_ledger(end, &undecided).unwrap();
    let want = reference_leaves(&root, &undecided);
    let committed_before_20 = (1..20).filter(|i| !aborted(*i)).count() as u64 + 3;
    assert_eq!(want.len() as u64, committed_before_20);
    assert_eq!(d1.tree_size, committed_before_20);
    assert_eq!(d1.root, root_of(&want));
    let seqs = first_seqs(&root);
    let last = want.last().unwrap();
    assert_eq!(d1.last_seq, seqs[&20] - 1);
    assert_eq!(Leaf::decode(&last.1).unwrap().commit_ts, d1.commit_time);
    assert_eq!(s.ledger_digest().unwrap(), d1);
    // Extending again changes nothing while it is undecided.
    assert_eq!(s.extend_ledger(end, &undecided).unwrap(), d1);

    // Every leaf is its group's, found by seq both ways; aborted and later groups are not.
    for (j, (first, data)) in want.iter().enumerate() {
        assert_eq!(s.leaf_of_seq(*first).unwrap(), Some(j as u64));
        assert_eq!(s.leaf_first_seq(j as u64).unwrap(), *first);
        let l = Leaf::decode(data).unwrap();
        assert_eq!(s.leaf_of_seq(first + l.count - 1).unwrap(), Some(j as u64));
        assert_eq!(s.leaf_data(*first).unwrap(), *data);
    }
    for i in (1..=25).filter(|i| aborted(*i) || *i >= 20) {
        assert_eq!(s.leaf_of_seq(seqs[&i]).unwrap(), None, "group {i}");
        // Its leaf data is still what it would be.
        let l = Leaf::decode(&s.leaf_data(seqs[&i]).unwrap()).unwrap();
        assert_eq!((l.first_seq, l.xid), (seqs[&i], xid_of(i)));
    }
    assert_eq!(s.leaf_of_seq(end + 1).unwrap(), None);

    // Once decided, the ledger goes on from there.
    let fates = fates_until(None);
    let d2 = s.extend_ledger(end, &fates).unwrap();
    let want2 = reference_leaves(&root, &fates);
    assert_eq!(want2[..want.len()], want[..]);
    assert_eq!(d2.tree_size, want2.len() as u64);
    assert_eq!(d2.root, root_of(&want2));
    assert_eq!(d2.last_seq, end);

    // Leaves hold what the groups did: imported groups their origin, values committed to.
    let imported: Vec<Leaf> = want2
        .iter()
        .map(|(_, d)| Leaf::decode(d).unwrap())
        .filter(|l| l.origin.is_some())
        .collect();
    assert_eq!(imported.len(), 3);
    for (k, l) in imported.iter().enumerate() {
        let o = l.origin.as_ref().unwrap();
        assert_eq!(
            (o.xid, o.commit_ts, o.role.as_str()),
            (70 + k as u64, 1000 + k as i64, "exporter")
        );
        assert_eq!((l.xid, l.role.as_str()), (5000, "importer"));
        assert_eq!(l.tables[0].table, IMP);
        assert_eq!(
            l.commitment(IMP, l.first_seq, 1),
            Some(Some(value_commitment(format!("old{k}").as_bytes())))
        );
    }
    let g4 = Leaf::decode(&s.leaf_data(seqs[&4]).unwrap()).unwrap();
    assert_eq!(g4.xid, xid_of(4));
    assert_eq!(
        g4.tables.iter().map(|t| t.table).collect::<Vec<_>>(),
        vec![A, B]
    );
    let a = &g4.tables[0].events[0];
    assert_eq!(a.key, b"a0004");
    assert_eq!(
        a.op,
        LeafOp::Insert(vec![(1, Some(value_commitment(b"secret-004"))), (2, None)])
    );
    assert_eq!(g4.tables[1].events[1].op, LeafOp::SoftDelete);
    // The values themselves are not in the leaf.
    assert!(!s
        .leaf_data(seqs[&4])
        .unwrap()
        .windows(10)
        .any(|w| w == b"secret-004"));

    // Inclusion proofs of every leaf, in the current tree and in the older one.
    for (j, (first, data)) in want2.iter().enumerate() {
        let (got, p) = s.inclusion_proof(*first).unwrap();
        assert_eq!(&got, data);
        assert_eq!(p.leaf_index, j as u64);
        p.verify_digest(&leaf_hash(data), &d2).unwrap();
        if (j as u64) < d1.tree_size {
            let (got, p) = s.inclusion_proof_at(*first, d1.tree_size).unwrap();
            assert_eq!(&got, data);
            p.verify_digest(&leaf_hash(data), &d1).unwrap();
        } else {
            assert!(s.inclusion_proof_at(*first, d1.tree_size).is_err());
        }
    }
    assert!(s.inclusion_proof(seqs[&3]).is_err(), "aborted");
    s.consistency_proof(d1.tree_size, d2.tree_size)
        .unwrap()
        .verify_digests(&d1, &d2)
        .unwrap();
    assert!(s.consistency_proof(1, d2.tree_size + 1).is_err());

    // Reopened, the same ledger.
    drop(s);
    let mut s = open(&root);
    assert_eq!(s.ledger_digest().unwrap(), d2);
    assert_eq!(s.extend_ledger(end, &fates).unwrap(), d2);
    let (got, p) = s.inclusion_proof(want2[5].0).unwrap();
    assert_eq!(got, want2[5].1);
    p.verify_digest(&leaf_hash(&got), &d2).unwrap();
}

#[test]
fn the_ledger_grows_incrementally_and_equals_one_built_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let fates = fates_until(None);
    let mut s = open_small(&root);
    create_tables(&mut s);
    let mut digests = Vec::new();
    for (k, range) in [1..=1u64, 2..=9, 10..=10, 11..=24, 25..=31]
        .into_iter()
        .enumerate()
    {
        append_groups(&mut s, range, &fates);
        if k == 2 {
            import(&mut s, &fates);
        }
        let seq = s.current_seq().unwrap();
        // Extending part way: up to a seq inside the last group stops before that group.
        let d = s.extend_ledger(seq - 1, &fates).unwrap();
        assert!(d.last_seq < seq);
        digests.push(s.extend_ledger(seq, &fates).unwrap());
        if k % 2 == 1 {
            drop(s);
            s = open_small(&root);
        }
    }
    assert!(segments(&table_dir(&root, C)).len() > 3);
    assert!(segments(&root.join("journal")).len() >= 3);
    let want = reference_leaves(&root, &fates);
    let last = *digests.last().unwrap();
    assert_eq!(last.tree_size, want.len() as u64);
    assert_eq!(last.root, root_of(&want));
    for w in digests.windows(2) {
        s.consistency_proof(w[0].tree_size, w[1].tree_size)
            .unwrap()
            .verify_digests(&w[0], &w[1])
            .unwrap();
    }
    drop(s);

    // A copy without its ledger, extended at once: the same digest and the same files.
    let other = dir.path().join("other");
    copy_dir(&root, &other);
    std::fs::remove_dir_all(other.join(LEDGER_DIR)).unwrap();
    let mut s2 = open_small(&other);
    assert_eq!(s2.ledger_digest().unwrap().tree_size, 0);
    let seq = s2.current_seq().unwrap();
    assert_eq!(s2.extend_ledger(seq, &fates).unwrap(), last);
    for f in [TREE_FILE, INDEX_FILE, GROUPS_FILE] {
        assert!(
            std::fs::read(root.join(LEDGER_DIR).join(f)).unwrap()
                == std::fs::read(other.join(LEDGER_DIR).join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn extending_reads_only_the_new_groups() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let fates = fates_until(None);
    let mut s = open(&root);
    create_tables(&mut s);
    append_groups(&mut s, 1..=150, &fates);
    let seq = s.current_seq().unwrap();
    s.extend_ledger(seq, &fates).unwrap();
    let history_frames = s.stats().ledger_frames;
    // One segment per log: reading a table's log from its segment's start would read its
    // whole history.
    assert_eq!(segments(&table_dir(&root, A)).len(), 1);
    assert!(history_frames > 150, "{history_frames}");

    // New groups: their journal records and their frames, whatever the history before.
    for (k, range) in [151..=152u64, 153..=160, 161..=161].into_iter().enumerate() {
        let reopened = k != 1;
        if reopened {
            drop(s);
            s = open(&root);
        }
        append_groups(&mut s, range.clone(), &fates);
        let (records_before, frames_before) = (s.stats().ledger_records, s.stats().ledger_frames);
        extend_all(&mut s, &fates);
        let records = s.stats().ledger_records - records_before;
        let frames = s.stats().ledger_frames - frames_before;
        let new = read_logs(&root)
            .journal
            .into_iter()
            .filter(|r| r.xid >= xid_of(*range.start()));
        let (mut groups, mut wanted) = (0, 0);
        for r in new {
            groups += 1;
            if !aborted(r.xid - 1000) {
                wanted += r.tables.len() as u64;
            }
        }
        // Besides: the last leaf's record, where reading the journal starts again after a
        // reopening, and an aborted group after it; per table, the frame the ledger's
        // records point at (after a reopening) and an aborted group's.
        assert!(
            records >= groups && records <= groups + 2,
            "{records} records read for {groups} new groups"
        );
        assert!(
            frames >= wanted && frames <= wanted + 6,
            "{frames} frames read for {wanted} new ones (the history has {history_frames})"
        );
    }
    let want = reference_leaves(&root, &fates);
    assert_eq!(s.ledger_digest().unwrap().root, root_of(&want));
}

#[test]
fn a_reader_sees_the_ledger_and_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let fates = fates_until(None);
    let mut w = open(&root);
    create_tables(&mut w);
    let mut r = Store::open(&root, reader_cfg()).unwrap();
    assert_eq!(r.ledger_digest().unwrap().tree_size, 0);
    assert!(r.extend_ledger(0, &fates).is_err());
    assert!(!root.join(LEDGER_DIR).exists());
    append_groups(&mut w, 1..=8, &fates);
    let d1 = extend_all(&mut w, &fates);
    assert_eq!(r.ledger_digest().unwrap(), d1);
    append_groups(&mut w, 9..=12, &fates);
    let d2 = extend_all(&mut w, &fates);
    assert_eq!(r.ledger_digest().unwrap(), d2);
    let seqs = first_seqs(&root);
    let (data, p) = r.inclusion_proof(seqs[&11]).unwrap();
    p.verify_digest(&leaf_hash(&data), &d2).unwrap();
    r.consistency_proof(d1.tree_size, d2.tree_size)
        .unwrap()
        .verify_digests(&d1, &d2)
        .unwrap();
    assert!(r.verify_digest(&d2, &fates).unwrap().ok());
}

#[test]
fn two_writers_one_at_a_time_keep_one_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let fates = fates_until(None);
    let mut w1 = open(&root);
    create_tables(&mut w1);
    append_groups(&mut w1, 1..=5, &fates);
    extend_all(&mut w1, &fates);
    let mut w2 = open(&root);
    append_groups(&mut w2, 6..=9, &fates);
    extend_all(&mut w2, &fates);
    // w1 extends after w2 did: it takes up the files as w2 left them.
    append_groups(&mut w1, 10..=12, &fates);
    let d = extend_all(&mut w1, &fates);
    let want = reference_leaves(&root, &fates);
    assert_eq!((d.tree_size, d.root), (want.len() as u64, root_of(&want)));
    assert_eq!(w2.ledger_digest().unwrap(), d);
    assert!(w2.verify_digest(&d, &fates).unwrap().ok());
}

#[test]
fn finding_the_leaf_of_a_seq_reads_log_n_index_records() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let fates = fates_until(None);
    let mut s = open(&root);
    create_tables(&mut s);
    append_groups(&mut s, 1..=140, &fates);
    let d = extend_all(&mut s, &fates);
    let files = LedgerFiles::open(
        &root.join(LEDGER_DIR),
        OpenMode::Reader,
        RecoveryMode::Strict,
    )
    .unwrap();
    assert_eq!(files.size(), d.tree_size);
    let bound = 64 - (d.tree_size - 1).leading_zeros() as u64 + 1;
    for (j, (first, _)) in reference_leaves(&root, &fates).iter().enumerate() {
        let before = files.index_reads();
        assert_eq!(
            files.leaf_at_or_before(*first).unwrap(),
            Some((j as u64, *first))
        );
        assert!(files.index_reads() - before <= bound);
    }
}

#[test]
fn a_crash_between_the_ledger_s_writes_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let fates = fates_until(None);
    let mut s = open(&root);
    create_tables(&mut s);
    append_groups(&mut s, 1..=12, &fates);
    let d1 = extend_all(&mut s, &fates);
    let sizes: Vec<(&str, u64)> = [TREE_FILE, INDEX_FILE, GROUPS_FILE]
        .iter()
        .map(|f| {
            (
                *f,
                std::fs::metadata(root.join(LEDGER_DIR).join(f))
                    .unwrap()
                    .len(),
            )
        })
        .collect();
    append_groups(&mut s, 13..=20, &fates);
    let d2 = extend_all(&mut s, &fates);
    drop(s);
    // One file (or several) cut back anywhere between the two extensions, or holding zeros
    // there: reopened, the ledger is back to what all three hold, and extends to the same.
    let ledger = root.join(LEDGER_DIR);
    for (k, (file, len1)) in sizes.iter().enumerate() {
        let path = ledger.join(file);
        let len2 = std::fs::metadata(&path).unwrap().len();
        for cut in [*len1, len1 + 1, (len1 + len2) / 2, len2 - 1] {
            let copy = dir.path().join(format!("c{k}-{cut}"));
            copy_dir(&root, &copy);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(copy.join(LEDGER_DIR).join(file))
                .unwrap();
            f.set_len(cut).unwrap();
            if cut.is_multiple_of(2) {
                // Zeros where the rest was.
                f.set_len(len2).unwrap();
            }
            drop(f);
            let mut s = open(&copy);
            let d = s.ledger_digest().unwrap();
            assert!(
                d.tree_size >= d1.tree_size && d.tree_size < d2.tree_size,
                "{file} {cut}"
            );
            let mut r = Store::open(&copy, reader_cfg()).unwrap();
            assert_eq!(r.ledger_digest().unwrap(), d);
            assert_eq!(extend_all(&mut s, &fates), d2);
        }
    }
    // Damage before the tail is reported.
    let copy = dir.path().join("damaged");
    copy_dir(&root, &copy);
    let index = copy.join(LEDGER_DIR).join(INDEX_FILE);
    let mut bytes = std::fs::read(&index).unwrap();
    bytes[16 + 20 * 3] ^= 1;
    std::fs::write(&index, bytes).unwrap();
    let mut s = open(&copy);
    assert_eq!(s.ledger_digest().unwrap(), d2);
    match s.leaf_first_seq(3) {
        Err(Error::Corruption { offset, .. }) => assert_eq!(offset, 16 + 20 * 3),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Checking a digest

#[test]
fn an_untampered_store_gives_its_digests() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let fates = fates_until(None);
    let mut s = open(&root);
    create_tables(&mut s);
    append_groups(&mut s, 1..=10, &fates);
    let d1 = extend_all(&mut s, &fates);
    let seq = s.current_seq().unwrap();
    s.snapshot(A, seq, &fates).unwrap();
    append_groups(&mut s, 11..=20, &fates);
    let d2 = extend_all(&mut s, &fates);
    for d in [d1, d2] {
        let r = s.verify_digest(&d, &fates).unwrap();
        assert!(r.ok(), "{r}");
        assert_eq!(r.stored, StoredTree::Matches);
        assert_eq!((r.recomputed, r.recomputed_root), (d.tree_size, d.root));
        assert!(r.to_string().contains("the log gives this digest"), "{r}");
    }
    // Without the ledger's files: the log alone decides.
    let copy = dir.path().join("copy");
    copy_dir(&root, &copy);
    std::fs::remove_dir_all(copy.join(LEDGER_DIR)).unwrap();
    let mut c = open(&copy);
    let r = c.verify_digest(&d2, &fates).unwrap();
    assert!(r.ok() && r.stored == StoredTree::Missing, "{r}");
    assert!(
        !copy.join(LEDGER_DIR).exists(),
        "checking creates no ledger"
    );

    // A digest the log does not give: another root, a later last seq, a larger size.
    let mut other = d2;
    other.root[0] ^= 1;
    let r = s.verify_digest(&other, &fates).unwrap();
    assert!(!r.matches && !r.pinpointed(), "{r}");
    assert!(matches!(r.stored, StoredTree::Differs { .. }));
    assert!(r.to_string().contains("cannot tell where"), "{r}");
    let mut later = d2;
    later.last_seq += 1;
    let r = s.verify_digest(&later, &fates).unwrap();
    assert!(r.matches && !r.ok(), "{r}");
    let mut larger = d2;
    larger.tree_size += 1;
    let r = s.verify_digest(&larger, &fates).unwrap();
    assert!(!r.matches, "{r}");
    assert_eq!(r.recomputed, d2.tree_size);
    assert!(r.stopped.as_ref().unwrap().contains("journal ends"), "{r}");
    assert_eq!(r.stored, StoredTree::Shorter { size: d2.tree_size });
}

#[test]
fn an_edited_value_is_found_by_the_ledger_and_not_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let (s, d) = built(&root);
    drop(s);
    let fates = fates_until(None);
    verify_all(&root, &fates);
    let seqs = first_seqs(&root);

    edit_bytes(&table_dir(&root, A), b"secret-018", b"SECRET-018");
    // The existing verification finds nothing wrong: every frame's CRC holds, the log
    // agrees with the journal.
    verify_all(&root, &fates);
    let mut s = open(&root);
    let seq = s.current_seq().unwrap();
    let row = s.get(A, b"a0018", seq, &fates).unwrap().unwrap();
    assert_eq!(row.get(1), Some(&b"SECRET-018"[..]));

    let r = s.verify_digest(&d, &fates).unwrap();
    println!("{r}");
    assert!(!r.matches && r.pinpointed(), "{r}");
    let leaf = leaf_of_group(&mut s, seqs[&18]);
    assert_eq!(
        r.divergences,
        vec![Divergence::Changed {
            leaf,
            first_seq: seqs[&18],
            log_first_seq: seqs[&18],
            header: false,
            tables: vec![TableDiff::Changed(A)],
        }]
    );
    assert!(
        r.to_string().contains("its events in table 1 differ"),
        "{r}"
    );
    // Its inclusion proof is refused: the log no longer gives the leaf.
    assert!(matches!(
        s.inclusion_proof(seqs[&18]),
        Err(Error::Corruption { .. })
    ));
    let (data, p) = s.inclusion_proof(seqs[&16]).unwrap();
    p.verify_digest(&leaf_hash(&data), &d).unwrap();
}

#[test]
fn an_edited_role_is_found_in_the_group_s_header() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let (s, d) = built(&root);
    drop(s);
    let fates = fates_until(None);
    let seqs = first_seqs(&root);
    // Group 22's record: role2 -> role0.
    let jseg = segments(&root.join("journal")).pop().unwrap();
    rewrite_frame(&jseg, |p| {
        let mut rec = JournalRecord::decode(p).unwrap();
        if rec.xid != xid_of(22) {
            return None;
        }
        assert_eq!(rec.role, "role2");
        rec.role = "role0".into();
        let mut out = Vec::new();
        rec.encode(&mut out);
        Some(out)
    });
    verify_all(&root, &fates);
    let mut s = open(&root);
    let r = s.verify_digest(&d, &fates).unwrap();
    println!("{r}");
    let leaf = leaf_of_group(&mut s, seqs[&22]);
    assert_eq!(
        r.divergences,
        vec![Divergence::Changed {
            leaf,
            first_seq: seqs[&22],
            log_first_seq: seqs[&22],
            header: true,
            tables: vec![],
        }]
    );
}

#[test]
fn a_dropped_group_is_named_and_the_groups_after_it_renumbered() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let (s, d) = built(&root);
    drop(s);
    let fates = fates_until(None);
    let seqs = first_seqs(&root);
    let mut logs = read_logs(&root);
    let gone = seqs[&12];
    let count = logs
        .journal
        .iter()
        .find(|r| r.first_seq == gone)
        .unwrap()
        .count;
    logs.journal.retain(|r| r.first_seq != gone);
    for frames in logs.tables.values_mut() {
        frames.retain(|f| f.group_seq != gone);
    }
    write_logs_renumbered(&root, logs);
    // Every CRC holds and the journal and table logs agree: the existing verification has
    // nothing to say.
    verify_all(&root, &fates);

    let mut s = open(&root);
    let r = s.verify_digest(&d, &fates).unwrap();
    println!("{r}");
    assert!(!r.matches && r.pinpointed(), "{r}");
    // The ledger's leaves are still those of the original history.
    let leaf = s.leaf_of_seq(gone).unwrap().unwrap();
    assert_eq!(
        r.divergences,
        vec![
            Divergence::Missing {
                leaf,
                count: 1,
                first_seqs: vec![gone],
                at_end: false,
            },
            Divergence::Renumbered {
                leaves: (leaf + 1, d.tree_size - 1),
                first_seqs: (seqs[&13], read_logs_last_leaf_seq(&s, d.tree_size - 1)),
                shift: -(count as i64),
            },
        ]
    );
    // The log has one leaf fewer.
    assert!(r.stopped.as_ref().unwrap().contains("journal ends"), "{r}");
    assert_eq!(r.recomputed, d.tree_size - 1);

    // Dropping the last groups instead: missing at the end.
    let dir2 = tempfile::tempdir().unwrap();
    let root2 = dir2.path().join("s");
    let (s2, d2) = built(&root2);
    drop(s2);
    let mut logs = read_logs(&root2);
    let cut = logs.journal.len() - 2;
    let tail: Vec<Seq> = logs.journal[cut..].iter().map(|r| r.first_seq).collect();
    logs.journal.truncate(cut);
    for frames in logs.tables.values_mut() {
        frames.retain(|f| !tail.contains(&f.group_seq));
    }
    write_logs_renumbered(&root2, logs);
    let mut s2 = open(&root2);
    let r = s2.verify_digest(&d2, &fates).unwrap();
    println!("{r}");
    assert_eq!(
        r.divergences,
        vec![Divergence::Missing {
            leaf: d2.tree_size - 2,
            count: 2,
            first_seqs: tail,
            at_end: true,
        }]
    );
}

/// The first seq of ledger leaf `j` (from the ledger's own records).
fn read_logs_last_leaf_seq(s: &Store, j: u64) -> Seq {
    let files = LedgerFiles::open(
        &s.root().join(LEDGER_DIR),
        OpenMode::Reader,
        RecoveryMode::Strict,
    )
    .unwrap();
    files.first_seq(j).unwrap()
}

#[test]
fn swapped_groups_are_named() {
    for times_in_place in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s");
        let (s, d) = built(&root);
        drop(s);
        let fates = fates_until(None);
        let seqs = first_seqs(&root);
        let mut logs = read_logs(&root);
        // Groups 25 and 26 exchange places in the sequence.
        let i = logs
            .journal
            .iter()
            .position(|r| r.first_seq == seqs[&25])
            .unwrap();
        assert_eq!(logs.journal[i + 1].first_seq, seqs[&26]);
        logs.journal.swap(i, i + 1);
        if times_in_place {
            // Keeping commit times increasing, as a careful forger would.
            let (t0, t1) = (logs.journal[i].commit_ts, logs.journal[i + 1].commit_ts);
            logs.journal[i].commit_ts = t1;
            logs.journal[i + 1].commit_ts = t0;
        }
        write_logs_renumbered(&root, logs);
        if times_in_place {
            verify_all(&root, &fates);
        }
        let mut s = open(&root);
        let r = s.verify_digest(&d, &fates).unwrap();
        println!("{r}");
        let leaf = s.leaf_of_seq(seqs[&25]).unwrap().unwrap();
        let count25 = seqs[&26] - seqs[&25];
        assert_eq!(
            r.divergences,
            vec![Divergence::Swapped {
                leaf,
                first_seqs: (seqs[&25], seqs[&26]),
                log_first_seqs: (seqs[&25] + (seqs[&27] - seqs[&26]), seqs[&25]),
                header: times_in_place,
            }],
            "{count25}"
        );
    }
}

#[test]
fn a_group_once_aborted_and_now_committed_is_an_extra_group() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let (mut s, d) = built(&root);
    let seqs = first_seqs(&root);
    // Transaction 10 aborted; fates that now say it committed.
    let mut fates = fates_until(None);
    assert!(fates.aborted.remove(&xid_of(10)));
    let r = s.verify_digest(&d, &fates).unwrap();
    println!("{r}");
    let leaf = s.leaf_of_seq(seqs[&11]).unwrap().unwrap();
    assert_eq!(
        r.divergences,
        vec![Divergence::Extra {
            leaf,
            count: 1,
            first_seqs: vec![seqs[&10]],
        }]
    );
}

#[test]
fn a_history_the_ledger_cannot_pinpoint_is_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let (s, d) = built(&root);
    drop(s);
    let fates = fates_until(None);
    edit_bytes(&table_dir(&root, A), b"secret-018", b"SECRET-018");
    std::fs::remove_dir_all(root.join(LEDGER_DIR)).unwrap();
    let mut s = open(&root);
    // Rebuilt from the edited log, the ledger gives another root: it cannot say where.
    let rebuilt = extend_all(&mut s, &fates);
    assert_ne!(rebuilt.root, d.root);
    let r = s.verify_digest(&d, &fates).unwrap();
    println!("{r}");
    assert!(!r.matches && !r.pinpointed());
    assert!(matches!(r.stored, StoredTree::Differs { .. }));
    assert!(r.divergences.is_empty());
    assert!(
        r.to_string().contains("history does not match the digest"),
        "{r}"
    );
}

#[test]
fn a_table_log_that_cannot_be_read_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let (s, d) = built(&root);
    drop(s);
    let fates = fates_until(None);
    // A table's frames gone behind the store's back.
    let seg = segments(&table_dir(&root, B)).pop().unwrap();
    std::fs::write(&seg, &std::fs::read(&seg).unwrap()[..SEGMENT_HEADER_LEN]).unwrap();
    let mut s = Store::open(&root, reader_cfg()).unwrap();
    let r = s.verify_digest(&d, &fates).unwrap();
    println!("{r}");
    assert!(!r.matches);
    assert!(
        r.stopped.as_ref().unwrap().contains("cannot be read"),
        "{r}"
    );
    assert!(matches!(
        r.divergences.last(),
        Some(Divergence::Unreadable { .. })
    ));
}

// ---------------------------------------------------------------------------------------
// Dropped tables

/// The kept-sections files of table `t`.
fn kept_files(root: &Path, t: TableId) -> Vec<PathBuf> {
    let prefix = format!("kept-{t}-");
    let mut out: Vec<PathBuf> = std::fs::read_dir(root.join(LEDGER_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && !n.ends_with(".tmp"))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_dropped_table_s_groups_stay_leaves_checkable_and_provable() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let fates = fates_until(None);
    let mut s = open_small(&root);
    create_tables(&mut s);
    append_groups(&mut s, 1..=10, &fates);
    let d1 = extend_all(&mut s, &fates);
    append_groups(&mut s, 11..=24, &fates);
    let seqs = first_seqs(&root);
    // The reference: the same history, its table B never dropped.
    let reference = dir.path().join("reference");
    copy_dir(&root, &reference);

    // Dropped before the ledger reaches its last groups (12, 15, 16, 18, 20, 21, 24 wrote
    // B, several of them other tables too): its sections are kept, its files go.
    s.keep_table_sections(B).unwrap();
    s.drop_table(B).unwrap();
    assert!(!table_dir(&root, B).exists());
    assert_eq!(kept_files(&root, B).len(), 1);
    // Values are not kept, only their commitments.
    let kept = std::fs::read(&kept_files(&root, B)[0]).unwrap();
    assert!(!kept.windows(9).any(|w| w == b"gone soon"));

    let d2 = extend_all(&mut s, &fates);
    let mut r = open_small(&reference);
    assert_eq!(
        extend_all(&mut r, &fates),
        d2,
        "the same leaves as without the drop"
    );
    for d in [d1, d2] {
        let rep = s.verify_digest(&d, &fates).unwrap();
        assert!(rep.ok(), "{rep}");
    }
    // A group that wrote B and A: its leaf data come back whole, and prove.
    let (data, p) = s.inclusion_proof(seqs[&12]).unwrap();
    p.verify_digest(&leaf_hash(&data), &d2).unwrap();
    let leaf = Leaf::decode(&data).unwrap();
    assert_eq!(
        leaf.tables.iter().map(|t| t.table).collect::<Vec<_>>(),
        vec![A, B]
    );
    assert!(!data.windows(9).any(|w| w == b"gone soon"));
    // Reopened (no ledger state in memory), and from a fresh store on a copy without the
    // ledger's tree: the same.
    drop(s);
    let mut s = open_small(&root);
    assert!(s.verify_digest(&d2, &fates).unwrap().ok());

    // The table's id used again: a new table with its own history after the old one's.
    s.create_table(B).unwrap();
    s.append(
        &[txn(
            xid_of(100),
            vec![ins(B, "new", &[(1, "n")]), ins(A, "a-new", &[(1, "m")])],
        )],
        &fates,
    )
    .unwrap();
    let d3 = extend_all(&mut s, &fates);
    assert_eq!(d3.tree_size, d2.tree_size + 1);
    for d in [d1, d2, d3] {
        let rep = s.verify_digest(&d, &fates).unwrap();
        assert!(rep.ok(), "{rep}");
    }
    // Dropped again: a second kept file, both read.
    s.keep_table_sections(B).unwrap();
    s.drop_table(B).unwrap();
    assert_eq!(kept_files(&root, B).len(), 2);
    assert!(s.verify_digest(&d3, &fates).unwrap().ok());

    // A kept section edited behind the store's back (a commitment changed, the frame's
    // CRC made valid): the digests that cover it no longer match.
    let path = kept_files(&root, B)[0].clone();
    let mut bytes = std::fs::read(&path).unwrap();
    let mut pos = 16;
    let mut edited = false;
    while let FrameRead::Frame { payload, next } = read_frame(&bytes, pos) {
        if !edited && payload.len() > 40 {
            let mut frame = Vec::new();
            let start = begin_frame(&mut frame);
            let mut p = payload.to_vec();
            let last = p.len() - 1;
            p[last] ^= 1;
            frame.extend_from_slice(&p);
            finish_frame(&mut frame, start);
            bytes.splice(pos..next, frame);
            edited = true;
            break;
        }
        pos = next;
    }
    assert!(edited);
    std::fs::write(&path, &bytes).unwrap();
    let rep = s.verify_digest(&d2, &fates).unwrap();
    println!("{rep}");
    assert!(!rep.matches && rep.pinpointed(), "{rep}");
    assert!(matches!(
        rep.divergences[0],
        Divergence::Changed { ref tables, .. } if tables == &vec![TableDiff::Changed(B)]
    ));
    // B's first group (transaction 4) is in the older digest too.
    assert!(!s.verify_digest(&d1, &fates).unwrap().matches);
}

#[test]
fn a_table_dropped_without_its_sections_stops_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let fates = fates_until(None);
    let mut s = open(&root);
    create_tables(&mut s);
    append_groups(&mut s, 1..=10, &fates);
    s.drop_table(B).unwrap();
    let seq = s.current_seq().unwrap();
    let e = s.extend_ledger(seq, &fates).unwrap_err();
    assert!(
        e.to_string().contains("without its leaf sections kept"),
        "{e}"
    );
    // The leaves before the first group of B are kept.
    assert_eq!(s.ledger_digest().unwrap().tree_size, 2);
}
