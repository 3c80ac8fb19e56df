//! Bodies of the cargo-fuzz targets in `fuzz/`, shared with `fuzz_corpus.rs` so that CI runs
//! every target over a seeded corpus without cargo-fuzz. The fuzz targets include this file
//! and `model.rs` with `#[path]`; only the public API (and `resumable::testing`) is used.

use std::sync::OnceLock;

use resumable::testing::{Fault, FaultDisk, LossModel, decoders};
use resumable::{Error, StoreOptions};

use crate::model::{
    Finish, JOB, Tally, Watermark, Workload, base_image, finish_and_check, measured_ops,
    run_incarnation, with_context,
};

/// Reads the fuzzer's bytes as small numbers, yielding zeros once exhausted.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
}

/// `crash_resume`: the fuzzer chooses the records (ids and group sizes), the snapshot
/// cadence, the crash operation and loss model, and an optional second crash during the
/// recovery; the reopened store must match the model (acknowledged groups present exactly
/// once, no half group, progress within the watermark) and resume to the fault-free result.
/// Returns how many crashes the input caused (1 or 2: every input crashes).
pub fn crash_resume(data: &[u8]) -> u64 {
    let mut b = Bytes(data);
    let records = 1 + u64::from(b.byte() % 24);
    let id_base = u64::from(b.u16());
    let stride = [1, 3, 5, 7, 11][usize::from(b.byte() % 5)];
    let mut seen = std::collections::HashSet::new();
    let ids: Vec<u64> = (0..records)
        .map(|k| id_base + (k * stride) % records)
        .filter(|id| seen.insert(*id))
        .collect();
    let mut groups = Vec::new();
    let mut rest = &ids[..];
    while !rest.is_empty() {
        let n = (1 + usize::from(b.byte() % 6)).min(rest.len());
        groups.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    let snapshot_every = u64::from(b.byte() % 4);
    let keep = 1 + usize::from(b.byte() % 3);
    let w = Workload::new(groups, snapshot_every, keep);
    let base = base_image(&w);
    // Crash points come from the run's measured op count, so every input crashes.
    let total = measured_ops(&base, &w);
    let crash_at = 1 + u64::from(b.u16()) % total;
    let model = LossModel::ALL[usize::from(b.byte()) % LossModel::ALL.len()];
    let loss_seed = u64::from(b.u32());
    let second = b.u16();
    let context = |second_at: u64| {
        format!(
            "crash op {crash_at}/{total}, loss model {model:?}, seed {loss_seed}, second crash op {second_at}"
        )
    };

    let disk = FaultDisk::from_image(base);
    disk.arm(crash_at, Fault::Crash);
    let inc = run_incarnation(&disk, &w, false);
    assert!(disk.crashed(), "[{}] the crash did not fire", context(0));
    let mut mark = Watermark::default();
    mark.after(&inc);
    let mut image = disk.crash_image(model, loss_seed);
    let mut crashes = 1;
    let mut second_at = 0;
    if second > 0 {
        let total2 = measured_ops(&image, &w);
        second_at = 1 + u64::from(second & 0xff) % total2;
        let disk2 = FaultDisk::from_image(image.clone());
        disk2.arm(second_at, Fault::Crash);
        let inc2 = run_incarnation(&disk2, &w, false);
        assert!(
            disk2.crashed(),
            "[{}] second crash did not fire",
            context(second_at)
        );
        mark.after(&inc2);
        crashes += 1;
        let model2 = LossModel::ALL[usize::from(second >> 8) % LossModel::ALL.len()];
        image = disk2.crash_image(model2, loss_seed.rotate_left(17));
    }
    with_context(
        || context(second_at),
        || finish_and_check(image, &w, &mut mark, Finish::ResumeAndReopen),
    );
    crashes
}

/// `codec_decode`: arbitrary bytes into every decoder. Never a panic; allocation limits are
/// checked by the caller (the fuzz target's malloc limit, the corpus test's allocator).
pub fn codec_decode(data: &[u8]) -> usize {
    decoders::decode_everything(data)
}

/// The closed store `store_open` damages, and the workload it holds (completed).
fn good_store() -> &'static (Vec<u8>, Workload) {
    static GOOD: OnceLock<(Vec<u8>, Workload)> = OnceLock::new();
    GOOD.get_or_init(|| {
        let w = Workload::standard(40);
        let disk = FaultDisk::from_image(base_image(&w));
        let inc = run_incarnation(&disk, &w, false);
        assert!(inc.finished, "{:?}", inc.error);
        (disk.live_image(), w)
    })
}

/// The store image `store_open` starts from (a completed 40-record job).
#[must_use]
pub fn good_store_image() -> Vec<u8> {
    good_store().0.clone()
}

/// What `store_open` saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpenOutcome {
    /// Opened, verified, and equal to the undamaged store.
    Intact,
    /// A typed error from opening the store or the job.
    Refused(&'static str),
    /// Opened, but `verify` or redb's integrity check named the damage.
    Detected,
}

/// Names an error's variant.
#[must_use]
pub fn variant(e: &Error) -> &'static str {
    match e {
        Error::NotAStore { .. } => "NotAStore",
        Error::UnsupportedFormat { .. } => "UnsupportedFormat",
        Error::Corrupt { .. } => "Corrupt",
        Error::Unopenable { .. } => "Unopenable",
        Error::JobMismatch { .. } => "JobMismatch",
        Error::JobNotFound(_) => "JobNotFound",
        Error::Locked { .. } => "Locked",
        Error::DiskFull(_) => "DiskFull",
        Error::Poisoned => "Poisoned",
        Error::Io(_) => "Io",
        Error::Storage(_) => "Storage",
        _ => "other",
    }
}

