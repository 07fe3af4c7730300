//! Commands: the `fraudstream` command line ([`cli`]) and one function per
//! subcommand. The binary only parses flags and prints errors.

pub mod bench;
pub mod bench_fluvio;
pub mod bench_soak;
pub mod cli;
pub mod cluster;
pub mod load;
pub mod matrix;
pub mod report;
pub mod run;
pub mod simulate;
pub mod topics;

use crate::config::Topology;
use cli::{Cli, ClusterAction, Command, TopicsAction};
use std::path::Path;
use std::process::ExitCode;

/// Carry out a parsed command line.
pub fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    let done = ExitCode::SUCCESS;
    match cli.command {
        Command::Run(a) => run::run(&a).map(|_| done),
        Command::Validate(a) => Ok(run::validate(&a)),
        Command::Bench(a) => bench::command(&a).map(|_| done),
        Command::Simulate(a) => simulate::command(&a).map(|_| done),
        Command::Matrix(a) => matrix::command(&a).map(|_| done),
        Command::Load(a) => load::command(&a).map(|_| done),
        Command::Report(a) => report::command(&a).map(|_| done),
        Command::Topics {
            action: TopicsAction::Create { topology, set },
        } => topics::create(&topology, &set),
        Command::Cluster {
            action: ClusterAction::RegisterSpu(a),
        } => cluster::register_spu(&a),
    }
}

/// The topology at `path` (the built-in one when `None`) with `set` overrides.
fn load(path: Option<&Path>, set: &[String]) -> anyhow::Result<Topology> {
    match path {
        Some(p) => Topology::from_file(p, set),
        None => Topology::embedded(set),
    }
    .map_err(|e| anyhow::anyhow!("{e}"))
}

fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
