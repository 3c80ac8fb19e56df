//! A job: records committed exactly once, progress, the folded state and its snapshots.
//!
//! The commit path (`commit_pending`) is: sort the group by id, drop ids already done, seal
//! each output's record (CRC over id, seq and payload), build the lineage entry and pack
//! entry and records into one segment, fold the outputs into the state (a panic there
//! aborts the commit), add every K commits a snapshot and every `progress_every_commits`
//! commits the done ranges and id index caught up to this commit, then hand the whole plan
//! to the store, which writes it in one redb transaction. In-memory bookkeeping (done
//! ranges, sequence, hash chain, the progress mark) is updated as the plan is built; if the
//! write fails the handle is poisoned, so that bookkeeping is never used again: a reopen
//! rebuilds it from what actually landed.

mod policy;
mod resume;
mod verify;

use std::collections::HashSet;
use std::marker::PhantomData;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::{Error, Result};
use crate::lifecycle::JobState;
use crate::lineage::{LineageEntry, OutputsHasher, now_ms};
use crate::progress::{RangeDiff, RangeSet, ids_to_ranges};
use crate::store::job_io::{self, CommitPlan, DeadLetterRecord, SnapshotRecord};
use crate::store::meta::JobMeta;
use crate::store::segment;
use crate::store::tables::JobTables;
use crate::store::{Store, StoreInner};

pub use policy::{CommitPolicy, Durability};

/// The user's state: a deterministic fold of outputs.
///
/// `apply` is called once per committed record, in commit order and, within a commit, in
/// ascending id order, both when the record is committed and when a resume replays the
/// outputs committed after the newest snapshot. It must therefore be deterministic: the same
/// state and output always give the same new state. It must not fail; a panic in it aborts
/// the commit (nothing is written) and poisons the job handle.
///
/// The state is encoded with serde (bincode) for snapshots; keep it small enough to
/// snapshot every few commits, or raise [`JobOptions::snapshot_every_commits`].
pub trait Fold: Default + Serialize + DeserializeOwned + Send + 'static {
    /// What processing one record produces; stored per record.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// Folds one record's output into the state.
    fn apply(&mut self, id: u64, output: &Self::Output);

    /// The name stored with the job to catch a job reopened with another state type.
    /// Defaults to [`std::any::type_name`], which can change between compiler versions:
    /// override it for stores that must outlive a toolchain upgrade.
    #[must_use]
    fn type_name() -> String {
        std::any::type_name::<Self>().to_owned()
    }

    /// Whether the state depends on the outputs at all. `false` lets a resume skip the replay
    /// of outputs committed after the newest snapshot (they are still checked by `verify`).
    /// Default: `true`; [`Discard`] says `false`.
    const FOLDS_OUTPUTS: bool = true;
}

/// A state that folds nothing: the job only stores outputs (and progress).
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Discard<T>(PhantomData<fn() -> T>);

impl<T> Default for Discard<T> {
    fn default() -> Self {
        Discard(PhantomData)
    }
}

impl<T> std::fmt::Debug for Discard<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Discard")
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Fold for Discard<T> {
    type Output = T;
    const FOLDS_OUTPUTS: bool = false;
    fn apply(&mut self, _id: u64, _output: &T) {}

    /// `resumable::job::Discard<T>` with `T`'s [`std::any::type_name`]: spelled out so the
    /// name stored with existing jobs does not change when the type moves in the crate.
    fn type_name() -> String {
        format!("resumable::job::Discard<{}>", std::any::type_name::<T>())
    }
}

/// A digest of the input identifiers a job declares, stored with the job so a resume
/// against different input is refused ([`Error::JobMismatch`]).
#[must_use]
pub fn manifest_digest<I: AsRef<[u8]>>(inputs: impl IntoIterator<Item = I>) -> u64 {
    let mut h = codec::fnv64(&[b"resumable-manifest"]);
    for item in inputs {
        let bytes = item.as_ref();
        h = codec::fnv64(&[&h.to_le_bytes(), &(bytes.len() as u64).to_le_bytes(), bytes]);
    }
    h
}

