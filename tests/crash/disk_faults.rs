//! Faults of the simulated disk beyond the basic sweep: a process kill followed by a power
//! loss during the recovery (the first crash's unsynced writes carried forward as still
//! volatile), EIO at every read of open, resume, `verify` and export, and "fsyncgate" (a
//! failed `sync_data` that drops the dirty pages while reads still show them). It also
//! proves the sweeps run in the concurrency mode the product uses.
//!
//! Proves: after every such fault, every acknowledged group is present exactly once, the
//! store is a prefix of whole groups within the watermark, `verify` and redb's integrity
//! check pass; a read error surfaces as a typed `Io` error (never a panic, never wrong
//! data); a failed sync poisons the handle. Sizes scale with `RESUMABLE_CRASH_SCALE`.

use std::time::Instant;

use resumable::testing::{Fault, FaultDisk, LossModel};
use resumable::{CommitPolicy, Durability, Error, StoreOptions};

use crate::model::{
    Finish, JOB, Tally, Watermark, Workload, base_image, finish_and_check, measured_ops, output_of,
    prefix_of, run_incarnation, scale, with_context,
};

fn workload() -> Workload {
    Workload::standard(24 * scale())
}

/// Whether a read-only open of the same disk succeeds while `w`'s job is open for writing:
/// the writer admits live readers (redb's `SingleWriter` mode) exactly then.
fn live_readers_admitted(w: &Workload, options: resumable::JobOptions) -> bool {
    let disk = FaultDisk::from_image(base_image(w));
    let store = w.store_options().open_on(&disk).unwrap();
    let _job = store.job::<Tally>(JOB, options).unwrap();
    // A live reader as the CLI's read commands open one (`StoreOptions::open_on` always
    // opens a writer, so redb is asked directly).
    match redb::Database::builder()
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .open_read_only_with_backend(disk.backend())
    {
        Ok(_) => true,
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => false,
        Err(e) => panic!("live-reader open beside a writer: {e:?}"),
    }
}

#[test]
fn the_sweeps_run_in_the_products_concurrency_modes() {
    // The product's default writer has the file to itself until a reader knocks (there is
    // no knock on a simulated disk), so the sweeps run in that mode...
    let w = workload();
    assert!(
        !live_readers_admitted(&w, w.options()),
        "the swept job (grouped, immediate durability) must run in exclusive mode, as the product's unwatched writer does"
    );
    // ...and the live-reader sweep in the mode a knock switches it to.
    let live = workload().in_mode(resumable::Concurrency::LiveReaders);
    assert!(
        live_readers_admitted(&live, live.options()),
        "the live-reader sweep must admit live readers"
    );
    let deferred =
        w.options()
            .commit_policy(CommitPolicy::new().max_group_records(1_000_000).durability(
                Durability::Deferred {
                    max_interval: std::time::Duration::from_hours(1),
                },
            ));
    assert!(
        !live_readers_admitted(&w, deferred),
        "a deferred-durability job runs in exclusive mode, as the product does"
    );
    println!(
        "concurrency mode: grouped immediate job = exclusive (live readers in the live-reader sweep); deferred job = exclusive"
    );
}

/// The loss models of a power loss (every model but `KeepAll`, which is a second kill).
const POWER_LOSS: [LossModel; 5] = [
    LossModel::DropAll,
    LossModel::Prefix,
    LossModel::Subset,
    LossModel::TornBytes,
    LossModel::TornSectors,
];

#[test]
fn process_kill_then_power_loss_during_recovery() {
    let started = Instant::now();
    let w = workload();
    let base = base_image(&w);
    let total = measured_ops(&base, &w);
    let (mut cases, mut prefixes, mut carried) = (0u64, 0u64, 0u64);
    for at_op in 1..=total {
        let disk = FaultDisk::from_image(base.clone());
        disk.arm(at_op, Fault::Crash);
        let inc = run_incarnation(&disk, &w, false);
        assert!(disk.crashed(), "crash op {at_op} did not fire");
        let mut mark = Watermark::default();
        mark.after(&inc);
        carried += u64::from(disk.pending_ops() > 0);
        // The recovery after the kill: every op of it, until it runs to the end.
        let recovery_ops = measured_ops_after_kill(&disk, &w);
        for j in 1..=recovery_ops.min(24 * scale()) {
            let disk2 = disk.after_process_kill();
            disk2.arm(j, Fault::Crash);
            let inc2 = run_incarnation(&disk2, &w, false);
            assert!(
                disk2.crashed(),
                "crash op {at_op}, second crash op {j}: did not fire"
            );
            let mut mark2 = mark;
            with_context(
                || format!("crash op {at_op} (process kill), second crash op {j}"),
                || mark2.after(&inc2),
            );
            for (m, model) in POWER_LOSS.into_iter().enumerate() {
                let seed = at_op << 32 | j << 8 | m as u64;
                let mut mark3 = mark2;
                with_context(
                    || {
                        format!(
                            "crash op {at_op} (process kill), second crash op {j}, loss model {model:?}, seed {seed}"
                        )
                    },
                    || {
                        finish_and_check(
                            disk2.crash_image(model, seed),
                            &w,
                            &mut mark3,
                            if seed.is_multiple_of(11) {
                                Finish::Resume
                            } else {
                                Finish::Observe
                            },
                        );
                    },
                );
                cases += 1;
            }
            let pending = disk2.pending_ops();
            for kept in 0..=pending {
                let mut mark3 = mark2;
                with_context(
                    || {
                        format!(
                            "crash op {at_op} (process kill), second crash op {j}, loss model Prefix keeping {kept} of {pending}"
                        )
                    },
                    || {
                        finish_and_check(
                            disk2.crash_image_prefix(kept),
                            &w,
                            &mut mark3,
                            Finish::Observe,
                        );
                    },
                );
                prefixes += 1;
            }
        }
    }
    println!(
        "process kill then power loss: {total} first crash points ({carried} left unsynced writes carried into the recovery) \
         x every recovery op (at most {}): {cases} power-loss images (5 models) + {prefixes} enumerated prefixes, 0 failures, {:.1} s",
        24 * scale(),
        started.elapsed().as_secs_f64()
    );
    assert!(cases > 0);
}

