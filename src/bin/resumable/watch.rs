//! `resumable status STORE --watch`: a live view of a store's jobs, one reading per interval.
//!
//! Each interval opens the store as a live reader (read-only), reads every watched job's
//! status, and drops the handle before sleeping: the watcher never holds the file between
//! readings, so it never keeps a writer (a job starting or resuming) from opening it, and it
//! never runs crash recovery unless `--recover` asks for it (a store that needs recovery has
//! no live writer: the watch ends with that error).
//!
//! A reading that finds the store held by a writer that refuses live readers (`Locked`) is
//! not an error: the interval is reported as "writer busy" (a line, or an object with
//! `"writer_busy": true`) and the next interval tries again. That can never loop silently
//! and never loops forever: every busy interval prints, and once the store has been busy
//! for `--busy-timeout` (readings in a row) the watch gives up with the `Locked` error
//! (exit 75: retry later).
//!
//! Figures that need two readings (the rate, ETA, commits per second) are taken over the
//! last interval; the first reading shows them as unknown.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use resumable::{Error, JobState, JobStatus};
use serde::Serialize;

use crate::open::JobArgs;
use crate::output::{self, count};

/// The shortest interval accepted: a reading opens the store, which costs a few reads.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Exit code when the watch was ended with Ctrl-C (128 + SIGINT, the shell convention).
const EXIT_INTERRUPTED: u8 = 130;

/// What to watch and how to print it.
pub(crate) struct Watch<'a> {
    /// The store and the job named with `--job` (every job in the store without it).
    pub(crate) target: &'a JobArgs,
    /// Time between readings.
    pub(crate) interval: Duration,
    /// Print JSON Lines, one object per interval.
    pub(crate) json: bool,
    /// How long readings in a row may find the store held by a writer that refuses live
    /// readers before the watch gives up.
    pub(crate) busy_timeout: Duration,
}

/// One interval's reading: the `--json` shape (one line per interval).
#[derive(Serialize)]
struct TickJson<'a> {
    store: &'a str,
    /// When the reading was taken, ms since the Unix epoch.
    time_ms: u64,
    /// The store was held by a writer that refuses live readers; `jobs` is empty.
    writer_busy: bool,
    /// Whether a process holds the store for writing (`None`: cannot tell).
    writer_alive: Option<bool>,
    /// Busy intervals in a row so far (0 when this reading succeeded).
    busy_intervals: u32,
    jobs: Vec<JobTick>,
    /// Whether this is the last object: every watched job has ended (completed, paused
    /// or failed).
    ended: bool,
}

/// One job of [`TickJson`].
#[derive(Serialize, Clone)]
struct JobTick {
    name: String,
    lifecycle: &'static str,
    records_done: u64,
    total_records: Option<u64>,
    /// Records done per second over the last interval (null on the first reading).
    rate: Option<f64>,
    /// Seconds left at `rate` (null without a total or a rate).
    eta_s: Option<f64>,
    /// Records settled in the writer's memory but not durable yet: only the writer knows
    /// (its `--metrics-file` has the figure), so a reader shows null.
    records_at_risk: Option<u64>,
    commits: u64,
    /// Commits per second over the last interval (null on the first reading).
    commits_per_s: Option<f64>,
    last_commit_ms: Option<u64>,
    /// Age of the last commit at the reading, ms.
    last_commit_age_ms: Option<u64>,
    dead_letters: u64,
}

/// What a reading keeps of a job's status.
struct Seen {
    name: String,
    lifecycle: JobState,
    records_done: u64,
    total_records: Option<u64>,
    commits: u64,
    last_commit_ms: Option<u64>,
    dead_letters: u64,
}

impl From<JobStatus> for Seen {
    fn from(s: JobStatus) -> Self {
        Seen {
            name: s.name,
            lifecycle: s.lifecycle,
            records_done: s.records_done,
            total_records: s.total_records,
            commits: s.commits,
            last_commit_ms: s.last_commit_ms,
            dead_letters: s.dead_letters,
        }
    }
}

/// The previous reading of a job, for the per-interval rates.
struct Previous {
    at: Instant,
    done: u64,
    commits: u64,
}

