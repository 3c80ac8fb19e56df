//! Opening a store: options, the shared handle, and the format check.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use redb::{
    ConcurrencyMode, Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase,
    WriteTransaction,
};

use super::create;
use super::door::{self, Alive, Answer, Door, Held, KNOCK_WAIT};
use super::errors::{open_error, storage, unopenable};
use super::fingerprint;
use super::sync_failure::{Marker, Watched};
use super::tables;
use super::writer_lock::{self, WriterLock};
use crate::error::{Error, Result};

/// The store format this build writes (3: BLAKE3 lineage with code versions and redo
/// entries). It reads format 2 in place too (FORMAT.md): a format-2 store becomes format 3
/// in the transaction of its first format-3 entry.
pub const FORMAT_VERSION: u32 = 3;

/// The oldest store format this build reads.
pub(crate) const OLDEST_FORMAT: u32 = 2;

/// How a store's writer shares the file with other processes (see
/// [`StoreOptions::concurrency`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Concurrency {
    /// Live readers on demand: the writer has the file to itself (one fsync per commit)
    /// until a reader knocks, then lets readers in as [`Concurrency::LiveReaders`] does,
    /// and has the file to itself again once readers stop coming for a minute. A reader's
    /// read-only open that finds the file held knocks (it touches `.NAME.readers` beside
    /// the store) and retries for a second; the writer answers within about 20 ms of its
    /// next commit (a [`Runner`](crate::Runner) also while idle). A job with
    /// [`Durability::Deferred`](crate::Durability::Deferred) keeps the file to itself and
    /// does not answer. The default.
    #[default]
    Auto,
    /// Other processes may open the store read-only while this one writes, and follow its
    /// commits (redb's single-writer mode). Each commit costs a second header write and
    /// fsync: measured on the development VM, about a fifth of the group-commit throughput
    /// and a third of one-record durable commits (docs/BENCHMARKS.md). Jobs with deferred durability are refused
    /// ([`Error::InvalidArgument`]): live readers can only follow durable commits.
    LiveReaders,
    /// The writer has the file to itself: readers get [`Error::Locked`] until it closes.
    Exclusive,
}

/// When a read-write open runs redb's full check of every page checksum (see
/// [`StoreOptions::full_check`]). `resumable`'s own CRCs on the values a job reads are
/// checked on every read, whatever this says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FullCheck {
    /// On every open (`verify_on_open(true)`): the open costs a read of the whole file.
    Always,
    /// When the file may have changed since `resumable` last closed it cleanly, or its
    /// last full check is older than [`StoreOptions::full_check_every`]. After a clean
    /// close, the file's identity, length, mtime and ctime are kept beside it in
    /// `.NAME.checked` (owner-only); an open that finds them unchanged skips the walk, since
    /// any write through the file system (a copy, a truncation, a byte flipped in place, even
    /// one that restores the mtime) changes them. A crashed or killed writer leaves no
    /// sidecar, so its next open checks. The default.
    #[default]
    WhenChanged,
    /// Never (`verify_on_open(false)`): damage is found only by the CRCs on values and by
    /// [`Store::verify_job`]; a damaged file can make redb fail or panic (the panic is
    /// caught and reported as [`Error::Unopenable`] where it can be).
    Never,
}

/// What an open checked (see [`Store::open_check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenCheck {
    /// redb checked every page checksum, and they were intact (or repaired).
    Full,
    /// The page walk was skipped: the file is unchanged since a clean close, and its last
    /// full check (at `checked_unix_s`, seconds since the Unix epoch) is recent enough.
    Unchanged {
        /// When the last full check passed.
        checked_unix_s: u64,
    },
    /// Nothing was checked: a read-only open, or [`FullCheck::Never`].
    Skipped,
}

