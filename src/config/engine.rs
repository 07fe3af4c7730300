//! The engine's sections of a topology: `[engine]`, `[features]`,
//! `[model]` (with the portfolio's sub-tables), `[pending]`, `[evaluation]`.
//! Every default comes from the settings' own `Default`; every choice is
//! read through the enum's names ([`Named`]).

use super::reader::Section;
use fraudstream_engine::config::Calibration;
use fraudstream_engine::eval::Unlabeled;
use fraudstream_engine::features::FeatureConfig;
use fraudstream_engine::model::batch::BatchConfig;
use fraudstream_engine::model::calibration::CalibrationConfig;
use fraudstream_engine::model::cart::CartParams;
use fraudstream_engine::model::forest::ForestConfig;
use fraudstream_engine::model::hst::{HstConfig, MAX_NODES};
use fraudstream_engine::model::portfolio::PortfolioConfig;
use fraudstream_engine::model::select::SelectConfig;
use fraudstream_engine::model::{Imbalance, LogisticConfig, Optimizer};
use fraudstream_engine::{EngineConfig, Named, StageSettings};
use std::path::PathBuf;

/// When to draw a progress line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// When stderr is a terminal.
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

/// Engine-wide settings (`[engine]`).
#[derive(Clone, Debug, PartialEq)]
pub struct EngineSettings {
    /// What both stages read: seed, alert threshold, lateness, eviction,
    /// explanations.
    pub stage: StageSettings,
    /// Card-stage worker threads (1: sequential and deterministic).
    pub workers: usize,
    /// Progress line.
    pub progress: Progress,
}

/// Model settings (`[model]`).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSettings {
    /// Logistic regression settings.
    pub logistic: LogisticConfig,
    /// Class-imbalance handling.
    pub imbalance: Imbalance,
    /// Start from this saved model.
    pub load: Option<PathBuf>,
    /// Save the model here at the end of the run.
    pub save: Option<PathBuf>,
    /// Served model (`type`) and the portfolio's members (forest, anomaly
    /// detector, batch champion, blend, drift detection).
    pub portfolio: PortfolioConfig,
    /// Calibration of the served score.
    pub calibration: Calibration,
}

/// Pending-store settings (`[pending]`).
#[derive(Clone, Debug, PartialEq)]
pub struct PendingSettings {
    /// Most entries held.
    pub capacity: usize,
    /// Longest an entry waits for its label.
    pub ttl_ms: i64,
}

/// Evaluation settings (`[evaluation]`).
#[derive(Clone, Debug, PartialEq)]
pub struct EvaluationSettings {
    /// k of card precision@k.
    pub k: usize,
    /// Unlabelled transactions at the end of a run.
    pub unlabeled: Unlabeled,
    /// The report also summarises the last this many days.
    pub last_days: u32,
    /// Records (and label routes) are kept this long; older days as aggregates.
    pub retention_ms: i64,
    /// Most records held per card stage.
    pub max_records: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        let d = EngineConfig::default();
        EngineSettings {
            stage: d.stage,
            workers: d.workers,
            progress: Progress::Auto,
        }
    }
}

impl EngineSettings {
    /// `[engine]`.
    pub(super) fn read(s: &Section) -> Self {
        let d = Self::default();
        let g = d.stage;
        let e = EngineSettings {
            stage: StageSettings {
                seed: s.int("seed", g.seed as i64, 0, i64::MAX) as u64,
                alert_threshold: s.float("alert_threshold", g.alert_threshold, 0.0, 1.0),
                allowed_lateness_ms: s.duration("allowed_lateness", g.allowed_lateness_ms, 0),
                idle_eviction_ms: s.duration("idle_eviction", g.idle_eviction_ms, 1),
                eviction_interval_ms: s.duration("eviction_interval", g.eviction_interval_ms, 1),
                explain_top: s.int("explain_top", g.explain_top as i64, 0, 64) as usize,
                max_event_skew_ms: s.duration("max_event_skew", g.max_event_skew_ms, 1),
                min_amount: s.float("min_amount", g.min_amount, 0.0, 1e15),
                max_amount: s.float("max_amount", g.max_amount, 0.0, 1e15),
                max_cards: s.int("max_cards", g.max_cards as i64, 1, 1 << 40) as usize,
                max_merchants: s.int("max_merchants", g.max_merchants as i64, 1, 1 << 40) as usize,
            },
            workers: match s.int("workers", d.workers as i64, 0, 256) {
                0 => std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
                n => n as usize,
            },
            progress: s.named("progress", d.progress),
        };
        let g = e.stage;
        if g.min_amount > g.max_amount {
            s.error(
                "min_amount",
                format!("at most max_amount ({})", g.max_amount),
                Some(g.min_amount.to_string()),
            );
        }
        s.finish();
        e
    }
}

