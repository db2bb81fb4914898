//! One table's files and in-memory state: its log segments, its metadata (creation seq,
//! index definitions), and the delta since its newest snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, IoContext, Result};
use crate::format::{
    peek_group_seq, put_varint, read_frame, Decoder, FrameRead, TableFrame, FORMAT_VERSION,
    KIND_TABLE, SEGMENT_HEADER_LEN, TABLE_META_MAGIC,
};
use crate::index::{entry_key, IndexKind};
use crate::log::{list_segments, LogWriter, Segment};
use crate::types::{ColumnId, Fate, Fates, Op, Row, Seq, TableId, Value};

/// `(index key, key)` pairs of one indexed column: the index key is the value's canonical
/// key for the index's kind ([`crate::index::entry_key`]).
pub(crate) type IndexSet = BTreeSet<(Vec<u8>, Vec<u8>)>;

/// One indexed column of a delta: its kind and its entries.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeltaIndex {
    pub kind: IndexKind,
    pub set: IndexSet,
}

/// One event of a key kept in a delta.
#[derive(Clone, Debug)]
pub(crate) struct Version {
    pub seq: Seq,
    pub xid: u64,
    pub op: Op,
}

/// Events after some base seq (a snapshot's, or 0), by key, with an index of the column
/// values they set for every indexed column.
#[derive(Clone, Debug, Default)]
pub(crate) struct Delta {
    pub keys: BTreeMap<Vec<u8>, Vec<Version>>,
    /// Per indexed column: `(index key, key)` for every non-NULL value a version sets.
    pub index: BTreeMap<ColumnId, DeltaIndex>,
    /// The last group applied.
    pub upto: Seq,
}

impl Delta {
    pub fn with_indexes(upto: Seq, indexes: &[(ColumnId, IndexKind)]) -> Delta {
        Delta {
            keys: BTreeMap::new(),
            index: indexes
                .iter()
                .map(|(c, kind)| {
                    let ix = DeltaIndex {
                        kind: *kind,
                        set: BTreeSet::new(),
                    };
                    (*c, ix)
                })
                .collect(),
            upto,
        }
    }

    /// Adds one key's events of a frame (from [`crate::format::key_events`]) above `base`.
    pub fn add_key_events(
        &mut self,
        key: &[u8],
        group_seq: Seq,
        xid: u64,
        events: Vec<(Seq, Op)>,
        base: Seq,
    ) {
        for (seq, op) in events {
            if seq <= base {
                continue;
            }
            self.index_op(key, &op);
            self.keys
                .entry(key.to_vec())
                .or_default()
                .push(Version { seq, xid, op });
        }
        self.upto = group_seq;
    }

    /// Adds a frame's events with seqs above `base` (a group may straddle a snapshot seq).
    pub fn add_frame_after(&mut self, frame: TableFrame, base: Seq) {
        for (seq, key, op) in frame.events {
            if seq <= base {
                continue;
            }
            self.index_op(&key, &op);
            self.keys.entry(key).or_default().push(Version {
                seq,
                xid: frame.xid,
                op,
            });
        }
        self.upto = frame.group_seq;
    }

    fn index_op(&mut self, key: &[u8], op: &Op) {
        let cols: &[(ColumnId, Value)] = match op {
            Op::Insert(r) => &r.0,
            Op::Patch(p) => p,
            Op::SoftDelete => return,
        };
        for (col, ix) in self.index.iter_mut() {
            if let Ok(i) = cols.binary_search_by_key(col, |p| p.0) {
                if let Some(v) = &cols[i].1 {
                    let k = match ix.kind {
                        IndexKind::Bytes => v.clone(),
                        kind => entry_key(kind, v),
                    };
                    ix.set.insert((k, key.to_vec()));
                }
            }
        }
    }

    /// Indexes `column` by `kind` (a no-op if already so indexed; an index of the column of
    /// another kind is rebuilt).
    pub fn ensure_index(&mut self, column: ColumnId, kind: IndexKind) {
        if self.index.get(&column).is_some_and(|ix| ix.kind == kind) {
            return;
        }
        self.index.insert(
            column,
            DeltaIndex {
                kind,
                set: BTreeSet::new(),
            },
        );
        self.reindex();
    }

    pub fn drop_index(&mut self, column: ColumnId) {
        self.index.remove(&column);
    }

