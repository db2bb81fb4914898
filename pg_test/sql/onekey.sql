-- One row changed many times in one transaction: each statement sees the key's own
-- earlier changes (folded as they are added, #22), through savepoints, deletes and
-- re-inserts.
CREATE FOREIGN TABLE onekey (id int NOT NULL, v int, w text) SERVER drift
  OPTIONS (primary_key 'id');
INSERT INTO onekey VALUES (1, 0, 'a'), (2, 0, 'b');
BEGIN;
DO $$ BEGIN FOR i IN 1..20000 LOOP UPDATE onekey SET v = v + 1 WHERE id = 1; END LOOP; END $$;
SELECT * FROM onekey ORDER BY id;
SAVEPOINT s;
UPDATE onekey SET v = -1, w = 'rolled back' WHERE id = 1;
DO $$ BEGIN FOR i IN 1..20 LOOP UPDATE onekey SET v = v + 1 WHERE id = 1; END LOOP; END $$;
SELECT * FROM onekey WHERE id = 1;
ROLLBACK TO s;
SELECT * FROM onekey WHERE id = 1;
DO $$ BEGIN FOR i IN 1..20 LOOP UPDATE onekey SET w = w || i WHERE id = 2; END LOOP; END $$;
DELETE FROM onekey WHERE id = 1;
SELECT * FROM onekey ORDER BY id;
INSERT INTO onekey VALUES (1, 100, 'again');
DO $$ BEGIN FOR i IN 1..10 LOOP UPDATE onekey SET v = v + 1 WHERE id = 1; END LOOP; END $$;
SELECT * FROM onekey ORDER BY id;
COMMIT;
SELECT * FROM onekey ORDER BY id;
SELECT op, count(*) FROM drift_history('onekey') GROUP BY op ORDER BY op;
DROP FOREIGN TABLE onekey;
