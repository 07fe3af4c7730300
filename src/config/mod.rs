//! Topology files: what a pipeline reads, computes and writes, as data.
//!
//! Parsing (TOML to a table), validation (table to a typed [`Topology`], every
//! error collected) and running ([`crate::exec::pipeline`]) are separate steps.

pub mod reader;
pub mod service;

use fraudstream_engine::eval::Unlabeled;
use fraudstream_engine::features::FeatureConfig;
use fraudstream_engine::model::batch::{BatchConfig, SwapMode};
use fraudstream_engine::model::forest::ForestConfig;
use fraudstream_engine::model::hst::HstConfig;
use fraudstream_engine::model::portfolio::{Combine, ModelKind, PortfolioConfig};
use fraudstream_engine::model::{Imbalance, LogisticConfig, Optimizer};
use fraudstream_engine::EngineConfig;
use fraudstream_sim::{DriftMode, GenuineLabels, PatternMix, SimConfig};
pub use reader::{set_override, ConfigError, ConfigErrors};
use reader::{Errors, Section};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub use service::{
    CheckpointSettings, FluvioInput, FluvioOutput, FluvioSettings, ServiceSettings, StartAt,
};

use fraudstream_engine::time::DAY_MS;

/// The default pipeline: simulator, engine, terminal summary and files under `out/embedded/`.
pub const EMBEDDED_TOPOLOGY: &str = include_str!("../../topologies/embedded.toml");

/// A validated pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    /// Where it was read from (for messages and reports).
    pub file: String,
    /// Engine-wide settings.
    pub engine: EngineSettings,
    /// Transactions.
    pub source: SourceConfig,
    /// Labels.
    pub labels: LabelsConfig,
    /// Feature windows.
    pub features: FeatureConfig,
    /// Model.
    pub model: ModelSettings,
    /// Pending store.
    pub pending: PendingSettings,
    /// Prequential evaluation.
    pub evaluation: EvaluationSettings,
    /// Outputs.
    pub sinks: Vec<SinkConfig>,
    /// The Fluvio cluster (for Fluvio inputs and outputs).
    pub fluvio: FluvioSettings,
    /// Checkpoints (Fluvio sources only).
    pub checkpoint: Option<CheckpointSettings>,
    /// Service settings (Fluvio sources only).
    pub service: ServiceSettings,
}

/// When to draw a progress line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// When stderr is a terminal.
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

/// Engine-wide settings (`[engine]`).
#[derive(Clone, Debug, PartialEq)]
pub struct EngineSettings {
    /// Seed for every random choice of the engine.
    pub seed: u64,
    /// `score >= alert_threshold` raises an alert.
    pub alert_threshold: f64,
    /// Events this far behind the newest are still placed in their bucket.
    pub allowed_lateness_ms: i64,
    /// Entities idle this long are evicted.
    pub idle_eviction_ms: i64,
    /// Event time between eviction sweeps.
    pub eviction_interval_ms: i64,
    /// Contributions listed per alert.
    pub explain_top: usize,
    /// Card-stage worker threads (1: sequential and deterministic).
    pub workers: usize,
    /// Progress line.
    pub progress: Progress,
}

/// Where transactions come from (`[source]`).
#[derive(Clone, Debug, PartialEq)]
pub enum SourceConfig {
    /// The built-in simulator.
    Simulator(SimConfig),
    /// A CSV or JSONL file.
    File(FileInput),
    /// A Fluvio topic (the engine runs as a service).
    Fluvio(FluvioInput),
}

/// Record format of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// Comma-separated with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl FileFormat {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Jsonl => "jsonl",
        }
    }
}

/// How timestamps are written in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimestampFormat {
    /// Integers are epoch ms; strings RFC 3339, `YYYY-MM-DD HH:MM:SS` or integer.
    Auto,
    /// RFC 3339 strings.
    Rfc3339,
    /// Epoch milliseconds.
    EpochMs,
    /// Epoch seconds (fractions allowed).
    EpochS,
    /// A strftime pattern, read as UTC.
    Pattern(String),
}

/// A file input with its field mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct FileInput {
    /// Path (relative to the working directory).
    pub path: PathBuf,
    /// Format.
    pub format: FileFormat,
    /// Timestamp format.
    pub timestamp: TimestampFormat,
    /// Event field -> column (or JSON key) in the file.
    pub fields: BTreeMap<String, String>,
    /// Records larger than this go to the dead letters.
    pub max_record_bytes: usize,
    /// Load the whole file and process it in event-time order (`order =
    /// "time"`), instead of streaming it in file order (`order = "file"`,
    /// bounded memory; out-of-order records then follow the lateness rule).
    pub sort_by_time: bool,
}

