//! The one place where DriftDB errors become Postgres errors with a SQLSTATE.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// The location Postgres prints for errors raised here.
const FUNC: &str = "driftdb";

#[derive(Debug)]
pub enum DriftError {
    /// The library was loaded by a backend instead of the postmaster.
    NotPreloaded,
    /// A foreign-data-wrapper option that DriftDB does not know.
    UnknownOption { name: String, valid: &'static str },
    /// A known option given on the wrong kind of object.
    MisplacedOption {
        name: String,
        belongs_on: &'static str,
        given_on: &'static str,
    },
    /// A known option with a value DriftDB cannot use.
    BadOptionValue {
        name: String,
        value: String,
        why: String,
    },
    /// A capability that is not built yet: said plainly rather than faked.
    NotImplemented { what: &'static str },
}

impl DriftError {
    /// Raises this error in Postgres. Never returns: the transaction aborts.
    pub fn report(self) -> ! {
        use PgSqlErrorCode::*;
        let report = match self {
            DriftError::NotPreloaded => ErrorReport::new(
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "driftdb must be loaded via shared_preload_libraries",
                FUNC,
            )
            .set_hint(
                "Add driftdb to shared_preload_libraries in postgresql.conf \
                 (shared_preload_libraries = 'driftdb') and restart the server.",
            ),
            DriftError::UnknownOption { name, valid } => ErrorReport::new(
                ERRCODE_FDW_INVALID_OPTION_NAME,
                format!("invalid option \"{name}\""),
                FUNC,
            )
            .set_hint(if valid.is_empty() {
                "There are no valid options in this context.".to_string()
            } else {
                format!("Valid options in this context are: {valid}")
            }),
            DriftError::MisplacedOption {
                name,
                belongs_on,
                given_on,
            } => ErrorReport::new(
                ERRCODE_FDW_INVALID_OPTION_NAME,
                format!("option \"{name}\" is only valid on {belongs_on}, not on {given_on}"),
                FUNC,
            ),
            DriftError::BadOptionValue { name, value, why } => ErrorReport::new(
                ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE,
                format!("invalid value for option \"{name}\": \"{value}\""),
                FUNC,
            )
            .set_detail(why),
            DriftError::NotImplemented { what } => ErrorReport::new(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("{what} is not implemented yet in this version of DriftDB"),
                FUNC,
            ),
        };
        report.report(PgLogLevel::ERROR);
        unreachable!("an ERROR report does not return")
    }
}
