//! The parallel runner: workers compute outputs, one committer group-commits them, a
//! maintainer snapshots in the background, and records are acknowledged once durable.
//!
//! See [`Runner`] for the threads and channels.

mod adaptive;
mod audit;
mod committer;
mod context;
mod feeder;
mod retry;
mod source;
mod stats;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::error::{BoxError, Error, Result};
use crate::job::{Fold, Job};
use crate::lifecycle::JobState;
use crate::maintain::Maintainer;

pub use crate::maintain::MaintainOptions;
pub use adaptive::AdaptivePolicy;
pub use context::RecordContext;
pub use retry::{ProcessError, RetryPolicy};
pub use source::{IdSource, IterSource, Source};
pub use stats::{Stats, StatsHandle};

use feeder::{FeederCtx, WorkerCtx};
use source::DoneIndex;
use stats::Recorder;

/// One durable commit's records, delivered to [`Runner::on_durable`].
///
/// Delivery is **at least once, in commit order; deduplicate by `seq`**. During a run each
/// commit is announced once, after the commit (or flush) that made it durable. A crash can
/// come between a commit becoming durable and its announcement, so the runner records how
/// far it announced (with the progress mark, every few hundred commits, and at every stop)
/// and, when the next run starts, announces again every durable commit after that point
/// before it processes anything new (those acks have `replayed` set). A consumer that must
/// act exactly once keeps the last `seq` it acted on and skips acks at or below it; or it
/// reads the store itself ([`Store::for_each_output_since`](crate::Store::for_each_output_since))
/// with its own cursor: the store is the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DurableAck {
    /// The commit's sequence number; every commit up to it is durable.
    pub seq: u64,
    /// Ids whose outputs this commit stored, as ascending ranges.
    pub outputs: Vec<Range<u64>>,
    /// Ids this commit dead-lettered.
    pub dead_letters: Vec<u64>,
    /// Announced again at the start of a run, because the last run may have died before
    /// announcing it (or was run without an `on_durable` callback).
    pub replayed: bool,
}

impl DurableAck {
    /// Records acknowledged (outputs and dead letters).
    #[must_use]
    pub fn records(&self) -> u64 {
        self.outputs.iter().map(|r| r.end - r.start).sum::<u64>() + self.dead_letters.len() as u64
    }
}

/// Asks a run to stop cleanly: stop feeding, drain what is in flight, commit it durably, and
/// record the job as paused. Clone it into a Ctrl-C handler. Records handed out but not yet
/// processed, and records waiting for a retry, are left for the next run.
///
/// A second request changes nothing; a process that must die at once can just exit: that
/// is a crash, and the next run resumes from the last durable commit.
#[derive(Clone, Debug)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    wake_tx: Sender<()>,
    wake: Receiver<()>,
}

impl Default for StopHandle {
    fn default() -> Self {
        let (wake_tx, wake) = crossbeam_channel::bounded(1);
        StopHandle {
            flag: Arc::new(AtomicBool::new(false)),
            wake_tx,
            wake,
        }
    }
}

impl StopHandle {
    /// Requests the stop. Returns at once; the run ends when it has drained.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Whether a stop was requested.
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Wakes the feeder so it notices a stop or an abort.
    pub(crate) fn wake(&self) {
        let _ = self.wake_tx.try_send(());
    }
}

/// How a run ended (the job's lifecycle after it is described on each variant).
#[derive(Debug)]
#[non_exhaustive]
pub enum RunEnd {
    /// The source ended and every record it gave is done. The job is `Completed` if
    /// [`Runner::complete_on_end`] was set, else `Paused`.
    Finished,
    /// A [`StopHandle`] stopped the run. The job is `Paused`.
    Stopped,
    /// The source returned an error; in-flight records were committed. The job is `Paused`.
    SourceFailed(BoxError),
    /// The job was already `Completed`: nothing was read or processed, nothing changed.
    AlreadyDone,
}

