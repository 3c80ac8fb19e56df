//! Model test of the core engine: random sequences of submit, duplicate submit,
//! dead letter, flush and drop-and-reopen, compared after every step with a `BTreeMap`
//! model of what must be stored. Dropping a job without flushing is a clean crash: every
//! committed group survives, the pending group is lost, and the model says which.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use resumable::{CommitPolicy, Fold, Job, JobOptions, Store, Submission};
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize, Debug, PartialEq)]
struct Log {
    /// Every applied (id, output), in fold order.
    applied: Vec<(u64, u32)>,
}

impl Fold for Log {
    type Output = u32;
    fn apply(&mut self, id: u64, output: &u32) {
        self.applied.push((id, *output));
    }
}

#[derive(Clone, Debug)]
enum Op {
    Submit(u64, u32),
    Dead(u64),
    Flush,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..40, any::<u32>()).prop_map(|(id, v)| Op::Submit(id, v)),
        1 => (0u64..40).prop_map(Op::Dead),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Default)]
struct Model {
    committed: BTreeMap<u64, Option<u32>>,
    pending: BTreeMap<u64, Option<u32>>,
    /// The fold order the engine must produce: commit order, ids ascending within one.
    applied: Vec<(u64, u32)>,
}

impl Model {
    fn known(&self, id: u64) -> bool {
        self.committed.contains_key(&id) || self.pending.contains_key(&id)
    }
    fn commit(&mut self) {
        for (id, v) in std::mem::take(&mut self.pending) {
            if let Some(v) = v {
                self.applied.push((id, v));
            }
            self.committed.insert(id, v);
        }
    }
}

fn open(store: &Store, group: usize) -> Job<Log> {
    let options = JobOptions::new()
        .commit_policy(CommitPolicy::new().max_group_records(group))
        .snapshot_every_commits(3)
        .keep_snapshots(2);
    store.job::<Log>("model", options).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
    ))]

    #[test]
    fn engine_agrees_with_btreemap_model(group in 1usize..6, ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.redb");
        let mut store = Store::open(&path).unwrap();
        let mut job = open(&store, group);
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Submit(id, v) => {
                    let known = model.known(id);
                    let r = job.submit(id, v).unwrap();
                    if known {
                        prop_assert_eq!(r, Submission::AlreadyDone);
                    } else {
                        prop_assert_ne!(&r, &Submission::AlreadyDone);
                        model.pending.insert(id, Some(v));
                        if let Submission::Committed(_) = r { model.commit(); }
                    }
                }
                Op::Dead(id) => {
                    let known = model.known(id);
                    let r = job.dead_letter(id, 3, "boom").unwrap();
                    if known {
                        prop_assert_eq!(r, Submission::AlreadyDone);
                    } else {
                        model.pending.insert(id, None);
                        if let Submission::Committed(_) = r { model.commit(); }
                    }
                }
                Op::Flush => {
                    job.flush().unwrap();
                    model.commit();
                }
                Op::Reopen => {
                    drop(job);
                    drop(store);
                    model.pending.clear();
                    store = Store::open(&path).unwrap();
                    job = open(&store, group);
                }
            }
            // After every step: progress, outputs and state match the model.
            prop_assert_eq!(job.done_count(), model.committed.len() as u64);
            prop_assert_eq!(&job.state().applied, &model.applied);
        }
        job.flush().unwrap();
        model.commit();
        for (&id, &v) in &model.committed {
            prop_assert!(job.is_done(id));
            prop_assert_eq!(job.output(id).unwrap(), v);
        }
        let dead: Vec<u64> = store.dead_letters("model").unwrap().iter().map(|d| d.id).collect();
        let model_dead: Vec<u64> = model.committed.iter().filter(|(_, v)| v.is_none()).map(|(id, _)| *id).collect();
        prop_assert_eq!(dead, model_dead);
        let report = job.verify().unwrap();
        prop_assert!(report.is_ok(), "{:?}", report);
    }
}
