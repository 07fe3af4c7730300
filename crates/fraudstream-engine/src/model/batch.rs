//! The batch champion: owns the bounded buffer of recent labelled feature
//! vectors, the background thread that retrains a model on a snapshot of
//! it, and the schedule on which each trained model is swapped in. The
//! model is a random forest of CART trees ([`super::cart`], the default) or
//! a logistic regression (smartcore's objective, fitted by Newton's method
//! on smartcore's Cholesky factor), each turned into a plain-data scorer.
//!
//! **The forest learns the latest labelled week.** With `learner =
//! "forest"` the snapshot holds every labelled vector kept whose
//! transaction is within `window` of the newest genuine label's transaction
//! (frauds newer than that are left for the next snapshot: a model trained
//! on frauds newer than every genuine row learns their time as fraud), not
//! class-balanced, as a fraud team's weekly batch model is trained. On the
//! Fraud Detection Handbook's stream, scikit-learn's forest trained so
//! scored 0.675 average precision on the test week, ahead of every online
//! model (docs/benchmarks.md).
//!
//! Why a logistic regression was the first learner and not smartcore's
//! random forest: smartcore 0.4's `RandomForestClassifier` predicts class
//! votes only (no probability), useless for ranking transactions; a fitted
//! logistic regression's coefficients can be copied out into plain vectors.
//! The forest is our own for the same reason.
//!
//! **Never blocking scoring.** A snapshot of the buffer is sent to the
//! training thread over a crossbeam channel; the trained model comes back
//! over another, with the snapshot's memory for the next one (the
//! training thread keeps its own buffers too: tens of MB freed and taken
//! again at every training fragmented the heap). The scoring thread only
//! ever polls (`try_recv`), except in the deterministic swap mode below.
//! No lock is taken.
//!
//! **Determinism.** With [`SwapMode::AtLabel`] (the default) a snapshot is
//! taken every `retrain_every` labels and the model trained on it is swapped
//! in exactly `swap_after` labels later: the scoring thread waits for the
//! result at that label only if training has not finished by then. Training
//! itself is deterministic (Newton's method from zeros, or trees from a
//! seeded generator, on the same rows), so the same stream gives the same
//! scores. [`SwapMode::WhenReady`] swaps as soon as a model arrives (polled
//! per transaction): never waits, but when it swaps depends on thread
//! timing.

use super::cart::{BatchForest, CartParams, CartScratch};
use super::sigmoid;
use crate::event::{key_of, Contribution};
use compact_str::CompactString;
use crossbeam::channel::{unbounded, Receiver, Sender};
use serde::{Deserialize, Serialize};
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linalg::traits::cholesky::CholeskyDecomposable;

/// When a retrained model replaces the current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SwapMode {
    /// `swap_after` labels after its snapshot (deterministic).
    AtLabel,
    /// As soon as training finishes (never waits; timing-dependent).
    WhenReady,
}

/// What the batch champion trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Learner {
    /// A random forest of CART trees ([`BatchForest`]).
    Forest,
    /// An L2-penalised logistic regression ([`BatchLinear`]).
    Linear,
}

/// Settings of the batch champion.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchConfig {
    /// What is trained.
    pub learner: Learner,
    /// Vectors kept per class (frauds, genuine): the newest ones.
    pub buffer: usize,
    /// Share of genuine labels admitted to the buffer (deterministic per
    /// transaction), so it spans more time than the last few hours.
    pub negative_rate: f64,
    /// Labels between two snapshots (retrains).
    pub retrain_every: u64,
    /// Labels between a snapshot and the swap of its model (`AtLabel`).
    pub swap_after: u64,
    /// When to swap.
    pub swap: SwapMode,
    /// L2 strength of the smartcore logistic regression.
    pub l2: f64,
    /// Frauds needed in the buffer before the first training.
    pub min_frauds: usize,
    /// Span of transaction time a snapshot covers, up to the newest genuine
    /// label's transaction (ms); 0 = every vector kept.
    pub window_ms: i64,
    /// The forest's settings (`learner = "forest"`).
    pub forest: CartParams,
    /// Seed of the admission hash.
    pub seed: u64,
}

impl BatchConfig {
    /// The forest's defaults: the labelled transactions of the latest 30
    /// days (a quarter of the genuine ones, at most 100,000), retrained
    /// every 40,000 labels.
    pub fn forest() -> Self {
        BatchConfig {
            learner: Learner::Forest,
            buffer: 100_000,
            negative_rate: 0.25,
            // Training shares the cores with the stream: every 40,000 labels
            // and 20 trees cost a third of every 20,000 and 30 trees, for
            // the same average precision on the book's stream and the
            // matrix (default simulation: 64,250 transactions/s against
            // 37,962; docs/benchmarks.md, 2026-12-03).
            retrain_every: 40_000,
            // Swapped three quarters of the way to the next snapshot: the
            // training thread trains while the engine goes on (measured on
            // the book's stream: 51,842 transactions/s against 35,792 when
            // swapped a quarter of the way, same average precision).
            swap_after: 30_000,
            swap: SwapMode::AtLabel,
            l2: 1.0,
            min_frauds: 50,
            window_ms: 30 * 86_400_000,
            forest: CartParams::default(),
            seed: 11,
        }
    }

