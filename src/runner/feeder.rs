//! The feeder (on the caller's thread) and the workers: records flow from the source to the
//! workers over a bounded channel, outcomes from the workers to the committer over another,
//! and each worker tells the feeder when it is done with a record (or wants it retried)
//! over an unbounded feedback channel.
//!
//! Why this shape cannot deadlock: the only blocking sends are feeder -> workers and
//! workers -> committer, and the committer never sends to either; the feedback channel
//! closes the loop back to the feeder, and it is unbounded so a worker never waits on it.
//! It stays small anyway: at most one message per record in flight, and the feeder keeps
//! at most `max_in_flight` records out (handed to workers or waiting for a retry).

use std::collections::BinaryHeap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError, select};
use parking_lot::Mutex;

use super::context::{RecordContext, quietly};
use super::retry::{Jitter, ProcessError, RetryPolicy};
use super::source::{DoneIndex, Source};
use super::stats::Recorder;
use super::{RunEnd, StopHandle};
use crate::error::{BoxError, panic_message};

/// One record on its way to a worker.
pub(crate) struct Task<R> {
    pub id: u64,
    pub record: R,
    /// 1 for the first try.
    pub attempt: u32,
}

/// What a worker hands the committer: a record's final result.
pub(crate) enum Outcome<O> {
    Output {
        id: u64,
        output: O,
        /// When the output was ready (for acknowledgement latency).
        ready: Instant,
        /// Processing time on the worker.
        busy: Duration,
    },
    Dead {
        id: u64,
        attempts: u32,
        error: String,
        ready: Instant,
        busy: Duration,
    },
}

/// What a worker tells the feeder about a task it took.
pub(crate) enum Feedback<R> {
    /// This many outcomes went to the committer.
    Settled(usize),
    /// This many were dropped unprocessed because the run is stopping (or their outcomes
    /// could not be handed over because the committer is gone).
    Abandoned(usize),
    /// It failed transiently and should be tried again.
    Retry { task: Task<R>, error: String },
}

/// A task waiting for its retry time; the heap pops the earliest first.
struct Delayed<R> {
    due: Instant,
    order: u64,
    task: Task<R>,
}

impl<R> PartialEq for Delayed<R> {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.order) == (other.due, other.order)
    }
}
impl<R> Eq for Delayed<R> {}
impl<R> PartialOrd for Delayed<R> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<R> Ord for Delayed<R> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.due, other.order).cmp(&(self.due, self.order))
    }
}

/// The worker side of a run.
pub(crate) struct WorkerCtx<'a, P> {
    pub process: &'a P,
    pub retry: RetryPolicy,
    pub panics_are_permanent: bool,
    /// Set when the run is stopping: queued tasks are dropped, not processed.
    pub cancel: &'a AtomicBool,
    pub recorder: &'a Mutex<Recorder>,
    pub job: &'a str,
    /// Most outcomes a worker hands over at once.
    pub batch: usize,
    /// Longest an outcome waits on its worker for others to join its batch.
    pub flush_after: Duration,
}

