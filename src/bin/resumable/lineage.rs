//! `resumable lineage`: a job's commit log, with the ids each commit covered and its hashes.

use std::io::Write as _;
use std::process::ExitCode;

use resumable::LineageEntry;
use serde::Serialize;

use crate::open::JobArgs;
use crate::output::{self, JsonFlag, Out, count, num};

const LONG_ABOUT: &str = "\
Show a job's lineage: the hash-chained log of its commits. Each entry names its sequence
number, time, the ids whose outputs it stored (as half-open ranges), the ids it moved to
the dead letters, the hash of its outputs, the previous entry's hash and its own. `verify`
recomputes the chain.

--json prints an array:
  [{\"seq\": N, \"time_ms\": N, \"records\": N, \"outputs\": [[START, END], ...],
    \"dead_letters\": [ID, ...], \"outputs_hash\": HEX16, \"prev_hash\": HEX16,
    \"hash\": HEX16}]
Hashes are 16 lowercase hex digits.";

/// Show a job's commit log.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) output: JsonFlag,
    #[command(flatten)]
    target: JobArgs,
    /// First commit sequence number to show.
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// Most entries to show.
    #[arg(long, default_value_t = 1000)]
    limit: usize,
}

fn hex(h: u64) -> String {
    format!("{h:016x}")
}

/// One element of the `--json` array (see `LONG_ABOUT`).
#[derive(Serialize)]
struct EntryJson<'a> {
    seq: u64,
    time_ms: u64,
    records: u64,
    outputs: &'a [(u64, u64)],
    dead_letters: &'a [u64],
    outputs_hash: String,
    prev_hash: String,
    hash: String,
}

impl<'a> From<&'a LineageEntry> for EntryJson<'a> {
    fn from(e: &'a LineageEntry) -> Self {
        EntryJson {
            seq: e.seq,
            time_ms: e.time_ms,
            records: e.output_count() + e.dead_letters.len() as u64,
            outputs: &e.outputs,
            dead_letters: &e.dead_letters,
            outputs_hash: hex(e.outputs_hash),
            prev_hash: hex(e.prev_hash),
            hash: hex(e.hash),
        }
    }
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<ExitCode> {
    let (store, job) = args.target.open_read()?;
    let entries = store.lineage(&job, args.from, args.limit)?;
    let mut out = Out::new();
    if json {
        out.json(&entries.iter().map(EntryJson::from).collect::<Vec<_>>())?;
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        writeln!(out, "job {job} has no commits from {}", args.from)?;
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = output::table(&["seq", "time", "records", "outputs", "dead letters", "hash"]);
    for e in &entries {
        let dead: Vec<(u64, u64)> = e.dead_letters.iter().map(|&d| (d, d + 1)).collect();
        t.add_row(vec![
            num(e.seq),
            comfy_table::Cell::new(output::time(e.time_ms)),
            num(count(e.output_count() + e.dead_letters.len() as u64)),
            comfy_table::Cell::new(output::ranges(&e.outputs, 4)),
            comfy_table::Cell::new(output::ranges(&dead, 4)),
            comfy_table::Cell::new(hex(e.hash)),
        ]);
    }
    out.table(&t)?;
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
