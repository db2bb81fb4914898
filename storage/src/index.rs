//! Index kinds: how a secondary index turns a column's stored value into the key it orders
//! its entries by.
//!
//! An index of kind [`IndexKind::Bytes`] orders entries by the stored bytes themselves:
//! exact for types whose equal values have equal bytes and whose byte order is value order.
//! The other kinds map each stored value to a canonical, order-preserving key
//! ([`index_key`]): equal values (1.0 and 1.00, -0 and +0, every NaN) get equal keys, and
//! the keys' byte order is the type's btree order in PostgreSQL. The stored forms are the
//! ones the extension writes:
//!
//! - `Float4`: the 4 bytes of an IEEE-754 single, little-endian;
//! - `Float8`: the 8 bytes of an IEEE-754 double, little-endian;
//! - `Numeric`: PostgreSQL's numeric varlena payload without its length word: a 2-byte
//!   header (short format or special value) or a 4-byte one (long format), then base-10000
//!   digits as int16, all little-endian.
//!
//! `docs/format.md` gives the canonical keys' byte layout.

use std::borrow::Cow;
use std::fmt;

use crate::error::{Error, Result};

/// How an index maps a stored value to the key it orders entries by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndexKind {
    /// The stored bytes themselves (memcmp order).
    #[default]
    Bytes,
    /// PostgreSQL `real`: -0 = +0, every NaN equal and above +Infinity.
    Float4,
    /// PostgreSQL `double precision`: as `Float4`.
    Float8,
    /// PostgreSQL `numeric`: 1.0 = 1.00, -Infinity < finite values < +Infinity < NaN.
    Numeric,
}

impl IndexKind {
    /// Every kind, by code.
    pub const ALL: [IndexKind; 4] = [
        IndexKind::Bytes,
        IndexKind::Float4,
        IndexKind::Float8,
        IndexKind::Numeric,
    ];

    /// The kind's code in the table meta file and the snapshot directory.
    pub fn code(self) -> u8 {
        match self {
            IndexKind::Bytes => 0,
            IndexKind::Float4 => 1,
            IndexKind::Float8 => 2,
            IndexKind::Numeric => 3,
        }
    }

    /// The kind of `code` (`None`: no kind has it).
    pub fn from_code(code: u8) -> Option<IndexKind> {
        IndexKind::ALL.get(usize::from(code)).copied()
    }

    /// The kind's name: `bytes`, `float4`, `float8`, `numeric`.
    pub fn name(self) -> &'static str {
        match self {
            IndexKind::Bytes => "bytes",
            IndexKind::Float4 => "float4",
            IndexKind::Float8 => "float8",
            IndexKind::Numeric => "numeric",
        }
    }
}

impl fmt::Display for IndexKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Numeric classes, the first byte of a numeric key, in PostgreSQL's order.
const NUMERIC_NEG_INF: u8 = 0x01;
const NUMERIC_NEG: u8 = 0x02;
const NUMERIC_ZERO: u8 = 0x03;
const NUMERIC_POS: u8 = 0x04;
const NUMERIC_POS_INF: u8 = 0x05;
const NUMERIC_NAN: u8 = 0x06;

/// The canonical index key of the stored value `stored` for an index of `kind`: two values
/// PostgreSQL's btree operator class calls equal have equal keys, and keys compare (memcmp)
/// as the values do. `Bytes` returns `stored` itself (borrowed); the other kinds a new key
/// of a few bytes. Pure and cheap: callers encode lookup constants with it.
///
/// A value that is not a valid stored form of the kind (a float of the wrong length, a
/// numeric with a bad header or a digit outside 0..=9999) is [`Error::BadValue`].
pub fn index_key(kind: IndexKind, stored: &[u8]) -> Result<Cow<'_, [u8]>> {
    let key = match kind {
        IndexKind::Bytes => return Ok(Cow::Borrowed(stored)),
        IndexKind::Float4 => float4_key(stored).map(|k| k.to_vec()),
        IndexKind::Float8 => float8_key(stored).map(|k| k.to_vec()),
        IndexKind::Numeric => numeric_key(stored),
    };
    key.map(Cow::Owned)
        .map_err(|detail| Error::BadValue { kind, detail })
}

/// The key an index of `kind` files the stored value `stored` under: its canonical key,
/// or, for a value that is not a valid stored form of the kind, the empty key (which no
/// valid value of a canonical kind has, and which sorts before every other). An index read
/// that meets a row holding such a value fails (see `View::index_range`).
pub(crate) fn entry_key(kind: IndexKind, stored: &[u8]) -> Vec<u8> {
    match index_key(kind, stored) {
        Ok(k) => k.into_owned(),
        Err(_) => Vec::new(),
    }
}

