//! What a leaf of the ledger is: the canonical bytes of one committed transaction group
//! (`docs/ledger.md`, "Leaves"), hashed into the tree as `leaf_hash(leaf data)`.
//!
//! Version 1, every integer little-endian and fixed-width, every variable part preceded by
//! its length or count, so that one sequence of bytes reads one way only:
//!
//! ```text
//! leaf    = u8 version (1) | u64 first_seq | body
//! body    = header | ntables x section                       (everything after byte 9)
//! header  = u64 count | i64 commit_ts | u64 xid | str role |
//!           u8 0 (no origin) | u8 1 origin | u32 ntables
//! origin  = u64 xid | i64 commit_ts | str role               (of an imported group)
//! section = u64 table | u32 nevents | nevents x event        (ascending table id)
//! event   = u64 seq - first_seq | u32 len | key | op         (ascending seq)
//! op      = u8 1 (INSERT) | columns  ;  u8 2 (PATCH) | columns  ;  u8 3 (SOFT_DELETE)
//! columns = u32 n | n x (u16 column | u8 0 (NULL)  or  u8 1 | SHA-256(value bytes))
//! str     = u32 len | UTF-8 bytes
//! ```
//!
//! A column's value is in the leaf only as `SHA-256(value)`, a commitment: the leaf (and so
//! the tree) stays the same if the value itself is later erased and its commitment kept,
//! while whoever holds the value can still show it is the one the ledger committed to.
//!
//! Nothing in the body depends on where the group sits in the sequence (event seqs are
//! offsets from `first_seq`), so the same group renumbered has the same body: this is how
//! [`crate::Store::verify_digest`] recognises groups that moved. Two hashes of parts of the
//! body, which are not part of the tree, help it say what changed: the header's
//! (`SHA-256(header)`) and each section's (`SHA-256(section)`).

use sha2::{Digest as _, Sha256};

use super::hash::{Hash, HASH_LEN};
use crate::format::{DecodeResult, Decoder, JournalRecord, TableFrame};
use crate::format::{OP_INSERT, OP_PATCH, OP_SOFT_DELETE};
use crate::types::{ColumnId, Op, Origin, Seq, TableId};

/// Version of the leaf encoding (its first byte).
pub const LEAF_VERSION: u8 = 1;
/// Where the body starts: after the version and `first_seq`.
pub const LEAF_BODY_OFFSET: usize = 9;

/// The commitment to a column value that a leaf holds instead of the value: `SHA-256(value)`.
pub fn value_commitment(value: &[u8]) -> Hash {
    Sha256::digest(value).into()
}

/// The hashes computed with a leaf: its leaf hash (the tree's), and the hashes of its header
/// and of each table's section (diagnostics kept beside the tree, see the module's doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafHashes {
    pub leaf: Hash,
    pub header: Hash,
    /// `(table, SHA-256(section))`, ascending table id.
    pub sections: Vec<(TableId, Hash)>,
}

/// One committed group as a leaf holds it (the decoded form of leaf data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    pub first_seq: Seq,
    pub count: u64,
    pub commit_ts: i64,
    pub xid: u64,
    pub role: String,
    pub origin: Option<Origin>,
    /// Ascending table id.
    pub tables: Vec<LeafTable>,
}

/// One table's events of a leaf's group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafTable {
    pub table: TableId,
    /// Ascending seq.
    pub events: Vec<LeafEvent>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafEvent {
    pub seq: Seq,
    pub key: Vec<u8>,
    pub op: LeafOp,
}

/// An event's op with each value replaced by its commitment ([`value_commitment`]); `None`
/// is NULL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeafOp {
    Insert(Vec<(ColumnId, Option<Hash>)>),
    Patch(Vec<(ColumnId, Option<Hash>)>),
    SoftDelete,
}

/// Where the bytes of a leaf go: a buffer ([`Vec<u8>`]) or hashes ([`LeafHasher`]).
pub(crate) trait LeafSink {
    fn put(&mut self, bytes: &[u8]);
    /// The header ends (the first section, if any, follows).
    fn header_end(&mut self) {}
    fn section_start(&mut self, _table: TableId) {}
    fn section_end(&mut self) {}
}