/// Transaction fields a file may map; the first five are required.
pub const TRANSACTION_FIELDS: [&str; 11] = [
    "tx_id",
    "ts",
    "card_id",
    "merchant_id",
    "amount",
    "currency",
    "mcc",
    "country",
    "channel",
    "lat",
    "lon",
];
/// Label fields a label file must map.
pub const LABEL_FIELDS: [&str; 3] = ["tx_id", "ts", "is_fraud"];

/// Where labels come from (`[labels]`).
#[derive(Clone, Debug, PartialEq)]
pub enum LabelSource {
    /// The simulator's delayed labels (simulator source only).
    Simulator,
    /// A separate file; `ts` is when each label became known.
    File(FileInput),
    /// A column of the transaction file, released `delay_ms` after the transaction.
    Column {
        /// Column (or JSON key) holding the verdict.
        column: String,
        /// Delay between a transaction and its label.
        delay_ms: i64,
    },
    /// A Fluvio topic (with a Fluvio source); `ts` is when each label became known.
    Fluvio(FluvioInput),
    /// No labels at all (no learning, no metrics).
    None,
}

/// Label settings.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelsConfig {
    /// Where they come from.
    pub source: LabelSource,
    /// Learn from them (model, merchant risk, card signal); when false they
    /// only feed the evaluation.
    pub learn: bool,
}

/// Model settings (`[model]`).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSettings {
    /// Logistic regression settings.
    pub logistic: LogisticConfig,
    /// Class-imbalance handling.
    pub imbalance: Imbalance,
    /// Start from this saved model.
    pub load: Option<PathBuf>,
    /// Save the model here at the end of the run.
    pub save: Option<PathBuf>,
    /// Served model (`type`) and the portfolio's members (forest, anomaly
    /// detector, batch champion, blend, drift detection).
    pub portfolio: PortfolioConfig,
}

/// Pending-store settings (`[pending]`).
#[derive(Clone, Debug, PartialEq)]
pub struct PendingSettings {
    /// Most entries held.
    pub capacity: usize,
    /// Longest an entry waits for its label.
    pub ttl_ms: i64,
}

/// Evaluation settings (`[evaluation]`).
#[derive(Clone, Debug, PartialEq)]
pub struct EvaluationSettings {
    /// k of card precision@k.
    pub k: usize,
    /// Unlabelled transactions at the end of a run.
    pub unlabeled: Unlabeled,
    /// The report also summarises the last this many days.
    pub last_days: u32,
}

/// Which records a record sink takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Records {
    /// Every score.
    Scores,
    /// Scores that raised an alert, with their explanation.
    Alerts,
    /// Rejected records with reasons.
    DeadLetters,
}

impl Records {
    /// The `type` naming it in a topology.
    pub fn name(self) -> &'static str {
        match self {
            Records::Scores => "scores",
            Records::Alerts => "alerts",
            Records::DeadLetters => "dead_letters",
        }
    }
}

/// Where a record sink writes.
#[derive(Clone, Debug, PartialEq)]
pub enum RecordTarget {
    /// A file, written from the start on every run.
    File {
        /// Path.
        path: PathBuf,
        /// Record format.
        format: FileFormat,
    },
    /// A Fluvio topic (service mode).
    Topic(FluvioOutput),
}

/// One output (`[sinks.ID]`).
#[derive(Clone, Debug, PartialEq)]
pub enum SinkConfig {
    /// Scores, alerts or dead letters, to a file or a topic.
    Records {
        /// Id in the topology.
        id: String,
        /// Which records.
        records: Records,
        /// Where to.
        to: RecordTarget,
    },
    /// End-of-run table on the terminal.
    Summary {
        /// Id in the topology.
        id: String,
    },
    /// End-of-run JSON report.
    Report {
        /// Id in the topology.
        id: String,
        /// Path of the JSON file.
        path: PathBuf,
    },
}

impl SinkConfig {
    /// Id in the topology.
    pub fn id(&self) -> &str {
        match self {
            SinkConfig::Records { id, .. }
            | SinkConfig::Summary { id }
            | SinkConfig::Report { id, .. } => id,
        }
    }

    /// The topic of a record sink that writes to Fluvio.
    pub fn topic(&self) -> Option<&FluvioOutput> {
        match self {
            SinkConfig::Records {
                to: RecordTarget::Topic(o),
                ..
            } => Some(o),
            _ => None,
        }
    }
}