    /// The logistic regression's defaults: a class-balanced buffer of 4,000
    /// vectors per class (5 % of genuine labels admitted), retrained every
    /// 50,000 labels.
    pub fn linear() -> Self {
        BatchConfig {
            learner: Learner::Linear,
            buffer: 4000,
            negative_rate: 0.05,
            retrain_every: 50_000,
            swap_after: 5_000,
            window_ms: 0,
            ..Self::forest()
        }
    }

    /// The defaults of `learner`.
    pub fn of(learner: Learner) -> Self {
        match learner {
            Learner::Forest => Self::forest(),
            Learner::Linear => Self::linear(),
        }
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self::forest()
    }
}

/// The time of a buffered row that has none (always in the window).
const NO_TIME: i64 = i64::MIN;

/// The newest `cap` vectors of each class, in rings that grow to `cap`
/// rows as vectors arrive: memory and checkpoints hold the rows kept, not
/// `cap` (frauds are rare, so their ring may stay far from full for months).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BalancedBuffer {
    dims: usize,
    cap: usize,
    /// Each class's ring, row-major: `len` rows until it is full, then `cap`
    /// (a checkpoint written before the rings grew holds `cap` rows at once).
    rows: [Vec<f32>; 2],
    /// Each row's transaction time (ms), in the rows' ring order ([`NO_TIME`]
    /// is always in the window).
    ts: [Vec<i64>; 2],
    next: [usize; 2],
    len: [usize; 2],
}

impl BalancedBuffer {
    /// Empty, for vectors of `dims` values, `cap` per class.
    pub fn new(dims: usize, cap: usize) -> Self {
        BalancedBuffer {
            dims,
            cap,
            rows: [Vec::new(), Vec::new()],
            ts: [Vec::new(), Vec::new()],
            next: [0, 0],
            len: [0, 0],
        }
    }

    /// Keep `x` (its first `dims` values), of a transaction at `ts`, as the
    /// newest of its class.
    pub fn push(&mut self, x: &[f32], is_fraud: bool, ts: i64) {
        let c = usize::from(is_fraud);
        let slot = self.next[c];
        let times = &mut self.ts[c];
        if times.len() <= slot {
            times.resize(slot, NO_TIME);
            times.push(ts);
        } else {
            times[slot] = ts;
        }
        let at = slot * self.dims;
        let rows = &mut self.rows[c];
        if at == rows.len() {
            // Still growing: double, but never past `cap` rows.
            if rows.len() == rows.capacity() {
                let room = self.cap * self.dims - rows.len();
                rows.reserve_exact(rows.len().max(self.dims).min(room));
            }
            rows.extend_from_slice(&x[..self.dims]);
        } else {
            rows[at..at + self.dims].copy_from_slice(&x[..self.dims]);
        }
        self.next[c] = (self.next[c] + 1) % self.cap;
        self.len[c] = (self.len[c] + 1).min(self.cap);
    }

    /// Vectors held of each class (genuine, fraud).
    pub fn len(&self) -> [usize; 2] {
        self.len
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == [0, 0]
    }

    /// A copy of every vector held, genuine then fraud, oldest first per class.
    pub fn snapshot(&self) -> TrainingSet {
        self.snapshot_between(i64::MIN, i64::MAX)
    }

    /// A copy of the vectors held whose transaction time is in `from..=to`
    /// (and of those without a time), genuine then fraud, oldest first per class.
    pub fn snapshot_between(&self, from: i64, to: i64) -> TrainingSet {
        let mut set = TrainingSet::default();
        self.snapshot_into(&mut set, from, to);
        set
    }

