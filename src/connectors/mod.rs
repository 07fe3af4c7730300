//! Connectors: where events come from ([`sources`]), where results go
//! ([`sinks`]), the Fluvio cluster's address and admin ([`cluster`]), and the
//! records stages of a repartitioned topology hand each other ([`stage`]).
//! They decode and encode; they never score.

pub mod cluster;
pub mod sinks;
pub mod sources;
pub mod stage;
