//! Online logistic regression over standardised dense features, hashed
//! categorical one-hots and a bias, trained per example with FTRL-Proximal
//! (McMahan et al. 2013) or AdaGrad SGD. Saved to a versioned JSON file.
//!
//! The parameters live in atomics behind an `Arc`, so several workers can
//! hold handles on one model and score and learn without locks (Hogwild:
//! relaxed loads and stores; a rare lost update between two workers touching
//! the same coordinate at once is the accepted price). With one handle the
//! arithmetic is exactly that of a plain `Vec<f64>`. Each handle keeps its own
//! input standardiser.

use super::{sigmoid, Classifier, Explain, Standardizer};
use crate::event::Contribution;
use crate::features::{FeatureSpace, FeatureVector, CATEGORICAL_NAMES, NO_SLOT};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Per-coordinate update rule.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Optimizer {
    /// FTRL-Proximal with per-coordinate learning rates and L1/L2.
    Ftrl {
        /// Learning-rate scale.
        alpha: f64,
        /// Learning-rate smoothing.
        beta: f64,
        /// L1 strength (sparsity).
        l1: f64,
        /// L2 strength.
        l2: f64,
    },
    /// AdaGrad SGD with L2.
    Adagrad {
        /// Base learning rate.
        learning_rate: f64,
        /// L2 strength.
        l2: f64,
    },
}

impl Default for Optimizer {
    fn default() -> Self {
        Optimizer::Ftrl {
            alpha: 0.15,
            beta: 1.0,
            l1: 0.0,
            l2: 1.0,
        }
    }
}

/// How the rare fraud class is given its due.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Imbalance {
    /// Every example counts once.
    None,
    /// Frauds count `positive_weight` times.
    Weight {
        /// Weight of a fraud example.
        positive_weight: f64,
    },
    /// Keep each genuine example with probability `negative_rate`
    /// (deterministic per transaction).
    Subsample {
        /// Share of genuine examples learnt from.
        negative_rate: f64,
    },
}

impl Imbalance {
    /// What to add to a model's log-odds to undo this weighting in
    /// expectation: frauds weighted `w` multiply the odds by `w`, genuine
    /// examples kept at rate `r` by `1 / r`.
    pub fn log_odds_shift(self) -> f64 {
        match self {
            Imbalance::None => 0.0,
            Imbalance::Weight { positive_weight } => -positive_weight.ln(),
            Imbalance::Subsample { negative_rate } => negative_rate.ln(),
        }
    }
}

impl Default for Imbalance {
    fn default() -> Self {
        Imbalance::Weight {
            positive_weight: 5.0,
        }
    }
}

impl Imbalance {
    /// Weight to learn this example with, or `None` to skip it. `tx_key` and
    /// `seed` make subsampling deterministic.
    pub fn weight(&self, is_fraud: bool, tx_key: u64, seed: u64) -> Option<f64> {
        match *self {
            Imbalance::None => Some(1.0),
            Imbalance::Weight { positive_weight } => {
                Some(if is_fraud { positive_weight } else { 1.0 })
            }
            Imbalance::Subsample { negative_rate } => {
                if is_fraud {
                    return Some(1.0);
                }
                let h = crate::event::key_of(&(tx_key ^ seed).to_le_bytes());
                let u = (h >> 11) as f64 / (1u64 << 53) as f64;
                (u < negative_rate).then_some(1.0)
            }
        }
    }
}

/// Settings of the logistic model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LogisticConfig {
    /// Update rule.
    pub optimizer: Optimizer,
    /// Fraud rate assumed before any label: its log-odds is a fixed offset of
    /// the margin, so an untrained model scores low instead of 0.5.
    pub prior_fraud_rate: f64,
}

impl Default for LogisticConfig {
    fn default() -> Self {
        LogisticConfig {
            optimizer: Optimizer::default(),
            prior_fraud_rate: 0.01,
        }
    }
}

const FORMAT: &str = "fraudstream-logistic";
const FORMAT_VERSION: u32 = 1;

