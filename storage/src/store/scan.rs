//! Scans: a table's rows at one seq, in key order, merged from a snapshot's blocks and the
//! delta of events after it.
//!
//! A scan produces its rows a chunk at a time into a flat buffer ([`RowBuf`]) that it
//! reuses: a row's key and column values are copied once from the decompressed snapshot
//! block (or from the delta's events) and handed out as borrowed slices ([`RowRef`]), so a
//! scan allocates per chunk, not per row or per value. The delta's effects are worked out
//! as the merge reaches each key, with the caller's fates.

use std::ops::Bound;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{DecodeResult, Decoder};
use crate::snapshot::Snapshot;
use crate::table::{Delta, Version};
use crate::types::{ColumnId, Fate, Fates, Op, Row, Seq, Value};

/// Rows per chunk, and the bytes after which a chunk ends early (large values).
const CHUNK_ROWS: usize = 1024;
const CHUNK_BYTES: usize = 1 << 20;
/// The length recorded for a NULL column.
const NULL: usize = usize::MAX;

/// Rows of one chunk: the snapshot's rows as spans of the current block, the others laid
/// out flat, every key and value in one byte buffer.
#[derive(Default)]
pub struct RowBuf {
    bytes: Vec<u8>,
    /// `(column, start, len)` into `bytes`; `len` is [`NULL`] for a NULL value. A row's
    /// columns are sorted by id.
    cols: Vec<(ColumnId, usize, usize)>,
    rows: Vec<Entry>,
}

#[derive(Clone, Copy)]
enum Entry {
    /// A snapshot row as stored: the spans of its key and of its (checked) column list in
    /// the current block.
    Stored {
        key: (usize, usize),
        cols: (usize, usize),
    },
    /// A row built here: its key's span in `bytes`, its columns `cols[first..first + n]`.
    Built {
        key: (usize, usize),
        first: usize,
        n: usize,
    },
}

impl RowBuf {
    fn clear(&mut self) {
        self.bytes.clear();
        // A chunk that held a large row does not keep its buffer for the rest of the scan.
        if self.bytes.capacity() > 4 * CHUNK_BYTES {
            self.bytes = Vec::new();
        }
        self.cols.clear();
        self.rows.clear();
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn full(&self) -> bool {
        self.rows.len() >= CHUNK_ROWS || self.bytes.len() >= CHUNK_BYTES
    }

    fn push_bytes(&mut self, b: &[u8]) -> usize {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(b);
        start
    }

    /// Adds a snapshot row as it is stored in the block (spans: start, end).
    fn push_stored(&mut self, key: (usize, usize), cols: (usize, usize)) {
        self.rows.push(Entry::Stored { key, cols });
    }

    /// Starts a built row under `key`; its columns follow with [`RowBuf::push_col`].
    fn begin(&mut self, key: &[u8]) {
        let start = self.push_bytes(key);
        self.rows.push(Entry::Built {
            key: (start, start + key.len()),
            first: self.cols.len(),
            n: 0,
        });
    }

    /// The column list of the row begun last.
    fn built(&mut self) -> (usize, &mut usize) {
        match self.rows.last_mut() {
            Some(Entry::Built { first, n, .. }) => (*first, n),
            _ => unreachable!("a built row was begun"),
        }
    }

    /// Appends a column to the row begun last (ids in increasing order).
    fn push_col(&mut self, c: ColumnId, v: Option<&[u8]>) {
        let entry = match v {
            Some(b) => (c, self.push_bytes(b), b.len()),
            None => (c, 0, NULL),
        };
        self.cols.push(entry);
        *self.built().1 += 1;
    }

    /// Sets columns of the row begun last, the patch's values winning.
    fn patch(&mut self, patch: &[(ColumnId, Value)]) {
        let first = self.built().0;
        for (c, v) in patch {
            let entry = match v {
                Some(b) => (*c, self.push_bytes(b), b.len()),
                None => (*c, 0, NULL),
            };
            match self.cols[first..].binary_search_by_key(c, |e| e.0) {
                Ok(i) => self.cols[first + i] = entry,
                Err(i) => {
                    self.cols.insert(first + i, entry);
                    *self.built().1 += 1;
                }
            }
        }
    }

    /// Row `i`; `block` is the block the chunk was read from.
    fn row<'a>(&'a self, i: usize, block: &'a [u8]) -> RowRef<'a> {
        match self.rows[i] {
            Entry::Stored { key, cols } => RowRef {
                key: &block[key.0..key.1],
                cols: Cols::Encoded(&block[cols.0..cols.1]),
            },
            Entry::Built { key, first, n } => RowRef {
                key: &self.bytes[key.0..key.1],
                cols: Cols::Flat(&self.cols[first..first + n], &self.bytes),
            },
        }
    }
}

/// One row of a scan, borrowed from the scan until its next row.
#[derive(Clone, Copy)]
pub struct RowRef<'a> {
    pub key: &'a [u8],
    cols: Cols<'a>,
}

