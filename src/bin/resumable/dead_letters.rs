//! `resumable dead-letters`: records that failed too often, waiting for an operator.

use std::io::Write as _;
use std::process::ExitCode;

use comfy_table::Cell;
use serde_json::json;

use crate::open::JobArgs;
use crate::output::{self, Out, count, num};

const LONG_ABOUT: &str = "\
List a job's dead letters: records that failed on every attempt of their retry budget and
were settled without an output. Fix the cause, then `resumable requeue` them and run the
job again.

--json prints an array, in id order:
  [{\"id\": N, \"attempts\": N, \"error\": S, \"time_ms\": N}]";

/// List a job's dead letters.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub(crate) struct Args {
    /// Print JSON (the shape is in the long help).
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    target: JobArgs,
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<ExitCode> {
    let (store, job) = args.target.open_read()?;
    let letters = store.dead_letters(&job)?;
    let mut out = Out::new();
    if json {
        out.json(&serde_json::Value::Array(
            letters
                .iter()
                .map(|d| {
                    json!({
                        "id": d.id,
                        "attempts": d.attempts,
                        "error": d.error,
                        "time_ms": d.time_ms,
                    })
                })
                .collect(),
        ))?;
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
