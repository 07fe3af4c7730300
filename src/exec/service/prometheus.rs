//! Every metric the service and the scoring API export, in one list
//! ([`METRICS`]: name, kind, unit, labels, help, which process emits it),
//! the Prometheus recorder that serves them with that help text, and the
//! score-latency histogram rendered beside the recorder's output.
//!
//! The list is the single source: the recorder describes every entry
//! (`# HELP`), the dashboard and alert rules in `deploy/` may query only
//! listed names, and `tests/monitoring.rs` checks that the code emits
//! exactly the listed names and that a running API serves them.
//!
//! Rates are not exported: Prometheus computes them from the counters
//! (`rate(fraudstream_transactions_scored_total[1m])`). Distributions are
//! Prometheus histograms (`_bucket{le}`, `_sum`, `_count`), never quantile
//! gauges, so they aggregate across processes and time.
//!
//! Score latency is measured per transaction, and per-transaction work must
//! stay off the metrics registry (a key lookup, and the exporter keeps every
//! sample with a timestamp until the next scrape: memory that grows with the
//! traffic). So the card stage counts each transaction into fixed buckets
//! ([`ScoreLatency`]: two additions, no lock), the engine thread copies them
//! here at each tick (under a mutex the scrape shares, twice a second), and
//! [`render`] writes them as a histogram. Counts and sum are exact; the
//! quantiles Prometheus derives are as fine as the buckets
//! ([`SCORE_LATENCY_BOUNDS_NS`]). Checkpoint durations, one sample per
//! checkpoint, go through the recorder with its own buckets.

use fraudstream_engine::engine::Engine;
use fraudstream_engine::telemetry::{ScoreLatency, SCORE_LATENCY_BOUNDS_NS};
use metrics::Unit;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock, PoisonError};

/// What a metric is, in Prometheus terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (from 0 at process start); query it with `rate()`.
    Counter,
    /// A level: lag, sizes, versions, ages.
    Gauge,
    /// Observations in `le` buckets with their `_sum` and `_count`.
    Histogram,
}

/// Which process emits a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emitter {
    /// The Fluvio service and the scoring API (the engine, the HTTP
    /// endpoint, the dead letters).
    Both,
    /// The Fluvio service only (consumers, checkpoints, delivery, stages).
    Service,
    /// The scoring API only (requests, rules).
    Api,
}

/// One exported metric.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// Its name, as scraped (histograms add `_bucket`, `_sum`, `_count`).
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Its unit, when it has one.
    pub unit: Option<Unit>,
    /// Its labels.
    pub labels: &'static [&'static str],
    /// The `# HELP` text.
    pub help: &'static str,
    /// Which process emits it.
    pub emitter: Emitter,
}

/// The score-latency histogram, rendered by [`render`] (not the recorder).
pub const SCORE_LATENCY: &str = "fraudstream_score_latency_seconds";
/// The checkpoint-duration histogram (the recorder's, with [`CHECKPOINT_BUCKETS`]).
pub const CHECKPOINT_SECONDS: &str = "fraudstream_checkpoint_seconds";
/// Bucket bounds of [`CHECKPOINT_SECONDS`], in seconds.
pub const CHECKPOINT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

const fn m(
    name: &'static str,
    kind: Kind,
    unit: Option<Unit>,
    labels: &'static [&'static str],
    emitter: Emitter,
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        unit,
        labels,
        help,
        emitter,
    }
}

use Emitter::{Api, Both, Service};
use Kind::{Counter, Gauge, Histogram};

