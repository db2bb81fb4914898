-- Secondary indexes: created from existing rows, used for equality and ranges, and the
-- answers always equal a full scan's.
CREATE FOREIGN TABLE ix (id int NOT NULL, age int, city text, born date, score float8)
  SERVER drift OPTIONS (primary_key 'id');
INSERT INTO ix SELECT g, g % 90, 'city' || (g % 13), date '2000-01-01' + g, g / 3.0
  FROM generate_series(1, 1000) g;
-- Before an index exists, a scan reads everything.
EXPLAIN (COSTS OFF) SELECT * FROM ix WHERE age = 30;
SELECT drift_create_index('ix', 'age');
SELECT drift_create_index('ix', 'city');
SELECT drift_create_index('ix', 'born');
EXPLAIN (COSTS OFF) SELECT * FROM ix WHERE age = 30;
SELECT count(*), min(id), max(id) FROM ix WHERE age = 30;
EXPLAIN (COSTS OFF) SELECT * FROM ix WHERE age >= 85 AND age < 88;
SELECT count(*), min(age), max(age) FROM ix WHERE age >= 85 AND age < 88;
SELECT count(*) FROM ix WHERE 88 < age;
SELECT count(*) FROM ix WHERE age <= 1;
EXPLAIN (COSTS OFF) SELECT id FROM ix WHERE city = 'city7';
SELECT count(*) FROM ix WHERE city = 'city7';
SELECT count(*) FROM ix WHERE born BETWEEN '2001-01-01' AND '2001-01-31';
-- Text ranges are not pushed (collation order is not byte order); equality is.
EXPLAIN (COSTS OFF) SELECT id FROM ix WHERE city > 'city7';
-- Parameters and NULL.
PREPARE by_age(int) AS SELECT count(*) FROM ix WHERE age = $1;
EXECUTE by_age(5);
EXECUTE by_age(NULL);
-- Index answers equal full-scan answers (the full scan is forced by a non-indexable form).
SELECT (SELECT count(*) FROM ix WHERE age BETWEEN 10 AND 20)
     = (SELECT count(*) FROM ix WHERE age + 0 BETWEEN 10 AND 20) AS same;
-- The index follows writes, and sees the transaction's own changes.
UPDATE ix SET age = 500 WHERE id <= 3;
DELETE FROM ix WHERE id = 4;
SELECT id FROM ix WHERE age = 500 ORDER BY id;
BEGIN;
UPDATE ix SET age = 500 WHERE id = 5;
UPDATE ix SET age = 7 WHERE id = 1;
INSERT INTO ix VALUES (2000, 500, 'x', NULL, NULL);
SELECT id FROM ix WHERE age = 500 ORDER BY id;
ROLLBACK;
SELECT id FROM ix WHERE age = 500 ORDER BY id;
-- Errors: unknown column, not owner (types that cannot be indexed: keytypes.sql).
SELECT drift_create_index('ix', 'nope');
SELECT drift_drop_index('ix', 'id');
CREATE TABLE heap_t (a int);
SELECT drift_create_index('heap_t', 'a');
DROP TABLE heap_t;
CREATE ROLE ix_other;
GRANT SELECT ON ix TO ix_other;
SET ROLE ix_other;
SELECT drift_create_index('ix', 'id');
RESET ROLE;
DROP OWNED BY ix_other;
DROP ROLE ix_other;
-- A rolled-back drift_create_index leaves no index; drift_drop_index drops at commit.
BEGIN;
SELECT drift_create_index('ix', 'id');
ROLLBACK;
SELECT drift_drop_index('ix', 'id');
SELECT drift_drop_index('ix', 'age');
EXPLAIN (COSTS OFF) SELECT * FROM ix WHERE age = 30;
SELECT count(*) FROM ix WHERE age = 30;
DROP FOREIGN TABLE ix;
