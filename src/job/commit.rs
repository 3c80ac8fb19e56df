//! Submitting records and the commit path.
//!
//! Each output is encoded and sealed as it is submitted, straight into the store's
//! [`GroupBuilder`] (which lays the group out as the segment it will be stored as). A
//! commit seals the group (records in id order, its lineage entry), folds the outputs into
//! the state in id order (a panic there aborts the commit: nothing is written), encodes
//! the state when a snapshot is due, and lets the store write it all in one transaction.
//! From the fold on, the job runs ahead of the file, so that stretch is
//! guarded by a poison dart: if the write does not land, the handle refuses further work
//! and a reopen rebuilds it from what did land.

use std::collections::HashSet;
use std::ops::Range;
use std::time::Instant;

use super::fold::{self, Fold};
use super::policy::Durability;
use super::{Chain, Job};
use crate::codec;
use crate::error::{Error, Result};
use crate::lifecycle::JobState;
use crate::lineage::now_ms;
use crate::progress::RangeSet;
use crate::store::{DeadLetterRecord, GroupBuilder, SnapshotWriter};

/// What [`Job::submit`] did with a record.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Submission {
    /// Accepted into the current group; not committed yet.
    Queued,
    /// Accepted, and the group it completed was committed.
    Committed(CommitReceipt),
    /// The id was already done (or already queued): nothing changed.
    AlreadyDone,
}

/// What one commit stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    /// Number of records the commit made done (outputs and dead letters).
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
    /// Submissions answered [`Submission::AlreadyDone`].
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

/// The records submitted since the last commit: built as the segment it will be stored as
/// (`store::group`), plus what the job itself needs of them.
pub(crate) struct PendingGroup<O> {
    builder: GroupBuilder,
    /// Outputs kept for the fold, in the order queued; empty when the state does not fold
    /// outputs (each value is then dropped as soon as it is encoded).
    folded: Vec<(u64, O)>,
    /// Every id queued is at most `max`; while `ordered` (each id queued above all before
    /// it) the builder's ids are sorted and searched, after that `ids` holds them all.
    max: Option<u64>,
    ordered: bool,
    ids: HashSet<u64>,
    bytes: usize,
    since: Option<Instant>,
}

impl<O> Default for PendingGroup<O> {
    fn default() -> Self {
        PendingGroup {
            builder: GroupBuilder::default(),
            folded: Vec::new(),
            max: None,
            ordered: true,
            ids: HashSet::new(),
            bytes: 0,
            since: None,
        }
    }
}

impl<O> PendingGroup<O> {
    pub(crate) fn len(&self) -> usize {
        self.builder.len()
    }

    fn is_empty(&self) -> bool {
        self.builder.is_empty()
    }

    fn contains(&self, id: u64) -> bool {
        match self.max {
            Some(max) if id <= max => {
                if self.ordered {
                    self.builder.holds_in_order(id)
                } else {
                    self.ids.contains(&id)
                }
            }
            _ => false,
        }
    }

    /// Notes that `id` was queued with `bytes` of payload.
    fn note(&mut self, id: u64, bytes: usize) {
        if self.ordered && self.max.is_some_and(|max| id <= max) {
            // Out of order from here on: index every id queued.
            self.ordered = false;
            self.ids.extend(self.builder.ids());
        }
        if !self.ordered {
            self.ids.insert(id);
        }
        self.max = self.max.max(Some(id));
        self.bytes += bytes;
        self.since.get_or_insert_with(Instant::now);
    }

    /// Empties the group's bookkeeping (the builder is emptied by sealing).
    fn reset(&mut self) {
        self.builder.clear();
        self.folded.clear();
        self.max = None;
        self.ordered = true;
        self.ids.clear();
        self.bytes = 0;
        self.since = None;
    }
}

impl<S: Fold> Job<S> {
    fn is_known(&self, id: u64) -> bool {
        self.done.contains(id) || self.group.contains(id)
    }

    fn check_accepts(&self) -> Result<()> {
        let lifecycle = self.store.lifecycle();
        if lifecycle.accepts_records() {
            Ok(())
        } else {
            Err(Error::Lifecycle {
                job: self.name().to_owned(),
                from: lifecycle,
                to: JobState::Running,
            })
        }
    }

    /// Submits one record's output. It joins the current group, which is committed when the
    /// [`CommitPolicy`](crate::CommitPolicy) says so (or on [`Job::flush`]). An id already
    /// done or already queued changes nothing and returns [`Submission::AlreadyDone`].
    ///
    /// # Errors
    /// [`Error::Record`] if the output cannot be encoded; [`Error::Lifecycle`] for a
    /// completed or failed job; storage errors from a triggered commit (the handle is then
    /// poisoned); [`Error::Panicked`] if the fold panics.
    pub fn submit(&mut self, id: u64, output: S::Output) -> Result<Submission> {
        self.store.check_usable()?;
        if !self.queue_output(id, output)? {
            return Ok(Submission::AlreadyDone);
        }
        self.commit_if_due()
    }

