//! Topology files: what a pipeline reads, computes and writes, as data.
//!
//! Parsing (TOML to a table), validation (table to a typed [`Topology`], every
//! error collected) and running ([`crate::exec::pipeline`]) are separate steps.

mod api;
mod engine;
pub mod reader;
pub mod rules;
pub mod service;
mod sinks;
mod source;

pub use api::{ApiInput, Decisions};
pub use engine::{EngineSettings, EvaluationSettings, ModelSettings, PendingSettings, Progress};
pub use sinks::{RecordTarget, Records, SinkConfig};
pub use source::{
    read_simulator, FileFormat, FileInput, LabelSource, LabelsConfig, SourceConfig,
    TimestampFormat, DEFAULT_LABEL_DELAY_MS, DEFAULT_MAX_RECORD_BYTES, LABEL_FIELDS,
    TRANSACTION_FIELDS,
};

use fraudstream_engine::features::FeatureConfig;
use fraudstream_engine::EngineConfig;
pub use reader::{set_override, ConfigError, ConfigErrors};
use reader::{Errors, Section};

pub use service::{
    CheckpointSettings, FluvioInput, FluvioOutput, FluvioSettings, Role, ServiceSettings, Stages,
    StartAt,
};

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
    /// Stages repartitioned through Fluvio, and the role of this process.
    pub stages: Option<Stages>,
    /// Score bands of the scoring API's decisions.
    pub decisions: Decisions,
    /// The scoring API beside a Fluvio source (`[api]`): requests scored by
    /// the same engine as the stream. (An API-only topology sets these
    /// limits in `[source]`.)
    pub api: Option<ApiInput>,
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
                    // An empty assignment still gets a visible name.
                    key: if o.trim().is_empty() {
                        "(empty)".into()
                    } else {
                        o.clone()
                    },
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
    pub fn report_path(&self) -> Option<(&str, &std::path::Path)> {
        self.sinks.iter().find_map(|s| match s {
            SinkConfig::Report { id, path, .. } => Some((id.as_str(), path.as_path())),
            _ => None,
        })
    }

    /// Where the HTML report goes, if the topology writes one.
    pub fn report_html_path(&self) -> Option<&std::path::Path> {
        self.sinks.iter().find_map(|s| match s {
            SinkConfig::Report { html, .. } => html.as_deref(),
            _ => None,
        })
    }

    /// The stage(s) this process runs.
    pub fn role(&self) -> Role {
        self.stages.as_ref().map_or(Role::All, |s| s.role)
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
            stage: e.stage,
            workers: e.workers,
            learn: self.labels.learn,
            features: self.features.clone(),
            logistic: self.model.logistic,
            imbalance: self.model.imbalance,
            portfolio: self.model.portfolio,
            calibration: self.model.calibration,
            pending_capacity: self.pending.capacity,
            pending_ttl_ms: self.pending.ttl_ms,
            eval_k: self.evaluation.k,
            unlabeled: self.evaluation.unlabeled,
            eval_retention_ms: self.evaluation.retention_ms,
            eval_max_records: self.evaluation.max_records,
            decisions: self.decisions.decider(),
            // Days of the simulator's reports start at its first day; files at UTC midnight.
            eval_origin_ms: match &self.source {
                SourceConfig::Simulator(s) => s.start_ms,
                SourceConfig::File(_) | SourceConfig::Fluvio(_) | SourceConfig::Api(_) => 0,
            },
        }
    }
}

