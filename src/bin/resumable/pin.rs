//! `resumable pin` / `unpin`: keep a snapshot from retention (a savepoint), or release it.

use std::io::Write as _;
use std::process::ExitCode;

use serde::Serialize;

use crate::open::JobArgs;
use crate::output::{JsonFlag, Out};

const LONG_ABOUT: &str = "\
Pin a snapshot generation so retention never retires it (a savepoint to rewind or fork to
later), or unpin it. The job must not be running. Unpinning a generation that is not pinned
changes nothing.

--json prints one object:
  {\"job\": S, \"generation\": N, \"pinned\": [N, ...]}
where pinned lists every pinned generation afterwards.";

/// The `--json` shape (see `LONG_ABOUT`).
#[derive(Serialize)]
struct PinJson<'a> {
    job: &'a str,
    generation: u64,
    pinned: &'a [u64],
}

/// Pin (or unpin) a snapshot generation.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub(crate) struct PinArgs {
    #[command(flatten)]
    pub(crate) output: JsonFlag,
    #[command(flatten)]
    target: JobArgs,
    /// The snapshot generation (see `resumable snapshots`).
    generation: u64,
}

pub(crate) fn run(args: &PinArgs, json: bool, pin: bool) -> anyhow::Result<ExitCode> {
    let (store, job) = args.target.open_write()?;
    let pinned = if pin {
        store.pin(&job, args.generation)?
    } else {
        store.unpin(&job, args.generation)?
    };
    let mut out = Out::new();
    if json {
        out.json(&PinJson {
            job: &job,
            generation: args.generation,
            pinned: &pinned,
        })?;
    } else {
        let list = if pinned.is_empty() {
            "none".to_owned()
        } else {
            pinned
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            out,
            "{} snapshot {} of job {job}; pinned generations: {list}",
            if pin { "pinned" } else { "unpinned" },
            args.generation
        )?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
