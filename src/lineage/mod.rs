//! Lineage: the hash-chained log of commits.
//!
//! Every commit appends one entry: its sequence number, the ids whose outputs it stored,
//! the ids it dead-lettered, a hash of its outputs and the hash of the previous entry.
//! `verify` recomputes the chain; an entry that was altered, dropped or reordered breaks it
//! at that entry.
//!
//! Two types: [`EntryRecord`] is the stored form (its serde field order is the file format,
//! see FORMAT.md), private to the crate; [`LineageEntry`] is the public, read-only view of
//! it, which can grow fields without changing the format.

use serde::{Deserialize, Serialize};

use crate::codec::fnv64;

/// One commit's lineage entry as stored (FORMAT.md, "Lineage entry").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EntryRecord {
    pub seq: u64,
    pub time_ms: u64,
    pub outputs: Vec<(u64, u64)>,
    pub dead_letters: Vec<u64>,
    pub outputs_hash: u64,
    pub prev_hash: u64,
    pub hash: u64,
}

impl EntryRecord {
    /// Builds the entry for a commit, computing its hash.
    pub(crate) fn new(
        seq: u64,
        time_ms: u64,
        outputs: Vec<(u64, u64)>,
        dead_letters: Vec<u64>,
        outputs_hash: u64,
        prev_hash: u64,
    ) -> Self {
        let mut entry = EntryRecord {
            seq,
            time_ms,
            outputs,
            dead_letters,
            outputs_hash,
            prev_hash,
            hash: 0,
        };
        entry.hash = entry.compute_hash();
        entry
    }

    /// The hash this entry should carry, from its other fields.
    pub(crate) fn compute_hash(&self) -> u64 {
        let mut ids = Vec::with_capacity(16 * self.outputs.len() + 8 * self.dead_letters.len());
        for (s, e) in &self.outputs {
            ids.extend_from_slice(&s.to_le_bytes());
            ids.extend_from_slice(&e.to_le_bytes());
        }
        ids.push(0xff);
        for d in &self.dead_letters {
            ids.extend_from_slice(&d.to_le_bytes());
        }
        fnv64(&[
            &self.prev_hash.to_le_bytes(),
            &self.seq.to_le_bytes(),
            &self.time_ms.to_le_bytes(),
            &self.outputs_hash.to_le_bytes(),
            &ids,
        ])
    }

    /// Number of outputs this commit stored.
    pub(crate) fn output_count(&self) -> u64 {
        self.outputs.iter().map(|(s, e)| e - s).sum()
    }

    /// The output ids in fold order.
    pub(crate) fn output_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.outputs.iter().flat_map(|&(s, e)| s..e)
    }

    /// Every id this commit made done: its outputs, then its dead letters.
    pub(crate) fn done_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.output_ids().chain(self.dead_letters.iter().copied())
    }
}

/// One commit's entry in a job's lineage, as [`Store::lineage`](crate::Store::lineage)
/// reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LineageEntry {
    /// Commit sequence number: 1 for a job's first commit, then +1 per commit.
    pub seq: u64,
    /// Wall-clock time of the commit, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Half-open id ranges whose outputs this commit stored; folded in ascending id order.
    pub outputs: Vec<(u64, u64)>,
    /// Ids this commit moved to the dead letters, ascending.
    pub dead_letters: Vec<u64>,
    /// Hash over `(id, output crc32)` of every output in the commit, in id order.
    pub outputs_hash: u64,
    /// `hash` of the previous entry (0 for the first entry).
    pub prev_hash: u64,
    /// Hash of this entry's other fields; the next entry's `prev_hash`.
    pub hash: u64,
}

impl LineageEntry {
    /// Number of outputs this commit stored.
    #[must_use]
    pub fn output_count(&self) -> u64 {
        self.outputs.iter().map(|(s, e)| e - s).sum()
    }

    /// The output ids in fold order.
    pub fn output_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.outputs.iter().flat_map(|&(s, e)| s..e)
    }

    /// Every id this commit made done: its outputs, then its dead letters.
    pub fn done_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.output_ids().chain(self.dead_letters.iter().copied())
    }
}

impl From<EntryRecord> for LineageEntry {
    fn from(r: EntryRecord) -> Self {
        LineageEntry {
            seq: r.seq,
            time_ms: r.time_ms,
            outputs: r.outputs,
            dead_letters: r.dead_letters,
            outputs_hash: r.outputs_hash,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

/// Incrementally hashes `(id, crc)` pairs of a commit's outputs, in id order.
#[derive(Debug)]
pub(crate) struct OutputsHasher(u64);

impl OutputsHasher {
    pub(crate) fn new() -> Self {
        OutputsHasher(0xcbf2_9ce4_8422_2325)
    }

    pub(crate) fn add(&mut self, id: u64, crc: u32) {
        let mut buf = [0u8; 12];
        buf[..8].copy_from_slice(&id.to_le_bytes());
        buf[8..].copy_from_slice(&crc.to_le_bytes());
        for b in buf {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

/// Current wall-clock time in milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_changes_with_any_field() {
        let base = EntryRecord::new(3, 10, vec![(0, 5)], vec![9], 42, 7);
        assert_eq!(base.hash, base.compute_hash());
        let variants = [
            EntryRecord::new(4, 10, vec![(0, 5)], vec![9], 42, 7),
            EntryRecord::new(3, 11, vec![(0, 5)], vec![9], 42, 7),
            EntryRecord::new(3, 10, vec![(0, 6)], vec![9], 42, 7),
            EntryRecord::new(3, 10, vec![(0, 5)], vec![8], 42, 7),
            EntryRecord::new(3, 10, vec![(0, 5)], vec![9], 43, 7),
            EntryRecord::new(3, 10, vec![(0, 5)], vec![9], 42, 8),
        ];
        for v in variants {
            assert_ne!(v.hash, base.hash, "{v:?}");
        }
    }

    #[test]
    fn outputs_hash_depends_on_order_and_crc() {
        let mut a = OutputsHasher::new();
        a.add(1, 10);
        a.add(2, 20);
        let mut b = OutputsHasher::new();
        b.add(2, 20);
        b.add(1, 10);
        let mut c = OutputsHasher::new();
        c.add(1, 10);
        c.add(2, 21);
        assert_ne!(a.finish(), b.finish());
        assert_ne!(a.finish(), c.finish());
    }
}
