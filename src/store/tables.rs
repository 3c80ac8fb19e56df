//! Table names and definitions: the on-disk layout of a store.
//!
//! Store-wide tables:
//! - `resumable.store` (`&str -> &[u8]`): `format` -> store format version (`u32` LE).
//! - `resumable.jobs` (`&str -> &[u8]`): job name -> envelope of the job's metadata.
//!
//! Per job `NAME` (names are arbitrary UTF-8; the prefix keeps jobs apart):
//! - `job.NAME.log` (`u64 -> &[u8]`): commit seq -> segment: the commit's lineage entry and
//!   all its outputs (see `store::segment`).
//! - `job.NAME.done` (`u64 -> u64`): done range start -> end (exclusive); disjoint, never
//!   touching; key [`MARK_KEY`] holds the commit seq the ranges reflect (the mark). Commits
//!   after the mark (the tail) count as done too; the commit path brings the table up to
//!   date every few hundred commits rather than on each.
//! - `job.NAME.index` (`u64 -> (u64, u64)`): first id of a run of outputs -> (end id
//!   exclusive, commit seq), for the commits up to the mark.
//! - `job.NAME.snapshots` (`u64 -> &[u8]`): generation -> envelope of the snapshot.
//! - `job.NAME.dead` (`u64 -> &[u8]`): record id -> envelope of its dead letter.
//! - `job.NAME.cursor` (`&str -> u64`, optional): [`ANNOUNCED_KEY`] -> the last commit
//!   whose durable acknowledgement the runner delivered (written with the progress mark).
//! - `job.NAME.types` (`&str -> &[u8]`, optional): `output` and `state` -> JSON description
//!   of the job's output and state types, traced at creation (see `crate::typed`).
//! - `job.NAME.input` and `job.NAME.shard` (`&str -> &[u8]`, optional): see `input.rs` and
//!   `shard.rs`.

use redb::TableDefinition;

pub(crate) const STORE: TableDefinition<&str, &[u8]> = TableDefinition::new("resumable.store");
pub(crate) const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("resumable.jobs");

/// Key of the store format version in [`STORE`].
pub(crate) const FORMAT_KEY: &str = "format";

/// Key of the mark in a job's done table (ids never reach it: `u64::MAX` is reserved).
pub(crate) const MARK_KEY: u64 = u64::MAX;

/// Key of the last announced commit in a job's cursor table.
pub(crate) const ANNOUNCED_KEY: &str = "announced";

/// The names of one job's tables.
#[derive(Debug, Clone)]
pub(crate) struct JobTables {
    job: String,
    index: String,
    done: String,
    log: String,
    snapshots: String,
    dead: String,
    cursor: String,
    types: String,
}

impl JobTables {
    pub(crate) fn new(job: &str) -> Self {
        JobTables {
            job: job.to_owned(),
            index: format!("job.{job}.index"),
            done: format!("job.{job}.done"),
            log: format!("job.{job}.log"),
            snapshots: format!("job.{job}.snapshots"),
            dead: format!("job.{job}.dead"),
            cursor: format!("job.{job}.cursor"),
            types: format!("job.{job}.types"),
        }
    }

    pub(crate) fn job(&self) -> &str {
        &self.job
    }

    pub(crate) fn index(&self) -> TableDefinition<'_, u64, (u64, u64)> {
        TableDefinition::new(&self.index)
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

    pub(crate) fn cursor(&self) -> TableDefinition<'_, &'static str, u64> {
        TableDefinition::new(&self.cursor)
    }

    pub(crate) fn types(&self) -> TableDefinition<'_, &'static str, &'static [u8]> {
        TableDefinition::new(&self.types)
    }
}
