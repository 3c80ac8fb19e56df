//! `resumable report`: one self-contained HTML file (inline SVG and CSS, no scripts) showing
//! a job's shape over time, or one row per shard for a directory of stores.
//!
//! What it reads, all through the public read API: the job's status, its lineage (one entry
//! per commit: time, ids, dead letters), snapshots and dead letters; with `--verify`, the
//! full check. The lineage is read in pages and kept as four integers per commit, then cut
//! into [`timeline::BUCKETS`] time buckets, so the page has the same size for ten commits
//! or a million. Whatever cannot be read (a damaged lineage, a shard that does not open) is
//! named on the page, and the command then exits 1.

pub(crate) mod bench;
mod page;
pub(crate) mod svg;
mod timeline;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use resumable::{DeadLetter, JobStatus, SnapshotInfo, Store};
use serde::Serialize;

use self::timeline::{BUCKETS, Commit, Timeline};
use crate::EXIT_PROBLEM;
use crate::output::{self, JsonFlag, Out};

const LONG_ABOUT: &str = "\
Write an HTML report of a job, or of a directory of shard stores, to one self-contained file
(inline SVG and CSS, no scripts; it opens offline in any browser).

For a store: per job, a header with the facts of `status` (and the result of the full check
with --verify), then over time: records done, the rate (records/s), the largest commit,
dead letters, with snapshots as vertical lines (pinned ones bold) and the job's stops and
crashes as shaded gaps (a time without commits over 20 times the median time between
commits and over 1 s), the resume marked; the runs between gaps; the most frequent dead
letter errors; the snapshots. The lineage is summed into at most 200 time buckets, so the
page stays small and quick for millions of records.

For a directory: one row per store file (`shard-IIIII-of-NNNNN.redb` or any `*.redb`):
records done of the shard's total, its average rate, the last commit's age; a shard that
lags, failed or does not open stands out, and missing shard numbers are listed (a store with
several jobs shows its first).

Exit code 0 when the report was written from everything it read; 1 when it was written but
something could not be read (a damaged store, a shard that does not open or is missing: the
page says what), or could not be written; 2 on usage errors. See docs/REPORT.md.

--json prints one object:
  {\"output\": PATH, \"source\": \"store\"|\"directory\", \"jobs\": N, \"commits\": N,
   \"buckets\": N, \"problems\": [S, ...], \"elapsed_ms\": N}
jobs counts the jobs (or shard rows) shown, commits the lineage entries read.";

/// Write an HTML report of a job or a directory of shard stores.
#[derive(clap::Args, Debug)]
#[command(long_about = LONG_ABOUT)]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) output: JsonFlag,
    /// A store file, or a directory of store files (shards).
    #[arg(value_name = "STORE_OR_DIR")]
    source: PathBuf,
    /// Only this job (default: every job in the store).
    #[arg(long)]
    job: Option<String>,
    /// Run the full check (as `resumable verify`) and show its result; opens the store
    /// read-write, so no job may be running on it.
    #[arg(long)]
    verify: bool,
    /// The HTML file to write.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    file: PathBuf,
}

/// The `--json` shape (see `LONG_ABOUT`).
#[derive(Serialize)]
struct ReportJson<'a> {
    output: String,
    source: &'static str,
    jobs: usize,
    commits: usize,
    buckets: usize,
    problems: &'a [String],
    elapsed_ms: u64,
}

/// Everything the page shows about one job.
pub(crate) struct JobData {
    pub(crate) name: String,
    pub(crate) status: Option<JobStatus>,
    pub(crate) commits: Vec<Commit>,
    pub(crate) timeline: Option<Timeline>,
    pub(crate) snapshots: Vec<SnapshotInfo>,
    pub(crate) dead_letters: Vec<DeadLetter>,
    /// The full check's problems (`Some(empty)`: passed), when `--verify` ran it.
    pub(crate) verify: Option<Vec<(String, String)>>,
    /// What could not be read.
    pub(crate) problems: Vec<String>,
}

/// One row of a directory report.
pub(crate) struct ShardRow {
    pub(crate) file: String,
    /// The shard's number and the count, from a `shard-IIIII-of-NNNNN.redb` name.
    pub(crate) shard: Option<(u64, u64)>,
    pub(crate) status: Result<JobStatus, String>,
    /// Time of the job's first commit, for the average rate.
    pub(crate) first_commit_ms: Option<u64>,
}

impl ShardRow {
    /// Whether the row stands for a shard number with no file.
    pub(crate) fn file_missing(&self) -> bool {
        self.status.as_ref().is_err_and(|e| e.starts_with(MISSING))
    }
}

/// The status text of a shard number with no file.
const MISSING: &str = "missing: no such file in the directory";

