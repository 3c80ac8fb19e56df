//! The decoder against bincode + `serde_json`: `decode_json(bincode(v)) == to_value(v)` for
//! user-like types, and random bytes never panic.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::TypeDescription;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    Empty,
    Count(u32),
    Pair(i64, String),
    Named { x: f64, tag: Option<char> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Level {
    Low,
    High,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Unit;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Meters(f32);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Row {
    id: u64,
    delta: i64,
    small: i8,
    byte: u8,
    flag: bool,
    name: String,
    kind: Kind,
    level: Level,
    levels: Vec<Level>,
    maybe: Option<Box<Kind>>,
    tags: BTreeMap<String, Vec<i32>>,
    by_id: BTreeMap<u16, Level>,
    pair: (char, i16),
    arr: [u8; 3],
    len: Meters,
    unit: Unit,
    big: u128,
    neg: i128,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Empty),
        any::<u32>().prop_map(Kind::Count),
        (any::<i64>(), ".{0,8}").prop_map(|(a, b)| Kind::Pair(a, b)),
        (any::<f64>(), any::<Option<char>>()).prop_map(|(x, tag)| Kind::Named { x, tag }),
    ]
}

fn level() -> impl Strategy<Value = Level> {
    prop_oneof![Just(Level::Low), Just(Level::High)]
}

prop_compose! {
    fn row()(
        id in any::<u64>(), delta in any::<i64>(), small in any::<i8>(), byte in any::<u8>(),
        flag in any::<bool>(), name in ".{0,12}", kind in kind(), level in level(),
        levels in prop::collection::vec(level(), 0..5),
        maybe in prop::option::of(kind().prop_map(Box::new)),
        tags in prop::collection::btree_map(".{0,6}", prop::collection::vec(any::<i32>(), 0..4), 0..4),
        by_id in prop::collection::btree_map(any::<u16>(), level(), 0..4),
        pair in (any::<char>(), any::<i16>()), arr in any::<[u8; 3]>(), len in any::<f32>(),
        big in any::<u128>(), neg in any::<i128>(),
    ) -> Row {
        Row { id, delta, small, byte, flag, name, kind, level, levels, maybe, tags, by_id, pair, arr,
              len: Meters(len), unit: Unit, big, neg }
    }
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    crate::codec::encode(v).unwrap_or_default()
}

/// `serde_json` refuses integers beyond 64 bits; the decoder writes them as strings.
fn expected(row: &Row) -> serde_json::Value {
    let mut fitting = row.clone();
    fitting.big = 0;
    fitting.neg = 0;
    let mut v = serde_json::to_value(&fitting).unwrap_or_default();
    v["big"] = u64::try_from(row.big).map_or_else(|_| row.big.to_string().into(), Into::into);
    v["neg"] = i64::try_from(row.neg).map_or_else(|_| row.neg.to_string().into(), Into::into);
    v
}

proptest! {
    #[test]
    fn decodes_rows_like_serde_json(row in row()) {
        let d = TypeDescription::of::<Row>().map_err(TestCaseError::fail)?;
        let got = d.decode_json(&encode(&row)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got, expected(&row));
    }

    #[test]
    fn decodes_top_level_non_structs(
        v in prop::collection::vec((any::<i64>(), prop::option::of(kind())), 0..6),
        k in kind(),
    ) {
        let d = TypeDescription::of::<Vec<(i64, Option<Kind>)>>().map_err(TestCaseError::fail)?;
        let got = d.decode_json(&encode(&v)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got, serde_json::to_value(&v).unwrap_or_default());
        let d = TypeDescription::of::<Kind>().map_err(TestCaseError::fail)?;
        let got = d.decode_json(&encode(&k)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got, serde_json::to_value(&k).unwrap_or_default());
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let d = TypeDescription::of::<Row>().map_err(TestCaseError::fail)?;
        let _ = d.decode_json(&bytes);
        let d = TypeDescription::of::<Vec<()>>().map_err(TestCaseError::fail)?;
        let _ = d.decode_json(&bytes);
    }

    #[test]
    fn mutated_payloads_never_panic(row in row(), at in any::<prop::sample::Index>(), b in any::<u8>()) {
        let d = TypeDescription::of::<Row>().map_err(TestCaseError::fail)?;
        let mut bytes = encode(&row);
        if !bytes.is_empty() {
            let i = at.index(bytes.len());
            bytes[i] = b;
            let _ = d.decode_json(&bytes);
            let _ = d.decode_json(&bytes[..i]);
        }
    }
}

#[test]
fn a_huge_count_of_zero_sized_elements_is_refused_quickly() {
    let d = TypeDescription::of::<Vec<()>>().unwrap_or_else(|e| panic!("{e}"));
    // Length u64::MAX: varint tag 253 then 8 bytes.
    let mut bytes = vec![253];
    bytes.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(d.decode_json(&bytes).is_err());
}

#[test]
fn deep_recursion_is_capped() {
    #[derive(Serialize, Deserialize)]
    enum Tree {
        Leaf,
        Node(Box<Tree>),
    }
    let d = TypeDescription::of::<Tree>().unwrap_or_else(|e| panic!("{e}"));
    let deep = vec![1u8; 10_000];
    assert!(d.decode_json(&deep).is_err());
    assert_eq!(
        d.decode_json(&[1, 1, 0]).ok(),
        Some(serde_json::json!({"Node": {"Node": "Leaf"}}))
    );
}

#[test]
fn types_with_validating_deserialize_are_not_describable() {
    assert!(TypeDescription::of::<std::num::NonZeroU32>().is_err());
}

#[test]
fn an_enum_only_inside_a_vec_is_not_describable() {
    #[derive(Serialize, Deserialize)]
    struct Only {
        levels: Vec<Level>,
    }
    let err = TypeDescription::of::<Only>().err().unwrap_or_default();
    assert!(err.contains("Level"), "{err}");
}
