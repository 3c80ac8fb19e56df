//! Salvage: recovering the committed records of a store that cannot be opened.
//!
//! A disk that loses acknowledged writes, a bad sector in the header, a stray `dd` or a
//! truncating copy can leave a file redb refuses to open ("All roots are corrupted"), while
//! nearly every commit segment in it is intact. Salvage reads the file's raw bytes without
//! redb (`scan`), keeps per job the longest chain of commits that verifies from the first
//! (`rebuild`), and writes it as a new store through the same atomic creation path as any
//! store. The damaged file is only read.
//!
//! The rules, and what cannot be recovered, are in the repository's `docs/SALVAGE.md`.

mod rebuild;
pub(crate) mod scan;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::Store;
use crate::error::{Error, Result};

/// What [`Store::salvage`] recovered, per job, and what it found but did not use.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct SalvageReport {
    /// The damaged file that was read.
    pub source: PathBuf,
    /// The new store that was written (`None` when nothing could be salvaged and no store
    /// was written).
    pub into: Option<PathBuf>,
    /// Bytes of the damaged file that were scanned.
    pub bytes_scanned: u64,
    /// Distinct intact commit segments found (by commit seq and lineage hash).
    pub segments_found: u64,
    /// Distinct intact job metadata records found.
    pub job_metas_found: u64,
    /// Distinct intact snapshots found (none is used: see [`SalvagedJob::snapshots_used`]).
    pub snapshots_found: u64,
    /// The jobs found, with what was salvaged of each.
    pub jobs: Vec<SalvagedJob>,
    /// Chains of commits that could not be attributed to a job (several jobs whose
    /// metadata disagree, or no metadata at all): found, not written.
    pub unattributed_chains: Vec<UnusedSegment>,
    /// Whether the new store passed [`Store::verify_job`] for every job written.
    pub verified: bool,
    /// Milliseconds spent reading and scanning the damaged file.
    pub scan_ms: u64,
    /// Milliseconds spent writing the new store (0 when none was written).
    pub write_ms: u64,
    /// Milliseconds spent verifying the new store.
    pub verify_ms: u64,
}

impl SalvageReport {
    /// Commits salvaged over all jobs.
    #[must_use]
    pub fn commits_salvaged(&self) -> u64 {
        self.jobs.iter().map(|j| j.commits_salvaged).sum()
    }

    /// Whether anything was salvaged (a job with at least one commit).
    #[must_use]
    pub fn salvaged_anything(&self) -> bool {
        self.commits_salvaged() > 0
    }
}

/// One job in a [`SalvageReport`].
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct SalvagedJob {
    /// The job's name in the new store.
    pub name: String,
    /// Its name in the damaged store, when that is known and differs (several jobs).
    pub original_name: Option<String>,
    /// Commits salvaged: seq 1 up to this number, every one verified.
    pub commits_salvaged: u64,
    /// The highest commit seq of any intact segment attributed to this job.
    pub highest_seq_seen: u64,
    /// Outputs in the salvaged commits.
    pub records_salvaged: u64,
    /// Dead letters salvaged (an intact row whose id a salvaged commit dead-lettered).
    pub dead_letters_salvaged: u64,
    /// Ids a salvaged commit dead-lettered whose row was not found intact: not done in
    /// the new store, so the job retries them.
    pub dead_letters_lost: u64,
    /// Snapshots written to the new store: always 0, the job's state is rebuilt by
    /// replaying the salvaged outputs when it is opened (salvage has no state type to check
    /// a snapshot against the outputs).
    pub snapshots_used: u64,
    /// Why the chain stops after `commits_salvaged`.
    pub stop: ChainStop,
    /// Intact segments found for this job but not salvaged, ascending by seq.
    pub unused_segments: Vec<UnusedSegment>,
}

/// Why a salvaged chain ends where it does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChainStop {
    /// No intact segment links to the last salvaged commit (it was the last commit, or the
    /// next one is damaged): segments with a higher seq are beyond a gap.
    #[default]
    Gap,
    /// Several intact segments claim the next seq and link to the last salvaged commit
    /// (a branch dropped by `rewind` or by a rolled-back commit, and the current one), and
    /// nothing in the file tells which is current.
    Fork,
}

/// An intact commit segment that salvage found and did not use.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct UnusedSegment {
    /// Its commit seq.
    pub seq: u64,
    /// Its lineage hash.
    pub hash: String,
    /// The previous lineage hash it links to.
    pub prev_hash: String,
    /// Outputs it holds.
    pub outputs: u64,
    /// Why it was not used: `beyond_gap` (a seq after a missing or ambiguous commit),
    /// `competing` (claims a seq the chain took, or forks from it), `no_job` (its chain
    /// cannot be attributed to a job).
    pub reason: &'static str,
}

