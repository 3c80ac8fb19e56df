//! Live readers on demand: a [`Concurrency::Auto`](super::Concurrency::Auto) writer has the
//! file to itself until a reader knocks.
//!
//! redb's single-writer mode, which lets reader processes follow a writer's commits, makes
//! every durable commit two-phase: a second header write and a second `fsync`. Measured
//! on the development VM (docs/BENCHMARKS.md), that second fsync cost about a fifth of the
//! group-commit throughput and doubled the commit latency a lightly loaded job is
//! acknowledged in. Readers are rare (an operator's `resumable status`, a watch), so the
//! default writer opens in exclusive mode (one fsync per commit) and switches to
//! single-writer mode only when a reader asks:
//!
//! - A reader whose read-only open finds the file held exclusively *knocks*: it creates (or
//!   touches) the knock file beside the store, `.NAME.readers`, owner-only and empty, and
//!   retries the open for up to [`KNOCK_WAIT`].
//! - The writer looks at the knock file at most every [`LOOK_EVERY`], from its commit path
//!   and (a runner) from its committer's idle wake-ups, never while a transaction of the
//!   store is alive. A knock younger than [`KNOCK_FRESH`] switches it to single-writer
//!   mode (it closes and reopens the file in that mode, a few hundred microseconds).
//! - Once no reader has knocked for [`KNOCK_STALE`], the writer tries to go back to
//!   exclusive mode (at most once per [`KNOCK_STALE`]); a reader still attached keeps it in
//!   single-writer mode, because the exclusive reopen then fails and the writer reopens as
//!   it was. Going back removes the knock file.
//!
//! Only the knock file's type and modification time are read: its contents are ignored,
//! a symlink or anything but a regular file is not a knock, and nothing follows a symlink
//! when touching it. A writer that commits nothing (an idle [`Job`](crate::Job)) answers at
//! its next commit; a reader that waited [`KNOCK_WAIT`] in vain gets [`Error::Locked`]
//! saying so.
//!
//! [`Error::Locked`]: crate::Error::Locked

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

/// How long a reader retries its open after knocking.
pub(crate) const KNOCK_WAIT: Duration = Duration::from_secs(1);
/// How often a reader retries while it waits.
pub(crate) const RETRY_EVERY: Duration = Duration::from_millis(10);
/// How often the writer looks at the knock file, at most.
pub(crate) const LOOK_EVERY: Duration = Duration::from_millis(20);
/// A knock younger than this opens the store to readers.
pub(crate) const KNOCK_FRESH: Duration = Duration::from_secs(10);
/// After this long without a knock the writer tries to have the file to itself again.
pub(crate) const KNOCK_STALE: Duration = Duration::from_mins(1);

/// The knock file of the store at `store`: `.NAME.readers` beside it.
pub(crate) fn knock_path(store: &Path) -> PathBuf {
    super::sidecar(store, "readers")
}

