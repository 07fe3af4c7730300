//! The batch random forest: owns the training of a random forest of CART
//! trees on a snapshot of labelled vectors (Breiman 2001: bootstrap rows,
//! a random subset of features at each node, Gini impurity, deep trees) and
//! the plain-data scorer each trained forest becomes. The batch champion
//! ([`super::batch`]) trains it in the background on the latest labelled
//! week, as a fraud team would retrain its weekly model every day.
//!
//! Why our own trees: smartcore 0.4's `RandomForestClassifier` predicts
//! class votes only, no probability, useless for ranking transactions; and
//! it keeps its trees behind an API we cannot copy into plain vectors to
//! score without allocation.
//!
//! **Histograms, not sorted values.** Each feature's values are cut into at
//! most 255 bins at quantiles of the training rows (with extra cuts at the
//! frauds' own quantiles, so a level only frauds pass, such as an amount
//! above a fixed threshold, gets a cut of its own). A node's split search is
//! then one pass over its rows per feature tried, filling a histogram, and
//! one pass over the bins: `O(rows × features tried)` per tree level. A split
//! is stored as the raw value of its cut, so scoring compares raw values
//! and never bins.
//!
//! **Probabilities.** A leaf holds the (bootstrap-weighted) fraud share of
//! the rows that reached it; the forest's score is the trees' mean, turned
//! into the stream's odds by `odds_scale` when genuine rows were sampled.
//!
//! **Determinism.** Bootstrap counts and feature draws come from one
//! splitmix64 state seeded by the caller: the same rows give the same forest.
//!
//! **Explanations** (Saabas, as the adaptive forest's): a feature's
//! contribution is the sum of the changes of the node fraud share along each
//! tree's path at the nodes that split on it, averaged over trees.

use super::splitmix;
use crate::event::Contribution;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// Settings of a [`BatchForest`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CartParams {
    /// Trees in the forest.
    pub trees: usize,
    /// Deepest leaf (the root is depth 0).
    pub max_depth: u32,
    /// Fewest training rows in a leaf.
    pub min_leaf: u32,
    /// Features tried per node; 0 = `sqrt(features)`.
    pub features: usize,
    /// Genuine rows drawn per tree, as a share of the genuine rows (each
    /// weighs its inverse, so leaves still estimate the fraud share); every
    /// tree draws as many frauds as there are.
    pub genuine_share: f64,
    /// Seed of the bootstrap and the feature draws.
    pub seed: u64,
}

impl Default for CartParams {
    fn default() -> Self {
        CartParams {
            trees: 20,
            max_depth: 12,
            min_leaf: 1,
            features: 0,
            genuine_share: 0.5,
            seed: 11,
        }
    }
}

/// Most bins per feature (a bin index is a byte).
const MAX_BINS: usize = 255;
/// Cuts taken at quantiles of all rows, and at quantiles of the frauds.
const CUTS_ALL: usize = 190;
const CUTS_FRAUD: usize = 64;
/// Nodes of at most this many rows are split by sorting them, not by histogram.
const SMALL_NODE: usize = 128;
/// Rows sampled per feature to place its cuts.
const CUT_SAMPLE: usize = 10_000;

/// One node of a tree: a split (`left != 0`) or a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Node {
    /// Feature split on (a split node).
    feature: u32,
    /// Rows with `x[feature] <= threshold` go left.
    threshold: f32,
    /// Left child; 0 for a leaf (the root is never a child).
    left: u32,
    /// Right child.
    right: u32,
    /// Fraud share of the training rows that reached it.
    value: f32,
}

/// A trained forest as plain data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchForest {
    dims: usize,
    /// Every tree's nodes, one after another.
    nodes: Vec<Node>,
    /// Index of each tree's root in `nodes`.
    roots: Vec<u32>,
    /// Multiplier of the odds of the trees' mean (the share of genuine rows
    /// kept), so scores are on the stream's scale.
    odds_scale: f64,
}

impl BatchForest {
    /// Number of trees.
    pub fn trees(&self) -> usize {
        self.roots.len()
    }

