//! Commit segments: one commit's lineage entry and all its outputs in one stored value.
//!
//! A segment is the value of `job.NAME.log` under the commit's sequence number:
//!
//! ```text
//! [entry length: u32][lineage entry envelope][record]...
//! record = [crc32: u32][payload length: u32][payload]
//! ```
//!
//! The records are the commit's outputs in ascending id order, exactly the ids the entry's
//! `outputs` ranges list, so a record's id is implied by its position. Each record's CRC
//! covers its id, the commit's sequence number and its payload, so a record moved to the
//! wrong position or the wrong commit is caught.
//!
//! Why one value per commit rather than one row per output: a commit then inserts one row
//! into one B-tree instead of one per record into three (outputs, lineage, done), which
//! halves the pages a per-record commit dirties and makes a group commit a single append.
//! Done ranges and the id index are brought up to date every few hundred commits instead
//! (see `progress_mark.rs`).

use crate::codec::{self, RECORD_HEADER};
use crate::error::{Error, Result};
use crate::lineage::{self, EntryRecord};

/// Bytes of the entry length prefix.
pub(crate) const LEN: usize = 4;

/// Builds a segment from a sealed lineage entry and sealed records (made by
/// [`codec::encode_output`] and [`codec::seal_record_in_place`]), in id order.
pub(crate) fn build(sealed_entry: &[u8], records: &[(u64, Vec<u8>)]) -> Result<Vec<u8>> {
    let entry_len = u32::try_from(sealed_entry.len()).map_err(|_| {
        Error::InvalidArgument(format!(
            "a commit's lineage entry is {} bytes, over the 4 GiB limit; commit smaller groups",
            sealed_entry.len()
        ))
    })?;
    let total = LEN + sealed_entry.len() + records.iter().map(|(_, r)| r.len()).sum::<usize>();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&entry_len.to_le_bytes());
    out.extend_from_slice(sealed_entry);
    for (_, r) in records {
        out.extend_from_slice(r);
    }
    Ok(out)
}

/// A stored segment, its lineage entry checked; records are checked as they are read.
#[derive(Debug)]
pub(crate) struct Segment<'a> {
    pub seq: u64,
    pub entry: EntryRecord,
    records: &'a [u8],
}

/// One checked output record of a segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record<'a> {
    pub id: u64,
    pub crc: u32,
    pub payload: &'a [u8],
    /// The whole stored record: `[crc32][payload length][payload]`.
    pub framed: &'a [u8],
}

fn what(seq: u64) -> String {
    format!("lineage entry {seq}")
}

impl<'a> Segment<'a> {
    /// Checks the framing and the lineage entry of the segment stored under `seq`.
    pub(crate) fn parse(seq: u64, bytes: &'a [u8]) -> Result<Self> {
        let (entry_bytes, records) = split(seq, bytes)?;
        let entry = lineage::decode_entry(&what(seq), entry_bytes)?;
        if entry.seq != seq {
            return Err(Error::corrupt(
                what(seq),
                format!("seq {seq}"),
                format!("seq {}", entry.seq),
            ));
        }
        Ok(Segment {
            seq,
            entry,
            records,
        })
    }

    /// The records in id order, each checked; a short or overlong record area is an error
    /// at the point it is found.
    pub(crate) fn records(&self) -> Records<'_> {
        Records {
            seq: self.seq,
            ids: Box::new(self.entry.output_ids()),
            rest: self.records,
            failed: false,
        }
    }

    /// The checked record of `id`, if this commit stored an output for it.
    pub(crate) fn find(&self, id: u64) -> Result<Option<Record<'a>>> {
        let mut position = 0u64;
        let mut found = None;
        for &(s, e) in &self.entry.outputs {
            if (s..e).contains(&id) {
                found = Some(position + (id - s));
                break;
            }
            position += e.saturating_sub(s);
        }
        let Some(index) = found else {
            return Ok(None);
        };
        let mut rest = self.records;
        for _ in 0..index {
            let (len, after) = header(self.seq, id, rest)?;
            rest = after.get(len..).ok_or_else(|| short(self.seq, id))?;
        }
        let (len, after) = header(self.seq, id, rest)?;
        let payload = after.get(..len).ok_or_else(|| short(self.seq, id))?;
        let crc = stored_crc(rest);
        check_crc(id, self.seq, crc, payload)?;
        let framed = &rest[..RECORD_HEADER + len];
        Ok(Some(Record {
            id,
            crc,
            payload,
            framed,
        }))
    }
}

/// Reads only a segment's lineage entry.
pub(crate) fn entry(seq: u64, bytes: &[u8]) -> Result<EntryRecord> {
    Segment::parse(seq, bytes).map(|s| s.entry)
}

