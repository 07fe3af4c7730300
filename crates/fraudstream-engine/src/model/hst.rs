//! Half-Space Trees: owns a streaming, unsupervised anomaly detector over
//! dense feature vectors scaled to [0, 1].
//!
//! Tan, Ting & Liu, "Fast Anomaly Detection for Streaming Data" (IJCAI 2011),
//! with the tree construction and scoring of River's
//! `anomaly.HalfSpaceTrees`. Each tree is a complete binary tree of
//! `height` splits stored as flat arrays (node `i` has children `2i + 1` and
//! `2i + 2`); each split picks a random feature and a random threshold
//! uniformly inside the middle 70% of the node's current range of that
//! feature (River's padded trees; the range starts at [0, 1]). Every node
//! counts the points of the latest window that reach it (`l_mass`); when the
//! window completes those counts become the reference profile (`r_mass`)
//! that scores are computed from, and counting restarts.

use super::AnomalyDetector;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Fraction of a node's range on each side where no split is placed, so that
/// splits do not produce near-empty half-spaces (River's `padding`).
const PADDING: f64 = 0.15;
/// Largest supported `height`: a tree has `2^(height + 1) - 1` nodes.
pub const MAX_HEIGHT: u32 = 20;
/// Most nodes an ensemble may hold, over all its trees: each costs about
/// 12 bytes (two masses, and a split for every internal node), so about
/// 768 MiB, all of it allocated when the ensemble is built.
pub const MAX_NODES: usize = 1 << 26;
/// Trees that descend side by side in [`HalfSpaceTrees::score_and_learn`].
const LANES: usize = 32;

/// Shape of a [`HalfSpaceTrees`] ensemble.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HstConfig {
    /// Number of trees.
    pub trees: usize,
    /// Splits from the root to a leaf (depth of the leaves).
    pub height: u32,
    /// Updates per mass-profile window.
    pub window: u64,
    /// Seed of the random tree structure.
    pub seed: u64,
}

impl HstConfig {
    /// Nodes of the whole ensemble: `trees × (2^(height + 1) - 1)`
    /// (saturating).
    pub fn nodes(&self) -> usize {
        let per_tree = 1usize
            .checked_shl(self.height + 1)
            .map_or(usize::MAX, |n| n - 1);
        self.trees.saturating_mul(per_tree)
    }
}

impl Default for HstConfig {
    fn default() -> Self {
        HstConfig {
            trees: 25,
            height: 8,
            window: 250,
            seed: 0,
        }
    }
}

/// An ensemble of half-space trees with reference and latest mass profiles.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HalfSpaceTrees {
    /// Features per input.
    dims: usize,
    cfg: HstConfig,
    /// Internal (split) nodes per tree: `2^height - 1`.
    internal: usize,
    /// Nodes per tree: `2^(height + 1) - 1`.
    nodes: usize,
    /// Split feature of each internal node; tree `t`'s node `i` is at
    /// `t * internal + i`.
    feature: Vec<u32>,
    /// Split threshold of each internal node (values below go left).
    threshold: Vec<f32>,
    /// Reference mass of each node (last complete window); tree `t`'s node
    /// `i` is at `t * nodes + i`.
    r_mass: Vec<u32>,
    /// Latest mass of each node (current, incomplete window).
    l_mass: Vec<u32>,
    /// Updates in the current window.
    counter: u64,
    /// `feature` and `threshold` side by side, as the descents of
    /// [`score_and_learn`](Self::score_and_learn) read them (derived, built
    /// on first use).
    #[serde(skip)]
    splits: Vec<(u32, f32)>,
    /// Whether a reference window exists.
    ready: bool,
}

