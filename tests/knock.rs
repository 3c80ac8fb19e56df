#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Live readers on demand (`Concurrency::Auto`, store/door.rs): the writer commits in redb's
//! exclusive mode, one fsync per commit, until a reader knocks; then readers get in while
//! it commits.
//!
//! The commit mode is read from the file itself: redb sets the `two_phase_commit` bit of
//! the header's god byte (offset 9, bit 4) on each two-phase commit, which is what its
//! single-writer (live-reader) mode forces, and clears it on a one-phase commit.
//! Scenarios: a committing writer stays one-phase until a reader knocks, then lets it in
//! (the reader sees the job), and the knock file is owner-only and empty; an idle writer
//! leaves the knocking reader `Locked` with a message that says why, and answers at its
//! next commit; a job with deferred durability and an explicitly exclusive store never
//! answer; an explicit `LiveReaders` store is two-phase from its first commit.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use resumable::{
    CommitPolicy, Concurrency, Discard, Durability, Error, JobOptions, Store, StoreOptions,
};

/// Whether the file's last commit was two-phase (redb's god byte, header offset 9).
fn two_phase(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes[9] & 4 != 0
}

fn knock_file(store: &Path) -> PathBuf {
    store.with_file_name(format!(
        ".{}.readers",
        store.file_name().unwrap().to_string_lossy()
    ))
}

fn reader(path: &Path) -> resumable::Result<Store> {
    StoreOptions::new().read_only(true).open(path)
}

/// A writer thread that commits a group of 10 records every 5 ms until stopped.
fn committing(
    options: StoreOptions,
    path: PathBuf,
    policy: CommitPolicy,
) -> (Arc<AtomicBool>, thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let handle = thread::spawn(move || {
        let store = options.open(&path).unwrap();
        let mut job = store
            .job::<Discard<u64>>("j", JobOptions::new().commit_policy(policy))
            .unwrap();
        job.start().unwrap();
        let mut id = 0u64;
        while !flag.load(Ordering::Relaxed) {
            for _ in 0..10 {
                job.submit(id, id).unwrap();
                id += 1;
            }
            job.flush().unwrap();
            thread::sleep(Duration::from_millis(5));
        }
    });
    (stop, handle)
}

fn wait_for_commits(path: &Path) {
    let start = Instant::now();
    while std::fs::metadata(path).map_or(0, |m| m.len()) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the writer never started"
        );
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_millis(200));
}

#[test]
fn a_committing_writer_is_one_phase_until_a_reader_knocks_then_lets_it_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.redb");
    let (stop, writer) = committing(StoreOptions::new(), path.clone(), CommitPolicy::new());
    wait_for_commits(&path);
    assert!(!two_phase(&path), "no reader yet: one fsync per commit");
    assert!(!knock_file(&path).exists());

    let start = Instant::now();
    let store = reader(&path).expect("the writer lets a knocking reader in");
    let waited = start.elapsed();
    let status = store.status("j").unwrap();
    assert!(status.records_done >= 10, "{status:?}");
    assert!(
        two_phase(&path),
        "with a reader let in, commits are two-phase"
    );
    let knock = std::fs::metadata(knock_file(&path)).unwrap();
    assert_eq!(knock.len(), 0);
    assert_eq!(knock.permissions().mode() & 0o777, 0o600, "owner-only");
    // A second reader gets in at once, and sees the job go on.
    let later = reader(&path).unwrap().status("j").unwrap();
    assert!(later.records_done >= status.records_done);
    drop(store);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    eprintln!("the reader waited {waited:?} for its knock to be answered");
}

#[test]
fn an_idle_writer_leaves_the_reader_locked_with_advice_and_answers_at_its_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.redb");
    let store = Store::open(&path).unwrap();
    let mut job = store.job::<Discard<u64>>("j", JobOptions::new()).unwrap();
    job.start().unwrap();
    job.submit(0, 0).unwrap();
    job.flush().unwrap();

    let start = Instant::now();
    let err = reader(&path).expect_err("nobody answers an idle writer's door");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "it retried for a second"
    );
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("knock"), "{message}");
    assert!(message.contains("next commit"), "{message}");
    assert!(knock_file(&path).exists(), "the reader knocked");

    // The next commit answers the (fresh) knock.
    job.submit(1, 1).unwrap();
    job.flush().unwrap();
    let status = reader(&path).expect("let in").status("j").unwrap();
    assert_eq!(status.records_done, 2);
}

#[test]
fn deferred_durability_and_an_exclusive_store_never_answer() {
    let deferred = CommitPolicy::new().durability(Durability::Deferred {
        max_interval: Duration::from_millis(20),
    });
    for (options, policy) in [
        (StoreOptions::new(), deferred),
        (
            StoreOptions::new().concurrency(Concurrency::Exclusive),
            CommitPolicy::new(),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.redb");
        let (stop, writer) = committing(options, path.clone(), policy.clone());
        wait_for_commits(&path);
        let err = reader(&path).expect_err("no live readers");
        assert!(matches!(err, Error::Locked { .. }), "{policy:?}: {err:?}");
        assert!(!two_phase(&path), "{policy:?}");
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
    }
}

#[test]
fn an_explicit_live_reader_store_is_two_phase_from_its_first_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.redb");
    let (stop, writer) = committing(
        StoreOptions::new().concurrency(Concurrency::LiveReaders),
        path.clone(),
        CommitPolicy::new(),
    );
    wait_for_commits(&path);
    assert!(two_phase(&path));
    reader(&path).unwrap().status("j").unwrap();
    // A reader knocks only after an open that found the file held.
    assert!(!knock_file(&path).exists(), "no knock needed");
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}
