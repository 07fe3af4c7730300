//! The model portfolio: owns the models that score beside the core online
//! logistic regression (adaptive forest, Half-Space Trees, the batch
//! champion), how their scores become the final one (`model.type`),
//! the drift detectors on the final score's distribution and on its error,
//! the drift events, and the named score-time side values ([`SideValues`]).
//! It does not evaluate its members: scoring returns every member's score
//! ([`MemberScores`]) to an observer outside the models
//! ([`MemberEvaluation`](crate::eval::MemberEvaluation)).
//!
//! **Score-time side values.** After the card and merchant features (`D`
//! values), scoring appends [`SideValues::LEN`] values to the transaction's
//! dense vector: the anomaly score, the logits of the logistic, forest and
//! batch scores, and the final score. The pending store keeps them with the
//! features, so when the label arrives the forest learns from the anomaly
//! score the transaction *had*, the stacker from the member scores it *had*
//! (out-of-sample, as prequential stacking must), and the error detector
//! compares the label with the score that was served.
//!
//! **Members.** `hst`: Half-Space Trees over the standardised features mapped
//! to [0, 1] (±3σ), scored then learnt on every transaction, before any
//! label; its score is a feature of the forest and of the stacker, and the
//! final score during cold start (until `cold_start_frauds` fraud labels
//! were learnt, the final score is `0.5 × anomaly`: a ranking, scaled so it
//! alerts only on extreme novelty). `forest`: [`AdaptiveForest`] over the
//! features plus the anomaly score. `batch`: [`BatchChampion`].
//!
//! **Combination** (`type = "blend"`): `mean` averages the members' logits
//! with fixed weights; `stack` is an online logistic meta-model (AdaGrad)
//! over the anomaly score and the members' logits, starting from those
//! weights.
//!
//! **Drift.** ADWIN on the final score of every transaction (score
//! distribution) and on `|label − served score|` of every label (error
//! rate). A rise of the error has the batch champion snapshot its buffer
//! at once. The stacker's learning rates are not restarted: on the
//! Fraud Detection Handbook's stream the error detector fires about 80
//! times in six months, and each restart threw the stacker's weights about
//! (the blend's average precision 0.617 with restarts, 0.642 without, as
//! docs/models.md gives it). Score-distribution changes are recorded.
//! The forest's per-tree resets are recorded too. Each event carries its
//! event time.

use super::adwin::Adwin;
use super::batch::{BatchChampion, BatchConfig};
use super::forest::{AdaptiveForest, ForestConfig};
use super::hst::{HalfSpaceTrees, HstConfig};
use super::select::{Candidate, Judge, ModelSwitch, SelectConfig, Selector};
use super::{sigmoid, Classifier, Explain, LogisticModel, Standardizer};
use crate::event::Contribution;
use crate::features::FeatureVector;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Where the run report reads it from (it is the evaluation's).
pub use crate::eval::MemberMetrics;

/// The score-time side values stored after a transaction's features (see
/// the module doc), in the order of the fields.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SideValues {
    /// The Half-Space Trees anomaly score.
    pub anomaly: f32,
    /// Logit of the logistic regression's score.
    pub logit_linear: f32,
    /// Logit of the forest's score (0 without a forest).
    pub logit_forest: f32,
    /// Logit of the batch champion's score (0 before its first model).
    pub logit_batch: f32,
    /// Logit of the blend's score (what `auto` judges the blend by).
    pub logit_blend: f32,
    /// The served score.
    pub served: f32,
}

impl SideValues {
    /// How many values they take in a stored vector.
    pub const LEN: usize = 6;

    /// Read them from the start of `tail` (a stored vector after its features).
    ///
    /// # Panics
    /// If `tail` holds fewer than [`LEN`](Self::LEN) values.
    pub fn read(tail: &[f32]) -> Self {
        let [anomaly, logit_linear, logit_forest, logit_batch, logit_blend, served]: [f32;
            Self::LEN] = tail[..Self::LEN].try_into().expect("a slice of LEN values");
        SideValues {
            anomaly,
            logit_linear,
            logit_forest,
            logit_batch,
            logit_blend,
            served,
        }
    }

    /// Write them after the first `features` values of `dense`, replacing
    /// whatever followed.
    pub fn write(&self, dense: &mut Vec<f32>, features: usize) {
        dense.truncate(features);
        dense.extend_from_slice(&[
            self.anomaly,
            self.logit_linear,
            self.logit_forest,
            self.logit_batch,
            self.logit_blend,
            self.served,
        ]);
    }
}

/// Held frauds replayed at most per label learnt (a burst of them would
/// stall one transaction's label).
const REPLAY_PER_LABEL: usize = 4;

fn min_ts() -> i64 {
    i64::MIN
}

/// Which score is served (`model.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// The online logistic regression alone (no portfolio).
    Logistic,
    /// The adaptive forest (anomaly score as a feature and for cold start).
    Forest,
    /// The Half-Space Trees anomaly score.
    Hst,
    /// The batch champion (a random forest or a logistic regression).
    Batch,
    /// Logistic, forest and batch combined.
    Blend,
    /// Whichever of logistic, forest and blend has the best recent average
    /// precision ([`Selector`]).
    Auto,
}

impl ModelKind {
    /// Its name in topology files and reports.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Logistic => "logistic",
            ModelKind::Forest => "forest",
            ModelKind::Hst => "hst",
            ModelKind::Batch => "batch",
            ModelKind::Blend => "blend",
            ModelKind::Auto => "auto",
        }
    }
}

