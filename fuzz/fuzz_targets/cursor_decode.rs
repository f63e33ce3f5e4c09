//! Arbitrary bytes as a pull cursor: decoding never panics, and cursors the server
//! encodes decode to themselves (`nas_sync::fuzzing::cursor_decode`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nas_sync::fuzzing::cursor_decode(data));
