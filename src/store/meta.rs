//! Persisted job metadata.

use serde::{Deserialize, Serialize};

use crate::lifecycle::JobState;

/// What a job records about itself when created, and its lifecycle since.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobMeta {
    pub name: String,
    /// `State::type_name()` of the job's state type.
    pub state_type: String,
    /// The user's schema version of state and output types.
    pub schema_version: u32,
    /// Digest of the declared input identifiers, if the user declared them.
    pub input_manifest: Option<u64>,
    pub lifecycle: JobState,
    pub created_ms: u64,
    /// How many times the job was found `Running` on open (crashed) and resumed.
    pub recoveries: u64,
    /// Snapshot generations kept from retention.
    pub pinned: Vec<u64>,
    /// The number of records in the input, if the user declared it.
    pub total_records: Option<u64>,
}
