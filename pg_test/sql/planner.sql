-- Primary-key equality and IN lists become point lookups; EXPLAIN says so, and the
-- answers are the same as a full scan's.
CREATE FOREIGN TABLE p (id int NOT NULL, name varchar, score int)
  SERVER drift OPTIONS (primary_key 'id');
INSERT INTO p SELECT g, 'n' || g, g % 7 FROM generate_series(1, 500) g;
EXPLAIN (COSTS OFF) SELECT * FROM p WHERE id = 42;
SELECT * FROM p WHERE id = 42;
SELECT * FROM p WHERE 42 = id AND score = 0;
SELECT * FROM p WHERE id = 42 AND score = 1;
EXPLAIN (COSTS OFF) SELECT * FROM p WHERE id IN (3, 1, 2, 3, NULL);
SELECT * FROM p WHERE id IN (3, 1, 2, 3, NULL) ORDER BY id;
SELECT * FROM p WHERE id = NULL;
SELECT count(*) FROM p WHERE id IN (SELECT g FROM generate_series(10, 20) g);
-- Not pushed: another column, a range, a cross-type comparison.
EXPLAIN (COSTS OFF) SELECT * FROM p WHERE score = 3;
EXPLAIN (COSTS OFF) SELECT * FROM p WHERE id < 3;
EXPLAIN (COSTS OFF) SELECT * FROM p WHERE id = 5::bigint;
SELECT count(*) FROM p WHERE id = 5::bigint;
-- Prepared statements: the key is a parameter, evaluated at execution.
PREPARE one(int) AS SELECT name FROM p WHERE id = $1;
EXECUTE one(7);
EXECUTE one(8);
EXECUTE one(9);
EXECUTE one(10);
EXECUTE one(11);
EXECUTE one(600);
-- Own uncommitted writes are seen by lookups too.
BEGIN;
UPDATE p SET name = 'changed' WHERE id = 7;
DELETE FROM p WHERE id = 8;
INSERT INTO p VALUES (501, 'new', 0);
SELECT id, name FROM p WHERE id IN (7, 8, 501) ORDER BY id;
ROLLBACK;
SELECT id, name FROM p WHERE id IN (7, 8, 501) ORDER BY id;
-- UPDATE and DELETE by key use the lookup as well.
EXPLAIN (COSTS OFF) UPDATE p SET score = 100 WHERE id = 9;
UPDATE p SET score = 100 WHERE id = 9;
DELETE FROM p WHERE id IN (10, 11);
SELECT count(*), sum(score) FROM p;
-- Composite keys need every key column.
CREATE FOREIGN TABLE pc (a int, b text, v int) SERVER drift OPTIONS (primary_key 'a,b');
INSERT INTO pc VALUES (1, 'x', 10), (1, 'y', 11), (2, 'x', 20);
EXPLAIN (COSTS OFF) SELECT v FROM pc WHERE a = 1 AND b = 'y';
SELECT v FROM pc WHERE a = 1 AND b = 'y';
EXPLAIN (COSTS OFF) SELECT v FROM pc WHERE a = 1;
SELECT v FROM pc WHERE a = 1 ORDER BY v;
DROP FOREIGN TABLE p, pc;
-- Before ANALYZE, the planner gets the engine's estimate of a table's rows (its snapshot's
-- rows plus the inserts and minus the deletes after it), not a fixed guess.
CREATE FOREIGN TABLE est (id int NOT NULL) SERVER drift OPTIONS (primary_key 'id');
CREATE FUNCTION plan_rows(q text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE j json;
BEGIN
  EXECUTE 'EXPLAIN (FORMAT JSON) ' || q INTO j;
  RETURN (j->0->'Plan'->>'Plan Rows')::float8;
END $$;
INSERT INTO est SELECT generate_series(1, 500);
SELECT plan_rows('SELECT * FROM est') AS after_insert;
SELECT drift_snapshot('est') > 0 AS snapshotted;
DELETE FROM est WHERE id <= 100;
INSERT INTO est VALUES (1000), (1001);
SELECT plan_rows('SELECT * FROM est') AS after_changes;
SELECT count(*) FROM est;
DROP FUNCTION plan_rows(text);
DROP FOREIGN TABLE est;
