//! When a group of submitted records is committed, and how durably.

use std::time::Duration;

/// How durable a commit is when it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Every commit is fsynced before it returns: it survives power loss.
    Immediate,
    /// Commits return without fsync; one in every `max_interval` (and every
    /// [`Job::flush`](crate::Job::flush)) is fsynced and makes all before it durable. A crash
    /// loses at most the commits since the last durable one, always as a suffix.
    Deferred {
        /// Longest time between durable commits while records keep arriving.
        max_interval: Duration,
    },
}

/// When submitted records are committed as a group.
///
/// A group is committed as soon as any limit is reached. The defaults (1,000 records,
/// 4 MiB, 50 ms, [`Durability::Immediate`]) come from the `commit_path` bench: on the
/// development VM, durable groups of 1 KiB outputs ran at 29k records/s with 100 per group,
/// 51k with 1,000 and 62k with 10,000, so 1,000 gets most of the gain while holding ten
/// times fewer records at risk; 50 ms bounds the wait of a record in a slow stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct CommitPolicy {
    pub(crate) max_group_records: usize,
    pub(crate) max_group_bytes: usize,
    pub(crate) max_group_delay: Duration,
    pub(crate) durability: Durability,
    pub(crate) clocking: Clocking,
}

/// When the runner's committer commits a group that has not reached a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Clocking {
    /// Only at a limit: the fixed policy.
    Limits,
    /// As soon as the committer has taken in everything ready.
    Always,
    /// As [`Clocking::Always`] while the workers wait for input (the job is lightly loaded),
    /// as [`Clocking::Limits`] while work queues for them.
    WhenIdle,
}

impl Default for CommitPolicy {
    fn default() -> Self {
        CommitPolicy {
            max_group_records: 1000,
            max_group_bytes: 4 << 20,
            max_group_delay: Duration::from_millis(50),
            durability: Durability::Immediate,
            clocking: Clocking::WhenIdle,
        }
    }
}

impl CommitPolicy {
    /// The default policy (see the type docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// One record per commit, each durable: the simplest and slowest policy.
    pub fn per_record() -> Self {
        Self::default().max_group_records(1)
    }

    /// Most records in one commit. Default: 1,000. Values below 1 are treated as 1.
    pub fn max_group_records(mut self, records: usize) -> Self {
        self.max_group_records = records.max(1);
        self
    }

    /// Most encoded output bytes in one commit. Default: 4 MiB.
    pub fn max_group_bytes(mut self, bytes: usize) -> Self {
        self.max_group_bytes = bytes.max(1);
        self
    }

    /// Longest a submitted record waits for its commit. Default: 50 ms. With the single
    /// threaded [`Job`](crate::Job) API the delay is checked on each submit; the runner
    /// also checks it on a timer.
    pub fn max_group_delay(mut self, delay: Duration) -> Self {
        self.max_group_delay = delay;
        self
    }

    /// Self-clocking group commit for the [`Runner`](crate::Runner): commit whatever is
    /// ready the moment the previous commit returns, without waiting for a group to fill
    /// or for `max_group_delay`. While a commit (and its fsync) runs, the next records
    /// queue, and the next group takes them all, so groups grow with the load by
    /// themselves: one record per commit when the job is lightly loaded (acknowledged
    /// within about one commit's latency), `max_group_records` when it is saturated. The
    /// record, byte and at-risk limits still apply.
    ///
    /// `true` self-clocks always; `false` is the fixed policy (a group waits for
    /// `max_group_records` or `max_group_delay`). The default self-clocks while the
    /// workers wait for input and falls back to the fixed policy while records queue for
    /// them: a light load is acknowledged within about one commit, and a CPU-bound job does
    /// not pay for many small commits (each costs CPU time in the kernel's I/O path that
    /// busy workers would otherwise have; see docs/BENCHMARKS.md). The single-threaded
    /// [`Job`](crate::Job) API has no concurrent commit to clock on and ignores it.
    pub fn self_clocking(mut self, on: bool) -> Self {
        self.clocking = if on {
            Clocking::Always
        } else {
            Clocking::Limits
        };
        self
    }

    /// Whether the policy self-clocks always (see [`CommitPolicy::self_clocking`]); `false`
    /// for the fixed policy and for the default, which self-clocks only while the workers
    /// wait for input.
    #[must_use]
    pub fn is_self_clocking(&self) -> bool {
        self.clocking == Clocking::Always
    }

    /// Durability of commits. Default: [`Durability::Immediate`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The record limit.
    #[must_use]
    pub fn group_records(&self) -> usize {
        self.max_group_records
    }

    /// The byte limit.
    #[must_use]
    pub fn group_bytes(&self) -> usize {
        self.max_group_bytes
    }

    /// The delay limit.
    #[must_use]
    pub fn group_delay(&self) -> Duration {
        self.max_group_delay
    }

    /// The durability.
    #[must_use]
    pub fn durability_mode(&self) -> Durability {
        self.durability
    }
}

impl CommitPolicy {
    /// Whether a group of `records` records (`bytes` encoded bytes, the oldest queued at
    /// `oldest`) is due for commit, with `target_records` standing in for
    /// `max_group_records` (the runner's adaptive policy sizes groups itself). The one
    /// rule, shared by `Job::submit` and the runner's committer.
    pub(crate) fn group_due(
        &self,
        records: usize,
        target_records: usize,
        bytes: usize,
        oldest: Option<std::time::Instant>,
    ) -> bool {
        records > 0
            && (records >= target_records
                || bytes >= self.max_group_bytes
                || oldest.is_some_and(|t| t.elapsed() >= self.max_group_delay))
    }
}