    fn reindex(&mut self) {
        for ix in self.index.values_mut() {
            ix.set.clear();
        }
        let keys = std::mem::take(&mut self.keys);
        for (k, vs) in &keys {
            for v in vs {
                self.index_op(k, &v.op);
            }
        }
        self.keys = keys;
    }

    /// Forgets every version at or below `base` (a new snapshot covers them).
    pub fn rebase(&mut self, base: Seq) {
        self.keys.retain(|_, vs| {
            vs.retain(|v| v.seq > base);
            !vs.is_empty()
        });
        self.reindex();
    }
}

/// What the visible versions of one key do to the row the base holds.
#[derive(Clone, Debug)]
pub(crate) enum Effect {
    /// The row no longer depends on the base (an INSERT or SOFT_DELETE was visible).
    Known(Option<Row>),
    /// Only PATCHes were visible: merged, to apply on the base row if there is one.
    OnBase(Vec<(ColumnId, Value)>),
}

impl Effect {
    pub fn apply(self, base: Option<Row>) -> Option<Row> {
        match self {
            Effect::Known(r) => r,
            Effect::OnBase(patch) => base.map(|mut r| {
                r.apply_patch(&patch);
                r
            }),
        }
    }
}

/// The effect of the versions with seq <= `upto` whose transaction committed; `None` when
/// none is visible. A PATCH or SOFT_DELETE of an absent row is a no-op.
pub(crate) fn effect(versions: &[Version], upto: Seq, fates: &dyn Fates) -> Option<Effect> {
    let mut out: Option<Effect> = None;
    let mut last_xid = None;
    let mut last_fate = Fate::Committed;
    for v in versions.iter().take_while(|v| v.seq <= upto) {
        if last_xid != Some(v.xid) {
            last_fate = fates.fate(v.xid);
            last_xid = Some(v.xid);
        }
        if last_fate != Fate::Committed {
            continue;
        }
        out = Some(match (out, &v.op) {
            (_, Op::Insert(r)) => Effect::Known(Some(r.clone())),
            (_, Op::SoftDelete) => Effect::Known(None),
            (Some(Effect::Known(Some(mut r))), Op::Patch(p)) => {
                r.apply_patch(p);
                Effect::Known(Some(r))
            }
            (Some(Effect::Known(None)), Op::Patch(_)) => Effect::Known(None),
            (Some(Effect::OnBase(mut acc)), Op::Patch(p)) => {
                Row::merge_patch(&mut acc, p);
                Effect::OnBase(acc)
            }
            (None, Op::Patch(p)) => Effect::OnBase(p.clone()),
        });
    }
    out
}

/// A table's creation seq and index definitions, the `meta` file of its directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TableMeta {
    /// The journal's last seq when the table was created; older groups naming this table
    /// id belong to a dropped table of the same id.
    pub created_seq: Seq,
    /// The indexed columns (ascending, each once) and their index kinds.
    pub indexes: Vec<(ColumnId, IndexKind)>,
}

/// The table meta extension listing each index's kind.
const META_KINDS: u8 = 1;

