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

/// Damage found while opening a file means it cannot be opened: say so rather than point
/// at `verify`, which would open it the same way.
pub(crate) fn unopenable(path: &Path, e: Error) -> Error {
    match e {
        Error::Corrupt {
            what,
            expected,
            got,
        } => Error::Unopenable {
            path: path.to_owned(),
            reason: format!("{what}: expected {expected}, got {got}"),
        },
        other => other,
    }
}

/// Whether the file is at least a page long and its first 16 bytes (where redb's magic
/// number is) are zero: a store whose header was wiped (a bad sector, a stray `dd`), not
/// a file of another format, which would carry its own magic.
fn magic_zeroed(path: &Path) -> bool {
    use std::io::Read as _;
    let mut head = [0xffu8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| {
            let long_enough = f.metadata()?.len() >= 4096;
            f.read_exact(&mut head)?;
            Ok(long_enough)
        })
        .is_ok_and(|long_enough| long_enough && head.iter().all(|&b| b == 0))
}

pub(crate) fn open_error(path: &Path, e: redb::DatabaseError) -> Error {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => Error::Locked {
            what: path.display().to_string(),
        },
        redb::DatabaseError::RepairAborted => Error::NeedsRecovery {
            path: path.to_owned(),
        },
        redb::DatabaseError::UpgradeRequired(v) => Error::NotAStore {
            path: path.to_owned(),
            reason: format!(
                "a database in redb's older file format {v}; resumable stores are written by redb 4"
            ),
        },
        // The file cannot be opened at all: advice must not point at `verify`, which opens it
        // the same way.
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(msg)) => Error::Unopenable {
            path: path.to_owned(),
            reason: msg,
        },
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            Error::Unopenable {
                path: path.to_owned(),
                reason: format!("the file is truncated ({io})"),
            }
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::InvalidData && magic_zeroed(path) =>
        {
            Error::Unopenable {
                path: path.to_owned(),
                reason: format!("its header is zeroed ({io})"),
            }
        }
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
