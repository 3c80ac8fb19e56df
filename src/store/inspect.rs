//! Read-only questions an operator asks of a store, and the job-agnostic part of `verify`.

use std::collections::BTreeMap;
use std::ops::Range;

use redb::ReadableTable;
use serde::Serialize;

use super::Store;
use super::job_io::{self, DeadLetterRecord, SnapshotRecord};
use super::tables::JobTables;
use crate::codec;
use crate::error::{Error, Result};
use crate::lifecycle::JobState;
use crate::lineage::{LineageEntry, OutputsHasher};
use crate::progress::RangeSet;

/// A job's progress and health, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct JobStatus {
    /// Job name.
    pub name: String,
    /// Lifecycle state.
    pub lifecycle: JobState,
    /// The state type name recorded at creation.
    pub state_type: String,
    /// The user schema version recorded at creation.
    pub schema_version: u32,
    /// Settled records (outputs and dead letters).
    pub records_done: u64,
    /// Declared input size, if any.
    pub total_records: Option<u64>,
    /// Number of disjoint done ranges.
    pub done_ranges: u64,
    /// Every id below this is done.
    pub watermark: u64,
    /// Commits made (the last commit's sequence number).
    pub commits: u64,
    /// Time of the last commit, ms since the Unix epoch.
    pub last_commit_ms: Option<u64>,
    /// Live snapshots.
    pub snapshots: u64,
    /// Dead letters waiting for an operator.
    pub dead_letters: u64,
    /// Times the job was found crashed and resumed.
    pub recoveries: u64,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
}

/// One stored snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// Generation number (ascending with time).
    pub generation: u64,
    /// The commit the snapshot reflects; `None` when it failed its check.
    pub seq: Option<u64>,
    /// Stored size in bytes.
    pub bytes: u64,
    /// Whether its checksum and decoding verify.
    pub valid: bool,
    /// Whether it is pinned (kept from retention).
    pub pinned: bool,
    /// When it was written, ms since the Unix epoch.
    pub time_ms: Option<u64>,
}

/// A record that exhausted its retries, waiting for an operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Record id.
    pub id: u64,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// When it was dead-lettered, ms since the Unix epoch.
    pub time_ms: u64,
}

/// One stored output, checked, with its encoded payload.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredOutput {
    /// Record id.
    pub id: u64,
    /// The commit that stored it.
    pub seq: u64,
    /// The bincode-encoded output.
    pub payload: Vec<u8>,
}

impl StoredOutput {
    /// Decodes the payload as the job's output type.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when it does not decode as `T`.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        codec::decode_output(self.id, &self.payload)
    }
}

/// A problem `verify` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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

    fn add_error(&mut self, e: &Error) {
        match e {
            Error::Corrupt {
                what,
                expected,
                got,
            } => {
                self.problem(what.clone(), format!("expected {expected}, got {got}"));
            }
            other => self.problem("store", other.to_string()),
        }
    }
}

/// Snapshots as verify found them: `(generation, seq, state bytes)` of the valid ones.
pub(crate) type CheckedSnapshots = Vec<(u64, u64, Vec<u8>)>;

impl Store {
    /// Names of the jobs in the store.
    ///
    /// # Errors
    /// Storage errors.
    pub fn jobs(&self) -> Result<Vec<String>> {
        let txn = self.inner.begin_read()?;
        job_io::job_names(&txn)
    }

    /// A job's stored status.
    ///
    /// # Errors
    /// [`Error::JobNotFound`]; [`Error::Corrupt`] if its metadata fails its check.
    pub fn status(&self, job: &str) -> Result<JobStatus> {
        let txn = self.inner.begin_read()?;
        let meta =
            job_io::read_meta(&txn, job)?.ok_or_else(|| Error::JobNotFound(job.to_owned()))?;
        let tables = JobTables::new(job);
        let progress = job_io::load_progress(&txn, &tables)?;
        let (done, last) = (progress.done, progress.last);
        let snapshots = job_io::snapshot_generations(&txn, &tables)?.len() as u64;
        Ok(JobStatus {
            name: meta.name,
            lifecycle: meta.lifecycle,
            state_type: meta.state_type,
            schema_version: meta.schema_version,
            records_done: done.len(),
            total_records: meta.total_records,
            done_ranges: done.range_count() as u64,
            watermark: done.watermark(),
            commits: last.as_ref().map_or(0, |e| e.seq),
            last_commit_ms: last.map(|e| e.time_ms),
            snapshots,
            dead_letters: job_io::count_dead_letters(&txn, &tables)?,
            recoveries: meta.recoveries,
            created_ms: meta.created_ms,
        })
    }

