//! An oracle test of reading the past: a random workload over two tables from three
//! connections; after every commit the full state of both tables, the seq and the time are
//! recorded; afterwards `drift_as_of` by seq and by time must give back every recorded state.

use driftdb_e2e::{Client, Cluster, Rng};

type State = Vec<(i32, String, i32)>;

fn state(c: &mut Client, table: &str) -> State {
    c.query(&format!("SELECT id, name, n FROM {table} ORDER BY id"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

fn as_of_seq(c: &mut Client, table: &str, seq: i64) -> State {
    c.query(
        &format!("SELECT id, name, n FROM drift_as_of(NULL::{table}, $1::bigint) ORDER BY id"),
        &[&seq],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// The same read through the function itself: WITH ORDINALITY keeps the call a function
/// (any other plain call is planned as a scan of the table at that point).
fn as_of_seq_function(c: &mut Client, table: &str, seq: i64) -> State {
    c.query(
        &format!(
            "SELECT id, name, n FROM drift_as_of(NULL::{table}, $1::bigint) WITH ORDINALITY \
             ORDER BY id"
        ),
        &[&seq],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// A point lookup in the past (pushed down to the key).
fn as_of_key(c: &mut Client, table: &str, seq: i64, id: i32) -> State {
    c.query(
        &format!("SELECT id, name, n FROM drift_as_of(NULL::{table}, $1::bigint) WHERE id = $2"),
        &[&seq, &id],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

fn as_of_time(c: &mut Client, table: &str, at: &str) -> State {
    c.query(
        &format!(
            "SELECT id, name, n FROM drift_as_of(NULL::{table}, $1::text::timestamptz) ORDER BY id"
        ),
        &[&at],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// One random statement on a random table.
fn random_statement(rng: &mut Rng) -> String {
    let table = if rng.below(2) == 0 { "a" } else { "b" };
    let id = rng.below(12) as i32;
    match rng.below(4) {
        0 | 1 => format!(
            "INSERT INTO {table} VALUES ({id}, 'r{}', {}) ",
            rng.below(1000),
            rng.below(100)
        ),
        2 => format!(
            "UPDATE {table} SET n = n + {} WHERE id = {id}",
            rng.below(9) + 1
        ),
        _ => format!("DELETE FROM {table} WHERE id = {id}"),
    }
}

#[test]
fn past_reads_equal_every_recorded_state() {
    let cluster = Cluster::start("oracle", &[]);
    let mut setup = cluster.create_db("app");
    for t in ["a", "b"] {
        setup
            .batch_execute(&format!(
                "CREATE FOREIGN TABLE {t} (id int NOT NULL, name text, n int) \
                 SERVER drift OPTIONS (primary_key 'id')"
            ))
            .unwrap();
    }
    let mut conns: Vec<Client> = (0..3).map(|_| cluster.connect("app")).collect();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    // (seq, time, state of a, state of b) after every commit.
    let mut records: Vec<(i64, String, State, State)> = Vec::new();
    let mut commits = 0;
    let mut tries = 0;
    while commits < 40 {
        tries += 1;
        assert!(tries < 400, "the workload stopped committing");
        let c = &mut conns[rng.below(3) as usize];
        c.batch_execute("BEGIN").unwrap();
        let mut ok = true;
        for _ in 0..(1 + rng.below(4)) {
            let stmt = random_statement(&mut rng);
            if rng.below(4) == 0 {
                // A statement inside a savepoint that is rolled back leaves no trace.
                c.batch_execute("SAVEPOINT s").unwrap();
                let _ = c.batch_execute(&stmt);
                c.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
            } else if c.batch_execute(&stmt).is_err() {
                ok = false; // a duplicate key: the transaction is aborted
                break;
            }
        }
        if !ok || rng.below(5) == 0 {
            c.batch_execute("ROLLBACK").unwrap();
            continue;
        }
        c.batch_execute("COMMIT").unwrap();
        commits += 1;
        let row = setup
            .query_one("SELECT drift_current_seq(), clock_timestamp()::text", &[])
            .unwrap();
        let (seq, at): (i64, String) = (row.get(0), row.get(1));
        records.push((seq, at, state(&mut setup, "a"), state(&mut setup, "b")));
    }
    assert!(records.iter().any(|r| !r.2.is_empty()) && records.iter().any(|r| !r.3.is_empty()));
    let mut reader = cluster.connect("app");
    for (i, (seq, at, a, b)) in records.iter().enumerate() {
        assert_eq!(
            &as_of_seq(&mut reader, "a", *seq),
            a,
            "a as of seq {seq} (commit {i})"
        );
        assert_eq!(
            &as_of_seq(&mut reader, "b", *seq),
            b,
            "b as of seq {seq} (commit {i})"
        );
        assert_eq!(
            &as_of_time(&mut reader, "a", at),
            a,
            "a as of {at} (commit {i})"
        );
        assert_eq!(
            &as_of_seq_function(&mut reader, "a", *seq),
            a,
            "a as of seq {seq} through the function (commit {i})"
        );
        for id in [0, 1, 2, 3, 5, 8, 13] {
            let want: State = a.iter().filter(|r| r.0 == id).cloned().collect();
            assert_eq!(
                as_of_key(&mut reader, "a", *seq, id),
                want,
                "a key {id} as of seq {seq} (commit {i})"
            );
        }
        assert_eq!(
            &as_of_time(&mut reader, "b", at),
            b,
            "b as of {at} (commit {i})"
        );
    }
    // Under SET driftdb.as_of, plain reads of both tables (and a join of them) see the
    // recorded state of that point.
    for (seq, at, a, b) in records.iter().step_by(3) {
        for point in [seq.to_string(), at.clone()] {
            reader
                .batch_execute(&format!("SET driftdb.as_of = '{point}'"))
                .unwrap();
            assert_eq!(&state(&mut reader, "a"), a, "a under as_of {point}");
            assert_eq!(&state(&mut reader, "b"), b, "b under as_of {point}");
            let joined: i64 = reader
                .query_one("SELECT count(*) FROM a JOIN b USING (id)", &[])
                .unwrap()
                .get(0);
            let expected = a.iter().filter(|r| b.iter().any(|q| q.0 == r.0)).count() as i64;
            assert_eq!(joined, expected, "join under as_of {point}");
        }
        reader.batch_execute("RESET driftdb.as_of").unwrap();
    }
    // Past reads from inside a REPEATABLE READ transaction give the same answers.
    reader
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .unwrap();
    let (seq, _, a, _) = &records[records.len() / 2];
    assert_eq!(&as_of_seq(&mut reader, "a", *seq), a);
    reader.batch_execute("COMMIT").unwrap();
}
