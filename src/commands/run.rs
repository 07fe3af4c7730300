//! `fraudstream run` and `fraudstream validate`: a topology run to its end
//! (or, for a service, until stopped), or only checked.

use crate::commands::cli::{RunArgs, ValidateArgs};
use crate::config::Topology;
use crate::exec::pipeline::RunOptions;
use anyhow::Context;
use std::process::ExitCode;

/// Run the topology (the built-in one when none is named).
pub fn run(a: &RunArgs) -> anyhow::Result<()> {
    let mut t = super::load(a.topology.as_deref(), &a.set)?;
    // `--role all` on a topology without [stages] is what it runs anyway.
    if let Some(role) = a
        .role
        .as_deref()
        .filter(|r| t.stages.is_some() || *r != "all")
    {
        let mut set = a.set.clone();
        set.push(format!("stages.role={role}"));
        t = super::load(a.topology.as_deref(), &set)?;
    }
    if a.null_pipeline && !matches!(t.source, crate::config::SourceConfig::Fluvio(_)) {
        anyhow::bail!(
            "--null-pipeline runs a Fluvio service; {} reads no Fluvio topic",
            t.file
        );
    }
    crate::exec::run(
        &t,
        &RunOptions {
            quiet: a.quiet,
            pace: None,
            null_pipeline: a.null_pipeline,
        },
    )
    .with_context(|| format!("running {}", t.file))?;
    Ok(())
}

/// Check each file; every error of every file is printed (exit 1 if any).
pub fn validate(a: &ValidateArgs) -> ExitCode {
    let mut failed = false;
    for f in &a.files {
        match Topology::from_file(f, &[]) {
            Ok(_) => println!("{}: ok", f.display()),
            Err(e) => {
                failed = true;
                eprint!("{e}");
            }
        }
    }
    super::exit_code(!failed)
}