    /// Makes a record done as a dead letter (it failed `attempts` times; `error` is the
    /// last error). It joins the current group like [`Job::submit`]; the job's state is not
    /// changed by it. Requeue it with [`Store::requeue`](crate::Store::requeue).
    ///
    /// # Errors
    /// As [`Job::submit`].
    pub fn dead_letter(&mut self, id: u64, attempts: u32, error: &str) -> Result<Submission> {
        if !self.enqueue_dead_letter(id, attempts, error)? {
            return Ok(Submission::AlreadyDone);
        }
        self.commit_if_due()
    }

    /// Queues an output; `false` if the id is already done or queued.
    fn queue_output(&mut self, id: u64, output: S::Output) -> Result<bool> {
        if !self.admit(id)? {
            return Ok(false);
        }
        let seq = self.chain.next_seq;
        let bytes = self
            .group
            .builder
            .output(seq, id, |buf| codec::encode_output_into(&output, buf))?;
        if S::FOLDS_OUTPUTS {
            self.group.folded.push((id, output));
        }
        self.group.note(id, bytes);
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

    fn commit_if_due(&mut self) -> Result<Submission> {
        let policy = &self.options.commit_policy;
        let due = policy.group_due(
            self.group.len(),
            policy.max_group_records,
            self.group.bytes,
            self.group.since,
        );
        if !due {
            return Ok(Submission::Queued);
        }
        let durable = self.wants_durable();
        match self.commit_pending(durable)? {
            Some(receipt) => Ok(Submission::Committed(receipt)),
            None => Ok(Submission::Queued),
        }
    }

    /// Lets knocking readers in while no commit is due (a runner's idle committer).
    pub(crate) fn answer_readers(&self) {
        self.store.answer_readers();
    }

    /// Whether the policy's durability asks for the next commit to be fsynced.
    pub(crate) fn wants_durable(&self) -> bool {
        match self.options.commit_policy.durability {
            Durability::Immediate => true,
            Durability::Deferred { max_interval } => self.last_durable_at.elapsed() >= max_interval,
        }
    }

    /// Commits the current group (if any) durably, and makes every earlier commit durable.
    /// Returns the receipt of the group commit, if there was a group.
    ///
    /// # Errors
    /// Storage errors (the handle is then poisoned); [`Error::Panicked`] if the fold
    /// panics.
    pub fn flush(&mut self) -> Result<Option<CommitReceipt>> {
        self.store.check_usable()?;
        if !self.group.is_empty() {
            return self.commit_pending(true);
        }
        if self.durable_seq < self.last_seq() {
            self.store.sync()?;
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
        self.store.check_usable()?;
        let durable = self.wants_durable();
        if !self.group.is_empty() {
            self.commit_pending(durable)?;
        }
        for (id, output) in records {
            self.queue_output(id, output)?;
        }
        self.commit_pending(durable)
    }

    pub(super) fn mark_durable(&mut self) {
        self.durable_seq = self.last_seq();
        self.last_durable_at = Instant::now();
        self.non_durable = RangeSet::new();
        self.stats.durable_commits += 1;
    }

    /// Commits the pending group in one transaction.
    fn commit_pending(&mut self, durable: bool) -> Result<Option<CommitReceipt>> {
        if self.group.is_empty() {
            if durable && self.durable_seq < self.last_seq() {
                self.flush()?;
            }
            return Ok(None);
        }
        let Chain {
            next_seq: seq,
            prev_hash,
        } = self.chain;
        let sealed = self
            .group
            .builder
            .seal(prev_hash, &self.options.code_version);
        let mut folded = std::mem::take(&mut self.group.folded);
        self.group.reset();
        let sealed = sealed?;
        folded.sort_unstable_by_key(|&(id, _)| id);

        // From here on the job runs ahead of the file until the write lands.
        let dart = self.store.arm();
        for &(s, e) in sealed.output_ranges() {
            self.done.extend(s..e);
        }
        self.done.extend(sealed.dead_ids().iter().copied());
        let outputs = folded.iter().map(|(id, output)| (*id, output));
        if let Err(e) = self
            .folder
            .apply_all(&mut self.state, outputs, "Fold::apply")
        {
            tracing::error!(job = %self.name(), seq, "the fold panicked; nothing committed");
            return Err(e);
        }
        let state = if !self.snapshots_handed_off
            && fold::snapshot_due::<S>(&self.options, self.commits_since_snapshot)
        {
            Some(fold::encode_state(&self.state)?)
        } else {
            None
        };
        let lifecycle = (self.lifecycle() != JobState::Running).then_some(JobState::Running);
        let output_ranges: Vec<Range<u64>> =
            sealed.output_ranges().iter().map(|&(s, e)| s..e).collect();
        let dead_ids = sealed.dead_ids().to_vec();
        let outputs_committed = sealed.output_count();
        let landed = self.store.commit(sealed, state, lifecycle, durable)?;
        let hash = landed.hash;
        dart.disarm();
        self.group.builder.recycle(landed.buffer);

        // The commit landed: advance the bookkeeping.
        self.chain = Chain {
            next_seq: seq + 1,
            prev_hash: hash,
        };
        if let Some(written) = &landed.snapshot {
            self.commits_since_snapshot = 0;
            self.stats.snapshots += 1;
            tracing::debug!(job = %self.name(), seq, generation = written.generation, retired = written.retired.len(), "snapshot written");
        } else {
            self.commits_since_snapshot += 1;
        }
        self.stats.commits += 1;
        self.stats.records_committed += outputs_committed;
        self.stats.dead_lettered += dead_ids.len() as u64;
        self.stats.bytes_written += landed.bytes_written;
        if durable {
            self.mark_durable();
        } else {
            for r in &output_ranges {
                self.non_durable.extend(r.clone());
            }
            self.non_durable.extend(dead_ids.iter().copied());
        }
        tracing::trace!(job = %self.name(), seq, records = outputs_committed + dead_ids.len() as u64, durable, "commit");
        Ok(Some(CommitReceipt {
            seq,
            outputs: output_ranges,
            dead_letters: dead_ids,
            durable,
        }))
    }

    /// Writes a snapshot of the current state now (after committing any pending group).
    /// Returns its generation.
    ///
    /// # Errors
    /// Storage errors (the handle is then poisoned).
    pub fn snapshot(&mut self) -> Result<u64> {
        self.store.check_usable()?;
        self.flush()?;
        let state = fold::encode_state(&self.state)?;
        let written = self.store.write_snapshot(self.last_seq(), state)?;
        self.commits_since_snapshot = 0;
        self.stats.snapshots += 1;
        Ok(written.generation)
    }

    // The committer's side of the job (crate-internal): queue without the policy's
    // automatic commit, and commit a mixed group on the committer's schedule.

    /// Queues an output without committing; `false` if the id is already done or queued.
    pub(crate) fn enqueue_output(&mut self, id: u64, output: S::Output) -> Result<bool> {
        self.store.check_usable()?;
        self.queue_output(id, output)
    }

    /// Queues a dead letter without committing; `false` if the id is already done or queued.
    pub(crate) fn enqueue_dead_letter(
        &mut self,
        id: u64,
        attempts: u32,
        error: &str,
    ) -> Result<bool> {
        self.store.check_usable()?;
        if !self.admit(id)? {
            return Ok(false);
        }
        let record = DeadLetterRecord {
            attempts,
            error: error.to_owned(),
            time_ms: now_ms(),
        };
        self.group
            .builder
            .dead_letter(self.chain.next_seq, id, &record)?;
        self.group.note(id, error.len());
        Ok(true)
    }

    /// Commits whatever is queued as one group (with `durable`, also makes every earlier
    /// commit durable when nothing is queued).
    pub(crate) fn commit_queued(&mut self, durable: bool) -> Result<Option<CommitReceipt>> {
        self.store.check_usable()?;
        self.commit_pending(durable)
    }

    /// Encoded bytes queued in the current group.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.group.bytes
    }

    /// The state encoded for a snapshot, with the commit it reflects.
    pub(crate) fn encoded_state(&self) -> Result<(u64, Vec<u8>)> {
        Ok((self.last_seq(), fold::encode_state(&self.state)?))
    }

    /// The last commit whose durable acknowledgement the runner delivered, as recorded.
    pub(crate) fn announced_seq(&self) -> Option<u64> {
        self.store.announced()
    }

    /// Records that the runner delivered acknowledgements up to commit `seq`.
    pub(crate) fn record_announced(&mut self, seq: u64) {
        self.store.set_announced(seq);
    }

    /// Visits the lineage of the commits after `after`: `(seq, output ranges, dead ids)`.
    pub(crate) fn commits_after(
        &self,
        after: u64,
        f: impl FnMut(u64, &[(u64, u64)], &[u64]) -> Result<()>,
    ) -> Result<()> {
        self.store.entries_after(after, f)
    }

    /// Hands snapshotting to a background writer keeping `keep` unpinned snapshots: the
    /// commit path writes none until [`Job::take_back_snapshots`]. The writer shares the
    /// job's retention book, so what it writes and retires is what this handle sees.
    pub(crate) fn hand_off_snapshots(&mut self, keep: usize) -> SnapshotWriter {
        self.store.set_keep_snapshots(keep);
        self.snapshots_handed_off = true;
        self.store.snapshot_writer()
    }

    /// Takes snapshotting back from the background writer.
    pub(crate) fn take_back_snapshots(&mut self) {
        self.store.set_keep_snapshots(self.options.keep_snapshots);
        self.snapshots_handed_off = false;
        self.commits_since_snapshot = 0;
    }
}
