//! Runner throughput by worker count: a processor spending about 20 µs of CPU per record
//! and returning a 1 KiB output, run through [`Runner`] with its defaults (default commit
//! policy, durable acknowledgements, background maintainer) over 20,000 records per
//! iteration. On a machine with C cores, expect the rate to rise up to about C workers.

#![allow(
    clippy::expect_used,
    reason = "a bench aborts on a setup failure; there is no caller to report to"
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use resumable::{BoxError, Discard, IdSource, JobOptions, ProcessError, Runner, Store};

const RECORDS: u64 = 20_000;

/// About 20 µs of byte-serial mixing on a typical core; deterministic.
fn process(id: u64) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let mut h = 0xcbf2_9ce4_8422_2325 ^ id;
    for _ in 0..8 {
        for b in &mut buf {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            *b = (h >> 29) as u8;
        }
    }
    buf
}

fn bench_dir() -> tempfile::TempDir {
    let base =
        std::env::var_os("RESUMABLE_BENCH_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);
    tempfile::Builder::new()
        .prefix(".bench-runner-")
        .tempdir_in(base)
        .expect("bench directory")
}

fn runner(c: &mut Criterion) {
    let dir = bench_dir();
    let store = Store::open(dir.path().join("runner.redb")).expect("store");
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut workers: Vec<usize> = vec![1, 2, 4];
    if !workers.contains(&cores) {
        workers.push(cores);
    }
    let mut g = c.benchmark_group("runner_1KiB_20us");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(RECORDS));
    for w in workers {
        let mut job = Some(
            store
                .job::<Discard<Vec<u8>>>(&format!("w{w}"), JobOptions::new())
                .expect("job"),
        );
        let mut next = 0u64;
        g.bench_function(BenchmarkId::from_parameter(w), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let ids = next..next + RECORDS;
                    next += RECORDS;
                    let start = Instant::now();
                    let report = Runner::new(job.take().expect("job is handed back"))
                        .workers(w)
                        .run(IdSource::new(ids, Ok::<u64, BoxError>), |ctx, _: &u64| {
                            Ok::<_, ProcessError>(black_box(process(ctx.id)))
                        })
                        .expect("run");
                    spent += start.elapsed();
                    job = Some(report.job);
                }
                spent
            });
        });
    }
    g.finish();
}

criterion_group!(benches, runner);
criterion_main!(benches);
