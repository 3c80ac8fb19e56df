//! The latency rows of `resumable bench` on their own, repeated: the runner fed at a fixed
//! rate (or unbounded) with 1 KiB outputs that cost nothing to compute, under the fixed
//! group-commit policy, the self-clocking one and the default (self-clocking while the
//! workers wait for input), taking turns (the order rotates every repeat), with the run's commit count, mean group, commit latency and snapshot and
//! compaction counts, so a slow row can be explained.
//!
//! ```text
//! cargo run --release --example latency_policies -- [DIR] [REPEATS] [SECONDS] [RATE|unbounded]...
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use resumable::{
    BoxError, Bytes, CommitPolicy, Discard, IdSource, JobOptions, ProcessError, Runner, Store,
};

fn paced_run(
    dir: &std::path::Path,
    offered: Option<u64>,
    (name, policy): (&str, CommitPolicy),
    run_for: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let path = dir.join("latency.redb");
    let store = Store::open(&path)?;
    let job = store.job::<Discard<Bytes>>("latency", JobOptions::new().commit_policy(policy))?;
    let acked = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&acked);
    let runner = Runner::new(job).workers(2).on_durable(move |ack| {
        counter.fetch_add(ack.records(), Ordering::Relaxed);
    });
    let stop = runner.stop_handle();
    let window = thread::spawn(move || {
        thread::sleep(run_for / 4);
        let (t1, c1) = (Instant::now(), acked.load(Ordering::Relaxed));
        thread::sleep(run_for.saturating_sub(run_for / 4));
        let (t2, c2) = (Instant::now(), acked.load(Ordering::Relaxed));
        stop.stop();
        (c2 - c1) as f64 / (t2 - t1).as_secs_f64()
    });
    let start = Instant::now();
    let payload = vec![0x5au8; 1024];
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
    let achieved = window.join().map_err(|_| "the window thread panicked")?;
    let s = &report.stats;
    println!(
        "{name:<13} offered {:>9} achieved {achieved:>9.0}/s ack p50 {:>7.2} ms p99 {:>8.2} ms | commits {} mean group {:.0} commit p50 {:.2?} p99 {:.2?} snapshots {} compactions {}",
        offered.map_or_else(|| "unbounded".to_owned(), |r| r.to_string()),
        s.ack_latency_p50.as_secs_f64() * 1e3,
        s.ack_latency_p99.as_secs_f64() * 1e3,
        s.commits,
        s.mean_group,
        s.commit_latency_p50,
        s.commit_latency_p99,
        s.snapshots,
        s.compactions,
    );
    drop(report.job);
    drop(store);
    let _ = std::fs::remove_file(&path);
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args.next().map_or_else(std::env::temp_dir, Into::into);
    let repeats: usize = args.next().map_or(Ok(3), |s| s.parse())?;
    let run_for = Duration::from_secs_f64(args.next().map_or(Ok(2.0), |s| s.parse())?);
    let mut loads: Vec<Option<u64>> = args
        .map(|a| {
            if a == "unbounded" {
                Ok(None)
            } else {
                a.parse().map(Some)
            }
        })
        .collect::<Result<_, _>>()?;
    if loads.is_empty() {
        loads = vec![Some(1_000), Some(10_000), Some(100_000), None];
    }
    let dir = tempfile::tempdir_in(&base)?;
    let policies = [
        ("fixed", CommitPolicy::new().self_clocking(false)),
        ("self_clocking", CommitPolicy::new().self_clocking(true)),
        ("default", CommitPolicy::new()),
    ];
    for repeat in 0..repeats {
        for &offered in &loads {
            for k in 0..policies.len() {
                let policy = policies[(k + repeat) % policies.len()].clone();
                paced_run(dir.path(), offered, policy, run_for)?;
            }
        }
    }
    Ok(())
}