    /// Nodes in all trees.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// The leaf `x` reaches in the tree rooted at `root`, and the path's
    /// nodes through `visit(parent, child)`.
    #[inline]
    fn walk(&self, root: u32, x: &[f32], mut visit: impl FnMut(&Node, &Node)) -> &Node {
        let mut n = &self.nodes[root as usize];
        while n.left != 0 {
            let next = if x[n.feature as usize] <= n.threshold {
                n.left
            } else {
                n.right
            };
            let child = &self.nodes[next as usize];
            visit(n, child);
            n = child;
        }
        n
    }

    /// Fraud probability of `x` (its first `dims` values).
    pub fn score(&self, x: &[f32]) -> f64 {
        if self.roots.is_empty() {
            return 0.0;
        }
        let sum: f64 = self
            .roots
            .iter()
            .map(|&r| f64::from(self.walk(r, x, |_, _| {}).value))
            .sum();
        let q = (sum / self.roots.len() as f64).clamp(0.0, 1.0);
        if q >= 1.0 {
            return 1.0;
        }
        let odds = q / (1.0 - q) * self.odds_scale;
        odds / (1.0 + odds)
    }

    /// Saabas contributions (fraud share) of the features of `x`, the `top`
    /// largest positive ones.
    pub fn explain(
        &self,
        x: &[f32],
        names: &[CompactString],
        top: usize,
        out: &mut Vec<Contribution>,
    ) {
        out.clear();
        let mut by_feature = vec![0.0f64; self.dims];
        for &r in &self.roots {
            self.walk(r, x, |parent, child| {
                by_feature[parent.feature as usize] += f64::from(child.value - parent.value);
            });
        }
        let trees = self.roots.len().max(1) as f64;
        let mut order: Vec<usize> = (0..self.dims).filter(|&j| by_feature[j] > 0.0).collect();
        order.sort_by(|&a, &b| by_feature[b].total_cmp(&by_feature[a]).then(a.cmp(&b)));
        out.extend(order.into_iter().take(top).map(|j| Contribution {
            feature: names[j].clone(),
            value: by_feature[j] / trees,
        }));
    }

    /// Train on the rows of `x` (row-major, `dims` values each) labelled
    /// `y` (1 = fraud); `odds_scale` puts the scores on the stream's scale.
    pub fn train(
        x: &[f32],
        y: &[u32],
        dims: usize,
        params: &CartParams,
        odds_scale: f64,
    ) -> Result<Self, String> {
        Self::train_with(x, y, dims, params, odds_scale, &mut CartScratch::default())
    }

    /// [`Self::train`] with working buffers kept from an earlier training
    /// (the same forest as with fresh ones).
    pub fn train_with(
        x: &[f32],
        y: &[u32],
        dims: usize,
        params: &CartParams,
        odds_scale: f64,
        scratch: &mut CartScratch,
    ) -> Result<Self, String> {
        let n = y.len();
        if n == 0 || dims == 0 || x.len() != n * dims {
            return Err(format!("{n} rows of {dims} values in {} values", x.len()));
        }
        if n > u32::MAX as usize {
            return Err(format!("{n} rows: at most 2^32 - 1"));
        }
        let mut rng = params.seed ^ 0x9e37_79b9_7f4a_7c15;
        let mut bins = std::mem::take(&mut scratch.bins);
        let cuts = bin_columns(x, y, dims, &mut rng, &mut bins);
        let tried = match params.features {
            0 => ((dims as f64).sqrt().round() as usize).max(1),
            k => k.min(dims),
        };
        let mut forest = BatchForest {
            dims,
            nodes: Vec::new(),
            roots: Vec::with_capacity(params.trees),
            odds_scale,
        };
        let mut grower = Grower {
            bins: &bins,
            cuts: &cuts,
            n,
            tried,
            params,
            weight: std::mem::take(&mut scratch.weight),
            right: std::mem::take(&mut scratch.right),
            classes: std::mem::take(&mut scratch.classes),
            rows: std::mem::take(&mut scratch.rows),
            order: (0..dims as u32).collect(),
            hist: vec![[0.0f32; 3]; MAX_BINS + 1],
            small: Vec::with_capacity(SMALL_NODE),
        };
        grower.weight.clear();
        grower.weight.resize(n, [0.0; 2]);
        for (c, rows) in grower.classes.iter_mut().enumerate() {
            rows.clear();
            rows.extend((0..n as u32).filter(|&i| y[i as usize] == c as u32));
        }
        for _ in 0..params.trees.max(1) {
            let root = forest.nodes.len() as u32;
            grower.grow(&mut forest.nodes, &mut rng);
            forest.roots.push(root);
        }
        forest.nodes.shrink_to_fit();
        let Grower {
            weight,
            right,
            classes,
            rows,
            ..
        } = grower;
        *scratch = CartScratch {
            bins,
            weight,
            right,
            classes,
            rows,
        };
        Ok(forest)
    }
}