impl HalfSpaceTrees {
    /// A fresh ensemble over `dims` features, each expected roughly in
    /// [0, 1] after the caller's scaling: inputs are clamped to [0, 1], so
    /// everything beyond an edge lands in that edge's half-spaces.
    ///
    /// # Panics
    /// If `dims` or `cfg.trees` is 0, `cfg.window` is 0 or above
    /// `u32::MAX`, `cfg.height` is above [`MAX_HEIGHT`] or the ensemble
    /// above [`MAX_NODES`].
    pub fn new(dims: usize, cfg: HstConfig) -> Self {
        assert!(dims > 0, "HalfSpaceTrees needs at least one feature");
        assert!(dims <= u32::MAX as usize, "too many features");
        assert!(cfg.trees > 0, "HalfSpaceTrees needs at least one tree");
        assert!(
            cfg.window > 0 && cfg.window <= u64::from(u32::MAX),
            "window must be in 1..=u32::MAX, got {}",
            cfg.window
        );
        assert!(
            cfg.height <= MAX_HEIGHT,
            "height must be at most {MAX_HEIGHT}, got {}",
            cfg.height
        );
        assert!(
            cfg.nodes() <= MAX_NODES,
            "at most {MAX_NODES} nodes in all trees, got {}",
            cfg.nodes()
        );
        let internal = (1usize << cfg.height) - 1;
        let nodes = (1usize << (cfg.height + 1)) - 1;
        let mut feature = vec![0u32; cfg.trees * internal];
        let mut threshold = vec![0f32; cfg.trees * internal];
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut limits = vec![(0.0f64, 1.0f64); dims];
        if internal > 0 {
            for (feat, thr) in feature
                .chunks_exact_mut(internal)
                .zip(threshold.chunks_exact_mut(internal))
            {
                build(&mut rng, &mut limits, feat, thr, 0);
            }
        }
        HalfSpaceTrees {
            dims,
            cfg,
            internal,
            nodes,
            feature,
            threshold,
            r_mass: vec![0; cfg.trees * nodes],
            l_mass: vec![0; cfg.trees * nodes],
            counter: 0,
            splits: Vec::new(),
            ready: false,
        }
    }

    /// Anomaly score of `x` in [0, 1] (higher = more anomalous), from the
    /// reference mass profile: `1 - s / s_max`, where `s` sums over trees
    /// `r_mass * 2^depth` of every node on `x`'s path down to and including
    /// the first one whose mass is below `0.1 * window` (River's scoring).
    /// Returns 0.0 until [`ready`](Self::ready): with no reference profile
    /// there is no evidence of anomaly, and 0 raises no alerts in warm-up.
    ///
    /// # Panics
    /// If `x.len()` differs from the `dims` given to [`new`](Self::new).
    pub fn score(&self, x: &[f32]) -> f64 {
        self.check_len(x);
        if !self.ready {
            return 0.0;
        }
        let limit = 0.1 * self.cfg.window as f64;
        let mut s = 0.0;
        for t in 0..self.cfg.trees {
            let masses = &self.r_mass[t * self.nodes..][..self.nodes];
            let mut i = 0;
            let mut weight = 1.0;
            loop {
                let m = f64::from(masses[i]);
                s += m * weight;
                if m < limit || i >= self.internal {
                    break;
                }
                i = self.child(t, i, x);
                weight *= 2.0;
            }
        }
        self.normalised(s)
    }

    /// A score from the mass-weighted sum `s` of the descents: 1 − `s` over
    /// its largest possible value, in [0, 1].
    fn normalised(&self, s: f64) -> f64 {
        let max = self.cfg.trees as f64
            * self.cfg.window as f64
            * ((1u64 << (self.cfg.height + 1)) - 1) as f64;
        (1.0 - s / max).clamp(0.0, 1.0)
    }

    /// One more point counted: every `window` of them the latest profile
    /// becomes the reference and counting restarts.
    fn counted(&mut self) {
        self.counter += 1;
        if self.counter == self.cfg.window {
            // Swap instead of copy: the old reference is discarded anyway.
            std::mem::swap(&mut self.r_mass, &mut self.l_mass);
            self.l_mass.fill(0);
            self.counter = 0;
            self.ready = true;
        }
    }

    /// Count `x` into the latest mass profile; every `window` updates the
    /// latest profile becomes the reference and counting restarts.
    ///
    /// # Panics
    /// If `x.len()` differs from the `dims` given to [`new`](Self::new).
    pub fn learn(&mut self, x: &[f32]) {
        self.check_len(x);
        for t in 0..self.cfg.trees {
            let base = t * self.nodes;
            let mut i = 0;
            loop {
                // Cannot overflow: a node counts at most `window <= u32::MAX`.
                self.l_mass[base + i] += 1;
                if i >= self.internal {
                    break;
                }
                i = self.child(t, i, x);
            }
        }
        self.counted();
    }

