//! Adaptive random forest of Hoeffding trees: owns an online tree ensemble
//! for fraud scoring, its per-tree drift detectors and its path-based
//! (Saabas) explanations.
//!
//! After Gomes et al., "Adaptive random forests for evolving data stream
//! classification" (Machine Learning 2017), simplified:
//!
//! - **Online bagging.** Each tree learns each example `k ~ Poisson(lambda)`
//!   times (`lambda = 6` as in ARF); frauds are further weighted by the
//!   caller's class weight (the topology's `model.imbalance`), so the rare
//!   class is not drowned out.
//! - **Hoeffding trees** (Domingos & Hulten, VFDT). Each leaf draws, when
//!   it is created, a random subspace of `subspace` features (as ARF's
//!   leaves do) and keeps, per feature of it and class, the weight, mean and
//!   variance of the values that reached it (a Gaussian estimator, as
//!   River's default numeric observer). Every `grace_period` of weight it
//!   evaluates `candidates` thresholds on each of its features (information
//!   gain, class split estimated from the Gaussians) and splits when the
//!   best beats the second best by the Hoeffding bound, or the bound falls
//!   under `tie_threshold`. Children start from their parent's probability
//!   (an m-estimate). (Leaves of checkpoints written before 2026-11-30 keep
//!   every feature and draw a subspace at each attempt.)
//! - **Bounded cost.** Depth is capped at `max_depth` and leaves per tree at
//!   `max_leaves`: predicting is at most `trees * max_depth` comparisons,
//!   learning the same plus a statistics update of `8 * subspace` values
//!   per tree, and a split attempt `subspace * candidates` Gaussian CDFs.
//!   The trees descend side by side, a level at a time (`descend`), so
//!   their cache misses overlap.
//! - **Drift** (optional, `drift_delta > 0`). Each tree feeds its absolute
//!   error `|y - p|` on every labelled example to two ADWINs, a warning one
//!   (10× the confidence) and a drift one. Only rises count. A warning
//!   starts a background tree that learns alongside; a drift replaces the
//!   tree by its background tree (or a fresh one), as in ARF. A tree's vote
//!   is weighted by its maturity, `min(1, examples / warm_up)`.
//!
//! **Explanations** (Saabas, "Interpreting random forests", 2014): every node
//! keeps the fraud probability of its leaf when it was split; a feature's
//! contribution is the sum of the probability changes along each tree's path
//! at the nodes that split on it, averaged over trees (probability units).
//! This is an approximation of the trees' attribution (it ignores feature
//! interactions and depends on the split order), not an exact decomposition
//! of a margin as for the linear model; it sums to the forest's score minus
//! the mean root probability.
//!
//! Randomness (Poisson draws, subspaces) comes from one splitmix64 state in
//! the forest, advanced in label order, so the same labels in the same order
//! give the same forest. All state is plain data (serde).

use super::adwin::Adwin;
use super::splitmix;
use super::{Classifier, Explain};
use crate::event::Contribution;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// Settings of an [`AdaptiveForest`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForestConfig {
    /// Number of trees.
    pub trees: usize,
    /// Poisson rate of online bagging.
    pub lambda: f64,
    /// Example weight at a leaf between two split attempts.
    pub grace_period: f64,
    /// Confidence `delta` of the Hoeffding bound.
    pub split_confidence: f64,
    /// Split anyway once the bound is below this (ties).
    pub tie_threshold: f64,
    /// Deepest leaf (root is depth 0).
    pub max_depth: u32,
    /// Most leaves per tree.
    pub max_leaves: usize,
    /// Features examined per split attempt; 0 = `sqrt(features)` (ARF).
    pub subspace: usize,
    /// Thresholds tried per feature.
    pub candidates: usize,
    /// ADWIN confidence of the per-tree error detectors; 0 disables them.
    pub drift_delta: f64,
    /// Examples before a tree's vote counts fully.
    pub warm_up: f64,
    /// Seed of the Poisson draws and subspaces.
    pub seed: u64,
}

impl Default for ForestConfig {
    fn default() -> Self {
        ForestConfig {
            trees: 10,
            lambda: 6.0,
            grace_period: 200.0,
            split_confidence: 1e-7,
            tie_threshold: 0.05,
            max_depth: 14,
            max_leaves: 2000,
            subspace: 0,
            candidates: 16,
            // Off by default: measured on the default simulation, per-tree
            // resets (even at 1e-9) cost more than they bring (docs/benchmarks.md).
            drift_delta: 0.0,
            warm_up: 2000.0,
            seed: 7,
        }
    }
}

