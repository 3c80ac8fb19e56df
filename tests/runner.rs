#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The parallel runner driven through the public API: exactly-once settlement with 1, 2 and
//! 4 workers when runs are stopped at random points or crashed at random disk operations
//! (including in the middle of the maintainer's snapshot retirement), retries and dead
//! letters under injected transient, permanent and panicking failures, durable
//! acknowledgements, seeking past done records on resume, and the adaptive group size
//! following a change in per-record cost. Every random choice prints its seed; set
//! `RESUMABLE_SEED` to replay one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use resumable::{
    AdaptivePolicy, CommitPolicy, Durability, Fold, IdSource, IterSource, JobOptions, JobState,
    MaintainOptions, ProcessError, RecordContext, RetryPolicy, RunEnd, Runner, Store,
};
use serde::{Deserialize, Serialize};

/// An order-insensitive fold (parallel runs commit in different groupings), which still
/// catches a record applied twice (`count`, `sum`) or a wrong output (`mix`).
#[derive(Default, Serialize, Deserialize, Debug, PartialEq, Eq, Clone)]
struct Tally {
    count: u64,
    sum: u64,
    mix: u64,
    /// Ballast so snapshots are big enough for retirement and compaction to matter.
    pad: Vec<u8>,
}

impl Fold for Tally {
    type Output = u64;
    fn apply(&mut self, id: u64, out: &u64) {
        self.count += 1;
        self.sum += out;
        self.mix ^= mix(id, *out);
        if self.pad.is_empty() {
            self.pad = vec![7; 4096];
        }
    }
}

fn mix(id: u64, out: u64) -> u64 {
    let mut z = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ out;
    z = (z ^ (z >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z ^ (z >> 29)
}

fn output_of(id: u64) -> u64 {
    id * 7 + 3
}

fn expected(ids: impl IntoIterator<Item = u64>) -> Tally {
    let mut t = Tally::default();
    for id in ids {
        t.apply(id, &output_of(id));
    }
    t
}

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn seed(test: &str) -> u64 {
    let seed = std::env::var("RESUMABLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("{test}: RESUMABLE_SEED={seed}");
    seed
}

fn options(total: u64) -> JobOptions {
    JobOptions::new()
        .total_records(total)
        .commit_policy(CommitPolicy::new().max_group_records(16))
        .snapshot_every_commits(3)
        .keep_snapshots(2)
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy::new()
        .max_attempts(3)
        .base_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(4))
}

/// The processor of the clean runs (the signature the runner wants, hence the lints).
#[allow(clippy::trivially_copy_pass_by_ref, clippy::unnecessary_wraps)]
fn ok(ctx: RecordContext, rec: &u64) -> Result<u64, ProcessError> {
    assert_eq!(ctx.id, *rec);
    Ok(output_of(ctx.id))
}

#[test]
fn a_run_settles_every_record_once_with_1_2_and_4_workers() {
    const N: u64 = 2000;
    for workers in [1, 2, 4] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.redb")).unwrap();
        let job = store.job::<Tally>("j", options(N)).unwrap();
        let acked = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&acked);
        let report = Runner::new(job)
            .workers(workers)
            .complete_on_end(true)
            .on_durable(move |ack| {
                let mut s = sink.lock();
                for r in &ack.outputs {
                    s.extend(r.clone());
                }
            })
            .run(IdSource::new(0..N, Ok), ok)
            .unwrap();
        assert!(matches!(report.end, RunEnd::Finished));
        assert_eq!(report.job.lifecycle(), JobState::Completed);
        assert_eq!(report.job.state(), &expected(0..N), "{workers} workers");
        let mut acked = acked.lock().clone();
        acked.sort_unstable();
        assert_eq!(
            acked,
            (0..N).collect::<Vec<_>>(),
            "each record acked exactly once"
        );
        let s = &report.stats;
        assert_eq!(s.records_committed, N);
        assert_eq!(s.records_acked, N);
        assert_eq!(s.records_at_risk, 0);
        assert!(s.commits >= N / 16, "groups of at most 16");
        assert!(s.mean_group > 1.0);
        assert!(s.commit_latency_p99 >= s.commit_latency_p50);
        assert_eq!(s.eta, Some(Duration::ZERO));
        assert!(report.job.verify().unwrap().is_ok());
    }
}

