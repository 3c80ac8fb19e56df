//! Shards on the command line: where a shard's store lives (`--shard I/N` and `--shards N`
//! on `run` and `demo`), and one view over many stores (`status`, `verify`, `export`,
//! `dead-letters` and `ranges` given several stores or a directory of shard files).
//!
//! A directory is one split job: its `shard-IIIII-of-NNNNN.redb` files are its shards. The
//! readers here check that the stores belong together (one count N, one input manifest,
//! one total) before they aggregate, and name the shards that are missing or disagree.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use comfy_table::Cell;
use resumable::{JobState, Shard, ShardSpec, Store, StoredOutput};
use serde::Serialize;

use crate::EXIT_PROBLEM;
use crate::export::{Decoder, Format, LineWriter};
use crate::open::{self, JobArgs};
use crate::output::{self, Out, count, num};

/// The `--help` paragraph on shards that `demo` and `run` share (a macro, so `concat!` can
/// put it inside their help texts).
macro_rules! shards_help {
    () => {
        "Shards (docs/SCALE.md): --shard I/N runs shard I of N (0-based) of the job, or --shards N
with the index from the scheduler (JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID,
AWS_BATCH_JOB_ARRAY_INDEX, CLOUD_RUN_TASK_INDEX; --shard wins). STORE is then a directory
(created 0700) and the shard's store is STORE/shard-IIIII-of-NNNNN.redb; the shard
processes only its contiguous id range [I*total/N, (I+1)*total/N), and records_total is
that range's size. The shard spec and the input are recorded in the shard's store: a rerun
with another N, range or input is refused (exit 1). `resumable status|verify|export STORE`
read the directory as one job.
"
    };
}
pub(crate) use shards_help;

/// `--shard` and `--shards` of the job-running commands (flattened into their `Args`).
#[derive(clap::Args, Debug, Clone, Copy)]
pub(crate) struct ShardRunArgs {
    /// Run shard I of N (0-based, e.g. 7/32; wins over the scheduler's index): STORE is then
    /// a directory (created 0700 if absent) and the shard's store is
    /// STORE/shard-IIIII-of-NNNNN.redb. The shard processes only its contiguous id range.
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// Run one of N shards, the index read from the scheduler: `JOB_COMPLETION_INDEX`
    /// (Kubernetes Indexed Job), `SLURM_ARRAY_TASK_ID` (Slurm array, minus
    /// `SLURM_ARRAY_TASK_MIN`), `AWS_BATCH_JOB_ARRAY_INDEX` or `CLOUD_RUN_TASK_INDEX`. A
    /// missing or out-of-range index is a usage error (exit 2). See docs/SCALE.md.
    #[arg(long, value_name = "N")]
    shards: Option<u32>,
}

impl ShardRunArgs {
    /// The shard this process runs, if any: `--shard`, else the scheduler's index with
    /// `--shards`. Usage errors for a missing, malformed or out-of-range index.
    pub(crate) fn resolve(&self) -> anyhow::Result<Option<Shard>> {
        match (self.shard, self.shards) {
            (Some(shard), Some(n)) if shard.count() != n => crate::usage(format!(
                "--shard {shard} and --shards {n} name different shard counts"
            )),
            (Some(shard), _) => Ok(Some(shard)),
            (None, Some(n)) => match Shard::from_env(Some(n)) {
                Ok(shard) => Ok(Some(shard)),
                Err(e) => crate::usage(e.to_string()),
            },
            (None, None) => Ok(None),
        }
    }
}

/// The store file of `shard` in directory `dir` (created 0700 if absent). A directory is
/// one split: one that already holds shards of another count is refused as a job mismatch
/// (exit 1), since their ranges would overlap this shard's.
pub(crate) fn shard_store(dir: &Path, shard: Shard, job: &str) -> resumable::Result<PathBuf> {
    if dir.is_file() {
        return Err(resumable::Error::InvalidArgument(format!(
            "{} is a file; with --shard or --shards STORE is the directory of the shards' stores",
            dir.display()
        )));
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(other) = name.to_str().and_then(Shard::from_file_name) else {
            continue;
        };
        if other.count() != shard.count() {
            return Err(resumable::Error::JobMismatch {
                job: job.to_owned(),
                field: "shard count",
                expected: format!(
                    "{} ({} already holds {})",
                    other.count(),
                    dir.display(),
                    name.to_string_lossy()
                ),
                found: shard.count().to_string(),
            });
        }
    }
    Ok(dir.join(shard.file_name()))
}

