//! [`JobStore`]: one open job's handle on its tables, and the one place that knows how a
//! job is laid out in the file.
//!
//! The `job` module owns the pending group, the fold and the lineage chain; it queues
//! outputs and dead letters in a [`GroupBuilder`](super::GroupBuilder) (`group.rs`), which
//! seals each record as it comes (a CRC over id, seq and payload) and builds the lineage
//! entry and the segment. This handle writes the sealed group: it computes the outputs
//! hash, decides when the done ranges and id index are brought up to date (`progress_mark.rs`)
//! and which snapshots retention retires (`snapshots.rs`), and writes all of it in one
//! transaction (`write.rs`).
//!
//! Why the handle can be poisoned: between sealing a group and the landed commit the job's
//! in-memory state runs ahead of the file (the fold has been applied, the progress mark
//! moved). If the write then fails, only a reopen can tell what landed, so every write is
//! guarded by a [`PoisonDart`] and a poisoned handle refuses further work with
//! [`Error::Poisoned`].

use std::sync::Arc;

use parking_lot::Mutex;

use super::claim::Claim;
use super::group::SealedGroup;
use super::hasher::{Hasher, OutputsHash};
use super::meta::{self, JobMeta};
use super::open::Store;
use super::outputs::Outputs;
use super::poison::{Poison, PoisonDart};
use super::progress_mark::ProgressMark;
use super::read::{self, SeqOrder};
use super::segment;
use super::snapshots::{self, SnapshotBook};
use super::tables::JobTables;
use super::verify::CheckedSnapshots;
use super::write::{self, CommitPlan, SegmentWrite};
use crate::error::{Error, Result};
use crate::lifecycle::JobState;
use crate::lineage::{self, ChainHash, now_ms};
use crate::progress::RangeSet;
use crate::store::VerifyReport;

pub(crate) use super::snapshots::{SnapshotWriter, Written};

/// What a job is, as its opener declares it: checked against the stored job, or used to
/// create it.
#[derive(Clone, Debug)]
pub(crate) struct NewJob {
    pub state_type: String,
    pub schema_version: u32,
    pub input_manifest: Option<u64>,
    pub total_records: Option<u64>,
    /// Create the job when it does not exist.
    pub create: bool,
    /// What an open may change about the declared input.
    pub input_change: InputChange,
    /// Unpinned snapshots retention keeps.
    pub keep_snapshots: usize,
    /// Bring done ranges and the id index up to date every this many commits.
    pub progress_every_commits: u64,
    /// Describes the job's types for its `types` table; called only when creating it.
    pub describe_types: Option<crate::typed::DescribeTypes>,
}

/// What a reopen may change about a job's declared input (manifest and size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InputChange {
    /// The same manifest must be presented, and the size must not change.
    Refuse,
    /// The input may grow (an append-only input): a larger size is recorded; the
    /// manifest may change with it.
    Grows,
    /// Anything goes: the operator said the input changed on purpose (logged).
    Any,
    /// The opener does not declare the input (a tool that reads the job, such as verify):
    /// the stored manifest and size are kept and not checked.
    Unchecked,
}

/// What opening found: the job's progress and the end of its lineage.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// Done ids as of the last commit.
    pub done: RangeSet,
    /// The last commit's seq (0: none yet).
    pub last_seq: u64,
    /// The last lineage entry's hash ([`ChainHash::ZERO`]: none yet).
    pub last_hash: ChainHash,
    /// Whether the job was `Running` when the store was last closed (it crashed).
    pub crashed: bool,
}

/// What a landed commit wrote.
#[derive(Debug)]
pub(crate) struct Landed {
    /// Value bytes handed to redb (segment, dead letters, snapshot).
    pub bytes_written: u64,
    /// The snapshot written with it, if one was.
    pub snapshot: Option<Written>,
    /// The commit's lineage entry hash: the next commit's `prev_hash`.
    pub hash: ChainHash,
    /// The buffer the group was built in, for the next group
    /// ([`GroupBuilder::recycle`](super::GroupBuilder::recycle)).
    pub buffer: Vec<u8>,
}