/// Model parameters, shared by every handle.
#[derive(Debug)]
struct Params {
    /// Weights: dense features, then hashed slots, then the bias.
    w: Box<[AtomicU64]>,
    /// FTRL `z` (unused by AdaGrad).
    z: Box<[AtomicU64]>,
    /// Sum of squared gradients per coordinate.
    n: Box<[AtomicU64]>,
    /// `sqrt(n)`, kept so an FTRL update takes one square root, not two.
    root: Box<[AtomicU64]>,
    updates: AtomicU64,
}

#[inline]
fn get(a: &AtomicU64) -> f64 {
    f64::from_bits(a.load(Relaxed))
}

#[inline]
fn set(a: &AtomicU64, v: f64) {
    a.store(v.to_bits(), Relaxed)
}

fn atomics(v: &[f64]) -> Box<[AtomicU64]> {
    v.iter().map(|x| AtomicU64::new(x.to_bits())).collect()
}

fn plain(v: &[AtomicU64]) -> Vec<f64> {
    v.iter().map(get).collect()
}

/// A handle on a (possibly shared) model, with its own input statistics.
#[derive(Debug)]
pub struct LogisticModel {
    optimizer: Optimizer,
    /// Log-odds of the prior fraud rate, added to every margin.
    offset: f64,
    feature_names: Arc<[CompactString]>,
    hash_bits: u32,
    scaler: Standardizer,
    params: Arc<Params>,
    scratch: Vec<f64>,
    /// Reused by `explain`.
    ranked: Vec<(f64, usize)>,
}

/// The saved form of a model in a model file (JSON): its format, its update
/// rule and its learnt state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelFile {
    format: CompactString,
    format_version: u32,
    optimizer: Optimizer,
    #[serde(flatten)]
    state: ModelState,
}

/// What a model has learnt (checkpoints keep this; the update rule and the
/// other settings come from the topology, which the checkpoint is checked
/// against).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelState {
    offset: f64,
    feature_names: Vec<CompactString>,
    hash_bits: u32,
    scaler: Standardizer,
    weights: Vec<f64>,
    z: Vec<f64>,
    n: Vec<f64>,
    updates: u64,
}

