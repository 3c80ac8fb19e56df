//! How a failed command reports: one paragraph on stderr (what is wrong and what to do), an
//! exit code, and under `--json` an `error` object on stdout, so a script that asked for
//! JSON always gets JSON.
//!
//! The `kind` names the typed cause found in the error chain: a `resumable::Error` variant in
//! snake case, `usage` for a usage error, `io` for an operating-system error outside the
//! library (a missing store file among them), `internal` for a caught panic, `other` for
//! anything else. The advice is chosen here, per kind, so it never points at a command that
//! fails the same way: when the file cannot be opened at all, verify cannot open it either,
//! and the advice is salvage or a backup.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::output::{Out, note};
use crate::{EXIT_PROBLEM, EXIT_USAGE, UsageError};

/// The `--json` shape of a failure: `{"error": {"kind": S, "message": S, "advice": S}}`.
#[derive(Serialize)]
struct FailureJson<'a> {
    error: ErrorJson<'a>,
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    kind: &'a str,
    message: &'a str,
    advice: &'a str,
}

/// The context a failed open carries, so the advice can tell "the file does not open" from a
/// failure later on.
#[derive(Debug)]
pub(crate) struct CannotOpen(pub(crate) PathBuf);

impl std::fmt::Display for CannotOpen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot open {}", self.0.display())
    }
}

/// A store that holds no jobs, where a command needs one: kind `job_not_found`.
#[derive(Debug)]
pub(crate) struct NoJobs;

impl std::fmt::Display for NoJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the store holds no jobs yet")
    }
}

impl std::error::Error for NoJobs {}

/// Advice when the file cannot be opened as a store at all.
const UNOPENABLE: &str = "the file does not open, so `resumable verify` cannot read it either: copy out every commit that still verifies with `resumable salvage STORE --into NEW`, or restore the file from a backup (see the runbook's backups paragraph)";

/// Advice when the file's pages are damaged: cut short, or failing their checksums.
const FILE_DAMAGED: &str = "the file's pages are damaged (cut short or failing their checksums), which rewinding cannot mend: copy out every commit that still verifies with `resumable salvage STORE --into NEW`, or restore the file from a backup (see the runbook's backups paragraph)";

/// The error's kind (see the module docs) and the advice for it.
fn classify(e: &anyhow::Error) -> (String, &'static str) {
    let at_open = e.downcast_ref::<CannotOpen>().is_some();
    for cause in e.chain() {
        if cause.is::<UsageError>() {
            return (
                "usage".to_owned(),
                "see `resumable --help` and `resumable COMMAND --help`",
            );
        }
        if cause.is::<NoJobs>() {
            return (
                "job_not_found".to_owned(),
                "run the job first, or check the path: this store holds no jobs",
            );
        }
        if let Some(err) = cause.downcast_ref::<resumable::Error>() {
            return (snake_case(err.kind()), advice(err, at_open));
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return (
                "io".to_owned(),
                if io.kind() == std::io::ErrorKind::NotFound {
                    "check the path"
                } else {
                    "check the disk and the file's permissions, then retry"
                },
            );
        }
    }
    (
        "other".to_owned(),
        "read the message; run with RUST_LOG=info for more",
    )
}

/// `NotAStore` -> `not_a_store`: the library names its variants, the JSON spells them.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// What to do about a library error; `at_open` when the store file did not open.
fn advice(e: &resumable::Error, at_open: bool) -> &'static str {
    use resumable::Error as E;
    match e {
        E::Corrupt { .. } | E::Storage(_) if at_open => UNOPENABLE,
        // The file itself is cut short or fails page checksums (a live reader opens such a
        // file and finds the damage on the first read of it): rewind cannot mend that.
        E::Corrupt { what, .. } if what == "store file" => FILE_DAMAGED,
        E::Unopenable { .. } => UNOPENABLE,
        E::NotAStore { .. } => {
            "check the path; if this file was a store, it is damaged beyond opening: `resumable salvage STORE --into NEW` copies out what still verifies, or restore it from a backup"
        }
        E::UnsupportedFormat { .. } => "open it with the version of resumable that wrote it",
        E::Corrupt { .. } => {
            "run `resumable verify STORE` to locate the damage, then rewind to a snapshot taken before it (`resumable snapshots`, `resumable rewind`), or restore the file from a backup"
        }
        E::Storage(_) => "check the disk, then retry; if it repeats, run `resumable verify STORE`",
        E::JobMismatch { .. } => {
            "open the job with what it was created with, or use a new job name"
        }
        E::JobNotFound(_) => "list the jobs with `resumable status STORE`",
        E::Locked { .. } => {
            "another process holds the store for writing: wait for it to finish or stop it, then retry"
        }
        E::NeedsRecovery { .. } => {
            "run `resumable recover STORE` (or the job again) to recover it, or add --recover to this command; recovery keeps every durable commit"
        }
        E::SyncFailed { .. } => {
            "check the disk (dmesg, SMART), then run `resumable recover STORE`: it drops the file's cached pages and keeps every commit the disk holds; if the machine has not rebooted since, rebooting first is the surest way"
        }
        E::DiskFull(_) => {
            "free space on the disk, then retry: the store is at its last durable commit"
        }
        E::Poisoned => "retry: a reopen resumes from the last durable commit",
        E::Io(_) => "check the disk and the file's permissions, then retry",
        E::Lifecycle { .. } => "check the job's lifecycle with `resumable status STORE`",
        E::Record { .. } => "fix the record or the code that handles it",
        E::Panicked { .. } => "fix the panic in the job's code, then retry",
        E::SnapshotNotFound { .. } => "list the snapshots with `resumable snapshots STORE`",
        E::InvalidArgument(_) => "see `resumable COMMAND --help`",
        _ => "read the message; run with RUST_LOG=info for more",
    }
}

