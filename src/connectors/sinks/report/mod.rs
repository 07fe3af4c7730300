//! The end-of-run report: counters, throughput, latency percentiles, state
//! size and prequential metrics, as JSON and as a terminal summary; the
//! curves, threshold table and alert features an analyst acts on, drawn
//! into a self-contained HTML page ([`html`], charts in [`charts`]).

pub mod charts;
pub mod html;

use anyhow::Context;
use fraudstream_engine::engine::{AlertFeature, EngineCounters};
use fraudstream_engine::eval::{Curves, DayMetrics, MetricsSummary};
use fraudstream_engine::model::portfolio::{DriftEvent, MemberMetrics};
use fraudstream_engine::model::select::{Candidate, ModelSwitch};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Input counts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InputCounts {
    /// Transactions read (valid).
    pub transactions: u64,
    /// Labels read (valid).
    pub labels: u64,
    /// Records rejected.
    pub dead_letters: u64,
    /// Rejections per reason kind.
    pub dead_letters_by_kind: BTreeMap<String, u64>,
}

impl InputCounts {
    /// Count a rejected record (here and in the `metrics` registry).
    pub fn count_dead_letter(&mut self, d: &fraudstream_engine::event::DeadLetter) {
        let kind = d.kind.as_str();
        self.dead_letters += 1;
        *self
            .dead_letters_by_kind
            .entry(kind.to_string())
            .or_default() += 1;
        metrics::counter!("fraudstream_dead_letters_total", "kind" => kind).increment(1);
    }
}

/// Pending store figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PendingReport {
    /// Still waiting at the end.
    pub held: u64,
    /// Dropped because the store was full.
    pub evicted_capacity: u64,
    /// Dropped at their time-to-live.
    pub expired: u64,
    /// Re-scored ids that replaced a pending entry.
    pub replaced: u64,
}

/// Entity state at the end.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StateReport {
    /// Cards held.
    pub cards: u64,
    /// Merchants held.
    pub merchants: u64,
    /// Bytes of state per card (struct, windows, table slot).
    pub bytes_per_card: u64,
    /// Bytes of state per merchant.
    pub bytes_per_merchant: u64,
}

/// Wall-clock speed of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Seconds from first to last event.
    pub seconds: f64,
    /// Events (transactions, labels, rejects) per second.
    pub events_per_sec: f64,
    /// Transactions per second.
    pub transactions_per_sec: f64,
}

/// Processing time per transaction inside the engine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median (ns).
    pub p50_ns: u64,
    /// 90th percentile (ns).
    pub p90_ns: u64,
    /// 99th percentile (ns).
    pub p99_ns: u64,
    /// 99.9th percentile (ns).
    pub p999_ns: u64,
    /// Largest (ns).
    pub max_ns: u64,
}

impl Latency {
    /// Percentiles of a histogram of nanoseconds.
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50_ns: h.value_at_quantile(0.5),
            p90_ns: h.value_at_quantile(0.9),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
        }
    }
}

/// Prequential metrics, overall and over the last days.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsReport {
    /// Over the whole run.
    pub overall: MetricsSummary,
    /// Over the last `last_days` days.
    pub last_days: MetricsSummary,
    /// How many days `last_days` covers.
    pub last_days_n: u32,
}

/// A record file written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputReport {
    /// Sink id.
    pub id: String,
    /// Path.
    pub path: String,
    /// Records written.
    pub records: u64,
}

/// One model's curves and threshold table over the whole run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCurves {
    /// `served` for the score the engine served (calibrated when the
    /// topology calibrates), else the portfolio member's name.
    pub name: String,
    /// The curves.
    #[serde(flatten)]
    pub curves: Curves,
}

