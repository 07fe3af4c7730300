//! `fraudstream-sim` owns the seeded, deterministic generator of card transactions and their delayed fraud labels.
//!
//! A [`Simulator`] is an [`Iterator`] of [`SimEvent`]s: transactions of a synthetic card
//! portfolio (card holders with homes, usual merchants, amount profiles, daily rhythm, trips)
//! mixed with four fraud patterns ([`FraudPattern`]) whose mix and rate can drift, and the
//! labels that reveal the truth later (analyst confirmations, chargebacks, matured genuine
//! transactions).
//!
//! Streaming contract:
//! - the run is generated one day at a time; a day's transactions are sorted by
//!   (ts_ms, generation order) and numbered 1.. in that order, so memory stays
//!   O(cards + merchants + one day + pending labels);
//! - events come out with non-decreasing `ts_ms`; a pending label is emitted before the next
//!   transaction when `label.ts_ms <= tx.ts_ms` (labels first at equal timestamps);
//!   pending labels are ordered by (ts_ms, tx_id) (fraud labels in a min-heap, genuine
//!   labels — which all have the same maturity — in a FIFO that is already in that order);
//! - after the last transaction all remaining labels are drained in (ts_ms, tx_id) order;
//! - the same [`SimConfig`] always yields the same event sequence (ChaCha8, no hash-map
//!   iteration, no clock).

mod categories;
mod config;
mod day;
mod event;
mod fraud;
mod genuine;
mod handbook;
mod incident;
mod labels;
mod mix;
mod pattern;
mod simulator;
mod time;
mod world;

pub use categories::category_names;
pub use config::{
    DriftConfig, DriftMode, Family, GenuineLabels, LabelConfig, PatternMix, SimConfig, MAX_CARDS,
    MAX_DAYS, MAX_FRAUD_RATE, MAX_MERCHANTS, MIN_MERCHANTS,
};
pub use event::{
    card_id, merchant_id, write_card_id, write_merchant_id, Channel, SimEvent, SimLabel,
    SimTransaction,
};
pub use pattern::FraudPattern;
pub use simulator::Simulator;
pub use time::{DAY_MS, DEFAULT_START_MS, HOUR_MS, MINUTE_MS};
