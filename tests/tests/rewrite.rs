//! The planner rewrite of `drift_as_of` calls (src/fdw/asof_call.rs) against generated
//! queries: LATERAL references, correlated sublinks, CTEs, set operations and window
//! frames, with points that are constants, parameters or columns of other relations at
//! any query level. Every query is compared with the same query over an oracle: a heap
//! table holding the table's state after each commit, read through a SQL function. A
//! point that refers to another relation's row once crashed the server (#24): the server
//! must answer every query and its log must show no crash.

use driftdb_e2e::{Client, Cluster, Rng};

/// The rows of `sql` as one text, in a fixed order.
fn answer(c: &mut Client, sql: &str) -> Result<String, String> {
    c.query_one(
        &format!("SELECT coalesce(json_agg(r ORDER BY r::text), '[]')::text FROM ({sql}) r"),
        &[],
    )
    .map(|r| r.get(0))
    .map_err(|e| format!("{e}"))
}

/// Builds the history of `t` and the oracle: `expect` holds every committed state with its
/// seq and a time right after its commit; `pts` the points to read at.
fn setup(c: &mut Client) {
    c.batch_execute(
        "CREATE FOREIGN TABLE t (id int NOT NULL, v int) SERVER drift \
           OPTIONS (primary_key 'id');
         CREATE TABLE expect (seq bigint, at timestamptz, id int, v int);
         CREATE TABLE pts (q bigint, at timestamptz);
         INSERT INTO pts VALUES (0, '2000-01-01');
         -- The state at seq $1 / at time $1, read from the oracle (an empty state is
         -- recorded as one row of NULLs).
         CREATE FUNCTION exp_at(bigint) RETURNS TABLE (id int, v int) LANGUAGE sql STABLE AS
           $$ SELECT id, v FROM expect WHERE id IS NOT NULL
                AND seq = (SELECT max(seq) FROM expect WHERE seq <= $1) $$;
         CREATE FUNCTION exp_at(timestamptz) RETURNS TABLE (id int, v int) LANGUAGE sql STABLE AS
           $$ SELECT id, v FROM expect WHERE id IS NOT NULL
                AND seq = (SELECT max(seq) FROM expect WHERE at <= $1) $$;",
    )
    .unwrap();
    let mut rng = Rng(0x5eed_0024);
    let (mut commits, mut last) = (0, 0i64);
    for i in 0..60 {
        let id = rng.below(6) as i32;
        let sql = match i % 4 {
            0 | 1 => format!("INSERT INTO t VALUES ({id}, {i})"),
            2 => format!("UPDATE t SET v = v + {i} WHERE id = {id}"),
            _ => format!("DELETE FROM t WHERE id = {id}"),
        };
        // An INSERT of a key that exists fails (23505) and leaves nothing to record.
        if c.batch_execute(&sql).is_err() {
            continue;
        }
        // An UPDATE or DELETE of a missing key commits no event: nothing new to record.
        let seq: i64 = c
            .query_one("SELECT drift_current_seq()", &[])
            .unwrap()
            .get(0);
        if seq == last {
            continue;
        }
        last = seq;
        commits += 1;
        c.batch_execute(&format!(
            "INSERT INTO expect SELECT {seq}, clock_timestamp(), id, v FROM t;
             INSERT INTO expect SELECT {seq}, clock_timestamp(), NULL, NULL
               WHERE NOT EXISTS (SELECT FROM t);
             INSERT INTO pts SELECT {seq}, clock_timestamp();"
        ))
        .unwrap();
    }
    assert!(commits >= 20, "{commits} commits");
}

