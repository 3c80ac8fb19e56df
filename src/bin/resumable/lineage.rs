//! `resumable lineage`: a job's commit log, with the ids each commit covered and its hashes.

use std::io::Write as _;
use std::process::ExitCode;

use resumable::{LineageEntry, RedoRecord};
use serde::Serialize;

use crate::open::JobArgs;
use crate::output::{self, JsonFlag, Out, count, num};

const LONG_ABOUT: &str = "\
Show a job's lineage: the hash-chained log of its commits. Each entry names its sequence
number, time, the code version that made it, the ids whose outputs it stored (as half-open
ranges), the ids it moved to the dead letters, the hash of its outputs, the previous entry's
hash and its own; a redo entry names what it removed. `verify` recomputes the chain. Below
the entries: how many live records each code version produced.

--head prints only the head, `SEQ:HASH` (the last entry's seq and hash): record it elsewhere
(an audit log, a ticket) and check the store against it later with `resumable verify
--expect-head SEQ:HASH`. The head commits to every entry and every output byte (BLAKE3).

--json prints an array of the entries (`status --json` has the per-version counts):
  [{\"seq\": N, \"time_ms\": N, \"records\": N, \"code_version\": S|null,
    \"outputs\": [[START, END], ...], \"dead_letters\": [ID, ...],
    \"redo\": {\"selection\": S, \"outputs\": [[START, END], ...], \"dead_letters\": [ID, ...]}|null,
    \"outputs_hash\": HASH, \"prev_hash\": HASH, \"hash\": HASH}]
with --head: {\"head\": \"SEQ:HASH\", \"seq\": N, \"hash\": HASH}.
HASH is 64 lowercase hex digits (BLAKE3), or `fnv64-` and 16 hex digits for entries written
by format 2 (stores from before format 3, read in place); code_version is null for those.";

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
    /// Print only the head (`SEQ:HASH`), for `verify --expect-head`.
    #[arg(long)]
    head: bool,
}

/// One element of the `--json` array (see `LONG_ABOUT`).
#[derive(Serialize)]
struct EntryJson<'a> {
    seq: u64,
    time_ms: u64,
    records: u64,
    code_version: Option<&'a str>,
    outputs: &'a [(u64, u64)],
    dead_letters: &'a [u64],
    redo: Option<&'a RedoRecord>,
    outputs_hash: String,
    prev_hash: String,
    hash: String,
}

#[derive(Serialize)]
struct HeadJson {
    head: String,
    seq: u64,
    hash: String,
}

impl<'a> From<&'a LineageEntry> for EntryJson<'a> {
    fn from(e: &'a LineageEntry) -> Self {
        EntryJson {
            seq: e.seq,
            time_ms: e.time_ms,
            records: e.output_count() + e.dead_letters.len() as u64,
            code_version: e.code_version.as_deref(),
            outputs: &e.outputs,
            dead_letters: &e.dead_letters,
            redo: e.redo.as_ref(),
            outputs_hash: e.outputs_hash.to_string(),
            prev_hash: e.prev_hash.to_string(),
            hash: e.hash.to_string(),
        }
    }
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<ExitCode> {
    let (store, job) = args.target.open_read()?;
    let head = store.lineage_head(&job)?;
    let mut out = Out::new();
    if args.head {
        if json {
            out.json(&HeadJson {
                head: head.to_string(),
                seq: head.seq,
                hash: head.hash.to_string(),
            })?;
        } else {
            writeln!(out, "{head}")?;
        }
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    let entries = store.lineage(&job, args.from, args.limit)?;
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
    let mut t = output::table(&[
        "seq",
        "time",
        "code version",
        "records",
        "outputs",
        "dead letters",
        "hash",
    ]);
    for e in &entries {
        let dead: Vec<(u64, u64)> = e.dead_letters.iter().map(|&d| (d, d + 1)).collect();
        let outputs = match &e.redo {
            Some(r) => format!(
                "redo {}: removed {} outputs {}",
                r.selection,
                r.output_count(),
                output::ranges(&r.outputs, 4)
            ),
            None => output::ranges(&e.outputs, 4),
        };
        let mut hash = e.hash.to_string();
        hash.truncate(16);
        t.add_row(vec![
            num(e.seq),
            comfy_table::Cell::new(output::time(e.time_ms)),
            comfy_table::Cell::new(e.code_version.as_deref().unwrap_or("(format 2)")),
            num(count(e.output_count() + e.dead_letters.len() as u64)),
            comfy_table::Cell::new(outputs),
            comfy_table::Cell::new(output::ranges(&dead, 4)),
            comfy_table::Cell::new(hash),
        ]);
    }
    out.table(&t)?;
    let versions = store.code_versions(&job)?;
    let mut v = output::table(&["code version", "live records", "commits"]);
    for c in &versions {
        v.add_row(vec![
            comfy_table::Cell::new(c.code_version.as_deref().unwrap_or("(format 2)")),
            num(count(c.records)),
            num(count(c.commits)),
        ]);
    }
    out.table(&v)?;
    writeln!(out, "head {head}")?;
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