/// Prior fraud probability of a root leaf.
const ROOT_PRIOR: f64 = 0.01;
/// No node: the children of a leaf.
const NONE: u32 = u32::MAX;
/// Statistics kept per feature at a leaf: weight, mean, M2 of each class,
/// then min and max over both classes.
const STATS: usize = 8;

/// A node of a tree: internal when `leaf == NONE`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Node {
    feature: u32,
    threshold: f32,
    left: u32,
    right: u32,
    /// Index of the leaf statistics, or `NONE` for an internal node.
    leaf: u32,
    /// Fraud probability of this node's leaf when it was split (internal).
    value: f64,
}

/// Weight of a leaf's prior (its parent's probability) in its estimate.
const PRIOR_WEIGHT: f64 = 50.0;

/// Statistics of one leaf.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Leaf {
    /// The features this leaf keeps statistics of and may split on (its
    /// random subspace, drawn when it is created, as in ARF), ascending.
    /// Empty: every feature (leaves of checkpoints written before).
    #[serde(default)]
    features: Vec<u32>,
    /// Class weights seen here.
    counts: [f64; 2],
    /// Fraud probability of the parent when this leaf was created.
    prior: f64,
    /// Per-feature Gaussian statistics (`STATS` per feature).
    stats: Vec<f64>,
    /// Weight seen since the last split attempt.
    since_attempt: f64,
    /// Weight observed here (not inherited).
    seen: f64,
    depth: u32,
}

impl Leaf {
    fn new(features: Vec<u32>, prior: f64, depth: u32) -> Self {
        let mut stats = vec![0.0; features.len() * STATS];
        for s in stats.chunks_exact_mut(STATS) {
            s[6] = f64::MAX;
            s[7] = f64::MIN;
        }
        Leaf {
            features,
            counts: [0.0; 2],
            prior,
            stats,
            since_attempt: 0.0,
            seen: 0.0,
            depth,
        }
    }

    /// An m-estimate: a new leaf starts at its parent's probability and
    /// moves to its own class weights as they accumulate. (Inheriting the
    /// split's Gaussian estimate of the class counts instead, as VFDT
    /// implementations do, gave new leaves wildly wrong probabilities on
    /// heavy-tailed features.)
    fn probability(&self) -> f64 {
        (self.counts[1] + PRIOR_WEIGHT * self.prior)
            / (self.counts[0] + self.counts[1] + PRIOR_WEIGHT)
    }
}

/// One Hoeffding tree with its drift detector.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Tree {
    nodes: Vec<Node>,
    leaves: Vec<Leaf>,
    /// Examples learnt since the tree was (re)created.
    examples: f64,
    detector: Option<Adwin>,
    /// The same test at 10× the confidence: a warning.
    warning: Option<Adwin>,
    /// Trained from a warning on; replaces the tree on a drift.
    background: Option<Box<Tree>>,
    /// `nodes` as the descent reads them, 12 bytes a node instead of 32, so
    /// the descents of every tree stay in cache (they were most of the
    /// forest's time). Derived state: rebuilt by [`Tree::sync`] after a
    /// restore; until then descents read `nodes`.
    #[serde(skip)]
    hops: Vec<Hop>,
}

/// A node as the descent reads it: an internal node goes to `next` when the
/// value of `feature` is at most `threshold`, else to `next + 1` (children
/// are created side by side); a leaf has `feature == NONE` and `next` is
/// its leaf slot.
#[derive(Clone, Copy, Debug)]
struct Hop {
    threshold: f32,
    feature: u32,
    next: u32,
}

impl Hop {
    fn of(n: &Node) -> Self {
        if n.leaf != NONE {
            Hop {
                threshold: 0.0,
                feature: NONE,
                next: n.leaf,
            }
        } else {
            Hop {
                threshold: n.threshold,
                feature: n.feature,
                next: n.left,
            }
        }
    }
}

impl Tree {
    /// Rebuild `hops` from `nodes` when they differ in length (a restored
    /// tree). Left empty if some children are not side by side.
    fn sync(&mut self) {
        if self.hops.len() == self.nodes.len() {
            return;
        }
        self.hops.clear();
        if self
            .nodes
            .iter()
            .all(|n| n.leaf != NONE || n.right == n.left.wrapping_add(1))
        {
            self.hops.extend(self.nodes.iter().map(Hop::of));
        }
    }

    /// Index of the node `x` ends in (through `hops` when in step). NaN
    /// goes right, as in [`leaf_node`](Self::leaf_node).
    #[inline]
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    fn node_of(&self, x: &[f32]) -> usize {
        if self.hops.len() != self.nodes.len() {
            return self.leaf_node(x);
        }
        let mut i = 0usize;
        loop {
            let h = self.hops[i];
            if h.feature == NONE {
                return i;
            }
            i = h.next as usize + usize::from(!(x[h.feature as usize] <= h.threshold));
        }
    }