impl TableMeta {
    /// `magic "DRIFTTBL" | u16 version | varint created_seq | varint n | n x varint column |
    /// [u8 1 | n x u8 index kind] | u32 crc32(everything before)`.
    ///
    /// The kinds are written only when an index is not of kind `Bytes`: a meta file whose
    /// indexes are all `Bytes` is byte for byte what builds from before index kinds wrote
    /// (and read), and such a file, without kinds, decodes as all `Bytes`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = TABLE_META_MAGIC.to_vec();
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        put_varint(&mut out, self.created_seq);
        put_varint(&mut out, self.indexes.len() as u64);
        for (c, _) in &self.indexes {
            put_varint(&mut out, u64::from(*c));
        }
        if self.indexes.iter().any(|(_, k)| *k != IndexKind::Bytes) {
            out.push(META_KINDS);
            out.extend(self.indexes.iter().map(|(_, k)| k.code()));
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(buf: &[u8]) -> crate::format::DecodeResult<TableMeta> {
        if buf.len() < 4 {
            return Err("short table meta");
        }
        let (body, crc) = buf.split_at(buf.len() - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err("table meta crc mismatch");
        }
        let mut d = Decoder::new(body);
        if d.array::<8>()? != TABLE_META_MAGIC {
            return Err("bad table meta magic");
        }
        if d.u16_le()? != FORMAT_VERSION {
            return Err("unsupported table meta version");
        }
        let created_seq = d.varint()?;
        let n = d.count(1)?;
        let mut indexes = Vec::with_capacity(n);
        for _ in 0..n {
            let c = ColumnId::try_from(d.varint()?).map_err(|_| "column id overflows u16")?;
            indexes.push((c, IndexKind::Bytes));
        }
        if !d.is_empty() {
            if d.u8()? != META_KINDS {
                return Err("unknown table meta extension");
            }
            for (_, kind) in &mut indexes {
                *kind = IndexKind::from_code(d.u8()?).ok_or("unknown index kind in table meta")?;
            }
        }
        if !d.is_empty() {
            return Err("trailing bytes in table meta");
        }
        Ok(TableMeta {
            created_seq,
            indexes,
        })
    }

    /// The kind of the index on `column`, if it has one.
    pub fn index_kind(&self, column: ColumnId) -> Option<IndexKind> {
        self.indexes
            .iter()
            .find(|(c, _)| *c == column)
            .map(|(_, k)| *k)
    }

    pub fn load(dir: &Path) -> Result<TableMeta> {
        let path = dir.join("meta");
        let bytes = fs::read(&path).at(&path)?;
        TableMeta::decode(&bytes).map_err(|d| Error::corruption(&path, 0, d))
    }
}

/// The snapshot file name for `seq`.
pub(crate) fn snapshot_file_name(seq: Seq) -> String {
    format!("snap-{seq:020}.snap")
}

/// The seqs of the snapshots in a table directory, ascending.
pub(crate) fn list_snapshots(dir: &Path) -> Result<Vec<Seq>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some(stem) = name
            .to_str()
            .and_then(|n| n.strip_prefix("snap-"))
            .and_then(|n| n.strip_suffix(".snap"))
        else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(seq) = stem.parse::<u64>() {
                out.push(seq);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// A frame found in a table log: its segment's path and map, and its payload's range there.
type FoundFrame = (PathBuf, Arc<memmap2::Mmap>, std::ops::Range<usize>);

/// Where a read of a table log stopped: the first seq of its segment, the offset after the
/// last frame read, and that frame's group. A later read of groups after it starts there
/// instead of at the segment's start.
pub(crate) type Resume = (Seq, usize, Seq);

/// A table's log segments, read through memory maps.
pub(crate) struct TableLog {
    pub dir: PathBuf,
    pub table: TableId,
    segs: Vec<Segment>,
    /// Where the last read stopped (the furthest one).
    resume: Option<Resume>,
    /// Frames read whole (CRC checked) so far, wanted or passed over.
    pub frames_read: u64,
}

impl TableLog {
    pub fn new(dir: PathBuf, table: TableId) -> TableLog {
        TableLog {
            dir,
            table,
            segs: Vec::new(),
            resume: None,
            frames_read: 0,
        }
    }

    /// Lists the segments again, keeping the maps of those already known.
    pub fn relist(&mut self) -> Result<()> {
        let listed = list_segments(&self.dir)?;
        let mut old = std::mem::take(&mut self.segs).into_iter().peekable();
        for (first, path) in listed {
            while old.peek().is_some_and(|s| s.first_seq < first) {
                old.next();
            }
            match old.peek() {
                Some(s) if s.first_seq == first => self.segs.push(old.next().expect("peeked")),
                _ => self.segs.push(Segment::new(first, path)),
            }
        }
        Ok(())
    }

    /// Forgets the maps of every segment (its files were cut by recovery).
    pub fn forget_maps(&mut self) {
        for s in &mut self.segs {
            s.forget_map();
        }
        self.resume = None;
    }

    /// Calls `f` on every frame whose group seq is in `(after, upto]`, in order. `last` is
    /// the last group of this table the journal has committed: frames past it may be
    /// half-written and are never read. Damage before it is corruption.
    pub fn for_each_frame(
        &mut self,
        after: Seq,
        upto: Seq,
        groups: &[Seq],
        mut f: impl FnMut(TableFrame),
    ) -> Result<()> {
        self.for_each_payload(after, upto, groups, |p| {
            f(TableFrame::decode(p)?);
            Ok(())
        })
    }

    /// Like [`TableLog::for_each_frame`], handing over each frame's payload undecoded; a
    /// decoding error of `f` is corruption at that frame.
    pub fn for_each_payload(
        &mut self,
        after: Seq,
        upto: Seq,
        groups: &[Seq],
        mut f: impl FnMut(&[u8]) -> crate::format::DecodeResult<()>,
    ) -> Result<()> {
        self.for_each_payload_at(after, upto, groups, |p, _| f(p))
    }

    /// Like [`TableLog::for_each_payload`], with each frame's offset in its segment.
    pub fn for_each_payload_at(
        &mut self,
        after: Seq,
        upto: Seq,
        groups: &[Seq],
        f: impl FnMut(&[u8], u64) -> crate::format::DecodeResult<()>,
    ) -> Result<()> {
        let from = self.resume;
        self.for_each_payload_from(from, after, upto, groups, f)
            .map(|_| ())
    }

    /// Like [`TableLog::for_each_payload_at`], starting at `from` (where an earlier read of
    /// this log stopped, see [`Resume`]) when it lies before the frames wanted, instead of
    /// at the position this log remembers. Returns where this read stopped (after the last
    /// frame it read), `from` when it read none.
    pub fn for_each_payload_from(
        &mut self,
        from: Option<Resume>,
        after: Seq,
        upto: Seq,
        groups: &[Seq],
        mut f: impl FnMut(&[u8], u64) -> crate::format::DecodeResult<()>,
    ) -> Result<Option<Resume>> {
        let last = groups.last().copied().unwrap_or(0);
        let want = upto.min(last);
        if want <= after {
            return Ok(from);
        }
        if self.segs.last().is_none_or(|s| s.first_seq <= want) {
            self.relist()?;
        }
        let start = after.saturating_add(1);
        let mut i = self
            .segs
            .partition_point(|s| s.first_seq <= start)
            .saturating_sub(1);
        let mut pos = SEGMENT_HEADER_LEN;
        let mut prev_group = 0;
        // Every frame before the resume point has a group at or below its group: when that
        // is at or below `after`, nothing before it is wanted.
        let mut stopped = from;
        if let Some((seg_first, at, group)) = from {
            if group <= after {
                if let Ok(j) = self.segs.binary_search_by_key(&seg_first, |s| s.first_seq) {
                    if j >= i {
                        (i, pos, prev_group) = (j, at, group);
                    }
                }
            }
        }
        // A group the journal records for this table between two frames read (or before
        // the first) whose frame is not there: its segment is missing.
        let gap = |dir: &Path, lo: Seq, hi: Seq| -> Result<()> {
            let k = groups.partition_point(|g| *g < lo);
            match groups.get(k) {
                Some(&g) if g < hi && g <= want => Err(Error::corruption(
                    dir,
                    0,
                    format!("table log has no frame of group {g}, which the journal records (a segment is missing)"),
                )),
                _ => Ok(()),
            }
        };
        if let Some(seg) = self.segs.get(i) {
            if prev_group == 0 && seg.first_seq > start {
                gap(&self.dir, start, seg.first_seq)?;
            }
        }
        loop {
            let Some(seg) = self.segs.get_mut(i) else {
                return Err(Error::corruption(
                    &self.dir,
                    0,
                    format!(
                        "table log has no segment holding group {want}, which the journal records"
                    ),
                ));
            };
            let map = seg.bytes(KIND_TABLE, self.table)?;
            match read_frame(&map, pos) {
                FrameRead::Frame { payload, next } => {
                    self.frames_read += 1;
                    let at = pos as u64;
                    let g =
                        peek_group_seq(payload).map_err(|d| Error::corruption(&seg.path, at, d))?;
                    if g <= prev_group {
                        return Err(Error::corruption(
                            &seg.path,
                            at,
                            "group seqs not increasing",
                        ));
                    }
                    prev_group = g;
                    if g > want {
                        return Ok(stopped);
                    }
                    if g > after {
                        f(payload, at).map_err(|d| Error::corruption(&seg.path, at, d))?;
                    }
                    let seg_first = seg.first_seq;
                    stopped = Some((seg_first, next, g));
                    if self.resume.is_none_or(|(_, _, r)| r <= g) {
                        self.resume = stopped;
                    }
                    if g == want {
                        return Ok(stopped);
                    }
                    pos = next;
                }
                FrameRead::End | FrameRead::Torn(_)
                    if seg.remap_if_grown(KIND_TABLE, self.table)? => {}
                FrameRead::End => {
                    if i + 1 >= self.segs.len() {
                        self.relist()?;
                    }
                    if i + 1 >= self.segs.len() {
                        let seg = &self.segs[i];
                        return Err(Error::corruption(
                            &seg.path,
                            pos as u64,
                            format!(
                                "table log ends before group {want}, which the journal records"
                            ),
                        ));
                    }
                    i += 1;
                    pos = SEGMENT_HEADER_LEN;
                    gap(&self.dir, prev_group.max(after) + 1, self.segs[i].first_seq)?;
                }
                FrameRead::Torn(detail) | FrameRead::Bad(detail) => {
                    return Err(Error::corruption(&seg.path, pos as u64, detail));
                }
            }
        }
    }

    /// Where a read of the groups after `group` can start: right after `group`'s frame,
    /// which the caller located at `offset` of the segment holding `group`. `None` when no
    /// whole frame of that group is there.
    pub fn resume_after(&mut self, group: Seq, offset: u64) -> Result<Option<Resume>> {
        if self.segs.is_empty() {
            self.relist()?;
        }
        Ok(match self.frame_at(group, offset)? {
            Ok((_, _, payload)) => {
                let i = self.segs.partition_point(|s| s.first_seq <= group) - 1;
                Some((self.segs[i].first_seq, payload.end, group))
            }
            Err(_) => None,
        })
    }

    /// `f` on the payload of group `group`'s frame, which a snapshot's key history places at
    /// `offset` in the segment holding that group. Anything else there (no frame, a damaged
    /// one, another group's) is corruption at that offset.
    pub fn with_frame_at<T>(
        &mut self,
        group: Seq,
        offset: u64,
        f: impl FnOnce(&[u8]) -> crate::format::DecodeResult<T>,
    ) -> Result<T> {
        if self.segs.is_empty() {
            self.relist()?;
        }
        let (path, map, payload) = match self.frame_at(group, offset)? {
            Ok(found) => found,
            // Another store may have started a segment since the last listing.
            Err(_) => {
                self.relist()?;
                self.frame_at(group, offset)??
            }
        };
        f(&map[payload]).map_err(|d| Error::corruption(&path, offset, d))
    }

    /// Group `group`'s frame at `offset` in the segment the current listing says holds that
    /// group: the segment's path and map and the payload's range, or the corruption found
    /// there instead.
    fn frame_at(
        &mut self,
        group: Seq,
        offset: u64,
    ) -> Result<std::result::Result<FoundFrame, Error>> {
        let Some(i) = self
            .segs
            .partition_point(|s| s.first_seq <= group)
            .checked_sub(1)
        else {
            return Ok(Err(Error::corruption(
                &self.dir,
                0,
                format!("table log has no segment holding group {group}, which a snapshot's key history names"),
            )));
        };
        let pos = usize::try_from(offset).unwrap_or(usize::MAX);
        let seg = &mut self.segs[i];
        let mut map = seg.bytes(KIND_TABLE, self.table)?;
        let mut remapped = false;
        // One read of the frame (its CRC covers the whole payload), a second only when the
        // map was taken before the frame was appended and ends before it.
        let found = loop {
            let read = read_frame(&map, pos);
            if matches!(read, FrameRead::Frame { .. }) {
                self.frames_read += 1;
            }
            match read {
                FrameRead::End | FrameRead::Torn(_)
                    if !remapped && seg.remap_if_grown(KIND_TABLE, self.table)? =>
                {
                    remapped = true;
                    map = seg.bytes(KIND_TABLE, self.table)?;
                }
                read => break read,
            }
        };
        let detail = match found {
            FrameRead::Frame { payload, next } => match peek_group_seq(payload) {
                Ok(g) if g == group => {
                    let start = next - payload.len();
                    return Ok(Ok((seg.path.clone(), map.clone(), start..next)));
                }
                Ok(g) => format!(
                    "a snapshot's key history names a frame of group {group} here, the frame is of group {g}"
                ),
                Err(d) => d.to_string(),
            },
            FrameRead::End => format!(
                "a snapshot's key history names a frame of group {group} here, past the segment's end"
            ),
            FrameRead::Torn(d) | FrameRead::Bad(d) => d.to_string(),
        };
        Ok(Err(Error::corruption(&seg.path, offset, detail)))
    }

    /// Every segment mapped at its current length, for iterating the whole log.
    pub fn all_maps(&mut self) -> Result<Vec<(PathBuf, std::sync::Arc<memmap2::Mmap>)>> {
        self.relist()?;
        let mut out = Vec::with_capacity(self.segs.len());
        for s in &mut self.segs {
            s.remap_if_grown(KIND_TABLE, self.table)?;
            out.push((s.path.clone(), s.bytes(KIND_TABLE, self.table)?));
        }
        Ok(out)
    }
}

/// A table as one store sees it.
pub(crate) struct Table {
    pub dir: PathBuf,
    pub meta: TableMeta,
    pub log: TableLog,
    pub writer: Option<LogWriter>,
    /// Known snapshot seqs, ascending.
    pub snapshots: Vec<Seq>,
    /// The newest snapshot's seq (0: none): the base of `delta`.
    pub base: Seq,
    pub delta: Arc<Delta>,
}

impl Table {
    pub fn load(dir: PathBuf, id: TableId) -> Result<Table> {
        if !dir.is_dir() {
            return Err(Error::NoSuchTable(id));
        }
        let meta = TableMeta::load(&dir)?;
        let delta = Delta::with_indexes(meta.created_seq, &meta.indexes);
        Ok(Table {
            log: TableLog::new(dir.clone(), id),
            dir,
            meta,
            writer: None,
            snapshots: Vec::new(),
            base: 0,
            delta: Arc::new(delta),
        })
    }

    /// The last group of this table the journal records, or 0.
    pub fn last_group(&self, journal_last: Option<&Seq>) -> Seq {
        match journal_last {
            Some(g) if *g > self.meta.created_seq => *g,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of a meta file as builds from before index kinds wrote it.
    fn old_meta(created_seq: u8, columns: &[u8]) -> Vec<u8> {
        let mut out = b"DRIFTTBL\x01\x00".to_vec();
        out.push(created_seq);
        out.push(columns.len() as u8);
        out.extend_from_slice(columns);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        body
    }

    #[test]
    fn meta_without_kinds_reads_as_bytes_and_is_written_so() {
        let old = old_meta(9, &[2, 5]);
        let meta = TableMeta::decode(&old).unwrap();
        assert_eq!(
            meta,
            TableMeta {
                created_seq: 9,
                indexes: vec![(2, IndexKind::Bytes), (5, IndexKind::Bytes)],
            }
        );
        assert_eq!(meta.encode(), old);
        assert_eq!(meta.index_kind(5), Some(IndexKind::Bytes));
        assert_eq!(meta.index_kind(3), None);
        let empty = old_meta(0, &[]);
        assert_eq!(TableMeta::decode(&empty).unwrap(), TableMeta::default());
        assert_eq!(TableMeta::default().encode(), empty);
    }

    #[test]
    fn meta_with_kinds_round_trips() {
        let meta = TableMeta {
            created_seq: 300,
            indexes: vec![
                (1, IndexKind::Float8),
                (2, IndexKind::Bytes),
                (200, IndexKind::Numeric),
                (7000, IndexKind::Float4),
            ],
        };
        let bytes = meta.encode();
        let mut want = b"DRIFTTBL\x01\x00".to_vec();
        want.extend([0xAC, 0x02, 4, 1, 2, 0xC8, 0x01, 0xD8, 0x36]);
        want.extend([1, 2, 0, 3, 1]);
        assert_eq!(bytes, with_crc(want));
        assert_eq!(TableMeta::decode(&bytes).unwrap(), meta);
    }

    #[test]
    fn bad_kinds_in_meta_are_errors() {
        let body = old_meta(0, &[1, 2]);
        let body = &body[..body.len() - 4];
        let with = |tail: &[u8]| {
            let mut b = body.to_vec();
            b.extend_from_slice(tail);
            TableMeta::decode(&with_crc(b))
        };
        assert_eq!(
            with(&[1, 0, 3]).unwrap().indexes,
            [(1, IndexKind::Bytes), (2, IndexKind::Numeric)]
        );
        assert_eq!(with(&[2, 0, 3]), Err("unknown table meta extension"));
        assert_eq!(with(&[1, 0, 4]), Err("unknown index kind in table meta"));
        assert!(with(&[1, 0]).is_err());
        assert_eq!(with(&[1, 0, 1, 1]), Err("trailing bytes in table meta"));
    }
}
