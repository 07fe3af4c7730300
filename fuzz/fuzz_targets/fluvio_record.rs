//! Fuzz target `fluvio_record`: see [`fraudstream_fuzz::fluvio_record`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fraudstream_fuzz::fluvio_record(data));
