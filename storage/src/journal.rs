//! The global journal: one frame per committed transaction group. Appending its frame is
//! the engine-level commit point. It is read with `pread` (not mapped) because its tail
//! may be cut by a recovering writer.
//!
//! A store does not read the journal whole: the groups that the journal's index
//! (`jindex.rs`, derived files beside the journal) describes are looked up in place, in
//! the index mapped read-only (shared by every process through the page cache), and only
//! the groups after it are read from the journal and kept in memory (`recent`), until the
//! index covers them too and they are dropped again. So opening a store reads one index
//! record and the few groups not indexed yet, at any history length.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::config::{check_segment_size, RecoveryMode};
use crate::error::{Error, IoContext, Result};
use crate::format::{
    read_frame, FrameRead, JournalRecord, SegmentHeader, KIND_JOURNAL, SEGMENT_HEADER_LEN,
};
use crate::jindex::{
    self, FramePos, IndexRecord, OriginRecord, Synced, INDEX_DIR, INDEX_FILE, INDEX_HEADER,
    INDEX_HEADER_LEN, INDEX_RECORD_LEN, ORIGINS_FILE, ORIGIN_RECORD_LEN, ROLES_FILE, TABLES_DIR,
    TABLE_RECORD_LEN,
};
use crate::log::{list_segments, map_file};
use crate::types::{Origin, Seq, TableId};

/// Groups kept in memory past the mapped index before the index is mapped again (and,
/// for a store that maintains the index, before it is written).
const REMAP_AT: usize = 4096;

/// One group of the journal (40 bytes).
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

/// One group as its journal record describes it, borrowed.
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

/// The imported groups' origins.
#[derive(Default)]
struct Origins {
    /// By first seq: `(xid, commit time, role)`.
    by_seq: HashMap<Seq, (u64, i64, u32)>,
    /// For each table that received imported groups: their runs, in seq order.
    runs: HashMap<TableId, Vec<ImportRun>>,
}

impl Origins {
    fn add(
        &mut self,
        first_seq: Seq,
        last_seq: Seq,
        table: TableId,
        run_xid: u64,
        origin: (u64, i64, u32),
    ) {
        if self.by_seq.insert(first_seq, origin).is_some() {
            return;
        }
        let runs = self.runs.entry(table).or_default();
        match runs.last_mut() {
            Some(r) if r.xid == run_xid => r.groups.push((origin.1, first_seq, last_seq)),
            _ => runs.push(ImportRun {
                xid: run_xid,
                groups: vec![(origin.1, first_seq, last_seq)],
            }),
        }
    }
}

/// A group read from the journal past the mapped index.
struct Recent {
    info: GroupInfo,
    tables: Vec<TableId>,
    /// An imported group's origin: `(xid, commit time, role)`.
    origin: Option<(u64, i64, u32)>,
    pos: FramePos,
}

pub(crate) struct Journal {
    pub dir: PathBuf,
    /// The store's `tables/` directory (a dropped table has none there).
    tables_dir: PathBuf,
    /// The index files' directory (`jindex::INDEX_DIR`).
    idx_dir: PathBuf,
    segs: Vec<(Seq, PathBuf)>,
    /// The segment being read and the offset after its last whole frame (0: header unread).
    cur: usize,
    off: u64,
    /// Whether the index has been looked at (the first refresh does it).
    loaded: bool,
    /// The index, mapped, of which the first `indexed` records are trusted: the last of
    /// them was checked against its journal frame (or written by this process).
    index: Option<Arc<Mmap>>,
    indexed: usize,
    /// The last seq of the indexed groups (0: none).
    indexed_last: Seq,
    /// The groups after the indexed ones, in order.
    recent: Vec<Recent>,
    /// For each table, the first seqs of the recent groups that touched it.
    recent_tables: HashMap<TableId, Vec<Seq>>,
    /// Role names: the indexed groups' roles are ordinals in `journal/roles` (its first
    /// entries here), the recent groups' ordinals in this list.
    roles: Vec<String>,
    role_ids: HashMap<String, u32>,
    /// The imported groups' origins, read (from `index/origins` and the recent groups) the
    /// first time something asks for one, and kept up to date from then on: most sessions
    /// never ask, and a table filled by an import may have millions.
    origins: RefCell<Option<Origins>>,
    /// Tables' groups files, mapped when first asked for (`None`: the table has none).
    table_maps: RefCell<HashMap<TableId, Option<Arc<Mmap>>>>,
    pub next_seq: Seq,
    pub last_ts: Option<i64>,
    /// `Config::segment_size`: what a full segment's length is, and what every segment's
    /// header must record (if it records a size).
    segment_size: u64,
    /// The open file of segment `cur`.
    file: Option<(usize, File)>,
    /// A torn tail found by a writer's refresh: the segment and the length to cut it to.
    pub torn_cut: Option<(PathBuf, u64)>,
    /// Whether this store writes the index (a writer that recovered the files, under the
    /// append lock, or redo): then a long refresh writes as it goes.
    maintain: bool,
    /// The index files this store wrote to, kept open.
    cache: WriteCache,
    /// Groups this store read from the journal's frames.
    pub groups_read: u64,
}

/// Open index files and what was last seen of them, for a store that writes the index: a
/// commit's write then costs a few calls on open descriptors. Lengths are taken anew each
/// time (another process may have written since).
#[derive(Default)]
struct WriteCache {
    dirs: bool,
    index: Option<File>,
    /// The roles file, its length when read, and the ordinals of the roles it holds.
    roles: Option<(File, u64, HashMap<String, u32>)>,
    /// Tables' groups files, their lengths when read, and their last seqs.
    tables: HashMap<TableId, (File, u64, Seq)>,
}

/// Tables' groups files kept open at most.
const OPEN_TABLE_FILES: usize = 256;

impl Journal {
    pub fn new(dir: PathBuf, segment_size: u64) -> Journal {
        let root = dir.parent().map_or_else(PathBuf::new, Path::to_path_buf);
        Journal {
            segment_size,
            dir,
            tables_dir: root.join("tables"),
            idx_dir: root.join(INDEX_DIR),
            segs: Vec::new(),
            cur: 0,
            off: 0,
            loaded: false,
            index: None,
            indexed: 0,
            indexed_last: 0,
            recent: Vec::new(),
            recent_tables: HashMap::new(),
            roles: Vec::new(),
            role_ids: HashMap::new(),
            origins: RefCell::new(None),
            table_maps: RefCell::new(HashMap::new()),
            next_seq: 1,
            last_ts: None,
            file: None,
            torn_cut: None,
            maintain: false,
            cache: WriteCache::default(),
            groups_read: 0,
        }
    }