/// One generated query, with `{S}` standing for the source read at a point: the caller
/// puts `drift_as_of(NULL::t, <point>)` or the oracle `exp_at(<point>)` there.
fn generate(rng: &mut Rng) -> (String, String) {
    // Points: (for a bigint read, for a timestamptz read), in terms of `p`, a row of pts
    // visible where the source is read.
    let seq_points = [
        "p.q",
        "p.q + 0",
        "(p.q)::int8",
        "coalesce(p.q, 0)",
        "greatest(p.q - 1, 0)",
        "(SELECT max(q) FROM pts p2 WHERE p2.q <= p.q)",
        "5",
        "$$7$$::bigint",
        "(SELECT max(q) FROM pts)",
    ];
    let time_points = [
        "p.at",
        "p.at + interval '0 s'",
        "now()",
        "(p.at)::timestamptz",
    ];
    let point = if rng.below(3) == 0 {
        rng.pick(&time_points)
    } else {
        rng.pick(&seq_points)
    };
    let filter = rng.pick(&[
        "",
        " WHERE x.id = 3",
        " WHERE x.id IN (1, 2)",
        " WHERE x.id > 2",
        " WHERE x.v IS NOT NULL",
    ]);
    let template = rng.pick(&[
        // LATERAL subquery (pulled up) and LATERAL call.
        "SELECT p.q, x.id, x.v FROM pts p, LATERAL (SELECT * FROM {S} x{F}) x",
        "SELECT p.q, x.id, x.v FROM pts p, LATERAL {S} x WHERE true{G}",
        "SELECT p.q, x.id FROM pts p LEFT JOIN LATERAL (SELECT * FROM {S} x{F} LIMIT 3) x ON true",
        // Correlated sublinks.
        "SELECT p.q, (SELECT count(*) FROM {S} x{F}) AS n FROM pts p",
        "SELECT p.q FROM pts p WHERE EXISTS (SELECT 1 FROM {S} x{F})",
        "SELECT p.q FROM pts p WHERE 3 IN (SELECT x.id FROM {S} x{F})",
        "SELECT p.q, ARRAY(SELECT x.v FROM {S} x{F} ORDER BY x.id) FROM pts p",
        // CTEs.
        "WITH c AS (SELECT * FROM pts) SELECT p.q, x.id FROM c p, LATERAL (SELECT * FROM {S} x{F}) x",
        "WITH c AS MATERIALIZED (SELECT p.q, x.id, x.v FROM pts p, LATERAL (SELECT * FROM {S} x{F}) x) \
         SELECT * FROM c",
        // Set operations.
        "SELECT p.q, x.id FROM pts p, LATERAL (SELECT id FROM {S} x{F} UNION SELECT -1) x",
        "SELECT p.q, x.id FROM pts p, LATERAL (SELECT x.id FROM {S} x{F} EXCEPT SELECT 4) x",
        // Window frames.
        "SELECT p.q, x.id, sum(x.v) OVER (PARTITION BY p.q ORDER BY x.id \
           ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM pts p, LATERAL (SELECT * FROM {S} x{F}) x",
        // Nested levels: the point two levels out.
        "SELECT p.q, (SELECT count(*) FROM (SELECT * FROM {S} x{F}) y) FROM pts p",
        "SELECT p.q, (SELECT max(z.n) FROM (SELECT 1 AS n) z \
           WHERE EXISTS (SELECT 1 FROM {S} x{F})) FROM pts p",
    ]);
    let g = filter.replacen(" WHERE", " AND", 1);
    let fill = |source: &str| {
        template
            .replace("{S}", source)
            .replace("{F}", filter)
            .replace("{G}", &g)
    };
    (
        fill(&format!("drift_as_of(NULL::t, {point})")),
        fill(&format!("exp_at({point})")),
    )
}

#[test]
fn generated_queries_read_the_past_like_the_oracle_and_never_crash() {
    let cluster = Cluster::start("rewrite", &[]);
    let mut c = cluster.create_db("app");
    setup(&mut c);
    // The query of the report, as it was.
    assert_eq!(
        answer(
            &mut c,
            "SELECT x.id FROM pts, LATERAL (SELECT * FROM drift_as_of(NULL::t, pts.q)) x"
        ),
        answer(
            &mut c,
            "SELECT x.id FROM pts, LATERAL (SELECT * FROM exp_at(pts.q)) x"
        )
    );
    let mut rng = Rng(0xd1f7_0024);
    let mut compared = 0;
    for i in 0..400 {
        let (query, oracle) = generate(&mut rng);
        let got = answer(&mut c, &query);
        let want = answer(&mut c, &oracle);
        assert_eq!(got, want, "query {i}: {query}\noracle: {oracle}");
        assert!(got.is_ok(), "query {i} failed: {query}: {got:?}");
        compared += 1;
    }
    assert_eq!(compared, 400);
    // Some answers hold rows: the oracle is not trivially empty.
    let rows = answer(
        &mut c,
        "SELECT p.q, x.id FROM pts p, LATERAL drift_as_of(NULL::t, p.q) x",
    )
    .unwrap();
    assert!(rows.len() > 100, "{rows}");
    let log = cluster.server_log();
    assert!(
        !log.contains("terminated by signal") && !log.contains("PANIC"),
        "the server crashed:\n{log}"
    );
}
