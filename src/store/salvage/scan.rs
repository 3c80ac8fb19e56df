//! Finding intact items in a store file's raw bytes, without redb.
//!
//! Two passes over the bytes, neither trusting any pointer in the file:
//!
//! - **Segments**, at every byte offset. A commit segment is self-delimiting and
//!   self-validating (see `store::segment`): `[entry length: u32]`, an envelope whose first
//!   byte is the version and whose CRC covers the lineage entry, then exactly as many
//!   `[crc32][length][payload]` records as the entry lists, each CRC covering id, commit
//!   seq and payload, and the entry's `outputs_hash` covering every record CRC, and its
//!   `hash` covering the entry. A segment is accepted only when all of it checks, so a
//!   false positive needs a CRC-32 and two 64-bit hashes to collide at once. Scanning every
//!   offset rather than parsing redb's pages keeps this pass independent of redb's layout:
//!   redb stores a value contiguously (a value larger than a page lives in one larger
//!   page of a power-of-two number of pages), so whatever page holds a segment, its bytes
//!   are in one piece.
//! - **Envelopes without a length** (job metadata, snapshots, dead letters), which only
//!   redb's leaf layout delimits: at every 4 KiB boundary whose first byte is redb's leaf
//!   type, the leaf header's offset arrays are read as redb 4 writes them
//!   (`[type=1][reserved][entries: u16][key ends: u32...][value ends: u32...][keys][values]`,
//!   key ends absent for fixed-width `u64` keys), each value's envelope CRC is checked and
//!   its key read beside it. A page whose header does not parse yields nothing.
//!
//! Nothing found here is trusted beyond its checks: which of the found items belong to the
//! current history is decided in `rebuild`.

use serde::de::DeserializeOwned;

use crate::codec::{self, ENVELOPE_VERSION, RECORD_HEADER};
use crate::lineage::{self, EntryRecord, OutputsHasher};
use crate::store::meta::JobMeta;
use crate::store::records::{DeadLetterRecord, SnapshotRecord};

/// redb's page size (the default, the OS page size on the platforms resumable runs on).
const PAGE: usize = 4096;
/// redb's leaf page type byte.
const LEAF: u8 = 1;
/// Smallest sealed lineage entry: the envelope header and seven one-byte varints.
const MIN_ENTRY: usize = 5 + 7;
/// Largest sealed lineage entry the scan looks for. An entry lists its commit's id ranges
/// and dead letters; 1 MiB holds some 50,000 disjoint ranges, far beyond any group. The bound
/// keeps a false length prefix from costing a CRC over the rest of the file.
const MAX_ENTRY: usize = 1 << 20;

/// An intact commit segment found in the bytes.
#[derive(Debug, Clone)]
pub(crate) struct FoundSegment {
    /// Offset of the segment's first byte in the scanned bytes.
    pub offset: usize,
    /// The segment's length in bytes (entry length prefix, entry envelope, records).
    pub len: usize,
    /// Its lineage entry, checked.
    pub entry: EntryRecord,
}

/// An intact dead-letter envelope found as a value in a `u64`-keyed leaf.
#[derive(Debug, Clone)]
pub(crate) struct FoundKeyed<T> {
    /// The row's key: the record id.
    pub key: u64,
    /// The sealed value, byte for byte.
    pub sealed: Vec<u8>,
    /// The decoded payload.
    pub value: T,
}

/// Everything intact the scan found, in file order, duplicates included (redb's
/// copy-on-write leaves old copies of pages behind).
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub segments: Vec<FoundSegment>,
    pub metas: Vec<JobMeta>,
    pub dead_letters: Vec<FoundKeyed<DeadLetterRecord>>,
    /// Snapshots, only counted (salvage writes none): `(generation, commit seq, envelope crc)`.
    pub snapshots: Vec<(u64, u64, u32)>,
}

