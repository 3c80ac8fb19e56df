//! Property tests (proptest) of crashing runs against the model, on tiny jobs so that the
//! default 512 cases per property (`PROPTEST_CASES` for more) run in seconds.
//!
//! Proves: a crashing run resumed to the end equals the fault-free run; exactly-once holds
//! as a multiset (lost, duplicated and unexpected records reported separately); a record's
//! output and done mark are atomic; progress is monotone across repeated crashes; resuming
//! a finished job is idempotent; and random bit flips in snapshot values fall back to an
//! older snapshot (or a replay from empty) with the correct state, reported by `verify`.

use std::collections::BTreeMap;

use proptest::prelude::*;
use redb::ReadableTable;
use resumable::testing::{Fault, FaultDisk, LossModel};
use resumable::{JobState, StoreOptions};

use crate::model::{
    Finish, JOB, Tally, Watermark, Workload, base_image, finish_and_check, output_of,
    run_incarnation,
};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    ProptestConfig {
        cases,
        // Regressions go to proptest-regressions/ next to the crate root.
        ..ProptestConfig::default()
    }
}

/// A tiny workload: up to 10 records with distinct ids, groups of 1 to 4.
fn workload() -> impl Strategy<Value = Workload> {
    (
        proptest::collection::btree_set(0u64..1_000, 1..10),
        proptest::collection::vec(1usize..5, 10),
        0u64..4,
        1usize..3,
    )
        .prop_map(|(ids, sizes, every, keep)| {
            let ids: Vec<u64> = ids.into_iter().rev().collect();
            let mut groups = Vec::new();
            let mut rest = &ids[..];
            let mut k = 0;
            while !rest.is_empty() {
                let n = sizes[k % sizes.len()].min(rest.len());
                groups.push(rest[..n].to_vec());
                rest = &rest[n..];
                k += 1;
            }
            Workload::new(groups, every, keep)
        })
}

fn model() -> impl Strategy<Value = LossModel> {
    (0..LossModel::ALL.len()).prop_map(|i| LossModel::ALL[i])
}

