//! Property tests (proptest) of crashing runs against the model, on tiny jobs so that the
//! default 512 cases per property (`PROPTEST_CASES` for more) run in seconds.
//!
//! Proves: a crashing run resumed to the end equals the fault-free run; exactly-once holds
//! as a multiset (lost, duplicated and unexpected records reported separately); a record's
//! output and done mark are atomic; progress is monotone across repeated crashes; resuming
//! a finished job is idempotent; and random bit flips in snapshot values fall back to an
//! older snapshot (or a replay from empty) with the correct state, reported by `verify`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use redb::ReadableTable;
use resumable::testing::{Fault, FaultDisk, LossModel};
use resumable::{JobState, StoreOptions};

use crate::model::{
    Finish, JOB, Tally, Watermark, Workload, base_image, finish_and_check, measured_ops, output_of,
    run_incarnation, with_context,
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

/// Crashes a fresh run of `w` at the op `at` (a fraction) of its measured op count; returns
/// the image, the watermark and the replay context. Every case crashes.
fn crash(w: &Workload, at: f64, model: LossModel, seed: u64) -> (Vec<u8>, Watermark, String) {
    let base = base_image(w);
    let total = measured_ops(&base, w);
    let at_op = op_at(at, total);
    let context = format!("crash op {at_op}/{total}, loss model {model:?}, seed {seed}");
    let disk = FaultDisk::from_image(base);
    disk.arm(at_op, Fault::Crash);
    let inc = run_incarnation(&disk, w, false);
    assert!(disk.crashed(), "[{context}] the crash did not fire");
    let mut mark = Watermark::default();
    mark.after(&inc);
    (disk.crash_image(model, seed), mark, context)
}

/// The op at fraction `at` of `total` ops, in `1..=total`.
#[allow(
    clippy::cast_sign_loss,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss
)]
fn op_at(at: f64, total: u64) -> u64 {
    (1 + (at * total as f64) as u64).min(total)
}

/// Runs a crashing property over `config().cases` cases and prints how many crashes ran
/// (each case's body returns its crash count; a case that did not crash counts nothing).
fn run_crashing<S: Strategy>(
    name: &str,
    strategy: &S,
    body: impl Fn(S::Value) -> Result<u64, TestCaseError>,
) {
    let crashes = std::sync::atomic::AtomicU64::new(0);
    let cases = config().cases;
    let mut runner = proptest::test_runner::TestRunner::new(config());
    let result = runner.run(strategy, |v| {
        let n = body(v)?;
        crashes.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    let crashes = crashes.into_inner();
    assert!(crashes >= u64::from(cases), "{name}: a case did not crash");
    println!(
        "property {name}: {cases} cases, {crashes} crashes (points drawn from each run's measured op count)"
    );
}

fn crash_case() -> impl Strategy<Value = (Workload, f64, LossModel, u64)> {
    (workload(), 0.0f64..1.0, model(), any::<u64>())
}

#[test]
fn crashing_run_resumed_equals_the_fault_free_run() {
    run_crashing("resumed = fault-free", &crash_case(), |(w, at, m, seed)| {
        let (image, mut mark, context) = crash(&w, at, m, seed);
        with_context(
            || context,
            || finish_and_check(image, &w, &mut mark, Finish::ResumeAndReopen),
        );
        Ok(1)
    });
}

#[test]
fn exactly_once_as_a_multiset() {
    run_crashing("exactly once", &crash_case(), |(w, at, m, seed)| {
        let (image, mark, context) = crash(&w, at, m, seed);
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
        let lost: Vec<u64> = acked
            .iter()
            .filter(|id| !seen.contains_key(id))
            .copied()
            .collect();
        let duplicated: Vec<u64> = seen
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, _)| *id)
            .collect();
        let unexpected: Vec<u64> = seen
            .keys()
            .filter(|id| !all.contains(id))
            .copied()
            .collect();
        prop_assert!(
            lost.is_empty(),
            "[{}] lost acknowledged records: {:?}",
            context,
            lost
        );
        prop_assert!(
            duplicated.is_empty(),
            "[{}] duplicated records: {:?}",
            context,
            duplicated
        );
        prop_assert!(
            unexpected.is_empty(),
            "[{}] unexpected records: {:?}",
            context,
            unexpected
        );
        prop_assert_eq!(
            job.state().count,
            seen.len() as u64,
            "[{}] state applied a record other than once",
            context
        );
        Ok(1)
    });
}

#[test]
fn output_and_done_mark_are_atomic() {
    run_crashing(
        "atomic output + done mark",
        &crash_case(),
        |(w, at, m, seed)| {
            let (image, mut mark, context) = crash(&w, at, m, seed);
            // `observe` checks outputs == done marks == a prefix of whole groups, and the state.
            with_context(
                || context,
                || finish_and_check(image, &w, &mut mark, Finish::Observe),
            );
            Ok(1)
        },
    );
}

#[test]
fn progress_is_monotone_across_repeated_crashes() {
    let strategy = (
        workload(),
        proptest::collection::vec((0.0f64..1.0, 0usize..6, any::<u64>()), 1..4),
    );
    run_crashing("monotone progress", &strategy, |(w, crashes)| {
        let mut image = base_image(&w);
        let mut mark = Watermark::default();
        let mut context = String::new();
        let mut crashed = 0;
        for (at, m, seed) in crashes {
            // Each crash point is drawn from this incarnation's own measured op count.
            let total = measured_ops(&image, &w);
            let at_op = op_at(at, total);
            let _ = write!(
                context,
                "crash op {at_op}/{total}, loss model {:?}, seed {seed}; ",
                LossModel::ALL[m]
            );
            let disk = FaultDisk::from_image(image.clone());
            disk.arm(at_op, Fault::Crash);
            let inc = run_incarnation(&disk, &w, false);
            prop_assert!(disk.crashed(), "[{}] did not crash", context);
            crashed += 1;
            with_context(|| context.clone(), || mark.after(&inc));
            image = disk.crash_image(LossModel::ALL[m], seed);
        }
        with_context(
            || context,
            || finish_and_check(image, &w, &mut mark, Finish::Resume),
        );
        Ok(crashed)
    });
}

proptest! {
    #![proptest_config(config())]

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
