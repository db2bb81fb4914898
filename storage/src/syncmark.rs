//! The sync mark: where the journal ended when DriftDB's logs were last made durable by a
//! sync round, while commits write the logs without syncing them (#19, "Commits without
//! syncs" in `docs/design.md`).
//!
//! A guarded commit writes its WAL records and its frames (to the page cache) and syncs
//! nothing: Postgres' commit record flushes the records, and a sync round, run before
//! every checkpoint completes, makes the frames durable before the checkpoint's redo point
//! can pass their records. Frames may then reach the disk before their records (nothing
//! flushes the records first): after a crash, the journal can hold groups whose records
//! were lost, under xids the restarted server hands out again. The mark says where the
//! journal ended at the last round (everything before is durable and its records were
//! flushed): recovery cuts the journal back to it before anything reads it, and redo then
//! writes again every group whose records survived. Frames of table logs past the journal
//! are cut by the recovering open, as after any crash.
//!
//! The file, `sync.mark` in the store's root, is written whole (`sync.mark.tmp`,
//! fdatasync, rename, directory fsync) and not WAL-logged:
//!
//! ```text
//! b"DDSM" | u8 version (1) | u64 segment | u64 len | u32 crc32 of the bytes before
//! ```
//!
//! (integers little-endian): the journal's last segment (its first seq) and its length.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::log::list_segments;
use crate::types::Seq;

/// The mark's file name, in the store's root.
pub const SYNC_MARK_FILE: &str = "sync.mark";
const MAGIC: &[u8; 4] = b"DDSM";
const VERSION: u8 = 1;
const LEN: usize = 4 + 1 + 8 + 8 + 4;

/// Where the journal ended: its last segment (by first seq; 0 with no segment) and that
/// segment's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncMark {
    pub segment: Seq,
    pub len: u64,
}

