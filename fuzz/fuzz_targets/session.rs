//! libFuzzer target: `dsp_streaming::fuzz::session` (its docs say what it checks).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dsp_streaming::fuzz::session(data));
