//! Datums to stored bytes and back.
//!
//! A column value is stored as the type's exact internal image, the same bytes a heap
//! tuple holds (detoasted and uncompressed), so every type round-trips exactly and
//! decoding costs one copy:
//! - integer-like types (int2, int4, int8, date, time, timestamp, timestamptz, oid): big-
//!   endian, with the sign bit flipped for the signed ones, so that byte order is value
//!   order and secondary indexes (which order entries by bytes) answer ranges exactly;
//! - other pass-by-value types: their `typlen` bytes, little-endian;
//! - fixed-length by-reference types (uuid, interval, name, ...): their `typlen` bytes;
//! - varlena types (text, numeric, jsonb, arrays, ...): the payload without its header;
//! - cstring types: the bytes without the terminating zero.
//!
//! Keys are encoded so that byte equality is value equality and memcmp order is value
//! order for the integer types: each key column is an 8-byte big-endian integer with the
//! sign bit flipped (int2/int4/int8/oid), or the image with 0x00 escaped as 0x00 0xFF and
//! terminated by 0x00 0x01 (everything else), so composite keys never run into each other.

use crate::error::DriftError;
use driftdb_storage::IndexKind;
use pgrx::pg_sys;

/// How to encode one attribute, read from the relation's tuple descriptor.
#[derive(Clone, Debug)]
pub struct Column {
    /// 1-based attribute number: the engine's column id.
    pub attnum: i16,
    pub name: String,
    pub typid: pg_sys::Oid,
    /// The type modifier (a `character(n)`'s length), -1 for none.
    pub typmod: i32,
    /// The collation of a collatable type, `InvalidOid` for others.
    pub collation: pg_sys::Oid,
    pub typlen: i16,
    pub typbyval: bool,
    pub not_null: bool,
    pub dropped: bool,
}

impl Column {
    /// # Safety
    /// `att` must point into a live tuple descriptor.
    pub unsafe fn from_attribute(att: &pg_sys::FormData_pg_attribute) -> Column {
        // SAFETY: attname is a NameData inside the attribute row.
        let name = unsafe { std::ffi::CStr::from_ptr(att.attname.data.as_ptr()) };
        Column {
            attnum: att.attnum,
            name: name.to_string_lossy().into_owned(),
            typid: att.atttypid,
            typmod: att.atttypmod,
            collation: att.attcollation,
            typlen: att.attlen,
            typbyval: att.attbyval,
            not_null: att.attnotnull,
            dropped: att.attisdropped,
        }
    }

    /// The engine's column id.
    pub fn id(&self) -> u16 {
        self.attnum as u16
    }
}

/// How an integer-like type is stored: its width and whether it is signed.
fn ordered_int(typid: pg_sys::Oid) -> Option<bool> {
    match typid {
        pg_sys::INT2OID
        | pg_sys::INT4OID
        | pg_sys::INT8OID
        | pg_sys::DATEOID
        | pg_sys::TIMEOID
        | pg_sys::TIMESTAMPOID
        | pg_sys::TIMESTAMPTZOID => Some(true),
        pg_sys::OIDOID => Some(false),
        _ => None,
    }
}

/// True when the stored bytes of `typid` sort like its values under the comparison's
/// collation `collid` (so index ranges are exact): integer-like types (stored big-endian,
/// sign flipped), uuid (Postgres compares its 16 bytes as they are), and text and varchar
/// compared under the C (or POSIX) collation, which orders strings by their bytes, a
/// prefix before the longer string, as a byte-wise comparison of the stored bytes does.
/// Other collations order by their own rules: equality only.
pub fn bytes_sort_like_values(typid: pg_sys::Oid, collid: pg_sys::Oid) -> bool {
    match typid {
        pg_sys::UUIDOID => true,
        pg_sys::TEXTOID | pg_sys::VARCHAROID => {
            // "POSIX" is oid 951 in 15 to 18 (18's headers no longer name it).
            collid == pg_sys::C_COLLATION_OID || collid == pg_sys::Oid::from(951u32)
        }
        _ => ordered_int(typid).is_some(),
    }
}

