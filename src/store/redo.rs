//! `redo`: make chosen done records pending again, so the next run processes exactly those
//! records once more.
//!
//! One durable write transaction appends a *redo entry* to the lineage (what was selected,
//! the output ranges and dead letters removed, the code version that asked), removes the
//! selected ids from the done ranges and the id index, deletes the selected dead letters,
//! and retires every snapshot that reflects the earliest commit whose output it removes or
//! a later one. The removed outputs' bytes stay in their commits' segments: the lineage is
//! append-only, and the head commits to them. They are no longer the job's outputs: no
//! reader returns them, and a replay skips an output when a later redo entry removed its id
//! (`JobStore::replay`). So the state is rebuilt, on the next open (or verify), from the
//! newest snapshot older than the earliest removed commit (or the empty state) plus a
//! replay of the outputs that remain, in commit order: the state stays the fold of the
//! outputs that remain. A rewind to a snapshot before the redo entry drops the entry and
//! with it the removal.

use std::collections::BTreeSet;
use std::ops::Range;

use serde::Serialize;

use super::chain;
use super::claim::Claim;
use super::errors::storage;
use super::meta;
use super::open::{FORMAT_VERSION, Store};
use super::read;
use super::records::SnapshotRecord;
use super::segment;
use super::tables::{self, JobTables};
use super::write;
use crate::error::{Error, Result};
use crate::lifecycle::JobState;
use crate::lineage::{self, ChainHash, EntryRecord, OutputsHasher, RedoRecord, now_ms};
use crate::progress::RangeSet;

/// Which done records a [`Store::redo`] selects.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedoSelection {
    /// These ids (outputs and dead letters); ids not done are ignored.
    Ids(Vec<u64>),
    /// The done ids in this range (outputs and dead letters).
    Range(Range<u64>),
    /// The outputs committed by this code version ([`crate::JobOptions::code_version`]).
    CodeVersion(String),
    /// The outputs committed after this time (ms since the Unix epoch, exclusive).
    CommittedAfter(u64),
    /// The outputs committed before this time (ms since the Unix epoch, exclusive).
    CommittedBefore(u64),
    /// Every dead letter (as `requeue` does, with a lineage entry).
    DeadLetters,
}

impl std::fmt::Display for RedoSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedoSelection::Ids(ids) => {
                let shown: Vec<String> = ids.iter().take(20).map(u64::to_string).collect();
                let more = if ids.len() > 20 { ",..." } else { "" };
                write!(f, "--ids {}{more}", shown.join(","))
            }
            RedoSelection::Range(r) => write!(f, "--range {}..{}", r.start, r.end),
            RedoSelection::CodeVersion(v) => write!(f, "--code-version {v}"),
            RedoSelection::CommittedAfter(t) => write!(f, "--committed-after {t}"),
            RedoSelection::CommittedBefore(t) => write!(f, "--committed-before {t}"),
            RedoSelection::DeadLetters => write!(f, "--dead-letters"),
        }
    }
}

/// What [`Store::redo`] selected and (unless a dry run) did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RedoReport {
    /// Job name.
    pub job: String,
    /// The selection, as recorded in the redo entry.
    pub selection: String,
    /// Id ranges whose outputs are (or would be) removed.
    pub outputs: Vec<(u64, u64)>,
    /// Number of outputs removed.
    pub output_count: u64,
    /// Dead letters removed.
    pub dead_letters: Vec<u64>,
    /// The earliest commit whose outputs are removed (`None`: only dead letters).
    pub earliest_commit: Option<u64>,
    /// Snapshot generations retired (they reflect that commit or a later one).
    pub snapshots_retired: Vec<u64>,
    /// The commit of the snapshot the state is rebuilt from (0: the empty state).
    pub rebuild_from: u64,
    /// The redo entry's seq; `None` for a dry run or an empty selection.
    pub redo_seq: Option<u64>,
    /// Nothing was changed (asked for a dry run).
    pub dry_run: bool,
}

impl RedoReport {
    /// Records selected (outputs and dead letters).
    #[must_use]
    pub fn records(&self) -> u64 {
        self.output_count + self.dead_letters.len() as u64
    }
}