/// Opens a (possibly damaged) store image and classifies the result. Panics only when a store
/// that passed every check holds data other than the undamaged store's: silent corruption.
pub fn open_and_classify(image: Vec<u8>) -> OpenOutcome {
    let (_, w) = good_store();
    let disk = FaultDisk::from_image(image);
    let store = match StoreOptions::new().open_on(&disk) {
        Ok(s) => s,
        Err(e) => return OpenOutcome::Refused(variant(&e)),
    };
    let job = match store.job::<Tally>(JOB, w.options().create(false)) {
        Ok(j) => j,
        Err(e) => return OpenOutcome::Refused(variant(&e)),
    };
    match job.verify() {
        Ok(report) if report.is_ok() => {}
        Ok(_) | Err(_) => return OpenOutcome::Detected,
    }
    if store.check_integrity().is_err() {
        return OpenOutcome::Detected;
    }
    // Everything passed: the store must be exactly the undamaged one.
    let mut outputs = Vec::new();
    let read = store.for_each_output(JOB, 0..u64::MAX, |o| {
        outputs.push((o.id, o.decode::<Vec<u8>>()?));
        Ok(true)
    });
    if read.is_err() {
        return OpenOutcome::Detected;
    }
    assert_eq!(
        job.state(),
        w.final_state(),
        "damaged store passed every check with a wrong state"
    );
    assert_eq!(
        job.done_count(),
        w.records() as u64,
        "damaged store lost records silently"
    );
    assert_eq!(
        outputs.len(),
        w.records(),
        "damaged store lost outputs silently"
    );
    for (id, out) in &outputs {
        assert_eq!(
            *out,
            crate::model::output_of(*id),
            "output {id} silently wrong"
        );
    }
    OpenOutcome::Intact
}

/// `store_open`: arbitrary damage to a valid closed store: up to 8 edits, each a bit flip,
/// a byte overwrite, a zeroed 512-byte sector or a truncation, at fuzzer-chosen offsets.
/// Opening and verifying must give a typed error, a detected problem, or the intact store.
pub fn store_open(data: &[u8]) -> OpenOutcome {
    let mut image = good_store_image();
    let mut b = Bytes(data);
    let edits = 1 + b.byte() % 8;
    for _ in 0..edits {
        if image.is_empty() {
            break;
        }
        let kind = b.byte() % 4;
        let offset = b.u32() as usize % image.len();
        match kind {
            0 => image[offset] ^= 1 << (b.byte() % 8),
            1 => image[offset] = b.byte(),
            2 => {
                let start = offset / 512 * 512;
                let end = (start + 512).min(image.len());
                image[start..end].fill(0);
            }
            _ => image.truncate(offset),
        }
    }
    open_and_classify(image)
}

/// The segments of the undamaged `good_store` image, by (seq, lineage hash).
fn good_segments() -> &'static std::collections::HashMap<(u64, u64), Vec<u8>> {
    static GOOD: OnceLock<std::collections::HashMap<(u64, u64), Vec<u8>>> = OnceLock::new();
    GOOD.get_or_init(|| {
        let (segments, _) = resumable::testing::salvage_scan(&good_store().0);
        assert!(!segments.is_empty(), "the good store holds segments");
        segments
            .into_iter()
            .map(|(seq, hash, bytes)| ((seq, hash), bytes))
            .collect()
    })
}

/// `salvage_scan`: salvage's raw-byte scanner over arbitrary bytes (first byte odd) or over
/// the good store damaged by up to 8 fuzzer-chosen edits (bit flips, byte overwrites, zeroed
/// sectors, truncations, spliced copies of one region over another). Never a panic; every
/// segment found passes the store's own reader (checked inside `salvage_scan`), and a
/// segment found in a damaged image under a commit the good store holds is byte for byte
/// that commit's. Returns how many segments were found.
pub fn salvage_scan(data: &[u8]) -> usize {
    let mut b = Bytes(data);
    if b.byte() % 2 == 1 {
        return resumable::testing::salvage_scan(b.0).0.len();
    }
    let mut image = good_store_image();
    let edits = 1 + b.byte() % 8;
    for _ in 0..edits {
        if image.is_empty() {
            break;
        }
        let kind = b.byte() % 5;
        let offset = b.u32() as usize % image.len();
        match kind {
            0 => image[offset] ^= 1 << (b.byte() % 8),
            1 => image[offset] = b.byte(),
            2 => {
                let start = offset / 512 * 512;
                let end = (start + 512).min(image.len());
                image[start..end].fill(0);
            }
            3 => {
                let from = b.u32() as usize % image.len();
                let len = usize::from(b.u16()).min(image.len() - offset.max(from));
                image.copy_within(from..from + len, offset);
            }
            _ => image.truncate(offset),
        }
    }
    let (segments, _) = resumable::testing::salvage_scan(&image);
    let good = good_segments();
    for (seq, hash, bytes) in &segments {
        if let Some(original) = good.get(&(*seq, *hash)) {
            assert_eq!(bytes, original, "segment {seq} found with other bytes");
        }
    }
    segments.len()
}