/// Everything a run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Topology file.
    pub topology: String,
    /// Input counts.
    pub input: InputCounts,
    /// Engine counters.
    pub engine: EngineCounters,
    /// Pending store.
    pub pending: PendingReport,
    /// Entity state.
    pub state: StateReport,
    /// Speed.
    pub throughput: Throughput,
    /// Per-transaction processing time.
    pub latency: Latency,
    /// Offer-to-score time, queueing included (paced benchmark runs only).
    #[serde(default)]
    pub latency_with_queueing: Latency,
    /// Model version at the end (updates applied).
    pub model_version: u64,
    /// Number of dense features.
    pub features: u64,
    /// Prequential metrics.
    pub metrics: MetricsReport,
    /// Per-day metrics.
    pub daily: Vec<DayMetrics>,
    /// Files written.
    pub outputs: Vec<OutputReport>,
    /// Served model (`model.type`).
    #[serde(default = "logistic")]
    pub model: String,
    /// Each portfolio member scored on every transaction and evaluated on
    /// its own (champion and challengers); empty for the logistic alone.
    #[serde(default)]
    pub models: Vec<MemberMetrics>,
    /// Drift detected (score distribution, error rate, forest trees), by time.
    #[serde(default)]
    pub drift_events: Vec<DriftEvent>,
    /// Drift events detected but not kept (beyond the cap).
    #[serde(default)]
    pub drift_events_dropped: u64,
    /// Batch champion models swapped in.
    #[serde(default)]
    pub batch_swaps: u64,
    /// `model.type = "auto"`: each change of the served candidate, with the
    /// average precisions that caused it, by time.
    #[serde(default)]
    pub model_switches: Vec<ModelSwitch>,
    /// Switches beyond the cap, only counted.
    #[serde(default)]
    pub model_switches_dropped: u64,
    /// Origin of the day indexes (`daily`, drift and switch days), epoch ms.
    #[serde(default)]
    pub evaluation_origin_ms: i64,
    /// The served score's curves, then each evaluated member's (with
    /// `compare` or a portfolio), over the whole run: ROC and
    /// precision-recall points, score distributions, threshold table.
    #[serde(default)]
    pub curves: Vec<ModelCurves>,
    /// Features among the alerts' top contributions, most frequent first.
    #[serde(default)]
    pub alert_features: Vec<AlertFeature>,
    /// Day of the first label the model learnt from in this run: the days
    /// before scored with an untrained model (the cold start).
    #[serde(default)]
    pub cold_start_until_day: Option<i64>,
}

fn logistic() -> String {
    "logistic".into()
}

