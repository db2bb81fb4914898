//! The journal's index (#19): files derived from the journal that let a store look its
//! groups up in place, so that opening a store reads a few records, not the history.
//!
//! They live in `index/` under the store's root:
//!
//! - `index/groups`: a 16-byte header, then one 64-byte record per group, in seq order:
//!   the group (seqs, commit time, xid, role), whether it was imported, and where its
//!   journal frame is (segment, offset, length and CRC), closed by a CRC of the record.
//! - `index/roles`: the role names, in the order groups first named them (a group's
//!   role is an ordinal in this file): `u32 len | bytes | u32 crc`.
//! - `index/origins`: one 56-byte record per imported group: its seqs, its table, the
//!   importing transaction and its origin (xid, commit time, role ordinal), closed by a CRC.
//! - `index/tables/<id>`: the first seq of each group that wrote to the table, one 16-byte
//!   record each (`u64 seq | u32 crc | u32 0`).
//! - `index/synced`: how many records of the index, roles and origins are known to
//!   be on disk (`u64 | u64 | u64 | u32 crc`), written after they were synced.
//!
//! They are derived data: never WAL-logged, never synced by a commit, written only after
//! the journal frames they describe, and rebuilt from the journal wherever they may be
//! wrong. A store trusts the index up to its last record whose frame is in the journal
//! as described; the recovering open cuts everything past the synced counts (what a crash
//! of the machine may have left half written) and writes it again from the journal.
//! All integers are little-endian.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{IoContext, Result};
use crate::types::{Seq, TableId};

/// The directory of the index files, under the store's root. WAL-logged operations never
/// touch it (redo replaces a table's directory when it replays the table's creation, so
/// derived files cannot live there).
pub(crate) const INDEX_DIR: &str = "index";
pub(crate) const INDEX_FILE: &str = "groups";
pub(crate) const ROLES_FILE: &str = "roles";
pub(crate) const ORIGINS_FILE: &str = "origins";
pub(crate) const SYNCED_FILE: &str = "synced";
/// The tables' groups files: `index/tables/<id>`.
pub(crate) const TABLES_DIR: &str = "tables";

pub(crate) const INDEX_HEADER: [u8; 16] = *b"DRIFTJIX\x01\0\0\0\x40\0\0\0";
pub(crate) const INDEX_HEADER_LEN: u64 = INDEX_HEADER.len() as u64;
pub(crate) const INDEX_RECORD_LEN: u64 = 64;
pub(crate) const TABLE_RECORD_LEN: u64 = 16;
pub(crate) const ORIGIN_RECORD_LEN: u64 = 56;
const IMPORTED: u32 = 1 << 31;

/// Where a group's journal frame is: the segment (by its first seq), the frame's offset
/// and whole length (header included), and the CRC its header carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FramePos {
    pub seg: Seq,
    pub off: u64,
    pub len: u32,
    pub crc: u32,
}

/// One record of `journal/index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexRecord {
    pub first_seq: Seq,
    pub count: u64,
    pub commit_ts: i64,
    pub xid: u64,
    /// Ordinal in `journal/roles`.
    pub role: u32,
    pub imported: bool,
    pub pos: FramePos,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