/// Stops the run after a random number of acknowledged records, resumes, and repeats until
/// the source is exhausted; the final store must equal a clean run's.
#[test]
fn stop_at_random_points_then_resume_matches_a_clean_run() {
    const N: u64 = 1500;
    let mut rng = Rng::new(seed("stop_at_random_points"));
    for workers in [1, 2, 4] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let mut acked_before = BTreeSet::new();
        let mut runs = 0;
        loop {
            runs += 1;
            let store = Store::open(&path).unwrap();
            let job = store.job::<Tally>("j", options(N)).unwrap();
            for id in &acked_before {
                assert!(job.is_durable(*id), "acked record {id} lost");
            }
            let stop_after = if runs < 6 {
                1 + rng.below(N / 4)
            } else {
                u64::MAX
            };
            let runner = Runner::new(job).workers(workers);
            let stop = runner.stop_handle();
            let acked = Arc::new(Mutex::new(BTreeSet::new()));
            let sink = Arc::clone(&acked);
            let report = runner
                .on_durable(move |ack| {
                    let mut s = sink.lock();
                    for r in &ack.outputs {
                        s.extend(r.clone());
                    }
                    if s.len() as u64 >= stop_after {
                        stop.stop();
                    }
                })
                .run(IdSource::new(0..N, Ok), ok)
                .unwrap();
            let acked = acked.lock().clone();
            assert!(
                acked.is_disjoint(&acked_before),
                "a record was acked in two runs"
            );
            acked_before.extend(acked);
            assert_eq!(report.job.lifecycle(), JobState::Paused);
            assert_eq!(report.job.recoveries(), 0, "a stop is not a crash");
            match report.end {
                RunEnd::Finished => {
                    assert_eq!(report.job.state(), &expected(0..N), "{workers} workers");
                    assert_eq!(acked_before.len() as u64, N);
                    assert!(report.job.verify().unwrap().is_ok());
                    break;
                }
                RunEnd::Stopped => {}
                other => panic!("unexpected end {other:?}"),
            }
        }
        println!("{workers} workers: finished after {runs} runs");
    }
}

#[test]
fn transient_permanent_and_panicking_failures_settle_each_record_exactly_once() {
    const N: u64 = 600;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.redb")).unwrap();
    // id % 10 == 1: fails once, then succeeds. == 2: always fails transiently (dead after 3).
    // == 3: permanent. == 4: panics on the first attempt, then succeeds. == 5: always panics.
    let attempts: Arc<Vec<AtomicU64>> = Arc::new((0..N).map(|_| AtomicU64::new(0)).collect());
    let seen = Arc::clone(&attempts);
    let process = move |ctx: RecordContext, _: &u64| -> Result<u64, ProcessError> {
        let id = ctx.id;
        let n = seen[id as usize].fetch_add(1, Ordering::SeqCst) + 1;
        match id % 10 {
            1 if n == 1 => Err(ProcessError::transient("busy")),
            2 => Err(ProcessError::transient(format!("timeout {n}"))),
            3 => Err(ProcessError::permanent("malformed")),
            4 if n == 1 => panic!("boom {id}"),
            5 => panic!("always {id}"),
            _ => Ok(output_of(id)),
        }
    };
    let job = store.job::<Tally>("j", options(N)).unwrap();
    let report = Runner::new(job)
        .workers(4)
        .retry(fast_retry())
        .panics_are_permanent(false)
        .complete_on_end(true)
        .run(IdSource::new(0..N, Ok), process)
        .unwrap();
    let job = report.job;
    let dead: BTreeMap<u64, _> = store
        .dead_letters("j")
        .unwrap()
        .into_iter()
        .map(|d| (d.id, d))
        .collect();
    let is_dead = |id: u64| matches!(id % 10, 2 | 3 | 5);
    for id in 0..N {
        let output = job.output(id).unwrap();
        assert!(job.is_done(id), "record {id} never settled");
        assert_ne!(
            output.is_some(),
            dead.contains_key(&id),
            "record {id}: output xor dead letter"
        );
        assert_eq!(dead.contains_key(&id), is_dead(id), "record {id}");
        let tries = attempts[id as usize].load(Ordering::SeqCst);
        match id % 10 {
            1 | 4 => assert_eq!(tries, 2),
            2 | 5 => {
                assert_eq!(tries, 3);
                assert_eq!(dead[&id].attempts, 3);
            }
            3 => {
                assert_eq!(tries, 1, "a permanent failure is not retried");
                assert_eq!(dead[&id].attempts, 1);
                assert_eq!(dead[&id].error, "malformed");
            }
            _ => assert_eq!(tries, 1),
        }
        if id % 10 == 5 {
            assert!(dead[&id].error.contains("always"), "{}", dead[&id].error);
        }
    }
    assert_eq!(job.state(), &expected((0..N).filter(|&id| !is_dead(id))));
    let s = &report.stats;
    assert_eq!(s.dead_lettered, dead.len() as u64);
    assert_eq!(s.records_committed + s.dead_lettered, N);
    assert!(s.retries >= 4 * N / 10);
    assert!(s.panics >= 2 * N / 10);
    assert_eq!(job.lifecycle(), JobState::Completed);
    assert!(job.verify().unwrap().is_ok());
}

