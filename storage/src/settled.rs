//! Fates the store records itself, so that reading old groups never needs the caller's
//! commit log (which Postgres truncates once every table is frozen past it).
//!
//! `<root>/fates.log` is a sequence of frames (`len | !len | crc32 | payload`, as in the
//! logs, from offset 0), each saying: every transaction whose full xid is below `below` has
//! ended, and these of them that appended a group aborted (all others committed):
//!
//! ```text
//! payload = varint below | varint n | n x varint aborted_xid   (below strictly increasing)
//! ```
//!
//! A torn last frame is ignored by readers and cut by the next settling writer. Once the
//! file has grown past `Config::fates_compact_bytes`, the settling writer replaces it
//! (atomically, by a rename) with one frame holding the newest `below` and every aborted xid:
//! the same fates, in a file whose size does not grow with the number of settlements.
//! Readers notice the new file by its first frame's `below` (every compaction writes a
//! larger one than any frame before it; inode numbers are reused) and read it from the
//! start.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::format::{
    begin_frame, finish_frame, put_varint, read_frame, Decoder, FrameRead, FRAME_HEADER_LEN,
};
use crate::types::Fate;

/// The record of settled fates, relative to the store's root.
pub const FATES_FILE: &str = "fates.log";

/// The recorded fates: every xid below `below` has ended; those in `aborted` aborted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettledFates {
    pub below: u64,
    pub aborted: BTreeSet<u64>,
}

impl SettledFates {
    /// The recorded fate of `xid`, if it is settled.
    pub fn fate(&self, xid: u64) -> Option<Fate> {
        (xid < self.below).then(|| {
            if self.aborted.contains(&xid) {
                Fate::Aborted
            } else {
                Fate::Committed
            }
        })
    }
}

/// A reader of the fates file that follows its growth.
pub(crate) struct FatesLog {
    path: PathBuf,
    /// Bytes read so far (the end of the last whole frame).
    pub off: u64,
    pub settled: std::sync::Arc<SettledFates>,
    /// A torn tail seen at `off` (only a writer cuts it).
    pub torn: bool,
    /// The `below` of the first frame of the file `off` is an offset in (once a frame was
    /// read): a writer that compacted the record replaced the file, which is then read from
    /// its start.
    first_below: Option<u64>,
}

pub(crate) fn encode_settlement<'a>(
    below: u64,
    aborted: impl ExactSizeIterator<Item = &'a u64>,
) -> Vec<u8> {
    let mut buf = Vec::new();
    let start = begin_frame(&mut buf);
    put_varint(&mut buf, below);
    put_varint(&mut buf, aborted.len() as u64);
    for x in aborted {
        put_varint(&mut buf, *x);
    }
    finish_frame(&mut buf, start);
    buf
}

/// The `below` of the file's first frame, as far as its first bytes say (`None` when they
/// do not hold it whole; the frame's CRC is checked when the frame is read).
fn first_below(file: &File) -> std::io::Result<Option<u64>> {
    let mut head = [0u8; FRAME_HEADER_LEN + 10];
    let mut got = 0;
    while got < head.len() {
        match file.read_at(&mut head[got..], got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    if got <= FRAME_HEADER_LEN {
        return Ok(None);
    }
    Ok(Decoder::new(&head[FRAME_HEADER_LEN..got]).varint().ok())
}

impl FatesLog {
    pub fn new(root: &Path) -> FatesLog {
        FatesLog {
            path: root.join(FATES_FILE),
            off: 0,
            settled: Default::default(),
            torn: false,
            first_below: None,
        }
    }

    /// Whether the record should be rewritten as one frame (see the module's comment)
    /// rather than grow by another one of `next_len` bytes.
    pub fn should_compact(&self, next_len: u64, compact_bytes: u64) -> bool {
        let end = self.off + next_len;
        // A frame: 12 bytes of header, two varints and at most 10 bytes per aborted xid.
        let one_frame = 32 + 10 * self.settled.aborted.len() as u64;
        end > compact_bytes && end > 4 * one_frame
    }

    /// Reads frames appended since the last call.
    pub fn refresh(&mut self) -> Result<()> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).at(&self.path),
        };
        let len = file.metadata().at(&self.path)?.len();
        if let Some(known) = self.first_below {
            if len < self.off || first_below(&file).at(&self.path)? != Some(known) {
                // Replaced by a compaction: the new file holds every fate the old one did.
                self.off = 0;
                self.torn = false;
                self.first_below = None;
                self.settled = Default::default();
            }
        }
        if len <= self.off {
            return Ok(());
        }
        let mut data = vec![0u8; (len - self.off) as usize];
        file.read_exact_at(&mut data, self.off).at(&self.path)?;
        let mut pos = 0;
        let mut next = (*self.settled).clone();
        self.torn = false;
        loop {
            match read_frame(&data, pos) {
                FrameRead::End => break,
                FrameRead::Torn(_) => {
                    self.torn = true;
                    break;
                }
                FrameRead::Bad(d) => {
                    return Err(Error::corruption(&self.path, self.off + pos as u64, d))
                }
                FrameRead::Frame { payload, next: n } => {
                    let at = self.off + pos as u64;
                    let bad = |d: &str| Error::corruption(&self.path, at, d.to_string());
                    let mut d = Decoder::new(payload);
                    let below = d.varint().map_err(bad)?;
                    if below <= next.below {
                        return Err(bad("settled xid does not increase"));
                    }
                    let count = d.count(1).map_err(bad)?;
                    for _ in 0..count {
                        next.aborted.insert(d.varint().map_err(bad)?);
                    }
                    if !d.is_empty() {
                        return Err(bad("trailing bytes in a fates frame"));
                    }
                    next.below = below;
                    if self.off == 0 && pos == 0 {
                        self.first_below = Some(below);
                    }
                    pos = n;
                }
            }
        }
        self.off += pos as u64;
        if *self.settled != next {
            self.settled = std::sync::Arc::new(next);
        }
        Ok(())
    }
}