/// The ids a run owns and the total it reports: the shard's range (recorded and gated in
/// the store by [`Shard::claim`]), or every id of a whole job.
pub(crate) fn owned_ids(
    shard: Option<Shard>,
    store: &Store,
    job: &str,
    total: u64,
    manifest: u64,
) -> resumable::Result<Range<u64>> {
    match shard {
        Some(shard) => shard.claim(store, job, total, manifest),
        None => Ok(0..total),
    }
}

/// Records of `ranges` inside `ids`.
pub(crate) fn done_in(ranges: impl Iterator<Item = Range<u64>>, ids: &Range<u64>) -> u64 {
    ranges
        .map(|r| {
            r.end
                .clamp(ids.start, ids.end)
                .saturating_sub(r.start.clamp(ids.start, ids.end))
        })
        .sum()
}

/// The extra store arguments of the read commands (flattened into their `Args`).
#[derive(clap::Args, Debug)]
pub(crate) struct StoreSet {
    /// More stores read as one job with STORE (the shards of a split job); STORE and these
    /// may also be directories, whose shard-IIIII-of-NNNNN.redb files are read.
    #[arg(value_name = "MORE_STORES")]
    more: Vec<PathBuf>,
    /// With several stores: go on when some of the N shards are missing (default: an error
    /// naming them).
    #[arg(long)]
    allow_missing: bool,
}

/// One store of a set, and the shard its file name names.
#[derive(Debug)]
struct Member {
    path: PathBuf,
    named: Option<Shard>,
}

/// Several stores read as one job.
#[derive(Debug)]
pub(crate) struct Set {
    members: Vec<Member>,
    allow_missing: bool,
}

impl StoreSet {
    /// The set named by `first` and the extra arguments, or `None` for one store file (the
    /// single-store command runs then).
    pub(crate) fn set(&self, first: &Path) -> anyhow::Result<Option<Set>> {
        if self.more.is_empty() && !first.is_dir() {
            return Ok(None);
        }
        let mut members = Vec::new();
        for path in std::iter::once(first).chain(self.more.iter().map(PathBuf::as_path)) {
            if path.is_dir() {
                let before = members.len();
                for entry in std::fs::read_dir(path)? {
                    let entry = entry?;
                    if let Some(shard) = entry.file_name().to_str().and_then(Shard::from_file_name)
                    {
                        members.push(Member {
                            path: entry.path(),
                            named: Some(shard),
                        });
                    }
                }
                if members.len() == before {
                    return crate::usage(format!(
                        "{} holds no shard stores (shard-IIIII-of-NNNNN.redb); name store files, or the directory `run --shard`/`demo --shard` wrote",
                        path.display()
                    ));
                }
            } else {
                open::require_file(path)?;
                members.push(Member {
                    path: path.to_owned(),
                    named: path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(Shard::from_file_name),
                });
            }
        }
        members.sort_by(|a, b| (a.named, &a.path).cmp(&(b.named, &b.path)));
        members.dedup_by(|a, b| a.path == b.path);
        Ok(Some(Set {
            members,
            allow_missing: self.allow_missing,
        }))
    }
}

/// One member store, opened, with its job's figures (or why it could not be read).
struct Loaded {
    path: PathBuf,
    named: Option<Shard>,
    read: Result<Opened, Unread>,
}

/// Why a member store could not be read.
struct Unread {
    reason: String,
    /// Held by its writer: the shard is running.
    in_use: bool,
}

struct Opened {
    store: Store,
    job: String,
    status: resumable::JobStatus,
    spec: Option<ShardSpec>,
}

impl Loaded {
    fn shard(&self) -> Option<Shard> {
        self.read
            .as_ref()
            .ok()
            .and_then(|o| o.spec.as_ref().map(|s| s.shard))
            .or(self.named)
    }

