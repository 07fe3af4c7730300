//! Simulator configuration: defaults, drift schedule and validation.

use serde::{Deserialize, Serialize};

use crate::{FraudPattern, DAY_MS, DEFAULT_START_MS};

/// Largest number of cards (card ids are `C` + 7 digits).
pub const MAX_CARDS: u32 = 10_000_000;
/// Largest number of merchants (merchant ids are `T` + 6 digits).
pub const MAX_MERCHANTS: u32 = 1_000_000;
/// Smallest number of merchants (every country needs a terminal, plus ecom and ATM).
pub const MIN_MERCHANTS: u32 = 10;
/// Largest number of simulated days.
pub const MAX_DAYS: u32 = 36_500;
/// Largest allowed fraud rate (after the drift multiplier).
pub const MAX_FRAUD_RATE: f64 = 0.5;

/// Complete configuration of one simulation run; equal configs give identical event streams.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Which generator: card payments with trips, ATMs and four fraud
    /// patterns, or BankSim-style merchant categories.
    pub family: Family,
    /// Seed of the ChaCha8 generator.
    pub seed: u64,
    /// Number of simulated days.
    pub days: u32,
    /// Start of day 0 in Unix milliseconds.
    pub start_ms: i64,
    /// Number of cards (card indices `0..cards`).
    pub cards: u32,
    /// Number of merchants / terminals (merchant indices `0..merchants`).
    pub merchants: u32,
    /// Target share of fraudulent transactions at day 0 (before the drift multiplier).
    pub fraud_rate: f64,
    /// Shares of fraudulent transactions per pattern at day 0.
    pub patterns: PatternMix,
    /// How the pattern mix and fraud rate change over the run.
    pub drift: DriftConfig,
    /// When labels become known.
    pub labels: LabelConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            family: Family::Cards,
            seed: 42,
            days: 60,
            start_ms: DEFAULT_START_MS,
            cards: 5000,
            merchants: 1000,
            fraud_rate: 0.007,
            patterns: PatternMix::default(),
            drift: DriftConfig::default(),
            labels: LabelConfig::default(),
        }
    }
}

/// A traffic family: structurally different generators, so that a feature
/// or default is measured on traffic it was not written for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Card holders with homes, usual merchants, trips abroad, ATMs; stolen
    /// cards, compromised terminals, account takeovers, card testing;
    /// labels from analysts (exponential) and chargebacks (lognormal).
    #[default]
    Cards,
    /// Merchant-category payments modelled on BankSim: high-value category
    /// fraud, fraud-ring merchants, micro drains; labels in daily batches
    /// (`patterns` and `drift` do not apply).
    Categories,
    /// The Fraud Detection Handbook's simulator: customers and terminals
    /// on a grid, amounts above a level, compromised terminals and
    /// customers; labels a fixed delay late (`patterns` and `drift` do not
    /// apply).
    Handbook,
}

impl Family {
    /// `"cards"`, `"categories"` or `"handbook"`.
    pub fn name(&self) -> &'static str {
        match self {
            Family::Cards => "cards",
            Family::Categories => "categories",
            Family::Handbook => "handbook",
        }
    }
}

/// Shares of fraudulent transactions per pattern; normalised internally, a share of 0
/// switches the pattern off for the whole run (its `drift.end_mix` share is then ignored).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PatternMix {
    /// Share of [`FraudPattern::StolenCard`].
    pub stolen_card: f64,
    /// Share of [`FraudPattern::CompromisedMerchant`].
    pub compromised_merchant: f64,
    /// Share of [`FraudPattern::AccountTakeover`].
    pub account_takeover: f64,
    /// Share of [`FraudPattern::CardTesting`].
    pub card_testing: f64,
}

impl Default for PatternMix {
    fn default() -> Self {
        Self {
            stolen_card: 0.3,
            compromised_merchant: 0.2,
            account_takeover: 0.3,
            card_testing: 0.2,
        }
    }
}

impl PatternMix {
    /// The share of one pattern (not normalised).
    pub fn share(&self, pattern: FraudPattern) -> f64 {
        match pattern {
            FraudPattern::StolenCard => self.stolen_card,
            FraudPattern::CompromisedMerchant => self.compromised_merchant,
            FraudPattern::AccountTakeover => self.account_takeover,
            FraudPattern::CardTesting => self.card_testing,
            // Mechanisms of the `categories` family have fixed shares.
            _ => 0.0,
        }
    }

    /// Shares in [`FraudPattern::ALL`] order (not normalised).
    pub fn shares(&self) -> [f64; 4] {
        FraudPattern::ALL.map(|p| self.share(p))
    }

    /// Shares in [`FraudPattern::ALL`] order scaled to sum to 1 (all zero if the sum is 0).
    pub fn normalized(&self) -> [f64; 4] {
        normalize(self.shares())
    }

