//! The multi-threaded `Runner` under real kills: a child process (this test binary
//! re-executed with `RESUMABLE_CRASH_CHILD=runner:PATH`) runs a `Runner` with 3 workers over
//! 1,500 records on a real store file, with transient failures (retried), permanent
//! failures and always-failing records (dead-lettered), and prints every `on_durable` ack
//! with its ids; the parent SIGKILLs it at random moments and restarts it until it ends.
//!
//! Proves: after every restart every record a durable ack announced is in the store exactly
//! once (as an output with its value, or as a dead letter, never both); no commit is
//! announced twice except as a flagged replay, and no record is acknowledged by two
//! commits; at the end outputs plus dead letters are exactly the input, each once.
//! `RESUMABLE_RUNNER_KILLS` (default 30 x `RESUMABLE_CRASH_SCALE`) sets the kill target and
//! `RESUMABLE_RUNNER_SEED` replays a campaign; the seed is printed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use resumable::{
    CommitPolicy, Discard, IdSource, JobOptions, ProcessError, RetryPolicy, Runner, Store,
    StoreOptions,
};

use crate::child::campaign_seed;
use crate::model::{env_u64, scale};
use crate::sigkill::{Incarnation, Landed, Rng, incarnation};

const RECORDS: u64 = 1_500;
const JOB_NAME: &str = "runner";

fn options() -> JobOptions {
    JobOptions::new()
        .total_records(RECORDS)
        .commit_policy(CommitPolicy::new().max_group_records(9))
        .progress_every_commits(8)
}

/// Whether `id` fails permanently (dead-lettered at its first attempt).
fn permanent(id: u64) -> bool {
    id.is_multiple_of(17)
}

/// Whether `id` fails transiently at every attempt (dead-lettered after 3).
fn always_transient(id: u64) -> bool {
    id % 23 == 5
}

/// The child: run the job to the end, printing `ACK <seq> <replayed> o=<ids> d=<ids>`.
pub fn child(path: &str) {
    let store = Store::open(path).expect("child: open");
    let job = store
        .job::<Discard<u64>>(JOB_NAME, options())
        .expect("child: job");
    println!("START");
    Runner::new(job)
        .workers(3)
        .complete_on_end(true)
        .retry(
            RetryPolicy::new()
                .max_attempts(3)
                .base_delay(Duration::from_millis(1))
                .jitter(false),
        )
        .on_durable(|ack| {
            let outputs: Vec<String> = ack
                .outputs
                .iter()
                .flat_map(Clone::clone)
                .map(|i| i.to_string())
                .collect();
            let dead: Vec<String> = ack.dead_letters.iter().map(u64::to_string).collect();
            println!(
                "ACK {} {} o={} d={}",
                ack.seq,
                u8::from(ack.replayed),
                outputs.join(","),
                dead.join(",")
            );
        })
        .run(
            IdSource::new(0..RECORDS, Ok),
            |ctx, _| -> Result<u64, ProcessError> {
                let id = ctx.id;
                std::hint::black_box((0..3_000u64).fold(id, |a, b| a.rotate_left(5) ^ b));
                if permanent(id) {
                    return Err(ProcessError::permanent("malformed"));
                }
                if always_transient(id) || (id % 5 == 0 && ctx.attempt < 2) {
                    return Err(ProcessError::transient("busy"));
                }
                Ok(id * 3)
            },
        )
        .expect("child: run");
    println!("DONE");
}

