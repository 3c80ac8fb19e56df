//! Whether a process holds a store for writing now: the writer's lock file.
//!
//! A job whose lifecycle is `Running` was being run when its store was last written. That
//! alone cannot say whether a process runs it now or the last run ended without pausing it
//! (it crashed, was killed, or its code returned early). So a writable open takes an
//! exclusive advisory lock (`flock`) on `DIR/.NAME.writer` and holds it until the store is
//! closed; the operating system releases it when the process ends, however it ends. A
//! reader asks with a non-blocking shared lock, released at once: refused means a process
//! holds the store for writing.
//!
//! - The file is owner-only, created when missing, never opened through a symlink, and its
//!   contents are never read or written. It stays after the store is closed (like a lock
//!   file): a later writer takes it over, and its presence tells readers that writers of
//!   this version lock it.
//! - A reader holds its shared lock for microseconds; a writer opening in that instant
//!   retries for up to [`TAKE_WAIT`]. Where the file cannot be made or locked (a read-only
//!   directory, a file system without locks) the writer runs without it, says so in the
//!   log, and readers answer "cannot tell".

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a writer retries a lock a reader holds for an instant.
pub(crate) const TAKE_WAIT: Duration = Duration::from_millis(50);

/// The writer lock file of the store at `store`: `.NAME.writer` beside it.
pub(crate) fn lock_path(store: &Path) -> PathBuf {
    super::sidecar(store, "writer")
}

/// Opens the lock file without following a symlink; creates it (owner-only) if `create`.
fn open(path: &Path, create: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    if create {
        options.write(true).create(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().cast_signed());
    }
    let file = options.open(path)?;
    if file.metadata()?.file_type().is_file() {
        Ok(file)
    } else {
        Err(io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )))
    }
}

/// A writable store's lock, held until it is dropped (the store closed).
#[derive(Debug)]
pub(crate) struct WriterLock {
    _file: File,
}

impl WriterLock {
    /// Takes the lock of the store at `store`; `None` (logged) when it cannot.
    pub(crate) fn take(store: &Path) -> Option<WriterLock> {
        let path = lock_path(store);
        let result = open(&path, true).and_then(|file| {
            let deadline = Instant::now() + TAKE_WAIT;
            loop {
                match file.try_lock() {
                    Ok(()) => return Ok(file),
                    Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(TryLockError::WouldBlock) => {
                        return Err(io::Error::other(
                            "another process holds it (a reader that does not let go?)",
                        ));
                    }
                    Err(TryLockError::Error(e)) => return Err(e),
                }
            }
        });
        match result {
            Ok(file) => Some(WriterLock { _file: file }),
            Err(e) => {
                tracing::warn!(
                    lock = %path.display(),
                    error = %e,
                    "cannot take the writer lock file; readers will not be able to tell that this process runs the store"
                );
                None
            }
        }
    }
}

/// Whether a process holds the store at `store` for writing: `Some(true)` yes,
/// `Some(false)` no, `None` cannot tell (no lock file: the store was last written by an
/// older version or where the file could not be made; or it cannot be locked).
pub(crate) fn held(store: &Path) -> Option<bool> {
    let file = open(&lock_path(store), false).ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            Some(false)
        }
        Err(TryLockError::WouldBlock) => Some(true),
        Err(TryLockError::Error(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_seen_and_a_released_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("s.redb");
        assert_eq!(held(&store), None, "no lock file: cannot tell");
        let lock = WriterLock::take(&store).expect("takes");
        assert_eq!(held(&store), Some(true));
        // A second writer cannot take it while the first holds it.
        assert!(WriterLock::take(&store).is_none());
        drop(lock);
        assert_eq!(held(&store), Some(false), "the file stays, unlocked");
        let _again = WriterLock::take(&store).expect("a later writer takes it over");
        assert_eq!(held(&store), Some(true));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(lock_path(&store))
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_is_not_a_lock_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("s.redb");
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"keep").expect("write");
        std::os::unix::fs::symlink(&target, lock_path(&store)).expect("symlink");
        assert!(WriterLock::take(&store).is_none());
        assert_eq!(held(&store), None);
        assert_eq!(std::fs::read(&target).expect("read"), b"keep");
    }
}
