//! Opening a store: options, the shared handle, and the format check.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use redb::{Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, WriteTransaction};

use super::create;
use super::errors::{open_error, storage, unopenable};
use super::tables;
use crate::error::{Error, Result};

/// The store format this build writes (3: BLAKE3 lineage with code versions and redo
/// entries). It reads format 2 in place too (FORMAT.md): a format-2 store becomes format 3
/// in the transaction of its first format-3 entry.
pub const FORMAT_VERSION: u32 = 3;

/// The oldest store format this build reads.
pub(crate) const OLDEST_FORMAT: u32 = 2;

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
    /// benchmarks in docs/BENCHMARKS.md). Turning it off opens faster; damage is then found only by
    /// the CRCs `resumable` keeps on every value, or by [`Store::verify_job`].
    pub fn verify_on_open(mut self, verify: bool) -> Self {
        self.verify_on_open = verify;
        self
    }

    /// Open without writing: commits are refused, and a store that needs crash recovery is
    /// refused with advice to open it read-write. Default: `false`.
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

/// The open database: read-write (the writer) or read-only (an inspector).
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
    pub(super) fn begin_write(&self) -> Result<WriteTransaction> {
        match &self.db {
            Db::ReadWrite(db) => db.read().begin_write().map_err(storage),
            Db::ReadOnly(_) => Err(Error::InvalidArgument(format!(
                "{} was opened read-only; open it read-write to change it",
                self.location
            ))),
        }
    }

    pub(super) fn begin_read(&self) -> Result<ReadTransaction> {
        match &self.db {
            Db::ReadWrite(db) => db.read().begin_read().map_err(storage),
            Db::ReadOnly(db) => db.begin_read().map_err(storage),
        }
    }

    /// Exclusive access to the database, for integrity checks and compaction, which need
    /// no transaction to be alive.
    pub(super) fn with_exclusive<T>(
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

    /// Where the store is, for messages.
    pub(super) fn location(&self) -> &str {
        &self.location
    }

    /// The store file's path, if it is a file.
    pub(super) fn file_path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The database, for `space.rs`'s figures.
    pub(super) fn db(&self) -> &Db {
        &self.db
    }

    /// The names of the jobs claimed by open handles (see `claim.rs`).
    pub(super) fn open_jobs(&self) -> &Mutex<HashSet<String>> {
        &self.open_jobs
    }
}

/// An open store file holding any number of jobs.
///
/// Cheap to clone (all clones share one open file). Open jobs with [`Store::job`]. The
/// redb file is locked for the life of the last clone and job handle: a second process
/// opening it gets [`Error::Locked`].
#[derive(Clone, Debug)]
pub struct Store {
    pub(super) inner: Arc<StoreInner>,
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
    /// which only a read-write open performs; this returns [`Error::Storage`] saying so.
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
        if !(OLDEST_FORMAT..=FORMAT_VERSION).contains(&found) {
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
}
