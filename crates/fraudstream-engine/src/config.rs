//! What the engine reads: its own settings, independent of how a pipeline
//! is described. The topology layer builds an [`EngineConfig`] from a file;
//! embedders and tests build one directly. Defaults live here, in `Default`.

use crate::eval::{EvalConfig, Unlabeled};
use crate::features::FeatureConfig;
use crate::model::portfolio::PortfolioConfig;
use crate::model::{Imbalance, LogisticConfig};
use crate::time::{DAY_MS, HOUR_MS, MINUTE_MS};

/// Everything the two stages and the sequential engine are built from.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EngineConfig {
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
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            seed: 42,
            alert_threshold: 0.5,
            allowed_lateness_ms: 10 * MINUTE_MS,
            idle_eviction_ms: 45 * DAY_MS,
            eviction_interval_ms: HOUR_MS,
            explain_top: 3,
            workers: 1,
            learn: true,
            features: FeatureConfig::default(),
            logistic: LogisticConfig::default(),
            imbalance: Imbalance::default(),
            portfolio: PortfolioConfig::default(),
            pending_capacity: 2_000_000,
            pending_ttl_ms: 90 * DAY_MS,
            eval_k: 100,
            unlabeled: Unlabeled::Genuine,
            eval_origin_ms: 0,
        }
    }
}

impl EngineConfig {
    /// The prequential evaluation's settings.
    pub fn eval(&self) -> EvalConfig {
        EvalConfig {
            threshold: self.alert_threshold,
            k: self.eval_k,
            unlabeled: self.unlabeled,
            origin_ms: self.eval_origin_ms,
        }
    }
}
