//! Deterministic crash sweep on the simulated disk (`resumable::testing::FaultDisk`).
//!
//! Drives a small job (scrambled ids so progress has gaps, groups of 1 to 5 records, a
//! snapshot every 3 commits with retention keeping 2) and crashes it at every mutating I/O
//! operation (write, `set_len`, `sync_data`) of its run, including the store and job opens,
//! under all six loss models; then crashes again during the recovery that follows (double
//! crash). It also injects transient and persistent I/O errors and disk-full errors at every
//! operation. After each reopen it proves, against the model in `model.rs`:
//! 1. every acknowledged-durable group is present, each record once with its exact output;
//! 2. no record is half present: progress is a prefix of whole groups, outputs equal the
//!    done marks, the state equals the fold of exactly those outputs;
//! 3. progress is never below the durable watermark and at most the in-flight group above
//!    what was known (REDB-NOTES 1.6, indeterminate commits), and resuming to the end gives
//!    the fault-free final state and outputs;
//! 4. the newest snapshot is used (few commits replayed), `Job::verify` and
//!    `Store::check_integrity` pass.
//!
//! Faults surface as `Error::Io` / `Error::DiskFull`, and the handle answers `Poisoned`
//! afterwards. Sizes scale with `RESUMABLE_CRASH_SCALE`; counts print with `--nocapture`.

use std::time::Instant;

use resumable::Error;
use resumable::testing::{Fault, FaultDisk, LossModel};

use crate::model::{
    Finish, Watermark, Workload, base_image, check_final, finish_and_check, is_storage_error,
    run_incarnation, scale, with_context,
};

/// Records in the swept job. About 8 backend operations per group commit.
fn sweep_workload() -> Workload {
    Workload::standard(36 * scale())
}

/// Mutating operations of a fault-free run from the base image, checking it completes.
fn fault_free_ops(base: &[u8], w: &Workload) -> u64 {
    let disk = FaultDisk::from_image(base.to_vec());
    let inc = run_incarnation(&disk, w, false);
    assert!(inc.finished, "fault-free run failed: {:?}", inc.error);
    let ops = disk.ops();
    check_final(&disk, w);
    ops
}

#[derive(Default, Clone, Copy, Debug)]
struct SweepCounts {
    single: u64,
    double: u64,
    landed: u64,
    observed_lost: u64,
    /// Every prefix of the pending writes, one image each.
    prefixes: u64,
    /// Every subset of the pending writes (where at most 10 pend), one image each.
    subsets: u64,
}

impl SweepCounts {
    fn add(&mut self, o: SweepCounts) {
        self.single += o.single;
        self.double += o.double;
        self.landed += o.landed;
        self.observed_lost += o.observed_lost;
        self.prefixes += o.prefixes;
        self.subsets += o.subsets;
    }
}