    /// [`score`](Self::score) of `x`, then [`learn`](Self::learn) it, in
    /// one descent per tree (both follow the same path; the score stops
    /// early, the count goes to the leaf). The same result as the two calls.
    ///
    /// # Panics
    /// If `x.len()` differs from the `dims` given to [`new`](Self::new).
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub fn score_and_learn(&mut self, x: &[f32]) -> f64 {
        self.check_len(x);
        if self.splits.len() != self.feature.len() {
            self.splits = self
                .feature
                .iter()
                .copied()
                .zip(self.threshold.iter().copied())
                .collect();
        }
        let height = self.cfg.height as usize;
        // The trees descend in lockstep, `LANES` at a time: each level's
        // loads are independent across trees, so they overlap instead of
        // waiting on one another, and no branch depends on the data.
        //
        // The score sums, in integers, each node's mass shifted by its depth
        // (its weight `2^depth`) down to the first node below the mass
        // limit; `live` masks out the rest (all of it when there is no
        // reference yet). At most `trees * window * 2^(height + 1)` < 2^63,
        // and exact in f64 below 2^53, as the sum in `score` is.
        //
        // No clamp to [0, 1] here, unlike [`child`](Self::child): every
        // threshold is in (0, 1] (see `build`), so a clamped value is below
        // a threshold exactly when the value itself is (NaN in neither).
        let limit = (self.cfg.window as f64 * 0.1).ceil() as u64;
        let (nodes, internal) = (self.nodes, self.internal);
        let splits = &self.splits;
        let (r_mass, l_mass) = (&self.r_mass, &mut self.l_mass);
        let start = if self.ready { u64::MAX } else { 0 };
        let mut s = 0u64;
        for first in (0..self.cfg.trees).step_by(LANES) {
            let lanes = LANES.min(self.cfg.trees - first);
            let mut mass = [0usize; LANES];
            let mut split = [0usize; LANES];
            for j in 0..lanes {
                mass[j] = (first + j) * nodes;
                split[j] = (first + j) * internal;
            }
            let mut node = [0usize; LANES];
            let mut live = [start; LANES];
            for depth in 0..height {
                for j in 0..lanes {
                    let i = node[j];
                    let k = mass[j] + i;
                    let m = u64::from(r_mass[k]);
                    s += (m & live[j]) << depth;
                    live[j] &= 0u64.wrapping_sub(u64::from(m >= limit));
                    l_mass[k] += 1;
                    let (f, t) = splits[split[j] + i];
                    node[j] = 2 * i + 1 + usize::from(!(x[f as usize] < t));
                }
            }
            for j in 0..lanes {
                let k = mass[j] + node[j];
                s += (u64::from(r_mass[k]) & live[j]) << height;
                l_mass[k] += 1;
            }
        }
        let s = s as f64;
        let score = if self.ready { self.normalised(s) } else { 0.0 };
        self.counted();
        score
    }

    /// Whether a reference window exists (scores are meaningful).
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Features per input.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The configuration this ensemble was built with.
    pub fn config(&self) -> &HstConfig {
        &self.cfg
    }

    /// Child of internal node `i` of tree `t` that `x` falls into. NaN
    /// compares false and goes right.
    fn child(&self, t: usize, i: usize, x: &[f32]) -> usize {
        let k = t * self.internal + i;
        let v = x[self.feature[k] as usize].clamp(0.0, 1.0);
        if v < self.threshold[k] {
            2 * i + 1
        } else {
            2 * i + 2
        }
    }

    fn check_len(&self, x: &[f32]) {
        assert_eq!(
            x.len(),
            self.dims,
            "HalfSpaceTrees input has {} features, expected {}",
            x.len(),
            self.dims
        );
    }
}

/// Inputs are dense values scaled to [0, 1]; see [`HalfSpaceTrees::score`]
/// and [`HalfSpaceTrees::learn`].
impl AnomalyDetector for HalfSpaceTrees {
    type Input = [f32];

