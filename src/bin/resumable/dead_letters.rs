//! `resumable dead-letters`: records that failed too often, waiting for an operator.

use std::io::Write as _;
use std::process::ExitCode;

use comfy_table::Cell;
use resumable::DeadLetter;
use serde::Serialize;

use crate::open::JobArgs;
use crate::output::{self, JsonFlag, Out, count, num};

const LONG_ABOUT: &str = "\
List a job's dead letters: records that failed on every attempt of their retry budget and
were settled without an output. Fix the cause, then `resumable requeue` them and run the
job again.

--json prints an array, in id order:
  [{\"id\": N, \"attempts\": N, \"error\": S, \"time_ms\": N}]";

/// One element of the `--json` array (see `LONG_ABOUT`).
#[derive(Serialize)]
struct DeadLetterJson<'a> {
    id: u64,
    attempts: u32,
    error: &'a str,
    time_ms: u64,
}

impl<'a> From<&'a DeadLetter> for DeadLetterJson<'a> {
    fn from(d: &'a DeadLetter) -> Self {
        DeadLetterJson {
            id: d.id,
            attempts: d.attempts,
            error: &d.error,
            time_ms: d.time_ms,
        }
    }
}

/// List a job's dead letters.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) output: JsonFlag,
    #[command(flatten)]
    target: JobArgs,
    #[command(flatten)]
    stores: crate::shards::StoreSet,
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<ExitCode> {
    if let Some(set) = args.stores.set(args.target.store())? {
        return crate::shards::dead_letters(&set, &args.target, json);
    }
    let (store, job) = args.target.open_read()?;
    let letters = store.dead_letters(&job)?;
    let mut out = Out::new();
    if json {
        out.json(&letters.iter().map(DeadLetterJson::from).collect::<Vec<_>>())?;
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    if letters.is_empty() {
        writeln!(out, "job {job} has no dead letters")?;
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "job {job}: {} dead letters",
        count(letters.len() as u64)
    )?;
    let mut t = output::table(&["id", "attempts", "last error", "time"]);
    for d in &letters {
        t.add_row(vec![
            num(d.id),
            num(d.attempts),
            Cell::new(&d.error),
            Cell::new(output::time(d.time_ms)),
        ]);
    }
    out.table(&t)?;
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
