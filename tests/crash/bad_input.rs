//! Bad-input suite: damaged, truncated, empty, foreign and newer-format files, jobs opened
//! with the wrong state type, schema version or input manifest, a second process on the
//! same store, a full disk and a read-only file system.
//!
//! Proves each case gets a specific typed error (`Corrupt`, `Unopenable`, `NotAStore`,
//! `UnsupportedFormat`, `JobMismatch`, `Locked`, `DiskFull`, `Io`) or a store whose every
//! check passes and whose data equals the undamaged store (never silently wrong data), never
//! a panic or an abort, and that the store stays at its last good commit. Damage cases run
//! in child processes (this test binary re-executed with `RESUMABLE_CRASH_CHILD`), because
//! some redb paths abort the process on damaged files; a child that dies names its case.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use resumable::{Error, JobOptions, Store};

use crate::child::{self, CHILD};
use crate::fuzz_bodies::{OpenOutcome, good_store_image, open_and_classify, variant};
use crate::model::{JOB, Tally, Workload, output_of};

/// Runs the damaged images in `dir` in a child process, in batches; returns outcome counts.
fn classify_in_children(dir: &Path, names: &[String]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for batch in names.chunks(48) {
        let out = child::command(&format!("damage:{}", dir.display()))
            .env("RESUMABLE_CRASH_CASES", batch.join(","))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut last_case = None;
        let mut finished = 0;
        for line in stdout.lines() {
            if let Some((_, case)) = line.split_once("CASE ") {
                last_case = Some(case.to_owned());
            } else if let Some((_, rest)) = line.split_once("RESULT ") {
                let (_, outcome) = rest.split_once(' ').unwrap();
                *counts.entry(outcome.to_owned()).or_insert(0) += 1;
                finished += 1;
                last_case = None;
            }
        }
        assert!(
            finished == batch.len() && out.status.success(),
            "child died in case {last_case:?} (status {:?}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    counts
}

/// The child side: classify each named image in the directory.
pub fn damage_child(dir: &str) {
    let cases = std::env::var("RESUMABLE_CRASH_CASES").unwrap();
    for name in cases.split(',') {
        println!("CASE {name}");
        let image = std::fs::read(Path::new(dir).join(name)).unwrap();
        let outcome = match open_and_classify(image) {
            OpenOutcome::Intact => "intact".to_owned(),
            OpenOutcome::Detected => "detected-by-verify".to_owned(),
            OpenOutcome::Refused(v) => format!("refused-{v}"),
        };
        println!("RESULT {name} {outcome}");
    }
}

/// A typed refusal or a verified-intact store; never `Io`/`Storage`/other for damage.
fn assert_typed(case: &str, counts: &BTreeMap<String, u64>) {
    for outcome in counts.keys() {
        assert!(
            matches!(
                outcome.as_str(),
                "intact"
                    | "detected-by-verify"
                    | "refused-Corrupt"
                    | "refused-Unopenable"
                    | "refused-NotAStore"
                    | "refused-UnsupportedFormat"
                    | "refused-JobNotFound"
            ),
            "{case}: untyped outcome {outcome} ({counts:?})"
        );
    }
    println!("bad input: {case}: {counts:?}");
}

#[test]
fn bit_flips_zeroed_pages_and_truncations_give_typed_errors_or_the_intact_store() {
    let image = good_store_image();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).unwrap();
    let mut rng = 0x5EED_u64;
    let mut next = || {
        rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        rng >> 33
    };

    let mut flips = Vec::new();
    // Every 3rd byte of redb's super-header and commit slots, then 4 bits in every page.
    let mut offsets: Vec<usize> = (0..320).step_by(3).collect();
    for page in 0..image.len() / 4096 {
        for _ in 0..4 {
            offsets.push(page * 4096 + (next() as usize % 4096));
        }
    }
    for (k, &offset) in offsets.iter().enumerate() {
        let mut damaged = image.clone();
        damaged[offset] ^= 1 << (next() % 8);
        let name = format!("flip{k}");
        write(&name, &damaged);
        flips.push(name);
    }
    let mut zeroed = Vec::new();
    for page in 0..image.len() / 4096 {
        let mut damaged = image.clone();
        damaged[page * 4096..(page + 1) * 4096].fill(0);
        let name = format!("zero{page}");
        write(&name, &damaged);
        zeroed.push(name);
    }
    let mut truncated = Vec::new();
    let mut lengths: Vec<usize> = vec![1, 8, 9, 10, 64, 100, 320, 511, 512, 4095];
    lengths.extend((1..image.len() / 4096).map(|p| p * 4096));
    lengths.extend((0..image.len() / 4096).map(|p| p * 4096 + 2048));
    lengths.push(image.len() - 1);
    for len in lengths {
        let name = format!("trunc{len}");
        write(&name, &image[..len]);
        truncated.push(name);
    }

    let started = std::time::Instant::now();
    for (case, names) in [
        ("single-bit flips", &flips),
        ("zeroed 4 KiB pages", &zeroed),
        ("truncations", &truncated),
    ] {
        let counts = classify_in_children(dir.path(), names);
        assert_eq!(counts.values().sum::<u64>(), names.len() as u64);
        assert_typed(&format!("{case} ({} cases)", names.len()), &counts);
    }
    println!(
        "bad input: {} damaged images in child processes, {:.1} s",
        flips.len() + zeroed.len() + truncated.len(),
        started.elapsed().as_secs_f64()
    );
}

/// A real store file holding the completed standard job; returns its bytes too.
fn real_store(path: &Path) -> (Workload, Vec<u8>) {
    let image = good_store_image();
    std::fs::write(path, &image).unwrap();
    (Workload::standard(40), image)
}

/// The store at `path` still holds the completed job, unchanged.
fn assert_last_good_commit(path: &Path) {
    let store = Store::open(path).unwrap();
    let w = Workload::standard(40);
    let job = store.job::<Tally>(JOB, w.options()).unwrap();
    assert_eq!(job.state(), w.final_state());
    assert_eq!(job.done_count(), w.records() as u64);
    assert!(job.verify().unwrap().is_ok());
    assert_eq!(job.output(0).unwrap(), Some(output_of(0)));
}

/// One way of opening the job, expected to be refused.
type Attempt<'a> = Box<dyn Fn() -> resumable::Result<()> + 'a>;

/// Another state type, to open the job with the wrong one.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Other;

impl resumable::Fold for Other {
    type Output = Vec<u8>;
    fn apply(&mut self, _: u64, _: &Vec<u8>) {}
}

#[test]
fn empty_foreign_newer_and_mismatched_stores_get_their_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut counts: BTreeMap<&str, String> = BTreeMap::new();

    let empty = dir.path().join("empty.redb");
    std::fs::write(&empty, b"").unwrap();
    let e = Store::open(&empty).unwrap_err();
    assert!(matches!(e, Error::NotAStore { .. }), "{e:?}");
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0, "file touched");
    counts.insert("zero-byte file", variant(&e).into());

    for (name, bytes) in [
        (
            "json",
            br#"{"job": "crash", "records": [1, 2, 3]}"#.to_vec(),
        ),
        (
            "random",
            (0..65_536u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let e = Store::open(&path).unwrap_err();
        assert!(matches!(e, Error::NotAStore { .. }), "{name}: {e:?}");
        assert!(
            std::fs::read(&path).unwrap() == bytes,
            "{name}: file touched"
        );
        counts.insert(
            if name == "json" {
                "foreign JSON"
            } else {
                "random bytes"
            },
            variant(&e).into(),
        );
    }

    // A newer and an older format version, written with raw redb into the
    // `resumable.store` table: each refused with a message saying what to do.
    for (name, version, advice) in [
        ("newer", resumable::FORMAT_VERSION + 1, "upgrade resumable"),
        ("older", 1, "pre-release"),
    ] {
        let path = dir.path().join(format!("{name}.redb"));
        real_store(&path);
        {
            let db = redb::Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let def: redb::TableDefinition<&str, &[u8]> =
                    redb::TableDefinition::new("resumable.store");
                let mut t = txn.open_table(def).unwrap();
                t.insert("format", version.to_le_bytes().as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        for _ in 0..2 {
            // Refused every time: the refusal wrote nothing that changes the answer.
            let e = Store::open(&path).unwrap_err();
            assert!(
                matches!(e, Error::UnsupportedFormat { found, .. } if found == version),
                "{e:?}"
            );
            assert!(e.to_string().contains(advice), "{e}");
        }
        let e = Store::open(&path).unwrap_err();
        counts.insert(
            if version > resumable::FORMAT_VERSION {
                "newer format version"
            } else {
                "older format version"
            },
            variant(&e).into(),
        );
    }

    // Wrong state type, schema version, input manifest: refused, nothing written.
    let path = dir.path().join("job.redb");
    let (w, _) = real_store(&path);
    let open = || Store::open(&path).unwrap();
    let attempts: [(&str, Attempt<'_>); 3] = [
        (
            "state type",
            Box::new(|| open().job::<Other>(JOB, w.options()).map(drop)),
        ),
        (
            "schema version",
            Box::new(|| {
                open()
                    .job::<Tally>(JOB, w.options().schema_version(1))
                    .map(drop)
            }),
        ),
        (
            "input manifest",
            Box::new(|| {
                open()
                    .job::<Tally>(JOB, w.options().input_manifest(42))
                    .map(drop)
            }),
        ),
    ];
    for (field, attempt) in attempts {
        let result = attempt();
        let e = result.unwrap_err();
        assert!(
            matches!(&e, Error::JobMismatch { field: f, .. } if *f == field),
            "{field}: {e:?}"
        );
        counts.insert(field, variant(&e).into());
        assert_last_good_commit(&path);
    }
    let e = open()
        .job::<Tally>("absent", JobOptions::new().create(false))
        .unwrap_err();
    assert!(matches!(e, Error::JobNotFound(_)), "{e:?}");
    for (case, v) in &counts {
        println!("bad input: {case}: {v}");
    }
}

#[test]
fn a_second_process_or_store_on_the_same_file_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.redb");
    real_store(&path);
    let holder = Store::open(&path).unwrap();
    let e = Store::open(&path).unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "same process: {e:?}");
    let out = child::command(&format!("lock:{}", path.display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("OPEN Locked"),
        "second process: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(holder);
    assert_last_good_commit(&path);
    println!("bad input: second store in process: Locked; second process: Locked");
}

/// The child side of the lock test.
pub fn lock_child(path: &str) {
    match Store::open(path) {
        Ok(_) => println!("OPEN ok"),
        Err(e) => println!("OPEN {}", variant(&e)),
    }
}

/// Runs `mount` with `args`; `false` if it is unavailable or refused.
fn mount(args: &[&str]) -> bool {
    Command::new("mount")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Unmounts `path`. A child process another test is spawning at that moment can hold the
/// mount busy (between its fork and its exec), so a refused unmount is retried, then done
/// lazily, rather than leaving the directory read-only for the checks after it.
fn umount(path: &Path) {
    for _ in 0..50 {
        if Command::new("umount")
            .arg(path)
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = Command::new("umount").arg("-l").arg(path).output();
}

#[test]
fn disk_full_is_disk_full_and_the_store_keeps_its_last_durable_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mnt_s = mnt.to_str().unwrap();
    if !mount(&["-t", "tmpfs", "-o", "size=512k", "tmpfs", mnt_s]) {
        // Not root or no mount(8): the FaultDisk sweep injects ENOSPC at every operation
        // instead (`sweep::io_error_and_disk_full_at_every_op_...`).
        println!("bad input: disk full: tmpfs mount refused; covered by FaultDisk injection");
        return;
    }
    let path = mnt.join("full.redb");
    let mut acked = 0u64;
    let err = {
        let store = Store::open(&path).unwrap();
        let mut job = store
            .job::<Discard>(JOB, JobOptions::new().snapshot_every_commits(0))
            .unwrap();
        let err = loop {
            match job.commit([(acked, vec![7u8; 900])]) {
                Ok(_) => acked += 1,
                Err(e) => break e,
            }
            assert!(acked < 100_000, "a 512 KiB disk never filled");
        };
        let again = job.commit([(acked + 1, vec![1])]).unwrap_err();
        assert!(
            matches!(again, Error::Poisoned),
            "after disk full: {again:?}"
        );
        err
    };
    let remounted = mount(&["-o", "remount,size=8m", mnt_s]);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert!(matches!(err, Error::DiskFull(_)), "{err:?}");
        assert!(remounted, "remount failed");
        let store = Store::open(&path).unwrap();
        let job = store
            .job::<Discard>(JOB, JobOptions::new().snapshot_every_commits(0))
            .unwrap();
        let done = job.done_count();
        assert!(
            done == acked || done == acked + 1,
            "acked {acked}, found {done}"
        );
        assert!(job.verify().unwrap().is_ok());
        println!(
            "bad input: disk full (512 KiB tmpfs): {acked} records acked, then {}; reopen after freeing space found {done}",
            variant(&err)
        );
    }));
    umount(&mnt);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

type Discard = resumable::Discard<Vec<u8>>;

#[test]
fn read_only_file_system_gives_io_errors_and_read_only_opens_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let path = ro.join("store.redb");
    real_store(&path);
    let ro_s = ro.to_str().unwrap();
    // Root ignores permission bits, so a read-only bind mount stands in for a read-only
    // directory and file.
    if !mount(&["--bind", ro_s, ro_s]) {
        println!("bad input: read-only: bind mount refused; covered by FaultDisk EIO injection");
        return;
    }
    let ok = mount(&["-o", "remount,ro,bind", ro_s]);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert!(ok, "read-only remount failed");
        let e = Store::open(&path).unwrap_err();
        assert!(
            matches!(e, Error::Io(_)),
            "read-write open of a read-only file: {e:?}"
        );
        let e2 = Store::open(ro.join("new.redb")).unwrap_err();
        assert!(
            matches!(e2, Error::Io(_)),
            "create in a read-only directory: {e2:?}"
        );
        let reader = Store::open_read_only(&path).unwrap();
        assert_eq!(reader.status(JOB).unwrap().records_done, 40);
        println!(
            "bad input: read-only bind mount: open {} / create {} / read-only open reads",
            variant(&e),
            variant(&e2)
        );
    }));
    umount(&ro);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
    assert_last_good_commit(&path);
}

/// The entry point of child processes (they run this binary with `--exact
/// bad_input::child_entry --include-ignored`): a dispatcher, not a test, so it is ignored
/// in an ordinary run and counts as no test.
#[test]
#[ignore = "dispatcher for child processes (RESUMABLE_CRASH_CHILD), not a test"]
fn child_entry() {
    let Ok(what) = std::env::var(CHILD) else {
        return;
    };
    if let Some(dir) = what.strip_prefix("damage:") {
        damage_child(dir);
    } else if let Some(path) = what.strip_prefix("lock:") {
        lock_child(path);
    } else if let Some(path) = what.strip_prefix("sigkill:") {
        crate::sigkill::child(path);
    } else if let Some(path) = what.strip_prefix("acks:") {
        crate::acks::child(path);
    } else if let Some(path) = what.strip_prefix("create:") {
        crate::creation::child(path);
    } else if let Some(path) = what.strip_prefix("runner:") {
        crate::runner_kills::child(path);
    } else if let Some(spec) = what.strip_prefix("fork:") {
        crate::fork::child(spec);
    }
}
