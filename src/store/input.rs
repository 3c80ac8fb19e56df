//! The optional per-job input table: what a file-input job (see `crate::input`) recorded
//! about its input files when it was created, so a rerun can check the files and seek
//! straight to the first unfinished record without reading what is done.
//!
//! `job.NAME.input` (`&str -> &[u8]`), one row: key `input` -> envelope of
//! [`StoredInput`]. The table is additive: a store without it opens as before, and a job
//! whose table is missing (an older store, a fork, or a crash between writing it and
//! creating the job) simply has its input scanned again. It is written once, before the
//! job is created, and never on the commit path.

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use super::Store;
use super::errors::storage;
use super::read::open_table_ro;
use crate::codec;
use crate::error::Result;

/// The single key of the input table.
const INPUT_KEY: &str = "input";

/// One input file as recorded at creation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredFile {
    /// The canonical path, as UTF-8 (lossy for other paths).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3 of the sampled bytes (see `crate::input::manifest`).
    pub fingerprint: [u8; 32],
    /// Records in the file.
    pub records: u64,
}

/// What a file-input job recorded about its input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredInput {
    /// The record format's name (`lines`, `jsonl`, `csv`).
    pub format: String,
    /// The files, in input order.
    pub files: Vec<StoredFile>,
    /// Records between two index entries.
    pub index_every: u64,
    /// Entry `k`: where record `k * index_every` starts, as (file position, byte offset).
    pub offsets: Vec<(u32, u64)>,
}

/// The name of the job's table (`fork` copies it with the job).
pub(super) fn table_name(job: &str) -> String {
    format!("job.{job}.input")
}

fn what(job: &str) -> String {
    format!("input table of job {job:?}")
}

impl Store {
    /// The input recorded for `job`, if any.
    pub(crate) fn read_input(&self, job: &str) -> Result<Option<StoredInput>> {
        let txn = self.inner.begin_read()?;
        let name = table_name(job);
        let def: TableDefinition<'_, &str, &[u8]> = TableDefinition::new(&name);
        let Some(t) = open_table_ro(&txn, def)? else {
            return Ok(None);
        };
        let Some(v) = t.get(INPUT_KEY).map_err(storage)? else {
            return Ok(None);
        };
        codec::open_value(&what(job), v.value()).map(Some)
    }

    /// Records `input` for `job` durably, replacing what was there.
    pub(crate) fn write_input(&self, job: &str, input: &StoredInput) -> Result<()> {
        let bytes = codec::seal_value(&what(job), input)?;
        let txn = self.inner.begin_write()?;
        {
            let name = table_name(job);
            let def: TableDefinition<'_, &str, &[u8]> = TableDefinition::new(&name);
            let mut t = txn.open_table(def).map_err(storage)?;
            t.insert(INPUT_KEY, bytes.as_slice()).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }
}
