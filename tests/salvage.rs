//! Salvage of damaged stores: the file is damaged the way a disk damages it (both header
//! commit slots zeroed; the header and first pages zeroed; random pages zeroed; truncation
//! at a random point; a rewound store, whose freed pages hold the dropped branch, then
//! damaged), and `Store::salvage` reads it back without redb.
//!
//! Proves, for each case: opening the damaged file fails with a typed error (never a
//! panic); salvage writes a store that passes `verify`; the salvaged outputs are exactly a
//! prefix, by commit seq, of what the original store committed, byte for byte, and never a
//! commit of a dropped branch; rerunning the job on the salvaged store completes and its
//! outputs and state equal an uninterrupted run's. A property test over random damage
//! checks the same invariants (no wrong byte, no panic, no unverified commit), and the CLI
//! test parses `salvage --json` and checks its exit codes. Random seeds are printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use resumable::{
    ChainStop, CommitPolicy, Error, Fold, JobOptions, RedoSelection, SalvageOptions, SalvageReport,
    Store, StoreOptions,
};
use serde::{Deserialize, Serialize};

const JOB: &str = "sum";
const PAGE: usize = 4096;

/// The test job's state: a checksum over every output, in fold order.
#[derive(Default, Serialize, Deserialize, Debug, PartialEq, Eq)]
struct Sum {
    count: u64,
    digest: u64,
}

impl Fold for Sum {
    type Output = Vec<u8>;
    fn apply(&mut self, id: u64, out: &Vec<u8>) {
        self.count += 1;
        self.digest = self
            .digest
            .wrapping_mul(31)
            .wrapping_add(id ^ out.iter().map(|&b| u64::from(b)).sum::<u64>());
    }
}

/// The output of record `id`: 40 to 300 bytes that depend on the id.
fn output(id: u64) -> Vec<u8> {
    let len = 40 + (id.wrapping_mul(2_654_435_761) % 260) as usize;
    (0..len)
        .map(|i| (id.wrapping_mul(31).wrapping_add(i as u64) % 251) as u8)
        .collect()
}

fn options() -> JobOptions {
    JobOptions::new()
        .commit_policy(CommitPolicy::new().max_group_records(7))
        .snapshot_every_commits(10)
}

/// Records every 23rd id as a dead letter instead of an output.
fn is_dead(id: u64) -> bool {
    id % 23 == 22
}

/// Runs the job over `ids`, skipping what is done; completes it when `complete`.
fn run(path: &Path, ids: std::ops::Range<u64>, complete: bool) -> Sum {
    let store = Store::open(path).expect("open the store");
    let mut job = store.job::<Sum>(JOB, options()).expect("open the job");
    for id in ids {
        if job.is_done(id) {
            continue;
        }
        if is_dead(id) {
            job.dead_letter(id, 3, "permanent failure")
                .expect("dead letter");
        } else {
            job.submit(id, output(id)).expect("submit");
        }
    }
    job.flush().expect("flush");
    if complete {
        job.complete().expect("complete");
    }
    let state = job.state();
    Sum {
        count: state.count,
        digest: state.digest,
    }
}

/// Every stored output: id -> (commit seq, payload).
fn outputs(path: &Path) -> BTreeMap<u64, (u64, Vec<u8>)> {
    let store = Store::open_read_only(path).expect("open read-only");
    let mut out = BTreeMap::new();
    store
        .for_each_output(JOB, 0..u64::MAX - 1, |o| {
            out.insert(o.id, (o.seq, o.payload));
            Ok(true)
        })
        .expect("read outputs");
    out
}

/// The dead letters: id -> error.
fn dead_letters(path: &Path) -> BTreeMap<u64, String> {
    let store = Store::open_read_only(path).expect("open read-only");
    store
        .dead_letters(JOB)
        .expect("dead letters")
        .into_iter()
        .map(|d| (d.id, d.error))
        .collect()
}