fn read_topology(file: &str, table: &toml::Table, errors: &Errors) -> Topology {
    let root = Section::root(table, errors);
    let engine = EngineSettings::read(&root.section("engine"));
    let source_sec = root.section("source");
    let source = source::read_source(&source_sec);
    let labels = source::read_labels(&root.section("labels"), &source);
    let features = engine::read_features(&root.section("features"));
    let mut model = engine::read_model(&root.section("model"));
    // Model randomness follows the engine seed.
    model.portfolio.forest.seed ^= engine.stage.seed;
    model.portfolio.hst.seed ^= engine.stage.seed;
    model.portfolio.batch.seed ^= engine.stage.seed;
    let pending = PendingSettings::read(&root.section("pending"));
    let evaluation = EvaluationSettings::read(&root.section("evaluation"));
    let source_partitions = match &source {
        SourceConfig::Fluvio(f) => f.topic_partitions,
        _ => 1,
    };
    let sinks = sinks::read_sinks(&root.section("sinks"), source_partitions);
    let fluvio = service::read_fluvio(&root.section("fluvio"));
    let checkpoint = service::read_checkpoint(&root.section("checkpoint"));
    let service = service::read_service(&root.section("service"));
    let stages = service::read_stages(&root.section("stages"), source_partitions);
    let mut decisions = api::read_decisions(
        &root.section("decisions"),
        fraudstream_engine::features::feature_space(&features).names(),
    );
    let is_fluvio = matches!(source, SourceConfig::Fluvio(_));
    let is_api = matches!(source, SourceConfig::Api(_));
    let api = root
        .has("api")
        .then(|| api::read_api_input(&root.section("api")));
    // The scoring API always decides.
    decisions.enabled |= is_api || api.is_some();
    if api.is_some() {
        if !is_fluvio {
            let expected = if is_api {
                "no such table with source.type = \"api\" (its limits are [source] keys)"
            } else {
                "no such table unless source.type = \"fluvio\" (the API beside a stream; \
                 source.type = \"api\" serves the API alone)"
            };
            root.error("api", expected, None);
        } else {
            if service.listen.is_none() {
                root.error(
                    "service.listen",
                    "an address for the scoring API ([api])",
                    Some("\"off\"".into()),
                );
            }
            if stages.is_some() {
                root.error(
                    "api",
                    "no [api] with [stages] (a request must reach the stage that owns its \
                     card; serve the API from a process that runs both stages)",
                    None,
                );
            }
        }
    }
    if is_api {
        if engine.workers != 1 {
            root.error(
                "engine.workers",
                "1 with source.type = \"api\" (one engine thread answers every request)",
                Some(engine.workers.to_string()),
            );
        }
        if service.listen.is_none() {
            root.error(
                "service.listen",
                "an address for the scoring API (source.type = \"api\")",
                Some("\"off\"".into()),
            );
        }
        for (sec, present) in [
            ("checkpoint", checkpoint.is_some()),
            ("stages", stages.is_some()),
        ] {
            if present {
                root.error(sec, "no such table with source.type = \"api\"", None);
            }
        }
    }
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
    } else if !is_api {
        for (sec, present) in [
            ("checkpoint", checkpoint.is_some()),
            ("service", root.has("service")),
            ("stages", stages.is_some()),
        ] {
            if present {
                root.error(
                    sec,
                    "no such table unless source.type = \"fluvio\" (or \"api\" for [service])",
                    None,
                );
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
        stages,
        decisions,
        api,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fraudstream_engine::model::batch::SwapMode;
    use fraudstream_engine::model::hst::MAX_NODES;
    use fraudstream_engine::model::portfolio::{Combine, ModelKind};

    #[test]
    fn a_fraud_weight_left_over_from_another_imbalance_is_named() {
        // The built-in topology weights frauds; switching to subsampling
        // from the command line names the key left over.
        let err = Topology::embedded(&["model.imbalance=subsample".into()]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(
                "model.positive_weight: expected no positive_weight unless imbalance = \"weight\""
            ),
            "{text}"
        );
        assert!(!text.contains("unknown key"), "{text}");
        // Without it, subsampling is read.
        let t = Topology::from_toml(
            "sub.toml",
            "[source]\ntype = \"simulator\"\n[model]\nimbalance = \"subsample\"\nnegative_rate = 0.25\n",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            t.model.imbalance,
            fraudstream_engine::model::logistic::Imbalance::Subsample {
                negative_rate: 0.25
            }
        );
    }

    #[test]
    fn embedded_topology_is_valid() {
        let t = Topology::embedded(&[]).unwrap();
        assert!(matches!(t.source, SourceConfig::Simulator(_)));
        assert_eq!(t.labels.source, LabelSource::Simulator);
        assert!(t.has_summary());
    }

    #[test]
    fn the_embedded_topology_spells_out_the_engine_defaults() {
        let t = Topology::embedded(&[]).unwrap();
        let mut cfg = t.engine_config();
        let d = EngineConfig::default();
        // Derived by the topology: days start at the simulator's first day,
        // and the members' seeds are mixed with engine.seed.
        cfg.eval_origin_ms = d.eval_origin_ms;
        cfg.portfolio.forest.seed = d.portfolio.forest.seed;
        cfg.portfolio.hst.seed = d.portfolio.hst.seed;
        cfg.portfolio.batch.seed = d.portfolio.batch.seed;
        assert_eq!(cfg, d);
        let empty =
            Topology::from_toml("empty.toml", "[source]\ntype = \"simulator\"\n", &[]).unwrap();
        assert_eq!(empty.engine_config().portfolio.kind, d.portfolio.kind);
        assert_eq!(empty.engine, EngineSettings::default());
    }

    #[test]
    fn service_settings_left_out_take_their_defaults() {
        let text = "[source]\ntype = \"fluvio\"\ntopic = \"tx\"\n\
                    [checkpoint]\ndir = \"ck\"\n\
                    [sinks.scores]\ntype = \"scores\"\ntopic = \"scores\"\n";
        let t = Topology::from_toml("svc.toml", text, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.fluvio, FluvioSettings::default());
        assert_eq!(t.service, ServiceSettings::default());
        let c = t.checkpoint.unwrap();
        let want = CheckpointSettings {
            dir: "ck".into(),
            ..CheckpointSettings::default()
        };
        assert_eq!(c, want);
        let SourceConfig::Fluvio(input) = t.source else {
            panic!("a fluvio source")
        };
        let want = FluvioInput {
            topic: "tx".into(),
            ..FluvioInput::default()
        };
        assert_eq!(input, want);
        let out = t.sinks[0].topic().unwrap();
        assert_eq!(
            (out.batch_bytes, out.linger_ms),
            (
                FluvioOutput::default().batch_bytes,
                FluvioOutput::default().linger_ms
            )
        );
    }

    #[test]
    fn endpoint_limits_are_read_and_checked() {
        let text = "[source]\ntype = \"fluvio\"\ntopic = \"tx\"\n\
                    [sinks.scores]\ntype = \"scores\"\ntopic = \"scores\"\n";
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let t = Topology::from_toml(
            "svc.toml",
            text,
            &set(&[
                "service.http_max_connections=8",
                "service.http_idle_timeout=\"250ms\"",
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (
                t.service.http_max_connections,
                t.service.http_idle_timeout_ms
            ),
            (8, 250)
        );
        let err = Topology::from_toml(
            "svc.toml",
            text,
            &set(&[
                "service.http_max_connections=0",
                "service.http_idle_timeout=5",
            ]),
        )
        .unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["service.http_max_connections", "service.http_idle_timeout"]
        );
    }

    #[test]
    fn stages_lay_a_lane_of_card_partitions_per_source_partition() {
        let text = "[source]\ntype = \"fluvio\"\ntopic = \"tx\"\ntopic_partitions = 3\n\
                    [stages]\nrole = \"card\"\ntopic = \"st\"\ncard_partitions = 4\n\
                    partitions = [1, 3]\nlearn_topic = \"learn\"\n";
        let t = Topology::from_toml("st.toml", text, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.role(), Role::Card);
        let st = t.stages.as_ref().unwrap();
        assert_eq!(st.card_partitions, 4);
        assert_eq!(st.input.topic_partitions, 12, "3 lanes of 4");
        assert_eq!(st.input.partitions, [1, 3, 5, 7, 9, 11]);
        assert_eq!(st.output.topic_partitions, 12);
        let (read, write) = st.learn.as_ref().unwrap();
        assert_eq!((read.topic.as_str(), read.topic_partitions), ("learn", 1));
        assert_eq!((read.partitions.len(), read.idle_ms), (0, 1));
        assert_eq!(write.topic, "learn");
        // No [stages]: both stages in one process.
        let plain = "[source]\ntype = \"fluvio\"\ntopic = \"tx\"\n";
        let t = Topology::from_toml("p.toml", plain, &[]).unwrap();
        assert_eq!((t.role(), t.stages.is_none()), (Role::All, true));
    }

    #[test]
    fn stage_settings_are_checked_all_at_once() {
        let text = "[source]\ntype = \"fluvio\"\ntopic = \"tx\"\ntopic_partitions = 4\n\
                    [stages]\nrole = \"cards\"\ntopic = \"st\"\ntopic_partitions = 8\n\
                    card_partitions = 100\npartitions = [7]\nlearn_topic = \"st\"\n";
        let err = Topology::from_toml("st.toml", text, &[]).unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "stages.role",
                "stages.topic_partitions",
                "stages.card_partitions",
                "stages.learn_topic"
            ],
            "{err}"
        );
        let text = "[source]\ntype = \"fluvio\"\ntopic = \"tx\"\n\
                    [stages]\ntopic = \"st\"\ncard_partitions = 2\npartitions = [2]\n";
        let err = Topology::from_toml("st.toml", text, &[]).unwrap_err();
        assert_eq!(err.0[0].key, "stages.partitions[0]", "{err}");
        let sim = "[source]\ntype = \"simulator\"\n[stages]\ntopic = \"st\"\n";
        let err = Topology::from_toml("s.toml", sim, &[]).unwrap_err();
        assert_eq!(err.0[0].key, "stages", "{err}");
    }

    #[test]
    fn checkpoint_keep_is_from_1_to_100() {
        let svc = |keep: &str| {
            let text = format!(
                "[source]\ntype = \"fluvio\"\ntopic = \"tx\"\n\
                 [checkpoint]\ndir = \"ck\"\nkeep = {keep}\n\
                 [sinks.scores]\ntype = \"scores\"\ntopic = \"scores\"\n"
            );
            Topology::from_toml("svc.toml", &text, &[])
        };
        assert_eq!(svc("5").unwrap().checkpoint.unwrap().keep, 5);
        for bad in ["0", "101"] {
            let err = svc(bad).unwrap_err();
            assert_eq!(err.0[0].key, "checkpoint.keep", "{err}");
        }
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
    fn bands_and_risk_time_are_read_and_each_wrong_entry_reported() {
        let t = Topology::embedded(&[
            "features.bands=[\"amount\"]".into(),
            "features.merchant_risk_time=\"transaction\"".into(),
        ])
        .unwrap();
        assert_eq!(t.features.bands, ["amount"]);
        assert_eq!(
            t.features.merchant_risk_time,
            fraudstream_engine::features::RiskTime::Transaction
        );
        let err = Topology::embedded(&[
            "features.bands=[\"amount\", \"colour\", \"amount\", 3]".into(),
            "features.merchant_risk_time=\"label\"".into(),
        ])
        .unwrap_err();
        let bands: Vec<&ConfigError> = err.0.iter().filter(|e| e.key == "features.bands").collect();
        assert_eq!(bands.len(), 3, "a wrong name, a repeat and a number: {err}");
        assert!(bands[0]
            .expected
            .contains("amount, amount_vs_card, mcc_x_amount, merch_risk"));
        assert!(
            err.0
                .iter()
                .any(|e| e.key == "features.merchant_risk_time" && e.expected.contains("\"both\"")),
            "{err}"
        );
    }

    #[test]
    fn an_api_topology_reports_every_misfit_at_once() {
        let text = r#"
[engine]
workers = 2
[source]
type = "api"
max_batch = 0
[labels]
type = "file"
[decisions]
review = 0.8
decline = 0.6
[service]
listen = "off"
[checkpoint]
dir = "ck"
"#;
        let err = Topology::from_toml("api.toml", text, &[]).unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        for k in [
            "engine.workers",
            "source.max_batch",
            "labels.type",
            "decisions.decline",
            "service.listen",
            "checkpoint",
        ] {
            assert!(keys.contains(&k), "missing {k} in {keys:?}");
        }
        let t = Topology::from_toml("api.toml", "[source]\ntype = \"api\"\n", &[])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            t.labels.source,
            LabelSource::Api,
            "labels come from the API by default"
        );
        assert_eq!(t.decisions.bands, Decisions::default().bands);
        assert!(t.decisions.enabled, "the API always decides");
        let bad = Topology::from_toml(
            "api.toml",
            "[source]\ntype = \"api\"\n[decisions]\nrules = \"/nonexistent/rules.toml\"\n",
            &[],
        )
        .unwrap_err();
        assert!(
            bad.0
                .iter()
                .any(|e| e.file == "/nonexistent/rules.toml" && e.key == "(file)"),
            "{bad}"
        );
    }

    #[test]
    fn the_api_beside_a_stream_is_a_fluvio_topology_s_table() {
        let fluvio = include_str!("../../topologies/fluvio.toml");
        let t = Topology::from_toml("fluvio.toml", fluvio, &["api.queue=8".into()])
            .unwrap_or_else(|e| panic!("{e}"));
        let api = t.api.as_ref().expect("[api] read");
        assert_eq!(api.queue, 8);
        assert_eq!(api.max_batch, ApiInput::default().max_batch);
        assert!(t.decisions.enabled, "the API always decides");
        assert!(Topology::from_toml("fluvio.toml", fluvio, &[])
            .unwrap()
            .api
            .is_none());
        // Every misfit at once: no address, a bad limit, an unknown key.
        let err = Topology::from_toml(
            "fluvio.toml",
            fluvio,
            &[
                "service.listen=\"off\"".into(),
                "api.max_batch=0".into(),
                "api.qeue=3".into(),
            ],
        )
        .unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        for k in ["service.listen", "api.max_batch", "api.qeue"] {
            assert!(keys.contains(&k), "missing {k} in {keys:?}: {err}");
        }
        // Not with stages (a request must reach its card's owner), not
        // without a stream, and not twice with an API source.
        let staged = include_str!("../../topologies/fluvio-stages.toml");
        let err = Topology::from_toml("stages.toml", staged, &["api.queue=8".into()]).unwrap_err();
        assert!(
            err.0
                .iter()
                .any(|e| e.key == "api" && e.expected.contains("[stages]")),
            "{err}"
        );
        for (text, says) in [
            (
                "[source]\ntype = \"api\"\n[api]\nqueue = 8\n",
                "[source] keys",
            ),
            ("[api]\nqueue = 8\n", "unless source.type = \"fluvio\""),
        ] {
            let err = Topology::from_toml("t.toml", text, &[]).unwrap_err();
            assert!(
                err.0
                    .iter()
                    .any(|e| e.key == "api" && e.expected.contains(says)),
                "{text}: {err}"
            );
        }
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
        assert_eq!(t.engine.stage.seed, 9);
        let err = Topology::embedded(&["source.days=0".into()]).unwrap_err();
        assert_eq!(err.0[0].key, "source.days");
    }

    /// Found by fuzzing (fuzz/regressions/topology/empty-set-override): an
    /// empty `--set` was reported under an empty key, `--set: : expected …`.
    #[test]
    fn an_empty_override_is_named() {
        let err = Topology::embedded(&["".into(), " ".into(), "seng".into()]).unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["(empty)", "(empty)", "seng"]);
        assert!(err
            .to_string()
            .contains("--set: (empty): expected KEY=VALUE"));
    }

    #[test]
    fn model_portfolio_keys_are_validated() {
        let t = Topology::embedded(&[]).unwrap();
        assert_eq!(t.model.portfolio.kind, ModelKind::Auto, "the default");
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

    /// Found by fuzzing (fuzz/regressions/topology/hst-1000-trees-of-height-20):
    /// each key in range, the ensemble validated and then needed 24 GiB at start.
    #[test]
    fn half_space_trees_are_bounded_in_all() {
        let hst = |trees: usize, height: u32| {
            Topology::embedded(&[
                "model.type=\"hst\"".into(),
                format!("model.hst.trees={trees}"),
                format!("model.hst.height={height}"),
            ])
        };
        let err = hst(1000, 20).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].key, "model.hst.trees");
        assert_eq!(
            err.0[0].found.as_deref(),
            Some("1000 trees of height 20: 2097151000 nodes")
        );
        // The largest of either alone, and the paper's 25 trees of height 15.
        for (trees, height) in [(1000, 15), (32, 20), (25, 15)] {
            let t = hst(trees, height).unwrap();
            assert!(t.model.portfolio.hst.nodes() <= MAX_NODES);
        }
    }
}
