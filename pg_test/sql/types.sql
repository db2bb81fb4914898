-- Every common type round-trips exactly: compared as text with a heap copy.
CREATE FOREIGN TABLE alltypes (
  id int8 NOT NULL, i2 int2, i4 int4, n numeric, f4 float4, f8 float8, b bool,
  t text, vc varchar(10), c char(5), by bytea, d date, tm time, ts timestamp,
  tz timestamptz, iv interval, u uuid, j json, jb jsonb, ai int[], at text[], big text
) SERVER drift OPTIONS (primary_key 'id');
CREATE TABLE alltypes_heap (LIKE alltypes);
INSERT INTO alltypes_heap VALUES
 (1, -32768, -2147483648, 123456789.000100, 1.5, -2.25e300, true, 'hé''llo', 'abc', 'ab', '\x00ff10',
  '2024-02-29', '23:59:59.999999', '1999-12-31 23:59:59', '2026-01-01 12:00+02',
  '1 year 2 mons -3 days 04:05:06', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{"a": [1, 2.50]}', '{"b": {"c": null}}', '{1,NULL,3}', '{"x","y z"}',
  repeat('long text ', 100000)),
 (2, NULL, NULL, 'NaN', '-Infinity', 0, false, '', '', '', '\x', '-infinity', '00:00',
  'infinity', '-infinity', '0', NULL, '[]', '[]', '{}', '{}', NULL),
 (3, 32767, 2147483647, -0.000000001, 'NaN', -0.0, NULL, NULL, NULL, NULL, NULL,
  '4713-01-01 BC', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO alltypes SELECT * FROM alltypes_heap;
SELECT h.id, (a.*)::text IS NOT DISTINCT FROM (h.*)::text AS same
  FROM alltypes_heap h LEFT JOIN alltypes a ON a.id = h.id ORDER BY h.id;
SELECT id, length(big), md5(big) = md5(repeat('long text ', 100000)) AS big_ok FROM alltypes ORDER BY id;
-- JSON operators work on stored jsonb.
SELECT id, jb -> 'b' ->> 'c' IS NULL AS c_null, j -> 'a' -> 1 AS a1 FROM alltypes WHERE id = 1;
-- Columns added later read as NULL in old rows; dropped columns are skipped by attnum.
ALTER FOREIGN TABLE alltypes ADD COLUMN extra int;
ALTER FOREIGN TABLE alltypes DROP COLUMN i2;
SELECT id, i4, extra FROM alltypes ORDER BY id;
UPDATE alltypes SET extra = 5 WHERE id = 2;
INSERT INTO alltypes (id, i4, extra) VALUES (4, 44, 444);
SELECT id, i4, extra FROM alltypes ORDER BY id;
DROP TABLE alltypes_heap;
DROP FOREIGN TABLE alltypes;