    pub fn last_seq(&self) -> Seq {
        self.next_seq - 1
    }

    pub fn role(&self, g: &GroupInfo) -> &str {
        self.roles.get(g.role as usize).map_or("", String::as_str)
    }

    /// How many groups this store knows.
    pub fn group_count(&self) -> usize {
        self.indexed + self.recent.len()
    }

    fn index_path(&self) -> PathBuf {
        self.idx_dir.join(INDEX_FILE)
    }

    /// The groups file of `table`.
    fn table_groups_path(&self, table: TableId) -> PathBuf {
        self.idx_dir.join(TABLES_DIR).join(table.to_string())
    }

    /// Every table's groups file.
    fn table_groups_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.idx_dir.join(TABLES_DIR))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    }

    /// The `i`th group of the journal (`i < group_count()`).
    pub fn group(&self, i: usize) -> Result<GroupInfo> {
        if i >= self.indexed {
            return Ok(self.recent[i - self.indexed].info);
        }
        let rec = self.index_record(i)?;
        Ok(GroupInfo {
            first_seq: rec.first_seq,
            count: rec.count,
            commit_ts: rec.commit_ts,
            xid: rec.xid,
            role: rec.role,
        })
    }

    fn index_record(&self, i: usize) -> Result<IndexRecord> {
        let map = self.index.as_ref().expect("indexed groups are mapped");
        let at = INDEX_HEADER_LEN + i as u64 * INDEX_RECORD_LEN;
        let bytes = &map[at as usize..(at + INDEX_RECORD_LEN) as usize];
        IndexRecord::decode(bytes).ok_or_else(|| {
            Error::corruption(
                self.index_path(),
                at,
                "journal index record damaged (the index is derived: removing the journal's \
                 index files makes the next recovering open rebuild them)",
            )
        })
    }

    /// The index of the last group whose `key` is at or below `bound`, if any; `key` must
    /// be increasing along the journal.
    fn last_at_or_below(
        &self,
        bound: i128,
        key: impl Fn(&GroupInfo) -> i128,
    ) -> Result<Option<usize>> {
        let (mut lo, mut hi) = (0usize, self.group_count());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if key(&self.group(mid)?) <= bound {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo.checked_sub(1))
    }

    /// The group holding `seq`, if any.
    pub fn group_of(&self, seq: Seq) -> Result<Option<GroupInfo>> {
        let Some(i) = self.last_at_or_below(i128::from(seq), |g| i128::from(g.first_seq))? else {
            return Ok(None);
        };
        let g = self.group(i)?;
        Ok((seq <= g.last_seq()).then_some(g))
    }

    /// The last seq of the last group committed at or before `ts`; 0 if none.
    pub fn seq_at(&self, ts: i64) -> Result<Seq> {
        match self.last_at_or_below(i128::from(ts), |g| i128::from(g.commit_ts))? {
            Some(i) => Ok(self.group(i)?.last_seq()),
            None => Ok(0),
        }
    }

    /// The mapped groups file of `table`, if it has one.
    fn table_map(&self, table: TableId) -> Result<Option<Arc<Mmap>>> {
        if let Some(m) = self.table_maps.borrow().get(&table) {
            return Ok(m.clone());
        }
        let path = self.table_groups_path(table);
        let map = if jindex::file_len(&path)? >= TABLE_RECORD_LEN {
            Some(Arc::new(map_file(&path)?))
        } else {
            None
        };
        self.table_maps.borrow_mut().insert(table, map.clone());
        Ok(map)
    }

    /// Record `i` of `table`'s mapped groups file (of `n` records): `None` for a last
    /// record not written whole (an append in flight, or cut short), which counts as
    /// past every indexed group; a damaged record before the last is corruption.
    fn table_record(&self, table: TableId, map: &Mmap, i: usize, n: usize) -> Result<Option<Seq>> {
        let off = i * TABLE_RECORD_LEN as usize;
        match jindex::decode_table_record(&map[off..off + TABLE_RECORD_LEN as usize]) {
            Some(s) => Ok(Some(s)),
            None if i + 1 == n => Ok(None),
            None => Err(Error::corruption(
                self.table_groups_path(table),
                off as u64,
                "table groups record damaged (derived from the journal: removing the \
                 journal's index files makes the next recovering open rebuild them)",
            )),
        }
    }

    /// The number of records of `table`'s groups file whose seq is at or below `bound`.
    fn table_records_upto(&self, table: TableId, map: &Mmap, bound: Seq) -> Result<usize> {
        let n = map.len() / TABLE_RECORD_LEN as usize;
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self
                .table_record(table, map, mid, n)?
                .is_some_and(|s| s <= bound)
            {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// The first seqs of the indexed groups of `table` in `(after, indexed_last]`, from
    /// its groups file (records past the indexed groups are not trusted yet).
    fn indexed_groups_of(&self, table: TableId, after: Seq, out: &mut Vec<Seq>) -> Result<()> {
        if after >= self.indexed_last {
            return Ok(());
        }
        let Some(map) = self.table_map(table)? else {
            return Ok(());
        };
        let n = map.len() / TABLE_RECORD_LEN as usize;
        let from = self.table_records_upto(table, &map, after)?;
        let to = self.table_records_upto(table, &map, self.indexed_last)?;
        for i in from..to {
            if let Some(s) = self.table_record(table, &map, i, n)? {
                out.push(s);
            }
        }
        Ok(())
    }

    /// The first seqs of the groups that touched `table` after `after`, ascending: a table
    /// log missing one of them is damaged, even where its own frames look whole. (Groups
    /// at or before a table's creation belong to an older table of the same id: callers
    /// pass at least its creation seq.)
    pub fn groups_of(&self, table: TableId, after: Seq) -> Result<Vec<Seq>> {
        let mut out = Vec::new();
        self.indexed_groups_of(table, after, &mut out)?;
        if let Some(r) = self.recent_tables.get(&table) {
            let from = r.partition_point(|g| *g <= after);
            out.extend_from_slice(&r[from..]);
        }
        Ok(out)
    }

    /// The first seq of the last group that touched `table`, if any.
    pub fn last_group_of(&self, table: TableId) -> Result<Option<Seq>> {
        if let Some(last) = self.recent_tables.get(&table).and_then(|r| r.last()) {
            return Ok(Some(*last));
        }
        let Some(map) = self.table_map(table)? else {
            return Ok(None);
        };
        let n = map.len() / TABLE_RECORD_LEN as usize;
        match self
            .table_records_upto(table, &map, self.indexed_last)?
            .checked_sub(1)
        {
            Some(i) => self.table_record(table, &map, i, n),
            None => Ok(None),
        }
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

    /// Whether the journal frame at `rec.pos` is the group `rec` describes.
    fn frame_matches(&self, rec: &IndexRecord) -> bool {
        let Ok(i) = self.segs.binary_search_by_key(&rec.pos.seg, |s| s.0) else {
            return false;
        };
        let Ok(file) = File::open(&self.segs[i].1) else {
            return false;
        };
        let mut buf = vec![0u8; rec.pos.len as usize];
        if file.read_exact_at(&mut buf, rec.pos.off).is_err() {
            return false;
        }
        let FrameRead::Frame { payload, next } = read_frame(&buf, 0) else {
            return false;
        };
        if next != buf.len() || buf[8..12] != rec.pos.crc.to_le_bytes() {
            return false;
        }
        JournalRecord::decode(payload).is_ok_and(|j| {
            j.first_seq == rec.first_seq
                && j.count == rec.count
                && j.xid == rec.xid
                && j.commit_ts == rec.commit_ts
                && j.origin.is_some() == rec.imported
        })
    }

    /// Checks the segment size recorded in the headers of the first segment and of the
    /// last one (where reading resumes after the index): the rest are checked as they are
    /// read, and all were written with one size.
    fn check_segment_sizes(&self) -> Result<()> {
        let check = |path: &Path| -> Result<()> {
            let mut b = vec![0u8; SEGMENT_HEADER_LEN];
            let f = File::open(path).at(path)?;
            if f.read_exact_at(&mut b, 0).is_err() {
                return Ok(());
            }
            match SegmentHeader::decode(&b) {
                Ok(h) => check_segment_size(path, h.recorded_segment_size(), self.segment_size),
                Err(_) => Ok(()),
            }
        };
        if let Some((_, first)) = self.segs.first() {
            check(first)?;
        }
        if self.segs.len() > 1 {
            check(&self.segs[self.segs.len() - 1].1)?;
        }
        Ok(())
    }

    /// The roles file's entries.
    fn read_roles(&self) -> Result<(Vec<String>, u64)> {
        let path = self.idx_dir.join(ROLES_FILE);
        match std::fs::read(&path) {
            Ok(b) => Ok(jindex::decode_roles(&b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Vec::new(), 0)),
            Err(e) => Err(e).at(&path),
        }
    }

    /// Looks at the index: trusts it up to its last record whose frame is in the journal
    /// as it says (all of it, normally: one record checked), reads the imported groups'
    /// origins, and places the reading of the journal right after the indexed groups.
    fn load(&mut self) -> Result<()> {
        self.loaded = true;
        self.segs = list_segments(&self.dir)?;
        self.check_segment_sizes()?;
        let (roles, _) = self.read_roles()?;
        self.role_ids = roles
            .iter()
            .enumerate()
            .map(|(i, r)| (r.clone(), i as u32))
            .collect();
        self.roles = roles;
        let path = self.index_path();
        if jindex::file_len(&path)? < INDEX_HEADER_LEN + INDEX_RECORD_LEN {
            return Ok(());
        }
        let map = Arc::new(map_file(&path)?);
        if map[..INDEX_HEADER_LEN as usize] != INDEX_HEADER {
            return Ok(());
        }
        let n = (map.len() as u64 - INDEX_HEADER_LEN) / INDEX_RECORD_LEN;
        self.index = Some(map);
        let valid = |j: &Journal, i: u64| -> Option<IndexRecord> {
            let at = (INDEX_HEADER_LEN + i * INDEX_RECORD_LEN) as usize;
            let map = j.index.as_ref().expect("mapped");
            let rec = IndexRecord::decode(&map[at..at + INDEX_RECORD_LEN as usize])?;
            ((rec.role as usize) < j.roles.len() && j.frame_matches(&rec)).then_some(rec)
        };
        // A valid prefix, then records past the journal (files copied at different times,
        // or written after frames a crash lost): the last valid one, by bisection.
        let last = match valid(self, n - 1) {
            Some(rec) => Some((n, rec)),
            None => {
                let (mut lo, mut hi, mut best) = (0u64, n - 1, None);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    match valid(self, mid) {
                        Some(rec) => {
                            best = Some((mid + 1, rec));
                            lo = mid + 1;
                        }
                        None => hi = mid,
                    }
                }
                best
            }
        };
        let Some((count, rec)) = last else {
            self.index = None;
            return Ok(());
        };
        self.indexed = count as usize;
        self.indexed_last = rec.first_seq + rec.count - 1;
        self.next_seq = rec.first_seq + rec.count;
        self.last_ts = Some(rec.commit_ts);
        self.cur = self
            .segs
            .binary_search_by_key(&rec.pos.seg, |s| s.0)
            .expect("checked by frame_matches");
        self.off = rec.pos.off + u64::from(rec.pos.len);
        Ok(())
    }

    /// Runs `f` on the imported groups' origins, reading them first if no one asked yet:
    /// those of the indexed groups from `index/origins`, those of the recent ones from
    /// memory.
    fn with_origins<R>(&self, f: impl FnOnce(&Origins) -> R) -> Result<R> {
        if let Some(o) = self.origins.borrow().as_ref() {
            return Ok(f(o));
        }
        let mut origins = Origins::default();
        let path = self.idx_dir.join(ORIGINS_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).at(&path),
        };
        let n = bytes.len() / ORIGIN_RECORD_LEN as usize;
        for (i, rec) in bytes.chunks_exact(ORIGIN_RECORD_LEN as usize).enumerate() {
            let o = match OriginRecord::decode(rec) {
                Some(o) if o.first_seq > self.indexed_last => break,
                Some(o) if (o.role as usize) < self.roles.len() => o,
                // The last record may be an append in flight.
                None if i + 1 == n => break,
                _ => {
                    return Err(Error::corruption(
                        path,
                        i as u64 * ORIGIN_RECORD_LEN,
                        "origin record damaged (derived from the journal: removing the \
                         index files makes the next recovering open rebuild them)",
                    ))
                }
            };
            origins.add(
                o.first_seq,
                o.last_seq,
                o.table,
                o.run_xid,
                (o.xid, o.commit_ts, o.role),
            );
        }
        for g in &self.recent {
            if let Some(o) = g.origin {
                for t in &g.tables {
                    origins.add(g.info.first_seq, g.info.last_seq(), *t, g.info.xid, o);
                }
            }
        }
        let out = f(&origins);
        *self.origins.borrow_mut() = Some(origins);
        Ok(out)
    }

    /// Whether `table` ever received imported groups.
    pub fn has_imported(&self, table: TableId) -> Result<bool> {
        self.with_origins(|o| o.runs.contains_key(&table))
    }

    /// Runs `f` on the runs of imported groups of `table`, in seq order (none for a table
    /// that never received any).
    pub fn with_imported_runs<R>(
        &self,
        table: TableId,
        f: impl FnOnce(&[ImportRun]) -> R,
    ) -> Result<R> {
        self.with_origins(|o| f(o.runs.get(&table).map_or(&[][..], Vec::as_slice)))
    }

    #[cfg(test)]
    fn imported_runs(&self, table: TableId) -> Result<Vec<ImportRun>> {
        self.with_imported_runs(table, <[ImportRun]>::to_vec)
    }

    /// The last run of imported groups of `table`, if any.
    pub fn last_imported_run(&self, table: TableId) -> Result<Option<ImportRun>> {
        self.with_origins(|o| o.runs.get(&table).and_then(|r| r.last().cloned()))
    }

    /// Reads the journal past what this process has seen. A torn tail of the last segment
    /// is to be cut (`cut = Some(TolerateTornTail)`, writers only: left in `torn_cut` for
    /// the store to cut), reported (`Some(Strict)`), or treated as not yet written (`None`:
    /// a writer may be mid-append).
    pub fn refresh(&mut self, cut: Option<RecoveryMode>) -> Result<()> {
        if !self.loaded {
            self.load()?;
        }
        if self.segs.is_empty() {
            self.segs = list_segments(&self.dir)?;
        }
        let out = self.read_on(cut);
        if self.recent.len() >= REMAP_AT {
            if self.maintain {
                // Derived data: a failure leaves the index behind, and the groups here.
                let _ = self.write_derived();
            }
            self.remap()?;
        }
        out
    }

    fn read_on(&mut self, cut: Option<RecoveryMode>) -> Result<()> {
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
                        let crc =
                            u32::from_le_bytes(data[pos + 8..pos + 12].try_into().expect("4"));
                        let frame = FramePos {
                            seg: first,
                            off: at,
                            len: (next - pos) as u32,
                            crc,
                        };
                        self.apply(rec.group(), frame);
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
            if self.maintain && self.recent.len() >= 16 * REMAP_AT {
                let _ = self.write_derived();
                self.remap()?;
            }
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
    pub fn origin(&self, g: &GroupInfo) -> Result<Option<Origin>> {
        let Some((xid, commit_ts, role)) =
            self.with_origins(|o| o.by_seq.get(&g.first_seq).copied())?
        else {
            return Ok(None);
        };
        Ok(Some(Origin {
            xid,
            commit_ts,
            role: self.roles.get(role as usize).cloned().unwrap_or_default(),
        }))
    }

    fn apply(&mut self, rec: GroupRecord<'_>, pos: FramePos) {
        self.groups_read += 1;
        let role = self.intern_role(rec.role);
        let last = rec.first_seq + rec.count - 1;
        let origin = rec
            .origin
            .map(|o| (o.xid, o.commit_ts, self.intern_role(&o.role)));
        if let (Some(o), Some(origins)) = (origin, self.origins.get_mut().as_mut()) {
            for t in rec.tables {
                origins.add(rec.first_seq, last, *t, rec.xid, o);
            }
        }
        for t in rec.tables {
            self.recent_tables
                .entry(*t)
                .or_default()
                .push(rec.first_seq);
        }
        self.recent.push(Recent {
            info: GroupInfo {
                first_seq: rec.first_seq,
                count: rec.count,
                commit_ts: rec.commit_ts,
                xid: rec.xid,
                role,
            },
            tables: rec.tables.to_vec(),
            origin,
            pos,
        });
        self.next_seq = rec.first_seq + rec.count;
        self.last_ts = Some(rec.commit_ts);
    }

    /// Makes this store write the index as it reads (see [`Journal::write_derived`]).
    pub fn set_maintain(&mut self, on: bool) {
        self.maintain = on;
    }

    /// Writes the index records (and the tables' groups, roles and origins they need) of
    /// the groups this store read that the index does not hold yet. Only one process may
    /// do this at a time: on a primary the one holding the append lock, on a standby redo.
    /// Derived data: callers may ignore a failure (the index then stays behind, and the
    /// next writer writes what is missing).
    pub fn write_derived(&mut self) -> Result<()> {
        if !self.cache.dirs {
            let dir = self.idx_dir.join(TABLES_DIR);
            std::fs::create_dir_all(&dir).at(&dir)?;
            self.cache.dirs = true;
        }
        let ipath = self.index_path();
        if self.cache.index.is_none() {
            self.cache.index = Some(jindex::open_rw(&ipath)?);
        }
        let len = self
            .cache
            .index
            .as_ref()
            .expect("opened")
            .metadata()
            .at(&ipath)?
            .len();
        let on_disk = if len < INDEX_HEADER_LEN {
            0
        } else {
            ((len - INDEX_HEADER_LEN) / INDEX_RECORD_LEN) as usize
        };
        if on_disk < self.indexed || on_disk >= self.group_count() {
            return Ok(());
        }
        let new = &self.recent[on_disk - self.indexed..];
        // Roles first: a record names its role by its ordinal in the file.
        let rpath = self.idx_dir.join(ROLES_FILE);
        if self.cache.roles.is_none() {
            self.cache.roles = Some((jindex::open_rw(&rpath)?, u64::MAX, HashMap::new()));
        }
        let (rfile, rlen, ids) = self.cache.roles.as_mut().expect("opened");
        let now = rfile.metadata().at(&rpath)?.len();
        if now != *rlen {
            let mut b = vec![0u8; now as usize];
            rfile.read_exact_at(&mut b, 0).at(&rpath)?;
            let (names, whole) = jindex::decode_roles(&b);
            *ids = names
                .into_iter()
                .enumerate()
                .map(|(i, r)| (r, i as u32))
                .collect();
            *rlen = whole;
        }
        let mut added = Vec::new();
        let mut file_id = |name: &str| -> u32 {
            if let Some(id) = ids.get(name) {
                return *id;
            }
            let id = ids.len() as u32;
            jindex::encode_role(name, &mut added);
            ids.insert(name.to_string(), id);
            id
        };
        let mut records = Vec::with_capacity(new.len() * INDEX_RECORD_LEN as usize);
        let mut origins = Vec::new();
        let mut by_table: HashMap<TableId, Vec<Seq>> = HashMap::new();
        for g in new {
            let name = self
                .roles
                .get(g.info.role as usize)
                .map_or("", String::as_str);
            let role = file_id(name);
            let origin = g.origin.map(|(xid, ts, r)| {
                let name = self.roles.get(r as usize).map_or("", String::as_str);
                (xid, ts, file_id(name))
            });
            records.extend_from_slice(
                &IndexRecord {
                    first_seq: g.info.first_seq,
                    count: g.info.count,
                    commit_ts: g.info.commit_ts,
                    xid: g.info.xid,
                    role,
                    imported: origin.is_some(),
                    pos: g.pos,
                }
                .encode(),
            );
            for t in &g.tables {
                by_table.entry(*t).or_default().push(g.info.first_seq);
                if let Some((xid, commit_ts, role)) = origin {
                    origins.push(OriginRecord {
                        first_seq: g.info.first_seq,
                        last_seq: g.info.last_seq(),
                        table: *t,
                        run_xid: g.info.xid,
                        xid,
                        commit_ts,
                        role,
                    });
                }
            }
        }
        if !added.is_empty() {
            rfile.write_all_at(&added, *rlen).at(&rpath)?;
            *rlen += added.len() as u64;
            if rfile.metadata().at(&rpath)?.len() > *rlen {
                rfile.set_len(*rlen).at(&rpath)?;
            }
        }
        if self.cache.tables.len() > OPEN_TABLE_FILES {
            self.cache.tables.clear();
        }
        for (t, seqs) in by_table {
            // A table dropped meanwhile has no directory: its groups are not looked up.
            if !self.tables_dir.join(t.to_string()).is_dir() {
                continue;
            }
            let path = self.table_groups_path(t);
            let (f, seen, last) = match self.cache.tables.entry(t) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert((jindex::open_rw(&path)?, u64::MAX, 0))
                }
            };
            let len = f.metadata().at(&path)?.len();
            let mut whole = len - len % TABLE_RECORD_LEN;
            if len != *seen {
                *last = 0;
                if whole >= TABLE_RECORD_LEN {
                    let mut b = [0u8; TABLE_RECORD_LEN as usize];
                    f.read_exact_at(&mut b, whole - TABLE_RECORD_LEN)
                        .at(&path)?;
                    match jindex::decode_table_record(&b) {
                        Some(s) => *last = s,
                        // Not written whole: written again.
                        None => whole -= TABLE_RECORD_LEN,
                    }
                }
            }
            let bytes: Vec<u8> = seqs
                .iter()
                .filter(|s| **s > *last)
                .flat_map(|s| jindex::encode_table_record(*s))
                .collect();
            if !bytes.is_empty() {
                f.write_all_at(&bytes, whole).at(&path)?;
                let end = whole + bytes.len() as u64;
                if len > end {
                    f.set_len(end).at(&path)?;
                }
                *seen = end;
                *last = *seqs.last().expect("not empty");
            } else {
                *seen = len;
            }
        }
        if !origins.is_empty() {
            let opath = self.idx_dir.join(ORIGINS_FILE);
            let olen = jindex::file_len(&opath)?;
            let mut whole = olen - olen % ORIGIN_RECORD_LEN;
            // Written again after a failed or cut write: keep what is there.
            let mut last_there = 0;
            if whole >= ORIGIN_RECORD_LEN {
                let f = jindex::open_rw(&opath)?;
                let mut b = [0u8; ORIGIN_RECORD_LEN as usize];
                f.read_exact_at(&mut b, whole - ORIGIN_RECORD_LEN)
                    .at(&opath)?;
                match OriginRecord::decode(&b) {
                    Some(o) => last_there = o.first_seq,
                    None => whole -= ORIGIN_RECORD_LEN,
                }
            }
            let bytes: Vec<u8> = origins
                .iter()
                .filter(|o| o.first_seq > last_there)
                .flat_map(|o| o.encode())
                .collect();
            if !bytes.is_empty() {
                jindex::append(&opath, whole, &bytes)?;
            }
        }
        let f = self.cache.index.as_ref().expect("opened");
        if len < INDEX_HEADER_LEN {
            f.write_all_at(&INDEX_HEADER, 0).at(&ipath)?;
        }
        f.write_all_at(
            &records,
            INDEX_HEADER_LEN + on_disk as u64 * INDEX_RECORD_LEN,
        )
        .at(&ipath)?;
        Ok(())
    }

    /// Maps the index again where it has grown past this store's recent groups, and drops
    /// those from memory.
    fn remap(&mut self) -> Result<()> {
        let path = self.index_path();
        let len = jindex::file_len(&path)?;
        if len < INDEX_HEADER_LEN + INDEX_RECORD_LEN {
            return Ok(());
        }
        let map = Arc::new(map_file(&path)?);
        if map[..INDEX_HEADER_LEN as usize] != INDEX_HEADER {
            return Ok(());
        }
        let n = (((map.len() as u64 - INDEX_HEADER_LEN) / INDEX_RECORD_LEN) as usize)
            .min(self.group_count());
        if n <= self.indexed {
            return Ok(());
        }
        let at = (INDEX_HEADER_LEN + (n as u64 - 1) * INDEX_RECORD_LEN) as usize;
        let Some(rec) = IndexRecord::decode(&map[at..at + INDEX_RECORD_LEN as usize]) else {
            return Ok(());
        };
        let mine = &self.recent[n - 1 - self.indexed];
        if rec.first_seq != mine.info.first_seq || rec.xid != mine.info.xid || rec.pos != mine.pos {
            return Ok(());
        }
        // The recent groups kept name roles by this store's ordinals: renumber them by
        // the file's, which the mapped records use.
        let (file_roles, _) = self.read_roles()?;
        if file_roles.len() <= rec.role as usize {
            return Ok(());
        }
        let old_roles = std::mem::take(&mut self.roles);
        self.roles = file_roles;
        self.role_ids = self
            .roles
            .iter()
            .enumerate()
            .map(|(i, r)| (r.clone(), i as u32))
            .collect();
        let kept: Vec<Recent> = self.recent.drain(..).skip(n - self.indexed).collect();
        let name = |id: u32| old_roles.get(id as usize).cloned().unwrap_or_default();
        let renumber = |j: &mut Journal, id: u32| j.intern_role(&name(id));
        if let Some(mut origins) = self.origins.get_mut().take() {
            for o in origins.by_seq.values_mut() {
                o.2 = renumber(self, o.2);
            }
            *self.origins.get_mut() = Some(origins);
        }
        self.recent_tables.clear();
        for mut g in kept {
            g.info.role = renumber(self, g.info.role);
            for t in &g.tables {
                self.recent_tables
                    .entry(*t)
                    .or_default()
                    .push(g.info.first_seq);
            }
            self.recent.push(g);
        }
        self.index = Some(map);
        self.indexed = n;
        self.indexed_last = rec.first_seq + rec.count - 1;
        self.table_maps.borrow_mut().clear();
        Ok(())
    }

    /// Makes the index files trustworthy again after the server (or the machine) stopped:
    /// everything past the counts last synced is cut (a crash of the machine may have lost
    /// any of it), the index is cut to its last record that the journal agrees with, and
    /// the rest is written again from the journal. For a writer that recovers the files
    /// (under the append lock) and for redo's start; reads the journal from the last synced
    /// group on, and the whole journal when nothing was ever synced.
    pub fn repair_derived(&mut self) -> Result<()> {
        let synced = Synced::read(&self.idx_dir);
        let ipath = self.index_path();
        let len = jindex::file_len(&ipath)?;
        let on_disk = if len < INDEX_HEADER_LEN {
            0
        } else {
            (len - INDEX_HEADER_LEN) / INDEX_RECORD_LEN
        };
        let synced_rec = if synced.records == 0 || synced.records > on_disk {
            None
        } else {
            let f = File::open(&ipath).at(&ipath)?;
            let mut b = [0u8; INDEX_RECORD_LEN as usize];
            f.read_exact_at(
                &mut b,
                INDEX_HEADER_LEN + (synced.records - 1) * INDEX_RECORD_LEN,
            )
            .at(&ipath)?;
            IndexRecord::decode(&b)
        };
        self.segs = list_segments(&self.dir)?;
        self.check_segment_sizes()?;
        match synced_rec {
            None => self.remove_derived()?,
            Some(rec) if on_disk > synced.records => {
                // Tables touched after the synced records: in the journal frames after it.
                let below = rec.first_seq + rec.count;
                let mut touched = HashSet::new();
                self.tables_after(rec.pos, &mut touched)?;
                for t in touched {
                    jindex::cut_table_groups(&self.table_groups_path(t), below)?;
                }
                jindex::cut(&ipath, INDEX_HEADER_LEN + synced.records * INDEX_RECORD_LEN)?;
                let rpath = self.idx_dir.join(ROLES_FILE);
                let rbytes = std::fs::read(&rpath).unwrap_or_default();
                let (_, keep) = jindex::decode_roles_upto(&rbytes, synced.roles as usize);
                jindex::cut(&rpath, keep)?;
                jindex::cut(
                    &self.idx_dir.join(ORIGINS_FILE),
                    synced.origins * ORIGIN_RECORD_LEN,
                )?;
            }
            Some(_) => {}
        }
        // Trust what the journal agrees with; cut the rest (and whatever of the tables'
        // groups and origins lies past it: any table may have such records).
        *self = Journal::new(self.dir.clone(), self.segment_size);
        self.maintain = true;
        self.load()?;
        let len = jindex::file_len(&ipath)?;
        let kept = INDEX_HEADER_LEN + self.indexed as u64 * INDEX_RECORD_LEN;
        if self.indexed == 0 && len > 0 {
            self.remove_derived()?;
        } else if len > kept {
            jindex::cut(&ipath, kept)?;
            for path in self.table_groups_files() {
                jindex::cut_table_groups(&path, self.indexed_last + 1)?;
            }
            let opath = self.idx_dir.join(ORIGINS_FILE);
            let obytes = std::fs::read(&opath).unwrap_or_default();
            let keep = obytes
                .chunks_exact(ORIGIN_RECORD_LEN as usize)
                .take_while(|r| {
                    OriginRecord::decode(r).is_some_and(|o| o.first_seq <= self.indexed_last)
                })
                .count() as u64;
            jindex::cut(&opath, keep * ORIGIN_RECORD_LEN)?;
        }
        Ok(())
    }

    /// Removes every index file (they are rebuilt from the journal).
    fn remove_derived(&mut self) -> Result<()> {
        match std::fs::remove_dir_all(&self.idx_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).at(&self.idx_dir),
        }
    }

    /// The tables of the groups whose journal frames follow the one at `pos`.
    fn tables_after(&self, pos: FramePos, out: &mut HashSet<TableId>) -> Result<()> {
        let Ok(mut i) = self.segs.binary_search_by_key(&pos.seg, |s| s.0) else {
            return Ok(());
        };
        let mut off = pos.off + u64::from(pos.len);
        while let Some((_, path)) = self.segs.get(i) {
            let file = File::open(path).at(path)?;
            let len = file.metadata().at(path)?.len();
            let mut data = vec![0u8; len.saturating_sub(off) as usize];
            file.read_exact_at(&mut data, off).at(path)?;
            let mut at = 0usize;
            while let FrameRead::Frame { payload, next } = read_frame(&data, at) {
                if let Ok(rec) = JournalRecord::decode(payload) {
                    out.extend(rec.tables);
                }
                at = next;
            }
            i += 1;
            off = SEGMENT_HEADER_LEN as u64;
        }
        Ok(())
    }

    /// Syncs the index files and records how much of them is on disk (the fates worker
    /// calls this on a primary, redo on a standby). Reads the journal frames of the groups
    /// indexed since the last call, for the tables they touched.
    pub fn sync_derived(&mut self) -> Result<()> {
        let synced = Synced::read(&self.idx_dir);
        let ipath = self.index_path();
        let len = jindex::file_len(&ipath)?;
        if len < INDEX_HEADER_LEN + INDEX_RECORD_LEN {
            return Ok(());
        }
        let records = (len - INDEX_HEADER_LEN) / INDEX_RECORD_LEN;
        if records <= synced.records {
            return Ok(());
        }
        // Counted before the syncs: what the records need is in the files by now.
        let (roles, _) = self.read_roles()?;
        let origins = jindex::file_len(&self.idx_dir.join(ORIGINS_FILE))? / ORIGIN_RECORD_LEN;
        if self.segs.is_empty() {
            self.segs = list_segments(&self.dir)?;
        }
        let f = File::open(&ipath).at(&ipath)?;
        let mut touched = HashSet::new();
        if synced.records == 0 {
            for path in self.table_groups_files() {
                if let Some(id) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    touched.insert(id);
                }
            }
        } else {
            let mut b = [0u8; INDEX_RECORD_LEN as usize];
            f.read_exact_at(
                &mut b,
                INDEX_HEADER_LEN + (synced.records - 1) * INDEX_RECORD_LEN,
            )
            .at(&ipath)?;
            match IndexRecord::decode(&b) {
                Some(rec) => self.tables_after(rec.pos, &mut touched)?,
                None => return Ok(()),
            }
        }
        for t in touched {
            jindex::sync(&self.table_groups_path(t))?;
        }
        jindex::sync(&self.idx_dir.join(ROLES_FILE))?;
        jindex::sync(&self.idx_dir.join(ORIGINS_FILE))?;
        f.sync_data().at(&ipath)?;
        Synced {
            records,
            roles: roles.len() as u64,
            origins,
        }
        .write(&self.idx_dir)
    }
}

