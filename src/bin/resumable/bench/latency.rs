//! Durable-ack latency against offered load: the runner fed at fixed rates (and
//! unbounded) under the fixed group-commit policy, the self-clocking one and the default
//! (self-clocking while the workers wait for input), side by side,
//! with the disk's own durable-commit latency (bare redb, one insert per commit) measured
//! in the same run.
//!
//! The disk's median commit is not what bounds an ack p99 at light load: a shared or
//! virtual disk stalls now and then (fsyncs of 50-500 ms, a few per 10 s here), a stall is
//! one commit among thousands but holds up every record that arrives while it lasts, and
//! nothing a policy does can make a record durable during it. So the study also replays
//! the bare-redb trace as an ideal committer (no cost of its own, every record in the next
//! commit to start) fed at each offered load: the *floor*, the acks a perfect self-clocking
//! policy would give on this disk in the same minutes.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use resumable::{
    BoxError, Bytes, CommitPolicy, Discard, IdSource, JobOptions, ProcessError, Runner, Store,
};
use serde::Serialize;

use super::Ctx;
use super::stats::median;
use super::variants::{BARE_TABLE, settle};

/// The offered loads, records per second (`None`: as fast as the runner takes them).
pub(super) const OFFERED: [Option<u64>; 4] = [Some(1_000), Some(10_000), Some(100_000), None];

/// The runner at one offered load under one policy: medians over the repeats.
#[derive(Clone, Debug, Serialize)]
pub(super) struct LatencyRow {
    pub(super) policy: &'static str,
    pub(super) offered_per_s: Option<u64>,
    pub(super) achieved_per_s: f64,
    pub(super) ack_p50_ms: f64,
    pub(super) ack_p99_ms: f64,
    /// Runs the medians are taken over.
    pub(super) repeats: usize,
}

/// The `latency` object of `resumable bench --json`.
#[derive(Clone, Debug, Serialize)]
pub(super) struct LatencyStudy {
    /// Median latency of a bare redb durable commit of one insert, milliseconds.
    pub(super) disk_commit_ms: f64,
    /// 99th percentile of the same commits, milliseconds: the disk's own tail, which bounds
    /// how close any policy's ack p99 can come to `disk_commit_ms`.
    pub(super) disk_commit_p99_ms: f64,
    /// Share of the bare trace's wall time spent in commits slower than 5x its median: the
    /// time during which no record can become durable.
    pub(super) disk_stall_share: f64,
    /// The ideal committer replayed on the bare trace at each offered rate.
    pub(super) floors: Vec<FloorRow>,
    pub(super) rows: Vec<LatencyRow>,
    /// The self-clocking policy against the goals of issue 17: at 1,000 records/s offered,
    /// ack p50 and p99 over `disk_commit_ms` (goals at most 2 and 5); unbounded, its
    /// throughput over the fixed policy's (goal at least 0.95).
    pub(super) self_clocking_p50_vs_disk: Option<f64>,
    pub(super) self_clocking_p99_vs_disk: Option<f64>,
    /// At 1,000 records/s offered, the self-clocking ack p99 over the floor's.
    pub(super) self_clocking_p99_vs_floor: Option<f64>,
    pub(super) self_clocking_unbounded_vs_fixed: Option<f64>,
    /// The same four ratios for the default policy.
    pub(super) default_p50_vs_disk: Option<f64>,
    pub(super) default_p99_vs_disk: Option<f64>,
    pub(super) default_p99_vs_floor: Option<f64>,
    pub(super) default_unbounded_vs_fixed: Option<f64>,
}

/// The policies of the study, by the name their rows carry.
const POLICIES: [&str; 3] = ["fixed", "self_clocking", "default"];

fn policy(name: &str) -> CommitPolicy {
    match name {
        "fixed" => CommitPolicy::new().self_clocking(false),
        "self_clocking" => CommitPolicy::new().self_clocking(true),
        _ => CommitPolicy::new(),
    }
}

/// The acks of an ideal committer on this disk at one offered rate (see the module docs).
#[derive(Clone, Debug, Serialize)]
pub(super) struct FloorRow {
    pub(super) offered_per_s: u64,
    pub(super) ack_p50_ms: f64,
    pub(super) ack_p99_ms: f64,
}

/// Bare durable commits back to back: when each started and ended, seconds from the first.
struct DiskTrace {
    commits: Vec<(f64, f64)>,
}

