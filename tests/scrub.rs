//! The maintainer's background scrub (docs/SCRUB.md), driven through a real `Runner` over a
//! store on disk.
//!
//! Scenario: a job's store is filled and closed cleanly (which writes the open-check
//! sidecar); for the damage case, bytes inside one stored output are flipped in the file
//! and the sidecar is re-stamped to match it, as a disk that changes bytes below the file
//! system would leave it, so the next open skips redb's page walk. A `Runner` then resumes
//! the job with a fast scrub.
//!
//! Proves: the scrub finds the damaged segment while the job runs (`Stats::scrub_damaged`,
//! one `tracing::error!` naming its seq, however many passes find it), the job goes on, and no sidecar vouches for the
//! file afterwards, so the next open runs the full check; a clean store finishes passes
//! with no damage and keeps its sidecar; the bytes scrubbed stay under the configured rate;
//! a stop in the middle of a pass returns promptly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use resumable::{
    CommitPolicy, Discard, Error, IdSource, JobOptions, MaintainOptions, OpenCheck, ProcessError,
    RecordContext, RunEnd, Runner, Stats, StatsHandle, Store,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Error events: (job, seq, message).
#[derive(Default)]
struct Errors(Mutex<Vec<(String, Option<u64>, String)>>);

#[derive(Default)]
struct Fields {
    job: String,
    seq: Option<u64>,
    message: String,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "seq" {
            self.seq = Some(value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "job" => self.job = format!("{value:?}"),
            _ => {}
        }
    }
}

impl Subscriber for Errors {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        *m.level() == Level::ERROR
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut f = Fields::default();
        event.record(&mut f);
        self.0.lock().push((f.job, f.seq, f.message));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// The process-wide error log (tests in this binary run on several threads).
fn errors() -> &'static Errors {
    static ERRORS: OnceLock<Arc<Errors>> = OnceLock::new();
    ERRORS.get_or_init(|| {
        let errors = Arc::new(Errors::default());
        tracing::subscriber::set_global_default(Arc::clone(&errors)).expect("one subscriber");
        errors
    })
}

/// The output of `id`: a findable marker, padded to `pad` bytes.
fn output(id: u64, pad: usize) -> String {
    format!("SCRUB-MARK-{id:06}-{}", "x".repeat(pad))
}

fn job_options() -> JobOptions {
    JobOptions::new().commit_policy(CommitPolicy::new().max_group_records(50))
}

/// A store whose job `job` holds `0..records` (outputs of about `pad` bytes), closed
/// cleanly: its sidecar vouches for it.
fn filled_store(job: &str, records: u64, pad: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.redb");
    let store = Store::open(&path).expect("open");
    let mut j = store
        .job::<Discard<String>>(job, job_options())
        .expect("job");
    for ids in (0..records).collect::<Vec<_>>().chunks(50) {
        j.commit(ids.iter().map(|&id| (id, output(id, pad))))
            .expect("commit");
    }
    j.flush().expect("flush");
    drop((j, store));
    assert!(sidecar(&path).exists(), "a clean close writes the sidecar");
    (dir, path)
}

fn sidecar(path: &Path) -> PathBuf {
    path.with_file_name(".s.redb.checked")
}

