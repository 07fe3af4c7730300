//! Calibration: the served score as a probability of fraud.
//!
//! A model trained with frauds weighted up (or genuine ones subsampled)
//! ranks well but overstates every probability, so a threshold of 0.5 does
//! not mean "more likely fraud than not". [`Calibrator`] learns Platt
//! scaling online from labelled outcomes: the served score is
//! `σ(a·z + b)`, `z` the log-odds of the model's raw score when the
//! transaction was scored. With `a > 0` (enforced) the map is increasing, so
//! the order of scores, and every rank metric, is the model's own.
//!
//! Each joined label adds its raw log-odds and outcome to per-bin sums
//! ([`BINS`] bins of log-odds over ±[`Z_RANGE`]); older labels weigh less,
//! halving every `half_life` labels, so the map follows a drifting model.
//! Every `refit_every` labels `a` and `b` are refit by Newton's method on the
//! bins' weighted means. Until the bins hold `min_frauds` frauds and
//! `min_genuine` genuine labels (by weight) the prior map is served: `a = 1`
//! and `b` the log of the odds factor the class weighting put into the
//! model (`-ln positive_weight`, or `ln negative_rate`), so scores are on
//! one scale from the first transaction on and pooled metrics compare
//! them fairly. The state
//! is about 2 KiB, checkpointed with the model; the cost per label is O(1)
//! and per refit O([`BINS`]).

use serde::{Deserialize, Serialize};

/// Bins of raw log-odds.
pub const BINS: usize = 64;
/// Raw log-odds are clamped to ±this before binning and mapping.
pub const Z_RANGE: f64 = 12.0;
/// Bin weights are rescaled before the per-label weight exceeds this.
const RESCALE_AT: f64 = 1e150;

/// Settings of [`Calibrator`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationConfig {
    /// Labels after which a label's weight has halved.
    pub half_life: f64,
    /// Labels between refits of the map.
    pub refit_every: u32,
    /// Frauds (by weight) before the map is served.
    pub min_frauds: f64,
    /// Genuine labels (by weight) before the map is served.
    pub min_genuine: f64,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        match crate::config::PLATT {
            crate::config::Calibration::Platt(c) => c,
            _ => unreachable!("PLATT is Platt scaling"),
        }
    }
}

/// Weighted sums of one bin, per class: weight and weighted log-odds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Bin {
    fraud: f64,
    fraud_z: f64,
    genuine: f64,
    genuine_z: f64,
}

/// Online Platt scaling of raw scores (see the module doc).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibrator {
    cfg: CalibrationConfig,
    bins: Vec<Bin>,
    /// Weight of the next label; grows by `growth` per label, so older
    /// labels weigh relatively less without touching every bin.
    weight: f64,
    /// `2^(1 / half_life)`.
    growth: f64,
    a: f64,
    b: f64,
    /// Whether `a`, `b` were fit on enough labels to be served.
    fitted: bool,
    since_fit: u32,
    /// Whether labels refit the map (Platt scaling) or it stays the prior.
    adapts: bool,
}

