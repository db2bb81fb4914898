//! Model test: random appends (some aborted), snapshots, index definitions and reopens,
//! with reads at random seqs checked against a plain in-memory reference.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Bound;

use driftdb_storage::*;
use proptest::prelude::*;

const TABLES: [TableId; 2] = [3, 4];
const KEYS: u8 = 6;
const VALUES: u8 = 4;

#[derive(Clone, Debug)]
struct EvSpec {
    table: u8,
    key: u8,
    delete: bool,
    col: u8,
    val: u8,
}

#[derive(Clone, Debug)]
enum Action {
    Append(Vec<(bool, Vec<EvSpec>)>),
    Snapshot(u8, u16),
    Reopen,
    Index(u8, u8),
    Check(u16, u16),
}

fn ev_spec() -> impl Strategy<Value = EvSpec> {
    (
        0..2u8,
        0..KEYS,
        prop::bool::weighted(0.25),
        1..4u8,
        0..VALUES,
    )
        .prop_map(|(table, key, delete, col, val)| EvSpec {
            table,
            key,
            delete,
            col,
            val,
        })
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => prop::collection::vec((prop::bool::weighted(0.2), prop::collection::vec(ev_spec(), 1..5)), 1..4)
            .prop_map(Action::Append),
        1 => (0..2u8, any::<u16>()).prop_map(|(t, f)| Action::Snapshot(t, f)),
        1 => Just(Action::Reopen),
        1 => (0..2u8, 1..4u8).prop_map(|(t, c)| Action::Index(t, c)),
        2 => (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Action::Check(a, b)),
    ]
}

struct ModelEvent {
    seq: Seq,
    table: TableId,
    key: Vec<u8>,
    op: Op,
    xid: u64,
    ts: i64,
    role: String,
}

#[derive(Default)]
struct Model {
    events: Vec<ModelEvent>,
    aborted: HashSet<u64>,
    /// (commit_ts, last seq) per group.
    groups: Vec<(i64, Seq)>,
    indexes: BTreeSet<(TableId, ColumnId)>,
}

impl Model {
    fn state(&self, table: TableId, at: Seq) -> BTreeMap<Vec<u8>, Row> {
        let mut s: BTreeMap<Vec<u8>, Row> = BTreeMap::new();
        for e in self
            .events
            .iter()
            .filter(|e| e.table == table && e.seq <= at && !self.aborted.contains(&e.xid))
        {
            match &e.op {
                Op::Insert(r) => {
                    s.insert(e.key.clone(), r.clone());
                }
                Op::Patch(p) => {
                    if let Some(r) = s.get_mut(&e.key) {
                        r.apply_patch(p);
                    }
                }
                Op::SoftDelete => {
                    s.remove(&e.key);
                }
            }
        }
        s
    }

    fn last_seq(&self) -> Seq {
        self.groups.last().map_or(0, |g| g.1)
    }

    fn seq_at(&self, ts: i64) -> Seq {
        self.groups
            .iter()
            .rev()
            .find(|g| g.0 <= ts)
            .map_or(0, |g| g.1)
    }
}

fn value(v: u8) -> Value {
    if v == 0 {
        None
    } else {
        Some(vec![b'v', v])
    }
}

fn config() -> Config {
    Config {
        durability: Durability::NoSync,
        segment_size: 700,
        snapshots_kept: 2,
        ..Config::default()
    }
}

