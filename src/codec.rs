//! Encoding of everything `resumable` stores: the only module that names bincode.
//!
//! Two framings, all integers little-endian:
//! - **Envelope** (metadata, lineage entries, snapshots, dead letters):
//!   `[version: u8][crc32 of payload: u32][payload]`. The version is [`ENVELOPE_VERSION`];
//!   a newer one is reported, never guessed at.
//! - **Output record**: `[crc32: u32][commit seq: u64][payload]`, the CRC covering the record
//!   id, the sequence and the payload, so a value moved to the wrong key is caught too.
//!
//! Payloads are bincode 2 (standard configuration: varint integers) of serde types,
//! decoded with a size limit so a hostile length prefix cannot make us allocate without
//! bound.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Version byte of the envelope framing.
pub(crate) const ENVELOPE_VERSION: u8 = 1;

/// Largest payload a decode will allocate for (1 GiB): snapshots of large states fit,
/// hostile length prefixes do not.
pub(crate) const DECODE_LIMIT: usize = 1 << 30;

const ENVELOPE_HEADER: usize = 5;
const OUTPUT_HEADER: usize = 12;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Encodes a serde value as a bincode payload.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| e.to_string())
}

/// Decodes a bincode payload, requiring that it is consumed whole.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    // A length prefix can claim up to the limit before the decoder finds the bytes missing,
    // so the limit scales with the input: no serde value decodes to more than a few dozen
    // times its bincode size (an empty `String` is 1 byte encoded, 24 in memory), and 64x
    // leaves room. A few hostile bytes therefore cannot make us allocate more than 1 MiB.
    let claim = bytes.len().saturating_mul(64);
    let decoded = if claim <= 1 << 20 {
        decode_limited::<T, { 1 << 20 }>(bytes)
    } else if claim <= 64 << 20 {
        decode_limited::<T, { 64 << 20 }>(bytes)
    } else {
        decode_limited::<T, DECODE_LIMIT>(bytes)
    };
    let (value, used) = decoded.map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the value",
            bytes.len() - used
        ));
    }
    Ok(value)
}

fn decode_limited<T: DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    bincode::serde::decode_from_slice::<T, _>(
        bytes,
        bincode::config::standard().with_limit::<LIMIT>(),
    )
}

/// Frames a payload in an envelope.
pub(crate) fn seal(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENVELOPE_HEADER + payload.len());
    out.push(ENVELOPE_VERSION);
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Encodes a value and frames it in an envelope.
pub(crate) fn seal_value<T: Serialize + ?Sized>(what: &str, value: &T) -> Result<Vec<u8>> {
    let payload =
        encode(value).map_err(|e| Error::InvalidArgument(format!("cannot encode {what}: {e}")))?;
    Ok(seal(&payload))
}

/// Checks an envelope's version and CRC; returns its payload.
pub(crate) fn open<'a>(what: &str, bytes: &'a [u8]) -> Result<&'a [u8]> {
    if bytes.len() < ENVELOPE_HEADER {
        return Err(Error::corrupt(
            what,
            format!("at least {ENVELOPE_HEADER} bytes"),
            format!("{} bytes", bytes.len()),
        ));
    }
    if bytes[0] != ENVELOPE_VERSION {
        return Err(Error::corrupt(
            what,
            format!("envelope version {ENVELOPE_VERSION}"),
            format!("version {}", bytes[0]),
        ));
    }
    let stored = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let payload = &bytes[ENVELOPE_HEADER..];
    let actual = crc32fast::hash(payload);
    if stored != actual {
        return Err(Error::corrupt(
            what,
            format!("crc32 {stored:08x}"),
            format!("crc32 {actual:08x}"),
        ));
    }
    Ok(payload)
}

/// Opens an envelope and decodes its payload.
pub(crate) fn open_value<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    let payload = open(what, bytes)?;
    decode(payload).map_err(|e| Error::corrupt(what, "a decodable value", e))
}

fn output_crc(id: u64, seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&id.to_le_bytes());
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Encodes an output payload behind an empty output-record header, so that sealing it at
/// commit time ([`seal_output_in_place`]) fills the header instead of copying the payload.
/// `size_hint` presizes the buffer: growing a `Vec` from empty costs several reallocations
/// per record, which the `commit_path` bench showed on the committer's CPU profile.
pub(crate) fn encode_output<T: Serialize + ?Sized>(
    value: &T,
    size_hint: usize,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(OUTPUT_HEADER + size_hint);
    out.resize(OUTPUT_HEADER, 0);
    bincode::serde::encode_into_std_write(value, &mut out, config()).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The payload length of a buffer made by [`encode_output`].
pub(crate) fn framed_payload_len(framed: &[u8]) -> usize {
    framed.len().saturating_sub(OUTPUT_HEADER)
}

/// Seals a buffer made by [`encode_output`] as the output record of `id` committed at `seq`,
/// in place (same bytes as [`seal_output`]). Returns the CRC.
pub(crate) fn seal_output_in_place(id: u64, seq: u64, framed: &mut [u8]) -> u32 {
    let crc = output_crc(id, seq, &framed[OUTPUT_HEADER..]);
    framed[..4].copy_from_slice(&crc.to_le_bytes());
    framed[4..OUTPUT_HEADER].copy_from_slice(&seq.to_le_bytes());
    crc
}

/// Frames an encoded output for record `id` committed at `seq`. Returns the bytes and CRC.
#[cfg_attr(
    not(any(test, feature = "testing")),
    expect(
        dead_code,
        reason = "the commit path seals in place; kept as the reference the in-place framing is tested against, and for fault-injection seeds"
    )
)]
pub(crate) fn seal_output(id: u64, seq: u64, payload: &[u8]) -> (Vec<u8>, u32) {
    let crc = output_crc(id, seq, payload);
    let mut out = Vec::with_capacity(OUTPUT_HEADER + payload.len());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
    (out, crc)
}

