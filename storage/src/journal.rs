//! The global journal: one frame per committed transaction group. Appending its frame is
//! the engine-level commit point. It is read with `pread` (not mapped) because its tail
//! may be cut by a recovering writer; its contents are kept as a compact in-memory index.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::config::{check_segment_size, RecoveryMode};
use crate::error::{Error, IoContext, Result};
use crate::format::{
    read_frame, FrameRead, JournalRecord, SegmentHeader, KIND_JOURNAL, SEGMENT_HEADER_LEN,
};
use crate::log::list_segments;
use crate::types::{Origin, Seq, TableId};

/// One group of the journal, kept in memory (40 bytes per group).
#[derive(Clone, Copy, Debug)]
pub(crate) struct GroupInfo {
    pub first_seq: Seq,
    pub count: u64,
    pub commit_ts: i64,
    pub xid: u64,
    pub role: u32,
}

impl GroupInfo {
    pub fn last_seq(&self) -> Seq {
        self.first_seq + self.count - 1
    }
}

/// One group as its journal record describes it, borrowed: read back by
/// [`Journal::refresh`] or known to the writer that appended it ([`Journal::absorb`]).
pub(crate) struct GroupRecord<'a> {
    pub first_seq: Seq,
    pub count: u64,
    pub commit_ts: i64,
    pub xid: u64,
    pub role: &'a str,
    /// Strictly increasing.
    pub tables: &'a [TableId],
    pub origin: Option<&'a Origin>,
}

impl JournalRecord {
    fn group(&self) -> GroupRecord<'_> {
        GroupRecord {
            first_seq: self.first_seq,
            count: self.count,
            commit_ts: self.commit_ts,
            xid: self.xid,
            role: &self.role,
            tables: &self.tables,
            origin: self.origin.as_ref(),
        }
    }
}

/// The imported groups of one table appended by one importing transaction, in seq order:
/// `(original commit time, first seq, last seq)`.
#[derive(Clone, Debug)]
pub(crate) struct ImportRun {
    pub xid: u64,
    pub groups: Vec<(i64, Seq, Seq)>,
}

pub(crate) struct Journal {
    pub dir: PathBuf,
    segs: Vec<(Seq, PathBuf)>,
    /// The segment being read and the offset after its last whole frame (0: header unread).
    cur: usize,
    off: u64,
    pub groups: Vec<GroupInfo>,
    roles: Vec<String>,
    role_ids: HashMap<String, u32>,
    /// For each table, the first seq of the last group that touched it.
    pub last_group_for_table: HashMap<TableId, Seq>,
    /// For each table, the first seqs of every group that touched it, ascending: a table
    /// log missing one of them is damaged, even where its own frames look whole.
    table_groups: HashMap<TableId, Vec<Seq>>,
    /// Origins of imported groups by first seq: `(xid, commit time, role index)`. Only
    /// imported groups have one, so other groups cost nothing here.
    origins: HashMap<Seq, (u64, i64, u32)>,
    /// For each table that received imported groups: their runs, in seq order.
    pub imported: HashMap<TableId, Vec<ImportRun>>,
    pub next_seq: Seq,
    pub last_ts: Option<i64>,
    /// `Config::segment_size`: what a full segment's length is, and what every segment's
    /// header must record (if it records a size).
    segment_size: u64,
    /// The open file of segment `cur`.
    file: Option<(usize, File)>,
    /// A torn tail found by a writer's refresh: the segment and the length to cut it to.
    pub torn_cut: Option<(PathBuf, u64)>,
}

impl Journal {
    /// The first seqs of the groups that touched `table` after `created` (those at or
    /// before it belong to an older table of the same id), ascending.
    pub fn groups_of(&self, table: TableId, created: Seq) -> &[Seq] {
        let all = self.table_groups.get(&table).map_or(&[][..], Vec::as_slice);
        &all[all.partition_point(|g| *g <= created)..]
    }

