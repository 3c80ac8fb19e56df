//! Opening a job: create it, or check it against the caller and resume it.
//!
//! Resume = done ranges + the newest snapshot whose checksum verifies (older ones are tried,
//! loudly, when it does not) + a replay through `Fold::apply` of every output committed after
//! that snapshot, in commit order.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use super::{Claim, Fold, Job, JobOptions, JobStats, ProgressMark};
use crate::codec;
use crate::error::{Error, Result};
use crate::lifecycle::JobState;
use crate::lineage::now_ms;
use crate::progress::RangeSet;
use crate::store::Store;
use crate::store::job_io::{self, CommitPlan};
use crate::store::meta::JobMeta;
use crate::store::tables::JobTables;

/// Where a resume starts its replay from.
struct Restored<S> {
    state: S,
    /// The commit the state reflects (0: the empty state).
    seq: u64,
}

impl<S: Fold> Job<S> {
    pub(crate) fn open(store: &Store, name: &str, options: JobOptions) -> Result<Self> {
        if name.is_empty() || name.contains('\0') {
            return Err(Error::InvalidArgument(format!("invalid job name {name:?}")));
        }
        let inner = Arc::clone(&store.inner);
        inner.claim_job(name)?;
        let claim = Claim {
            store: inner,
            name: name.to_owned(),
        };
        let tables = JobTables::new(name);

        let existing = {
            let txn = claim.store.begin_read()?;
            job_io::read_meta(&txn, name)?
        };
        let mut meta = match existing {
            Some(meta) => {
                check_matches::<S>(&meta, &options)?;
                meta
            }
            None if options.create => {
                let meta = JobMeta {
                    name: name.to_owned(),
                    state_type: S::type_name(),
                    schema_version: options.schema_version,
                    input_manifest: options.input_manifest,
                    lifecycle: JobState::Created,
                    created_ms: now_ms(),
                    recoveries: 0,
                    pinned: Vec::new(),
                    total_records: options.total_records,
                };
                job_io::create_job(&claim.store, &tables, &meta)?;
                tracing::info!(job = name, "job created");
                meta
            }
            None => return Err(Error::JobNotFound(name.to_owned())),
        };

        let txn = claim.store.begin_read()?;
        let mut progress = job_io::load_progress(&txn, &tables)?;
        let done = std::mem::take(&mut progress.done);
        let last = progress.last.take();
        let generations = job_io::snapshot_generations(&txn, &tables)?;
        let last_seq = last.as_ref().map_or(0, |e| e.seq);
        let restored = restore_snapshot::<S>(&txn, &tables, name, &generations, last_seq)?;
        let (state, replayed) = if S::FOLDS_OUTPUTS {
            replay(&txn, &tables, name, restored)?
        } else {
            (restored.state, 0)
        };
        drop(txn);

        let mut job = Job {
            claim,
            tables,
            meta: meta.clone(),
            state,
            done,
            next_seq: last_seq + 1,
            prev_hash: last.as_ref().map_or(0, |e| e.hash),
            durable_seq: last_seq,
            last_durable_at: Instant::now(),
            next_generation: generations.last().map_or(1, |g| g + 1),
            generations,
            commits_since_snapshot: replayed,
            pending: Vec::new(),
            pending_ids: HashSet::new(),
            pending_bytes: 0,
            pending_since: None,
            non_durable: RangeSet::new(),
            progress_mark: ProgressMark::from_progress(progress),
            poisoned: false,
            stats: JobStats {
                replayed_commits: replayed,
                ..JobStats::default()
            },
            options,
        };

        let mut changed = false;
        if meta.lifecycle == JobState::Running {
            meta.recoveries += 1;
            changed = true;
            tracing::warn!(
                job = name,
                recoveries = meta.recoveries,
                last_seq,
                done = job.done.len(),
                "job was running when its store was last closed: it crashed; resuming from the last durable commit"
            );
        }
        if let Some(total) = job.options.total_records
            && meta.total_records != Some(total)
        {
            meta.total_records = Some(total);
            changed = true;
        }
        if changed {
            let plan = CommitPlan {
                meta: Some(&meta),
                durable: true,
                ..CommitPlan::default()
            };
            job_io::commit(&job.claim.store, &job.tables, &plan)?;
            job.meta = meta;
        }
        tracing::info!(
            job = name,
            lifecycle = %job.meta.lifecycle,
            done = job.done.len(),
            seq = last_seq,
            replayed,
            "job opened"
        );
        Ok(job)
    }
}

