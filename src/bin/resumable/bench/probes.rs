//! The resume study and the per-commit cost probes: a store of many done records is
//! built, its commit cost probed near the start and at the end (beside bare redb doing the
//! same), and its resume timed with and without replay.

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use resumable::{Bytes, CommitPolicy, Fold, JobOptions, Store, StoreOptions};

use super::Ctx;
use super::stats::median;
use super::system::{cpu_since, thread_cpu_ns};
use super::variants::{BARE_GROUP, BARE_TABLE};

/// Group size of the per-commit cost probe, and its shape: the small and the large store
/// take turns, `PROBE_ROUNDS` times `PROBE_COMMITS_PER_ROUND` commits each, so drift on a
/// shared disk hits both alike.
pub(super) const PROBE_GROUP: u64 = 100;
pub(super) const PROBE_ROUNDS: usize = 10;
const PROBE_COMMITS_PER_ROUND: usize = 10;
pub(super) const PROBE_COMMITS: usize = PROBE_ROUNDS * PROBE_COMMITS_PER_ROUND;

/// The resume and open studies' state: a fold that depends on the outputs, so a resume
/// replays the commits after the newest snapshot (a [`Discard`] job skips that replay).
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Tally {
    records: u64,
    bytes: u64,
}

impl Fold for Tally {
    type Output = Bytes;
    fn apply(&mut self, _id: u64, output: &Bytes) {
        self.records += 1;
        self.bytes += output.0.len() as u64;
    }
}

/// Per-commit cost of `PROBE_COMMITS` durable commits of `PROBE_GROUP` 1 KiB records.
#[derive(Debug, Clone, Copy)]
pub(super) struct CommitProbe {
    pub(super) done_before: u64,
    pub(super) wall_median_us: f64,
    pub(super) cpu_mean_us: Option<f64>,
}

#[derive(Debug)]
pub(super) struct ResumeStudy {
    pub(super) records: u64,
    pub(super) file_bytes: u64,
    pub(super) build_secs: f64,
    pub(super) probe_low: CommitProbe,
    pub(super) probe_high: CommitProbe,
    /// The same probes on bare redb (one insert per record), for the growth redb itself has.
    pub(super) bare_low_us: f64,
    pub(super) bare_high_us: f64,
    pub(super) store_open_verified_ms: f64,
    pub(super) store_open_ms: f64,
    pub(super) job_open_ms: f64,
    pub(super) replayed_commits: u64,
    pub(super) job_open_after_snapshot_ms: f64,
}

/// One side of the per-commit probe: the walls and CPU of its commits so far.
struct ProbeSide {
    done_before: u64,
    walls: Vec<f64>,
    cpu_ns: Option<u64>,
}

impl ProbeSide {
    fn new(done_before: u64) -> Self {
        ProbeSide {
            done_before,
            walls: Vec::with_capacity(PROBE_COMMITS),
            cpu_ns: Some(0),
        }
    }

    /// Times `PROBE_COMMITS_PER_ROUND` commits made by `commit`.
    fn round(&mut self, mut commit: impl FnMut() -> Result<()>) -> Result<()> {
        let cpu = thread_cpu_ns();
        for _ in 0..PROBE_COMMITS_PER_ROUND {
            let start = Instant::now();
            commit()?;
            self.walls.push(start.elapsed().as_secs_f64() * 1e6);
        }
        self.cpu_ns = match (self.cpu_ns, cpu_since(cpu)) {
            (Some(total), Some(ns)) => Some(total + ns),
            _ => None,
        };
        Ok(())
    }

    fn finish(mut self) -> CommitProbe {
        let commits = self.walls.len() as f64;
        CommitProbe {
            done_before: self.done_before,
            wall_median_us: median(&mut self.walls),
            cpu_mean_us: self.cpu_ns.map(|ns| ns as f64 / 1000.0 / commits),
        }
    }
}

/// Commits records `*next_id..until` of `job` (each output `payload`) in durable groups of
/// `BARE_GROUP`, the last one shorter if need be, and moves `next_id` to `until`.
pub(super) fn fill(
    job: &mut resumable::Job<Tally>,
    next_id: &mut u64,
    until: u64,
    payload: &[u8],
) -> Result<()> {
    while *next_id < until {
        let end = (*next_id + BARE_GROUP).min(until);
        job.commit((*next_id..end).map(|id| (id, Bytes(payload.to_vec()))))?;
        *next_id = end;
    }
    Ok(())
}

/// Commits the next `PROBE_GROUP` 1 KiB records of `job` as one group.
fn probe_commit(job: &mut resumable::Job<Tally>, next_id: &mut u64, payload: &[u8]) -> Result<()> {
    let group: Vec<(u64, Bytes)> = (*next_id..*next_id + PROBE_GROUP)
        .map(|id| (id, Bytes(payload.to_vec())))
        .collect();
    *next_id += PROBE_GROUP;
    job.commit(group)?;
    Ok(())
}

