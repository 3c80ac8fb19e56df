//! The reference model every crash scenario checks a store against.
//!
//! A workload is a list of groups of record ids, committed in order, one durable commit per
//! group. Because each group is one transaction, every store a crash can leave behind must
//! equal the fault-free store after some *prefix* of the groups: the model computes, for
//! every prefix length, the done set and the folded state, and [`observe`] finds which
//! prefix a reopened store holds or says precisely why it holds none.

use std::collections::BTreeMap;

use resumable::{
    CommitPolicy, Concurrency, Error, Fold, Job, JobOptions, Store, StoreOptions,
    testing::FaultDisk,
};
use serde::{Deserialize, Serialize};

/// The job name every scenario uses.
pub const JOB: &str = "crash";

/// A state whose every field catches a different fold bug: `count` a record applied twice or
/// lost, `sum` a wrong output, `order` a fold in the wrong order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub count: u64,
    pub sum: u64,
    pub order: u64,
}

impl Fold for Tally {
    type Output = Vec<u8>;

    fn apply(&mut self, id: u64, output: &Vec<u8>) {
        self.count += 1;
        self.sum = self
            .sum
            .wrapping_add(output.iter().map(|&b| u64::from(b)).sum::<u64>());
        self.order = self
            .order
            .wrapping_mul(0x100_0000_01b3)
            .wrapping_add(id ^ output.len() as u64);
    }

    fn type_name() -> String {
        "crash::Tally".to_owned()
    }
}

/// The output of record `id`: 8 to 71 bytes that depend on the id, so a value moved to
/// another key or truncated is caught.
#[must_use]
pub fn output_of(id: u64) -> Vec<u8> {
    let len = 8 + (id.wrapping_mul(0x9E37_79B9) % 64) as usize;
    (0..len)
        .map(|i| (id.wrapping_mul(31).wrapping_add(i as u64 * 7) % 251) as u8)
        .collect()
}

/// A deterministic batch job: groups of ids committed in order.
#[derive(Clone, Debug)]
pub struct Workload {
    pub groups: Vec<Vec<u64>>,
    pub snapshot_every: u64,
    pub keep_snapshots: usize,
    /// `done[g]`: ids done after the first `g` groups, ascending.
    done: Vec<Vec<u64>>,
    /// `states[g]`: the fold after the first `g` groups.
    states: Vec<Tally>,
    /// The group each id belongs to.
    group_of: BTreeMap<u64, usize>,
    /// How every incarnation opens the store: `Auto` (the product's default, which on a
    /// simulated disk, where no reader can knock, keeps the file to itself) or
    /// `LiveReaders` (the mode a knocking reader switches the writer to).
    pub concurrency: Concurrency,
    /// Switch the writer between exclusive and live-reader mode before every group commit
    /// (as readers knocking and going away would): odd groups commit with live readers.
    pub switch_modes: bool,
}

impl Workload {
    /// Builds a workload from explicit groups (ids must be distinct and not `u64::MAX`).
    #[must_use]
    pub fn new(groups: Vec<Vec<u64>>, snapshot_every: u64, keep_snapshots: usize) -> Self {
        let mut done = vec![Vec::new()];
        let mut states = vec![Tally::default()];
        let mut group_of = BTreeMap::new();
        for (g, group) in groups.iter().enumerate() {
            let mut ids = done[g].clone();
            let mut state = states[g].clone();
            let mut sorted = group.clone();
            sorted.sort_unstable();
            for &id in &sorted {
                assert!(group_of.insert(id, g).is_none(), "id {id} in two groups");
                state.apply(id, &output_of(id));
                ids.push(id);
            }
            ids.sort_unstable();
            done.push(ids);
            states.push(state);
        }
        Workload {
            groups,
            snapshot_every,
            keep_snapshots,
            done,
            states,
            group_of,
            concurrency: Concurrency::Auto,
            switch_modes: false,
        }
    }

    /// The same workload, its writer switching modes before every group commit.
    #[must_use]
    pub fn switching_modes(mut self) -> Self {
        self.switch_modes = true;
        self
    }

