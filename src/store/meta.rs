//! Job metadata: its stored form, and the one reader and writer of `resumable.jobs`.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::errors::storage;
use super::read::open_table_ro;
use super::tables;
use crate::codec;
use crate::error::{Error, Result};
use crate::lifecycle::JobState;

/// What a job records about itself when created, and its lifecycle since.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobMeta {
    pub name: String,
    /// `Fold::type_name()` of the job's state type.
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

fn what(job: &str) -> String {
    format!("metadata of job {job:?}")
}

/// Reads and checks a job's metadata.
pub(crate) fn read(txn: &ReadTransaction, job: &str) -> Result<Option<JobMeta>> {
    let Some(t) = open_table_ro(txn, tables::JOBS)? else {
        return Ok(None);
    };
    let Some(v) = t.get(job).map_err(storage)? else {
        return Ok(None);
    };
    codec::open_value(&what(job), v.value()).map(Some)
}

/// Reads a job's metadata, or says there is no such job.
pub(crate) fn require(txn: &ReadTransaction, job: &str) -> Result<JobMeta> {
    read(txn, job)?.ok_or_else(|| Error::JobNotFound(job.to_owned()))
}

/// Writes a job's metadata (sealed) in `txn`.
pub(crate) fn write(txn: &WriteTransaction, meta: &JobMeta) -> Result<()> {
    let bytes = codec::seal_value("job metadata", meta)?;
    let mut t = txn.open_table(tables::JOBS).map_err(storage)?;
    t.insert(meta.name.as_str(), bytes.as_slice())
        .map_err(storage)?;
    Ok(())
}

/// Names of every job in the store.
pub(crate) fn job_names(txn: &ReadTransaction) -> Result<Vec<String>> {
    let Some(t) = open_table_ro(txn, tables::JOBS)? else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for item in t.iter().map_err(storage)? {
        let (k, _) = item.map_err(storage)?;
        names.push(k.value().to_owned());
    }
    Ok(names)
}
