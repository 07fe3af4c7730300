//! What the engine reads: its own settings, independent of how a pipeline
//! is described. The topology layer builds an [`EngineConfig`] from a file;
//! embedders and tests build one directly. Defaults live here, in `Default`.

use crate::eval::{EvalConfig, Unlabeled};
use crate::features::FeatureConfig;
use crate::model::batch::{Learner, SwapMode};
use crate::model::portfolio::{Combine, ModelKind, PortfolioConfig};
use crate::model::{Imbalance, LogisticConfig, Optimizer};
use crate::time::{DAY_MS, HOUR_MS, MINUTE_MS};

/// What both stages read of a topology's `[engine]` section.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct StageSettings {
    /// Seed for every random choice of the engine (subsampling, model members).
    pub seed: u64,
    /// `score >= alert_threshold` raises an alert.
    pub alert_threshold: f64,
    /// Events this far behind the newest are still placed in their bucket.
    pub allowed_lateness_ms: i64,
    /// Entities idle this long are evicted.
    pub idle_eviction_ms: i64,
    /// Event time between eviction sweeps.
    pub eviction_interval_ms: i64,
    /// Contributions listed per alert.
    pub explain_top: usize,
    /// An event dated more than this ahead of the newest event time seen
    /// (and, in the service, of the wall clock) is refused: one record dated
    /// 2999 must not become the stream's "now". `i64::MAX`: no limit.
    pub max_event_skew_ms: i64,
    /// Smallest amount accepted (0: zero-amount authorisations are scored).
    pub min_amount: f64,
    /// Largest amount accepted.
    pub max_amount: f64,
    /// Most cards held (per card stage); the least recently seen make room.
    pub max_cards: usize,
    /// Most merchants held; the least recently seen make room.
    pub max_merchants: usize,
}

impl Default for StageSettings {
    fn default() -> Self {
        StageSettings {
            seed: 42,
            alert_threshold: 0.5,
            allowed_lateness_ms: 10 * MINUTE_MS,
            idle_eviction_ms: 45 * DAY_MS,
            eviction_interval_ms: HOUR_MS,
            explain_top: 3,
            max_event_skew_ms: 7 * DAY_MS,
            min_amount: 0.0,
            max_amount: 1e12,
            max_cards: 10_000_000,
            max_merchants: 1_000_000,
        }
    }
}

/// Everything the two stages and the sequential engine are built from.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EngineConfig {
    /// Seeds, alert threshold, lateness, eviction, explanations.
    #[serde(flatten)]
    pub stage: StageSettings,
    /// Card stages transactions are routed over (1: sequential).
    pub workers: usize,
    /// Learn from labels (model, merchant risk, card signal); when false they
    /// only feed the evaluation.
    pub learn: bool,
    /// Feature windows.
    pub features: FeatureConfig,
    /// Logistic regression (always present: the default served model and a
    /// portfolio member).
    pub logistic: LogisticConfig,
    /// Class-imbalance handling.
    pub imbalance: Imbalance,
    /// Served model and the portfolio's members.
    pub portfolio: PortfolioConfig,
    /// Calibration of the served score.
    pub calibration: Calibration,
    /// Pending store: most entries held.
    pub pending_capacity: usize,
    /// Pending store: longest an entry waits for its label.
    pub pending_ttl_ms: i64,
    /// Evaluation: `k` of card precision@k.
    pub eval_k: usize,
    /// Evaluation: transactions whose label never arrived.
    pub unlabeled: Unlabeled,
    /// Evaluation: origin of day boundaries (the simulator's start, or 0).
    pub eval_origin_ms: i64,
    /// Evaluation records and label routes are kept this long (event time);
    /// older days are kept as aggregates.
    pub eval_retention_ms: i64,
    /// Evaluation records (and label routes) held at most, per card stage.
    pub eval_max_records: usize,
    /// Decisions (score bands and rules) written with each score; `None`:
    /// scores only. Shapes outputs, not state (not a checkpoint setting).
    #[serde(skip)]
    pub decisions: Option<crate::decide::Decider>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            stage: StageSettings::default(),
            workers: 1,
            learn: true,
            features: FeatureConfig::default(),
            logistic: LogisticConfig::default(),
            imbalance: Imbalance::default(),
            portfolio: PortfolioConfig::default(),
            calibration: Calibration::ALL[0],
            pending_capacity: 2_000_000,
            pending_ttl_ms: 90 * DAY_MS,
            eval_k: 100,
            unlabeled: Unlabeled::Genuine,
            eval_origin_ms: 0,
            eval_retention_ms: 120 * DAY_MS,
            eval_max_records: 20_000_000,
            decisions: None,
        }
    }
}

impl EngineConfig {
    /// The prequential evaluation's settings.
    pub fn eval(&self) -> EvalConfig {
        EvalConfig {
            threshold: self.stage.alert_threshold,
            k: self.eval_k,
            unlabeled: self.unlabeled,
            origin_ms: self.eval_origin_ms,
            retention_ms: self.eval_retention_ms,
            max_records: self.eval_max_records,
        }
    }
}

