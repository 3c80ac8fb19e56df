//! SIGKILL campaign: a child process (this test binary re-executed with
//! `RESUMABLE_CRASH_CHILD=sigkill:PATH`) runs a job on a real store file with real fsyncs,
//! committing groups of 1 to 4 records durably and printing `BEGIN <group>` before and `ACK <groups>`
//! after each commit; the parent kills it with SIGKILL (`Child::kill`) after a random delay, restarts
//! it, and repeats until the child prints `DONE`, over as many jobs as it takes to reach the
//! kill target.
//!
//! Proves, per restart, that the job reopens at a prefix of whole groups that is never below
//! what was acknowledged and at most the in-flight group above what was known
//! (REDB-NOTES 4.4), and at the end of each job that every record is present exactly once
//! with its output, the state equals the fault-free fold, and `verify` passes.
//! `RESUMABLE_SIGKILL_KILLS` (default 1,000 x `RESUMABLE_CRASH_SCALE`) sets the target and
//! `RESUMABLE_SIGKILL_SEED` replays a campaign; the seed is printed. Each kill is classified
//! by the child's last progress line (before the job was open, during a commit, between
//! commits, after `DONE`), and most must land in the work.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use resumable::{Store, StoreOptions};

use crate::child::{campaign_seed, spawn};
use crate::model::{JOB, Tally, Workload, env_u64, observe, output_of, prefix_of, scale};

const RECORDS: u64 = 300;

fn workload() -> Workload {
    let ids: Vec<u64> = (0..RECORDS).collect();
    let groups = ids
        .chunks(4)
        .flat_map(|c| [c[..1].to_vec(), c[1..].to_vec()])
        .filter(|g| !g.is_empty())
        .collect();
    Workload::new(groups, 3, 2)
}

/// The child: resume the job, report where it started, commit the rest, acknowledging each
/// durable group on stdout.
pub fn child(path: &str) {
    let w = workload();
    let store = Store::open(path).expect("child: open");
    let mut job = store.job::<Tally>(JOB, w.options()).expect("child: job");
    let start = prefix_of(&job, &w).expect("child: progress is not a prefix of groups");
    assert_eq!(job.state(), w.state_after(start), "child: resumed state");
    println!("START {start}");
    for (g, group) in w.groups.iter().enumerate().skip(start) {
        println!("BEGIN {}", g + 1);
        let receipt = job
            .commit(group.iter().map(|&id| (id, output_of(id))))
            .expect("child: commit")
            .expect("child: receipt");
        assert!(receipt.durable);
        println!("ACK {}", g + 1);
    }
    if job.lifecycle() != resumable::JobState::Completed {
        job.complete().expect("child: complete");
    }
    println!("DONE");
}

/// Where the kills of a campaign landed, from the child's own progress lines.
#[derive(Debug, Default)]
pub struct Landed {
    /// Before the child printed `START`: exec, store open, recovery, job open.
    pub starting: u64,
    /// After `BEGIN` (a commit was in progress).
    pub during_commit: u64,
    /// After `START` or an `ACK`, outside a commit.
    pub between_commits: u64,
    /// After `START`, where no line tells whether a commit was running (a `Runner`, whose
    /// commits overlap its workers).
    pub working: u64,
    /// After the child printed `DONE`, before it exited.
    pub after_done: u64,
}

impl Landed {
    fn total(&self) -> u64 {
        self.starting + self.during_commit + self.between_commits + self.working + self.after_done
    }

    /// Most kills must land while the child works (opening, recovering or committing is
    /// all work; only a kill before `START` or after `DONE` is not a kill in the work).
    pub fn assert_mostly_during_work(&self, seed: u64) {
        let work = self.during_commit + self.between_commits + self.working;
        assert!(
            work * 2 > self.total(),
            "seed {seed}: only {work} of {} kills landed in the work ({self})",
            self.total()
        );
    }
}

impl std::fmt::Display for Landed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "landed: {} before the job was open (start-up, open, recovery), {} during a commit, {} between commits, {} in the work (commit or not unknown), {} after DONE",
            self.starting, self.during_commit, self.between_commits, self.working, self.after_done
        )
    }
}

