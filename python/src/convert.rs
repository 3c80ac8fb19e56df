//! Python values to and from the stored forms: JSON text (`resumable::Json`) and raw bytes
//! (`resumable::Bytes`).
//!
//! A Python value is serialized straight to compact JSON through serde (no intermediate
//! `json.dumps` text to re-parse), keeping dict order. Stored JSON is read back with
//! Python's own `json.loads`, which keeps the stored key order too.

use std::cell::RefCell;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

/// Deepest nesting accepted; deeper values (or a list that contains itself) are refused.
const MAX_DEPTH: usize = 256;

struct AsJson<'a, 'py> {
    value: &'a Bound<'py, PyAny>,
    depth: usize,
    /// The Python error behind a failed serialization, to re-raise it as is.
    failure: &'a RefCell<Option<PyErr>>,
}

impl AsJson<'_, '_> {
    fn child<'b, 'py>(&'b self, value: &'b Bound<'py, PyAny>) -> AsJson<'b, 'py> {
        AsJson {
            value,
            depth: self.depth + 1,
            failure: self.failure,
        }
    }

    fn fail<E: serde::ser::Error>(&self, err: PyErr) -> E {
        let msg = err.to_string();
        *self.failure.borrow_mut() = Some(err);
        E::custom(msg)
    }
}

fn key_text(key: &Bound<'_, PyAny>) -> PyResult<String> {
    // Like json.dumps: str keys as they are; int, float, bool and None keys as their JSON text.
    if let Ok(s) = key.cast::<PyString>() {
        return Ok(s.to_cow()?.into_owned());
    }
    if key.is_none() {
        return Ok("null".to_owned());
    }
    if let Ok(b) = key.cast::<PyBool>() {
        return Ok(if b.is_true() { "true" } else { "false" }.to_owned());
    }
    if key.is_instance_of::<PyInt>() || key.is_instance_of::<PyFloat>() {
        return Ok(key.str()?.to_cow()?.into_owned());
    }
    Err(PyTypeError::new_err(format!(
        "JSON object keys must be str, int, float, bool or None, not {}",
        key.get_type().name()?
    )))
}

impl Serialize for AsJson<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.value;
        if self.depth > MAX_DEPTH {
            return Err(self.fail(PyValueError::new_err(format!(
                "value nested deeper than {MAX_DEPTH} levels (or it contains itself)"
            ))));
        }
        if v.is_none() {
            return s.serialize_unit();
        }
        if let Ok(b) = v.cast::<PyBool>() {
            return s.serialize_bool(b.is_true());
        }
        if v.is_instance_of::<PyInt>() {
            if let Ok(i) = v.extract::<i64>() {
                return s.serialize_i64(i);
            }
            if let Ok(u) = v.extract::<u64>() {
                return s.serialize_u64(u);
            }
            return Err(self.fail(PyValueError::new_err(
                "integer out of JSON's 64-bit range; store it as a string",
            )));
        }
        if let Ok(f) = v.cast::<PyFloat>() {
            let x = f.value();
            if !x.is_finite() {
                return Err(self.fail(PyValueError::new_err(format!(
                    "{x} is not a JSON number; store it as a string or null"
                ))));
            }
            return s.serialize_f64(x);
        }
        if let Ok(text) = v.cast::<PyString>() {
            let text = text.to_cow().map_err(|e| self.fail(e))?;
            return s.serialize_str(&text);
        }
        if let Ok(d) = v.cast::<PyDict>() {
            let mut map = s.serialize_map(Some(d.len()))?;
            for (k, item) in d.iter() {
                let key = key_text(&k).map_err(|e| self.fail(e))?;
                map.serialize_entry(&key, &self.child(&item))?;
            }
            return map.end();
        }
        if let Ok(l) = v.cast::<PyList>() {
            let mut seq = s.serialize_seq(Some(l.len()))?;
            for item in l.iter() {
                seq.serialize_element(&self.child(&item))?;
            }
            return seq.end();
        }
        if let Ok(t) = v.cast::<PyTuple>() {
            let mut seq = s.serialize_seq(Some(t.len()))?;
            for item in t.iter() {
                seq.serialize_element(&self.child(&item))?;
            }
            return seq.end();
        }
        let type_name = v
            .get_type()
            .name()
            .map_or_else(|_| "?".to_owned(), |n| n.to_string());
        Err(S::Error::custom(format!(
            "a {type_name} is not JSON-serializable (use dict, list, tuple, str, int, float, bool or None)"
        )))
    }
}

/// Encodes a Python value as compact JSON. `TypeError`/`ValueError` for values JSON
/// cannot hold (the same kinds `json.dumps` raises).
pub(crate) fn to_json(value: &Bound<'_, PyAny>) -> PyResult<resumable::Json> {
    let failure = RefCell::new(None);
    let wrapped = AsJson {
        value,
        depth: 0,
        failure: &failure,
    };
    resumable::Json::encode(&wrapped).map_err(|e| {
        failure.borrow_mut().take().unwrap_or_else(|| {
            PyTypeError::new_err(
                e.to_string()
                    .replace("invalid argument: invalid JSON: ", ""),
            )
        })
    })
}

static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Decodes stored JSON text into a Python value.
pub(crate) fn from_json_text<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    let loads = JSON_LOADS.import(py, "json", "loads")?;
    loads.call1((text,))
}

/// Raw bytes from a `bytes`, `bytearray` or `memoryview`-like object.
pub(crate) fn to_bytes(value: &Bound<'_, PyAny>) -> PyResult<resumable::Bytes> {
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(resumable::Bytes(b.as_bytes().to_vec()));
    }
    value
        .extract::<Vec<u8>>()
        .map(resumable::Bytes)
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "a job with output=\"bytes\" stores bytes or bytearray, not {}",
                value
                    .get_type()
                    .name()
                    .map_or_else(|_| "?".to_owned(), |n| n.to_string())
            ))
        })
}
