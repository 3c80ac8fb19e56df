//! `resumable verify`: the full check of a store and its jobs.

use std::io::Write as _;
use std::process::ExitCode;

use resumable::demo::DemoTotals;
use resumable::{Fold as _, JobOptions, JobState, LineageHead, Store, StoreOptions, VerifyReport};
use serde::Serialize;

use crate::EXIT_PROBLEM;
use crate::failure::CannotOpen;
use crate::open::{self, JobArgs};
use crate::output::{self, JsonFlag, Out, count};

const LONG_ABOUT: &str = "\
Check a store completely: redb's page checksums over the whole file, then per job every
output's and dead letter's CRC, the lineage hash chain, that each logged output exists once
with its commit's sequence, that the done ranges equal the stored outputs and dead letters,
and that every snapshot reflects an existing commit. For jobs whose state type this build
knows (the demo job) it also replays every output through the fold and checks that the
result equals every snapshot byte for byte; for other jobs (and for a job marked running,
which crashed: resume it first) that replay is skipped, and the output says so.
Every other check needs no job code: the output names the checks it ran, and whether the
state replay ran or needs the job's code (a Rust job verifies its replay with `Job::verify`).

--expect-head SEQ:HASH (as `resumable lineage --head` printed it earlier, kept in an audit
log or a ticket) also checks the job's lineage against that recorded head: it fails unless
the head is the same, and names where the chain diverges (an entry added after the recorded
head, an entry whose hash changed, or entries dropped). A malformed head is a usage error.

verify never runs crash recovery: a store whose job crashed is refused with advice
(`resumable recover STORE`), or recovered first with --recover. While a job runs on the
store, verify reads what is committed (as a live reader) and skips the page check, which
needs the store to itself: the output says so (integrity.checked is false).
Exit code 0 when everything checks out, 1 when damage is found (the first bad item is
named, with what to do), 2 on usage errors.

--json prints one object:
  {\"ok\": BOOL, \"store\": PATH,
   \"integrity\": {\"ok\": BOOL, \"checked\": BOOL, \"detail\": S|null},
   \"jobs\": [{\"job\": S, \"ok\": BOOL, \"outputs_checked\": N, \"lineage_checked\": N,
             \"snapshots_checked\": N, \"dead_letters_checked\": N,
             \"state_replayed\": BOOL, \"state_replay_note\": S|null,
             \"state_replay\": \"ran\"|\"needs the job's code\"|\"skipped\",
             \"problems\": [{\"item\": S, \"detail\": S}]}],
   \"first_problem\": {\"item\": S, \"detail\": S}|null}";

const ADVICE: &str = "what to do: list the snapshots (`resumable snapshots`) and rewind to one taken before the damage (`resumable rewind STORE --job JOB --to-snapshot GEN`, or fork it into a new file with `resumable fork` to keep this one as evidence), or restore the file from a backup";

/// Check a store's integrity, checksums, lineage and state.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
#[command(mut_arg("job", |a| a.help("Only this job (default: every job)")))]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) output: JsonFlag,
    #[command(flatten)]
    target: JobArgs,
    #[command(flatten)]
    stores: crate::shards::StoreSet,
    /// Check the job's lineage against this head (`SEQ:HASH`, from `lineage --head`).
    #[arg(long, value_name = "SEQ:HASH", value_parser = parse_head)]
    expect_head: Option<LineageHead>,
}

fn parse_head(s: &str) -> Result<LineageHead, String> {
    s.parse()
        .map_err(|e: resumable::ParseHashError| e.to_string())
}

/// One job's findings.
struct JobResult {
    job: String,
    report: Option<VerifyReport>,
    /// Problems found outside the report (a check that could not run at all).
    problems: Vec<(String, String)>,
    replay_note: Option<String>,
    /// The replay needs the job's code (its state type is unknown to this build).
    needs_code: bool,
}

/// The checks `verify` runs on every job without the job's code.
const CHECKS_WITHOUT_CODE: &str = "output and dead-letter CRCs, the lineage hash chain, outputs against their commits, done ranges against outputs and dead letters, snapshots against commits";

impl JobResult {
    /// `state_replay` of the `--json` shape.
    fn replay_kind(&self, replayed: bool) -> &'static str {
        if replayed {
            "ran"
        } else if self.needs_code {
            "needs the job's code"
        } else {
            "skipped"
        }
    }

    fn problems(&self) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = self
            .report
            .iter()
            .flat_map(|r| {
                r.problems
                    .iter()
                    .map(|p| (p.item.clone(), p.detail.clone()))
            })
            .collect();
        all.extend(self.problems.iter().cloned());
        all
    }
}

/// The `--json` shape (see `LONG_ABOUT`).
#[derive(Serialize)]
struct VerifyJson<'a> {
    ok: bool,
    store: String,
    integrity: IntegrityJson<'a>,
    jobs: Vec<JobJson<'a>>,
    first_problem: Option<ProblemJson>,
}

