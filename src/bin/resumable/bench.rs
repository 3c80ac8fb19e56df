//! `resumable bench`: what exactly-once checkpointing costs on this machine's disk, measured
//! side by side with its baselines in one run (the way `PostgreSQL` ships `pg_test_fsync`).
//!
//! Seven variants, all writing 1 KiB outputs into the same directory, run in rounds; each
//! round runs every variant once for the same time, in an order rotated per round, so drift
//! (page cache, disk firmware, other tenants) hits all of them alike. Each variant gets a
//! fresh file per round. The medians give the ratios the issue sets bars for:
//! `per_record_vs_fdatasync` = 3/1, `per_record_vs_redb_bare` = 3/2,
//! `group_vs_redb_bare` = 5/4, `job_overhead` = 1 - 7/6.
//!
//! Variant 6 (`no_checkpoint_job`) is the reference job on W worker threads feeding one
//! writer thread that appends outputs to a buffered file; variant 7
//! (`resumable_runner_job`) is the same processor run by [`resumable::Runner`] with its
//! defaults (the job's default commit policy, durable acknowledgements, the background
//! maintainer), stopped with its `StopHandle` after the same time. Both are measured over a
//! steady-state window (from a quarter of the run to its end), so start-up, the final drain
//! and the acknowledgement lag cancel; their process CPU time per record over that window
//! gives `job_overhead_cpu`, the same overhead in a form that holds when other load shares
//! the cores.
//!
//! `resumable` outputs are `resumable::Bytes`, 1 KiB serialized as one byte string; see
//! `Bytes` for what a plain `Vec<u8>` costs instead. The bare-redb variants insert the same 1 KiB slices.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use resumable::{
    BoxError, Bytes, CommitPolicy, Discard, Fold, IdSource, JobOptions, ProcessError, Runner,
    Store, StoreOptions,
};
use serde_json::{Value, json};

/// Size of every output the variants write.
const OUTPUT_BYTES: usize = 1024;
/// Group size of `redb_bare_group_1000`.
const BARE_GROUP: u64 = 1000;
/// The one table the bare-redb variants write.
const BARE_TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("bench");
/// Records in flight between the reference job's workers and its sink.
const CHANNEL_BOUND: usize = 4096;
/// Group size of the per-commit cost probe, and its shape: the small and the large store
/// take turns, `PROBE_ROUNDS` times `PROBE_COMMITS_PER_ROUND` commits each, so drift on a
/// shared disk hits both alike.
const PROBE_GROUP: u64 = 100;
const PROBE_ROUNDS: usize = 10;
const PROBE_COMMITS_PER_ROUND: usize = 10;
const PROBE_COMMITS: usize = PROBE_ROUNDS * PROBE_COMMITS_PER_ROUND;

/// Arguments of `resumable bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {
    /// Directory to run in: a fresh subdirectory is made there and removed at the end
    /// [default: the current directory]. Put it on the disk you want measured.
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// Short rounds and a 10^5-record resume store: finishes in under a minute.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
    /// CPU time the reference job spends per record, in microseconds.
    #[arg(long, value_name = "U", default_value_t = 100)]
    pub(crate) cost_us: u64,
    /// Worker threads of the reference job [default: the machine's cores].
    #[arg(long, value_name = "W")]
    pub(crate) workers: Option<usize>,
}

/// The variants, in the numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    FdatasyncAppend,
    RedbBarePerRecord,
    ResumablePerRecord,
    RedbBareGroup1000,
    ResumableGroupDefault,
    NoCheckpointJob,
    ResumableRunnerJob,
}

