//! `resumable demo`: run the built-in batch job through the parallel runner.

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use resumable::demo::{DemoFailure, DemoJob, DemoTotals};
use resumable::{
    CommitPolicy, IdSource, JobOptions, JobState, ProcessError, RetryPolicy, RunEnd, Runner, Stats,
    Store, manifest_digest,
};
use serde::Serialize;

use crate::failure::CannotOpen;
use crate::output::{self, JsonFlag, Out, count};

const LONG_ABOUT: &str = concat!(
    "\
Run the built-in demo job on STORE through the parallel runner: each record is a generated
line of text (deterministic in the record id and --seed) that a worker tokenizes, counts
and digests, burning about --cost-us microseconds of CPU. One committer thread commits the
outputs in groups, each group one redb transaction with the progress marks and the state.

STORE is created if absent and resumed otherwise: kill the process at any moment (Ctrl-C
stops cleanly with a final durable commit; a kill -9 is a crash) and run the same command
again to continue where it stopped. A completed job says it is already done. --fail-rate P
makes a deterministic share P of attempts fail transiently (they are retried) and P/10 of
records fail on every attempt (they end as dead letters; see `resumable dead-letters`).
--seed is recorded with the job: resuming with another seed is refused.

",
    crate::shards::shards_help!(),
    "
On a terminal it shows a progress bar (done, rate, ETA, records at risk: settled but not
yet durable); at the end it prints a summary.

--json prints the summary as one object:
  {\"store\": PATH, \"job\": S, \"end\": \"finished\"|\"stopped\"|\"already_done\",
   \"lifecycle\": S, \"records_total\": N, \"records_done\": N, \"processed\": N,
   \"skipped\": N, \"retried\": N, \"dead_lettered\": N, \"commits\": N,
   \"elapsed_ms\": N, \"records_per_s\": F, \"dead_letters\": N}
processed counts outputs committed by this run; skipped, records already done before it;
dead_lettered, records dead-lettered by this run; dead_letters, the job's dead letters now
(a finished job with dead letters is \"completed with N dead letters\").

--audit SHARE runs nothing: it re-runs about SHARE (0 to 1) of the done records through the
demo's processing (same --seed) and compares each output with the stored one, byte for
byte, changing nothing; exit 0 when all match, 1 when any differs or fails. --json then
prints {\"checked\": N, \"matched\": N, \"differed\": N, \"failed\": N,
\"first_differences\": [{\"id\": N, \"stored\": JSON, \"recomputed\": JSON}],
\"first_failures\": [[ID, S]]}."
);

/// Run the built-in demo job (creates STORE, or resumes it).
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub(crate) struct Args {
    /// The store file (created if absent); with --shard/--shards, the shards' directory.
    store: PathBuf,
    #[command(flatten)]
    pub(crate) output: JsonFlag,
    #[command(flatten)]
    shard: crate::shards::ShardRunArgs,
    #[command(flatten)]
    metrics: crate::metrics::MetricsArgs,
    /// Job name.
    #[arg(long, default_value = resumable::demo::JOB_NAME)]
    job: String,
    /// Records in the input (ids 0..N).
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    workers: Option<usize>,
    /// CPU microseconds per record.
    #[arg(long, default_value_t = 20)]
    cost_us: u64,
    /// Share of attempts that fail transiently (0 to 1); a tenth of it fails permanently.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Seed of the generated input.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Most records per commit (group).
    #[arg(long, default_value_t = 1000)]
    group_records: usize,
    /// Commit only full groups of --group-records (and the tail at the end), never at once
    /// while the workers wait (the default policy) nor after the group delay: the same commit
    /// boundaries in every run, for tests and side-by-side comparisons.
    #[arg(long)]
    fixed_groups: bool,
    /// Snapshot the state every this many commits.
    #[arg(long, default_value_t = 10)]
    snapshot_every: u64,
    /// The code version recorded in every commit's lineage entry (`lineage`, `status` and
    /// `redo --code-version` select by it). A new version is not a mismatch. Default:
    /// `resumable-` and this build's crate version.
    #[arg(long, default_value = resumable::DEFAULT_CODE_VERSION)]
    code_version: String,
    /// Audit determinism instead of running: re-run this share (0 to 1) of the done records
    /// and compare with the stored outputs.
    #[arg(long, value_name = "SHARE")]
    audit: Option<f64>,
    /// Test hook: exit abruptly (no final commit, no clean shutdown, like a crash) once this
    /// many records of this run are durable.
    #[arg(long, hide = true)]
    crash_after: Option<u64>,
}

/// Exit code of a run cut short by `--crash-after`.
const CRASH_EXIT: i32 = 3;

/// The `--json` shape (see `LONG_ABOUT`).
#[derive(Serialize)]
struct SummaryJson<'a> {
    store: String,
    job: &'a str,
    end: &'static str,
    lifecycle: &'static str,
    records_total: u64,
    records_done: u64,
    processed: u64,
    skipped: u64,
    retried: u64,
    dead_lettered: u64,
    commits: u64,
    elapsed_ms: u64,
    records_per_s: f64,
    dead_letters: u64,
}

struct Summary {
    /// The store file (a shard's file in the shards' directory).
    store: PathBuf,
    /// Records the run owns: the job's, or its shard's.
    total: u64,
    end: &'static str,
    /// Dead letters of the job (all runs), read after the run.
    dead_letters: u64,
    lifecycle: JobState,
    records_done: u64,
    skipped: u64,
    stats: Stats,
    elapsed: Duration,
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.fail_rate) {
        return crate::usage(format!(
            "--fail-rate must be between 0 and 1, not {}",
            args.fail_rate
        ));
    }
    if args.records >= u64::MAX - 1 {
        return crate::usage("--records is too large");
    }
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    if workers == 0 {
        return crate::usage("--workers must be at least 1");
    }
    let demo = DemoJob::new()
        .seed(args.seed)
        .cost(Duration::from_micros(args.cost_us))
        .fail_rate(args.fail_rate);
    if let Some(share) = args.audit {
        return audit(args, &demo, share, json);
    }

    crate::signals::install(
        "\nstopping: finishing records in flight and committing them durably (Ctrl-C again to quit at once; the next run resumes either way)",
        130,
    );
    let shard = args.shard.resolve()?;
    let store_path = match shard {
        Some(shard) => crate::shards::shard_store(&args.store, shard, &args.job)?,
        None => args.store.clone(),
    };
    let store = Store::open(&store_path)
        .map_err(|e| anyhow::Error::new(e).context(CannotOpen(store_path.clone())))?;
    let manifest = manifest_digest([format!("resumable demo seed {}", args.seed)]);
    // A shard owns a contiguous range of the ids; its spec is recorded and gated here.
    let ids = crate::shards::owned_ids(shard, &store, &args.job, args.records, manifest)?;
    let total = ids.end - ids.start;
    let options = JobOptions::new()
        .total_records(total)
        .commit_policy(if args.fixed_groups {
            CommitPolicy::new()
                .max_group_records(args.group_records)
                .self_clocking(false)
                .max_group_delay(Duration::from_hours(24))
        } else {
            CommitPolicy::new().max_group_records(args.group_records)
        })
        .snapshot_every_commits(args.snapshot_every)
        .code_version(args.code_version.clone())
        .input_manifest(manifest);
    let job = store.job::<DemoTotals>(&args.job, options)?;
    let done_before = crate::shards::done_in(job.progress().ranges(), &ids);
    let started = Instant::now();

    let summary = if job.lifecycle() == JobState::Completed {
        if done_before < total {
            anyhow::bail!(
                "job {:?} is completed with {} records done; it accepts no more (use another --job name, or `resumable rewind`)",
                args.job,
                count(done_before)
            );
        }
        Summary {
            store: store_path.clone(),
            total,
            dead_letters: 0,
            end: "already_done",
            lifecycle: JobState::Completed,
            records_done: job.done_count(),
            skipped: done_before,
            stats: Stats::default(),
            elapsed: started.elapsed(),
        }
    } else {
        if !json {
            let what = if done_before == 0 {
                "starting"
            } else {
                "resuming"
            };
            output::note(format_args!(
                "{what} job {} in {}: {} of {} records done; {workers} worker{}, {} µs per record",
                args.job,
                store_path.display(),
                count(done_before),
                count(total),
                if workers == 1 { "" } else { "s" },
                args.cost_us
            ));
        }
        let mut summary = run_job(
            args,
            &store_path,
            job,
            &demo,
            workers,
            ids,
            done_before,
            started,
        )?;
        summary.store = store_path;
        summary
    };

    let mut summary = summary;
    summary.dead_letters = store.status(&args.job)?.dead_letters;
    print_summary(args, json, &summary)?;
    Ok(if summary.end == "stopped" {
        ExitCode::from(crate::EXIT_RETRY)
    } else {
        ExitCode::SUCCESS
    })
}

#[allow(clippy::too_many_arguments)]
fn run_job(
    args: &Args,
    store_path: &std::path::Path,
    job: resumable::Job<DemoTotals>,
    demo: &DemoJob,
    workers: usize,
    ids: std::ops::Range<u64>,
    done_before: u64,
    started: Instant,
) -> anyhow::Result<Summary> {
    let mut runner = Runner::new(job)
        .workers(workers)
        .complete_on_end(true)
        .retry(
            RetryPolicy::new()
                .max_attempts(4)
                .base_delay(Duration::from_millis(2))
                .max_delay(Duration::from_millis(100)),
        );
    if let Some(limit) = args.crash_after {
        let acked = AtomicU64::new(0);
        runner = runner.on_durable(move |ack| {
            if acked.fetch_add(ack.records(), Ordering::SeqCst) + ack.records() >= limit {
                // A crash: no final commit, no lifecycle change, no destructors.
                std::process::exit(CRASH_EXIT);
            }
        });
    }
    let stop = runner.stop_handle();
    let stats = runner.stats_handle();
    crate::signals::attach(&stop);

    // Attempt numbers of records that failed before, for deterministic failures per attempt.
    let attempts: Mutex<HashMap<u64, u32>> = Mutex::new(HashMap::new());
    let failing = args.fail_rate > 0.0;
    let process = |ctx: resumable::RecordContext, &(): &()| -> Result<_, ProcessError> {
        let id = ctx.id;
        if !failing {
            return Ok(demo.process(id));
        }
        let attempt = attempts
            .lock()
            .map_or(1, |m| m.get(&id).copied().unwrap_or(0) + 1);
        match demo.attempt(id, attempt) {
            Ok(out) => {
                if attempt > 1
                    && let Ok(mut m) = attempts.lock()
                {
                    m.remove(&id);
                }
                Ok(out)
            }
            Err(e @ DemoFailure::Permanent { .. }) => Err(ProcessError::permanent(e)),
            Err(e) => {
                if let Ok(mut m) = attempts.lock() {
                    m.insert(id, attempt);
                }
                Err(ProcessError::transient(e))
            }
        }
    };

    let total = ids.end - ids.start;
    let metrics = args
        .metrics
        .open(store_path, &args.job, done_before, Some(total))?;
    let source = IdSource::new(ids, |_| Ok(()));
    let running = AtomicBool::new(true);
    let show_bar = std::io::stderr().is_terminal();
    let report = std::thread::scope(|scope| {
        if show_bar {
            scope.spawn(|| output::progress(&stats, &running, total));
        }
        if let Some(m) = &metrics {
            scope.spawn(|| m.run(&stats, &running));
        }
        let report = runner.run(source, process);
        running.store(false, Ordering::SeqCst);
        report
    })?;
    let end = match report.end {
        RunEnd::Finished => "finished",
        RunEnd::Stopped => "stopped",
        RunEnd::AlreadyDone => "already_done",
        _ => "source_failed",
    };
    Ok(Summary {
        store: args.store.clone(),
        total,
        dead_letters: 0,
        end,
        lifecycle: report.job.lifecycle(),
        records_done: report.job.done_count(),
        skipped: done_before,
        stats: report.stats,
        elapsed: started.elapsed(),
    })
}

fn print_summary(args: &Args, json: bool, s: &Summary) -> anyhow::Result<()> {
    let processed = s.stats.records_committed;
    let secs = s.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        processed as f64 / secs
    } else {
        0.0
    };
    let mut out = Out::new();
    if json {
        out.json(&SummaryJson {
            store: s.store.display().to_string(),
            job: &args.job,
            end: s.end,
            lifecycle: s.lifecycle.as_str(),
            records_total: s.total,
            records_done: s.records_done,
            processed,
            skipped: s.skipped,
            retried: s.stats.retries,
            dead_lettered: s.stats.dead_lettered,
            commits: s.stats.commits,
            elapsed_ms: u64::try_from(s.elapsed.as_millis()).unwrap_or(u64::MAX),
            records_per_s: (rate * 10.0).round() / 10.0,
            dead_letters: s.dead_letters,
        })?;
        out.finish()?;
        return Ok(());
    }
    let headline = match s.end {
        "already_done" => format!(
            "job {} is already done: all {} records were processed by earlier runs; nothing to do",
            args.job,
            count(s.records_done)
        ),
        "finished" if s.lifecycle == JobState::Completed && s.dead_letters > 0 => format!(
            "job {} completed with {} dead letter{}: {} of {} records have an output",
            args.job,
            count(s.dead_letters),
            if s.dead_letters == 1 { "" } else { "s" },
            count(s.records_done.saturating_sub(s.dead_letters)),
            count(s.total),
        ),
        "finished" => format!(
            "job {} finished: {} of {} records done ({})",
            args.job,
            count(s.records_done),
            count(s.total),
            s.lifecycle
        ),
        _ => format!(
            "job {} stopped cleanly at {} of {} records; run the same command again to continue",
            args.job,
            count(s.records_done),
            count(s.total)
        ),
    };
    writeln!(out, "{headline}")?;
    output::run_summary(
        out, &s.store, processed, s.skipped, &s.stats, s.elapsed, rate,
    )
}

/// `demo --audit SHARE`: the determinism audit over the demo job's stored outputs.
fn audit(args: &Args, demo: &DemoJob, share: f64, json: bool) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    if !(0.0..=1.0).contains(&share) {
        return crate::usage(format!("--audit must be between 0 and 1, not {share}"));
    }
    let store = crate::open::read(&args.store, false)?;
    let sample = resumable::AuditSample::Share {
        share,
        seed: args.seed,
    };
    let report = store.audit(&args.job, &sample, |id| Ok(demo.process(id)))?;
    let mut out = crate::output::Out::new();
    if json {
        out.json(&report)?;
    } else {
        writeln!(
            out,
            "audited {} records of job {}: {} matched, {} differed, {} failed",
            report.checked, args.job, report.matched, report.differed, report.failed
        )?;
        crate::run::audit::write_findings(&mut out, &report)?;
    }
    out.finish()?;
    Ok(if report.is_deterministic() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::EXIT_PROBLEM)
    })
}