    /// Leaf slot `x` ends in.
    #[inline]
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    fn leaf_of(&self, x: &[f32]) -> usize {
        if self.hops.len() != self.nodes.len() {
            return self.nodes[self.leaf_node(x)].leaf as usize;
        }
        let mut h = self.hops[0];
        while h.feature != NONE {
            let i = h.next as usize + usize::from(!(x[h.feature as usize] <= h.threshold));
            h = self.hops[i];
        }
        h.next as usize
    }

    fn new(dims: usize, cfg: &ForestConfig, rng: &mut u64) -> Self {
        Tree {
            nodes: vec![Node {
                feature: 0,
                threshold: 0.0,
                left: NONE,
                right: NONE,
                leaf: 0,
                value: 0.0,
            }],
            leaves: vec![Leaf::new(subspace(dims, cfg, rng), ROOT_PRIOR, 0)],
            examples: 0.0,
            detector: (cfg.drift_delta > 0.0).then(|| Adwin::new(cfg.drift_delta)),
            warning: (cfg.drift_delta > 0.0).then(|| Adwin::new((cfg.drift_delta * 10.0).min(0.5))),
            background: None,
            hops: vec![Hop {
                threshold: 0.0,
                feature: NONE,
                next: 0,
            }],
        }
    }

    /// Index of the node `x` ends in.
    #[inline]
    fn leaf_node(&self, x: &[f32]) -> usize {
        let mut i = 0usize;
        loop {
            let n = &self.nodes[i];
            if n.leaf != NONE {
                return i;
            }
            i = if x[n.feature as usize] <= n.threshold {
                n.left
            } else {
                n.right
            } as usize;
        }
    }

    #[inline]
    fn predict(&self, x: &[f32]) -> f64 {
        self.leaves[self.leaf_of(x)].probability()
    }
}

/// Trees that descend side by side (see [`descend`]).
const LANES: usize = 16;

/// The node and the leaf slot each of `trees` (at most [`LANES`]) ends in
/// for `x`, into `nodes` and `slots`. The trees go down one level at a time
/// together: each level's loads are independent across trees, so their
/// cache misses overlap instead of queueing tree after tree (the descents
/// were the forest's largest cost). The same nodes as [`Tree::node_of`].
#[allow(clippy::neg_cmp_op_on_partial_ord)]
fn descend(trees: &[Tree], x: &[f32], nodes: &mut [u32; LANES], slots: &mut [u32; LANES]) {
    debug_assert!(trees.len() <= LANES);
    if trees.iter().any(|t| t.hops.len() != t.nodes.len()) {
        for ((t, n), l) in trees.iter().zip(nodes.iter_mut()).zip(slots.iter_mut()) {
            *n = t.node_of(x) as u32;
            *l = t.nodes[*n as usize].leaf;
        }
        return;
    }
    nodes.fill(0);
    loop {
        let mut moved = false;
        for (t, n) in trees.iter().zip(nodes.iter_mut()) {
            let h = t.hops[*n as usize];
            if h.feature != NONE {
                *n = h.next + u32::from(!(x[h.feature as usize] <= h.threshold));
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    // A leaf's hop holds its slot: no load from the larger `nodes`.
    for ((t, &n), l) in trees.iter().zip(nodes.iter()).zip(slots.iter_mut()) {
        *l = t.hops[n as usize].next;
    }
}

/// Standard normal CDF (Abramowitz–Stegun 7.1.26 erf, |error| < 1.5e-7).
fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + y)
    } else {
        0.5 * (1.0 - y)
    }
}

fn entropy(a: f64, b: f64) -> f64 {
    let n = a + b;
    if n <= 0.0 {
        return 0.0;
    }
    let mut h = 0.0;
    for c in [a, b] {
        if c > 0.0 {
            let p = c / n;
            h -= p * p.log2();
        }
    }
    h
}

fn uniform(state: &mut u64) -> f64 {
    (splitmix(state) >> 11) as f64 / (1u64 << 53) as f64
}

/// Most a Poisson draw returns.
const POISSON_MAX: u32 = 64;

/// Cumulative Poisson probabilities `P(K <= k)` for `k` in
/// `0..=POISSON_MAX`, for [`poisson`]: computed once per forest rather than
/// an `exp` and a division per step of every draw (ten draws per label).
fn poisson_cdf(lambda: f64) -> Vec<f64> {
    let mut p = (-lambda).exp();
    let mut cdf = p;
    let mut out = vec![cdf];
    for k in 1..=POISSON_MAX {
        p *= lambda / k as f64;
        cdf += p;
        out.push(cdf);
    }
    out
}

