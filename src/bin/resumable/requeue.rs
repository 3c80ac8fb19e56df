//! `resumable requeue`: put dead letters back in line for the next run.

use std::io::Write as _;
use std::process::ExitCode;

use serde::Serialize;

use crate::open::JobArgs;
use crate::output::{self, JsonFlag, Out, count};

const LONG_ABOUT: &str = "\
Put dead letters back in line: remove them (all, or the listed ids) and unmark them done in
one durable commit, so the next run of the job processes them again. The job must not be
running. Ids listed that are not dead letters are named on stderr and otherwise ignored.

--json prints one object:
  {\"job\": S, \"requeued\": [ID, ...], \"not_dead_letters\": [ID, ...]}";

/// The `--json` shape (see `LONG_ABOUT`).
#[derive(Serialize)]
struct RequeueJson<'a> {
    job: &'a str,
    requeued: &'a [u64],
    not_dead_letters: &'a [u64],
}

/// Put dead letters back in line.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["all", "ids"])))]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) output: JsonFlag,
    #[command(flatten)]
    target: JobArgs,
    /// Requeue every dead letter.
    #[arg(long)]
    all: bool,
    /// Requeue these ids (comma-separated).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    ids: Vec<u64>,
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<ExitCode> {
    let (store, job) = args.target.open_write()?;
    let wanted = (!args.all).then_some(args.ids.as_slice());
    let requeued = store.requeue(&job, wanted)?;
    let missing: Vec<u64> = args
        .ids
        .iter()
        .copied()
        .filter(|id| !requeued.contains(id))
        .collect();
    if !missing.is_empty() && !json {
        output::note(format_args!(
            "note: not dead letters of job {job}, left alone: {}",
            missing
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut out = Out::new();
    if json {
        out.json(&RequeueJson {
            job: &job,
            requeued: &requeued,
            not_dead_letters: &missing,
        })?;
    } else {
        writeln!(
            out,
            "requeued {} dead letters of job {job}; run the job again to process them",
            count(requeued.len() as u64)
        )?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