fn split(seq: u64, bytes: &[u8]) -> Result<(&[u8], &[u8])> {
    let Some((len, rest)) = bytes.split_first_chunk::<LEN>() else {
        return Err(Error::corrupt(
            what(seq),
            "a segment of at least 4 bytes",
            format!("{} bytes", bytes.len()),
        ));
    };
    let len = u32::from_le_bytes(*len) as usize;
    if len > rest.len() {
        return Err(Error::corrupt(
            what(seq),
            format!("an entry of {len} bytes"),
            format!("{} bytes left in the segment", rest.len()),
        ));
    }
    Ok(rest.split_at(len))
}

fn short(seq: u64, id: u64) -> Error {
    Error::corrupt(
        format!("output of record {id}"),
        format!("a complete record in commit {seq}"),
        "the segment ends inside it",
    )
}

/// The payload length of the record at the start of `bytes`, and the bytes after its header.
fn header(seq: u64, id: u64, bytes: &[u8]) -> Result<(usize, &[u8])> {
    if bytes.len() < RECORD_HEADER {
        return Err(short(seq, id));
    }
    let len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    Ok((len, &bytes[RECORD_HEADER..]))
}

fn stored_crc(record: &[u8]) -> u32 {
    u32::from_le_bytes([record[0], record[1], record[2], record[3]])
}

fn check_crc(id: u64, seq: u64, stored: u32, payload: &[u8]) -> Result<()> {
    let actual = codec::record_crc(id, seq, payload);
    if stored == actual {
        Ok(())
    } else {
        Err(Error::corrupt(
            format!("output of record {id}"),
            format!("crc32 {stored:08x}"),
            format!("crc32 {actual:08x}"),
        ))
    }
}

/// Iterator over a segment's records; see [`Segment::records`].
pub(crate) struct Records<'a> {
    seq: u64,
    ids: Box<dyn Iterator<Item = u64> + 'a>,
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let Some(id) = self.ids.next() else {
            if self.rest.is_empty() {
                return None;
            }
            self.failed = true;
            return Some(Err(Error::corrupt(
                what(self.seq),
                "no bytes after its last record",
                format!("{} trailing bytes", self.rest.len()),
            )));
        };
        let item = (|| {
            let (len, after) = header(self.seq, id, self.rest)?;
            let payload = after.get(..len).ok_or_else(|| short(self.seq, id))?;
            let crc = stored_crc(self.rest);
            let framed = &self.rest[..RECORD_HEADER + len];
            self.rest = &after[len..];
            check_crc(id, self.seq, crc, payload)?;
            Ok(Record {
                id,
                crc,
                payload,
                framed,
            })
        })();
        if item.is_err() {
            self.failed = true;
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (EntryRecord, Vec<u8>) {
        let ids = [3u64, 4, 5, 9];
        let mut records = Vec::new();
        for id in ids {
            let mut framed = codec::encode_output(&format!("out {id}"), 0).expect("encodes");
            codec::seal_record_in_place(id, 7, &mut framed).expect("seals");
            records.push((id, framed));
        }
        let entry = EntryRecord::new(7, 1, vec![(3, 6), (9, 10)], vec![], 0, 0);
        let sealed = lineage::seal_entry(&entry).expect("seals");
        (entry, build(&sealed, &records).expect("builds"))
    }

    #[test]
    fn records_and_find_agree() {
        let (entry, bytes) = sample();
        let seg = Segment::parse(7, &bytes).expect("parses");
        assert_eq!(seg.entry, entry);
        let all: Vec<_> = seg.records().map(|r| r.expect("record")).collect();
        assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 4, 5, 9]);
        for r in &all {
            let found = seg.find(r.id).expect("find").expect("present");
            assert_eq!(found.payload, r.payload);
            let s: String = codec::decode_output(r.id, r.payload).expect("decodes");
            assert_eq!(s, format!("out {}", r.id));
        }
        assert!(seg.find(6).expect("find").is_none());
    }

    #[test]
    fn wrong_seq_and_damage_are_caught() {
        let (_, bytes) = sample();
        assert!(
            Segment::parse(8, &bytes).is_err(),
            "stored under another seq"
        );
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let caught = match Segment::parse(7, &damaged) {
                Err(_) => true,
                Ok(seg) => seg.records().any(|r| r.is_err()),
            };
            assert!(caught, "flip of bit {bit} went unnoticed");
        }
        for cut in 0..bytes.len() {
            let caught = match Segment::parse(7, &bytes[..cut]) {
                Err(_) => true,
                Ok(seg) => seg.records().any(|r| r.is_err()),
            };
            assert!(caught, "truncation to {cut} bytes went unnoticed");
        }
    }
}
