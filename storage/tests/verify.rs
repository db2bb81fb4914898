//! Verification: a clean store verifies whole; every damaged byte of a log is reported at
//! its frame (or header), damaged and disagreeing snapshots are reported, and verification
//! never changes a file.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use driftdb_storage::format::{
    read_frame, FrameRead, SegmentHeader, KIND_TABLE, SEGMENT_HEADER_LEN,
};
use driftdb_storage::*;

const T: TableId = 1;
const U: TableId = 2;
/// Small segments, so that a table log has several.
const SEGMENT: u64 = 200;

struct Built {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// Frames and events written to T and U, and events in all.
    t_frames: u64,
    t_events: u64,
    u_frames: u64,
    u_events: u64,
    last_seq: Seq,
    /// Seqs of T's snapshots, ascending.
    snaps: Vec<Seq>,
}

fn config() -> Config {
    Config {
        segment_size: SEGMENT,
        ..cfg()
    }
}

/// Twelve transactions over T (inserts, patches, deletes) and U, an index on T, and three
/// snapshots of T: after the 4th transaction, in the middle of the 9th, and after the
/// 11th.
fn build() -> Built {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let mut s = Store::open(&root, config()).unwrap();
    s.create_table(T).unwrap();
    s.create_table(U).unwrap();
    s.create_index(T, 1, IndexKind::Bytes).unwrap();
    let (mut t_frames, mut t_events, mut u_frames, mut u_events) = (0, 0, 0, 0);
    let mut snaps = Vec::new();
    for i in 1..=12u64 {
        let mut t = vec![ins(
            T,
            &format!("k{i:02}"),
            &[(1, &format!("v{i}")), (2, "x")],
        )];
        if i % 3 == 0 {
            t.push(patch(T, &format!("k{:02}", i - 1), &[(1, Some("patched"))]));
        }
        if i % 4 == 0 {
            t.push(del(T, &format!("k{:02}", i - 2)));
        }
        t_frames += 1;
        t_events += t.len() as u64;
        if i % 2 == 0 {
            t.push(ins(U, &format!("u{i}"), &[(1, "u")]));
            u_frames += 1;
            u_events += 1;
        }
        let done = s.append(&[txn(i, t)], &AllCommitted).unwrap();
        match i {
            4 | 11 => snaps.push(s.snapshot(T, done[0].last_seq, &AllCommitted).unwrap()),
            // Between the events of one transaction.
            9 => snaps.push(s.snapshot(T, done[0].first_seq, &AllCommitted).unwrap()),
            _ => {}
        }
    }
    let last_seq = s.current_seq().unwrap();
    assert!(segments(&root, T).len() >= 3, "{:?}", segments(&root, T));
    Built {
        _dir: dir,
        root,
        t_frames,
        t_events,
        u_frames,
        u_events,
        last_seq,
        snaps,
    }
}

fn table_dir(root: &Path, t: TableId) -> PathBuf {
    root.join("tables").join(t.to_string())
}

/// A table's (or, for `None`, the journal's) log segments, in order.
fn log_segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    out.sort();
    out
}

fn segments(root: &Path, t: TableId) -> Vec<PathBuf> {
    log_segments(&table_dir(root, t))
}

fn journal_segments(root: &Path) -> Vec<PathBuf> {
    log_segments(&root.join("journal"))
}

fn snapshot_path(root: &Path, t: TableId, seq: Seq) -> PathBuf {
    table_dir(root, t).join(format!("snap-{seq:020}.snap"))
}

/// Every file under `dir` with its bytes.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(contents(&p));
        } else {
            out.insert(p.clone(), std::fs::read(&p).unwrap());
        }
    }
    out
}

/// Frame starts of a segment's bytes, in order.
fn frame_starts(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    while let FrameRead::Frame { next, .. } = read_frame(bytes, at) {
        out.push(at);
        at = next;
    }
    out
}

/// Where the damage of byte `pos` of a segment is reported: its frame, or its header.
fn damaged_at(good: &[u8], pos: usize) -> u64 {
    if pos < SEGMENT_HEADER_LEN {
        return 0;
    }
    *frame_starts(good)
        .iter()
        .rev()
        .find(|s| **s <= pos)
        .unwrap() as u64
}

