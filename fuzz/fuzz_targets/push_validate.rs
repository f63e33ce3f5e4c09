//! Arbitrary bytes as a push body: parsing and row validation never panic
//! (`nas_sync::fuzzing::push_validate`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nas_sync::fuzzing::push_validate(data));