/// The integer value of a stored integer-like column, sign-extended.
pub fn stored_int(col: &Column, stored: &[u8]) -> Option<i64> {
    let signed = ordered_int(col.typid)?;
    if stored.len() != col.typlen as usize || !matches!(stored.len(), 2 | 4 | 8) {
        return None;
    }
    let mut b = [0u8; 8];
    b[8 - stored.len()..].copy_from_slice(stored);
    let raw = u64::from_be_bytes(b);
    let bits = stored.len() * 8;
    Some(if signed {
        // Undo the sign flip, then sign-extend from the type's width.
        let v = raw ^ (1u64 << (bits - 1));
        ((v << (64 - bits)) as i64) >> (64 - bits)
    } else {
        raw as i64
    })
}

/// The stored bytes of an integer-like value of `col`'s width.
fn int_bytes(col: &Column, v: i64, signed: bool) -> Vec<u8> {
    let bits = col.typlen as usize * 8;
    let mut u = v as u64;
    if bits < 64 {
        u &= (1u64 << bits) - 1;
    }
    if signed {
        u ^= 1u64 << (bits - 1);
    }
    u.to_be_bytes()[8 - col.typlen as usize..].to_vec()
}

/// The stored bytes of a non-null datum of `col`'s type.
///
/// # Safety
/// `datum` must be a valid, non-null datum of the column's type.
pub unsafe fn encode(col: &Column, datum: pg_sys::Datum) -> Vec<u8> {
    // SAFETY: per the caller, datum is a valid non-null datum of the column's type: a
    // by-value one is read from the Datum itself; otherwise it points to a varlena
    // (detoasted into a palloc'd copy when it is toasted or compressed, freed after the
    // copy; its header gives the payload's length), a NUL-terminated cstring, or typlen
    // bytes of a fixed-length type.
    unsafe {
        if col.typbyval {
            if let Some(signed) = ordered_int(col.typid) {
                let raw = datum.value() as u64;
                let v = match col.typlen {
                    2 => raw as i16 as i64,
                    4 if signed => raw as i32 as i64,
                    4 => raw as u32 as i64,
                    _ => raw as i64,
                };
                return int_bytes(col, v, signed);
            }
            let v = datum.value() as u64;
            return v.to_le_bytes()[..col.typlen as usize].to_vec();
        }
        let ptr = datum.cast_mut_ptr::<u8>();
        match col.typlen {
            -1 => {
                // Detoast (fetch and decompress); a short header is fine, it is skipped.
                let v = pg_sys::pg_detoast_datum_packed(ptr.cast());
                let len = pgrx::varlena::varsize_any_exhdr(v);
                let data = pgrx::varlena::vardata_any(v) as *const u8;
                let out = std::slice::from_raw_parts(data, len).to_vec();
                if v.cast::<u8>() != ptr {
                    pg_sys::pfree(v.cast());
                }
                out
            }
            -2 => std::ffi::CStr::from_ptr(ptr.cast()).to_bytes().to_vec(),
            n => std::slice::from_raw_parts(ptr, n as usize).to_vec(),
        }
    }
}

