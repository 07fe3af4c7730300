//! Execution: running a topology. [`pipeline`] drives a file or simulator
//! source through the engine (sequentially or on the parallel [`runtime`])
//! into sinks; [`service`] runs the engine against Fluvio until stopped,
//! saving [`checkpoint`]s; [`api`] answers scoring requests over HTTP;
//! [`dashboard`] is the live view both services serve; [`outputs`] holds
//! what they all write at the end; [`rules_watch`] reloads the decision
//! rules of both services.

pub mod api;
pub mod checkpoint;
pub mod dashboard;
pub mod outputs;
pub mod pipeline;
pub mod rules_watch;
pub mod runtime;
pub mod service;

use crate::config::{SourceConfig, Topology};
use crate::connectors::sinks::report::RunReport;

/// Run any topology: the file pipeline for a finite source, the service
/// (until stopped, or idle when so configured) for a Fluvio source or the
/// scoring API.
pub fn run(t: &Topology, opts: &pipeline::RunOptions) -> anyhow::Result<RunReport> {
    match t.source {
        SourceConfig::Fluvio(_) => service::run(
            t,
            &service::ServiceOptions {
                quiet: opts.quiet,
                null_pipeline: opts.null_pipeline,
            },
        ),
        SourceConfig::Api(_) => api::run(t, &api::ApiOptions { quiet: opts.quiet }),
        SourceConfig::Simulator(_) | SourceConfig::File(_) => pipeline::run(t, opts),
    }
}
