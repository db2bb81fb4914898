//! What one table's files hold, measured rather than estimated: its committed events, its
//! live rows, the size of its log, its newest snapshot (with the raw and compressed sizes
//! its directory records) and its index definitions.

use std::collections::HashMap;
use std::fs;

use super::Store;
use crate::error::{Error, IoContext, Result};
use crate::format::Decoder;
use crate::log::list_segments;
use crate::table::{effect, list_snapshots, Effect};
use crate::types::{ColumnId, Fate, Fates, Op, Seq, TableId};

/// The newest snapshot of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotStats {
    pub seq: Seq,
    /// The file's size.
    pub file_bytes: u64,
    /// The blocks' sizes before and after compression (rows and indexes), from the
    /// snapshot's directory: `raw_bytes / compressed_bytes` is its compression ratio.
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
}

/// Events counted up to a seq, to continue counting from (see [`Store::table_stats`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventCount {
    /// The table's creation seq: a table created again under the same id starts over.
    pub created_seq: Seq,
    pub upto: Seq,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableStats {
    /// Events of committed groups at or below the seq asked for.
    pub events: EventCount,
    /// Rows in the table's state at that seq.
    pub live_rows: u64,
    /// Bytes of the table's log segments on disk (the shared journal not included).
    pub log_bytes: u64,
    pub segments: u64,
    pub snapshot: Option<SnapshotStats>,
    /// The indexed columns, ascending (their kinds: [`Store::indexes`]).
    pub indexes: Vec<ColumnId>,
}

impl Store {
    /// Measures table `id` as of `upto`, where every group at or below `upto` must be
    /// decided (so fates, and with them the counts, never change afterwards). Counting
    /// events reads the table's log; pass the previous result's `events` as `earlier` and
    /// only the groups after it are read.
    pub fn table_stats(
        &mut self,
        id: TableId,
        upto: Seq,
        fates: &dyn Fates,
        earlier: Option<EventCount>,
    ) -> Result<TableStats> {
        self.prepare_read(id, upto)?;
        let created_seq = self.tables[&id].meta.created_seq;
        let (after, before) = match earlier {
            Some(e) if e.created_seq == created_seq && e.upto <= upto => (e.upto, e.count),
            _ => (0, 0),
        };
        let events = before + self.count_events(id, after, upto, fates)?;
        let live_rows = self.count_rows(id, upto, fates)?;
        let dir = self.table_dir(id);
        let (mut log_bytes, mut segments) = (0, 0);
        for (_, path) in list_segments(&dir)? {
            match fs::metadata(&path) {
                Ok(m) => {
                    log_bytes += m.len();
                    segments += 1;
                }
                // Removed since the listing (the table was dropped): not there any more.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).at(&path),
            }
        }
        let mut snapshot = None;
        // Listed afresh: a snapshot another process wrote since this store last looked
        // counts too.
        for seq in list_snapshots(&dir)?.into_iter().rev() {
            match self.open_snapshot(id, seq) {
                Ok(s) => {
                    let (raw_bytes, compressed_bytes) = s.block_bytes();
                    snapshot = Some(SnapshotStats {
                        seq,
                        file_bytes: s.file_len(),
                        raw_bytes,
                        compressed_bytes,
                    });
                    break;
                }
                // Pruned by a newer snapshot meanwhile; that one is in a later listing,
                // and an older one still tells the truth about itself.
                Err(Error::IoAt { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let indexes = self.indexes(id)?.into_iter().map(|(c, _)| c).collect();
        Ok(TableStats {
            events: EventCount {
                created_seq,
                upto,
                count: events,
            },
            live_rows,
            log_bytes,
            segments,
            snapshot,
            indexes,
        })
    }

    /// About how many rows table `id` has now, for a planner: its newest snapshot's row
    /// count as estimated from a few of its blocks
    /// ([`crate::snapshot::Snapshot::estimate_row_count`])
    /// plus the keys inserted after it, minus those deleted, by each key's first and last
    /// event (transactions still running or aborted count as if committed). Cheap, never
    /// exact.
    pub fn estimate_rows(&mut self, id: TableId) -> Result<u64> {
        self.journal.refresh(None)?;
        let at = self.journal.last_seq();
        self.refresh_table(id, at)?;
        let parts = self.view_parts(id, at)?;
        let mut rows = match &parts.snap {
            Some(s) => s.estimate_row_count()? as i64,
            None => 0,
        };
        for versions in self.tables[&id].delta.keys.values() {
            let (Some(first), Some(last)) = (versions.first(), versions.last()) else {
                continue;
            };
            match (&first.op, &last.op) {
                (Op::Insert(_), Op::SoftDelete) => {}
                (Op::Insert(_), _) => rows += 1,
                (_, Op::SoftDelete) => rows -= 1,
                _ => {}
            }
        }
        Ok(rows.max(0) as u64)
    }

    /// `(bytes, segments)` of the journal's segment files on disk.
    pub fn journal_files(&mut self) -> Result<(u64, u64)> {
        let (mut bytes, mut segments) = (0, 0);
        for (_, path) in list_segments(&self.root.join("journal"))? {
            bytes += fs::metadata(&path).at(&path)?.len();
            segments += 1;
        }
        Ok((bytes, segments))
    }

    /// Events of table `id` in committed groups with seqs in `(after, upto]`. Only the
    /// head of each frame is decoded, except for a group reaching past `upto`.
    fn count_events(
        &mut self,
        id: TableId,
        after: Seq,
        upto: Seq,
        fates: &dyn Fates,
    ) -> Result<u64> {
        let floor = self.group_floor(after)?;
        let journal = &self.journal;
        let t = self.tables.get_mut(&id).expect("prepared");
        let groups = journal.groups_of(id, t.meta.created_seq.max(floor))?;
        let mut decided: HashMap<u64, Fate> = HashMap::new();
        let mut n = 0u64;
        t.log.for_each_payload(floor, upto, &groups, |p| {
            let mut d = Decoder::new(p);
            let group = d.varint()?;
            let xid = d.varint()?;
            let count = d.varint()?;
            if *decided.entry(xid).or_insert_with(|| fates.fate(xid)) != Fate::Committed {
                return Ok(());
            }
            let whole = group > after
                && journal
                    .group_of(group)
                    .map_err(|_| "the journal's index could not be read for this frame")?
                    .is_some_and(|g| g.last_seq() <= upto);
            if whole {
                n += count;
            } else {
                let f = crate::format::TableFrame::decode(p)?;
                n += f
                    .events
                    .iter()
                    .filter(|e| e.0 > after && e.0 <= upto)
                    .count() as u64;
            }
            Ok(())
        })?;
        Ok(n)
    }

    /// Rows in table `id` at `at`: the base snapshot's rows (counted once per snapshot),
    /// corrected by every key the events after it changed.
    fn count_rows(&mut self, id: TableId, at: Seq, fates: &dyn Fates) -> Result<u64> {
        let parts = self.view_parts(id, at)?;
        let view = self.view(id, &parts, at, fates);
        let mut rows = match &view.snap {
            Some(s) => s.row_count()?,
            None => 0,
        };
        for (key, versions) in &view.delta.keys {
            let Some(e) = effect(versions, at, fates) else {
                continue;
            };
            let before = match &view.snap {
                Some(s) => s.contains(key)?,
                None => false,
            };
            let now = match e {
                Effect::Known(r) => r.is_some(),
                Effect::OnBase(_) => before,
            };
            match (before, now) {
                (false, true) => rows += 1,
                (true, false) => rows -= 1,
                _ => {}
            }
        }
        Ok(rows)
    }
}