/// Flips one byte inside every stored copy of `id`'s output (pad 0) in the file, then
/// re-stamps the sidecar to the file's new times: a disk that changed bytes under the file
/// system, which no fingerprint can see.
fn damage_below_the_file_system(path: &Path, id: u64) {
    let marker = output(id, 0);
    let bytes = fs::read(path).expect("read");
    let hits: Vec<usize> = bytes
        .windows(marker.len())
        .enumerate()
        .filter(|(_, w)| *w == marker.as_bytes())
        .map(|(at, _)| at)
        .collect();
    assert!(!hits.is_empty(), "the output of {id} is in the file");
    let mut file = fs::OpenOptions::new().write(true).open(path).expect("open");
    for at in hits {
        // "SCRUB" -> "SCRuB": inside the payload, so only resumable's CRC can tell.
        file.seek(SeekFrom::Start(at as u64 + 3)).expect("seek");
        file.write_all(b"u").expect("write");
    }
    file.sync_all().expect("sync");
    drop(file);
    let meta = fs::metadata(path).expect("stat");
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    let text = fs::read_to_string(sidecar(path)).expect("sidecar");
    let mut body = String::new();
    for line in text.lines().filter(|l| !l.starts_with("crc32 ")) {
        let line = match line.split_once(' ') {
            Some(("mtime_ns", _)) => format!("mtime_ns {}", ns(meta.mtime(), meta.mtime_nsec())),
            Some(("ctime_ns", _)) => format!("ctime_ns {}", ns(meta.ctime(), meta.ctime_nsec())),
            _ => line.to_owned(),
        };
        body.push_str(&line);
        body.push('\n');
    }
    let crc = crc32fast::hash(body.as_bytes());
    fs::write(sidecar(path), format!("{body}crc32 {crc:08x}\n")).expect("write sidecar");
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    clippy::unnecessary_wraps,
    reason = "the runner's processor signature"
)]
fn slow_ok(_: RecordContext, id: &u64) -> Result<String, ProcessError> {
    // A light, steady job: it keeps committing (so the stats stay fresh) without growing
    // the store much.
    let until = Instant::now() + Duration::from_micros(200);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    Ok(output(*id, 0))
}

/// Resumes job `job` with the given maintainer options and calls `watch` with the run's
/// stats handle until it returns `true` (or 60 s pass), then stops the run. Returns the
/// final stats and how long the stop took.
fn run_until(
    store: &Store,
    job: &str,
    maintain: MaintainOptions,
    mut watch: impl FnMut(&StatsHandle) -> bool,
) -> (Stats, Duration) {
    let j = store
        .job::<Discard<String>>(job, job_options())
        .expect("job");
    let runner = Runner::new(j).workers(1).maintainer(maintain);
    let (stats, stop) = (runner.stats_handle(), runner.stop_handle());
    std::thread::scope(|scope| {
        let run = scope.spawn(move || runner.run(IdSource::new(0..u64::MAX, Ok), slow_ok));
        let deadline = Instant::now() + Duration::from_mins(1);
        while !watch(&stats) && Instant::now() < deadline && !run.is_finished() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let stopping = Instant::now();
        stop.stop();
        let report = run.join().expect("no panic").expect("the run");
        let took = stopping.elapsed();
        assert!(matches!(report.end, RunEnd::Stopped), "{:?}", report.end);
        (report.stats, took)
    })
}

/// Options whose first pass starts after 300 ms (the pause, when shorter than the default
/// start of 10 s), then one every 300 ms.
fn scrub(rate: u64) -> MaintainOptions {
    MaintainOptions::new()
        .scrub_rate(rate)
        .scrub_every(Duration::from_millis(300))
}

fn fast_scrub() -> MaintainOptions {
    scrub(1 << 30)
}

#[test]
fn a_damaged_segment_is_reported_logged_and_voids_the_sidecar_while_the_job_goes_on() {
    let errors = errors();
    let (_dir, path) = filled_store("damaged", 2_000, 0);
    damage_below_the_file_system(&path, 1_234);
    let store = Store::open(&path).expect("open");
    assert!(
        matches!(store.open_check(), OpenCheck::Unchanged { .. }),
        "the damage is invisible to the fingerprint: {:?}",
        store.open_check()
    );
    let (stats, _) = run_until(&store, "damaged", fast_scrub(), |s| {
        let s = s.stats();
        s.scrub_passes >= 3 && s.records_committed > 0
    });
    // Every pass (one every 300 ms here) finds the one damaged segment; it is counted and
    // logged as an error once, not once per pass.
    assert_eq!(stats.scrub_damaged, 1, "{stats:?}");
    assert!(stats.scrub_passes >= 3, "{stats:?}");
    assert!(stats.records_committed > 0, "the job went on: {stats:?}");
    // Commit 1234 / 50 + 1 = 25 holds record 1234.
    let logged: Vec<_> = errors
        .0
        .lock()
        .iter()
        .filter(|(job, ..)| job == "damaged")
        .cloned()
        .collect();
    assert_eq!(logged.len() as u64, stats.scrub_damaged, "{logged:?}");
    for (_, seq, message) in &logged {
        assert_eq!(*seq, Some(25), "{logged:?}");
        assert!(message.contains("segment 25"), "{message}");
        assert!(message.contains("resumable verify"), "{message}");
    }
    drop(store);
    assert!(
        !sidecar(&path).exists(),
        "after damage no sidecar vouches for the file"
    );
    // The next open runs redb's page walk, which refuses the damaged page (the operator
    // then salvages the file).
    let reopened = Store::open(&path);
    assert!(
        matches!(reopened, Err(Error::Unopenable { .. })),
        "{:?}",
        reopened.map(|s| s.open_check())
    );
}