/// Scans `bytes` (a whole store file, or any part of one) for intact items. Never fails and
/// never panics: damage only means less is found.
pub(crate) fn scan(bytes: &[u8]) -> Found {
    let mut found = Found::default();
    scan_segments(bytes, &mut found);
    scan_leaves(bytes, &mut found);
    found
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn scan_segments(bytes: &[u8], found: &mut Found) {
    let mut at = 0usize;
    // The cheap tests first: the envelope version byte, then a plausible entry length.
    while at + 4 + MIN_ENTRY <= bytes.len() {
        if matches!(bytes[at + 4], 1 | 2)
            && let Some(segment) = segment_at(bytes, at)
        {
            // Values never overlap, so the next segment starts after this one.
            at += segment.len;
            found.segments.push(segment);
        } else {
            at += 1;
        }
    }
}

/// The intact segment starting at `at`, if there is one.
pub(crate) fn segment_at(bytes: &[u8], at: usize) -> Option<FoundSegment> {
    let len = u32_at(bytes, at)? as usize;
    if !(MIN_ENTRY..=MAX_ENTRY).contains(&len) {
        return None;
    }
    let sealed = bytes.get(at + 4..(at + 4).checked_add(len)?)?;
    // Envelope version 1: a format-2 entry; 2: a format-3 entry.
    if !matches!(sealed[0], 1 | 2) || u32_at(sealed, 1)? != crc32fast::hash(&sealed[5..]) {
        return None;
    }
    let entry: EntryRecord = lineage::decode_entry("lineage entry", sealed).ok()?;
    if entry.seq == 0 || (entry.seq == 1) != entry.prev_hash.is_zero() {
        return None;
    }
    if entry.hash != entry.compute_hash() || !ranges_ascending(&entry.outputs) {
        return None;
    }
    let mut pos = at + 4 + len;
    // Each record takes at least its header: a count beyond the bytes left cannot be real,
    // and is refused before iterating over it.
    let count = entry.output_count();
    if count > ((bytes.len() - pos) / RECORD_HEADER) as u64 {
        return None;
    }
    let mut hasher = OutputsHasher::like(&entry.outputs_hash);
    for id in entry.output_ids() {
        let crc = u32_at(bytes, pos)?;
        let payload_len = u32_at(bytes, pos + 4)? as usize;
        let start = pos + RECORD_HEADER;
        let payload = bytes.get(start..start.checked_add(payload_len)?)?;
        if codec::record_crc(id, entry.seq, payload) != crc {
            return None;
        }
        hasher.add(id, crc, &bytes[pos..start + payload_len]);
        pos = start + payload_len;
    }
    if hasher.finish() != entry.outputs_hash {
        return None;
    }
    Some(FoundSegment {
        offset: at,
        len: pos - at,
        entry,
    })
}

/// Whether id ranges are non-empty and strictly ascending, as a commit writes them.
fn ranges_ascending(ranges: &[(u64, u64)]) -> bool {
    ranges.iter().all(|(s, e)| s < e) && ranges.windows(2).all(|w| w[0].1 <= w[1].0)
}

fn scan_leaves(bytes: &[u8], found: &mut Found) {
    let mut page = 0usize;
    while page < bytes.len() {
        if bytes[page] == LEAF {
            let leaf = &bytes[page..];
            u64_keyed_values(leaf, found);
            str_keyed_values(leaf, found);
        }
        page += PAGE;
    }
}

/// Checks an envelope whose extent is known; returns its decoded payload.
fn open_exact<T: DeserializeOwned>(sealed: &[u8]) -> Option<T> {
    if sealed.len() < 5 || sealed[0] != ENVELOPE_VERSION {
        return None;
    }
    if u32_at(sealed, 1)? != crc32fast::hash(&sealed[5..]) {
        return None;
    }
    codec::decode(&sealed[5..]).ok()
}

/// The value extents of a leaf with `entries` pairs: `value_ends` is where redb keeps the
/// value end offsets, `first` where the first value starts. `None` unless the ends ascend and
/// stay inside `leaf`.
fn value_extents(
    leaf: &[u8],
    entries: usize,
    value_ends: usize,
    first: usize,
) -> Option<Vec<(usize, usize)>> {
    let mut extents = Vec::with_capacity(entries);
    let mut start = first;
    for i in 0..entries {
        let end = u32_at(leaf, value_ends + 4 * i)? as usize;
        if end < start || end > leaf.len() {
            return None;
        }
        extents.push((start, end));
        start = end;
    }
    Some(extents)
}

/// A leaf of a `u64 -> &[u8]` table (snapshots, dead letters): no key ends, value ends at 4.
fn u64_keyed_values(leaf: &[u8], found: &mut Found) {
    let Some(entries) = u16_at(leaf, 2).map(usize::from) else {
        return;
    };
    if entries == 0 {
        return;
    }
    let keys = 4 + 4 * entries;
    let first = keys + 8 * entries;
    let Some(extents) = value_extents(leaf, entries, 4, first) else {
        return;
    };
    for (i, (start, end)) in extents.into_iter().enumerate() {
        let Some(key) = leaf
            .get(keys + 8 * i..keys + 8 * i + 8)
            .and_then(|k| k.try_into().ok())
            .map(u64::from_le_bytes)
        else {
            return;
        };
        let sealed = &leaf[start..end];
        if let Some(value) = open_exact::<DeadLetterRecord>(sealed) {
            found.dead_letters.push(FoundKeyed {
                key,
                sealed: sealed.to_vec(),
                value,
            });
        }
        if let Some(value) = open_exact::<SnapshotRecord>(sealed) {
            let crc = u32_at(sealed, 1).unwrap_or_default();
            found.snapshots.push((key, value.seq, crc));
        }
    }
}

/// A leaf of a `&str -> &[u8]` table (the jobs table): key ends at 4, value ends after them.
fn str_keyed_values(leaf: &[u8], found: &mut Found) {
    let Some(entries) = u16_at(leaf, 2).map(usize::from) else {
        return;
    };
    if entries == 0 {
        return;
    }
    let Some(key_extents) = value_extents(leaf, entries, 4, 4 + 8 * entries) else {
        return;
    };
    let Some(&(_, keys_end)) = key_extents.last() else {
        return;
    };
    let Some(extents) = value_extents(leaf, entries, 4 + 4 * entries, keys_end) else {
        return;
    };
    for ((ks, ke), (vs, ve)) in key_extents.into_iter().zip(extents) {
        let Ok(name) = std::str::from_utf8(&leaf[ks..ke]) else {
            continue;
        };
        if let Some(meta) = open_exact::<JobMeta>(&leaf[vs..ve])
            && meta.name == name
        {
            found.metas.push(meta);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::segment;

    fn sealed_segment(
        seq: u64,
        prev_hash: lineage::ChainHash,
        ids: &[u64],
    ) -> (EntryRecord, Vec<u8>) {
        let mut records = Vec::new();
        let mut hasher = OutputsHasher::new();
        for &id in ids {
            let mut framed = codec::encode_output(&format!("out {id}"), 0).expect("encodes");
            let crc = codec::seal_record_in_place(id, seq, &mut framed).expect("seals");
            hasher.add(id, crc, &framed);
            records.push((id, framed));
        }
        let ranges = crate::progress::ids_to_ranges(ids);
        let entry = EntryRecord::new_v3(
            seq,
            5,
            ranges,
            vec![],
            hasher.finish(),
            prev_hash,
            "v".into(),
            None,
        );
        let sealed = lineage::seal_entry(&entry).expect("seals");
        (entry, segment::build(&sealed, &records).expect("builds"))
    }

    #[test]
    fn finds_segments_at_any_offset_and_refuses_any_damaged_byte() {
        let (e1, s1) = sealed_segment(1, lineage::ChainHash::ZERO, &[0, 1, 2]);
        let (e2, s2) = sealed_segment(2, e1.hash, &[3, 7]);
        let mut file = vec![0xAAu8; 13];
        file.extend_from_slice(&s1);
        file.extend_from_slice(&[0u8; 7]);
        file.extend_from_slice(&s2);
        file.extend_from_slice(&[1u8; 9]);
        let found = scan(&file);
        let entries: Vec<_> = found.segments.iter().map(|s| s.entry.clone()).collect();
        assert_eq!(entries, vec![e1, e2]);
        assert_eq!(
            &file[found.segments[0].offset..][..found.segments[0].len],
            &s1[..]
        );
        assert_eq!(found.segments[1].len, s2.len());
        for i in 0..s2.len() {
            let mut damaged = s2.clone();
            damaged[i] ^= 0x10;
            assert!(
                segment_at(&damaged, 0).is_none(),
                "a flip at byte {i} of a segment went unnoticed"
            );
        }
        for cut in 0..s2.len() {
            assert!(segment_at(&s2[..cut], 0).is_none(), "cut at {cut}");
        }
    }
}
