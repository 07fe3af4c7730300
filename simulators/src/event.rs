//! The emitted stream: transactions, labels and events, and the external card / merchant ids.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::FraudPattern;

/// How a transaction was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Card present at a point-of-sale terminal.
    Pos,
    /// Card not present (online); no location.
    Ecom,
    /// Cash withdrawal at an ATM.
    Atm,
}

impl Channel {
    /// `"pos"`, `"ecom"` or `"atm"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Channel::Pos => "pos",
            Channel::Ecom => "ecom",
            Channel::Atm => "atm",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One simulated card transaction.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SimTransaction {
    /// 1.. increasing in emission order.
    pub tx_id: u64,
    /// Unix milliseconds.
    pub ts_ms: i64,
    /// Card index `0..cards` (see [`card_id`]).
    pub card: u32,
    /// Merchant index `0..merchants` (see [`merchant_id`]).
    pub merchant: u32,
    /// Amount in `currency`, > 0, rounded to cents.
    pub amount: f64,
    /// ISO-4217 currency of the merchant's country.
    pub currency: &'static str,
    /// Merchant category code.
    pub mcc: u16,
    /// ISO-3166 alpha-2 country of the merchant.
    pub country: &'static str,
    /// How the transaction was made.
    pub channel: Channel,
    /// (lat, lon) of the terminal; `None` for ecom.
    pub location: Option<(f64, f64)>,
    /// Ground truth (not a feature): the fraud pattern, or `None` when genuine.
    pub fraud: Option<FraudPattern>,
}

/// A label revealing the truth about an earlier transaction.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SimLabel {
    /// The labelled transaction.
    pub tx_id: u64,
    /// When the label becomes known (Unix ms), strictly after the transaction.
    pub ts_ms: i64,
    /// Whether the transaction was fraud.
    pub is_fraud: bool,
    /// The fraud pattern (ground truth), `None` for genuine.
    pub pattern: Option<FraudPattern>,
}

/// One event of the simulated stream.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum SimEvent {
    /// A card transaction.
    Transaction(SimTransaction),
    /// A delayed label.
    Label(SimLabel),
}

impl SimEvent {
    /// Timestamp of the event in Unix milliseconds.
    pub fn ts_ms(&self) -> i64 {
        match self {
            SimEvent::Transaction(t) => t.ts_ms,
            SimEvent::Label(l) => l.ts_ms,
        }
    }
}

/// External card id: `"C"` + 7 digits, e.g. `C0000123`.
pub fn card_id(card: u32) -> String {
    let mut s = String::with_capacity(8);
    let _ = write_card_id(card, &mut s);
    s
}

/// Writes the external card id (see [`card_id`]) without allocating.
pub fn write_card_id<W: fmt::Write>(card: u32, w: &mut W) -> fmt::Result {
    write!(w, "C{card:07}")
}

/// External merchant (terminal) id: `"T"` + 6 digits, e.g. `T000042`.
pub fn merchant_id(merchant: u32) -> String {
    let mut s = String::with_capacity(7);
    let _ = write_merchant_id(merchant, &mut s);
    s
}

/// Writes the external merchant id (see [`merchant_id`]) without allocating.
pub fn write_merchant_id<W: fmt::Write>(merchant: u32, w: &mut W) -> fmt::Result {
    write!(w, "T{merchant:06}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_fixed_width() {
        assert_eq!(card_id(123), "C0000123");
        assert_eq!(merchant_id(42), "T000042");
        let mut s = String::new();
        write_card_id(9_999_999, &mut s).unwrap();
        write_merchant_id(0, &mut s).unwrap();
        assert_eq!(s, "C9999999T000000");
    }

    #[test]
    fn channel_names() {
        assert_eq!(Channel::Pos.as_str(), "pos");
        assert_eq!(Channel::Ecom.as_str(), "ecom");
        assert_eq!(Channel::Atm.as_str(), "atm");
    }
}
