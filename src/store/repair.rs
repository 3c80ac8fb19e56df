//! Operator repairs on a job that is not open: requeue dead letters, rewind it to a
//! snapshot, fork it into a new store as of a snapshot, pin and unpin snapshots. Each
//! holds the job's claim for its whole run.
//!
//! Each repair is one durable write transaction, so a crash part-way leaves the job exactly
//! as it was (a fork's half-built file is removed). What a job keeps when it is cut back to
//! snapshot generation `G`, which reflects commit `S`, is defined by its lineage, not by
//! what happens to be stored: the outputs and dead letters named by entries `1..=S`. Every
//! other output, dead letter, lineage entry (`> S`) and snapshot (newer than `G`) is
//! dropped, even if its bytes are damaged, which is what makes rewind the cure for damage
//! found after a good snapshot. Requeues are not lineage entries, so a dead letter requeued
//! after `S` stays requeued (its record is simply pending again).

use std::path::Path;

use redb::{ReadTransaction, ReadableTable};
use serde::Serialize;

use super::claim::Claim;
use super::errors::storage;
use super::meta::{self, JobMeta};
use super::open::Store;
use super::read::{self, Run, SeqOrder, open_table_ro};
use super::records::SnapshotRecord;
use super::segment;
use super::tables::{self, JobTables};
use super::write::{self, CommitPlan, retain_rows};
use crate::codec;
use crate::error::{Error, Result};
use crate::lifecycle::JobState;
use crate::progress::RangeSet;

/// What [`Store::rewind`] or [`Store::fork`] kept and dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RewindReport {
    /// Job name.
    pub job: String,
    /// The snapshot generation the job was cut back to (0: the beginning).
    pub generation: u64,
    /// The commit that snapshot reflects: the job's last commit afterwards.
    pub seq: u64,
    /// Records settled (outputs and dead letters) as of that commit.
    pub records_kept: u64,
    /// Commits (lineage entries) dropped, or not copied by a fork.
    pub commits_dropped: u64,
    /// Outputs dropped, or not copied.
    pub outputs_dropped: u64,
    /// Dead letters dropped, or not copied.
    pub dead_letters_dropped: u64,
    /// Snapshots dropped, or not copied.
    pub snapshots_dropped: u64,
}

/// What a job keeps when cut back to a snapshot.
struct Cut {
    meta: JobMeta,
    generation: u64,
    seq: u64,
    /// Ids whose outputs entries `1..=seq` stored.
    outputs: RangeSet,
    /// Ids entries `1..=seq` dead-lettered.
    dead: RangeSet,
    /// Output runs of entries `1..=seq`, for the id index.
    runs: Vec<Run>,
}

impl Cut {
    /// Whether the cut keeps the dead letter of `id`: one of its entries dead-lettered it
    /// and no kept output or dead letter already has the id (`kept` tracks both).
    fn keeps_dead_letter(&self, id: u64, kept: &mut RangeSet) -> bool {
        let keep = self.dead.contains(id) && !kept.contains(id);
        if keep {
            kept.insert(id);
        }
        keep
    }

    /// Whether the cut keeps commit `seq`.
    fn keeps_commit(&self, seq: u64) -> bool {
        seq <= self.seq
    }

    /// Whether the cut keeps stored snapshot `g`: generations up to the cut's, reflecting
    /// commits up to its sequence. A damaged older snapshot is kept as it is (verify
    /// reports it).
    fn keeps_snapshot(&self, g: u64, bytes: &[u8]) -> bool {
        if g > self.generation || self.generation == 0 {
            return false;
        }
        codec::open_value::<SnapshotRecord>("snapshot", bytes).map_or(true, |r| r.seq <= self.seq)
    }
}