/// Runs the watch until every watched job ends, Ctrl-C, or an error.
///
/// Exit code: 0 when every watched job completed, 75 when one paused (stopped, resumable)
/// and none failed, 1 when one failed, 130 on Ctrl-C.
pub(crate) fn run(w: &Watch<'_>) -> anyhow::Result<ExitCode> {
    match watch(w) {
        Ok(code) => Ok(code),
        // Under --json the error is one more line of JSON Lines; a watch that gave up on a
        // busy writer asks for a retry.
        Err(e) if w.json || locked(&e) => {
            let code = crate::failure::report_line(&e, w.json);
            Ok(if locked(&e) {
                ExitCode::from(crate::EXIT_RETRY)
            } else {
                code
            })
        }
        Err(e) => Err(e),
    }
}

fn watch(w: &Watch<'_>) -> anyhow::Result<ExitCode> {
    if w.interval < MIN_INTERVAL {
        return crate::usage(format!(
            "--interval must be at least {} ms",
            MIN_INTERVAL.as_millis()
        ));
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)) {
        tracing::warn!(error = %e, "cannot install the Ctrl-C handler; Ctrl-C ends the watch abruptly");
    }
    let terminal = !w.json && std::io::stdout().is_terminal();
    let path = w.target.store();
    let store_name = path.display().to_string();
    let mut previous: Vec<(String, Previous)> = Vec::new();
    let mut busy = 0u32;
    let mut busy_since: Option<Instant> = None;
    let mut drawn_lines = 0usize;
    loop {
        let at = Instant::now();
        let time_ms = now_ms();
        let (jobs, writer_busy, writer_alive) = match read(w.target) {
            Ok((statuses, writer_alive)) => {
                busy = 0;
                busy_since = None;
                let ticks = statuses
                    .iter()
                    .map(|s| tick(s, at, time_ms, &previous))
                    .collect::<Vec<_>>();
                previous = statuses
                    .iter()
                    .map(|s| {
                        (
                            s.name.clone(),
                            Previous {
                                at,
                                done: s.records_done,
                                commits: s.commits,
                            },
                        )
                    })
                    .collect();
                (ticks, false, writer_alive)
            }
            Err(e) if locked(&e) => {
                busy += 1;
                let since = *busy_since.get_or_insert(at);
                if at.saturating_duration_since(since) >= w.busy_timeout {
                    return Err(e.context(format!(
                        "watch gave up: {busy} readings in a row over {} found the store held by a writer that refuses live readers",
                        output::duration(at.saturating_duration_since(since))
                    )));
                }
                (Vec::new(), true, Some(true))
            }
            Err(e) => return Err(e),
        };
        let ended = !writer_busy && !jobs.is_empty() && jobs.iter().all(|j| ended(j.lifecycle));
        let reading = TickJson {
            store: &store_name,
            time_ms,
            writer_busy,
            writer_alive,
            busy_intervals: busy,
            jobs,
            ended,
        };
        let mut stdout = std::io::stdout().lock();
        if w.json {
            serde_json::to_writer(&mut stdout, &reading)?;
            stdout.write_all(b"\n")?;
        } else {
            let lines = render(&reading, w.interval);
            if terminal && drawn_lines > 0 {
                // Back to the top of the previous view, then redraw it line by line.
                write!(stdout, "\x1b[{drawn_lines}A")?;
            }
            for line in &lines {
                if terminal {
                    write!(stdout, "\x1b[2K")?;
                }
                writeln!(stdout, "{line}")?;
            }
            if terminal {
                // Clear what is left of a longer previous view.
                write!(stdout, "\x1b[J")?;
            }
            drawn_lines = lines.len();
        }
        stdout.flush()?;
        drop(stdout);
        if ended {
            return Ok(exit_for(&reading.jobs));
        }
        // Sleep in short steps so Ctrl-C ends the watch promptly.
        let wake = at + w.interval;
        loop {
            if interrupted.load(Ordering::SeqCst) {
                return Ok(ExitCode::from(EXIT_INTERRUPTED));
            }
            let now = Instant::now();
            if now >= wake {
                break;
            }
            std::thread::sleep((wake - now).min(Duration::from_millis(50)));
        }
    }
}

