//! The append-only, file-backed Merkle tree (`docs/ledger.md`, "File layout").
//!
//! One file holds every node of the tree, each written once, when it becomes complete:
//! appending leaf `j` writes one record with the leaf hash and the interior nodes that leaf
//! completes (as many as `j` has trailing one bits), in post-order, and a CRC:
//!
//! ```text
//! header   magic "DRIFTMKL" | u16 version (1) | u8 hash (1 = SHA-256, RFC 9162) | u8 0 |
//!          u32 crc32(bytes 0..12)                                              16 bytes
//! record j node[0] = leaf hash j | node[1..=t] = the subtrees of 2, 4, .., 2^t leaves
//!          ending at leaf j (t = trailing zeros of j + 1) | u32 crc32(u64 j | nodes)
//! ```
//!
//! Record `j` starts at `16 + 68 j - 32 popcount(j)` (the `j` records before it hold
//! `2j - popcount(j)` nodes and `j` CRCs), so the node covering leaves `[k 2^h, (k+1) 2^h)`,
//! stored in record `(k+1) 2^h - 1` at position `h`, is found without an index. Every root,
//! inclusion proof and consistency proof of any tree size up to the current one is computed
//! from `O(log n)` of these stored nodes (see each method); each node read reads its record
//! and checks its CRC. The tree keeps in memory only the roots of the complete subtrees of
//! the current tree (one per set bit of the size, at most 57), used by appends and by
//! [`MerkleTree::root`].
//!
//! Appends only ever add bytes at the end (a failed write is cut back). A crash can leave a
//! torn tail: a partial record at the end, or whole records whose CRC fails. Opening cuts
//! it back to the last whole record whose CRC holds, under the rule the store's logs follow
//! (`RecoveryMode`): a bad record is a torn tail when nothing but zero bytes follows it, and
//! corruption when other data does.
//!
//! One writer at a time: the caller serializes appends (the store's lock).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::encoding::{ConsistencyProof, InclusionProof, LedgerDigest};
use super::hash::{leaf_hash, node_hash, Hash, EMPTY_ROOT, HASH_LEN};
use crate::error::{Error, IoContext, Result};
use crate::{OpenMode, RecoveryMode};

/// First bytes of a ledger tree file.
pub const TREE_MAGIC: [u8; 8] = *b"DRIFTMKL";
/// Version of the tree file's layout.
pub const TREE_VERSION: u16 = 1;
/// Hash byte of the header: SHA-256 with RFC 9162's prefixes.
pub const TREE_HASH_SHA256: u8 = 1;
/// `magic[8] | u16 version | u8 hash | u8 0 | u32 crc32(bytes 0..12)`.
pub const TREE_HEADER_LEN: u64 = 16;
/// Most leaves a tree file holds: every offset stays below 2^63.
pub const MAX_TREE_SIZE: u64 = 1 << 56;

const NODE_LEN: u64 = HASH_LEN as u64;
const CRC_LEN: u64 = 4;
/// The longest record: a leaf completing a subtree of `MAX_TREE_SIZE` leaves.
const MAX_RECORD_LEN: usize = (57 * NODE_LEN + CRC_LEN) as usize;

/// Where record `index` starts (= where the tree of `index` leaves ends).
pub fn record_offset(index: u64) -> u64 {
    TREE_HEADER_LEN + 68 * index - 32 * u64::from(index.count_ones())
}

/// Nodes in record `index`: the leaf and the subtrees it completes.
fn record_nodes(index: u64) -> u64 {
    1 + u64::from((index + 1).trailing_zeros())
}

fn record_len(index: u64) -> u64 {
    NODE_LEN * record_nodes(index) + CRC_LEN
}