impl Store {
    /// Rewinds job `job` to snapshot `generation` (0: to the beginning): drops every commit
    /// after the one the snapshot reflects, with its outputs, done marks, dead letters and
    /// lineage entries, and every newer snapshot, in one durable transaction. The next run
    /// resumes from that snapshot and processes the dropped records again. A completed,
    /// failed or crashed job becomes paused. The job must not be open.
    ///
    /// # Errors
    /// [`Error::Locked`] if the job is open; [`Error::JobNotFound`];
    /// [`Error::SnapshotNotFound`]; [`Error::Corrupt`] if that snapshot or a lineage entry
    /// up to it fails its check (rewind to an older snapshot then); storage errors.
    pub fn rewind(&self, job: &str, generation: u64) -> Result<RewindReport> {
        let _claim = Claim::take(&self.inner, job)?;
        let tables = JobTables::new(job);
        let txn = self.inner.begin_read()?;
        let cut = cut_at(&txn, &tables, job, generation)?;
        drop(txn);

        let mut report = RewindReport {
            job: job.to_owned(),
            generation,
            seq: cut.seq,
            ..RewindReport::default()
        };
        let mut meta = cut.meta.clone();
        let txn = self.inner.begin_write()?;
        let mut kept = cut.outputs.clone();
        report.dead_letters_dropped = retain_rows(&txn, tables.dead(), |id, _| {
            cut.keeps_dead_letter(id, &mut kept)
        })?;
        // A commit's outputs live in its segment: dropping the commit drops them. A damaged
        // segment's outputs cannot be counted, and are dropped all the same.
        let mut outputs_dropped = 0u64;
        report.commits_dropped = retain_rows(&txn, tables.log(), |seq, bytes| {
            let keep = cut.keeps_commit(seq);
            if !keep {
                outputs_dropped += segment::entry(seq, bytes).map_or(0, |e| e.output_count());
            }
            keep
        })?;
        report.outputs_dropped = outputs_dropped;
        let mut live_generations = Vec::new();
        report.snapshots_dropped = retain_rows(&txn, tables.snapshots(), |g, bytes| {
            let keep = cut.keeps_snapshot(g, bytes);
            if keep {
                live_generations.push(g);
            }
            keep
        })?;
        write_progress(&txn, &tables, &kept, &cut)?;
        write::clamp_announced(&txn, &tables, cut.seq)?;
        meta.pinned.retain(|g| live_generations.contains(g));
        if meta.lifecycle != JobState::Created {
            meta.lifecycle = JobState::Paused;
        }
        meta::write(&txn, &meta)?;
        txn.commit().map_err(storage)?;
        report.records_kept = kept.len();
        tracing::info!(
            job,
            generation,
            seq = cut.seq,
            commits_dropped = report.commits_dropped,
            "job rewound"
        );
        Ok(report)
    }

    /// Writes a new store at `into` holding job `job` as of snapshot `generation` (0: an
    /// empty job): its lineage up to that snapshot's commit, the outputs and dead letters
    /// those commits settled, and the snapshots up to it, all byte for byte; the job is
    /// paused there. This store is not changed. The job must not be open here.
    ///
    /// The new store is written whole under a temporary name beside `into` and linked into
    /// place only once it is complete and synced, so a crash at any point leaves `into`
    /// absent or holding the complete fork (a leftover `.NAME.creating-PID` temporary is
    /// removed by the next fork or open of that path).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `into` exists; as [`Store::rewind`] otherwise. On error
    /// no file is left at `into`.
    pub fn fork(&self, job: &str, generation: u64, into: impl AsRef<Path>) -> Result<RewindReport> {
        let into = into.as_ref();
        if std::fs::symlink_metadata(into).is_ok() {
            return Err(Error::InvalidArgument(format!(
                "{} already exists; fork into a new path",
                into.display()
            )));
        }
        super::create::remove_stale_temporaries(into);
        let _claim = Claim::take(&self.inner, job)?;
        // On error nothing was linked at `into` (and a file another process put there since
        // the check above is theirs: it is not removed).
        self.fork_claimed(job, generation, into)
    }

