//! fraudstream: a streaming online-learning fraud detection engine.
//!
//! Data flow (see ARCHITECTURE.md):
//! source ([`sources`]) → engine ([`engine`]: [`features`] over [`windows`],
//! [`model`], [`pending`], [`eval`]) → sinks ([`sinks`]); labels flow back
//! through the pending store into the model. [`config`] turns topology files
//! into a typed [`config::Topology`]; [`pipeline`] runs one.

pub mod bench;
pub mod bench_fluvio;
pub mod checkpoint;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod eval;
pub mod event;
pub mod features;
pub mod model;
pub mod pending;
pub mod pipeline;
pub mod runtime;
pub mod service;
pub mod simulate;
pub mod sinks;
pub mod sources;
pub mod windows;