/// A datum of `col`'s type from its stored bytes, allocated in the current memory context.
///
/// # Safety
/// Must run in a Postgres backend with a valid current memory context.
pub unsafe fn decode(col: &Column, bytes: &[u8]) -> Result<pg_sys::Datum, DriftError> {
    let wrong_size = || DriftError::CorruptValue {
        column: col.name.clone(),
        detail: format!("{} bytes for a type of length {}", bytes.len(), col.typlen),
    };
    // SAFETY: every pointer written here was just returned by palloc, in the current memory
    // context (a valid one, per the caller), and is written within the length it was
    // allocated with: VARHDRSZ plus the bytes (the total checked below the varlena limit),
    // the bytes plus a NUL, or exactly typlen bytes (checked).
    unsafe {
        if col.typbyval {
            if bytes.len() != col.typlen as usize {
                return Err(wrong_size());
            }
            if ordered_int(col.typid).is_some() {
                let v = stored_int(col, bytes).ok_or_else(wrong_size)?;
                return Ok(pg_sys::Datum::from(v as usize));
            }
            let mut b = [0u8; 8];
            b[..bytes.len()].copy_from_slice(bytes);
            // Sign-extend so that negative int2/int4 values come back as Postgres holds them.
            let raw = match col.typlen {
                1 => i8::from_le_bytes([b[0]]) as i64 as u64,
                2 => i16::from_le_bytes([b[0], b[1]]) as i64 as u64,
                4 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64 as u64,
                _ => u64::from_le_bytes(b),
            };
            return Ok(pg_sys::Datum::from(raw as usize));
        }
        match col.typlen {
            -1 => {
                let total = bytes.len() + pg_sys::VARHDRSZ;
                if total > 0x3FFF_FFFF {
                    return Err(wrong_size());
                }
                let p = pg_sys::palloc(total) as *mut u8;
                // A 4-byte varlena header holds the total length shifted left by two.
                (p as *mut u32).write_unaligned((total as u32) << 2);
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.add(pg_sys::VARHDRSZ), bytes.len());
                Ok(pg_sys::Datum::from(p))
            }
            -2 => {
                let p = pg_sys::palloc(bytes.len() + 1) as *mut u8;
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
                *p.add(bytes.len()) = 0;
                Ok(pg_sys::Datum::from(p))
            }
            n => {
                if bytes.len() != n as usize {
                    return Err(wrong_size());
                }
                let p = pg_sys::palloc(bytes.len()) as *mut u8;
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
                Ok(pg_sys::Datum::from(p))
            }
        }
    }
}

/// Types whose image equality is not value equality cannot be key columns.
pub fn check_key_type(col: &Column) -> Result<(), DriftError> {
    const REFUSED: &[(pg_sys::Oid, &str)] = &[
        (
            pg_sys::NUMERICOID,
            "numeric (1.0 and 1.00 are equal but stored differently)",
        ),
        (
            pg_sys::FLOAT4OID,
            "real (0 and -0 are equal but stored differently)",
        ),
        (
            pg_sys::FLOAT8OID,
            "double precision (0 and -0 are equal but stored differently)",
        ),
        (pg_sys::JSONOID, "json (it has no equality)"),
    ];
    match REFUSED.iter().find(|(oid, _)| *oid == col.typid) {
        Some((_, why)) => Err(DriftError::UnsupportedKeyType {
            column: col.name.clone(),
            why: (*why).to_string(),
        }),
        None => Ok(()),
    }
}

/// nbtree's support function 4: whether equal values always have equal images.
const BTEQUALIMAGE_PROC: i16 = 4;

/// [`check_key_type`], then Postgres' own rule for whether byte equality is equality for
/// the column's type, the rule nbtree deduplication relies on: through domains and arrays,
/// the type's default btree operator class has an `equalimage` support function that says
/// so under the column's collation. Composite types are refused (a composite value may
/// hold a compressed field, stored differently from the same value uncompressed), and so
/// is `character` without a length (`'ab'` and `'ab '` are equal but stored as written);
/// `character(n)`, whose values are all stored padded to n, is accepted.
/// Run where a key or an index is declared (it reads the catalogs); the stored form of
/// a key never changes after that, as ALTER refuses type changes that would change it.
///
/// # Safety
/// Must run in a transaction (catalog lookups).
pub unsafe fn check_key_type_by_catalog(col: &Column) -> Result<(), DriftError> {
    check_key_type(col)?;
    // SAFETY: per the caller.
    match unsafe { equal_image(col.typid, col.typmod, col.collation) } {
        Ok(()) => Ok(()),
        Err(why) => Err(DriftError::UnsupportedKeyType {
            column: col.name.clone(),
            why,
        }),
    }
}

