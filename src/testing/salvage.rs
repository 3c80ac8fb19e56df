//! The body of the `salvage_scan` fuzz target: salvage's raw-byte scanner, cross-checked
//! against the store's own segment reader.

use crate::lineage::OutputsHasher;
use crate::store::Segment;
use crate::store::salvage_scan as scan;

/// A commit segment the scanner found: `(commit seq, lineage hash, the segment's bytes)`.
pub type ScannedSegment = (u64, u64, Vec<u8>);

/// Scans `bytes` as salvage does (never opening them as a database) and returns the intact
/// commit segments found, in file order, plus how many job metadata, snapshot and dead-letter
/// envelopes it found.
///
/// # Panics
/// When the scanner accepts a segment that the store's own reader (an independent parse:
/// framing, entry CRC, seq, every record's CRC, no trailing bytes) rejects, or whose lineage
/// hash or outputs hash does not verify: a salvage bug, which is what the fuzz target hunts.
#[must_use]
pub fn salvage_scan(bytes: &[u8]) -> (Vec<ScannedSegment>, usize) {
    let found = scan::scan(bytes);
    let mut out = Vec::with_capacity(found.segments.len());
    for s in &found.segments {
        let raw = &bytes[s.offset..s.offset + s.len];
        let seq = s.entry.seq;
        let parsed = Segment::parse(seq, raw)
            .unwrap_or_else(|e| panic!("scanner accepted segment {seq} the reader rejects: {e}"));
        assert_eq!(parsed.entry, s.entry, "segment {seq}: entries differ");
        assert_eq!(
            parsed.entry.hash,
            parsed.entry.compute_hash(),
            "segment {seq}: hash"
        );
        let mut hasher = OutputsHasher::like(&parsed.entry.outputs_hash);
        for record in parsed.records() {
            let r = record.unwrap_or_else(|e| {
                panic!("scanner accepted segment {seq} with a bad record: {e}")
            });
            hasher.add(r.id, r.crc, r.framed);
        }
        assert_eq!(
            hasher.finish(),
            parsed.entry.outputs_hash,
            "segment {seq}: outputs hash"
        );
        out.push((seq, s.entry.hash.short(), raw.to_vec()));
    }
    let envelopes = found.metas.len() + found.snapshots.len() + found.dead_letters.len();
    (out, envelopes)
}