/// How a blend combines its members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// Weighted mean of logits.
    Mean,
    /// Online logistic meta-model over the members' logits and the anomaly score.
    Stack,
}

/// Settings of the portfolio (`[model]` and its sub-tables).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortfolioConfig {
    /// Served score.
    pub kind: ModelKind,
    /// The anomaly score is a feature of the forest and the batch model.
    pub anomaly_feature: bool,
    /// Score and evaluate every member, whatever is served.
    pub compare: bool,
    /// Forest settings.
    pub forest: ForestConfig,
    /// Half-Space Trees settings.
    pub hst: HstConfig,
    /// Batch champion settings.
    pub batch: BatchConfig,
    /// Blend combination.
    pub combine: Combine,
    /// Blend weights of logistic, forest, batch.
    pub weights: [f64; 3],
    /// Learning rate of the stacker.
    pub stack_rate: f64,
    /// Fraud labels learnt before the served score leaves cold start.
    pub cold_start_frauds: u64,
    /// Genuine labels learnt before the forest and stacker learn frauds and
    /// the served score leaves cold start (see [`Portfolio::learn`]).
    pub cold_start_genuine: u64,
    /// Most fraud vectors held back until then.
    pub hold_frauds: usize,
    /// `auto`: how the served candidate is chosen.
    pub auto: SelectConfig,
    /// ADWIN confidence of the score and error detectors (0 disables).
    pub drift_delta: f64,
}

impl PortfolioConfig {
    /// Whether anything beside the logistic regression runs: `model.type` is
    /// not the logistic alone, or every member is compared.
    pub fn runs_portfolio(&self) -> bool {
        self.kind != ModelKind::Logistic || self.compare
    }

    /// Whether the logistic regression scores and learns: it is served, a
    /// member of the blend, an `auto` candidate, or compared. The forest,
    /// Half-Space Trees and the batch model served alone never read it.
    pub fn runs_logistic(&self) -> bool {
        self.compare
            || matches!(
                self.kind,
                ModelKind::Logistic | ModelKind::Blend | ModelKind::Auto
            )
    }

    fn runs_forest(&self) -> bool {
        self.runs_blend() || self.kind == ModelKind::Forest
    }

    fn runs_batch(&self) -> bool {
        self.runs_blend() || self.kind == ModelKind::Batch
    }

    /// Whether the blend is computed and its stacker learns.
    fn runs_blend(&self) -> bool {
        self.compare || matches!(self.kind, ModelKind::Blend | ModelKind::Auto)
    }

    /// The members evaluated on their own, in report order: every one with
    /// `compare` or `auto` (the logistic model too), else those the served
    /// blend or forest or batch is made of.
    pub fn evaluated_members(&self) -> Vec<Member> {
        let all = self.compare || self.kind == ModelKind::Auto;
        let mut members = Vec::new();
        if all {
            members.push(Member::Logistic);
            members.push(Member::Hst);
        }
        if self.runs_forest() {
            members.push(Member::Forest);
        }
        if self.runs_batch() {
            members.push(Member::Batch);
        }
        if all || self.kind == ModelKind::Blend {
            members.push(Member::Blend);
        }
        members
    }
}

impl Default for PortfolioConfig {
    fn default() -> Self {
        PortfolioConfig {
            // The robustness matrix's best mean average precision across both
            // simulator families (README "Robustness matrix"); the logistic
            // model alone is 3-5x cheaper but weakest on threshold patterns.
            kind: ModelKind::Auto,
            anomaly_feature: true,
            compare: false,
            forest: ForestConfig::default(),
            hst: HstConfig::default(),
            batch: BatchConfig::default(),
            combine: Combine::Stack,
            weights: [1.0, 1.0, 0.5],
            stack_rate: 0.02,
            cold_start_frauds: 20,
            cold_start_genuine: 1000,
            hold_frauds: 5000,
            auto: SelectConfig::default(),
            drift_delta: 1e-5,
        }
    }
}

/// What detected a drift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// The distribution (mean) of served scores changed.
    Score,
    /// The error of served scores against labels rose.
    Error,
    /// A forest tree's own error rose; the tree was replaced.
    ForestTree,
}

/// One detected drift.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftEvent {
    /// Event time (ms): the transaction's for score drift, the label's
    /// arrival for error drift and tree resets.
    pub ts: i64,
    /// Day of `ts` counted from the evaluation's origin (as the report's daily metrics).
    pub day: i64,
    /// Detector.
    pub kind: DriftKind,
    /// Mean of the monitored value over the window before the cut (none for
    /// a tree reset).
    pub before: Option<f64>,
    /// Mean over the window kept after the cut.
    pub after: Option<f64>,
    /// Labels learnt by then (by this card stage).
    pub labels: u64,
}

/// Most drift events kept per stage; later ones are only counted.
pub const MAX_DRIFT_EVENTS: usize = 10_000;

/// Online logistic meta-model over `[anomaly, logit logistic, logit forest,
/// logit batch]`, AdaGrad.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Stacker {
    w: [f64; 5],
    g2: [f64; 5],
    rate: f64,
}

impl Stacker {
    fn new(weights: [f64; 3], rate: f64) -> Self {
        let total: f64 = weights.iter().sum::<f64>().max(1e-9);
        Stacker {
            w: [
                0.0,
                weights[0] / total,
                weights[1] / total,
                weights[2] / total,
                0.0,
            ],
            g2: [1.0; 5],
            rate,
        }
    }

