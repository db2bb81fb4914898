//! The leaf sections of a dropped table, kept in the ledger's directory when its files are
//! removed, so that every group of the table can still be made a leaf, checked against a
//! digest and proven (`Store::keep_table_sections`, `docs/ledger.md`, "Dropped tables").
//!
//! One file per table incarnation, `<root>/ledger/kept-<table id>-<created seq>`, written
//! whole (to `<name>.tmp`, fdatasynced, renamed, the directory fsynced), never changed:
//!
//! ```text
//! header   magic "DRIFTLKT" | u16 version (1) | u16 0 | u32 crc32(bytes 0..12)    16 bytes
//! frames   len | !len | crc32 | payload, the logs' frames, one per group of the table
//!          (ascending first seq): payload = varint first_seq | the table's leaf section
//! ```
//!
//! A section holds what the leaf holds of the table's events: keys, ops, column ids and
//! the commitments (SHA-256) of the values, never the values.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::format::{
    begin_frame, finish_frame, put_varint, read_frame, DecodeResult, Decoder, FrameRead,
};
use crate::types::{Seq, TableId};

pub const KEPT_MAGIC: [u8; 8] = *b"DRIFTLKT";
pub const KEPT_VERSION: u16 = 1;
const HEADER_LEN: usize = 16;
/// Bytes gathered before they are written.
const FLUSH_AT: usize = 1 << 20;

fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&KEPT_MAGIC);
    h[8..10].copy_from_slice(&KEPT_VERSION.to_le_bytes());
    let crc = crc32fast::hash(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The file of table `table` created at seq `created`.
pub fn kept_path(dir: &Path, table: TableId, created: Seq) -> PathBuf {
    dir.join(format!("kept-{table}-{created}"))
}

/// Writes a kept-sections file, group by group.
pub struct KeptWriter {
    path: PathBuf,
    tmp: PathBuf,
    file: File,
    buf: Vec<u8>,
    at: u64,
    last: Option<Seq>,
}

impl KeptWriter {
    pub fn create(dir: &Path, table: TableId, created: Seq) -> Result<KeptWriter> {
        fs::create_dir_all(dir).at(dir)?;
        let path = kept_path(dir, table, created);
        let tmp = path.with_extension("tmp");
        let file = File::create(&tmp).at(&tmp)?;
        Ok(KeptWriter {
            path,
            tmp,
            file,
            buf: header().to_vec(),
            at: 0,
            last: None,
        })
    }

    /// Adds the section of the group starting at `first_seq`, written by `put`.
    pub fn push(
        &mut self,
        first_seq: Seq,
        put: impl FnOnce(&mut Vec<u8>) -> DecodeResult<()>,
    ) -> DecodeResult<()> {
        if self.last.is_some_and(|l| l >= first_seq) {
            return Err("kept sections out of seq order");
        }
        self.last = Some(first_seq);
        let start = begin_frame(&mut self.buf);
        put_varint(&mut self.buf, first_seq);
        put(&mut self.buf)?;
        finish_frame(&mut self.buf, start);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.file.write_all_at(&self.buf, self.at).at(&self.tmp)?;
        self.at += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Writes what is gathered once it is large.
    pub fn maybe_flush(&mut self) -> Result<()> {
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// Makes the file durable under its name.
    pub fn finish(mut self) -> Result<PathBuf> {
        self.flush()?;
        self.file.sync_data().at(&self.tmp)?;
        fs::rename(&self.tmp, &self.path).at(&self.path)?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        File::open(dir).and_then(|d| d.sync_all()).at(dir)?;
        Ok(self.path)
    }
}

/// The kept sections of table `table` (of every incarnation of its id), by first seq.
pub fn load(dir: &Path, table: TableId) -> Result<BTreeMap<Seq, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let prefix = format!("kept-{table}-");
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).at(dir),
    };
    for e in entries {
        let e = e.at(dir)?;
        let name = e.file_name();
        let Some(created) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|c| c.parse::<Seq>().ok())
        else {
            continue;
        };
        let path = e.path();
        let bytes = fs::read(&path).at(&path)?;
        let bad = |offset: usize, detail: &str| Error::corruption(&path, offset as u64, detail);
        if bytes.get(..HEADER_LEN) != Some(&header()[..]) {
            return Err(bad(0, "not a kept-sections file of this version (header)"));
        }
        let mut pos = HEADER_LEN;
        loop {
            match read_frame(&bytes, pos) {
                FrameRead::End => break,
                FrameRead::Frame { payload, next } => {
                    let mut d = Decoder::new(payload);
                    let first = d.varint().map_err(|e| bad(pos, e))?;
                    if first <= created {
                        return Err(bad(pos, "a group before the table was created"));
                    }
                    out.insert(first, payload[d.pos()..].to_vec());
                    pos = next;
                }
                // Written whole and renamed into place: a torn tail is damage here.
                FrameRead::Torn(why) | FrameRead::Bad(why) => return Err(bad(pos, why)),
            }
        }
    }
    Ok(out)
}