fn flip(path: &Path, pos: usize) -> Vec<u8> {
    let good = std::fs::read(path).unwrap();
    let mut bad = good.clone();
    bad[pos] ^= 1 << (pos % 8);
    std::fs::write(path, &bad).unwrap();
    good
}

fn verify(root: &Path, t: TableId) -> TableReport {
    Verifier::open(root)
        .unwrap()
        .verify_table(t, &AllCommitted)
        .unwrap()
}

fn first_problem(r: &TableReport) -> &Problem {
    r.problems
        .listed
        .first()
        .unwrap_or_else(|| panic!("no problem reported: {r:?}"))
}

#[test]
fn a_clean_store_verifies_whole() {
    let b = build();
    let before = contents(&b.root);
    let mut v = Verifier::open(&b.root).unwrap();
    let j = v.journal().clone();
    assert!(j.ok(), "{j:?}");
    assert_eq!(j.groups, 12);
    assert_eq!(j.last_seq, b.last_seq);
    assert_eq!(b.last_seq, b.t_events + b.u_events);
    let t = v.verify_table(T, &AllCommitted).unwrap();
    assert!(t.ok(), "{t:?}");
    assert!(t.exists);
    assert_eq!((t.frames, t.events), (b.t_frames, b.t_events));
    assert_eq!((t.snapshots, t.snapshots_compared), (3, 3));
    let u = v.verify_table(U, &AllCommitted).unwrap();
    assert!(u.ok(), "{u:?}");
    assert_eq!(
        (u.frames, u.events, u.snapshots),
        (b.u_frames, b.u_events, 0)
    );
    // Opened for T only: the same reports, for U too (its groups are read when asked).
    let mut only_t = Verifier::open_for(&b.root, &[T]).unwrap();
    assert_eq!(only_t.journal(), &j);
    assert_eq!(only_t.verify_table(T, &AllCommitted).unwrap(), t);
    assert_eq!(only_t.verify_table(U, &AllCommitted).unwrap(), u);
    assert_eq!(only_t.verify_table(U, &AllCommitted).unwrap(), u);
    // Through an open store too; and verification changes no file.
    let s = Store::open(&b.root, config()).unwrap();
    assert_eq!(s.verify(T, &AllCommitted).unwrap(), t);
    assert_eq!(s.verify_journal().unwrap(), j);
    drop(s);
    assert_eq!(contents(&b.root), before);
}

#[test]
fn a_table_never_written_verifies_empty() {
    let b = build();
    let r = verify(&b.root, 99);
    assert!(r.ok() && !r.exists && r.frames == 0, "{r:?}");
    let mut s = Store::open(&b.root, config()).unwrap();
    s.create_table(98).unwrap();
    let r = s.verify(98, &AllCommitted).unwrap();
    assert!(r.ok() && r.exists && r.frames == 0, "{r:?}");
    // A table the journal records but whose files are gone is not "never written".
    std::fs::remove_dir_all(table_dir(&b.root, U)).unwrap();
    let r = verify(&b.root, U);
    assert!(!r.ok(), "{r:?}");
    assert_eq!(first_problem(&r).file, table_dir(&b.root, U));
}

#[test]
fn every_flipped_byte_of_a_table_log_is_reported_at_its_frame() {
    let b = build();
    let mut checked = 0;
    for seg in segments(&b.root, T) {
        let len = std::fs::metadata(&seg).unwrap().len() as usize;
        for pos in 0..len {
            let good = flip(&seg, pos);
            let r = verify(&b.root, T);
            std::fs::write(&seg, &good).unwrap();
            let p = first_problem(&r);
            assert_eq!(p.file, seg, "byte {pos}: {p}");
            assert_eq!(p.offset, damaged_at(&good, pos), "byte {pos}: {p}");
            checked += 1;
        }
    }
    assert!(checked > 400, "{checked}");
    // The other table is not affected.
    assert!(verify(&b.root, U).ok());
}

