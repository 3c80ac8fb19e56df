//! Crash sweep of the background maintainer (issue 15, item 2).
//!
//! A job on the simulated disk ([`FaultDisk`]) hands its snapshots to the maintainer's
//! worker (`Job::hand_off_snapshots`, as `Runner` does) and, after every commit, hands it the
//! encoded state: the worker writes the snapshot and retires the old ones in one transaction
//! (no fsync of its own), then compacts, since both compaction thresholds are zero. The worker
//! is driven on the test's thread, one `Worker::handle` call per hand-off (the code the
//! maintainer thread runs for each piece of work), so every I/O op happens in the same order
//! in every run and can be crashed.
//!
//! The sweep crashes the run at **every** mutating op (snapshot-and-retire transaction,
//! the committer's durable commit after it, `Store::compact`) under every loss model, and
//! then crashes the recovery again at a drawn op, as the main sweep does.
//!
//! Proves, after each reopen: the store holds the newest snapshot it ever durably held (or a
//! newer one), and that snapshot is valid; every acknowledged group is present once with its
//! output and nothing half-present; the state is the fold of what is present; `verify` and
//! redb's integrity check pass; and a resume ends equal to a fault-free run. A failure names
//! the crash op, the phase it hit, the loss model, the seed and the second crash op.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{MaintainOptions, Shared, Work, Worker};
use crate::testing::{Fault, FaultDisk, LossModel};
use crate::{CommitPolicy, Fold, Job, JobOptions, Store, StoreOptions};

const JOB: &str = "maintained";
/// Unpinned snapshots kept, so nearly every snapshot transaction retires one.
const KEEP: usize = 2;

/// A state whose fields catch a record applied twice or lost (`count`), a wrong output
/// (`sum`) and a fold in the wrong order (`order`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Tally {
    count: u64,
    sum: u64,
    order: u64,
}

impl Fold for Tally {
    type Output = Vec<u8>;

    fn apply(&mut self, id: u64, output: &Vec<u8>) {
        self.count += 1;
        self.sum = self
            .sum
            .wrapping_add(output.iter().map(|&b| u64::from(b)).sum::<u64>());
        self.order = self
            .order
            .wrapping_mul(0x100_0000_01b3)
            .wrapping_add(id ^ output.len() as u64);
    }
}

/// 8 to 71 bytes that depend on the id: a value moved to another key or cut short is caught.
fn output_of(id: u64) -> Vec<u8> {
    let len = 8 + (id.wrapping_mul(0x9E37_79B9) % 64) as usize;
    (0..len)
        .map(|i| (id.wrapping_mul(31).wrapping_add(i as u64 * 7) % 251) as u8)
        .collect()
}

/// `RESUMABLE_CRASH_SCALE` (default 1), as the integration crash suite reads it.
fn scale() -> u64 {
    std::env::var("RESUMABLE_CRASH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1u64)
        .max(1)
}

/// Groups of consecutive ids (sizes cycle 1, 3, 2), committed in order; `states[g]` is the
/// fold after the first `g` groups.
struct Workload {
    groups: Vec<Vec<u64>>,
    states: Vec<Tally>,
}

impl Workload {
    fn new(groups: usize) -> Self {
        let mut next = 0u64;
        let mut out = Vec::new();
        let mut states = vec![Tally::default()];
        for g in 0..groups {
            let size = [1u64, 3, 2][g % 3];
            let group: Vec<u64> = (next..next + size).collect();
            next += size;
            let mut state = states[g].clone();
            for &id in &group {
                state.apply(id, &output_of(id));
            }
            states.push(state);
            out.push(group);
        }
        Workload {
            groups: out,
            states,
        }
    }

    /// Records in the first `g` groups.
    fn records_in(&self, g: usize) -> usize {
        self.groups[..g].iter().map(Vec::len).sum()
    }
}

fn job_options() -> JobOptions {
    JobOptions::new()
        .commit_policy(CommitPolicy::new().max_group_records(1_000_000))
        // The maintainer writes every snapshot; the commit path none.
        .snapshot_every_commits(0)
        .keep_snapshots(KEEP)
        .progress_every_commits(2)
}

fn maintain_options() -> MaintainOptions {
    MaintainOptions::new()
        .snapshot_every_commits(1)
        .keep_snapshots(KEEP)
        .compact_free_ratio(0.0)
        .compact_min_freed_bytes(0)
}

/// Where a crash landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Opening the store and the job (the recovery).
    Open,
    /// The committer's durable group commit (after the previous snapshot transaction).
    Commit,
    /// The maintainer's snapshot-and-retire transaction.
    Snapshot,
    /// The maintainer's `Store::compact`.
    Compact,
    /// Completing the job and closing the store.
    Close,
}