/// One open job's handle on its tables (see the module docs). Holds the job's claim.
#[derive(Debug)]
pub(crate) struct JobStore {
    claim: Claim,
    tables: JobTables,
    meta: JobMeta,
    mark: ProgressMark,
    book: Arc<Mutex<SnapshotBook>>,
    progress_every_commits: u64,
    poison: Poison,
    /// The last commit whose durable acknowledgement was delivered, as stored at open or
    /// recorded since; `dirty` when it changed since it was last written.
    announced: Option<u64>,
    announced_dirty: bool,
    /// The store is format 2: the next entry (format 3) marks it format 3.
    format_upgrade: bool,
    /// Hashes large commits' outputs off the writer's critical path.
    hasher: Hasher,
}

impl JobStore {
    /// Opens job `name` (creating it when `spec.create` allows) and loads its progress.
    /// A job that exists must match `spec`'s state type, schema version and manifest;
    /// nothing is written when it does not.
    pub(crate) fn open(store: &Store, name: &str, spec: &NewJob) -> Result<(JobStore, Loaded)> {
        if name.is_empty() || name.contains('\0') {
            return Err(Error::InvalidArgument(format!("invalid job name {name:?}")));
        }
        let claim = Claim::take(&store.inner, name)?;
        let tables = JobTables::new(name);
        let existing = {
            let txn = claim.store().begin_read()?;
            meta::read(&txn, name)?
        };
        let meta = match existing {
            Some(meta) => {
                check_matches(&meta, spec)?;
                meta
            }
            None if spec.create => {
                let meta = JobMeta {
                    name: name.to_owned(),
                    state_type: spec.state_type.clone(),
                    schema_version: spec.schema_version,
                    input_manifest: spec.input_manifest,
                    lifecycle: JobState::Created,
                    created_ms: now_ms(),
                    recoveries: 0,
                    pinned: Vec::new(),
                    total_records: spec.total_records,
                };
                let types = spec
                    .describe_types
                    .map(|describe| describe())
                    .unwrap_or_default();
                write::create_job(claim.store(), &tables, &meta, &types)?;
                tracing::info!(job = name, "job created");
                meta
            }
            None => return Err(Error::JobNotFound(name.to_owned())),
        };
        let txn = claim.store().begin_read()?;
        let mut progress = read::load_progress(&txn, &tables)?;
        let generations = read::snapshot_generations(&txn, &tables)?;
        let announced = read::read_announced(&txn, &tables)?;
        let format_upgrade = write::stored_format(&txn)? < super::open::FORMAT_VERSION;
        drop(txn);
        let last = progress.last.take();
        let loaded = Loaded {
            done: std::mem::take(&mut progress.done),
            last_seq: last.as_ref().map_or(0, |e| e.seq),
            last_hash: last.as_ref().map_or(ChainHash::ZERO, |e| e.hash),
            crashed: meta.lifecycle == JobState::Running,
        };
        let book = SnapshotBook::new(generations, meta.pinned.clone(), spec.keep_snapshots);
        let job = JobStore {
            claim,
            tables,
            mark: ProgressMark::from_progress(&progress),
            book: Arc::new(Mutex::new(book)),
            progress_every_commits: spec.progress_every_commits.max(1),
            poison: Poison::default(),
            meta,
            announced,
            announced_dirty: false,
            format_upgrade,
            hasher: Hasher::default(),
        };
        Ok((job, loaded))
    }

    /// Records the open in the metadata once the job was resumed: a crash recovery (the job
    /// was found running), a newly declared input size, and an input change the opener
    /// allowed.
    pub(crate) fn record_open(&mut self, spec: &NewJob) -> Result<()> {
        let mut meta = self.meta.clone();
        if meta.lifecycle == JobState::Running {
            meta.recoveries += 1;
        }
        if spec.input_change != InputChange::Unchecked
            && let Some(total) = spec.total_records
        {
            meta.total_records = Some(total);
        }
        if matches!(spec.input_change, InputChange::Grows | InputChange::Any)
            && spec.input_manifest.is_some()
        {
            meta.input_manifest = spec.input_manifest;
        }
        if meta == self.meta {
            return Ok(());
        }
        let plan = CommitPlan {
            meta: Some(&meta),
            durable: true,
            ..CommitPlan::default()
        };
        self.write(&plan)?;
        self.meta = meta;
        Ok(())
    }