#[derive(Serialize)]
struct IntegrityJson<'a> {
    ok: bool,
    checked: bool,
    detail: Option<&'a str>,
}

#[derive(Serialize)]
struct JobJson<'a> {
    job: &'a str,
    ok: bool,
    outputs_checked: u64,
    lineage_checked: u64,
    snapshots_checked: u64,
    dead_letters_checked: u64,
    state_replayed: bool,
    state_replay_note: Option<&'a str>,
    state_replay: &'static str,
    problems: Vec<ProblemJson>,
}

#[derive(Serialize)]
struct ProblemJson {
    item: String,
    detail: String,
}

impl ProblemJson {
    fn new((item, detail): (String, String)) -> Self {
        ProblemJson { item, detail }
    }
}

impl<'a> From<&'a JobResult> for JobJson<'a> {
    fn from(r: &'a JobResult) -> Self {
        let report = r.report.clone().unwrap_or_default();
        let problems: Vec<ProblemJson> = r.problems().into_iter().map(ProblemJson::new).collect();
        JobJson {
            job: &r.job,
            ok: problems.is_empty(),
            outputs_checked: report.outputs_checked,
            lineage_checked: report.lineage_checked,
            snapshots_checked: report.snapshots_checked,
            dead_letters_checked: report.dead_letters_checked,
            state_replayed: report.state_replayed,
            state_replay_note: r.replay_note.as_deref(),
            state_replay: r.replay_kind(report.state_replayed),
            problems,
        }
    }
}

fn describe(e: &resumable::Error) -> (String, String) {
    match e {
        resumable::Error::Corrupt {
            what,
            expected,
            got,
        } => (what.clone(), format!("expected {expected}, got {got}")),
        other => ("job".to_owned(), other.to_string()),
    }
}

/// The full check of one job (as `resumable verify` runs it, without the page check): its
/// problems as (item, detail), none when it passes.
pub(crate) fn check_job(store: &Store, job: &str) -> Vec<(String, String)> {
    verify_job(store, job).problems()
}

/// What came of redb's check of every page checksum.
enum PageCheck {
    /// It ran: `Err` describes the damage.
    Ran(Result<(), String>),
    /// A running job holds the store, and the check needs the store to itself.
    Skipped,
    /// The file cannot be opened for writing (a read-only copy or mount), which the check
    /// needs.
    ReadOnlyFile,
}

