use super::*;
use crate::store::{StoreOptions, damage};
use crate::{Error, Store};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Sum of outputs, plus an order-sensitive hash so a reordered fold is caught.
#[derive(Default, Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Sum {
    total: u64,
    count: u64,
    order: u64,
}

impl Fold for Sum {
    type Output = u64;
    fn apply(&mut self, id: u64, output: &u64) {
        self.total += output;
        self.count += 1;
        self.order = self.order.wrapping_mul(31).wrapping_add(id ^ output);
    }
}

fn fresh() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.redb");
    (dir, path)
}

fn small_groups() -> JobOptions {
    JobOptions::new()
        .commit_policy(CommitPolicy::new().max_group_records(3))
        .snapshot_every_commits(2)
}

#[test]
fn resume_after_drop_without_flush_keeps_committed_groups_only() {
    let (_d, path) = fresh();
    {
        let store = Store::open(&path).expect("open");
        let mut job = store.job::<Sum>("j", small_groups()).expect("job");
        for id in 0..8 {
            job.submit(id, id * 10).expect("submit");
        }
        // 8 submitted, groups of 3: 6 committed, 2 pending and lost on drop.
        assert_eq!(job.done_count(), 6);
        assert_eq!(job.pending(), 2);
    }
    let store = Store::open(&path).expect("reopen");
    let job = store.job::<Sum>("j", small_groups()).expect("job");
    assert_eq!(job.done_count(), 6);
    assert_eq!(job.state().total, (0..6).map(|i| i * 10).sum::<u64>());
    assert_eq!(
        job.recoveries(),
        1,
        "a job left running is counted as a crash"
    );
    assert!(job.verify().expect("verify").is_ok());
}

#[test]
fn duplicate_submissions_change_nothing() {
    let (_d, path) = fresh();
    let store = Store::open(&path).expect("open");
    let mut job = store.job::<Sum>("j", small_groups()).expect("job");
    assert_eq!(job.submit(1, 5).expect("submit"), Submission::Queued);
    assert_eq!(
        job.submit(1, 99).expect("dup in group"),
        Submission::AlreadyDone
    );
    job.flush().expect("flush");
    let seq = job.last_seq();
    assert_eq!(
        job.submit(1, 99).expect("dup after commit"),
        Submission::AlreadyDone
    );
    job.flush().expect("flush");
    assert_eq!(job.last_seq(), seq, "a duplicate must not commit");
    assert_eq!(job.state().total, 5);
    assert_eq!(job.output(1).expect("read"), Some(5));
    assert_eq!(job.stats().duplicates, 2);
}

/// The pending group answers "already queued" from its ids in order while they come in
/// order, and from an index once one comes out of order (`PendingGroup::contains`).
#[test]
fn duplicates_in_a_group_are_caught_before_and_after_it_goes_out_of_order() {
    let (_d, path) = fresh();
    let store = Store::open(&path).expect("open");
    let options = JobOptions::new().commit_policy(CommitPolicy::new().max_group_records(100));
    let mut job = store.job::<Sum>("j", options).expect("job");
    let queued = |s: Result<Submission>| assert_eq!(s.expect("submits"), Submission::Queued);
    let dup = |s: Result<Submission>| assert_eq!(s.expect("submits"), Submission::AlreadyDone);
    queued(job.submit(10, 1));
    queued(job.dead_letter(20, 1, "bad"));
    queued(job.submit(30, 3));
    for id in [10, 20, 30] {
        dup(job.submit(id, 99));
    }
    queued(job.submit(15, 2));
    for id in [10, 15, 20, 30] {
        dup(job.submit(id, 99));
    }
    dup(job.dead_letter(15, 1, "late"));
    queued(job.submit(5, 4));
    assert_eq!(job.pending(), 5);
    let receipt = job.flush().expect("flush").expect("a commit");
    assert_eq!(receipt.outputs, vec![5..6, 10..11, 15..16, 30..31]);
    assert_eq!(receipt.dead_letters, vec![20]);
    assert_eq!(job.stats().duplicates, 8);
    assert_eq!((job.state().total, job.state().count), (10, 4));
    assert_eq!(job.output(15).expect("read"), Some(2));
    assert_eq!(job.output(20).expect("read"), None);
    assert!(job.verify().expect("verify").is_ok());
}