/// The index kind the engine keys a column's values by: `numeric`, `real` and `double
/// precision` (and domains over them), whose equal values may have different images
/// (1.0 and 1.00, 0 and -0), by a canonical, order-preserving key the engine derives from
/// the stored image (so their indexes answer equality and ranges exactly); every other
/// type by its stored bytes.
///
/// # Safety
/// Must run in a transaction (catalog lookups).
pub unsafe fn index_kind(typid: pg_sys::Oid) -> IndexKind {
    // SAFETY: per the caller.
    match unsafe { pg_sys::getBaseType(typid) } {
        pg_sys::NUMERICOID => IndexKind::Numeric,
        pg_sys::FLOAT4OID => IndexKind::Float4,
        pg_sys::FLOAT8OID => IndexKind::Float8,
        _ => IndexKind::Bytes,
    }
}

/// The index kind of a column to index ([`index_kind`]); a type keyed by its bytes must
/// pass [`check_key_type_by_catalog`]: types whose stored image does not decide equality
/// cannot be indexed by it.
///
/// # Safety
/// Must run in a transaction (catalog lookups).
pub unsafe fn check_index_type_by_catalog(col: &Column) -> Result<IndexKind, DriftError> {
    // SAFETY: per the caller.
    let kind = unsafe { index_kind(col.typid) };
    if kind != IndexKind::Bytes {
        return Ok(kind);
    }
    // SAFETY: per the caller.
    unsafe { check_key_type_by_catalog(col) }
        .map(|()| kind)
        .map_err(|e| match e {
            DriftError::UnsupportedKeyType { column, why } => {
                DriftError::UnsupportedIndexType { column, why }
            }
            other => other,
        })
}

/// `Ok` when equal values of `typid` (with `typmod`, under `collation`) always have equal
/// stored bytes; otherwise why not, completing "Its type is ...".
///
/// # Safety
/// Catalog lookups: must run inside a transaction.
unsafe fn equal_image(
    typid: pg_sys::Oid,
    typmod: i32,
    collation: pg_sys::Oid,
) -> Result<(), String> {
    // SAFETY: catalog lookups in a transaction (per the caller); format_type_be and
    // get_collation_name return palloc'd strings or NULL.
    unsafe {
        let name = |t: pg_sys::Oid| {
            std::ffi::CStr::from_ptr(pg_sys::format_type_be(t))
                .to_string_lossy()
                .into_owned()
        };
        let base = pg_sys::getBaseType(typid);
        let elem = pg_sys::get_element_type(base);
        if elem != pg_sys::InvalidOid {
            return equal_image(elem, typmod, collation)
                .map_err(|why| format!("an array of {why}"));
        }
        if pg_sys::type_is_rowtype(base) {
            return Err(format!(
                "{}, a composite type (a composite value may hold a compressed field, stored \
                 differently from the same value uncompressed)",
                name(base)
            ));
        }
        if base == pg_sys::BPCHAROID {
            // Postgres' equalimage says no for character: 'ab' and 'ab ' are equal, stored
            // as written. A character(n) column stores every value padded to n characters,
            // so its equal values have equal images (lookups pad their constants the same
            // way, see `encode_lookup`); without a length they do not.
            if typmod < 0 {
                return Err("character without a length ('ab' and 'ab ' are equal but \
                            stored as written); give it a length, character(n), or use text"
                    .into());
            }
            return Ok(());
        }
        let opclass = pg_sys::GetDefaultOpClass(base, pg_sys::BTREE_AM_OID);
        if opclass == pg_sys::InvalidOid {
            return Err(format!(
                "{}, which has no default btree operator class (no equality to keep)",
                name(base)
            ));
        }
        let family = pg_sys::get_opclass_family(opclass);
        let input = pg_sys::get_opclass_input_type(opclass);
        let proc = pg_sys::get_opfamily_proc(family, input, input, BTEQUALIMAGE_PROC);
        if proc == pg_sys::InvalidOid {
            return Err(format!(
                "{}, whose equal values may be stored differently{}",
                name(base),
                example(base)
            ));
        }
        let ok = pg_sys::OidFunctionCall1Coll(proc, collation, pg_sys::Datum::from(input));
        if ok.value() == 0 {
            let coll = pg_sys::get_collation_name(collation);
            let coll = if coll.is_null() {
                "its collation".to_string()
            } else {
                format!(
                    "collation \"{}\"",
                    std::ffi::CStr::from_ptr(coll).to_string_lossy()
                )
            };
            return Err(format!(
                "{} under {coll}, which is nondeterministic (values it calls equal, such as \
                 'A' and 'a', are stored differently); use a deterministic collation",
                name(base)
            ));
        }
        Ok(())
    }
}

