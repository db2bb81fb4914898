-- REVOKE EXECUTE on drift_as_of or drift_history fences the past on every path: the
-- planner's rewrites of their calls (a scan of the table at the point, a key lookup of
-- the history) check EXECUTE as the function call does (#23).
\set VERBOSITY terse
CREATE ROLE regress_ex_reader;
CREATE FOREIGN TABLE ex (id int NOT NULL, v text) SERVER drift OPTIONS (primary_key 'id');
INSERT INTO ex VALUES (1, 'a');
GRANT SELECT ON ex TO regress_ex_reader;
SELECT drift_current_seq() AS s \gset
SET ROLE regress_ex_reader;
SELECT count(*) FROM drift_as_of(NULL::ex, :s);
SELECT count(*) FROM drift_history('ex') WHERE "row"->>'id' = '1';
RESET ROLE;
REVOKE EXECUTE ON FUNCTION drift_as_of(anyelement, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION drift_history(regclass) FROM PUBLIC;
SET ROLE regress_ex_reader;
SELECT count(*) FROM drift_as_of(NULL::ex, :s);
SELECT v FROM drift_as_of(NULL::ex, :s) WHERE id = 1;
SELECT count(*) FROM drift_history('ex') WHERE "row"->>'id' = '1';
SELECT count(*) FROM drift_history('ex');
-- The other overloads stay granted.
SELECT count(*) FROM drift_as_of(NULL::ex, now());
SELECT count(*) FROM drift_as_of(NULL::ex, :'s');
RESET ROLE;
-- A statement prepared while EXECUTE was granted is refused once it is revoked...
GRANT EXECUTE ON FUNCTION drift_as_of(anyelement, bigint) TO PUBLIC;
SET ROLE regress_ex_reader;
PREPARE past(bigint) AS SELECT count(*) FROM drift_as_of(NULL::ex, $1) WHERE id = 1;
EXECUTE past(:s);
RESET ROLE;
REVOKE EXECUTE ON FUNCTION drift_as_of(anyelement, bigint) FROM PUBLIC;
SET ROLE regress_ex_reader;
EXECUTE past(:s);
RESET ROLE;
DEALLOCATE past;
-- ...and a generic plan made by a role that may run it is refused to one that may not.
SET plan_cache_mode = force_generic_plan;
PREPARE past(bigint) AS SELECT count(*) FROM drift_as_of(NULL::ex, $1) WHERE id = 1;
EXECUTE past(:s);
SET ROLE regress_ex_reader;
EXECUTE past(:s);
RESET ROLE;
DEALLOCATE past;
RESET plan_cache_mode;
GRANT EXECUTE ON FUNCTION drift_as_of(anyelement, bigint) TO PUBLIC;
GRANT EXECUTE ON FUNCTION drift_history(regclass) TO PUBLIC;
DROP FOREIGN TABLE ex;
DROP ROLE regress_ex_reader;