impl SyncMark {
    fn encode(&self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[..4].copy_from_slice(MAGIC);
        out[4] = VERSION;
        out[5..13].copy_from_slice(&self.segment.to_le_bytes());
        out[13..21].copy_from_slice(&self.len.to_le_bytes());
        let crc = crc32fast::hash(&out[..21]);
        out[21..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> std::result::Result<SyncMark, String> {
        if bytes.len() != LEN {
            return Err(format!("{} bytes, expected {LEN}", bytes.len()));
        }
        if &bytes[..4] != MAGIC {
            return Err("not a sync mark (bad magic)".into());
        }
        let crc = u32::from_le_bytes(bytes[21..].try_into().expect("4 bytes"));
        if crc != crc32fast::hash(&bytes[..21]) {
            return Err("checksum mismatch".into());
        }
        if bytes[4] != VERSION {
            return Err(format!("unknown version {}", bytes[4]));
        }
        Ok(SyncMark {
            segment: u64::from_le_bytes(bytes[5..13].try_into().expect("8 bytes")),
            len: u64::from_le_bytes(bytes[13..21].try_into().expect("8 bytes")),
        })
    }
}

fn journal_dir(root: &Path) -> PathBuf {
    root.join("journal")
}

/// Where the journal ends now, by its files: the caller holds off every append (in
/// Postgres, the append lock), so the last segment holds only whole frames.
pub fn journal_end(root: &Path) -> Result<SyncMark> {
    match list_segments(&journal_dir(root))?.pop() {
        None => Ok(SyncMark { segment: 0, len: 0 }),
        Some((segment, path)) => Ok(SyncMark {
            segment,
            len: fs::metadata(&path).at(&path)?.len(),
        }),
    }
}

/// The mark, if there is one. A damaged mark is an error naming the file.
pub fn read(root: &Path) -> Result<Option<SyncMark>> {
    let path = root.join(SYNC_MARK_FILE);
    match fs::read(&path) {
        Ok(bytes) => SyncMark::decode(&bytes)
            .map(Some)
            .map_err(|d| Error::corruption(&path, 0, d)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).at(&path),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Writes the mark durably.
pub fn write(root: &Path, mark: SyncMark) -> Result<()> {
    crate::fileops::write_file_durably(&root.join(SYNC_MARK_FILE), &mark.encode())
}

/// Removes the mark durably (nothing to remove is fine).
pub fn remove(root: &Path) -> Result<()> {
    let path = root.join(SYNC_MARK_FILE);
    match fs::remove_file(&path) {
        Ok(()) => sync_dir(root),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).at(&path),
    }
}

/// Cuts the journal back to the mark, if there is one, and removes the mark: segments
/// after the mark's are removed, the mark's is cut to its length. Returns the bytes cut.
/// A journal shorter than the mark lost bytes that were synced: reported as damage.
pub fn settle(root: &Path) -> Result<u64> {
    let Some(mark) = read(root)? else {
        return Ok(0);
    };
    let dir = journal_dir(root);
    let mut cut = 0u64;
    let mut removed = false;
    let segments = list_segments(&dir)?;
    if mark.segment != 0 && !segments.iter().any(|(s, _)| *s == mark.segment) {
        let path = dir.join(crate::log::segment_file_name(mark.segment));
        return Err(Error::corruption(
            &path,
            0,
            format!(
                "the journal segment where the last sync round left the journal is missing ({})",
                root.join(SYNC_MARK_FILE).display()
            ),
        ));
    }
    for (segment, path) in segments {
        let len = fs::metadata(&path).at(&path)?.len();
        if segment > mark.segment {
            fs::remove_file(&path).at(&path)?;
            cut += len;
            removed = true;
        } else if segment == mark.segment {
            if len < mark.len {
                return Err(Error::corruption(
                    &path,
                    len,
                    format!(
                        "the journal segment ends at {len}, before {} where the last sync \
                         round left it ({})",
                        mark.len,
                        root.join(SYNC_MARK_FILE).display()
                    ),
                ));
            }
            if len > mark.len {
                let f = OpenOptions::new().write(true).open(&path).at(&path)?;
                f.set_len(mark.len).at(&path)?;
                f.sync_data().at(&path)?;
                cut += len - mark.len;
            }
        }
    }
    if removed {
        sync_dir(&dir)?;
    }
    remove(root)?;
    Ok(cut)
}

/// The last segment of each log seen by the previous sync round (the journal's and every
/// table's), so that a round syncs only what appends can have written since: the last
/// segment it saw and any created after it.
#[derive(Default)]
pub struct SyncRounds {
    last: HashMap<PathBuf, Seq>,
}

impl SyncRounds {
    /// Makes every log segment written since the previous round durable (every segment, the
    /// first time), and the directories of segments created since. Returns the files and
    /// directories synced.
    pub fn sync_logs(&mut self, root: &Path) -> Result<u64> {
        let mut dirs = vec![journal_dir(root)];
        let tables = root.join("tables");
        match fs::read_dir(&tables) {
            Ok(entries) => {
                for e in entries {
                    let e = e.at(&tables)?;
                    let name = e.file_name();
                    // Table directories are named by their id; anything else (a table
                    // being created) is written and synced whole by its own batch.
                    if name
                        .to_str()
                        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                    {
                        dirs.push(e.path());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(&tables),
        }
        let mut synced = 0u64;
        let mut next = HashMap::with_capacity(dirs.len());
        for dir in dirs {
            let segments = list_segments(&dir)?;
            let Some(&(newest, _)) = segments.last() else {
                continue;
            };
            let from = self.last.get(&dir).copied();
            for (segment, path) in &segments {
                if from.is_some_and(|f| *segment < f) {
                    continue;
                }
                match File::open(path) {
                    Ok(f) => f.sync_data().at(path)?,
                    // Removed meanwhile (a dropped table): nothing left to make durable.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e).at(path),
                }
                synced += 1;
            }
            if from != Some(newest) {
                match File::open(&dir) {
                    Ok(d) => d.sync_all().at(&dir)?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e).at(&dir),
                }
                synced += 1;
            }
            next.insert(dir, newest);
        }
        self.last = next;
        Ok(synced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(dir: &Path, first: Seq, len: usize) -> PathBuf {
        fs::create_dir_all(dir).unwrap();
        let p = dir.join(crate::log::segment_file_name(first));
        fs::write(&p, vec![7u8; len]).unwrap();
        p
    }

    #[test]
    fn a_mark_round_trips_and_damage_is_reported_with_the_file() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(read(root.path()).unwrap(), None);
        let mark = SyncMark {
            segment: 41,
            len: 1234,
        };
        write(root.path(), mark).unwrap();
        assert_eq!(read(root.path()).unwrap(), Some(mark));
        let path = root.path().join(SYNC_MARK_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[14] ^= 1;
        fs::write(&path, &bytes).unwrap();
        match read(root.path()) {
            Err(Error::Corruption { file, detail, .. }) => {
                assert_eq!(file, path);
                assert!(detail.contains("checksum"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        remove(root.path()).unwrap();
        remove(root.path()).unwrap();
        assert_eq!(read(root.path()).unwrap(), None);
    }

    #[test]
    fn settling_cuts_the_journal_back_to_the_mark_and_removes_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("journal");
        let first = segment(&dir, 1, 500);
        write(root.path(), journal_end(root.path()).unwrap()).unwrap();
        // Appends after the round: the segment grows, a new one starts.
        fs::write(&first, vec![7u8; 800]).unwrap();
        let second = segment(&dir, 90, 300);
        assert_eq!(settle(root.path()).unwrap(), 300 + 300);
        assert_eq!(fs::metadata(&first).unwrap().len(), 500);
        assert!(!second.exists());
        assert_eq!(read(root.path()).unwrap(), None);
        // Without a mark nothing is cut.
        fs::write(&first, vec![7u8; 800]).unwrap();
        assert_eq!(settle(root.path()).unwrap(), 0);
        assert_eq!(fs::metadata(&first).unwrap().len(), 800);

        // A mark taken before the journal existed cuts all of it.
        let empty = tempfile::tempdir().unwrap();
        write(empty.path(), journal_end(empty.path()).unwrap()).unwrap();
        let only = segment(&empty.path().join("journal"), 1, 100);
        assert_eq!(settle(empty.path()).unwrap(), 100);
        assert!(!only.exists());
    }

    #[test]
    fn a_journal_shorter_than_its_mark_is_damage() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("journal");
        let first = segment(&dir, 1, 500);
        write(root.path(), journal_end(root.path()).unwrap()).unwrap();
        fs::write(&first, vec![7u8; 200]).unwrap();
        match settle(root.path()) {
            Err(Error::Corruption { file, offset, .. }) => {
                assert_eq!(file, first);
                assert_eq!(offset, 200);
            }
            other => panic!("{other:?}"),
        }
        // The mark stays, for the next attempt to report again.
        assert!(read(root.path()).unwrap().is_some());
        fs::remove_file(&first).unwrap();
        match settle(root.path()) {
            Err(Error::Corruption { file, detail, .. }) => {
                assert_eq!(file, first);
                assert!(detail.contains("missing"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_round_syncs_the_last_segment_it_saw_and_newer_ones() {
        let root = tempfile::tempdir().unwrap();
        segment(&root.path().join("journal"), 1, 10);
        let t = root.path().join("tables").join("7");
        segment(&t, 1, 10);
        segment(&t, 50, 10);
        // Not a table directory: a table being created.
        segment(&root.path().join("tables").join(".tmp-9"), 1, 10);
        let mut rounds = SyncRounds::default();
        // First round: every segment (3) and both directories.
        assert_eq!(rounds.sync_logs(root.path()).unwrap(), 3 + 2);
        // Nothing new: the last segment of each log, no directory.
        assert_eq!(rounds.sync_logs(root.path()).unwrap(), 2);
        // A new segment: it and the one before, and its directory.
        segment(&t, 80, 10);
        assert_eq!(rounds.sync_logs(root.path()).unwrap(), 1 + 2 + 1);
        // A dropped table is forgotten.
        fs::remove_dir_all(&t).unwrap();
        assert_eq!(rounds.sync_logs(root.path()).unwrap(), 1);
    }
}
