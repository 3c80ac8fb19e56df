//! The engine behind `resumable.map`: the Rust `Runner` with a Python callable as its
//! processor.
//!
//! The runner runs on its own thread; the calling (main) thread waits with the GIL released
//! and wakes every 100 ms to check for Ctrl-C (Python delivers signals to the main thread
//! only) and to draw the progress line. Ctrl-C asks the runner to stop: it drains what is
//! in flight, commits it durably and pauses the job; then `KeyboardInterrupt` is raised.
//! Workers take the GIL once per record to call the function and encode its output; the
//! source takes it once per chunk of records; commits and fsyncs never hold it.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use resumable::{
    BoxError, Fold, Job, MaintainOptions, ProcessError, RecordContext, RetryPolicy, RunEnd,
    RunReport, Runner,
    Source, Stats, StatsHandle, StopHandle,
};

use crate::convert;
use crate::errors::PermanentError;
use crate::job::{Handle, Open, PyJob};

/// Records pulled from the Python iterator per GIL acquisition.
const SOURCE_CHUNK: usize = 64;

/// The Python iterator of `(id, record)` pairs as a runner source.
struct PySource {
    iter: Py<PyAny>,
    buffer: VecDeque<(u64, Py<PyAny>)>,
    ended: bool,
    /// The iterator's failure, reported once the records read before it are handed out.
    error: Option<BoxError>,
    /// The Python exception that ended the source, to re-raise after the run.
    failure: Arc<Mutex<Option<PyErr>>>,
}

impl PySource {
    fn refill(&mut self) -> Result<(), BoxError> {
        Python::attach(|py| -> PyResult<()> {
            let iter = self.iter.bind(py);
            for _ in 0..SOURCE_CHUNK {
                let Some(item) = iterator_next(iter)? else {
                    self.ended = true;
                    break;
                };
                let pair: (u64, Py<PyAny>) = item.extract().map_err(|_| {
                    PyTypeError::new_err(
                        "records must yield (id, record) pairs with a non-negative int id",
                    )
                })?;
                self.buffer.push_back(pair);
            }
            Ok(())
        })
        .map_err(|e| {
            let msg = e.to_string();
            *self.failure.lock() = Some(e);
            BoxError::from(msg)
        })
    }
}

