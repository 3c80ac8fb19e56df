//! The eleven variants the bench compares, the reference job's per-record work and its
//! calibration, and the sequential-write ceiling.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use resumable::{
    BoxError, Bytes, CommitPolicy, Concurrency, Discard, IdSource, JobOptions, ProcessError,
    Runner, Store, StoreOptions,
};

use super::Ctx;
use super::system::{cpu_since, process_cpu_ns, thread_cpu_ns};

/// Size of every output the variants write.
pub(super) const OUTPUT_BYTES: usize = 1024;
/// Group size of `redb_bare_group_1000`.
pub(super) const BARE_GROUP: u64 = 1000;
/// The one table the bare-redb variants write.
pub(super) const BARE_TABLE: redb::TableDefinition<u64, &[u8]> =
    redb::TableDefinition::new("bench");
/// Records in flight between the reference job's workers and its sink.
const CHANNEL_BOUND: usize = 4096;

/// The variants, numbered as the report prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Variant {
    FdatasyncAppend,
    RedbBarePerRecord,
    ResumablePerRecord,
    ResumablePerRecordLive,
    RedbBareGroup1000,
    ResumableGroupDefault,
    ResumableGroupLive,
    NoCheckpointJob,
    ResumableRunnerJob,
    NoCheckpointJob10us,
    ResumableRunnerJob10us,
}

impl Variant {
    pub(super) const ALL: [Variant; 11] = [
        Variant::FdatasyncAppend,
        Variant::RedbBarePerRecord,
        Variant::ResumablePerRecord,
        Variant::ResumablePerRecordLive,
        Variant::RedbBareGroup1000,
        Variant::ResumableGroupDefault,
        Variant::ResumableGroupLive,
        Variant::NoCheckpointJob,
        Variant::ResumableRunnerJob,
        Variant::NoCheckpointJob10us,
        Variant::ResumableRunnerJob10us,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Variant::FdatasyncAppend => "fdatasync_append",
            Variant::RedbBarePerRecord => "redb_bare_per_record",
            Variant::ResumablePerRecord => "resumable_per_record",
            Variant::ResumablePerRecordLive => "resumable_per_record_live_readers",
            Variant::RedbBareGroup1000 => "redb_bare_group_1000",
            Variant::ResumableGroupDefault => "resumable_group_default",
            Variant::ResumableGroupLive => "resumable_group_live_readers",
            Variant::NoCheckpointJob => "no_checkpoint_job",
            Variant::ResumableRunnerJob => "resumable_runner_job",
            Variant::NoCheckpointJob10us => "no_checkpoint_job_10us",
            Variant::ResumableRunnerJob10us => "resumable_runner_job_10us",
        }
    }

    /// Whose CPU time `cpu_us_per_record` counts.
    pub(super) fn cpu_scope(self) -> Option<&'static str> {
        match self {
            Variant::FdatasyncAppend => None,
            Variant::NoCheckpointJob
            | Variant::ResumableRunnerJob
            | Variant::NoCheckpointJob10us
            | Variant::ResumableRunnerJob10us => Some("process"),
            _ => Some("writer thread"),
        }
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            Variant::FdatasyncAppend => "append 1 KiB + fdatasync per record",
            Variant::RedbBarePerRecord => "redb: 1 insert per durable commit",
            Variant::ResumablePerRecord => "CommitPolicy::per_record() (default: exclusive mode)",
            Variant::ResumablePerRecordLive => "the same, forced to live readers",
            Variant::RedbBareGroup1000 => "redb: 1000 inserts per durable commit",
            Variant::ResumableGroupDefault => {
                "default policy, one caller (exclusive until a reader knocks)"
            }
            Variant::ResumableGroupLive => "the same, forced to live readers (as while watched)",
            Variant::NoCheckpointJob => "reference job -> BufWriter, no durability",
            Variant::ResumableRunnerJob => "reference job through Runner, durable acks",
            Variant::NoCheckpointJob10us => "the same at 10 us/record, no durability",
            Variant::ResumableRunnerJob10us => "the same at 10 us/record through Runner",
        }
    }

    /// Runs the variant once on a fresh file, then removes the file and lets the disk settle.
    pub(super) fn run(self, ctx: &Ctx, round: usize) -> Result<Sample> {
        let path = ctx.dir.join(format!("{}-{round}", self.name()));
        let sample = match self {
            Variant::FdatasyncAppend => fdatasync_append(ctx, &path),
            Variant::RedbBarePerRecord => redb_bare(ctx, &path, 1),
            Variant::ResumablePerRecord => {
                resumable_single(ctx, &path, CommitPolicy::per_record(), Concurrency::Auto)
            }
            Variant::ResumablePerRecordLive => resumable_single(
                ctx,
                &path,
                CommitPolicy::per_record(),
                Concurrency::LiveReaders,
            ),
            Variant::RedbBareGroup1000 => redb_bare(ctx, &path, BARE_GROUP),
            Variant::ResumableGroupDefault => {
                resumable_single(ctx, &path, CommitPolicy::new(), Concurrency::Auto)
            }
            Variant::ResumableGroupLive => {
                resumable_single(ctx, &path, CommitPolicy::new(), Concurrency::LiveReaders)
            }
            Variant::NoCheckpointJob => no_checkpoint_job(ctx, &path, ctx.passes),
            Variant::ResumableRunnerJob => runner_job(ctx, &path, ctx.passes),
            Variant::NoCheckpointJob10us => no_checkpoint_job(ctx, &path, ctx.passes_10us),
            Variant::ResumableRunnerJob10us => runner_job(ctx, &path, ctx.passes_10us),
        }?;
        let _ = fs::remove_file(&path);
        settle(&ctx.dir);
        Ok(sample)
    }
}

