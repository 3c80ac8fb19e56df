//! Resumable file input: the records of line, JSON Lines or CSV files as a seekable
//! [`Source`](crate::Source), with the files recorded in the job's contract.
//!
//! ```
//! use resumable::{Discard, FileInput, InputFormat, InputRecord, Json, JobOptions, Runner, Store};
//! use resumable::ProcessError;
//! # fn main() -> resumable::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let input = dir.path().join("words.txt");
//! std::fs::write(&input, "alpha\nbeta\ngamma\n")?;
//! let store = Store::open(dir.path().join("job.redb"))?;
//! // Scans the files at creation (records, offset index, fingerprints); a rerun checks the
//! // files against what was recorded and reads only what is not done.
//! let files = FileInput::builder([&input]).format(InputFormat::Lines).open(&store, "upper")?;
//! let job = store.job::<Discard<Json>>("upper", files.job_options(JobOptions::new()))?;
//! let report = Runner::new(job).workers(2).complete_on_end(true).run(
//!     files.source(),
//!     |_id, record: &InputRecord| match record {
//!         InputRecord::Text(line) => Ok(Json::string(&line.to_uppercase())),
//!         other => Err(ProcessError::permanent(other.invalid_reason().unwrap_or("not text").to_owned())),
//!     },
//! )?;
//! assert_eq!(report.job.done_count(), 3);
//! # Ok(()) }
//! ```
//!
//! **Records.** A record is a line (see `split`): for [`InputFormat::Lines`] every line,
//! blank ones included; for [`InputFormat::JsonLines`] and [`InputFormat::Csv`] blank lines
//! are skipped (they hold no value). A CSV file's first record is its header; a quoted
//! field may span lines. A record's id is its 0-based index across all files in order.
//!
//! **The contract.** [`FileInput::builder`]`.open` records, when the job is first
//! created, each file's canonical path, size and fingerprint (see `manifest`), the record
//! count and a sparse offset index, in the store's optional `job.NAME.input` table. On a
//! rerun it compares the files with that record and refuses a change with
//! [`Error::JobMismatch`](crate::Error::JobMismatch) naming the file and what changed
//! (missing, truncated, appended to, edited, reordered). Its digest also goes into the
//! job's own input manifest ([`FileInput::job_options`]), so a job created elsewhere is
//! gated too.

mod csv;
mod index;
mod manifest;
mod source;
mod split;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::job::{JobOptions, manifest_digest};
use crate::store::Store;
use crate::store::{StoredFile, StoredInput};

pub use source::FileSource;

/// How the bytes of an input file are cut into records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InputFormat {
    /// One record per line, as text.
    Lines,
    /// One JSON document per line (blank lines skipped).
    JsonLines,
    /// RFC 4180 CSV with a header row; each row is a JSON object keyed by the header.
    Csv,
}

impl InputFormat {
    /// The format's name: `lines`, `jsonl` or `csv`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            InputFormat::Lines => "lines",
            InputFormat::JsonLines => "jsonl",
            InputFormat::Csv => "csv",
        }
    }
}

impl std::fmt::Display for InputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record of a file input, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputRecord {
    /// A line of a [`InputFormat::Lines`] input.
    Text(String),
    /// A JSON document: a JSON Lines line (as written), or a CSV row as an object.
    Json(String),
    /// A record that cannot be used, and why (not UTF-8, not JSON, a malformed CSV row,
    /// longer than the limit). Settle it as a permanent failure.
    Invalid(String),
}

impl InputRecord {
    /// The reason, for [`InputRecord::Invalid`].
    #[must_use]
    pub fn invalid_reason(&self) -> Option<&str> {
        match self {
            InputRecord::Invalid(why) => Some(why),
            _ => None,
        }
    }

    /// The record as one line of text: a line as it was, a JSON document as JSON.
    #[must_use]
    pub fn text(&self) -> Option<&str> {
        match self {
            InputRecord::Text(t) | InputRecord::Json(t) => Some(t),
            InputRecord::Invalid(_) => None,
        }
    }

    /// The record as a JSON value's text: a line becomes a JSON string.
    #[must_use]
    pub fn to_json_text(&self) -> Option<String> {
        match self {
            InputRecord::Text(t) => Some(serde_json::Value::from(t.as_str()).to_string()),
            InputRecord::Json(j) => Some(j.clone()),
            InputRecord::Invalid(_) => None,
        }
    }
}

/// Builds a [`FileInput`].
#[derive(Clone, Debug)]
#[must_use]
pub struct FileInputBuilder {
    paths: Vec<PathBuf>,
    format: InputFormat,
    max_record_bytes: usize,
}

