//! `Store::fork` under real kills: `fork` writes a new store file at a path of its own, so
//! the simulated disk cannot hold its destination; instead a child process (this test binary
//! re-executed with `RESUMABLE_CRASH_CHILD=fork:SRC|DST|GENERATION`) opens a source store
//! (snapshots, commits after the newest snapshot, progress written every 2 commits), prints
//! `BEGIN`, forks the job at its newest snapshot into a new path and prints `FORKED`; the
//! parent SIGKILLs it at a random moment within 1.5 fork times after `BEGIN`.
//!
//! Proves, after every kill: the source store is unchanged (status, snapshots, every output
//! with its commit, equal to before); the destination path is absent, or holds a complete
//! fork: the job paused at the snapshot's commit, exactly the groups up to it with their
//! outputs, the fold of them, `verify` and redb's integrity check pass, and the job resumes
//! there to the end of a fault-free run; a leftover temporary file is harmless: a new fork
//! into the same path succeeds and no temporary is left beside it.
//! `RESUMABLE_FORK_KILLS` (default 15 x `RESUMABLE_CRASH_SCALE`) sets the number of kills,
//! `RESUMABLE_FORK_SEED` replays a campaign; the seed is printed.

use std::path::Path;
use std::time::{Duration, Instant};

use resumable::{JobState, Store, StoreOptions};

use crate::child::{campaign_seed, kill_after_begin, leftovers, spawn};
use crate::fuzz_bodies::variant;
use crate::model::{JOB, Tally, Workload, env_u64, fingerprint, observe, output_of, scale};
use crate::sigkill::Rng;

/// The child: open the source, announce, fork, announce.
pub fn child(spec: &str) {
    let mut parts = spec.split('|');
    let (Some(src), Some(dst), Some(generation)) = (parts.next(), parts.next(), parts.next())
    else {
        println!("ERR usage");
        return;
    };
    let store = Store::open(src).unwrap();
    println!("BEGIN");
    match store.fork(JOB, generation.parse().unwrap(), dst) {
        Ok(_) => println!("FORKED"),
        Err(e) => println!("ERR {}", variant(&e)),
    }
}

/// The destination is a complete fork at `groups` groups: checks it and resumes it to the
/// end.
fn check_fork(path: &Path, w: &Workload, groups: usize, context: &str) {
    let store = StoreOptions::new()
        .create(false)
        .open(path)
        .unwrap_or_else(|e| panic!("{context}: the fork does not open: {e:?}"));
    let status = store
        .status(JOB)
        .unwrap_or_else(|e| panic!("{context}: the fork holds no job: {e:?}"));
    assert_eq!(status.lifecycle, JobState::Paused, "{context}: {status:?}");
    let mut job = store.job::<Tally>(JOB, w.options()).unwrap();
    let g = observe(&store, &job, w).unwrap_or_else(|m| panic!("{context}: {m}"));
    assert_eq!(g, groups, "{context}: the fork holds another cut");
    for group in &w.groups[g..] {
        job.commit(group.iter().map(|&id| (id, output_of(id))))
            .unwrap_or_else(|e| panic!("{context}: resume: {e:?}"));
    }
    job.complete().unwrap();
    assert_eq!(job.state(), w.final_state(), "{context}: resumed fork");
}

#[test]
fn sigkill_inside_fork_leaves_the_source_unchanged_and_the_fork_absent_or_complete() {
    let target = env_u64("RESUMABLE_FORK_KILLS", 15 * scale());
    let seed = campaign_seed("fork", "RESUMABLE_FORK_SEED");
    let mut rng = Rng(seed);
    let started = Instant::now();
    let w = Workload::standard(900);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("source.redb");
    let dst = dir.path().join("fork.redb");
    // The source: two thirds of the groups, snapshots every 3 commits (keep 2), so the
    // newest snapshot is followed by commits the fork must drop.
    let (generation, groups) = {
        let store = Store::open(&src).unwrap();
        let mut job = store.job::<Tally>(JOB, w.options()).unwrap();
        for group in &w.groups[..=w.groups.len() * 2 / 3] {
            job.commit(group.iter().map(|&id| (id, output_of(id))))
                .unwrap();
        }
        drop(job);
        let newest = store.snapshots(JOB).unwrap().pop().unwrap();
        // Commit seqs count groups from 1.
        (newest.generation, newest.seq.unwrap() as usize)
    };
    let before = fingerprint(&Store::open(&src).unwrap());
    let span = {
        let store = Store::open(&src).unwrap();
        let t = Instant::now();
        store.fork(JOB, generation, &dst).unwrap();
        let span = t.elapsed().max(Duration::from_millis(1));
        check_fork(&dst, &w, groups, "fault-free fork");
        std::fs::remove_file(&dst).unwrap();
        span
    };
    let (mut kills, mut absent, mut complete, mut temps, mut attempts) = (0u64, 0, 0, 0, 0u64);
    while kills < target {
        attempts += 1;
        assert!(
            attempts < target * 20,
            "seed {seed}: kills keep missing the fork"
        );
        let child = spawn(&format!(
            "fork:{}|{}|{generation}",
            src.display(),
            dst.display()
        ));
        let (killed, rest) = kill_after_begin(child, &mut rng, span);
        assert!(
            !rest.contains("ERR"),
            "seed {seed}: the fork failed: {rest}"
        );
        if !killed || rest.contains("FORKED") {
            // The fork had finished: not a kill inside it.
            if dst.exists() {
                std::fs::remove_file(&dst).unwrap();
            }
            continue;
        }
        kills += 1;
        let context = format!("seed {seed}, kill {kills}");
        let left = leftovers(dir.path());
        temps += u64::from(!left.is_empty());
        // The source: what it was.
        let now = fingerprint(&Store::open(&src).unwrap());
        assert_eq!(now, before, "{context}: the source changed");
        if dst.exists() {
            complete += 1;
            check_fork(&dst, &w, groups, &context);
            std::fs::remove_file(&dst).unwrap();
        } else {
            absent += 1;
        }
        // A leftover is harmless: the fork can be made again, and no temporary is left.
        Store::open(&src)
            .unwrap()
            .fork(JOB, generation, &dst)
            .unwrap_or_else(|e| panic!("{context}: the fork after the kill failed: {e:?}"));
        check_fork(&dst, &w, groups, &context);
        std::fs::remove_file(&dst).unwrap();
        let still = leftovers(dir.path());
        assert!(
            still.is_empty(),
            "{context}: leftovers {left:?}: {still:?} still there after the next fork"
        );
    }
    println!(
        "fork campaign: {kills} kills inside Store::fork ({attempts} children): {absent} left \
         the destination absent, {complete} a complete fork (verified, resumed); {temps} left \
         a temporary file, each removed by the next fork; the source unchanged every time; \
         a fork takes ~{} us here; {:.1} s",
        span.as_micros(),
        started.elapsed().as_secs_f64()
    );
}
