//! The ledger's SQL surface (issue #21, `docs/ledger.md`): digests of the history
//! (`drift_digest`), checking one against the log (`drift_verify_digest`), inclusion and
//! consistency proofs (`drift_prove`, `drift_prove_consistency`) and their checks without
//! the log (`drift_verify_inclusion`, `drift_verify_consistency`).
//!
//! The ledger is extended here, and only here: by `drift_digest` and `drift_prove`, by the
//! background worker each time it wakes, and before the files of a dropped table are
//! removed. It is extended over the decided prefix of the log ([`shmem::decided_seq`]: every
//! group at or below it belongs to a transaction that has ended, imports included) after
//! the WAL is flushed up to where it is inserted, so that every commit record of those
//! groups is durable: a leaf is never made of a group whose commit a crash could still take
//! back (`synchronous_commit = off`).
//!
//! Dropped tables: the ledger's leaves are computed from the tables' logs, so before the
//! files of a dropped table go, the leaf sections of every group of the table are kept in
//! the ledger's directory (keys, ops and value commitments, not values): every group of
//! the table can still be made a leaf, whenever the ledger reaches it, and checked and
//! proven afterwards.

use crate::datum;
use crate::drop::is_driftdb_table;
use crate::engine::{self, LatestFates};
use crate::error::{DriftError, DriftWarning};
use crate::shmem;
use crate::table::TableInfo;
use crate::timetravel::{check_seq, readable_table};
use driftdb_storage::ledger::{leaf_hash, Leaf};
use driftdb_storage::{ConsistencyProof, InclusionProof, LedgerDigest, Seq, TableId};
use pgrx::lwlock::PgLwLock;
use pgrx::pg_shmem_init;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::Cell;
use std::time::{Duration, Instant};

/// Held by every call into the store's ledger: one process at a time extends it (the
/// store's rule), and a process opening the ledger's files as a writer cuts what it takes
/// for a torn tail, which must not be another process's append in progress. A dropped
/// table's sections are kept and its files removed under it too, so that no ledger call
/// sees the files go halfway through.
// SAFETY: the name is unique to DriftDB.
static LEDGER: PgLwLock<bool> = unsafe { PgLwLock::new(c"driftdb_ledger") };

/// Requests the shared memory; only valid while preloading (checked by the caller).
pub fn init() {
    pg_shmem_init!(LEDGER);
}

/// Extends the ledger over every decided group and returns its digest and the seq it
/// covers (every group at or below it is a leaf or aborted). Takes the ledger lock.
fn extend() -> driftdb_storage::Result<(LedgerDigest, Seq)> {
    // SAFETY: a plain read of the server's recovery state.
    if unsafe { pg_sys::RecoveryInProgress() } {
        return Err(driftdb_storage::Error::ReadOnly);
    }
    let upto = shmem::decided_seq();
    // Every transaction with a group at or below `upto` has ended, so its commit record
    // (if any) is inserted: flushing what is inserted makes each of them durable before
    // its group becomes a leaf.
    // SAFETY: flushes the WAL up to a position already inserted, outside recovery
    // (checked above), as a commit does.
    unsafe { pg_sys::XLogFlush(pg_sys::GetXLogInsertRecPtr()) };
    let _lock = LEDGER.exclusive();
    let digest = engine::try_with_store(|s| {
        engine::refresh_settled(s)?;
        s.extend_ledger(upto, &LatestFates)
    })?;
    Ok((digest, upto))
}

/// [`extend`], its failure an ERROR.
fn extend_or_report() -> LedgerDigest {
    extend()
        .unwrap_or_else(|e| DriftError::Engine(e).report())
        .0
}

/// Runs `f` on the store under the ledger lock.
fn with_ledger<R>(f: impl FnOnce(&mut driftdb_storage::Store) -> driftdb_storage::Result<R>) -> R {
    let _lock = LEDGER.exclusive();
    engine::with_store(f)
}

fn parse_digest(text: &str) -> LedgerDigest {
    LedgerDigest::from_text(text).unwrap_or_else(|why| {
        // Quoted in the message as given, but not at any length.
        let shown: String = text.chars().take(200).collect();
        DriftError::BadDigest { text: shown, why }.report()
    })
}

