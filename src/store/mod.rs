//! The store: one redb file holding many jobs. The only module layer that talks to redb.
//!
//! [`Store`] opens or creates the file (atomically, see [`create`]) and hands out jobs;
//! `job_io` turns a job's commit plan into one write transaction; `inspect` answers the
//! operator's read-only questions.

mod create;
mod inspect;
pub(crate) mod job_io;
pub(crate) mod meta;
mod repair;
pub(crate) mod salvage;
pub(crate) mod segment;
pub(crate) mod tables;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use redb::{Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, WriteTransaction};

use crate::error::{Error, Result};

pub use inspect::{DeadLetter, JobStatus, Problem, SnapshotInfo, StoredOutput, VerifyReport};
pub use repair::{RewindReport, SpaceInfo};
pub use salvage::{ChainStop, SalvageOptions, SalvageReport, SalvagedJob, UnusedSegment};

/// The store format this build writes and reads (2: commit segments).
pub const FORMAT_VERSION: u32 = 2;

/// Options for opening a [`Store`].
#[derive(Clone, Debug)]
#[must_use]
pub struct StoreOptions {
    create: bool,
    verify_on_open: bool,
    read_only: bool,
    cache_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            create: true,
            verify_on_open: true,
            read_only: false,
            cache_bytes: 256 << 20,
        }
    }
}

impl StoreOptions {
    /// Default options: create if absent, verify on open, read-write, 256 MiB cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Create the store if the path does not exist. Default: `true`.
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// Check the whole file's page checksums on open (redb's integrity check), so a damaged
    /// file is refused with [`Error::Unopenable`] instead of being read. Default: `true`.
    ///
    /// The check reads the whole file: it costs about as much as reading it once (see the
    /// README's measurements). Turning it off opens faster; damage is then found only by
    /// the CRCs `resumable` keeps on every value, or by [`Store::verify_job`].
    pub fn verify_on_open(mut self, verify: bool) -> Self {
        self.verify_on_open = verify;
        self
    }

    /// Open without writing: commits are refused, and a store that needs crash recovery is
    /// refused with [`Error::Locked`]-free advice to open it read-write. Default: `false`.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Bytes of page cache. Default: 256 MiB.
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    fn builder(&self) -> redb::Builder {
        let mut b = redb::Builder::new();
        b.set_cache_size(self.cache_bytes);
        b.set_check_integrity_on_open(self.verify_on_open && !self.read_only);
        b
    }