    /// [`Self::snapshot_between`] into `set`, reusing its memory: a
    /// snapshot is tens of MB, and allocating and freeing one per training
    /// fragments the heap (measured in the soak, docs/benchmarks.md).
    pub fn snapshot_into(&self, set: &mut TrainingSet, from: i64, to: i64) {
        let (x, y) = (&mut set.x, &mut set.y);
        x.clear();
        y.clear();
        x.reserve((self.len[0] + self.len[1]) * self.dims);
        y.reserve(self.len[0] + self.len[1]);
        for c in 0..2 {
            let start = if self.len[c] < self.cap {
                0
            } else {
                self.next[c]
            };
            for i in 0..self.len[c] {
                let r = (start + i) % self.cap;
                // (`<[_]>::get`: smartcore's `Array` has a `get` too.)
                if <[i64]>::get(&self.ts[c], r)
                    .is_some_and(|&t| t != NO_TIME && !(from..=to).contains(&t))
                {
                    continue;
                }
                x.extend_from_slice(&self.rows[c][r * self.dims..][..self.dims]);
                y.push(c as u32);
            }
        }
        set.dims = self.dims;
    }
}

/// Rows to train on (row-major).
#[derive(Clone, Debug, Default)]
pub struct TrainingSet {
    dims: usize,
    x: Vec<f32>,
    y: Vec<u32>,
}

impl TrainingSet {
    /// Rows of each class (genuine, fraud).
    pub fn counts(&self) -> [usize; 2] {
        let frauds = self.y.iter().filter(|&&y| y == 1).count();
        [self.y.len() - frauds, frauds]
    }
}

/// A trained batch model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BatchModel {
    /// A logistic regression.
    Linear(BatchLinear),
    /// A random forest.
    Forest(TrainedForest),
}

/// A [`BatchForest`] and when it was trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainedForest {
    /// The trees.
    pub forest: BatchForest,
    /// Labels seen when its snapshot was taken.
    pub trained_at: u64,
    /// Rows it was trained on.
    pub rows: u64,
}

impl BatchModel {
    /// Fraud probability of `x` (its first `dims` values).
    #[inline]
    pub fn score(&self, x: &[f32]) -> f64 {
        match self {
            BatchModel::Linear(m) => m.score(x),
            BatchModel::Forest(m) => m.forest.score(x),
        }
    }

    /// The `top` largest positive contributions to the score of `x`: exact
    /// log-odds for the logistic regression, Saabas for the forest.
    pub fn explain(
        &self,
        x: &[f32],
        names: &[CompactString],
        top: usize,
        out: &mut Vec<Contribution>,
    ) {
        match self {
            BatchModel::Linear(m) => m.explain(x, names, top, out),
            BatchModel::Forest(m) => m.forest.explain(x, names, top, out),
        }
    }

    /// Labels seen when its snapshot was taken.
    pub fn trained_at(&self) -> u64 {
        match self {
            BatchModel::Linear(m) => m.trained_at,
            BatchModel::Forest(m) => m.trained_at,
        }
    }

    /// Rows it was trained on.
    pub fn rows(&self) -> u64 {
        match self {
            BatchModel::Linear(m) => m.rows,
            BatchModel::Forest(m) => m.rows,
        }
    }

    /// Train `cfg.learner` on `set`; `prior` is the stream's fraud rate;
    /// `scratch` holds the forest's working buffers from one training to
    /// the next.
    fn train(
        set: &TrainingSet,
        cfg: &BatchConfig,
        prior: f64,
        trained_at: u64,
        scratch: &mut CartScratch,
    ) -> Result<Self, String> {
        match cfg.learner {
            Learner::Linear => BatchLinear::train(set, prior, cfg.l2, trained_at).map(Self::Linear),
            Learner::Forest => {
                let params = CartParams {
                    seed: cfg.forest.seed ^ trained_at,
                    ..cfg.forest
                };
                // Genuine rows were admitted at `negative_rate`: their odds
                // were scaled by its inverse.
                let odds_scale = cfg.negative_rate;
                BatchForest::train_with(&set.x, &set.y, set.dims, &params, odds_scale, scratch).map(
                    |forest| {
                        Self::Forest(TrainedForest {
                            forest,
                            trained_at,
                            rows: set.y.len() as u64,
                        })
                    },
                )
            }
        }
    }
}

/// A trained batch model as plain data: standardisation, weights, intercept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchLinear {
    mean: Vec<f64>,
    inv_sd: Vec<f64>,
    w: Vec<f64>,
    b: f64,
    /// Labels seen when its snapshot was taken.
    pub trained_at: u64,
    /// Rows it was trained on.
    pub rows: u64,
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-9, 1.0 - 1e-9);
    (p / (1.0 - p)).ln()
}

/// Standardised values are clipped to this many deviations (as the online model).
const CLIP: f64 = 8.0;

impl BatchLinear {
    #[inline]
    fn z(&self, j: usize, v: f32) -> f64 {
        ((v as f64 - self.mean[j]) * self.inv_sd[j]).clamp(-CLIP, CLIP)
    }

    /// Fraud probability of `x` (its first `dims` values).
    pub fn score(&self, x: &[f32]) -> f64 {
        let mut m = self.b;
        for (j, (&w, &v)) in self.w.iter().zip(x).enumerate() {
            m += w * self.z(j, v);
        }
        sigmoid(m)
    }