/// Options for opening a job.
#[derive(Clone, Debug)]
#[must_use]
pub struct JobOptions {
    pub(crate) schema_version: u32,
    pub(crate) input_manifest: Option<u64>,
    pub(crate) total_records: Option<u64>,
    pub(crate) commit_policy: CommitPolicy,
    pub(crate) snapshot_every_commits: u64,
    pub(crate) progress_every_commits: u64,
    pub(crate) keep_snapshots: usize,
    pub(crate) create: bool,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            schema_version: 0,
            input_manifest: None,
            total_records: None,
            commit_policy: CommitPolicy::default(),
            snapshot_every_commits: 16,
            progress_every_commits: ProgressMark::DEFAULT_EVERY_COMMITS,
            keep_snapshots: 3,
            create: true,
        }
    }
}

impl JobOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// The user's schema version of the state and output types; a reopen with another
    /// version is refused. Default: 0.
    pub fn schema_version(mut self, version: u32) -> Self {
        self.schema_version = version;
        self
    }

    /// A digest of the input (see [`manifest_digest`]); a reopen declaring another digest is
    /// refused. Default: none (not checked).
    pub fn input_manifest(mut self, digest: u64) -> Self {
        self.input_manifest = Some(digest);
        self
    }

    /// The number of records in the input, for progress and ETA. Default: unknown.
    pub fn total_records(mut self, total: u64) -> Self {
        self.total_records = Some(total);
        self
    }

    /// When submitted records are committed. Default: [`CommitPolicy::default`].
    pub fn commit_policy(mut self, policy: CommitPolicy) -> Self {
        self.commit_policy = policy;
        self
    }

    /// Write a snapshot of the state in every Nth commit. Default: 16. Resume replays at
    /// most this many commits. 0 disables snapshots written on the commit path. A state
    /// that folds nothing (`Fold::FOLDS_OUTPUTS == false`, such as [`Discard`]) gets none on
    /// the commit path: resuming it replays nothing.
    pub fn snapshot_every_commits(mut self, commits: u64) -> Self {
        self.snapshot_every_commits = commits;
        self
    }

    /// How often the commit path brings the stored done ranges and id index up to date:
    /// every `commits` commits (default 256, at least 1), or sooner once the commits since
    /// hold 8 MiB. In between, a commit writes only its segment (its lineage entry and
    /// outputs), and opening the job reads those recent segments to rebuild its progress.
    /// Lower values make opening cheaper; higher ones make commits cheaper.
    pub fn progress_every_commits(mut self, commits: u64) -> Self {
        self.progress_every_commits = commits.max(1);
        self
    }

    /// How many snapshots retention keeps (pinned ones are kept in addition). Default: 3;
    /// at least 1.
    pub fn keep_snapshots(mut self, keep: usize) -> Self {
        self.keep_snapshots = keep.max(1);
        self
    }

    /// Create the job if it does not exist. Default: `true`; with `false` a missing job is
    /// [`Error::JobNotFound`].
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }
}

/// What [`Job::submit`] did with a record.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Submit {
    /// Accepted into the current group; not committed yet.
    Queued,
    /// Accepted, and the group it completed was committed.
    Committed(CommitReceipt),
    /// The id was already done (or already queued): nothing changed.
    AlreadyDone,
}

/// What one commit stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitReceipt {
    /// The commit's sequence number.
    pub seq: u64,
    /// Ids whose outputs were stored, as ranges.
    pub outputs: Vec<Range<u64>>,
    /// Ids moved to the dead letters.
    pub dead_letters: Vec<u64>,
    /// Whether the commit was fsynced before it returned.
    pub durable: bool,
}

impl CommitReceipt {
    /// Number of records settled by the commit (outputs and dead letters).
    #[must_use]
    pub fn records(&self) -> u64 {
        self.outputs.iter().map(|r| r.end - r.start).sum::<u64>() + self.dead_letters.len() as u64
    }
}

/// Counters of one job handle since it was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobStats {
    /// Records whose outputs were committed.
    pub records_committed: u64,
    /// Records moved to the dead letters.
    pub dead_lettered: u64,
    /// Submissions answered [`Submit::AlreadyDone`].
    pub duplicates: u64,
    /// Commits made.
    pub commits: u64,
    /// Commits that were fsynced (including empty flushes).
    pub durable_commits: u64,
    /// Value bytes handed to the store (outputs, lineage, snapshots).
    pub bytes_written: u64,
    /// Snapshots written.
    pub snapshots: u64,
    /// Commits replayed when the job was opened.
    pub replayed_commits: u64,
}