impl LeafSink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Hashes a leaf as it is written, without keeping it: the leaf hash, the header's hash and
/// each section's.
pub(crate) struct LeafHasher {
    leaf: Sha256,
    written: usize,
    header: Option<Sha256>,
    header_hash: Option<Hash>,
    section: Option<(TableId, Sha256)>,
    sections: Vec<(TableId, Hash)>,
}

impl LeafHasher {
    pub fn new() -> LeafHasher {
        let mut leaf = Sha256::new();
        leaf.update([0x00]);
        LeafHasher {
            leaf,
            written: 0,
            header: Some(Sha256::new()),
            header_hash: None,
            section: None,
            sections: Vec::new(),
        }
    }

    /// The hashes, once the whole leaf is written.
    pub fn finish(self) -> LeafHashes {
        LeafHashes {
            leaf: self.leaf.finalize().into(),
            header: self.header_hash.expect("the header was written"),
            sections: self.sections,
        }
    }
}

impl LeafSink for LeafHasher {
    fn put(&mut self, bytes: &[u8]) {
        self.leaf.update(bytes);
        let skip = LEAF_BODY_OFFSET
            .saturating_sub(self.written)
            .min(bytes.len());
        self.written += bytes.len();
        let body = &bytes[skip..];
        if let Some(h) = &mut self.header {
            h.update(body);
        }
        if let Some((_, h)) = &mut self.section {
            h.update(body);
        }
    }

    fn header_end(&mut self) {
        let h = self.header.take().expect("one header");
        self.header_hash = Some(h.finalize().into());
    }

    fn section_start(&mut self, table: TableId) {
        self.section = Some((table, Sha256::new()));
    }

    fn section_end(&mut self) {
        let (t, h) = self.section.take().expect("a section was started");
        self.sections.push((t, h.finalize().into()));
    }
}

fn put_u32<S: LeafSink>(s: &mut S, v: u32) {
    s.put(&v.to_le_bytes());
}

fn put_u64<S: LeafSink>(s: &mut S, v: u64) {
    s.put(&v.to_le_bytes());
}

fn put_str<S: LeafSink>(s: &mut S, b: &[u8]) -> DecodeResult<()> {
    put_u32(
        s,
        u32::try_from(b.len()).map_err(|_| "too long for a leaf")?,
    );
    s.put(b);
    Ok(())
}

fn put_len<S: LeafSink>(s: &mut S, n: usize) -> DecodeResult<()> {
    put_u32(
        s,
        u32::try_from(n).map_err(|_| "too many items for a leaf")?,
    );
    Ok(())
}

/// The parts of a group's journal record a leaf holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GroupHead<'a> {
    pub first_seq: Seq,
    pub count: u64,
    pub commit_ts: i64,
    pub xid: u64,
    pub role: &'a str,
    pub origin: Option<&'a Origin>,
    pub ntables: usize,
}