/// One run of one variant.
#[derive(Debug, Default)]
pub(super) struct Sample {
    pub(super) records: u64,
    pub(super) elapsed: Duration,
    /// CPU time of the thread that wrote to the store (the single caller).
    pub(super) cpu_ns: Option<u64>,
    /// The runner's durable-acknowledgement latency (output ready to durable), p50 and
    /// p99 in milliseconds, over its recent window.
    pub(super) ack_ms: Option<(f64, f64)>,
}

impl Sample {
    pub(super) fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
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

/// The single-caller variants: one caller thread submitting 1 KiB outputs under `policy`,
/// the store opened in `concurrency` mode.
fn resumable_single(
    ctx: &Ctx,
    path: &Path,
    policy: CommitPolicy,
    concurrency: Concurrency,
) -> Result<Sample> {
    let store = StoreOptions::new().concurrency(concurrency).open(path)?;
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
pub(super) fn calibrate(cost_us: u64) -> u32 {
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

type Message = (u64, Vec<u8>);

/// Variant 6: `ctx.workers` threads compute reference records and send them to one writer
/// thread, which appends them to a buffered file: the job without any checkpointing.
fn no_checkpoint_job(ctx: &Ctx, path: &Path, passes: u32) -> Result<Sample> {
    let (tx, rx) = crossbeam_channel::bounded::<Message>(CHANNEL_BOUND);
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let file = File::create(path)?;
    let written = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&written);
    let sink = thread::spawn(move || buffered_sink(file, &rx, &counter));
    let mut handles = Vec::new();
    for _ in 0..ctx.workers {
        let (tx, stop, next) = (tx.clone(), Arc::clone(&stop), Arc::clone(&next));
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
fn runner_job(ctx: &Ctx, path: &Path, passes: u32) -> Result<Sample> {
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
    let run_for = ctx.run_for;
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
pub(super) fn sequential_write(path: &Path, bytes: u64) -> Result<f64> {
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

/// Lets the disk settle between variants: makes the deletion of the last variant's file
/// durable (fsync of the directory) and gives writeback a moment, so that no variant
/// starts while the journal is still busy with the one before it.
pub(super) fn settle(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    thread::sleep(Duration::from_millis(250));
}