    pub(crate) fn name(&self) -> &str {
        &self.meta.name
    }

    pub(crate) fn lifecycle(&self) -> JobState {
        self.meta.lifecycle
    }

    pub(crate) fn recoveries(&self) -> u64 {
        self.meta.recoveries
    }

    pub(crate) fn total_records(&self) -> Option<u64> {
        self.meta.total_records
    }

    /// Lets knocking readers in (see `StoreInner::answer_readers`); for a runner's idle
    /// committer, which holds no transaction.
    pub(crate) fn answer_readers(&self) {
        self.claim.store().answer_readers();
    }

    /// [`Error::Poisoned`] once a write failed or work ran ahead of the file and did not land.
    pub(crate) fn check_usable(&self) -> Result<()> {
        if self.poison.is_poisoned() {
            Err(Error::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Arms a dart over work that runs the job ahead of the file (see the module docs).
    pub(crate) fn arm(&self) -> PoisonDart {
        self.poison.arm()
    }

    fn write(&self, plan: &CommitPlan<'_>) -> Result<()> {
        self.check_usable()?;
        let dart = self.arm();
        match write::commit(self.claim.store(), &self.tables, plan) {
            Ok(()) => {
                dart.disarm();
                Ok(())
            }
            Err(e) => {
                tracing::error!(job = %self.meta.name, error = %e, "commit failed; handle poisoned until the store is reopened");
                Err(e)
            }
        }
    }

    /// Writes a sealed group in one transaction, with, when given, a snapshot of the state
    /// as of this commit (`state` encoded) and a lifecycle change. Done ranges and the id
    /// index come up to date when the progress mark is due.
    pub(crate) fn commit(
        &mut self,
        group: SealedGroup,
        state: Option<Vec<u8>>,
        lifecycle: Option<JobState>,
        durable: bool,
    ) -> Result<Landed> {
        self.check_usable()?;
        let seq = group.seq();
        let segment_len = group.segment().len();
        let mut bytes_written =
            (segment_len + group.dead.iter().map(|(_, d)| d.len()).sum::<usize>()) as u64;
        self.mark.add(
            seq,
            &group.entry.outputs,
            &group.entry.dead_letters,
            segment_len as u64,
        );
        let (ranges, index, mark) = if self.mark.due(self.progress_every_commits) {
            let (diff, runs) = self.mark.take(seq);
            (Some(diff), runs, Some(seq))
        } else {
            (None, Vec::new(), None)
        };
        // The announced cursor rides along with the progress mark: no extra write per
        // commit, and at most one mark interval of acknowledgements is delivered again.
        let announced = self
            .announced
            .filter(|_| mark.is_some() && self.announced_dirty);
        self.check_usable()?;
        let book = Arc::clone(&self.book);
        let mut book = book.lock();
        let (planned, sealed) = match state {
            Some(state) => {
                let sealed = snapshots::seal(seq, state)?;
                bytes_written += sealed.len() as u64;
                (Some(book.plan()), Some(sealed))
            }
            None => (None, None),
        };
        let meta = lifecycle
            .filter(|&to| to != self.meta.lifecycle)
            .map(|to| JobMeta {
                lifecycle: to,
                ..self.meta.clone()
            });
        // The outputs hash runs on the hasher thread (large groups, 4+ cores) while the
        // transaction writes everything else and copies the segment into a reserved value;
        // the entry is sealed last, over its placeholder. Hashed inline, the entry is sealed
        // into the segment before the transaction, which then inserts the finished bytes:
        // a reserved value costs redb a zeroed buffer of the value's size and one more copy.
        // `buf[start..]` is the segment; its entry is `buf[start + LEN..area]`.
        let (start, area) = (group.start, group.area);
        let mut buf = Arc::new(group.buf);
        let how = self.hasher.start(seq, &buf, area);
        let template = &group.entry;
        let hasher = &self.hasher;
        let final_entry = std::cell::OnceCell::new();
        let seal_entry = |buf: &[u8]| -> Result<Vec<u8>> {
            let entry = template.with_outputs_hash(hasher.finish(&how, buf, area));
            let sealed = lineage::seal_entry(&entry)?;
            if start + segment::LEN + sealed.len() != area {
                return Err(Error::InvalidArgument(
                    "a lineage entry changed size with its outputs hash".into(),
                ));
            }
            let _ = final_entry.set(entry.hash);
            Ok(sealed)
        };
        // Hashed inline, nothing else holds the segment.
        let reserved = match (&how, Arc::get_mut(&mut buf)) {
            (OutputsHash::Inline, Some(bytes)) => {
                let sealed = seal_entry(bytes)?;
                bytes
                    .get_mut(start + segment::LEN..area)
                    .ok_or_else(|| {
                        Error::InvalidArgument("a lineage entry is longer than its segment".into())
                    })?
                    .copy_from_slice(&sealed);
                false
            }
            _ => true,
        };
        let seal_in_txn = || seal_entry(&buf);
        let plan = CommitPlan {
            segment: Some(SegmentWrite {
                seq,
                bytes: &buf[start..],
                entry: reserved.then_some(&seal_in_txn as &dyn Fn() -> Result<Vec<u8>>),
            }),
            dead_letters: &group.dead,
            remove_dead: &[],
            ranges: ranges.as_ref(),
            index: &index,
            mark,
            snapshot: planned.as_ref().map(|p| p.generation).zip(sealed),
            retire: planned.as_ref().map_or(&[], |p| p.retire.as_slice()),
            meta: meta.as_ref(),
            announced,
            format: self.format_upgrade.then_some(super::open::FORMAT_VERSION),
            durable,
        };
        self.write(&plan)?;
        self.format_upgrade = false;
        if let Some(m) = meta {
            self.meta = m;
        }
        if announced.is_some() {
            self.announced_dirty = false;
        }
        let snapshot = planned.map(|planned| {
            book.written(&planned);
            Written {
                generation: planned.generation,
                retired: planned.retire,
                freed_bytes: 0,
            }
        });
        let hash = final_entry.into_inner().ok_or_else(|| {
            Error::InvalidArgument("a commit landed without its lineage entry".into())
        })?;
        Ok(Landed {
            bytes_written,
            snapshot,
            hash,
            // The hasher thread drops its handle before it sends the hash.
            buffer: Arc::try_unwrap(buf).unwrap_or_default(),
        })
    }

    /// An empty durable commit: makes every earlier (deferred) commit durable.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.write(&CommitPlan {
            durable: true,
            ..CommitPlan::default()
        })
    }

