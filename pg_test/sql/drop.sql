-- DROP FOREIGN TABLE removes the table's files when the transaction commits, not before,
-- and not at all when it rolls back.
CREATE FOREIGN TABLE gone (id int NOT NULL, v text) SERVER drift OPTIONS (primary_key 'id');
INSERT INTO gone VALUES (1, 'x');
CREATE FUNCTION drift_files_exist(t regclass) RETURNS bool LANGUAGE sql AS $$
  SELECT (((SELECT oid FROM pg_database WHERE datname = current_database())::bigint << 32)
          | t::oid::bigint)::text IN (SELECT pg_ls_dir('driftdb/tables'))
$$;
SELECT drift_files_exist('gone');
-- Remember the id before the relation goes away.
CREATE TEMP TABLE gone_id AS
  SELECT (((SELECT oid FROM pg_database WHERE datname = current_database())::bigint << 32)
          | 'gone'::regclass::oid::bigint)::text AS id;
BEGIN;
DROP FOREIGN TABLE gone;
ROLLBACK;
SELECT drift_files_exist('gone'), count(*) FROM gone;
BEGIN;
SAVEPOINT s;
DROP FOREIGN TABLE gone;
ROLLBACK TO s;
COMMIT;
SELECT drift_files_exist('gone');
DROP FOREIGN TABLE gone;
SELECT id IN (SELECT pg_ls_dir('driftdb/tables')) AS files_remain FROM gone_id;
DROP FUNCTION drift_files_exist(regclass);