impl Topology {
    /// Parse and validate a topology from TOML text; `file` names it in errors.
    /// `overrides` are `dotted.key=value` assignments applied first.
    pub fn from_toml(file: &str, text: &str, overrides: &[String]) -> Result<Self, ConfigErrors> {
        let mut table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                let msg = e.to_string().replace('\n', " ");
                return Err(ConfigErrors(vec![ConfigError {
                    file: file.to_string(),
                    key: "(syntax)".into(),
                    expected: "valid TOML".into(),
                    found: Some(msg.trim().to_string()),
                }]));
            }
        };
        let mut errs = Vec::new();
        for o in overrides {
            if let Err(e) = set_override(&mut table, o) {
                errs.push(ConfigError {
                    file: "--set".into(),
                    key: o.clone(),
                    expected: "KEY=VALUE".into(),
                    found: Some(e),
                });
            }
        }
        let errors = Errors::new(file);
        let topology = read_topology(file, &table, &errors);
        errs.extend(errors.into_vec());
        if errs.is_empty() {
            Ok(topology)
        } else {
            Err(ConfigErrors(errs))
        }
    }

    /// Read and validate a topology file.
    pub fn from_file(path: &std::path::Path, overrides: &[String]) -> Result<Self, ConfigErrors> {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_toml(&file, &text, overrides),
            Err(e) => Err(ConfigErrors(vec![ConfigError {
                file,
                key: "(file)".into(),
                expected: "a readable topology file".into(),
                found: Some(e.to_string()),
            }])),
        }
    }

    /// The built-in default topology.
    pub fn embedded(overrides: &[String]) -> Result<Self, ConfigErrors> {
        Self::from_toml(
            "topologies/embedded.toml (built in)",
            EMBEDDED_TOPOLOGY,
            overrides,
        )
    }

    /// Where the JSON report goes, if anywhere.
    pub fn report_path(&self) -> Option<&std::path::Path> {
        self.sinks.iter().find_map(|s| match s {
            SinkConfig::Report { path, .. } => Some(path.as_path()),
            _ => None,
        })
    }

    /// Whether the end-of-run summary is printed.
    pub fn has_summary(&self) -> bool {
        self.sinks
            .iter()
            .any(|s| matches!(s, SinkConfig::Summary { .. }))
    }

    /// Keep only the record sinks (benchmarks drop the report and summary).
    pub fn record_sinks_only(&mut self) {
        self.sinks
            .retain(|s| matches!(s, SinkConfig::Records { .. }));
    }

    /// What the engine core reads of this topology.
    pub fn engine_config(&self) -> EngineConfig {
        let e = &self.engine;
        EngineConfig {
            seed: e.seed,
            alert_threshold: e.alert_threshold,
            allowed_lateness_ms: e.allowed_lateness_ms,
            idle_eviction_ms: e.idle_eviction_ms,
            eviction_interval_ms: e.eviction_interval_ms,
            explain_top: e.explain_top,
            workers: e.workers,
            learn: self.labels.learn,
            features: self.features.clone(),
            logistic: self.model.logistic,
            imbalance: self.model.imbalance,
            portfolio: self.model.portfolio,
            pending_capacity: self.pending.capacity,
            pending_ttl_ms: self.pending.ttl_ms,
            eval_k: self.evaluation.k,
            unlabeled: self.evaluation.unlabeled,
            // Days of the simulator's reports start at its first day; files at UTC midnight.
            eval_origin_ms: match &self.source {
                SourceConfig::Simulator(s) => s.start_ms,
                SourceConfig::File(_) | SourceConfig::Fluvio(_) => 0,
            },
        }
    }
}