    /// Opens (or creates) the store at `path`.
    ///
    /// # Errors
    /// [`Error::NotAStore`] for a zero-byte, foreign or non-`resumable` file;
    /// [`Error::Unopenable`] for a damaged one (recover it with [`Store::salvage`]);
    /// [`Error::Locked`] when another process (or
    /// another `Store` in this one) has it open for writing; [`Error::UnsupportedFormat`]
    /// for a newer format; [`Error::Io`] for file-system errors.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        create::remove_stale_temporaries(path);
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !self.create || self.read_only {
                    return Err(Error::Io(std::io::Error::new(
                        e.kind(),
                        format!("no store at {}", path.display()),
                    )));
                }
                create::create_atomically(path, |b| b)?;
            }
            Err(e) => return Err(e.into()),
            Ok(m) if m.is_dir() => {
                return Err(Error::NotAStore {
                    path: path.to_owned(),
                    reason: "it is a directory".into(),
                });
            }
            Ok(m) if m.len() == 0 => {
                return Err(Error::NotAStore {
                    path: path.to_owned(),
                    reason: "the file is empty (zero bytes)".into(),
                });
            }
            Ok(_) => {}
        }
        // redb verifies page checksums only when asked (verify_on_open, read-write): a plain
        // or read-only open of a damaged file can panic inside redb. Such a panic is turned
        // into `Unopenable` here rather than unwinding through the caller.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let db = if self.read_only {
                let db = self
                    .builder()
                    .open_read_only(path)
                    .map_err(|e| open_error(path, e))?;
                Db::ReadOnly(db)
            } else {
                let db = self.builder().open(path).map_err(|e| open_error(path, e))?;
                Db::ReadWrite(RwLock::new(db))
            };
            Store::from_db(db, path.display().to_string(), Some(path.to_owned()))
        }));
        let opened = opened.map(|result| result.map_err(|e| unopenable(path, e)));
        opened.unwrap_or_else(|payload| {
            let detail = match Error::from_panic("opening the store", payload.as_ref()) {
                Error::Panicked { message, .. } => message,
                other => other.to_string(),
            };
            Err(Error::Unopenable {
                path: path.to_owned(),
                reason: format!("damaged pages (redb: {detail})"),
            })
        })
    }

    /// Opens (or creates) a store on a simulated disk, to crash-test a job: arm a fault on
    /// the disk, run the job until it fails, take the disk's crash image, and open it again
    /// with `FaultDisk::from_image`. There is no rename on a simulated disk, so creation is
    /// not atomic there (see [`StoreOptions::open`] for files).
    ///
    /// # Errors
    /// As [`StoreOptions::open`].
    #[cfg(feature = "testing")]
    pub fn open_on(&self, disk: &crate::testing::FaultDisk) -> Result<Store> {
        self.open_backend(disk.backend(), "simulated disk")
    }

    /// Opens (or initializes) a store on a raw redb backend.
    #[cfg(feature = "testing")]
    pub(crate) fn open_backend(
        &self,
        backend: impl redb::StorageBackend,
        label: &str,
    ) -> Result<Store> {
        let db = self
            .builder()
            .create_with_backend(backend)
            .map_err(|e| open_error(Path::new(label), e))?;
        let fresh = {
            let txn = db.begin_read().map_err(storage)?;
            match txn.open_table(tables::STORE) {
                Ok(_) => false,
                Err(redb::TableError::TableDoesNotExist(_)) => true,
                Err(e) => return Err(storage(e)),
            }
        };
        if fresh {
            create::initialize(&db)?;
        }
        Store::from_db(Db::ReadWrite(RwLock::new(db)), label.to_owned(), None)
    }
}

pub(crate) enum Db {
    ReadWrite(RwLock<Database>),
    ReadOnly(ReadOnlyDatabase),
}

/// Shared by a [`Store`] and every job opened from it.
pub(crate) struct StoreInner {
    db: Db,
    location: String,
    path: Option<PathBuf>,
    open_jobs: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for StoreInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreInner")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl StoreInner {
    pub(crate) fn begin_write(&self) -> Result<WriteTransaction> {
        match &self.db {
            Db::ReadWrite(db) => db.read().begin_write().map_err(storage),
            Db::ReadOnly(_) => Err(Error::InvalidArgument(format!(
                "{} was opened read-only; open it read-write to change it",
                self.location
            ))),
        }
    }

    pub(crate) fn begin_read(&self) -> Result<ReadTransaction> {
        match &self.db {
            Db::ReadWrite(db) => db.read().begin_read().map_err(storage),
            Db::ReadOnly(db) => db.begin_read().map_err(storage),
        }
    }

    /// Exclusive access to the database, for integrity checks and compaction, which need
    /// no transaction to be alive.
    pub(crate) fn with_exclusive<T>(
        &self,
        f: impl FnOnce(&mut Database) -> Result<T>,
    ) -> Result<T> {
        match &self.db {
            Db::ReadWrite(db) => f(&mut db.write()),
            Db::ReadOnly(_) => Err(Error::InvalidArgument(format!(
                "{} was opened read-only; open it read-write for this operation",
                self.location
            ))),
        }
    }

    /// Claims the single-writer right on a job within this store.
    pub(crate) fn claim_job(&self, job: &str) -> Result<()> {
        if self.open_jobs.lock().insert(job.to_owned()) {
            Ok(())
        } else {
            Err(Error::Locked {
                what: format!("job {job:?} in {}", self.location),
            })
        }
    }