fn check(store: &mut Store, model: &Model, fates: &FateSet, at: Seq, from: Seq) {
    let who = format!("{:?} store", store.config().mode);
    assert_eq!(store.current_seq().unwrap(), model.last_seq());
    for table in TABLES {
        let expected = model.state(table, at);
        let got: Vec<(Vec<u8>, Row)> = store
            .scan(table, at, fates)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let want: Vec<(Vec<u8>, Row)> = expected.clone().into_iter().collect();
        assert_eq!(got, want, "{who}: scan of {table} at {at}");
        for k in 0..KEYS {
            let key = vec![b'k', k];
            assert_eq!(
                store.get(table, &key, at, fates).unwrap().as_ref(),
                expected.get(&key),
                "get {k} at {at}"
            );
        }
        for col in 1..4u16 {
            if !model.indexes.contains(&(table, col)) {
                continue;
            }
            for v in 1..VALUES {
                let val = value(v).unwrap();
                let got: Vec<Vec<u8>> = store
                    .index_eq(table, col, &val, at, fates)
                    .unwrap()
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect();
                let want: Vec<Vec<u8>> = expected
                    .iter()
                    .filter(|(_, r)| r.get(col) == Some(val.as_slice()))
                    .map(|(k, _)| k.clone())
                    .collect();
                assert_eq!(got, want, "index_eq {table}.{col}={v} at {at}");
            }
            let lo = value(1).unwrap();
            let got: Vec<(Vec<u8>, Row)> = store
                .index_range(
                    table,
                    col,
                    Bound::Excluded(&lo),
                    Bound::Unbounded,
                    at,
                    fates,
                )
                .unwrap();
            let mut want: Vec<(Vec<u8>, Vec<u8>, Row)> = expected
                .iter()
                .filter_map(|(k, r)| {
                    r.get(col)
                        .filter(|c| *c > lo.as_slice())
                        .map(|c| (c.to_vec(), k.clone(), r.clone()))
                })
                .collect();
            want.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            let want: Vec<(Vec<u8>, Row)> = want.into_iter().map(|(_, k, r)| (k, r)).collect();
            assert_eq!(got, want, "index_range {table}.{col} at {at}");
        }
        // changes(from, at)
        let before = model.state(table, from.min(at));
        let mut keys: BTreeSet<&Vec<u8>> = before.keys().collect();
        keys.extend(expected.keys());
        let want: Vec<Change> = keys
            .into_iter()
            .filter(|k| before.get(*k) != expected.get(*k))
            .map(|k| Change {
                key: k.clone(),
                before: before.get(k).cloned(),
                after: expected.get(k).cloned(),
            })
            .collect();
        assert_eq!(
            store.changes(table, from.min(at), at, fates).unwrap(),
            want,
            "changes {from}..{at}"
        );
        // history of every key
        let hist: Vec<(Seq, Vec<u8>, Op, i64, u64, String)> = store
            .table_history(table, at, fates)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.seq, e.key, e.op, e.commit_ts, e.xid, e.role)
            })
            .collect();
        let want: Vec<(Seq, Vec<u8>, Op, i64, u64, String)> = model
            .events
            .iter()
            .filter(|e| e.table == table && e.seq <= at && !model.aborted.contains(&e.xid))
            .map(|e| {
                (
                    e.seq,
                    e.key.clone(),
                    e.op.clone(),
                    e.ts,
                    e.xid,
                    e.role.clone(),
                )
            })
            .collect();
        assert_eq!(hist, want, "history of {table} at {at}");
        // history of each key (and of one the table never had): the same events, in full
        let mut keys: Vec<Vec<u8>> = want.iter().map(|w| w.1.clone()).collect();
        keys.push(b"k\x00".to_vec());
        keys.push(b"never".to_vec());
        keys.sort();
        keys.dedup();
        for key in keys {
            let got: Vec<(Seq, Vec<u8>, Op, i64, u64, String)> = store
                .history(table, &key, at, fates)
                .unwrap()
                .into_iter()
                .map(|e| (e.seq, e.key, e.op, e.commit_ts, e.xid, e.role))
                .collect();
            let want_key: Vec<_> = want.iter().filter(|w| w.1 == key).cloned().collect();
            assert_eq!(got, want_key, "history of {key:?} in {table} at {at}");
        }
    }
    for (ts, _) in &model.groups {
        for t in [ts - 1, *ts, ts + 1] {
            assert_eq!(store.seq_at(t).unwrap(), model.seq_at(t), "seq_at {t}");
        }
    }
}

