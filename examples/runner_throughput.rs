//! Measures the parallel runner: records/s and durable-acknowledgement latency (p50/p99,
//! from a record's output being ready to its `on_durable` callback) with 1, 2 and 4
//! workers, per-record durable acks, `Durability::Immediate`; against the fsync-bound
//! baseline of one durable commit per record.
//!
//! ```text
//! cargo run --release --example runner_throughput -- [DIR] [RECORDS] [WORK_US]
//! ```
//! DIR defaults to the system temp dir (use a directory on the disk you care about: a
//! tmpfs makes fsync free).

use std::time::{Duration, Instant};

use resumable::{
    AdaptivePolicy, CommitPolicy, Discard, IdSource, JobOptions, ProcessError, Runner, Store,
};

fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args.next().map_or_else(std::env::temp_dir, Into::into);
    let records: u64 = args.next().map_or(Ok(20_000), |s| s.parse())?;
    let work = Duration::from_micros(args.next().map_or(Ok(20), |s| s.parse())?);
    let dir = tempfile::tempdir_in(&base)?;
    println!(
        "{records} records, {work:?} of CPU per record, store in {}",
        base.display()
    );

    // Baseline: one fsynced commit per record, single thread.
    {
        let store = Store::open(dir.path().join("baseline.redb"))?;
        let opts = JobOptions::new().commit_policy(CommitPolicy::per_record());
        let mut job = store.job::<Discard<u64>>("baseline", opts)?;
        let n = records.min(2000);
        let t = Instant::now();
        for id in 0..n {
            spin(work);
            job.submit(id, id)?;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "baseline (1 durable commit per record): {:>9.0} records/s",
            n as f64 / secs
        );
    }

    // fixed: the default policy (groups of 1,000 or 50 ms). eager: classic group commit,
    // no waiting (max_group_delay 0): each commit takes whatever arrived during the last
    // one. adaptive: the adaptive policy (5% target) with the default 50 ms delay cap.
    for mode in ["fixed", "eager", "adaptive"] {
        for workers in [1usize, 2, 4] {
            let name = format!("w{workers}-{mode}");
            let store = Store::open(dir.path().join(format!("{name}.redb")))?;
            let mut opts = JobOptions::new();
            if mode == "eager" {
                opts = opts.commit_policy(CommitPolicy::new().max_group_delay(Duration::ZERO));
            }
            let job = store.job::<Discard<u64>>(&name, opts)?;
            let mut runner = Runner::new(job).workers(workers);
            if mode == "adaptive" {
                runner = runner.adaptive(AdaptivePolicy::new());
            }
            let t = Instant::now();
            let report = runner.run(IdSource::new(0..records, Ok), |_id, x: &u64| {
                spin(work);
                Ok::<_, ProcessError>(*x)
            })?;
            let secs = t.elapsed().as_secs_f64();
            let s = &report.stats;
            println!(
                "{mode:>8} workers={workers}: {:>9.0} records/s, ack p50 {:>8.2?} p99 {:>8.2?}, {} commits, mean group {:.0}, fsyncs {}, commit p50 {:.2?}",
                records as f64 / secs,
                s.ack_latency_p50,
                s.ack_latency_p99,
                s.commits,
                s.mean_group,
                s.fsyncs,
                s.commit_latency_p50,
            );
        }
    }
    Ok(())
}
