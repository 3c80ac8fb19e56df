//! What a job is opened with: [`JobOptions`], and the input manifest digest.

use super::policy::CommitPolicy;
use crate::codec;
use crate::store::InputChange;
#[cfg(doc)]
use crate::{Discard, Error};

/// A digest of whatever identifies a job's input, stored with the job so a resume against
/// different input is refused ([`Error::JobMismatch`]).
///
/// Feed it, in order, every item that would change if the input changed: for files, each
/// path with its size and a content fingerprint (or modification time, if you accept that
/// a rewrite in place with the same size and time goes unnoticed); for a database query, the
/// query text and the snapshot or watermark it reads; for a list of ids, the ids. Each item
/// is hashed with its length, so `["ab", "c"]` and `["a", "bc"]` differ. The hash is 64-bit
/// FNV-1a: it catches accidental changes, not deliberate collisions.
///
/// ```
/// # use resumable::manifest_digest;
/// let inputs = ["data/part-0.csv:10485760:5d41402a", "data/part-1.csv:9437184:7d793037"];
/// let digest = manifest_digest(inputs);
/// assert_ne!(digest, manifest_digest(&inputs[..1]));
/// ```
#[must_use]
pub fn manifest_digest<I: AsRef<[u8]>>(inputs: impl IntoIterator<Item = I>) -> u64 {
    let mut h = codec::fnv64(&[b"resumable-manifest"]);
    for item in inputs {
        let bytes = item.as_ref();
        h = codec::fnv64(&[&h.to_le_bytes(), &(bytes.len() as u64).to_le_bytes(), bytes]);
    }
    h
}

/// Options for opening a job.
#[derive(Clone, Debug)]
#[must_use]
pub struct JobOptions {
    pub(crate) schema_version: u32,
    pub(crate) input_manifest: Option<u64>,
    pub(crate) total_records: Option<u64>,
    pub(crate) commit_policy: CommitPolicy,
    pub(crate) snapshot_every_commits: u64,
    pub(crate) progress_every_commits: u64,
    pub(crate) keep_snapshots: usize,
    pub(crate) create: bool,
    pub(crate) input_change: InputChange,
    pub(crate) code_version: String,
}

/// The code version a job records when none is given: `resumable-` and the crate version.
pub const DEFAULT_CODE_VERSION: &str = concat!("resumable-", env!("CARGO_PKG_VERSION"));

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            schema_version: 0,
            input_manifest: None,
            total_records: None,
            commit_policy: CommitPolicy::default(),
            snapshot_every_commits: 16,
            progress_every_commits: crate::store::DEFAULT_PROGRESS_EVERY_COMMITS,
            keep_snapshots: 3,
            create: true,
            input_change: InputChange::Refuse,
            code_version: DEFAULT_CODE_VERSION.to_owned(),
        }
    }
}

impl JobOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// The user's schema version of the state and output types; a reopen with another
    /// version is refused. Default: 0.
    pub fn schema_version(mut self, version: u32) -> Self {
        self.schema_version = version;
        self
    }

    /// A digest of the input (see [`manifest_digest`]). Once a job has a manifest, every
    /// open must declare the same one: another digest, or none, is refused with
    /// [`Error::JobMismatch`] (see [`JobOptions::allow_input_change`] to override).
    /// Default: none (not checked).
    pub fn input_manifest(mut self, digest: u64) -> Self {
        self.input_manifest = Some(digest);
        self
    }

    /// The number of records in the input, for progress and ETA. Once a job has a size,
    /// a reopen declaring another one is refused with [`Error::JobMismatch`] (field
    /// `total records`), unless [`JobOptions::input_grows`] or
    /// [`JobOptions::allow_input_change`] says otherwise. Default: unknown.
    pub fn total_records(mut self, total: u64) -> Self {
        self.total_records = Some(total);
        self
    }

    /// When submitted records are committed. Default: [`CommitPolicy::default`].
    pub fn commit_policy(mut self, policy: CommitPolicy) -> Self {
        self.commit_policy = policy;
        self
    }

    /// Write a snapshot of the state in every Nth commit. Default: 16. Resume replays at
    /// most this many commits. 0 disables snapshots written on the commit path. A state
    /// that folds nothing (`Fold::FOLDS_OUTPUTS == false`, such as [`Discard`]) gets none on
    /// the commit path: resuming it replays nothing.
    pub fn snapshot_every_commits(mut self, commits: u64) -> Self {
        self.snapshot_every_commits = commits;
        self
    }

    /// How often the commit path brings the stored done ranges and id index up to date:
    /// every `commits` commits (default 256, at least 1), or sooner once the commits since
    /// hold 8 MiB. In between, a commit writes only its segment (its lineage entry and
    /// outputs), and opening the job reads those recent segments to rebuild its progress.
    /// Lower values make opening cheaper; higher ones make commits cheaper.
    pub fn progress_every_commits(mut self, commits: u64) -> Self {
        self.progress_every_commits = commits.max(1);
        self
    }

    /// How many snapshots retention keeps (pinned ones are kept in addition). Default: 3;
    /// at least 1.
    pub fn keep_snapshots(mut self, keep: usize) -> Self {
        self.keep_snapshots = keep.max(1);
        self
    }

    /// The input only grows (an append-only log, a directory that gains files): a reopen
    /// may declare a larger [`JobOptions::total_records`] and a new manifest, which are
    /// recorded; a smaller size is still refused. Default: `false`.
    pub fn input_grows(mut self, grows: bool) -> Self {
        if grows {
            self.input_change = InputChange::Grows;
        } else if self.input_change == InputChange::Grows {
            self.input_change = InputChange::Refuse;
        }
        self
    }

    /// Accept any change of the declared input on this open (an operator's override after
    /// fixing the input on purpose): the new manifest and size are recorded, and the change
    /// is logged at `warn`. Records already done are not processed again. Default: `false`.
    pub fn allow_input_change(mut self, allow: bool) -> Self {
        if allow {
            self.input_change = InputChange::Any;
        } else if self.input_change == InputChange::Any {
            self.input_change = InputChange::Refuse;
        }
        self
    }

    /// Open an existing job without declaring its input: the stored manifest and size are
    /// neither checked nor changed. For tools that read or check a job rather than feed it
    /// (the operator CLI's `verify` opens jobs this way). Default: `false`.
    pub fn input_unchecked(mut self, unchecked: bool) -> Self {
        if unchecked {
            self.input_change = InputChange::Unchecked;
        } else if self.input_change == InputChange::Unchecked {
            self.input_change = InputChange::Refuse;
        }
        self
    }

    /// The version of the code that processes the records (a free string: a release tag,
    /// a git commit, a hash of the command line), recorded in every commit's lineage entry
    /// so `lineage`, `status` and `redo --code-version` can tell which code produced which
    /// outputs. A run with another version than the last one is allowed: it is not a job
    /// mismatch. Default: [`DEFAULT_CODE_VERSION`].
    pub fn code_version(mut self, version: impl Into<String>) -> Self {
        self.code_version = version.into();
        self
    }

    /// Create the job if it does not exist. Default: `true`; with `false` a missing job is
    /// [`Error::JobNotFound`].
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }
}