    /// Writes a snapshot of the state encoded after commit `seq`, retiring old ones.
    pub(crate) fn write_snapshot(&mut self, seq: u64, state: Vec<u8>) -> Result<Written> {
        self.check_usable()?;
        let dart = self.arm();
        let written = self.snapshot_writer().write(seq, state, true)?;
        dart.disarm();
        Ok(written)
    }

    /// Moves the lifecycle to `to` and brings the stored progress up to commit `last_seq`,
    /// durably, so the next open reads no tail.
    pub(crate) fn set_lifecycle(&mut self, to: JobState, last_seq: u64) -> Result<()> {
        let meta = JobMeta {
            lifecycle: to,
            ..self.meta.clone()
        };
        self.check_usable()?;
        // The mark moves before the write: if the write fails, the dart in `write` poisons
        // the handle, so the moved mark is never used.
        let (diff, index) = self.mark.take(last_seq);
        let announced = self.announced.filter(|_| self.announced_dirty);
        self.write(&CommitPlan {
            meta: Some(&meta),
            ranges: Some(&diff),
            index: &index,
            mark: Some(last_seq),
            announced,
            durable: true,
            ..CommitPlan::default()
        })?;
        self.meta = meta;
        self.announced_dirty = false;
        Ok(())
    }

    /// The last commit whose durable acknowledgement was delivered (`None`: never recorded).
    pub(crate) fn announced(&self) -> Option<u64> {
        self.announced
    }

