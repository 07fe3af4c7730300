//! The served model: owns what one card stage scores, learns and explains
//! with, the online logistic regression and, unless `model.type` is the
//! logistic alone (without `compare`), the [`Portfolio`] beside it. The card
//! stage calls it once per score, once per learn and once per explanation,
//! whatever is served. The logistic regression stays idle (at its prior)
//! when nothing reads it: a forest, Half-Space Trees or batch model served
//! alone ([`PortfolioConfig::runs_logistic`]).

use super::portfolio::{MemberScores, Portfolio, PortfolioConfig};
use super::{Classifier, Explain, LogisticModel};
use crate::event::Contribution;
use crate::features::{FeatureSpace, FeatureVector};

/// The logistic regression and the optional portfolio of one card stage.
pub struct ServedModel {
    logistic: LogisticModel,
    portfolio: Option<Box<Portfolio>>,
    /// Whether the logistic regression scores and learns.
    runs_logistic: bool,
    /// Values per stored vector: the features, plus the portfolio's side values.
    stride: usize,
}

impl ServedModel {
    /// For features of `space`, starting from `logistic`; a portfolio is
    /// built when `cfg` runs one, its drift events dated in days from
    /// `origin_ms`.
    pub fn new(
        space: &FeatureSpace,
        logistic: LogisticModel,
        cfg: PortfolioConfig,
        origin_ms: i64,
    ) -> Self {
        let portfolio = cfg
            .runs_portfolio()
            .then(|| Box::new(Portfolio::new(space.names(), cfg, origin_ms)));
        let stride = portfolio.as_ref().map_or(space.dense_len(), |p| p.stride());
        ServedModel {
            logistic,
            portfolio,
            runs_logistic: cfg.runs_logistic(),
            stride,
        }
    }

    /// Values per stored vector (what the pending store keeps per transaction).
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Score the transaction whose features are in `x` (event time `ts`):
    /// returns the served score and, with a portfolio, every member's score
    /// (then the side values are written after the features in `x.dense`).
    pub fn score(&mut self, x: &mut FeatureVector, ts: i64) -> (f64, Option<MemberScores>) {
        let p_linear = if self.runs_logistic {
            self.logistic.predict_proba_one(x)
        } else {
            self.logistic.prior()
        };
        match self.portfolio.as_deref_mut() {
            Some(pf) => {
                let (p, members) = pf.score(x, p_linear, ts);
                (p, Some(members))
            }
            None => (p_linear, None),
        }
    }

    /// Take a transaction scored by another card stage (its stored vector,
    /// event time `ts`) into every score-time state, as scoring it here
    /// would have: the logistic regression's input statistics and the
    /// portfolio's ([`Portfolio::observe_scored`]).
    pub fn observe(&mut self, stored: &[f32], ts: i64) {
        if self.runs_logistic {
            self.logistic.observe(stored);
        }
        if let Some(pf) = self.portfolio.as_deref_mut() {
            pf.observe_scored(stored, ts);
        }
    }

    /// Learn from a joined label: `x` is the stored vector, `weight` the
    /// class weight (`None` if subsampled away: only the portfolio's drift
    /// detector and batch buffer see it then), `ts` the label's arrival and
    /// its transaction's event time, `tx_key` its transaction.
    pub fn learn(
        &mut self,
        x: &FeatureVector,
        is_fraud: bool,
        weight: Option<f64>,
        ts: (i64, i64),
        tx_key: u64,
    ) {
        // `auto` judging by current scores: the logistic model's, before it learns.
        let linear_now = (self.portfolio.as_deref())
            .is_some_and(Portfolio::judges_current)
            .then(|| self.logistic.score_unobserved(x));
        if let (Some(w), true) = (weight, self.runs_logistic) {
            self.logistic.learn_one(x, is_fraud, w);
        }
        if let Some(pf) = self.portfolio.as_deref_mut() {
            pf.learn(x, is_fraud, weight, ts, tx_key, linear_now);
        }
    }

    /// The `top` largest contributions to the served score of `x` (a stored
    /// vector), into `out`: the logistic regression's, or the portfolio's
    /// choice (see [`Portfolio::explain`]).
    pub fn explain(&mut self, x: &FeatureVector, top: usize, out: &mut Vec<Contribution>) {
        match self.portfolio.as_deref_mut() {
            Some(pf) => pf.explain(x, &mut self.logistic, top, out),
            None => self.logistic.explain_one(x, top, out),
        }
    }

    /// The served model's version: updates the logistic regression has
    /// applied, or, when it is idle, labels the portfolio has learnt from.
    pub fn version(&self) -> u64 {
        match self.portfolio.as_deref() {
            Some(pf) if !self.runs_logistic => pf.examples_learnt(),
            _ => self.logistic.version(),
        }
    }

    /// The logistic regression.
    pub fn logistic(&self) -> &LogisticModel {
        &self.logistic
    }

    /// The portfolio, when `model.type` is not the logistic alone.
    pub fn portfolio(&self) -> Option<&Portfolio> {
        self.portfolio.as_deref()
    }

    /// The logistic regression, to replace it (restoring a checkpoint).
    pub fn logistic_mut(&mut self) -> &mut LogisticModel {
        &mut self.logistic
    }

    /// The portfolio, to replace it (restoring a checkpoint).
    pub fn portfolio_mut(&mut self) -> Option<&mut Portfolio> {
        self.portfolio.as_deref_mut()
    }

    /// Take in another stage's input statistics and drift events (after a
    /// parallel run).
    pub fn absorb(&mut self, other: ServedModel) {
        self.logistic.absorb_statistics(&other.logistic);
        if let (Some(mine), Some(theirs)) = (self.portfolio.as_deref_mut(), other.portfolio) {
            mine.absorb(*theirs);
        }
    }
}