/// A splitmix64 generator; the campaigns print their seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_record_and_applies_each_once() {
    let target = env_u64("RESUMABLE_SIGKILL_KILLS", 1_000 * scale());
    let seed = campaign_seed("sigkill", "RESUMABLE_SIGKILL_SEED");
    let mut rng = Rng(seed);
    let w = workload();
    let started = Instant::now();
    let (mut kills, mut jobs, mut unacked_landed) = (0u64, 0u64, 0u64);
    let mut landed = Landed::default();
    while kills < target {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("killed.redb");
        let (mut acked, mut known, mut in_flight) = (0usize, 0usize, false);
        loop {
            let mut child = spawn(&format!("sigkill:{}", path.display()));
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = mpsc::channel();
            let reader = std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            // Kill after up to 25 ms: one incarnation in four counts from the exec (kills
            // in the start-up, open and recovery), the others from the child's `START`
            // line (kills in the work: between and during commits).
            let delay = Duration::from_micros(rng.below(25_000));
            let mut done = false;
            let mut lines = Vec::new();
            if rng.below(4) != 0 {
                while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
                    let start = line.contains("START ");
                    done |= line.ends_with("DONE");
                    lines.push(line);
                    if start || done {
                        break;
                    }
                }
            }
            let deadline = Instant::now() + delay;
            while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                done |= line.ends_with("DONE");
                lines.push(line);
            }
            let killed = !done && child.try_wait().unwrap().is_none();
            if killed {
                child.kill().unwrap();
                kills += 1;
            }
            let status = child.wait().unwrap();
            reader.join().unwrap();
            lines.extend(rx.try_iter());
            if killed {
                // Where the kill landed: the child's last progress line says.
                let last = lines.iter().rev().find(|l| {
                    l.contains("START ")
                        || l.contains("BEGIN ")
                        || l.contains("ACK ")
                        || l.ends_with("DONE")
                });
                match last {
                    None => landed.starting += 1,
                    Some(l) if l.contains("BEGIN ") => landed.during_commit += 1,
                    Some(l) if l.ends_with("DONE") => landed.after_done += 1,
                    Some(_) => landed.between_commits += 1,
                }
            }
            for line in &lines {
                // libtest prints "test ... " without a newline before the child's first line.
                if let Some((_, start)) = line.split_once("START ") {
                    let start: usize = start.parse().unwrap();
                    assert!(
                        start >= acked && start <= known + usize::from(in_flight),
                        "seed {seed}: restart found {start} groups; acknowledged {acked}, known {known}, in flight {in_flight}"
                    );
                    unacked_landed += u64::from(start > known);
                    known = start;
                    in_flight = start < w.groups.len();
                } else if let Some((_, g)) = line.split_once("ACK ") {
                    let g: usize = g.parse().unwrap();
                    assert_eq!(g, known + 1, "seed {seed}: acknowledgements out of order");
                    acked = g;
                    known = g;
                    in_flight = g < w.groups.len();
                }
            }
            if lines.iter().any(|l| l.ends_with("DONE")) {
                // A kill that lands after DONE hits a finished job.
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
        // The finished job equals the fault-free run.
        let store = StoreOptions::new().open(&path).unwrap();
        let job = store.job::<Tally>(JOB, w.options()).unwrap();
        assert_eq!(
            observe(&store, &job, &w).unwrap_or_else(|m| panic!("seed {seed}: {m}")),
            w.groups.len()
        );
        assert_eq!(job.state(), w.final_state());
        jobs += 1;
    }
    println!(
        "sigkill campaign: {kills} kills over {jobs} jobs of {RECORDS} records ({landed}); the unacknowledged \
         in-flight group had landed at {unacked_landed} restarts; 0 lost, 0 duplicated; {:.1} s",
        started.elapsed().as_secs_f64()
    );
    landed.assert_mostly_during_work(seed);
}

/// What one incarnation of a campaign's child process printed and how it ended.
pub(crate) struct Incarnation {
    /// Its stdout lines, all of them.
    pub(crate) lines: Vec<String>,
    /// Whether it was killed with SIGKILL (it had neither finished nor exited on its own).
    pub(crate) killed: bool,
    pub(crate) status: std::process::ExitStatus,
}

/// Runs one incarnation of the crash child `child` (`RESUMABLE_CRASH_CHILD`'s value) and
/// kills it (SIGKILL) at a random moment: three times in four up to `max_delay_us` after
/// the line that `started` accepts (so most kills land in its work), else that long after
/// the exec; never once a line that `done` accepts was read.
pub(crate) fn incarnation(
    child: &str,
    rng: &mut Rng,
    max_delay_us: u64,
    started: impl Fn(&str) -> bool,
    done: impl Fn(&str) -> bool,
) -> Incarnation {
    let mut process = spawn(child);
    let stdout = process.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let delay = Duration::from_micros(rng.below(max_delay_us));
    let mut lines = Vec::new();
    if rng.below(4) != 0 {
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
            let stop = started(&line);
            lines.push(line);
            if stop {
                break;
            }
        }
    }
    let deadline = Instant::now() + delay;
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        lines.push(line);
    }
    let done_early = lines.iter().any(|l| done(l));
    let killed = !done_early && process.try_wait().unwrap().is_none();
    if killed {
        process.kill().unwrap();
    }
    let status = process.wait().unwrap();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    Incarnation {
        lines,
        killed,
        status,
    }
}
