//! Failed fsyncs ("fsyncgate"): after a failed `sync_data` the kernel may have marked the
//! unwritten pages clean, so reads keep showing writes the disk never got. A process that
//! reopens the store on that page cache would take a commit whose sync failed for durable.
//!
//! Every store's storage backend is wrapped in [`Watched`], which records a failed sync in a
//! marker beside the store (an owner-only `.NAME.sync-failed` file, and a process-wide list
//! in case the file cannot be written). Every open checks for the marker and refuses with
//! [`Error::SyncFailed`], unless [`StoreOptions::after_sync_failure`] asks to recover: that
//! open first drops the file's cached pages (`posix_fadvise(POSIX_FADV_DONTNEED)`, which
//! evicts clean pages, the failed ones included), so it reads what the disk holds, runs
//! redb's full check, and removes the marker once the store opened.
//!
//! [`StoreOptions::after_sync_failure`]: crate::StoreOptions::after_sync_failure

use std::collections::HashSet;
use std::io::{self, Write as _};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use redb::{BackendError, StorageBackend};

use crate::error::{Error, Result};

/// Where a failed sync is recorded for one store.
#[derive(Clone, Debug)]
pub(crate) enum Marker {
    /// A store file: the sidecar `.NAME.sync-failed` beside it.
    File {
        /// The store file.
        store: PathBuf,
    },
    /// A simulated disk: its marker slot (a file beside the store survives a process kill).
    #[cfg(feature = "testing")]
    Disk(crate::testing::FaultDisk),
}

/// Stores (absolute paths) whose sync failed in this process, in case the marker file
/// could not be written.
fn failed_here() -> &'static Mutex<HashSet<PathBuf>> {
    static FAILED: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    FAILED.get_or_init(Mutex::default)
}

/// The process-wide key of a store file: its absolute path (the file may not exist yet).
fn key(store: &Path) -> PathBuf {
    std::path::absolute(store).unwrap_or_else(|_| store.to_owned())
}

impl Marker {
    /// The marker of the store file at `store`.
    pub(crate) fn for_file(store: &Path) -> Self {
        Marker::File {
            store: store.to_owned(),
        }
    }

    /// The sidecar file's path.
    fn sidecar(store: &Path) -> PathBuf {
        super::sidecar(store, "sync-failed")
    }

    /// What the marker says, if a sync of this store failed and nobody recovered it since.
    pub(crate) fn read(&self) -> Option<String> {
        match self {
            Marker::File { store } => match std::fs::read(Self::sidecar(store)) {
                Ok(bytes) => {
                    // Untrusted: bounded, lossy.
                    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
                    Some(text.trim().to_owned())
                }
                Err(_) if failed_here().lock().contains(&key(store)) => {
                    Some("a sync of this store failed earlier in this process".into())
                }
                Err(_) => None,
            },
            #[cfg(feature = "testing")]
            Marker::Disk(disk) => disk.sync_failure_marker(),
        }
    }

    /// Records a failed sync. Best effort: if the sidecar cannot be written (the disk may be
    /// failing), this process still remembers it.
    fn record(&self, error: &io::Error) {
        let when = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let text = format!(
            "an fsync of this store failed at unix time {when} in process {}: {error}",
            std::process::id()
        );
        tracing::error!(%error, "a sync of the store failed: its last commit may not be on the disk although reads show it; recover it with `resumable recover STORE`");
        match self {
            Marker::File { store } => {
                failed_here().lock().insert(key(store));
                if let Err(e) = write_sidecar(&Self::sidecar(store), &text) {
                    tracing::error!(error = %e, "could not write the sync-failure marker beside the store");
                }
            }
            #[cfg(feature = "testing")]
            Marker::Disk(disk) => disk.set_sync_failure_marker(text),
        }
    }

    /// Drops the store's cached pages, so reads show what the disk holds. Best effort.
    pub(crate) fn evict_cache(&self) {
        match self {
            Marker::File { store } => {
                if let Err(e) = evict_file_cache(store) {
                    tracing::warn!(error = %e, "could not drop the store's cached pages; reboot the machine if the store shows commits the disk lost");
                }
            }
            #[cfg(feature = "testing")]
            Marker::Disk(disk) => disk.drop_clean_pages(),
        }
    }

    /// Removes the marker after a recovery.
    pub(crate) fn clear(&self) -> Result<()> {
        match self {
            Marker::File { store } => {
                match std::fs::remove_file(Self::sidecar(store)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::Io(e)),
                }
                failed_here().lock().remove(&key(store));
            }
            #[cfg(feature = "testing")]
            Marker::Disk(disk) => disk.clear_sync_failure_marker(),
        }
        Ok(())
    }

    /// Refuses an open while the marker is set, unless `recover`; with `recover`, drops the
    /// cached pages first. Returns whether the store needs the recovery's full check.
    pub(crate) fn check(&self, location: &str, recover: bool) -> Result<bool> {
        let Some(detail) = self.read() else {
            return Ok(false);
        };
        if !recover {
            return Err(Error::SyncFailed {
                store: location.to_owned(),
                detail,
            });
        }
        tracing::warn!(store = location, %detail, "recovering after a failed sync: dropping the store's cached pages and checking every page");
        self.evict_cache();
        Ok(true)
    }
}

/// Writes the sidecar, owner-only, and syncs it.
fn write_sidecar(path: &Path, text: &str) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn evict_file_cache(store: &Path) -> io::Result<()> {
    let file = std::fs::File::open(store)?;
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).map_err(io::Error::from)
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn evict_file_cache(_store: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "this platform cannot drop one file's cached pages",
    ))
}