/// Whether a broken pipe on stdout ended the command (`resumable export … | head`).
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Whether retrying a job-running command can help (exit code 75): the store was held by
/// another writer, or the disk failed or filled up; the store is at its last durable commit.
pub(crate) fn retryable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<resumable::Error>().is_some_and(|e| {
            matches!(
                e,
                resumable::Error::Locked { .. }
                    | resumable::Error::Io(_)
                    | resumable::Error::DiskFull(_)
                    | resumable::Error::Poisoned
            )
        })
    })
}

/// Reports a failed command (stderr, and stdout under `--json`) and picks the exit code.
pub(crate) fn report(e: &anyhow::Error, json: bool) -> ExitCode {
    report_as(e, json, false)
}

/// [`report`] for a command printing JSON Lines (`status --watch --json`): the error
/// object is one line too.
pub(crate) fn report_line(e: &anyhow::Error, json: bool) -> ExitCode {
    report_as(e, json, true)
}

fn report_as(e: &anyhow::Error, json: bool, one_line: bool) -> ExitCode {
    if broken_pipe(e) {
        return ExitCode::SUCCESS;
    }
    let message = format!("{e:#}");
    note(format_args!("error: {message}"));
    let (kind, advice) = classify(e);
    if advice == UNOPENABLE {
        // The library's own advice may name verify, which cannot open this file either.
        note(format_args!("what to do: {advice}"));
    }
    if json {
        if one_line {
            let line = serde_json::to_string(&FailureJson {
                error: ErrorJson {
                    kind: &kind,
                    message: &message,
                    advice,
                },
            })
            .unwrap_or_default();
            let mut out = Out::new();
            let written = writeln!(out, "{line}")
                .map_err(anyhow::Error::from)
                .and_then(|()| out.finish());
            if written.is_err() {
                note("error: could not write the error object to stdout");
            }
        } else {
            print_json(&kind, &message, advice);
        }
    }
    ExitCode::from(if matches!(kind.as_str(), "usage" | "invalid_argument") {
        EXIT_USAGE
    } else {
        EXIT_PROBLEM
    })
}

/// Reports, under `--json`, a command line that did not parse (clap printed it already).
pub(crate) fn report_usage(message: &str) -> ExitCode {
    let message = message.trim().trim_start_matches("error: ");
    let first = message.lines().next().unwrap_or_default();
    print_json(
        "usage",
        first,
        "see `resumable --help` and `resumable COMMAND --help`",
    );
    ExitCode::from(EXIT_USAGE)
}

/// Reports a panic caught in a command: exit code 1.
pub(crate) fn report_panic(detail: &str, json: bool) -> ExitCode {
    let message = format!("internal failure while reading the store ({detail})");
    let advice = "the file is most likely damaged: run `resumable verify STORE` on a copy, rewind to a good snapshot or restore the file from a backup; if the file is intact, this is a bug in resumable: please report it";
    note(format_args!("error: {message}; {advice}"));
    if json {
        print_json("internal", &message, advice);
    }
    ExitCode::from(EXIT_PROBLEM)
}

/// Writes the failure object on stdout; a failure to write it has nowhere left to go.
fn print_json(kind: &str, message: &str, advice: &str) {
    let mut out = Out::new();
    let written = out.json(&FailureJson {
        error: ErrorJson {
            kind,
            message,
            advice,
        },
    });
    if written.and_then(|()| out.finish()).is_err() {
        note("error: could not write the error object to stdout");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names_become_snake_case() {
        assert_eq!(snake_case("NotAStore"), "not_a_store");
        assert_eq!(snake_case("JobMismatch"), "job_mismatch");
        assert_eq!(snake_case("Io"), "io");
    }

    #[test]
    fn kinds_come_from_the_typed_cause_in_the_chain() {
        let job = anyhow::Error::new(resumable::Error::JobNotFound("x".into())).context("while");
        assert_eq!(classify(&job).0, "job_not_found");
        let usage = anyhow::Error::new(UsageError("bad".into()));
        assert_eq!(classify(&usage).0, "usage");
        let missing = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert_eq!(classify(&missing), ("io".to_owned(), "check the path"));
        let at_open = anyhow::Error::new(resumable::Error::Storage("all roots".into()))
            .context(CannotOpen(PathBuf::from("s.redb")));
        let (kind, advice) = classify(&at_open);
        assert_eq!(kind, "storage");
        assert!(advice.contains("salvage") && !advice.starts_with("run `resumable verify"));
        assert_eq!(classify(&anyhow::anyhow!("plain")).0, "other");
    }
}
