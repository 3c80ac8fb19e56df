//! Snapshots: writing one (encode the state, CRC it, commit it durably, retire the oldest)
//! and reading one back (open a paused job: read, CRC check and decode of the newest
//! snapshot, no replay), by state size.

#![allow(
    clippy::expect_used,
    reason = "a bench aborts on a setup failure; there is no caller to report to"
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use resumable::{Fold, JobOptions, Store};
use serde::{Deserialize, Serialize};

/// A state that grows by one `u64` per record.
#[derive(Default, Serialize, Deserialize)]
struct Items {
    items: Vec<u64>,
}

impl Fold for Items {
    type Output = u64;
    fn apply(&mut self, _id: u64, output: &u64) {
        self.items.push(*output);
    }
}

fn bench_dir() -> tempfile::TempDir {
    let base =
        std::env::var_os("RESUMABLE_BENCH_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);
    tempfile::Builder::new()
        .prefix(".bench-snapshot-")
        .tempdir_in(base)
        .expect("bench directory")
}

fn snapshots(c: &mut Criterion) {
    let dir = bench_dir();
    let store = Store::open(dir.path().join("snapshots.redb")).expect("store");
    // Snapshots only when asked, so the fill does not write them on the commit path.
    let options = || JobOptions::new().snapshot_every_commits(0);
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    for items in [1_000u64, 100_000, 1_000_000] {
        let name = format!("items{items}");
        let mut job = store.job::<Items>(&name, options()).expect("job");
        let mut next = 0u64;
        while next < items {
            let end = (next + 10_000).min(items);
            job.commit((next..end).map(|id| (id, id.wrapping_mul(0x9e37_79b9_7f4a_7c15))))
                .expect("commit");
            next = end;
        }
        g.throughput(Throughput::Elements(items));
        g.bench_function(BenchmarkId::new("write", items), |b| {
            b.iter(|| black_box(job.snapshot().expect("snapshot")));
        });
        job.pause().expect("pause");
        drop(job);
        g.bench_function(BenchmarkId::new("restore", items), |b| {
            b.iter(|| {
                let job = store.job::<Items>(&name, options()).expect("reopen");
                assert_eq!(job.stats().replayed_commits, 0, "restore must not replay");
                black_box(job.state().items.len())
            });
        });
    }
    g.finish();
}

criterion_group!(benches, snapshots);
criterion_main!(benches);
