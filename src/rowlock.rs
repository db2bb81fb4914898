//! Row locks on DriftDB rows, held in Postgres' own lock manager.
//!
//! A DriftDB row has no tuple header to carry a locker's xid, so a row lock is a
//! transaction-scoped heavyweight lock on a tuple tag of the table: the database, the
//! table's oid, and 48 bits of a hash of the row's key (two keys that share the 48 bits
//! share a lock, which costs a needless wait, never a missed conflict). The four
//! strengths use the lock modes Postgres uses for heap tuple locks, whose conflict table
//! is the row-lock conflict table, so FOR KEY SHARE, FOR SHARE, FOR NO KEY UPDATE and
//! FOR UPDATE conflict exactly as on heap rows. The lock manager gives the rest: a lock
//! lives until its (sub)transaction ends and goes with an abort or a crash, waits show in
//! `pg_locks` and `pg_stat_activity`, a cycle of waits (through DriftDB rows, heap rows
//! or anything else) ends in 40P01, and `lock_timeout`, `statement_timeout` and
//! cancellation interrupt a wait.
//!
//! Every writer takes the lock of the row it changes (an INSERT the one of its new key),
//! so a second writer waits for the first instead of failing at COMMIT.
//!
//! The lock table is shared and bounded (`max_locks_per_transaction`), while a statement
//! may change millions of rows. So a transaction that holds `driftdb.row_lock_escalation`
//! row locks on one table tries to lock the whole table instead, in EXCLUSIVE mode (which
//! conflicts with every other writer's and locker's ROW SHARE or ROW EXCLUSIVE table lock,
//! so no other transaction can hold a row lock there meanwhile), without waiting; it tries
//! again after each further `driftdb.row_lock_escalation` rows, and at four times that
//! number it waits for the table lock. Plain reads are never blocked by it.

use crate::error::DriftError;
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::HashMap;

/// How many row locks on one table a transaction takes before it tries to lock the table.
static ESCALATION: GucSetting<i32> = GucSetting::<i32>::new(256);

/// A row lock's strength, strongest last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strength {
    KeyShare,
    Share,
    NoKeyUpdate,
    Update,
}

impl Strength {
    /// The strength's number in a plan (`fdw_private`).
    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn from_code(code: i32) -> Option<Strength> {
        [
            Strength::KeyShare,
            Strength::Share,
            Strength::NoKeyUpdate,
            Strength::Update,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }

    /// The heavyweight mode Postgres takes for the same heap tuple lock.
    fn mode(self) -> pg_sys::LOCKMODE {
        (match self {
            Strength::KeyShare => pg_sys::AccessShareLock,
            Strength::Share => pg_sys::RowShareLock,
            Strength::NoKeyUpdate => pg_sys::ExclusiveLock,
            Strength::Update => pg_sys::AccessExclusiveLock,
        }) as pg_sys::LOCKMODE
    }

    /// The strength of a locking row mark (`None` for the non-locking ones).
    pub fn of_rowmark(mark: pg_sys::RowMarkType::Type) -> Option<Strength> {
        match mark {
            pg_sys::RowMarkType::ROW_MARK_EXCLUSIVE => Some(Strength::Update),
            pg_sys::RowMarkType::ROW_MARK_NOKEYEXCLUSIVE => Some(Strength::NoKeyUpdate),
            pg_sys::RowMarkType::ROW_MARK_SHARE => Some(Strength::Share),
            pg_sys::RowMarkType::ROW_MARK_KEYSHARE => Some(Strength::KeyShare),
            _ => None,
        }
    }
}

/// What to do when another transaction holds a conflicting lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Wait for it (the default).
    Block,
    /// SKIP LOCKED: leave the row out.
    Skip,
    /// NOWAIT: fail with 55P03.
    Error,
}

