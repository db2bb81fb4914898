-- Reading the past by seq and by time.
CREATE FOREIGN TABLE tt (id int NOT NULL, v text) SERVER drift OPTIONS (primary_key 'id');
SELECT drift_current_seq() AS s0 \gset
INSERT INTO tt VALUES (1, 'a'), (2, 'b');
SELECT drift_current_seq() AS s1, clock_timestamp() AS t1 \gset
UPDATE tt SET v = 'B' WHERE id = 2;
SELECT drift_current_seq() AS s2, clock_timestamp() AS t2 \gset
BEGIN;
DELETE FROM tt WHERE id = 1;
INSERT INTO tt VALUES (3, 'c');
COMMIT;
SELECT drift_current_seq() AS s3 \gset
-- A seq counts events: two inserts, one patch, then a delete and an insert.
SELECT :s1 - :s0 AS first, :s2 - :s1 AS second, :s3 - :s2 AS third;
-- Before the table's first write there are no rows.
SELECT * FROM drift_as_of(NULL::tt, :s0) ORDER BY id;
SELECT * FROM drift_as_of(NULL::tt, :s1) ORDER BY id;
SELECT * FROM drift_as_of(NULL::tt, :s2) ORDER BY id;
SELECT * FROM drift_as_of(NULL::tt, :s3) ORDER BY id;
-- Inside a transaction's own group, between its events.
SELECT * FROM drift_as_of(NULL::tt, :s2 + 1) ORDER BY id;
-- The current state equals the table.
SELECT (SELECT array_agg(t ORDER BY id) FROM tt t)
     = (SELECT array_agg(a ORDER BY id) FROM drift_as_of(NULL::tt, drift_current_seq()) a) AS same;
-- By time: the state after the last commit at or before the instant.
SELECT drift_seq_at(:'t1') = :s1 AS seq_at_t1, drift_seq_at(:'t2') = :s2 AS seq_at_t2;
SELECT * FROM drift_as_of(NULL::tt, :'t1'::timestamptz) ORDER BY id;
SELECT * FROM drift_as_of(NULL::tt, :'t2'::timestamptz) ORDER BY id;
SELECT count(*) FROM drift_as_of(NULL::tt, '2000-01-01'::timestamptz);
-- The result is typed as the table: columns by name, joins with the present.
SELECT past.id, past.v AS was, now.v AS is
  FROM drift_as_of(NULL::tt, :s1) past LEFT JOIN tt now USING (id) ORDER BY id;
-- A condition on the key or an indexed column of drift_as_of(...) is pushed down: the call
-- is planned as a scan of the table at that point (EXPLAIN shows the access and the point).
EXPLAIN (COSTS OFF) SELECT * FROM drift_as_of(NULL::tt, 3) WHERE id = 2;
EXPLAIN (COSTS OFF) SELECT v FROM drift_as_of(NULL::tt, now()) WHERE id IN (1, 3);
SELECT * FROM drift_as_of(NULL::tt, :s1) WHERE id = 2;
SELECT * FROM drift_as_of(NULL::tt, :s2) WHERE id = 2;
SELECT * FROM drift_as_of(NULL::tt, :s3) WHERE id = 1;
SELECT * FROM drift_as_of(NULL::tt, :'t1'::timestamptz) WHERE id IN (1, 2) ORDER BY id;
SELECT * FROM drift_as_of(NULL::tt, :s0) WHERE id = 1;
-- Parameters, in a prepared statement, are evaluated when the scan starts.
PREPARE past_v(bigint, int) AS SELECT v FROM drift_as_of(NULL::tt, $1) WHERE id = $2;
EXECUTE past_v(:s1, 2);
EXECUTE past_v(:s2, 2);
EXECUTE past_v(:s3, 2);
DEALLOCATE past_v;
-- Indexed columns too.
SELECT drift_create_index('tt', 'v');
EXPLAIN (COSTS OFF) SELECT * FROM drift_as_of(NULL::tt, :s2) WHERE v = 'B';
SELECT * FROM drift_as_of(NULL::tt, :s2) WHERE v = 'B';
SELECT * FROM drift_as_of(NULL::tt, :s1) WHERE v = 'B';
SELECT drift_drop_index('tt', 'v');
-- In subqueries, CTEs and joins; the answers are the function's own (WITH ORDINALITY
-- keeps the call a function, shown as a Function Scan).
WITH past AS (SELECT * FROM drift_as_of(NULL::tt, :s1))
SELECT v FROM past WHERE id = 1;
SELECT now.id, (SELECT p.v FROM drift_as_of(NULL::tt, :s1) p WHERE p.id = now.id) AS was
  FROM tt now ORDER BY id;
EXPLAIN (COSTS OFF) SELECT * FROM drift_as_of(NULL::tt, 3) WITH ORDINALITY WHERE id = 2;
SELECT count(*) AS points,
       bool_and((SELECT array_agg(row(id, v) ORDER BY id) FROM drift_as_of(NULL::tt, s)
                  WHERE id > 0)
                IS NOT DISTINCT FROM
                (SELECT array_agg(row(id, v) ORDER BY id)
                   FROM drift_as_of(NULL::tt, s) WITH ORDINALITY WHERE id > 0)) AS same
  FROM (VALUES (:s0), (:s1), (:s2), (:s2 + 1), (:s3)) AS points(s);
-- Errors: the future, negative, NULL, not a DriftDB row type.
-- (The two seq errors name the current seq, which depends on earlier tests: check their
-- SQLSTATE only.)
DO $$ BEGIN
  PERFORM * FROM drift_as_of(NULL::tt, drift_current_seq() + 1);
EXCEPTION WHEN invalid_parameter_value THEN RAISE NOTICE 'future seq refused: %', SQLSTATE;
END $$;
SELECT * FROM drift_as_of(NULL::tt, now() + interval '1 hour');
DO $$ BEGIN
  PERFORM * FROM drift_as_of(NULL::tt, -1);
EXCEPTION WHEN invalid_parameter_value THEN RAISE NOTICE 'negative seq refused: %', SQLSTATE;
END $$;
SELECT * FROM drift_as_of(NULL::tt, NULL::bigint);
SELECT * FROM drift_as_of(NULL::int, 1);
CREATE TABLE heap_tt (id int);
SELECT * FROM drift_as_of(NULL::heap_tt, 1);
DROP TABLE heap_tt;
-- Reading the past needs SELECT on the table, as a plain SELECT does.
CREATE ROLE tt_reader;
SET ROLE tt_reader;
SELECT * FROM drift_as_of(NULL::tt, :s1);
SELECT count(*) FROM drift_as_of(NULL::tt, now());
RESET ROLE;
GRANT SELECT ON tt TO tt_reader;
SET ROLE tt_reader;
SELECT count(*) FROM drift_as_of(NULL::tt, :s1);
RESET ROLE;
DROP OWNED BY tt_reader;
DROP ROLE tt_reader;
DROP FOREIGN TABLE tt;