/// What a run did, with the job handed back.
#[derive(Debug)]
#[non_exhaustive]
pub struct RunReport<S: Fold> {
    /// The job, for inspection, [`Job::complete`], or another run.
    pub job: Job<S>,
    /// How the run ended.
    pub end: RunEnd,
    /// The run's counters at its end.
    pub stats: Stats,
}

/// Most records in one batch from the feeder to a worker, or from a worker to the committer.
const MAX_BATCH: usize = 64;
/// Longest an outcome waits on its worker for a batch to fill (and at most a quarter of the
/// job's `max_group_delay`).
const MAX_FLUSH_AFTER: std::time::Duration = std::time::Duration::from_millis(2);

type AckFn = Box<dyn FnMut(&DurableAck) + Send>;

/// Runs a job's records through a processor on N worker threads, group-committing their
/// outputs exactly once.
///
/// ```text
///  caller thread            worker threads (N)              committer thread
///  ┌────────┐  tasks (bounded) ┌─────────┐ outcomes (bounded) ┌───────────┐ durable ┌──────────┐
///  │ feeder ├────────────────▶│ process ├──────────────────▶│ Job<S>    ├────────▶│on_durable│
///  │ source │◀────────────────┤ (catch  │                    │ (group    │  acks   └──────────┘
///  │ retries│ feedback        │  panic) │                    │  commit)  ├──▶ maintainer thread
///  └────────┘ (unbounded)      └─────────┘                    └───────────┘    (snapshots, retention,
///                                                                               compaction)
/// ```
/// The feeder reads the source (skipping and seeking past done ids), keeps transient
/// failures in a delay queue until their retry is due, and stops on request. Workers never
/// wait on fsync: they hand outcomes to the committer and take the next record. The
/// committer owns the [`Job`] (redb has one writer) and is the only thread that commits.
///
/// ```
/// use resumable::{Discard, IdSource, JobOptions, ProcessError, Runner, Store};
/// # fn main() -> resumable::Result<()> {
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path().join("run.redb"))?;
/// let job = store.job::<Discard<u64>>("squares", JobOptions::new())?;
/// let source = IdSource::new(0..1000, |id| Ok(id));
/// let report = Runner::new(job)
///     .workers(2)
///     .complete_on_end(true)
///     .run(source, |_id, x: &u64| Ok::<_, ProcessError>(x * x))?;
/// assert_eq!(report.job.done_count(), 1000);
/// # Ok(()) }
/// ```
#[must_use]
pub struct Runner<S: Fold> {
    job: Job<S>,
    workers: usize,
    queue_capacity: Option<usize>,
    retry: RetryPolicy,
    adaptive: Option<AdaptivePolicy>,
    maintain: Option<MaintainOptions>,
    complete_on_end: bool,
    panics_are_permanent: bool,
    on_durable: Option<AckFn>,
    seed: u64,
    stop: StopHandle,
    stats: StatsHandle,
}

impl<S: Fold> std::fmt::Debug for Runner<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("job", &self.job)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl<S: Fold> Runner<S> {
    /// A runner over `job` (taken over until the run ends; [`RunReport::job`] gives it
    /// back).
    pub fn new(job: Job<S>) -> Self {
        let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Runner {
            job,
            workers,
            queue_capacity: None,
            retry: RetryPolicy::default(),
            adaptive: None,
            maintain: Some(MaintainOptions::default()),
            complete_on_end: false,
            panics_are_permanent: true,
            on_durable: None,
            seed: 0x5eed,
            stop: StopHandle::default(),
            stats: StatsHandle::default(),
        }
    }

