//! One job's reads and writes: each write function is one redb transaction.

use std::ops::{Range, RangeBounds};

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::meta::JobMeta;
use super::segment::{self, Record, Segment};
use super::tables::{self, JobTables};
use super::{StoreInner, storage};
use crate::codec;
use crate::error::{Error, Result};
use crate::lineage::LineageEntry;
use crate::progress::{RangeDiff, RangeSet};

/// A snapshot as stored: the state's encoded bytes and the commit they reflect.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SnapshotRecord {
    pub seq: u64,
    pub time_ms: u64,
    pub state: Vec<u8>,
}

/// A dead letter as stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct DeadLetterRecord {
    pub attempts: u32,
    pub error: String,
    pub time_ms: u64,
}

/// An id run of the index: `(first id, end id exclusive, commit seq)`.
pub(crate) type Run = (u64, u64, u64);

/// Everything one commit writes; applied in a single write transaction.
#[derive(Debug, Default)]
pub(crate) struct CommitPlan<'a> {
    /// `(seq, segment)`: the commit's lineage entry and outputs (see `store::segment`).
    pub segment: Option<(u64, Vec<u8>)>,
    /// Sealed dead letters, by id.
    pub dead_letters: &'a [(u64, Vec<u8>)],
    /// Dead letters to delete (requeue).
    pub remove_dead: &'a [u64],
    /// Changes to the stored done ranges.
    pub ranges: Option<&'a RangeDiff>,
    /// Runs to add to the id index.
    pub index: &'a [Run],
    /// The commit the stored done ranges and index reflect from now on.
    pub mark: Option<u64>,
    /// `(generation, sealed snapshot)`.
    pub snapshot: Option<(u64, Vec<u8>)>,
    /// Snapshot generations to delete.
    pub retire: &'a [u64],
    pub meta: Option<&'a JobMeta>,
    pub durable: bool,
}

pub(crate) fn open_table_ro<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    def: TableDefinition<'_, K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>> {
    match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(storage(e)),
    }
}

fn meta_what(job: &str) -> String {
    format!("metadata of job {job:?}")
}

/// Reads and checks a job's metadata.
pub(crate) fn read_meta(txn: &ReadTransaction, job: &str) -> Result<Option<JobMeta>> {
    let Some(t) = open_table_ro(txn, tables::JOBS)? else {
        return Ok(None);
    };
    let Some(v) = t.get(job).map_err(storage)? else {
        return Ok(None);
    };
    codec::open_value(&meta_what(job), v.value()).map(Some)
}

/// Names of every job in the store.
pub(crate) fn job_names(txn: &ReadTransaction) -> Result<Vec<String>> {
    let Some(t) = open_table_ro(txn, tables::JOBS)? else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for item in t.iter().map_err(storage)? {
        let (k, _) = item.map_err(storage)?;
        names.push(k.value().to_owned());
    }
    Ok(names)
}

/// Creates a job's metadata and tables in one durable commit.
pub(crate) fn create_job(inner: &StoreInner, tables: &JobTables, meta: &JobMeta) -> Result<()> {
    let txn = inner.begin_write()?;
    write_meta(&txn, meta)?;
    txn.open_table(tables.done()).map_err(storage)?;
    txn.open_table(tables.log()).map_err(storage)?;
    txn.open_table(tables.index()).map_err(storage)?;
    txn.open_table(tables.snapshots()).map_err(storage)?;
    txn.open_table(tables.dead()).map_err(storage)?;
    txn.commit().map_err(storage)
}

fn write_meta(txn: &WriteTransaction, meta: &JobMeta) -> Result<()> {
    let bytes = codec::seal_value("job metadata", meta)?;
    let mut t = txn.open_table(tables::JOBS).map_err(storage)?;
    t.insert(meta.name.as_str(), bytes.as_slice())
        .map_err(storage)?;
    Ok(())
}

