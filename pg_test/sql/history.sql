-- drift_history: every event, oldest first, with who and when; drift_diff: what changed
-- between two points.
CREATE FOREIGN TABLE h (id int NOT NULL, name text, tags text[], n numeric)
  SERVER drift OPTIONS (primary_key 'id');
CREATE ROLE h_writer;
GRANT INSERT, UPDATE, DELETE, SELECT ON h TO h_writer;
SELECT drift_current_seq() AS s0 \gset
INSERT INTO h VALUES (1, 'one', '{a,b}', 1.50), (2, 'two', NULL, 2);
SELECT drift_current_seq() AS s1 \gset
SET ROLE h_writer;
UPDATE h SET name = 'uno', n = 1.75 WHERE id = 1;
RESET ROLE;
DELETE FROM h WHERE id = 2;
BEGIN; INSERT INTO h VALUES (9, 'never', NULL, 0); ROLLBACK;
INSERT INTO h VALUES (3, 'three', '{}', NULL);
SELECT drift_current_seq() AS s2 \gset
-- Seqs relative to the start; roles as committed; a PATCH shows the row after it and the
-- columns it set, a SOFT_DELETE the row before it; the rolled-back insert is absent.
SELECT seq - :s0 AS seq, op, "row", changed, role FROM drift_history('h') ORDER BY seq;
-- Commit times never go backwards; the first two events are one transaction of four.
SELECT bool_and(ordered) AS times_ordered FROM (
  SELECT committed_at >= lag(committed_at, 1, '-infinity') OVER (ORDER BY seq) AS ordered
    FROM drift_history('h')) t;
SELECT count(DISTINCT txid) AS transactions FROM drift_history('h');
-- JSON filters, as the reference shows.
SELECT seq - :s0 AS seq, op FROM drift_history('h') WHERE "row"->>'id' = '1' ORDER BY seq;
-- drift_diff between two points: added, changed, removed, with before and after.
SELECT pk, change, before, after FROM drift_diff('h', :s1, :s2) ORDER BY pk->>'id';
SELECT pk, change FROM drift_diff('h', :s0, :s2) ORDER BY pk->>'id';
SELECT count(*) FROM drift_diff('h', :s2, :s2);
-- Errors and privileges, as for drift_as_of.
SELECT * FROM drift_diff('h', :s0, NULL);
DO $$ BEGIN
  PERFORM * FROM drift_diff('h', 0, drift_current_seq() + 1);
EXCEPTION WHEN invalid_parameter_value THEN RAISE NOTICE 'future seq refused: %', SQLSTATE;
END $$;
CREATE TABLE heap_h (id int);
SELECT * FROM drift_history('heap_h');
DROP TABLE heap_h;
CREATE ROLE h_none;
SET ROLE h_none;
SELECT count(*) FROM drift_history('h');
SELECT count(*) FROM drift_diff('h', 0, 1);
RESET ROLE;
DROP ROLE h_none;
DROP OWNED BY h_writer;
DROP ROLE h_writer;
DROP FOREIGN TABLE h;