impl DiskTrace {
    fn durations_ms(&self) -> Vec<f64> {
        self.commits.iter().map(|(s, e)| (e - s) * 1e3).collect()
    }

    /// Share of the trace's time spent in commits slower than `factor` times `median_ms`.
    fn stall_share(&self, median_ms: f64, factor: f64) -> f64 {
        let (Some(first), Some(last)) = (self.commits.first(), self.commits.last()) else {
            return 0.0;
        };
        let span = last.1 - first.0;
        let stalled: f64 = self
            .commits
            .iter()
            .map(|(s, e)| e - s)
            .filter(|d| d * 1e3 > factor * median_ms)
            .sum();
        if span > 0.0 { stalled / span } else { 0.0 }
    }

    /// When a commit started at `t` would be durable: not before the trace's commit in
    /// progress at `t` ended (the disk is busy, or stalled, until then), and not sooner than
    /// a median commit after `t`.
    fn durable_at(&self, t: f64, median_s: f64) -> f64 {
        let k = self.commits.partition_point(|(s, _)| *s <= t);
        let busy_until = k.checked_sub(1).map_or(t, |k| self.commits[k].1);
        busy_until.max(t + median_s)
    }

    /// Ack latencies (ms) of records arriving every `1 / rate` s over the trace, under an
    /// ideal self-clocking committer: a commit starts as soon as a record is waiting and the
    /// previous commit is durable, and takes every record waiting then.
    fn ideal_acks(&self, rate: f64, median_ms: f64) -> Vec<f64> {
        let Some(&(_, end)) = self.commits.last() else {
            return Vec::new();
        };
        let median_secs = median_ms / 1e3;
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a count of arrivals, small and positive"
        )]
        let n = (end * rate) as usize;
        let arrival = |i: usize| i as f64 / rate;
        let mut acks = Vec::with_capacity(n);
        let (mut now, mut i) = (0.0f64, 0usize);
        while i < n {
            now = now.max(arrival(i));
            let durable = self.durable_at(now, median_secs);
            while i < n && arrival(i) <= now {
                acks.push((durable - arrival(i)) * 1e3);
                i += 1;
            }
            now = durable;
        }
        acks
    }
}

