//! End-to-end tests: one binary, one module per theme.

mod util;

mod api;
mod bad_input;
mod browser;
mod cli;
mod compose;
mod dashboard;
mod determinism;
mod feedback;
mod fluvio;
mod fuzz_corpus;
mod golden;
mod http;
mod layers;
mod monitoring;
mod persistence;
mod poison;
mod portfolio;
mod quality;
mod reliability;
mod replay;
mod report;
mod soak;
