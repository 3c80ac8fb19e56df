//! One job's writes: everything a commit (or an operator's change) writes goes through a
//! [`CommitPlan`], applied in one redb write transaction, so it lands whole or not at all.

use redb::ReadableTable;

use super::errors::storage;
use super::meta::{self, JobMeta};
use super::open::StoreInner;
use super::read::Run;
use super::tables::{self, JobTables};
use crate::error::{Error, Result};
use crate::progress::RangeDiff;

/// Everything one commit writes; applied in a single write transaction.
#[derive(Debug, Default)]
pub(crate) struct CommitPlan<'a> {
    /// The commit's lineage entry and outputs (see `store::segment`), written last.
    pub segment: Option<SegmentWrite<'a>>,
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
    /// New metadata for the job.
    pub meta: Option<&'a JobMeta>,
    /// The last commit whose durable acknowledgement was delivered.
    pub announced: Option<u64>,
    /// Mark the store as this format (a format-2 store taking its first format-3 entry).
    pub format: Option<u32>,
    /// fsync before returning (redb's immediate durability) or not (redb's `None`, made
    /// durable by the next durable commit).
    pub durable: bool,
}

/// A commit's segment, written last in its transaction: its value is reserved and `bytes`
/// copied in (a placeholder entry included), then `entry` gives the sealed lineage entry
/// (whose outputs hash may have been computed meanwhile on the hasher thread), written over
/// the placeholder. An error from `entry` aborts the transaction.
pub(crate) struct SegmentWrite<'a> {
    pub seq: u64,
    pub bytes: &'a [u8],
    /// Seals the lineage entry, written over its placeholder in a reserved value; `None`:
    /// `bytes` already hold the sealed entry and are inserted as they are.
    pub entry: Option<&'a dyn Fn() -> Result<Vec<u8>>>,
}

impl std::fmt::Debug for SegmentWrite<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWrite")
            .field("seq", &self.seq)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// Creates a job's metadata and tables in one durable commit, with the rows of its
/// `types` table (none: no table, as for jobs whose opener describes no types).
pub(crate) fn create_job(
    inner: &StoreInner,
    tables: &JobTables,
    meta: &JobMeta,
    types: &[(&str, Vec<u8>)],
) -> Result<()> {
    let txn = inner.begin_write()?;
    meta::write(&txn, meta)?;
    if !types.is_empty() {
        let mut t = txn.open_table(tables.types()).map_err(storage)?;
        for (key, bytes) in types {
            t.insert(key, bytes.as_slice()).map_err(storage)?;
        }
    }
    txn.open_table(tables.done()).map_err(storage)?;
    txn.open_table(tables.log()).map_err(storage)?;
    txn.open_table(tables.index()).map_err(storage)?;
    txn.open_table(tables.snapshots()).map_err(storage)?;
    txn.open_table(tables.dead()).map_err(storage)?;
    txn.commit().map_err(storage)
}

/// Applies a commit plan in one write transaction.
pub(crate) fn commit(inner: &StoreInner, tables: &JobTables, plan: &CommitPlan<'_>) -> Result<()> {
    inner.answer_readers();
    let mut txn = inner.begin_write()?;
    // Live readers can only follow durable commits (redb refuses non-durable ones in that
    // mode): there, a commit that may stay volatile (a snapshot) is made durable instead.
    if !plan.durable && !inner.live_readers() {
        txn.set_durability(redb::Durability::None)
            .map_err(|e| Error::Storage(Box::new(e)))?;
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
        meta::write(&txn, meta)?;
    }
    if let Some(seq) = plan.announced {
        let mut t = txn.open_table(tables.cursor()).map_err(storage)?;
        t.insert(tables::ANNOUNCED_KEY, seq).map_err(storage)?;
    }
    if let Some(format) = plan.format {
        set_format(&txn, format)?;
    }
    if let Some(seg) = &plan.segment {
        let mut t = txn.open_table(tables.log()).map_err(storage)?;
        if let Some(seal_entry) = seg.entry {
            let mut value = t
                .insert_reserve(seg.seq, seg.bytes.len())
                .map_err(storage)?;
            value.as_mut().copy_from_slice(seg.bytes);
            let entry = seal_entry()?;
            let at = super::segment::LEN;
            value
                .as_mut()
                .get_mut(at..at + entry.len())
                .ok_or_else(|| {
                    Error::InvalidArgument("a lineage entry is longer than its segment".into())
                })?
                .copy_from_slice(&entry);
        } else {
            t.insert(seg.seq, seg.bytes).map_err(storage)?;
        }
    }
    txn.commit().map_err(storage)
}

/// Records the store format version (FORMAT.md: a format-2 store becomes format 3 in the
/// transaction that writes its first format-3 entry, so a format-2 build refuses it from
/// then on instead of misreading it).
pub(crate) fn set_format(txn: &redb::WriteTransaction, format: u32) -> Result<()> {
    let mut t = txn.open_table(tables::STORE).map_err(storage)?;
    t.insert(tables::FORMAT_KEY, format.to_le_bytes().as_slice())
        .map_err(storage)?;
    Ok(())
}

/// The store format version recorded in the file (checked when the store was opened).
pub(crate) fn stored_format(txn: &redb::ReadTransaction) -> Result<u32> {
    let t = txn.open_table(tables::STORE).map_err(storage)?;
    let v = t.get(tables::FORMAT_KEY).map_err(storage)?;
    let bytes: Option<[u8; 4]> = v.and_then(|v| v.value().try_into().ok());
    bytes
        .map(u32::from_le_bytes)
        .ok_or_else(|| Error::corrupt("store format version", "4 bytes", "another value"))
}

/// Lowers the recorded last announced commit to at most `seq` (a rewind dropped the
/// commits after it, so their successors must be announced as new).
pub(crate) fn clamp_announced(
    txn: &redb::WriteTransaction,
    tables: &JobTables,
    seq: u64,
) -> Result<()> {
    let mut t = txn.open_table(tables.cursor()).map_err(storage)?;
    let current = t
        .get(tables::ANNOUNCED_KEY)
        .map_err(storage)?
        .map(|v| v.value());
    if let Some(current) = current
        && current > seq
    {
        t.insert(tables::ANNOUNCED_KEY, seq).map_err(storage)?;
    }
    Ok(())
}

/// Keeps the rows of a `u64 -> bytes` table that `keep` accepts; returns how many it
/// dropped.
pub(crate) fn retain_rows(
    txn: &redb::WriteTransaction,
    table: redb::TableDefinition<'_, u64, &'static [u8]>,
    mut keep: impl FnMut(u64, &[u8]) -> bool,
) -> Result<u64> {
    let mut t = txn.open_table(table).map_err(storage)?;
    let mut dropped = 0u64;
    t.retain(|key, value| {
        let kept = keep(key, value);
        dropped += u64::from(!kept);
        kept
    })
    .map_err(storage)?;
    Ok(dropped)
}