fn read_topology(file: &str, table: &toml::Table, errors: &Errors) -> Topology {
    let root = Section::root(table, errors);
    let engine = read_engine(&root.section("engine"));
    let source_sec = root.section("source");
    let source = read_source(&source_sec);
    let labels = read_labels(&root.section("labels"), &source);
    let features = read_features(&root.section("features"));
    let mut model = read_model(&root.section("model"));
    // Model randomness follows the engine seed.
    model.portfolio.forest.seed ^= engine.seed;
    model.portfolio.hst.seed ^= engine.seed;
    model.portfolio.batch.seed ^= engine.seed;
    let p = root.section("pending");
    let pending = PendingSettings {
        capacity: p.int("capacity", 2_000_000, 1, 1 << 40) as usize,
        ttl_ms: p.duration("ttl", 90 * DAY_MS, 1),
    };
    p.finish();
    let ev = root.section("evaluation");
    let evaluation = EvaluationSettings {
        k: ev.int("k", 100, 1, 1 << 30) as usize,
        unlabeled: match ev
            .choice("unlabeled", &["genuine", "ignore"], "genuine")
            .as_str()
        {
            "ignore" => Unlabeled::Ignore,
            _ => Unlabeled::Genuine,
        },
        last_days: ev.int("last_days", 30, 1, 100_000) as u32,
    };
    ev.finish();
    let source_partitions = match &source {
        SourceConfig::Fluvio(f) => f.topic_partitions,
        _ => 1,
    };
    let sinks = read_sinks(&root.section("sinks"), source_partitions);
    let fluvio = service::read_fluvio(&root.section("fluvio"));
    let checkpoint = service::read_checkpoint(&root.section("checkpoint"));
    let service = service::read_service(&root.section("service"));
    let is_fluvio = matches!(source, SourceConfig::Fluvio(_));
    if is_fluvio && engine.workers != 1 {
        root.error(
            "engine.workers",
            "1 with a Fluvio source (one engine thread per instance; scale out by \
             running an instance per set of partitions)",
            Some(engine.workers.to_string()),
        );
    }
    if is_fluvio {
        for sink in &sinks {
            if let SinkConfig::Records {
                id,
                to: RecordTarget::File { .. },
                ..
            } = sink
            {
                root.error(
                    &format!("sinks.{id}.topic"),
                    "a Fluvio topic (a service writes scores, alerts and dead letters to \
                     topics: files would be rewritten on every restart)",
                    None,
                );
            }
        }
    } else {
        for (sec, present) in [
            ("checkpoint", checkpoint.is_some()),
            ("service", root.has("service")),
        ] {
            if present {
                root.error(sec, "no such table unless source.type = \"fluvio\"", None);
            }
        }
        for sink in sinks.iter().filter(|s| s.topic().is_some()) {
            root.error(
                &format!("sinks.{}.topic", sink.id()),
                "a path (Fluvio outputs need source.type = \"fluvio\")",
                None,
            );
        }
    }
    root.finish();
    Topology {
        file: file.to_string(),
        engine,
        source,
        labels,
        features,
        model,
        pending,
        evaluation,
        sinks,
        fluvio,
        checkpoint,
        service,
    }
}

fn read_engine(s: &Section) -> EngineSettings {
    let e = EngineSettings {
        seed: s.int("seed", 42, 0, i64::MAX) as u64,
        alert_threshold: s.float("alert_threshold", 0.5, 0.0, 1.0),
        allowed_lateness_ms: s.duration("allowed_lateness", 10 * 60_000, 0),
        idle_eviction_ms: s.duration("idle_eviction", 45 * DAY_MS, 1),
        eviction_interval_ms: s.duration("eviction_interval", 3_600_000, 1),
        explain_top: s.int("explain_top", 3, 0, 64) as usize,
        workers: match s.int("workers", 1, 0, 256) {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n as usize,
        },
        progress: match s
            .choice("progress", &["auto", "on", "off"], "auto")
            .as_str()
        {
            "on" => Progress::On,
            "off" => Progress::Off,
            _ => Progress::Auto,
        },
    };
    s.finish();
    e
}

fn read_source(s: &Section) -> SourceConfig {
    if !s.present() {
        s.error("", "a [source] table", None);
    }
    let kind = s.choice("type", &["simulator", "file", "fluvio"], "simulator");
    if kind == "file" {
        let input = read_file_input(s, &TRANSACTION_FIELDS);
        s.finish();
        SourceConfig::File(input)
    } else if kind == "fluvio" {
        let input = service::read_fluvio_input(s, None);
        s.finish();
        SourceConfig::Fluvio(input)
    } else {
        SourceConfig::Simulator(read_simulator(s))
    }
}

