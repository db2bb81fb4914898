//! Index kinds: the canonical keys of float4, float8 and numeric values compare as
//! PostgreSQL's btree compares the values (checked against hand-made lists and against a
//! model computed independently, in decimal), and an index of each kind answers equality
//! and ranges exactly, in index order, through the delta, a snapshot, both mixed, past
//! reads, a reopened store and a reader. Values an index cannot key fail reads that meet
//! them; stores written before index kinds existed read unchanged.

mod common;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use common::*;
use driftdb_storage::*;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// Numeric images, built by hand from PostgreSQL's layout (numeric.c): a short header
// (0x8000 | sign 0x2000 | dscale << 7 | 7-bit weight), a long one (sign 0x0000 / 0x4000 |
// dscale, then an int16 weight), or a special value; then int16 base-10000 digits; all
// little-endian.

const NUM_NAN: [u8; 2] = [0x00, 0xC0];
const NUM_PINF: [u8; 2] = [0x00, 0xD0];
const NUM_NINF: [u8; 2] = [0x00, 0xF0];

fn short_num(neg: bool, dscale: u16, weight: i16, digits: &[u16]) -> Vec<u8> {
    assert!((-64..=63).contains(&weight) && dscale <= 63);
    let header: u16 =
        0x8000 | if neg { 0x2000 } else { 0 } | (dscale << 7) | ((weight as u16) & 0x7F);
    let mut out = header.to_le_bytes().to_vec();
    for d in digits {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out
}

fn long_num(neg: bool, dscale: u16, weight: i16, digits: &[u16]) -> Vec<u8> {
    assert!(dscale <= 0x3FFF);
    let header: u16 = if neg { 0x4000 } else { 0 } | dscale;
    let mut out = header.to_le_bytes().to_vec();
    out.extend_from_slice(&weight.to_le_bytes());
    for d in digits {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out
}

/// The image of a decimal written as text (`-12.050`), in the long format when `long` or
/// when the short one cannot hold it, with `lead` zero digits before its first nonzero
/// base-10000 digit and `trail` after its last (PostgreSQL writes none of either).
fn image(text: &str, long: bool, lead: usize, trail: usize) -> Vec<u8> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let dscale = frac.len() as u16;
    let mut int = int.to_string();
    while int.len() % 4 != 0 {
        int.insert(0, '0');
    }
    let mut frac = frac.to_string();
    while frac.len() % 4 != 0 {
        frac.push('0');
    }
    let all = format!("{int}{frac}");
    let mut groups: Vec<u16> = (0..all.len() / 4)
        .map(|i| all[4 * i..4 * i + 4].parse().unwrap())
        .collect();
    let mut weight = int.len() as i32 / 4 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let mut digits = vec![0u16; lead];
    digits.extend(&groups);
    digits.extend(std::iter::repeat_n(0u16, trail));
    let weight = i16::try_from(weight + lead as i32).unwrap();
    if !long && (-64..=63).contains(&weight) && dscale <= 63 {
        short_num(neg, dscale, weight, &digits)
    } else {
        long_num(neg, dscale, weight, &digits)
    }
}

/// The image PostgreSQL would write for `text` (short format when it fits).
fn num(text: &str) -> Vec<u8> {
    image(text, false, 0, 0)
}

// An independent model of a numeric's value: sign x 0.DIGITS x 10^EXP, DIGITS decimal
// without leading or trailing zeros, computed in decimal (no base-10000 arithmetic).

#[derive(Clone, Debug, PartialEq, Eq)]
enum Model {
    NegInf,
    Neg(i64, String),
    Zero,
    Pos(i64, String),
    PosInf,
    NaN,
}

impl Model {
    fn rank(&self) -> u8 {
        match self {
            Model::NegInf => 0,
            Model::Neg(..) => 1,
            Model::Zero => 2,
            Model::Pos(..) => 3,
            Model::PosInf => 4,
            Model::NaN => 5,
        }
    }

    /// `0.digits x 10^exp`, with the sign.
    fn finite(neg: bool, digits: &str, exp: i64) -> Model {
        let lead = digits.len() - digits.trim_start_matches('0').len();
        let digits = digits.trim_start_matches('0').trim_end_matches('0');
        if digits.is_empty() {
            return Model::Zero;
        }
        let exp = exp - lead as i64;
        if neg {
            Model::Neg(exp, digits.to_string())
        } else {
            Model::Pos(exp, digits.to_string())
        }
    }

    /// The value of base-10000 `digits` at `weight`: each digit is four decimal ones, the
    /// first of which has the decimal exponent 4 * (weight + 1).
    fn of_digits(neg: bool, weight: i64, digits: &[u16]) -> Model {
        let text: String = digits.iter().map(|d| format!("{d:04}")).collect();
        Model::finite(neg, &text, 4 * (weight + 1))
    }

    fn of_text(text: &str) -> Model {
        let (neg, body) = match text.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, text),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        Model::finite(neg, &format!("{int}{frac}"), int.len() as i64)
    }

    /// This test's own reading of an image.
    fn of_image(img: &[u8]) -> Model {
        let h = u16::from_le_bytes([img[0], img[1]]);
        let words = |from: usize| -> Vec<u16> {
            img[from..]
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect()
        };
        match h {
            0xC000 => Model::NaN,
            0xD000 => Model::PosInf,
            0xF000 => Model::NegInf,
            _ if h & 0x8000 != 0 => {
                let w = (h & 0x3F) as i64 - if h & 0x40 != 0 { 64 } else { 0 };
                Model::of_digits(h & 0x2000 != 0, w, &words(2))
            }
            _ => {
                let w = i16::from_le_bytes([img[2], img[3]]) as i64;
                Model::of_digits(h & 0x4000 != 0, w, &words(4))
            }
        }
    }
}