/// Keeps the journal's index up to date where no store appends: redo, which writes the
/// journal on a standby and in crash or point-in-time recovery. One per process, and only
/// one process at a time (the startup process).
pub struct IndexMaintainer {
    journal: Journal,
    since_sync: usize,
}

/// Groups indexed by an [`IndexMaintainer`] between two syncs of the index files.
const SYNC_EVERY: usize = 4096;

impl IndexMaintainer {
    /// Repairs the index of the store under `root` (as a recovering open does) and
    /// indexes what the journal holds past it.
    pub fn start(root: &Path, segment_size: u64) -> Result<IndexMaintainer> {
        let mut journal = Journal::new(root.join("journal"), segment_size);
        journal.set_maintain(true);
        journal.repair_derived()?;
        let mut m = IndexMaintainer {
            journal,
            since_sync: 0,
        };
        m.catch_up()?;
        Ok(m)
    }

    /// Indexes the groups the journal holds past the index (after redo wrote them), and
    /// syncs the index files every few thousand groups.
    pub fn catch_up(&mut self) -> Result<()> {
        let before = self.journal.group_count();
        self.journal.refresh(None)?;
        self.journal.write_derived()?;
        self.since_sync += self.journal.group_count() - before;
        if self.since_sync >= SYNC_EVERY {
            self.journal.sync_derived()?;
            self.since_sync = 0;
        }
        if self.journal.recent.len() >= REMAP_AT {
            self.journal.remap()?;
        }
        Ok(())
    }

