//! Snapshots: how one is sealed, which ones retention keeps, and the shared book of live
//! generations that the commit path and the background maintainer both write through.
//!
//! Retention keeps the newest `keep` unpinned snapshots plus every pinned one; a new
//! snapshot and the retirements it causes are written in one transaction, so a crash never
//! leaves fewer snapshots than before. Pins change only while the job is closed (an
//! operator command holds the job's claim), so the book's copy of them stays true while a
//! handle is open.

use std::sync::Arc;

use parking_lot::Mutex;

use super::open::StoreInner;
use super::read;
use super::records::SnapshotRecord;
use super::tables::JobTables;
use super::write::{self, CommitPlan};
use crate::codec;
use crate::error::Result;
use crate::lineage::now_ms;

/// Seals the encoded state as of commit `seq` into a stored snapshot value.
pub(crate) fn seal(seq: u64, state: Vec<u8>) -> Result<Vec<u8>> {
    codec::seal_value(
        "snapshot",
        &SnapshotRecord {
            seq,
            time_ms: now_ms(),
            state,
        },
    )
}

/// The generations to retire so that, after `adding` new ones, at most `keep` unpinned
/// snapshots remain: the oldest unpinned ones. Pinned generations are never retired.
pub(crate) fn retirements(
    generations: &[u64],
    pinned: &[u64],
    keep: usize,
    adding: usize,
) -> Vec<u64> {
    let unpinned: Vec<u64> = generations
        .iter()
        .copied()
        .filter(|g| !pinned.contains(g))
        .collect();
    let excess = unpinned.len().saturating_sub(keep.saturating_sub(adding));
    unpinned[..excess].to_vec()
}

/// A job's live snapshot generations and what retention needs to know.
#[derive(Debug)]
pub(crate) struct SnapshotBook {
    /// Live (not retired) generations, ascending.
    generations: Vec<u64>,
    next_generation: u64,
    pinned: Vec<u64>,
    keep: usize,
}

/// A new snapshot's place in the book, before it is written.
#[derive(Debug)]
pub(crate) struct Planned {
    pub generation: u64,
    pub retire: Vec<u64>,
}

impl SnapshotBook {
    pub(crate) fn new(generations: Vec<u64>, pinned: Vec<u64>, keep: usize) -> Self {
        let next_generation = generations.last().map_or(1, |g| g + 1);
        SnapshotBook {
            generations,
            next_generation,
            pinned,
            keep: keep.max(1),
        }
    }

    /// The generation of one more snapshot and what it retires.
    pub(crate) fn plan(&self) -> Planned {
        Planned {
            generation: self.next_generation,
            retire: retirements(&self.generations, &self.pinned, self.keep, 1),
        }
    }

    /// Records a planned snapshot as written.
    pub(crate) fn written(&mut self, planned: &Planned) {
        self.generations.retain(|g| !planned.retire.contains(g));
        self.generations.push(planned.generation);
        self.next_generation = planned.generation + 1;
    }

    pub(crate) fn set_keep(&mut self, keep: usize) {
        self.keep = keep.max(1);
    }
}

/// What a snapshot write did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Written {
    pub generation: u64,
    pub retired: Vec<u64>,
    /// Stored bytes of the retired snapshots.
    pub freed_bytes: u64,
}

/// Writes snapshots of one job from any thread, through the job's shared book (the
/// maintainer's way in; the commit path uses the same book inside its own commits).
#[derive(Clone, Debug)]
pub(crate) struct SnapshotWriter {
    pub(super) store: Arc<StoreInner>,
    pub(super) tables: JobTables,
    pub(super) book: Arc<Mutex<SnapshotBook>>,
}

impl SnapshotWriter {
    /// Writes the state encoded after commit `seq` as a new snapshot and retires old ones,
    /// in one transaction (durable or not).
    pub(crate) fn write(&self, seq: u64, state: Vec<u8>, durable: bool) -> Result<Written> {
        let sealed = seal(seq, state)?;
        // The book stays locked across the write, so a commit-path snapshot cannot take
        // the same generation.
        let mut book = self.book.lock();
        let planned = book.plan();
        let freed_bytes = {
            let txn = self.store.begin_read()?;
            let mut freed = 0u64;
            for &g in &planned.retire {
                if let Some((bytes, _)) = read::read_snapshot(&txn, &self.tables, g)? {
                    freed += bytes as u64;
                }
            }
            freed
        };
        let plan = CommitPlan {
            snapshot: Some((planned.generation, sealed)),
            retire: &planned.retire,
            durable,
            ..CommitPlan::default()
        };
        write::commit(&self.store, &self.tables, &plan)?;
        book.written(&planned);
        Ok(Written {
            generation: planned.generation,
            retired: planned.retire,
            freed_bytes,
        })
    }

    /// The store file's path, for the maintainer's compaction threshold.
    pub(crate) fn store(&self) -> crate::Store {
        crate::Store {
            inner: Arc::clone(&self.store),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retirement_keeps_the_newest_and_every_pinned_generation() {
        assert_eq!(retirements(&[1, 2, 3, 4], &[], 2, 1), vec![1, 2, 3]);
        assert_eq!(retirements(&[1, 2, 3, 4], &[1, 3], 2, 1), vec![2]);
        assert_eq!(retirements(&[], &[], 1, 1), Vec::<u64>::new());
        assert_eq!(retirements(&[5], &[], 3, 1), Vec::<u64>::new());
        assert_eq!(retirements(&[1, 2, 3], &[], 3, 0), Vec::<u64>::new());
    }

    #[test]
    fn the_book_numbers_generations_and_applies_retirements() {
        let mut book = SnapshotBook::new(vec![2, 3], vec![2], 1);
        let p = book.plan();
        assert_eq!((p.generation, p.retire.clone()), (4, vec![3]));
        book.written(&p);
        assert_eq!(book.generations, vec![2, 4]);
        assert_eq!(book.plan().generation, 5);
    }
}