/// A storage backend that records a failed `sync_data` in the store's [`Marker`] and
/// otherwise passes every call through.
#[derive(Debug)]
pub(crate) struct Watched<B> {
    inner: B,
    marker: Arc<Marker>,
}

impl<B: StorageBackend> Watched<B> {
    pub(crate) fn new(inner: B, marker: Arc<Marker>) -> Self {
        Watched { inner, marker }
    }
}

/// Writes `StorageBackend` methods, one `name(arguments) -> return type;` each, as plain calls
/// to the same method of `self.inner`: [`Watched`] (and the tests' failing backends) change
/// one method and pass the others through. Each must be written out, since the trait's
/// defaults do not reach the inner backend: `close` does nothing and the byte-range locks,
/// which redb takes its file locks through, answer `Unsupported`.
macro_rules! pass_through {
    ($($method:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {$(
        fn $method(&self, $($arg: $ty),*) -> $ret {
            self.inner.$method($($arg),*)
        }
    )*};
}

impl<B: StorageBackend> StorageBackend for Watched<B> {
    pass_through! {
        len() -> io::Result<u64>;
        read(offset: u64, out: &mut [u8]) -> io::Result<()>;
        set_len(len: u64) -> io::Result<()>;
        write(offset: u64, data: &[u8]) -> io::Result<()>;
        close() -> io::Result<()>;
        try_lock_range(start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError>;
        try_lock_shared_range(start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError>;
        lock_range(start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError>;
        lock_shared_range(start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError>;
        unlock_range(start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError>;
        query_lock_range(start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError>;
    }

    fn sync_data(&self) -> io::Result<()> {
        self.inner
            .sync_data()
            .inspect_err(|e| self.marker.record(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreOptions};

    /// A backend whose `sync_data` fails with EIO once armed, as a failing disk's fsync
    /// does; everything else goes to a real file backend.
    #[derive(Debug)]
    struct FailingSync {
        inner: redb::backends::FileBackend,
        fail: Arc<std::sync::atomic::AtomicBool>,
    }

    impl StorageBackend for FailingSync {
        pass_through! {
            len() -> io::Result<u64>;
            read(offset: u64, out: &mut [u8]) -> io::Result<()>;
            set_len(len: u64) -> io::Result<()>;
            write(offset: u64, data: &[u8]) -> io::Result<()>;
        }
        fn sync_data(&self) -> io::Result<()> {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(io::Error::other("injected fsync failure (EIO)"));
            }
            self.inner.sync_data()
        }
    }

    #[test]
    fn a_failed_sync_leaves_an_owner_only_marker_that_refuses_opens_until_recovery() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("s.redb");
        drop(Store::open(&path)?);
        // A redb database on the store file whose fsync fails, watched like a store's.
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let marker = Arc::new(Marker::for_file(&path));
        {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)?;
            let backend = FailingSync {
                inner: redb::backends::FileBackend::new(file)
                    .map_err(super::super::errors::storage)?,
                fail: Arc::clone(&fail),
            };
            let db = redb::Builder::new()
                .create_with_backend(Watched::new(backend, Arc::clone(&marker)))
                .map_err(super::super::errors::storage)?;
            let t: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("t");
            let txn = db.begin_write().map_err(super::super::errors::storage)?;
            txn.open_table(t)
                .map_err(super::super::errors::storage)?
                .insert(1, 1)
                .map_err(super::super::errors::storage)?;
            fail.store(true, std::sync::atomic::Ordering::SeqCst);
            assert!(txn.commit().is_err(), "the commit's sync failed");
        }
        let sidecar = dir.path().join(".s.redb.sync-failed");
        let text = std::fs::read_to_string(&sidecar)?;
        assert!(text.contains("injected fsync failure"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&sidecar)?.permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "the marker is owner-only");
        }
        // Every open is refused, read-only ones included, and says what to do.
        for options in [StoreOptions::new(), StoreOptions::new().read_only(true)] {
            match options.open(&path) {
                Err(Error::SyncFailed { detail, .. }) => {
                    assert!(detail.contains("injected fsync failure"), "{detail}");
                }
                Err(e) => panic!("expected SyncFailed, got {e:?}"),
                Ok(_) => panic!("a store whose sync failed opened"),
            }
        }
        // A read-only open does not recover, even when asked.
        assert!(matches!(
            StoreOptions::new()
                .read_only(true)
                .after_sync_failure(true)
                .open(&path),
            Err(Error::SyncFailed { .. })
        ));
        // Recovery drops the cached pages, opens, and clears the marker (file and memory).
        drop(StoreOptions::new().after_sync_failure(true).open(&path)?);
        assert!(!sidecar.exists());
        drop(Store::open_read_only(&path)?);
        drop(Store::open(&path)?);
        Ok(())
    }

    #[test]
    fn the_process_remembers_a_failed_sync_when_the_marker_file_cannot_be_written() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("s.redb");
        drop(Store::open(&path)?);
        // A directory where the marker file would go: the write fails.
        let sidecar = dir.path().join(".s.redb.sync-failed");
        std::fs::create_dir(&sidecar)?;
        let marker = Marker::for_file(&path);
        marker.record(&io::Error::other("EIO"));
        std::fs::remove_dir(&sidecar)?;
        assert!(matches!(Store::open(&path), Err(Error::SyncFailed { .. })));
        drop(StoreOptions::new().after_sync_failure(true).open(&path)?);
        drop(Store::open(&path)?);
        Ok(())
    }
}