    fn fork_claimed(&self, job: &str, generation: u64, into: &Path) -> Result<RewindReport> {
        let tables = JobTables::new(job);
        let src = self.inner.begin_read()?;
        let cut = cut_at(&src, &tables, job, generation)?;
        let mut report = RewindReport {
            job: job.to_owned(),
            generation,
            seq: cut.seq,
            ..RewindReport::default()
        };

        let mut kept = cut.outputs.clone();
        let mut live_generations = Vec::new();
        // One transaction in a store built under a temporary name, linked into place when
        // complete: `into` never holds a store without the job.
        super::create::create_new_filled(into, |target| {
            let txn = target.begin_write().map_err(storage)?;
            {
                let mut to = txn.open_table(tables.dead()).map_err(storage)?;
                if let Some(from) = open_table_ro(&src, tables.dead())? {
                    for item in from.iter().map_err(storage)? {
                        let (k, v) = item.map_err(storage)?;
                        let id = k.value();
                        if cut.keeps_dead_letter(id, &mut kept) {
                            to.insert(id, v.value()).map_err(storage)?;
                        } else {
                            report.dead_letters_dropped += 1;
                        }
                    }
                }
            }
            {
                let mut to = txn.open_table(tables.log()).map_err(storage)?;
                if let Some(from) = open_table_ro(&src, tables.log())? {
                    for item in from.iter().map_err(storage)? {
                        let (k, v) = item.map_err(storage)?;
                        let seq = k.value();
                        if cut.keeps_commit(seq) {
                            to.insert(seq, v.value()).map_err(storage)?;
                        } else {
                            report.commits_dropped += 1;
                            report.outputs_dropped +=
                                segment::entry(seq, v.value()).map_or(0, |e| e.output_count());
                        }
                    }
                }
            }
            {
                let mut to = txn.open_table(tables.snapshots()).map_err(storage)?;
                if let Some(from) = open_table_ro(&src, tables.snapshots())? {
                    for item in from.iter().map_err(storage)? {
                        let (k, v) = item.map_err(storage)?;
                        let g = k.value();
                        if cut.keeps_snapshot(g, v.value()) {
                            to.insert(g, v.value()).map_err(storage)?;
                            live_generations.push(g);
                        } else {
                            report.snapshots_dropped += 1;
                        }
                    }
                }
            }
            // The job's type descriptions, input record and shard spec go with it, so the fork
            // exports, and resumes its input or shard, as the source does.
            let (input, shard) = (super::input::table_name(job), super::shard::table_name(job));
            for def in [
                tables.types(),
                redb::TableDefinition::new(&input),
                redb::TableDefinition::new(&shard),
            ] {
                if let Some(from) = open_table_ro(&src, def)? {
                    let mut to = txn.open_table(def).map_err(storage)?;
                    for item in from.iter().map_err(storage)? {
                        let (k, v) = item.map_err(storage)?;
                        to.insert(k.value(), v.value()).map_err(storage)?;
                    }
                }
            }
            write_progress(&txn, &tables, &kept, &cut)?;
            let mut meta = cut.meta.clone();
            meta.pinned.retain(|g| live_generations.contains(g));
            meta.recoveries = 0;
            meta.lifecycle = if cut.seq == 0 {
                JobState::Created
            } else {
                JobState::Paused
            };
            meta::write(&txn, &meta)?;
            txn.commit().map_err(storage)?;
            Ok(())
        })?;
        report.records_kept = kept.len();
        tracing::info!(job, generation, seq = cut.seq, into = %into.display(), "job forked");
        Ok(report)
    }

    /// Pins snapshot `generation` of `job`, keeping it from retention (a savepoint).
    /// Returns the pinned generations afterwards. The job must not be open.
    ///
    /// # Errors
    /// [`Error::Locked`] if the job is open; [`Error::JobNotFound`];
    /// [`Error::SnapshotNotFound`]; [`Error::Corrupt`] if the snapshot fails its check.
    pub fn pin(&self, job: &str, generation: u64) -> Result<Vec<u64>> {
        let _claim = Claim::take(&self.inner, job)?;
        self.set_pinned(job, generation, true)
    }

    /// Unpins snapshot `generation` of `job`, handing it back to retention (unpinning one
    /// that is not pinned changes nothing). Returns the pinned generations afterwards. The
    /// job must not be open.
    ///
    /// # Errors
    /// [`Error::Locked`] if the job is open; [`Error::JobNotFound`].
    pub fn unpin(&self, job: &str, generation: u64) -> Result<Vec<u64>> {
        let _claim = Claim::take(&self.inner, job)?;
        self.set_pinned(job, generation, false)
    }