/// Crashes a fresh run of `w` at `at_op`; returns the image and the watermark.
fn crash(w: &Workload, at_op: u64, model: LossModel, seed: u64) -> Option<(Vec<u8>, Watermark)> {
    let disk = FaultDisk::from_image(base_image(w));
    disk.arm(at_op, Fault::Crash);
    let inc = run_incarnation(&disk, w, false);
    if !disk.crashed() {
        return None;
    }
    let mut mark = Watermark::default();
    mark.after(&inc);
    Some((disk.crash_image(model, seed), mark))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn crashing_run_resumed_equals_the_fault_free_run(
        w in workload(), at_op in 1u64..120, m in model(), seed in any::<u64>()
    ) {
        if let Some((image, mut mark)) = crash(&w, at_op, m, seed) {
            finish_and_check(image, &w, &mut mark, Finish::ResumeAndReopen);
        }
    }

    #[test]
    fn exactly_once_as_a_multiset(
        w in workload(), at_op in 1u64..120, m in model(), seed in any::<u64>()
    ) {
        let Some((image, mark)) = crash(&w, at_op, m, seed) else { return Ok(()) };
        let disk = FaultDisk::from_image(image);
        let store = StoreOptions::new().open_on(&disk).unwrap();
        let job = store.job::<Tally>(JOB, w.options()).unwrap();
        // Multiset of committed ids, from the lineage (the commit log).
        let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
        for entry in store.lineage(JOB, 0, usize::MAX).unwrap() {
            for id in entry.output_ids() {
                *seen.entry(id).or_insert(0) += 1;
            }
        }
        let acked: Vec<u64> = w.groups[..mark.acked].iter().flatten().copied().collect();
        let all: Vec<u64> = w.groups.iter().flatten().copied().collect();
        let lost: Vec<u64> = acked.iter().filter(|id| !seen.contains_key(id)).copied().collect();
        let duplicated: Vec<u64> = seen.iter().filter(|(_, n)| **n > 1).map(|(id, _)| *id).collect();
        let unexpected: Vec<u64> = seen.keys().filter(|id| !all.contains(id)).copied().collect();
        prop_assert!(lost.is_empty(), "lost acknowledged records: {:?}", lost);
        prop_assert!(duplicated.is_empty(), "duplicated records: {:?}", duplicated);
        prop_assert!(unexpected.is_empty(), "unexpected records: {:?}", unexpected);
        prop_assert_eq!(job.state().count, seen.len() as u64, "state applied a record other than once");
    }

    #[test]
    fn output_and_done_mark_are_atomic(
        w in workload(), at_op in 1u64..120, m in model(), seed in any::<u64>()
    ) {
        let Some((image, mut mark)) = crash(&w, at_op, m, seed) else { return Ok(()) };
        // `observe` checks outputs == done marks == a prefix of whole groups, and the state.
        finish_and_check(image, &w, &mut mark, Finish::Observe);
    }

    #[test]
    fn progress_is_monotone_across_repeated_crashes(
        w in workload(), crashes in proptest::collection::vec((1u64..60, 0usize..6, any::<u64>()), 1..4)
    ) {
        let mut image = base_image(&w);
        let mut mark = Watermark::default();
        for (at_op, m, seed) in crashes {
            let disk = FaultDisk::from_image(image.clone());
            disk.arm(at_op, Fault::Crash);
            let inc = run_incarnation(&disk, &w, false);
            mark.after(&inc);
            if !disk.crashed() {
                prop_assert!(inc.finished);
                image = disk.live_image();
                break;
            }
            image = disk.crash_image(LossModel::ALL[m], seed);
        }
        finish_and_check(image, &w, &mut mark, Finish::Resume);
    }

    #[test]
    fn resuming_a_finished_job_is_idempotent(w in workload()) {
        let disk = FaultDisk::from_image(base_image(&w));
        prop_assert!(run_incarnation(&disk, &w, false).finished);
        for _ in 0..2 {
            let store = StoreOptions::new().open_on(&disk).unwrap();
            let mut job = store.job::<Tally>(JOB, w.options()).unwrap();
            let seq = job.last_seq();
            prop_assert_eq!(job.lifecycle(), JobState::Completed);
            for group in &w.groups {
                let again = job.commit(group.iter().map(|&id| (id, output_of(id)))).unwrap();
                prop_assert!(again.is_none(), "a finished job committed again: {:?}", again);
            }
            prop_assert_eq!(job.last_seq(), seq);
            prop_assert_eq!(job.state(), w.final_state());
        }
    }

    #[test]
    fn bit_flips_in_snapshots_fall_back_to_the_correct_state(
        w in workload(), flips in proptest::collection::vec((any::<u64>(), any::<u16>()), 1..3)
    ) {
        let disk = FaultDisk::from_image(base_image(&w));
        prop_assert!(run_incarnation(&disk, &w, false).finished);
        let image = disk.live_image();
        let snap_table = format!("job.{JOB}.snapshots");
        let def: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new(&snap_table);
        let damaged = FaultDisk::from_image(image);
        let mut flipped = std::collections::BTreeSet::new();
        {
            let db = redb::Database::builder().create_with_backend(damaged.backend()).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(def).unwrap();
                let gens: Vec<u64> = t.iter().unwrap().map(|r| r.unwrap().0.value()).collect();
                for (pick, bit) in &flips {
                    if gens.is_empty() { break; }
                    let g = gens[(*pick % gens.len() as u64) as usize];
                    let mut bytes = t.get(g).unwrap().unwrap().value().to_vec();
                    let bit = usize::from(*bit) % (bytes.len() * 8);
                    bytes[bit / 8] ^= 1 << (bit % 8);
                    t.insert(g, bytes.as_slice()).unwrap();
                    // Two flips of the same bit cancel out.
                    if !flipped.remove(&(g, bit)) {
                        flipped.insert((g, bit));
                    }
                }
            }
            txn.commit().unwrap();
        }
        let store = StoreOptions::new().open_on(&damaged).unwrap();
        let job = store.job::<Tally>(JOB, w.options()).unwrap();
        prop_assert_eq!(job.state(), w.final_state(), "fallback restored a wrong state");
        let report = job.verify().unwrap();
        if !flipped.is_empty() {
            prop_assert!(!report.is_ok(), "verify missed a flipped snapshot");
        }
    }
}
