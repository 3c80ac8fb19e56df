//! What goes to a worker and what comes back, per `--protocol`.
//!
//! - `lines`: the record as one line (a line as it was; JSON Lines and CSV records as
//!   compact JSON); the answer is one line, stored as its JSON value when it parses as JSON,
//!   else as a JSON string. Answers are matched to records by order.
//! - `json`: `{"id":N,"record":R}` where R is the record's JSON value (a line is a JSON
//!   string); the answer is `{"id":N,"output":V}` or `{"id":N,"error":"why","retry":B}`
//!   (`retry` defaults to true). Answers are matched by id, in any order.

use std::sync::Arc;

use resumable::{InputRecord, Json, ProcessError};
use serde_json::Value;

/// The worker protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Protocol {
    /// One record per line in, one answer per line out, in order.
    Lines,
    /// JSON envelopes with ids, and per-record errors.
    Json,
}

/// The bytes written to a worker for a record (with the trailing newline), or why the
/// record cannot be processed.
pub(crate) fn encode(
    protocol: Protocol,
    id: u64,
    record: &InputRecord,
) -> Result<Arc<[u8]>, String> {
    if let Some(why) = record.invalid_reason() {
        return Err(why.to_owned());
    }
    let mut line = match protocol {
        Protocol::Lines => record.text().unwrap_or_default().to_owned(),
        Protocol::Json => format!(
            "{{\"id\":{id},\"record\":{}}}",
            record.to_json_text().unwrap_or_else(|| "null".to_owned())
        ),
    };
    line.push('\n');
    Ok(Arc::from(line.into_bytes()))
}

/// A lines-protocol answer as an output: JSON if it parses, else a JSON string.
pub(crate) fn output_of(answer: &str) -> Json {
    Json::parse(answer).unwrap_or_else(|_| Json::string(answer))
}

/// A json-protocol answer: its id and what it says, or why it is garbage.
pub(crate) fn parse_envelope(answer: &str) -> Result<(u64, Result<Json, ProcessError>), String> {
    let value: Value = serde_json::from_str(answer).map_err(|e| format!("not JSON ({e})"))?;
    let Value::Object(map) = value else {
        return Err("not a JSON object".to_owned());
    };
    let id = map
        .get("id")
        .and_then(Value::as_u64)
        .ok_or("no numeric \"id\"")?;
    if let Some(output) = map.get("output") {
        let json = Json::encode(output).map_err(|e| e.to_string())?;
        return Ok((id, Ok(json)));
    }
    if let Some(error) = map.get("error") {
        let why = error
            .as_str()
            .map_or_else(|| error.to_string(), str::to_owned);
        let why = format!("the worker reported: {why}");
        let retry = map.get("retry").and_then(Value::as_bool).unwrap_or(true);
        return Ok((
            id,
            Err(if retry {
                ProcessError::transient(why)
            } else {
                ProcessError::permanent(why)
            }),
        ));
    }
    Err("neither \"output\" nor \"error\"".to_owned())
}

/// At most `max` characters of `text`, for messages.
pub(crate) fn snippet(text: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(text);
    let mut out: String = s.chars().take(max).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_in_and_out() {
        let rec = InputRecord::Text("a \"b\"".into());
        let line = encode(Protocol::Json, 7, &rec).unwrap();
        assert_eq!(&*line, b"{\"id\":7,\"record\":\"a \\\"b\\\"\"}\n");
        assert_eq!(&*encode(Protocol::Lines, 7, &rec).unwrap(), b"a \"b\"\n");
        let (id, out) = parse_envelope(r#"{"id":3,"output":{"x":[1, 2]}}"#).unwrap();
        assert_eq!((id, out.unwrap().as_str()), (3, r#"{"x":[1,2]}"#));
        let (_, e) = parse_envelope(r#"{"id":3,"error":"bad","retry":false}"#).unwrap();
        assert!(e.unwrap_err().is_permanent());
        let (_, e) = parse_envelope(r#"{"id":3,"error":"busy"}"#).unwrap();
        assert!(!e.unwrap_err().is_permanent());
        assert!(parse_envelope("hello").is_err());
        assert!(parse_envelope(r#"{"output":1}"#).is_err());
        assert_eq!(output_of("42").as_str(), "42");
        assert_eq!(output_of("hi there").as_str(), "\"hi there\"");
    }
}
