//! Store creation under real kills: a child process (this test binary re-executed with
//! `RESUMABLE_CRASH_CHILD=create:PATH`) prints `BEGIN`, creates a new store with
//! `Store::open` and opens a job in it, then prints `OPENED`; the parent SIGKILLs it at a
//! random moment after `BEGIN` (most kills land inside `Store::open`). And two children
//! race to create the same store.
//!
//! Proves: after every kill the final path is absent or a complete store (it opens without
//! `create`, read-write and read-only); a leftover `.NAME.creating-PID` temporary file is
//! harmless (the path is still absent or complete) and the next `Store::open` removes it;
//! two racing creators leave exactly one store, and each of them either used it or got a
//! typed error. `RESUMABLE_CREATE_KILLS` (default 20 x `RESUMABLE_CRASH_SCALE`) sets the
//! number of kills and `RESUMABLE_CREATE_SEED` replays a campaign; the seed is printed.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use resumable::{Discard, JobOptions, Store, StoreOptions};

use crate::child::{campaign_seed, kill_after_begin, leftovers};
use crate::fuzz_bodies::variant;
use crate::model::{env_u64, scale};
use crate::sigkill::Rng;

/// The child: create the store and a job in it, announcing the start and the end.
pub fn child(path: &str) {
    println!("BEGIN");
    match Store::open(path).and_then(|s| {
        s.job::<Discard<u64>>("created", JobOptions::new())
            .map(drop)
    }) {
        Ok(()) => println!("OPENED"),
        Err(e) => println!("ERR {}", variant(&e)),
    }
}

/// A child that creates the store at `path`.
fn spawn(path: &Path) -> Child {
    crate::child::spawn(&format!("create:{}", path.display()))
}

/// The path is absent or a complete store.
fn absent_or_complete(path: &Path, context: &str) -> bool {
    if !path.exists() {
        return false;
    }
    // A writer killed after the creation leaves a store that needs recovery: a read-only
    // open says so (typed), the read-write open below recovers it.
    match StoreOptions::new().create(false).read_only(true).open(path) {
        Ok(_) | Err(resumable::Error::NeedsRecovery { .. }) => {}
        Err(e) => panic!("{context}: the created path is not a complete store (read-only): {e:?}"),
    }
    StoreOptions::new()
        .create(false)
        .open(path)
        .unwrap_or_else(|e| panic!("{context}: the created path is not a complete store: {e:?}"));
    true
}

#[test]
fn sigkill_inside_store_creation_leaves_the_path_absent_or_complete() {
    let target = env_u64("RESUMABLE_CREATE_KILLS", 20 * scale());
    let seed = campaign_seed("creation", "RESUMABLE_CREATE_SEED");
    let mut rng = Rng(seed);
    let started = Instant::now();
    // How long a creation takes here, to spread the kills over it.
    let span = {
        let dir = tempfile::tempdir().unwrap();
        let t = Instant::now();
        drop(Store::open(dir.path().join("probe.redb")).unwrap());
        t.elapsed().max(Duration::from_millis(1))
    };
    let (mut kills, mut inside, mut absent, mut complete, mut temps) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut attempts = 0;
    while kills < target {
        attempts += 1;
        assert!(
            attempts < target * 20,
            "seed {seed}: kills keep missing the creation"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.redb");
        // Up to 1.5 creations' time after BEGIN.
        let (killed, rest) = kill_after_begin(spawn(&path), &mut rng, span);
        if !killed || rest.contains("OPENED") {
            continue; // the creation had finished: not a kill inside it
        }
        kills += 1;
        inside += u64::from(!rest.contains("OPENED"));
        let context = format!("seed {seed}, kill {kills}");
        let left = leftovers(dir.path());
        temps += u64::from(!left.is_empty());
        if absent_or_complete(&path, &context) {
            complete += 1;
        } else {
            absent += 1;
        }
        // The next open (of the same path) creates or opens the store and removes leftovers.
        drop(
            Store::open(&path).unwrap_or_else(|e| panic!("{context}: the next open failed: {e:?}")),
        );
        assert!(
            leftovers(dir.path()).is_empty(),
            "{context}: leftovers {left:?} not cleaned by the next open"
        );
    }
    println!(
        "creation campaign: {kills} kills inside Store::open + job open of a new path ({inside} before OPENED): \
         {absent} left the path absent, {complete} a complete store, {temps} a leftover temporary (each removed by the next open); \
         creation takes ~{} us here; {:.1} s",
        span.as_micros(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn two_processes_racing_to_create_one_store_leave_exactly_one() {
    let rounds = 20 * scale();
    let mut outcomes = std::collections::BTreeMap::new();
    for round in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raced.redb");
        let children = [spawn(&path), spawn(&path)];
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: a racer failed: {:?}",
                out.status
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let outcome = if text.contains("OPENED") {
                "opened".to_owned()
            } else if let Some((_, v)) = text.split_once("ERR ") {
                let v = v.split_whitespace().next().unwrap_or("").to_owned();
                assert_ne!(v, "other", "round {round}: an untyped error");
                v
            } else {
                panic!("round {round}: a racer said nothing: {text:?}");
            };
            *outcomes.entry(outcome).or_insert(0u64) += 1;
        }
        assert!(
            absent_or_complete(&path, &format!("round {round}")),
            "round {round}: no store"
        );
        assert!(
            leftovers(dir.path()).is_empty(),
            "round {round}: temporaries left"
        );
        // The store, and the open-check sidecar its clean close may write and its writer
        // lock file.
        let entries = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                !name.ends_with(".checked") && !name.ends_with(".writer")
            })
            .count();
        assert_eq!(entries, 1, "round {round}: more than the one store file");
    }
    println!(
        "creation race: {rounds} rounds of 2 processes: exactly one store each time; outcomes {outcomes:?}"
    );
}