#[test]
fn resume_asks_a_seekable_source_only_for_records_in_the_gaps() {
    const N: u64 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.redb")).unwrap();
    let mut job = store.job::<Tally>("j", options(N)).unwrap();
    let done: Vec<u64> = (0..300).chain(310..700).chain(900..1000).collect();
    job.commit(done.iter().map(|&id| (id, output_of(id))))
        .unwrap();
    job.flush().unwrap();
    let loaded = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&loaded);
    let source = IdSource::new(0..N, move |id| {
        log.lock().push(id);
        Ok(id)
    });
    let report = Runner::new(job).workers(2).run(source, ok).unwrap();
    let loaded = loaded.lock().clone();
    let gaps: Vec<u64> = (300..310).chain(700..900).collect();
    assert_eq!(loaded, gaps, "only gap records are read");
    assert_eq!(report.stats.skipped, 0);
    assert!(report.stats.seeks >= 3);
    assert_eq!(report.job.state(), &expected(0..N));
}

#[test]
fn an_iterator_source_skips_done_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.redb")).unwrap();
    let mut job = store.job::<Tally>("j", options(100)).unwrap();
    job.commit((0..50).map(|id| (id, output_of(id)))).unwrap();
    let processed = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&processed);
    let report = Runner::new(job)
        .workers(3)
        .run(
            IterSource::new((0..100u64).map(|id| (id, id))),
            move |ctx, r| {
                count.fetch_add(1, Ordering::SeqCst);
                ok(ctx, r)
            },
        )
        .unwrap();
    assert_eq!(processed.load(Ordering::SeqCst), 50);
    assert_eq!(report.stats.skipped, 50);
    assert_eq!(report.job.state(), &expected(0..100));
}

#[test]
fn deferred_durability_acks_only_at_durable_commits() {
    const N: u64 = 3000;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.redb")).unwrap();
    let opts = options(N).commit_policy(CommitPolicy::new().max_group_records(10).durability(
        Durability::Deferred {
            max_interval: Duration::from_hours(1),
        },
    ));
    let job = store.job::<Tally>("j", opts).unwrap();
    let acks = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&acks);
    let runner = Runner::new(job).workers(2);
    let live = runner.stats_handle();
    let report = runner
        .on_durable(move |ack| sink.lock().push((ack.clone(), live.stats().fsyncs)))
        .run(IdSource::new(0..N, Ok), ok)
        .unwrap();
    let acks = acks.lock().clone();
    // Nothing is durable until the final flush: every commit is acknowledged then, one ack
    // per commit, in commit order.
    assert_eq!(
        acks.len() as u64,
        report.stats.commits,
        "one ack per commit"
    );
    assert!(
        acks.iter().all(|(_, fsyncs)| *fsyncs == 1),
        "acked before the durable flush"
    );
    let seqs: Vec<u64> = acks.iter().map(|(a, _)| a.seq).collect();
    assert_eq!(seqs, (1..=report.stats.commits).collect::<Vec<_>>());
    assert!(acks.iter().all(|(a, _)| !a.replayed));
    let ids: u64 = acks.iter().map(|(a, _)| a.records()).sum();
    assert_eq!(ids, N);
    assert!(report.stats.commits >= N / 10);
}

