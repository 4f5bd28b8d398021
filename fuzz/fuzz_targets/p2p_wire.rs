//! libFuzzer target: `dsp_streaming::fuzz::p2p_wire` (its docs say what it checks).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| dsp_streaming::fuzz::p2p_wire(data));