#[test]
fn out_of_order_commits_keep_exact_progress_and_fold_in_id_order() {
    let (_d, path) = fresh();
    let ids = [7u64, 2, 9, 0, 1, 3, 8, 4, 6, 5];
    let state_after = {
        let store = Store::open(&path).expect("open");
        let mut job = store.job::<Sum>("j", small_groups()).expect("job");
        for &id in &ids {
            job.submit(id, id + 1).expect("submit");
            assert!(job.is_done(id) || job.pending() > 0);
        }
        job.flush().expect("flush");
        assert_eq!(job.progress().ranges().collect::<Vec<_>>(), vec![0..10]);
        assert_eq!(job.gaps(12).collect::<Vec<_>>(), vec![10..12]);
        job.state().clone()
    };
    let store = Store::open(&path).expect("reopen");
    let job = store.job::<Sum>("j", small_groups()).expect("job");
    assert_eq!(
        job.state(),
        &state_after,
        "replay folds in the same order as the commits did"
    );
}

#[test]
fn partially_done_gaps_are_reported() {
    let (_d, path) = fresh();
    let store = Store::open(&path).expect("open");
    let mut job = store.job::<Sum>("j", JobOptions::new()).expect("job");
    job.commit([(0, 1), (1, 1), (5, 1), (9, 1)])
        .expect("commit");
    assert_eq!(job.gaps(11).collect::<Vec<_>>(), vec![2..5, 6..9, 10..11]);
    assert_eq!(job.progress().watermark(), 2);
}

#[test]
fn snapshot_with_damaged_bytes_falls_back_to_an_older_one_and_replays() {
    let (_d, path) = fresh();
    let expected = {
        let store = Store::open(&path).expect("open");
        let mut job = store.job::<Sum>("j", small_groups()).expect("job");
        for id in 0..30 {
            job.submit(id, id).expect("submit");
        }
        job.flush().expect("flush");
        job.state().clone()
    };
    // Damage the newest snapshot's bytes through redb (a valid page holding bad bytes, so
    // only resumable's own CRC can catch it).
    damage::flip_newest_snapshot_byte(&path, "j");
    let store = Store::open(&path).expect("reopen");
    let job = store.job::<Sum>("j", small_groups()).expect("job");
    assert_eq!(
        job.state(),
        &expected,
        "state rebuilt from the older snapshot + replay"
    );
    assert!(
        job.stats().replayed_commits >= 2,
        "more commits replayed than usual"
    );
    let snaps = store.snapshots("j").expect("list");
    assert_eq!(snaps.iter().filter(|s| !s.valid).count(), 1);
    let report = job.verify().expect("verify");
    assert!(!report.is_ok());
    assert!(
        report.problems[0].item.starts_with("snapshot generation"),
        "{report:?}"
    );
}

