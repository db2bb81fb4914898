//! Option validation for the wrapper, its servers, user mappings, tables and columns.
//! Pure logic: no Postgres calls, so it is unit-tested without a server.

use crate::error::DriftError;
use pgrx::pg_sys;

/// Where an option was given, decided by the catalog Postgres names in the validator call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Wrapper,
    Server,
    UserMapping,
    Table,
    Column,
    Other,
}

impl Place {
    pub fn from_catalog(catalog: pg_sys::Oid) -> Place {
        match catalog {
            pg_sys::ForeignDataWrapperRelationId => Place::Wrapper,
            pg_sys::ForeignServerRelationId => Place::Server,
            pg_sys::UserMappingRelationId => Place::UserMapping,
            pg_sys::ForeignTableRelationId => Place::Table,
            pg_sys::AttributeRelationId => Place::Column,
            _ => Place::Other,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Place::Wrapper => "the foreign-data wrapper",
            Place::Server => "a server",
            Place::UserMapping => "a user mapping",
            Place::Table => "a foreign table",
            Place::Column => "a column",
            Place::Other => "this object",
        }
    }
}

/// Every option DriftDB accepts, with the one place it belongs.
const KNOWN: &[(&str, Place)] = &[("primary_key", Place::Table)];

fn valid_here(place: Place) -> &'static str {
    match place {
        Place::Table => "primary_key",
        _ => "",
    }
}

pub fn validate(place: Place, name: &str, value: &str) -> Result<(), DriftError> {
    let Some(&(_, home)) = KNOWN.iter().find(|(known, _)| *known == name) else {
        return Err(DriftError::UnknownOption {
            name: name.to_string(),
            valid: valid_here(place),
        });
    };
    if home != place {
        return Err(DriftError::MisplacedOption {
            name: name.to_string(),
            belongs_on: home.describe(),
            given_on: place.describe(),
        });
    }
    match name {
        "primary_key" => primary_key_columns(value).map(|_| ()),
        _ => Ok(()),
    }
}

/// Parses `primary_key 'a, b'` into its column names: non-empty, no repeats.
pub fn primary_key_columns(value: &str) -> Result<Vec<String>, DriftError> {
    let bad = |why: &str| DriftError::BadOptionValue {
        name: "primary_key".into(),
        value: value.into(),
        why: why.into(),
    };
    let mut cols: Vec<String> = Vec::new();
    for part in value.split(',') {
        let col = part.trim();
        if col.is_empty() {
            return Err(bad(
                "primary_key must be a comma-separated list of column names",
            ));
        }
        if cols.iter().any(|c| c == col) {
            return Err(bad(&format!("column \"{col}\" appears twice")));
        }
        cols.push(col.to_string());
    }
    Ok(cols)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn primary_key_lists() {
        assert_eq!(primary_key_columns("id").unwrap(), vec!["id"]);
        assert_eq!(primary_key_columns(" a , b").unwrap(), vec!["a", "b"]);
        assert!(primary_key_columns("").is_err());
        assert!(primary_key_columns("a,,b").is_err());
        assert!(primary_key_columns("a,a").is_err());
    }

    #[test]
    fn places() {
        assert!(validate(Place::Table, "primary_key", "id").is_ok());
        assert!(matches!(
            validate(Place::Server, "primary_key", "id"),
            Err(DriftError::MisplacedOption { .. })
        ));
        assert!(matches!(
            validate(Place::Table, "colour", "x"),
            Err(DriftError::UnknownOption {
                valid: "primary_key",
                ..
            })
        ));
    }
}
