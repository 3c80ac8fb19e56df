//! `resumable run ... --audit SHARE`: the determinism audit of a `run` job.
//!
//! The job's command line is on the command line again, so the audit can do what a run
//! does for a sample of the records already done: read their input, send it through the
//! worker program (the same protocol, the same pool or `--per-record`), and compare each
//! answer with the stored output. The store is opened read-only and nothing is written: a
//! running job (which holds the store) is refused with exit 75, as any second writer is.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::Receiver;
use resumable::{AuditReport, AuditSample, FileInput, Json, ProcessError, Source, Store};
use serde_json::json;

use super::pool::{Answer, Pool};
use super::{Args, Failure, lib_failure, per_record, protocol};
use crate::EXIT_PROBLEM;
use crate::output::{self, Out, count};

/// A sampled record on its way: its id, its stored output, and its answer's channel or
/// its encoded input (or why its input cannot be sent).
type Pending<T> = (u64, Json, Result<T, String>);

/// What the audit found, and where.
pub(super) struct Audited {
    store: PathBuf,
    sample: AuditSample,
    report: AuditReport,
}

/// Runs the audit of `args.job` in `store_path` on the records `sample` picks.
pub(super) fn audit(
    args: &Args,
    store_path: PathBuf,
    sample: AuditSample,
    pool: Option<&Pool>,
) -> Result<Audited, Failure> {
    if !store_path.exists() {
        return Err(Failure::Exit(
            EXIT_PROBLEM,
            anyhow::anyhow!(
                "{} does not exist: there is no job to audit (run the job first)",
                store_path.display()
            ),
        ));
    }
    let store = Store::open_read_only(&store_path)
        .map_err(|e| lib_failure(e, format!("cannot open {}", store_path.display())))?;
    let jobs = store
        .jobs()
        .map_err(|e| lib_failure(e, format!("cannot read {}", store_path.display())))?;
    if !jobs.contains(&args.job) {
        return Err(Failure::Exit(
            EXIT_PROBLEM,
            anyhow::anyhow!(
                "{} has no job {:?} to audit (jobs: {})",
                store_path.display(),
                args.job,
                if jobs.is_empty() {
                    "none".to_owned()
                } else {
                    jobs.join(", ")
                }
            ),
        ));
    }
    // The input must still be the job's input: a changed file is refused (exit 1), as a
    // rerun would be, since its records are no longer the ones the outputs came from.
    let input = FileInput::builder(&args.inputs)
        .format(args.format.input())
        .max_record_bytes(args.max_line_bytes)
        .open(&store, &args.job)
        .map_err(|e| lib_failure(e, "the input cannot be used".to_owned()))?;

    // The stored outputs the sample picks, in id order.
    let mut picked: Vec<(u64, Json)> = Vec::new();
    store
        .for_each_output(&args.job, 0..u64::MAX, |stored| {
            if sample.picks(stored.id) {
                picked.push((stored.id, stored.decode::<Json>()?));
            }
            Ok(true)
        })
        .map_err(|e| lib_failure(e, format!("cannot read job {:?}", args.job)))?;

    // Their input records, through the workers: every record is submitted before any
    // answer is awaited, so the pool keeps all its workers busy.
    let mut report = AuditReport::default();
    let mut source = input.source();
    let mut waiting: Vec<Pending<Receiver<Answer>>> = Vec::new();
    let mut sequential: Vec<Pending<Arc<[u8]>>> = Vec::new();
    for (id, stored) in picked {
        let line = read_record(&mut source, id)
            .and_then(|record| protocol::encode(args.protocol, id, &record));
        match (pool, line) {
            (Some(pool), Ok(line)) => waiting.push((id, stored, Ok(pool.submit(id, line)))),
            (Some(_), Err(why)) => waiting.push((id, stored, Err(why))),
            (None, line) => sequential.push((id, stored, line)),
        }
    }
    for (id, stored, rx) in waiting {
        let answer = rx.and_then(|rx| {
            rx.recv()
                .unwrap_or_else(|_| {
                    Err(ProcessError::transient(
                        "the worker pool closed before answering",
                    ))
                })
                .map_err(|e| e.message())
        });
        tally(&mut report, id, &stored, answer);
    }
    for (id, stored, line) in sequential {
        let answer = line.and_then(|line| {
            per_record::run_one(
                &args.command,
                args.protocol,
                args.timeout,
                args.max_line_bytes,
                id,
                &line,
            )
            .map_err(|e| e.message())
        });
        tally(&mut report, id, &stored, answer);
    }
    Ok(Audited {
        store: store_path,
        sample,
        report,
    })
}