/// Crashes the job at `at_op` under every loss model; for each image, resumes it to the end
/// (single crash), and crashes the resume again at ops `1..=dense` and then every `stride`-th
/// op (double crash), resuming each of those to the end.
fn sweep_op(base: &[u8], w: &Workload, at_op: u64, dense: u64, stride: u64) -> SweepCounts {
    let mut c = SweepCounts::default();
    let disk = FaultDisk::from_image(base.to_vec());
    disk.arm(at_op, Fault::Crash);
    let inc = run_incarnation(&disk, w, false);
    assert!(disk.crashed(), "crash at op {at_op} did not fire");
    let mut mark = Watermark::default();
    mark.after(&inc);
    // Every outcome of the pending writes that a prefix keeps, and, where at most 10 pend,
    // every subset (the random draws below add torn writes).
    let pending = disk.pending_ops();
    for kept in 0..=pending {
        let mut m2 = mark;
        with_context(
            || {
                format!(
                    "crash op {at_op}, loss model Prefix keeping {kept} of {pending}, no second crash"
                )
            },
            || finish_and_check(disk.crash_image_prefix(kept), w, &mut m2, Finish::Observe),
        );
        c.prefixes += 1;
    }
    if pending <= 10 {
        for mask in 0..1u64 << pending {
            if (mask + 1).is_power_of_two() {
                continue; // a prefix, checked above
            }
            let mut m2 = mark;
            with_context(
                || {
                    format!(
                        "crash op {at_op}, loss model Subset mask {mask:#b} of {pending}, no second crash"
                    )
                },
                || finish_and_check(disk.crash_image_subset(mask), w, &mut m2, Finish::Observe),
            );
            c.subsets += 1;
        }
    }
    for (m, model) in LossModel::ALL.into_iter().enumerate() {
        let seed = at_op * 8 + m as u64;
        let image = disk.crash_image(model, seed);
        let mut single_mark = mark;
        // Every image is resumed to the end; one in 7 completed stores is reopened and
        // checked in full.
        let finish = if seed.is_multiple_of(7) {
            Finish::ResumeAndReopen
        } else {
            Finish::Resume
        };
        with_context(
            || format!("crash op {at_op}, loss model {model:?}, seed {seed}, no second crash"),
            || finish_and_check(image.clone(), w, &mut single_mark, finish),
        );
        c.landed += single_mark.in_flight_landed;
        c.single += 1;

        let mut j = 1;
        loop {
            let disk2 = FaultDisk::from_image(image.clone());
            disk2.arm(j, Fault::Crash);
            let inc2 = run_incarnation(&disk2, w, false);
            if !disk2.crashed() {
                assert!(inc2.finished, "{:?}", inc2.error);
                break;
            }
            let mut mark2 = mark;
            with_context(
                || {
                    format!(
                        "crash op {at_op}, loss model {model:?}, seed {seed}, second crash op {j}"
                    )
                },
                || mark2.after(&inc2),
            );
            // A different loss model for the second crash than for the first.
            let model2 = LossModel::ALL[(m + j as usize) % LossModel::ALL.len()];
            let image2 = disk2.crash_image(model2, seed ^ (j << 32));
            // Every double-crash image is reopened and checked; one in 16 is also resumed to
            // the end.
            let finish = if (seed + j).is_multiple_of(16) {
                Finish::Resume
            } else {
                Finish::Observe
            };
            with_context(
                || {
                    format!(
                        "crash op {at_op}, loss model {model:?}, seed {seed}, second crash op {j} under {model2:?} seed {}",
                        seed ^ (j << 32)
                    )
                },
                || finish_and_check(image2, w, &mut mark2, finish),
            );
            c.observed_lost += mark2.observed_then_lost;
            c.double += 1;
            if j >= dense && stride == 0 {
                break;
            }
            j += if j < dense { 1 } else { stride };
        }
    }
    c
}

#[test]
fn crash_at_every_op_under_every_loss_model_then_again_during_recovery() {
    sweep(
        &sweep_workload(),
        "the default mode (the writer has the file to itself)",
    );
}

/// The same sweep with the writer switching between exclusive and live-reader mode before
/// every group commit, as readers knocking and going away make it: the odd groups commit
/// two-phase (a second header write and fsync), and every switch (a close and a reopen of
/// the file) is crashed at each of its operations too.
#[test]
fn the_same_sweep_switching_modes_between_commits() {
    sweep(
        &sweep_workload().switching_modes(),
        "modes switching before every commit (odd groups with live readers)",
    );
}

fn sweep(w: &Workload, mode: &str) {
    let started = Instant::now();
    let base = base_image(w);
    let total_ops = fault_free_ops(&base, w);
    // Second crash points per first crash: every op of the recovery (store open with
    // repair, job open, the first resumed commit), then a stride through the rest.
    let dense = 24 * scale();
    // Beyond the recovery, the resume is a plain run that the single crashes already cover;
    // a longer campaign (scale > 1) strides through it too.
    let stride = if scale() > 1 { 8 } else { 0 };
    let next = std::sync::atomic::AtomicU64::new(1);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let totals = std::sync::Mutex::new(SweepCounts::default());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut mine = SweepCounts::default();
                loop {
                    let at_op = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if at_op > total_ops {
                        break;
                    }
                    mine.add(sweep_op(&base, w, at_op, dense, stride));
                }
                totals.lock().unwrap().add(mine);
            });
        }
    });
    let c = *totals.lock().unwrap();
    println!(
        "crash sweep in {mode}: {} records in {} groups, {total_ops} ops per run, {} KiB image; {} crash points \
         ({} single = {total_ops} ops x {} loss models, {} double crashes during recovery), \
         plus {} enumerated prefix images and {} enumerated subset images (every outcome where \
         at most 10 writes pend); \
         in-flight group landed in {} single cases; {} double cases lost an unacknowledged \
         group seen after the first reopen (allowed: not durable by contract); {:.1} s on {threads} threads",
        w.records(),
        w.groups.len(),
        base.len() / 1024,
        c.single + c.double,
        c.single,
        LossModel::ALL.len(),
        c.double,
        c.prefixes,
        c.subsets,
        c.landed,
        c.observed_lost,
        started.elapsed().as_secs_f64()
    );
    assert!(
        c.single + c.double >= 20_000,
        "target: 20,000 crash points per run"
    );
}

