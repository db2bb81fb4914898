-- Moving a table with its whole history: drift_export writes every event as a row,
-- drift_import reads such rows back into an empty table, keeping the original commit
-- times, transactions and roles.
CREATE FOREIGN TABLE ex (id int NOT NULL, name text, tags text[], price numeric(8,2))
  SERVER drift OPTIONS (primary_key 'id');
CREATE ROLE ex_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON ex TO ex_writer;
SELECT drift_current_seq() AS s0 \gset
INSERT INTO ex VALUES (1, 'apple', '{red,"big one"}', 1.50), (2, 'pear', NULL, 2);
SET ROLE ex_writer;
UPDATE ex SET price = 1.75, name = 'Apple "Pink"' WHERE id = 1;
RESET ROLE;
DELETE FROM ex WHERE id = 2;
INSERT INTO ex VALUES (3, E'tab\there', '{}', NULL);
UPDATE ex SET id = 4 WHERE id = 3;
SELECT drift_create_index('ex', 'name');

-- The export: op, key and the columns each event stored, as text forms; then one INDEX
-- row per secondary index (no seq: after every event).
SELECT seq - :s0 AS seq, role, op, key, data FROM drift_export('ex') ORDER BY seq;
-- Commit times and transactions are those of drift_history.
SELECT count(*) AS events,
       bool_and(h.committed_at = e.committed_at AND h.txid = e.txid AND h.role = e.role
                AND h.op = e.op) AS same_as_history
  FROM drift_export('ex') e JOIN drift_history('ex') h USING (seq);
-- COPY moves it through the client (privilege-safe: no server file is written).
COPY (SELECT op, key, data FROM drift_export('ex') ORDER BY seq) TO STDOUT;

-- Import into an empty table with the same columns, from a relation holding the rows
-- (here filled by INSERT; from another cluster, by COPY ... FROM STDIN). A relation
-- without the eighth column, long_values, is read as having no long values.
CREATE TABLE ex_events (seq bigint, committed_at timestamptz, txid xid8, role name,
                        op text, key jsonb, data jsonb);
INSERT INTO ex_events SELECT seq, committed_at, txid, role, op, key, data
  FROM drift_export('ex');
CREATE FOREIGN TABLE ex_copy (id int NOT NULL, name text, tags text[], price numeric(8,2))
  SERVER drift OPTIONS (primary_key 'id');
SELECT drift_import('ex_copy', 'ex_events');
SELECT * FROM ex_copy ORDER BY id;
-- The INDEX row made the same index, which serves lookups.
SELECT indexes FROM drift_tables WHERE table_name = 'ex_copy'::regclass;
EXPLAIN (COSTS OFF) SELECT id FROM ex_copy WHERE name = 'pear';
-- An INDEX row naming a column the table does not have: 42703.
CREATE FOREIGN TABLE ex_noidx (id int NOT NULL, label text, tags text[], price numeric(8,2))
  SERVER drift OPTIONS (primary_key 'id');
CREATE TABLE ex_index_only AS SELECT * FROM ex_events WHERE op = 'INDEX';
SELECT drift_import('ex_noidx', 'ex_index_only');
SELECT count(*) FROM drift_history('ex_noidx');
DROP FOREIGN TABLE ex_noidx;
DROP TABLE ex_index_only;
-- drift_history is the same but for the seqs, which are this cluster's (same order).
SELECT (SELECT array_agg((committed_at, op, "row", changed, txid, role) ORDER BY seq)
          FROM drift_history('ex'))
     = (SELECT array_agg((committed_at, op, "row", changed, txid, role) ORDER BY seq)
          FROM drift_history('ex_copy')) AS same_history;
-- drift_as_of at every commit time, between them and before the first gives the same rows.
CREATE FUNCTION pg_temp.same_as_of(t timestamptz) RETURNS boolean LANGUAGE sql AS $$
  SELECT NOT EXISTS (SELECT * FROM drift_as_of(NULL::ex, t)
                     EXCEPT SELECT * FROM drift_as_of(NULL::ex_copy, t))
     AND NOT EXISTS (SELECT * FROM drift_as_of(NULL::ex_copy, t)
                     EXCEPT SELECT * FROM drift_as_of(NULL::ex, t)) $$;
SELECT count(*) AS points, bool_and(pg_temp.same_as_of(t)) AS same_as_of
  FROM (SELECT committed_at + d AS t
          FROM drift_history('ex'),
               unnest(ARRAY[interval '-1 microsecond', interval '0', interval '1 microsecond']) d
        UNION SELECT now()) p;
SELECT count(*) AS rows_before_first FROM drift_as_of(NULL::ex_copy,
  (SELECT min(committed_at) - interval '1 second' FROM drift_history('ex')));
-- SET driftdb.as_of at an original time reads the imported table as it was then.
SELECT committed_at AS t_update FROM drift_history('ex') WHERE op = 'PATCH' \gset
SET driftdb.as_of = :'t_update';
SELECT id, name, price FROM ex_copy ORDER BY id;
RESET driftdb.as_of;

-- Only into a table without history (55000); a rolled-back import leaves nothing.
SELECT drift_import('ex_copy', 'ex_events');
CREATE FOREIGN TABLE ex_again (id int NOT NULL, name text, tags text[], price numeric(8,2))
  SERVER drift OPTIONS (primary_key 'id');