/// Options for opening a [`Store`].
#[derive(Clone, Debug)]
#[must_use]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent switches of a builder"
)]
pub struct StoreOptions {
    create: bool,
    full_check: FullCheck,
    full_check_every: Duration,
    read_only: bool,
    concurrency: Concurrency,
    cache_bytes: usize,
    after_sync_failure: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            create: true,
            full_check: FullCheck::WhenChanged,
            full_check_every: Self::DEFAULT_FULL_CHECK_EVERY,
            read_only: false,
            concurrency: Concurrency::Auto,
            cache_bytes: 256 << 20,
            after_sync_failure: false,
        }
    }
}

impl StoreOptions {
    /// How old the last full check of an unchanged file may be before
    /// [`FullCheck::WhenChanged`] runs it again: 7 days.
    pub const DEFAULT_FULL_CHECK_EVERY: Duration = Duration::from_hours(7 * 24);

    /// Default options: create if absent, a full check when the file changed outside
    /// `resumable`, read-write, 256 MiB cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Create the store if the path does not exist. Default: `true`.
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// `true`: check the whole file's page checksums on every open (redb's integrity check,
    /// [`FullCheck::Always`]), so a damaged file is refused with [`Error::Unopenable`]
    /// instead of being read; `false`: never ([`FullCheck::Never`]). Default: neither, but
    /// [`FullCheck::WhenChanged`], which checks when the file may have changed.
    ///
    /// The check reads the whole file: it costs about as much as reading it once (see the
    /// benchmarks in docs/BENCHMARKS.md). Without it, damage is found only by the CRCs
    /// `resumable` keeps on every value, or by [`Store::verify_job`].
    pub fn verify_on_open(self, verify: bool) -> Self {
        self.full_check(if verify {
            FullCheck::Always
        } else {
            FullCheck::Never
        })
    }

    /// When a read-write open checks every page (see [`FullCheck`]). Read-only opens never
    /// do (redb can only check a file it may repair), nor write the sidecar. Default:
    /// [`FullCheck::WhenChanged`].
    pub fn full_check(mut self, full_check: FullCheck) -> Self {
        self.full_check = full_check;
        self
    }

    /// How old the last full check of an unchanged file may be before
    /// [`FullCheck::WhenChanged`] runs it again, to catch damage below the file system (a
    /// failing disk changes no file time). Default: [`Self::DEFAULT_FULL_CHECK_EVERY`], 7
    /// days.
    pub fn full_check_every(mut self, every: Duration) -> Self {
        self.full_check_every = every;
        self
    }

