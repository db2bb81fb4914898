-- drift_tables and drift_stats(): every figure is measured, and checked here against the
-- files on disk and against what was done.
CREATE FOREIGN TABLE ts (id int NOT NULL, v text) SERVER drift OPTIONS (primary_key 'id');
-- Sizes of files on disk, read by Postgres itself.
CREATE FUNCTION pg_temp.dir_bytes(dir text, pattern text) RETURNS bigint LANGUAGE sql AS $$
  SELECT coalesce(sum((pg_stat_file(dir || '/' || f)).size), 0)::bigint
    FROM pg_ls_dir(dir) f WHERE f LIKE pattern $$;
CREATE FUNCTION pg_temp.dir_files(dir text, pattern text) RETURNS int LANGUAGE sql AS $$
  SELECT count(*)::int FROM pg_ls_dir(dir) f WHERE f LIKE pattern $$;
CREATE FUNCTION pg_temp.table_dir(t regclass) RETURNS text LANGUAGE sql AS $$
  SELECT 'driftdb/tables/' ||
         (((SELECT oid FROM pg_database WHERE datname = current_database())::bigint << 32)
          | t::oid::bigint) $$;
CREATE FUNCTION pg_temp.server_stat(stat text) RETURNS bigint LANGUAGE sql AS $$
  SELECT value FROM drift_server_stats() WHERE name = stat $$;
CREATE FUNCTION pg_temp.my_stat(stat text) RETURNS bigint LANGUAGE sql AS $$
  SELECT value FROM drift_backend_stats() WHERE name = stat $$;
CREATE FUNCTION pg_temp.table_stat(t regclass, stat text) RETURNS numeric LANGUAGE sql AS $$
  SELECT value FROM drift_stats() WHERE scope = 'table' AND table_name = t AND name = stat $$;

-- A table never written has no files: every figure is zero.
SELECT * FROM drift_tables WHERE table_name = 'ts'::regclass;
INSERT INTO ts VALUES (0, 'first');          -- creates the table's files
SELECT pg_temp.dir_bytes(pg_temp.table_dir('ts'), '%.log')
     + pg_temp.dir_bytes('driftdb/journal', '%.log') AS bytes_before \gset
-- Commits sync nothing while DriftDB's sync worker guards them: it starts with the server,
-- and its rounds sync the logs before each checkpoint completes.
DO $$
BEGIN
  FOR i IN 1..1200 LOOP
    EXIT WHEN pg_temp.server_stat('sync_guard') = 1;
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SELECT pg_temp.server_stat('sync_guard') AS sync_guard;
-- This session's own counters (drift_backend_stats) move only with what it does; the
-- server's sum every backend, DriftDB's background worker included.
CREATE TEMP TABLE before AS SELECT name, value FROM drift_backend_stats();

-- 50 rows in 5 transactions.
INSERT INTO ts SELECT g, 'row ' || g FROM generate_series(1, 10) g;
INSERT INTO ts SELECT g, 'row ' || g FROM generate_series(11, 20) g;
INSERT INTO ts SELECT g, 'row ' || g FROM generate_series(21, 30) g;
SELECT drift_current_seq() AS after_30 \gset
INSERT INTO ts SELECT g, 'row ' || g FROM generate_series(31, 40) g;
INSERT INTO ts SELECT g, 'row ' || g FROM generate_series(41, 50) g;
SELECT s.name, s.value - b.value AS grew
  FROM drift_backend_stats() s JOIN before b USING (name)
 WHERE s.name IN ('appends', 'groups', 'events_appended')
 ORDER BY 1;
-- The bytes written are exactly what the table log and the journal grew by; no commit
-- synced anything (the sync worker does).
SELECT pg_temp.my_stat('bytes_written') - (SELECT value FROM before WHERE name = 'bytes_written')
       = pg_temp.dir_bytes(pg_temp.table_dir('ts'), '%.log')
         + pg_temp.dir_bytes('driftdb/journal', '%.log') - :bytes_before AS bytes_match_files;
SELECT pg_temp.my_stat('fsyncs') - (SELECT value FROM before WHERE name = 'fsyncs')
    AS fsyncs_of_five_commits;