impl RunReport {
    /// Write as pretty JSON (atomically: temporary file, then rename).
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let mut f = super::create_file(&tmp)?;
        serde_json::to_writer_pretty(&mut f, self)
            .map_err(std::io::Error::from)
            .and_then(|_| std::io::Write::write_all(&mut f, b"\n"))
            .with_context(|| format!("writing {}", tmp.display()))?;
        drop(f);
        std::fs::rename(&tmp, path)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    }

    /// Read a report written by [`write_json`](Self::write_json).
    pub fn read_json(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// The terminal summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "fraudstream run: {}", self.topology);
        self.write_counts(&mut s);
        self.write_speed(&mut s);
        self.write_drift(&mut s);
        self.write_switches(&mut s);
        self.write_models(&mut s);
        self.write_metrics(&mut s);
        for o in &self.outputs {
            let _ = writeln!(
                s,
                "  output       {} -> {} ({} records)",
                o.id, o.path, o.records
            );
        }
        s
    }

    /// Summary lines of the input, the engine counters and the state held.
    fn write_counts(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "  input        {} transactions, {} labels, {} dead letters{}",
            self.input.transactions,
            self.input.labels,
            self.input.dead_letters,
            if self.input.dead_letters_by_kind.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    self.input
                        .dead_letters_by_kind
                        .iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        let e = &self.engine;
        let _ = writeln!(
            s,
            "  engine       {} scored ({} late), {} alerts; labels {} joined, {} learnt, {} unknown/expired, {} duplicate",
            e.scored, e.late, e.alerts, e.labels_joined, e.labels_learnt, e.labels_unknown, e.labels_duplicate
        );
        let _ = writeln!(
            s,
            "  state        {} cards ({} B each), {} merchants ({} B each), {} pending; evicted {} cards, {} merchants, {} pending (+{} expired)",
            self.state.cards,
            self.state.bytes_per_card,
            self.state.merchants,
            self.state.bytes_per_merchant,
            self.pending.held,
            e.cards_evicted,
            e.merchants_evicted,
            self.pending.evicted_capacity,
            self.pending.expired
        );
    }

    /// Summary lines of the throughput, the latency and the model served.
    fn write_speed(&self, s: &mut String) {
        let t = &self.throughput;
        let _ = writeln!(
            s,
            "  throughput   {:.0} transactions/s ({:.0} events/s) over {:.2} s",
            t.transactions_per_sec, t.events_per_sec, t.seconds
        );
        let l = &self.latency;
        let _ = writeln!(
            s,
            "  latency      p50 {} ns, p90 {} ns, p99 {} ns, p99.9 {} ns, max {} ns (per transaction, in engine)",
            l.p50_ns, l.p90_ns, l.p99_ns, l.p999_ns, l.max_ns
        );
        let _ = writeln!(
            s,
            "  model        {}, version {}, {} features",
            self.model, self.model_version, self.features
        );
    }

    /// Summary line of `auto`'s switches: how many, and the last with its figures.
    fn write_switches(&self, s: &mut String) {
        if self.model != "auto" {
            return;
        }
        let n = self.model_switches.len() as u64 + self.model_switches_dropped;
        let _ = write!(s, "  auto         {n} switches of the served model");
        if let Some(w) = self.model_switches.last() {
            let ap: Vec<String> = (Candidate::ALL.iter())
                .zip(w.average_precision)
                .map(|(c, ap)| match c {
                    Candidate::Blend if w.blend_prior > 0.0 => {
                        format!("{} {ap:.3} + {} credited", c.name(), w.blend_prior)
                    }
                    _ => format!("{} {ap:.3}", c.name()),
                })
                .collect();
            let _ = write!(
                s,
                "; the last on day {}: {} -> {} (AP over the last {} labels: {})",
                w.day,
                w.from.name(),
                w.to.name(),
                w.window_labels,
                ap.join(", ")
            );
        }
        s.push('\n');
    }

    /// Summary line of the drift events and batch swaps, with a portfolio.
    fn write_drift(&self, s: &mut String) {
        if self.models.is_empty() && self.drift_events.is_empty() {
            return;
        }
        let count = |k: fraudstream_engine::model::portfolio::DriftKind| {
            self.drift_events.iter().filter(|e| e.kind == k).count()
        };
        let _ = writeln!(
            s,
            "  drift        {} score, {} error, {} forest tree events ({} not kept); {} batch models swapped in",
            count(fraudstream_engine::model::portfolio::DriftKind::Score),
            count(fraudstream_engine::model::portfolio::DriftKind::Error),
            count(fraudstream_engine::model::portfolio::DriftKind::ForestTree),
            self.drift_events_dropped,
            self.batch_swaps
        );
    }

    /// Summary table of each portfolio member's own evaluation.
    fn write_models(&self, s: &mut String) {
        if self.models.is_empty() {
            return;
        }
        let _ = writeln!(
            s,
            "  {:<22} {:>8} {:>8} {:>9} | last {} days: {:>8} {:>8} {:>9}",
            "models (own eval)",
            "ROC AUC",
            "avg prec",
            "card P@k",
            self.metrics.last_days_n,
            "ROC AUC",
            "avg prec",
            "card P@k"
        );
        for m in &self.models {
            let _ = writeln!(
                s,
                "  {:<22} {:>8} {:>8} {:>9} |              {:>8} {:>8} {:>9}",
                format!("{}{}", m.name, if m.served { " (served)" } else { "" }),
                opt(m.overall.roc_auc),
                opt(m.overall.average_precision),
                opt(m.overall.card_precision_at_k),
                opt(m.last_days.roc_auc),
                opt(m.last_days.average_precision),
                opt(m.last_days.card_precision_at_k)
            );
        }
    }

    /// Summary table of the prequential metrics, overall and over the last days.
    fn write_metrics(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "  {:<22} {:>9} {:>7} {:>8} {:>8} {:>9} {:>8} {:>9} {:>7}",
            "metrics",
            "tx",
            "frauds",
            "ROC AUC",
            "avg prec",
            "precision",
            "recall",
            "card P@k",
            "ECE"
        );
        for (name, m) in [
            ("overall".to_string(), &self.metrics.overall),
            (
                format!("last {} days", self.metrics.last_days_n),
                &self.metrics.last_days,
            ),
        ] {
            let _ = writeln!(
                s,
                "  {:<22} {:>9} {:>7} {:>8} {:>8} {:>9} {:>8} {:>9} {:>7}",
                name,
                m.transactions,
                m.frauds,
                opt(m.roc_auc),
                opt(m.average_precision),
                opt(m.precision_at_threshold),
                opt(m.recall_at_threshold),
                opt(m.card_precision_at_k),
                opt(m.expected_calibration_error)
            );
        }
    }
}

/// A metric to four decimals, or `n/a`.
fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "n/a".into())
}