/// Lineage entries read per page: bounded memory per read, few round trips.
const LINEAGE_PAGE: usize = 10_000;

pub(crate) fn run(args: &Args, json: bool) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    crate::open::require_file(&args.source)?;
    let is_dir = args.source.is_dir();
    if args.file.is_dir() {
        return crate::usage(format!(
            "-o {} is a directory; name the HTML file to write",
            args.file.display()
        ));
    }
    let (html, jobs, commits, buckets, problems) = if is_dir {
        let rows = read_dir(&args.source)?;
        let problems: Vec<String> = rows
            .iter()
            .filter_map(|r| r.status.as_ref().err().map(|e| format!("{}: {e}", r.file)))
            .collect();
        let html = page::directory(&args.source, &rows);
        (html, rows.len(), 0, 0, problems)
    } else {
        let jobs = read_store(&args.source, args.job.as_deref(), args.verify);
        let problems: Vec<String> =
            jobs.iter()
                .flat_map(|j| {
                    j.problems
                        .iter()
                        .map(move |p| format!("job {}: {p}", j.name))
                })
                .chain(jobs.iter().flat_map(|j| {
                    j.verify.iter().flatten().map(move |(item, detail)| {
                        format!("job {}: verify: {item}: {detail}", j.name)
                    })
                }))
                .collect();
        let commits = jobs.iter().map(|j| j.commits.len()).sum();
        let buckets = jobs
            .iter()
            .filter_map(|j| j.timeline.as_ref())
            .map(|t| t.buckets.len())
            .max()
            .unwrap_or(0);
        let html = page::store(&args.source, &jobs, args.verify);
        (html, jobs.len(), commits, buckets, problems)
    };
    write_private(&args.file, html.as_bytes())?;
    let mut out = Out::new();
    if json {
        out.json(&ReportJson {
            output: args.file.display().to_string(),
            source: if is_dir { "directory" } else { "store" },
            jobs,
            commits,
            buckets,
            problems: &problems,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })?;
    } else {
        use std::io::Write as _;
        let what = if is_dir {
            format!("{jobs} shards")
        } else {
            format!(
                "{jobs} jobs, {} commits read",
                output::count(commits as u64)
            )
        };
        writeln!(
            out,
            "wrote {} ({}, {what}) in {}",
            args.file.display(),
            output::bytes(html.len() as u64),
            output::duration(started.elapsed())
        )?;
    }
    out.finish()?;
    if problems.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    if !json {
        for p in problems.iter().take(10) {
            output::note(format_args!("could not read: {p}"));
        }
        output::note(format_args!(
            "error: the report is written, but {} could not be read (the page says what)",
            if problems.len() == 1 {
                "one part".to_owned()
            } else {
                format!("{} parts", problems.len())
            }
        ));
    }
    Ok(ExitCode::from(EXIT_PROBLEM))
}

/// Writes `bytes` to a new or truncated file readable by its owner only.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| anyhow::Error::new(e).context(format!("cannot write {}", path.display())))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

/// Reads every job (or the one named) of the store; a store that does not open gives one
/// entry naming the failure.
fn read_store(path: &Path, only: Option<&str>, verify: bool) -> Vec<JobData> {
    let opened = if verify {
        crate::open::write(path)
    } else {
        crate::open::read(path, false)
    };
    let store = match opened {
        Ok(s) => s,
        Err(e) => return vec![JobData::unreadable(only.unwrap_or("(store)"), &e)],
    };
    let names = match only {
        Some(name) => vec![name.to_owned()],
        None => match store.jobs() {
            Ok(names) => names,
            Err(e) => return vec![JobData::unreadable("(store)", &anyhow::Error::new(e))],
        },
    };
    let integrity = verify.then(|| match store.check_integrity() {
        Ok(true) => None,
        Ok(false) => Some((
            "store file pages".to_owned(),
            "redb found damaged pages".to_owned(),
        )),
        Err(e) => Some(("store file pages".to_owned(), e.to_string())),
    });
    names
        .iter()
        .map(|name| {
            let mut data = read_job(&store, name);
            if verify && data.status.is_some() {
                let mut problems: Vec<(String, String)> =
                    integrity.clone().flatten().into_iter().collect();
                problems.extend(crate::verify::check_job(&store, name));
                data.verify = Some(problems);
            }
            data
        })
        .collect()
}

impl JobData {
    fn unreadable(name: &str, e: &anyhow::Error) -> Self {
        JobData {
            name: name.to_owned(),
            status: None,
            commits: Vec::new(),
            timeline: None,
            snapshots: Vec::new(),
            dead_letters: Vec::new(),
            verify: None,
            problems: vec![format!("{e:#}")],
        }
    }
}

