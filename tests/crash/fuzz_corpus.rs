//! Runs the four cargo-fuzz target bodies (`fuzz_bodies.rs`) over a seeded, deterministic
//! corpus, so CI exercises every target without cargo-fuzz, plus every regression input the
//! fuzz campaigns turned up.
//!
//! Proves: `crash_resume` inputs (records, groups, crash op, loss model, double crash) all
//! satisfy the crash invariants; `codec_decode` never panics on arbitrary or mutated valid
//! bytes (the allocation limit is checked by the fuzz target's `-malloc_limit_mb`: the crate
//! forbids `unsafe`, so this test binary cannot install a counting allocator); and
//! `store_open` damage never panics and never yields a store that passes every check with
//! wrong data; `salvage_scan` finds, in arbitrary bytes and damaged images, only segments
//! the store's own reader accepts, each byte for byte the committed one. `RESUMABLE_CRASH_SCALE` multiplies the corpus sizes.

use std::collections::BTreeMap;

use crate::fuzz_bodies::{OpenOutcome, codec_decode, crash_resume, salvage_scan, store_open};
use crate::model::scale;

/// Deterministic pseudo-random bytes.
fn corpus(seed: u64, count: usize, max_len: usize) -> Vec<Vec<u8>> {
    let mut x = seed;
    let mut next = move || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..count)
        .map(|_| {
            let len = (next() % (max_len as u64 + 1)) as usize;
            (0..len).map(|_| next() as u8).collect()
        })
        .collect()
}

/// The committed corpus of a fuzz target (`fuzz/seeds/TARGET/`, the campaign's minimized
/// corpus), empty if the directory is absent.
fn committed_corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// Inputs the fuzz campaigns saved as findings (none so far); each stays a regression test.
const REGRESSIONS: &[(&str, &[u8])] = &[];

#[test]
fn crash_resume_body_over_seeded_corpus() {
    let mut inputs = corpus(0x00C0_FFEE, 150 * scale() as usize, 24);
    inputs.extend(committed_corpus("crash_resume"));
    let mut crashes = 0;
    for input in &inputs {
        crashes += crash_resume(input);
    }
    for (target, input) in REGRESSIONS.iter().filter(|(t, _)| *t == "crash_resume") {
        println!("regression input for {target}");
        crashes += crash_resume(input);
    }
    assert!(crashes >= inputs.len() as u64, "every input crashes");
    println!(
        "fuzz corpus: crash_resume: {} inputs passed, {crashes} crashes (every input crashes once, those with a second crash twice)",
        inputs.len()
    );
}

#[test]
fn codec_decode_body_over_seeded_corpus_never_panics() {
    let mut inputs = corpus(0x00DE_C0DE, 20_000 * scale() as usize, 96);
    inputs.extend(committed_corpus("codec_decode"));
    // Valid encodings and every single-byte mutation of them.
    for seed in resumable::testing::decoders::decoder_seeds() {
        for i in 0..seed.len() {
            for v in [0u8, 1, 0x7f, 0xfb, 0xfc, 0xfd, 0xff] {
                let mut m = seed.clone();
                m[i] = v;
                inputs.push(m);
            }
        }
        inputs.push(seed);
    }
    let mut accepted = 0;
    for input in &inputs {
        accepted += codec_decode(input);
    }
    println!(
        "fuzz corpus: codec_decode: {} inputs, {accepted} decodes accepted",
        inputs.len()
    );
}

#[test]
fn store_open_body_over_seeded_corpus_never_panics_or_returns_wrong_data() {
    let mut inputs = corpus(0x0005_707E, 300 * scale() as usize, 40);
    inputs.extend(committed_corpus("store_open"));
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for input in &inputs {
        let o = match store_open(input) {
            OpenOutcome::Intact => "intact".to_owned(),
            OpenOutcome::Detected => "detected".to_owned(),
            OpenOutcome::Refused(v) => format!("refused-{v}"),
        };
        *outcomes.entry(o).or_insert(0) += 1;
    }
    println!(
        "fuzz corpus: store_open: {} damaged stores: {outcomes:?}",
        inputs.len()
    );
}

#[test]
fn salvage_scan_body_over_seeded_corpus_finds_only_committed_segments() {
    let mut inputs = corpus(0x5A17_0A6E, 400 * scale() as usize, 48);
    inputs.extend(committed_corpus("salvage_scan"));
    // Arbitrary bytes around real segments (odd first byte: scanned as they are).
    let image = crate::fuzz_bodies::good_store_image();
    for (k, chunk) in image.chunks(4096).enumerate().take(64) {
        let mut input = vec![1u8];
        input.extend_from_slice(&chunk[..chunk.len().min(1 + k * 61 % 4096)]);
        inputs.push(input);
    }
    let mut found = 0;
    for input in &inputs {
        found += salvage_scan(input);
    }
    assert!(found > 0, "the damaged images still hold segments");
    println!(
        "fuzz corpus: salvage_scan: {} inputs, {found} segments found",
        inputs.len()
    );
}