/// The history's digest: extends the ledger over every decided group and returns its
/// digest in the canonical text form.
#[pg_extern(
    volatile,
    parallel_restricted,
    sql = "
CREATE FUNCTION @extschema@.drift_digest() RETURNS text
    VOLATILE PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION @extschema@.drift_digest() IS
    'The digest of the history (tree size, last seq, commit time, Merkle root) up to the stable seq, to keep where the database cannot change it';
"
)]
fn drift_digest() -> String {
    extend_or_report().to_text()
}

/// Whether the log's history is exactly the one `digest` was taken over: true, or false
/// with a WARNING whose detail says what changed.
#[pg_extern(
    volatile,
    parallel_restricted,
    sql = "
CREATE FUNCTION @extschema@.drift_verify_digest(digest text) RETURNS boolean
    VOLATILE PARALLEL RESTRICTED STRICT
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION @extschema@.drift_verify_digest(text) IS
    'Recomputes the history up to a digest from the log: true when it is exactly the one the digest was taken over, else false with a WARNING naming what changed';
REVOKE ALL ON FUNCTION @extschema@.drift_verify_digest(text) FROM PUBLIC;
"
)]
fn drift_verify_digest(digest: &str) -> bool {
    let digest = parse_digest(digest);
    let report = with_ledger(|s| {
        engine::refresh_settled(s)?;
        s.verify_digest(&digest, &LatestFates)
    });
    if !report.ok() {
        let mut text = report.to_string();
        let names = table_names(&report);
        if !names.is_empty() {
            text.push_str(&format!(
                "\n  tables of this database: {}",
                names.join(", ")
            ));
        }
        DriftWarning::DigestMismatch { report: text }.report();
    }
    report.ok()
}

/// `<id> = <name>` for each table a report's divergences name that is a DriftDB table of
/// the current database (the report names tables by their engine ids).
fn table_names(report: &driftdb_storage::DigestReport) -> Vec<String> {
    let mut ids: Vec<TableId> = report
        .divergences
        .iter()
        .filter_map(|d| match d {
            driftdb_storage::Divergence::Changed { tables, .. } => Some(tables),
            _ => None,
        })
        .flatten()
        .map(|t| match t {
            driftdb_storage::TableDiff::Changed(t)
            | driftdb_storage::TableDiff::Added(t)
            | driftdb_storage::TableDiff::Removed(t) => *t,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .filter_map(|id| {
            let relid = pg_sys::Oid::from(id as u32);
            // SAFETY: plain reads of backend state, and catalog lookups inside the
            // transaction; a relation that is gone has no name.
            unsafe {
                if (id >> 32) as u32 != pg_sys::MyDatabaseId.to_u32() || !is_driftdb_table(relid) {
                    return None;
                }
                let name = pg_sys::get_rel_name(relid);
                (!name.is_null()).then(|| {
                    format!(
                        "{id} = {}",
                        std::ffi::CStr::from_ptr(name).to_string_lossy()
                    )
                })
            }
        })
        .collect()
}

/// The consistency proof from the ledger's tree of `old_digest` to that of `new_digest`
/// (encoded as `docs/ledger.md` says), checked against both digests.
#[pg_extern(
    volatile,
    parallel_restricted,
    sql = "
CREATE FUNCTION @extschema@.drift_prove_consistency(old_digest text, new_digest text) RETURNS bytea
    VOLATILE PARALLEL RESTRICTED STRICT
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION @extschema@.drift_prove_consistency(text, text) IS
    'A proof that the history of the newer digest extends that of the older one (RFC 9162 consistency proof, DriftDB encoding)';
"
)]
fn drift_prove_consistency(old_digest: &str, new_digest: &str) -> Vec<u8> {
    let (old, new) = (parse_digest(old_digest), parse_digest(new_digest));
    if old.tree_size > new.tree_size {
        DriftError::LedgerRequest {
            message: "the old digest is of a larger tree than the new one".into(),
            detail: format!(
                "The old digest has {} leaves, the new one {}.",
                old.tree_size, new.tree_size
            ),
        }
        .report()
    }
    let proof = with_ledger(|s| {
        let size = s.ledger_digest()?.tree_size;
        if new.tree_size > size {
            return Ok(Err(size));
        }
        s.consistency_proof(old.tree_size, new.tree_size).map(Ok)
    })
    .unwrap_or_else(|size| {
        DriftError::LedgerRequest {
            message: format!("the ledger has no tree of {} leaves", new.tree_size),
            detail: format!("It has {size} leaves: the new digest is not of this ledger."),
        }
        .report()
    });
    if proof.verify_digests(&old, &new).is_err() {
        DriftError::LedgerRequest {
            message: "the digests are not of this ledger's history".into(),
            detail: "The ledger's trees of the digests' sizes do not have both digests' roots."
                .into(),
        }
        .report()
    }
    proof.encode()
}

