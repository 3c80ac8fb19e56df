//! What resuming a file input costs: creating a job over a large file (one pass: count,
//! index, fingerprint), checking the files on a rerun (the fingerprint), and reaching the
//! last 1% of records by seeking through the recorded index against reading from the
//! start and skipping (what a source without an index pays).
//!
//! `cargo run --release --example run_seek -- [MEGABYTES]` (default 1024). The input is
//! written to a temporary directory and deleted afterwards.

use std::io::Write as _;
use std::time::Instant;

use resumable::{FileInput, Source as _, Store};

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mb: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1024);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("big.txt");
    let mut lines = 0u64;
    {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
        let mut written = 0u64;
        while written < mb << 20 {
            let line = format!(
                "{{\"id\":{lines},\"name\":\"user-{}\",\"score\":{}}}\n",
                lines * 2_654_435_761 % 1_000_003,
                lines % 97
            );
            w.write_all(line.as_bytes())?;
            written += line.len() as u64;
            lines += 1;
        }
        w.flush()?;
    }
    let size = std::fs::metadata(&path)?.len();
    // Read the file once so every variant below starts from the page cache alike.
    let t = Instant::now();
    let _ = std::fs::read(&path)?.len();
    let cat = t.elapsed();
    println!(
        "input: {lines} lines, {:.0} MiB; reading it once: {:.2} s",
        size as f64 / f64::from(1 << 20),
        cat.as_secs_f64()
    );
    let store = Store::open(dir.path().join("s.redb"))?;

    let t = Instant::now();
    let input = FileInput::builder([&path]).open(&store, "seek")?;
    let create = t.elapsed();
    let job = store.job::<resumable::Discard<resumable::Json>>(
        "seek",
        input.job_options(resumable::JobOptions::new()),
    )?;
    drop(job);
    let t = Instant::now();
    let again = FileInput::builder([&path]).open(&store, "seek")?;
    let check = t.elapsed();
    assert!(!again.scanned());

    let total = again.total_records();
    let from = total / 100 * 99;
    let t = Instant::now();
    let mut src = again.source();
    src.seek(from)?;
    let mut n = 0u64;
    while let Some(r) = src.next_record() {
        r?;
        n += 1;
    }
    let seek = t.elapsed();
    let skipped_by_reading = src.records_skipped_by_reading();

    let t = Instant::now();
    let mut src = again.source();
    let mut m = 0u64;
    while let Some(r) = src.next_record() {
        let (id, _) = r?;
        if id >= from {
            m += 1;
        }
    }
    let scan = t.elapsed();
    assert_eq!(n, m);
    println!(
        "create the job (count + index + fingerprint, one pass): {:.2} s",
        create.as_secs_f64()
    );
    println!(
        "rerun: check the files against the manifest: {:.1} ms",
        check.as_secs_f64() * 1e3
    );
    println!(
        "resume at 99% ({n} records left): seek + read the rest: {:.1} ms ({skipped_by_reading} records read to reach the target)",
        seek.as_secs_f64() * 1e3
    );
    println!(
        "the same without the index (read and skip from record 0): {:.2} s; seek is {:.0}x faster",
        scan.as_secs_f64(),
        scan.as_secs_f64() / seek.as_secs_f64()
    );
    Ok(())
}