    /// The same workload, its store opened in `concurrency` mode.
    #[must_use]
    pub fn in_mode(mut self, concurrency: Concurrency) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// How the incarnations open the store.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions::new().concurrency(self.concurrency)
    }

    /// `records` ids in a scrambled order (so progress has gaps), cut into groups whose sizes
    /// cycle through 1, 3, 2, 5, 1, 4 (varying group size, including single records).
    #[must_use]
    pub fn standard(records: u64) -> Self {
        const SIZES: [usize; 6] = [1, 3, 2, 5, 1, 4];
        // 7 is coprime with any record count not divisible by 7; fix that case up.
        let stride = if records.is_multiple_of(7) { 11 } else { 7 };
        let ids: Vec<u64> = (0..records).map(|k| (k * stride) % records).collect();
        let mut groups = Vec::new();
        let mut rest = &ids[..];
        let mut k = 0;
        while !rest.is_empty() {
            let n = SIZES[k % SIZES.len()].min(rest.len());
            groups.push(rest[..n].to_vec());
            rest = &rest[n..];
            k += 1;
        }
        Workload::new(groups, 3, 2)
    }

    pub fn options(&self) -> JobOptions {
        JobOptions::new()
            .commit_policy(CommitPolicy::new().max_group_records(1_000_000))
            .snapshot_every_commits(self.snapshot_every)
            .keep_snapshots(self.keep_snapshots)
            // Small, so crashes land on commits that write the done ranges and id index, on
            // commits that do not, and on opens that rebuild progress from the tail.
            .progress_every_commits(2)
    }

    #[must_use]
    pub fn final_state(&self) -> &Tally {
        &self.states[self.groups.len()]
    }

    #[must_use]
    pub fn state_after(&self, groups: usize) -> &Tally {
        &self.states[groups]
    }

    #[must_use]
    pub fn records(&self) -> usize {
        self.group_of.len()
    }
}

/// What one incarnation (a process lifetime: open, resume, work until done or fault) did.
#[derive(Debug, Default)]
pub struct Incarnation {
    /// Groups present when the job was opened (`None` if the open failed).
    pub started_at: Option<usize>,
    /// Groups acknowledged durable by the end (a prefix length).
    pub acked: usize,
    /// Whether a group commit was in flight when the fault hit.
    pub in_flight: bool,
    /// The first error, if the incarnation did not finish.
    pub error: Option<Error>,
    /// Every error after the first (they must all be `Poisoned`).
    pub later_errors: Vec<Error>,
    pub finished: bool,
}

/// Opens the store and job on `disk`, checks what survived against the model, then commits
/// the remaining groups and completes the job, stopping at the first error.
///
/// `check` runs [`observe`] plus `verify` and redb's integrity check right after the open;
/// panics (test failure) when the store breaks the model.
pub fn run_incarnation(disk: &FaultDisk, w: &Workload, check: bool) -> Incarnation {
    let mut inc = Incarnation::default();
    let store = match w.store_options().open_on(disk) {
        Ok(s) => s,
        Err(e) => {
            inc.error = Some(e);
            return inc;
        }
    };
    let mut job = match store.job::<Tally>(JOB, w.options()) {
        Ok(j) => j,
        Err(e) => {
            inc.error = Some(e);
            return inc;
        }
    };
    let start = if check {
        match observe(&store, &job, w) {
            Ok(g) => g,
            Err(msg) => panic!("store after reopen breaks the model: {msg}"),
        }
    } else {
        prefix_of(&job, w).unwrap_or_else(|m| panic!("{m}"))
    };
    inc.started_at = Some(start);
    inc.acked = start;
    // A resubmitted done group commits nothing and reports nothing stored.
    if start > 0 {
        let again: Vec<(u64, Vec<u8>)> = w.groups[start - 1]
            .iter()
            .map(|&id| (id, output_of(id)))
            .collect();
        match job.commit(again) {
            Ok(None) => {}
            Ok(Some(r)) => panic!("a done group was committed again: {r:?}"),
            Err(e) => {
                inc.error = Some(e);
                return finish_poisoned(inc, &mut job);
            }
        }
    }
    for (g, group) in w.groups.iter().enumerate().skip(start) {
        if w.switch_modes
            && let Err(e) = store.switch_live_readers(g % 2 == 1)
        {
            inc.error = Some(e);
            return finish_poisoned(inc, &mut job);
        }
        inc.in_flight = true;
        let records = group.iter().map(|&id| (id, output_of(id)));
        match job.commit(records) {
            Ok(Some(receipt)) => {
                assert!(receipt.durable, "group {g} committed without fsync");
                assert_eq!(
                    receipt.records(),
                    group.len() as u64,
                    "group {g}: receipt {receipt:?}"
                );
                assert_eq!(
                    disk.unsynced_data_writes(),
                    0,
                    "group {g} acknowledged while writes were unsynced"
                );
                inc.acked = g + 1;
                inc.in_flight = false;
            }
            Ok(None) => panic!("group {g} of new records committed nothing"),
            Err(e) => {
                inc.error = Some(e);
                return finish_poisoned(inc, &mut job);
            }
        }
    }
    let completed = job.lifecycle() == resumable::JobState::Completed;
    if let Err(e) = if completed { Ok(()) } else { job.complete() } {
        inc.error = Some(e);
        return finish_poisoned(inc, &mut job);
    }
    assert_eq!(
        job.state(),
        w.final_state(),
        "final state differs from the fault-free run"
    );
    assert_eq!(job.done_count(), w.records() as u64);
    inc.finished = true;
    inc
}