/// Poisson draw by inversion of the table of [`poisson_cdf`] (fine for the
/// small rates of online bagging).
fn poisson(cdf: &[f64], state: &mut u64) -> u32 {
    let u = uniform(state);
    let mut k = 0u32;
    while k < POISSON_MAX && u > cdf[k as usize] {
        k += 1;
    }
    k
}

/// An adaptive random forest of Hoeffding trees over dense features.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdaptiveForest {
    cfg: ForestConfig,
    dims: usize,
    names: Vec<CompactString>,
    trees: Vec<Tree>,
    rng: u64,
    updates: u64,
    /// Trees replaced after a detected change, over the forest's life.
    resets: u64,
    /// Feature indices, shuffled for subspaces.
    #[serde(skip)]
    order: Vec<u32>,
    /// Per-feature contributions (explanations).
    #[serde(skip)]
    contrib: Vec<f64>,
    /// [`poisson_cdf`] of `cfg.lambda` (derived; built on first use).
    #[serde(skip)]
    poisson: Vec<f64>,
}

impl AdaptiveForest {
    /// A forest over the first `names.len()` dense features.
    pub fn new(names: Vec<CompactString>, cfg: ForestConfig) -> Self {
        let dims = names.len();
        assert!(dims > 0, "a forest needs features");
        assert!(cfg.trees > 0, "a forest needs trees");
        let mut rng = cfg.seed ^ 0x5EED_F0E5_7000_0000;
        AdaptiveForest {
            trees: (0..cfg.trees)
                .map(|_| Tree::new(dims, &cfg, &mut rng))
                .collect(),
            rng,
            cfg,
            dims,
            names,
            updates: 0,
            resets: 0,
            order: Vec::new(),
            contrib: Vec::new(),
            poisson: Vec::new(),
        }
    }

    /// Features per input.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Trees replaced after a detected change so far.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// Total leaves over all trees.
    pub fn leaves(&self) -> usize {
        self.trees.iter().map(|t| t.leaves.len()).sum()
    }

    /// Fraud score of `x` (its first `dims` values): the maturity-weighted
    /// mean of the trees' leaf probabilities.
    pub fn predict(&self, x: &[f32]) -> f64 {
        let x = &x[..self.dims];
        let (mut sum, mut weight) = (0.0, 0.0);
        let (mut nodes, mut slots) = ([0u32; LANES], [0u32; LANES]);
        for trees in self.trees.chunks(LANES) {
            descend(trees, x, &mut nodes, &mut slots);
            for (t, &l) in trees.iter().zip(&slots) {
                let w = (t.examples / self.cfg.warm_up).clamp(1e-3, 1.0);
                sum += w * t.leaves[l as usize].probability();
                weight += w;
            }
        }
        sum / weight
    }

