//! The raw Postgres interface of DriftDB, gathered in one place (#22, "a thin, safe
//! Postgres layer").
//!
//! What DriftDB needs from Postgres beyond what pgrx already wraps safely is to live here:
//! relation and tuple access, SPI, memory contexts, locks, catalog lookups, and the
//! plumbing of set-returning functions, each behind a function whose signature says what
//! it needs. The concern modules (the wrapper's callbacks in `fdw`, time travel, history,
//! export, stats) are to call only safe functions of this layer. So far it holds:
//!
//! - [`compat`]: the places where the Postgres versions DriftDB builds for differ.
//! - [`srf`]: the plumbing of DriftDB's hand-written set-returning functions (their V1
//!   info records, the materialised result set, the datums their rows are made of).
//!
//! The rest of the crate still calls `pg_sys` directly, inside documented `unsafe` blocks;
//! `docs/design.md` ("Not built yet") lists what remains to move here.
//!
//! The rules, for this layer and, until every raw call has moved here, for the whole crate
//! (`lib.rs` denies `clippy::undocumented_unsafe_blocks` and `clippy::missing_safety_doc`,
//! and CI runs clippy with `-D warnings`):
//!
//! - Every `unsafe` block has a `// SAFETY:` comment directly above it (or above the
//!   statement that holds it) that says why it is sound: which pointers are valid and who
//!   made them, which Postgres state holds (inside a transaction for a catalog lookup, in
//!   a backend for `MyProc`, the memory context a result lives in), and what the caller
//!   guarantees.
//! - Every `unsafe fn` has a `# Safety` section that says what its caller must guarantee;
//!   the blocks inside it rely on that and say so. (Clippy checks this only for functions
//!   visible outside the crate; the rest is kept by review.)
//! - A safe function is sound for every argument wherever DriftDB calls Postgres: on the
//!   backend's one thread, with a current memory context, inside a transaction unless its
//!   documentation says it needs none. It may raise a Postgres ERROR (pgrx turns it into a
//!   Rust panic and back at the `#[pg_guard]` boundary), but never reads or writes memory
//!   it was not given.
//! - What Postgres allocates lives in the memory context current at the call unless the
//!   function says otherwise; a wrapper that returns it says which context that is.

pub mod compat;
pub mod srf;