impl Named for Progress {
    const ALL: &'static [Self] = &[Progress::Auto, Progress::On, Progress::Off];
    fn name(self) -> &'static str {
        match self {
            Progress::Auto => "auto",
            Progress::On => "on",
            Progress::Off => "off",
        }
    }
}

impl Default for PendingSettings {
    fn default() -> Self {
        let d = EngineConfig::default();
        PendingSettings {
            capacity: d.pending_capacity,
            ttl_ms: d.pending_ttl_ms,
        }
    }
}

impl PendingSettings {
    /// `[pending]`.
    pub(super) fn read(s: &Section) -> Self {
        let d = Self::default();
        let p = PendingSettings {
            capacity: s.int("capacity", d.capacity as i64, 1, 1 << 40) as usize,
            ttl_ms: s.duration("ttl", d.ttl_ms, 1),
        };
        s.finish();
        p
    }
}

impl Default for EvaluationSettings {
    fn default() -> Self {
        let d = EngineConfig::default();
        EvaluationSettings {
            k: d.eval_k,
            unlabeled: d.unlabeled,
            last_days: 30,
            retention_ms: d.eval_retention_ms,
            max_records: d.eval_max_records,
        }
    }
}

impl EvaluationSettings {
    /// `[evaluation]`.
    pub(super) fn read(s: &Section) -> Self {
        let d = Self::default();
        let e = EvaluationSettings {
            k: s.int("k", d.k as i64, 1, 1 << 30) as usize,
            unlabeled: s.named("unlabeled", d.unlabeled),
            last_days: s.int("last_days", d.last_days as i64, 1, 100_000) as u32,
            retention_ms: s.duration(
                "retention",
                d.retention_ms,
                fraudstream_engine::time::DAY_MS,
            ),
            max_records: s.int("max_records", d.max_records as i64, 1, 1 << 40) as usize,
        };
        s.finish();
        e
    }
}

pub(super) fn read_features(s: &Section) -> FeatureConfig {
    let d = FeatureConfig::default();
    let mut cfg = FeatureConfig {
        card_windows: s.durations("card_windows", &d.card_windows, 1000),
        merchant_windows: s.durations("merchant_windows", &d.merchant_windows, 1000),
        merchant_risk_windows: s.durations("merchant_risk_windows", &d.merchant_risk_windows, 1000),
        merchant_risk_time: s.named("merchant_risk_time", d.merchant_risk_time),
        buckets: s.int("buckets", d.buckets as i64, 1, 1024) as u32,
        confirmed_fraud_horizon_ms: s.duration(
            "confirmed_fraud_horizon",
            d.confirmed_fraud_horizon_ms,
            1,
        ),
        hash_bits: s.int("hash_bits", d.hash_bits as i64, 1, 24) as u32,
        bands: s
            .names("bands", &fraudstream_engine::features::BAND_NAMES, &d.bands)
            .into_iter()
            .map(Into::into)
            .collect(),
    };
    if fraudstream_engine::features::merchant_feature_count(&cfg)
        > fraudstream_engine::engine::MAX_MERCHANT_FEATURES
    {
        s.error(
            "merchant_windows",
            format!(
                "at most {} merchant features: 2 per merchant window, 2 per risk window \
                 (4 with merchant_risk_time = \"both\"), and 1",
                fraudstream_engine::engine::MAX_MERCHANT_FEATURES
            ),
            None,
        );
    }
    for (key, list) in [
        ("card_windows", &mut cfg.card_windows),
        ("merchant_windows", &mut cfg.merchant_windows),
        ("merchant_risk_windows", &mut cfg.merchant_risk_windows),
    ] {
        let mut sorted = list.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != list.len() {
            s.error(key, "distinct horizons", None);
        }
        *list = sorted;
    }
    s.finish();
    cfg
}