    fn inputs(side: &SideValues) -> [f64; 5] {
        [
            side.anomaly as f64,
            side.logit_linear as f64,
            side.logit_forest as f64,
            side.logit_batch as f64,
            1.0,
        ]
    }

    fn margin(&self, side: &SideValues) -> f64 {
        let z = Self::inputs(side);
        self.w.iter().zip(z).map(|(w, z)| w * z).sum()
    }

    fn learn(&mut self, side: &SideValues, is_fraud: bool, weight: f64) {
        let z = Self::inputs(side);
        let p = sigmoid(self.margin(side));
        let g = (p - f64::from(u8::from(is_fraud))) * weight;
        for ((w, g2), z) in self.w.iter_mut().zip(&mut self.g2).zip(z) {
            let gi = g * z;
            *g2 += gi * gi;
            *w -= self.rate * gi / g2.sqrt();
        }
    }
}

/// Logit, clipped to ±12 so one certain member cannot dominate a blend.
fn logit(p: f64) -> f64 {
    let p = p.clamp(6e-6, 1.0 - 6e-6);
    (p / (1.0 - p)).ln()
}

/// A member whose scores are evaluated on their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Member {
    /// The online logistic regression.
    Logistic,
    /// The adaptive forest.
    Forest,
    /// The Half-Space Trees anomaly score.
    Hst,
    /// The batch champion.
    Batch,
    /// The combination of the members.
    Blend,
}

impl Member {
    /// Its name in reports (as [`ModelKind::name`]).
    pub fn name(self) -> &'static str {
        match self {
            Member::Logistic => "logistic",
            Member::Forest => "forest",
            Member::Hst => "hst",
            Member::Batch => "batch",
            Member::Blend => "blend",
        }
    }
}

/// Every member's score of one transaction, as its own evaluation records
/// it; [`Portfolio::score`] returns them for an observer outside the models.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MemberScores {
    /// The logistic regression's.
    pub logistic: f64,
    /// The anomaly score.
    pub hst: f64,
    /// The forest's (0 without a forest, which is then not evaluated).
    pub forest: f64,
    /// The batch champion's; the cold-start score before its first model.
    pub batch: f64,
    /// The blend's (whatever is served).
    pub blend: f64,
}

impl MemberScores {
    /// The score of member `m`.
    pub fn of(&self, m: Member) -> f64 {
        match m {
            Member::Logistic => self.logistic,
            Member::Hst => self.hst,
            Member::Forest => self.forest,
            Member::Batch => self.batch,
            Member::Blend => self.blend,
        }
    }
}

/// The portfolio of one card stage.
#[derive(Debug, Serialize, Deserialize)]
pub struct Portfolio {
    cfg: PortfolioConfig,
    /// Card + merchant features (before the side values).
    dense: usize,
    /// Day 0 of the evaluation (for drift event days).
    origin_ms: i64,
    names: Vec<CompactString>,
    forest: Option<AdaptiveForest>,
    hst: HalfSpaceTrees,
    hst_scaler: Standardizer,
    batch: Option<BatchChampion>,
    stacker: Stacker,
    score_drift: Option<Adwin>,
    error_drift: Option<Adwin>,
    labels: u64,
    frauds_learnt: u64,
    genuine_learnt: u64,
    /// Fraud vectors (stride `dense + SideValues::LEN`) and weights held
    /// back while no genuine label has arrived.
    held: VecDeque<f32>,
    held_weights: VecDeque<f64>,
    /// Event time of each held fraud's transaction (missing in checkpoints
    /// written before: such frauds are replayed first).
    #[serde(default)]
    held_ts: VecDeque<i64>,
    /// Latest transaction time among the genuine examples learnt.
    #[serde(default = "min_ts")]
    genuine_tx_ts: i64,
    events: Vec<DriftEvent>,
    events_dropped: u64,
    /// `auto`: the choice of the served candidate.
    selector: Option<Selector>,
    #[serde(skip)]
    hst_in: Vec<f32>,
    /// A held fraud being replayed.
    #[serde(skip)]
    replay: Vec<f32>,
    #[serde(skip)]
    std_buf: Vec<f64>,
}

impl Portfolio {
    /// For `dense` card + merchant features named `names`; drift events are
    /// dated in days from `origin_ms` (the evaluation's day 0).
    pub fn new(names: &[CompactString], cfg: PortfolioConfig, origin_ms: i64) -> Self {
        let dense = names.len();
        let mut side_names: Vec<CompactString> = names.to_vec();
        side_names.push("anomaly_score".into());
        // Members see the features, plus the anomaly score if configured
        // (they slice their inputs to their own width).
        let width = dense + usize::from(cfg.anomaly_feature);
        let forest = cfg
            .runs_forest()
            .then(|| AdaptiveForest::new(side_names[..width].to_vec(), cfg.forest));
        let batch = cfg
            .runs_batch()
            .then(|| BatchChampion::new(width, cfg.batch));
        let detector = (cfg.drift_delta > 0.0).then(|| Adwin::new(cfg.drift_delta));
        Portfolio {
            dense,
            origin_ms,
            names: side_names,
            forest,
            hst: HalfSpaceTrees::new(dense, cfg.hst),
            hst_scaler: Standardizer::new(dense),
            batch,
            stacker: Stacker::new(cfg.weights, cfg.stack_rate),
            score_drift: detector.clone(),
            error_drift: detector,
            labels: 0,
            frauds_learnt: 0,
            genuine_learnt: 0,
            held: VecDeque::new(),
            held_weights: VecDeque::new(),
            held_ts: VecDeque::new(),
            genuine_tx_ts: i64::MIN,
            replay: Vec::new(),
            events: Vec::new(),
            events_dropped: 0,
            selector: (cfg.kind == ModelKind::Auto).then(|| Selector::new(cfg.auto)),
            hst_in: Vec::with_capacity(dense),
            std_buf: Vec::with_capacity(dense),
            cfg,
        }
    }