/// An example of equal values stored differently, for the types users try most.
fn example(typid: pg_sys::Oid) -> &'static str {
    match typid {
        pg_sys::NUMERICOID => " (1.0 and 1.00)",
        pg_sys::FLOAT4OID | pg_sys::FLOAT8OID => " (0 and -0)",
        pg_sys::INTERVALOID => " ('1 day' and '24 hours')",
        pg_sys::JSONBOID => " ({\"a\": 1.0} and {\"a\": 1.00})",
        _ => "",
    }
}

/// The stored bytes a lookup constant of `col` must have to find a stored value equal to
/// it, or `None` when no stored value can equal it. Most types store a value as given; a
/// `character(n)` column stores its values padded with spaces to n characters, and equality
/// ignores trailing spaces, so a constant is trimmed and padded the same way (and one
/// longer than n characters matches nothing).
///
/// # Safety
/// `datum` must be a valid, non-null datum of the column's type.
pub unsafe fn encode_lookup(col: &Column, datum: pg_sys::Datum) -> Option<Vec<u8>> {
    // SAFETY: per the caller.
    let mut bytes = unsafe { encode(col, datum) };
    if col.typid != pg_sys::BPCHAROID || col.typmod < pg_sys::VARHDRSZ as i32 {
        return Some(bytes);
    }
    let width = (col.typmod - pg_sys::VARHDRSZ as i32) as usize;
    while bytes.last() == Some(&b' ') {
        bytes.pop();
    }
    // SAFETY: counts the characters of a string in the database encoding.
    let chars =
        unsafe { pg_sys::pg_mbstrlen_with_len(bytes.as_ptr().cast(), bytes.len() as i32) } as usize;
    if chars > width {
        return None;
    }
    bytes.resize(bytes.len() + (width - chars), b' ');
    Some(bytes)
}

/// Appends the key encoding of one key column's stored bytes to `key`.
pub fn push_key_part(col: &Column, stored: &[u8], key: &mut Vec<u8>) {
    let int = match col.typid {
        pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID | pg_sys::OIDOID => {
            stored_int(col, stored)
        }
        _ => None,
    };
    match int {
        Some(v) => key.extend_from_slice(&((v as u64) ^ (1 << 63)).to_be_bytes()),
        None => {
            for &b in stored {
                key.push(b);
                if b == 0 {
                    key.push(0xFF);
                }
            }
            key.extend_from_slice(&[0x00, 0x01]);
        }
    }
}

/// Whether `drift_history` renders key column `col` (`row->>'column'`) as text from which
/// its stored bytes follow exactly ([`rendered_key_stored`]): integers (JSON numbers, in
/// their canonical decimal form) and text or varchar (JSON strings, the text itself, in a
/// UTF8 database so that the text's bytes are the stored ones).
pub fn key_renders_plainly(col: &Column) -> bool {
    match col.typid {
        pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID => true,
        pg_sys::TEXTOID | pg_sys::VARCHAROID => {
            // SAFETY: reads the database's encoding, set for the whole session.
            unsafe { pg_sys::GetDatabaseEncoding() == pg_sys::pg_enc::PG_UTF8 as i32 }
        }
        _ => false,
    }
}

