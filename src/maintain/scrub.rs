//! The background scrub: while a run goes on, the maintainer re-reads the job's committed
//! values at a bounded rate and checks each against its checksum (docs/SCRUB.md).
//!
//! Why: an open that finds the file unchanged since its last clean close skips redb's page
//! walk (`FullCheck::WhenChanged`), and media damage below the file system changes no
//! fingerprint. The scrub finds such damage while the job runs instead of at the next
//! periodic full check.
//!
//! How: the store's [`Scrubber`] checks a batch of values in one short read transaction
//! (never the writer); the maintainer thread runs a batch when it is due and otherwise waits
//! on its work channel, so a snapshot hand-off or a stop wakes it at once. After a batch of
//! `b` bytes the next one is due `b / rate` later, so the bytes read by any time `t` stay
//! under `rate * t` plus one batch. Damage is logged (`tracing::error!`, one event per
//! damaged value, the first time a pass finds it; later passes that find it again say so
//! once per pass), counted in `Stats::scrub_damaged` (each value once), and makes the next
//! open of the file run the full check; the job is not stopped, as its progress never reads
//! old values.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::{MaintainOptions, Shared};
use crate::store::{Pass, Scrubber};

/// How long after the maintainer starts the first pass begins (or `scrub_every`, if
/// shorter): soon for a job that runs for minutes or hours, while a short run, which reads
/// back little, and the warm-up of any run pay nothing.
pub(crate) const FIRST_PASS_AFTER: Duration = Duration::from_secs(10);

/// How long to wait before trying again when no read transaction could be begun.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Bytes one read transaction reads: a tenth of a second at the rate, within these bounds,
/// so the transaction is short and the maintainer answers a hand-off soon.
const MIN_BATCH: u64 = 64 << 10;
const MAX_BATCH: u64 = 4 << 20;

/// Most damaged values remembered as reported. Past it, damage is logged and counted each
/// time it is found (the memory stays bounded on a store that is damaged everywhere).
const MAX_REMEMBERED: usize = 100_000;

/// The scrub's schedule and position, kept by the maintainer thread.
pub(crate) struct Scrub {
    scrubber: Scrubber,
    job: String,
    rate: u64,
    every: Duration,
    pass: Option<Pass>,
    /// When the next batch may run; `None`: never again (`scrub_every` too long to reckon).
    due: Option<Instant>,
    /// Damage found in the current pass.
    pass_damaged: u64,
    /// Of it, damage an earlier pass reported.
    pass_known: u64,
    /// The damaged values already reported (by what they are: `segment 25`).
    reported: HashSet<String>,
}

impl Scrub {
    /// The scrub of a run, or `None` when the options turn it off (a rate of 0).
    pub(crate) fn new(scrubber: Scrubber, job: &str, options: &MaintainOptions) -> Option<Self> {
        (options.scrub_rate > 0).then(|| Scrub {
            scrubber,
            job: job.to_owned(),
            rate: options.scrub_rate,
            every: options.scrub_every,
            pass: None,
            due: Some(Instant::now() + FIRST_PASS_AFTER.min(options.scrub_every)),
            pass_damaged: 0,
            pass_known: 0,
            reported: HashSet::new(),
        })
    }

    /// When the next batch is due (`None`: never).
    pub(crate) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Runs one batch (beginning a pass first when none is under way) and schedules the
    /// next one.
    pub(crate) fn step(&mut self, shared: &Shared) {
        let started = Instant::now();
        if self.pass.is_none() {
            self.pass_damaged = 0;
            self.pass_known = 0;
        }
        let pass = self.pass.take().map_or_else(|| self.scrubber.begin(), Ok);
        let mut pass = match pass {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(job = %self.job, error = %e, "the scrub cannot read the store; it will try again");
                self.due = Some(started + RETRY_AFTER);
                return;
            }
        };
        let budget = (self.rate / 10).clamp(MIN_BATCH, MAX_BATCH);
        let step = match self.scrubber.step(&mut pass, budget) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(job = %self.job, error = %e, "the scrub cannot read the store; it will try again");
                self.pass = Some(pass);
                self.due = Some(started + RETRY_AFTER);
                return;
            }
        };
        let mut new = 0u64;
        for d in &step.damage {
            if self.reported.contains(&d.what) {
                self.pass_known += 1;
                continue;
            }
            if self.reported.len() < MAX_REMEMBERED {
                self.reported.insert(d.what.clone());
            }
            new += 1;
            tracing::error!(
                job = %self.job,
                seq = d.seq,
                what = %d.what,
                error = %d.error,
                "the scrub found damage in {}: the job goes on (its progress does not read old values), and the next open of the store checks every page; run `resumable verify STORE` to list the damage, then follow docs/RUNBOOK.md (\"verify reports damage\": rewind to an older snapshot, or `resumable salvage` into a new store)",
                d.what
            );
        }
        if !step.damage.is_empty() {
            self.scrubber.distrust();
        }
        self.pass_damaged += step.damage.len() as u64;
        let done = pass.is_done();
        {
            let mut report = shared.report.lock();
            report.scrub_bytes += step.bytes;
            report.scrub_damaged += new;
            if done {
                report.scrub_passes += 1;
            }
        }
        let pace = Duration::from_secs_f64(step.bytes as f64 / self.rate as f64);
        if done {
            if self.pass_known > 0 {
                tracing::warn!(
                    job = %self.job,
                    damaged = self.pass_known,
                    "the scrub found {} damaged value(s) again that it reported before; see the earlier errors, or run `resumable verify STORE`",
                    self.pass_known
                );
            }
            tracing::info!(job = %self.job, damaged = self.pass_damaged, "scrub pass done");
            self.due = Instant::now()
                .checked_add(self.every)
                .map(|next| next.max(started + pace));
        } else {
            self.pass = Some(pass);
            self.due = Some(started + pace);
        }
    }
}
