//! The stored forms of a lineage entry (FORMAT.md, "Lineage entry"). Their serde field order
//! is the file format.
//!
//! - Envelope version 1: the format-2 entry (FNV-64 chain). Written by format-2 builds; read
//!   in place by this one and never rewritten.
//! - Envelope version 2: the format-3 entry (BLAKE3 chain, code version, redo). Every
//!   commit of this build writes it, in format-2 stores too (which then become format 3):
//!   the chain switches from FNV-64 to BLAKE3 at the first such entry, whose `prev_hash` is
//!   the last format-2 entry's FNV-64 hash.

use serde::{Deserialize, Serialize};

use super::{ChainHash, EntryRecord, RedoRecord};
use crate::codec;
use crate::error::{Error, Result};

const V2: u8 = 1;
const V3: u8 = 2;

/// Domain of the format-3 entry hash.
const ENTRY_CONTEXT: &str = "resumable 2026-12 lineage entry v3";

#[derive(Serialize, Deserialize)]
struct StoredV2 {
    seq: u64,
    time_ms: u64,
    outputs: Vec<(u64, u64)>,
    dead_letters: Vec<u64>,
    outputs_hash: u64,
    prev_hash: u64,
    hash: u64,
}

/// A hash as format 3 stores it.
#[derive(Serialize, Deserialize, Clone, Copy)]
enum StoredHash {
    Fnv64(u64),
    Blake3([u8; 32]),
}

impl From<ChainHash> for StoredHash {
    fn from(h: ChainHash) -> Self {
        match h {
            ChainHash::Fnv64(v) => StoredHash::Fnv64(v),
            ChainHash::Blake3(b) => StoredHash::Blake3(b),
        }
    }
}

impl From<StoredHash> for ChainHash {
    fn from(h: StoredHash) -> Self {
        match h {
            StoredHash::Fnv64(v) => ChainHash::Fnv64(v),
            StoredHash::Blake3(b) => ChainHash::Blake3(b),
        }
    }
}

/// Everything a format-3 entry's hash covers: all its fields but the hash.
#[derive(Serialize, Deserialize)]
struct BodyV3 {
    seq: u64,
    time_ms: u64,
    outputs: Vec<(u64, u64)>,
    dead_letters: Vec<u64>,
    outputs_hash: [u8; 32],
    prev_hash: StoredHash,
    code_version: String,
    redo: Option<RedoRecord>,
}

#[derive(Serialize, Deserialize)]
struct StoredV3 {
    body: BodyV3,
    hash: [u8; 32],
}

fn body(e: &EntryRecord) -> BodyV3 {
    BodyV3 {
        seq: e.seq,
        time_ms: e.time_ms,
        outputs: e.outputs.clone(),
        dead_letters: e.dead_letters.clone(),
        outputs_hash: match e.outputs_hash {
            ChainHash::Blake3(b) => b,
            ChainHash::Fnv64(_) => [0; 32],
        },
        prev_hash: e.prev_hash.into(),
        code_version: e.code_version.clone().unwrap_or_default(),
        redo: e.redo.clone(),
    }
}

fn body_hash(body: &BodyV3) -> ChainHash {
    let bytes = codec::encode(body).unwrap_or_default();
    let mut h = blake3::Hasher::new_derive_key(ENTRY_CONTEXT);
    h.update(&bytes);
    ChainHash::Blake3(*h.finalize().as_bytes())
}

/// The BLAKE3 hash of a format-3 entry: over the bincode of every field but the hash.
pub(crate) fn v3_hash(e: &EntryRecord) -> ChainHash {
    body_hash(&body(e))
}

/// Encodes an entry in its stored form, framed in its envelope.
pub(crate) fn seal_entry(e: &EntryRecord) -> Result<Vec<u8>> {
    let encode_err =
        |err: String| Error::InvalidArgument(format!("cannot encode a lineage entry: {err}"));
    if e.is_v3() {
        let ChainHash::Blake3(hash) = e.hash else {
            return Err(Error::InvalidArgument(
                "a format-3 lineage entry carries a BLAKE3 hash".into(),
            ));
        };
        let stored = StoredV3 {
            body: body(e),
            hash,
        };
        Ok(codec::seal_versioned(
            V3,
            &codec::encode(&stored).map_err(encode_err)?,
        ))
    } else {
        let stored = StoredV2 {
            seq: e.seq,
            time_ms: e.time_ms,
            outputs: e.outputs.clone(),
            dead_letters: e.dead_letters.clone(),
            outputs_hash: e.outputs_hash.fnv64_or_zero(),
            prev_hash: e.prev_hash.fnv64_or_zero(),
            hash: e.hash.fnv64_or_zero(),
        };
        Ok(codec::seal_versioned(
            V2,
            &codec::encode(&stored).map_err(encode_err)?,
        ))
    }
}

/// Checks an entry's envelope and decodes it, in either stored form.
pub(crate) fn decode_entry(what: &str, bytes: &[u8]) -> Result<EntryRecord> {
    let (version, payload) = codec::open_versioned(what, bytes, V2, V3)?;
    decode_payload(what, version == V3, payload)
}

/// Decodes an entry's payload (without its envelope): format 3 when `v3`, else format 2.
pub(crate) fn decode_payload(what: &str, v3: bool, payload: &[u8]) -> Result<EntryRecord> {
    let bad = |e| Error::corrupt(what, "a decodable value", e);
    if !v3 {
        let s: StoredV2 = codec::decode(payload).map_err(bad)?;
        return Ok(EntryRecord {
            seq: s.seq,
            time_ms: s.time_ms,
            outputs: s.outputs,
            dead_letters: s.dead_letters,
            outputs_hash: ChainHash::Fnv64(s.outputs_hash),
            prev_hash: ChainHash::Fnv64(s.prev_hash),
            hash: ChainHash::Fnv64(s.hash),
            code_version: None,
            redo: None,
        });
    }
    let s: StoredV3 = codec::decode(payload).map_err(bad)?;
    let b = s.body;
    Ok(EntryRecord {
        seq: b.seq,
        time_ms: b.time_ms,
        outputs: b.outputs,
        dead_letters: b.dead_letters,
        outputs_hash: ChainHash::Blake3(b.outputs_hash),
        prev_hash: b.prev_hash.into(),
        hash: ChainHash::Blake3(s.hash),
        code_version: Some(b.code_version),
        redo: b.redo,
    })
}