#[test]
fn job_mismatch_is_refused_and_writes_nothing() {
    #[derive(Default, Serialize, Deserialize)]
    struct Other;
    impl Fold for Other {
        type Output = u64;
        fn apply(&mut self, _: u64, _: &u64) {}
    }
    let (_d, path) = fresh();
    let store = Store::open(&path).expect("open");
    let opts = || {
        JobOptions::new()
            .schema_version(2)
            .input_manifest(manifest_digest(["a", "b"]))
    };
    drop(store.job::<Sum>("j", opts()).expect("create"));
    let before = store.status("j").expect("status");
    let cases: Vec<(&str, Result<()>)> = vec![
        ("state type", store.job::<Other>("j", opts()).map(drop)),
        (
            "schema version",
            store.job::<Sum>("j", opts().schema_version(3)).map(drop),
        ),
        (
            "input manifest",
            store
                .job::<Sum>("j", opts().input_manifest(manifest_digest(["a", "c"])))
                .map(drop),
        ),
    ];
    for (field, result) in cases {
        match result {
            Err(Error::JobMismatch { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: expected JobMismatch, got {other:?}"),
        }
    }
    assert!(
        store.status("j").expect("status") == before,
        "a refused open writes nothing"
    );
}

#[test]
fn a_job_with_a_manifest_refuses_opens_without_it_or_with_another_size() {
    let (_d, path) = fresh();
    let store = Store::open(&path).expect("open");
    let m1 = manifest_digest(["in.csv:100"]);
    let m2 = manifest_digest(["in.csv:120"]);
    let base = || JobOptions::new().input_manifest(m1).total_records(100);
    drop(store.job::<Sum>("j", base()).expect("create"));
    let field_of = |r: Result<Job<Sum>>| match r {
        Err(Error::JobMismatch { field, .. }) => field,
        Ok(_) => "accepted",
        Err(e) => panic!("unexpected {e:?}"),
    };
    // No manifest, or another one: refused.
    assert_eq!(
        field_of(store.job::<Sum>("j", JobOptions::new())),
        "input manifest"
    );
    assert_eq!(
        field_of(store.job::<Sum>("j", JobOptions::new().input_manifest(m2))),
        "input manifest"
    );
    // Same manifest, another size: refused, also when it grew without saying so.
    assert_eq!(
        field_of(store.job::<Sum>("j", base().total_records(120))),
        "total records"
    );
    // An input declared to grow may grow, and not shrink.
    assert_eq!(
        field_of(store.job::<Sum>("j", base().input_grows(true).total_records(90))),
        "total records"
    );
    assert_eq!(
        field_of(
            store.job::<Sum>(
                "j",
                JobOptions::new()
                    .input_grows(true)
                    .input_manifest(m2)
                    .total_records(120)
            )
        ),
        "accepted"
    );
    let status = store.status("j").expect("status");
    assert_eq!(status.total_records, Some(120));
    // The grown input is now the job's input: the old manifest is refused.
    assert_eq!(field_of(store.job::<Sum>("j", base())), "input manifest");
    // An explicit override accepts anything and records it.
    assert_eq!(
        field_of(store.job::<Sum>("j", base().allow_input_change(true))),
        "accepted"
    );
    assert_eq!(field_of(store.job::<Sum>("j", base())), "accepted");
    assert_eq!(store.status("j").expect("status").total_records, Some(100));
    // A reader that does not declare the input opens the job and changes nothing.
    let before = store.status("j").expect("status");
    assert_eq!(
        field_of(store.job::<Sum>("j", JobOptions::new().input_unchecked(true))),
        "accepted"
    );
    assert_eq!(store.status("j").expect("status"), before);
}

#[test]
fn a_job_created_without_a_manifest_refuses_one_later() {
    let (_d, path) = fresh();
    let store = Store::open(&path).expect("open");
    drop(store.job::<Sum>("j", JobOptions::new()).expect("create"));
    assert!(matches!(
        store.job::<Sum>("j", JobOptions::new().input_manifest(7)),
        Err(Error::JobMismatch {
            field: "input manifest",
            ..
        })
    ));
}

#[test]
fn second_opener_is_locked_out() {
    let (_d, path) = fresh();
    let store = Store::open(&path).expect("open");
    let _job = store.job::<Sum>("j", JobOptions::new()).expect("job");
    assert!(matches!(
        store.job::<Sum>("j", JobOptions::new()),
        Err(Error::Locked { .. })
    ));
    assert!(matches!(Store::open(&path), Err(Error::Locked { .. })));
    assert!(
        store.job::<Sum>("other", JobOptions::new()).is_ok(),
        "other jobs stay usable"
    );
}

#[test]
fn lifecycle_transitions_are_validated_and_persisted() {
    let (_d, path) = fresh();
    {
        let store = Store::open(&path).expect("open");
        let mut job = store.job::<Sum>("j", JobOptions::new()).expect("job");
        assert_eq!(job.lifecycle(), JobState::Created);
        assert!(matches!(job.pause(), Err(Error::Lifecycle { .. })));
        job.submit(0, 1).expect("submit");
        job.flush().expect("flush");
        assert_eq!(job.lifecycle(), JobState::Running);
        job.pause().expect("pause");
    }
    {
        let store = Store::open(&path).expect("open");
        let mut job = store.job::<Sum>("j", JobOptions::new()).expect("job");
        assert_eq!(job.lifecycle(), JobState::Paused);
        assert_eq!(job.recoveries(), 0, "a paused job did not crash");
        job.submit(1, 1).expect("a commit resumes a paused job");
        job.complete().expect("complete");
        assert!(matches!(job.submit(2, 1), Err(Error::Lifecycle { .. })));
        assert_eq!(job.submit(1, 1).expect("dup"), Submission::AlreadyDone);
    }
    let store = Store::open(&path).expect("open");
    assert_eq!(
        store.status("j").expect("status").lifecycle,
        JobState::Completed
    );
}

#[test]
fn deferred_durability_marks_durable_only_after_a_synced_commit() {
    let (_d, path) = fresh();
    let store = Store::open(&path).expect("open");
    let policy = CommitPolicy::new()
        .max_group_records(1)
        .durability(Durability::Deferred {
            max_interval: Duration::from_hours(1),
        });
    let mut job = store
        .job::<Sum>("j", JobOptions::new().commit_policy(policy))
        .expect("job");
    let Submission::Committed(r) = job.submit(1, 1).expect("submit") else {
        panic!("group of 1 commits at once")
    };
    assert!(!r.durable);
    assert!(job.is_done(1) && !job.is_durable(1));
    assert_eq!(job.at_risk(), 1);
    job.flush().expect("flush");
    assert!(job.is_durable(1));
    assert_eq!(job.durable_seq(), job.last_seq());
}

#[test]
fn panicking_fold_aborts_the_commit_and_poisons_the_handle() {
    #[derive(Default, Serialize, Deserialize)]
    struct Fragile;
    impl Fold for Fragile {
        type Output = u64;
        fn apply(&mut self, _: u64, out: &u64) {
            assert!(*out != 13, "unlucky output");
        }
    }
    let (_d, path) = fresh();
    {
        let store = Store::open(&path).expect("open");
        let mut job = store
            .job::<Fragile>(
                "j",
                JobOptions::new().commit_policy(CommitPolicy::per_record()),
            )
            .expect("job");
        job.submit(0, 1).expect("ok");
        assert!(matches!(job.submit(1, 13), Err(Error::Panicked { .. })));
        assert!(matches!(job.submit(2, 1), Err(Error::Poisoned)));
    }
    let store = Store::open(&path).expect("open");
    let job = store.job::<Fragile>("j", JobOptions::new()).expect("job");
    assert!(
        job.is_done(0) && !job.is_done(1),
        "the panicking group was not committed"
    );
}

#[test]
fn dead_letters_settle_records_and_requeue_puts_them_back() {
    let (_d, path) = fresh();
    {
        let store = Store::open(&path).expect("open");
        let mut job = store.job::<Sum>("j", JobOptions::new()).expect("job");
        job.submit(0, 1).expect("submit");
        job.dead_letter(1, 3, "timeout").expect("dead");
        job.flush().expect("flush");
        assert!(job.is_done(1));
        assert_eq!(job.state().count, 1, "a dead letter is not folded");
        assert!(matches!(
            store.requeue("j", None),
            Err(Error::Locked { .. })
        ));
        assert!(job.verify().expect("verify").is_ok());
    }
    let store = Store::open(&path).expect("open");
    let dl = store.dead_letters("j").expect("list");
    assert_eq!(dl.len(), 1);
    assert_eq!(
        (dl[0].id, dl[0].attempts, dl[0].error.as_str()),
        (1, 3, "timeout")
    );
    assert_eq!(store.requeue("j", None).expect("requeue"), vec![1]);
    let mut job = store.job::<Sum>("j", JobOptions::new()).expect("job");
    assert!(!job.is_done(1));
    job.submit(1, 5).expect("retry");
    job.flush().expect("flush");
    assert_eq!(job.state().total, 6);
    let report = job.verify().expect("verify");
    assert!(report.is_ok(), "{report:?}");
    assert!(report.state_replayed);
}

/// A store whose job "j" holds records 0..9 (output = id) in three commits of three.
fn nine_records_in_groups_of_three() -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, path) = fresh();
    let store = Store::open(&path).expect("open");
    let mut job = store.job::<Sum>("j", small_groups()).expect("job");
    for id in 0..9 {
        job.submit(id, id).expect("submit");
    }
    job.flush().expect("flush");
    (dir, path)
}

