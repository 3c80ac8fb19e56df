//! `resumable.Job`: one open job, mirroring the Rust `Job`.
//!
//! The handle lives behind a mutex so the GIL can be released around anything that may
//! commit (a commit fsyncs): other Python threads run meanwhile. A caller that finds the
//! mutex busy waits for it with the GIL released too, so a slow commit never blocks the
//! interpreter.

use std::time::Instant;

use parking_lot::{Mutex, MutexGuard};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use resumable::{Bytes, CommitPolicy, Discard, Job, Json, Submission};

use crate::convert;
use crate::errors::{self, IntoPy as _};
use crate::fold::JsonState;

/// What a job stores per record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutputKind {
    Json,
    Bytes,
}

impl OutputKind {
    pub(crate) fn parse(text: &str) -> PyResult<Self> {
        match text {
            "json" => Ok(OutputKind::Json),
            "bytes" => Ok(OutputKind::Bytes),
            other => Err(PyValueError::new_err(format!(
                "output must be \"json\" or \"bytes\", not {other:?}"
            ))),
        }
    }

    /// The kind a stored job has, from the state type name it recorded.
    pub(crate) fn of_state_type(state_type: &str) -> Option<Self> {
        if state_type == Json::discard_type_name() {
            Some(OutputKind::Json)
        } else if state_type == <Discard<Bytes> as resumable::Fold>::type_name() {
            Some(OutputKind::Bytes)
        } else {
            None
        }
    }
}

/// One record's output, encoded for the job's kind.
pub(crate) enum Value {
    Json(Json),
    Bytes(Bytes),
}

impl Value {
    pub(crate) fn encode(kind: OutputKind, value: &Bound<'_, PyAny>) -> PyResult<Value> {
        Ok(match kind {
            OutputKind::Json => Value::Json(convert::to_json(value)?),
            OutputKind::Bytes => Value::Bytes(convert::to_bytes(value)?),
        })
    }

    fn len(&self) -> usize {
        match self {
            Value::Json(j) => j.as_str().len(),
            Value::Bytes(b) => b.len(),
        }
    }
}

/// The Rust job, by output kind.
pub(crate) enum Handle {
    Json(Job<Discard<Json>>),
    Bytes(Job<Discard<Bytes>>),
    /// JSON outputs folded by a Python callable; `initial` stands for the state before the
    /// first record.
    Fold(Job<JsonState>, Json),
}

/// Runs `$body` with `$j` bound to the typed job, whatever its kind.
macro_rules! with_job {
    ($handle:expr, $j:ident => $body:expr) => {
        match $handle {
            Handle::Json($j) => $body,
            Handle::Bytes($j) => $body,
            Handle::Fold($j, _) => $body,
        }
    };
}

impl Handle {
    pub(crate) fn kind(&self) -> OutputKind {
        match self {
            Handle::Json(_) | Handle::Fold(..) => OutputKind::Json,
            Handle::Bytes(_) => OutputKind::Bytes,
        }
    }

    fn submit(&mut self, id: u64, value: Value) -> resumable::Result<Submission> {
        match (self, value) {
            (Handle::Json(j), Value::Json(v)) => j.submit(id, v),
            (Handle::Fold(j, _), Value::Json(v)) => j.submit(id, v),
            (Handle::Bytes(j), Value::Bytes(v)) => j.submit(id, v),
            _ => Err(resumable::Error::InvalidArgument(
                "output of the wrong kind for this job".into(),
            )),
        }
    }

    fn output(&self, py: Python<'_>, id: u64) -> PyResult<Option<Py<PyAny>>> {
        Ok(match self {
            Handle::Json(j) => match j.output(id).py_err()? {
                Some(v) => Some(convert::from_json_text(py, v.as_str())?.unbind()),
                None => None,
            },
            Handle::Fold(j, _) => match j.output(id).py_err()? {
                Some(v) => Some(convert::from_json_text(py, v.as_str())?.unbind()),
                None => None,
            },
            Handle::Bytes(j) => j
                .output(id)
                .py_err()?
                .map(|b| pyo3::types::PyBytes::new(py, &b).into_any().unbind()),
        })
    }
}

/// An open job plus what the wrapper tracks to guess whether a submit will commit.
pub(crate) struct Open {
    pub(crate) job: Handle,
    policy: CommitPolicy,
    group_since: Option<Instant>,
    group_bytes: usize,
}

