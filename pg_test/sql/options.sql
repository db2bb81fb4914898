-- Option validation: primary_key on a foreign table is the one option DriftDB takes.
CREATE FOREIGN TABLE opt_ok (id int, b text) SERVER drift OPTIONS (primary_key 'id');
CREATE FOREIGN TABLE opt_composite (a int, b int) SERVER drift OPTIONS (primary_key 'a, b');
SELECT ftrelid::regclass, ftoptions FROM pg_foreign_table ORDER BY ftrelid::regclass::text;
-- An unknown option, with the valid ones in the hint.
CREATE FOREIGN TABLE opt_bad (id int) SERVER drift OPTIONS (colour 'blue');
-- Bad values for primary_key.
CREATE FOREIGN TABLE opt_empty (id int) SERVER drift OPTIONS (primary_key '');
CREATE FOREIGN TABLE opt_dup (id int) SERVER drift OPTIONS (primary_key 'id, id');
ALTER FOREIGN TABLE opt_ok OPTIONS (ADD colour 'x');
-- A known option in the wrong place.
CREATE SERVER drift_bad FOREIGN DATA WRAPPER driftdb OPTIONS (primary_key 'id');
ALTER FOREIGN TABLE opt_ok ALTER COLUMN id OPTIONS (primary_key 'id');
CREATE USER MAPPING FOR CURRENT_USER SERVER drift OPTIONS (password 'secret');
-- More servers are allowed; drift is the default one.
CREATE SERVER drift_more FOREIGN DATA WRAPPER driftdb;
SELECT count(*) FROM pg_foreign_server WHERE srvname LIKE 'drift%';
-- None of the failed statements left anything behind.
SELECT count(*) FROM pg_class WHERE relname IN ('opt_bad', 'opt_empty', 'opt_dup');
DROP SERVER drift_more;
DROP FOREIGN TABLE opt_ok, opt_composite;