    fn validate(&self, field: &str, errs: &mut Vec<String>) {
        for p in FraudPattern::ALL {
            let v = self.share(p);
            if !(v.is_finite() && v >= 0.0) {
                errs.push(format!(
                    "{field}.{}: must be finite and >= 0, got {v}",
                    p.name()
                ));
            }
        }
    }
}

fn normalize(mut s: [f64; 4]) -> [f64; 4] {
    let sum: f64 = s.iter().sum();
    if sum > 0.0 && sum.is_finite() {
        s.iter_mut().for_each(|x| *x /= sum);
    } else {
        s = [0.0; 4];
    }
    s
}

/// How the fraud mix and rate move from `patterns` / 1.0 to `end_mix` / `end_rate_multiplier`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftMode {
    /// Constant mix and rate (`patterns`, multiplier 1.0).
    None,
    /// Linear interpolation from day 0 to the last day.
    Gradual,
    /// Start values before `at_day`, end values from `at_day` on.
    Sudden {
        /// First day (0-based) with the end values; must be < `days`.
        at_day: u32,
    },
}

/// Concept drift of the fraud patterns.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriftConfig {
    /// Drift schedule.
    pub mode: DriftMode,
    /// Pattern mix at the end of the drift.
    pub end_mix: PatternMix,
    /// Fraud-rate multiplier at the end of the drift (1.0 at the start).
    pub end_rate_multiplier: f64,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            mode: DriftMode::Gradual,
            end_mix: PatternMix {
                stolen_card: 0.15,
                compromised_merchant: 0.25,
                account_takeover: 0.3,
                card_testing: 0.3,
            },
            end_rate_multiplier: 1.5,
        }
    }
}

/// Delayed-label model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelConfig {
    /// Share of frauds confirmed quickly by analysts (exponential delay).
    pub analyst_share: f64,
    /// Mean analyst delay in hours.
    pub analyst_mean_hours: f64,
    /// Median of the lognormal chargeback delay in days (frauds not confirmed by analysts).
    pub chargeback_median_days: f64,
    /// Sigma of the lognormal chargeback delay.
    pub chargeback_sigma: f64,
    /// Upper clamp of every fraud-label delay, in days.
    pub max_delay_days: f64,
    /// Whether genuine transactions get a `is_fraud = false` label.
    pub genuine: GenuineLabels,
}

impl Default for LabelConfig {
    fn default() -> Self {
        Self {
            analyst_share: 0.3,
            analyst_mean_hours: 24.0,
            chargeback_median_days: 10.0,
            chargeback_sigma: 0.5,
            max_delay_days: 60.0,
            genuine: GenuineLabels::default(),
        }
    }
}

/// Labelling of genuine transactions.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GenuineLabels {
    /// Genuine transactions are never labelled.
    Never,
    /// A genuine transaction gets `is_fraud = false` at `ts + maturity_days`.
    After {
        /// Days until a genuine transaction is considered matured.
        maturity_days: f64,
    },
}

impl Default for GenuineLabels {
    fn default() -> Self {
        GenuineLabels::After { maturity_days: 7.0 }
    }
}

impl LabelConfig {
    /// Every field of the label model, with paths under `labels.`.
    fn validate(&self, errs: &mut Vec<String>) {
        check_range(
            errs,
            "labels.analyst_share",
            self.analyst_share,
            0.0,
            1.0,
            false,
        );
        check_range(
            errs,
            "labels.analyst_mean_hours",
            self.analyst_mean_hours,
            0.0,
            24.0 * 365.0,
            true,
        );
        check_range(
            errs,
            "labels.chargeback_median_days",
            self.chargeback_median_days,
            0.0,
            365.0,
            true,
        );
        check_range(
            errs,
            "labels.chargeback_sigma",
            self.chargeback_sigma,
            0.0,
            5.0,
            false,
        );
        check_range(
            errs,
            "labels.max_delay_days",
            self.max_delay_days,
            0.0,
            365.0,
            true,
        );
        if let GenuineLabels::After { maturity_days } = self.genuine {
            check_range(
                errs,
                "labels.genuine.maturity_days",
                maturity_days,
                0.0,
                365.0,
                true,
            );
        }
    }
}

fn check_range(errs: &mut Vec<String>, field: &str, v: f64, lo: f64, hi: f64, lo_open: bool) {
    let ok = v.is_finite() && v <= hi && if lo_open { v > lo } else { v >= lo };
    if !ok {
        let open = if lo_open { '(' } else { '[' };
        errs.push(format!(
            "{field}: must be finite and in {open}{lo}, {hi}], got {v}"
        ));
    }
}