impl Open {
    pub(crate) fn new(job: Handle, policy: CommitPolicy) -> Self {
        Open {
            job,
            policy,
            group_since: None,
            group_bytes: 0,
        }
    }

    /// Whether submitting `bytes` more may trigger a commit (then the GIL is released for
    /// it). A wrong guess costs only a GIL hold during one commit, never correctness.
    fn may_commit(&mut self, bytes: usize) -> bool {
        let pending = with_job!(&self.job, j => j.pending());
        let policy = &self.policy;
        if pending == 0 {
            self.group_since = None;
            self.group_bytes = 0;
        }
        pending + 1 >= policy.group_records()
            || self.group_bytes + bytes >= policy.group_bytes()
            || self
                .group_since
                .is_some_and(|t| t.elapsed() >= policy.group_delay())
    }

    pub(crate) fn into_parts(self) -> (Handle, CommitPolicy) {
        (self.job, self.policy)
    }

    fn queued(&mut self, bytes: usize) {
        self.group_since.get_or_insert_with(Instant::now);
        self.group_bytes += bytes;
    }
}

/// An open job. Get one from [`Store.job`]; use it as a context manager.
#[pyclass(frozen, module = "resumable", name = "Job")]
pub struct PyJob {
    name: String,
    kind: OutputKind,
    pub(crate) inner: Mutex<Option<Open>>,
}

fn closed(name: &str) -> PyErr {
    errors::Error::new_err(format!(
        "job {name:?} is closed (or handed to a running map); open it again with Store.job"
    ))
}

impl PyJob {
    pub(crate) fn new(name: String, job: Handle, policy: CommitPolicy) -> Self {
        PyJob {
            name,
            kind: job.kind(),
            inner: Mutex::new(Some(Open::new(job, policy))),
        }
    }

    /// Locks the handle; if another thread holds it (during a commit), waits with the GIL
    /// released.
    fn lock(&self, py: Python<'_>) -> MutexGuard<'_, Option<Open>> {
        match self.inner.try_lock() {
            Some(g) => g,
            None => py.detach(|| self.inner.lock()),
        }
    }

    /// Runs `f` on the open handle, with the GIL held (for quick reads).
    fn read<R>(&self, py: Python<'_>, f: impl FnOnce(&Open) -> PyResult<R>) -> PyResult<R> {
        let g = self.lock(py);
        let open = g.as_ref().ok_or_else(|| closed(&self.name))?;
        f(open)
    }

    /// Runs `f` on the open handle with the GIL released (for anything that may commit).
    fn write<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Open) -> resumable::Result<R> + Send,
    ) -> PyResult<R> {
        let mut g = self.lock(py);
        let open = g.as_mut().ok_or_else(|| closed(&self.name))?;
        py.detach(|| f(open)).py_err()
    }

    /// Whether the handle is closed (a handle busy in a commit is open).
    pub(crate) fn is_closed_now(&self) -> bool {
        self.inner.try_lock().is_some_and(|g| g.is_none())
    }

    /// Takes the handle out (for `map`, or to close it).
    pub(crate) fn take(&self, py: Python<'_>) -> PyResult<Open> {
        self.lock(py).take().ok_or_else(|| closed(&self.name))
    }

    /// Puts a handle back after `map`.
    pub(crate) fn put_back(&self, py: Python<'_>, open: Open) {
        *self.lock(py) = Some(open);
    }

    pub(crate) fn close_handle(&self, py: Python<'_>, flush: bool) -> PyResult<()> {
        let mut g = self.lock(py);
        let Some(mut open) = g.take() else {
            return Ok(());
        };
        // The handle (and the store file it keeps open) goes away even if the flush fails.
        let result = if flush {
            match py.detach(|| with_job!(&mut open.job, j => j.flush().map(|_| ()))) {
                // A poisoned handle can commit nothing more: closing just drops it.
                Err(resumable::Error::Poisoned) => Ok(()),
                other => other,
            }
        } else {
            Ok(())
        };
        py.detach(move || drop(open));
        result.py_err()
    }
}

/// Flush, then pause a running job (a created or paused one has nothing to record).
fn pause(o: &mut Open) -> resumable::Result<()> {
    with_job!(&mut o.job, j => {
        j.flush()?;
        match j.lifecycle() {
            resumable::JobState::Created | resumable::JobState::Paused => Ok(()),
            _ => j.pause(),
        }
    })
}

fn submit_name(s: &Submission) -> &'static str {
    match s {
        Submission::Queued => "queued",
        Submission::Committed(_) => "committed",
        _ => "already_done",
    }
}