impl Variant {
    const ALL: [Variant; 7] = [
        Variant::FdatasyncAppend,
        Variant::RedbBarePerRecord,
        Variant::ResumablePerRecord,
        Variant::RedbBareGroup1000,
        Variant::ResumableGroupDefault,
        Variant::NoCheckpointJob,
        Variant::ResumableRunnerJob,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::FdatasyncAppend => "fdatasync_append",
            Variant::RedbBarePerRecord => "redb_bare_per_record",
            Variant::ResumablePerRecord => "resumable_per_record",
            Variant::RedbBareGroup1000 => "redb_bare_group_1000",
            Variant::ResumableGroupDefault => "resumable_group_default",
            Variant::NoCheckpointJob => "no_checkpoint_job",
            Variant::ResumableRunnerJob => "resumable_runner_job",
        }
    }

    /// Whose CPU time `cpu_us_per_record` counts.
    fn cpu_scope(self) -> Option<&'static str> {
        match self {
            Variant::FdatasyncAppend => None,
            Variant::NoCheckpointJob | Variant::ResumableRunnerJob => Some("process"),
            _ => Some("writer thread"),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Variant::FdatasyncAppend => "append 1 KiB + fdatasync per record",
            Variant::RedbBarePerRecord => "redb: 1 insert per durable commit",
            Variant::ResumablePerRecord => "CommitPolicy::per_record()",
            Variant::RedbBareGroup1000 => "redb: 1000 inserts per durable commit",
            Variant::ResumableGroupDefault => "default policy, one caller thread",
            Variant::NoCheckpointJob => "reference job -> BufWriter, no durability",
            Variant::ResumableRunnerJob => "reference job through Runner, durable acks",
        }
    }
}

/// One run of one variant.
#[derive(Debug, Default)]
struct Sample {
    records: u64,
    elapsed: Duration,
    /// CPU time of the thread that wrote to the store (the single caller).
    cpu_ns: Option<u64>,
    /// The runner's durable-acknowledgement latency (output ready to durable), p50 and
    /// p99 in milliseconds, over its recent window.
    ack_ms: Option<(f64, f64)>,
}

impl Sample {
    fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What every variant run needs.
struct Ctx {
    dir: PathBuf,
    run_for: Duration,
    payload: Vec<u8>,
    workers: usize,
    /// Passes of the reference computation that take about `cost_us` on one core.
    passes: u32,
}

/// Removes the bench's directory when the run ends, however it ends.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs `resumable bench`.
pub(crate) fn run(args: &BenchArgs) -> Result<ExitCode> {
    let base = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    let dir = base.join(format!(".resumable-bench-{}", std::process::id()));
    fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let work = WorkDir(dir);
    let cores = thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let workers = args.workers.unwrap_or(cores).max(1);
    let (rounds, run_for, resume_records, seq_bytes) = if args.quick {
        (3usize, Duration::from_millis(400), 100_000u64, 64u64 << 20)
    } else {
        // Nine rounds: the fsync-bound variants swing by 1.5x between rounds on a shared
        // disk, and five left their medians at the mercy of one or two bad rounds.
        (9, Duration::from_secs(2), 1_000_000, 512 << 20)
    };
    let load_start = load_average();
    let passes = calibrate(args.cost_us);
    let ctx = Ctx {
        dir: work.0.clone(),
        run_for,
        payload: (0..OUTPUT_BYTES).map(|i| (i * 131 % 251) as u8).collect(),
        workers,
        passes,
    };
    let filesystem = filesystem_of(&ctx.dir);
    eprintln!(
        "resumable bench: {rounds} rounds x {:.1} s per variant in {} ({}), {cores} cores, {workers} workers, reference job {} us/record",
        run_for.as_secs_f64(),
        base.display(),
        filesystem.as_deref().unwrap_or("unknown filesystem"),
        args.cost_us,
    );

    let mut samples: Vec<Vec<Sample>> = Variant::ALL.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for k in 0..Variant::ALL.len() {
            let index = (k + round) % Variant::ALL.len();
            let variant = Variant::ALL[index];
            let sample = run_variant(&ctx, variant, round)
                .with_context(|| format!("variant {} failed", variant.name()))?;
            eprintln!(
                "round {}/{rounds}: {:<24} {:>10.0} records/s",
                round + 1,
                variant.name(),
                sample.rate()
            );
            samples[index].push(sample);
        }
    }

