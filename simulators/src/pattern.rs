//! The fraud patterns (scenarios) the simulator mixes into the genuine traffic, and their names.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Fraud scenario that produced a fraudulent transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FraudPattern {
    /// A physical card is stolen: a few large purchases far from home over 1-3 days.
    StolenCard,
    /// A terminal is compromised for 7-21 days: every transaction there is fraud.
    CompromisedMerchant,
    /// An account is taken over for 2-7 days: larger, more frequent purchases at new merchants.
    AccountTakeover,
    /// A burst of tiny amounts at many (mostly ecom) merchants, then one large purchase.
    CardTesting,
    /// `categories` family: stolen credentials used card-not-present for a few
    /// purchases at 1.5-4x the usual amount in categories fraudsters favour.
    HighValueCategory,
    /// `categories` family: a merchant colludes for 10-30 days; cards of the
    /// ring buy there while its genuine trade goes on.
    FraudRingMerchant,
    /// `categories` family: a small recurring charge at one unfamiliar
    /// subscription-like merchant for 1-4 weeks.
    MicroDrain,
    /// `handbook` family: any amount above a fixed level (220).
    AmountAboveLevel,
    /// `handbook` family: a terminal compromised for 28 days, every
    /// transaction there fraud.
    CompromisedTerminal,
    /// `handbook` family: a customer compromised for 14 days, a third of
    /// their transactions fraud at 5 times the amount.
    CompromisedCustomer,
}

impl FraudPattern {
    /// The `categories` family's mechanisms.
    pub const CATEGORIES: [FraudPattern; 3] = [
        FraudPattern::HighValueCategory,
        FraudPattern::FraudRingMerchant,
        FraudPattern::MicroDrain,
    ];

    /// The `handbook` family's mechanisms (the book's scenarios 1 to 3).
    pub const HANDBOOK: [FraudPattern; 3] = [
        FraudPattern::AmountAboveLevel,
        FraudPattern::CompromisedTerminal,
        FraudPattern::CompromisedCustomer,
    ];

    /// The `cards` family's patterns, in the order used by array-valued
    /// helpers ([`PatternMix`](crate::PatternMix)).
    pub const ALL: [FraudPattern; 4] = [
        FraudPattern::StolenCard,
        FraudPattern::CompromisedMerchant,
        FraudPattern::AccountTakeover,
        FraudPattern::CardTesting,
    ];

    /// Snake-case name: `"stolen_card"`, `"compromised_merchant"`, `"account_takeover"`, `"card_testing"`.
    pub fn name(&self) -> &'static str {
        match self {
            FraudPattern::StolenCard => "stolen_card",
            FraudPattern::CompromisedMerchant => "compromised_merchant",
            FraudPattern::AccountTakeover => "account_takeover",
            FraudPattern::CardTesting => "card_testing",
            FraudPattern::HighValueCategory => "high_value_category",
            FraudPattern::FraudRingMerchant => "fraud_ring_merchant",
            FraudPattern::MicroDrain => "micro_drain",
            FraudPattern::AmountAboveLevel => "amount_above_level",
            FraudPattern::CompromisedTerminal => "compromised_terminal",
            FraudPattern::CompromisedCustomer => "compromised_customer",
        }
    }

    /// Position in [`FraudPattern::ALL`] (`cards` family), or in
    /// [`FraudPattern::CATEGORIES`] after it.
    pub fn index(&self) -> usize {
        *self as usize
    }
}

impl fmt::Display for FraudPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let names: Vec<_> = FraudPattern::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(
            names,
            [
                "stolen_card",
                "compromised_merchant",
                "account_takeover",
                "card_testing"
            ]
        );
        for (i, p) in FraudPattern::ALL.iter().enumerate() {
            assert_eq!(p.index(), i);
        }
    }
}