    /// Worker threads. Default: the machine's available parallelism; at least 1.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Capacity of each bounded channel (records queued for workers, outcomes queued for
    /// the committer), in records; it bounds memory when one side outruns the other. At most
    /// twice this plus the workers are in flight. Records travel in small batches (up to 64,
    /// and at most this over twice the workers). Default: 64 per worker, at least 256, and
    /// unless the policy is fixed ([`self_clocking(false)`](crate::CommitPolicy::self_clocking))
    /// at least the policy's `max_group_records`, so a whole group can queue while the
    /// previous one commits.
    pub fn queue_capacity(mut self, records: usize) -> Self {
        self.queue_capacity = Some(records.max(1));
        self
    }

    /// Retries of transient failures. Default: [`RetryPolicy::default`].
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Size groups adaptively (see [`AdaptivePolicy`]) instead of by the job's fixed
    /// `max_group_records`; `max_group_bytes`, `max_group_delay` and the durability still
    /// apply. Default: off.
    pub fn adaptive(mut self, policy: AdaptivePolicy) -> Self {
        self.adaptive = Some(policy);
        self
    }

    /// Background maintainer settings. Default: on, with [`MaintainOptions::default`]; the
    /// maintainer then takes over the job's snapshots for the run.
    pub fn maintainer(mut self, options: MaintainOptions) -> Self {
        self.maintain = Some(options);
        self
    }

    /// Run without a maintainer: snapshots are written on the commit path every
    /// [`JobOptions::snapshot_every_commits`](crate::JobOptions::snapshot_every_commits),
    /// and nothing compacts.
    pub fn without_maintainer(mut self) -> Self {
        self.maintain = None;
        self
    }

    /// Mark the job `Completed` when the source ends and every record is done. Default:
    /// `false`: the job is left `Paused`, so more input can be run later.
    pub fn complete_on_end(mut self, complete: bool) -> Self {
        self.complete_on_end = complete;
        self
    }

    /// Treat a panic in the processor as a permanent failure (dead-letter at once, with the
    /// panic message as the error). Default: `true`: a panic is a bug in the processor,
    /// and one that depends on the record comes back on every retry, so retrying costs the
    /// retry budget and delays for nothing. Set `false` when panics can be transient (a
    /// library that panics on a timeout); they are then retried like transient errors.
    /// Either way each panic is logged once through `tracing` (`warn`, with the record id
    /// and attempt) instead of by the default panic hook.
    pub fn panics_are_permanent(mut self, permanent: bool) -> Self {
        self.panics_are_permanent = permanent;
        self
    }

    /// Called on the committer thread with the records each durable commit made done, never
    /// before their commit is durable. Keep it quick (send to a channel): the next commit
    /// waits for it. Default: none.
    pub fn on_durable(mut self, f: impl FnMut(&DurableAck) + Send + 'static) -> Self {
        self.on_durable = Some(Box::new(f));
        self
    }

    /// Seed of the retry jitter. Default: a fixed seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// A handle that stops the run (see [`StopHandle`]).
    #[must_use]
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// A handle that reads the run's [`Stats`] at any time.
    #[must_use]
    pub fn stats_handle(&self) -> StatsHandle {
        self.stats.clone()
    }

