-- SET driftdb.as_of: every DriftDB read in the session sees one point in the past.
CREATE FOREIGN TABLE au (id int NOT NULL, name text) SERVER drift OPTIONS (primary_key 'id');
CREATE FOREIGN TABLE ao (id int NOT NULL, user_id int, total int)
  SERVER drift OPTIONS (primary_key 'id');
SELECT drift_create_index('ao', 'user_id');
INSERT INTO au VALUES (1, 'ann'), (2, 'bob');
INSERT INTO ao VALUES (10, 1, 5), (11, 2, 7);
SELECT drift_current_seq() AS s1, clock_timestamp() AS t1 \gset
UPDATE au SET name = 'ANN' WHERE id = 1;
DELETE FROM ao WHERE id = 11;
INSERT INTO ao VALUES (12, 1, 100);
SELECT u.name, sum(o.total) FROM au u JOIN ao o ON o.user_id = u.id GROUP BY 1 ORDER BY 1;
-- The same join, as of s1, by seq and by time: both tables at the same point.
SET driftdb.as_of = :'s1';
SELECT u.name, sum(o.total) FROM au u JOIN ao o ON o.user_id = u.id GROUP BY 1 ORDER BY 1;
-- Key and index lookups work in the past too, and do not scan.
EXPLAIN (COSTS OFF) SELECT * FROM au WHERE id = 1;
SELECT * FROM au WHERE id = 1;
SELECT * FROM ao WHERE user_id = 2;
SELECT * FROM ao WHERE id IN (11, 12) ORDER BY id;
WITH v AS (SELECT * FROM ao) SELECT count(*) FROM v;
SET driftdb.as_of = :'t1';
SELECT u.name, sum(o.total) FROM au u JOIN ao o ON o.user_id = u.id GROUP BY 1 ORDER BY 1;
-- The past is read-only.
INSERT INTO au VALUES (3, 'cy');
UPDATE au SET name = 'x';
DELETE FROM ao;
RESET driftdb.as_of;
SELECT count(*) FROM ao;
-- SET LOCAL lasts for the transaction.
BEGIN;
SET LOCAL driftdb.as_of = '0';
SELECT count(*) FROM au;
COMMIT;
SELECT count(*) FROM au;
SHOW driftdb.as_of;
-- Bad values are refused when set; points in the future when read.
SET driftdb.as_of = 'yesterday-ish';
SET driftdb.as_of = '-5';
SET driftdb.as_of = '2999-01-01';
SELECT count(*) FROM au;
RESET driftdb.as_of;
DROP FOREIGN TABLE au, ao;
