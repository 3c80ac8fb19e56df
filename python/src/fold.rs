//! Jobs whose state is a Python fold `fold(state, id, output) -> state` over JSON outputs.
//!
//! The state is a JSON value kept as compact text ([`JsonState`]), so it is snapshotted and
//! replayed by the engine like any Rust state; the fold itself is the Python callable, given
//! to `Store::job_with_fold` and so used for every commit, the replay on open and verify. A
//! job records the state type name [`FOLD_STATE_TYPE`]: Rust code opening it with another
//! state type (or Python opening a Rust job with a fold) gets `JobMismatch`.

use pyo3::prelude::*;
use resumable::{Fold, Json};
use serde::{Deserialize, Serialize};

use crate::convert;

/// Recorded with a Python-fold job, so Rust code and Python refuse each other's jobs.
pub(crate) const FOLD_STATE_TYPE: &str = "resumable.python.JsonState/1";

pub(crate) fn is_fold_state(state_type: &str) -> bool {
    state_type == FOLD_STATE_TYPE
}

/// The folded state: `None` until the first record is folded (the job's `initial` value
/// stands for it), then the fold's last result as JSON text.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct JsonState {
    value: Option<Json>,
    /// The last result as a Python object, so the next fold call need not parse the text
    /// again. Never stored; dropped with the state.
    #[serde(skip)]
    cached: Option<Py<PyAny>>,
}

impl JsonState {
    /// The state as JSON text (`initial` before the first record).
    pub(crate) fn text<'a>(&'a self, initial: &'a Json) -> &'a str {
        self.value.as_ref().unwrap_or(initial).as_str()
    }
}

impl Fold for JsonState {
    type Output = Json;

    /// Unused: jobs of this state are opened with `Store::job_with_fold` and the Python
    /// callable. A Rust program opening one with `Store::job` sees the stored state unchanged.
    fn apply(&mut self, _id: u64, _output: &Json) {}

    fn type_name() -> String {
        FOLD_STATE_TYPE.to_owned()
    }
}

/// The fold function handed to the engine: calls `fold(state, id, output)` with the GIL
/// and keeps the result as JSON. A fold that raises (or returns a value JSON cannot hold)
/// panics here; the engine turns that into `PanickedError`, aborts the commit and poisons
/// the handle, as for a panicking Rust fold.
pub(crate) fn python_fold(
    fold: Py<PyAny>,
    initial: Json,
) -> impl Fn(&mut JsonState, u64, &Json) + Send + Sync + 'static {
    move |state: &mut JsonState, id: u64, output: &Json| {
        let next = Python::attach(|py| -> PyResult<(Json, Py<PyAny>)> {
            let current = match state.cached.take() {
                Some(obj) => obj.into_bound(py),
                None => convert::from_json_text(py, state.text(&initial))?,
            };
            let output = convert::from_json_text(py, output.as_str())?;
            let new = fold.bind(py).call1((current, id, output))?;
            Ok((convert::to_json(&new)?, new.unbind()))
        });
        match next {
            Ok((text, obj)) => {
                state.value = Some(text);
                state.cached = Some(obj);
            }
            // resume_unwind skips the panic hook: no panic message or backtrace on stderr,
            // the engine reports it as PanickedError with this text.
            Err(e) => {
                std::panic::resume_unwind(Box::new(format!("the fold raised for record {id}: {e}")))
            }
        }
    }
}