    eprintln!(
        "sequential write ceiling ({} MiB, one fsync)...",
        seq_bytes >> 20
    );
    let seq_mb_s = sequential_write(&ctx.dir.join("sequential.bin"), seq_bytes)?;
    eprintln!("resume and per-commit cost on a store of {resume_records} records...");
    let resume = resume_study(&ctx, resume_records)?;

    let report = Report::new(
        &samples,
        seq_mb_s,
        resume,
        json!({
            "cores": cores,
            "workers": workers,
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
            "filesystem": filesystem,
            "dir": base.display().to_string(),
            "load_average_1min_start": load_start,
            "load_average_1min_end": load_average(),
        }),
        json!({
            "quick": args.quick,
            "rounds": rounds,
            "seconds_per_variant_per_round": run_for.as_secs_f64(),
            "output_bytes": OUTPUT_BYTES,
            "cost_us": args.cost_us,
            "reference_passes": passes,
            "runner": "resumable::Runner with default options, stopped by its StopHandle",
        }),
    );
    drop(work);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        report.print_table();
    }
    Ok(ExitCode::SUCCESS)
}

fn run_variant(ctx: &Ctx, variant: Variant, round: usize) -> Result<Sample> {
    let path = ctx.dir.join(format!("{}-{round}", variant.name()));
    let sample = match variant {
        Variant::FdatasyncAppend => fdatasync_append(ctx, &path),
        Variant::RedbBarePerRecord => redb_bare(ctx, &path, 1),
        Variant::ResumablePerRecord => resumable_single(ctx, &path, CommitPolicy::per_record()),
        Variant::RedbBareGroup1000 => redb_bare(ctx, &path, BARE_GROUP),
        Variant::ResumableGroupDefault => resumable_single(ctx, &path, CommitPolicy::new()),
        Variant::NoCheckpointJob => no_checkpoint_job(ctx, &path),
        Variant::ResumableRunnerJob => runner_job(ctx, &path),
    }?;
    let _ = fs::remove_file(&path);
    settle(&ctx.dir);
    Ok(sample)
}

/// Lets the disk settle between variants: makes the deletion of the last variant's file
/// durable (fsync of the directory) and gives writeback a moment, so that no variant
/// starts while the journal is still busy with the one before it.
fn settle(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    thread::sleep(Duration::from_millis(250));
}

/// CPU time this thread has run, in nanoseconds (Linux: `/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> Option<u64> {
    let text = fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn cpu_since(start: Option<u64>) -> Option<u64> {
    Some(thread_cpu_ns()?.saturating_sub(start?))
}

/// Variant 1: the physical ceiling of one durable append per record.
fn fdatasync_append(ctx: &Ctx, path: &Path) -> Result<Sample> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let mut records = 0u64;
    let start = Instant::now();
    while start.elapsed() < ctx.run_for {
        file.write_all(&ctx.payload)?;
        file.sync_data()?;
        records += 1;
    }
    Ok(Sample {
        records,
        elapsed: start.elapsed(),
        ..Sample::default()
    })
}

/// Variants 2 and 4: bare redb, `group` inserts per `Immediate` commit, the same cache size
/// as a default [`Store`].
fn redb_bare(ctx: &Ctx, path: &Path, group: u64) -> Result<Sample> {
    let mut builder = redb::Builder::new();
    builder.set_cache_size(256 << 20);
    let db = builder.create(path)?;
    let txn = db.begin_write()?;
    txn.open_table(BARE_TABLE)?;
    txn.commit()?;
    let mut id = 0u64;
    let cpu = thread_cpu_ns();
    let start = Instant::now();
    while start.elapsed() < ctx.run_for {
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(BARE_TABLE)?;
            for _ in 0..group {
                table.insert(id, ctx.payload.as_slice())?;
                id += 1;
            }
        }
        txn.commit()?;
    }
    Ok(Sample {
        records: id,
        elapsed: start.elapsed(),
        cpu_ns: cpu_since(cpu),
        ..Sample::default()
    })
}

