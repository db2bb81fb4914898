//! The ledger as a store keeps it (`<root>/ledger/`, `docs/ledger.md` "The ledger's
//! files"): the tree, and beside it one record per leaf saying which group the leaf is and
//! where that group is in the logs.
//!
//! ```text
//! tree    the MerkleTree file (tree.rs)
//! index   header | record j = u64 first_seq | u64 offset of groups record j |
//!                             u32 crc32(u64 j | first_seq | offset)             20 bytes
//! groups  header | frames (len | !len | crc32 | payload), one per leaf:
//!         varint j | varint first_seq | varint journal offset | header hash[32] |
//!         varint n | n x (varint table | varint frame offset | section hash[32])
//! header  = magic[8] ("DRIFTLIX" / "DRIFTLGR") | u16 version (1) | u16 0 |
//!           u32 crc32(bytes 0..12)                                           16 bytes
//! ```
//!
//! The index has fixed-size records, so the leaf of a seq is found by binary search over
//! it (`O(log n)` reads of 20 bytes); the groups records say where the group's journal
//! frame and table frames are (so that extending and proving read only those) and hold
//! the hashes of the leaf's header and of each of its table sections, for telling what
//! changed when the log no longer gives the leaf.
//!
//! All three files are derived from the logs (recomputable), appended in the order groups,
//! index, tree and fdatasynced together by the caller. After a crash they may hold different
//! numbers of leaves: opening keeps the longest prefix all three hold whole (a torn tail of
//! each, by the logs' rule: damage followed only by zero bytes), and a writer cuts each file
//! back to it. Damage before that is [`Error::Corruption`].

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::hash::{Hash, HASH_LEN};
use super::tree::{record_offset, MerkleTree};
use crate::error::{Error, IoContext, Result};
use crate::format::{
    begin_frame, finish_frame, put_varint, read_frame, DecodeResult, Decoder, FrameRead,
    FRAME_HEADER_LEN, MAX_FRAME_LEN,
};
use crate::types::{Seq, TableId};
use crate::{OpenMode, RecoveryMode};

/// The ledger's directory, relative to the store's root.
pub const LEDGER_DIR: &str = "ledger";
pub const TREE_FILE: &str = "tree";
pub const INDEX_FILE: &str = "index";
pub const GROUPS_FILE: &str = "groups";
pub const INDEX_MAGIC: [u8; 8] = *b"DRIFTLIX";
pub const GROUPS_MAGIC: [u8; 8] = *b"DRIFTLGR";
/// Version of the index and groups files' layout.
pub const FILES_VERSION: u16 = 1;
pub const FILE_HEADER_LEN: u64 = 16;
pub const INDEX_RECORD_LEN: u64 = 20;

/// What the ledger keeps beside the tree about one leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafRecord {
    /// The group's first seq.
    pub first_seq: Seq,
    /// Where the group's journal frame starts, in the journal segment holding `first_seq`.
    pub journal_offset: u64,
    /// `SHA-256` of the leaf's header (`leaf.rs`).
    pub header: Hash,
    /// The group's tables, ascending.
    pub tables: Vec<LeafTableRecord>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafTableRecord {
    pub table: TableId,
    /// Where the group's frame starts, in the table's segment holding the group.
    pub frame_offset: u64,
    /// `SHA-256` of the table's section of the leaf.
    pub section: Hash,
}

impl LeafRecord {
    fn encode(&self, index: u64, out: &mut Vec<u8>) {
        put_varint(out, index);
        put_varint(out, self.first_seq);
        put_varint(out, self.journal_offset);
        out.extend_from_slice(&self.header);
        put_varint(out, self.tables.len() as u64);
        for t in &self.tables {
            put_varint(out, t.table);
            put_varint(out, t.frame_offset);
            out.extend_from_slice(&t.section);
        }
    }