    pub fn new(dir: PathBuf, segment_size: u64) -> Journal {
        Journal {
            segment_size,
            dir,
            segs: Vec::new(),
            cur: 0,
            off: 0,
            groups: Vec::new(),
            roles: Vec::new(),
            role_ids: HashMap::new(),
            last_group_for_table: HashMap::new(),
            table_groups: HashMap::new(),
            origins: HashMap::new(),
            imported: HashMap::new(),
            next_seq: 1,
            last_ts: None,
            file: None,
            torn_cut: None,
        }
    }

    pub fn last_seq(&self) -> Seq {
        self.next_seq - 1
    }

    pub fn role(&self, g: &GroupInfo) -> &str {
        &self.roles[g.role as usize]
    }

    /// The group holding `seq`, if any.
    pub fn group_of(&self, seq: Seq) -> Option<&GroupInfo> {
        let i = self.groups.partition_point(|g| g.first_seq <= seq);
        let g = self.groups.get(i.checked_sub(1)?)?;
        (seq <= g.last_seq()).then_some(g)
    }

    /// Where the next journal frame goes: the last segment and its end, if any segment exists.
    pub fn tail(&self) -> Option<(Seq, &Path, u64)> {
        let (first, path) = self.segs.get(self.cur)?;
        (self.cur + 1 == self.segs.len() && self.off >= SEGMENT_HEADER_LEN as u64).then_some((
            *first,
            path.as_path(),
            self.off,
        ))
    }

    /// Reads the journal past what this process has seen. A torn tail of the last segment
    /// is to be cut (`cut = Some(TolerateTornTail)`, writers only: left in `torn_cut` for
    /// the store to cut), reported (`Some(Strict)`), or treated as not yet written (`None`:
    /// a writer may be mid-append).
    pub fn refresh(&mut self, cut: Option<RecoveryMode>) -> Result<()> {
        if self.segs.is_empty() {
            self.segs = list_segments(&self.dir)?;
        }
        let mut retried_torn = false;
        loop {
            let Some((first, path)) = self.segs.get(self.cur).cloned() else {
                return Ok(());
            };
            if self.file.as_ref().is_none_or(|(i, _)| *i != self.cur) {
                self.file = Some((self.cur, File::open(&path).at(&path)?));
            }
            let file = &self.file.as_ref().expect("opened").1;
            let len = file.metadata().at(&path)?.len();
            let mut data = vec![0u8; len.saturating_sub(self.off) as usize];
            file.read_exact_at(&mut data, self.off).at(&path)?;
            let base = self.off;
            let mut pos = 0usize;
            if self.off == 0 {
                let h = SegmentHeader::decode(&data).map_err(|d| Error::corruption(&path, 0, d))?;
                if h.kind != KIND_JOURNAL || h.first_seq != first {
                    return Err(Error::corruption(
                        &path,
                        0,
                        "journal segment header does not match its name",
                    ));
                }
                // Every segment's header is read once, on the way: the check costs nothing
                // more than the reading.
                check_segment_size(&path, h.recorded_segment_size(), self.segment_size)?;
                if first != self.next_seq {
                    return Err(Error::corruption(
                        &path,
                        0,
                        format!(
                            "journal segment starts at seq {first}, expected {}",
                            self.next_seq
                        ),
                    ));
                }
                pos = SEGMENT_HEADER_LEN;
            }
            let torn = loop {
                match read_frame(&data, pos) {
                    FrameRead::Frame { payload, next } => {
                        let at = base + pos as u64;
                        let rec = JournalRecord::decode(payload)
                            .map_err(|d| Error::corruption(&path, at, d))?;
                        if rec.first_seq != self.next_seq {
                            return Err(Error::corruption(
                                &path,
                                at,
                                format!(
                                    "journal record at seq {}, expected {}",
                                    rec.first_seq, self.next_seq
                                ),
                            ));
                        }
                        self.apply(rec.group());
                        pos = next;
                    }
                    FrameRead::End => break None,
                    FrameRead::Torn(detail) => break Some(detail),
                    FrameRead::Bad(detail) => {
                        return Err(Error::corruption(&path, base + pos as u64, detail));
                    }
                }
            };
            self.off = base + pos as u64;
            // A writer starts a new segment only once this one is full (all stores on one
            // root use the same segment size: checked against each header above), so a
            // short last segment needs no listing.
            if self.cur + 1 >= self.segs.len() && (torn.is_some() || len >= self.segment_size) {
                self.segs = list_segments(&self.dir)?;
            }
            let later_segment = self.cur + 1 < self.segs.len();
            match torn {
                None if later_segment => {
                    self.cur += 1;
                    self.off = 0;
                    retried_torn = false;
                }
                None => return Ok(()),
                // A later segment means this one was complete before it was created: read
                // it once more in case a writer finished it meanwhile, else it is damage.
                Some(detail) if later_segment => {
                    if retried_torn {
                        return Err(Error::corruption(&path, self.off, detail));
                    }
                    retried_torn = true;
                }
                Some(detail) => match cut {
                    None => return Ok(()),
                    Some(RecoveryMode::Strict) => {
                        return Err(Error::corruption(
                            &path,
                            self.off,
                            format!("torn tail: {detail}"),
                        ))
                    }
                    Some(RecoveryMode::TolerateTornTail) => {
                        self.torn_cut = Some((path, self.off));
                        return Ok(());
                    }
                },
            }
        }
    }