    /// Runs until the source ends and every record is done (as an output or a dead
    /// letter), or until stopped. Returns the job and how the run ended.
    ///
    /// `process` is called on worker threads, possibly concurrently, once per attempt of
    /// each record not yet done; it should be deterministic if the state must be (a record
    /// processed but not committed before a crash is processed again on resume). A panic in
    /// it is caught and counts as that record's failure. After the run the job is `Paused`
    /// or `Completed` (see [`RunEnd`]).
    ///
    /// # Errors
    /// [`Error::Lifecycle`] if the job failed (a completed job ends at once with
    /// [`RunEnd::AlreadyDone`]); storage errors from a
    /// commit (the run stops, and the job is dropped: reopen the store to resume from the
    /// last durable commit); [`Error::Panicked`] if `Fold::apply` panics.
    pub fn run<Src, P>(self, mut source: Src, process: P) -> Result<RunReport<S>>
    where
        Src: Source,
        P: Fn(RecordContext, &Src::Record) -> Result<S::Output, ProcessError> + Sync,
    {
        let Runner {
            mut job,
            workers,
            queue_capacity,
            retry,
            adaptive,
            maintain,
            complete_on_end,
            panics_are_permanent,
            mut on_durable,
            seed,
            stop,
            stats,
        } = self;
        let lifecycle = job.lifecycle();
        if lifecycle == JobState::Completed {
            tracing::info!(job = %job.name(), "job already completed; nothing to run");
            let stats = stats.stats();
            return Ok(RunReport {
                job,
                end: RunEnd::AlreadyDone,
                stats,
            });
        }
        if !lifecycle.accepts_records() {
            return Err(Error::Lifecycle {
                job: job.name().to_owned(),
                from: lifecycle,
                to: JobState::Running,
            });
        }
        let name = job.name().to_owned();
        context::install_quiet_hook();
        if let Some(f) = on_durable.as_mut() {
            announce_unannounced(&mut job, &mut **f)?;
        }
        let capacity = queue_capacity.unwrap_or_else(|| default_capacity(&job, workers));
        let done = DoneIndex::new(job.progress().ranges());
        tracing::info!(job = %name, seq = job.last_seq(), done = job.done_count(), recoveries = job.recoveries(), workers, "run started");

        let job_every = job.options().snapshot_every_commits;
        let (maintainer, snapshot_every, snapshot_interval) = match &maintain {
            Some(opts) => {
                let keep = opts.keep_snapshots.unwrap_or(job.options().keep_snapshots);
                let writer = job.hand_off_snapshots(keep);
                let m = match Maintainer::start(writer, &name, opts.clone()) {
                    Ok(m) => m,
                    Err(e) => {
                        job.take_back_snapshots();
                        return Err(e);
                    }
                };
                (
                    Some(m),
                    opts.snapshot_every_commits.unwrap_or(job_every),
                    opts.snapshot_interval,
                )
            }
            None => (None, 0, std::time::Duration::MAX),
        };
        stats.inner.lock().started = Some(std::time::Instant::now());

        let abort = AtomicBool::new(false);
        let cancel = AtomicBool::new(false);
        let recorder: &Mutex<Recorder> = &stats.inner;
        // Tasks and outcomes travel in batches of up to `batch` records, so a hand-off (and
        // the wake-up it may cost) is shared by several records; the channels hold at most
        // `capacity` records each.
        let batch = (capacity / (2 * workers)).clamp(1, MAX_BATCH);
        let (task_tx, task_rx) = crossbeam_channel::bounded((capacity / batch).max(1));
        let (outcome_tx, outcome_rx) = crossbeam_channel::bounded((capacity / batch).max(1));
        let flush_after = job
            .options()
            .commit_policy
            .max_group_delay
            .min(MAX_FLUSH_AFTER * 4)
            / 4;
        let (feedback_tx, feedback_rx) = crossbeam_channel::unbounded();
        // The committer's view of the load: no task queued means the workers keep up.
        let task_probe = task_rx.clone();
        let workers_idle = move || task_probe.is_empty();

        let worker_ctx = WorkerCtx {
            process: &process,
            retry,
            panics_are_permanent,
            cancel: &cancel,
            recorder,
            job: &name,
            batch,
            flush_after,
        };
        let (end, committed) = std::thread::scope(|scope| {
            let ctx = committer::CommitterCtx {
                maintainer: maintainer.as_ref(),
                snapshot_every,
                snapshot_interval,
                adaptive,
                workers,
                on_durable: on_durable
                    .as_mut()
                    .map(|f| &mut **f as &mut (dyn FnMut(&DurableAck) + Send)),
                recorder,
                abort: &abort,
                stop: &stop,
                workers_idle: &workers_idle,
            };
            let job = &mut job;
            let committer = scope.spawn(move || committer::run(job, &outcome_rx, ctx));
            for _ in 0..workers {
                let (tasks, outcomes, feedback) =
                    (task_rx.clone(), outcome_tx.clone(), feedback_tx.clone());
                let worker_ctx = &worker_ctx;
                scope.spawn(move || feeder::work(worker_ctx, &tasks, &outcomes, &feedback));
            }
            drop((task_rx, outcome_tx, feedback_tx));
            let feeder_ctx = FeederCtx {
                done: &done,
                retry,
                max_in_flight: 2 * capacity + workers,
                stop: &stop,
                abort: &abort,
                cancel: &cancel,
                recorder,
                seed,
                job: &name,
                batch,
            };
            let end = feeder::feed(&feeder_ctx, &mut source, task_tx, &feedback_rx);
            let result = committer
                .join()
                .unwrap_or_else(|p| Err(Error::from_panic("the committer", p.as_ref())));
            (end, result)
        });

        // The maintainer finishes the snapshot it holds before the final durable write
        // below (the lifecycle change) makes it durable.
        let report = maintainer.map(Maintainer::shutdown);
        if maintain.is_some() {
            job.take_back_snapshots();
        }
        committed?;
        job.flush()?;
        if complete_on_end && matches!(end, RunEnd::Finished) {
            job.complete()?;
        } else if job.lifecycle() == JobState::Running {
            job.pause()?;
        }
        {
            let mut rec = stats.inner.lock();
            rec.stats.records_at_risk = job.at_risk();
            rec.stats.records_done = job.done_count();
            rec.stats.total_records = job.total_records();
            if let Some(r) = report {
                rec.stats.snapshots = r.snapshots;
                rec.stats.snapshots_retired = r.retired;
                rec.stats.compactions = r.compactions;
                rec.stats.last_compaction = r.last_compaction;
            }
        }
        let stats = stats.stats();
        tracing::info!(job = %name, seq = job.last_seq(), committed = stats.records_committed, dead = stats.dead_lettered, commits = stats.commits, end = ?end, "run ended");
        Ok(RunReport { job, end, stats })
    }
}