/// Outputs grouped by commit seq.
fn by_seq(outputs: &BTreeMap<u64, (u64, Vec<u8>)>) -> BTreeMap<u64, Vec<(u64, Vec<u8>)>> {
    let mut m: BTreeMap<u64, Vec<(u64, Vec<u8>)>> = BTreeMap::new();
    for (&id, (seq, p)) in outputs {
        m.entry(*seq).or_default().push((id, p.clone()));
    }
    m
}

/// Asserts that `salvaged` is exactly the commits 1..=k of `original`, byte for byte, where
/// k is the report's commit count; returns k.
fn assert_prefix(
    original: &BTreeMap<u64, (u64, Vec<u8>)>,
    salvaged: &BTreeMap<u64, (u64, Vec<u8>)>,
    report: &SalvageReport,
) -> u64 {
    let k = report.jobs.first().map_or(0, |j| j.commits_salvaged);
    let original = by_seq(original);
    let salvaged = by_seq(salvaged);
    let expected: BTreeMap<_, _> = original.into_iter().filter(|(s, _)| *s <= k).collect();
    // Commits holding only dead letters store no output: compare the output-holding ones.
    assert_eq!(
        salvaged, expected,
        "salvaged outputs are not the first {k} commits of the original"
    );
    k
}

/// The uninterrupted run's outputs (id -> payload) and state, computed once.
fn reference(records: u64) -> (BTreeMap<u64, Vec<u8>>, Sum) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("reference.redb");
    let state = run(&path, 0..records, true);
    let outs = outputs(&path)
        .into_iter()
        .map(|(id, (_, p))| (id, p))
        .collect();
    (outs, state)
}

const RECORDS: u64 = 1500;

fn reference_run() -> &'static (BTreeMap<u64, Vec<u8>>, Sum) {
    static REF: OnceLock<(BTreeMap<u64, Vec<u8>>, Sum)> = OnceLock::new();
    REF.get_or_init(|| reference(RECORDS))
}

/// A store built by running the job over `0..RECORDS` in three sessions (so the file holds
/// old copies of pages), and its outputs.
fn base_store(dir: &Path) -> (PathBuf, BTreeMap<u64, (u64, Vec<u8>)>) {
    let path = dir.join("original.redb");
    run(&path, 0..RECORDS / 3, false);
    run(&path, 0..2 * RECORDS / 3, false);
    run(&path, 0..RECORDS, true);
    let outs = outputs(&path);
    (path, outs)
}

fn damage(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).expect("read");
    f(&mut bytes);
    std::fs::write(path, &bytes).expect("write");
}