impl<'a> GroupHead<'a> {
    pub fn of(record: &'a JournalRecord) -> GroupHead<'a> {
        GroupHead {
            first_seq: record.first_seq,
            count: record.count,
            commit_ts: record.commit_ts,
            xid: record.xid,
            role: &record.role,
            origin: record.origin.as_ref(),
            ntables: record.tables.len(),
        }
    }

    /// Writes the version, `first_seq` and the header.
    pub fn put<S: LeafSink>(&self, s: &mut S) -> DecodeResult<()> {
        s.put(&[LEAF_VERSION]);
        put_u64(s, self.first_seq);
        put_u64(s, self.count);
        put_u64(s, self.commit_ts as u64);
        put_u64(s, self.xid);
        put_str(s, self.role.as_bytes())?;
        match self.origin {
            None => s.put(&[0]),
            Some(o) => {
                s.put(&[1]);
                put_u64(s, o.xid);
                put_u64(s, o.commit_ts as u64);
                put_str(s, o.role.as_bytes())?;
            }
        }
        put_len(s, self.ntables)?;
        s.header_end();
        Ok(())
    }

    /// The seq offset of an event of this group, checked to lie in the group.
    fn offset(&self, seq: Seq) -> DecodeResult<u64> {
        match seq.checked_sub(self.first_seq) {
            Some(o) if o < self.count => Ok(o),
            _ => Err("event seq outside its group"),
        }
    }
}

/// Writes an event's columns: `u32 n | n x (u16 column | u8 0 / u8 1 + hash)`.
fn put_columns<'v, S: LeafSink>(
    s: &mut S,
    cols: impl ExactSizeIterator<Item = (ColumnId, Option<&'v [u8]>)>,
) -> DecodeResult<()> {
    put_len(s, cols.len())?;
    for (c, v) in cols {
        s.put(&c.to_le_bytes());
        match v {
            None => s.put(&[0]),
            Some(v) => {
                s.put(&[1]);
                s.put(&value_commitment(v));
            }
        }
    }
    Ok(())
}

fn put_event_head<S: LeafSink>(
    s: &mut S,
    head: &GroupHead<'_>,
    seq: Seq,
    key: &[u8],
) -> DecodeResult<()> {
    put_u64(s, head.offset(seq)?);
    put_str(s, key)
}

/// Writes table `table`'s section from its frame of the group, given as the frame's payload
/// (`docs/format.md`): checked to be a frame of this group (its group seq and xid, its event
/// seqs strictly increasing and inside the group), decoded as it is written (values are
/// hashed straight from the payload).
pub(crate) fn put_section_from_payload<S: LeafSink>(
    s: &mut S,
    head: &GroupHead<'_>,
    table: TableId,
    payload: &[u8],
) -> DecodeResult<()> {
    let mut d = Decoder::new(payload);
    if d.varint()? != head.first_seq {
        return Err("table frame of another group");
    }
    if d.varint()? != head.xid {
        return Err("table frame's xid is not its group's");
    }
    // Each event takes at least three bytes: offset, key length, op tag.
    let n = d.count(3)?;
    if n == 0 {
        return Err("table frame without events");
    }
    s.section_start(table);
    put_u64(s, table);
    put_len(s, n)?;
    let mut prev: Option<Seq> = None;
    let mut cols: Vec<(ColumnId, Option<&[u8]>)> = Vec::new();
    for _ in 0..n {
        let seq = head
            .first_seq
            .checked_add(d.varint()?)
            .ok_or("event seq overflows")?;
        if prev.is_some_and(|p| p >= seq) {
            return Err("event seqs not strictly increasing");
        }
        prev = Some(seq);
        let key = d.len_bytes()?;
        put_event_head(s, head, seq, key)?;
        let tag = d.u8()?;
        match tag {
            OP_INSERT | OP_PATCH => {
                cols.clear();
                d.column_refs(|c, v| cols.push((c, v)))?;
                s.put(&[tag]);
                put_columns(s, cols.iter().copied())?;
            }
            OP_SOFT_DELETE => s.put(&[tag]),
            _ => return Err("unknown op tag"),
        }
    }
    if !d.is_empty() {
        return Err("trailing bytes in table frame");
    }
    s.section_end();
    Ok(())
}

/// Writes table `table`'s section from its decoded frame of the group.
fn put_section_from_frame<S: LeafSink>(
    s: &mut S,
    head: &GroupHead<'_>,
    table: TableId,
    frame: &TableFrame,
) -> DecodeResult<()> {
    if frame.group_seq != head.first_seq {
        return Err("table frame of another group");
    }
    if frame.xid != head.xid {
        return Err("table frame's xid is not its group's");
    }
    if frame.events.is_empty() {
        return Err("table frame without events");
    }
    if frame.events.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err("event seqs not strictly increasing");
    }
    s.section_start(table);
    put_u64(s, table);
    put_len(s, frame.events.len())?;
    for (seq, key, op) in &frame.events {
        put_event_head(s, head, *seq, key)?;
        let cols = match op {
            Op::Insert(row) => Some((OP_INSERT, row.0.as_slice())),
            Op::Patch(p) => Some((OP_PATCH, p.as_slice())),
            Op::SoftDelete => None,
        };
        match cols {
            Some((tag, cols)) => {
                if cols.windows(2).any(|w| w[0].0 >= w[1].0) {
                    return Err("column ids not strictly increasing");
                }
                s.put(&[tag]);
                put_columns(s, cols.iter().map(|(c, v)| (*c, v.as_deref())))?;
            }
            None => s.put(&[OP_SOFT_DELETE]),
        }
    }
    s.section_end();
    Ok(())
}