/// Knocks: creates the knock file (owner-only), or brings an existing regular one up to
/// date. Never follows a symlink.
pub(crate) fn knock(store: &Path) -> io::Result<()> {
    let path = knock_path(store);
    match fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_file() => touch(&path),
        Ok(_) => Err(io::Error::other(format!(
            "{} is not a regular file; remove it so that readers can knock",
            path.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(&path) {
                Ok(_) => Ok(()),
                // Another reader knocked first: that knock is as good.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Sets an existing knock file's modification time to now, without following a symlink.
fn touch(path: &Path) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        rustix::fs::OFlags::NOFOLLOW.bits().cast_signed(),
    );
    let file: File = options.open(path)?;
    file.set_modified(SystemTime::now())
}

/// How long ago a reader last knocked, if the knock file is a regular file. A time in the
/// future (a clock step) counts as now.
pub(crate) fn knock_age(store: &Path) -> Option<Duration> {
    let m = fs::symlink_metadata(knock_path(store)).ok()?;
    if !m.file_type().is_file() {
        return None;
    }
    let modified = m.modified().ok()?;
    Some(
        SystemTime::now()
            .duration_since(modified)
            .unwrap_or(Duration::ZERO),
    )
}

/// What the writer should do about readers, as [`Door::look`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Nothing to do (or not time to look yet).
    Stay,
    /// A reader knocked: open the file to readers.
    Open,
    /// No reader has knocked for a while: try to have the file to itself again.
    Close,
}

/// The writer's side: when it last looked, and when it may next try to close the door.
#[derive(Debug)]
pub(crate) struct Door {
    store: PathBuf,
    times: Mutex<Times>,
    fresh: Duration,
    stale: Duration,
}

#[derive(Debug)]
struct Times {
    next_look: Instant,
    next_close: Instant,
}

impl Door {
    pub(crate) fn new(store: PathBuf) -> Self {
        Self::with_times(store, KNOCK_FRESH, KNOCK_STALE)
    }

    /// A door with other thresholds (tests).
    pub(crate) fn with_times(store: PathBuf, fresh: Duration, stale: Duration) -> Self {
        let now = Instant::now();
        Door {
            store,
            times: Mutex::new(Times {
                next_look: now,
                next_close: now + stale,
            }),
            fresh,
            stale,
        }
    }

    /// Looks at the knock file if [`LOOK_EVERY`] has passed since the last look. Only then
    /// is `writer` asked for the writer's state: whether it has readers now (always because
    /// a knock let them in: a writer that answers knocks opens without them), or `None` when
    /// it does not answer knocks (a commit between looks costs a clock read, nothing of the
    /// writer's).
    pub(crate) fn look(&self, writer: impl FnOnce() -> Option<bool>) -> Answer {
        let now = Instant::now();
        {
            let mut t = self.times.lock();
            if now < t.next_look {
                return Answer::Stay;
            }
            t.next_look = now + LOOK_EVERY;
        }
        let Some(open) = writer() else {
            return Answer::Stay;
        };
        let age = knock_age(&self.store);
        if !open {
            if age.is_some_and(|a| a < self.fresh) {
                let mut t = self.times.lock();
                t.next_close = now + self.stale;
                return Answer::Open;
            }
            return Answer::Stay;
        }
        if age.is_some_and(|a| a < self.stale) {
            return Answer::Stay;
        }
        let mut t = self.times.lock();
        if now < t.next_close {
            return Answer::Stay;
        }
        t.next_close = now + self.stale;
        Answer::Close
    }

    /// The door was closed: the knock file goes (a reader knocks again when it comes).
    pub(crate) fn closed(&self) {
        let _ = fs::remove_file(knock_path(&self.store));
    }
}

/// Counts the store's live transactions, so the writer switches modes only when none is
/// alive (redb's file stays open under a live transaction, and the reopen would fail).
#[derive(Debug, Default, Clone)]
pub(crate) struct Alive(Arc<AtomicUsize>);

impl Alive {
    pub(crate) fn none(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }

    fn token(&self) -> Token {
        self.0.fetch_add(1, Ordering::AcqRel);
        Token(Arc::clone(&self.0))
    }

    /// `txn` counted as live until it is dropped (or committed).
    pub(crate) fn hold<T>(&self, txn: T) -> Held<T> {
        Held {
            txn,
            _token: self.token(),
        }
    }
}

#[derive(Debug)]
struct Token(Arc<AtomicUsize>);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A transaction counted as live. Fields drop in order: the transaction, then the count.
#[derive(Debug)]
pub(crate) struct Held<T> {
    txn: T,
    _token: Token,
}

impl<T> std::ops::Deref for Held<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.txn
    }
}

impl<T> std::ops::DerefMut for Held<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.txn
    }
}

