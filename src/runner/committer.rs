//! The committer: the one thread that owns the job (redb's single writer). It gathers the
//! workers' outcomes into groups, commits each group in one transaction, and acknowledges
//! records only once the commit holding them is durable.
//!
//! This is classic group commit: while one commit (and its fsync) runs, outcomes queue in
//! the channel; the next group takes them all (up to the size limit), so with
//! [`Durability::Immediate`](crate::Durability::Immediate) many records share one fsync.
//! A group is committed when it reaches the target size (the fixed policy's
//! `max_group_records`, or the adaptive policy's current choice), `max_group_bytes`, or
//! when its oldest record has waited `max_group_delay`; under a self-clocking policy also as
//! soon as the inbox is drained, so the group is whatever queued during the last commit.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use parking_lot::Mutex;

use super::adaptive::{AdaptivePolicy, GroupSizer};
use super::feeder::Outcome;
use super::stats::Recorder;
use super::{DurableAck, StopHandle};
use crate::error::{Error, Result};
use crate::job::{Clocking, CommitReceipt, Durability, Fold, Job};
use crate::maintain::Maintainer;

/// Everything the committer needs besides the job and its inbox.
pub(crate) struct CommitterCtx<'a> {
    pub maintainer: Option<&'a Maintainer>,
    /// Offer a snapshot after this many commits (0: only on the interval).
    pub snapshot_every: u64,
    pub snapshot_interval: Duration,
    pub adaptive: Option<AdaptivePolicy>,
    pub workers: usize,
    pub on_durable: Option<&'a mut (dyn FnMut(&DurableAck) + Send)>,
    pub recorder: &'a Mutex<Recorder>,
    pub abort: &'a AtomicBool,
    pub stop: &'a StopHandle,
    /// Whether the workers are waiting for input (no task is queued for them).
    pub workers_idle: &'a (dyn Fn() -> bool + Sync),
}

/// Committed but not yet durable: acknowledged at the next durable commit.
struct Unacked {
    receipt: CommitReceipt,
    ready: Vec<Instant>,
}

struct Committer<'a, 'j, S: Fold> {
    job: &'j mut Job<S>,
    ctx: CommitterCtx<'a>,
    sizer: Option<GroupSizer>,
    /// When each queued record's output was ready.
    ready: Vec<Instant>,
    first_queued: Option<Instant>,
    busy_records: u64,
    busy: Duration,
    unacked: Vec<Unacked>,
    /// Commits since the last snapshot offered; under a self-clocking policy, whose commits
    /// shrink to one record at light load, whole groups of `max_group_records` records, so
    /// snapshots come as often as under the fixed policy rather than every few records.
    commits_since_snapshot: u64,
    /// Records committed since the last snapshot offered (the self-clocking count).
    records_since_snapshot: u64,
    last_snapshot: Instant,
    bytes_base: u64,
}

/// Runs until every worker has hung up, then commits what is left durably.
///
/// On a storage error the committer stops the feeder, keeps draining its inbox (so no
/// worker blocks), and returns the error; the job handle is poisoned by then.
pub(crate) fn run<S: Fold>(
    job: &mut Job<S>,
    inbox: &Receiver<Vec<Outcome<S::Output>>>,
    ctx: CommitterCtx<'_>,
) -> Result<()> {
    let sizer = ctx
        .adaptive
        .clone()
        .map(|policy| GroupSizer::new(policy, ctx.workers));
    let bytes_base = job.stats().bytes_written;
    let mut c = Committer {
        job,
        ctx,
        sizer,
        ready: Vec::new(),
        first_queued: None,
        busy_records: 0,
        busy: Duration::ZERO,
        unacked: Vec::new(),
        commits_since_snapshot: 0,
        records_since_snapshot: 0,
        last_snapshot: Instant::now(),
        bytes_base,
    };
    // A panic here can only come from the user's `on_durable` callback (`Fold::apply`
    // panics are caught by the job); it must still stop the feeder, or the run would read
    // the whole source with nobody committing.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.run(inbox)))
        .unwrap_or_else(|p| Err(Error::from_panic("the on_durable callback", p.as_ref())));
    if result.is_err() {
        c.ctx.abort.store(true, Ordering::SeqCst);
        c.ctx.stop.wake();
        // Keep the workers unblocked until they hang up.
        for _ in inbox {}
    }
    result
}

