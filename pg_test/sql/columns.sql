-- A scan decodes only the columns the query reads; every other way of reading a row must
-- still see all of it.
CREATE FOREIGN TABLE wide (id int NOT NULL, a text, b int, c jsonb, d numeric)
  SERVER drift OPTIONS (primary_key 'id');
INSERT INTO wide SELECT g, 'a' || g, g * 10, jsonb_build_object('g', g), g / 4.0
  FROM generate_series(1, 3000) g;
SELECT drift_snapshot('wide') > 0 AS snapshot;
UPDATE wide SET b = -b WHERE id % 500 = 0;
DELETE FROM wide WHERE id % 700 = 0;
INSERT INTO wide VALUES (0, 'zero', 0, '{}', 0), (5000, 'last', 1, '[1]', 1.5);

-- One column, two, in quals only, in aggregates.
SELECT count(*), sum(b) FROM wide;
SELECT sum(d), max(a) FROM wide WHERE b < 0;
SELECT id FROM wide WHERE a = 'a1500';
SELECT count(*) FROM wide WHERE c->>'g' = '2999';
-- Whole-row references read every column.
SELECT w FROM wide w WHERE id IN (0, 500, 5000) ORDER BY id;
SELECT row_to_json(w) FROM wide w WHERE b = -15000;
SELECT (SELECT md5(string_agg(w::text, ',' ORDER BY id)) FROM wide w)
     = (SELECT md5(string_agg(ROW(id, a, b, c, d)::text, ',' ORDER BY id)) FROM wide)
  AS whole_rows_match;

-- A join on one column, selecting another.
CREATE TABLE picks (wide_id int);
INSERT INTO picks VALUES (1), (1000), (2999), (5000);
SELECT p.wide_id, w.c FROM picks p JOIN wide w ON w.id = p.wide_id ORDER BY 1;
-- A view over a subset, filtered on a column it does not show.
CREATE VIEW wide_names AS SELECT id, a FROM wide WHERE d > 700;
SELECT count(*), min(a) FROM wide_names;

-- An UPDATE of one column keeps the others; RETURNING and triggers see whole rows.
UPDATE wide SET b = 7 WHERE id = 3 RETURNING *;
SELECT * FROM wide WHERE id = 3;
UPDATE wide SET b = b + 1 WHERE a = 'a4' RETURNING id, a, c, d;
DELETE FROM wide WHERE b = 50 RETURNING *;
CREATE FUNCTION wide_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE NOTICE 'old % new %', OLD, NEW;
  RETURN NEW;
END $$;
CREATE TRIGGER wide_audit BEFORE UPDATE ON wide FOR EACH ROW EXECUTE FUNCTION wide_audit();
UPDATE wide SET d = 0 WHERE b = 60;
SELECT * FROM wide WHERE id = 6;
DROP TRIGGER wide_audit ON wide;

-- The same reads in the past, by drift_as_of and by driftdb.as_of.
SELECT drift_current_seq() AS before_change \gset
UPDATE wide SET a = 'changed' WHERE id <= 10;
SELECT count(*), sum(b), count(*) FILTER (WHERE a = 'changed') AS changed
  FROM drift_as_of(NULL::wide, :before_change);
SELECT a, b FROM drift_as_of(NULL::wide, :before_change) WHERE id = 9;
BEGIN;
SELECT set_config('driftdb.as_of', :'before_change', true) IS NOT NULL AS set;
SELECT count(*) FILTER (WHERE a = 'changed') AS changed, sum(d) FROM wide;
SELECT w FROM wide w WHERE id = 9;
COMMIT;
SELECT a FROM wide WHERE id = 9;
DROP VIEW wide_names;
DROP TABLE picks;
DROP FOREIGN TABLE wide;
DROP FUNCTION wide_audit();
