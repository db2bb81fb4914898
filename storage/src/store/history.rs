//! One key's history, and the record each snapshot keeps of where every key's events are
//! in the table's log (its key history section), which lets that history read only the
//! frames holding the key plus the log after the newest snapshot.

use std::collections::{btree_map, BTreeMap};
use std::iter::Peekable;
use std::sync::Arc;

use super::Store;
use crate::error::{Error, Result};
use crate::format::{frame_keys, key_events, key_events_at, FramePositions, POSITIONS_FROM};
use crate::journal::Journal;
use crate::snapshot::Snapshot;
use crate::types::{Fate, Fates, HistoryEntry, Op, Seq, TableId};

/// The commit time, xid and role history shows for group `group_seq` committed by `xid`:
/// an imported group shows where it came from (its own xid only decides its fate), any
/// other group itself (`None`: the journal has no such group).
pub(super) fn shown_as(
    journal: &Journal,
    group_seq: Seq,
    xid: u64,
) -> Result<Option<(i64, u64, String)>> {
    let Some(group) = journal.group_of(group_seq)? else {
        return Ok(None);
    };
    Ok(Some(match journal.origin(&group)? {
        Some(o) => (o.commit_ts, o.xid, o.role),
        None => (group.commit_ts, xid, journal.role(&group).to_owned()),
    }))
}

/// Adds one frame's events of `key` (those `keep` accepts) to `out`, when the frame's
/// transaction committed.
fn add_entries(
    journal: &Journal,
    fates: &dyn Fates,
    key: &[u8],
    (group_seq, xid, events): (Seq, u64, Vec<(Seq, Op)>),
    keep: impl Fn(Seq) -> bool,
    out: &mut Vec<HistoryEntry>,
) -> crate::format::DecodeResult<()> {
    if events.is_empty() || fates.fate(xid) != Fate::Committed {
        return Ok(());
    }
    let (commit_ts, xid, role) = shown_as(journal, group_seq, xid)
        .map_err(|_| "the journal's index could not be read for this frame")?
        .ok_or("the journal has no group for this frame")?;
    out.extend(
        events
            .into_iter()
            .filter(|(seq, _)| keep(*seq))
            .map(|(seq, op)| HistoryEntry {
                seq,
                commit_ts,
                xid,
                role: role.clone(),
                key: key.to_vec(),
                op,
            }),
    );
    Ok(())
}

impl Store {
    /// Every visible event of one key up to `upto`, oldest first.
    ///
    /// With a snapshot that has a key history section (every snapshot written since the
    /// section exists), this reads the frames the newest snapshot names for the key and the
    /// log after that snapshot: its cost grows with the key's events and the distance from
    /// the newest snapshot, not with the table's history. Without one, it reads the table's
    /// whole log, decoding only that key's events.
    pub fn history(
        &mut self,
        id: TableId,
        key: &[u8],
        upto: Seq,
        fates: &dyn Fates,
    ) -> Result<Vec<HistoryEntry>> {
        self.prepare_read(id, upto)?;
        let newest = self.tables[&id].snapshots.last().copied();
        let snap = self.history_snapshot(id, newest)?;
        let found = match &snap {
            Some(s) => s.key_history(key)?,
            None => None,
        };
        let (Some(snap), Some(positions)) = (snap, found) else {
            let created = self.tables[&id].meta.created_seq;
            let groups = self.journal.groups_of(id, created)?;
            let read = groups.partition_point(|g| *g <= upto) as u64;
            let out = self
                .history_iter(id, Some(key.to_vec()), upto, fates)?
                .collect::<Result<Vec<_>>>()?;
            self.stats.history_frames += read;
            return Ok(out);
        };
        let limit = snap.seq.min(upto);
        let mut out = Vec::new();
        let journal = &self.journal;
        let t = self.tables.get_mut(&id).expect("loaded");
        for (group, offset, at) in positions {
            // Groups increase: once one starts past the limit, so do the rest.
            if group > limit {
                break;
            }
            t.log.with_frame_at(group, offset, |p| {
                // A large frame's events of the key are decoded where the section says they
                // start, the rest of it unread (its CRC is still checked).
                let events = if at.is_empty() {
                    key_events(p, key)?
                } else {
                    key_events_at(p, key, &at)?
                };
                add_entries(journal, fates, key, events, |s| s <= limit, &mut out)
            })?;
            self.stats.history_frames += 1;
        }
        if upto > snap.seq {
            let floor = self.group_floor(snap.seq)?;
            let journal = &self.journal;
            let t = self.tables.get_mut(&id).expect("loaded");
            let groups = journal.groups_of(id, t.meta.created_seq.max(floor))?;
            let mut read = 0;
            t.log.for_each_payload(floor, upto, &groups, |p| {
                read += 1;
                let events = key_events(p, key)?;
                add_entries(
                    journal,
                    fates,
                    key,
                    events,
                    |s| s > snap.seq && s <= upto,
                    &mut out,
                )
            })?;
            self.stats.history_frames += read;
        }
        Ok(out)
    }

