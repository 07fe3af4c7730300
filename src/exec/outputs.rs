//! What every way of running a topology shares: the engine it starts
//! with (fresh, or the model it names to load), and what it leaves at the
//! end (the saved model, the run report, the summary).

use crate::config::Topology;
use crate::connectors::sinks::report::{
    InputCounts, Latency, MetricsReport, ModelCurves, OutputReport, PendingReport, RunReport,
    StateReport, Throughput,
};
use anyhow::Context;
use fraudstream_engine::engine::Engine;
use fraudstream_engine::model::LogisticModel;

/// The logistic model `t` starts with: the one `model.load` names, or a fresh one.
pub fn start_model(t: &Topology) -> anyhow::Result<LogisticModel> {
    let cfg = t.engine_config();
    Ok(match &t.model.load {
        Some(path) => LogisticModel::load(
            path,
            &fraudstream_engine::features::feature_space(&cfg.features),
        )?,
        None => fraudstream_engine::engine::fresh_model(&cfg),
    })
}

/// The sequential engine for `t`, starting from [`start_model`].
pub fn start_engine(t: &Topology) -> anyhow::Result<Engine> {
    Ok(Engine::with_model(&t.engine_config(), start_model(t)?))
}

/// Save the model where the topology says (`model.save`).
pub fn save_model(t: &Topology, engine: &Engine) -> anyhow::Result<()> {
    if let Some(path) = &t.model.save {
        engine
            .model()
            .save(path)
            .with_context(|| format!("saving the model to {}", path.display()))?;
    }
    Ok(())
}

/// Write the JSON and HTML reports and print the summary, as the
/// topology's sinks say.
pub fn publish_report(t: &Topology, report: &RunReport, quiet: bool) -> anyhow::Result<()> {
    if let Some((id, path)) = t.report_path() {
        report
            .write_json(path)
            .with_context(|| format!("sinks.{id}"))?;
        if let Some(html) = t.report_html_path() {
            crate::connectors::sinks::report::html::write(report, html)
                .with_context(|| format!("sinks.{id}.html"))?;
        }
    }
    if !quiet && t.has_summary() {
        println!("{}", report.summary());
    }
    Ok(())
}

/// The report of a run of `t` that ended with `engine`.
pub fn run_report(
    t: &Topology,
    engine: &Engine,
    input: InputCounts,
    events: u64,
    seconds: f64,
    written: crate::connectors::sinks::Written,
) -> RunReport {
    let eval = engine.evaluation();
    let overall = eval.summary(None);
    let last_n = t.evaluation.last_days;
    let from = overall.last_day.map(|d| d - last_n as i64 + 1);
    let last = eval.summary(from);
    let pending = engine.pending().stats();
    let (cards, merchants, bytes_card, bytes_merchant) = engine.state();
    let secs = seconds.max(1e-9);
    RunReport {
        topology: t.file.clone(),
        throughput: Throughput {
            seconds,
            events_per_sec: events as f64 / secs,
            transactions_per_sec: input.transactions as f64 / secs,
        },
        input,
        engine: engine.counters(),
        pending: PendingReport {
            held: engine.pending().len() as u64,
            evicted_capacity: pending.evicted_capacity,
            expired: pending.expired,
            replaced: pending.replaced,
        },
        state: StateReport {
            cards: cards as u64,
            merchants: merchants as u64,
            bytes_per_card: bytes_card as u64,
            bytes_per_merchant: bytes_merchant as u64,
        },
        latency: Latency::of(engine.latency()),
        latency_with_queueing: Latency::of(engine.queued_latency()),
        model_version: fraudstream_engine::model::Classifier::version(engine.model()),
        features: fraudstream_engine::features::feature_space(&t.features).dense_len() as u64,
        metrics: MetricsReport {
            overall,
            last_days: last,
            last_days_n: last_n,
        },
        daily: eval.daily(),
        model: t.model.portfolio.kind.name().to_string(),
        models: engine.member_evaluation().metrics(from),
        drift_events: engine
            .portfolio()
            .map(|p| p.drift_events().0.to_vec())
            .unwrap_or_default(),
        drift_events_dropped: engine.portfolio().map_or(0, |p| p.drift_events().1),
        batch_swaps: engine.portfolio().map_or(0, |p| p.batch_swaps()),
        model_switches: engine
            .portfolio()
            .map(|p| p.model_switches().0.to_vec())
            .unwrap_or_default(),
        model_switches_dropped: engine.portfolio().map_or(0, |p| p.model_switches().1),
        evaluation_origin_ms: eval.config().origin_ms,
        curves: std::iter::once(ModelCurves {
            name: "served".into(),
            curves: eval.curves(None),
        })
        .chain(
            engine
                .member_evaluation()
                .curves()
                .into_iter()
                .map(|(name, curves)| ModelCurves { name, curves }),
        )
        .collect(),
        alert_features: engine.alert_features().ranked(),
        cold_start_until_day: engine
            .first_learnt_ms()
            .map(|ts| (ts - eval.config().origin_ms).div_euclid(fraudstream_engine::time::DAY_MS)),
        outputs: written
            .0
            .into_iter()
            .map(|(id, path, records)| OutputReport { id, path, records })
            .collect(),
    }
}