fn model_cmp(a: &Model, b: &Model) -> Ordering {
    match (a, b) {
        (Model::Pos(e1, d1), Model::Pos(e2, d2)) => e1.cmp(e2).then_with(|| d1.cmp(d2)),
        (Model::Neg(e1, d1), Model::Neg(e2, d2)) => e2.cmp(e1).then_with(|| d2.cmp(d1)),
        _ => a.rank().cmp(&b.rank()),
    }
}

/// PostgreSQL's float comparison: NaN equals NaN and is above everything; -0 = +0.
fn pg_float_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).unwrap(),
    }
}

fn key(kind: IndexKind, v: &[u8]) -> Vec<u8> {
    index_key(kind, v)
        .unwrap_or_else(|e| panic!("{kind} {v:?}: {e}"))
        .into_owned()
}

/// The model order of two stored values of `kind`.
fn value_cmp(kind: IndexKind, a: &[u8], b: &[u8]) -> Ordering {
    match kind {
        IndexKind::Bytes => a.cmp(b),
        IndexKind::Float4 => pg_float_cmp(
            f32::from_le_bytes(a.try_into().unwrap()) as f64,
            f32::from_le_bytes(b.try_into().unwrap()) as f64,
        ),
        IndexKind::Float8 => pg_float_cmp(
            f64::from_le_bytes(a.try_into().unwrap()),
            f64::from_le_bytes(b.try_into().unwrap()),
        ),
        IndexKind::Numeric => model_cmp(&Model::of_image(a), &Model::of_image(b)),
    }
}

/// Groups of images in ascending order, the images of a group equal: their keys must be
/// equal within a group and strictly increasing from group to group.
fn assert_groups(kind: IndexKind, groups: &[Vec<Vec<u8>>]) {
    let keyed: Vec<Vec<Vec<u8>>> = groups
        .iter()
        .map(|g| g.iter().map(|v| key(kind, v)).collect())
        .collect();
    for (i, g) in keyed.iter().enumerate() {
        for (j, k) in g.iter().enumerate() {
            assert_eq!(k, &g[0], "{kind} group {i}: image {j} {:?}", groups[i][j]);
        }
        if i > 0 {
            assert!(
                keyed[i - 1][0] < g[0],
                "{kind}: group {} ({:?}) does not sort before group {i} ({:?})",
                i - 1,
                groups[i - 1][0],
                groups[i][0]
            );
        }
    }
    // The model agrees with the list.
    for (i, gi) in groups.iter().enumerate() {
        for (j, gj) in groups.iter().enumerate() {
            for a in gi {
                for b in gj {
                    assert_eq!(value_cmp(kind, a, b), i.cmp(&j), "{kind} {a:?} {b:?}");
                }
            }
        }
    }
}

#[test]
fn numeric_keys_order_and_compare_as_postgres_does() {
    let huge = long_num(false, 0, i16::MAX, &[9999]);
    let huge_neg = long_num(true, 0, i16::MAX, &[9999]);
    let tiny = long_num(false, 16383, i16::MIN, &[1]);
    let tiny_neg = long_num(true, 16383, i16::MIN, &[1]);
    // Below i16::MIN once its leading zero digits are stripped.
    let tinier = long_num(false, 16383, i16::MIN, &[0, 0, 7]);
    let groups: Vec<Vec<Vec<u8>>> = vec![
        vec![NUM_NINF.to_vec()],
        vec![huge_neg],
        vec![num("-123456789012345678901234567890.5")],
        vec![
            num("-10000"),
            image("-10000", true, 2, 3),
            image("-10000.00", false, 1, 0),
        ],
        vec![num("-9999.9999")],
        vec![num("-1.0001")],
        vec![
            num("-1"),
            num("-1.0"),
            image("-1.000", true, 0, 0),
            image("-1", false, 1, 1),
            image("-1", true, 3, 0),
            short_num(true, 0, 1, &[0, 1]),
        ],
        vec![num("-0.9999")],
        vec![num("-0.5"), num("-0.50000"), image("-0.5", true, 0, 2)],
        vec![num("-0.0001")],
        vec![tiny_neg],
        vec![
            num("0"),
            num("-0"),
            num("0.000"),
            image("0", true, 0, 0),
            short_num(true, 5, 3, &[0, 0]),
            long_num(false, 0, -7, &[0]),
            long_num(true, 2, 12, &[]),
        ],
        vec![tinier],
        vec![tiny],
        vec![num("0.0001"), image("0.0001", false, 2, 2)],
        vec![num("0.00010001")],
        vec![num("0.5"), num("0.50"), image("0.5", true, 1, 0)],
        vec![num("0.9999")],
        vec![
            num("1"),
            num("1.0"),
            num("1.00"),
            image("1", true, 0, 0),
            image("1.0", false, 1, 0),
            image("1", false, 0, 4),
            long_num(false, 3, 2, &[0, 0, 1, 0]),
        ],
        vec![num("1.00000001")],
        vec![num("1.0001")],
        vec![num("1.5"), num("1.50"), image("1.5", true, 0, 1)],
        vec![num("9999")],
        vec![num("9999.9999")],
        vec![num("10000"), num("10000.0"), image("10000", true, 1, 1)],
        vec![num("10000.0001")],
        vec![num("123456789012345678901234567890.5")],
        vec![huge],
        vec![NUM_PINF.to_vec()],
        vec![NUM_NAN.to_vec(), vec![0x00, 0xC0, 0x01, 0x00]],
    ];
    assert_groups(IndexKind::Numeric, &groups);
}

#[test]
fn numeric_images_built_here_have_the_model_values() {
    for text in [
        "0",
        "-0",
        "1.5",
        "-1.0001",
        "0.0001",
        "10000",
        "-9999.9999",
        "12.34",
    ] {
        for (long, lead, trail) in [(false, 0, 0), (true, 0, 0), (false, 2, 1), (true, 1, 3)] {
            let img = image(text, long, lead, trail);
            let want = Model::of_text(text);
            assert_eq!(Model::of_image(&img), want, "{text} {long} {lead} {trail}");
        }
    }
}

fn f8(x: f64) -> Vec<u8> {
    x.to_le_bytes().to_vec()
}