/// A worker's loop: until the feeder closes the task channel.
///
/// Tasks arrive in batches and outcomes leave in batches (one channel operation, and at most
/// one wake-up of the committer, per batch rather than per record). An outcome is never held
/// for long: the batch goes out when it has `ctx.batch` outcomes, when its oldest outcome
/// has waited `ctx.flush_after` or a record took that long itself (unless the committer's
/// inbox is full: then it waits to join a fuller batch), and always before the worker would
/// block waiting for input.
pub(crate) fn work<R, O, P>(
    ctx: &WorkerCtx<'_, P>,
    tasks: &Receiver<Vec<Task<R>>>,
    outcomes: &Sender<Vec<Outcome<O>>>,
    feedback: &Sender<Feedback<R>>,
) where
    P: Fn(RecordContext, &R) -> Result<O, ProcessError> + Sync,
{
    let mut out: Vec<Outcome<O>> = Vec::with_capacity(ctx.batch);
    let mut oldest: Option<Instant> = None;
    // The outcome goes first: once the feeder hears "settled" it may end the run.
    // With `wait` false, a full inbox (the committer is busy) keeps the outcomes here to
    // join the next batch, so small batches never fill the committer's inbox.
    let flush = |out: &mut Vec<Outcome<O>>, oldest: &mut Option<Instant>, wait: bool| {
        if out.is_empty() {
            *oldest = None;
            return;
        }
        let n = out.len();
        let batch = std::mem::replace(out, Vec::with_capacity(ctx.batch));
        let sent = if wait {
            outcomes.send(batch).is_ok()
        } else {
            match outcomes.try_send(batch) {
                Ok(()) => true,
                Err(TrySendError::Full(batch)) => {
                    *out = batch;
                    return;
                }
                Err(TrySendError::Disconnected(_)) => false,
            }
        };
        *oldest = None;
        let _ = feedback.send(if sent {
            Feedback::Settled(n)
        } else {
            Feedback::Abandoned(n)
        });
    };
    loop {
        let batch = match tasks.try_recv() {
            Ok(batch) => batch,
            Err(TryRecvError::Empty) => {
                // About to wait for input: nothing may sit here meanwhile.
                flush(&mut out, &mut oldest, true);
                match tasks.recv() {
                    Ok(batch) => batch,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        let mut abandoned = 0;
        for task in batch {
            if ctx.cancel.load(Ordering::SeqCst) {
                abandoned += 1;
                continue;
            }
            let started = Instant::now();
            let record_ctx = RecordContext::new(task.id, task.attempt);
            let result = quietly(|| {
                catch_unwind(AssertUnwindSafe(|| (ctx.process)(record_ctx, &task.record)))
            })
                .unwrap_or_else(|payload| {
                    ctx.recorder.lock().stats.panics += 1;
                    let message =
                        format!("processor panicked: {}", panic_message(payload.as_ref()));
                    tracing::warn!(job = ctx.job, id = task.id, attempt = task.attempt, error = %message, "panic caught in the processor");
                    Err(if ctx.panics_are_permanent {
                        ProcessError::permanent(message)
                    } else {
                        ProcessError::transient(message)
                    })
                });
            let ready = Instant::now();
            let busy = ready - started;
            match result {
                Ok(output) => out.push(Outcome::Output {
                    id: task.id,
                    output,
                    ready,
                    busy,
                }),
                Err(e) if ctx.retry.retries_after(task.attempt, &e) => {
                    let error = e.message();
                    let _ = feedback.send(Feedback::Retry { task, error });
                    continue;
                }
                Err(e) => {
                    tracing::info!(job = ctx.job, id = task.id, attempts = task.attempt, error = %e, "record dead-lettered");
                    out.push(Outcome::Dead {
                        id: task.id,
                        attempts: task.attempt,
                        error: e.message(),
                        ready,
                        busy,
                    });
                }
            }
            let first = *oldest.get_or_insert(ready);
            if out.len() >= ctx.batch {
                flush(&mut out, &mut oldest, true);
            } else if busy >= ctx.flush_after
                || ready.saturating_duration_since(first) >= ctx.flush_after
            {
                flush(&mut out, &mut oldest, false);
            }
        }
        if abandoned > 0 {
            let _ = feedback.send(Feedback::Abandoned(abandoned));
        }
    }
    flush(&mut out, &mut oldest, true);
}

/// The feeder side of a run.
pub(crate) struct FeederCtx<'a> {
    pub done: &'a DoneIndex,
    pub retry: RetryPolicy,
    pub max_in_flight: usize,
    pub stop: &'a StopHandle,
    /// Set by the committer when it failed.
    pub abort: &'a AtomicBool,
    pub cancel: &'a AtomicBool,
    pub recorder: &'a Mutex<Recorder>,
    pub seed: u64,
    pub job: &'a str,
    /// Most tasks sent to the workers at once.
    pub batch: usize,
}

/// Feeds the workers until the source ends (and every record is settled) or the run stops.
/// Drops `tasks` on return, which ends the workers.
pub(crate) fn feed<Src: Source>(
    ctx: &FeederCtx<'_>,
    source: &mut Src,
    tasks: Sender<Vec<Task<Src::Record>>>,
    feedback: &Receiver<Feedback<Src::Record>>,
) -> RunEnd {
    // Tasks read but not sent yet; counted in `outstanding`.
    let mut batch: Vec<Task<Src::Record>> = Vec::with_capacity(ctx.batch);
    let mut heap: BinaryHeap<Delayed<Src::Record>> = BinaryHeap::new();
    let mut order = 0u64;
    let mut jitter = Jitter::new(ctx.seed);
    let mut outstanding = 0usize;
    let mut source_done = false;
    let mut end = RunEnd::Finished;
    let mut stopping = false;

    let mut on_feedback = |fb: Feedback<Src::Record>,
                           outstanding: &mut usize,
                           heap: &mut BinaryHeap<Delayed<Src::Record>>| {
        let (task, error) = match fb {
            Feedback::Settled(n) | Feedback::Abandoned(n) => {
                *outstanding -= n;
                return;
            }
            Feedback::Retry { task, error } => {
                *outstanding -= 1;
                (task, error)
            }
        };
        let delay = ctx.retry.delay(task.attempt, jitter.unit());
        tracing::debug!(job = ctx.job, id = task.id, attempt = task.attempt, ?delay, %error, "record will be retried");
        ctx.recorder.lock().stats.retries += 1;
        order += 1;
        heap.push(Delayed {
            due: Instant::now() + delay,
            order,
            task: Task {
                attempt: task.attempt + 1,
                ..task
            },
        });
    };

    // Skip what is done before the first read.
    let seek = |source: &mut Src, to: u64| -> Result<(), BoxError> {
        if source.seek(to)? {
            ctx.recorder.lock().stats.seeks += 1;
        }
        Ok(())
    };
    if let Some(to) = ctx.done.done_until(0)
        && let Err(e) = seek(source, to)
    {
        end = RunEnd::SourceFailed(e);
        source_done = true;
    }

    loop {
        while let Ok(fb) = feedback.try_recv() {
            on_feedback(fb, &mut outstanding, &mut heap);
        }
        if !stopping && (ctx.stop.is_stopped() || ctx.abort.load(Ordering::SeqCst)) {
            stopping = true;
            end = RunEnd::Stopped;
        }
        if stopping {
            // Records waiting for a retry are simply not settled: the next run takes them;
            // nor are records read but not sent yet.
            ctx.cancel.store(true, Ordering::SeqCst);
            heap.clear();
            outstanding -= batch.len();
            batch.clear();
            source_done = true;
        }
        if source_done && outstanding == 0 && heap.is_empty() {
            break;
        }

        let can_take = heap.peek().is_some_and(|d| d.due <= Instant::now())
            || (!source_done && outstanding + heap.len() < ctx.max_in_flight);
        if can_take && batch.len() < ctx.batch {
            let next = if heap.peek().is_some_and(|d| d.due <= Instant::now()) {
                heap.pop().map(|d| d.task)
            } else {
                match source.next_record() {
                    None => {
                        source_done = true;
                        None
                    }
                    Some(Err(e)) => {
                        tracing::error!(job = ctx.job, error = %e, "the source failed; stopping the run");
                        end = RunEnd::SourceFailed(e);
                        source_done = true;
                        None
                    }
                    Some(Ok((id, record))) => {
                        if let Some(to) = ctx.done.done_until(id) {
                            ctx.recorder.lock().stats.skipped += 1;
                            if let Err(e) = seek(source, to) {
                                end = RunEnd::SourceFailed(e);
                                source_done = true;
                            }
                            None
                        } else {
                            // Jump over a done range that starts right after this record, so a
                            // seekable source never loads a record only to skip it.
                            if let Some(to) = id.checked_add(1).and_then(|n| ctx.done.done_until(n))
                                && let Err(e) = seek(source, to)
                            {
                                end = RunEnd::SourceFailed(e);
                                source_done = true;
                            }
                            Some(Task {
                                id,
                                record,
                                attempt: 1,
                            })
                        }
                    }
                }
            };
            if let Some(task) = next {
                batch.push(task);
                outstanding += 1;
            }
            // While the workers have work queued, fill the batch; when they may be idle,
            // send what there is at once.
            if batch.is_empty() || (batch.len() < ctx.batch && !tasks.is_empty()) {
                continue;
            }
        } else if batch.is_empty() {
            // Nothing to send now: wait for feedback, a retry coming due, or a stop.
            let wait = heap.peek().map_or(Duration::from_hours(1), |d| {
                d.due.saturating_duration_since(Instant::now())
            });
            select! {
                recv(feedback) -> fb => match fb {
                    Ok(fb) => on_feedback(fb, &mut outstanding, &mut heap),
                    // Every worker is gone: nothing in flight can come back.
                    Err(_) => break,
                },
                recv(ctx.stop.wake) -> _ => {},
                default(wait) => {},
            }
            continue;
        }

        // A blocked send must not delay a stop: the stop wakes this select, and the unsent
        // tasks are dropped at the top of the loop (not settled, so the next run takes them).
        let sending = batch.len();
        let mut sent = false;
        select! {
            send(tasks, std::mem::replace(&mut batch, Vec::with_capacity(ctx.batch))) -> r => {
                if r.is_err() {
                    break;
                }
                sent = true;
            },
            recv(ctx.stop.wake) -> _ => {},
        }
        if !sent && batch.is_empty() {
            // The batch was moved into the send that was not chosen, and is gone.
            outstanding -= sending;
        }
    }
    drop(tasks);
    // Let late feedback drain so no worker can block (the channel is unbounded anyway).
    while feedback.try_recv().is_ok() {}
    end
}
