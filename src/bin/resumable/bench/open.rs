//! The open study: how long opening a store and resuming its job take against the store's
//! size, for each open check (`FullCheck`): redb's walk of every page, the fingerprint match
//! of a file unchanged since its clean close (the default), and none. One store is built and
//! grown to each size in turn (1 KiB records in durable groups of 1,000, a snapshot, then a
//! short tail of commits after it, as a job that snapshots as it goes leaves it), closed
//! cleanly, and opened three times per check; the medians are reported. The page cache is
//! warm: the build has just written the file (dropping caches needs root and would disturb
//! the other processes on the machine), so the full check's figure is its CPU-bound floor.

use std::fs;
use std::time::Instant;

use anyhow::{Result, bail};
use resumable::{CommitPolicy, FullCheck, JobOptions, OpenCheck, Store, StoreOptions};

use super::Ctx;
use super::probes::{Tally, fill};
use super::stats::median;
use super::variants::BARE_GROUP;

/// Commits after the snapshot, which each resume replays.
const TAIL_COMMITS: u64 = 10;

/// Opens timed per store size and check.
const REPEATS: usize = 3;

/// One store size opened with one check.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct OpenRow {
    pub(super) store_bytes: u64,
    pub(super) records: u64,
    /// `full`, `fingerprint` or `none`: what the open actually checked
    /// (`Store::open_check`).
    pub(super) verify: &'static str,
    /// `Store` open, median.
    pub(super) open_ms: f64,
    /// The job's open (its resume: load progress, restore the snapshot, replay the tail),
    /// median.
    pub(super) resume_ms: f64,
    /// Both, median of the sums.
    pub(super) open_and_resume_ms: f64,
    pub(super) replayed_commits: u64,
    /// Seconds the build took to grow the store to this size.
    pub(super) build_secs: f64,
}

impl OpenRow {
    /// What a check label means, for the table.
    pub(super) fn describe(verify: &str) -> &'static str {
        match verify {
            "full" => "redb checks every page checksum (FullCheck::Always, verify_on_open(true))",
            "fingerprint" => {
                "file unchanged since its clean close: page walk skipped, CRCs on what resume reads (FullCheck::WhenChanged, the default)"
            }
            _ => "nothing but the CRCs on what resume reads (FullCheck::Never)",
        }
    }
}

/// The row's label: what the open checked, as `Store::open_check` reports it (`Never`
/// also reports an unchanged file, but checked nothing).
fn label(asked: FullCheck, ran: OpenCheck) -> &'static str {
    match (asked, ran) {
        (_, OpenCheck::Full) => "full",
        (FullCheck::Never, _) => "none",
        (_, OpenCheck::Unchanged { .. }) => "fingerprint",
        _ => "none",
    }
}

/// Builds one store through `sizes_mib` (ascending) and times its opens at each size.
pub(super) fn open_study(ctx: &Ctx, sizes_mib: &[u64]) -> Result<Vec<OpenRow>> {
    let path = ctx.dir.join("open.redb");
    let options = || JobOptions::new().commit_policy(CommitPolicy::new());
    let mut sizes = sizes_mib.to_vec();
    sizes.sort_unstable();
    let mut next_id = 0u64;
    let mut rows = Vec::new();
    for mib in sizes {
        // 1 KiB records, one per KiB of the target: redb grows the file ahead of its data
        // while writing and gives the slack back at close, so the length seen during the
        // build says little about the closed store's.
        let target = mib << 10;
        let build_start = Instant::now();
        {
            let store = Store::open(&path)?;
            let mut job = store.job::<Tally>("bench", options())?;
            fill(&mut job, &mut next_id, target, &ctx.payload)?;
            job.snapshot()?;
            // `TAIL_COMMITS` whole groups.
            let tail_end = next_id + TAIL_COMMITS * BARE_GROUP;
            fill(&mut job, &mut next_id, tail_end, &ctx.payload)?;
            // Stopped cleanly, as a runner stopped by its StopHandle leaves it.
            job.pause()?;
        }
        let build_secs = build_start.elapsed().as_secs_f64();
        let store_bytes = fs::metadata(&path)?.len();
        eprintln!(
            "open study: {:.2} GB store ({next_id} records) built in {build_secs:.1} s",
            store_bytes as f64 / 1e9
        );
        for check in [FullCheck::WhenChanged, FullCheck::Never, FullCheck::Always] {
            let mut open = Vec::new();
            let mut resume = Vec::new();
            let mut both = Vec::new();
            let mut seen = None;
            let mut replayed_commits = 0;
            for _ in 0..REPEATS {
                let start = Instant::now();
                let store = StoreOptions::new().full_check(check).open(&path)?;
                let opened = start.elapsed().as_secs_f64() * 1e3;
                let start = Instant::now();
                let mut job = store.job::<Tally>("bench", options())?;
                let resumed = start.elapsed().as_secs_f64() * 1e3;
                replayed_commits = job.stats().replayed_commits;
                job.pause()?;
                let verify = label(check, store.open_check());
                if seen.is_some_and(|s| s != verify) {
                    bail!("the open check changed between repeats ({seen:?}, then {verify})");
                }
                seen = Some(verify);
                open.push(opened);
                resume.push(resumed);
                both.push(opened + resumed);
            }
            let verify = seen.unwrap_or("none");
            eprintln!(
                "open study: {:.2} GB, {verify}: open {:.1} ms + resume {:.1} ms",
                store_bytes as f64 / 1e9,
                median(&mut open.clone()),
                median(&mut resume.clone())
            );
            rows.push(OpenRow {
                store_bytes,
                records: next_id,
                verify,
                open_ms: median(&mut open),
                resume_ms: median(&mut resume),
                open_and_resume_ms: median(&mut both),
                replayed_commits,
                build_secs,
            });
        }
    }
    let _ = fs::remove_file(&path);
    let _ = fs::remove_file(ctx.dir.join(".open.redb.checked"));
    Ok(rows)
}
