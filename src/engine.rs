//! The engine: one transaction in, one score out; one label in, one model
//! update. Owns the feature state, the model, the pending store and the
//! prequential evaluation, and nothing that does I/O.
//!
//! ```text
//! transaction ─► features (card, merchant) ─► model.score ─► Score
//!                      │                                     │
//!                      └──────────► pending store ◄──────────┘
//! label ─► pending.take ─► model.learn, merchant risk, card fraud signal
//! ```

use crate::config::Topology;
use crate::eval::{EvalConfig, LabelOutcome, Prequential};
use crate::event::{key_of, Contribution, Label, Score, Transaction};
use crate::features::{FeatureExtractor, FeatureVector};
use crate::model::{Imbalance, LogisticModel, OnlineModel};
use crate::pending::{PendingFeatures, PendingMeta};
use hdrhistogram::Histogram;
use std::time::Instant;

/// Counters of one engine; published to `metrics` by [`Engine::publish_metrics`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EngineCounters {
    /// Transactions scored.
    pub scored: u64,
    /// Transactions behind the allowed lateness (scored, not windowed).
    pub late: u64,
    /// Alerts raised.
    pub alerts: u64,
    /// Labels received.
    pub labels: u64,
    /// Labels joined to a pending feature vector.
    pub labels_joined: u64,
    /// Joined labels the model learnt from (the rest were subsampled away).
    pub labels_learnt: u64,
    /// Labels for transactions never seen, expired or evicted.
    pub labels_unknown: u64,
    /// Second labels for the same transaction (not learnt from).
    pub labels_duplicate: u64,
    /// Cards evicted as idle.
    pub cards_evicted: u64,
    /// Merchants evicted as idle.
    pub merchants_evicted: u64,
}

/// Settings the engine reads from a topology.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    threshold: f64,
    lateness_ms: i64,
    idle_ms: i64,
    eviction_interval_ms: i64,
    explain_top: usize,
    learn: bool,
    imbalance: Imbalance,
    seed: u64,
}

/// The scoring and learning core.
pub struct Engine {
    cfg: EngineConfig,
    features: FeatureExtractor,
    model: LogisticModel,
    pending: PendingFeatures,
    eval: Prequential,
    counters: EngineCounters,
    published: EngineCounters,
    latency_ns: Histogram<u64>,
    newest_ts: i64,
    next_eviction: i64,
    x: FeatureVector,
    label_x: FeatureVector,
    explain_buf: Vec<Contribution>,
}

/// What happened to a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelResult {
    /// Joined and learnt from (or subsampled away).
    Joined,
    /// No pending vector for it.
    Unknown,
    /// Already labelled.
    Duplicate,
}

impl Engine {
    /// An engine for `topology`, with a fresh model or the one it names to load.
    pub fn new(topology: &Topology) -> anyhow::Result<Self> {
        let features = FeatureExtractor::new(topology.features.clone());
        let space = features.space().clone();
        let model = match &topology.model.load {
            Some(path) => LogisticModel::load(path, &space)?,
            None => LogisticModel::new(&space, topology.model.logistic),
        };
        let origin_ms = match &topology.source {
            crate::config::SourceConfig::Simulator(s) => s.start_ms,
            crate::config::SourceConfig::File(_) => 0,
        };
        Ok(Engine {
            cfg: EngineConfig {
                threshold: topology.engine.alert_threshold,
                lateness_ms: topology.engine.allowed_lateness_ms,
                idle_ms: topology.engine.idle_eviction_ms,
                eviction_interval_ms: topology.engine.eviction_interval_ms,
                explain_top: topology.engine.explain_top,
                learn: topology.labels.learn,
                imbalance: topology.model.imbalance,
                seed: topology.engine.seed,
            },
            pending: PendingFeatures::new(
                space.dense_len(),
                topology.pending.capacity,
                topology.pending.ttl_ms,
            ),
            eval: Prequential::new(EvalConfig {
                threshold: topology.engine.alert_threshold,
                k: topology.evaluation.k,
                unlabeled: topology.evaluation.unlabeled,
                origin_ms,
            }),
            features,
            model,
            counters: EngineCounters::default(),
            published: EngineCounters::default(),
            latency_ns: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds"),
            newest_ts: i64::MIN,
            next_eviction: i64::MIN,
            x: FeatureVector::default(),
            label_x: FeatureVector::default(),
            explain_buf: Vec::new(),
        })
    }

