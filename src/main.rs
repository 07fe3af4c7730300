//! The `fraudstream` command: parses flags, runs the command, reports errors
//! with their whole chain of causes.

use clap::Parser;
use fraudstream::commands::{cli::Cli, execute};
use std::process::ExitCode;

fn main() -> ExitCode {
    match execute(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
