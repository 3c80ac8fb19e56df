//! Crash sweep over `Store::redo` on the simulated disk: all or nothing.
//!
//! A completed job (ids `0..40` in scrambled groups of 3, every fifth id dead-lettered, a
//! snapshot every 2 commits, progress marks every 3, so the redo has a tail to fold in,
//! snapshots to retire and dead letters to delete) is redone over ids `10..25`, crashed at
//! every mutating I/O operation of the redo (including the store open) under all six loss
//! models. Each crash image is reopened and must be exactly one of the two stores: the one
//! before the redo (same lineage head, every id done) or the one after it (head one redo
//! entry further, ids `10..25` pending, their dead letters gone). Either way `verify`
//! passes, the state equals the fold of the outputs that remain, and resuming the job to the
//! end gives the fault-free outputs and state. Counts print with `--nocapture`.

use resumable::testing::{Fault, FaultDisk, LossModel};
use resumable::{CommitPolicy, Fold, JobOptions, JobState, RedoSelection, Store, StoreOptions};
use serde::{Deserialize, Serialize};

const JOB: &str = "redo";
const N: u64 = 40;
const REDONE: std::ops::Range<u64> = 10..25;

#[derive(Default, Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Sum {
    total: u64,
    count: u64,
}

impl Fold for Sum {
    type Output = u64;
    fn apply(&mut self, _id: u64, v: &u64) {
        self.total += v;
        self.count += 1;
    }
}

fn options() -> JobOptions {
    JobOptions::new()
        .commit_policy(CommitPolicy::new().max_group_records(3))
        .snapshot_every_commits(2)
        .progress_every_commits(3)
        .keep_snapshots(4)
        .total_records(N)
}

fn is_dead(id: u64) -> bool {
    id.is_multiple_of(5)
}

fn output(id: u64) -> u64 {
    id * 7 + 1
}

fn sum_of(ids: impl Iterator<Item = u64>) -> Sum {
    let mut s = Sum::default();
    for id in ids.filter(|&id| !is_dead(id)) {
        s.apply(id, &output(id));
    }
    s
}

/// Submits the ids not done yet, in a scrambled order, and completes the job.
fn finish(store: &Store) {
    let mut job = store.job::<Sum>(JOB, options()).unwrap();
    for k in 0..N {
        let id = (k * 17) % N;
        if job.is_done(id) {
            continue;
        }
        if is_dead(id) {
            job.dead_letter(id, 1, "boom").unwrap();
        } else {
            job.submit(id, output(id)).unwrap();
        }
    }
    job.flush().unwrap();
    if job.lifecycle() != JobState::Completed {
        job.complete().unwrap();
    }
}

fn base_image() -> Vec<u8> {
    let disk = FaultDisk::new();
    {
        let store = StoreOptions::new().open_on(&disk).unwrap();
        finish(&store);
    }
    disk.live_image()
}

fn redo_on(disk: &FaultDisk) -> resumable::Result<()> {
    let store = StoreOptions::new().open_on(disk)?;
    store
        .redo(JOB, &RedoSelection::Range(REDONE), "sweep", false)
        .map(|_| ())
}

/// Which of the two stores a reopened image is.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Found {
    Before,
    After,
}

