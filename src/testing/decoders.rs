//! Entry points into `resumable`'s private decoders, for the `codec_decode` fuzz target and
//! its corpus test.

use crate::codec;
use crate::lineage::EntryRecord;
use crate::store::{DeadLetterRecord, JobMeta, Segment, SnapshotRecord};

/// Feeds `bytes` to every decoder the store uses on stored values: the envelope of job
/// metadata, lineage entries, snapshots and dead letters; commit segments and their records; and
/// bare payload decodes of a few output types. Returns how many accepted the bytes.
///
/// Never panics on any input, and never allocates more than the codec's decode limit (1 GiB):
/// the fuzz target and the corpus test check both.
#[must_use]
pub fn decode_everything(bytes: &[u8]) -> usize {
    let mut accepted = 0;
    accepted += usize::from(codec::open_value::<JobMeta>("meta", bytes).is_ok());
    accepted += usize::from(crate::lineage::decode_entry("lineage", bytes).is_ok());
    accepted += usize::from(codec::open_value::<SnapshotRecord>("snapshot", bytes).is_ok());
    accepted += usize::from(codec::open_value::<DeadLetterRecord>("dead", bytes).is_ok());
    // The same payloads without the envelope, so the fuzzer reaches the decoders without
    // having to forge a CRC first.
    accepted += usize::from(codec::decode::<JobMeta>(bytes).is_ok());
    for v3 in [false, true] {
        accepted += usize::from(crate::lineage::decode_payload("lineage", v3, bytes).is_ok());
    }
    accepted += usize::from(codec::decode::<SnapshotRecord>(bytes).is_ok());
    accepted += usize::from(codec::decode::<DeadLetterRecord>(bytes).is_ok());
    if let Ok(segment) = Segment::parse(3, bytes) {
        accepted += 1;
        for record in segment.records() {
            match record {
                Ok(r) => {
                    accepted +=
                        usize::from(codec::decode_output::<Vec<u8>>(r.id, r.payload).is_ok());
                }
                Err(_) => break,
            }
        }
        for id in [0, 1, 4, 9] {
            accepted += usize::from(matches!(segment.find(id), Ok(Some(_))));
        }
    }
    accepted += usize::from(codec::decode_output::<String>(7, bytes).is_ok());
    accepted += usize::from(codec::decode_output::<Vec<String>>(7, bytes).is_ok());
    accepted += usize::from(codec::decode_output::<(u64, Option<Vec<u64>>)>(7, bytes).is_ok());
    accepted
}

/// Valid encodings of every stored value kind, as seeds for the decoders' fuzzing.
#[must_use]
pub fn decoder_seeds() -> Vec<Vec<u8>> {
    let entry = EntryRecord::new(3, 1_700_000_000_000, vec![(1, 4), (9, 10)], vec![5], 77, 88);
    let snapshot = SnapshotRecord {
        seq: 3,
        time_ms: 1,
        state: vec![1, 2, 3],
    };
    let dead = DeadLetterRecord {
        attempts: 3,
        error: "boom".into(),
        time_ms: 2,
    };
    let mut seeds = Vec::new();
    for sealed in [
        crate::lineage::seal_entry(&entry),
        codec::seal_value("snapshot", &snapshot),
        codec::seal_value("dead", &dead),
    ]
    .into_iter()
    .flatten()
    {
        seeds.push(sealed[5..].to_vec());
        seeds.push(sealed);
    }
    let mut records = Vec::new();
    for (id, v) in [
        (1u64, vec![3u8, 1, 2]),
        (2, vec![]),
        (3, vec![9; 40]),
        (9, vec![7]),
    ] {
        if let Ok(mut framed) = codec::encode_output(&v, 0)
            && codec::seal_record_in_place(id, 3, &mut framed).is_ok()
        {
            records.push((id, framed));
        }
    }
    let hash = {
        let mut h = crate::lineage::OutputsHasher::new();
        for (id, framed) in &records {
            h.add(
                *id,
                u32::from_le_bytes([framed[0], framed[1], framed[2], framed[3]]),
                framed,
            );
        }
        h.finish()
    };
    let segment_entry = EntryRecord::new_v3(
        3,
        1_700_000_000_000,
        vec![(1, 4), (9, 10)],
        vec![5],
        hash,
        crate::lineage::ChainHash::Blake3([88; 32]),
        "seed".into(),
        None,
    );
    if let Ok(sealed) = crate::lineage::seal_entry(&segment_entry)
        && let Ok(segment) = crate::store::build_segment(&sealed, &records)
    {
        seeds.push(segment);
    }
    seeds
}