#[test]
fn maintainer_snapshots_retires_and_compacts_during_a_run() {
    const N: u64 = 3000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = Store::open(&path).unwrap();
    let job = store.job::<Tally>("j", options(N)).unwrap();
    let report = Runner::new(job)
        .workers(2)
        .maintainer(
            MaintainOptions::new()
                .snapshot_every_commits(2)
                .keep_snapshots(2)
                .compact_free_ratio(0.0)
                .compact_min_freed_bytes(1),
        )
        .run(IdSource::new(0..N, Ok), ok)
        .unwrap();
    let s = &report.stats;
    assert!(s.snapshots >= 2, "{s:?}");
    assert!(s.snapshots_retired >= 1, "{s:?}");
    assert!(s.compactions >= 1, "{s:?}");
    let (before, after) = s.last_compaction.unwrap();
    assert!(after <= before, "{before} -> {after}");
    let snaps = store.snapshots("j").unwrap();
    assert!(snaps.len() <= 2, "retention keeps 2: {snaps:?}");
    assert!(snaps.iter().all(|s| s.valid));
    let mut job = report.job;
    assert!(job.verify().unwrap().is_ok());
    // After the run the job snapshots on its commit path again, without clobbering the
    // maintainer's generations.
    let generation = job.snapshot().unwrap();
    assert!(snaps.iter().all(|s| s.generation < generation));
    drop(job);
    let job = store.job::<Tally>("j", options(N)).unwrap();
    assert_eq!(job.state(), &expected(0..N));
    assert_eq!(job.stats().replayed_commits, 0);
}

#[test]
fn adaptive_groups_shrink_when_records_get_slower() {
    const N: u64 = 4000;
    const SLOW_FROM: u64 = 3600;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.redb")).unwrap();
    let job = store.job::<Tally>("j", options(N)).unwrap();
    let runner = Runner::new(job)
        .workers(2)
        .adaptive(AdaptivePolicy::new().initial_group(16));
    let stats = runner.stats_handle();
    let fast_phase = Arc::new(Mutex::new(None));
    let probe = Arc::clone(&fast_phase);
    let report = runner
        .run(
            IdSource::new(0..N, Ok),
            move |ctx: RecordContext, r: &u64| {
                let id = ctx.id;
                if id == SLOW_FROM {
                    *probe.lock() = Some(stats.stats().target_group);
                }
                if id >= SLOW_FROM {
                    // 100x the per-record cost of the first phase.
                    spin(Duration::from_millis(1));
                } else {
                    spin(Duration::from_micros(10));
                }
                ok(ctx, r)
            },
        )
        .unwrap();
    let fast = fast_phase.lock().unwrap();
    let slow = report.stats.target_group;
    println!(
        "adaptive group: {fast} while records took 10 us, {slow} at 1 ms (share {:?})",
        report.stats.commit_share
    );
    assert!(slow < fast, "group should shrink: {fast} -> {slow}");
    assert_eq!(report.job.state(), &expected(0..N));
}

fn spin(d: Duration) {
    let t = std::time::Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

#[test]
fn a_run_of_a_completed_job_changes_nothing_and_says_already_done() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.redb")).unwrap();
    let mut job = store.job::<Tally>("j", options(1)).unwrap();
    job.commit([(0, 3)]).unwrap();
    job.complete().unwrap();
    let seq = job.last_seq();
    let report = Runner::new(job)
        .run(
            IdSource::new(0..5, Ok),
            |_, _| -> Result<u64, ProcessError> { panic!("nothing may be processed") },
        )
        .unwrap();
    assert!(
        matches!(report.end, RunEnd::AlreadyDone),
        "{:?}",
        report.end
    );
    assert_eq!(report.job.last_seq(), seq);
    assert_eq!(report.stats.records_committed, 0);
    drop(report);
    assert_eq!(store.status("j").unwrap().lifecycle, JobState::Completed);

    // A failed job still refuses to run.
    let mut job = store.job::<Tally>("f", options(1)).unwrap();
    job.start().unwrap();
    job.fail().unwrap();
    let err = Runner::new(job)
        .run(IdSource::new(0..1, Ok), ok)
        .unwrap_err();
    assert!(matches!(err, resumable::Error::Lifecycle { .. }), "{err}");
}

#[test]
fn a_failing_source_pauses_the_job_with_in_flight_records_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.redb")).unwrap();
    let job = store.job::<Tally>("j", options(100)).unwrap();
    let source = IdSource::new(0..100, |id| {
        if id == 60 {
            Err("disk unreadable".into())
        } else {
            Ok(id)
        }
    });
    let report = Runner::new(job).workers(2).run(source, ok).unwrap();
    assert!(
        matches!(report.end, RunEnd::SourceFailed(_)),
        "{:?}",
        report.end
    );
    assert_eq!(report.job.lifecycle(), JobState::Paused);
    let done = report.job.done_count();
    assert!(done <= 60);
    assert_eq!(
        report.job.state(),
        &expected(report.job.progress().ranges().flatten())
    );
}

