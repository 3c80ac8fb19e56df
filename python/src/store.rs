//! `resumable.Store`: one store file, its jobs, and the operator's read-only questions.

use std::path::PathBuf;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};
use resumable::{
    Bytes, CommitPolicy, Discard, Durability, JobOptions, Json, Store, StoreOptions,
    manifest_digest,
};

use crate::convert;
use crate::errors::{self, IntoPy as _};
use crate::fold::python_fold;
use crate::job::{Handle, OutputKind, PyJob};

/// A serde value (a report or status) as a Python dict/list, through JSON.
pub(crate) fn to_py_value<'py, T: serde::Serialize>(
    py: Python<'py>,
    value: &T,
) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).map_err(|e| PyValueError::new_err(e.to_string()))?;
    convert::from_json_text(py, &text)
}

/// The digest of an input manifest given as an int (a digest already) or an iterable of
/// str/bytes (the input's identifiers, e.g. file names with sizes).
fn manifest(value: &Bound<'_, PyAny>) -> PyResult<u64> {
    if let Ok(d) = value.extract::<u64>() {
        return Ok(d);
    }
    if value.is_instance_of::<PyString>() || value.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(
            "input_manifest is an int digest or an iterable of str/bytes identifiers, not one string",
        ));
    }
    let mut items: Vec<Vec<u8>> = Vec::new();
    for item in value.try_iter()? {
        let item = item?;
        if let Ok(s) = item.cast::<PyString>() {
            items.push(s.to_cow()?.as_bytes().to_vec());
        } else if let Ok(b) = item.cast::<PyBytes>() {
            items.push(b.as_bytes().to_vec());
        } else {
            return Err(PyTypeError::new_err(
                "input_manifest items must be str or bytes",
            ));
        }
    }
    Ok(manifest_digest(items))
}

fn seconds(value: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        PyValueError::new_err(format!("{what} must be a non-negative number of seconds"))
    })
}

/// An open store file holding any number of jobs. Use it as a context manager.
#[pyclass(frozen, module = "resumable", name = "Store")]
pub struct PyStore {
    path: PathBuf,
    inner: Mutex<Option<Store>>,
    /// Jobs opened from this store, closed with it.
    jobs: Mutex<Vec<Py<PyJob>>>,
}

impl PyStore {
    pub(crate) fn store(&self) -> PyResult<Store> {
        self.inner.lock().clone().ok_or_else(|| {
            errors::Error::new_err(format!(
                "the store {} is closed; open it again with resumable.Store",
                self.path.display()
            ))
        })
    }
}