impl Wait {
    pub fn of_policy(policy: pg_sys::LockWaitPolicy::Type) -> Wait {
        match policy {
            pg_sys::LockWaitPolicy::LockWaitSkip => Wait::Skip,
            pg_sys::LockWaitPolicy::LockWaitError => Wait::Error,
            _ => Wait::Block,
        }
    }
}

/// Row locks this transaction took, per table.
#[derive(Default)]
struct Held {
    /// Row locks taken (a key locked twice in two strengths counts twice).
    rows: u64,
    /// The table is locked in EXCLUSIVE mode: row locks are no longer needed.
    whole_table: bool,
}

thread_local! {
    static HELD: RefCell<HashMap<pg_sys::Oid, Held>> = RefCell::new(HashMap::new());
}

pub fn init() {
    GucRegistry::define_int_guc(
        c"driftdb.row_lock_escalation",
        c"Row locks on one DriftDB table after which a transaction locks the whole table.",
        c"Without waiting at each multiple of this number; waiting at four times it.",
        &ESCALATION,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
}

/// The lock tag of row `key` of table `relid`.
/// The file holding the cluster's secret key of row-lock tags.
pub const TAG_KEY_FILE: &str = "rowlock.key";

thread_local! {
    static TAG_KEY: std::cell::OnceCell<(u64, u64)> = const { std::cell::OnceCell::new() };
}

/// The cluster's secret key of row-lock tags, `$PGDATA/driftdb/rowlock.key`: 16 random
/// bytes made by the first backend that needed them and kept for the cluster's life, so
/// every backend, before and after a restart (a prepared transaction keeps its row locks
/// through one), computes the same tag for a key, while a client cannot choose keys whose
/// tags collide with another's (which would make it wait on locks it never asked for).
fn tag_key() -> (u64, u64) {
    let root = crate::engine::root();
    let path = root.join(TAG_KEY_FILE);
    let fail = |what: &str, e: std::io::Error| -> ! {
        DriftError::Engine(driftdb_storage::Error::IoAt {
            path: path.clone(),
            source: std::io::Error::new(e.kind(), format!("{what} the row-lock key: {e}")),
        })
        .report()
    };
    let parse = |b: &[u8]| -> Option<(u64, u64)> {
        let b: &[u8; 16] = b.try_into().ok()?;
        let (k0, k1) = b.split_at(8);
        Some((
            u64::from_le_bytes(k0.try_into().ok()?),
            u64::from_le_bytes(k1.try_into().ok()?),
        ))
    };
    // The key in the file, or None when there is no file yet.
    let read = || match std::fs::read(&path) {
        Ok(b) => Some(parse(&b).unwrap_or_else(|| {
            fail(
                "reading",
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not 16 bytes"),
            )
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => fail("reading", e),
    };
    if let Some(key) = read() {
        return key;
    }
    let mut fresh = [0u8; 16];
    // SAFETY: fills the 16 bytes of `fresh` from the OS's strong random source.
    if !unsafe { pg_sys::pg_strong_random(fresh.as_mut_ptr().cast(), fresh.len()) } {
        fail(
            "making",
            std::io::Error::other("no strong random bytes are available"),
        )
    }
    // Written whole to a file of this process, made durable, then linked into place:
    // of two backends that race, the first link wins and both read the winner's key.
    std::fs::create_dir_all(&root).unwrap_or_else(|e| fail("creating the directory of", e));
    let tmp = root.join(format!("{TAG_KEY_FILE}.{}", std::process::id()));
    let written = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&fresh)?;
        f.sync_all()
    })();
    written.unwrap_or_else(|e| fail("writing", e));
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => fail("creating", e),
    }
    if let Ok(dir) = std::fs::File::open(&root) {
        dir.sync_all()
            .unwrap_or_else(|e| fail("syncing the directory of", e));
    }
    read().unwrap_or_else(|| {
        fail(
            "reading",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone after it was linked"),
        )
    })
}