/// Why a model file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// Reading or writing failed.
    #[error("model file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Not a model file of this kind or version, or damaged.
    #[error("model file {path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl LogisticModel {
    /// Take `dense` (a transaction's raw features, scored elsewhere) into
    /// the input statistics, as scoring it here would.
    pub fn observe(&mut self, dense: &[f32]) {
        self.scaler.observe(dense);
    }

    /// What an untrained model scores: the prior fraud rate.
    pub fn prior(&self) -> f64 {
        super::sigmoid(self.offset)
    }

    /// An untrained model for this feature space.
    pub fn new(space: &FeatureSpace, cfg: LogisticConfig) -> Self {
        let dims = space.dense_len() + (1usize << space.hash_bits()) + 1;
        let zeros = vec![0.0; dims];
        LogisticModel {
            optimizer: cfg.optimizer,
            offset: (cfg.prior_fraud_rate / (1.0 - cfg.prior_fraud_rate)).ln(),
            feature_names: space.names().into(),
            hash_bits: space.hash_bits(),
            scaler: Standardizer::new(space.dense_len()),
            params: Arc::new(Params {
                w: atomics(&zeros),
                z: atomics(&zeros),
                n: atomics(&zeros),
                root: atomics(&zeros),
                updates: AtomicU64::new(0),
            }),
            scratch: Vec::with_capacity(space.dense_len()),
            ranked: Vec::new(),
        }
    }

    /// Another handle on the same parameters, starting from a copy of this
    /// handle's input statistics (one per worker).
    pub fn share(&self) -> Self {
        LogisticModel {
            optimizer: self.optimizer,
            offset: self.offset,
            feature_names: self.feature_names.clone(),
            hash_bits: self.hash_bits,
            scaler: self.scaler.clone(),
            params: self.params.clone(),
            scratch: Vec::with_capacity(self.scratch.capacity()),
            ranked: Vec::new(),
        }
    }

    /// Fold another handle's input statistics into this one's (before saving
    /// a model that several workers trained).
    pub fn absorb_statistics(&mut self, other: &LogisticModel) {
        self.scaler.merge(&other.scaler);
    }

    fn dense_len(&self) -> usize {
        self.scaler.dims()
    }

    fn bias_index(&self) -> usize {
        self.params.w.len() - 1
    }

    fn margin(&self, xs: &[f64], cats: &[u32]) -> f64 {
        let d = self.dense_len();
        let w = &self.params.w;
        let mut m = self.offset + get(&w[self.bias_index()]);
        for (w, x) in w[..d].iter().zip(xs) {
            m += get(w) * x;
        }
        for &c in cats.iter().filter(|&&c| c != NO_SLOT) {
            m += get(&w[d + c as usize]);
        }
        m
    }

    fn update_coord(&self, i: usize, g: f64) {
        let p = &*self.params;
        match self.optimizer {
            Optimizer::Ftrl {
                alpha,
                beta,
                l1,
                l2,
            } => {
                let n = get(&p.n[i]);
                let (old_root, new_root) = (get(&p.root[i]), (n + g * g).sqrt());
                set(&p.root[i], new_root);
                let sigma = (new_root - old_root) / alpha;
                let z = get(&p.z[i]) + g - sigma * get(&p.w[i]);
                set(&p.z[i], z);
                set(&p.n[i], n + g * g);
                let w = if z.abs() <= l1 {
                    0.0
                } else {
                    -(z - z.signum() * l1) / ((beta + new_root) / alpha + l2)
                };
                set(&p.w[i], w);
            }
            Optimizer::Adagrad { learning_rate, l2 } => {
                let w = get(&p.w[i]);
                let g = g + l2 * w;
                let n = get(&p.n[i]) + g * g;
                set(&p.n[i], n);
                set(&p.w[i], w - learning_rate * g / (n.sqrt() + 1e-8));
            }
        }
    }

    /// The model's parameters and input statistics, as saved.
    pub fn to_file(&self) -> ModelFile {
        ModelFile {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            optimizer: self.optimizer,
            state: self.state(),
        }
    }

    /// What the model has learnt (for checkpoints).
    pub fn state(&self) -> ModelState {
        ModelState {
            offset: self.offset,
            feature_names: self.feature_names.to_vec(),
            hash_bits: self.hash_bits,
            scaler: self.scaler.clone(),
            weights: plain(&self.params.w),
            z: plain(&self.params.z),
            n: plain(&self.params.n),
            updates: self.params.updates.load(Relaxed),
        }
    }

    /// A model from its saved form; it must have been trained on `space`.
    /// The error says what does not match.
    pub fn from_file(m: ModelFile, space: &FeatureSpace) -> Result<Self, String> {
        if m.format != FORMAT || m.format_version != FORMAT_VERSION {
            return Err(format!(
                "format {} v{}, expected {FORMAT} v{FORMAT_VERSION}",
                m.format, m.format_version
            ));
        }
        Self::from_state(m.state, m.optimizer, space)
    }

    /// A model from its learnt `state` with update rule `optimizer`; it must
    /// have been trained on `space`. The error says what does not match.
    pub fn from_state(
        m: ModelState,
        optimizer: Optimizer,
        space: &FeatureSpace,
    ) -> Result<Self, String> {
        if m.feature_names.as_slice() != space.names() || m.hash_bits != space.hash_bits() {
            return Err("trained on other features than this topology computes".into());
        }
        let dims = space.dense_len() + (1usize << space.hash_bits()) + 1;
        if m.weights.len() != dims
            || m.z.len() != dims
            || m.n.len() != dims
            || m.scaler.dims() != space.dense_len()
        {
            return Err("weight vectors have the wrong length".into());
        }
        // Keeps a saved `inv_sd` cache (checkpoints, so a restored model scores
        // exactly as the uninterrupted one would); rebuilds a missing one.
        let mut scaler = m.scaler;
        scaler.ensure_cache();
        Ok(LogisticModel {
            optimizer,
            offset: m.offset,
            feature_names: space.names().into(),
            hash_bits: m.hash_bits,
            scaler,
            params: Arc::new(Params {
                w: atomics(&m.weights),
                z: atomics(&m.z),
                n: atomics(&m.n),
                root: atomics(&m.n.iter().map(|n| n.sqrt()).collect::<Vec<_>>()),
                updates: AtomicU64::new(m.updates),
            }),
            scratch: Vec::with_capacity(space.dense_len()),
            ranked: Vec::new(),
        })
    }

    /// Write the model to `path` atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), ModelFileError> {
        let io = |source| ModelFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let json = serde_json::to_vec(&self.to_file()).map_err(|e| ModelFileError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Read a model saved by [`save`](Self::save); it must have been trained on
    /// the same feature space.
    pub fn load(path: &Path, space: &FeatureSpace) -> Result<Self, ModelFileError> {
        let invalid = |reason: String| ModelFileError::Invalid {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|source| ModelFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let m: ModelFile = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("not a model file: {e}")))?;
        Self::from_file(m, space).map_err(invalid)
    }

    /// The score of `x` without counting it in the input statistics (a
    /// stored vector scored again, as [`Classifier::learn_one`] does).
    pub fn score_unobserved(&mut self, x: &FeatureVector) -> f64 {
        let mut xs = std::mem::take(&mut self.scratch);
        self.scaler.transform(&x.dense, &mut xs);
        let p = sigmoid(self.margin(&xs, &x.cats));
        self.scratch = xs;
        p
    }
}

