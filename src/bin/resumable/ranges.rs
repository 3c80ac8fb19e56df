//! `resumable ranges`: a job's done id ranges and the gaps between them.

use std::io::Write as _;
use std::process::ExitCode;

use serde::Serialize;

use crate::open::JobArgs;
use crate::output::{self, JsonFlag, Out, count, num};

const LONG_ABOUT: &str = "\
Show the ids a job has settled (outputs stored or dead-lettered) as half-open ranges
[start, end), and the gaps (ids not settled yet) below the bound: the job's declared total,
or else the end of its last done range. Records finish out of order with parallel workers,
so progress is a set of ranges, not one offset.

--json prints one object:
  {\"job\": S, \"records_done\": N, \"watermark\": N, \"bound\": N,
   \"done\": [[START, END], ...], \"gaps\": [[START, END], ...]}
Ranges are half-open: END is the first id not in the range.";

/// The `--json` shape (see `LONG_ABOUT`).
#[derive(Serialize)]
struct RangesJson<'a> {
    job: &'a str,
    records_done: u64,
    watermark: u64,
    bound: u64,
    done: &'a [(u64, u64)],
    gaps: &'a [(u64, u64)],
}

/// Show a job's done ranges and gaps.
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
        return crate::shards::ranges(&set, &args.target, json);
    }
    let (store, job) = args.target.open_read()?;
    let status = store.status(&job)?;
    let done = store.done_ranges(&job)?;
    let done_list: Vec<(u64, u64)> = done.ranges().map(|r| (r.start, r.end)).collect();
    let bound = status
        .total_records
        .unwrap_or_else(|| done_list.last().map_or(0, |r| r.1));
    let gaps: Vec<(u64, u64)> = done.gaps(bound).map(|r| (r.start, r.end)).collect();
    let mut out = Out::new();
    if json {
        out.json(&RangesJson {
            job: &job,
            records_done: done.len(),
            watermark: done.watermark(),
            bound,
            done: &done_list,
            gaps: &gaps,
        })?;
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "job {job}: {} records done in {} ranges, watermark {}, {} ids missing below {}",
        count(done.len()),
        count(done_list.len() as u64),
        count(done.watermark()),
        count(gaps.iter().map(|(a, b)| b - a).sum()),
        count(bound),
    )?;
    let mut rows: Vec<(u64, u64, bool)> = done_list
        .iter()
        .map(|&(a, b)| (a, b, true))
        .chain(gaps.iter().map(|&(a, b)| (a, b, false)))
        .collect();
    rows.sort_unstable();
    if rows.is_empty() {
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = output::table(&["", "from", "to (excl.)", "ids"]);
    for (a, b, is_done) in rows {
        t.add_row(vec![
            output::good_bad(if is_done { "done" } else { "gap" }, is_done),
            num(a),
            num(b),
            num(count(b - a)),
        ]);
    }
    out.table(&t)?;
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
