//! `resumable redo`: make chosen done records pending again, so the next run processes
//! exactly those records once more.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use resumable::{RedoReport, RedoSelection};
use serde::Serialize;

use crate::open::JobArgs;
use crate::output::{self, JsonFlag, Out, count};

const LONG_ABOUT: &str = "\
Make chosen done records pending again: remove their outputs and done marks (and dead
letters) in one durable transaction, so the next run of the job processes exactly those
records again, once each. Select with one of --ids, --range, --code-version (the outputs a
code version committed, see `resumable lineage`), --committed-after / --committed-before
(TIME: ms since the Unix epoch or UTC `YYYY-MM-DDTHH:MM:SSZ`) or --dead-letters.

The lineage keeps the history: the redo is itself an entry (what was selected, the ranges
removed, when, and the code version that asked, --code-version-asking), and the chain
still verifies. The state stays the fold of the outputs that remain: snapshots from the
earliest removed commit on are retired, and the next open rebuilds the state from an older
snapshot (or the empty state) plus a replay of the remaining outputs (docs/REDO.md).
A completed, failed or crashed job becomes paused. The job must not be running: while
another process writes the store it is refused (the store is locked: exit 1).

--dry-run prints what would be removed and changes nothing. Otherwise it asks for
confirmation on a terminal; elsewhere pass --yes (without it: exit code 2). An empty
selection says so, changes nothing and exits 0. A range outside the input, or a code version
never seen (the message lists those seen), is a bad argument: exit 2.

--json prints one object:
  {\"job\": S, \"selection\": S, \"dry_run\": BOOL, \"applied\": BOOL, \"records\": N,
   \"outputs\": N, \"output_ranges\": [[START, END], ...], \"dead_letters\": [ID, ...],
   \"earliest_commit\": N|null, \"snapshots_retired\": [GEN, ...], \"rebuild_from\": N,
   \"redo_seq\": N|null}
rebuild_from is the commit of the snapshot the state is rebuilt from (0: the empty state).";

/// Make chosen done records pending again.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
#[command(group(clap::ArgGroup::new("which").required(true).args([
    "ids", "range", "code_version", "committed_after", "committed_before", "dead_letters"
])))]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) output: JsonFlag,
    #[command(flatten)]
    target: JobArgs,
    /// These ids (comma-separated).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    ids: Vec<u64>,
    /// The done ids in START..END (end exclusive).
    #[arg(long, value_name = "START..END", value_parser = parse_range)]
    range: Option<std::ops::Range<u64>>,
    /// The outputs this code version committed.
    #[arg(long, value_name = "VERSION")]
    code_version: Option<String>,
    /// The outputs committed after TIME.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    committed_after: Option<u64>,
    /// The outputs committed before TIME.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    committed_before: Option<u64>,
    /// Every dead letter.
    #[arg(long)]
    dead_letters: bool,
    /// Print what would be removed; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    /// The code version recorded as asking for the redo.
    #[arg(long, default_value = resumable::DEFAULT_CODE_VERSION)]
    code_version_asking: String,
}

fn parse_range(s: &str) -> Result<std::ops::Range<u64>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("{s:?} is not a range: give START..END, e.g. 100..200"))?;
    let a: u64 = a.parse().map_err(|_| format!("{a:?} is not a record id"))?;
    let b: u64 = b.parse().map_err(|_| format!("{b:?} is not a record id"))?;
    Ok(a..b)
}

/// Milliseconds since the Unix epoch, or a UTC time `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
fn parse_time(input: &str) -> Result<u64, String> {
    if let Ok(ms) = input.parse::<u64>() {
        return Ok(ms);
    }
    let bad = || {
        format!(
            "{input:?} is not a time: give ms since the Unix epoch or YYYY-MM-DDTHH:MM:SSZ (UTC)"
        )
    };
    let stamp = input.strip_suffix('Z').ok_or_else(bad)?;
    let (date, clock) = stamp.split_once('T').ok_or_else(bad)?;
    let (clock, frac) = clock.split_once('.').unwrap_or((clock, "0"));
    if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let num = |x: &str| x.parse::<i64>().map_err(|_| bad());
    let ymd = date.split('-').map(num).collect::<Result<Vec<_>, _>>()?;
    let hms = clock.split(':').map(num).collect::<Result<Vec<_>, _>>()?;
    let (&[year, month, day], &[hour, minute, second]) = (ymd.as_slice(), hms.as_slice()) else {
        return Err(bad());
    };
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..24).contains(&hour)
        || !(0..60).contains(&minute)
        || !(0..=60).contains(&second)
    {
        return Err(bad());
    }
    let millis = num(&format!("{frac:0<3}")[..3])?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let ms = (days * 86_400 + hour * 3600 + minute * 60 + second) * 1000 + millis;
    u64::try_from(ms).map_err(|_| bad())
}

