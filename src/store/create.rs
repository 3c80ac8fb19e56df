//! Crash-safe creation of a new store file.
//!
//! redb's own `create` interrupted part-way can leave a file that never opens again
//! ("magic number mismatch"), and a zero-byte file makes it silently start a new database.
//! So a new store is built under a temporary name in the same directory, given its first
//! durable commit (the format version), synced, then linked into place and the directory
//! synced. The final path therefore either does not exist or holds a complete store.
//! `hard_link` rather than `rename` so that two processes racing to create the same store
//! cannot replace one another's file: the loser gets `AlreadyExists` and opens the winner's.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use redb::backends::FileBackend;
use redb::{Database, StorageBackend};

use super::errors::storage;
use super::open::FORMAT_VERSION;
use super::tables;
use crate::error::{Error, Result};

/// Writes the store-wide tables in one durable commit.
pub(super) fn initialize(db: &Database) -> Result<()> {
    let txn = db.begin_write().map_err(storage)?;
    {
        let mut t = txn.open_table(tables::STORE).map_err(storage)?;
        t.insert(tables::FORMAT_KEY, FORMAT_VERSION.to_le_bytes().as_slice())
            .map_err(storage)?;
        txn.open_table(tables::JOBS).map_err(storage)?;
    }
    txn.commit().map_err(storage)?;
    Ok(())
}

fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map_or_else(|| "store".into(), |n| n.to_string_lossy().into_owned());
    format!(".{name}.creating-")
}

fn temp_path(path: &Path) -> PathBuf {
    path.with_file_name(format!("{}{}", temp_prefix(path), std::process::id()))
}

/// Removes `.NAME.creating-PID` files left beside `path` by a creation that crashed, when
/// process PID is gone (no `/proc/PID`). Off Linux, where that cannot be told cheaply, they
/// are left and logged. Failures are logged, never raised: the leftovers take space but do
/// no harm.
pub(super) fn remove_stale_temporaries(path: &Path) {
    let prefix = temp_prefix(path);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix.as_str()))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let leftover = entry.path();
        if !cfg!(target_os = "linux") {
            tracing::warn!(file = %leftover.display(), "leftover of an interrupted store creation; remove it if process {pid} is gone");
            continue;
        }
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        match fs::remove_file(&leftover) {
            Ok(()) => tracing::warn!(
                file = %leftover.display(),
                pid,
                "removed the leftover of a store creation interrupted by a crash"
            ),
            Err(e) => tracing::warn!(
                file = %leftover.display(),
                error = %e,
                "cannot remove the leftover of an interrupted store creation"
            ),
        }
    }
}

/// Creates a new store at `path` atomically, filled by `fill` (given the new database after
/// the store-wide tables are written), failing with `AlreadyExists` as [`Error::Io`] if
/// `path` exists. Used to write a store that must not replace or merge with another (salvage).
pub(super) fn create_new_filled(
    path: &Path,
    fill: impl FnOnce(&Database) -> Result<()>,
) -> Result<()> {
    let tmp = temp_path(path);
    let result = build_filled(path, &tmp, |b| b, fill, true);
    let _ = fs::remove_file(&tmp);
    result
}

/// Creates a store at `path` atomically. `wrap` lets tests put a fault-injecting layer
/// between redb and the temporary file.
pub(super) fn create_atomically<B: StorageBackend>(
    path: &Path,
    wrap: impl FnOnce(FileBackend) -> B,
) -> Result<()> {
    let tmp = temp_path(path);
    let result = build(path, &tmp, wrap);
    // Whatever happened, the temporary file is no longer needed.
    let _ = fs::remove_file(&tmp);
    result
}

fn build<B: StorageBackend>(
    path: &Path,
    tmp: &Path,
    wrap: impl FnOnce(FileBackend) -> B,
) -> Result<()> {
    build_filled(path, tmp, wrap, |_| Ok(()), false)
}

fn build_filled<B: StorageBackend>(
    path: &Path,
    tmp: &Path,
    wrap: impl FnOnce(FileBackend) -> B,
    fill_rows: impl FnOnce(&Database) -> Result<()>,
    exclusive: bool,
) -> Result<()> {
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)?;
    {
        let backend = FileBackend::new(file).map_err(storage)?;
        let db = redb::Builder::new()
            .create_with_backend(wrap(backend))
            .map_err(storage)?;
        initialize(&db)?;
        fill_rows(&db)?;
    }
    File::open(tmp)?.sync_all()?;
    match fs::hard_link(tmp, path) {
        Ok(()) => {}
        // Another process created the store first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && !exclusive => return Ok(()),
        Err(e) => return Err(Error::from(e)),
    }
    sync_dir(path)
}

fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;
    use std::io;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Wraps the temporary file and fails every operation from the `fail_at`-th mutating
    /// one on: the process "dies" part-way through creation.
    #[derive(Debug)]
    struct StopAt {
        inner: FileBackend,
        ops: Arc<AtomicU64>,
        fail_at: u64,
    }

    impl StopAt {
        fn tick(&self) -> io::Result<()> {
            if self.ops.fetch_add(1, Ordering::SeqCst) + 1 >= self.fail_at {
                Err(io::Error::other("injected stop"))
            } else {
                Ok(())
            }
        }
    }

    impl StorageBackend for StopAt {
        fn len(&self) -> io::Result<u64> {
            self.inner.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
            self.inner.read(offset, out)
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.tick()?;
            self.inner.set_len(len)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.tick()?;
            self.inner.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
            self.tick()?;
            self.inner.write(offset, data)
        }
    }

    #[test]
    fn creation_stopped_at_any_op_leaves_no_file_and_a_later_open_succeeds() {
        let mut stopped = 0;
        for fail_at in 1..=40u64 {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("s.redb");
            let ops = Arc::new(AtomicU64::new(0));
            let counter = ops.clone();
            let result = create_atomically(&path, move |inner| StopAt {
                inner,
                ops: counter,
                fail_at,
            });
            if result.is_err() {
                stopped += 1;
                assert!(
                    !path.exists(),
                    "stop at op {fail_at} left a file at the final path"
                );
            }
            let names: Vec<_> = fs::read_dir(dir.path()).expect("ls").collect();
            assert!(names.len() <= 1, "temporary files left behind: {names:?}");
            StoreOptions::default()
                .open(&path)
                .expect("a later open creates or opens the store");
        }
        assert!(
            stopped > 5,
            "the fault should hit creation many times, hit {stopped}"
        );
    }

    #[test]
    fn zero_byte_and_foreign_files_are_refused_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.redb");
        File::create(&empty).expect("create");
        assert!(matches!(
            StoreOptions::default().open(&empty),
            Err(Error::NotAStore { .. })
        ));
        assert_eq!(
            fs::metadata(&empty).expect("stat").len(),
            0,
            "the file was not touched"
        );

        let json = dir.path().join("foreign.redb");
        fs::write(&json, b"{\"not\": \"a store\"}").expect("write");
        assert!(matches!(
            StoreOptions::default().open(&json),
            Err(Error::NotAStore { .. })
        ));

        let plain = dir.path().join("plain.redb");
        drop(Database::create(&plain).expect("plain redb"));
        assert!(matches!(
            StoreOptions::default().open(&plain),
            Err(Error::NotAStore { .. })
        ));
    }
}