fn read_forest(s: &Section) -> ForestConfig {
    let d = ForestConfig::default();
    let f = ForestConfig {
        trees: s.int("trees", d.trees as i64, 1, 1000) as usize,
        lambda: s.float("lambda", d.lambda, 0.01, 100.0),
        grace_period: s.float("grace_period", d.grace_period, 1.0, 1e9),
        split_confidence: s.float("split_confidence", d.split_confidence, 1e-300, 0.5),
        tie_threshold: s.float("tie_threshold", d.tie_threshold, 0.0, 1.0),
        max_depth: s.int("max_depth", d.max_depth as i64, 1, 64) as u32,
        max_leaves: s.int("max_leaves", d.max_leaves as i64, 2, 1 << 24) as usize,
        subspace: s.int("subspace", d.subspace as i64, 0, 4096) as usize,
        candidates: s.int("candidates", d.candidates as i64, 1, 1024) as usize,
        drift_delta: s.float("drift_delta", d.drift_delta, 0.0, 0.5),
        warm_up: s.float("warm_up", d.warm_up, 0.0, 1e12),
        seed: d.seed,
    };
    s.finish();
    f
}

fn read_hst(s: &Section) -> HstConfig {
    let d = HstConfig::default();
    let h = HstConfig {
        trees: s.int("trees", d.trees as i64, 1, 1000) as usize,
        height: s.int(
            "height",
            d.height as i64,
            1,
            fraudstream_engine::model::hst::MAX_HEIGHT as i64,
        ) as u32,
        window: s.int("window", d.window as i64, 1, u32::MAX as i64) as u64,
        seed: d.seed,
    };
    // Each key within its range can still ask for gigabytes together.
    if h.nodes() > MAX_NODES {
        s.error(
            "trees",
            format!(
                "at most {MAX_NODES} nodes in all trees (trees x (2^(height + 1) - 1), \
                 about 12 bytes each)"
            ),
            Some(format!(
                "{} trees of height {}: {} nodes",
                h.trees,
                h.height,
                h.nodes()
            )),
        );
    }
    s.finish();
    h
}

fn read_batch(s: &Section) -> BatchConfig {
    let learner = s.named("learner", BatchConfig::default().learner);
    // Each learner has its own defaults (a forest learns a whole week, a
    // logistic regression a class-balanced sample).
    let d = BatchConfig::of(learner);
    let f = d.forest;
    let b = BatchConfig {
        learner,
        buffer: s.int("buffer", d.buffer as i64, 10, 10_000_000) as usize,
        negative_rate: s.float("negative_rate", d.negative_rate, 1e-6, 1.0),
        retrain_every: s.int("retrain_every", d.retrain_every as i64, 1, i64::MAX) as u64,
        swap_after: s.int("swap_after", d.swap_after as i64, 1, i64::MAX) as u64,
        swap: s.named("swap", d.swap),
        l2: s.float("l2", d.l2, 0.0, 1e9),
        min_frauds: s.int("min_frauds", d.min_frauds as i64, 1, 1 << 30) as usize,
        window_ms: s.duration("window", d.window_ms, 0),
        forest: CartParams {
            trees: s.int("trees", f.trees as i64, 1, 1000) as usize,
            max_depth: s.int("max_depth", f.max_depth as i64, 1, 40) as u32,
            min_leaf: s.int("min_leaf", f.min_leaf as i64, 1, 1 << 30) as u32,
            features: s.int("features", f.features as i64, 0, 1 << 20) as usize,
            genuine_share: s.float("genuine_share", f.genuine_share, 1e-6, 1.0),
            seed: f.seed,
        },
        seed: d.seed,
    };
    s.finish();
    b
}

