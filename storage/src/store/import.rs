//! Imported history: groups appended under the importing transaction's xid (so its fate
//! decides their visibility) that carry the xid, commit time and role they had where they
//! were exported (the journal record's origin extension), and reads "as of an instant"
//! that follow those original times.

use std::collections::HashMap;

use super::Store;
use crate::error::{Error, Result};
use crate::types::{Committed, Fate, Fates, Origin, Seq, TableId, Txn};

impl Store {
    /// Appends `txns` as [`Store::append`] does, `txns[i]` carrying `origins[i]`. Per
    /// table, original commit times must strictly increase, continuing the imported groups
    /// this importing xid appended before, and none may be later than its group's own
    /// (requested) commit time: the original past stays in the past of this store.
    pub fn append_imported(
        &mut self,
        txns: &[Txn],
        origins: &[Origin],
        fates: &dyn Fates,
    ) -> Result<Vec<Committed>> {
        if txns.len() != origins.len() {
            return Err(Error::InvalidTxn(
                "every imported transaction needs its origin".into(),
            ));
        }
        self.require_writer()?;
        self.refresh_journal_writer()?;
        let mut last: HashMap<TableId, i64> = HashMap::new();
        for (txn, origin) in txns.iter().zip(origins) {
            if origin.commit_ts > txn.commit_ts {
                return Err(Error::InvalidTxn(format!(
                    "original commit time {} is later than the import's {}",
                    origin.commit_ts, txn.commit_ts
                )));
            }
            let mut tables: Vec<TableId> = txn.events.iter().map(|e| e.table).collect();
            tables.sort_unstable();
            tables.dedup();
            for t in tables {
                let before = match last.get(&t) {
                    Some(b) => Some(*b),
                    None => self
                        .journal
                        .last_imported_run(t)?
                        .filter(|run| run.xid == txn.xid)
                        .and_then(|run| run.groups.last().map(|g| g.0)),
                };
                if before.is_some_and(|b| b >= origin.commit_ts) {
                    return Err(Error::InvalidTxn(format!(
                        "original commit times of table {t} must increase: {} after {}",
                        origin.commit_ts,
                        before.unwrap_or_default()
                    )));
                }
                last.insert(t, origin.commit_ts);
            }
        }
        self.append_with_origins(txns, origins, fates, true)?
            .into_iter()
            .collect()
    }

    /// The seq at which table `id` is read "as of" instant `ts` (microseconds): the last
    /// seq of the last group committed here at or before `ts` ([`Store::seq_at`]), or of
    /// the table's last imported group whose original commit time is at or before `ts`
    /// (imported groups of transactions that `fates` does not call committed do not
    /// count), whichever is later. A table receives imported groups only while it has no
    /// other events, and they were all committed before the import, so this reads the
    /// table exactly as it was at `ts` where it came from, and as it is here afterwards.
    pub fn seq_at_for_table(&mut self, id: TableId, ts: i64, fates: &dyn Fates) -> Result<Seq> {
        let global = self.seq_at(ts)?;
        if !self.journal.has_imported(id)? {
            return Ok(global);
        }
        let created = match self.load_table(id) {
            Ok(t) => t.meta.created_seq,
            Err(Error::NoSuchTable(_)) => return Ok(global),
            Err(e) => return Err(e),
        };
        let imported = self.journal.with_imported_runs(id, |runs| {
            let mut best = 0;
            for run in runs {
                // Runs of an earlier table that had this id, and runs not committed, do
                // not count.
                if run.groups.first().is_none_or(|g| g.1 <= created)
                    || fates.fate(run.xid) != Fate::Committed
                {
                    continue;
                }
                let i = run.groups.partition_point(|g| g.0 <= ts);
                if let Some(g) = i.checked_sub(1).map(|i| run.groups[i]) {
                    best = best.max(g.2);
                }
            }
            best
        })?;
        Ok(global.max(imported))
    }
}