impl Classifier for LogisticModel {
    type Input = FeatureVector;

    fn predict_proba_one(&mut self, x: &FeatureVector) -> f64 {
        self.scaler.observe(&x.dense);
        self.score_unobserved(x)
    }

    fn learn_one(&mut self, x: &FeatureVector, is_fraud: bool, weight: f64) {
        let mut xs = std::mem::take(&mut self.scratch);
        self.scaler.transform(&x.dense, &mut xs);
        let p = sigmoid(self.margin(&xs, &x.cats));
        let g = (p - if is_fraud { 1.0 } else { 0.0 }) * weight;
        if !g.is_finite() {
            // Refused rather than absorbed: one NaN step would poison every weight.
            metrics::counter!("fraudstream_model_updates_refused_total").increment(1);
            self.scratch = xs;
            return;
        }
        let d = self.dense_len();
        for (i, &xi) in xs.iter().enumerate() {
            if xi != 0.0 {
                self.update_coord(i, g * xi);
            }
        }
        for &c in x.cats.iter().filter(|&&c| c != NO_SLOT) {
            self.update_coord(d + c as usize, g);
        }
        let b = self.bias_index();
        self.update_coord(b, g);
        self.params.updates.fetch_add(1, Relaxed);
        self.scratch = xs;
    }

    fn version(&self) -> u64 {
        self.params.updates.load(Relaxed)
    }
}

