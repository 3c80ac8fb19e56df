//! Committed fixture stores guard the on-disk format (FORMAT.md): a store written by each
//! format version is checked into `tests/fixtures/`, and this build must read the ones it
//! supports (formats 2 and 3) back exactly and refuse the older one with
//! `UnsupportedFormat`, leaving its rows untouched. A format change adds a version and a
//! fixture; it never rewrites one.
//!
//! `format1.redb` was written by the pre-release engine (one row per output, commit
//! d59231c): 20 records in groups of 4, paused. `format2.redb` was written by
//! [`write_format2_fixture`] (run once, ignored otherwise): the job [`spec`] describes, left
//! running (so opening it is a crash recovery) with commits after its progress mark.
//! `format3.redb` was written by [`write_format3_fixture`] the same way: the same job in
//! three code versions with a redo entry between them (see there). A format-2 store takes
//! format-3 commits and redos in place: its chain switches from FNV-64 to BLAKE3 at the
//! first new entry, and it becomes format 3 in that entry's transaction.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use resumable::{
    ChainHash, CommitPolicy, Error, Fold, JobOptions, JobState, RedoSelection, Store, StoreOptions,
};
use serde::{Deserialize, Serialize};

const JOB: &str = "fixture";

#[derive(Default, Serialize, Deserialize, Debug, PartialEq)]
struct Sum {
    total: u64,
    count: u64,
}

impl Fold for Sum {
    type Output = u64;
    fn apply(&mut self, _id: u64, v: &u64) {
        self.total += v;
        self.count += 1;
    }
}

fn options() -> JobOptions {
    JobOptions::new()
        .commit_policy(CommitPolicy::new().max_group_records(3))
        .snapshot_every_commits(3)
        .keep_snapshots(10)
        .progress_every_commits(4)
}

/// The fixture job: ids `0..30` in a scrambled order, in groups of 3; ids divisible by 5
/// are dead-lettered, the others output `id * 3`.
fn spec() -> Vec<u64> {
    (0..30).map(|k| (k * 7) % 30).collect()
}

