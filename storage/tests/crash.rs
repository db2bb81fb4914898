//! Crash simulation: cut the last transaction's frames at every byte, flip bytes in earlier
//! frames, and check what reopening reports.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use driftdb_storage::format::{read_frame, FrameRead, SEGMENT_HEADER_LEN};
use driftdb_storage::*;

const T: TableId = 1;
const U: TableId = 2;

struct Built {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// Every log file with its length before and after the last transaction.
    before: BTreeMap<PathBuf, u64>,
    after: BTreeMap<PathBuf, u64>,
    prev_seq: Seq,
    prev_t: Vec<(String, Row)>,
    prev_u: Vec<(String, Row)>,
}

fn log_files(root: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    for sub in ["journal", "tables/1", "tables/2"] {
        for e in std::fs::read_dir(root.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "log") {
                out.insert(p.clone(), std::fs::metadata(&p).unwrap().len());
            }
        }
    }
    out
}

fn build() -> Built {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let mut s = Store::open(&root, cfg()).unwrap();
    s.create_table(T).unwrap();
    s.create_table(U).unwrap();
    for i in 1..=5u64 {
        s.append(
            &[txn(
                i,
                vec![
                    ins(T, &format!("t{i}"), &[(1, "one"), (2, &i.to_string())]),
                    ins(U, &format!("u{i}"), &[(1, "uno")]),
                ],
            )],
            &AllCommitted,
        )
        .unwrap();
    }
    let before = log_files(&root);
    let prev_seq = s.current_seq().unwrap();
    let prev_t = scan_all(&mut s, T, prev_seq, &AllCommitted);
    let prev_u = scan_all(&mut s, U, prev_seq, &AllCommitted);
    s.append(
        &[txn(
            6,
            vec![
                patch(T, "t1", &[(2, Some("patched")), (3, None)]),
                del(U, "u2"),
                ins(T, "t6", &[(1, "six")]),
                ins(U, "u6", &[(4, "six")]),
            ],
        )],
        &AllCommitted,
    )
    .unwrap();
    let after = log_files(&root);
    drop(s);
    Built {
        _dir: dir,
        root,
        before,
        after,
        prev_seq,
        prev_t,
        prev_u,
    }
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Opens a writer on `root` and checks it holds exactly the state before the last
/// transaction, with every log cut back to it; then appends and reads again.
fn assert_recovers_to_previous(b: &Built, root: &Path, what: &str) {
    let mut s = Store::open(root, cfg()).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(s.current_seq().unwrap(), b.prev_seq, "{what}");
    assert_eq!(
        scan_all(&mut s, T, b.prev_seq, &AllCommitted),
        b.prev_t,
        "{what}"
    );
    assert_eq!(
        scan_all(&mut s, U, b.prev_seq, &AllCommitted),
        b.prev_u,
        "{what}"
    );
    let relocated: BTreeMap<PathBuf, u64> = b
        .before
        .iter()
        .map(|(p, l)| (root.join(p.strip_prefix(&b.root).unwrap()), *l))
        .collect();
    assert_eq!(
        log_files(root),
        relocated,
        "{what}: logs not cut back to the journal"
    );
    let c = s
        .append(
            &[txn(7, vec![ins(T, "t6", &[(1, "again")]), del(U, "u1")])],
            &AllCommitted,
        )
        .unwrap();
    assert_eq!(c[0].first_seq, b.prev_seq + 1, "{what}");
    drop(s);
    let mut s = Store::open(root, cfg()).unwrap();
    let now = b.prev_seq + 2;
    assert_eq!(
        s.get(T, b"t6", now, &AllCommitted).unwrap(),
        Some(row(&[(1, "again")])),
        "{what}"
    );
    assert_eq!(
        scan_all(&mut s, U, now, &AllCommitted).len(),
        b.prev_u.len() - 1,
        "{what}"
    );
}

fn journal_file(b: &Built) -> PathBuf {
    b.before
        .keys()
        .find(|p| p.parent().unwrap().ends_with("journal"))
        .unwrap()
        .clone()
}

fn table_files(b: &Built) -> Vec<PathBuf> {
    b.before
        .keys()
        .filter(|p| !p.parent().unwrap().ends_with("journal"))
        .cloned()
        .collect()
}

#[test]
fn journal_cut_at_every_byte_recovers_previous_transaction() {
    let b = build();
    let j = journal_file(&b);
    let scratch = tempfile::tempdir().unwrap();
    for cut in b.before[&j]..b.after[&j] {
        let root = scratch.path().join(format!("c{cut}"));
        copy_dir(&b.root, &root);
        truncate(&root.join(j.strip_prefix(&b.root).unwrap()), cut);
        assert_recovers_to_previous(&b, &root, &format!("journal cut at {cut}"));
        std::fs::remove_dir_all(&root).unwrap();
    }
    // Zeroes after the last whole frame (a file extended but never written) are a torn tail.
    let root = scratch.path().join("zeroes");
    copy_dir(&b.root, &root);
    let jr = root.join(j.strip_prefix(&b.root).unwrap());
    truncate(&jr, b.before[&j]);
    truncate(&jr, b.before[&j] + 100);
    assert_recovers_to_previous(&b, &root, "journal zero tail");
}

#[test]
fn table_log_cut_at_every_byte_recovers_previous_transaction() {
    let b = build();
    let j = journal_file(&b);
    let scratch = tempfile::tempdir().unwrap();
    for t in table_files(&b) {
        for cut in b.before[&t]..b.after[&t] {
            let root = scratch.path().join(format!("c{cut}"));
            copy_dir(&b.root, &root);
            // The crash came before the journal frame: it is not there.
            truncate(&root.join(j.strip_prefix(&b.root).unwrap()), b.before[&j]);
            truncate(&root.join(t.strip_prefix(&b.root).unwrap()), cut);
            assert_recovers_to_previous(&b, &root, &format!("{} cut at {cut}", t.display()));
            std::fs::remove_dir_all(&root).unwrap();
        }
    }
}

#[test]
fn journal_ahead_of_a_table_log_is_corruption() {
    let b = build();
    let scratch = tempfile::tempdir().unwrap();
    for t in table_files(&b) {
        let root = scratch.path().join("x");
        copy_dir(&b.root, &root);
        let tr = root.join(t.strip_prefix(&b.root).unwrap());
        truncate(&tr, b.before[&t]);
        match open_and_read(&root, &tr) {
            Err(Error::Corruption { file, .. }) => assert!(file.starts_with(root.join("tables"))),
            other => panic!("expected corruption, got {:?}", other.err()),
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}

#[test]
fn strict_mode_reports_torn_tails() {
    let b = build();
    let j = journal_file(&b);
    let scratch = tempfile::tempdir().unwrap();
    let strict = Config {
        recovery: RecoveryMode::Strict,
        ..cfg()
    };
    for cut in [b.before[&j] + 1, b.before[&j] + 13, b.after[&j] - 1] {
        let root = scratch.path().join(format!("c{cut}"));
        copy_dir(&b.root, &root);
        let jr = root.join(j.strip_prefix(&b.root).unwrap());
        truncate(&jr, cut);
        match Store::open(&root, strict.clone()) {
            Err(Error::Corruption { file, offset, .. }) => {
                assert_eq!(file, jr);
                assert_eq!(offset, b.before[&j]);
            }
            other => panic!("cut {cut}: expected corruption, got {:?}", other.err()),
        }
        // The file is untouched; the tolerant mode then recovers.
        assert_eq!(std::fs::metadata(&jr).unwrap().len(), cut);
        assert_recovers_to_previous(&b, &root, "tolerant after strict");
    }
    // A cut exactly between frames is no damage: table frames past the journal are cut.
    let root = scratch.path().join("clean");
    copy_dir(&b.root, &root);
    truncate(&root.join(j.strip_prefix(&b.root).unwrap()), b.before[&j]);
    let s = Store::open(&root, strict).unwrap();
    drop(s);
    assert_recovers_to_previous(&b, &root, "clean cut, strict");
}

#[test]
fn reader_treats_a_torn_journal_tail_as_not_yet_written() {
    let b = build();
    let j = journal_file(&b);
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("r");
    copy_dir(&b.root, &root);
    let jr = root.join(j.strip_prefix(&b.root).unwrap());
    truncate(&jr, b.after[&j] - 3);
    let mut r = Store::open(&root, reader_cfg()).unwrap();
    assert_eq!(r.current_seq().unwrap(), b.prev_seq);
    assert_eq!(scan_all(&mut r, T, b.prev_seq, &AllCommitted), b.prev_t);
    assert_eq!(std::fs::metadata(&jr).unwrap().len(), b.after[&j] - 3);
}

/// The start of the frame holding byte `pos` (0 for the segment header).
fn frame_start(bytes: &[u8], pos: usize) -> Option<usize> {
    if pos < SEGMENT_HEADER_LEN {
        return Some(0);
    }
    let mut at = SEGMENT_HEADER_LEN;
    loop {
        match read_frame(bytes, at) {
            FrameRead::Frame { next, .. } if pos < next => return Some(at),
            FrameRead::Frame { next, .. } => at = next,
            _ => return None,
        }
    }
}

/// The table whose log `file` is; `None` for the journal.
fn table_of(file: &Path) -> Option<TableId> {
    let dir = file.parent()?;
    if !dir.parent()?.ends_with("tables") {
        return None;
    }
    dir.file_name()?.to_str()?.parse().ok()
}

/// Opens a writer on `root`, where `damaged` was damaged. Damage of the journal fails the
/// open. Damage of a table log fails every read and append of that table, the other table
/// still reads whole, and the failed append writes nothing.
fn open_and_read(root: &Path, damaged: &Path) -> Result<()> {
    let Some(t) = table_of(damaged) else {
        return Store::open(root, cfg()).map(drop);
    };
    let mut s = Store::open(root, cfg()).expect("a damaged table log fails that table only");
    let now = s.current_seq().unwrap();
    let (other, rows) = if t == T { (U, 5) } else { (T, 6) };
    assert_eq!(scan_all(&mut s, other, now, &AllCommitted).len(), rows);
    let read = s.scan(t, now, &AllCommitted).map(|scan| scan.count());
    let files = log_files(root);
    let append = s.append(
        &[txn(
            8,
            vec![ins(other, "new", &[(1, "x")]), ins(t, "new", &[(1, "x")])],
        )],
        &AllCommitted,
    );
    assert_eq!(log_files(root), files, "a failed append wrote to a log");
    match (read, append) {
        (
            Err(Error::Corruption { file, offset, .. }),
            Err(Error::Corruption {
                file: f2,
                offset: o2,
                ..
            }),
        ) => {
            assert_eq!((&file, offset), (&f2, o2), "read and append disagree");
            Err(Error::Corruption {
                file,
                offset,
                detail: "as read".into(),
            })
        }
        (read, append) => panic!(
            "{}: read gave {:?}, append {:?}",
            damaged.display(),
            read.err(),
            append.err()
        ),
    }
}

#[test]
fn flipped_bytes_in_earlier_frames_are_corruption_at_their_frame() {
    let b = build();
    let scratch = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for f in b.after.keys() {
        let good = std::fs::read(f).unwrap();
        // Frames before the last one.
        let mut last_start = SEGMENT_HEADER_LEN;
        while let FrameRead::Frame { next, .. } = read_frame(&good, last_start) {
            if next == good.len() {
                break;
            }
            last_start = next;
        }
        for pos in 0..last_start {
            let expected = frame_start(&good, pos).unwrap() as u64;
            let mut bad = good.clone();
            bad[pos] ^= 1 << (pos % 8);
            let root = scratch.path().join(format!("f{checked}"));
            copy_dir(&b.root, &root);
            let fr = root.join(f.strip_prefix(&b.root).unwrap());
            std::fs::write(&fr, &bad).unwrap();
            match open_and_read(&root, &fr) {
                Err(Error::Corruption {
                    file,
                    offset,
                    detail,
                }) => {
                    assert_eq!(file, fr, "byte {pos}: {detail}");
                    assert_eq!(offset, expected, "byte {pos} of {}: {detail}", fr.display());
                }
                other => panic!(
                    "byte {pos} of {}: expected corruption, got {:?}",
                    fr.display(),
                    other.err()
                ),
            }
            // The damaged file is never rewritten.
            assert_eq!(std::fs::read(&fr).unwrap(), bad);
            std::fs::remove_dir_all(&root).unwrap();
            checked += 1;
        }
    }
    assert!(checked > 300, "{checked}");
}

#[test]
fn reader_reports_damage_below_the_seq_it_needs() {
    let b = build();
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("r");
    copy_dir(&b.root, &root);
    let t = table_files(&b)
        .into_iter()
        .find(|p| p.parent().unwrap().ends_with("1"))
        .unwrap();
    let tr = root.join(t.strip_prefix(&b.root).unwrap());
    let mut bytes = std::fs::read(&tr).unwrap();
    let second = match read_frame(&bytes, SEGMENT_HEADER_LEN) {
        FrameRead::Frame { next, .. } => next,
        other => panic!("{other:?}"),
    };
    bytes[second + 14] ^= 0x40;
    std::fs::write(&tr, &bytes).unwrap();
    let mut r = Store::open(&root, reader_cfg()).unwrap();
    // The journal is intact; seq 3 needs the damaged second frame of the table log.
    assert_eq!(r.current_seq().unwrap(), b.prev_seq + 4);
    match r.scan(T, 3, &AllCommitted).map(|s| s.count()) {
        Err(Error::Corruption { file, offset, .. }) => {
            assert_eq!(file, tr);
            assert_eq!(offset, second as u64);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

/// A store opened with `recover: false` (another process recovered the files since they
/// were last left mid-change) reads no table at open; told of the tables that recovery
/// found damaged, it refuses them with the same error; it reads and appends to the others,
/// finding a table's log end when it first appends to it.
#[test]
fn a_store_opened_after_recovery_refuses_what_recovery_found_and_appends() {
    let b = build();
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("store");
    copy_dir(&b.root, &root);
    // T's first frame damaged; the last transaction cut off before its journal frame (its
    // table frames are past the journal, which recovery cuts).
    let t_log = table_files(&b)
        .into_iter()
        .find(|f| table_of(f) == Some(T))
        .unwrap();
    let t_log = root.join(t_log.strip_prefix(&b.root).unwrap());
    let mut bytes = std::fs::read(&t_log).unwrap();
    bytes[SEGMENT_HEADER_LEN + 10] ^= 0x40;
    std::fs::write(&t_log, &bytes).unwrap();
    let j = journal_file(&b);
    truncate(&root.join(j.strip_prefix(&b.root).unwrap()), b.before[&j]);

    let mut recovering = Store::open(&root, cfg()).unwrap();
    assert_eq!(recovering.damaged_tables(), vec![T]);
    let expected = match recovering
        .scan(T, b.prev_seq, &AllCommitted)
        .map(|s| s.count())
    {
        Err(Error::Corruption { file, offset, .. }) => (file, offset),
        other => panic!("expected corruption, got {:?}", other.err()),
    };
    assert_eq!(expected, (t_log.clone(), SEGMENT_HEADER_LEN as u64));
    let u_log = table_files(&b)
        .into_iter()
        .find(|f| table_of(f) == Some(U))
        .unwrap();
    let u_log = root.join(u_log.strip_prefix(&b.root).unwrap());
    assert_eq!(
        std::fs::metadata(&u_log).unwrap().len(),
        b.before[&b.root.join(u_log.strip_prefix(&root).unwrap())],
        "recovery cut U's log back to the journal"
    );
    drop(recovering);

    let quick = Config {
        recover: false,
        ..cfg()
    };
    let mut s = Store::open(&root, quick.clone()).unwrap();
    assert_eq!(
        s.damaged_tables(),
        Vec::<TableId>::new(),
        "nothing read at open"
    );
    s.check_tables(&[T]).unwrap();
    assert_eq!(s.damaged_tables(), vec![T]);
    match s.scan(T, b.prev_seq, &AllCommitted).map(|s| s.count()) {
        Err(Error::Corruption { file, offset, .. }) => assert_eq!((file, offset), expected),
        other => panic!("expected corruption, got {:?}", other.err()),
    }
    match s.append(&[txn(9, vec![ins(T, "new", &[(1, "x")])])], &AllCommitted) {
        Err(Error::Corruption { file, offset, .. }) => assert_eq!((file, offset), expected),
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(scan_all(&mut s, U, b.prev_seq, &AllCommitted), b.prev_u);
    let c = s
        .append(
            &[txn(10, vec![ins(U, "u7", &[(1, "seven")])])],
            &AllCommitted,
        )
        .unwrap();
    assert_eq!(c[0].first_seq, b.prev_seq + 1);
    drop(s);

    let mut s = Store::open(&root, quick).unwrap();
    let now = s.current_seq().unwrap();
    assert_eq!(now, b.prev_seq + 1);
    assert_eq!(
        s.get(U, b"u7", now, &AllCommitted).unwrap(),
        Some(row(&[(1, "seven")]))
    );
    assert_eq!(
        scan_all(&mut s, U, now, &AllCommitted).len(),
        b.prev_u.len() + 1
    );
}