/// Reads one job: what fails is named in `problems` and the rest is still read.
fn read_job(store: &Store, name: &str) -> JobData {
    let mut data = JobData::unreadable(name, &anyhow::anyhow!(""));
    data.problems.clear();
    match store.status(name) {
        Ok(s) => data.status = Some(s),
        Err(e) => {
            data.problems.push(format!("status: {e}"));
            return data;
        }
    }
    let (commits, lineage_problem) = read_commits(store, name);
    data.commits = commits;
    data.problems.extend(lineage_problem);
    data.timeline = Timeline::new(&data.commits, BUCKETS);
    match store.snapshots(name) {
        Ok(s) => data.snapshots = s,
        Err(e) => data.problems.push(format!("snapshots: {e}")),
    }
    match store.dead_letters(name) {
        Ok(d) => data.dead_letters = d,
        Err(e) => data.problems.push(format!("dead letters: {e}")),
    }
    data
}

/// The job's commits, read in pages; on a read error, the commits before it and the error.
fn read_commits(store: &Store, name: &str) -> (Vec<Commit>, Option<String>) {
    let mut commits = Vec::new();
    let mut from = 1;
    loop {
        let page = match store.lineage(name, from, LINEAGE_PAGE) {
            Ok(page) => page,
            Err(e) => {
                return (
                    commits,
                    Some(format!(
                        "lineage from commit {from} on (the charts stop there): {e}"
                    )),
                );
            }
        };
        let Some(last) = page.last() else {
            return (commits, None);
        };
        from = last.seq + 1;
        let full = page.len() == LINEAGE_PAGE;
        commits.extend(page.iter().map(|e| Commit {
            seq: e.seq,
            time_ms: e.time_ms,
            outputs: e.output_count(),
            dead_letters: e.dead_letters.len() as u64,
        }));
        if !full {
            return (commits, None);
        }
    }
}

/// One row per `*.redb` file in `dir`, shards in number order; missing shard numbers are
/// added as rows that say so.
fn read_dir(dir: &Path) -> anyhow::Result<Vec<ShardRow>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::Error::new(e).context(format!("cannot list {}", dir.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "redb"))
        .collect();
    files.sort();
    let mut rows: Vec<ShardRow> = files.iter().map(|p| read_shard(p)).collect();
    // Missing shard numbers, when the names say how many there are.
    if let Some(count) = rows.iter().find_map(|r| r.shard.map(|s| s.1)) {
        let present: std::collections::BTreeSet<u64> =
            rows.iter().filter_map(|r| r.shard.map(|s| s.0)).collect();
        for i in (0..count).filter(|i| !present.contains(i)) {
            rows.push(ShardRow {
                file: shard_name(i, count),
                shard: Some((i, count)),
                status: Err(MISSING.to_owned()),
                first_commit_ms: None,
            });
        }
    }
    rows.sort_by(|a, b| (a.shard, &a.file).cmp(&(b.shard, &b.file)));
    Ok(rows)
}

fn shard_name(i: u64, count: u64) -> String {
    format!("shard-{i:05}-of-{count:05}.redb")
}

/// Parses `shard-IIIII-of-NNNNN.redb`.
fn parse_shard(file: &str) -> Option<(u64, u64)> {
    let rest = file.strip_prefix("shard-")?.strip_suffix(".redb")?;
    let (i, n) = rest.split_once("-of-")?;
    let (i, n) = (i.parse().ok()?, n.parse().ok()?);
    (i < n).then_some((i, n))
}

/// Reads one shard's status.
fn read_shard(path: &Path) -> ShardRow {
    let file = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let shard = parse_shard(&file);
    // As the other read commands: read-only; a shard that crashed reports that it needs recovery.
    let status = crate::open::read(path, false)
        .map_err(|e| format!("{e:#}"))
        .and_then(|store| {
            let jobs = store.jobs().map_err(|e| e.to_string())?;
            let Some(job) = jobs.first() else {
                return Err("holds no jobs yet".to_owned());
            };
            let status = store.status(job).map_err(|e| e.to_string())?;
            let first = store
                .lineage(job, 1, 1)
                .ok()
                .and_then(|l| l.first().map(|e| e.time_ms));
            Ok((status, first))
        });
    match status {
        Ok((status, first_commit_ms)) => ShardRow {
            file,
            shard,
            status: Ok(status),
            first_commit_ms,
        },
        Err(e) => ShardRow {
            file,
            shard,
            status: Err(e),
            first_commit_ms: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_parse_and_print_alike() {
        assert_eq!(parse_shard("shard-00003-of-00016.redb"), Some((3, 16)));
        assert_eq!(shard_name(3, 16), "shard-00003-of-00016.redb");
        assert_eq!(parse_shard("shard-16-of-16.redb"), None);
        assert_eq!(parse_shard("other.redb"), None);
    }
}