    /// Whether this open runs the full check, given when the last one passed if the file is
    /// unchanged since (`None` otherwise or for a test backend).
    fn runs_full_check(&self, unchanged_since: Option<u64>) -> bool {
        match self.full_check {
            FullCheck::Always => true,
            FullCheck::Never => false,
            FullCheck::WhenChanged => {
                !unchanged_since.is_some_and(|at| fingerprint::is_recent(at, self.full_check_every))
            }
        }
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

    /// How the writer shares the file with reader processes (`resumable status`, `export`,
    /// `verify` beside a running job). Default: [`Concurrency::Auto`]: live readers when
    /// one knocks. Read-only opens ignore this option: they always open as live readers,
    /// knock when a writer holds the file to itself, and are refused with
    /// [`Error::Locked`] if it has not let them in after a second.
    pub fn concurrency(mut self, concurrency: Concurrency) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Recover a store whose sync failed ([`Error::SyncFailed`]): drop the file's cached
    /// pages first, so the open reads what the disk holds, check every page, and remove the
    /// failure marker once the store opened. Ignored by read-only opens, which keep
    /// refusing such a store. Default: `false` (`resumable recover` sets it).
    pub fn after_sync_failure(mut self, recover: bool) -> Self {
        self.after_sync_failure = recover;
        self
    }

    /// Whether a read-write open starts with live readers ([`Concurrency::Auto`] lets them
    /// in when they knock).
    fn live(&self) -> bool {
        self.concurrency == Concurrency::LiveReaders
    }

    /// A redb builder for these options; `live` picks the concurrency mode (read-only opens
    /// are always live readers, and the mode must match the writer's).
    fn builder(&self, live: bool, check_integrity: bool) -> redb::Builder {
        let mut b = redb::Builder::new();
        b.set_cache_size(self.cache_bytes);
        b.set_check_integrity_on_open(check_integrity && !self.read_only);
        b.set_concurrency_mode(if live || self.read_only {
            ConcurrencyMode::SingleWriter
        } else {
            ConcurrencyMode::ExclusiveWriter
        });
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
        // A store whose sync failed may show, through the page cache, a commit the disk
        // never got: refused unless this open recovers it (after dropping the cached pages),
        // which checks every page.
        let marker = Arc::new(Marker::for_file(path));
        let recovering = marker.check(
            &path.display().to_string(),
            self.after_sync_failure && !self.read_only,
        )?;
        // The full check (redb's page walk) runs on read-write opens only, when the options
        // ask for it or the file may have changed; the sidecar that tells whether it changed
        // is read, then removed before redb's open writes to the file (fingerprint.rs).
        let (check, closer) = if self.read_only {
            (OpenCheck::Skipped, None)
        } else {
            let unchanged_since = fingerprint::last_full_check(path);
            fingerprint::invalidate(path)?;
            let check = if recovering || self.runs_full_check(unchanged_since) {
                OpenCheck::Full
            } else {
                unchanged_since.map_or(OpenCheck::Skipped, |checked_unix_s| OpenCheck::Unchanged {
                    checked_unix_s,
                })
            };
            let closer = Closer {
                store: path.to_owned(),
                checked_unix_s: AtomicU64::new(0),
                marker: Arc::clone(&marker),
            };
            (check, Some(closer))
        };
        // A plain or read-only open of a damaged file can panic inside redb. Such a panic is
        // turned into `Unopenable` here rather than unwinding through the caller.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let db = if self.read_only {
                Db::ReadOnly(self.open_reader(path)?)
            } else {
                let db = open_watched(
                    &self.builder(self.live(), check == OpenCheck::Full),
                    path,
                    &marker,
                )?;
                if recovering {
                    marker.clear()?;
                }
                let options = self.clone();
                let file = path.to_owned();
                let reopen: Reopen = Box::new(move |live| {
                    open_watched(&options.builder(live, false), &file, &marker)
                });
                Db::ReadWrite(RwLock::new(Writer::new(
                    db,
                    self.live(),
                    self.concurrency == Concurrency::Auto,
                    reopen,
                )))
            };
            let door = (!self.read_only && self.concurrency == Concurrency::Auto)
                .then(|| Door::new(path.to_owned()));
            // Taken once redb has let this process write: only the writer holds it.
            let writer_lock = if self.read_only {
                None
            } else {
                WriterLock::take(path)
            };
            let store = Store::from_db(
                db,
                path.display().to_string(),
                Some(path.to_owned()),
                check,
                closer,
                door,
                writer_lock,
            )?;
            // Opened: from now on a clean close records the fingerprint.
            store.inner.record_full_check(match check {
                OpenCheck::Full => Some(fingerprint::now_unix_s()),
                OpenCheck::Unchanged { checked_unix_s } => Some(checked_unix_s),
                OpenCheck::Skipped => None,
            });
            Ok(store)
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
        let label = "simulated disk";
        let marker = Arc::new(Marker::Disk(disk.clone()));
        let recovering = marker.check(label, self.after_sync_failure)?;
        // No file, no fingerprint: `WhenChanged` checks every open, as `Always` does.
        let check = if recovering || self.runs_full_check(None) {
            OpenCheck::Full
        } else {
            OpenCheck::Skipped
        };
        let db = self
            .builder(self.live(), check == OpenCheck::Full)
            .create_with_backend(Watched::new(disk.backend(), Arc::clone(&marker)))
            .map_err(|e| open_error(Path::new(label), e))?;
        if recovering {
            marker.clear()?;
        }
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
        let options = self.clone();
        let disk = disk.clone();
        let reopen: Reopen = Box::new(move |live| {
            options
                .builder(live, false)
                .create_with_backend(Watched::new(disk.backend(), Arc::clone(&marker)))
                .map_err(|e| open_error(Path::new(label), e))
        });
        Store::from_db(
            Db::ReadWrite(RwLock::new(Writer::new(
                db,
                self.live(),
                self.concurrency == Concurrency::Auto,
                reopen,
            ))),
            label.to_owned(),
            None,
            check,
            None,
            None,
            None,
        )
    }

