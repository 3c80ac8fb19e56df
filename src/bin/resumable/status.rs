//! `resumable status`: per job, its lifecycle, progress, commits, snapshots, dead letters and
//! recoveries; and the file's size and free space.

use std::io::Write as _;
use std::process::ExitCode;

use comfy_table::Cell;
use resumable::{JobStatus, LineageHead, VersionCount};

/// A job's per-version counts and lineage head.
type Chain = (Vec<VersionCount>, LineageHead);
use serde::Serialize;

use crate::export::Decoder;
use crate::open::{self, JobArgs};
use crate::output::{self, JsonFlag, Out, count};

const LONG_ABOUT: &str = "\
Show each job's progress and health: lifecycle state, records done (of the total, when the
job declared one), done ranges, watermark (every id below it is done), commits, the last
commit's time and sequence, snapshots, dead letters and recoveries (times the job was found
crashed and resumed); and the file's size and free space (exact after a read-write open,
estimated from the tables' sizes after the usual read-only one).

--json prints one object:
  {\"store\": PATH, \"writer_alive\": BOOL|null, \"file_bytes\": N, \"used_bytes\": N, \"free_bytes\": N, \"space_exact\": BOOL,
   \"jobs\": [{\"name\": S, \"lifecycle\": \"created\"|\"running\"|\"paused\"|\"completed\"|\"failed\",
             \"state_type\": S, \"schema_version\": N, \"records_done\": N, \"total_records\": N|null,
             \"done_ranges\": N, \"watermark\": N, \"commits\": N, \"last_commit_seq\": N|null,
             \"last_commit_ms\": N|null, \"snapshots\": N, \"dead_letters\": N, \"recoveries\": N,
             \"created_ms\": N, \"records_with_output\": N, \"completed_with_dead_letters\": BOOL,
             \"outputs\": \"typed\"|\"json\"|\"demo\"|\"hex\", \"outputs_hex_reason\": S|null,
             \"code_versions\": [{\"code_version\": S|null, \"records\": N, \"commits\": N}],
             \"head\": \"SEQ:HASH\"}]}
code_versions: which code versions produced the live outputs (records: outputs a redo
removed are not counted; null: commits written by format 2, which recorded no version);
head: the lineage head, for `verify --expect-head`.
records_done counts dead letters too (they are done, without an output); a completed job
with dead letters says so (\"completed with N dead letters\"). Percentages round down.
\"outputs\" says how `resumable export` shows the job's outputs: through the output type's
description recorded at creation (typed), as JSON (json, demo), or as hex, with the reason
(jobs created before this version, or types that cannot be described).
Times are milliseconds since the Unix epoch. writer_alive: whether a process holds the
store for writing now (null: cannot tell, for a store last written by an older version).
A job whose lifecycle is \"running\" while no process holds the store is not being run: its
last run crashed or ended without pausing it, and running it again resumes it.

--watch keeps reading, every --interval (default 2s), until every watched job has ended
(completed, paused or failed) or Ctrl-C: on a terminal one view refreshed in place (records
done of total, the rate over the last interval, ETA, last commit age, commits/s, dead
letters, lifecycle), else one plain line per job and reading. Records at risk (settled but
not durable yet) are known only to the writer: see its --metrics-file. Each reading opens
the store read-only and closes it again, so the watch never holds the file. A running job
without a commit for ten intervals (and at least 30 s) is flagged: if no process runs it,
it crashed. A reading that
finds the store held by a writer that refuses live readers says \"writer busy\" and tries
again next interval; once readings in a row have found it so for --busy-timeout (default
1m), the watch gives up (exit 75).
Exit codes of --watch: 0 every watched job completed, 75 one paused (run it again), 1 one
failed or an error, 130 Ctrl-C. With --json, one object per reading (JSON Lines):
  {\"store\": PATH, \"time_ms\": N, \"writer_busy\": BOOL, \"writer_alive\": BOOL|null,
   \"busy_intervals\": N, \"ended\": BOOL,
   \"jobs\": [{\"name\": S, \"lifecycle\": S, \"records_done\": N, \"total_records\": N|null,
             \"rate\": F|null, \"eta_s\": F|null, \"records_at_risk\": null, \"commits\": N,
             \"commits_per_s\": F|null, \"last_commit_ms\": N|null,
             \"last_commit_age_ms\": N|null, \"dead_letters\": N}]}
rate and commits_per_s are per second over the last interval (null on the first reading);
the last object has \"ended\": true.";

/// Show jobs' progress and health.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
#[command(mut_arg("job", |a| a.help("Only this job (default: every job in the store)")))]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) output: JsonFlag,
    #[command(flatten)]
    target: JobArgs,
    #[command(flatten)]
    stores: crate::shards::StoreSet,
    /// Keep watching: a reading every --interval until the jobs end (completed, paused or
    /// failed) or Ctrl-C; with --json one object per reading (JSON Lines).
    #[arg(long)]
    watch: bool,
    /// Time between --watch readings (e.g. 500ms, 2s, 1m).
    #[arg(long, default_value = "2s", value_parser = crate::run::parse_duration, requires = "watch")]
    interval: std::time::Duration,
    /// With --watch: give up (exit 75) once readings in a row found the store held by a
    /// writer that refuses live readers for this long.
    #[arg(long, default_value = "1m", value_parser = crate::run::parse_duration, requires = "watch")]
    busy_timeout: std::time::Duration,
}

/// The `--json` shape (see `LONG_ABOUT`).
#[derive(Serialize)]
struct StatusJson<'a> {
    store: String,
    writer_alive: Option<bool>,
    file_bytes: u64,
    used_bytes: u64,
    free_bytes: u64,
    space_exact: bool,
    jobs: Vec<JobJson<'a>>,
}

/// One job of [`StatusJson`].
#[derive(Serialize)]
struct JobJson<'a> {
    name: &'a str,
    lifecycle: &'static str,
    state_type: &'a str,
    schema_version: u32,
    records_done: u64,
    total_records: Option<u64>,
    done_ranges: u64,
    watermark: u64,
    commits: u64,
    last_commit_seq: Option<u64>,
    last_commit_ms: Option<u64>,
    snapshots: u64,
    dead_letters: u64,
    recoveries: u64,
    created_ms: u64,
    records_with_output: u64,
    completed_with_dead_letters: bool,
    outputs: &'static str,
    outputs_hex_reason: Option<&'a str>,
    code_versions: &'a [VersionCount],
    head: String,
}

