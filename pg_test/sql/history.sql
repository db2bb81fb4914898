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
-- A condition on every key column is pushed down: only that row's events are read and
-- rendered (drift_history_key); Postgres still applies the conditions.
EXPLAIN (COSTS OFF) SELECT * FROM drift_history('h') WHERE "row"->>'id' = '1';
SELECT seq - :s0 AS seq, op, "row" FROM drift_history('h') WHERE "row"->>'id' = '1'
  ORDER BY seq;
SELECT seq - :s0 AS seq, op FROM drift_history('h') WHERE op = 'PATCH' AND '1' = "row"->>'id';
SELECT op, "row"->>'name' AS name FROM drift_history('h') WHERE "row"->>'id' = '2' ORDER BY seq;
-- Text no key value renders as matches nothing, as the condition does, without an error.
SELECT count(*) FROM drift_history('h') WHERE "row"->>'id' = '01';
SELECT count(*) FROM drift_history('h') WHERE "row"->>'id' = 'one';
SELECT count(*) FROM drift_history('h') WHERE "row"->>'id' = '99999999999';
SELECT count(*) FROM drift_history('h') WHERE "row"->>'id' = NULL;
-- A parameter; an OR is not pushed down, and gives the same rows.
PREPARE hk(text) AS SELECT op FROM drift_history('h') WHERE "row"->>'id' = $1 ORDER BY seq;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE hk('2');
EXECUTE hk('2');
EXECUTE hk('1');
RESET plan_cache_mode;
DEALLOCATE hk;
EXPLAIN (COSTS OFF)
  SELECT op FROM drift_history('h') WHERE "row"->>'id' = '1' OR "row"->>'id' = '3';
SELECT count(*) FROM drift_history('h') WHERE "row"->>'id' = '1' OR "row"->>'id' = '3';
-- A composite key needs both columns; a text key part is its text.
CREATE FOREIGN TABLE hk2 (a text NOT NULL, b int NOT NULL, v text)
  SERVER drift OPTIONS (primary_key 'a, b');
INSERT INTO hk2 VALUES ('x', 1, 'p'), ('x', 2, 'q'), ('y', 1, 'r');
UPDATE hk2 SET v = 'p2' WHERE a = 'x' AND b = 1;
EXPLAIN (COSTS OFF)
  SELECT op FROM drift_history('hk2') WHERE "row"->>'b' = '1' AND "row"->>'a' = 'x';
SELECT op, "row"->>'v' AS v FROM drift_history('hk2')
  WHERE "row"->>'b' = '1' AND "row"->>'a' = 'x' ORDER BY seq;
EXPLAIN (COSTS OFF) SELECT op FROM drift_history('hk2') WHERE "row"->>'a' = 'x';
SELECT count(*) FROM drift_history('hk2') WHERE "row"->>'a' = 'x';
SELECT count(*) FROM drift_history_key('hk2', ARRAY['x']);
-- A key the text cannot be turned back into (a date renders in JSON's form): not pushed
-- down; called directly, refused.
CREATE FOREIGN TABLE hd (d date NOT NULL) SERVER drift OPTIONS (primary_key 'd');
INSERT INTO hd VALUES ('2026-01-02');
EXPLAIN (COSTS OFF) SELECT op FROM drift_history('hd') WHERE "row"->>'d' = '2026-01-02';
SELECT op FROM drift_history('hd') WHERE "row"->>'d' = '2026-01-02';
SELECT count(*) FROM drift_history_key('hd', ARRAY['2026-01-02']);
DROP FOREIGN TABLE hk2, hd;
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
SELECT count(*) FROM drift_history('h') WHERE "row"->>'id' = '1';
SELECT count(*) FROM drift_diff('h', 0, 1);
RESET ROLE;
DROP ROLE h_none;
DROP OWNED BY h_writer;
DROP ROLE h_writer;
DROP FOREIGN TABLE h;