    fn label(&self) -> String {
        self.shard().map_or_else(
            || self.path.display().to_string(),
            |s| format!("shard {s} ({})", self.path.display()),
        )
    }
}

/// What is wrong with a set as one job.
#[derive(Debug, Default, Serialize)]
struct Findings {
    /// The shard count most stores agree on.
    count: Option<u32>,
    /// Shard indexes of that count with no store.
    missing: Vec<u32>,
    /// Stores that do not belong with the rest, and why.
    disagree: Vec<Disagreement>,
    /// Stores that could not be read, and why.
    unreadable: Vec<Disagreement>,
    /// Stores held by their writers (shards running), which cannot be read yet.
    in_use: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Disagreement {
    store: String,
    reason: String,
}

fn load(set: &Set, target: &JobArgs) -> Vec<Loaded> {
    set.members
        .iter()
        .map(|m| Loaded {
            path: m.path.clone(),
            named: m.named,
            read: open_member(&m.path, target).map_err(|e| Unread {
                in_use: e.chain().any(|c| {
                    matches!(
                        c.downcast_ref::<resumable::Error>(),
                        Some(resumable::Error::Locked { .. })
                    )
                }),
                reason: format!("{e:#}"),
            }),
        })
        .collect()
}

fn open_member(path: &Path, target: &JobArgs) -> anyhow::Result<Opened> {
    let store = open::read(path, target.recover())?;
    let job = match target.named_or_all(&store)?.as_slice() {
        [only] => only.clone(),
        [] => return Err(crate::failure::NoJobs.into()),
        many => anyhow::bail!(
            "the store holds {} jobs ({}); choose one with --job NAME",
            many.len(),
            many.join(", ")
        ),
    };
    let status = store.status(&job)?;
    let spec = store.job_shard(&job)?;
    Ok(Opened {
        store,
        job,
        status,
        spec,
    })
}

/// The most frequent value, ties to the smallest.
fn majority<T: Ord + Copy>(values: impl Iterator<Item = T>) -> Option<T> {
    let mut counts: BTreeMap<T, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    let best = counts.values().copied().max()?;
    counts.into_iter().find(|(_, n)| *n == best).map(|(v, _)| v)
}

fn examine(loaded: &[Loaded]) -> Findings {
    let mut f = Findings {
        count: majority(loaded.iter().filter_map(|l| l.shard().map(|s| s.count()))),
        ..Findings::default()
    };
    let specs = || {
        loaded
            .iter()
            .filter_map(|l| l.read.as_ref().ok().and_then(|o| o.spec.as_ref()))
    };
    // Stores without a shard spec merge with each other (an id in two of them is an error
    // at export), but not with shards.
    let any_shard = specs().next().is_some();
    let total = majority(specs().map(|s| s.total));
    let manifest = majority(specs().map(|s| s.manifest));
    let mut seen: BTreeMap<u32, &Path> = BTreeMap::new();
    for l in loaded {
        let mut why = |reason: String| {
            f.disagree.push(Disagreement {
                store: l.path.display().to_string(),
                reason,
            });
        };
        let opened = match &l.read {
            Ok(o) => o,
            Err(e) if e.in_use => {
                f.in_use.push(l.path.display().to_string());
                continue;
            }
            Err(e) => {
                f.unreadable.push(Disagreement {
                    store: l.path.display().to_string(),
                    reason: e.reason.clone(),
                });
                continue;
            }
        };
        let Some(spec) = &opened.spec else {
            if any_shard {
                why("not a shard: its job records no shard spec".to_owned());
            }
            continue;
        };
        if let Some(named) = l.named
            && named != spec.shard
        {
            why(format!(
                "its file name says shard {named}, its store records shard {}",
                spec.shard
            ));
        }
        if f.count.is_some_and(|n| n != spec.shard.count()) {
            why(format!(
                "shard {} of {} shards, the others are of {}",
                spec.shard,
                spec.shard.count(),
                f.count.unwrap_or_default()
            ));
            continue;
        }
        if total.is_some_and(|t| t != spec.total) {
            why(format!(
                "split {} records, the others {}",
                spec.total,
                total.unwrap_or_default()
            ));
        }
        if manifest.is_some_and(|m| m != spec.manifest) {
            why(format!(
                "input manifest {:016x}, the others {:016x}: another input",
                spec.manifest,
                manifest.unwrap_or_default()
            ));
        }
        if let Some(other) = seen.insert(spec.shard.index(), &l.path) {
            why(format!(
                "shard {} is also in {}",
                spec.shard,
                other.display()
            ));
        }
    }
    if let Some(n) = f.count {
        let present: Vec<u32> = loaded
            .iter()
            .filter_map(Loaded::shard)
            .filter(|s| s.count() == n)
            .map(|s| s.index())
            .collect();
        f.missing = (0..n).filter(|i| !present.contains(i)).collect();
    }
    f
}

/// A set that is not one whole job, as an error (exit 1).
#[derive(Debug)]
struct NotOneJob(String);

impl std::fmt::Display for NotOneJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotOneJob {}

/// Fails unless the set reads as one job: every store readable and agreeing, and no shard
/// missing (unless `--allow-missing`).
fn require_whole(set: &Set, loaded: &[Loaded], f: &Findings) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    if let Some(u) = f.unreadable.first() {
        problems.push(format!(
            "{} store{} cannot be read (first: {}: {})",
            f.unreadable.len(),
            if f.unreadable.len() == 1 { "" } else { "s" },
            u.store,
            u.reason
        ));
    }
    if !f.in_use.is_empty() {
        problems.push(format!(
            "{} store{} in use by a running shard ({}); read them when the shards stopped",
            f.in_use.len(),
            if f.in_use.len() == 1 { " is" } else { "s are" },
            f.in_use.join(", ")
        ));
    }
    for d in &f.disagree {
        problems.push(format!("{} does not belong: {}", d.store, d.reason));
    }
    if !f.missing.is_empty() && !set.allow_missing {
        problems.push(format!(
            "{} of {} shards missing: {} (run them, or pass --allow-missing to read the rest)",
            f.missing.len(),
            f.count.unwrap_or_default(),
            indexes(&f.missing)
        ));
    }
    if loaded.is_empty() {
        problems.push("no stores".to_owned());
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(NotOneJob(format!(
        "the stores are not one whole job: {}",
        problems.join("; ")
    ))
    .into())
}

/// `0, 3, 7` (at most 20, then `…`).
fn indexes(list: &[u32]) -> String {
    let mut s: Vec<String> = list.iter().take(20).map(ToString::to_string).collect();
    if list.len() > 20 {
        s.push(format!("… ({} in all)", list.len()));
    }
    s.join(", ")
}

fn opened(loaded: &[Loaded]) -> impl Iterator<Item = (&Loaded, &Opened)> {
    loaded
        .iter()
        .filter_map(|l| l.read.as_ref().ok().map(|o| (l, o)))
}

// ---- status ----

/// `status` over a set: `--json` shape documented in `status --help`.
#[derive(Serialize)]
struct SetStatusJson<'a> {
    stores: usize,
    shard_count: Option<u32>,
    records_done: u64,
    total_records: u64,
    complete: bool,
    missing: &'a [u32],
    disagree: &'a [Disagreement],
    unreadable: &'a [Disagreement],
    in_use: &'a [String],
    slowest: Vec<String>,
    shards: Vec<ShardStatusJson>,
}

