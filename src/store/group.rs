//! One commit's group, built in the shape of its segment while records are queued.
//!
//! Each output is encoded straight into one buffer, behind its record header, and sealed
//! there at once (the commit's sequence number is known when the group starts: a group is
//! always the job's next commit). The buffer starts with head room for the segment's
//! length prefix and lineage entry (`segment.rs`), so sealing the group writes the entry
//! into that room and the segment is the buffer's tail: no per-record allocation and no
//! copy of the records between the caller's value and redb's page. The buffers are handed
//! back after the commit and reused, so a steady job does not fault fresh pages in for
//! every group; one that grew past [`KEEP_CAPACITY`] (a group of huge outputs) is freed
//! instead, so a single large group does not pin its memory for the job's life.
//!
//! The segment stores records in ascending id order. Records queued in that order (one
//! caller submitting in order) are already in place; otherwise sealing copies them once,
//! in id order, into a second buffer kept for that.

use super::records::DeadLetterRecord;
use super::segment;
use crate::codec::{self, RECORD_HEADER};
use crate::error::{Error, Result};
use crate::lineage::{self, ChainHash, EntryRecord, now_ms};
use crate::progress::ids_to_ranges;

/// Head room a first group leaves for the segment's length prefix and lineage entry; a
/// group whose entry needs more moves its records once and leaves that much from then on.
const HEAD_ROOM: usize = 256;

/// A buffer that grew beyond this is dropped after its commit rather than kept for the
/// next group (the default group is at most 4 MiB).
const KEEP_CAPACITY: usize = 16 << 20;

/// A record index that grew beyond this many entries is not kept for the next group.
const KEEP_SPANS: usize = 1 << 16;

/// One commit's records, sealed as they are added; [`GroupBuilder::seal`] makes the segment.
#[derive(Debug)]
pub(crate) struct GroupBuilder {
    seq: u64,
    /// `[head room][sealed records, in the order added]`.
    buf: Vec<u8>,
    head_room: usize,
    /// Each output's id and its sealed record's span in `buf`, in the order added.
    outputs: Vec<(u64, usize, usize)>,
    /// `outputs` is in ascending id order (the segment's order).
    ascending: bool,
    dead: Vec<(u64, Vec<u8>)>,
    /// Where records queued out of order are put in order when the group is sealed.
    spare: Vec<u8>,
}

impl Default for GroupBuilder {
    fn default() -> Self {
        GroupBuilder {
            seq: 0,
            buf: Vec::new(),
            head_room: HEAD_ROOM,
            outputs: Vec::new(),
            ascending: true,
            dead: Vec::new(),
            spare: Vec::new(),
        }
    }
}

impl GroupBuilder {
    /// Records queued (outputs and dead letters).
    pub(crate) fn len(&self) -> usize {
        self.outputs.len() + self.dead.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.outputs.is_empty() && self.dead.is_empty()
    }

