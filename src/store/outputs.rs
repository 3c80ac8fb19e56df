//! Outputs by id: the id index for commits up to the mark, the tail's runs after it.

use std::ops::Range;

use redb::ReadTransaction;

use super::errors::storage;
use super::read::{Run, open_table_ro};
use super::segment::{Record, Segment};
use super::tables::JobTables;
use crate::error::{Error, Result};

/// Finds stored outputs by id: the id index for commits up to the mark, the tail's runs for
/// the commits after it.
pub(crate) struct Outputs<'t> {
    log: Option<redb::ReadOnlyTable<u64, &'static [u8]>>,
    index: Option<redb::ReadOnlyTable<u64, (u64, u64)>>,
    tail: &'t [Run],
}

impl<'t> Outputs<'t> {
    /// Opens the lookup; `tail` is the runs of the commits after the index's mark.
    pub(crate) fn open(txn: &ReadTransaction, tables: &JobTables, tail: &'t [Run]) -> Result<Self> {
        Ok(Outputs {
            log: open_table_ro(txn, tables.log())?,
            index: open_table_ro(txn, tables.index())?,
            tail,
        })
    }

    /// The commit that stored the output of `id`, per the index and tail.
    fn locate(&self, id: u64) -> Result<Option<u64>> {
        if let Some(&(_, _, seq)) = self.tail.iter().find(|(s, e, _)| (*s..*e).contains(&id)) {
            return Ok(Some(seq));
        }
        let Some(index) = &self.index else {
            return Ok(None);
        };
        match index.range(..=id).map_err(storage)?.next_back() {
            Some(item) => {
                let (_, v) = item.map_err(storage)?;
                let (end, seq) = v.value();
                Ok((id < end).then_some(seq))
            }
            None => Ok(None),
        }
    }

    /// Runs overlapping `ids`, ascending by first id.
    fn runs(&self, ids: &Range<u64>) -> Result<Vec<Run>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut runs: Vec<Run> = self
            .tail
            .iter()
            .copied()
            .filter(|&(s, e, _)| s < ids.end && ids.start < e)
            .collect();
        if let Some(index) = &self.index {
            // The run holding ids.start may begin before it.
            let first = match index.range(..=ids.start).map_err(storage)?.next_back() {
                Some(item) => item.map_err(storage)?.0.value(),
                None => ids.start,
            };
            for item in index.range(first..ids.end).map_err(storage)? {
                let (k, v) = item.map_err(storage)?;
                let (end, seq) = v.value();
                if ids.start < end {
                    runs.push((k.value(), end, seq));
                }
            }
        }
        runs.sort_unstable();
        Ok(runs)
    }

    /// Calls `f` with the segment stored under `seq` (`None` if there is none).
    pub(crate) fn segment<T>(
        &self,
        seq: u64,
        f: impl FnOnce(Option<Segment<'_>>) -> Result<T>,
    ) -> Result<T> {
        let guard = match &self.log {
            Some(t) => t.get(seq).map_err(storage)?,
            None => None,
        };
        match &guard {
            Some(g) => f(Some(Segment::parse(seq, g.value())?)),
            None => f(None),
        }
    }

    /// Calls `f` with the checked record of `id` and its commit seq (`None` if not stored).
    pub(crate) fn get<T>(
        &self,
        id: u64,
        f: impl FnOnce(Option<(u64, Record<'_>)>) -> Result<T>,
    ) -> Result<T> {
        let Some(seq) = self.locate(id)? else {
            return f(None);
        };
        self.segment(seq, |segment| {
            let record = match segment {
                Some(s) => s.find(id)?,
                None => None,
            };
            match record {
                Some(r) => f(Some((seq, r))),
                None => Err(Error::corrupt(
                    format!("id index entry of record {id}"),
                    format!("commit {seq} to hold its output"),
                    "no such output there",
                )),
            }
        })
    }

    /// Visits the stored outputs with ids in `ids`, in id order, each checked. `f` returns
    /// `false` to stop.
    pub(crate) fn for_each(
        &self,
        ids: Range<u64>,
        mut f: impl FnMut(u64, Record<'_>) -> Result<bool>,
    ) -> Result<()> {
        let runs = self.runs(&ids)?;
        let mut i = 0;
        while i < runs.len() {
            let seq = runs[i].2;
            let mut j = i;
            while j < runs.len() && runs[j].2 == seq {
                j += 1;
            }
            let group = &runs[i..j];
            let go_on = self.segment(seq, |segment| {
                let Some(segment) = segment else {
                    return Err(Error::corrupt(
                        format!("id index entry of record {}", group[0].0),
                        format!("commit {seq} to exist"),
                        "no such commit",
                    ));
                };
                let mut seen = 0u64;
                let wanted: u64 = group
                    .iter()
                    .map(|&(s, e, _)| e.min(ids.end) - s.max(ids.start))
                    .sum();
                let mut k = 0;
                for record in segment.records() {
                    let record = record?;
                    let id = record.id;
                    while k < group.len() && group[k].1 <= id {
                        k += 1;
                    }
                    if k == group.len() {
                        break;
                    }
                    if id < group[k].0 || !ids.contains(&id) {
                        continue;
                    }
                    seen += 1;
                    if !f(seq, record)? {
                        return Ok(false);
                    }
                }
                if seen != wanted {
                    return Err(Error::corrupt(
                        format!("id index entries of commit {seq}"),
                        format!("{wanted} outputs there"),
                        format!("{seen}"),
                    ));
                }
                Ok(true)
            })?;
            if !go_on {
                return Ok(());
            }
            i = j;
        }
        Ok(())
    }
}
