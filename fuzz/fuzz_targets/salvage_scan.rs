//! Fuzz target `salvage_scan`: the body lives in `tests/crash/fuzz_bodies.rs`, which the crash
//! test suite also runs over a seeded corpus (`tests/crash/fuzz_corpus.rs`).
#![no_main]

#[allow(dead_code)]
#[path = "../../tests/crash/model.rs"]
mod model;

#[allow(dead_code)]
#[path = "../../tests/crash/fuzz_bodies.rs"]
mod fuzz_bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = fuzz_bodies::salvage_scan(data);
});
