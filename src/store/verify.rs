//! The checks `verify` runs without the job's state type: every CRC, the lineage hash
//! chain, the id index against the commits, dead letters, done ranges against what is
//! stored, and snapshots' framing. `Job::verify` adds the replay of the state.

use redb::ReadableTable;
use serde::Serialize;

use super::errors::storage;
use super::live::{Conflict, Live};
use super::meta;
use super::open::Store;
use super::read::{self, open_table_ro};
use super::tables::JobTables;
use crate::error::{Error, Result};
use crate::lineage::{ChainHash, OutputsHasher};
use crate::progress::RangeSet;

/// A problem `verify` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Problem {
    /// The damaged item, e.g. `lineage entry 17`.
    pub item: String,
    /// What is wrong with it.
    pub detail: String,
}

/// What `verify` checked and found. `problems[0]` is the first bad item.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Job name.
    pub job: String,
    /// Outputs whose checksum was checked.
    pub outputs_checked: u64,
    /// Lineage entries whose hash chain was checked.
    pub lineage_checked: u64,
    /// Snapshots checked.
    pub snapshots_checked: u64,
    /// Dead letters checked.
    pub dead_letters_checked: u64,
    /// Whether the state was replayed and compared with the snapshots (needs the job's
    /// state type: [`Job::verify`](crate::Job::verify)).
    pub state_replayed: bool,
    /// Problems found, in the order found.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Whether nothing was found wrong.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub(crate) fn problem(&mut self, item: impl Into<String>, detail: impl Into<String>) {
        const MAX_PROBLEMS: usize = 100;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Problem {
                item: item.into(),
                detail: detail.into(),
            });
        }
    }

    /// Reports damage found reading an item; an I/O failure (EIO, ENOSPC, a poisoned
    /// handle) is not damage and stops the walk as an error instead, so that `verify`
    /// never calls a store damaged because a read failed.
    fn add_error(&mut self, e: Error) -> Result<()> {
        match e {
            Error::Corrupt {
                what,
                expected,
                got,
            } => {
                self.problem(what, format!("expected {expected}, got {got}"));
            }
            Error::Io(_) | Error::DiskFull(_) | Error::Poisoned => return Err(e),
            other => self.problem("store", other.to_string()),
        }
        Ok(())
    }
}

/// Snapshots as verify found them: `(generation, seq, state bytes)` of the valid ones.
pub(crate) type CheckedSnapshots = Vec<(u64, u64, Vec<u8>)>;

impl Store {
    /// Checks one job without knowing its state type: every CRC, the lineage hash chain,
    /// that each logged output exists once with its commit's sequence, and that the done
    /// ranges equal the stored outputs and dead letters. Use
    /// [`Job::verify`](crate::Job::verify) to also replay the state against the snapshots,
    /// and [`Store::check_integrity`] for redb's page checksums.
    ///
    /// # Errors
    /// Only errors that stop the walk itself (I/O); damage is reported in the report.
    pub fn verify_job(&self, job: &str) -> Result<VerifyReport> {
        self.verify_job_collect(job).map(|(report, _)| report)
    }