/// Applies a commit plan in one write transaction.
pub(crate) fn commit(inner: &StoreInner, tables: &JobTables, plan: &CommitPlan<'_>) -> Result<()> {
    let mut txn = inner.begin_write()?;
    if !plan.durable {
        txn.set_durability(redb::Durability::None)
            .map_err(|e| Error::Storage(Box::new(e)))?;
    }
    if let Some((seq, bytes)) = &plan.segment {
        let mut t = txn.open_table(tables.log()).map_err(storage)?;
        t.insert(seq, bytes.as_slice()).map_err(storage)?;
    }
    if !plan.dead_letters.is_empty() || !plan.remove_dead.is_empty() {
        let mut t = txn.open_table(tables.dead()).map_err(storage)?;
        for id in plan.remove_dead {
            t.remove(id).map_err(storage)?;
        }
        for (id, bytes) in plan.dead_letters {
            t.insert(id, bytes.as_slice()).map_err(storage)?;
        }
    }
    let ranges_change = plan
        .ranges
        .is_some_and(|d| !d.removed.is_empty() || !d.written.is_empty());
    if ranges_change || plan.mark.is_some() {
        let mut t = txn.open_table(tables.done()).map_err(storage)?;
        if let Some(diff) = plan.ranges {
            for start in &diff.removed {
                t.remove(start).map_err(storage)?;
            }
            for (start, end) in &diff.written {
                t.insert(start, end).map_err(storage)?;
            }
        }
        if let Some(mark) = plan.mark {
            t.insert(tables::MARK_KEY, mark).map_err(storage)?;
        }
    }
    if !plan.index.is_empty() {
        let mut t = txn.open_table(tables.index()).map_err(storage)?;
        for &(start, end, seq) in plan.index {
            t.insert(start, (end, seq)).map_err(storage)?;
        }
    }
    if plan.snapshot.is_some() || !plan.retire.is_empty() {
        let mut t = txn.open_table(tables.snapshots()).map_err(storage)?;
        for generation in plan.retire {
            t.remove(generation).map_err(storage)?;
        }
        if let Some((generation, bytes)) = &plan.snapshot {
            t.insert(generation, bytes.as_slice()).map_err(storage)?;
        }
    }
    if let Some(meta) = plan.meta {
        write_meta(&txn, meta)?;
    }
    txn.commit().map_err(storage)
}

/// A job's progress as stored: the done ranges and id index as of commit `mark`, plus the
/// commits after it (the tail), whose ids count as done too.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Done ranges as stored, reflecting commits `1..=mark`.
    pub materialized: RangeSet,
    pub mark: u64,
    /// Done ranges as of the last commit.
    pub done: RangeSet,
    /// Lineage entries after `mark`, in order.
    pub tail: Vec<LineageEntry>,
    /// Stored bytes of the tail's segments.
    pub tail_bytes: u64,
    /// The last lineage entry.
    pub last: Option<LineageEntry>,
}

impl Progress {
    /// The tail's output runs, for the id index.
    pub(crate) fn tail_runs(&self) -> Vec<Run> {
        runs_of(&self.tail)
    }
}

/// The output runs of lineage entries, for the id index.
pub(crate) fn runs_of(entries: &[LineageEntry]) -> Vec<Run> {
    entries.iter().flat_map(entry_runs).collect()
}

/// One lineage entry's output runs, for the id index.
pub(crate) fn entry_runs(entry: &LineageEntry) -> impl Iterator<Item = Run> + '_ {
    entry.outputs.iter().map(|&(s, e)| (s, e, entry.seq))
}

/// Reads a job's progress: stored done ranges (checking their shape), and the lineage
/// entries committed after them.
pub(crate) fn load_progress(txn: &ReadTransaction, tables: &JobTables) -> Result<Progress> {
    let mut pairs = Vec::new();
    let mut mark = 0;
    if let Some(t) = open_table_ro(txn, tables.done())? {
        for item in t.iter().map_err(storage)? {
            let (s, e) = item.map_err(storage)?;
            if s.value() == tables::MARK_KEY {
                mark = e.value();
            } else {
                pairs.push((s.value(), e.value()));
            }
        }
    }
    let materialized = RangeSet::from_ranges(pairs)
        .map_err(|e| Error::corrupt("done ranges", "disjoint ranges", e))?;
    let mut done = materialized.clone();
    let mut tail = Vec::new();
    let mut tail_bytes = 0u64;
    let mut expected = mark + 1;
    for_each_segment_bytes(txn, tables, mark + 1.., |seq, bytes| {
        if seq != expected {
            return Err(Error::corrupt(
                format!("lineage of job {:?}", tables.job()),
                format!("entry {expected}"),
                format!("entry {seq}"),
            ));
        }
        expected += 1;
        let entry = segment::entry(seq, bytes)?;
        tail_bytes += bytes.len() as u64;
        done.extend(entry.settled_ids());
        tail.push(entry);
        Ok(true)
    })?;
    let last = match tail.last() {
        Some(e) => Some(e.clone()),
        None => last_log(txn, tables)?,
    };
    if let Some(last) = &last
        && last.seq < mark
    {
        return Err(Error::corrupt(
            "done ranges",
            format!("to reflect at most commit {}", last.seq),
            format!("commit {mark}"),
        ));
    }
    Ok(Progress {
        materialized,
        mark,
        done,
        tail,
        tail_bytes,
        last,
    })
}

/// Reads a job's done ranges as of its last commit.
pub(crate) fn load_ranges(txn: &ReadTransaction, tables: &JobTables) -> Result<RangeSet> {
    load_progress(txn, tables).map(|p| p.done)
}