#[cfg(feature = "testing")]
mod crash {
    //! Crashes the simulated disk at random operations (commits, snapshot writes and
    //! retirements of the maintainer, lifecycle writes) under every loss model, reopens the
    //! crash image and resumes, until the job finishes; then compares with a clean run.

    use super::*;
    use resumable::StoreOptions;
    use resumable::testing::{Fault, FaultDisk, LossModel};

    fn run_with_crashes(workers: usize, aggressive_maintainer: bool, seed: u64) {
        const N: u64 = 400;
        let mut rng = Rng::new(seed);
        let mut image: Option<Vec<u8>> = None;
        let mut acked: BTreeSet<u64> = BTreeSet::new();
        let mut crashes = 0;
        for round in 0.. {
            assert!(round < 40, "did not finish");
            let disk = image
                .take()
                .map_or_else(FaultDisk::new, FaultDisk::from_image);
            let store = StoreOptions::new().open_on(&disk).unwrap();
            let job = store.job::<Tally>("j", options(N)).unwrap();
            for id in &acked {
                assert!(
                    job.is_done(*id),
                    "durably acked record {id} lost (seed {seed})"
                );
            }
            assert_eq!(
                job.state(),
                &expected(job.progress().ranges().flatten()),
                "state is the fold of exactly the done records (seed {seed})"
            );
            let arm = crashes < 8;
            if arm {
                disk.reset_op_count();
                disk.arm(1 + rng.below(150), Fault::Crash);
            }
            let sink = Arc::new(Mutex::new(Vec::new()));
            let acks = Arc::clone(&sink);
            let mut runner = Runner::new(job).workers(workers).seed(seed);
            if aggressive_maintainer {
                runner = runner.maintainer(
                    MaintainOptions::new()
                        .snapshot_every_commits(1)
                        .keep_snapshots(1),
                );
            }
            let result = runner
                .on_durable(move |ack| {
                    let mut s = acks.lock();
                    for r in &ack.outputs {
                        s.extend(r.clone());
                    }
                })
                .run(IdSource::new(0..N, Ok), ok);
            acked.extend(sink.lock().iter().copied());
            match result {
                Ok(report) => {
                    assert!(!disk.crashed());
                    if matches!(report.end, RunEnd::Finished) {
                        assert_eq!(report.job.state(), &expected(0..N), "seed {seed}");
                        assert!(report.job.verify().unwrap().is_ok());
                        println!("{workers} workers: finished after {crashes} crashes");
                        return;
                    }
                    image = Some(disk.live_image());
                }
                Err(e) => {
                    assert!(
                        disk.crashed(),
                        "only the injected crash may fail a run: {e}"
                    );
                    crashes += 1;
                    drop(store);
                    let model = LossModel::ALL[rng.below(LossModel::ALL.len() as u64) as usize];
                    image = Some(disk.crash_image(model, rng.next()));
                }
            }
        }
    }

    #[test]
    fn crash_at_random_operations_then_resume_applies_each_record_once() {
        let seed = seed("crash_at_random_operations");
        for workers in [1, 2, 4] {
            run_with_crashes(workers, false, seed ^ workers as u64);
        }
    }

    #[test]
    fn crash_during_snapshot_retirement_leaves_a_resumable_store() {
        let seed = seed("crash_during_snapshot_retirement");
        for workers in [1, 2, 4] {
            run_with_crashes(workers, true, seed.rotate_left(7) ^ workers as u64);
        }
    }
}

#[test]
fn a_panicking_ack_callback_ends_the_run_with_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.redb")).unwrap();
    let job = store.job::<Tally>("j", options(100_000)).unwrap();
    let err = Runner::new(job)
        .workers(2)
        .on_durable(|_| panic!("callback bug"))
        .run(IdSource::new(0..100_000, Ok), ok)
        .unwrap_err();
    assert!(matches!(err, resumable::Error::Panicked { .. }), "{err}");
    // The job handle was released: the job reopens, with what was committed.
    let job = store.job::<Tally>("j", options(100_000)).unwrap();
    assert!(job.done_count() < 100_000, "the feeder stopped early");
    assert_eq!(job.state(), &expected(job.progress().ranges().flatten()));
}