/// Variants 3 and 5: one caller thread submitting 1 KiB outputs under `policy`.
fn resumable_single(ctx: &Ctx, path: &Path, policy: CommitPolicy) -> Result<Sample> {
    let store = Store::open(path)?;
    let mut job = store.job::<Discard<Bytes>>("bench", JobOptions::new().commit_policy(policy))?;
    job.start()?;
    let mut id = 0u64;
    let cpu = thread_cpu_ns();
    let start = Instant::now();
    while start.elapsed() < ctx.run_for {
        job.submit(id, Bytes(ctx.payload.clone()))?;
        id += 1;
    }
    job.flush()?;
    let elapsed = start.elapsed();
    Ok(Sample {
        records: job.stats().records_committed,
        elapsed,
        cpu_ns: cpu_since(cpu),
        ..Sample::default()
    })
}

/// The reference job's per-record work: `passes` rounds of a byte-serial FNV-style mix over
/// a 1 KiB buffer, which becomes the output. Deterministic, CPU-bound, not vectorizable.
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

/// Passes of [`reference_record`] that take about `cost_us` of CPU on this machine. Timed
/// in this thread's CPU time when the OS reports it, so other load on the machine does not
/// skew it; else in wall time.
fn calibrate(cost_us: u64) -> u32 {
    let trial = 32u32;
    let cpu = thread_cpu_ns();
    let start = Instant::now();
    let mut records = 0u64;
    while start.elapsed() < Duration::from_millis(150) || records < 20 {
        std::hint::black_box(reference_record(records, trial));
        records += 1;
    }
    let spent_ns = cpu_since(cpu).map_or_else(|| start.elapsed().as_nanos() as f64, |ns| ns as f64);
    let per_pass_ns = spent_ns / (records as f64 * f64::from(trial));
    let passes = (cost_us as f64 * 1000.0 / per_pass_ns).round();
    if passes < 1.0 {
        1
    } else if passes > f64::from(u32::MAX) {
        u32::MAX
    } else {
        #[expect(clippy::cast_sign_loss, reason = "bounded to 1..=u32::MAX just above")]
        let p = passes as u32;
        p
    }
}

/// The 1-minute load average (Linux), to show how busy the machine was.
fn load_average() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

type Message = (u64, Vec<u8>);

/// Variant 6: `ctx.workers` threads compute reference records and send them to one writer
/// thread, which appends them to a buffered file: the job without any checkpointing.
fn no_checkpoint_job(ctx: &Ctx, path: &Path) -> Result<Sample> {
    let (tx, rx) = crossbeam_channel::bounded::<Message>(CHANNEL_BOUND);
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let file = File::create(path)?;
    let written = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&written);
    let sink = thread::spawn(move || buffered_sink(file, &rx, &counter));
    let mut handles = Vec::new();
    for _ in 0..ctx.workers {
        let (tx, stop, next, passes) =
            (tx.clone(), Arc::clone(&stop), Arc::clone(&next), ctx.passes);
        handles.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if tx.send((id, reference_record(id, passes))).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let sample = steady_window(ctx.run_for, &written);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().map_err(|_| anyhow!("a worker thread panicked"))?;
    }
    sink.join()
        .map_err(|_| anyhow!("the writer thread panicked"))??;
    Ok(sample)
}

/// Throughput of a running pipeline in steady state: the records `settled` counts between a
/// quarter of `run_for` and its end. Both ends lag by the same pipeline delay (for the
/// runner, the acknowledgement latency), so start-up, the final drain and that lag cancel.
/// `cpu_ns` is the whole process's CPU time over the window (every thread of the pipeline).
fn steady_window(run_for: Duration, settled: &AtomicU64) -> Sample {
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
    Sample {
        records: c2.saturating_sub(c1),
        elapsed: t2 - t1,
        cpu_ns: cpu1.zip(cpu2).map(|(a, b)| b.saturating_sub(a)),
        ack_ms: None,
    }
}

/// CPU time of the whole process (user + system), in nanoseconds, from `/proc/self/stat`
/// (Linux; clock ticks of 10 ms, `USER_HZ` = 100).
fn process_cpu_ns() -> Option<u64> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 10_000_000)
}