    /// The ids queued, in the order added (outputs, then dead letters).
    pub(crate) fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.outputs
            .iter()
            .map(|&(id, ..)| id)
            .chain(self.dead.iter().map(|&(id, _)| id))
    }

    /// Whether `id` is queued, in a group whose ids were all added in ascending order.
    pub(crate) fn holds_in_order(&self, id: u64) -> bool {
        self.outputs.binary_search_by_key(&id, |&(i, ..)| i).is_ok()
            || self.dead.binary_search_by_key(&id, |&(i, _)| i).is_ok()
    }

    /// Starts the group as commit `seq` if it is empty; a non-empty group must be `seq`.
    fn begin(&mut self, seq: u64) -> Result<()> {
        if self.is_empty() {
            self.seq = seq;
            self.buf.clear();
            self.buf.resize(self.head_room, 0);
            self.ascending = true;
            Ok(())
        } else if self.seq == seq {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "a group started as commit {} was asked to be commit {seq}",
                self.seq
            )))
        }
    }

    /// Adds the output of `id` to the group of commit `seq`: `encode` appends its payload
    /// to the buffer it is given, and the record is sealed (its CRC and length written) in
    /// place. Returns the payload's length. An `encode` error leaves the group as it was
    /// and is that record's [`Error::Record`].
    pub(crate) fn output(
        &mut self,
        seq: u64,
        id: u64,
        encode: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), String>,
    ) -> Result<usize> {
        self.begin(seq)?;
        // Drop whatever an encode that panicked half-way left after the last record.
        let start = self.records_end();
        self.buf.truncate(start);
        self.buf.resize(start + RECORD_HEADER, 0);
        let sealed = encode(&mut self.buf)
            .map_err(|e| format!("cannot encode output: {e}"))
            .and_then(|()| {
                codec::seal_record_in_place(id, seq, &mut self.buf[start..])
                    .map_err(|e| e.to_string())
            });
        if let Err(source) = sealed {
            self.buf.truncate(start);
            return Err(Error::Record {
                id,
                source: source.into(),
            });
        }
        if let Some(&(last, ..)) = self.outputs.last() {
            self.ascending &= last < id;
        }
        self.outputs.push((id, start, self.buf.len()));
        Ok(self.buf.len() - start - RECORD_HEADER)
    }

    /// Where the last complete record ends in `buf` (the head room, before any).
    fn records_end(&self) -> usize {
        self.outputs
            .last()
            .map_or(self.head_room, |&(_, _, end)| end)
    }

    /// Adds a dead letter to the group of commit `seq`.
    pub(crate) fn dead_letter(
        &mut self,
        seq: u64,
        id: u64,
        record: &DeadLetterRecord,
    ) -> Result<()> {
        let sealed = codec::seal_value("dead letter", record)?;
        self.begin(seq)?;
        self.dead.push((id, sealed));
        Ok(())
    }

    /// Empties the group (its buffers are kept).
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.dead.clear();
        self.forget_spans();
    }

    /// Empties the record index, keeping its allocation unless a huge group grew it.
    fn forget_spans(&mut self) {
        if self.outputs.capacity() > KEEP_SPANS {
            self.outputs = Vec::new();
        } else {
            self.outputs.clear();
        }
        self.ascending = true;
    }

    /// Takes back a buffer a sealed group was built in, to build the next group in.
    pub(crate) fn recycle(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() <= KEEP_CAPACITY && buf.capacity() > self.buf.capacity() {
            buf.clear();
            self.buf = buf;
        }
    }

    /// Seals the group: puts the records in id order, builds the lineage entry (chained to
    /// `prev_hash`, made by `code_version`) and writes it into the head room. The entry's
    /// outputs hash is computed when the group is committed ([`super::JobStore::commit`],
    /// possibly on the hasher thread), so the entry written here is a placeholder of the
    /// same encoded length (the hash is 32 bytes either way). The builder is left empty.
    pub(crate) fn seal(&mut self, prev_hash: ChainHash, code_version: &str) -> Result<SealedGroup> {
        let end = self.records_end();
        self.buf.truncate(end);
        if !self.ascending {
            self.put_in_order();
        }
        let output_ids: Vec<u64> = self.outputs.iter().map(|&(id, ..)| id).collect();
        let mut dead = std::mem::take(&mut self.dead);
        dead.sort_unstable_by_key(|&(id, _)| id);
        let entry = EntryRecord::new_v3(
            self.seq,
            now_ms(),
            ids_to_ranges(&output_ids),
            dead.iter().map(|&(id, _)| id).collect(),
            ChainHash::Blake3([0; 32]),
            prev_hash,
            code_version.to_owned(),
            None,
        );
        let placeholder = lineage::seal_entry(&entry)?;
        let entry_len = u32::try_from(placeholder.len()).map_err(|_| {
            Error::InvalidArgument(format!(
                "a commit's lineage entry is {} bytes, over the 4 GiB limit; commit smaller groups",
                placeholder.len()
            ))
        })?;
        let head = segment::LEN + placeholder.len();
        if self.buf.len() < self.head_room {
            // Only dead letters: the buffer was never started.
            self.buf.resize(self.head_room, 0);
        }
        if head > self.head_room {
            let grown = head.next_power_of_two();
            self.buf
                .splice(0..0, std::iter::repeat_n(0, grown - self.head_room));
            self.head_room = grown;
        }
        let area = self.head_room;
        let start = area - head;
        self.buf[start..start + segment::LEN].copy_from_slice(&entry_len.to_le_bytes());
        self.buf[start + segment::LEN..area].copy_from_slice(&placeholder);
        self.forget_spans();
        Ok(SealedGroup {
            entry,
            buf: std::mem::take(&mut self.buf),
            start,
            area,
            dead,
            output_count: output_ids.len() as u64,
        })
    }

    /// Copies the records into the spare buffer in id order and swaps the buffers.
    fn put_in_order(&mut self) {
        self.outputs.sort_unstable_by_key(|&(id, ..)| id);
        self.spare.clear();
        self.spare.reserve(self.buf.len());
        self.spare.resize(self.head_room, 0);
        for span in &mut self.outputs {
            let at = self.spare.len();
            self.spare.extend_from_slice(&self.buf[span.1..span.2]);
            *span = (span.0, at, self.spare.len());
        }
        std::mem::swap(&mut self.buf, &mut self.spare);
        if self.spare.capacity() > KEEP_CAPACITY {
            self.spare = Vec::new();
        }
        self.ascending = true;
    }
}