    fn decode(payload: &[u8], index: u64, first_seq: Seq) -> DecodeResult<LeafRecord> {
        let mut d = Decoder::new(payload);
        if d.varint()? != index {
            return Err("ledger groups record of another leaf");
        }
        if d.varint()? != first_seq {
            return Err("ledger groups record of another group than its index says");
        }
        let journal_offset = d.varint()?;
        let header = d.array::<HASH_LEN>()?;
        let n = d.count(2 + HASH_LEN)?;
        let mut tables: Vec<LeafTableRecord> = Vec::with_capacity(n);
        for _ in 0..n {
            let table = d.varint()?;
            if tables.last().is_some_and(|t| t.table >= table) {
                return Err("ledger groups record tables not strictly increasing");
            }
            tables.push(LeafTableRecord {
                table,
                frame_offset: d.varint()?,
                section: d.array::<HASH_LEN>()?,
            });
        }
        if !d.is_empty() {
            return Err("trailing bytes in ledger groups record");
        }
        Ok(LeafRecord {
            first_seq,
            journal_offset,
            header,
            tables,
        })
    }
}

fn header_bytes(magic: &[u8; 8]) -> [u8; FILE_HEADER_LEN as usize] {
    let mut h = [0u8; FILE_HEADER_LEN as usize];
    h[..8].copy_from_slice(magic);
    h[8..10].copy_from_slice(&FILES_VERSION.to_le_bytes());
    let crc = crc32fast::hash(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

fn index_offset(j: u64) -> u64 {
    FILE_HEADER_LEN + INDEX_RECORD_LEN * j
}

fn index_record(j: u64, first_seq: Seq, offset: u64) -> [u8; INDEX_RECORD_LEN as usize] {
    let mut r = [0u8; INDEX_RECORD_LEN as usize];
    r[..8].copy_from_slice(&first_seq.to_le_bytes());
    r[8..16].copy_from_slice(&offset.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&j.to_le_bytes());
    crc.update(&r[..16]);
    r[16..].copy_from_slice(&crc.finalize().to_le_bytes());
    r
}

/// `(first_seq, offset)` of index record `j`'s bytes, if its CRC holds.
fn parse_index_record(j: u64, r: &[u8; INDEX_RECORD_LEN as usize]) -> Option<(Seq, u64)> {
    let first_seq = u64::from_le_bytes(r[..8].try_into().expect("8 bytes"));
    let offset = u64::from_le_bytes(r[8..16].try_into().expect("8 bytes"));
    (index_record(j, first_seq, offset) == *r).then_some((first_seq, offset))
}

/// Creates a file holding only `header`, atomically (temp file, fdatasync, rename, fsync of
/// the directory), unless it exists.
fn create_file(path: &Path, header: &[u8]) -> Result<()> {
    if path.try_exists().at(path)? {
        return Ok(());
    }
    crate::fileops::write_file_durably(path, header)
}

fn open_file(path: &Path, writable: bool, magic: &[u8; 8]) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(writable)
        .open(path)
        .at(path)?;
    let mut h = [0u8; FILE_HEADER_LEN as usize];
    if file.metadata().at(path)?.len() < FILE_HEADER_LEN {
        return Err(Error::corruption(
            path,
            0,
            "ledger file shorter than its header",
        ));
    }
    file.read_exact_at(&mut h, 0).at(path)?;
    if h != header_bytes(magic) {
        return Err(Error::corruption(
            path,
            0,
            "not a ledger file of this kind and version (header)",
        ));
    }
    Ok(file)
}

/// Whether `bytes` of `file` from `at` to its end (`len`) are all zero.
fn zeros_from(file: &File, path: &Path, at: u64, len: u64) -> Result<bool> {
    let mut buf = vec![0u8; 1 << 16];
    let mut pos = at;
    while pos < len {
        let n = ((len - pos) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], pos).at(path)?;
        if buf[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

/// What is at an offset of the groups file.
enum GroupsFrame {
    Whole {
        payload: Vec<u8>,
        end: u64,
    },
    /// A partial or damaged frame followed only by zero bytes.
    Torn,
    Bad(&'static str),
}

fn groups_frame_at(file: &File, path: &Path, at: u64, len: u64) -> Result<GroupsFrame> {
    if at < FILE_HEADER_LEN {
        return Ok(GroupsFrame::Bad(
            "ledger index points into the groups file's header",
        ));
    }
    if len.saturating_sub(at) < FRAME_HEADER_LEN as u64 {
        return Ok(GroupsFrame::Torn);
    }
    let mut head = [0u8; FRAME_HEADER_LEN];
    file.read_exact_at(&mut head, at).at(path)?;
    let word = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().expect("4 bytes"));
    let (n, check) = (word(0), word(4));
    let body = at + FRAME_HEADER_LEN as u64;
    if check != !n || n == 0 || n > MAX_FRAME_LEN {
        return Ok(if zeros_from(file, path, body, len)? {
            GroupsFrame::Torn
        } else {
            GroupsFrame::Bad("bad frame header")
        });
    }
    let end = body + u64::from(n);
    if end > len {
        return Ok(GroupsFrame::Torn);
    }
    let mut frame = vec![0u8; FRAME_HEADER_LEN + n as usize];
    file.read_exact_at(&mut frame, at).at(path)?;
    match read_frame(&frame, 0) {
        FrameRead::Frame { payload, .. } => Ok(GroupsFrame::Whole {
            payload: payload.to_vec(),
            end,
        }),
        _ => Ok(if zeros_from(file, path, end, len)? {
            GroupsFrame::Torn
        } else {
            GroupsFrame::Bad("frame crc mismatch")
        }),
    }
}

/// The ledger's tree and the records beside it, in `<root>/ledger/`.
pub struct LedgerFiles {
    dir: PathBuf,
    tree: MerkleTree,
    index: File,
    index_path: PathBuf,
    groups: File,
    groups_path: PathBuf,
    writable: bool,
    /// Leaves, the same in all three files.
    size: u64,
    /// The end of the last groups record.
    groups_end: u64,
    /// The record of the last leaf.
    last: Option<LeafRecord>,
    /// The tree file's length as this ledger last left it (once it is another, another
    /// store changed the files: reopen).
    tree_len: u64,
    index_reads: AtomicU64,
    /// Set when an append failed halfway: the files must be reopened (which recovers).
    broken: bool,
}

impl std::fmt::Debug for LedgerFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerFiles")
            .field("dir", &self.dir)
            .field("size", &self.size)
            .finish()
    }
}

impl LedgerFiles {
    /// Whether a ledger was ever started in `dir`.
    pub fn exists(dir: &Path) -> Result<bool> {
        dir.join(TREE_FILE).try_exists().at(dir)
    }

    /// Opens the ledger in `dir`; a writer creates the directory and the files when missing
    /// (each atomically) and cuts the files back to the leaves all three hold whole (see
    /// the module's doc). With [`RecoveryMode::Strict`], a torn tail inside a file is
    /// [`Error::Corruption`] (files of different lengths are not: they are cut in both
    /// modes). A reader changes nothing and sees those leaves.
    pub fn open(dir: &Path, mode: OpenMode, recovery: RecoveryMode) -> Result<LedgerFiles> {
        let writable = mode == OpenMode::Writer;
        let index_path = dir.join(INDEX_FILE);
        let groups_path = dir.join(GROUPS_FILE);
        if writable {
            if !dir.try_exists().at(dir)? {
                fs::create_dir_all(dir).at(dir)?;
                let parent = dir.parent().unwrap_or(Path::new("."));
                File::open(parent).and_then(|d| d.sync_all()).at(parent)?;
            }
            create_file(&groups_path, &header_bytes(&GROUPS_MAGIC))?;
            create_file(&index_path, &header_bytes(&INDEX_MAGIC))?;
        }
        let tree_path = dir.join(TREE_FILE);
        let tree = MerkleTree::open(&tree_path, mode, recovery)?;
        let index = open_file(&index_path, writable, &INDEX_MAGIC)?;
        let groups = open_file(&groups_path, writable, &GROUPS_MAGIC)?;

        // The index: whole records back to the last whose CRC holds (torn tail rule).
        let index_len = index.metadata().at(&index_path)?.len();
        let whole = (index_len - FILE_HEADER_LEN) / INDEX_RECORD_LEN;
        let mut good = whole;
        let mut zeros_after = zeros_from(&index, &index_path, index_offset(whole), index_len)?;
        while good > 0 {
            let mut r = [0u8; INDEX_RECORD_LEN as usize];
            index
                .read_exact_at(&mut r, index_offset(good - 1))
                .at(&index_path)?;
            if parse_index_record(good - 1, &r).is_some() {
                break;
            }
            if !zeros_after {
                return Err(Error::corruption(
                    &index_path,
                    index_offset(good - 1),
                    format!(
                        "ledger index record {} crc mismatch, with data after it",
                        good - 1
                    ),
                ));
            }
            zeros_after = r.iter().all(|b| *b == 0);
            good -= 1;
        }
        if recovery == RecoveryMode::Strict && index_offset(good) < index_len {
            return Err(Error::corruption(
                &index_path,
                index_offset(good),
                "torn tail in the ledger index",
            ));
        }

        let mut files = LedgerFiles {
            dir: dir.to_path_buf(),
            tree_len: 0,
            tree,
            index,
            index_path,
            groups,
            groups_path,
            writable,
            size: 0,
            groups_end: FILE_HEADER_LEN,
            last: None,
            index_reads: AtomicU64::new(0),
            broken: false,
        };
        // The groups records of the leaves all three files hold, back to the last whole one.
        let groups_len = files.groups.metadata().at(&files.groups_path)?.len();
        let mut n = files.tree.size().min(good);
        while n > 0 {
            let (first_seq, at) = files.index_entry(n - 1)?;
            match groups_frame_at(&files.groups, &files.groups_path, at, groups_len)? {
                GroupsFrame::Whole { payload, end } => {
                    let rec = LeafRecord::decode(&payload, n - 1, first_seq)
                        .map_err(|d| Error::corruption(&files.groups_path, at, d))?;
                    files.groups_end = end;
                    files.last = Some(rec);
                    break;
                }
                GroupsFrame::Torn if recovery == RecoveryMode::TolerateTornTail => n -= 1,
                GroupsFrame::Torn => {
                    return Err(Error::corruption(
                        &files.groups_path,
                        at,
                        "torn tail in the ledger groups file",
                    ))
                }
                GroupsFrame::Bad(d) => return Err(Error::corruption(&files.groups_path, at, d)),
            }
        }
        files.size = n;
        if writable {
            files.tree.truncate(n)?;
            if index_len > index_offset(n) {
                files.index.set_len(index_offset(n)).at(&files.index_path)?;
                files.index.sync_data().at(&files.index_path)?;
            }
            if groups_len > files.groups_end {
                files
                    .groups
                    .set_len(files.groups_end)
                    .at(&files.groups_path)?;
                files.groups.sync_data().at(&files.groups_path)?;
            }
        }
        files.tree_len = fs::metadata(&tree_path).at(&tree_path)?.len();
        Ok(files)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn tree(&self) -> &MerkleTree {
        &self.tree
    }

    /// The root of the tree of the ledger's leaves (a reader's tree file may already hold
    /// more leaves than the records beside it).
    pub fn root(&self) -> Result<Hash> {
        if self.tree.size() == self.size {
            Ok(self.tree.root())
        } else {
            self.tree.root_at(self.size)
        }
    }

    /// The record of the last leaf.
    pub fn last(&self) -> Option<&LeafRecord> {
        self.last.as_ref()
    }

    /// Index records read so far (each one `pread` of 20 bytes and a CRC check).
    pub fn index_reads(&self) -> u64 {
        self.index_reads.load(Ordering::Relaxed)
    }

    /// Whether the tree file's length is not what this ledger left it at (another store
    /// extended the ledger, or recovered it: reopen).
    pub fn changed(&self) -> Result<bool> {
        let path = self.dir.join(TREE_FILE);
        Ok(fs::metadata(&path).at(&path)?.len() != self.tree_len)
    }

    /// `(first_seq, groups record offset)` of leaf `j`'s index record, CRC checked.
    fn index_entry(&self, j: u64) -> Result<(Seq, u64)> {
        self.index_reads.fetch_add(1, Ordering::Relaxed);
        let mut r = [0u8; INDEX_RECORD_LEN as usize];
        self.index
            .read_exact_at(&mut r, index_offset(j))
            .at(&self.index_path)?;
        parse_index_record(j, &r).ok_or_else(|| {
            Error::corruption(
                &self.index_path,
                index_offset(j),
                format!("ledger index record {j} crc mismatch"),
            )
        })
    }

    fn check_leaf(&self, j: u64) -> Result<()> {
        if j >= self.size {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("ledger leaf {j} is beyond its {} leaves", self.size),
            )));
        }
        Ok(())
    }

    /// The first seq of leaf `j`'s group (one index record read).
    pub fn first_seq(&self, j: u64) -> Result<Seq> {
        self.check_leaf(j)?;
        Ok(self.index_entry(j)?.0)
    }

    /// Leaf `j`'s record (its index record and its groups record).
    pub fn record(&self, j: u64) -> Result<LeafRecord> {
        self.check_leaf(j)?;
        let (first_seq, at) = self.index_entry(j)?;
        let len = self.groups_end;
        match groups_frame_at(&self.groups, &self.groups_path, at, len)? {
            GroupsFrame::Whole { payload, .. } => LeafRecord::decode(&payload, j, first_seq)
                .map_err(|d| Error::corruption(&self.groups_path, at, d)),
            GroupsFrame::Torn => Err(Error::corruption(
                &self.groups_path,
                at,
                "ledger groups record cut short",
            )),
            GroupsFrame::Bad(d) => Err(Error::corruption(&self.groups_path, at, d)),
        }
    }

    /// The last leaf whose group starts at or before `seq`, with that group's first seq, by
    /// binary search over the index: at most `ceil(log2(size)) + 1` index records read.
    pub fn leaf_at_or_before(&self, seq: Seq) -> Result<Option<(u64, Seq)>> {
        // Invariant: leaves below `lo` start at or before `seq`, those at or above `hi` after.
        let (mut lo, mut hi) = (0, self.size);
        let mut found = None;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let first = self.index_entry(mid)?.0;
            if first <= seq {
                found = Some((mid, first));
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(found)
    }

    /// Appends leaves: their records to the groups file and the index, their hashes to the
    /// tree, in that order, not synced ([`LedgerFiles::sync`]). First seqs must increase.
    /// After a failed append the files refuse further appends until reopened (opening cuts
    /// what the failure left).
    pub fn append(&mut self, leaves: &[(LeafRecord, Hash)]) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        if self.broken {
            return Err(Error::Broken(format!(
                "an earlier append to the ledger in {} failed",
                self.dir.display()
            )));
        }
        let Some((newest, _)) = leaves.last() else {
            return Ok(());
        };
        let mut prev = self.last.as_ref().map(|r| r.first_seq);
        let mut groups = Vec::new();
        let mut index = Vec::with_capacity(leaves.len() * INDEX_RECORD_LEN as usize);
        for (k, (rec, _)) in leaves.iter().enumerate() {
            if prev.is_some_and(|p| p >= rec.first_seq) {
                return Err(Error::InvalidTxn(format!(
                    "ledger leaves must follow the seq order: group {} after {}",
                    rec.first_seq,
                    prev.unwrap_or_default()
                )));
            }
            prev = Some(rec.first_seq);
            let j = self.size + k as u64;
            let start = begin_frame(&mut groups);
            rec.encode(j, &mut groups);
            finish_frame(&mut groups, start);
            let at = self.groups_end + start as u64;
            index.extend_from_slice(&index_record(j, rec.first_seq, at));
        }
        let hashes: Vec<Hash> = leaves.iter().map(|(_, h)| *h).collect();
        self.broken = true;
        self.groups
            .write_all_at(&groups, self.groups_end)
            .at(&self.groups_path)?;
        self.index
            .write_all_at(&index, index_offset(self.size))
            .at(&self.index_path)?;
        self.tree.append_leaf_hashes(&hashes)?;
        self.broken = false;
        self.tree_len = record_offset(self.tree.size());
        self.size += leaves.len() as u64;
        self.groups_end += groups.len() as u64;
        self.last = Some(newest.clone());
        Ok(())
    }

    /// Makes every append so far durable: fdatasyncs the groups file, the index and the tree.
    pub fn sync(&self) -> Result<()> {
        self.groups.sync_data().at(&self.groups_path)?;
        self.index.sync_data().at(&self.index_path)?;
        self.tree.sync()
    }
}
