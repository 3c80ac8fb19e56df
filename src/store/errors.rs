//! Every redb error becomes one of ours here, and only here, so the advice an operator
//! reads is written once.

use std::path::Path;

use crate::error::Error;

/// Maps any redb error to ours.
pub(crate) fn storage(e: impl Into<redb::Error>) -> Error {
    match e.into() {
        // redb reads only inside the file's recorded length, so a read past the end means the
        // file was cut short: damage, not an operating-system failure.
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => Error::corrupt(
            "store file",
            "every page inside the file",
            format!("truncated ({io})"),
        ),
        redb::Error::Io(io) => Error::from(io),
        redb::Error::PreviousIo => Error::Poisoned,
        redb::Error::Corrupted(msg) => {
            Error::corrupt("store file", "pages with valid checksums", msg)
        }
        redb::Error::DatabaseAlreadyOpen => Error::Locked {
            what: "the store".into(),
        },
        other => Error::Storage(Box::new(other)),
    }
}

pub(crate) fn open_error(path: &Path, e: redb::DatabaseError) -> Error {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => Error::Locked {
            what: path.display().to_string(),
        },
        redb::DatabaseError::RepairAborted => Error::Storage(
            format!(
                "{} was not shut down cleanly and needs recovery, which a read-only open cannot do; open it read-write (run the job, or `resumable verify`) first",
                path.display()
            )
            .into(),
        ),
        redb::DatabaseError::UpgradeRequired(v) => Error::NotAStore {
            path: path.to_owned(),
            reason: format!(
                "a database in redb's older file format {v}; resumable stores are written by redb 4"
            ),
        },
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::InvalidData =>
        {
            Error::NotAStore {
                path: path.to_owned(),
                reason: io.to_string(),
            }
        }
        other => storage(other),
    }
}