#[derive(Clone, Copy)]
enum Cols<'a> {
    /// A column list as encoded (and already checked): decoded as it is read.
    Encoded(&'a [u8]),
    Flat(&'a [(ColumnId, usize, usize)], &'a [u8]),
}

impl<'a> RowRef<'a> {
    /// The value of `column`, `None` when it is NULL or absent (as [`Row::get`]).
    #[inline]
    pub fn get(&self, column: ColumnId) -> Option<&'a [u8]> {
        match self.cols {
            Cols::Encoded(_) => self
                .columns()
                .take_while(|(c, _)| *c <= column)
                .find(|(c, _)| *c == column)
                .and_then(|(_, v)| v),
            Cols::Flat(cols, bytes) => match cols.binary_search_by_key(&column, |e| e.0) {
                Ok(i) => flat_value(bytes, cols[i].1, cols[i].2),
                Err(_) => None,
            },
        }
    }

    /// The row's columns, sorted by id.
    pub fn columns(&self) -> ColumnsOf<'a> {
        match self.cols {
            Cols::Encoded(b) => {
                let mut d = Decoder::new(b);
                // Checked when the row was read: the count is there.
                let left = d.varint().unwrap_or(0) as usize;
                ColumnsOf::Encoded(d, left)
            }
            Cols::Flat(cols, bytes) => ColumnsOf::Flat(cols.iter(), bytes),
        }
    }

    pub fn to_row(&self) -> Row {
        Row(self
            .columns()
            .map(|(c, v)| (c, v.map(<[u8]>::to_vec)))
            .collect())
    }
}

fn flat_value(bytes: &[u8], start: usize, len: usize) -> Option<&[u8]> {
    (len != NULL).then(|| &bytes[start..start + len])
}

/// The columns of a [`RowRef`], sorted by id.
pub enum ColumnsOf<'a> {
    Encoded(Decoder<'a>, usize),
    Flat(std::slice::Iter<'a, (ColumnId, usize, usize)>, &'a [u8]),
}

impl<'a> Iterator for ColumnsOf<'a> {
    type Item = (ColumnId, Option<&'a [u8]>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            ColumnsOf::Encoded(d, left) => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                // The list was checked when its row was read, so these cannot fail.
                let c = d.varint().ok()? as ColumnId;
                let len = d.varint().ok()? as usize;
                let v = match len {
                    0 => None,
                    n => Some(d.bytes(n - 1).ok()?),
                };
                Some((c, v))
            }
            ColumnsOf::Flat(it, bytes) => it.next().map(|&(c, s, l)| (c, flat_value(bytes, s, l))),
        }
    }
}

/// The rows of a table at one seq, in key order. Snapshot blocks are decompressed one at a
/// time as the scan reaches them. Read it with [`Scan::next_row`], or as owned rows with
/// [`Scan::rows`].
pub struct Scan {
    snap: Option<Arc<Snapshot>>,
    delta: Arc<Delta>,
    upto: Seq,
    /// The next snapshot block to load, and the current one: its offset in the file (for
    /// errors), its bytes, the position of its next row and the span of its previous key.
    next_block: usize,
    block_offset: u64,
    block: Vec<u8>,
    block_pos: usize,
    prev_key: Option<(usize, usize)>,
    /// The delta's keys up to this one have been merged (`None`: none yet).
    merged_upto: Option<Vec<u8>>,
    /// Indexes of the visible versions of the key being merged (reused).
    visible: Vec<usize>,
    out: RowBuf,
    pos: usize,
    done: bool,
}

/// What the delta decides for one key.
enum Decided<'d> {
    /// Nothing visible: the base row stands.
    Base,
    /// Gone.
    Absent,
    /// This row (an INSERT) or the base row (`None`), with these patches on top.
    Patched(Option<&'d Row>, &'d [usize]),
}