    /// Records that acknowledgements up to commit `seq` were delivered; written with the
    /// next progress mark or lifecycle change.
    pub(crate) fn set_announced(&mut self, seq: u64) {
        if self.announced != Some(seq) {
            self.announced = Some(seq);
            self.announced_dirty = true;
        }
    }

    /// Visits the lineage entries of the commits after `after`, in order: `(seq, output
    /// ranges, dead-lettered ids)`.
    pub(crate) fn entries_after(
        &self,
        after: u64,
        mut f: impl FnMut(u64, &[(u64, u64)], &[u64]) -> Result<()>,
    ) -> Result<()> {
        let txn = self.claim.store().begin_read()?;
        let mut order = SeqOrder::after(&self.meta.name, after);
        read::for_each_log(&txn, &self.tables, after + 1.., |seq, entry| {
            let entry = entry?;
            order.next(seq)?;
            f(seq, &entry.outputs, &entry.dead_letters)?;
            Ok(true)
        })
    }

    /// Sets how many unpinned snapshots retention keeps from now on.
    pub(crate) fn set_keep_snapshots(&self, keep: usize) {
        self.book.lock().set_keep(keep);
    }

    /// A handle that writes this job's snapshots from another thread through the same
    /// retention book (the maintainer's).
    pub(crate) fn snapshot_writer(&self) -> SnapshotWriter {
        SnapshotWriter {
            store: Arc::clone(self.claim.store()),
            tables: self.tables.clone(),
            book: Arc::clone(&self.book),
        }
    }

    /// The newest snapshot that verifies and `decode` accepts, with the commit it reflects;
    /// older ones are tried, loudly, when it does not. `None`: start from the empty state.
    pub(crate) fn newest_snapshot<T>(
        &self,
        last_seq: u64,
        mut decode: impl FnMut(&[u8]) -> Result<T, String>,
    ) -> Result<Option<(T, u64)>> {
        let txn = self.claim.store().begin_read()?;
        let generations = read::snapshot_generations(&txn, &self.tables)?;
        for &generation in generations.iter().rev() {
            let Some((_, record)) = read::read_snapshot(&txn, &self.tables, generation)? else {
                continue;
            };
            let what = || format!("snapshot generation {generation}");
            let decoded = record.and_then(|r| {
                if r.seq > last_seq {
                    return Err(Error::corrupt(
                        what(),
                        format!("a commit seq at most {last_seq}"),
                        format!("seq {}", r.seq),
                    ));
                }
                let state = decode(&r.state)
                    .map_err(|e| Error::corrupt(what(), "the job's state type", e))?;
                Ok((state, r.seq))
            });
            match decoded {
                Ok(found) => return Ok(Some(found)),
                Err(e) => {
                    tracing::warn!(job = %self.meta.name, generation, error = %e, "snapshot failed its check; falling back to an older one");
                }
            }
        }
        Ok(None)
    }

    /// Walks the outputs of every commit after `after`, in commit order and, within a
    /// commit, in id order: `on_output(id, payload)` for each (checked) output, then
    /// `on_commit(seq)`. The one replay loop, shared by resume and verify. Returns the
    /// number of commits walked.
    pub(crate) fn replay(
        &self,
        after: u64,
        mut on_output: impl FnMut(u64, &[u8]) -> Result<()>,
        mut on_commit: impl FnMut(u64) -> Result<()>,
    ) -> Result<u64> {
        let txn = self.claim.store().begin_read()?;
        // Outputs that a redo entry after their commit removed are not part of the state: a
        // first pass over the entries finds the redos in range (usually none).
        let removed = read::redos_after(&txn, &self.tables, after)?;
        let mut order = SeqOrder::after(&self.meta.name, after);
        read::for_each_segment(&txn, &self.tables, after + 1.., |seq, segment| {
            let segment = segment?;
            order.next(seq)?;
            for record in segment.records() {
                let record = record?;
                if removed.contains(seq, record.id) {
                    continue;
                }
                on_output(record.id, record.payload)?;
            }
            on_commit(seq)?;
            Ok(true)
        })?;
        Ok(order.last() - after)
    }

