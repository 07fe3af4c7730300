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
