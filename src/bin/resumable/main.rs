//! `resumable`: the operator CLI. Inspect, verify, export and repair job stores without
//! writing code or running the job, and run the built-in demo job.
//!
//! `main` parses the command line, sets up logging (tracing, `RUST_LOG`, default `warn`, to
//! stderr), dispatches to one module per subcommand and maps the outcome to an exit code:
//! 0 success, 1 a problem with the store or job, 2 a usage error. A broken pipe on stdout
//! (`resumable export … | head`) is success.

mod bench;
mod compact;
mod dead_letters;
mod demo;
mod export;
mod failure;
mod fork;
mod lineage;
mod metrics;
mod open;
mod output;
mod pin;
mod ranges;
mod recover;
mod redo;
mod report;
mod requeue;
mod rewind;
mod run;
mod salvage;
mod shards;
mod signals;
mod snapshots;
mod status;
mod verify;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes, as documented in `--help`.
pub(crate) const EXIT_PROBLEM: u8 = 1;
pub(crate) const EXIT_USAGE: u8 = 2;
/// Stopped before the end and resumable: run it again (`EX_TEMPFAIL`).
pub(crate) const EXIT_RETRY: u8 = 75;

const AFTER_HELP: &str = "\
Exit codes:
  0   success; for the job-running commands (demo, run): the job completed
  1   a problem that retrying will not fix: the store is damaged (verify found damage) or
      not a store, the job is mismatched (other state type, schema, input, shard spec) or
      not found; for the read commands also a store locked by another process or an I/O
      error
  2   usage error: bad arguments, or a confirmation that was needed and not given
  75  (demo, run) stopped before the end and resumable: Ctrl-C or SIGTERM (a second
      signal quits at once), the store locked by another writer, an I/O error or a full
      disk; run the same command again to continue. A scheduler must not count it as done.
Kubernetes podFailurePolicy: FailIndex on exit codes 1 and 2, retry the rest; Slurm:
requeue on 75 (docs/RUNBOOK.md has example rules).

Read commands (status, ranges, snapshots, lineage, export, dead-letters, verify) open the
store as live readers: they work while a job runs on it and see its commits as they land,
and they never write. A store whose job crashed needs recovery first: they refuse it with
that advice (kind needs_recovery), unless --recover is given; `resumable recover STORE`
runs recovery alone. After a failed fsync every command refuses the store (kind
sync_failed) until `resumable recover STORE` drops its cached pages. A running job has the
store to itself (one fsync per commit) until a reader knocks: a read command that finds it
held touches .STORE.readers beside it and retries for a second, and the job lets readers in
at its next commit (a second fsync per commit while they come). A job that commits nothing
in that second, or with deferred durability, leaves the reader with kind locked. Logs go to
stderr; set RUST_LOG (e.g. RUST_LOG=info) for more. --json (every command but export,
which has --format) prints the stable shape documented in the command's --help; when the
command fails it prints instead, with the same exit code:
  {\"error\": {\"kind\": S, \"message\": S, \"advice\": S}}
kind is what went wrong: usage (also for bad arguments), io (a missing store file among
others), not_a_store, unsupported_format, corrupt, storage (the storage engine cannot read
the file), job_mismatch, job_not_found, locked, needs_recovery, sync_failed, disk_full, poisoned, lifecycle, record,
panicked, snapshot_not_found, invalid_argument, internal (resumable failed), or other.
message is what stderr says; advice what to do.";

/// Inspect, verify, export and repair `resumable` job stores, and run the demo job.
#[derive(Parser, Debug)]
#[command(name = "resumable", version, about, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Demo(demo::Args),
    Run(run::Args),
    /// Measure what checkpointing costs on this disk against no checkpointing.
    Bench(bench::BenchArgs),
    Status(status::Args),
    Ranges(ranges::Args),
    Snapshots(snapshots::Args),
    Lineage(lineage::Args),
    Export(export::Args),
    DeadLetters(dead_letters::Args),
    Requeue(requeue::Args),
    Redo(redo::Args),
    Verify(verify::Args),
    Rewind(rewind::Args),
    Fork(fork::Args),
    Compact(compact::Args),
    Recover(recover::Args),
    Report(report::Args),
    Salvage(salvage::Args),
    /// Pin a snapshot generation: keep it from retention (a savepoint).
    Pin(pin::PinArgs),
    /// Unpin a snapshot generation: hand it back to retention.
    Unpin(pin::PinArgs),
}