/// The working buffers of a training (rows' bins, bootstrap weights, row
/// lists), each as long as the training set: kept from one training to the
/// next by the thread that trains, so tens of MB are not freed and taken
/// again every training (which fragments the heap).
#[derive(Debug, Default)]
pub struct CartScratch {
    bins: Vec<u8>,
    weight: Vec<[f32; 2]>,
    right: Vec<u32>,
    classes: [Vec<u32>; 2],
    rows: Vec<u32>,
}

/// Each feature's cuts (ascending), and the rows' bins into `bins`,
/// column-major: bin `b` of feature `j` holds values in
/// `(cuts[j][b-1], cuts[j][b]]`.
fn bin_columns(
    x: &[f32],
    y: &[u32],
    dims: usize,
    rng: &mut u64,
    bins: &mut Vec<u8>,
) -> Vec<Vec<f32>> {
    let n = y.len();
    let frauds: Vec<usize> = (0..n).filter(|&i| y[i] == 1).collect();
    // The same rows place every feature's cuts.
    let sample: Vec<usize> = if n <= CUT_SAMPLE {
        (0..n).collect()
    } else {
        (0..CUT_SAMPLE)
            .map(|_| (splitmix(rng) % n as u64) as usize)
            .collect()
    };
    let mut cuts = Vec::with_capacity(dims);
    bins.clear();
    bins.resize(n * dims, 0);
    let mut values = Vec::with_capacity(sample.len());
    for j in 0..dims {
        let mut c = Vec::with_capacity(MAX_BINS);
        for (rows, k) in [(&sample, CUTS_ALL), (&frauds, CUTS_FRAUD)] {
            values.clear();
            values.extend(
                rows.iter()
                    .map(|&i| x[i * dims + j])
                    .filter(|v| !v.is_nan()),
            );
            values.sort_by(f32::total_cmp);
            quantiles(&values, k, &mut c);
        }
        c.sort_by(f32::total_cmp);
        c.dedup();
        // The largest value needs no cut of its own; at most MAX_BINS - 1
        // cuts keep every bin index below 255.
        c.truncate(MAX_BINS - 1);
        let col = &mut bins[j * n..(j + 1) * n];
        for (i, b) in col.iter_mut().enumerate() {
            let v = x[i * dims + j];
            *b = c.partition_point(|&cut| cut < v) as u8;
        }
        cuts.push(c);
    }
    cuts
}

/// Push `k` cut points at evenly spaced quantiles of sorted `values` (not the maximum).
fn quantiles(values: &[f32], k: usize, out: &mut Vec<f32>) {
    let n = values.len();
    if n < 2 {
        return;
    }
    for q in 1..=k {
        let at = (q * n / (k + 1)).min(n - 1);
        if values[at] < values[n - 1] {
            out.push(values[at]);
        }
    }
}

/// The state of growing trees on one binned training set.
struct Grower<'a> {
    bins: &'a [u8],
    cuts: &'a [Vec<f32>],
    n: usize,
    tried: usize,
    params: &'a CartParams,
    /// Bootstrap weight and fraud weight of each row in the tree being grown.
    weight: Vec<[f32; 2]>,
    /// Rows of a node that go right, while it is partitioned.
    right: Vec<u32>,
    /// Row indices of each class (genuine, fraud).
    classes: [Vec<u32>; 2],
    /// Rows of the tree (those drawn), partitioned node by node.
    rows: Vec<u32>,
    /// Features, shuffled at each node.
    order: Vec<u32>,
    /// Per bin: weight, fraud weight, rows (single precision: bootstrap
    /// weights of at most a few million rows add up exactly enough).
    hist: Vec<[f32; 3]>,
    /// A small node's rows: bin, weight, fraud weight.
    small: Vec<(u8, f64, f64)>,
}