    /// Learn one example with class weight `weight`; returns how many trees
    /// were replaced because their error drifted.
    pub fn learn_example(&mut self, x: &[f32], is_fraud: bool, weight: f64) -> u32 {
        let x = &x[..self.dims];
        let y = usize::from(is_fraud);
        let mut replaced = 0;
        self.updates += 1;
        let mut ctx = Ctx {
            cfg: self.cfg,
            dims: self.dims,
            rng: self.rng,
            order: std::mem::take(&mut self.order),
        };
        if self.poisson.is_empty() {
            self.poisson = poisson_cdf(self.cfg.lambda);
        }
        for tree in &mut self.trees {
            tree.sync();
        }
        let (mut nodes, mut slots) = ([0u32; LANES], [0u32; LANES]);
        for trees in self.trees.chunks_mut(LANES) {
            descend(trees, x, &mut nodes, &mut slots);
            // Read every leaf's statistics once before any is updated, so
            // their cache misses overlap too (a software prefetch).
            let mut touched = 0.0;
            for (tree, &l) in trees.iter().zip(&slots) {
                let leaf = &tree.leaves[l as usize];
                touched += leaf.stats.iter().step_by(STATS).sum::<f64>();
                touched += leaf.features.first().map_or(0.0, |&f| f as f64);
            }
            std::hint::black_box(touched);
            for ((tree, &node), &slot) in trees.iter_mut().zip(&nodes).zip(&slots) {
                // The error only feeds the drift detectors (off by default):
                // without them a label costs one descent per tree, not two.
                let err = if tree.warning.is_some() || tree.detector.is_some() {
                    (y as f64 - tree.predict(x)).abs()
                } else {
                    0.0
                };
                // Only a rise of the error is a drift: a falling one is the
                // tree learning. A warning (10× the confidence) starts a
                // background tree; a drift replaces the tree by it (or by a
                // fresh one).
                if let Some(w) = tree.warning.as_mut() {
                    let before = w.mean();
                    if w.update(err) && w.mean() > before && tree.background.is_none() {
                        tree.background =
                            Some(Box::new(Tree::new(ctx.dims, &ctx.cfg, &mut ctx.rng)));
                    }
                }
                let (mut node, mut slot) = (node as usize, slot as usize);
                if let Some(d) = tree.detector.as_mut() {
                    let before = d.mean();
                    if d.update(err) && d.mean() > before && tree.examples >= ctx.cfg.warm_up {
                        let next = tree
                            .background
                            .take()
                            .map(|b| *b)
                            .unwrap_or_else(|| Tree::new(ctx.dims, &ctx.cfg, &mut ctx.rng));
                        *tree = next;
                        tree.sync();
                        node = tree.node_of(x);
                        slot = tree.nodes[node].leaf as usize;
                        self.resets += 1;
                        replaced += 1;
                    }
                }
                let k = poisson(&self.poisson, &mut ctx.rng);
                if k == 0 {
                    continue;
                }
                let w = k as f64 * weight;
                train(tree, (node, slot), x, y, w, &mut ctx);
                if let Some(b) = tree.background.as_mut() {
                    b.sync();
                    let node = b.node_of(x);
                    let slot = b.nodes[node].leaf as usize;
                    train(b, (node, slot), x, y, w, &mut ctx);
                }
            }
        }
        self.rng = ctx.rng;
        self.order = ctx.order;
        replaced
    }

    /// Path-based (Saabas) contributions of each feature to the score of
    /// `x`, averaged over trees, the `top` largest positive ones into `out`.
    pub fn contributions(&mut self, x: &[f32], top: usize, out: &mut Vec<Contribution>) {
        out.clear();
        let x = &x[..self.dims];
        let mut contrib = std::mem::take(&mut self.contrib);
        contrib.clear();
        contrib.resize(self.dims, 0.0);
        let mut weight = 0.0;
        for t in &self.trees {
            let w = (t.examples / self.cfg.warm_up).clamp(1e-3, 1.0);
            weight += w;
            let mut i = 0usize;
            loop {
                let n = &t.nodes[i];
                if n.leaf != NONE {
                    break;
                }
                let next = if x[n.feature as usize] <= n.threshold {
                    n.left
                } else {
                    n.right
                } as usize;
                let c = &t.nodes[next];
                let child_value = if c.leaf != NONE {
                    t.leaves[c.leaf as usize].probability()
                } else {
                    c.value
                };
                contrib[n.feature as usize] += w * (child_value - n.value);
                i = next;
            }
        }
        for _ in 0..top {
            let mut best: Option<usize> = None;
            for (i, &v) in contrib.iter().enumerate() {
                if v > 0.0 && best.map_or(true, |b| v > contrib[b]) {
                    best = Some(i);
                }
            }
            let Some(b) = best else { break };
            out.push(Contribution {
                feature: self.names[b].clone(),
                value: contrib[b] / weight,
            });
            contrib[b] = 0.0;
        }
        self.contrib = contrib;
    }
}

/// What learning needs besides the tree: settings, randomness, scratch.
struct Ctx {
    cfg: ForestConfig,
    dims: usize,
    rng: u64,
    order: Vec<u32>,
}

/// Fold one example of weight `w` into its leaf, at node and leaf slot
/// `at` (the end of `x`'s descent); try a split when due.
fn train(tree: &mut Tree, at: (usize, usize), x: &[f32], y: usize, w: f64, ctx: &mut Ctx) {
    tree.examples += 1.0;
    let (node, li) = at;
    let room = tree.leaves.len() < ctx.cfg.max_leaves;
    let leaf = &mut tree.leaves[li];
    leaf.counts[y] += w;
    leaf.seen += w;
    leaf.since_attempt += w;
    // Every feature has seen the same class weights here, so the weight of
    // the running mean's update is the same for all: one division per leaf,
    // not one per feature.
    let n = leaf.stats[3 * y] + w;
    let r = w / n;
    let all = leaf.features.is_empty();
    for (k, s) in leaf.stats.chunks_exact_mut(STATS).enumerate() {
        let v = if all {
            x[k]
        } else {
            x[leaf.features[k] as usize]
        } as f64;
        let c = &mut s[3 * y..3 * y + 3];
        c[0] = n;
        let d = v - c[1];
        c[1] += d * r;
        c[2] += w * d * (v - c[1]);
        if v < s[6] {
            s[6] = v;
        }
        if v > s[7] {
            s[7] = v;
        }
    }
    if leaf.since_attempt >= ctx.cfg.grace_period && leaf.depth < ctx.cfg.max_depth && room {
        leaf.since_attempt = 0.0;
        attempt_split(tree, node, ctx);
    }
}

