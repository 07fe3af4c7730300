//! The live dashboard's data: the [`Snapshot`] an engine thread publishes
//! once per tick, and the [`Dashboard`] that keeps what a snapshot needs
//! between ticks. The page and its routes are in [`routes`].
//!
//! ```text
//! engine thread: every score ─► Dashboard::observe (decision counts; alerts into a ring of 20)
//!                every tick  ─► Dashboard::publish ─► Arc<Snapshot> in a watch ─► GET /events, /api/dashboard
//! ```
//!
//! The per-transaction path takes no lock and allocates only for an alert
//! (its row in the ring); everything else (rates, latency percentiles of the
//! interval, the bounded history) is worked out at the tick. The HTTP side
//! only clones an `Arc` out of the watch, so a slow browser never holds up
//! the engine.
//!
//! Personal data: a card id is masked in the snapshot itself ([`mask_card`]);
//! nothing the dashboard serves holds a whole one.

pub mod routes;

use crate::connectors::sinks::report::InputCounts;
use fraudstream_engine::decide::Decision;
use fraudstream_engine::engine::Engine;
use fraudstream_engine::event::{Contribution, Score};
use fraudstream_engine::model::portfolio::DriftEvent;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::watch;

/// Latest alerts a snapshot lists.
pub const LATEST_ALERTS: usize = 20;
/// Points of history a snapshot carries (two minutes at the services' 500 ms tick).
pub const HISTORY: usize = 120;
/// Latest drift events a snapshot lists.
pub const LATEST_DRIFT: usize = 20;

/// What the HTTP side reads: the latest snapshot, replaced at each tick.
pub type DashboardFeed = watch::Receiver<Arc<Snapshot>>;

/// One tick's view of a running service, as `GET /events` sends it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Snapshot {
    /// Which service: `api` (the scoring API) or `fluvio`.
    pub service: String,
    /// Wall-clock time of the tick (epoch ms; 0 before the first tick).
    pub at_ms: i64,
    /// Ticks published so far (1 for the first).
    pub tick: u64,
    /// Totals since the start (a restored service's include the
    /// checkpoint's).
    pub totals: Totals,
    /// Per second over the last interval.
    pub rates: Totals<f64>,
    /// Alerts per scored transaction over the last interval (0 without
    /// transactions).
    pub alert_rate: f64,
    /// Scoring latency percentiles over the last interval, in µs (none
    /// when nothing was scored in it).
    pub latency_us: Option<Percentiles>,
    /// Consumer lag per input partition (the Fluvio service; empty for the
    /// API, which has no topics).
    pub lag: Vec<PartitionLag>,
    /// Decisions since the start (all zero when the topology decides
    /// nothing).
    pub decisions: DecisionMix,
    /// Version of the served model, as the latest score gave it.
    pub model_version: u64,
    /// Drift events detected so far, all of them counted.
    pub drift_total: u64,
    /// The latest drift events (at most [`LATEST_DRIFT`]), newest first.
    pub drift: Vec<DriftEvent>,
    /// The latest alerts (at most [`LATEST_ALERTS`]), newest first.
    pub alerts: Vec<AlertRow>,
    /// One point per tick, oldest first (at most [`HISTORY`]).
    pub history: Vec<Point>,
}

/// Event counts, or rates (`Totals<f64>`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Totals<T = u64> {
    /// Valid transactions.
    pub transactions: T,
    /// Valid labels.
    pub labels: T,
    /// Alerts raised.
    pub alerts: T,
    /// Records refused (dead letters).
    pub dead_letters: T,
}

/// Latency percentiles, µs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th.
    pub p90: f64,
    /// 99th.
    pub p99: f64,
    /// 99.9th.
    pub p999: f64,
}

/// Records of one input partition not yet processed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Records between the next unprocessed one and the high watermark.
    pub lag: i64,
}

/// How many transactions got each decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DecisionMix {
    /// Let through.
    pub approve: u64,
    /// Let through and sent to an analyst.
    pub review: u64,
    /// Refused.
    pub decline: u64,
}

