//! What checking a digest against a store's log found ([`crate::Store::verify_digest`]).

use std::fmt;

use super::encoding::LedgerDigest;
use super::hash::{hash_to_hex, Hash};
use crate::types::{Seq, TableId};

/// Divergences listed in one report; further ones are only counted.
pub const MAX_DIVERGENCES: usize = 20;
/// First seqs listed in one divergence of several groups.
pub const LISTED_SEQS: usize = 10;

/// What the store's own ledger (its tree file and the records beside it) says about the
/// digest's tree size. Never trusted for the verdict, only used to say what differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredTree {
    /// The store has no ledger.
    Missing,
    /// The ledger has fewer leaves than the digest.
    Shorter { size: u64 },
    /// Its tree of the digest's size has the digest's root.
    Matches,
    /// Its tree of the digest's size has another root.
    Differs { root: Hash },
    /// Its tree has the digest's root but fails its own checks (a node that is not the hash
    /// of its children, a damaged record): it cannot tell what changed.
    Damaged { detail: String },
}

/// How one table's part of a group differs between the ledger and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableDiff {
    /// The group has events in the table in both, different ones.
    Changed(TableId),
    /// The log's group has events in the table, the ledger's did not.
    Added(TableId),
    /// The ledger's group had events in the table, the log's has none.
    Removed(TableId),
}

/// One difference between the groups the ledger's leaves were made of and the log's
/// committed groups, in leaf order. `leaf` is the ledger's leaf index where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Divergence {
    /// The log's group in this leaf's place differs from the one the leaf was made of.
    Changed {
        leaf: u64,
        /// The first seq of the leaf's group, and of the log's group in its place.
        first_seq: Seq,
        log_first_seq: Seq,
        /// Whether the group's own fields (seq count, commit time, xid, role, origin, table
        /// list) differ.
        header: bool,
        /// The tables whose events differ.
        tables: Vec<TableDiff>,
    },
    /// The leaves' groups (their first seqs) are not in the log: dropped from it, or no
    /// longer committed. `at_end`: the log ends (or stops at an undecided group) before them.
    /// `count` leaves from `leaf` on, `first_seqs` the first of them (at most
    /// [`LISTED_SEQS`]).
    Missing {
        leaf: u64,
        count: u64,
        first_seqs: Vec<Seq>,
        at_end: bool,
    },
    /// `count` groups of the log (`first_seqs`: where the first of them are there, at most
    /// [`LISTED_SEQS`]) that no leaf was made of, before `leaf`: inserted into it, or once
    /// aborted and now committed.
    Extra {
        leaf: u64,
        count: u64,
        first_seqs: Vec<Seq>,
    },
    /// The groups of leaves `leaf` and `leaf + 1` are in the log in the other order: their
    /// events (and, unless `header`, their commit times, xids and roles) moved together.
    /// `header`: the group's own fields stayed in place (commit times kept increasing).
    Swapped {
        leaf: u64,
        first_seqs: (Seq, Seq),
        log_first_seqs: (Seq, Seq),
        header: bool,
    },
    /// The groups of leaves `leaves.0 ..= leaves.1` are in the log unchanged but at other
    /// seqs: their first seqs moved by `shift` (what follows a dropped or inserted group).
    Renumbered {
        leaves: (u64, u64),
        first_seqs: (Seq, Seq),
        shift: i64,
    },
    /// The log's groups from this leaf on could not be read (damage, a dropped table's
    /// events): nothing after it was compared.
    Unreadable { leaf: u64, detail: String },
}

/// The outcome of [`crate::Store::verify_digest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestReport {
    pub digest: LedgerDigest,
    /// Leaves recomputed from the log: the digest's tree size, or fewer when the log has
    /// fewer committed groups (see `stopped`) or could not be read.
    pub recomputed: u64,
    /// The root of those leaves.
    pub recomputed_root: Hash,
    /// The last seq and commit time of the last of those groups (0 and 0 for none): what
    /// the digest's `last_seq` and `commit_time` should say (the root does not cover them).
    pub last_seq: Seq,
    pub commit_time: i64,
    /// Why the log gave fewer leaves than the digest's size.
    pub stopped: Option<String>,
    /// The log's first `tree_size` committed groups give the digest's root.
    pub matches: bool,
    pub stored: StoredTree,
    /// When the log does not match and the stored tree does, what differs (the first
    /// [`MAX_DIVERGENCES`]); empty otherwise.
    pub divergences: Vec<Divergence>,
    /// Divergences found beyond those listed.
    pub more: u64,
}

impl DigestReport {
    /// The log gives the digest, `last_seq` and `commit_time` included.
    pub fn ok(&self) -> bool {
        self.matches
            && self.last_seq == self.digest.last_seq
            && self.commit_time == self.digest.commit_time
    }

    /// Whether the differences could be named (the stored tree had the digest's root).
    pub fn pinpointed(&self) -> bool {
        !self.matches && self.stored == StoredTree::Matches
    }
}

