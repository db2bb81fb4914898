-- The ledger (docs/ledger.md): a Merkle tree over every committed transaction group of
-- the cluster. drift_digest() hands out its head, drift_verify_digest() checks one
-- against the log, drift_prove() and drift_prove_consistency() give proofs that
-- drift_verify_inclusion() and drift_verify_consistency() check from their arguments
-- alone. Digests and hashes change from run to run: shown here are their shape, counts
-- and verdicts. Errors show their SQLSTATE.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
-- Only the SQLSTATE, for errors whose message names seqs, digests or table ids.
CREATE FUNCTION pg_temp.code_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE;
END $$;
CREATE FUNCTION pg_temp.size_of(digest text) RETURNS bigint LANGUAGE sql
  AS $$ SELECT split_part(digest, ':', 3)::bigint $$;
CREATE FUNCTION pg_temp.seq_of(digest text) RETURNS bigint LANGUAGE sql
  AS $$ SELECT split_part(digest, ':', 4)::bigint $$;

CREATE FOREIGN TABLE led_a (id int NOT NULL, name text) SERVER drift OPTIONS (primary_key 'id');
CREATE FOREIGN TABLE led_b (a int NOT NULL, b text NOT NULL, n int)
  SERVER drift OPTIONS (primary_key 'a,b');
CREATE FOREIGN TABLE led_c (v text) SERVER drift;
CREATE FOREIGN TABLE led_d (d date NOT NULL, v int) SERVER drift OPTIONS (primary_key 'd');
INSERT INTO led_a VALUES (1, 'one'), (2, 'two');

-- The digest: its canonical text, at the stable seq, the same while nothing changes.
SELECT drift_digest() AS d1 \gset
SELECT :'d1' ~ '^driftdb-digest:v1:[1-9][0-9]*:[1-9][0-9]*:-?[0-9]+:[0-9a-f]{64}$' AS canonical,
       pg_temp.seq_of(:'d1') = drift_current_seq() AS at_the_stable_seq,
       drift_digest() = :'d1' AS same_again;
SELECT drift_verify_digest(:'d1');

-- Each committed transaction is one more leaf; a rolled-back one is none.
UPDATE led_a SET name = 'One' WHERE id = 1;
BEGIN; INSERT INTO led_a VALUES (3, 'three'); ROLLBACK;
BEGIN;
INSERT INTO led_b VALUES (1, 'x', 10), (2, 'y', 20);
INSERT INTO led_a VALUES (4, 'four');
COMMIT;
INSERT INTO led_c VALUES ('keyless');
INSERT INTO led_d VALUES ('2026-01-01', 1);
SELECT drift_digest() AS d2 \gset
SELECT pg_temp.size_of(:'d2') - pg_temp.size_of(:'d1') AS new_leaves,
       pg_temp.seq_of(:'d2') = drift_current_seq() AS at_the_stable_seq;
-- An older digest still verifies: history was only appended to.
SELECT drift_verify_digest(:'d1') AS d1_ok, drift_verify_digest(:'d2') AS d2_ok;

-- Consistency: the newer tree extends the older one.
SELECT drift_prove_consistency(:'d1', :'d2') AS c12 \gset
SELECT drift_verify_consistency(:'d1', :'d2', :'c12') AS verifies,
       drift_verify_consistency(:'d2', :'d1', :'c12') AS swapped,
       length(:'c12'::bytea) = 19 + 32 * get_byte(:'c12'::bytea, 18) AS encoded_length,
       length(drift_prove_consistency(:'d2', :'d2')) AS same_size;
SELECT pg_temp.sqlstate_of(format('SELECT drift_prove_consistency(%L, %L)', :'d2', :'d1'));
SELECT pg_temp.code_of(format('SELECT drift_prove_consistency(%L, %L)', :'d1',
  regexp_replace(:'d2', ':[0-9]+:([0-9]+:-?[0-9]+:[0-9a-f]+)$', ':999999999:\1')));

