//! When a job's done ranges and id index are written: the progress mark.
//!
//! A commit writes only its segment. The stored done ranges and id index reflect the
//! commits up to the *mark*; the commits after it (the tail) are rebuilt from their lineage
//! entries when the job is opened. The commit path moves the mark every
//! `progress_every_commits` commits or once the tail holds [`ProgressMark::MAX_TAIL_BYTES`],
//! which bounds what an open reads; lifecycle changes and repairs move it too.

use super::read::{Progress, Run};
use crate::progress::{RangeDiff, RangeSet};

/// What the stored done ranges and id index lag behind by.
#[derive(Debug, Default)]
pub(crate) struct ProgressMark {
    /// The done ranges as stored.
    materialized: RangeSet,
    /// The commit they reflect.
    mark: u64,
    /// Ids made done by commits after `mark`, as ranges.
    tail_ids: Vec<(u64, u64)>,
    /// Output runs of commits after `mark`, for the id index.
    tail_runs: Vec<Run>,
    tail_commits: u64,
    tail_bytes: u64,
}

impl ProgressMark {
    /// Bring the stored progress up to date once the tail reaches this many commits (by
    /// default; see `JobOptions::progress_every_commits`)...
    pub(crate) const DEFAULT_EVERY_COMMITS: u64 = 256;
    /// ...or this many stored bytes (which bounds what a resume reads to rebuild it).
    pub(crate) const MAX_TAIL_BYTES: u64 = 8 << 20;

    pub(crate) fn from_progress(p: &Progress) -> Self {
        let mut mark = ProgressMark {
            materialized: p.materialized.clone(),
            mark: p.mark,
            ..ProgressMark::default()
        };
        for e in &p.tail {
            mark.add(e.seq, &e.outputs, &e.dead_letters, 0);
        }
        mark.tail_bytes = p.tail_bytes;
        mark
    }

    /// Records commit `seq` in the tail.
    pub(crate) fn add(&mut self, seq: u64, outputs: &[(u64, u64)], dead: &[u64], bytes: u64) {
        self.tail_ids.extend_from_slice(outputs);
        self.tail_ids.extend(dead.iter().map(|&d| (d, d + 1)));
        self.tail_runs
            .extend(outputs.iter().map(|&(s, e)| (s, e, seq)));
        self.tail_commits += 1;
        self.tail_bytes += bytes;
    }

    /// Whether the tail is long enough to be written out.
    pub(crate) fn due(&self, every_commits: u64) -> bool {
        self.tail_commits >= every_commits || self.tail_bytes >= Self::MAX_TAIL_BYTES
    }

    /// Moves the tail into the stored progress as of commit `seq`: returns the done-range
    /// changes and the index runs to write with it.
    pub(crate) fn take(&mut self, seq: u64) -> (RangeDiff, Vec<Run>) {
        let ids = std::mem::take(&mut self.tail_ids);
        let diff = self
            .materialized
            .insert_all(ids.into_iter().flat_map(|(s, e)| s..e));
        self.mark = seq;
        self.tail_commits = 0;
        self.tail_bytes = 0;
        (diff, std::mem::take(&mut self.tail_runs))
    }

    /// The output runs of the commits after the mark.
    pub(crate) fn tail_runs(&self) -> &[Run] {
        &self.tail_runs
    }
}