    fn score_one(&mut self, x: &[f32]) -> f64 {
        self.score(x)
    }

    fn learn_one(&mut self, x: &[f32]) {
        self.learn(x)
    }
}

/// Fill the splits of the subtree rooted at internal node `i` (pre-order, as
/// River), narrowing `limits` on the way down and restoring it on the way up.
fn build(
    rng: &mut ChaCha8Rng,
    limits: &mut [(f64, f64)],
    feature: &mut [u32],
    threshold: &mut [f32],
    i: usize,
) {
    if i >= feature.len() {
        return;
    }
    let f = rng.gen_range(0..limits.len());
    let (a, b) = limits[f];
    let (lo, hi) = (a + PADDING * (b - a), b - PADDING * (b - a));
    let at = lo + rng.gen::<f64>() * (hi - lo);
    // In range: `limits.len()` was checked against `u32::MAX` in `new`.
    feature[i] = f as u32;
    threshold[i] = at as f32;
    // `score_and_learn` compares unclamped values on this: in (0, 1].
    debug_assert!(threshold[i] > 0.0 && threshold[i] <= 1.0);
    limits[f] = (a, at);
    build(rng, limits, feature, threshold, 2 * i + 1);
    limits[f] = (at, b);
    build(rng, limits, feature, threshold, 2 * i + 2);
    limits[f] = (a, b);
}

#[cfg(test)]
mod tests {
    #[test]
    fn score_and_learn_is_score_then_learn() {
        let cfg = HstConfig {
            trees: 5,
            height: 6,
            window: 50,
            seed: 3,
        };
        let mut a = HalfSpaceTrees::new(4, cfg);
        let mut b = a.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for i in 0..400 {
            let mut x: Vec<f32> = (0..4).map(|_| rng.gen::<f32>() * 0.3).collect();
            if i % 37 == 0 {
                x[2] = 0.95; // a rare point
            }
            if i % 41 == 0 {
                // Out of range and NaN: clamped by `child`, not by the
                // lockstep descent; both must go the same way.
                x[0] = -0.5;
                x[1] = 7.0;
                x[3] = f32::NAN;
            }
            let s = a.score(&x);
            a.learn(&x);
            assert_eq!(s.to_bits(), b.score_and_learn(&x).to_bits(), "point {i}");
        }
        assert!(a.ready());
        assert_eq!(a.l_mass, b.l_mass);
        assert_eq!(a.r_mass, b.r_mass);
    }

    use super::*;
    use proptest::prelude::*;
    use rand::Rng;

    fn cfg(seed: u64) -> HstConfig {
        HstConfig {
            seed,
            ..HstConfig::default()
        }
    }

    /// A point of a tight cluster around (0.3, 0.3).
    fn inlier(rng: &mut ChaCha8Rng) -> [f32; 2] {
        let mut p = [0f32; 2];
        for v in &mut p {
            // Sum of uniforms: roughly normal, sd about 0.02.
            let u: f64 = (0..4).map(|_| rng.gen::<f64>() - 0.5).sum();
            *v = (0.3 + 0.035 * u) as f32;
        }
        p
    }

    fn trained(seed: u64, windows: u64) -> (HalfSpaceTrees, ChaCha8Rng) {
        let mut h = HalfSpaceTrees::new(2, cfg(seed));
        let mut rng = ChaCha8Rng::seed_from_u64(100);
        for _ in 0..windows * h.config().window {
            let p = inlier(&mut rng);
            h.learn(&p);
        }
        (h, rng)
    }

    #[test]
    fn scores_zero_until_the_first_window_completes() {
        let mut h = HalfSpaceTrees::new(
            2,
            HstConfig {
                window: 10,
                ..cfg(1)
            },
        );
        for _ in 0..9 {
            h.learn(&[0.3, 0.3]);
            assert!(!h.ready());
            assert_eq!(h.score(&[0.9, 0.9]), 0.0);
        }
        h.learn(&[0.3, 0.3]);
        assert!(h.ready());
        assert!(h.score(&[0.9, 0.9]) > h.score(&[0.3, 0.3]));
        // Every point passes the root of every tree.
        assert_eq!(h.r_mass[0], 10);
        assert!(h.l_mass.iter().all(|&m| m == 0));
    }