fn is_dead(id: u64) -> bool {
    id.is_multiple_of(5)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A copy of a fixture in a temporary directory, so opening it cannot change the original.
fn copy_of(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::copy(fixture(name), &path).unwrap();
    (dir, path)
}

#[test]
#[ignore = "writes tests/fixtures/format2.redb; run once for a new format, never to rewrite one"]
fn write_format2_fixture() {
    assert_eq!(resumable::FORMAT_VERSION, 2);
    let path = fixture("format2.redb");
    assert!(!path.exists(), "fixtures are never rewritten");
    let store = Store::open(&path).unwrap();
    let mut job = store.job::<Sum>(JOB, options()).unwrap();
    for id in spec() {
        if is_dead(id) {
            job.dead_letter(id, 2, &format!("boom {id}")).unwrap();
        } else {
            job.submit(id, id * 3).unwrap();
        }
    }
    job.flush().unwrap();
    // Dropped while running, with two commits after the progress mark (commit 8).
}

#[test]
fn format2_fixture_reads_back_exactly() {
    let (_dir, path) = copy_of("format2.redb");
    let outputs: Vec<(u64, u64)> = (0..30)
        .filter(|&id| !is_dead(id))
        .map(|id| (id, id * 3))
        .collect();
    let dead: Vec<u64> = (0..30).filter(|&id| is_dead(id)).collect();
    {
        // Read-only first: nothing is repaired or written.
        let store = StoreOptions::new().read_only(true).open(&path).unwrap();
        let status = store.status(JOB).unwrap();
        assert_eq!(status.lifecycle, JobState::Running);
        assert_eq!((status.records_done, status.commits), (30, 10));
        assert_eq!(status.dead_letters, dead.len() as u64);
        let ranges: Vec<_> = store.done_ranges(JOB).unwrap().ranges().collect();
        assert_eq!(ranges, vec![0..30]);
        let lineage = store.lineage(JOB, 0, 100).unwrap();
        let committed: Vec<u64> = lineage
            .iter()
            .flat_map(resumable::LineageEntry::done_ids)
            .collect();
        assert_eq!(committed.len(), 30);
        let mut in_order = spec();
        for group in in_order.chunks_mut(3) {
            group.sort_unstable();
        }
        let mut by_commit: Vec<u64> = Vec::new();
        for e in &lineage {
            let mut ids: Vec<u64> = e.done_ids().collect();
            ids.sort_unstable();
            by_commit.extend(ids);
        }
        assert_eq!(by_commit, in_order, "commits hold the groups in order");
        let mut read = Vec::new();
        store
            .for_each_output(JOB, 0..u64::MAX, |o| {
                read.push((o.id, o.decode::<u64>()?));
                Ok(true)
            })
            .unwrap();
        assert_eq!(read, outputs);
        let letters = store.dead_letters(JOB).unwrap();
        assert_eq!(letters.iter().map(|d| d.id).collect::<Vec<_>>(), dead);
        for d in &letters {
            assert_eq!(
                (d.attempts, d.error.as_str()),
                (2, &*format!("boom {}", d.id))
            );
        }
        assert!(store.verify_job(JOB).unwrap().is_ok());
    }
    // Read-write: the job resumes as after a crash, with the same state and outputs.
    let store = Store::open(&path).unwrap();
    let job = store.job::<Sum>(JOB, options()).unwrap();
    assert_eq!(job.recoveries(), 1);
    assert_eq!(
        *job.state(),
        Sum {
            total: outputs.iter().map(|(_, v)| v).sum(),
            count: outputs.len() as u64,
        }
    );
    for &(id, v) in &outputs {
        assert_eq!(job.output(id).unwrap(), Some(v));
    }
    let report = job.verify().unwrap();
    assert!(report.is_ok() && report.state_replayed, "{report:?}");
}

/// Every row of a format-1 store's tables, read with raw redb, as text.
fn format1_rows(path: &Path) -> String {
    use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};
    let db = redb::ReadOnlyDatabase::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let mut out = String::new();
    for name in ["resumable.store", "resumable.jobs"] {
        let t = txn
            .open_table(TableDefinition::<&str, &[u8]>::new(name))
            .unwrap();
        for row in t.iter().unwrap() {
            let (k, v) = row.unwrap();
            writeln!(out, "{name} {:?} {:?}", k.value(), v.value()).unwrap();
        }
    }
    for table in ["outputs", "log", "snapshots", "dead"] {
        let name = format!("job.{JOB}.{table}");
        let t = txn
            .open_table(TableDefinition::<u64, &[u8]>::new(&name))
            .unwrap();
        for row in t.iter().unwrap() {
            let (k, v) = row.unwrap();
            writeln!(out, "{name} {} {:?}", k.value(), v.value()).unwrap();
        }
    }
    let name = format!("job.{JOB}.done");
    let t = txn
        .open_table(TableDefinition::<u64, u64>::new(&name))
        .unwrap();
    for row in t.iter().unwrap() {
        let (k, v) = row.unwrap();
        writeln!(out, "{name} {} {}", k.value(), v.value()).unwrap();
    }
    out
}

#[test]
fn format1_fixture_is_refused_and_its_rows_left_untouched() {
    let (_dir, path) = copy_of("format1.redb");
    let before = format1_rows(&path);
    assert!(
        before.contains("job.fixture.outputs 19 "),
        "the fixture holds 20 outputs"
    );
    for read_only in [true, false] {
        let e = StoreOptions::new()
            .read_only(read_only)
            .open(&path)
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::UnsupportedFormat {
                    found: 1,
                    supported: 3
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("pre-release"),
            "says what to do: {e}"
        );
    }
    // A read-write open lets redb do its own housekeeping on the file (headers, its
    // integrity check); no stored row may change.
    assert_eq!(format1_rows(&path), before);
}

/// The store format version recorded in a store file, read with raw redb.
fn stored_format(path: &Path) -> u32 {
    use redb::{ReadableDatabase as _, TableDefinition};
    let db = redb::ReadOnlyDatabase::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let t = txn
        .open_table(TableDefinition::<&str, &[u8]>::new("resumable.store"))
        .unwrap();
    let v = t.get("format").unwrap().unwrap();
    u32::from_le_bytes(v.value().try_into().unwrap())
}