/// The newest valid snapshot (generation, seq) the store holds.
fn newest_snapshot(store: &Store) -> Option<(u64, u64)> {
    store
        .snapshots(JOB)
        .ok()?
        .iter()
        .filter(|s| s.valid)
        .filter_map(|s| Some((s.generation, s.seq?)))
        .max()
}

/// What one incarnation did before its crash (or the end).
#[derive(Debug, Default)]
struct Incarnation {
    /// Groups present at the open (`None`: the open failed).
    started: Option<usize>,
    /// Groups acknowledged durable.
    acked: usize,
    /// Whether a group commit was in flight when the crash hit.
    in_flight: bool,
    /// The newest snapshot (generation, seq) known to be on the medium.
    durable_snapshot: Option<(u64, u64)>,
    /// Where the crash landed, if it did.
    crashed_in: Option<Phase>,
    finished: bool,
    snapshots: u64,
    compactions: u64,
}

/// The number of groups the job's progress holds, if it is a prefix of whole groups.
fn prefix_of(job: &Job<Tally>, w: &Workload) -> Result<usize, String> {
    let done: Vec<u64> = job.progress().ranges().flatten().collect();
    let g = (0..=w.groups.len())
        .find(|&g| w.records_in(g) == done.len())
        .ok_or_else(|| {
            format!(
                "{} records done: no prefix of groups has that many",
                done.len()
            )
        })?;
    let expected: Vec<u64> = (0..w.records_in(g) as u64).collect();
    if done != expected {
        return Err(format!(
            "done set is not a prefix of whole groups: {done:?}"
        ));
    }
    Ok(g)
}

/// Opens the store on `disk`, resumes, and commits the remaining groups, handing the state
/// to the maintainer's worker after each commit; stops at the first failure.
fn run(disk: &FaultDisk, w: &Workload) -> Incarnation {
    let mut inc = Incarnation::default();
    let crashed = |inc: &mut Incarnation, phase| {
        if disk.crashed() && inc.crashed_in.is_none() {
            inc.crashed_in = Some(phase);
        }
    };
    let Ok(store) = StoreOptions::new().open_on(disk) else {
        crashed(&mut inc, Phase::Open);
        return inc;
    };
    let Ok(mut job) = store.job::<Tally>(JOB, job_options()) else {
        crashed(&mut inc, Phase::Open);
        return inc;
    };
    let start = prefix_of(&job, w).unwrap_or_else(|m| panic!("{m}"));
    inc.started = Some(start);
    inc.acked = start;
    // What the open found was read from the medium.
    inc.durable_snapshot = newest_snapshot(&store);
    let mut worker = Worker {
        writer: job.hand_off_snapshots(KEEP),
        job: JOB.to_owned(),
        options: maintain_options(),
        shared: Arc::new(Shared::default()),
        freed_bytes: 0,
    };
    let mut written: Option<(u64, u64)> = None;
    for (g, group) in w.groups.iter().enumerate().skip(start) {
        inc.in_flight = true;
        let committed = {
            let _gate = worker.shared.gate.lock();
            job.commit(group.iter().map(|&id| (id, output_of(id))))
        };
        match committed {
            Ok(Some(receipt)) if receipt.durable => {
                inc.acked = g + 1;
                inc.in_flight = false;
            }
            Ok(other) => panic!("group {g}: no durable receipt: {other:?}"),
            Err(_) => {
                crashed(&mut inc, Phase::Commit);
                return inc;
            }
        }
        // The durable commit carried the snapshot written before it.
        if disk.unsynced_data_writes() == 0 && written > inc.durable_snapshot {
            inc.durable_snapshot = written;
        }
        let (seq, state) = job.encoded_state().unwrap_or_else(|e| panic!("{e}"));
        let before = worker.shared.report.lock().clone();
        worker.handle(Work::Snapshot { seq, state });
        let after = worker.shared.report.lock().clone();
        if after.snapshots > before.snapshots {
            inc.snapshots += 1;
            written = after.last_generation.map(|generation| (generation, seq));
            if disk.unsynced_data_writes() == 0 && !disk.crashed() {
                inc.durable_snapshot = written;
            }
        }
        inc.compactions += after.compactions - before.compactions;
        if after.last_error.is_some() {
            let phase = if after.snapshots > before.snapshots {
                Phase::Compact
            } else {
                Phase::Snapshot
            };
            crashed(&mut inc, phase);
            assert!(
                disk.crashed(),
                "the maintainer failed without a crash: {:?}",
                after.last_error
            );
            return inc;
        }
    }
    job.take_back_snapshots();
    if job.lifecycle() != crate::JobState::Completed && job.complete().is_err() {
        crashed(&mut inc, Phase::Close);
        return inc;
    }
    assert_eq!(job.state(), &w.states[w.groups.len()], "final state");
    // The worker's writer shares the store: the file closes with the last of the three.
    drop(worker);
    drop(job);
    drop(store);
    crashed(&mut inc, Phase::Close);
    inc.finished = !disk.crashed();
    inc
}

