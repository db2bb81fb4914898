//! The byte layout of everything DriftDB writes: format constants, varints, frames, segment
//! headers, journal records and table frames. `docs/format.md` carries the same layout.
//!
//! Every decoder here works on untrusted bytes: it never panics, never reads past its input
//! and never allocates more than the remaining input could justify (each count is checked
//! against the bytes left before anything is reserved).

use crate::types::{ColumnId, Op, Origin, Row, Seq, TableId, Value};

/// First bytes of every log segment (journal and table logs).
pub const SEGMENT_MAGIC: [u8; 8] = *b"DRIFTLOG";
/// First bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"DRIFTSNP";
/// Last bytes of every snapshot file.
pub const SNAPSHOT_END_MAGIC: [u8; 8] = *b"DRIFTEND";
/// First bytes of a table's `meta` file.
pub const TABLE_META_MAGIC: [u8; 8] = *b"DRIFTTBL";
/// Version of every file format in this module. Bumped on any incompatible change.
pub const FORMAT_VERSION: u16 = 1;
/// Segment kind: the global journal.
pub const KIND_JOURNAL: u8 = 1;
/// Segment kind: one table's log.
pub const KIND_TABLE: u8 = 2;
/// `magic[8] | u16 version | u8 kind | u8 0 | u64 table | u64 first_seq | u32 crc32(bytes 0..28)`;
/// in a journal segment the `u64 table` word is the store's segment size instead (see
/// [`SegmentHeader`]).
pub const SEGMENT_HEADER_LEN: usize = 32;
/// `u32 len | u32 !len | u32 crc32(payload)`.
pub const FRAME_HEADER_LEN: usize = 12;
/// Largest payload of one frame. Longer lengths are impossible, hence damage.
pub const MAX_FRAME_LEN: u32 = 1 << 30;
/// Event op tags.
pub const OP_INSERT: u8 = 1;
pub const OP_PATCH: u8 = 2;
pub const OP_SOFT_DELETE: u8 = 3;
/// Journal record extension tags (optional fields after the table list).
pub const EXT_ORIGIN: u8 = 1;
/// Snapshot header: `magic[8] | u16 version | u16 0 | u64 table | u64 seq | u32 crc32(bytes 0..28)`.
pub const SNAPSHOT_HEADER_LEN: usize = 32;
/// Snapshot footer: `u64 dir_offset | u64 dir_len | u32 crc32(dir) | u32 crc32(file before footer) | magic[8]`.
pub const SNAPSHOT_FOOTER_LEN: usize = 32;
/// Snapshot section kinds.
pub const SECTION_ROWS: u8 = 1;
pub const SECTION_INDEX: u8 = 2;
/// Where each key's events are in the table log (see [`put_history_record`]).
pub const SECTION_HISTORY: u8 = 3;
/// The key history section with the payload positions of a key's events in large frames
/// (snapshots written since these positions exist; kind 3 has none).
pub const SECTION_HISTORY_POSITIONS: u8 = 4;
/// An index of canonical keys ([`crate::index_key`]): its directory entry gives the index
/// kind (a byte after the column), its records are `(canonical key, key)` pairs. An index
/// of kind `Bytes` is a `SECTION_INDEX`, as before index kinds existed.
pub const SECTION_INDEX_KEYED: u8 = 5;
/// A frame whose payload is larger than this has the positions of each key's events in it
/// recorded in the key history, so that one key's history decodes those events alone.
pub const POSITIONS_FROM: usize = 64 << 10;
/// Largest raw (uncompressed) snapshot block of several records a reader accepts. Blocks
/// are cut once they reach their target (64 KiB, 16 KiB for key history), so only a record
/// larger than that target makes a block grow past it: a record that would take a block
/// beyond this length is written as a block of its own (see [`MAX_RECORD_BLOCK_RAW_LEN`]).
pub const MAX_BLOCK_RAW_LEN: u64 = 64 << 20;
/// Largest raw length of a snapshot block that holds one record alone; a block longer than
/// [`MAX_BLOCK_RAW_LEN`] must hold exactly one record.
///
/// Why [`MAX_FRAME_LEN`]: a row record (`bytes key | columns`) is byte for byte the INSERT
/// event that wrote the row minus its seq step and op tag, and that event lies inside one
/// table frame payload next to the frame's group seq, xid and event count (at least five
/// bytes in all). So any row one frame can hold, its largest value, key and every varint
/// included, encodes in fewer than `MAX_FRAME_LEN` bytes, and so does a row whose columns
/// all come from events of one frame (each event brings its own key and column count). An
/// index record (`bytes value | bytes key`) is shorter than the row record it comes from.
///
/// What this does not cover: a row whose columns were set by PATCHes of several
/// transactions can outgrow any single frame (two 600 MB columns set one transaction
/// each), and a key history record grows with the number of frames holding the key's
/// events (a few bytes each: some 170 million frames of one key reach 1 GiB). A snapshot
/// of such a record fails with `TooLarge` naming it; splitting one record across blocks
/// would be a new section format.
pub const MAX_RECORD_BLOCK_RAW_LEN: u64 = MAX_FRAME_LEN as u64;