#[test]
fn a_flipped_byte_in_an_early_frame_names_it_and_the_groups_lost_after_it() {
    let b = build();
    let seg = segments(&b.root, T)[0].clone();
    let good = std::fs::read(&seg).unwrap();
    let starts = frame_starts(&good);
    assert!(starts.len() >= 2, "{starts:?}");
    flip(&seg, starts[0] + 14);
    let r = verify(&b.root, T);
    assert_eq!(r.problems.total(), 1, "{r:?}");
    let p = first_problem(&r);
    assert_eq!((&p.file, p.offset), (&seg, SEGMENT_HEADER_LEN as u64));
    assert!(p.detail.contains("crc mismatch"), "{p}");
    // Its own group and the others of the segment.
    assert!(
        p.detail
            .contains(&format!("({} groups the journal records", starts.len())),
        "{p}"
    );
    // Every frame of the later segments is still read and checked.
    assert_eq!(r.frames, b.t_frames - starts.len() as u64);
}

#[test]
fn a_flipped_byte_in_the_last_frame_is_damage_not_a_torn_tail() {
    let b = build();
    let seg = segments(&b.root, T).pop().unwrap();
    let good = std::fs::read(&seg).unwrap();
    let last = *frame_starts(&good).last().unwrap();
    flip(&seg, good.len() - 1);
    let r = verify(&b.root, T);
    assert_eq!(r.problems.total(), 1, "{r:?}");
    let p = first_problem(&r);
    assert_eq!((&p.file, p.offset), (&seg, last as u64), "{p}");
    assert_eq!(r.frames, b.t_frames - 1);
}

#[test]
fn a_flipped_byte_in_a_segment_header_is_reported_at_offset_zero() {
    let b = build();
    let seg = segments(&b.root, T)[1].clone();
    flip(&seg, 21);
    let r = verify(&b.root, T);
    assert_eq!(r.problems.total(), 1, "{r:?}");
    let p = first_problem(&r);
    assert_eq!((&p.file, p.offset), (&seg, 0), "{p}");
    assert!(p.detail.contains("segment header"), "{p}");
    // The frames after the header are still checked.
    assert_eq!(r.frames, b.t_frames);
}

#[test]
fn a_cut_table_log_is_reported_where_it_ends() {
    let b = build();
    let seg = segments(&b.root, T).pop().unwrap();
    let good = std::fs::read(&seg).unwrap();
    let starts = frame_starts(&good);
    for cut in SEGMENT_HEADER_LEN..good.len() {
        std::fs::write(&seg, &good[..cut]).unwrap();
        let r = verify(&b.root, T);
        let p = first_problem(&r);
        assert_eq!(p.file, seg, "cut {cut}: {p}");
        let expected = if starts.contains(&cut) {
            cut
        } else {
            *starts.iter().rev().find(|s| **s < cut).unwrap()
        };
        assert_eq!(p.offset, expected as u64, "cut {cut}: {p}");
    }
    std::fs::write(&seg, &good).unwrap();
    assert!(verify(&b.root, T).ok());
}

#[test]
fn a_missing_segment_is_reported_as_the_groups_it_held() {
    let b = build();
    let segs = segments(&b.root, T);
    let held = frame_starts(&std::fs::read(&segs[1]).unwrap()).len();
    std::fs::remove_file(&segs[1]).unwrap();
    let r = verify(&b.root, T);
    let p = first_problem(&r);
    assert_eq!((&p.file, p.offset), (&segs[2], SEGMENT_HEADER_LEN as u64));
    assert!(
        p.detail
            .contains(&format!("({held} such groups missing before this frame)")),
        "{p}"
    );
    assert_eq!(r.frames, b.t_frames - held as u64);
}