    /// Reads the checked output of `id` and hands its payload to `f` (`None` if not
    /// stored).
    pub(crate) fn output<T>(
        &self,
        id: u64,
        f: impl FnOnce(Option<&[u8]>) -> Result<T>,
    ) -> Result<T> {
        let txn = self.claim.store().begin_read()?;
        let outputs = Outputs::open(&txn, &self.tables, self.mark.tail_runs())?;
        outputs.get(id, |found| f(found.map(|(_, record)| record.payload)))
    }

    /// The store-level checks of this job (see [`Store::verify_job`]), with the valid
    /// snapshots for the caller's replay.
    pub(crate) fn verify(&self) -> Result<(VerifyReport, CheckedSnapshots)> {
        let store = Store {
            inner: Arc::clone(self.claim.store()),
        };
        store.verify_job_collect(&self.meta.name)
    }
}

fn check_matches(meta: &JobMeta, spec: &NewJob) -> Result<()> {
    let mismatch = |field, expected: String, found: String| Error::JobMismatch {
        job: meta.name.clone(),
        field,
        expected,
        found,
    };
    if meta.state_type != spec.state_type {
        return Err(mismatch(
            "state type",
            meta.state_type.clone(),
            spec.state_type.clone(),
        ));
    }
    if meta.schema_version != spec.schema_version {
        return Err(mismatch(
            "schema version",
            meta.schema_version.to_string(),
            spec.schema_version.to_string(),
        ));
    }
    let digest = |m: Option<u64>| m.map_or_else(|| "none".to_owned(), |m| format!("{m:016x}"));
    let total = |t: Option<u64>| t.map_or_else(|| "unknown".to_owned(), |t| t.to_string());
    let manifest_changed = meta.input_manifest.is_some() || spec.input_manifest.is_some();
    let manifest_changed = manifest_changed && meta.input_manifest != spec.input_manifest;
    let grew = matches!((meta.total_records, spec.total_records), (Some(a), Some(b)) if b > a);
    let size_changed =
        matches!((meta.total_records, spec.total_records), (Some(a), Some(b)) if a != b);
    match spec.input_change {
        InputChange::Unchecked => return Ok(()),
        InputChange::Any => {
            if manifest_changed || size_changed {
                tracing::warn!(
                    job = %meta.name,
                    manifest_was = %digest(meta.input_manifest),
                    manifest_now = %digest(spec.input_manifest),
                    total_was = %total(meta.total_records),
                    total_now = %total(spec.total_records),
                    "input changed; accepted because the opener allowed any input change"
                );
            }
            return Ok(());
        }
        InputChange::Grows if size_changed && !grew => {
            return Err(mismatch(
                "total records",
                total(meta.total_records),
                format!(
                    "{} (an input that only grows cannot shrink)",
                    total(spec.total_records)
                ),
            ));
        }
        InputChange::Grows if grew => {
            tracing::info!(job = %meta.name, total_was = %total(meta.total_records), total_now = %total(spec.total_records), "input grew");
            return Ok(());
        }
        InputChange::Grows | InputChange::Refuse => {}
    }
    if manifest_changed {
        return Err(mismatch(
            "input manifest",
            digest(meta.input_manifest),
            digest(spec.input_manifest),
        ));
    }
    if size_changed {
        return Err(mismatch(
            "total records",
            total(meta.total_records),
            total(spec.total_records),
        ));
    }
    Ok(())
}