fn finish_for(at_op: u64) -> Finish {
    if at_op.is_multiple_of(5) {
        Finish::ResumeAndReopen
    } else {
        Finish::Resume
    }
}

#[derive(Default, Debug)]
struct ErrorTally {
    io: u64,
    disk_full: u64,
    poisoned: u64,
    absorbed: u64,
}

impl ErrorTally {
    fn count(&mut self, fault: Fault, e: &Error, context: &str) {
        match (fault, e) {
            (Fault::IoError { .. }, Error::Io(io)) => {
                assert_eq!(io.kind(), std::io::ErrorKind::Other, "{context}: {e:?}");
                self.io += 1;
            }
            (Fault::DiskFull { .. }, Error::DiskFull(_)) => self.disk_full += 1,
            (_, Error::Poisoned) => self.poisoned += 1,
            _ => panic!("{context}: {fault:?} surfaced as {e:?}"),
        }
    }
}

#[test]
fn io_error_and_disk_full_at_every_op_give_typed_errors_then_poisoned_then_a_clean_reopen() {
    let started = Instant::now();
    let w = sweep_workload();
    let base = base_image(&w);
    let total_ops = fault_free_ops(&base, &w);
    let faults = [
        Fault::IoError { persistent: false },
        Fault::IoError { persistent: true },
        Fault::DiskFull { persistent: false },
        Fault::DiskFull { persistent: true },
    ];
    let mut tally = ErrorTally::default();
    let mut cases = 0u64;
    for fault in faults {
        for at_op in 1..=total_ops {
            let context = format!("{fault:?} at op {at_op}");
            let disk = FaultDisk::from_image(base.clone());
            disk.arm(at_op, fault);
            let inc = run_incarnation(&disk, &w, false);
            assert!(disk.fired(), "{context}: did not fire");
            cases += 1;
            let Some(err) = &inc.error else {
                // The fault hit the close after the job completed (the drop cannot report it);
                // the reopen below shows nothing was lost.
                assert!(inc.finished, "{context}: no error but not finished");
                let mut mark = Watermark::default();
                mark.after(&inc);
                finish_and_check(disk.live_image(), &w, &mut mark, Finish::Observe);
                tally.absorbed += 1;
                continue;
            };
            tally.count(fault, err, &context);
            for later in &inc.later_errors {
                assert!(
                    matches!(later, Error::Poisoned),
                    "{context}: after {err:?} the handle answered {later:?}"
                );
            }
            let mut mark = Watermark::default();
            mark.after(&inc);
            let persistent = matches!(
                fault,
                Fault::IoError { persistent: true } | Fault::DiskFull { persistent: true }
            );
            if persistent {
                // The disk is still failing: the reopen must report it, not loop or panic.
                let disk2 = FaultDisk::from_image(disk.live_image());
                disk2.arm(1, fault);
                let inc2 = run_incarnation(&disk2, &w, false);
                let e2 = inc2
                    .error
                    .as_ref()
                    .unwrap_or_else(|| panic!("{context}: reopen on a failing disk succeeded"));
                assert!(
                    is_storage_error(e2),
                    "{context}: reopen on failing disk: {e2:?}"
                );
                let mut mark2 = mark;
                mark2.after(&inc2);
                // The disk recovers (space freed): the reopen resumes.
                finish_and_check(disk2.live_image(), &w, &mut mark2, finish_for(at_op));
            } else {
                // The process reopens (page cache intact), or the machine loses power.
                finish_and_check(disk.live_image(), &w, &mut mark, finish_for(at_op));
                finish_and_check(disk.durable_image(), &w, &mut mark.clone(), Finish::Resume);
            }
        }
    }
    println!(
        "i/o fault sweep: {cases} faults ({total_ops} ops x 4 kinds: transient/persistent EIO \
         and ENOSPC); first error Io {} / DiskFull {} / Poisoned {}, absorbed by the close \
         after completion {}; every later call Poisoned; every reopen consistent; {:.1} s",
        tally.io,
        tally.disk_full,
        tally.poisoned,
        tally.absorbed,
        started.elapsed().as_secs_f64()
    );
}
