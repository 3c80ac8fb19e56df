//! A job's commits reduced to a fixed number of time buckets, and the gaps between its runs.
//!
//! The lineage has one entry per commit: 10^6 records in groups of 1,000 are 1,000 entries,
//! in groups of one they are 10^6. Charts need neither: the time from the first commit to the
//! last is cut into [`BUCKETS`] equal buckets and each bucket sums its commits, so the page
//! stays the same size and renders at once whatever the job's length. Gaps are computed from
//! the exact commit times before bucketing, so a stop or a crash is never averaged away.

/// Buckets per chart, at most.
pub(crate) const BUCKETS: usize = 200;

/// A gap counts as a stop (or a crash) when it is this many times the median time between
/// commits...
const GAP_FACTOR: u64 = 20;
/// ...and at least this long, so the jitter of a fast job is no gap.
const GAP_MIN_MS: u64 = 1_000;

/// Median commits per bucket at least, when the job is short enough to allow it.
const MIN_COMMITS_PER_BUCKET: u64 = 4;

/// One commit, as the report needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Commit {
    pub(crate) seq: u64,
    pub(crate) time_ms: u64,
    /// Outputs the commit stored.
    pub(crate) outputs: u64,
    /// Records the commit moved to the dead letters.
    pub(crate) dead_letters: u64,
}

impl Commit {
    /// Records the commit settled.
    pub(crate) fn records(&self) -> u64 {
        self.outputs + self.dead_letters
    }
}

/// The sums of the commits in one bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bucket {
    pub(crate) commits: u64,
    pub(crate) records: u64,
    pub(crate) dead_letters: u64,
    /// The largest commit in records.
    pub(crate) max_commit: u64,
    /// Records settled by the end of the bucket, counting every earlier bucket.
    pub(crate) done_after: u64,
}

/// A time between two commits long enough to be a stop or a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gap {
    /// The last commit before the gap.
    pub(crate) from_ms: u64,
    /// The first commit after it.
    pub(crate) to_ms: u64,
    /// The sequence number of the first commit after the gap.
    pub(crate) resumed_at_seq: u64,
}

/// The bucketed commits of a job.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Timeline {
    /// Time of the first commit.
    pub(crate) start_ms: u64,
    /// Time of the last commit, plus at least one bucket width.
    pub(crate) end_ms: u64,
    /// Width of each bucket, at least 1 ms.
    pub(crate) bucket_ms: u64,
    pub(crate) buckets: Vec<Bucket>,
    pub(crate) gaps: Vec<Gap>,
    /// The median time between consecutive commits, if there are two or more.
    pub(crate) median_interval_ms: Option<u64>,
}

impl Timeline {
    /// Buckets `commits` (in sequence order) into `buckets` buckets; `None` when there are
    /// no commits.
    pub(crate) fn new(commits: &[Commit], buckets: usize) -> Option<Self> {
        let first = commits.first()?;
        let buckets = buckets.max(1);
        // Commit times come from the wall clock and may step back (NTP); the bucket of a
        // commit is clamped, so such a commit lands at the edge instead of being lost.
        let start_ms = commits
            .iter()
            .map(|c| c.time_ms)
            .min()
            .unwrap_or(first.time_ms);
        let last_ms = commits.iter().map(|c| c.time_ms).max().unwrap_or(start_ms);
        let span = last_ms - start_ms + 1;
        let (gaps, median_interval_ms) = gaps(commits);
        // A bucket spans at least a few commits, so the rate reads as a rate and not as the
        // pulse of single commits; a short job gets fewer, wider buckets.
        let bucket_ms = span
            .div_ceil(buckets as u64)
            .max(
                median_interval_ms
                    .unwrap_or(0)
                    .saturating_mul(MIN_COMMITS_PER_BUCKET),
            )
            .max(1);
        let buckets =
            usize::try_from(span.div_ceil(bucket_ms)).map_or(buckets, |n| n.clamp(1, buckets));
        let mut out = vec![Bucket::default(); buckets];
        for c in commits {
            let i = (((c.time_ms - start_ms) / bucket_ms) as usize).min(buckets - 1);
            let b = &mut out[i];
            b.commits += 1;
            b.records += c.records();
            b.dead_letters += c.dead_letters;
            b.max_commit = b.max_commit.max(c.records());
        }
        let mut done = 0;
        for b in &mut out {
            done += b.records;
            b.done_after = done;
        }
        Some(Timeline {
            start_ms,
            end_ms: start_ms + bucket_ms * buckets as u64,
            bucket_ms,
            buckets: out,
            gaps,
            median_interval_ms,
        })
    }

    /// Records per second in bucket `b`.
    pub(crate) fn rate(&self, b: &Bucket) -> f64 {
        b.records as f64 * 1000.0 / self.bucket_ms as f64
    }
}

