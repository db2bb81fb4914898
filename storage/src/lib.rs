//! DriftDB's storage engine. No Postgres symbols live here.