/// Why a decoder refused its input. The caller adds the file and offset.
pub type DecodeResult<T> = std::result::Result<T, &'static str>;

// ---------------------------------------------------------------------------------------
// Primitive encoding

/// Unsigned LEB128: 7 bits per byte, low bits first, high bit set on all but the last byte.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The number of bytes [`put_varint`] writes for `v`.
#[inline]
pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Zigzag then LEB128, for signed values (commit timestamps).
pub fn put_varint_i64(out: &mut Vec<u8>, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// `varint len | bytes`.
#[inline]
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// `varint 0` for NULL, else `varint (len + 1) | bytes`.
#[inline]
pub fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        None => put_varint(out, 0),
        Some(b) => {
            put_varint(out, b.len() as u64 + 1);
            out.extend_from_slice(b);
        }
    }
}

/// `varint n | n x (varint column | value)`, columns strictly increasing.
#[inline]
pub fn put_columns(out: &mut Vec<u8>, cols: &[(ColumnId, Value)]) {
    put_varint(out, cols.len() as u64);
    for (c, v) in cols {
        put_varint(out, u64::from(*c));
        put_value(out, v);
    }
}

/// The number of bytes [`put_columns`] writes for `cols`.
pub fn columns_len(cols: &[(ColumnId, Value)]) -> usize {
    varint_len(cols.len() as u64)
        + cols
            .iter()
            .map(|(c, v)| {
                varint_len(u64::from(*c))
                    + v.as_ref()
                        .map_or(1, |b| varint_len(b.len() as u64 + 1) + b.len())
            })
            .sum::<usize>()
}

/// `u8 tag | body`: INSERT = 1 + columns, PATCH = 2 + columns, SOFT_DELETE = 3.
#[inline]
pub fn put_op(out: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Insert(row) => {
            out.push(OP_INSERT);
            put_columns(out, &row.0);
        }
        Op::Patch(cols) => {
            out.push(OP_PATCH);
            put_columns(out, cols);
        }
        Op::SoftDelete => out.push(OP_SOFT_DELETE),
    }
}

