//! The crate's one error type.

use std::path::PathBuf;

use crate::lifecycle::JobState;

/// A specialized `Result` whose error defaults to [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed error kept as the source of a variant, so implementation types (redb, bincode)
/// never appear in the public API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong, by what a caller can do about it.
///
/// Every variant's message says what happened and what the operator can do. After any
/// variant raised by a commit, the store holds its last good commit: nothing half-written
/// is ever visible.
///
/// `Debug` prints the variant name and the same sentence as `Display`, so a
/// `fn main() -> Result<(), resumable::Error>` that returns one shows the operator what to
/// do rather than a struct dump.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file at the path exists but is not a `resumable` store (zero bytes, another
    /// format, or a redb file without `resumable` tables).
    #[error(
        "{path} is not a resumable store ({reason}); check the path, or move the file away to let a new store be created there"
    )]
    NotAStore {
        /// The file that was opened.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },

    /// The store was written in a format this build does not read: by a newer version of
    /// `resumable`, or by a pre-release one (format 1, before commit segments).
    #[error(
        "store format version {found} is not the one this build reads ({supported}); {}",
        if found > supported {
            "upgrade resumable to open it"
        } else {
            "it was written by a pre-release of resumable: export its outputs with that version and start a new store"
        }
    )]
    UnsupportedFormat {
        /// The version found in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },

    /// Stored bytes failed a check: a checksum, the lineage hash chain, a size limit or a
    /// structural invariant. Nothing corrupt is returned as data.
    #[error(
        "store is damaged: {what}: expected {expected}, got {got}; run `resumable verify` to locate the damage, then rewind to a good snapshot or restore the file from a backup"
    )]
    Corrupt {
        /// The item that failed (for example `output 17 of job "etl"`).
        what: String,
        /// What the check expected.
        expected: String,
        /// What it found.
        got: String,
    },

    /// The storage engine cannot open the file at all (its commit slots, or the pages they
    /// lead to, are damaged), so no command that reads the store through it can run, `verify`
    /// included. The committed records are usually still in the file: `resumable salvage`
    /// reads them from its raw bytes into a new store.
    #[error(
        "{path} cannot be opened: {reason}; no command can read it as a store (`verify` fails the same way): recover its committed records with `resumable salvage {path} --into NEW.redb`, or restore the file from a backup (docs/RUNBOOK.md, \"Backups\")"
    )]
    Unopenable {
        /// The file that was opened.
        path: PathBuf,
        /// What the storage engine reported.
        reason: String,
    },

    /// The job exists with a different state type, schema version, input manifest or
    /// input size.
    #[error(
        "job {job:?} was created with {field} {expected}, but was opened with {found}; open it with the original {field}, or use a new job name"
    )]
    JobMismatch {
        /// The job name.
        job: String,
        /// Which property differs: `state type`, `schema version`, `input manifest` or
        /// `total records`.
        field: &'static str,
        /// The value stored with the job.
        expected: String,
        /// The value the caller supplied.
        found: String,
    },

    /// No job of that name exists in the store.
    #[error("no job named {0:?} in this store; list jobs with `resumable status STORE`")]
    JobNotFound(String),

    /// Another writer holds the store (another process, another `Store` in this process,
    /// or another handle to the same job).
    #[error("{what} is in use by another writer; wait for it to finish or stop it, then retry")]
    Locked {
        /// The store path or job that is held.
        what: String,
    },

    /// The store was not shut down cleanly (its writer crashed or was killed) and needs
    /// crash recovery, which a read-only open never runs. Nothing is lost: recovery keeps
    /// every durable commit.
    #[error(
        "{path} was not shut down cleanly and needs crash recovery, which a read-only open does not run; run `resumable recover {path}` (or the job again), or pass --recover to the read command to recover it first"
    )]
    NeedsRecovery {
        /// The store file.
        path: PathBuf,
    },

    /// A sync of the store failed earlier ("fsyncgate"): the operating system may have
    /// dropped the unwritten pages while reads still show them, so the store is not opened
    /// as it is. Recovery ([`StoreOptions::after_sync_failure`](crate::StoreOptions::after_sync_failure),
    /// `resumable recover`) drops the file's cached pages and reopens what the disk holds.
    #[error(
        "an fsync of {store} failed earlier, so the system may still show writes that never reached the disk ({detail}); check the disk, then run `resumable recover {store}`, which drops the file's cached pages and keeps every commit the disk holds (rebooting the machine first is the surest way to drop them)"
    )]
    SyncFailed {
        /// The store (its path, or a label for a simulated disk).
        store: String,
        /// What the marker beside the store recorded.
        detail: String,
    },

    /// The disk is full. The store is at its last good commit.
    #[error(
        "disk full while writing the store; free space, then reopen the store to resume from the last durable commit"
    )]
    DiskFull(#[source] std::io::Error),

    /// An earlier storage error made this handle unusable: the last commit may or may not
    /// have landed, and only a reopen can tell.
    #[error(
        "the store handle is unusable after an earlier storage error; drop every handle and reopen the store, which resumes from the last durable commit"
    )]
    Poisoned,

    /// An operating-system I/O error.
    #[error("i/o error: {0}; check the disk and the file's permissions, then reopen the store")]
    Io(#[source] std::io::Error),

    /// An error from the storage engine that is none of the above.
    #[error("storage engine error: {0}")]
    Storage(#[source] BoxError),

    /// A lifecycle transition the state machine does not allow.
    #[error("job {job:?} cannot go from {from} to {to}")]
    Lifecycle {
        /// The job name.
        job: String,
        /// The current state.
        from: JobState,
        /// The requested state.
        to: JobState,
    },

    /// A record's output could not be encoded, or a user callback failed for it.
    #[error("record {id}: {source}")]
    Record {
        /// The record id.
        id: u64,
        /// What went wrong.
        #[source]
        source: BoxError,
    },

    /// User code (the fold or a processor) panicked. The handle is poisoned: the
    /// in-memory state may be half-updated, so reopen to get the last committed state.
    #[error("user code panicked in {context}: {message}; fix the panic, then reopen the store")]
    Panicked {
        /// Where the panic happened.
        context: String,
        /// The panic payload, when it was a string.
        message: String,
    },

    /// A snapshot generation that does not exist (or was retired).
    #[error(
        "snapshot {generation} of job {job:?} does not exist; list them with `resumable snapshots`"
    )]
    SnapshotNotFound {
        /// The job name.
        job: String,
        /// The generation asked for.
        generation: u64,
    },

    /// A caller-supplied argument is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// The variant's name, for `Debug` and machine-readable error reports.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotAStore { .. } => "NotAStore",
            Error::UnsupportedFormat { .. } => "UnsupportedFormat",
            Error::Corrupt { .. } => "Corrupt",
            Error::Unopenable { .. } => "Unopenable",
            Error::JobMismatch { .. } => "JobMismatch",
            Error::JobNotFound(_) => "JobNotFound",
            Error::Locked { .. } => "Locked",
            Error::NeedsRecovery { .. } => "NeedsRecovery",
            Error::SyncFailed { .. } => "SyncFailed",
            Error::DiskFull(_) => "DiskFull",
            Error::Poisoned => "Poisoned",
            Error::Io(_) => "Io",
            Error::Storage(_) => "Storage",
            Error::Lifecycle { .. } => "Lifecycle",
            Error::Record { .. } => "Record",
            Error::Panicked { .. } => "Panicked",
            Error::SnapshotNotFound { .. } => "SnapshotNotFound",
            Error::InvalidArgument(_) => "InvalidArgument",
        }
    }

    pub(crate) fn corrupt(
        what: impl Into<String>,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            what: what.into(),
            expected: expected.into(),
            got: got.into(),
        }
    }

    /// Turns a caught panic payload into [`Error::Panicked`].
    pub(crate) fn from_panic(
        context: impl Into<String>,
        payload: &(dyn std::any::Any + Send),
    ) -> Self {
        Error::Panicked {
            context: context.into(),
            message: panic_message(payload),
        }
    }
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {self}", self.kind())
    }
}

/// The text of a panic payload (the one place that knows payloads are `&str` or `String`).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::StorageFull {
            Error::DiskFull(e)
        } else {
            Error::Io(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_says_what_to_do_like_display() {
        let e = Error::JobMismatch {
            job: "amounts".into(),
            field: "state type",
            expected: "A".into(),
            found: "B".into(),
        };
        let debug = format!("{e:?}");
        assert!(debug.starts_with("JobMismatch: "), "{debug}");
        assert!(debug.ends_with(&e.to_string()), "{debug}");
        assert!(
            debug.contains("open it with the original state type"),
            "{debug}"
        );
        assert_eq!(
            format!("{:?}", Error::Poisoned),
            format!("Poisoned: {}", Error::Poisoned)
        );
    }
}