/// An error in how the command was used: exit code 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Returns a usage error (exit code 2).
pub(crate) fn usage<T>(message: impl Into<String>) -> anyhow::Result<T> {
    Err(UsageError(message.into()).into())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with code 0; errors to stderr with code 2, and
            // under --json also as an error object on stdout.
            let _ = e.print();
            if e.use_stderr() && std::env::args_os().any(|a| a == "--json") {
                return failure::report_usage(&e.to_string());
            }
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE));
        }
    };
    init_logging();
    // redb can panic on some damaged files instead of returning an error. Whatever the file
    // holds, the operator gets a message and exit code 1, never a panic trace.
    std::panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown failure".to_owned());
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(format!("{message}{place}"));
        }
    }));
    let json = cli.command.json();
    match std::panic::catch_unwind(|| dispatch(&cli)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            let code = failure::report(&e, json);
            // Job-running commands: a failure that a rerun can get past asks for a retry.
            if matches!(cli.command, Command::Demo(_)) && failure::retryable(&e) {
                ExitCode::from(EXIT_RETRY)
            } else {
                code
            }
        }
        Err(_) => {
            let detail = LAST_PANIC
                .lock()
                .ok()
                .and_then(|mut l| l.take())
                .unwrap_or_default();
            failure::report_panic(&detail, json)
        }
    }
}

/// The message of the last panic, kept by the panic hook for the error message.
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

impl Command {
    /// Whether the command was asked for JSON: then its failure is JSON too.
    fn json(&self) -> bool {
        match self {
            Command::Demo(a) => a.output.json,
            Command::Run(a) => a.json,
            Command::Bench(a) => a.output.json,
            Command::Status(a) => a.output.json,
            Command::Ranges(a) => a.output.json,
            Command::Snapshots(a) => a.output.json,
            Command::Lineage(a) => a.output.json,
            Command::Export(_) => false,
            Command::DeadLetters(a) => a.output.json,
            Command::Requeue(a) => a.output.json,
            Command::Redo(a) => a.output.json,
            Command::Verify(a) => a.output.json,
            Command::Rewind(a) => a.output.json,
            Command::Fork(a) => a.output.json,
            Command::Compact(a) => a.output.json,
            Command::Recover(a) => a.output.json,
            Command::Report(a) => a.output.json,
            Command::Salvage(a) => a.output.json,
            Command::Pin(a) | Command::Unpin(a) => a.output.json,
        }
    }
}

fn dispatch(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Demo(a) => demo::run(a, a.output.json),
        Command::Run(a) => run::run(a, a.json),
        Command::Bench(a) => bench::run(a),
        Command::Status(a) => status::run(a, a.output.json),
        Command::Ranges(a) => ranges::run(a, a.output.json),
        Command::Snapshots(a) => snapshots::run(a, a.output.json),
        Command::Lineage(a) => lineage::run(a, a.output.json),
        Command::Export(a) => export::run(a),
        Command::DeadLetters(a) => dead_letters::run(a, a.output.json),
        Command::Requeue(a) => requeue::run(a, a.output.json),
        Command::Redo(a) => redo::run(a, a.output.json),
        Command::Verify(a) => verify::run(a, a.output.json),
        Command::Rewind(a) => rewind::run(a, a.output.json),
        Command::Recover(a) => recover::run(a, a.output.json),
        Command::Fork(a) => fork::run(a, a.output.json),
        Command::Compact(a) => compact::run(a, a.output.json),
        Command::Report(a) => report::run(a, a.output.json),
        Command::Salvage(a) => salvage::run(a, a.output.json),
        Command::Pin(a) => pin::run(a, a.output.json, true),
        Command::Unpin(a) => pin::run(a, a.output.json, false),
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    // Colour codes only on a terminal: logs piped to a file or a scheduler's log collector
    // stay plain text (NO_COLOR turns them off on a terminal too).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