/// One alert, as the dashboard lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertRow {
    /// Transaction id.
    pub tx_id: String,
    /// The card id, masked ([`mask_card`]).
    pub card: String,
    /// Event time (epoch ms).
    pub ts: i64,
    /// Fraud probability.
    pub score: f64,
    /// The decision (none when the topology decides nothing).
    pub decision: Option<Decision>,
    /// The decision's reason codes.
    pub reasons: Vec<String>,
    /// Top feature contributions to the score (`engine.explain_top`).
    pub top_features: Vec<Contribution>,
}

/// One tick of the history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Point {
    /// Wall-clock time of the tick (epoch ms).
    pub at_ms: i64,
    /// Transactions per second.
    pub transactions_per_sec: f64,
    /// Labels per second.
    pub labels_per_sec: f64,
    /// Alerts per second.
    pub alerts_per_sec: f64,
    /// Alerts per scored transaction.
    pub alert_rate: f64,
    /// Latency percentiles of the interval, µs (none when idle).
    pub latency_us: Option<Percentiles>,
}

/// Mask a card id for display: at most its last four characters and never
/// more than half of it, after `****` (`4111111111111111` → `****1111`,
/// `C42` → `****2`).
pub fn mask_card(card: &str) -> String {
    let n = card.chars().count();
    let keep = (n / 2).min(4);
    let tail: String = card.chars().skip(n - keep).collect();
    format!("****{tail}")
}

/// What an engine thread keeps for the dashboard between ticks, and the
/// sending end of the [`DashboardFeed`].
pub struct Dashboard {
    service: &'static str,
    feed: watch::Sender<Arc<Snapshot>>,
    alerts: VecDeque<AlertRow>,
    history: VecDeque<Point>,
    /// The totals and latency histogram at the last tick (rates and
    /// interval percentiles are differences from them).
    last: Option<(i64, Totals)>,
    last_latency: Option<Histogram<u64>>,
    ticks: u64,
    /// The served model's version, as the last score gave it.
    model_version: u64,
}

impl Dashboard {
    /// A dashboard for `service` (`api`, `fluvio`) and the feed its
    /// snapshots go to (an empty snapshot until the first tick).
    pub fn new(service: &'static str) -> (Dashboard, DashboardFeed) {
        let (feed, rx) = watch::channel(Arc::new(Snapshot {
            service: service.to_string(),
            ..Snapshot::default()
        }));
        let d = Dashboard {
            service,
            feed,
            alerts: VecDeque::with_capacity(LATEST_ALERTS + 1),
            history: VecDeque::with_capacity(HISTORY + 1),
            last: None,
            last_latency: None,
            ticks: 0,
            model_version: 0,
        };
        (d, rx)
    }

    /// Note a score: the alert it raised, kept with its explanation, card
    /// masked (the decisions are the engine's own counts, read at each
    /// tick). No lock; allocates only for an alert.
    pub fn observe(&mut self, s: &Score) {
        self.model_version = s.model_version;
        if s.alert {
            if self.alerts.len() == LATEST_ALERTS {
                self.alerts.pop_back();
            }
            self.alerts.push_front(AlertRow {
                tx_id: s.tx_id.to_string(),
                card: mask_card(&s.card_id),
                ts: s.ts,
                score: s.score,
                decision: s.decision,
                reasons: s.reasons.iter().map(|r| r.to_string()).collect(),
                top_features: s.top_features.clone(),
            });
        }
    }

    /// Publish the snapshot of `now_ms`: `input`'s counts, the engine's
    /// alerts, latency and drift events, and `lag`.
    pub fn publish(
        &mut self,
        now_ms: i64,
        engine: &Engine,
        input: &InputCounts,
        lag: Vec<PartitionLag>,
    ) {
        let totals = Totals {
            transactions: input.transactions,
            labels: input.labels,
            alerts: engine.counters().alerts,
            dead_letters: input.dead_letters,
        };
        let latency_us = self.interval_latency(engine.latency());
        let mut snapshot = self.snapshot(now_ms, totals, latency_us, lag);
        let given = engine.decisions();
        snapshot.decisions = DecisionMix {
            approve: given.of(Decision::Approve),
            review: given.of(Decision::Review),
            decline: given.of(Decision::Decline),
        };
        if let Some(p) = engine.portfolio() {
            let (kept, dropped) = p.drift_events();
            snapshot.drift_total = kept.len() as u64 + dropped;
            snapshot.drift = kept.iter().rev().take(LATEST_DRIFT).cloned().collect();
        }
        self.feed.send_replace(Arc::new(snapshot));
    }