-- A digest history does not give: false, with a WARNING (its detail, not shown here,
-- says what differs).
SELECT drift_verify_digest(regexp_replace(:'d2', '.$', CASE WHEN right(:'d2', 1) = '0' THEN '1' ELSE '0' END))
  AS other_root;
SELECT drift_verify_digest(regexp_replace(:'d2', '^(driftdb-digest:v1:)([0-9]+)',
  '\1' || (pg_temp.size_of(:'d2') + 1000)::text)) AS larger_tree;
SELECT drift_verify_digest(regexp_replace(:'d2', '^(driftdb-digest:v1:[0-9]+:)([0-9]+)',
  '\1' || (pg_temp.seq_of(:'d2') + 1)::text)) AS other_last_seq;
-- Malformed digests: 22P02.
SELECT pg_temp.sqlstate_of($$SELECT drift_verify_digest('nonsense')$$);
SELECT pg_temp.code_of(format('SELECT drift_verify_digest(%L)', upper(:'d2')));
SELECT pg_temp.code_of(format('SELECT drift_verify_digest(%L)', :'d2' || ':0'));
SELECT pg_temp.sqlstate_of(format('SELECT drift_verify_digest(%L)', 'driftdb-digest:v1:0:0:0:' || repeat('0', 64)));
SELECT drift_verify_digest(NULL) IS NULL AS strict;

-- Inclusion: the version of a row written at a seq, in the history of the current digest.
SELECT seq AS s_one FROM drift_history('led_a') WHERE "row"->>'id' = '1' AND op = 'PATCH' \gset
SELECT drift_verify_inclusion(digest, leaf_data, proof) AS verifies,
       digest = drift_digest() AS of_the_current_digest,
       leaf_index < pg_temp.size_of(digest) AS leaf_in_tree,
       length(proof) = 19 + 32 * get_byte(proof, 18) AS encoded_length,
       drift_verify_inclusion(digest, leaf_data || '\x00'::bytea, proof) AS other_leaf,
       drift_verify_inclusion(:'d1', leaf_data, proof) AS other_digest,
       position(convert_to('One', 'UTF8') in leaf_data) = 0 AS value_not_in_leaf
  FROM drift_prove('led_a', '1', :s_one);
-- A key of several columns, one text per column; a table without a key, by its row id.
SELECT seq AS s_b FROM drift_history('led_b') WHERE "row"->>'a' = '2' \gset
SELECT drift_verify_inclusion(digest, leaf_data, proof) AS verifies
  FROM drift_prove('led_b', ARRAY['2', 'y'], :s_b);
SELECT pk->>'row_id' AS rowid FROM drift_diff('led_c', 0, drift_current_seq()) \gset
SELECT seq AS s_c FROM drift_history('led_c') \gset
SELECT drift_verify_inclusion(digest, leaf_data, proof) AS verifies
  FROM drift_prove('led_c', :'rowid', :s_c);
-- The group of led_b's rows wrote led_a too: one leaf, both tables in it.
SELECT seq AS s_four FROM drift_history('led_a') WHERE "row"->>'id' = '4' \gset
SELECT a.leaf_index = b.leaf_index AS same_leaf
  FROM drift_prove('led_a', '4', :s_four) a, drift_prove('led_b', ARRAY['2', 'y'], :s_b) b;
-- Errors: not an event of that row, a seq not in the past, a key that names no row, the
-- wrong number of key texts, a key type not looked up by text, not a DriftDB table.
SELECT pg_temp.code_of(format('SELECT drift_prove(%L, %L, %s)', 'led_a', '2', :s_one));
SELECT pg_temp.code_of(format('SELECT drift_prove(%L, %L, %s)', 'led_a', '1', drift_current_seq() + 100));
SELECT pg_temp.code_of(format('SELECT drift_prove(%L, %L, %s)', 'led_a', '01', :s_one));
SELECT pg_temp.sqlstate_of(format('SELECT drift_prove(%L, %L, %s)', 'led_b', '2', :s_b));
SELECT pg_temp.sqlstate_of($$SELECT drift_prove('led_d', '2026-01-01', 1)$$);
CREATE TABLE led_heap (id int);
SELECT pg_temp.sqlstate_of($$SELECT drift_prove('led_heap', '1', 1)$$);
-- Malformed proofs: 22P03.
SELECT pg_temp.sqlstate_of(format('SELECT drift_verify_inclusion(%L, %L, %L)', :'d2', '\x00', '\x0102'));
SELECT pg_temp.sqlstate_of(format('SELECT drift_verify_consistency(%L, %L, %L)', :'d1', :'d2', '\x'));

