//! Delayed labels: the delay model (analyst confirmation, chargeback, genuine maturity) and
//! the queue of pending labels, released in (ts_ms, tx_id) order.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Exp1, StandardNormal};

use crate::{FraudPattern, GenuineLabels, LabelConfig, SimLabel, SimTransaction, DAY_MS, HOUR_MS};

/// A pending fraud label, ordered as a min-heap entry by (ts_ms, tx_id).
#[derive(Clone, Copy, PartialEq, Eq)]
struct PendingFraud {
    ts_ms: i64,
    tx_id: u64,
    pattern: FraudPattern,
}

impl Ord for PendingFraud {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.ts_ms, other.tx_id).cmp(&(self.ts_ms, self.tx_id))
    }
}

impl PartialOrd for PendingFraud {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// When a fraud's label is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LabelTiming {
    /// Analysts (exponential) or chargebacks (lognormal), drawn per fraud.
    Drawn,
    /// Reports in batches (`categories` family): the delay × U(0.25, 1.75),
    /// then the next daily batch at 02:00 UTC (the next full hour under a day).
    Batched,
    /// Exactly `chargeback_median_days` later (`handbook` family: the
    /// book's fixed delay period).
    Fixed,
}

/// Draws each transaction's label delay and holds the labels until they are due.
pub(crate) struct LabelQueue {
    /// Own ChaCha8 stream, so label delays do not shift the transaction generator.
    rng: ChaCha8Rng,
    analyst_share: f64,
    chargeback_sigma: f64,
    fraud_labels: BinaryHeap<PendingFraud>,
    /// (ts_ms, tx_id) of pending genuine labels; constant maturity keeps this FIFO sorted.
    genuine_labels: VecDeque<(i64, u64)>,
    maturity_ms: Option<i64>,
    analyst_mean_ms: f64,
    chargeback_ln_median_ms: f64,
    max_delay_ms: f64,
    /// How a fraud's delay is drawn.
    timing: LabelTiming,
    /// `chargeback_median_days` in ms: the batched mean and the fixed delay.
    median_ms: f64,
}

impl LabelQueue {
    /// An empty queue drawing delays from `rng` according to `l`.
    pub(crate) fn new(l: &LabelConfig, rng: ChaCha8Rng, timing: LabelTiming) -> Self {
        let maturity_ms = match l.genuine {
            GenuineLabels::Never => None,
            GenuineLabels::After { maturity_days } => {
                Some(((maturity_days * DAY_MS as f64).round() as i64).max(1))
            }
        };
        LabelQueue {
            rng,
            analyst_share: l.analyst_share,
            chargeback_sigma: l.chargeback_sigma,
            fraud_labels: BinaryHeap::new(),
            genuine_labels: VecDeque::new(),
            maturity_ms,
            analyst_mean_ms: l.analyst_mean_hours * HOUR_MS as f64,
            chargeback_ln_median_ms: (l.chargeback_median_days * DAY_MS as f64).ln(),
            max_delay_ms: l.max_delay_days * DAY_MS as f64,
            timing,
            median_ms: l.chargeback_median_days * DAY_MS as f64,
        }
    }

    /// Number of labels not yet released.
    pub(crate) fn pending(&self) -> usize {
        self.fraud_labels.len() + self.genuine_labels.len()
    }

    /// Draws the label of a just-emitted transaction and queues it.
    pub(crate) fn schedule(&mut self, tx: &SimTransaction) {
        if let Some(pattern) = tx.fraud {
            let rng = &mut self.rng;
            let mean = self.median_ms;
            let delay = match self.timing {
                LabelTiming::Fixed => mean,
                LabelTiming::Batched => {
                    let d = (mean * rng.gen_range(0.25..1.75)).max(1.0) as i64;
                    let at = tx.ts_ms + d;
                    let (period, offset) = if mean >= DAY_MS as f64 {
                        (DAY_MS, 2 * HOUR_MS)
                    } else {
                        (HOUR_MS, 0)
                    };
                    let batch = (at - offset).div_euclid(period) * period + offset;
                    let due = if batch < at { batch + period } else { batch };
                    (due - tx.ts_ms) as f64
                }
                LabelTiming::Drawn if rng.gen::<f64>() < self.analyst_share => {
                    let e: f64 = rng.sample(Exp1);
                    e * self.analyst_mean_ms
                }
                LabelTiming::Drawn => {
                    let z: f64 = rng.sample(StandardNormal);
                    (self.chargeback_ln_median_ms + self.chargeback_sigma * z).exp()
                }
            };
            let delay = delay.min(self.max_delay_ms).max(1.0) as i64;
            self.fraud_labels.push(PendingFraud {
                ts_ms: tx.ts_ms + delay,
                tx_id: tx.tx_id,
                pattern,
            });
        } else if let Some(m) = self.maturity_ms {
            self.genuine_labels.push_back((tx.ts_ms + m, tx.tx_id));
        }
    }

    /// Pops the earliest pending label if its ts_ms <= `limit`.
    pub(crate) fn pop(&mut self, limit: i64) -> Option<SimLabel> {
        let f = self.fraud_labels.peek().map(|p| (p.ts_ms, p.tx_id));
        let g = self.genuine_labels.front().copied();
        let take_fraud = match (f, g) {
            (None, None) => return None,
            (Some(f), Some(g)) => f < g,
            (Some(_), None) => true,
            (None, Some(_)) => false,
        };
        if take_fraud {
            let p = self.fraud_labels.peek()?;
            if p.ts_ms > limit {
                return None;
            }
            let p = self.fraud_labels.pop()?;
            Some(SimLabel {
                tx_id: p.tx_id,
                ts_ms: p.ts_ms,
                is_fraud: true,
                pattern: Some(p.pattern),
            })
        } else {
            let (ts_ms, tx_id) = *self.genuine_labels.front()?;
            if ts_ms > limit {
                return None;
            }
            self.genuine_labels.pop_front();
            Some(SimLabel {
                tx_id,
                ts_ms,
                is_fraud: false,
                pattern: None,
            })
        }
    }
}
