//! Stored values besides metadata and segments: snapshots and dead letters (FORMAT.md,
//! "Payloads"). Their serde field order is the file format.

use serde::{Deserialize, Serialize};

/// A snapshot as stored: the state's encoded bytes and the commit they reflect.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SnapshotRecord {
    pub seq: u64,
    pub time_ms: u64,
    pub state: Vec<u8>,
}

/// A dead letter as stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct DeadLetterRecord {
    pub attempts: u32,
    pub error: String,
    pub time_ms: u64,
}