    /// A reader's open: as a live reader, knocking and retrying for up to [`KNOCK_WAIT`]
    /// while a writer holds the file to itself (see `door.rs`).
    fn open_reader(&self, path: &Path) -> Result<ReadOnlyDatabase> {
        let open = || self.builder(true, false).open_read_only(path);
        let first = match open() {
            Ok(db) => return Ok(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => Instant::now(),
            Err(e) => return Err(read_only_open_error(path, e, None)),
        };
        if let Err(e) = door::knock(path) {
            return Err(read_only_open_error(
                path,
                redb::DatabaseError::DatabaseAlreadyOpen,
                Some(format!("cannot knock: {e}")),
            ));
        }
        loop {
            std::thread::sleep(door::RETRY_EVERY);
            match open() {
                Ok(db) => return Ok(db),
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if first.elapsed() < KNOCK_WAIT => {}
                Err(e) => return Err(read_only_open_error(path, e, None)),
            }
        }
    }
}

/// Opens the store file read-write on redb's file backend, watched for failed syncs.
fn open_watched(builder: &redb::Builder, path: &Path, marker: &Arc<Marker>) -> Result<Database> {
    let as_redb = |e: std::io::Error| redb::DatabaseError::Storage(redb::StorageError::Io(e));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| open_error(path, as_redb(e)))?;
    let backend = redb::backends::FileBackend::new(file).map_err(|e| open_error(path, e))?;
    builder
        .create_with_backend(Watched::new(backend, Arc::clone(marker)))
        .map_err(|e| open_error(path, e))
}

/// A read-only open's errors: a writer that admits no live readers, or a store that needs
/// recovery nobody is running.
fn read_only_open_error(path: &Path, e: redb::DatabaseError, knock: Option<String>) -> Error {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => Error::Locked {
            what: format!(
                "{} (its writer did not let readers in within {} s of a knock{}: a job that has not committed since (it answers at its next commit), a job with deferred durability, a store opened with Concurrency::Exclusive, or an older resumable)",
                path.display(),
                KNOCK_WAIT.as_secs(),
                knock.map(|k| format!(", {k}")).unwrap_or_default(),
            ),
        },
        redb::DatabaseError::RepairAborted => Error::NeedsRecovery {
            path: path.to_owned(),
        },
        other => open_error(path, other),
    }
}

/// Opens the writer's database again in another concurrency mode (`true`: live readers).
type Reopen = Box<dyn Fn(bool) -> Result<Database> + Send + Sync>;

/// The writer's database and its concurrency mode, which a job may switch once (see
/// [`Concurrency::Auto`]).
pub(crate) struct Writer {
    /// `None` only if switching modes lost the file to another process: every later use
    /// then fails with [`Error::Poisoned`] (reopen the store).
    db: Option<Database>,
    live_readers: bool,
    /// Whether a job may switch the mode ([`Concurrency::Auto`]).
    switchable: bool,
    /// A job with deferred durability has the file to itself: knocks go unanswered.
    pinned: bool,
    reopen: Reopen,
}

impl Writer {
    fn new(db: Database, live_readers: bool, switchable: bool, reopen: Reopen) -> Self {
        Writer {
            db: Some(db),
            live_readers,
            switchable,
            pinned: false,
            reopen,
        }
    }

    /// The open database.
    pub(crate) fn db(&self) -> Result<&Database> {
        self.db.as_ref().ok_or(Error::Poisoned)
    }

    fn db_mut(&mut self) -> Result<&mut Database> {
        self.db.as_mut().ok_or(Error::Poisoned)
    }