/// Try to split leaf `node` (Hoeffding bound): the best threshold of a
/// random subspace of features must beat the runner-up by the bound, or the
/// two must tie closely enough.
fn attempt_split(tree: &mut Tree, node: usize, ctx: &mut Ctx) {
    let li = tree.nodes[node].leaf as usize;
    let leaf = &tree.leaves[li];
    // A leaf of its own subspace tries all of it (statistics are indexed
    // by position); a leaf with every feature draws a subspace now.
    let m = if leaf.features.is_empty() {
        sample_subspace(ctx)
    } else {
        ctx.order.clear();
        ctx.order.extend(0..leaf.features.len() as u32);
        leaf.features.len()
    };
    // Class weights observed here (the statistics of any feature carry them).
    let n0 = leaf.stats[0];
    let n1 = leaf.stats[3];
    let n = n0 + n1;
    if n1 <= 0.0 || n0 <= 0.0 {
        return; // a pure leaf has nothing to gain
    }
    let (best, second) = best_split(&leaf.stats, &ctx.order[..m], n0, n1, ctx.cfg.candidates);
    let Some((gain, at, threshold)) = best else {
        return;
    };
    let feature = if leaf.features.is_empty() {
        at
    } else {
        leaf.features[at as usize]
    };
    // Entropy of two classes ranges over [0, 1] bit.
    let eps = ((1.0 / ctx.cfg.split_confidence).ln() / (2.0 * n)).sqrt();
    if gain <= 0.0 || !(gain - second > eps || eps < ctx.cfg.tie_threshold) {
        return;
    }
    split_leaf(tree, node, li, feature, threshold, ctx);
}

/// Shuffle the first features of `ctx.order` (partial Fisher–Yates) and
/// return how many form this attempt's subspace.
fn sample_subspace(ctx: &mut Ctx) -> usize {
    let dims = ctx.dims;
    let m = if ctx.cfg.subspace == 0 {
        ((dims as f64).sqrt().round() as usize).max(1)
    } else {
        ctx.cfg.subspace.min(dims)
    };
    if ctx.order.len() != dims {
        ctx.order.clear();
        ctx.order.extend(0..dims as u32);
    }
    for i in 0..m {
        let j = i + (splitmix(&mut ctx.rng) % (dims - i) as u64) as usize;
        ctx.order.swap(i, j);
    }
    m
}

/// A new leaf's features: `subspace` of the `dims` (`sqrt(dims)` when 0),
/// drawn without replacement, ascending.
fn subspace(dims: usize, cfg: &ForestConfig, rng: &mut u64) -> Vec<u32> {
    let m = if cfg.subspace == 0 {
        ((dims as f64).sqrt().round() as usize).max(1)
    } else {
        cfg.subspace.min(dims)
    };
    let mut all: Vec<u32> = (0..dims as u32).collect();
    for i in 0..m {
        let j = i + (splitmix(rng) % (dims - i) as u64) as usize;
        all.swap(i, j);
    }
    all.truncate(m);
    all.sort_unstable();
    all
}

/// The best (gain, feature, threshold) over `features` of a leaf with these
/// statistics and class weights, and the best gain of any other feature.
fn best_split(
    stats: &[f64],
    features: &[u32],
    n0: f64,
    n1: f64,
    candidates: usize,
) -> (Option<(f64, u32, f64)>, f64) {
    let parent = entropy(n0, n1);
    let mut best: Option<(f64, u32, f64)> = None;
    let mut second = 0.0f64;
    for &f in features {
        let s = &stats[f as usize * STATS..][..STATS];
        let Some((gain, t)) = best_threshold(s, n0, n1, parent, candidates) else {
            continue;
        };
        match best {
            Some(b) if gain <= b.0 => second = second.max(gain),
            _ => {
                if let Some(b) = best {
                    second = second.max(b.0);
                }
                best = Some((gain, f, t));
            }
        }
    }
    (best, second)
}

