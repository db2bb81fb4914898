//! Verification: re-reads everything the journal has committed, for one table at a time,
//! and reports every problem with its file and byte offset. It reads files only: it never
//! cuts, repairs or rewrites anything, and it takes no lock (the caller decides how far to
//! read: the journal as read when the [`Verifier`] was opened).
//!
//! What is checked:
//!
//! - the journal: every segment header (magic, version, kind, CRC, first seq = name; once a
//!   segment records a segment size, every later one records the same, and a segment with
//!   a later one after it is at least that long), every frame (length, `!len`, CRC), every record (decodes, seqs contiguous from 1, commit times
//!   strictly increasing). A torn tail of the last segment is not written yet, not damage.
//!   And `fates.log`, as its readers check it.
//! - a table's `meta` (CRC, decodes).
//! - every segment of the table's log, every frame: header (as for the journal, kind 2, the
//!   table's id), length and CRC, the payload decodes (event seqs strictly increasing within
//!   the frame), group seqs strictly increasing along the log, the first frame of a segment
//!   holds the group the segment is named for.
//! - the log against the journal: every group the journal records for the table (after the
//!   table's creation seq, up to the journal's last group) has exactly one frame, with the
//!   group's xid, its events within the group's seqs, and, for a group touching only this
//!   table, as many events as the journal records; and no frame exists for a group the
//!   journal does not record for the table.
//! - every snapshot up to the journal's last seq: header, footer, directory, block CRCs and
//!   the whole-file checksum (as [`Snapshot::open_verified`] does), keys strictly increasing, each
//!   block's first key as the directory says, each index section sorted and holding exactly
//!   the `(index key, key)` pairs of the rows (index keys of the section's kind; a row value
//!   not valid for the kind is reported), and the rows equal to the table's state rebuilt
//!   from the log at the snapshot's seq (from the previous snapshot found equal to the log,
//!   or from the start), counting the groups the given [`Fates`] call committed, as the
//!   snapshot builder does. A key history section (where each key's events are) is checked
//!   like the rows: keys strictly increasing, first keys as the directory says, and equal to
//!   the frames the log holds for each key up to the snapshot's seq. Once the log itself is
//!   damaged or disagrees with the journal, later snapshots are still checked for integrity
//!   but no longer compared with it.
//!
//! Memory: a frame at a time (its length is checked against the file before anything is
//! read), plus, while a snapshot is still ahead, the table's events since the last snapshot
//! found equal to the log (what a read of the past at that seq holds too) and where they
//! are.

use std::cell::RefCell;
use std::collections::{btree_map, BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::iter::Peekable;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, IoContext, Result};
use crate::format::{
    frame_keys, FramePositions, JournalRecord, SegmentHeader, TableFrame, FRAME_HEADER_LEN,
    KIND_JOURNAL, KIND_TABLE, MAX_FRAME_LEN, POSITIONS_FROM, SEGMENT_HEADER_LEN,
};
use crate::index::index_key;
use crate::log::list_segments;
use crate::settled::{FatesLog, SettledFates};
use crate::snapshot::Snapshot;
use crate::store::{HistoryMerge, Store};
use crate::table::{effect, list_snapshots, snapshot_file_name, Delta, Effect, TableMeta};
use crate::types::{Fate, Fates, Row, Seq, TableId};

/// One key's frames: `(group, offset, first and last seq of the key's events there, and
/// for a frame larger than POSITIONS_FROM the seq and payload position of each)`.
type KeyFrames = Vec<(Seq, u64, Seq, Seq, Vec<(Seq, u32)>)>;

/// Problems listed in one report; further ones are only counted.
pub const MAX_PROBLEMS: usize = 20;
/// Bytes read from a file at a time.
const CHUNK: usize = 1 << 20;
/// Frames (or snapshot blocks) between two calls of the progress callback.
const TICK_EVERY: u64 = 256;

/// One thing wrong, where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// Byte offset in `file` of the damaged frame, header or block (0 for a file's header
    /// or for the file as a whole).
    pub offset: u64,
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at offset {}: {}",
            self.file.display(),
            self.offset,
            self.detail
        )
    }
}

/// The problems of one report: the first [`MAX_PROBLEMS`] listed, the rest counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Problems {
    pub listed: Vec<Problem>,
    /// Problems found beyond those listed.
    pub more: u64,
}

impl Problems {
    /// `r`'s value; a corruption it reports is added here instead (`None`), any other
    /// error is returned.
    fn noted<T>(&mut self, r: Result<T>) -> Result<Option<T>> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(Error::Corruption {
                file,
                offset,
                detail,
            }) => {
                self.add(&file, offset, detail);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn add(&mut self, file: &Path, offset: u64, detail: impl Into<String>) {
        if self.listed.len() < MAX_PROBLEMS {
            self.listed.push(Problem {
                file: file.to_path_buf(),
                offset,
                detail: detail.into(),
            });
        } else {
            self.more += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.listed.is_empty() && self.more == 0
    }

    /// Every problem found, listed or not.
    pub fn total(&self) -> u64 {
        self.listed.len() as u64 + self.more
    }
}

/// What verifying the journal found (and the store's record of fates, `fates.log`, which
/// every table's reads depend on too).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalReport {
    /// Journal frames (transaction groups) read and checked.
    pub groups: u64,
    /// The last seq of the last group read whole: tables are verified up to it.
    pub last_seq: Seq,
    pub problems: Problems,
}

impl JournalReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What verifying one table found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableReport {
    pub table: TableId,
    /// False when the table has no files: nothing was ever written to it.
    pub exists: bool,
    /// Table-log frames read and checked (their CRC passed).
    pub frames: u64,
    /// Events in those frames.
    pub events: u64,
    /// Snapshots opened and checked for integrity.
    pub snapshots: u64,
    /// Of those, snapshots whose rows were compared with the state rebuilt from the log.
    pub snapshots_compared: u64,
    pub problems: Problems,
}

impl TableReport {
    fn new(table: TableId) -> TableReport {
        TableReport {
            table,
            exists: false,
            frames: 0,
            events: 0,
            snapshots: 0,
            snapshots_compared: 0,
            problems: Problems::default(),
        }
    }

    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One group as the journal records it, for the tables it names.
#[derive(Clone, Copy, Debug)]
struct GroupRef {
    first_seq: Seq,
    count: u64,
    xid: u64,
    /// The group has events in other tables too.
    shared: bool,
}

/// Reads a store's files to verify them. Opening it reads and verifies the journal, which
/// fixes how far every table is verified: groups appended later are not looked at.
pub struct Verifier {
    root: PathBuf,
    journal: JournalReport,
    /// The fates the store recorded (`fates.log`), as read when opened.
    settled: Arc<SettledFates>,
    /// Per table (of those asked for), the groups the journal records for it, in seq order.
    groups: HashMap<TableId, Vec<GroupRef>>,
    /// The tables to be verified (`None`: any), whose groups are kept.
    wanted: Option<HashSet<TableId>>,
    progress: Option<Box<dyn FnMut()>>,
}

impl Verifier {
    /// Reads and verifies the journal under `root`. Damage is reported in
    /// [`Verifier::journal`]; only I/O errors are errors.
    pub fn open(root: impl AsRef<Path>) -> Result<Verifier> {
        Verifier::open_with(root.as_ref(), None)
    }