/// A group ready to commit: its lineage entry, segment and sealed dead letters.
#[derive(Debug)]
pub(crate) struct SealedGroup {
    /// The entry with a placeholder outputs hash (and so a placeholder hash).
    pub(super) entry: EntryRecord,
    /// The segment is `buf[start..]`.
    pub(super) buf: Vec<u8>,
    pub(super) start: usize,
    /// Where the record area starts in `buf` (after the segment's length and entry).
    pub(super) area: usize,
    pub(super) dead: Vec<(u64, Vec<u8>)>,
    output_count: u64,
}

impl SealedGroup {
    pub(crate) fn seq(&self) -> u64 {
        self.entry.seq
    }

    /// Output ids as half-open ranges.
    pub(crate) fn output_ranges(&self) -> &[(u64, u64)] {
        &self.entry.outputs
    }

    pub(crate) fn dead_ids(&self) -> &[u64] {
        &self.entry.dead_letters
    }

    pub(crate) fn output_count(&self) -> u64 {
        self.output_count
    }

    /// The segment as it is stored (with the placeholder entry).
    pub(super) fn segment(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::segment::Segment;

    fn encode(s: &str) -> impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), String> + '_ {
        move |buf| codec::encode_output_into(&s, buf)
    }

    /// A group sealed from records added in any order is the segment `segment::build`
    /// makes from the same records in id order, and reads back record by record.
    #[test]
    fn sealing_gives_the_segment_in_id_order_whatever_the_order_added() {
        let mut b = GroupBuilder::default();
        for order in [
            vec![1u64, 2, 3, 7, 8],
            vec![8, 2, 7, 1, 3],
            vec![3, 1, 8, 7, 2],
        ] {
            let seq = 40;
            for &id in &order {
                b.output(seq, id, encode(&format!("out {id}")))
                    .expect("adds");
            }
            let sealed = b.seal(ChainHash::ZERO, "v1").expect("seals");
            assert!(b.is_empty());
            let parsed = Segment::parse(seq, sealed.segment()).expect("parses");
            assert_eq!(parsed.entry.outputs, vec![(1, 4), (7, 9)]);
            let ids: Vec<u64> = parsed
                .records()
                .map(|r| {
                    let r = r.expect("checked record");
                    assert_eq!(
                        codec::decode_output::<String>(r.id, r.payload).expect("decodes"),
                        format!("out {}", r.id)
                    );
                    r.id
                })
                .collect();
            assert_eq!(ids, vec![1, 2, 3, 7, 8]);
            // The same records through `segment::build`: the same bytes.
            let placeholder = lineage::seal_entry(&sealed.entry).expect("entry");
            let records: Vec<(u64, Vec<u8>)> = parsed
                .records()
                .map(|r| {
                    let r = r.expect("record");
                    (r.id, r.framed.to_vec())
                })
                .collect();
            assert_eq!(
                segment::build(&placeholder, &records).expect("builds"),
                sealed.segment()
            );
            b.recycle(sealed.buf);
        }
    }

    #[test]
    fn an_output_that_cannot_be_encoded_leaves_the_group_as_it_was() {
        let mut b = GroupBuilder::default();
        b.output(5, 1, encode("one")).expect("adds");
        let before = b.buf.clone();
        let err = b
            .output(5, 2, |buf| {
                buf.extend_from_slice(b"half");
                Err("no".into())
            })
            .expect_err("refused");
        assert!(matches!(err, Error::Record { id: 2, .. }), "{err}");
        assert_eq!(b.buf, before);
        assert_eq!(b.len(), 1);
        let sealed = b.seal(ChainHash::ZERO, "").expect("seals");
        assert_eq!(sealed.entry.outputs, vec![(1, 2)]);
    }

    /// A user's `Serialize` that panics half-way (a caller that catches the panic and goes
    /// on with the same job) leaves no stray bytes in the segment.
    #[test]
    fn an_encode_that_panics_leaves_no_bytes_behind() {
        let mut b = GroupBuilder::default();
        let panics = |b: &mut GroupBuilder, id| {
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                b.output(5, id, |buf| {
                    buf.extend_from_slice(b"half an output");
                    panic!("the user's Serialize panicked")
                })
            }));
            assert!(panicked.is_err());
        };
        b.output(5, 1, encode("one")).expect("adds");
        panics(&mut b, 2);
        b.output(5, 3, encode("three"))
            .expect("adds after the panic");
        // Right before sealing, too.
        panics(&mut b, 4);
        let sealed = b.seal(ChainHash::ZERO, "").expect("seals");
        let parsed = Segment::parse(5, sealed.segment()).expect("parses");
        assert_eq!(parsed.entry.outputs, vec![(1, 2), (3, 4)]);
        let mut records = parsed.records();
        assert_eq!(records.next().expect("one").expect("checked").id, 1);
        assert_eq!(records.next().expect("three").expect("checked").id, 3);
        assert!(records.next().is_none(), "nothing after the last record");
    }

    #[test]
    fn a_group_is_one_commit() {
        let mut b = GroupBuilder::default();
        b.output(5, 1, encode("one")).expect("adds");
        assert!(matches!(
            b.output(6, 2, encode("two")),
            Err(Error::InvalidArgument(_))
        ));
        b.clear();
        b.output(6, 2, encode("two"))
            .expect("a cleared group starts again");
    }

    /// An entry longer than the head room (many ranges, a long code version) moves the
    /// records once; the segment is still exact.
    #[test]
    fn a_long_entry_grows_the_head_room() {
        let mut b = GroupBuilder::default();
        let ids: Vec<u64> = (0..200).map(|i| i * 2).collect();
        for &id in &ids {
            b.output(9, id, encode("x")).expect("adds");
        }
        b.dead_letter(
            9,
            1,
            &DeadLetterRecord {
                attempts: 1,
                error: "e".into(),
                time_ms: 0,
            },
        )
        .expect("dead letter");
        let version = "v".repeat(1000);
        let sealed = b.seal(ChainHash::ZERO, &version).expect("seals");
        assert!(b.head_room > HEAD_ROOM);
        let parsed = Segment::parse(9, sealed.segment()).expect("parses");
        assert_eq!(parsed.entry.outputs.len(), 200);
        assert_eq!(parsed.entry.dead_letters, vec![1]);
        assert_eq!(parsed.records().count(), 200);
        assert!(parsed.records().all(|r| r.is_ok()));
    }

    #[test]
    fn a_group_of_dead_letters_only_is_an_empty_record_area() {
        let mut b = GroupBuilder::default();
        let dl = DeadLetterRecord {
            attempts: 3,
            error: "bad".into(),
            time_ms: 1,
        };
        b.dead_letter(2, 9, &dl).expect("adds");
        b.dead_letter(2, 4, &dl).expect("adds");
        let sealed = b.seal(ChainHash::ZERO, "").expect("seals");
        assert_eq!(sealed.dead_ids(), &[4, 9]);
        assert_eq!(sealed.area, sealed.buf.len());
        let parsed = Segment::parse(2, sealed.segment()).expect("parses");
        assert_eq!(parsed.records().count(), 0);
    }
}