    fn set_pinned(&self, job: &str, generation: u64, pin: bool) -> Result<Vec<u64>> {
        let tables = JobTables::new(job);
        let txn = self.inner.begin_read()?;
        let mut meta = meta::require(&txn, job)?;
        if pin {
            snapshot_record(&txn, &tables, job, generation)?;
        }
        drop(txn);
        let before = meta.pinned.clone();
        meta.pinned.retain(|&g| g != generation);
        if pin {
            meta.pinned.push(generation);
            meta.pinned.sort_unstable();
        }
        if meta.pinned != before {
            let txn = self.inner.begin_write()?;
            meta::write(&txn, &meta)?;
            txn.commit().map_err(storage)?;
            tracing::info!(job, generation, pin, "snapshot pin changed");
        }
        Ok(meta.pinned)
    }
    /// Puts dead letters back in line: removes them (all, or those in `ids`) and unmarks them
    /// done, in one durable commit, so the next run processes them again; a completed job
    /// becomes paused. Returns the ids requeued. The job must not be open.
    ///
    /// # Errors
    /// [`Error::Locked`] if the job is open; [`Error::JobNotFound`]; storage errors.
    pub fn requeue(&self, job: &str, ids: Option<&[u64]>) -> Result<Vec<u64>> {
        let _claim = Claim::take(&self.inner, job)?;
        let tables = JobTables::new(job);
        let txn = self.inner.begin_read()?;
        let mut meta = meta::require(&txn, job)?;
        let progress = read::load_progress(&txn, &tables)?;
        let mut chosen = Vec::new();
        read::for_each_dead_letter(&txn, &tables, |id, _| {
            if ids.is_none_or(|wanted| wanted.contains(&id)) {
                chosen.push(id);
            }
            Ok(())
        })?;
        drop(txn);
        if chosen.is_empty() {
            return Ok(chosen);
        }
        // The stored done ranges catch up with the tail and lose the requeued ids; the id
        // index catches up with the tail.
        let index = progress.tail_runs();
        let mark = progress.last.as_ref().map_or(0, |e| e.seq);
        let mut done = progress.done;
        done.remove_all(chosen.iter().copied());
        let diff = done.diff_from(&progress.materialized);
        // A completed job accepts no records; with work requeued it is paused instead, so
        // the next run settles them.
        let reopened = (meta.lifecycle == JobState::Completed).then(|| {
            meta.lifecycle = JobState::Paused;
            &meta
        });
        let plan = CommitPlan {
            remove_dead: &chosen,
            ranges: Some(&diff),
            index: &index,
            mark: Some(mark),
            meta: reopened,
            durable: true,
            ..CommitPlan::default()
        };
        write::commit(&self.inner, &tables, &plan)?;
        tracing::info!(job, requeued = chosen.len(), "dead letters requeued");
        Ok(chosen)
    }
}

/// Reads and checks snapshot `generation`.
fn snapshot_record(
    txn: &ReadTransaction,
    tables: &JobTables,
    job: &str,
    generation: u64,
) -> Result<SnapshotRecord> {
    match read::read_snapshot(txn, tables, generation)? {
        Some((_, record)) => record,
        None => Err(Error::SnapshotNotFound {
            job: job.to_owned(),
            generation,
        }),
    }
}

/// What job `job` keeps when cut back to snapshot `generation`: the lineage entries up to
/// the snapshot's commit must all check out, since they define what is kept.
fn cut_at(txn: &ReadTransaction, tables: &JobTables, job: &str, generation: u64) -> Result<Cut> {
    let meta = meta::require(txn, job)?;
    let seq = if generation == 0 {
        0
    } else {
        snapshot_record(txn, tables, job, generation)?.seq
    };
    // Outputs a redo entry up to the cut removed stay removed (`Live`).
    let mut live = super::live::Live::new();
    let mut dead = RangeSet::new();
    let mut order = SeqOrder::after(job, 0);
    read::for_each_log(txn, tables, 1..=seq, |s, entry| {
        let entry = entry?;
        order.next(s)?;
        live.add(&entry);
        for &id in &entry.dead_letters {
            dead.insert(id);
        }
        Ok(true)
    })?;
    let outputs = live.outputs();
    let runs: Vec<Run> = live.runs().collect();
    if order.last() != seq {
        return Err(Error::corrupt(
            format!("lineage of job {job:?}"),
            format!("entries 1..={seq}"),
            format!("entries up to {}", order.last()),
        ));
    }
    Ok(Cut {
        meta,
        generation,
        seq,
        outputs,
        dead,
        runs,
    })
}

