//! DriftDB's storage engine. No Postgres symbols live here.
pub const FORMAT_VERSION: u16 = 1;