fn f8_bits(b: u64) -> Vec<u8> {
    b.to_le_bytes().to_vec()
}

fn f4(x: f32) -> Vec<u8> {
    x.to_le_bytes().to_vec()
}

fn f4_bits(b: u32) -> Vec<u8> {
    b.to_le_bytes().to_vec()
}

#[test]
fn float8_keys_order_and_compare_as_postgres_does() {
    let groups: Vec<Vec<Vec<u8>>> = vec![
        vec![f8(f64::NEG_INFINITY)],
        vec![f8(f64::MIN)],
        vec![f8(-1.5)],
        vec![f8(-1.0)],
        vec![f8(-f64::MIN_POSITIVE)],
        vec![f8_bits(0x800F_FFFF_FFFF_FFFF)],
        vec![f8_bits(0x8000_0000_0000_0001)],
        vec![f8(0.0), f8(-0.0)],
        vec![f8_bits(1)],
        vec![f8_bits(0x000F_FFFF_FFFF_FFFF)],
        vec![f8(f64::MIN_POSITIVE)],
        vec![f8(1.0)],
        vec![f8(1.5)],
        vec![f8(f64::MAX)],
        vec![f8(f64::INFINITY)],
        vec![
            f8(f64::NAN),
            f8(-f64::NAN),
            f8_bits(0x7FF0_0000_0000_0001),
            f8_bits(0x7FF8_0000_0000_0001),
            f8_bits(0xFFFF_FFFF_FFFF_FFFF),
            f8_bits(0xFFF0_0000_0000_0001),
        ],
    ];
    assert_groups(IndexKind::Float8, &groups);
}

#[test]
fn float4_keys_order_and_compare_as_postgres_does() {
    let groups: Vec<Vec<Vec<u8>>> = vec![
        vec![f4(f32::NEG_INFINITY)],
        vec![f4(f32::MIN)],
        vec![f4(-1.5)],
        vec![f4(-f32::MIN_POSITIVE)],
        vec![f4_bits(0x807F_FFFF)],
        vec![f4_bits(0x8000_0001)],
        vec![f4(0.0), f4(-0.0)],
        vec![f4_bits(1)],
        vec![f4_bits(0x007F_FFFF)],
        vec![f4(f32::MIN_POSITIVE)],
        vec![f4(1.0)],
        vec![f4(f32::MAX)],
        vec![f4(f32::INFINITY)],
        vec![
            f4(f32::NAN),
            f4(-f32::NAN),
            f4_bits(0x7F80_0001),
            f4_bits(0x7FC0_0001),
            f4_bits(0xFFFF_FFFF),
        ],
    ];
    assert_groups(IndexKind::Float4, &groups);
}

#[test]
fn values_an_index_kind_cannot_key_are_bad_values() {
    let bad: &[(IndexKind, &[u8])] = &[
        (IndexKind::Float4, &[0, 0, 0]),
        (IndexKind::Float4, &[0; 8]),
        (IndexKind::Float8, &[0; 4]),
        (IndexKind::Float8, &[]),
        (IndexKind::Numeric, &[]),
        (IndexKind::Numeric, &[0x00]),
        (IndexKind::Numeric, &[0x00, 0x80, 0x01]),
        (IndexKind::Numeric, &[0x00, 0x00]),
        (IndexKind::Numeric, &[0x00, 0xE0]),
        (IndexKind::Numeric, &[0x00, 0xD1]),
        (IndexKind::Numeric, &[0x00, 0x80, 0x10, 0x27]),
        (IndexKind::Numeric, &[0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF]),
    ];
    for (kind, v) in bad {
        match index_key(*kind, v) {
            Err(Error::BadValue { kind: k, detail }) => {
                assert_eq!(k, *kind);
                assert!(!detail.is_empty());
            }
            other => panic!("{kind} {v:?}: {other:?}"),
        }
    }
    // Anything is a value of kind Bytes, and its key is itself.
    assert_eq!(
        &*index_key(IndexKind::Bytes, &[0, 0, 0]).unwrap(),
        &[0, 0, 0]
    );
}

/// A numeric drawn with its model: sign, weight (any int16), base-10000 digits (zeros and
/// 9999 often), format; or a special value.
fn numeric_value() -> impl Strategy<Value = (Vec<u8>, Model)> {
    let digit = prop_oneof![Just(0u16), Just(9999u16), Just(1u16), 0u16..10000];
    let weight = prop_oneof![
        -3i16..4,
        -70i16..70,
        any::<i16>(),
        i16::MIN..i16::MIN + 4,
        i16::MAX - 3..=i16::MAX,
    ];
    let finite = (
        any::<bool>(),
        weight,
        prop::collection::vec(digit, 0..6),
        any::<bool>(),
        0u16..20,
    )
        .prop_map(|(neg, weight, digits, long, dscale)| {
            let img = if long || !(-64..=63).contains(&weight) {
                long_num(neg, dscale, weight, &digits)
            } else {
                short_num(neg, dscale, weight, &digits)
            };
            (img, Model::of_digits(neg, weight as i64, &digits))
        });
    prop_oneof![
        12 => finite,
        1 => Just((NUM_NAN.to_vec(), Model::NaN)),
        1 => Just((NUM_PINF.to_vec(), Model::PosInf)),
        1 => Just((NUM_NINF.to_vec(), Model::NegInf)),
    ]
}

fn float8_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => any::<u64>().prop_map(f64::from_bits),
        // Subnormals, NaN payloads and small exponents more often than at random.
        1 => (any::<bool>(), 0u64..(1 << 52)).prop_map(|(s, m)| f64::from_bits(((s as u64) << 63) | m)),
        1 => (any::<bool>(), 1u64..(1 << 52)).prop_map(|(s, m)| f64::from_bits(((s as u64) << 63) | (0x7FF << 52) | m)),
        1 => prop::sample::select(vec![0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY, 1.0, -1.0]),
        1 => (-4i32..4, -4i32..4).prop_map(|(a, b)| a as f64 / 2f64.powi(b)),
    ]
}

