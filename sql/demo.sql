-- The demo database of `make run`.
CREATE EXTENSION driftdb;