    /// Like [`Verifier::open`], keeping in memory only what verifying `tables` needs (the
    /// journal's groups of the other tables are checked, not kept). Other tables then
    /// verify as if the journal recorded nothing for them.
    pub fn open_for(root: impl AsRef<Path>, tables: &[TableId]) -> Result<Verifier> {
        Verifier::open_with(root.as_ref(), Some(tables.iter().copied().collect()))
    }

    fn open_with(root: &Path, wanted: Option<HashSet<TableId>>) -> Result<Verifier> {
        let mut v = Verifier {
            root: root.to_path_buf(),
            journal: JournalReport::default(),
            settled: Arc::default(),
            groups: HashMap::new(),
            wanted,
            progress: None,
        };
        v.journal = v.read_journal(None)?;
        let mut fates = FatesLog::new(root);
        match fates.refresh() {
            Ok(()) => v.settled = fates.settled.clone(),
            Err(Error::Corruption {
                file,
                offset,
                detail,
            }) => v.journal.problems.add(&file, offset, detail),
            Err(e) => return Err(e),
        }
        Ok(v)
    }

    /// The fates the store recorded itself (`fates.log`), read when this verifier was
    /// opened: a caller's [`Fates`] should answer from them first, as the store's readers
    /// do, since the caller's commit log may have forgotten those transactions.
    pub fn settled(&self) -> Arc<SettledFates> {
        self.settled.clone()
    }

    /// Calls `f` regularly during long verifications (to let the caller check for a
    /// cancel request).
    pub fn on_progress(mut self, f: impl FnMut() + 'static) -> Verifier {
        self.progress = Some(Box::new(f));
        self
    }

    /// What verifying the journal (and the store's record of fates, `fates.log`) found.
    pub fn journal(&self) -> &JournalReport {
        &self.journal
    }

    fn tick(&mut self) {
        if let Some(f) = self.progress.as_mut() {
            f();
        }
    }

    /// Reads the journal, keeping the groups of the wanted tables. With `upto`, stops after
    /// that seq (a second reading, for a table not wanted at first, of what the first one
    /// read: those bytes do not change).
    fn read_journal(&mut self, upto: Option<Seq>) -> Result<JournalReport> {
        let dir = self.root.join("journal");
        let segs = list_segments(&dir)?;
        let mut next: Seq = 1;
        let mut last_ts: Option<i64> = None;
        let mut report = JournalReport::default();
        // The segment size recorded by the first segment that records one.
        let mut size: Option<u64> = None;
        'segs: for (k, (name, path)) in segs.iter().enumerate() {
            let last_segment = k + 1 == segs.len();
            let mut r = SegmentReader::open(path)?;
            let h = match r.header()? {
                Err(detail) => {
                    report.problems.add(path, 0, detail);
                    break;
                }
                Ok(h) if h.kind != KIND_JOURNAL || h.first_seq != *name => {
                    report.problems.add(
                        path,
                        0,
                        "journal segment header does not match its name and directory",
                    );
                    break;
                }
                Ok(h) => h,
            };
            // Any size is possible, but once a segment records one, every later one records
            // the same (a store opening with another size fails), and a segment another
            // follows was filled up to it first (readers rely on that to skip listings).
            match (size, h.recorded_segment_size()) {
                (Some(s), this) if this != Some(s) => report.problems.add(
                    path,
                    0,
                    format!(
                        "journal segment header records segment size {}, but an earlier segment records {s}",
                        this.unwrap_or(0)
                    ),
                ),
                (None, this) => size = this,
                _ => {}
            }
            if let Some(s) = h
                .recorded_segment_size()
                .filter(|s| !last_segment && r.len < *s)
            {
                report.problems.add(
                    path,
                    0,
                    format!(
                        "journal segment holds {} bytes, fewer than the segment size {s} its header records, yet a later segment follows",
                        r.len
                    ),
                );
            }
            if *name != next {
                report.problems.add(
                    path,
                    0,
                    format!(
                        "journal segment starts at seq {name}, but the journal before it ends at seq {}",
                        next - 1
                    ),
                );
                break;
            }
            let mut pos = SEGMENT_HEADER_LEN as u64;
            loop {
                if report.groups.is_multiple_of(TICK_EVERY) {
                    self.tick();
                }
                let (payload, after) = match r.frame(pos)? {
                    Read::End => break,
                    Read::Damaged { torn: true, .. } if last_segment => break 'segs,
                    Read::Damaged { detail, .. } => {
                        report.problems.add(path, pos, detail);
                        break 'segs;
                    }
                    Read::Frame { next } => (r.payload(pos, next), next),
                };
                let rec = match JournalRecord::decode(payload) {
                    Ok(rec) if upto.is_some_and(|u| rec.first_seq > u) => break 'segs,
                    Ok(rec) => rec,
                    Err(d) => {
                        report.problems.add(
                            path,
                            pos,
                            format!("journal record does not decode: {d}"),
                        );
                        break 'segs;
                    }
                };
                if rec.first_seq != next {
                    report.problems.add(
                        path,
                        pos,
                        format!(
                            "journal record starts at seq {}, expected {next}",
                            rec.first_seq
                        ),
                    );
                    break 'segs;
                }
                if last_ts.is_some_and(|t| rec.commit_ts <= t) {
                    report.problems.add(
                        path,
                        pos,
                        format!(
                            "commit time of group {} is not after the previous group's",
                            rec.first_seq
                        ),
                    );
                }
                last_ts = Some(rec.commit_ts);
                let shared = rec.tables.len() > 1;
                for t in &rec.tables {
                    if self.wanted.as_ref().is_some_and(|w| !w.contains(t)) {
                        continue;
                    }
                    self.groups.entry(*t).or_default().push(GroupRef {
                        first_seq: rec.first_seq,
                        count: rec.count,
                        xid: rec.xid,
                        shared,
                    });
                }
                next = rec.first_seq + rec.count;
                report.groups += 1;
                pos = after;
            }
        }
        report.last_seq = next - 1;
        Ok(report)
    }