fn float4_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => any::<u32>().prop_map(f32::from_bits),
        1 => (any::<bool>(), 0u32..(1 << 23)).prop_map(|(s, m)| f32::from_bits(((s as u32) << 31) | m)),
        1 => (any::<bool>(), 1u32..(1 << 23)).prop_map(|(s, m)| f32::from_bits(((s as u32) << 31) | (0xFF << 23) | m)),
        1 => prop::sample::select(vec![0.0f32, -0.0, f32::INFINITY, f32::NEG_INFINITY, 1.0, -1.0]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Every pair of random numerics: the keys compare as the model values do, and the
    /// test's own reading of each image is its model.
    #[test]
    fn numeric_keys_compare_as_the_values(values in prop::collection::vec(numeric_value(), 1..24)) {
        let keys: Vec<Vec<u8>> = values.iter().map(|(img, _)| key(IndexKind::Numeric, img)).collect();
        for (i, (img_a, a)) in values.iter().enumerate() {
            prop_assert_eq!(&Model::of_image(img_a), a);
            for (j, (img_b, b)) in values.iter().enumerate() {
                prop_assert_eq!(
                    keys[i].cmp(&keys[j]),
                    model_cmp(a, b),
                    "{:?} ({:?}) vs {:?} ({:?})", img_a, a, img_b, b
                );
            }
        }
    }

    /// The same value written in every way (short and long format, dscale, leading and
    /// trailing zero digits, the sign of zero) has one key.
    #[test]
    fn numeric_images_of_one_value_have_one_key(
        neg in any::<bool>(),
        int in "[0-9]{0,12}",
        frac in "[0-9]{0,12}",
        extra_scale in 0usize..6,
        lead in 0usize..3,
        trail in 0usize..3,
    ) {
        let int = if int.is_empty() { "0".to_string() } else { int };
        let text = format!("{}{int}.{frac}", if neg { "-" } else { "" });
        let scaled = format!("{text}{}", "0".repeat(extra_scale));
        let k = key(IndexKind::Numeric, &num(&text));
        for img in [image(&scaled, false, 0, 0), image(&text, true, 0, 0), image(&scaled, true, lead, trail), image(&text, false, lead, trail)] {
            prop_assert_eq!(&key(IndexKind::Numeric, &img), &k, "{} {:?}", text, img);
        }
        prop_assert_eq!(Model::of_image(&num(&text)), Model::of_text(&text));
    }

    #[test]
    fn float8_keys_compare_as_the_values(values in prop::collection::vec(float8_value(), 1..24)) {
        let keys: Vec<Vec<u8>> = values.iter().map(|x| key(IndexKind::Float8, &f8(*x))).collect();
        for (i, a) in values.iter().enumerate() {
            for (j, b) in values.iter().enumerate() {
                prop_assert_eq!(keys[i].cmp(&keys[j]), pg_float_cmp(*a, *b), "{:e} vs {:e}", a, b);
            }
        }
    }

    #[test]
    fn float4_keys_compare_as_the_values(values in prop::collection::vec(float4_value(), 1..24)) {
        let keys: Vec<Vec<u8>> = values.iter().map(|x| key(IndexKind::Float4, &f4(*x))).collect();
        for (i, a) in values.iter().enumerate() {
            for (j, b) in values.iter().enumerate() {
                prop_assert_eq!(
                    keys[i].cmp(&keys[j]),
                    pg_float_cmp(*a as f64, *b as f64),
                    "{:e} vs {:e}", a, b
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Indexes of each kind in a store.

const T: TableId = 1;
/// Columns: float8, float4, numeric, text (bytes).
const COLS: [(ColumnId, IndexKind); 4] = [
    (1, IndexKind::Float8),
    (2, IndexKind::Float4),
    (3, IndexKind::Numeric),
    (4, IndexKind::Bytes),
];

/// The values rows take in each column (equal values written differently included).
fn pool(kind: IndexKind) -> Vec<Vec<u8>> {
    match kind {
        IndexKind::Float8 => vec![
            f8(f64::NEG_INFINITY),
            f8(-2.5),
            f8(-0.0),
            f8(0.0),
            f8_bits(1),
            f8(1.0),
            f8(1.5),
            f8(1e300),
            f8(f64::INFINITY),
            f8_bits(0x7FF8_0000_0000_0001),
            f8_bits(0xFFF8_0000_0000_0000),
        ],
        IndexKind::Float4 => vec![
            f4(f32::NEG_INFINITY),
            f4(-2.5),
            f4(-0.0),
            f4(0.0),
            f4(1.5),
            f4(f32::INFINITY),
            f4_bits(0x7FC0_0001),
            f4_bits(0xFFC0_0000),
        ],
        IndexKind::Numeric => vec![
            NUM_NINF.to_vec(),
            num("-1.0001"),
            num("-1"),
            image("-1.000", true, 0, 1),
            num("-0"),
            num("0"),
            num("0.5"),
            num("1"),
            num("1.0"),
            image("1.00", true, 1, 0),
            num("1.5"),
            image("1.50", false, 0, 2),
            num("10000"),
            NUM_PINF.to_vec(),
            NUM_NAN.to_vec(),
        ],
        _ => ["", "a", "ab", "b", "red", "\u{7f}"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect(),
    }
}

/// Values looked up: the pool and values no row holds.
fn probes(kind: IndexKind) -> Vec<Vec<u8>> {
    let mut p = pool(kind);
    p.extend(match kind {
        IndexKind::Float8 => vec![
            f8(-100.0),
            f8(0.75),
            f8(2.0),
            f8_bits(0x7FF0_0000_0000_0002),
        ],
        IndexKind::Float4 => vec![f4(-100.0), f4(0.75), f4(2.0)],
        IndexKind::Numeric => vec![num("-0.25"), num("1.25"), image("2", true, 1, 1)],
        _ => vec![b"aa".to_vec(), b"z".to_vec()],
    });
    p
}

/// A small xorshift, for repeatable workloads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A value for column `col` (NULL or absent now and then).
fn some_value(rng: &mut Rng, kind: IndexKind) -> Value {
    let p = pool(kind);
    match rng.below(10) {
        0 => None,
        _ => Some(p[rng.below(p.len())].clone()),
    }
}

fn random_row(rng: &mut Rng) -> Row {
    let mut cols = Vec::new();
    for (c, k) in COLS {
        // Now and then a column the row lacks.
        if rng.below(12) != 0 {
            cols.push((c, some_value(rng, k)));
        }
    }
    Row(cols)
}

/// The table's rows after each group: (last seq, rows).
struct TableModel {
    rows: BTreeMap<Vec<u8>, Row>,
    states: Vec<(Seq, BTreeMap<Vec<u8>, Row>)>,
    next_xid: u64,
}

impl TableModel {
    fn new() -> TableModel {
        TableModel {
            rows: BTreeMap::new(),
            states: vec![(0, BTreeMap::new())],
            next_xid: 1,
        }
    }

    /// Appends `n` random transactions (inserts, patches, deletes) to the store and the
    /// model.
    fn append(&mut self, s: &mut Store, rng: &mut Rng, n: usize) {
        for _ in 0..n {
            let mut events = Vec::new();
            let mut touched = std::collections::BTreeSet::new();
            for _ in 0..1 + rng.below(4) {
                let key = format!("k{:03}", rng.below(40)).into_bytes();
                if !touched.insert(key.clone()) {
                    continue;
                }
                let op = match (self.rows.contains_key(&key), rng.below(4)) {
                    (false, _) => {
                        let r = random_row(rng);
                        self.rows.insert(key.clone(), r.clone());
                        Op::Insert(r)
                    }
                    (true, 0) => {
                        self.rows.remove(&key);
                        Op::SoftDelete
                    }
                    (true, _) => {
                        let (c, k) = COLS[rng.below(COLS.len())];
                        let patch = vec![(c, some_value(rng, k))];
                        self.rows.get_mut(&key).unwrap().apply_patch(&patch);
                        Op::Patch(patch)
                    }
                };
                events.push(Event { table: T, key, op });
            }
            let xid = self.next_xid;
            self.next_xid += 1;
            let done = s.append(&[txn(xid, events)], &AllCommitted).unwrap();
            self.states.push((done[0].last_seq, self.rows.clone()));
        }
    }

    fn at(&self, seq: Seq) -> &BTreeMap<Vec<u8>, Row> {
        let i = self.states.partition_point(|(s, _)| *s <= seq) - 1;
        &self.states[i].1
    }
}

fn in_bounds(kind: IndexKind, v: &[u8], lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> bool {
    let c = |b: &[u8]| value_cmp(kind, v, b);
    (match lo {
        Bound::Included(l) => c(l) != Ordering::Less,
        Bound::Excluded(l) => c(l) == Ordering::Greater,
        Bound::Unbounded => true,
    }) && (match hi {
        Bound::Included(h) => c(h) != Ordering::Greater,
        Bound::Excluded(h) => c(h) == Ordering::Less,
        Bound::Unbounded => true,
    })
}

/// A lookup's bounds.
type Bounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// Every lookup of every indexed column at `at`, against the model.
fn check_reads(s: &mut Store, model: &TableModel, at: Seq, what: &str) {
    let rows = model.at(at);
    let mut queries = 0;
    for (col, kind) in COLS {
        let probes = probes(kind);
        let mut bounds: Vec<Bounds> = vec![(Bound::Unbounded, Bound::Unbounded)];
        for p in &probes {
            let p = p.as_slice();
            bounds.extend([
                (Bound::Included(p), Bound::Included(p)),
                (Bound::Included(p), Bound::Unbounded),
                (Bound::Excluded(p), Bound::Unbounded),
                (Bound::Unbounded, Bound::Included(p)),
                (Bound::Unbounded, Bound::Excluded(p)),
            ]);
            for q in &probes {
                if value_cmp(kind, p, q) == Ordering::Less {
                    let q = q.as_slice();
                    bounds.extend([
                        (Bound::Included(p), Bound::Included(q)),
                        (Bound::Included(p), Bound::Excluded(q)),
                        (Bound::Excluded(p), Bound::Included(q)),
                        (Bound::Excluded(p), Bound::Excluded(q)),
                    ]);
                }
            }
        }
        for (lo, hi) in bounds {
            let mut want: Vec<(&Vec<u8>, &Row)> = rows
                .iter()
                .filter(|(_, r)| r.get(col).is_some_and(|v| in_bounds(kind, v, lo, hi)))
                .collect();
            want.sort_by(|a, b| {
                value_cmp(kind, a.1.get(col).unwrap(), b.1.get(col).unwrap()).then(a.0.cmp(b.0))
            });
            let want: Vec<(Vec<u8>, Row)> = want
                .into_iter()
                .map(|(k, r)| (k.clone(), r.clone()))
                .collect();
            let got = s.index_range(T, col, lo, hi, at, &AllCommitted).unwrap();
            assert!(
                got == want,
                "{what}: column {col} ({kind}) at {at}, {lo:?}..{hi:?}:\n got {:?}\nwant {:?}",
                got.iter()
                    .map(|r| String::from_utf8_lossy(&r.0).into_owned())
                    .collect::<Vec<_>>(),
                want.iter()
                    .map(|r| String::from_utf8_lossy(&r.0).into_owned())
                    .collect::<Vec<_>>(),
            );
            if let (Bound::Included(a), Bound::Included(b)) = (lo, hi) {
                if a == b {
                    let eq = s.index_eq(T, col, a, at, &AllCommitted).unwrap();
                    assert!(
                        eq == want,
                        "{what}: index_eq column {col} ({kind}) {a:?} at {at}"
                    );
                }
            }
            queries += 1;
        }
    }
    assert!(queries > 500, "{queries}");
}

#[test]
fn indexes_of_every_kind_answer_exactly_through_delta_snapshots_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("db");
    let mut s = Store::open(&root, cfg()).unwrap();
    s.create_table(T).unwrap();
    for (c, k) in COLS {
        s.create_index(T, c, k).unwrap();
    }
    assert_eq!(s.indexes(T).unwrap(), COLS);
    let mut model = TableModel::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);

    model.append(&mut s, &mut rng, 40);
    let first = model.states[20].0;
    let seq = s.current_seq().unwrap();
    check_reads(&mut s, &model, seq, "delta");

    let snap = s.snapshot(T, seq, &AllCommitted).unwrap();
    check_reads(&mut s, &model, snap, "snapshot");
    // Before the snapshot: replayed from the log.
    check_reads(&mut s, &model, first, "past, replayed");

    model.append(&mut s, &mut rng, 40);
    let seq = s.current_seq().unwrap();
    check_reads(&mut s, &model, seq, "snapshot and delta");
    check_reads(&mut s, &model, snap, "snapshot, delta ahead");
    check_reads(&mut s, &model, first, "past, delta ahead");
    drop(s);

    let mut s = Store::open(&root, cfg()).unwrap();
    assert_eq!(s.indexes(T).unwrap(), COLS);
    check_reads(&mut s, &model, seq, "reopened");
    let mut r = Store::open(&root, reader_cfg()).unwrap();
    check_reads(&mut r, &model, seq, "reader");
    check_reads(&mut r, &model, first, "reader, past");

    // A second snapshot, and its delta.
    let snap2 = s.snapshot(T, seq, &AllCommitted).unwrap();
    model.append(&mut s, &mut rng, 10);
    let last = s.current_seq().unwrap();
    check_reads(&mut s, &model, last, "second snapshot and delta");
    check_reads(&mut r, &model, last, "reader, second snapshot and delta");
    check_reads(&mut s, &model, snap, "first snapshot, past");
    assert!(snap2 > snap);

    let report = s.verify(T, &AllCommitted).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.snapshots, 2, "{report:?}");
}

/// `index_eq` of `v` on `col`, by key.
fn eq_keys(s: &mut Store, col: ColumnId, v: &[u8]) -> Result<Vec<String>> {
    let at = s.current_seq()?;
    Ok(s.index_eq(T, col, v, at, &AllCommitted)?
        .into_iter()
        .map(|(k, _)| String::from_utf8(k).unwrap())
        .collect())
}

fn range_keys(s: &mut Store, col: ColumnId, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> Vec<String> {
    let at = s.current_seq().unwrap();
    s.index_range(T, col, lo, hi, at, &AllCommitted)
        .unwrap()
        .into_iter()
        .map(|(k, _)| String::from_utf8(k).unwrap())
        .collect()
}

fn insert(s: &mut Store, xid: u64, rows: &[(&str, ColumnId, Vec<u8>)]) {
    let events = rows
        .iter()
        .map(|(k, c, v)| Event {
            table: T,
            key: k.as_bytes().to_vec(),
            op: Op::Insert(Row(vec![(*c, Some(v.clone()))])),
        })
        .collect();
    s.append(&[txn(xid, events)], &AllCommitted).unwrap();
}

/// `> 1.0` does not find 1.00, `>= 1.0` does, and equal values come in key order.
#[test]
fn exclusive_bounds_exclude_every_image_of_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), cfg()).unwrap();
    s.create_table(T).unwrap();
    s.create_index(T, 3, IndexKind::Numeric).unwrap();
    insert(
        &mut s,
        1,
        &[
            ("a", 3, num("1.00")),
            ("b", 3, num("1.5")),
            ("c", 3, image("1", true, 1, 1)),
            ("d", 3, num("0.9999")),
        ],
    );
    for snapshot in [false, true] {
        if snapshot {
            let at = s.current_seq().unwrap();
            s.snapshot(T, at, &AllCommitted).unwrap();
        }
        let one = num("1.0");
        let gt = range_keys(&mut s, 3, Bound::Excluded(&one), Bound::Unbounded);
        assert_eq!(gt, ["b"]);
        let ge = range_keys(&mut s, 3, Bound::Included(&one), Bound::Unbounded);
        assert_eq!(ge, ["a", "c", "b"]);
        let lt = range_keys(&mut s, 3, Bound::Unbounded, Bound::Excluded(&one));
        assert_eq!(lt, ["d"]);
        let le = range_keys(&mut s, 3, Bound::Unbounded, Bound::Included(&one));
        assert_eq!(le, ["d", "a", "c"]);
        assert_eq!(eq_keys(&mut s, 3, &num("1")).unwrap(), ["a", "c"]);
    }
}

/// A bound an index's kind cannot key is `BadValue`; a row value it cannot key fails
/// every read of the index that meets the row (delta, snapshot section, reopened), and
/// verification reports it; once the row holds a good value again, reads work.
#[test]
fn values_an_index_cannot_key_fail_reads_that_meet_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("db");
    let mut s = Store::open(&root, cfg()).unwrap();
    s.create_table(T).unwrap();
    s.create_index(T, 1, IndexKind::Float8).unwrap();
    insert(
        &mut s,
        1,
        &[
            ("a", 1, f8(1.0)),
            ("b", 1, vec![1, 2, 3]),
            ("c", 1, f8(2.0)),
        ],
    );
    let corrupt = |r: Result<Vec<String>>| match r {
        Err(Error::Corruption { file, detail, .. }) => {
            assert!(file.ends_with("tables/1"), "{file:?}");
            assert!(detail.contains("float8"), "{detail}");
            assert!(detail.contains("key 62"), "{detail}");
        }
        other => panic!("{other:?}"),
    };
    let check_fails = |s: &mut Store| {
        corrupt(eq_keys(s, 1, &f8(1.0)));
        corrupt(eq_keys(s, 1, &f8(7.0)));
        let at = s.current_seq().unwrap();
        let all = s.index_range(T, 1, Bound::Unbounded, Bound::Unbounded, at, &AllCommitted);
        corrupt(all.map(|r| r.into_iter().map(|_| String::new()).collect()));
        match s.index_eq(T, 1, &[0; 7], at, &AllCommitted) {
            Err(Error::BadValue {
                kind: IndexKind::Float8,
                detail,
            }) => assert!(detail.contains("7 bytes"), "{detail}"),
            other => panic!("{other:?}"),
        }
    };
    check_fails(&mut s);
    let at = s.current_seq().unwrap();
    s.snapshot(T, at, &AllCommitted).unwrap();
    check_fails(&mut s);
    drop(s);
    let mut s = Store::open(&root, cfg()).unwrap();
    check_fails(&mut s);
    let report = s.verify(T, &AllCommitted).unwrap();
    assert_eq!(report.problems.listed.len(), 1, "{report:?}");
    let p = &report.problems.listed[0];
    assert!(p.detail.contains("not a valid float8 value"), "{p:?}");
    assert!(p.detail.contains("key 62 "), "{p:?}");

    // As bytes, the column is fine.
    s.create_index(T, 1, IndexKind::Bytes).unwrap();
    assert_eq!(eq_keys(&mut s, 1, &[1, 2, 3]).unwrap(), ["b"]);
    s.create_index(T, 1, IndexKind::Float8).unwrap();
    corrupt(eq_keys(&mut s, 1, &f8(1.0)));

    // Mended in the delta: the snapshot still files "b" under the empty key, the read
    // checks its row and finds a good value.
    let mend = Event {
        table: T,
        key: b"b".to_vec(),
        op: Op::Patch(vec![(1, Some(f8(1.0)))]),
    };
    s.append(&[txn(2, vec![mend])], &AllCommitted).unwrap();
    assert_eq!(eq_keys(&mut s, 1, &f8(1.0)).unwrap(), ["a", "b"]);
    assert_eq!(eq_keys(&mut s, 1, &f8(2.0)).unwrap(), ["c"]);
    let all = range_keys(&mut s, 1, Bound::Unbounded, Bound::Unbounded);
    assert_eq!(all, ["a", "b", "c"]);
}

/// Replacing an index's kind re-keys it: the old snapshot's section (of the old kind) is
/// not used, the rows are; the next snapshot writes the new kind's section.
#[test]
fn an_index_of_another_kind_replaces_the_column_index() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("db");
    let mut s = Store::open(&root, cfg()).unwrap();
    s.create_table(T).unwrap();
    s.create_index(T, 1, IndexKind::Bytes).unwrap();
    insert(
        &mut s,
        1,
        &[
            ("a", 1, f8(0.0)),
            ("b", 1, f8(-0.0)),
            ("c", 1, f8(f64::NAN)),
        ],
    );
    let at = s.current_seq().unwrap();
    s.snapshot(T, at, &AllCommitted).unwrap();
    insert(
        &mut s,
        2,
        &[("d", 1, f8(-0.0)), ("e", 1, f8_bits(0x7FF8_0000_0000_0002))],
    );
    assert_eq!(eq_keys(&mut s, 1, &f8(0.0)).unwrap(), ["a"]);
    assert_eq!(eq_keys(&mut s, 1, &f8(f64::NAN)).unwrap(), ["c"]);

    s.create_index(T, 1, IndexKind::Float8).unwrap();
    assert_eq!(s.indexes(T).unwrap(), [(1, IndexKind::Float8)]);
    let check = |s: &mut Store| {
        assert_eq!(eq_keys(s, 1, &f8(0.0)).unwrap(), ["a", "b", "d"]);
        assert_eq!(eq_keys(s, 1, &f8(-0.0)).unwrap(), ["a", "b", "d"]);
        assert_eq!(
            eq_keys(s, 1, &f8_bits(0xFFFF_FFFF_FFFF_FFFF)).unwrap(),
            ["c", "e"]
        );
        let above = range_keys(s, 1, Bound::Excluded(&f8(0.0)), Bound::Unbounded);
        assert_eq!(above, ["c", "e"]);
    };
    check(&mut s);
    // Another store sees the new kind once it reads the meta file.
    let mut r = Store::open(&root, reader_cfg()).unwrap();
    check(&mut r);
    let at = s.current_seq().unwrap();
    s.snapshot(T, at, &AllCommitted).unwrap();
    check(&mut s);
    drop(s);
    let mut s = Store::open(&root, cfg()).unwrap();
    check(&mut s);
    assert!(s.verify(T, &AllCommitted).unwrap().ok());
    s.drop_index(T, 1).unwrap();
    assert!(matches!(
        eq_keys(&mut s, 1, &f8(0.0)),
        Err(Error::NoSuchIndex {
            table: T,
            column: 1
        })
    ));
    assert_eq!(s.indexes(T).unwrap(), []);
}