#[test]
fn verify_names_a_tampered_output() {
    let (_d, path) = nine_records_in_groups_of_three();
    damage::flip_output_byte(&path, "j", 4);
    let store = StoreOptions::new().open(&path).expect("open");
    let report = store.verify_job("j").expect("verify");
    assert_eq!(report.problems[0].item, "output of record 4", "{report:?}");
    // Resuming replays through the damaged output only if it is after the snapshot; reading
    // it directly is always refused.
    let job = store.job::<Sum>("j", small_groups());
    if let Ok(job) = job {
        assert!(matches!(job.output(4), Err(Error::Corrupt { .. })));
    }
}

/// An edit that also fixes the record's CRC (a deliberate one) passes every CRC check; the
/// BLAKE3 outputs hash of its commit's lineage entry names it, and the output is otherwise
/// read back as stored (the CRC is for accidents, the chain for edits).
#[test]
fn verify_names_the_commit_of_an_output_edited_with_its_crc_fixed() {
    let (_d, path) = nine_records_in_groups_of_three();
    damage::edit_output_fixing_its_crc(&path, "j", 4);
    let store = StoreOptions::new().open(&path).expect("open");
    let report = store.verify_job("j").expect("verify");
    assert!(!report.is_ok(), "{report:?}");
    let first = &report.problems[0];
    assert!(
        first.item.contains("lineage entry 2") && first.detail.contains("hash of its outputs"),
        "ids 3..6 are commit 2: {report:?}"
    );
    assert!(
        report
            .problems
            .iter()
            .all(|p| !p.item.contains("output of record")),
        "the CRC passes: {report:?}"
    );
}