/// One reading: opens the store read-only, reads the statuses and whether a process
/// holds the store for writing, drops the handle.
fn read(target: &JobArgs) -> anyhow::Result<(Vec<Seen>, Option<bool>)> {
    let store = crate::open::read(target.store(), target.recover())?;
    let names = target.named_or_all(&store)?;
    let seen = names
        .iter()
        .map(|n| store.status(n).map(Seen::from))
        .collect::<resumable::Result<_>>()?;
    Ok((seen, store.writer_alive()))
}

/// Whether a reading failed because a writer holds the store and refuses live readers.
fn locked(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<Error>()
            .is_some_and(|e| matches!(e, Error::Locked { .. }))
    })
}

fn tick(s: &Seen, at: Instant, time_ms: u64, previous: &[(String, Previous)]) -> JobTick {
    let prev = previous.iter().find(|(n, _)| *n == s.name).map(|(_, p)| p);
    let per_s = |now: u64, before: u64, p: &Previous| {
        let secs = at.saturating_duration_since(p.at).as_secs_f64();
        (secs > 0.0).then(|| now.saturating_sub(before) as f64 / secs)
    };
    let rate = prev.and_then(|p| per_s(s.records_done, p.done, p));
    let commits_per_s = prev.and_then(|p| per_s(s.commits, p.commits, p));
    let eta_s = match (s.total_records, rate) {
        (Some(total), _) if s.records_done >= total => Some(0.0),
        (Some(total), Some(r)) if r > 0.0 => Some((total - s.records_done) as f64 / r),
        _ => None,
    };
    JobTick {
        name: s.name.clone(),
        lifecycle: s.lifecycle.as_str(),
        records_done: s.records_done,
        total_records: s.total_records,
        rate: rate.map(round1),
        eta_s: eta_s.map(round1),
        records_at_risk: None,
        commits: s.commits,
        commits_per_s: commits_per_s.map(round1),
        last_commit_ms: s.last_commit_ms,
        last_commit_age_ms: s.last_commit_ms.map(|ms| time_ms.saturating_sub(ms)),
        dead_letters: s.dead_letters,
    }
}

/// Whether a job in this lifecycle state has ended (nothing more happens without a rerun).
fn ended(lifecycle: &str) -> bool {
    [JobState::Completed, JobState::Paused, JobState::Failed]
        .iter()
        .any(|s| s.as_str() == lifecycle)
}

fn exit_for(jobs: &[JobTick]) -> ExitCode {
    let any = |state: JobState| jobs.iter().any(|j| j.lifecycle == state.as_str());
    if any(JobState::Failed) {
        ExitCode::from(crate::EXIT_PROBLEM)
    } else if any(JobState::Paused) {
        ExitCode::from(crate::EXIT_RETRY)
    } else {
        ExitCode::SUCCESS
    }
}

/// The human view of one reading: a header line and one line per job.
fn render(t: &TickJson<'_>, interval: Duration) -> Vec<String> {
    let clock = output::time(t.time_ms);
    if t.writer_busy {
        return vec![format!(
            "{clock} {}: writer busy (held by a writer that refuses live readers); retrying ({} readings so far)",
            t.store, t.busy_intervals
        )];
    }
    let mut lines = vec![format!("{clock} {}", t.store)];
    if t.jobs.is_empty() {
        lines.push("  no jobs yet".to_owned());
    }
    for j in &t.jobs {
        let done = match j.total_records {
            Some(total) if total > 0 => format!(
                "{} of {} ({})",
                count(j.records_done),
                count(total),
                output::percent(j.records_done, total)
            ),
            _ => count(j.records_done),
        };
        let rate = j
            .rate
            .map_or_else(|| "?".to_owned(), |r| count(output::whole(r)));
        let eta = j.eta_s.map_or_else(
            || "?".to_owned(),
            |s| output::duration(Duration::from_secs_f64(s)),
        );
        let age = j.last_commit_age_ms.map_or_else(
            || "none".to_owned(),
            |ms| format!("{} ago", output::duration(Duration::from_millis(ms))),
        );
        let commits_per_s = j
            .commits_per_s
            .map_or_else(|| "?".to_owned(), |c| format!("{c:.1}"));
        lines.push(format!(
            "  {} {}: {done} done, {rate}/s, ETA {eta}",
            j.name, j.lifecycle
        ));
        lines.push(format!(
            "    last commit {age}, {} commits ({commits_per_s}/s), {} dead letters, at risk: see the writer's --metrics-file",
            count(j.commits),
            count(j.dead_letters)
        ));
        if j.lifecycle == JobState::Running.as_str() && t.writer_alive == Some(false) {
            lines.push(
                "    not being run: no process holds the store (its last run crashed or ended without pausing it); running it again resumes it"
                    .to_owned(),
            );
        } else if let Some(quiet) = stalled(j, interval) {
            lines.push(format!(
                "    no commit for {}: if no process runs the job, it crashed; running it again resumes it",
                output::duration(quiet)
            ));
        }
    }
    lines
}