    /// Exact contributions to the log-odds (weight × standardised value),
    /// the `top` largest positive ones.
    pub fn explain(
        &self,
        x: &[f32],
        names: &[CompactString],
        top: usize,
        out: &mut Vec<Contribution>,
    ) {
        out.clear();
        for _ in 0..top {
            let mut best: Option<(usize, f64)> = None;
            for (j, (&w, &v)) in self.w.iter().zip(x).enumerate() {
                let c = w * self.z(j, v);
                if c > 0.0
                    && best.map_or(true, |b| c > b.1)
                    && !out.iter().any(|o: &Contribution| o.feature == names[j])
                {
                    best = Some((j, c));
                }
            }
            let Some((j, c)) = best else { break };
            out.push(Contribution {
                feature: names[j].clone(),
                value: c,
            });
        }
    }

    /// Train a logistic regression on `set` (Newton's method, `fit_newton`); the intercept is
    /// shifted from the buffer's fraud rate to `prior` (the stream's), so
    /// probabilities are on the stream's scale although the rows are balanced.
    pub fn train(set: &TrainingSet, prior: f64, l2: f64, trained_at: u64) -> Result<Self, String> {
        let d = set.dims;
        let n = set.y.len();
        if n == 0 {
            return Err("empty training set".into());
        }
        let mut mean = vec![0.0; d];
        let mut m2 = vec![0.0; d];
        for (i, row) in set.x.chunks_exact(d).enumerate() {
            let k = (i + 1) as f64;
            for j in 0..d {
                let v = row[j] as f64;
                let delta = v - mean[j];
                mean[j] += delta / k;
                m2[j] += delta * (v - mean[j]);
            }
        }
        let inv_sd: Vec<f64> = m2
            .iter()
            .map(|&s| {
                let sd = (s / n as f64).sqrt();
                if sd < 1e-9 {
                    0.0
                } else {
                    1.0 / sd
                }
            })
            .collect();
        let mut model = BatchLinear {
            mean,
            inv_sd,
            w: vec![0.0; d],
            b: 0.0,
            trained_at,
            rows: n as u64,
        };
        let values: Vec<f64> = set
            .x
            .chunks_exact(d)
            .flat_map(|row| (0..d).map(move |j| (j, row[j])))
            .map(|(j, v)| model.z(j, v))
            .collect();
        let (w, b) = fit_newton(&values, &set.y, d, l2)?;
        model.w = w;
        let frauds = set.y.iter().filter(|&&y| y == 1).count() as f64;
        let buffer_rate = frauds / n as f64;
        model.b = b + logit(prior) - logit(buffer_rate);
        Ok(model)
    }
}

/// The L2-penalised logistic regression of labels `y` on the `d` columns of
/// row-major `x`, by Newton's method: weights and intercept minimising
/// `Σ log(1 + e^z) − y·z + l2/2 · |w|²` (intercept not penalised), the
/// objective of smartcore's `LogisticRegression`, to which it is tested
/// equal. smartcore fits it by L-BFGS to a gradient tolerance of 1e-8 (up
/// to 1,000 iterations), which took 85 % of a blend's CPU (measured: the
/// blend 14,540 transactions/s, 100,903 without retraining); the problem is
/// small (4,000 rows, a few dozen columns), smooth and convex, where
/// Newton's method converges quadratically; each step solves the Hessian
/// by smartcore's Cholesky factor. Steps are halved while they do not lower
/// the objective.
fn fit_newton(x: &[f64], y: &[u32], d: usize, l2: f64) -> Result<(Vec<f64>, f64), String> {
    let p = d + 1; // weights, then the intercept
    let n = y.len();
    let objective = |beta: &[f64]| -> f64 {
        let mut f = 0.0;
        for (row, &yi) in x.chunks_exact(d).zip(y) {
            let z = margin(beta, row);
            f += ln_1p_exp(z) - f64::from(yi) * z;
        }
        f + 0.5 * l2 * beta[..d].iter().map(|w| w * w).sum::<f64>()
    };
    let mut beta = vec![0.0; p];
    let mut f = objective(&beta);
    let mut g = vec![0.0; p];
    let mut h = vec![0.0; p * p];
    let mut row1 = vec![0.0; p];
    for _ in 0..100 {
        g.iter_mut().for_each(|v| *v = 0.0);
        h.iter_mut().for_each(|v| *v = 0.0);
        for (row, &yi) in x.chunks_exact(d).zip(y) {
            let mu = sigmoid(margin(&beta, row));
            let (r, s) = (mu - f64::from(yi), (mu * (1.0 - mu)).max(1e-12));
            row1[..d].copy_from_slice(row);
            row1[d] = 1.0;
            for j in 0..p {
                g[j] += r * row1[j];
                let sj = s * row1[j];
                // Upper triangle; mirrored below.
                for k in j..p {
                    h[j * p + k] += sj * row1[k];
                }
            }
        }
        for j in 0..d {
            g[j] += l2 * beta[j];
            h[j * p + j] += l2;
        }
        h[d * p + d] += 1e-9 * n as f64;
        for j in 0..p {
            for k in 0..j {
                h[j * p + k] = h[k * p + j];
            }
        }
        let step = solve_spd(&h, &g, p)?;
        let mut t = 1.0;
        let mut next = beta.clone();
        let mut f_next = f;
        for _ in 0..30 {
            for ((b, &bj), &sj) in next.iter_mut().zip(&beta).zip(&step) {
                *b = bj - t * sj;
            }
            f_next = objective(&next);
            if f_next <= f {
                break;
            }
            t /= 2.0;
        }
        let moved = step.iter().map(|v| (t * v).abs()).fold(0.0, f64::max);
        if f_next.is_nan() || f_next > f {
            break; // no step lowers it: at the optimum to rounding
        }
        let gain = f - f_next;
        beta = next;
        f = f_next;
        if moved < 1e-9 || gain <= 1e-12 * f.abs().max(1.0) {
            break;
        }
    }
    if beta.iter().any(|v| !v.is_finite()) {
        return Err("the fit did not converge to finite weights".into());
    }
    let b = beta.pop().expect("p = d + 1 values");
    Ok((beta, b))
}