/// Log-odds of a probability, clamped to ±[`Z_RANGE`].
pub fn log_odds(p: f64) -> f64 {
    let p = if p.is_nan() { 0.5 } else { p };
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    (p / (1.0 - p)).ln().clamp(-Z_RANGE, Z_RANGE)
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Ridge toward the identity map in the refit, for stability.
const RIDGE: f64 = 1e-3;

/// Weighted log loss of the map `(a, b)` on `(z, y, weight)` points, with
/// the refit's ridge.
fn log_loss(points: &[(f64, f64, f64)], a: f64, b: f64) -> f64 {
    let mut l = 0.5 * RIDGE * ((a - 1.0) * (a - 1.0) + b * b);
    for &(z, y, w) in points {
        let m = a * z + b;
        // log(1 + e^m) - y·m, computed without overflow.
        let softplus = if m > 0.0 {
            m + (-m).exp().ln_1p()
        } else {
            m.exp().ln_1p()
        };
        l += w * (softplus - y * m);
    }
    l
}

impl Calibrator {
    /// Serving `σ(z + prior_b)` until enough labels were seen.
    pub fn new(cfg: CalibrationConfig, prior_b: f64) -> Self {
        Calibrator {
            cfg,
            bins: vec![Bin::default(); BINS],
            weight: 1.0,
            growth: 2f64.powf(1.0 / cfg.half_life),
            a: 1.0,
            b: prior_b,
            fitted: false,
            since_fit: 0,
            adapts: true,
        }
    }

    /// The calibrator `calibration` asks for, for a model whose class
    /// weighting shifted its log-odds by `-prior_b`; `None` for the raw
    /// score.
    pub fn of(calibration: crate::config::Calibration, prior_b: f64) -> Option<Self> {
        use crate::config::Calibration;
        match calibration {
            Calibration::None => None,
            Calibration::Weights => Some(Calibrator {
                adapts: false,
                ..Calibrator::new(CalibrationConfig::default(), prior_b)
            }),
            Calibration::Platt(cfg) => Some(Calibrator::new(cfg, prior_b)),
        }
    }

    /// Whether labels refit the map.
    pub fn adapts(&self) -> bool {
        self.adapts
    }

    /// The served probability for a raw score.
    #[inline]
    pub fn apply(&self, raw: f64) -> f64 {
        sigmoid(self.a * log_odds(raw) + self.b)
    }

    /// Learn from one labelled transaction scored `raw`.
    pub fn learn(&mut self, raw: f64, is_fraud: bool) {
        let z = log_odds(raw);
        let i = (((z + Z_RANGE) / (2.0 * Z_RANGE)) * BINS as f64) as usize;
        let bin = &mut self.bins[i.min(BINS - 1)];
        let w = self.weight;
        if is_fraud {
            bin.fraud += w;
            bin.fraud_z += w * z;
        } else {
            bin.genuine += w;
            bin.genuine_z += w * z;
        }
        self.weight *= self.growth;
        if self.weight > RESCALE_AT {
            self.rescale();
        }
        self.since_fit += 1;
        if self.since_fit >= self.cfg.refit_every {
            self.since_fit = 0;
            self.refit();
        }
    }

    /// Divide every weight by the current label weight (relative weights
    /// are unchanged; the numbers stay far from overflow).
    fn rescale(&mut self) {
        let s = self.weight;
        for b in &mut self.bins {
            b.fraud /= s;
            b.fraud_z /= s;
            b.genuine /= s;
            b.genuine_z /= s;
        }
        self.weight = 1.0;
    }

    /// Refit `a`, `b` on the bins (Newton's method on the weighted log
    /// loss, each class of each bin at its mean log-odds); served once the
    /// bins hold enough of both classes.
    pub fn refit(&mut self) {
        // Weights relative to the newest label's, so the thresholds below
        // count labels.
        let scale = self.weight;
        let (mut frauds, mut genuine) = (0.0, 0.0);
        let mut points: Vec<(f64, f64, f64)> = Vec::with_capacity(2 * BINS);
        for b in &self.bins {
            if b.fraud > 0.0 {
                points.push((b.fraud_z / b.fraud, 1.0, b.fraud / scale));
                frauds += b.fraud / scale;
            }
            if b.genuine > 0.0 {
                points.push((b.genuine_z / b.genuine, 0.0, b.genuine / scale));
                genuine += b.genuine / scale;
            }
        }
        if frauds < self.cfg.min_frauds || genuine < self.cfg.min_genuine {
            return;
        }
        let (mut a, mut b) = (self.a, self.b);
        let mut loss = log_loss(&points, a, b);
        for _ in 0..50 {
            let (mut ga, mut gb) = (RIDGE * (a - 1.0), RIDGE * b);
            let (mut haa, mut hab, mut hbb) = (RIDGE, 0.0, RIDGE);
            for &(z, y, w) in &points {
                let p = sigmoid(a * z + b);
                let r = w * (p - y);
                ga += r * z;
                gb += r;
                let v = w * p * (1.0 - p);
                haa += v * z * z;
                hab += v * z;
                hbb += v;
            }
            let det = haa * hbb - hab * hab;
            if !(det.is_finite() && det > 0.0) {
                break;
            }
            let da = (hbb * ga - hab * gb) / det;
            let db = (haa * gb - hab * ga) / det;
            // Damped: halve the step until the loss falls (a full Newton
            // step can overshoot far from the optimum).
            let mut t = 1.0;
            let mut moved = false;
            for _ in 0..30 {
                let (na, nb) = (
                    (a - t * da).clamp(0.05, 20.0),
                    (b - t * db).clamp(-50.0, 50.0),
                );
                let nl = log_loss(&points, na, nb);
                if nl <= loss {
                    (a, b, loss, moved) = (na, nb, nl, true);
                    break;
                }
                t *= 0.5;
            }
            if !moved || (t * da).abs() < 1e-9 && (t * db).abs() < 1e-9 {
                break;
            }
        }
        if a.is_finite() && b.is_finite() {
            self.a = a;
            self.b = b;
            self.fitted = true;
        }
    }

    /// The map `(a, b)` once fit on labels, `None` before (the prior is
    /// served).
    pub fn map(&self) -> Option<(f64, f64)> {
        self.fitted.then_some((self.a, self.b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Raw scores that overstate: the true probability is σ(0.5·z - 2)
    /// where the model says σ(z).
    fn overstated(n: usize, seed: u64) -> Vec<(f64, bool)> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let z: f64 = rng.gen_range(-8.0..4.0);
                let truth = sigmoid(0.5 * z - 2.0);
                (sigmoid(z), rng.gen_bool(truth))
            })
            .collect()
    }

    #[test]
    fn it_learns_the_map_that_makes_scores_probabilities() {
        let mut c = Calibrator::new(CalibrationConfig::default(), 0.0);
        assert!((c.apply(0.7) - 0.7).abs() < 1e-12, "the prior until fitted");
        for (raw, y) in overstated(200_000, 1) {
            c.learn(raw, y);
        }
        let (a, b) = c.map().expect("fitted");
        assert!(
            (a - 0.5).abs() < 0.05 && (b + 2.0).abs() < 0.15,
            "a {a}, b {b}"
        );
        let z: f64 = 2.0;
        assert!((c.apply(sigmoid(z)) - sigmoid(0.5 * z - 2.0)).abs() < 0.02);
    }

    #[test]
    fn the_map_keeps_the_order_of_scores() {
        let mut c = Calibrator::new(CalibrationConfig::default(), 0.0);
        // Outcomes that anti-correlate with the score would want a < 0.
        for i in 0..50_000u32 {
            let raw = f64::from(i % 100) / 100.0;
            c.learn(raw, raw < 0.3 && i % 3 == 0);
        }
        assert!(c.map().expect("fitted").0 > 0.0);
        let served: Vec<f64> = (1..100).map(|i| c.apply(f64::from(i) / 100.0)).collect();
        assert!(served.windows(2).all(|w| w[0] <= w[1]), "{served:?}");
    }

    #[test]
    fn too_few_frauds_serve_the_prior() {
        // A model whose frauds weighed 4: odds a quarter of its own.
        let mut c = Calibrator::new(CalibrationConfig::default(), -(4f64.ln()));
        for i in 0..10_000 {
            c.learn(0.2, i < 10);
        }
        assert_eq!(c.map(), None);
        assert!((c.apply(0.2) - 0.25 / 4.25).abs() < 1e-9);
    }

    #[test]
    fn old_labels_fade() {
        let cfg = CalibrationConfig {
            half_life: 2_000.0,
            min_genuine: 300.0,
            ..CalibrationConfig::default()
        };
        let mut c = Calibrator::new(cfg, 0.0);
        // First a model that understates, then one that overstates: the
        // map follows the second.
        for (raw, y) in overstated(100_000, 2) {
            c.learn(sigmoid(0.25 * log_odds(raw)), y);
        }
        for (raw, y) in overstated(100_000, 3) {
            c.learn(raw, y);
        }
        let (a, _) = c.map().unwrap();
        assert!((a - 0.5).abs() < 0.1, "a {a}");
    }
}