    /// Table `id`'s snapshot at `seq` (as listed), when it has a key history section. One
    /// another store pruned since it was listed counts as none: the log still answers.
    fn history_snapshot(&mut self, id: TableId, seq: Option<Seq>) -> Result<Option<Arc<Snapshot>>> {
        let Some(seq) = seq else {
            return Ok(None);
        };
        match self.open_snapshot(id, seq) {
            Ok(s) => Ok(s.has_history().then_some(s)),
            Err(Error::IoAt { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The key history section of a snapshot of table `id` at `upto`, by key: the section of
    /// the newest snapshot at or below `upto` with the frames after it merged in, or every
    /// frame of the log when that snapshot has no section (or there is none).
    pub(super) fn history_section(&mut self, id: TableId, upto: Seq) -> Result<HistoryMerge> {
        let older = self.tables[&id]
            .snapshots
            .iter()
            .rev()
            .find(|s| **s <= upto)
            .copied();
        let base = self.history_snapshot(id, older)?;
        let after = base.as_ref().map_or(0, |b| b.seq);
        let floor = self.group_floor(after)?;
        let t = self.tables.get_mut(&id).expect("loaded");
        let groups = self.journal.groups_of(id, t.meta.created_seq.max(floor))?;
        let mut delta: BTreeMap<Vec<u8>, FramePositions> = BTreeMap::new();
        t.log
            .for_each_payload_at(floor, upto, &groups, |p, offset| {
                let large = p.len() > POSITIONS_FROM;
                let (group, events) = frame_keys(p)?;
                for (seq, key, at) in events {
                    if seq <= after || seq > upto {
                        continue;
                    }
                    let at = if large { vec![at] } else { Vec::new() };
                    match delta.get_mut(key) {
                        Some(frames) => match frames.last_mut() {
                            Some(f) if f.0 == group => f.2.extend(at),
                            _ => frames.push((group, offset, at)),
                        },
                        None => {
                            delta.insert(key.to_vec(), vec![(group, offset, at)]);
                        }
                    }
                }
                Ok(())
            })?;
        Ok(HistoryMerge::new(base, delta))
    }
}

/// The records of a key history section, by key: a base snapshot's section merged with the
/// frames after it.
pub(crate) struct HistoryMerge {
    base: Option<Arc<Snapshot>>,
    next_block: usize,
    block: Peekable<std::vec::IntoIter<(Vec<u8>, FramePositions)>>,
    delta: Peekable<btree_map::IntoIter<Vec<u8>, FramePositions>>,
}

impl HistoryMerge {
    /// `base`'s key history section (none: nothing) merged with `delta`, the frames after
    /// it.
    pub(crate) fn new(
        base: Option<Arc<Snapshot>>,
        delta: BTreeMap<Vec<u8>, FramePositions>,
    ) -> HistoryMerge {
        HistoryMerge {
            base,
            next_block: 0,
            block: Vec::new().into_iter().peekable(),
            delta: delta.into_iter().peekable(),
        }
    }

    /// The base section's next record, reading its next block when needed.
    fn peek_base(&mut self) -> Result<Option<&(Vec<u8>, FramePositions)>> {
        while self.block.peek().is_none() {
            let Some(base) = &self.base else {
                return Ok(None);
            };
            if self.next_block >= base.history_blocks() {
                return Ok(None);
            }
            let (_, _, records) = base.history_block(self.next_block)?;
            self.next_block += 1;
            self.block = records.into_iter().peekable();
        }
        Ok(self.block.peek())
    }
}

impl Iterator for HistoryMerge {
    type Item = Result<(Vec<u8>, FramePositions)>;

    fn next(&mut self) -> Option<Self::Item> {
        let base_key = match self.peek_base() {
            Ok(r) => r.map(|(k, _)| k.clone()),
            Err(e) => return Some(Err(e)),
        };
        let order = match (&base_key, self.delta.peek()) {
            (None, None) => return None,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(b), Some((d, _))) => b.cmp(d),
        };
        Some(Ok(match order {
            std::cmp::Ordering::Less => self.block.next().expect("peeked"),
            std::cmp::Ordering::Greater => self.delta.next().expect("peeked"),
            std::cmp::Ordering::Equal => {
                let (key, mut frames) = self.block.next().expect("peeked");
                let (_, more) = self.delta.next().expect("peeked");
                let mut more = more.into_iter().peekable();
                // A group holding the base's seq may have events of the key on both sides:
                // one frame, with the positions of both (none on either side: read it whole).
                // Sorted and deduplicated: verify's frames after the base repeat the base's
                // positions in such a frame.
                if let Some(last) = frames.last_mut() {
                    if let Some((_, _, at)) = more.next_if(|f| f.0 == last.0) {
                        last.2 = if last.2.is_empty() || at.is_empty() {
                            Vec::new()
                        } else {
                            let mut both: Vec<u32> = last.2.iter().chain(&at).copied().collect();
                            both.sort_unstable();
                            both.dedup();
                            both
                        };
                    }
                }
                frames.extend(more);
                (key, frames)
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::SEGMENT_HEADER_LEN;
    use crate::snapshot::snapshot_bytes;
    use crate::table::snapshot_file_name;
    use crate::types::{AllCommitted, Event, Row, Txn};
    use crate::{Config, Durability};

    const T: TableId = 1;

    fn open(dir: &std::path::Path) -> Store {
        let config = Config {
            durability: Durability::NoSync,
            ..Config::default()
        };
        Store::open(dir, config).unwrap()
    }

    fn key(i: u64) -> Vec<u8> {
        format!("key-{i:03}").into_bytes()
    }

    fn txn(xid: u64, events: Vec<(Vec<u8>, Op)>) -> Txn {
        Txn {
            xid,
            commit_ts: 0,
            role: "r".into(),
            events: events
                .into_iter()
                .map(|(key, op)| Event { table: T, key, op })
                .collect(),
        }
    }

    fn patch(v: u64) -> Op {
        Op::Patch(vec![(2, Some(v.to_be_bytes().to_vec()))])
    }

    /// 50 keys inserted by one transaction, then patched one transaction per key, 4 times:
    /// 201 frames. Returns the last seq.
    fn fill(s: &mut Store) -> Seq {
        s.create_table(T).unwrap();
        let rows = (0..50)
            .map(|i| {
                (
                    key(i),
                    Op::Insert(Row::from_pairs([(1, Some(vec![i as u8]))])),
                )
            })
            .collect();
        s.append(&[txn(1, rows)], &AllCommitted).unwrap();
        let patches: Vec<Txn> = (0..200)
            .map(|n| txn(2 + n, vec![(key(n % 50), patch(n))]))
            .collect();
        s.append(&patches, &AllCommitted).unwrap();
        s.current_seq().unwrap()
    }

    /// One key's events as the whole table's history gives them.
    fn from_table_history(s: &mut Store, k: &[u8], upto: Seq) -> Vec<HistoryEntry> {
        s.table_history(T, upto, &AllCommitted)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.key == k)
            .collect()
    }

    fn history_counting(s: &mut Store, k: &[u8], upto: Seq) -> (Vec<HistoryEntry>, u64) {
        let before = s.stats().history_frames;
        let h = s.history(T, k, upto, &AllCommitted).unwrap();
        (h, s.stats().history_frames - before)
    }

    #[test]
    fn one_key_reads_its_own_frames_and_the_log_after_the_newest_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        let at = fill(&mut s);
        // No snapshot yet: the whole log, 201 frames.
        let (h, read) = history_counting(&mut s, &key(7), at);
        assert_eq!((h.len(), read), (5, 201));
        s.snapshot(T, at, &AllCommitted).unwrap();
        let after: Vec<Txn> = [7, 8, 7]
            .iter()
            .enumerate()
            .map(|(n, k)| txn(300 + n as u64, vec![(key(*k), patch(1000))]))
            .collect();
        s.append(&after, &AllCommitted).unwrap();
        let now = s.current_seq().unwrap();
        for (k, events, frames) in [(7, 7, 5 + 3), (8, 6, 5 + 3), (9, 5, 5 + 3), (99, 0, 3)] {
            let (h, read) = history_counting(&mut s, &key(k), now);
            assert_eq!((h.len(), read), (events, frames), "key {k}");
            assert_eq!(h, from_table_history(&mut s, &key(k), now), "key {k}");
        }
        // In the past, before the snapshot: only the key's frames up to there.
        let (h, read) = history_counting(&mut s, &key(7), 60);
        assert_eq!((h.len(), read), (2, 2));
        assert_eq!(h, from_table_history(&mut s, &key(7), 60));
        // Another store reading the same files agrees.
        let mut other = open(dir.path());
        assert_eq!(
            other.history(T, &key(7), now, &AllCommitted).unwrap(),
            from_table_history(&mut s, &key(7), now)
        );
    }

    /// The snapshot of table `T` at `seq`, written again with `history` as its key history
    /// section (`None`: without one, as snapshots were written before it existed), keeping
    /// event positions or not (as snapshots were written before positions existed).
    fn rewrite_snapshot(
        s: &mut Store,
        seq: Seq,
        history: Option<Vec<(Vec<u8>, FramePositions)>>,
        positions: bool,
    ) -> std::path::PathBuf {
        let rows: Vec<(Vec<u8>, Row)> = s
            .scan(T, seq, &AllCommitted)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let path = s.table_dir(T).join(snapshot_file_name(seq));
        let bytes = snapshot_bytes(
            &path,
            T,
            seq,
            rows.into_iter().map(Ok),
            &[],
            history.map(|h| h.into_iter().map(Ok)),
            positions,
        )
        .unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_snapshot_without_a_key_history_section_leaves_the_whole_log_to_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        let at = fill(&mut s);
        s.snapshot(T, at, &AllCommitted).unwrap();
        rewrite_snapshot(&mut s, at, None, true);
        let mut s = open(dir.path());
        let (h, read) = history_counting(&mut s, &key(7), at);
        assert_eq!((h.len(), read), (5, 201));
        assert_eq!(h, from_table_history(&mut s, &key(7), at));
        // The next snapshot builds its section from the whole log.
        s.append(&[txn(500, vec![(key(7), patch(1))])], &AllCommitted)
            .unwrap();
        let now = s.current_seq().unwrap();
        s.snapshot(T, now, &AllCommitted).unwrap();
        let (h, read) = history_counting(&mut s, &key(7), now);
        assert_eq!((h.len(), read), (6, 6));
        assert_eq!(h, from_table_history(&mut s, &key(7), now));
        assert!(s.verify(T, &AllCommitted).unwrap().ok());
    }

    #[test]
    fn a_key_history_naming_another_frame_is_corruption_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        let at = fill(&mut s);
        s.snapshot(T, at, &AllCommitted).unwrap();
        let snap = s.open_snapshot(T, at).unwrap();
        let mut records: Vec<(Vec<u8>, FramePositions)> = Vec::new();
        for i in 0..snap.history_blocks() {
            records.extend(snap.history_block(i).unwrap().2);
        }
        drop(snap);
        // Key 7's second frame placed where key 8's second frame is.
        let of = |records: &[(Vec<u8>, FramePositions)], k: u64| {
            records.iter().position(|r| r.0 == key(k)).unwrap()
        };
        let (seven, eight) = (of(&records, 7), of(&records, 8));
        let wrong = records[eight].1[1].1;
        records[seven].1[1].1 = wrong;
        let group = records[seven].1[1].0;
        let path = rewrite_snapshot(&mut s, at, Some(records), true);
        let mut s = open(dir.path());
        match s.history(T, &key(7), at, &AllCommitted) {
            Err(Error::Corruption {
                file,
                offset,
                detail,
            }) => {
                assert_eq!(file.parent(), Some(s.table_dir(T).as_path()));
                assert!(file.to_string_lossy().ends_with(".log"), "{file:?}");
                assert!(wrong > SEGMENT_HEADER_LEN as u64);
                assert_eq!(offset, wrong);
                assert!(
                    detail.contains(&format!("names a frame of group {group} here")),
                    "{detail}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Verification finds it in the snapshot.
        let report = s.verify(T, &AllCommitted).unwrap();
        assert_eq!(report.problems.total(), 1, "{report:?}");
        let p = &report.problems.listed[0];
        assert_eq!(p.file, path);
        let said = format!("key history differs from the log at seq {at}: the frames of key");
        assert!(p.detail.contains(&said), "{}", p.detail);
    }

    fn big_key(i: u64) -> Vec<u8> {
        format!("big-{i:05}").into_bytes()
    }

    /// 3,000 keys inserted by one transaction, then two transactions patching every key
    /// (every tenth twice in the first), each frame larger than `POSITIONS_FROM`; a
    /// snapshot in the middle of the first patching group and one at the end. Returns the
    /// seqs of the two snapshots.
    fn fill_large(s: &mut Store) -> (Seq, Seq) {
        s.create_table(T).unwrap();
        let n = 3_000;
        let rows = (0..n)
            .map(|i| {
                let name = format!("name of row number {i}").into_bytes();
                (big_key(i), Op::Insert(Row::from_pairs([(1, Some(name))])))
            })
            .collect();
        s.append(&[txn(1, rows)], &AllCommitted).unwrap();
        let first = s.current_seq().unwrap() + 1;
        let mut patches = Vec::new();
        for i in 0..n {
            patches.push((big_key(i), patch(i)));
            if i % 10 == 0 {
                patches.push((big_key(i), patch(i + 1)));
            }
        }
        s.append(&[txn(2, patches)], &AllCommitted).unwrap();
        let middle = first + 1_650;
        s.snapshot(T, middle, &AllCommitted).unwrap();
        let again = (0..n).map(|i| (big_key(i), patch(i * 2))).collect();
        s.append(&[txn(3, again)], &AllCommitted).unwrap();
        let end = s.current_seq().unwrap();
        s.snapshot(T, end, &AllCommitted).unwrap();
        (middle, end)
    }

    #[test]
    fn a_key_s_events_in_large_frames_are_read_where_the_snapshot_says() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        let (middle, end) = fill_large(&mut s);
        let snap = s.open_snapshot(T, end).unwrap();
        // Key 10 has two events in the second frame, one in each of the others.
        let frames = snap.key_history(&big_key(10)).unwrap().unwrap();
        let counts: Vec<usize> = frames.iter().map(|f| f.2.len()).collect();
        assert_eq!(counts, vec![1, 2, 1]);
        drop(snap);
        let mut whole: std::collections::BTreeMap<Vec<u8>, Vec<HistoryEntry>> = Default::default();
        for e in s.table_history(T, end, &AllCommitted).unwrap() {
            let e = e.unwrap();
            whole.entry(e.key.clone()).or_default().push(e);
        }
        // Key 1,500 has two events in the second frame, one each side of the snapshot in it.
        for i in (0..3_000)
            .step_by(7)
            .chain([10, 1_500, 1_640, 1_650, 2_999])
        {
            let (h, read) = history_counting(&mut s, &big_key(i), end);
            assert_eq!(read, 3, "key {i}");
            assert_eq!(h, whole[&big_key(i)], "key {i}");
        }
        // As of the snapshot in the middle of a group: its events up to there (key 1,001's
        // patch is the group's 1,103rd event, key 1,600's its 1,762nd).
        let (h, _) = history_counting(&mut s, &big_key(1_001), middle);
        assert_eq!(h.len(), 2);
        let (h, _) = history_counting(&mut s, &big_key(1_600), middle);
        assert_eq!(h.len(), 1);
        let report = s.verify(T, &AllCommitted).unwrap();
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.snapshots_compared, 2);
    }

    #[test]
    fn a_key_history_position_off_an_event_of_the_key_is_corruption_in_its_frame() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        let (_, end) = fill_large(&mut s);
        let snap = s.open_snapshot(T, end).unwrap();
        let mut records: Vec<(Vec<u8>, FramePositions)> = Vec::new();
        for i in 0..snap.history_blocks() {
            records.extend(snap.history_block(i).unwrap().2);
        }
        drop(snap);
        let r = records.iter().position(|r| r.0 == big_key(20)).unwrap();
        let (group, offset) = (records[r].1[2].0, records[r].1[2].1);
        // Key 20's last event placed where key 21's is.
        let theirs = records[r + 1].1[2].2.clone();
        records[r].1[2].2 = theirs;
        let path = rewrite_snapshot(&mut s, end, Some(records.clone()), true);
        let mut s = open(dir.path());
        match s.history(T, &big_key(20), end, &AllCommitted) {
            Err(Error::Corruption {
                file,
                offset: at,
                detail,
            }) => {
                assert!(file.to_string_lossy().ends_with(".log"), "{file:?}");
                assert_eq!(at, offset);
                assert!(
                    detail.contains("does not hold an event of the key"),
                    "{detail}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(group > 0);
        let report = s.verify(T, &AllCommitted).unwrap();
        assert_eq!(report.problems.total(), 1, "{report:?}");
        assert_eq!(report.problems.listed[0].file, path);
        // The same section without positions (as written before they existed): every
        // frame is read whole, and the history is right again.
        for (_, frames) in &mut records {
            for f in frames.iter_mut() {
                f.2.clear();
            }
        }
        rewrite_snapshot(&mut s, end, Some(records), false);
        let mut s = open(dir.path());
        let h = s.history(T, &big_key(20), end, &AllCommitted).unwrap();
        assert_eq!(h.len(), 4);
        assert!(s.verify(T, &AllCommitted).unwrap().ok());
        // The next snapshot's section builds on that one: the frames it names stay to be
        // read whole, the new frame's positions are kept.
        let more = (0..3_000).map(|i| (big_key(i), patch(i * 3))).collect();
        s.append(&[txn(4, more)], &AllCommitted).unwrap();
        let now = s.current_seq().unwrap();
        s.snapshot(T, now, &AllCommitted).unwrap();
        let snap = s.open_snapshot(T, now).unwrap();
        let frames = snap.key_history(&big_key(20)).unwrap().unwrap();
        let counts: Vec<usize> = frames.iter().map(|f| f.2.len()).collect();
        assert_eq!(counts, vec![0, 0, 0, 1]);
        drop(snap);
        let h = s.history(T, &big_key(20), now, &AllCommitted).unwrap();
        assert_eq!(h, from_table_history(&mut s, &big_key(20), now));
        assert_eq!(h.len(), 5);
        let report = s.verify(T, &AllCommitted).unwrap();
        assert!(report.ok(), "{report:?}");
    }
}