fn buffered_sink(
    file: File,
    rx: &crossbeam_channel::Receiver<Message>,
    written: &AtomicU64,
) -> Result<()> {
    let mut out = BufWriter::new(file);
    for (id, output) in rx {
        out.write_all(&id.to_le_bytes())?;
        out.write_all(&output)?;
        written.fetch_add(1, Ordering::Relaxed);
    }
    out.flush()?;
    Ok(())
}

/// Variant 7: the reference processor through [`Runner`] with its defaults; records count
/// when their durable acknowledgement arrives, over the same steady-state window.
fn runner_job(ctx: &Ctx, path: &Path) -> Result<Sample> {
    let store = Store::open(path)?;
    let job = store.job::<Discard<Bytes>>("bench", JobOptions::new())?;
    let acked = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&acked);
    let runner = Runner::new(job)
        .workers(ctx.workers)
        .on_durable(move |ack| {
            counter.fetch_add(ack.records(), Ordering::Relaxed);
        });
    let stop = runner.stop_handle();
    let (run_for, passes) = (ctx.run_for, ctx.passes);
    let window = thread::spawn(move || {
        let sample = steady_window(run_for, &acked);
        stop.stop();
        sample
    });
    let report = runner.run(
        IdSource::new(0..u64::MAX - 1, Ok::<u64, BoxError>),
        move |ctx: resumable::RecordContext, _: &u64| {
            Ok::<_, ProcessError>(Bytes(reference_record(ctx.id, passes)))
        },
    )?;
    let mut sample = window
        .join()
        .map_err(|_| anyhow!("the window thread panicked"))?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    sample.ack_ms = Some((
        ms(report.stats.ack_latency_p50),
        ms(report.stats.ack_latency_p99),
    ));
    Ok(sample)
}

/// Writes `bytes` in 1 MiB chunks to a new file, then one `fdatasync`; MB/s (10^6 bytes).
fn sequential_write(path: &Path, bytes: u64) -> Result<f64> {
    let chunk = vec![0x5au8; 1 << 20];
    let mut file = File::create(path)?;
    let start = Instant::now();
    let mut written = 0u64;
    while written < bytes {
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
    }
    file.sync_data()?;
    let secs = start.elapsed().as_secs_f64();
    drop(file);
    let _ = fs::remove_file(path);
    Ok(written as f64 / 1e6 / secs)
}

/// The resume study's state: a fold that depends on the outputs, so a resume replays the
/// commits after the newest snapshot (a [`Discard`] job skips that replay).
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Tally {
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
struct CommitProbe {
    done_before: u64,
    wall_median_us: f64,
    cpu_mean_us: Option<f64>,
}

#[derive(Debug)]
struct ResumeStudy {
    records: u64,
    file_bytes: u64,
    build_secs: f64,
    probe_low: CommitProbe,
    probe_high: CommitProbe,
    /// The same probes on bare redb (one insert per record), for the growth redb itself has.
    bare_low_us: f64,
    bare_high_us: f64,
    store_open_verified_ms: f64,
    store_open_ms: f64,
    job_open_ms: f64,
    replayed_commits: u64,
    job_open_after_snapshot_ms: f64,
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
fn resume_study(ctx: &Ctx, records: u64) -> Result<ResumeStudy> {
    let path = ctx.dir.join("resume.redb");
    let options = || JobOptions::new().commit_policy(CommitPolicy::new());
    let build_start = Instant::now();
    let fill = |job: &mut resumable::Job<Tally>, next_id: &mut u64, until: u64| {
        while *next_id < until {
            let end = (*next_id + BARE_GROUP).min(until);
            job.commit((*next_id..end).map(|id| (id, Bytes(ctx.payload.clone()))))?;
            *next_id = end;
        }
        anyhow::Ok(())
    };
    let (probe_low, probe_high) = {
        let store = Store::open(&path)?;
        let mut job = store.job::<Tally>("bench", options())?;
        let mut next_id = 0u64;
        fill(
            &mut job,
            &mut next_id,
            records.saturating_sub(PROBE_GROUP * PROBE_COMMITS as u64),
        )?;
        let low_path = ctx.dir.join("probe-low.redb");
        let low_store = Store::open(&low_path)?;
        let mut low_job = low_store.job::<Tally>("bench", options())?;
        let mut low_next = 0u64;
        fill(&mut low_job, &mut low_next, 1000)?;
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
        drop(Store::open(&path)?);
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

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        f64::midpoint(values[mid - 1], values[mid])
    }
}

/// The filesystem type of the mount holding `dir`, from `/proc/mounts` (Linux).
fn filesystem_of(dir: &Path) -> Option<String> {
    let dir = fs::canonicalize(dir).ok()?;
    let mounts = fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = fields.next()?;
            let mount = fields.next()?;
            let kind = fields.next()?;
            dir.starts_with(mount).then(|| {
                (
                    mount.len(),
                    format!("{kind} on {device}, mounted at {mount}"),
                )
            })
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, d)| d)
}