/// Salvages `damaged` and checks every promise; returns the report.
fn salvage_and_check(
    dir: &Path,
    damaged: &Path,
    original: &BTreeMap<u64, (u64, Vec<u8>)>,
    original_dead: &BTreeMap<u64, String>,
    case: &str,
) -> SalvageReport {
    let into = dir.join(format!("{case}.salvaged.redb"));
    let mut report = Store::salvage(damaged, &into).expect("salvage runs");
    if report.jobs.is_empty() {
        // Every copy of the job's metadata was destroyed: the commits are reported, not
        // written, until the caller names the job.
        println!(
            "{case}: no job metadata survived; {} segments unattributed; salvaging with the job named",
            report.unattributed_chains.len()
        );
        assert!(!into.exists(), "{case}: written without a job");
        let options = SalvageOptions::new().job::<Sum>(JOB, &options());
        report = Store::salvage_with(damaged, &into, &options).expect("salvage runs");
    }
    let job = &report.jobs[0];
    println!(
        "{case}: salvaged {} of {} commits, {} records ({} committed), {} dead letters, stop {:?}, {} unused segments",
        job.commits_salvaged,
        job.highest_seq_seen,
        job.records_salvaged,
        original.len(),
        job.dead_letters_salvaged,
        job.stop,
        job.unused_segments.len()
    );
    if !report.salvaged_anything() {
        assert!(
            !into.exists(),
            "{case}: nothing salvaged, yet a store was written"
        );
        return report;
    }
    assert!(report.verified, "{case}: the salvaged store fails verify");
    let store = StoreOptions::new()
        .create(false)
        .open(&into)
        .expect("the salvaged store opens read-write");
    let verify = store.verify_job(JOB).expect("verify runs");
    assert!(verify.is_ok(), "{case}: {:?}", verify.problems);
    assert!(store.check_integrity().expect("integrity"), "{case}");
    drop(store);
    let salvaged = outputs(&into);
    assert_eq!(salvaged.len() as u64, job.records_salvaged, "{case}");
    assert_prefix(original, &salvaged, &report);
    for (id, error) in dead_letters(&into) {
        assert_eq!(
            original_dead.get(&id),
            Some(&error),
            "{case}: dead letter {id} was not in the original"
        );
    }

    // The job resumes from the salvaged store and ends where an uninterrupted run ends.
    let state = run(&into, 0..RECORDS, true);
    let (ref_outputs, ref_state) = reference_run();
    let resumed: BTreeMap<u64, Vec<u8>> = outputs(&into)
        .into_iter()
        .map(|(id, (_, p))| (id, p))
        .collect();
    assert_eq!(&resumed, ref_outputs, "{case}: resumed outputs differ");
    assert_eq!(state, *ref_state, "{case}: resumed state differs");
    let ids: Vec<u64> = dead_letters(&into).into_keys().collect();
    let expected: Vec<u64> = (0..RECORDS).filter(|&id| is_dead(id)).collect();
    assert_eq!(ids, expected, "{case}: dead letters after resume");
    report
}

fn seed() -> u64 {
    let seed = std::env::var("SALVAGE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("seed {seed} (rerun with SALVAGE_SEED={seed})");
    seed
}

fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed;
    move || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn assert_open_fails_typed(path: &Path, case: &str) {
    match Store::open_read_only(path) {
        Err(
            e @ (Error::Unopenable { .. }
            | Error::Corrupt { .. }
            | Error::NotAStore { .. }
            | Error::Storage(_)),
        ) => {
            println!("{case}: open fails: {e}");
            if let Error::Unopenable { .. } = e {
                let message = e.to_string();
                assert!(message.contains("resumable salvage"), "{message}");
                assert!(!message.contains("run `resumable verify`"), "{message}");
            }
        }
        Err(e) => panic!("{case}: unexpected error kind {e:?}"),
        Ok(_) => panic!("{case}: the damaged store opened"),
    }
}

#[test]
fn both_commit_slots_zeroed_is_unopenable_and_salvage_recovers_every_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, original) = base_store(dir.path());
    let dead = dead_letters(&path);
    damage(&path, |b| b[64..320].fill(0));
    assert!(matches!(
        Store::open_read_only(&path),
        Err(Error::Unopenable { .. })
    ));
    assert!(matches!(Store::open(&path), Err(Error::Unopenable { .. })));
    let report = salvage_and_check(dir.path(), &path, &original, &dead, "slots-zeroed");
    let job = &report.jobs[0];
    assert_eq!(job.records_salvaged, original.len() as u64, "every record");
    assert_eq!(job.commits_salvaged, job.highest_seq_seen);
    assert_eq!(job.dead_letters_salvaged, dead.len() as u64);
}

#[test]
fn header_and_first_pages_zeroed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, original) = base_store(dir.path());
    let dead = dead_letters(&path);
    damage(&path, |b| b[..4 * PAGE].fill(0));
    assert!(matches!(
        Store::open_read_only(&path),
        Err(Error::Unopenable { .. })
    ));
    salvage_and_check(dir.path(), &path, &original, &dead, "header-zeroed");
}