impl Scan {
    pub(crate) fn new(snap: Option<Arc<Snapshot>>, delta: Arc<Delta>, upto: Seq) -> Scan {
        Scan {
            snap,
            delta,
            upto,
            next_block: 0,
            block_offset: 0,
            block: Vec::new(),
            block_pos: 0,
            prev_key: None,
            merged_upto: None,
            visible: Vec::new(),
            out: RowBuf::default(),
            pos: 0,
            done: false,
        }
    }

    /// The next row, or `None` at the end. `fates` decides which of the delta's
    /// transactions count; pass the same fates to every call of one scan.
    pub fn next_row(&mut self, fates: &dyn Fates) -> Option<Result<RowRef<'_>>> {
        while self.pos >= self.out.len() {
            if self.done {
                return None;
            }
            if let Err(e) = self.fill(fates) {
                self.done = true;
                self.out.clear();
                return Some(Err(e));
            }
        }
        self.pos += 1;
        Some(Ok(self.out.row(self.pos - 1, &self.block)))
    }

    /// Steps back over the row the last [`Scan::next_row`] returned (it must have returned
    /// one), so that the next call returns it again.
    pub fn unread(&mut self) {
        assert!(self.pos > 0, "unread without a row read");
        self.pos -= 1;
    }

    /// The rows as owned values.
    pub fn rows(self, fates: &dyn Fates) -> ScanRows<'_> {
        ScanRows { scan: self, fates }
    }

    fn more_blocks(&self) -> bool {
        self.snap
            .as_ref()
            .is_some_and(|s| self.next_block < s.row_blocks())
    }

    /// Loads the next snapshot block; false when there is none.
    fn load_block(&mut self) -> Result<bool> {
        let Some(s) = &self.snap else {
            return Ok(false);
        };
        if self.next_block >= s.row_blocks() {
            return Ok(false);
        }
        let (offset, raw) = s.row_block_raw(self.next_block)?;
        self.next_block += 1;
        self.block_offset = offset;
        self.block = raw;
        self.block_pos = 0;
        self.prev_key = None;
        Ok(true)
    }

    /// The key of the block's next row and where its columns start.
    fn peek_block_key(&self) -> DecodeResult<Option<(usize, usize, usize)>> {
        if self.block_pos >= self.block.len() {
            return Ok(None);
        }
        let mut d = Decoder::new(&self.block[self.block_pos..]);
        let key = d.len_bytes()?;
        let key_start = self.block_pos + d.pos() - key.len();
        if let Some((s, l)) = self.prev_key {
            if &self.block[s..s + l] >= key {
                return Err("snapshot keys not strictly increasing");
            }
        }
        Ok(Some((key_start, key.len(), self.block_pos + d.pos())))
    }

    /// Refills the buffer with the next chunk of rows.
    fn fill(&mut self, fates: &dyn Fates) -> Result<()> {
        self.out.clear();
        self.pos = 0;
        let delta = self.delta.clone();
        let lower = match &self.merged_upto {
            Some(k) => Bound::Excluded(k.as_slice()),
            None => Bound::Unbounded,
        };
        let mut overlay = delta
            .keys
            .range::<[u8], _>((lower, Bound::Unbounded))
            .peekable();
        let mut last_merged: Option<&[u8]> = None;
        let result = loop {
            if self.out.full() {
                break Ok(());
            }
            let snap_row = match self.peek_block_key() {
                Ok(Some(r)) => Some(r),
                // A chunk ends with its block: its rows point into it.
                Ok(None) if self.out.len() > 0 && self.more_blocks() => break Ok(()),
                Ok(None) => match self.load_block() {
                    Ok(true) => continue,
                    Ok(false) => None,
                    Err(e) => break Err(e),
                },
                Err(d) => break Err(self.corruption(d)),
            };
            let order = match (snap_row, overlay.peek()) {
                (None, None) => {
                    self.done = true;
                    break Ok(());
                }
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((ks, kl, _)), Some((o, _))) => self.block[ks..ks + kl].cmp(o.as_slice()),
            };
            let base = match order {
                std::cmp::Ordering::Greater => None,
                _ => {
                    let (ks, kl, cols) = snap_row.expect("a snapshot row");
                    self.prev_key = Some((ks, kl));
                    Some((ks, kl, cols))
                }
            };
            let versions = match order {
                std::cmp::Ordering::Less => None,
                _ => {
                    let (k, vs) = overlay.next().expect("peeked");
                    last_merged = Some(k.as_slice());
                    Some((k.as_slice(), vs.as_slice()))
                }
            };
            if let Err(d) = self.merge_row(base, versions, fates) {
                break Err(self.corruption(d));
            }
        };
        if let Some(k) = last_merged {
            let m = self.merged_upto.get_or_insert_with(Vec::new);
            m.clear();
            m.extend_from_slice(k);
        }
        result
    }

    /// Adds the row under one key to the buffer: the snapshot's row (`base`: key span and
    /// where its columns start in the block), the delta's `versions`, or both.
    fn merge_row(
        &mut self,
        base: Option<(usize, usize, usize)>,
        versions: Option<(&[u8], &[Version])>,
        fates: &dyn Fates,
    ) -> DecodeResult<()> {
        let mut d = base.map(|(_, _, cols)| Decoder::new(&self.block[cols..]));
        let decided = match versions {
            Some((_, vs)) => decide(vs, self.upto, fates, &mut self.visible),
            None => Decided::Base,
        };
        let key = match (versions, base) {
            (Some((k, _)), _) => k,
            (None, Some((ks, kl, _))) => &self.block[ks..ks + kl],
            (None, None) => unreachable!("a row from somewhere"),
        };
        match decided {
            Decided::Absent => {}
            Decided::Base | Decided::Patched(None, _) if d.is_none() => {}
            Decided::Base => {
                let (ks, kl, cols) = base.expect("checked above");
                let d = d.as_mut().expect("checked above");
                // Checked here once, so that reading its columns later cannot fail.
                d.column_refs(|_, _| {})?;
                self.out.push_stored((ks, ks + kl), (cols, cols + d.pos()));
            }
            Decided::Patched(start, patches) => {
                self.out.begin(key);
                match start {
                    Some(row) => {
                        for (c, v) in &row.0 {
                            self.out.push_col(*c, v.as_deref());
                        }
                    }
                    None => d
                        .as_mut()
                        .expect("checked above")
                        .column_refs(|c, v| self.out.push_col(c, v))?,
                }
                let vs = versions.expect("decided from versions").1;
                for &i in patches {
                    if let Op::Patch(p) = &vs[i].op {
                        self.out.patch(p);
                    }
                }
            }
        }
        // Skip the base row's columns when they were not copied, and step past them.
        if let Some(mut d) = d {
            if d.pos() == 0 {
                d.skip_columns()?;
            }
            let (_, _, cols) = base.expect("a decoder comes from a base row");
            self.block_pos = cols + d.pos();
        }
        Ok(())
    }

    fn corruption(&self, detail: &'static str) -> Error {
        match &self.snap {
            Some(s) => Error::corruption(&s.path, self.block_offset, detail),
            None => Error::corruption("(delta)", 0, detail),
        }
    }
}

