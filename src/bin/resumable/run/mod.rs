//! `resumable run`: every record of some input files through a command, exactly once.
//!
//! The flow, in the order that keeps "nothing committed" true for every early error:
//! check the arguments and that each input is a regular file; start the workers (a
//! command that does not exist fails here, before the store is touched); open the store;
//! check the input files against the job's record of them ([`resumable::FileInput`]);
//! open the job; run it through [`resumable::Runner`] with a source that hands each
//! record to a worker as it is read (see `pool`); print the summary; exit per the table
//! in `--help`.

pub(crate) mod audit;
mod per_record;
mod pool;
mod protocol;

use std::ffi::OsString;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use parking_lot::Mutex;
use resumable::{
    AdaptivePolicy, Discard, FileInput, FileSource, InputFormat, InputRecord, JobOptions, JobState,
    Json, MaintainOptions, ProcessError, RecordContext, RetryPolicy, RunEnd, Runner, Source, Stats,
    Store,
};
use serde_json::json;

use crate::output::{self, Out, count};
use crate::{EXIT_PROBLEM, EXIT_RETRY, EXIT_USAGE};
use pool::{Answer, Pool, PoolConfig};
pub(crate) use protocol::Protocol;

const LONG_ABOUT: &str = concat!(
    "\
Run every record of the input files through COMMAND, exactly once, storing each answer in
STORE (created if absent, resumed otherwise). Kill it at any moment and run the same
command again: it continues from the last durable commit, reading only what is left.

Records: each line (--format lines, the default; blank lines are records too), each JSON
document of a JSON Lines file (--format jsonl; blank lines skipped), or each row of a CSV
file with a header (--format csv; RFC 4180, quoted fields may span lines; a row becomes a
JSON object keyed by the header). A record's id is its 0-based index across all inputs in
the order given. A trailing \\r is dropped from every line.

Workers (the default, filter mode): --workers long-lived processes run COMMAND (no shell).
Each record is written to a worker's stdin as one line; the worker answers with one line
on stdout per record, in order, and must flush each answer (python3 -u, jq --unbuffered,
sed -u, grep --line-buffered). Many records are in flight per worker. The answer is the
record's output: its JSON value when it parses as JSON, else a JSON string.

--protocol json: the worker gets {\"id\":N,\"record\":R} (R: the line as a JSON string, the
JSON Lines document, or the CSV row object) and answers {\"id\":N,\"output\":V}, or
{\"id\":N,\"error\":\"why\",\"retry\":true|false} to fail that record (retry true, the
default: transient, tried again up to --attempts; false: dead-lettered at once).
Answers may come in any order.

--per-record: COMMAND is started once per record with the record on stdin; its stdout is
the output. Exit 0: success; exit 65 (EX_DATAERR): the record can never succeed
(dead-lettered at once); any other exit or a signal: transient (retried).

Failures: a worker that exits, crashes, answers garbage, answers a line when it holds no
record, or gives no answer for --timeout while it holds records (its first answer gets 10 s
more, for start-up) is killed and replaced;
the record it was working on (its oldest) fails transiently with the exit status and the
last stderr lines, the records queued behind it go to the new worker. A record that fails
--attempts times, and a record that cannot be read (not UTF-8, not JSON, a bad CSV row,
longer than --max-line-bytes), becomes a dead letter (`resumable dead-letters STORE`;
`resumable requeue STORE --all` puts them back for the next run). Worker stderr is
printed to stderr, each line prefixed with the worker and the record it holds.

The input files are part of the job: their paths, sizes and fingerprints are recorded
when it is created, and a rerun with a file missing, truncated, appended to, edited or in
another order is refused (exit 1) naming the file. Standard input and pipes cannot be
inputs (a rerun could not read them again). The command is not part of the job: fixing a
script and rerunning continues with the new script.

",
    crate::shards::shards_help!(),
    "
Ctrl-C or SIGTERM stops cleanly: records in flight are committed durably, the job is
paused, exit 75; a second one quits at once (the next run resumes either way).

Exit codes: 0 the job completed (dead letters included: see the summary); 75 stopped
before the end, resumable: run it again (Ctrl-C/SIGTERM, store locked by another process,
an I/O error); 1 a permanent problem (input changed, job mismatch, damaged store, the
command keeps dying before answering anything); 2 usage (bad arguments, COMMAND not
found or not executable, an input that is not a regular file).

--json prints the summary as one object:
  {\"store\": PATH, \"job\": S, \"end\": \"finished\"|\"stopped\"|\"already_done\"|\"input_failed\"|\"workers_failed\",
   \"lifecycle\": S, \"records_total\": N, \"records_done\": N, \"processed\": N,
   \"skipped\": N, \"retried\": N, \"dead_lettered\": N, \"commits\": N, \"seeks\": N,
   \"scrub_passes\": N, \"scrub_bytes\": N, \"scrub_damaged\": N, \"input_scanned\": B, \"elapsed_ms\": N, \"records_per_s\": F}
processed counts records settled by this run (outputs and dead letters); skipped, records
already done before it; input_scanned, whether the input was read whole (a new job)
rather than through its recorded index."
);

/// Run every record of input files through a command, exactly once.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub(crate) struct Args {
    /// The store file (created if absent); with --shard/--shards, the shards' directory.
    store: PathBuf,
    #[command(flatten)]
    shard: crate::shards::ShardRunArgs,
    /// An input file (repeat for several; read in the order given).
    #[arg(long = "input", required = true, value_name = "PATH")]
    inputs: Vec<PathBuf>,
    /// How input files are cut into records.
    #[arg(long, value_enum, default_value_t = Format::Lines)]
    format: Format,
    /// Job name.
    #[arg(long, default_value = "run")]
    job: String,
    /// Worker processes (in --per-record mode: commands running at once).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Longest a worker may hold a record without answering (e.g. 30s, 500ms, 2m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    /// Attempts per record (the first included) before it becomes a dead letter.
    #[arg(long, default_value_t = 3)]
    attempts: u32,
    /// What goes to a worker and what comes back (see the long help).
    #[arg(long, value_enum, default_value_t = Protocol::Lines)]
    protocol: Protocol,
    /// Start COMMAND once per record instead of keeping workers running.
    #[arg(long)]
    per_record: bool,
    /// Longest input record and longest answer, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_line_bytes: usize,
    /// Print JSON (the shape is in the long help).
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    metrics: crate::metrics::MetricsArgs,
    /// The code version recorded in every commit's lineage entry (`lineage`, `status` and
    /// `redo --code-version` select by it); a new version is not a mismatch. Default:
    /// `cmd-` and the first 12 hex digits of the BLAKE3 hash of COMMAND and its arguments
    /// (each with its length), so changing the command line changes the version.
    #[arg(long)]
    code_version: Option<String>,
    /// Audit instead of run: re-run about this share (0 to 1) of the records already done
    /// through COMMAND and compare each answer with the stored output; nothing is written.
    /// Prints matched, differed (the first few ids with both outputs) and failed; exit 0
    /// when all matched, 1 when any differed or failed. The same --input, --format,
    /// --protocol, --per-record and COMMAND as the job's runs.
    #[arg(long, value_name = "SHARE")]
    audit: Option<f64>,
    /// Which records --audit picks (the same seed picks the same records).
    #[arg(long, default_value_t = 1, value_name = "N", requires = "audit")]
    audit_seed: u64,
    /// Read rate of the background scrub, in MiB/s: while the job runs, committed values
    /// are re-read and checked against their checksums, so damage below the file system is
    /// found and reported (docs/SCRUB.md). 0 turns it off.
    #[arg(long, default_value_t = 32, value_name = "MIB_PER_S")]
    scrub_rate: u64,
    /// Pause between the end of one scrub pass and the start of the next (e.g. 1h, 10m);
    /// the first pass starts 10 s into the run, or after this pause if it is shorter.
    #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    scrub_every: Duration,
    /// Test hook: exit abruptly (no final commit, like a crash) once this many records of
    /// this run are durable.
    #[arg(long, hide = true)]
    crash_after: Option<u64>,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// The input format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// One record per line.
    Lines,
    /// One JSON document per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
}

impl Format {
    fn input(self) -> InputFormat {
        match self {
            Format::Lines => InputFormat::Lines,
            Format::Jsonl => InputFormat::JsonLines,
            Format::Csv => InputFormat::Csv,
        }
    }
}

/// Records queued toward the workers and toward the committer (each).
const RUNNER_QUEUE: usize = 4096;

/// Exit code of a run cut short by `--crash-after`.
const CRASH_EXIT: i32 = 3;

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 30s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m or h)")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err("the duration must be above zero".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Whether `program` names something that can be started: a path that exists and is
/// executable, or a name found on PATH.
fn check_program(program: &OsString) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = PathBuf::from(program);
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let found = if path.components().count() > 1 || path.is_absolute() {
        executable(&path)
    } else {
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|d| executable(&d.join(&path))))
    };
    if found {
        Ok(())
    } else {
        crate::usage(format!(
            "COMMAND {} was not found or is not executable; nothing was run or stored",
            path.display()
        ))
    }
}

