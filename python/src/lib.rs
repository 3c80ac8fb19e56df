//! The `resumable._resumable` extension module: the Python face of the `resumable` engine.
//!
//! `store` and `job` mirror the Rust `Store` and `Job`; `map` drives the Rust `Runner`
//! with a Python callable; `convert` turns Python values into stored JSON or bytes and
//! back; `errors` gives each Rust error variant its Python exception class.

mod convert;
mod errors;
mod fold;
mod job;
mod map;
mod store;

use pyo3::prelude::*;

#[pymodule]
fn _resumable(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<store::PyStore>()?;
    m.add_class::<job::PyJob>()?;
    m.add_function(wrap_pyfunction!(map::run_map, m)?)?;
    m.add("FOLD_STATE_TYPE", fold::FOLD_STATE_TYPE)?;
    m.add("JSON_STATE_TYPE", resumable::Json::discard_type_name())?;
    errors::register(m)?;
    Ok(())
}
