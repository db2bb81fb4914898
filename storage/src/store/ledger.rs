//! The store's ledger (issue #21, `docs/ledger.md`): one leaf per committed group, in seq
//! order, kept in `<root>/ledger/` ([`LedgerFiles`]), with digests, inclusion and
//! consistency proofs, and the check of a digest against the log.
//!
//! Leaves are computed from the log itself: each group's journal record and its frame in
//! each of its tables ([`crate::ledger::leaf`]). Aborted groups are not leaves; a group whose
//! transaction is undecided stops the ledger there. The ledger's files are derived data,
//! recomputable from the log: they are written directly, not through the store's
//! write-ahead [`FileOp`](crate::FileOp)s, and one writer at a time extends them (the
//! caller's duty, as for appends).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{OpenMode, Store};
use crate::error::{Error, IoContext, Result};
use crate::format::{
    peek_group_seq, DecodeResult, JournalRecord, SegmentHeader, FRAME_HEADER_LEN, KIND_JOURNAL,
    MAX_FRAME_LEN, SEGMENT_HEADER_LEN,
};
use crate::journal::GroupInfo;
use crate::ledger::files::{LeafRecord, LeafTableRecord, LedgerFiles, LEDGER_DIR};
use crate::ledger::hash::{leaf_hash, Hash, RootBuilder, EMPTY_ROOT};
use crate::ledger::kept::{self, KeptWriter};
use crate::ledger::leaf::{put_section_from_payload, GroupHead, LeafHasher, LeafHashes, LeafSink};
use crate::ledger::report::{
    DigestReport, Divergence, StoredTree, TableDiff, LISTED_SEQS, MAX_DIVERGENCES,
};
use crate::ledger::{ConsistencyProof, InclusionProof, LedgerDigest};
use crate::log::list_segments;
use crate::table::Resume;
use crate::types::{Fate, Fates, Seq, TableId};

/// Groups made leaves per batch: their leaf hashes are computed together, reading each of
/// their tables' logs once.
const BATCH: usize = 4096;
/// Leaves the diagnosis of a digest looks ahead to realign the log with the ledger.
const LOOKAHEAD: usize = 8;
/// Bytes read from a journal segment at a time.
const CHUNK: usize = 64 << 10;

/// Where reading the journal goes on: a segment (its first seq), an offset in it, and the
/// first seq of the record there.
type JournalPos = (Seq, u64, Seq);

/// A store's open ledger.
pub(crate) struct LedgerState {
    files: LedgerFiles,
    /// Where the last extension stopped reading the journal (the next record to look at):
    /// the groups between the last leaf and it were aborted.
    journal_at: Option<JournalPos>,
    /// Per table (id, creation seq), where the ledger's last read of its log stopped.
    cursors: HashMap<(TableId, Seq), Resume>,
}

/// An error for a request the ledger cannot answer (not damage).
fn invalid(detail: String) -> Error {
    Error::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        detail,
    ))
}

/// Reads journal records in order with `pread`, from a given seq (or from a remembered
/// position), checking segment headers, frames and contiguity, never past `limit` (the
/// journal as the store has read it: whole frames only).
struct JournalRecords {
    segs: Vec<(Seq, PathBuf)>,
    /// The segment being read, its open file and length.
    i: usize,
    file: Option<(File, u64)>,
    buf: Vec<u8>,
    buf_at: u64,
    pos: u64,
    /// The first seq of the record at `pos`.
    expect: Seq,
    /// Records before this seq are read (to get past them) but not returned.
    from: Seq,
    limit: Seq,
    /// Records read.
    records: u64,
}

impl JournalRecords {
    /// Reads from the record of seq `from` (a group's first seq), starting at `at` when
    /// given (a position at or before it), else at the start of the segment holding `from`.
    fn new(dir: &Path, from: Seq, at: Option<JournalPos>, limit: Seq) -> Result<JournalRecords> {
        let segs = list_segments(dir)?;
        let holding = |seq: Seq| segs.partition_point(|s| s.0 <= seq).checked_sub(1);
        let start = at
            .filter(|(seg, _, seq)| *seq <= from && segs.binary_search_by_key(seg, |s| s.0).is_ok())
            .map(|(seg, off, seq)| {
                let i = segs.binary_search_by_key(&seg, |s| s.0).expect("checked");
                (i, off, seq)
            });
        let (i, pos, expect) = match start {
            Some(s) => s,
            None => match holding(from) {
                Some(i) => (i, 0, segs[i].0),
                // No segment holds it: nothing to read (an empty journal).
                None => (segs.len(), 0, from),
            },
        };
        Ok(JournalRecords {
            segs,
            i,
            file: None,
            buf: Vec::new(),
            buf_at: 0,
            pos,
            expect,
            from,
            limit,
            records: 0,
        })
    }

    /// Where the next record is read.
    fn position(&self) -> Option<JournalPos> {
        let seg = self.segs.get(self.i)?.0;
        Some((seg, self.pos.max(SEGMENT_HEADER_LEN as u64), self.expect))
    }

    fn rewind(&mut self, (seg, pos, expect): JournalPos) {
        let i = self
            .segs
            .binary_search_by_key(&seg, |s| s.0)
            .expect("a position of this reader");
        if i != self.i {
            self.file = None;
            self.buf.clear();
        }
        (self.i, self.pos, self.expect) = (i, pos, expect);
    }

    fn path(&self) -> &Path {
        &self.segs[self.i].1
    }

    /// Makes `buf` hold bytes `[at, at + n)` of the current segment; false when the file is
    /// shorter.
    fn fill(&mut self, at: u64, n: usize) -> Result<bool> {
        if at >= self.buf_at && at + n as u64 <= self.buf_at + self.buf.len() as u64 {
            return Ok(true);
        }
        let path = self.segs[self.i].1.clone();
        let (file, len) = self.file.as_mut().expect("opened");
        if at + n as u64 > *len {
            *len = file.metadata().at(&path)?.len();
            if at + n as u64 > *len {
                return Ok(false);
            }
        }
        let want = n.max(CHUNK).min((*len - at) as usize);
        self.buf.resize(want, 0);
        file.read_exact_at(&mut self.buf, at).at(&path)?;
        self.buf_at = at;
        Ok(true)
    }

