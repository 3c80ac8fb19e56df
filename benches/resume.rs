//! Resume: opening a store and a job that was running when its process died: the done
//! ranges, the newest snapshot, and the replay of the commits after it.
//!
//! The store holds 127,000 done records per job (1 KiB outputs, groups of 1,000). One job was last
//! snapshotted 63 commits before the crash (the most the default `snapshot_every_commits`
//! of 64 leaves to replay), the other right before it (nothing to replay). Each iteration
//! is a crash recovery, so it includes the durable commit that records it.

#![allow(
    clippy::expect_used,
    reason = "a bench aborts on a setup failure; there is no caller to report to"
)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use resumable::{Fold, JobOptions, Store, StoreOptions};
use serde::{Deserialize, Serialize};

const RECORDS: u64 = 127_000;
const GROUP: u64 = 1000;

/// A fold over the outputs, so the replay really runs.
#[derive(Default, Serialize, Deserialize)]
struct Tally {
    records: u64,
    bytes: u64,
}

impl Fold for Tally {
    type Output = Vec<u8>;
    fn apply(&mut self, _id: u64, output: &Vec<u8>) {
        self.records += 1;
        self.bytes += output.len() as u64;
    }
}

fn bench_dir() -> tempfile::TempDir {
    let base =
        std::env::var_os("RESUMABLE_BENCH_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);
    tempfile::Builder::new()
        .prefix(".bench-resume-")
        .tempdir_in(base)
        .expect("bench directory")
}

/// Fills job `name`; with `snapshot_last`, takes a snapshot after the last commit.
fn build(path: &Path, name: &str, snapshot_last: bool) {
    let store = Store::open(path).expect("store");
    let mut job = store.job::<Tally>(name, JobOptions::new()).expect("job");
    let output = vec![0x5au8; 1024];
    let mut next = 0;
    while next < RECORDS {
        job.commit((next..next + GROUP).map(|id| (id, output.clone())))
            .expect("commit");
        next += GROUP;
    }
    if snapshot_last {
        job.snapshot().expect("snapshot");
    }
    // Dropped while running: the next open is a crash recovery.
}

fn resume(c: &mut Criterion) {
    let dir = bench_dir();
    let path = dir.path().join("resume.redb");
    build(&path, "replay", false);
    build(&path, "snapshotted", true);
    let mut g = c.benchmark_group("resume_127k_records");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.bench_function("store_open_verified", |b| {
        b.iter(|| black_box(Store::open(&path).expect("open")));
    });
    g.bench_function("store_open", |b| {
        b.iter(|| {
            black_box(
                StoreOptions::new()
                    .verify_on_open(false)
                    .open(&path)
                    .expect("open"),
            )
        });
    });
    for name in ["replay", "snapshotted"] {
        g.bench_function(BenchmarkId::new("store_and_job_open", name), |b| {
            b.iter(|| {
                let store = StoreOptions::new()
                    .verify_on_open(false)
                    .open(&path)
                    .expect("open");
                let job = store.job::<Tally>(name, JobOptions::new()).expect("job");
                black_box((job.state().records, job.stats().replayed_commits))
            });
        });
    }
    g.finish();
}

criterion_group!(benches, resume);
criterion_main!(benches);