    /// Score one transaction (test), keep its features for its label (train later).
    pub fn score(&mut self, tx: Transaction) -> Score {
        let started = Instant::now();
        let ts = tx.ts;
        let late =
            self.newest_ts != i64::MIN && ts < self.newest_ts.saturating_sub(self.cfg.lateness_ms);
        if late {
            self.counters.late += 1;
        }
        self.newest_ts = self.newest_ts.max(ts);
        if self.newest_ts >= self.next_eviction {
            self.evict();
        }
        let card = key_of(tx.card_id.as_bytes());
        let merchant = key_of(tx.merchant_id.as_bytes());
        let tx_key = tx.tx_id.key();
        self.features
            .extract_and_update(&tx, card, merchant, late, &mut self.x);
        let p = self.model.score(&self.x);
        let alert = p >= self.cfg.threshold;
        let mut top = Vec::new();
        if alert {
            self.counters.alerts += 1;
            if self.cfg.explain_top > 0 {
                self.model
                    .explain(&self.x, self.cfg.explain_top, &mut self.explain_buf);
                top = std::mem::take(&mut self.explain_buf);
            }
        }
        self.pending.insert(
            tx_key,
            &self.x,
            PendingMeta {
                card,
                merchant,
                ts,
                cats: self.x.cats,
            },
        );
        self.eval.record_score(tx_key, ts, card, p as f32);
        self.counters.scored += 1;
        let score = Score {
            tx_id: tx.tx_id,
            ts,
            card_id: tx.card_id,
            score: p,
            alert,
            model_version: self.model.version(),
            top_features: top,
        };
        let ns = started.elapsed().as_nanos() as u64;
        self.latency_ns.saturating_record(ns.max(1));
        if self.counters.scored % 64 == 0 {
            // A 1-in-64 sample keeps the metrics registry off most events.
            metrics::histogram!("fraudstream_scoring_latency_seconds").record(ns as f64 * 1e-9);
        }
        score
    }

    /// Join a label to its transaction's features and learn from it.
    pub fn label(&mut self, label: &Label) -> LabelResult {
        self.counters.labels += 1;
        let tx_key = label.tx_id.key();
        let outcome = self.eval.record_label(tx_key, label.is_fraud);
        match self.pending.take(tx_key, &mut self.label_x) {
            Some(meta) => {
                self.counters.labels_joined += 1;
                if self.cfg.learn {
                    if let Some(w) =
                        self.cfg
                            .imbalance
                            .weight(label.is_fraud, tx_key, self.cfg.seed)
                    {
                        self.model.learn(&self.label_x, label.is_fraud, w);
                        self.counters.labels_learnt += 1;
                    }
                    self.features
                        .apply_label(meta.card, meta.merchant, label.ts, label.is_fraud);
                }
                LabelResult::Joined
            }
            None => {
                if outcome == LabelOutcome::Duplicate {
                    self.counters.labels_duplicate += 1;
                    LabelResult::Duplicate
                } else {
                    self.counters.labels_unknown += 1;
                    LabelResult::Unknown
                }
            }
        }
    }

    fn evict(&mut self) {
        let before = self.newest_ts.saturating_sub(self.cfg.idle_ms);
        let (c, m) = self.features.evict_idle(before);
        self.counters.cards_evicted += c as u64;
        self.counters.merchants_evicted += m as u64;
        self.pending.expire(self.newest_ts);
        self.next_eviction = self.newest_ts.saturating_add(self.cfg.eviction_interval_ms);
    }

    /// Counters so far.
    pub fn counters(&self) -> EngineCounters {
        self.counters
    }

    /// Processing time per transaction (ns).
    pub fn latency(&self) -> &Histogram<u64> {
        &self.latency_ns
    }

    /// The evaluation so far.
    pub fn evaluation(&self) -> &Prequential {
        &self.eval
    }

    /// The feature state.
    pub fn features(&self) -> &FeatureExtractor {
        &self.features
    }

    /// The pending store.
    pub fn pending(&self) -> &PendingFeatures {
        &self.pending
    }

    /// The model.
    pub fn model(&self) -> &LogisticModel {
        &self.model
    }

