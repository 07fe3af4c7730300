//! Connectors: where events come from ([`sources`]), where results go
//! ([`sinks`]) and the Fluvio cluster's address and admin ([`cluster`]).
//! They decode and encode; they never score.

pub mod cluster;
pub mod sinks;
pub mod sources;
