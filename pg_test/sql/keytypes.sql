-- Which types may be DriftDB keys and indexed columns: those whose stored bytes decide
-- equality, by Postgres' own rule (the default btree operator class's equalimage support
-- function, through domains and arrays). Everything else is refused when the table or the
-- index is declared, with 0A000, not at the first write.
\set VERBOSITY default
-- Refused at CREATE FOREIGN TABLE: the statement leaves no table behind.
CREATE FOREIGN TABLE k_interval (k interval NOT NULL) SERVER drift OPTIONS (primary_key 'k');
SELECT count(*) FROM pg_class WHERE relname = 'k_interval';
CREATE FOREIGN TABLE k_jsonb (k jsonb NOT NULL) SERVER drift OPTIONS (primary_key 'k');
CREATE DOMAIN money_amount AS numeric;
CREATE FOREIGN TABLE k_dnum (k money_amount NOT NULL) SERVER drift OPTIONS (primary_key 'k');
CREATE DOMAIN coord AS float8;
CREATE FOREIGN TABLE k_dfloat (k coord NOT NULL) SERVER drift OPTIONS (primary_key 'k');
CREATE FOREIGN TABLE k_numarr (k numeric[] NOT NULL) SERVER drift OPTIONS (primary_key 'k');
CREATE TYPE kt_pt AS (x float8, y float8);
CREATE FOREIGN TABLE k_comp (k kt_pt NOT NULL) SERVER drift OPTIONS (primary_key 'k');
CREATE FOREIGN TABLE k_bpchar (k char NOT NULL, j bpchar NOT NULL) SERVER drift
  OPTIONS (primary_key 'j');
CREATE FOREIGN TABLE k_point (k point NOT NULL) SERVER drift OPTIONS (primary_key 'k');
-- A key column that does not exist: 42703 at CREATE, not at the first INSERT.
CREATE FOREIGN TABLE k_missing (id int NOT NULL) SERVER drift
  OPTIONS (primary_key 'missing_col');
SELECT count(*) FROM pg_class WHERE relname = 'k_missing';
-- ... and at ALTER.
CREATE FOREIGN TABLE k_alter (id int NOT NULL, i interval) SERVER drift;
ALTER FOREIGN TABLE k_alter OPTIONS (ADD primary_key 'nope');
ALTER FOREIGN TABLE k_alter OPTIONS (ADD primary_key 'i');
ALTER FOREIGN TABLE k_alter OPTIONS (ADD primary_key 'id');
ALTER FOREIGN TABLE k_alter ALTER COLUMN id TYPE numeric;
SELECT format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'k_alter'::regclass AND attname = 'id';
-- Accepted: integers, text under a deterministic collation, uuid, enums, character(n),
-- domains over them and arrays of them.
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN code AS text;
CREATE FOREIGN TABLE k_ok (i int NOT NULL, t text COLLATE "C" NOT NULL, u uuid NOT NULL,
                           m mood NOT NULL, c char(5) NOT NULL, d code NOT NULL,
                           a int[] NOT NULL, v varchar(10) NOT NULL)
  SERVER drift OPTIONS (primary_key 'i, t, u, m, c, d, a, v');
INSERT INTO k_ok VALUES (1, 'x', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'ok', 'ab', 'y',
                         '{1,2}', 'z');
SELECT i, c, length(c) AS len, octet_length(c) AS bytes FROM k_ok;
-- character(n): a key stored padded is found by an unpadded constant, as on heap.
CREATE FOREIGN TABLE k_char (k char(5) NOT NULL, v int) SERVER drift
  OPTIONS (primary_key 'k');
CREATE TABLE h_char (k char(5) PRIMARY KEY, v int);
INSERT INTO k_char VALUES ('ab', 1), ('abc  ', 2), ('é', 3);
INSERT INTO h_char VALUES ('ab', 1), ('abc  ', 2), ('é', 3);
SELECT v FROM k_char WHERE k = 'ab';
SELECT v FROM h_char WHERE k = 'ab';
SELECT v FROM k_char WHERE k = 'ab   ';
SELECT v FROM k_char WHERE k = 'abc';
SELECT v FROM k_char WHERE k = 'é';
SELECT v FROM k_char WHERE k IN ('ab', 'abc', 'zz') ORDER BY v;
SELECT v FROM h_char WHERE k IN ('ab', 'abc', 'zz') ORDER BY v;
-- A constant longer than the column matches nothing (heap: nothing, no error).
SELECT v FROM k_char WHERE k = 'abcdefg';
SELECT v FROM h_char WHERE k = 'abcdefg';
-- The same key twice is a conflict, padded or not.
INSERT INTO k_char VALUES ('ab ', 9);
EXPLAIN (COSTS OFF) SELECT v FROM k_char WHERE k = 'ab';
-- An index on a character(n) column answers the same.
CREATE FOREIGN TABLE i_char (id int NOT NULL, c char(4)) SERVER drift
  OPTIONS (primary_key 'id');