/// The most leaves whose records fit in `len` bytes of file (`len >= TREE_HEADER_LEN`).
fn leaves_within(len: u64) -> u64 {
    // record_offset(n) >= 16 + 36 n, so n <= (len - 16) / 36; record_offset is increasing.
    let (mut lo, mut hi) = (0, ((len - TREE_HEADER_LEN) / 36).min(MAX_TREE_SIZE));
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if record_offset(mid) <= len {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// The largest power of two smaller than `n` (`n >= 2`): RFC 9162's split point.
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

fn header_bytes() -> [u8; TREE_HEADER_LEN as usize] {
    let mut h = [0u8; TREE_HEADER_LEN as usize];
    h[..8].copy_from_slice(&TREE_MAGIC);
    h[8..10].copy_from_slice(&TREE_VERSION.to_le_bytes());
    h[10] = TREE_HASH_SHA256;
    let crc = crc32fast::hash(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

fn record_crc(index: u64, nodes: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&index.to_le_bytes());
    crc.update(nodes);
    crc.finalize()
}

fn crc_holds(index: u64, record: &[u8]) -> bool {
    let (nodes, stored) = record.split_at(record.len() - CRC_LEN as usize);
    u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]) == record_crc(index, nodes)
}

/// A tree size or leaf index the tree does not have (the caller's mistake, not damage).
fn beyond(detail: String) -> Error {
    Error::Io(std::io::Error::new(ErrorKind::InvalidInput, detail))
}

/// The ledger's Merkle tree, in one append-only file.
pub struct MerkleTree {
    path: PathBuf,
    file: File,
    writable: bool,
    size: u64,
    /// Roots of the complete subtrees of the tree of `size` leaves, largest (leftmost) first.
    frontier: Vec<Hash>,
    /// Set when a failed append could not be cut back: appending again could build on it.
    broken: Option<String>,
    node_reads: AtomicU64,
}

impl std::fmt::Debug for MerkleTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MerkleTree")
            .field("path", &self.path)
            .field("size", &self.size)
            .field("writable", &self.writable)
            .finish()
    }
}

