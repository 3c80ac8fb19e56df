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

mod hash;
mod stored;

pub use hash::{ChainHash, LineageHead, ParseHashError};
#[cfg(feature = "testing")]
pub(crate) use stored::decode_payload;
pub(crate) use stored::{decode_entry, seal_entry};

/// What a redo removed: recorded in the lineage entry that made it (FORMAT.md, format 3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RedoRecord {
    /// The operator's selection, as given (`--range 100..200`, `--code-version v1`, ...).
    pub selection: String,
    /// Half-open id ranges whose outputs were removed.
    pub outputs: Vec<(u64, u64)>,
    /// Ids whose dead letters were removed.
    pub dead_letters: Vec<u64>,
}

impl RedoRecord {
    /// Number of outputs removed.
    #[must_use]
    pub fn output_count(&self) -> u64 {
        range_count(&self.outputs)
    }

    /// Ids whose outputs were removed, ascending.
    pub fn output_ids(&self) -> impl Iterator<Item = u64> + '_ {
        range_ids(&self.outputs)
    }
}

/// One commit's lineage entry, in memory (FORMAT.md, "Lineage entry"): format-2 entries
/// (FNV-64 chain, no code version) and format-3 entries (BLAKE3 chain, code version, redo)
/// read into the same type; `hash` says which it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EntryRecord {
    pub seq: u64,
    pub time_ms: u64,
    pub outputs: Vec<(u64, u64)>,
    pub dead_letters: Vec<u64>,
    pub outputs_hash: ChainHash,
    pub prev_hash: ChainHash,
    pub hash: ChainHash,
    /// The code version that made the commit (`None`: a format-2 entry).
    pub code_version: Option<String>,
    /// Set on a redo entry (which stores no outputs).
    pub redo: Option<RedoRecord>,
}

impl EntryRecord {
    /// Builds a format-2 entry (FNV-64), as format-2 stores hold them; the commit path
    /// writes format 3 ([`EntryRecord::new_v3`]).
    #[cfg(any(test, feature = "testing"))]
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
            outputs_hash: ChainHash::Fnv64(outputs_hash),
            prev_hash: ChainHash::Fnv64(prev_hash),
            hash: ChainHash::Fnv64(0),
            code_version: None,
            redo: None,
        };
        entry.hash = entry.compute_hash();
        entry
    }

    /// Builds a format-3 entry for a commit (or a redo), computing its BLAKE3 hash.
    #[allow(clippy::too_many_arguments)] // one argument per stored field
    pub(crate) fn new_v3(
        seq: u64,
        time_ms: u64,
        outputs: Vec<(u64, u64)>,
        dead_letters: Vec<u64>,
        outputs_hash: ChainHash,
        prev_hash: ChainHash,
        code_version: String,
        redo: Option<RedoRecord>,
    ) -> Self {
        let mut entry = EntryRecord {
            seq,
            time_ms,
            outputs,
            dead_letters,
            outputs_hash,
            prev_hash,
            hash: ChainHash::ZERO,
            code_version: Some(code_version),
            redo,
        };
        entry.hash = entry.compute_hash();
        entry
    }

    /// This entry with `outputs_hash` set and its hash computed again.
    pub(crate) fn with_outputs_hash(&self, outputs_hash: ChainHash) -> Self {
        let mut entry = self.clone();
        entry.outputs_hash = outputs_hash;
        entry.hash = entry.compute_hash();
        entry
    }

    /// Whether this is a format-3 entry (BLAKE3 chain).
    pub(crate) fn is_v3(&self) -> bool {
        self.code_version.is_some()
    }

    /// The hash this entry should carry, from its other fields: FNV-64 for a format-2
    /// entry, BLAKE3 for a format-3 one.
    pub(crate) fn compute_hash(&self) -> ChainHash {
        if self.is_v3() {
            return stored::v3_hash(self);
        }
        let mut ids = Vec::with_capacity(16 * self.outputs.len() + 8 * self.dead_letters.len());
        for (s, e) in &self.outputs {
            ids.extend_from_slice(&s.to_le_bytes());
            ids.extend_from_slice(&e.to_le_bytes());
        }
        ids.push(0xff);
        for d in &self.dead_letters {
            ids.extend_from_slice(&d.to_le_bytes());
        }
        ChainHash::Fnv64(fnv64(&[
            &self.prev_hash.fnv64_or_zero().to_le_bytes(),
            &self.seq.to_le_bytes(),
            &self.time_ms.to_le_bytes(),
            &self.outputs_hash.fnv64_or_zero().to_le_bytes(),
            &ids,
        ]))
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
    /// Hash of the commit's outputs in id order: BLAKE3 over the stored records
    /// `[crc32][length][payload]...` (format 3), or FNV-64 over `(id, crc32)` pairs
    /// (format-2 entries).
    pub outputs_hash: ChainHash,
    /// `hash` of the previous entry (zero for the first entry).
    pub prev_hash: ChainHash,
    /// Hash of this entry's other fields; the next entry's `prev_hash`.
    pub hash: ChainHash,
    /// The code version that made the commit (`None` for entries written by format 2).
    pub code_version: Option<String>,
    /// What a redo removed, for a redo entry (which stores no outputs).
    pub redo: Option<RedoRecord>,
}

