//! Fuzz target `jsonl_record`: see [`fraudstream_fuzz::jsonl_record`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fraudstream_fuzz::jsonl_record(data));