    /// Add the counters accumulated since the last call to the `metrics`
    /// registry (cheap enough per batch, kept off the per-event path).
    pub fn publish_metrics(&mut self) {
        let c = self.counters;
        let p = self.published;
        metrics::counter!("fraudstream_transactions_scored_total").increment(c.scored - p.scored);
        metrics::counter!("fraudstream_transactions_late_total").increment(c.late - p.late);
        metrics::counter!("fraudstream_alerts_total").increment(c.alerts - p.alerts);
        metrics::counter!("fraudstream_labels_total").increment(c.labels - p.labels);
        metrics::counter!("fraudstream_labels_joined_total")
            .increment(c.labels_joined - p.labels_joined);
        metrics::counter!("fraudstream_labels_unknown_total")
            .increment(c.labels_unknown - p.labels_unknown);
        metrics::counter!("fraudstream_labels_duplicate_total")
            .increment(c.labels_duplicate - p.labels_duplicate);
        metrics::counter!("fraudstream_evictions_total", "entity" => "card")
            .increment(c.cards_evicted - p.cards_evicted);
        metrics::counter!("fraudstream_evictions_total", "entity" => "merchant")
            .increment(c.merchants_evicted - p.merchants_evicted);
        metrics::gauge!("fraudstream_pending_entries").set(self.pending.len() as f64);
        metrics::gauge!("fraudstream_model_version").set(self.model.version() as f64);
        self.published = c;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::TxId;

    fn engine(extra: &[&str]) -> Engine {
        let set: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Engine::new(&Topology::embedded(&set).unwrap()).unwrap()
    }

    fn tx(id: u64, ts: i64, amount: f64) -> Transaction {
        Transaction {
            tx_id: TxId::Int(id),
            ts,
            card_id: "card".into(),
            merchant_id: "shop".into(),
            amount,
            currency: None,
            mcc: None,
            country: None,
            channel: None,
            location: None,
        }
    }

    fn label(id: u64, ts: i64, is_fraud: bool) -> Label {
        Label {
            tx_id: TxId::Int(id),
            ts,
            is_fraud,
        }
    }

    #[test]
    fn a_label_trains_once_and_duplicates_are_counted() {
        let mut e = engine(&[]);
        let s = e.score(tx(1, 1_000, 10.0));
        assert_eq!(s.model_version, 0);
        assert!(
            (s.score - 0.01).abs() < 1e-9,
            "untrained model scores the prior: {}",
            s.score
        );
        assert!(!s.alert);
        assert_eq!(e.label(&label(1, 2_000, true)), LabelResult::Joined);
        assert_eq!(e.model().version(), 1);
        assert_eq!(e.label(&label(1, 3_000, true)), LabelResult::Duplicate);
        assert_eq!(e.label(&label(99, 3_000, false)), LabelResult::Unknown);
        assert_eq!(e.model().version(), 1, "neither trained");
        let c = e.counters();
        assert_eq!(
            (
                c.labels,
                c.labels_joined,
                c.labels_duplicate,
                c.labels_unknown
            ),
            (3, 1, 1, 1)
        );
    }

    #[test]
    fn learn_false_keeps_the_model_untouched_but_evaluates() {
        let mut e = engine(&["labels.learn=false"]);
        e.score(tx(1, 1_000, 10.0));
        e.label(&label(1, 2_000, true));
        assert_eq!(e.model().version(), 0);
        assert_eq!(e.evaluation().labeled(), 1);
    }

    #[test]
    fn late_transactions_are_counted_and_scored() {
        let mut e = engine(&["engine.allowed_lateness=\"1m\""]);
        e.score(tx(1, 10 * 60_000, 10.0));
        e.score(tx(2, 9 * 60_000 + 30_000, 10.0)); // 30 s behind: in time
        e.score(tx(3, 60_000, 10.0)); // 9 minutes behind: late
        assert_eq!(e.counters().late, 1);
        assert_eq!(e.counters().scored, 3);
    }

    #[test]
    fn expired_pending_entries_make_labels_unknown() {
        let mut e = engine(&["pending.ttl=\"1h\""]);
        e.score(tx(1, 0, 10.0));
        e.score(tx(2, 2 * 3_600_000, 10.0));
        assert_eq!(
            e.label(&label(1, 2 * 3_600_000, false)),
            LabelResult::Unknown
        );
        assert_eq!(e.pending().stats().expired, 1);
    }

    #[test]
    fn alerts_carry_their_top_contributions() {
        let mut e = engine(&["engine.alert_threshold=0.0"]);
        let s = e.score(tx(1, 0, 10.0));
        assert!(s.alert);
        // untrained: every weight is zero, so nothing contributes positively
        assert!(s.top_features.is_empty());
        for i in 0..200u64 {
            let big = i % 10 == 0;
            e.score(tx(10 + i, 1000 * i as i64, if big { 5000.0 } else { 10.0 }));
            e.label(&label(10 + i, 1000 * i as i64 + 1, big));
        }
        let s = e.score(tx(1000, 300_000, 5000.0));
        assert_eq!(s.top_features.len(), 3);
        assert!(s.top_features[0].value >= s.top_features[2].value);
    }
}