impl Held<redb::WriteTransaction> {
    /// Commits; the transaction counts as live until the commit returns.
    pub(crate) fn commit(self) -> std::result::Result<(), redb::CommitError> {
        let Held { txn, _token } = self;
        txn.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_knock_is_an_owner_only_empty_file_and_a_symlink_is_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("s.redb");
        assert_eq!(knock_age(&store), None, "no knock yet");
        knock(&store).expect("knock");
        let path = knock_path(&store);
        assert_eq!(path, dir.path().join(".s.redb.readers"));
        let m = fs::metadata(&path).expect("knock file");
        assert_eq!(m.len(), 0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(m.permissions().mode() & 0o777, 0o600, "owner-only");
        }
        assert!(knock_age(&store).is_some_and(|a| a < Duration::from_secs(5)));
        // An old knock is brought up to date by the next one.
        File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_hours(1)))
            .expect("age it");
        assert!(knock_age(&store).is_some_and(|a| a >= Duration::from_secs(3599)));
        knock(&store).expect("knock again");
        assert!(knock_age(&store).is_some_and(|a| a < Duration::from_secs(5)));

        #[cfg(unix)]
        {
            // A symlink in its place is no knock, and knocking neither follows nor replaces it.
            let target = dir.path().join("target");
            fs::write(&target, b"keep").expect("target");
            let old = SystemTime::now() - Duration::from_hours(1);
            File::options()
                .write(true)
                .open(&target)
                .and_then(|f| f.set_modified(old))
                .expect("age target");
            fs::remove_file(&path).expect("remove knock");
            std::os::unix::fs::symlink(&target, &path).expect("symlink");
            assert_eq!(knock_age(&store), None, "a symlink is not a knock");
            assert!(knock(&store).is_err(), "refused, not followed");
            assert_eq!(fs::read(&target).expect("target"), b"keep");
            let t = fs::metadata(&target)
                .and_then(|m| m.modified())
                .expect("mtime");
            assert!(
                t <= old + Duration::from_secs(1),
                "the target was not touched"
            );
        }
    }

    #[test]
    fn the_door_opens_on_a_fresh_knock_and_closes_once_knocks_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("s.redb");
        let door = Door::with_times(
            store.clone(),
            Duration::from_millis(500),
            Duration::from_millis(200),
        );
        assert_eq!(door.look(|| Some(false)), Answer::Stay, "nobody knocked");
        knock(&store).expect("knock");
        assert_eq!(
            door.look(|| Some(false)),
            Answer::Stay,
            "too soon to look again"
        );
        std::thread::sleep(LOOK_EVERY);
        assert_eq!(door.look(|| Some(false)), Answer::Open);
        // Open by a knock: it stays open while knocks are recent...
        std::thread::sleep(LOOK_EVERY);
        assert_eq!(door.look(|| Some(true)), Answer::Stay);
        // ...a writer that does not answer knocks (LiveReaders, a deferred job) is never
        // told to close, however old the knock...
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(door.look(|| None), Answer::Stay);
        assert_eq!(
            door.look(|| Some(true)),
            Answer::Stay,
            "too soon to look again"
        );
        // ...and one that does closes once knocks stop.
        std::thread::sleep(LOOK_EVERY);
        assert_eq!(door.look(|| Some(true)), Answer::Close);
        door.closed();
        assert_eq!(knock_age(&store), None, "closing removes the knock");
        // A stale knock does not open it again.
        knock(&store).expect("knock");
        File::options()
            .write(true)
            .open(knock_path(&store))
            .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(5)))
            .expect("age it");
        std::thread::sleep(LOOK_EVERY);
        assert_eq!(door.look(|| Some(false)), Answer::Stay);
    }

    #[test]
    fn held_transactions_are_counted_until_dropped_or_committed() {
        use redb::ReadableDatabase as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("d.redb")).expect("db");
        let live = Alive::default();
        assert!(live.none());
        let r = live.hold(db.begin_read().expect("read"));
        assert!(!live.none());
        drop(r);
        assert!(live.none());
        let w = live.hold(db.begin_write().expect("write"));
        assert!(!live.none());
        w.commit().expect("commit");
        assert!(live.none());
        let w = live.hold(db.begin_write().expect("write"));
        drop(w);
        assert!(live.none());
    }
}