impl Store {
    /// Makes the done records `selection` picks pending again (see the module docs of
    /// `store::redo` and docs/REDO.md): in one durable transaction, removes their outputs
    /// and done marks (and dead letters), retires the snapshots from the earliest removed
    /// commit on, and appends a redo entry (recording `code_version`, the version that
    /// asked) to the lineage. The next run processes exactly those records again, once
    /// each; the state is rebuilt on open from an older snapshot plus a replay of the
    /// outputs that remain. A completed, failed or crashed job becomes paused. With
    /// `dry_run` nothing is written. An empty selection changes nothing.
    ///
    /// # Errors
    /// [`Error::Locked`] while the job is open (in another process the store itself is);
    /// [`Error::JobNotFound`]; [`Error::InvalidArgument`] for a range that is empty or
    /// outside the input, a code version never seen (the message lists those seen), or a
    /// pinned snapshot that would have to be retired (unpin it first); [`Error::Corrupt`]
    /// when a lineage entry fails its check (verify names it); storage errors.
    pub fn redo(
        &self,
        job: &str,
        selection: &RedoSelection,
        code_version: &str,
        dry_run: bool,
    ) -> Result<RedoReport> {
        let _claim = Claim::take(&self.inner, job)?;
        let tables = JobTables::new(job);
        let txn = self.inner.begin_read()?;
        let mut meta = meta::require(&txn, job)?;
        if let RedoSelection::Range(r) = selection {
            if r.start >= r.end {
                return Err(Error::InvalidArgument(format!(
                    "the range {}..{} is empty; give START..END with START < END",
                    r.start, r.end
                )));
            }
            if let Some(total) = meta.total_records
                && r.end > total
            {
                return Err(Error::InvalidArgument(format!(
                    "the range {}..{} is outside the input: job {job:?} has records 0..{total}",
                    r.start, r.end
                )));
            }
        }
        let progress = read::load_progress(&txn, &tables)?;
        let mut live = chain::walk(&txn, &tables, job)?;
        let mut dead_rows = BTreeSet::new();
        read::for_each_dead_letter(&txn, &tables, |id, _| {
            dead_rows.insert(id);
            Ok(())
        })?;
        let (outputs, dead) = select(&live, &dead_rows, selection)?;
        let mut report = RedoReport {
            job: job.to_owned(),
            selection: selection.to_string(),
            output_count: outputs.len(),
            outputs: outputs.ranges().map(|r| (r.start, r.end)).collect(),
            dead_letters: dead.clone(),
            dry_run,
            ..RedoReport::default()
        };
        report.earliest_commit = earliest_commit(&live, &outputs);

        // Snapshots from the earliest removed commit on no longer describe a fold of the
        // outputs that remain.
        let mut retire = Vec::new();
        let mut kept_seq = 0u64;
        if let Some(earliest) = report.earliest_commit {
            for generation in read::snapshot_generations(&txn, &tables)? {
                match read::read_snapshot(&txn, &tables, generation)? {
                    Some((_, Ok(SnapshotRecord { seq, .. }))) if seq >= earliest => {
                        if meta.pinned.contains(&generation) {
                            return Err(Error::InvalidArgument(format!(
                                "snapshot generation {generation} of job {job:?} is pinned and reflects commit {seq}, at or after commit {earliest} whose outputs the redo removes; unpin it first (`resumable pin --unpin`)"
                            )));
                        }
                        retire.push(generation);
                    }
                    Some((_, Ok(SnapshotRecord { seq, .. }))) => kept_seq = kept_seq.max(seq),
                    _ => {}
                }
            }
        }
        report.snapshots_retired.clone_from(&retire);
        report.rebuild_from = kept_seq;
        let format = write::stored_format(&txn)?;
        drop(txn);
        if report.records() == 0 || dry_run {
            return Ok(report);
        }

        // The redo entry.
        let last = progress.last.as_ref();
        let seq = last.map_or(0, |e| e.seq) + 1;
        let prev_hash = last.map_or(ChainHash::ZERO, |e| e.hash);
        let entry = EntryRecord::new_v3(
            seq,
            now_ms(),
            Vec::new(),
            Vec::new(),
            OutputsHasher::new().finish(),
            prev_hash,
            code_version.to_owned(),
            Some(RedoRecord {
                selection: report.selection.clone(),
                outputs: report.outputs.clone(),
                dead_letters: dead.clone(),
            }),
        );
        let segment = segment::build(&lineage::seal_entry(&entry)?, &[])?;
        for r in outputs.ranges() {
            live.remove(r.start, r.end);
        }
        let mut done = progress.done;
        for r in outputs.ranges() {
            done.remove_all(r);
        }
        done.remove_all(dead.iter().copied());
        if matches!(
            meta.lifecycle,
            JobState::Completed | JobState::Failed | JobState::Running
        ) {
            meta.lifecycle = JobState::Paused;
        }

        let txn = self.inner.begin_write()?;
        {
            let mut t = txn.open_table(tables.log()).map_err(storage)?;
            t.insert(seq, segment.as_slice()).map_err(storage)?;
        }
        {
            let mut t = txn.open_table(tables.done()).map_err(storage)?;
            t.retain(|_, _| false).map_err(storage)?;
            for r in done.ranges() {
                t.insert(r.start, r.end).map_err(storage)?;
            }
            t.insert(tables::MARK_KEY, seq).map_err(storage)?;
        }
        {
            let mut t = txn.open_table(tables.index()).map_err(storage)?;
            t.retain(|_, _| false).map_err(storage)?;
            for (start, end, at) in live.runs() {
                t.insert(start, (end, at)).map_err(storage)?;
            }
        }
        if !dead.is_empty() {
            let mut t = txn.open_table(tables.dead()).map_err(storage)?;
            for id in &dead {
                t.remove(id).map_err(storage)?;
            }
        }
        if !retire.is_empty() {
            let mut t = txn.open_table(tables.snapshots()).map_err(storage)?;
            for g in &retire {
                t.remove(g).map_err(storage)?;
            }
        }
        meta::write(&txn, &meta)?;
        if format < FORMAT_VERSION {
            write::set_format(&txn, FORMAT_VERSION)?;
        }
        txn.commit().map_err(storage)?;
        report.redo_seq = Some(seq);
        tracing::info!(
            job,
            seq,
            outputs = report.output_count,
            dead_letters = report.dead_letters.len(),
            selection = %report.selection,
            "redo: records made pending again"
        );
        Ok(report)
    }
}