/// Ops of a fault-free recovery on the disk a kill left.
fn measured_ops_after_kill(disk: &FaultDisk, w: &Workload) -> u64 {
    let d = disk.after_process_kill();
    let inc = run_incarnation(&d, w, false);
    assert!(
        inc.finished,
        "recovery after a kill failed: {:?}",
        inc.error
    );
    d.ops()
}

/// Open, check, export, verify and resume to the end on `disk`; the first error is returned.
/// Any data read back must match the model.
fn read_path(disk: &FaultDisk, w: &Workload) -> Result<(), Error> {
    // No page cache in redb, so every page read reaches the disk.
    let store = StoreOptions::new().cache_bytes(0).open_on(disk)?;
    let mut job = store.job::<Tally>(JOB, w.options())?;
    let g = prefix_of(&job, w).unwrap_or_else(|m| panic!("{m}"));
    assert_eq!(
        job.state(),
        w.state_after(g),
        "a read error gave a wrong state"
    );
    let mut n = 0;
    store.for_each_output(JOB, 0..u64::MAX, |o| {
        let out = o.decode::<Vec<u8>>()?;
        assert_eq!(out, output_of(o.id), "a read error gave a wrong output");
        n += 1;
        Ok(true)
    })?;
    let report = job.verify()?;
    assert!(report.is_ok(), "verify: {:?}", report.problems);
    for group in &w.groups[g..] {
        job.commit(group.iter().map(|&id| (id, output_of(id))))?;
    }
    if job.lifecycle() != resumable::JobState::Completed {
        job.complete()?;
    }
    assert_eq!(job.state(), w.final_state());
    let _ = n;
    Ok(())
}

#[test]
fn eio_at_every_read_of_open_resume_verify_and_export_is_a_typed_io_error() {
    let started = Instant::now();
    let w = workload();
    // A store half done: open, resume, verify and export all have something to read.
    let disk = FaultDisk::from_image(base_image(&w));
    disk.arm(measured_ops(&base_image(&w), &w) / 2, Fault::Crash);
    let _ = run_incarnation(&disk, &w, false);
    let image = disk.crash_image(LossModel::KeepAll, 0);
    let clean = FaultDisk::from_image(image.clone());
    let at_start = {
        let store = StoreOptions::new()
            .open_on(&FaultDisk::from_image(image.clone()))
            .unwrap();
        let job = store.job::<Tally>(JOB, w.options()).unwrap();
        prefix_of(&job, &w).unwrap()
    };
    read_path(&clean, &w).unwrap();
    let reads = clean.reads();
    let (mut io, mut absorbed, mut other) = (0u64, 0u64, Vec::new());
    for at_read in 1..=reads {
        let disk = FaultDisk::from_image(image.clone());
        disk.arm_read_error(at_read);
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_path(&disk, &w)));
        let Ok(outcome) = outcome else {
            panic!("read error at read {at_read} of {reads}: a panic");
        };
        match outcome {
            Ok(()) => absorbed += 1,
            Err(Error::Io(_)) => io += 1,
            Err(e) => other.push((at_read, format!("{e:?}"))),
        }
        assert!(
            disk.read_error_fired() || at_read > disk.reads(),
            "read {at_read} not reached"
        );
        // The store on the medium is untouched by a read error: a clean reopen passes.
        // A read error loses nothing that was there, and what the resume committed before
        // it is there or not (its last group may be in flight).
        let mut mark = Watermark {
            acked: at_start,
            known: w.groups.len(),
            ..Watermark::default()
        };
        with_context(
            || format!("after a read error at read {at_read}"),
            || finish_and_check(disk.live_image(), &w, &mut mark, Finish::Observe),
        );
    }
    println!(
        "read errors: EIO at each of {reads} reads of open + resume + export + verify: {io} typed Io, \
         {absorbed} absorbed (read again or not needed), {} other: {other:?}; 0 panics, 0 wrong data; {:.1} s",
        other.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        other.is_empty(),
        "read errors surfaced as other variants: {other:?}"
    );
}