fn tag(relid: pg_sys::Oid, key: &[u8]) -> pg_sys::LOCKTAG {
    let v = TAG_KEY.with(|k| {
        let k = k.get_or_init(tag_key);
        siphasher::sip::SipHasher13::new_with_keys(k.0, k.1).hash(key)
    });
    pg_sys::LOCKTAG {
        // SAFETY: a plain read of the backend's database oid.
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: relid.to_u32(),
        locktag_field3: (v >> 32) as u32,
        locktag_field4: v as u16,
        locktag_type: pg_sys::LockTagType::LOCKTAG_TUPLE as u8,
        locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
    }
}

/// What a row lock request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Got {
    /// The lock is new to this transaction.
    Taken,
    /// This transaction held it already (or holds the whole table).
    Held,
    /// SKIP LOCKED: another transaction holds a conflicting lock.
    Skipped,
}

/// Locks row `key` of table `relid` in `strength` until the (sub)transaction ends.
pub fn lock_row(relid: pg_sys::Oid, key: &[u8], strength: Strength, wait: Wait) -> Got {
    if HELD.with(|h| h.borrow().get(&relid).is_some_and(|t| t.whole_table)) {
        return Got::Held;
    }
    let tag = tag(relid, key);
    // SAFETY: a transaction-scoped lock request with a tag built above; an ERROR (deadlock,
    // timeout, cancel) leaves through Postgres' own error handling.
    let got = unsafe { pg_sys::LockAcquire(&tag, strength.mode(), false, wait != Wait::Block) };
    match got {
        pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL => match wait {
            Wait::Skip => Got::Skipped,
            _ => DriftError::RowLocked { relid }.report(),
        },
        pg_sys::LockAcquireResult::LOCKACQUIRE_OK => {
            counted(relid);
            Got::Taken
        }
        _ => Got::Held,
    }
}

/// Gives back a lock that `lock_row` reported `Taken` in the same statement (an INSERT ...
/// ON CONFLICT DO NOTHING that found the key taken locks nothing, as on heap).
pub fn unlock_row(relid: pg_sys::Oid, key: &[u8], strength: Strength) {
    let tag = tag(relid, key);
    // SAFETY: releases one hold of a lock this transaction took; a lock that is not held
    // only raises a WARNING.
    unsafe { pg_sys::LockRelease(&tag, strength.mode(), false) };
    HELD.with(|h| {
        if let Some(t) = h.borrow_mut().get_mut(&relid) {
            t.rows = t.rows.saturating_sub(1);
        }
    });
}

/// Counts a new row lock on `relid`; at each multiple of the escalation number tries the
/// table lock, at four times it waits for it.
fn counted(relid: pg_sys::Oid) {
    let every = ESCALATION.get().max(1) as u64;
    let rows = HELD.with(|h| {
        let mut h = h.borrow_mut();
        let t = h.entry(relid).or_default();
        t.rows += 1;
        t.rows
    });
    if !rows.is_multiple_of(every) {
        return;
    }
    let mode = pg_sys::ExclusiveLock as pg_sys::LOCKMODE;
    // SAFETY: transaction-scoped relation lock requests on a table this statement has
    // open (so its oid is valid).
    let got = unsafe {
        if rows >= 4 * every {
            pg_sys::LockRelationOid(relid, mode);
            true
        } else {
            pg_sys::ConditionalLockRelationOid(relid, mode)
        }
    };
    if got {
        HELD.with(|h| h.borrow_mut().entry(relid).or_default().whole_table = true);
    }
}

/// The transaction ended: its locks are gone.
pub fn clear() {
    HELD.with(|h| h.borrow_mut().clear());
}

/// A subtransaction aborted and released the locks it took, a table lock among them
/// perhaps: take row locks again until the next escalation finds the table lock (at once
/// when an outer level still holds it).
pub fn subtransaction_aborted() {
    HELD.with(|h| {
        for t in h.borrow_mut().values_mut() {
            t.whole_table = false;
        }
    });
}