impl LineageEntry {
    /// Number of outputs this commit stored.
    #[must_use]
    pub fn output_count(&self) -> u64 {
        range_count(&self.outputs)
    }

    /// The output ids in fold order.
    pub fn output_ids(&self) -> impl Iterator<Item = u64> + '_ {
        range_ids(&self.outputs)
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
            code_version: r.code_version,
            redo: r.redo,
        }
    }
}

/// Incrementally hashes a commit's outputs, in id order: BLAKE3 over the stored records
/// (format 3: the same as hashing the segment's record area in one call, which is what the
/// commit path does), or FNV-64 over `(id, crc32)` (format-2 entries, for checking them).
#[derive(Debug)]
pub(crate) enum OutputsHasher {
    Fnv(u64),
    Blake3(Box<blake3::Hasher>),
}

impl OutputsHasher {
    /// The format-3 hasher, for new commits.
    pub(crate) fn new() -> Self {
        OutputsHasher::Blake3(Box::new(blake3::Hasher::new()))
    }

    /// The hasher that checks an entry carrying `outputs_hash`.
    pub(crate) fn like(outputs_hash: &ChainHash) -> Self {
        match outputs_hash {
            ChainHash::Fnv64(_) => OutputsHasher::Fnv(0xcbf2_9ce4_8422_2325),
            ChainHash::Blake3(_) => Self::new(),
        }
    }

    /// Adds one output: its id and its stored record (`[crc32][length][payload]`), whose
    /// CRC is `crc`. Format 3 hashes the record bytes only: the entry's ranges bind each
    /// record's position to its id, and the entry hash covers the ranges.
    pub(crate) fn add(&mut self, id: u64, crc: u32, record: &[u8]) {
        match self {
            OutputsHasher::Fnv(h) => {
                let mut buf = [0u8; 12];
                buf[..8].copy_from_slice(&id.to_le_bytes());
                buf[8..].copy_from_slice(&crc.to_le_bytes());
                for b in buf {
                    *h ^= u64::from(b);
                    *h = h.wrapping_mul(0x0100_0000_01b3);
                }
            }
            OutputsHasher::Blake3(h) => {
                h.update(record);
            }
        }
    }

    pub(crate) fn finish(&self) -> ChainHash {
        match self {
            OutputsHasher::Fnv(h) => ChainHash::Fnv64(*h),
            OutputsHasher::Blake3(h) => ChainHash::Blake3(*h.finalize().as_bytes()),
        }
    }
}

/// Current wall-clock time in milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Ids in half-open `(start, end)` ranges.
fn range_count(ranges: &[(u64, u64)]) -> u64 {
    ranges.iter().map(|(s, e)| e - s).sum()
}

/// The ids of half-open `(start, end)` ranges, in order.
fn range_ids(ranges: &[(u64, u64)]) -> impl Iterator<Item = u64> + '_ {
    ranges.iter().flat_map(|&(s, e)| s..e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_changes_with_any_field() {
        let base = EntryRecord::new(3, 10, vec![(0, 5)], vec![9], 42, 7);
        assert!(!base.is_v3());
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
        for legacy in [false, true] {
            let make = || {
                if legacy {
                    OutputsHasher::like(&ChainHash::Fnv64(0))
                } else {
                    OutputsHasher::new()
                }
            };
            let mut a = make();
            a.add(1, 10, b"x");
            a.add(2, 20, b"y");
            let mut b = make();
            b.add(2, 20, b"y");
            b.add(1, 10, b"x");
            let mut c = make();
            c.add(1, 10, b"x");
            c.add(2, 21, b"z");
            assert_ne!(a.finish(), b.finish());
            assert_ne!(a.finish(), c.finish());
        }
    }

    #[test]
    fn v3_hash_changes_with_any_field() {
        let h = |b: u8| ChainHash::Blake3([b; 32]);
        let make = |seq, code: &str, redo: Option<RedoRecord>, prev| {
            EntryRecord::new_v3(
                seq,
                10,
                vec![(0, 5)],
                vec![9],
                h(1),
                prev,
                code.into(),
                redo,
            )
        };
        let base = make(3, "v1", None, h(2));
        assert!(base.is_v3());
        assert_eq!(base.hash, base.compute_hash());
        let redo = RedoRecord {
            selection: "x".into(),
            outputs: vec![(0, 1)],
            dead_letters: vec![],
        };
        for v in [
            make(4, "v1", None, h(2)),
            make(3, "v2", None, h(2)),
            make(3, "v1", Some(redo), h(2)),
            make(3, "v1", None, h(3)),
            make(3, "v1", None, ChainHash::Fnv64(7)),
        ] {
            assert_ne!(v.hash, base.hash, "{v:?}");
        }
        let sealed = seal_entry(&base).expect("seals");
        assert_eq!(decode_entry("e", &sealed).expect("decodes"), base);
        let old = EntryRecord::new(3, 10, vec![(0, 5)], vec![9], 42, 7);
        let sealed = seal_entry(&old).expect("seals");
        assert_eq!(sealed[0], 1, "format-2 entries keep envelope version 1");
        assert_eq!(decode_entry("e", &sealed).expect("decodes"), old);
    }
}