fn ids(field: &str) -> Vec<u64> {
    field
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

/// The store after a restart: outputs (id -> value) and dead-lettered ids.
fn contents(path: &std::path::Path) -> (BTreeMap<u64, u64>, Vec<u64>) {
    let mut outputs = BTreeMap::new();
    if !path.exists() {
        return (outputs, Vec::new()); // killed before the store was created
    }
    let store = StoreOptions::new().open(path).unwrap();
    match store.for_each_output(JOB_NAME, 0..u64::MAX, |o| {
        let v: u64 = o.decode()?;
        assert!(outputs.insert(o.id, v).is_none(), "output {} twice", o.id);
        Ok(true)
    }) {
        Ok(()) => {}
        // Killed before the job was created.
        Err(resumable::Error::JobNotFound(_)) => return (outputs, Vec::new()),
        Err(e) => panic!("reading outputs: {e:?}"),
    }
    let dead: Vec<u64> = store
        .dead_letters(JOB_NAME)
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    (outputs, dead)
}

#[test]
fn runner_under_sigkill_keeps_every_acked_record_once_and_ends_exactly_once() {
    let target = env_u64("RESUMABLE_RUNNER_KILLS", 30 * scale());
    let seed = campaign_seed("runner kill", "RESUMABLE_RUNNER_SEED");
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut landed = Landed::default();
    let (mut kills, mut jobs, mut acks, mut replays) = (0u64, 0u64, 0u64, 0u64);
    while kills < target {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runner.redb");
        // seq -> (outputs, dead letters) as first announced; id -> seq that acked it.
        let mut announced: BTreeMap<u64, (Vec<u64>, Vec<u64>)> = BTreeMap::new();
        let mut acked_by: BTreeMap<u64, u64> = BTreeMap::new();
        let mut incarnations = 0;
        loop {
            incarnations += 1;
            assert!(incarnations < 10_000, "seed {seed}: the job never finished");
            let Incarnation {
                lines,
                killed,
                status,
            } = incarnation(
                &format!("runner:{}", path.display()),
                &mut rng,
                80_000,
                |l| l.ends_with("START") || l.ends_with("DONE"),
                |l| l.ends_with("DONE"),
            );
            kills += u64::from(killed);
            let done = lines.iter().any(|l| l.ends_with("DONE"));
            if killed {
                if done {
                    landed.after_done += 1;
                } else if lines.iter().any(|l| l.ends_with("START")) {
                    landed.working += 1;
                } else {
                    landed.starting += 1;
                }
            }
            let mut this_run = BTreeSet::new();
            for line in &lines {
                let Some((_, rest)) = line.split_once("ACK ") else {
                    continue;
                };
                let f: Vec<&str> = rest.split(' ').collect();
                assert_eq!(f.len(), 4, "seed {seed}: bad ack line {line:?}");
                let seq: u64 = f[0].parse().unwrap();
                let replayed = f[1] == "1";
                let outs = ids(f[2].trim_start_matches("o="));
                let dead = ids(f[3].trim_start_matches("d="));
                acks += 1;
                replays += u64::from(replayed);
                assert!(
                    this_run.insert(seq),
                    "seed {seed}: commit {seq} announced twice in one run"
                );
                if let Some(before) = announced.get(&seq) {
                    assert!(
                        replayed,
                        "seed {seed}: commit {seq} announced again without the replay flag"
                    );
                    assert_eq!(
                        before,
                        &(outs.clone(), dead.clone()),
                        "seed {seed}: commit {seq} announced with other ids"
                    );
                    continue;
                }
                for &id in outs.iter().chain(&dead) {
                    if let Some(other) = acked_by.insert(id, seq) {
                        panic!(
                            "seed {seed}: record {id} acknowledged by commits {other} and {seq}"
                        );
                    }
                }
                announced.insert(seq, (outs, dead));
            }
            // Every acknowledged record is in the store once, as its output or a dead letter.
            let (outputs, dead) = contents(&path);
            let dead_set: BTreeSet<u64> = dead.iter().copied().collect();
            assert_eq!(
                dead_set.len(),
                dead.len(),
                "seed {seed}: a dead letter twice"
            );
            for (seq, (outs, ds)) in &announced {
                for id in outs {
                    assert_eq!(
                        outputs.get(id),
                        Some(&(id * 3)),
                        "seed {seed}: acked output {id} (commit {seq}) missing or wrong"
                    );
                    assert!(
                        !dead_set.contains(id),
                        "seed {seed}: {id} both output and dead letter"
                    );
                }
                for id in ds {
                    assert!(
                        dead_set.contains(id),
                        "seed {seed}: acked dead letter {id} (commit {seq}) missing"
                    );
                    assert!(
                        !outputs.contains_key(id),
                        "seed {seed}: {id} both output and dead letter"
                    );
                }
            }
            if done {
                assert!(
                    status.success() || killed,
                    "seed {seed}: child failed after DONE"
                );
                break;
            }
            assert!(
                killed || status.success(),
                "seed {seed}: child died on its own: {status:?} after {lines:?}"
            );
        }
        // The end: outputs plus dead letters are exactly the input, each once.
        let (outputs, dead) = contents(&path);
        let mut all: Vec<u64> = outputs
            .keys()
            .copied()
            .chain(dead.iter().copied())
            .collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..RECORDS).collect::<Vec<_>>(),
            "seed {seed}: not exactly the input"
        );
        for &id in &dead {
            assert!(
                permanent(id) || always_transient(id),
                "seed {seed}: {id} dead-lettered but it succeeds"
            );
        }
        jobs += 1;
    }
    println!(
        "runner kill campaign: {kills} kills over {jobs} jobs of {RECORDS} records, 3 workers ({landed}); \
         {acks} acks ({replays} flagged replays); every acked record present once after each restart; \
         outputs + dead letters = the input exactly once; {:.1} s",
        started.elapsed().as_secs_f64()
    );
    landed.assert_mostly_during_work(seed);
}
