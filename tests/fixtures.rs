//! Committed fixture stores guard the on-disk format (FORMAT.md): a store written by each
//! format version is checked into `tests/fixtures/`, and this build must read the current
//! one back exactly and refuse the older ones with `UnsupportedFormat`, leaving their rows
//! untouched. A format change adds a version and a fixture; it never rewrites one.
//!
//! `format1.redb` was written by the pre-release engine (one row per output, commit
//! d59231c): 20 records in groups of 4, paused. `format2.redb` was written by
//! [`write_format2_fixture`] (run once, ignored otherwise): the job [`spec`] describes, left
//! running (so opening it is a crash recovery) with commits after its progress mark.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use resumable::{CommitPolicy, Error, Fold, JobOptions, JobState, Store, StoreOptions};
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
                    supported: 2
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
