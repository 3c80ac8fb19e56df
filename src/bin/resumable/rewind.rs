//! `resumable rewind`: cut a job back to a snapshot, dropping the commits after it.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;

use resumable::{RewindReport, Store};
use serde::Serialize;

use crate::open::JobArgs;
use crate::output::{self, JsonFlag, Out, count};

const LONG_ABOUT: &str = "\
Rewind a job to a snapshot generation: drop every commit after the one the snapshot
reflects (their outputs, done marks, dead letters and lineage entries) and every newer
snapshot, in one durable transaction. The next run resumes from that snapshot and processes
the dropped records again. Use it to undo work done with a bad version of the job, or to
cut away damage that `verify` found after a good snapshot. Generation 0 rewinds to the
beginning. A completed, failed or crashed job becomes paused. Dead letters requeued after
the snapshot stay requeued. The job must not be running.

It asks for confirmation on a terminal; elsewhere pass --yes (without it: exit code 2).

--json prints one object:
  {\"job\": S, \"generation\": N, \"seq\": N, \"records_kept\": N, \"commits_dropped\": N,
   \"outputs_dropped\": N, \"dead_letters_dropped\": N, \"snapshots_dropped\": N}
seq is the job's last commit afterwards.";

/// Rewind a job to a snapshot, dropping later commits.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) output: JsonFlag,
    #[command(flatten)]
    target: JobArgs,
    /// The snapshot generation to rewind to (see `resumable snapshots`); 0: the beginning.
    #[arg(long, value_name = "GEN")]
    to_snapshot: u64,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
}

/// The `--json` shape of `rewind` and `fork` (see `LONG_ABOUT`).
#[derive(Serialize)]
pub(crate) struct RewindJson<'a> {
    job: &'a str,
    generation: u64,
    seq: u64,
    records_kept: u64,
    commits_dropped: u64,
    outputs_dropped: u64,
    dead_letters_dropped: u64,
    snapshots_dropped: u64,
}

impl<'a> From<&'a RewindReport> for RewindJson<'a> {
    fn from(r: &'a RewindReport) -> Self {
        RewindJson {
            job: &r.job,
            generation: r.generation,
            seq: r.seq,
            records_kept: r.records_kept,
            commits_dropped: r.commits_dropped,
            outputs_dropped: r.outputs_dropped,
            dead_letters_dropped: r.dead_letters_dropped,
            snapshots_dropped: r.snapshots_dropped,
        }
    }
}

/// The commit sequence snapshot `generation` reflects (0 for generation 0).
pub(crate) fn snapshot_seq(store: &Store, job: &str, generation: u64) -> anyhow::Result<u64> {
    if generation == 0 {
        return Ok(0);
    }
    let snapshots = store.snapshots(job)?;
    let Some(s) = snapshots.iter().find(|s| s.generation == generation) else {
        return Err(resumable::Error::SnapshotNotFound {
            job: job.to_owned(),
            generation,
        }
        .into());
    };
    s.seq.ok_or_else(|| {
        anyhow::anyhow!(
            "snapshot generation {generation} of job {job:?} fails its check; choose another (see `resumable snapshots`)"
        )
    })
}

pub(crate) fn confirm(question: &str) -> anyhow::Result<bool> {
    let mut err = std::io::stderr().lock();
    write!(err, "{question} [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<ExitCode> {
    let (store, job) = args.target.open_write()?;
    let seq = snapshot_seq(&store, &job, args.to_snapshot)?;
    if !args.yes {
        let commits = store.status(&job)?.commits;
        let question = format!(
            "Rewind job {job} to snapshot {} (commit {seq}), dropping {} later commits?",
            args.to_snapshot,
            count(commits.saturating_sub(seq))
        );
        if !std::io::stdin().is_terminal() {
            return crate::usage(format!(
                "{question} This needs confirmation: pass --yes to rewind without a terminal"
            ));
        }
        if !confirm(&question)? {
            output::note("rewind cancelled; nothing changed");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let report = store.rewind(&job, args.to_snapshot)?;
    let mut out = Out::new();
    if json {
        out.json(&RewindJson::from(&report))?;
    } else {
        writeln!(
            out,
            "rewound job {job} to snapshot {} (commit {}): dropped {} commits, {} outputs, {} dead letters, {} snapshots; {} records remain done",
            report.generation,
            report.seq,
            count(report.commits_dropped),
            count(report.outputs_dropped),
            count(report.dead_letters_dropped),
            count(report.snapshots_dropped),
            count(report.records_kept),
        )?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