/// Simulator keys of `[source]` (type = "simulator").
pub fn read_simulator(s: &Section) -> SimConfig {
    let d = SimConfig::default();
    let mix = |sec: &Section, m: PatternMix| PatternMix {
        stolen_card: sec.float("stolen_card", m.stolen_card, 0.0, 1e6),
        compromised_merchant: sec.float("compromised_merchant", m.compromised_merchant, 0.0, 1e6),
        account_takeover: sec.float("account_takeover", m.account_takeover, 0.0, 1e6),
        card_testing: sec.float("card_testing", m.card_testing, 0.0, 1e6),
    };
    let patterns_sec = s.section("patterns");
    let patterns = mix(&patterns_sec, d.patterns);
    patterns_sec.finish();
    let drift_sec = s.section("drift");
    let mode = match drift_sec
        .choice(
            "mode",
            &["none", "gradual", "sudden"],
            match d.drift.mode {
                DriftMode::None => "none",
                DriftMode::Gradual => "gradual",
                DriftMode::Sudden { .. } => "sudden",
            },
        )
        .as_str()
    {
        "none" => DriftMode::None,
        "sudden" => DriftMode::Sudden {
            at_day: drift_sec.int("at_day", 30, 0, 100_000) as u32,
        },
        _ => DriftMode::Gradual,
    };
    if !matches!(mode, DriftMode::Sudden { .. }) && drift_sec.has("at_day") {
        drift_sec.error("at_day", "no at_day unless mode = \"sudden\"", None);
    }
    let end_sec = drift_sec.section("end_mix");
    let end_mix = mix(&end_sec, d.drift.end_mix);
    end_sec.finish();
    let drift = fraudstream_sim::DriftConfig {
        mode,
        end_mix,
        end_rate_multiplier: drift_sec.float(
            "end_rate_multiplier",
            d.drift.end_rate_multiplier,
            0.0,
            1e3,
        ),
    };
    drift_sec.finish();
    let l = s.section("label_delay");
    let dl = d.labels;
    let genuine = match l.choice("genuine", &["after", "never"], "after").as_str() {
        "never" => GenuineLabels::Never,
        _ => GenuineLabels::After {
            maturity_days: l.float(
                "genuine_maturity_days",
                match dl.genuine {
                    GenuineLabels::After { maturity_days } => maturity_days,
                    GenuineLabels::Never => 7.0,
                },
                0.0,
                3650.0,
            ),
        },
    };
    let labels = fraudstream_sim::LabelConfig {
        analyst_share: l.float("analyst_share", dl.analyst_share, 0.0, 1.0),
        analyst_mean_hours: l.float("analyst_mean_hours", dl.analyst_mean_hours, 0.0, 1e5),
        chargeback_median_days: l.float(
            "chargeback_median_days",
            dl.chargeback_median_days,
            0.0,
            3650.0,
        ),
        chargeback_sigma: l.float("chargeback_sigma", dl.chargeback_sigma, 0.0, 10.0),
        max_delay_days: l.float("max_delay_days", dl.max_delay_days, 0.0, 3650.0),
        genuine,
    };
    l.finish();
    let cfg = SimConfig {
        seed: s.int("seed", d.seed as i64, 0, i64::MAX) as u64,
        days: s.int("days", d.days as i64, 1, 100_000) as u32,
        start_ms: s.int("start_ms", d.start_ms, 0, 32_503_680_000_000),
        cards: s.int("cards", d.cards as i64, 1, u32::MAX as i64) as u32,
        merchants: s.int("merchants", d.merchants as i64, 1, u32::MAX as i64) as u32,
        fraud_rate: s.float("fraud_rate", d.fraud_rate, 0.0, 1.0),
        patterns,
        drift,
        labels,
    };
    if let Err(problems) = cfg.validate() {
        for p in problems {
            let (key, what) = p.split_once(':').unwrap_or(("", p.as_str()));
            s.error(key.trim(), what.trim().to_string(), None);
        }
    }
    s.finish();
    cfg
}

fn format_from(s: &Section, path: &str) -> FileFormat {
    let default = if path.ends_with(".csv") {
        "csv"
    } else {
        "jsonl"
    };
    match s.choice("format", &["csv", "jsonl"], default).as_str() {
        "csv" => FileFormat::Csv,
        _ => FileFormat::Jsonl,
    }
}

/// Read a file input: `path`, `format`, `timestamp`, `max_record_bytes`, and a
/// `[fields]` table mapping event fields to the file's columns (identity by
/// default).
fn read_file_input(s: &Section, fields: &[&str]) -> FileInput {
    let path = s.opt_str("path").unwrap_or_default();
    if path.is_empty() {
        s.error("path", "the path of a CSV or JSONL file", None);
    }
    let format = format_from(s, &path);
    let timestamp = match s.opt_str("timestamp").as_deref() {
        None | Some("auto") => TimestampFormat::Auto,
        Some("rfc3339") => TimestampFormat::Rfc3339,
        Some("epoch_ms") => TimestampFormat::EpochMs,
        Some("epoch_s") => TimestampFormat::EpochS,
        Some(p) if p.contains('%') => TimestampFormat::Pattern(p.to_string()),
        Some(other) => {
            s.error(
                "timestamp",
                "\"auto\", \"rfc3339\", \"epoch_ms\", \"epoch_s\" or a strftime pattern such as \"%Y-%m-%d %H:%M:%S\"",
                Some(format!("\"{other}\"")),
            );
            TimestampFormat::Auto
        }
    };
    let max_record_bytes = s.int("max_record_bytes", 65_536, 64, 1 << 30) as usize;
    let sort_by_time = s.choice("order", &["file", "time"], "file") == "time";
    let f = s.section("fields");
    let mut map = BTreeMap::new();
    for name in fields {
        let col = f.opt_str(name).unwrap_or_else(|| name.to_string());
        map.insert(name.to_string(), col);
    }
    f.finish();
    FileInput {
        path: PathBuf::from(path),
        format,
        timestamp,
        fields: map,
        max_record_bytes,
        sort_by_time,
    }
}