struct VariantResult {
    variant: Variant,
    median: f64,
    min: f64,
    max: f64,
    rounds: Vec<f64>,
    cpu_us_per_record: Option<f64>,
}

struct Report {
    variants: Vec<VariantResult>,
    ack_p50_ms: Option<f64>,
    ack_p99_ms: Option<f64>,
    seq_mb_s: f64,
    resume: ResumeStudy,
    machine: Value,
    config: Value,
}

/// A ratio, its bar, and whether the bar is a floor (`>=`) or a ceiling (`<=`).
struct Ratio {
    name: &'static str,
    value: f64,
    bar: f64,
    at_least: bool,
}

impl Ratio {
    fn met(&self) -> bool {
        if self.at_least {
            self.value >= self.bar
        } else {
            self.value <= self.bar
        }
    }
}

impl Report {
    fn new(
        samples: &[Vec<Sample>],
        seq_mb_s: f64,
        resume: ResumeStudy,
        machine: Value,
        config: Value,
    ) -> Self {
        let variants = Variant::ALL
            .iter()
            .zip(samples)
            .map(|(&variant, runs)| {
                let rounds: Vec<f64> = runs.iter().map(Sample::rate).collect();
                let mut sorted = rounds.clone();
                let med = median(&mut sorted);
                let cpu: Option<u64> = runs.iter().map(|s| s.cpu_ns).sum();
                let records: u64 = runs.iter().map(|s| s.records).sum();
                VariantResult {
                    variant,
                    median: med,
                    min: sorted.first().copied().unwrap_or(f64::NAN),
                    max: sorted.last().copied().unwrap_or(f64::NAN),
                    rounds,
                    cpu_us_per_record: cpu
                        .filter(|_| records > 0)
                        .map(|ns| ns as f64 / 1000.0 / records as f64),
                }
            })
            .collect();
        // Over rounds: the median of the runs' p50, the worst of their p99.
        let mut p50s: Vec<f64> = samples
            .iter()
            .flatten()
            .filter_map(|s| s.ack_ms.map(|a| a.0))
            .collect();
        let p99 = samples
            .iter()
            .flatten()
            .filter_map(|s| s.ack_ms.map(|a| a.1))
            .reduce(f64::max);
        Report {
            variants,
            ack_p50_ms: (!p50s.is_empty()).then(|| median(&mut p50s)),
            ack_p99_ms: p99,
            seq_mb_s,
            resume,
            machine,
            config,
        }
    }

    fn get(&self, variant: Variant) -> &VariantResult {
        &self.variants[Variant::ALL
            .iter()
            .position(|&v| v == variant)
            .unwrap_or_default()]
    }