#[test]
fn random_pages_zeroed() {
    let mut next = rng(seed());
    for round in 0..4 {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, original) = base_store(dir.path());
        let dead = dead_letters(&path);
        damage(&path, |b| {
            let pages = b.len() / PAGE;
            b[64..320].fill(0);
            for _ in 0..=pages / 20 {
                let p = (next() % pages as u64) as usize;
                b[p * PAGE..(p + 1) * PAGE].fill(0);
            }
        });
        assert_open_fails_typed(&path, "random-pages");
        salvage_and_check(
            dir.path(),
            &path,
            &original,
            &dead,
            &format!("random-pages-{round}"),
        );
    }
}

#[test]
fn truncated_at_a_random_point() {
    let mut next = rng(seed());
    for round in 0..4 {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, original) = base_store(dir.path());
        let dead = dead_letters(&path);
        damage(&path, |b| {
            let cut = PAGE + (next() % (b.len() - PAGE) as u64) as usize;
            b.truncate(cut);
        });
        match Store::open_read_only(&path) {
            Ok(_) => println!("truncated-{round}: the store still opens read-only"),
            Err(e) => println!("truncated-{round}: open fails: {e}"),
        }
        salvage_and_check(
            dir.path(),
            &path,
            &original,
            &dead,
            &format!("truncated-{round}"),
        );
    }
}

#[test]
fn rewound_store_never_resurrects_the_dropped_branch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("original.redb");
    run(&path, 0..RECORDS / 2, false);
    let store = Store::open(&path).expect("open");
    let snapshots = store.snapshots(JOB).expect("snapshots");
    let early = snapshots.first().expect("a snapshot").generation;
    let report = store.rewind(JOB, early).expect("rewind");
    println!(
        "rewound to generation {early} (commit {}), dropping {} commits",
        report.seq, report.commits_dropped
    );
    drop(store);
    // The new branch: same records, but new commits (other times, so other hashes).
    run(&path, 0..RECORDS, true);
    let original = outputs(&path);
    let dead = dead_letters(&path);
    damage(&path, |b| b[64..320].fill(0));
    assert_open_fails_typed(&path, "rewound");
    let report = salvage_and_check(dir.path(), &path, &original, &dead, "rewound");
    let job = &report.jobs[0];
    if job.stop == ChainStop::Fork {
        assert!(
            job.unused_segments.iter().any(|u| u.reason == "competing"),
            "a fork lists the competing segments"
        );
    }
}