impl Args {
    fn selection(&self) -> RedoSelection {
        if let Some(r) = &self.range {
            RedoSelection::Range(r.clone())
        } else if let Some(v) = &self.code_version {
            RedoSelection::CodeVersion(v.clone())
        } else if let Some(t) = self.committed_after {
            RedoSelection::CommittedAfter(t)
        } else if let Some(t) = self.committed_before {
            RedoSelection::CommittedBefore(t)
        } else if self.dead_letters {
            RedoSelection::DeadLetters
        } else {
            RedoSelection::Ids(self.ids.clone())
        }
    }
}

/// The `--json` shape (see `LONG_ABOUT`).
#[derive(Serialize)]
struct RedoJson<'a> {
    job: &'a str,
    selection: &'a str,
    dry_run: bool,
    applied: bool,
    records: u64,
    outputs: u64,
    output_ranges: &'a [(u64, u64)],
    dead_letters: &'a [u64],
    earliest_commit: Option<u64>,
    snapshots_retired: &'a [u64],
    rebuild_from: u64,
    redo_seq: Option<u64>,
}

impl<'a> From<&'a RedoReport> for RedoJson<'a> {
    fn from(r: &'a RedoReport) -> Self {
        RedoJson {
            job: &r.job,
            selection: &r.selection,
            dry_run: r.dry_run,
            applied: r.redo_seq.is_some(),
            records: r.records(),
            outputs: r.output_count,
            output_ranges: &r.outputs,
            dead_letters: &r.dead_letters,
            earliest_commit: r.earliest_commit,
            snapshots_retired: &r.snapshots_retired,
            rebuild_from: r.rebuild_from,
            redo_seq: r.redo_seq,
        }
    }
}

fn describe(r: &RedoReport) -> String {
    let dead: Vec<(u64, u64)> = r.dead_letters.iter().map(|&d| (d, d + 1)).collect();
    let mut s = format!(
        "{} records of job {} ({}): {} outputs {}",
        count(r.records()),
        r.job,
        r.selection,
        count(r.output_count),
        output::ranges(&r.outputs, 8)
    );
    if !dead.is_empty() {
        let _ = write!(
            s,
            ", {} dead letters {}",
            count(dead.len() as u64),
            output::ranges(&dead, 8)
        );
    }
    s
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<ExitCode> {
    let (store, job) = args.target.open_write()?;
    let selection = args.selection();
    let plan = store.redo(&job, &selection, &args.code_version_asking, true)?;
    let mut out = Out::new();
    let done = |out: &mut Out, report: &RedoReport| -> anyhow::Result<ExitCode> {
        if json {
            out.json(&RedoJson::from(report))?;
        }
        Ok(ExitCode::SUCCESS)
    };
    if plan.records() == 0 {
        if !json {
            writeln!(
                out,
                "nothing selected: no done record of job {job} matches {}; nothing changed",
                plan.selection
            )?;
        }
        let code = done(&mut out, &plan)?;
        out.finish()?;
        return Ok(code);
    }
    if args.dry_run {
        if !json {
            writeln!(
                out,
                "dry run, nothing changed: would redo {}",
                describe(&plan)
            )?;
            if let Some(c) = plan.earliest_commit {
                writeln!(
                    out,
                    "the state would be rebuilt from commit {} (retiring {} snapshots from commit {c} on)",
                    plan.rebuild_from,
                    plan.snapshots_retired.len()
                )?;
            }
        }
        let code = done(&mut out, &plan)?;
        out.finish()?;
        return Ok(code);
    }
    if !args.yes {
        let question = format!("Redo {}?", describe(&plan));
        if !std::io::stdin().is_terminal() {
            return crate::usage(format!(
                "{question} This needs confirmation: pass --yes to redo without a terminal"
            ));
        }
        if !crate::rewind::confirm(&question)? {
            output::note("redo cancelled; nothing changed");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let report = store.redo(&job, &selection, &args.code_version_asking, false)?;
    if !json {
        writeln!(
            out,
            "redo entry {}: {}; run the job again to process them",
            report.redo_seq.unwrap_or_default(),
            describe(&report)
        )?;
    }
    let code = done(&mut out, &report)?;
    out.finish()?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20.5Z"), Ok(1_700_000_000_500));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2023-11-14T22:13:20.ééZ").is_err());
        assert_eq!(parse_range("100..200"), Ok(100..200));
        assert!(parse_range("100-200").is_err());
    }
}