/// A node waiting to be split: its index, its rows, its depth.
struct Pending {
    node: usize,
    lo: usize,
    hi: usize,
    depth: u32,
}

impl Grower<'_> {
    /// Grow one tree on a bootstrap sample, appending its nodes (the root first).
    fn grow(&mut self, nodes: &mut Vec<Node>, rng: &mut u64) {
        self.weight.iter_mut().for_each(|w| *w = [0.0; 2]);
        self.rows.clear();
        // A bootstrap of each class: every fraud's worth, and the genuine
        // share's, each genuine draw weighing the share's inverse.
        let share = self.params.genuine_share.clamp(1e-6, 1.0);
        for (class, draws, each) in [
            (
                0,
                (self.classes[0].len() as f64 * share).ceil() as usize,
                1.0 / share,
            ),
            (1, self.classes[1].len(), 1.0),
        ] {
            let rows = &self.classes[class];
            for _ in 0..draws {
                let i = rows[(splitmix(rng) % rows.len() as u64) as usize];
                let w = &mut self.weight[i as usize];
                if w[0] == 0.0 {
                    self.rows.push(i);
                }
                w[0] += each as f32;
                w[1] += (each * class as f64) as f32;
            }
        }
        self.rows.sort_unstable();
        let root = nodes.len();
        let (w, wy) = self.totals(0, self.rows.len());
        nodes.push(leaf(wy / w.max(1e-12)));
        let mut stack = vec![Pending {
            node: root,
            lo: 0,
            hi: self.rows.len(),
            depth: 0,
        }];
        while let Some(p) = stack.pop() {
            let Some((feature, bin)) = self.best_split(&p, rng) else {
                continue;
            };
            let col = &self.bins[feature * self.n..(feature + 1) * self.n];
            // Partition the node's rows, bin <= `bin` first, each side in
            // row order (so the next passes read the columns forwards).
            self.right.clear();
            let mut mid = p.lo;
            for k in p.lo..p.hi {
                let i = self.rows[k];
                if col[i as usize] <= bin {
                    self.rows[mid] = i;
                    mid += 1;
                } else {
                    self.right.push(i);
                }
            }
            self.rows[mid..p.hi].copy_from_slice(&self.right);
            let (lw, lwy) = self.totals(p.lo, mid);
            let (rw, rwy) = self.totals(mid, p.hi);
            let left = nodes.len();
            nodes.push(leaf(lwy / lw.max(1e-12)));
            nodes.push(leaf(rwy / rw.max(1e-12)));
            let n = &mut nodes[p.node];
            n.feature = feature as u32;
            n.threshold = self.cuts[feature][bin as usize];
            n.left = left as u32;
            n.right = left as u32 + 1;
            for (node, lo, hi) in [(left + 1, mid, p.hi), (left, p.lo, mid)] {
                stack.push(Pending {
                    node,
                    lo,
                    hi,
                    depth: p.depth + 1,
                });
            }
        }
    }

    /// Bootstrap weight and fraud weight of rows `lo..hi`.
    fn totals(&self, lo: usize, hi: usize) -> (f64, f64) {
        self.rows[lo..hi].iter().fold((0.0, 0.0), |(w, wy), &i| {
            let [c, cy] = self.weight[i as usize];
            (w + f64::from(c), wy + f64::from(cy))
        })
    }

    /// The split of node `p` that lowers the Gini impurity most, over
    /// `tried` random features (more if none of those splits it, as
    /// scikit-learn does); `None` makes it a leaf.
    fn best_split(&mut self, p: &Pending, rng: &mut u64) -> Option<(usize, u8)> {
        let count = p.hi - p.lo;
        let min_leaf = self.params.min_leaf.max(1) as f64;
        if p.depth >= self.params.max_depth || (count as f64) < 2.0 * min_leaf {
            return None;
        }
        let (w, wy) = self.totals(p.lo, p.hi);
        if wy <= 0.0 || wy >= w {
            return None; // pure
        }
        // Σ over children of (fraud² + genuine²) / weight: higher is purer.
        let parent = (wy * wy + (w - wy) * (w - wy)) / w;
        let mut best: Option<(f64, usize, u8)> = None;
        let dims = self.order.len();
        for k in 0..dims {
            if k >= self.tried && best.is_some() {
                break;
            }
            let pick = k + (splitmix(rng) % (dims - k) as u64) as usize;
            self.order.swap(k, pick);
            let j = self.order[k] as usize;
            let col = &self.bins[j * self.n..(j + 1) * self.n];
            let mut consider = |lw: f64, lwy: f64, lrows: f64, b: u8| {
                let (rw, rwy, rrows) = (w - lw, wy - lwy, count as f64 - lrows);
                if lrows < min_leaf || rrows < min_leaf {
                    return;
                }
                let purity = (lwy * lwy + (lw - lwy) * (lw - lwy)) / lw
                    + (rwy * rwy + (rw - rwy) * (rw - rwy)) / rw;
                if purity > parent + 1e-9 && best.map_or(true, |b| purity > b.0) {
                    best = Some((purity, j, b));
                }
            };
            let (mut lw, mut lwy, mut lrows) = (0.0, 0.0, 0.0);
            if count <= SMALL_NODE {
                // Fewer rows than bins: sort them by bin rather than scan every bin.
                self.small.clear();
                self.small.extend(self.rows[p.lo..p.hi].iter().map(|&i| {
                    let [c, cy] = self.weight[i as usize];
                    (col[i as usize], f64::from(c), f64::from(cy))
                }));
                self.small.sort_unstable_by_key(|r| r.0);
                for (k, &(b, c, cy)) in self.small.iter().enumerate() {
                    lw += c;
                    lwy += cy;
                    lrows += 1.0;
                    if self.small.get(k + 1).is_some_and(|next| next.0 != b) {
                        consider(lw, lwy, lrows, b);
                    }
                }
                continue;
            }
            let (mut lo_bin, mut hi_bin) = (u8::MAX, 0u8);
            for &i in &self.rows[p.lo..p.hi] {
                let b = col[i as usize];
                let [c, cy] = self.weight[i as usize];
                let h = &mut self.hist[b as usize];
                h[0] += c;
                h[1] += cy;
                h[2] += 1.0;
                lo_bin = lo_bin.min(b);
                hi_bin = hi_bin.max(b);
            }
            for b in lo_bin..hi_bin {
                let h = self.hist[b as usize];
                if h[2] == 0.0 {
                    continue;
                }
                lw += f64::from(h[0]);
                lwy += f64::from(h[1]);
                lrows += f64::from(h[2]);
                consider(lw, lwy, lrows, b);
            }
            for h in &mut self.hist[lo_bin as usize..=hi_bin as usize] {
                *h = [0.0f32; 3];
            }
        }
        best.map(|(_, j, b)| (j, b))
    }
}