#[test]
fn a_flipped_byte_in_a_snapshot_is_reported_and_the_next_one_still_compared() {
    let b = build();
    let snap = snapshot_path(&b.root, T, b.snaps[1]);
    // Inside the first row block, which starts right after the header.
    let good = flip(&snap, SEGMENT_HEADER_LEN + 5);
    let r = verify(&b.root, T);
    std::fs::write(&snap, &good).unwrap();
    assert_eq!(r.problems.total(), 1, "{r:?}");
    let p = first_problem(&r);
    assert_eq!(
        (&p.file, p.offset),
        (&snap, SEGMENT_HEADER_LEN as u64),
        "{p}"
    );
    assert_eq!((r.snapshots, r.snapshots_compared), (2, 2));
    // Any byte of it: the same file, at an offset no later than the byte.
    for pos in (0..good.len()).step_by(3) {
        flip(&snap, pos);
        let r = verify(&b.root, T);
        std::fs::write(&snap, &good).unwrap();
        let p = first_problem(&r);
        assert_eq!(p.file, snap, "byte {pos}: {p}");
        assert!(p.offset <= pos as u64, "byte {pos}: {p}");
    }
}

#[test]
fn a_snapshot_whose_rows_disagree_with_the_log_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), cfg()).unwrap();
    s.create_table(T).unwrap();
    s.append(
        &[txn(
            1,
            vec![ins(T, "a", &[(1, "1")]), ins(T, "b", &[(1, "1")])],
        )],
        &AllCommitted,
    )
    .unwrap();
    s.append(
        &[txn(
            2,
            vec![patch(T, "a", &[(1, Some("2"))]), ins(T, "c", &[(1, "2")])],
        )],
        &AllCommitted,
    )
    .unwrap();
    let at = s.current_seq().unwrap();
    // Built believing transaction 2 aborted: valid checksums, other rows.
    s.snapshot(T, at, &FateSet::aborted([2])).unwrap();
    let r = s.verify(T, &AllCommitted).unwrap();
    assert_eq!(r.problems.total(), 1, "{r:?}");
    let p = first_problem(&r);
    let path = snapshot_path(dir.path(), T, at);
    assert_eq!(
        (&p.file, p.offset),
        (&path, SEGMENT_HEADER_LEN as u64),
        "{p}"
    );
    assert!(
        p.detail.contains(&format!("at seq {at}"))
            && p.detail.contains("the row under key 61 differs")
            && p.detail.contains("(2 rows differ in all)"),
        "{p}"
    );
    // Judged by the fates it was built with, it agrees.
    assert!(s.verify(T, &FateSet::aborted([2])).unwrap().ok());
}

#[test]
fn journal_damage_is_reported_at_its_frame() {
    let b = build();
    let segs = journal_segments(&b.root);
    assert!(segs.len() >= 2, "{segs:?}");
    for (k, seg) in segs.iter().enumerate() {
        let good = std::fs::read(seg).unwrap();
        // Not the very last frame of the journal (see below).
        let end = if k + 1 == segs.len() {
            *frame_starts(&good).last().unwrap()
        } else {
            good.len()
        };
        for pos in 0..end {
            flip(seg, pos);
            let v = Verifier::open(&b.root).unwrap();
            std::fs::write(seg, &good).unwrap();
            let p = v
                .journal()
                .problems
                .listed
                .first()
                .unwrap_or_else(|| panic!("byte {pos} of {}: no problem", seg.display()));
            assert_eq!(&p.file, seg, "byte {pos}: {p}");
            assert_eq!(p.offset, damaged_at(&good, pos), "byte {pos}: {p}");
            assert!(v.journal().last_seq < b.last_seq);
        }
    }
    // Damage of the journal's last frame is a torn tail: not written yet, as recovery
    // sees it. Tables are verified up to the group before it.
    let seg = segs.last().unwrap();
    let len = std::fs::metadata(seg).unwrap().len() as usize;
    flip(seg, len - 1);
    let mut v = Verifier::open(&b.root).unwrap();
    assert!(v.journal().ok(), "{:?}", v.journal());
    assert_eq!(v.journal().groups, 11);
    let t = v.verify_table(T, &AllCommitted).unwrap();
    assert!(t.ok(), "{t:?}");
    assert_eq!(t.frames, b.t_frames - 1);
}

/// Writes `h` over the header of the segment at `path` (its CRC recomputed).
fn rewrite_header(path: &Path, h: SegmentHeader) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[..SEGMENT_HEADER_LEN].copy_from_slice(&h.encode());
    std::fs::write(path, bytes).unwrap();
}

fn header_of(path: &Path) -> SegmentHeader {
    SegmentHeader::decode(&std::fs::read(path).unwrap()).unwrap()
}

