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
//! for it costs more than their hash. The thread is started on the first large group and
//! ends when the job's handle is dropped (its request channel closes).

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::lineage::ChainHash;

/// Record areas at least this long (64 BLAKE3 chunks, about 12 µs of hashing) go to the
/// hasher thread; a hand-off (a wake-up on each side) costs a few µs.
pub(crate) const HAND_OFF_BYTES: usize = 64 << 10;

/// One request: the segment, where its record area starts, and the commit it belongs to.
type Request = (u64, Arc<Vec<u8>>, usize);

/// The lanes to the hasher thread, once started.
#[derive(Debug)]
struct Lane {
    requests: Sender<Request>,
    hashes: Receiver<(u64, ChainHash)>,
}

/// A job's hasher: see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Hasher {
    lane: Option<Lane>,
    /// The thread could not be started: hash inline from then on.
    unavailable: bool,
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
mod tests {
    use super::*;

    #[test]
    fn handed_off_and_inline_hashes_agree() {
        let mut hasher = Hasher::default();
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