    #[test]
    fn outlier_scores_above_the_inliers() {
        let (h, mut rng) = trained(42, 4);
        let mut scores: Vec<f64> = (0..1000).map(|_| h.score(&inlier(&mut rng))).collect();
        scores.sort_by(f64::total_cmp);
        let p95 = scores[949];
        let outlier = h.score(&[0.9, 0.9]);
        assert!(outlier > p95, "outlier {outlier} <= p95 {p95}");
        assert!(outlier > 0.9, "outlier {outlier}");
    }

    #[test]
    fn same_seed_same_scores_other_seed_differs() {
        let (a, _) = trained(9, 2);
        let (b, _) = trained(9, 2);
        let (c, _) = trained(10, 2);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut differs = false;
        for _ in 0..200 {
            let p = [rng.gen::<f32>(), rng.gen::<f32>()];
            assert_eq!(a.score(&p).to_bits(), b.score(&p).to_bits());
            differs |= a.score(&p) != c.score(&p);
        }
        assert!(differs, "seeds 9 and 10 built the same trees");
    }

    #[test]
    fn serde_round_trip_gives_identical_scores() {
        let (mut a, mut rng) = trained(3, 2);
        for _ in 0..100 {
            a.learn(&inlier(&mut rng)); // a partial latest window too
        }
        let json = serde_json::to_string(&a).unwrap();
        let mut b: HalfSpaceTrees = serde_json::from_str(&json).unwrap();
        for _ in 0..500 {
            let p = [rng.gen::<f32>(), rng.gen::<f32>()];
            assert_eq!(a.score(&p).to_bits(), b.score(&p).to_bits());
            a.learn(&p);
            b.learn(&p);
        }
        assert_eq!(a.r_mass, b.r_mass);
        assert_eq!(a.l_mass, b.l_mass);
    }

    #[test]
    fn out_of_range_and_nan_inputs_still_score_in_range() {
        let (h, _) = trained(4, 1);
        for p in [
            [f32::INFINITY, f32::NEG_INFINITY],
            [f32::NAN, 0.3],
            [-5.0, 7.0],
        ] {
            let s = h.score(&p);
            assert!((0.0..=1.0).contains(&s), "{p:?} -> {s}");
        }
        // Clamping: beyond the edge is the edge.
        assert_eq!(h.score(&[-5.0, 7.0]), h.score(&[0.0, 1.0]));
    }

    #[test]
    fn height_zero_is_a_single_leaf() {
        let mut h = HalfSpaceTrees::new(
            1,
            HstConfig {
                height: 0,
                window: 3,
                ..cfg(0)
            },
        );
        for _ in 0..3 {
            h.learn(&[0.5]);
        }
        assert_eq!(h.score(&[0.1]), 0.0);
    }

    #[test]
    #[should_panic(expected = "expected 2")]
    fn wrong_dims_panics() {
        HalfSpaceTrees::new(2, cfg(0)).score(&[0.1]);
    }

    fn finite() -> impl Strategy<Value = f32> {
        prop::num::f32::NORMAL | prop::num::f32::SUBNORMAL | prop::num::f32::ZERO
    }

    proptest! {
        #[test]
        fn scores_are_finite_and_in_unit_interval(
            seed in any::<u64>(),
            stream in prop::collection::vec(prop::collection::vec(finite(), 3), 1..80),
            probe in prop::collection::vec(finite(), 3),
        ) {
            let mut h = HalfSpaceTrees::new(
                3,
                HstConfig { trees: 5, height: 6, window: 16, seed },
            );
            for x in &stream {
                let s = h.score(x);
                prop_assert!(s.is_finite() && (0.0..=1.0).contains(&s));
                h.learn(x);
            }
            let s = h.score(&probe);
            prop_assert!(s.is_finite() && (0.0..=1.0).contains(&s));
            prop_assert_eq!(h.ready(), stream.len() >= 16);
        }
    }
}
