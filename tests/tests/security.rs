//! The extension's SQL under a hostile search_path (#23): a role with CREATE on `public`
//! plants functions, operators and an aggregate that shadow what DriftDB's SQL calls, before
//! CREATE EXTENSION and before each call; a superuser then creates the extension and uses
//! it with `public` first on the search path. Nothing planted may ever run. CREATE
//! EXTENSION refuses a schema where a role that is not a superuser may create objects.

use driftdb_e2e::{Client, Cluster};

/// Every planted object records who ran it in `public.planted_ran`.
const PLANT: &str = r#"
CREATE TABLE public.planted_ran (who name, what text);
GRANT INSERT, SELECT ON public.planted_ran TO PUBLIC;
CREATE ROLE mallory;
GRANT CREATE ON SCHEMA public TO mallory;
SET ROLE mallory;
CREATE FUNCTION public.planted_div(numeric, bigint) RETURNS numeric LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.planted_ran VALUES (current_user, '/'); RETURN 1; END $$;
CREATE OPERATOR public./ (LEFTARG = numeric, RIGHTARG = bigint, FUNCTION = public.planted_div);
CREATE FUNCTION public.cardinality(text[]) RETURNS int LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.planted_ran VALUES (current_user, 'cardinality'); RETURN 1; END $$;
CREATE FUNCTION public.planted_acc(bigint[], bigint) RETURNS bigint[] LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.planted_ran VALUES (current_user, 'array_agg'); RETURN $1 || $2; END $$;
CREATE AGGREGATE public.array_agg(bigint) (SFUNC = public.planted_acc, STYPE = bigint[]);
CREATE FUNCTION public.planted_eq(oid, oid) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.planted_ran VALUES (current_user, '='); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = public.planted_eq);
CREATE FUNCTION public.drift_server_stats() RETURNS TABLE (name text, value bigint) LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.planted_ran VALUES (current_user, 'drift_server_stats'); RETURN; END $$;
CREATE FUNCTION public.drift_table_stats() RETURNS TABLE (relid oid, events bigint, live_rows bigint,
        log_bytes bigint, segments int, snapshot_seq bigint, snapshot_bytes bigint,
        snapshot_raw_bytes bigint, snapshot_compressed_bytes bigint, indexes text[]) LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.planted_ran VALUES (current_user, 'drift_table_stats'); RETURN; END $$;
RESET ROLE;
"#;