/// Options for [`Store::salvage_with`].
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct SalvageOptions {
    identity: Option<JobIdentity>,
}

/// Who a job is, for when none of its metadata survived.
#[derive(Clone, Debug)]
pub(crate) struct JobIdentity {
    pub name: String,
    pub state_type: String,
    pub schema_version: u32,
    pub input_manifest: Option<u64>,
    pub total_records: Option<u64>,
}

impl SalvageOptions {
    /// Default options: jobs are named by the metadata found in the file.
    pub fn new() -> Self {
        Self::default()
    }

    /// The job to attribute the commits to when no intact job metadata is found (a
    /// single-job store whose metadata page was destroyed): its name, its state type as
    /// [`Fold::type_name`](crate::Fold::type_name) gives it, and the `options` it is opened
    /// with (schema version, input manifest, total records). Ignored when metadata is found.
    /// Default: none (such commits are reported, not written).
    pub fn job<S: crate::Fold>(self, name: &str, options: &crate::JobOptions) -> Self {
        self.job_identity(name, &S::type_name(), options.schema_version)
            .with_options(options)
    }

    /// As [`SalvageOptions::job`], by the state type's name and schema version (for the
    /// CLI, which does not link the job's types).
    pub fn job_identity(mut self, name: &str, state_type: &str, schema_version: u32) -> Self {
        self.identity = Some(JobIdentity {
            name: name.to_owned(),
            state_type: state_type.to_owned(),
            schema_version,
            input_manifest: None,
            total_records: None,
        });
        self
    }

    fn with_options(mut self, options: &crate::JobOptions) -> Self {
        if let Some(id) = &mut self.identity {
            id.input_manifest = options.input_manifest;
            id.total_records = options.total_records;
        }
        self
    }
}

impl Store {
    /// [`Store::salvage_with`] with default [`SalvageOptions`].
    ///
    /// # Errors
    /// As [`Store::salvage_with`].
    pub fn salvage(path: impl AsRef<Path>, into: impl AsRef<Path>) -> Result<SalvageReport> {
        Store::salvage_with(path, into, &SalvageOptions::new())
    }

    /// Reads the store file at `path` as raw bytes, without opening it, and writes the
    /// commits that verify into a new store at `into`, so a job can resume from them. For a
    /// file that cannot be opened ([`Error::Unopenable`]) or that [`Store::verify_job`]
    /// reports damaged.
    ///
    /// Per job, the new store holds the longest chain of commits that verifies from seq 1
    /// (every segment's CRCs and hash links), its outputs byte for byte, and the dead letters
    /// those commits made whose rows are intact; progress is exactly the ids of those
    /// commits, and the job is paused after its last one. No snapshot is written: opening
    /// the job replays the salvaged outputs into the state. `path` is never written. The
    /// rules are in the repository's `docs/SALVAGE.md`.
    ///
    /// When nothing is salvaged (no intact job metadata and no [`SalvageOptions::job`], or
    /// no commit that verifies) no store is written and the report says so
    /// ([`SalvageReport::salvaged_anything`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `into` exists or is `path`; [`Error::Io`] if `path`
    /// cannot be read or `into` cannot be written. On error no file is left at `into`.
    pub fn salvage_with(
        path: impl AsRef<Path>,
        into: impl AsRef<Path>,
        options: &SalvageOptions,
    ) -> Result<SalvageReport> {
        let (path, into) = (path.as_ref(), into.as_ref());
        if into.exists() {
            return Err(Error::InvalidArgument(format!(
                "{} exists; salvage writes a new store: name a path that does not exist",
                into.display()
            )));
        }
        if into == path {
            return Err(Error::InvalidArgument(
                "salvage never writes the damaged file: name another path with --into".into(),
            ));
        }
        let ms = |since: Instant| u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
        let started = Instant::now();
        let bytes = std::fs::read(path)?;
        let found = scan::scan(&bytes);
        let scan_ms = ms(started);
        let started = Instant::now();
        let mut report =
            rebuild::plan_and_write(path, &bytes, &found, into, options.identity.as_ref())?;
        report.scan_ms = scan_ms;
        report.write_ms = ms(started);
        let started = Instant::now();
        if report.into.is_some() {
            let store = Store::open_read_only(into)?;
            let mut verified = true;
            for job in &report.jobs {
                verified &= store.verify_job(&job.name)?.is_ok();
            }
            report.verified = verified;
        }
        report.verify_ms = ms(started);
        tracing::info!(
            source = %path.display(),
            into = %into.display(),
            commits = report.commits_salvaged(),
            "salvage finished"
        );
        Ok(report)
    }
}