    fn ratios(&self) -> Vec<Ratio> {
        let m = |v| self.get(v).median;
        let probe = self.resume.probe_high.wall_median_us / self.resume.probe_low.wall_median_us;
        vec![
            Ratio {
                name: "per_record_vs_fdatasync",
                value: m(Variant::ResumablePerRecord) / m(Variant::FdatasyncAppend),
                bar: 0.65,
                at_least: true,
            },
            Ratio {
                name: "per_record_vs_redb_bare",
                value: m(Variant::ResumablePerRecord) / m(Variant::RedbBarePerRecord),
                bar: 0.85,
                at_least: true,
            },
            Ratio {
                name: "group_vs_redb_bare",
                value: m(Variant::ResumableGroupDefault) / m(Variant::RedbBareGroup1000),
                bar: 0.85,
                at_least: true,
            },
            Ratio {
                name: "job_overhead",
                value: 1.0 - m(Variant::ResumableRunnerJob) / m(Variant::NoCheckpointJob),
                bar: 0.10,
                at_least: false,
            },
            Ratio {
                name: "commit_cost_high_vs_low_done",
                value: probe,
                bar: 1.2,
                at_least: false,
            },
            Ratio {
                name: "resume_ms_without_replay",
                value: self.resume.store_open_ms + self.resume.job_open_after_snapshot_ms,
                bar: 100.0,
                at_least: false,
            },
            Ratio {
                // The same overhead in CPU time per record (whole process, every thread):
                // unlike the throughput form it holds when other load shares the cores.
                name: "job_overhead_cpu",
                value: match (
                    self.get(Variant::NoCheckpointJob).cpu_us_per_record,
                    self.get(Variant::ResumableRunnerJob).cpu_us_per_record,
                ) {
                    (Some(plain), Some(runner)) if runner > 0.0 => 1.0 - plain / runner,
                    _ => f64::NAN,
                },
                bar: 0.10,
                at_least: false,
            },
        ]
    }