/// Reopens `image` and checks it: groups in `floor..=ceiling`, each present once with its
/// output, the state the fold of them, a snapshot at least as new as `snapshot_floor`,
/// `verify` and the integrity check. Returns (groups, newest snapshot).
fn check(
    image: Vec<u8>,
    w: &Workload,
    floor: usize,
    ceiling: usize,
    snapshot_floor: Option<(u64, u64)>,
) -> (usize, Option<(u64, u64)>) {
    let disk = FaultDisk::from_image(image);
    let store = StoreOptions::new().open_on(&disk).expect("reopen");
    let job = store.job::<Tally>(JOB, job_options()).expect("job");
    let g = prefix_of(&job, w).unwrap_or_else(|m| panic!("{m}"));
    assert!(
        g >= floor && g <= ceiling,
        "found {g} groups; acknowledged {floor}, at most {ceiling} possible"
    );
    let mut stored = Vec::new();
    store
        .for_each_output(JOB, 0..u64::MAX, |o| {
            stored.push((o.id, o.decode::<Vec<u8>>()?));
            Ok(true)
        })
        .expect("outputs");
    assert_eq!(
        stored.len(),
        w.records_in(g),
        "outputs beside the done marks"
    );
    for (id, out) in &stored {
        assert_eq!(*out, output_of(*id), "output of record {id}");
    }
    assert_eq!(job.state(), &w.states[g], "state after {g} groups");
    let snaps = store.snapshots(JOB).expect("snapshots");
    let newest = newest_snapshot(&store);
    if let Some((generation, seq)) = snapshot_floor {
        assert!(
            snaps
                .iter()
                .any(|s| s.valid && s.generation >= generation && s.seq >= Some(seq)),
            "the store lost the newest snapshot it durably held (generation {generation}, \
             seq {seq}): {snaps:?}"
        );
    }
    let report = job.verify().expect("verify");
    assert!(report.is_ok(), "verify: {:?}", report.problems);
    store.check_integrity().expect("integrity");
    (g, newest)
}

/// Counts per loss model: images taken and checked.
#[derive(Default)]
struct Counts {
    per_model: [u64; 6],
    per_phase: [u64; 5],
    seconds: [u64; 6],
    second_crash_points: u64,
    /// Images checked against a snapshot known durable before the crash.
    with_snapshot_floor: u64,
}

