-- INSERT ... ON CONFLICT on DriftDB tables: DO NOTHING skips exactly the rows whose key
-- is taken; the primary key is the one arbiter; DO UPDATE is refused with the upsert
-- that works instead.
\set VERBOSITY default
CREATE FOREIGN TABLE oc (id int NOT NULL, v text) SERVER drift OPTIONS (primary_key 'id');
INSERT INTO oc VALUES (1, 'a');
-- Row 1 is skipped, row 2 goes in (heap: INSERT 0 1).
INSERT INTO oc VALUES (1, 'b'), (2, 'b') ON CONFLICT DO NOTHING;
SELECT * FROM oc ORDER BY id;
-- The primary key's columns as the conflict target mean the same.
INSERT INTO oc VALUES (2, 'c'), (3, 'c') ON CONFLICT (id) DO NOTHING RETURNING *;
-- A key repeated within the statement: the second row conflicts with the first.
INSERT INTO oc VALUES (4, 'd'), (4, 'e') ON CONFLICT DO NOTHING;
SELECT * FROM oc ORDER BY id;
-- In a data-modifying CTE too.
WITH ins AS (INSERT INTO oc VALUES (4, 'x'), (5, 'x') ON CONFLICT (id) DO NOTHING RETURNING id)
SELECT array_agg(id) FROM ins;
-- Without ON CONFLICT, a taken key is still 23505 and the statement leaves nothing.
INSERT INTO oc VALUES (6, 'f'), (1, 'f');
SELECT count(*) FROM oc WHERE id = 6;
-- Other targets: no such unique constraint (42P10).
INSERT INTO oc VALUES (7, 'g') ON CONFLICT (v) DO NOTHING;
INSERT INTO oc VALUES (7, 'g') ON CONFLICT (id, v) DO NOTHING;
-- DO UPDATE is refused, with the upsert that works.
INSERT INTO oc VALUES (1, 'h') ON CONFLICT (id) DO UPDATE SET v = excluded.v;
-- The upsert: UPDATE by key, INSERT when that changed nothing.
UPDATE oc SET v = 'h' WHERE id = 8;
INSERT INTO oc VALUES (8, 'h') ON CONFLICT DO NOTHING;
UPDATE oc SET v = 'i' WHERE id = 8;
SELECT * FROM oc WHERE id = 8;
-- Composite keys: all of the key's columns, in any order.
CREATE FOREIGN TABLE oc2 (a int NOT NULL, b text NOT NULL, v int)
  SERVER drift OPTIONS (primary_key 'a,b');
INSERT INTO oc2 VALUES (1, 'x', 1);
INSERT INTO oc2 VALUES (1, 'x', 2), (1, 'y', 2) ON CONFLICT (b, a) DO NOTHING;
INSERT INTO oc2 VALUES (1, 'x', 3) ON CONFLICT (a) DO NOTHING;
SELECT * FROM oc2 ORDER BY a, b;
-- A table without a primary key has nothing to conflict on.
CREATE FOREIGN TABLE oc3 (v int) SERVER drift;
INSERT INTO oc3 VALUES (1), (1) ON CONFLICT DO NOTHING;
INSERT INTO oc3 VALUES (1) ON CONFLICT (v) DO NOTHING;
SELECT count(*) FROM oc3;
-- History records only what went in.
SELECT op, row->>'id' AS id, row->>'v' AS v FROM drift_history('oc') ORDER BY seq;
DROP FOREIGN TABLE oc, oc2, oc3;