    /// Closes the file and reopens it in the other mode (`to_live`: live readers). If that
    /// fails, reopens it as it was and returns the error; if that fails too, the file is
    /// lost (`db` stays `None`: [`Error::Poisoned`] from then on).
    fn reopen_in(&mut self, to_live: bool) -> Result<()> {
        drop(self.db.take());
        match (self.reopen)(to_live) {
            Ok(db) => {
                self.db = Some(db);
                self.live_readers = to_live;
                Ok(())
            }
            Err(e) => {
                self.db = (self.reopen)(!to_live).ok();
                Err(e)
            }
        }
    }
}

/// The open database: read-write (the writer) or read-only (an inspector).
pub(crate) enum Db {
    ReadWrite(RwLock<Writer>),
    ReadOnly(ReadOnlyDatabase),
}

/// Writes the fingerprint sidecar when the store closes (fingerprint.rs). A field of
/// [`StoreInner`] declared after its database, so that it drops after the file is closed.
struct Closer {
    store: PathBuf,
    /// When the last full check passed (seconds since the Unix epoch); 0 until the open
    /// succeeded, and when no full check is known: then no sidecar is written.
    checked_unix_s: AtomicU64,
    /// A failed sync's marker: while it stands, no sidecar vouches for the file.
    marker: Arc<Marker>,
}

impl Drop for Closer {
    fn drop(&mut self) {
        let checked = *self.checked_unix_s.get_mut();
        if checked != 0 && self.marker.read().is_none() {
            fingerprint::record(&self.store, checked);
        }
    }
}

/// Shared by a [`Store`] and every job opened from it.
pub(crate) struct StoreInner {
    db: Db,
    location: String,
    path: Option<PathBuf>,
    open_jobs: Mutex<HashSet<String>>,
    check: OpenCheck,
    /// The store's live transactions: the mode switches only when there are none.
    alive: Alive,
    /// Where readers knock ([`Concurrency::Auto`] on a file).
    door: Option<Door>,
    /// Held while a writable store on a file is open (`writer_lock.rs`).
    _writer_lock: Option<WriterLock>,
    /// Declared after `db`: fields drop in order, and the sidecar describes the closed file.
    closer: Option<Closer>,
}

