//! `resumable bench`: what exactly-once checkpointing costs on this machine's disk, measured
//! side by side with its baselines in one run (the way `PostgreSQL` ships `pg_test_fsync`).
//!
//! Seven variants, all writing 1 KiB outputs into the same directory, run in rounds; each
//! round runs every variant once for the same time, in an order rotated per round, so drift
//! (page cache, disk firmware, other tenants) hits all of them alike. Each variant gets a
//! fresh file per round. The medians give the ratios that have target bars:
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

mod latency;
mod memory;
mod open;
mod probes;
mod report;
mod stats;
mod system;
mod variants;

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};

use self::latency::latency_study;
use self::memory::memory_study;
use self::open::open_study;
use self::probes::resume_study;
use self::report::{Config, Machine, Report, Studies};
use self::system::{filesystem_of, load_average};
use self::variants::{OUTPUT_BYTES, Sample, Variant, calibrate, sequential_write};
use crate::output::{JsonFlag, Out};

/// Arguments of `resumable bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {
    /// Directory to run in: a fresh subdirectory is made there and removed at the end
    /// [default: the current directory]. Put it on the disk you want measured.
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// Short rounds, a 10^5-record resume store, one repeat of the latency rows and memory
    /// rows at 10^5 and 10^6 records: finishes in a minute or two.
    #[arg(long)]
    pub(crate) quick: bool,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
    /// Also write the results as a self-contained HTML page (bars with min..max whiskers,
    /// ratios against their bars) to FILE.
    #[arg(long, value_name = "FILE")]
    pub(crate) html: Option<PathBuf>,
    /// Store sizes of the open study, in MiB of 1 KiB records, comma-separated: one store
    /// is grown to each in turn and its open + resume timed per open check [default:
    /// 1024,4096; with --quick: 64].
    #[arg(long, value_name = "MIB", value_delimiter = ',')]
    pub(crate) open_sizes_mib: Option<Vec<u64>>,
    /// CPU time the reference job spends per record, in microseconds.
    #[arg(long, value_name = "U", default_value_t = 100)]
    pub(crate) cost_us: u64,
    /// Worker threads of the reference job [default: the machine's cores].
    #[arg(long, value_name = "W")]
    pub(crate) workers: Option<usize>,
    /// Internal: run the memory study's child over N records in DIR and print its row.
    #[arg(long, value_name = "N", hide = true)]
    pub(crate) memory_probe: Option<u64>,
    /// Internal: the memory probe's source skips no ids (progress stays one range).
    #[arg(long, hide = true)]
    pub(crate) memory_contiguous: bool,
}

/// What every variant run needs.
struct Ctx {
    dir: PathBuf,
    run_for: Duration,
    payload: Vec<u8>,
    workers: usize,
    /// Passes of the reference computation that take about `cost_us` on one core.
    passes: u32,
    /// Passes that take about 10 us (the small-record variants).
    passes_10us: u32,
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
    if let Some(records) = args.memory_probe {
        memory::probe(&base, records, !args.memory_contiguous)?;
        return Ok(ExitCode::SUCCESS);
    }
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
        passes_10us: calibrate(10),
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
            let sample = variant
                .run(&ctx, round)
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
    eprintln!("durable-ack latency against offered load, fixed and self-clocking policies...");
    let latency = latency_study(&ctx, if args.quick { 1 } else { 3 })?;
    eprintln!(
        "peak memory of the runner at {:?} records done, each in a child process...",
        memory::sizes(args.quick)
    );
    let memory = memory_study(&ctx.dir, args.quick)?;
    let open_sizes = args.open_sizes_mib.clone().unwrap_or_else(|| {
        if args.quick {
            vec![64]
        } else {
            vec![1024, 4096]
        }
    });
    eprintln!("open + resume time against store size ({open_sizes:?} MiB), per open check...");
    let open = open_study(&ctx, &open_sizes)?;

    let report = Report::new(
        &samples,
        seq_mb_s,
        Studies {
            resume,
            latency,
            memory,
            open,
        },
        Machine {
            cores,
            workers,
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
            filesystem,
            dir: base.display().to_string(),
            load_average_1min_start: load_start,
            load_average_1min_end: load_average(),
        },
        Config {
            quick: args.quick,
            rounds,
            seconds_per_variant_per_round: run_for.as_secs_f64(),
            output_bytes: OUTPUT_BYTES,
            cost_us: args.cost_us,
            reference_passes: passes,
            runner: "resumable::Runner with default options, stopped by its StopHandle",
        },
    );
    drop(work);
    if let Some(file) = &args.html {
        crate::report::write_private(file, report.page().render().as_bytes())?;
        eprintln!("wrote {}", file.display());
    }
    let mut out = Out::new();
    if args.output.json {
        out.json(&report.json())?;
    } else {
        report.print_table(&mut out)?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
