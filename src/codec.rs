//! Encoding of everything `resumable` stores: the only module that names bincode.
//!
//! Two framings, all integers little-endian:
//! - **Envelope** (metadata, lineage entries, snapshots, dead letters):
//!   `[version: u8][crc32 of payload: u32][payload]`. The version is [`ENVELOPE_VERSION`];
//!   a newer one is reported, never guessed at.
//! - **Output record** (inside a commit segment, see `store::segment`):
//!   `[crc32: u32][payload length: u32][payload]`, the CRC covering the record id, the commit
//!   sequence and the payload, so a record moved to another place is caught too.
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
/// Bytes of an output record's header in a segment: `[crc32: u32][payload length: u32]`.
pub(crate) const RECORD_HEADER: usize = 8;

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
    seal_versioned(ENVELOPE_VERSION, payload)
}

/// Frames a payload in an envelope of another version (format-3 lineage entries use 2).
pub(crate) fn seal_versioned(version: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENVELOPE_HEADER + payload.len());
    out.push(version);
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
    open_versioned(what, bytes, ENVELOPE_VERSION, ENVELOPE_VERSION).map(|(_, p)| p)
}

/// Checks an envelope whose version is in `oldest..=newest` and its CRC; returns the
/// version and the payload.
pub(crate) fn open_versioned<'a>(
    what: &str,
    bytes: &'a [u8],
    oldest: u8,
    newest: u8,
) -> Result<(u8, &'a [u8])> {
    if bytes.len() < ENVELOPE_HEADER {
        return Err(Error::corrupt(
            what,
            format!("at least {ENVELOPE_HEADER} bytes"),
            format!("{} bytes", bytes.len()),
        ));
    }
    if !(oldest..=newest).contains(&bytes[0]) {
        let expected = if oldest == newest {
            format!("envelope version {oldest}")
        } else {
            format!("envelope version {oldest} to {newest}")
        };
        return Err(Error::corrupt(
            what,
            expected,
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
    Ok((bytes[0], payload))
}

/// Opens an envelope and decodes its payload.
pub(crate) fn open_value<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    let payload = open(what, bytes)?;
    decode(payload).map_err(|e| Error::corrupt(what, "a decodable value", e))
}

/// CRC of an output record: covers its id, its commit's sequence number and its payload.
pub(crate) fn record_crc(id: u64, seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&id.to_le_bytes());
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Encodes an output payload behind an empty record header, so that sealing it at commit
/// time ([`seal_record_in_place`]) fills the header instead of copying the payload.
/// `size_hint` presizes the buffer. (The commit path uses [`encode_output_into`].)
#[cfg(any(test, feature = "testing"))]
pub(crate) fn encode_output<T: Serialize + ?Sized>(
    value: &T,
    size_hint: usize,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(RECORD_HEADER + size_hint);
    out.resize(RECORD_HEADER, 0);
    encode_output_into(value, &mut out)?;
    Ok(out)
}

/// Appends an output payload's encoding to `out` (the commit path encodes straight into
/// its group's buffer, `store::group`).
pub(crate) fn encode_output_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let start = out.len();
    bincode::serde::encode_into_std_write(value, out, config()).map_err(|e| e.to_string())?;
    if out.len() - start > u32::MAX as usize {
        return Err(format!(
            "the encoded output is {} bytes; one output may be at most 4 GiB",
            out.len() - start
        ));
    }
    Ok(())
}

/// Seals a buffer made by [`encode_output`] as the record of `id` committed at `seq`, in
/// place: fills in the header `[crc32: u32][payload length: u32]`. Returns the CRC.
pub(crate) fn seal_record_in_place(id: u64, seq: u64, framed: &mut [u8]) -> Result<u32> {
    let payload = framed.get(RECORD_HEADER..).unwrap_or_default();
    let len = u32::try_from(payload.len()).map_err(|_| Error::Record {
        id,
        source: "the encoded output is over 4 GiB".into(),
    })?;
    let crc = record_crc(id, seq, payload);
    framed[..4].copy_from_slice(&crc.to_le_bytes());
    framed[4..RECORD_HEADER].copy_from_slice(&len.to_le_bytes());
    Ok(crc)
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
    fn record_crc_binds_id_and_seq() {
        let base = record_crc(5, 9, b"payload");
        assert_ne!(base, record_crc(6, 9, b"payload"));
        assert_ne!(base, record_crc(5, 10, b"payload"));
        assert_ne!(base, record_crc(5, 9, b"paylaod"));
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
        fn sealed_record_carries_crc_length_and_payload(id in any::<u64>(), seq in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut framed = encode_output(&payload, 0).map_err(TestCaseError::fail)?;
            let crc = seal_record_in_place(id, seq, &mut framed).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let encoded = encode(&payload).map_err(TestCaseError::fail)?;
            prop_assert_eq!(framed.len() - RECORD_HEADER, encoded.len());
            prop_assert_eq!(&framed[RECORD_HEADER..], &encoded[..]);
            prop_assert_eq!(crc, record_crc(id, seq, &encoded));
            prop_assert_eq!(&framed[..4], &crc.to_le_bytes()[..]);
            prop_assert_eq!(&framed[4..8], &(encoded.len() as u32).to_le_bytes()[..]);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = open_value::<(u64, String, Vec<u8>)>("v", &bytes);
            let _ = decode::<Vec<String>>(&bytes);
        }
    }
}
