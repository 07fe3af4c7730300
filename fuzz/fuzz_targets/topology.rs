//! Fuzz target `topology`: see [`fraudstream_fuzz::topology`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fraudstream_fuzz::topology(data));