    pub(crate) fn verify_job_collect(&self, job: &str) -> Result<(VerifyReport, CheckedSnapshots)> {
        let mut report = VerifyReport {
            job: job.to_owned(),
            ..VerifyReport::default()
        };
        let txn = self.inner.begin_read()?;
        match meta::read(&txn, job) {
            Ok(Some(_)) => {}
            Ok(None) => return Err(Error::JobNotFound(job.to_owned())),
            Err(e) => {
                report.add_error(e)?;
                return Ok((report, Vec::new()));
            }
        }
        let tables = JobTables::new(job);

        // 1. The lineage chain, and each commit's outputs.
        let mut live = Live::new();
        let mut logged_dead = RangeSet::new();
        let mut prev_hash: Option<ChainHash> = None;
        let mut switched_at: Option<u64> = None;
        let mut expected_seq = 1u64;
        let mut last_seq = 0u64;
        read::for_each_segment(&txn, &tables, .., |seq, segment| {
            report.lineage_checked += 1;
            let item = format!("lineage entry {seq}");
            let segment = match segment {
                Ok(s) => s,
                Err(e) => {
                    report.add_error(e)?;
                    return Ok(true);
                }
            };
            let entry = &segment.entry;
            if seq != expected_seq {
                report.problem(&item, format!("expected entry {expected_seq} next"));
            }
            expected_seq = seq + 1;
            last_seq = seq;
            match prev_hash {
                None if !entry.prev_hash.is_zero() => report.problem(
                    &item,
                    format!(
                        "prev_hash {} of the first entry is not zero",
                        entry.prev_hash
                    ),
                ),
                Some(prev) if entry.prev_hash != prev => report.problem(
                    &item,
                    format!(
                        "prev_hash {} does not match the previous entry's hash {prev}",
                        entry.prev_hash
                    ),
                ),
                _ => {}
            }
            if entry.hash != entry.compute_hash() {
                report.problem(&item, "its hash does not match its contents");
            }
            match switched_at {
                Some(at) if !entry.is_v3() => report.problem(
                    &item,
                    format!(
                        "a format-2 (FNV-64) entry after the chain switched to BLAKE3 at entry {at}"
                    ),
                ),
                None if entry.is_v3() => switched_at = Some(seq),
                _ => {}
            }
            prev_hash = Some(entry.hash);
            for conflict in live.add(entry) {
                match conflict {
                    Conflict::OutputTwice(id) => report.problem(
                        &item,
                        format!("record {id} was committed by an earlier entry too"),
                    ),
                    Conflict::RemovedNotLive(s, e) => report.problem(
                        &item,
                        format!(
                            "its redo removes records {s}..{e}, which did not all have an output"
                        ),
                    ),
                }
            }
            let mut hasher = OutputsHasher::like(&entry.outputs_hash);
            for record in segment.records() {
                report.outputs_checked += 1;
                match record {
                    Ok(r) => hasher.add(r.id, r.crc, r.framed),
                    Err(e) => {
                        report.add_error(e)?;
                        break;
                    }
                }
            }
            if hasher.finish() != entry.outputs_hash {
                report.problem(
                    &item,
                    "the hash of its outputs does not match the stored outputs",
                );
            }
            for &id in &entry.dead_letters {
                logged_dead.insert(id);
            }
            Ok(true)
        })?;
        let runs = live.run_map();
        let mut stored = live.outputs();

        // 2. The id index: exactly the output runs of the commits up to its mark.
        let progress = match read::load_progress(&txn, &tables) {
            Ok(p) => Some(p),
            Err(e) => {
                report.add_error(e)?;
                None
            }
        };
        if let Some(p) = &progress {
            let mut indexed = 0usize;
            if let Some(t) = open_table_ro(&txn, tables.index())? {
                for item in t.iter().map_err(storage)? {
                    let (k, v) = item.map_err(storage)?;
                    let (start, (end, seq)) = (k.value(), v.value());
                    if seq > p.mark || runs.get(&start) != Some(&(end, seq)) {
                        report.problem(
                            format!("id index entry of records {start}..{end}"),
                            format!(
                                "names commit {seq}, which did not commit exactly those outputs"
                            ),
                        );
                    } else {
                        indexed += 1;
                    }
                }
            }
            let expected = runs.values().filter(|&&(_, seq)| seq <= p.mark).count();
            if indexed != expected {
                report.problem(
                    "id index",
                    format!(
                        "holds {indexed} valid runs of outputs; commits up to {} stored {expected}",
                        p.mark
                    ),
                );
            }
        }

        // 3. Dead letters.
        read::for_each_dead_letter(&txn, &tables, |id, record| {
            report.dead_letters_checked += 1;
            if let Err(e) = record {
                report.add_error(e)?;
            }
            if !logged_dead.contains(id) {
                report.problem(
                    format!("dead letter {id}"),
                    "no lineage entry dead-lettered it",
                );
            }
            if stored.contains(id) {
                report.problem(format!("dead letter {id}"), "the record also has an output");
            }
            stored.insert(id);
            Ok(())
        })?;

        // 4. Done ranges equal outputs and dead letters.
        if let Some(p) = &progress
            && p.done != stored
        {
            let extra = p.done.len().abs_diff(stored.len());
            report.problem(
                "done ranges",
                format!(
                    "mark {} records done but {} are stored ({extra} differ)",
                    p.done.len(),
                    stored.len()
                ),
            );
        }

        // 5. Snapshots.
        let mut checked = Vec::new();
        for generation in read::snapshot_generations(&txn, &tables)? {
            report.snapshots_checked += 1;
            match read::read_snapshot(&txn, &tables, generation)? {
                Some((_, Ok(r))) if r.seq <= last_seq => checked.push((generation, r.seq, r.state)),
                Some((_, Ok(r))) => report.problem(
                    format!("snapshot generation {generation}"),
                    format!(
                        "reflects commit {} but the last commit is {last_seq}",
                        r.seq
                    ),
                ),
                Some((_, Err(e))) => report.add_error(e)?,
                None => {}
            }
        }

        Ok((report, checked))
    }
}