#[derive(Serialize)]
struct ShardStatusJson {
    store: String,
    job: String,
    shard: Option<String>,
    index: Option<u32>,
    count: Option<u32>,
    range: Option<(u64, u64)>,
    lifecycle: &'static str,
    records_done: u64,
    total_records: Option<u64>,
    dead_letters: u64,
    commits: u64,
    last_commit_ms: Option<u64>,
    records_per_s: Option<f64>,
}

fn shard_json(l: &Loaded, o: &Opened) -> ShardStatusJson {
    let s = &o.status;
    let rate = s.last_commit_ms.and_then(|last| {
        let secs = last.saturating_sub(s.created_ms) as f64 / 1000.0;
        (secs > 0.0).then(|| (s.records_done as f64 / secs * 10.0).round() / 10.0)
    });
    ShardStatusJson {
        store: l.path.display().to_string(),
        job: o.job.clone(),
        shard: o.spec.as_ref().map(|p| p.shard.to_string()),
        index: o.spec.as_ref().map(|p| p.shard.index()),
        count: o.spec.as_ref().map(|p| p.shard.count()),
        range: o.spec.as_ref().map(|p| (p.range.start, p.range.end)),
        lifecycle: s.lifecycle.as_str(),
        records_done: s.records_done,
        total_records: s.total_records,
        dead_letters: s.dead_letters,
        commits: s.commits,
        last_commit_ms: s.last_commit_ms,
        records_per_s: rate,
    }
}