/// Record `id` of the input (seeking to it: the ids come in ascending order).
fn read_record(
    source: &mut resumable::FileSource,
    id: u64,
) -> Result<resumable::InputRecord, String> {
    source
        .seek(id)
        .map_err(|e| format!("cannot seek the input to record {id}: {e}"))?;
    match source.next_record() {
        Some(Ok((at, record))) if at == id => Ok(record),
        Some(Ok((at, _))) => Err(format!("the input has record {at} where {id} should be")),
        Some(Err(e)) => Err(format!("cannot read record {id} of the input: {e}")),
        None => Err(format!("the input ends before record {id}")),
    }
}

fn tally(report: &mut AuditReport, id: u64, stored: &Json, answer: Result<Json, String>) {
    match answer {
        Ok(now) if now.as_str() == stored.as_str() => report.add_match(),
        Ok(now) => report.add_difference(id, stored.as_str().to_owned(), now.into_string()),
        Err(why) => report.add_failure(id, why),
    }
}

/// Writes a line for each record of the report's first differences (stored output, then the
/// new one) and first failures (the error): the text form's detail under its headline.
pub(crate) fn write_findings(out: &mut Out, report: &AuditReport) -> std::io::Result<()> {
    for d in &report.first_differences {
        writeln!(
            out,
            "  record {}: stored {} but now {}",
            d.id, d.stored, d.recomputed
        )?;
    }
    for (id, error) in &report.first_failures {
        writeln!(out, "  record {id}: failed: {error}")?;
    }
    Ok(())
}

/// Prints the audit (text or `--json`); exit 0 when every record re-run gave its stored
/// output, 1 otherwise.
pub(super) fn print(args: &Args, json: bool, audited: &Audited) -> anyhow::Result<u8> {
    let r = &audited.report;
    let code = if r.is_deterministic() {
        0
    } else {
        EXIT_PROBLEM
    };
    let mut out = Out::new();
    let (share, seed) = match &audited.sample {
        AuditSample::Share { share, seed } => (Some(*share), Some(*seed)),
        _ => (None, None),
    };
    if json {
        out.json(&json!({
            "store": audited.store.display().to_string(),
            "job": args.job,
            "share": share,
            "seed": seed,
            "checked": r.checked,
            "matched": r.matched,
            "differed": r.differed,
            "failed": r.failed,
            "deterministic": r.is_deterministic(),
            "first_differences": r.first_differences,
            "first_failures": r.first_failures.iter()
                .map(|(id, error)| json!({"id": id, "error": error}))
                .collect::<Vec<_>>(),
        }))?;
        out.finish()?;
        return Ok(code);
    }
    writeln!(
        out,
        "audit of job {} in {}: {} records re-run: {} matched, {} differed, {} failed; nothing was changed",
        args.job,
        audited.store.display(),
        count(r.checked),
        count(r.matched),
        count(r.differed),
        count(r.failed)
    )?;
    write_findings(&mut out, r)?;
    if r.checked == 0 {
        output::note("no done record was picked: raise the share (or run the job first)");
    } else if !r.is_deterministic() {
        output::note(
            "the command is not deterministic on these records: outputs stored by earlier runs may not be what it gives now; fix it, then `resumable redo` the affected records",
        );
    }
    out.finish()?;
    Ok(code)
}
