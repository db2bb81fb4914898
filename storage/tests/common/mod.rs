// Shared helpers for the integration tests (included with `mod common;`).
#![allow(dead_code)]

use driftdb_storage::*;

pub fn cfg() -> Config {
    Config {
        durability: Durability::NoSync,
        ..Config::default()
    }
}

pub fn reader_cfg() -> Config {
    Config {
        mode: OpenMode::Reader,
        ..cfg()
    }
}

pub fn v(s: &str) -> Value {
    Some(s.as_bytes().to_vec())
}

pub fn row(cols: &[(u16, &str)]) -> Row {
    Row::from_pairs(cols.iter().map(|(c, s)| (*c, v(s))))
}

pub fn ins(table: TableId, key: &str, cols: &[(u16, &str)]) -> Event {
    Event {
        table,
        key: key.as_bytes().to_vec(),
        op: Op::Insert(row(cols)),
    }
}

pub fn patch(table: TableId, key: &str, cols: &[(u16, Option<&str>)]) -> Event {
    Event {
        table,
        key: key.as_bytes().to_vec(),
        op: Op::Patch(
            cols.iter()
                .map(|(c, s)| (*c, s.map(|s| s.as_bytes().to_vec())))
                .collect(),
        ),
    }
}

pub fn del(table: TableId, key: &str) -> Event {
    Event {
        table,
        key: key.as_bytes().to_vec(),
        op: Op::SoftDelete,
    }
}

pub fn txn(xid: u64, events: Vec<Event>) -> Txn {
    Txn {
        xid,
        commit_ts: xid as i64 * 1000,
        role: format!("role{}", xid % 3),
        events,
    }
}

pub fn scan_all(
    store: &mut Store,
    table: TableId,
    at: Seq,
    fates: &dyn Fates,
) -> Vec<(String, Row)> {
    store
        .scan(table, at, fates)
        .unwrap()
        .map(|r| {
            let (k, row) = r.unwrap();
            (String::from_utf8(k).unwrap(), row)
        })
        .collect()
}

/// Copies a store directory (files only, two levels deep) for crash experiments.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// Whether a file under a store's root (its path relative to the root) is one of the
/// journal's index files: derived from the journal, never WAL-logged, so a replay of the
/// write-ahead log does not write them (redo maintains them with an `IndexMaintainer`).
#[allow(dead_code)]
pub fn is_derived(rel: &str) -> bool {
    rel.starts_with("index/")
}
