-- A partitioned table whose partitions are DriftDB tables (#23): INSERT routing, UPDATE
-- within a partition and between partitions, DELETE, pruning, locking reads, the past
-- over the parent (SET driftdb.as_of and drift_as_of), each partition's own history.
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
-- An UPDATE through the parent moves a row to the partition it now belongs in, as on
-- heap: it leaves the history of one and enters the other's.
UPDATE pt SET region = 'us' WHERE id = 2 RETURNING *;
SELECT tableoid::regclass, * FROM pt ORDER BY id;
-- A move that cannot happen changes nothing: no partition takes the row (23514); the
-- partition itself is updated (23514, as on heap); its key is taken in the partition it
-- belongs in (23505); RETURNING tableoid, which would name the partition it left (0A000).
UPDATE pt SET region = 'asia' WHERE id = 1;
UPDATE pt_eu SET region = 'us' WHERE id = 1;
INSERT INTO pt VALUES (3, 'eu', 5);
UPDATE pt SET region = 'us' WHERE region = 'eu' AND id = 3;
DELETE FROM pt WHERE region = 'eu' AND id = 3;
UPDATE pt SET region = 'eu' WHERE id = 3 RETURNING tableoid::regclass, *;
-- Rolled back, a move leaves no trace.
BEGIN;
UPDATE pt SET region = 'eu' WHERE id = 3;
SELECT tableoid::regclass, * FROM pt ORDER BY id;
ROLLBACK;
-- Rows swapping partitions in one statement each move once, and back again.
UPDATE pt SET region = CASE region WHEN 'eu' THEN 'us' ELSE 'eu' END WHERE id IN (1, 2)
  RETURNING *;
SELECT tableoid::regclass, * FROM pt ORDER BY id;
UPDATE pt SET region = CASE region WHEN 'eu' THEN 'us' ELSE 'eu' END WHERE id IN (1, 2);
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
-- A move between partitions whose columns are in another order, one of them dropped:
-- the row is converted, and the partition it enters computes its generated column.
CREATE TABLE pm (id int NOT NULL, k text NOT NULL, v int,
  w int GENERATED ALWAYS AS (v * 2) STORED) PARTITION BY LIST (k);
CREATE FOREIGN TABLE pm_a PARTITION OF pm FOR VALUES IN ('a')
  SERVER drift OPTIONS (primary_key 'id');
CREATE FOREIGN TABLE pm_b (v int, junk int, k text NOT NULL, id int NOT NULL,
  w int GENERATED ALWAYS AS (v * 2) STORED) SERVER drift OPTIONS (primary_key 'id');
ALTER FOREIGN TABLE pm_b DROP COLUMN junk;
ALTER TABLE pm ATTACH PARTITION pm_b FOR VALUES IN ('b');
CREATE TABLE pm_h PARTITION OF pm FOR VALUES IN ('h');
INSERT INTO pm VALUES (1, 'a', 10), (2, 'b', 20);
UPDATE pm SET k = 'b', v = v + 1 WHERE id = 1 RETURNING *;
UPDATE pm SET k = 'a' WHERE id = 2 RETURNING *;
SELECT tableoid::regclass, * FROM pm ORDER BY id;
SELECT op, row->>'id' AS id, row->>'v' AS v, row->>'w' AS w FROM drift_history('pm_b')
  ORDER BY seq;
-- A heap partition is not a DriftDB table: refused (0A000).
UPDATE pm SET k = 'h' WHERE id = 1;
-- Row triggers that heap fires differently for a moved row: refused (0A000). A BEFORE
-- UPDATE trigger of the partition left fires, as on heap.
CREATE FUNCTION pm_note() RETURNS trigger LANGUAGE plpgsql
  AS $$ BEGIN RAISE NOTICE '% % on %', TG_WHEN, TG_OP, TG_TABLE_NAME; RETURN NEW; END $$;
CREATE TRIGGER pm_b_ins AFTER INSERT ON pm_b FOR EACH ROW EXECUTE FUNCTION pm_note();
UPDATE pm SET k = 'b' WHERE id = 2;
DROP TRIGGER pm_b_ins ON pm_b;
CREATE TRIGGER pm_a_del AFTER DELETE ON pm_a FOR EACH ROW EXECUTE FUNCTION pm_note();
UPDATE pm SET k = 'b' WHERE id = 2;
DROP TRIGGER pm_a_del ON pm_a;
CREATE TRIGGER pm_a_upd BEFORE UPDATE ON pm_a FOR EACH ROW EXECUTE FUNCTION pm_note();
UPDATE pm SET k = 'b' WHERE id = 2;
SELECT tableoid::regclass, * FROM pm ORDER BY id;
DROP TABLE pm;
DROP FUNCTION pm_note();
-- ON CONFLICT DO NOTHING routed to a DriftDB partition.
CREATE TABLE pc (id int NOT NULL, region text NOT NULL) PARTITION BY LIST (region);
CREATE FOREIGN TABLE pc_eu PARTITION OF pc FOR VALUES IN ('eu')
  SERVER drift OPTIONS (primary_key 'id');
INSERT INTO pc VALUES (1, 'eu');
INSERT INTO pc VALUES (1, 'eu'), (2, 'eu') ON CONFLICT DO NOTHING;
SELECT * FROM pc ORDER BY id;
DROP TABLE pc;