/// Linux's "fsyncgate" at every op: a failed `sync_data` drops the pending writes for
/// good while reads (the page cache) still show them. The handle must be poisoned; the
/// failing process leaves a marker beside the store, so a process that reopens the store on
/// that page cache is refused with `SyncFailed` instead of taking the failed commit for
/// durable; `after_sync_failure` (what `resumable recover` runs) drops the cached pages and
/// reopens what the medium holds: no group the medium lacks is reported done or durable.
/// Then the job runs on and the machine loses power at every 3rd op: nothing acknowledged
/// is lost.
#[test]
fn fsyncgate_failed_sync_poisons_refuses_reopen_and_recovery_reads_the_medium() {
    let started = Instant::now();
    let w = workload();
    let base = base_image(&w);
    let total = measured_ops(&base, &w);
    let (mut syncs, mut cases, mut marked) = (0u64, 0u64, 0u64);
    let mut failures: Vec<String> = Vec::new();
    for at_op in 1..=total {
        let disk = FaultDisk::from_image(base.clone());
        disk.arm(at_op, Fault::SyncDropsPages);
        let inc = run_incarnation(&disk, &w, false);
        assert!(disk.fired());
        let Some(err) = &inc.error else { continue };
        syncs += 1;
        assert!(
            matches!(err, Error::Io(_) | Error::Poisoned),
            "op {at_op}: {err:?}"
        );
        for later in &inc.later_errors {
            assert!(
                matches!(later, Error::Poisoned),
                "op {at_op}: after {err:?}: {later:?}"
            );
        }
        let mut mark = Watermark::default();
        mark.after(&inc);
        // The process restarts on the same page cache (which shows the dropped writes) and
        // runs on; then the machine loses power at each later op.
        let reopened = disk.after_process_kill();
        // A failed sync left the marker: a plain reopen on the page cache is refused, and
        // the recovery (as `resumable recover` runs it) drops the cached pages and clears it.
        if reopened.sync_failure_marker().is_some() {
            marked += 1;
            match StoreOptions::new().open_on(&reopened.after_process_kill()) {
                Err(Error::SyncFailed { .. }) => {}
                Err(e) => panic!("op {at_op}: a reopen after a failed sync: {e:?}"),
                Ok(_) => panic!("op {at_op}: a reopen after a failed sync was not refused"),
            }
            drop(
                StoreOptions::new()
                    .after_sync_failure(true)
                    .open_on(&reopened)
                    .unwrap_or_else(|e| panic!("op {at_op}: recovery after a failed sync: {e:?}")),
            );
            assert!(
                reopened.sync_failure_marker().is_none(),
                "op {at_op}: recovery left the marker"
            );
        }
        // The reopen must not call a group done (durable) that the medium does not hold (a
        // group the medium holds may be reported: its commit was durable though the call
        // failed after the sync).
        {
            let on_medium = {
                let store = StoreOptions::new()
                    .open_on(&FaultDisk::from_image(disk.durable_image()))
                    .unwrap();
                let job = store.job::<Tally>(JOB, w.options()).unwrap();
                prefix_of(&job, &w).unwrap()
            };
            let store = StoreOptions::new()
                .open_on(&reopened.after_process_kill())
                .unwrap();
            let job = store.job::<Tally>(JOB, w.options()).unwrap();
            let g = prefix_of(&job, &w).unwrap();
            if g > on_medium {
                let durable: Vec<u64> = w.groups[on_medium..g]
                    .iter()
                    .flatten()
                    .copied()
                    .filter(|&id| job.is_durable(id))
                    .collect();
                failures.push(format!("failed sync at op {at_op}: the reopen on the page cache reports {} groups done that the medium does not hold, ids {durable:?} durable", g - on_medium));
            }
        }
        let ops2 = {
            let d = reopened.after_process_kill();
            let inc2 = run_incarnation(&d, &w, false);
            assert!(
                inc2.finished,
                "op {at_op}: the run after a failed sync: {:?}",
                inc2.error
            );
            d.ops()
        };
        for j in (1..=ops2).step_by(3) {
            let d = reopened.after_process_kill();
            d.arm(j, Fault::Crash);
            let inc2 = run_incarnation(&d, &w, false);
            let mut mark2 = mark;
            mark2.after(&inc2);
            with_context(
                || format!("failed sync at op {at_op}, reopen, power loss at op {j} (DropAll)"),
                || {
                    finish_and_check(
                        d.crash_image(LossModel::DropAll, 0),
                        &w,
                        &mut mark2,
                        Finish::Observe,
                    );
                },
            );
            cases += 1;
        }
    }
    println!(
        "fsyncgate: {total} ops armed, {syncs} failed a run, {marked} of them at a sync (marker left, \
         reopen refused, recovered from the medium); {cases} reopen-then-power-loss cases; {} failures; {:.1} s",
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    for f in failures.iter().take(12) {
        println!("  {f}");
    }
    assert!(
        marked > 0,
        "no failed sync left its marker: the scenario never hit a sync"
    );
    assert!(failures.is_empty());
}