    pub(crate) fn release_job(&self, job: &str) {
        self.open_jobs.lock().remove(job);
    }
}

/// An open store file holding any number of jobs.
///
/// Cheap to clone (all clones share one open file). Open jobs with [`Store::job`]. The
/// redb file is locked for the life of the last clone and job handle: a second process
/// opening it gets [`Error::Locked`].
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) inner: Arc<StoreInner>,
}

impl Store {
    /// Opens the store at `path`, creating it if absent, with default [`StoreOptions`].
    ///
    /// # Errors
    /// See [`StoreOptions::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        StoreOptions::default().open(path)
    }

    /// Opens the store read-only (for inspection), verifying nothing on open.
    ///
    /// # Errors
    /// See [`StoreOptions::open`]. A store that was not shut down cleanly needs recovery,
    /// which only a read-write open performs; this returns [`Error::NotAStore`]-free
    /// [`Error::Storage`] advice in that case.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Store> {
        StoreOptions::default().read_only(true).open(path)
    }

    fn from_db(db: Db, location: String, path: Option<PathBuf>) -> Result<Store> {
        let store = Store {
            inner: Arc::new(StoreInner {
                db,
                location,
                path,
                open_jobs: Mutex::new(HashSet::new()),
            }),
        };
        store.check_format()?;
        Ok(store)
    }

    fn check_format(&self) -> Result<()> {
        let txn = self.inner.begin_read()?;
        let not_ours = |reason: &str| Error::NotAStore {
            path: PathBuf::from(&self.inner.location),
            reason: reason.to_owned(),
        };
        let table = match txn.open_table(tables::STORE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => {
                return Err(not_ours("a redb database without resumable's tables"));
            }
            Err(redb::TableError::TableTypeMismatch { .. }) => {
                return Err(not_ours(
                    "a redb database with a foreign resumable.store table",
                ));
            }
            Err(e) => return Err(storage(e)),
        };
        let Some(v) = table.get(tables::FORMAT_KEY).map_err(storage)? else {
            return Err(not_ours("its format version is missing"));
        };
        let bytes: [u8; 4] = v.value().try_into().map_err(|_| {
            Error::corrupt(
                "store format version",
                "4 bytes",
                format!("{} bytes", v.value().len()),
            )
        })?;
        let found = u32::from_le_bytes(bytes);
        if found != FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                found,
                supported: FORMAT_VERSION,
            });
        }
        Ok(())
    }

    /// The path of the store file (`None` for a store on a test backend).
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Runs redb's full integrity check (every page checksum) and repairs what redb can.
    /// Returns `true` when the file was intact.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the damage cannot be repaired; [`Error::Locked`]-like
    /// [`Error::Storage`] when a transaction is in flight.
    pub fn check_integrity(&self) -> Result<bool> {
        self.inner
            .with_exclusive(|db| db.check_integrity().map_err(storage))
    }

    /// Reclaims free space in the file. Returns the file size before and after, in bytes
    /// (equal when the store is on a test backend or nothing could be reclaimed).
    ///
    /// # Errors
    /// [`Error::Storage`] when a transaction is in flight; [`Error::Io`] on I/O errors.
    pub fn compact(&self) -> Result<(u64, u64)> {
        let size = || {
            self.inner
                .path
                .as_ref()
                .and_then(|p| std::fs::metadata(p).ok())
                .map_or(0, |m| m.len())
        };
        let before = size();
        self.inner.with_exclusive(|db| {
            // compact() returns false when there was nothing to do; run it until stable,
            // because each pass can free pages the next one can move.
            for _ in 0..4 {
                if !db.compact().map_err(storage)? {
                    break;
                }
            }
            Ok(())
        })?;
        Ok((before, size()))
    }
}

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
fn unopenable(path: &Path, e: Error) -> Error {
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

fn open_error(path: &Path, e: redb::DatabaseError) -> Error {
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
