//! [`Runner::audit`]: the determinism audit through the runner's own processor and worker
//! threads, for library users (the CLI's `run --audit` drives its worker programs itself).

use std::panic::AssertUnwindSafe;

use parking_lot::Mutex;
use serde::Serialize;

use super::{ProcessError, RecordContext, Runner, Source};
use crate::audit::{AuditReport, AuditSample};
use crate::codec;
use crate::error::{Error, Result};
use crate::job::Fold;

/// One record to re-run: its id, its input, and its stored output (bincode).
type Task<R> = (u64, R, Vec<u8>);

impl<S: Fold> Runner<S> {
    /// Re-runs the done records `sample` picks through `process` and compares each result
    /// with the stored output byte for byte (the bincode the store keeps), changing nothing:
    /// no commit is made, `on_durable` is not called, and the job stays as it is (call it
    /// before [`Runner::run`], or on a runner made for auditing).
    ///
    /// The records are read from `source` (the same source a run would get: ids without a
    /// stored output, such as records not done or dead-lettered, are skipped; for
    /// [`AuditSample::Ids`] a seekable source is positioned at each id) and processed on
    /// the runner's [`workers`](Runner::workers), each once: a failure (an `Err` of either
    /// kind, or a panic) is counted as failed, not retried. The report lists the lowest few
    /// ids that differed, with both outputs as JSON, and that failed.
    ///
    /// ```
    /// use resumable::{AuditSample, Discard, IdSource, JobOptions, ProcessError, Runner, Store};
    /// # fn main() -> resumable::Result<()> {
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path().join("a.redb"))?;
    /// let job = store.job::<Discard<u64>>("squares", JobOptions::new())?;
    /// let square = |_: resumable::RecordContext, x: &u64| Ok::<_, ProcessError>(x * x);
    /// let report = Runner::new(job).run(IdSource::new(0..100, |id| Ok(id)), square)?;
    /// let all = AuditSample::Share { share: 1.0, seed: 1 };
    /// let audit = Runner::new(report.job).audit(&all, IdSource::new(0..100, |id| Ok(id)), square)?;
    /// assert!(audit.is_deterministic() && audit.matched == 100);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Corrupt`] when a stored output fails its check; [`Error::InvalidArgument`]
    /// when the source fails (nothing was changed: fix the source and audit again).
    pub fn audit<Src, P>(
        &self,
        sample: &AuditSample,
        mut source: Src,
        process: P,
    ) -> Result<AuditReport>
    where
        Src: Source,
        P: Fn(RecordContext, &Src::Record) -> Result<S::Output, ProcessError> + Sync,
    {
        let job = &self.job;
        let workers = self.workers.max(1);
        let report = Mutex::new(AuditReport::default());
        let (task_tx, task_rx) = crossbeam_channel::bounded::<Task<Src::Record>>(4 * workers);
        let wanted: Option<Vec<u64>> = match sample {
            AuditSample::Ids(ids) => {
                let mut ids = ids.clone();
                ids.sort_unstable();
                ids.dedup();
                Some(ids)
            }
            AuditSample::Share { .. } => None,
        };
        super::context::install_quiet_hook();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let task_rx = task_rx.clone();
                let (process, report) = (&process, &report);
                scope.spawn(move || {
                    for (id, record, stored) in task_rx {
                        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            process(RecordContext::new(id, 1), &record)
                        }));
                        tally::<S::Output>(report, id, &stored, outcome);
                    }
                });
            }
            drop(task_rx);
            let fed = feed(job, sample, wanted.as_deref(), &mut source, &task_tx);
            drop(task_tx);
            fed
        })?;
        Ok(report.into_inner())
    }
}

/// Reads the source and hands each picked record with a stored output to the workers.
fn feed<S: Fold, Src: Source>(
    job: &crate::job::Job<S>,
    sample: &AuditSample,
    wanted: Option<&[u64]>,
    source: &mut Src,
    tasks: &crossbeam_channel::Sender<Task<Src::Record>>,
) -> Result<()> {
    let mut next_wanted = 0usize;
    loop {
        if let Some(ids) = wanted {
            let Some(&id) = ids.get(next_wanted) else {
                return Ok(());
            };
            source.seek(id).map_err(|e| source_failed(&e))?;
        }
        let Some(item) = source.next_record() else {
            return Ok(());
        };
        let (id, record) = item.map_err(|e| source_failed(&e))?;
        if let Some(ids) = wanted {
            next_wanted = ids.partition_point(|&w| w <= id);
        }
        if !sample.picks(id) {
            continue;
        }
        let Some(stored) = job.output(id)? else {
            continue;
        };
        let stored = codec::encode(&stored).map_err(|e| Error::Record {
            id,
            source: e.into(),
        })?;
        if tasks.send((id, record, stored)).is_err() {
            return Ok(());
        }
    }
}