/// A setting chosen by name in a topology file (`type = "forest"`): the
/// enum knows its names, so a reader lists and parses them from here and a
/// report prints them from here, never spelling them again.
pub trait Named: Sized + Copy + 'static {
    /// Every value, in the order messages list them.
    const ALL: &'static [Self];
    /// Its name in topology files and reports.
    fn name(self) -> &'static str;
    /// The value called `name`.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.name() == name)
    }
}

impl Named for ModelKind {
    const ALL: &'static [Self] = &[
        ModelKind::Logistic,
        ModelKind::Forest,
        ModelKind::Hst,
        ModelKind::Batch,
        ModelKind::Blend,
        ModelKind::Auto,
    ];
    fn name(self) -> &'static str {
        ModelKind::name(self)
    }
}

impl Named for crate::features::RiskTime {
    const ALL: &'static [Self] = &[Self::Arrival, Self::Transaction, Self::Both];
    fn name(self) -> &'static str {
        match self {
            Self::Arrival => "arrival",
            Self::Transaction => "transaction",
            Self::Both => "both",
        }
    }
}

impl Named for Combine {
    const ALL: &'static [Self] = &[Combine::Stack, Combine::Mean];
    fn name(self) -> &'static str {
        match self {
            Combine::Stack => "stack",
            Combine::Mean => "mean",
        }
    }
}

impl Named for crate::model::select::Judge {
    const ALL: &'static [Self] = &[Self::Scored, Self::Current];
    fn name(self) -> &'static str {
        match self {
            Self::Scored => "scored",
            Self::Current => "current",
        }
    }
}

impl Named for SwapMode {
    const ALL: &'static [Self] = &[SwapMode::AtLabel, SwapMode::WhenReady];
    fn name(self) -> &'static str {
        match self {
            SwapMode::AtLabel => "at_label",
            SwapMode::WhenReady => "when_ready",
        }
    }
}

impl Named for Learner {
    const ALL: &'static [Self] = &[Learner::Forest, Learner::Linear];
    fn name(self) -> &'static str {
        match self {
            Learner::Forest => "forest",
            Learner::Linear => "linear",
        }
    }
}

impl Named for Unlabeled {
    const ALL: &'static [Self] = &[Unlabeled::Genuine, Unlabeled::Ignore];
    fn name(self) -> &'static str {
        match self {
            Unlabeled::Genuine => "genuine",
            Unlabeled::Ignore => "ignore",
        }
    }
}

/// Each update rule with its own default settings (the first is the default).
impl Named for Optimizer {
    const ALL: &'static [Self] = &[
        Optimizer::Ftrl {
            alpha: 0.15,
            beta: 1.0,
            l1: 0.0,
            l2: 1.0,
        },
        Optimizer::Adagrad {
            learning_rate: 0.05,
            l2: 1e-4,
        },
    ];
    fn name(self) -> &'static str {
        match self {
            Optimizer::Ftrl { .. } => "ftrl",
            Optimizer::Adagrad { .. } => "adagrad",
        }
    }
}

/// How the served score is made a probability (`model.calibration`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum Calibration {
    /// Undo the class weighting (`imbalance`): the model's log-odds minus
    /// the log of the factor the weighting multiplied the odds by. A fixed
    /// increasing map: the order of scores is the model's.
    Weights,
    /// Platt scaling learnt online from labelled outcomes, starting from
    /// [`Calibration::Weights`] ([`crate::model::calibration`]).
    Platt(crate::model::calibration::CalibrationConfig),
    /// The model's raw score is served.
    None,
}

/// Platt scaling with its default settings.
pub const PLATT: Calibration = Calibration::Platt(crate::model::calibration::CalibrationConfig {
    half_life: 20_000.0,
    refit_every: 1_000,
    min_frauds: 30.0,
    min_genuine: 10_000.0,
});

/// Each calibration with its default settings (the first is the default).
impl Named for Calibration {
    const ALL: &'static [Self] = &[Calibration::Weights, PLATT, Calibration::None];
    fn name(self) -> &'static str {
        match self {
            Calibration::Weights => "weights",
            Calibration::Platt(_) => "platt",
            Calibration::None => "none",
        }
    }
}

/// Each class-imbalance rule with its own default settings (the first is the default).
impl Named for Imbalance {
    const ALL: &'static [Self] = &[
        Imbalance::Weight {
            positive_weight: 5.0,
        },
        Imbalance::Subsample { negative_rate: 0.1 },
        Imbalance::None,
    ];
    fn name(self) -> &'static str {
        match self {
            Imbalance::Weight { .. } => "weight",
            Imbalance::Subsample { .. } => "subsample",
            Imbalance::None => "none",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T: Named + PartialEq + std::fmt::Debug>() {
        for &v in T::ALL {
            assert_eq!(T::from_name(v.name()), Some(v));
        }
        assert_eq!(T::from_name("no such name"), None);
    }

    #[test]
    fn the_first_named_variant_is_the_default() {
        assert_eq!(Optimizer::ALL[0], Optimizer::default());
        assert_eq!(Imbalance::ALL[0], Imbalance::default());
    }

    #[test]
    fn every_named_setting_reads_back_from_its_name() {
        round_trips::<ModelKind>();
        round_trips::<Combine>();
        round_trips::<SwapMode>();
        round_trips::<Learner>();
        round_trips::<Unlabeled>();
        round_trips::<Optimizer>();
        round_trips::<Imbalance>();
        round_trips::<Calibration>();
    }
}
