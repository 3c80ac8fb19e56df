//! `resumable.Error` and one subclass per variant of the Rust `resumable::Error`, with the
//! same messages (the Rust `Display`), so a Python caller can catch what it can act on.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    resumable,
    Error,
    PyException,
    "Base class of every error raised by resumable."
);
create_exception!(
    resumable,
    NotAStoreError,
    Error,
    "The file exists but is not a resumable store (zero bytes, another format, a foreign redb file)."
);
create_exception!(
    resumable,
    UnsupportedFormatError,
    Error,
    "The store was written in a format this build does not read."
);
create_exception!(
    resumable,
    CorruptError,
    Error,
    "Stored bytes failed a check (checksum, hash chain, structure); nothing corrupt is returned."
);
create_exception!(
    resumable,
    JobMismatchError,
    Error,
    "The job exists with another state type, schema version or input manifest."
);
create_exception!(
    resumable,
    JobNotFoundError,
    Error,
    "No job of that name exists in the store."
);
create_exception!(
    resumable,
    LockedError,
    Error,
    "Another writer (process, Store or job handle) holds the store or the job."
);
create_exception!(
    resumable,
    DiskFullError,
    Error,
    "The disk is full; the store is at its last good commit."
);
create_exception!(
    resumable,
    PoisonedError,
    Error,
    "An earlier storage error made this handle unusable; reopen the store."
);
create_exception!(resumable, IoError, Error, "An operating-system I/O error.");
create_exception!(
    resumable,
    StorageError,
    Error,
    "An error from the storage engine that is none of the others."
);
create_exception!(
    resumable,
    LifecycleError,
    Error,
    "A lifecycle transition the job's state machine does not allow (e.g. submitting to a completed job)."
);
create_exception!(
    resumable,
    RecordError,
    Error,
    "A record's output could not be stored (for example a value JSON cannot represent)."
);
create_exception!(
    resumable,
    PanickedError,
    Error,
    "User code (a fold) failed inside a commit; the handle is poisoned: reopen the store."
);
create_exception!(
    resumable,
    SnapshotNotFoundError,
    Error,
    "A snapshot generation that does not exist."
);
create_exception!(
    resumable,
    InvalidArgumentError,
    Error,
    "A caller-supplied argument is out of range or of the wrong kind."
);

create_exception!(
    resumable,
    PermanentError,
    PyException,
    "Raise it from a map function to dead-letter the record at once (no retries)."
);

/// The Python exception for a Rust error, with the Rust message.
pub(crate) fn to_py(e: &resumable::Error) -> PyErr {
    use resumable::Error as E;
    let msg = e.to_string();
    match e {
        E::NotAStore { .. } => NotAStoreError::new_err(msg),
        E::UnsupportedFormat { .. } => UnsupportedFormatError::new_err(msg),
        E::Corrupt { .. } => CorruptError::new_err(msg),
        E::JobMismatch { .. } => JobMismatchError::new_err(msg),
        E::JobNotFound(_) => JobNotFoundError::new_err(msg),
        E::Locked { .. } => LockedError::new_err(msg),
        E::DiskFull(_) => DiskFullError::new_err(msg),
        E::Poisoned => PoisonedError::new_err(msg),
        E::Io(_) => IoError::new_err(msg),
        E::Storage(_) => StorageError::new_err(msg),
        E::Lifecycle { .. } => LifecycleError::new_err(msg),
        E::Record { .. } => RecordError::new_err(msg),
        E::Panicked { .. } => PanickedError::new_err(msg),
        E::SnapshotNotFound { .. } => SnapshotNotFoundError::new_err(msg),
        E::InvalidArgument(_) => InvalidArgumentError::new_err(msg),
        _ => Error::new_err(msg),
    }
}

/// `?`-friendly conversion of a Rust result.
pub(crate) trait IntoPy<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for resumable::Result<T> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(|e| to_py(&e))
    }
}

/// Adds the exception classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("NotAStoreError", py.get_type::<NotAStoreError>())?;
    m.add(
        "UnsupportedFormatError",
        py.get_type::<UnsupportedFormatError>(),
    )?;
    m.add("CorruptError", py.get_type::<CorruptError>())?;
    m.add("JobMismatchError", py.get_type::<JobMismatchError>())?;
    m.add("JobNotFoundError", py.get_type::<JobNotFoundError>())?;
    m.add("LockedError", py.get_type::<LockedError>())?;
    m.add("DiskFullError", py.get_type::<DiskFullError>())?;
    m.add("PoisonedError", py.get_type::<PoisonedError>())?;
    m.add("IoError", py.get_type::<IoError>())?;
    m.add("StorageError", py.get_type::<StorageError>())?;
    m.add("LifecycleError", py.get_type::<LifecycleError>())?;
    m.add("RecordError", py.get_type::<RecordError>())?;
    m.add("PanickedError", py.get_type::<PanickedError>())?;
    m.add(
        "SnapshotNotFoundError",
        py.get_type::<SnapshotNotFoundError>(),
    )?;
    m.add("PermanentError", py.get_type::<PermanentError>())?;
    m.add(
        "InvalidArgumentError",
        py.get_type::<InvalidArgumentError>(),
    )?;
    Ok(())
}