/// Opens the store for `verify`: as a live reader (never recovering a crashed store unless
/// `recover`), then, when no job holds it, read-write without recovery to run redb's page
/// check, which needs a writable handle. While a job runs, the page check is skipped and
/// every other check reads what is committed.
fn open_for_verify(path: &std::path::Path, recover: bool) -> anyhow::Result<(Store, PageCheck)> {
    let reader = open::read(path, recover)?;
    // The read-only open found the store clean (or `--recover` recovered it), so this open
    // recovers nothing; page checksums are checked below, reported as findings.
    // Live readers: the reader above is still open beside it.
    match StoreOptions::new()
        .concurrency(resumable::Concurrency::LiveReaders)
        .create(false)
        .verify_on_open(false)
        .open(path)
    {
        Ok(store) => {
            drop(reader);
            let integrity = match store.check_integrity() {
                Ok(true) => Ok(()),
                Ok(false) => Err(
                    "redb found damaged pages and repaired its allocation state; verify again, and check the disk".to_owned(),
                ),
                Err(e) => Err(e.to_string()),
            };
            Ok((store, PageCheck::Ran(integrity)))
        }
        Err(resumable::Error::Locked { .. }) => Ok((reader, PageCheck::Skipped)),
        Err(resumable::Error::Io(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Ok((reader, PageCheck::ReadOnlyFile))
        }
        Err(e) => Err(anyhow::Error::new(e).context(CannotOpen(path.to_owned()))),
    }
}

fn verify_job(store: &Store, job: &str) -> JobResult {
    let mut result = JobResult {
        job: job.to_owned(),
        report: None,
        problems: Vec::new(),
        replay_note: None,
        needs_code: false,
    };
    let status = match store.status(job) {
        Ok(s) => s,
        Err(e) => {
            result.problems.push(describe(&e));
            return result;
        }
    };
    match store.verify_job(job) {
        Ok(report) => result.report = Some(report),
        Err(e) => {
            result.problems.push(describe(&e));
            return result;
        }
    }
    if result.report.as_ref().is_some_and(|r| !r.is_ok()) {
        result.replay_note = Some("state replay skipped: the job is damaged".to_owned());
        return result;
    }
    if status.state_type != DemoTotals::type_name() {
        result.needs_code = true;
        result.replay_note = Some(format!(
            "state replay needs the job's code: this build does not know the state type {} (a Rust job replays it with Job::verify)",
            status.state_type
        ));
        return result;
    }
    if status.lifecycle == JobState::Running || store.is_read_only() {
        result.replay_note = Some(
            "state replay skipped: the job is running (or crashed and not resumed yet); verify again when it is idle"
                .to_owned(),
        );
        return result;
    }
    // Opened only to replay: the job's input is neither declared nor checked.
    let opened =
        store.job::<DemoTotals>(job, JobOptions::new().create(false).input_unchecked(true));
    match opened.and_then(|j| j.verify()) {
        Ok(report) => result.report = Some(report),
        Err(e) => result.problems.push(describe(&e)),
    }
    result
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<ExitCode> {
    if let Some(set) = args.stores.set(args.target.store())? {
        return crate::shards::verify(&set, &args.target, json);
    }
    let path = args.target.store();
    let (store, integrity) = open_for_verify(path, args.target.recover())?;
    let names = args.target.named_or_all(&store)?;
    // A job that does not exist is a wrong argument, not damage: fail as every command does.
    for name in &names {
        if let Err(e @ resumable::Error::JobNotFound(_)) = store.status(name) {
            return Err(e.into());
        }
    }
    if args.expect_head.is_some() && names.len() != 1 {
        return crate::usage(format!(
            "--expect-head checks one job's lineage; name it with --job (the store has {} jobs)",
            names.len()
        ));
    }
    let mut results: Vec<JobResult> = names.iter().map(|j| verify_job(&store, j)).collect();
    if let (Some(expected), Some(result)) = (&args.expect_head, results.first_mut()) {
        match store.check_head(&result.job, expected) {
            Ok(check) if check.is_match() => {}
            Ok(check) => result
                .problems
                .push(("lineage head".to_owned(), check.describe(expected))),
            Err(e) => result.problems.push(describe(&e)),
        }
    }
    let (integrity, pages_checked, skipped_because) = match integrity {
        PageCheck::Ran(result) => (result, true, ""),
        PageCheck::Skipped => (
            Ok(()),
            false,
            "a running job holds the store (verify again when it is idle)",
        ),
        PageCheck::ReadOnlyFile => (
            Ok(()),
            false,
            "the file cannot be opened for writing, which redb's check needs (verify a writable copy for it)",
        ),
    };
    let first_problem = integrity
        .as_ref()
        .err()
        .map(|d| ("store file pages".to_owned(), d.clone()))
        .or_else(|| results.iter().find_map(|r| r.problems().into_iter().next()));
    let ok = first_problem.is_none();

    let mut out = Out::new();
    if json {
        out.json(&VerifyJson {
            ok,
            store: path.display().to_string(),
            integrity: IntegrityJson {
                ok: integrity.is_ok(),
                checked: pages_checked,
                detail: integrity.as_ref().err().map(String::as_str),
            },
            jobs: results.iter().map(JobJson::from).collect(),
            first_problem: first_problem.clone().map(ProblemJson::new),
        })?;
    } else {
        match &integrity {
            Ok(()) if !pages_checked => writeln!(
                out,
                "store {}: page checksums not checked: {skipped_because}; its committed data is checked below",
                path.display()
            )?,
            Ok(()) => writeln!(out, "store {}: page checksums ok", path.display())?,
            Err(d) => writeln!(out, "store {}: DAMAGED: {d}", path.display())?,
        }
        for r in &results {
            let problems = r.problems();
            let rep = r.report.clone().unwrap_or_default();
            let checked = format!(
                "{} outputs, {} lineage entries, {} snapshots, {} dead letters checked",
                count(rep.outputs_checked),
                count(rep.lineage_checked),
                count(rep.snapshots_checked),
                count(rep.dead_letters_checked)
            );
            if problems.is_empty() {
                writeln!(out, "job {}: ok ({checked})", r.job)?;
            } else {
                writeln!(
                    out,
                    "job {}: DAMAGED, {} problems ({checked})",
                    r.job,
                    problems.len()
                )?;
                for (i, (item, detail)) in problems.iter().take(10).enumerate() {
                    writeln!(
                        out,
                        "  {}{item}: {detail}",
                        if i == 0 { "first: " } else { "" }
                    )?;
                }
                if problems.len() > 10 {
                    writeln!(out, "  … and {} more (see --json)", problems.len() - 10)?;
                }
            }
            if r.report.is_some() {
                writeln!(
                    out,
                    "  checked without the job's code: {CHECKS_WITHOUT_CODE}"
                )?;
            }
            if rep.state_replayed {
                writeln!(
                    out,
                    "  state replayed from every output: equal to every snapshot"
                )?;
            } else if let Some(note) = &r.replay_note {
                writeln!(out, "  {note}")?;
            }
        }
        if ok {
            writeln!(out, "all good")?;
        } else {
            writeln!(out, "{ADVICE}")?;
        }
    }
    out.finish()?;
    if !ok {
        if !json {
            output::note(format_args!(
                "error: {} is damaged (first bad item: {})",
                path.display(),
                first_problem.map(|(i, _)| i).unwrap_or_default()
            ));
        }
        return Ok(ExitCode::from(EXIT_PROBLEM));
    }
    Ok(ExitCode::SUCCESS)
}