impl std::fmt::Debug for StoreInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreInner")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl StoreInner {
    /// Notes when a full check of the file passed (`None`: none is known), for the
    /// sidecar written at close.
    pub(super) fn record_full_check(&self, checked_unix_s: Option<u64>) {
        if let Some(closer) = &self.closer {
            closer
                .checked_unix_s
                .store(checked_unix_s.unwrap_or(0), Ordering::Relaxed);
        }
    }

    pub(super) fn begin_write(&self) -> Result<Held<WriteTransaction>> {
        match &self.db {
            Db::ReadWrite(w) => {
                let w = w.read();
                let txn = w.db()?.begin_write().map_err(storage)?;
                Ok(self.alive.hold(txn))
            }
            Db::ReadOnly(_) => Err(Error::InvalidArgument(format!(
                "{} was opened read-only; open it read-write to change it",
                self.location
            ))),
        }
    }

    pub(super) fn begin_read(&self) -> Result<Held<ReadTransaction>> {
        let txn = match &self.db {
            Db::ReadWrite(w) => {
                let w = w.read();
                w.db()?.begin_read().map_err(storage)?
            }
            Db::ReadOnly(db) => db.begin_read().map_err(storage)?,
        };
        Ok(self.alive.hold(txn))
    }

    /// Lets readers in when one knocked, and has the file to itself again once they stopped
    /// coming (see `door.rs`); a look at the knock file at most every 20 ms. Call it where
    /// the calling thread holds no transaction of this store. A failed switch is logged and
    /// leaves the mode as it was.
    pub(crate) fn answer_readers(&self) {
        let (Some(door), Db::ReadWrite(lock)) = (&self.door, &self.db) else {
            return;
        };
        // A writer that answers knocks (`Auto`) starts without readers, so readers it has
        // came by a knock.
        let writer = || {
            let w = lock.read();
            let answers = !w.pinned && w.switchable && w.db.is_some();
            answers.then_some(w.live_readers)
        };
        let to_live = match door.look(writer) {
            Answer::Stay => return,
            Answer::Open => true,
            Answer::Close => false,
        };
        match self.switch_mode(to_live) {
            Ok(false) => {}
            Ok(true) if to_live => {
                tracing::info!(store = %self.location, "a reader knocked: live readers may open the store (each commit now costs a second fsync)");
            }
            Ok(true) => {
                door.closed();
                tracing::info!(store = %self.location, "no reader for a minute: the writer has the store to itself again");
            }
            Err(e) if !self.usable() => {
                tracing::error!(store = %self.location, error = %e, "lost the store while switching modes: reopen it");
            }
            Err(e) if to_live => {
                tracing::warn!(store = %self.location, error = %e, "a reader knocked, but the store could not be reopened for live readers");
            }
            Err(e) => {
                tracing::debug!(store = %self.location, error = %e, "a reader is still attached: live readers stay");
            }
        }
    }

    /// Whether the writer still has its database (a failed switch can lose it).
    fn usable(&self) -> bool {
        match &self.db {
            Db::ReadWrite(w) => w.read().db.is_some(),
            Db::ReadOnly(_) => true,
        }
    }

    /// Closes the file and reopens it in the other mode (`to_live`: live readers), if no
    /// transaction of the store is alive and no deferred job pinned it: `Ok(true)` when it
    /// switched, `Ok(false)` when it did not try. A failed reopen reopens it as it was and
    /// returns the error; if that fails too, the store is lost ([`Error::Poisoned`] from
    /// then on).
    pub(crate) fn switch_mode(&self, to_live: bool) -> Result<bool> {
        let Db::ReadWrite(lock) = &self.db else {
            return Ok(false);
        };
        let mut w = lock.write();
        // Another thread's transaction keeps redb's file open: the next look tries again.
        if !self.alive.none() || w.pinned || w.live_readers == to_live || w.db.is_none() {
            return Ok(false);
        }
        w.reopen_in(to_live).map(|()| true)
    }

    /// Exclusive access to the database, for integrity checks and compaction, which need
    /// no transaction to be alive.
    pub(super) fn with_exclusive<T>(
        &self,
        f: impl FnOnce(&mut Database) -> Result<T>,
    ) -> Result<T> {
        match &self.db {
            Db::ReadWrite(w) => f(w.write().db_mut()?),
            Db::ReadOnly(_) => Err(Error::InvalidArgument(format!(
                "{} was opened read-only; open it read-write for this operation",
                self.location
            ))),
        }
    }

    /// Under [`Concurrency::Auto`], switches a live-reader store to exclusive mode, for a job whose commits are one
    /// record each (`required == false`: live readers would cost a second fsync per
    /// commit, so switch if no reader is attached, else stay and say so in the log) or
    /// deferred (`required == true`: live readers cannot follow non-durable commits, so a
    /// store that cannot switch is [`Error::Locked`]). Does nothing for a read-only or
    /// already exclusive store.
    pub(crate) fn prefer_exclusive(&self, required: bool) -> Result<()> {
        let Db::ReadWrite(lock) = &self.db else {
            return Ok(());
        };
        let mut w = lock.write();
        if required {
            w.pinned = true;
        }
        if !w.live_readers || w.db.is_none() {
            return Ok(());
        }
        if !w.switchable {
            return if required {
                Err(Error::InvalidArgument(format!(
                    "{} is open with Concurrency::LiveReaders, and live readers can only follow durable commits: open it with Concurrency::Auto or Exclusive for a job with deferred durability",
                    self.location
                )))
            } else {
                Ok(())
            };
        }
        // Closes the file (unless a transaction of another job is alive: the reopen below
        // then fails and the store stays as it was).
        match w.reopen_in(false) {
            Ok(()) => {
                tracing::debug!(store = %self.location, "switched to exclusive mode");
                Ok(())
            }
            Err(e) => {
                if required {
                    Err(Error::Locked {
                        what: format!(
                            "{} (a job with deferred durability needs the store to itself, and another handle or a reader process has it open: {e})",
                            self.location
                        ),
                    })
                } else {
                    tracing::info!(store = %self.location, error = %e, "a reader has the store open: one-record commits stay in live-reader mode, which costs a second fsync per commit");
                    Ok(())
                }
            }
        }
    }

    /// Whether other processes may be reading as live readers (then every commit must be
    /// durable).
    pub(super) fn live_readers(&self) -> bool {
        match &self.db {
            Db::ReadWrite(w) => w.read().live_readers,
            Db::ReadOnly(_) => false,
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

    fn from_db(
        db: Db,
        location: String,
        path: Option<PathBuf>,
        check: OpenCheck,
        closer: Option<Closer>,
        door: Option<Door>,
        writer_lock: Option<WriterLock>,
    ) -> Result<Store> {
        let store = Store {
            inner: Arc::new(StoreInner {
                db,
                location,
                path,
                open_jobs: Mutex::new(HashSet::new()),
                check,
                alive: Alive::default(),
                door,
                _writer_lock: writer_lock,
                closer,
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

    /// What this open checked: redb's full page walk, nothing because the file is unchanged
    /// since a clean close and a recent full check, or nothing at all (see [`FullCheck`]).
    #[must_use]
    pub fn open_check(&self) -> OpenCheck {
        self.inner.check
    }

    /// Switches the writer between exclusive and live-reader mode as a reader's knock
    /// (and its absence) would, for crash tests of the switch on a simulated disk, where
    /// no reader can knock. `Ok(true)` when it switched; `Ok(false)` when it did not try
    /// (already in that mode, a transaction alive, a deferred job holding the file, or a
    /// read-only store).
    ///
    /// # Errors
    /// The reopen's error; the store is then as it was, or lost ([`Error::Poisoned`]) if
    /// reopening it as it was failed too.
    #[cfg(feature = "testing")]
    pub fn switch_live_readers(&self, on: bool) -> Result<bool> {
        self.inner.switch_mode(on)
    }

    /// Whether the store was opened read-only (a live reader).
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        matches!(self.inner.db, Db::ReadOnly(_))
    }

    /// See `StoreInner::prefer_exclusive`.
    pub(crate) fn prefer_exclusive(&self, required: bool) -> Result<()> {
        self.inner.prefer_exclusive(required)
    }

    /// The path of the store file (`None` for a store on a test backend).
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Whether a process holds the store's file for writing now: `Some(true)` yes (always,
    /// for a writable handle: this one), `Some(false)` no, `None` cannot tell (a store on a
    /// test backend, or a file whose writer lock file is missing: last written by an older
    /// version, or in a directory where it could not be made).
    ///
    /// A job whose lifecycle is [`JobState::Running`](crate::JobState::Running) while no
    /// process holds its store is not being run: its last run ended without pausing it
    /// (it crashed, was killed, or returned early), and running it again resumes it.
    #[must_use]
    pub fn writer_alive(&self) -> Option<bool> {
        if !self.is_read_only() {
            return Some(true);
        }
        self.inner.path.as_deref().and_then(writer_lock::held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CommitPolicy, Discard, Durability, JobOptions};

    fn commit(store: &Store, name: &str, policy: CommitPolicy, ids: std::ops::Range<u64>) {
        let mut job = store
            .job::<Discard<u64>>(name, JobOptions::new().commit_policy(policy))
            .unwrap();
        for id in ids {
            job.submit(id, id).unwrap();
        }
        job.flush().unwrap();
    }

    /// Records done of job `j`, read by a live reader.
    fn read_done(path: &Path) -> u64 {
        Store::open_read_only(path)
            .unwrap()
            .status("j")
            .unwrap()
            .records_done
    }

    /// A reader knocks, and the writer answers (as its next commit would).
    fn let_readers_in(store: &Store, path: &Path) {
        door::knock(path).unwrap();
        std::thread::sleep(door::LOOK_EVERY);
        store.inner.answer_readers();
        assert!(store.inner.live_readers(), "the writer let readers in");
    }

    #[test]
    fn a_reader_follows_a_live_writers_commits_and_never_blocks_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let writer = StoreOptions::new()
            .concurrency(Concurrency::LiveReaders)
            .open(&path)
            .unwrap();
        let mut job = writer.job::<Discard<u64>>("j", JobOptions::new()).unwrap();
        job.submit(0, 0).unwrap();
        job.flush().unwrap();
        let reader = Store::open_read_only(&path).unwrap();
        assert!(reader.is_read_only());
        assert_eq!(reader.status("j").unwrap().records_done, 1);
        for id in 1..10 {
            job.submit(id, id).unwrap();
        }
        job.flush().unwrap();
        assert_eq!(reader.status("j").unwrap().records_done, 10);
        // A second writer is still refused.
        assert!(matches!(
            StoreOptions::new().open(&path),
            Err(Error::Locked { .. })
        ));
    }

    #[test]
    fn one_record_commits_keep_the_file_to_themselves_until_a_reader_knocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        let mut job = store
            .job::<Discard<u64>>(
                "j",
                JobOptions::new().commit_policy(CommitPolicy::per_record()),
            )
            .unwrap();
        job.submit(0, 0).unwrap();
        assert!(!store.inner.live_readers());
        let refused = Store::open_read_only(&path).unwrap_err();
        assert!(matches!(&refused, Error::Locked { what } if what.contains("knock")));
        // The next commit answers the knock: readers get in (each commit now two-phase).
        std::thread::sleep(door::LOOK_EVERY);
        job.submit(1, 1).unwrap();
        assert!(store.inner.live_readers());
        assert_eq!(read_done(&path), 2);
        drop(job);
        drop(store);
        assert_eq!(read_done(&path), 2);
    }

    #[test]
    fn with_a_reader_attached_one_record_commits_stay_live_and_deferred_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        commit(&store, "grouped", CommitPolicy::new(), 0..5);
        let_readers_in(&store, &path);
        let reader = Store::open_read_only(&path).unwrap();
        commit(&store, "single", CommitPolicy::per_record(), 0..3);
        assert_eq!(reader.status("single").unwrap().records_done, 3);
        let deferred = CommitPolicy::new().durability(Durability::Deferred {
            max_interval: std::time::Duration::from_millis(10),
        });
        let refused = store
            .job::<Discard<u64>>("deferred", JobOptions::new().commit_policy(deferred))
            .unwrap_err();
        assert!(matches!(refused, Error::Locked { .. }), "{refused:?}");
        // The store keeps working after the refused switch.
        commit(&store, "grouped", CommitPolicy::new(), 5..8);
        assert_eq!(reader.status("grouped").unwrap().records_done, 8);
    }

    #[test]
    fn a_crashed_store_is_refused_by_readers_with_needs_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        commit(&store, "j", CommitPolicy::new(), 0..5);
        // A crash: the writer's file is copied while it is open, as a killed process leaves it.
        let crashed = dir.path().join("crashed.redb");
        std::fs::copy(&path, &crashed).unwrap();
        drop(store);
        let before = std::fs::read(&crashed).unwrap();
        let refused = Store::open_read_only(&crashed).unwrap_err();
        assert!(
            matches!(refused, Error::NeedsRecovery { .. }),
            "{refused:?}"
        );
        assert_eq!(std::fs::read(&crashed).unwrap(), before, "a reader wrote");
        drop(Store::open(&crashed).unwrap());
        assert_eq!(
            Store::open_read_only(&crashed)
                .unwrap()
                .status("j")
                .unwrap()
                .records_done,
            5
        );
    }
}
