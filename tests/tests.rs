//! End-to-end tests: one binary, one module per theme.

mod util;

mod bad_input;
mod cli;
mod determinism;
mod feedback;
mod persistence;
mod portfolio;
mod quality;
mod replay;