    /// The served model (`model.type`).
    pub fn kind(&self) -> ModelKind {
        self.cfg.kind
    }

    /// Labels the supervised members (forest, stacker) have learnt from.
    pub fn examples_learnt(&self) -> u64 {
        self.frauds_learnt + self.genuine_learnt
    }

    /// The model serving now: `model.type`, or the candidate `auto` chose.
    fn serving(&self) -> ModelKind {
        match &self.selector {
            Some(sel) => match sel.served() {
                Candidate::Logistic => ModelKind::Logistic,
                Candidate::Forest => ModelKind::Forest,
                Candidate::Blend => ModelKind::Blend,
            },
            None => self.cfg.kind,
        }
    }

    /// Values per stored vector: features plus [`SideValues::LEN`].
    pub fn stride(&self) -> usize {
        self.dense + SideValues::LEN
    }

    fn blend(&self, side: &SideValues, batch_ready: bool) -> f64 {
        match self.cfg.combine {
            Combine::Stack => sigmoid(self.stacker.margin(side)),
            Combine::Mean => {
                let w = self.cfg.weights;
                let mut num = w[0] * side.logit_linear as f64;
                let mut den = w[0];
                if self.forest.is_some() {
                    num += w[1] * side.logit_forest as f64;
                    den += w[1];
                }
                if batch_ready {
                    num += w[2] * side.logit_batch as f64;
                    den += w[2];
                }
                sigmoid(num / den.max(1e-9))
            }
        }
    }

    /// Novelty before any label: standardise, map ±3σ to [0, 1], score, learn.
    fn anomaly(&mut self, dense: &[f32]) -> f64 {
        self.hst_scaler.observe(dense);
        self.hst_scaler.transform(dense, &mut self.std_buf);
        self.hst_in.clear();
        self.hst_in.extend(
            self.std_buf
                .iter()
                .map(|z| (0.5 + z / 6.0).clamp(0.0, 1.0) as f32),
        );
        self.hst.score_and_learn(&self.hst_in)
    }

    /// Score the transaction whose features are in `x` (the logistic model
    /// gave `p_linear`, `ts` is its event time): writes the side values after
    /// the features in `x.dense` and returns the served score and every
    /// member's score.
    pub fn score(&mut self, x: &mut FeatureVector, p_linear: f64, ts: i64) -> (f64, MemberScores) {
        let d = self.dense;
        debug_assert_eq!(x.dense.len(), d);
        let anomaly = self.anomaly(&x.dense);
        // The anomaly score is the last input of the forest and batch model.
        x.dense.push(anomaly as f32);
        if let Some(b) = self.batch.as_mut() {
            b.poll();
        }
        let mut side = SideValues {
            anomaly: anomaly as f32,
            ..SideValues::default()
        };
        let (p_forest, p_batch, p_blend) =
            self.member_scores(&x.dense[..d + 1], p_linear, &mut side);
        let cold = self.cold();
        let cold_score = 0.5 * anomaly;
        let served = match self.serving() {
            ModelKind::Logistic => p_linear,
            ModelKind::Hst => anomaly,
            ModelKind::Forest if cold => cold_score,
            ModelKind::Forest => p_forest.unwrap_or(p_linear),
            ModelKind::Batch => p_batch.unwrap_or(cold_score),
            ModelKind::Blend | ModelKind::Auto if cold => cold_score,
            ModelKind::Blend | ModelKind::Auto => p_blend,
        };
        // `auto` serves its candidate on the blend's scale.
        self.observe_scales(&side);
        let served = match self.selector.as_ref() {
            Some(sel) => {
                let mapped = sel.serve([p_linear, p_forest.unwrap_or(p_linear), p_blend]);
                if cold && sel.served() != Candidate::Logistic {
                    served
                } else {
                    mapped
                }
            }
            None => served,
        };
        side.served = served as f32;
        side.write(&mut x.dense, d);
        // As stored (f32), so that a stage holding this vector sees the same.
        self.watch_scores(f64::from(side.served), ts);
        let members = MemberScores {
            logistic: p_linear,
            hst: anomaly,
            forest: p_forest.unwrap_or(0.0),
            batch: p_batch.unwrap_or(cold_score),
            blend: p_blend,
        };
        (served, members)
    }

    /// Take in a transaction another card stage scored (its stored vector
    /// `stored`, event time `ts`) as scoring it here would have, without
    /// scoring it: the Half-Space Trees and their input scaler learn from
    /// it, and `auto`'s candidate scales and the score-distribution detector
    /// take in the scores stored with it. Card stages that hold each other's
    /// vectors in step then keep the same score-time state as one engine
    /// (`tests/determinism.rs`).
    pub fn observe_scored(&mut self, stored: &[f32], ts: i64) {
        let d = self.dense;
        self.anomaly(&stored[..d]);
        let side = SideValues::read(&stored[d..]);
        self.observe_scales(&side);
        self.watch_scores(f64::from(side.served), ts);
    }

