//! The store: one redb file holding many jobs. The only module that talks to redb, and the
//! one owner of the file format (FORMAT.md).
//!
//! - [`Store`] and [`StoreOptions`] (`open.rs`) open the file, creating it atomically
//!   (`create.rs`); `errors.rs` translates every redb error into ours, in one place.
//! - [`JobStore`] (`job_store.rs`) is one open job's handle on its tables: it loads the
//!   job, seals and commits groups (segments, progress marks, the id index), writes and
//!   retires snapshots and reads outputs back. The `job` module holds the fold and the
//!   pending group and calls it; no redb type or transaction leaves this module.
//! - The operator's side: `inspect.rs` (read-only questions), `verify.rs` (the checks that
//!   need no state type), `repair.rs` (requeue, rewind, fork, pin), `space.rs` (file
//!   space, compaction, redb's integrity check), `scrub.rs` (the maintainer's background
//!   re-read of a job's values, one short read transaction per batch).
//! - Below them: `tables.rs` (names), `meta.rs` and `records.rs` (stored values),
//!   `segment.rs` (commit framing), `read.rs` and `write.rs` (one read or write
//!   transaction each), `outputs.rs` (outputs by id), `progress_mark.rs` (when done ranges
//!   and the index are written), `snapshots.rs` (sealing and retention), `claim.rs` (one
//!   writer per job), `poison.rs` (the guard that poisons a handle that ran ahead).
//! - Optional per-job tables: `input.rs` (the input manifest and offset index of file
//!   sources); `shard.rs` (which shard of a split job the store holds); type descriptions
//!   (written at creation, `read.rs`/`write.rs`).
//! - `salvage/`: reading a file redb cannot open, byte by byte, into a new store.

mod chain;
mod claim;
mod create;
mod door;
mod errors;
mod fingerprint;
mod group;
mod hasher;
mod input;
mod inspect;
mod job_store;
mod live;
mod meta;
mod open;
mod outputs;
mod poison;
mod progress_mark;
mod read;
mod records;
mod redo;
mod repair;
mod salvage;
mod scrub;
mod segment;
mod shard;
mod snapshots;
mod space;
mod sync_failure;
mod tables;
mod verify;
mod write;
mod writer_lock;

pub use chain::{HeadCheck, VersionCount};
pub use inspect::{DeadLetter, JobStatus, SnapshotInfo, StoredOutput};
pub use open::{Concurrency, FORMAT_VERSION, FullCheck, OpenCheck, Store, StoreOptions};
pub use redo::{RedoReport, RedoSelection};
pub use repair::RewindReport;
pub use salvage::{ChainStop, SalvageOptions, SalvageReport, SalvagedJob, UnusedSegment};
pub use space::{Compaction, SpaceInfo};
pub use verify::{Problem, VerifyReport};

pub(crate) use group::GroupBuilder;
pub(crate) use input::{StoredFile, StoredInput};
pub(crate) use job_store::{InputChange, JobStore, NewJob, SnapshotWriter};
pub(crate) use records::DeadLetterRecord;
pub(crate) use scrub::{Pass, Scrubber};
pub(crate) use shard::StoredShard;

#[cfg(feature = "testing")]
pub(crate) use {
    meta::JobMeta,
    records::SnapshotRecord,
    salvage::scan as salvage_scan,
    segment::{Segment, build as build_segment},
};

/// The file `DIR/.NAME.SUFFIX` beside the store at `store` (`DIR/NAME`): where each of its
/// sidecars lives (the open-check fingerprint, the knock, the writer lock, the failed-sync
/// marker).
pub(crate) fn sidecar(store: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let name = store
        .file_name()
        .map_or_else(|| "store".into(), |n| n.to_string_lossy().into_owned());
    store.with_file_name(format!(".{name}.{suffix}"))
}

/// How often the commit path brings done ranges and the id index up to date, by default.
pub(crate) const DEFAULT_PROGRESS_EVERY_COMMITS: u64 =
    progress_mark::ProgressMark::DEFAULT_EVERY_COMMITS;

#[cfg(test)]
pub(crate) mod damage;
#[cfg(test)]
mod open_check_tests;
