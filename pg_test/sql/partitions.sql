-- A partitioned table whose partitions are DriftDB tables (#23): INSERT routing, UPDATE
-- within a partition, DELETE, pruning, locking reads, the past over the parent (SET
-- driftdb.as_of and drift_as_of), each partition's own history.
\set VERBOSITY terse
CREATE TABLE pt (id int NOT NULL, region text NOT NULL, v int) PARTITION BY LIST (region);
CREATE FOREIGN TABLE pt_eu PARTITION OF pt FOR VALUES IN ('eu')
  SERVER drift OPTIONS (primary_key 'id');
CREATE FOREIGN TABLE pt_us PARTITION OF pt FOR VALUES IN ('us')
  SERVER drift OPTIONS (primary_key 'id');
INSERT INTO pt VALUES (1, 'eu', 10), (2, 'eu', 20), (3, 'us', 30), (4, 'us', 40);
SELECT tableoid::regclass, * FROM pt ORDER BY id;
SELECT drift_current_seq() AS s0 \gset
UPDATE pt SET v = v + 1 WHERE id IN (1, 3) RETURNING tableoid::regclass, *;
DELETE FROM pt WHERE id = 4 RETURNING *;
-- A row cannot leave a DriftDB partition by UPDATE (Postgres' executor moves no row out
-- of a foreign partition): 23514, and nothing changes. DELETE and INSERT it instead.
UPDATE pt SET region = 'us' WHERE id = 2 RETURNING tableoid::regclass, *;
BEGIN;
DELETE FROM pt WHERE id = 2;
INSERT INTO pt VALUES (2, 'us', 20);
COMMIT;
-- Inserting into the wrong partition directly is refused as on heap.
INSERT INTO pt_eu VALUES (5, 'us', 50);
SELECT tableoid::regclass, * FROM pt ORDER BY id;
-- Pruning: only the partition the condition names is scanned.
EXPLAIN (COSTS OFF) SELECT * FROM pt WHERE region = 'eu' AND id = 1;
-- Locking reads through the parent.
BEGIN;
SELECT id FROM pt WHERE v > 0 ORDER BY id FOR UPDATE;
SELECT count(*) FROM pg_locks WHERE locktype = 'tuple' AND pid = pg_backend_pid();
COMMIT;
-- The past over the parent, and each partition's own history.
SET driftdb.as_of = :'s0';
SELECT tableoid::regclass, * FROM pt ORDER BY id;
RESET driftdb.as_of;
-- drift_as_of over the parent: every partition at the point, pruned, joined, by time too.
SELECT * FROM drift_as_of(NULL::pt, :'s0') ORDER BY id;
SELECT * FROM drift_as_of(NULL::pt, :'s0') WHERE region = 'us' ORDER BY id;
EXPLAIN (COSTS OFF) SELECT * FROM drift_as_of(NULL::pt, :'s0') WHERE region = 'us';
SELECT p.id, p.v AS was, n.v AS is FROM drift_as_of(NULL::pt, :'s0') p
  LEFT JOIN pt n USING (id) ORDER BY p.id;
SELECT count(*) FROM drift_as_of(NULL::pt, now());
SELECT count(*) FROM drift_as_of(NULL::pt, 0);
-- With a heap partition the parent has no DriftDB past: 42809, as before.
CREATE TABLE pt_other PARTITION OF pt FOR VALUES IN ('other');
SELECT count(*) FROM drift_as_of(NULL::pt, :'s0');
DROP TABLE pt_other;
-- The past of the parent needs SELECT on it, as reading it does.
CREATE ROLE pt_reader;
SET ROLE pt_reader;
SELECT count(*) FROM drift_as_of(NULL::pt, :'s0');
RESET ROLE;
DROP ROLE pt_reader;
SELECT op, row->>'id' AS id, row->>'v' AS v FROM drift_history('pt_eu') ORDER BY seq;
SELECT op, row->>'id' AS id, row->>'v' AS v FROM drift_history('pt_us') ORDER BY seq;
-- Many statements in one transaction: no limit on how many UPDATEs it runs.
CREATE FOREIGN TABLE many (id int NOT NULL, v int) SERVER drift OPTIONS (primary_key 'id');
INSERT INTO many SELECT g, 0 FROM generate_series(1, 70000) g;
BEGIN;
DO $$ BEGIN FOR i IN 1..70000 LOOP UPDATE many SET v = v + 1 WHERE id = i; END LOOP; END $$;
COMMIT;
SELECT count(*), sum(v) FROM many;
DROP FOREIGN TABLE many;
DROP TABLE pt;
-- ON CONFLICT DO NOTHING routed to a DriftDB partition.
CREATE TABLE pc (id int NOT NULL, region text NOT NULL) PARTITION BY LIST (region);
CREATE FOREIGN TABLE pc_eu PARTITION OF pc FOR VALUES IN ('eu')
  SERVER drift OPTIONS (primary_key 'id');
INSERT INTO pc VALUES (1, 'eu');
INSERT INTO pc VALUES (1, 'eu'), (2, 'eu') ON CONFLICT DO NOTHING;
SELECT * FROM pc ORDER BY id;
DROP TABLE pc;