/// Share done of a shard, for ordering (1 when it owns nothing).
fn share(s: &ShardStatusJson) -> f64 {
    match s.total_records {
        Some(t) if t > 0 => s.records_done as f64 / t as f64,
        _ => 1.0,
    }
}

pub(crate) fn status(set: &Set, target: &JobArgs, json: bool) -> anyhow::Result<ExitCode> {
    let loaded = load(set, target);
    let f = examine(&loaded);
    let shards: Vec<ShardStatusJson> = opened(&loaded).map(|(l, o)| shard_json(l, o)).collect();
    // The job's total: the split's recorded total when the shards agree, else the sum.
    let recorded_total =
        majority(opened(&loaded).filter_map(|(_, o)| o.spec.as_ref().map(|s| s.total)));
    let total =
        recorded_total.unwrap_or_else(|| shards.iter().filter_map(|s| s.total_records).sum());
    let done: u64 = shards.iter().map(|s| s.records_done).sum();
    let mut unfinished: Vec<&ShardStatusJson> = shards
        .iter()
        .filter(|s| s.lifecycle != JobState::Completed.as_str())
        .collect();
    unfinished.sort_by(|a, b| share(a).total_cmp(&share(b)));
    let slowest: Vec<String> = unfinished
        .iter()
        .take(3)
        .map(|s| s.shard.clone().unwrap_or_else(|| s.store.clone()))
        .collect();
    let complete = f.missing.is_empty()
        && f.disagree.is_empty()
        && f.unreadable.is_empty()
        && f.in_use.is_empty()
        && unfinished.is_empty();
    let mut out = Out::new();
    if json {
        out.json(&SetStatusJson {
            stores: loaded.len(),
            shard_count: f.count,
            records_done: done,
            total_records: total,
            complete,
            missing: &f.missing,
            disagree: &f.disagree,
            unreadable: &f.unreadable,
            in_use: &f.in_use,
            slowest,
            shards,
        })?;
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{} stores{}: {} of {} records done ({}){}",
        loaded.len(),
        f.count
            .map(|n| format!(" of a job split into {n} shards"))
            .unwrap_or_default(),
        count(done),
        count(total),
        output::percent(done, total),
        if complete { ", complete" } else { "" }
    )?;
    if !f.missing.is_empty() {
        writeln!(
            out,
            "missing shards ({}): {}",
            f.missing.len(),
            indexes(&f.missing)
        )?;
    }
    for d in f.disagree.iter().chain(&f.unreadable) {
        writeln!(out, "problem: {}: {}", d.store, d.reason)?;
    }
    for path in &f.in_use {
        writeln!(out, "running (in use by its writer, not read): {path}")?;
    }
    if !slowest.is_empty() {
        writeln!(out, "slowest: {}", slowest.join(", "))?;
    }
    let mut t = output::table(&[
        "shard",
        "ids",
        "lifecycle",
        "done",
        "of",
        "dead",
        "last commit",
        "rate/s",
    ]);
    for s in &shards {
        t.add_row(vec![
            Cell::new(s.shard.clone().unwrap_or_else(|| s.store.clone())),
            Cell::new(
                s.range
                    .map(|(a, b)| format!("{a}..{b}"))
                    .unwrap_or_default(),
            ),
            Cell::new(s.lifecycle),
            num(count(s.records_done)),
            num(s.total_records.map(count).unwrap_or_default()),
            output::good_bad(count(s.dead_letters), s.dead_letters == 0),
            Cell::new(s.last_commit_ms.map(output::time_ago).unwrap_or_default()),
            num(s
                .records_per_s
                .map(|r| count(output::whole(r)))
                .unwrap_or_default()),
        ]);
    }
    out.table(&t)?;
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

// ---- verify ----

#[derive(Serialize)]
struct SetVerifyJson<'a> {
    ok: bool,
    stores: usize,
    failed: Vec<String>,
    missing: &'a [u32],
    disagree: &'a [Disagreement],
    shards: Vec<ShardVerifyJson>,
}

