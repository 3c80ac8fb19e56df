//! Live counters of a run, readable at any time from a [`StatsHandle`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A consistent snapshot of a run's counters (see [`StatsHandle::stats`]).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Records whose outputs were committed in this run.
    pub records_committed: u64,
    /// Records dead-lettered in this run.
    pub dead_lettered: u64,
    /// Records whose settlement is durable and was acknowledged.
    pub records_acked: u64,
    /// Group commits made.
    pub commits: u64,
    /// Commits that were fsynced.
    pub fsyncs: u64,
    /// Mean records per commit.
    pub mean_group: f64,
    /// The group size the committer aims at now (the adaptive policy's choice, or the
    /// fixed policy's record limit).
    pub target_group: usize,
    /// The commit cost share the adaptive policy measured at the current group size
    /// (commit time over processing time); `None` without the adaptive policy.
    pub commit_share: Option<f64>,
    /// Median commit latency, over the recent window.
    pub commit_latency_p50: Duration,
    /// 99th percentile commit latency, over the recent window.
    pub commit_latency_p99: Duration,
    /// Median time from a record's output being ready to its durable acknowledgement.
    pub ack_latency_p50: Duration,
    /// 90th percentile of the same.
    pub ack_latency_p90: Duration,
    /// 99th percentile of the same.
    pub ack_latency_p99: Duration,
    /// Sum of the same over every acknowledged record of this run (with
    /// `records_acked`, the mean; the pair a Prometheus summary needs).
    pub ack_latency_sum: Duration,
    /// When a commit last became durable, ms since the Unix epoch (`None` before the
    /// first durable commit of this run).
    pub last_durable_ms: Option<u64>,
    /// Value bytes handed to the store by commits.
    pub bytes_written: u64,
    /// Records done in memory or committed, but not durable yet.
    pub records_at_risk: u64,
    /// Records done per second since the run started.
    pub rate: f64,
    /// Time left at `rate`, when the job's total is known.
    pub eta: Option<Duration>,
    /// Records the job has done in all runs.
    pub records_done: u64,
    /// The job's declared total, if any.
    pub total_records: Option<u64>,
    /// Records read from the source and skipped because they were done.
    pub skipped: u64,
    /// Times the source was asked to seek past done records.
    pub seeks: u64,
    /// Retries scheduled.
    pub retries: u64,
    /// Panics caught in the processor.
    pub panics: u64,
    /// Snapshots the maintainer wrote.
    pub snapshots: u64,
    /// Snapshots the maintainer retired.
    pub snapshots_retired: u64,
    /// Compactions the maintainer ran.
    pub compactions: u64,
    /// File size before and after the last compaction, in bytes.
    pub last_compaction: Option<(u64, u64)>,
    /// Full passes the maintainer's background scrub finished (docs/SCRUB.md).
    pub scrub_passes: u64,
    /// Stored bytes the scrub re-read and checked.
    pub scrub_bytes: u64,
    /// Stored values the scrub found damaged, each counted (and logged with
    /// `tracing::error!`) once, however many passes find it again.
    pub scrub_damaged: u64,
    /// Time since the run started.
    pub elapsed: Duration,
}

/// Reads a run's [`Stats`] from any thread, during or after the run. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct StatsHandle {
    pub(crate) inner: Arc<Mutex<Recorder>>,
}

impl StatsHandle {
    /// The counters now.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.inner.lock().snapshot()
    }
}

/// The most recent latencies kept for percentiles.
const WINDOW: usize = 4096;

/// A bounded window of recent durations.
#[derive(Debug, Default, Clone)]
pub(crate) struct LatencyWindow(VecDeque<Duration>);

impl LatencyWindow {
    pub(crate) fn push(&mut self, d: Duration) {
        if self.0.len() == WINDOW {
            self.0.pop_front();
        }
        self.0.push_back(d);
    }

    /// The `q` quantile (nearest rank), zero when empty.
    #[expect(clippy::cast_sign_loss, reason = "q is a share in [0, 1]")]
    pub(crate) fn quantile(&self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let mut v: Vec<Duration> = self.0.iter().copied().collect();
        v.sort_unstable();
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    }
}

/// What the committer records; [`StatsHandle::stats`] turns it into [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    pub started: Option<Instant>,
    pub stats: Stats,
    pub commit_latency: LatencyWindow,
    pub ack_latency: LatencyWindow,
    pub settled: u64,
}

impl Recorder {
    fn snapshot(&self) -> Stats {
        let mut s = self.stats.clone();
        s.elapsed = self.started.map_or(Duration::ZERO, |t| t.elapsed());
        s.commit_latency_p50 = self.commit_latency.quantile(0.50);
        s.commit_latency_p99 = self.commit_latency.quantile(0.99);
        s.ack_latency_p50 = self.ack_latency.quantile(0.50);
        s.ack_latency_p90 = self.ack_latency.quantile(0.90);
        s.ack_latency_p99 = self.ack_latency.quantile(0.99);
        s.mean_group = if s.commits == 0 {
            0.0
        } else {
            (s.records_committed + s.dead_lettered) as f64 / s.commits as f64
        };
        let secs = s.elapsed.as_secs_f64();
        s.rate = if secs > 0.0 {
            self.settled as f64 / secs
        } else {
            0.0
        };
        s.eta = s.total_records.and_then(|total| {
            let left = total.saturating_sub(s.records_done);
            if left == 0 {
                Some(Duration::ZERO)
            } else if s.rate > 0.0 {
                Some(Duration::from_secs_f64(left as f64 / s.rate))
            } else {
                None
            }
        });
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank_over_the_window() {
        let mut w = LatencyWindow::default();
        assert_eq!(w.quantile(0.5), Duration::ZERO);
        for ms in 1..=100 {
            w.push(Duration::from_millis(ms));
        }
        assert_eq!(w.quantile(0.5), Duration::from_millis(50));
        assert_eq!(w.quantile(0.99), Duration::from_millis(99));
        for _ in 0..WINDOW {
            w.push(Duration::from_millis(7));
        }
        assert_eq!(
            w.quantile(0.99),
            Duration::from_millis(7),
            "old values age out"
        );
    }

    #[test]
    fn eta_is_known_only_with_a_total_and_a_rate() {
        let rec = Recorder::default();
        assert_eq!(rec.snapshot().eta, None);
        let mut rec = Recorder {
            started: Some(Instant::now()),
            ..Recorder::default()
        };
        rec.stats.total_records = Some(10);
        rec.stats.records_done = 10;
        assert_eq!(rec.snapshot().eta, Some(Duration::ZERO));
    }
}
