-- CREATE EXTENSION driftdb (done by pg_regress --load-extension) creates the wrapper,
-- the default server and drift_version().
SELECT drift_version() ~ '^driftdb [0-9]+\.[0-9]+\.[0-9]+ \(storage format [0-9]+\)$' AS version_ok;
SELECT fdwname, fdwhandler::regproc, fdwvalidator::regproc
  FROM pg_foreign_data_wrapper WHERE fdwname = 'driftdb';
SELECT s.srvname, w.fdwname
  FROM pg_foreign_server s JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
 WHERE w.fdwname = 'driftdb' ORDER BY 1;
-- The library is loaded by the postmaster, as it must be.
SHOW shared_preload_libraries;
