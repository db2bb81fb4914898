//! The extension loads, answers over TCP, and refuses clearly when it was not preloaded.

use driftdb_e2e::Cluster;

#[test]
fn loads_and_answers_over_tcp_from_several_connections() {
    let cluster = Cluster::start("load", &[]);
    let mut first = cluster.create_db("app");
    let version: String = first
        .query_one("SELECT drift_version()", &[])
        .unwrap()
        .get(0);
    assert!(version.starts_with("driftdb "), "{version}");

    let wrapper: String = first
        .query_one(
            "SELECT w.fdwname::text FROM pg_foreign_server s \
             JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw WHERE s.srvname = 'drift'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(wrapper, "driftdb");

    // Every backend process loads the same library and gives the same answer.
    let answers: Vec<String> = (0..4)
        .map(|_| {
            let port = cluster.port;
            std::thread::spawn(move || {
                let mut c = postgres::Client::connect(
                    &format!("host=127.0.0.1 port={port} user=postgres dbname=app"),
                    postgres::NoTls,
                )
                .unwrap();
                c.query_one("SELECT drift_version()", &[])
                    .unwrap()
                    .get::<_, String>(0)
            })
        })
        .map(|h| h.join().unwrap())
        .collect();
    assert!(answers.iter().all(|a| *a == version), "{answers:?}");
}

#[test]
fn create_extension_without_preload_names_the_setting() {
    let cluster = Cluster::start_with("nopreload", false, &[]);
    let mut c = cluster.connect("postgres");
    let err = c.batch_execute("CREATE EXTENSION driftdb").unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "55000", "{db:?}");
    assert!(
        db.message().contains("shared_preload_libraries"),
        "{}",
        db.message()
    );
    assert!(db
        .hint()
        .unwrap_or("")
        .contains("shared_preload_libraries = 'driftdb'"));
    // Nothing was created by the failed statement.
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_extension WHERE extname = 'driftdb'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}