/// Snapshot generations, ascending.
pub(crate) fn snapshot_generations(txn: &ReadTransaction, tables: &JobTables) -> Result<Vec<u64>> {
    let Some(t) = open_table_ro(txn, tables.snapshots())? else {
        return Ok(Vec::new());
    };
    let mut gens = Vec::new();
    for item in t.iter().map_err(storage)? {
        let (g, _) = item.map_err(storage)?;
        gens.push(g.value());
    }
    Ok(gens)
}

/// Reads and checks one snapshot. `Ok(None)` when it does not exist.
pub(crate) fn read_snapshot(
    txn: &ReadTransaction,
    tables: &JobTables,
    generation: u64,
) -> Result<Option<(usize, Result<SnapshotRecord>)>> {
    let Some(t) = open_table_ro(txn, tables.snapshots())? else {
        return Ok(None);
    };
    let Some(v) = t.get(generation).map_err(storage)? else {
        return Ok(None);
    };
    let bytes = v.value();
    Ok(Some((
        bytes.len(),
        codec::open_value(&format!("snapshot generation {generation}"), bytes),
    )))
}

/// The newest lineage entry, checked.
pub(crate) fn last_log(txn: &ReadTransaction, tables: &JobTables) -> Result<Option<LineageEntry>> {
    let Some(t) = open_table_ro(txn, tables.log())? else {
        return Ok(None);
    };
    match t.last().map_err(storage)? {
        Some((k, v)) => segment::entry(k.value(), v.value()).map(Some),
        None => Ok(None),
    }
}

/// Visits the raw segments with seq in `range`, in order.
fn for_each_segment_bytes(
    txn: &ReadTransaction,
    tables: &JobTables,
    range: impl RangeBounds<u64>,
    mut f: impl FnMut(u64, &[u8]) -> Result<bool>,
) -> Result<()> {
    let Some(t) = open_table_ro(txn, tables.log())? else {
        return Ok(());
    };
    for item in t.range(range).map_err(storage)? {
        let (k, v) = item.map_err(storage)?;
        if !f(k.value(), v.value())? {
            break;
        }
    }
    Ok(())
}

/// Visits the segments with seq in `range`, in order; each parse result is passed on so the
/// caller decides whether a bad one stops it.
pub(crate) fn for_each_segment(
    txn: &ReadTransaction,
    tables: &JobTables,
    range: impl RangeBounds<u64>,
    mut f: impl FnMut(u64, Result<Segment<'_>>) -> Result<bool>,
) -> Result<()> {
    for_each_segment_bytes(txn, tables, range, |seq, bytes| {
        f(seq, Segment::parse(seq, bytes))
    })
}

/// Visits lineage entries with seq in `range`, in order; each raw result is passed on so the
/// caller decides whether a bad entry stops it.
pub(crate) fn for_each_log(
    txn: &ReadTransaction,
    tables: &JobTables,
    range: impl RangeBounds<u64>,
    mut f: impl FnMut(u64, Result<LineageEntry>) -> Result<bool>,
) -> Result<()> {
    for_each_segment_bytes(txn, tables, range, |seq, bytes| {
        f(seq, segment::entry(seq, bytes))
    })
}

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

/// Visits dead letters in id order.
pub(crate) fn for_each_dead_letter(
    txn: &ReadTransaction,
    tables: &JobTables,
    mut f: impl FnMut(u64, Result<DeadLetterRecord>) -> Result<()>,
) -> Result<()> {
    let Some(t) = open_table_ro(txn, tables.dead())? else {
        return Ok(());
    };
    for item in t.iter().map_err(storage)? {
        let (k, v) = item.map_err(storage)?;
        let id = k.value();
        f(
            id,
            codec::open_value(&format!("dead letter {id}"), v.value()),
        )?;
    }
    Ok(())
}

/// Counts a job table's rows.
pub(crate) fn count_dead_letters(txn: &ReadTransaction, tables: &JobTables) -> Result<u64> {
    use redb::ReadableTableMetadata;
    match open_table_ro(txn, tables.dead())? {
        Some(t) => t.len().map_err(storage),
        None => Ok(0),
    }
}

/// Test helper: flips the last payload byte of `id`'s stored output, in place.
#[cfg(test)]
pub(crate) fn flip_output_byte(txn: &WriteTransaction, tables: &JobTables, id: u64) {
    let mut t = txn.open_table(tables.log()).expect("log table");
    let mut found = None;
    for item in t.iter().expect("iter") {
        let (k, v) = item.expect("row");
        let bytes = v.value();
        let segment = Segment::parse(k.value(), bytes).expect("segment");
        if let Some(r) = segment.find(id).expect("find") {
            let offset = r.payload.as_ptr() as usize - bytes.as_ptr() as usize + r.payload.len();
            found = Some((k.value(), bytes.to_vec(), offset - 1));
            break;
        }
    }
    let (seq, mut bytes, offset) = found.expect("the output is stored");
    bytes[offset] ^= 1;
    t.insert(seq, bytes.as_slice()).expect("insert");
}