    /// Verifies table `id` up to the journal's last group (as read when this verifier was
    /// opened). `fates` decides which groups a snapshot holds (as when it was built).
    pub fn verify_table(&mut self, id: TableId, fates: &dyn Fates) -> Result<TableReport> {
        let dir = self.root.join("tables").join(id.to_string());
        let limit = self.journal.last_seq;
        if let Some(mut wanted) = self.wanted.take_if(|w| !w.contains(&id)) {
            // Not asked for when opened: collect its groups now, up to the same seq.
            self.wanted = Some(HashSet::from([id]));
            let read = self.read_journal(Some(limit));
            if read.is_ok() {
                wanted.insert(id);
            } else {
                self.groups.remove(&id);
            }
            self.wanted = Some(wanted);
            read?;
        }
        let recorded = self.groups.get(&id).cloned().unwrap_or_default();
        let mut check = TableCheck {
            id,
            limit,
            report: TableReport::new(id),
            fates: CachedFates {
                inner: fates,
                cache: RefCell::new(HashMap::new()),
            },
            dir: dir.clone(),
            snaps: Vec::new(),
            next_snap: 0,
            base: None,
            delta: Delta::with_indexes(0, &[]),
            history_base: None,
            positions: BTreeMap::new(),
            poisoned: false,
            progress: self.progress.as_mut(),
        };
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                check.report.problems.add(&dir, 0, "not a directory");
                return Ok(check.report);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Never written, unless the journal says otherwise.
                if let Some(g) = recorded.first() {
                    check.report.problems.add(
                        &dir,
                        0,
                        format!(
                            "the journal records {} groups of this table (the first at seq {}), \
                             but the table has no directory",
                            recorded.len(),
                            g.first_seq
                        ),
                    );
                }
                return Ok(check.report);
            }
            Err(e) => return Err(e).at(&dir),
        }
        check.report.exists = true;
        let created = match TableMeta::load(&dir) {
            Ok(m) => Some(m.created_seq),
            Err(Error::Corruption {
                file,
                offset,
                detail,
            }) => {
                check.report.problems.add(&file, offset, detail);
                None
            }
            Err(Error::IoAt { path, source }) if source.kind() == std::io::ErrorKind::NotFound => {
                check.report.problems.add(&path, 0, "table meta is missing");
                None
            }
            Err(e) => return Err(e),
        };
        let segs: Vec<(Seq, PathBuf)> = list_segments(&dir)?
            .into_iter()
            .filter(|(first, _)| *first <= limit)
            .collect();
        // Without a readable meta, groups before the log's first segment are taken to
        // belong to an earlier table of the same id.
        let created =
            created.unwrap_or_else(|| segs.first().map_or(limit, |s| s.0.saturating_sub(1)));
        let expected: Vec<GroupRef> = recorded
            .into_iter()
            .filter(|g| g.first_seq > created)
            .collect();
        check.snaps = list_snapshots(&dir)?
            .into_iter()
            .filter(|s| *s <= limit)
            .collect();
        check.walk_log(&segs, &expected)?;
        check.finish_snapshots()?;
        Ok(check.report)
    }
}

impl Store {
    /// Verifies table `id`: every frame of every segment of its log, the log against the
    /// journal, and every snapshot (see [`Verifier`]), up to the journal's last group as
    /// read now. Reads files only.
    pub fn verify(&self, id: TableId, fates: &dyn Fates) -> Result<TableReport> {
        Verifier::open_for(self.root(), &[id])?.verify_table(id, fates)
    }

    /// Verifies the journal: every segment header, frame and record.
    pub fn verify_journal(&self) -> Result<JournalReport> {
        Ok(Verifier::open_for(self.root(), &[])?.journal)
    }
}

/// Remembers the fate of each transaction asked about.
struct CachedFates<'a> {
    inner: &'a dyn Fates,
    cache: RefCell<HashMap<u64, Fate>>,
}

impl Fates for CachedFates<'_> {
    fn fate(&self, xid: u64) -> Fate {
        if let Some(f) = self.cache.borrow().get(&xid) {
            return *f;
        }
        let f = self.inner.fate(xid);
        self.cache.borrow_mut().insert(xid, f);
        f
    }
}

/// The verification of one table in progress.
struct TableCheck<'v> {
    id: TableId,
    dir: PathBuf,
    limit: Seq,
    report: TableReport,
    fates: CachedFates<'v>,
    /// Snapshot seqs to check, ascending, and the next one.
    snaps: Vec<Seq>,
    next_snap: usize,
    /// The last snapshot found equal to the log, and the events after it.
    base: Option<Arc<Snapshot>>,
    delta: Delta,
    /// The last snapshot whose key history section was found equal to the log, and for
    /// each key the frames after it (from the start without one) holding its events (see
    /// [`KeyFrames`]).
    history_base: Option<Arc<Snapshot>>,
    positions: BTreeMap<Vec<u8>, KeyFrames>,
    /// The log is damaged or disagrees with the journal: the state it gives is not the
    /// table's, so snapshots are no longer compared with it.
    poisoned: bool,
    progress: Option<&'v mut Box<dyn FnMut()>>,
}