#[test]
fn commit_state_is_independent_of_records_done() {
    // Progress memory is ranges, not ids: a million contiguous ids is one range.
    let (_d, path) = fresh();
    let store = Store::open(&path).expect("open");
    let mut job = store
        .job::<Discard<u8>>(
            "j",
            JobOptions::new().commit_policy(CommitPolicy::new().max_group_records(100_000)),
        )
        .expect("job");
    job.commit((0..200_000).map(|i| (i, 0u8))).expect("commit");
    assert_eq!(job.progress().range_count(), 1);
    assert_eq!(job.done_count(), 200_000);
}

/// Options where the stored progress lags: done ranges and the id index are written every 5
/// commits, so a store holds both indexed commits and a tail.
fn lagging_progress() -> JobOptions {
    JobOptions::new()
        .commit_policy(CommitPolicy::per_record())
        .snapshot_every_commits(4)
        .keep_snapshots(100)
        .progress_every_commits(5)
}

/// Ids [`fill_lagging`] dead-letters: 16 is settled in the tail.
fn is_dead(id: u64) -> bool {
    id.is_multiple_of(6) || id == 16
}

/// Commits 23 records one per commit, in a scrambled order, dead-lettering [`is_dead`]
/// ones. Commits 1..=20 are indexed, 21..=23 (ids 2, 9, 16) are the tail.
fn fill_lagging(store: &Store) -> Vec<u64> {
    let mut job = store.job::<Sum>("j", lagging_progress()).expect("job");
    let ids: Vec<u64> = (0..23).map(|k| (k * 7) % 23).collect();
    for &id in &ids {
        if is_dead(id) {
            job.dead_letter(id, 2, "bad").expect("dead letter");
        } else {
            job.submit(id, id + 100).expect("submit");
        }
    }
    assert_eq!(job.last_seq(), 23);
    ids
}

fn raw_progress(store: &Store) -> crate::store::damage::Progress {
    damage::progress(store, "j")
}

#[test]
fn progress_rebuilt_from_index_and_tail_matches_what_was_committed() {
    let (_d, path) = fresh();
    let store = Store::open(&path).expect("open");
    let ids = fill_lagging(&store);
    let p = raw_progress(&store);
    assert_eq!(p.mark, 20, "the stored ranges reflect the 20th commit");
    assert_eq!(p.tail.len(), 3);
    assert_eq!(p.materialized.len(), 20);
    assert_eq!(p.done.len(), 23);

    let job = store.job::<Sum>("j", lagging_progress()).expect("reopen");
    assert_eq!(job.done_count(), 23);
    let outputs: Vec<u64> = (0..23).filter(|&id| !is_dead(id)).collect();
    assert_eq!(
        job.state().total,
        outputs.iter().map(|id| id + 100).sum::<u64>()
    );
    // Lookups through the index (early commits) and through the tail (the last three).
    for &id in &ids {
        let want = (!is_dead(id)).then_some(id + 100);
        assert_eq!(job.output(id).expect("output"), want, "record {id}");
    }
    assert_eq!(job.output(99).expect("absent"), None);
    let mut seen = Vec::new();
    store
        .for_each_output("j", 0..u64::MAX, |o| {
            seen.push((o.id, o.decode::<u64>().expect("decodes")));
            Ok(true)
        })
        .expect("outputs");
    let want: Vec<(u64, u64)> = outputs.iter().map(|&id| (id, id + 100)).collect();
    assert_eq!(seen, want, "every output once, in id order");
    let mut window = Vec::new();
    store
        .for_each_output("j", 5..12, |o| {
            window.push(o.id);
            Ok(true)
        })
        .expect("window");
    assert_eq!(window, [5, 7, 8, 9, 10, 11]);
    #[expect(
        clippy::reversed_empty_ranges,
        reason = "an operator can pass --from above --to"
    )]
    let reversed = 12..5;
    store
        .for_each_output("j", reversed, |o| {
            panic!("nothing in a reversed range: {o:?}")
        })
        .expect("a reversed range is empty");
    let report = job.verify().expect("verify");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(store.status("j").expect("status").records_done, 23);
}