/// Whether `proof` (an inclusion proof, as `drift_prove` gives it) shows that `leaf_data`
/// is a leaf of the tree of `digest`. Needs nothing but its arguments.
#[pg_extern(
    immutable,
    parallel_safe,
    sql = "
CREATE FUNCTION @extschema@.drift_verify_inclusion(digest text, leaf_data bytea, proof bytea) RETURNS boolean
    IMMUTABLE PARALLEL SAFE STRICT
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION @extschema@.drift_verify_inclusion(text, bytea, bytea) IS
    'Checks an inclusion proof of drift_prove against a digest, from its arguments alone';
"
)]
fn drift_verify_inclusion(digest: &str, leaf_data: &[u8], proof: &[u8]) -> bool {
    let digest = parse_digest(digest);
    let proof = InclusionProof::decode(proof).unwrap_or_else(|why| {
        DriftError::BadProof {
            kind: "inclusion proof",
            why,
        }
        .report()
    });
    proof.verify_digest(&leaf_hash(leaf_data), &digest).is_ok()
}

/// Whether `proof` (as `drift_prove_consistency` gives it) shows that the tree of
/// `new_digest` extends that of `old_digest`. Needs nothing but its arguments.
#[pg_extern(
    immutable,
    parallel_safe,
    sql = "
CREATE FUNCTION @extschema@.drift_verify_consistency(old_digest text, new_digest text, proof bytea) RETURNS boolean
    IMMUTABLE PARALLEL SAFE STRICT
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION @extschema@.drift_verify_consistency(text, text, bytea) IS
    'Checks a consistency proof of drift_prove_consistency against two digests, from its arguments alone';
"
)]
fn drift_verify_consistency(old_digest: &str, new_digest: &str, proof: &[u8]) -> bool {
    let (old, new) = (parse_digest(old_digest), parse_digest(new_digest));
    let proof = ConsistencyProof::decode(proof).unwrap_or_else(|why| {
        DriftError::BadProof {
            kind: "consistency proof",
            why,
        }
        .report()
    });
    proof.verify_digests(&old, &new).is_ok()
}

/// An inclusion proof of the row of a one-column key (the key's text as `drift_history`
/// shows it) at `seq`, one of its events, in the history of the current digest.
#[pg_extern(
    volatile,
    parallel_restricted,
    sql = "
CREATE FUNCTION @extschema@.drift_prove(table_name regclass, key text, seq bigint)
    RETURNS TABLE (digest text, leaf_index bigint, leaf_data bytea, proof bytea)
    VOLATILE PARALLEL RESTRICTED STRICT
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION @extschema@.drift_prove(regclass, text, bigint) IS
    'An inclusion proof that the version of a row (its key as drift_history shows it) written at a seq is in the history of the current digest';
"
)]
fn drift_prove_key(
    table_name: pg_sys::Oid,
    key: &str,
    seq: i64,
) -> TableIterator<
    'static,
    (
        name!(digest, String),
        name!(leaf_index, i64),
        name!(leaf_data, Vec<u8>),
        name!(proof, Vec<u8>),
    ),
> {
    prove(table_name, &[Some(key.to_string())], seq)
}

