#![no_main]
//! Fuzz target: see `digicert_sidecar::fuzzing::sanitize`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    digicert_sidecar::fuzzing::sanitize(data);
});
