//! fraudstream's engine core: one transaction in, one score out; one label
//! in, one model update. No I/O, no async runtime, no transport: the
//! connectors and the execution layer of the `fraudstream` crate feed it.
//!
//! - [`event`]: transactions, labels, scores, dead letters.
//! - [`windows`]: event-time bucketed rings; [`features`]: per-card and
//!   per-merchant state folded from events.
//! - [`model`]: the online models and their portfolio; [`pending`]: the
//!   features each transaction was scored with, until its label arrives.
//! - [`eval`]: prequential metrics, an observer of scores and labels.
//! - [`keymap`]: seeded maps of entity keys, capped by least-recent eviction.
//! - [`engine`]: the merchant and card stages and the sequential engine,
//!   built from an [`EngineConfig`].
//! - [`telemetry`]: score-latency buckets and decision counts for the
//!   operators' metrics.

pub mod config;
pub mod decide;
pub mod engine;
pub mod eval;
pub mod event;
pub mod features;
pub mod keymap;
pub mod model;
pub mod pending;
pub mod routes;
pub mod telemetry;
pub mod time;
pub mod windows;

pub use config::{EngineConfig, Named, StageSettings};