fn put_group<S: LeafSink>(
    s: &mut S,
    record: &JournalRecord,
    frames: &[(TableId, &TableFrame)],
) -> DecodeResult<()> {
    if frames.len() != record.tables.len()
        || frames.iter().zip(&record.tables).any(|((t, _), r)| t != r)
    {
        return Err("the frames are not of the group's tables, in its order");
    }
    let head = GroupHead::of(record);
    head.put(s)?;
    for (table, frame) in frames {
        put_section_from_frame(s, &head, *table, frame)?;
    }
    Ok(())
}

/// The leaf data of one committed group: its journal record and its frame in each of its
/// tables (`frames`, in the record's table order). Fails when the frames are not the
/// group's (another group's seq or xid, other tables, events outside the group).
pub fn leaf_data(
    record: &JournalRecord,
    frames: &[(TableId, &TableFrame)],
) -> DecodeResult<Vec<u8>> {
    let mut out = Vec::new();
    put_group(&mut out, record, frames)?;
    Ok(out)
}

/// The hashes of the leaf [`leaf_data`] gives, computed without building it.
pub fn leaf_hashes(
    record: &JournalRecord,
    frames: &[(TableId, &TableFrame)],
) -> DecodeResult<LeafHashes> {
    let mut h = LeafHasher::new();
    put_group(&mut h, record, frames)?;
    Ok(h.finish())
}

/// The hashes of leaf data given as bytes (as [`LeafHasher`] computes them while writing).
pub fn hashes_of_leaf_data(data: &[u8]) -> DecodeResult<LeafHashes> {
    let leaf = Leaf::decode(data)?;
    let mut h = LeafHasher::new();
    leaf.put(&mut h);
    Ok(h.finish())
}

struct Reader<'a> {
    d: Decoder<'a>,
}

impl<'a> Reader<'a> {
    fn u32(&mut self) -> DecodeResult<u32> {
        self.d.u32_le()
    }

    fn u64(&mut self) -> DecodeResult<u64> {
        self.d.u64_le()
    }

    fn bytes(&mut self) -> DecodeResult<&'a [u8]> {
        let n = self.u32()? as usize;
        self.d.bytes(n)
    }

    fn string(&mut self) -> DecodeResult<String> {
        std::str::from_utf8(self.bytes()?)
            .map(str::to_owned)
            .map_err(|_| "role is not UTF-8")
    }

    /// A count of items each at least `min` bytes long, checked against the input left.
    fn count(&mut self, min: usize) -> DecodeResult<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min) > self.d.remaining() {
            return Err("count exceeds input");
        }
        Ok(n)
    }

    fn columns(&mut self) -> DecodeResult<Vec<(ColumnId, Option<Hash>)>> {
        let n = self.count(3)?;
        let mut out: Vec<(ColumnId, Option<Hash>)> = Vec::with_capacity(n);
        for _ in 0..n {
            let c = self.d.u16_le()?;
            if out.last().is_some_and(|(l, _)| *l >= c) {
                return Err("column ids not strictly increasing");
            }
            let v = match self.d.u8()? {
                0 => None,
                1 => Some(self.d.array::<HASH_LEN>()?),
                _ => return Err("unknown value tag"),
            };
            out.push((c, v));
        }
        Ok(out)
    }
}