/// The best (gain, threshold) of one feature: `candidates` evenly spaced
/// thresholds within its observed range, each class's share below a
/// threshold estimated from its Gaussian (mean, variance) summary.
fn best_threshold(
    s: &[f64],
    n0: f64,
    n1: f64,
    parent: f64,
    candidates: usize,
) -> Option<(f64, f64)> {
    let (lo, hi) = (s[6], s[7]);
    if hi <= lo {
        return None;
    }
    let n = n0 + n1;
    let mut feature_best: Option<(f64, f64)> = None;
    for c in 1..=candidates {
        let t = lo + (hi - lo) * c as f64 / (candidates + 1) as f64;
        let mut left = [0.0; 2];
        for (k, l) in left.iter_mut().enumerate() {
            let (w, mean, m2) = (s[3 * k], s[3 * k + 1], s[3 * k + 2]);
            if w <= 0.0 {
                continue;
            }
            let sd = (m2 / w).max(0.0).sqrt();
            let frac = if sd < 1e-12 {
                if mean <= t {
                    1.0
                } else {
                    0.0
                }
            } else {
                normal_cdf((t - mean) / sd)
            };
            *l = w * frac;
        }
        let right = [n0 - left[0], n1 - left[1]];
        let (nl, nr) = (left[0] + left[1], right[0] + right[1]);
        if nl <= 0.0 || nr <= 0.0 {
            continue;
        }
        let gain =
            parent - (nl / n) * entropy(left[0], left[1]) - (nr / n) * entropy(right[0], right[1]);
        if feature_best.map_or(true, |b| gain > b.0) {
            feature_best = Some((gain, t));
        }
    }
    feature_best
}

/// Turn leaf `node` (leaf slot `li`) into a split on `feature < threshold`:
/// two new leaves, each with fresh statistics over a subspace of its own.
fn split_leaf(
    tree: &mut Tree,
    node: usize,
    li: usize,
    feature: u32,
    threshold: f64,
    ctx: &mut Ctx,
) {
    let depth = tree.leaves[li].depth + 1;
    let value = tree.leaves[li].probability();
    tree.leaves[li] = Leaf::new(subspace(ctx.dims, &ctx.cfg, &mut ctx.rng), value, depth);
    let ri = tree.leaves.len() as u32;
    let right = Leaf::new(subspace(ctx.dims, &ctx.cfg, &mut ctx.rng), value, depth);
    tree.leaves.push(right);
    let (ln, rn) = (tree.nodes.len() as u32, tree.nodes.len() as u32 + 1);
    for leaf in [li as u32, ri] {
        tree.nodes.push(Node {
            feature: 0,
            threshold: 0.0,
            left: NONE,
            right: NONE,
            leaf,
            value: 0.0,
        });
    }
    let n = &mut tree.nodes[node];
    n.feature = feature;
    n.threshold = threshold as f32;
    n.left = ln;
    n.right = rn;
    n.leaf = NONE;
    n.value = value;
    if tree.hops.len() + 2 == tree.nodes.len() {
        tree.hops[node] = Hop::of(&tree.nodes[node]);
        let (l, r) = (
            Hop::of(&tree.nodes[ln as usize]),
            Hop::of(&tree.nodes[rn as usize]),
        );
        tree.hops.extend([l, r]);
    }
}

/// Dense values only (the first `dims` are read). `learn_one` drops the
/// count of replaced trees that [`AdaptiveForest::learn_example`] returns;
/// [`AdaptiveForest::resets`] keeps the total.
impl Classifier for AdaptiveForest {
    type Input = [f32];

    fn predict_proba_one(&mut self, x: &[f32]) -> f64 {
        self.predict(x)
    }

    fn learn_one(&mut self, x: &[f32], is_fraud: bool, weight: f64) {
        self.learn_example(x, is_fraud, weight);
    }

    fn version(&self) -> u64 {
        self.updates
    }
}

