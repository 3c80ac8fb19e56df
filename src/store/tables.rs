//! Table names and definitions: the on-disk layout of a store.
//!
//! Store-wide tables:
//! - `resumable.store` (`&str -> &[u8]`): `format` -> store format version (`u32` LE).
//! - `resumable.jobs` (`&str -> &[u8]`): job name -> envelope of the job's metadata.
//!
//! Per job `NAME` (names are arbitrary UTF-8; the prefix keeps jobs apart):
//! - `job.NAME.outputs` (`u64 -> &[u8]`): record id -> output record (crc, seq, payload).
//! - `job.NAME.done` (`u64 -> u64`): done range start -> end (exclusive); disjoint, never touching.
//! - `job.NAME.log` (`u64 -> &[u8]`): commit seq -> envelope of its lineage entry.
//! - `job.NAME.snapshots` (`u64 -> &[u8]`): generation -> envelope of the snapshot.
//! - `job.NAME.dead` (`u64 -> &[u8]`): record id -> envelope of its dead letter.

use redb::TableDefinition;

pub(crate) const STORE: TableDefinition<&str, &[u8]> = TableDefinition::new("resumable.store");
pub(crate) const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("resumable.jobs");

/// Key of the store format version in [`STORE`].
pub(crate) const FORMAT_KEY: &str = "format";

/// The names of one job's tables.
#[derive(Debug, Clone)]
pub(crate) struct JobTables {
    outputs: String,
    done: String,
    log: String,
    snapshots: String,
    dead: String,
}

impl JobTables {
    pub(crate) fn new(job: &str) -> Self {
        JobTables {
            outputs: format!("job.{job}.outputs"),
            done: format!("job.{job}.done"),
            log: format!("job.{job}.log"),
            snapshots: format!("job.{job}.snapshots"),
            dead: format!("job.{job}.dead"),
        }
    }

    pub(crate) fn outputs(&self) -> TableDefinition<'_, u64, &'static [u8]> {
        TableDefinition::new(&self.outputs)
    }

    pub(crate) fn done(&self) -> TableDefinition<'_, u64, u64> {
        TableDefinition::new(&self.done)
    }

    pub(crate) fn log(&self) -> TableDefinition<'_, u64, &'static [u8]> {
        TableDefinition::new(&self.log)
    }

    pub(crate) fn snapshots(&self) -> TableDefinition<'_, u64, &'static [u8]> {
        TableDefinition::new(&self.snapshots)
    }

    pub(crate) fn dead(&self) -> TableDefinition<'_, u64, &'static [u8]> {
        TableDefinition::new(&self.dead)
    }
}