#[pymethods]
impl PyJob {
    /// The job's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// What the job stores per record: "json" or "bytes".
    #[getter]
    fn output_kind(&self) -> &'static str {
        match self.kind {
            OutputKind::Json => "json",
            OutputKind::Bytes => "bytes",
        }
    }

    /// Lifecycle state: "created", "running", "paused", "completed" or "failed".
    #[getter]
    fn lifecycle(&self, py: Python<'_>) -> PyResult<String> {
        self.read(py, |o| {
            Ok(with_job!(&o.job, j => j.lifecycle().as_str().to_owned()))
        })
    }

    /// Whether the job handle is closed.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        self.lock(py).is_none()
    }

    /// The folded state as of the last commit (a fresh copy), for a job opened with a
    /// fold; None for a job without one.
    #[getter]
    fn state(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let text = self.read(py, |o| {
            Ok(match &o.job {
                Handle::Fold(j, initial) => Some(j.state().text(initial).to_owned()),
                _ => None,
            })
        })?;
        text.map(|t| convert::from_json_text(py, &t).map(Bound::unbind))
            .transpose()
    }

    /// Whether record `id` is settled (output stored or dead-lettered) in a commit.
    fn is_done(&self, py: Python<'_>, id: u64) -> PyResult<bool> {
        self.read(py, |o| Ok(with_job!(&o.job, j => j.is_done(id))))
    }

    /// Whether record `id` is settled in a commit that has been fsynced.
    fn is_durable(&self, py: Python<'_>, id: u64) -> PyResult<bool> {
        self.read(py, |o| Ok(with_job!(&o.job, j => j.is_durable(id))))
    }

    /// Number of settled records.
    #[getter]
    fn done_count(&self, py: Python<'_>) -> PyResult<u64> {
        self.read(py, |o| Ok(with_job!(&o.job, j => j.done_count())))
    }

    /// Settled ids as sorted, disjoint half-open ranges `[(start, end), ...]`.
    #[getter]
    fn progress(&self, py: Python<'_>) -> PyResult<Vec<(u64, u64)>> {
        self.read(py, |o| {
            Ok(with_job!(&o.job, j => j.progress().ranges().map(|r| (r.start, r.end)).collect()))
        })
    }

    /// Ranges of ids below `bound` not settled yet, as `[(start, end), ...]`.
    fn gaps(&self, py: Python<'_>, bound: u64) -> PyResult<Vec<(u64, u64)>> {
        self.read(py, |o| {
            Ok(with_job!(&o.job, j => j.gaps(bound).map(|r| (r.start, r.end)).collect()))
        })
    }

    /// The declared number of input records, if any.
    #[getter]
    fn total_records(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        self.read(py, |o| Ok(with_job!(&o.job, j => j.total_records())))
    }

    /// Sequence number of the last commit (0 before the first).
    #[getter]
    fn last_seq(&self, py: Python<'_>) -> PyResult<u64> {
        self.read(py, |o| Ok(with_job!(&o.job, j => j.last_seq())))
    }

    /// Sequence number of the last durable (fsynced) commit.
    #[getter]
    fn durable_seq(&self, py: Python<'_>) -> PyResult<u64> {
        self.read(py, |o| Ok(with_job!(&o.job, j => j.durable_seq())))
    }

    /// Records submitted but not committed yet.
    #[getter]
    fn pending(&self, py: Python<'_>) -> PyResult<usize> {
        self.read(py, |o| Ok(with_job!(&o.job, j => j.pending())))
    }

    /// Records submitted or committed but not yet durable.
    #[getter]
    fn at_risk(&self, py: Python<'_>) -> PyResult<u64> {
        self.read(py, |o| Ok(with_job!(&o.job, j => j.at_risk())))
    }

    /// How many times the job was found crashed and resumed.
    #[getter]
    fn recoveries(&self, py: Python<'_>) -> PyResult<u64> {
        self.read(py, |o| Ok(with_job!(&o.job, j => j.recoveries())))
    }

    /// Counters since the handle was opened, as a dict.
    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let s = self.read(py, |o| Ok(with_job!(&o.job, j => j.stats().clone())))?;
        let d = pyo3::types::PyDict::new(py);
        d.set_item("records_committed", s.records_committed)?;
        d.set_item("dead_lettered", s.dead_lettered)?;
        d.set_item("duplicates", s.duplicates)?;
        d.set_item("commits", s.commits)?;
        d.set_item("durable_commits", s.durable_commits)?;
        d.set_item("bytes_written", s.bytes_written)?;
        d.set_item("snapshots", s.snapshots)?;
        d.set_item("replayed_commits", s.replayed_commits)?;
        Ok(d)
    }

    /// Submits record `id`'s output. It joins the current group, committed (durably, by
    /// default) when the group is full or old enough, or on `flush()`. Returns "queued",
    /// "committed" (this submit committed the group) or "already_done" (the id was settled
    /// or queued already: nothing changed).
    fn submit(&self, py: Python<'_>, id: u64, output: &Bound<'_, PyAny>) -> PyResult<&'static str> {
        let value = Value::encode(self.kind, output)?;
        let mut g = self.lock(py);
        let open = g.as_mut().ok_or_else(|| closed(&self.name))?;
        let bytes = value.len();
        let result = if open.may_commit(bytes) {
            py.detach(|| open.job.submit(id, value))
        } else {
            open.job.submit(id, value)
        }
        .py_err()?;
        if matches!(result, Submission::Queued) {
            open.queued(bytes);
        }
        Ok(submit_name(&result))
    }

    /// Settles record `id` as a dead letter: it failed `attempts` times, `error` the last
    /// error. Requeue it later with `Store.requeue` (or `resumable requeue`).
    fn dead_letter(
        &self,
        py: Python<'_>,
        id: u64,
        attempts: u32,
        error: &str,
    ) -> PyResult<&'static str> {
        let error = error.to_owned();
        let r = self.write(
            py,
            move |o| with_job!(&mut o.job, j => j.dead_letter(id, attempts, &error)),
        )?;
        Ok(submit_name(&r))
    }

    /// Commits the pending group durably and makes every earlier commit durable. Returns
    /// the sequence number of the commit it made, or None if nothing was pending.
    fn flush(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        let r = self.write(py, |o| with_job!(&mut o.job, j => j.flush()))?;
        Ok(r.map(|c| c.seq))
    }

    /// Writes a snapshot of the state now (after committing any pending group); returns
    /// its generation.
    fn snapshot(&self, py: Python<'_>) -> PyResult<u64> {
        self.write(py, |o| with_job!(&mut o.job, j => j.snapshot()))
    }

    /// Flushes, then records a clean stop ("paused"); the next commit resumes the job. A
    /// job with nothing committed yet (still "created") or already paused stays as it is.
    fn pause(&self, py: Python<'_>) -> PyResult<()> {
        self.write(py, pause)
    }

    /// Flushes, then marks the job "completed": no new record is accepted after.
    fn complete(&self, py: Python<'_>) -> PyResult<()> {
        self.write(py, |o| with_job!(&mut o.job, j => j.complete()))
    }

    /// Flushes, then marks the job "failed": no new record is accepted after.
    fn fail(&self, py: Python<'_>) -> PyResult<()> {
        self.write(py, |o| with_job!(&mut o.job, j => j.fail()))
    }

    /// The stored output of record `id` (checked against its CRC), or None.
    fn output(&self, py: Python<'_>, id: u64) -> PyResult<Option<Py<PyAny>>> {
        let g = self.lock(py);
        let open = g.as_ref().ok_or_else(|| closed(&self.name))?;
        open.job.output(py, id)
    }

    /// Recomputes the lineage hash chain and every checksum, replays the state; returns the
    /// report as a dict (`problems` is empty when all is well).
    fn verify<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let report = self.write(py, |o| with_job!(&o.job, j => j.verify()))?;
        crate::store::to_py_value(py, &report)
    }

    /// Flushes the pending group, then closes the handle (releasing the job and, with the
    /// last handle, the store file). Closing twice is a no-op.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.close_handle(py, true)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Without an exception: flush and close. With one: pause (which flushes what was
    /// submitted) and close; the exception propagates.
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        if exc_type.is_some() {
            // Best effort: the original exception matters more than a failed pause.
            let _ = self.write(py, pause);
            let _ = self.close_handle(py, false);
        } else {
            self.close_handle(py, true)?;
        }
        Ok(false)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let g = self.lock(py);
        match g.as_ref() {
            Some(o) => with_job!(&o.job, j => format!(
                "<resumable.Job {:?} {} done={} seq={}>",
                self.name,
                j.lifecycle().as_str(),
                j.done_count(),
                j.last_seq()
            )),
            None => format!("<resumable.Job {:?} closed>", self.name),
        }
    }
}