impl TableCheck<'_> {
    fn tick(&mut self) {
        if let Some(f) = self.progress.as_mut() {
            f();
        }
    }

    fn problem(&mut self, file: &Path, offset: u64, detail: impl Into<String>) {
        self.report.problems.add(file, offset, detail);
    }

    /// Reads every segment, frame by frame, checking each against the journal's groups
    /// and feeding the snapshot checks.
    fn walk_log(&mut self, segs: &[(Seq, PathBuf)], expected: &[GroupRef]) -> Result<()> {
        let mut exp = expected.iter().copied().peekable();
        let mut prev_group: Seq = 0;
        'segs: for (k, (name, path)) in segs.iter().enumerate() {
            let last_segment = k + 1 == segs.len();
            let next_name = segs.get(k + 1).map(|s| s.0);
            let mut r = SegmentReader::open(path)?;
            match r.header()? {
                Err(detail) => self.problem(path, 0, detail),
                Ok(h) if h.kind != KIND_TABLE => {
                    self.problem(path, 0, "segment header is not a table log's")
                }
                Ok(h) if h.table != self.id => {
                    self.problem(path, 0, format!("segment header names table {}", h.table))
                }
                Ok(h) if h.first_seq != *name => self.problem(
                    path,
                    0,
                    format!(
                        "segment header says first seq {}, its name {name}",
                        h.first_seq
                    ),
                ),
                Ok(_) => {}
            }
            let mut pos = SEGMENT_HEADER_LEN as u64;
            let mut first = true;
            loop {
                let decoded = match r.frame(pos)? {
                    Read::End => {
                        if first && r.len >= SEGMENT_HEADER_LEN as u64 {
                            self.problem(path, pos, format!("segment {name} holds no frame"));
                        }
                        break;
                    }
                    // Past every group the journal had committed for this table: an
                    // append in flight, or a torn tail the next writer cuts.
                    Read::Damaged { torn: true, .. } if last_segment && exp.peek().is_none() => {
                        break 'segs;
                    }
                    Read::Damaged { detail, .. } => {
                        // Frame boundaries are lost for the rest of this segment.
                        let mut lost = 0u64;
                        while exp
                            .peek()
                            .is_some_and(|g| next_name.is_none_or(|n| g.first_seq < n))
                        {
                            exp.next();
                            lost += 1;
                        }
                        let detail = if lost > 0 {
                            format!(
                                "{detail} ({lost} groups the journal records for this table \
                                 cannot be read from here to the end of the segment)"
                            )
                        } else {
                            detail.to_string()
                        };
                        self.problem(path, pos, detail);
                        self.poisoned = true;
                        break;
                    }
                    Read::Frame { next } => {
                        let p = r.payload(pos, next);
                        // Where each event starts, for the key history of a large frame.
                        let at = (p.len() > POSITIONS_FROM)
                            .then(|| frame_keys(p).ok())
                            .flatten()
                            .map(|(_, events)| events.into_iter().map(|e| e.2).collect());
                        (TableFrame::decode(p), next, at)
                    }
                };
                let (frame, after, event_at): (_, _, Option<Vec<u32>>) = decoded;
                first = false;
                let frame = match frame {
                    Ok(f) => f,
                    Err(d) => {
                        self.problem(path, pos, format!("frame does not decode: {d}"));
                        self.poisoned = true;
                        pos = after;
                        continue;
                    }
                };
                let g = frame.group_seq;
                if g > self.limit {
                    // Appended after the journal was read: not verified.
                    break 'segs;
                }
                self.report.frames += 1;
                self.report.events += frame.events.len() as u64;
                if self.report.frames.is_multiple_of(TICK_EVERY) {
                    self.tick();
                }
                if pos == SEGMENT_HEADER_LEN as u64 && g != *name {
                    self.problem(
                        path,
                        pos,
                        format!("segment {name} starts with a frame of group {g}"),
                    );
                }
                if g <= prev_group {
                    self.problem(
                        path,
                        pos,
                        format!(
                            "frame of group {g} after group {prev_group}: group seqs must increase"
                        ),
                    );
                    self.poisoned = true;
                    pos = after;
                    continue;
                }
                prev_group = g;
                let mut missing = 0u64;
                let mut first_missing = 0;
                while let Some(e) = exp.next_if(|e| e.first_seq < g) {
                    if missing == 0 {
                        first_missing = e.first_seq;
                    }
                    missing += 1;
                }
                if missing > 0 {
                    self.problem(
                        path,
                        pos,
                        format!(
                            "no frame for group {first_missing}, which the journal records for \
                             this table ({missing} such groups missing before this frame)"
                        ),
                    );
                    self.poisoned = true;
                }
                match exp.next_if(|e| e.first_seq == g) {
                    Some(e) => self.check_against_journal(&frame, &e, path, pos),
                    None => {
                        self.problem(
                            path,
                            pos,
                            format!(
                                "frame of group {g}, which the journal does not record for this table"
                            ),
                        );
                        self.poisoned = true;
                    }
                }
                self.snapshots_before(g)?;
                if self.next_snap < self.snaps.len() && !self.poisoned {
                    for (i, (seq, key, _)) in frame.events.iter().enumerate() {
                        let frames = match self.positions.get_mut(key) {
                            Some(f) => f,
                            None => self.positions.entry(key.clone()).or_default(),
                        };
                        let at = event_at.as_ref().and_then(|a| a.get(i)).map(|a| (*seq, *a));
                        match frames.last_mut() {
                            Some(last) if last.0 == g => {
                                last.3 = *seq;
                                last.4.extend(at);
                            }
                            _ => frames.push((g, pos, *seq, *seq, at.into_iter().collect())),
                        }
                    }
                    self.delta.add_frame_after(frame, 0);
                }
                pos = after;
            }
        }
        let rest: Vec<GroupRef> = exp.collect();
        if let Some(g) = rest.first() {
            let (file, offset) = match segs.last() {
                Some((_, p)) => (p.clone(), std::fs::metadata(p).map_or(0, |m| m.len())),
                None => (self.dir.clone(), 0),
            };
            self.problem(
                &file,
                offset,
                format!(
                    "table log ends before group {}, which the journal records ({} such groups missing)",
                    g.first_seq,
                    rest.len()
                ),
            );
            self.poisoned = true;
        }
        Ok(())
    }

    fn check_against_journal(&mut self, frame: &TableFrame, g: &GroupRef, path: &Path, pos: u64) {
        if frame.xid != g.xid {
            self.problem(
                path,
                pos,
                format!(
                    "frame of group {} has transaction {}, the journal records {}",
                    g.first_seq, frame.xid, g.xid
                ),
            );
            self.poisoned = true;
        }
        let last = g.first_seq + g.count - 1;
        let n = frame.events.len() as u64;
        if frame.events.last().is_some_and(|e| e.0 > last) {
            self.problem(
                path,
                pos,
                format!(
                    "frame of group {} has an event past the group's last seq {last}",
                    g.first_seq
                ),
            );
            self.poisoned = true;
        } else if !g.shared && n != g.count {
            self.problem(
                path,
                pos,
                format!(
                    "frame of group {} has {n} events, the journal records {}",
                    g.first_seq, g.count
                ),
            );
            self.poisoned = true;
        }
    }

    /// Checks every snapshot whose seq is below group `g` (all of its events are read).
    fn snapshots_before(&mut self, g: Seq) -> Result<()> {
        while self.snaps.get(self.next_snap).is_some_and(|s| *s < g) {
            self.check_next_snapshot()?;
        }
        Ok(())
    }

    fn finish_snapshots(&mut self) -> Result<()> {
        while self.next_snap < self.snaps.len() {
            self.check_next_snapshot()?;
        }
        Ok(())
    }

    fn check_next_snapshot(&mut self) -> Result<()> {
        let seq = self.snaps[self.next_snap];
        self.next_snap += 1;
        self.tick();
        let path = self.dir.join(snapshot_file_name(seq));
        let snap = match Snapshot::open_verified(&path, self.id) {
            Ok(s) => s,
            Err(Error::Corruption {
                file,
                offset,
                detail,
            }) => {
                self.problem(&file, offset, detail);
                return Ok(());
            }
            // Pruned by a newer snapshot since the directory was listed.
            Err(Error::IoAt { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.report.snapshots += 1;
        if snap.seq != seq {
            self.problem(
                &path,
                0,
                format!("snapshot of seq {} is named for seq {seq}", snap.seq),
            );
            return Ok(());
        }
        let compare = !self.poisoned;
        let state =
            compare.then(|| StateRows::new(self.base.as_deref(), &self.delta, seq, &self.fates));
        let mut problems = std::mem::take(&mut self.report.problems);
        let before = problems.total();
        let progress = self.progress.as_deref_mut();
        let equal = check_snapshot(&snap, state, &mut problems, progress)?;
        let snap = Arc::new(snap);
        let expected = compare.then(|| {
            let after: BTreeMap<Vec<u8>, FramePositions> = self
                .positions
                .iter()
                .filter_map(|(key, frames)| {
                    let mine: FramePositions = frames
                        .iter()
                        .filter(|f| f.2 <= seq)
                        .map(|f| {
                            let at = f.4.iter().filter(|e| e.0 <= seq).map(|e| e.1);
                            (f.0, f.1, at.collect())
                        })
                        .collect();
                    (!mine.is_empty()).then(|| (key.clone(), mine))
                })
                .collect();
            HistoryMerge::new(self.history_base.clone(), after)
        });
        let history_equal = check_key_history(&snap, expected, &mut problems)?;
        let sound = problems.total() == before;
        self.report.problems = problems;
        if compare {
            self.report.snapshots_compared += 1;
        }
        if compare && equal && sound {
            self.delta.rebase(seq);
            self.base = Some(snap.clone());
        }
        if compare && history_equal && sound && snap.has_history() {
            // What the section holds need not be kept: only frames with events after it.
            self.positions.retain(|_, frames| {
                frames.retain(|f| f.3 > seq);
                !frames.is_empty()
            });
            self.history_base = Some(snap);
        }
        if self.next_snap >= self.snaps.len() {
            // No snapshot left to compare: stop collecting events.
            self.delta = Delta::with_indexes(0, &[]);
            self.positions = BTreeMap::new();
        }
        Ok(())
    }
}

/// The key as hex, shortened.
fn show_key(key: &[u8]) -> String {
    let mut s: String = key.iter().take(32).map(|b| format!("{b:02x}")).collect();
    if key.len() > 32 {
        s.push_str("...");
    }
    s
}

/// `(count, sum of hashes)` of a set of `(index key, key)` pairs: equal sets give equal sums,
/// whatever the order they are added in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct PairSum {
    n: u64,
    sum: u64,
}

impl PairSum {
    fn add(&mut self, value: &[u8], key: &[u8]) {
        let mut h = std::hash::DefaultHasher::new();
        value.hash(&mut h);
        key.hash(&mut h);
        self.n += 1;
        self.sum = self.sum.wrapping_add(h.finish());
    }
}

/// Checks a snapshot's rows (keys strictly increasing, first keys as the directory says),
/// its index sections (sorted, holding exactly the rows' `(index key, key)` pairs, by each
/// section's kind; a value not valid for the kind is reported), and, when
/// `state` is given, that the rows equal it. Adds what is wrong to `problems`; returns
/// whether the rows equal `state` (true when there is none).
fn check_snapshot(
    snap: &Snapshot,
    mut state: Option<StateRows<'_>>,
    problems: &mut Problems,
    mut progress: Option<&mut Box<dyn FnMut()>>,
) -> Result<bool> {
    let path = snap.path.clone();
    let index_cols = snap.index_columns();
    let mut from_rows = vec![PairSum::default(); index_cols.len()];
    let mut prev_key: Option<Vec<u8>> = None;
    let mut differ = Differences::default();
    let mut end = 0u64;
    for i in 0..snap.row_blocks() {
        if let Some(f) = progress.as_mut() {
            f();
        }
        let (offset, first) = snap.row_block_start(i);
        let first = first.to_vec();
        end = offset;
        let Some(rows) = problems.noted(snap.row_block(i))? else {
            return Ok(false);
        };
        if rows.first().map(|r| r.0.as_slice()) != Some(first.as_slice()) {
            problems.add(
                &path,
                offset,
                "the block's first key is not the one the directory gives",
            );
        }
        for (key, row) in rows.iter() {
            if prev_key.as_ref().is_some_and(|p| p >= key) {
                problems.add(
                    &path,
                    offset,
                    format!("key {} is not after the key before it", show_key(key)),
                );
                return Ok(false);
            }
            prev_key = Some(key.clone());
            for (sum, (col, kind)) in from_rows.iter_mut().zip(&index_cols) {
                if let Some(v) = row.get(*col) {
                    match index_key(*kind, v) {
                        Ok(k) => sum.add(&k, key),
                        Err(e) => {
                            problems.add(
                                &path,
                                offset,
                                format!(
                                    "the row under key {} has in column {col}, which the \
                                     snapshot indexes by kind {kind}, {e}",
                                    show_key(key)
                                ),
                            );
                            // Filed under the empty index key, as the writer files it.
                            sum.add(&[], key);
                        }
                    }
                }
            }
            let Some(state) = state.as_mut() else {
                continue;
            };
            loop {
                match state.peek(problems)? {
                    Some((k, _)) if k < key => {
                        differ.note(
                            offset,
                            format!("the row under key {} is missing", show_key(k)),
                        );
                        state.take();
                    }
                    Some((k, r)) if k == key => {
                        if r != row {
                            differ.note(
                                offset,
                                format!("the row under key {} differs", show_key(key)),
                            );
                        }
                        state.take();
                        break;
                    }
                    _ => {
                        differ.note(
                            offset,
                            format!("the row under key {} should not be there", show_key(key)),
                        );
                        break;
                    }
                }
            }
        }
    }
    if let Some(state) = state.as_mut() {
        while let Some((k, _)) = state.peek(problems)? {
            differ.note(end, format!("the row under key {} is missing", show_key(k)));
            state.take();
        }
        if state.failed {
            return Ok(false);
        }
    }
    for ((col, kind), rows_sum) in index_cols.iter().zip(&from_rows) {
        let mut sum = PairSum::default();
        let mut prev: Option<(Vec<u8>, Vec<u8>)> = None;
        let mut section_at = None;
        for i in 0..snap.index_blocks(*col) {
            let Some((offset, first, entries)) = problems.noted(snap.index_block(*col, i))? else {
                return Ok(false);
            };
            section_at.get_or_insert(offset);
            if entries.first().map(|e| e.0.as_slice()) != Some(first) {
                problems.add(
                    &path,
                    offset,
                    format!(
                        "index block of column {col} ({kind}): the first index key is not the one the directory gives"
                    ),
                );
            }
            for e in entries {
                if prev.as_ref().is_some_and(|p| *p >= e) {
                    problems.add(
                        &path,
                        offset,
                        format!(
                            "index of column {col} ({kind}): entries not in (index key, key) order"
                        ),
                    );
                    return Ok(false);
                }
                sum.add(&e.0, &e.1);
                prev = Some(e);
            }
        }
        if sum != *rows_sum {
            problems.add(
                &path,
                section_at.unwrap_or(0),
                format!(
                    "index of column {col} ({kind}) holds {} entries that do not match the rows' {} values",
                    sum.n, rows_sum.n
                ),
            );
        }
    }
    Ok(differ.report(
        problems,
        snap,
        "snapshot content differs from the state rebuilt from the log",
        "rows",
    ))
}

/// Checks a snapshot's key history section (keys strictly increasing, first keys as the
/// directory says) and, when `expected` is given, that it holds exactly those records.
/// Adds what is wrong to `problems`; returns whether the section equals `expected` (true
/// when there is none, or no section: a snapshot written before sections existed).
fn check_key_history(
    snap: &Snapshot,
    mut expected: Option<HistoryMerge>,
    problems: &mut Problems,
) -> Result<bool> {
    if !snap.has_history() {
        return Ok(true);
    }
    let path = snap.path.clone();
    let mut differ = Differences::default();
    let mut prev_key: Option<Vec<u8>> = None;
    let mut end = 0u64;
    let comparing = expected.is_some();
    let mut next_expected = |problems: &mut Problems| -> Result<Option<(Vec<u8>, FramePositions)>> {
        let next = expected.as_mut().and_then(Iterator::next).transpose();
        Ok(problems.noted(next)?.flatten())
    };
    let mut want = next_expected(problems)?;
    for i in 0..snap.history_blocks() {
        let Some((offset, first, records)) = problems.noted(snap.history_block(i))? else {
            return Ok(false);
        };
        end = offset;
        if records.first().map(|r| r.0.as_slice()) != Some(first) {
            problems.add(
                &path,
                offset,
                "key history block: the first key is not the one the directory gives",
            );
        }
        for (key, frames) in records {
            if prev_key.as_ref().is_some_and(|p| *p >= key) {
                problems.add(
                    &path,
                    offset,
                    format!(
                        "key history: key {} is not after the key before it",
                        show_key(&key)
                    ),
                );
                return Ok(false);
            }
            if comparing {
                while let Some((k, _)) = want.as_ref().filter(|(k, _)| *k < key) {
                    differ.note(offset, format!("key {} is missing", show_key(k)));
                    want = next_expected(problems)?;
                }
                match &mut want {
                    Some((k, f)) if *k == key => {
                        if !snap.has_history_positions() {
                            // Written before positions existed: the frames alone.
                            f.iter_mut().for_each(|f| f.2.clear());
                        }
                        if *f != frames {
                            differ.note(
                                offset,
                                format!("the frames of key {} differ", show_key(&key)),
                            );
                        }
                        want = next_expected(problems)?;
                    }
                    _ => differ.note(
                        offset,
                        format!("key {} has no event in the log", show_key(&key)),
                    ),
                }
            }
            prev_key = Some(key);
        }
    }
    while let Some((k, _)) = &want {
        differ.note(end, format!("key {} is missing", show_key(k)));
        want = next_expected(problems)?;
    }
    Ok(differ.report(problems, snap, "key history differs from the log", "keys"))
}

/// Rows where a snapshot and the log's state differ: the first, and how many.
#[derive(Default)]
struct Differences {
    first: Option<(u64, String)>,
    count: u64,
}

impl Differences {
    fn note(&mut self, offset: u64, what: String) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some((offset, what));
        }
    }

    /// Adds the first difference, and how many `units` differ, to `problems` as one
    /// problem of `snap` ("`subject` at seq S: ..."); whether there was none.
    fn report(self, problems: &mut Problems, snap: &Snapshot, subject: &str, units: &str) -> bool {
        let Some((offset, what)) = self.first else {
            return true;
        };
        problems.add(
            &snap.path,
            offset,
            format!(
                "{subject} at seq {}: {what} ({} {units} differ in all)",
                snap.seq, self.count
            ),
        );
        false
    }
}