fn read_labels(s: &Section, source: &SourceConfig) -> LabelsConfig {
    let is_sim = matches!(source, SourceConfig::Simulator(_));
    let fluvio_source = match source {
        SourceConfig::Fluvio(f) => Some(f),
        _ => None,
    };
    let default = if is_sim { "simulator" } else { "none" };
    let kind = s.choice(
        "type",
        &["simulator", "file", "column", "fluvio", "none"],
        default,
    );
    if fluvio_source.is_some() && !matches!(kind.as_str(), "fluvio" | "none") {
        s.error(
            "type",
            "\"fluvio\" or \"none\" with a Fluvio source",
            Some(format!("\"{kind}\"")),
        );
    }
    let src = match kind.as_str() {
        "fluvio" => {
            if fluvio_source.is_none() {
                s.error(
                    "type",
                    "\"fluvio\" labels only with source.type = \"fluvio\"",
                    Some("\"fluvio\"".into()),
                );
            }
            LabelSource::Fluvio(service::read_fluvio_input(s, fluvio_source))
        }
        "simulator" => {
            if !is_sim {
                s.error("type", "\"file\", \"column\" or \"none\" with a file source (\"simulator\" labels need source.type = \"simulator\")", Some("\"simulator\"".into()));
            }
            LabelSource::Simulator
        }
        "file" => LabelSource::File(read_file_input(s, &LABEL_FIELDS)),
        "column" => {
            if is_sim {
                s.error("type", "\"simulator\", \"file\" or \"none\" with the simulator source (\"column\" needs source.type = \"file\")", Some("\"column\"".into()));
            }
            let column = s.opt_str("column").unwrap_or_default();
            if column.is_empty() {
                s.error(
                    "column",
                    "the name of the label column in the transaction file",
                    None,
                );
            }
            LabelSource::Column {
                column,
                delay_ms: s.duration("delay", 7 * DAY_MS, 0),
            }
        }
        _ => LabelSource::None,
    };
    let learn = s.bool("learn", true);
    s.finish();
    LabelsConfig { source: src, learn }
}

fn read_features(s: &Section) -> FeatureConfig {
    let d = FeatureConfig::default();
    let mut cfg = FeatureConfig {
        card_windows: s.durations("card_windows", &d.card_windows, 1000),
        merchant_windows: s.durations("merchant_windows", &d.merchant_windows, 1000),
        merchant_risk_windows: s.durations("merchant_risk_windows", &d.merchant_risk_windows, 1000),
        buckets: s.int("buckets", d.buckets as i64, 1, 1024) as u32,
        confirmed_fraud_horizon_ms: s.duration(
            "confirmed_fraud_horizon",
            d.confirmed_fraud_horizon_ms,
            1,
        ),
        hash_bits: s.int("hash_bits", d.hash_bits as i64, 1, 24) as u32,
    };
    if fraudstream_engine::features::merchant_feature_count(&cfg)
        > fraudstream_engine::engine::MAX_MERCHANT_FEATURES
    {
        s.error(
            "merchant_windows",
            "at most 7 merchant and merchant-risk windows together",
            None,
        );
    }
    for (key, list) in [
        ("card_windows", &mut cfg.card_windows),
        ("merchant_windows", &mut cfg.merchant_windows),
        ("merchant_risk_windows", &mut cfg.merchant_risk_windows),
    ] {
        let mut sorted = list.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != list.len() {
            s.error(key, "distinct horizons", None);
        }
        *list = sorted;
    }
    s.finish();
    cfg
}

fn read_forest(s: &Section) -> ForestConfig {
    let d = ForestConfig::default();
    let f = ForestConfig {
        trees: s.int("trees", d.trees as i64, 1, 1000) as usize,
        lambda: s.float("lambda", d.lambda, 0.01, 100.0),
        grace_period: s.float("grace_period", d.grace_period, 1.0, 1e9),
        split_confidence: s.float("split_confidence", d.split_confidence, 1e-300, 0.5),
        tie_threshold: s.float("tie_threshold", d.tie_threshold, 0.0, 1.0),
        max_depth: s.int("max_depth", d.max_depth as i64, 1, 64) as u32,
        max_leaves: s.int("max_leaves", d.max_leaves as i64, 2, 1 << 24) as usize,
        subspace: s.int("subspace", d.subspace as i64, 0, 4096) as usize,
        candidates: s.int("candidates", d.candidates as i64, 1, 1024) as usize,
        drift_delta: s.float("drift_delta", d.drift_delta, 0.0, 0.5),
        warm_up: s.float("warm_up", d.warm_up, 0.0, 1e12),
        seed: d.seed,
    };
    s.finish();
    f
}

fn read_hst(s: &Section) -> HstConfig {
    let d = HstConfig::default();
    let h = HstConfig {
        trees: s.int("trees", d.trees as i64, 1, 1000) as usize,
        height: s.int(
            "height",
            d.height as i64,
            1,
            fraudstream_engine::model::hst::MAX_HEIGHT as i64,
        ) as u32,
        window: s.int("window", d.window as i64, 1, u32::MAX as i64) as u64,
        seed: d.seed,
    };
    s.finish();
    h
}