/// The commit path writes done ranges and the id index only every few hundred commits (see
/// `store::segment`); this tracks what they lag behind by.
#[derive(Debug, Default)]
pub(crate) struct ProgressMark {
    /// The done ranges as stored.
    materialized: RangeSet,
    /// The commit they reflect.
    mark: u64,
    /// Ids settled by commits after `mark`, as ranges.
    tail_ids: Vec<(u64, u64)>,
    /// Output runs of commits after `mark`, for the id index.
    tail_runs: Vec<job_io::Run>,
    tail_commits: u64,
    tail_bytes: u64,
}

impl ProgressMark {
    /// Bring the stored progress up to date once the tail reaches this many commits (by
    /// default; see [`JobOptions::progress_every_commits`])...
    const DEFAULT_EVERY_COMMITS: u64 = 256;
    /// ...or this many stored bytes (which bounds what a resume reads to rebuild it).
    const MAX_TAIL_BYTES: u64 = 8 << 20;

    pub(crate) fn from_progress(p: job_io::Progress) -> Self {
        let mut mark = ProgressMark {
            materialized: p.materialized,
            mark: p.mark,
            ..ProgressMark::default()
        };
        for e in &p.tail {
            mark.add(e.seq, &e.outputs, &e.dead_letters, 0);
        }
        mark.tail_bytes = p.tail_bytes;
        mark
    }

    fn add(&mut self, seq: u64, outputs: &[(u64, u64)], dead: &[u64], bytes: u64) {
        self.tail_ids.extend_from_slice(outputs);
        self.tail_ids.extend(dead.iter().map(|&d| (d, d + 1)));
        self.tail_runs
            .extend(outputs.iter().map(|&(s, e)| (s, e, seq)));
        self.tail_commits += 1;
        self.tail_bytes += bytes;
    }

    fn due(&self, every_commits: u64) -> bool {
        self.tail_commits >= every_commits || self.tail_bytes >= Self::MAX_TAIL_BYTES
    }

    /// Moves the tail into the stored progress as of commit `seq`: returns the done-range
    /// changes and the index runs to write with it.
    fn take(&mut self, seq: u64) -> (RangeDiff, Vec<job_io::Run>) {
        let ids = std::mem::take(&mut self.tail_ids);
        let diff = self
            .materialized
            .insert_all(ids.into_iter().flat_map(|(s, e)| s..e));
        self.mark = seq;
        self.tail_commits = 0;
        self.tail_bytes = 0;
        (diff, std::mem::take(&mut self.tail_runs))
    }
}

enum Pending<O> {
    Output {
        id: u64,
        /// The encoded output behind room for its record header (`codec::encode_output`).
        payload: Vec<u8>,
        /// Kept for the fold; `None` when the state does not fold outputs, so the value is
        /// dropped as soon as it is encoded.
        output: Option<O>,
    },
    Dead {
        id: u64,
        record: DeadLetterRecord,
    },
}

impl<O> Pending<O> {
    fn id(&self) -> u64 {
        match self {
            Pending::Output { id, .. } | Pending::Dead { id, .. } => *id,
        }
    }
}

/// Releases a job's single-writer claim when the handle goes away.
#[derive(Debug)]
struct Claim {
    store: Arc<StoreInner>,
    name: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.store.release_job(&self.name);
    }
}

/// An open job: submit records, read progress and state.
///
/// One handle per job at a time (a second gets [`Error::Locked`]). Dropping the handle
/// without [`Job::flush`] loses only the records not yet committed; commits already made
/// stay, as after a crash. Call [`Job::pause`] or [`Job::complete`] to record a clean stop.
pub struct Job<S: Fold> {
    claim: Claim,
    tables: JobTables,
    meta: JobMeta,
    options: JobOptions,
    state: S,
    done: RangeSet,
    next_seq: u64,
    prev_hash: u64,
    durable_seq: u64,
    last_durable_at: Instant,
    next_generation: u64,
    /// Live (not retired) snapshot generations, ascending.
    generations: Vec<u64>,
    commits_since_snapshot: u64,
    pending: Vec<Pending<S::Output>>,
    pending_ids: HashSet<u64>,
    pending_bytes: usize,
    pending_since: Option<Instant>,
    /// Ids committed without fsync since the last durable commit.
    non_durable: RangeSet,
    /// What the store's done table and id index say: everything up to commit `mark`.
    progress_mark: ProgressMark,
    poisoned: bool,
    stats: JobStats,
}