impl MerkleTree {
    /// Opens the tree file at `path`. A writer creates it when missing (atomically: header
    /// to a `.tmp` file, fsynced, renamed, directory fsynced) and cuts a torn tail; a reader
    /// leaves the file as it is and sees the tree up to the last whole record. With
    /// [`RecoveryMode::Strict`] a torn tail is [`Error::Corruption`] instead.
    ///
    /// Reads the last records back to the last good one and the `popcount(n)` roots of the
    /// complete subtrees; it does not read the whole file (see [`MerkleTree::check`]).
    pub fn open(path: impl AsRef<Path>, mode: OpenMode, recovery: RecoveryMode) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let writable = mode == OpenMode::Writer;
        if writable && !path.try_exists().at(&path)? {
            create(&path)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(&path)
            .at(&path)?;
        let len = file.metadata().at(&path)?.len();
        if len < TREE_HEADER_LEN {
            return Err(Error::corruption(
                &path,
                0,
                "ledger tree file shorter than its header",
            ));
        }
        let mut header = [0u8; TREE_HEADER_LEN as usize];
        file.read_exact_at(&mut header, 0).at(&path)?;
        if header != header_bytes() {
            let detail = if header[..8] != TREE_MAGIC {
                "not a ledger tree file (bad magic)"
            } else if crc32fast::hash(&header[..12]).to_le_bytes() != header[12..] {
                "ledger tree header crc mismatch"
            } else {
                "unsupported ledger tree version or hash"
            };
            return Err(Error::corruption(&path, 0, detail));
        }

        let mut tree = MerkleTree {
            path,
            file,
            writable,
            size: 0,
            frontier: Vec::new(),
            broken: None,
            node_reads: AtomicU64::new(0),
        };
        let whole = leaves_within(len);
        let end = record_offset(whole);
        if len - end >= MAX_RECORD_LEN as u64 {
            // Only past `MAX_TREE_SIZE` leaves: no tree is that long.
            return Err(Error::corruption(
                &tree.path,
                end,
                "ledger tree file longer than the largest tree",
            ));
        }
        let mut tail = vec![0u8; (len - end) as usize];
        tree.file.read_exact_at(&mut tail, end).at(&tree.path)?;
        // Whether everything after the record being looked at is zero bytes.
        let mut zeros_after = tail.iter().all(|b| *b == 0);
        let mut good = whole;
        let mut buf = [0u8; MAX_RECORD_LEN];
        while good > 0 {
            let index = good - 1;
            let record = tree.read_record(index, &mut buf)?;
            if crc_holds(index, record) {
                break;
            }
            if !zeros_after {
                return Err(Error::corruption(
                    &tree.path,
                    record_offset(index),
                    format!("ledger record {index} crc mismatch, with data after it"),
                ));
            }
            zeros_after = record.iter().all(|b| *b == 0);
            good = index;
        }
        let keep = record_offset(good);
        if keep < len {
            if recovery == RecoveryMode::Strict {
                return Err(Error::corruption(
                    &tree.path,
                    keep,
                    format!(
                        "torn tail: {} bytes after the first {good} ledger records",
                        len - keep
                    ),
                ));
            }
            if writable {
                tree.file.set_len(keep).at(&tree.path)?;
                tree.file.sync_data().at(&tree.path)?;
            }
        }
        tree.size = good;
        tree.frontier = tree.subtree_roots(good)?;
        Ok(tree)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Stored nodes read so far (each is one record read and CRC check). Opening reads
    /// `popcount(size)` of them; [`MerkleTree::check`] reads none (it scans instead).
    pub fn node_reads(&self) -> u64 {
        self.node_reads.load(Ordering::Relaxed)
    }

    /// Appends one leaf given its hash ([`leaf_hash`] of the leaf's data); returns its index.
    pub fn append_leaf_hash(&mut self, leaf: &Hash) -> Result<u64> {
        self.append_leaf_hashes(std::slice::from_ref(leaf))
    }

    /// Appends one leaf given its data (hashed as `SHA-256(0x00 || data)`); returns its index.
    pub fn append_leaf_data(&mut self, data: &[u8]) -> Result<u64> {
        self.append_leaf_hash(&leaf_hash(data))
    }

    /// Appends leaves in order with one write at the end of the file; returns the index of
    /// the first. Hashes `O(1)` amortized interior nodes per leaf and reads nothing. Not
    /// durable until [`MerkleTree::sync`].
    pub fn append_leaf_hashes(&mut self, leaves: &[Hash]) -> Result<u64> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        if let Some(why) = &self.broken {
            return Err(Error::Broken(why.clone()));
        }
        let first = self.size;
        if leaves.len() as u64 > MAX_TREE_SIZE - first {
            return Err(Error::TooLarge(format!(
                "a ledger tree holds at most {MAX_TREE_SIZE} leaves"
            )));
        }
        if leaves.is_empty() {
            return Ok(first);
        }
        let mut frontier = self.frontier.clone();
        let mut bytes = Vec::with_capacity(leaves.len() * 72);
        for (j, leaf) in (first..).zip(leaves) {
            let start = bytes.len();
            let mut node = *leaf;
            bytes.extend_from_slice(&node);
            for _ in 0..(j + 1).trailing_zeros() {
                // The tree of j leaves has one complete subtree per set bit of j, and leaf j
                // completes as many of them (the smallest) as j has trailing one bits.
                let left = frontier.pop().expect("one subtree root per set bit");
                node = node_hash(&left, &node);
                bytes.extend_from_slice(&node);
            }
            frontier.push(node);
            let crc = record_crc(j, &bytes[start..]);
            bytes.extend_from_slice(&crc.to_le_bytes());
        }
        let at = record_offset(first);
        if let Err(e) = self.file.write_all_at(&bytes, at) {
            // Part of it may be on disk: cut it, or a later append could leave whole records
            // of these leaves behind its own.
            if let Err(cut) = self.file.set_len(at) {
                self.broken = Some(format!(
                    "ledger append to {} failed ({e}) and could not be cut back ({cut})",
                    self.path.display()
                ));
            }
            return Err(Error::IoAt {
                path: self.path.clone(),
                source: e,
            });
        }
        self.size += leaves.len() as u64;
        self.frontier = frontier;
        Ok(first)
    }