/// `w · row + intercept` for `beta` = weights then intercept.
fn margin(beta: &[f64], row: &[f64]) -> f64 {
    let d = row.len();
    beta[..d].iter().zip(row).map(|(w, v)| w * v).sum::<f64>() + beta[d]
}

/// `ln(1 + e^z)` without overflow.
fn ln_1p_exp(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// Solve `h · s = g` for a symmetric positive definite `h` (`p`×`p`, row
/// major) with smartcore's Cholesky factor `L` (`h = L·Lᵀ`): forward, then
/// back substitution.
fn solve_spd(h: &[f64], g: &[f64], p: usize) -> Result<Vec<f64>, String> {
    let m = DenseMatrix::new(p, p, h.to_vec(), false).map_err(|e| e.to_string())?;
    let l = m.cholesky().map_err(|e| e.to_string())?.L();
    let mut v = vec![0.0; p];
    for i in 0..p {
        let mut acc = g[i];
        for (k, vk) in v.iter().enumerate().take(i) {
            acc -= *l.get((i, k)) * vk;
        }
        v[i] = acc / *l.get((i, i));
    }
    let mut s = vec![0.0; p];
    for i in (0..p).rev() {
        let mut acc = v[i];
        for (k, sk) in s.iter().enumerate().skip(i + 1) {
            acc -= *l.get((k, i)) * sk;
        }
        s[i] = acc / *l.get((i, i));
    }
    Ok(s)
}

/// Make the calling thread yield the CPU to the engine's threads: training
/// is background work, and on a machine with as many busy threads as cores
/// it would otherwise take turns with the card stage (measured: in-engine
/// p99 2.6× higher while retraining every 10,000 labels on 2 cores).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread; failure is harmless
    // (the thread keeps its priority).
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
    }
}

/// A training job and where its result goes.
struct Job {
    set: TrainingSet,
    cfg: BatchConfig,
    prior: f64,
    trained_at: u64,
}

/// A trained model (or why not), and the training set's memory back for
/// the next snapshot.
type Trained = (Result<BatchModel, String>, TrainingSet);

/// The background training thread's ends of the channels.
#[derive(Debug)]
struct Trainer {
    jobs: Sender<Job>,
    results: Receiver<Trained>,
}

impl Trainer {
    fn spawn() -> Self {
        let (jobs, job_rx) = unbounded::<Job>();
        let (result_tx, results) = unbounded();
        std::thread::Builder::new()
            .name("fraudstream-batch".into())
            .spawn(move || {
                lower_priority();
                // The forest's buffers live as long as the thread: no large
                // block is freed and allocated again at each training.
                let mut scratch = CartScratch::default();
                for job in job_rx {
                    let r = BatchModel::train(
                        &job.set,
                        &job.cfg,
                        job.prior,
                        job.trained_at,
                        &mut scratch,
                    );
                    if result_tx.send((r, job.set)).is_err() {
                        return;
                    }
                }
            })
            .expect("spawn the batch training thread");
        Trainer { jobs, results }
    }
}