/// A job that had a redo: salvage applies the redo entry as a reader does. Before the
/// re-run, the removed outputs and dead letters stay removed (their bytes, and old copies of
/// the done ranges, index and dead-letter rows, are still in the file); after it, only the
/// re-run outputs are found. Either way the salvaged store holds exactly the original's
/// outputs and dead letters, passes verify, and a rerun ends where the original's ends.
#[test]
fn salvage_applies_redo_entries_and_never_resurrects_removed_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("original.redb");
    run(&path, 0..RECORDS, true);
    let redone = 100..300u64;
    let store = Store::open(&path).expect("open");
    let redo = store
        .redo(JOB, &RedoSelection::Range(redone.clone()), "ops", false)
        .expect("redo");
    let dead_in_range = redone.clone().filter(|&id| is_dead(id)).count() as u64;
    assert_eq!(redo.output_count + redo.dead_letters.len() as u64, 200);
    assert_eq!(redo.dead_letters.len() as u64, dead_in_range);
    drop(store);
    let rerun_path = dir.path().join("rerun.redb");
    std::fs::copy(&path, &rerun_path).expect("copy");
    run(&rerun_path, 0..RECORDS, true);

    for (case, original_path) in [("redo-pending", &path), ("redo-rerun", &rerun_path)] {
        let original = outputs(original_path);
        let dead = dead_letters(original_path);
        if case == "redo-pending" {
            assert!(original.keys().all(|id| !redone.contains(id)));
            assert!(dead.keys().all(|id| !redone.contains(id)));
        }
        let damaged = dir.path().join(format!("{case}.damaged.redb"));
        std::fs::copy(original_path, &damaged).expect("copy");
        damage(&damaged, |b| b[64..320].fill(0));
        assert_open_fails_typed(&damaged, case);
        let into = dir.path().join(format!("{case}.salvaged.redb"));
        let report = Store::salvage(&damaged, &into).expect("salvage runs");
        let job = &report.jobs[0];
        println!(
            "{case}: salvaged {} of {} commits, {} records, {} dead letters",
            job.commits_salvaged,
            job.highest_seq_seen,
            job.records_salvaged,
            job.dead_letters_salvaged
        );
        assert!(report.verified, "{case}: the salvaged store fails verify");
        assert_eq!(job.commits_salvaged, job.highest_seq_seen, "{case}");
        let store = StoreOptions::new()
            .create(false)
            .open(&into)
            .expect("the salvaged store opens");
        let verify = store.verify_job(JOB).expect("verify runs");
        assert!(verify.is_ok(), "{case}: {:?}", verify.problems);
        let lineage = store.lineage(JOB, 0, usize::MAX).expect("lineage");
        assert!(
            lineage.iter().any(|e| e.redo.is_some()),
            "{case}: the redo entry is in the salvaged chain"
        );
        let done = store
            .job::<Sum>(JOB, options())
            .expect("open the job")
            .done_count();
        drop(store);
        assert_eq!(
            outputs(&into),
            original,
            "{case}: outputs, commit by commit"
        );
        assert_eq!(dead_letters(&into), dead, "{case}: dead letters");
        assert_eq!(
            done,
            (original.len() + dead.len()) as u64,
            "{case}: done = live outputs + dead letters"
        );

        // Both stores finish the job the same way: the redone records once, folded last.
        let expected_state = if case == "redo-pending" {
            let twin = dir.path().join(format!("{case}.twin.redb"));
            std::fs::copy(original_path, &twin).expect("copy");
            run(&twin, 0..RECORDS, true)
        } else {
            let store = Store::open(original_path).expect("open");
            let job = store.job::<Sum>(JOB, options()).expect("open the job");
            let state = job.state();
            Sum {
                count: state.count,
                digest: state.digest,
            }
        };
        let state = run(&into, 0..RECORDS, true);
        assert_eq!(state, expected_state, "{case}: state after the rerun");
        let (ref_outputs, _) = reference_run();
        let payloads: BTreeMap<u64, Vec<u8>> = outputs(&into)
            .into_iter()
            .map(|(id, (_, p))| (id, p))
            .collect();
        assert_eq!(&payloads, ref_outputs, "{case}: outputs after the rerun");
    }
}

#[test]
fn dropped_branch_beside_the_current_one_stops_the_chain_at_the_fork() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("original.redb");
    run(&path, 0..RECORDS / 2, false);
    // The bytes before the rewind: every segment of the branch about to be dropped.
    let before = std::fs::read(&path).expect("read");
    let store = Store::open(&path).expect("open");
    let early = store.snapshots(JOB).expect("snapshots")[0].generation;
    let cut = store.rewind(JOB, early).expect("rewind").seq;
    drop(store);
    run(&path, 0..RECORDS, true);
    let original = outputs(&path);
    let dead = dead_letters(&path);
    // Freed pages that still hold the dropped branch: append its old bytes to the file.
    damage(&path, |b| {
        b.extend_from_slice(&before);
        b[64..320].fill(0);
    });
    let report = salvage_and_check(dir.path(), &path, &original, &dead, "dropped-branch");
    let job = &report.jobs[0];
    assert_eq!(job.stop, ChainStop::Fork, "two branches after commit {cut}");
    assert_eq!(job.commits_salvaged, cut, "the chain stops at the fork");
    assert!(
        job.unused_segments
            .iter()
            .any(|u| u.seq == cut + 1 && u.reason == "competing")
    );
}