-- A checkpoint does not complete before a sync round made those commits durable: the
-- round leaves where the journal ends in sync.mark (its last segment's length at byte 13).
CHECKPOINT;
SELECT pg_temp.server_stat('sync_rounds') > 0 AS rounds_ran,
       (SELECT sum(get_byte(m, 13 + i)::bigint << (8 * i)) FROM generate_series(0, 7) i)
       = (SELECT (pg_stat_file('driftdb/journal/' || max(f))).size
            FROM pg_ls_dir('driftdb/journal') f WHERE f LIKE '%.log') AS mark_at_journal_end
  FROM pg_read_binary_file('driftdb/sync.mark') m;
-- The server counters hold this backend's work (the worker and others add theirs).
SELECT bool_and(s.value >= b.value) AS server_includes_backend
  FROM drift_server_stats() s JOIN drift_backend_stats() b USING (name);
SELECT pg_temp.server_stat('journal_bytes') = pg_temp.dir_bytes('driftdb/journal', '%.log')
    AS journal_bytes_match,
       pg_temp.server_stat('journal_segments') = pg_temp.dir_files('driftdb/journal', '%.log')
    AS journal_segments_match;

-- Per table: events counted, rows live after deletes and updates, bytes as on disk.
DELETE FROM ts WHERE id > 45;
UPDATE ts SET v = 'changed' WHERE id <= 3;
SELECT events, live_rows, (SELECT count(*) FROM ts) AS rows_selected, segments,
       log_bytes = pg_temp.dir_bytes(pg_temp.table_dir('ts'), '%.log') AS log_bytes_match,
       segments = pg_temp.dir_files(pg_temp.table_dir('ts'), '%.log') AS segments_match,
       snapshot_seq, snapshot_bytes, indexes, compression_ratio
  FROM drift_tables WHERE table_name = 'ts'::regclass;
-- A rolled-back transaction leaves nothing to count.
BEGIN; INSERT INTO ts VALUES (100, 'never'); ROLLBACK;
SELECT events, live_rows FROM drift_tables WHERE table_name = 'ts'::regclass;

-- A snapshot and an index: the snapshot's seq, its file size, its compression.
SELECT drift_snapshot('ts') AS snap_seq \gset
SELECT drift_create_index('ts', 'v');
SELECT snapshot_seq = :snap_seq AS snapshot_seq_match,
       snapshot_bytes = pg_temp.dir_bytes(pg_temp.table_dir('ts'), 'snap-%')
           AS snapshot_bytes_match,
       indexes, compression_ratio > 1 AS compressed
  FROM drift_tables WHERE table_name = 'ts'::regclass;
SELECT pg_temp.table_stat('ts', 'compression_ratio')
       = round(pg_temp.table_stat('ts', 'snapshot_raw_bytes')
               / pg_temp.table_stat('ts', 'snapshot_compressed_bytes'), 2) AS ratio_is_raw_over_compressed,
       pg_temp.table_stat('ts', 'snapshot_compressed_bytes')
           < pg_temp.table_stat('ts', 'snapshot_bytes') AS blocks_within_file;

-- Reading before the snapshot replays the log up to that seq (whole transactions: the
-- first four, 31 events), once; the same read again is served by the replay cache.
CREATE TEMP TABLE r0 AS SELECT name, value FROM drift_backend_stats();
SELECT count(*) FROM drift_as_of(NULL::ts, :after_30);
SELECT count(*) FROM drift_as_of(NULL::ts, :after_30);
SELECT s.name, s.value - b.value AS grew
  FROM drift_backend_stats() s JOIN r0 b USING (name)
 WHERE s.name IN ('replays', 'replayed_events', 'replay_cache_hits')
 ORDER BY 1;
SELECT pg_temp.my_stat('longest_replay') >= 31 AS longest_replay_seen;
-- A key lookup in the snapshot decompresses its block once; the next one finds it cached.
CREATE TEMP TABLE b0 AS SELECT name, value FROM drift_backend_stats();
SELECT v FROM ts WHERE id = 7;
SELECT s.name, s.value - b.value AS grew
  FROM drift_backend_stats() s JOIN b0 b USING (name)
 WHERE s.name LIKE 'block_cache_%' ORDER BY 1;
SELECT v FROM ts WHERE id = 8;
SELECT s.name, s.value - b.value AS grew
  FROM drift_backend_stats() s JOIN b0 b USING (name)
 WHERE s.name LIKE 'block_cache_%' ORDER BY 1;

-- One row's history reads the frames the newest snapshot names for that row (row 2: its
-- INSERT's and the UPDATE's; row 47: its INSERT's and the DELETE's), plus the log after
-- that snapshot (one frame, after the next UPDATE), not the table's whole log.
CREATE TEMP TABLE h0 AS SELECT name, value FROM drift_backend_stats();
SELECT op, "row"->>'v' AS v FROM drift_history('ts') WHERE "row"->>'id' = '2' ORDER BY seq;
SELECT s.value - b.value AS frames_read
  FROM drift_backend_stats() s JOIN h0 b USING (name) WHERE s.name = 'history_frames';
DROP TABLE h0;
CREATE TEMP TABLE h0 AS SELECT name, value FROM drift_backend_stats();
SELECT op, "row"->>'v' AS v FROM drift_history('ts') WHERE "row"->>'id' = '47' ORDER BY seq;
SELECT s.value - b.value AS frames_read
  FROM drift_backend_stats() s JOIN h0 b USING (name) WHERE s.name = 'history_frames';
DROP TABLE h0;
UPDATE ts SET v = 'again' WHERE id = 2;
CREATE TEMP TABLE h0 AS SELECT name, value FROM drift_backend_stats();
SELECT op, "row"->>'v' AS v FROM drift_history('ts') WHERE "row"->>'id' = '2' ORDER BY seq;
SELECT s.value - b.value AS frames_read
  FROM drift_backend_stats() s JOIN h0 b USING (name) WHERE s.name = 'history_frames';

-- drift_stats() in long form: one row per figure.
SELECT scope, table_name, name FROM drift_stats()
 WHERE scope <> 'table' OR table_name = 'ts'::regclass ORDER BY scope, name;

-- A role without SELECT learns nothing about the table, not even that it has rows.
CREATE ROLE ts_reader;
SET ROLE ts_reader;
SELECT count(*) FROM drift_tables WHERE table_name = 'ts'::regclass;
SELECT count(*) FROM drift_stats() WHERE table_name = 'ts'::regclass;
SELECT count(*) > 0 AS sees_server_counters FROM drift_stats() WHERE scope = 'server';
RESET ROLE;
GRANT SELECT ON ts TO ts_reader;
SET ROLE ts_reader;
SELECT events, live_rows FROM drift_tables WHERE table_name = 'ts'::regclass;
RESET ROLE;
DROP OWNED BY ts_reader;
DROP ROLE ts_reader;
DROP FOREIGN TABLE ts;
