//! The small-record job of `resumable bench` on its own, for profiling and quick A/B runs:
//! the reference job at about 10 µs of CPU per record (a byte-serial hash over a 1 KiB
//! buffer that becomes the output), run without checkpointing (W workers feeding a thread
//! that appends to a buffered file) and through `Runner` with durable acks, taking turns.
//!
//! ```text
//! cargo run --release --example small_records -- [DIR] [ROUNDS] [SECONDS] [MODE] [COST_US] [PASSES]
//! ```
//! `MODE` is `both` (default: prints the overhead of each round and the median), `runner` or
//! `plain` (one variant only, e.g. under `perf record`). DIR defaults to the system temp dir.
//! `PASSES` fixes the work per record (else calibrated to `COST_US` of CPU), so runs of two
//! builds compare. Overhead is reported in throughput and in process CPU per record.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use resumable::{BoxError, Bytes, Discard, IdSource, JobOptions, ProcessError, Runner, Store};

const OUTPUT_BYTES: usize = 1024;

/// The bench's reference record: `passes` rounds of an FNV-style mix over 1 KiB.
fn reference_record(id: u64, passes: u32) -> Vec<u8> {
    let mut buf = vec![0u8; OUTPUT_BYTES];
    let mut h = 0xcbf2_9ce4_8422_2325 ^ id;
    for _ in 0..passes {
        for b in &mut buf {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            *b = (h >> 29) as u8;
        }
    }
    buf
}

/// CPU time this thread has run, nanoseconds (Linux `/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time of the whole process (user + system), nanoseconds (Linux `/proc/self/stat`).
fn process_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let mut fields = rest.split_whitespace().skip(11);
    let mut tick = || {
        fields
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (tick() + tick()) * 10_000_000
}

/// Passes that take about `cost_us` of this thread's CPU time (so other load on the machine
/// does not skew it).
fn calibrate(cost_us: u64) -> u32 {
    let trial = 32u32;
    let (cpu, start) = (thread_cpu_ns(), Instant::now());
    let mut records = 0u64;
    while start.elapsed() < Duration::from_millis(200) {
        std::hint::black_box(reference_record(records, trial));
        records += 1;
    }
    let per_pass_ns = (thread_cpu_ns() - cpu) as f64 / (records as f64 * f64::from(trial));
    let passes = (cost_us as f64 * 1000.0 / per_pass_ns)
        .round()
        .clamp(1.0, 1e6);
    #[expect(clippy::cast_sign_loss, reason = "clamped to 1..=10^6 just above")]
    let passes = passes as u32;
    passes
}

/// Records counted by `settled` per second between a quarter of `run_for` and its end, and
/// the process's CPU time per record over that window, microseconds.
fn steady_rate(run_for: Duration, settled: &AtomicU64) -> (f64, f64) {
    thread::sleep(run_for / 4);
    let (t1, c1, cpu1) = (
        Instant::now(),
        settled.load(Ordering::Relaxed),
        process_cpu_ns(),
    );
    thread::sleep(run_for.saturating_sub(run_for / 4));
    let (t2, c2, cpu2) = (
        Instant::now(),
        settled.load(Ordering::Relaxed),
        process_cpu_ns(),
    );
    let records = (c2 - c1).max(1) as f64;
    (
        records / (t2 - t1).as_secs_f64(),
        (cpu2 - cpu1) as f64 / 1e3 / records,
    )
}

fn plain(
    dir: &std::path::Path,
    workers: usize,
    passes: u32,
    run_for: Duration,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let (tx, rx) = crossbeam_channel::bounded::<(u64, Vec<u8>)>(4096);
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&written);
    let file = File::create(dir.join("plain.out"))?;
    let sink = thread::spawn(move || {
        let mut out = BufWriter::new(file);
        for (id, output) in rx {
            out.write_all(&id.to_le_bytes())?;
            out.write_all(&output)?;
            counter.fetch_add(1, Ordering::Relaxed);
        }
        out.flush()
    });
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (tx, stop, next) = (tx.clone(), Arc::clone(&stop), Arc::clone(&next));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    if tx.send((id, reference_record(id, passes))).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let rate = steady_rate(run_for, &written);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().map_err(|_| "a worker panicked")?;
    }
    sink.join().map_err(|_| "the sink panicked")??;
    let _ = std::fs::remove_file(dir.join("plain.out"));
    Ok(rate)
}