fn run(actions: Vec<Action>) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), config()).unwrap();
    for t in TABLES {
        store.create_table(t).unwrap();
    }
    let mut reader = Store::open(
        dir.path(),
        Config {
            mode: OpenMode::Reader,
            ..config()
        },
    )
    .unwrap();
    let mut model = Model::default();
    let mut fates = FateSet::default();
    let mut xid = 100u64;
    let mut ts = 1_000_000i64;
    for action in actions {
        match action {
            Action::Append(txns) => {
                let mut batch = Vec::new();
                // Liveness as the store judges it: every group not aborted, plus this batch.
                let mut live: BTreeMap<(TableId, Vec<u8>), Option<Row>> = BTreeMap::new();
                for t in TABLES {
                    for (k, r) in model.state(t, model.last_seq()) {
                        live.insert((t, k), Some(r));
                    }
                }
                for (aborted, specs) in txns {
                    xid += 1;
                    ts += 7;
                    let mut events = Vec::new();
                    let mut txn_live = live.clone();
                    for s in specs {
                        let table = TABLES[s.table as usize];
                        let key = vec![b'k', s.key];
                        let cur = txn_live.get(&(table, key.clone())).cloned().flatten();
                        let op = match (cur, s.delete) {
                            (Some(_), true) => Op::SoftDelete,
                            (Some(_), false) => Op::Patch(vec![(s.col as u16, value(s.val))]),
                            (None, _) => Op::Insert(Row::from_pairs([
                                (1, value(s.val)),
                                (s.col as u16, value(s.val + 1)),
                            ])),
                        };
                        let next = match &op {
                            Op::SoftDelete => None,
                            Op::Insert(r) => Some(r.clone()),
                            Op::Patch(p) => {
                                let mut r = txn_live[&(table, key.clone())].clone().unwrap();
                                r.apply_patch(p);
                                Some(r)
                            }
                        };
                        txn_live.insert((table, key.clone()), next);
                        events.push(Event { table, key, op });
                    }
                    if !aborted {
                        live = txn_live;
                    }
                    batch.push(Txn {
                        xid,
                        commit_ts: if xid.is_multiple_of(5) { ts - 100 } else { ts },
                        role: format!("r{}", xid % 2),
                        events,
                    });
                    if aborted {
                        fates.aborted.insert(xid);
                        model.aborted.insert(xid);
                    }
                }
                // Aborted transactions' frames reach the log too, invisible to reads.
                let committed = store.append(&batch, &fates).unwrap();
                for (c, txn) in committed.iter().zip(&batch) {
                    for (i, e) in txn.events.iter().enumerate() {
                        model.events.push(ModelEvent {
                            seq: c.first_seq + i as u64,
                            table: e.table,
                            key: e.key.clone(),
                            op: e.op.clone(),
                            xid: txn.xid,
                            ts: c.commit_ts,
                            role: txn.role.clone(),
                        });
                    }
                    model.groups.push((c.commit_ts, c.last_seq));
                }
            }
            Action::Snapshot(t, f) => {
                let at = model.last_seq() * u64::from(f) / u64::from(u16::MAX);
                assert_eq!(store.snapshot(TABLES[t as usize], at, &fates).unwrap(), at);
            }
            Action::Reopen => {
                drop(store);
                store = Store::open(dir.path(), config()).unwrap();
            }
            Action::Index(t, c) => {
                store
                    .create_index(TABLES[t as usize], c as u16, IndexKind::Bytes)
                    .unwrap();
                model.indexes.insert((TABLES[t as usize], c as u16));
            }
            Action::Check(a, b) => {
                let at = model.last_seq() * u64::from(a) / u64::from(u16::MAX);
                let from = model.last_seq() * u64::from(b) / u64::from(u16::MAX);
                check(&mut store, &model, &fates, at, from);
                check(&mut reader, &model, &fates, at, from);
            }
        }
    }
    let last = model.last_seq();
    check(&mut store, &model, &fates, last, last / 2);
    check(&mut reader, &model, &fates, last, 0);
    let mut fresh = Store::open(dir.path(), config()).unwrap();
    check(&mut fresh, &model, &fates, last, last / 3);
    // Every snapshot, its key history section included, is what the log says.
    for t in TABLES {
        let report = fresh.verify(t, &fates).unwrap();
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.snapshots, report.snapshots_compared, "{report:?}");
    }
}

proptest! {
    // PROPTEST_CASES=n runs more cases (the default keeps `cargo test` fast).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_matches_model(actions in prop::collection::vec(action(), 1..30)) {
        run(actions);
    }
}

fn spec(key: u8, col: u8, val: u8) -> EvSpec {
    EvSpec {
        table: 0,
        key,
        delete: false,
        col,
        val,
    }
}

/// Found by the model test: a snapshot taken in the middle of a group.
#[test]
fn snapshot_inside_a_group() {
    run(vec![
        Action::Append(vec![
            (false, vec![spec(0, 1, 0), spec(0, 2, 0)]),
            (false, vec![spec(0, 1, 0)]),
        ]),
        Action::Append(vec![(
            false,
            vec![spec(0, 1, 0), spec(0, 1, 0), spec(0, 1, 0)],
        )]),
        Action::Snapshot(0, 10923),
    ]);
}