#[derive(Serialize)]
struct ShardVerifyJson {
    store: String,
    shard: Option<String>,
    ok: bool,
    first_problem: Option<String>,
}

/// The page check and every job check of one store (as `verify STORE` runs them): the
/// first problem, if any.
fn verify_one(path: &Path, target: &JobArgs) -> Option<String> {
    let store = match resumable::StoreOptions::new()
        .concurrency(resumable::Concurrency::LiveReaders)
        .create(false)
        .verify_on_open(false)
        .open(path)
    {
        Ok(s) => s,
        Err(e) => return Some(format!("cannot open: {e}")),
    };
    match store.check_integrity() {
        Ok(true) => {}
        Ok(false) => return Some("store file pages: damaged pages".to_owned()),
        Err(e) => return Some(format!("store file pages: {e}")),
    }
    let names = match target.named_or_all(&store) {
        Ok(n) => n,
        Err(e) => return Some(format!("{e:#}")),
    };
    names.iter().find_map(|job| {
        crate::verify::check_job(&store, job)
            .into_iter()
            .next()
            .map(|(item, detail)| format!("{item}: {detail}"))
    })
}

pub(crate) fn verify(set: &Set, target: &JobArgs, json: bool) -> anyhow::Result<ExitCode> {
    let loaded = load(set, target);
    let f = examine(&loaded);
    // Each store is opened again read-write for the page check: drop the read handles.
    let labels: Vec<(PathBuf, Option<Shard>, String)> = loaded
        .iter()
        .map(|l| (l.path.clone(), l.shard(), l.label()))
        .collect();
    drop(loaded);
    let shards: Vec<ShardVerifyJson> = labels
        .iter()
        .map(|(path, shard, _)| {
            let problem = verify_one(path, target);
            ShardVerifyJson {
                store: path.display().to_string(),
                shard: shard.map(|s| s.to_string()),
                ok: problem.is_none(),
                first_problem: problem,
            }
        })
        .collect();
    let failed: Vec<String> = shards
        .iter()
        .zip(&labels)
        .filter(|(s, _)| !s.ok)
        .map(|(_, (_, _, label))| label.clone())
        .collect();
    let missing_fails = !f.missing.is_empty() && !set.allow_missing;
    let ok = failed.is_empty() && f.disagree.is_empty() && !missing_fails;
    let mut out = Out::new();
    if json {
        out.json(&SetVerifyJson {
            ok,
            stores: shards.len(),
            failed: failed.clone(),
            missing: &f.missing,
            disagree: &f.disagree,
            shards,
        })?;
    } else {
        for (s, (_, _, label)) in shards.iter().zip(&labels) {
            match &s.first_problem {
                None => writeln!(out, "{label}: ok")?,
                Some(p) => writeln!(out, "{label}: DAMAGED: {p}")?,
            }
        }
        if !f.missing.is_empty() {
            writeln!(out, "missing shards: {}", indexes(&f.missing))?;
        }
        for d in &f.disagree {
            writeln!(out, "does not belong: {}: {}", d.store, d.reason)?;
        }
        if ok {
            writeln!(out, "all {} stores good", labels.len())?;
        } else if !failed.is_empty() {
            writeln!(
                out,
                "failed: {}; run `resumable verify` on each for the details and what to do",
                failed.join(", ")
            )?;
        }
    }
    out.finish()?;
    if ok {
        return Ok(ExitCode::SUCCESS);
    }
    if !json {
        output::note(format_args!(
            "error: {} of {} stores failed verification{}{}",
            failed.len(),
            labels.len(),
            if f.missing.is_empty() {
                String::new()
            } else {
                format!("; missing shards: {}", indexes(&f.missing))
            },
            if f.disagree.is_empty() {
                ""
            } else {
                "; some stores do not belong to the job"
            }
        ));
    }
    Ok(ExitCode::from(EXIT_PROBLEM))
}