fn runner(
    dir: &std::path::Path,
    workers: usize,
    passes: u32,
    run_for: Duration,
) -> Result<((f64, f64), resumable::Stats), Box<dyn std::error::Error>> {
    let path = dir.join("runner.redb");
    let store = Store::open(&path)?;
    let job = store.job::<Discard<Bytes>>("bench", JobOptions::new())?;
    let acked = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&acked);
    let runner = Runner::new(job).workers(workers).on_durable(move |ack| {
        counter.fetch_add(ack.records(), Ordering::Relaxed);
    });
    let stop = runner.stop_handle();
    let window = thread::spawn(move || {
        let rate = steady_rate(run_for, &acked);
        stop.stop();
        rate
    });
    let report = runner.run(
        IdSource::new(0..u64::MAX - 1, Ok::<u64, BoxError>),
        move |ctx: resumable::RecordContext, _: &u64| {
            Ok::<_, ProcessError>(Bytes(reference_record(ctx.id, passes)))
        },
    )?;
    let rate = window.join().map_err(|_| "the window thread panicked")?;
    drop(report.job);
    drop(store);
    let _ = std::fs::remove_file(&path);
    Ok((rate, report.stats))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args.next().map_or_else(std::env::temp_dir, Into::into);
    let rounds: usize = args.next().map_or(Ok(5), |s| s.parse())?;
    let run_for = Duration::from_secs_f64(args.next().map_or(Ok(2.0), |s| s.parse())?);
    let mode = args.next().unwrap_or_else(|| "both".to_owned());
    let cost_us: u64 = args.next().map_or(Ok(10), |s| s.parse())?;
    // A fixed pass count makes runs of different builds comparable on a busy machine.
    let passes: Option<u32> = args.next().map(|s| s.parse()).transpose()?;
    let dir = tempfile::tempdir_in(&base)?;
    let workers = thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let passes = passes.unwrap_or_else(|| calibrate(cost_us));
    println!(
        "{cost_us} us/record ({passes} passes), {workers} workers, {rounds} rounds x {run_for:?}"
    );
    let mut overheads = Vec::new();
    for round in 0..rounds {
        let p = if mode == "runner" {
            None
        } else {
            Some(plain(dir.path(), workers, passes, run_for)?)
        };
        let r = if mode == "plain" {
            None
        } else {
            Some(runner(dir.path(), workers, passes, run_for)?)
        };
        match (p, r) {
            (Some((p, pc)), Some(((r, rc), s))) => {
                let overhead = 1.0 - r / p;
                overheads.push((overhead, 1.0 - pc / rc));
                println!(
                    "round {round}: plain {p:>9.0}/s {pc:.2} us cpu/rec; runner {r:>9.0}/s {rc:.2} us cpu/rec; overhead {:.1}% (cpu {:.1}%), commits {}, ack p50 {:.2?}",
                    overhead * 100.0,
                    (1.0 - pc / rc) * 100.0,
                    s.commits,
                    s.ack_latency_p50
                );
            }
            (Some((p, pc)), None) => println!("round {round}: plain {p:>9.0}/s {pc:.2} us cpu/rec"),
            (None, Some(((r, rc), s))) => println!(
                "round {round}: runner {r:>9.0}/s {rc:.2} us cpu/rec (commits {}, ack p50 {:.2?})",
                s.commits, s.ack_latency_p50
            ),
            (None, None) => {}
        }
    }
    if !overheads.is_empty() {
        let mut wall: Vec<f64> = overheads.iter().map(|o| o.0).collect();
        let mut cpu: Vec<f64> = overheads.iter().map(|o| o.1).collect();
        wall.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        println!(
            "median overhead {:.1}% (cpu per record {:.1}%)",
            wall[wall.len() / 2] * 100.0,
            cpu[cpu.len() / 2] * 100.0
        );
    }
    Ok(())
}