#[test]
fn two_jobs_are_told_apart_by_their_hash_chains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("two.redb");
    let store = Store::open(&path).expect("open");
    let mut outputs_of: BTreeMap<&str, BTreeMap<u64, Vec<u8>>> = BTreeMap::new();
    for (name, ids) in [("first", 0..300u64), ("second", 1000..1200)] {
        let mut job = store.job::<Sum>(name, options()).expect("job");
        for id in ids {
            job.submit(id, output(id)).expect("submit");
            outputs_of.entry(name).or_default().insert(id, output(id));
        }
        job.flush().expect("flush");
        job.complete().expect("complete");
    }
    drop(store);
    damage(&path, |b| b[64..320].fill(0));
    let into = dir.path().join("two.salvaged.redb");
    let report = Store::salvage(&path, &into).expect("salvage");
    assert_eq!(report.jobs.len(), 2, "{report:?}");
    assert!(report.verified);
    let salvaged = Store::open_read_only(&into).expect("open");
    let mut found = Vec::new();
    for job in &report.jobs {
        assert!(job.name.starts_with("salvaged-"), "{}", job.name);
        assert_eq!(job.commits_salvaged, job.highest_seq_seen);
        let mut outs = BTreeMap::new();
        salvaged
            .for_each_output(&job.name, 0..u64::MAX - 1, |o| {
                outs.insert(o.id, o.decode::<Vec<u8>>()?);
                Ok(true)
            })
            .expect("outputs");
        found.push(outs);
    }
    found.sort();
    let mut expected: Vec<_> = outputs_of.into_values().collect();
    expected.sort();
    assert_eq!(
        found, expected,
        "each job's chain holds exactly its outputs"
    );
}

#[test]
fn nothing_to_salvage_writes_nothing_and_into_must_not_exist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.redb");
    std::fs::write(&junk, vec![0x5au8; 3 * PAGE]).expect("write");
    let into = dir.path().join("new.redb");
    let report = Store::salvage(&junk, &into).expect("salvage runs");
    assert!(!report.salvaged_anything());
    assert!(!into.exists());

    std::fs::write(&into, b"x").expect("write");
    assert!(matches!(
        Store::salvage(&junk, &into),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Store::salvage(&junk, &junk),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn open_removes_creation_leftovers_of_dead_processes_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.redb");
    // Beyond the kernel's pid limit: that process cannot exist.
    let dead = dir.path().join(".s.redb.creating-999999999");
    // Process 1 (init) always exists.
    let alive = dir.path().join(".s.redb.creating-1");
    let other = dir.path().join(".t.redb.creating-999999999");
    for f in [&dead, &alive, &other] {
        std::fs::write(f, b"half a store").expect("write");
    }
    drop(Store::open(&path).expect("open"));
    assert_eq!(dead.exists(), !cfg!(target_os = "linux"));
    assert!(alive.exists(), "a live process's file is kept");
    assert!(other.exists(), "another store's file is kept");
}

#[test]
fn cli_salvage_json_parses_and_exit_codes_follow_the_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, original) = base_store(dir.path());
    damage(&path, |b| b[64..320].fill(0));
    // A read command on the unopenable store: exit 1, a JSON error that points at salvage.
    let status = assert_cmd::Command::cargo_bin("resumable")
        .expect("binary")
        .args(["status", "--json"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(status.status.code(), Some(1), "{status:?}");
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON error");
    assert_eq!(v["error"]["kind"], "unopenable", "{v}");
    let advice = v["error"]["advice"].as_str().expect("advice");
    assert!(advice.contains("resumable salvage"), "{advice}");

    let into = dir.path().join("cli.redb");
    let out = assert_cmd::Command::cargo_bin("resumable")
        .expect("binary")
        .args(["salvage", "--json", "--into"])
        .arg(&into)
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["into"].as_str(), Some(into.to_str().expect("utf-8")));
    assert_eq!(v["verified"], true);
    assert_eq!(v["jobs"][0]["name"], JOB);
    assert_eq!(
        v["jobs"][0]["records_salvaged"].as_u64(),
        Some(original.len() as u64)
    );

    // The same target again: a usage error.
    let again = assert_cmd::Command::cargo_bin("resumable")
        .expect("binary")
        .args(["salvage", "--json", "--into"])
        .arg(&into)
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(again.status.code(), Some(2), "{again:?}");

    // Nothing to salvage: exit 1, JSON still printed.
    let junk = dir.path().join("junk.redb");
    std::fs::write(&junk, vec![0u8; 2 * PAGE]).expect("write");
    let none = assert_cmd::Command::cargo_bin("resumable")
        .expect("binary")
        .args(["salvage", "--json", "--into"])
        .arg(dir.path().join("none.redb"))
        .arg(&junk)
        .output()
        .expect("runs");
    assert_eq!(none.status.code(), Some(1), "{none:?}");
    let v: serde_json::Value = serde_json::from_slice(&none.stdout).expect("JSON on stdout");
    assert!(v["into"].is_null());
}

