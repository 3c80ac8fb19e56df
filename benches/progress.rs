//! Progress ranges: lookups and gap listing on a contiguous progress (one range) and on a
//! fragmented one (every other id done: one range per id), and the cost of committing a
//! group whose ids extend one range versus a group that creates a range per id.
//!
//! Commits here are not fsynced, so the range bookkeeping is what is measured.

#![allow(
    clippy::expect_used,
    reason = "a bench aborts on a setup failure; there is no caller to report to"
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use resumable::{CommitPolicy, Discard, Durability, Job, JobOptions, Store};

const IDS: u64 = 200_000;

fn bench_dir() -> tempfile::TempDir {
    let base =
        std::env::var_os("RESUMABLE_BENCH_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);
    tempfile::Builder::new()
        .prefix(".bench-progress-")
        .tempdir_in(base)
        .expect("bench directory")
}

fn options() -> JobOptions {
    JobOptions::new().commit_policy(CommitPolicy::new().durability(Durability::Deferred {
        max_interval: Duration::from_hours(1),
    }))
}

/// Commits `ids` in groups of 1,000 with 8-byte outputs.
fn fill(job: &mut Job<Discard<u64>>, ids: impl Iterator<Item = u64>) {
    let ids: Vec<u64> = ids.collect();
    for chunk in ids.chunks(1000) {
        job.commit(chunk.iter().map(|&id| (id, id)))
            .expect("commit");
    }
}

fn lookups(c: &mut Criterion) {
    let dir = bench_dir();
    let store = Store::open(dir.path().join("progress.redb")).expect("store");
    let mut contiguous = store
        .job::<Discard<u64>>("contiguous", options())
        .expect("job");
    fill(&mut contiguous, 0..IDS);
    let mut fragmented = store
        .job::<Discard<u64>>("fragmented", options())
        .expect("job");
    fill(&mut fragmented, (0..IDS).step_by(2));
    let mut g = c.benchmark_group("progress");
    for (name, job) in [("contiguous", &contiguous), ("fragmented", &fragmented)] {
        let progress = job.progress();
        g.throughput(Throughput::Elements(1000));
        g.bench_function(BenchmarkId::new("contains_x1000", name), |b| {
            b.iter(|| {
                let mut hits = 0u32;
                let mut id = 12_345u64;
                for _ in 0..1000 {
                    id = (id * 6_364_136_223_846_793_005 + 1) % IDS;
                    hits += u32::from(progress.contains(black_box(id)));
                }
                hits
            });
        });
        g.throughput(Throughput::Elements(IDS));
        g.bench_function(BenchmarkId::new("gaps", name), |b| {
            b.iter(|| progress.gaps(black_box(IDS)).count());
        });
    }
    g.finish();
}

fn commits(c: &mut Criterion) {
    let dir = bench_dir();
    let store = Store::open(dir.path().join("commits.redb")).expect("store");
    let mut g = c.benchmark_group("commit_1000_ids_nofsync");
    g.sample_size(20).throughput(Throughput::Elements(1000));
    for (name, stride) in [("contiguous", 1u64), ("fragmented", 2)] {
        let mut job = store.job::<Discard<u64>>(name, options()).expect("job");
        let mut next = 0u64;
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let start = next;
                next += 1000 * stride;
                job.commit(
                    (start..next)
                        .step_by(usize::try_from(stride).unwrap_or(1))
                        .map(|id| (id, id)),
                )
                .expect("commit")
            });
        });
        job.flush().expect("flush");
    }
    g.finish();
}

criterion_group!(benches, lookups, commits);
criterion_main!(benches);