/// After a storage error, the handle must refuse further work with `Poisoned`.
fn finish_poisoned(mut inc: Incarnation, job: &mut Job<Tally>) -> Incarnation {
    if inc.error.as_ref().is_some_and(is_storage_error) {
        if let Err(e) = job.commit([(u64::MAX - 1, output_of(0))]) {
            inc.later_errors.push(e);
        } else {
            panic!("a job handle kept committing after {:?}", inc.error);
        }
    }
    inc
}

/// Errors a failing disk may legitimately surface.
#[must_use]
pub fn is_storage_error(e: &Error) -> bool {
    matches!(
        e,
        Error::Io(_) | Error::DiskFull(_) | Error::Poisoned | Error::Storage(_)
    )
}

/// The number of groups the job's progress shows, if it is a prefix of the workload.
pub fn prefix_of(job: &Job<Tally>, w: &Workload) -> Result<usize, String> {
    let done: Vec<u64> = job.progress().ranges().flatten().collect();
    // The prefix is determined by its size: groups are disjoint and non-empty.
    let g = w
        .done
        .iter()
        .position(|d| d.len() == done.len())
        .ok_or_else(|| {
            format!(
                "{} records done: no prefix of groups has that many",
                done.len()
            )
        })?;
    if w.done[g] != done {
        let half: Vec<u64> = done
            .iter()
            .filter(|id| w.group_of.get(id).is_none_or(|&gi| gi >= g))
            .copied()
            .collect();
        return Err(format!(
            "done set is not a prefix of the groups (half-present or unexpected ids: {half:?})"
        ));
    }
    Ok(g)
}

/// Checks a freshly opened job against the model: progress is a prefix of whole groups,
/// every done record has exactly its output, no other output exists, the state equals the
/// fold of that prefix, the newest snapshot was used, `verify` passes and redb's integrity
/// check passes. Returns the prefix length.
pub fn observe(store: &Store, job: &Job<Tally>, w: &Workload) -> Result<usize, String> {
    let g = prefix_of(job, w)?;
    let mut stored = Vec::new();
    store
        .for_each_output(JOB, 0..u64::MAX, |out| {
            stored.push((out.id, out.decode::<Vec<u8>>()?));
            Ok(true)
        })
        .map_err(|e| format!("reading outputs: {e}"))?;
    let ids: Vec<u64> = stored.iter().map(|(id, _)| *id).collect();
    if ids != w.done[g] {
        return Err(format!(
            "outputs {ids:?} disagree with the done marks of {g} groups {:?}",
            w.done[g]
        ));
    }
    for (id, out) in &stored {
        if *out != output_of(*id) {
            return Err(format!("output of record {id} is wrong"));
        }
    }
    if job.state() != w.state_after(g) {
        return Err(format!(
            "state {:?} differs from the fold of {g} groups {:?}",
            job.state(),
            w.state_after(g)
        ));
    }
    if w.snapshot_every > 0 && job.stats().replayed_commits >= w.snapshot_every {
        return Err(format!(
            "replayed {} commits: the newest snapshot was not used",
            job.stats().replayed_commits
        ));
    }
    let report = job.verify().map_err(|e| format!("verify failed: {e}"))?;
    if !report.is_ok() {
        return Err(format!("verify found problems: {:?}", report.problems));
    }
    store
        .check_integrity()
        .map_err(|e| format!("check_integrity: {e}"))?;
    Ok(g)
}

/// A base image: an empty store holding the created (never started) job, closed cleanly.
/// Crash sweeps start from it so that they do not crash inside redb's non-atomic `create`
/// on a simulated disk (the file path is atomic through a temporary file and a link).
#[must_use]
pub fn base_image(w: &Workload) -> Vec<u8> {
    let disk = FaultDisk::new();
    {
        let store = w.store_options().open_on(&disk).expect("create store");
        drop(store.job::<Tally>(JOB, w.options()).expect("create job"));
    }
    disk.live_image()
}

/// Tracks the durable watermark across incarnations and checks each reopen against it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Watermark {
    /// Most groups ever acknowledged durable: the floor of any later reopen.
    pub acked: usize,
    /// Most groups known present (acknowledged, or observed after a reopen).
    pub known: usize,
    /// Whether a group commit was in flight at the last crash.
    pub in_flight: bool,
    /// Reopens that found the in-flight group committed.
    pub in_flight_landed: u64,
    /// Reopens that lost a group seen after an earlier reopen but never acknowledged.
    pub observed_then_lost: u64,
}

impl Watermark {
    /// Records what an incarnation did, before its crash.
    pub fn after(&mut self, inc: &Incarnation) {
        if let Some(start) = inc.started_at {
            self.reopened(start);
            self.in_flight = inc.in_flight;
        }
        // An incarnation that died before its job was open committed nothing, and the
        // group in flight at the previous crash is as indeterminate as before.
        self.acked = self.acked.max(inc.acked);
        self.known = self.known.max(inc.acked);
    }