/// The batch champion of one card stage: buffer, current model, schedule.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchChampion {
    cfg: BatchConfig,
    buffer: BalancedBuffer,
    model: Option<BatchModel>,
    labels: u64,
    frauds: u64,
    /// Latest transaction time among the genuine labels (the end of a
    /// windowed snapshot).
    genuine_ts: i64,
    next_snapshot: u64,
    last_snapshot: u64,
    /// Models trained and swapped in.
    pub swaps: u64,
    /// Trainings that failed (kept the previous model).
    pub failures: u64,
    /// Label count at which the job in flight is swapped in (`AtLabel`).
    #[serde(skip)]
    in_flight: Option<u64>,
    /// The last training set's memory, for the next snapshot.
    #[serde(skip)]
    spare: TrainingSet,
    #[serde(skip)]
    trainer: Option<Trainer>,
}

impl BatchChampion {
    /// No model yet, an empty buffer for vectors of `dims` values.
    pub fn new(dims: usize, cfg: BatchConfig) -> Self {
        BatchChampion {
            buffer: BalancedBuffer::new(dims, cfg.buffer.max(1)),
            cfg,
            model: None,
            labels: 0,
            frauds: 0,
            genuine_ts: NO_TIME,
            next_snapshot: cfg.retrain_every,
            last_snapshot: 0,
            swaps: 0,
            failures: 0,
            in_flight: None,
            spare: TrainingSet::default(),
            trainer: None,
        }
    }

    /// Labelled vectors held in the buffer (both classes), at most
    /// `buffer` per class: what `fraudstream_batch_rows` reports.
    pub fn rows_held(&self) -> usize {
        let [neg, pos] = self.buffer.len();
        neg + pos
    }

    /// The current model, once one has been swapped in.
    pub fn model(&self) -> Option<&BatchModel> {
        self.model.as_ref()
    }

    /// Fraud probability under the current model, `None` before the first.
    #[inline]
    pub fn score(&self, x: &[f32]) -> Option<f64> {
        self.model.as_ref().map(|m| m.score(x))
    }

    /// Swap in a finished model without waiting (`WhenReady`; a no-op in
    /// `AtLabel` mode). Cheap enough per transaction: one atomic load when
    /// nothing is ready.
    #[inline]
    pub fn poll(&mut self) {
        if self.cfg.swap != SwapMode::WhenReady || self.in_flight.is_none() {
            return;
        }
        if let Some(t) = &self.trainer {
            if let Ok(r) = t.results.try_recv() {
                self.install(r);
            }
        }
    }

    fn install(&mut self, (r, set): Trained) {
        self.in_flight = None;
        self.spare = set;
        match r {
            Ok(m) => {
                self.model = Some(m);
                self.swaps += 1;
            }
            Err(_) => self.failures += 1,
        }
    }

    /// Snapshot at the next label instead of waiting for the schedule
    /// (after a detected drift).
    /// At most once per quarter of `retrain_every`.
    pub fn retrain_soon(&mut self) {
        let earliest = self.last_snapshot + self.cfg.retrain_every / 4;
        self.next_snapshot = self.next_snapshot.min(earliest.max(self.labels + 1));
    }