/// Copies the fixture store `name` (tests/fixtures) into a temporary directory.
fn fixture(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("db");
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    copy_dir(&from, &root);
    (dir, root)
}

/// A store written by the engine before index kinds existed (commit c2b67cb: a table with
/// an index on column 1, a snapshot, groups after it; columns 2, 3 and 4 hold float8,
/// numeric and float4 values): it reads as before, its index of kind `Bytes`, and indexes
/// of the new kinds work on it.
#[test]
fn a_store_from_before_index_kinds_reads_and_takes_new_kinds() {
    let (_dir, root) = fixture("pre-kinds");
    let old_meta = std::fs::read(root.join("tables/1/meta")).unwrap();
    let mut s = Store::open(&root, cfg()).unwrap();
    assert_eq!(s.indexes(T).unwrap(), [(1, IndexKind::Bytes)]);
    assert!(s.verify(T, &AllCommitted).unwrap().ok());
    assert_eq!(eq_keys(&mut s, 1, b"red").unwrap(), ["k01", "k03", "k07"]);
    assert_eq!(eq_keys(&mut s, 1, b"blue").unwrap(), ["k02", "k05"]);
    // At the snapshot's seq.
    let old = s.index_eq(T, 1, b"red", 6, &AllCommitted).unwrap();
    let keys: Vec<&[u8]> = old.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(keys, [b"k01", b"k03", b"k06"]);

    s.create_index(T, 2, IndexKind::Float8).unwrap();
    s.create_index(T, 3, IndexKind::Numeric).unwrap();
    s.create_index(T, 4, IndexKind::Float4).unwrap();
    let want = [
        (1, IndexKind::Bytes),
        (2, IndexKind::Float8),
        (3, IndexKind::Numeric),
        (4, IndexKind::Float4),
    ];
    assert_eq!(s.indexes(T).unwrap(), want);
    let meta = std::fs::read(root.join("tables/1/meta")).unwrap();
    let mut expected = b"DRIFTTBL\x01\x00".to_vec();
    expected.extend([0, 4, 1, 2, 3, 4, 1, 0, 2, 3, 1]);
    expected.extend(crc32(&expected).to_le_bytes());
    assert_eq!(meta, expected, "the meta file with index kinds");

    let check = |s: &mut Store| {
        assert_eq!(eq_keys(s, 2, &f8(1.5)).unwrap(), ["k01", "k07"]);
        assert_eq!(eq_keys(s, 2, &f8(-0.0)).unwrap(), ["k03"]);
        assert_eq!(eq_keys(s, 2, &f8(f64::NAN)).unwrap(), ["k04"]);
        let below = range_keys(s, 2, Bound::Unbounded, Bound::Excluded(&f8(1.5)));
        assert_eq!(below, ["k05", "k03"]);
        assert_eq!(
            eq_keys(s, 3, &num("1.5000")).unwrap(),
            ["k01", "k02", "k07"]
        );
        assert_eq!(eq_keys(s, 3, &num("-0")).unwrap(), Vec::<String>::new());
        let above = range_keys(s, 3, Bound::Excluded(&num("1.5")), Bound::Unbounded);
        assert_eq!(above, ["k05", "k04"]);
        assert_eq!(eq_keys(s, 4, &f4(0.0)).unwrap(), ["k02", "k03"]);
        assert_eq!(eq_keys(s, 4, &f4(f32::NAN)).unwrap(), ["k04"]);
    };
    check(&mut s);
    let at = s.current_seq().unwrap();
    s.snapshot(T, at, &AllCommitted).unwrap();
    check(&mut s);
    drop(s);
    let mut s = Store::open(&root, cfg()).unwrap();
    check(&mut s);
    let report = s.verify(T, &AllCommitted).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.snapshots, 2);

    // Back to an index of kind Bytes alone: the meta file is the old one again.
    for c in [2, 3, 4] {
        s.drop_index(T, c).unwrap();
    }
    assert_eq!(std::fs::read(root.join("tables/1/meta")).unwrap(), old_meta);
}

