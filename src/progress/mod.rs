//! Progress as a set of done id ranges.
//!
//! Records may finish out of order (parallel workers), so progress is not one offset but a
//! set of half-open ranges `[start, end)`, merged on insert. The memory held and the cost of
//! an insert grow with the number of *ranges* (gaps), not with the number of ids done: a job
//! that has finished ids `0..10^9` in order holds one range.

use std::collections::BTreeMap;
use std::ops::Range;

/// A set of `u64` ids stored as disjoint, non-adjacent half-open ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet {
    /// start -> end (exclusive). Invariant: ranges are disjoint and never touch
    /// (`end < next.start`), so every set has exactly one representation.
    ranges: BTreeMap<u64, u64>,
    len: u64,
}

/// How the stored ranges change when a set is updated: what the store must delete and
/// write so that its copy equals the in-memory set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RangeDiff {
    /// Starts of ranges that no longer exist.
    pub removed: Vec<u64>,
    /// Ranges written (new, or an existing start with a new end).
    pub written: Vec<(u64, u64)>,
}

/// Accumulates the diffs of many single-id updates in O(log n) each: a later write of a
/// start cancels an earlier removal of it, and a later removal cancels an earlier write.
#[derive(Default)]
struct DiffBuilder {
    removed: std::collections::BTreeSet<u64>,
    written: BTreeMap<u64, u64>,
}

impl DiffBuilder {
    fn add(&mut self, diff: RangeDiff) {
        for start in diff.removed {
            self.written.remove(&start);
            self.removed.insert(start);
        }
        for (s, e) in diff.written {
            self.removed.remove(&s);
            self.written.insert(s, e);
        }
    }

    fn finish(self) -> RangeDiff {
        RangeDiff {
            removed: self.removed.into_iter().collect(),
            written: self.written.into_iter().collect(),
        }
    }
}

impl RangeSet {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a set from stored ranges, checking they are well formed.
    pub(crate) fn from_ranges(
        ranges: impl IntoIterator<Item = (u64, u64)>,
    ) -> Result<Self, String> {
        let mut set = RangeSet::new();
        let mut prev_end: Option<u64> = None;
        for (start, end) in ranges {
            if start >= end {
                return Err(format!("empty or inverted range {start}..{end}"));
            }
            if let Some(p) = prev_end
                && start <= p
            {
                return Err(format!(
                    "range {start}..{end} overlaps or touches the one ending at {p}"
                ));
            }
            prev_end = Some(end);
            set.ranges.insert(start, end);
            set.len += end - start;
        }
        Ok(set)
    }

    /// Whether `id` is in the set.
    #[must_use]
    pub fn contains(&self, id: u64) -> bool {
        self.ranges
            .range(..=id)
            .next_back()
            .is_some_and(|(_, &end)| id < end)
    }

    /// Number of ids in the set.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the set holds no id.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of disjoint ranges.
    #[must_use]
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    /// The first id not in the set: every id below it is done.
    #[must_use]
    pub fn watermark(&self) -> u64 {
        match self.ranges.first_key_value() {
            Some((&0, &end)) => end,
            _ => 0,
        }
    }

    /// The ranges in ascending order.
    pub fn ranges(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.ranges.iter().map(|(&s, &e)| s..e)
    }