/// The stored bytes of the value of key column `col` that `drift_history` renders as
/// `text`; `Ok(None)` when no value renders so (`"01"`, `"+1"`, or out of the type's range
/// for an integer column): such text matches no row.
pub fn rendered_key_stored(col: &Column, text: &str) -> Result<Option<Vec<u8>>, DriftError> {
    if !key_renders_plainly(col) {
        return Err(DriftError::KeyTextType {
            function: "drift_history_key",
            column: col.name.clone(),
        });
    }
    let range = match col.typid {
        pg_sys::INT2OID => i64::from(i16::MIN)..=i64::from(i16::MAX),
        pg_sys::INT4OID => i64::from(i32::MIN)..=i64::from(i32::MAX),
        pg_sys::INT8OID => i64::MIN..=i64::MAX,
        _ => return Ok(Some(text.as_bytes().to_vec())),
    };
    Ok(text
        .parse::<i64>()
        .ok()
        .filter(|v| range.contains(v) && v.to_string() == text)
        .map(|v| int_key_stored(col, v)))
}

/// The stored bytes of key column `col` whose value is `v` (the inverse of the integer
/// case of [`push_key_part`]).
pub fn int_key_stored(col: &Column, v: i64) -> Vec<u8> {
    int_bytes(col, v, ordered_int(col.typid).unwrap_or(true))
}

#[cfg(test)]
mod unit {
    use super::*;

    fn col(typid: pg_sys::Oid, typlen: i16) -> Column {
        Column {
            attnum: 1,
            name: "c".into(),
            typid,
            typmod: -1,
            collation: pg_sys::InvalidOid,
            typlen,
            typbyval: typlen > 0 && typlen <= 8,
            not_null: false,
            dropped: false,
        }
    }

    fn key(c: &Column, stored: &[u8]) -> Vec<u8> {
        let mut k = Vec::new();
        push_key_part(c, stored, &mut k);
        k
    }

    #[test]
    fn integer_keys_and_values_sort_like_integers() {
        let c = col(pg_sys::INT4OID, 4);
        let vals = [i32::MIN, -5, -1, 0, 1, 7, i32::MAX];
        let stored: Vec<Vec<u8>> = vals.iter().map(|&v| int_key_stored(&c, v.into())).collect();
        assert!(
            stored.windows(2).all(|w| w[0] < w[1]),
            "stored bytes sort like values"
        );
        for (v, s) in vals.iter().zip(&stored) {
            assert_eq!(stored_int(&c, s), Some(i64::from(*v)));
        }
        let keys: Vec<Vec<u8>> = stored.iter().map(|s| key(&c, s)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        // int2, int4 and int8 of the same value give the same key.
        let c2 = col(pg_sys::INT2OID, 2);
        let c8 = col(pg_sys::INT8OID, 8);
        assert_eq!(
            key(&c2, &int_key_stored(&c2, -3)),
            key(&c, &int_key_stored(&c, -3))
        );
        assert_eq!(
            key(&c8, &int_key_stored(&c8, -3)),
            key(&c, &int_key_stored(&c, -3))
        );
        let o = Column {
            typid: pg_sys::OIDOID,
            ..c.clone()
        };
        assert_eq!(
            stored_int(&o, &int_key_stored(&o, 4_000_000_000)),
            Some(4_000_000_000)
        );
    }

    #[test]
    fn composite_text_keys_do_not_run_together() {
        let t = col(pg_sys::TEXTOID, -1);
        let mut a = key(&t, b"ab");
        a.extend(key(&t, b"c"));
        let mut b = key(&t, b"a");
        b.extend(key(&t, b"bc"));
        assert_ne!(a, b);
        let mut z = key(&t, b"a\0");
        z.extend(key(&t, b""));
        let mut y = key(&t, b"a");
        y.extend(key(&t, b"\0"));
        assert_ne!(z, y);
        assert!(key(&t, b"a") < key(&t, b"ab"));
    }

    #[test]
    fn refused_key_types() {
        assert!(check_key_type(&col(pg_sys::NUMERICOID, -1)).is_err());
        assert!(check_key_type(&col(pg_sys::TEXTOID, -1)).is_ok());
    }
}