fn check(image: Vec<u8>, head_before: &str, head_after: &str, finals: &[(u64, u64)]) -> Found {
    let disk = FaultDisk::from_image(image);
    let store = StoreOptions::new().open_on(&disk).expect("reopens");
    let head = store.lineage_head(JOB).unwrap();
    let found = if head.to_string() == head_before {
        Found::Before
    } else {
        // The redo entry carries its time, so each run's head differs: check its shape.
        let (seq_after, _) = head_after.split_once(':').unwrap();
        assert_eq!(
            head.seq.to_string(),
            seq_after,
            "neither before nor after the redo"
        );
        let entry = &store.lineage(JOB, head.seq, 1).unwrap()[0];
        assert_eq!(
            format!("{}:{}", head.seq - 1, entry.prev_hash),
            head_before,
            "the redo entry follows the old head"
        );
        let redo = entry.redo.as_ref().expect("the new entry is the redo");
        assert_eq!(
            redo.selection,
            format!("--range {}..{}", REDONE.start, REDONE.end)
        );
        Found::After
    };
    let report = store.verify_job(JOB).unwrap();
    assert!(report.is_ok(), "{found:?}: {report:?}");
    let done: Vec<u64> = (0..N)
        .filter(|&id| store.done_ranges(JOB).unwrap().contains(id))
        .collect();
    let dead: Vec<u64> = store
        .dead_letters(JOB)
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    let remaining: Vec<u64> = match found {
        Found::Before => (0..N).collect(),
        Found::After => (0..N).filter(|id| !REDONE.contains(id)).collect(),
    };
    assert_eq!(done, remaining, "{found:?}: done ids");
    let dead_expected: Vec<u64> = remaining
        .iter()
        .copied()
        .filter(|&id| is_dead(id))
        .collect();
    assert_eq!(dead, dead_expected, "{found:?}: dead letters");
    {
        let job = store.job::<Sum>(JOB, options()).unwrap();
        assert_eq!(
            *job.state(),
            sum_of(remaining.iter().copied()),
            "{found:?}: state"
        );
        let report = job.verify().unwrap();
        assert!(
            report.is_ok() && report.state_replayed,
            "{found:?}: {report:?}"
        );
    }
    finish(&store);
    let mut outputs = Vec::new();
    store
        .for_each_output(JOB, 0..N, |o| {
            outputs.push((o.id, o.decode::<u64>()?));
            Ok(true)
        })
        .unwrap();
    assert_eq!(outputs, finals, "{found:?}: outputs after resuming");
    let job = store.job::<Sum>(JOB, options()).unwrap();
    assert_eq!(*job.state(), sum_of(0..N), "{found:?}: final state");
    found
}

#[test]
fn redo_is_all_or_nothing_at_every_crash_point_and_loss_model() {
    let base = base_image();
    let finals: Vec<(u64, u64)> = (0..N)
        .filter(|&id| !is_dead(id))
        .map(|id| (id, output(id)))
        .collect();
    let head_before = {
        let disk = FaultDisk::from_image(base.clone());
        let store = StoreOptions::new().open_on(&disk).unwrap();
        store.lineage_head(JOB).unwrap().to_string()
    };
    let (ops, head_after) = {
        let disk = FaultDisk::from_image(base.clone());
        disk.reset_op_count();
        redo_on(&disk).expect("fault-free redo");
        let ops = disk.ops();
        let store = StoreOptions::new().open_on(&disk).unwrap();
        (ops, store.lineage_head(JOB).unwrap().to_string())
    };
    assert_ne!(head_before, head_after);
    assert_eq!(
        check(base.clone(), &head_before, &head_after, &finals),
        Found::Before
    );
    let (mut before, mut after) = (0u64, 0u64);
    for at_op in 1..=ops {
        let disk = FaultDisk::from_image(base.clone());
        disk.reset_op_count();
        disk.arm(at_op, Fault::Crash);
        let result = redo_on(&disk);
        assert!(disk.crashed(), "crash at op {at_op} of {ops} did not fire");
        // A crash while the store closes comes after the redo returned.
        drop(result);
        for (m, model) in LossModel::ALL.into_iter().enumerate() {
            let image = disk.crash_image(model, at_op * 8 + m as u64);
            match check(image, &head_before, &head_after, &finals) {
                Found::Before => before += 1,
                Found::After => after += 1,
            }
        }
    }
    println!("redo sweep: {ops} crash points x 6 loss models: {before} before, {after} after");
    assert!(after > 0, "some crash images hold the finished redo");
    assert!(before > 0, "some crash images lose it");
}
