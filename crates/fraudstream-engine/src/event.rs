//! The event vocabulary of the engine: transactions in, labels in, scores out.
//!
//! Identifiers are kept as given (string or integer) in [`CompactString`]s, which
//! store up to 24 bytes inline, so ids of typical length cost no heap allocation.
//! Internally every entity is addressed by a stable 64-bit hash ([`key_of`]).

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A transaction id as given by the producer: an integer or a string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TxId {
    /// An integer id.
    Int(u64),
    /// Any other id, kept verbatim.
    Str(CompactString),
}

impl TxId {
    /// Stable 64-bit key of this id; an integer and its decimal string map to the
    /// same key, so a label file may quote ids that the transaction file did not.
    pub fn key(&self) -> u64 {
        match self {
            TxId::Int(n) => int_key(*n),
            TxId::Str(s) => match s.parse::<u64>() {
                Ok(n) if !s.starts_with('+') && (s.len() == 1 || !s.starts_with('0')) => int_key(n),
                _ => key_of(s.as_bytes()),
            },
        }
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxId::Int(n) => write!(f, "{n}"),
            TxId::Str(s) => f.write_str(s),
        }
    }
}

/// Stable hash of an identifier (xxh3, seedless): the same on every machine and run.
#[inline]
pub fn key_of(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

#[inline]
fn int_key(n: u64) -> u64 {
    // Integers hash through their decimal form so `7` and `"7"` agree.
    let buf = DecimalDigits::of(n);
    key_of(buf.as_bytes())
}

/// Decimal digits of a `u64` on the stack (no allocation).
struct DecimalDigits {
    bytes: [u8; 20],
    start: usize,
}

impl DecimalDigits {
    fn of(mut n: u64) -> Self {
        let mut bytes = [0u8; 20];
        let mut i = 20;
        loop {
            i -= 1;
            bytes[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        DecimalDigits { bytes, start: i }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

/// Payment channel, when the producer states it.
pub type Channel = CompactString;

/// One card transaction, validated: `amount` is finite and positive, `ts` is
/// event time in milliseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct Transaction {
    /// Id as given.
    pub tx_id: TxId,
    /// Event time, epoch milliseconds.
    pub ts: i64,
    /// Card (or account) id as given.
    pub card_id: CompactString,
    /// Merchant or terminal id as given.
    pub merchant_id: CompactString,
    /// Amount in the transaction currency; finite and > 0.
    pub amount: f64,
    /// ISO currency code.
    pub currency: Option<CompactString>,
    /// Merchant category code.
    pub mcc: Option<CompactString>,
    /// Merchant country.
    pub country: Option<CompactString>,
    /// Channel (pos, ecom, atm, ...).
    pub channel: Option<Channel>,
    /// Terminal location, when both coordinates are known and valid.
    pub location: Option<(f64, f64)>,
}

/// Fraud feedback for an earlier transaction: `ts` is when the label became known.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    /// The labelled transaction.
    pub tx_id: TxId,
    /// Arrival time of the label, epoch milliseconds.
    pub ts: i64,
    /// Verdict.
    pub is_fraud: bool,
}

/// An input event of the engine.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A transaction to score.
    Transaction(Transaction),
    /// Feedback to learn from.
    Label(Label),
}

impl Event {
    /// Event time (for labels: arrival time).
    pub fn ts(&self) -> i64 {
        match self {
            Event::Transaction(t) => t.ts,
            Event::Label(l) => l.ts,
        }
    }
}

/// A feature's share of an alert's score (linear model: weight x standardised value).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Contribution {
    /// Feature name.
    pub feature: CompactString,
    /// Signed contribution to the log-odds.
    pub value: f64,
}

/// The engine's verdict on one transaction.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Score {
    /// Id of the scored transaction, as given.
    pub tx_id: TxId,
    /// Event time of the transaction, epoch milliseconds.
    pub ts: i64,
    /// Card id, as given.
    pub card_id: CompactString,
    /// Fraud probability estimate in [0, 1].
    pub score: f64,
    /// `score >= threshold`.
    pub alert: bool,
    /// Version of the model that scored it (number of updates applied).
    pub model_version: u64,
    /// Top feature contributions, for alerts only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub top_features: Vec<Contribution>,
    /// The decision, when the topology decides (`[decisions]`, or the
    /// scoring API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<crate::decide::Decision>,
    /// The decision's reason codes: the matching rules', then the score
    /// band's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<CompactString>,
}

/// A record the engine could not accept, with the reason and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeadLetter {
    /// Source id (from the topology).
    pub source: CompactString,
    /// 1-based line (or record) number in the source, when known.
    pub line: Option<u64>,
    /// Machine-readable reason kind (see [`RejectKind`]).
    pub kind: RejectKind,
    /// Human-readable reason.
    pub reason: String,
    /// The raw record (truncated), for reprocessing. Data output: never logged.
    pub raw: String,
}

/// Why a record was rejected; counted per kind in the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectKind {
    /// Not parseable as JSON / CSV.
    Malformed,
    /// A required field is absent.
    MissingField,
    /// A field has an invalid value (type, range, non-finite amount, ...).
    InvalidField,
    /// The timestamp could not be parsed.
    BadTimestamp,
    /// Larger than the configured record limit.
    Oversized,
    /// Dated too far ahead of the stream (or of the wall clock).
    FutureTimestamp,
}

impl RejectKind {
    /// All kinds, in report order.
    pub const ALL: [RejectKind; 6] = [
        RejectKind::Malformed,
        RejectKind::MissingField,
        RejectKind::InvalidField,
        RejectKind::BadTimestamp,
        RejectKind::Oversized,
        RejectKind::FutureTimestamp,
    ];

    /// Snake-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::Malformed => "malformed",
            RejectKind::MissingField => "missing_field",
            RejectKind::InvalidField => "invalid_field",
            RejectKind::BadTimestamp => "bad_timestamp",
            RejectKind::Oversized => "oversized",
            RejectKind::FutureTimestamp => "future_timestamp",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_and_decimal_string_ids_share_a_key() {
        assert_eq!(TxId::Int(7).key(), TxId::Str("7".into()).key());
        assert_eq!(TxId::Int(0).key(), TxId::Str("0".into()).key());
        assert_ne!(TxId::Int(7).key(), TxId::Str("07".into()).key());
        assert_ne!(TxId::Int(7).key(), TxId::Int(8).key());
    }

    #[test]
    fn tx_id_serialises_as_given() {
        assert_eq!(serde_json::to_string(&TxId::Int(12)).unwrap(), "12");
        assert_eq!(
            serde_json::to_string(&TxId::Str("a-1".into())).unwrap(),
            "\"a-1\""
        );
    }
}
