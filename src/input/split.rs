//! Record boundaries in a byte stream, with bounded memory.
//!
//! A record is a line: the bytes up to a `\n` (or the end of the file), without the `\n`
//! and without one `\r` before it. For CSV, a `\n` inside a quoted field does not end the
//! record (RFC 4180: a field that starts with a quote runs to the closing quote; a doubled
//! quote inside it is one quote).
//! A record longer than the caller's limit is still found whole (its boundaries are
//! exact, so the ids after it stay right) but only its first `max` bytes are kept: reading
//! a 10 GB line costs 10 GB of reading and `max` bytes of memory.

use std::io::{self, BufRead};

/// Where a CSV scan is, for boundaries only: a quote opens a quoted field only at the
/// start of a field, so a stray quote in an unquoted field (an error the field parser
/// reports) cannot swallow the records after it.
#[derive(Clone, Copy)]
enum Csv {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

/// Where one record lies, and whether its bytes were cut at the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawRecord {
    /// Byte offset of its first byte in the file.
    pub start: u64,
    /// Its length in bytes (without the line terminator).
    pub len: u64,
    /// Whether it is longer than the limit (its kept bytes are only a prefix).
    pub truncated: bool,
}

/// Reads records one after another from a buffered reader.
#[derive(Debug)]
pub(crate) struct RecordReader<R> {
    inner: R,
    /// Offset of the next unread byte.
    pos: u64,
    /// Quote-aware boundaries (CSV).
    quoted: bool,
    /// Skip records that are empty (JSON Lines and CSV skip blank lines).
    skip_blank: bool,
}

impl<R: BufRead> RecordReader<R> {
    /// A reader whose next byte is at offset `pos` of the file.
    pub(crate) fn new(inner: R, pos: u64, quoted: bool, skip_blank: bool) -> Self {
        RecordReader {
            inner,
            pos,
            quoted,
            skip_blank,
        }
    }

    /// Offset of the next unread byte.
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    /// The underlying reader (its position is [`RecordReader::position`]).
    pub(crate) fn into_inner(self) -> R {
        self.inner
    }

    /// The next record: its first `max` bytes go into `out` (cleared first). `None` at the
    /// end of the input.
    pub(crate) fn next_record(
        &mut self,
        out: &mut Vec<u8>,
        max: usize,
    ) -> io::Result<Option<RawRecord>> {
        loop {
            out.clear();
            let start = self.pos;
            let mut len = 0u64;
            let mut csv = Csv::FieldStart;
            let mut any = false;
            loop {
                let buf = match self.inner.fill_buf() {
                    Ok(b) => b,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if buf.is_empty() {
                    break;
                }
                any = true;
                let (upto, found) = if self.quoted {
                    let mut hit = None;
                    for (i, &b) in buf.iter().enumerate() {
                        csv = match (csv, b) {
                            (Csv::Quoted, b'"') => Csv::QuoteInQuoted,
                            (Csv::Quoted, _) | (Csv::QuoteInQuoted | Csv::FieldStart, b'"') => {
                                Csv::Quoted
                            }
                            (_, b'\n') => {
                                hit = Some(i);
                                break;
                            }
                            (_, b',') => Csv::FieldStart,
                            _ => Csv::Unquoted,
                        };
                    }
                    hit.map_or((buf.len(), false), |i| (i, true))
                } else {
                    buf.iter()
                        .position(|&b| b == b'\n')
                        .map_or((buf.len(), false), |i| (i, true))
                };
                if out.len() < max {
                    let room = max - out.len();
                    out.extend_from_slice(&buf[..upto.min(room)]);
                }
                len += upto as u64;
                let advance = upto + usize::from(found);
                self.inner.consume(advance);
                self.pos += advance as u64;
                if found {
                    break;
                }
            }
            if !any {
                return Ok(None);
            }
            let truncated = len > max as u64;
            if !truncated && out.last() == Some(&b'\r') {
                out.pop();
                len -= 1;
            }
            if self.skip_blank && len == 0 {
                continue;
            }
            return Ok(Some(RawRecord {
                start,
                len,
                truncated,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], quoted: bool, skip_blank: bool, max: usize) -> Vec<(u64, String, bool)> {
        let mut r = RecordReader::new(
            io::BufReader::with_capacity(3, input),
            0,
            quoted,
            skip_blank,
        );
        let mut out = Vec::new();
        let mut v = Vec::new();
        while let Some(rec) = r.next_record(&mut out, max).unwrap_or(None) {
            v.push((
                rec.start,
                String::from_utf8_lossy(&out).into_owned(),
                rec.truncated,
            ));
        }
        v
    }

    #[test]
    fn lines_end_at_newlines_and_the_last_needs_none() {
        let v = all(b"ab\r\n\ncd\nlast", false, false, 100);
        let texts: Vec<&str> = v.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(texts, ["ab", "", "cd", "last"]);
        assert_eq!(v[2].0, 5);
        assert!(all(b"", false, false, 100).is_empty());
        assert_eq!(all(b"\n", false, false, 100).len(), 1);
        assert!(all(b"\n\r\n", false, true, 100).is_empty());
    }

    #[test]
    fn quoted_newlines_stay_inside_a_csv_record() {
        let v = all(
            b"a,\"x\ny\"\n\"q\"\"\n\",b\nstray,x\"y\nz\n",
            true,
            true,
            100,
        );
        let texts: Vec<&str> = v.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(texts, ["a,\"x\ny\"", "\"q\"\"\n\",b", "stray,x\"y", "z"]);
    }

    #[test]
    fn a_long_record_keeps_its_prefix_and_the_next_one_is_exact() {
        let v = all(b"0123456789\nok\n", false, false, 4);
        assert_eq!(v[0], (0, "0123".to_owned(), true));
        assert_eq!(v[1], (11, "ok".to_owned(), false));
    }
}