    /// `auto`: the candidates' scores, as stored with the vector, into their scales.
    fn observe_scales(&mut self, side: &SideValues) {
        let forest = if self.forest.is_some() {
            side.logit_forest
        } else {
            side.logit_linear
        };
        if let Some(sel) = self.selector.as_mut() {
            sel.observe_scales([side.logit_linear, forest, side.logit_blend]);
        }
    }

    /// Feed the served score of a transaction at `ts` to the score-distribution detector.
    fn watch_scores(&mut self, served: f64, ts: i64) {
        if let Some(a) = self.score_drift.as_mut() {
            let before = a.mean();
            if a.update(served) {
                let after = a.mean();
                self.record(DriftEvent {
                    ts,
                    kind: DriftKind::Score,
                    before: Some(before),
                    after: Some(after),
                    labels: self.labels,
                    day: 0,
                });
            }
        }
    }

    /// Day of `ts` counted from the evaluation's origin.
    fn day_of(&self, ts: i64) -> i64 {
        ts.saturating_sub(self.origin_ms)
            .div_euclid(crate::eval::DAY_MS)
    }

    fn record(&mut self, mut e: DriftEvent) {
        e.day = self.day_of(e.ts);
        if self.events.len() < MAX_DRIFT_EVENTS {
            self.events.push(e);
        } else {
            self.events_dropped += 1;
        }
    }

    /// Learn from a joined label: `x` is the stored vector (features and
    /// side values); `weight` the class weight, `None` if subsampled away;
    /// `ts` the label's arrival and its transaction's event time.
    ///
    /// Labels arrive skewed: frauds within hours (analysts) or days
    /// (chargebacks), genuine confirmations only once a transaction has
    /// matured. A tree learnt from frauds alone splits on noise and takes a
    /// week to unlearn it (measured: daily AUC below 0.6 for the first 12
    /// days); a tree learnt from frauds newer than every genuine example it
    /// has seen learns the time between them (windows that were still
    /// filling, a population that changed) as fraud: with genuine labels 30
    /// days late the forest's average precision fell to 0.03. So a fraud is
    /// held back (up to `hold_frauds`) until `cold_start_genuine` genuine
    /// labels were learnt and a genuine transaction at least as recent as
    /// it was learnt; held frauds are replayed oldest first, at most
    /// four per label, and the oldest is learnt at once when
    /// the hold is full.
    pub fn learn(
        &mut self,
        x: &FeatureVector,
        is_fraud: bool,
        weight: Option<f64>,
        ts: (i64, i64),
        tx_key: u64,
        linear_now: Option<f64>,
    ) {
        let (ts, tx_ts) = ts;
        let d = self.dense;
        let stride = d + SideValues::LEN;
        let side = SideValues::read(&x.dense[d..]);
        self.labels += 1;
        self.watch_error(is_fraud, side.served, ts);
        let day = self.day_of(ts);
        if self.selector.is_some() {
            let scores = match linear_now {
                Some(p_linear) => self.current_scores(&x.dense, &side, p_linear),
                None => [side.logit_linear, side.logit_forest, side.logit_blend]
                    .map(|z| sigmoid(f64::from(z)) as f32),
            };
            let labels = self.labels;
            if let Some(sel) = self.selector.as_mut() {
                sel.observe(scores, is_fraud, (ts, day), labels);
            }
        }
        if let Some(w) = weight {
            let warm = self.genuine_learnt >= self.cfg.cold_start_genuine;
            if is_fraud && (!warm || tx_ts > self.genuine_tx_ts) {
                if self.held_weights.len() >= self.cfg.hold_frauds {
                    self.replay_held(ts);
                }
                self.held.extend(&x.dense[..stride]);
                self.held_weights.push_back(w);
                self.held_ts.push_back(tx_ts);
            } else {
                self.learn_supervised(&x.dense, is_fraud, w, ts);
                if !is_fraud {
                    self.genuine_tx_ts = self.genuine_tx_ts.max(tx_ts);
                }
                if warm {
                    for _ in 0..REPLAY_PER_LABEL {
                        let due = match self.held_ts.len() {
                            // A checkpoint written before the times were kept.
                            n if n < self.held_weights.len() => true,
                            _ => self
                                .held_ts
                                .front()
                                .is_some_and(|&t| t <= self.genuine_tx_ts),
                        };
                        if !due {
                            break;
                        }
                        self.replay_held(ts);
                    }
                }
            }
        }
        if let Some(b) = self.batch.as_mut() {
            b.learn(&x.dense[..d + 1], is_fraud, tx_key, tx_ts);
        }
    }

    /// Whether `auto` judges its candidates by their current scores of a
    /// labelled transaction: then [`learn`](Self::learn) wants the logistic
    /// model's current score of it.
    pub fn judges_current(&self) -> bool {
        self.selector.is_some() && self.cfg.auto.judge == Judge::Current
    }

    /// `auto`'s candidates' scores of a stored vector (features, anomaly
    /// score as stored, side values) as the models are now; the logistic
    /// model's is `p_linear`.
    fn current_scores(&mut self, stored: &[f32], side: &SideValues, p_linear: f64) -> [f32; 3] {
        let mut now = *side;
        let (p_forest, _, p_blend) =
            self.member_scores(&stored[..self.dense + 1], p_linear, &mut now);
        [p_linear, p_forest.unwrap_or(p_linear), p_blend].map(|p| p as f32)
    }