#[test]
fn stats_carry_what_a_metrics_exporter_needs_ack_quantiles_and_the_last_durable_time() {
    const N: u64 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.redb")).unwrap();
    let job = store.job::<Tally>("j", options(N)).unwrap();
    let runner = Runner::new(job).workers(2);
    let live = runner.stats_handle();
    assert_eq!(
        live.stats().last_durable_ms,
        None,
        "nothing durable before the run"
    );
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let report = runner.run(IdSource::new(0..N, Ok), ok).unwrap();
    let s = live.stats();
    assert_eq!(s.last_durable_ms, report.stats.last_durable_ms);
    assert_eq!(s.records_acked, N);
    assert!(s.ack_latency_p50 <= s.ack_latency_p90 && s.ack_latency_p90 <= s.ack_latency_p99);
    assert!(s.ack_latency_sum >= s.ack_latency_p50, "{s:?}");
    let last = s.last_durable_ms.expect("a durable commit");
    assert!(last >= before, "{last} >= {before}");
}

/// Self-clocking group commit commits what is ready as soon as the previous commit returns:
/// a source that yields its next record only after the previous one was durably
/// acknowledged runs to the end one record per commit, although the group delay is an hour
/// (the fixed policy would wait that hour, or for 1,000 records, before its first commit).
/// The default policy does the same while the workers wait for input, as they do here.
#[test]
fn self_clocking_commits_at_once_when_the_job_is_idle() {
    for policy in [CommitPolicy::new().self_clocking(true), CommitPolicy::new()] {
        self_clocks(policy.max_group_delay(Duration::from_hours(1)));
    }
}

fn self_clocks(policy: CommitPolicy) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.redb")).unwrap();
    let job = store
        .job::<Tally>("j", options(5).commit_policy(policy))
        .unwrap();
    let (acked_tx, acked_rx) = crossbeam_channel::unbounded::<u64>();
    let acks = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&acks);
    let runner = Runner::new(job).workers(2).on_durable(move |ack| {
        seen.lock().push(ack.records());
        let _ = acked_tx.send(ack.records());
    });
    let waited_out = Arc::new(AtomicU64::new(0));
    let timeouts = Arc::clone(&waited_out);
    let source = IdSource::new(0..5, move |id| {
        if id > 0 && acked_rx.recv_timeout(Duration::from_secs(20)).is_err() {
            timeouts.fetch_add(1, Ordering::SeqCst);
        }
        Ok::<u64, resumable::BoxError>(id)
    });
    let report = runner.run(source, ok).unwrap();
    assert!(matches!(report.end, RunEnd::Finished), "{:?}", report.end);
    assert_eq!(
        waited_out.load(Ordering::SeqCst),
        0,
        "a record waited for a timer"
    );
    assert_eq!(*acks.lock(), vec![1, 1, 1, 1, 1], "one record per commit");
}

/// The default policy self-clocks only while the workers wait for input: with records
/// queued for a busy worker it commits at the record limit (the fixed policy), so a
/// CPU-bound job does not pay for a commit per handful of records; once the queue is empty,
/// what is left commits at once instead of waiting out the group delay.
#[test]
fn the_default_policy_commits_full_groups_while_work_queues() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.redb")).unwrap();
    let policy = CommitPolicy::new()
        .max_group_records(50)
        .max_group_delay(Duration::from_mins(1));
    let job = store
        .job::<Tally>("j", options(220).commit_policy(policy))
        .unwrap();
    let acks = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&acks);
    let runner = Runner::new(job)
        .workers(1)
        .on_durable(move |ack| seen.lock().push(ack.records()));
    let started = std::time::Instant::now();
    let report = runner
        .run(
            IdSource::new(0..220, Ok::<u64, resumable::BoxError>),
            |_: resumable::RecordContext, id: &u64| {
                std::thread::sleep(Duration::from_millis(2));
                Ok::<u64, resumable::ProcessError>(*id)
            },
        )
        .unwrap();
    assert!(matches!(report.end, RunEnd::Finished), "{:?}", report.end);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the tail waited for the group delay"
    );
    let acks = acks.lock();
    assert_eq!(acks.iter().sum::<u64>(), 220);
    assert_eq!(
        acks[..2],
        [50, 50],
        "full groups while records queued for the worker: {acks:?}"
    );
}