/// CRC-32 (IEEE), bit by bit, for the expected meta bytes.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A write-ahead log kept in memory: the encoded batches.
#[derive(Clone, Default)]
struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl WriteAhead for Recorder {
    fn log(&mut self, ops: &[FileOp], groups: &[GroupMark]) -> Result<()> {
        let mut b = self.0.lock().unwrap();
        b.extend(fileops::encode_batches(ops, groups, 4096));
        Ok(())
    }

    fn done(&mut self) {}
}

/// Every file under `root` but the journal's index files, by path.
fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if !is_derived(&rel) {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Index definitions with kinds (created, re-created with another kind, dropped) and the
/// snapshots holding their sections reach a standby through the write-ahead log: replayed,
/// the files are the primary's, byte for byte, and read the same.
#[test]
fn index_kinds_replay_from_the_write_ahead_log() {
    let primary = tempfile::tempdir().unwrap();
    let rec = Recorder::default();
    let mut s = Store::open_with(primary.path(), cfg(), Some(Box::new(rec.clone()))).unwrap();
    s.create_table(T).unwrap();
    s.create_index(T, 3, IndexKind::Numeric).unwrap();
    s.create_index(T, 1, IndexKind::Bytes).unwrap();
    let mut model = TableModel::new();
    let mut rng = Rng(7);
    model.append(&mut s, &mut rng, 15);
    let at = s.current_seq().unwrap();
    s.snapshot(T, at, &AllCommitted).unwrap();
    s.create_index(T, 1, IndexKind::Float8).unwrap();
    s.create_index(T, 2, IndexKind::Float4).unwrap();
    model.append(&mut s, &mut rng, 15);
    let at = s.current_seq().unwrap();
    s.snapshot(T, at, &AllCommitted).unwrap();
    s.drop_index(T, 2).unwrap();
    model.append(&mut s, &mut rng, 5);

    let standby = tempfile::tempdir().unwrap();
    let mut applier = Applier::new(standby.path(), true);
    let mut stats = Stats::default();
    for b in rec.0.lock().unwrap().iter() {
        let batch = Batch::decode(b).unwrap();
        applier.apply(&batch.ops, true, &mut stats).unwrap();
    }
    assert_eq!(files(primary.path()), files(standby.path()));
    let mut r = Store::open(standby.path(), reader_cfg()).unwrap();
    let want = [(1, IndexKind::Float8), (3, IndexKind::Numeric)];
    assert_eq!(r.indexes(T).unwrap(), want);
    let last = s.current_seq().unwrap();
    for (col, kind) in want {
        for p in probes(kind) {
            let got = r.index_eq(T, col, &p, last, &AllCommitted).unwrap();
            let expected = s.index_eq(T, col, &p, last, &AllCommitted).unwrap();
            assert!(got == expected, "column {col} {p:?}");
            let n = model
                .at(last)
                .values()
                .filter(|row| row.get(col).is_some_and(|v| value_cmp(kind, v, &p).is_eq()))
                .count();
            assert_eq!(got.len(), n, "column {col} {p:?}");
        }
    }
}
