-- Row-level triggers on DriftDB tables, and EXPLAIN ANALYZE.
CREATE FOREIGN TABLE tr (id int NOT NULL, name text, touched int DEFAULT 0)
  SERVER drift OPTIONS (primary_key 'id');
CREATE TABLE tr_audit (op text, id int, old_name text, new_name text);
CREATE FUNCTION tr_before() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    IF OLD.name = 'keep' THEN RETURN NULL; END IF;  -- skip this delete
    RETURN OLD;
  END IF;
  NEW.name := lower(NEW.name);
  NEW.touched := coalesce(NEW.touched, 0) + 1;
  RETURN NEW;
END $$;
CREATE FUNCTION tr_after() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO tr_audit VALUES (TG_OP,
    CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END,
    CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE OLD.name END,
    CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE NEW.name END);
  RETURN NULL;
END $$;
CREATE TRIGGER tr_b BEFORE INSERT OR UPDATE OR DELETE ON tr FOR EACH ROW EXECUTE FUNCTION tr_before();
CREATE TRIGGER tr_a AFTER INSERT OR UPDATE OR DELETE ON tr FOR EACH ROW EXECUTE FUNCTION tr_after();
INSERT INTO tr VALUES (1, 'ONE'), (2, 'Keep'), (3, 'Three');
UPDATE tr SET name = 'UNO' WHERE id = 1;
DELETE FROM tr WHERE id IN (2, 3);
SELECT * FROM tr ORDER BY id;
SELECT * FROM tr_audit;
DROP FOREIGN TABLE tr;
DROP TABLE tr_audit;
DROP FUNCTION tr_before(), tr_after();
-- EXPLAIN ANALYZE runs the scan and reports real row counts.
CREATE FOREIGN TABLE ea (id int NOT NULL, v int) SERVER drift OPTIONS (primary_key 'id');
INSERT INTO ea SELECT g, g FROM generate_series(1, 100) g;
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT * FROM ea WHERE v > 90;
EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT * FROM ea WHERE id = 5;
-- ANALYZE gives the planner the real row count.
ANALYZE ea;
SELECT reltuples FROM pg_class WHERE relname = 'ea';
SELECT attname, n_distinct FROM pg_stats WHERE tablename = 'ea' ORDER BY attname;
DELETE FROM ea WHERE id > 40;
ANALYZE ea;
SELECT reltuples FROM pg_class WHERE relname = 'ea';
DROP FOREIGN TABLE ea;
