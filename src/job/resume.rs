//! Opening a job: create it, or check it against the caller and resume it.
//!
//! Resume = done ranges + the newest snapshot whose checksum verifies (older ones are tried,
//! loudly, when it does not) + a replay through the fold of every output committed after
//! that snapshot, in commit order.

use std::time::Instant;

use super::fold::{Fold, Folder};
use super::options::JobOptions;
use super::{Chain, Job, JobStats};
use crate::codec;
use crate::error::Result;
use crate::progress::RangeSet;
use crate::store::{JobStore, NewJob, Store};

impl<S: Fold> Job<S> {
    pub(crate) fn open(
        store: &Store,
        name: &str,
        options: JobOptions,
        folder: Folder<S>,
    ) -> Result<Self> {
        let spec = NewJob {
            state_type: S::type_name(),
            schema_version: options.schema_version,
            input_manifest: options.input_manifest,
            total_records: options.total_records,
            create: options.create,
            input_change: options.input_change,
            keep_snapshots: options.keep_snapshots,
            progress_every_commits: options.progress_every_commits,
            describe_types: Some(crate::typed::describe_job::<S>),
        };
        // One-record or deferred commits run the store in exclusive mode (see
        // `StoreOptions::live_readers`).
        let policy = &options.commit_policy;
        let deferred = matches!(policy.durability, crate::Durability::Deferred { .. });
        if deferred || policy.max_group_records == 1 {
            store.prefer_exclusive(deferred)?;
        }
        let (mut job_store, loaded) = JobStore::open(store, name, &spec)?;
        let last_seq = loaded.last_seq;
        let (mut state, from) = match job_store.newest_snapshot(last_seq, codec::decode::<S>)? {
            Some((state, seq)) => (state, seq),
            None => (S::default(), 0),
        };
        let replayed = if S::FOLDS_OUTPUTS {
            folder.replay(
                &job_store,
                &mut state,
                from,
                "Fold::apply during replay",
                |_, _| Ok(()),
            )?
        } else {
            0
        };
        if loaded.crashed {
            tracing::warn!(
                job = name,
                recoveries = job_store.recoveries() + 1,
                last_seq,
                done = loaded.done.len(),
                "job was running when its store was last closed: it crashed; resuming from the last durable commit"
            );
        }
        job_store.record_open(&spec)?;
        let job = Job {
            store: job_store,
            folder,
            state,
            done: loaded.done,
            chain: Chain {
                next_seq: last_seq + 1,
                prev_hash: loaded.last_hash,
            },
            durable_seq: last_seq,
            last_durable_at: Instant::now(),
            commits_since_snapshot: replayed,
            snapshots_handed_off: false,
            group: super::commit::PendingGroup::default(),
            non_durable: RangeSet::new(),
            stats: JobStats {
                replayed_commits: replayed,
                ..JobStats::default()
            },
            options,
        };
        tracing::info!(
            job = name,
            lifecycle = %job.lifecycle(),
            done = job.done.len(),
            seq = last_seq,
            replayed,
            "job opened"
        );
        Ok(job)
    }
}
