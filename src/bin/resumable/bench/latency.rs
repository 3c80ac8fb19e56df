//! Durable-ack latency against offered load: the runner fed at fixed rates (and
//! unbounded) under the fixed group-commit policy and the self-clocking one, side by side,
//! with the disk's own durable-commit latency (bare redb, one insert per commit) measured
//! in the same run.

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
use super::variants::BARE_TABLE;

/// The offered loads, records per second (`None`: as fast as the runner takes them).
pub(super) const OFFERED: [Option<u64>; 4] = [Some(1_000), Some(10_000), Some(100_000), None];

/// One run of the runner at one offered load under one policy.
#[derive(Clone, Debug, Serialize)]
pub(super) struct LatencyRow {
    pub(super) policy: &'static str,
    pub(super) offered_per_s: Option<u64>,
    pub(super) achieved_per_s: f64,
    pub(super) ack_p50_ms: f64,
    pub(super) ack_p99_ms: f64,
}

/// The `latency` object of `resumable bench --json`.
#[derive(Clone, Debug, Serialize)]
pub(super) struct LatencyStudy {
    /// Median latency of a bare redb durable commit of one insert, milliseconds.
    pub(super) disk_commit_ms: f64,
    pub(super) rows: Vec<LatencyRow>,
}

/// Runs the study: the disk's commit latency, then every (policy, load) pair, the two
/// policies alternating at each load.
pub(super) fn latency_study(ctx: &Ctx) -> Result<LatencyStudy> {
    let disk_commit_ms = disk_commit_ms(ctx, &ctx.dir.join("latency-bare"))?;
    let mut rows = Vec::new();
    for (i, offered) in OFFERED.into_iter().enumerate() {
        for self_clocking in [false, true] {
            let path = ctx.dir.join(format!("latency-{i}-{self_clocking}"));
            let row = paced_run(ctx, &path, offered, self_clocking)?;
            let _ = std::fs::remove_file(&path);
            eprintln!(
                "latency: {:<13} offered {:>8} achieved {:>9.0}/s ack p50 {:.2} ms p99 {:.2} ms",
                row.policy,
                offered.map_or_else(|| "unbounded".to_owned(), |r| r.to_string()),
                row.achieved_per_s,
                row.ack_p50_ms,
                row.ack_p99_ms
            );
            rows.push(row);
        }
    }
    Ok(LatencyStudy {
        disk_commit_ms,
        rows,
    })
}

/// Median wall time of one durable commit of one 1 KiB insert, bare redb (its default,
/// exclusive mode), over `ctx.run_for` or at least 50 commits.
fn disk_commit_ms(ctx: &Ctx, path: &Path) -> Result<f64> {
    let db = redb::Builder::new().create(path)?;
    let txn = db.begin_write()?;
    txn.open_table(BARE_TABLE)?;
    txn.commit()?;
    let mut times = Vec::new();
    let start = Instant::now();
    let mut id = 0u64;
    while start.elapsed() < ctx.run_for || times.len() < 50 {
        let t = Instant::now();
        let txn = db.begin_write()?;
        txn.open_table(BARE_TABLE)?
            .insert(id, ctx.payload.as_slice())?;
        txn.commit()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        id += 1;
    }
    drop(db);
    let _ = std::fs::remove_file(path);
    Ok(median(&mut times))
}

/// The runner with default options (and `self_clocking` set or not) over a source that
/// yields record `i` no earlier than `i / offered` seconds after the start; records are
/// 1 KiB outputs that cost nothing to compute, so what is measured is the commit path.
fn paced_run(
    ctx: &Ctx,
    path: &Path,
    offered: Option<u64>,
    self_clocking: bool,
) -> Result<LatencyRow> {
    let store = Store::open(path)?;
    let policy = CommitPolicy::new().self_clocking(self_clocking);
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
    Ok(LatencyRow {
        policy: if self_clocking {
            "self_clocking"
        } else {
            "fixed"
        },
        offered_per_s: offered,
        achieved_per_s,
        ack_p50_ms: ms(report.stats.ack_latency_p50),
        ack_p99_ms: ms(report.stats.ack_latency_p99),
    })
}