/// What the visible versions among `versions` (seq <= `upto`, committed) do to the row.
/// `visible` is scratch space; the patches returned index into `versions`.
fn decide<'d>(
    versions: &'d [Version],
    upto: Seq,
    fates: &dyn Fates,
    visible: &'d mut Vec<usize>,
) -> Decided<'d> {
    visible.clear();
    let mut last_xid = None;
    let mut last_fate = Fate::Committed;
    for (i, v) in versions
        .iter()
        .enumerate()
        .take_while(|(_, v)| v.seq <= upto)
    {
        if last_xid != Some(v.xid) {
            last_fate = fates.fate(v.xid);
            last_xid = Some(v.xid);
        }
        if last_fate == Fate::Committed {
            visible.push(i);
        }
    }
    if visible.is_empty() {
        return Decided::Base;
    }
    // The last INSERT or SOFT_DELETE decides the start; only PATCHes after it count.
    let known = visible
        .iter()
        .rposition(|&i| !matches!(versions[i].op, Op::Patch(_)));
    match known {
        None => Decided::Patched(None, &visible[..]),
        Some(k) => match &versions[visible[k]].op {
            Op::Insert(row) => Decided::Patched(Some(row), &visible[k + 1..]),
            _ => Decided::Absent,
        },
    }
}

/// A scan's rows as owned values (see [`Scan::rows`]).
pub struct ScanRows<'f> {
    scan: Scan,
    fates: &'f dyn Fates,
}

impl Iterator for ScanRows<'_> {
    type Item = Result<(Vec<u8>, Row)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.scan
            .next_row(self.fates)
            .map(|r| r.map(|r| (r.key.to_vec(), r.to_row())))
    }
}
