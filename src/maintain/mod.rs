//! The background maintainer: one thread that writes snapshots handed to it, retires old
//! ones and compacts the file, off the commit path; between hand-offs it scrubs the job's
//! committed values at a bounded rate (`scrub.rs`, docs/SCRUB.md).
//!
//! Who does what, and why: the state `S` belongs to the committer (it is not `Clone`, and
//! the fold must see every commit in order), so the committer *encodes* it (one bincode
//! pass, the only snapshot cost left on the commit path) and hands the bytes over a bounded
//! channel of one slot. If the maintainer is still busy with the previous snapshot, the
//! offer is refused and the committer tries again after its next commit: snapshots never
//! queue up and never block a commit. The maintainer checksums the bytes and writes the new
//! snapshot and the retirement of old ones in **one** write transaction, without fsync; it
//! becomes durable with the committer's next durable commit. Because redb keeps a prefix of
//! the commit sequence after a crash, a lost snapshot write loses its retirements with it:
//! at every instant the store holds the newest snapshot it ever durably held, or a newer
//! one. The write briefly takes redb's single writer (no fsync), which is the stall a
//! commit can see.
//!
//! Retention keeps the newest `keep_snapshots` unpinned snapshots plus every pinned one.
//! Lineage and outputs are never deleted: they are the job's record (export reads the
//! outputs, `verify` walks the whole lineage chain), not replay scratch.
//!
//! Compaction needs no live transaction. The committer holds the maintainer's *gate* around
//! each commit; the maintainer takes the gate to compact, so commits wait for the
//! compaction (rare: only when the snapshot bytes retired since the last one pass the
//! threshold) and compaction never races a commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;

use crate::error::Result;
use crate::runner::Stats;
use crate::store::SnapshotWriter;

mod scrub;

use scrub::Scrub;

/// When the maintainer snapshots, what it keeps and when it compacts
/// (see [`Runner::maintainer`](crate::Runner::maintainer)).
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct MaintainOptions {
    pub(crate) snapshot_every_commits: Option<u64>,
    pub(crate) snapshot_interval: Duration,
    pub(crate) keep_snapshots: Option<usize>,
    pub(crate) compact_free_ratio: f64,
    pub(crate) compact_min_freed_bytes: u64,
    pub(crate) scrub_rate: u64,
    pub(crate) scrub_every: Duration,
}

impl Default for MaintainOptions {
    fn default() -> Self {
        MaintainOptions {
            snapshot_every_commits: None,
            snapshot_interval: Duration::from_mins(1),
            keep_snapshots: None,
            compact_free_ratio: 0.25,
            compact_min_freed_bytes: 64 << 20,
            scrub_rate: 32 << 20,
            scrub_every: Duration::from_hours(1),
        }
    }
}

impl MaintainOptions {
    /// Defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Snapshot after this many commits since the last snapshot. Default: the job's
    /// [`JobOptions::snapshot_every_commits`](crate::JobOptions::snapshot_every_commits)
    /// (0 there means: only on the interval).
    pub fn snapshot_every_commits(mut self, commits: u64) -> Self {
        self.snapshot_every_commits = Some(commits);
        self
    }

    /// Snapshot when this much time passed since the last snapshot and a commit happened.
    /// Default: 60 s.
    pub fn snapshot_interval(mut self, interval: Duration) -> Self {
        self.snapshot_interval = interval;
        self
    }

    /// Unpinned snapshots to keep. Default: the job's
    /// [`JobOptions::keep_snapshots`](crate::JobOptions::keep_snapshots); at least 1.
    pub fn keep_snapshots(mut self, keep: usize) -> Self {
        self.keep_snapshots = Some(keep.max(1));
        self
    }

    /// Compact when the bytes of snapshots retired since the last compaction exceed this
    /// share of the file's size (and [`MaintainOptions::compact_min_freed_bytes`]).
    /// Default: 0.25. Retired snapshots are the only large deletions a job makes, so they
    /// stand in for redb's free-space figure, which costs a walk of every page to compute.
    pub fn compact_free_ratio(mut self, ratio: f64) -> Self {
        self.compact_free_ratio = if ratio.is_finite() {
            ratio.max(0.0)
        } else {
            0.25
        };
        self
    }

    /// Never compact for less than this many retired bytes. Default: 64 MiB. `u64::MAX`
    /// turns compaction off.
    pub fn compact_min_freed_bytes(mut self, bytes: u64) -> Self {
        self.compact_min_freed_bytes = bytes;
        self
    }

    /// Bytes per second the background scrub re-reads and checks (docs/SCRUB.md). Default:
    /// 32 MiB/s. 0 turns the scrub off.
    pub fn scrub_rate(mut self, bytes_per_s: u64) -> Self {
        self.scrub_rate = bytes_per_s;
        self
    }

    /// The pause between the end of one scrub pass and the start of the next. Default: 1
    /// hour. The first pass starts 10 s after the run does (or after this pause, if shorter).
    pub fn scrub_every(mut self, pause: Duration) -> Self {
        self.scrub_every = pause;
        self
    }
}