-- Privileges. drift_digest and the proofs' checks are for everyone (a digest is a hash,
-- its sizes and a seq); drift_verify_digest reads every table's whole history and names
-- tables of every database: only roles it is granted to. drift_prove needs SELECT on the
-- table, checked first, and on every other table the transaction wrote (the proof holds
-- their rows' keys).
CREATE ROLE led_reader;
GRANT SELECT ON led_a TO led_reader;
SET ROLE led_reader;
SELECT drift_digest() IS NOT NULL AS digest;
SELECT pg_temp.sqlstate_of(format('SELECT drift_verify_digest(%L)', :'d2'));
SELECT drift_verify_inclusion(digest, leaf_data, proof) AS own_table
  FROM drift_prove('led_a', '1', :s_one);
SELECT pg_temp.sqlstate_of(format('SELECT drift_prove(%L, %L, %s)', 'led_a', '4', :s_four));
SELECT pg_temp.sqlstate_of(format('SELECT drift_prove(%L, ARRAY[%L, %L], %s)', 'led_b', '2', 'y', :s_b));
SELECT drift_verify_consistency(:'d1', :'d2', drift_prove_consistency(:'d1', :'d2')) AS consistency;
RESET ROLE;
GRANT EXECUTE ON FUNCTION drift_verify_digest(text) TO led_reader;
SET ROLE led_reader;
SELECT drift_verify_digest(:'d2') AS granted;
RESET ROLE;

-- A dropped table: its files go, its groups' leaf sections stay (keys and commitments,
-- not values), so every digest still verifies and its rows' versions can still be proven
-- (by a superuser: the table is gone, no one has SELECT on it).
CREATE FOREIGN TABLE led_gone (id int NOT NULL, secret text) SERVER drift OPTIONS (primary_key 'id');
INSERT INTO led_gone VALUES (1, 'hush');
BEGIN;
INSERT INTO led_gone VALUES (2, 'hush hush');
INSERT INTO led_a VALUES (5, 'five');
COMMIT;
SELECT seq AS s_five FROM drift_history('led_a') WHERE "row"->>'id' = '5' \gset
DROP FOREIGN TABLE led_gone;
INSERT INTO led_a VALUES (6, 'six');
SELECT drift_digest() AS d3 \gset
SELECT pg_temp.size_of(:'d3') - pg_temp.size_of(:'d2') AS new_leaves;
SELECT drift_verify_digest(:'d1') AS d1_ok, drift_verify_digest(:'d2') AS d2_ok,
       drift_verify_digest(:'d3') AS d3_ok;
SELECT drift_verify_consistency(:'d2', :'d3', drift_prove_consistency(:'d2', :'d3')) AS consistency;
SELECT drift_verify_inclusion(digest, leaf_data, proof) AS verifies,
       position(convert_to('hush', 'UTF8') in leaf_data) = 0 AS value_not_in_leaf
  FROM drift_prove('led_a', '5', :s_five);
SET ROLE led_reader;
SELECT pg_temp.code_of(format('SELECT drift_prove(%L, %L, %s)', 'led_a', '5', :s_five));
RESET ROLE;

DROP TABLE led_heap;
DROP FOREIGN TABLE led_a, led_b, led_c, led_d;
REVOKE EXECUTE ON FUNCTION drift_verify_digest(text) FROM led_reader;
DROP ROLE led_reader;
