-- Constraints DriftDB enforces itself (Postgres does not, for foreign tables).
CREATE FOREIGN TABLE k (id int NOT NULL, code text NOT NULL, note text)
  SERVER drift OPTIONS (primary_key 'id');
INSERT INTO k VALUES (1, 'a', NULL);
INSERT INTO k VALUES (1, 'b', NULL);
INSERT INTO k VALUES (2, 'c', NULL), (2, 'd', NULL);
INSERT INTO k VALUES (NULL, 'e', NULL);
INSERT INTO k VALUES (3, NULL, NULL);
UPDATE k SET code = NULL WHERE id = 1;
INSERT INTO k VALUES (2, 'b', NULL);
UPDATE k SET id = 2 WHERE id = 1;
SELECT * FROM k ORDER BY id;
-- A deleted key can be inserted again.
DELETE FROM k WHERE id = 1;
INSERT INTO k VALUES (1, 'again', 'x');
SELECT * FROM k ORDER BY id;
-- CHECK constraints, on INSERT and UPDATE.
CREATE FOREIGN TABLE chk (id int NOT NULL, age int DEFAULT 0 CHECK (age >= 0))
  SERVER drift OPTIONS (primary_key 'id');
INSERT INTO chk VALUES (1, 5);
INSERT INTO chk VALUES (2, -1);
UPDATE chk SET age = -5 WHERE id = 1;
INSERT INTO chk (id) VALUES (3);
SELECT * FROM chk ORDER BY id;
DROP FOREIGN TABLE chk;
-- Composite keys.
CREATE FOREIGN TABLE ck (a int, b text, v int) SERVER drift OPTIONS (primary_key 'a, b');
INSERT INTO ck VALUES (1, 'x', 1), (1, 'y', 2), (2, 'x', 3);
INSERT INTO ck VALUES (1, 'y', 9);
INSERT INTO ck VALUES (1, NULL, 9);
SELECT * FROM ck ORDER BY a, b;
-- DEFAULT and sequences.
CREATE SEQUENCE s;
CREATE FOREIGN TABLE d (id int DEFAULT nextval('s') NOT NULL, made text DEFAULT 'yes', n serial)
  SERVER drift OPTIONS (primary_key 'id');
INSERT INTO d DEFAULT VALUES;
INSERT INTO d (made) VALUES ('given');
SELECT * FROM d ORDER BY id;
-- Keys must name existing columns of a type whose stored form decides equality.
CREATE FOREIGN TABLE nokey (id int) SERVER drift OPTIONS (primary_key 'idx');
CREATE FOREIGN TABLE numkey (id numeric) SERVER drift OPTIONS (primary_key 'id');
DROP FOREIGN TABLE k, ck, d;
DROP SEQUENCE s;