    /// Syncs the index files now (at the end of recovery).
    pub fn sync(&mut self) -> Result<()> {
        self.since_sync = 0;
        self.journal.sync_derived()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AllCommitted, Config, Durability, Event, Op, Row, Store, Txn};

    const TABLES: [TableId; 3] = [11, 12, 13];

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let dst = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &dst);
            } else {
                std::fs::copy(e.path(), &dst).unwrap();
            }
        }
    }

    fn cfg() -> Config {
        Config {
            durability: Durability::NoSync,
            segment_size: 4096,
            ..Config::default()
        }
    }

    fn ev(table: TableId, key: u64, insert: bool) -> Event {
        Event {
            table,
            key: key.to_be_bytes().to_vec(),
            op: if insert {
                Op::Insert(Row(vec![(1, Some(vec![1]))]))
            } else {
                Op::Patch(vec![(1, Some(key.to_le_bytes().to_vec()))])
            },
        }
    }

    /// A store of three tables with `groups` groups in all: several roles, groups of one
    /// and of two tables, and an import into a fourth table.
    fn build(root: &Path, groups: u64) {
        let mut s = Store::open(root, cfg()).unwrap();
        for t in TABLES.iter().chain([&14]) {
            s.create_table(*t).unwrap();
        }
        let first: Vec<Txn> = TABLES
            .iter()
            .enumerate()
            .map(|(i, t)| Txn {
                xid: 100 + i as u64,
                commit_ts: 0,
                role: "owner".into(),
                events: (0..5).map(|k| ev(*t, k, true)).collect(),
            })
            .collect();
        s.append(&first, &AllCommitted).unwrap();
        let imported: Vec<Txn> = (0..7)
            .map(|k| Txn {
                xid: 500,
                commit_ts: 5000,
                role: "importer".into(),
                events: vec![ev(14, k, true)],
            })
            .collect();
        let origins: Vec<crate::Origin> = (0..7)
            .map(|k| crate::Origin {
                xid: 9000 + k,
                commit_ts: 1000 + k as i64,
                role: format!("far-{}", k % 2),
            })
            .collect();
        s.append_imported(&imported, &origins, &AllCommitted)
            .unwrap();
        for g in 0..groups {
            let t = TABLES[(g % 3) as usize];
            let mut events = vec![ev(t, g % 5, false)];
            if g % 7 == 0 {
                events.push(ev(TABLES[((g + 1) % 3) as usize], g % 5, false));
            }
            s.append(
                &[Txn {
                    xid: 1000 + g,
                    commit_ts: 0,
                    role: format!("role-{}", g % 4),
                    events,
                }],
                &AllCommitted,
            )
            .unwrap();
        }
    }

    fn read(root: &Path) -> Journal {
        let mut j = Journal::new(root.join("journal"), cfg().segment_size);
        j.refresh(None).unwrap();
        j
    }

    fn remove_index(root: &Path) {
        let mut j = Journal::new(root.join("journal"), cfg().segment_size);
        j.remove_derived().unwrap();
    }

    /// Everything a store asks of its journal, from `j`.
    fn answers(j: &Journal) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..j.group_count() {
            let g = j.group(i).unwrap();
            out.push(format!(
                "{} {} {} {} {} {:?}",
                g.first_seq,
                g.count,
                g.commit_ts,
                g.xid,
                j.role(&g),
                j.origin(&g).unwrap()
            ));
        }
        for seq in 0..=j.last_seq() + 1 {
            out.push(format!(
                "{seq}: {:?}",
                j.group_of(seq).unwrap().map(|g| g.first_seq)
            ));
        }
        let last_ts = j.last_ts.unwrap();
        for ts in (last_ts - 3 * j.group_count() as i64)..=last_ts + 1 {
            out.push(format!("ts {ts}: {}", j.seq_at(ts).unwrap()));
        }
        for t in TABLES.iter().chain([&14, &99]) {
            for after in [0, 3, 17, 50, j.last_seq() / 2, j.last_seq()] {
                out.push(format!(
                    "{t} > {after}: {:?}",
                    j.groups_of(*t, after).unwrap()
                ));
            }
            out.push(format!("{t} last {:?}", j.last_group_of(*t).unwrap()));
            out.push(format!(
                "{t} runs {:?}",
                j.imported_runs(*t)
                    .unwrap()
                    .iter()
                    .map(|r| (r.xid, r.groups.clone()))
                    .collect::<Vec<_>>()
            ));
        }
        out.push(format!("{} {:?}", j.next_seq, j.last_ts));
        out
    }

    #[test]
    fn the_index_answers_as_a_whole_reading_of_the_journal_does() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        build(root, 700);
        let indexed = read(root);
        assert_eq!(indexed.group_count(), 703 + 7);
        assert!(
            indexed.recent.is_empty(),
            "every group indexed by its appender"
        );
        assert!(indexed.indexed > 0);
        let with_index = answers(&indexed);
        remove_index(root);
        let whole = read(root);
        assert_eq!(whole.indexed, 0);
        assert_eq!(whole.recent.len(), 710);
        assert_eq!(answers(&whole), with_index);
        // The next recovering open writes the index again, the same bytes.
        drop(Store::open(root, cfg()).unwrap());
        let again = read(root);
        assert_eq!(again.indexed, 710);
        assert_eq!(answers(&again), with_index);
    }

    #[test]
    fn a_store_reads_only_the_groups_past_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        build(root, 300);
        // An old journal frame damaged: an open that trusts the index never reads it.
        let segs = list_segments(&root.join("journal")).unwrap();
        let first = &segs[0].1;
        let mut bytes = std::fs::read(first).unwrap();
        bytes[SEGMENT_HEADER_LEN + 14] ^= 0x10;
        std::fs::write(first, &bytes).unwrap();
        let j = read(root);
        assert_eq!(j.group_count(), 310);
        assert_eq!(j.recent.len(), 0);
        // Nor the imported groups' origins, until one is asked for.
        assert!(j.origins.borrow().is_none());
        let imported = j.group(3).unwrap();
        assert_eq!(j.origin(&imported).unwrap().map(|o| o.xid), Some(9000));
        assert!(j.origins.borrow().is_some());
        // A damaged origin record (before the last) is reported, never read as no origin.
        let opath = root.join(INDEX_DIR).join(ORIGINS_FILE);
        let mut o = std::fs::read(&opath).unwrap();
        o[3] ^= 1;
        std::fs::write(&opath, &o).unwrap();
        let j = read(root);
        match j.origin(&imported) {
            Err(Error::Corruption { file, offset, .. }) => assert_eq!((file, offset), (opath, 0)),
            other => panic!("{other:?}"),
        }
        // Without the index the whole journal is read, and the damage found.
        remove_index(root);
        let mut j = Journal::new(root.join("journal"), cfg().segment_size);
        assert!(matches!(j.refresh(None), Err(Error::Corruption { .. })));
    }

    /// Files of the index cut anywhere, zeroed, or ahead of the journal (copied at another
    /// moment): a reader trusts what agrees with the journal, and a recovering open writes
    /// them again, the same bytes as before.
    #[test]
    fn damaged_or_foreign_index_files_are_repaired_to_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a");
        build(&root, 200);
        let derived = |root: &Path| -> Vec<(String, Vec<u8>)> {
            let mut out = Vec::new();
            for f in [INDEX_FILE, ROLES_FILE, ORIGINS_FILE] {
                out.push((
                    f.to_string(),
                    std::fs::read(root.join(INDEX_DIR).join(f)).unwrap_or_default(),
                ));
            }
            for t in TABLES.iter().chain([&14]) {
                let rel = format!("{INDEX_DIR}/{TABLES_DIR}/{t}");
                out.push((
                    rel.clone(),
                    std::fs::read(root.join(rel)).unwrap_or_default(),
                ));
            }
            out
        };
        let good = derived(&root);
        let want = answers(&read(&root));
        let ipath = root.join(INDEX_DIR).join(INDEX_FILE);
        let len = std::fs::metadata(&ipath).unwrap().len();
        type Damage = Box<dyn Fn(&Path)>;
        let cases: Vec<(&str, Damage)> = vec![
            (
                "index cut mid-record",
                Box::new(move |r: &Path| {
                    jindex::cut(&r.join(INDEX_DIR).join(INDEX_FILE), len - 100).unwrap()
                }),
            ),
            (
                "index tail zeroed",
                Box::new(move |r: &Path| {
                    let p = r.join(INDEX_DIR).join(INDEX_FILE);
                    let mut b = std::fs::read(&p).unwrap();
                    let n = b.len();
                    b[n - 200..].fill(0);
                    std::fs::write(&p, b).unwrap();
                }),
            ),
            (
                "a table's groups cut",
                Box::new(|r: &Path| {
                    let p = r.join(INDEX_DIR).join(TABLES_DIR).join("12");
                    jindex::cut(&p, 5 * TABLE_RECORD_LEN + 3).unwrap();
                }),
            ),
            (
                "roles cut",
                Box::new(|r: &Path| jindex::cut(&r.join(INDEX_DIR).join(ROLES_FILE), 20).unwrap()),
            ),
            ("everything removed", Box::new(|r: &Path| remove_index(r))),
        ];
        for (what, damage) in cases {
            let root = dir.path().join(what.replace(' ', "-"));
            copy_dir(&dir.path().join("a"), &root);
            damage(&root);
            drop(Store::open(&root, cfg()).unwrap());
            assert_eq!(derived(&root), good, "{what}");
            assert_eq!(answers(&read(&root)), want, "{what}");
        }
        // Index files of a later moment beside an earlier journal (a base backup copies
        // them at different times): a reader trusts only what the journal holds.
        let early = dir.path().join("early");
        build(&early, 150);
        let early_want = answers(&read(&early));
        let later = dir.path().join("later");
        copy_dir(&early, &later);
        {
            let mut s = Store::open(&later, cfg()).unwrap();
            for g in 0..40u64 {
                s.append(
                    &[Txn {
                        xid: 7000 + g,
                        commit_ts: 0,
                        role: "late".into(),
                        events: vec![ev(11, g % 5, false)],
                    }],
                    &AllCommitted,
                )
                .unwrap();
            }
        }
        for f in [INDEX_FILE, ROLES_FILE] {
            std::fs::copy(later.join(INDEX_DIR).join(f), early.join(INDEX_DIR).join(f)).unwrap();
        }
        for t in TABLES {
            let p = format!("{INDEX_DIR}/{TABLES_DIR}/{t}");
            std::fs::copy(later.join(&p), early.join(&p)).unwrap();
        }
        let j = read(&early);
        assert_eq!(answers(&j), early_want);
        drop(Store::open(&early, cfg()).unwrap());
        assert_eq!(answers(&read(&early)), early_want);
        assert_eq!(
            jindex::file_len(&early.join(INDEX_DIR).join(INDEX_FILE)).unwrap(),
            INDEX_HEADER_LEN + 160 * INDEX_RECORD_LEN,
            "cut back to the journal"
        );
    }
}