/// The per-commit probe on bare redb: median wall time of `PROBE_COMMITS` durable commits of
/// `PROBE_GROUP` 1 KiB inserts into a table of 10^3 rows and one of `records` rows, taking
/// turns.
fn bare_commit_probes(ctx: &Ctx, records: u64) -> Result<(f64, f64)> {
    let fill = |db: &redb::Database, next: &mut u64, until: u64, group: u64| -> Result<()> {
        while *next < until {
            let end = (*next + group).min(until);
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(BARE_TABLE)?;
                for id in *next..end {
                    table.insert(id, ctx.payload.as_slice())?;
                }
            }
            txn.commit()?;
            *next = end;
        }
        Ok(())
    };
    let open = |name: &str, rows: u64| -> Result<(PathBuf, redb::Database, u64)> {
        let path = ctx.dir.join(name);
        let mut builder = redb::Builder::new();
        builder.set_cache_size(256 << 20);
        let db = builder.create(&path)?;
        let mut next = 0;
        fill(&db, &mut next, rows, BARE_GROUP)?;
        Ok((path, db, next))
    };
    let (low_path, low_db, mut low_next) = open("bare-probe-low.redb", 1000)?;
    let (high_path, high_db, mut high_next) = open(
        "bare-probe-high.redb",
        records.saturating_sub(PROBE_GROUP * PROBE_COMMITS as u64),
    )?;
    let mut low = ProbeSide::new(low_next);
    let mut high = ProbeSide::new(high_next);
    for _ in 0..PROBE_ROUNDS {
        low.round(|| {
            let until = low_next + PROBE_GROUP;
            fill(&low_db, &mut low_next, until, PROBE_GROUP)
        })?;
        high.round(|| {
            let until = high_next + PROBE_GROUP;
            fill(&high_db, &mut high_next, until, PROBE_GROUP)
        })?;
    }
    drop((low_db, high_db));
    let _ = fs::remove_file(&low_path);
    let _ = fs::remove_file(&high_path);
    Ok((low.finish().wall_median_us, high.finish().wall_median_us))
}

/// Builds a store of `records` done 1 KiB records in default-sized durable groups, probing
/// the per-commit cost near the start and at the end, then times resumes of it.
pub(super) fn resume_study(ctx: &Ctx, records: u64) -> Result<ResumeStudy> {
    let path = ctx.dir.join("resume.redb");
    let options = || JobOptions::new().commit_policy(CommitPolicy::new());
    let build_start = Instant::now();
    let (probe_low, probe_high) = {
        let store = Store::open(&path)?;
        let mut job = store.job::<Tally>("bench", options())?;
        let mut next_id = 0u64;
        fill(
            &mut job,
            &mut next_id,
            records.saturating_sub(PROBE_GROUP * PROBE_COMMITS as u64),
            &ctx.payload,
        )?;
        let low_path = ctx.dir.join("probe-low.redb");
        let low_store = Store::open(&low_path)?;
        let mut low_job = low_store.job::<Tally>("bench", options())?;
        let mut low_next = 0u64;
        fill(&mut low_job, &mut low_next, 1000, &ctx.payload)?;
        let mut low = ProbeSide::new(low_job.done_count());
        let mut high = ProbeSide::new(job.done_count());
        for _ in 0..PROBE_ROUNDS {
            low.round(|| probe_commit(&mut low_job, &mut low_next, &ctx.payload))?;
            high.round(|| probe_commit(&mut job, &mut next_id, &ctx.payload))?;
        }
        drop((low_job, low_store));
        let _ = fs::remove_file(&low_path);
        // Dropped without pause/complete: the next open is a crash recovery.
        (low.finish(), high.finish())
    };
    let build_secs = build_start.elapsed().as_secs_f64();
    let file_bytes = fs::metadata(&path)?.len();

    let mut verified = Vec::new();
    let mut plain = Vec::new();
    let mut job_open = Vec::new();
    let mut replayed_commits = 0;
    for _ in 0..3 {
        let start = Instant::now();
        drop(StoreOptions::new().verify_on_open(true).open(&path)?);
        verified.push(start.elapsed().as_secs_f64() * 1e3);

        let start = Instant::now();
        let store = StoreOptions::new().verify_on_open(false).open(&path)?;
        plain.push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        let job = store.job::<Tally>("bench", options())?;
        job_open.push(start.elapsed().as_secs_f64() * 1e3);
        replayed_commits = job.stats().replayed_commits;
    }
    {
        let store = StoreOptions::new().verify_on_open(false).open(&path)?;
        let mut job = store.job::<Tally>("bench", options())?;
        job.snapshot()?;
    }
    let mut after_snapshot = Vec::new();
    for _ in 0..3 {
        let store = StoreOptions::new().verify_on_open(false).open(&path)?;
        let start = Instant::now();
        let job = store.job::<Tally>("bench", options())?;
        after_snapshot.push(start.elapsed().as_secs_f64() * 1e3);
        drop(job);
    }
    let _ = fs::remove_file(&path);
    let (bare_low_us, bare_high_us) = bare_commit_probes(ctx, records)?;
    Ok(ResumeStudy {
        records,
        file_bytes,
        build_secs,
        probe_low,
        probe_high,
        bare_low_us,
        bare_high_us,
        store_open_verified_ms: median(&mut verified),
        store_open_ms: median(&mut plain),
        job_open_ms: median(&mut job_open),
        replayed_commits,
        job_open_after_snapshot_ms: median(&mut after_snapshot),
    })
}