/// The gaps between consecutive commits longer than [`GAP_FACTOR`] times the median
/// interval and [`GAP_MIN_MS`]; and that median.
fn gaps(commits: &[Commit]) -> (Vec<Gap>, Option<u64>) {
    let mut intervals: Vec<u64> = commits
        .windows(2)
        .map(|w| w[1].time_ms.saturating_sub(w[0].time_ms))
        .collect();
    if intervals.is_empty() {
        return (Vec::new(), None);
    }
    intervals.sort_unstable();
    let median = intervals[intervals.len() / 2];
    let threshold = median.saturating_mul(GAP_FACTOR).max(GAP_MIN_MS);
    let gaps = commits
        .windows(2)
        .filter(|w| w[1].time_ms.saturating_sub(w[0].time_ms) > threshold)
        .map(|w| Gap {
            from_ms: w[0].time_ms,
            to_ms: w[1].time_ms,
            resumed_at_seq: w[1].seq,
        })
        .collect();
    (gaps, Some(median))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(seq: u64, time_ms: u64, outputs: u64, dead_letters: u64) -> Commit {
        Commit {
            seq,
            time_ms,
            outputs,
            dead_letters,
        }
    }

    #[test]
    fn no_commits_no_timeline() {
        assert_eq!(Timeline::new(&[], BUCKETS), None);
    }

    #[test]
    fn one_commit_fills_the_first_bucket() {
        let t = Timeline::new(&[commit(1, 5_000, 7, 1)], 10).unwrap();
        assert_eq!(t.bucket_ms, 1);
        assert_eq!(t.buckets.len(), 1);
        assert_eq!(t.buckets[0].records, 8);
        assert_eq!(t.buckets[0].dead_letters, 1);
        assert!(t.buckets.iter().all(|b| b.done_after == 8));
        assert!(t.gaps.is_empty());
        assert_eq!(t.median_interval_ms, None);
    }

    #[test]
    fn buckets_keep_every_record_and_cumulate_in_order() {
        // 10^5 commits of 10 records, one every 3 ms: summed into 200 buckets.
        let commits: Vec<Commit> = (0..100_000u64)
            .map(|i| commit(i + 1, 1_000_000 + i * 3, 9, u64::from(i % 10 == 0)))
            .collect();
        let t = Timeline::new(&commits, BUCKETS).unwrap();
        assert_eq!(t.buckets.len(), BUCKETS);
        let records: u64 = t.buckets.iter().map(|b| b.records).sum();
        assert_eq!(records, 100_000 * 9 + 10_000);
        assert_eq!(t.buckets.last().unwrap().done_after, records);
        assert!(
            t.buckets
                .windows(2)
                .all(|w| w[0].done_after <= w[1].done_after)
        );
        assert_eq!(t.buckets.iter().map(|b| b.commits).sum::<u64>(), 100_000);
        assert!(t.buckets.iter().all(|b| b.max_commit <= 10));
        // Even spacing: every bucket but the last holds the same number of commits (±1).
        let full = t.buckets[0].commits;
        assert!(
            t.buckets[..BUCKETS - 1]
                .iter()
                .all(|b| b.commits.abs_diff(full) <= 1)
        );
        assert!(t.end_ms > 1_000_000 + 99_999 * 3);
        // 9.1 records every 3 ms.
        assert!((t.rate(&t.buckets[0]) - 9.1 * 1000.0 / 3.0).abs() < 10.0);
    }

    #[test]
    fn a_long_pause_between_commits_is_a_gap_and_jitter_is_not() {
        let mut commits: Vec<Commit> = (0..100).map(|i| commit(i + 1, i * 10, 5, 0)).collect();
        // A crash: 60 s of nothing, then the run resumes.
        commits.extend((0..100).map(|i| commit(101 + i, 60_990 + i * 10 + (i % 3), 5, 0)));
        let t = Timeline::new(&commits, 50).unwrap();
        assert_eq!(t.buckets.len(), 50);
        assert_eq!(t.median_interval_ms, Some(10));
        assert_eq!(
            t.gaps,
            vec![Gap {
                from_ms: 990,
                to_ms: 60_990,
                resumed_at_seq: 101
            }]
        );
        // Most buckets in the middle are empty; the records are all there.
        assert_eq!(t.buckets.iter().map(|b| b.records).sum::<u64>(), 1000);
        assert!(t.buckets[10..40].iter().all(|b| b.records == 0));
    }

    #[test]
    fn a_short_job_gets_fewer_wider_buckets() {
        // 100 commits 10 ms apart: 200 buckets of 5 ms would hold one commit or none.
        let commits: Vec<Commit> = (0..100).map(|i| commit(i + 1, i * 10, 1, 0)).collect();
        let t = Timeline::new(&commits, BUCKETS).unwrap();
        assert_eq!(t.bucket_ms, 40);
        assert_eq!(t.buckets.len(), 25);
        assert_eq!(t.buckets.iter().map(|b| b.records).sum::<u64>(), 100);
    }

    #[test]
    fn a_clock_that_steps_back_loses_no_commit() {
        let commits = [
            commit(1, 10_000, 1, 0),
            commit(2, 9_000, 1, 0),
            commit(3, 12_000, 1, 0),
        ];
        let t = Timeline::new(&commits, 4).unwrap();
        assert_eq!(t.start_ms, 9_000);
        assert_eq!(t.buckets.iter().map(|b| b.records).sum::<u64>(), 3);
    }
}
