//! The job's hasher thread: BLAKE3 over a large commit's record area, off the writer's
//! critical path.
//!
//! A format-3 lineage entry carries `outputs_hash`, BLAKE3 over the commit's stored records
//! (FORMAT.md). At about 0.2 µs per KiB with SIMD that is a tenth of what the writer
//! thread otherwise spends per 1 KiB record, so for a large group the writer hands the
//! built segment to this thread and goes on with the transaction (the other tables, then
//! reserving the segment's value and copying it in); it joins the hash only to write the
//! entry into the reserved value, just before the commit. Nothing about the stored bytes
//! changes: the same bytes are hashed by the same function, only on another thread.
//!
//! Small groups are hashed inline (see [`HAND_OFF_BYTES`]): waking a thread and waiting
//! for it costs more than their hash. So is everything on a machine with fewer than
//! [`HAND_OFF_MIN_CORES`] cores: measured on 2 loaded cores (docs/REDO.md), the hand-off
//! cost 13% of the group throughput against hashing inline, because the hasher competes
//! with the writer and the workers for the same cores and each join waits on a wake-up.
//! The thread is started on the first large group and ends when the job's handle is
//! dropped (its request channel closes).

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::lineage::ChainHash;

/// Record areas at least this long (64 BLAKE3 chunks, about 12 µs of hashing) go to the
/// hasher thread; a hand-off (a wake-up on each side) costs a few µs.
pub(crate) const HAND_OFF_BYTES: usize = 64 << 10;

/// Fewer cores than this: always hash inline (see the module docs).
pub(crate) const HAND_OFF_MIN_CORES: usize = 4;

/// One request: the segment, where its record area starts, and the commit it belongs to.
type Request = (u64, Arc<Vec<u8>>, usize);

/// The lanes to the hasher thread, once started.
#[derive(Debug)]
struct Lane {
    requests: Sender<Request>,
    hashes: Receiver<(u64, ChainHash)>,
}

/// A job's hasher: see the module docs.
#[derive(Debug)]
pub(crate) struct Hasher {
    lane: Option<Lane>,
    /// Too few cores, or the thread could not be started: hash inline.
    unavailable: bool,
}

impl Default for Hasher {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Hasher {
            lane: None,
            unavailable: cores < HAND_OFF_MIN_CORES,
        }
    }
}

/// A commit's outputs hash: being computed on the hasher thread, or to compute inline.
#[derive(Debug)]
pub(crate) enum OutputsHash {
    /// Handed off for commit `seq`.
    HandedOff(u64),
    /// Hash inline when asked.
    Inline,
}

/// BLAKE3 over a record area, as the lineage entry stores it.
pub(crate) fn outputs_hash(area: &[u8]) -> ChainHash {
    ChainHash::Blake3(*blake3::hash(area).as_bytes())
}

impl Hasher {
    /// Starts hashing `segment[area..]` for commit `seq` on the hasher thread when the
    /// area is large enough for that to pay; otherwise says to hash inline.
    pub(crate) fn start(&mut self, seq: u64, segment: &Arc<Vec<u8>>, area: usize) -> OutputsHash {
        #[cfg(test)]
        match tests::probe_mode() {
            tests::PROBE_HAND_OFF => self.unavailable = false,
            tests::PROBE_NORMAL => {}
            _ => return OutputsHash::Inline,
        }
        if segment.len().saturating_sub(area) < HAND_OFF_BYTES || self.unavailable {
            return OutputsHash::Inline;
        }
        if self.lane.is_none() {
            self.lane = spawn();
            self.unavailable = self.lane.is_none();
        }
        match &self.lane {
            Some(lane) if lane.requests.send((seq, Arc::clone(segment), area)).is_ok() => {
                OutputsHash::HandedOff(seq)
            }
            _ => {
                self.lane = None;
                self.unavailable = true;
                OutputsHash::Inline
            }
        }
    }

    /// The outputs hash of `segment[area..]`: joined from the thread when it was handed
    /// off (hashed inline if the thread went away), else hashed now.
    pub(crate) fn finish(&self, how: &OutputsHash, segment: &[u8], area: usize) -> ChainHash {
        #[cfg(test)]
        if tests::probe_mode() == tests::PROBE_NO_HASH {
            return ChainHash::Blake3([0; 32]);
        }
        if let (OutputsHash::HandedOff(seq), Some(lane)) = (how, &self.lane) {
            // A hash left over from a commit whose write failed has an older seq: skip it.
            while let Ok((done, hash)) = lane.hashes.recv() {
                if done == *seq {
                    return hash;
                }
            }
        }
        outputs_hash(segment.get(area..).unwrap_or_default())
    }
}