    /// The percentiles of what `now` (a cumulative histogram) recorded
    /// since the last tick; those of all of it when it cannot be told apart
    /// (the histogram was replaced).
    fn interval_latency(&mut self, now: &Histogram<u64>) -> Option<Percentiles> {
        let mut interval = now.clone();
        if let Some(before) = &self.last_latency {
            if interval.subtract(before).is_err() {
                interval = now.clone();
            }
        }
        self.last_latency = Some(now.clone());
        (!interval.is_empty()).then(|| Percentiles {
            p50: interval.value_at_quantile(0.5) as f64 / 1e3,
            p90: interval.value_at_quantile(0.9) as f64 / 1e3,
            p99: interval.value_at_quantile(0.99) as f64 / 1e3,
            p999: interval.value_at_quantile(0.999) as f64 / 1e3,
        })
    }

    /// The snapshot of `now_ms` but for the engine's drift events: rates
    /// and a point of history from `totals`, the alerts observed (the
    /// decisions are the engine's, set by [`publish`](Self::publish)).
    fn snapshot(
        &mut self,
        now_ms: i64,
        totals: Totals,
        latency_us: Option<Percentiles>,
        lag: Vec<PartitionLag>,
    ) -> Snapshot {
        self.ticks += 1;
        let (rates, alert_rate) = match self.last {
            Some((then, before)) if now_ms > then => {
                let secs = (now_ms - then) as f64 / 1e3;
                let d = |a: u64, b: u64| a.saturating_sub(b) as f64;
                let tx = d(totals.transactions, before.transactions);
                let alerts = d(totals.alerts, before.alerts);
                (
                    Totals {
                        transactions: tx / secs,
                        labels: d(totals.labels, before.labels) / secs,
                        alerts: alerts / secs,
                        dead_letters: d(totals.dead_letters, before.dead_letters) / secs,
                    },
                    if tx > 0.0 { alerts / tx } else { 0.0 },
                )
            }
            _ => (Totals::default(), 0.0),
        };
        self.last = Some((now_ms, totals));
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(Point {
            at_ms: now_ms,
            transactions_per_sec: rates.transactions,
            labels_per_sec: rates.labels,
            alerts_per_sec: rates.alerts,
            alert_rate,
            latency_us,
        });
        Snapshot {
            service: self.service.to_string(),
            at_ms: now_ms,
            tick: self.ticks,
            totals,
            rates,
            alert_rate,
            latency_us,
            lag,
            alerts: self.alerts.iter().cloned().collect(),
            history: self.history.iter().copied().collect(),
            model_version: self.model_version,
            ..Snapshot::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use compact_str::CompactString;
    use fraudstream_engine::event::TxId;

    fn score(id: u64, card: &str, alert: bool, decision: Option<Decision>) -> Score {
        Score {
            tx_id: TxId::Int(id),
            ts: 1_000 * id as i64,
            card_id: card.into(),
            score: if alert { 0.97 } else { 0.1 },
            alert,
            model_version: 3,
            top_features: vec![Contribution {
                feature: CompactString::from("amount_z"),
                value: 1.5,
            }],
            decision,
            reasons: vec![CompactString::from("score_decline")],
        }
    }

    #[test]
    fn card_ids_keep_at_most_four_characters_and_never_half() {
        assert_eq!(mask_card("4111111111111111"), "****1111");
        assert_eq!(mask_card("C123456"), "****456");
        assert_eq!(mask_card("C42"), "****2");
        assert_eq!(mask_card("X"), "****");
        assert_eq!(mask_card(""), "****");
        assert_eq!(mask_card("ÄÖÜßäöü€"), "****äöü€", "characters, not bytes");
    }

    #[test]
    fn only_the_latest_alerts_are_kept_newest_first() {
        let (mut d, feed) = Dashboard::new("api");
        assert_eq!(
            feed.borrow().tick,
            0,
            "an empty snapshot before the first tick"
        );
        assert_eq!(feed.borrow().service, "api");
        for i in 0..50u64 {
            let decision = [Decision::Approve, Decision::Review, Decision::Decline][i as usize % 3];
            d.observe(&score(i, "4111111111111111", i % 2 == 0, Some(decision)));
        }
        d.observe(&score(99, "C1", false, None));
        let s = d.snapshot(1_000, Totals::default(), None, Vec::new());
        assert_eq!(s.alerts.len(), LATEST_ALERTS);
        assert_eq!(s.alerts[0].tx_id, "48", "newest first");
        assert_eq!(s.alerts[LATEST_ALERTS - 1].tx_id, "10");
        assert_eq!(s.alerts[0].card, "****1111");
        assert_eq!(s.alerts[0].top_features[0].feature, "amount_z");
        assert_eq!(s.model_version, 3);
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains("4111111111111111"), "no whole card id");
    }

    #[test]
    fn rates_come_from_the_interval_and_the_history_is_bounded() {
        let (mut d, _feed) = Dashboard::new("fluvio");
        let at = |n: u64| Totals {
            transactions: 100 * n,
            labels: 10 * n,
            alerts: 2 * n,
            dead_letters: n,
        };
        let s = d.snapshot(10_000, at(0), None, Vec::new());
        assert_eq!(s.rates, Totals::default(), "no interval yet");
        let s = d.snapshot(10_500, at(1), None, Vec::new());
        assert_eq!(s.rates.transactions, 200.0);
        assert_eq!(s.rates.labels, 20.0);
        assert_eq!(s.rates.alerts, 4.0);
        assert_eq!(s.rates.dead_letters, 2.0);
        assert_eq!(s.alert_rate, 0.02);
        assert_eq!(s.tick, 2);
        let mut s = s;
        for n in 2..300 {
            s = d.snapshot(10_000 + 500 * n as i64, at(n), None, Vec::new());
        }
        assert_eq!(s.history.len(), HISTORY);
        assert_eq!(s.history.last().unwrap().at_ms, 10_000 + 500 * 299);
        assert!(s.history.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
    }

    #[test]
    fn latency_percentiles_are_those_of_the_interval() {
        let (mut d, _feed) = Dashboard::new("api");
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        assert_eq!(d.interval_latency(&h), None, "nothing scored");
        for _ in 0..1000 {
            h.record(1_000_000).unwrap(); // 1 ms
        }
        assert!((d.interval_latency(&h).unwrap().p50 - 1000.0).abs() < 2.0);
        for _ in 0..10 {
            h.record(5_000).unwrap(); // 5 µs
        }
        let p = d.interval_latency(&h).unwrap();
        assert!((p.p999 - 5.0).abs() < 0.1, "only the new values: {p:?}");
        assert_eq!(d.interval_latency(&h), None, "an idle interval");
    }

    #[test]
    fn an_engine_snapshot_has_its_model_and_counts() {
        let engine = Engine::new(&fraudstream_engine::EngineConfig::default());
        let (mut d, feed) = Dashboard::new("api");
        let input = InputCounts {
            transactions: 5,
            labels: 2,
            dead_letters: 1,
            ..InputCounts::default()
        };
        let lag = vec![PartitionLag {
            topic: "transactions".into(),
            partition: 0,
            lag: 7,
        }];
        d.publish(1_000, &engine, &input, lag.clone());
        let s = feed.borrow().clone();
        assert_eq!(
            s.decisions,
            DecisionMix::default(),
            "the engine's own counts"
        );
        assert_eq!(s.totals.transactions, 5);
        assert_eq!(s.totals.dead_letters, 1);
        assert_eq!(s.lag, lag);
        assert_eq!(s.service, "api");
        assert_eq!(s.tick, 1);
        assert_eq!(s.history.len(), 1);
    }
}
