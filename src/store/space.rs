//! The store file as a whole: how its bytes are used, compaction, and redb's own integrity
//! check (every page checksum).

use redb::{ReadableDatabase, ReadableTableMetadata};
use serde::Serialize;

use super::errors::storage;
use super::open::{Db, Store};
use crate::error::Result;

/// How the store file's bytes are used.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SpaceInfo {
    /// Size of the file (0 for a store on a test backend).
    pub file_bytes: u64,
    /// Bytes holding live data.
    pub used_bytes: u64,
    /// Bytes [`Store::compact`] could reclaim, about.
    pub free_bytes: u64,
    /// Whether `used_bytes` is exact (read-write open: redb's page allocation) or an estimate
    /// from the tables' sizes (read-only open, where redb offers no allocation figures).
    pub exact: bool,
}

/// What [`Store::compact`] did to the file's size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Compaction {
    /// File size before, in bytes (0 for a store on a test backend).
    pub bytes_before: u64,
    /// File size after, in bytes.
    pub bytes_after: u64,
}

impl Store {
    /// How the file's bytes are used. Exact on a read-write store; on a read-only one the
    /// used bytes are estimated from the tables' sizes.
    ///
    /// # Errors
    /// Storage errors.
    pub fn space(&self) -> Result<SpaceInfo> {
        let file_bytes = self.file_bytes();
        let (used_bytes, exact) = match self.inner.db() {
            Db::ReadWrite(w) => {
                let txn = w.read().db()?.begin_write().map_err(storage)?;
                let stats = txn.stats().map_err(storage)?;
                let used = stats.allocated_pages() * stats.page_size() as u64;
                txn.abort().map_err(storage)?;
                (used, true)
            }
            Db::ReadOnly(db) => {
                let txn = db.begin_read().map_err(storage)?;
                let mut used = 0u64;
                for handle in txn.list_tables().map_err(storage)? {
                    let t = txn.open_untyped_table(handle).map_err(storage)?;
                    let s = t.stats().map_err(storage)?;
                    used += s.stored_bytes() + s.metadata_bytes() + s.fragmented_bytes();
                }
                (used, false)
            }
        };
        Ok(SpaceInfo {
            file_bytes,
            used_bytes,
            free_bytes: file_bytes.saturating_sub(used_bytes),
            exact,
        })
    }

    /// Runs redb's full integrity check (every page checksum) and repairs what redb can.
    /// Returns `true` when the file was intact.
    ///
    /// # Errors
    /// [`crate::Error::Corrupt`] when the damage cannot be repaired; [`crate::Error::Storage`]
    /// when a transaction is in flight.
    pub fn check_integrity(&self) -> Result<bool> {
        let intact = self
            .inner
            .with_exclusive(|db| db.check_integrity().map_err(storage))?;
        // Passed (intact or repaired): the sidecar written at close may vouch for it.
        self.inner
            .record_full_check(Some(super::fingerprint::now_unix_s()));
        Ok(intact)
    }

    /// Reclaims free space in the file. Returns the file size before and after
    /// (equal when the store is on a test backend or nothing could be reclaimed).
    ///
    /// # Errors
    /// [`crate::Error::Storage`] when a transaction is in flight; [`crate::Error::Io`] on
    /// I/O errors.
    pub fn compact(&self) -> Result<Compaction> {
        let bytes_before = self.file_bytes();
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
        Ok(Compaction {
            bytes_before,
            bytes_after: self.file_bytes(),
        })
    }

    /// The file's size now (0 for a store on a test backend).
    fn file_bytes(&self) -> u64 {
        self.inner
            .file_path()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use crate::{JobOptions, Store};

    fn fill(store: &Store, n: u64) {
        let mut job = store
            .job::<crate::Discard<u64>>("j", JobOptions::new())
            .unwrap();
        for id in 0..n {
            job.submit(id, id).unwrap();
        }
        job.flush().unwrap();
        job.complete().unwrap();
    }

    #[test]
    fn space_accounts_for_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        fill(&store, 200);
        let rw = store.space().unwrap();
        assert!(rw.exact);
        assert!(
            rw.used_bytes > 0 && rw.used_bytes <= rw.file_bytes,
            "{rw:?}"
        );
        drop(store);
        let ro = Store::open_read_only(&path).unwrap().space().unwrap();
        assert!(!ro.exact);
        // redb may trim free space at the end of the file when the writer closes.
        assert_eq!(ro.file_bytes, std::fs::metadata(&path).unwrap().len());
        assert!(
            ro.used_bytes > 0 && ro.used_bytes <= ro.file_bytes,
            "{ro:?}"
        );
    }
}