    /// The gaps (ranges of ids not in the set) below `bound`, in ascending order.
    pub fn gaps(&self, bound: u64) -> impl Iterator<Item = Range<u64>> + '_ {
        let mut next = 0u64;
        let mut ranges = self.ranges.iter();
        let mut done = false;
        std::iter::from_fn(move || {
            while !done {
                if let Some((&s, &e)) = ranges.next() {
                    let gap = next..s.min(bound);
                    next = e;
                    if next >= bound {
                        done = true;
                    }
                    if gap.start < gap.end {
                        return Some(gap);
                    }
                } else {
                    done = true;
                    if next < bound {
                        return Some(next..bound);
                    }
                }
            }
            None
        })
    }

    /// Inserts one id. When it was new, returns the start of the range it merged away (the
    /// one beginning at `id + 1`), if any, and the range now holding it.
    fn add(&mut self, id: u64) -> Option<(Option<u64>, (u64, u64))> {
        if self.contains(id) {
            return None;
        }
        // u64::MAX cannot be represented as a half-open range end; callers reject it.
        let id_end = id.checked_add(1)?;
        let mut start = id;
        let mut end = id_end;
        // Merge with the range ending exactly at `id`.
        if let Some((&s, &e)) = self.ranges.range(..id).next_back()
            && e == id
        {
            start = s;
        }
        // Merge with the range starting exactly at `id + 1`.
        let merged = self.ranges.remove(&id_end).map(|e| {
            end = e;
            id_end
        });
        self.ranges.insert(start, end);
        self.len += 1;
        Some((merged, (start, end)))
    }

    /// Inserts one id; returns whether it was new, and the stored-range diff.
    pub(crate) fn insert(&mut self, id: u64) -> (bool, RangeDiff) {
        match self.add(id) {
            None => (false, RangeDiff::default()),
            Some((merged, written)) => (
                true,
                RangeDiff {
                    removed: merged.into_iter().collect(),
                    written: vec![written],
                },
            ),
        }
    }

    /// Inserts every id of `ids` (any order); returns the diff for the store.
    pub(crate) fn insert_all(&mut self, ids: impl IntoIterator<Item = u64>) -> RangeDiff {
        let mut total = DiffBuilder::default();
        for id in ids {
            let (_, diff) = self.insert(id);
            total.add(diff);
        }
        total.finish()
    }

    /// Inserts every id of `ids` (any order) when no store copy needs the diff: the commit
    /// path, whose stored ranges are written from the progress mark instead.
    pub(crate) fn extend(&mut self, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            self.add(id);
        }
    }

    /// Removes one id; returns whether it was present, and the stored-range diff.
    pub(crate) fn remove(&mut self, id: u64) -> (bool, RangeDiff) {
        let mut diff = RangeDiff::default();
        let Some((&s, &e)) = self.ranges.range(..=id).next_back() else {
            return (false, diff);
        };
        if id >= e {
            return (false, diff);
        }
        self.ranges.remove(&s);
        diff.removed.push(s);
        if s < id {
            self.ranges.insert(s, id);
            diff.removed.retain(|&r| r != s);
            diff.written.push((s, id));
        }
        if id + 1 < e {
            self.ranges.insert(id + 1, e);
            diff.written.push((id + 1, e));
        }
        self.len -= 1;
        (true, diff)
    }

    /// What a store holding `stored` must delete and write to hold `self`.
    pub(crate) fn diff_from(&self, stored: &RangeSet) -> RangeDiff {
        RangeDiff {
            removed: stored
                .ranges
                .keys()
                .filter(|s| !self.ranges.contains_key(s))
                .copied()
                .collect(),
            written: self
                .ranges
                .iter()
                .filter(|&(s, e)| stored.ranges.get(s) != Some(e))
                .map(|(&s, &e)| (s, e))
                .collect(),
        }
    }

    /// Removes every id of `ids`; returns the diff for the store.
    pub(crate) fn remove_all(&mut self, ids: impl IntoIterator<Item = u64>) -> RangeDiff {
        let mut total = DiffBuilder::default();
        for id in ids {
            let (_, diff) = self.remove(id);
            total.add(diff);
        }
        total.finish()
    }
}

