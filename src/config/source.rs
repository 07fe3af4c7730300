//! Where events come from: `[source]` (simulator, file or Fluvio) and
//! `[labels]`, with the field mapping of CSV and JSONL files.

use super::reader::Section;
use super::service::{self, FluvioInput};
use fraudstream_engine::time::DAY_MS;
use fraudstream_engine::Named;
use fraudstream_sim::{DriftMode, Family, GenuineLabels, PatternMix, SimConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where transactions come from (`[source]`).
#[derive(Clone, Debug, PartialEq)]
pub enum SourceConfig {
    /// The built-in simulator.
    Simulator(SimConfig),
    /// A CSV or JSONL file.
    File(FileInput),
    /// A Fluvio topic (the engine runs as a service).
    Fluvio(FluvioInput),
    /// The scoring API: HTTP requests on `service.listen` (the engine runs
    /// as a service).
    Api(super::ApiInput),
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
    /// Lower-case name (the file extension).
    pub fn as_str(self) -> &'static str {
        self.name()
    }

    /// The format a path's extension suggests (`.csv`, else JSON lines).
    fn of_path(path: &str) -> Self {
        if path.ends_with(".csv") {
            FileFormat::Csv
        } else {
            FileFormat::Jsonl
        }
    }
}

impl Named for FileFormat {
    const ALL: &'static [Self] = &[FileFormat::Csv, FileFormat::Jsonl];
    fn name(self) -> &'static str {
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

/// Records larger than this go to the dead letters, unless `max_record_bytes` says otherwise.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 65_536;

/// Delay of labels read from a column, unless `delay` says otherwise.
pub const DEFAULT_LABEL_DELAY_MS: i64 = 7 * DAY_MS;

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
    /// `POST /v1/labels` of the scoring API (with an API source).
    Api,
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

pub(super) fn read_source(s: &Section) -> SourceConfig {
    if !s.present() {
        s.error("", "a [source] table", None);
    }
    let kind = s.choice("type", &["simulator", "file", "fluvio", "api"], "simulator");
    if kind == "api" {
        SourceConfig::Api(super::api::read_api_input(s))
    } else if kind == "file" {
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
    let family = match s
        .choice(
            "family",
            &["cards", "categories", "handbook"],
            d.family.name(),
        )
        .as_str()
    {
        "categories" => Family::Categories,
        "handbook" => Family::Handbook,
        _ => Family::Cards,
    };
    // `patterns` and `drift` shape the cards family only (the categories
    // family's mechanisms have fixed shares).
    let cfg = SimConfig {
        family,
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

/// `format`, by default the one the path's extension suggests.
pub(super) fn format_from(s: &Section, path: &str) -> FileFormat {
    s.named("format", FileFormat::of_path(path))
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
    let max_record_bytes = s.int(
        "max_record_bytes",
        DEFAULT_MAX_RECORD_BYTES as i64,
        64,
        1 << 30,
    ) as usize;
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

pub(super) fn read_labels(s: &Section, source: &SourceConfig) -> LabelsConfig {
    let is_sim = matches!(source, SourceConfig::Simulator(_));
    let is_api = matches!(source, SourceConfig::Api(_));
    let fluvio_source = match source {
        SourceConfig::Fluvio(f) => Some(f),
        _ => None,
    };
    let default = match source {
        SourceConfig::Simulator(_) => "simulator",
        SourceConfig::Api(_) => "api",
        _ => "none",
    };
    let kind = s.choice(
        "type",
        &["simulator", "file", "column", "fluvio", "api", "none"],
        default,
    );
    if is_api && !matches!(kind.as_str(), "api" | "none") {
        s.error(
            "type",
            "\"api\" or \"none\" with an API source",
            Some(format!("\"{kind}\"")),
        );
    }
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
        "api" => {
            if !is_api {
                s.error(
                    "type",
                    "\"api\" labels only with source.type = \"api\"",
                    Some("\"api\"".into()),
                );
            }
            LabelSource::Api
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
                delay_ms: s.duration("delay", DEFAULT_LABEL_DELAY_MS, 0),
            }
        }
        _ => LabelSource::None,
    };
    let learn = s.bool("learn", true);
    s.finish();
    LabelsConfig { source: src, learn }
}