#[test]
fn a_clean_stop_leaves_no_tail_and_requeue_catches_the_tail_up() {
    let (_d, path) = fresh();
    let store = Store::open(&path).expect("open");
    fill_lagging(&store);
    // Requeue one dead letter settled in an indexed commit and one settled in the tail.
    let tail_dead: Vec<u64> = raw_progress(&store)
        .tail
        .iter()
        .flat_map(|e| e.dead_letters.clone())
        .collect();
    assert_eq!(tail_dead, [16]);
    let requeue = [6u64, 16];
    let requeued = store.requeue("j", Some(&requeue)).expect("requeue");
    assert_eq!(requeued.len(), requeue.len());
    let p = raw_progress(&store);
    assert_eq!(
        (p.mark, p.tail.len()),
        (23, 0),
        "requeue writes progress up to date"
    );
    let mut job = store.job::<Sum>("j", lagging_progress()).expect("reopen");
    for &id in &requeue {
        assert!(!job.is_done(id), "requeued {id} is pending again");
    }
    assert_eq!(job.done_count(), 23 - requeue.len() as u64);
    for &id in &requeue {
        job.submit(id, 1).expect("redo");
    }
    job.pause().expect("pause");
    let p = raw_progress(&store);
    assert_eq!(p.tail.len(), 0, "a clean stop leaves no tail");
    assert_eq!(p.done.len(), 23);
    drop(job);
    let job = store.job::<Sum>("j", lagging_progress()).expect("reopen");
    let report = job.verify().expect("verify");
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn rewind_before_and_after_the_mark_rebuilds_progress() {
    for keep_commits in [8u64, 21] {
        let (_d, path) = fresh();
        let store = Store::open(&path).expect("open");
        fill_lagging(&store);
        let generation = store
            .snapshots("j")
            .expect("snapshots")
            .into_iter()
            .filter(|s| s.seq.is_some_and(|q| q <= keep_commits))
            .map(|s| s.generation)
            .max()
            .expect("a snapshot");
        let report = store.rewind("j", generation).expect("rewind");
        let p = raw_progress(&store);
        assert_eq!(p.mark, report.seq);
        assert_eq!(p.done.len(), report.records_kept);
        let report = store.verify_job("j").expect("verify");
        assert!(report.is_ok(), "{report:?}");
        let mut job = store.job::<Sum>("j", lagging_progress()).expect("reopen");
        for id in 0..23 {
            if !job.is_done(id) {
                job.submit(id, id + 100).expect("redo");
            }
        }
        job.flush().expect("flush");
        let report = job.verify().expect("verify");
        assert!(report.is_ok(), "{report:?}");
        let outputs = (0..23).filter(|&id| !is_dead(id)).count() as u64;
        assert!(job.state().count >= outputs);
    }
}

#[test]
fn verify_names_a_stale_id_index_entry() {
    let (_d, path) = fresh();
    {
        let store = Store::open(&path).expect("open");
        fill_lagging(&store);
    }
    damage::misdirect_first_index_entry(&path, "j");
    let store = Store::open(&path).expect("open");
    let report = store.verify_job("j").expect("verify");
    assert!(!report.is_ok());
    assert!(
        report.problems[0].item.starts_with("id index entry"),
        "{report:?}"
    );
}

#[test]
fn progress_is_written_once_the_tail_holds_8_mib() {
    let (_d, path) = fresh();
    let store = Store::open(&path).expect("open");
    let mut job = store
        .job::<Discard<Vec<u8>>>(
            "j",
            JobOptions::new().commit_policy(CommitPolicy::per_record()),
        )
        .expect("job");
    for id in 0..10 {
        job.submit(id, vec![id as u8; 1 << 20]).expect("submit");
    }
    // Each commit's segment holds a bit over 1 MiB: the 8th brings the tail to 8 MiB, long
    // before the 256-commit default.
    let p = raw_progress(&store);
    assert_eq!((p.mark, p.tail.len()), (8, 2));
    assert_eq!(p.done.len(), 10);
    assert_eq!(
        job.output(3).expect("read").expect("stored"),
        vec![3u8; 1 << 20]
    );
    assert_eq!(
        job.output(9).expect("read").expect("stored"),
        vec![9u8; 1 << 20]
    );
}