#[test]
fn format2_store_takes_format3_commits_and_a_redo_in_place() {
    let (_dir, path) = copy_of("format2.redb");
    assert_eq!(stored_format(&path), 2);
    {
        // Opening, even read-write and resuming, changes no format: only a new entry does.
        let store = Store::open(&path).unwrap();
        drop(store.job::<Sum>(JOB, options()).unwrap());
    }
    assert_eq!(stored_format(&path), 2);
    let store = Store::open(&path).unwrap();
    {
        let mut job = store
            .job::<Sum>(JOB, options().code_version("after-upgrade"))
            .unwrap();
        for id in 30..33 {
            job.submit(id, id * 3).unwrap();
        }
        job.flush().unwrap();
        job.pause().unwrap();
    }
    let lineage = store.lineage(JOB, 0, 100).unwrap();
    assert_eq!(lineage.len(), 11);
    for e in &lineage[..10] {
        assert!(
            matches!(e.hash, ChainHash::Fnv64(_)),
            "entry {} keeps FNV",
            e.seq
        );
        assert_eq!(e.code_version, None);
    }
    let switch = &lineage[10];
    assert!(matches!(switch.hash, ChainHash::Blake3(_)));
    assert_eq!(
        switch.prev_hash, lineage[9].hash,
        "the chain switches in place"
    );
    assert_eq!(switch.code_version.as_deref(), Some("after-upgrade"));
    assert!(store.verify_job(JOB).unwrap().is_ok());

    // A redo over format-2 commits: the state is the fold of what remains.
    let report = store
        .redo(JOB, &RedoSelection::Range(0..4), "fixture-test", false)
        .unwrap();
    assert_eq!(report.output_count, 3, "ids 1, 2, 3 (0 is a dead letter)");
    assert_eq!(report.dead_letters, vec![0]);
    assert!(store.verify_job(JOB).unwrap().is_ok());
    drop(store);
    assert_eq!(stored_format(&path), 3);
    let store = Store::open(&path).unwrap();
    let job = store.job::<Sum>(JOB, options()).unwrap();
    let remaining: Vec<u64> = (4..33).filter(|&id| id >= 30 || !is_dead(id)).collect();
    assert_eq!(
        *job.state(),
        Sum {
            total: remaining.iter().map(|id| id * 3).sum(),
            count: remaining.len() as u64,
        }
    );
    let report = job.verify().unwrap();
    assert!(report.is_ok() && report.state_replayed, "{report:?}");
}

/// The format-3 fixture job: the [`spec`] ids in three code versions. `fixture-v1` commits
/// the first half, `fixture-v2` the rest (the job completes), a redo of ids `3..9` (asked
/// by `fixture-redo`) makes them pending again, and `fixture-v3` commits them again, with
/// outputs `id * 3 + 1`; the store is left running with commits after the redo's mark.
fn format3_outputs() -> Vec<(u64, u64)> {
    (0..30)
        .filter(|&id| !is_dead(id))
        .map(|id| {
            (
                id,
                if (3..9).contains(&id) {
                    id * 3 + 1
                } else {
                    id * 3
                },
            )
        })
        .collect()
}

/// The lineage head of `format3.redb` as written: commits to every entry and output.
const FORMAT3_HEAD: &str = "13:faa728244f6b395765cf2bc07e1b2afc263c1756a0e3f8835e01f4038c934590";

