-- ALTER on a DriftDB table by a role that does not own it is refused by Postgres (42501)
-- before DriftDB's own checks, which would tell about the table's rows (#23).
\set VERBOSITY terse
CREATE ROLE regress_not_owner;
CREATE FOREIGN TABLE own_t (id int NOT NULL, v int) SERVER drift OPTIONS (primary_key 'id');
INSERT INTO own_t VALUES (1, 1);
GRANT SELECT, INSERT, UPDATE ON own_t TO regress_not_owner;
SET ROLE regress_not_owner;
ALTER FOREIGN TABLE own_t ADD COLUMN w int NOT NULL;
ALTER FOREIGN TABLE own_t ALTER COLUMN v TYPE text;
ALTER FOREIGN TABLE own_t OPTIONS (SET primary_key 'v');
ALTER FOREIGN TABLE own_t RENAME COLUMN id TO "a,b";
ALTER FOREIGN TABLE own_t DROP COLUMN id;
RESET ROLE;
-- The owner gets DriftDB's checks.
ALTER FOREIGN TABLE own_t ADD COLUMN w int NOT NULL;
ALTER FOREIGN TABLE own_t ALTER COLUMN v TYPE text;
DROP FOREIGN TABLE own_t;
DROP ROLE regress_not_owner;
