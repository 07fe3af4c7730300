//! fraudstream: a streaming online-learning fraud detection engine.
//!
//! The engine core (events, windows, features, models, pending store,
//! evaluation, the keyed stages) is the `fraudstream_engine` crate: no I/O.
//! This crate adds, in layers that only depend downwards
//! (see ARCHITECTURE.md):
//!
//! - [`commands`]: one function per `fraudstream` subcommand, and the CLI;
//! - [`exec`]: running a topology: the file [`exec::pipeline`], the parallel
//!   [`exec::runtime`], the Fluvio [`exec::service`] and its checkpoints;
//! - [`connectors`]: sources, sinks, the Fluvio cluster;
//! - [`config`]: topology files read into a typed [`config::Topology`].

pub mod commands;
pub mod config;
pub mod connectors;
pub mod exec;

/// The message a thread panicked with (`panic!("...")` or a formatted one),
/// for the error that reports the panic.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(a panic without a message)"
    }
}