/// Work sent to the maintainer.
#[derive(Debug)]
enum Work {
    /// The state encoded right after commit `seq`.
    Snapshot { seq: u64, state: Vec<u8> },
}

/// What the maintainer did, shared with the runner's stats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MaintainerReport {
    pub snapshots: u64,
    pub retired: u64,
    pub compactions: u64,
    pub last_compaction: Option<(u64, u64)>,
    pub last_generation: Option<u64>,
    pub last_error: Option<String>,
    pub scrub_passes: u64,
    pub scrub_bytes: u64,
    pub scrub_damaged: u64,
}

impl MaintainerReport {
    /// Copies the maintainer's figures into a run's stats.
    pub(crate) fn fill(&self, s: &mut Stats) {
        s.snapshots = self.snapshots;
        s.snapshots_retired = self.retired;
        s.compactions = self.compactions;
        s.last_compaction = self.last_compaction;
        s.scrub_passes = self.scrub_passes;
        s.scrub_bytes = self.scrub_bytes;
        s.scrub_damaged = self.scrub_damaged;
    }
}

#[derive(Debug, Default)]
pub(crate) struct Shared {
    report: Mutex<MaintainerReport>,
    /// Held by the committer around each commit and by the maintainer while it compacts.
    gate: Mutex<()>,
}

/// The maintainer thread's handle. Dropping it lets the thread finish the snapshot it holds,
/// then joins it.
pub(crate) struct Maintainer {
    tx: Option<Sender<Work>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    alive: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Maintainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maintainer").finish_non_exhaustive()
    }
}

/// Decrements the live-thread count when the thread ends, however it ends.
struct AliveGuard(Arc<AtomicUsize>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The maintainer's thread-side state.
struct Worker {
    writer: SnapshotWriter,
    job: String,
    options: MaintainOptions,
    shared: Arc<Shared>,
    freed_bytes: u64,
}

impl Maintainer {
    /// Starts the thread for job `job`, writing snapshots through `writer` (whose book
    /// carries the retention rule).
    pub(crate) fn start(
        writer: SnapshotWriter,
        job: &str,
        options: MaintainOptions,
    ) -> Result<Self> {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = crossbeam_channel::bounded(1);
        let alive = Arc::new(AtomicUsize::new(1));
        let guard = AliveGuard(Arc::clone(&alive));
        let scrub = Scrub::new(writer.scrubber(), job, &options);
        let worker = Worker {
            writer,
            job: job.to_owned(),
            options,
            shared: Arc::clone(&shared),
            freed_bytes: 0,
        };
        let thread = std::thread::Builder::new()
            .name(format!("resumable-maintain-{job}"))
            .spawn(move || {
                let _guard = guard;
                worker.run(&rx, scrub);
            });
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                // The closure (and the guard in it) was dropped with the failed spawn.
                return Err(e.into());
            }
        };
        Ok(Maintainer {
            tx: Some(tx),
            thread: Some(thread),
            shared,
            alive,
        })
    }

    /// Offers the state encoded after commit `seq`; `false` if the maintainer is still busy
    /// with the previous one (the committer offers again later) or has stopped.
    pub(crate) fn offer_snapshot(&self, seq: u64, state: Vec<u8>) -> bool {
        let Some(tx) = &self.tx else { return false };
        match tx.try_send(Work::Snapshot { seq, state }) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }

    /// Whether an offered snapshot would be taken now.
    pub(crate) fn ready(&self) -> bool {
        self.tx.as_ref().is_some_and(|tx| !tx.is_full())
    }

    /// The lock the committer holds around each commit.
    pub(crate) fn gate(&self) -> &Mutex<()> {
        &self.shared.gate
    }

    /// What the maintainer did so far.
    pub(crate) fn report(&self) -> MaintainerReport {
        self.shared.report.lock().clone()
    }

    /// Sends a snapshot, waiting for the slot (tests only; the committer never waits).
    #[cfg(test)]
    pub(crate) fn send_snapshot(&self, seq: u64, state: Vec<u8>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Work::Snapshot { seq, state });
        }
    }

    /// Live maintainer threads of this handle (0 or 1), for shutdown tests.
    #[cfg(test)]
    pub(crate) fn alive_counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.alive)
    }

    /// Lets the thread finish its work, joins it, and returns its report.
    pub(crate) fn shutdown(mut self) -> MaintainerReport {
        self.stop();
        self.report()
    }

    fn stop(&mut self) {
        // Closing the channel ends the thread's loop once it has drained it.
        self.tx = None;
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the maintainer thread panicked");
        }
        debug_assert_eq!(self.alive.load(Ordering::SeqCst), 0);
    }
}