impl<S: Fold> std::fmt::Debug for Job<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.meta.name)
            .field("lifecycle", &self.meta.lifecycle)
            .field("done", &self.done.len())
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the job `name` with state type `S`, creating it if absent (per `options`), and
    /// resumes it: progress, state (newest valid snapshot + replay) and lineage are loaded.
    ///
    /// # Errors
    /// [`Error::JobMismatch`] when the stored state type, schema version or input manifest
    /// differ (nothing is written); [`Error::Locked`] when the job is already open;
    /// [`Error::JobNotFound`] when absent and `create` is off; [`Error::Corrupt`] when stored
    /// data fails its checks and no fallback exists.
    pub fn job<S: Fold>(&self, name: &str, options: JobOptions) -> Result<Job<S>> {
        Job::open(self, name, options)
    }
}

impl<S: Fold> Job<S> {
    /// The job's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.meta.name
    }

    /// The folded state as of the last commit.
    #[must_use]
    pub fn state(&self) -> &S {
        &self.state
    }

    /// The lifecycle state.
    #[must_use]
    pub fn lifecycle(&self) -> JobState {
        self.meta.lifecycle
    }

    /// How many times this job was found crashed and resumed.
    #[must_use]
    pub fn recoveries(&self) -> u64 {
        self.meta.recoveries
    }

    /// The declared input size, if any.
    #[must_use]
    pub fn total_records(&self) -> Option<u64> {
        self.meta.total_records
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
        self.next_seq - 1
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
        self.pending.len()
    }

    /// Records at risk: submitted or committed but not yet durable.
    #[must_use]
    pub fn at_risk(&self) -> u64 {
        self.pending.len() as u64 + self.non_durable.len()
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

    fn check_usable(&self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    fn check_accepts(&self) -> Result<()> {
        if self.meta.lifecycle.accepts_records() {
            Ok(())
        } else {
            Err(Error::Lifecycle {
                job: self.meta.name.clone(),
                from: self.meta.lifecycle,
                to: JobState::Running,
            })
        }
    }

    fn is_known(&self, id: u64) -> bool {
        self.done.contains(id) || self.pending_ids.contains(&id)
    }

    /// Submits one record's output. It joins the current group, which is committed when the
    /// [`CommitPolicy`] says so (or on [`Job::flush`]). An id already done or already queued
    /// changes nothing and returns [`Submit::AlreadyDone`].
    ///
    /// # Errors
    /// [`Error::Record`] if the output cannot be encoded; [`Error::Lifecycle`] for a
    /// completed or failed job; storage errors from a triggered commit (the handle is then
    /// poisoned); [`Error::Panicked`] if `Fold::apply` panics.
    pub fn submit(&mut self, id: u64, output: S::Output) -> Result<Submit> {
        self.check_usable()?;
        if !self.queue_output(id, output)? {
            return Ok(Submit::AlreadyDone);
        }
        self.commit_if_due()
    }

    /// Settles a record as a dead letter (it failed `attempts` times; `error` is the last
    /// error). It joins the current group like [`Job::submit`]; the job's state is not
    /// changed by it. Requeue it with [`Store::requeue`].
    ///
    /// # Errors
    /// As [`Job::submit`].
    pub fn dead_letter(&mut self, id: u64, attempts: u32, error: &str) -> Result<Submit> {
        if !self.enqueue_dead_letter(id, attempts, error)? {
            return Ok(Submit::AlreadyDone);
        }
        self.commit_if_due()
    }

    /// Queues an output; `false` if the id is already done or queued.
    fn queue_output(&mut self, id: u64, output: S::Output) -> Result<bool> {
        if !self.admit(id)? {
            return Ok(false);
        }
        // Presize for an output like the previous one (outputs of a job tend to be alike).
        let size_hint = match self.pending.last() {
            Some(Pending::Output { payload, .. }) => codec::framed_payload_len(payload),
            _ => 0,
        };
        let payload = codec::encode_output(&output, size_hint).map_err(|e| Error::Record {
            id,
            source: format!("cannot encode output: {e}").into(),
        })?;
        let bytes = codec::framed_payload_len(&payload);
        self.push(
            Pending::Output {
                id,
                payload,
                output: S::FOLDS_OUTPUTS.then_some(output),
            },
            bytes,
        );
        Ok(true)
    }

    /// Whether `id` may join the group: `false` (counted as a duplicate) if it is already
    /// done or queued; an error for the reserved id or a job that accepts no records.
    fn admit(&mut self, id: u64) -> Result<bool> {
        if id == u64::MAX {
            return Err(Error::InvalidArgument(
                "record id u64::MAX is reserved".into(),
            ));
        }
        if self.is_known(id) {
            self.stats.duplicates += 1;
            return Ok(false);
        }
        self.check_accepts()?;
        Ok(true)
    }

    fn push(&mut self, p: Pending<S::Output>, bytes: usize) {
        self.pending_bytes += bytes;
        self.pending_ids.insert(p.id());
        self.pending.push(p);
        if self.pending_since.is_none() {
            self.pending_since = Some(Instant::now());
        }
    }

    fn commit_if_due(&mut self) -> Result<Submit> {
        let policy = &self.options.commit_policy;
        let due = self.pending.len() >= policy.max_group_records
            || self.pending_bytes >= policy.max_group_bytes
            || self
                .pending_since
                .is_some_and(|t| t.elapsed() >= policy.max_group_delay);
        if !due {
            return Ok(Submit::Queued);
        }
        let durable = self.policy_wants_durable();
        match self.commit_pending(durable)? {
            Some(receipt) => Ok(Submit::Committed(receipt)),
            None => Ok(Submit::Queued),
        }
    }

    fn policy_wants_durable(&self) -> bool {
        match self.options.commit_policy.durability {
            Durability::Immediate => true,
            Durability::Deferred { max_interval } => self.last_durable_at.elapsed() >= max_interval,
        }
    }

    /// Commits the current group (if any) durably, and makes every earlier commit durable.
    /// Returns the receipt of the group commit, if there was a group.
    ///
    /// # Errors
    /// Storage errors (the handle is then poisoned); [`Error::Panicked`] if `Fold::apply`
    /// panics.
    pub fn flush(&mut self) -> Result<Option<CommitReceipt>> {
        self.check_usable()?;
        if !self.pending.is_empty() {
            return self.commit_pending(true);
        }
        if self.durable_seq < self.last_seq() {
            let plan = CommitPlan {
                durable: true,
                ..CommitPlan::default()
            };
            self.write(&plan)?;
            self.mark_durable();
        }
        Ok(None)
    }

    /// Commits `records` as one group right now, regardless of the policy's size limits, with
    /// the policy's durability. Records already done are skipped (reported by their absence
    /// from the receipt). Any group pending from [`Job::submit`] is committed first.
    ///
    /// # Errors
    /// As [`Job::submit`].
    pub fn commit(
        &mut self,
        records: impl IntoIterator<Item = (u64, S::Output)>,
    ) -> Result<Option<CommitReceipt>> {
        self.check_usable()?;
        let durable = self.policy_wants_durable();
        if !self.pending.is_empty() {
            self.commit_pending(durable)?;
        }
        for (id, output) in records {
            self.queue_output(id, output)?;
        }
        self.commit_pending(durable)
    }

    fn mark_durable(&mut self) {
        self.durable_seq = self.last_seq();
        self.last_durable_at = Instant::now();
        self.non_durable = RangeSet::new();
        self.stats.durable_commits += 1;
    }

    fn write(&mut self, plan: &CommitPlan<'_>) -> Result<()> {
        job_io::commit(&self.claim.store, &self.tables, plan).inspect_err(|e| {
            if e.poisons() || matches!(e, Error::Poisoned) {
                self.poisoned = true;
                tracing::error!(job = %self.meta.name, error = %e, "commit failed; handle poisoned until the store is reopened");
            }
        })
    }

    /// Commits the pending group in one transaction.
    fn commit_pending(&mut self, durable: bool) -> Result<Option<CommitReceipt>> {
        if self.pending.is_empty() {
            if durable && self.durable_seq < self.last_seq() {
                self.flush()?;
            }
            return Ok(None);
        }
        let mut group = std::mem::take(&mut self.pending);
        self.pending_ids.clear();
        self.pending_bytes = 0;
        self.pending_since = None;
        group.sort_unstable_by_key(Pending::id);

        let seq = self.next_seq;
        let mut hasher = OutputsHasher::new();
        let mut sealed_outputs = Vec::with_capacity(group.len());
        let mut sealed_dead = Vec::new();
        let mut output_ids = Vec::with_capacity(group.len());
        let mut dead_ids = Vec::new();
        let mut bytes_written = 0u64;
        for p in &mut group {
            match p {
                Pending::Output { id, payload, .. } => {
                    let mut bytes = std::mem::take(payload);
                    let crc = codec::seal_record_in_place(*id, seq, &mut bytes)?;
                    hasher.add(*id, crc);
                    sealed_outputs.push((*id, bytes));
                    output_ids.push(*id);
                }
                Pending::Dead { id, record } => {
                    let bytes = codec::seal_value("dead letter", record)?;
                    bytes_written += bytes.len() as u64;
                    sealed_dead.push((*id, bytes));
                    dead_ids.push(*id);
                }
            }
        }
        let output_ranges = ids_to_ranges(&output_ids);
        let entry = LineageEntry::new(
            seq,
            now_ms(),
            output_ranges.clone(),
            dead_ids.clone(),
            hasher.finish(),
            self.prev_hash,
        );
        let sealed_entry = codec::seal_value("lineage entry", &entry)?;
        let segment = segment::build(&sealed_entry, &sealed_outputs)?;
        drop(sealed_outputs);
        bytes_written += segment.len() as u64;

        // From here on the in-memory bookkeeping runs ahead of the store; any failure below
        // poisons the handle so it is never trusted again.
        self.poisoned = true;
        self.done.extend(group.iter().map(Pending::id));
        let state = &mut self.state;
        let folded = catch_unwind(AssertUnwindSafe(|| {
            for p in &group {
                if let Pending::Output {
                    id,
                    output: Some(output),
                    ..
                } = p
                {
                    state.apply(*id, output);
                }
            }
        }));
        if let Err(payload) = folded {
            tracing::error!(job = %self.meta.name, seq, "Fold::apply panicked; nothing committed");
            return Err(Error::from_panic("Fold::apply", payload.as_ref()));
        }
        self.progress_mark
            .add(seq, &output_ranges, &dead_ids, segment.len() as u64);
        let (ranges, index, mark) = if self.progress_mark.due(self.options.progress_every_commits) {
            let (diff, runs) = self.progress_mark.take(seq);
            (Some(diff), runs, Some(seq))
        } else {
            (None, Vec::new(), None)
        };

        // A state that folds nothing needs no snapshots: resuming it replays nothing.
        let every = self.options.snapshot_every_commits;
        let take_snapshot =
            S::FOLDS_OUTPUTS && every > 0 && self.commits_since_snapshot + 1 >= every;
        let mut retire = Vec::new();
        let snapshot = if take_snapshot {
            let sealed = self.seal_snapshot(seq)?;
            bytes_written += sealed.len() as u64;
            retire = self.retirements(1);
            Some((self.next_generation, sealed))
        } else {
            None
        };

        let mut meta_update = None;
        if self.meta.lifecycle != JobState::Running {
            let mut m = self.meta.clone();
            m.lifecycle = JobState::Running;
            meta_update = Some(m);
        }

        let plan = CommitPlan {
            segment: Some((seq, segment)),
            dead_letters: &sealed_dead,
            remove_dead: &[],
            ranges: ranges.as_ref(),
            index: &index,
            mark,
            snapshot,
            retire: &retire,
            meta: meta_update.as_ref(),
            durable,
        };
        self.write(&plan)?;
        self.poisoned = false;

        // The commit landed: advance the bookkeeping.
        self.next_seq += 1;
        self.prev_hash = entry.hash;
        if let Some(m) = meta_update {
            self.meta = m;
        }
        if take_snapshot {
            self.generations.retain(|g| !retire.contains(g));
            self.generations.push(self.next_generation);
            self.next_generation += 1;
            self.commits_since_snapshot = 0;
            self.stats.snapshots += 1;
            tracing::debug!(job = %self.meta.name, seq, generation = self.next_generation - 1, retired = retire.len(), "snapshot written");
        } else {
            self.commits_since_snapshot += 1;
        }
        self.stats.commits += 1;
        self.stats.records_committed += output_ids.len() as u64;
        self.stats.dead_lettered += dead_ids.len() as u64;
        self.stats.bytes_written += bytes_written;
        if durable {
            self.mark_durable();
        } else {
            for id in output_ids.iter().chain(&dead_ids) {
                self.non_durable.insert(*id);
            }
        }
        tracing::trace!(job = %self.meta.name, seq, records = group.len(), durable, "commit");
        Ok(Some(CommitReceipt {
            seq,
            outputs: output_ranges.into_iter().map(|(s, e)| s..e).collect(),
            dead_letters: dead_ids,
            durable,
        }))
    }

    fn seal_snapshot(&self, seq: u64) -> Result<Vec<u8>> {
        let state = codec::encode(&self.state)
            .map_err(|e| Error::InvalidArgument(format!("cannot encode the job state: {e}")))?;
        codec::seal_value(
            "snapshot",
            &SnapshotRecord {
                seq,
                time_ms: now_ms(),
                state,
            },
        )
    }

    /// Generations to retire so that, after `adding` new ones, at most `keep_snapshots`
    /// unpinned snapshots remain.
    fn retirements(&self, adding: usize) -> Vec<u64> {
        let unpinned: Vec<u64> = self
            .generations
            .iter()
            .copied()
            .filter(|g| !self.meta.pinned.contains(g))
            .collect();
        let keep = self.options.keep_snapshots.saturating_sub(adding);
        let excess = unpinned.len().saturating_sub(keep);
        unpinned[..excess].to_vec()
    }

    /// Writes a snapshot of the current state now (after committing any pending group).
    /// Returns its generation.
    ///
    /// # Errors
    /// Storage errors (the handle is then poisoned).
    pub fn snapshot(&mut self) -> Result<u64> {
        self.check_usable()?;
        self.flush()?;
        let sealed = self.seal_snapshot(self.last_seq())?;
        let retire = self.retirements(1);
        let generation = self.next_generation;
        let plan = CommitPlan {
            snapshot: Some((generation, sealed)),
            retire: &retire,
            durable: true,
            ..CommitPlan::default()
        };
        self.write(&plan)?;
        self.generations.retain(|g| !retire.contains(g));
        self.generations.push(generation);
        self.next_generation += 1;
        self.commits_since_snapshot = 0;
        self.stats.snapshots += 1;
        Ok(generation)
    }

    fn transition(&mut self, to: JobState) -> Result<()> {
        self.check_usable()?;
        let from = self.meta.lifecycle;
        if from == to {
            return Ok(());
        }
        if !from.can_become(to) {
            return Err(Error::Lifecycle {
                job: self.meta.name.clone(),
                from,
                to,
            });
        }
        if to != JobState::Running {
            self.flush()?;
            // A clean stop leaves nothing to replay: the next open restores this snapshot.
            if self.commits_since_snapshot > 0 && S::FOLDS_OUTPUTS {
                self.snapshot()?;
            }
        }
        let mut m = self.meta.clone();
        m.lifecycle = to;
        // A stop also brings the stored progress up to date, so the next open reads no tail.
        self.poisoned = true;
        let last = self.last_seq();
        let (diff, index) = self.progress_mark.take(last);
        let plan = CommitPlan {
            meta: Some(&m),
            ranges: Some(&diff),
            index: &index,
            mark: Some(last),
            durable: true,
            ..CommitPlan::default()
        };
        self.write(&plan)?;
        self.poisoned = false;
        self.mark_durable();
        tracing::info!(job = %self.meta.name, %from, %to, "lifecycle");
        self.meta = m;
        Ok(())
    }

    /// Moves the job to `Running` (a commit does this implicitly).
    ///
    /// # Errors
    /// [`Error::Lifecycle`] unless the job is created or paused.
    pub fn start(&mut self) -> Result<()> {
        self.transition(JobState::Running)
    }

    /// Flushes, then records a clean stop (`Paused`); the next commit resumes.
    ///
    /// # Errors
    /// [`Error::Lifecycle`] unless the job is running; storage errors.
    pub fn pause(&mut self) -> Result<()> {
        self.transition(JobState::Paused)
    }

    /// Flushes, then marks the job `Completed`; no new record is accepted after.
    ///
    /// # Errors
    /// [`Error::Lifecycle`] unless the job is running; storage errors.
    pub fn complete(&mut self) -> Result<()> {
        if self.meta.lifecycle != JobState::Running {
            self.start()?;
        }
        self.transition(JobState::Completed)
    }

    /// Flushes, then marks the job `Failed`; no new record is accepted after.
    ///
    /// # Errors
    /// [`Error::Lifecycle`] unless the job is running; storage errors.
    pub fn fail(&mut self) -> Result<()> {
        self.transition(JobState::Failed)
    }

    // Hooks for the runner and the maintainer (crate-internal): queue without the policy's
    // automatic commit, commit a mixed group on the committer's schedule, hand the encoded
    // state to the maintainer, and hand snapshotting over to it and back.

    /// Queues an output without committing; `false` if the id is already done or queued.
    pub(crate) fn enqueue_output(&mut self, id: u64, output: S::Output) -> Result<bool> {
        self.check_usable()?;
        self.queue_output(id, output)
    }

    /// Queues a dead letter without committing; `false` if the id is already done or queued.
    pub(crate) fn enqueue_dead_letter(
        &mut self,
        id: u64,
        attempts: u32,
        error: &str,
    ) -> Result<bool> {
        self.check_usable()?;
        if !self.admit(id)? {
            return Ok(false);
        }
        let record = DeadLetterRecord {
            attempts,
            error: error.to_owned(),
            time_ms: now_ms(),
        };
        self.push(Pending::Dead { id, record }, error.len());
        Ok(true)
    }

    /// Commits whatever is queued as one group (with `durable`, also makes every earlier
    /// commit durable when nothing is queued).
    pub(crate) fn commit_queued(&mut self, durable: bool) -> Result<Option<CommitReceipt>> {
        self.check_usable()?;
        self.commit_pending(durable)
    }

    /// Whether the policy's durability asks for the next commit to be fsynced.
    pub(crate) fn wants_durable(&self) -> bool {
        self.policy_wants_durable()
    }

    /// Encoded bytes queued in the current group.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// The state encoded for a snapshot, with the commit it reflects.
    pub(crate) fn encoded_state(&self) -> Result<(u64, Vec<u8>)> {
        let bytes = codec::encode(&self.state)
            .map_err(|e| Error::InvalidArgument(format!("cannot encode the job state: {e}")))?;
        Ok((self.last_seq(), bytes))
    }

    /// Sets how often the commit path writes snapshots (0: never); returns the old value.
    pub(crate) fn set_commit_path_snapshots(&mut self, every: u64) -> u64 {
        std::mem::replace(&mut self.options.snapshot_every_commits, every)
    }

    /// The store and the job's tables, for the maintainer's own transactions.
    pub(crate) fn storage_handle(&self) -> (Store, JobTables) {
        (
            Store {
                inner: Arc::clone(&self.claim.store),
            },
            self.tables.clone(),
        )
    }

    /// Re-reads the live snapshot generations after another thread wrote or retired some.
    pub(crate) fn resync_snapshots(&mut self) -> Result<()> {
        let txn = self.claim.store.begin_read()?;
        let generations = job_io::snapshot_generations(&txn, &self.tables)?;
        drop(txn);
        if let Some(&last) = generations.last() {
            self.next_generation = self.next_generation.max(last + 1);
        }
        self.generations = generations;
        self.commits_since_snapshot = 0;
        Ok(())
    }

    /// Reads and checks the stored output of `id` (`None` if not stored).
    ///
    /// # Errors
    /// [`Error::Corrupt`] when its checksum or decoding fails.
    pub fn output(&self, id: u64) -> Result<Option<S::Output>> {
        let txn = self.claim.store.begin_read()?;
        let outputs = job_io::Outputs::open(&txn, &self.tables, &self.progress_mark.tail_runs)?;
        outputs.get(id, |found| match found {
            None => Ok(None),
            Some((_, record)) => codec::decode_output(id, record.payload).map(Some),
        })
    }
}

#[cfg(test)]
mod tests;