    fn intern_role(&mut self, role: &str) -> u32 {
        match self.role_ids.get(role) {
            Some(id) => *id,
            None => {
                let id = self.roles.len() as u32;
                self.role_ids.insert(role.to_string(), id);
                self.roles.push(role.to_string());
                id
            }
        }
    }

    /// Where an imported group came from; `None` for a group committed here.
    pub fn origin(&self, g: &GroupInfo) -> Option<Origin> {
        let (xid, commit_ts, role) = *self.origins.get(&g.first_seq)?;
        Some(Origin {
            xid,
            commit_ts,
            role: self.roles[role as usize].clone(),
        })
    }

    /// Takes in groups this store has just appended, whose journal frames were written
    /// from where this journal stopped reading up to `end` of `path`: what a refresh would
    /// read back, without reading it (the writer holds the append lock, so nobody else
    /// wrote there). False, with nothing taken in, when `path` is not the segment being
    /// read (the frames started a new one): then refresh.
    pub fn absorb<'a>(
        &mut self,
        path: &Path,
        end: u64,
        groups: impl IntoIterator<Item = GroupRecord<'a>>,
    ) -> bool {
        if self.tail().is_none_or(|(_, p, _)| p != path) {
            return false;
        }
        for g in groups {
            self.apply(g);
        }
        self.off = end;
        true
    }

    fn apply(&mut self, rec: GroupRecord<'_>) {
        let role = self.intern_role(rec.role);
        if let Some(o) = rec.origin {
            let orole = self.intern_role(&o.role);
            self.origins
                .insert(rec.first_seq, (o.xid, o.commit_ts, orole));
            let last = rec.first_seq + rec.count - 1;
            for t in rec.tables {
                let runs = self.imported.entry(*t).or_default();
                match runs.last_mut() {
                    Some(r) if r.xid == rec.xid => {
                        r.groups.push((o.commit_ts, rec.first_seq, last))
                    }
                    _ => runs.push(ImportRun {
                        xid: rec.xid,
                        groups: vec![(o.commit_ts, rec.first_seq, last)],
                    }),
                }
            }
        }
        for t in rec.tables {
            self.last_group_for_table.insert(*t, rec.first_seq);
            self.table_groups.entry(*t).or_default().push(rec.first_seq);
        }
        self.groups.push(GroupInfo {
            first_seq: rec.first_seq,
            count: rec.count,
            commit_ts: rec.commit_ts,
            xid: rec.xid,
            role,
        });
        self.next_seq = rec.first_seq + rec.count;
        self.last_ts = Some(rec.commit_ts);
    }

    /// The last seq of the last group committed at or before `ts`; 0 if none.
    pub fn seq_at(&self, ts: i64) -> Seq {
        let i = self.groups.partition_point(|g| g.commit_ts <= ts);
        match i.checked_sub(1) {
            Some(i) => self.groups[i].last_seq(),
            None => 0,
        }
    }
}
