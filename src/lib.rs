//! `resumable` makes long batch jobs crash-proof.
//!
//! A job reads records, computes an output for each, and folds the outputs into a state.
//! `resumable` commits each record's output, its progress mark and the state change in one
//! redb transaction, so a job killed at any instant resumes exactly where its last durable
//! commit left it: no record lost, none applied twice.
//!
//! ```
//! use resumable::{Fold, JobOptions, Store, Submission};
//! use serde::{Deserialize, Serialize};
//!
//! /// The job's state: total words seen so far.
//! #[derive(Default, Serialize, Deserialize)]
//! struct WordCount { words: u64 }
//!
//! impl Fold for WordCount {
//!     type Output = u64; // words in one line
//!     fn apply(&mut self, _id: u64, words: &u64) { self.words += words; }
//! }
//!
//! # fn main() -> resumable::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let lines = ["a b c", "d e", "f"];
//! let store = Store::open(dir.path().join("job.redb"))?;
//! let mut job = store.job::<WordCount>("count", JobOptions::new())?;
//! // After a crash, the same loop skips what is done: `submit` answers AlreadyDone.
//! for (id, line) in lines.iter().enumerate() {
//!     let id = id as u64;
//!     if job.is_done(id) { continue; }
//!     job.submit(id, line.split_whitespace().count() as u64)?;
//! }
//! job.flush()?; // commit the last group durably
//! assert_eq!(job.state().words, 6);
//! assert_eq!(job.submit(0, 3)?, Submission::AlreadyDone);
//! job.complete()?;
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//! 1. **Atomic record**: a record's output is stored if and only if its progress is marked
//!    done and the state reflects it; all three change in one write transaction.
//! 2. **Exactly once**: submitting a done record changes nothing and says so
//!    ([`Submission::AlreadyDone`]); resume never re-applies a done record.
//! 3. **Durable prefix**: when a commit with [`Durability::Immediate`] returns, everything
//!    up to it survives power loss. [`Durability::Deferred`] commits may be lost after a
//!    crash, but only as a suffix of the commit sequence.
//! 4. **Exact progress**: progress is a set of done id ranges ([`RangeSet`]), correct when
//!    records finish out of order; commit cost does not grow with the records done.
//! 5. **State = fold of outputs**: snapshots are CRC-checked caches of the fold; resume
//!    takes the newest snapshot that verifies and replays the outputs committed after it.
//! 6. **Integrity and lineage**: every commit appends a hash-chained [`LineageEntry`];
//!    [`Job::verify`] recomputes the chain and every checksum and names the first bad item.
//!    Nothing corrupt is returned as good data.
//! 7. **Scope**: effects outside the store are exactly-once only if made idempotent; the
//!    store is the outbox.
//!
//! # Glossary
//! Each term means one thing throughout the crate's docs and names.
//! - **record**: one unit of input, named by a `u64` id.
//! - **output**: what processing a record produced; stored per record.
//! - **done**: a record is done once a commit stored its output or made it a dead letter;
//!   a done record is never processed or folded again (until an operator requeues or
//!   rewinds it).
//! - **commit**: one redb write transaction making a group of records done.
//! - **group**: the records one commit makes done ([`CommitPolicy`] sizes it).
//! - **durable**: a commit is durable once fsynced; a crash keeps every durable commit.
//! - **fold**: [`Fold::apply`], folding each output into the job's state in commit order.
//! - **snapshot**: an encoded copy of the state as of a commit, numbered by generation.
//! - **lineage**: the hash-chained log of commits ([`LineageEntry`]).
//! - **segment**: how a commit is stored: its lineage entry and all its outputs in one
//!   value, so a commit inserts one row whatever its size. Done ranges and an id index are
//!   brought up to date every few hundred commits
//!   ([`JobOptions::progress_every_commits`]); opening a job adds the commits since.
//! - **dead letter**: a record that failed too often, done without an output until an
//!   operator requeues it.
//! - **shard**: one of N stores a job is split into, owning a contiguous range of the ids
//!   ([`Shard`]); each runs as its own process under a scheduler.
//!
//! # Crate features
//! - `cli` (default): the `resumable` operator binary.
//! - `testing`: [`testing`], a fault-injecting storage backend to crash-test jobs.
//!
//! # On-disk format
//! See the table layout in the repository's `FORMAT.md`; all integers are little-endian.
//! The `store` module is the one owner of that format; see its docs for the code map.

mod audit;
mod bytes;
mod codec;
pub mod demo;
mod error;
mod input;
mod job;
mod json;
mod lifecycle;
mod lineage;
mod maintain;
mod progress;
mod runner;
mod shard;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod typed;

pub use audit::{AuditDiff, AuditReport, AuditSample};
pub use bytes::Bytes;
pub use error::{BoxError, Error, Result};
pub use input::{FileInput, FileInputBuilder, FileSource, InputFormat, InputRecord};
pub use job::{
    CommitPolicy, CommitReceipt, DEFAULT_CODE_VERSION, Discard, Durability, Fold, FoldFn, Job,
    JobOptions, JobStats, Submission, manifest_digest,
};
pub use json::Json;
pub use lifecycle::JobState;
pub use lineage::{ChainHash, LineageEntry, LineageHead, ParseHashError, RedoRecord};
pub use progress::RangeSet;
pub use runner::{
    AdaptivePolicy, DurableAck, IdSource, IterSource, MaintainOptions, ProcessError, RecordContext,
    RetryPolicy, RunEnd, RunReport, Runner, Source, Stats, StatsHandle, StopHandle,
};
pub use shard::{MAX_SHARDS, Shard, ShardError, ShardSource, ShardSpec};
pub use store::{
    ChainStop, Compaction, Concurrency, DeadLetter, FORMAT_VERSION, FullCheck, HeadCheck,
    JobStatus, OpenCheck, Problem, RedoReport, RedoSelection, RewindReport, SalvageOptions,
    SalvageReport, SalvagedJob, SnapshotInfo, SpaceInfo, Store, StoreOptions, StoredOutput,
    UnusedSegment, VerifyReport, VersionCount,
};