/// Every metric exported, service and API.
#[rustfmt::skip]
pub const METRICS: &[Metric] = &[
    // The engine (both processes).
    m("fraudstream_transactions_scored_total", Counter, None, &[], Both,
      "Transactions scored by the card stage."),
    m("fraudstream_transactions_late_total", Counter, None, &[], Both,
      "Transactions behind the allowed lateness (scored, not added to the windows)."),
    m("fraudstream_alerts_total", Counter, None, &[], Both,
      "Transactions scored at or above the alert threshold."),
    m("fraudstream_decisions_total", Counter, None, &["decision"], Both,
      "Decisions given (approve, review, decline); only with a [decisions] section."),
    m("fraudstream_labels_total", Counter, None, &[], Both,
      "Labels received."),
    m("fraudstream_labels_joined_total", Counter, None, &[], Both,
      "Labels joined to the features their transaction was scored with."),
    m("fraudstream_labels_unknown_total", Counter, None, &[], Both,
      "Labels of transactions never seen, expired from the pending store or evicted."),
    m("fraudstream_labels_duplicate_total", Counter, None, &[], Both,
      "Second labels of a transaction (not learnt from)."),
    m("fraudstream_labels_future_total", Counter, None, &[], Both,
      "Labels dated more than max_event_skew ahead of the stream."),
    m("fraudstream_features_nonfinite_total", Counter, None, &[], Both,
      "Transactions with a non-finite feature value (scored and learnt as 0)."),
    m("fraudstream_evictions_total", Counter, None, &["entity"], Both,
      "Cards and merchants evicted as idle."),
    m("fraudstream_capped_total", Counter, None, &["entity"], Both,
      "Cards and merchants dropped, least recently seen first, to stay within max_cards and max_merchants."),
    m("fraudstream_label_routes_expired_total", Counter, None, &[], Both,
      "Label routes dropped with their evaluation day."),
    m("fraudstream_model_updates_refused_total", Counter, None, &[], Both,
      "Model updates refused because their gradient was not finite."),
    m(SCORE_LATENCY, Histogram, Some(Unit::Seconds), &[], Both,
      "Time the engine takes to score one transaction (features, model, decision)."),
    m("fraudstream_cards", Gauge, None, &[], Both,
      "Cards whose rolling features are held."),
    m("fraudstream_merchants", Gauge, None, &[], Both,
      "Merchants whose rolling features are held."),
    m("fraudstream_pending_entries", Gauge, None, &[], Both,
      "Scored transactions whose features wait for their label."),
    m("fraudstream_label_routes", Gauge, None, &[], Both,
      "Label routes held (transaction to card partition)."),
    m("fraudstream_batch_rows", Gauge, None, &[], Both,
      "Labelled feature vectors the batch champion's buffer holds (model.batch.buffer per class)."),
    m("fraudstream_eval_records", Gauge, None, &[], Both,
      "Prequential evaluation records held."),
    m("fraudstream_model_version", Gauge, None, &[], Both,
      "Version of the model serving scores (raised by each update)."),
    m("fraudstream_dead_letters_total", Counter, None, &["kind"], Both,
      "Records rejected to the dead letters, by reason kind."),
    m("fraudstream_http_connections", Gauge, None, &[], Both,
      "Open connections of the HTTP endpoint."),
    m("fraudstream_http_accept_errors_total", Counter, None, &[], Both,
      "Failed accepts of the HTTP endpoint (out of file descriptors, say)."),
    // The Fluvio service.
    m("fraudstream_consumer_lag", Gauge, None, &["topic", "partition"], Service,
      "Records of an input partition not consumed yet (high watermark minus next offset)."),
    m("fraudstream_checkpoints_total", Counter, None, &["kind"], Service,
      "Checkpoints written, by kind (base, delta)."),
    m("fraudstream_checkpoints_skipped_total", Counter, None, &[], Service,
      "Checkpoints not rewritten because nothing was consumed since the last one."),
    m("fraudstream_checkpoint_bytes", Gauge, Some(Unit::Bytes), &[], Service,
      "Size of the last checkpoint written."),
    m(CHECKPOINT_SECONDS, Histogram, Some(Unit::Seconds), &[], Service,
      "Time to write a checkpoint (flush outputs, write state, commit offsets)."),
    m("fraudstream_checkpoint_age_seconds", Gauge, Some(Unit::Seconds), &[], Service,
      "Time since the last checkpoint (written or skipped)."),
    m("fraudstream_offset_commit_failures_total", Counter, None, &[], Service,
      "Consumer offset commits that failed or timed out."),
    m("fraudstream_fluvio_reopened_total", Counter, None, &["topic", "partition"], Service,
      "Input partition streams reopened after an error."),
    m("fraudstream_outputs_suppressed_total", Counter, None, &["sink"], Service,
      "Outputs not written again after a restart (written before the crash)."),
    m("fraudstream_replica_labels_waited_total", Counter, None, &[], Service,
      "Labels of other card stages' cards learnt after waiting for their vector."),
    m("fraudstream_replica_labels_missed_total", Counter, None, &[], Service,
      "Labels of other card stages' cards dropped while waiting for their vector."),
    m("fraudstream_replica_labels_waiting", Gauge, None, &[], Service,
      "Labels of other card stages' cards waiting for their vector."),
    // The scoring API.
    m("fraudstream_api_requests_total", Counter, None, &["path", "status"], Api,
      "Requests answered, by path and HTTP status."),
    m("fraudstream_api_rejected_total", Counter, None, &["kind"], Api,
      "Records refused in requests (400, 422), by reason kind."),
    m("fraudstream_rules_version", Gauge, None, &[], Api,
      "Version of the decision rules in force (1 at start, raised by each reload)."),
    m("fraudstream_rules_reloads_total", Counter, None, &["result"], Api,
      "Rules file reloads, by result (ok, refused)."),
];

/// The listed metric called `name`.
pub fn metric(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.name == name)
}

/// The process-wide Prometheus recorder (installed once), every listed
/// metric described; `None` when another recorder is installed.
pub fn recorder() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = builder().ok()?.install_recorder().ok()?;
            describe_all();
            Some(handle)
        })
        .clone()
}

/// The recorder's settings: histogram buckets for the metrics it records
/// (any other histogram would be rendered as a summary, with quantiles).
fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(CHECKPOINT_SECONDS.into()), CHECKPOINT_BUCKETS)
}

