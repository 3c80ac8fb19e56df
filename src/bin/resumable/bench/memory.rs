//! Peak memory of the runner against records done: a run of N tiny records with 1% of the
//! ids dead-lettered and 1% missing from the source, each in a child process (this binary
//! again, `bench --memory-probe N`) so that no other variant's allocations count in its
//! peak resident set.
//!
//! Dead letters count as done, so on their own they leave the done ranges contiguous; the
//! ids the source skips (as a filtered input would) are never done and split the done set
//! into about one range per skipped id: fragmented progress. What the runner keeps in memory
//! per record done should be nothing beyond those ranges; `bytes_per_range` is the peak of
//! the largest fragmented row over that of the control row (below), per extra range.
//! The store's redb page cache is set small (8 MiB) so that it does not hide that figure.
//! A third row runs the largest size again with no ids skipped (one done range): the
//! control: the same records done in one range.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use resumable::{Discard, IterSource, JobOptions, ProcessError, Runner, StoreOptions};
use serde::{Deserialize, Serialize};

/// redb's page cache of the probe's store. A default store's cache (256 MiB) fills with the
/// pages the run writes, so its resident set grows with the file up to that bound; a small
/// cache leaves what the runner itself keeps.
const PROBE_CACHE_BYTES: usize = 8 << 20;

/// One child's run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct MemoryRow {
    /// Records done at the end (outputs and dead letters).
    pub(super) records: u64,
    pub(super) dead_letters: u64,
    /// Ids the source skipped (never done): the holes in the done set.
    pub(super) skipped_ids: u64,
    /// Peak resident set of the child process (`VmHWM`), bytes.
    pub(super) peak_rss_bytes: u64,
    /// Resident set of the child before the store was opened, bytes.
    pub(super) start_rss_bytes: u64,
    /// Ranges in the job's done set at the end.
    pub(super) done_ranges: usize,
    /// redb's page cache of the store, bytes.
    pub(super) cache_bytes: usize,
    /// Records per second of the run (tiny outputs: the commit path's per-record cost).
    pub(super) records_per_s: f64,
}

/// The `memory` object of `resumable bench --json`.
#[derive(Clone, Debug, Serialize)]
pub(super) struct MemoryStudy {
    pub(super) rows: Vec<MemoryRow>,
    /// (peak of the largest fragmented row - peak of the same size in one range) / (their
    /// difference in done ranges).
    pub(super) bytes_per_range: Option<f64>,
}

/// Record counts of the rows: 10^5 and 10^7, or 10^5 and 10^6 with `--quick`.
pub(super) fn sizes(quick: bool) -> [u64; 2] {
    if quick {
        [100_000, 1_000_000]
    } else {
        [100_000, 10_000_000]
    }
}

/// The rows: (records, ids skipped) for each size with 1% skipped, then the largest size
/// again with none skipped (the same records done in one range: the control).
fn row_plan(quick: bool) -> [(u64, bool); 3] {
    let [small, large] = sizes(quick);
    [(small, true), (large, true), (large, false)]
}