/// The base store's bytes and outputs, built once for the property test.
/// Outputs by id: (commit seq, payload).
type Outputs = BTreeMap<u64, (u64, Vec<u8>)>;

fn base_bytes() -> &'static (Vec<u8>, Outputs, BTreeMap<u64, String>) {
    static BASE: OnceLock<(Vec<u8>, Outputs, BTreeMap<u64, String>)> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, outs) = base_store(dir.path());
        let dead = dead_letters(&path);
        (std::fs::read(&path).expect("read"), outs, dead)
    })
}

#[derive(Debug, Clone)]
enum Damage {
    ZeroPage(usize),
    FlipByte(usize, u8),
    ZeroRange(usize, usize),
    Truncate(usize),
}

fn damage_strategy() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0usize..1000).prop_map(Damage::ZeroPage),
        (0usize..1 << 22, 1u8..=255).prop_map(|(o, b)| Damage::FlipByte(o, b)),
        (0usize..1 << 22, 1usize..20_000).prop_map(|(o, l)| Damage::ZeroRange(o, l)),
        (0usize..1 << 22).prop_map(Damage::Truncate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random damage: salvage never returns a byte that differs from what was committed,
    /// never panics, and never salvages a commit whose chain does not verify.
    #[test]
    fn random_damage_never_yields_wrong_or_unverified_commits(
        damages in proptest::collection::vec(damage_strategy(), 1..6)
    ) {
        let (bytes, original, dead) = base_bytes();
        let mut bytes = bytes.clone();
        for d in &damages {
            let n = bytes.len();
            if n == 0 {
                break;
            }
            match *d {
                Damage::ZeroPage(p) => {
                    if n >= PAGE {
                        let p = p % (n / PAGE);
                        bytes[p * PAGE..(p + 1) * PAGE].fill(0);
                    }
                }
                Damage::FlipByte(o, b) => bytes[o % n] ^= b,
                Damage::ZeroRange(o, l) => {
                    let o = o % n;
                    let end = (o + l).min(n);
                    bytes[o..end].fill(0);
                }
                Damage::Truncate(o) => bytes.truncate(o % n),
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let damaged = dir.path().join("damaged.redb");
        std::fs::write(&damaged, &bytes).expect("write");
        let into = dir.path().join("salvaged.redb");
        let report = Store::salvage(&damaged, &into).expect("salvage runs");
        if report.salvaged_anything() {
            prop_assert!(report.verified);
            let salvaged = outputs(&into);
            assert_prefix(original, &salvaged, &report);
            for (id, error) in dead_letters(&into) {
                prop_assert_eq!(dead.get(&id), Some(&error));
            }
        } else {
            prop_assert!(!into.exists());
        }
    }
}