impl SimConfig {
    /// Checks every field and returns all problems at once, each message starting with the
    /// field path (e.g. `"days: must be >= 1"`).
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        self.validate_sizes(&mut errs);
        self.validate_fraud(&mut errs);
        self.validate_drift(&mut errs);
        self.labels.validate(&mut errs);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    /// `days`, `start_ms`, `cards` and `merchants`.
    fn validate_sizes(&self, errs: &mut Vec<String>) {
        if self.days == 0 {
            errs.push("days: must be >= 1".to_string());
        } else if self.days > MAX_DAYS {
            errs.push(format!("days: must be <= {MAX_DAYS}, got {}", self.days));
        } else if (self.days as i64)
            .checked_mul(DAY_MS)
            .and_then(|d| d.checked_add(self.start_ms))
            .and_then(|e| e.checked_add(100 * DAY_MS))
            .is_none()
        {
            errs.push("start_ms: start_ms + days (plus label delays) overflows i64".to_string());
        }
        if self.cards == 0 || self.cards > MAX_CARDS {
            errs.push(format!(
                "cards: must be in 1..={MAX_CARDS}, got {}",
                self.cards
            ));
        }
        if self.merchants < MIN_MERCHANTS || self.merchants > MAX_MERCHANTS {
            errs.push(format!(
                "merchants: must be in {MIN_MERCHANTS}..={MAX_MERCHANTS}, got {}",
                self.merchants
            ));
        }
    }

    /// `fraud_rate` and the starting `patterns`.
    fn validate_fraud(&self, errs: &mut Vec<String>) {
        check_range(
            errs,
            "fraud_rate",
            self.fraud_rate,
            0.0,
            MAX_FRAUD_RATE,
            false,
        );
        self.patterns.validate("patterns", errs);
        let start = self.patterns.shares();
        let start_sum: f64 = start.iter().sum();
        if self.fraud_rate > 0.0 && start.iter().all(|s| s.is_finite()) && start_sum <= 0.0 {
            errs.push("patterns: at least one share must be > 0 when fraud_rate > 0".to_string());
        }
    }

    /// `drift`, against the starting `fraud_rate` and `patterns`.
    fn validate_drift(&self, errs: &mut Vec<String>) {
        let start_sum: f64 = self.patterns.shares().iter().sum();
        let d = &self.drift;
        d.end_mix.validate("drift.end_mix", errs);
        check_range(
            errs,
            "drift.end_rate_multiplier",
            d.end_rate_multiplier,
            0.0,
            1000.0,
            false,
        );
        if let DriftMode::Sudden { at_day } = d.mode {
            if self.days > 0 && at_day >= self.days {
                errs.push(format!(
                    "drift.mode: sudden at_day must be < days ({}), got {at_day}",
                    self.days
                ));
            }
        }
        if d.mode != DriftMode::None && d.end_rate_multiplier.is_finite() {
            if self.fraud_rate.is_finite()
                && self.fraud_rate * d.end_rate_multiplier > MAX_FRAUD_RATE
            {
                errs.push(format!(
                    "drift.end_rate_multiplier: fraud_rate * end_rate_multiplier must be <= {MAX_FRAUD_RATE}"
                ));
            }
            let masked: f64 = masked_end(&self.patterns, &d.end_mix).iter().sum();
            if self.fraud_rate > 0.0
                && d.end_rate_multiplier > 0.0
                && start_sum > 0.0
                && masked.is_finite()
                && masked <= 0.0
            {
                errs.push(
                    "drift.end_mix: at least one pattern enabled in `patterns` must have a share > 0"
                        .to_string(),
                );
            }
        }
    }

    /// Fraud-rate multiplier and normalised pattern mix in effect on `day` (0-based).
    pub fn drift_at(&self, day: u32) -> (f64, [f64; 4]) {
        let t = match self.drift.mode {
            DriftMode::None => 0.0,
            DriftMode::Gradual => {
                if self.days <= 1 {
                    0.0
                } else {
                    (day.min(self.days - 1) as f64) / ((self.days - 1) as f64)
                }
            }
            DriftMode::Sudden { at_day } => {
                if day >= at_day {
                    1.0
                } else {
                    0.0
                }
            }
        };
        let n0 = self.patterns.normalized();
        let n1 = normalize(masked_end(&self.patterns, &self.drift.end_mix));
        let mult = 1.0 + t * (self.drift.end_rate_multiplier - 1.0);
        let mut mix = [0.0; 4];
        for i in 0..4 {
            mix[i] = (1.0 - t) * n0[i] + t * n1[i];
        }
        (mult, mix)
    }
}

/// End-mix shares with the patterns switched off at the start zeroed.
fn masked_end(start: &PatternMix, end: &PatternMix) -> [f64; 4] {
    let s = start.shares();
    let mut e = end.shares();
    for i in 0..4 {
        if s[i].is_nan() || s[i] <= 0.0 {
            e[i] = 0.0;
        }
    }
    e
}
