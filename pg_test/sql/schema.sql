-- Schema changes with the history intact: past reads and drift_history after each change.
CREATE FOREIGN TABLE sc (id int NOT NULL, name varchar(5), n numeric(5,2))
  SERVER drift OPTIONS (primary_key 'id');
INSERT INTO sc VALUES (1, 'one', 1.5), (2, 'two', 2);
SELECT drift_current_seq() AS s0 \gset

-- ADD COLUMN: older rows read it as NULL, now and in the past.
ALTER FOREIGN TABLE sc ADD COLUMN note text;
INSERT INTO sc VALUES (3, 'three', 3, 'new');
SELECT drift_current_seq() AS s1 \gset
SELECT * FROM sc ORDER BY id;
SELECT * FROM drift_as_of(NULL::sc, :s0) ORDER BY id;
-- A DEFAULT, NOT NULL, serial or generated column would not reach the rows already there
-- (Postgres applies nothing to a foreign table's rows): refused while the table has rows.
ALTER FOREIGN TABLE sc ADD COLUMN d int DEFAULT 5;
ALTER FOREIGN TABLE sc ADD COLUMN d int NOT NULL;
ALTER FOREIGN TABLE sc ADD COLUMN d serial;
ALTER FOREIGN TABLE sc ADD COLUMN d int GENERATED ALWAYS AS (id * 2) STORED;
-- DEFAULT NULL changes nothing; the way to a default: add, fill (recorded), then set it.
ALTER FOREIGN TABLE sc ADD COLUMN d int DEFAULT NULL;
ALTER FOREIGN TABLE sc ADD COLUMN IF NOT EXISTS d int DEFAULT 5;   -- exists: skipped
UPDATE sc SET d = 5;
ALTER FOREIGN TABLE sc ALTER COLUMN d SET DEFAULT 5;
INSERT INTO sc (id, name) VALUES (4, 'four');
SELECT id, d FROM sc ORDER BY id;
SELECT seq - :s0 AS seq, op, changed FROM drift_history('sc') WHERE seq > :s1 ORDER BY seq;
-- On a table without rows, a column with a default is fine.
CREATE FOREIGN TABLE sc_empty (id int NOT NULL) SERVER drift OPTIONS (primary_key 'id');
ALTER FOREIGN TABLE sc_empty ADD COLUMN d int NOT NULL DEFAULT 7;
INSERT INTO sc_empty (id) VALUES (1);
SELECT * FROM sc_empty;
-- Rows written by this transaction count too.
BEGIN;
INSERT INTO sc_empty VALUES (2, 2);
DELETE FROM sc_empty;
ALTER FOREIGN TABLE sc_empty ADD COLUMN e int DEFAULT 1;
ROLLBACK;
DROP FOREIGN TABLE sc_empty;

-- ALTER COLUMN TYPE: allowed where the stored form stays valid and means the same.
ALTER FOREIGN TABLE sc ALTER COLUMN name TYPE varchar(10);
ALTER FOREIGN TABLE sc ALTER COLUMN name TYPE text;
ALTER FOREIGN TABLE sc ALTER COLUMN n TYPE numeric(8,2);
ALTER FOREIGN TABLE sc ALTER COLUMN note TYPE varchar;
ALTER FOREIGN TABLE sc ALTER COLUMN note TYPE text COLLATE "C";
SELECT * FROM drift_as_of(NULL::sc, :s0) ORDER BY id;
-- Refused (0A000): the stored form would be misread.
ALTER FOREIGN TABLE sc ALTER COLUMN id TYPE bigint;
ALTER FOREIGN TABLE sc ALTER COLUMN n TYPE numeric(8,3);
ALTER FOREIGN TABLE sc ALTER COLUMN n TYPE real;
ALTER FOREIGN TABLE sc ALTER COLUMN name TYPE varchar(3);
ALTER FOREIGN TABLE sc ALTER COLUMN d TYPE text;
DO $$ BEGIN
  ALTER FOREIGN TABLE sc ALTER COLUMN name TYPE char(10);
EXCEPTION WHEN feature_not_supported THEN RAISE NOTICE 'refused: %', SQLSTATE;
END $$;
SELECT atttypid::regtype, atttypmod FROM pg_attribute
 WHERE attrelid = 'sc'::regclass AND attname IN ('id', 'n') ORDER BY attname;

-- DROP COLUMN: the values stay in the log, unread; past reads and history skip it.
UPDATE sc SET note = 'noted' WHERE id = 1;
ALTER FOREIGN TABLE sc DROP COLUMN note;
SELECT * FROM sc ORDER BY id;
SELECT * FROM drift_as_of(NULL::sc, :s1) ORDER BY id;
SELECT seq - :s0 AS seq, op, "row", changed FROM drift_history('sc')
 WHERE "row"->>'id' IN ('1', '3') ORDER BY seq;
-- A key column cannot be dropped (2BP01); an index goes with its column.
ALTER FOREIGN TABLE sc DROP COLUMN id;
SELECT drift_create_index('sc', 'd');
SELECT indexes FROM drift_tables WHERE table_name = 'sc'::regclass;
BEGIN;
ALTER FOREIGN TABLE sc DROP COLUMN d;
ROLLBACK;
SELECT indexes FROM drift_tables WHERE table_name = 'sc'::regclass;
ALTER FOREIGN TABLE sc DROP COLUMN d;
SELECT indexes FROM drift_tables WHERE table_name = 'sc'::regclass;

-- RENAME COLUMN: history and past reads show the new name; the key follows its column.
ALTER FOREIGN TABLE sc RENAME COLUMN name TO label;
ALTER TABLE sc RENAME COLUMN id TO ident;
SELECT ftoptions FROM pg_foreign_table WHERE ftrelid = 'sc'::regclass;
SELECT * FROM sc WHERE ident = 2;
EXPLAIN (COSTS OFF) SELECT * FROM sc WHERE ident = 2;
SELECT * FROM drift_as_of(NULL::sc, :s0) ORDER BY ident;
SELECT seq - :s0 AS seq, op, "row" FROM drift_history('sc') ORDER BY seq LIMIT 3;
-- A rolled-back rename takes its key option back too.
BEGIN;
ALTER FOREIGN TABLE sc RENAME COLUMN ident TO k;
SELECT ftoptions FROM pg_foreign_table WHERE ftrelid = 'sc'::regclass;
ROLLBACK;
SELECT ftoptions FROM pg_foreign_table WHERE ftrelid = 'sc'::regclass;
ALTER FOREIGN TABLE sc RENAME COLUMN ident TO "a,b";
-- The key of a table with history cannot change; naming the same columns is fine.
ALTER FOREIGN TABLE sc OPTIONS (SET primary_key 'label');
ALTER FOREIGN TABLE sc OPTIONS (SET primary_key ' ident ');
DROP FOREIGN TABLE sc;
