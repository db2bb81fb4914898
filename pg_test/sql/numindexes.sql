-- Indexes on numeric, real and double precision (#22): equal values with different
-- stored images (1.0 and 1.00, 0 and -0, every NaN) are one index key, and keys sort as
-- the values do (-Infinity < numbers < Infinity < NaN), so equality and ranges are pushed
-- down and answer exactly what a heap table answers.
\set VERBOSITY terse
CREATE DOMAIN nx_amount AS numeric(12, 3);
CREATE FOREIGN TABLE nx (id int NOT NULL, n numeric, f real, d double precision,
                         a nx_amount)
  SERVER drift OPTIONS (primary_key 'id');
CREATE TABLE nh (id int PRIMARY KEY, n numeric, f real, d double precision, a nx_amount);
INSERT INTO nh VALUES
  (1, 1.0, 1.5, 1.0, 1),
  (2, 1.00, -0.0, -0.0, 1.5),
  (3, 1, 0, 0, 2.25),
  (4, -1.5, -1.5, -1.5, -1),
  (5, 'NaN', 'NaN', 'NaN', 0),
  (6, 'Infinity', 'Infinity', 'Infinity', 100.001),
  (7, '-Infinity', '-Infinity', '-Infinity', -100.001),
  (8, 0.000001, 1e-40, 1e-300, 0.001),
  (9, 123456789012345678901234567890.5, 3.4e38, 1.7e308, 999999999.999),
  (10, -0.0, 2.5, '-NaN', -0.001),
  (11, NULL, NULL, NULL, NULL),
  (12, 1.0001, 1.0001, 1.0001, 1.001),
  (13, -1.0001, -1.0001, -1.0001, -1.001);
INSERT INTO nx SELECT * FROM nh;
SELECT drift_create_index('nx', 'n');
SELECT drift_create_index('nx', 'f');
SELECT drift_create_index('nx', 'd');
SELECT drift_create_index('nx', 'a');
SELECT indexes FROM drift_tables WHERE table_name = 'nx'::regclass;
-- Each condition on both tables: any difference is a row.
CREATE FUNCTION nx_check(q text) RETURNS TABLE (cond text, drift int[], heap int[])
LANGUAGE plpgsql AS $$
DECLARE dr int[]; hp int[];
BEGIN
  EXECUTE format('SELECT array_agg(id ORDER BY id) FROM nx WHERE %s', q) INTO dr;
  EXECUTE format('SELECT array_agg(id ORDER BY id) FROM nh WHERE %s', q) INTO hp;
  RETURN QUERY SELECT q, dr, hp WHERE dr IS DISTINCT FROM hp;
END $$;
-- Which conditions the index answers: same-type comparisons (a real column against real
-- constants; `f > 0` compares real with double precision and is checked by a full scan).
CREATE FUNCTION nx_access(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE line text; access text := '';
BEGIN
  FOR line IN EXECUTE format('EXPLAIN (COSTS OFF) SELECT id FROM nx WHERE %s', q) LOOP
    IF line LIKE '%DriftDB Access:%' THEN access := trim(split_part(line, ':', 2)); END IF;
  END LOOP;
  RETURN access;
END $$;
SELECT c.* FROM unnest(ARRAY[
  'n = 1', 'n = 1.000', 'n = 0', 'n = ''NaN''', 'n = ''Infinity''', 'n = ''-Infinity''',
  'n > 1', 'n >= 1', 'n < 1', 'n <= 1', 'n > 1 AND n < 2', 'n >= -1.5 AND n <= 1.0001',
  'n > 0', 'n < 0', 'n > ''Infinity''', 'n >= ''Infinity''', 'n < ''-Infinity''',
  'n > 123456789012345678901234567890', 'n < 0.0000011 AND n > 0',
  'f = 0', 'f = -0', 'f = 1.5', 'f = ''NaN''', 'f > 1', 'f >= 1.5', 'f < 0', 'f <= 0',
  'f > ''Infinity''', 'f >= ''Infinity''', 'f > 0 AND f < 1', 'f < ''-Infinity''',
  'd = 0', 'd = -0', 'd = ''NaN''', 'd = ''-NaN''', 'd > 1', 'd >= 1', 'd < -1', 'd <= -1.5',
  'd > 1e300', 'd > 0 AND d < 1e-299', 'd >= ''Infinity''', 'd > ''Infinity''',
  'a = 1', 'a = 1.000', 'a > 1', 'a < 0', 'a >= -1 AND a <= 2.25', 'a = 0'
]) AS q(cond), LATERAL nx_check(q.cond) c;
SELECT cond, nx_access(cond) AS access FROM unnest(ARRAY[
  'n = 1', 'n > 1 AND n < 2', 'n < ''-Infinity''', 'f = ''NaN''', 'f > 0 AND f < 1',
  'f > 0::real AND f < 1::real', 'd = -0', 'd >= ''Infinity''', 'a = 1.000',
  'a >= -1 AND a <= 2.25'
]) AS q(cond);
-- The index answers (EXPLAIN), with Postgres' recheck still in the plan.
EXPLAIN (COSTS OFF) SELECT id FROM nx WHERE n = 1;
EXPLAIN (COSTS OFF) SELECT id FROM nx WHERE n > 1 AND n < 2;
EXPLAIN (COSTS OFF) SELECT id FROM nx WHERE f >= 1.5::real;
EXPLAIN (COSTS OFF) SELECT id FROM nx WHERE d < 0;
EXPLAIN (COSTS OFF) SELECT id FROM nx WHERE a <= 2;
SELECT id, n FROM nx WHERE n = 1.00 ORDER BY id;
SELECT id, d FROM nx WHERE d = 'NaN' ORDER BY id;
SELECT id, f FROM nx WHERE f = 0 ORDER BY id;
-- After a snapshot, with later changes, and in the past: the same answers.
SELECT drift_current_seq() AS s0 \gset
SELECT drift_snapshot('nx') > 0 AS snapped;
UPDATE nx SET n = 1.0000, d = -0.0 WHERE id = 12;
UPDATE nh SET n = 1.0000, d = -0.0 WHERE id = 12;
DELETE FROM nx WHERE id = 3;
DELETE FROM nh WHERE id = 3;
INSERT INTO nx VALUES (14, 2.000, 'NaN', 1e-320, 2);
INSERT INTO nh VALUES (14, 2.000, 'NaN', 1e-320, 2);
SELECT c.* FROM unnest(ARRAY[
  'n = 1', 'n >= 1 AND n <= 2', 'n > 1', 'f = ''NaN''', 'f > 2', 'd = 0', 'd > 0 AND d < 1e-300',
  'd <= 0', 'a = 2', 'a > 2'
]) AS q(cond), LATERAL nx_check(q.cond) c;
SELECT array_agg(id ORDER BY id) FROM drift_as_of(NULL::nx, :s0) WHERE n = 1;
SELECT array_agg(id ORDER BY id) FROM drift_as_of(NULL::nx, :s0) WHERE d >= 0 AND d < 1;
EXPLAIN (COSTS OFF) SELECT id FROM drift_as_of(NULL::nx, :s0) WHERE n = 1;
-- Export and import carry the index with its kind.
CREATE FOREIGN TABLE nx2 (id int NOT NULL, n numeric, f real, d double precision,
                          a nx_amount)
  SERVER drift OPTIONS (primary_key 'id');
CREATE TABLE nx_events AS SELECT * FROM drift_export('nx');
SELECT drift_import('nx2', 'nx_events') > 0 AS imported;
SELECT indexes FROM drift_tables WHERE table_name = 'nx2'::regclass;
SELECT array_agg(id ORDER BY id) FROM nx2 WHERE n >= 1 AND n < 2;
EXPLAIN (COSTS OFF) SELECT id FROM nx2 WHERE n >= 1 AND n < 2;
DROP FUNCTION nx_check(text), nx_access(text);
DROP FOREIGN TABLE nx, nx2;
DROP TABLE nh, nx_events;
DROP DOMAIN nx_amount;
