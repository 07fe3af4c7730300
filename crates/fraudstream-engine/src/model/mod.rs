//! Online models: score a feature vector now, learn from it when its label
//! arrives. This module owns the River-like traits every model is used
//! through ([`Classifier`], [`AnomalyDetector`], [`Explain`]) and the running
//! feature standardisation ([`Standardizer`]). [`logistic`] holds the online
//! logistic regression (FTRL-Proximal or AdaGrad SGD); [`adwin`] and [`hst`]
//! the change detector and streaming anomaly detector; [`forest`] the
//! adaptive random forest; [`batch`] the batch champion and [`cart`] its
//! random forest of CART trees;
//! [`portfolio`] what `model.type` serves and how the members are combined
//! and watched for drift (their evaluation is an observer outside the
//! models, in [`crate::eval`]); [`served`] the one value the card stage
//! scores, learns and explains with.
//!
//! **Inputs differ by model**, so each trait names its input type: the
//! logistic regression reads a whole
//! [`FeatureVector`](crate::features::FeatureVector) (dense values and
//! hashed categoricals), the trees read dense values only (`[f32]`).
//!
//! **The batch champion implements none of the traits**: it is not an online
//! learner. It buffers labelled vectors (sampled by transaction key, not
//! weighted), retrains in the background and scores nothing until its first
//! model is swapped in; its trained model explains itself only with names
//! the portfolio holds. It keeps its own API ([`batch::BatchChampion`]).

pub mod adwin;
pub mod batch;
pub mod calibration;
pub mod cart;
pub mod forest;
pub mod hst;
pub mod logistic;
pub mod portfolio;
pub mod select;
pub mod served;

use crate::event::Contribution;

pub use logistic::{Imbalance, LogisticConfig, LogisticModel, ModelFile, ModelState, Optimizer};
pub use served::ServedModel;

/// The logistic function, its argument clamped to ±35 (beyond, the result
/// is 0 or 1 to double precision anyway).
pub(crate) fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z.clamp(-35.0, 35.0)).exp())
}

/// splitmix64: advance `state` and return its next value. The one source
/// of randomness of both forests: seeded, so the same rows give the same
/// trees.
pub(crate) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A binary classifier scored test-then-train on a stream (River's
/// `predict_proba_one` / `learn_one`).
pub trait Classifier {
    /// What one example is (a whole feature vector, or dense values only).
    type Input: ?Sized;
    /// Fraud probability of `x` under the current model. May update running
    /// input statistics (standardisation), never the weights.
    fn predict_proba_one(&mut self, x: &Self::Input) -> f64;
    /// Learn from one labelled example with the given weight.
    fn learn_one(&mut self, x: &Self::Input, is_fraud: bool, weight: f64);
    /// Number of updates applied so far.
    fn version(&self) -> u64;
}

/// An unsupervised novelty scorer (River's `anomaly` detectors): learns from
/// every input, labelled or not.
pub trait AnomalyDetector {
    /// What one input is.
    type Input: ?Sized;
    /// Anomaly score of `x` in [0, 1], higher is more anomalous.
    fn score_one(&mut self, x: &Self::Input) -> f64;
    /// Fold `x` into the model of normal traffic.
    fn learn_one(&mut self, x: &Self::Input);
}

/// A classifier that says why it scored an input as it did.
pub trait Explain: Classifier {
    /// The `top` largest positive contributions to the score of `x`, largest
    /// first, written into `out` (cleared first).
    fn explain_one(&mut self, x: &Self::Input, top: usize, out: &mut Vec<Contribution>);
}

/// Running mean and variance per feature (Welford), used to standardise inputs
/// so one learning rate fits features of every scale.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Standardizer {
    count: f64,
    mean: Vec<f64>,
    m2: Vec<f64>,
    /// 1 / standard deviation (0 for constant features), refreshed every
    /// `REFRESH` observations once warm: a square root and a division per
    /// feature per event would cost more than the rest of scoring.
    #[serde(default)]
    inv_sd: Vec<f64>,
    #[serde(default)]
    stale: u32,
}

/// Observations between refreshes of `inv_sd` after the first `WARM`.
const REFRESH: u32 = 256;
const WARM: f64 = 4096.0;

/// Standardised values are clipped to this many deviations.
const CLIP: f64 = 8.0;

impl Standardizer {
    /// For `dims` features.
    pub fn new(dims: usize) -> Self {
        Standardizer {
            count: 0.0,
            mean: vec![0.0; dims],
            m2: vec![0.0; dims],
            inv_sd: vec![0.0; dims],
            stale: 0,
        }
    }

