//! One job's reads, each inside a caller's read transaction: progress (stored ranges plus
//! the tail), segments and lineage entries in order, snapshots, dead letters.

use std::ops::RangeBounds;

use redb::{ReadTransaction, ReadableTable, TableDefinition};

use super::errors::storage;
use super::records::{DeadLetterRecord, SnapshotRecord};
use super::segment::{self, Segment};
use super::tables::{self, JobTables};
use crate::codec;
use crate::error::{Error, Result};
use crate::lineage::EntryRecord;
use crate::progress::RangeSet;

/// An id run of the index: `(first id, end id exclusive, commit seq)`.
pub(crate) type Run = (u64, u64, u64);

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
    pub tail: Vec<EntryRecord>,
    /// Stored bytes of the tail's segments.
    pub tail_bytes: u64,
    /// The last lineage entry.
    pub last: Option<EntryRecord>,
}

impl Progress {
    /// The tail's output runs, for the id index.
    pub(crate) fn tail_runs(&self) -> Vec<Run> {
        runs_of(&self.tail)
    }
}

/// The output runs of lineage entries, for the id index.
pub(crate) fn runs_of(entries: &[EntryRecord]) -> Vec<Run> {
    entries.iter().flat_map(entry_runs).collect()
}

/// One lineage entry's output runs, for the id index.
pub(crate) fn entry_runs(entry: &EntryRecord) -> impl Iterator<Item = Run> + '_ {
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
    let mut order = SeqOrder::after(tables.job(), mark);
    for_each_segment_bytes(txn, tables, mark + 1.., |seq, bytes| {
        order.next(seq)?;
        let entry = segment::entry(seq, bytes)?;
        tail_bytes += bytes.len() as u64;
        done.extend(entry.done_ids());
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

/// The last commit whose durable acknowledgement was delivered, if recorded.
pub(crate) fn read_announced(txn: &ReadTransaction, tables: &JobTables) -> Result<Option<u64>> {
    let Some(t) = open_table_ro(txn, tables.cursor())? else {
        return Ok(None);
    };
    Ok(t.get(tables::ANNOUNCED_KEY)
        .map_err(storage)?
        .map(|v| v.value()))
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
pub(crate) fn last_log(txn: &ReadTransaction, tables: &JobTables) -> Result<Option<EntryRecord>> {
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
    mut f: impl FnMut(u64, Result<EntryRecord>) -> Result<bool>,
) -> Result<()> {
    for_each_segment_bytes(txn, tables, range, |seq, bytes| {
        f(seq, segment::entry(seq, bytes))
    })
}

/// Outputs removed by redo entries after commit `after`: `(redo seq, removed ids)` in
/// order (usually none). An output `(id, commit c)` is removed when a redo after `c`
/// lists `id` ([`Removed::contains`]).
pub(crate) fn redos_after(
    txn: &ReadTransaction,
    tables: &JobTables,
    after: u64,
) -> Result<Removed> {
    let mut redos = Vec::new();
    for_each_log(txn, tables, after + 1.., |seq, entry| {
        if let Some(redo) = entry?.redo {
            let mut removed = RangeSet::new();
            removed.extend(redo.output_ids());
            redos.push((seq, removed));
        }
        Ok(true)
    })?;
    Ok(Removed(redos))
}

/// See [`redos_after`].
#[derive(Debug, Default)]
pub(crate) struct Removed(Vec<(u64, RangeSet)>);

impl Removed {
    /// Whether the output of `id` stored by commit `seq` was removed by a later redo.
    pub(crate) fn contains(&self, seq: u64, id: u64) -> bool {
        self.0
            .iter()
            .any(|(at, removed)| *at > seq && removed.contains(id))
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

/// Counts a job's dead letters.
pub(crate) fn count_dead_letters(txn: &ReadTransaction, tables: &JobTables) -> Result<u64> {
    use redb::ReadableTableMetadata;
    match open_table_ro(txn, tables.dead())? {
        Some(t) => t.len().map_err(storage),
        None => Ok(0),
    }
}

/// Test helper: flips the last payload byte of `id`'s stored output, in place.
#[cfg(test)]
pub(crate) fn flip_output_byte(txn: &redb::WriteTransaction, tables: &JobTables, id: u64) {
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

/// The one check that lineage entries come in order without a gap: every reader that walks
/// a job's commits (progress, replay, rewind) feeds each seq through it.
#[derive(Debug)]
pub(crate) struct SeqOrder<'a> {
    job: &'a str,
    expected: u64,
}

impl<'a> SeqOrder<'a> {
    /// Expects `after + 1` next.
    pub(crate) fn after(job: &'a str, after: u64) -> Self {
        SeqOrder {
            job,
            expected: after + 1,
        }
    }

    /// Accepts `seq` if it is the expected one.
    pub(crate) fn next(&mut self, seq: u64) -> Result<()> {
        if seq != self.expected {
            return Err(Error::corrupt(
                format!("lineage of job {:?}", self.job),
                format!("entry {}", self.expected),
                format!("entry {seq}"),
            ));
        }
        self.expected += 1;
        Ok(())
    }

    /// The last seq accepted (the `after` given when nothing was).
    pub(crate) fn last(&self) -> u64 {
        self.expected - 1
    }
}

impl super::open::Store {
    /// The rows of job `job`'s `types` table; `None` when the job has no such table (it was
    /// created before type descriptions were recorded).
    pub(crate) fn read_job_types(&self, job: &str) -> Result<Option<crate::typed::TypeRows>> {
        let txn = self.inner.begin_read()?;
        super::meta::require(&txn, job)?;
        let Some(t) = open_table_ro(&txn, JobTables::new(job).types())? else {
            return Ok(None);
        };
        let mut rows = Vec::new();
        for item in t.iter().map_err(storage)? {
            let (k, v) = item.map_err(storage)?;
            rows.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(Some(rows))
    }
}
