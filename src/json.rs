//! [`Json`]: a JSON value as a record's output or a state, stored as its compact text.
//!
//! Jobs that do not link Rust types (`resumable run` workers, the Python package) store
//! JSON. Keeping the text rather than a structured value keeps bincode on the hot path (a
//! string is one length-prefixed copy) and lets the operator CLI print the output exactly
//! as it was produced. The text is validated and made compact when the value is built, so
//! a stored `Json` is always one valid JSON document on one line.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Discard, Fold, Result};

/// One JSON document, kept as compact text (no insignificant whitespace, no newline).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Json(String);

impl Json {
    /// Parses `text` as one JSON document and keeps it in compact form.
    ///
    /// # Errors
    /// [`crate::Error::InvalidArgument`] if `text` is not valid JSON.
    pub fn parse(text: &str) -> Result<Json> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| json_error(&e))?;
        Ok(Json(value.to_string()))
    }

    /// Encodes any serde value as JSON.
    ///
    /// # Errors
    /// [`crate::Error::InvalidArgument`] if the value cannot be represented as JSON (for example a map
    /// with non-string keys).
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Json> {
        serde_json::to_string(value)
            .map(Json)
            .map_err(|e| json_error(&e))
    }

    /// A JSON string holding `text` (for outputs that are not JSON themselves).
    #[must_use]
    pub fn string(text: &str) -> Json {
        Json(serde_json::Value::String(text.to_owned()).to_string())
    }

    /// Decodes the document into a serde value.
    ///
    /// # Errors
    /// [`crate::Error::InvalidArgument`] if the document does not have the shape of `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.0).map_err(|e| json_error(&e))
    }

    /// The compact JSON text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The compact JSON text, owned.
    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }

    /// The state type name a job of JSON outputs without a fold (`Discard<Json>`) records;
    /// the operator CLI prints outputs of such jobs as JSON.
    #[must_use]
    pub fn discard_type_name() -> String {
        Discard::<Json>::type_name()
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Json({})", self.0)
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn json_error(e: &serde_json::Error) -> crate::Error {
    crate::Error::InvalidArgument(format!("invalid JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_compacts_and_rejects_garbage() {
        let j = Json::parse(" { \"a\" : [1, 2] }\n").unwrap();
        assert_eq!(j.as_str(), "{\"a\":[1,2]}");
        assert!(Json::parse("{\"a\":").is_err());
        assert!(Json::parse("1 2").is_err());
    }

    #[test]
    fn string_escapes_and_round_trips() {
        let j = Json::string("a \"b\"\nc");
        assert_eq!(j.decode::<String>().unwrap(), "a \"b\"\nc");
        assert!(!j.as_str().contains('\n'));
    }

    #[test]
    fn bincode_form_is_the_text() {
        let j = Json::encode(&vec![1, 2, 3]).unwrap();
        let bytes = crate::codec::encode(&j).unwrap();
        let back: Json = crate::codec::decode(&bytes).unwrap();
        assert_eq!(back, j);
    }
}