    /// Checks the groups found by a reopen: never below the durable watermark, at most one
    /// group (the in-flight one) beyond what was known. Panics with `context` otherwise.
    pub fn reopened(&mut self, groups: usize) {
        let ceiling = self.known + usize::from(self.in_flight);
        assert!(
            groups >= self.acked && groups <= ceiling,
            "reopen found {groups} groups; acknowledged {}, known {}, in flight {}",
            self.acked,
            self.known,
            self.in_flight
        );
        if groups > self.known {
            self.in_flight_landed += 1;
        }
        if groups < self.known {
            self.observed_then_lost += 1;
        }
        self.known = groups;
        self.in_flight = false;
    }
}

/// How far [`finish_and_check`] takes a crash image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// Reopen and check the store against the model (no resume).
    Observe,
    /// Also resume to the end and compare the final state in memory.
    Resume,
    /// Also reopen the completed store and check it in full.
    ResumeAndReopen,
}

/// Reopens `image` without faults and checks it against the model and the watermark; per
/// `finish`, resumes to the end and checks the result equals the fault-free run.
pub fn finish_and_check(image: Vec<u8>, w: &Workload, mark: &mut Watermark, finish: Finish) {
    let disk = FaultDisk::from_image(image);
    if finish == Finish::Observe {
        let store = w
            .store_options()
            .open_on(&disk)
            .unwrap_or_else(|e| panic!("fault-free reopen failed: {e:?}"));
        let job = store
            .job::<Tally>(JOB, w.options())
            .unwrap_or_else(|e| panic!("fault-free job open failed: {e:?}"));
        let g = observe(&store, &job, w).unwrap_or_else(|m| panic!("{m}"));
        mark.reopened(g);
        return;
    }
    let inc = run_incarnation(&disk, w, true);
    let start = inc
        .started_at
        .unwrap_or_else(|| panic!("fault-free reopen failed: {:?}", inc.error));
    mark.reopened(start);
    assert!(inc.finished, "fault-free resume failed: {:?}", inc.error);
    if finish == Finish::ResumeAndReopen {
        check_final(&disk, w);
    }
}

/// The completed job equals the fault-free run: every record once, final state, lifecycle,
/// retention, verify, integrity; and a second resume changes nothing.
pub fn check_final(disk: &FaultDisk, w: &Workload) {
    let store = w.store_options().open_on(disk).expect("reopen finished");
    let job = store.job::<Tally>(JOB, w.options()).expect("job");
    assert_eq!(job.lifecycle(), resumable::JobState::Completed);
    assert_eq!(
        observe(&store, &job, w).expect("final store"),
        w.groups.len()
    );
    assert_eq!(job.state(), w.final_state());
    let snaps = store.snapshots(JOB).expect("snapshots");
    assert!(
        snaps.len() <= w.keep_snapshots && snaps.iter().all(|s| s.valid),
        "retention: {snaps:?}"
    );
}

/// Everything an operator can see of the job (status, snapshots, dead letters, every output
/// with its commit), as text: two stores or two moments compare equal only if all of it is.
pub fn fingerprint(store: &Store) -> String {
    let status = store.status(JOB).unwrap();
    let snaps = store.snapshots(JOB).unwrap();
    let dead = store.dead_letters(JOB).unwrap();
    let mut outputs = Vec::new();
    store
        .for_each_output(JOB, 0..u64::MAX, |o| {
            outputs.push((o.id, o.seq, o.payload.clone()));
            Ok(true)
        })
        .unwrap();
    format!("{status:?}\n{snaps:?}\n{dead:?}\n{outputs:?}")
}

/// An environment variable as a number, or `default`.
#[must_use]
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `RESUMABLE_CRASH_SCALE` (default 1): multiplies the sizes of every campaign.
#[must_use]
pub fn scale() -> u64 {
    env_u64("RESUMABLE_CRASH_SCALE", 1).max(1)
}

/// Runs `f`; if it panics, panics again with `context` (crash op, loss model, seed, second
/// crash op: what replays the case) in front of the original message.
pub fn with_context<T>(context: impl FnOnce() -> String, f: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("[{}] {msg}", context());
        }
    }
}

/// Mutating operations of a fault-free incarnation of `w` from `image` (a fresh run, or the
/// recovery of a crash image): the range crash points are drawn from.
#[must_use]
pub fn measured_ops(image: &[u8], w: &Workload) -> u64 {
    let disk = FaultDisk::from_image(image.to_vec());
    let inc = run_incarnation(&disk, w, false);
    assert!(inc.finished, "fault-free run failed: {:?}", inc.error);
    disk.ops()
}