impl FileInputBuilder {
    /// The record format. Default: [`InputFormat::Lines`].
    pub fn format(mut self, format: InputFormat) -> Self {
        self.format = format;
        self
    }

    /// Longest record kept, in bytes; a longer one is yielded as [`InputRecord::Invalid`]
    /// (it is never held in memory whole). Default: 16 MiB.
    pub fn max_record_bytes(mut self, bytes: usize) -> Self {
        self.max_record_bytes = bytes.max(1);
        self
    }

    /// Checks the files against what job `job` of `store` recorded, or (for a new job)
    /// scans them and records them. See the module docs.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no files, standard input (`-`), a path that is not a
    /// regular file (a pipe cannot be read again on resume) or does not exist, or an
    /// unusable CSV header; [`Error::JobMismatch`] when the files differ from what the job
    /// recorded; [`Error::Io`] and storage errors.
    pub fn open(self, store: &Store, job: &str) -> Result<FileInput> {
        if self.paths.is_empty() {
            return Err(Error::InvalidArgument("no input files given".into()));
        }
        let job_exists = store.jobs()?.iter().any(|j| j == job);
        let recorded = store.read_input(job)?;
        if let (true, Some(stored)) = (job_exists, &recorded) {
            if stored.format != self.format.as_str() {
                return Err(Error::JobMismatch {
                    job: job.to_owned(),
                    field: "input format",
                    expected: stored.format.clone(),
                    found: self.format.as_str().to_owned(),
                });
            }
            if let Some(change) = manifest::compare(&stored.files, &self.paths)? {
                return Err(Error::JobMismatch {
                    job: job.to_owned(),
                    field: "input",
                    expected: change.expected,
                    found: change.found,
                });
            }
            return Ok(FileInput::from_stored(self, stored.clone(), false));
        }
        let stored = self.scan()?;
        // A job recorded by an older build (or a fork) has no input table: its own input
        // manifest digest gates it, and the table is not written for it here, so that a
        // table never describes input the job did not accept.
        if !job_exists {
            store.write_input(job, &stored)?;
        }
        Ok(FileInput::from_stored(self, stored, true))
    }

    /// One pass over every file: record counts, the offset index and fingerprints.
    fn scan(&self) -> Result<StoredInput> {
        let mut files = Vec::with_capacity(self.paths.len());
        let mut offsets = Vec::new();
        let mut id = 0u64;
        for (i, path) in self.paths.iter().enumerate() {
            let (canonical, size) = manifest::check_path(path)?;
            let file_no = u32::try_from(i)
                .map_err(|_| Error::InvalidArgument("too many input files".into()))?;
            let scan = index::scan_file(path, self.format, self.max_record_bytes, |offset| {
                if id.is_multiple_of(index::INDEX_EVERY) {
                    offsets.push((file_no, offset));
                }
                id += 1;
            })?;
            let mut f = std::fs::File::open(path)?;
            let now = f.metadata()?.len();
            if now != size {
                return Err(Error::InvalidArgument(format!(
                    "input {} changed size while it was being read ({size} then {now} bytes); wait until it is complete",
                    path.display()
                )));
            }
            let fingerprint = manifest::fingerprint(&mut f, size)?;
            files.push(StoredFile {
                path: canonical.to_string_lossy().into_owned(),
                size,
                fingerprint,
                records: scan.records,
            });
        }
        Ok(StoredInput {
            format: self.format.as_str().to_owned(),
            files,
            index_every: index::INDEX_EVERY,
            offsets,
        })
    }
}

/// Input files checked against (or recorded into) a job's contract: see the module docs.
#[derive(Debug)]
pub struct FileInput {
    paths: Arc<Vec<PathBuf>>,
    format: InputFormat,
    max_record_bytes: usize,
    stored: StoredInput,
    starts: Arc<Vec<u64>>,
    offsets: Arc<Vec<(u32, u64)>>,
    scanned: bool,
}

impl FileInput {
    /// A builder over `paths`, read in this order.
    pub fn builder<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> FileInputBuilder {
        FileInputBuilder {
            paths: paths.into_iter().map(|p| p.as_ref().to_owned()).collect(),
            format: InputFormat::Lines,
            max_record_bytes: 16 << 20,
        }
    }

