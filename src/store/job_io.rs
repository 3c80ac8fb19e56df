//! One job's reads and writes: each write function is one redb transaction.

use std::ops::RangeBounds;

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::meta::JobMeta;
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

/// Everything one commit writes; applied in a single write transaction.
#[derive(Debug, Default)]
pub(crate) struct CommitPlan<'a> {
    /// Sealed output records, by id.
    pub outputs: &'a [(u64, Vec<u8>)],
    /// Sealed dead letters, by id.
    pub dead_letters: &'a [(u64, Vec<u8>)],
    /// Dead letters to delete (requeue).
    pub remove_dead: &'a [u64],
    pub ranges: Option<&'a RangeDiff>,
    /// `(seq, sealed lineage entry)`.
    pub log: Option<(u64, Vec<u8>)>,
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
    txn.open_table(tables.outputs()).map_err(storage)?;
    txn.open_table(tables.done()).map_err(storage)?;
    txn.open_table(tables.log()).map_err(storage)?;
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
    if !plan.outputs.is_empty() {
        let mut t = txn.open_table(tables.outputs()).map_err(storage)?;
        for (id, bytes) in plan.outputs {
            t.insert(id, bytes.as_slice()).map_err(storage)?;
        }
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
    if let Some(diff) = plan.ranges
        && (!diff.removed.is_empty() || !diff.written.is_empty())
    {
        let mut t = txn.open_table(tables.done()).map_err(storage)?;
        for start in &diff.removed {
            t.remove(start).map_err(storage)?;
        }
        for (start, end) in &diff.written {
            t.insert(start, end).map_err(storage)?;
        }
    }
    if let Some((seq, bytes)) = &plan.log {
        let mut t = txn.open_table(tables.log()).map_err(storage)?;
        t.insert(seq, bytes.as_slice()).map_err(storage)?;
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

/// Reads a job's done ranges, checking their shape.
pub(crate) fn load_ranges(txn: &ReadTransaction, tables: &JobTables) -> Result<RangeSet> {
    let Some(t) = open_table_ro(txn, tables.done())? else {
        return Ok(RangeSet::new());
    };
    let mut pairs = Vec::new();
    for item in t.iter().map_err(storage)? {
        let (s, e) = item.map_err(storage)?;
        pairs.push((s.value(), e.value()));
    }
    RangeSet::from_ranges(pairs).map_err(|e| Error::corrupt("done ranges", "disjoint ranges", e))
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
        Some((k, v)) => {
            let seq = k.value();
            decode_entry(seq, v.value()).map(Some)
        }
        None => Ok(None),
    }
}

pub(crate) fn decode_entry(seq: u64, bytes: &[u8]) -> Result<LineageEntry> {
    let what = format!("lineage entry {seq}");
    let entry: LineageEntry = codec::open_value(&what, bytes)?;
    if entry.seq != seq {
        return Err(Error::corrupt(
            what,
            format!("seq {seq}"),
            format!("seq {}", entry.seq),
        ));
    }
    Ok(entry)
}

/// Visits lineage entries with seq in `range`, in order; each raw result is passed on so the
/// caller decides whether a bad entry stops it.
pub(crate) fn for_each_log(
    txn: &ReadTransaction,
    tables: &JobTables,
    range: impl RangeBounds<u64>,
    mut f: impl FnMut(u64, Result<LineageEntry>) -> Result<bool>,
) -> Result<()> {
    let Some(t) = open_table_ro(txn, tables.log())? else {
        return Ok(());
    };
    for item in t.range(range).map_err(storage)? {
        let (k, v) = item.map_err(storage)?;
        let seq = k.value();
        if !f(seq, decode_entry(seq, v.value()))? {
            break;
        }
    }
    Ok(())
}

/// Reads the stored output bytes of one record.
pub(crate) fn with_output<T>(
    t: &redb::ReadOnlyTable<u64, &'static [u8]>,
    id: u64,
    f: impl FnOnce(Option<&[u8]>) -> Result<T>,
) -> Result<T> {
    let v = t.get(id).map_err(storage)?;
    f(v.as_ref().map(redb::AccessGuard::value))
}

/// Visits stored outputs with ids in `range`, in id order.
pub(crate) fn for_each_output(
    txn: &ReadTransaction,
    tables: &JobTables,
    range: impl RangeBounds<u64>,
    mut f: impl FnMut(u64, &[u8]) -> Result<bool>,
) -> Result<()> {
    let Some(t) = open_table_ro(txn, tables.outputs())? else {
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

pub(crate) fn outputs_table(
    txn: &ReadTransaction,
    tables: &JobTables,
) -> Result<Option<redb::ReadOnlyTable<u64, &'static [u8]>>> {
    open_table_ro(txn, tables.outputs())
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