impl IndexRecord {
    pub fn encode(&self) -> [u8; INDEX_RECORD_LEN as usize] {
        let mut b = [0u8; INDEX_RECORD_LEN as usize];
        b[0..8].copy_from_slice(&self.first_seq.to_le_bytes());
        b[8..16].copy_from_slice(&self.count.to_le_bytes());
        b[16..24].copy_from_slice(&self.commit_ts.to_le_bytes());
        b[24..32].copy_from_slice(&self.xid.to_le_bytes());
        b[32..40].copy_from_slice(&self.pos.seg.to_le_bytes());
        b[40..48].copy_from_slice(&self.pos.off.to_le_bytes());
        b[48..52].copy_from_slice(&self.pos.len.to_le_bytes());
        b[52..56].copy_from_slice(&self.pos.crc.to_le_bytes());
        let role = self.role | if self.imported { IMPORTED } else { 0 };
        b[56..60].copy_from_slice(&role.to_le_bytes());
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// `None` when the record's CRC does not match (not written whole, or damaged).
    pub fn decode(b: &[u8]) -> Option<IndexRecord> {
        if b.len() < INDEX_RECORD_LEN as usize || crc32fast::hash(&b[..60]) != u32_at(b, 60) {
            return None;
        }
        let role = u32_at(b, 56);
        Some(IndexRecord {
            first_seq: u64_at(b, 0),
            count: u64_at(b, 8),
            commit_ts: u64_at(b, 16) as i64,
            xid: u64_at(b, 24),
            role: role & !IMPORTED,
            imported: role & IMPORTED != 0,
            pos: FramePos {
                seg: u64_at(b, 32),
                off: u64_at(b, 40),
                len: u32_at(b, 48),
                crc: u32_at(b, 52),
            },
        })
    }
}

pub(crate) fn encode_table_record(seq: Seq) -> [u8; TABLE_RECORD_LEN as usize] {
    let mut b = [0u8; TABLE_RECORD_LEN as usize];
    b[0..8].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&b[..8]);
    b[8..12].copy_from_slice(&crc.to_le_bytes());
    b
}

pub(crate) fn decode_table_record(b: &[u8]) -> Option<Seq> {
    (b.len() >= TABLE_RECORD_LEN as usize && crc32fast::hash(&b[..8]) == u32_at(b, 8))
        .then(|| u64_at(b, 0))
}

/// One record of `journal/origins`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OriginRecord {
    pub first_seq: Seq,
    pub last_seq: Seq,
    pub table: TableId,
    /// The importing transaction (the group's own xid).
    pub run_xid: u64,
    /// Where the group came from.
    pub xid: u64,
    pub commit_ts: i64,
    pub role: u32,
}

impl OriginRecord {
    pub fn encode(&self) -> [u8; ORIGIN_RECORD_LEN as usize] {
        let mut b = [0u8; ORIGIN_RECORD_LEN as usize];
        b[0..8].copy_from_slice(&self.first_seq.to_le_bytes());
        b[8..16].copy_from_slice(&self.last_seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.table.to_le_bytes());
        b[24..32].copy_from_slice(&self.run_xid.to_le_bytes());
        b[32..40].copy_from_slice(&self.xid.to_le_bytes());
        b[40..48].copy_from_slice(&self.commit_ts.to_le_bytes());
        b[48..52].copy_from_slice(&self.role.to_le_bytes());
        let crc = crc32fast::hash(&b[..52]);
        b[52..56].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<OriginRecord> {
        if b.len() < ORIGIN_RECORD_LEN as usize || crc32fast::hash(&b[..52]) != u32_at(b, 52) {
            return None;
        }
        Some(OriginRecord {
            first_seq: u64_at(b, 0),
            last_seq: u64_at(b, 8),
            table: u64_at(b, 16),
            run_xid: u64_at(b, 24),
            xid: u64_at(b, 32),
            commit_ts: u64_at(b, 40) as i64,
            role: u32_at(b, 48),
        })
    }
}

pub(crate) fn encode_role(name: &str, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The roles a `journal/roles` file holds whole, in order, and the length they take (what
/// follows is a torn or damaged tail).
pub(crate) fn decode_roles(b: &[u8]) -> (Vec<String>, u64) {
    decode_roles_upto(b, usize::MAX)
}

/// Like [`decode_roles`], stopping after `max` roles.
pub(crate) fn decode_roles_upto(b: &[u8], max: usize) -> (Vec<String>, u64) {
    let mut roles = Vec::new();
    let mut pos = 0usize;
    while b.len() - pos >= 8 && roles.len() < max {
        let len = u32_at(b, pos) as usize;
        let Some(end) = pos.checked_add(4 + len).filter(|e| e + 4 <= b.len()) else {
            break;
        };
        if crc32fast::hash(&b[pos..end]) != u32_at(b, end) {
            break;
        }
        let Ok(name) = std::str::from_utf8(&b[pos + 4..end]) else {
            break;
        };
        roles.push(name.to_string());
        pos = end + 4;
    }
    (roles, pos as u64)
}

/// The synced counts (`index/synced`): records of the index, roles and origins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Synced {
    pub records: u64,
    pub roles: u64,
    pub origins: u64,
}

impl Synced {
    pub fn read(index_dir: &Path) -> Synced {
        let Ok(b) = std::fs::read(index_dir.join(SYNCED_FILE)) else {
            return Synced::default();
        };
        if b.len() != 28 || crc32fast::hash(&b[..24]) != u32_at(&b, 24) {
            return Synced::default();
        }
        Synced {
            records: u64_at(&b, 0),
            roles: u64_at(&b, 8),
            origins: u64_at(&b, 16),
        }
    }

    pub fn write(&self, index_dir: &Path) -> Result<()> {
        let path = index_dir.join(SYNCED_FILE);
        let mut b = Vec::with_capacity(28);
        b.extend_from_slice(&self.records.to_le_bytes());
        b.extend_from_slice(&self.roles.to_le_bytes());
        b.extend_from_slice(&self.origins.to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .at(&path)?;
        f.write_all_at(&b, 0).at(&path)?;
        f.sync_data().at(&path)
    }
}

/// Opens `path` for appending derived records, creating it.
pub(crate) fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .at(path)
}

/// The length of `path`, 0 when it does not exist.
pub(crate) fn file_len(path: &Path) -> Result<u64> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e).at(path),
    }
}