/// The rows of a table at one seq, rebuilt from a base snapshot and the events after it,
/// in key order.
struct StateRows<'a> {
    snap: Option<&'a Snapshot>,
    next_block: usize,
    rows: Arc<Vec<(Vec<u8>, Row)>>,
    pos: usize,
    overlay: Peekable<btree_map::IntoIter<Vec<u8>, Effect>>,
    peeked: Option<(Vec<u8>, Row)>,
    /// The base snapshot could not be read: the state is incomplete.
    failed: bool,
}

impl<'a> StateRows<'a> {
    fn new(snap: Option<&'a Snapshot>, delta: &Delta, upto: Seq, fates: &dyn Fates) -> Self {
        let overlay: BTreeMap<Vec<u8>, Effect> = delta
            .keys
            .iter()
            .filter_map(|(k, vs)| effect(vs, upto, fates).map(|e| (k.clone(), e)))
            .collect();
        StateRows {
            snap,
            next_block: 0,
            rows: Arc::new(Vec::new()),
            pos: 0,
            overlay: overlay.into_iter().peekable(),
            peeked: None,
            failed: false,
        }
    }

    /// The next row, without taking it. Damage of the base snapshot is added to
    /// `problems` and ends the rows.
    fn peek(&mut self, problems: &mut Problems) -> Result<Option<(&[u8], &Row)>> {
        if self.peeked.is_none() && !self.failed {
            match self.next_row() {
                Ok(r) => self.peeked = r,
                Err(Error::Corruption {
                    file,
                    offset,
                    detail,
                }) => {
                    problems.add(&file, offset, detail);
                    self.failed = true;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(self.peeked.as_ref().map(|(k, r)| (k.as_slice(), r)))
    }

    fn take(&mut self) {
        self.peeked = None;
    }

    fn next_row(&mut self) -> Result<Option<(Vec<u8>, Row)>> {
        loop {
            if self.pos >= self.rows.len() {
                if let Some(s) = self.snap {
                    if self.next_block < s.row_blocks() {
                        self.rows = s.row_block(self.next_block)?;
                        self.pos = 0;
                        self.next_block += 1;
                        continue;
                    }
                }
            }
            let base_key = self.rows.get(self.pos).map(|(k, _)| k.as_slice());
            let order = match (base_key, self.overlay.peek()) {
                (None, None) => return Ok(None),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(b), Some((o, _))) => b.cmp(o.as_slice()),
            };
            match order {
                std::cmp::Ordering::Less => {
                    let row = self.rows[self.pos].clone();
                    self.pos += 1;
                    return Ok(Some(row));
                }
                std::cmp::Ordering::Equal => {
                    let base = self.rows[self.pos].1.clone();
                    self.pos += 1;
                    if let Some((k, e)) = self.overlay.next() {
                        if let Some(r) = e.apply(Some(base)) {
                            return Ok(Some((k, r)));
                        }
                    }
                }
                std::cmp::Ordering::Greater => {
                    if let Some((k, e)) = self.overlay.next() {
                        if let Some(r) = e.apply(None) {
                            return Ok(Some((k, r)));
                        }
                    }
                }
            }
        }
    }
}

/// What [`SegmentReader::frame`] found at a position.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// Exactly at the end of the file.
    End,
    /// A whole frame with a good CRC ending at `next`; its payload is
    /// [`SegmentReader::payload`].
    Frame { next: u64 },
    /// A damaged or incomplete frame; `torn` when only zeroes (or nothing) follow it, as
    /// a crash or an append in flight leaves the end of a log (`docs/format.md`).
    Damaged { detail: &'static str, torn: bool },
}

/// Reads one segment file frame by frame with `pread`, a chunk at a time. Never maps the
/// file (a writer may cut its tail meanwhile) and never reads more than the file holds.
struct SegmentReader {
    file: File,
    path: PathBuf,
    len: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    at: u64,
}

impl SegmentReader {
    fn open(path: &Path) -> Result<SegmentReader> {
        let file = File::open(path).at(path)?;
        let len = file.metadata().at(path)?.len();
        Ok(SegmentReader {
            file,
            path: path.to_path_buf(),
            len,
            buf: Vec::new(),
            at: 0,
        })
    }

    /// Bytes `at..at + n` (which the caller checked are below `len`); `None` when the file
    /// turned out shorter (cut meanwhile).
    fn bytes(&mut self, at: u64, n: usize) -> Result<Option<&[u8]>> {
        let end = at + n as u64;
        if at < self.at || end > self.at + self.buf.len() as u64 {
            let want = (n.max(CHUNK) as u64).min(self.len.saturating_sub(at)) as usize;
            self.buf.clear();
            self.buf.resize(want.max(n), 0);
            let mut got = 0;
            while got < self.buf.len() {
                match self.file.read_at(&mut self.buf[got..], at + got as u64) {
                    Ok(0) => break,
                    Ok(k) => got += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e).at(&self.path),
                }
            }
            self.buf.truncate(got);
            self.at = at;
            if got < n {
                return Ok(None);
            }
        }
        let off = (at - self.at) as usize;
        Ok(Some(&self.buf[off..off + n]))
    }

    /// The segment header, decoded.
    fn header(&mut self) -> Result<std::result::Result<SegmentHeader, &'static str>> {
        if self.len < SEGMENT_HEADER_LEN as u64 {
            return Ok(Err("file is shorter than a segment header"));
        }
        Ok(match self.bytes(0, SEGMENT_HEADER_LEN)? {
            Some(h) => SegmentHeader::decode(h),
            None => Err("file is shorter than a segment header"),
        })
    }

