//! [`FileSource`]: the records of the input files, for [`Runner`](crate::Runner), seeking
//! through the sparse offset index.

use std::fs::File;
use std::io::{BufReader, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use super::index;
use super::split::{RawRecord, RecordReader};
use super::{InputFormat, InputRecord, csv};
use crate::error::BoxError;
use crate::runner::Source;

/// The file being read.
#[derive(Debug)]
struct Open {
    file: usize,
    reader: RecordReader<BufReader<File>>,
    header: Option<Arc<Vec<String>>>,
}

/// The records of a [`FileInput`](crate::FileInput), in order, each with its id (its
/// 0-based index across all files). Seeks in O(4,096 records) through the offset index.
///
/// Records are decoded here: a record that is invalid (not UTF-8, not JSON for JSON Lines,
/// a malformed CSV row, longer than the limit) is yielded as [`InputRecord::Invalid`]
/// with the reason, so the processor can settle it as a permanent failure (a dead letter)
/// while the rest go on. An error from [`Source::next_record`] means the files changed or
/// cannot be read during the run: the run stops and can be resumed once they are back.
#[derive(Debug)]
pub struct FileSource {
    paths: Arc<Vec<PathBuf>>,
    format: InputFormat,
    max_record_bytes: usize,
    /// First id of each file, and the total at the end.
    starts: Arc<Vec<u64>>,
    index_every: u64,
    offsets: Arc<Vec<(u32, u64)>>,
    open: Option<Open>,
    next_id: u64,
    buf: Vec<u8>,
    /// Records read to skip forward after a seek (for the figures and tests).
    skipped_by_reading: u64,
}

impl FileSource {
    pub(crate) fn new(
        paths: Arc<Vec<PathBuf>>,
        format: InputFormat,
        max_record_bytes: usize,
        starts: Arc<Vec<u64>>,
        index_every: u64,
        offsets: Arc<Vec<(u32, u64)>>,
    ) -> Self {
        FileSource {
            paths,
            format,
            max_record_bytes,
            starts,
            index_every,
            offsets,
            open: None,
            next_id: 0,
            buf: Vec::new(),
            skipped_by_reading: 0,
        }
    }

    fn total(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Records read and thrown away to reach a seek target (at most 4,095 per seek).
    #[must_use]
    pub fn records_skipped_by_reading(&self) -> u64 {
        self.skipped_by_reading
    }

    /// The file holding record `id` (which must be below the total).
    fn file_of(&self, id: u64) -> usize {
        self.starts.partition_point(|&s| s <= id).saturating_sub(1)
    }

    /// Opens file `file` with its next record at byte `offset` (0: the first record, after
    /// the header for CSV).
    fn open_at(&mut self, file: usize, offset: u64) -> Result<(), BoxError> {
        let path = &self.paths[file];
        let (reader, header) = index::open_records(path, self.format, self.max_record_bytes)?;
        let reader = if offset > reader.position() {
            let mut inner = reader.into_inner();
            inner.seek(SeekFrom::Start(offset))?;
            RecordReader::new(
                inner,
                offset,
                self.format == InputFormat::Csv,
                self.format != InputFormat::Lines,
            )
        } else {
            reader
        };
        self.open = Some(Open {
            file,
            reader,
            header: header.map(Arc::new),
        });
        Ok(())
    }

    /// Reads the raw bytes of record `self.next_id` (up to `max`), opening the next file as
    /// needed.
    fn read_raw(&mut self, max: usize) -> Result<RawRecord, BoxError> {
        let id = self.next_id;
        let file = self.file_of(id);
        if self.open.as_ref().is_none_or(|o| o.file != file) {
            self.open_at(file, 0)?;
        }
        let Some(open) = self.open.as_mut() else {
            return Err("input file not open".into());
        };
        match open.reader.next_record(&mut self.buf, max)? {
            Some(raw) => {
                self.next_id += 1;
                Ok(raw)
            }
            None => Err(format!(
                "input {} ended at record {id}, but it held records up to {} when the job was created: the file changed during the run; put the original back (or start a new job)",
                self.paths[file].display(),
                self.starts[file + 1] - 1
            )
            .into()),
        }
    }

    fn decode(&self, raw: RawRecord) -> InputRecord {
        if raw.truncated {
            return InputRecord::Invalid(format!(
                "the record is {} bytes, longer than the limit of {} bytes (--max-line-bytes)",
                raw.len, self.max_record_bytes
            ));
        }
        let text = match std::str::from_utf8(&self.buf) {
            Ok(t) => t,
            Err(e) => {
                return InputRecord::Invalid(format!(
                    "the record is not valid UTF-8 (bad byte at offset {} of the record)",
                    e.valid_up_to()
                ));
            }
        };
        match self.format {
            InputFormat::Lines => InputRecord::Text(text.to_owned()),
            InputFormat::JsonLines => match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => InputRecord::Json(text.to_owned()),
                Err(e) => InputRecord::Invalid(format!("the line is not JSON: {e}")),
            },
            InputFormat::Csv => {
                let header = self.open.as_ref().and_then(|o| o.header.as_deref());
                match csv::row_to_json(header.map_or(&[][..], |h| &h[..]), text) {
                    Ok(json) => InputRecord::Json(json),
                    Err(e) => InputRecord::Invalid(format!("invalid CSV row: {e}")),
                }
            }
        }
    }
}

impl Source for FileSource {
    type Record = InputRecord;

    fn next_record(&mut self) -> Option<Result<(u64, InputRecord), BoxError>> {
        if self.next_id >= self.total() {
            return None;
        }
        let id = self.next_id;
        Some(
            self.read_raw(self.max_record_bytes)
                .map(|raw| (id, self.decode(raw))),
        )
    }

    fn seek(&mut self, id: u64) -> Result<bool, BoxError> {
        let total = self.total();
        let id = id.min(total);
        if id <= self.next_id {
            return Ok(true);
        }
        if id == total {
            self.next_id = total;
            self.open = None;
            return Ok(true);
        }
        let (k, at) = index::entry_for(id, self.index_every);
        // Reading forward is cheaper than reopening when the target is close and the
        // index has nothing nearer.
        if at > self.next_id || self.open.is_none() {
            let (file, offset) = self
                .offsets
                .get(k)
                .copied()
                .ok_or_else(|| format!("the input index has no entry for record {id}"))?;
            self.open_at(file as usize, offset)?;
            self.next_id = at;
        }
        while self.next_id < id {
            self.read_raw(2)?;
            self.skipped_by_reading += 1;
        }
        Ok(true)
    }
}
