//! The commit path: what one group commit costs by group size and by output size, and
//! whether it grows with the number of records already done (it must not).
//!
//! Every commit here is a real durable commit (`fsync`) on the disk holding
//! `RESUMABLE_BENCH_DIR` (default: the package directory, not a tmpfs), except the
//! `commit_vs_done` group, which commits without fsync to expose bookkeeping costs that
//! the fsync would hide.

#![allow(
    clippy::expect_used,
    reason = "a bench aborts on a setup failure; there is no caller to report to"
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use resumable::{CommitPolicy, Discard, Durability, Job, JobOptions, Store};

fn bench_dir() -> tempfile::TempDir {
    let base =
        std::env::var_os("RESUMABLE_BENCH_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);
    tempfile::Builder::new()
        .prefix(".bench-commit-")
        .tempdir_in(base)
        .expect("bench directory")
}

/// Commits ids `next..next + group` with `bytes`-byte outputs as one group.
fn commit_group(job: &mut Job<Discard<Vec<u8>>>, next: &mut u64, group: u64, output: &[u8]) {
    let start = *next;
    *next += group;
    let receipt = job
        .commit((start..*next).map(|id| (id, output.to_vec())))
        .expect("commit");
    black_box(receipt);
}

fn group_sizes(c: &mut Criterion) {
    let dir = bench_dir();
    let store = Store::open(dir.path().join("groups.redb")).expect("store");
    let output = vec![0xa5u8; 1024];
    let mut g = c.benchmark_group("commit_group_size_1KiB");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    for group in [1u64, 10, 100, 1000, 10_000] {
        let mut job = store
            .job::<Discard<Vec<u8>>>(&format!("g{group}"), JobOptions::new())
            .expect("job");
        let mut next = 0;
        g.throughput(Throughput::Elements(group));
        g.bench_function(BenchmarkId::from_parameter(group), |b| {
            b.iter(|| commit_group(&mut job, &mut next, group, &output));
        });
    }
    g.finish();
}

fn output_sizes(c: &mut Criterion) {
    let dir = bench_dir();
    let store = Store::open(dir.path().join("sizes.redb")).expect("store");
    let group = 100u64;
    let mut g = c.benchmark_group("commit_output_size_group_100");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    for bytes in [64usize, 1024, 16 << 10, 64 << 10] {
        let output = vec![0x5au8; bytes];
        let mut job = store
            .job::<Discard<Vec<u8>>>(&format!("s{bytes}"), JobOptions::new())
            .expect("job");
        let mut next = 0;
        g.throughput(Throughput::Bytes(group * bytes as u64));
        g.bench_function(BenchmarkId::from_parameter(bytes), |b| {
            b.iter(|| commit_group(&mut job, &mut next, group, &output));
        });
    }
    g.finish();
}

fn commit_vs_done(c: &mut Criterion) {
    let dir = bench_dir();
    let store = Store::open(dir.path().join("done.redb")).expect("store");
    let deferred = CommitPolicy::new().durability(Durability::Deferred {
        max_interval: Duration::from_hours(1),
    });
    let small = vec![1u8; 64];
    let output = vec![0xa5u8; 1024];
    let mut g = c.benchmark_group("commit_vs_done_group_100_nofsync");
    g.sample_size(20);
    g.throughput(Throughput::Elements(100));
    for done in [1_000u64, 1_000_000] {
        let mut job = store
            .job::<Discard<Vec<u8>>>(
                &format!("d{done}"),
                JobOptions::new().commit_policy(deferred.clone()),
            )
            .expect("job");
        let mut next = 0;
        // Prefill with small outputs in groups of 10,000 to keep the setup short.
        while next < done {
            let group = (done - next).min(10_000);
            commit_group(&mut job, &mut next, group, &small);
        }
        g.bench_function(BenchmarkId::from_parameter(done), |b| {
            b.iter(|| commit_group(&mut job, &mut next, 100, &output));
        });
        job.flush().expect("flush");
    }
    g.finish();
}

criterion_group!(benches, group_sizes, output_sizes, commit_vs_done);
criterion_main!(benches);