fn short(h: &Hash) -> String {
    hash_to_hex(h)[..16].to_string()
}

impl fmt::Display for TableDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableDiff::Changed(t) => write!(f, "its events in table {t} differ"),
            TableDiff::Added(t) => write!(f, "it has events in table {t}, which it had not"),
            TableDiff::Removed(t) => write!(f, "its events in table {t} are gone"),
        }
    }
}

/// The seqs listed, and "..." when `count` is more than that.
fn seqs(s: &[Seq], count: u64) -> String {
    let mut out = s
        .iter()
        .map(|q| q.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if count > s.len() as u64 {
        out.push_str(", ...");
    }
    out
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Divergence::Changed {
                leaf,
                first_seq,
                log_first_seq,
                header,
                tables,
            } => {
                write!(f, "leaf {leaf}, group at seq {first_seq}: changed")?;
                if log_first_seq != first_seq {
                    write!(f, " (the log's group in its place is at seq {log_first_seq})")?;
                }
                let mut parts: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
                if *header {
                    parts.insert(
                        0,
                        "its seq count, commit time, xid, role, origin or tables differ".into(),
                    );
                }
                if !parts.is_empty() {
                    write!(f, ": {}", parts.join("; "))?;
                }
                Ok(())
            }
            Divergence::Missing {
                leaf,
                count,
                first_seqs,
                at_end,
            } => {
                let end = if *at_end {
                    " (the log's committed groups end before)"
                } else {
                    ""
                };
                if *count == 1 {
                    write!(
                        f,
                        "leaf {leaf}, group at seq {}: missing from the log{end}",
                        seqs(first_seqs, 1)
                    )
                } else {
                    write!(
                        f,
                        "leaves {leaf}..={}, groups at seqs {}: missing from the log{end}",
                        leaf + count - 1,
                        seqs(first_seqs, *count)
                    )
                }
            }
            Divergence::Extra {
                leaf,
                count,
                first_seqs,
            } => write!(
                f,
                "before leaf {leaf}: {count} group(s) of the log that no leaf was made of, at seq(s) {}",
                seqs(first_seqs, *count)
            ),
            Divergence::Swapped {
                leaf,
                first_seqs,
                log_first_seqs,
                header,
            } => {
                write!(
                    f,
                    "leaves {leaf} and {}, groups at seqs {} and {}: their events are in the other \
                     order in the log (there at seqs {} and {})",
                    leaf + 1,
                    first_seqs.0,
                    first_seqs.1,
                    log_first_seqs.0,
                    log_first_seqs.1
                )?;
                if *header {
                    write!(f, ", their commit times, xids or roles left in place")?;
                }
                Ok(())
            }
            Divergence::Renumbered {
                leaves,
                first_seqs,
                shift,
            } => write!(
                f,
                "leaves {}..={}, groups at seqs {}..={}: unchanged but at seqs {shift:+} in the log",
                leaves.0, leaves.1, first_seqs.0, first_seqs.1
            ),
            Divergence::Unreadable { leaf, detail } => {
                write!(f, "from leaf {leaf} on the log cannot be read: {detail}")
            }
        }
    }
}

impl fmt::Display for DigestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.digest;
        if self.ok() {
            return write!(
                f,
                "{d}: the log gives this digest ({} groups up to seq {})",
                d.tree_size, d.last_seq
            );
        }
        if self.matches {
            writeln!(f, "{d}: the log gives this root")?;
            return write!(
                f,
                "  but its last group ends at seq {} committed at {}, not as the digest says",
                self.last_seq, self.commit_time
            );
        }
        writeln!(f, "{d}: the log does NOT give this digest")?;
        write!(
            f,
            "  {} leaves recomputed from the log, root {}.. (the digest's {}..)",
            self.recomputed,
            short(&self.recomputed_root),
            short(&d.root)
        )?;
        if let Some(why) = &self.stopped {
            write!(f, "\n  the log has fewer committed groups: {why}")?;
        }
        match &self.stored {
            StoredTree::Matches => {
                write!(
                    f,
                    "\n  the store's ledger has the digest's root: the log changed since; differences:"
                )?;
                for d in &self.divergences {
                    write!(f, "\n    {d}")?;
                }
                if self.more > 0 {
                    write!(f, "\n    and {} more", self.more)?;
                }
                Ok(())
            }
            other => {
                let why = match other {
                    StoredTree::Missing => "the store has no ledger".to_string(),
                    StoredTree::Shorter { size } => {
                        format!("the store's ledger has only {size} leaves")
                    }
                    StoredTree::Differs { root } => format!(
                        "the store's ledger has another root at that size ({}..)",
                        short(root)
                    ),
                    StoredTree::Damaged { detail } => {
                        format!("the store's ledger is damaged ({detail})")
                    }
                    StoredTree::Matches => unreachable!(),
                };
                write!(
                    f,
                    "\n  history does not match the digest, and {why}: it cannot tell where"
                )
            }
        }
    }
}