/// A bounds-checked cursor over untrusted bytes.
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Decoder<'a> {
        Decoder { buf, pos: 0 }
    }

    #[inline]
    pub fn pos(&self) -> usize {
        self.pos
    }

    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    #[inline]
    pub fn u8(&mut self) -> DecodeResult<u8> {
        let b = *self.buf.get(self.pos).ok_or("truncated")?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub fn bytes(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        if n > self.remaining() {
            return Err("length exceeds input");
        }
        let b = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }

    pub fn array<const N: usize>(&mut self) -> DecodeResult<[u8; N]> {
        let b = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    pub fn u16_le(&mut self) -> DecodeResult<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32_le(&mut self) -> DecodeResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64_le(&mut self) -> DecodeResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    #[inline]
    pub fn varint(&mut self) -> DecodeResult<u64> {
        // Most varints (column ids, short lengths) are one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        self.varint_long()
    }

    fn varint_long(&mut self) -> DecodeResult<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                return Err("varint overflows u64");
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long")
    }

    pub fn varint_i64(&mut self) -> DecodeResult<i64> {
        let z = self.varint()?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    /// A count of items each at least `min_size` bytes long, checked against the input left.
    pub fn count(&mut self, min_size: usize) -> DecodeResult<usize> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| "count too large")?;
        if n.saturating_mul(min_size.max(1)) > self.remaining() {
            return Err("count exceeds input");
        }
        Ok(n)
    }

    #[inline]
    pub fn len_bytes(&mut self) -> DecodeResult<&'a [u8]> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| "length too large")?;
        self.bytes(n)
    }

    pub fn value(&mut self) -> DecodeResult<Value> {
        Ok(self.value_ref()?.map(<[u8]>::to_vec))
    }

    /// A value (`varint 0` for NULL, else `varint (len + 1) | bytes`), borrowed.
    #[inline]
    fn value_ref(&mut self) -> DecodeResult<Option<&'a [u8]>> {
        let n = self.varint()?;
        if n == 0 {
            return Ok(None);
        }
        let n = usize::try_from(n - 1).map_err(|_| "length too large")?;
        Ok(Some(self.bytes(n)?))
    }

    pub fn columns(&mut self) -> DecodeResult<Vec<(ColumnId, Value)>> {
        let mut cols = Vec::new();
        self.column_refs(|c, v| cols.push((c, v.map(<[u8]>::to_vec))))?;
        Ok(cols)
    }

    /// Reads a column list, handing each value to `f` borrowed from the input.
    pub fn column_refs(
        &mut self,
        mut f: impl FnMut(ColumnId, Option<&'a [u8]>),
    ) -> DecodeResult<()> {
        // Each column takes at least two bytes (id and value tag).
        let n = self.count(2)?;
        let mut last: Option<ColumnId> = None;
        for _ in 0..n {
            let c = ColumnId::try_from(self.varint()?).map_err(|_| "column id overflows u16")?;
            if last.is_some_and(|l| l >= c) {
                return Err("column ids not strictly increasing");
            }
            last = Some(c);
            f(c, self.value_ref()?);
        }
        Ok(())
    }

    /// Skips a column list without allocating.
    pub fn skip_columns(&mut self) -> DecodeResult<()> {
        let n = self.count(2)?;
        for _ in 0..n {
            self.varint()?;
            self.value_ref()?;
        }
        Ok(())
    }

    pub fn op(&mut self) -> DecodeResult<Op> {
        match self.u8()? {
            OP_INSERT => Ok(Op::Insert(Row(self.columns()?))),
            OP_PATCH => Ok(Op::Patch(self.columns()?)),
            OP_SOFT_DELETE => Ok(Op::SoftDelete),
            _ => Err("unknown op tag"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Frames

/// Starts a frame at the end of `out`; write the payload, then call [`finish_frame`].
///
/// A frame is `u32 len | u32 !len | u32 crc32(payload) | payload`, little-endian.
/// `len` is the payload length (1..=`MAX_FRAME_LEN`); `!len` (its bitwise complement) lets a
/// reader tell a damaged length field from a torn write without trusting the length.
pub fn begin_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    start
}

/// Fills in the header of the frame begun at `start`.
pub fn finish_frame(out: &mut [u8], start: usize) {
    finish_frame_unsealed(out, start);
    let crc = crc32fast::hash(&out[start + FRAME_HEADER_LEN..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// Fills in the length of the frame begun at `start`, leaving its CRC to
/// [`seal_frames`] (the append has the CRCs of a large batch's table frames computed by
/// the thread that writes them).
pub fn finish_frame_unsealed(out: &mut [u8], start: usize) {
    let len = (out.len() - start - FRAME_HEADER_LEN) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&(!len).to_le_bytes());
}

/// Fills in the CRC of each frame of `bytes`: whole frames, one after the other from the
/// start, their lengths filled in by [`finish_frame_unsealed`].
pub fn seal_frames(bytes: &mut [u8]) {
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + FRAME_HEADER_LEN) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let end = at + FRAME_HEADER_LEN + len;
        let Some(payload) = bytes.get(at + FRAME_HEADER_LEN..end) else {
            return;
        };
        let crc = crc32fast::hash(payload);
        bytes[at + 8..at + 12].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}

/// What [`read_frame`] found at a position.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameRead<'a> {
    /// A whole frame with a good CRC; the next frame starts at `next`.
    Frame { payload: &'a [u8], next: usize },
    /// Exactly at the end of the bytes.
    End,
    /// An incomplete or damaged frame with nothing but zeroes after it: a torn tail.
    Torn(&'static str),
    /// A damaged frame with data after it: corruption.
    Bad(&'static str),
}

/// Reads the frame at `pos` of `buf` (a segment's bytes, `pos` past its header).
///
/// Damage is a torn tail when it reaches the end of the bytes: a partial header, a length
/// running past the end, a CRC mismatch on the last frame, or a damaged frame followed only
/// by zero bytes. Damage followed by other data is corruption.
pub fn read_frame(buf: &[u8], pos: usize) -> FrameRead<'_> {
    if pos >= buf.len() {
        return FrameRead::End;
    }
    let classify = |end: usize, detail: &'static str| {
        if end >= buf.len() || buf[end..].iter().all(|b| *b == 0) {
            FrameRead::Torn(detail)
        } else {
            FrameRead::Bad(detail)
        }
    };
    if buf.len() - pos < FRAME_HEADER_LEN {
        return FrameRead::Torn("partial frame header");
    }
    let word = |i: usize| {
        let mut a = [0u8; 4];
        a.copy_from_slice(&buf[pos + i..pos + i + 4]);
        u32::from_le_bytes(a)
    };
    let (len, check, crc) = (word(0), word(4), word(8));
    if check != !len || len == 0 || len > MAX_FRAME_LEN {
        return classify(pos + FRAME_HEADER_LEN, "bad frame header");
    }
    let start = pos + FRAME_HEADER_LEN;
    let end = start.saturating_add(len as usize);
    if end > buf.len() {
        return FrameRead::Torn("frame runs past the end");
    }
    let payload = &buf[start..end];
    if crc32fast::hash(payload) != crc {
        return classify(end, "frame crc mismatch");
    }
    FrameRead::Frame { payload, next: end }
}

// ---------------------------------------------------------------------------------------
// Segment header

/// A segment's header, the first [`SEGMENT_HEADER_LEN`] bytes of the file.
///
/// Its `u64` word after the kind means one thing per kind: in a table log
/// ([`KIND_TABLE`]) the table's id, in a journal segment ([`KIND_JOURNAL`]) the segment
/// size of the store that wrote it (`Config::segment_size`; 0 in segments written before
/// sizes were recorded: not recorded). Build a journal segment's header with
/// [`SegmentHeader::journal`] and read its size with
/// [`SegmentHeader::recorded_segment_size`], not through `table`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub kind: u8,
    /// A table log's table id; in a journal segment, the recorded segment size (see above).
    pub table: TableId,
    pub first_seq: Seq,
}

impl SegmentHeader {
    /// The header of a journal segment starting at `first_seq`, written by a store that
    /// rolls segments over at `segment_size` bytes.
    pub fn journal(first_seq: Seq, segment_size: u64) -> SegmentHeader {
        SegmentHeader {
            kind: KIND_JOURNAL,
            table: segment_size,
            first_seq,
        }
    }

    /// The segment size recorded in a journal segment's header: `None` in a table log's
    /// segment and in a journal segment written before sizes were recorded (which holds 0).
    pub fn recorded_segment_size(&self) -> Option<u64> {
        (self.kind == KIND_JOURNAL && self.table != 0).then_some(self.table)
    }

    /// `magic "DRIFTLOG" | u16 version | u8 kind | u8 0 | u64 table | u64 first_seq |
    /// u32 crc32(bytes 0..28)`, little-endian.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[10] = self.kind;
        b[12..20].copy_from_slice(&self.table.to_le_bytes());
        b[20..28].copy_from_slice(&self.first_seq.to_le_bytes());
        let crc = crc32fast::hash(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(buf: &[u8]) -> DecodeResult<SegmentHeader> {
        let mut d = Decoder::new(buf);
        let head = d
            .bytes(SEGMENT_HEADER_LEN)
            .map_err(|_| "short segment header")?;
        let mut d = Decoder::new(head);
        if d.array::<8>()? != SEGMENT_MAGIC {
            return Err("bad segment magic");
        }
        if d.u16_le()? != FORMAT_VERSION {
            return Err("unsupported segment format version");
        }
        let kind = d.u8()?;
        let _reserved = d.u8()?;
        let table = d.u64_le()?;
        let first_seq = d.u64_le()?;
        let crc = d.u32_le()?;
        if crc != crc32fast::hash(&head[0..28]) {
            return Err("segment header crc mismatch");
        }
        if kind != KIND_JOURNAL && kind != KIND_TABLE {
            return Err("unknown segment kind");
        }
        Ok(SegmentHeader {
            kind,
            table,
            first_seq,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Journal records

/// One committed group, as recorded in the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalRecord {
    pub first_seq: Seq,
    pub count: u64,
    pub commit_ts: i64,
    pub xid: u64,
    pub role: String,
    /// Tables with events in the group, strictly increasing.
    pub tables: Vec<TableId>,
    /// For a group written by an import: where it came from (the `EXT_ORIGIN` extension).
    pub origin: Option<Origin>,
}

/// Encodes a journal record payload from borrowed parts (see [`JournalRecord::encode`]).
#[allow(clippy::too_many_arguments)]
pub fn encode_journal_record(
    out: &mut Vec<u8>,
    first_seq: Seq,
    count: u64,
    commit_ts: i64,
    xid: u64,
    role: &str,
    tables: &[TableId],
    origin: Option<&Origin>,
) {
    put_varint(out, first_seq);
    put_varint(out, count);
    put_varint_i64(out, commit_ts);
    put_varint(out, xid);
    put_bytes(out, role.as_bytes());
    put_varint(out, tables.len() as u64);
    for t in tables {
        put_varint(out, *t);
    }
    if let Some(o) = origin {
        out.push(EXT_ORIGIN);
        put_varint(out, o.xid);
        put_varint_i64(out, o.commit_ts);
        put_bytes(out, o.role.as_bytes());
    }
}

impl JournalRecord {
    /// Payload: `varint first_seq | varint count | zigzag-varint commit_ts | varint xid |
    /// varint len + role (UTF-8) | varint ntables | ntables x varint table` (tables strictly
    /// increasing; count >= 1), then optional extensions, each `u8 tag | body`:
    /// `EXT_ORIGIN` = `varint xid | zigzag-varint commit_ts | varint len + role`. A record
    /// without extensions is exactly the record of format 1 before extensions existed.
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_journal_record(
            out,
            self.first_seq,
            self.count,
            self.commit_ts,
            self.xid,
            &self.role,
            &self.tables,
            self.origin.as_ref(),
        );
    }

    pub fn decode(buf: &[u8]) -> DecodeResult<JournalRecord> {
        let mut d = Decoder::new(buf);
        let first_seq = d.varint()?;
        let count = d.varint()?;
        if first_seq == 0 || count == 0 || first_seq.checked_add(count).is_none() {
            return Err("impossible seq range");
        }
        let commit_ts = d.varint_i64()?;
        let xid = d.varint()?;
        let role = std::str::from_utf8(d.len_bytes()?)
            .map_err(|_| "role is not UTF-8")?
            .to_owned();
        let n = d.count(1)?;
        let mut tables = Vec::with_capacity(n);
        for _ in 0..n {
            let t = d.varint()?;
            if tables.last().is_some_and(|l| *l >= t) {
                return Err("tables not strictly increasing");
            }
            tables.push(t);
        }
        let mut origin = None;
        while !d.is_empty() {
            match d.u8()? {
                EXT_ORIGIN if origin.is_none() => {
                    let xid = d.varint()?;
                    let commit_ts = d.varint_i64()?;
                    let role = std::str::from_utf8(d.len_bytes()?)
                        .map_err(|_| "origin role is not UTF-8")?
                        .to_owned();
                    origin = Some(Origin {
                        xid,
                        commit_ts,
                        role,
                    });
                }
                EXT_ORIGIN => return Err("two origin extensions in journal record"),
                _ => return Err("unknown journal record extension"),
            }
        }
        Ok(JournalRecord {
            first_seq,
            count,
            commit_ts,
            xid,
            role,
            tables,
            origin,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Table frames

/// One group's events for one table, as recorded in that table's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableFrame {
    /// The group's first seq (its journal record's `first_seq`).
    pub group_seq: Seq,
    pub xid: u64,
    /// `(seq, key, op)` with strictly increasing seqs, all >= `group_seq`.
    pub events: Vec<(Seq, Vec<u8>, Op)>,
}

/// Encodes a table frame payload of `count` events from borrowed parts. Stops, returning
/// false, as soon as the payload passes `limit` bytes (the caller then cuts `out` back).
///
/// Payload: `varint group_seq | varint xid | varint n | n x (varint seq - group_seq |
/// varint len + key | op)`, where op is `u8 tag | body` (see [`put_op`]) and the seqs are
/// strictly increasing.
pub fn encode_table_frame<'a>(
    out: &mut Vec<u8>,
    group_seq: Seq,
    xid: u64,
    count: usize,
    events: impl Iterator<Item = (Seq, &'a [u8], &'a Op)>,
    limit: usize,
) -> bool {
    let start = out.len();
    put_varint(out, group_seq);
    put_varint(out, xid);
    put_varint(out, count as u64);
    for (seq, key, op) in events {
        put_varint(out, seq - group_seq);
        put_bytes(out, key);
        put_op(out, op);
        if out.len() - start > limit {
            return false;
        }
    }
    true
}

/// The group seq of a table frame payload, without decoding the rest.
pub fn peek_group_seq(buf: &[u8]) -> DecodeResult<Seq> {
    Decoder::new(buf).varint()
}

/// A table frame payload's header: `(group_seq, xid, number of events)`, checked (a group
/// seq above 0, at least one event, no more than the bytes left can hold).
fn table_frame_header(d: &mut Decoder<'_>) -> DecodeResult<(Seq, u64, usize)> {
    let group_seq = d.varint()?;
    if group_seq == 0 {
        return Err("group seq 0");
    }
    let xid = d.varint()?;
    // Each event takes at least three bytes: offset, key length, op tag.
    let n = d.count(3)?;
    if n == 0 {
        return Err("table frame without events");
    }
    Ok((group_seq, xid, n))
}

impl TableFrame {
    pub fn decode(buf: &[u8]) -> DecodeResult<TableFrame> {
        let mut d = Decoder::new(buf);
        let (group_seq, xid, n) = table_frame_header(&mut d)?;
        let mut events: Vec<(Seq, Vec<u8>, Op)> = Vec::with_capacity(n);
        for _ in 0..n {
            let seq = group_seq
                .checked_add(d.varint()?)
                .ok_or("event seq overflows")?;
            if events.last().is_some_and(|e| e.0 >= seq) {
                return Err("event seqs not strictly increasing");
            }
            let key = d.len_bytes()?.to_vec();
            let op = d.op()?;
            events.push((seq, key, op));
        }
        if !d.is_empty() {
            return Err("trailing bytes in table frame");
        }
        Ok(TableFrame {
            group_seq,
            xid,
            events,
        })
    }
}

/// `(group_seq, xid, [(seq, op)])`: one key's events in one table frame.
pub type KeyEvents = (Seq, u64, Vec<(Seq, Op)>);

/// Walks a table frame payload, checking it as strictly as [`TableFrame::decode`]: `f` gets
/// each event's seq and key and must consume its op from the decoder. Returns the group
/// seq and xid.
fn each_event<'a>(
    buf: &'a [u8],
    mut f: impl FnMut(Seq, &'a [u8], &mut Decoder<'a>, usize) -> DecodeResult<()>,
) -> DecodeResult<(Seq, u64)> {
    let mut d = Decoder::new(buf);
    let (group_seq, xid, n) = table_frame_header(&mut d)?;
    let mut prev: Option<Seq> = None;
    for _ in 0..n {
        let start = d.pos();
        let seq = group_seq
            .checked_add(d.varint()?)
            .ok_or("event seq overflows")?;
        if prev.is_some_and(|p| p >= seq) {
            return Err("event seqs not strictly increasing");
        }
        prev = Some(seq);
        let key = d.len_bytes()?;
        f(seq, key, &mut d, start)?;
    }
    if !d.is_empty() {
        return Err("trailing bytes in table frame");
    }
    Ok((group_seq, xid))
}

/// Skips one op without decoding its values.
fn skip_op(d: &mut Decoder<'_>) -> DecodeResult<()> {
    match d.u8()? {
        OP_INSERT | OP_PATCH => d.skip_columns(),
        OP_SOFT_DELETE => Ok(()),
        _ => Err("unknown op tag"),
    }
}

/// One key's events in a table frame payload: `(group_seq, xid, [(seq, op)])`, decoding
/// only that key's ops and skipping the others without allocating. Checks the payload as
/// strictly as [`TableFrame::decode`].
pub fn key_events(buf: &[u8], key: &[u8]) -> DecodeResult<KeyEvents> {
    let mut out = Vec::new();
    let (group_seq, xid) = each_event(buf, |seq, k, d, _| {
        // The last byte first, inline: it tells most other keys apart (the low byte of an
        // integer key, the last character of a text one) without a call to compare them.
        if k.last() == key.last() && k == key {
            out.push((seq, d.op()?));
            Ok(())
        } else {
            skip_op(d)
        }
    })?;
    Ok((group_seq, xid, out))
}

/// One key's events in a table frame payload, decoding only those at `positions` (where
/// the key history says the key's events start in the payload, increasing): the same as
/// [`key_events`] gives for a frame whose events at those positions are all the key's.
/// Each must be an event of `key`, seqs increasing; the rest of the payload is not read.
pub fn key_events_at(buf: &[u8], key: &[u8], positions: &[u32]) -> DecodeResult<KeyEvents> {
    let mut d = Decoder::new(buf);
    let (group_seq, xid, _) = table_frame_header(&mut d)?;
    let mut out: Vec<(Seq, Op)> = Vec::with_capacity(positions.len());
    let mut from = d.pos();
    for &p in positions {
        let p = p as usize;
        if p < from || p >= buf.len() {
            return Err("key history event position outside the frame's events");
        }
        let mut e = Decoder::new(&buf[p..]);
        let seq = group_seq
            .checked_add(e.varint()?)
            .ok_or("event seq overflows")?;
        if out.last().is_some_and(|(prev, _)| *prev >= seq) {
            return Err("event seqs not strictly increasing");
        }
        if e.len_bytes()? != key {
            return Err("key history event position does not hold an event of the key");
        }
        out.push((seq, e.op()?));
        from = p + e.pos();
    }
    Ok((group_seq, xid, out))
}

/// `(group_seq, [(seq, key, position)])`: a table frame's events without their ops, with
/// where each starts in the payload.
pub type FrameKeys<'a> = (Seq, Vec<(Seq, &'a [u8], u32)>);

/// The group seq of a table frame payload and its events' `(seq, key, position)`,
/// skipping the ops undecoded. Checks the payload as strictly as [`TableFrame::decode`].
pub fn frame_keys(buf: &[u8]) -> DecodeResult<FrameKeys<'_>> {
    let mut out = Vec::new();
    let (group_seq, _) = each_event(buf, |seq, k, d, start| {
        out.push((seq, k, start as u32));
        skip_op(d)
    })?;
    Ok((group_seq, out))
}

// ---------------------------------------------------------------------------------------
// Key history records (snapshot section `SECTION_HISTORY`)

/// Where one key's events are in its table's log: the frames holding at least one of them,
/// as `(group_seq, offset of the frame in the segment holding that group, positions)`,
/// groups strictly increasing. `positions` are where the key's events start in the frame's
/// payload, increasing, for a frame larger than [`POSITIONS_FROM`] in a section that keeps
/// them; empty otherwise (read the whole frame).
pub type FramePositions = Vec<(Seq, u64, Vec<u32>)>;

/// Key history records, by key.
pub type HistoryRecords = Vec<(Vec<u8>, FramePositions)>;

/// Encodes one key's record: `varint len + key | varint n | n x (varint group_seq - previous
/// group_seq (the first: itself) | varint offset [| varint m | m x varint position -
/// previous position (the first: itself)])`, the bracketed part in sections that keep
/// positions (`positions`). `frames` is not empty.
pub fn put_history_record(out: &mut Vec<u8>, key: &[u8], frames: &FramePositions, positions: bool) {
    put_bytes(out, key);
    put_varint(out, frames.len() as u64);
    let mut prev = 0;
    for (group, offset, events) in frames {
        put_varint(out, group - prev);
        put_varint(out, *offset);
        prev = *group;
        if positions {
            put_varint(out, events.len() as u64);
            let mut at = 0;
            for p in events {
                put_varint(out, u64::from(p - at));
                at = *p;
            }
        }
    }
}

/// Decodes the next key's record (see [`put_history_record`]), checking that its groups
/// strictly increase, its offsets lie past a segment header and its positions increase.
pub fn history_record<'a>(
    d: &mut Decoder<'a>,
    positions: bool,
) -> DecodeResult<(&'a [u8], FramePositions)> {
    let key = d.len_bytes()?;
    Ok((key, history_record_frames(d, positions)?))
}

/// Skips the frames of a key's record (after its key) without decoding them into a list.
pub fn skip_history_frames(d: &mut Decoder<'_>, positions: bool) -> DecodeResult<()> {
    let n = d.count(2)?;
    for _ in 0..n {
        d.varint()?;
        d.varint()?;
        if positions {
            for _ in 0..d.count(1)? {
                d.varint()?;
            }
        }
    }
    Ok(())
}

/// The frames of a key's record (after its key), checked as [`history_record`] says.
pub fn history_record_frames(d: &mut Decoder<'_>, positions: bool) -> DecodeResult<FramePositions> {
    // Each frame takes at least two bytes.
    let n = d.count(2)?;
    if n == 0 {
        return Err("key history record without frames");
    }
    let mut frames = Vec::with_capacity(n);
    let mut prev: Seq = 0;
    for _ in 0..n {
        let step = d.varint()?;
        if step == 0 {
            return Err("key history groups not strictly increasing");
        }
        prev = prev
            .checked_add(step)
            .ok_or("key history group overflows")?;
        let offset = d.varint()?;
        if offset < SEGMENT_HEADER_LEN as u64 {
            return Err("key history offset inside a segment header");
        }
        let mut events = Vec::new();
        if positions {
            let m = d.count(1)?;
            events.reserve(m);
            let mut at: u32 = 0;
            for _ in 0..m {
                let step = d.varint()?;
                if step == 0 {
                    return Err("key history event positions not increasing");
                }
                at = u32::try_from(step)
                    .ok()
                    .and_then(|s| at.checked_add(s))
                    .filter(|a| *a < MAX_FRAME_LEN)
                    .ok_or("key history event position past the largest frame")?;
                events.push(at);
            }
        }
        frames.push((prev, offset, events));
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `varint_len` and `columns_len` say how many bytes `put_varint` and `put_columns`
    /// write, at every varint width.
    #[test]
    fn encoded_lengths_are_exact() {
        let mut widths = Vec::new();
        for shift in 0..64 {
            for v in [(1u64 << shift) - 1, 1 << shift, (1 << shift) + 1] {
                let mut out = Vec::new();
                put_varint(&mut out, v);
                assert_eq!(varint_len(v), out.len(), "{v}");
                widths.push(out.len());
            }
        }
        assert_eq!(widths.iter().max(), Some(&10));
        let cols: Vec<(ColumnId, Value)> = vec![
            (1, None),
            (127, Some(vec![])),
            (128, Some(vec![7; 126])),
            (300, Some(vec![7; 127])),
            (u16::MAX, Some(vec![7; 20_000])),
        ];
        for n in 0..=cols.len() {
            let mut out = Vec::new();
            put_columns(&mut out, &cols[..n]);
            assert_eq!(columns_len(&cols[..n]), out.len(), "{n} columns");
        }
    }

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(Decoder::new(&out).varint(), Ok(v));
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX, 1_700_000_000_000_000] {
            let mut out = Vec::new();
            put_varint_i64(&mut out, v);
            assert_eq!(Decoder::new(&out).varint_i64(), Ok(v));
        }
        assert_eq!(
            Decoder::new(&[0xff; 10]).varint(),
            Err("varint overflows u64")
        );
        assert_eq!(Decoder::new(&[0x80]).varint(), Err("truncated"));
        let mut out = Vec::new();
        put_varint(&mut out, 300);
        assert_eq!(out, vec![0xac, 0x02]);
    }

    #[test]
    fn counts_are_checked_against_input() {
        let mut out = Vec::new();
        put_varint(&mut out, 1 << 40);
        assert_eq!(Decoder::new(&out).count(1), Err("count exceeds input"));
        let mut out = Vec::new();
        put_varint(&mut out, 1000);
        assert_eq!(Decoder::new(&out).len_bytes(), Err("length exceeds input"));
    }

    #[test]
    fn frames_round_trip_and_classify_damage() {
        let mut buf = Vec::new();
        let s = begin_frame(&mut buf);
        buf.extend_from_slice(b"hello");
        finish_frame(&mut buf, s);
        let s = begin_frame(&mut buf);
        buf.extend_from_slice(b"world!");
        finish_frame(&mut buf, s);
        assert_eq!(&buf[0..4], &5u32.to_le_bytes());
        assert_eq!(&buf[4..8], &(!5u32).to_le_bytes());
        assert_eq!(&buf[8..12], &crc32fast::hash(b"hello").to_le_bytes());
        assert_eq!(
            read_frame(&buf, 0),
            FrameRead::Frame {
                payload: b"hello",
                next: 17
            }
        );
        assert_eq!(
            read_frame(&buf, 17),
            FrameRead::Frame {
                payload: b"world!",
                next: 35
            }
        );
        assert_eq!(read_frame(&buf, 35), FrameRead::End);
        // Every cut inside the second frame is a torn tail.
        for cut in 18..35 {
            assert!(matches!(read_frame(&buf[..cut], 17), FrameRead::Torn(_)));
        }
        // Damage in the first frame, with the second after it, is corruption.
        for i in 0..17 {
            let mut b = buf.clone();
            b[i] ^= 0x10;
            assert!(matches!(read_frame(&b, 0), FrameRead::Bad(_)), "byte {i}");
        }
        // Damage in the last frame's payload is a torn tail; zeroes after a frame too.
        let mut b = buf.clone();
        b[30] ^= 1;
        assert_eq!(read_frame(&b, 17), FrameRead::Torn("frame crc mismatch"));
        let mut b = buf.clone();
        b.extend_from_slice(&[0u8; 40]);
        assert_eq!(read_frame(&b, 35), FrameRead::Torn("bad frame header"));
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let h = SegmentHeader {
            kind: KIND_TABLE,
            table: 42,
            first_seq: 1000,
        };
        let b = h.encode();
        assert_eq!(&b[0..8], b"DRIFTLOG");
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        for i in 0..SEGMENT_HEADER_LEN {
            let mut d = b;
            d[i] ^= 4;
            assert!(SegmentHeader::decode(&d).is_err(), "byte {i}");
        }
        assert!(SegmentHeader::decode(&b[..10]).is_err());
        assert_eq!(h.recorded_segment_size(), None);
        // A journal segment's header carries the segment size in the same word.
        let j = SegmentHeader::journal(7, 300);
        let b = j.encode();
        assert_eq!(b[10], KIND_JOURNAL);
        assert_eq!(&b[12..20], &300u64.to_le_bytes());
        let back = SegmentHeader::decode(&b).unwrap();
        assert_eq!((back, back.recorded_segment_size()), (j, Some(300)));
        let old = SegmentHeader::decode(&SegmentHeader::journal(7, 0).encode()).unwrap();
        assert_eq!(old.recorded_segment_size(), None);
    }

    #[test]
    fn journal_record_round_trips() {
        let r = JournalRecord {
            first_seq: 7,
            count: 3,
            commit_ts: -5,
            xid: 1 << 40,
            role: "alice".into(),
            tables: vec![1, 9, 300],
            origin: None,
        };
        let mut out = Vec::new();
        r.encode(&mut out);
        assert_eq!(JournalRecord::decode(&out), Ok(r.clone()));
        for cut in 0..out.len() {
            assert!(JournalRecord::decode(&out[..cut]).is_err());
        }
        // A record without extensions is byte for byte the original format-1 record.
        let mut v1 = Vec::new();
        for x in [7u64, 3] {
            put_varint(&mut v1, x);
        }
        put_varint_i64(&mut v1, -5);
        put_varint(&mut v1, 1 << 40);
        put_bytes(&mut v1, b"alice");
        for x in [3u64, 1, 9, 300] {
            put_varint(&mut v1, x);
        }
        assert_eq!(out, v1);

        let imported = JournalRecord {
            origin: Some(Origin {
                xid: 77,
                commit_ts: -9,
                role: "bob".into(),
            }),
            ..r
        };
        let mut out = Vec::new();
        imported.encode(&mut out);
        assert_eq!(&out[..v1.len()], &v1[..]);
        assert_eq!(out[v1.len()], EXT_ORIGIN);
        assert_eq!(JournalRecord::decode(&out), Ok(imported));
        // Every proper prefix that cuts into the extension is refused, as are unknown and
        // repeated extensions.
        for cut in v1.len() + 1..out.len() {
            assert!(JournalRecord::decode(&out[..cut]).is_err(), "cut {cut}");
        }
        let mut unknown = v1.clone();
        unknown.push(9);
        assert_eq!(
            JournalRecord::decode(&unknown),
            Err("unknown journal record extension")
        );
        let mut twice = out.clone();
        twice.extend_from_slice(&out[v1.len()..]);
        assert_eq!(
            JournalRecord::decode(&twice),
            Err("two origin extensions in journal record")
        );
    }

    #[test]
    fn table_frame_round_trips() {
        let ops = [
            Op::Insert(Row(vec![(1, Some(b"a".to_vec())), (3, None)])),
            Op::Patch(vec![(2, Some(vec![]))]),
            Op::SoftDelete,
        ];
        let keys: [&[u8]; 3] = [b"k1", b"", b"k3"];
        let mut out = Vec::new();
        assert!(encode_table_frame(
            &mut out,
            10,
            99,
            3,
            [
                (10, keys[0], &ops[0]),
                (12, keys[1], &ops[1]),
                (13, keys[2], &ops[2]),
            ]
            .into_iter(),
            usize::MAX,
        ));
        let f = TableFrame::decode(&out).unwrap();
        assert_eq!(f.group_seq, 10);
        assert_eq!(f.xid, 99);
        assert_eq!(peek_group_seq(&out), Ok(10));
        assert_eq!(
            f.events,
            vec![
                (10, b"k1".to_vec(), ops[0].clone()),
                (12, vec![], ops[1].clone()),
                (13, b"k3".to_vec(), ops[2].clone())
            ]
        );
        for cut in 0..out.len() {
            assert!(TableFrame::decode(&out[..cut]).is_err());
            assert!(key_events(&out[..cut], b"k3").is_err());
        }
        assert_eq!(
            key_events(&out, b"k3"),
            Ok((10, 99, vec![(13, Op::SoftDelete)]))
        );
        assert_eq!(
            key_events(&out, b""),
            Ok((10, 99, vec![(12, ops[1].clone())]))
        );
        assert_eq!(key_events(&out, b"nope"), Ok((10, 99, vec![])));
    }

    #[test]
    fn unsorted_columns_are_rejected() {
        let mut out = vec![OP_INSERT];
        put_varint(&mut out, 2);
        put_varint(&mut out, 5);
        put_value(&mut out, &None);
        put_varint(&mut out, 5);
        put_value(&mut out, &None);
        assert_eq!(
            Decoder::new(&out).op(),
            Err("column ids not strictly increasing")
        );
    }
}
