//! A job: records committed exactly once, progress, the folded state and its snapshots.
//!
//! The job owns what is the job's: the pending group, the fold and its state, the lineage
//! chain (next seq and previous hash) and the lifecycle moves. How any of it is laid out in
//! the file is the store's business ([`crate::store::JobStore`]): the job hands it encoded
//! records and the encoded state and gets back what landed.
//!
//! - `fold.rs`: the [`Fold`] trait, [`Discard`], and the one replay loop;
//! - `options.rs` and `policy.rs`: what a job is opened with and when groups commit;
//! - `commit.rs`: submit, the pending group and the commit path;
//! - `transition.rs`: lifecycle moves (start, pause, complete, fail);
//! - `resume.rs`: opening a job; `verify.rs`: the state replay against snapshots.

mod commit;
mod fold;
mod options;
mod policy;
mod resume;
mod transition;
mod verify;

use std::ops::Range;
use std::time::Instant;

use crate::codec;
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::lifecycle::JobState;
use crate::progress::RangeSet;
use crate::store::JobStore;

pub use commit::{CommitReceipt, JobStats, Submission};
pub use fold::{Discard, Fold, FoldFn};
pub use options::{DEFAULT_CODE_VERSION, JobOptions, manifest_digest};
pub use policy::{CommitPolicy, Durability};

pub(crate) use fold::Folder;
pub(crate) use policy::Clocking;

/// The lineage chain's end, as far as this handle has committed.
#[derive(Clone, Copy, Debug)]
struct Chain {
    next_seq: u64,
    prev_hash: crate::lineage::ChainHash,
}

/// An open job: submit records, read progress and state.
///
/// One handle per job at a time (a second gets [`Error::Locked`]). Dropping the handle
/// without [`Job::flush`] loses only the records not yet committed; commits already made
/// stay, as after a crash. Call [`Job::pause`] or [`Job::complete`] to record a clean stop.
pub struct Job<S: Fold> {
    store: JobStore,
    options: JobOptions,
    folder: Folder<S>,
    state: S,
    done: RangeSet,
    chain: Chain,
    durable_seq: u64,
    last_durable_at: Instant,
    commits_since_snapshot: u64,
    /// A background maintainer writes the snapshots (see `Job::hand_off_snapshots`).
    snapshots_handed_off: bool,
    group: commit::PendingGroup<S::Output>,
    /// Ids committed without fsync since the last durable commit.
    non_durable: RangeSet,
    stats: JobStats,
}

impl<S: Fold> std::fmt::Debug for Job<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.store.name())
            .field("lifecycle", &self.store.lifecycle())
            .field("done", &self.done.len())
            .field("next_seq", &self.chain.next_seq)
            .finish_non_exhaustive()
    }
}

impl crate::Store {
    /// Opens the job `name` with state type `S`, creating it if absent (per `options`), and
    /// resumes it: progress, state (newest valid snapshot + replay) and lineage are loaded.
    ///
    /// # Errors
    /// [`Error::JobMismatch`] when the stored state type, schema version or input manifest
    /// differ (nothing is written); [`Error::Locked`] when the job is already open;
    /// [`Error::JobNotFound`] when absent and `create` is off; [`Error::Corrupt`] when stored
    /// data fails its checks and no fallback exists.
    pub fn job<S: Fold>(&self, name: &str, options: JobOptions) -> Result<Job<S>> {
        Job::open(self, name, options, Folder::Apply)
    }

    /// Opens the job `name` like [`Store::job`](crate::Store::job), folding with `fold`
    /// instead of [`Fold::apply`]: for states whose fold is only known at run time (a
    /// callback from another language, a configured reducer). `fold` must be deterministic
    /// and is used for every commit, the replay on open and [`Job::verify`]; open the job
    /// with the same fold every time, as `S::type_name()` cannot tell two folds apart.
    ///
    /// # Errors
    /// As [`Store::job`](crate::Store::job).
    pub fn job_with_fold<S: Fold>(
        &self,
        name: &str,
        options: JobOptions,
        fold: impl Fn(&mut S, u64, &S::Output) + Send + Sync + 'static,
    ) -> Result<Job<S>> {
        Job::open(
            self,
            name,
            options,
            Folder::Custom(std::sync::Arc::new(fold)),
        )
    }
}

impl<S: Fold> Job<S> {
    /// The job's name.
    #[must_use]
    pub fn name(&self) -> &str {
        self.store.name()
    }

    /// The folded state as of the last commit.
    #[must_use]
    pub fn state(&self) -> &S {
        &self.state
    }

    /// The lifecycle state.
    #[must_use]
    pub fn lifecycle(&self) -> JobState {
        self.store.lifecycle()
    }

    /// How many times this job was found crashed and resumed.
    #[must_use]
    pub fn recoveries(&self) -> u64 {
        self.store.recoveries()
    }

    /// The declared input size, if any.
    #[must_use]
    pub fn total_records(&self) -> Option<u64> {
        self.store.total_records()
    }

    /// Whether `id` is settled (output stored or dead-lettered) in a committed group.
    #[must_use]
    pub fn is_done(&self, id: u64) -> bool {
        self.done.contains(id)
    }

    /// Whether `id` is settled in a commit that has been fsynced.
    #[must_use]
    pub fn is_durable(&self, id: u64) -> bool {
        self.done.contains(id) && !self.non_durable.contains(id)
    }

    /// Committed progress: the set of settled ids.
    #[must_use]
    pub fn progress(&self) -> &RangeSet {
        &self.done
    }

    /// Number of settled ids.
    #[must_use]
    pub fn done_count(&self) -> u64 {
        self.done.len()
    }

    /// Ranges of ids below `bound` that are not settled yet, ascending.
    pub fn gaps(&self, bound: u64) -> impl Iterator<Item = Range<u64>> + '_ {
        self.done.gaps(bound)
    }

    /// Sequence number of the last commit (0 before the first).
    #[must_use]
    pub fn last_seq(&self) -> u64 {
        self.chain.next_seq - 1
    }

    /// Sequence number of the last commit known durable: every commit up to it survives
    /// power loss.
    #[must_use]
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// Records submitted but not committed yet.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.group.len()
    }

    /// Records at risk: submitted or committed but not yet durable.
    #[must_use]
    pub fn at_risk(&self) -> u64 {
        self.group.len() as u64 + self.non_durable.len()
    }

    /// Counters since the handle was opened.
    #[must_use]
    pub fn stats(&self) -> &JobStats {
        &self.stats
    }

    /// The options the job was opened with.
    pub fn options(&self) -> &JobOptions {
        &self.options
    }

    /// Reads and checks the stored output of `id` (`None` if not stored).
    ///
    /// # Errors
    /// [`Error::Corrupt`] when its checksum or decoding fails.
    pub fn output(&self, id: u64) -> Result<Option<S::Output>> {
        self.store.output(id, |payload| match payload {
            None => Ok(None),
            Some(payload) => codec::decode_output(id, payload).map(Some),
        })
    }
}

#[cfg(test)]
mod tests;