    /// The forest's and the batch model's scores of `input` (features, then
    /// the anomaly score) and the blend's, given the logistic model's
    /// `p_linear`; `side` (its anomaly score as given) takes their logits.
    fn member_scores(
        &mut self,
        input: &[f32],
        p_linear: f64,
        side: &mut SideValues,
    ) -> (Option<f64>, Option<f64>, f64) {
        let p_forest = self.forest.as_mut().map(|f| f.predict_proba_one(input));
        let p_batch = self.batch.as_ref().and_then(|b| b.score(input));
        side.logit_linear = logit(p_linear) as f32;
        side.logit_forest = p_forest.map_or(0.0, logit) as f32;
        side.logit_batch = p_batch.map_or(0.0, logit) as f32;
        let p_blend = self.blend(side, p_batch.is_some());
        side.logit_blend = logit(p_blend) as f32;
        (p_forest, p_batch, p_blend)
    }

    /// Learn the oldest held fraud (none held: nothing).
    fn replay_held(&mut self, ts: i64) {
        let stride = self.dense + SideValues::LEN;
        let Some(w) = self.held_weights.pop_front() else {
            return;
        };
        if self.held_ts.len() > self.held_weights.len() {
            self.held_ts.pop_front();
        }
        let mut row = std::mem::take(&mut self.replay);
        row.clear();
        row.extend(self.held.drain(..stride));
        self.learn_supervised(&row, true, w, ts);
        self.replay = row;
    }

    /// Feed `|label − served score|` to the error detector; a rise brings
    /// the batch champion's snapshot forward.
    fn watch_error(&mut self, is_fraud: bool, served: f32, ts: i64) {
        if let Some(a) = self.error_drift.as_mut() {
            let err = (f64::from(u8::from(is_fraud)) - served as f64).abs();
            let before = a.mean();
            if a.update(err) && a.mean() > before {
                let after = a.mean();
                if let Some(b) = self.batch.as_mut() {
                    b.retrain_soon();
                }
                self.record(DriftEvent {
                    ts,
                    kind: DriftKind::Error,
                    before: Some(before),
                    after: Some(after),
                    labels: self.labels,
                    day: 0,
                });
            }
        }
    }

    /// Whether the served score is still the cold-start anomaly score.
    fn cold(&self) -> bool {
        self.frauds_learnt < self.cfg.cold_start_frauds
            || self.genuine_learnt < self.cfg.cold_start_genuine
    }

    /// Forest and stacker learn one vector (features and side values).
    fn learn_supervised(&mut self, x: &[f32], is_fraud: bool, w: f64, ts: i64) {
        let d = self.dense;
        if let Some(f) = self.forest.as_mut() {
            // `learn_example`, not `learn_one`: the replaced trees are events.
            let replaced = f.learn_example(&x[..d + 1], is_fraud, w);
            for _ in 0..replaced {
                self.record(DriftEvent {
                    ts,
                    kind: DriftKind::ForestTree,
                    before: None,
                    after: None,
                    labels: self.labels,
                    day: 0,
                });
            }
        }
        if self.cfg.runs_blend() {
            self.stacker.learn(&SideValues::read(&x[d..]), is_fraud, w);
        }
        if is_fraud {
            self.frauds_learnt += 1;
        } else {
            self.genuine_learnt += 1;
        }
    }

    /// The member that explains the served score of a vector with side
    /// values `side`: the served one; the anomaly score in cold start; for a
    /// blend, the member with the largest weighted logit in its combination.
    fn explaining_member(&self, side: &SideValues) -> Member {
        let cold = self.cold();
        match self.serving() {
            ModelKind::Logistic => Member::Logistic,
            ModelKind::Hst => Member::Hst,
            ModelKind::Forest | ModelKind::Blend if cold => Member::Hst,
            ModelKind::Forest => Member::Forest,
            ModelKind::Batch => Member::Batch,
            ModelKind::Blend | ModelKind::Auto => {
                let w = match self.cfg.combine {
                    Combine::Stack => [self.stacker.w[1], self.stacker.w[2], self.stacker.w[3]],
                    Combine::Mean => self.cfg.weights,
                };
                let parts = [
                    (Member::Logistic, w[0] * side.logit_linear as f64),
                    (Member::Forest, w[1] * side.logit_forest as f64),
                    (Member::Batch, w[2] * side.logit_batch as f64),
                ];
                parts
                    .iter()
                    .filter(|(m, _)| match m {
                        Member::Forest => self.forest.is_some(),
                        Member::Batch => self.batch.as_ref().is_some_and(|b| b.model().is_some()),
                        _ => true,
                    })
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map_or(Member::Logistic, |p| p.0)
            }
        }
    }

    /// The `top` largest contributions to the served score of `x` (a stored
    /// vector with side values): exact for the linear models (weight ×
    /// standardised value, log-odds), Saabas path contributions for the
    /// forest (probability), the anomaly score itself for `hst` and in cold
    /// start. A blend is explained by the member with the largest weighted
    /// logit in its combination (an approximation).
    pub fn explain(
        &mut self,
        x: &FeatureVector,
        logistic: &mut LogisticModel,
        top: usize,
        out: &mut Vec<Contribution>,
    ) {
        let d = self.dense;
        let side = SideValues::read(&x.dense[d..]);
        let anomaly_only = |out: &mut Vec<Contribution>| {
            out.clear();
            out.push(Contribution {
                feature: "anomaly_score".into(),
                value: side.anomaly as f64,
            });
        };
        match self.explaining_member(&side) {
            Member::Logistic | Member::Blend => logistic.explain_one(x, top, out),
            Member::Forest => match self.forest.as_mut() {
                Some(f) => f.explain_one(&x.dense[..d + 1], top, out),
                None => logistic.explain_one(x, top, out),
            },
            Member::Batch => match self.batch.as_ref().and_then(|b| b.model()) {
                Some(m) => m.explain(&x.dense[..d + 1], &self.names, top, out),
                None => anomaly_only(out),
            },
            Member::Hst => anomaly_only(out),
        }
    }

