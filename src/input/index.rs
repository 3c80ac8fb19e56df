//! The sparse offset index: where every 4,096th record starts, built in the same pass that
//! counts the records when a job is created, and kept in the store (`job.NAME.input`), so a
//! rerun seeks to the first unfinished record after reading at most 4,095 records it does
//! not need.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use super::InputFormat;
use super::csv;
use super::split::RecordReader;

/// Records between two index entries.
pub(crate) const INDEX_EVERY: u64 = 4096;

/// Read buffer of the scans and of the source.
pub(crate) const READ_BUFFER: usize = 1 << 20;

/// What one pass over a file found.
#[derive(Debug, Default)]
pub(crate) struct FileScan {
    pub records: u64,
}

/// A file's record reader and, for CSV, its header.
pub(crate) type Opened = (RecordReader<BufReader<File>>, Option<Vec<String>>);

/// Opens `path` and, for CSV, reads its header (the first non-blank record). Returns the
/// reader positioned after the header, and the header.
pub(crate) fn open_records(
    path: &Path,
    format: InputFormat,
    max_record_bytes: usize,
) -> crate::Result<Opened> {
    let file = File::open(path).map_err(|e| {
        crate::Error::Io(std::io::Error::new(
            e.kind(),
            format!("cannot open input {}: {e}", path.display()),
        ))
    })?;
    let mut reader = RecordReader::new(
        BufReader::with_capacity(READ_BUFFER, file),
        0,
        format == InputFormat::Csv,
        format != InputFormat::Lines,
    );
    if format != InputFormat::Csv {
        return Ok((reader, None));
    }
    let mut buf = Vec::new();
    let bad = |why: String| {
        crate::Error::InvalidArgument(format!("input {} is not usable CSV: {why}", path.display()))
    };
    let Some(raw) = reader.next_record(&mut buf, max_record_bytes)? else {
        // An empty CSV file has no header and no records.
        return Ok((reader, Some(Vec::new())));
    };
    if raw.truncated {
        return Err(bad(format!(
            "its header is longer than {max_record_bytes} bytes"
        )));
    }
    let text =
        std::str::from_utf8(&buf).map_err(|e| bad(format!("its header is not UTF-8 ({e})")))?;
    let header = csv::parse_header(text).map_err(|e| bad(format!("its header: {e}")))?;
    Ok((reader, Some(header)))
}

/// Counts the records of `path` (after the header, for CSV), calling `at_record(global id,
/// offset)` for each so the caller can note the index entries.
pub(crate) fn scan_file(
    path: &Path,
    format: InputFormat,
    max_record_bytes: usize,
    mut at_record: impl FnMut(u64),
) -> crate::Result<FileScan> {
    let (mut reader, _) = open_records(path, format, max_record_bytes)?;
    let mut buf = Vec::with_capacity(2);
    let mut scan = FileScan::default();
    while let Some(raw) = reader.next_record(&mut buf, 2)? {
        at_record(raw.start);
        scan.records += 1;
    }
    Ok(scan)
}

/// Entry of the index for global record `id`: (entry number, record id it points at).
pub(crate) fn entry_for(id: u64, every: u64) -> (usize, u64) {
    let k = id / every.max(1);
    (k as usize, k * every.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_entries_point_at_every_nth_record_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, "0\n1\n2\n").unwrap();
        std::fs::write(&b, "3\n\n5\n6").unwrap();
        let every = 2;
        let mut id = 0u64;
        let mut offsets = Vec::new();
        for (f, p) in [&a, &b].into_iter().enumerate() {
            scan_file(p, InputFormat::Lines, 100, |off| {
                if id.is_multiple_of(every) {
                    offsets.push((f, off));
                }
                id += 1;
            })
            .unwrap();
        }
        assert_eq!(id, 7);
        assert_eq!(offsets, [(0, 0), (0, 4), (1, 2), (1, 5)]);
        assert_eq!(entry_for(5, every), (2, 4));
        assert_eq!(entry_for(0, 4096), (0, 0));
        assert_eq!(entry_for(4097, 4096), (1, 4096));
    }
}