/// Saabas path contributions ([`AdaptiveForest::contributions`]).
impl Explain for AdaptiveForest {
    fn explain_one(&mut self, x: &[f32], top: usize, out: &mut Vec<Contribution>) {
        self.contributions(x, top, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn names(d: usize) -> Vec<CompactString> {
        (0..d).map(|i| format!("f{i}").into()).collect()
    }

    /// Fraud iff feature 1 is high AND feature 2 is low: an interaction a
    /// linear model cannot express.
    fn example(rng: &mut rand_chacha::ChaCha8Rng) -> (Vec<f32>, bool) {
        let x: Vec<f32> = (0..5).map(|_| rng.gen::<f32>()).collect();
        let fraud = x[1] > 0.8 && x[2] < 0.3;
        (x, fraud)
    }

    #[test]
    fn learns_an_interaction_and_explains_it() {
        let mut f = AdaptiveForest::new(names(5), ForestConfig::default());
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..20_000 {
            let (x, y) = example(&mut rng);
            f.learn_example(&x, y, if y { 5.0 } else { 1.0 });
        }
        let mut pairs = Vec::new();
        for _ in 0..4000 {
            let (x, y) = example(&mut rng);
            pairs.push((f.predict(&x) as f32, y));
        }
        let auc = crate::eval::roc_auc(&pairs).unwrap();
        assert!(auc > 0.97, "auc {auc}");
        let mut out = Vec::new();
        f.contributions(&[0.5, 0.95, 0.1, 0.5, 0.5], 2, &mut out);
        let top: Vec<&str> = out.iter().map(|c| c.feature.as_str()).collect();
        assert!(top.contains(&"f1") && top.contains(&"f2"), "{top:?}");
        assert!(out[0].value >= out[1].value);
    }

    #[test]
    fn depth_and_leaves_stay_bounded() {
        let cfg = ForestConfig {
            trees: 3,
            max_depth: 3,
            max_leaves: 6,
            grace_period: 50.0,
            ..ForestConfig::default()
        };
        let mut f = AdaptiveForest::new(names(5), cfg);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        for _ in 0..20_000 {
            let (x, y) = example(&mut rng);
            f.learn_example(&x, y, 1.0);
        }
        for t in &f.trees {
            assert!(t.leaves.len() <= 6, "{}", t.leaves.len());
            assert!(t.leaves.iter().all(|l| l.depth <= 3));
        }
        assert!(f.leaves() > 3, "the trees grew");
    }

    #[test]
    fn a_changed_concept_replaces_trees_and_is_relearnt() {
        let cfg = ForestConfig {
            drift_delta: 1e-5,
            ..ForestConfig::default()
        };
        let mut f = AdaptiveForest::new(names(5), cfg);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for _ in 0..20_000 {
            let (x, y) = example(&mut rng);
            f.learn_example(&x, y, 5.0_f64.powi(y as i32));
        }
        assert_eq!(f.resets(), 0, "no change, no reset");
        // The concept flips: fraud is now feature 3 low.
        let flipped = |rng: &mut rand_chacha::ChaCha8Rng| {
            let x: Vec<f32> = (0..5).map(|_| rng.gen::<f32>()).collect();
            let y = x[3] < 0.1;
            (x, y)
        };
        for _ in 0..40_000 {
            let (x, y) = flipped(&mut rng);
            f.learn_example(&x, y, 5.0_f64.powi(y as i32));
        }
        assert!(f.resets() > 0, "the change was detected");
        let pairs: Vec<(f32, bool)> = (0..4000)
            .map(|_| {
                let (x, y) = flipped(&mut rng);
                (f.predict(&x) as f32, y)
            })
            .collect();
        let auc = crate::eval::roc_auc(&pairs).unwrap();
        assert!(auc > 0.95, "auc after the change {auc}");
    }

    #[test]
    fn same_examples_same_forest_and_serde_round_trip() {
        let run = || {
            let mut f = AdaptiveForest::new(names(5), ForestConfig::default());
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
            for _ in 0..5000 {
                let (x, y) = example(&mut rng);
                f.learn_example(&x, y, 1.0);
            }
            f
        };
        let (a, b) = (run(), run());
        let x = [0.5, 0.9, 0.2, 0.1, 0.3];
        assert_eq!(a.predict(&x), b.predict(&x));
        let json = serde_json::to_string(&a).unwrap();
        let mut back: AdaptiveForest = serde_json::from_str(&json).unwrap();
        // Restored trees descend through their nodes until a label rebuilds
        // the compact copy; both ways give the same leaves.
        assert!(back.trees.iter().all(|t| t.hops.is_empty()));
        assert!(a.trees.iter().all(|t| t.hops.len() == t.nodes.len()));
        assert_eq!(back.predict(&x), a.predict(&x));
        let mut a = a;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        for _ in 0..500 {
            let (x, y) = example(&mut rng);
            a.learn_example(&x, y, 1.0);
            back.learn_example(&x, y, 1.0);
        }
        assert!(back.trees.iter().all(|t| t.hops.len() == t.nodes.len()));
        for _ in 0..200 {
            let (x, _) = example(&mut rng);
            assert_eq!(back.predict(&x).to_bits(), a.predict(&x).to_bits());
        }
    }

    #[test]
    fn poisson_mean_is_lambda() {
        let mut s = 1u64;
        let n = 20_000;
        let cdf = poisson_cdf(6.0);
        let sum: u32 = (0..n).map(|_| poisson(&cdf, &mut s)).sum();
        let mean = sum as f64 / n as f64;
        assert!((mean - 6.0).abs() < 0.1, "{mean}");
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.96) - 0.975).abs() < 1e-4);
    }
}