/// The default capacity of each channel: 64 records per worker, at least 256; under a
/// policy that may self-clock (the default does) at least `max_group_records` too. A self-clocking group is what
/// queued while the previous commit ran, and records can only queue as far as the channels
/// reach: with less room than a group, a slow fsync would stall the workers with every group
/// smaller than the limit, and saturated throughput would fall below the fixed policy's.
fn default_capacity<S: Fold>(job: &Job<S>, workers: usize) -> usize {
    let policy = &job.options().commit_policy;
    let capacity = (workers * 64).max(256);
    if policy.clocking == crate::job::Clocking::Limits {
        capacity
    } else {
        capacity.max(policy.max_group_records)
    }
}

/// Delivers again every durable commit after the last one recorded as announced (all of
/// them when none was recorded), in commit order, before a run processes anything.
fn announce_unannounced<S: Fold>(
    job: &mut Job<S>,
    on_durable: &mut (dyn FnMut(&DurableAck) + Send),
) -> Result<()> {
    let after = job.announced_seq().unwrap_or(0);
    let last = job.durable_seq();
    if after >= last {
        return Ok(());
    }
    let mut announced = after;
    let delivered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        job.commits_after(after, |seq, outputs, dead| {
            if seq > last {
                return Ok(());
            }
            on_durable(&DurableAck {
                seq,
                outputs: outputs.iter().map(|&(s, e)| s..e).collect(),
                dead_letters: dead.to_vec(),
                replayed: true,
            });
            announced = seq;
            Ok(())
        })
    }))
    .unwrap_or_else(|p| Err(Error::from_panic("the on_durable callback", p.as_ref())));
    if announced > after {
        job.record_announced(announced);
        tracing::info!(job = %job.name(), from = after + 1, to = announced, "durable commits announced again after a restart");
    }
    delivered
}