    /// Cuts the tree back to its first `size` leaves (no-op when it has no more), and
    /// fdatasyncs the file. For the owner of files kept beside the tree that must hold one
    /// record per leaf: when a crash left those shorter than the tree, the tree follows them.
    /// Reads the `popcount(size)` roots of the complete subtrees of the shorter tree.
    pub fn truncate(&mut self, size: u64) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        if size >= self.size {
            return Ok(());
        }
        let frontier = self.subtree_roots(size)?;
        self.file.set_len(record_offset(size)).at(&self.path)?;
        self.file.sync_data().at(&self.path)?;
        self.size = size;
        self.frontier = frontier;
        Ok(())
    }

    /// Makes every append so far durable (fdatasync).
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().at(&self.path)
    }

    /// The root of the current tree, from memory (no read).
    pub fn root(&self) -> Hash {
        let mut nodes = self.frontier.iter().rev();
        let Some(last) = nodes.next() else {
            return EMPTY_ROOT;
        };
        nodes.fold(*last, |right, left| node_hash(left, &right))
    }

    /// A digest of the current tree with the caller's `last_seq` and `commit_time`.
    pub fn digest(&self, last_seq: u64, commit_time: i64) -> LedgerDigest {
        LedgerDigest {
            tree_size: self.size,
            root: self.root(),
            last_seq,
            commit_time,
        }
    }

    /// The root of the tree of the first `size` leaves: reads `popcount(size)` stored nodes
    /// (the complete subtrees of that tree), at most `log2(size) + 1`.
    pub fn root_at(&self, size: u64) -> Result<Hash> {
        self.check_size(size)?;
        if size == 0 {
            return Ok(EMPTY_ROOT);
        }
        self.range_hash(0, size)
    }

    /// Leaf `index`'s hash (one stored node).
    pub fn leaf(&self, index: u64) -> Result<Hash> {
        if index >= self.size {
            return Err(beyond(format!(
                "ledger leaf {index} is beyond its {} leaves",
                self.size
            )));
        }
        self.read_node(0, index)
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves (RFC 9162
    /// 2.1.3.1). Reads at most `2 log2(size)` stored nodes: one per level for the siblings
    /// that are complete subtrees, plus the complete subtrees of the one sibling range that
    /// is not (the right part of the tree where the path leaves its right border).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<InclusionProof> {
        self.check_size(size)?;
        if index >= size {
            return Err(beyond(format!(
                "ledger leaf {index} is not in the tree of {size} leaves"
            )));
        }
        let mut path = Vec::new();
        let (mut lo, mut hi) = (0, size);
        while hi - lo > 1 {
            let k = split(hi - lo);
            if index < lo + k {
                path.push(self.range_hash(lo + k, hi)?);
                hi = lo + k;
            } else {
                path.push(self.range_hash(lo, lo + k)?);
                lo += k;
            }
        }
        path.reverse();
        Ok(InclusionProof {
            leaf_index: index,
            tree_size: size,
            path,
        })
    }

    /// The consistency proof between the trees of the first `size1` and `size2` leaves
    /// (RFC 9162 2.1.4.1, `PROOF(m, D[n]) = SUBPROOF(m, D[n], true)`). Reads at most
    /// `2 log2(size2) + 1` stored nodes, as an inclusion proof does.
    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Result<ConsistencyProof> {
        self.check_size(size2)?;
        if size1 > size2 {
            return Err(beyond(format!(
                "no consistency proof from {size1} leaves back to {size2}"
            )));
        }
        let mut path = Vec::new();
        if size1 > 0 && size1 < size2 {
            let (mut lo, mut hi, mut whole) = (0, size2, true);
            loop {
                if size1 == hi {
                    // SUBPROOF(m, D[m], b): nothing when this is the whole first tree.
                    if !whole {
                        path.push(self.range_hash(lo, hi)?);
                    }
                    break;
                }
                let k = split(hi - lo);
                if size1 - lo <= k {
                    path.push(self.range_hash(lo + k, hi)?);
                    hi = lo + k;
                } else {
                    path.push(self.range_hash(lo, lo + k)?);
                    lo += k;
                    whole = false;
                }
            }
            path.reverse();
        }
        Ok(ConsistencyProof { size1, size2, path })
    }

    /// Reads the whole file and checks everything: each record's CRC and that each interior
    /// node is the hash of its two children. Memory stays `O(log n)`; the first problem is
    /// [`Error::Corruption`] at its offset.
    pub fn check(&self) -> Result<()> {
        let mut reader = BufReader::with_capacity(1 << 16, &self.file);
        reader
            .seek(SeekFrom::Start(TREE_HEADER_LEN))
            .at(&self.path)?;
        let mut stack: Vec<Hash> = Vec::new();
        let mut buf = [0u8; MAX_RECORD_LEN];
        for index in 0..self.size {
            let at = record_offset(index);
            let record = &mut buf[..record_len(index) as usize];
            reader.read_exact(record).at(&self.path)?;
            if !crc_holds(index, record) {
                return Err(Error::corruption(
                    &self.path,
                    at,
                    format!("ledger record {index} crc mismatch"),
                ));
            }
            let mut nodes = record[..record.len() - CRC_LEN as usize].chunks_exact(HASH_LEN);
            let mut node: Hash = nodes.next().expect("a leaf").try_into().expect("32 bytes");
            for (h, stored) in (1u64..).zip(nodes) {
                let Some(left) = stack.pop() else {
                    return Err(Error::corruption(&self.path, at, "record shape"));
                };
                node = node_hash(&left, &node);
                if stored != node {
                    return Err(Error::corruption(
                        &self.path,
                        at + h * NODE_LEN,
                        format!(
                            "ledger node {h} of record {index} is not the hash of its children"
                        ),
                    ));
                }
            }
            stack.push(node);
        }
        if stack != self.frontier {
            return Err(Error::corruption(
                &self.path,
                record_offset(self.size),
                "ledger subtree roots changed since the tree was opened",
            ));
        }
        Ok(())
    }

    fn check_size(&self, size: u64) -> Result<()> {
        if size > self.size {
            return Err(beyond(format!(
                "ledger tree size {size} is beyond its {} leaves",
                self.size
            )));
        }
        Ok(())
    }

    /// Reads record `index` into `buf` (no CRC check).
    fn read_record<'b>(&self, index: u64, buf: &'b mut [u8; MAX_RECORD_LEN]) -> Result<&'b [u8]> {
        let record = &mut buf[..record_len(index) as usize];
        self.file
            .read_exact_at(record, record_offset(index))
            .at(&self.path)?;
        Ok(record)
    }

    /// The stored node covering leaves `[k 2^h, (k+1) 2^h)`, which must be in the tree.
    fn read_node(&self, h: u32, k: u64) -> Result<Hash> {
        let index = ((k + 1) << h) - 1;
        debug_assert!(index < self.size);
        self.node_reads.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; MAX_RECORD_LEN];
        let record = self.read_record(index, &mut buf)?;
        if !crc_holds(index, record) {
            return Err(Error::corruption(
                &self.path,
                record_offset(index),
                format!("ledger record {index} crc mismatch"),
            ));
        }
        let at = h as usize * HASH_LEN;
        Ok(record[at..at + HASH_LEN].try_into().expect("32 bytes"))
    }

    /// MTH of leaves `[lo, hi)`, `lo < hi <= size`, where `lo` is a multiple of the largest
    /// power of two not above `hi - lo` (every range RFC 9162's recursion reaches is): one
    /// stored node per set bit of `hi - lo`.
    fn range_hash(&self, lo: u64, hi: u64) -> Result<Hash> {
        let n = hi - lo;
        if n.is_power_of_two() {
            debug_assert_eq!(lo % n, 0);
            return self.read_node(n.trailing_zeros(), lo >> n.trailing_zeros());
        }
        let k = split(n);
        let left = self.range_hash(lo, lo + k)?;
        let right = self.range_hash(lo + k, hi)?;
        Ok(node_hash(&left, &right))
    }

    /// The roots of the complete subtrees of the tree of `size` leaves, largest first.
    fn subtree_roots(&self, size: u64) -> Result<Vec<Hash>> {
        let mut roots = Vec::with_capacity(size.count_ones() as usize);
        let mut lo = 0;
        for h in (0..64).rev() {
            if size & (1 << h) != 0 {
                roots.push(self.read_node(h, lo >> h)?);
                lo += 1 << h;
            }
        }
        Ok(roots)
    }
}

/// Creates an empty tree file atomically.
fn create(path: &Path) -> Result<()> {
    crate::fileops::write_file_durably(path, &header_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_offsets_add_up() {
        let mut at = TREE_HEADER_LEN;
        for j in 0..5000u64 {
            assert_eq!(record_offset(j), at, "record {j}");
            at += record_len(j);
            assert_eq!(leaves_within(at), j + 1);
            assert_eq!(leaves_within(at - 1), j);
        }
        assert_eq!(leaves_within(TREE_HEADER_LEN), 0);
        // The largest tree still fits below 2^63.
        assert!(record_offset(MAX_TREE_SIZE) < 1 << 63);
        assert_eq!(record_len(MAX_TREE_SIZE - 1), MAX_RECORD_LEN as u64);
        assert_eq!(leaves_within(u64::MAX), MAX_TREE_SIZE);
    }

    #[test]
    fn split_points() {
        assert_eq!(split(2), 1);
        assert_eq!(split(3), 2);
        assert_eq!(split(4), 2);
        assert_eq!(split(5), 4);
        assert_eq!(split(8), 4);
        assert_eq!(split(9), 8);
        assert_eq!(split(u64::MAX), 1 << 63);
    }
}