    fn open_segment(&mut self) -> Result<()> {
        let (first, path) = self.segs[self.i].clone();
        let file = File::open(&path).at(&path)?;
        let len = file.metadata().at(&path)?.len();
        self.file = Some((file, len));
        self.buf.clear();
        if self.pos < SEGMENT_HEADER_LEN as u64 {
            if !self.fill(0, SEGMENT_HEADER_LEN)? {
                return Err(Error::corruption(&path, 0, "short segment header"));
            }
            let h = SegmentHeader::decode(&self.buf).map_err(|d| Error::corruption(&path, 0, d))?;
            // The header's third word records the segment size (see `format::SegmentHeader`).
            if h.kind != KIND_JOURNAL || h.first_seq != first {
                return Err(Error::corruption(
                    &path,
                    0,
                    "journal segment header does not match its name",
                ));
            }
            if first != self.expect {
                return Err(Error::corruption(
                    &path,
                    0,
                    format!(
                        "journal segment starts at seq {first}, expected {}",
                        self.expect
                    ),
                ));
            }
            self.pos = SEGMENT_HEADER_LEN as u64;
        }
        Ok(())
    }

    /// The next record at or after `from` with its position, or `None` once the next one
    /// starts past `limit`.
    fn next(&mut self) -> Result<Option<(JournalRecord, JournalPos)>> {
        loop {
            if self.expect > self.limit {
                return Ok(None);
            }
            if self.i >= self.segs.len() {
                return Err(Error::corruption(
                    self.segs.last().map_or(PathBuf::new(), |s| s.1.clone()),
                    self.pos,
                    format!("the journal has no segment holding seq {}", self.expect),
                ));
            }
            if self.file.is_none() {
                self.open_segment()?;
            }
            let at = self.pos;
            if !self.fill(at, FRAME_HEADER_LEN)? {
                let len = self.file.as_ref().expect("opened").1;
                if at == len && self.i + 1 < self.segs.len() {
                    // This segment is done; the next one starts at the next seq.
                    self.i += 1;
                    self.pos = 0;
                    self.file = None;
                    continue;
                }
                return Err(Error::corruption(
                    self.path(),
                    at,
                    format!("the journal ends before seq {}", self.expect),
                ));
            }
            let h = &self.buf[(at - self.buf_at) as usize..][..FRAME_HEADER_LEN];
            let word = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes"));
            let (n, check, crc) = (word(0), word(4), word(8));
            if check != !n || n == 0 || n > MAX_FRAME_LEN {
                return Err(Error::corruption(self.path(), at, "bad frame header"));
            }
            if !self.fill(at, FRAME_HEADER_LEN + n as usize)? {
                return Err(Error::corruption(
                    self.path(),
                    at,
                    "journal frame runs past the end",
                ));
            }
            let start = (at - self.buf_at) as usize + FRAME_HEADER_LEN;
            let payload = &self.buf[start..start + n as usize];
            if crc32fast::hash(payload) != crc {
                return Err(Error::corruption(self.path(), at, "frame crc mismatch"));
            }
            let rec = JournalRecord::decode(payload)
                .map_err(|d| Error::corruption(self.path(), at, d))?;
            self.records += 1;
            if rec.first_seq != self.expect {
                return Err(Error::corruption(
                    self.path(),
                    at,
                    format!(
                        "journal record at seq {}, expected {}",
                        rec.first_seq, self.expect
                    ),
                ));
            }
            let here = (self.segs[self.i].0, at, rec.first_seq);
            self.pos = at + (FRAME_HEADER_LEN + n as usize) as u64;
            self.expect = rec.first_seq + rec.count;
            if rec.first_seq >= self.from {
                return Ok(Some((rec, here)));
            }
        }
    }
}

/// One group's leaf, computed from the log.
struct Computed {
    record: JournalRecord,
    journal_at: JournalPos,
    hashes: LeafHashes,
    /// Where the group's frame is in each of its tables, in the record's table order.
    frame_offsets: Vec<u64>,
}

impl Computed {
    fn leaf_record(&self) -> LeafRecord {
        LeafRecord {
            first_seq: self.record.first_seq,
            journal_offset: self.journal_at.1,
            header: self.hashes.header,
            tables: self
                .hashes
                .sections
                .iter()
                .zip(&self.frame_offsets)
                .map(|((table, section), frame_offset)| LeafTableRecord {
                    table: *table,
                    frame_offset: *frame_offset,
                    section: *section,
                })
                .collect(),
        }
    }

    fn view(&self) -> LeafView {
        LeafView {
            first_seq: self.record.first_seq,
            leaf: self.hashes.leaf,
            header: self.hashes.header,
            sections: self.hashes.sections.clone(),
        }
    }
}

/// Why a batch of leaves ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BatchEnd {
    /// It has as many leaves as asked for: more groups may follow.
    Full,
    /// The journal (as the store read it) ends.
    End,
    /// The next group ends past the seq asked for.
    Upto,
    /// The next group's transaction is not decided.
    Undecided { seq: Seq, xid: u64 },
}