fn check_matches<S: Fold>(meta: &JobMeta, options: &JobOptions) -> Result<()> {
    let mismatch = |field, expected: String, found: String| Error::JobMismatch {
        job: meta.name.clone(),
        field,
        expected,
        found,
    };
    let type_name = S::type_name();
    if meta.state_type != type_name {
        return Err(mismatch("state type", meta.state_type.clone(), type_name));
    }
    if meta.schema_version != options.schema_version {
        return Err(mismatch(
            "schema version",
            meta.schema_version.to_string(),
            options.schema_version.to_string(),
        ));
    }
    if let Some(found) = options.input_manifest
        && meta.input_manifest != Some(found)
    {
        let expected = meta
            .input_manifest
            .map_or_else(|| "none".to_owned(), |m| format!("{m:016x}"));
        return Err(mismatch(
            "input manifest",
            expected,
            format!("{found:016x}"),
        ));
    }
    Ok(())
}

/// The newest snapshot that verifies; older ones are tried, loudly, when it does not.
fn restore_snapshot<S: Fold>(
    txn: &redb::ReadTransaction,
    tables: &JobTables,
    job: &str,
    generations: &[u64],
    last_seq: u64,
) -> Result<Restored<S>> {
    for &generation in generations.iter().rev() {
        let Some((_, record)) = job_io::read_snapshot(txn, tables, generation)? else {
            continue;
        };
        let decoded = record.and_then(|r| {
            if r.seq > last_seq {
                return Err(Error::corrupt(
                    format!("snapshot generation {generation}"),
                    format!("a commit seq at most {last_seq}"),
                    format!("seq {}", r.seq),
                ));
            }
            let state: S = codec::decode(&r.state).map_err(|e| {
                Error::corrupt(
                    format!("snapshot generation {generation}"),
                    "the job's state type",
                    e,
                )
            })?;
            Ok(Restored { state, seq: r.seq })
        });
        match decoded {
            Ok(restored) => return Ok(restored),
            Err(e) => {
                tracing::warn!(job, generation, error = %e, "snapshot failed its check; falling back to an older one");
            }
        }
    }
    Ok(Restored {
        state: S::default(),
        seq: 0,
    })
}

/// Replays outputs committed after the restored snapshot. Returns the state and the number
/// of commits replayed.
fn replay<S: Fold>(
    txn: &redb::ReadTransaction,
    tables: &JobTables,
    job: &str,
    restored: Restored<S>,
) -> Result<(S, u64)> {
    let Restored { mut state, seq } = restored;
    let mut expected_seq = seq + 1;
    let mut replayed = 0u64;
    job_io::for_each_segment(txn, tables, seq + 1.., |log_seq, segment| {
        let segment = segment?;
        if log_seq != expected_seq {
            return Err(Error::corrupt(
                format!("lineage of job {job:?}"),
                format!("entry {expected_seq}"),
                format!("entry {log_seq}"),
            ));
        }
        expected_seq += 1;
        for record in segment.records() {
            let record = record?;
            let id = record.id;
            let output: S::Output = codec::decode_output(id, record.payload)?;
            catch_unwind(AssertUnwindSafe(|| state.apply(id, &output)))
                .map_err(|p| Error::from_panic("Fold::apply during replay", p.as_ref()))?;
        }
        replayed += 1;
        Ok(true)
    })?;
    Ok((state, replayed))
}