    fn from_stored(b: FileInputBuilder, stored: StoredInput, scanned: bool) -> FileInput {
        let mut starts = Vec::with_capacity(stored.files.len() + 1);
        let mut total = 0u64;
        for f in &stored.files {
            starts.push(total);
            total += f.records;
        }
        starts.push(total);
        FileInput {
            paths: Arc::new(b.paths),
            format: b.format,
            max_record_bytes: b.max_record_bytes,
            offsets: Arc::new(stored.offsets.clone()),
            stored,
            starts: Arc::new(starts),
            scanned,
        }
    }

    /// Records in all files.
    #[must_use]
    pub fn total_records(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Whether this open read the files whole (a new job) rather than the recorded index.
    #[must_use]
    pub fn scanned(&self) -> bool {
        self.scanned
    }

    /// The record format.
    #[must_use]
    pub fn format(&self) -> InputFormat {
        self.format
    }

    /// A digest of the manifest (format, then each file's path, size and fingerprint).
    #[must_use]
    pub fn manifest_digest(&self) -> u64 {
        let mut items = vec![format!("format {}", self.stored.format)];
        for f in &self.stored.files {
            let hex = f.fingerprint.iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            });
            items.push(format!("{}\0{}\0{hex}", f.path, f.size));
        }
        manifest_digest(items)
    }

    /// `options` with the record count and the manifest digest set.
    pub fn job_options(&self, options: JobOptions) -> JobOptions {
        options
            .total_records(self.total_records())
            .input_manifest(self.manifest_digest())
    }

    /// The records, from the first; the runner seeks past what is done.
    #[must_use]
    pub fn source(&self) -> FileSource {
        FileSource::new(
            Arc::clone(&self.paths),
            self.format,
            self.max_record_bytes,
            Arc::clone(&self.starts),
            self.stored.index_every,
            Arc::clone(&self.offsets),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Source as _;

    fn next(src: &mut FileSource) -> (u64, InputRecord) {
        src.next_record().and_then(Result::ok).unwrap()
    }

    #[test]
    fn seeking_reads_fewer_than_index_every_records_across_files_and_headers() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        let b = dir.path().join("b.csv");
        let mut text_a = String::from("k,v\n");
        for i in 0..10_000 {
            write!(text_a, "{i},\"line\n{i}\"\n").unwrap();
        }
        let mut text_b = String::from("k,v\n\n");
        for i in 10_000..20_000 {
            writeln!(text_b, "{i},x").unwrap();
        }
        std::fs::write(&a, text_a).unwrap();
        std::fs::write(&b, text_b).unwrap();
        let store = Store::open(dir.path().join("s.redb")).unwrap();
        let input = FileInput::builder([&a, &b])
            .format(InputFormat::Csv)
            .open(&store, "j")
            .unwrap();
        assert!(input.scanned());
        assert_eq!(input.total_records(), 20_000);
        let mut src = input.source();
        for target in [17_000u64, 9_999, 10_000, 19_999] {
            let mut src2 = input.source();
            assert!(src2.seek(target).unwrap());
            let (id, rec) = next(&mut src2);
            assert_eq!(id, target);
            let want = if target < 10_000 {
                format!("{{\"k\":\"{target}\",\"v\":\"line\\n{target}\"}}")
            } else {
                format!("{{\"k\":\"{target}\",\"v\":\"x\"}}")
            };
            assert_eq!(rec, InputRecord::Json(want));
            assert!(src2.records_skipped_by_reading() < index::INDEX_EVERY);
        }
        assert_eq!(next(&mut src).0, 0);
        assert!(src.seek(20_000).unwrap());
        assert!(src.next_record().is_none());
    }

    #[test]
    fn a_rerun_uses_the_recorded_index_and_refuses_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.txt");
        std::fs::write(&a, "1\n2\n3\n").unwrap();
        let store = Store::open(dir.path().join("s.redb")).unwrap();
        let input = FileInput::builder([&a]).open(&store, "j").unwrap();
        let job = store
            .job::<crate::Discard<crate::Json>>("j", input.job_options(JobOptions::new()))
            .unwrap();
        drop(job);
        let again = FileInput::builder([&a]).open(&store, "j").unwrap();
        assert!(!again.scanned());
        assert_eq!(again.manifest_digest(), input.manifest_digest());
        std::fs::write(&a, "1\n2\n3\n4\n").unwrap();
        let err = FileInput::builder([&a]).open(&store, "j").unwrap_err();
        assert!(
            matches!(&err, Error::JobMismatch { found, .. } if found.contains("appended")),
            "{err}"
        );
        let err = FileInput::builder([&a])
            .format(InputFormat::JsonLines)
            .open(&store, "j")
            .unwrap_err();
        assert!(matches!(
            err,
            Error::JobMismatch {
                field: "input format",
                ..
            }
        ));
    }
}