/// A table's part of a group as read: its frame's payload from the table's log, or, for a
/// dropped table, its leaf section as kept when the table was dropped.
enum Part<'a> {
    Payload(&'a [u8]),
    Section(&'a [u8]),
}

/// Writes table `table`'s leaf section of the group `head` describes from `part`.
fn put_part<S: LeafSink>(
    s: &mut S,
    head: &GroupHead<'_>,
    table: TableId,
    part: Part<'_>,
) -> DecodeResult<()> {
    match part {
        Part::Payload(p) => put_section_from_payload(s, head, table, p),
        Part::Section(bytes) => {
            if bytes.get(..8) != Some(&table.to_le_bytes()[..]) {
                return Err("a kept section of another table");
            }
            s.section_start(table);
            s.put(bytes);
            s.section_end();
            Ok(())
        }
    }
}

impl Store {
    /// Opens the ledger if it is not open, or reopens it when another store changed its
    /// files since (a reader following a writer; a writer after another one, one at a
    /// time); a writer creates it with `create`. False when there is none.
    fn open_ledger(&mut self, create: bool) -> Result<bool> {
        if let Some(st) = &self.ledger {
            if st.files.changed()? {
                self.ledger = None;
            }
        }
        if self.ledger.is_some() {
            return Ok(true);
        }
        let dir = self.root.join(LEDGER_DIR);
        let create = create && self.config.mode == OpenMode::Writer;
        if !create && !LedgerFiles::exists(&dir)? {
            return Ok(false);
        }
        let files = LedgerFiles::open(&dir, self.config.mode, self.config.recovery)?;
        self.ledger = Some(LedgerState {
            files,
            journal_at: None,
            cursors: HashMap::new(),
        });
        Ok(true)
    }

    fn ledger_files(&self) -> &LedgerFiles {
        &self.ledger.as_ref().expect("ledger opened").files
    }

    /// The journal's group of the open ledger's last leaf (`None`: no leaf). The ledger
    /// being ahead of the journal, or on another group than the journal's, means the log
    /// changed under it (or it is of another store).
    fn last_leaf_group(&self) -> Result<Option<GroupInfo>> {
        let files = self.ledger_files();
        let Some(last) = files.last() else {
            return Ok(None);
        };
        match self.journal.group_of(last.first_seq)? {
            Some(g) if g.first_seq == last.first_seq => Ok(Some(g)),
            _ => Err(Error::corruption(
                files.dir().join(crate::ledger::files::INDEX_FILE),
                0,
                format!(
                    "the ledger's last leaf is the group at seq {}, which the journal does not \
                     record: the log changed under the ledger (verify_digest says how)",
                    last.first_seq
                ),
            )),
        }
    }

    /// The digest of the open ledger.
    fn digest_now(&self) -> Result<LedgerDigest> {
        let files = self.ledger_files();
        let (last_seq, commit_time) = match self.last_leaf_group()? {
            Some(g) => (g.last_seq(), g.commit_ts),
            None => (0, 0),
        };
        Ok(LedgerDigest {
            tree_size: files.size(),
            root: files.root()?,
            last_seq,
            commit_time,
        })
    }

    /// Calls `f` with the payload and offset of table `table`'s frame of each group of
    /// `wanted` (first seqs, ascending), in order, reading the table's log from where
    /// `cursors` says an earlier read stopped (with `prime`, from where the ledger's records
    /// say the table's last leaf frame is, when this store has not read it yet).
    fn read_group_frames(
        &mut self,
        table: TableId,
        wanted: &[Seq],
        cursors: &mut HashMap<(TableId, Seq), Resume>,
        prime: bool,
        mut f: impl FnMut(usize, Part<'_>, u64) -> DecodeResult<()>,
    ) -> Result<()> {
        if wanted.is_empty() {
            return Ok(());
        }
        if let Some(e) = self.damaged.get(&table) {
            return Err(e.duplicate());
        }
        let dir = self.table_dir(table);
        let created = match self.load_table(table) {
            Ok(t) => Some(t.meta.created_seq),
            Err(Error::NoSuchTable(_)) => None,
            Err(e) => return Err(e),
        };
        // Groups of a dropped table (or of an earlier table of the same id): their
        // sections as kept when it was dropped.
        let split = created.map_or(wanted.len(), |c| wanted.partition_point(|w| *w <= c));
        if split > 0 {
            self.kept_parts(table, &wanted[..split], &mut f)?;
        }
        let (Some(created), Some(&first)) = (created, wanted.get(split)) else {
            return Ok(());
        };
        let wanted = &wanted[split..];
        let key = (table, created);
        let before = self.tables[&table].log.frames_read;
        if prime && !cursors.contains_key(&key) {
            if let Some(c) = self.stored_cursor(table, created, first - 1)? {
                cursors.insert(key, c);
            }
        }
        let groups = self.journal.groups_of(table, created)?;
        let t = self.tables.get_mut(&table).expect("loaded");
        let mut next = 0;
        let read = t.log.for_each_payload_from(
            cursors.get(&key).copied(),
            first - 1,
            *wanted.last().expect("not empty"),
            &groups,
            |payload, offset| {
                let g = peek_group_seq(payload)?;
                if wanted.get(next).is_some_and(|w| *w < g) {
                    return Err("the table log has no frame of a group the journal records for it");
                }
                if wanted.get(next) == Some(&g) {
                    f(split + next, Part::Payload(payload), offset)?;
                    next += 1;
                }
                Ok(())
            },
        );
        self.stats.ledger_frames += t.log.frames_read - before;
        if let Some(stopped) = read? {
            cursors.insert(key, stopped);
        }
        if next < wanted.len() {
            return Err(Error::corruption(
                &dir,
                0,
                format!(
                    "table log has no frame of group {}, which the journal records",
                    wanted[next]
                ),
            ));
        }
        Ok(())
    }

    /// Calls `f` with the kept section of dropped table `table` of each group of `wanted`
    /// (`kept.rs`); a group without one is gone (a table dropped before its sections were
    /// kept, or a kept file removed).
    fn kept_parts(
        &mut self,
        table: TableId,
        wanted: &[Seq],
        f: &mut impl FnMut(usize, Part<'_>, u64) -> DecodeResult<()>,
    ) -> Result<()> {
        let dir = self.root.join(LEDGER_DIR);
        let sections = kept::load(&dir, table)?;
        for (i, seq) in wanted.iter().enumerate() {
            let Some(section) = sections.get(seq) else {
                return Err(Error::corruption(
                    self.table_dir(table),
                    0,
                    format!(
                        "the group at seq {seq} has events in table {table}, which was dropped \
                         since without its leaf sections kept: its events are gone"
                    ),
                ));
            };
            f(i, Part::Section(section), 0).map_err(|d| {
                Error::corruption(
                    dir.join(format!("kept-{table}-*")),
                    0,
                    format!("the kept section of group {seq}: {d}"),
                )
            })?;
        }
        Ok(())
    }

    /// Keeps the leaf sections of every group of table `table` (whatever its fate) in the
    /// ledger's directory (`ledger/kept.rs`), so that its files may be removed
    /// ([`Store::drop_table`]) while every group of the table can still be made a leaf,
    /// checked against a digest ([`Store::verify_digest`]) and proven: the sections hold
    /// the events' keys, ops, column ids and value commitments, not the values. Call it
    /// when no transaction can write the table any more, before dropping it. Reads the
    /// table's whole log once; the file is durable when this returns. A table without
    /// files is a no-op. Writers only.
    pub fn keep_table_sections(&mut self, table: TableId) -> Result<()> {
        self.require_writer()?;
        self.journal.refresh(None)?;
        let created = match self.load_table(table) {
            Ok(t) => t.meta.created_seq,
            Err(Error::NoSuchTable(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let groups: Vec<Seq> = self.journal.groups_of(table, created)?;
        let mut heads = Vec::with_capacity(groups.len());
        for g in &groups {
            match self.journal.group_of(*g)? {
                Some(info) if info.first_seq == *g => heads.push(info),
                _ => {
                    return Err(Error::corruption(
                        &self.journal.dir,
                        0,
                        format!(
                            "the journal has no group at seq {g}, which it lists for table {table}"
                        ),
                    ))
                }
            }
        }
        let dir = self.root.join(LEDGER_DIR);
        let mut writer = KeptWriter::create(&dir, table, created)?;
        let mut write_error = None;
        self.read_group_frames(table, &groups, &mut HashMap::new(), false, |i, part, _| {
            let g = &heads[i];
            let head = GroupHead {
                first_seq: g.first_seq,
                count: g.count,
                commit_ts: g.commit_ts,
                xid: g.xid,
                role: "",
                origin: None,
                ntables: 0,
            };
            writer.push(g.first_seq, |out| put_part(out, &head, table, part))?;
            if let Err(e) = writer.maybe_flush() {
                write_error.get_or_insert(e);
                return Err("could not write the kept sections");
            }
            Ok(())
        })
        .map_err(|e| write_error.take().unwrap_or(e))?;
        writer.finish()?;
        Ok(())
    }

    /// Where to start reading table `table`'s log for the groups after `after`: right after
    /// the frame of its last group at or before `after`, as the ledger's record of that
    /// group's leaf says (`None` when that group is not a leaf, or its frame is not there).
    fn stored_cursor(
        &mut self,
        table: TableId,
        created: Seq,
        after: Seq,
    ) -> Result<Option<Resume>> {
        let Some(st) = &self.ledger else {
            return Ok(None);
        };
        let groups = self.journal.groups_of(table, created)?;
        // The table's last group at or before `after` that is a leaf (aborted ones are not):
        // looked for among its last few groups.
        let mut found = None;
        for &prev in groups[..groups.partition_point(|g| *g <= after)]
            .iter()
            .rev()
            .take(16)
        {
            if let Some((j, first)) = st.files.leaf_at_or_before(prev)? {
                if first == prev {
                    found = Some((prev, j));
                    break;
                }
            }
        }
        let Some((prev, j)) = found else {
            return Ok(None);
        };
        let rec = st.files.record(j)?;
        let Some(tr) = rec.tables.iter().find(|t| t.table == table) else {
            return Ok(None);
        };
        let t = self.tables.get_mut(&table).expect("loaded");
        t.log.resume_after(prev, tr.frame_offset)
    }

    /// Computes the leaves of the next committed groups the reader gives, up to `max` of
    /// them, stopping before a group that ends past `upto` or is undecided (the reader is
    /// left at that group).
    fn leaf_batch(
        &mut self,
        reader: &mut JournalRecords,
        max: usize,
        upto: Seq,
        fates: &dyn Fates,
        cursors: &mut HashMap<(TableId, Seq), Resume>,
        prime: bool,
    ) -> Result<(Vec<Computed>, BatchEnd)> {
        let mut groups: Vec<(JournalRecord, JournalPos)> = Vec::new();
        let before = reader.records;
        let mut end = BatchEnd::Full;
        while groups.len() < max {
            let Some((rec, at)) = reader.next()? else {
                end = BatchEnd::End;
                break;
            };
            if rec.first_seq + rec.count - 1 > upto {
                reader.rewind(at);
                end = BatchEnd::Upto;
                break;
            }
            match fates.fate(rec.xid) {
                Fate::Committed => groups.push((rec, at)),
                Fate::Aborted => {}
                Fate::InProgress => {
                    reader.rewind(at);
                    end = BatchEnd::Undecided {
                        seq: rec.first_seq,
                        xid: rec.xid,
                    };
                    break;
                }
            }
        }
        self.stats.ledger_records += reader.records - before;

        let heads: Vec<GroupHead<'_>> = groups.iter().map(|(r, _)| GroupHead::of(r)).collect();
        let mut hashers: Vec<LeafHasher> = Vec::with_capacity(groups.len());
        for (head, (_, at)) in heads.iter().zip(&groups) {
            let mut h = LeafHasher::new();
            head.put(&mut h).map_err(|d| {
                Error::corruption(self.journal.dir.join(format!("{:020}.log", at.0)), at.1, d)
            })?;
            hashers.push(h);
        }
        let mut offsets: Vec<Vec<u64>> = vec![Vec::new(); groups.len()];
        let mut by_table: BTreeMap<TableId, Vec<usize>> = BTreeMap::new();
        for (k, (r, _)) in groups.iter().enumerate() {
            for t in &r.tables {
                by_table.entry(*t).or_default().push(k);
            }
        }
        // Tables in ascending order: each group's sections come in its tables' order.
        for (table, ks) in by_table {
            let wanted: Vec<Seq> = ks.iter().map(|k| groups[*k].0.first_seq).collect();
            self.read_group_frames(table, &wanted, cursors, prime, |i, part, offset| {
                let k = ks[i];
                put_part(&mut hashers[k], &heads[k], table, part)?;
                offsets[k].push(offset);
                Ok(())
            })?;
        }
        drop(heads);
        let out = groups
            .into_iter()
            .zip(hashers)
            .zip(offsets)
            .map(|(((record, journal_at), h), frame_offsets)| Computed {
                record,
                journal_at,
                hashes: h.finish(),
                frame_offsets,
            })
            .collect();
        Ok((out, end))
    }

    /// [`Store::leaf_batch`], and when it fails on damage, the leaves of the groups before
    /// the damaged one (computed again one group at a time) with the error.
    fn leaves_until_error(
        &mut self,
        reader: &mut JournalRecords,
        max: usize,
        upto: Seq,
        fates: &dyn Fates,
        cursors: &mut HashMap<(TableId, Seq), Resume>,
        prime: bool,
    ) -> (Vec<Computed>, Result<BatchEnd>) {
        let start = reader.position();
        let err = match self.leaf_batch(reader, max, upto, fates, cursors, prime) {
            Ok((leaves, end)) => return (leaves, Ok(end)),
            Err(e @ Error::Corruption { .. }) if max > 1 => e,
            Err(e) => return (Vec::new(), Err(e)),
        };
        let Some(start) = start else {
            return (Vec::new(), Err(err));
        };
        reader.rewind(start);
        let mut out = Vec::new();
        while out.len() < max {
            match self.leaf_batch(reader, 1, upto, fates, cursors, prime) {
                Ok((leaves, end)) => {
                    out.extend(leaves);
                    if end != BatchEnd::Full {
                        return (out, Ok(end));
                    }
                }
                Err(e) => return (out, Err(e)),
            }
        }
        (out, Ok(BatchEnd::Full))
    }

    /// Appends to the ledger the leaf of every committed group after its last leaf, in seq
    /// order, up to the last group that ends at or before `upto`, and returns the ledger's
    /// digest. Aborted groups are not leaves; a group whose transaction is undecided
    /// (`fates` says in progress) stops the ledger before it: it never skips ahead.
    ///
    /// Reads only the new groups: their journal records and their table frames (the
    /// ledger's records say where the last leaf's are), so the cost grows with the groups
    /// added, not with history ([`crate::Stats::ledger_records`] and
    /// [`crate::Stats::ledger_frames`] count what it read). Writers only; one writer at a
    /// time extends the ledger (the caller's duty, as for appends). The ledger's files are
    /// derived data, written directly (not through the write-ahead log): after a crash the
    /// next extension recomputes what they miss. They are fdatasynced before this returns
    /// (with [`crate::Durability::Sync`]), so a digest handed out is never of leaves a
    /// crash can take back.
    pub fn extend_ledger(&mut self, upto: Seq, fates: &dyn Fates) -> Result<LedgerDigest> {
        self.require_writer()?;
        // A group whose syncs were deferred becomes durable before it becomes a leaf.
        self.finish_append()?;
        self.journal.refresh(None)?;
        self.open_ledger(true)?;
        let limit = self.journal.last_seq();
        let last = self.last_leaf_group()?;
        let st = self.ledger.as_mut().expect("opened");
        let (from, mut at) = match (st.files.last(), last) {
            (Some(r), Some(g)) => {
                let segs = list_segments(&self.journal.dir)?;
                let seg = segs
                    .partition_point(|s| s.0 <= r.first_seq)
                    .checked_sub(1)
                    .map_or(0, |i| segs[i].0);
                (g.last_seq() + 1, Some((seg, r.journal_offset, r.first_seq)))
            }
            _ => (1, None),
        };
        if let Some(j) = st.journal_at.filter(|j| j.2 >= from) {
            at = Some(j);
        }
        let mut cursors = std::mem::take(&mut st.cursors);
        let mut reader = JournalRecords::new(&self.journal.dir, from, at, limit)?;
        let result = loop {
            // Damage stops the ledger at the damaged group: the leaves before it are kept.
            let (leaves, end) =
                self.leaves_until_error(&mut reader, BATCH, upto, fates, &mut cursors, true);
            let records: Vec<(LeafRecord, Hash)> = leaves
                .iter()
                .map(|l| (l.leaf_record(), l.hashes.leaf))
                .collect();
            let st = self.ledger.as_mut().expect("opened");
            if let Err(e) = st.files.append(&records) {
                self.ledger = None;
                return Err(e);
            }
            match end {
                Ok(BatchEnd::Full) => st.journal_at = reader.position(),
                Ok(_) => {
                    st.journal_at = reader.position();
                    break Ok(());
                }
                Err(e) => break Err(e),
            }
        };
        if let Some(st) = self.ledger.as_mut() {
            st.cursors = cursors;
        }
        result?;
        if self.durable() {
            if let Err(e) = self.ledger_files().sync() {
                self.ledger = None;
                return Err(e);
            }
        }
        self.digest_now()
    }

    /// The digest of the ledger as it is (without extending it): its tree size and root,
    /// and the last seq and commit time of its last leaf's group. The empty tree's when the
    /// store has no ledger. Takes `&mut self` to read the files' latest state, as reads do.
    pub fn ledger_digest(&mut self) -> Result<LedgerDigest> {
        self.journal.refresh(None)?;
        if !self.open_ledger(false)? {
            return Ok(LedgerDigest {
                tree_size: 0,
                root: EMPTY_ROOT,
                last_seq: 0,
                commit_time: 0,
            });
        }
        self.digest_now()
    }

    /// The leaf (index) of the group holding `seq`, `None` when that group is not in the
    /// ledger (not yet, or aborted, or `seq` is beyond the journal). A binary search over
    /// the ledger's index: `O(log n)` reads of 20 bytes.
    pub fn leaf_of_seq(&mut self, seq: Seq) -> Result<Option<u64>> {
        self.journal.refresh(None)?;
        if !self.open_ledger(false)? {
            return Ok(None);
        }
        self.leaf_of_seq_now(seq)
    }

    fn leaf_of_seq_now(&self, seq: Seq) -> Result<Option<u64>> {
        let Some(g) = self.journal.group_of(seq)? else {
            return Ok(None);
        };
        Ok(match self.ledger_files().leaf_at_or_before(g.first_seq)? {
            Some((j, first)) if first == g.first_seq => Some(j),
            _ => None,
        })
    }

    /// The first seq of leaf `index`'s group (one read).
    pub fn leaf_first_seq(&mut self, index: u64) -> Result<Seq> {
        self.journal.refresh(None)?;
        if !self.open_ledger(false)? {
            return Err(invalid(format!(
                "no ledger leaf {index}: the store has no ledger"
            )));
        }
        self.ledger_files().first_seq(index)
    }

    /// Reads table `table`'s frame of the group `head` describes (at `offset` when known)
    /// and writes its leaf section to `out`.
    fn put_table_section(
        &mut self,
        out: &mut Vec<u8>,
        head: &GroupHead<'_>,
        table: TableId,
        offset: Option<u64>,
    ) -> Result<()> {
        let first = head.first_seq;
        if let Some(e) = self.damaged.get(&table) {
            return Err(e.duplicate());
        }
        if let Some(off) = offset {
            if let Ok(t) = self.load_table(table) {
                if first > t.meta.created_seq {
                    let len = out.len();
                    let before = t.log.frames_read;
                    let found = t.log.with_frame_at(first, off, |p| {
                        put_section_from_payload(out, head, table, p)
                    });
                    self.stats.ledger_frames += self.tables[&table].log.frames_read - before;
                    match found {
                        Ok(()) => return Ok(()),
                        // Not where the ledger says: look for it.
                        Err(Error::Corruption { .. }) => out.truncate(len),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        self.read_group_frames(table, &[first], &mut HashMap::new(), false, |_, p, _| {
            put_part(out, head, table, p)
        })
    }

    /// The leaf data of the group starting at `first_seq`, from the log (at the places
    /// `stored` says, when given).
    fn group_leaf_data(&mut self, first_seq: Seq, stored: Option<&LeafRecord>) -> Result<Vec<u8>> {
        let at = match stored {
            Some(r) => {
                let segs = list_segments(&self.journal.dir)?;
                segs.partition_point(|s| s.0 <= first_seq)
                    .checked_sub(1)
                    .map(|i| (segs[i].0, r.journal_offset, first_seq))
            }
            None => None,
        };
        let limit = self.journal.last_seq();
        let mut reader = JournalRecords::new(&self.journal.dir, first_seq, at, limit)?;
        let mut found = reader.next();
        self.stats.ledger_records += reader.records;
        if at.is_some() && matches!(found, Err(Error::Corruption { .. })) {
            // Not where the ledger says: look for it from its segment's start.
            let mut reader = JournalRecords::new(&self.journal.dir, first_seq, None, limit)?;
            found = reader.next();
            self.stats.ledger_records += reader.records;
        }
        let (rec, _) =
            found?.ok_or_else(|| invalid(format!("no group at seq {first_seq} in the journal")))?;
        let head = GroupHead::of(&rec);
        let mut out = Vec::new();
        head.put(&mut out)
            .map_err(|d| Error::corruption(&self.journal.dir, 0, d))?;
        for table in &rec.tables {
            let offset = stored
                .and_then(|r| r.tables.iter().find(|t| t.table == *table))
                .map(|t| t.frame_offset);
            self.put_table_section(&mut out, &head, *table, offset)?;
        }
        Ok(out)
    }

    /// The leaf data of the group holding `seq`, computed from the log now (whether or not
    /// the ledger has that group yet): its journal record and its table frames. When the
    /// group is a leaf, the ledger's records say where those are; otherwise its journal
    /// segment and its tables' logs are read from their segments' starts.
    pub fn leaf_data(&mut self, seq: Seq) -> Result<Vec<u8>> {
        self.journal.refresh(None)?;
        let Some(g) = self.journal.group_of(seq)? else {
            return Err(invalid(format!(
                "seq {seq} is not in the journal (last seq {})",
                self.journal.last_seq()
            )));
        };
        let stored = if self.open_ledger(false)? {
            match self.leaf_of_seq_now(seq)? {
                Some(j) => Some(self.ledger_files().record(j)?),
                None => None,
            }
        } else {
            None
        };
        self.group_leaf_data(g.first_seq, stored.as_ref())
    }

    /// The leaf data of the group holding `seq` and its inclusion proof in the ledger's
    /// current tree.
    pub fn inclusion_proof(&mut self, seq: Seq) -> Result<(Vec<u8>, InclusionProof)> {
        self.journal.refresh(None)?;
        let size = if self.open_ledger(false)? {
            self.ledger_files().size()
        } else {
            0
        };
        self.inclusion_proof_at(seq, size)
    }

    /// The leaf data of the group holding `seq` (from the log, checked to give the ledger's
    /// leaf) and its inclusion proof in the tree of the ledger's first `tree_size` leaves
    /// (that of an older digest): `O(log n)` reads of the ledger's files, and the group's
    /// journal record and frames.
    pub fn inclusion_proof_at(
        &mut self,
        seq: Seq,
        tree_size: u64,
    ) -> Result<(Vec<u8>, InclusionProof)> {
        self.journal.refresh(None)?;
        if !self.open_ledger(false)? {
            return Err(invalid(format!(
                "the group holding seq {seq} is not in the ledger: the store has no ledger"
            )));
        }
        let size = self.ledger_files().size();
        if tree_size > size {
            return Err(invalid(format!(
                "the ledger has {size} leaves, not {tree_size}"
            )));
        }
        let Some(j) = self.leaf_of_seq_now(seq)? else {
            return Err(invalid(format!(
                "the group holding seq {seq} is not in the ledger (not extended to it yet, aborted, or beyond the journal)"
            )));
        };
        if j >= tree_size {
            return Err(invalid(format!(
                "the group holding seq {seq} is leaf {j}, not in the tree of {tree_size} leaves"
            )));
        }
        let rec = self.ledger_files().record(j)?;
        let data = self.group_leaf_data(rec.first_seq, Some(&rec))?;
        let files = self.ledger_files();
        if leaf_hash(&data) != files.tree().leaf(j)? {
            return Err(Error::corruption(
                files.dir(),
                0,
                format!(
                    "the log's group at seq {} no longer gives ledger leaf {j}: history was changed (see verify_digest)",
                    rec.first_seq
                ),
            ));
        }
        let proof = files.tree().inclusion_proof(j, tree_size)?;
        Ok((data, proof))
    }

    /// The consistency proof from the ledger's tree of `size1` leaves to that of `size2`.
    pub fn consistency_proof(&mut self, size1: u64, size2: u64) -> Result<ConsistencyProof> {
        self.journal.refresh(None)?;
        let size = if self.open_ledger(false)? {
            self.ledger_files().size()
        } else {
            0
        };
        if size2 > size {
            return Err(invalid(format!(
                "the ledger has {size} leaves, not {size2}"
            )));
        }
        if size2 == 0 {
            return Ok(ConsistencyProof {
                size1,
                size2,
                path: Vec::new(),
            });
        }
        self.ledger_files().tree().consistency_proof(size1, size2)
    }

    /// Checks `digest` against the log: recomputes the leaves of the log's first
    /// `digest.tree_size` committed groups from the journal and the table logs (not from
    /// the ledger's files, which are not trusted), streaming (memory `O(log n)` besides one
    /// batch of groups), and says whether their root is the digest's.
    ///
    /// When it is not, and the ledger's own tree of that size has the digest's root (its
    /// files are intact and the log changed since), the leaves are recomputed once more and
    /// compared with the ledger's, naming each group that differs (and which of its tables),
    /// groups missing from the log or added to it, two groups swapped, and the groups
    /// renumbered after a dropped or added one. When the ledger's tree does not have the
    /// digest's root either, history does not match the digest and nothing can say where.
    /// Damage that stops reading the log is reported, not returned; only I/O errors are.
    pub fn verify_digest(
        &mut self,
        digest: &LedgerDigest,
        fates: &dyn Fates,
    ) -> Result<DigestReport> {
        self.journal.refresh(None)?;
        let n = digest.tree_size;
        let limit = self.journal.last_seq();
        let mut root = RootBuilder::new();
        let (mut last_seq, mut commit_time) = (0, 0);
        let mut stopped = None;
        let mut unreadable = None;
        let mut reader = JournalRecords::new(&self.journal.dir, 1, None, limit)?;
        let mut cursors = HashMap::new();
        while root.size() < n {
            let max = (n - root.size()).min(BATCH as u64) as usize;
            let (leaves, end) =
                self.leaves_until_error(&mut reader, max, Seq::MAX, fates, &mut cursors, false);
            for l in &leaves {
                root.push(&l.hashes.leaf);
                last_seq = l.record.first_seq + l.record.count - 1;
                commit_time = l.record.commit_ts;
            }
            match end {
                Ok(BatchEnd::Full) => {}
                Ok(BatchEnd::End | BatchEnd::Upto) => {
                    stopped = Some(format!(
                        "the journal ends at seq {limit} after {} committed groups",
                        root.size()
                    ));
                    break;
                }
                Ok(BatchEnd::Undecided { seq, xid }) => {
                    stopped = Some(format!(
                        "the group at seq {seq} (transaction {xid}) is not decided yet, after {} committed groups",
                        root.size()
                    ));
                    break;
                }
                Err(e @ Error::Corruption { .. }) => {
                    unreadable = Some(e.to_string());
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        let matches = unreadable.is_none() && root.size() == n && root.root() == digest.root;
        if let Some(u) = &unreadable {
            stopped = Some(format!(
                "the log cannot be read after {} committed groups: {u}",
                root.size()
            ));
        }

        let mut stored = match self.open_ledger(false) {
            Ok(false) => StoredTree::Missing,
            Ok(true) => {
                let files = self.ledger_files();
                if files.size() < n {
                    StoredTree::Shorter { size: files.size() }
                } else {
                    let r = files.tree().root_at(n)?;
                    if r == digest.root {
                        StoredTree::Matches
                    } else {
                        StoredTree::Differs { root: r }
                    }
                }
            }
            Err(Error::Corruption {
                file,
                offset,
                detail,
            }) => StoredTree::Damaged {
                detail: format!("{} at offset {offset}: {detail}", file.display()),
            },
            Err(e) => return Err(e),
        };
        let mut divergences = Vec::new();
        let mut more = 0;
        if !matches && stored == StoredTree::Matches {
            match self.ledger_files().tree().check() {
                Ok(()) => (divergences, more) = self.diagnose(n, fates)?,
                Err(Error::Corruption {
                    file,
                    offset,
                    detail,
                }) => {
                    stored = StoredTree::Damaged {
                        detail: format!("{} at offset {offset}: {detail}", file.display()),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(DigestReport {
            digest: *digest,
            recomputed: root.size(),
            recomputed_root: root.root(),
            last_seq,
            commit_time,
            stopped,
            matches,
            stored,
            divergences,
            more,
        })
    }

    /// Recomputes the log's leaves once more and compares them with the ledger's first `n`
    /// (whose tree has the digest's root).
    fn diagnose(&mut self, n: u64, fates: &dyn Fates) -> Result<(Vec<Divergence>, u64)> {
        let mut diag = Diagnosis::new(n);
        let mut reader = JournalRecords::new(&self.journal.dir, 1, None, self.journal.last_seq())?;
        let mut cursors = HashMap::new();
        while !diag.done() {
            let (leaves, end) =
                self.leaves_until_error(&mut reader, BATCH, Seq::MAX, fates, &mut cursors, false);
            let files = &self.ledger.as_ref().expect("opened").files;
            for l in &leaves {
                diag.push(l.view(), files)?;
            }
            match end {
                Ok(end) => {
                    if end != BatchEnd::Full {
                        break;
                    }
                }
                Err(e @ Error::Corruption { .. }) => {
                    diag.drain(files)?;
                    let leaf = diag.i;
                    diag.emit(Divergence::Unreadable {
                        leaf,
                        detail: e.to_string(),
                    });
                    return Ok((diag.out, diag.more));
                }
                Err(e) => return Err(e),
            }
        }
        let files = &self.ledger.as_ref().expect("opened").files;
        diag.finish(files)
    }
}

/// A leaf as the diagnosis compares it: what the ledger's records keep of it, or what the
/// log gives now.
#[derive(Clone, Debug)]
struct LeafView {
    first_seq: Seq,
    leaf: Hash,
    header: Hash,
    sections: Vec<(TableId, Hash)>,
}

impl LeafView {
    /// The same group, wherever it is in the sequence (the leaf's body: see `leaf.rs`).
    fn same_body(&self, other: &LeafView) -> bool {
        self.header == other.header && self.sections == other.sections
    }
}

/// The tables whose sections differ between the ledger's leaf and the log's group.
fn table_diffs(stored: &[(TableId, Hash)], log: &[(TableId, Hash)]) -> Vec<TableDiff> {
    let mut out = Vec::new();
    let (mut a, mut b) = (stored.iter().peekable(), log.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => return out,
            (Some(s), Some(l)) if s.0 == l.0 => {
                if s.1 != l.1 {
                    out.push(TableDiff::Changed(s.0));
                }
                a.next();
                b.next();
            }
            (Some(s), l) if l.is_none_or(|l| s.0 < l.0) => {
                out.push(TableDiff::Removed(s.0));
                a.next();
            }
            (_, Some(l)) => {
                out.push(TableDiff::Added(l.0));
                b.next();
            }
            (Some(_), None) => unreachable!("handled above"),
        }
    }
}

/// Compares the log's leaves, as they come, with the ledger's first `n`, realigning after
/// a group missing from either side within [`LOOKAHEAD`] leaves.
struct Diagnosis {
    n: u64,
    /// The ledger's next leaf to compare.
    i: u64,
    /// The log's leaves not compared yet.
    queue: VecDeque<LeafView>,
    cache: HashMap<u64, LeafView>,
    /// A run of renumbered groups: first and last leaf, their first seqs, the shift.
    run: Option<(u64, u64, Seq, Seq, i64)>,
    out: Vec<Divergence>,
    more: u64,
}

impl Diagnosis {
    fn new(n: u64) -> Diagnosis {
        Diagnosis {
            n,
            i: 0,
            queue: VecDeque::new(),
            cache: HashMap::new(),
            run: None,
            out: Vec::new(),
            more: 0,
        }
    }

    fn done(&self) -> bool {
        self.i >= self.n
    }

    fn emit(&mut self, d: Divergence) {
        if self.out.len() < MAX_DIVERGENCES {
            self.out.push(d);
        } else {
            self.more += 1;
        }
    }

    fn close_run(&mut self) {
        if let Some((a, b, fa, fb, shift)) = self.run.take() {
            self.emit(Divergence::Renumbered {
                leaves: (a, b),
                first_seqs: (fa, fb),
                shift,
            });
        }
    }

    /// The ledger's leaf `j`: its record and its hash in the tree.
    fn stored(&mut self, files: &LedgerFiles, j: u64) -> Result<LeafView> {
        if let Some(v) = self.cache.get(&j) {
            return Ok(v.clone());
        }
        let rec = files.record(j)?;
        let v = LeafView {
            first_seq: rec.first_seq,
            leaf: files.tree().leaf(j)?,
            header: rec.header,
            sections: rec.tables.iter().map(|t| (t.table, t.section)).collect(),
        };
        if self.cache.len() > 4 * LOOKAHEAD {
            let i = self.i;
            self.cache.retain(|k, _| *k >= i);
        }
        self.cache.insert(j, v.clone());
        Ok(v)
    }

    fn push(&mut self, v: LeafView, files: &LedgerFiles) -> Result<()> {
        if self.done() {
            return Ok(());
        }
        self.queue.push_back(v);
        while self.queue.len() > LOOKAHEAD && !self.done() {
            self.step(files)?;
        }
        Ok(())
    }

    /// Compares every log leaf received (with what lookahead is left).
    fn drain(&mut self, files: &LedgerFiles) -> Result<()> {
        while !self.queue.is_empty() && !self.done() {
            self.step(files)?;
        }
        self.close_run();
        Ok(())
    }

    fn finish(mut self, files: &LedgerFiles) -> Result<(Vec<Divergence>, u64)> {
        self.drain(files)?;
        if !self.done() {
            let count = self.n - self.i;
            let listed = count.min(LISTED_SEQS as u64);
            let first_seqs = (self.i..self.i + listed)
                .map(|j| files.first_seq(j))
                .collect::<Result<Vec<_>>>()?;
            let leaf = self.i;
            self.emit(Divergence::Missing {
                leaf,
                count,
                first_seqs,
                at_end: true,
            });
        }
        Ok((self.out, self.more))
    }

    fn step(&mut self, files: &LedgerFiles) -> Result<()> {
        let i = self.i;
        let s = self.stored(files, i)?;
        let r = self.queue.front().cloned().expect("a log leaf to compare");
        if r.leaf == s.leaf {
            self.close_run();
            self.queue.pop_front();
            self.i += 1;
            return Ok(());
        }
        if r.same_body(&s) {
            let shift = (r.first_seq as i128 - s.first_seq as i128) as i64;
            self.run = match self.run.take() {
                Some((a, b, fa, _, sh)) if b + 1 == i && sh == shift => {
                    Some((a, i, fa, s.first_seq, sh))
                }
                other => {
                    self.run = other;
                    self.close_run();
                    Some((i, i, s.first_seq, s.first_seq, shift))
                }
            };
            self.queue.pop_front();
            self.i += 1;
            return Ok(());
        }
        self.close_run();
        if self.queue.len() >= 2 && i + 1 < self.n {
            let s1 = self.stored(files, i + 1)?;
            let r1 = self.queue[1].clone();
            let by_body = r.same_body(&s1) && r1.same_body(&s);
            // The events moved, the groups' own fields (commit times) stayed in place.
            let by_events =
                r.sections == s1.sections && r1.sections == s.sections && r.sections != s.sections;
            if by_body || by_events {
                self.emit(Divergence::Swapped {
                    leaf: i,
                    first_seqs: (s.first_seq, s1.first_seq),
                    log_first_seqs: (r1.first_seq, r.first_seq),
                    header: !by_body,
                });
                self.queue.pop_front();
                self.queue.pop_front();
                self.i += 2;
                return Ok(());
            }
        }
        for k in 1..=LOOKAHEAD as u64 {
            if i + k >= self.n {
                break;
            }
            if r.same_body(&self.stored(files, i + k)?) {
                let mut first_seqs = Vec::new();
                for j in i..i + k.min(LISTED_SEQS as u64) {
                    first_seqs.push(self.stored(files, j)?.first_seq);
                }
                self.emit(Divergence::Missing {
                    leaf: i,
                    count: k,
                    first_seqs,
                    at_end: false,
                });
                self.i += k;
                return Ok(());
            }
        }
        for k in 1..self.queue.len() {
            if self.queue[k].same_body(&s) {
                let first_seqs = self
                    .queue
                    .iter()
                    .take(k.min(LISTED_SEQS))
                    .map(|v| v.first_seq)
                    .collect();
                self.emit(Divergence::Extra {
                    leaf: i,
                    count: k as u64,
                    first_seqs,
                });
                self.queue.drain(..k);
                return Ok(());
            }
        }
        self.emit(Divergence::Changed {
            leaf: i,
            first_seq: s.first_seq,
            log_first_seq: r.first_seq,
            header: r.header != s.header,
            tables: table_diffs(&s.sections, &r.sections),
        });
        self.queue.pop_front();
        self.i += 1;
        Ok(())
    }
}
