//! Deferred durability (`Durability::Deferred`, README guarantee 3) on the simulated disk:
//! a job commits its groups without fsync and flushes every `k` groups (k = 1, 2, 3, 5);
//! the run is crashed at every I/O op under every loss model and, after the reopen, resumed
//! to the end with another crash during the recovery.
//!
//! Proves: every record for which `Job::is_durable` answered `true` before the crash
//! survives; what is lost is exactly a suffix of commits (the store holds a prefix of whole
//! groups, each record once with its output, the state is the fold of that prefix);
//! `verify` and redb's integrity check pass; the resumed job ends equal to a fault-free run.
//! The store runs in exclusive mode, as the product switches it for a deferred job.

use std::time::{Duration, Instant};

use resumable::testing::{Fault, FaultDisk, LossModel};
use resumable::{CommitPolicy, Durability, JobOptions, StoreOptions};

use crate::model::{JOB, Tally, Workload, base_image, observe, output_of, scale, with_context};

fn options(w: &Workload) -> JobOptions {
    w.options()
        .commit_policy(CommitPolicy::new().max_group_records(1_000_000).durability(
            Durability::Deferred {
                max_interval: Duration::from_hours(1),
            },
        ))
}

/// What a deferred incarnation did before its crash.
#[derive(Default, Debug)]
struct Deferred {
    /// Groups present at the open.
    start: Option<usize>,
    /// Groups whose every id `is_durable` reported durable.
    durable: usize,
    /// Groups committed (durable or not).
    committed: usize,
    finished: bool,
}

/// Opens, resumes, and commits the remaining groups, flushing every `k`; stops at the first
/// error. Checks `is_durable` after each commit.
fn run(disk: &FaultDisk, w: &Workload, k: usize) -> Deferred {
    let mut d = Deferred::default();
    let Ok(store) = StoreOptions::new().open_on(disk) else {
        return d;
    };
    let Ok(mut job) = store.job::<Tally>(JOB, options(w)) else {
        return d;
    };
    let start = crate::model::prefix_of(&job, w).unwrap_or_else(|m| panic!("{m}"));
    d.start = Some(start);
    d.committed = start;
    // What a reopen finds was on the medium: durable.
    d.durable = start;
    for (g, group) in w.groups.iter().enumerate().skip(start) {
        if job
            .commit(group.iter().map(|&id| (id, output_of(id))))
            .is_err()
        {
            return d;
        }
        d.committed = g + 1;
        if (g + 1) % k == 0 && job.flush().is_err() {
            return d;
        }
        // The groups `is_durable` vouches for: a prefix.
        while d.durable < d.committed && w.groups[d.durable].iter().all(|&id| job.is_durable(id)) {
            d.durable += 1;
        }
        assert!(
            w.groups[d.durable..d.committed]
                .iter()
                .flatten()
                .all(|&id| !job.is_durable(id)),
            "is_durable is not a prefix of commits"
        );
    }
    if job.flush().is_err() {
        return d;
    }
    d.durable = d.committed;
    if job.lifecycle() != resumable::JobState::Completed && job.complete().is_err() {
        return d;
    }
    assert_eq!(job.state(), w.final_state());
    d.finished = true;
    d
}

/// Reopens `image` and checks it: a prefix of whole groups (a lost suffix), at least
/// `durable` groups, at most `committed`; returns the groups found.
fn check(image: Vec<u8>, w: &Workload, durable: usize, committed: usize) -> usize {
    let disk = FaultDisk::from_image(image);
    let store = StoreOptions::new().open_on(&disk).expect("reopen");
    let job = store.job::<Tally>(JOB, options(w)).expect("job");
    let g = observe(&store, &job, w).unwrap_or_else(|m| panic!("{m}"));
    assert!(
        g >= durable && g <= committed,
        "found {g} groups; is_durable vouched for {durable}, {committed} committed"
    );
    g
}

#[test]
fn deferred_durability_loses_only_a_suffix_and_nothing_is_durable_said() {
    let started = Instant::now();
    let w = Workload::standard(30 * scale());
    let base = base_image(&w);
    let (mut cases, mut doubles, mut lost_suffix) = (0u64, 0u64, 0u64);
    for k in [1usize, 2, 3, 5] {
        let free = FaultDisk::from_image(base.clone());
        assert!(run(&free, &w, k).finished);
        let total = free.ops();
        for at_op in 1..=total {
            let disk = FaultDisk::from_image(base.clone());
            disk.arm(at_op, Fault::Crash);
            let d = run(&disk, &w, k);
            assert!(disk.crashed());
            for (m, model) in LossModel::ALL.into_iter().enumerate() {
                let seed = at_op * 8 + m as u64;
                let image = disk.crash_image(model, seed);
                let ctx = || {
                    format!("flush every {k}, crash op {at_op}, loss model {model:?}, seed {seed}")
                };
                let g = with_context(ctx, || check(image.clone(), &w, d.durable, d.committed));
                lost_suffix += u64::from(g < d.committed);
                cases += 1;
                // A second crash during the recovery, then a resume to the end.
                let j = 1 + (seed * 7) % 24;
                let disk2 = FaultDisk::from_image(image);
                disk2.arm(j, Fault::Crash);
                let d2 = run(&disk2, &w, k);
                let image2 = if disk2.crashed() {
                    doubles += 1;
                    disk2.crash_image(LossModel::ALL[(m + 1) % 6], seed ^ 0x55)
                } else {
                    assert!(d2.finished);
                    disk2.live_image()
                };
                let floor = d.durable.max(d2.durable);
                let ceiling = g.max(d2.committed);
                with_context(
                    || format!("{}, second crash op {j}", ctx()),
                    || {
                        check(image2.clone(), &w, floor, ceiling);
                        let fin = FaultDisk::from_image(image2);
                        assert!(run(&fin, &w, k).finished, "resume to the end");
                    },
                );
            }
        }
    }
    println!(
        "deferred durability: {cases} crash points (flush every 1, 2, 3, 5 groups x every op x 6 loss models) \
         + {doubles} second crashes during recovery; {lost_suffix} lost a non-durable suffix; \
         every group is_durable vouched for survived; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