#[test]
#[ignore = "writes tests/fixtures/format3.redb; run once for a new format, never to rewrite one"]
fn write_format3_fixture() {
    assert_eq!(resumable::FORMAT_VERSION, 3);
    let path = fixture("format3.redb");
    assert!(!path.exists(), "fixtures are never rewritten");
    let store = Store::open(&path).unwrap();
    let submit = |job: &mut resumable::Job<Sum>, id: u64, bump: u64| {
        if is_dead(id) {
            job.dead_letter(id, 2, &format!("boom {id}")).unwrap();
        } else {
            job.submit(id, id * 3 + bump).unwrap();
        }
    };
    let order = spec();
    {
        let mut job = store
            .job::<Sum>(JOB, options().total_records(30).code_version("fixture-v1"))
            .unwrap();
        for &id in &order[..15] {
            submit(&mut job, id, 0);
        }
        job.flush().unwrap();
        job.pause().unwrap();
    }
    {
        let mut job = store
            .job::<Sum>(JOB, options().total_records(30).code_version("fixture-v2"))
            .unwrap();
        for &id in &order[15..] {
            submit(&mut job, id, 0);
        }
        job.flush().unwrap();
        job.complete().unwrap();
    }
    let report = store
        .redo(JOB, &RedoSelection::Range(3..9), "fixture-redo", false)
        .unwrap();
    assert_eq!(report.records(), 6);
    let mut job = store
        .job::<Sum>(JOB, options().total_records(30).code_version("fixture-v3"))
        .unwrap();
    for id in 3..9 {
        submit(&mut job, id, 1);
    }
    job.flush().unwrap();
    println!("head {}", store.lineage_head(JOB).unwrap());
    // Dropped while running, with commits after the redo's progress mark.
}

#[test]
fn format3_fixture_reads_back_exactly() {
    let (_dir, path) = copy_of("format3.redb");
    assert_eq!(stored_format(&path), 3);
    let outputs = format3_outputs();
    let dead: Vec<u64> = (0..30).filter(|&id| is_dead(id)).collect();
    {
        let store = StoreOptions::new().read_only(true).open(&path).unwrap();
        assert_eq!(
            store.lineage_head(JOB).unwrap().to_string(),
            FORMAT3_HEAD,
            "the head commits to every entry and output byte"
        );
        let status = store.status(JOB).unwrap();
        assert_eq!(status.lifecycle, JobState::Running);
        assert_eq!(status.records_done, 30);
        assert_eq!(status.dead_letters, dead.len() as u64);
        let lineage = store.lineage(JOB, 0, 100).unwrap();
        let redos: Vec<_> = lineage.iter().filter(|e| e.redo.is_some()).collect();
        assert_eq!(redos.len(), 1);
        let redo = redos[0].redo.as_ref().unwrap();
        assert_eq!(redo.selection, "--range 3..9");
        assert_eq!(redo.dead_letters, vec![5]);
        assert_eq!(redo.output_count(), 5);
        assert_eq!(redos[0].code_version.as_deref(), Some("fixture-redo"));
        let versions: Vec<(Option<String>, u64)> = store
            .code_versions(JOB)
            .unwrap()
            .into_iter()
            .map(|v| (v.code_version, v.records))
            .collect();
        let v1_live = spec()[..15]
            .iter()
            .filter(|&&id| !is_dead(id) && !(3..9).contains(&id))
            .count() as u64;
        assert_eq!(
            versions,
            vec![
                (Some("fixture-v1".to_owned()), v1_live),
                (Some("fixture-v2".to_owned()), 24 - 5 - v1_live),
                (Some("fixture-v3".to_owned()), 5),
            ]
        );
        let mut read = Vec::new();
        store
            .for_each_output(JOB, 0..u64::MAX, |o| {
                read.push((o.id, o.decode::<u64>()?));
                Ok(true)
            })
            .unwrap();
        assert_eq!(read, outputs);
        let letters = store.dead_letters(JOB).unwrap();
        assert_eq!(letters.iter().map(|d| d.id).collect::<Vec<_>>(), dead);
        assert!(store.verify_job(JOB).unwrap().is_ok());
    }
    let store = Store::open(&path).unwrap();
    let job = store
        .job::<Sum>(JOB, options().total_records(30).code_version("fixture-v3"))
        .unwrap();
    assert_eq!(job.recoveries(), 1);
    assert_eq!(
        *job.state(),
        Sum {
            total: outputs.iter().map(|(_, v)| v).sum(),
            count: outputs.len() as u64,
        }
    );
    let report = job.verify().unwrap();
    assert!(report.is_ok() && report.state_replayed, "{report:?}");
}