fn leaf(value: f64) -> Node {
    Node {
        feature: 0,
        threshold: 0.0,
        left: 0,
        right: 0,
        value: value as f32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Fraud when an amount is above a level, or when two values cross
    /// (an interaction no single feature shows), on a noisy stream.
    fn stream(n: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let row: [f32; 5] = std::array::from_fn(|_| rng.gen::<f32>());
            let amount = rng.gen::<f32>() * 300.0;
            let fraud = amount > 270.0 || (row[0] > 0.8 && row[1] > 0.8) || rng.gen_bool(0.002);
            x.extend_from_slice(&row);
            x.push(amount);
            y.push(u32::from(fraud));
        }
        (x, y)
    }

    fn auc_and_ap(f: &BatchForest, x: &[f32], y: &[u32]) -> (f64, f64) {
        let pairs: Vec<(f32, bool)> = x
            .chunks_exact(6)
            .zip(y)
            .map(|(r, &y)| (f.score(r) as f32, y == 1))
            .collect();
        (
            crate::eval::roc_auc(&pairs).unwrap(),
            crate::eval::average_precision(&pairs).unwrap(),
        )
    }

    #[test]
    fn learns_a_threshold_and_an_interaction() {
        let (x, y) = stream(20_000, 1);
        let f = BatchForest::train(&x, &y, 6, &CartParams::default(), 1.0).unwrap();
        let (tx, ty) = stream(10_000, 2);
        let (auc, ap) = auc_and_ap(&f, &tx, &ty);
        assert!(auc > 0.97 && ap > 0.9, "auc {auc}, ap {ap}");
        // Mean score near the fraud rate: probabilities, not votes.
        let mean: f64 = tx.chunks_exact(6).map(|r| f.score(r)).sum::<f64>() / 10_000.0;
        let rate = ty.iter().sum::<u32>() as f64 / 10_000.0;
        assert!((mean - rate).abs() < 0.02, "mean {mean}, rate {rate}");
        // The amount explains an amount fraud.
        let names: Vec<CompactString> = (0..6).map(|j| format!("f{j}").into()).collect();
        let mut out = Vec::new();
        f.explain(&[0.5, 0.5, 0.5, 0.5, 0.5, 290.0], &names, 2, &mut out);
        assert_eq!(out[0].feature, "f5", "{out:?}");
        assert!(out[0].value > 0.5, "{out:?}");
    }

    #[test]
    fn depth_and_leaf_size_bound_the_trees() {
        let (x, y) = stream(5_000, 3);
        let params = CartParams {
            trees: 5,
            max_depth: 3,
            ..CartParams::default()
        };
        let f = BatchForest::train(&x, &y, 6, &params, 1.0).unwrap();
        assert!(f.nodes() <= 5 * 15, "{}", f.nodes());
        let params = CartParams {
            trees: 1,
            min_leaf: 2_000,
            ..CartParams::default()
        };
        let f = BatchForest::train(&x, &y, 6, &params, 1.0).unwrap();
        assert!(
            f.nodes() <= 3,
            "a leaf of 2,000 of ~3,160 rows: {}",
            f.nodes()
        );
    }

    #[test]
    fn same_rows_same_forest_and_odds_scale_moves_scores() {
        let (x, y) = stream(3_000, 4);
        let p = CartParams {
            trees: 10,
            ..CartParams::default()
        };
        let a = BatchForest::train(&x, &y, 6, &p, 1.0).unwrap();
        assert_eq!(a, BatchForest::train(&x, &y, 6, &p, 1.0).unwrap());
        // Buffers kept from a training on other (more) rows change nothing.
        let mut scratch = CartScratch::default();
        let (more_x, more_y) = stream(5_000, 9);
        BatchForest::train_with(&more_x, &more_y, 6, &p, 1.0, &mut scratch).unwrap();
        let reused = BatchForest::train_with(&x, &y, 6, &p, 1.0, &mut scratch).unwrap();
        assert_eq!(a, reused);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<BatchForest>(&json).unwrap(), a);
        let b = BatchForest::train(&x, &y, 6, &p, 0.1).unwrap();
        let row = &x[..6];
        let (pa, pb) = (a.score(row), b.score(row));
        if pa > 0.0 && pa < 1.0 {
            let ratio = (pb / (1.0 - pb)) / (pa / (1.0 - pa));
            assert!((ratio - 0.1).abs() < 1e-6, "{ratio}");
        }
        assert!(BatchForest::train(&[], &[], 6, &p, 1.0).is_err());
    }

    #[test]
    fn constant_and_nan_columns_do_not_break_training() {
        let (mut x, y) = stream(2_000, 5);
        for r in x.chunks_exact_mut(6) {
            r[2] = 1.0;
            r[3] = f32::NAN;
        }
        let f = BatchForest::train(&x, &y, 6, &CartParams::default(), 1.0).unwrap();
        let s = f.score(&x[..6]);
        assert!((0.0..=1.0).contains(&s));
    }
}