/// A stored output, checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutputRef<'a> {
    pub crc: u32,
    pub seq: u64,
    pub payload: &'a [u8],
}

/// Checks an output record's CRC; returns its parts.
pub(crate) fn open_output(id: u64, bytes: &[u8]) -> Result<OutputRef<'_>> {
    let what = || format!("output of record {id}");
    if bytes.len() < OUTPUT_HEADER {
        return Err(Error::corrupt(
            what(),
            format!("at least {OUTPUT_HEADER} bytes"),
            format!("{} bytes", bytes.len()),
        ));
    }
    let crc = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let mut seq_bytes = [0u8; 8];
    seq_bytes.copy_from_slice(&bytes[4..12]);
    let seq = u64::from_le_bytes(seq_bytes);
    let payload = &bytes[OUTPUT_HEADER..];
    let actual = output_crc(id, seq, payload);
    if crc != actual {
        return Err(Error::corrupt(
            what(),
            format!("crc32 {crc:08x}"),
            format!("crc32 {actual:08x}"),
        ));
    }
    Ok(OutputRef { crc, seq, payload })
}

/// Decodes a checked output payload into the user's type.
pub(crate) fn decode_output<T: DeserializeOwned>(id: u64, payload: &[u8]) -> Result<T> {
    decode(payload).map_err(|e| {
        Error::corrupt(
            format!("output of record {id}"),
            "a value of the job's output type",
            e,
        )
    })
}

/// 64-bit FNV-1a, used for the lineage hash chain over small fixed fields.
pub(crate) fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn envelope_detects_every_single_bit_flip() {
        let sealed = seal_value("v", &(7u64, "hello".to_owned())).expect("encodes");
        for bit in 0..sealed.len() * 8 {
            let mut damaged = sealed.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                open("v", &damaged).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn output_crc_binds_id_and_seq() {
        let (bytes, _) = seal_output(5, 9, b"payload");
        assert!(open_output(5, &bytes).is_ok());
        assert!(
            open_output(6, &bytes).is_err(),
            "value under the wrong key must fail"
        );
    }

    #[test]
    fn hostile_length_prefix_is_refused_without_allocating() {
        // A varint length of u64::MAX for a Vec<u8>.
        let hostile = [253u8, 255, 255, 255, 255, 255, 255, 255, 255];
        assert!(decode::<Vec<u8>>(&hostile).is_err());
    }

    #[test]
    fn a_small_input_cannot_claim_a_large_allocation() {
        // 9 bytes claiming a 500 MB string: refused by the limit, before allocating it.
        let mut hostile = vec![253u8];
        hostile.extend_from_slice(&500_000_000u64.to_le_bytes());
        let err = decode::<String>(&hostile).expect_err("must be refused");
        assert!(err.contains("imit"), "expected a limit error, got {err}");
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode(&3u32).expect("encodes");
        bytes.push(0);
        assert!(decode::<u32>(&bytes).is_err());
    }

    proptest! {
        #[test]
        fn envelope_round_trips(v in any::<(u64, String, Vec<u8>, Option<i32>)>()) {
            let sealed = seal_value("v", &v).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: (u64, String, Vec<u8>, Option<i32>) = open_value("v", &sealed).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, v);
        }

        #[test]
        fn output_round_trips(id in any::<u64>(), seq in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let (bytes, crc) = seal_output(id, seq, &payload);
            let out = open_output(id, &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(out.crc, crc);
            prop_assert_eq!(out.seq, seq);
            prop_assert_eq!(out.payload, &payload[..]);
        }

        #[test]
        fn in_place_sealing_equals_seal_output(id in any::<u64>(), seq in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut framed = encode_output(&payload, 0).map_err(TestCaseError::fail)?;
            let crc = seal_output_in_place(id, seq, &mut framed);
            let encoded = encode(&payload).map_err(TestCaseError::fail)?;
            prop_assert_eq!(framed_payload_len(&framed), encoded.len());
            prop_assert_eq!((framed, crc), seal_output(id, seq, &encoded));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = open_value::<(u64, String, Vec<u8>)>("v", &bytes);
            let _ = open_output(1, &bytes);
            let _ = decode::<Vec<String>>(&bytes);
        }
    }
}
