-- drift_verify re-reads every frame and snapshot of DriftDB tables. Here every table is
-- healthy; damaged files are exercised by the engine's tests and the end-to-end tests.
CREATE FOREIGN TABLE v1 (id int NOT NULL, name text) SERVER drift OPTIONS (primary_key 'id');
CREATE FOREIGN TABLE v2 (id int NOT NULL, n int) SERVER drift OPTIONS (primary_key 'id');
CREATE FOREIGN TABLE v_empty (id int, note text) SERVER drift;
-- Never written: no storage yet, nothing to be wrong.
SELECT * FROM drift_verify('v_empty');
-- One frame per transaction that wrote the table; rolled-back ones write none.
INSERT INTO v1 VALUES (1, 'a');
INSERT INTO v1 VALUES (2, 'b'), (3, 'c');
UPDATE v1 SET name = 'B' WHERE id = 2;
BEGIN; DELETE FROM v1; ROLLBACK;
DELETE FROM v1 WHERE id = 3;
SELECT * FROM drift_verify('v1');
-- A transaction writing two tables: one frame in each.
BEGIN;
INSERT INTO v1 VALUES (4, 'd');
INSERT INTO v2 SELECT g, g * 10 FROM generate_series(1, 100) g;
COMMIT;
SELECT table_name, frames, ok FROM drift_verify('v1');
SELECT table_name, frames, ok FROM drift_verify('v2');
-- Snapshots (with an index section) are checked against the log: still whole after more
-- writes and a second snapshot.
SELECT drift_create_index('v2', 'n');
SELECT drift_snapshot('v2') > 0 AS snapshot;
UPDATE v2 SET n = -n WHERE id % 7 = 0;
DELETE FROM v2 WHERE id > 90;
SELECT drift_snapshot('v1') > 0 AS snapshot_v1, drift_snapshot('v2') > 0 AS snapshot_v2;
INSERT INTO v2 VALUES (1000, 1);
SELECT table_name, frames, ok, detail FROM drift_verify('v2');
-- Without an argument: every DriftDB table of the database the caller may read.
SELECT table_name, frames, ok, detail FROM drift_verify()
 WHERE table_name::text LIKE 'v%' ORDER BY table_name::text;
SELECT count(*) > 0 AS some, bool_and(ok) AS all_ok FROM drift_verify();
-- A dropped table is gone from the list.
CREATE FOREIGN TABLE v_gone (id int) SERVER drift;
INSERT INTO v_gone VALUES (1);
DROP FOREIGN TABLE v_gone;
SELECT count(*) AS gone FROM drift_verify() WHERE table_name::text = 'v_gone';
-- Verification needs SELECT on the table (42501), as a plain SELECT does; without an
-- argument, tables the caller cannot read are left out.
CREATE ROLE v_reader;
GRANT SELECT ON v1 TO v_reader;
SET ROLE v_reader;
SELECT table_name, frames, ok FROM drift_verify('v1');
SELECT table_name FROM drift_verify() ORDER BY table_name::text;
SELECT * FROM drift_verify('v2');
DO $$ BEGIN
  PERFORM * FROM drift_verify('v2');
EXCEPTION WHEN insufficient_privilege THEN RAISE NOTICE 'refused: %', SQLSTATE;
END $$;
RESET ROLE;
-- Not a DriftDB table.
CREATE TABLE heap_v (id int);
SELECT * FROM drift_verify('heap_v');
DROP TABLE heap_v;
DROP OWNED BY v_reader;
DROP ROLE v_reader;
DROP FOREIGN TABLE v1, v2, v_empty;