/// How often an idle committer wakes to answer readers' knocks.
const IDLE_WAKE: Duration = Duration::from_millis(100);

impl<S: Fold> Committer<'_, '_, S> {
    fn run(&mut self, inbox: &Receiver<Vec<Outcome<S::Output>>>) -> Result<()> {
        let policy = self.job.options().commit_policy.clone();
        let deferred = match policy.durability {
            Durability::Deferred { max_interval } => Some(max_interval),
            _ => None,
        };
        let mut backlog: VecDeque<Outcome<S::Output>> = VecDeque::new();
        loop {
            let target = self.target(policy.max_group_records);
            let mut wait = match self.first_queued {
                Some(t) => policy.max_group_delay.saturating_sub(t.elapsed()),
                // Idle: wake now and then to let knocking readers in (store/door.rs).
                None => IDLE_WAKE,
            };
            if let Some(interval) = deferred
                && !self.unacked.is_empty()
            {
                wait = wait.min(interval);
            }
            // Outcomes arrive in batches; what does not fit in this group waits in
            // `backlog` for the next one (which is then due at once).
            if backlog.is_empty() {
                match inbox.recv_timeout(wait) {
                    Ok(batch) => backlog.extend(batch),
                    Err(RecvTimeoutError::Timeout) => self.job.answer_readers(),
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            while self.job.pending() < target {
                if let Some(o) = backlog.pop_front() {
                    self.accept(o)?;
                } else if let Ok(batch) = inbox.try_recv() {
                    backlog.extend(batch);
                } else {
                    break;
                }
            }
            let pending = self.job.pending();
            // Self-clocking: everything ready is in (the inbox is drained), so commit now
            // rather than wait; what arrives during this commit makes the next group.
            let clocks = match policy.clocking {
                Clocking::Limits => false,
                Clocking::Always => true,
                Clocking::WhenIdle => (self.ctx.workers_idle)(),
            };
            let due =
                policy.group_due(pending, target, self.job.pending_bytes(), self.first_queued)
                    || (clocks && pending > 0 && backlog.is_empty());
            if due {
                let durable = self.job.wants_durable();
                self.commit(durable)?;
            } else if pending == 0 && !self.unacked.is_empty() && self.job.wants_durable() {
                self.commit(true)?;
            }
        }
        if self.job.pending() > 0 || !self.unacked.is_empty() {
            self.commit(true)?;
        }
        Ok(())
    }

    fn target(&self, fixed: usize) -> usize {
        self.sizer.as_ref().map_or(fixed, GroupSizer::target)
    }

    /// Queues one outcome in the job's current group.
    fn accept(&mut self, outcome: Outcome<S::Output>) -> Result<()> {
        let (queued, ready) = match outcome {
            Outcome::Output {
                id,
                output,
                ready,
                busy,
            } => {
                self.busy_records += 1;
                self.busy += busy;
                match self.job.enqueue_output(id, output) {
                    Ok(q) => (q, ready),
                    // The output cannot be encoded: that record's permanent failure.
                    Err(Error::Record { id, source }) => {
                        let error = format!("cannot store the output: {source}");
                        tracing::warn!(job = %self.job.name(), id, %error, "record dead-lettered");
                        (self.job.enqueue_dead_letter(id, 1, &error)?, ready)
                    }
                    Err(e) => return Err(e),
                }
            }
            Outcome::Dead {
                id,
                attempts,
                error,
                ready,
                busy,
            } => {
                self.busy_records += 1;
                self.busy += busy;
                (self.job.enqueue_dead_letter(id, attempts, &error)?, ready)
            }
        };
        if queued {
            self.ready.push(ready);
            self.first_queued.get_or_insert_with(Instant::now);
        }
        Ok(())
    }

    /// Commits the queued group (or, with nothing queued and `durable`, makes earlier
    /// commits durable), then acknowledges whatever became durable.
    fn commit(&mut self, durable: bool) -> Result<()> {
        let records = self.job.pending();
        let started = Instant::now();
        let result = {
            let _gate = self.ctx.maintainer.map(|m| m.gate().lock());
            self.job.commit_queued(durable)
        };
        let latency = started.elapsed();
        let receipt = match result {
            Ok(r) => r,
            Err(e) => {
                if let Some(s) = &mut self.sizer {
                    s.observe_failure();
                }
                tracing::error!(job = %self.job.name(), error = %e, "group commit failed; stopping the run");
                return Err(e);
            }
        };
        let ready = std::mem::take(&mut self.ready);
        self.first_queued = None;
        if let Some(receipt) = receipt {
            tracing::debug!(job = %self.job.name(), seq = receipt.seq, records = receipt.records(), durable = receipt.durable, ?latency, "group committed");
            if let Some(s) = &mut self.sizer {
                s.observe_processing(self.busy_records, self.busy);
                s.observe_commit(records, latency);
            }
            self.busy_records = 0;
            self.busy = Duration::ZERO;
            {
                let mut rec = self.ctx.recorder.lock();
                rec.stats.records_committed +=
                    receipt.outputs.iter().map(|r| r.end - r.start).sum::<u64>();
                rec.stats.dead_lettered += receipt.dead_letters.len() as u64;
                rec.stats.commits += 1;
                rec.settled += receipt.records();
                rec.commit_latency.push(latency);
            }
            self.records_since_snapshot += receipt.records();
            self.unacked.push(Unacked { receipt, ready });
            let policy = &self.job.options().commit_policy;
            if policy.clocking == Clocking::Limits {
                self.commits_since_snapshot += 1;
            } else {
                let group = policy.max_group_records as u64;
                self.commits_since_snapshot = self.records_since_snapshot / group.max(1);
            }
        }
        if durable {
            self.acknowledge();
        }
        self.offer_snapshot();
        self.publish();
        Ok(())
    }

    /// Everything committed so far is durable: tell the user, one ack per commit in
    /// commit order, and record how far the announcements went.
    fn acknowledge(&mut self) {
        let now = Instant::now();
        let unacked = std::mem::take(&mut self.unacked);
        let mut last = None;
        {
            let mut rec = self.ctx.recorder.lock();
            rec.stats.fsyncs += 1;
            rec.stats.last_durable_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .and_then(|d| u64::try_from(d.as_millis()).ok());
            for u in &unacked {
                rec.stats.records_acked += u.ready.len() as u64;
                for t in &u.ready {
                    let latency = now.saturating_duration_since(*t);
                    rec.ack_latency.push(latency);
                    rec.stats.ack_latency_sum += latency;
                }
            }
        }
        let Some(f) = self.ctx.on_durable.as_mut() else {
            return;
        };
        for u in unacked {
            let receipt = u.receipt;
            last = Some(receipt.seq);
            if receipt.outputs.is_empty() && receipt.dead_letters.is_empty() {
                continue;
            }
            f(&DurableAck {
                seq: receipt.seq,
                outputs: receipt.outputs,
                dead_letters: receipt.dead_letters,
                replayed: false,
            });
        }
        if let Some(seq) = last {
            self.job.record_announced(seq);
        }
    }

    /// Hands the encoded state to the maintainer when a snapshot is due and it is free.
    fn offer_snapshot(&mut self) {
        let Some(m) = self.ctx.maintainer else {
            return;
        };
        if self.commits_since_snapshot == 0 && self.records_since_snapshot == 0 {
            return;
        }
        let every = self.ctx.snapshot_every;
        let due = (every > 0 && self.commits_since_snapshot >= every)
            || self.last_snapshot.elapsed() >= self.ctx.snapshot_interval;
        if !due || !m.ready() {
            return;
        }
        match self.job.encoded_state() {
            Ok((seq, bytes)) => {
                if m.offer_snapshot(seq, bytes) {
                    self.commits_since_snapshot = 0;
                    self.records_since_snapshot = 0;
                    self.last_snapshot = Instant::now();
                }
            }
            Err(e) => {
                tracing::warn!(job = %self.job.name(), error = %e, "cannot encode the state for a snapshot");
            }
        }
    }

    /// Copies the job's and the maintainer's figures into the shared stats.
    fn publish(&self) {
        let report = self.ctx.maintainer.map(Maintainer::report);
        let mut rec = self.ctx.recorder.lock();
        let s = &mut rec.stats;
        s.bytes_written = self.job.stats().bytes_written - self.bytes_base;
        s.records_at_risk = self.job.at_risk();
        s.records_done = self.job.done_count();
        s.total_records = self.job.total_records();
        s.target_group = self.target(self.job.options().commit_policy.max_group_records);
        s.commit_share = self.sizer.as_ref().and_then(GroupSizer::share);
        if let Some(r) = report {
            r.fill(s);
        }
    }
}