fn read_portfolio(s: &Section) -> PortfolioConfig {
    let d = PortfolioConfig::default();
    PortfolioConfig {
        kind: s.named("type", d.kind),
        anomaly_feature: s.bool("anomaly_feature", d.anomaly_feature),
        compare: s.bool("compare", d.compare),
        forest: read_forest(&s.section("forest")),
        hst: read_hst(&s.section("hst")),
        batch: read_batch(&s.section("batch")),
        combine: s.named("combine", d.combine),
        weights: [
            s.float("weight_logistic", d.weights[0], 0.0, 1e6),
            s.float("weight_forest", d.weights[1], 0.0, 1e6),
            s.float("weight_batch", d.weights[2], 0.0, 1e6),
        ],
        stack_rate: s.float("stack_rate", d.stack_rate, 0.0, 100.0),
        cold_start_frauds: s.int("cold_start_frauds", d.cold_start_frauds as i64, 0, i64::MAX)
            as u64,
        cold_start_genuine: s.int(
            "cold_start_genuine",
            d.cold_start_genuine as i64,
            0,
            i64::MAX,
        ) as u64,
        hold_frauds: s.int("hold_frauds", d.hold_frauds as i64, 0, 1 << 30) as usize,
        auto: read_auto(&s.section("auto")),
        drift_delta: s.float("drift_delta", d.drift_delta, 0.0, 0.5),
    }
}

fn read_auto(s: &Section) -> SelectConfig {
    let d = SelectConfig::default();
    let cfg = SelectConfig {
        window_frauds: s.int("window_frauds", d.window_frauds as i64, 1, 1_000_000) as usize,
        max_window: s.int("max_window", d.max_window as i64, 100, 10_000_000) as usize,
        every: s.int("every", d.every as i64, 1, 10_000_000) as u64,
        margin: s.float("margin", d.margin, 0.0, 1.0),
        half_life: s.float("half_life", d.half_life, 0.0, 1e9),
        blend_prior: s.float("blend_prior", d.blend_prior, 0.0, 1.0),
        judge: s.named("judge", d.judge),
        min_frauds: s.int("min_frauds", d.min_frauds as i64, 1, 1_000_000) as usize,
    };
    s.finish();
    cfg
}

pub(super) fn read_model(s: &Section) -> ModelSettings {
    let portfolio = read_portfolio(s);
    let d = LogisticConfig::default();
    // Each variant's keys default to that variant's own defaults.
    let optimizer = match s.named("optimizer", d.optimizer) {
        Optimizer::Adagrad { learning_rate, l2 } => Optimizer::Adagrad {
            learning_rate: s.float("learning_rate", learning_rate, 1e-9, 100.0),
            l2: s.float("l2", l2, 0.0, 1e6),
        },
        Optimizer::Ftrl {
            alpha,
            beta,
            l1,
            l2,
        } => Optimizer::Ftrl {
            alpha: s.float("alpha", alpha, 1e-9, 100.0),
            beta: s.float("beta", beta, 0.0, 1e6),
            l1: s.float("l1", l1, 0.0, 1e6),
            l2: s.float("l2", l2, 0.0, 1e6),
        },
    };
    let imbalance = s.named("imbalance", Imbalance::default());
    if !matches!(imbalance, Imbalance::Weight { .. }) && s.has("positive_weight") {
        // A file that weights frauds, switched to another imbalance with
        // --set: say which key is left over, not "unknown key".
        s.error(
            "positive_weight",
            "no positive_weight unless imbalance = \"weight\" (remove it, or set imbalance = \"weight\")",
            None,
        );
    }
    let imbalance = match imbalance {
        Imbalance::None => Imbalance::None,
        Imbalance::Subsample { negative_rate } => Imbalance::Subsample {
            negative_rate: s.float("negative_rate", negative_rate, 1e-6, 1.0),
        },
        Imbalance::Weight { positive_weight } => Imbalance::Weight {
            positive_weight: s.float("positive_weight", positive_weight, 1e-6, 1e6),
        },
    };
    let calibration = match s.named("calibration", Calibration::ALL[0]) {
        Calibration::Platt(c) => Calibration::Platt(CalibrationConfig {
            half_life: s.float("calibration_half_life", c.half_life, 10.0, 1e12),
            ..c
        }),
        other => {
            if s.has("calibration_half_life") {
                s.error(
                    "calibration_half_life",
                    "no calibration_half_life unless calibration = \"platt\"",
                    None,
                );
            }
            other
        }
    };
    let m = ModelSettings {
        calibration,
        logistic: LogisticConfig {
            optimizer,
            prior_fraud_rate: s.float("prior_fraud_rate", d.prior_fraud_rate, 1e-9, 0.999_999),
        },
        imbalance,
        load: s.opt_str("load").map(PathBuf::from),
        save: s.opt_str("save").map(PathBuf::from),
        portfolio,
    };
    s.finish();
    m
}