impl Explain for LogisticModel {
    fn explain_one(&mut self, x: &FeatureVector, top: usize, out: &mut Vec<Contribution>) {
        out.clear();
        let mut xs = std::mem::take(&mut self.scratch);
        self.scaler.transform(&x.dense, &mut xs);
        let d = self.dense_len();
        let w = &self.params.w;
        // (contribution, index): dense features first, then the categoricals.
        let mut ranked = std::mem::take(&mut self.ranked);
        ranked.clear();
        ranked.extend(
            xs.iter()
                .zip(&w[..d])
                .enumerate()
                .map(|(i, (x, w))| (x * get(w), i)),
        );
        ranked.extend(
            x.cats
                .iter()
                .enumerate()
                .filter(|(_, &c)| c != NO_SLOT)
                .map(|(j, &c)| (get(&w[d + c as usize]), d + j)),
        );
        ranked.retain(|(v, _)| *v > 0.0);
        let name = |i: usize| -> CompactString {
            if i < d {
                self.feature_names[i].clone()
            } else {
                CATEGORICAL_NAMES[i - d].into()
            }
        };
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| name(a.1).cmp(&name(b.1))));
        out.extend(ranked.iter().take(top).map(|&(value, i)| Contribution {
            feature: name(i),
            value,
        }));
        self.scratch = xs;
        self.ranked = ranked;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{FeatureConfig, FeatureExtractor};
    use rand::{Rng, SeedableRng};

    fn space() -> FeatureSpace {
        FeatureExtractor::new(FeatureConfig {
            hash_bits: 4,
            ..FeatureConfig::default()
        })
        .space()
        .clone()
    }

    /// Separable toy data: fraud iff feature 0 is large.
    fn example(rng: &mut rand_chacha::ChaCha8Rng, dims: usize) -> (FeatureVector, bool) {
        let fraud = rng.gen_bool(0.1);
        let mut dense: Vec<f32> = (0..dims).map(|_| rng.gen::<f32>()).collect();
        dense[0] = if fraud { 2.0 } else { 0.0 } + rng.gen::<f32>();
        (
            FeatureVector {
                dense,
                cats: [1, 2, 3, 4, 5, 6, 7],
            },
            fraud,
        )
    }

    fn trains_to_separate(opt: Optimizer) {
        let s = space();
        let mut m = LogisticModel::new(
            &s,
            LogisticConfig {
                optimizer: opt,
                ..LogisticConfig::default()
            },
        );
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..5000 {
            let (x, y) = example(&mut rng, s.dense_len());
            m.predict_proba_one(&x);
            m.learn_one(&x, y, 1.0);
        }
        let mut pairs = Vec::new();
        for _ in 0..2000 {
            let (x, y) = example(&mut rng, s.dense_len());
            pairs.push((m.predict_proba_one(&x) as f32, y));
        }
        let auc = crate::eval::roc_auc(&pairs).unwrap();
        assert!(auc > 0.97, "{opt:?}: auc {auc}");
        assert_eq!(m.version(), 5000);
        let (x, _) = example(&mut rng, s.dense_len());
        let mut fraud = x.clone();
        fraud.dense[0] = 2.9;
        let mut out = Vec::new();
        m.explain_one(&fraud, 3, &mut out);
        assert_eq!(out[0].feature, s.names()[0]);
        assert!(out.windows(2).all(|w| w[0].value >= w[1].value));
    }

    #[test]
    fn ftrl_learns_a_separable_problem() {
        trains_to_separate(Optimizer::default());
    }

    #[test]
    fn adagrad_learns_a_separable_problem() {
        trains_to_separate(Optimizer::Adagrad {
            learning_rate: 0.05,
            l2: 1e-4,
        });
    }

    #[test]
    fn save_and_load_round_trip() {
        let s = space();
        let mut m = LogisticModel::new(&s, LogisticConfig::default());
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        for _ in 0..100 {
            let (x, y) = example(&mut rng, s.dense_len());
            m.predict_proba_one(&x);
            m.learn_one(&x, y, 1.0);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        m.save(&path).unwrap();
        let mut back = LogisticModel::load(&path, &s).unwrap();
        let (x, _) = example(&mut rng, s.dense_len());
        assert_eq!(back.predict_proba_one(&x), m.predict_proba_one(&x));
        assert_eq!(back.version(), 100);
        // a different feature space is refused with a reason
        let other = FeatureExtractor::new(FeatureConfig::default())
            .space()
            .clone();
        let err = LogisticModel::load(&path, &other).unwrap_err().to_string();
        assert!(err.contains("other features"), "{err}");
        std::fs::write(&path, b"{}").unwrap();
        assert!(LogisticModel::load(&path, &s).is_err());
    }

    #[test]
    fn non_finite_inputs_and_updates_are_refused() {
        let s = space();
        let mut m = LogisticModel::new(&s, LogisticConfig::default());
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for i in 0..300 {
            let (mut x, y) = example(&mut rng, s.dense_len());
            if i % 3 == 0 {
                x.dense[0] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][i % 9 / 3];
            }
            assert!(m.predict_proba_one(&x).is_finite());
            m.learn_one(&x, y, if i == 7 { f64::INFINITY } else { 1.0 });
        }
        let file = serde_json::to_string(&m.to_file()).unwrap();
        assert!(!file.contains("NaN") && !file.contains("null"), "{file}");
        let (x, _) = example(&mut rng, s.dense_len());
        assert!(m.predict_proba_one(&x).is_finite());
    }

    #[test]
    fn subsampling_is_deterministic_and_near_its_rate() {
        let im = Imbalance::Subsample { negative_rate: 0.2 };
        let kept = (0..10_000u64)
            .filter(|&k| im.weight(false, k, 7).is_some())
            .count();
        assert!((1800..2200).contains(&kept), "{kept}");
        assert_eq!(im.weight(false, 5, 7), im.weight(false, 5, 7));
        assert_eq!(im.weight(true, 5, 7), Some(1.0));
    }
}
