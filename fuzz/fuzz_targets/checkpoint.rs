//! Fuzz target `checkpoint`: see [`fraudstream_fuzz::checkpoint`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fraudstream_fuzz::checkpoint(data));