impl<'a> JobJson<'a> {
    fn new(s: &'a JobStatus, decoder: &'a Decoder, chain: &'a Chain) -> Self {
        JobJson {
            name: &s.name,
            lifecycle: s.lifecycle.as_str(),
            state_type: &s.state_type,
            schema_version: s.schema_version,
            records_done: s.records_done,
            total_records: s.total_records,
            done_ranges: s.done_ranges,
            watermark: s.watermark,
            commits: s.commits,
            last_commit_seq: (s.commits > 0).then_some(s.commits),
            last_commit_ms: s.last_commit_ms,
            snapshots: s.snapshots,
            dead_letters: s.dead_letters,
            recoveries: s.recoveries,
            created_ms: s.created_ms,
            records_with_output: s.records_with_output(),
            completed_with_dead_letters: s.completed_with_dead_letters(),
            outputs: decoder.kind(),
            outputs_hex_reason: decoder.hex_reason(),
            code_versions: &chain.0,
            head: chain.1.to_string(),
        }
    }
}

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<ExitCode> {
    let set = args.stores.set(args.target.store())?;
    if args.watch {
        if set.is_some() {
            return crate::usage(
                "--watch follows one store: watch each shard's file, or run `status DIR` for the whole job",
            );
        }
        return crate::watch::run(&crate::watch::Watch {
            target: &args.target,
            interval: args.interval,
            json,
            busy_timeout: args.busy_timeout,
        });
    }
    if let Some(set) = set {
        return crate::shards::status(&set, &args.target, json);
    }
    let store = open::read(args.target.store(), args.target.recover())?;
    let names = args.target.named_or_all(&store)?;
    let statuses = names
        .iter()
        .map(|n| store.status(n))
        .collect::<resumable::Result<Vec<_>>>()?;
    let decoders: Vec<Decoder> = statuses
        .iter()
        .map(|s| Decoder::for_job(&store, &s.name, &s.state_type))
        .collect();
    let chains = names
        .iter()
        .map(|n| Ok((store.code_versions(n)?, store.lineage_head(n)?)))
        .collect::<resumable::Result<Vec<Chain>>>()?;
    let space = store.space()?;
    let writer_alive = store.writer_alive();
    let jobs_in_store = store.jobs()?.len();
    let mut out = Out::new();
    if json {
        out.json(&StatusJson {
            store: args.target.store().display().to_string(),
            writer_alive,
            file_bytes: space.file_bytes,
            used_bytes: space.used_bytes,
            free_bytes: space.free_bytes,
            space_exact: space.exact,
            jobs: statuses
                .iter()
                .zip(&decoders)
                .zip(&chains)
                .map(|((s, d), c)| JobJson::new(s, d, c))
                .collect(),
        })?;
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "store {}: {}, {} free{}",
        args.target.store().display(),
        output::bytes(space.file_bytes),
        output::bytes(space.free_bytes),
        if space.exact { "" } else { " (estimate)" }
    )?;
    if statuses.is_empty() {
        writeln!(out, "no jobs yet")?;
    }
    for ((s, decoder), chain) in statuses.iter().zip(&decoders).zip(&chains) {
        writeln!(out)?;
        let mut t = output::table(&["job", &s.name]);
        let done = match s.total_records {
            Some(total) if total > 0 => format!(
                "{} of {} ({})",
                count(s.records_done),
                count(total),
                output::percent(s.records_done, total)
            ),
            Some(total) => format!("{} of {}", count(s.records_done), count(total)),
            None => count(s.records_done),
        };
        let crashed = s.lifecycle == resumable::JobState::Running;
        t.add_row(vec![
            Cell::new("lifecycle"),
            if crashed {
                output::lifecycle(s.lifecycle).add_attribute(comfy_table::Attribute::Bold)
            } else {
                output::lifecycle(s.lifecycle)
            },
        ]);
        if crashed {
            t.add_row(vec![
                String::new(),
                running_note(writer_alive, jobs_in_store),
            ]);
        }
        if s.completed_with_dead_letters() {
            t.add_row(vec![
                String::new(),
                format!(
                    "completed with {} dead letter{}: {} records have an output",
                    count(s.dead_letters),
                    if s.dead_letters == 1 { "" } else { "s" },
                    count(s.records_with_output())
                ),
            ]);
        }
        t.add_row(vec!["records done".into(), done]);
        t.add_row(vec!["done ranges".into(), count(s.done_ranges)]);
        t.add_row(vec!["watermark".into(), count(s.watermark)]);
        t.add_row(vec!["commits".into(), count(s.commits)]);
        t.add_row(vec![
            "last commit".into(),
            match s.last_commit_ms {
                Some(ms) => format!("#{} at {}", s.commits, output::time_ago(ms)),
                None => "none".into(),
            },
        ]);
        t.add_row(vec!["snapshots".into(), count(s.snapshots)]);
        t.add_row(vec![
            Cell::new("dead letters"),
            output::good_bad(count(s.dead_letters), s.dead_letters == 0),
        ]);
        t.add_row(vec!["recoveries".into(), count(s.recoveries)]);
        t.add_row(vec![
            "state type".into(),
            format!("{} (schema {})", s.state_type, s.schema_version),
        ]);
        t.add_row(vec!["outputs".into(), decoder.describe()]);
        for v in &chain.0 {
            t.add_row(vec![
                format!(
                    "code version {}",
                    v.code_version.as_deref().unwrap_or("(format 2)")
                ),
                format!(
                    "{} records in {} commits",
                    count(v.records),
                    count(v.commits)
                ),
            ]);
        }
        t.add_row(vec!["lineage head".into(), chain.1.to_string()]);
        t.add_row(vec!["created".into(), output::time(s.created_ms)]);
        out.table(&t)?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// What a `running` lifecycle means, given whether a process holds the store for writing.
fn running_note(writer_alive: Option<bool>, jobs: usize) -> String {
    match writer_alive {
        Some(true) if jobs > 1 => {
            "a process holds the store for writing now (it runs this job or another of the store)".into()
        }
        Some(true) => "a process holds the store for writing now: the job is being run".into(),
        Some(false) => "not being run: no process holds the store, so its last run crashed or ended without pausing it (running the job again resumes it)".into(),
        None => "not paused or completed: a process runs it now, or it crashed (running the job again resumes it)".into(),
    }
}