/// The live outputs and dead letters `selection` picks.
fn select(
    live: &super::live::Live,
    dead_rows: &BTreeSet<u64>,
    selection: &RedoSelection,
) -> Result<(RangeSet, Vec<u64>)> {
    let mut outputs = RangeSet::new();
    let mut dead = Vec::new();
    let by_commit = |keep: &dyn Fn(u64) -> bool, outputs: &mut RangeSet| {
        for (s, e, seq) in live.runs() {
            if keep(seq) {
                outputs.extend(s..e);
            }
        }
    };
    match selection {
        RedoSelection::Ids(ids) => {
            for &id in ids {
                if in_runs(live, id) {
                    outputs.insert(id);
                } else if dead_rows.contains(&id) {
                    dead.push(id);
                }
            }
            dead.sort_unstable();
            dead.dedup();
        }
        RedoSelection::Range(r) => {
            for (s, e, _) in live.runs() {
                let (a, b) = (s.max(r.start), e.min(r.end));
                if a < b {
                    outputs.extend(a..b);
                }
            }
            dead.extend(dead_rows.range(r.clone()).copied());
        }
        RedoSelection::CodeVersion(v) => {
            let Some(index) = live.versions.iter().position(|x| x == v) else {
                let seen = if live.versions.is_empty() {
                    "none (the job's commits were written by format 2, which recorded no version)"
                        .to_owned()
                } else {
                    live.versions.join(", ")
                };
                return Err(Error::InvalidArgument(format!(
                    "code version {v:?} never committed to this job; versions seen: {seen}"
                )));
            };
            by_commit(
                &|seq| live.commits.get(&seq).and_then(|c| c.version) == Some(index),
                &mut outputs,
            );
        }
        RedoSelection::CommittedAfter(t) => by_commit(
            &|seq| live.commits.get(&seq).is_some_and(|c| c.time_ms > *t),
            &mut outputs,
        ),
        RedoSelection::CommittedBefore(t) => by_commit(
            &|seq| live.commits.get(&seq).is_some_and(|c| c.time_ms < *t),
            &mut outputs,
        ),
        RedoSelection::DeadLetters => dead.extend(dead_rows.iter().copied()),
    }
    Ok((outputs, dead))
}

fn in_runs(live: &super::live::Live, id: u64) -> bool {
    live.run_map()
        .range(..=id)
        .next_back()
        .is_some_and(|(_, &(end, _))| id < end)
}

/// The earliest commit holding one of `outputs`.
fn earliest_commit(live: &super::live::Live, outputs: &RangeSet) -> Option<u64> {
    let mut earliest: Option<u64> = None;
    for r in outputs.ranges() {
        for (_, &(end, seq)) in live.run_map().range(..r.end).rev() {
            if end <= r.start {
                break;
            }
            earliest = Some(earliest.map_or(seq, |e| e.min(seq)));
        }
    }
    earliest
}