    /// Take in one labelled vector (its first `dims` values) of the
    /// transaction `tx_key` at `tx_ts`; snapshots and swaps happen here, on
    /// schedule.
    pub fn learn(&mut self, x: &[f32], is_fraud: bool, tx_key: u64, tx_ts: i64) {
        self.labels += 1;
        if is_fraud {
            self.frauds += 1;
            self.buffer.push(x, true, tx_ts);
        } else {
            self.genuine_ts = self.genuine_ts.max(tx_ts);
            let h = key_of(&(tx_key ^ self.cfg.seed).to_le_bytes());
            if ((h >> 11) as f64 / (1u64 << 53) as f64) < self.cfg.negative_rate {
                self.buffer.push(x, false, tx_ts);
            }
        }
        if self.cfg.swap == SwapMode::AtLabel && self.in_flight == Some(self.labels) {
            let r = match &self.trainer {
                Some(t) => t
                    .results
                    .recv()
                    .unwrap_or_else(|e| (Err(e.to_string()), TrainingSet::default())),
                None => (Err("no trainer".into()), TrainingSet::default()),
            };
            self.install(r);
        }
        let [neg, pos] = self.buffer.len();
        if self.labels >= self.next_snapshot
            && self.in_flight.is_none()
            && pos >= self.cfg.min_frauds
            && neg > 0
        {
            self.next_snapshot = self.labels + self.cfg.retrain_every;
            self.last_snapshot = self.labels;
            let mut set = std::mem::take(&mut self.spare);
            let (from, to) = if self.cfg.window_ms > 0 && self.genuine_ts != NO_TIME {
                let to = self.genuine_ts;
                (to.saturating_sub(self.cfg.window_ms), to)
            } else {
                (i64::MIN, i64::MAX)
            };
            self.buffer.snapshot_into(&mut set, from, to);
            let [neg, pos] = set.counts();
            if pos < self.cfg.min_frauds || neg == 0 {
                self.spare = set;
                return; // too few in the window: keep the current model
            }
            let job = Job {
                set,
                cfg: self.cfg,
                prior: (self.frauds as f64 / self.labels as f64).clamp(1e-6, 0.5),
                trained_at: self.labels,
            };
            let trainer = self.trainer.get_or_insert_with(Trainer::spawn);
            if trainer.jobs.send(job).is_ok() {
                self.in_flight = Some(self.labels + self.cfg.swap_after.max(1));
            } else {
                self.failures += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn example(rng: &mut rand_chacha::ChaCha8Rng) -> (Vec<f32>, bool) {
        let fraud = rng.gen_bool(0.02);
        let mut x: Vec<f32> = (0..4).map(|_| rng.gen::<f32>()).collect();
        x[2] += if fraud { 1.5 } else { 0.0 };
        (x, fraud)
    }

    #[test]
    fn newtons_fit_is_smartcores_logistic_regression() {
        use smartcore::linear::logistic_regression::{
            LogisticRegression, LogisticRegressionParameters,
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let (n, d) = (2_000, 6);
        let mut x = Vec::with_capacity(n * d);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let row: Vec<f64> = (0..d).map(|_| rng.gen::<f64>() * 2.0 - 1.0).collect();
            let z = 2.0 * row[0] - 1.5 * row[3] + 0.5 * row[5] - 1.0;
            y.push(u32::from(rng.gen::<f64>() < sigmoid(z)));
            x.extend(row);
        }
        for l2 in [0.0, 1.0, 50.0] {
            let (w, b) = fit_newton(&x, &y, d, l2).unwrap();
            let m = DenseMatrix::new(n, d, x.clone(), false).unwrap();
            let params = LogisticRegressionParameters::default().with_alpha(l2);
            let fit = LogisticRegression::fit(&m, &y, params).unwrap();
            for (j, wj) in w.iter().enumerate() {
                let theirs = *fit.coefficients().get((0, j));
                assert!(
                    (wj - theirs).abs() < 1e-4,
                    "l2 {l2}, w{j}: {wj} against {theirs}"
                );
            }
            let theirs = *fit.intercept().get((0, 0));
            assert!(
                (b - theirs).abs() < 1e-4,
                "l2 {l2}, b: {b} against {theirs}"
            );
        }
        // The weights it recovers are those that made the labels.
        let (w, b) = fit_newton(&x, &y, d, 0.0).unwrap();
        assert!(
            (w[0] - 2.0).abs() < 0.4 && (w[3] + 1.5).abs() < 0.4,
            "{w:?}"
        );
        assert!((b + 1.0).abs() < 0.3, "{b}");
    }

    #[test]
    fn buffer_keeps_the_newest_per_class() {
        let mut b = BalancedBuffer::new(1, 3);
        for i in 0..5 {
            b.push(&[i as f32], false, i);
        }
        b.push(&[100.0], true, 9);
        let s = b.snapshot();
        assert_eq!(s.x, vec![2.0, 3.0, 4.0, 100.0]);
        assert_eq!(s.y, vec![0, 0, 0, 1]);
        assert_eq!(b.len(), [3, 1]);
    }

    /// Found by fuzzing (fuzz/regressions/topology/batch-buffer-10-million):
    /// the rings were allocated whole at start, 2 x dims x buffer values
    /// (gigabytes for buffer = 10,000,000), and written whole to every checkpoint.
    #[test]
    fn rings_grow_with_the_rows_kept_and_no_further() {
        let (dims, cap) = (3, 10_000_000);
        let mut b = BalancedBuffer::new(dims, cap);
        assert_eq!(b.rows.each_ref().map(|r| r.capacity()), [0, 0]);
        b.push(&[1.0, 2.0, 3.0], true, 0);
        assert_eq!(b.rows[1].capacity(), dims);
        let mut small = BalancedBuffer::new(dims, 5);
        for i in 0..12 {
            small.push(&[i as f32; 3], false, i);
            assert!(small.rows[0].capacity() <= 5 * dims);
        }
        assert_eq!(small.rows[0].len(), 5 * dims);
        let rows: Vec<f32> = small.snapshot().x.into_iter().step_by(dims).collect();
        assert_eq!(rows, [7.0, 8.0, 9.0, 10.0, 11.0]);
        // A ring written whole (before the rings grew) goes on as one.
        let mut whole = BalancedBuffer::new(1, 3);
        whole.rows[0] = vec![0.0; 3];
        for i in 0..4 {
            whole.push(&[i as f32], false, i);
        }
        assert_eq!(whole.snapshot().x, [1.0, 2.0, 3.0]);
    }

    #[test]
    fn a_windowed_snapshot_holds_the_rows_of_its_span() {
        let mut b = BalancedBuffer::new(1, 100);
        for t in 0..10 {
            b.push(&[t as f32], false, t);
            b.push(&[100.0 + t as f32], true, t + 5);
        }
        let s = b.snapshot_between(3, 8);
        assert_eq!(
            s.x,
            [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 100.0, 101.0, 102.0, 103.0]
        );
        assert_eq!(s.counts(), [6, 4]);
        assert_eq!(b.snapshot().counts(), [10, 10]);
    }

    /// Frauds labelled at once, genuine transactions a day after them (the
    /// default simulation's label process, faster): the forest learns the
    /// day before the newest genuine label, swaps on schedule, is
    /// deterministic.
    #[test]
    fn the_forest_learns_the_latest_labelled_window() {
        let minute = 60_000;
        let cfg = BatchConfig {
            retrain_every: 4000,
            swap_after: 100,
            min_frauds: 20,
            window_ms: 1440 * minute,
            negative_rate: 1.0,
            forest: CartParams {
                trees: 20,
                ..CartParams::default()
            },
            ..BatchConfig::forest()
        };
        let run = || {
            let mut c = BatchChampion::new(4, cfg);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
            let mut late = std::collections::VecDeque::new();
            for i in 0..12_000i64 {
                // A transaction a minute; a fraud's label at once, a
                // genuine one's 1,440 minutes later.
                let (x, y) = example(&mut rng);
                if y {
                    c.learn(&x, true, i as u64, i * minute);
                } else {
                    late.push_back((i, x));
                }
                while late.front().is_some_and(|(j, _)| j + 1440 <= i) {
                    let (j, x) = late.pop_front().unwrap();
                    c.learn(&x, false, j as u64, j * minute);
                }
            }
            c
        };
        let c = run();
        assert_eq!(
            c.swaps, 2,
            "models of the snapshots at 4,000 and 8,000 labels"
        );
        let Some(BatchModel::Forest(m)) = c.model() else {
            panic!("a forest: {:?}", c.model().map(BatchModel::rows));
        };
        assert_eq!(m.trained_at, 8000);
        // Every transaction of the 1,441 minutes up to the newest genuine
        // label's, both classes, and none of the frauds labelled since.
        assert_eq!(m.rows, 1441);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(10);
        let pairs: Vec<(f32, bool)> = (0..3000)
            .map(|_| {
                let (x, y) = example(&mut rng);
                (m.forest.score(&x) as f32, y)
            })
            .collect();
        let auc = crate::eval::roc_auc(&pairs).unwrap();
        assert!(auc > 0.9, "auc {auc}");
        assert_eq!(run().model(), c.model());
    }

    #[test]
    fn trains_in_the_background_and_swaps_at_the_planned_label() {
        let cfg = BatchConfig {
            buffer: 500,
            negative_rate: 0.5,
            retrain_every: 3000,
            swap_after: 100,
            min_frauds: 20,
            ..BatchConfig::linear()
        };
        let run = || {
            let mut c = BatchChampion::new(4, cfg);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
            let mut swapped_at = None;
            for i in 0..7000u64 {
                let (x, y) = example(&mut rng);
                c.learn(&x, y, i, i as i64);
                if swapped_at.is_none() && c.model().is_some() {
                    swapped_at = Some(i + 1);
                }
            }
            (c, swapped_at)
        };
        let (c, at) = run();
        assert_eq!(
            at,
            Some(3100),
            "first swap exactly swap_after labels after the snapshot"
        );
        assert_eq!(c.swaps, 2);
        let m = c.model().unwrap();
        assert_eq!(m.trained_at(), 6000);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(10);
        let pairs: Vec<(f32, bool)> = (0..3000)
            .map(|_| {
                let (x, y) = example(&mut rng);
                (m.score(&x) as f32, y)
            })
            .collect();
        let auc = crate::eval::roc_auc(&pairs).unwrap();
        assert!(auc > 0.95, "auc {auc}");
        // prior-corrected: the mean score is near the stream's fraud rate
        let mean: f64 = pairs.iter().map(|p| p.0 as f64).sum::<f64>() / 3000.0;
        assert!(mean < 0.1, "mean score {mean}");
        // the same stream gives the same model
        assert_eq!(run().0.model(), c.model());
        let json = serde_json::to_string(&c).unwrap();
        let back: BatchChampion = serde_json::from_str(&json).unwrap();
        assert_eq!(back.model(), c.model());
    }
}
