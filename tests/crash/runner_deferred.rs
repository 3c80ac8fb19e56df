//! The `Runner`'s durable acks under deferred durability, on the simulated disk: a runner
//! (2 workers, groups of 8, transient failures retried) commits with
//! `Durability::Deferred` (a durable commit once `max_interval` has passed: 0.15, 0.4 and
//! 1.2 ms, so the runner flushes every one to several groups; the figures are printed) on a `FaultDisk`, and every `on_durable` ack is
//! recorded. The run is crashed at a spread of its I/O ops (the runner's threads make the
//! op order vary from run to run, so the crash points are spread over the fault-free run's
//! measured op count, and only cases that really crashed are counted) and the image is taken
//! under every loss model.
//!
//! Proves, for every image: every id the runner reported in a durable ack is present with
//! the ack's commit and its output; what is present is exactly the commits up to some `k` of
//! what the process had written (the process-kill image), so what is lost is a suffix of
//! commits; `verify` and redb's integrity check pass; and a runner resumes the store to the
//! end with every record once. `RESUMABLE_CRASH_SCALE` multiplies the crash points.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use resumable::testing::{Fault, FaultDisk, LossModel};
use resumable::{
    CommitPolicy, Discard, Durability, IdSource, JobOptions, ProcessError, RetryPolicy, Runner,
    StoreOptions,
};

use crate::model::{scale, with_context};

const RECORDS: u64 = 400;
const NAME: &str = "deferred-runner";

fn options(interval: Duration) -> JobOptions {
    JobOptions::new().total_records(RECORDS).commit_policy(
        CommitPolicy::new()
            .max_group_records(8)
            .max_group_delay(Duration::from_millis(1))
            .durability(Durability::Deferred {
                max_interval: interval,
            }),
    )
}

/// Acks seen: (seq, ids) per durable ack, in order.
type Acks = Arc<Mutex<Vec<(u64, Vec<u64>)>>>;

/// What a run did: acks, durable commits, commits.
struct Ran {
    acks: Vec<(u64, Vec<u64>)>,
    result: resumable::Result<(u64, u64)>,
}

/// Runs the job on `disk` to the end (or the crash), recording every durable ack.
fn run(disk: &FaultDisk, interval: Duration) -> Ran {
    let acks: Acks = Arc::default();
    let sink = Arc::clone(&acks);
    let result = (|| {
        let store = StoreOptions::new().open_on(disk)?;
        let job = store.job::<Discard<u64>>(NAME, options(interval))?;
        let report = Runner::new(job)
            .workers(2)
            .complete_on_end(true)
            .retry(
                RetryPolicy::new()
                    .max_attempts(5)
                    .base_delay(Duration::from_micros(50))
                    .jitter(false),
            )
            .on_durable(move |ack| {
                let ids = ack
                    .outputs
                    .iter()
                    .flat_map(Clone::clone)
                    .chain(ack.dead_letters.iter().copied())
                    .collect();
                sink.lock().unwrap().push((ack.seq, ids));
            })
            .run(
                IdSource::new(0..RECORDS, Ok),
                |ctx, _| -> Result<u64, ProcessError> {
                    let id = ctx.id;
                    std::hint::black_box((0..20_000u64).fold(id, |a, b| a.rotate_left(5) ^ b));
                    if id % 7 == 0 && ctx.attempt < 2 {
                        return Err(ProcessError::transient("busy"));
                    }
                    Ok(id * 3)
                },
            )?;
        Ok((report.stats.commits, report.stats.fsyncs))
    })();
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    Ran { acks, result }
}

/// The store in `image`: seq -> ids of its outputs (each id once, with its value), after
/// `verify` and the integrity check.
fn commits(image: Vec<u8>) -> BTreeMap<u64, BTreeSet<u64>> {
    let disk = FaultDisk::from_image(image);
    let store = StoreOptions::new().open_on(&disk).expect("reopen");
    let mut by_seq: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    store
        .for_each_output(NAME, 0..u64::MAX, |o| {
            let v: u64 = o.decode()?;
            assert_eq!(v, o.id * 3, "output of record {}", o.id);
            assert!(seen.insert(o.id), "record {} twice", o.id);
            by_seq.entry(o.seq).or_default().insert(o.id);
            Ok(true)
        })
        .expect("outputs");
    store.check_integrity().expect("integrity");
    let job = store
        .job::<Discard<u64>>(NAME, options(Duration::from_millis(1)))
        .expect("job");
    let report = job.verify().expect("verify");
    assert!(report.is_ok(), "verify: {:?}", report.problems);
    by_seq
}