fn source_failed(e: &crate::error::BoxError) -> Error {
    Error::InvalidArgument(format!(
        "the audit's source failed: {e}; nothing was changed, fix the source and audit again"
    ))
}

/// Counts one re-run record.
fn tally<O: Serialize + serde::de::DeserializeOwned>(
    report: &Mutex<AuditReport>,
    id: u64,
    stored: &[u8],
    outcome: std::thread::Result<Result<O, ProcessError>>,
) {
    match outcome {
        Err(panic) => report.lock().add_failure(
            id,
            format!("panicked: {}", crate::error::panic_message(&*panic)),
        ),
        Ok(Err(e)) => report.lock().add_failure(id, e.message()),
        Ok(Ok(output)) => match codec::encode(&output) {
            Ok(bytes) if bytes == stored => report.lock().add_match(),
            Ok(_) => {
                let json = |v: &O| serde_json::to_string(v).unwrap_or_else(|e| format!("({e})"));
                let old = codec::decode_output::<O>(id, stored)
                    .map_or_else(|e| format!("(undecodable: {e})"), |v| json(&v));
                report.lock().add_difference(id, old, json(&output));
            }
            Err(e) => report
                .lock()
                .add_failure(id, format!("the output cannot be encoded: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Discard, IdSource, IterSource, JobOptions, Store};

    #[test]
    fn the_runner_audit_finds_drift_failures_and_panics_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("a.redb")).expect("store");
        let job = store
            .job::<Discard<u64>>("j", JobOptions::new())
            .expect("job");
        let double = |_: RecordContext, x: &u64| Ok::<_, ProcessError>(x * 2);
        // Records 0..80 done; 80..100 not.
        let report = Runner::new(job)
            .workers(3)
            .run(IdSource::new(0..80, Ok), double)
            .expect("run");
        let runner = Runner::new(report.job).workers(3);
        let seq = runner.job.last_seq();
        let all = AuditSample::Share {
            share: 1.0,
            seed: 3,
        };
        let good = runner
            .audit(&all, IdSource::new(0..100, Ok), double)
            .expect("audit");
        assert!(good.is_deterministic(), "{good:?}");
        assert_eq!((good.checked, good.matched), (80, 80));

        let drifting = |_: RecordContext, x: &u64| match *x {
            13 => Err(ProcessError::transient("flaky")),
            21 => panic!("boom"),
            x if x % 10 == 7 => Ok(x * 2 + 1),
            x => Ok(x * 2),
        };
        let bad = runner
            .audit(&all, IterSource::new((0..100).map(|id| (id, id))), drifting)
            .expect("audit");
        assert_eq!(
            (bad.checked, bad.matched, bad.differed, bad.failed),
            (80, 70, 8, 2),
            "{bad:?}"
        );
        assert_eq!(
            bad.first_differences
                .iter()
                .map(|d| d.id)
                .collect::<Vec<_>>(),
            vec![7, 17, 27, 37, 47]
        );
        assert_eq!(
            (
                bad.first_differences[0].stored.as_str(),
                bad.first_differences[0].recomputed.as_str()
            ),
            ("14", "15")
        );
        assert_eq!(
            bad.first_failures.iter().map(|f| f.0).collect::<Vec<_>>(),
            vec![13, 21]
        );

        // Explicit ids: a seekable source is positioned at each; undone ids are skipped.
        let read = Mutex::new(Vec::new());
        let ids = runner
            .audit(
                &AuditSample::Ids(vec![90, 5, 7, 5]),
                IdSource::new(0..100, |id| {
                    read.lock().push(id);
                    Ok(id)
                }),
                drifting,
            )
            .expect("audit");
        assert_eq!((ids.checked, ids.matched, ids.differed), (2, 1, 1));
        assert_eq!(*read.lock(), vec![5, 7, 90]);
        assert_eq!(runner.job.last_seq(), seq, "the audit committed nothing");
        assert_eq!(runner.job.done_count(), 80);
    }
}