/// Cuts `path` to `len` bytes if it is longer (a missing file stays missing).
pub(crate) fn cut(path: &Path, len: u64) -> Result<()> {
    if file_len(path)? > len {
        let f = OpenOptions::new().write(true).open(path).at(path)?;
        f.set_len(len).at(path)?;
    }
    Ok(())
}

/// Cuts a table's groups file `path` to its records below `seq` (and before any damaged
/// one).
pub(crate) fn cut_table_groups(path: &Path, below: Seq) -> Result<()> {
    let Ok(b) = std::fs::read(path) else {
        return Ok(());
    };
    let mut keep = 0u64;
    for rec in b.chunks_exact(TABLE_RECORD_LEN as usize) {
        match decode_table_record(rec) {
            Some(s) if s < below => keep += TABLE_RECORD_LEN,
            _ => break,
        }
    }
    cut(path, keep)
}

/// Syncs `path` if it exists.
pub(crate) fn sync(path: &Path) -> Result<()> {
    match File::open(path) {
        Ok(f) => f.sync_data().at(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).at(path),
    }
}

/// Writes `bytes` at the end of `path` (creating it): for the roles and origins files.
pub(crate) fn append(path: &Path, at: u64, bytes: &[u8]) -> Result<()> {
    let mut f = open_rw(path)?;
    if f.metadata().at(path)?.len() > at {
        f.set_len(at).at(path)?;
    }
    f.write_all_at(bytes, at).at(path)?;
    f.flush().at(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_refuse_any_flipped_bit() {
        let r = IndexRecord {
            first_seq: 17,
            count: 3,
            commit_ts: -5,
            xid: 1 << 40,
            role: 9,
            imported: true,
            pos: FramePos {
                seg: 1,
                off: 4096,
                len: 77,
                crc: 0xdead_beef,
            },
        };
        let b = r.encode();
        assert_eq!(IndexRecord::decode(&b), Some(r));
        for bit in 0..b.len() * 8 {
            let mut bad = b;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(IndexRecord::decode(&bad), None, "bit {bit}");
        }
        let o = OriginRecord {
            first_seq: 5,
            last_seq: 9,
            table: 3,
            run_xid: 7,
            xid: 44,
            commit_ts: 123,
            role: 2,
        };
        assert_eq!(OriginRecord::decode(&o.encode()), Some(o));
        assert_eq!(decode_table_record(&encode_table_record(99)), Some(99));
        assert_eq!(decode_table_record(&[0u8; 16]), None);
        let mut roles = Vec::new();
        encode_role("alice", &mut roles);
        encode_role("", &mut roles);
        let whole = roles.len() as u64;
        roles.extend_from_slice(&[3, 0, 0]);
        assert_eq!(
            decode_roles(&roles),
            (vec!["alice".to_string(), String::new()], whole)
        );
    }
}