#[test]
fn runner_durable_acks_under_deferred_durability_survive_and_loss_is_a_suffix() {
    let started = Instant::now();
    let base = {
        let disk = FaultDisk::new();
        let store = StoreOptions::new().open_on(&disk).expect("create");
        drop(
            store
                .job::<Discard<u64>>(NAME, options(Duration::from_millis(1)))
                .expect("job"),
        );
        drop(store);
        disk.live_image()
    };
    let points = 60 * scale();
    let mut summary = Vec::new();
    let (mut images, mut lost_suffix, mut acked_ids) = (0u64, 0u64, 0u64);
    for interval_us in [150u64, 400, 1_200] {
        let interval = Duration::from_micros(interval_us);
        let free = FaultDisk::from_image(base.clone());
        let clean = run(&free, interval);
        let (commits_made, fsyncs) = clean.result.expect("fault-free run");
        let total = free.ops();
        let (mut crashed, mut missed) = (0u64, 0u64);
        for p in 0..points {
            // Spread over the run, the first ops included.
            let at_op = 1 + p * total / points + (p * 7) % (total / points).max(1);
            let disk = FaultDisk::from_image(base.clone());
            disk.arm(at_op, Fault::Crash);
            let ran = run(&disk, interval);
            if !disk.crashed() {
                missed += 1;
                assert!(ran.result.is_ok(), "no crash, yet {:?}", ran.result.err());
                continue;
            }
            crashed += 1;
            // What the process had written: the process-kill image.
            let written = commits(disk.crash_image(LossModel::KeepAll, at_op));
            let all_written: BTreeSet<u64> = written.values().flatten().copied().collect();
            for (m, model) in LossModel::ALL.into_iter().enumerate() {
                let seed = at_op * 8 + m as u64;
                let ctx = || {
                    format!(
                        "max_interval {interval_us} us, crash op {at_op}/{total}, loss model \
                         {model:?}, seed {seed}"
                    )
                };
                let image = disk.crash_image(model, seed);
                with_context(ctx, || {
                    let found = commits(image.clone());
                    images += 1;
                    // A prefix of the commits written: up to the newest found, all of them.
                    let k = found.keys().last().copied().unwrap_or(0);
                    let prefix: BTreeMap<u64, BTreeSet<u64>> = written
                        .range(..=k)
                        .map(|(s, ids)| (*s, ids.clone()))
                        .collect();
                    assert_eq!(found, prefix, "not a prefix of the commits written");
                    let present: BTreeSet<u64> = found.values().flatten().copied().collect();
                    lost_suffix += u64::from(present.len() < all_written.len());
                    for (seq, ids) in &ran.acks {
                        for id in ids {
                            assert_eq!(
                                found.get(seq).map(|s| s.contains(id)),
                                Some(true),
                                "record {id} acked durable in commit {seq} is missing"
                            );
                        }
                    }
                    if model == LossModel::DropAll {
                        // And the store resumes to the end, every record once.
                        let fin = FaultDisk::from_image(image.clone());
                        run(&fin, interval).result.expect("resume");
                        let end = commits(fin.live_image());
                        let ids: Vec<u64> = end.values().flatten().copied().collect();
                        assert_eq!(ids.len() as u64, RECORDS, "every record once at the end");
                    }
                });
            }
            acked_ids += ran
                .acks
                .iter()
                .map(|(_, ids)| ids.len() as u64)
                .sum::<u64>();
        }
        summary.push(format!(
            "max_interval {interval_us} us: {commits_made} commits / {fsyncs} durable per fault-free run, \
             {total} ops, {crashed} crash points crashed ({missed} runs ended before theirs)"
        ));
    }
    println!(
        "runner under deferred durability: {}; {images} images (6 loss models), {lost_suffix} \
         lost a non-durable suffix, {acked_ids} ids acked durable before a crash, every one \
         survived; {:.1} s",
        summary.join("; "),
        started.elapsed().as_secs_f64()
    );
}