fn read_batch(s: &Section) -> BatchConfig {
    let d = BatchConfig::default();
    let b = BatchConfig {
        buffer: s.int("buffer", d.buffer as i64, 10, 10_000_000) as usize,
        negative_rate: s.float("negative_rate", d.negative_rate, 1e-6, 1.0),
        retrain_every: s.int("retrain_every", d.retrain_every as i64, 1, i64::MAX) as u64,
        swap_after: s.int("swap_after", d.swap_after as i64, 1, i64::MAX) as u64,
        swap: match s
            .choice("swap", &["at_label", "when_ready"], "at_label")
            .as_str()
        {
            "when_ready" => SwapMode::WhenReady,
            _ => SwapMode::AtLabel,
        },
        l2: s.float("l2", d.l2, 0.0, 1e9),
        min_frauds: s.int("min_frauds", d.min_frauds as i64, 1, 1 << 30) as usize,
        seed: d.seed,
    };
    s.finish();
    b
}

fn read_portfolio(s: &Section) -> PortfolioConfig {
    let d = PortfolioConfig::default();
    let kind = match s
        .choice(
            "type",
            &["logistic", "forest", "hst", "batch", "blend"],
            "logistic",
        )
        .as_str()
    {
        "forest" => ModelKind::Forest,
        "hst" => ModelKind::Hst,
        "batch" => ModelKind::Batch,
        "blend" => ModelKind::Blend,
        _ => ModelKind::Logistic,
    };
    PortfolioConfig {
        kind,
        anomaly_feature: s.bool("anomaly_feature", d.anomaly_feature),
        compare: s.bool("compare", d.compare),
        forest: read_forest(&s.section("forest")),
        hst: read_hst(&s.section("hst")),
        batch: read_batch(&s.section("batch")),
        combine: match s.choice("combine", &["stack", "mean"], "stack").as_str() {
            "mean" => Combine::Mean,
            _ => Combine::Stack,
        },
        weights: [
            s.float("weight_logistic", d.weights[0], 0.0, 1e6),
            s.float("weight_forest", d.weights[1], 0.0, 1e6),
            s.float("weight_batch", d.weights[2], 0.0, 1e6),
        ],
        stack_rate: s.float("stack_rate", d.stack_rate, 0.0, 100.0),
        cold_start_frauds: s.int("cold_start_frauds", d.cold_start_frauds as i64, 0, i64::MAX)
            as u64,
        cold_start_genuine: s.int(
            "cold_start_genuine",
            d.cold_start_genuine as i64,
            0,
            i64::MAX,
        ) as u64,
        hold_frauds: s.int("hold_frauds", d.hold_frauds as i64, 0, 1 << 30) as usize,
        drift_delta: s.float("drift_delta", d.drift_delta, 0.0, 0.5),
    }
}

fn read_model(s: &Section) -> ModelSettings {
    let portfolio = read_portfolio(s);
    let opt = s.choice("optimizer", &["ftrl", "adagrad"], "ftrl");
    let d = Optimizer::default();
    let Optimizer::Ftrl {
        alpha,
        beta,
        l1,
        l2,
    } = d
    else {
        unreachable!()
    };
    let optimizer = if opt == "adagrad" {
        Optimizer::Adagrad {
            learning_rate: s.float("learning_rate", 0.05, 1e-9, 100.0),
            l2: s.float("l2", 1e-4, 0.0, 1e6),
        }
    } else {
        Optimizer::Ftrl {
            alpha: s.float("alpha", alpha, 1e-9, 100.0),
            beta: s.float("beta", beta, 0.0, 1e6),
            l1: s.float("l1", l1, 0.0, 1e6),
            l2: s.float("l2", l2, 0.0, 1e6),
        }
    };
    let imbalance = match s
        .choice("imbalance", &["weight", "subsample", "none"], "weight")
        .as_str()
    {
        "none" => Imbalance::None,
        "subsample" => Imbalance::Subsample {
            negative_rate: s.float("negative_rate", 0.1, 1e-6, 1.0),
        },
        _ => Imbalance::Weight {
            positive_weight: s.float("positive_weight", 5.0, 1e-6, 1e6),
        },
    };
    let m = ModelSettings {
        logistic: LogisticConfig {
            optimizer,
            prior_fraud_rate: s.float("prior_fraud_rate", 0.01, 1e-9, 0.999_999),
        },
        imbalance,
        load: s.opt_str("load").map(PathBuf::from),
        save: s.opt_str("save").map(PathBuf::from),
        portfolio,
    };
    s.finish();
    m
}

