#![no_main]
//! Fuzz target: see `digicert_sidecar::fuzzing::config`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    digicert_sidecar::fuzzing::config(data);
});
