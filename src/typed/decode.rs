//! A bincode 2 (standard configuration) decoder driven by a traced serde format, producing
//! the JSON that `serde_json` would produce for the same value.
//!
//! The encoding, as `bincode::serde` writes it with `bincode::config::standard()`:
//! - `u8`/`i8`: one raw byte; `bool`: one byte, 0 or 1.
//! - other integers: varint: below 251 one byte; 251, 252, 253, 254 then a `u16`, `u32`,
//!   `u64`, `u128` little-endian; signed integers zigzag-encoded first.
//! - `f32`/`f64`: little-endian IEEE 754; `char`: its UTF-8 bytes (no length).
//! - `str`, bytes, sequences and maps: a varint `u64` length, then the bytes or elements.
//! - `Option`: a byte 0 (none) or 1 then the value; unit, unit structs: nothing.
//! - newtype structs: the inner value; tuples, tuple structs, structs: the fields in order.
//! - enums: the variant index as a varint `u32`, then the variant's fields.
//!
//! The JSON mapping is `serde_json`'s: structs are objects, enums externally tagged (a unit
//! variant is its name as a string), map keys are strings (numbers, chars and bools as
//! their text), bytes are arrays of numbers, non-finite floats are `null`. Integers beyond
//! 64 bits that JSON numbers cannot hold are written as decimal strings (`serde_json` refuses
//! them).
//!
//! Hostile bytes never panic nor loop: every length is checked against the remaining input
//! before use, nesting is capped at [`MAX_DEPTH`] and the number of decoded values at the
//! input length plus [`VALUE_BUDGET`] (zero-sized elements such as `()` take no bytes).

use serde_json::{Map, Number, Value};
use serde_reflection::{ContainerFormat, Format, Registry, VariantFormat};

/// Deepest nesting of values decoded.
pub(crate) const MAX_DEPTH: usize = 128;

/// Values decoded beyond one per input byte (for zero-sized elements).
pub(crate) const VALUE_BUDGET: usize = 1 << 20;

/// Decodes one value of format `root` spanning all of `bytes`. The error says what went
/// wrong and where.
pub(crate) fn decode(root: &Format, registry: &Registry, bytes: &[u8]) -> Result<Value, String> {
    let mut d = Decoder {
        registry,
        input: bytes,
        pos: 0,
        budget: bytes.len().saturating_add(VALUE_BUDGET),
    };
    let value = d.value(root, 0)?;
    if d.pos != bytes.len() {
        return Err(format!(
            "{} bytes left after the value (at offset {})",
            bytes.len() - d.pos,
            d.pos
        ));
    }
    Ok(value)
}

struct Decoder<'a> {
    registry: &'a Registry,
    input: &'a [u8],
    pos: usize,
    budget: usize,
}