    /// A job's done ranges, ascending.
    ///
    /// # Errors
    /// [`Error::JobNotFound`]; storage errors.
    pub fn done_ranges(&self, job: &str) -> Result<RangeSet> {
        let txn = self.inner.begin_read()?;
        require_job(&txn, job)?;
        job_io::load_ranges(&txn, &JobTables::new(job))
    }

    /// A job's snapshots, oldest first, each checked.
    ///
    /// # Errors
    /// [`Error::JobNotFound`]; storage errors.
    pub fn snapshots(&self, job: &str) -> Result<Vec<SnapshotInfo>> {
        let txn = self.inner.begin_read()?;
        let meta = require_job(&txn, job)?;
        let tables = JobTables::new(job);
        let mut out = Vec::new();
        for generation in job_io::snapshot_generations(&txn, &tables)? {
            let Some((bytes, record)) = job_io::read_snapshot(&txn, &tables, generation)? else {
                continue;
            };
            let record: Option<SnapshotRecord> = record.ok();
            out.push(SnapshotInfo {
                generation,
                seq: record.as_ref().map(|r| r.seq),
                bytes: bytes as u64,
                valid: record.is_some(),
                pinned: meta.pinned.contains(&generation),
                time_ms: record.as_ref().map(|r| r.time_ms),
            });
        }
        Ok(out)
    }

