//! Operator commands crashed at every I/O op: `rewind`, `requeue`, `pin`, `unpin` and
//! `compact` on a store whose job has commits after its progress mark (so the open rebuilds
//! progress from the tail), snapshots, and dead letters; each command is crashed at every
//! mutating op of its run under every loss model, and the reopened store is compared with
//! the store before and after the command.
//!
//! Proves: each command is all-or-nothing: after a crash the store equals either the
//! before or the after model (status, snapshots and pins, dead letters, every output with
//! its commit), passes `verify` and redb's integrity check, and the job resumes to the end.
//! (`fork` writes a new file through a temporary path, `tests/crash/creation.rs`' ground;
//! `redo` is swept in its own file.)

use std::time::Instant;

use resumable::testing::{Fault, FaultDisk, LossModel};
use resumable::{Store, StoreOptions};

use crate::model::{JOB, Tally, Workload, base_image, fingerprint, output_of, scale, with_context};

/// The store the commands run on: two thirds of the groups committed, a dead letter after
/// every 4th group, snapshots every 3 commits (keep 2), progress written every 2 commits.
fn prepared(w: &Workload) -> Vec<u8> {
    let disk = FaultDisk::from_image(base_image(w));
    {
        let store = StoreOptions::new().open_on(&disk).unwrap();
        let mut job = store.job::<Tally>(JOB, w.options()).unwrap();
        let upto = w.groups.len() * 2 / 3;
        for (g, group) in w.groups[..upto].iter().enumerate() {
            if g % 4 == 3 {
                job.dead_letter(1_000_000 + g as u64, 3, "permanent: bad record")
                    .unwrap();
            }
            job.commit(group.iter().map(|&id| (id, output_of(id))))
                .unwrap();
        }
    }
    disk.live_image()
}

/// Opens `image`, checks it, and returns its fingerprint.
fn check(image: Vec<u8>, w: &Workload) -> String {
    let disk = FaultDisk::from_image(image);
    let store = StoreOptions::new().open_on(&disk).expect("reopen");
    let print = fingerprint(&store);
    store.check_integrity().expect("integrity");
    {
        let job = store.job::<Tally>(JOB, w.options()).expect("job");
        let report = job.verify().expect("verify");
        assert!(report.is_ok(), "verify: {:?}", report.problems);
    }
    // And the job runs on to the end.
    let mut job = store.job::<Tally>(JOB, w.options()).expect("job");
    for group in &w.groups {
        job.commit(group.iter().map(|&id| (id, output_of(id))))
            .expect("resume");
    }
    print
}

type Command = (&'static str, fn(&Store, &[u64]) -> resumable::Result<()>);

const COMMANDS: [Command; 5] = [
    ("rewind", |s, g| s.rewind(JOB, g[0]).map(drop)),
    ("requeue", |s, _| s.requeue(JOB, None).map(drop)),
    ("pin", |s, g| s.pin(JOB, g[g.len() - 1]).map(drop)),
    ("unpin", |s, g| s.unpin(JOB, g[0]).map(drop)),
    ("compact", |s, _| s.compact().map(drop)),
];

#[test]
fn operator_commands_crashed_at_every_op_are_all_or_nothing() {
    let started = Instant::now();
    let w = Workload::standard(30 * scale());
    let prepared = prepared(&w);
    let mut summary = Vec::new();
    for (name, command) in COMMANDS {
        // `unpin` needs a pinned snapshot first.
        let start = if name == "unpin" {
            let disk = FaultDisk::from_image(prepared.clone());
            let store = StoreOptions::new().open_on(&disk).unwrap();
            let gens: Vec<u64> = store
                .snapshots(JOB)
                .unwrap()
                .iter()
                .map(|s| s.generation)
                .collect();
            store.pin(JOB, gens[0]).unwrap();
            drop(store);
            disk.live_image()
        } else {
            prepared.clone()
        };
        let gens: Vec<u64> = {
            let disk = FaultDisk::from_image(start.clone());
            let store = StoreOptions::new().open_on(&disk).unwrap();
            store
                .snapshots(JOB)
                .unwrap()
                .iter()
                .map(|s| s.generation)
                .collect()
        };
        assert!(!gens.is_empty(), "the prepared store holds snapshots");
        let before = check(start.clone(), &w);
        let (after, total) = {
            let disk = FaultDisk::from_image(start.clone());
            let store = StoreOptions::new().open_on(&disk).unwrap();
            disk.reset_op_count();
            command(&store, &gens).unwrap_or_else(|e| panic!("{name}: {e}"));
            let total = disk.ops();
            drop(store);
            (check(disk.live_image(), &w), total)
        };
        if name == "compact" {
            // Compaction moves pages, not data: before and after look the same.
            assert_eq!(before, after, "compaction changed what the store holds");
        } else {
            assert_ne!(before, after, "{name} changed nothing");
        }
        let (mut as_before, mut as_after) = (0u64, 0u64);
        for at_op in 1..=total {
            let disk = FaultDisk::from_image(start.clone());
            let store = StoreOptions::new().open_on(&disk).unwrap();
            disk.reset_op_count();
            disk.arm(at_op, Fault::Crash);
            let _ = command(&store, &gens);
            assert!(disk.crashed(), "{name}: crash op {at_op} did not fire");
            drop(store);
            for (m, model) in LossModel::ALL.into_iter().enumerate() {
                let seed = at_op * 8 + m as u64;
                let observed = with_context(
                    || {
                        format!(
                            "{name}: crash op {at_op}/{total}, loss model {model:?}, seed {seed}"
                        )
                    },
                    || check(disk.crash_image(model, seed), &w),
                );
                if observed == before {
                    as_before += 1;
                } else if observed == after {
                    as_after += 1;
                } else {
                    panic!(
                        "{name}: crash op {at_op}, loss model {model:?}, seed {seed}: the store is neither before nor after:\n{observed}\nbefore:\n{before}\nafter:\n{after}"
                    );
                }
            }
        }
        summary.push(format!(
            "{name} {total} ops: {as_before} before / {as_after} after"
        ));
    }
    println!(
        "operator commands: every op x 6 loss models, each store equal to the before or the after model: {}; {:.1} s",
        summary.join("; "),
        started.elapsed().as_secs_f64()
    );
}