    /// Whether every byte from `at` to the end of the file is zero.
    fn zeroes_from(&mut self, mut at: u64) -> Result<bool> {
        while at < self.len {
            let n = (self.len - at).min(CHUNK as u64) as usize;
            match self.bytes(at, n)? {
                Some(b) if b.iter().all(|x| *x == 0) => at += n as u64,
                Some(_) => return Ok(false),
                None => return Ok(true),
            }
        }
        Ok(true)
    }

    /// Reads the frame at `pos` (as [`crate::format::read_frame`] does, with the same
    /// rules for a torn tail).
    fn frame(&mut self, pos: u64) -> Result<Read> {
        if pos >= self.len {
            return Ok(Read::End);
        }
        if self.len - pos < FRAME_HEADER_LEN as u64 {
            return Ok(Read::Damaged {
                detail: "partial frame header at the end of the file",
                torn: true,
            });
        }
        let shrank = Read::Damaged {
            detail: "the file was cut while being read",
            torn: true,
        };
        let Some(h) = self.bytes(pos, FRAME_HEADER_LEN)? else {
            return Ok(shrank);
        };
        let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let (len, check, crc) = (word(0), word(4), word(8));
        if check != !len || len == 0 || len > MAX_FRAME_LEN {
            let torn = self.zeroes_from(pos + FRAME_HEADER_LEN as u64)?;
            return Ok(Read::Damaged {
                detail: "damaged frame header",
                torn,
            });
        }
        let start = pos + FRAME_HEADER_LEN as u64;
        let end = start + u64::from(len);
        if end > self.len {
            return Ok(Read::Damaged {
                detail: "frame runs past the end of the file",
                torn: true,
            });
        }
        let Some(payload) = self.bytes(start, len as usize)? else {
            return Ok(shrank);
        };
        if crc32fast::hash(payload) != crc {
            let torn = self.zeroes_from(end)?;
            return Ok(Read::Damaged {
                detail: "frame crc mismatch",
                torn,
            });
        }
        Ok(Read::Frame { next: end })
    }

