//! libFuzzer target: `dsp_streaming::fuzz::frames` (its docs say what it checks).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dsp_streaming::fuzz::frames(data));