BEGIN;
SELECT drift_import('ex_again', 'ex_events');
SELECT count(*) FROM ex_again;
ROLLBACK;
SELECT count(*) AS rows_after_rollback FROM ex_again;
SELECT count(*) AS history_after_rollback FROM drift_history('ex_again');
BEGIN;
SAVEPOINT s;
SELECT drift_import('ex_again', 'ex_events');
ROLLBACK TO SAVEPOINT s;
SELECT drift_import('ex_again', 'ex_events');
COMMIT;
SELECT count(*) FROM drift_history('ex_again');
-- Writes of the importing transaction come after the imported history.
CREATE FOREIGN TABLE ex_more (id int NOT NULL, name text, tags text[], price numeric(8,2))
  SERVER drift OPTIONS (primary_key 'id');
BEGIN;
SELECT drift_import('ex_more', 'ex_events');
INSERT INTO ex_more VALUES (5, 'plum', NULL, 3);
COMMIT;
SELECT op, "row"->>'id' AS id, role FROM drift_history('ex_more') ORDER BY seq;
INSERT INTO ex_again VALUES (5, 'plum', NULL, 3);
SELECT drift_import('ex_again', 'ex_events');

-- A read-only transaction (or a standby) cannot import (25006).
BEGIN READ ONLY;
SELECT drift_import('ex_again', 'ex_events');
ROLLBACK;

-- A table without a primary key: its hidden row ids are renumbered, history is the same.
CREATE FOREIGN TABLE ex_log (msg text, n int) SERVER drift;
INSERT INTO ex_log VALUES ('a', 1), ('b', 2);
UPDATE ex_log SET n = 20 WHERE msg = 'b';
DELETE FROM ex_log WHERE msg = 'a';
CREATE TABLE ex_log_events AS SELECT * FROM drift_export('ex_log');
SELECT op, key ? 'row_id' AS has_row_id, data FROM ex_log_events ORDER BY seq;
CREATE FOREIGN TABLE ex_log2 (msg text, n int) SERVER drift;
SELECT drift_import('ex_log2', 'ex_log_events');
SELECT (SELECT array_agg((committed_at, op, "row", changed, txid, role) ORDER BY seq)
          FROM drift_history('ex_log'))
     = (SELECT array_agg((committed_at, op, "row", changed, txid, role) ORDER BY seq)
          FROM drift_history('ex_log2')) AS same_history;
UPDATE ex_log2 SET n = 21;
SELECT * FROM ex_log2;

-- Bad input is refused (22023, or the column type's own error) and leaves nothing. The
-- seqs only need to increase: these count from 1.
CREATE FOREIGN TABLE ex_bad (id int NOT NULL, name text) SERVER drift OPTIONS (primary_key 'id');
CREATE TABLE ex_bad_events AS SELECT seq - :s0 AS seq, committed_at, txid, role, op, key, data
  FROM ex_events;
SELECT drift_import('ex_bad', 'ex_bad_events');        -- columns the table does not have
ALTER FOREIGN TABLE ex_bad ADD COLUMN tags text[], ADD COLUMN price numeric(2,2);
SELECT drift_import('ex_bad', 'ex_bad_events');        -- the column types check the values
ALTER FOREIGN TABLE ex_bad ALTER COLUMN price TYPE numeric;
UPDATE ex_bad_events SET committed_at = committed_at - interval '1 day' WHERE op = 'PATCH';
SELECT drift_import('ex_bad', 'ex_bad_events');        -- times out of order
UPDATE ex_bad_events SET committed_at = now() + interval '1 day' WHERE op = 'PATCH';
SELECT drift_import('ex_bad', 'ex_bad_events');        -- a time after the import
DELETE FROM ex_bad_events WHERE op = 'PATCH';
UPDATE ex_bad_events SET seq = 1 WHERE seq = 2;
SELECT drift_import('ex_bad', 'ex_bad_events');        -- two events at one seq
UPDATE ex_bad_events SET seq = 2 WHERE seq = 1 AND key->>'id' = '2';
UPDATE ex_bad_events SET op = 'UPSERT' WHERE op = 'SOFT_DELETE';
SELECT drift_import('ex_bad', 'ex_bad_events');
UPDATE ex_bad_events SET op = 'SOFT_DELETE', key = '{"id": "9"}' WHERE op = 'UPSERT';
SELECT drift_import('ex_bad', 'ex_bad_events');        -- deletes a row never inserted
SELECT count(*) FROM drift_history('ex_bad');

-- Privileges: exporting needs SELECT on the table (as drift_history), importing needs
-- ownership of the target (it writes history in other roles' names) and SELECT on the
-- rows read.
CREATE ROLE ex_other;
CREATE FOREIGN TABLE ex_theirs (id int NOT NULL, name text, tags text[], price numeric(8,2))
  SERVER drift OPTIONS (primary_key 'id');
ALTER FOREIGN TABLE ex_theirs OWNER TO ex_other;
SET ROLE ex_other;
SELECT count(*) FROM drift_export('ex');
SELECT drift_import('ex_bad', 'ex_events');
SELECT drift_import('ex_theirs', 'ex_events');
RESET ROLE;
GRANT SELECT ON ex_events TO ex_other;
SET ROLE ex_other;
SELECT drift_import('ex_theirs', 'ex_events');
RESET ROLE;
DROP FOREIGN TABLE ex_theirs;
DROP OWNED BY ex_writer, ex_other;
DROP ROLE ex_writer, ex_other;
DROP TABLE ex_events, ex_log_events, ex_bad_events;
DROP FOREIGN TABLE ex, ex_copy, ex_again, ex_more, ex_log, ex_log2, ex_bad;