#[test]
fn maintainer_and_compaction_crashed_at_every_op_keep_the_newest_durable_snapshot() {
    let started = Instant::now();
    let w = Workload::new(8 * scale() as usize);
    // A base image holding the created job, so crashes hit the work, not redb's `create`.
    let base = {
        let disk = FaultDisk::new();
        let store = StoreOptions::new().open_on(&disk).expect("create");
        drop(store.job::<Tally>(JOB, job_options()).expect("job"));
        drop(store);
        disk.live_image()
    };
    let free = FaultDisk::from_image(base.clone());
    let clean = run(&free, &w);
    assert!(clean.finished && clean.snapshots == w.groups.len() as u64);
    assert_eq!(clean.compactions, clean.snapshots, "thresholds at zero");
    let total = free.ops();
    let mut counts = Counts::default();
    for at_op in 1..=total {
        let disk = FaultDisk::from_image(base.clone());
        disk.arm(at_op, Fault::Crash);
        let first = run(&disk, &w);
        assert!(disk.crashed(), "crash op {at_op} of {total} did not fire");
        let phase = first
            .crashed_in
            .unwrap_or_else(|| panic!("crash op {at_op}/{total}: no phase: {first:?}"));
        counts.per_phase[phase as usize] += 1;
        for (m, model) in LossModel::ALL.into_iter().enumerate() {
            let seed = at_op * 8 + m as u64;
            let image = disk.crash_image(model, seed);
            let j = 1 + (seed * 7) % (24 * scale());
            let ctx = |second: &str| {
                format!(
                    "crash op {at_op}/{total} in {phase:?}, loss model {model:?}, seed {seed}{second}"
                )
            };
            let ceiling = first.acked + usize::from(first.in_flight);
            let (g, _) = with_context(
                || ctx(""),
                || {
                    check(
                        image.clone(),
                        &w,
                        first.acked,
                        ceiling,
                        first.durable_snapshot,
                    )
                },
            );
            counts.per_model[m] += 1;
            counts.with_snapshot_floor += u64::from(first.durable_snapshot.is_some());
            // A second crash, during the recovery and the work after it.
            let disk2 = FaultDisk::from_image(image);
            disk2.arm(j, Fault::Crash);
            let second = run(&disk2, &w);
            let image2 = if disk2.crashed() {
                counts.seconds[m] += 1;
                counts.second_crash_points += 1;
                disk2.crash_image(LossModel::ALL[(m + 1) % 6], seed ^ 0x55)
            } else {
                assert!(second.finished, "{}", ctx(", no second crash"));
                disk2.live_image()
            };
            let floor = first.acked.max(second.acked);
            let ceiling = g.max(second.acked + usize::from(second.in_flight));
            let snapshot_floor = first.durable_snapshot.max(second.durable_snapshot);
            with_context(
                || ctx(&format!(", second crash op {j}")),
                || {
                    check(image2.clone(), &w, floor, ceiling, snapshot_floor);
                    let fin = FaultDisk::from_image(image2);
                    assert!(run(&fin, &w).finished, "resume to the end");
                },
            );
        }
    }
    let models: Vec<String> = LossModel::ALL
        .iter()
        .enumerate()
        .map(|(m, model)| {
            format!(
                "{model:?} {} (+{} second crashes)",
                counts.per_model[m], counts.seconds[m]
            )
        })
        .collect();
    println!(
        "maintainer sweep: {} groups, {} snapshots and {} compactions per run, {total} ops; \
         {total} crash points that crashed (open {}, commit {}, snapshot transaction {}, \
         compaction {}, complete and close {}); images per loss model: {}; {} second crashes in all; {} first images held to a \
         snapshot known durable before the crash; {:.1} s",
        w.groups.len(),
        clean.snapshots,
        clean.compactions,
        counts.per_phase[Phase::Open as usize],
        counts.per_phase[Phase::Commit as usize],
        counts.per_phase[Phase::Snapshot as usize],
        counts.per_phase[Phase::Compact as usize],
        counts.per_phase[Phase::Close as usize],
        models.join(", "),
        counts.second_crash_points,
        counts.with_snapshot_floor,
        started.elapsed().as_secs_f64()
    );
}

/// Runs `f`; if it panics, panics again with `context` (what replays the case) in front.
fn with_context<T>(context: impl FnOnce() -> String, f: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("[{}] {msg}", context());
        }
    }
}
