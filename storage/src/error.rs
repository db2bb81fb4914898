//! The engine's one error type.

use std::path::PathBuf;

use crate::index::IndexKind;
use crate::types::{ColumnId, Seq, TableId};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bytes on disk failed a check (CRC, length, structure). Never skipped silently.
    #[error("corruption in {file} at offset {offset}: {detail}")]
    Corruption {
        file: PathBuf,
        offset: u64,
        detail: String,
    },
    #[error("i/o error on {path}: {source}")]
    IoAt {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("no such table {0}")]
    NoSuchTable(TableId),
    #[error("table {0} already exists")]
    TableExists(TableId),
    #[error("no index on column {column} of table {table}")]
    NoSuchIndex { table: TableId, column: ColumnId },
    #[error("seq {requested} is beyond the current seq {current}")]
    SeqInFuture { requested: Seq, current: Seq },
    #[error("cannot snapshot table {table} at seq {seq}: transaction {xid} is still in progress")]
    Undecided { table: TableId, seq: Seq, xid: u64 },
    /// An INSERT of a key that is live (counting every group not aborted).
    #[error("table {table}: key {key:?} already exists")]
    KeyExists { table: TableId, key: Vec<u8> },
    /// A PATCH or SOFT_DELETE of a key that is not live.
    #[error("table {table}: key {key:?} does not exist")]
    KeyMissing { table: TableId, key: Vec<u8> },
    #[error("invalid transaction: {0}")]
    InvalidTxn(String),
    /// A value that is not a valid stored form of an index kind ([`crate::index_key`]): a
    /// lookup bound given to an index of that kind. A row holding such a value in a column
    /// with an index of that kind is `Corruption` when an index read meets it.
    #[error("not a valid {kind} value: {detail}")]
    BadValue { kind: IndexKind, detail: String },
    /// A frame or snapshot block would exceed its format's limit.
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("store opened read-only")]
    ReadOnly,
    /// The store's files record a segment size other than `Config::segment_size`: every
    /// store opened on one root must use the segment size it was created with. Nothing was
    /// written.
    #[error(
        "segment size mismatch: {} records segment_size {recorded}, but the store is opened with segment_size {configured} (every store opened on one root must use the segment size it was created with)",
        .file.display()
    )]
    SegmentSizeMismatch {
        file: PathBuf,
        recorded: u64,
        configured: u64,
    },
    /// An earlier change to the files failed halfway; the store must be reopened.
    #[error("an earlier write failed ({0}); reopen the store to recover")]
    Broken(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn corruption(
        file: impl Into<PathBuf>,
        offset: u64,
        detail: impl Into<String>,
    ) -> Error {
        Error::Corruption {
            file: file.into(),
            offset,
            detail: detail.into(),
        }
    }

    /// A copy for every waiter of a failed group commit (`io::Error` is not `Clone`).
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Corruption {
                file,
                offset,
                detail,
            } => Error::Corruption {
                file: file.clone(),
                offset: *offset,
                detail: detail.clone(),
            },
            Error::IoAt { path, source } => Error::IoAt {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::Io(e) => Error::Io(std::io::Error::new(e.kind(), e.to_string())),
            Error::Broken(why) => Error::Broken(why.clone()),
            Error::NoSuchTable(t) => Error::NoSuchTable(*t),
            Error::TableExists(t) => Error::TableExists(*t),
            Error::NoSuchIndex { table, column } => Error::NoSuchIndex {
                table: *table,
                column: *column,
            },
            Error::SeqInFuture { requested, current } => Error::SeqInFuture {
                requested: *requested,
                current: *current,
            },
            Error::Undecided { table, seq, xid } => Error::Undecided {
                table: *table,
                seq: *seq,
                xid: *xid,
            },
            Error::KeyExists { table, key } => Error::KeyExists {
                table: *table,
                key: key.clone(),
            },
            Error::KeyMissing { table, key } => Error::KeyMissing {
                table: *table,
                key: key.clone(),
            },
            Error::InvalidTxn(s) => Error::InvalidTxn(s.clone()),
            Error::BadValue { kind, detail } => Error::BadValue {
                kind: *kind,
                detail: detail.clone(),
            },
            Error::TooLarge(s) => Error::TooLarge(s.clone()),
            Error::ReadOnly => Error::ReadOnly,
            Error::SegmentSizeMismatch {
                file,
                recorded,
                configured,
            } => Error::SegmentSizeMismatch {
                file: file.clone(),
                recorded: *recorded,
                configured: *configured,
            },
        }
    }
}

/// Adds the path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| Error::IoAt {
            path: path.to_path_buf(),
            source,
        })
    }
}