impl Drop for Maintainer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Worker {
    /// Handles work as it arrives; between hand-offs, runs scrub batches when due. Waiting
    /// for the next batch is waiting on the channel, so a hand-off or a stop (the channel
    /// closing) is seen at once.
    fn run(mut self, rx: &Receiver<Work>, mut scrub: Option<Scrub>) {
        loop {
            let due = scrub.as_ref().and_then(Scrub::due);
            let received = match due {
                Some(at) => match rx.recv_deadline(at) {
                    Ok(work) => Some(work),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                },
                None => match rx.recv() {
                    Ok(work) => Some(work),
                    Err(_) => return,
                },
            };
            match (received, scrub.as_mut()) {
                (Some(work), _) => self.handle(work),
                (None, Some(s)) => s.step(&self.shared),
                (None, None) => {}
            }
        }
    }

    /// Does one piece of work: the snapshot transaction, then compaction when due. Errors
    /// are reported, not raised: the next offer tries again. (The crash sweep in
    /// `crash_tests` drives this directly, one call per hand-off, so every I/O op happens in
    /// a deterministic order.)
    fn handle(&mut self, work: Work) {
        match work {
            Work::Snapshot { seq, state } => {
                if let Err(e) = self.snapshot(seq, state) {
                    tracing::warn!(job = %self.job, seq, error = %e, "maintainer could not write a snapshot; the next one will be tried");
                    self.shared.report.lock().last_error = Some(e.to_string());
                    return;
                }
                if let Err(e) = self.compact_if_due() {
                    tracing::warn!(job = %self.job, error = %e, "compaction failed; it will be tried again");
                    self.shared.report.lock().last_error = Some(e.to_string());
                }
            }
        }
    }

    /// Writes the snapshot and retires the old ones in one transaction, without fsync (the
    /// committer's next durable commit makes it durable).
    fn snapshot(&mut self, seq: u64, state: Vec<u8>) -> Result<()> {
        let written = self.writer.write(seq, state, false)?;
        self.freed_bytes += written.freed_bytes;
        tracing::debug!(job = %self.job, seq, generation = written.generation, "snapshot written");
        for g in &written.retired {
            tracing::debug!(job = %self.job, generation = g, "snapshot retired");
        }
        let mut report = self.shared.report.lock();
        report.snapshots += 1;
        report.retired += written.retired.len() as u64;
        report.last_generation = Some(written.generation);
        drop(report);
        Ok(())
    }

    fn compact_if_due(&mut self) -> Result<()> {
        let store = self.writer.store();
        let file = store
            .path()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        #[expect(
            clippy::cast_sign_loss,
            reason = "the ratio is clamped to be non-negative"
        )]
        let threshold = (self.options.compact_free_ratio * file as f64) as u64;
        if self.freed_bytes < threshold.max(self.options.compact_min_freed_bytes) {
            return Ok(());
        }
        let compaction = {
            let _gate = self.shared.gate.lock();
            store.compact()?
        };
        let (before, after) = (compaction.bytes_before, compaction.bytes_after);
        self.freed_bytes = 0;
        tracing::info!(job = %self.job, before, after, "store compacted");
        let mut report = self.shared.report.lock();
        report.compactions += 1;
        report.last_compaction = Some((before, after));
        Ok(())
    }
}

#[cfg(test)]
#[cfg(feature = "testing")]
mod crash_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Fold, JobOptions, Store};
    use serde::{Deserialize, Serialize};

    #[derive(Default, Serialize, Deserialize, Debug, PartialEq)]
    struct Total(u64);

    impl Fold for Total {
        type Output = u64;
        fn apply(&mut self, _id: u64, out: &u64) {
            self.0 += out;
        }
    }

    #[test]
    fn snapshots_land_retention_holds_and_drop_joins_the_thread() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path().join("m.redb"))?;
        let mut job = store.job::<Total>("m", JobOptions::new().snapshot_every_commits(0))?;
        let writer = job.hand_off_snapshots(2);
        let maintainer = Maintainer::start(writer, "m", MaintainOptions::new())?;
        let alive = maintainer.alive_counter();
        assert_eq!(alive.load(Ordering::SeqCst), 1);
        for id in 0..6u64 {
            job.commit([(id, id + 1)])?;
            let (seq, state) = job.encoded_state()?;
            // Blocking send (tests only): every snapshot lands, deterministically.
            maintainer.send_snapshot(seq, state);
        }
        let report = maintainer.shutdown();
        assert_eq!(
            alive.load(Ordering::SeqCst),
            0,
            "dropped maintainer leaves no thread"
        );
        assert_eq!(report.snapshots, 6);
        assert_eq!(report.retired, 4);
        job.take_back_snapshots();
        let snaps = store.snapshots("m")?;
        assert_eq!(snaps.len(), 2);
        let newest = snaps.last().and_then(|s| s.seq);
        assert_eq!(newest, Some(6), "the snapshot a resume needs is the newest");
        assert!(
            job.verify()?.is_ok(),
            "each snapshot equals the fold up to its seq"
        );
        drop(job);
        let job = store.job::<Total>("m", JobOptions::new())?;
        assert_eq!(job.state(), &Total((1..=6).sum()));
        assert_eq!(
            job.stats().replayed_commits,
            0,
            "resumed from the newest snapshot"
        );
        Ok(())
    }
}