/// Compacts sorted ids into ranges (used for lineage entries).
pub(crate) fn ids_to_ranges(sorted_ids: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &id in sorted_ids {
        match out.last_mut() {
            Some((_, end)) if *end == id => *end = id + 1,
            _ => out.push((id, id + 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn apply_diff(stored: &mut BTreeMap<u64, u64>, diff: &RangeDiff) {
        for s in &diff.removed {
            stored.remove(s);
        }
        for &(s, e) in &diff.written {
            stored.insert(s, e);
        }
    }

    #[test]
    fn out_of_order_inserts_merge_into_one_range() {
        let mut set = RangeSet::new();
        for id in [3, 1, 0, 2, 5, 4] {
            assert!(set.insert(id).0);
        }
        assert_eq!(set.ranges().collect::<Vec<_>>(), vec![0..6]);
        assert_eq!(set.watermark(), 6);
        assert!(!set.insert(4).0, "a done id is not new");
    }

    #[test]
    fn gaps_lists_missing_ids_below_bound() {
        let mut set = RangeSet::new();
        set.insert_all([1, 2, 5, 9]);
        assert_eq!(set.gaps(8).collect::<Vec<_>>(), vec![0..1, 3..5, 6..8]);
        assert_eq!(
            set.gaps(12).collect::<Vec<_>>(),
            vec![0..1, 3..5, 6..9, 10..12]
        );
        assert_eq!(set.gaps(0).count(), 0);
    }

    #[test]
    fn memory_does_not_grow_with_contiguous_ids() {
        let mut set = RangeSet::new();
        set.insert_all(0..100_000);
        assert_eq!(set.range_count(), 1);
        assert_eq!(set.len(), 100_000);
    }

    #[test]
    fn from_ranges_rejects_overlap() {
        assert!(RangeSet::from_ranges([(0, 5), (5, 7)]).is_err());
        assert!(RangeSet::from_ranges([(3, 3)]).is_err());
        assert!(RangeSet::from_ranges([(0, 5), (6, 7)]).is_ok());
    }

    proptest! {
        #[test]
        fn matches_btreeset_model_and_diffs_rebuild_storage(
            ops in proptest::collection::vec((any::<bool>(), 0u64..200), 0..300)
        ) {
            let mut set = RangeSet::new();
            let mut model = BTreeSet::new();
            let mut stored = BTreeMap::new();
            for (insert, id) in ops {
                let (changed, diff) = if insert { set.insert(id) } else { set.remove(id) };
                let model_changed = if insert { model.insert(id) } else { model.remove(&id) };
                prop_assert_eq!(changed, model_changed);
                apply_diff(&mut stored, &diff);
                prop_assert_eq!(&stored, &set.ranges);
            }
            prop_assert_eq!(set.len(), model.len() as u64);
            for id in 0..210 {
                prop_assert_eq!(set.contains(id), model.contains(&id));
            }
            let gap_ids: BTreeSet<u64> = set.gaps(210).flatten().collect();
            let model_gaps: BTreeSet<u64> = (0..210).filter(|i| !model.contains(i)).collect();
            prop_assert_eq!(gap_ids, model_gaps);
            let rebuilt = RangeSet::from_ranges(stored.clone()).map_err(TestCaseError::fail)?;
            prop_assert_eq!(rebuilt, set);
        }

        #[test]
        fn diff_from_rebuilds_storage(a in proptest::collection::vec(0u64..60, 0..60), b in proptest::collection::vec(0u64..60, 0..60)) {
            let mut old = RangeSet::new();
            old.insert_all(a);
            let mut new = RangeSet::new();
            new.insert_all(b);
            let mut stored: BTreeMap<u64, u64> = old.ranges.clone();
            apply_diff(&mut stored, &new.diff_from(&old));
            prop_assert_eq!(stored, new.ranges.clone());
        }

        #[test]
        fn batched_diff_equals_stepwise(ids in proptest::collection::vec(0u64..100, 0..100)) {
            let mut set = RangeSet::new();
            set.insert_all([10, 11, 50]);
            let mut stored: BTreeMap<u64, u64> = set.ranges.clone();
            let diff = set.insert_all(ids.iter().copied());
            apply_diff(&mut stored, &diff);
            prop_assert_eq!(stored, set.ranges.clone());
        }
    }
}
