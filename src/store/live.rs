//! The outputs a job's lineage leaves live: every commit's outputs, less those a later redo
//! entry removed. Verify, rewind/fork (what a cut keeps) and redo (what it may select) all
//! walk the lineage through this one tracker, so they agree on what a redo means.

use std::collections::{BTreeMap, HashMap};

use super::read::Run;
use crate::lineage::EntryRecord;
use crate::progress::RangeSet;

/// What one commit was: when, and by which code version (an index into `versions`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CommitInfo {
    pub time_ms: u64,
    /// Index into [`Live::versions`]; `None` for a format-2 entry (no version recorded).
    pub version: Option<usize>,
}

/// Live output runs, fed lineage entries in order.
#[derive(Debug, Default)]
pub(crate) struct Live {
    /// start -> (end exclusive, commit seq); disjoint.
    runs: BTreeMap<u64, (u64, u64)>,
    /// Code versions seen, in order of first use.
    pub versions: Vec<String>,
    version_index: HashMap<String, usize>,
    /// Per commit that stored outputs: its time and code version.
    pub commits: HashMap<u64, CommitInfo>,
    /// Seqs of the redo entries seen.
    pub redos: Vec<u64>,
}

/// What was wrong with an entry, in the tracker's terms.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Conflict {
    /// An output for an id that already has a live one.
    OutputTwice(u64),
    /// A redo removing outputs that were not live.
    RemovedNotLive(u64, u64),
}

impl Live {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds the next entry; returns what did not fit (the tracker keeps going).
    pub(crate) fn add(&mut self, entry: &EntryRecord) -> Vec<Conflict> {
        let mut conflicts = Vec::new();
        if let Some(redo) = &entry.redo {
            self.redos.push(entry.seq);
            for &(s, e) in &redo.outputs {
                let removed = self.remove(s, e);
                if removed != e.saturating_sub(s) {
                    conflicts.push(Conflict::RemovedNotLive(s, e));
                }
            }
        }
        if entry.outputs.is_empty() {
            return conflicts;
        }
        let version = entry.code_version.as_ref().map(|v| {
            if let Some(&i) = self.version_index.get(v) {
                i
            } else {
                self.versions.push(v.clone());
                self.version_index
                    .insert(v.clone(), self.versions.len() - 1);
                self.versions.len() - 1
            }
        });
        self.commits.insert(
            entry.seq,
            CommitInfo {
                time_ms: entry.time_ms,
                version,
            },
        );
        for &(s, e) in &entry.outputs {
            if let Some(id) = self.first_live_in(s, e) {
                conflicts.push(Conflict::OutputTwice(id));
                self.remove(s, e);
            }
            self.runs.insert(s, (e, entry.seq));
        }
        conflicts
    }

    /// The first live id in `s..e`, if any.
    fn first_live_in(&self, s: u64, e: u64) -> Option<u64> {
        if let Some((_, &(end, _))) = self.runs.range(..=s).next_back()
            && end > s
        {
            return Some(s);
        }
        self.runs.range(s..e).next().map(|(&start, _)| start)
    }

    /// Removes the live outputs in `s..e`, splitting runs; returns how many were live.
    pub(crate) fn remove(&mut self, s: u64, e: u64) -> u64 {
        let hit: Vec<(u64, u64, u64)> = self
            .runs
            .range(..e)
            .rev()
            .take_while(|&(_, &(end, _))| end > s)
            .map(|(&start, &(end, seq))| (start, end, seq))
            .collect();
        let mut removed = 0;
        for (start, end, seq) in hit {
            self.runs.remove(&start);
            if start < s {
                self.runs.insert(start, (s, seq));
            }
            if end > e {
                self.runs.insert(e, (end, seq));
            }
            removed += end.min(e) - start.max(s);
        }
        removed
    }

    /// The live runs, by first id: `(start, end, seq)`.
    pub(crate) fn runs(&self) -> impl Iterator<Item = Run> + '_ {
        self.runs.iter().map(|(&s, &(e, seq))| (s, e, seq))
    }

    /// The live runs keyed by first id.
    pub(crate) fn run_map(&self) -> &BTreeMap<u64, (u64, u64)> {
        &self.runs
    }

    /// The live output ids.
    pub(crate) fn outputs(&self) -> RangeSet {
        let mut set = RangeSet::new();
        for (s, e, _) in self.runs() {
            set.extend(s..e);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineage::{ChainHash, RedoRecord};

    fn entry(seq: u64, outputs: Vec<(u64, u64)>, redo: Option<Vec<(u64, u64)>>) -> EntryRecord {
        EntryRecord::new_v3(
            seq,
            seq,
            outputs,
            vec![],
            ChainHash::ZERO,
            ChainHash::ZERO,
            format!("v{}", seq % 2),
            redo.map(|outputs| RedoRecord {
                selection: String::new(),
                outputs,
                dead_letters: vec![],
            }),
        )
    }

    #[test]
    fn redo_splits_runs_and_frees_ids_for_a_new_output() {
        let mut live = Live::new();
        assert!(live.add(&entry(1, vec![(0, 10)], None)).is_empty());
        assert!(live.add(&entry(2, vec![(10, 20)], None)).is_empty());
        assert_eq!(
            live.add(&entry(3, vec![(5, 6)], None)),
            vec![Conflict::OutputTwice(5)]
        );
        let mut live = Live::new();
        live.add(&entry(1, vec![(0, 10)], None));
        live.add(&entry(2, vec![(10, 20)], None));
        assert!(live.add(&entry(3, vec![], Some(vec![(5, 12)]))).is_empty());
        assert_eq!(
            live.runs().collect::<Vec<_>>(),
            vec![(0, 5, 1), (12, 20, 2)]
        );
        assert_eq!(live.outputs().len(), 13);
        assert!(live.add(&entry(4, vec![(5, 12)], None)).is_empty());
        assert_eq!(live.outputs().len(), 20);
        assert_eq!(
            live.add(&entry(5, vec![], Some(vec![(30, 31)]))),
            vec![Conflict::RemovedNotLive(30, 31)]
        );
        assert_eq!(live.versions, vec!["v1".to_owned(), "v0".to_owned()]);
    }
}