impl Leaf {
    /// Decodes leaf data (untrusted bytes: never panics, allocates at most what the input
    /// holds). Exactly one encoding per leaf: anything [`Leaf::encode`] would not write
    /// (another version, tables or seqs out of order, seqs outside the group, unknown tags,
    /// trailing bytes) is refused.
    pub fn decode(bytes: &[u8]) -> DecodeResult<Leaf> {
        let mut r = Reader {
            d: Decoder::new(bytes),
        };
        if r.d.u8()? != LEAF_VERSION {
            return Err("unknown leaf version");
        }
        let first_seq = r.u64()?;
        let count = r.u64()?;
        if count == 0 || first_seq == 0 || first_seq.checked_add(count).is_none() {
            return Err("impossible seq range");
        }
        let commit_ts = r.u64()? as i64;
        let xid = r.u64()?;
        let role = r.string()?;
        let origin = match r.d.u8()? {
            0 => None,
            1 => Some(Origin {
                xid: r.u64()?,
                commit_ts: r.u64()? as i64,
                role: r.string()?,
            }),
            _ => return Err("unknown origin tag"),
        };
        // A section takes at least 8 + 4 + one event (8 + 4 + 1) bytes.
        let ntables = r.count(25)?;
        let mut tables: Vec<LeafTable> = Vec::with_capacity(ntables);
        for _ in 0..ntables {
            let table = r.u64()?;
            if tables.last().is_some_and(|t| t.table >= table) {
                return Err("tables not strictly increasing");
            }
            let n = r.count(13)?;
            if n == 0 {
                return Err("table section without events");
            }
            let mut events: Vec<LeafEvent> = Vec::with_capacity(n);
            for _ in 0..n {
                let offset = r.u64()?;
                if offset >= count {
                    return Err("event seq outside its group");
                }
                let seq = first_seq + offset;
                if events.last().is_some_and(|e| e.seq >= seq) {
                    return Err("event seqs not strictly increasing");
                }
                let key = r.bytes()?.to_vec();
                let op = match r.d.u8()? {
                    OP_INSERT => LeafOp::Insert(r.columns()?),
                    OP_PATCH => LeafOp::Patch(r.columns()?),
                    OP_SOFT_DELETE => LeafOp::SoftDelete,
                    _ => return Err("unknown op tag"),
                };
                events.push(LeafEvent { seq, key, op });
            }
            tables.push(LeafTable { table, events });
        }
        if !r.d.is_empty() {
            return Err("trailing bytes after the leaf");
        }
        Ok(Leaf {
            first_seq,
            count,
            commit_ts,
            xid,
            role,
            origin,
            tables,
        })
    }