/// Runs one child per size, in `dir`.
pub(super) fn memory_study(dir: &Path, quick: bool) -> Result<MemoryStudy> {
    let exe = std::env::current_exe().context("cannot find this binary to run the memory probe")?;
    let mut rows = Vec::new();
    for (records, skip) in row_plan(quick) {
        let mut command = Command::new(&exe);
        command
            .arg("bench")
            .arg("--memory-probe")
            .arg(records.to_string())
            .arg("--dir")
            .arg(dir);
        if !skip {
            command.arg("--memory-contiguous");
        }
        let output = command.output().context("cannot run the memory probe")?;
        if !output.status.success() {
            bail!(
                "the memory probe of {records} records failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let row: MemoryRow =
            serde_json::from_slice(&output.stdout).context("the memory probe printed no row")?;
        eprintln!(
            "memory: {} records done ({} dead letters, {} ranges): peak RSS {:.1} MiB ({:.1} MiB at start), {:.0} records/s",
            row.records,
            row.dead_letters,
            row.done_ranges,
            row.peak_rss_bytes as f64 / f64::from(1 << 20),
            row.start_rss_bytes as f64 / f64::from(1 << 20),
            row.records_per_s
        );
        rows.push(row);
    }
    // The largest size fragmented against the same size in one range: the same records
    // done, the same store and cache, only the range count differs.
    let fragmented = rows.iter().rfind(|r| r.skipped_ids > 0);
    let control = rows.iter().find(|r| r.skipped_ids == 0);
    let bytes_per_range = match (fragmented, control) {
        (Some(f), Some(c)) if f.records == c.records && f.done_ranges > c.done_ranges => Some(
            (f.peak_rss_bytes as f64 - c.peak_rss_bytes as f64)
                / (f.done_ranges - c.done_ranges) as f64,
        ),
        _ => None,
    };
    Ok(MemoryStudy {
        rows,
        bytes_per_range,
    })
}

/// Whether `id` is one of the 1% the processor dead-letters (scattered: a multiplicative
/// hash, so neither they nor the skipped ids fall in runs).
fn dead(id: u64) -> bool {
    id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32 & 0xffff < 655
}

/// Whether `id` is one of the 1% the source skips.
fn skipped(id: u64) -> bool {
    id.wrapping_mul(0xc2b2_ae3d_27d4_eb4f) >> 32 & 0xffff < 655
}

/// The child's side: runs the runner over `records` ids (plus the 1% it skips, with `skip`)
/// with u64 outputs and prints one [`MemoryRow`] as JSON.
pub(super) fn probe(dir: &Path, records: u64, skip: bool) -> Result<()> {
    let start_rss_bytes = status_bytes("VmRSS:").unwrap_or(0);
    let path = dir.join(format!("memory-{}", std::process::id()));
    let store = StoreOptions::new()
        .cache_bytes(PROBE_CACHE_BYTES)
        .open(&path)?;
    let job = store.job::<Discard<u64>>("memory", JobOptions::new())?;
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let dead_letters = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&dead_letters);
    // The source yields `records` ids that are not skipped, in ascending order.
    let mut next = 0u64;
    let mut left = records;
    let ids = std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        while skip && skipped(next) {
            next += 1;
        }
        left -= 1;
        next += 1;
        Some(next - 1)
    });
    let started = std::time::Instant::now();
    let report = Runner::new(job)
        .workers(workers)
        .on_durable(move |ack| {
            counter.fetch_add(ack.dead_letters.len() as u64, Ordering::Relaxed);
        })
        .run(
            IterSource::new(ids.map(|id| (id, id))),
            |_: resumable::RecordContext, &id: &u64| {
                if dead(id) {
                    Err(ProcessError::permanent("a scattered dead letter"))
                } else {
                    Ok(id)
                }
            },
        )?;
    let elapsed = started.elapsed();
    let done_ranges = report.job.progress().range_count();
    let last = report.job.progress().ranges().last().map_or(0, |r| r.end);
    let row = MemoryRow {
        records: report.job.done_count(),
        dead_letters: dead_letters.load(Ordering::Relaxed),
        skipped_ids: if skip {
            (0..last).filter(|&id| skipped(id)).count() as u64
        } else {
            0
        },
        peak_rss_bytes: status_bytes("VmHWM:").unwrap_or(0),
        start_rss_bytes,
        done_ranges,
        cache_bytes: PROBE_CACHE_BYTES,
        records_per_s: records as f64 / elapsed.as_secs_f64().max(1e-9),
    };
    drop(report);
    drop(store);
    let _ = std::fs::remove_file(&path);
    println!("{}", serde_json::to_string(&row)?);
    Ok(())
}

/// A `kB` field of `/proc/self/status` (Linux), in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::{dead, skipped};

    #[test]
    fn dead_letters_and_skipped_ids_are_each_about_one_percent_and_scattered() {
        let n = 1_000_000u64;
        let dead_ids: Vec<u64> = (0..n).filter(|&id| dead(id)).collect();
        let skipped_ids = (0..n).filter(|&id| skipped(id)).count();
        for count in [dead_ids.len(), skipped_ids] {
            assert!((9_000..11_000).contains(&count), "{count} of {n}");
        }
        // Scattered: no run of consecutive dead ids longer than a few.
        let longest = dead_ids
            .windows(2)
            .fold((1, 1), |(run, best), w| {
                let run = if w[1] == w[0] + 1 { run + 1 } else { 1 };
                (run, best.max(run))
            })
            .1;
        assert!(longest <= 3, "a run of {longest} dead ids");
    }
}