fn iterator_next<'py>(iter: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
    match iter.call_method0("__next__") {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyStopIteration>(iter.py()) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Source for PySource {
    type Record = Py<PyAny>;

    fn next_record(&mut self) -> Option<Result<(u64, Py<PyAny>), BoxError>> {
        if self.buffer.is_empty()
            && !self.ended
            && let Err(e) = self.refill()
        {
            self.ended = true;
            self.error = Some(e);
        }
        // Records read before the iterator failed are processed before the failure ends
        // the run.
        match self.buffer.pop_front() {
            Some(pair) => Some(Ok(pair)),
            None => self.error.take().map(Err),
        }
    }
}

/// A Python exception as the runner's failure: `PermanentError` dead-letters at once,
/// anything else is retried.
fn process_error(py: Python<'_>, e: &PyErr) -> ProcessError {
    let name = e
        .get_type(py)
        .name()
        .map_or_else(|_| "Exception".to_owned(), |n| n.to_string());
    let msg = format!("{name}: {}", e.value(py));
    if e.is_instance_of::<PermanentError>(py) {
        ProcessError::permanent(msg)
    } else {
        ProcessError::transient(msg)
    }
}

/// Settings of one `map` run, from the Python wrapper.
pub(crate) struct MapSettings {
    workers: usize,
    retry: RetryPolicy,
    complete: bool,
    progress: bool,
    /// The maintainer's options: the background scrub's rate and pause (docs/SCRUB.md).
    maintain: MaintainOptions,
}

/// The run's result (the job handed back, how it ended, its counters), the exception to
/// raise after it (Ctrl-C, or the iterator's own), and whether Ctrl-C stopped it.
type RunOutcome<S> = (Result<(Job<S>, RunEnd, Stats), PyErr>, Option<PyErr>, bool);

type Encode<O> = fn(&Bound<'_, PyAny>) -> PyResult<O>;

fn run_typed<S: Fold>(
    py: Python<'_>,
    job: Job<S>,
    call: Py<PyAny>,
    iter: Py<PyAny>,
    settings: &MapSettings,
    encode: Encode<S::Output>,
) -> RunOutcome<S> {
    let failure = Arc::new(Mutex::new(None));
    let source = PySource {
        iter,
        buffer: VecDeque::new(),
        ended: false,
        error: None,
        failure: Arc::clone(&failure),
    };
    let runner = Runner::new(job)
        .workers(settings.workers)
        .retry(settings.retry)
        .maintainer(settings.maintain.clone())
        .complete_on_end(settings.complete);
    let stop: StopHandle = runner.stop_handle();
    let stats: StatsHandle = runner.stats_handle();
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let thread = std::thread::Builder::new()
        .name("resumable-map".into())
        .spawn(move || {
            let processor = move |_record: RecordContext,
                                  record: &Py<PyAny>|
                  -> Result<S::Output, ProcessError> {
                Python::attach(|py| {
                    let out = call
                        .bind(py)
                        .call1((record.bind(py),))
                        .map_err(|e| process_error(py, &e))?;
                    // An output JSON cannot hold fails the same way every time: permanent.
                    encode(&out).map_err(|e| {
                        ProcessError::permanent(format!("cannot store the output: {e}"))
                    })
                })
            };
            let result: resumable::Result<RunReport<S>> = runner.run(source, processor);
            let _ = done_tx.send(());
            result
        });
    let thread = match thread {
        Ok(t) => t,
        Err(e) => {
            return (
                Err(crate::errors::IoError::new_err(e.to_string())),
                None,
                false,
            );
        }
    };

    let mut interrupted: Option<PyErr> = None;
    let mut bar = Progress::new(settings.progress);
    loop {
        let finished = py.detach(|| done_rx.recv_timeout(Duration::from_millis(100)).is_ok());
        if finished {
            break;
        }
        if interrupted.is_none()
            && let Err(e) = py.check_signals()
        {
            stop.stop();
            interrupted = Some(e);
        }
        bar.draw(&stats.stats());
    }
    let joined = py.detach(|| thread.join());
    bar.finish(&stats.stats());
    let stopped = interrupted.is_some();
    let result = match joined {
        Ok(Ok(report)) => Ok((report.job, report.end, report.stats)),
        Ok(Err(e)) => Err(crate::errors::to_py(&e)),
        Err(_) => Err(crate::errors::Error::new_err(
            "the map runner thread panicked",
        )),
    };
    let source_error = failure.lock().take();
    (result, interrupted.or(source_error), stopped)
}

/// A one-line progress display on stderr (only when asked: the wrapper asks on a TTY).
struct Progress {
    on: bool,
    last: Option<Instant>,
}

impl Progress {
    fn new(on: bool) -> Self {
        Progress { on, last: None }
    }

    fn line(s: &Stats) -> String {
        let total = s
            .total_records
            .map_or_else(String::new, |t| format!("/{t}"));
        let pct = s
            .total_records
            .filter(|&t| t > 0)
            .map_or_else(String::new, |t| {
                // Floor, so 99.99% never reads 100.0%.
                let tenths = s.records_done.saturating_mul(1000) / t;
                format!(" {}.{}%", tenths / 10, tenths % 10)
            });
        let eta = s
            .eta
            .map_or_else(String::new, |d| format!(" eta {}s", d.as_secs()));
        format!(
            "\r{}{total}{pct} done, {:.0} rec/s, {} dead, {} retries{eta}   ",
            s.records_done, s.rate, s.dead_lettered, s.retries
        )
    }

    fn draw(&mut self, s: &Stats) {
        if !self.on
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        self.last = Some(Instant::now());
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(Self::line(s).as_bytes());
        let _ = err.flush();
    }

    fn finish(&mut self, s: &Stats) {
        if self.on {
            let _ = writeln!(std::io::stderr().lock(), "{}", Self::line(s));
        }
    }
}

fn summary<'py>(py: Python<'py>, end: &RunEnd, s: &Stats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(
        "end",
        match end {
            RunEnd::Finished => "finished",
            RunEnd::Stopped => "stopped",
            RunEnd::SourceFailed(_) => "source_failed",
            RunEnd::AlreadyDone => "already_done",
            _ => "other",
        },
    )?;
    d.set_item("records_committed", s.records_committed)?;
    d.set_item("dead_lettered", s.dead_lettered)?;
    d.set_item("records_acked", s.records_acked)?;
    d.set_item("records_done", s.records_done)?;
    d.set_item("skipped", s.skipped)?;
    d.set_item("retries", s.retries)?;
    d.set_item("commits", s.commits)?;
    d.set_item("fsyncs", s.fsyncs)?;
    d.set_item("elapsed", s.elapsed.as_secs_f64())?;
    d.set_item("rate", s.rate)?;
    d.set_item("scrub_passes", s.scrub_passes)?;
    d.set_item("scrub_bytes", s.scrub_bytes)?;
    d.set_item("scrub_damaged", s.scrub_damaged)?;
    Ok(d)
}

/// Runs `call(record)` over `(id, record)` pairs from `iter` on `workers` threads through
/// the Rust runner, committing outputs into `job`. Returns a summary dict.
#[pyfunction]
#[pyo3(signature = (job, call, iter, *, workers, attempts, base_delay, max_delay, complete, progress, scrub_rate, scrub_every))]
pub(crate) fn run_map<'py>(
    py: Python<'py>,
    job: &Bound<'py, PyJob>,
    call: Py<PyAny>,
    iter: Py<PyAny>,
    workers: usize,
    attempts: u32,
    base_delay: f64,
    max_delay: f64,
    complete: bool,
    progress: bool,
    scrub_rate: u64,
    scrub_every: f64,
) -> PyResult<Bound<'py, PyDict>> {
    if !(scrub_every > 0.0 && scrub_every.is_finite()) {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "scrub_every must be a positive number of seconds, not {scrub_every}"
        )));
    }
    let retry = RetryPolicy::new()
        .max_attempts(attempts)
        .base_delay(Duration::from_secs_f64(base_delay.max(0.0)))
        .max_delay(Duration::from_secs_f64(max_delay.max(0.0)));
    let settings = MapSettings {
        workers,
        retry,
        complete,
        progress,
        maintain: MaintainOptions::new()
            .scrub_rate(scrub_rate)
            .scrub_every(Duration::from_secs_f64(scrub_every)),
    };
    let pyjob = job.get();
    let (handle, policy) = pyjob.take(py)?.into_parts();
    // The handle goes back into the Job object whatever happens (a commit error drops it:
    // the store must then be reopened).
    macro_rules! go {
        ($rebuild:expr, $j:expr, $encode:expr) => {{
            let (result, error, stopped) = run_typed(py, $j, call, iter, &settings, $encode);
            match result {
                Ok((j, end, stats)) => {
                    pyjob.put_back(py, Open::new($rebuild(j), policy));
                    (Ok((end, stats)), error, stopped)
                }
                Err(e) => (Err(e), error, stopped),
            }
        }};
    }
    let (result, error, _stopped) = match handle {
        Handle::Json(j) => go!(Handle::Json, j, convert::to_json),
        Handle::Bytes(j) => go!(Handle::Bytes, j, convert::to_bytes),
        Handle::Fold(j, initial) => go!(|j| Handle::Fold(j, initial), j, convert::to_json),
    };
    let (end, stats) = result?;
    if let Some(e) = error {
        // Ctrl-C (the job is paused, everything finished is durable) or the iterator's own
        // exception (the job is paused too).
        return Err(e);
    }
    summary(py, &end, &stats)
}
