-- Who may read the past through someone else's code (#23). SET driftdb.as_of is the
-- reader's choice; it reaches into a view or a SECURITY DEFINER function only as far as
-- the reader's own privileges go:
-- * a view owned by another role (not security_invoker) shows the past only to a reader
--   with SELECT on the table itself, else 42501;
-- * a SECURITY DEFINER function reads (and writes) the present, unless it sets
--   driftdb.as_of itself.
\set VERBOSITY terse
CREATE ROLE regress_owner;
CREATE ROLE regress_reader;
GRANT CREATE ON SCHEMA public TO regress_owner;
GRANT USAGE ON FOREIGN SERVER drift TO regress_owner;
SET ROLE regress_owner;
CREATE FOREIGN TABLE secret (id int NOT NULL, v text) SERVER drift OPTIONS (primary_key 'id');
INSERT INTO secret VALUES (1, 'public'), (2, 'withdrawn');
SELECT drift_current_seq() AS before_delete \gset
DELETE FROM secret WHERE id = 2;
CREATE VIEW secret_v AS SELECT * FROM secret;
CREATE VIEW secret_inv WITH (security_invoker) AS SELECT * FROM secret;
CREATE FUNCTION secret_f() RETURNS SETOF secret SECURITY DEFINER
  LANGUAGE sql AS 'SELECT * FROM secret ORDER BY id';
CREATE FUNCTION secret_then() RETURNS SETOF secret SECURITY DEFINER
  LANGUAGE sql AS 'SELECT * FROM secret ORDER BY id';
CREATE FUNCTION secret_log(t text) RETURNS void SECURITY DEFINER
  LANGUAGE sql AS 'INSERT INTO secret VALUES (3, t)';
GRANT SELECT ON secret_v, secret_inv TO regress_reader;
RESET ROLE;
ALTER FUNCTION secret_then() SET driftdb.as_of = :'before_delete';
SET ROLE regress_reader;
-- In the present the view works; in the past it would show what the reader may not see.
SELECT * FROM secret_v ORDER BY id;
SET driftdb.as_of = :'before_delete';
SELECT * FROM secret_v ORDER BY id;
-- A security_invoker view checks the reader's privileges anyway.
SELECT * FROM secret_inv ORDER BY id;
-- SECURITY DEFINER functions run in the present, and may write there...
SELECT * FROM secret_f();
SELECT secret_log('written');
-- ...unless they set the point themselves.
SELECT * FROM secret_then();
RESET driftdb.as_of;
RESET ROLE;
-- A reader who may SELECT the table itself reads the past through the view too.
GRANT SELECT ON secret TO regress_reader;
SET ROLE regress_reader;
SET driftdb.as_of = :'before_delete';
SELECT * FROM secret_v ORDER BY id;
SELECT * FROM secret_inv ORDER BY id;
RESET driftdb.as_of;
RESET ROLE;
-- The owner's own views read the past.
SET ROLE regress_owner;
SET driftdb.as_of = :'before_delete';
SELECT * FROM secret_v ORDER BY id;
RESET driftdb.as_of;
DROP FUNCTION secret_f(), secret_then(), secret_log(text);
DROP VIEW secret_v, secret_inv;
DROP FOREIGN TABLE secret;
RESET ROLE;
REVOKE CREATE ON SCHEMA public FROM regress_owner;
REVOKE USAGE ON FOREIGN SERVER drift FROM regress_owner;
DROP ROLE regress_owner;
DROP ROLE regress_reader;