    /// Fold another standardiser's statistics into this one (Chan et al.).
    pub fn merge(&mut self, other: &Standardizer) {
        let (na, nb) = (self.count, other.count);
        let n = na + nb;
        if nb == 0.0 {
            return;
        }
        for i in 0..self.mean.len() {
            let delta = other.mean[i] - self.mean[i];
            self.mean[i] += delta * nb / n;
            self.m2[i] += other.m2[i] + delta * delta * na * nb / n;
        }
        self.count = n;
        self.refresh();
    }

    fn refresh(&mut self) {
        let n = self.count.max(1.0);
        self.inv_sd.clear();
        self.inv_sd.extend(self.m2.iter().map(|&s| {
            let sd = (s / n).sqrt();
            if sd < 1e-9 {
                0.0
            } else {
                1.0 / sd
            }
        }));
        self.stale = 0;
    }

    /// Rebuild the `inv_sd` cache when it is missing (a model file written
    /// before the cache was saved).
    fn ensure_cache(&mut self) {
        if self.inv_sd.len() != self.mean.len() {
            self.refresh();
        }
    }

    /// Number of features.
    pub fn dims(&self) -> usize {
        self.mean.len()
    }

    /// Fold one raw vector into the statistics; a vector with a non-finite
    /// value is refused (returns false) and leaves them as they were.
    pub fn observe(&mut self, x: &[f32]) -> bool {
        if !x.iter().all(|v| v.is_finite()) {
            return false;
        }
        self.count += 1.0;
        let inv_n = 1.0 / self.count;
        for ((m, s), &v) in self.mean.iter_mut().zip(self.m2.iter_mut()).zip(x) {
            let v = v as f64;
            let d = v - *m;
            *m += d * inv_n;
            *s += d * (v - *m);
        }
        self.stale += 1;
        if self.count < WARM || self.stale >= REFRESH || self.inv_sd.len() != self.mean.len() {
            self.refresh();
        }
        true
    }

    /// Write the standardised `x` into `out` (resized to fit).
    pub fn transform(&self, x: &[f32], out: &mut Vec<f64>) {
        out.clear();
        let n = self.count.max(1.0);
        out.extend(
            x.iter()
                .zip(&self.mean)
                .zip(&self.m2)
                .map(|((&v, &m), &s)| {
                    let sd = (s / n).sqrt();
                    let z = (v as f64 - m) / sd;
                    // A non-finite input carries no information: it is the mean.
                    if sd < 1e-9 || z.is_nan() {
                        0.0
                    } else {
                        z.clamp(-CLIP, CLIP)
                    }
                }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardizer_centres_and_scales() {
        let mut s = Standardizer::new(2);
        for i in 0..1000 {
            s.observe(&[i as f32, 5.0]);
        }
        let mut out = Vec::new();
        s.transform(&[499.5, 5.0], &mut out);
        assert!(out[0].abs() < 1e-9);
        assert_eq!(out[1], 0.0, "constant feature maps to 0");
        s.transform(&[999.0, 5.0], &mut out);
        assert!((out[0] - 1.73).abs() < 0.01, "{}", out[0]);
        s.transform(&[1e9, 5.0], &mut out);
        assert_eq!(out[0], CLIP);
        s.transform(&[f32::NAN, 5.0], &mut out);
        assert_eq!(out[0], 0.0, "a NaN input reads as the mean");
        assert!(!s.observe(&[f32::INFINITY, 5.0]), "refused");
        s.transform(&[999.0, 5.0], &mut out);
        assert!(
            (out[0] - 1.73).abs() < 0.01,
            "statistics untouched: {}",
            out[0]
        );
    }

    #[test]
    fn merged_statistics_equal_one_pass() {
        let (mut a, mut b, mut all) = (
            Standardizer::new(1),
            Standardizer::new(1),
            Standardizer::new(1),
        );
        for i in 0..100 {
            let v = [(i * i % 17) as f32];
            all.observe(&v);
            if i % 3 == 0 {
                a.observe(&v);
            } else {
                b.observe(&v);
            }
        }
        a.merge(&b);
        assert!((a.mean[0] - all.mean[0]).abs() < 1e-9);
        assert!((a.m2[0] - all.m2[0]).abs() < 1e-6);
        assert_eq!(a.count, all.count);
    }
}