/// Give the installed recorder every listed metric's help and unit.
fn describe_all() {
    for m in METRICS {
        match m.kind {
            Kind::Counter => match m.unit {
                Some(u) => metrics::describe_counter!(m.name, u, m.help),
                None => metrics::describe_counter!(m.name, m.help),
            },
            Kind::Gauge => match m.unit {
                Some(u) => metrics::describe_gauge!(m.name, u, m.help),
                None => metrics::describe_gauge!(m.name, m.help),
            },
            // Score latency is rendered here, with its help, not by the recorder.
            Kind::Histogram => match m.unit {
                Some(u) => metrics::describe_histogram!(m.name, u, m.help),
                None => metrics::describe_histogram!(m.name, m.help),
            },
        }
    }
}

/// The score latency last published ([`publish_engine`]).
static SCORE_LATENCY_NOW: Mutex<ScoreLatency> = Mutex::new(ScoreLatency::new());

/// Publish the engine's counters and gauges to the recorder and its score
/// latency for [`render`]: at each tick of the engine thread, not per event.
pub fn publish_engine(engine: &mut Engine) {
    engine.publish_metrics();
    let mut now = SCORE_LATENCY_NOW
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    now.clone_from(engine.score_latency());
}

/// The Prometheus text of `handle` and the score-latency histogram.
pub fn render(handle: &PrometheusHandle) -> String {
    let mut text = handle.render();
    let latency = SCORE_LATENCY_NOW
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    render_latency(&mut text, &latency);
    text
}

/// `l` as the Prometheus histogram [`SCORE_LATENCY`].
fn render_latency(out: &mut String, l: &ScoreLatency) {
    let help = metric(SCORE_LATENCY).map_or("", |m| m.help);
    let _ = writeln!(out, "# HELP {SCORE_LATENCY} {help}");
    let _ = writeln!(out, "# TYPE {SCORE_LATENCY} histogram");
    for (bound, count) in l.cumulative() {
        let _ = writeln!(
            out,
            "{SCORE_LATENCY}_bucket{{le=\"{}\"}} {count}",
            seconds(bound)
        );
    }
    let _ = writeln!(out, "{SCORE_LATENCY}_bucket{{le=\"+Inf\"}} {}", l.count());
    let _ = writeln!(out, "{SCORE_LATENCY}_sum {}", seconds(l.sum_ns()));
    let _ = writeln!(out, "{SCORE_LATENCY}_count {}", l.count());
    out.push('\n');
}

/// `ns` as an exact decimal number of seconds ("0.0000025", "0.1", "0").
fn seconds(ns: u64) -> String {
    let s = format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Bounds of the score-latency buckets, in seconds as rendered.
pub fn score_latency_bounds() -> Vec<String> {
    SCORE_LATENCY_BOUNDS_NS
        .iter()
        .map(|&b| seconds(b))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} listed twice", m.name);
            assert!(m.name.starts_with("fraudstream_"), "{}", m.name);
            assert!(!m.help.is_empty(), "{} has help", m.name);
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters, and only they, end in _total",
                m.name
            );
            assert!(
                !m.name.ends_with("_per_second"),
                "{}: rates are computed by Prometheus",
                m.name
            );
        }
    }

    #[test]
    fn the_recorder_renders_checkpoint_seconds_as_a_histogram_with_help() {
        let recorder = builder().unwrap().build_recorder();
        metrics::with_local_recorder(&recorder, || {
            describe_all();
            metrics::histogram!(CHECKPOINT_SECONDS).record(0.3);
            metrics::counter!("fraudstream_checkpoints_total", "kind" => "base").increment(1);
        });
        let text = recorder.handle().render();
        assert!(
            text.contains(&format!("# TYPE {CHECKPOINT_SECONDS} histogram\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{CHECKPOINT_SECONDS}_bucket{{le=\"0.5\"}} 1\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{CHECKPOINT_SECONDS}_count 1\n")),
            "{text}"
        );
        assert!(
            text.contains("# HELP fraudstream_checkpoints_total Checkpoints written"),
            "{text}"
        );
        assert!(!text.contains("quantile="), "{text}");
    }

    #[test]
    fn latency_renders_as_a_cumulative_histogram() {
        let mut l = ScoreLatency::new();
        for ns in [800, 3_000, 3_000, 200_000_000] {
            l.record(ns);
        }
        let mut out = String::new();
        render_latency(&mut out, &l);
        assert!(
            out.contains(&format!("# TYPE {SCORE_LATENCY} histogram\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("{SCORE_LATENCY}_bucket{{le=\"0.000001\"}} 1\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("{SCORE_LATENCY}_bucket{{le=\"0.000005\"}} 3\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("{SCORE_LATENCY}_bucket{{le=\"0.1\"}} 3\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("{SCORE_LATENCY}_bucket{{le=\"+Inf\"}} 4\n")),
            "{out}"
        );
        assert!(out.contains(&format!("{SCORE_LATENCY}_count 4\n")), "{out}");
        assert!(
            out.contains(&format!("{SCORE_LATENCY}_sum 0.2000068\n")),
            "{out}"
        );
    }

    #[test]
    fn seconds_are_exact_decimals() {
        assert_eq!(seconds(1_000), "0.000001");
        assert_eq!(seconds(2_500), "0.0000025");
        assert_eq!(seconds(100_000_000), "0.1");
        assert_eq!(seconds(2_000_000_000), "2");
        assert_eq!(seconds(0), "0");
    }
}
