//! The adaptive commit policy: group sizes from measured commit latency and processing rate.
//!
//! A commit of `n` records costs `L(n)` of wall time; the workers produce `rate` records per
//! second. The checkpoint cost share of that group is `L(n) * rate / n`: the commit's time
//! over the time it took to process the records it settles. [`GroupSizer`] aims for the
//! *smallest* group whose share stays at the target (default 5%): smaller groups mean fewer
//! records at risk and faster durable acknowledgements, larger ones cheaper checkpoints.
//! Each commit moves the size toward `L * rate / target` (at most doubling or halving per
//! commit). With `L(n) = a + b*n` that iteration converges to the size where the share
//! equals the target whenever `b * rate < target`; otherwise no size reaches it and the
//! size sits at the records-at-risk limit. So the group grows when commits get dearer
//! relative to processing, and shrinks when processing gets dearer (commits become cheap).
//! A failed commit halves it and holds it there for a few commits; a commit much slower
//! than usual (a stalling disk) shrinks it by a quarter.

use std::time::Duration;

/// Settings of the adaptive commit policy (see [`Runner::adaptive`](crate::Runner::adaptive)).
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct AdaptivePolicy {
    pub(crate) target_share: f64,
    pub(crate) max_at_risk: usize,
    pub(crate) initial_group: usize,
}

impl Default for AdaptivePolicy {
    fn default() -> Self {
        AdaptivePolicy {
            target_share: 0.05,
            max_at_risk: 10_000,
            initial_group: 64,
        }
    }
}

impl AdaptivePolicy {
    /// Defaults: 5% target share, at most 10,000 records at risk, first group of 64.
    pub fn new() -> Self {
        Self::default()
    }

    /// The share of processing time commits may cost, in `(0, 1)`. Default: 0.05.
    pub fn target_share(mut self, share: f64) -> Self {
        self.target_share = if share.is_finite() {
            share.clamp(0.001, 0.9)
        } else {
            0.05
        };
        self
    }

    /// Most records in one group, hence most records not yet durable: a crash loses at most
    /// this many records of work. Default: 10,000; at least 1.
    pub fn max_at_risk(mut self, records: usize) -> Self {
        self.max_at_risk = records.max(1);
        self
    }

    /// Group size before any measurement. Default: 64.
    pub fn initial_group(mut self, records: usize) -> Self {
        self.initial_group = records.max(1);
        self
    }
}

/// Commits after a failure during which the group may not grow.
const HOLD_AFTER_FAILURE: u32 = 8;
/// A commit this many times slower than the running mean counts as a stall.
const SLOW_FACTOR: f64 = 4.0;
/// Weight of a new observation in the running means.
const ALPHA: f64 = 0.3;

/// The controller: a pure function of the observations it is fed, so it can be driven by a
/// synthetic clock in tests.
#[derive(Clone, Debug)]
pub(crate) struct GroupSizer {
    policy: AdaptivePolicy,
    workers: f64,
    /// Running mean of a commit's wall time, seconds.
    commit_secs: Option<f64>,
    /// Running mean of one record's processing time on one worker, seconds.
    record_secs: Option<f64>,
    size: f64,
    hold: u32,
}

impl GroupSizer {
    pub(crate) fn new(policy: AdaptivePolicy, workers: usize) -> Self {
        let size = policy.initial_group.min(policy.max_at_risk) as f64;
        GroupSizer {
            policy,
            workers: workers.max(1) as f64,
            commit_secs: None,
            record_secs: None,
            size,
            hold: 0,
        }
    }

    /// The group size to commit at now.
    #[expect(clippy::cast_sign_loss, reason = "the size is kept at 1 or more")]
    pub(crate) fn target(&self) -> usize {
        (self.size.round() as usize).clamp(1, self.policy.max_at_risk)
    }

    /// Workers spent `busy` in all processing `records` records.
    pub(crate) fn observe_processing(&mut self, records: u64, busy: Duration) {
        if records == 0 {
            return;
        }
        let per = busy.as_secs_f64() / records as f64;
        self.record_secs = Some(ewma(self.record_secs, per));
    }

    /// A commit of `records` records took `latency`.
    pub(crate) fn observe_commit(&mut self, records: usize, latency: Duration) {
        let secs = latency.as_secs_f64();
        let slow = self.commit_secs.is_some_and(|m| secs > SLOW_FACTOR * m);
        // A stall moves the mean by at most SLOW_FACTOR times it, so one outlier does not
        // set the size for the next hundred commits; a lasting change still gets through.
        let clipped = self.commit_secs.map_or(secs, |m| secs.min(SLOW_FACTOR * m));
        self.commit_secs = Some(ewma(self.commit_secs, clipped));
        self.hold = self.hold.saturating_sub(1);
        if slow {
            self.size = (self.size * 0.75).max(1.0);
            return;
        }
        let _ = records;
        if let Some(ideal) = self.ideal() {
            let mut next = ideal.clamp(self.size / 2.0, self.size * 2.0);
            if self.hold > 0 {
                next = next.min(self.size);
            }
            self.size = next.clamp(1.0, self.policy.max_at_risk as f64);
        }
    }