/// How long a `running` job has gone without a commit, when that is long enough (ten
/// intervals and at least 30 s) to suggest its writer is gone.
fn stalled(j: &JobTick, interval: Duration) -> Option<Duration> {
    let quiet = Duration::from_millis(j.last_commit_age_ms?);
    let threshold = (interval * 10).max(Duration::from_secs(30));
    (j.lifecycle == JobState::Running.as_str() && quiet >= threshold).then_some(quiet)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(done: u64, commits: u64, lifecycle: JobState) -> Seen {
        Seen {
            name: "j".to_owned(),
            lifecycle,
            records_done: done,
            total_records: Some(1000),
            commits,
            last_commit_ms: None,
            dead_letters: 0,
        }
    }

    #[test]
    fn rates_and_eta_come_from_the_last_interval() {
        let t0 = Instant::now();
        let first = tick(&status(100, 1, JobState::Running), t0, 0, &[]);
        assert_eq!((first.rate, first.eta_s), (None, None));
        let prev = vec![(
            "j".to_owned(),
            Previous {
                at: t0,
                done: 100,
                commits: 1,
            },
        )];
        let later = t0 + Duration::from_secs(2);
        let second = tick(&status(300, 5, JobState::Running), later, 0, &prev);
        assert_eq!(second.rate, Some(100.0));
        assert_eq!(second.commits_per_s, Some(2.0));
        assert_eq!(second.eta_s, Some(7.0));
    }

    #[test]
    fn a_running_job_without_commits_for_long_is_flagged() {
        let mut s = status(1, 1, JobState::Running);
        s.last_commit_ms = Some(0);
        let quiet = tick(&s, Instant::now(), 60_000, &[]);
        assert_eq!(
            stalled(&quiet, Duration::from_secs(2)),
            Some(Duration::from_mins(1))
        );
        assert_eq!(stalled(&quiet, Duration::from_secs(10)), None);
        let recent = tick(&s, Instant::now(), 5_000, &[]);
        assert_eq!(stalled(&recent, Duration::from_secs(2)), None);
    }

    #[test]
    fn a_running_job_nobody_holds_is_said_to_be_not_being_run() {
        let s = status(1, 1, JobState::Running);
        let says = |writer_alive| {
            let reading = TickJson {
                store: "s.redb",
                time_ms: 0,
                writer_busy: false,
                writer_alive,
                busy_intervals: 0,
                jobs: vec![tick(&s, Instant::now(), 0, &[])],
                ended: false,
            };
            render(&reading, Duration::from_secs(2))
                .join("\n")
                .contains("not being run: no process holds the store")
        };
        assert!(says(Some(false)));
        assert!(!says(Some(true)));
        assert!(!says(None), "cannot tell: no claim either way");
    }

    #[test]
    fn paused_failed_and_completed_end_the_watch_with_their_exit_codes() {
        let t = |l| tick(&status(1, 1, l), Instant::now(), 0, &[]);
        assert!(!ended(JobState::Running.as_str()));
        assert!(!ended(JobState::Created.as_str()));
        assert_eq!(exit_for(&[t(JobState::Completed)]), ExitCode::SUCCESS);
        assert_eq!(
            exit_for(&[t(JobState::Completed), t(JobState::Paused)]),
            ExitCode::from(crate::EXIT_RETRY)
        );
        assert_eq!(
            exit_for(&[t(JobState::Paused), t(JobState::Failed)]),
            ExitCode::from(crate::EXIT_PROBLEM)
        );
    }
}