    fn to_json(&self) -> Value {
        let variants: Vec<Value> = self
            .variants
            .iter()
            .map(|v| {
                json!({
                    "name": v.variant.name(),
                    "description": v.variant.describe(),
                    "records_per_sec": v.median,
                    "min_records_per_sec": v.min,
                    "max_records_per_sec": v.max,
                    "rounds_records_per_sec": v.rounds,
                    "mb_per_sec": v.median * OUTPUT_BYTES as f64 / 1e6,
                    "cpu_us_per_record": v.cpu_us_per_record,
                    "cpu_scope": v.variant.cpu_scope(),
                })
            })
            .collect();
        let ratios = self.ratios();
        let ratio_values: serde_json::Map<String, Value> = ratios
            .iter()
            .take(4)
            .map(|r| (r.name.to_owned(), json!(r.value)))
            .collect();
        let bars: Vec<Value> = ratios
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "value": r.value,
                    "bar": r.bar,
                    "comparison": if r.at_least { ">=" } else { "<=" },
                    "met": r.met(),
                })
            })
            .collect();
        let r = &self.resume;
        let probe = |p: &CommitProbe| {
            json!({
                "done_records": p.done_before,
                "wall_median_us": p.wall_median_us,
                "cpu_mean_us": p.cpu_mean_us,
            })
        };
        json!({
            "machine": self.machine,
            "config": self.config,
            "variants": variants,
            "ratios": ratio_values,
            "bars": bars,
            "committer_cpu_us_per_record": {
                "resumable_group_default": self.get(Variant::ResumableGroupDefault).cpu_us_per_record,
                "redb_bare_group_1000": self.get(Variant::RedbBareGroup1000).cpu_us_per_record,
            },
            "sequential_write_mb_per_sec": self.seq_mb_s,
            "durable_ack_latency_ms": { "p50": self.ack_p50_ms, "p99": self.ack_p99_ms },
            "resume": {
                "records": r.records,
                "file_bytes": r.file_bytes,
                "build_secs": r.build_secs,
                "store_open_verified_ms": r.store_open_verified_ms,
                "store_open_ms": r.store_open_ms,
                "job_open_ms": r.job_open_ms,
                "replayed_commits": r.replayed_commits,
                "job_open_after_snapshot_ms": r.job_open_after_snapshot_ms,
            },
            "per_commit_cost": {
                "group_records": PROBE_GROUP,
                "commits": PROBE_COMMITS,
                "low": probe(&r.probe_low),
                "high": probe(&r.probe_high),
                "ratio": r.probe_high.wall_median_us / r.probe_low.wall_median_us,
                "redb_bare": {
                    "low_wall_median_us": r.bare_low_us,
                    "high_wall_median_us": r.bare_high_us,
                    "ratio": r.bare_high_us / r.bare_low_us,
                },
            },
        })
    }

    fn print_table(&self) {
        let opt = |v: Option<f64>, unit: &str| {
            v.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.2} {unit}"))
        };
        println!("{}", self.machine);
        println!("{}", self.config);
        println!();
        println!(
            "{:<26} {:>11} {:>23} {:>7}  what",
            "variant", "records/s", "min..max", "MB/s"
        );
        for (i, v) in self.variants.iter().enumerate() {
            println!(
                "{:<26} {:>11.0} {:>23} {:>7.1}  {}",
                format!("{} {}", i + 1, v.variant.name()),
                v.median,
                format!("{:.0}..{:.0}", v.min, v.max),
                v.median * OUTPUT_BYTES as f64 / 1e6,
                v.variant.describe()
            );
        }
        println!();
        println!("{:<30} {:>9} {:>8}  met", "ratio (medians)", "value", "bar");
        for r in self.ratios() {
            println!(
                "{:<30} {:>9.3} {:>8}  {}",
                r.name,
                r.value,
                format!("{}{}", if r.at_least { ">=" } else { "<=" }, r.bar),
                if r.met() { "yes" } else { "NO" }
            );
        }
        println!();
        println!(
            "CPU per record: resumable_group_default {} (writer thread: the committer's work at the default policy), redb_bare_group_1000 {} (writer thread), no_checkpoint_job {} (process), resumable_runner_job {} (process)",
            opt(
                self.get(Variant::ResumableGroupDefault).cpu_us_per_record,
                "us"
            ),
            opt(self.get(Variant::RedbBareGroup1000).cpu_us_per_record, "us"),
            opt(self.get(Variant::NoCheckpointJob).cpu_us_per_record, "us"),
            opt(
                self.get(Variant::ResumableRunnerJob).cpu_us_per_record,
                "us"
            ),
        );
        println!(
            "sequential write ceiling (one fsync): {:.0} MB/s",
            self.seq_mb_s
        );
        println!(
            "durable-ack latency (resumable_runner_job, output ready to durable): p50 {} (median of rounds), p99 {} (worst round)",
            opt(self.ack_p50_ms, "ms"),
            opt(self.ack_p99_ms, "ms")
        );
        let r = &self.resume;
        println!(
            "resume of a store of {} done records ({:.0} MB, built in {:.1} s): store open {:.1} ms ({:.1} ms with the default verify-on-open), job open {:.1} ms replaying {} commits, {:.1} ms with no replay (after a snapshot)",
            r.records,
            r.file_bytes as f64 / 1e6,
            r.build_secs,
            r.store_open_ms,
            r.store_open_verified_ms,
            r.job_open_ms,
            r.replayed_commits,
            r.job_open_after_snapshot_ms,
        );
        for p in [&r.probe_low, &r.probe_high] {
            println!(
                "per-commit cost at {} done records ({} durable commits of {} x 1 KiB, {} rounds taking turns with the other store): median {:.0} us wall, {} CPU",
                p.done_before,
                PROBE_COMMITS,
                PROBE_GROUP,
                PROBE_ROUNDS,
                p.wall_median_us,
                opt(p.cpu_mean_us, "us"),
            );
        }
        println!(
            "bare redb, same probe: median {:.0} us at 10^3 rows vs {:.0} us at {} rows (ratio {:.2}; resumable's ratio {:.2})",
            r.bare_low_us,
            r.bare_high_us,
            r.records,
            r.bare_high_us / r.bare_low_us,
            r.probe_high.wall_median_us / r.probe_low.wall_median_us,
        );
    }
}