INSERT INTO i_char VALUES (1, 'x'), (2, 'xy'), (3, 'x  '), (4, NULL);
SELECT drift_create_index('i_char', 'c');
EXPLAIN (COSTS OFF) SELECT id FROM i_char WHERE c = 'x';
SELECT id FROM i_char WHERE c = 'x' ORDER BY id;
SELECT id FROM i_char WHERE c = 'xy  ' ORDER BY id;
SELECT id FROM i_char WHERE c = 'xyzzy' ORDER BY id;
-- Ranges on an index: uuid (compared byte by byte) and text under the C collation (by
-- bytes, a prefix first) are served by the index, exactly as heap answers; text under
-- another collation is served for equality only (its order is the collation's).
CREATE FOREIGN TABLE i_rng (id int NOT NULL, u uuid, c text COLLATE "C", d text)
  SERVER drift OPTIONS (primary_key 'id');
CREATE TABLE h_rng (id int, u uuid, c text COLLATE "C", d text);
INSERT INTO i_rng SELECT g, md5(g::text)::uuid, left(md5(g::text), g % 5), 'd' || g
  FROM generate_series(1, 200) g;
INSERT INTO h_rng SELECT * FROM i_rng;
INSERT INTO i_rng VALUES (201, NULL, 'ab', 'x'), (202, NULL, 'ab' || chr(233), 'y'),
                         (203, NULL, 'abc', 'z'), (204, NULL, 'B', 'w');
INSERT INTO h_rng VALUES (201, NULL, 'ab', 'x'), (202, NULL, 'ab' || chr(233), 'y'),
                         (203, NULL, 'abc', 'z'), (204, NULL, 'B', 'w');
SELECT drift_create_index('i_rng', 'u');
SELECT drift_create_index('i_rng', 'c');
SELECT drift_create_index('i_rng', 'd');
EXPLAIN (COSTS OFF) SELECT id FROM i_rng WHERE u >= '40000000-0000-0000-0000-000000000000'
                                         AND u < '80000000-0000-0000-0000-000000000000';
SELECT (SELECT array_agg(id ORDER BY id) FROM i_rng
         WHERE u >= '40000000-0000-0000-0000-000000000000'
           AND u < '80000000-0000-0000-0000-000000000000')
     = (SELECT array_agg(id ORDER BY id) FROM h_rng
         WHERE u >= '40000000-0000-0000-0000-000000000000'
           AND u < '80000000-0000-0000-0000-000000000000') AS same_uuid_range,
       (SELECT count(*) FROM i_rng WHERE u > 'c0000000-0000-0000-0000-000000000000') > 0
         AS some_rows;
EXPLAIN (COSTS OFF) SELECT id FROM i_rng WHERE c > 'ab' AND c <= 'b';
SELECT id, c FROM i_rng WHERE c > 'ab' AND c <= 'abd' ORDER BY id;
SELECT id, c FROM h_rng WHERE c > 'ab' AND c <= 'abd' ORDER BY id;
SELECT (SELECT array_agg(id ORDER BY id) FROM i_rng WHERE c >= '3' AND c < 'a')
     = (SELECT array_agg(id ORDER BY id) FROM h_rng WHERE c >= '3' AND c < 'a') AS same_text_range,
       (SELECT array_agg(id ORDER BY id) FROM i_rng WHERE c < 'C')
     = (SELECT array_agg(id ORDER BY id) FROM h_rng WHERE c < 'C') AS same_below_c;
-- Under the database's collation: equality from the index, a range from a full scan.
EXPLAIN (COSTS OFF) SELECT id FROM i_rng WHERE d = 'd7';
EXPLAIN (COSTS OFF) SELECT id FROM i_rng WHERE d > 'd7';
SELECT count(*) FROM i_rng WHERE d > 'd7';
SELECT count(*) FROM h_rng WHERE d > 'd7';
DROP FOREIGN TABLE i_rng;
DROP TABLE h_rng;
-- Indexes are refused on the same types as keys, by the same rule, except numeric and
-- the floats (and domains over them), which the engine keys canonically (numindexes.sql).
CREATE FOREIGN TABLE i_bad (id int NOT NULL, n numeric, i interval, j jsonb, d coord,
                            a numeric[], p kt_pt)
  SERVER drift OPTIONS (primary_key 'id');
SELECT drift_create_index('i_bad', 'n');
SELECT drift_create_index('i_bad', 'i');
SELECT drift_create_index('i_bad', 'j');
SELECT drift_create_index('i_bad', 'd');
SELECT drift_create_index('i_bad', 'a');
SELECT drift_create_index('i_bad', 'p');
DROP FOREIGN TABLE k_alter, k_ok, k_char, i_char, i_bad;
DROP TABLE h_char;
DROP TYPE kt_pt, mood;
DROP DOMAIN money_amount, coord, code;