/// Median and 99th percentile (nearest rank) of `values`.
fn p50_p99(values: &mut [f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let p50 = median(values);
    // `median` sorted the values.
    let p99 = values[(values.len() * 99).div_ceil(100).clamp(1, values.len()) - 1];
    (p50, p99)
}

/// One run of the runner at one offered load under one policy.
struct PacedRun {
    achieved_per_s: f64,
    ack_p50_ms: f64,
    ack_p99_ms: f64,
}

/// Runs the study: the disk's commit latency, then every (policy, load) pair `repeats`
/// times. At each load the two policies alternate, the first one flipping every repeat, and
/// the disk settles between runs, so neither policy always follows the other's writes.
pub(super) fn latency_study(ctx: &Ctx, repeats: usize) -> Result<LatencyStudy> {
    let trace = disk_trace(ctx, &ctx.dir.join("latency-bare"))?;
    let (disk_commit_ms, disk_commit_p99_ms) = p50_p99(&mut trace.durations_ms());
    let floors: Vec<FloorRow> = OFFERED
        .into_iter()
        .flatten()
        .map(|rate| {
            let (ack_p50_ms, ack_p99_ms) =
                p50_p99(&mut trace.ideal_acks(rate as f64, disk_commit_ms));
            FloorRow {
                offered_per_s: rate,
                ack_p50_ms,
                ack_p99_ms,
            }
        })
        .collect();
    let disk_stall_share = trace.stall_share(disk_commit_ms, 5.0);
    eprintln!(
        "latency: disk commit p50 {disk_commit_ms:.2} ms p99 {disk_commit_p99_ms:.2} ms, {:.1}% of the time in stalls over 5x the median",
        disk_stall_share * 100.0
    );
    for f in &floors {
        eprintln!(
            "latency floor (ideal committer on this disk): offered {:>8} ack p50 {:.2} ms p99 {:.2} ms",
            f.offered_per_s, f.ack_p50_ms, f.ack_p99_ms
        );
    }
    let n = POLICIES.len();
    let mut runs: Vec<Vec<PacedRun>> = (0..OFFERED.len() * n).map(|_| Vec::new()).collect();
    for repeat in 0..repeats {
        for (i, offered) in OFFERED.into_iter().enumerate() {
            // The order rotates every repeat, so no policy always follows another's writes.
            for k in 0..n {
                let p = (k + repeat) % n;
                let path = ctx.dir.join(format!("latency-{i}-{p}"));
                let run = paced_run(ctx, &path, offered, policy(POLICIES[p]))?;
                let _ = std::fs::remove_file(&path);
                settle(&ctx.dir);
                eprintln!(
                    "latency {}/{repeats}: {:<13} offered {:>8} achieved {:>9.0}/s ack p50 {:.2} ms p99 {:.2} ms",
                    repeat + 1,
                    POLICIES[p],
                    offered.map_or_else(|| "unbounded".to_owned(), |r| r.to_string()),
                    run.achieved_per_s,
                    run.ack_p50_ms,
                    run.ack_p99_ms
                );
                runs[n * i + p].push(run);
            }
        }
    }
    let rows: Vec<LatencyRow> = runs
        .iter()
        .enumerate()
        .map(|(k, runs)| {
            let pick =
                |f: fn(&PacedRun) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
            LatencyRow {
                policy: POLICIES[k % n],
                offered_per_s: OFFERED[k / n],
                achieved_per_s: pick(|r| r.achieved_per_s),
                ack_p50_ms: pick(|r| r.ack_p50_ms),
                ack_p99_ms: pick(|r| r.ack_p99_ms),
                repeats: runs.len(),
            }
        })
        .collect();
    let row = |policy: &str, offered: Option<u64>| {
        rows.iter()
            .find(|r| r.policy == policy && r.offered_per_s == offered)
    };
    let light_floor = floors.iter().find(|f| f.offered_per_s == 1_000);
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    // At 1,000/s: p50 and p99 over the disk's median commit, p99 over the floor's;
    // unbounded: throughput over the fixed policy's.
    let goals = |name: &str| {
        let light = row(name, Some(1_000));
        let unbounded = row(name, None)
            .zip(row("fixed", None))
            .and_then(|(s, f)| ratio(s.achieved_per_s, f.achieved_per_s));
        (
            light.and_then(|r| ratio(r.ack_p50_ms, disk_commit_ms)),
            light.and_then(|r| ratio(r.ack_p99_ms, disk_commit_ms)),
            light
                .zip(light_floor)
                .and_then(|(r, f)| ratio(r.ack_p99_ms, f.ack_p99_ms)),
            unbounded,
        )
    };
    let (sc_p50, sc_p99, sc_floor, sc_unbounded) = goals("self_clocking");
    let (d_p50, d_p99, d_floor, d_unbounded) = goals("default");
    Ok(LatencyStudy {
        disk_commit_ms,
        disk_commit_p99_ms,
        disk_stall_share,
        floors,
        self_clocking_p50_vs_disk: sc_p50,
        self_clocking_p99_vs_disk: sc_p99,
        self_clocking_p99_vs_floor: sc_floor,
        self_clocking_unbounded_vs_fixed: sc_unbounded,
        default_p50_vs_disk: d_p50,
        default_p99_vs_disk: d_p99,
        default_p99_vs_floor: d_floor,
        default_unbounded_vs_fixed: d_unbounded,
        rows,
    })
}

/// Bare redb (its default, exclusive mode) durable commits of one 1 KiB insert each, back to
/// back, for three times `ctx.run_for` (at least 50 commits): long enough that the disk's
/// occasional stalls show in the trace about as often as in the paced runs.
fn disk_trace(ctx: &Ctx, path: &Path) -> Result<DiskTrace> {
    let db = redb::Builder::new().create(path)?;
    let txn = db.begin_write()?;
    txn.open_table(BARE_TABLE)?;
    txn.commit()?;
    let mut commits = Vec::new();
    let start = Instant::now();
    let mut id = 0u64;
    while start.elapsed() < ctx.run_for * 3 || commits.len() < 50 {
        let t = start.elapsed().as_secs_f64();
        let txn = db.begin_write()?;
        txn.open_table(BARE_TABLE)?
            .insert(id, ctx.payload.as_slice())?;
        txn.commit()?;
        commits.push((t, start.elapsed().as_secs_f64()));
        id += 1;
    }
    drop(db);
    let _ = std::fs::remove_file(path);
    Ok(DiskTrace { commits })
}

/// The runner with default options but `policy` over a source that
/// yields record `i` no earlier than `i / offered` seconds after the start; records are
/// 1 KiB outputs that cost nothing to compute, so what is measured is the commit path.
fn paced_run(
    ctx: &Ctx,
    path: &Path,
    offered: Option<u64>,
    policy: CommitPolicy,
) -> Result<PacedRun> {
    let store = Store::open(path)?;
    let job = store.job::<Discard<Bytes>>("latency", JobOptions::new().commit_policy(policy))?;
    let acked = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&acked);
    let runner = Runner::new(job)
        .workers(ctx.workers)
        .on_durable(move |ack| {
            counter.fetch_add(ack.records(), Ordering::Relaxed);
        });
    let stop = runner.stop_handle();
    let run_for = ctx.run_for.max(Duration::from_millis(800));
    let window = thread::spawn(move || {
        thread::sleep(run_for / 4);
        let (t1, c1) = (Instant::now(), acked.load(Ordering::Relaxed));
        thread::sleep(run_for.saturating_sub(run_for / 4));
        let (t2, c2) = (Instant::now(), acked.load(Ordering::Relaxed));
        stop.stop();
        c2.saturating_sub(c1) as f64 / (t2 - t1).as_secs_f64()
    });
    let start = Instant::now();
    let payload = ctx.payload.clone();
    let report = runner.run(
        IdSource::new(0..u64::MAX - 1, move |id| {
            if let Some(rate) = offered {
                let due = start + Duration::from_secs_f64(id as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
            }
            Ok::<u64, BoxError>(id)
        }),
        move |_: resumable::RecordContext, _: &u64| Ok::<_, ProcessError>(Bytes(payload.clone())),
    )?;
    let achieved_per_s = window
        .join()
        .map_err(|_| anyhow!("the window thread panicked"))?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(PacedRun {
        achieved_per_s,
        ack_p50_ms: ms(report.stats.ack_latency_p50),
        ack_p99_ms: ms(report.stats.ack_latency_p99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commits of 1 ms back to back for 10 s, but the one starting at 5 s stalls for 200 ms.
    fn trace_with_one_stall() -> DiskTrace {
        let ms = |k: u32| f64::from(k) / 1000.0;
        let mut commits: Vec<(f64, f64)> = (0..5000).map(|k| (ms(k), ms(k + 1))).collect();
        commits.push((ms(5000), ms(5200)));
        commits.extend((5200..10_000).map(|k| (ms(k), ms(k + 1))));
        DiskTrace { commits }
    }

    #[test]
    fn the_floor_acks_one_commit_after_arrival_and_waits_out_a_stall() {
        let trace = trace_with_one_stall();
        let (p50, _) = p50_p99(&mut trace.durations_ms());
        assert!((p50 - 1.0).abs() < 1e-6, "median commit {p50} ms");
        let share = trace.stall_share(p50, 5.0);
        assert!((share - 0.2 / 10.0).abs() < 1e-3, "stall share {share}");
        // At 100 records/s (10 ms apart) the committer is idle when each record arrives:
        // a record is durable one median commit later, except the ones arriving in the
        // stall, which wait for its end: 2% of them, so the stall sets the p99.
        let mut acks = trace.ideal_acks(100.0, p50);
        assert_eq!(acks.len(), 1000);
        let stalled: Vec<f64> = acks.iter().copied().filter(|&a| a > 1.5).collect();
        assert_eq!(
            stalled.len(),
            20,
            "the 20 arrivals during the 200 ms stall: {stalled:?}"
        );
        assert!(stalled.iter().all(|&a| a <= 200.0 + 1e-6));
        let (p50, p99) = p50_p99(&mut acks);
        assert!((p50 - 1.0).abs() < 1e-6, "p50 {p50}");
        assert!(p99 > 10.0, "2% of the records waited out the stall: {p99}");
    }

    #[test]
    fn the_floor_groups_records_that_arrive_during_a_commit() {
        // 10,000 records/s against 1 ms commits: ten arrive per commit, and each waits for
        // the end of the commit in progress and then its own.
        let trace = DiskTrace {
            commits: (0..1000u32)
                .map(|k| (f64::from(k) / 1e3, f64::from(k + 1) / 1e3))
                .collect(),
        };
        let mut acks = trace.ideal_acks(10_000.0, 1.0);
        let (_, p99) = p50_p99(&mut acks);
        assert!(
            acks.iter().all(|&a| (0.999..=2.0 + 1e-6).contains(&a)),
            "{acks:?}"
        );
        assert!(
            p99 > 1.5,
            "records arriving mid-commit wait for the next: {p99}"
        );
    }
}