/// One record on its way through the runner: the bytes for the worker (or why it cannot
/// be processed) and, in filter mode, where its answer will arrive.
struct Task {
    line: Result<Arc<[u8]>, String>,
    ticket: Mutex<Option<Receiver<Answer>>>,
}

/// The file source, handing each record to a worker as it is read.
struct Dispatching<'a> {
    inner: resumable::ShardSource<FileSource>,
    pool: Option<&'a Pool>,
    protocol: Protocol,
}

impl Source for Dispatching<'_> {
    type Record = Task;

    fn next_record(&mut self) -> Option<Result<(u64, Task), resumable::BoxError>> {
        let next = self.inner.next_record()?;
        Some(next.map(|(id, record): (u64, InputRecord)| {
            let line = protocol::encode(self.protocol, id, &record);
            let ticket = match (&line, self.pool) {
                (Ok(line), Some(pool)) => Some(pool.submit(id, Arc::clone(line))),
                _ => None,
            };
            (
                id,
                Task {
                    line,
                    ticket: Mutex::new(ticket),
                },
            )
        }))
    }

    fn seek(&mut self, id: u64) -> Result<bool, resumable::BoxError> {
        self.inner.seek(id)
    }
}

struct Summary {
    /// The store file (a shard's file in the shards' directory).
    store: PathBuf,
    end: &'static str,
    lifecycle: JobState,
    records_done: u64,
    total: u64,
    skipped: u64,
    stats: Stats,
    elapsed: Duration,
    scanned: bool,
    problem: Option<String>,
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<ExitCode> {
    if args.workers == 0 {
        return crate::usage("--workers must be at least 1");
    }
    if args.attempts == 0 {
        return crate::usage("--attempts must be at least 1");
    }
    if args.max_line_bytes == 0 {
        return crate::usage("--max-line-bytes must be at least 1");
    }
    for p in &args.inputs {
        if p.as_os_str() == "-" {
            return crate::usage(
                "standard input (-) cannot be an input: a rerun could not read it again from where it stopped; save it to a file and name the file",
            );
        }
        match std::fs::metadata(p) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return crate::usage(format!(
                    "input {} is not a regular file (a pipe, FIFO, device or directory cannot be resumed: a rerun could not read it again); save it to a file and name the file",
                    p.display()
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A missing input of an existing job is an input change (exit 1), named
                // by the manifest check below; of a new job, a usage error.
                if !args.store.exists() {
                    return crate::usage(format!("input {} does not exist", p.display()));
                }
            }
            Err(e) => anyhow::bail!("cannot read input {}: {e}", p.display()),
        }
    }
    if let Some(share) = args.audit
        && !(share > 0.0 && share <= 1.0)
    {
        return crate::usage(format!(
            "--audit takes a share of the done records above 0 and at most 1 (e.g. 0.01 for 1%), not {share}"
        ));
    }
    let shard = args.shard.resolve()?;
    check_program(&args.command[0])?;

    crate::signals::install(
        "\nstopping: committing the records in flight durably (Ctrl-C again to quit at once; the next run resumes either way)",
        i32::from(EXIT_RETRY),
    );
    let stop = resumable::StopHandle::default();
    let fatal_stop = stop.clone();
    let pool = if args.per_record {
        None
    } else {
        let cfg = PoolConfig {
            command: args.command.clone(),
            protocol: args.protocol,
            timeout: args.timeout,
            max_line: args.max_line_bytes,
            workers: args.workers,
        };
        Some(Pool::start(cfg, move || fatal_stop.stop()).map_err(|e| {
            crate::UsageError(format!(
                "cannot start COMMAND: {e:#}; nothing was run or stored"
            ))
        })?)
    };
    if let Some(share) = args.audit {
        let result = run_audit(args, shard, share, pool.as_ref());
        if let Some(pool) = pool {
            pool.close(Duration::from_secs(2));
        }
        return match result {
            Ok(audited) => Ok(ExitCode::from(audit::print(args, json, &audited)?)),
            Err(Failure::Exit(code, e)) => {
                output::note(format_args!("error: {e:#}"));
                Ok(ExitCode::from(code))
            }
            Err(Failure::Other(e)) => Err(e),
        };
    }
    let result = run_with(args, shard, json, pool.as_ref(), &stop);
    if let Some(pool) = pool {
        pool.close(Duration::from_secs(2));
    }
    let (summary, code) = match result {
        Ok(done) => done,
        Err(Failure::Exit(code, e)) => {
            output::note(format_args!("error: {e:#}"));
            return Ok(ExitCode::from(code));
        }
        Err(Failure::Other(e)) => return Err(e),
    };
    print_summary(args, json, &summary)?;
    Ok(ExitCode::from(code))
}

/// An error with the exit code it must give (beyond main's 1 and 2).
enum Failure {
    Exit(u8, anyhow::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

/// Exit code for a library error: retrying helps for a held lock and I/O; nothing else.
fn exit_for(e: &resumable::Error) -> u8 {
    match e {
        resumable::Error::Locked { .. }
        | resumable::Error::Io(_)
        | resumable::Error::DiskFull(_)
        | resumable::Error::Poisoned => EXIT_RETRY,
        resumable::Error::InvalidArgument(_) => EXIT_USAGE,
        _ => EXIT_PROBLEM,
    }
}

fn lib_failure(e: resumable::Error, context: String) -> Failure {
    let code = exit_for(&e);
    Failure::Exit(code, anyhow::Error::new(e).context(context))
}

/// `--audit SHARE`: the store (a shard's, in its directory) audited, changing nothing.
fn run_audit(
    args: &Args,
    shard: Option<resumable::Shard>,
    fraction: f64,
    pool: Option<&Pool>,
) -> Result<audit::Audited, Failure> {
    let store_path = match shard {
        Some(shard) if args.store.is_dir() => {
            crate::shards::shard_store(&args.store, shard, &args.job)
                .map_err(|e| lib_failure(e, format!("cannot place shard {shard}")))?
        }
        Some(_) => {
            return Err(Failure::Exit(
                EXIT_PROBLEM,
                anyhow::anyhow!(
                    "{} is not a shards' directory: there is no job to audit",
                    args.store.display()
                ),
            ));
        }
        None => args.store.clone(),
    };
    let sample = resumable::AuditSample::Share {
        share: fraction,
        seed: args.audit_seed,
    };
    audit::audit(args, store_path, sample, pool)
}

fn run_with(
    args: &Args,
    shard: Option<resumable::Shard>,
    json: bool,
    pool: Option<&Pool>,
    stop: &resumable::StopHandle,
) -> Result<(Summary, u8), Failure> {
    let started = Instant::now();
    let store_path = match shard {
        Some(shard) => crate::shards::shard_store(&args.store, shard, &args.job)
            .map_err(|e| lib_failure(e, format!("cannot place shard {shard}")))?,
        None => args.store.clone(),
    };
    let store = Store::open(&store_path)
        .map_err(|e| lib_failure(e, format!("cannot open {}", store_path.display())))?;
    let input = FileInput::builder(&args.inputs)
        .format(args.format.input())
        .max_record_bytes(args.max_line_bytes)
        .open(&store, &args.job)
        .map_err(|e| lib_failure(e, "the input cannot be used".to_owned()))?;
    // A shard owns a contiguous range of the ids; its spec is recorded and gated here.
    let ids = crate::shards::owned_ids(
        shard,
        &store,
        &args.job,
        input.total_records(),
        input.manifest_digest(),
    )
    .map_err(|e| lib_failure(e, "the shard cannot be used".to_owned()))?;
    let total = ids.end - ids.start;
    let job = store
        .job::<Discard<Json>>(
            &args.job,
            input
                .job_options(JobOptions::new().code_version(code_version(args)))
                .total_records(total),
        )
        .map_err(|e| lib_failure(e, format!("cannot open job {:?}", args.job)))?;
    let done_before = crate::shards::done_in(job.progress().ranges(), &ids);
    if job.lifecycle() == JobState::Completed {
        if done_before < total {
            return Err(Failure::Exit(
                EXIT_PROBLEM,
                anyhow::anyhow!(
                    "job {:?} is completed with {} of {} records done; it accepts no more (use another --job name, or `resumable rewind`)",
                    args.job,
                    count(done_before),
                    count(total)
                ),
            ));
        }
        return Ok((
            Summary {
                store: store_path,
                end: "already_done",
                lifecycle: JobState::Completed,
                records_done: job.done_count(),
                total,
                skipped: done_before,
                stats: Stats::default(),
                elapsed: started.elapsed(),
                scanned: input.scanned(),
                problem: None,
            },
            0,
        ));
    }
    if !json {
        output::note(format_args!(
            "{} job {} in {}: {} of {} records done; {} {}{}",
            if done_before == 0 {
                "starting"
            } else {
                "resuming"
            },
            args.job,
            store_path.display(),
            count(done_before),
            count(total),
            args.workers,
            if args.per_record { "command" } else { "worker" },
            if args.workers == 1 { "" } else { "s" },
        ));
    }

    let mut runner = Runner::new(job)
        .workers(if args.per_record {
            args.workers
        } else {
            (2 * args.workers).max(2)
        })
        .complete_on_end(true)
        .maintainer(
            MaintainOptions::new()
                .scrub_rate(args.scrub_rate.saturating_mul(1 << 20))
                .scrub_every(args.scrub_every),
        )
        // A deep queue, so the workers keep busy while a slow fsync holds the committer
        // (the pipeline holds about 2 x 4,096 records; record bytes are capped at 64 MiB by
        // the pool), and groups sized by measured commit cost rather than a fixed count.
        .queue_capacity(RUNNER_QUEUE)
        .adaptive(AdaptivePolicy::new())
        .retry(
            RetryPolicy::new()
                .max_attempts(args.attempts)
                .base_delay(Duration::from_millis(50))
                .max_delay(Duration::from_secs(5)),
        );
    if let Some(limit) = args.crash_after {
        let acked = AtomicU64::new(0);
        runner = runner.on_durable(move |ack| {
            if acked.fetch_add(ack.records(), Ordering::SeqCst) + ack.records() >= limit {
                std::process::exit(CRASH_EXIT);
            }
        });
    }
    // The runner's own stop handle, tripped by ours (Ctrl-C, SIGTERM, dying workers).
    let runner_stop = runner.stop_handle();
    let stats = runner.stats_handle();
    crate::signals::attach(stop);
    let running = AtomicBool::new(true);
    let (cmd, protocol, timeout, max_line) = (
        &args.command,
        args.protocol,
        args.timeout,
        args.max_line_bytes,
    );
    let process = |ctx: RecordContext, task: &Task| -> Result<Json, ProcessError> {
        let id = ctx.id;
        let line = task
            .line
            .as_ref()
            .map_err(|why| ProcessError::permanent(why.clone()))?;
        match pool {
            None => per_record::run_one(cmd, protocol, timeout, max_line, id, line),
            Some(pool) => {
                let ticket = task.ticket.lock().take();
                let rx = ticket.unwrap_or_else(|| pool.submit(id, Arc::clone(line)));
                rx.recv().unwrap_or_else(|_| {
                    Err(ProcessError::transient(
                        "the worker pool closed before answering",
                    ))
                })
            }
        }
    };
    let source = Dispatching {
        inner: resumable::ShardSource::new(input.source(), ids),
        pool,
        protocol: args.protocol,
    };
    let metrics = args
        .metrics
        .open(&args.store, &args.job, done_before, Some(total))
        .map_err(|e| Failure::Exit(EXIT_USAGE, e))?;
    let show_bar = !json && std::io::stderr().is_terminal();
    let report = std::thread::scope(|scope| {
        if let Some(m) = &metrics {
            scope.spawn(|| m.run(&stats, &running));
        }
        scope.spawn(|| {
            while running.load(Ordering::SeqCst) {
                if stop.is_stopped() {
                    runner_stop.stop();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        if show_bar {
            scope.spawn(|| output::progress(&stats, &running, total));
        }
        let report = runner.run(source, process);
        running.store(false, Ordering::SeqCst);
        report
    })
    .map_err(|e| lib_failure(e, format!("job {:?} stopped", args.job)))?;

    let fatal = pool.and_then(Pool::fatal);
    let (end, code, problem) = match (&report.end, fatal) {
        (_, Some(why)) => ("workers_failed", EXIT_PROBLEM, Some(why)),
        (RunEnd::Finished, None) => ("finished", 0, None),
        (RunEnd::AlreadyDone, None) => ("already_done", 0, None),
        (RunEnd::SourceFailed(e), None) => (
            "input_failed",
            EXIT_PROBLEM,
            Some(format!("reading the input failed: {e}")),
        ),
        (_, None) => ("stopped", EXIT_RETRY, None),
    };
    Ok((
        Summary {
            store: store_path,
            end,
            lifecycle: report.job.lifecycle(),
            records_done: report.job.done_count(),
            total,
            skipped: done_before,
            stats: report.stats,
            elapsed: started.elapsed(),
            scanned: input.scanned(),
            problem,
        },
        code,
    ))
}

fn print_summary(args: &Args, json: bool, s: &Summary) -> anyhow::Result<()> {
    let processed = s.stats.records_committed + s.stats.dead_lettered;
    let secs = s.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        processed as f64 / secs
    } else {
        0.0
    };
    if let Some(problem) = &s.problem {
        output::note(format_args!("error: {problem}"));
    }
    let mut out = Out::new();
    if json {
        out.json(&json!({
            "store": s.store.display().to_string(),
            "job": args.job,
            "end": s.end,
            "lifecycle": s.lifecycle.as_str(),
            "records_total": s.total,
            "records_done": s.records_done,
            "processed": processed,
            "skipped": s.skipped,
            "retried": s.stats.retries,
            "dead_lettered": s.stats.dead_lettered,
            "commits": s.stats.commits,
            "seeks": s.stats.seeks,
            "scrub_passes": s.stats.scrub_passes,
            "scrub_bytes": s.stats.scrub_bytes,
            "scrub_damaged": s.stats.scrub_damaged,
            "input_scanned": s.scanned,
            "elapsed_ms": u64::try_from(s.elapsed.as_millis()).unwrap_or(u64::MAX),
            "records_per_s": (rate * 10.0).round() / 10.0,
        }))?;
        out.finish()?;
        return Ok(());
    }
    let headline = match s.end {
        "already_done" => format!(
            "job {} is already done: all {} records were processed by earlier runs; nothing to do",
            args.job,
            count(s.records_done)
        ),
        "finished" => format!(
            "job {} finished: {} of {} records done ({})",
            args.job,
            count(s.records_done),
            count(s.total),
            s.lifecycle
        ),
        "stopped" => format!(
            "job {} stopped cleanly at {} of {} records; run the same command again to continue",
            args.job,
            count(s.records_done),
            count(s.total)
        ),
        _ => format!(
            "job {} stopped at {} of {} records because of the error above; fix it and run the same command again to continue",
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

/// The code version `run` records: `--code-version`, or a short hash of the command line.
fn code_version(args: &Args) -> String {
    if let Some(v) = &args.code_version {
        return v.clone();
    }
    let mut h = blake3::Hasher::new();
    for part in &args.command {
        let bytes = part.as_encoded_bytes();
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    format!("cmd-{}", &h.finalize().to_hex()[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_mins(2)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }
}
