-- drift_as_of with an untyped point: a quoted literal or an unknown-typed parameter goes
-- to drift_as_of(anyelement, text), which reads it as SET driftdb.as_of does: an integer
-- is a seq, anything else a timestamptz.
\set VERBOSITY default
CREATE FOREIGN TABLE ut (id int NOT NULL, v text) SERVER drift OPTIONS (primary_key 'id');
INSERT INTO ut VALUES (1, 'one');
SELECT drift_current_seq() AS s1, clock_timestamp() AS t1 \gset
UPDATE ut SET v = 'uno' WHERE id = 1;
INSERT INTO ut VALUES (2, 'two');
-- A quoted seq, a quoted timestamp, and the typed forms agree.
SELECT v FROM drift_as_of(NULL::ut, :'s1') ORDER BY id;
SELECT v FROM drift_as_of(NULL::ut, :s1) ORDER BY id;
SELECT v FROM drift_as_of(NULL::ut, :'t1') ORDER BY id;
SELECT v FROM drift_as_of(NULL::ut, :'t1'::timestamptz) ORDER BY id;
SELECT (SELECT array_agg(v ORDER BY id) FROM drift_as_of(NULL::ut, :'s1'))
     = (SELECT array_agg(v ORDER BY id) FROM drift_as_of(NULL::ut, :'t1')) AS same;
-- An unknown-typed parameter (as node-postgres and pgjdbc send them).
PREPARE at_point AS SELECT id, v FROM drift_as_of(NULL::ut, $1) ORDER BY id;
EXECUTE at_point(:'s1');
EXECUTE at_point(:'t1');
-- Key lookups on the text form are pushed down like the others.
EXPLAIN (COSTS OFF) SELECT v FROM drift_as_of(NULL::ut, '1') WHERE id = 1;
-- Bad points: empty, neither a seq nor a timestamp, negative, NULL.
SELECT count(*) FROM drift_as_of(NULL::ut, '');
\set VERBOSITY terse
SELECT count(*) FROM drift_as_of(NULL::ut, 'yesterday-ish');
SELECT count(*) FROM drift_as_of(NULL::ut, '-1');
\set VERBOSITY default
SELECT count(*) FROM drift_as_of(NULL::ut, NULL::text);
DEALLOCATE at_point;
DROP FOREIGN TABLE ut;