/// Replaces a job's done ranges and id index with those of `cut`: done = `kept`, the index
/// = the cut's output runs, both reflecting commit `cut.seq`.
fn write_progress(
    txn: &redb::WriteTransaction,
    tables: &JobTables,
    kept: &RangeSet,
    cut: &Cut,
) -> Result<()> {
    let mut done = txn.open_table(tables.done()).map_err(storage)?;
    done.retain(|_, _| false).map_err(storage)?;
    for r in kept.ranges() {
        done.insert(r.start, r.end).map_err(storage)?;
    }
    done.insert(tables::MARK_KEY, cut.seq).map_err(storage)?;
    let mut index = txn.open_table(tables.index()).map_err(storage)?;
    index.retain(|_, _| false).map_err(storage)?;
    for &(start, end, seq) in &cut.runs {
        index.insert(start, (end, seq)).map_err(storage)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{CommitPolicy, JobOptions};
    use crate::store::StoreOptions;
    use serde::{Deserialize, Serialize};

    #[derive(Default, Serialize, Deserialize)]
    struct Sum(u64);

    impl crate::Fold for Sum {
        type Output = u64;
        fn apply(&mut self, _id: u64, v: &u64) {
            self.0 += v;
        }
    }

    fn options() -> JobOptions {
        JobOptions::new()
            .commit_policy(CommitPolicy::new().max_group_records(10))
            .snapshot_every_commits(2)
            .keep_snapshots(100)
    }

    /// Commits ids `0..n` in groups of 10 (a snapshot every 2 commits); ids divisible by 7
    /// are dead-lettered.
    fn fill(store: &Store, n: u64) {
        let mut job = store.job::<Sum>("j", options()).unwrap();
        for id in 0..n {
            if id % 7 == 0 {
                job.dead_letter(id, 3, "boom").unwrap();
            } else {
                job.submit(id, id).unwrap();
            }
        }
        job.flush().unwrap();
        job.complete().unwrap();
    }

    fn expected_sum(ids: std::ops::Range<u64>) -> u64 {
        ids.filter(|id| id % 7 != 0).sum()
    }

    #[test]
    fn rewind_drops_later_commits_and_resume_redoes_them_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.redb")).unwrap();
        fill(&store, 100); // 10 commits, snapshots 1..=5 at seqs 2,4,..,10
        let snaps = store.snapshots("j").unwrap();
        let g2 = snaps.iter().find(|s| s.seq == Some(4)).unwrap().generation;
        store.pin("j", g2).unwrap();
        let last = snaps.last().unwrap().generation;
        store.pin("j", last).unwrap();

        let report = store.rewind("j", g2).unwrap();
        assert_eq!(report.seq, 4);
        assert_eq!(report.commits_dropped, 6);
        assert_eq!(report.records_kept, 40);
        assert_eq!(report.outputs_dropped + report.dead_letters_dropped, 60);
        let status = store.status("j").unwrap();
        assert_eq!(status.lifecycle, JobState::Paused);
        assert_eq!(status.records_done, 40);
        assert_eq!(status.commits, 4);
        assert_eq!(
            status.dead_letters,
            (0..40).filter(|i| i % 7 == 0).count() as u64
        );
        let pinned: Vec<u64> = store
            .snapshots("j")
            .unwrap()
            .iter()
            .filter(|s| s.pinned)
            .map(|s| s.generation)
            .collect();
        assert_eq!(pinned, vec![g2], "the dropped pinned snapshot is unpinned");
        assert!(store.verify_job("j").unwrap().is_ok());

        let mut job = store.job::<Sum>("j", options()).unwrap();
        assert_eq!(job.state().0, expected_sum(0..40));
        for id in 0..100 {
            if id % 7 != 0 {
                job.submit(id, id).unwrap();
            }
        }
        job.flush().unwrap();
        assert_eq!(job.state().0, expected_sum(0..100));
        let report = job.verify().unwrap();
        assert!(report.is_ok(), "{report:?}");
    }

    #[test]
    fn rewind_to_zero_empties_the_job() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.redb")).unwrap();
        fill(&store, 30);
        let report = store.rewind("j", 0).unwrap();
        assert_eq!(report.records_kept, 0);
        assert_eq!(store.status("j").unwrap().records_done, 0);
        assert!(store.snapshots("j").unwrap().is_empty());
        assert!(store.verify_job("j").unwrap().is_ok());
    }

    #[test]
    fn rewind_refuses_an_open_job_and_a_missing_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.redb")).unwrap();
        fill(&store, 30);
        assert!(matches!(
            store.rewind("j", 99),
            Err(Error::SnapshotNotFound { generation: 99, .. })
        ));
        assert!(matches!(
            store.rewind("nope", 1),
            Err(Error::JobNotFound(_))
        ));
        let _job = store.job::<Sum>("j", options()).unwrap();
        assert!(matches!(store.rewind("j", 1), Err(Error::Locked { .. })));
        assert!(matches!(store.pin("j", 1), Err(Error::Locked { .. })));
    }

    #[test]
    fn fork_copies_the_job_as_of_a_snapshot_and_leaves_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.redb")).unwrap();
        fill(&store, 100);
        let shard = crate::store::StoredShard {
            index: 1,
            count: 4,
            total: 400,
            start: 100,
            end: 200,
            manifest: 7,
        };
        store.write_shard("j", &shard).unwrap();
        let before = store.status("j").unwrap();
        let g = store
            .snapshots("j")
            .unwrap()
            .iter()
            .find(|s| s.seq == Some(6))
            .unwrap()
            .generation;
        let into = dir.path().join("fork.redb");
        let report = store.fork("j", g, &into).unwrap();
        assert_eq!(report.seq, 6);
        assert_eq!(report.records_kept, 60);
        assert_eq!(store.status("j").unwrap(), before, "source untouched");
        assert!(matches!(
            store.fork("j", g, &into),
            Err(Error::InvalidArgument(_))
        ));

        let forked = Store::open(&into).unwrap();
        assert_eq!(forked.status("j").unwrap().records_done, 60);
        let spec = forked.job_shard("j").unwrap();
        assert!(spec.is_some(), "the shard spec goes with the fork");
        assert_eq!(spec, store.job_shard("j").unwrap());
        assert!(forked.verify_job("j").unwrap().is_ok());
        let job = forked.job::<Sum>("j", options()).unwrap();
        assert_eq!(job.state().0, expected_sum(0..60));
        assert!(job.verify().unwrap().is_ok());
    }

    #[test]
    fn rewind_cures_damage_after_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        fill(&store, 100);
        let g = store.snapshots("j").unwrap()[1].generation; // seq 4
        {
            // Damage an output committed after that snapshot.
            let txn = store.inner.begin_write().unwrap();
            read::flip_output_byte(&txn, &JobTables::new("j"), 95);
            txn.commit().unwrap();
        }
        assert!(!store.verify_job("j").unwrap().is_ok());
        store.rewind("j", g).unwrap();
        assert!(store.verify_job("j").unwrap().is_ok());
    }

    #[test]
    fn pin_and_unpin_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.redb")).unwrap();
        fill(&store, 40);
        assert_eq!(store.pin("j", 2).unwrap(), vec![2]);
        assert_eq!(store.pin("j", 1).unwrap(), vec![1, 2]);
        assert_eq!(store.pin("j", 1).unwrap(), vec![1, 2]);
        assert_eq!(store.unpin("j", 2).unwrap(), vec![1]);
        assert_eq!(store.unpin("j", 2).unwrap(), vec![1]);
        assert!(matches!(
            store.pin("j", 50),
            Err(Error::SnapshotNotFound { .. })
        ));
        let read_only = {
            drop(store);
            Store::open_read_only(dir.path().join("s.redb")).unwrap()
        };
        assert!(read_only.snapshots("j").unwrap()[0].pinned);
    }

    #[test]
    fn repairs_refuse_a_read_only_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        fill(&Store::open(&path).unwrap(), 30);
        let store = StoreOptions::new().read_only(true).open(&path).unwrap();
        assert!(store.rewind("j", 1).is_err());
        assert!(store.pin("j", 1).is_err());
        assert_eq!(store.status("j").unwrap().records_done, 30);
    }
}
