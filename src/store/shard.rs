//! The optional per-job shard table: which shard of a split job this store holds (see
//! `crate::shard`), recorded when the shard's job is created so that resuming it with
//! another split or input is refused.
//!
//! `job.NAME.shard` (`&str -> &[u8]`), one row: key `shard` -> envelope of
//! [`StoredShard`]. The table is additive like `job.NAME.input`: stores and jobs without it
//! open as before (the format version is unchanged). It is written once, before the job is
//! created, and never on the commit path.

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use super::Store;
use super::errors::storage;
use super::read::open_table_ro;
use crate::codec;
use crate::error::{Error, Result};
use crate::shard::ShardSpec;

/// The single key of the shard table.
const SHARD_KEY: &str = "shard";

/// A shard's spec as stored (serde field order is the format).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredShard {
    /// The 0-based shard index.
    pub index: u32,
    /// The shard count.
    pub count: u32,
    /// Records in the whole job.
    pub total: u64,
    /// First id the shard owns.
    pub start: u64,
    /// End (exclusive) of the ids the shard owns.
    pub end: u64,
    /// The job's input manifest digest.
    pub manifest: u64,
}

/// The name of the job's table (`fork` copies it with the job).
pub(super) fn table_name(job: &str) -> String {
    format!("job.{job}.shard")
}

fn what(job: &str) -> String {
    format!("shard table of job {job:?}")
}

impl Store {
    /// The shard spec recorded for `job`, if it is one shard of a split job.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the recorded spec fails its checksum or is not a valid spec;
    /// storage errors.
    pub fn job_shard(&self, job: &str) -> Result<Option<ShardSpec>> {
        let txn = self.inner.begin_read()?;
        let name = table_name(job);
        let def: TableDefinition<'_, &str, &[u8]> = TableDefinition::new(&name);
        let Some(t) = open_table_ro(&txn, def)? else {
            return Ok(None);
        };
        let Some(v) = t.get(SHARD_KEY).map_err(storage)? else {
            return Ok(None);
        };
        let stored: StoredShard = codec::open_value(&what(job), v.value())?;
        ShardSpec::from_stored(&stored)
            .filter(|spec| spec.shard.range(spec.total) == spec.range)
            .map(Some)
            .ok_or_else(|| Error::Corrupt {
                what: what(job),
                expected: "a shard index below its count and the range it owns".to_owned(),
                got: format!(
                    "shard {}/{} owning {}..{} of {}",
                    stored.index, stored.count, stored.start, stored.end, stored.total
                ),
            })
    }

    /// Records `shard` for `job` durably, replacing what was there.
    pub(crate) fn write_shard(&self, job: &str, shard: &StoredShard) -> Result<()> {
        let bytes = codec::seal_value(&what(job), shard)?;
        let txn = self.inner.begin_write()?;
        {
            let name = table_name(job);
            let def: TableDefinition<'_, &str, &[u8]> = TableDefinition::new(&name);
            let mut t = txn.open_table(def).map_err(storage)?;
            t.insert(SHARD_KEY, bytes.as_slice()).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }
}