    /// The payload of the frame [`SegmentReader::frame`] just read at `pos`.
    fn payload(&self, pos: u64, next: u64) -> &[u8] {
        let start = (pos + FRAME_HEADER_LEN as u64 - self.at) as usize;
        &self.buf[start..(next - self.at) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Durability};
    use crate::snapshot::snapshot_bytes;
    use crate::types::{AllCommitted, Event, Op, Txn};

    fn row(v: &str) -> Row {
        Row(vec![(1, Some(v.as_bytes().to_vec()))])
    }

    #[test]
    fn wrong_rows_in_a_valid_snapshot_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            durability: Durability::NoSync,
            ..Config::default()
        };
        let mut s = Store::open(dir.path(), config).unwrap();
        s.create_table(7).unwrap();
        let events = ["a", "b", "c"]
            .iter()
            .map(|k| Event {
                table: 7,
                key: k.as_bytes().to_vec(),
                op: Op::Insert(row(k)),
            })
            .collect();
        let txn = Txn {
            xid: 1,
            commit_ts: 1,
            role: "r".into(),
            events,
        };
        s.append(&[txn], &AllCommitted).unwrap();
        let seq = s.snapshot(7, 3, &AllCommitted).unwrap();
        assert!(s.verify(7, &AllCommitted).unwrap().ok());
        let path = dir.path().join("tables/7").join(snapshot_file_name(seq));
        let rewrite = |rows: Vec<(&str, Row)>| {
            let rows = rows
                .into_iter()
                .map(|(k, r)| Ok((k.as_bytes().to_vec(), r)));
            // The one frame, of group 1, right after the segment header.
            let history = ["a", "b", "c"].iter().map(|k| {
                let frame = (1, SEGMENT_HEADER_LEN as u64, Vec::new());
                Ok((k.as_bytes().to_vec(), vec![frame]))
            });
            let bytes = snapshot_bytes(
                &path,
                7,
                seq,
                rows,
                &[(1, crate::index::IndexKind::Bytes)],
                Some(history),
                true,
            )
            .unwrap();
            std::fs::write(&path, bytes).unwrap();
        };
        // Checksums are right; the rows are not the log's.
        rewrite(vec![("a", row("A")), ("b", row("b")), ("d", row("d"))]);
        let r = s.verify(7, &AllCommitted).unwrap();
        let p = &r.problems.listed;
        assert_eq!(p.len(), 1, "{r:?}");
        assert_eq!(
            (&p[0].file, p[0].offset),
            (&path, SEGMENT_HEADER_LEN as u64)
        );
        assert!(
            p[0].detail
                .ends_with("at seq 3: the row under key 61 differs (3 rows differ in all)"),
            "{}",
            p[0].detail
        );
        // Keys out of order are reported as such, before any comparison.
        rewrite(vec![("b", row("b")), ("a", row("a")), ("c", row("c"))]);
        let r = s.verify(7, &AllCommitted).unwrap();
        assert_eq!(r.problems.total(), 1, "{r:?}");
        assert_eq!(
            r.problems.listed[0].detail,
            "snapshot keys not strictly increasing"
        );
        rewrite(vec![("a", row("a")), ("b", row("b")), ("c", row("c"))]);
        assert!(s.verify(7, &AllCommitted).unwrap().ok());
    }

    /// A snapshot's canonical index section is checked against the rows by its kind: the
    /// right keys verify (as does a section of another kind than the table's index, which
    /// readers rebuild from the rows instead of using); keys of the wrong kind, keys out of
    /// order and a first key other than the directory's are reported.
    #[test]
    fn a_damaged_canonical_index_section_is_reported() {
        use crate::format::{put_bytes, SECTION_INDEX, SECTION_INDEX_KEYED, SECTION_ROWS};
        use crate::index::{entry_key, IndexKind};
        use crate::snapshot::{row_record, snapshot_of_sections};
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            durability: Durability::NoSync,
            ..Config::default()
        };
        let mut s = Store::open(dir.path(), config).unwrap();
        s.create_table(7).unwrap();
        s.create_index(7, 1, IndexKind::Numeric).unwrap();
        // 1.0 (short, dscale 1), 1.00 (long, dscale 2), -2.
        let values: [(&str, Vec<u8>); 3] = [
            ("a", vec![0x80, 0x80, 1, 0]),
            ("b", vec![0x02, 0x00, 0x00, 0x00, 1, 0]),
            ("c", vec![0x00, 0xA0, 2, 0]),
        ];
        let rows: Vec<(Vec<u8>, Row)> = values
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), Row(vec![(1, Some(v.clone()))])))
            .collect();
        let events = rows
            .iter()
            .map(|(k, r)| Event {
                table: 7,
                key: k.clone(),
                op: Op::Insert(r.clone()),
            })
            .collect();
        let txn = Txn {
            xid: 1,
            commit_ts: 1,
            role: "r".into(),
            events,
        };
        s.append(&[txn], &AllCommitted).unwrap();
        let seq = s.snapshot(7, 3, &AllCommitted).unwrap();
        assert!(s.verify(7, &AllCommitted).unwrap().ok());
        let path = dir.path().join("tables/7").join(snapshot_file_name(seq));

        let mut row_raw = Vec::new();
        for (k, r) in &rows {
            row_raw.extend(row_record(k, r));
        }
        let entries = |kind: IndexKind| -> Vec<(Vec<u8>, Vec<u8>)> {
            let mut e: Vec<_> = rows
                .iter()
                .map(|(k, r)| (entry_key(kind, r.get(1).unwrap()), k.clone()))
                .collect();
            e.sort();
            e
        };
        let problems = |section: u8,
                        kind: IndexKind,
                        entries: Vec<(Vec<u8>, Vec<u8>)>,
                        first: Option<Vec<u8>>| {
            let mut raw = Vec::new();
            for (v, k) in &entries {
                put_bytes(&mut raw, v);
                put_bytes(&mut raw, k);
            }
            let first = first.unwrap_or_else(|| entries[0].0.clone());
            let bytes = snapshot_of_sections(
                7,
                seq,
                vec![
                    (
                        SECTION_ROWS,
                        0,
                        IndexKind::Bytes,
                        vec![(row_raw.clone(), b"a".to_vec())],
                    ),
                    (section, 1, kind, vec![(raw, first)]),
                ],
            );
            std::fs::write(&path, bytes).unwrap();
            let r = s.verify(7, &AllCommitted).unwrap();
            r.problems
                .listed
                .iter()
                .map(|p| p.detail.clone())
                .collect::<Vec<_>>()
        };
        let keyed = entries(IndexKind::Numeric);
        assert_eq!(keyed[0].1, b"c");
        assert_eq!(keyed[1].0, keyed[2].0, "1.0 and 1.00 have one key");
        assert_eq!(
            problems(SECTION_INDEX_KEYED, IndexKind::Numeric, keyed.clone(), None),
            Vec::<String>::new()
        );
        assert_eq!(
            problems(
                SECTION_INDEX,
                IndexKind::Bytes,
                entries(IndexKind::Bytes),
                None
            ),
            Vec::<String>::new()
        );
        // The stored bytes where the canonical keys belong.
        assert_eq!(
            problems(
                SECTION_INDEX_KEYED,
                IndexKind::Numeric,
                entries(IndexKind::Bytes),
                None
            ),
            ["index of column 1 (numeric) holds 3 entries that do not match the rows' 3 values"]
        );
        // In order, but b's entry says 1.5.
        let mut wrong = keyed.clone();
        wrong[2].0 = entry_key(IndexKind::Numeric, &[0x80, 0x80, 1, 0, 0x88, 0x13]);
        assert!(wrong[1] < wrong[2]);
        assert_eq!(
            problems(SECTION_INDEX_KEYED, IndexKind::Numeric, wrong, None),
            ["index of column 1 (numeric) holds 3 entries that do not match the rows' 3 values"]
        );
        let mut swapped = keyed.clone();
        swapped.swap(0, 2);
        assert_eq!(
            problems(SECTION_INDEX_KEYED, IndexKind::Numeric, swapped, None),
            ["index of column 1 (numeric): entries not in (index key, key) order"]
        );
        assert_eq!(
            problems(SECTION_INDEX_KEYED, IndexKind::Numeric, keyed.clone(), Some(vec![9])),
            ["index block of column 1 (numeric): the first index key is not the one the directory gives"]
        );
        // The rows hold 1.0 under an index of kind float8: not a value of the kind.
        let p = problems(
            SECTION_INDEX_KEYED,
            IndexKind::Float8,
            entries(IndexKind::Float8),
            None,
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].starts_with("the row under key 61 has in column 1, which the snapshot indexes by kind float8, not a valid float8 value: 4 bytes"),
            "{p:?}"
        );
    }

    fn reader_over(bytes: &[u8]) -> (tempfile::TempDir, SegmentReader) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        std::fs::write(&path, bytes).unwrap();
        let r = SegmentReader::open(&path).unwrap();
        (dir, r)
    }

    fn frame_header(len: u32, check: u32) -> Vec<u8> {
        let mut b = vec![0u8; SEGMENT_HEADER_LEN];
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&check.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b
    }

    #[test]
    fn a_claimed_length_is_never_trusted() {
        // A well-formed header claiming the largest frame, in a 44-byte file.
        let (_d, mut r) = reader_over(&frame_header(MAX_FRAME_LEN, !MAX_FRAME_LEN));
        assert_eq!(
            r.frame(32).unwrap(),
            Read::Damaged {
                detail: "frame runs past the end of the file",
                torn: true
            }
        );
        assert!(r.buf.capacity() <= 64, "{}", r.buf.capacity());
        // A damaged length: torn when only zeroes follow, damage when data does.
        let mut bytes = frame_header(5, 5);
        bytes.extend_from_slice(&[0; 100]);
        let (_d, mut r) = reader_over(&bytes);
        assert_eq!(
            r.frame(32).unwrap(),
            Read::Damaged {
                detail: "damaged frame header",
                torn: true
            }
        );
        bytes.push(1);
        let (_d, mut r) = reader_over(&bytes);
        assert_eq!(
            r.frame(32).unwrap(),
            Read::Damaged {
                detail: "damaged frame header",
                torn: false
            }
        );
        assert_eq!(r.frame(bytes.len() as u64).unwrap(), Read::End);
        let (_d, mut r) = reader_over(&bytes[..40]);
        assert_eq!(
            r.frame(32).unwrap(),
            Read::Damaged {
                detail: "partial frame header at the end of the file",
                torn: true
            }
        );
    }

    #[test]
    fn problems_beyond_the_cap_are_counted() {
        let mut p = Problems::default();
        for i in 0..MAX_PROBLEMS as u64 + 5 {
            p.add(Path::new("f"), i, "x");
        }
        assert_eq!((p.listed.len(), p.more, p.total()), (MAX_PROBLEMS, 5, 25));
        assert_eq!(p.listed[3].to_string(), "f at offset 3: x");
    }

    #[test]
    fn pair_sums_ignore_order_and_see_every_pair() {
        let pairs: [(&[u8], &[u8]); 3] = [(b"v1", b"k1"), (b"v2", b"k2"), (b"v1", b"k3")];
        let mut forward = PairSum::default();
        pairs.iter().for_each(|(v, k)| forward.add(v, k));
        let mut backward = PairSum::default();
        pairs.iter().rev().for_each(|(v, k)| backward.add(v, k));
        assert_eq!(forward, backward);
        let mut other = PairSum::default();
        [(b"v1", b"k1"), (b"v2", b"k3"), (b"v1", b"k2")]
            .iter()
            .for_each(|(v, k)| other.add(*v, *k));
        assert_eq!(other.n, forward.n);
        assert_ne!(other, forward);
    }
}
