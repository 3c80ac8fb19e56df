//! Read-only questions an operator asks of a store: jobs, status, ranges, snapshots,
//! lineage, outputs and dead letters. None of them writes.

use std::ops::Range;

use serde::Serialize;

use super::meta;
use super::open::Store;
use super::outputs::Outputs;
use super::read;
use super::records::{DeadLetterRecord, SnapshotRecord};
use super::tables::JobTables;
use crate::codec;
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::lifecycle::JobState;
use crate::lineage::LineageEntry;
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
    /// Records done (with an output or dead-lettered).
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

impl JobStatus {
    /// Records done with an output (done records minus dead letters).
    #[must_use]
    pub fn records_with_output(&self) -> u64 {
        self.records_done.saturating_sub(self.dead_letters)
    }

    /// Whether the job completed while records are still dead letters: it reached the end
    /// of its input, but not every record has an output.
    #[must_use]
    pub fn completed_with_dead_letters(&self) -> bool {
        self.lifecycle == JobState::Completed && self.dead_letters > 0
    }
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

impl Store {
    /// Names of the jobs in the store.
    ///
    /// # Errors
    /// Storage errors.
    pub fn jobs(&self) -> Result<Vec<String>> {
        let txn = self.inner.begin_read()?;
        meta::job_names(&txn)
    }

    /// A job's stored status.
    ///
    /// # Errors
    /// [`Error::JobNotFound`]; [`Error::Corrupt`] if its metadata fails its check.
    pub fn status(&self, job: &str) -> Result<JobStatus> {
        let txn = self.inner.begin_read()?;
        let meta = meta::require(&txn, job)?;
        let tables = JobTables::new(job);
        let progress = read::load_progress(&txn, &tables)?;
        let (done, last) = (progress.done, progress.last);
        let snapshots = read::snapshot_generations(&txn, &tables)?.len() as u64;
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
            dead_letters: read::count_dead_letters(&txn, &tables)?,
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
        meta::require(&txn, job)?;
        read::load_progress(&txn, &JobTables::new(job)).map(|p| p.done)
    }

    /// A job's snapshots, oldest first, each checked.
    ///
    /// # Errors
    /// [`Error::JobNotFound`]; storage errors.
    pub fn snapshots(&self, job: &str) -> Result<Vec<SnapshotInfo>> {
        let txn = self.inner.begin_read()?;
        let meta = meta::require(&txn, job)?;
        let tables = JobTables::new(job);
        let mut out = Vec::new();
        for generation in read::snapshot_generations(&txn, &tables)? {
            let Some((bytes, record)) = read::read_snapshot(&txn, &tables, generation)? else {
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
        meta::require(&txn, job)?;
        let mut out = Vec::new();
        read::for_each_log(&txn, &JobTables::new(job), from.., |_, entry| {
            if out.len() >= limit {
                return Ok(false);
            }
            out.push(LineageEntry::from(entry?));
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
        meta::require(&txn, job)?;
        let tables = JobTables::new(job);
        let tail = read::load_progress(&txn, &tables)?.tail_runs();
        Outputs::open(&txn, &tables, &tail)?.for_each(ids, |seq, record| {
            f(StoredOutput {
                id: record.id,
                seq,
                payload: record.payload.to_vec(),
            })
        })
    }

    /// Visits the outputs stored by the commits after commit `seq`, in commit order and, within
    /// a commit, in id order, each checked: the outbox read of a downstream consumer that
    /// keeps its own cursor (the last `seq` it consumed). Outputs a later redo entry removed
    /// are skipped (their re-runs come as new commits). Return `false` from `f` to stop.
    ///
    /// # Errors
    /// [`Error::JobNotFound`]; [`Error::Corrupt`] at the first commit or output that fails
    /// its check; any error `f` returns.
    pub fn for_each_output_since(
        &self,
        job: &str,
        seq: u64,
        mut f: impl FnMut(StoredOutput) -> Result<bool>,
    ) -> Result<()> {
        let txn = self.inner.begin_read()?;
        meta::require(&txn, job)?;
        let tables = JobTables::new(job);
        let removed = read::redos_after(&txn, &tables, seq)?;
        let mut order = read::SeqOrder::after(job, seq);
        read::for_each_segment(&txn, &tables, seq + 1.., |s, segment| {
            let segment = segment?;
            order.next(s)?;
            for record in segment.records() {
                let record = record?;
                if removed.contains(s, record.id) {
                    continue;
                }
                if !f(StoredOutput {
                    id: record.id,
                    seq: s,
                    payload: record.payload.to_vec(),
                })? {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    /// A job's dead letters, by id.
    ///
    /// # Errors
    /// [`Error::JobNotFound`]; [`Error::Corrupt`] when one fails its check.
    pub fn dead_letters(&self, job: &str) -> Result<Vec<DeadLetter>> {
        let txn = self.inner.begin_read()?;
        meta::require(&txn, job)?;
        let mut out = Vec::new();
        read::for_each_dead_letter(&txn, &JobTables::new(job), |id, record| {
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
}