fn read_sinks(s: &Section, source_partitions: u32) -> Vec<SinkConfig> {
    const TYPES: &str = "one of \"scores\", \"alerts\", \"dead_letters\", \"summary\", \"report\"";
    let mut out = Vec::new();
    for (id, sec) in s.subsections() {
        let records = match sec.opt_str("type").as_deref() {
            Some("scores") => Records::Scores,
            Some("alerts") => Records::Alerts,
            Some("dead_letters") => Records::DeadLetters,
            Some("summary") => {
                out.push(SinkConfig::Summary { id });
                sec.finish();
                continue;
            }
            Some("report") => {
                match sec.opt_str("path") {
                    Some(p) => out.push(SinkConfig::Report {
                        id,
                        path: PathBuf::from(p),
                    }),
                    None => sec.error("path", "the path of the JSON report", None),
                }
                sec.finish();
                continue;
            }
            other => {
                sec.error("type", TYPES, other.map(|o| format!("\"{o}\"")));
                sec.finish();
                continue;
            }
        };
        let to = match service::read_fluvio_output(&sec, source_partitions) {
            Some(topic) => {
                if sec.has("path") {
                    sec.error("path", "either a path or a topic, not both", None);
                }
                Some(RecordTarget::Topic(topic))
            }
            None => {
                let p = sec.opt_str("path");
                if p.is_none() {
                    sec.error(
                        "path",
                        "the path of the output file (or a Fluvio topic)",
                        None,
                    );
                }
                let format = format_from(&sec, p.as_deref().unwrap_or(""));
                p.map(|p| RecordTarget::File {
                    path: PathBuf::from(p),
                    format,
                })
            }
        };
        sec.finish();
        if let Some(to) = to {
            out.push(SinkConfig::Records { id, records, to });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_topology_is_valid() {
        let t = Topology::embedded(&[]).unwrap();
        assert!(matches!(t.source, SourceConfig::Simulator(_)));
        assert_eq!(t.labels.source, LabelSource::Simulator);
        assert!(t.has_summary());
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let text = r#"
[engine]
alert_threshold = 2.0
allowed_lateness = "soon"
[source]
type = "file"
format = "xml"
[labels]
type = "column"
[features]
card_windows = ["1h", "1h"]
[model]
optimizer = "sgd"
colour = "blue"
[sinks.out]
type = "scores"
"#;
        let err = Topology::from_toml("t.toml", text, &[]).unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        for k in [
            "engine.alert_threshold",
            "engine.allowed_lateness",
            "source.path",
            "source.format",
            "labels.column",
            "features.card_windows",
            "model.optimizer",
            "model.colour",
            "sinks.out.path",
        ] {
            assert!(keys.contains(&k), "missing {k} in {keys:?}");
        }
        assert!(err.0.iter().all(|e| e.file == "t.toml"));
        let text = err.to_string();
        assert!(
            text.contains(
                "t.toml: model.optimizer: expected one of \"ftrl\", \"adagrad\", found \"sgd\""
            ),
            "{text}"
        );
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let err = Topology::from_toml("bad.toml", "[engine\nseed = 1", &[]).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].file, "bad.toml");
    }

    #[test]
    fn overrides_apply_before_validation() {
        let t = Topology::embedded(&["source.days=3".into(), "engine.seed=9".into()]).unwrap();
        let SourceConfig::Simulator(sim) = &t.source else {
            panic!()
        };
        assert_eq!(sim.days, 3);
        assert_eq!(t.engine.seed, 9);
        let err = Topology::embedded(&["source.days=0".into()]).unwrap_err();
        assert_eq!(err.0[0].key, "source.days");
    }

    #[test]
    fn model_portfolio_keys_are_validated() {
        let t = Topology::embedded(&[]).unwrap();
        assert_eq!(t.model.portfolio.kind, ModelKind::Logistic, "the default");
        let t = Topology::embedded(&[
            "model.type=\"blend\"".into(),
            "model.combine=\"mean\"".into(),
            "model.forest.trees=4".into(),
            "model.batch.swap=\"when_ready\"".into(),
        ])
        .unwrap();
        assert_eq!(t.model.portfolio.kind, ModelKind::Blend);
        assert_eq!(t.model.portfolio.combine, Combine::Mean);
        assert_eq!(t.model.portfolio.forest.trees, 4);
        assert_eq!(t.model.portfolio.batch.swap, SwapMode::WhenReady);
        let err = Topology::embedded(&[
            "model.type=\"tree\"".into(),
            "model.forest.trees=0".into(),
            "model.forest.colour=1".into(),
            "model.batch.swap=\"later\"".into(),
            "model.hst.height=99".into(),
        ])
        .unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        for k in [
            "model.type",
            "model.forest.trees",
            "model.forest.colour",
            "model.batch.swap",
            "model.hst.height",
        ] {
            assert!(keys.contains(&k), "missing {k} in {keys:?}");
        }
    }
}