#[pymethods]
impl PyStore {
    /// Opens the store at `path`, creating it atomically if absent (unless `create=False`).
    /// `read_only=True` opens for inspection only. `verify_on_open`: `None` (the default)
    /// checks every page checksum when the file may have changed since a clean close (the
    /// Rust default, `FullCheck::WhenChanged`); `True` on every open (reads the whole file);
    /// `False` never. The GIL is released while opening.
    #[new]
    #[pyo3(signature = (path, *, create = true, read_only = false, verify_on_open = None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        create: bool,
        read_only: bool,
        verify_on_open: Option<bool>,
    ) -> PyResult<Self> {
        let mut options = StoreOptions::new().create(create).read_only(read_only);
        if let Some(verify) = verify_on_open {
            options = options.verify_on_open(verify);
        }
        let store = py.detach(|| options.open(&path)).py_err()?;
        Ok(PyStore {
            path,
            inner: Mutex::new(Some(store)),
            jobs: Mutex::new(Vec::new()),
        })
    }

    /// The store file's path.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Whether the store is closed.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.lock().is_none()
    }

    /// Whether a process holds the store for writing now: `True` (always for a writable
    /// store: this one), `False`, or `None` when that cannot be told (a file last written
    /// by an older version). A job whose lifecycle is "running" while no process holds its
    /// store is not being run: its last run crashed or ended without pausing it.
    #[getter]
    fn writer_alive(&self) -> PyResult<Option<bool>> {
        Ok(self.store()?.writer_alive())
    }

    /// Opens the job `name`, creating it if absent (unless `create=False`), and resumes it.
    ///
    /// `output` is "json" (outputs are JSON values: dict, list, str, int, float, bool,
    /// None) or "bytes". A reopen must give the same output kind, `schema_version` and
    /// `input_manifest` (an int digest, or an iterable of str/bytes identifiers of the
    /// input), else `JobMismatchError`. Groups are committed every `max_group_records`
    /// records, `max_group_bytes` bytes or `max_group_delay` seconds, whichever comes
    /// first; `durable=True` (default) fsyncs every commit, `durable=False` fsyncs one in
    /// every `durable_interval` seconds (a crash may then lose the last commits, as a
    /// suffix).
    ///
    /// `fold(state, id, output) -> state` folds each committed output into a JSON state
    /// (`job.state`), starting from `initial`: called once per record in commit order (and
    /// by id within a commit), at commit time and when a resume replays the commits after
    /// the newest snapshot, so it must be deterministic. Snapshots store the state as JSON.
    /// A fold that raises aborts the commit and poisons the handle (`PanickedError`). Open
    /// a fold job with the same fold every time; opening it without a fold (or a job
    /// without one with a fold, or a Rust job) is a `JobMismatchError`. The GIL is
    /// released while opening.
    #[pyo3(signature = (
        name, *, output = "json", schema_version = 0, input_manifest = None,
        total_records = None, create = true, max_group_records = 1000,
        max_group_bytes = 4_194_304, max_group_delay = 0.05, durable = true,
        durable_interval = 1.0, snapshot_every_commits = 16, fold = None, initial = None,
    ))]
    fn job(
        &self,
        py: Python<'_>,
        name: &str,
        output: &str,
        schema_version: u32,
        input_manifest: Option<&Bound<'_, PyAny>>,
        total_records: Option<u64>,
        create: bool,
        max_group_records: usize,
        max_group_bytes: usize,
        max_group_delay: f64,
        durable: bool,
        durable_interval: f64,
        snapshot_every_commits: u64,
        fold: Option<Py<PyAny>>,
        initial: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyJob>> {
        let kind = OutputKind::parse(output)?;
        let fold = match fold {
            None => None,
            Some(_) if kind == OutputKind::Bytes => {
                return Err(PyValueError::new_err(
                    "a fold takes JSON outputs; open the job with output=\"json\"",
                ));
            }
            Some(f) => {
                let initial = match initial {
                    Some(v) => convert::to_json(v)?,
                    None => Json::parse("null").py_err()?,
                };
                Some((f, initial))
            }
        };
        let durability = if durable {
            Durability::Immediate
        } else {
            Durability::Deferred {
                max_interval: seconds(durable_interval, "durable_interval")?,
            }
        };
        let policy = CommitPolicy::new()
            .max_group_records(max_group_records)
            .max_group_bytes(max_group_bytes)
            .max_group_delay(seconds(max_group_delay, "max_group_delay")?)
            .durability(durability);
        let mut options = JobOptions::new()
            .schema_version(schema_version)
            .create(create)
            .commit_policy(policy.clone())
            .snapshot_every_commits(snapshot_every_commits);
        if let Some(m) = input_manifest {
            options = options.input_manifest(manifest(m)?);
        }
        if let Some(t) = total_records {
            options = options.total_records(t);
        }
        let store = self.store()?;
        let handle = py
            .detach(|| -> resumable::Result<Handle> {
                Ok(match (kind, fold) {
                    (_, Some((f, initial))) => {
                        let folder = python_fold(f, initial.clone());
                        Handle::Fold(store.job_with_fold(name, options, folder)?, initial)
                    }
                    (OutputKind::Json, None) => {
                        Handle::Json(store.job::<Discard<Json>>(name, options)?)
                    }
                    (OutputKind::Bytes, None) => {
                        Handle::Bytes(store.job::<Discard<Bytes>>(name, options)?)
                    }
                })
            })
            .py_err()?;
        let job = Py::new(py, PyJob::new(name.to_owned(), handle, policy))?;
        let mut jobs = self.jobs.lock();
        jobs.retain(|j| !j.get().is_closed_now());
        jobs.push(job.clone_ref(py));
        Ok(job)
    }

    /// Names of the jobs in the store.
    fn jobs(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let store = self.store()?;
        py.detach(|| store.jobs()).py_err()
    }

    /// A job's stored status as a dict (lifecycle, state_type, records_done, commits,
    /// dead_letters, ...), the same fields as `resumable status --json`.
    fn status<'py>(&self, py: Python<'py>, job: &str) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store()?;
        let status = py.detach(|| store.status(job)).py_err()?;
        let value = to_py_value(py, &status)?;
        // The CLI's spelling ("completed"), not serde's variant name ("Completed").
        value.set_item("lifecycle", status.lifecycle.as_str())?;
        Ok(value)
    }

    /// A job's dead letters: a list of dicts with id, attempts, error, time_ms.
    fn dead_letters<'py>(&self, py: Python<'py>, job: &str) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store()?;
        let dead = py.detach(|| store.dead_letters(job)).py_err()?;
        to_py_value(py, &dead)
    }

    /// Puts dead letters back in line (all, or those in `ids`) so the next run processes
    /// them again. The job must not be open. Returns the ids requeued.
    #[pyo3(signature = (job, ids = None))]
    fn requeue(&self, py: Python<'_>, job: &str, ids: Option<Vec<u64>>) -> PyResult<Vec<u64>> {
        let store = self.store()?;
        py.detach(|| store.requeue(job, ids.as_deref())).py_err()
    }

    /// Checks a job without opening it: lineage hash chain, every output's checksum,
    /// snapshots, dead letters. Returns the report as a dict.
    fn verify<'py>(&self, py: Python<'py>, job: &str) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store()?;
        let report = py.detach(|| store.verify_job(job)).py_err()?;
        to_py_value(py, &report)
    }

    /// The stored outputs of ids in `[start, end)` as a list of `(id, output)` in id order,
    /// each checked against its CRC. Outputs of "json" jobs are decoded, of "bytes" jobs
    /// are bytes; outputs of jobs written by Rust code are their raw bincode bytes.
    #[pyo3(signature = (job, start = 0, end = None))]
    fn outputs<'py>(
        &self,
        py: Python<'py>,
        job: &str,
        start: u64,
        end: Option<u64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let store = self.store()?;
        let state_type = py.detach(|| store.status(job)).py_err()?.state_type;
        let kind = OutputKind::of_state_type(&state_type)
            .or_else(|| crate::fold::is_fold_state(&state_type).then_some(OutputKind::Json));
        let end = end.unwrap_or(u64::MAX);
        let mut raw: Vec<(u64, Vec<u8>, Option<String>)> = Vec::new();
        py.detach(|| {
            store.for_each_output(job, start..end, |o| {
                let text = match kind {
                    Some(OutputKind::Json) => Some(o.decode::<Json>()?.into_string()),
                    _ => None,
                };
                let payload = match kind {
                    Some(OutputKind::Bytes) => o.decode::<Bytes>()?.0,
                    Some(OutputKind::Json) => Vec::new(),
                    None => o.payload,
                };
                raw.push((o.id, payload, text));
                Ok(true)
            })
        })
        .py_err()?;
        let list = PyList::empty(py);
        for (id, payload, text) in raw {
            let value = match text {
                Some(t) => convert::from_json_text(py, &t)?,
                None => PyBytes::new(py, &payload).into_any(),
            };
            list.append((id, value))?;
        }
        Ok(list)
    }

    /// Closes every job opened from this store (flushing each), then the store; the file
    /// is released once nothing else holds it. Closing twice is a no-op.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let jobs: Vec<Py<PyJob>> = std::mem::take(&mut *self.jobs.lock());
        let mut first_err = None;
        for job in jobs {
            if let Err(e) = job.get().close_handle(py, true) {
                first_err.get_or_insert(e);
            }
        }
        let store = self.inner.lock().take();
        py.detach(move || drop(store));
        first_err.map_or(Ok(()), Err)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<resumable.Store {:?}{}>",
            self.path.display().to_string(),
            if self.closed() { " closed" } else { "" }
        )
    }
}