#[test]
fn a_clean_store_passes_with_no_damage_and_keeps_its_sidecar() {
    let errors = errors();
    let (_dir, path) = filled_store("clean", 2_000, 0);
    let store = Store::open(&path).expect("open");
    let (stats, _) = run_until(&store, "clean", fast_scrub(), |s| {
        s.stats().scrub_passes >= 1
    });
    assert!(stats.scrub_passes >= 1, "{stats:?}");
    assert_eq!(stats.scrub_damaged, 0, "{stats:?}");
    assert!(
        stats.scrub_bytes > 2_000 * 20,
        "every output was read: {stats:?}"
    );
    drop(store);
    assert!(
        errors.0.lock().iter().all(|(job, ..)| job != "clean"),
        "no error logged"
    );
    assert!(sidecar(&path).exists(), "a clean close still vouches");
    let store = Store::open(&path).expect("open");
    assert!(matches!(store.open_check(), OpenCheck::Unchanged { .. }));
    // A rate of 0 turns the scrub off.
    let (stats, _) = run_until(&store, "clean", scrub(0), |s| {
        s.stats().elapsed > Duration::from_millis(1_500)
    });
    assert_eq!((stats.scrub_bytes, stats.scrub_passes), (0, 0), "{stats:?}");
}

#[test]
fn the_bytes_scrubbed_stay_under_the_rate() {
    // About 8 MiB of outputs, scrubbed at 2 MiB/s: a pass takes about 4 s.
    let (_dir, path) = filled_store("rate", 4_000, 2_000);
    let store = Store::open(&path).expect("open");
    let rate = 2u64 << 20;
    let mut worst = 0.0f64;
    let (stats, _) = run_until(&store, "rate", scrub(rate), |s| {
        let s = s.stats();
        // Bytes by time t stay under rate * t plus one batch (a tenth of the rate).
        let bound = rate as f64 * s.elapsed.as_secs_f64() + rate as f64 / 10.0;
        worst = worst.max(s.scrub_bytes as f64 / bound);
        s.elapsed > Duration::from_secs(3)
    });
    let bound = rate as f64 * stats.elapsed.as_secs_f64() + rate as f64 / 10.0;
    eprintln!(
        "scrubbed {} bytes in {:?} at {rate} B/s: {:.2} of the bound; worst sample {worst:.2}",
        stats.scrub_bytes,
        stats.elapsed,
        stats.scrub_bytes as f64 / bound
    );
    assert!(worst <= 1.0, "a sample passed the bound: {worst:.2}");
    assert!(
        stats.scrub_bytes as f64 <= bound,
        "{} bytes over {bound}",
        stats.scrub_bytes
    );
    assert!(
        stats.scrub_bytes >= rate / 2,
        "the scrub ran (about 2 s at the rate): {stats:?}"
    );
    assert_eq!(stats.scrub_passes, 0, "a pass takes about 4 s: {stats:?}");
}

#[test]
fn a_stop_in_the_middle_of_a_pass_returns_promptly() {
    let (_dir, path) = filled_store("stop", 4_000, 2_000);
    let store = Store::open(&path).expect("open");
    for rate in [1u64 << 20, u64::MAX] {
        let (stats, took) = run_until(&store, "stop", scrub(rate), |s| s.stats().scrub_bytes > 0);
        eprintln!("rate {rate}: the stop took {took:?}; {stats:?}");
        assert!(stats.scrub_bytes > 0, "stopped during a pass: {stats:?}");
        if rate < u64::MAX {
            assert_eq!(stats.scrub_passes, 0, "a pass takes 8 s: {stats:?}");
        }
        assert!(
            took < Duration::from_secs(5),
            "the stop took {took:?} (a pass at 1 MiB/s takes about 8 s)"
        );
    }
}