    /// Drift events so far (oldest first) and how many were not kept.
    pub fn drift_events(&self) -> (&[DriftEvent], u64) {
        (&self.events, self.events_dropped)
    }

    /// `auto`'s switches of the served candidate so far (oldest first) and
    /// how many were not kept; none for another `model.type`.
    pub fn model_switches(&self) -> (&[ModelSwitch], u64) {
        self.selector.as_ref().map_or((&[], 0), Selector::switches)
    }

    /// Models swapped in by the batch champion.
    pub fn batch_swaps(&self) -> u64 {
        self.batch.as_ref().map_or(0, |b| b.swaps)
    }

    /// Labelled vectors the batch champion's buffer holds (0 without one).
    pub fn batch_rows(&self) -> usize {
        self.batch.as_ref().map_or(0, |b| b.rows_held())
    }

    /// Trees the forest replaced after drift.
    pub fn forest_resets(&self) -> u64 {
        self.forest.as_ref().map_or(0, |f| f.resets())
    }

    /// Take in another stage's drift events (after a parallel run; events
    /// end up ordered by time).
    pub fn absorb(&mut self, other: Portfolio) {
        self.events.extend(other.events);
        self.events.sort_by_key(|e| e.ts);
        self.events_dropped += other.events_dropped;
        if let (Some(mine), Some(theirs)) = (self.selector.as_mut(), other.selector.as_ref()) {
            mine.absorb(theirs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{EvalConfig, MemberEvaluation};
    use crate::features::{FeatureConfig, FeatureExtractor};
    use rand::{Rng, SeedableRng};
    const DAY: i64 = 86_400_000;

    fn vector(rng: &mut rand_chacha::ChaCha8Rng, dims: usize) -> (FeatureVector, bool) {
        let fraud = rng.gen_bool(0.05);
        let mut dense: Vec<f32> = (0..dims).map(|_| rng.gen::<f32>()).collect();
        dense[0] += if fraud { 3.0 } else { 0.0 };
        (
            FeatureVector {
                dense,
                cats: [1, 2, 3, 4, 5, 6, 7],
            },
            fraud,
        )
    }

    /// The default features with a small hashed space.
    fn small_space() -> crate::features::FeatureSpace {
        FeatureExtractor::new(FeatureConfig {
            hash_bits: 4,
            ..FeatureConfig::default()
        })
        .space()
        .clone()
    }

    #[test]
    fn a_fraud_newer_than_every_genuine_example_waits_for_one() {
        let space = small_space();
        let cfg = PortfolioConfig {
            kind: ModelKind::Forest,
            cold_start_genuine: 10,
            ..PortfolioConfig::default()
        };
        let mut p = Portfolio::new(space.names(), cfg, 0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let d = space.dense_len();
        let mut learn = |p: &mut Portfolio, fraud: bool, tx_ts: i64| {
            let (mut x, _) = vector(&mut rng, d);
            p.score(&mut x, 0.5, tx_ts);
            p.learn(&x, fraud, Some(1.0), (tx_ts + 1, tx_ts), 0, None);
        };
        // Genuine transactions of day 0 confirm; frauds of day 5 come first.
        for i in 0..20 {
            learn(&mut p, false, i);
        }
        for i in 0..3 {
            learn(&mut p, true, 5 * DAY + i);
        }
        assert_eq!(p.frauds_learnt, 0, "held while genuine examples are older");
        assert_eq!(p.held_ts.len(), 3);
        // A genuine of day 4 does not release them; one of day 5 does.
        learn(&mut p, false, 4 * DAY);
        assert_eq!(p.frauds_learnt, 0);
        learn(&mut p, false, 5 * DAY + 1);
        assert_eq!(p.frauds_learnt, 2, "those not newer than it");
        learn(&mut p, false, 6 * DAY);
        assert_eq!(p.frauds_learnt, 3);
        assert!(p.held_weights.is_empty() && p.held_ts.is_empty() && p.held.is_empty());
        // A fraud older than the newest genuine example is learnt at once.
        learn(&mut p, true, 5 * DAY);
        assert_eq!(p.frauds_learnt, 4);
    }

    /// A portfolio serving `kind` that leaves cold start after 100 genuine
    /// labels and trains its batch champion every 1,000 labels.
    fn warming_quickly(kind: ModelKind) -> PortfolioConfig {
        PortfolioConfig {
            kind,
            cold_start_genuine: 100,
            batch: BatchConfig {
                retrain_every: 1000,
                swap_after: 100,
                min_frauds: 20,
                negative_rate: 0.5,
                ..BatchConfig::linear()
            },
            ..PortfolioConfig::default()
        }
    }

    #[test]
    fn scores_learns_and_survives_a_serde_round_trip() {
        let space = small_space();
        let cfg = PortfolioConfig {
            compare: true,
            ..warming_quickly(ModelKind::Blend)
        };
        let eval = EvalConfig::default();
        let mut p = Portfolio::new(space.names(), cfg, eval.origin_ms);
        let mut members = MemberEvaluation::new(&cfg, &eval);
        let mut logistic = LogisticModel::new(&space, Default::default());
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let d = space.dense_len();
        for i in 0..6000u64 {
            let (mut x, y) = vector(&mut rng, d);
            let p_lin = logistic.predict_proba_one(&x);
            let (s, scores) = p.score(&mut x, p_lin, i as i64 * 1000);
            assert!((0.0..=1.0).contains(&s));
            assert_eq!(x.dense.len(), p.stride(), "side values appended");
            assert_eq!(SideValues::read(&x.dense[d..]).served, s as f32);
            assert_eq!(scores.logistic, p_lin);
            members.record_score(i, i as i64 * 1000, i % 50, 0.0, &scores);
            logistic.learn_one(&x, y, 1.0);
            members.record_label(i, y);
            p.learn(
                &x,
                y,
                Some(if y { 5.0 } else { 1.0 }),
                (i as i64 * 1000, i as i64 * 1000),
                i,
                None,
            );
        }
        assert!(!p.cold(), "warm after labels of both classes");
        assert!(p.batch_swaps() > 0, "the batch champion was trained");
        // a fraud-like vector outranks a genuine one
        let (mut hi, _) = vector(&mut rng, d);
        hi.dense[0] = 3.5;
        let (mut lo, _) = vector(&mut rng, d);
        lo.dense[0] = 0.1;
        let (hi2, lo2) = (hi.clone(), lo.clone());
        let (s_hi, _) = p.score(&mut hi, 0.5, 0);
        let (s_lo, _) = p.score(&mut lo, 0.5, 0);
        assert!(s_hi > s_lo, "{s_hi} vs {s_lo}");
        let mut out = Vec::new();
        p.explain(&hi, &mut logistic, 3, &mut out);
        assert!(!out.is_empty());
        // the state is plain data: a restored portfolio scores the same
        let json = serde_json::to_string(&p).unwrap();
        let mut back: Portfolio = serde_json::from_str(&json).unwrap();
        let (mut a, mut b) = (hi2.clone(), hi2);
        assert_eq!(p.score(&mut a, 0.5, 0), back.score(&mut b, 0.5, 0));
        assert_eq!(a.dense, b.dense, "the same side values");
        let (mut a, mut b) = (lo2.clone(), lo2);
        assert_eq!(p.score(&mut a, 0.5, 0), back.score(&mut b, 0.5, 0));
        let names: Vec<String> = members.metrics(None).into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["logistic", "hst", "forest", "batch", "blend"]);
        assert_eq!(members.metrics(None)[4].overall.transactions, 6000);
    }

    #[test]
    fn auto_judges_a_labelled_transaction_by_its_candidates_as_they_are_now() {
        let space = small_space();
        let cfg = warming_quickly(ModelKind::Auto);
        assert_eq!(cfg.auto.judge, Judge::Current, "the default");
        let mut p = Portfolio::new(space.names(), cfg, 0);
        assert!(p.judges_current());
        let mut logistic = LogisticModel::new(&space, Default::default());
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let d = space.dense_len();
        let mut stored = Vec::new();
        for i in 0..3000u64 {
            let (mut x, y) = vector(&mut rng, d);
            let p_lin = logistic.predict_proba_one(&x);
            let (_, scores) = p.score(&mut x, p_lin, i as i64 * 1000);
            if i >= 2990 {
                stored.push((x.clone(), scores));
                continue; // scored, not yet labelled
            }
            let now = logistic.score_unobserved(&x);
            logistic.learn_one(&x, y, 1.0);
            let ts = i as i64 * 1000;
            p.learn(&x, y, Some(1.0), (ts, ts), i, Some(now));
        }
        assert!(p.batch_swaps() > 0, "the batch champion was trained");
        // Nothing learnt since they were scored: scored again, each
        // candidate gives the score it gave then.
        for (x, scores) in &stored {
            let side = SideValues::read(&x.dense[d..]);
            let now = p.current_scores(&x.dense, &side, scores.logistic);
            let then = [scores.logistic, scores.forest, scores.blend].map(|s| s as f32);
            for (a, b) in now.iter().zip(then) {
                assert!((a - b).abs() < 1e-5, "{now:?} against {then:?}");
            }
        }
        // After more labels they differ: the candidates as they are now.
        for i in 3000..3500u64 {
            let (mut x, y) = vector(&mut rng, d);
            let p_lin = logistic.predict_proba_one(&x);
            p.score(&mut x, p_lin, i as i64 * 1000);
            let ts = i as i64 * 1000;
            p.learn(&x, y, Some(1.0), (ts, ts), i, Some(p_lin));
        }
        let (x, scores) = &stored[0];
        let side = SideValues::read(&x.dense[d..]);
        let now = p.current_scores(&x.dense, &side, scores.logistic);
        assert_ne!(now[1], scores.forest as f32, "the forest has learnt since");
    }

    #[test]
    fn side_values_keep_their_stored_order() {
        let side = SideValues {
            anomaly: 1.0,
            logit_linear: 2.0,
            logit_forest: 3.0,
            logit_batch: 4.0,
            logit_blend: 4.5,
            served: 5.0,
        };
        let mut dense = vec![9.0, 9.0, 7.0];
        side.write(&mut dense, 2);
        assert_eq!(dense, [9.0, 9.0, 1.0, 2.0, 3.0, 4.0, 4.5, 5.0]);
        assert_eq!(SideValues::read(&dense[2..]), side);
    }
}