fn spawn() -> Option<Lane> {
    let (requests, inbox) = crossbeam_channel::unbounded::<Request>();
    let (outbox, hashes) = crossbeam_channel::unbounded();
    let started = std::thread::Builder::new()
        .name("resumable-hash".into())
        .spawn(move || {
            for (seq, segment, area) in inbox {
                let hash = outputs_hash(segment.get(area..).unwrap_or_default());
                drop(segment);
                if outbox.send((seq, hash)).is_err() {
                    break;
                }
            }
        });
    match started {
        Ok(_) => Some(Lane { requests, hashes }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the hasher thread; hashing commits inline");
            None
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicU8, Ordering};

    use super::*;
    use crate::{Discard, JobOptions, Store};

    pub(crate) const PROBE_NORMAL: u8 = 0;
    const PROBE_INLINE: u8 = 1;
    pub(crate) const PROBE_NO_HASH: u8 = 2;
    /// Hand off whatever the machine's cores.
    pub(crate) const PROBE_HAND_OFF: u8 = 3;
    /// The probe's switch (only the ignored probe below sets it).
    static PROBE: AtomicU8 = AtomicU8::new(PROBE_NORMAL);

    pub(crate) fn probe_mode() -> u8 {
        PROBE.load(Ordering::Relaxed)
    }

    /// This thread's CPU time in ns (Linux).
    fn thread_cpu_ns() -> u64 {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0)
    }

    /// The cost of the outputs hash on the writer thread, in situ: 1 KiB outputs through
    /// `Job::submit` at the default commit policy, with the hash handed off (as shipped),
    /// inline on the writer thread, and (probe only, breaks the chain) not computed;
    /// rounds alternate. Run alone:
    /// `cargo test --release --lib -- --ignored --nocapture hash_cost_probe`.
    #[test]
    #[ignore = "a measurement, not a test; run it alone"]
    fn hash_cost_probe() {
        const RECORDS: u64 = 30_000;
        let rounds: usize = std::env::var("PROBE_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(5);
        let payload = vec![7u8; 1024];
        let modes = [
            (PROBE_HAND_OFF, "hand-off"),
            (PROBE_INLINE, "inline"),
            (PROBE_NO_HASH, "no hash"),
        ];
        let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
        let mut rate: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
        for round in 0..rounds {
            for (m, &(mode, _)) in modes.iter().enumerate() {
                PROBE.store(mode, Ordering::Relaxed);
                let dir = tempfile::tempdir().expect("tempdir");
                let store = Store::open(dir.path().join("p.redb")).expect("store");
                let mut job = store
                    .job::<Discard<Vec<u8>>>("p", JobOptions::new())
                    .expect("job");
                let (c0, t0) = (thread_cpu_ns(), std::time::Instant::now());
                for id in 0..RECORDS {
                    job.submit(id, payload.clone()).expect("submit");
                }
                job.flush().expect("flush");
                let secs = t0.elapsed().as_secs_f64();
                cpu[m].push((thread_cpu_ns() - c0) as f64 / 1000.0 / RECORDS as f64);
                rate[m].push(RECORDS as f64 / secs);
                println!(
                    "round {round} {:>8}: {:.3} us CPU/record, {:.0} records/s",
                    modes[m].1,
                    cpu[m].last().copied().unwrap_or(0.0),
                    rate[m].last().copied().unwrap_or(0.0)
                );
            }
        }
        PROBE.store(PROBE_NORMAL, Ordering::Relaxed);
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        for (m, &(_, name)) in modes.iter().enumerate() {
            println!(
                "median {name:>8}: {:.3} us CPU/record (writer thread), {:.0} records/s",
                median(&mut cpu[m]),
                median(&mut rate[m])
            );
        }
    }

    #[test]
    fn handed_off_and_inline_hashes_agree() {
        // As on a machine with cores to spare, whatever this one has.
        let mut hasher = Hasher {
            lane: None,
            unavailable: false,
        };
        for (seq, len) in [
            (1u64, 100usize),
            (2, HAND_OFF_BYTES + 7),
            (3, 3 * HAND_OFF_BYTES),
        ] {
            let segment: Arc<Vec<u8>> = Arc::new((0..len + 10).map(|i| (i % 251) as u8).collect());
            let how = hasher.start(seq, &segment, 10);
            assert_eq!(
                matches!(how, OutputsHash::HandedOff(_)),
                len >= HAND_OFF_BYTES
            );
            assert_eq!(
                hasher.finish(&how, &segment, 10),
                outputs_hash(&segment[10..])
            );
        }
        // A hand-off never joined (its write failed) does not leak into the next one.
        let a: Arc<Vec<u8>> = Arc::new(vec![1; HAND_OFF_BYTES]);
        let b: Arc<Vec<u8>> = Arc::new(vec![2; HAND_OFF_BYTES]);
        let _lost = hasher.start(4, &a, 0);
        let how = hasher.start(5, &b, 0);
        assert_eq!(hasher.finish(&how, &b, 0), outputs_hash(&b));
    }
}