    /// The leaf data (the inverse of [`Leaf::decode`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.put(&mut out);
        out
    }

    /// The leaf hash, `SHA-256(0x00 || leaf data)`.
    pub fn leaf_hash(&self) -> Hash {
        super::hash::leaf_hash(&self.encode())
    }

    fn put<S: LeafSink>(&self, s: &mut S) {
        let head = GroupHead {
            first_seq: self.first_seq,
            count: self.count,
            commit_ts: self.commit_ts,
            xid: self.xid,
            role: &self.role,
            origin: self.origin.as_ref(),
            ntables: self.tables.len(),
        };
        // Lengths of a decoded leaf fit their fields; a leaf built by hand with longer ones
        // is written with its lengths cut, which no decoder accepts back.
        let _ = head.put(s);
        for t in &self.tables {
            s.section_start(t.table);
            put_u64(s, t.table);
            put_u32(s, t.events.len() as u32);
            for e in &t.events {
                put_u64(s, e.seq.wrapping_sub(self.first_seq));
                put_u32(s, e.key.len() as u32);
                s.put(&e.key);
                let cols = match &e.op {
                    LeafOp::Insert(c) => Some((OP_INSERT, c)),
                    LeafOp::Patch(c) => Some((OP_PATCH, c)),
                    LeafOp::SoftDelete => None,
                };
                match cols {
                    None => s.put(&[OP_SOFT_DELETE]),
                    Some((tag, cols)) => {
                        s.put(&[tag]);
                        put_u32(s, cols.len() as u32);
                        for (c, v) in cols {
                            s.put(&c.to_le_bytes());
                            match v {
                                None => s.put(&[0]),
                                Some(h) => {
                                    s.put(&[1]);
                                    s.put(h);
                                }
                            }
                        }
                    }
                }
            }
            s.section_end();
        }
    }

    /// The commitment of `column` in the event at `seq` of `table`: `Some(Some(hash))` for a
    /// value, `Some(None)` for NULL, `None` when the leaf has no such event or column.
    pub fn commitment(&self, table: TableId, seq: Seq, column: ColumnId) -> Option<Option<Hash>> {
        let t = self.tables.iter().find(|t| t.table == table)?;
        let e = t.events.iter().find(|e| e.seq == seq)?;
        let cols = match &e.op {
            LeafOp::Insert(c) | LeafOp::Patch(c) => c,
            LeafOp::SoftDelete => return None,
        };
        cols.iter().find(|(c, _)| *c == column).map(|(_, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{encode_table_frame, TableFrame};
    use crate::types::Row;

    fn record(origin: Option<Origin>) -> JournalRecord {
        JournalRecord {
            first_seq: 10,
            count: 3,
            commit_ts: -5,
            xid: 77,
            role: "alice".into(),
            tables: vec![2, 9],
            origin,
        }
    }

    fn frames() -> Vec<(TableId, TableFrame)> {
        vec![
            (
                2,
                TableFrame {
                    group_seq: 10,
                    xid: 77,
                    events: vec![
                        (
                            10,
                            b"k1".to_vec(),
                            Op::Insert(Row(vec![(1, Some(b"v".to_vec())), (3, None)])),
                        ),
                        (12, b"k2".to_vec(), Op::SoftDelete),
                    ],
                },
            ),
            (
                9,
                TableFrame {
                    group_seq: 10,
                    xid: 77,
                    events: vec![(11, b"".to_vec(), Op::Patch(vec![(0, Some(Vec::new()))]))],
                },
            ),
        ]
    }

    fn payload(f: &TableFrame) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(encode_table_frame(
            &mut out,
            f.group_seq,
            f.xid,
            f.events.len(),
            f.events.iter().map(|(s, k, o)| (*s, k.as_slice(), o)),
            usize::MAX,
        ));
        out
    }

    #[test]
    fn bytes_of_a_leaf() {
        let r = record(None);
        let fs = frames();
        let refs: Vec<(TableId, &TableFrame)> = fs.iter().map(|(t, f)| (*t, f)).collect();
        let data = leaf_data(&r, &refs).unwrap();
        let mut want = vec![1u8];
        want.extend(10u64.to_le_bytes());
        want.extend(3u64.to_le_bytes());
        want.extend((-5i64).to_le_bytes());
        want.extend(77u64.to_le_bytes());
        want.extend(5u32.to_le_bytes());
        want.extend(b"alice");
        want.push(0);
        want.extend(2u32.to_le_bytes());
        let header_end = want.len();
        want.extend(2u64.to_le_bytes());
        want.extend(2u32.to_le_bytes());
        want.extend(0u64.to_le_bytes());
        want.extend(2u32.to_le_bytes());
        want.extend(b"k1");
        want.push(1);
        want.extend(2u32.to_le_bytes());
        want.extend(1u16.to_le_bytes());
        want.push(1);
        want.extend(Sha256::digest(b"v"));
        want.extend(3u16.to_le_bytes());
        want.push(0);
        want.extend(2u64.to_le_bytes());
        want.extend(2u32.to_le_bytes());
        want.extend(b"k2");
        want.push(3);
        let first_section_end = want.len();
        want.extend(9u64.to_le_bytes());
        want.extend(1u32.to_le_bytes());
        want.extend(1u64.to_le_bytes());
        want.extend(0u32.to_le_bytes());
        want.push(2);
        want.extend(1u32.to_le_bytes());
        want.extend(0u16.to_le_bytes());
        want.push(1);
        want.extend(Sha256::digest(b""));
        assert_eq!(data, want);

        let h = leaf_hashes(&r, &refs).unwrap();
        assert_eq!(h.leaf, super::super::hash::leaf_hash(&data));
        let sha = |b: &[u8]| -> Hash { Sha256::digest(b).into() };
        assert_eq!(h.header, sha(&data[LEAF_BODY_OFFSET..header_end]));
        assert_eq!(
            h.sections,
            vec![
                (2, sha(&data[header_end..first_section_end])),
                (9, sha(&data[first_section_end..])),
            ]
        );
        assert_eq!(hashes_of_leaf_data(&data).unwrap(), h);

        // The payload path writes the same bytes and hashes.
        let head = GroupHead::of(&r);
        let mut out = Vec::new();
        let mut hasher = LeafHasher::new();
        head.put(&mut out).unwrap();
        head.put(&mut hasher).unwrap();
        for (t, f) in &fs {
            put_section_from_payload(&mut out, &head, *t, &payload(f)).unwrap();
            put_section_from_payload(&mut hasher, &head, *t, &payload(f)).unwrap();
        }
        assert_eq!(out, data);
        assert_eq!(hasher.finish(), h);

        let leaf = Leaf::decode(&data).unwrap();
        assert_eq!(leaf.encode(), data);
        assert_eq!(leaf.tables[0].events[1].seq, 12);
        assert_eq!(leaf.commitment(2, 10, 1), Some(Some(sha(b"v"))));
        assert_eq!(leaf.commitment(2, 10, 3), Some(None));
        assert_eq!(leaf.commitment(2, 10, 2), None);
        assert_eq!(leaf.commitment(9, 11, 0), Some(Some(sha(b""))));
    }

    /// The example of `docs/ledger.md`, "Leaves".
    #[test]
    fn the_documented_example() {
        let r = JournalRecord {
            first_seq: 10,
            count: 1,
            commit_ts: 1000,
            xid: 7,
            role: "bob".into(),
            tables: vec![2],
            origin: None,
        };
        let f = TableFrame {
            group_seq: 10,
            xid: 7,
            events: vec![(
                10,
                b"k".to_vec(),
                Op::Insert(Row(vec![(1, Some(b"v".to_vec()))])),
            )],
        };
        let data = leaf_data(&r, &[(2, &f)]).unwrap();
        assert_eq!(
            super::super::hash::hash_to_hex(&super::super::hash::leaf_hash(&data)),
            "18ec16d8d7137aaae1df1b9e4ca7ec08dee28387e102d76c8f8093906a9a950d"
        );
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "010a000000000000000100000000000000e803000000000000070000000000000003000000626f62\
             00010000000200000000000000010000000000000000000000010000006b01010000000100014c94\
             485e0c21ae6c41ce1dfe7b6bfaceea5ab68e40a2476f50208e526f506080"
        );
    }

    #[test]
    fn origin_and_body_independent_of_seq() {
        let o = Origin {
            xid: 5,
            commit_ts: 1,
            role: "bob".into(),
        };
        let r = record(Some(o.clone()));
        let fs = frames();
        let refs: Vec<(TableId, &TableFrame)> = fs.iter().map(|(t, f)| (*t, f)).collect();
        let data = leaf_data(&r, &refs).unwrap();
        let leaf = Leaf::decode(&data).unwrap();
        assert_eq!(leaf.origin, Some(o));
        assert_eq!(leaf.encode(), data);
        let plain = leaf_data(&record(None), &refs).unwrap();
        assert_ne!(data, plain);

        // The same group at other seqs: same body, other leaf.
        let mut moved = r.clone();
        moved.first_seq = 1000;
        let moved_frames: Vec<(TableId, TableFrame)> = fs
            .iter()
            .map(|(t, f)| {
                let mut f = f.clone();
                f.group_seq = 1000;
                for e in &mut f.events {
                    e.0 += 990;
                }
                (*t, f)
            })
            .collect();
        let refs2: Vec<(TableId, &TableFrame)> =
            moved_frames.iter().map(|(t, f)| (*t, f)).collect();
        let data2 = leaf_data(&moved, &refs2).unwrap();
        assert_eq!(data[LEAF_BODY_OFFSET..], data2[LEAF_BODY_OFFSET..]);
        assert_ne!(data[..LEAF_BODY_OFFSET], data2[..LEAF_BODY_OFFSET]);
        let (a, b) = (
            leaf_hashes(&r, &refs).unwrap(),
            leaf_hashes(&moved, &refs2).unwrap(),
        );
        assert_ne!(a.leaf, b.leaf);
        assert_eq!((a.header, a.sections), (b.header, b.sections));
    }

    #[test]
    fn frames_that_are_not_the_group_s_are_refused() {
        let r = record(None);
        let fs = frames();
        let refs: Vec<(TableId, &TableFrame)> = fs.iter().map(|(t, f)| (*t, f)).collect();
        assert!(leaf_data(&r, &refs[..1]).is_err());
        let swapped = vec![refs[1], refs[0]];
        assert!(leaf_data(&r, &swapped).is_err());
        for change in 0..4 {
            let mut f = fs[0].1.clone();
            match change {
                0 => f.group_seq = 9,
                1 => f.xid = 78,
                2 => f.events[1].0 = 13,
                _ => f.events[1].0 = 10,
            }
            let refs = vec![(2, &f), refs[1]];
            assert!(leaf_data(&r, &refs).is_err(), "change {change}");
            let head = GroupHead::of(&r);
            let mut out = Vec::new();
            head.put(&mut out).unwrap();
            assert!(
                put_section_from_payload(&mut out, &head, 2, &payload(&f)).is_err(),
                "change {change}"
            );
        }
    }

    fn arb_cols() -> impl proptest::strategy::Strategy<Value = Vec<(ColumnId, Option<Hash>)>> {
        use proptest::prelude::*;
        proptest::collection::btree_map(any::<u16>(), any::<Option<[u8; 32]>>(), 0..4)
            .prop_map(|m| m.into_iter().collect())
    }

    fn arb_leaf() -> impl proptest::strategy::Strategy<Value = Leaf> {
        use proptest::prelude::*;
        let op = prop_oneof![
            arb_cols().prop_map(LeafOp::Insert),
            arb_cols().prop_map(LeafOp::Patch),
            Just(LeafOp::SoftDelete),
        ];
        let event = (proptest::collection::vec(any::<u8>(), 0..6), op);
        let table = proptest::collection::btree_map(
            0u64..20,
            proptest::collection::btree_map(0u64..50, event, 1..4),
            0..3,
        );
        (
            1u64..1 << 40,
            any::<i64>(),
            any::<u64>(),
            "[a-z]{0,5}",
            proptest::option::of((any::<u64>(), any::<i64>(), "[a-z]{0,5}")),
            table,
        )
            .prop_map(|(first_seq, commit_ts, xid, role, origin, tables)| Leaf {
                first_seq,
                count: 50,
                commit_ts,
                xid,
                role,
                origin: origin.map(|(xid, commit_ts, role)| Origin {
                    xid,
                    commit_ts,
                    role,
                }),
                tables: tables
                    .into_iter()
                    .map(|(table, events)| LeafTable {
                        table,
                        events: events
                            .into_iter()
                            .map(|(offset, (key, op))| LeafEvent {
                                seq: first_seq + offset,
                                key,
                                op,
                            })
                            .collect(),
                    })
                    .collect(),
            })
    }

    proptest::proptest! {
        #[test]
        fn leaves_round_trip(leaf in arb_leaf()) {
            let data = leaf.encode();
            proptest::prop_assert_eq!(Leaf::decode(&data), Ok(leaf));
            let h = hashes_of_leaf_data(&data).unwrap();
            proptest::prop_assert_eq!(h.leaf, super::super::hash::leaf_hash(&data));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(
            mut data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)
        ) {
            if let Some(b) = data.first_mut() {
                *b = LEAF_VERSION;
            }
            if let Ok(l) = Leaf::decode(&data) {
                proptest::prop_assert_eq!(l.encode(), data);
            }
        }
    }

    #[test]
    fn decoding_refuses_every_other_encoding() {
        let r = record(Some(Origin {
            xid: 5,
            commit_ts: 1,
            role: "bob".into(),
        }));
        let fs = frames();
        let refs: Vec<(TableId, &TableFrame)> = fs.iter().map(|(t, f)| (*t, f)).collect();
        let data = leaf_data(&r, &refs).unwrap();
        // Every prefix and every byte flip either fails or decodes to another leaf that
        // encodes back to exactly those bytes.
        for n in 0..data.len() {
            assert!(Leaf::decode(&data[..n]).is_err(), "prefix {n}");
        }
        let mut longer = data.clone();
        longer.push(0);
        assert!(Leaf::decode(&longer).is_err());
        for i in 0..data.len() {
            for bit in 0..8 {
                let mut bad = data.clone();
                bad[i] ^= 1 << bit;
                if let Ok(l) = Leaf::decode(&bad) {
                    assert_eq!(l.encode(), bad, "byte {i} bit {bit}");
                }
            }
        }
    }
}
