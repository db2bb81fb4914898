-- drift_snapshot writes the table's state so reads start from it; answers do not change.
CREATE FOREIGN TABLE sn (id int NOT NULL, v text) SERVER drift OPTIONS (primary_key 'id');
SELECT drift_snapshot('sn');
INSERT INTO sn SELECT g, 'v' || g FROM generate_series(1, 300) g;
UPDATE sn SET v = 'changed' WHERE id % 10 = 0;
DELETE FROM sn WHERE id > 290;
SELECT drift_snapshot('sn') > 0 AS took_snapshot;
SELECT count(*) > 0 AS snapshot_file
  FROM pg_ls_dir('driftdb/tables/' ||
       (((SELECT oid FROM pg_database WHERE datname = current_database())::bigint << 32)
        | 'sn'::regclass::oid::bigint)::text) f
 WHERE f LIKE 'snap-%';
SELECT count(*), count(*) FILTER (WHERE v = 'changed'), max(id) FROM sn;
-- Writes after the snapshot are laid over it.
INSERT INTO sn VALUES (1000, 'after');
UPDATE sn SET v = 'again' WHERE id = 5;
DELETE FROM sn WHERE id = 6;
SELECT id, v FROM sn WHERE id IN (5, 6, 1000) ORDER BY id;
SELECT count(*) FROM sn;
SELECT drift_snapshot('sn') > 0 AS second_snapshot;
SELECT count(*), count(*) FILTER (WHERE v = 'changed') FROM sn;
-- Only the owner may snapshot.
CREATE ROLE sn_other;
GRANT SELECT ON sn TO sn_other;
SET ROLE sn_other;
SELECT drift_snapshot('sn');
RESET ROLE;
DROP OWNED BY sn_other;
DROP ROLE sn_other;
DROP FOREIGN TABLE sn;