/// The journal's problems as `(file, offset, detail)`.
fn journal_problems(root: &Path) -> Vec<(PathBuf, u64, String)> {
    let v = Verifier::open(root).unwrap();
    v.journal()
        .problems
        .listed
        .iter()
        .map(|p| (p.file.clone(), p.offset, p.detail.clone()))
        .collect()
}

#[test]
fn journal_segment_headers_record_the_segment_size() {
    let b = build();
    let segs = journal_segments(&b.root);
    assert!(segs.len() >= 2, "{segs:?}");
    for seg in &segs {
        assert_eq!(header_of(seg).recorded_segment_size(), Some(SEGMENT));
    }
    // Segments written before sizes were recorded (0) are fine, and so are the segments
    // recording a size after them.
    for seg in &segs[..segs.len() - 1] {
        rewrite_header(seg, SegmentHeader::journal(header_of(seg).first_seq, 0));
    }
    assert_eq!(journal_problems(&b.root), vec![]);
}

#[test]
fn a_journal_segment_header_naming_something_impossible_is_reported() {
    let b = build();
    let segs = journal_segments(&b.root);
    let seg = &segs[1];
    let good = std::fs::read(seg).unwrap();
    let first = header_of(seg).first_seq;
    let mismatch = "journal segment header does not match its name and directory";
    // A table log's header, and a journal header naming another seq.
    for h in [
        SegmentHeader {
            kind: KIND_TABLE,
            table: T,
            first_seq: first,
        },
        SegmentHeader::journal(first + 1, SEGMENT),
    ] {
        rewrite_header(seg, h);
        assert_eq!(
            journal_problems(&b.root),
            vec![(seg.clone(), 0, mismatch.to_string())],
            "{h:?}"
        );
    }
    // Another segment size than an earlier segment's, or none after one: no store could
    // have written it (a store opening with another size fails).
    for size in [SEGMENT / 2, 0] {
        rewrite_header(seg, SegmentHeader::journal(first, size));
        assert_eq!(
            journal_problems(&b.root),
            vec![(
                seg.clone(),
                0,
                format!(
                    "journal segment header records segment size {size}, but an earlier \
                     segment records {SEGMENT}"
                )
            )]
        );
    }
    std::fs::write(seg, good).unwrap();
    assert_eq!(journal_problems(&b.root), vec![]);
    // A size the segments never reached, though later segments follow them: readers
    // would not have looked for those.
    let big = 1 << 20;
    for seg in &segs {
        rewrite_header(seg, SegmentHeader::journal(header_of(seg).first_seq, big));
    }
    let expected: Vec<_> = segs[..segs.len() - 1]
        .iter()
        .map(|seg| {
            let len = std::fs::metadata(seg).unwrap().len();
            (
                seg.clone(),
                0,
                format!(
                    "journal segment holds {len} bytes, fewer than the segment size {big} its \
                     header records, yet a later segment follows"
                ),
            )
        })
        .collect();
    assert_eq!(journal_problems(&b.root), expected);
}

#[test]
fn the_recorded_fates_are_read_and_checked() {
    let b = build();
    let mut s = Store::open(&b.root, config()).unwrap();
    let fates = FateSet::aborted([3]);
    assert_eq!(s.settle(4, &fates).unwrap(), 3);
    assert_eq!(s.settle(7, &fates).unwrap(), 3);
    let v = Verifier::open(&b.root).unwrap();
    assert!(v.journal().ok(), "{:?}", v.journal());
    assert_eq!(*v.settled(), *s.settled().unwrap());
    assert_eq!(v.settled().fate(3), Some(Fate::Aborted));
    assert_eq!(v.settled().fate(6), Some(Fate::Committed));
    assert_eq!(v.settled().fate(7), None);
    // Damage of the first of its two frames is reported with the journal's problems.
    let path = b.root.join("fates.log");
    flip(&path, 14);
    let v = Verifier::open(&b.root).unwrap();
    let p = v.journal().problems.listed.first().expect("a problem");
    assert_eq!((&p.file, p.offset), (&path, 0), "{p}");
    assert_eq!(v.settled().below, 0);
}