/// The float's bits with -0 made +0 and every NaN the one quiet NaN, mapped so that
/// unsigned order is numeric order: a negative's bits all flipped, a positive's sign bit.
fn float4_key(stored: &[u8]) -> std::result::Result<[u8; 4], String> {
    let bytes: [u8; 4] = stored
        .try_into()
        .map_err(|_| format!("{} bytes, a float4 takes 4", stored.len()))?;
    let f = f32::from_le_bytes(bytes);
    let bits = if f.is_nan() {
        0x7FC0_0000
    } else if f == 0.0 {
        0
    } else {
        f.to_bits()
    };
    let key = if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits ^ 0x8000_0000
    };
    Ok(key.to_be_bytes())
}

/// As [`float4_key`], for a double.
fn float8_key(stored: &[u8]) -> std::result::Result<[u8; 8], String> {
    let bytes: [u8; 8] = stored
        .try_into()
        .map_err(|_| format!("{} bytes, a float8 takes 8", stored.len()))?;
    let f = f64::from_le_bytes(bytes);
    let bits = if f.is_nan() {
        0x7FF8_0000_0000_0000
    } else if f == 0.0 {
        0
    } else {
        f.to_bits()
    };
    let key = if bits & 0x8000_0000_0000_0000 != 0 {
        !bits
    } else {
        bits ^ 0x8000_0000_0000_0000
    };
    Ok(key.to_be_bytes())
}