    /// Up to `limit` lineage entries with seq ≥ `from`, in order.
    ///
    /// # Errors
    /// [`Error::JobNotFound`]; [`Error::Corrupt`] at the first entry that fails its check.
    pub fn lineage(&self, job: &str, from: u64, limit: usize) -> Result<Vec<LineageEntry>> {
        let txn = self.inner.begin_read()?;
        require_job(&txn, job)?;
        let mut out = Vec::new();
        job_io::for_each_log(&txn, &JobTables::new(job), from.., |_, entry| {
            if out.len() >= limit {
                return Ok(false);
            }
            out.push(entry?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// Visits the stored outputs with ids in `ids`, in id order, each checked. Return
    /// `false` from `f` to stop.
    ///
    /// # Errors
    /// [`Error::JobNotFound`]; [`Error::Corrupt`] at the first output that fails its check;
    /// any error `f` returns.
    pub fn for_each_output(
        &self,
        job: &str,
        ids: Range<u64>,
        mut f: impl FnMut(StoredOutput) -> Result<bool>,
    ) -> Result<()> {
        let txn = self.inner.begin_read()?;
        require_job(&txn, job)?;
        let tables = JobTables::new(job);
        let tail = job_io::load_progress(&txn, &tables)?.tail_runs();
        job_io::Outputs::open(&txn, &tables, &tail)?.for_each(ids, |seq, record| {
            f(StoredOutput {
                id: record.id,
                seq,
                payload: record.payload.to_vec(),
            })
        })
    }

    /// A job's dead letters, by id.
    ///
    /// # Errors
    /// [`Error::JobNotFound`]; [`Error::Corrupt`] when one fails its check.
    pub fn dead_letters(&self, job: &str) -> Result<Vec<DeadLetter>> {
        let txn = self.inner.begin_read()?;
        require_job(&txn, job)?;
        let mut out = Vec::new();
        job_io::for_each_dead_letter(&txn, &JobTables::new(job), |id, record| {
            let r: DeadLetterRecord = record?;
            out.push(DeadLetter {
                id,
                attempts: r.attempts,
                error: r.error,
                time_ms: r.time_ms,
            });
            Ok(())
        })?;
        Ok(out)
    }

    /// Puts dead letters back in line: removes them (all, or those in `ids`) and unmarks them
    /// done, in one durable commit, so the next run processes them again; a completed job
    /// becomes paused. Returns the ids requeued. The job must not be open.
    ///
    /// # Errors
    /// [`Error::Locked`] if the job is open; [`Error::JobNotFound`]; storage errors.
    pub fn requeue(&self, job: &str, ids: Option<&[u64]>) -> Result<Vec<u64>> {
        self.inner.claim_job(job)?;
        let result = self.requeue_claimed(job, ids);
        self.inner.release_job(job);
        result
    }

    fn requeue_claimed(&self, job: &str, ids: Option<&[u64]>) -> Result<Vec<u64>> {
        let tables = JobTables::new(job);
        let txn = self.inner.begin_read()?;
        let mut meta = require_job(&txn, job)?;
        let progress = job_io::load_progress(&txn, &tables)?;
        let mut chosen = Vec::new();
        job_io::for_each_dead_letter(&txn, &tables, |id, _| {
            if ids.is_none_or(|wanted| wanted.contains(&id)) {
                chosen.push(id);
            }
            Ok(())
        })?;
        drop(txn);
        if chosen.is_empty() {
            return Ok(chosen);
        }
        // The stored done ranges catch up with the tail and lose the requeued ids; the id
        // index catches up with the tail.
        let index = progress.tail_runs();
        let mark = progress.last.as_ref().map_or(0, |e| e.seq);
        let mut done = progress.done;
        done.remove_all(chosen.iter().copied());
        let diff = done.diff_from(&progress.materialized);
        // A completed job accepts no records; with work requeued it is paused instead, so
        // the next run settles them.
        let reopened = (meta.lifecycle == JobState::Completed).then(|| {
            meta.lifecycle = JobState::Paused;
            &meta
        });
        let plan = job_io::CommitPlan {
            remove_dead: &chosen,
            ranges: Some(&diff),
            index: &index,
            mark: Some(mark),
            meta: reopened,
            durable: true,
            ..job_io::CommitPlan::default()
        };
        job_io::commit(&self.inner, &tables, &plan)?;
        tracing::info!(job, requeued = chosen.len(), "dead letters requeued");
        Ok(chosen)
    }

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
        match job_io::read_meta(&txn, job) {
            Ok(Some(_)) => {}
            Ok(None) => return Err(Error::JobNotFound(job.to_owned())),
            Err(e) => {
                report.add_error(&e);
                return Ok((report, Vec::new()));
            }
        }
        let tables = JobTables::new(job);

        // 1. The lineage chain, and each commit's outputs.
        let mut logged = RangeSet::new();
        let mut logged_dead = RangeSet::new();
        let mut runs: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        let mut prev_hash = 0u64;
        let mut expected_seq = 1u64;
        let mut last_seq = 0u64;
        job_io::for_each_segment(&txn, &tables, .., |seq, segment| {
            report.lineage_checked += 1;
            let item = format!("lineage entry {seq}");
            let segment = match segment {
                Ok(s) => s,
                Err(e) => {
                    report.add_error(&e);
                    return Ok(true);
                }
            };
            let entry = &segment.entry;
            if seq != expected_seq {
                report.problem(&item, format!("expected entry {expected_seq} next"));
            }
            expected_seq = seq + 1;
            last_seq = seq;
            if entry.prev_hash != prev_hash {
                report.problem(&item, format!("prev_hash {:016x} does not match the previous entry's hash {prev_hash:016x}", entry.prev_hash));
            }
            if entry.hash != entry.compute_hash() {
                report.problem(&item, "its hash does not match its contents");
            }
            prev_hash = entry.hash;
            for id in entry.output_ids() {
                let (new, _) = logged.insert(id);
                if !new {
                    report.problem(
                        &item,
                        format!("record {id} was committed by an earlier entry too"),
                    );
                }
            }
            let mut hasher = OutputsHasher::new();
            for record in segment.records() {
                report.outputs_checked += 1;
                match record {
                    Ok(r) => hasher.add(r.id, r.crc),
                    Err(e) => {
                        report.add_error(&e);
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
            for &(s, e) in &entry.outputs {
                runs.insert(s, (e, seq));
            }
            for &id in &entry.dead_letters {
                logged_dead.insert(id);
            }
            Ok(true)
        })?;
        let mut stored = logged;

        // 2. The id index: exactly the output runs of the commits up to its mark.
        let progress = match job_io::load_progress(&txn, &tables) {
            Ok(p) => Some(p),
            Err(e) => {
                report.add_error(&e);
                None
            }
        };
        if let Some(p) = &progress {
            let mut indexed = 0usize;
            if let Some(t) = job_io::open_table_ro(&txn, tables.index())? {
                for item in t.iter().map_err(super::storage)? {
                    let (k, v) = item.map_err(super::storage)?;
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
        job_io::for_each_dead_letter(&txn, &tables, |id, record| {
            report.dead_letters_checked += 1;
            if let Err(e) = record {
                report.add_error(&e);
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
        for generation in job_io::snapshot_generations(&txn, &tables)? {
            report.snapshots_checked += 1;
            match job_io::read_snapshot(&txn, &tables, generation)? {
                Some((_, Ok(r))) if r.seq <= last_seq => checked.push((generation, r.seq, r.state)),
                Some((_, Ok(r))) => report.problem(
                    format!("snapshot generation {generation}"),
                    format!(
                        "reflects commit {} but the last commit is {last_seq}",
                        r.seq
                    ),
                ),
                Some((_, Err(e))) => report.add_error(&e),
                None => {}
            }
        }

        Ok((report, checked))
    }
}

fn require_job(txn: &redb::ReadTransaction, job: &str) -> Result<super::meta::JobMeta> {
    job_io::read_meta(txn, job)?.ok_or_else(|| Error::JobNotFound(job.to_owned()))
}