fn ran(c: &mut Client) -> Vec<(String, String)> {
    c.query(
        "SELECT who::text, what FROM public.planted_ran ORDER BY 1, 2",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Runs every DriftDB function of the extension in schema `s` under each hostile
/// search_path; the table `t` (in public) exists.
fn use_everything(su: &mut Client, s: &str) {
    for path in ["public", "public, pg_catalog", "public, drift", "''"] {
        su.batch_execute(&format!("SET search_path = {path}"))
            .unwrap();
        for sql in [
            "SELECT count(*), sum(compression_ratio) FROM S.drift_tables",
            "SELECT count(*) FROM S.drift_stats()",
            "SELECT count(*) FROM S.drift_verify()",
            "SELECT count(*) FROM S.drift_verify('public.t')",
            "SELECT count(*) FROM S.drift_history('public.t')",
            "SELECT count(*) FROM S.drift_history('public.t') WHERE \"row\"->>'id' = '1'",
            "SELECT count(*) FROM S.drift_diff('public.t', 0, S.drift_current_seq())",
            "SELECT count(*) FROM S.drift_export('public.t')",
            "SELECT count(*) FROM S.drift_as_of(NULL::public.t, S.drift_current_seq())",
            "SELECT count(*) FROM S.drift_health()",
            "SELECT count(*) FROM S.drift_server_stats()",
            "SELECT S.drift_seq_at(now()) >= 0",
            "SELECT S.drift_version()",
        ] {
            let sql = sql.replace("S.", &format!("{s}."));
            su.query(sql.as_str(), &[])
                .unwrap_or_else(|e| panic!("{sql} with search_path {path}: {e}"));
        }
        // An import reads its events through SPI.
        su.batch_execute(&format!(
            "CREATE TEMP TABLE ev AS SELECT * FROM {s}.drift_export('public.t'); \
             CREATE FOREIGN TABLE public.t2 (id int NOT NULL, v text, tags text[]) SERVER drift \
             OPTIONS (primary_key 'id'); \
             SELECT {s}.drift_import('public.t2', 'ev'); \
             DROP FOREIGN TABLE public.t2; DROP TABLE ev"
        ))
        .unwrap_or_else(|e| panic!("import with search_path {path}: {e}"));
    }
    su.batch_execute("RESET search_path").unwrap();
}

fn make_table(su: &mut Client, s: &str) {
    su.batch_execute(&format!(
        "CREATE FOREIGN TABLE public.t (id int NOT NULL, v text, tags text[]) SERVER drift \
         OPTIONS (primary_key 'id'); \
         INSERT INTO public.t SELECT g, 'v' || g, ARRAY['a'] FROM generate_series(1, 100) g; \
         UPDATE public.t SET v = 'w' WHERE id < 10; \
         SELECT {s}.drift_snapshot('public.t'); SELECT {s}.drift_create_index('public.t', 'v')"
    ))
    .unwrap();
}

#[test]
fn planted_objects_in_public_never_run() {
    let cluster = Cluster::start("searchpath", &[]);
    cluster
        .connect("postgres")
        .batch_execute("CREATE DATABASE app")
        .unwrap();
    let mut su = cluster.connect("app");
    let (generic, own_names) = PLANT
        .split_once("CREATE FUNCTION public.drift_server_stats")
        .unwrap();
    su.batch_execute(&format!("{generic}\nRESET ROLE;"))
        .unwrap();

    // The plants work: an unqualified query of the superuser with public first runs them.
    su.batch_execute(
        "SET search_path = public, pg_catalog; \
         SELECT 1::numeric / 2::bigint, cardinality('{a}'::text[]); RESET search_path",
    )
    .unwrap();
    assert_eq!(
        ran(&mut su),
        vec![
            ("postgres".into(), "/".into()),
            ("postgres".into(), "cardinality".into())
        ]
    );
    su.batch_execute("DELETE FROM public.planted_ran").unwrap();

    // Not in a schema where a role that is not a superuser may create objects (42501):
    // mallory could plant what a later update script replaces.
    let e = su.batch_execute("CREATE EXTENSION driftdb").unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42501", "{db:?}");
    assert!(db.message().contains("mallory"), "{db:?}");
    // The extension in public, where the plants are (the default schema), once mallory
    // may no longer create there.
    su.batch_execute("REVOKE CREATE ON SCHEMA public FROM mallory")
        .unwrap();
    su.batch_execute("CREATE EXTENSION driftdb").unwrap();
    make_table(&mut su, "public");
    use_everything(&mut su, "public");
    assert_eq!(ran(&mut su), Vec::<(String, String)>::new());

    // The extension in a schema of its own, with look-alikes of its functions in public;
    // a superuser-planted C handler in public is not what the wrapper uses either.
    su.batch_execute("DROP EXTENSION driftdb CASCADE; GRANT CREATE ON SCHEMA public TO mallory")
        .unwrap();
    su.batch_execute(&format!(
        "SET ROLE mallory; CREATE FUNCTION public.drift_server_stats{own_names}"
    ))
    .unwrap();
    su.batch_execute(
        "CREATE FUNCTION public.driftdb_fdw_handler() RETURNS fdw_handler LANGUAGE c \
           AS 'driftdb', 'driftdb_fdw_handler_wrapper'; \
         CREATE SCHEMA drift; SET search_path = public, drift; \
         CREATE EXTENSION driftdb SCHEMA drift; RESET search_path",
    )
    .unwrap();
    let handler: String = su
        .query_one(
            "SELECT fdwhandler::regprocedure::text FROM pg_foreign_data_wrapper \
              WHERE fdwname = 'driftdb'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(handler, "drift.driftdb_fdw_handler()");
    make_table(&mut su, "drift");
    use_everything(&mut su, "drift");
    assert_eq!(ran(&mut su), Vec::<(String, String)>::new());
}