/// [`drift_prove_key`] for a key of several columns, one text per column in the key's order.
#[pg_extern(
    volatile,
    parallel_restricted,
    sql = "
CREATE FUNCTION @extschema@.drift_prove(table_name regclass, key text[], seq bigint)
    RETURNS TABLE (digest text, leaf_index bigint, leaf_data bytea, proof bytea)
    VOLATILE PARALLEL RESTRICTED STRICT
    SET search_path = pg_catalog, pg_temp
    LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION @extschema@.drift_prove(regclass, text[], bigint) IS
    'drift_prove for a key of several columns, one text per column in the key''s order';
"
)]
fn drift_prove_keys(
    table_name: pg_sys::Oid,
    key: Vec<Option<String>>,
    seq: i64,
) -> TableIterator<
    'static,
    (
        name!(digest, String),
        name!(leaf_index, i64),
        name!(leaf_data, Vec<u8>),
        name!(proof, Vec<u8>),
    ),
> {
    prove(table_name, &key, seq)
}

/// The engine key of the row whose key columns `drift_history` renders as `texts` (for a
/// table without a primary key, the hidden row id in hex, as `drift_diff` shows it);
/// `None` when no row's key renders so.
fn key_of_texts(info: &TableInfo, texts: &[Option<String>]) -> Option<Vec<u8>> {
    if info.key.is_empty() {
        let [Some(hex)] = texts else {
            DriftError::KeyTextCount {
                table: info.relid,
                expected: 1,
                got: texts.len(),
            }
            .report()
        };
        return hex_bytes(hex);
    }
    if texts.len() != info.key.len() {
        DriftError::KeyTextCount {
            table: info.relid,
            expected: info.key.len(),
            got: texts.len(),
        }
        .report()
    }
    let mut key = Vec::new();
    for (pos, text) in info.key.iter().zip(texts) {
        let col = &info.columns[*pos];
        let stored = match text {
            Some(text) => datum::rendered_key_stored(col, text).unwrap_or_else(|e| match e {
                DriftError::KeyTextType { column, .. } => DriftError::KeyTextType {
                    function: "drift_prove",
                    column,
                }
                .report(),
                other => other.report(),
            }),
            None => None,
        }?;
        datum::push_key_part(col, &stored, &mut key);
    }
    Some(key)
}

/// Lowercase hex to bytes (`None` for anything else).
fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2)
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

/// Refuses a proof whose group also wrote table `table` unless the caller may read it: the
/// leaf data show that table's keys (and commitments to its values).
fn check_other_table(table: TableId, seq: Seq) {
    let relid = pg_sys::Oid::from(table as u32);
    // SAFETY: plain reads of backend state, and catalog lookups inside the transaction.
    let (same_db, readable, superuser) = unsafe {
        let same_db = (table >> 32) as u32 == pg_sys::MyDatabaseId.to_u32();
        let exists = same_db && is_driftdb_table(relid);
        let readable = exists
            && pg_sys::pg_class_aclcheck(relid, pg_sys::GetUserId(), pg_sys::ACL_SELECT as _)
                == pg_sys::AclResult::ACLCHECK_OK;
        (exists, readable, pg_sys::superuser())
    };
    if readable || superuser {
        return;
    }
    DriftError::ProofRevealsTable {
        table,
        relid: same_db.then_some(relid),
        seq,
    }
    .report()
}

/// A proof's row: the digest, the leaf index, the leaf data and the encoded proof.
type ProofRow = (String, i64, Vec<u8>, Vec<u8>);