/// A numeric's key: its class and, for a finite nonzero value, its weight and digits with
/// leading and trailing zero digits stripped (see `docs/format.md`).
fn numeric_key(stored: &[u8]) -> std::result::Result<Vec<u8>, String> {
    if stored.len() < 2 {
        return Err(format!(
            "{} bytes, shorter than a numeric header",
            stored.len()
        ));
    }
    if !stored.len().is_multiple_of(2) {
        return Err(format!("{} bytes: a numeric is 16-bit words", stored.len()));
    }
    let word = |i: usize| u16::from_le_bytes([stored[i], stored[i + 1]]);
    let header = word(0);
    let (negative, weight, digits_at) = match header & 0xC000 {
        // NUMERIC_SPECIAL: the whole header says which. PostgreSQL reads no digits of one.
        0xC000 => {
            let class = match header {
                0xC000 => NUMERIC_NAN,
                0xD000 => NUMERIC_POS_INF,
                0xF000 => NUMERIC_NEG_INF,
                _ => return Err(format!("special numeric header {header:#06x}")),
            };
            return Ok(vec![class]);
        }
        // NUMERIC_SHORT: sign 0x2000, dscale 0x1F80, weight in 7 bits (two's complement).
        0x8000 => {
            let low = i32::from(header & 0x3F);
            let weight = if header & 0x0040 != 0 { low - 64 } else { low };
            (header & 0x2000 != 0, weight, 2)
        }
        // Long format: sign (0x0000 or 0x4000) and dscale, then an int16 weight.
        sign => {
            if stored.len() < 4 {
                return Err("2 bytes, shorter than a long numeric header".into());
            }
            let weight = i32::from(i16::from_le_bytes([stored[2], stored[3]]));
            (sign == 0x4000, weight, 4)
        }
    };
    let mut digits: Vec<u16> = Vec::with_capacity((stored.len() - digits_at) / 2);
    for i in (digits_at..stored.len()).step_by(2) {
        let d = word(i);
        if d > 9999 {
            return Err(format!("numeric digit {} out of range 0..=9999", d as i16));
        }
        digits.push(d);
    }
    let first = digits.iter().position(|d| *d != 0);
    let Some(first) = first else {
        // Zero (of either sign, with any number of zero digits).
        return Ok(vec![NUMERIC_ZERO]);
    };
    let last = digits
        .iter()
        .rposition(|d| *d != 0)
        .expect("a nonzero digit");
    // Each leading zero digit stripped moves the first digit one place down.
    let weight = weight - first as i32;
    let digits = &digits[first..=last];
    let mut key = Vec::with_capacity(1 + 4 + 2 * digits.len() + 2);
    key.push(if negative { NUMERIC_NEG } else { NUMERIC_POS });
    key.extend_from_slice(&((weight as u32) ^ 0x8000_0000).to_be_bytes());
    for d in digits {
        key.extend_from_slice(&(d + 1).to_be_bytes());
    }
    key.extend_from_slice(&[0, 0]);
    if negative {
        for b in &mut key[1..] {
            *b = !*b;
        }
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: IndexKind, v: &[u8]) -> Vec<u8> {
        index_key(kind, v).unwrap().into_owned()
    }

    fn short(neg: bool, dscale: u16, weight: i16, digits: &[i16]) -> Vec<u8> {
        let w = (weight as u16) & 0x7F;
        let h: u16 = 0x8000 | if neg { 0x2000 } else { 0 } | (dscale << 7) | w;
        let mut out = h.to_le_bytes().to_vec();
        for d in digits {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out
    }

    #[test]
    fn bytes_keys_are_the_value_borrowed() {
        let v = b"abc".as_slice();
        match index_key(IndexKind::Bytes, v).unwrap() {
            Cow::Borrowed(b) => assert!(std::ptr::eq(b, v)),
            Cow::Owned(_) => panic!("copied"),
        }
    }

    #[test]
    fn codes_round_trip() {
        for k in IndexKind::ALL {
            assert_eq!(IndexKind::from_code(k.code()), Some(k));
        }
        assert_eq!(IndexKind::from_code(4), None);
        assert_eq!(IndexKind::Numeric.to_string(), "numeric");
    }

    #[test]
    fn numeric_keys_by_hand() {
        let n = IndexKind::Numeric;
        // 1.5: weight 0, digits 1, 5000.
        assert_eq!(
            key(n, &short(false, 1, 0, &[1, 5000])),
            [4, 0x80, 0, 0, 0, 0, 2, 0x13, 0x89, 0, 0]
        );
        // -1.5: the same, inverted after the class byte.
        assert_eq!(
            key(n, &short(true, 1, 0, &[1, 5000])),
            [2, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFD, 0xEC, 0x76, 0xFF, 0xFF]
        );
        assert_eq!(key(n, &short(false, 0, 0, &[])), [NUMERIC_ZERO]);
        assert_eq!(key(n, &short(true, 3, 5, &[0, 0])), [NUMERIC_ZERO]);
        assert_eq!(key(n, &[0x00, 0xC0]), [NUMERIC_NAN]);
        assert_eq!(key(n, &[0x00, 0xD0]), [NUMERIC_POS_INF]);
        assert_eq!(key(n, &[0x00, 0xF0]), [NUMERIC_NEG_INF]);
        // A leading zero digit moves the weight: 0000 0001 at weight 1 is 1 at weight 0.
        assert_eq!(
            key(n, &short(false, 0, 1, &[0, 1])),
            key(n, &short(false, 0, 0, &[1]))
        );
        // Weight -64 in the short format.
        assert_eq!(
            key(n, &short(false, 0, -64, &[7]))[1..5],
            ((-64i32 as u32) ^ 0x8000_0000).to_be_bytes()
        );
    }

    #[test]
    fn malformed_values_are_errors() {
        let bad = |kind, v: &[u8]| match index_key(kind, v) {
            Err(Error::BadValue { kind: k, detail }) => {
                assert_eq!(k, kind);
                detail
            }
            other => panic!("{kind} {v:?}: {other:?}"),
        };
        assert!(bad(IndexKind::Float4, &[0; 8]).contains("8 bytes"));
        assert!(bad(IndexKind::Float8, &[0; 4]).contains("4 bytes"));
        assert!(bad(IndexKind::Float8, &[]).contains("0 bytes"));
        assert!(bad(IndexKind::Numeric, &[0]).contains("shorter"));
        assert!(bad(IndexKind::Numeric, &[0, 0, 0]).contains("16-bit"));
        assert!(bad(IndexKind::Numeric, &[0, 0]).contains("long numeric header"));
        assert!(bad(IndexKind::Numeric, &[0x00, 0xE0]).contains("special"));
        assert!(bad(IndexKind::Numeric, &[0x01, 0xC0]).contains("special"));
        assert!(bad(IndexKind::Numeric, &short(false, 0, 0, &[10000])).contains("10000"));
        assert!(bad(IndexKind::Numeric, &short(false, 0, 0, &[-1])).contains("-1"));
        let e = index_key(IndexKind::Float4, &[1]).unwrap_err().to_string();
        assert_eq!(e, "not a valid float4 value: 1 bytes, a float4 takes 4");
        assert_eq!(entry_key(IndexKind::Numeric, &[1]), Vec::<u8>::new());
    }
}
