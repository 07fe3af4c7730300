//! Fuzz target `csv_file`: see [`fraudstream_fuzz::csv_file`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fraudstream_fuzz::csv_file(data));
