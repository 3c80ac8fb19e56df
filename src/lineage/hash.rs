//! Chain hashes: BLAKE3 for entries written by format 3, FNV-64 for entries written by
//! format 2 (read in place, never rewritten), and the head (`SEQ:HASH`) an operator records
//! elsewhere to check a store against later.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A lineage hash: of an entry (its `hash`, the next entry's `prev_hash`) or of a commit's
/// outputs.
///
/// Printed as 64 hex digits for BLAKE3 and as `fnv64-` and 16 hex digits for the FNV-64
/// hashes of entries written by format 2; [`FromStr`] reads both back.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChainHash {
    /// FNV-1a-64, written by format 2: catches accidents, not edits.
    Fnv64(u64),
    /// BLAKE3-256, written by format 3.
    Blake3([u8; 32]),
}

impl ChainHash {
    /// The `prev_hash` of a format-3 job's first entry.
    pub const ZERO: ChainHash = ChainHash::Blake3([0; 32]);

    /// Whether this is a chain start (zero, in either form).
    #[must_use]
    pub fn is_zero(&self) -> bool {
        match self {
            ChainHash::Fnv64(h) => *h == 0,
            ChainHash::Blake3(b) => b.iter().all(|&x| x == 0),
        }
    }

    /// 64 bits of the hash (the FNV-64 value, or BLAKE3's first 8 bytes little-endian), for
    /// short names and test keys.
    pub(crate) fn short(&self) -> u64 {
        match self {
            ChainHash::Fnv64(h) => *h,
            ChainHash::Blake3(b) => {
                u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            }
        }
    }

    /// The FNV-64 value, or 0 for a BLAKE3 hash (format-2 entries only chain FNV hashes).
    pub(crate) fn fnv64_or_zero(&self) -> u64 {
        match self {
            ChainHash::Fnv64(h) => *h,
            ChainHash::Blake3(_) => 0,
        }
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainHash::Fnv64(h) => write!(f, "fnv64-{h:016x}"),
            ChainHash::Blake3(b) => {
                for x in b {
                    write!(f, "{x:02x}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for ChainHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A hash or head that does not parse; says what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed lineage hash {input:?}: {reason}")]
pub struct ParseHashError {
    input: String,
    reason: &'static str,
}

fn hex_digits(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

impl FromStr for ChainHash {
    type Err = ParseHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseHashError {
            input: s.to_owned(),
            reason,
        };
        if let Some(rest) = s.strip_prefix("fnv64-") {
            if rest.len() != 16 {
                return Err(err("an FNV-64 hash is `fnv64-` and 16 hex digits"));
            }
            return u64::from_str_radix(rest, 16)
                .map(ChainHash::Fnv64)
                .map_err(|_| err("an FNV-64 hash is `fnv64-` and 16 hex digits"));
        }
        if s.len() != 64 {
            return Err(err("a BLAKE3 hash is 64 hex digits"));
        }
        let bytes = hex_digits(s).ok_or_else(|| err("a BLAKE3 hash is 64 hex digits"))?;
        let mut out = [0u8; 32];
        out.copy_from_slice(&bytes);
        Ok(ChainHash::Blake3(out))
    }
}

/// The head of a job's lineage: the last entry's seq and hash, printed `SEQ:HASH` (see
/// [`Store::lineage_head`](crate::Store::lineage_head)). It commits to every entry and, for
/// the entries written by format 3, to every output byte they stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
pub struct LineageHead {
    /// The last entry's seq (0: no entry yet).
    pub seq: u64,
    /// The last entry's hash ([`ChainHash::ZERO`] when there is none).
    pub hash: ChainHash,
}

impl fmt::Display for LineageHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

impl FromStr for LineageHead {
    type Err = ParseHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseHashError {
            input: s.to_owned(),
            reason,
        };
        let (seq, hash) = s
            .split_once(':')
            .ok_or_else(|| err("a head is SEQ:HASH, as `resumable lineage --head` prints it"))?;
        let seq = seq
            .parse()
            .map_err(|_| err("a head is SEQ:HASH with SEQ a commit number"))?;
        let hash = hash.parse().map_err(|e: ParseHashError| ParseHashError {
            input: s.to_owned(),
            reason: e.reason,
        })?;
        Ok(LineageHead { seq, hash })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_heads_print_and_parse_back() {
        for h in [
            ChainHash::Fnv64(0x0123_4567_89ab_cdef),
            ChainHash::Blake3([0xa5; 32]),
            ChainHash::ZERO,
        ] {
            assert_eq!(h.to_string().parse::<ChainHash>(), Ok(h));
            let head = LineageHead { seq: 42, hash: h };
            assert_eq!(head.to_string().parse::<LineageHead>(), Ok(head));
        }
        for bad in [
            "",
            "42",
            "42:",
            "x:00",
            "1:fnv64-12",
            "1:zz",
            &format!("1:{}", "g".repeat(64)),
        ] {
            assert!(bad.parse::<LineageHead>().is_err(), "{bad}");
        }
    }
}
