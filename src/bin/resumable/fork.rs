//! `resumable fork`: copy a job as of a snapshot into a new store file.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::open::JobArgs;
use crate::output::{JsonFlag, Out, count};
use crate::rewind::RewindJson;

const LONG_ABOUT: &str = "\
Write a new store file holding the job as of a snapshot generation: its lineage up to the
commit that snapshot reflects, the outputs and dead letters those commits settled, and the
snapshots up to it, byte for byte; the forked job is paused there, and running it continues
from that point. The original store is not changed. NEW_STORE must not exist. Generation 0
forks an empty job.

--json prints one object, as `rewind` does (\"dropped\" counts what was not copied):
  {\"job\": S, \"generation\": N, \"seq\": N, \"records_kept\": N, \"commits_dropped\": N,
   \"outputs_dropped\": N, \"dead_letters_dropped\": N, \"snapshots_dropped\": N}";

/// Copy a job as of a snapshot into a new store.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) output: JsonFlag,
    #[command(flatten)]
    target: JobArgs,
    /// The snapshot generation to fork at (see `resumable snapshots`).
    #[arg(long, value_name = "GEN")]
    at: u64,
    /// The new store file to create.
    #[arg(long, value_name = "NEW_STORE")]
    into: PathBuf,
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<ExitCode> {
    if std::fs::symlink_metadata(&args.into).is_ok() {
        return crate::usage(format!(
            "{} already exists; fork into a new path",
            args.into.display()
        ));
    }
    // Read-write: the fork must not race a running job, and a crashed store is recovered.
    let (store, job) = args.target.open_write()?;
    let report = store.fork(&job, args.at, &args.into)?;
    let mut out = Out::new();
    if json {
        out.json(&RewindJson::from(&report))?;
    } else {
        writeln!(
            out,
            "forked job {job} at snapshot {} (commit {}) into {}: {} records done there",
            report.generation,
            report.seq,
            args.into.display(),
            count(report.records_kept),
        )?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
