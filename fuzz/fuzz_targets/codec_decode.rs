//! Fuzz target `codec_decode`: arbitrary bytes into every decoder of stored values. Run it
//! with `-malloc_limit_mb=1100` so an allocation beyond the codec's 1 GiB decode limit is
//! reported as a crash. The body is shared with the crash test suite's corpus test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = resumable::testing::decoders::decode_everything(data);
});