    /// A commit failed: halve the group and do not grow it for a while.
    pub(crate) fn observe_failure(&mut self) {
        self.size = (self.size / 2.0).max(1.0);
        self.hold = HOLD_AFTER_FAILURE;
    }

    /// Records per second the workers produce.
    pub(crate) fn rate(&self) -> Option<f64> {
        self.record_secs
            .filter(|&s| s > 0.0)
            .map(|s| self.workers / s)
    }

    /// The commit cost share at the current size, as measured.
    pub(crate) fn share(&self) -> Option<f64> {
        Some(self.commit_secs? * self.rate()? / self.size.max(1.0))
    }

    fn ideal(&self) -> Option<f64> {
        Some(self.commit_secs? * self.rate()? / self.policy.target_share)
    }
}

fn ewma(mean: Option<f64>, x: f64) -> f64 {
    mean.map_or(x, |m| m + ALPHA * (x - m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(micros: f64) -> Duration {
        Duration::from_secs_f64(micros / 1e6)
    }

    /// Runs `commits` commits of a synthetic job: each record costs `record_us` on one of
    /// `workers` workers; a commit of `n` records costs `fixed_us + per_record_us * n`.
    /// Returns the last size and the share the last commit really cost.
    fn drive(
        sizer: &mut GroupSizer,
        commits: usize,
        workers: f64,
        record_us: f64,
        fixed_us: f64,
        per_record_us: f64,
    ) -> (usize, f64) {
        let mut share = 0.0;
        for _ in 0..commits {
            let n = sizer.target();
            sizer.observe_processing(n as u64, us(record_us * n as f64));
            let commit_us = fixed_us + per_record_us * n as f64;
            sizer.observe_commit(n, us(commit_us));
            let processing_wall_us = record_us * n as f64 / workers;
            share = commit_us / processing_wall_us;
        }
        (sizer.target(), share)
    }

    #[test]
    fn group_grows_when_commits_get_dearer() {
        let mut s = GroupSizer::new(AdaptivePolicy::new(), 4);
        let (cheap, _) = drive(&mut s, 60, 4.0, 200.0, 500.0, 1.0);
        let (dear, _) = drive(&mut s, 60, 4.0, 200.0, 4000.0, 1.0);
        assert!(dear > cheap, "{cheap} -> {dear}");
    }

    #[test]
    fn group_shrinks_when_records_get_slower() {
        let mut s = GroupSizer::new(AdaptivePolicy::new(), 4);
        let (fast, _) = drive(&mut s, 60, 4.0, 100.0, 2000.0, 1.0);
        let (slow, _) = drive(&mut s, 60, 4.0, 1000.0, 2000.0, 1.0);
        assert!(slow < fast, "{fast} -> {slow}");
    }

    #[test]
    fn failure_halves_the_group_and_holds_it() {
        let mut s = GroupSizer::new(AdaptivePolicy::new(), 2);
        let (before, _) = drive(&mut s, 40, 2.0, 100.0, 2000.0, 1.0);
        s.observe_failure();
        assert!(
            s.target().abs_diff(before / 2) <= 1,
            "{before} -> {}",
            s.target()
        );
        let (held, _) = drive(&mut s, 3, 2.0, 100.0, 2000.0, 1.0);
        assert!(held <= before / 2 + 1, "no growth while held: {held}");
        let (recovered, _) = drive(&mut s, 40, 2.0, 100.0, 2000.0, 1.0);
        assert!(recovered > held, "grows back once commits are cheap again");
    }

    #[test]
    fn a_stalled_commit_shrinks_the_group() {
        let mut s = GroupSizer::new(AdaptivePolicy::new(), 2);
        let (before, _) = drive(&mut s, 40, 2.0, 100.0, 2000.0, 1.0);
        s.observe_commit(before, us(100_000.0));
        assert!(s.target() < before);
    }

    #[test]
    fn group_never_exceeds_the_records_at_risk_limit() {
        let mut s = GroupSizer::new(AdaptivePolicy::new().max_at_risk(500), 8);
        // Commits cost more per record than processing: no size reaches the target.
        let (n, share) = drive(&mut s, 100, 8.0, 10.0, 5000.0, 5.0);
        assert_eq!(n, 500);
        assert!(share > 0.05);
    }

    #[test]
    fn tracks_the_target_share_when_per_record_cost_changes_midway() {
        let target = 0.05;
        let mut s = GroupSizer::new(AdaptivePolicy::new().target_share(target), 4);
        // Phase 1: 200 µs records; phase 2: 2 ms records. Commits: 2 ms + 1 µs per record.
        let (n1, share1) = drive(&mut s, 80, 4.0, 200.0, 2000.0, 1.0);
        let (n2, share2) = drive(&mut s, 80, 4.0, 2000.0, 2000.0, 1.0);
        println!("phase 1: group {n1}, share {share1:.4}; phase 2: group {n2}, share {share2:.4}");
        assert!(n2 < n1, "slower records need smaller groups: {n1} -> {n2}");
        for share in [share1, share2] {
            assert!(
                (share - target).abs() < 0.2 * target,
                "share {share} should track {target}"
            );
        }
    }
}
