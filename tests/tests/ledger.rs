//! The ledger on a real server (issue #21): a value edited in a table segment behind the
//! stopped server's back, its frame's CRC made valid again, is invisible to `drift_verify`
//! but not to `drift_verify_digest`, which names the table and the seq of the group that
//! changed; the history before it still verifies.

use driftdb_e2e::Cluster;
use postgres::NoTls;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The `.log` segments of a table's directory.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    out.sort();
    out
}

/// Replaces `from` by `to` (as long) in the one frame of the table's segments holding it,
/// and recomputes that frame's CRC: a segment is a 32-byte header, then frames of
/// `u32 len | u32 !len | u32 crc32(payload) | payload` (docs/format.md).
fn edit_with_valid_crc(dir: &Path, from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let mut edited = 0;
    for seg in segments(dir) {
        let mut bytes = std::fs::read(&seg).unwrap();
        let mut at = 32;
        while at + 12 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let payload = at + 12..at + 12 + len;
            if let Some(i) = bytes[payload.clone()]
                .windows(from.len())
                .position(|w| w == from)
            {
                let i = payload.start + i;
                bytes[i..i + to.len()].copy_from_slice(to);
                let crc = crc32fast::hash(&bytes[payload.clone()]);
                bytes[at + 8..at + 12].copy_from_slice(&crc.to_le_bytes());
                edited += 1;
            }
            at = payload.end;
        }
        std::fs::write(&seg, &bytes).unwrap();
    }
    assert_eq!(edited, 1, "the value is in exactly one frame");
}

#[test]
fn an_edited_value_with_a_valid_crc_is_caught_by_the_digest_not_by_verify() {
    let cluster = Cluster::start("ledger", &[]);
    let mut c = cluster.create_db("led");
    c.batch_execute(
        "CREATE FOREIGN TABLE audit (id int NOT NULL, note text) SERVER drift \
            OPTIONS (primary_key 'id');
         CREATE FOREIGN TABLE other (id int NOT NULL) SERVER drift OPTIONS (primary_key 'id');
         INSERT INTO audit SELECT g, 'entry-' || g FROM generate_series(1, 40) g;
         INSERT INTO other VALUES (1);",
    )
    .unwrap();
    let before: String = c.query_one("SELECT drift_digest()", &[]).unwrap().get(0);
    c.batch_execute("INSERT INTO audit VALUES (41, 'payment to account-7781');")
        .unwrap();
    for i in 42..=50 {
        c.execute(
            "INSERT INTO audit VALUES ($1::int, 'entry-' || $1::int)",
            &[&i],
        )
        .unwrap();
    }
    c.batch_execute("UPDATE other SET id = 2 WHERE id = 1")
        .unwrap();
    let digest: String = c.query_one("SELECT drift_digest()", &[]).unwrap().get(0);
    let seq: i64 = c
        .query_one(
            "SELECT seq FROM drift_history('audit') WHERE \"row\"->>'id' = '41'",
            &[],
        )
        .unwrap()
        .get(0);
    let id: i64 = c
        .query_one(
            "SELECT ((SELECT oid FROM pg_database WHERE datname = current_database())::bigint \
             << 32) | 'audit'::regclass::oid::bigint",
            &[],
        )
        .unwrap()
        .get(0);
    for d in [&before, &digest] {
        let ok: bool = c
            .query_one("SELECT drift_verify_digest($1)", &[d])
            .unwrap()
            .get(0);
        assert!(ok, "{d}");
    }
    drop(c);

    // History rewritten under the stopped server: another account, every CRC valid.
    cluster.stop();
    edit_with_valid_crc(
        &cluster.datadir.join(format!("driftdb/tables/{id}")),
        b"account-7781",
        b"account-6666",
    );
    cluster.restart();

    let notices = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let seen = notices.clone();
    let mut c = postgres::Config::new()
        .host("127.0.0.1")
        .port(cluster.port)
        .user("postgres")
        .dbname("led")
        .notice_callback(move |n| {
            seen.lock().unwrap().push((
                n.message().to_string(),
                n.detail().unwrap_or_default().to_string(),
            ))
        })
        .connect(NoTls)
        .unwrap();
    // The server reads the edited row as if it had always been so, and the checks of
    // every frame and snapshot find nothing wrong.
    let note: String = c
        .query_one("SELECT note FROM audit WHERE id = 41", &[])
        .unwrap()
        .get(0);
    assert_eq!(note, "payment to account-6666");
    let verified = c
        .query(
            "SELECT table_name::text, ok FROM drift_verify() ORDER BY 1",
            &[],
        )
        .unwrap();
    assert_eq!(verified.len(), 2);
    assert!(
        verified.iter().all(|r| r.get::<_, bool>(1)),
        "drift_verify is fooled"
    );

    // The digest taken before the edit is not: false, and the warning's detail names the
    // table and the group's seq.
    let ok: bool = c
        .query_one("SELECT drift_verify_digest($1)", &[&digest])
        .unwrap()
        .get(0);
    assert!(!ok);
    let notices = notices.lock().unwrap().clone();
    let (message, detail) = notices.last().expect("a warning");
    println!("{message}\n{detail}");
    assert_eq!(message, "history does not match the digest");
    assert!(
        detail.contains(&format!(
            "group at seq {seq}: changed: its events in table {id} differ"
        )),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("tables of this database: {id} = audit")),
        "{detail}"
    );
    // The digest taken before the edited group still verifies.
    let ok: bool = c
        .query_one("SELECT drift_verify_digest($1)", &[&before])
        .unwrap()
        .get(0);
    assert!(ok);
    // Proofs of the edited group are refused; the history before it still proves.
    let err = c
        .query("SELECT * FROM drift_prove('audit', '41', $1)", &[&seq])
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "XX001", "{err:?}");
    let proved: bool = c
        .query_one(
            "SELECT drift_verify_inclusion(digest, leaf_data, proof) \
               FROM drift_prove('audit', '40', (SELECT seq FROM drift_history('audit') \
                                               WHERE \"row\"->>'id' = '40'))",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(proved);
}