// ---- export ----

/// Outputs of one store, read in batches in id order.
struct Cursor<'a> {
    opened: &'a Opened,
    decoder: Decoder,
    next: u64,
    end: u64,
    buffered: VecDeque<StoredOutput>,
    exhausted: bool,
}

/// Outputs per read transaction of a cursor.
const BATCH: usize = 4096;

impl Cursor<'_> {
    fn peek(&mut self) -> anyhow::Result<Option<&StoredOutput>> {
        if self.buffered.is_empty() && !self.exhausted {
            let mut got = 0;
            let buffered = &mut self.buffered;
            self.opened
                .store
                .for_each_output(&self.opened.job, self.next..self.end, |o| {
                    buffered.push_back(o);
                    got += 1;
                    Ok(got < BATCH)
                })?;
            match self.buffered.back() {
                Some(last) if got == BATCH => self.next = last.id + 1,
                _ => self.exhausted = true,
            }
        }
        Ok(self.buffered.front())
    }
}

pub(crate) fn export(
    set: &Set,
    target: &JobArgs,
    format: Format,
    hex: bool,
    ids: Range<u64>,
) -> anyhow::Result<ExitCode> {
    let loaded = load(set, target);
    let f = examine(&loaded);
    require_whole(set, &loaded, &f)?;
    let mut cursors: Vec<Cursor<'_>> = opened(&loaded)
        .map(|(_, o)| Cursor {
            decoder: if hex {
                Decoder::Hex("--hex".to_owned())
            } else {
                Decoder::for_job(&o.store, &o.job, &o.status.state_type)
            },
            opened: o,
            // A shard's outputs lie in its range: start there.
            next: o
                .spec
                .as_ref()
                .map_or(ids.start, |s| s.range.start.max(ids.start)),
            end: ids.end,
            buffered: VecDeque::new(),
            exhausted: false,
        })
        .collect();
    // The k-way merge: a min-heap of each cursor's next id. Shards own disjoint ranges, so
    // the heap mostly holds one live cursor; stores that overlap are merged all the same,
    // and an id stored twice is an error.
    let mut heap = BinaryHeap::new();
    for (i, c) in cursors.iter_mut().enumerate() {
        if let Some(o) = c.peek()? {
            heap.push(Reverse((o.id, i)));
        }
    }
    let mut writer = LineWriter::new(format);
    let mut out = Out::new();
    let mut last: Option<(u64, usize)> = None;
    while let Some(Reverse((id, i))) = heap.pop() {
        let c = &mut cursors[i];
        let Some(output) = c.buffered.pop_front() else {
            continue;
        };
        if let Some((prev, j)) = last
            && prev == id
        {
            anyhow::bail!(
                "record {id} has an output in both {} and {}: the stores overlap; export them separately",
                loaded_path(&loaded, j),
                loaded_path(&loaded, i)
            );
        }
        writer.write(&mut out, &c.decoder, &output)?;
        last = Some((id, i));
        if let Some(o) = c.peek()? {
            heap.push(Reverse((o.id, i)));
        }
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// The path of the `i`th readable store.
fn loaded_path(loaded: &[Loaded], i: usize) -> String {
    opened(loaded)
        .nth(i)
        .map(|(l, _)| l.path.display().to_string())
        .unwrap_or_default()
}

// ---- dead letters ----

#[derive(Serialize)]
struct DeadLetterJson<'a> {
    id: u64,
    attempts: u32,
    error: &'a str,
    time_ms: u64,
    store: String,
}

pub(crate) fn dead_letters(set: &Set, target: &JobArgs, json: bool) -> anyhow::Result<ExitCode> {
    let loaded = load(set, target);
    let f = examine(&loaded);
    require_whole(set, &loaded, &f)?;
    let mut letters = Vec::new();
    for (l, o) in opened(&loaded) {
        for d in o.store.dead_letters(&o.job)? {
            letters.push((d, l.path.display().to_string()));
        }
    }
    letters.sort_by_key(|(d, _)| d.id);
    let mut out = Out::new();
    if json {
        out.json(
            &letters
                .iter()
                .map(|(d, store)| DeadLetterJson {
                    id: d.id,
                    attempts: d.attempts,
                    error: &d.error,
                    time_ms: d.time_ms,
                    store: store.clone(),
                })
                .collect::<Vec<_>>(),
        )?;
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{} dead letters in {} stores",
        count(letters.len() as u64),
        loaded.len()
    )?;
    if !letters.is_empty() {
        let mut t = output::table(&["id", "attempts", "last error", "time", "store"]);
        for (d, store) in &letters {
            t.add_row(vec![
                num(d.id),
                num(d.attempts),
                Cell::new(&d.error),
                Cell::new(output::time(d.time_ms)),
                Cell::new(store),
            ]);
        }
        out.table(&t)?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

// ---- ranges ----

#[derive(Serialize)]
struct SetRangesJson {
    stores: usize,
    records_done: u64,
    watermark: u64,
    bound: u64,
    done: Vec<(u64, u64)>,
    gaps: Vec<(u64, u64)>,
}

pub(crate) fn ranges(set: &Set, target: &JobArgs, json: bool) -> anyhow::Result<ExitCode> {
    let loaded = load(set, target);
    let f = examine(&loaded);
    require_whole(set, &loaded, &f)?;
    let mut all: Vec<(u64, u64)> = Vec::new();
    let mut bound = 0u64;
    for (_, o) in opened(&loaded) {
        all.extend(
            o.store
                .done_ranges(&o.job)?
                .ranges()
                .map(|r| (r.start, r.end)),
        );
        bound = bound.max(o.spec.as_ref().map_or(0, |s| s.total));
    }
    all.sort_unstable();
    // Shards' ranges touch at their boundaries: coalesce them into the job's ranges.
    let mut done: Vec<(u64, u64)> = Vec::new();
    for (a, b) in all {
        match done.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => done.push((a, b)),
        }
    }
    let bound = bound.max(done.last().map_or(0, |r| r.1));
    let mut gaps = Vec::new();
    let mut at = 0;
    for &(a, b) in &done {
        if a > at {
            gaps.push((at, a));
        }
        at = b;
    }
    if at < bound {
        gaps.push((at, bound));
    }
    let records_done = done.iter().map(|(a, b)| b - a).sum();
    let watermark = done.first().filter(|r| r.0 == 0).map_or(0, |r| r.1);
    let mut out = Out::new();
    if json {
        out.json(&SetRangesJson {
            stores: loaded.len(),
            records_done,
            watermark,
            bound,
            done,
            gaps,
        })?;
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{} stores: {} records done in {} ranges, watermark {}, {} ids missing below {}",
        loaded.len(),
        count(records_done),
        count(done.len() as u64),
        count(watermark),
        count(gaps.iter().map(|(a, b)| b - a).sum()),
        count(bound)
    )?;
    writeln!(out, "done: {}", output::ranges(&done, 20))?;
    if !gaps.is_empty() {
        writeln!(out, "gaps: {}", output::ranges(&gaps, 20))?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_in_counts_only_the_owned_ids() {
        assert_eq!(done_in([0..10, 20..30].into_iter(), &(5..25)), 10);
        assert_eq!(done_in(std::iter::once(0..10), &(10..20)), 0);
    }

    #[test]
    fn majority_prefers_the_most_frequent_then_the_smallest() {
        assert_eq!(majority([4, 8, 8].into_iter()), Some(8));
        assert_eq!(majority([8, 4].into_iter()), Some(4));
        assert_eq!(majority(std::iter::empty::<u32>()), None);
    }
}