impl<'a> Decoder<'a> {
    fn remaining(&self) -> usize {
        self.input.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "input ends at offset {}: {n} more bytes needed",
                self.input.len()
            ));
        }
        let s = &self.input[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn varint(&mut self) -> Result<u128, String> {
        let at = self.pos;
        Ok(match self.byte()? {
            b @ 0..=250 => u128::from(b),
            251 => u128::from(u16::from_le_bytes(self.array()?)),
            252 => u128::from(u32::from_le_bytes(self.array()?)),
            253 => u128::from(u64::from_le_bytes(self.array()?)),
            254 => u128::from_le_bytes(self.array()?),
            _ => return Err(format!("invalid varint tag 255 at offset {at}")),
        })
    }

    fn unsigned(&mut self, max: u128) -> Result<u128, String> {
        let at = self.pos;
        let v = self.varint()?;
        if v > max {
            return Err(format!("integer {v} at offset {at} is out of range"));
        }
        Ok(v)
    }

    fn signed(&mut self, max: u128) -> Result<i128, String> {
        let n = self.unsigned(max)?;
        // Zigzag: 0, -1, 1, -2, ... ; `n >> 1` fits i128 since n <= u128::MAX.
        let magnitude = (n >> 1).cast_signed();
        Ok(if n & 1 == 0 {
            magnitude
        } else {
            -magnitude - 1
        })
    }

    fn len(&mut self) -> Result<usize, String> {
        let at = self.pos;
        let n = self.unsigned(u128::from(u64::MAX))?;
        usize::try_from(n).map_err(|_| format!("length {n} at offset {at} is too large"))
    }

    fn charge(&mut self, n: usize) -> Result<(), String> {
        if n > self.budget {
            return Err("too many values for the input's size".to_owned());
        }
        self.budget -= n;
        Ok(())
    }

    fn value(&mut self, format: &Format, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!("values nested deeper than {MAX_DEPTH}"));
        }
        self.charge(1)?;
        Ok(match format {
            Format::Unit => Value::Null,
            Format::Bool => {
                let at = self.pos;
                match self.byte()? {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => return Err(format!("invalid bool {b} at offset {at}")),
                }
            }
            Format::U8 => Value::from(self.byte()?),
            Format::I8 => Value::from(i8::from_le_bytes(self.array()?)),
            Format::U16 => Value::from(self.unsigned(u128::from(u16::MAX))? as u64),
            Format::U32 => Value::from(self.unsigned(u128::from(u32::MAX))? as u64),
            Format::U64 => Value::from(self.unsigned(u128::from(u64::MAX))? as u64),
            Format::U128 => {
                let v = self.unsigned(u128::MAX)?;
                u64::try_from(v).map_or_else(|_| Value::String(v.to_string()), Value::from)
            }
            Format::I16 => Value::from(self.signed(u128::from(u16::MAX))? as i64),
            Format::I32 => Value::from(self.signed(u128::from(u32::MAX))? as i64),
            Format::I64 => Value::from(self.signed(u128::from(u64::MAX))? as i64),
            Format::I128 => {
                let v = self.signed(u128::MAX)?;
                i64::try_from(v).map_or_else(|_| Value::String(v.to_string()), Value::from)
            }
            Format::F32 => float(f64::from(f32::from_le_bytes(self.array()?))),
            Format::F64 => float(f64::from_le_bytes(self.array()?)),
            Format::Char => Value::String(self.char()?.to_string()),
            Format::Str => {
                let n = self.len()?;
                let at = self.pos;
                let bytes = self.take(n)?;
                let s = std::str::from_utf8(bytes)
                    .map_err(|e| format!("string at offset {at} is not UTF-8: {e}"))?;
                Value::String(s.to_owned())
            }
            Format::Bytes => {
                let n = self.len()?;
                let bytes = self.take(n)?;
                self.charge(n)?;
                Value::Array(bytes.iter().map(|&b| Value::from(b)).collect())
            }
            Format::Option(inner) => {
                let at = self.pos;
                match self.byte()? {
                    0 => Value::Null,
                    1 => self.value(inner, depth + 1)?,
                    b => return Err(format!("invalid option tag {b} at offset {at}")),
                }
            }
            Format::Seq(inner) => {
                let n = self.len()?;
                self.elements(n, inner, depth)?
            }
            Format::TupleArray { content, size } => self.elements(*size, content, depth)?,
            Format::Map { key, value } => {
                let n = self.len()?;
                self.charge(n)?;
                let mut map = Map::new();
                for _ in 0..n {
                    let k = map_key(self.value(key, depth + 1)?);
                    let v = self.value(value, depth + 1)?;
                    map.insert(k, v);
                }
                Value::Object(map)
            }
            Format::Tuple(items) => self.fields(items, depth)?,
            Format::TypeName(name) => self.container(name, depth)?,
            Format::Variable(_) => return Err("the type description is incomplete".to_owned()),
        })
    }

    fn elements(&mut self, n: usize, format: &Format, depth: usize) -> Result<Value, String> {
        self.charge(n)?;
        let mut out = Vec::with_capacity(n.min(self.remaining()));
        for _ in 0..n {
            out.push(self.value(format, depth + 1)?);
        }
        Ok(Value::Array(out))
    }

    fn fields(&mut self, formats: &[Format], depth: usize) -> Result<Value, String> {
        let mut out = Vec::with_capacity(formats.len());
        for f in formats {
            out.push(self.value(f, depth + 1)?);
        }
        Ok(Value::Array(out))
    }

    fn named(
        &mut self,
        fields: &[serde_reflection::Named<Format>],
        depth: usize,
    ) -> Result<Value, String> {
        let mut map = Map::new();
        for f in fields {
            let v = self.value(&f.value, depth + 1)?;
            map.insert(f.name.clone(), v);
        }
        Ok(Value::Object(map))
    }

    fn container(&mut self, name: &str, depth: usize) -> Result<Value, String> {
        let registry = self.registry;
        let Some(container) = registry.get(name) else {
            return Err(format!("the type description lacks type {name:?}"));
        };
        Ok(match container {
            ContainerFormat::UnitStruct => Value::Null,
            ContainerFormat::NewTypeStruct(inner) => self.value(inner, depth + 1)?,
            ContainerFormat::TupleStruct(items) => self.fields(items, depth)?,
            ContainerFormat::Struct(fields) => self.named(fields, depth)?,
            ContainerFormat::Enum(variants) => {
                let at = self.pos;
                let index = self.unsigned(u128::from(u32::MAX))? as u32;
                let Some(variant) = variants.get(&index) else {
                    return Err(format!(
                        "variant index {index} at offset {at} is not a variant of {name}"
                    ));
                };
                let inner = match &variant.value {
                    VariantFormat::Unit => return Ok(Value::String(variant.name.clone())),
                    VariantFormat::NewType(inner) => self.value(inner, depth + 1)?,
                    VariantFormat::Tuple(items) => self.fields(items, depth)?,
                    VariantFormat::Struct(fields) => self.named(fields, depth)?,
                    VariantFormat::Variable(_) => {
                        return Err(format!(
                            "variant {} of {name} is not described",
                            variant.name
                        ));
                    }
                };
                let mut map = Map::new();
                map.insert(variant.name.clone(), inner);
                Value::Object(map)
            }
        })
    }

    fn char(&mut self) -> Result<char, String> {
        let at = self.pos;
        let first = self.byte()?;
        let width = match first {
            0x00..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return Err(format!("invalid char at offset {at}")),
        };
        self.pos = at;
        let bytes = self.take(width)?;
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.chars().next())
            .ok_or_else(|| format!("invalid char at offset {at}"))
    }
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// A map key as `serde_json` writes it: strings as they are, other scalars as their text.
fn map_key(key: Value) -> String {
    match key {
        Value::String(s) => s,
        other => other.to_string(),
    }
}
