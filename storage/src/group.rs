//! In-process group commit: concurrent committers share one append and one round of syncs.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::error::Result;
use crate::store::Store;
use crate::types::{Committed, Fates, Txn};

struct Queue {
    next_ticket: u64,
    waiting: Vec<(u64, Txn)>,
    done: HashMap<u64, Result<Committed>>,
    leader_active: bool,
}

/// Wraps a writer [`Store`] so that threads calling [`GroupCommitter::commit`] at once are
/// batched into one append (leader/follower): the first waiting thread becomes the leader,
/// takes every queued transaction, appends and syncs them together, and hands each
/// committer its result; transactions queued meanwhile form the next batch.
pub struct GroupCommitter {
    store: Mutex<Store>,
    queue: Mutex<Queue>,
    wake: Condvar,
    fates: Arc<dyn Fates + Send + Sync>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl GroupCommitter {
    /// `fates` judges liveness for the append-time validation (see [`Store::append`]).
    pub fn new(store: Store, fates: Arc<dyn Fates + Send + Sync>) -> GroupCommitter {
        GroupCommitter {
            store: Mutex::new(store),
            queue: Mutex::new(Queue {
                next_ticket: 0,
                waiting: Vec::new(),
                done: HashMap::new(),
                leader_active: false,
            }),
            wake: Condvar::new(),
            fates,
        }
    }

    /// Appends one transaction durably, sharing the sync with concurrent callers. A
    /// transaction that fails validation gets its error without failing the others.
    pub fn commit(&self, txn: Txn) -> Result<Committed> {
        let mut q = lock(&self.queue);
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.waiting.push((ticket, txn));
        loop {
            if let Some(r) = q.done.remove(&ticket) {
                return r;
            }
            if q.leader_active {
                q = self.wake.wait(q).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            q.leader_active = true;
            let batch = std::mem::take(&mut q.waiting);
            drop(q);
            let (tickets, txns): (Vec<u64>, Vec<Txn>) = batch.into_iter().unzip();
            let outcome = lock(&self.store).append_batch(&txns, &*self.fates, false);
            q = lock(&self.queue);
            match outcome {
                Ok(results) => q.done.extend(tickets.into_iter().zip(results)),
                Err(e) => {
                    for t in tickets {
                        q.done.insert(t, Err(e.duplicate()));
                    }
                }
            }
            q.leader_active = false;
            self.wake.notify_all();
        }
    }

    /// Runs `f` on the store (reads, snapshots, stats) between batches.
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(&mut lock(&self.store))
    }

    pub fn into_inner(self) -> Store {
        self.store.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}