fn prove(
    relid: pg_sys::Oid,
    texts: &[Option<String>],
    seq: i64,
) -> TableIterator<'static, ProofRow> {
    // SELECT on the table first: without it nothing is read.
    let info = readable_table(relid);
    let key = key_of_texts(&info, texts);
    let seq = check_seq(info.id, seq);
    let not_an_event = || {
        DriftError::LedgerRequest {
            message: format!(
                "seq {seq} is not an event of that row of table \"{}\"",
                table_name(&info)
            ),
            detail: "drift_history shows the row's events and their seqs.".into(),
        }
        .report()
    };
    let Some(key) = key else { not_an_event() };
    let digest = extend_or_report();
    let found = with_ledger(|s| match s.leaf_of_seq(seq)? {
        Some(j) if j < digest.tree_size => s.inclusion_proof_at(seq, digest.tree_size).map(Some),
        _ => Ok(None),
    });
    let Some((data, proof)) = found else {
        DriftError::LedgerRequest {
            message: format!("seq {seq} is not in the ledger"),
            detail: format!(
                "The ledger holds the groups of committed transactions up to seq {}; seq {seq} \
                 is not one of them (its transaction rolled back, or an import before it is \
                 still in progress).",
                digest.last_seq
            ),
        }
        .report()
    };
    let leaf = Leaf::decode(&data).unwrap_or_else(|why| {
        DriftError::Internal(format!("the leaf data of seq {seq} do not decode: {why}")).report()
    });
    let is_event = leaf
        .tables
        .iter()
        .find(|t| t.table == info.id)
        .is_some_and(|t| t.events.iter().any(|e| e.seq == seq && e.key == key));
    if !is_event {
        not_an_event()
    }
    for t in leaf.tables.iter().filter(|t| t.table != info.id) {
        check_other_table(t.table, seq);
    }
    TableIterator::once((
        digest.to_text(),
        proof.leaf_index as i64,
        data,
        proof.encode(),
    ))
}

fn table_name(info: &TableInfo) -> String {
    // SAFETY: a syscache lookup inside the transaction of a table the caller locked.
    unsafe {
        let p = pg_sys::get_rel_name(info.relid);
        if p.is_null() {
            format!("relation {}", info.relid.to_u32())
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

/// Removes the files of dropped tables `tables` (the dropping transaction has committed,
/// and no transaction can write them any more), keeping their leaf sections first
/// (`Store::keep_table_sections`), so that every group of theirs can still be made a leaf,
/// checked and proven. A table whose sections cannot be kept for another reason than
/// damage keeps its files. A damaged table's log cannot give the leaves of its damaged
/// groups whether it is kept or not (the ledger stops at the first of them until the file
/// is repaired): its files go, as the user asked, and a WARNING says what the ledger loses.
/// Called after the commit, where no ERROR may be raised: the caller logs a failure.
pub fn remove_dropped_tables(tables: &[TableId]) -> driftdb_storage::Result<()> {
    for &t in tables {
        engine::try_with_store(|store| {
            let _ledger = LEDGER.exclusive();
            match store.keep_table_sections(t) {
                Ok(()) => {}
                Err(e @ driftdb_storage::Error::Corruption { .. }) => pgrx::warning!(
                    "driftdb: the dropped table {t} is damaged, its files are removed without \
                     its leaf sections: the ledger cannot cover its groups past the damage \
                     ({e})"
                ),
                Err(e) => return Err(e),
            }
            let _append = shmem::STATE.exclusive();
            match store.drop_table(t) {
                Err(driftdb_storage::Error::NoSuchTable(_)) => Ok(()),
                other => other,
            }
        })?;
    }
    Ok(())
}

thread_local! {
    /// The worker's failures to extend the ledger in a row, and when to try again.
    static BACKOFF: Cell<(u32, Option<Instant>)> = const { Cell::new((0, None)) };
}

/// The worker's round: extends the ledger over every decided group. A failure is logged
/// and tried again after 2 s, 4 s, ... at most an hour.
pub fn worker_round() {
    let (failures, next) = BACKOFF.get();
    if next.is_some_and(|n| Instant::now() < n) {
        return;
    }
    match extend() {
        Ok(_) => BACKOFF.set((0, None)),
        Err(e) => {
            let failures = failures + 1;
            let wait = Duration::from_secs(1u64 << failures.min(12)).min(Duration::from_secs(3600));
            BACKOFF.set((failures, Some(Instant::now() + wait)));
            pgrx::warning!(
                "driftdb: could not extend the ledger ({failures} failures in a row; next \
                 attempt in {} s): {e}",
                wait.as_secs()
            );
        }
    }
}
